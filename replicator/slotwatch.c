/*
 * slotwatch.c — polling a replication slot's WAL figures (see slotwatch.h).
 *
 * NOTES
 * One timer ticks every interval and drives a small state machine: no
 * connection (connect once the retry time has come), connecting, ready
 * (send the poll), running (wait; give up after SLOTWATCH_TIMEOUT_MS,
 * since a non-blocking libpq connection has no timeout of its own). It
 * changes only in slotwatch_set_state, logged at debug with the reason. The
 * statement is built once per connection: it depends on the server's
 * version and is quoted with the connection's own rules. statvfs() runs in
 * the loop: a local disk answers at once, and only when the server is
 * local do we look at all.
 */
#include "replicator/slotwatch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <libpq-fe.h>

#include "common/diskspace.h"
#include "common/log.h"
#include "common/lsn.h"
#include "replicator/pgasync.h"
#include "replicator/pgversion.h"

enum slotwatch_state {
	SLOTWATCH_IDLE,          /* no connection: connect at retry_at */
	SLOTWATCH_CONNECTING,
	SLOTWATCH_READY,         /* connected, no poll running */
	SLOTWATCH_RUNNING,
};

static const char *const slotwatch_state_names[] = {
	[SLOTWATCH_IDLE] = "not connected",
	[SLOTWATCH_CONNECTING] = "connecting",
	[SLOTWATCH_READY] = "ready",
	[SLOTWATCH_RUNNING] = "polling",
};

struct slotwatch {
	struct event_base *base;
	char *conninfo;
	char *slot;
	char *what;
	unsigned interval_ms;
	slotwatch_fn cb;
	void *arg;

	struct event *timer;     /* every interval_ms */
	struct event *kick;      /* the first poll, at once */
	enum slotwatch_state state;
	struct pgasync *conn;
	char *sql;               /* this connection's statement */
	PGresult *res;           /* the poll's result until the statement ends */
	bool local;              /* this connection is to this host */
	int64_t retry_at;        /* monotonic µs */
	int64_t since;           /* monotonic µs: connecting or running since */

	int logged_version;      /* the server version last logged, 0 before */
	bool have_sample;
	struct slot_sample last;
	char error[512];         /* the latest failure, "" after a success */
	char disk_note[512];     /* why the disk is not measured, logged once */
};

static int64_t mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t wall_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

bool slotwatch_host_is_local(const char *host)
{
	if (!host || !*host)
		return false;
	/* a socket directory (or an abstract socket): the server is on this host */
	if (host[0] == '/' || host[0] == '@')
		return true;
	return strcmp(host, "localhost") == 0 || strncmp(host, "127.", 4) == 0 ||
	       strcmp(host, "::1") == 0;
}

char *slotwatch_sql(int server_version, const char *slot_literal)
{
	char *sql = NULL;
	bool v13 = server_version >= 130000;
	bool v17 = pgversion_has_invalidation_reason(server_version);
	bool v18 = pgversion_has_idle_slot_timeout(server_version);

	/*
	 * One row even without the slot (the LEFT JOIN), so the server's figures
	 * come either way. data_directory through pg_settings: the view leaves
	 * out what the role may not read, where current_setting() would fail.
	 * Columns a version lacks are NULL, so the answer has one shape.
	 */
	if (asprintf(&sql,
		     "SELECT CASE WHEN pg_catalog.pg_is_in_recovery() "
		     "THEN pg_catalog.pg_last_wal_replay_lsn() ELSE pg_catalog.pg_current_wal_lsn() END, "
		     "pg_catalog.pg_is_in_recovery(), s.slot_name IS NOT NULL, "
		     "s.restart_lsn, s.confirmed_flush_lsn, %s, %s, %s, "
		     "(SELECT setting FROM pg_catalog.pg_settings WHERE name = 'data_directory'), "
		     "%s, %s, %s "
		     "FROM (SELECT 1) AS one "
		     "LEFT JOIN pg_catalog.pg_replication_slots s ON s.slot_name = %s",
		     v13 ? "s.wal_status" : "NULL::text",
		     v13 ? "s.safe_wal_size" : "NULL::bigint",
		     v13 ? "pg_catalog.pg_size_bytes(pg_catalog.current_setting('max_slot_wal_keep_size'))"
			 : "NULL::bigint",
		     v17 ? "s.invalidation_reason" : "NULL::text",
		     v17 ? "floor(extract(epoch FROM pg_catalog.now() - s.inactive_since))::bigint"
			 : "NULL::bigint",
		     /* the setting's unit is seconds; a bare number in the file means the same */
		     v18 ? "(SELECT setting::bigint FROM pg_catalog.pg_settings "
			   "WHERE name = 'idle_replication_slot_timeout')" : "NULL::bigint",
		     slot_literal) < 0)
		return NULL;
	return sql;
}

/* ------------------------------------------------------------ reporting */

static void slotwatch_report_failure(struct slotwatch *w, const char *msg)
{
	if (strcmp(msg, w->error) != 0)
		log_warning("%s: could not read replication slot \"%s\": %s", w->what, w->slot, msg);
	snprintf(w->error, sizeof(w->error), "%s", msg);
	if (w->cb)
		w->cb(w->arg, NULL, w->error);
}

static void slotwatch_report_sample(struct slotwatch *w)
{
	if (w->error[0]) {
		log_info("%s: reading replication slot \"%s\" again", w->what, w->slot);
		w->error[0] = '\0';
	}
	if (w->cb)
		w->cb(w->arg, &w->last, NULL);
}

static int64_t slotwatch_retry_at(const struct slotwatch *w)
{
	unsigned ms = w->interval_ms > SLOTWATCH_RETRY_MS ? w->interval_ms : SLOTWATCH_RETRY_MS;

	return mono_us() + (int64_t)ms * 1000;
}

/* Drops the connection; a tick after the retry delay makes a new one. */
static void slotwatch_set_state(struct slotwatch *w, enum slotwatch_state next, const char *why)
{
	if (w->state == next)
		return;
	log_debug("%s: slot \"%s\": %s -> %s: %s", w->what, w->slot, slotwatch_state_names[w->state],
		  slotwatch_state_names[next], why);
	w->state = next;
}

static void slotwatch_disconnect(struct slotwatch *w)
{
	pgasync_free(w->conn);
	w->conn = NULL;
	PQclear(w->res);
	w->res = NULL;
	free(w->sql);
	w->sql = NULL;
	slotwatch_set_state(w, SLOTWATCH_IDLE, "disconnected");
	w->retry_at = slotwatch_retry_at(w);
}

/* ------------------------------------------------------------ the disk */

static void slotwatch_disk_note(struct slotwatch *w, const char *note)
{
	if (strcmp(note, w->disk_note) != 0 && note[0])
		log_debug("%s: not measuring pg_wal's disk: %s", w->what, note);
	snprintf(w->disk_note, sizeof(w->disk_note), "%s", note);
}

/* statvfs() of DATA_DIR/pg_wal, else DATA_DIR (pg_wal is 0700 to the server's user). */
static void slotwatch_measure_disk(struct slotwatch *w, struct slot_sample *s, const char *datadir)
{
	struct disk_space space;
	char err[512];
	int n;

	if (!w->local) {
		slotwatch_disk_note(w, "the server is on another host");
		return;
	}
	if (!datadir) {
		slotwatch_disk_note(w, "the role may not read data_directory "
				    "(needs superuser or pg_read_all_settings)");
		return;
	}
	n = snprintf(s->wal_disk_path, sizeof(s->wal_disk_path), "%s/pg_wal", datadir);
	if (n < 0 || (size_t)n >= sizeof(s->wal_disk_path)) {
		s->wal_disk_path[0] = '\0';
		slotwatch_disk_note(w, "data_directory is too long");
		return;
	}
	if (!disk_space_measure(s->wal_disk_path, &space, err, sizeof(err))) {
		snprintf(s->wal_disk_path, sizeof(s->wal_disk_path), "%s", datadir);
		if (!disk_space_measure(s->wal_disk_path, &space, err, sizeof(err))) {
			s->wal_disk_path[0] = '\0';
			slotwatch_disk_note(w, err);
			return;
		}
	}
	s->wal_disk_known = true;
	s->wal_disk_free = space.free;
	s->wal_disk_size = space.size;
	slotwatch_disk_note(w, "");
}

/* ------------------------------------------------------------ the poll */

static const char *value(const PGresult *res, int col)
{
	return PQgetisnull(res, 0, col) ? NULL : PQgetvalue(res, 0, col);
}

static bool parse_int64(const char *text, int64_t *out)
{
	char *end;

	if (!text || !*text)
		return false;
	*out = strtoll(text, &end, 10);
	return *end == '\0';
}

/* Fills s from the poll's row; false (with err) when it is not what we asked for. */
static bool slotwatch_parse(struct slotwatch *w, const PGresult *res, struct slot_sample *s,
		char *err, size_t errlen)
{
	const char *v;

	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 || PQnfields(res) != 12) {
		snprintf(err, errlen, "unexpected answer to the poll");
		return false;
	}
	memset(s, 0, sizeof(*s));
	s->taken_us = wall_us();
	s->server_version = PQserverVersion(pgasync_conn(w->conn));
	s->in_recovery = (v = value(res, 1)) && v[0] == 't';
	s->wal_lsn_known = lsn_parse(value(res, 0), &s->wal_lsn);
	s->slot_found = (v = value(res, 2)) && v[0] == 't';
	s->restart_known = lsn_parse(value(res, 3), &s->restart_lsn);
	s->confirmed_known = lsn_parse(value(res, 4), &s->confirmed_flush_lsn);
	if ((v = value(res, 5)))
		snprintf(s->wal_status, sizeof(s->wal_status), "%s", v);
	s->safe_wal_size_known = parse_int64(value(res, 6), &s->safe_wal_size);
	s->max_keep_known = parse_int64(value(res, 7), &s->max_slot_wal_keep_size);
	if ((v = value(res, 9)))
		snprintf(s->invalidation_reason, sizeof(s->invalidation_reason), "%s", v);
	s->inactive_known = parse_int64(value(res, 10), &s->inactive_seconds);
	s->idle_timeout_known = parse_int64(value(res, 11), &s->idle_timeout_seconds);
	if (s->wal_lsn_known && s->restart_known) {
		s->retained_known = true;
		s->retained_bytes = s->wal_lsn > s->restart_lsn ? s->wal_lsn - s->restart_lsn : 0;
	}
	s->server_local = w->local;
	slotwatch_measure_disk(w, s, value(res, 8));
	return true;
}

static void slotwatch_send(struct slotwatch *w)
{
	if (!pgasync_send(w->conn, w->sql))
		return;          /* failed() has run */
	slotwatch_set_state(w, SLOTWATCH_RUNNING, "poll sent");
	w->since = mono_us();
}

/* The server's version and what strait does without there, once per version seen. */
static void slotwatch_log_version(struct slotwatch *w, int version)
{
	char *line;

	if (version == w->logged_version)
		return;
	w->logged_version = version;
	line = pgversion_describe(version, PGVERSION_SOURCE);
	log_info("%s: source server is %s", w->what, line ? line : "of an unknown version");
	free(line);
}

static void slotwatch_connected(void *arg)
{
	struct slotwatch *w = arg;
	PGconn *conn = pgasync_conn(w->conn);
	char *lit;

	if (PQserverVersion(conn) < 100000) {
		pgasync_fail(w->conn, "the server is older than PostgreSQL 10");
		return;
	}
	lit = PQescapeLiteral(conn, w->slot, strlen(w->slot));
	free(w->sql);
	w->sql = lit ? slotwatch_sql(PQserverVersion(conn), lit) : NULL;
	PQfreemem(lit);
	if (!w->sql) {
		pgasync_fail(w->conn, "out of memory");
		return;
	}
	slotwatch_log_version(w, PQserverVersion(conn));
	w->local = slotwatch_host_is_local(PQhost(conn)) ||
		   slotwatch_host_is_local(PQhostaddr(conn));
	slotwatch_set_state(w, SLOTWATCH_READY, "connected");
	slotwatch_send(w);
}

static void slotwatch_input(void *arg)
{
	struct slotwatch *w = arg;
	enum pgasync_step step;
	struct slot_sample s;
	char err[512];

	if (w->state != SLOTWATCH_RUNNING)
		return;
	/* the row may come before the end of the statement: kept in w->res meanwhile */
	step = pgasync_results(w->conn, &w->res);
	if (step == PGASYNC_WAIT)
		return;
	if (step == PGASYNC_COPY) {
		pgasync_fail(w->conn, "unexpected COPY in answer to the poll");
		return;
	}
	slotwatch_set_state(w, SLOTWATCH_READY, "poll answered");
	if (step == PGASYNC_ERROR)
		snprintf(err, sizeof(err), "%s", pgasync_statement_error(w->conn));
	else if (!w->res)
		snprintf(err, sizeof(err), "no answer to the poll");
	if (step == PGASYNC_ERROR || !w->res || !slotwatch_parse(w, w->res, &s, err, sizeof(err))) {
		PQclear(w->res);
		w->res = NULL;
		slotwatch_report_failure(w, err);
		return;
	}
	PQclear(w->res);
	w->res = NULL;
	w->last = s;
	w->have_sample = true;
	slotwatch_report_sample(w);
}

static void slotwatch_drained(void *arg)
{
	(void)arg;
}

static void slotwatch_conn_failed(void *arg, const char *err)
{
	struct slotwatch *w = arg;
	char msg[512];

	snprintf(msg, sizeof(msg), "%s", err && *err ? err : "connection lost");
	slotwatch_disconnect(w);          /* frees the pgasync: allowed from its callback */
	slotwatch_report_failure(w, msg);
}

static const struct pgasync_callbacks slotwatch_callbacks = {
	.connected = slotwatch_connected,
	.input = slotwatch_input,
	.drained = slotwatch_drained,
	.failed = slotwatch_conn_failed,
};

static void slotwatch_connect(struct slotwatch *w)
{
	/* an ordinary session whatever the stream's conninfo says */
	static const char *const keys[] = { "replication", "fallback_application_name", NULL };
	static const char *const values[] = { "false", "strait slotwatch", NULL };
	char what[256];

	snprintf(what, sizeof(what), "%s: watching slot \"%s\"", w->what, w->slot);
	w->conn = pgasync_new(w->base, w->conninfo, keys, values, what, &slotwatch_callbacks, w);
	if (!w->conn) {
		w->retry_at = slotwatch_retry_at(w);
		slotwatch_report_failure(w, "out of memory");
		return;
	}
	slotwatch_set_state(w, SLOTWATCH_CONNECTING, "retry time came");
	w->since = mono_us();
}

static void slotwatch_tick(evutil_socket_t fd, short what, void *arg)
{
	struct slotwatch *w = arg;
	int64_t now = mono_us();

	(void)fd;
	(void)what;
	switch (w->state) {
	case SLOTWATCH_IDLE:
		/* half a tick of slack, or the tick just before retry_at would cost a whole interval */
		if (now + (int64_t)w->interval_ms * 500 >= w->retry_at)
			slotwatch_connect(w);
		break;
	case SLOTWATCH_READY:
		slotwatch_send(w);
		break;
	case SLOTWATCH_CONNECTING:
	case SLOTWATCH_RUNNING:
		if (now - w->since >= (int64_t)SLOTWATCH_TIMEOUT_MS * 1000)
			pgasync_fail(w->conn, "no answer from the server within %u s",
				     SLOTWATCH_TIMEOUT_MS / 1000);
		break;
	}
}

struct slotwatch *slotwatch_new(struct event_base *base, const char *conninfo,
		const char *slot_name, unsigned interval_ms, const char *what,
		slotwatch_fn cb, void *arg)
{
	struct slotwatch *w = calloc(1, sizeof(*w));
	struct timeval tv;

	if (!w)
		return NULL;
	if (interval_ms == 0)
		interval_ms = 1;
	tv.tv_sec = interval_ms / 1000;
	tv.tv_usec = (interval_ms % 1000) * 1000;
	w->base = base;
	w->interval_ms = interval_ms;
	w->cb = cb;
	w->arg = arg;
	w->state = SLOTWATCH_IDLE;
	w->conninfo = strdup(conninfo);
	w->slot = strdup(slot_name);
	w->what = strdup(what);
	w->timer = event_new(base, -1, EV_PERSIST, slotwatch_tick, w);
	w->kick = event_new(base, -1, 0, slotwatch_tick, w);
	if (!w->conninfo || !w->slot || !w->what || !w->timer || !w->kick ||
	    event_add(w->timer, &tv) < 0) {
		slotwatch_free(w);
		return NULL;
	}
	event_active(w->kick, EV_TIMEOUT, 0);
	return w;
}

void slotwatch_free(struct slotwatch *w)
{
	if (!w)
		return;
	if (w->timer)
		event_free(w->timer);
	if (w->kick)
		event_free(w->kick);
	pgasync_free(w->conn);
	PQclear(w->res);
	free(w->sql);
	free(w->conninfo);
	free(w->slot);
	free(w->what);
	free(w);
}

const struct slot_sample *slotwatch_last(const struct slotwatch *w)
{
	return w->have_sample ? &w->last : NULL;
}

const char *slotwatch_error(const struct slotwatch *w)
{
	return w->error;
}

const char *slotwatch_slot_name(const struct slotwatch *w)
{
	return w->slot;
}
