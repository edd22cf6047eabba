/*
 * syncplan.h — what both ends of an initial sync agree on: the plan of a
 * copy round (which tables, with which columns), its text form inside SYNC
 * frames, and the names of the replication origins that record, on the
 * target, which tables are loaded and at which snapshot LSN.
 *
 * The plan travels as the data of SYNC frames for the reserved pseudo-table
 * pg_catalog.strait_sync_plan (PostgreSQL never publishes a catalog table,
 * so no real table can collide). Its text is UTF-8 lines, fields separated
 * by TAB, each field escaped like COPY's text format (\\ \t \n \r):
 *
 *   strait-sync-plan <TAB> 2 <TAB> <generation>
 *   c <TAB> schema <TAB> table [<TAB> column]...   copied whole in this round
 *   r <TAB> schema <TAB> table <TAB> n <TAB> list [<TAB> column]...
 *                                                  copied in n block ranges
 *                                                  (syncrange.h); list: those
 *                                                  copied in this round, as
 *                                                  "0-3,7" — the sink has the
 *                                                  others, from this snapshot
 *   k <TAB> schema <TAB> table                     the sink already has it
 *
 * Version 2 added the 'r' lines; a version 1 plan is refused.
 *
 * The generation is the sink's RESUME that asked for the round, so the sink
 * can tell this round's plan from an older one still in flight.
 *
 * Origins (on the target) of earlier versions, now only read to migrate
 * them into the record of syncstate.h: "strait_<stream>:sync:<schema>.
 * <table>" per loaded table, its progress the LSN of the snapshot the copy
 * was taken in; "strait_<stream>:sync" for the stream once every table was
 * loaded, its progress the LSN streaming starts at. Schema and table are written as
 * quote_ident() would (double quotes when not plain lowercase), so the name
 * parses back unambiguously. The prefix "strait_" makes a reverse stream
 * treat the loaded rows as strait's own and not send them back.
 *
 * Return conventions: bool, false when out of memory or (decoding) when the
 * input is malformed, with the reason in err.
 */
#ifndef STRAIT_SYNCPLAN_H
#define STRAIT_SYNCPLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "replicator/syncrange.h"

#define SYNCPLAN_MUSTCHECK __attribute__((warn_unused_result))

#define SYNCPLAN_SCHEMA "pg_catalog"
#define SYNCPLAN_TABLE "strait_sync_plan"
#define SYNCPLAN_VERSION 2
/* Limits a plan from the peer is held to. */
#define SYNCPLAN_MAX_TABLES 100000u
#define SYNCPLAN_MAX_COLUMNS 1664u     /* PostgreSQL's MaxTupleAttributeNumber */
#define SYNCPLAN_MAX_TEXT (16u * 1024u * 1024u)

struct syncplan_table {
	char *schema;
	char *table;
	bool copy;               /* 'c' or 'r': copied in this round; 'k': kept (the sink has it) */
	char **columns;          /* only when copy */
	size_t ncolumns;
	uint32_t ranges;         /* 'r': copied in this many block ranges (at least 2); else 0 */
	struct syncrange_set copied;   /* 'r': the ranges copied in this round (never empty) */
};

struct syncplan {
	uint32_t generation;
	struct syncplan_table *tables;
	size_t n;
	size_t cap;
};

/* A growing byte buffer for the encoded text (free with syncplan_text_free). */
struct syncplan_text {
	char *data;
	size_t len;
	size_t cap;
};

void syncplan_init(struct syncplan *p);
void syncplan_free(struct syncplan *p);

/* Appends a table (strings copied); its index is p->n - 1 afterwards. */
bool syncplan_add(struct syncplan *p, const char *schema, const char *table, bool copy)
	SYNCPLAN_MUSTCHECK;
/* Appends a column to the last table added. */
bool syncplan_add_column(struct syncplan *p, const char *column) SYNCPLAN_MUSTCHECK;
/*
 * The last table added (a copied one) is copied in `ranges` block ranges
 * (2 to SYNCRANGE_MAX), none of them yet marked copied in this round: the
 * caller adds them to its `copied` set.
 */
bool syncplan_in_ranges(struct syncplan *p, uint32_t ranges) SYNCPLAN_MUSTCHECK;

/* Index of schema.table (lengths given: names from the wire), or -1. */
long syncplan_find(const struct syncplan *p, const char *schema, size_t schema_len,
		const char *table, size_t table_len);

/* The plan's text (appended to out). */
bool syncplan_encode(const struct syncplan *p, struct syncplan_text *out) SYNCPLAN_MUSTCHECK;
/*
 * Parses a whole plan text into out (initialised and empty). Refuses a wrong
 * header or version, unknown actions, empty names, bad escapes, NUL bytes,
 * columns on a kept table, duplicate tables, a range count or list that is
 * not canonical (syncrange.h) and anything over the limits.
 * On failure out is left empty.
 */
bool syncplan_decode(const char *text, size_t len, struct syncplan *out,
		char *err, size_t errlen) SYNCPLAN_MUSTCHECK;

bool syncplan_text_append(struct syncplan_text *t, const void *data, size_t len)
	SYNCPLAN_MUSTCHECK;
void syncplan_text_free(struct syncplan_text *t);

/* ---- sets of tables ---- */

/*
 * schema.table -> a value (an LSN, a plan index), hashed: plans and done
 * sets may hold many thousands of tables and are looked up per frame.
 */
struct syncplan_set_entry {
	char *schema;            /* NULL: empty slot */
	char *table;
	uint64_t value;
};

struct syncplan_set {
	struct syncplan_set_entry *slots;
	size_t cap;              /* power of two, or 0 */
	size_t n;
};

/* Inserts or replaces (names copied). */
bool syncplan_set_put(struct syncplan_set *s, const char *schema, size_t schema_len,
		const char *table, size_t table_len, uint64_t value) SYNCPLAN_MUSTCHECK;
/* The entry, or NULL. */
const struct syncplan_set_entry *syncplan_set_get(const struct syncplan_set *s,
		const char *schema, size_t schema_len, const char *table, size_t table_len);
/* Empties the set (keeps nothing). */
void syncplan_set_free(struct syncplan_set *s);

/* ---- ranges loaded, per table ---- */

/* The ranges of one table loaded from one snapshot. */
struct syncplan_ranges_entry {
	uint64_t lsn;            /* the snapshot they come from */
	struct syncrange_set got;    /* of got.n ranges; got.n 0: none (dropped) */
};

/* schema.table -> the ranges of it loaded (the sink's record, or what it told the source). */
struct syncplan_ranges {
	struct syncplan_set index;   /* value: an index into v */
	struct syncplan_ranges_entry *v;
	size_t n;
	size_t cap;
};

/*
 * Range `range` of `ranges` of schema.table is loaded from the snapshot at
 * lsn. Ranges from another snapshot, or of another count, are forgotten
 * (one copy replaces the other). False when out of memory or the numbers
 * are off (ranges from 2 to SYNCRANGE_MAX, range below it).
 */
bool syncplan_ranges_add(struct syncplan_ranges *r, const char *schema, size_t schema_len,
		const char *table, size_t table_len, uint64_t lsn, uint32_t range, uint32_t ranges)
	SYNCPLAN_MUSTCHECK;
/* The table's entry, or NULL when it has none. */
const struct syncplan_ranges_entry *syncplan_ranges_get(const struct syncplan_ranges *r,
		const char *schema, size_t schema_len, const char *table, size_t table_len);
/* Forgets the table's ranges (it is loaded whole, or copied afresh). */
void syncplan_ranges_drop(struct syncplan_ranges *r, const char *schema, size_t schema_len,
		const char *table, size_t table_len);
void syncplan_ranges_free(struct syncplan_ranges *r);

/* ---- origin names ---- */

/* "strait_<stream>:sync:<schema>.<table>"; malloc'd, NULL when out of memory. */
char *syncplan_table_origin(const char *stream, const char *schema, const char *table);
/* "strait_<stream>:sync"; malloc'd, NULL when out of memory. */
char *syncplan_stream_origin(const char *stream);

enum syncplan_origin_kind {
	SYNCPLAN_ORIGIN_OTHER,   /* not one of this stream's sync origins (or unparsable) */
	SYNCPLAN_ORIGIN_STREAM,  /* the stream's "sync done" origin */
	SYNCPLAN_ORIGIN_TABLE,   /* one table's: *schema and *table are malloc'd */
};

enum syncplan_origin_kind syncplan_parse_origin(const char *stream, const char *name,
		char **schema, char **table);

/* "schema.table" as quote_ident() writes each part, for messages and origin names. */
char *syncplan_qualified(const char *schema, const char *table);

#endif
