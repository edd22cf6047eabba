/*
 * syncload.h — the sink side of an initial sync: loads tables into the
 * target with COPY ... FROM STDIN and records each one as loaded in the same
 * transaction, and reads back what is recorded.
 *
 * A table's load is one target transaction on one of a few loader
 * connections (a pool, up to SYNCLOAD_MAX_CONNS):
 *
 *   BEGIN
 *   INSERT INTO strait.sync_table (stream, schema, table, '<snapshot LSN>')
 *       (syncstate.h; it also gives the transaction its xid)
 *   TRUNCATE the table when it has rows (a copy that committed before the
 *       sink could tell the source, or rows an operator left); DELETE them
 *       instead when another table's foreign key references it (TRUNCATE
 *       would be refused; the replication role keeps the keys' triggers quiet)
 *   COPY table (published columns) FROM STDIN  -- the chunks, in order
 *   COMMIT
 *
 * so the table's record says "loaded from the snapshot at LSN L" exactly
 * when its rows are committed: after a crash anywhere a table is either
 * loaded and recorded, or neither.
 *
 * A table copied in block ranges (syncrange.h) is loaded a range per job
 * and transaction, several at once, each recording its range
 * (strait.sync_range) and never truncating the table; only the first range
 * of a fresh copy (clear) deletes an earlier copy's record and truncates
 * the table when it has rows, and the table's other ranges wait until that
 * one commits: ranges loading side by side insert rows only, so they do not
 * conflict. syncload_query() reads the stream's
 * record (migrating an older version's per-table origins into it first),
 * syncload_mark_done() records the whole sync as loaded, syncload_fold()
 * deletes the table records streaming has passed.
 *
 * Every loader session is set up, for its life, on its own replication
 * origin "strait_<stream>:load<n>" (n its place in the pool): everything a
 * loader writes carries a strait_ origin, so a reverse stream passes it on
 * empty, and the target's origins do not grow with the schema.
 *
 * Loader sessions are set up like the apply engine's and like the source's
 * copy connections (session_replication_role replica, so foreign keys and
 * triggers do not fire on rows the source already checked; DateStyle ISO,
 * IntervalStyle postgres, extra_float_digits 3, client_encoding UTF8, empty
 * search_path, no timeouts, synchronous_commit at least local).
 *
 * Failures: a failed statement or a broken connection fails the whole batch
 * of loads (every connection is closed, so the target rolls back whatever
 * was not committed), logged once, then failed(). syncload_abort() drops the
 * loads on request and keeps the connections: a load in COPY is ended with
 * an error and its transaction rolled back before the connection takes
 * another table.
 *
 * Non-blocking libpq inside the caller's event loop. Callbacks run from the
 * loop, never from inside a syncload_*() call; the caller frees the object
 * with syncload_free(), never inside a callback. Return conventions: bool,
 * false when out of memory or the job is unknown (nothing changes then).
 */
#ifndef STRAIT_SYNCLOAD_H
#define STRAIT_SYNCLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <libpq-fe.h>

#define SYNCLOAD_MUSTCHECK __attribute__((warn_unused_result))
/* Also the number of origins a stream's loaders take on the target (syncstate.h). */
#define SYNCLOAD_MAX_CONNS 3u

struct event_base;
struct json_out;
struct syncload;

/* A table recorded as loaded on the target. */
struct syncload_loaded {
	const char *schema;
	const char *table;
	uint64_t lsn;            /* the snapshot its copy was taken in */
	uint32_t range;          /* a range of a table copied in ranges: which, of how many */
	uint32_t ranges;         /* 0: the whole table */
};

/* Which part of a table a load is. */
struct syncload_range {
	uint32_t range;          /* below ranges */
	uint32_t ranges;         /* 0: the whole table */
	bool clear;              /* the first of a fresh copy: clears the table and its record */
};

struct syncload_callbacks {
	/*
	 * syncload_query()'s answer: the loaded tables and ranges (entries with
	 * ranges set) and the stream-wide LSN (0 when the sync is not recorded
	 * as complete). Valid during the call.
	 */
	void (*state)(void *arg, const struct syncload_loaded *tables, size_t n, uint64_t done_lsn);
	/* Chunks up to `chunk` of the job went to the target (flow control). */
	void (*taken)(void *arg, uint64_t job, uint32_t chunk);
	/*
	 * The job's table (or range) is loaded and recorded (also after
	 * syncload_abort() when its COMMIT was under way).
	 */
	void (*loaded)(void *arg, uint64_t job, const struct syncload_loaded *t, uint64_t rows);
	/* syncload_mark_done() is recorded. */
	void (*marked)(void *arg, uint64_t done_lsn);
	/* syncload_fold() is done (may be NULL). */
	void (*folded)(void *arg, uint64_t lsn);
	/* A syncload_statement() committed; res is its last result (may be NULL: never called). */
	void (*statement)(void *arg, uint64_t tag, const PGresult *res);
	/* Something failed (logged): every load is dropped. */
	void (*failed)(void *arg, const char *reason);
};

/* Connects lazily; NULL when out of memory. */
struct syncload *syncload_new(struct event_base *base, const char *conninfo, const char *stream,
		const struct syncload_callbacks *cb, void *arg);
void syncload_free(struct syncload *sl);
/*
 * One connection only, on the pool's origin n (before anything runs): a
 * second user of the stream's pool beside one that keeps to the others.
 */
void syncload_use_origin(struct syncload *sl, unsigned n);

/* Reads the recorded state (state() follows). */
void syncload_query(struct syncload *sl);

/*
 * A table's load: its COPY text comes with syncload_data() in order and
 * ends with syncload_end(). Returns the job's id (never 0), 0 when out of
 * memory. columns: the target columns the text's fields go to (ncolumns 0:
 * all, in the table's order).
 */
uint64_t syncload_begin(struct syncload *sl, const char *schema, const char *table,
		char *const *columns, size_t ncolumns, uint64_t lsn);
/* A range of a table copied in ranges (syncload_begin() is the whole table's). */
uint64_t syncload_begin_range(struct syncload *sl, const char *schema, const char *table,
		char *const *columns, size_t ncolumns, uint64_t lsn, const struct syncload_range *r);
/* Chunk number `chunk` of the job's text (copied). */
bool syncload_data(struct syncload *sl, uint64_t job, uint32_t chunk, const uint8_t *data,
		size_t len) SYNCLOAD_MUSTCHECK;
bool syncload_end(struct syncload *sl, uint64_t job) SYNCLOAD_MUSTCHECK;

/* Drops every load not yet committing (rolled back). */
void syncload_abort(struct syncload *sl);

/* Records the whole sync as loaded, streaming to start at lsn (marked() follows). */
void syncload_mark_done(struct syncload *sl, uint64_t lsn);

/* Deletes the table records at or below lsn, which the stream has applied (folded() follows). */
void syncload_fold(struct syncload *sl, uint64_t lsn);

/*
 * Runs sql (its own transaction, on a loader's session, so its writes carry
 * the loader's strait_ origin) after what is queued; statement() follows, a
 * failure fails everything as a load's would. False when out of memory.
 */
bool syncload_statement(struct syncload *sl, const char *sql, uint64_t tag) SYNCLOAD_MUSTCHECK;
/* Whether nothing is queued, loading or rolling back. */
bool syncload_idle(const struct syncload *sl);

/* Members of the caller's open status object. */
void syncload_status_json(const struct syncload *sl, struct json_out *j);

#endif
