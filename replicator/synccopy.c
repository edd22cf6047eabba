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
 *   copying   each worker: COPY ... TO STDOUT, next table, ... then closes
 *   finished / failed
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
#include "replicator/syncstate.h"

#define SYNCCOPY_BURST 16u

enum synccopy_state {
	SYNCCOPY_SNAPSHOT,
	SYNCCOPY_IMPORTING,
	SYNCCOPY_LISTING,
	SYNCCOPY_COPYING,
	SYNCCOPY_FINISHED,
	SYNCCOPY_FAILED,
};

static const char *const synccopy_state_names[] = {
	[SYNCCOPY_SNAPSHOT] = "taking a snapshot",
	[SYNCCOPY_IMPORTING] = "importing the snapshot",
	[SYNCCOPY_LISTING] = "listing tables",
	[SYNCCOPY_COPYING] = "copying",
	[SYNCCOPY_FINISHED] = "finished",
	[SYNCCOPY_FAILED] = "failed",
};

enum worker_state {
	WORKER_CONNECTING,
	WORKER_IMPORTING,
	WORKER_LISTING,
	WORKER_IDLE,             /* snapshot imported, no table */
	WORKER_COPY_START,       /* COPY sent */
	WORKER_COPYING,          /* reading rows */
	WORKER_COPY_END,         /* rows read, waiting for the command's result */
	WORKER_DONE,             /* no table left: connection closed */
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
	bool done;
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

	enum synccopy_state state;
	char snapshot[128];
	uint64_t snapshot_lsn;
	bool temporary;          /* the snapshot comes from our own temporary slot */
	char slot[64];
	struct pgasync *repl;
	struct event *ev_start;

	struct synccopy_worker workers[SYNCCOPY_MAX_WORKERS];
	unsigned imported;
	struct syncplan plan;
	struct synccopy_info *info;
	size_t next_table;
	size_t tables_copy;
	size_t tables_done;
	bool paused;             /* the link is full */

	uint64_t rows;
	uint64_t bytes;
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
		     "pg_catalog.pg_relation_size(c.oid) "
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

/* Builds the plan from the listing (rows grouped per table, in order). */
static bool synccopy_build_plan(struct synccopy *sc, const PGresult *res)
{
	int n = PQntuples(res);
	const char *prev_s = NULL, *prev_t = NULL;

	sc->plan.generation = sc->generation;
	for (int r = 0; r < n; r++) {
		const char *schema = PQgetvalue(res, r, 0), *table = PQgetvalue(res, r, 1);

		if (!prev_s || strcmp(prev_s, schema) != 0 || strcmp(prev_t, table) != 0) {
			bool copy = !sc->cb.has(sc->arg, schema, table);
			struct synccopy_info *grown;

			if (!syncplan_add(&sc->plan, schema, table, copy))
				return false;
			grown = realloc(sc->info, sc->plan.n * sizeof(*grown));
			if (!grown)
				return false;
			sc->info = grown;
			memset(&sc->info[sc->plan.n - 1], 0, sizeof(*grown));
			sc->info[sc->plan.n - 1].relkind = PQgetvalue(res, r, 2)[0];
			sc->info[sc->plan.n - 1].size = strtoull(PQgetvalue(res, r, 5), NULL, 10);
			if (!PQgetisnull(res, r, 3) &&
			    !(sc->info[sc->plan.n - 1].rowfilter = strdup(PQgetvalue(res, r, 3))))
				return false;
			if (copy)
				sc->tables_copy++;
			prev_s = schema;
			prev_t = table;
		}
		if (!PQgetisnull(res, r, 4) && sc->plan.tables[sc->plan.n - 1].copy &&
		    !syncplan_add_column(&sc->plan, PQgetvalue(res, r, 4)))
			return false;
	}
	return true;
}

static void synccopy_listed(struct synccopy_worker *w, const PGresult *res)
{
	struct synccopy *sc = w->sc;

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
		if (sc->workers[i].state != WORKER_DONE)
			return;
	}
	sc->finished_ms = synccopy_now_ms();
	log_notice("stream \"%s\": initial sync: read %zu tables, %" PRIu64 " rows, %" PRIu64
		   " bytes in %.1f s", sc->stream, sc->tables_done, sc->rows, sc->bytes,
		   (double)(sc->finished_ms - sc->started_ms) / 1000.0);
	synccopy_set_state(sc, SYNCCOPY_FINISHED, "every table read");
	sc->cb.finished(sc->arg);
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
	if (info->relkind == 'r' && !info->rowfilter) {
		ok = syncplan_text_append(&sql, "COPY ", 5) &&
		     syncplan_text_append(&sql, schema, strlen(schema)) &&
		     syncplan_text_append(&sql, ".", 1) &&
		     syncplan_text_append(&sql, table, strlen(table));
		if (ok && cols.len)
			ok = syncplan_text_append(&sql, " (", 2) &&
			     syncplan_text_append(&sql, cols.data, cols.len) &&
			     syncplan_text_append(&sql, ")", 1);
	} else {
		/* partitioned root (all its partitions), or rows a filter picks */
		const char *from = info->relkind == 'p' ? " FROM " : " FROM ONLY ";

		ok = syncplan_text_append(&sql, "COPY (SELECT ", 13) &&
		     (cols.len ? syncplan_text_append(&sql, cols.data, cols.len) :
				 syncplan_text_append(&sql, "*", 1)) &&
		     syncplan_text_append(&sql, from, strlen(from)) &&
		     syncplan_text_append(&sql, schema, strlen(schema)) &&
		     syncplan_text_append(&sql, ".", 1) &&
		     syncplan_text_append(&sql, table, strlen(table));
		if (ok && info->rowfilter)
			ok = syncplan_text_append(&sql, " WHERE (", 8) &&
			     syncplan_text_append(&sql, info->rowfilter, strlen(info->rowfilter)) &&
			     syncplan_text_append(&sql, ")", 1);
		ok = ok && syncplan_text_append(&sql, ")", 1);
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

/* Gives an idle worker the next table, or closes it when none is left. */
static void synccopy_dispatch(struct synccopy_worker *w)
{
	struct synccopy *sc = w->sc;
	char *sql;

	while (sc->next_table < sc->plan.n && !sc->plan.tables[sc->next_table].copy)
		sc->next_table++;
	if (sc->next_table >= sc->plan.n) {
		/* nothing left: the read-only transaction just goes with the connection */
		pgasync_free(w->pg);
		w->pg = NULL;
		synccopy_worker_set_state(w, WORKER_DONE, "no table left");
		synccopy_check_finished(sc);
		return;
	}
	w->table = (long)sc->next_table++;
	w->len = 0;
	w->chunk = 0;
	w->acked = 0;
	w->held = false;
	sql = synccopy_copy_sql(w, w->table);
	if (!sql) {
		synccopy_fail(sc, "out of memory");
		return;
	}
	{
		char name[300];

		log_info("stream \"%s\": initial sync: copying %s (worker %u)", sc->stream,
			 synccopy_table_name(sc, w->table, name, sizeof(name)), w->id);
	}
	synccopy_worker_set_state(w, WORKER_COPY_START, "a table to copy");
	if (pgasync_send(w->pg, sql))
		pgasync_set_reading(w->pg, true);
	free(sql);
}

/* Hands the filled chunk over. False: stop reading (the link is full). */
static bool synccopy_emit(struct synccopy_worker *w, bool last)
{
	struct synccopy *sc = w->sc;
	bool more = sc->cb.chunk(sc->arg, &sc->plan.tables[w->table], sc->snapshot_lsn, w->chunk,
				 w->buf, w->len, last);

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

static void synccopy_table_done(struct synccopy_worker *w, const PGresult *res)
{
	struct synccopy *sc = w->sc;
	struct synccopy_info *info = &sc->info[w->table];
	char name[300];

	(void)res;
	synccopy_emit(w, true);
	info->done = true;
	sc->tables_done++;
	log_info("stream \"%s\": initial sync: read %s: %" PRIu64 " rows, %" PRIu64 " bytes",
		 sc->stream, synccopy_table_name(sc, w->table, name, sizeof(name)), info->rows,
		 info->bytes);
	w->table = -1;
	synccopy_worker_set_state(w, WORKER_IDLE, "table read");
	synccopy_dispatch(w);
}

static void synccopy_read_rows(struct synccopy_worker *w)
{
	struct synccopy *sc = w->sc;
	struct synccopy_info *info = &sc->info[w->table];
	unsigned emitted = 0;

	for (;;) {
		char *row = NULL;
		int n;

		if (sc->paused || synccopy_window_full(w)) {
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
		synccopy_table_done(w, res);
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
	if (!sc->stream || !sc->conninfo || !sc->publication || !sc->ev_start)
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
	for (unsigned i = 0; i < sc->nworkers; i++)
		free(sc->workers[i].buf);
	for (size_t i = 0; sc->info && i < sc->plan.n; i++)
		free(sc->info[i].rowfilter);
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
		const char *table, size_t table_len, uint64_t lsn, uint32_t chunk)
{
	if (lsn != sc->snapshot_lsn)
		return;       /* an older round's */
	for (unsigned i = 0; i < sc->nworkers; i++) {
		struct synccopy_worker *w = &sc->workers[i];
		const struct syncplan_table *t;

		if (w->table < 0)
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
	       sc->state == SYNCCOPY_FINISHED;
}

/* The biggest tables still to copy, at most this many, in status. */
#define SYNCCOPY_STATUS_BIGGEST 5

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
	out->planned = sc->state == SYNCCOPY_COPYING || sc->state == SYNCCOPY_FINISHED;
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
	synccopy_progress_json(sc, j);
	json_array_begin(j, "current");
	for (unsigned i = 0; i < sc->nworkers; i++) {
		const struct synccopy_worker *w = &sc->workers[i];
		char *name;

		if (w->table < 0)
			continue;
		name = syncplan_qualified(sc->plan.tables[w->table].schema, sc->plan.tables[w->table].table);
		json_object_begin(j, NULL);
		json_string(j, "table", name);
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
