/*
 * syncstate.h — what an initial sync keeps on the target, as SQL text: the
 * record of loaded tables and of finished syncs, the loaders' replication
 * origins, and their clean-up.
 *
 * The record is two tables in the schema "strait" of the target database,
 * created on first use (by a role with CREATE on the database, or by an
 * operator beforehand):
 *
 *   strait.sync_table  (stream, schema_name, table_name, snapshot_lsn, loaded_at)
 *       one row per loaded table, written in the transaction of its COPY, so
 *       it says "loaded from the snapshot at snapshot_lsn" exactly when the
 *       rows are committed; deleted ("folded") once the stream's apply
 *       origin has passed snapshot_lsn and the sync is done, since nothing
 *       needs it then
 *   strait.sync_stream (stream, start_lsn, done_at)
 *       one row once every table is loaded: streaming starts at start_lsn
 *   strait.sync_range  (stream, schema_name, table_name, range_no, ranges,
 *                       snapshot_lsn, loaded_at)
 *       one row per loaded range of a table copied in block ranges
 *       (syncrange.h), written in the transaction of the range's COPY; the
 *       table is loaded once all `ranges` rows are there with one
 *       snapshot_lsn. Folded with the table rows.
 *
 * Neither grows the server's replication origins with the schema. Loaders
 * mark their writes with an origin of a fixed pool,
 * "strait_<stream>:load<n>" (one per loader connection: an origin is set up
 * by one session at a time), whose "strait_" prefix makes a reverse stream
 * pass the loaded rows on empty. Their progress means nothing.
 *
 * Older versions kept one origin per table ("strait_<stream>:sync:<schema>.
 * <table>", syncplan.h) and one for the stream ("strait_<stream>:sync"):
 * syncstate_migrate_sql() moves them into the tables and drops them.
 *
 * Every function returns a malloc'd string, NULL when out of memory. Names
 * and stream names are quoted here (standard_conforming_strings on, as
 * PostgreSQL's default and libpq's checks assume).
 */
#ifndef STRAIT_SYNCSTATE_H
#define STRAIT_SYNCSTATE_H

#include <stddef.h>
#include <stdint.h>

#define SYNCSTATE_SCHEMA "strait"

/* 'text' as an SQL string literal. */
char *syncstate_literal(const char *text);

/* "strait_<stream>:load<n>". */
char *syncstate_loader_origin(const char *stream, unsigned n);

/*
 * A loader's session: creates the schema and tables when missing (under an
 * advisory lock: two streams' loaders may start at once), creates the
 * loader's origin when missing and sets the session up on it.
 */
char *syncstate_session_sql(const char *stream, unsigned n);

/*
 * Folds the records streaming has passed (the sync is done and the stream's
 * apply origin "strait_<stream>" is at or beyond their snapshot), then lists
 * what is recorded, one row per item, columns (kind, a, b, lsn text, range,
 * ranges; the last two NULL but for 'r'):
 *   't', schema, table, snapshot LSN   a loaded table
 *   'r', schema, table, snapshot LSN, range, ranges   a loaded range
 *   's', NULL, NULL, start LSN         the sync is done
 *   'o', origin name, NULL, progress   an origin of an older version (NULL: none)
 */
char *syncstate_query_sql(const char *stream);

/*
 * In a load's transaction: the table is loaded from the snapshot at lsn (any
 * range rows of an earlier copy of it are deleted).
 */
char *syncstate_record_sql(const char *stream, const char *schema, const char *table,
		uint64_t lsn);

/* In a range's load transaction: range `range` of `ranges` is loaded from the snapshot at lsn. */
char *syncstate_range_record_sql(const char *stream, const char *schema, const char *table,
		uint64_t lsn, uint32_t range, uint32_t ranges);

/*
 * In the transaction of the first range of a fresh copy of the table: every
 * record of an earlier copy of it (ranges, or the whole table) is deleted.
 */
char *syncstate_clear_sql(const char *stream, const char *schema, const char *table);

/* Its own transaction: every table is in, streaming starts at lsn. */
char *syncstate_done_sql(const char *stream, uint64_t lsn);

/* Deletes the table and range records at or below lsn (the stream has applied up to there). */
char *syncstate_fold_sql(const char *stream, uint64_t lsn);

/* An older version's record, read from its origins. */
struct syncstate_legacy_table {
	const char *schema;
	const char *table;
	uint64_t lsn;
};

/*
 * Records the older version's tables (and done_lsn, when not 0) unless
 * already recorded, commits, then drops the named origins: a crash between
 * the two leaves both, and the next start does it again.
 */
char *syncstate_migrate_sql(const char *stream, const struct syncstate_legacy_table *tables,
		size_t n, uint64_t done_lsn, char *const *origins, size_t norigins);

/*
 * Marks forget-stream's deletes. A stream name starts with a letter, so no
 * stream's origins can take this name; it is never dropped, as a reverse
 * stream decoding those deletes later must still find its "strait_" name.
 */
#define SYNCSTATE_FORGET_ORIGIN "strait_:forget"

/*
 * Tables that join later (DESIGN.md, "Tables that join later"):
 *
 *   strait.sync_member (stream, schema_name, table_name, left_lsn)
 *       the tables the stream has: every table of the initial sync (written
 *       with the done row) and every table that joined since; left_lsn is
 *       set when the table left the publication (at or before that LSN), so
 *       a change of it from there on, or its return to the list, copies it
 *       again
 *   strait.sync_join (stream, schema_name, table_name, since)
 *       a table being copied while the others stream on, from before any of
 *       its changes is held until its held changes are applied: a start that
 *       finds it copies the table again
 *   strait.sync_stream.members
 *       true once sync_member is complete for the stream (false: a record
 *       from before members were kept; the publication's tables are taken
 *       as members once)
 *
 * The members query lists (kind, a, b, c): 'm' schema table left_lsn (NULL
 * while in), 'j' schema table NULL, 's' members ("true"/"false") NULL NULL.
 */
char *syncstate_members_sql(const char *stream);
char *syncstate_join_begin_sql(const char *stream, const char *schema, const char *table);
/* The held changes are applied: a member from now on. */
char *syncstate_join_end_sql(const char *stream, const char *schema, const char *table);
/* The table left the publication, as of lsn. */
char *syncstate_member_leave_sql(const char *stream, const char *schema, const char *table,
		uint64_t lsn);
/* An older record: these tables are the stream's members. */
char *syncstate_adopt_sql(const char *stream, const char *const *schemas,
		const char *const *tables, size_t n);

/*
 * Everything strait keeps for the stream on this database: its rows in the
 * record (deleted under SYNCSTATE_FORGET_ORIGIN, so no reverse stream sends
 * the deletes on), its apply origin "strait_<stream>" and every
 * "strait_<stream>:..." origin. The result's last row: the number of origins
 * dropped. The connection must not be set up on an origin already.
 */
char *syncstate_forget_sql(const char *stream);

#endif
