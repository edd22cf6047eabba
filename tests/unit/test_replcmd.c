/* Unit tests for replcmd: replication commands by server version. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "replicator/replcmd.h"

static void expect_sql(char *sql, const char *want)
{
	assert_non_null(sql);
	assert_string_equal(sql, want);
	free(sql);
}

static void test_create_slot_by_version(void **state)
{
	(void)state;
	expect_sql(replcmd_create_slot_sql(130023, "strait_app", false, false),
		   "CREATE_REPLICATION_SLOT \"strait_app\" LOGICAL pgoutput NOEXPORT_SNAPSHOT");
	expect_sql(replcmd_create_slot_sql(140023, "strait_app", true, true),
		   "CREATE_REPLICATION_SLOT \"strait_app\" TEMPORARY LOGICAL pgoutput EXPORT_SNAPSHOT");
	expect_sql(replcmd_create_slot_sql(150004, "strait_app", false, true),
		   "CREATE_REPLICATION_SLOT \"strait_app\" LOGICAL pgoutput (SNAPSHOT 'export')");
	expect_sql(replcmd_create_slot_sql(180001, "s", true, false),
		   "CREATE_REPLICATION_SLOT \"s\" TEMPORARY LOGICAL pgoutput (SNAPSHOT 'nothing')");
}

static void test_protocol_by_version(void **state)
{
	(void)state;
	assert_int_equal(replcmd_proto_version(130023), 1);
	assert_false(replcmd_has_messages(130023));
	assert_int_equal(replcmd_proto_version(140000), 2);
	assert_true(replcmd_has_messages(140000));
	assert_int_equal(replcmd_proto_version(180001), 2);
	assert_false(replcmd_has_streaming(130023));
	assert_true(replcmd_has_streaming(140000));
	assert_true(replcmd_has_streaming(180001));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_create_slot_by_version),
		cmocka_unit_test(test_protocol_by_version),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
