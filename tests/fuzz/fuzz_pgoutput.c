/*
 * fuzz_pgoutput.c — libFuzzer target for the pgoutput decoder, the
 * START_REPLICATION CopyData envelope and the relation cache
 * (replicator/pgoutput.c).
 *
 * An input is a sequence of records in the format of the sample files
 * (tests/unit/data/pgoutput): a 4-byte big-endian length, then one message;
 * a length that runs past the end takes the rest. The seed corpus is the real
 * samples. Each record goes through a protocol 2 and a protocol 1 decoder
 * (they keep their stream state across records), Relation messages into a
 * relation cache, changes are looked up in it, and every decoded pointer is
 * checked to lie inside its record. Each record is also decoded as a
 * CopyData message, and an XLogData's content as a pgoutput message.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "replicator/pgoutput.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_COLS 32

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

static void
check_inside(const void *p, size_t n, const uint8_t *buf, size_t len)
{
	const uint8_t *q = p;

	if (p == NULL) {
		CHECK(n == 0);
		return;
	}
	CHECK(q >= buf && n <= len && (size_t)(q - buf) <= len - n);
}

static void
check_cstr(const char *s, const uint8_t *buf, size_t len)
{
	CHECK(s != NULL);
	check_inside(s, strlen(s) + 1, buf, len);
}

static void
check_tuple(const struct pgoutput_tuple *t, const uint8_t *buf, size_t len,
		const struct pgoutput_rel *rel)
{
	for (uint16_t i = 0; i < t->ncols; i++) {
		const struct pgoutput_value *v = &t->cols[i];

		CHECK(v->kind == 'n' || v->kind == 'u' || v->kind == 't' || v->kind == 'b');
		check_inside(v->data, v->len, buf, len);
	}
	/* What the sink would do: match the tuple against the cached relation. */
	if (rel != NULL && t->ncols <= rel->natts && t->ncols > 0)
		(void)strlen(rel->attrs[t->ncols - 1].name);
}

static void
use(struct pgoutput_decoder *d, struct pgoutput_relcache *rc,
		const uint8_t *msg, size_t len)
{
	struct pgoutput_msg m;
	struct pgoutput_value cols[MAX_COLS];
	struct pgoutput_attr_iter it;
	struct pgoutput_attr a;
	struct pgoutput_rel *rel;
	enum pgoutput_status st;
	bool was_in_stream = d->in_stream;
	uint16_t n = 0;

	st = pgoutput_decode(d, msg, len, &m, cols, MAX_COLS);
	(void)pgoutput_status_str(st);
	if (st != PGOUTPUT_OK) {
		CHECK(d->error_offset <= len);
		CHECK(d->in_stream == was_in_stream);
		return;
	}
	(void)pgoutput_msg_type_name(m.type);
	switch (m.type) {
	case PGOUTPUT_RELATION:
		check_cstr(m.relation.nspname, msg, len);
		check_cstr(m.relation.relname, msg, len);
		check_inside(m.relation.attrs, m.relation.attrs_len, msg, len);
		pgoutput_attr_iter_init(&it, &m);
		while (pgoutput_attr_next(&it, &a)) {
			check_cstr(a.name, msg, len);
			n++;
		}
		CHECK(n == m.relation.natts);
		if (pgoutput_relcache_update(rc, &m)) {
			rel = pgoutput_relcache_get(rc, m.relation.oid);
			CHECK(rel != NULL && rel->natts == m.relation.natts);
			CHECK(strcmp(rel->relname, m.relation.relname) == 0);
		}
		break;
	case PGOUTPUT_TYPE:
		check_cstr(m.pgtype.nspname, msg, len);
		check_cstr(m.pgtype.typname, msg, len);
		break;
	case PGOUTPUT_ORIGIN:
		check_cstr(m.origin.name, msg, len);
		break;
	case PGOUTPUT_INSERT:
		check_tuple(&m.insert.newtup, msg, len,
			pgoutput_relcache_get(rc, m.insert.relid));
		break;
	case PGOUTPUT_UPDATE:
		rel = pgoutput_relcache_get(rc, m.update.relid);
		if (m.update.old_kind != PGOUTPUT_OLD_NONE)
			check_tuple(&m.update.oldtup, msg, len, rel);
		else
			CHECK(m.update.oldtup.ncols == 0);
		check_tuple(&m.update.newtup, msg, len, rel);
		CHECK((size_t)m.update.oldtup.ncols + m.update.newtup.ncols <= MAX_COLS);
		break;
	case PGOUTPUT_DELETE:
		check_tuple(&m.delete.oldtup, msg, len,
			pgoutput_relcache_get(rc, m.delete.relid));
		break;
	case PGOUTPUT_TRUNCATE:
		check_inside(m.truncate.relids, (size_t)m.truncate.nrelids * 4, msg, len);
		for (uint32_t i = 0; i < m.truncate.nrelids; i++)
			(void)pgoutput_relcache_get(rc, pgoutput_truncate_relid(&m, i));
		break;
	case PGOUTPUT_MESSAGE:
		check_cstr(m.message.prefix, msg, len);
		check_inside(m.message.content, m.message.content_len, msg, len);
		break;
	case PGOUTPUT_STREAM_START:
		CHECK(d->in_stream && d->proto_version == 2);
		break;
	case PGOUTPUT_STREAM_STOP:
		CHECK(!d->in_stream);
		break;
	default:
		break;
	}
	CHECK(!m.has_xid || was_in_stream);
	(void)pgoutput_time_to_unix_us(m.begin.commit_time);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pgoutput_decoder v1, v2, copy_dec;
	struct pgoutput_relcache rc;
	size_t off = 0;

	if (!pgoutput_decoder_init(&v1, 1) || !pgoutput_decoder_init(&v2, 2) ||
			!pgoutput_decoder_init(&copy_dec, 2))
		abort();
	pgoutput_relcache_init(&rc, free);

	while (off < size) {
		size_t len = size - off;
		const uint8_t *rec;
		uint8_t *exact;
		struct pgoutput_copy c;

		if (len >= 4) {
			uint32_t n = (uint32_t)data[off] << 24 | (uint32_t)data[off + 1] << 16 |
				(uint32_t)data[off + 2] << 8 | data[off + 3];

			off += 4;
			len = n <= size - off ? n : size - off;
		}
		/* An exact-size copy, so ASan sees a read one byte past the end. */
		exact = malloc(len + 1);
		if (exact == NULL)
			abort();
		memcpy(exact, data + off, len);
		rec = exact;
		off += len;

		use(&v2, &rc, rec, len);
		use(&v1, &rc, rec, len);
		if (pgoutput_decode_copy(rec, len, &c) == PGOUTPUT_OK) {
			CHECK(c.type == 'w' || c.type == 'k');
			check_inside(c.data, c.data_len, rec, len);
			if (c.type == 'w')
				use(&copy_dec, &rc, c.data, c.data_len);
		}
		/* Give a priv to something so free_priv is exercised. */
		if (len > 0) {
			struct pgoutput_rel *rel = pgoutput_relcache_get(&rc, rec[0]);

			if (rel != NULL && rel->priv == NULL)
				rel->priv = malloc(1);
		}
		free(exact);
	}
	pgoutput_relcache_free(&rc);
	return 0;
}
