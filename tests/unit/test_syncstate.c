/*
 * test_syncstate.c — the initial sync's record on the target as SQL text:
 * literals that survive hostile names, the loaders' fixed pool of origin
 * names, the record written in the load's transaction, the fold, the
 * migration of an older version's origins (rows committed before any
 * origin is dropped) and the clean-up of a dropped stream.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "replicator/syncstate.h"

static void assert_contains(const char *text, const char *part)
{
	if (!strstr(text, part))
		fail_msg("\"%s\" not in:\n%s", part, text);
}

static void test_literals(void **state)
{
	char *s;

	(void)state;
	s = syncstate_literal("it's");
	assert_string_equal(s, "'it''s'");
	free(s);
	s = syncstate_literal("");
	assert_string_equal(s, "''");
	free(s);
	s = syncstate_literal("a\\b''");
	assert_string_equal(s, "'a\\b'''''");
	free(s);
}

static void test_loader_origins(void **state)
{
	char *s;

	(void)state;
	s = syncstate_loader_origin("app-1", 2);
	assert_string_equal(s, "strait_app-1:load2");
	free(s);
	s = syncstate_session_sql("app", 0);
	assert_contains(s, "CREATE TABLE strait.sync_table");
	assert_contains(s, "CREATE TABLE strait.sync_stream");
	assert_contains(s, "CREATE TABLE strait.sync_range");
	assert_contains(s, "pg_advisory_xact_lock(");
	assert_contains(s, "pg_replication_origin_session_setup('strait_app:load0')");
	/* the origin is created before the session takes it */
	assert_true(strstr(s, "pg_replication_origin_create('strait_app:load0')") <
		    strstr(s, "session_setup"));
	free(s);
}

static void test_members_and_joins(void **state)
{
	const char *schemas[] = { "public", "x" }, *tables[] = { "a", "q'" };
	char *s;

	(void)state;
	s = syncstate_members_sql("o'k");
	assert_contains(s, "FROM strait.sync_member WHERE stream = 'o''k'");
	assert_contains(s, "SELECT 'j', schema_name, table_name, NULL FROM strait.sync_join");
	assert_contains(s, "SELECT 's', members::text, NULL, NULL FROM strait.sync_stream");
	free(s);
	s = syncstate_join_begin_sql("app", "public", "t");
	assert_string_equal(s, "INSERT INTO strait.sync_join (stream, schema_name, table_name) "
			"VALUES ('app', 'public', 't') ON CONFLICT DO NOTHING");
	free(s);
	/* the join row goes and the member row comes (or comes back) in one transaction */
	s = syncstate_join_end_sql("app", "public", "t");
	assert_contains(s, "BEGIN; DELETE FROM strait.sync_join WHERE (stream, schema_name, "
			"table_name) = ('app', 'public', 't'); ");
	assert_contains(s, "DO UPDATE SET left_lsn = NULL; COMMIT");
	free(s);
	s = syncstate_member_leave_sql("app", "public", "t", 0x16B3748ull);
	assert_contains(s, "VALUES ('app', 'public', 't', '0/16B3748') ON CONFLICT");
	assert_contains(s, "SET left_lsn = EXCLUDED.left_lsn; DELETE FROM strait.sync_join");
	free(s);
	s = syncstate_adopt_sql("app", schemas, tables, 2);
	assert_contains(s, "INSERT INTO strait.sync_member VALUES ('app', 'x', 'q''') ON CONFLICT");
	assert_contains(s, "UPDATE strait.sync_stream SET members = true WHERE stream = 'app'; COMMIT");
	free(s);
}

static void test_record_done_fold(void **state)
{
	char *s;

	(void)state;
	s = syncstate_record_sql("app", "My \"Schema\"", "o'hara", 0x100000028ull);
	assert_contains(s, "INSERT INTO strait.sync_table");
	assert_contains(s, "('app', 'My \"Schema\"', 'o''hara', '1/28')");
	assert_contains(s, "ON CONFLICT (stream, schema_name, table_name) DO UPDATE");
	free(s);
	s = syncstate_done_sql("app", 0x16B3748ull);
	/* every loaded table becomes a member in the done row's transaction */
	assert_contains(s, "INSERT INTO strait.sync_member SELECT stream, schema_name, table_name "
			"FROM strait.sync_table WHERE stream = 'app' ON CONFLICT DO NOTHING; ");
	assert_contains(s, "INSERT INTO strait.sync_stream (stream, start_lsn, members) VALUES "
			"('app', '0/16B3748', true)");
	free(s);
	s = syncstate_fold_sql("app", 0x2000000ull);
	assert_string_equal(s, "DELETE FROM strait.sync_table WHERE stream = 'app' "
			    "AND snapshot_lsn <= '0/2000000'; DELETE FROM strait.sync_range "
			    "WHERE stream = 'app' AND snapshot_lsn <= '0/2000000'");
	free(s);
	/* a range's record, and the clearing of an earlier copy's */
	s = syncstate_range_record_sql("app", "public", "big", 0x100000028ull, 7, 64);
	assert_contains(s, "INSERT INTO strait.sync_range (stream, schema_name, table_name, "
			"range_no, ranges, snapshot_lsn) VALUES ('app', 'public', 'big', 7, 64, '1/28')");
	assert_contains(s, "ON CONFLICT (stream, schema_name, table_name, range_no) DO UPDATE");
	/* never twice from one snapshot */
	assert_contains(s, "WHERE strait.sync_range.snapshot_lsn <> EXCLUDED.snapshot_lsn");
	assert_contains(s, "'range 7 is loaded already from this snapshot'");
	free(s);
	s = syncstate_clear_sql("app", "public", "o'hara");
	assert_string_equal(s, "DELETE FROM strait.sync_range WHERE stream = 'app' AND schema_name = "
			    "'public' AND table_name = 'o''hara'; DELETE FROM strait.sync_table WHERE "
			    "stream = 'app' AND schema_name = 'public' AND table_name = 'o''hara'; ");
	free(s);
	/* a whole table's record replaces its ranges */
	s = syncstate_record_sql("app", "public", "big", 0x28ull);
	assert_true(strstr(s, "DELETE FROM strait.sync_range WHERE stream = 'app' AND schema_name = "
			   "'public' AND table_name = 'big'; ") == s);
	free(s);
	/*
	 * The query folds by the apply origin (the highest of it and its
	 * parallel workers'), once the sync is done, then lists.
	 */
	s = syncstate_query_sql("app");
	assert_contains(s, "DELETE FROM strait.sync_table WHERE stream = 'app' AND EXISTS");
	assert_contains(s, "WHERE roname = 'strait_app' OR "
			"pg_catalog.starts_with(roname, 'strait_app' || ':apply:'))");
	assert_contains(s, "starts_with(roname, 'strait_app:sync' || ':')");
	assert_contains(s, "DELETE FROM strait.sync_range WHERE stream = 'app' AND EXISTS");
	assert_contains(s, "UNION ALL SELECT 'r', schema_name, table_name, snapshot_lsn::text, "
			"range_no, ranges FROM strait.sync_range WHERE stream = 'app'");
	assert_true(strstr(s, "DELETE") < strstr(s, "SELECT 't'"));
	free(s);
}

static void test_migration(void **state)
{
	const struct syncstate_legacy_table t[] = {
		{ "public", "a", 0x10 }, { "odd'schema", "b", 0x20 },
	};
	char *origins[] = { "strait_app:sync:public.a", "strait_app:sync", "strait_app:sync:x.\"q'\"" };
	char *s;
	const char *commit;

	(void)state;
	s = syncstate_migrate_sql("app", t, 2, 0x10, origins, 3);
	commit = strstr(s, "COMMIT;");
	assert_non_null(commit);
	assert_contains(s, "('app', 'public', 'a', '0/10'), ('app', 'odd''schema', 'b', '0/20') "
			"ON CONFLICT DO NOTHING");
	assert_contains(s, "INSERT INTO strait.sync_stream (stream, start_lsn) VALUES ('app', '0/10')");
	assert_contains(s, "roname IN ('strait_app:sync:public.a', 'strait_app:sync', "
			"'strait_app:sync:x.\"q''\"')");
	/* rows committed before any origin goes */
	assert_true(strstr(s, "INSERT") < commit && strstr(s, "pg_replication_origin_drop") > commit);
	free(s);
	/* origins that recorded nothing: dropped only */
	s = syncstate_migrate_sql("app", NULL, 0, 0, origins, 1);
	assert_null(strstr(s, "INSERT"));
	assert_contains(s, "roname IN ('strait_app:sync:public.a')");
	free(s);
}

static void test_forget(void **state)
{
	char *s;

	(void)state;
	s = syncstate_forget_sql("app");
	assert_contains(s, "DELETE FROM strait.sync_table WHERE stream = 'app'");
	assert_contains(s, "DELETE FROM strait.sync_stream WHERE stream = 'app'");
	assert_contains(s, "DELETE FROM strait.sync_range WHERE stream = 'app'");
	assert_contains(s, "to_regclass('strait.sync_table') IS NOT NULL");
	assert_contains(s, "roname = 'strait_app' OR pg_catalog.starts_with(roname, 'strait_app' || ':')");
	/* the deletes commit under an origin of strait's, dropped by nobody */
	assert_contains(s, "pg_replication_origin_session_setup('strait_:forget'); BEGIN; DO");
	assert_contains(s, "COMMIT; SELECT pg_catalog.pg_replication_origin_session_reset(); SELECT count(");
	free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_literals),
		cmocka_unit_test(test_loader_origins),
		cmocka_unit_test(test_record_done_fold),
		cmocka_unit_test(test_members_and_joins),
		cmocka_unit_test(test_migration),
		cmocka_unit_test(test_forget),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
