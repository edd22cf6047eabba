/*
 * test_joinhold.c — a joining table's held transactions on disk: appended
 * in order, replayed from the copy's snapshot LSN with their Begin and
 * Commit LSNs set to the apply's position, resent transactions kept once, an
 * uncommitted tail dropped on a restart, large transactions in pieces,
 * appends during a replay, malformed Begin and Commit messages refused. Each
 * test works in a directory of its own under /tmp.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gateway/stream/joinhold.h"

#define TIME 700000000000000ull

/* ---- building messages ---- */

struct msg {
	uint8_t *data;
	size_t len;
	size_t cap;
};

static void put(struct msg *m, const void *p, size_t n)
{
	if (m->cap - m->len < n) {
		m->cap = (m->len + n) * 2;
		m->data = realloc(m->data, m->cap);
		assert_non_null(m->data);
	}
	memcpy(m->data + m->len, p, n);
	m->len += n;
}

static void put8(struct msg *m, uint8_t v)
{
	put(m, &v, 1);
}

static void put32(struct msg *m, uint32_t v)
{
	uint8_t p[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v };

	put(m, p, 4);
}

static void put64(struct msg *m, uint64_t v)
{
	put32(m, (uint32_t)(v >> 32));
	put32(m, (uint32_t)v);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) << 32 | get32(p + 4);
}

/* ---- the hold ---- */

struct fixture {
	char dir[64];
	char path[96];
	struct joinhold *h;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char err[256];

	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "/tmp/test_joinhold-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/join-7.hold", f->dir);
	f->h = joinhold_new(f->dir, 7, err, sizeof(err));
	assert_non_null(f->h);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	joinhold_free(f->h);
	assert_int_equal(rmdir(f->dir), 0);
	free(f);
	return 0;
}

static void append(struct joinhold *h, const struct msg *m)
{
	char err[256] = "";

	assert_true(joinhold_append(h, m->data, m->len, err, sizeof(err)));
	assert_string_equal(err, "");
}

static void append_refused(struct joinhold *h, const struct msg *m, const char *why)
{
	char err[256] = "";

	assert_false(joinhold_append(h, m->data, m->len, err, sizeof(err)));
	assert_non_null(strstr(err, why));
}

static void begin(struct joinhold *h, uint64_t final_lsn)
{
	struct msg m = { 0 };

	put8(&m, 'B');
	put64(&m, final_lsn);
	put64(&m, TIME);
	put32(&m, 1234);
	append(h, &m);
	free(m.data);
}

static void commit(struct joinhold *h, uint64_t lsn)
{
	struct msg m = { 0 };

	put8(&m, 'C');
	put8(&m, 0);
	put64(&m, lsn);
	put64(&m, lsn + 0x30);
	put64(&m, TIME + 1);
	append(h, &m);
	free(m.data);
}

static void relation(struct joinhold *h)
{
	struct msg m = { 0 };

	put8(&m, 'R');
	put32(&m, 16402);
	put(&m, "public", 7);
	put(&m, "j", 2);
	put8(&m, 'd');
	put8(&m, 0);
	put8(&m, 1);
	put8(&m, 1);
	put(&m, "id", 3);
	put32(&m, 23);
	put32(&m, 0xffffffffu);
	append(h, &m);
	free(m.data);
}

/* A change ('I', 'U' or 'D') of value bytes `size` long, all `fill`. */
static void change(struct joinhold *h, char type, size_t size, uint8_t fill)
{
	struct msg m = { 0 };
	uint8_t *v = malloc(size ? size : 1);

	assert_non_null(v);
	memset(v, fill, size);
	put8(&m, (uint8_t)type);
	put32(&m, 16402);
	put8(&m, type == 'D' ? 'K' : 'N');
	put8(&m, 0);
	put8(&m, 1);
	put8(&m, 't');
	put32(&m, (uint32_t)size);
	put(&m, v, size);
	append(h, &m);
	free(v);
	free(m.data);
}

static void txn(struct joinhold *h, uint64_t lsn, char type)
{
	begin(h, lsn);
	relation(h);
	change(h, type, 4, (uint8_t)lsn);
	commit(h, lsn);
}

static off_t file_size(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return st.st_size;
}

/* ---- reading pieces ---- */

struct replay {
	char types[256];
	size_t ntypes;
	uint64_t begin_lsn[16];     /* the Begins' final_lsn, in order */
	uint64_t commit_lsn[16][2];
	size_t nbegin, ncommit;
	uint8_t fills[16];          /* the first value byte of each change */
	size_t nfills;
};

/* Reads one piece into r; returns the piece's length. */
static size_t piece(struct joinhold *h, uint64_t at, struct replay *r, bool *in_txn)
{
	uint8_t *body;
	size_t len, pos = 0;
	char err[256] = "";

	assert_int_equal(joinhold_next(h, at, &body, &len, in_txn, err, sizeof(err)),
			 JOINHOLD_BODY);
	assert_non_null(body);
	assert_true(len > 0);
	while (pos < len) {
		uint32_t l;
		const uint8_t *m;

		assert_true(len - pos >= 5);
		l = get32(body + pos);
		assert_true(l >= 1 && l <= len - pos - 4);
		m = body + pos + 4;
		if (r->ntypes + 1 < sizeof(r->types))
			r->types[r->ntypes++] = (char)m[0];
		r->types[r->ntypes] = '\0';
		if (m[0] == 'B') {
			assert_int_equal(l, 21);
			assert_int_equal(get64(m + 9), TIME);
			if (r->nbegin < 16)
				r->begin_lsn[r->nbegin++] = get64(m + 1);
		} else if (m[0] == 'C') {
			assert_int_equal(l, 26);
			assert_int_equal(get64(m + 18), TIME + 1);
			if (r->ncommit < 16) {
				r->commit_lsn[r->ncommit][0] = get64(m + 2);
				r->commit_lsn[r->ncommit++][1] = get64(m + 10);
			}
		} else if (m[0] == 'I' || m[0] == 'U' || m[0] == 'D') {
			if (r->nfills < 16)
				r->fills[r->nfills++] = l > 13 ? m[13] : 0;
		}
		pos += 4 + (size_t)l;
	}
	free(body);
	return len;
}

static void caught_up(struct joinhold *h)
{
	uint8_t *body = (uint8_t *)"x";
	size_t len = 1;
	bool in_txn = true;
	char err[256] = "";

	assert_int_equal(joinhold_next(h, 0x9000, &body, &len, &in_txn, err, sizeof(err)),
			 JOINHOLD_CAUGHT_UP);
	assert_null(body);
	assert_int_equal(len, 0);
	assert_false(in_txn);
	assert_int_equal(joinhold_pending_bytes(h), 0);
}

/* ---- tests ---- */

static void test_two_transactions_replayed(void **state)
{
	struct fixture *f = *state;
	struct replay r = { .ntypes = 0 };
	bool in_txn = true;

	assert_int_equal(file_size(f->path), 0);
	txn(f->h, 0x100, 'I');
	begin(f->h, 0x200);
	relation(f->h);
	change(f->h, 'U', 4, 0x21);
	change(f->h, 'D', 4, 0x22);
	commit(f->h, 0x200);
	assert_int_equal(joinhold_kept_count(f->h), 2);
	assert_int_equal(joinhold_pending_bytes(f->h), (uint64_t)file_size(f->path));
	assert_int_equal(joinhold_replayed_count(f->h), 0);

	joinhold_replay_from(f->h, 0);
	assert_int_equal(piece(f->h, 0x9000, &r, &in_txn), file_size(f->path));
	assert_false(in_txn);
	assert_string_equal(r.types, "BRICBRUDC");
	assert_int_equal(r.nbegin, 2);
	assert_int_equal(r.begin_lsn[0], 0x9000);
	assert_int_equal(r.begin_lsn[1], 0x9000);
	assert_int_equal(r.ncommit, 2);
	for (size_t i = 0; i < 2; i++) {
		assert_int_equal(r.commit_lsn[i][0], 0x9000);
		assert_int_equal(r.commit_lsn[i][1], 0x9000);
	}
	assert_int_equal(r.nfills, 3);
	assert_int_equal(r.fills[0], 0x00);
	assert_int_equal(r.fills[1], 0x21);
	assert_int_equal(r.fills[2], 0x22);
	assert_int_equal(joinhold_replayed_count(f->h), 2);
	caught_up(f->h);
	caught_up(f->h);
}

static void test_snapshot_skips_earlier_transactions(void **state)
{
	struct fixture *f = *state;
	struct replay r = { .ntypes = 0 };
	bool in_txn;

	txn(f->h, 0x100, 'I');
	txn(f->h, 0x1ff, 'U');
	txn(f->h, 0x200, 'D');
	txn(f->h, 0x300, 'I');
	joinhold_replay_from(f->h, 0x200);
	(void)piece(f->h, 0x5000, &r, &in_txn);
	assert_false(in_txn);
	/* a commit starting at the snapshot's LSN is not in the copy */
	assert_string_equal(r.types, "BRDCBRIC");
	assert_int_equal(joinhold_replayed_count(f->h), 2);
	assert_int_equal(joinhold_kept_count(f->h), 4);
	caught_up(f->h);
}

static void test_everything_skipped(void **state)
{
	struct fixture *f = *state;

	txn(f->h, 0x100, 'I');
	txn(f->h, 0x200, 'I');
	joinhold_replay_from(f->h, 0x1000);
	caught_up(f->h);
	assert_int_equal(joinhold_replayed_count(f->h), 0);
}

static void test_resent_transaction_kept_once(void **state)
{
	struct fixture *f = *state;
	struct replay r = { .ntypes = 0 };
	bool in_txn;
	off_t size;

	txn(f->h, 0x100, 'I');
	txn(f->h, 0x200, 'U');
	size = file_size(f->path);
	/* the source sends both again after a refused batch */
	txn(f->h, 0x100, 'I');
	txn(f->h, 0x200, 'U');
	assert_int_equal(joinhold_kept_count(f->h), 2);
	assert_int_equal(file_size(f->path), size);
	txn(f->h, 0x300, 'D');
	assert_int_equal(joinhold_kept_count(f->h), 3);

	joinhold_replay_from(f->h, 0);
	(void)piece(f->h, 0x9000, &r, &in_txn);
	assert_string_equal(r.types, "BRICBRUCBRDC");
	assert_int_equal(joinhold_replayed_count(f->h), 3);
	caught_up(f->h);
}

static void test_restart_drops_the_uncommitted_tail(void **state)
{
	struct fixture *f = *state;
	struct replay r = { .ntypes = 0 };
	bool in_txn;
	off_t size;
	char err[256] = "";

	txn(f->h, 0x100, 'I');
	size = file_size(f->path);
	/* more than the write buffer, so part of it is on disk */
	begin(f->h, 0x200);
	relation(f->h);
	for (int i = 0; i < 6; i++)
		change(f->h, 'I', 100000, 0x20);
	assert_true(file_size(f->path) > size);
	assert_true(joinhold_restart(f->h, err, sizeof(err)));
	assert_int_equal(file_size(f->path), size);
	assert_int_equal(joinhold_kept_count(f->h), 1);
	assert_int_equal(joinhold_pending_bytes(f->h), (uint64_t)size);

	/* a Begin while one is open drops the open one as well */
	begin(f->h, 0x200);
	change(f->h, 'I', 10, 0x21);
	txn(f->h, 0x200, 'U');
	assert_int_equal(joinhold_kept_count(f->h), 2);
	/* a restart with nothing open changes nothing */
	assert_true(joinhold_restart(f->h, err, sizeof(err)));
	assert_int_equal(joinhold_kept_count(f->h), 2);

	joinhold_replay_from(f->h, 0);
	(void)piece(f->h, 0x9000, &r, &in_txn);
	assert_string_equal(r.types, "BRICBRUC");
	assert_int_equal(r.nfills, 2);
	assert_int_equal(r.fills[1], 0x00);
	caught_up(f->h);
}

static void test_large_transaction_in_pieces(void **state)
{
	struct fixture *f = *state;
	struct replay r = { .ntypes = 0 };
	bool in_txn;
	size_t n = 0, total = 0, len;
	uint64_t at = 0x9000, second_at = 0;
	const size_t value = 100000, changes = 30;

	begin(f->h, 0x100);
	relation(f->h);
	for (size_t i = 0; i < changes; i++)
		change(f->h, 'I', value, (uint8_t)i);
	commit(f->h, 0x100);
	txn(f->h, 0x200, 'U');
	assert_true(joinhold_pending_bytes(f->h) > 2 * JOINHOLD_BODY_BYTES);

	joinhold_replay_from(f->h, 0);
	while (joinhold_pending_bytes(f->h) > 0) {
		len = piece(f->h, at, &r, &in_txn);
		assert_true(len <= JOINHOLD_BODY_BYTES);
		total += len;
		n++;
		/* inside the first transaction until its Commit */
		assert_int_equal(in_txn, r.ncommit == 0);
		if (r.nbegin == 2 && second_at == 0)
			second_at = at;
		/* the apply moves on: the open transaction keeps the position it began at */
		at += 0x10;
	}
	assert_false(in_txn);
	assert_true(n >= 3);
	assert_int_equal(r.nbegin, 2);
	assert_int_equal(r.begin_lsn[0], 0x9000);
	assert_int_equal(r.ncommit, 2);
	assert_int_equal(r.commit_lsn[0][0], 0x9000);
	assert_int_equal(r.commit_lsn[0][1], 0x9000);
	/* the second transaction: the position of the piece it began in */
	assert_true(second_at > 0x9000);
	assert_int_equal(r.begin_lsn[1], second_at);
	assert_int_equal(r.commit_lsn[1][0], second_at);
	assert_int_equal(total, (size_t)file_size(f->path));
	assert_int_equal(r.ntypes, changes + 3 + 4);
	assert_int_equal(joinhold_replayed_count(f->h), 2);
	caught_up(f->h);
}

static void test_message_larger_than_a_piece(void **state)
{
	struct fixture *f = *state;
	struct replay r = { .ntypes = 0 };
	bool in_txn;
	size_t len, n = 0;

	begin(f->h, 0x100);
	change(f->h, 'I', JOINHOLD_BODY_BYTES + 1000, 1);
	change(f->h, 'I', 4, 2);
	commit(f->h, 0x100);
	joinhold_replay_from(f->h, 0);
	do {
		len = piece(f->h, 0x9000, &r, &in_txn);
		if (len > JOINHOLD_BODY_BYTES)
			assert_int_equal(len, 4 + 13 + JOINHOLD_BODY_BYTES + 1000);
		n++;
	} while (in_txn);
	assert_string_equal(r.types, "BIIC");
	assert_int_equal(r.fills[0], 1);
	assert_int_equal(r.fills[1], 2);
	assert_true(n >= 2);
	caught_up(f->h);
}

static void test_appends_during_replay(void **state)
{
	struct fixture *f = *state;
	struct replay r = { .ntypes = 0 };
	bool in_txn;

	txn(f->h, 0x100, 'I');
	joinhold_replay_from(f->h, 0);
	(void)piece(f->h, 0x9000, &r, &in_txn);
	assert_string_equal(r.types, "BRIC");
	caught_up(f->h);

	/* a committed one and an open one come while the replay waits */
	txn(f->h, 0x200, 'U');
	begin(f->h, 0x300);
	relation(f->h);
	change(f->h, 'D', 4, 0x33);
	assert_true(joinhold_pending_bytes(f->h) > 0);
	(void)piece(f->h, 0x9100, &r, &in_txn);
	assert_false(in_txn);
	assert_string_equal(r.types, "BRICBRUC");
	assert_int_equal(r.begin_lsn[1], 0x9100);
	caught_up(f->h);

	commit(f->h, 0x300);
	(void)piece(f->h, 0x9200, &r, &in_txn);
	assert_string_equal(r.types, "BRICBRUCBRDC");
	assert_int_equal(r.begin_lsn[2], 0x9200);
	assert_int_equal(r.commit_lsn[2][1], 0x9200);
	assert_int_equal(joinhold_replayed_count(f->h), 3);
	assert_int_equal(joinhold_kept_count(f->h), 3);
	caught_up(f->h);
}

static void test_malformed_messages_refused(void **state)
{
	struct fixture *f = *state;
	struct replay r = { .ntypes = 0 };
	struct msg m = { 0 };
	bool in_txn;
	char err[256];
	const uint8_t x = 'I';

	/* an empty message */
	assert_false(joinhold_append(f->h, &x, 0, err, sizeof(err)));

	/* a Begin one byte short */
	put8(&m, 'B');
	put64(&m, 0x100);
	put64(&m, TIME);
	put(&m, "abc", 3);
	append_refused(f->h, &m, "Begin");
	m.len = 0;

	begin(f->h, 0x100);
	relation(f->h);
	change(f->h, 'I', 4, 7);
	/* a Commit one byte short: refused, nothing of it kept */
	put8(&m, 'C');
	put8(&m, 0);
	put64(&m, 0x100);
	put64(&m, 0x130);
	put(&m, "1234567", 7);
	append_refused(f->h, &m, "Commit");
	assert_int_equal(joinhold_kept_count(f->h), 0);
	commit(f->h, 0x100);
	assert_int_equal(joinhold_kept_count(f->h), 1);
	free(m.data);

	joinhold_replay_from(f->h, 0);
	(void)piece(f->h, 0x9000, &r, &in_txn);
	assert_string_equal(r.types, "BRIC");
	caught_up(f->h);
}

static void test_outside_a_transaction_refused(void **state)
{
	struct fixture *f = *state;
	struct msg m = { 0 };

	put8(&m, 'I');
	put32(&m, 16402);
	append_refused(f->h, &m, "outside a transaction");
	m.len = 0;
	put8(&m, 'C');
	put(&m, "0123456789012345678901234", 25);
	append_refused(f->h, &m, "outside a transaction");
	free(m.data);
}

static void test_free_removes_the_file(void **state)
{
	struct fixture *f = *state;
	struct joinhold *other;
	char path[128], err[256] = "";

	txn(f->h, 0x100, 'I');
	assert_true(file_size(f->path) > 0);
	other = joinhold_new(f->dir, 8, err, sizeof(err));
	assert_non_null(other);
	snprintf(path, sizeof(path), "%s/join-8.hold", f->dir);
	assert_int_equal(file_size(path), 0);
	joinhold_free(other);
	assert_int_equal(access(path, F_OK), -1);
	assert_int_equal(errno, ENOENT);
	assert_int_equal(file_size(f->path) > 0, 1);

	/* a directory that is not there */
	snprintf(path, sizeof(path), "%s/missing", f->dir);
	assert_null(joinhold_new(path, 1, err, sizeof(err)));
	assert_non_null(strstr(err, "could not create"));
	joinhold_free(NULL);
}

/* What a previous process left: its hold files go, anything else stays. */
static void test_clean_removes_only_hold_files(void **state)
{
	struct fixture *f = *state;
	const char *names[] = { "join-12.hold", "join-x.hold", "7.spill", "join-3.holdx", "join.hold" };
	const bool gone[] = { true, true, false, false, false };
	char path[128];

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		FILE *fp;

		snprintf(path, sizeof(path), "%s/%s", f->dir, names[i]);
		fp = fopen(path, "w");
		assert_non_null(fp);
		fclose(fp);
	}
	joinhold_clean(f->dir);
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", f->dir, names[i]);
		assert_int_equal(access(path, F_OK) == 0, !gone[i]);
		if (!gone[i])
			(void)unlink(path);
	}
	joinhold_clean("/nonexistent-strait-dir");      /* nothing there: nothing done */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_two_transactions_replayed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_skips_earlier_transactions, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_everything_skipped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resent_transaction_kept_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restart_drops_the_uncommitted_tail, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_large_transaction_in_pieces, setup, teardown),
		cmocka_unit_test_setup_teardown(test_message_larger_than_a_piece, setup, teardown),
		cmocka_unit_test_setup_teardown(test_appends_during_replay, setup, teardown),
		cmocka_unit_test_setup_teardown(test_malformed_messages_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_outside_a_transaction_refused, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_free_removes_the_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_clean_removes_only_hold_files, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
