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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_param_from_context),
		cmocka_unit_test(test_column_of_the_parameter),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
