/*
 * pgasync.c — a non-blocking libpq connection in the libevent loop (see
 * pgasync.h).
 *
 * NOTES
 * During connection set-up the socket may change (libpq tries each host in
 * turn), so the watch is made anew after every PQconnectPoll(). Once
 * connected there is one persistent read event, one write event armed only
 * while output is pending, and a kick event the owner activates when it
 * stopped reading rows that libpq already holds (the socket would not wake
 * it for those). Freeing from inside a callback is safe because each
 * callback is the last thing its dispatcher does with the object.
 */
#include "replicator/pgasync.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "common/log.h"

struct pgasync {
	struct event_base *base;
	struct pgasync_callbacks cb;
	void *arg;
	PGconn *conn;
	bool connected;
	bool start_failed;       /* PQconnectStart() refused: failed() from the loop */
	bool reading;
	struct event *ev_read;
	struct event *ev_write;
	struct event *ev_kick;
	char *what;
	char error[512];
	char stmt_error[512];
	char stmt_sqlstate[6];
};

static void pgasync_read_cb(evutil_socket_t fd, short what, void *arg);
static void pgasync_write_cb(evutil_socket_t fd, short what, void *arg);
static void pgasync_connect_cb(evutil_socket_t fd, short what, void *arg);

static void pgasync_drop_events(struct pgasync *a)
{
	if (a->ev_read) {
		event_free(a->ev_read);
		a->ev_read = NULL;
	}
	if (a->ev_write) {
		event_free(a->ev_write);
		a->ev_write = NULL;
	}
}

static void pgasync_close(struct pgasync *a)
{
	pgasync_drop_events(a);
	if (a->ev_kick)
		event_del(a->ev_kick);
	if (a->conn) {
		PQfinish(a->conn);
		a->conn = NULL;
	}
	a->connected = false;
}

static void pgasync_set_error(struct pgasync *a, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));

static void pgasync_set_error(struct pgasync *a, const char *fmt, va_list ap)
{
	vsnprintf(a->error, sizeof(a->error), fmt, ap);
	/* libpq's messages end with a newline, some span lines */
	for (char *p = a->error; *p; p++)
		if (*p == '\n')
			*p = ' ';
	for (size_t n = strlen(a->error); n > 0 && a->error[n - 1] == ' '; n--)
		a->error[n - 1] = '\0';
}

void pgasync_fail(struct pgasync *a, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	pgasync_set_error(a, fmt, ap);
	va_end(ap);
	pgasync_close(a);
	a->cb.failed(a->arg, a->error);
}

const char *pgasync_error(const struct pgasync *a)
{
	static char line[512];
	const char *msg = a->conn ? PQerrorMessage(a->conn) : a->error;
	size_t n;

	snprintf(line, sizeof(line), "%s", msg);
	for (char *p = line; *p; p++)
		if (*p == '\n')
			*p = ' ';
	for (n = strlen(line); n > 0 && line[n - 1] == ' '; n--)
		line[n - 1] = '\0';
	return line;
}

static bool pgasync_watch_connect(struct pgasync *a, short events)
{
	pgasync_drop_events(a);
	a->ev_read = event_new(a->base, PQsocket(a->conn), events, pgasync_connect_cb, a);
	return a->ev_read && event_add(a->ev_read, NULL) == 0;
}

static void pgasync_connect_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pgasync *a = arg;

	(void)fd;
	(void)what;
	switch (PQconnectPoll(a->conn)) {
	case PGRES_POLLING_READING:
		if (!pgasync_watch_connect(a, EV_READ))
			pgasync_fail(a, "could not watch the connection");
		return;
	case PGRES_POLLING_WRITING:
		if (!pgasync_watch_connect(a, EV_WRITE))
			pgasync_fail(a, "could not watch the connection");
		return;
	case PGRES_POLLING_FAILED:
		pgasync_fail(a, "%s", PQerrorMessage(a->conn));
		return;
	default:
		break;
	}
	pgasync_drop_events(a);
	a->ev_read = event_new(a->base, PQsocket(a->conn), EV_READ | EV_PERSIST, pgasync_read_cb, a);
	a->ev_write = event_new(a->base, PQsocket(a->conn), EV_WRITE, pgasync_write_cb, a);
	if (!a->ev_read || !a->ev_write || event_add(a->ev_read, NULL) < 0 ||
	    PQsetnonblocking(a->conn, 1) < 0) {
		pgasync_fail(a, "could not watch the connection");
		return;
	}
	a->connected = true;
	a->reading = true;
	a->cb.connected(a->arg);
}

static void pgasync_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pgasync *a = arg;

	(void)fd;
	(void)what;
	if (!PQconsumeInput(a->conn)) {
		pgasync_fail(a, "%s", PQerrorMessage(a->conn));
		return;
	}
	a->cb.input(a->arg);
}

static void pgasync_kick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pgasync *a = arg;

	(void)fd;
	(void)what;
	if (a->start_failed) {
		a->start_failed = false;
		a->cb.failed(a->arg, a->error);
	} else if (a->connected) {
		pgasync_read_cb(fd, what, arg);
	}
}

static void pgasync_write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pgasync *a = arg;
	int r;

	(void)fd;
	(void)what;
	r = PQflush(a->conn);
	if (r < 0) {
		pgasync_fail(a, "%s", PQerrorMessage(a->conn));
		return;
	}
	if (r == 1) {
		event_add(a->ev_write, NULL);
		return;
	}
	a->cb.drained(a->arg);
}

int pgasync_flush(struct pgasync *a)
{
	int r;

	if (!a->connected)
		return -1;
	r = PQflush(a->conn);
	if (r == 1 && !event_pending(a->ev_write, EV_WRITE, NULL))
		event_add(a->ev_write, NULL);
	return r;
}

void pgasync_set_reading(struct pgasync *a, bool on)
{
	if (!a->connected || a->reading == on)
		return;
	a->reading = on;
	if (on)
		event_add(a->ev_read, NULL);
	else
		event_del(a->ev_read);
}

void pgasync_kick(struct pgasync *a)
{
	if (a->connected && !event_pending(a->ev_kick, EV_TIMEOUT, NULL))
		event_active(a->ev_kick, EV_TIMEOUT, 0);
}

PGconn *pgasync_conn(const struct pgasync *a)
{
	return a->conn;
}

/* Server notices (a TRUNCATE that cascades, a deprecation) go to our log. */
static void pgasync_notice(void *arg, const PGresult *res)
{
	struct pgasync *a = arg;
	char msg[512];

	snprintf(msg, sizeof(msg), "%s", PQresultErrorMessage(res));
	msg[strcspn(msg, "\n")] = '\0';
	log_notice("%s: %s", a->what, msg);
}

#define PGASYNC_MAX_PARAMS 8

struct pgasync *pgasync_new(struct event_base *base, const char *conninfo,
		const char *const *keys, const char *const *values, const char *what,
		const struct pgasync_callbacks *cb, void *arg)
{
	struct pgasync *a = calloc(1, sizeof(*a));
	const char *k[PGASYNC_MAX_PARAMS + 2] = { "dbname" }, *v[PGASYNC_MAX_PARAMS + 2] = { conninfo };
	size_t n = 1;

	if (!a)
		return NULL;
	/* conninfo is expanded in place of dbname; what follows overrides it */
	for (; keys && keys[n - 1] && n <= PGASYNC_MAX_PARAMS; n++) {
		k[n] = keys[n - 1];
		v[n] = values[n - 1];
	}
	a->base = base;
	a->cb = *cb;
	a->arg = arg;
	a->what = strdup(what);
	a->ev_kick = event_new(base, -1, 0, pgasync_kick_cb, a);
	a->conn = PQconnectStartParams(k, v, 1);
	if (!a->what || !a->ev_kick || !a->conn) {
		pgasync_free(a);
		return NULL;
	}
	if (PQstatus(a->conn) == CONNECTION_BAD) {
		/* reported from the loop, like every other failure */
		snprintf(a->error, sizeof(a->error), "%s", PQerrorMessage(a->conn));
		a->error[strcspn(a->error, "\n")] = '\0';
		PQfinish(a->conn);
		a->conn = NULL;
		a->start_failed = true;
		event_active(a->ev_kick, EV_TIMEOUT, 0);
		return a;
	}
	PQsetNoticeReceiver(a->conn, pgasync_notice, a);
	if (!pgasync_watch_connect(a, EV_WRITE)) {
		pgasync_free(a);
		return NULL;
	}
	return a;
}

void pgasync_free(struct pgasync *a)
{
	if (!a)
		return;
	pgasync_close(a);
	if (a->ev_kick)
		event_free(a->ev_kick);
	free(a->what);
	free(a);
}

bool pgasync_send(struct pgasync *a, const char *sql)
{
	a->stmt_error[0] = '\0';
	a->stmt_sqlstate[0] = '\0';
	if (!a->connected) {
		pgasync_fail(a, "not connected");
		return false;
	}
	if (!PQsendQuery(a->conn, sql) || pgasync_flush(a) < 0) {
		pgasync_fail(a, "%s", PQerrorMessage(a->conn));
		return false;
	}
	return true;
}

enum pgasync_step pgasync_results(struct pgasync *a, PGresult **last)
{
	while (!PQisBusy(a->conn)) {
		PGresult *res = PQgetResult(a->conn);
		ExecStatusType st;

		if (!res)
			return a->stmt_error[0] ? PGASYNC_ERROR : PGASYNC_DONE;
		st = PQresultStatus(res);
		switch (st) {
		case PGRES_COPY_OUT:
		case PGRES_COPY_IN:
		case PGRES_COPY_BOTH:
			PQclear(*last);
			*last = res;
			return PGASYNC_COPY;
		case PGRES_COMMAND_OK:
		case PGRES_TUPLES_OK:
		case PGRES_EMPTY_QUERY:
			PQclear(*last);
			*last = res;
			break;
		default:
			if (!a->stmt_error[0]) {
				const char *msg = PQresultErrorMessage(res);
				const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

				snprintf(a->stmt_sqlstate, sizeof(a->stmt_sqlstate), "%s", state ? state : "");

				snprintf(a->stmt_error, sizeof(a->stmt_error), "%s",
					 *msg ? msg : PQresStatus(st));
				a->stmt_error[strcspn(a->stmt_error, "\n")] = '\0';
			}
			PQclear(res);
			break;
		}
	}
	return PGASYNC_WAIT;
}

const char *pgasync_statement_error(const struct pgasync *a)
{
	return a->stmt_error;
}

const char *pgasync_statement_sqlstate(const struct pgasync *a)
{
	return a->stmt_sqlstate;
}
