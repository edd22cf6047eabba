/*
 * syncload.c — loading initial-sync copies into the target (see syncload.h).
 *
 * NOTES
 * Each loader connection has one state enum and one function that changes
 * it (syncload_set_state), logged at debug with the reason (a handful per
 * table); every table's start and end is logged at info. A loader
 * runs one thing at a time: the set-up of its session (which sets it up on
 * its own origin of the pool for the connection's life, syncstate.h), a
 * query of the recorded state, a migration of an older version's origins,
 * the "sync done" mark, a fold, or one table's load:
 *
 *   PROLOGUE  BEGIN, the table's record, does the table have rows, does
 *             another table's foreign key reference it?
 *   COPY_START  [TRUNCATE; or DELETE;] COPY ... FROM STDIN
 *   COPYING   chunks from the job's queue, one at a time, each flushed
 *             before the next is put, so libpq's buffer stays small and
 *             "taken" means the bytes left for the target
 *   COPY_END  PQputCopyEnd, waiting for "COPY n"
 *   COMMIT    COMMIT
 *   RESET     after an abort: ROLLBACK
 *
 * Work is started from an event (ev_dispatch), never from inside the
 * caller's syncload_*() call, so callbacks only ever run from the loop.
 * While a loader rolls back an aborted load, no other loader starts one:
 * the rolled-back transaction holds the table's lock and its record's row
 * until then.
 */
#include "replicator/syncload.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <libpq-fe.h>

#include "common/json.h"
#include "common/log.h"
#include "common/lsn.h"
#include "replicator/pgasync.h"
#include "replicator/syncplan.h"
#include "replicator/syncrange.h"
#include "replicator/syncstate.h"

enum loader_state {
	LOADER_CONNECTING,
	LOADER_SESSION,
	LOADER_SETUP,
	LOADER_IDLE,
	LOADER_QUERY,
	LOADER_MIGRATE,
	LOADER_MARK,
	LOADER_FOLD,
	LOADER_STATEMENT,
	LOADER_PROLOGUE,
	LOADER_COPY_START,
	LOADER_COPYING,
	LOADER_COPY_END,
	LOADER_COMMIT,
	LOADER_RESET,
};

static const char *const loader_state_names[] = {
	[LOADER_CONNECTING] = "connecting",
	[LOADER_SESSION] = "setting the session up",
	[LOADER_SETUP] = "setting up",
	[LOADER_IDLE] = "idle",
	[LOADER_QUERY] = "reading the sync state",
	[LOADER_MIGRATE] = "moving an older version's origins into the record",
	[LOADER_MARK] = "recording the sync as done",
	[LOADER_FOLD] = "folding the records streaming has passed",
	[LOADER_STATEMENT] = "updating the record of joining tables",
	[LOADER_PROLOGUE] = "starting the transaction",
	[LOADER_COPY_START] = "starting COPY",
	[LOADER_COPYING] = "copying",
	[LOADER_COPY_END] = "ending COPY",
	[LOADER_COMMIT] = "committing",
	[LOADER_RESET] = "rolling back",
};

struct syncload_chunk {
	struct syncload_chunk *next;
	uint32_t no;
	size_t len;
	uint8_t data[];
};

struct syncload_loader;

struct syncload_job {
	struct syncload_job *next;
	uint64_t id;
	char *schema;
	char *table;
	char *display;           /* schema.table as quote_ident writes it */
	char **columns;
	size_t ncolumns;
	uint64_t lsn;
	uint32_t range;          /* of ranges; 0 of 0 for a whole table */
	uint32_t ranges;
	bool clear;              /* the first range of a fresh copy: clears earlier ones */
	struct syncload_chunk *head;
	struct syncload_chunk *tail;
	size_t queued;           /* bytes waiting in the chunk queue */
	bool ended;
	bool aborted;
	uint64_t rows;           /* rows put so far (newlines) */
	uint64_t bytes;          /* bytes put so far */
	uint32_t last_put;
	struct syncload_loader *loader;
};

struct syncload_loader {
	struct syncload *sl;
	unsigned id;
	struct pgasync *pg;
	enum loader_state state;
	struct syncload_job *job;
	bool flushing;           /* waiting for drained() */
	bool put_pending;        /* last_put not yet reported taken */
	uint64_t mark_lsn;
	uint64_t stmt_tag;
};

/* A statement syncload_statement() queued. */
struct syncload_stmt {
	struct syncload_stmt *next;
	uint64_t tag;
	char sql[];
};

struct syncload {
	struct event_base *base;
	struct syncload_callbacks cb;
	void *arg;
	char *conninfo;
	char *stream;
	struct syncload_loader loaders[SYNCLOAD_MAX_CONNS];
	struct syncload_job *jobs;       /* every job, in the order begun */
	uint64_t next_id;
	bool want_query;
	bool want_mark;
	uint64_t mark_lsn;
	bool want_fold;
	uint64_t fold_lsn;
	char *migrate_sql;               /* an older version's record to move (query's answer) */
	struct syncload_stmt *stmts;     /* syncload_statement()s, oldest first */
	unsigned nconns;                 /* loaders it may open (syncload_use_origin()) */
	struct event *ev_dispatch;

	uint64_t bytes;
	char last_error[256];
};

static void syncload_dispatch_soon(struct syncload *sl)
{
	if (!event_pending(sl->ev_dispatch, EV_TIMEOUT, NULL))
		event_active(sl->ev_dispatch, EV_TIMEOUT, 0);
}

static void syncload_job_free(struct syncload_job *job)
{
	struct syncload_chunk *c, *next;

	for (c = job->head; c; c = next) {
		next = c->next;
		free(c);
	}
	for (size_t i = 0; i < job->ncolumns; i++)
		free(job->columns[i]);
	free(job->columns);
	free(job->schema);
	free(job->table);
	free(job->display);
	free(job);
}

static void syncload_job_unlink(struct syncload *sl, struct syncload_job *job)
{
	for (struct syncload_job **p = &sl->jobs; *p; p = &(*p)->next) {
		if (*p == job) {
			*p = job->next;
			break;
		}
	}
}

static void syncload_job_remove(struct syncload *sl, struct syncload_job *job)
{
	syncload_job_unlink(sl, job);
	if (job->loader)
		job->loader->job = NULL;
	syncload_job_free(job);
}

/* The only place a loader's state changes. */
static void syncload_set_state(struct syncload_loader *l, enum loader_state next, const char *why)
{
	if (l->state == next)
		return;
	log_debug("stream \"%s\": initial sync loader %u: %s -> %s: %s", l->sl->stream, l->id,
		  loader_state_names[l->state], loader_state_names[next], why);
	l->state = next;
}

static void syncload_close_loader(struct syncload_loader *l)
{
	pgasync_free(l->pg);
	l->pg = NULL;
	syncload_set_state(l, LOADER_CONNECTING, "connection closed");
	l->flushing = false;
	l->put_pending = false;
	if (l->job)
		l->job->loader = NULL;
	l->job = NULL;
}

static void syncload_fail(struct syncload *sl, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Logs once, closes every connection (the target rolls back), drops every job. */
static void syncload_fail(struct syncload *sl, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(sl->last_error, sizeof(sl->last_error), fmt, ap);
	va_end(ap);
	log_error("stream \"%s\": initial sync: %s", sl->stream, sl->last_error);
	for (unsigned i = 0; i < SYNCLOAD_MAX_CONNS; i++)
		syncload_close_loader(&sl->loaders[i]);
	while (sl->jobs)
		syncload_job_remove(sl, sl->jobs);
	sl->want_query = false;
	sl->want_mark = false;
	sl->want_fold = false;
	free(sl->migrate_sql);
	sl->migrate_sql = NULL;
	sl->cb.failed(sl->arg, sl->last_error);
}

/* ---- a table's load ---- */

static bool syncload_send(struct syncload_loader *l, enum loader_state next, const char *why,
		const char *sql)
{
	syncload_set_state(l, next, why);
	return pgasync_send(l->pg, sql);
}

static void syncload_prologue(struct syncload_loader *l, struct syncload_job *job);

static void syncload_start_job(struct syncload_loader *l, struct syncload_job *job)
{
	l->job = job;
	job->loader = l;
	if (job->ranges)
		log_info("stream \"%s\": initial sync: loading %s range %" PRIu32 " of %" PRIu32
			 " (snapshot at " LSN_FMT ", connection %u)", l->sl->stream, job->display,
			 job->range, job->ranges, LSN_ARGS(job->lsn), l->id);
	else
		log_info("stream \"%s\": initial sync: loading %s (snapshot at " LSN_FMT
			 ", connection %u)", l->sl->stream, job->display, LSN_ARGS(job->lsn), l->id);
	syncload_prologue(l, job);
}

/* The job's record: the table's, or its range's (after clearing an earlier copy's). */
static char *syncload_record_sql(const char *stream, const struct syncload_job *job)
{
	char *clear, *range, *both = NULL;

	if (!job->ranges)
		return syncstate_record_sql(stream, job->schema, job->table, job->lsn);
	range = syncstate_range_record_sql(stream, job->schema, job->table, job->lsn, job->range,
					   job->ranges);
	if (!job->clear || !range)
		return range;
	clear = syncstate_clear_sql(stream, job->schema, job->table);
	if (clear && asprintf(&both, "%s%s", clear, range) < 0)
		both = NULL;
	free(clear);
	free(range);
	return both;
}

static char *syncload_prologue_sql(struct syncload_loader *l)
{
	PGconn *conn = pgasync_conn(l->pg);
	struct syncload_job *job = l->job;
	char *q = NULL, *lit = NULL, *sql = NULL;
	/* the record goes in first: the table's (or range's) rows and it commit together */
	char *record = syncload_record_sql(l->sl->stream, job);
	char *s = PQescapeIdentifier(conn, job->schema, strlen(job->schema));
	char *t = PQescapeIdentifier(conn, job->table, strlen(job->table));

	if (s && t && asprintf(&q, "%s.%s", s, t) >= 0)
		lit = PQescapeLiteral(conn, q, strlen(q));
	if (lit && record && asprintf(&sql,
			"BEGIN; %s; "
			"SELECT c.relkind, CASE WHEN c.relkind = 'p' THEN EXISTS (SELECT 1 FROM %s) "
			"ELSE EXISTS (SELECT 1 FROM ONLY %s) END, "
			"EXISTS (SELECT 1 FROM pg_catalog.pg_constraint f WHERE f.contype = 'f' "
			"AND f.confrelid = c.oid AND f.conrelid <> c.oid) "
			"FROM pg_catalog.pg_class c WHERE c.oid = %s::pg_catalog.regclass",
			record, q, q, lit) < 0)
		sql = NULL;
	free(record);
	PQfreemem(s);
	PQfreemem(t);
	PQfreemem(lit);
	free(q);
	return sql;
}

/*
 * How a target table with rows is emptied in its load's transaction:
 * TRUNCATE, or DELETE when another table's foreign key references it, which
 * PostgreSQL refuses to truncate alone. The session's replication role keeps
 * the foreign keys' triggers from firing, and the referenced rows come back
 * from the copy before the commit.
 */
static const char *syncload_clear_sql(char relkind, bool referenced)
{
	if (referenced)
		return relkind == 'p' ? "DELETE FROM " : "DELETE FROM ONLY ";
	return relkind == 'p' ? "TRUNCATE " : "TRUNCATE ONLY ";
}

static char *syncload_copy_sql(struct syncload_loader *l, char relkind, bool nonempty,
		bool referenced)
{
	PGconn *conn = pgasync_conn(l->pg);
	struct syncload_job *job = l->job;
	struct syncplan_text sql = { 0 };
	char *s = PQescapeIdentifier(conn, job->schema, strlen(job->schema));
	char *t = PQescapeIdentifier(conn, job->table, strlen(job->table));
	bool ok = s && t;

	if (ok && nonempty) {
		const char *head = syncload_clear_sql(relkind, referenced);

		ok = syncplan_text_append(&sql, head, strlen(head)) &&
		     syncplan_text_append(&sql, s, strlen(s)) && syncplan_text_append(&sql, ".", 1) &&
		     syncplan_text_append(&sql, t, strlen(t)) && syncplan_text_append(&sql, "; ", 2);
	}
	ok = ok && syncplan_text_append(&sql, "COPY ", 5) &&
	     syncplan_text_append(&sql, s, strlen(s)) && syncplan_text_append(&sql, ".", 1) &&
	     syncplan_text_append(&sql, t, strlen(t));
	for (size_t i = 0; ok && i < job->ncolumns; i++) {
		char *c = PQescapeIdentifier(conn, job->columns[i], strlen(job->columns[i]));

		ok = c && syncplan_text_append(&sql, i == 0 ? " (" : ", ", 2) &&
		     syncplan_text_append(&sql, c, strlen(c));
		PQfreemem(c);
	}
	if (ok && job->ncolumns)
		ok = syncplan_text_append(&sql, ")", 1);
	ok = ok && syncplan_text_append(&sql, " FROM STDIN", 11);
	PQfreemem(s);
	PQfreemem(t);
	if (!ok) {
		syncplan_text_free(&sql);
		return NULL;
	}
	return sql.data;
}

/* An aborted job's loader: its results are all in; roll back. */
static void syncload_rollback(struct syncload_loader *l)
{
	if (l->job)
		syncload_job_remove(l->sl, l->job);
	(void)syncload_send(l, LOADER_RESET, "the load was aborted", "ROLLBACK");
}

/* The result of an aborted job's statement is in: rolls back (true) instead of going on. */
static bool syncload_rolled_back(struct syncload_loader *l)
{
	if (!l->job->aborted)
		return false;
	syncload_rollback(l);
	return true;
}

/*
 * COPY IN broke: the server's own error, when it sent one, says more than
 * libpq's "no COPY in progress".
 */
static void syncload_copy_failed(struct syncload_loader *l)
{
	PGconn *conn = pgasync_conn(l->pg);
	PGresult *res = PQgetResult(conn);
	char msg[512];

	if (res && PQresultStatus(res) != PGRES_COPY_IN && *PQresultErrorMessage(res))
		snprintf(msg, sizeof(msg), "%s", PQresultErrorMessage(res));
	else
		snprintf(msg, sizeof(msg), "%s", pgasync_error(l->pg));
	PQclear(res);
	msg[strcspn(msg, "\n")] = '\0';
	syncload_fail(l->sl, "could not load table %s: %s", l->job->display, msg);
}

/* Puts queued chunks, one flushed at a time; ends the COPY when the job has ended. */
static void syncload_pump(struct syncload_loader *l)
{
	struct syncload *sl = l->sl;
	struct syncload_job *job = l->job;
	PGconn *conn = pgasync_conn(l->pg);

	while (!l->flushing && job->head) {
		struct syncload_chunk *c = job->head;
		int r = PQputCopyData(conn, (const char *)c->data, (int)c->len);

		if (r < 0) {
			syncload_copy_failed(l);
			return;
		}
		if (r == 0) {
			/* libpq's buffer is full: put it again once drained */
			l->flushing = true;
			if (pgasync_flush(l->pg) < 0)
				syncload_copy_failed(l);
			return;
		}
		job->head = c->next;
		if (!job->head)
			job->tail = NULL;
		job->queued -= c->len;
		job->bytes += c->len;
		sl->bytes += c->len;
		for (const uint8_t *p = c->data, *end = c->data + c->len;
		     (p = memchr(p, '\n', (size_t)(end - p))) != NULL; p++)
			job->rows++;
		job->last_put = c->no;
		l->put_pending = true;
		free(c);
		r = pgasync_flush(l->pg);
		if (r < 0) {
			syncload_fail(sl, "could not load table %s: %s", job->display, pgasync_error(l->pg));
			return;
		}
		if (r == 1) {
			l->flushing = true;
			return;
		}
		l->put_pending = false;
		sl->cb.taken(sl->arg, job->id, job->last_put);
		if (l->job != job || l->state != LOADER_COPYING)
			return;
	}
	if (l->flushing || job->head || !job->ended)
		return;
	switch (PQputCopyEnd(conn, NULL)) {
	case 1:
		syncload_set_state(l, LOADER_COPY_END, "every chunk put");
		if (pgasync_flush(l->pg) < 0)
			syncload_fail(sl, "could not load table %s: %s", job->display, pgasync_error(l->pg));
		return;
	case 0:
		l->flushing = true;      /* try again once drained */
		if (pgasync_flush(l->pg) < 0)
			syncload_copy_failed(l);
		return;
	default:
		syncload_copy_failed(l);
		return;
	}
}

/* ---- dispatching ---- */

static bool syncload_any_resetting(const struct syncload *sl)
{
	for (unsigned i = 0; i < SYNCLOAD_MAX_CONNS; i++) {
		if (sl->loaders[i].pg && sl->loaders[i].state == LOADER_RESET)
			return true;
	}
	return false;
}

static void syncload_loader_connected(void *arg);
static void syncload_loader_input(void *arg);
static void syncload_loader_drained(void *arg);
static void syncload_loader_failed(void *arg, const char *err);

static bool syncload_open_loader(struct syncload *sl, struct syncload_loader *l)
{
	static const struct pgasync_callbacks cb = {
		.connected = syncload_loader_connected,
		.input = syncload_loader_input,
		.drained = syncload_loader_drained,
		.failed = syncload_loader_failed,
	};
	static const char *const keys[] = { "application_name", NULL };
	static const char *const values[] = { "strait_sync", NULL };
	char what[160];

	snprintf(what, sizeof(what), "stream \"%s\": initial sync loader %u", sl->stream, l->id);
	l->pg = pgasync_new(sl->base, sl->conninfo, keys, values, what, &cb, l);
	syncload_set_state(l, LOADER_CONNECTING, "work waits");
	return l->pg != NULL;
}

/*
 * Whether job waits for the first range of a fresh copy of its table: that
 * one clears the table (TRUNCATE) and the earlier copy's record, so no other
 * range of the table may load before it commits.
 */
static bool syncload_behind_clear(const struct syncload *sl, const struct syncload_job *job)
{
	if (!job->ranges || job->clear)
		return false;
	for (const struct syncload_job *j = sl->jobs; j; j = j->next) {
		if (j->clear && !j->aborted && strcmp(j->schema, job->schema) == 0 &&
		    strcmp(j->table, job->table) == 0)
			return true;
	}
	return false;
}

/* The first job no loader has taken and that may start, or NULL. */
static struct syncload_job *syncload_waiting(struct syncload *sl)
{
	for (struct syncload_job *j = sl->jobs; j; j = j->next) {
		if (!j->loader && !j->aborted && !syncload_behind_clear(sl, j))
			return j;
	}
	return NULL;
}

/*
 * Gives an idle loader one of the stream-wide statements that wait (a
 * migration first: the query that asked for it is answered after it); false
 * when none waits, or on a failure (then the whole batch has failed).
 */
static bool syncload_take_statement(struct syncload *sl, struct syncload_loader *l, bool *failed)
{
	enum loader_state next;
	const char *why;
	char *sql;

	if (sl->migrate_sql) {
		sql = sl->migrate_sql;
		sl->migrate_sql = NULL;
		next = LOADER_MIGRATE;
		why = "an older version's origins are found";
	} else if (sl->want_query) {
		sl->want_query = false;
		sql = syncstate_query_sql(sl->stream);
		next = LOADER_QUERY;
		why = "the sync state is wanted";
	} else if (sl->want_mark) {
		sl->want_mark = false;
		l->mark_lsn = sl->mark_lsn;
		sql = syncstate_done_sql(sl->stream, l->mark_lsn);
		next = LOADER_MARK;
		why = "the sync is done";
	} else if (sl->want_fold) {
		sl->want_fold = false;
		l->mark_lsn = sl->fold_lsn;
		sql = syncstate_fold_sql(sl->stream, l->mark_lsn);
		next = LOADER_FOLD;
		why = "streaming has passed the records";
	} else if (sl->stmts) {
		struct syncload_stmt *st = sl->stmts;

		sl->stmts = st->next;
		l->stmt_tag = st->tag;
		(void)syncload_send(l, LOADER_STATEMENT, "a joining table's record", st->sql);
		free(st);
		return true;
	} else {
		return false;
	}
	if (!sql) {
		syncload_fail(sl, "out of memory");
		*failed = true;
		return false;
	}
	(void)syncload_send(l, next, why, sql);
	free(sql);
	return true;
}

/* Gives idle loaders work; opens a loader when work waits and there is room. */
static void syncload_dispatch(struct syncload *sl)
{
	struct syncload_job *waiting = syncload_waiting(sl);
	bool need = false, failed = false;

	for (unsigned i = 0; i < SYNCLOAD_MAX_CONNS; i++) {
		struct syncload_loader *l = &sl->loaders[i];

		if (!l->pg || l->state != LOADER_IDLE)
			continue;
		if (syncload_take_statement(sl, l, &failed))
			continue;
		if (failed)
			return;
		if (waiting && !syncload_any_resetting(sl)) {
			syncload_start_job(l, waiting);
			waiting = syncload_waiting(sl);
		}
	}
	need = sl->want_query || sl->want_mark || sl->want_fold || sl->migrate_sql || sl->stmts ||
	       waiting;
	for (unsigned i = 0; need && i < SYNCLOAD_MAX_CONNS; i++) {
		struct syncload_loader *l = &sl->loaders[i];

		if (l->pg && (l->state == LOADER_CONNECTING || l->state == LOADER_SESSION ||
			      l->state == LOADER_SETUP))
			return;      /* one on the way will take it */
	}
	for (unsigned i = 0; need && i < sl->nconns; i++) {
		if (sl->loaders[i].pg)
			continue;
		if (!syncload_open_loader(sl, &sl->loaders[i]))
			syncload_fail(sl, "out of memory");
		return;
	}
}

static void syncload_dispatch_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	syncload_dispatch(arg);
}

/* ---- loader events ---- */

/*
 * The session as the apply engine's. Its own query: a fenced old primary
 * that rejoined as a replica has default_transaction_read_only on, and a
 * transaction is read-only from its start, so the record's tables come in
 * the next one (syncload_loader_session_done()).
 */
static void syncload_loader_connected(void *arg)
{
	struct syncload_loader *l = arg;

	(void)syncload_send(l, LOADER_SESSION, "connected",
		"SET session_replication_role = replica; SET default_transaction_read_only = off; "
		"SET search_path = ''; SET DateStyle = ISO; "
		"SET IntervalStyle = postgres; SET extra_float_digits = 3; SET client_encoding = 'UTF8'; "
		"SET statement_timeout = 0; SET lock_timeout = 0; "
		"SET idle_in_transaction_session_timeout = 0; "
		"SELECT pg_catalog.set_config('synchronous_commit', 'local', false) "
		"WHERE pg_catalog.current_setting('synchronous_commit') = 'off'");
}

/* The record's tables, and the loader's origin for good. */
static void syncload_loader_session_done(struct syncload_loader *l)
{
	char *sql = syncstate_session_sql(l->sl->stream, l->id);

	if (!sql) {
		syncload_fail(l->sl, "out of memory");
		return;
	}
	(void)syncload_send(l, LOADER_SETUP, "session set", sql);
	free(sql);
}

/* An older version's record, as the query found it: moved by a migration. */
struct syncload_legacy {
	struct syncstate_legacy_table *tables;
	size_t n;
	uint64_t done;
	char **origins;
	size_t norigins;
};

/* Row r of the query is an older version's origin: note it for the migration. */
static void syncload_note_legacy(struct syncload *sl, const PGresult *res, int r,
		struct syncload_legacy *lg)
{
	const char *name = PQgetvalue(res, r, 1);
	char *schema, *table;
	uint64_t lsn = 0;

	lg->origins[lg->norigins++] = (char *)name;
	if (PQgetisnull(res, r, 3) || !lsn_parse(PQgetvalue(res, r, 3), &lsn) || lsn == 0)
		return;     /* created, never committed: nothing was loaded under it */
	switch (syncplan_parse_origin(sl->stream, name, &schema, &table)) {
	case SYNCPLAN_ORIGIN_STREAM:
		lg->done = lsn;
		break;
	case SYNCPLAN_ORIGIN_TABLE:
		lg->tables[lg->n++] = (struct syncstate_legacy_table){ schema, table, lsn };
		break;
	default:
		log_warning("stream \"%s\": initial sync: dropping replication origin \"%s\", which "
			    "names no table", sl->stream, name);
		break;
	}
}

/* Older origins found: their migration, then the query again. False when out of memory. */
static bool syncload_migrate(struct syncload *sl, const PGresult *res)
{
	size_t rows = (size_t)PQntuples(res) + 1;
	struct syncload_legacy lg = { calloc(rows, sizeof(*lg.tables)), 0, 0,
				      calloc(rows, sizeof(char *)), 0 };
	bool ok = lg.tables && lg.origins;

	for (int r = 0; ok && r < PQntuples(res); r++) {
		if (PQgetvalue(res, r, 0)[0] == 'o')
			syncload_note_legacy(sl, res, r, &lg);
	}
	if (ok) {
		log_notice("stream \"%s\": initial sync: moving %zu tables recorded by replication "
			   "origins into " SYNCSTATE_SCHEMA ".sync_table and dropping %zu origins",
			   sl->stream, lg.n, lg.norigins);
		free(sl->migrate_sql);
		sl->migrate_sql = syncstate_migrate_sql(sl->stream, lg.tables, lg.n, lg.done,
							lg.origins, lg.norigins);
		ok = sl->migrate_sql != NULL;
	}
	for (size_t i = 0; lg.tables && i < lg.n; i++) {
		free((char *)lg.tables[i].schema);
		free((char *)lg.tables[i].table);
	}
	free(lg.tables);
	free(lg.origins);
	sl->want_query = true;     /* answered once the record holds them */
	return ok;
}

/* Row r of the state query is a loaded range: into *out, unless its numbers are off. */
static bool syncload_range_row(const PGresult *res, int r, uint64_t lsn,
		struct syncload_loaded *out)
{
	long range, ranges;

	if (PQgetisnull(res, r, 4) || PQgetisnull(res, r, 5))
		return false;
	range = strtol(PQgetvalue(res, r, 4), NULL, 10);
	ranges = strtol(PQgetvalue(res, r, 5), NULL, 10);
	if (ranges < 2 || ranges > (long)SYNCRANGE_MAX || range < 0 || range >= ranges)
		return false;
	*out = (struct syncload_loaded){ PQgetvalue(res, r, 1), PQgetvalue(res, r, 2), lsn,
					 (uint32_t)range, (uint32_t)ranges };
	return true;
}

static void syncload_state_result(struct syncload *sl, const PGresult *res)
{
	struct syncload_loaded *tables;
	size_t n = 0;
	uint64_t done = 0;

	for (int r = 0; r < PQntuples(res); r++) {
		if (PQgetvalue(res, r, 0)[0] == 'o') {
			if (!syncload_migrate(sl, res))
				syncload_fail(sl, "out of memory");
			return;
		}
	}
	tables = calloc((size_t)PQntuples(res) + 1, sizeof(*tables));
	if (!tables) {
		syncload_fail(sl, "out of memory");
		return;
	}
	for (int r = 0; r < PQntuples(res); r++) {
		uint64_t lsn;

		if (PQgetisnull(res, r, 3) || !lsn_parse(PQgetvalue(res, r, 3), &lsn))
			continue;
		if (PQgetvalue(res, r, 0)[0] == 's')
			done = lsn;
		else if (PQgetvalue(res, r, 0)[0] == 't')
			tables[n++] = (struct syncload_loaded){ PQgetvalue(res, r, 1),
								PQgetvalue(res, r, 2), lsn, 0, 0 };
		else if (!syncload_range_row(res, r, lsn, &tables[n]))
			log_warning("stream \"%s\": initial sync: ignoring a malformed row of "
				    SYNCSTATE_SCHEMA ".sync_range for table %s.%s", sl->stream,
				    PQgetvalue(res, r, 1), PQgetvalue(res, r, 2));
		else
			n++;
	}
	sl->cb.state(sl->arg, tables, n, done);
	free(tables);
}

/*
 * Input while COPY IN runs: data to put (a kick), or the server's early
 * error; during COPY IN PQgetResult() answers PGRES_COPY_IN until the server
 * ends it.
 */
static void syncload_copy_input(struct syncload_loader *l)
{
	PGresult *res = PQgetResult(pgasync_conn(l->pg));

	if (res && PQresultStatus(res) != PGRES_COPY_IN) {
		char msg[512];

		snprintf(msg, sizeof(msg), "%s", PQresultErrorMessage(res));
		msg[strcspn(msg, "\n")] = '\0';
		PQclear(res);
		syncload_fail(l->sl, "could not load table %s: %s", l->job->display,
			      msg[0] ? msg : "COPY ended early");
		return;
	}
	PQclear(res);
	syncload_pump(l);
}

/* A statement of the loader's current state failed: the whole sync fails. */
static void syncload_statement_failed(struct syncload_loader *l)
{
	struct syncload *sl = l->sl;
	const char *err = pgasync_statement_error(l->pg);

	switch (l->state) {
	case LOADER_SESSION:
	case LOADER_SETUP:
		syncload_fail(sl, "could not set up a session on the target: %s", err);
		return;
	case LOADER_QUERY:
		syncload_fail(sl, "could not read the sync state from the target: %s", err);
		return;
	case LOADER_MIGRATE:
		syncload_fail(sl, "could not move an older version's origins into the record: %s", err);
		return;
	case LOADER_MARK:
		syncload_fail(sl, "could not record the sync as done: %s", err);
		return;
	case LOADER_FOLD:
		syncload_fail(sl, "could not fold the sync's record: %s", err);
		return;
	case LOADER_STATEMENT:
		syncload_fail(sl, "could not update the record of joining tables: %s", err);
		return;
	default:
		syncload_fail(sl, "could not load table %s: %s", l->job ? l->job->display : "?", err);
		return;
	}
}

static void syncload_query_done(struct syncload_loader *l, const PGresult *res)
{
	struct syncload *sl = l->sl;

	syncload_set_state(l, LOADER_IDLE, "sync state read");
	if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
		syncload_fail(sl, "could not read the sync state from the target: no rows");
		return;
	}
	syncload_state_result(sl, res);
	syncload_dispatch_soon(sl);
}

static void syncload_fold_done(struct syncload_loader *l, const PGresult *res)
{
	struct syncload *sl = l->sl;

	syncload_set_state(l, LOADER_IDLE, "records folded");
	log_info("stream \"%s\": initial sync: folded %s table records at or below " LSN_FMT
		 " (streaming has passed them)", sl->stream, res ? PQcmdTuples((PGresult *)res) : "?",
		 LSN_ARGS(l->mark_lsn));
	if (sl->cb.folded)
		sl->cb.folded(sl->arg, l->mark_lsn);
	syncload_dispatch_soon(sl);
}

static void syncload_mark_recorded(struct syncload_loader *l)
{
	struct syncload *sl = l->sl;

	syncload_set_state(l, LOADER_IDLE, "sync recorded as done");
	log_info("stream \"%s\": initial sync recorded as done, streaming from " LSN_FMT,
		 sl->stream, LSN_ARGS(l->mark_lsn));
	sl->cb.marked(sl->arg, l->mark_lsn);
	syncload_dispatch_soon(sl);
}

/* A table's load starts: its transaction, its record, whether it has rows. */
static void syncload_prologue(struct syncload_loader *l, struct syncload_job *job)
{
	char *sql = syncload_prologue_sql(l);

	(void)job;
	if (!sql) {
		syncload_fail(l->sl, "out of memory");
		return;
	}
	(void)syncload_send(l, LOADER_PROLOGUE, "a table to load", sql);
	free(sql);
}

/* The transaction is open and res says whether the table has rows: start the COPY. */
static void syncload_prologue_done(struct syncload_loader *l, const PGresult *res)
{
	struct syncload *sl = l->sl;
	struct syncload_job *job = l->job;
	char relkind;
	bool nonempty, referenced;
	char *sql;

	if (syncload_rolled_back(l))
		return;
	if (!res || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 ||
	    PQnfields(res) != 3) {
		syncload_fail(sl, "could not load table %s: target table not found", job->display);
		return;
	}
	relkind = PQgetvalue(res, 0, 0)[0];
	/* other ranges of the table load beside this one: only a fresh copy's first clears it */
	nonempty = strcmp(PQgetvalue(res, 0, 1), "t") == 0 && (!job->ranges || job->clear);
	referenced = strcmp(PQgetvalue(res, 0, 2), "t") == 0;
	sql = syncload_copy_sql(l, relkind, nonempty, referenced);
	if (!sql) {
		syncload_fail(sl, "out of memory");
		return;
	}
	if (nonempty)
		log_notice("stream \"%s\": initial sync: target table %s has rows; %s "
			   "before the copy", sl->stream, job->display,
			   referenced ? "deleting them (a foreign key references it)" : "truncating it");
	(void)syncload_send(l, LOADER_COPY_START, "transaction open", sql);
	free(sql);
}

static void syncload_copy_started(struct syncload_loader *l, enum pgasync_step step,
		const PGresult *res)
{
	struct syncload *sl = l->sl;
	struct syncload_job *job = l->job;

	if (step != PGASYNC_COPY || PQresultStatus(res) != PGRES_COPY_IN) {
		if (!syncload_rolled_back(l))
			syncload_fail(sl, "could not load table %s: COPY did not start", job->display);
		return;
	}
	if (job->aborted) {
		syncload_set_state(l, LOADER_COPY_END, "the load was aborted");
		if (PQputCopyEnd(pgasync_conn(l->pg), "initial sync round aborted") < 0 ||
		    pgasync_flush(l->pg) < 0)
			syncload_fail(sl, "could not end COPY: %s", pgasync_error(l->pg));
		return;
	}
	syncload_set_state(l, LOADER_COPYING, "COPY started");
	syncload_pump(l);
}

static void syncload_copy_ended(struct syncload_loader *l, const PGresult *res)
{
	if (syncload_rolled_back(l))
		return;
	if (!res || PQresultStatus(res) != PGRES_COMMAND_OK) {
		syncload_fail(l->sl, "could not load table %s: COPY did not complete", l->job->display);
		return;
	}
	(void)syncload_send(l, LOADER_COMMIT, "COPY complete", "COMMIT");
}

static void syncload_committed(struct syncload_loader *l)
{
	struct syncload *sl = l->sl;
	struct syncload_job *job = l->job;
	struct syncload_loaded t = { job->schema, job->table, job->lsn, job->range, job->ranges };

	/* the job leaves the books before the owner hears of it */
	syncload_set_state(l, LOADER_IDLE, "table committed");
	l->job = NULL;
	job->loader = NULL;
	syncload_job_unlink(sl, job);
	if (job->ranges)
		log_info("stream \"%s\": initial sync: loaded %s range %" PRIu32 " of %" PRIu32 ": %"
			 PRIu64 " rows, %" PRIu64 " bytes", sl->stream, job->display, job->range,
			 job->ranges, job->rows, job->bytes);
	else
		log_info("stream \"%s\": initial sync: loaded %s: %" PRIu64 " rows, %" PRIu64 " bytes",
			 sl->stream, job->display, job->rows, job->bytes);
	sl->cb.loaded(sl->arg, job->id, &t, job->rows);
	syncload_job_free(job);
	syncload_dispatch_soon(sl);
}

static void syncload_reset_done(struct syncload_loader *l, enum pgasync_step step)
{
	if (step == PGASYNC_ERROR) {
		syncload_fail(l->sl, "could not roll back an aborted load: %s",
			      pgasync_statement_error(l->pg));
		return;
	}
	syncload_set_state(l, LOADER_IDLE, "rolled back");
	syncload_dispatch_soon(l->sl);
}

/* The results of the loader's statements are in (or, while copying, input to take). */
static void syncload_loader_input(void *arg)
{
	struct syncload_loader *l = arg;
	PGresult *res = NULL;
	enum pgasync_step step;

	if (l->state == LOADER_COPYING) {
		syncload_copy_input(l);
		return;
	}
	step = pgasync_results(l->pg, &res);
	if (step == PGASYNC_WAIT) {
		PQclear(res);
		return;
	}
	if (step == PGASYNC_ERROR && l->state != LOADER_RESET && !(l->job && l->job->aborted)) {
		PQclear(res);
		syncload_statement_failed(l);
		return;
	}
	switch (l->state) {
	case LOADER_SESSION:
		syncload_loader_session_done(l);
		break;
	case LOADER_SETUP:
		syncload_set_state(l, LOADER_IDLE, "session set up");
		syncload_dispatch_soon(l->sl);
		break;
	case LOADER_QUERY:
		syncload_query_done(l, res);
		break;
	case LOADER_MIGRATE:
		syncload_set_state(l, LOADER_IDLE, "older origins moved");
		syncload_dispatch_soon(l->sl);
		break;
	case LOADER_MARK:
		syncload_mark_recorded(l);
		break;
	case LOADER_FOLD:
		syncload_fold_done(l, res);
		break;
	case LOADER_STATEMENT:
		syncload_set_state(l, LOADER_IDLE, "record updated");
		if (l->sl->cb.statement)
			l->sl->cb.statement(l->sl->arg, l->stmt_tag, res);
		syncload_dispatch_soon(l->sl);
		break;
	case LOADER_PROLOGUE:
		syncload_prologue_done(l, res);
		break;
	case LOADER_COPY_START:
		syncload_copy_started(l, step, res);
		break;
	case LOADER_COPY_END:
		syncload_copy_ended(l, res);
		break;
	case LOADER_COMMIT:
		syncload_committed(l);
		break;
	case LOADER_RESET:
		syncload_reset_done(l, step);
		break;
	default:
		break;
	}
	PQclear(res);
}

static void syncload_loader_drained(void *arg)
{
	struct syncload_loader *l = arg;
	struct syncload *sl = l->sl;

	if (!l->flushing)
		return;
	l->flushing = false;
	if (l->state != LOADER_COPYING || !l->job)
		return;
	if (l->put_pending) {
		struct syncload_job *job = l->job;

		l->put_pending = false;
		sl->cb.taken(sl->arg, job->id, job->last_put);
		if (l->job != job || l->state != LOADER_COPYING)
			return;
	}
	syncload_pump(l);
}

static void syncload_loader_failed(void *arg, const char *err)
{
	struct syncload_loader *l = arg;

	syncload_fail(l->sl, "connection %u to the target failed: %s", l->id, err);
}

/* ---- API ---- */

struct syncload *syncload_new(struct event_base *base, const char *conninfo, const char *stream,
		const struct syncload_callbacks *cb, void *arg)
{
	struct syncload *sl = calloc(1, sizeof(*sl));

	if (!sl)
		return NULL;
	sl->base = base;
	sl->cb = *cb;
	sl->arg = arg;
	sl->conninfo = strdup(conninfo);
	sl->stream = strdup(stream);
	sl->ev_dispatch = event_new(base, -1, 0, syncload_dispatch_cb, sl);
	sl->nconns = SYNCLOAD_MAX_CONNS;
	for (unsigned i = 0; i < SYNCLOAD_MAX_CONNS; i++) {
		sl->loaders[i].sl = sl;
		sl->loaders[i].id = i;
	}
	if (!sl->conninfo || !sl->stream || !sl->ev_dispatch) {
		syncload_free(sl);
		return NULL;
	}
	return sl;
}

void syncload_free(struct syncload *sl)
{
	if (!sl)
		return;
	for (unsigned i = 0; i < SYNCLOAD_MAX_CONNS; i++)
		syncload_close_loader(&sl->loaders[i]);
	while (sl->jobs)
		syncload_job_remove(sl, sl->jobs);
	if (sl->ev_dispatch)
		event_free(sl->ev_dispatch);
	free(sl->conninfo);
	free(sl->stream);
	free(sl->migrate_sql);
	while (sl->stmts) {
		struct syncload_stmt *next = sl->stmts->next;

		free(sl->stmts);
		sl->stmts = next;
	}
	free(sl);
}

void syncload_use_origin(struct syncload *sl, unsigned n)
{
	sl->nconns = 1;
	sl->loaders[0].id = n;
}

bool syncload_statement(struct syncload *sl, const char *sql, uint64_t tag)
{
	size_t n = strlen(sql) + 1;
	struct syncload_stmt *st = malloc(sizeof(*st) + n), **tail = &sl->stmts;

	if (!st)
		return false;
	st->next = NULL;
	st->tag = tag;
	memcpy(st->sql, sql, n);
	while (*tail)
		tail = &(*tail)->next;
	*tail = st;
	syncload_dispatch_soon(sl);
	return true;
}

void syncload_query(struct syncload *sl)
{
	sl->want_query = true;
	syncload_dispatch_soon(sl);
}

void syncload_mark_done(struct syncload *sl, uint64_t lsn)
{
	sl->want_mark = true;
	sl->mark_lsn = lsn;
	syncload_dispatch_soon(sl);
}

void syncload_fold(struct syncload *sl, uint64_t lsn)
{
	sl->want_fold = true;
	sl->fold_lsn = lsn;
	syncload_dispatch_soon(sl);
}

static struct syncload_job *syncload_find(struct syncload *sl, uint64_t id)
{
	for (struct syncload_job *j = sl->jobs; j; j = j->next) {
		if (j->id == id && !j->aborted)
			return j;
	}
	return NULL;
}

uint64_t syncload_begin(struct syncload *sl, const char *schema, const char *table,
		char *const *columns, size_t ncolumns, uint64_t lsn)
{
	const struct syncload_range whole = { 0, 0, false };

	return syncload_begin_range(sl, schema, table, columns, ncolumns, lsn, &whole);
}

uint64_t syncload_begin_range(struct syncload *sl, const char *schema, const char *table,
		char *const *columns, size_t ncolumns, uint64_t lsn, const struct syncload_range *r)
{
	struct syncload_job *job = calloc(1, sizeof(*job)), **tail;

	if (!job)
		return 0;
	job->schema = strdup(schema);
	job->table = strdup(table);
	job->display = syncplan_qualified(schema, table);
	job->lsn = lsn;
	job->range = r->range;
	job->ranges = r->ranges;
	job->clear = r->ranges && r->clear;
	if (ncolumns && !(job->columns = calloc(ncolumns, sizeof(char *))))
		goto oom;
	for (size_t i = 0; i < ncolumns; i++) {
		if (!(job->columns[i] = strdup(columns[i])))
			goto oom;
		job->ncolumns++;
	}
	if (!job->schema || !job->table || !job->display)
		goto oom;
	job->id = ++sl->next_id;
	for (tail = &sl->jobs; *tail; tail = &(*tail)->next)
		;
	*tail = job;
	syncload_dispatch_soon(sl);
	return job->id;
oom:
	syncload_job_free(job);
	return 0;
}

bool syncload_data(struct syncload *sl, uint64_t id, uint32_t chunk, const uint8_t *data,
		size_t len)
{
	struct syncload_job *job = syncload_find(sl, id);
	struct syncload_chunk *c;

	if (!job || job->ended)
		return false;
	if (len == 0)
		return true;
	c = malloc(sizeof(*c) + len);
	if (!c)
		return false;
	c->next = NULL;
	c->no = chunk;
	c->len = len;
	memcpy(c->data, data, len);
	if (job->tail)
		job->tail->next = c;
	else
		job->head = c;
	job->tail = c;
	job->queued += len;
	if (job->loader && job->loader->state == LOADER_COPYING && job->loader->pg)
		pgasync_kick(job->loader->pg);
	return true;
}

bool syncload_end(struct syncload *sl, uint64_t id)
{
	struct syncload_job *job = syncload_find(sl, id);

	if (!job || job->ended)
		return false;
	job->ended = true;
	if (job->loader && job->loader->state == LOADER_COPYING && job->loader->pg)
		pgasync_kick(job->loader->pg);
	return true;
}

void syncload_abort(struct syncload *sl)
{
	struct syncload_job *j, *next;

	for (j = sl->jobs; j; j = next) {
		struct syncload_loader *l = j->loader;

		next = j->next;
		if (!l) {
			syncload_job_remove(sl, j);
			continue;
		}
		if (l->state == LOADER_COMMIT)
			continue;        /* it will be loaded: let it finish */
		log_info("stream \"%s\": initial sync: dropping the load of %s (rolled back)", sl->stream,
			 j->display);
		j->aborted = true;
		if (l->state == LOADER_COPYING) {
			/* end the COPY with an error: the server rolls it back */
			syncload_set_state(l, LOADER_COPY_END, "the load was aborted");
			l->flushing = false;
			if (PQputCopyEnd(pgasync_conn(l->pg), "initial sync round aborted") < 0 ||
			    pgasync_flush(l->pg) < 0) {
				syncload_close_loader(l);
				syncload_job_remove(sl, j);
			}
		}
	}
	syncload_dispatch_soon(sl);
}

bool syncload_idle(const struct syncload *sl)
{
	if (sl->jobs || sl->want_query || sl->want_mark || sl->want_fold || sl->migrate_sql || sl->stmts)
		return false;
	for (unsigned i = 0; i < SYNCLOAD_MAX_CONNS; i++) {
		const struct syncload_loader *l = &sl->loaders[i];

		if (l->pg && l->state != LOADER_IDLE)
			return false;
	}
	return true;
}

void syncload_status_json(const struct syncload *sl, struct json_out *j)
{
	json_uint(j, "bytes_loaded", sl->bytes);
	json_array_begin(j, "loading");
	for (const struct syncload_job *job = sl->jobs; job; job = job->next) {
		json_object_begin(j, NULL);
		json_string(j, "table", job->display);
		if (job->ranges) {
			json_uint(j, "range", job->range);
			json_uint(j, "ranges", job->ranges);
		}
		json_string(j, "state", job->loader ? loader_state_names[job->loader->state] :
			    syncload_behind_clear(sl, job) ? "waiting for the first range" : "queued");
		json_uint(j, "rows", job->rows);
		json_uint(j, "bytes", job->bytes);
		json_uint(j, "queued_bytes", job->queued);
		json_object_end(j);
	}
	json_array_end(j);
	json_string(j, "load_error", sl->last_error[0] ? sl->last_error : NULL);
}
