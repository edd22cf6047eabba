/*
 * verify.h — compares one table between two PostgreSQL databases by
 * checksums computed inside PostgreSQL, so only checksums (and, for the few
 * rows that differ, keys and per-row hashes) cross the network. The core of
 * `straitctl verify`; the caller decides which tables and sites.
 *
 * Blocking: this uses plain blocking libpq calls on the two PGconn it is
 * given, so it must run in a worker thread or a separate process, never in
 * the libevent loop.
 *
 * Snapshots: both connections must already be inside a transaction with a
 * snapshot (BEGIN ISOLATION LEVEL REPEATABLE READ), set up by the caller, so
 * every query of one side sees the same data. verify_table() sets a few
 * output settings with SET LOCAL (datestyle, timezone, extra_float_digits,
 * bytea_output, intervalstyle) in those transactions, so a row's text form is
 * the same on both sides.
 *
 * Method, for a table with a primary key (or replica identity index):
 *   - the source's key order is cut into chunks of options.chunk_rows rows
 *     (keyset pagination: the chunk boundaries are source keys, applied as
 *     (lo, hi] row comparisons to both sides; the first chunk has no lower
 *     bound and the last none above, so every row of either side is covered);
 *   - per chunk and side: count(*) and sum(hashtextextended((t.*)::text, 0)),
 *     summed as numeric (exact, no overflow). A sum of per-row hashes does
 *     not depend on order and a single changed, missing or extra row shifts
 *     it by a 64-bit pseudo-random value, so a difference goes unnoticed with
 *     probability about 2^-64 per chunk (with the count as a second check);
 *     hashtextextended is not cryptographic, so this guards against
 *     accidents, not against someone crafting rows to collide;
 *   - a chunk whose (count, sum) differ is halved at the middle key of the
 *     side holding more rows in it, recursively, down to options.leaf_rows
 *     rows per side; then both sides' keys and row hashes in that range are
 *     fetched, sorted on the client and merged: missing on the target, extra
 *     on the target, changed.
 * Both sides must order keys the same way (same collations).
 *
 * Without such a key the table is compared as a multiset of row texts: the
 * same whole-table (count, sum); if they differ, (count, sum) per hash
 * bucket (the low bits of each row's hash); then for each differing bucket
 * the row texts with their multiplicities, whose difference is reported
 * (missing: more copies on the source; extra: more on the target).
 *
 * At most options.max_report differences are kept (the totals count all of
 * them; truncated says some were left out).
 *
 * Ownership: verify_table() fills a caller-provided result that the caller
 * releases with verify_result_free(); it keeps no pointer to its inputs.
 * Errors go to the caller's err buffer; nothing is logged here.
 */
#ifndef STRAIT_VERIFY_H
#define STRAIT_VERIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "common/json.h"

#define VERIFY_MUSTCHECK __attribute__((warn_unused_result))

#define VERIFY_DEFAULT_CHUNK_ROWS 10000
#define VERIFY_DEFAULT_LEAF_ROWS 64
#define VERIFY_DEFAULT_MAX_REPORT 1000

struct verify_options {
	int64_t chunk_rows;        /* 0: VERIFY_DEFAULT_CHUNK_ROWS */
	int64_t leaf_rows;         /* 0: VERIFY_DEFAULT_LEAF_ROWS */
	size_t max_report;         /* 0: VERIFY_DEFAULT_MAX_REPORT */
	double rows_per_second;    /* > 0: pause between chunks to read no faster (per side) */
	/*
	 * Optional: between the chunks of a keyed table, once both snapshots are
	 * older than refresh_after_ms, refresh() replaces them with newer ones
	 * (at a new common point), so no snapshot holds back the databases'
	 * cleanup for long; each chunk is still compared at one point. False
	 * with err set stops the comparison.
	 */
	bool (*refresh)(void *arg, char *err, size_t errlen);
	void *refresh_arg;
	double refresh_after_ms;
};

/*
 * What the comparison asks of one side. A remote target is sent this, never
 * SQL: its site builds the statement itself (verify_query_sql) from the
 * table and key columns of its own catalog, so a peer can name a table, key
 * values and bounds, and nothing else.
 */
enum verify_query_kind {
	VERIFY_Q_SETTINGS = 1,     /* the output settings, local to the snapshot */
	VERIFY_Q_CHECKSUM,         /* count and hash sum over the range (keyless: the table) */
	VERIFY_Q_BOUNDARY,         /* the key of the row at offset in the range */
	VERIFY_Q_ROWS,             /* each row's key and hash in the range */
	VERIFY_Q_BUCKETS,          /* keyless: count and sum per hash bucket (hash & mask) */
	VERIFY_Q_BUCKET_ROWS,      /* keyless: the row texts of bucket, with multiplicities */
	VERIFY_Q_LAST = VERIFY_Q_BUCKET_ROWS,
};

/* At most this many key columns; bounds take 2 parameters a column. */
#define VERIFY_MAX_KEYS 32
/* Hash buckets are at most this many (verify_bucket_count). */
#define VERIFY_MAX_BUCKETS 65536

struct verify_query {
	enum verify_query_kind kind;
	const char *schema;        /* unquoted; none for VERIFY_Q_SETTINGS */
	const char *name;
	const char *const *key_columns;  /* unquoted; none for a keyless table */
	size_t n_keys;
	bool lo;                   /* the range's bounds: lower parameters first */
	bool hi;
	int64_t offset;            /* VERIFY_Q_BOUNDARY */
	uint64_t mask;             /* VERIFY_Q_BUCKETS, VERIFY_Q_BUCKET_ROWS */
	uint64_t bucket;           /* VERIFY_Q_BUCKET_ROWS */
};

/*
 * A target that is not a local connection (another site's database, reached
 * through its straitd): exec has q run with the bounds' text parameters in
 * the target's snapshot transaction and returns its result, or NULL with err
 * set when it could not be run at all (an SQL error comes back as an error
 * result).
 */
struct verify_remote {
	PGresult *(*exec)(void *arg, const struct verify_query *q, int nparams,
			  const char *const *params, char *err, size_t errlen);
	void *arg;
};

struct verify_target {
	const char *schema;        /* unquoted names */
	const char *name;
	const char *const *key_columns; /* NULL: the source's primary key or replica identity index */
	size_t n_keys;
};

/* One difference: a key label "(id)=(42)" (keyed tables, count 1) or a row
 * text with how many more copies one side has (multiset comparison). */
struct verify_item {
	char *text;
	int64_t count;
};

struct verify_list {
	struct verify_item *items;
	size_t n;
	size_t cap;
	int64_t total;             /* all found, including those not kept */
};

struct verify_result {
	char *table;               /* "schema"."name" */
	bool keyed;                /* false: compared as a multiset */
	char **key_columns;        /* the key used (unquoted), n_keys entries */
	size_t n_keys;
	int64_t rows_source;
	int64_t rows_target;
	uint64_t chunks;           /* top-level chunks compared */
	uint64_t narrowed;         /* ranges or buckets fetched row by row */
	struct verify_list missing;  /* on the source, not on the target */
	struct verify_list extra;    /* on the target, not on the source */
	struct verify_list changed;  /* same key, different row */
	bool truncated;
	uint64_t checksum_bytes;   /* approx. bytes of results read from the target */
	uint64_t points;           /* snapshots compared at (1, more with refresh) */
	double elapsed_ms;
};

/* Compares one table; false with err set when a query failed (the result
 * then holds what was found so far and must still be freed). */
bool verify_table(PGconn *source, PGconn *target, const struct verify_target *t,
		  const struct verify_options *options, struct verify_result *out,
		  char *err, size_t errlen) VERIFY_MUSTCHECK;
/* As verify_table(), with the target behind remote. */
bool verify_table_remote(PGconn *source, const struct verify_remote *target,
			 const struct verify_target *t, const struct verify_options *options,
			 struct verify_result *out, char *err, size_t errlen) VERIFY_MUSTCHECK;
bool verify_result_equal(const struct verify_result *r);
void verify_result_free(struct verify_result *r);

/* The result as one object (key as json_object_begin takes it). */
void verify_result_json(struct json_out *j, const char *key, const struct verify_result *r);
/* A human report, several lines; caller frees. NULL when out of memory. */
char *verify_report_text(const struct verify_result *r);

/* ---- pure parts, exposed for tests ---- */

/* A table and its key, as the SQL builders use them. */
struct verify_keys {
	const char *table;         /* quoted and qualified: "s"."t" */
	const char *const *columns;  /* quoted: "id" */
	const char *const *types;    /* format_type() output: integer, text */
	size_t n;
};

/* " WHERE (k...) > ($1::type, ...) AND (k...) <= ($n+1::type, ...)", either
 * bound optional ("" when neither). Lower bound parameters come first. */
char *verify_sql_range(const struct verify_keys *k, bool lo, bool hi);
/* count(*) and hash sum over the range. */
char *verify_sql_checksum(const struct verify_keys *k, bool lo, bool hi);
/* The key (as text, one column each) of the row at OFFSET offset in key order. */
char *verify_sql_boundary(const struct verify_keys *k, bool lo, bool hi, int64_t offset);
/* Each row's key columns as text, then its hash. */
char *verify_sql_rows(const struct verify_keys *k, bool lo, bool hi);

/*
 * q's statement over k (k->table and k->columns quoted, k->types from the
 * catalog of the side that runs it; k->n must be q->n_keys); NULL when q is
 * not one the comparison makes (err says why) or out of memory (err empty).
 * Every statement is a single SELECT whose only inputs from q are numbers.
 */
char *verify_query_sql(const struct verify_query *q, const struct verify_keys *k, char *err,
		       size_t errlen);
/* How many text parameters q takes (its bounds). */
size_t verify_query_nparams(const struct verify_query *q);

enum verify_step {
	VERIFY_STEP_LEAF,          /* fetch the rows of both sides and diff */
	VERIFY_STEP_SPLIT,         /* cut at the row at *offset of one side */
	VERIFY_STEP_EQUAL,         /* nothing in the range on either side */
};

/* How to narrow a differing range holding src_rows and dst_rows rows: the
 * cut is taken from the side with more rows (*from_target), at the row that
 * ends its first half, so both halves are non-empty on that side. */
enum verify_step verify_plan_split(int64_t src_rows, int64_t dst_rows, int64_t leaf_rows,
				   bool *from_target, int64_t *offset);

/* Hash buckets for a multiset comparison of `rows` rows: a power of two
 * giving about leaf_rows rows each, between 1 and 65536. */
uint64_t verify_bucket_count(int64_t rows, int64_t leaf_rows);

/* A fetched row: key is an unambiguous encoding used for sorting and
 * matching; label is what a report shows; hash is compared as text.
 * For multiset rows, key is the row text and count its multiplicity. */
struct verify_row {
	const char *key;
	const char *label;
	const char *hash;
	int64_t count;
};

enum verify_diff_kind {
	VERIFY_MISSING,
	VERIFY_EXTRA,
	VERIFY_CHANGED,
};

/* Called once per difference; count is 1 for keyed rows, else the
 * multiplicity difference (always positive). */
typedef void (*verify_diff_fn)(void *arg, enum verify_diff_kind kind, const struct verify_row *row,
			       int64_t count);

void verify_sort_rows(struct verify_row *rows, size_t n);
/* Merges two lists sorted by verify_sort_rows(). multiset: rows are matched
 * by key and their counts compared; else by key and their hashes. */
void verify_diff_rows(const struct verify_row *src, size_t n_src, const struct verify_row *dst,
		      size_t n_dst, bool multiset, verify_diff_fn fn, void *arg);

/* Appends "key_len:key" segments so composite keys never collide; caller frees. */
char *verify_encode_key(const char *const *values, size_t n);
/* "(a, b)=(1, x)" as PostgreSQL writes keys in messages; caller frees. */
char *verify_key_label(const char *const *names, const char *const *values, size_t n);

#endif
