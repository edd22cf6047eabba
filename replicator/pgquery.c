/*
 * pgquery.c — one statement at a time on a non-blocking libpq connection
 * (see pgquery.h).
 */
#include "replicator/pgquery.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "common/log.h"

enum pgquery_state {
	PGQUERY_IDLE,            /* no connection */
	PGQUERY_CONNECTING,
	PGQUERY_READY,           /* connected, nothing running */
	PGQUERY_RUNNING,
};

struct pgquery {
	struct event_base *base;
	char *conninfo;
	char *what;
	enum pgquery_state state;
	PGconn *conn;
	struct event *ev;
	char *pending_sql;       /* sent once connected */
	pgquery_fn cb;
	void *arg;
	PGresult *last;
};

static void pgquery_event_cb(evutil_socket_t fd, short what, void *arg);

static void pgquery_close(struct pgquery *q)
{
	if (q->ev) {
		event_free(q->ev);
		q->ev = NULL;
	}
	if (q->conn) {
		PQfinish(q->conn);
		q->conn = NULL;
	}
	PQclear(q->last);
	q->last = NULL;
	q->state = PGQUERY_IDLE;
}

/*
 * Ends the running statement and calls back. A connection-level failure
 * drops the connection (the next query reconnects); a statement that merely
 * failed leaves it usable.
 */
static void pgquery_complete(struct pgquery *q, const char *err, bool drop)
{
	pgquery_fn cb = q->cb;
	void *arg = q->arg;
	PGresult *res = q->last;
	char msg[512];

	q->last = NULL;
	q->cb = NULL;
	free(q->pending_sql);
	q->pending_sql = NULL;
	if (err) {
		snprintf(msg, sizeof(msg), "%s", err);
		msg[strcspn(msg, "\n")] = '\0';
		log_error("%s: %s", q->what, msg);
		PQclear(res);
		res = NULL;
	}
	if (drop)
		pgquery_close(q);
	else
		q->state = PGQUERY_READY;
	if (cb)
		cb(arg, res, err ? msg : NULL);
	PQclear(res);
}

static void pgquery_finish(struct pgquery *q, const char *err)
{
	pgquery_complete(q, err, err != NULL);
}

static bool pgquery_watch(struct pgquery *q, short events)
{
	if (q->ev)
		event_free(q->ev);
	q->ev = event_new(q->base, PQsocket(q->conn), events, pgquery_event_cb, q);
	return q->ev && event_add(q->ev, NULL) == 0;
}

static void pgquery_send(struct pgquery *q)
{
	if (!PQsendQuery(q->conn, q->pending_sql)) {
		pgquery_finish(q, PQerrorMessage(q->conn));
		return;
	}
	q->state = PGQUERY_RUNNING;
	if (PQflush(q->conn) < 0) {
		pgquery_finish(q, PQerrorMessage(q->conn));
		return;
	}
	if (!pgquery_watch(q, EV_READ | EV_PERSIST))
		pgquery_finish(q, "could not watch the connection");
}

static void pgquery_poll_connect(struct pgquery *q)
{
	switch (PQconnectPoll(q->conn)) {
	case PGRES_POLLING_READING:
		if (!pgquery_watch(q, EV_READ))
			pgquery_finish(q, "could not watch the connection");
		return;
	case PGRES_POLLING_WRITING:
		if (!pgquery_watch(q, EV_WRITE))
			pgquery_finish(q, "could not watch the connection");
		return;
	case PGRES_POLLING_FAILED:
		pgquery_finish(q, PQerrorMessage(q->conn));
		return;
	default:
		break;
	}
	if (PQsetnonblocking(q->conn, 1) < 0) {
		pgquery_finish(q, PQerrorMessage(q->conn));
		return;
	}
	q->state = PGQUERY_READY;
	pgquery_send(q);
}

static void pgquery_read(struct pgquery *q)
{
	if (!PQconsumeInput(q->conn)) {
		pgquery_finish(q, PQerrorMessage(q->conn));
		return;
	}
	while (!PQisBusy(q->conn)) {
		PGresult *res = PQgetResult(q->conn);
		ExecStatusType st;

		if (!res) {
			event_del(q->ev);
			pgquery_finish(q, NULL);
			return;
		}
		st = PQresultStatus(res);
		if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK && st != PGRES_EMPTY_QUERY) {
			char msg[512];

			snprintf(msg, sizeof(msg), "%s", PQresultErrorMessage(res));
			PQclear(res);
			/* drain the rest so the connection stays usable */
			while ((res = PQgetResult(q->conn)))
				PQclear(res);
			event_del(q->ev);
			pgquery_complete(q, msg, false);
			return;
		}
		/* the last result with rows wins (BEGIN ...; SELECT ...; COMMIT gives the SELECT's) */
		if (q->last && PQresultStatus(q->last) == PGRES_TUPLES_OK && st != PGRES_TUPLES_OK) {
			PQclear(res);
			continue;
		}
		PQclear(q->last);
		q->last = res;
	}
}

static void pgquery_event_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pgquery *q = arg;

	(void)fd;
	(void)what;
	if (q->state == PGQUERY_CONNECTING)
		pgquery_poll_connect(q);
	else if (q->state == PGQUERY_RUNNING)
		pgquery_read(q);
}

struct pgquery *pgquery_new(struct event_base *base, const char *conninfo, const char *what)
{
	struct pgquery *q = calloc(1, sizeof(*q));

	if (!q)
		return NULL;
	q->base = base;
	q->conninfo = strdup(conninfo);
	q->what = strdup(what);
	if (!q->conninfo || !q->what) {
		pgquery_free(q);
		return NULL;
	}
	return q;
}

void pgquery_free(struct pgquery *q)
{
	if (!q)
		return;
	pgquery_close(q);
	free(q->pending_sql);
	free(q->conninfo);
	free(q->what);
	free(q);
}

bool pgquery_busy(const struct pgquery *q)
{
	return q->state == PGQUERY_CONNECTING || q->state == PGQUERY_RUNNING;
}

bool pgquery_run(struct pgquery *q, const char *sql, pgquery_fn cb, void *arg)
{
	if (pgquery_busy(q))
		return false;
	q->pending_sql = strdup(sql);
	if (!q->pending_sql)
		return false;
	q->cb = cb;
	q->arg = arg;
	if (q->state == PGQUERY_READY) {
		pgquery_send(q);
		return true;
	}
	q->conn = PQconnectStart(q->conninfo);
	if (!q->conn) {
		free(q->pending_sql);
		q->pending_sql = NULL;
		return false;
	}
	q->state = PGQUERY_CONNECTING;
	if (PQstatus(q->conn) == CONNECTION_BAD) {
		/* report the failure from the loop, never inside the caller's call */
		q->ev = event_new(q->base, -1, 0, pgquery_event_cb, q);
		if (q->ev)
			event_active(q->ev, EV_TIMEOUT, 0);
	} else if (!pgquery_watch(q, EV_WRITE) && q->ev) {
		event_free(q->ev);
		q->ev = NULL;
	}
	if (!q->ev) {
		pgquery_close(q);
		free(q->pending_sql);
		q->pending_sql = NULL;
		return false;
	}
	return true;
}
