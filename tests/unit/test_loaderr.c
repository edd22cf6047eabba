/* Unit tests for loaderr: the column of a value the target refuses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "replicator/apply_sql.h"
#include "replicator/loaderr.h"

static void test_param_from_context(void **state)
{
	(void)state;
	assert_int_equal(loaderr_param("unnamed portal parameter $3 = '...'"), 3);
	assert_int_equal(loaderr_param("portal \"p\" parameter $12 = 'infinity'"), 12);
	assert_int_equal(loaderr_param("unnamed portal parameter $2"), 2);
	assert_int_equal(loaderr_param("SQL function \"f\" statement 1"), 0);
	assert_int_equal(loaderr_param("parameter $x"), 0);
	assert_int_equal(loaderr_param(NULL), 0);
}

static void test_column_of_the_parameter(void **state)
{
	struct relmap_att atts[3] = {
		{ .name = "id" }, { .name = "span" }, { .name = "note" },
	};
	struct relmap m = { .natts = 3, .atts = atts };
	/* an UPDATE: SET span, note; WHERE the old id */
	uint16_t params[3] = { 1, 2, 0 | APPLY_SQL_PARAM_OLD };
	const char *ctx = "unnamed portal parameter $1 = 'infinity'";

	(void)state;
	assert_string_equal(loaderr_column(&m, params, 3, "22007", ctx), "span");
	assert_string_equal(loaderr_column(&m, params, 3, "22P02",
					   "unnamed portal parameter $3 = 'x'"), "id");
	/* not a data exception, no statement, a parameter out of range */
	assert_null(loaderr_column(&m, params, 3, "23505", ctx));
	assert_null(loaderr_column(&m, NULL, 0, "22007", ctx));
	assert_null(loaderr_column(&m, params, 3, "22007", "unnamed portal parameter $4 = 'x'"));
	assert_null(loaderr_column(&m, params, 3, NULL, ctx));
}

/* PostgreSQL 13: no parameter in the context; the message quotes the text */
static void test_column_of_the_quoted_text(void **state)
{
	struct relmap_att atts[3] = {
		{ .name = "id" }, { .name = "span" }, { .name = "note" },
	};
	struct relmap m = { .natts = 3, .atts = atts };
	struct pgoutput_value nv[3] = {
		{ PGOUTPUT_VALUE_TEXT, 1, (const uint8_t *)"2" },
		{ PGOUTPUT_VALUE_TEXT, 13, (const uint8_t *)"{[1,3),[7,9)}" },
		{ PGOUTPUT_VALUE_NULL, 0, NULL },
	};
	struct pgoutput_value ov[3] = {
		{ PGOUTPUT_VALUE_TEXT, 3, (const uint8_t *)"abc" },
		{ PGOUTPUT_VALUE_UNCHANGED, 0, NULL },
		{ PGOUTPUT_VALUE_TEXT, 1, (const uint8_t *)"2" },
	};
	struct pgoutput_tuple newtup = { 3, nv }, oldtup = { 3, ov };
	uint16_t insert[3] = { 0, 1, 2 };
	uint16_t update[3] = { 1, 2, 0 | APPLY_SQL_PARAM_OLD };
	const char *msg = "malformed range literal: \"{[1,3),[7,9)}\"";

	(void)state;
	assert_string_equal(loaderr_column_quoted(&m, insert, 3, &newtup, NULL, "22P02", msg),
			    "span");
	assert_string_equal(loaderr_column_quoted(&m, update, 3, &newtup, &oldtup, "22P02",
			    "invalid input syntax for type integer: \"abc\""), "id");
	/* a prefix of the quoted text is not it; nor is text the message does not quote */
	assert_null(loaderr_column_quoted(&m, insert, 3, &newtup, NULL, "22P02",
					  "malformed range literal: \"{[1,3),[7,9)}x\""));
	assert_null(loaderr_column_quoted(&m, insert, 3, &newtup, NULL, "22P02",
					  "value 2 out of range"));
	/* the texts of two columns quoted: either could be meant */
	assert_null(loaderr_column_quoted(&m, update, 3, &newtup, &oldtup, "22P02",
					  "invalid: \"abc\" and \"{[1,3),[7,9)}\""));
	/* not a data exception, no message, no statement */
	assert_null(loaderr_column_quoted(&m, insert, 3, &newtup, NULL, "23505", msg));
	assert_null(loaderr_column_quoted(&m, insert, 3, &newtup, NULL, "22P02", NULL));
	assert_null(loaderr_column_quoted(&m, NULL, 0, &newtup, NULL, "22P02", msg));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_param_from_context),
		cmocka_unit_test(test_column_of_the_parameter),
		cmocka_unit_test(test_column_of_the_quoted_text),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
