/*
 * synccopy.c — the source side of an initial-sync round (see synccopy.h).
 *
 * NOTES
 * One state enum for the round (synccopy_set_state, logged) and one per
 * worker connection (synccopy_worker_set_state, logged at debug: a worker's
 * life is a few steps per table). Each changes only through its function.
 *
 *   snapshot  [temporary slot only] CREATE_REPLICATION_SLOT ... TEMPORARY
 *             LOGICAL pgoutput (SNAPSHOT 'export') on a replication
 *             connection, which then stays idle
 *   importing every worker: session settings, BEGIN ISOLATION LEVEL
 *             REPEATABLE READ READ ONLY, SET TRANSACTION SNAPSHOT
 *   listing   worker 0 lists the publication's tables in the snapshot
 *   copying   each worker: COPY ... TO STDOUT, next table or range, ...
 *   parked    the sink is gone: copies under way are read to their end and
 *             dropped, the transactions stay open (synccopy_park())
 *   finished  every table and range read; the workers stay in their
 *             transactions, as the sink may still lose a range it had not
 *             committed and ask for it in this snapshot
 *   released / failed  every connection closed
 *
 * Session settings make the COPY text independent of the server's
 * configuration (DateStyle ISO, IntervalStyle postgres, extra_float_digits
 * 3, client_encoding UTF8 — the sink's loader uses the same), lift timeouts
 * an operator may have set for ordinary sessions, and empty search_path so
 * that row filters come out fully qualified.
 *
 * Reading COPY rows: libpq hands out one row per PQgetCopyData() call once
 * PQconsumeInput() has read the socket. A worker reads until libpq has no
 * whole row left, the link is full, or its table's window is; and at most
 * SYNCCOPY_BURST chunks per callback, after which it kicks itself, so other
 * connections and the relay get their turn. While it is held back its
 * socket is not watched (it would stay readable), and rows libpq already
 * holds are picked up by the kick that resumes it.
 *
 * Units. A table copied whole is one unit; a split one (syncrange.h) is one
 * unit per range. Each round marks, per table, the units it copies (todo)
 * and those read to their end (read); the workers take units in plan order
 * from a cursor (next_table, next_unit), which a new round restarts.
 */
#include "replicator/synccopy.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include <event2/event.h>
#include <libpq-fe.h>

#include "common/json.h"
#include "common/log.h"
#include "common/lsn.h"
#include "replicator/pgasync.h"
#include "replicator/replcmd.h"
#include "replicator/syncrange.h"
#include "replicator/syncstate.h"

#define SYNCCOPY_BURST 16u

enum synccopy_state {
	SYNCCOPY_SNAPSHOT,
	SYNCCOPY_IMPORTING,
	SYNCCOPY_LISTING,
	SYNCCOPY_COPYING,
	SYNCCOPY_PARKED,
	SYNCCOPY_FINISHED,
	SYNCCOPY_RELEASED,
	SYNCCOPY_FAILED,
};

static const char *const synccopy_state_names[] = {
	[SYNCCOPY_SNAPSHOT] = "taking a snapshot",
	[SYNCCOPY_IMPORTING] = "importing the snapshot",
	[SYNCCOPY_LISTING] = "listing tables",
	[SYNCCOPY_COPYING] = "copying",
	[SYNCCOPY_PARKED] = "holding the snapshot",
	[SYNCCOPY_FINISHED] = "finished",
	[SYNCCOPY_RELEASED] = "released",
	[SYNCCOPY_FAILED] = "failed",
};

enum worker_state {
	WORKER_CONNECTING,
	WORKER_IMPORTING,
	WORKER_LISTING,
	WORKER_IDLE,             /* snapshot imported, no table (its transaction stays open) */
	WORKER_COPY_START,       /* COPY sent */
	WORKER_COPYING,          /* reading rows */
	WORKER_COPY_END,         /* rows read, waiting for the command's result */
	WORKER_DONE,             /* released: connection closed */
};

static const char *const worker_state_names[] = {
	[WORKER_CONNECTING] = "connecting",
	[WORKER_IMPORTING] = "importing the snapshot",
	[WORKER_LISTING] = "listing tables",
	[WORKER_IDLE] = "idle",
	[WORKER_COPY_START] = "starting COPY",
	[WORKER_COPYING] = "copying",
	[WORKER_COPY_END] = "ending COPY",
	[WORKER_DONE] = "done",
};

/* What the source needs per table besides the plan entry. */
struct synccopy_info {
	char relkind;
	char *rowfilter;         /* NULL: none */
	bool done;               /* every unit of the round read */
	uint32_t units;          /* its ranges, or 1 when copied whole */
	uint64_t nblocks;        /* heap blocks when listed */
	struct syncrange_set todo;   /* units copied in this round */
	struct syncrange_set read;   /* ... and read to their end */
	uint64_t rows;
	uint64_t bytes;
	uint64_t size;           /* pg_relation_size() when listed: for progress estimates */
};

struct synccopy;

struct synccopy_worker {
	struct synccopy *sc;
	unsigned id;
	struct pgasync *pg;
	enum worker_state state;
	long table;              /* plan index, -1 when none */
	uint32_t unit;           /* its range (0 for a whole table) */
	bool discard;            /* the round was parked: rows read are dropped */
	uint8_t *buf;            /* the chunk being filled */
	size_t len;
	uint32_t chunk;          /* chunks of the table handed over */
	uint32_t acked;          /* chunks the sink took */
	bool held;               /* not reading: link or window full */
};

struct synccopy {
	struct event_base *base;
	struct synccopy_callbacks cb;
	void *arg;
	char *stream;
	char *conninfo;
	char *publication;
	uint32_t generation;
	size_t chunk_bytes;
	unsigned window;
	unsigned nworkers;
	uint64_t split_above;
	int server_version;

	enum synccopy_state state;
	char snapshot[128];
	uint64_t snapshot_lsn;
	bool temporary;          /* the snapshot comes from our own temporary slot */
	char slot[64];
	struct pgasync *repl;
	struct event *ev_start;
	struct event *ev_continue;

	struct synccopy_worker workers[SYNCCOPY_MAX_WORKERS];
	unsigned imported;
	struct syncplan plan;
	struct synccopy_info *info;
	size_t ninfo;
	size_t next_table;
	uint32_t next_unit;
	size_t tables_copy;
	size_t tables_done;
	bool paused;             /* the link is full */

	uint64_t rows;
	uint64_t bytes;
	uint64_t bytes_dropped;  /* read after a park and thrown away */
	unsigned rounds;
	int64_t started_ms;
	int64_t finished_ms;
	char last_error[256];
};

static int64_t synccopy_now_ms(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static void synccopy_set_state(struct synccopy *sc, enum synccopy_state next, const char *why)
{
	if (sc->state == next)
		return;
	log_info("stream \"%s\": initial sync copy %s -> %s: %s", sc->stream,
		 synccopy_state_names[sc->state], synccopy_state_names[next], why);
	sc->state = next;
}

static void synccopy_worker_set_state(struct synccopy_worker *w, enum worker_state next,
		const char *why)
{
	if (w->state == next)
		return;
	log_debug("stream \"%s\": initial sync worker %u: %s -> %s: %s", w->sc->stream, w->id,
		  worker_state_names[w->state], worker_state_names[next], why);
	w->state = next;
}

static void synccopy_close_all(struct synccopy *sc)
{
	pgasync_free(sc->repl);
	sc->repl = NULL;
	for (unsigned i = 0; i < sc->nworkers; i++) {
		pgasync_free(sc->workers[i].pg);
		sc->workers[i].pg = NULL;
	}
}

static void synccopy_fail(struct synccopy *sc, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Logs the failure once, closes every connection and tells the owner. */
static void synccopy_fail(struct synccopy *sc, const char *fmt, ...)
{
	va_list ap;

	if (sc->state == SYNCCOPY_FAILED || sc->state == SYNCCOPY_FINISHED)
		return;
	va_start(ap, fmt);
	vsnprintf(sc->last_error, sizeof(sc->last_error), fmt, ap);
	va_end(ap);
	log_error("stream \"%s\": initial sync: %s", sc->stream, sc->last_error);
	synccopy_close_all(sc);
	synccopy_set_state(sc, SYNCCOPY_FAILED, "error");
	sc->cb.failed(sc->arg, sc->last_error);
}

static const char *synccopy_table_name(const struct synccopy *sc, long t, char *out, size_t outlen)
{
	char *q = syncplan_qualified(sc->plan.tables[t].schema, sc->plan.tables[t].table);

	snprintf(out, outlen, "%s", q ? q : sc->plan.tables[t].table);
	free(q);
	return out;
}

/* ---- the temporary slot ---- */

static void synccopy_start_workers(struct synccopy *sc);

static void synccopy_repl_connected(void *arg)
{
	struct synccopy *sc = arg;
	char *sql = replcmd_create_slot_sql(PQserverVersion(pgasync_conn(sc->repl)), sc->slot, true,
					    true);

	if (!sql) {
		synccopy_fail(sc, "out of memory");
		return;
	}
	(void)pgasync_send(sc->repl, sql);
	free(sql);
}

static void synccopy_repl_input(void *arg)
{
	struct synccopy *sc = arg;
	PGresult *res = NULL;
	uint64_t lsn;

	if (sc->state != SYNCCOPY_SNAPSHOT) {
		/* idle, holding the snapshot: drain whatever comes (notices) */
		(void)pgasync_results(sc->repl, &res);
		PQclear(res);
		return;
	}
	switch (pgasync_results(sc->repl, &res)) {
	case PGASYNC_WAIT:
		return;
	case PGASYNC_ERROR:
		synccopy_fail(sc, "could not create temporary replication slot \"%s\": %s", sc->slot,
			      pgasync_statement_error(sc->repl));
		return;
	case PGASYNC_COPY:
	case PGASYNC_DONE:
		break;
	}
	if (!res || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 ||
	    PQnfields(res) < 3 || !lsn_parse(PQgetvalue(res, 0, 1), &lsn) ||
	    !*PQgetvalue(res, 0, 2)) {
		PQclear(res);
		synccopy_fail(sc, "unexpected answer to CREATE_REPLICATION_SLOT");
		return;
	}
	sc->snapshot_lsn = lsn;
	snprintf(sc->snapshot, sizeof(sc->snapshot), "%s", PQgetvalue(res, 0, 2));
	PQclear(res);
	log_info("stream \"%s\": initial sync: snapshot \"%s\" of temporary slot \"%s\" at " LSN_FMT,
		 sc->stream, sc->snapshot, sc->slot, LSN_ARGS(sc->snapshot_lsn));
	synccopy_start_workers(sc);
}

static void synccopy_repl_drained(void *arg)
{
	(void)arg;
}

static void synccopy_repl_failed(void *arg, const char *err)
{
	struct synccopy *sc = arg;

	if (sc->state == SYNCCOPY_SNAPSHOT || sc->state == SYNCCOPY_IMPORTING)
		synccopy_fail(sc, "replication connection for the snapshot failed: %s", err);
}

/* ---- workers ---- */

static void synccopy_dispatch(struct synccopy_worker *w);
static void synccopy_read_rows(struct synccopy_worker *w);

static void synccopy_worker_connected(void *arg)
{
	struct synccopy_worker *w = arg;
	struct synccopy *sc = w->sc;
	PGconn *conn = pgasync_conn(w->pg);
	char *snap = PQescapeLiteral(conn, sc->snapshot, strlen(sc->snapshot));
	char *sql = NULL;

	if (!snap || asprintf(&sql,
			"SET DateStyle = ISO; SET IntervalStyle = postgres; SET extra_float_digits = 3; "
			"SET client_encoding = 'UTF8'; SET search_path = ''; SET statement_timeout = 0; "
			"SET lock_timeout = 0; SET idle_in_transaction_session_timeout = 0; "
			"BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; "
			"SET TRANSACTION SNAPSHOT %s", snap) < 0) {
		PQfreemem(snap);
		synccopy_fail(sc, "out of memory");
		return;
	}
	PQfreemem(snap);
	synccopy_worker_set_state(w, WORKER_IMPORTING, "connected");
	(void)pgasync_send(w->pg, sql);
	free(sql);
}

static char *synccopy_listing_sql(struct synccopy_worker *w)
{
	PGconn *conn = pgasync_conn(w->pg);
	char *pub = PQescapeLiteral(conn, w->sc->publication, strlen(w->sc->publication));
	bool v15 = PQserverVersion(conn) >= 150000;
	char *sql = NULL;

	if (!pub)
		return NULL;
	/*
	 * One row per published column (NULL attname for a table without any),
	 * largest table first. Never strait's own record (FOR ALL TABLES on a
	 * site that is also a target has it): each target keeps its own.
	 */
	if (asprintf(&sql,
		     "SELECT pt.schemaname, pt.tablename, c.relkind, %s, a.attname, "
		     "pg_catalog.pg_relation_size(c.oid), "
		     "pg_catalog.current_setting('block_size')::bigint "
		     "FROM pg_catalog.pg_publication_tables pt "
		     "JOIN pg_catalog.pg_namespace n ON n.nspname = pt.schemaname "
		     "JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = pt.tablename "
		     "LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 "
		     "AND NOT a.attisdropped AND a.attgenerated = '' %s "
		     "WHERE pt.pubname = %s AND pt.schemaname <> '" SYNCSTATE_SCHEMA "' "
		     "ORDER BY pg_catalog.pg_relation_size(c.oid) DESC, c.oid, a.attnum",
		     v15 ? "pt.rowfilter" : "NULL::text",
		     v15 ? "AND a.attname = ANY (pt.attnames)" : "", pub) < 0)
		sql = NULL;
	PQfreemem(pub);
	return sql;
}

static void synccopy_imported(struct synccopy_worker *w)
{
	struct synccopy *sc = w->sc;

	synccopy_worker_set_state(w, WORKER_IDLE, "snapshot imported");
	if (++sc->imported < sc->nworkers)
		return;
	/* Every worker holds the snapshot now: the exporting connection may move on. */
	if (sc->repl) {
		pgasync_free(sc->repl);
		sc->repl = NULL;
	}
	synccopy_set_state(sc, SYNCCOPY_LISTING, "every worker imported the snapshot");
	if (sc->cb.imported)
		sc->cb.imported(sc->arg);
	{
		struct synccopy_worker *first = &sc->workers[0];
		char *sql = synccopy_listing_sql(first);

		if (!sql) {
			synccopy_fail(sc, "out of memory");
			return;
		}
		synccopy_worker_set_state(first, WORKER_LISTING,
					  "every worker imported the snapshot");
		(void)pgasync_send(first->pg, sql);
		free(sql);
	}
}

/* A table of the listing (row r) into the plan, copied; false when out of memory. */
static bool synccopy_add_listed(struct synccopy *sc, const PGresult *res, int r)
{
	struct synccopy_info *grown, *info;
	uint64_t block_size;

	if (!syncplan_add(&sc->plan, PQgetvalue(res, r, 0), PQgetvalue(res, r, 1), true))
		return false;
	grown = realloc(sc->info, sc->plan.n * sizeof(*grown));
	if (!grown)
		return false;
	sc->info = grown;
	info = &sc->info[sc->ninfo++];
	memset(info, 0, sizeof(*info));
	info->relkind = PQgetvalue(res, r, 2)[0];
	info->size = strtoull(PQgetvalue(res, r, 5), NULL, 10);
	block_size = strtoull(PQgetvalue(res, r, 6), NULL, 10);
	info->nblocks = block_size ? info->size / block_size : 0;
	if (!PQgetisnull(res, r, 3) && !(info->rowfilter = strdup(PQgetvalue(res, r, 3))))
		return false;
	/* row filters and partitioned roots stay whole; before 14 a range would scan it all */
	info->units = 1;
	if (info->relkind == 'r' && !info->rowfilter && syncrange_supported(sc->server_version))
		info->units = syncrange_count(info->size, info->nblocks, sc->split_above);
	return true;
}

/* Whether the sink lacks unit k of plan table i (and so this round copies it). */
static bool synccopy_lacks(struct synccopy *sc, size_t i, uint32_t k)
{
	const struct syncplan_table *t = &sc->plan.tables[i];
	uint32_t units = sc->info[i].units;

	return units == 1 || !sc->cb.has_range ||
	       !sc->cb.has_range(sc->arg, t->schema, t->table, sc->snapshot_lsn, k, units);
}

/*
 * Marks each table of the plan for this round: kept (the sink has it), or
 * copied whole, or copied in the ranges the sink lacks. False when out of
 * memory.
 */
static bool synccopy_mark_plan(struct synccopy *sc)
{
	sc->plan.generation = sc->generation;
	sc->tables_copy = sc->tables_done = 0;
	sc->next_table = 0;
	sc->next_unit = 0;
	for (size_t i = 0; i < sc->plan.n; i++) {
		struct syncplan_table *t = &sc->plan.tables[i];
		struct synccopy_info *info = &sc->info[i];

		syncrange_set_free(&t->copied);
		syncrange_set_free(&info->todo);
		syncrange_set_free(&info->read);
		t->ranges = 0;
		info->done = false;
		if (!syncrange_set_init(&info->todo, info->units) ||
		    !syncrange_set_init(&info->read, info->units))
			return false;
		t->copy = !sc->cb.has(sc->arg, t->schema, t->table);
		for (uint32_t k = 0; t->copy && k < info->units; k++) {
			if (synccopy_lacks(sc, i, k))
				(void)syncrange_set_add(&info->todo, k);
		}
		t->copy = info->todo.count > 0;
		if (!t->copy)
			continue;
		if (info->units > 1) {
			t->ranges = info->units;
			if (!syncrange_set_copy(&t->copied, &info->todo))
				return false;
		}
		sc->tables_copy++;
	}
	return true;
}

/* Builds the plan from the listing (rows grouped per table, in order). */
static bool synccopy_build_plan(struct synccopy *sc, const PGresult *res)
{
	int n = PQntuples(res);
	const char *prev_s = NULL, *prev_t = NULL;

	for (int r = 0; r < n; r++) {
		const char *schema = PQgetvalue(res, r, 0), *table = PQgetvalue(res, r, 1);

		if (!prev_s || strcmp(prev_s, schema) != 0 || strcmp(prev_t, table) != 0) {
			if (!synccopy_add_listed(sc, res, r))
				return false;
			prev_s = schema;
			prev_t = table;
		}
		/* every table's columns: a later round may copy a table this one keeps */
		if (!PQgetisnull(res, r, 4) && !syncplan_add_column(&sc->plan, PQgetvalue(res, r, 4)))
			return false;
	}
	return synccopy_mark_plan(sc);
}

static void synccopy_listed(struct synccopy_worker *w, const PGresult *res)
{
	struct synccopy *sc = w->sc;

	sc->server_version = PQserverVersion(pgasync_conn(w->pg));
	if (!synccopy_build_plan(sc, res)) {
		synccopy_fail(sc, "out of memory");
		return;
	}
	log_notice("stream \"%s\": initial sync: %zu tables in publication \"%s\", %zu to copy, "
		   "snapshot at " LSN_FMT, sc->stream, sc->plan.n, sc->publication, sc->tables_copy,
		   LSN_ARGS(sc->snapshot_lsn));
	synccopy_set_state(sc, SYNCCOPY_COPYING, "tables listed");
	sc->cb.planned(sc->arg, &sc->plan, sc->snapshot_lsn);
	for (unsigned i = 0; i < sc->nworkers && sc->state == SYNCCOPY_COPYING; i++) {
		if (sc->workers[i].state == WORKER_IDLE)
			synccopy_dispatch(&sc->workers[i]);
	}
}

static void synccopy_check_finished(struct synccopy *sc)
{
	if (sc->state != SYNCCOPY_COPYING || sc->tables_done < sc->tables_copy)
		return;
	for (unsigned i = 0; i < sc->nworkers; i++) {
		if (sc->workers[i].table >= 0)
			return;
	}
	sc->finished_ms = synccopy_now_ms();
	log_notice("stream \"%s\": initial sync: read %zu tables, %" PRIu64 " rows, %" PRIu64
		   " bytes in %.1f s", sc->stream, sc->tables_done, sc->rows, sc->bytes,
		   (double)(sc->finished_ms - sc->started_ms) / 1000.0);
	synccopy_set_state(sc, SYNCCOPY_FINISHED, "every table read; the snapshot is held until "
			   "the sink has loaded them");
	sc->cb.finished(sc->arg);
}

/* " WHERE ctid ..." bounds of range k of a split table (the first and last open). */
static bool synccopy_put_range(struct syncplan_text *sql, const struct synccopy_info *info,
		uint32_t k)
{
	uint64_t first, end;
	char bound[96];
	int n = 0;

	syncrange_bounds(info->nblocks, info->units, k, &first, &end);
	if (k > 0)
		n = snprintf(bound, sizeof(bound), " WHERE ctid >= '(%" PRIu64 ",0)'::pg_catalog.tid",
			     first);
	if (k + 1 < info->units)
		n += snprintf(bound + n, sizeof(bound) - (size_t)n,
			      "%s ctid < '(%" PRIu64 ",0)'::pg_catalog.tid", k > 0 ? " AND" : " WHERE",
			      end);
	return syncplan_text_append(sql, bound, (size_t)n);
}

/* "COPY (SELECT cols FROM [ONLY] s.t [WHERE ...])": a filter's rows, a partitioned root's, a range's. */
static bool synccopy_put_select(struct syncplan_text *sql, const struct synccopy_info *info,
		const struct syncplan_text *cols, const char *schema, const char *table, uint32_t unit)
{
	/* partitioned root (all its partitions), or rows a filter picks, or a range */
	const char *from = info->relkind == 'p' ? " FROM " : " FROM ONLY ";
	bool ok = syncplan_text_append(sql, "COPY (SELECT ", 13) &&
		  (cols->len ? syncplan_text_append(sql, cols->data, cols->len) :
			       syncplan_text_append(sql, "*", 1)) &&
		  syncplan_text_append(sql, from, strlen(from)) &&
		  syncplan_text_append(sql, schema, strlen(schema)) &&
		  syncplan_text_append(sql, ".", 1) &&
		  syncplan_text_append(sql, table, strlen(table));

	if (ok && info->rowfilter)
		ok = syncplan_text_append(sql, " WHERE (", 8) &&
		     syncplan_text_append(sql, info->rowfilter, strlen(info->rowfilter)) &&
		     syncplan_text_append(sql, ")", 1);
	if (ok && info->units > 1)
		ok = synccopy_put_range(sql, info, unit);
	return ok && syncplan_text_append(sql, ")", 1);
}

static char *synccopy_copy_sql(struct synccopy_worker *w, long t)
{
	struct synccopy *sc = w->sc;
	PGconn *conn = pgasync_conn(w->pg);
	const struct syncplan_table *pt = &sc->plan.tables[t];
	const struct synccopy_info *info = &sc->info[t];
	struct syncplan_text cols = { 0 }, sql = { 0 };
	char *schema = PQescapeIdentifier(conn, pt->schema, strlen(pt->schema));
	char *table = PQescapeIdentifier(conn, pt->table, strlen(pt->table));
	bool ok = schema && table;

	for (size_t c = 0; ok && c < pt->ncolumns; c++) {
		char *col = PQescapeIdentifier(conn, pt->columns[c], strlen(pt->columns[c]));

		ok = col && (c == 0 || syncplan_text_append(&cols, ", ", 2)) &&
		     syncplan_text_append(&cols, col, strlen(col));
		PQfreemem(col);
	}
	if (!ok)
		goto out;
	if (info->relkind == 'r' && !info->rowfilter && info->units == 1) {
		ok = syncplan_text_append(&sql, "COPY ", 5) &&
		     syncplan_text_append(&sql, schema, strlen(schema)) &&
		     syncplan_text_append(&sql, ".", 1) &&
		     syncplan_text_append(&sql, table, strlen(table));
		if (ok && cols.len)
			ok = syncplan_text_append(&sql, " (", 2) &&
			     syncplan_text_append(&sql, cols.data, cols.len) &&
			     syncplan_text_append(&sql, ")", 1);
	} else {
		ok = synccopy_put_select(&sql, info, &cols, schema, table, w->unit);
	}
	ok = ok && syncplan_text_append(&sql, " TO STDOUT", 10);
out:
	PQfreemem(schema);
	PQfreemem(table);
	syncplan_text_free(&cols);
	if (!ok) {
		syncplan_text_free(&sql);
		return NULL;
	}
	return sql.data;
}

/* The next unit to copy, in plan order: false when none is left in this round. */
static bool synccopy_next_unit(struct synccopy *sc, long *table, uint32_t *unit)
{
	while (sc->next_table < sc->plan.n) {
		const struct synccopy_info *info = &sc->info[sc->next_table];

		if (sc->plan.tables[sc->next_table].copy) {
			while (sc->next_unit < info->units &&
			       !syncrange_set_has(&info->todo, sc->next_unit))
				sc->next_unit++;
			if (sc->next_unit < info->units) {
				*table = (long)sc->next_table;
				*unit = sc->next_unit++;
				return true;
			}
		}
		sc->next_table++;
		sc->next_unit = 0;
	}
	return false;
}

static void synccopy_log_unit(const struct synccopy_worker *w, const char *what)
{
	const struct synccopy *sc = w->sc;
	char name[300];

	synccopy_table_name(sc, w->table, name, sizeof(name));
	if (sc->info[w->table].units > 1)
		log_info("stream \"%s\": initial sync: %s %s range %" PRIu32 " of %" PRIu32
			 " (worker %u)", sc->stream, what, name, w->unit, sc->info[w->table].units, w->id);
	else
		log_info("stream \"%s\": initial sync: %s %s (worker %u)", sc->stream, what, name, w->id);
}

/*
 * Gives an idle worker the next table or range; with none left in the round
 * it stays idle in its transaction (a later round may need the snapshot).
 */
static void synccopy_dispatch(struct synccopy_worker *w)
{
	struct synccopy *sc = w->sc;
	char *sql;

	if (sc->state != SYNCCOPY_COPYING)
		return;
	if (!synccopy_next_unit(sc, &w->table, &w->unit)) {
		w->table = -1;
		synccopy_check_finished(sc);
		return;
	}
	w->len = 0;
	w->chunk = 0;
	w->acked = 0;
	w->held = false;
	sql = synccopy_copy_sql(w, w->table);
	if (!sql) {
		synccopy_fail(sc, "out of memory");
		return;
	}
	synccopy_log_unit(w, "copying");
	synccopy_worker_set_state(w, WORKER_COPY_START, "a table to copy");
	if (pgasync_send(w->pg, sql))
		pgasync_set_reading(w->pg, true);
	free(sql);
}

/* Hands the filled chunk over. False: stop reading (the link is full). */
static bool synccopy_emit(struct synccopy_worker *w, bool last)
{
	struct synccopy *sc = w->sc;
	bool more = sc->cb.chunk(sc->arg, &sc->plan.tables[w->table], sc->snapshot_lsn, w->unit,
				 w->chunk, w->buf, w->len, last);

	w->chunk++;
	w->len = 0;
	if (!more)
		sc->paused = true;
	return more;
}

static bool synccopy_window_full(const struct synccopy_worker *w)
{
	return w->chunk - w->acked >= w->sc->window;
}

static void synccopy_hold(struct synccopy_worker *w)
{
	w->held = true;
	pgasync_set_reading(w->pg, false);
}

/* The worker's COPY ended: its unit is read (or, parked, dropped); on to the next. */
static void synccopy_unit_done(struct synccopy_worker *w)
{
	struct synccopy *sc = w->sc;
	struct synccopy_info *info = &sc->info[w->table];

	if (w->discard) {
		w->discard = false;
		synccopy_log_unit(w, "dropped the rest of");
	} else {
		synccopy_emit(w, true);
		(void)syncrange_set_add(&info->read, w->unit);
		if (info->units > 1)
			synccopy_log_unit(w, "read");
		if (info->read.count == info->todo.count) {
			char name[300];

			info->done = true;
			sc->tables_done++;
			log_info("stream \"%s\": initial sync: read %s: %" PRIu64 " rows, %" PRIu64 " bytes",
				 sc->stream, synccopy_table_name(sc, w->table, name, sizeof(name)),
				 info->rows, info->bytes);
		}
	}
	w->table = -1;
	synccopy_worker_set_state(w, WORKER_IDLE, "table read");
	synccopy_dispatch(w);
}

static void synccopy_read_rows(struct synccopy_worker *w)
{
	struct synccopy *sc = w->sc;
	struct synccopy_info *info = &sc->info[w->table];
	unsigned emitted = 0;
	size_t dropped = 0;

	for (;;) {
		char *row = NULL;
		int n;

		if (!w->discard && (sc->paused || synccopy_window_full(w))) {
			synccopy_hold(w);
			return;
		}
		if (emitted >= SYNCCOPY_BURST) {
			pgasync_kick(w->pg);
			return;
		}
		n = PQgetCopyData(pgasync_conn(w->pg), &row, 1);
		if (n == 0)
			return;
		if (n == -1) {
			/* the command's result follows (synccopy_worker_input) */
			synccopy_worker_set_state(w, WORKER_COPY_END, "every row read");
			return;
		}
		if (n < 0) {
			char name[300];

			synccopy_fail(sc, "could not read table %s: %s",
				      synccopy_table_name(sc, w->table, name, sizeof(name)),
				      pgasync_error(w->pg));
			return;
		}
		if (w->discard) {
			/* parked: read to the end, so the transaction stays usable */
			sc->bytes_dropped += (uint64_t)n;
			dropped += (size_t)n;
			PQfreemem(row);
			if (dropped >= sc->chunk_bytes) {
				dropped = 0;
				emitted++;
			}
			continue;
		}
		info->rows++;
		sc->rows++;
		info->bytes += (uint64_t)n;
		sc->bytes += (uint64_t)n;
		for (size_t off = 0; off < (size_t)n;) {
			size_t room = sc->chunk_bytes - w->len, take = (size_t)n - off;

			if (take > room)
				take = room;
			memcpy(w->buf + w->len, row + off, take);
			w->len += take;
			off += take;
			if (w->len == sc->chunk_bytes) {
				(void)synccopy_emit(w, false);
				emitted++;
			}
		}
		PQfreemem(row);
	}
}

static void synccopy_worker_input(void *arg)
{
	struct synccopy_worker *w = arg;
	struct synccopy *sc = w->sc;
	PGresult *res = NULL;
	enum pgasync_step step;
	char name[300];

	if (w->state == WORKER_COPYING) {
		synccopy_read_rows(w);
		if (w->state != WORKER_COPY_END || sc->state == SYNCCOPY_FAILED)
			return;
	}
	if (!w->pg)
		return;
	step = pgasync_results(w->pg, &res);
	if (step == PGASYNC_WAIT) {
		PQclear(res);
		return;
	}
	switch (w->state) {
	case WORKER_IMPORTING:
		if (step != PGASYNC_DONE) {
			synccopy_fail(sc, "could not import snapshot \"%s\": %s", sc->snapshot,
				      step == PGASYNC_ERROR ? pgasync_statement_error(w->pg) : "unexpected COPY");
			break;
		}
		synccopy_imported(w);
		break;
	case WORKER_LISTING:
		if (step != PGASYNC_DONE || !res || PQresultStatus(res) != PGRES_TUPLES_OK) {
			synccopy_fail(sc, "could not list the tables of publication \"%s\": %s",
				      sc->publication,
				      step == PGASYNC_ERROR ? pgasync_statement_error(w->pg) : "no rows");
			break;
		}
		synccopy_worker_set_state(w, WORKER_IDLE, "tables listed");
		synccopy_listed(w, res);
		break;
	case WORKER_COPY_START:
		if (step != PGASYNC_COPY || PQresultStatus(res) != PGRES_COPY_OUT) {
			synccopy_fail(sc, "could not copy table %s: %s",
				      synccopy_table_name(sc, w->table, name, sizeof(name)),
				      step == PGASYNC_ERROR ? pgasync_statement_error(w->pg) : "no COPY");
			break;
		}
		synccopy_worker_set_state(w, WORKER_COPYING, "COPY started");
		PQclear(res);
		res = NULL;
		synccopy_worker_input(w);
		break;
	case WORKER_COPY_END:
		if (step != PGASYNC_DONE) {
			synccopy_fail(sc, "could not copy table %s: %s",
				      synccopy_table_name(sc, w->table, name, sizeof(name)),
				      step == PGASYNC_ERROR ? pgasync_statement_error(w->pg) : "no result");
			break;
		}
		synccopy_unit_done(w);
		break;
	default:
		break;
	}
	PQclear(res);
}

static void synccopy_worker_drained(void *arg)
{
	(void)arg;
}

static void synccopy_worker_failed(void *arg, const char *err)
{
	struct synccopy_worker *w = arg;

	synccopy_fail(w->sc, "connection %u to the source database failed: %s", w->id, err);
}

static void synccopy_start_workers(struct synccopy *sc)
{
	static const struct pgasync_callbacks cb = {
		.connected = synccopy_worker_connected,
		.input = synccopy_worker_input,
		.drained = synccopy_worker_drained,
		.failed = synccopy_worker_failed,
	};
	static const char *const keys[] = { "application_name", NULL };
	static const char *const values[] = { "strait_sync", NULL };

	synccopy_set_state(sc, SYNCCOPY_IMPORTING, "snapshot ready");
	for (unsigned i = 0; i < sc->nworkers; i++) {
		struct synccopy_worker *w = &sc->workers[i];
		char what[128];

		snprintf(what, sizeof(what), "stream \"%s\": initial sync connection %u", sc->stream, i);
		w->pg = pgasync_new(sc->base, sc->conninfo, keys, values, what, &cb, w);
		if (!w->pg) {
			synccopy_fail(sc, "out of memory");
			return;
		}
	}
}

static void synccopy_start_cb(evutil_socket_t fd, short what, void *arg)
{
	static const struct pgasync_callbacks cb = {
		.connected = synccopy_repl_connected,
		.input = synccopy_repl_input,
		.drained = synccopy_repl_drained,
		.failed = synccopy_repl_failed,
	};
	static const char *const keys[] = { "replication", "application_name", NULL };
	static const char *const values[] = { "database", "strait_sync", NULL };
	struct synccopy *sc = arg;
	static unsigned counter;
	char desc[128];

	(void)fd;
	(void)what;
	sc->started_ms = synccopy_now_ms();
	if (!sc->temporary) {
		log_info("stream \"%s\": initial sync: using the snapshot \"%s\" the slot exported at " LSN_FMT,
			 sc->stream, sc->snapshot, LSN_ARGS(sc->snapshot_lsn));
		synccopy_start_workers(sc);
		return;
	}
	snprintf(sc->slot, sizeof(sc->slot), "strait_sync_%x_%x_%x", (unsigned)getpid() & 0xffffff,
		 (unsigned)synccopy_now_ms() & 0xffff, ++counter);
	snprintf(desc, sizeof(desc), "stream \"%s\": initial sync snapshot", sc->stream);
	sc->repl = pgasync_new(sc->base, sc->conninfo, keys, values, desc, &cb, sc);
	if (!sc->repl)
		synccopy_fail(sc, "out of memory");
}

static void synccopy_continue_cb(evutil_socket_t fd, short what, void *arg);

struct synccopy *synccopy_new(struct event_base *base, const struct synccopy_config *cfg,
		const struct synccopy_callbacks *cb, void *arg)
{
	struct synccopy *sc = calloc(1, sizeof(*sc));

	if (!sc)
		return NULL;
	sc->base = base;
	sc->cb = *cb;
	sc->arg = arg;
	sc->generation = cfg->generation;
	sc->chunk_bytes = cfg->chunk_bytes ? cfg->chunk_bytes : SYNCCOPY_CHUNK_BYTES;
	sc->window = cfg->window ? cfg->window : SYNCCOPY_WINDOW;
	sc->nworkers = cfg->workers ? cfg->workers : SYNCCOPY_WORKERS;
	sc->split_above = cfg->split_above;
	if (sc->nworkers > SYNCCOPY_MAX_WORKERS)
		sc->nworkers = SYNCCOPY_MAX_WORKERS;
	sc->state = SYNCCOPY_SNAPSHOT;
	syncplan_init(&sc->plan);
	sc->stream = strdup(cfg->stream);
	sc->conninfo = strdup(cfg->conninfo);
	sc->publication = strdup(cfg->publication);
	sc->temporary = cfg->snapshot == NULL;
	if (cfg->snapshot) {
		snprintf(sc->snapshot, sizeof(sc->snapshot), "%s", cfg->snapshot);
		sc->snapshot_lsn = cfg->snapshot_lsn;
	}
	sc->ev_start = event_new(base, -1, 0, synccopy_start_cb, sc);
	sc->ev_continue = event_new(base, -1, 0, synccopy_continue_cb, sc);
	if (!sc->stream || !sc->conninfo || !sc->publication || !sc->ev_start || !sc->ev_continue)
		goto fail;
	for (unsigned i = 0; i < sc->nworkers; i++) {
		sc->workers[i].sc = sc;
		sc->workers[i].id = i;
		sc->workers[i].table = -1;
		if (!(sc->workers[i].buf = malloc(sc->chunk_bytes)))
			goto fail;
	}
	event_active(sc->ev_start, EV_TIMEOUT, 0);
	return sc;
fail:
	synccopy_free(sc);
	return NULL;
}

void synccopy_free(struct synccopy *sc)
{
	if (!sc)
		return;
	synccopy_close_all(sc);
	if (sc->ev_start)
		event_free(sc->ev_start);
	if (sc->ev_continue)
		event_free(sc->ev_continue);
	for (unsigned i = 0; i < sc->nworkers; i++)
		free(sc->workers[i].buf);
	for (size_t i = 0; i < sc->ninfo; i++) {
		free(sc->info[i].rowfilter);
		syncrange_set_free(&sc->info[i].todo);
		syncrange_set_free(&sc->info[i].read);
	}
	free(sc->info);
	syncplan_free(&sc->plan);
	free(sc->stream);
	free(sc->conninfo);
	free(sc->publication);
	free(sc);
}

static void synccopy_unhold(struct synccopy_worker *w)
{
	if (!w->held || w->state != WORKER_COPYING || w->sc->paused || synccopy_window_full(w))
		return;
	w->held = false;
	pgasync_set_reading(w->pg, true);
	pgasync_kick(w->pg);
}

void synccopy_resume_reading(struct synccopy *sc)
{
	if (!sc->paused)
		return;
	sc->paused = false;
	for (unsigned i = 0; i < sc->nworkers; i++)
		synccopy_unhold(&sc->workers[i]);
}

void synccopy_ack(struct synccopy *sc, const char *schema, size_t schema_len,
		const char *table, size_t table_len, uint64_t lsn, uint32_t range, uint32_t chunk)
{
	if (lsn != sc->snapshot_lsn)
		return;       /* an older round's */
	for (unsigned i = 0; i < sc->nworkers; i++) {
		struct synccopy_worker *w = &sc->workers[i];
		const struct syncplan_table *t;

		if (w->table < 0 || w->discard || w->unit != range)
			continue;
		t = &sc->plan.tables[w->table];
		if (strlen(t->schema) != schema_len || memcmp(t->schema, schema, schema_len) != 0 ||
		    strlen(t->table) != table_len || memcmp(t->table, table, table_len) != 0)
			continue;
		if (chunk < w->chunk && chunk + 1 > w->acked)
			w->acked = chunk + 1;
		synccopy_unhold(w);
	}
}

bool synccopy_snapshot_taken(const struct synccopy *sc)
{
	return sc->state == SYNCCOPY_LISTING || sc->state == SYNCCOPY_COPYING ||
	       sc->state == SYNCCOPY_PARKED || sc->state == SYNCCOPY_FINISHED;
}

uint64_t synccopy_snapshot_lsn(const struct synccopy *sc)
{
	return sc->snapshot_lsn;
}

bool synccopy_park(struct synccopy *sc)
{
	if (sc->state != SYNCCOPY_COPYING && sc->state != SYNCCOPY_FINISHED &&
	    sc->state != SYNCCOPY_PARKED)
		return false;
	for (unsigned i = 0; i < sc->nworkers; i++) {
		struct synccopy_worker *w = &sc->workers[i];

		if (w->table < 0 || w->discard)
			continue;
		/* its COPY runs on to the end, unseen: cancelling it would abort the transaction */
		w->discard = true;
		w->len = 0;
		if (w->held && w->state == WORKER_COPYING) {
			w->held = false;
			pgasync_set_reading(w->pg, true);
			pgasync_kick(w->pg);
		}
	}
	sc->paused = false;
	synccopy_set_state(sc, SYNCCOPY_PARKED, "the sink is gone; holding the snapshot");
	return true;
}

void synccopy_continue(struct synccopy *sc, uint32_t generation)
{
	sc->generation = generation;
	event_active(sc->ev_continue, EV_TIMEOUT, 0);
}

static void synccopy_continue_cb(evutil_socket_t fd, short what, void *arg)
{
	struct synccopy *sc = arg;
	char lsn[LSN_BUF];

	(void)fd;
	(void)what;
	if (sc->state != SYNCCOPY_PARKED)
		return;
	if (!synccopy_mark_plan(sc)) {
		synccopy_fail(sc, "out of memory");
		return;
	}
	sc->rounds++;
	sc->finished_ms = 0;
	lsn_format(lsn, sc->snapshot_lsn);
	log_notice("stream \"%s\": initial sync: going on in the snapshot at %s: %zu tables to copy "
		   "(the sink has the rest)", sc->stream, lsn, sc->tables_copy);
	synccopy_set_state(sc, SYNCCOPY_COPYING, "a new round in the held snapshot");
	sc->cb.planned(sc->arg, &sc->plan, sc->snapshot_lsn);
	for (unsigned i = 0; i < sc->nworkers && sc->state == SYNCCOPY_COPYING; i++) {
		if (sc->workers[i].state == WORKER_IDLE && sc->workers[i].table < 0)
			synccopy_dispatch(&sc->workers[i]);
	}
	synccopy_check_finished(sc);
}

void synccopy_release(struct synccopy *sc)
{
	if (sc->state == SYNCCOPY_FAILED || sc->state == SYNCCOPY_RELEASED)
		return;
	synccopy_close_all(sc);
	for (unsigned i = 0; i < sc->nworkers; i++) {
		sc->workers[i].table = -1;
		synccopy_worker_set_state(&sc->workers[i], WORKER_DONE, "released");
	}
	synccopy_set_state(sc, SYNCCOPY_RELEASED, "the snapshot is not needed any more");
}

/* The biggest tables still to copy, at most this many, in status. */
#define SYNCCOPY_STATUS_BIGGEST 5

/* A split table's ranges: how many, and how many the sink has or this round read. */
static void synccopy_ranges_json(const struct synccopy_info *info, struct json_out *j)
{
	if (info->units < 2)
		return;
	json_uint(j, "ranges", info->units);
	json_uint(j, "ranges_done", info->units - info->todo.count + info->read.count);
}

/* Every split table of the plan, with its ranges done of its ranges. */
static void synccopy_split_json(const struct synccopy *sc, struct json_out *j)
{
	json_array_begin(j, "split_tables");
	for (size_t i = 0; i < sc->plan.n; i++) {
		char *name;

		if (sc->info[i].units < 2)
			continue;
		name = syncplan_qualified(sc->plan.tables[i].schema, sc->plan.tables[i].table);
		json_object_begin(j, NULL);
		json_string(j, "table", name);
		if (sc->plan.tables[i].copy) {
			synccopy_ranges_json(&sc->info[i], j);
		} else {
			/* kept: the sink has it whole */
			json_uint(j, "ranges", sc->info[i].units);
			json_uint(j, "ranges_done", sc->info[i].units);
		}
		json_object_end(j);
		free(name);
	}
	json_array_end(j);
}

/*
 * Rates and the time left. Progress is measured in heap size: a table done
 * counts its pg_relation_size(), one being read what it read so far (COPY
 * text runs close to the heap's size), capped at its size.
 */
static double synccopy_elapsed_s(const struct synccopy *sc)
{
	int64_t end = sc->finished_ms ? sc->finished_ms : synccopy_now_ms();

	return sc->started_ms ? (double)(end - sc->started_ms) / 1000.0 : 0.0;
}

/* Heap bytes of the tables to copy, all of them and those read so far. */
static void synccopy_size_done(const struct synccopy *sc, uint64_t *total, uint64_t *done)
{
	*total = *done = 0;
	for (size_t i = 0; i < sc->plan.n; i++) {
		const struct synccopy_info *info = &sc->info[i];

		if (!sc->plan.tables[i].copy)
			continue;
		if (info->units > 1) {
			/* the round's share of a split table, done by whole ranges */
			*total += info->size / info->units * info->todo.count;
			*done += info->size / info->units * info->read.count;
			continue;
		}
		*total += info->size;
		*done += info->done ? info->size : info->bytes < info->size ? info->bytes : info->size;
	}
}

/* Seconds left at the rate so far; -1 before anything is read. */
static double synccopy_eta_s(const struct synccopy *sc, uint64_t total, uint64_t done, double secs)
{
	if (sc->finished_ms || (total > 0 && done >= total))
		return 0.0;
	if (done > 0 && secs > 0)
		return secs * (double)(total - done) / (double)done;
	return -1.0;
}

static void synccopy_progress_json(const struct synccopy *sc, struct json_out *j)
{
	double secs = synccopy_elapsed_s(sc), eta;
	uint64_t total, done;
	unsigned listed = 0;

	synccopy_size_done(sc, &total, &done);
	json_uint(j, "size_to_copy", total);
	json_double(j, "rows_per_s", secs > 0 ? (double)sc->rows / secs : 0.0);
	json_double(j, "bytes_per_s", secs > 0 ? (double)sc->bytes / secs : 0.0);
	eta = synccopy_eta_s(sc, total, done, secs);
	if (eta >= 0)
		json_double(j, "eta_s", eta);
	else
		json_null(j, "eta_s");
	/* the plan is largest first: its first tables not done are the biggest left */
	json_array_begin(j, "biggest_left");
	for (size_t i = 0; i < sc->plan.n && listed < SYNCCOPY_STATUS_BIGGEST; i++) {
		char *name;

		if (!sc->plan.tables[i].copy || sc->info[i].done)
			continue;
		name = syncplan_qualified(sc->plan.tables[i].schema, sc->plan.tables[i].table);
		json_object_begin(j, NULL);
		json_string(j, "table", name);
		json_uint(j, "size", sc->info[i].size);
		json_uint(j, "bytes_read", sc->info[i].bytes);
		synccopy_ranges_json(&sc->info[i], j);
		json_object_end(j);
		free(name);
		listed++;
	}
	json_array_end(j);
}

void synccopy_progress(const struct synccopy *sc, struct synccopy_progress *out)
{
	uint64_t total, done;

	synccopy_size_done(sc, &total, &done);
	/* a finished round's snapshot is released once the sink streams: its figures stay */
	out->planned = sc->state == SYNCCOPY_COPYING || sc->state == SYNCCOPY_FINISHED ||
		       (sc->state == SYNCCOPY_RELEASED && sc->plan.n > 0);
	out->tables_total = sc->plan.n;
	out->tables_to_copy = sc->tables_copy;
	out->tables_copied = sc->tables_done;
	out->rows = sc->rows;
	out->bytes = sc->bytes;
	out->eta_s = synccopy_eta_s(sc, total, done, synccopy_elapsed_s(sc));
}

void synccopy_status_json(const struct synccopy *sc, struct json_out *j)
{
	char lsn[LSN_BUF];

	lsn_format(lsn, sc->snapshot_lsn);
	json_string(j, "copy_state", synccopy_state_names[sc->state]);
	json_string(j, "snapshot_lsn", sc->snapshot_lsn ? lsn : NULL);
	json_string(j, "temporary_slot", sc->temporary ? sc->slot : NULL);
	json_uint(j, "tables_total", sc->plan.n);
	json_uint(j, "tables_to_copy", sc->tables_copy);
	json_uint(j, "tables_copied", sc->tables_done);
	json_uint(j, "rows", sc->rows);
	json_uint(j, "bytes", sc->bytes);
	json_uint(j, "bytes_dropped", sc->bytes_dropped);
	json_uint(j, "copy_rounds", sc->rounds + 1);
	synccopy_progress_json(sc, j);
	synccopy_split_json(sc, j);
	json_array_begin(j, "current");
	for (unsigned i = 0; i < sc->nworkers; i++) {
		const struct synccopy_worker *w = &sc->workers[i];
		char *name;

		if (w->table < 0)
			continue;
		name = syncplan_qualified(sc->plan.tables[w->table].schema, sc->plan.tables[w->table].table);
		json_object_begin(j, NULL);
		json_string(j, "table", name);
		if (sc->info[w->table].units > 1)
			json_uint(j, "range", w->unit);
		json_uint(j, "rows", sc->info[w->table].rows);
		json_uint(j, "bytes", sc->info[w->table].bytes);
		json_uint(j, "chunks", w->chunk);
		json_bool(j, "held", w->held);
		json_object_end(j);
		free(name);
	}
	json_array_end(j);
	json_string(j, "copy_error", sc->last_error[0] ? sc->last_error : NULL);
}
