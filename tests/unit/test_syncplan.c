/*
 * test_syncplan.c — what both ends of an initial sync agree on: the plan's
 * text (round trip with hostile names, and every malformed form a peer
 * could send refused with a reason), the origin names that record loaded
 * tables on the target (written and parsed back), and the table sets.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "replicator/syncplan.h"

static void test_round_trip(void **state)
{
	struct syncplan p, q;
	struct syncplan_text text = { 0 };
	char err[256];

	(void)state;
	syncplan_init(&p);
	p.generation = 4000000000u;
	assert_true(syncplan_add(&p, "public", "pgbench_accounts", true));
	assert_true(syncplan_add_column(&p, "aid"));
	assert_true(syncplan_add_column(&p, "filler"));
	assert_true(syncplan_add(&p, "Odd\tSchema", "line\nbreak\\and\rmore", true));
	assert_true(syncplan_add_column(&p, "col\t\"quoted\""));
	assert_true(syncplan_add(&p, "public", "kept", false));
	assert_true(syncplan_add(&p, "s", "no_columns", true));
	assert_true(syncplan_add(&p, "ünïcode", "テーブル", true));
	assert_true(syncplan_add_column(&p, "列"));
	assert_true(syncplan_add(&p, "public", "big", true));
	assert_true(syncplan_in_ranges(&p, 12));
	assert_false(syncplan_in_ranges(&p, 12));          /* once */
	for (uint32_t k = 4; k < 12; k++)
		(void)syncrange_set_add(&p.tables[5].copied, k);
	(void)syncrange_set_add(&p.tables[5].copied, 1);
	assert_true(syncplan_add_column(&p, "id"));
	assert_true(syncplan_encode(&p, &text));
	assert_non_null(strstr(text.data, "r\tpublic\tbig\t12\t1,4-11\tid\n"));
	assert_non_null(strstr(text.data, "strait-sync-plan\t2\t4000000000\n"));
	assert_non_null(strstr(text.data, "c\tOdd\\tSchema\tline\\nbreak\\\\and\\rmore\tcol\\t\"quoted\"\n"));
	assert_non_null(strstr(text.data, "k\tpublic\tkept\n"));

	assert_true(syncplan_decode(text.data, text.len, &q, err, sizeof(err)));
	assert_int_equal(q.generation, 4000000000u);
	assert_int_equal(q.n, 6);
	assert_int_equal(q.tables[5].ranges, 12);
	assert_int_equal(q.tables[5].copied.count, 9);
	assert_true(syncrange_set_has(&q.tables[5].copied, 1));
	assert_false(syncrange_set_has(&q.tables[5].copied, 2));
	assert_int_equal(q.tables[0].ranges, 0);
	for (size_t i = 0; i < p.n; i++) {
		assert_string_equal(q.tables[i].schema, p.tables[i].schema);
		assert_string_equal(q.tables[i].table, p.tables[i].table);
		assert_int_equal(q.tables[i].copy, p.tables[i].copy);
		assert_int_equal(q.tables[i].ncolumns, p.tables[i].ncolumns);
		for (size_t c = 0; c < p.tables[i].ncolumns; c++)
			assert_string_equal(q.tables[i].columns[c], p.tables[i].columns[c]);
	}
	assert_int_equal(syncplan_find(&q, "public", 6, "kept", 4), 2);
	assert_int_equal(syncplan_find(&q, "public", 6, "kep", 3), -1);
	syncplan_free(&q);
	syncplan_free(&p);
	syncplan_text_free(&text);
}

static void test_empty_plan(void **state)
{
	struct syncplan p;
	char err[256];
	const char *text = "strait-sync-plan\t2\t0\n";

	(void)state;
	assert_true(syncplan_decode(text, strlen(text), &p, err, sizeof(err)));
	assert_int_equal(p.n, 0);
	syncplan_free(&p);
}

/* Each malformed plan is refused, with a reason that contains `why`. */
static void refused(const char *text, size_t len, const char *why)
{
	struct syncplan p;
	char err[256] = "";

	if (!syncplan_decode(text, len, &p, err, sizeof(err))) {
		if (!strstr(err, why))
			fail_msg("\"%s\" refused with \"%s\", expected \"%s\"", text, err, why);
		assert_int_equal(p.n, 0);
		assert_null(p.tables);
		return;
	}
	syncplan_free(&p);
	fail_msg("accepted a malformed plan: \"%s\"", text);
}

#define REFUSED(text, why) refused(text, sizeof(text) - 1, why)

static void test_malformed_plans(void **state)
{
	char *big;

	(void)state;
	REFUSED("", "empty plan");
	REFUSED("strait-sync-plan\t1\t1\n", "not a version 2 plan");
	REFUSED("strait-sync-plan\t3\t1\n", "not a version 2 plan");
	REFUSED("strait-sync-plan\t2\n", "not a version 2 plan");
	REFUSED("something-else\t2\t1\n", "not a version 2 plan");
	REFUSED("strait-sync-plan\t2\t\n", "bad generation");
	REFUSED("strait-sync-plan\t2\t-1\n", "bad generation");
	REFUSED("strait-sync-plan\t2\t4294967296\n", "bad generation");
	REFUSED("strait-sync-plan\t2\t12x\n", "bad generation");
	REFUSED("strait-sync-plan\t2\t1", "does not end with a newline");
	REFUSED("strait-sync-plan\t2\t1\nc\tpublic\tt", "does not end with a newline");
	REFUSED("strait-sync-plan\t2\t1\n\n", "expected c, r or k");
	REFUSED("strait-sync-plan\t2\t1\nx\tpublic\tt\n", "expected c, r or k");
	REFUSED("strait-sync-plan\t2\t1\ncc\tpublic\tt\n", "expected c, r or k");
	REFUSED("strait-sync-plan\t2\t1\nc\tpublic\n", "expected c, r or k");
	REFUSED("strait-sync-plan\t2\t1\nk\tpublic\tt\tcol\n", "kept table lists no columns");
	REFUSED("strait-sync-plan\t2\t1\nc\t\tt\n", "empty name");
	REFUSED("strait-sync-plan\t2\t1\nc\tpublic\t\n", "empty name");
	REFUSED("strait-sync-plan\t2\t1\nc\tpublic\tt\t\n", "empty column name");
	REFUSED("strait-sync-plan\t2\t1\nc\tpub\\xlic\tt\n", "bad escape");
	REFUSED("strait-sync-plan\t2\t1\nc\tpublic\tt\\\n", "bad escape");
	REFUSED("strait-sync-plan\t2\t1\nc\tpub\0lic\tt\n", "NUL byte");
	REFUSED("strait-sync-plan\t2\t1\nc\tpublic\tt\tc\\q\n", "bad escape");
	REFUSED("strait-sync-plan\t2\t1\nc\tpublic\tt\nk\tpublic\tt\n", "listed twice");
	REFUSED("strait-sync-plan\t2\t1\nr\tpublic\tt\n", "needs their count and list");
	REFUSED("strait-sync-plan\t2\t1\nr\tpublic\tt\t4\n", "needs their count and list");
	REFUSED("strait-sync-plan\t2\t1\nr\tpublic\tt\t1\t0\n", "range count not from 2");
	REFUSED("strait-sync-plan\t2\t1\nr\tpublic\tt\t4097\t0\n", "range count not from 2");
	REFUSED("strait-sync-plan\t2\t1\nr\tpublic\tt\t04\t0\n", "bad range count");
	REFUSED("strait-sync-plan\t2\t1\nr\tpublic\tt\t99999999999\t0\n", "bad range count");
	REFUSED("strait-sync-plan\t2\t1\nr\tpublic\tt\tx\t0\n", "bad range count");
	REFUSED("strait-sync-plan\t2\t1\nr\tpublic\tt\t4\t\n", "bad list of ranges");
	REFUSED("strait-sync-plan\t2\t1\nr\tpublic\tt\t4\t4\n", "bad list of ranges");
	REFUSED("strait-sync-plan\t2\t1\nr\tpublic\tt\t4\t2,1\n", "bad list of ranges");
	REFUSED("strait-sync-plan\t2\t1\nr\tpublic\tt\t4\t0-1\t\n", "empty column name");

	/* more columns than a table can have */
	big = malloc(64 + 2 * (SYNCPLAN_MAX_COLUMNS + 4));
	assert_non_null(big);
	strcpy(big, "strait-sync-plan\t2\t1\nc\ts\tt");
	for (unsigned i = 0; i < SYNCPLAN_MAX_COLUMNS + 1; i++)
		strcat(big, "\tc");
	strcat(big, "\n");
	refused(big, strlen(big), "more than 1664 columns");
	big[strlen(big) - 1] = '\0';
	strcat(big, "\tc\tc\n");
	refused(big, strlen(big), "too many fields");
	free(big);
	refused("x", SYNCPLAN_MAX_TEXT + 1, "over the limit");
}

static void test_origin_names(void **state)
{
	char *name, *schema, *table;

	(void)state;
	name = syncplan_table_origin("app", "public", "pgbench_accounts");
	assert_string_equal(name, "strait_app:sync:public.pgbench_accounts");
	assert_int_equal(syncplan_parse_origin("app", name, &schema, &table), SYNCPLAN_ORIGIN_TABLE);
	assert_string_equal(schema, "public");
	assert_string_equal(table, "pgbench_accounts");
	free(schema);
	free(table);
	free(name);

	name = syncplan_table_origin("app-2", "Odd.Schema", "it's \"x\".y");
	assert_string_equal(name, "strait_app-2:sync:\"Odd.Schema\".\"it's \"\"x\"\".y\"");
	assert_int_equal(syncplan_parse_origin("app-2", name, &schema, &table), SYNCPLAN_ORIGIN_TABLE);
	assert_string_equal(schema, "Odd.Schema");
	assert_string_equal(table, "it's \"x\".y");
	free(schema);
	free(table);
	/* another stream's */
	assert_int_equal(syncplan_parse_origin("app", name, &schema, &table), SYNCPLAN_ORIGIN_OTHER);
	assert_null(schema);
	free(name);

	name = syncplan_table_origin("app", "1st", "Upper");
	assert_string_equal(name, "strait_app:sync:\"1st\".\"Upper\"");
	free(name);

	name = syncplan_stream_origin("app");
	assert_string_equal(name, "strait_app:sync");
	assert_int_equal(syncplan_parse_origin("app", name, &schema, &table), SYNCPLAN_ORIGIN_STREAM);
	free(name);

	/* not ours, or not parsable */
	assert_int_equal(syncplan_parse_origin("app", "strait_app", &schema, &table), SYNCPLAN_ORIGIN_OTHER);
	assert_int_equal(syncplan_parse_origin("app", "strait_app:syncx", &schema, &table),
			 SYNCPLAN_ORIGIN_OTHER);
	assert_int_equal(syncplan_parse_origin("app", "strait_app_sync:public.t", &schema, &table),
			 SYNCPLAN_ORIGIN_OTHER);
	assert_int_equal(syncplan_parse_origin("app", "strait_app:sync:public", &schema, &table),
			 SYNCPLAN_ORIGIN_OTHER);
	assert_int_equal(syncplan_parse_origin("app", "strait_app:sync:public.t.u", &schema, &table),
			 SYNCPLAN_ORIGIN_OTHER);
	assert_int_equal(syncplan_parse_origin("app", "strait_app:sync:\"unclosed.t", &schema, &table),
			 SYNCPLAN_ORIGIN_OTHER);
	assert_int_equal(syncplan_parse_origin("app", "strait_app:sync:\"\".t", &schema, &table),
			 SYNCPLAN_ORIGIN_OTHER);
	assert_int_equal(syncplan_parse_origin("app", "strait_app:sync:Public.t", &schema, &table),
			 SYNCPLAN_ORIGIN_OTHER);
	assert_null(schema);
	assert_null(table);

	name = syncplan_qualified("public", "T");
	assert_string_equal(name, "public.\"T\"");
	free(name);
}

static void test_sets(void **state)
{
	struct syncplan_set s = { 0 };
	const struct syncplan_set_entry *e;
	char schema[16], table[16];

	(void)state;
	assert_null(syncplan_set_get(&s, "a", 1, "b", 1));
	for (unsigned i = 0; i < 5000; i++) {
		snprintf(schema, sizeof(schema), "s%u", i % 7);
		snprintf(table, sizeof(table), "t%u", i);
		assert_true(syncplan_set_put(&s, schema, strlen(schema), table, strlen(table), i));
	}
	assert_int_equal(s.n, 5000);
	e = syncplan_set_get(&s, "s2", 2, "t1234", 5);
	assert_non_null(e);
	assert_int_equal(e->value, 1234);
	assert_string_equal(e->table, "t1234");
	/* same names split differently are different tables */
	assert_true(syncplan_set_put(&s, "ab", 2, "c", 1, 1));
	assert_true(syncplan_set_put(&s, "a", 1, "bc", 2, 2));
	assert_int_equal(syncplan_set_get(&s, "ab", 2, "c", 1)->value, 1);
	assert_int_equal(syncplan_set_get(&s, "a", 1, "bc", 2)->value, 2);
	/* replacing keeps one entry; names from the wire are not NUL-terminated */
	assert_true(syncplan_set_put(&s, "abXX", 2, "cYY", 1, 9));
	assert_int_equal(s.n, 5002);
	assert_int_equal(syncplan_set_get(&s, "ab", 2, "c", 1)->value, 9);
	assert_null(syncplan_set_get(&s, "s3", 2, "t1234", 5));
	syncplan_set_free(&s);
	assert_int_equal(s.n, 0);
}

static void test_ranges_book(void **state)
{
	struct syncplan_ranges r = { 0 };
	const struct syncplan_ranges_entry *e;

	(void)state;
	assert_null(syncplan_ranges_get(&r, "public", 6, "big", 3));
	assert_true(syncplan_ranges_add(&r, "public", 6, "big", 3, 0x100, 0, 4));
	assert_true(syncplan_ranges_add(&r, "public", 6, "big", 3, 0x100, 3, 4));
	assert_true(syncplan_ranges_add(&r, "public", 6, "big", 3, 0x100, 3, 4));
	e = syncplan_ranges_get(&r, "public", 6, "big", 3);
	assert_non_null(e);
	assert_true(e->lsn == 0x100);
	assert_int_equal(e->got.count, 2);
	assert_true(syncrange_set_has(&e->got, 3));
	/* another snapshot's range replaces the older copy's */
	assert_true(syncplan_ranges_add(&r, "public", 6, "big", 3, 0x200, 1, 4));
	e = syncplan_ranges_get(&r, "public", 6, "big", 3);
	assert_true(e->lsn == 0x200);
	assert_int_equal(e->got.count, 1);
	/* and so does another count */
	assert_true(syncplan_ranges_add(&r, "public", 6, "big", 3, 0x200, 5, 6));
	e = syncplan_ranges_get(&r, "public", 6, "big", 3);
	assert_int_equal(e->got.n, 6);
	assert_int_equal(e->got.count, 1);
	/* numbers that are off */
	assert_false(syncplan_ranges_add(&r, "s", 1, "t", 1, 1, 2, 2));
	assert_false(syncplan_ranges_add(&r, "s", 1, "t", 1, 1, 0, 1));
	assert_false(syncplan_ranges_add(&r, "s", 1, "t", 1, 1, 0, SYNCRANGE_MAX + 1));
	assert_null(syncplan_ranges_get(&r, "s", 1, "t", 1));
	syncplan_ranges_drop(&r, "public", 6, "big", 3);
	assert_null(syncplan_ranges_get(&r, "public", 6, "big", 3));
	assert_true(syncplan_ranges_add(&r, "public", 6, "big", 3, 0x300, 0, 2));
	assert_non_null(syncplan_ranges_get(&r, "public", 6, "big", 3));
	syncplan_ranges_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_empty_plan),
		cmocka_unit_test(test_malformed_plans),
		cmocka_unit_test(test_origin_names),
		cmocka_unit_test(test_sets),
		cmocka_unit_test(test_ranges_book),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
