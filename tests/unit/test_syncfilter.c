/*
 * test_syncfilter.c — the sink's filter after an initial sync: changes to a
 * table whose copy was taken at or after their transaction's commit are
 * dropped, everything else passes byte for byte; transactions spanning
 * batches, Truncate rewritten, relation renames, the "passed" shortcut and
 * malformed bodies. Batches are built here from pgoutput's documented
 * message formats.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "replicator/syncfilter.h"

/* ---- building batches ---- */

struct buf {
	uint8_t data[4096];
	size_t len;
};

static void put(struct buf *b, const void *p, size_t n)
{
	assert_true(b->len + n <= sizeof(b->data));
	memcpy(b->data + b->len, p, n);
	b->len += n;
}

static void put8(struct buf *b, uint8_t v)
{
	put(b, &v, 1);
}

static void put16(struct buf *b, uint16_t v)
{
	uint8_t p[2] = { (uint8_t)(v >> 8), (uint8_t)v };

	put(b, p, 2);
}

static void put32(struct buf *b, uint32_t v)
{
	uint8_t p[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v };

	put(b, p, 4);
}

static void put64(struct buf *b, uint64_t v)
{
	put32(b, (uint32_t)(v >> 32));
	put32(b, (uint32_t)v);
}

static void putstr(struct buf *b, const char *s)
{
	put(b, s, strlen(s) + 1);
}

/* Appends one message (m) to batch as a record: u32 length + bytes. */
static void record(struct buf *batch, const struct buf *m)
{
	put32(batch, (uint32_t)m->len);
	put(batch, m->data, m->len);
}

static void begin(struct buf *batch, uint64_t final_lsn)
{
	struct buf m = { .len = 0 };

	put8(&m, 'B');
	put64(&m, final_lsn);
	put64(&m, 700000000000000);
	put32(&m, 1234);
	record(batch, &m);
}

static void commit(struct buf *batch, uint64_t lsn)
{
	struct buf m = { .len = 0 };

	put8(&m, 'C');
	put8(&m, 0);
	put64(&m, lsn);
	put64(&m, lsn + 0x30);
	put64(&m, 700000000000000);
	record(batch, &m);
}

static void relation(struct buf *batch, uint32_t oid, const char *nsp, const char *rel)
{
	struct buf m = { .len = 0 };

	put8(&m, 'R');
	put32(&m, oid);
	putstr(&m, nsp);
	putstr(&m, rel);
	put8(&m, 'd');
	put16(&m, 1);
	put8(&m, 1);
	putstr(&m, "id");
	put32(&m, 23);
	put32(&m, 0xffffffffu);
	record(batch, &m);
}

static void tuple(struct buf *m, const char *value)
{
	put16(m, 1);
	put8(m, 't');
	put32(m, (uint32_t)strlen(value));
	put(m, value, strlen(value));
}

static void insert(struct buf *batch, uint32_t oid, const char *value)
{
	struct buf m = { .len = 0 };

	put8(&m, 'I');
	put32(&m, oid);
	put8(&m, 'N');
	tuple(&m, value);
	record(batch, &m);
}

static void update(struct buf *batch, uint32_t oid, const char *value)
{
	struct buf m = { .len = 0 };

	put8(&m, 'U');
	put32(&m, oid);
	put8(&m, 'N');
	tuple(&m, value);
	record(batch, &m);
}

static void delete(struct buf *batch, uint32_t oid, const char *value)
{
	struct buf m = { .len = 0 };

	put8(&m, 'D');
	put32(&m, oid);
	put8(&m, 'K');
	tuple(&m, value);
	record(batch, &m);
}

static void truncate_(struct buf *batch, const uint32_t *oids, uint32_t n, uint8_t options)
{
	struct buf m = { .len = 0 };

	put8(&m, 'T');
	put32(&m, n);
	put8(&m, options);
	for (uint32_t i = 0; i < n; i++)
		put32(&m, oids[i]);
	record(batch, &m);
}

/* The message types of a batch, in order, e.g. "BRIIC". */
static void types(const uint8_t *body, size_t len, char *out)
{
	size_t pos = 0, n = 0;

	while (pos + 4 <= len) {
		uint32_t l = (uint32_t)body[pos] << 24 | (uint32_t)body[pos + 1] << 16 |
			     (uint32_t)body[pos + 2] << 8 | body[pos + 3];
		out[n++] = (char)body[pos + 4];
		pos += 4 + l;
	}
	assert_int_equal(pos, len);
	out[n] = '\0';
}

/* The relation OIDs of the batch's changes (a Truncate lists its own), e.g. "1 2 2". */
static void relids(const uint8_t *body, size_t len, char *out)
{
	size_t pos = 0;

	out[0] = '\0';
	while (pos + 4 <= len) {
		uint32_t l = (uint32_t)body[pos] << 24 | (uint32_t)body[pos + 1] << 16 |
			     (uint32_t)body[pos + 2] << 8 | body[pos + 3];
		const uint8_t *m = body + pos + 4;
		char one[16];

		if (m[0] == 'I' || m[0] == 'U' || m[0] == 'D') {
			snprintf(one, sizeof(one), "%s%u", out[0] ? " " : "",
				 (unsigned)((uint32_t)m[1] << 24 | (uint32_t)m[2] << 16 |
					    (uint32_t)m[3] << 8 | m[4]));
			strcat(out, one);
		} else if (m[0] == 'T') {
			uint32_t n = (uint32_t)m[1] << 24 | (uint32_t)m[2] << 16 | (uint32_t)m[3] << 8 | m[4];

			assert_int_equal(l, 6 + 4 * n);
			for (uint32_t i = 0; i < n; i++) {
				const uint8_t *p = m + 6 + 4 * i;

				snprintf(one, sizeof(one), "%sT%u", out[0] ? " " : "",
					 (unsigned)((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
						    (uint32_t)p[2] << 8 | p[3]));
				strcat(out, one);
			}
		}
		pos += 4 + l;
	}
}

#define T_OID 16401u     /* public.t, synced at 0x2000 */
#define U_OID 16402u     /* public.u, synced at 0x1000 (the slot's start) */
#define V_OID 16403u     /* public.v, not synced (a table created later) */

static struct syncfilter *filter_tu(void)
{
	struct syncfilter *f = syncfilter_new();

	assert_non_null(f);
	assert_true(syncfilter_set_table(f, "public", "t", 0x2000));
	assert_true(syncfilter_set_table(f, "public", "u", 0x1000));
	return f;
}

static void run(struct syncfilter *f, const struct buf *in, const uint8_t **out, size_t *out_len)
{
	char err[256] = "";

	assert_true(syncfilter_run(f, in->data, in->len, out, out_len, err, sizeof(err)));
	assert_string_equal(err, "");
}

/* ---- tests ---- */

static void test_nothing_synced_passes_untouched(void **state)
{
	struct syncfilter *f = syncfilter_new();
	struct buf b = { .len = 0 };
	const uint8_t *out;
	size_t len;

	(void)state;
	assert_false(syncfilter_active(f));
	begin(&b, 0x100);
	relation(&b, T_OID, "public", "t");
	insert(&b, T_OID, "1");
	commit(&b, 0x100);
	run(f, &b, &out, &len);
	assert_ptr_equal(out, b.data);
	assert_int_equal(len, b.len);
	syncfilter_free(f);
}

static void test_changes_before_the_copy_are_dropped(void **state)
{
	struct syncfilter *f = filter_tu();
	struct buf b = { .len = 0 };
	const uint8_t *out;
	size_t len;
	char t[32], r[64];

	(void)state;
	assert_true(syncfilter_active(f));
	/* committed at 0x1800: in t's copy (taken at 0x2000), not in u's (0x1000) */
	begin(&b, 0x1800);
	relation(&b, T_OID, "public", "t");
	relation(&b, U_OID, "public", "u");
	relation(&b, V_OID, "public", "v");
	insert(&b, T_OID, "1");
	insert(&b, U_OID, "2");
	update(&b, T_OID, "3");
	delete(&b, T_OID, "4");
	insert(&b, V_OID, "5");
	commit(&b, 0x1800);
	run(f, &b, &out, &len);
	assert_ptr_not_equal(out, b.data);
	types(out, len, t);
	relids(out, len, r);
	assert_string_equal(t, "BRRRIIC");
	assert_string_equal(r, "16402 16403");
	assert_int_equal(syncfilter_dropped(f), 3);
	assert_true(syncfilter_active(f));
	syncfilter_free(f);
}

static void test_commit_at_the_sync_lsn_is_applied(void **state)
{
	struct syncfilter *f = filter_tu();
	struct buf b = { .len = 0 }, c = { .len = 0 };
	const uint8_t *out;
	size_t len;

	(void)state;
	relation(&b, T_OID, "public", "t");
	begin(&b, 0x1fff);
	insert(&b, T_OID, "1");
	commit(&b, 0x1fff);
	run(f, &b, &out, &len);
	assert_int_equal(syncfilter_dropped(f), 1);

	/* a commit record starting at the copy's LSN is not in the copy */
	begin(&c, 0x2000);
	insert(&c, T_OID, "2");
	commit(&c, 0x2000);
	run(f, &c, &out, &len);
	assert_ptr_equal(out, c.data);
	assert_int_equal(len, c.len);
	assert_int_equal(syncfilter_dropped(f), 1);
	/* past every sync LSN: nothing more to look at */
	assert_false(syncfilter_active(f));
	syncfilter_free(f);
}

static void test_pass_midway_keeps_the_rest(void **state)
{
	struct syncfilter *f = filter_tu();
	struct buf b = { .len = 0 };
	const uint8_t *out;
	size_t len;
	char t[32], r[64];

	(void)state;
	relation(&b, T_OID, "public", "t");
	begin(&b, 0x1500);
	insert(&b, T_OID, "1");
	commit(&b, 0x1500);
	begin(&b, 0x2100);
	insert(&b, T_OID, "2");
	update(&b, T_OID, "3");
	commit(&b, 0x2100);
	run(f, &b, &out, &len);
	types(out, len, t);
	relids(out, len, r);
	assert_string_equal(t, "RBCBIUC");
	assert_string_equal(r, "16401 16401");
	assert_false(syncfilter_active(f));

	/* the source starts over from further back: look again */
	syncfilter_restart(f);
	assert_true(syncfilter_active(f));
	syncfilter_free(f);
}

static void test_transaction_across_batches(void **state)
{
	struct syncfilter *f = filter_tu();
	struct buf b1 = { .len = 0 }, b2 = { .len = 0 };
	const uint8_t *out;
	size_t len;
	char t[32];

	(void)state;
	begin(&b1, 0x1500);
	relation(&b1, T_OID, "public", "t");
	insert(&b1, T_OID, "1");
	run(f, &b1, &out, &len);
	types(out, len, t);
	assert_string_equal(t, "BR");

	/* the rest of the same transaction */
	update(&b2, T_OID, "1");
	insert(&b2, U_OID, "2");
	commit(&b2, 0x1500);
	run(f, &b2, &out, &len);
	types(out, len, t);
	assert_string_equal(t, "IC");
	assert_int_equal(syncfilter_dropped(f), 2);
	syncfilter_free(f);
}

static void test_truncate_loses_synced_relations(void **state)
{
	struct syncfilter *f = filter_tu();
	struct buf b = { .len = 0 };
	const uint32_t all[] = { T_OID, U_OID, V_OID }, only_t[] = { T_OID };
	const uint8_t *out;
	size_t len;
	char t[32], r[64];

	(void)state;
	relation(&b, T_OID, "public", "t");
	relation(&b, U_OID, "public", "u");
	relation(&b, V_OID, "public", "v");
	begin(&b, 0x1800);
	truncate_(&b, all, 3, 0x03);
	truncate_(&b, only_t, 1, 0);
	commit(&b, 0x1800);
	run(f, &b, &out, &len);
	types(out, len, t);
	relids(out, len, r);
	assert_string_equal(t, "RRRBTC");
	assert_string_equal(r, "T16402 T16403");
	/* the options byte (CASCADE, RESTART IDENTITY) is kept */
	{
		const uint8_t *p = out;
		size_t pos = 0;

		while (p[pos + 4] != 'T')
			pos += 4 + ((size_t)p[pos] << 24 | (size_t)p[pos + 1] << 16 |
				    (size_t)p[pos + 2] << 8 | p[pos + 3]);
		assert_int_equal(p[pos + 4 + 5], 0x03);
	}
	assert_int_equal(syncfilter_dropped(f), 2);
	syncfilter_free(f);
}

static void test_rename_and_late_set_table(void **state)
{
	struct syncfilter *f = syncfilter_new();
	struct buf b = { .len = 0 }, c = { .len = 0 };
	const uint8_t *out;
	size_t len;
	char t[32];

	(void)state;
	assert_true(syncfilter_set_table(f, "public", "u", 0x1000));
	/* relation seen before its table's sync LSN is known */
	relation(&b, T_OID, "public", "t");
	begin(&b, 0x900);
	insert(&b, T_OID, "1");
	commit(&b, 0x900);
	run(f, &b, &out, &len);
	assert_ptr_equal(out, b.data);
	assert_true(syncfilter_set_table(f, "public", "t", 0x2000));

	/* now t's changes before 0x2000 go; a rename to u makes it u's */
	begin(&c, 0x1500);
	insert(&c, T_OID, "2");
	relation(&c, T_OID, "public", "u");
	insert(&c, T_OID, "3");
	commit(&c, 0x1500);
	run(f, &c, &out, &len);
	types(out, len, t);
	assert_string_equal(t, "BRIC");
	assert_int_equal(syncfilter_dropped(f), 1);
	syncfilter_free(f);
}

static void test_changes_of_unknown_relations_pass(void **state)
{
	struct syncfilter *f = filter_tu();
	struct buf b = { .len = 0 };
	const uint8_t *out;
	size_t len;

	(void)state;
	begin(&b, 0x100);
	insert(&b, 99999, "1");
	commit(&b, 0x100);
	run(f, &b, &out, &len);
	assert_ptr_equal(out, b.data);
	syncfilter_free(f);
}

static void test_many_relations(void **state)
{
	struct syncfilter *f = syncfilter_new();
	static struct buf b;
	const uint8_t *out;
	size_t len;
	char name[16];

	(void)state;
	assert_true(syncfilter_set_table(f, "public", "r77", 0x5000));
	b.len = 0;
	begin(&b, 0x4000);
	for (uint32_t i = 0; i < 100; i++) {
		snprintf(name, sizeof(name), "r%u", i);
		relation(&b, 20000 + i, "public", name);
	}
	insert(&b, 20000 + 77, "x");
	insert(&b, 20000 + 78, "y");
	commit(&b, 0x4000);
	run(f, &b, &out, &len);
	assert_int_equal(len, b.len - (4 + 1 + 4 + 1 + 2 + 1 + 4 + 1));
	assert_int_equal(syncfilter_dropped(f), 1);
	syncfilter_free(f);
}

static void test_malformed_bodies(void **state)
{
	struct syncfilter *f = filter_tu();
	struct buf b = { .len = 0 };
	const uint8_t *out;
	size_t len;
	char err[256];
	const uint8_t zero_len[] = { 0, 0, 0, 0 };
	const uint8_t short_hdr[] = { 0, 0, 1 };
	const uint8_t past_end[] = { 0, 0, 0, 9, 'C', 0 };
	const uint8_t short_begin[] = { 0, 0, 0, 3, 'B', 0, 1 };
	const uint8_t short_insert[] = { 0, 0, 0, 3, 'I', 0, 1 };
	const uint8_t bad_relation[] = { 0, 0, 0, 6, 'R', 0, 0, 0, 1, 'p' };

	(void)state;
	assert_false(syncfilter_run(f, zero_len, sizeof(zero_len), &out, &len, err, sizeof(err)));
	assert_false(syncfilter_run(f, short_hdr, sizeof(short_hdr), &out, &len, err, sizeof(err)));
	assert_non_null(strstr(err, "cut short"));
	assert_false(syncfilter_run(f, past_end, sizeof(past_end), &out, &len, err, sizeof(err)));
	assert_non_null(strstr(err, "runs past"));
	assert_false(syncfilter_run(f, short_begin, sizeof(short_begin), &out, &len, err, sizeof(err)));
	assert_non_null(strstr(err, "BEGIN"));
	begin(&b, 0x100);
	run(f, &b, &out, &len);
	assert_false(syncfilter_run(f, short_insert, sizeof(short_insert), &out, &len, err, sizeof(err)));
	assert_false(syncfilter_run(f, bad_relation, sizeof(bad_relation), &out, &len, err, sizeof(err)));
	assert_non_null(strstr(err, "RELATION"));
	/* an empty body is fine */
	assert_true(syncfilter_run(f, NULL, 0, &out, &len, err, sizeof(err)));
	assert_int_equal(len, 0);
	syncfilter_free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nothing_synced_passes_untouched),
		cmocka_unit_test(test_changes_before_the_copy_are_dropped),
		cmocka_unit_test(test_commit_at_the_sync_lsn_is_applied),
		cmocka_unit_test(test_pass_midway_keeps_the_rest),
		cmocka_unit_test(test_transaction_across_batches),
		cmocka_unit_test(test_truncate_loses_synced_relations),
		cmocka_unit_test(test_rename_and_late_set_table),
		cmocka_unit_test(test_changes_of_unknown_relations_pass),
		cmocka_unit_test(test_many_relations),
		cmocka_unit_test(test_malformed_bodies),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
