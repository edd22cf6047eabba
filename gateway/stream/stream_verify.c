/*
 * stream_verify.c — a stream's part in a cross-site verify (the job itself
 * runs in gateway/verify/verify_job.c at the source's site).
 *
 * Sink: HOLD sets the apply engine's hold point (the source snapshot's WAL
 * position) and opens a connection to the target. The target holds exactly
 * the transactions before the point when the apply engine stopped at a later
 * one, or when it applied everything and the source's MARK came (MARK
 * follows every batch with a transaction before the point). Then a REPEATABLE
 * READ snapshot is taken on that connection, apply goes on, and READY goes
 * back. QUERY names one request of the comparison (never SQL): the sink
 * checks it, looks its table and key columns up in the target's catalog
 * (gateway/verify/verify_request.h), builds the statement itself and runs
 * it in that snapshot; RESULT carries its rows. A request it does not make
 * is refused, logged, and changes nothing: the snapshot stays open.
 * END, a lost link, a restarted stream or any failure close the snapshot and
 * always release the hold: a verify never stops replication for long.
 *
 * Source: after HOLD went out, the MARK waits until the slot's reader has
 * handed over every transaction before the point (asking the server where
 * it is when idle) and the sender has sent everything spooled.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "common/log.h"
#include "common/lsn.h"
#include "gateway/relay/relay.h"
#include "gateway/relay/relay_proto.h"
#include "gateway/stream/spool.h"
#include "gateway/stream/stream_int.h"
#include "gateway/stream/stream_sync.h"
#include "gateway/verify/verify_request.h"
#include "replicator/apply.h"
#include "replicator/pgasync.h"
#include "replicator/slot_reader.h"

#define VERIFY_POLL_MS 20
/* Longest the sink waits, holding at the point, for the MARK and its snapshot. */
#define VERIFY_HOLD_MAX_S 120
/* Longest a sink keeps a snapshot open without hearing from the source. */
#define VERIFY_IDLE_MAX_S 600

enum sv_state {
	SV_HOLDING,              /* waiting to reach the point */
	SV_SNAPSHOT,             /* at the point: the snapshot is being taken */
	SV_READY,                /* serving queries */
	SV_LOOKUP,               /* a request's table is being looked up */
	SV_QUERY,                /* a query runs */
};

struct stream_verify {
	struct stream *st;
	uint64_t job;
	uint64_t lsn;
	enum sv_state state;
	bool marked;
	bool connected;
	uint32_t seq;            /* of the query running */
	struct pgasync *pg;
	struct event *poll;
	time_t since;            /* holding since / last request at */
	struct verify_request req;          /* the request running */
	struct verify_request_table table;  /* the last table looked up */
};

static void sv_send(struct stream *st, uint64_t job, enum relay_proto_verify_op op, bool ok,
		    uint32_t seq, uint64_t lsn, uint32_t generation, const char *text)
{
	struct relay_proto_verify m = {
		.stream = relay_proto_str(st->name), .job = job, .op = (uint8_t)op, .ok = ok,
		.seq = seq, .lsn = lsn, .generation = generation, .text = relay_proto_str(text ? text : ""),
	};

	wire_writer_reset(&st->owner->out);
	if (!relay_proto_write_verify_head(&st->owner->out, &m) || !stream_send(st, FRAME_VERIFY, 0))
		log_warning("stream \"%s\": could not send a verify message to \"%s\"", st->name, st->peer);
}

/* ---------------------------------------------------------------- sink */

static void sv_free(struct stream_verify *v)
{
	if (!v)
		return;
	if (v->st->sink.apply)
		apply_hold_release(v->st->sink.apply);
	if (v->poll)
		event_free(v->poll);
	if (v->pg)
		pgasync_free(v->pg);
	verify_request_free(&v->req);
	verify_request_table_free(&v->table);
	v->st->sink.verify = NULL;
	free(v);
}

/* Ends the job here and tells the source why (a READY that says no). */
static void sv_fail(struct stream_verify *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sv_fail(struct stream_verify *v, const char *fmt, ...)
{
	char why[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	log_warning("stream \"%s\": verify %" PRIu64 ": %s", v->st->name, v->job, why);
	sv_send(v->st, v->job, v->state >= SV_LOOKUP ? RELAY_VERIFY_RESULT : RELAY_VERIFY_READY, false,
		v->seq, 0, 0, why);
	sv_free(v);
}

static void sv_check(struct stream_verify *v)
{
	struct stream *st = v->st;
	enum apply_hold hold;

	if (v->state != SV_HOLDING)
		return;
	if (!st->sink.apply_ready || !st->sink.apply) {
		sv_fail(v, "the apply stopped: %s", st->last_error[0] ? st->last_error : "not ready");
		return;
	}
	if (time(NULL) - v->since > VERIFY_HOLD_MAX_S) {
		sv_fail(v, "the target did not reach the verify point within %d s (is the stream held "
			"by its schedule?)", VERIFY_HOLD_MAX_S);
		return;
	}
	hold = apply_hold_state(st->sink.apply);
	if (!v->connected || hold == APPLY_HOLD_MOVING || (hold == APPLY_HOLD_DRAINED && !v->marked))
		return;
	if (!pgasync_send(v->pg, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SELECT 1")) {
		sv_fail(v, "could not take a snapshot of the target: %s", pgasync_error(v->pg));
		return;
	}
	v->state = SV_SNAPSHOT;
}

static void sv_poll_cb(evutil_socket_t fd, short what, void *arg)
{
	struct stream_verify *v = arg;

	(void)fd;
	(void)what;
	if (v->state == SV_HOLDING) {
		sv_check(v);
	} else if (time(NULL) - v->since > VERIFY_IDLE_MAX_S) {
		sv_fail(v, "no request from the source for %d s", VERIFY_IDLE_MAX_S);
	}
}

static void sv_connected(void *arg)
{
	struct stream_verify *v = arg;

	v->connected = true;
	sv_check(v);
}

static void sv_failed(void *arg, const char *err)
{
	struct stream_verify *v = arg;

	sv_fail(v, "target connection: %s", err);
}

/* A query's rows as a RESULT frame. */
static void sv_send_rows(struct stream_verify *v, const PGresult *res)
{
	struct stream *st = v->st;
	int rows = PQntuples(res), cols = PQnfields(res);
	struct relay_proto_verify m = {
		.stream = relay_proto_str(st->name), .job = v->job, .op = RELAY_VERIFY_RESULT, .ok = 1,
		.seq = v->seq, .text = relay_proto_str(""), .ncols = (uint16_t)cols,
		.nvalues = (uint32_t)rows * (uint32_t)cols,
	};
	struct wire_writer *w = &st->owner->out;

	if (cols > UINT16_MAX) {
		sv_fail(v, "a result of %d columns", cols);
		return;
	}
	wire_writer_reset(w);
	if (!relay_proto_write_verify_head(w, &m))
		goto too_big;
	for (int r = 0; r < rows; r++)
		for (int c = 0; c < cols; c++)
			if (!relay_proto_put_verify_value(w, PQgetisnull(res, r, c) ? NULL : PQgetvalue(res, r, c),
							  (size_t)PQgetlength(res, r, c)))
				goto too_big;
	if (!stream_send(st, FRAME_VERIFY, 0))
		log_warning("stream \"%s\": could not send a verify result to \"%s\"", st->name, st->peer);
	return;
too_big:
	sv_fail(v, "a result of %d rows does not fit in one frame", rows);
}

static void sv_looked_up(struct stream_verify *v, const PGresult *res);

static void sv_input(void *arg)
{
	struct stream_verify *v = arg;
	PGresult *last = NULL;
	enum pgasync_step step = pgasync_results(v->pg, &last);

	if (step == PGASYNC_WAIT || step == PGASYNC_COPY) {
		PQclear(last);
		if (step == PGASYNC_COPY)
			sv_fail(v, "unexpected COPY from the target");
		return;
	}
	if (v->state == SV_SNAPSHOT) {
		PQclear(last);
		if (step == PGASYNC_ERROR) {
			sv_fail(v, "could not take a snapshot of the target: %s", pgasync_statement_error(v->pg));
			return;
		}
		apply_hold_release(v->st->sink.apply);
		v->state = SV_READY;
		v->since = time(NULL);
		log_info("stream \"%s\": verify %" PRIu64 ": target snapshot taken at " LSN_FMT, v->st->name,
			 v->job, LSN_ARGS(v->lsn));
		sv_send(v->st, v->job, RELAY_VERIFY_READY, true, 0, v->st->sink.ack_lsn, 0, "");
		return;
	}
	if (v->state == SV_LOOKUP) {
		sv_looked_up(v, step == PGASYNC_ERROR ? NULL : last);
		PQclear(last);
		return;
	}
	if (v->state != SV_QUERY) {
		PQclear(last);
		return;
	}
	v->state = SV_READY;
	v->since = time(NULL);
	if (step == PGASYNC_ERROR || !last)
		sv_send(v->st, v->job, RELAY_VERIFY_RESULT, false, v->seq, 0, 0,
			step == PGASYNC_ERROR ? pgasync_statement_error(v->pg) : "no result");
	else
		sv_send_rows(v, last);
	PQclear(last);
	/* a failed statement aborts the snapshot's transaction: nothing more can run in it */
	if (step == PGASYNC_ERROR && v->st->sink.verify == v)
		sv_free(v);
}

static void sv_hold(struct stream *st, const struct relay_proto_verify *m)
{
	static const char *const keys[] = { "fallback_application_name", NULL };
	static const char *const values[] = { "strait-verify", NULL };
	static const struct pgasync_callbacks cb = {
		.connected = sv_connected, .input = sv_input, .failed = sv_failed,
	};
	struct stream_verify *v;
	char what[160];

	if (st->sink.verify)
		sv_free(st->sink.verify);   /* a new job replaces an abandoned one */
	if (!st->sink.apply || !st->sink.apply_ready) {
		sv_send(st, m->job, RELAY_VERIFY_READY, false, 0, 0, 0, "the apply is not running here");
		return;
	}
	if (st->sync && streamsync_in_progress(st->sync)) {
		sv_send(st, m->job, RELAY_VERIFY_READY, false, 0, 0, 0, "the initial sync is still running");
		return;
	}
	if (!apply_hold_at(st->sink.apply, m->lsn)) {
		sv_send(st, m->job, RELAY_VERIFY_READY, false, 0, 0, 0,
			"the target applied past the verify point already");
		return;
	}
	v = calloc(1, sizeof(*v));
	if (!v)
		goto oom;
	v->st = st;
	v->job = m->job;
	v->lsn = m->lsn;
	v->since = time(NULL);
	st->sink.verify = v;
	snprintf(what, sizeof(what), "stream \"%s\": verify", st->name);
	v->poll = event_new(st->owner->base, -1, EV_PERSIST, sv_poll_cb, v);
	if (!v->poll || !(v->pg = pgasync_new(st->owner->base, st->sink.sink_conninfo, keys, values, what, &cb, v)))
		goto oom;
	event_add(v->poll, &(struct timeval){ 0, VERIFY_POLL_MS * 1000 });
	log_info("stream \"%s\": verify %" PRIu64 ": holding apply at " LSN_FMT " for a snapshot",
		 st->name, m->job, LSN_ARGS(m->lsn));
	return;
oom:
	if (st->sink.verify)
		sv_free(st->sink.verify);
	else
		apply_hold_release(st->sink.apply);
	sv_send(st, m->job, RELAY_VERIFY_READY, false, 0, 0, 0, "out of memory");
}

/* A request this site does not make: refused and logged, the snapshot stays. */
static void sv_refuse(struct stream_verify *v, uint32_t seq, const char *why)
{
	log_warning("stream \"%s\": verify %" PRIu64 ": refused a request from \"%s\": %s", v->st->name,
		    v->job, v->st->peer, why);
	sv_send(v->st, v->job, RELAY_VERIFY_RESULT, false, seq, 0, 0, why);
}

/* Runs sql (built here) with the request's bound values. */
static void sv_run(struct stream_verify *v, const char *sql, size_t nparams, const char *const *params)
{
	PGconn *conn = pgasync_conn(v->pg);

	if (conn && PQsendQueryParams(conn, sql, (int)nparams, NULL, params, NULL, NULL, 0) &&
	    pgasync_flush(v->pg) >= 0)
		return;
	sv_fail(v, "could not run a query on the target: %s", pgasync_error(v->pg));
}

/* The request's statement, from the table as this site's catalog has it. */
static void sv_run_request(struct stream_verify *v)
{
	char why[256];
	char *sql = verify_request_sql(&v->req, &v->table, why, sizeof(why));

	if (!sql) {
		v->state = SV_READY;
		sv_refuse(v, v->seq, why[0] ? why : "out of memory");
		return;
	}
	v->state = SV_QUERY;
	sv_run(v, sql, v->req.nparams, (const char *const *)v->req.params);
	free(sql);
}

/* The catalog lookup's answer (NULL: it failed, which ends the snapshot). */
static void sv_looked_up(struct stream_verify *v, const PGresult *res)
{
	char why[256];

	if (!res) {
		sv_fail(v, "could not look a table up on the target: %s", pgasync_statement_error(v->pg));
		return;
	}
	if (!verify_request_table_set(&v->table, &v->req, res, why, sizeof(why))) {
		v->state = SV_READY;
		sv_refuse(v, v->seq, why);
		return;
	}
	sv_run_request(v);
}

static void sv_query(struct stream_verify *v, const struct relay_proto_verify *m)
{
	const char *params[VERIFY_MAX_KEYS + 2];
	char why[256];
	size_t n;
	char *sql;

	v->seq = m->seq;
	v->since = time(NULL);
	if (v->state != SV_READY) {
		sv_send(v->st, v->job, RELAY_VERIFY_RESULT, false, m->seq, 0, 0, "no snapshot is open");
		return;
	}
	verify_request_free(&v->req);
	if (!verify_request_read(m, v->st->cs, &v->req, why, sizeof(why))) {
		sv_refuse(v, m->seq, why);
		return;
	}
	if (v->req.q.kind == VERIFY_Q_SETTINGS || verify_request_table_matches(&v->table, &v->req)) {
		sv_run_request(v);
		return;
	}
	n = verify_request_lookup_params(&v->req, params, sizeof(params) / sizeof(params[0]));
	sql = verify_request_lookup_sql(&v->req);
	if (!sql) {
		sv_fail(v, "out of memory");
		return;
	}
	v->state = SV_LOOKUP;
	sv_run(v, sql, n, params);
	free(sql);
}

static void stream_verify_sink_frame(struct stream *st, const struct relay_proto_verify *m)
{
	struct stream_verify *v = st->sink.verify;

	if (m->op == RELAY_VERIFY_HOLD) {
		sv_hold(st, m);
		return;
	}
	if (!v || v->job != m->job) {
		if (m->op == RELAY_VERIFY_QUERY)
			sv_send(st, m->job, RELAY_VERIFY_RESULT, false, m->seq, 0, 0, "no such verify here");
		return;
	}
	switch (m->op) {
	case RELAY_VERIFY_MARK:
		if (m->generation != st->sink.want_generation) {
			sv_fail(v, "the stream restarted during the verify");
			return;
		}
		v->marked = true;
		sv_check(v);
		return;
	case RELAY_VERIFY_QUERY:
		sv_query(v, m);
		return;
	case RELAY_VERIFY_END:
		log_info("stream \"%s\": verify %" PRIu64 " ended", st->name, v->job);
		sv_free(v);
		return;
	default:
		return;
	}
}

/* Apply progress: the point may be reached now. */
void stream_verify_sink_progress(struct stream *st)
{
	if (st->sink.verify)
		sv_check(st->sink.verify);
}

void stream_verify_sink_stop(struct stream *st, const char *why)
{
	if (st->sink.verify)
		sv_fail(st->sink.verify, "%s", why);
}

/* ---------------------------------------------------------------- source */

static void mark_stop(struct stream *st)
{
	st->mark.mark_armed = false;
	if (st->mark.mark_timer)
		event_del(st->mark.mark_timer);
}

void stream_verify_mark_check(struct stream *st, bool ask)
{
	if (!st->mark.mark_armed)
		return;
	if (!st->mark.mark_captured) {
		uint64_t before = st->reader->source ? source_handed_over_before(st->reader->source) : 0;

		if (before < st->mark.mark_lsn) {
			if (ask && st->reader->source && st->reader->reading)
				source_request_position(st->reader->source);
			return;
		}
		st->mark.mark_captured = true;
	}
	/* everything spooled went to the sink's current resume */
	if (!st->sender.sending || !st->sender.cursor || spool_cursor_unread_bytes(st->sender.cursor) != 0 ||
	    !relay_is_up(st->owner->relay, st->peer))
		return;
	sv_send(st, st->mark.mark_job, RELAY_VERIFY_MARK, true, 0, st->mark.mark_lsn, st->sender.generation, "");
	mark_stop(st);
}

static void mark_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	stream_verify_mark_check(arg, true);
}

bool stream_verify_arm_mark(struct stream *st, uint64_t job, uint64_t lsn)
{
	if (!st->mark.mark_timer &&
	    !(st->mark.mark_timer = event_new(st->owner->base, -1, EV_PERSIST, mark_timer_cb, st)))
		return false;
	st->mark.mark_job = job;
	st->mark.mark_lsn = lsn;
	st->mark.mark_armed = true;
	st->mark.mark_captured = false;
	event_add(st->mark.mark_timer, &(struct timeval){ 0, 100 * 1000 });
	stream_verify_mark_check(st, true);
	return true;
}

void stream_verify_source_fini(struct stream *st)
{
	mark_stop(st);
	if (st->mark.mark_timer)
		event_free(st->mark.mark_timer);
	st->mark.mark_timer = NULL;
}

/* ---------------------------------------------------------------- frames */

void stream_verify_frame(struct stream *st, const struct relay_proto_verify *m)
{
	if (st->role == STREAM_ROLE_SINK)
		stream_verify_sink_frame(st, m);
	else if (st->role == STREAM_ROLE_SOURCE && st->owner->verify_frame)
		st->owner->verify_frame(st->owner->verify_arg, st->name, st->peer, m);
}
