/*
 * syncstate.c — the initial sync's record on the target, as SQL text (see
 * syncstate.h).
 *
 * NOTES
 * Text is built with open_memstream: a statement per call, a few hundred
 * bytes (a migration's is larger: one VALUES row per table). The record's
 * tables are written with their schema (the loaders' search_path is empty)
 * and only ever through these statements.
 */
#include "replicator/syncstate.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/lsn.h"

/* Any constant of our own: serialises the record's creation between sessions. */
#define SYNCSTATE_LOCK_KEY 126943972387188      /* "strait" in ASCII */

#define SYNCSTATE_ORIGIN_PREFIX "strait_"

#define SYNCSTATE_STR(x) #x
#define SYNCSTATE_XSTR(x) SYNCSTATE_STR(x)

static const char syncstate_tables_sql[] =
	"DO $strait$BEGIN "
	"PERFORM pg_catalog.pg_advisory_xact_lock(" SYNCSTATE_XSTR(SYNCSTATE_LOCK_KEY) "); "
	"IF pg_catalog.to_regnamespace('" SYNCSTATE_SCHEMA "') IS NULL THEN "
	"CREATE SCHEMA " SYNCSTATE_SCHEMA "; END IF; "
	"IF pg_catalog.to_regclass('" SYNCSTATE_SCHEMA ".sync_table') IS NULL THEN "
	"CREATE TABLE " SYNCSTATE_SCHEMA ".sync_table (stream text NOT NULL, "
	"schema_name text NOT NULL, table_name text NOT NULL, snapshot_lsn pg_lsn NOT NULL, "
	"loaded_at timestamptz NOT NULL DEFAULT pg_catalog.now(), "
	"PRIMARY KEY (stream, schema_name, table_name)); END IF; "
	"IF pg_catalog.to_regclass('" SYNCSTATE_SCHEMA ".sync_stream') IS NULL THEN "
	"CREATE TABLE " SYNCSTATE_SCHEMA ".sync_stream (stream text PRIMARY KEY, "
	"start_lsn pg_lsn NOT NULL, done_at timestamptz NOT NULL DEFAULT pg_catalog.now()); "
	"END IF; "
	"IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute WHERE attrelid = '"
	SYNCSTATE_SCHEMA ".sync_stream'::regclass AND attname = 'members') THEN "
	"ALTER TABLE " SYNCSTATE_SCHEMA ".sync_stream ADD COLUMN members boolean NOT NULL "
	"DEFAULT false; END IF; "
	"IF pg_catalog.to_regclass('" SYNCSTATE_SCHEMA ".sync_member') IS NULL THEN "
	"CREATE TABLE " SYNCSTATE_SCHEMA ".sync_member (stream text NOT NULL, "
	"schema_name text NOT NULL, table_name text NOT NULL, "
	"PRIMARY KEY (stream, schema_name, table_name)); END IF; "
	"IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute WHERE attrelid = '"
	SYNCSTATE_SCHEMA ".sync_member'::regclass AND attname = 'left_lsn') THEN "
	"ALTER TABLE " SYNCSTATE_SCHEMA ".sync_member ADD COLUMN left_lsn pg_lsn; END IF; "
	"IF pg_catalog.to_regclass('" SYNCSTATE_SCHEMA ".sync_join') IS NULL THEN "
	"CREATE TABLE " SYNCSTATE_SCHEMA ".sync_join (stream text NOT NULL, "
	"schema_name text NOT NULL, table_name text NOT NULL, "
	"since timestamptz NOT NULL DEFAULT pg_catalog.now(), "
	"PRIMARY KEY (stream, schema_name, table_name)); END IF; "
		"IF pg_catalog.to_regclass('" SYNCSTATE_SCHEMA ".sync_range') IS NULL THEN "
	"CREATE TABLE " SYNCSTATE_SCHEMA ".sync_range (stream text NOT NULL, "
	"schema_name text NOT NULL, table_name text NOT NULL, range_no integer NOT NULL, "
	"ranges integer NOT NULL, snapshot_lsn pg_lsn NOT NULL, "
	"loaded_at timestamptz NOT NULL DEFAULT pg_catalog.now(), "
	"PRIMARY KEY (stream, schema_name, table_name, range_no)); END IF; END$strait$; ";

/* Closes the stream (which sets *buf) and returns its text, or NULL (freed) when anything failed. */
static char *syncstate_finish(FILE *out, char **buf, bool ok)
{
	if (fclose(out) != 0 || !ok) {
		free(*buf);
		return NULL;
	}
	return *buf;
}

/* Writes text as a literal; false when out of memory. */
static bool syncstate_put_literal(FILE *out, const char *text)
{
	if (fputc('\'', out) == EOF)
		return false;
	for (const char *p = text; *p; p++) {
		if (*p == '\'' && fputc('\'', out) == EOF)
			return false;
		if (fputc(*p, out) == EOF)
			return false;
	}
	return fputc('\'', out) != EOF;
}

char *syncstate_literal(const char *text)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);

	if (!out)
		return NULL;
	return syncstate_finish(out, &buf, syncstate_put_literal(out, text));
}

char *syncstate_loader_origin(const char *stream, unsigned n)
{
	char *out = NULL;

	if (asprintf(&out, SYNCSTATE_ORIGIN_PREFIX "%s:load%u", stream, n) < 0)
		return NULL;
	return out;
}

char *syncstate_session_sql(const char *stream, unsigned n)
{
	char *origin = syncstate_loader_origin(stream, n);
	char *lit = origin ? syncstate_literal(origin) : NULL;
	char *sql = NULL;

	if (lit && asprintf(&sql, "%s"
			"SELECT pg_catalog.pg_replication_origin_create(%s) WHERE NOT EXISTS "
			"(SELECT 1 FROM pg_catalog.pg_replication_origin WHERE roname = %s); "
			"SELECT pg_catalog.pg_replication_origin_session_setup(%s)",
			syncstate_tables_sql, lit, lit, lit) < 0)
		sql = NULL;
	free(origin);
	free(lit);
	return sql;
}

/* Deletes the stream's rows of a record table its apply origin has passed, once done. */
static bool syncstate_put_query_fold(FILE *out, const char *record, const char *stream,
		const char *apply)
{
	return fprintf(out, "DELETE FROM " SYNCSTATE_SCHEMA ".%s WHERE stream = ", record) > 0 &&
	       syncstate_put_literal(out, stream) &&
	       fputs(" AND EXISTS (SELECT 1 FROM " SYNCSTATE_SCHEMA ".sync_stream s WHERE s.stream = ",
		     out) >= 0 &&
	       syncstate_put_literal(out, stream) &&
	       fputs(") AND snapshot_lsn <= (SELECT pg_catalog.max("
		     "pg_catalog.pg_replication_origin_progress(roname, false)) FROM "
		     "pg_catalog.pg_replication_origin WHERE roname = ", out) >= 0 &&
	       syncstate_put_literal(out, apply) &&
	       fputs(" OR pg_catalog.starts_with(roname, ", out) >= 0 &&
	       syncstate_put_literal(out, apply) && fputs(" || ':apply:')); ", out) >= 0;
}

/* "DELETE FROM strait.<record> WHERE" the table's rows "; ". */
static bool syncstate_put_table_delete(FILE *out, const char *record, const char *stream,
		const char *schema, const char *table)
{
	return fprintf(out, "DELETE FROM " SYNCSTATE_SCHEMA ".%s WHERE stream = ", record) > 0 &&
	       syncstate_put_literal(out, stream) && fputs(" AND schema_name = ", out) >= 0 &&
	       syncstate_put_literal(out, schema) && fputs(" AND table_name = ", out) >= 0 &&
	       syncstate_put_literal(out, table) && fputs("; ", out) >= 0;
}

char *syncstate_query_sql(const char *stream)
{
	char *buf = NULL, *apply = NULL, *legacy = NULL;
	size_t len = 0;
	FILE *out;
	bool ok;

	if (asprintf(&apply, SYNCSTATE_ORIGIN_PREFIX "%s", stream) < 0)
		return NULL;
	if (asprintf(&legacy, SYNCSTATE_ORIGIN_PREFIX "%s:sync", stream) < 0) {
		free(apply);
		return NULL;
	}
	out = open_memstream(&buf, &len);
	if (!out) {
		free(apply);
		free(legacy);
		return NULL;
	}
	/* folded: streaming has passed them (a NULL progress folds nothing) */
	ok = syncstate_put_query_fold(out, "sync_table", stream, apply) &&
	     syncstate_put_query_fold(out, "sync_range", stream, apply) &&
	     fputs("SELECT 't', schema_name, table_name, snapshot_lsn::text, NULL::integer, "
		   "NULL::integer FROM " SYNCSTATE_SCHEMA ".sync_table WHERE stream = ", out) >= 0 &&
	     syncstate_put_literal(out, stream) &&
	     fputs(" UNION ALL SELECT 'r', schema_name, table_name, snapshot_lsn::text, range_no, "
		   "ranges FROM " SYNCSTATE_SCHEMA ".sync_range WHERE stream = ", out) >= 0 &&
	     syncstate_put_literal(out, stream) &&
	     fputs(" UNION ALL SELECT 's', NULL, NULL, start_lsn::text, NULL, NULL FROM "
		   SYNCSTATE_SCHEMA ".sync_stream WHERE stream = ", out) >= 0 &&
	     syncstate_put_literal(out, stream) &&
	     fputs(" UNION ALL SELECT 'o', roname, NULL, "
		   "pg_catalog.pg_replication_origin_progress(roname, true)::text, NULL, NULL "
		   "FROM pg_catalog.pg_replication_origin WHERE roname = ", out) >= 0 &&
	     syncstate_put_literal(out, legacy) &&
	     fputs(" OR pg_catalog.starts_with(roname, ", out) >= 0 &&
	     syncstate_put_literal(out, legacy) && fputs(" || ':')", out) >= 0;
	free(apply);
	free(legacy);
	return syncstate_finish(out, &buf, ok);
}

char *syncstate_record_sql(const char *stream, const char *schema, const char *table,
		uint64_t lsn)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);
	bool ok;

	if (!out)
		return NULL;
	/* ranges of an earlier copy of the table are over: this copy replaces them */
	ok = syncstate_put_table_delete(out, "sync_range", stream, schema, table) &&
	     fputs("INSERT INTO " SYNCSTATE_SCHEMA ".sync_table (stream, schema_name, table_name, "
		   "snapshot_lsn) VALUES (", out) >= 0 &&
	     syncstate_put_literal(out, stream) && fputs(", ", out) >= 0 &&
	     syncstate_put_literal(out, schema) && fputs(", ", out) >= 0 &&
	     syncstate_put_literal(out, table) &&
	     fprintf(out, ", '" LSN_FMT "') ON CONFLICT (stream, schema_name, table_name) DO UPDATE "
		     "SET snapshot_lsn = EXCLUDED.snapshot_lsn, loaded_at = EXCLUDED.loaded_at",
		     LSN_ARGS(lsn)) >= 0;
	return syncstate_finish(out, &buf, ok);
}

char *syncstate_range_record_sql(const char *stream, const char *schema, const char *table,
		uint64_t lsn, uint32_t range, uint32_t ranges)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);
	bool ok;

	if (!out)
		return NULL;
	/*
	 * A range is loaded once per snapshot: a row for it from this snapshot
	 * (committed, or committing beside: the insert waits for it) is left
	 * alone, and then the cast of the message fails the load.
	 */
	ok = fputs("WITH recorded AS (INSERT INTO " SYNCSTATE_SCHEMA ".sync_range (stream, "
		   "schema_name, table_name, range_no, ranges, snapshot_lsn) VALUES (", out) >= 0 &&
	     syncstate_put_literal(out, stream) && fputs(", ", out) >= 0 &&
	     syncstate_put_literal(out, schema) && fputs(", ", out) >= 0 &&
	     syncstate_put_literal(out, table) &&
	     fprintf(out, ", %" PRIu32 ", %" PRIu32 ", '" LSN_FMT "') ON CONFLICT (stream, "
		     "schema_name, table_name, range_no) DO UPDATE SET ranges = EXCLUDED.ranges, "
		     "snapshot_lsn = EXCLUDED.snapshot_lsn, loaded_at = EXCLUDED.loaded_at "
		     "WHERE " SYNCSTATE_SCHEMA ".sync_range.snapshot_lsn <> EXCLUDED.snapshot_lsn OR "
		     SYNCSTATE_SCHEMA ".sync_range.ranges <> EXCLUDED.ranges RETURNING 1) "
		     "SELECT CASE WHEN EXISTS (SELECT 1 FROM recorded) THEN 0 ELSE ('range %" PRIu32
		     " is loaded already from this snapshot' || (SELECT count(*) FROM recorded))"
		     "::pg_catalog.int4 END", range, ranges, LSN_ARGS(lsn), range) >= 0;
	return syncstate_finish(out, &buf, ok);
}

char *syncstate_clear_sql(const char *stream, const char *schema, const char *table)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);
	bool ok;

	if (!out)
		return NULL;
	ok = syncstate_put_table_delete(out, "sync_range", stream, schema, table) &&
	     syncstate_put_table_delete(out, "sync_table", stream, schema, table);
	return syncstate_finish(out, &buf, ok);
}

char *syncstate_done_sql(const char *stream, uint64_t lsn)
{
	char *lit = syncstate_literal(stream), *sql = NULL;

	/* every table loaded is a member: a table the stream lacks is known from here on */
	if (lit && asprintf(&sql, "INSERT INTO " SYNCSTATE_SCHEMA ".sync_member "
			"SELECT stream, schema_name, table_name FROM " SYNCSTATE_SCHEMA ".sync_table "
			"WHERE stream = %s ON CONFLICT DO NOTHING; "
			"INSERT INTO " SYNCSTATE_SCHEMA ".sync_stream (stream, start_lsn, members) "
			"VALUES (%s, '" LSN_FMT "', true) ON CONFLICT (stream) DO UPDATE "
			"SET start_lsn = EXCLUDED.start_lsn, done_at = EXCLUDED.done_at, members = true",
			lit, lit, LSN_ARGS(lsn)) < 0)
		sql = NULL;
	free(lit);
	return sql;
}

char *syncstate_fold_sql(const char *stream, uint64_t lsn)
{
	char *lit = syncstate_literal(stream), *sql = NULL;

	if (lit && asprintf(&sql, "DELETE FROM " SYNCSTATE_SCHEMA ".sync_table WHERE stream = %s "
			"AND snapshot_lsn <= '" LSN_FMT "'; DELETE FROM " SYNCSTATE_SCHEMA ".sync_range "
			"WHERE stream = %s AND snapshot_lsn <= '" LSN_FMT "'", lit, LSN_ARGS(lsn), lit,
			LSN_ARGS(lsn)) < 0)
		sql = NULL;
	free(lit);
	return sql;
}

static bool syncstate_put_legacy_rows(FILE *out, const char *stream,
		const struct syncstate_legacy_table *tables, size_t n)
{
	bool ok = fputs("INSERT INTO " SYNCSTATE_SCHEMA ".sync_table (stream, schema_name, "
			"table_name, snapshot_lsn) VALUES ", out) >= 0;

	for (size_t i = 0; ok && i < n; i++) {
		ok = fputs(i ? ", (" : "(", out) >= 0 && syncstate_put_literal(out, stream) &&
		     fputs(", ", out) >= 0 && syncstate_put_literal(out, tables[i].schema) &&
		     fputs(", ", out) >= 0 && syncstate_put_literal(out, tables[i].table) &&
		     fprintf(out, ", '" LSN_FMT "')", LSN_ARGS(tables[i].lsn)) >= 0;
	}
	return ok && fputs(" ON CONFLICT DO NOTHING; ", out) >= 0;
}

char *syncstate_migrate_sql(const char *stream, const struct syncstate_legacy_table *tables,
		size_t n, uint64_t done_lsn, char *const *origins, size_t norigins)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);
	bool ok;

	if (!out)
		return NULL;
	ok = fputs("BEGIN; ", out) >= 0;
	if (ok && n)
		ok = syncstate_put_legacy_rows(out, stream, tables, n);
	if (ok && done_lsn)
		ok = fputs("INSERT INTO " SYNCSTATE_SCHEMA ".sync_stream (stream, start_lsn) VALUES (",
			   out) >= 0 && syncstate_put_literal(out, stream) &&
		     fprintf(out, ", '" LSN_FMT "') ON CONFLICT DO NOTHING; ", LSN_ARGS(done_lsn)) >= 0;
	ok = ok && fputs("COMMIT; SELECT count(pg_catalog.pg_replication_origin_drop(roname)) "
			 "FROM pg_catalog.pg_replication_origin WHERE roname IN (", out) >= 0;
	for (size_t i = 0; ok && i < norigins; i++)
		ok = (i == 0 || fputs(", ", out) >= 0) && syncstate_put_literal(out, origins[i]);
	ok = ok && fputs(norigins ? ")" : "NULL)", out) >= 0;
	return syncstate_finish(out, &buf, ok);
}

char *syncstate_forget_sql(const char *stream)
{
	char *lit = syncstate_literal(stream), *apply = NULL, *sql = NULL;
	char *applylit = NULL;

	/* the apply origin's name, and (with ':' appended in SQL) every other one's prefix */
	if (asprintf(&apply, SYNCSTATE_ORIGIN_PREFIX "%s", stream) >= 0)
		applylit = syncstate_literal(apply);
	/*
	 * The deletes commit under SYNCSTATE_FORGET_ORIGIN, so a reverse stream
	 * passes them on empty; the session lets go of it before the drops.
	 */
	if (lit && applylit && asprintf(&sql,
			"SELECT pg_catalog.pg_replication_origin_create('" SYNCSTATE_FORGET_ORIGIN "') "
			"WHERE pg_catalog.pg_replication_origin_oid('" SYNCSTATE_FORGET_ORIGIN "') IS NULL; "
			"SELECT pg_catalog.pg_replication_origin_session_setup('" SYNCSTATE_FORGET_ORIGIN "'); "
			"BEGIN; "
			"DO $strait$BEGIN "
			"IF pg_catalog.to_regclass('" SYNCSTATE_SCHEMA ".sync_table') IS NOT NULL THEN "
			"DELETE FROM " SYNCSTATE_SCHEMA ".sync_table WHERE stream = %s; END IF; "
			"IF pg_catalog.to_regclass('" SYNCSTATE_SCHEMA ".sync_stream') IS NOT NULL THEN "
			"DELETE FROM " SYNCSTATE_SCHEMA ".sync_stream WHERE stream = %s; END IF; "
			"IF pg_catalog.to_regclass('" SYNCSTATE_SCHEMA ".sync_member') IS NOT NULL THEN "
			"DELETE FROM " SYNCSTATE_SCHEMA ".sync_member WHERE stream = %s; "
			"DELETE FROM " SYNCSTATE_SCHEMA ".sync_join WHERE stream = %s; END IF; "
			"IF pg_catalog.to_regclass('" SYNCSTATE_SCHEMA ".sync_range') IS NOT NULL THEN "
			"DELETE FROM " SYNCSTATE_SCHEMA ".sync_range WHERE stream = %s; END IF; "
			"END$strait$; "
			"COMMIT; "
			"SELECT pg_catalog.pg_replication_origin_session_reset(); "
			"SELECT count(pg_catalog.pg_replication_origin_drop(roname)) "
			"FROM pg_catalog.pg_replication_origin WHERE roname = %s "
			"OR pg_catalog.starts_with(roname, %s || ':')",
			lit, lit, lit, lit, lit, applylit, applylit) < 0)
		sql = NULL;
	free(lit);
	free(apply);
	free(applylit);
	return sql;
}

/* "stream, schema, table" as three literals, or NULL. */
static char *syncstate_row_key(const char *stream, const char *schema, const char *table)
{
	char *a = syncstate_literal(stream), *b = syncstate_literal(schema);
	char *c = syncstate_literal(table), *out = NULL;

	if (a && b && c && asprintf(&out, "%s, %s, %s", a, b, c) < 0)
		out = NULL;
	free(a);
	free(b);
	free(c);
	return out;
}

char *syncstate_members_sql(const char *stream)
{
	char *lit = syncstate_literal(stream), *sql = NULL;

	if (lit && asprintf(&sql, "SELECT 'm', schema_name, table_name, left_lsn::text FROM "
			SYNCSTATE_SCHEMA ".sync_member WHERE stream = %s UNION ALL SELECT 'j', "
			"schema_name, table_name, NULL FROM " SYNCSTATE_SCHEMA ".sync_join WHERE "
			"stream = %s UNION ALL SELECT 's', members::text, NULL, NULL FROM "
			SYNCSTATE_SCHEMA ".sync_stream WHERE stream = %s", lit, lit, lit) < 0)
		sql = NULL;
	free(lit);
	return sql;
}

char *syncstate_join_begin_sql(const char *stream, const char *schema, const char *table)
{
	char *key = syncstate_row_key(stream, schema, table), *sql = NULL;

	if (key && asprintf(&sql, "INSERT INTO " SYNCSTATE_SCHEMA ".sync_join (stream, schema_name, "
			"table_name) VALUES (%s) ON CONFLICT DO NOTHING", key) < 0)
		sql = NULL;
	free(key);
	return sql;
}

char *syncstate_join_end_sql(const char *stream, const char *schema, const char *table)
{
	char *key = syncstate_row_key(stream, schema, table), *sql = NULL;

	if (key && asprintf(&sql, "BEGIN; DELETE FROM " SYNCSTATE_SCHEMA ".sync_join WHERE "
			"(stream, schema_name, table_name) = (%s); INSERT INTO " SYNCSTATE_SCHEMA
			".sync_member VALUES (%s) ON CONFLICT (stream, schema_name, table_name) DO UPDATE "
			"SET left_lsn = NULL; COMMIT", key, key) < 0)
		sql = NULL;
	free(key);
	return sql;
}

char *syncstate_member_leave_sql(const char *stream, const char *schema, const char *table,
		uint64_t lsn)
{
	char *key = syncstate_row_key(stream, schema, table), *sql = NULL;

	if (key && asprintf(&sql, "BEGIN; INSERT INTO " SYNCSTATE_SCHEMA ".sync_member VALUES (%s, '"
			LSN_FMT "') ON CONFLICT (stream, schema_name, table_name) DO UPDATE SET "
			"left_lsn = EXCLUDED.left_lsn; DELETE FROM " SYNCSTATE_SCHEMA ".sync_join WHERE "
			"(stream, schema_name, table_name) = (%s); COMMIT", key, LSN_ARGS(lsn), key) < 0)
		sql = NULL;
	free(key);
	return sql;
}

char *syncstate_adopt_sql(const char *stream, const char *const *schemas,
		const char *const *tables, size_t n)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);
	bool ok;

	if (!out)
		return NULL;
	ok = fputs("BEGIN; ", out) >= 0;
	for (size_t i = 0; ok && i < n; i++) {
		char *key = syncstate_row_key(stream, schemas[i], tables[i]);

		ok = key && fprintf(out, "INSERT INTO " SYNCSTATE_SCHEMA ".sync_member VALUES (%s) "
				    "ON CONFLICT DO NOTHING; ", key) >= 0;
		free(key);
	}
	ok = ok && fputs("UPDATE " SYNCSTATE_SCHEMA ".sync_stream SET members = true WHERE stream = ",
			 out) >= 0 &&
	     syncstate_put_literal(out, stream) && fputs("; COMMIT", out) >= 0;
	return syncstate_finish(out, &buf, ok);
}
