/*
 * test_text_table.c — the control commands' text table: columns that grow
 * to their widest cell, fixed ones that a longer cell overflows (as printf's
 * widths do), the last column never padded, and the lag table's exact layout.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "gateway/daemon/text_table.h"

static char *render(const struct text_table *t)
{
	char *doc = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&doc, &len);

	assert_non_null(out);
	text_table_print(t, out);
	assert_int_equal(fclose(out), 0);
	return doc;
}

static void test_widths(void **state)
{
	static const struct text_table_column cols[] = {
		{ "NAME", 0, false, false },
		{ "N", 3, true, true },
		{ "LAST", 0, false, false },
	};
	struct text_table *t = text_table_new(cols, 3);
	const char *a[] = { "alpha", "1", "x" }, *b[] = { "b", "12345", "" };
	char *doc;

	(void)state;
	assert_non_null(t);
	assert_true(text_table_row(t, a));
	assert_true(text_table_row(t, b));
	doc = render(t);
	assert_string_equal(doc, "NAME     N  LAST\n"
				 "alpha    1  x\n"
				 "b      12345\n");
	free(doc);
	text_table_free(t);
}

static void test_lag_layout(void **state)
{
	static const struct text_table_column cols[] = {
		{ "STREAM", 6, false, false },
		{ "ROLE", 6, false, true },
		{ "PEER", 4, false, false },
		{ "STATE", 5, false, false },
		{ "LAG_BYTES", 15, true, true },
		{ "LAG_SECONDS", 11, true, true },
		{ "APPLIED_LSN", 0, false, false },
	};
	struct text_table *t = text_table_new(cols, 7);
	const char *row[] = { "orders_to_b", "source", "site-b", "streaming", "123456", "2.5",
			      "0/16B3748" };
	char want[512], *doc;

	(void)state;
	assert_non_null(t);
	assert_true(text_table_row(t, row));
	doc = render(t);
	snprintf(want, sizeof(want),
		 "%-*s  %-6s  %-*s  %-*s  %15s  %11s  %s\n"
		 "%-*s  %-6s  %-*s  %-*s  %15" PRIu64 "  %11.1f  %s\n",
		 11, "STREAM", "ROLE", 6, "PEER", 9, "STATE", "LAG_BYTES", "LAG_SECONDS",
		 "APPLIED_LSN", 11, "orders_to_b", "source", 6, "site-b", 9, "streaming",
		 (uint64_t)123456, 2.5, "0/16B3748");
	assert_string_equal(doc, want);
	free(doc);
	text_table_free(t);
}

static void test_refuses_columns(void **state)
{
	static const struct text_table_column cols[TEXT_TABLE_MAX_COLUMNS + 1];

	(void)state;
	assert_null(text_table_new(cols, 0));
	assert_null(text_table_new(cols, TEXT_TABLE_MAX_COLUMNS + 1));
	text_table_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_widths),
		cmocka_unit_test(test_lag_layout),
		cmocka_unit_test(test_refuses_columns),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
