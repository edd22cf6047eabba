/* Unit tests for pgversion: features by server version. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/json.h"
#include "replicator/pgversion.h"

static void test_lacks_by_version(void **state)
{
	const char *l[PGVERSION_MAX_LACKS];

	(void)state;
	assert_int_equal(pgversion_lacks(130023, PGVERSION_SOURCE, l), 3);
	assert_string_equal(l[0], "logical decoding messages (14)");
	assert_int_equal(pgversion_lacks(160004, PGVERSION_SOURCE, l), 2);
	assert_string_equal(l[0], "slot invalidation_reason and inactive_since (17)");
	assert_int_equal(pgversion_lacks(170002, PGVERSION_SOURCE, l), 1);
	assert_string_equal(l[0], "idle_replication_slot_timeout (18)");
	assert_int_equal(pgversion_lacks(180001, PGVERSION_SOURCE, l), 0);
	assert_int_equal(pgversion_lacks(170002, PGVERSION_TARGET, l), 1);
	assert_int_equal(pgversion_lacks(180001, PGVERSION_TARGET, l), 0);
}

static void test_origin_limit_setting(void **state)
{
	(void)state;
	assert_string_equal(pgversion_origin_limit_setting(130023), "max_replication_slots");
	assert_string_equal(pgversion_origin_limit_setting(170002), "max_replication_slots");
	assert_string_equal(pgversion_origin_limit_setting(180001), "max_active_replication_origins");
}

static void test_describe(void **state)
{
	char buf[32], *s;

	(void)state;
	assert_string_equal(pgversion_format(130023, buf, sizeof(buf)), "13.23");
	assert_string_equal(pgversion_format(90624, buf, sizeof(buf)), "9.6.24");
	s = pgversion_describe(160004, PGVERSION_SOURCE);
	assert_string_equal(s, "PostgreSQL 16.4, without slot invalidation_reason and "
			    "inactive_since (17), idle_replication_slot_timeout (18)");
	free(s);
	s = pgversion_describe(180001, PGVERSION_SOURCE);
	assert_string_equal(s, "PostgreSQL 18.1");
	free(s);
}

static void test_json(void **state)
{
	struct json_out j;
	char *text;

	(void)state;
	json_init(&j);
	json_object_begin(&j, NULL);
	pgversion_json(&j, "server", 170002, PGVERSION_SOURCE);
	json_object_end(&j);
	text = json_finish(&j, NULL);
	assert_non_null(strstr(text, "\"version\":\"17.2\""));
	assert_non_null(strstr(text, "\"version_num\":170002"));
	assert_non_null(strstr(text, "\"lacks\":[\"idle_replication_slot_timeout (18)\"]"));
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lacks_by_version),
		cmocka_unit_test(test_origin_limit_setting),
		cmocka_unit_test(test_describe),
		cmocka_unit_test(test_json),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
