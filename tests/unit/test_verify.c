/*
 * test_verify.c — the pure parts of the table comparison
 * (replicator/verify.h): SQL with quoted identifiers and typed bound
 * parameters, the narrowing plan, hash bucket counts, key encoding and
 * labels, the merge of two sorted row lists, and the rendered result.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "replicator/verify.h"

static const char *const one_col[] = {"\"id\""};
static const char *const one_type[] = {"integer"};
static const char *const two_cols[] = {"\"K \"\"1\"\"\"", "\"k2\""};
static const char *const two_types[] = {"text", "character varying(10)"};

static const struct verify_keys one = {"\"public\".\"items\"", one_col, one_type, 1};
static const struct verify_keys two = {"\"My Schema\".\"T\"", two_cols, two_types, 2};

static void expect_sql(char *got, const char *want)
{
	assert_non_null(got);
	assert_string_equal(got, want);
	free(got);
}

static void test_sql_range(void **state)
{
	(void)state;
	expect_sql(verify_sql_range(&one, false, false), "");
	expect_sql(verify_sql_range(&one, true, false), " WHERE (\"id\") > ($1::integer)");
	expect_sql(verify_sql_range(&one, false, true), " WHERE (\"id\") <= ($1::integer)");
	expect_sql(verify_sql_range(&one, true, true),
		   " WHERE (\"id\") > ($1::integer) AND (\"id\") <= ($2::integer)");
	expect_sql(verify_sql_range(&two, true, true),
		   " WHERE (\"K \"\"1\"\"\", \"k2\") > ($1::text, $2::character varying(10))"
		   " AND (\"K \"\"1\"\"\", \"k2\") <= ($3::text, $4::character varying(10))");
	expect_sql(verify_sql_range(&two, false, true),
		   " WHERE (\"K \"\"1\"\"\", \"k2\") <= ($1::text, $2::character varying(10))");
}

static void test_sql_statements(void **state)
{
	(void)state;
	expect_sql(verify_sql_checksum(&one, false, false),
		   "SELECT count(*), coalesce(sum(hashtextextended((t.*)::text, 0)), 0) FROM \"public\".\"items\" AS t");
	expect_sql(verify_sql_checksum(&one, true, false),
		   "SELECT count(*), coalesce(sum(hashtextextended((t.*)::text, 0)), 0) FROM \"public\".\"items\" AS t"
		   " WHERE (\"id\") > ($1::integer)");
	expect_sql(verify_sql_boundary(&two, true, false, 9999),
		   "SELECT \"K \"\"1\"\"\"::text, \"k2\"::text FROM \"My Schema\".\"T\" AS t"
		   " WHERE (\"K \"\"1\"\"\", \"k2\") > ($1::text, $2::character varying(10))"
		   " ORDER BY t.\"K \"\"1\"\"\", t.\"k2\" OFFSET 9999 LIMIT 1");
	expect_sql(verify_sql_boundary(&one, false, false, 0),
		   "SELECT \"id\"::text FROM \"public\".\"items\" AS t ORDER BY t.\"id\" OFFSET 0 LIMIT 1");
	expect_sql(verify_sql_rows(&one, true, true),
		   "SELECT \"id\"::text, hashtextextended((t.*)::text, 0) FROM \"public\".\"items\" AS t"
		   " WHERE (\"id\") > ($1::integer) AND (\"id\") <= ($2::integer)");
}

static void test_plan_split(void **state)
{
	bool from_target = true;
	int64_t offset = -1;

	(void)state;
	assert_int_equal(verify_plan_split(0, 0, 64, &from_target, &offset), VERIFY_STEP_EQUAL);
	assert_int_equal(verify_plan_split(64, 10, 64, &from_target, &offset), VERIFY_STEP_LEAF);
	assert_int_equal(verify_plan_split(0, 64, 64, &from_target, &offset), VERIFY_STEP_LEAF);
	assert_int_equal(verify_plan_split(10000, 9999, 64, &from_target, &offset), VERIFY_STEP_SPLIT);
	assert_false(from_target);
	assert_int_equal(offset, 4999);               /* (lo, mid] holds 5000 source rows */
	assert_int_equal(verify_plan_split(3, 500, 64, &from_target, &offset), VERIFY_STEP_SPLIT);
	assert_true(from_target);                     /* extra rows on the target: cut there */
	assert_int_equal(offset, 249);
	assert_int_equal(verify_plan_split(65, 0, 64, &from_target, &offset), VERIFY_STEP_SPLIT);
	assert_int_equal(offset, 31);
	/* the smallest split still leaves a row on each side of the cut */
	assert_int_equal(verify_plan_split(2, 2, 1, &from_target, &offset), VERIFY_STEP_SPLIT);
	assert_int_equal(offset, 0);
	assert_int_equal(verify_plan_split(1, 1, 0, &from_target, &offset), VERIFY_STEP_LEAF);

	/* halving always terminates: simulate a range of n rows down to leaves */
	for (int64_t n = 1; n < 5000; n = n * 3 + 1) {
		int64_t stack[128], leaves = 0, rows = 0;
		int top = 0;

		stack[top++] = n;
		while (top > 0) {
			int64_t m = stack[--top];

			switch (verify_plan_split(m, m, 64, &from_target, &offset)) {
			case VERIFY_STEP_EQUAL:
				fail();
				break;
			case VERIFY_STEP_LEAF:
				assert_true(m <= 64);
				leaves++;
				rows += m;
				break;
			case VERIFY_STEP_SPLIT:
				assert_true(offset >= 0 && offset < m - 1);
				assert_true(top + 2 <= 128);
				stack[top++] = offset + 1;
				stack[top++] = m - offset - 1;
				break;
			}
		}
		assert_int_equal(rows, n);
		assert_true(leaves <= (n + 31) / 32 + 1);
	}
}

static void test_bucket_count(void **state)
{
	(void)state;
	assert_int_equal(verify_bucket_count(0, 64), 1);
	assert_int_equal(verify_bucket_count(64, 64), 1);
	assert_int_equal(verify_bucket_count(65, 64), 2);
	assert_int_equal(verify_bucket_count(2003, 32), 64);
	assert_int_equal(verify_bucket_count(200000, 64), 4096);
	assert_int_equal(verify_bucket_count(INT64_C(1) << 40, 64), 65536);
}

static void test_key_encoding_and_label(void **state)
{
	const char *a[] = {"a, b", "c"}, *b[] = {"a", "b, c"};
	const char *names[] = {"k1", "k2"};
	char *ea = verify_encode_key(a, 2), *eb = verify_encode_key(b, 2);

	(void)state;
	assert_non_null(ea);
	assert_non_null(eb);
	assert_string_not_equal(ea, eb);             /* same label text, different keys */
	assert_string_equal(ea, "4:a, b1:c");
	free(ea);
	free(eb);
	expect_sql(verify_key_label(names, a, 2), "(k1, k2)=(a, b, c)");
	expect_sql(verify_key_label(names, a, 1), "(k1)=(a, b)");
}

struct seen {
	char log[1024];
};

static void record(void *arg, enum verify_diff_kind kind, const struct verify_row *row, int64_t count)
{
	struct seen *s = arg;
	static const char *const names[] = {"missing", "extra", "changed"};
	size_t len = strlen(s->log);

	snprintf(s->log + len, sizeof(s->log) - len, "%s %s x%lld; ", names[kind], row->label, (long long)count);
}

#define ROW(k, h) {k, "L" k, h, 1}

static void test_diff_keyed(void **state)
{
	struct verify_row src[] = {ROW("5", "50"), ROW("1", "10"), ROW("3", "30"), ROW("4", "40"), ROW("9", "90")};
	struct verify_row dst[] = {ROW("0", "00"), ROW("4", "41"), ROW("3", "30"), ROW("5", "50"), ROW("99", "x")};
	struct seen s = {""};

	(void)state;
	verify_sort_rows(src, 5);
	verify_sort_rows(dst, 5);
	assert_string_equal(src[0].key, "1");
	assert_string_equal(src[4].key, "9");
	verify_diff_rows(src, 5, dst, 5, false, record, &s);
	assert_string_equal(s.log, "extra L0 x1; missing L1 x1; changed L4 x1; missing L9 x1; extra L99 x1; ");

	s.log[0] = '\0';
	verify_diff_rows(src, 5, src, 5, false, record, &s);
	assert_string_equal(s.log, "");
	verify_diff_rows(NULL, 0, dst, 2, false, record, &s);
	assert_string_equal(s.log, "extra L0 x1; extra L3 x1; ");
	s.log[0] = '\0';
	verify_diff_rows(src, 1, NULL, 0, false, record, &s);
	assert_string_equal(s.log, "missing L1 x1; ");
}

static void test_diff_multiset(void **state)
{
	struct verify_row src[] = {{"(1,a)", "(1,a)", "", 2}, {"(,)", "(,)", "", 3}, {"(2,b)", "(2,b)", "", 1}};
	struct verify_row dst[] = {{"(1,a)", "(1,a)", "", 5}, {"(,)", "(,)", "", 1}, {"(2,b)", "(2,b)", "", 1},
				   {"(3,c)", "(3,c)", "", 2}};
	struct seen s = {""};

	(void)state;
	verify_sort_rows(src, 3);
	verify_sort_rows(dst, 4);
	verify_diff_rows(src, 3, dst, 4, true, record, &s);
	assert_string_equal(s.log, "missing (,) x2; extra (1,a) x3; extra (3,c) x2; ");
}

static void test_render(void **state)
{
	struct verify_item missing[] = {{(char *)"(id)=(1)", 1}};
	char *cols[] = {(char *)"id"};
	struct verify_result r = {
		.table = (char *)"\"public\".\"t\"", .keyed = true, .key_columns = cols, .n_keys = 1,
		.rows_source = 10, .rows_target = 9, .chunks = 1, .narrowed = 1,
		.missing = {missing, 1, 1, 1}, .checksum_bytes = 123, .elapsed_ms = 1.5,
	};
	struct json_out j;
	char *doc, *text;

	(void)state;
	assert_false(verify_result_equal(&r));
	json_init(&j);
	verify_result_json(&j, NULL, &r);
	doc = json_finish(&j, NULL);
	assert_non_null(doc);
	assert_non_null(strstr(doc, "\"table\":\"\\\"public\\\".\\\"t\\\"\""));
	assert_non_null(strstr(doc, "\"missing\":[\"(id)=(1)\"]"));
	assert_non_null(strstr(doc, "\"equal\":false"));
	assert_non_null(strstr(doc, "\"checksum_bytes\":123"));
	free(doc);
	text = verify_report_text(&r);
	assert_non_null(text);
	assert_non_null(strstr(text, "\"public\".\"t\": DIFFERENT\n"));
	assert_non_null(strstr(text, "  missing on the target: 1\n    (id)=(1)\n"));
	assert_null(strstr(text, "extra"));
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sql_range),
		cmocka_unit_test(test_sql_statements),
		cmocka_unit_test(test_plan_split),
		cmocka_unit_test(test_bucket_count),
		cmocka_unit_test(test_key_encoding_and_label),
		cmocka_unit_test(test_diff_keyed),
		cmocka_unit_test(test_diff_multiset),
		cmocka_unit_test(test_render),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
