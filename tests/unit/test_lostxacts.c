/*
 * test_lostxacts.c — the lost-transactions renderer (replicator/lostxacts.h)
 * fed hand-built pgoutput messages: quoting of literals and identifiers,
 * NULLs, unchanged TOAST, key changes, REPLICA IDENTITY FULL, TRUNCATE,
 * filtering by LSN, deduplication, ordering, skipped transactions, and
 * broken input.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "replicator/lostxacts.h"
#include "replicator/pgoutput.h"

/* ---- building messages ---- */

struct msg {
	uint8_t b[8192];
	size_t n;
};

static void m_u8(struct msg *m, uint8_t v)
{
	assert_true(m->n < sizeof(m->b));
	m->b[m->n++] = v;
}

static void m_u16(struct msg *m, uint16_t v)
{
	m_u8(m, (uint8_t)(v >> 8));
	m_u8(m, (uint8_t)v);
}

static void m_u32(struct msg *m, uint32_t v)
{
	m_u16(m, (uint16_t)(v >> 16));
	m_u16(m, (uint16_t)v);
}

static void m_u64(struct msg *m, uint64_t v)
{
	m_u32(m, (uint32_t)(v >> 32));
	m_u32(m, (uint32_t)v);
}

static void m_str(struct msg *m, const char *s)
{
	size_t n = strlen(s) + 1;

	assert_true(m->n + n <= sizeof(m->b));
	memcpy(m->b + m->n, s, n);
	m->n += n;
}

/*
 * A tuple from a spec string per column: "t:text", "n" (NULL), "u"
 * (unchanged TOAST). Texts may hold anything but NUL.
 */
static void m_tuple(struct msg *m, int ncols, const char *const *cols)
{
	m_u16(m, (uint16_t)ncols);
	for (int i = 0; i < ncols; i++) {
		const char *c = cols[i];

		if (c[0] == 't') {
			size_t n = strlen(c + 2);

			m_u8(m, 't');
			m_u32(m, (uint32_t)n);
			assert_true(m->n + n <= sizeof(m->b));
			memcpy(m->b + m->n, c + 2, n);
			m->n += n;
		} else {
			m_u8(m, (uint8_t)c[0]);
		}
	}
}

struct lx_test {
	struct lostxacts *lx;
	char err[512];
};

static void feed(struct lx_test *t, const struct msg *m)
{
	if (!lostxacts_feed_message(t->lx, m->b, m->n, t->err, sizeof(t->err)))
		fail_msg("feed: %s", t->err);
}

static void begin(struct lx_test *t, uint64_t final_lsn, uint32_t xid)
{
	struct msg m = { .n = 0 };

	m_u8(&m, 'B');
	m_u64(&m, final_lsn);
	m_u64(&m, 0);            /* 2000-01-01T00:00:00Z */
	m_u32(&m, xid);
	feed(t, &m);
}

static void commit(struct lx_test *t, uint64_t commit_lsn, uint64_t end_lsn)
{
	struct msg m = { .n = 0 };

	m_u8(&m, 'C');
	m_u8(&m, 0);
	m_u64(&m, commit_lsn);
	m_u64(&m, end_lsn);
	m_u64(&m, INT64_C(86400000000) + 1500);   /* 2000-01-02T00:00:00.001500Z */
	feed(t, &m);
}

struct col {
	uint8_t flags;
	const char *name;
	uint32_t type;
};

static void relation(struct lx_test *t, uint32_t oid, const char *nsp, const char *rel,
		char replident, int ncols, const struct col *cols)
{
	struct msg m = { .n = 0 };

	m_u8(&m, 'R');
	m_u32(&m, oid);
	m_str(&m, nsp);
	m_str(&m, rel);
	m_u8(&m, (uint8_t)replident);
	m_u16(&m, (uint16_t)ncols);
	for (int i = 0; i < ncols; i++) {
		m_u8(&m, cols[i].flags);
		m_str(&m, cols[i].name);
		m_u32(&m, cols[i].type);
		m_u32(&m, 0xffffffffu);
	}
	feed(t, &m);
}

static void insert(struct lx_test *t, uint32_t oid, int ncols, const char *const *cols)
{
	struct msg m = { .n = 0 };

	m_u8(&m, 'I');
	m_u32(&m, oid);
	m_u8(&m, 'N');
	m_tuple(&m, ncols, cols);
	feed(t, &m);
}

/* old_kind 0, 'K' or 'O' */
static void update(struct lx_test *t, uint32_t oid, char old_kind, const char *const *oldcols,
		int ncols, const char *const *newcols)
{
	struct msg m = { .n = 0 };

	m_u8(&m, 'U');
	m_u32(&m, oid);
	if (old_kind) {
		m_u8(&m, (uint8_t)old_kind);
		m_tuple(&m, ncols, oldcols);
	}
	m_u8(&m, 'N');
	m_tuple(&m, ncols, newcols);
	feed(t, &m);
}

static void delete(struct lx_test *t, uint32_t oid, char old_kind, int ncols, const char *const *cols)
{
	struct msg m = { .n = 0 };

	m_u8(&m, 'D');
	m_u32(&m, oid);
	m_u8(&m, (uint8_t)old_kind);
	m_tuple(&m, ncols, cols);
	feed(t, &m);
}

static void lx_setup(struct lx_test *t, uint64_t after_lsn)
{
	struct lostxacts_options o = {
		.stream = "app",
		.slot = "strait_app",
		.after_lsn = after_lsn,
		.generated_at_us = INT64_C(1796305875000000),   /* 2026-12-03T13:51:15Z */
	};

	t->lx = lostxacts_new(&o);
	assert_non_null(t->lx);
}

/* The file, malloc'd. */
static char *render(struct lx_test *t)
{
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);

	assert_non_null(f);
	if (!lostxacts_write(t->lx, f, t->err, sizeof(t->err)))
		fail_msg("write: %s", t->err);
	fclose(f);
	return out;
}

/* The file from the first "BEGIN;" on (the header varies by test). */
static const char *body(const char *file)
{
	const char *p = strstr(file, "\n-- transaction ");

	return p ? p + 1 : "";
}

static const struct col t_cols[] = {
	{ PGOUTPUT_ATTR_KEY, "id", 23 },
	{ 0, "note", 25 },
	{ 0, "big", 25 },
};

/* ---- tests ---- */

static void test_literals(void **state)
{
	static const struct {
		const char *in;
		const char *out;
	} cases[] = {
		{ "", "''" },
		{ "plain", "'plain'" },
		{ "it's", "'it''s'" },
		{ "''", "''''''" },
		{ "a\\b", "E'a\\\\b'" },
		{ "x'\\y", "E'x''\\\\y'" },
		{ "two\nlines\r\n", "'two\nlines\r\n'" },
		{ "h\xc3\xa9llo \xe2\x82\xac", "'h\xc3\xa9llo \xe2\x82\xac'" },
		{ "\\x00ff", "E'\\\\x00ff'" },
	};
	static const struct {
		const char *in;
		const char *out;
	} idents[] = {
		{ "t", "\"t\"" },
		{ "Mixed Case", "\"Mixed Case\"" },
		{ "we\"ird", "\"we\"\"ird\"" },
		{ "\"", "\"\"\"\"" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct lostxacts_buf b = { 0 };

		assert_true(lostxacts_buf_literal(&b, cases[i].in, strlen(cases[i].in)));
		assert_string_equal(b.data, cases[i].out);
		assert_int_equal(b.len, strlen(cases[i].out));
		lostxacts_buf_free(&b);
	}
	for (size_t i = 0; i < sizeof(idents) / sizeof(idents[0]); i++) {
		struct lostxacts_buf b = { 0 };

		assert_true(lostxacts_buf_ident(&b, idents[i].in));
		assert_string_equal(b.data, idents[i].out);
		lostxacts_buf_free(&b);
	}
	/* appending grows one buffer */
	{
		struct lostxacts_buf b = { 0 };

		for (int i = 0; i < 1000; i++)
			assert_true(lostxacts_buf_literal(&b, "ab'", 3));
		assert_int_equal(b.len, 1000 * 6);
		lostxacts_buf_free(&b);
	}
}

/* The whole file for one transaction: header and block, byte for byte. */
static void test_whole_file(void **state)
{
	struct lx_test t = { 0 };
	static const char *const ins[] = { "t:1", "t:it's\n\\", "n" };
	static const char *const upd[] = { "t:1", "t:new", "u" };
	static const char *const del[] = { "t:2", "n", "n" };
	static const char *const expected =
		"-- strait: transactions the old primary committed that the new primary never applied\n"
		"--\n"
		"-- stream: app\n"
		"-- slot: strait_app\n"
		"-- transactions whose commit ends after LSN 0/100 (what the new primary applied)\n"
		"-- generated 2026-12-03T13:51:15.000000Z\n"
		"-- 1 transaction(s), 3 statement(s), commit LSNs 1/A0 to 1/A0\n"
		"--\n"
		"-- NOTHING IN THIS FILE HAS BEEN APPLIED. It records changes that exist only on the\n"
		"-- old primary. Review each transaction against the new primary's data, then apply\n"
		"-- what should be kept, e.g. psql -v ON_ERROR_STOP=1 -f FILE.\n"
		"\n"
		"SET client_encoding = 'UTF8';\n"
		"SET datestyle = 'ISO';\n"
		"SET intervalstyle = 'postgres';\n"
		"\n"
		"-- transaction 777, commit LSN 1/A0 (ends 1/D8), committed 2000-01-02T00:00:00.001500Z\n"
		"BEGIN;\n"
		"INSERT INTO \"public\".\"t\" (\"id\", \"note\", \"big\") OVERRIDING SYSTEM VALUE VALUES ('1', E'it''s\n\\\\', NULL);\n"
		"UPDATE \"public\".\"t\" SET \"id\" = '1', \"note\" = 'new' WHERE \"id\" = '1';\n"
		"DELETE FROM \"public\".\"t\" WHERE \"id\" = '2';\n"
		"COMMIT;\n";
	char *out;

	(void)state;
	lx_setup(&t, 0x100);
	begin(&t, 0x1000000A0, 777);
	relation(&t, 16384, "public", "t", 'd', 3, t_cols);
	insert(&t, 16384, 3, ins);
	update(&t, 16384, 0, NULL, 3, upd);
	delete(&t, 16384, 'K', 3, del);
	commit(&t, 0x1000000A0, 0x1000000D8);
	out = render(&t);
	assert_string_equal(out, expected);
	free(out);
	/* writing is repeatable */
	out = render(&t);
	assert_string_equal(out, expected);
	free(out);
	lostxacts_free(t.lx);
}

static void test_nulls_and_unchanged_toast(void **state)
{
	struct lx_test t = { 0 };
	static const char *const upd[] = { "t:5", "n", "u" };
	static const char *const only_toast[] = { "u", "u", "u" };
	static const char *const ins[] = { "t:6", "n", "n" };
	struct lostxacts_stats st;
	char *out;

	(void)state;
	lx_setup(&t, 0);
	begin(&t, 0x200, 1);
	relation(&t, 16384, "public", "t", 'd', 3, t_cols);
	update(&t, 16384, 0, NULL, 3, upd);
	insert(&t, 16384, 3, ins);
	/* nothing but unchanged TOAST and no key: cannot be rendered */
	update(&t, 16384, 0, NULL, 3, only_toast);
	commit(&t, 0x200, 0x230);
	out = render(&t);
	assert_non_null(strstr(body(out),
		"UPDATE \"public\".\"t\" SET \"id\" = '5', \"note\" = NULL WHERE \"id\" = '5';\n"));
	assert_null(strstr(out, "\"big\" ="));
	assert_non_null(strstr(body(out), "OVERRIDING SYSTEM VALUE VALUES ('6', NULL, NULL);\n"));
	assert_non_null(strstr(body(out), "-- WARNING: a change was not rendered: UPDATE of relation OID 16384 "
		"sends no column but unchanged TOAST values\n"));
	assert_non_null(strstr(out, "-- WARNING: 1 change(s) could not be rendered; look for WARNING below\n"));
	lostxacts_get_stats(t.lx, &st);
	assert_int_equal(st.kept, 1);
	assert_int_equal(st.statements, 2);
	assert_int_equal(st.unrendered, 1);
	free(out);
	lostxacts_free(t.lx);
}

static void test_key_change(void **state)
{
	struct lx_test t = { 0 };
	static const struct col cols[] = {
		{ PGOUTPUT_ATTR_KEY, "tenant", 25 },
		{ PGOUTPUT_ATTR_KEY, "id", 23 },
		{ 0, "v", 25 },
	};
	static const char *const oldk[] = { "t:acme", "t:1", "n" };
	static const char *const newt[] = { "t:acme", "t:2", "t:moved" };
	static const char *const delk[] = { "t:o'hare", "t:3", "n" };
	char *out;

	(void)state;
	lx_setup(&t, 0);
	begin(&t, 0x300, 2);
	relation(&t, 16400, "sales", "Order Lines", 'd', 3, cols);
	update(&t, 16400, 'K', oldk, 3, newt);
	delete(&t, 16400, 'K', 3, delk);
	commit(&t, 0x300, 0x330);
	out = render(&t);
	assert_non_null(strstr(body(out),
		"UPDATE \"sales\".\"Order Lines\" SET \"tenant\" = 'acme', \"id\" = '2', \"v\" = 'moved' "
		"WHERE \"tenant\" = 'acme' AND \"id\" = '1';\n"
		"DELETE FROM \"sales\".\"Order Lines\" WHERE \"tenant\" = 'o''hare' AND \"id\" = '3';\n"));
	free(out);
	lostxacts_free(t.lx);
}

static void test_replica_identity_full(void **state)
{
	struct lx_test t = { 0 };
	/* under FULL, pgoutput flags every column as part of the identity */
	static const struct col cols[] = {
		{ PGOUTPUT_ATTR_KEY, "a", 23 },
		{ PGOUTPUT_ATTR_KEY, "b", 25 },
		{ PGOUTPUT_ATTR_KEY, "doc", 114 },    /* json: no equality operator */
	};
	static const char *const oldt[] = { "t:1", "n", "t:{\"k\": 1}" };
	static const char *const newt[] = { "t:1", "t:set", "t:{\"k\": 1}" };
	static const char *const same[] = { "t:1", "t:set", "t:{\"k\": 1}" };
	char *out;

	(void)state;
	lx_setup(&t, 0);
	begin(&t, 0x400, 3);
	relation(&t, 16500, "public", "log", 'f', 3, cols);
	update(&t, 16500, 'O', oldt, 3, newt);
	delete(&t, 16500, 'O', 3, newt);
	/* an update that changed nothing is still written, in full */
	update(&t, 16500, 'O', same, 3, same);
	commit(&t, 0x400, 0x430);
	out = render(&t);
	assert_non_null(strstr(body(out),
		"UPDATE \"public\".\"log\" SET \"b\" = 'set' WHERE ctid = (SELECT ctid FROM \"public\".\"log\" "
		"WHERE \"a\" = '1' AND \"b\" IS NULL AND \"doc\"::text = '{\"k\": 1}' LIMIT 1);\n"
		"DELETE FROM \"public\".\"log\" WHERE ctid = (SELECT ctid FROM \"public\".\"log\" "
		"WHERE \"a\" = '1' AND \"b\" = 'set' AND \"doc\"::text = '{\"k\": 1}' LIMIT 1);\n"
		"UPDATE \"public\".\"log\" SET \"a\" = '1', \"b\" = 'set', \"doc\" = '{\"k\": 1}' WHERE ctid = "));
	free(out);
	lostxacts_free(t.lx);
}

static void test_truncate_and_message(void **state)
{
	struct lx_test t = { 0 };
	struct msg m = { .n = 0 };
	char *out;

	(void)state;
	lx_setup(&t, 0);
	begin(&t, 0x500, 4);
	relation(&t, 16384, "public", "t", 'd', 3, t_cols);
	relation(&t, 16401, "", "odd\"name", 'd', 3, t_cols);
	m_u8(&m, 'T');
	m_u32(&m, 2);
	m_u8(&m, PGOUTPUT_TRUNCATE_CASCADE | PGOUTPUT_TRUNCATE_RESTART_SEQS);
	m_u32(&m, 16384);
	m_u32(&m, 16401);
	feed(&t, &m);
	m.n = 0;
	m_u8(&m, 'M');
	m_u8(&m, PGOUTPUT_MESSAGE_TRANSACTIONAL);
	m_u64(&m, 0x4f0);
	m_str(&m, "audit\n-- DROP TABLE x;");
	m_u32(&m, 3);
	m_u8(&m, 'a');
	m_u8(&m, 'b');
	m_u8(&m, 'c');
	feed(&t, &m);
	commit(&t, 0x500, 0x530);
	out = render(&t);
	assert_non_null(strstr(body(out),
		"TRUNCATE \"public\".\"t\", \"pg_catalog\".\"odd\"\"name\" RESTART IDENTITY CASCADE;\n"
		"-- (a logical decoding message of 3 bytes, prefix audit?-- DROP TABLE x;, not rendered)\n"));
	/* the newline in the prefix never reaches the SQL */
	assert_null(strstr(out, "\n-- DROP TABLE x;"));
	free(out);
	lostxacts_free(t.lx);
}

static void test_filter_dedup_and_order(void **state)
{
	struct lx_test t = { 0 };
	static const char *const r1[] = { "t:1", "t:one", "n" };
	static const char *const r2[] = { "t:2", "t:two", "n" };
	static const char *const r3[] = { "t:3", "t:three", "n" };
	static const char *const r4[] = { "t:4", "t:four", "n" };
	uint8_t batch[4096];
	size_t blen = 0;
	struct lostxacts_stats st;
	char *out;
	const char *p2, *p3, *p4;

	(void)state;
	lx_setup(&t, 0x1000);
	relation(&t, 16384, "public", "t", 'd', 3, t_cols);
	/* ends exactly at after_lsn: the new primary has it */
	begin(&t, 0xF00, 10);
	insert(&t, 16384, 3, r1);
	commit(&t, 0xF00, 0x1000);
	begin(&t, 0x1100, 11);
	insert(&t, 16384, 3, r2);
	commit(&t, 0x1100, 0x1130);
	begin(&t, 0x1300, 13);
	insert(&t, 16384, 3, r4);
	commit(&t, 0x1300, 0x1330);

	/* a batch body (as from the spool) holding txn 11 again and txn 12 */
	{
		struct msg ms[8];
		int n = 0;

		memset(ms, 0, sizeof(ms));
		m_u8(&ms[n], 'B'); m_u64(&ms[n], 0x1100); m_u64(&ms[n], 0); m_u32(&ms[n], 11); n++;
		m_u8(&ms[n], 'I'); m_u32(&ms[n], 16384); m_u8(&ms[n], 'N'); m_tuple(&ms[n], 3, r2); n++;
		m_u8(&ms[n], 'C'); m_u8(&ms[n], 0); m_u64(&ms[n], 0x1100); m_u64(&ms[n], 0x1130); m_u64(&ms[n], 0); n++;
		m_u8(&ms[n], 'B'); m_u64(&ms[n], 0x1200); m_u64(&ms[n], 0); m_u32(&ms[n], 12); n++;
		m_u8(&ms[n], 'I'); m_u32(&ms[n], 16384); m_u8(&ms[n], 'N'); m_tuple(&ms[n], 3, r3); n++;
		m_u8(&ms[n], 'C'); m_u8(&ms[n], 0); m_u64(&ms[n], 0x1200); m_u64(&ms[n], 0x1230); m_u64(&ms[n], 0); n++;
		for (int i = 0; i < n; i++) {
			batch[blen++] = (uint8_t)(ms[i].n >> 24);
			batch[blen++] = (uint8_t)(ms[i].n >> 16);
			batch[blen++] = (uint8_t)(ms[i].n >> 8);
			batch[blen++] = (uint8_t)ms[i].n;
			memcpy(batch + blen, ms[i].b, ms[i].n);
			blen += ms[i].n;
		}
	}
	/* fed in two pieces cut at a record boundary: transactions may span batches */
	{
		size_t cut = 4 + 21 + 4;     /* the Begin record and the next length */

		assert_false(lostxacts_feed_batch(t.lx, batch, cut, t.err, sizeof(t.err)));
		assert_non_null(strstr(t.err, "claims"));
	}
	assert_true(lostxacts_feed_batch(t.lx, batch, blen, t.err, sizeof(t.err)));

	out = render(&t);
	assert_null(strstr(out, "'one'"));
	p2 = strstr(out, "'two'");
	p3 = strstr(out, "'three'");
	p4 = strstr(out, "'four'");
	assert_non_null(p2);
	assert_non_null(p3);
	assert_non_null(p4);
	assert_null(strstr(p2 + 1, "'two'"));      /* once */
	assert_true(p2 < p3 && p3 < p4);           /* commit order, not feed order */
	assert_non_null(strstr(out, "-- 3 transaction(s), 3 statement(s), commit LSNs 0/1100 to 0/1300\n"));
	lostxacts_get_stats(t.lx, &st);
	assert_int_equal(st.kept, 3);
	assert_int_equal(st.before, 1);
	assert_int_equal(st.duplicates, 1);
	/* the cut feed failed inside a transaction, which was dropped */
	assert_int_equal(st.incomplete, 1);
	free(out);
	lostxacts_free(t.lx);
}

static void test_skipped_transactions(void **state)
{
	struct lx_test t = { 0 };
	static const char *const r1[] = { "t:1", "t:mine", "n" };
	static const char *const r2[] = { "t:2", "t:theirs", "n" };
	struct lostxacts_stats st;
	struct msg m = { .n = 0 };
	char *out;

	(void)state;
	lx_setup(&t, 0);
	relation(&t, 16384, "public", "t", 'd', 3, t_cols);
	/* applied by strait from another site: not lost */
	begin(&t, 0x600, 20);
	m_u8(&m, 'O');
	m_u64(&m, 0x9999);
	m_str(&m, "strait_app");
	feed(&t, &m);
	insert(&t, 16384, 3, r2);
	commit(&t, 0x600, 0x630);
	/* no changes (another publication's tables) */
	begin(&t, 0x700, 21);
	commit(&t, 0x700, 0x730);
	/* another origin is an ordinary transaction */
	begin(&t, 0x800, 22);
	m.n = 0;
	m_u8(&m, 'O');
	m_u64(&m, 0x1);
	m_str(&m, "pg_16400");
	feed(&t, &m);
	insert(&t, 16384, 3, r1);
	commit(&t, 0x800, 0x830);
	/* a change outside any transaction, then a transaction left open */
	insert(&t, 16384, 3, r1);
	begin(&t, 0x900, 23);
	out = render(&t);
	assert_null(strstr(out, "'theirs'"));
	assert_non_null(strstr(out, "'mine'"));
	assert_non_null(strstr(out, "-- WARNING: the input ended inside a transaction, which is not in this file\n"));
	lostxacts_get_stats(t.lx, &st);
	assert_int_equal(st.kept, 1);
	assert_int_equal(st.strait_origin, 1);
	assert_int_equal(st.empty, 1);
	assert_int_equal(st.orphans, 1);
	assert_int_equal(st.incomplete, 1);
	free(out);
	lostxacts_free(t.lx);
}

static void test_unknown_relation_and_header_sanitized(void **state)
{
	struct lx_test t = { 0 };
	static const char *const r1[] = { "t:1", "t:x", "n" };
	struct lostxacts_options o = {
		.stream = "evil\nDROP TABLE t; --",
		.slot = "s",
		.encoding = "LATIN1",
		.generated_at_us = 1,
	};
	struct lostxacts_stats st;
	char *out;

	(void)state;
	t.lx = lostxacts_new(&o);
	assert_non_null(t.lx);
	assert_true(lostxacts_add_note(t.lx, "note with\ttab and %s", "newline\n"));
	begin(&t, 0xA00, 30);
	insert(&t, 99999, 3, r1);
	commit(&t, 0xA00, 0xA30);
	out = render(&t);
	assert_non_null(strstr(out, "-- stream: evil?DROP TABLE t; --\n"));
	assert_non_null(strstr(out, "-- note with?tab and newline?\n"));
	assert_null(strstr(out, "\nDROP TABLE"));
	assert_non_null(strstr(out, "SET client_encoding = 'LATIN1';\n"));
	assert_non_null(strstr(out, "-- generated 1970-01-01T00:00:00.000001Z\n"));
	assert_non_null(strstr(body(out), "-- WARNING: 1 change(s) of this transaction could not be rendered (see below)\n"
		"BEGIN;\n"
		"-- WARNING: a change was not rendered: INSERT into relation OID 99999, whose Relation "
		"message was not seen\nCOMMIT;\n"));
	lostxacts_get_stats(t.lx, &st);
	assert_int_equal(st.unrendered, 1);
	assert_int_equal(st.statements, 0);
	free(out);
	lostxacts_free(t.lx);
}

static void test_no_transactions(void **state)
{
	struct lx_test t = { 0 };
	char *out;

	(void)state;
	lx_setup(&t, 0);
	out = render(&t);
	assert_non_null(strstr(out, "-- no lost transactions\n"));
	assert_null(strstr(out, "BEGIN;"));
	free(out);
	lostxacts_free(t.lx);
}

static void test_broken_input(void **state)
{
	struct lx_test t = { 0 };
	static const uint8_t short_len[] = { 0, 0, 1 };
	static const uint8_t bad_msg[] = { 0, 0, 0, 2, 'B', 0 };
	static const uint8_t unknown[] = { 'Z' };
	static const uint8_t stream_start[] = { 'S', 0, 0, 0, 1, 1 };
	struct msg m = { .n = 0 };
	static const char *const r1[] = { "t:1", "t:x", "n" };
	static const char *const too_few[] = { "t:1", "t:x" };
	struct lostxacts_stats st;
	char *out;

	(void)state;
	lx_setup(&t, 0);
	assert_false(lostxacts_feed_batch(t.lx, short_len, sizeof(short_len), t.err, sizeof(t.err)));
	assert_non_null(strstr(t.err, "cut inside a record length"));
	assert_false(lostxacts_feed_batch(t.lx, bad_msg, sizeof(bad_msg), t.err, sizeof(t.err)));
	assert_non_null(strstr(t.err, "malformed pgoutput message (type 'B')"));
	assert_false(lostxacts_feed_message(t.lx, unknown, sizeof(unknown), t.err, sizeof(t.err)));
	assert_false(lostxacts_feed_message(t.lx, stream_start, sizeof(stream_start), t.err, sizeof(t.err)));
	assert_non_null(strstr(t.err, "streamed transactions"));
	/* Commit that does not match its Begin */
	relation(&t, 16384, "public", "t", 'd', 3, t_cols);
	begin(&t, 0xB00, 40);
	insert(&t, 16384, 3, r1);
	m_u8(&m, 'C');
	m_u8(&m, 0);
	m_u64(&m, 0xB08);
	m_u64(&m, 0xB30);
	m_u64(&m, 0);
	assert_false(lostxacts_feed_message(t.lx, m.b, m.n, t.err, sizeof(t.err)));
	assert_non_null(strstr(t.err, "does not match"));
	/* still usable afterwards; a tuple of the wrong width is a warning, not SQL */
	begin(&t, 0xC00, 41);
	insert(&t, 16384, 2, too_few);
	insert(&t, 16384, 3, r1);
	commit(&t, 0xC00, 0xC30);
	out = render(&t);
	assert_non_null(strstr(body(out), "column count differs"));
	assert_non_null(strstr(body(out), "VALUES ('1', 'x', NULL);"));
	lostxacts_get_stats(t.lx, &st);
	assert_int_equal(st.kept, 1);
	assert_int_equal(st.incomplete, 1);
	free(out);
	lostxacts_free(t.lx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_literals),
		cmocka_unit_test(test_whole_file),
		cmocka_unit_test(test_nulls_and_unchanged_toast),
		cmocka_unit_test(test_key_change),
		cmocka_unit_test(test_replica_identity_full),
		cmocka_unit_test(test_truncate_and_message),
		cmocka_unit_test(test_filter_dedup_and_order),
		cmocka_unit_test(test_skipped_transactions),
		cmocka_unit_test(test_unknown_relation_and_header_sanitized),
		cmocka_unit_test(test_no_transactions),
		cmocka_unit_test(test_broken_input),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
