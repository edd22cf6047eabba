/*
 * fuzz_joingate.c — libFuzzer target for the sink's gate for tables that
 * join a stream later (replicator/joingate.c), with the held changes kept
 * and replayed by joinhold (gateway/stream/joinhold.c) as the stream does.
 *
 * The input starts with four bytes: the kinds of the tables public.t0 to
 * public.t3 (two bits each: unknown, member, joining, left), the LSN the
 * tables that left left at (<< 8), flags (bit 0: no guard; bit 1: an
 * unknown table joins and the body is sent again, as the stream does; bit 2:
 * the holds replay after every body; bit 3: the source restarts after every
 * body) and the copies' snapshot LSN (<< 8). Then come bodies, each a u16
 * big-endian length and that many bytes (the last one takes what is left).
 * Beyond "no crash" and no leak: the output is whole records, the body
 * itself when nothing was held; UNKNOWN holds and outputs nothing; every
 * held message names its table; the held count never goes backwards; every
 * piece of a replay is whole records within JOINHOLD_BODY_BYTES unless it
 * is one larger record.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gateway/stream/joinhold.h"
#include "replicator/joingate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)
#define MAX_HOLDS 8

struct fz_hold {
	char schema[64];
	char table[64];
	struct joinhold *h;          /* from the table's first held message */
};

struct fz {
	struct fz_hold holds[MAX_HOLDS];
	size_t n;
	unsigned next_file;
	uint64_t calls;
};

static char fz_dir[64];

static void fz_cleanup(void)
{
	(void)rmdir(fz_dir);
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Whether body[0..len) is a sequence of whole records; n: how many. */
static int whole_records(const uint8_t *body, size_t len, size_t *n)
{
	size_t off = 0;

	*n = 0;
	while (off < len) {
		uint32_t l;

		if (len - off < 4)
			return 0;
		l = be32(body + off);
		if (l == 0 || l > len - off - 4)
			return 0;
		off += 4 + (size_t)l;
		(*n)++;
	}
	return 1;
}

static struct fz_hold *fz_add(struct fz *f, const char *schema, const char *table)
{
	struct fz_hold *fh;

	if (f->n == MAX_HOLDS)
		return NULL;
	fh = &f->holds[f->n++];
	snprintf(fh->schema, sizeof(fh->schema), "%s", schema);
	snprintf(fh->table, sizeof(fh->table), "%s", table);
	fh->h = NULL;
	return fh;
}

static bool fz_hold_cb(void *arg, const char *schema, const char *table, const uint8_t *msg,
		size_t len)
{
	struct fz *f = arg;
	char err[256];

	CHECK(schema != NULL && table != NULL && len > 0);
	f->calls++;
	for (size_t i = 0; i < f->n; i++) {
		struct fz_hold *fh = &f->holds[i];

		if (strcmp(fh->schema, schema) != 0 || strcmp(fh->table, table) != 0)
			continue;
		if (!fh->h) {
			fh->h = joinhold_new(fz_dir, f->next_file++, err, sizeof(err));
			CHECK(fh->h != NULL);
		}
		return joinhold_append(fh->h, msg, len, err, sizeof(err));
	}
	abort();    /* a table that is not joining */
}

static void fz_restart(struct fz *f, struct joingate *g)
{
	char err[256];

	joingate_restart(g);
	for (size_t i = 0; i < f->n; i++)
		CHECK(!f->holds[i].h || joinhold_restart(f->holds[i].h, err, sizeof(err)));
}

static void fz_replay(struct fz *f, uint64_t snapshot)
{
	char err[256];

	for (size_t i = 0; i < f->n; i++) {
		struct joinhold *h = f->holds[i].h;
		enum joinhold_next r;
		uint64_t replayed;

		if (!h)
			continue;
		replayed = joinhold_replayed_count(h);
		joinhold_replay_from(h, snapshot);
		do {
			uint8_t *body;
			size_t len, n;
			bool in_txn;

			r = joinhold_next(h, 0x10000, &body, &len, &in_txn, err, sizeof(err));
			if (r == JOINHOLD_BODY) {
				CHECK(body != NULL && len > 0);
				CHECK(whole_records(body, len, &n));
				CHECK(len <= JOINHOLD_BODY_BYTES || n == 1);
			} else {
				CHECK(body == NULL);
			}
			free(body);
		} while (r == JOINHOLD_BODY);
		CHECK(r == JOINHOLD_CAUGHT_UP);
		CHECK(joinhold_pending_bytes(h) == 0);
		CHECK(joinhold_replayed_count(h) >= replayed);
		CHECK(joinhold_replayed_count(h) <= joinhold_kept_count(h));
	}
}

/* One body through the gate, sent again once if an unknown table joins. */
static void fz_body(struct fz *f, struct joingate *g, const uint8_t *body, size_t len,
		bool join_unknown)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		const uint8_t *out;
		size_t out_len, n;
		uint64_t held = joingate_held(g), calls = f->calls;
		const char *schema, *table;
		char err[256];
		enum joingate_result r = joingate_run(g, body, len, &out, &out_len, err, sizeof(err));

		CHECK(joingate_held(g) >= held);
		if (r == JOINGATE_OK) {
			CHECK(whole_records(out, out_len, &n));
			if (joingate_held(g) == held) {
				CHECK(out == body && out_len == len);
			}
			return;
		}
		if (r == JOINGATE_BROKEN) {
			CHECK(err[0] != '\0');
			fz_restart(f, g);
			return;
		}
		CHECK(r == JOINGATE_UNKNOWN);
		CHECK(out_len == 0 && f->calls == calls && joingate_held(g) == held);
		joingate_unknown(g, &schema, &table);
		CHECK(schema != NULL && table != NULL);
		if (!join_unknown || joingate_kind_of(g, schema, table) == JOINGATE_JOINING ||
		    !fz_add(f, schema, table))
			return;
		CHECK(joingate_set(g, schema, table, JOINGATE_JOINING));
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz f = { .n = 0 };
	struct joingate *g;
	uint64_t left, snapshot;
	uint8_t flags;

	if (!fz_dir[0]) {
		snprintf(fz_dir, sizeof(fz_dir), "/tmp/fuzz-joingate-XXXXXX");
		CHECK(mkdtemp(fz_dir) != NULL);
		atexit(fz_cleanup);
	}
	if (size < 4)
		return 0;
	g = joingate_new(fz_hold_cb, &f);
	CHECK(g != NULL);
	left = (uint64_t)data[1] << 8;
	flags = data[2];
	snapshot = (uint64_t)data[3] << 8;
	for (int i = 0; i < 4; i++) {
		char table[4] = { 't', (char)('0' + i), '\0', '\0' };
		enum joingate_kind kind = (enum joingate_kind)(data[0] >> (2 * i) & 3);

		if (kind == JOINGATE_LEFT)
			CHECK(joingate_set_left(g, "public", table, left));
		else
			CHECK(joingate_set(g, "public", table, kind));
		if (kind == JOINGATE_JOINING)
			CHECK(fz_add(&f, "public", table) != NULL);
	}
	CHECK(joingate_joining_count(g) == f.n);
	joingate_guard(g, !(flags & 1));
	data += 4;
	size -= 4;
	while (size > 0) {
		size_t len = size >= 2 ? (size_t)data[0] << 8 | data[1] : size;

		if (size >= 2) {
			data += 2;
			size -= 2;
		}
		if (len > size)
			len = size;
		fz_body(&f, g, data, len, flags & 2);
		data += len;
		size -= len;
		if (flags & 4)
			fz_replay(&f, snapshot);
		if (flags & 8)
			fz_restart(&f, g);
	}
	fz_replay(&f, snapshot);
	for (size_t i = 0; i < f.n; i++)
		joinhold_free(f.holds[i].h);
	joingate_free(g);
	return 0;
}
