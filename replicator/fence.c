/*
 * fence.c — fencing and unfencing a PostgreSQL server (see fence.h).
 *
 * NOTES
 * A run is a short list of steps, each one statement on the main
 * connection, then the check on a connection of its own. One function moves
 * to the next step (fence_next()); every step's outcome goes into the run's
 * log, which is what straitctl prints, and into the daemon's log.
 *
 * The check needs a fresh session: an existing one keeps a value it SET, and
 * a new backend starts from what the postmaster holds. pg_reload_conf()
 * only signals the postmaster, so the check retries (a new connection each
 * time) for a short while before it reports a mismatch.
 *
 * When ALTER SYSTEM is refused for want of privilege (managed services
 * give no role that), the run falls back to ALTER DATABASE on the
 * connection's database, which its owner may run: it needs no reload (new
 * sessions read it at start), and only that database's sessions are ended,
 * since the others are not fenced by it.
 *
 * done() is called from a zero-delay event of the fence's own, outside any
 * libpq callback, so the owner may free the fence there.
 */
#include "replicator/fence.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <libpq-fe.h>

#include "common/log.h"
#include "replicator/pgasync.h"

#define FENCE_DEFAULT_TIMEOUT_MS 30000u
#define FENCE_CHECK_TRIES 20
#define FENCE_CHECK_INTERVAL_MS 100

enum fence_step {
	STEP_CONNECT,
	STEP_BEFORE,                 /* the value before */
	STEP_ALTER,                  /* ALTER SYSTEM (or DATABASE) SET / RESET */
	STEP_RELOAD,
	STEP_TERMINATE,
	STEP_CHECK,                  /* fresh connection */
	STEP_DONE,
};

static const char *const fence_step_names[] = {
	[STEP_CONNECT] = "connecting",
	[STEP_BEFORE] = "reading the current setting",
	[STEP_ALTER] = "ALTER SYSTEM",
	[STEP_RELOAD] = "reloading the configuration",
	[STEP_TERMINATE] = "ending client sessions",
	[STEP_CHECK] = "checking from a fresh connection",
	[STEP_DONE] = "done",
};

struct fence {
	struct event_base *base;
	char *conninfo;
	enum fence_op op;
	enum fence_step step;
	struct pgasync *main;
	struct pgasync *check;
	PGresult *last;
	unsigned check_tries;
	struct event *ev_timeout;
	struct event *ev_retry;
	struct event *ev_done;
	fence_done_fn done;
	void *arg;
	bool finished;
	char *alter_db;              /* the fallback's statement, once ALTER SYSTEM was refused */

	char *log;
	size_t log_len;
	bool log_oom;
	char error[512];
	struct fence_result res;
};

const char *fence_op_name(enum fence_op op)
{
	switch (op) {
	case FENCE_OP_FENCE:
		return "fence";
	case FENCE_OP_UNFENCE:
		return "unfence";
	case FENCE_OP_STATUS:
		return "status";
	}
	return "unknown";
}

/* One line into the run's log (control characters replaced) and the daemon's. */
static void fence_logf(struct fence *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void fence_logf(struct fence *f, const char *fmt, ...)
{
	char line[1024];
	size_t n;
	char *p;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	for (p = line; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	log_info("%s: %s", fence_op_name(f->op), line);
	n = strlen(line);
	p = f->log_oom ? NULL : realloc(f->log, f->log_len + n + 2);
	if (!p) {
		f->log_oom = true;
		return;
	}
	f->log = p;
	memcpy(f->log + f->log_len, line, n);
	f->log_len += n;
	f->log[f->log_len++] = '\n';
	f->log[f->log_len] = '\0';
}

static void fence_done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct fence *f = arg;

	(void)fd;
	(void)what;
	f->res.log = f->log ? f->log : "";
	f->res.error = f->res.ok ? NULL : f->error;
	f->done(f->arg, &f->res);
}

/* Ends the run (once): connections closed, done() from the loop. */
static void fence_finish(struct fence *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void fence_finish(struct fence *f, const char *fmt, ...)
{
	va_list ap;

	if (f->finished)
		return;
	f->finished = true;
	if (fmt) {
		va_start(ap, fmt);
		vsnprintf(f->error, sizeof(f->error), fmt, ap);
		va_end(ap);
		f->error[strcspn(f->error, "\n")] = '\0';
		log_error("%s: %s", fence_op_name(f->op), f->error);
		fence_logf(f, "FAILED: %s", f->error);
	}
	f->res.ok = fmt == NULL;
	if (f->log_oom)
		fence_logf(f, "(some steps are missing from this log: out of memory)");
	event_del(f->ev_timeout);
	event_del(f->ev_retry);
	/* pgasync objects may be inside their own callback: drop them from the loop */
	event_active(f->ev_done, EV_TIMEOUT, 0);
}

static void fence_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct fence *f = arg;

	(void)fd;
	(void)what;
	fence_finish(f, "timed out while %s", fence_step_names[f->step]);
}

/* The sessions a fence ends: every client but its own and strait's. */
#define FENCE_SESSIONS "FROM pg_stat_activity s " \
	"LEFT JOIN pg_catalog.pg_roles r ON r.oid = s.usesysid " \
	"WHERE coalesce(backend_type, 'client backend') = 'client backend' AND pid <> pg_backend_pid() " \
	"AND NOT starts_with(coalesce(application_name, ''), '" FENCE_STRAIT_APP_PREFIX "') "
#define FENCE_SESSIONS_ORDER " ORDER BY pid"

/*
 * A session whose backend_type is hidden (another role's, without
 * pg_read_all_stats) could be a walsender: listed, never ended.
 * Whether this role may end the session (PostgreSQL's own rule): ending a
 * superuser's needs superuser, another role's needs its privileges or
 * pg_signal_backend. Asked first, so a session it may not end is listed
 * (NULL) instead of failing the whole statement.
 */
#define FENCE_MAY_END "(coalesce(NOT r.rolsuper, false) OR (SELECT rolsuper FROM pg_catalog.pg_roles " \
	"WHERE rolname = current_user)) AND (pg_catalog.pg_has_role(s.usesysid, 'USAGE') " \
	"OR pg_catalog.pg_has_role('pg_signal_backend', 'USAGE'))"

static const char *fence_sql(const struct fence *f)
{
	switch (f->step) {
	case STEP_BEFORE:
		return "SELECT current_setting('default_transaction_read_only')";
	case STEP_ALTER:
		if (f->alter_db)
			return f->alter_db;
		return f->op == FENCE_OP_FENCE ? "ALTER SYSTEM SET default_transaction_read_only = on"
			: "ALTER SYSTEM RESET default_transaction_read_only";
	case STEP_RELOAD:
		return "SELECT pg_reload_conf()";
	case STEP_TERMINATE:
		/* waits up to 5 s for each to exit, so "ended" means gone */
#define FENCE_END_SQL(END, WHERE) "SELECT pid, coalesce(datname, ''), coalesce(usename, ''), " \
	"coalesce(application_name, ''), CASE WHEN backend_type IS NULL THEN NULL " \
	"WHEN " FENCE_MAY_END " THEN " END " END, backend_type IS NULL " \
	FENCE_SESSIONS WHERE FENCE_SESSIONS_ORDER
#define FENCE_END_14 "pg_terminate_backend(pid, 5000)"
		/* 13's has no timeout: wait until the session's transaction is over */
#define FENCE_END_13 FENCE_TERMINATE_WAIT("s.pid")
#define FENCE_THIS_DB "AND datname = current_database()"
		if (PQserverVersion(pgasync_conn(f->main)) >= 140000)
			return f->alter_db ? FENCE_END_SQL(FENCE_END_14, FENCE_THIS_DB)
				: FENCE_END_SQL(FENCE_END_14, "");
		return f->alter_db ? FENCE_END_SQL(FENCE_END_13, FENCE_THIS_DB)
			: FENCE_END_SQL(FENCE_END_13, "");
	case STEP_CHECK:
		return "SELECT current_setting('default_transaction_read_only'), pg_is_in_recovery()";
	default:
		return NULL;
	}
}

static void fence_start_check(struct fence *f);

/* The next step of the run, after the one that just succeeded. */
static void fence_next(struct fence *f)
{
	switch (f->step) {
	case STEP_CONNECT:
		f->step = f->op == FENCE_OP_STATUS ? STEP_CHECK : STEP_BEFORE;
		break;
	case STEP_BEFORE:
		f->step = STEP_ALTER;
		break;
	case STEP_ALTER:
		/* a database's setting is read by each new session: nothing to reload */
		if (!f->alter_db)
			f->step = STEP_RELOAD;
		else
			f->step = f->op == FENCE_OP_FENCE ? STEP_TERMINATE : STEP_CHECK;
		break;
	case STEP_RELOAD:
		f->step = f->op == FENCE_OP_FENCE ? STEP_TERMINATE : STEP_CHECK;
		break;
	case STEP_TERMINATE:
		f->step = STEP_CHECK;
		break;
	case STEP_CHECK:
	case STEP_DONE:
		f->step = STEP_DONE;
		fence_finish(f, NULL);
		return;
	}
	if (f->step == STEP_CHECK) {
		f->check_tries = 0;
		fence_start_check(f);
		return;
	}
	if (!pgasync_send(f->main, fence_sql(f)))
		return;               /* failed() follows */
}

static void fence_log_before(struct fence *f, const PGresult *r)
{
	const char *v = PQntuples(r) == 1 ? PQgetvalue(r, 0, 0) : "?";
	bool on = strcmp(v, "on") == 0;

	if (f->op == FENCE_OP_FENCE && on)
		fence_logf(f, "default_transaction_read_only is already on (fenced before?): fencing again");
	else if (f->op == FENCE_OP_UNFENCE && !on)
		fence_logf(f, "default_transaction_read_only is already off: unfencing again");
	else
		fence_logf(f, "default_transaction_read_only is %s", v);
}

static void fence_log_terminated(struct fence *f, const PGresult *r)
{
	int n = PQntuples(r), failed = 0, refused = 0;

	for (int i = 0; i < n; i++) {
		bool may = !PQgetisnull(r, i, 4);
		bool ended = may && strcmp(PQgetvalue(r, i, 4), "t") == 0;
		bool hidden = strcmp(PQgetvalue(r, i, 5), "t") == 0;

		if (ended)
			f->res.sessions_ended++;
		else if (may)
			failed++;
		else
			refused++;
		fence_logf(f, "%s session %s (database \"%s\", user \"%s\", application \"%s\")",
			   ended ? "ended" : may ? "could not end within 5 s:"
			   : hidden ? "cannot see what it is (needs pg_read_all_stats), not ended:"
			   : "not allowed to end (needs superuser or pg_signal_backend):", PQgetvalue(r, i, 0),
			   PQgetvalue(r, i, 1), PQgetvalue(r, i, 2), PQgetvalue(r, i, 3));
	}
	fence_logf(f, "ended %u client session(s)%s%s", f->res.sessions_ended,
		   n ? "" : " (none to end)", f->alter_db ? " of this database" : "");
	f->res.sessions_left = (unsigned)(failed + refused);
	if (failed)
		fence_logf(f, "WARNING: %d session(s) did not exit within 5 s; they are read-only by default "
			   "for new transactions, but may still be finishing one", failed);
	if (refused)
		fence_logf(f, "WARNING: %d session(s) could not be ended by this role and may go on writing: "
			   "end them by hand, or give the role pg_signal_backend and pg_read_all_stats "
			   "(a superuser's session needs a superuser)", refused);
}

/* The main connection's statement of the current step completed. */
static void fence_step_done(struct fence *f, const PGresult *r)
{
	switch (f->step) {
	case STEP_BEFORE:
		fence_log_before(f, r);
		break;
	case STEP_ALTER:
		if (f->alter_db)
			fence_logf(f, "%s: done (kept in the catalog for this database only, across restarts)",
				   fence_sql(f));
		else
			fence_logf(f, "%s: done (written to postgresql.auto.conf, kept across restarts)", fence_sql(f));
		break;
	case STEP_RELOAD:
		fence_logf(f, "SELECT pg_reload_conf(): %s", PQntuples(r) == 1 ? PQgetvalue(r, 0, 0) : "?");
		break;
	case STEP_TERMINATE:
		fence_log_terminated(f, r);
		break;
	default:
		break;
	}
	fence_next(f);
}

static void fence_log_connected(struct fence *f, PGconn *c)
{
	const char *ver = PQparameterStatus(c, "server_version");

	fence_logf(f, "connected to %s port %s, database \"%s\" as \"%s\" (PostgreSQL %s)",
		   PQhost(c), PQport(c), PQdb(c), PQuser(c), ver ? ver : "?");
}

static void fence_main_connected(void *arg)
{
	struct fence *f = arg;

	if (f->finished)
		return;
	fence_log_connected(f, pgasync_conn(f->main));
	fence_next(f);
}

/*
 * ALTER SYSTEM was refused for want of privilege: the same setting on the
 * connection's database instead (its owner may), then on as before.
 */
static void fence_fall_back(struct fence *f)
{
	PGconn *c = pgasync_conn(f->main);
	const char *db = PQdb(c);
	char *ident = PQescapeIdentifier(c, db, strlen(db));
	/* this session is read-only itself once the database is: unfencing asks for read-write */
	const char *head = f->op == FENCE_OP_FENCE ? "" : "BEGIN READ WRITE; ";
	const char *tail = f->op == FENCE_OP_FENCE ? "SET default_transaction_read_only = on"
		: "RESET default_transaction_read_only; COMMIT";
	size_t len;

	fence_logf(f, "ALTER SYSTEM refused (%s): falling back to ALTER DATABASE, which fences "
		   "database \"%s\" only", pgasync_statement_error(f->main), db);
	f->res.method = "ALTER DATABASE";
	if (!ident) {
		fence_finish(f, "out of memory");
		return;
	}
	len = strlen(head) + strlen("ALTER DATABASE  ") + strlen(ident) + strlen(tail) + 1;
	f->alter_db = malloc(len);
	if (f->alter_db)
		snprintf(f->alter_db, len, "%sALTER DATABASE %s %s", head, ident, tail);
	PQfreemem(ident);
	if (!f->alter_db) {
		fence_finish(f, "out of memory");
		return;
	}
	pgasync_send(f->main, f->alter_db);    /* failed() follows a failure */
}

static void fence_main_input(void *arg)
{
	struct fence *f = arg;

	if (f->finished)
		return;
	switch (pgasync_results(f->main, &f->last)) {
	case PGASYNC_WAIT:
		return;
	case PGASYNC_DONE:
		fence_step_done(f, f->last);
		break;
	case PGASYNC_COPY:
		fence_finish(f, "unexpected COPY while %s", fence_step_names[f->step]);
		break;
	case PGASYNC_ERROR:
		if (f->step == STEP_ALTER && !f->alter_db &&
		    strcmp(pgasync_statement_sqlstate(f->main), "42501") == 0) {
			fence_fall_back(f);
			break;
		}
		if (f->step == STEP_TERMINATE)
			fence_finish(f, "new sessions are read-only, but existing sessions could not be ended: %s",
				     pgasync_statement_error(f->main));
		else
			fence_finish(f, "%s failed: %s", f->step == STEP_ALTER && f->alter_db ? "ALTER DATABASE"
				     : fence_step_names[f->step], pgasync_statement_error(f->main));
		break;
	}
	PQclear(f->last);
	f->last = NULL;
}

static void fence_drained(void *arg)
{
	(void)arg;
}

static void fence_main_failed(void *arg, const char *err)
{
	struct fence *f = arg;

	fence_finish(f, "connection failed while %s: %s", fence_step_names[f->step], err);
}

/* ---- the check, on a fresh connection ---- */

static void fence_check_connected(void *arg)
{
	struct fence *f = arg;

	if (f->finished)
		return;
	if (f->op == FENCE_OP_STATUS)
		fence_log_connected(f, pgasync_conn(f->check));
	pgasync_send(f->check, fence_sql(f));
}

static void fence_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct fence *f = arg;

	(void)fd;
	(void)what;
	if (!f->finished)
		fence_start_check(f);
}

static void fence_check_result(struct fence *f, const PGresult *r)
{
	bool want = f->op == FENCE_OP_FENCE, on;

	if (PQntuples(r) != 1) {
		fence_finish(f, "the check returned %d rows", PQntuples(r));
		return;
	}
	on = strcmp(PQgetvalue(r, 0, 0), "on") == 0;
	f->res.checked = true;
	f->res.fenced = on;
	f->res.in_recovery = strcmp(PQgetvalue(r, 0, 1), "t") == 0;
	if (f->op != FENCE_OP_STATUS && on != want && ++f->check_tries < FENCE_CHECK_TRIES) {
		struct timeval tv = { 0, FENCE_CHECK_INTERVAL_MS * 1000 };

		pgasync_free(f->check);     /* safe inside its callback: nothing follows */
		f->check = NULL;
		event_add(f->ev_retry, &tv);
		return;
	}
	fence_logf(f, "a new session sees default_transaction_read_only = %s%s", on ? "on" : "off",
		   f->res.in_recovery ? " (the server is a standby: read-only anyway)" : "");
	if (f->op == FENCE_OP_STATUS) {
		fence_logf(f, "the server is %s", on ? "fenced" : "not fenced");
		fence_next(f);
	} else if (on != want) {
		if (f->alter_db)
			fence_finish(f, "new sessions still see default_transaction_read_only = %s: a setting that "
				     "takes precedence over ALTER DATABASE (ALTER ROLE ... SET, %s) overrides it",
				     on ? "on" : "off", want ? "a connection option"
				     : "ALTER SYSTEM, postgresql.conf or a connection option");
		else
			fence_finish(f, "new sessions still see default_transaction_read_only = %s: a setting that "
				     "takes precedence over ALTER SYSTEM (ALTER DATABASE/ROLE ... SET, %s) overrides it",
				     on ? "on" : "off", want ? "a connection option"
				     : "postgresql.conf or a connection option");
	} else {
		fence_logf(f, "the server is %s", on ? "fenced" : "unfenced");
		fence_next(f);
	}
}

static void fence_check_input(void *arg)
{
	struct fence *f = arg;

	if (f->finished)
		return;
	switch (pgasync_results(f->check, &f->last)) {
	case PGASYNC_WAIT:
		return;
	case PGASYNC_DONE:
		fence_check_result(f, f->last);
		break;
	case PGASYNC_COPY:
		fence_finish(f, "unexpected COPY during the check");
		break;
	case PGASYNC_ERROR:
		fence_finish(f, "the check failed: %s", pgasync_statement_error(f->check));
		break;
	}
	PQclear(f->last);
	f->last = NULL;
}

static void fence_check_failed(void *arg, const char *err)
{
	struct fence *f = arg;

	fence_finish(f, "could not connect for the check: %s", err);
}

static void fence_start_check(struct fence *f)
{
	static const struct pgasync_callbacks cb = {
		.connected = fence_check_connected,
		.input = fence_check_input,
		.drained = fence_drained,
		.failed = fence_check_failed,
	};
	static const char *const keys[] = { "fallback_application_name", NULL };
	static const char *const values[] = { "strait-fence", NULL };

	pgasync_free(f->check);
	f->check = pgasync_new(f->base, f->conninfo, keys, values, "fence check", &cb, f);
	if (!f->check)
		fence_finish(f, "out of memory");
}

struct fence *fence_start(struct event_base *base, const char *conninfo, enum fence_op op,
		unsigned timeout_ms, fence_done_fn done, void *arg)
{
	static const struct pgasync_callbacks cb = {
		.connected = fence_main_connected,
		.input = fence_main_input,
		.drained = fence_drained,
		.failed = fence_main_failed,
	};
	static const char *const keys[] = { "fallback_application_name", NULL };
	static const char *const values[] = { "strait-fence", NULL };
	struct fence *f = calloc(1, sizeof(*f));
	struct timeval tv;

	if (!f)
		return NULL;
	if (!timeout_ms)
		timeout_ms = FENCE_DEFAULT_TIMEOUT_MS;
	tv.tv_sec = timeout_ms / 1000;
	tv.tv_usec = (timeout_ms % 1000) * 1000;
	f->base = base;
	f->op = op;
	f->done = done;
	f->arg = arg;
	f->step = STEP_CONNECT;
	f->res.method = "ALTER SYSTEM";
	f->conninfo = strdup(conninfo);
	f->ev_timeout = event_new(base, -1, 0, fence_timeout_cb, f);
	f->ev_retry = event_new(base, -1, 0, fence_retry_cb, f);
	f->ev_done = event_new(base, -1, 0, fence_done_cb, f);
	if (!f->conninfo || !f->ev_timeout || !f->ev_retry || !f->ev_done ||
	    event_add(f->ev_timeout, &tv) < 0)
		goto fail;
	/* the status check needs no connection of its own besides the fresh one */
	if (op == FENCE_OP_STATUS) {
		f->step = STEP_CHECK;
		fence_start_check(f);
		if (f->finished && !f->check)
			goto fail;
		return f;
	}
	f->main = pgasync_new(base, conninfo, keys, values, "fence", &cb, f);
	if (!f->main)
		goto fail;
	return f;
fail:
	fence_free(f);
	return NULL;
}

void fence_free(struct fence *f)
{
	if (!f)
		return;
	pgasync_free(f->main);
	pgasync_free(f->check);
	PQclear(f->last);
	if (f->ev_timeout)
		event_free(f->ev_timeout);
	if (f->ev_retry)
		event_free(f->ev_retry);
	if (f->ev_done)
		event_free(f->ev_done);
	free(f->conninfo);
	free(f->alter_db);
	free(f->log);
	free(f);
}
