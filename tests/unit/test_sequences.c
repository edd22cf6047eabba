/*
 * test_sequences.c — the statement that raises sequences at the target:
 * quoting of hostile names, and nothing sent for an empty list.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "replicator/sequences.h"

static void test_sql_quotes_names_and_never_lowers(void **state)
{
	struct seq_value seqs[] = {
		{ "public", "orders_id_seq", 120 },
		{ "Odd Schema", "it's", -5 },
		{ "x';DROP TABLE t;--", "n", INT64_MAX },
	};
	char *sql = seq_writer_sql(seqs, 3);

	(void)state;
	assert_non_null(sql);
	assert_non_null(strstr(sql, "('public', 'orders_id_seq', 120::bigint)"));
	assert_non_null(strstr(sql, "('Odd Schema', 'it''s', -5::bigint)"));
	assert_non_null(strstr(sql, "('x'';DROP TABLE t;--', 'n', 9223372036854775807::bigint)"));
	/* only sequences that are behind are touched */
	assert_non_null(strstr(sql, "WHERE ps.last_value IS NULL OR ps.last_value < v.val"));
	free(sql);
}

static void test_empty_list_has_no_statement(void **state)
{
	(void)state;
	assert_null(seq_writer_sql(NULL, 0));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sql_quotes_names_and_never_lowers),
		cmocka_unit_test(test_empty_list_has_no_statement),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
