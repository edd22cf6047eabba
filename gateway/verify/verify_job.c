/*
 * verify_job.c — one verify run: a thread that compares each stream's
 * tables, and the loop side that carries its frames (see verify_job.h).
 */
#include "gateway/verify/verify_job.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <libpq-fe.h>

#include "common/json.h"
#include "common/log.h"
#include "common/lsn.h"
#include "gateway/relay/relay_proto.h"
#include "gateway/stream/stream.h"
#include "gateway/verify/verify_request.h"
#include "replicator/apply_sql.h"
#include "replicator/syncstate.h"
#include "replicator/verify.h"

#define VJ_DEFAULT_WAIT_S 120
#define VJ_MAX_TARGETS 256       /* streams times destinations in one run */
#define VJ_QUERY_WAIT_S 600      /* one target query (a whole multiset table) */
#define VJ_ATTEMPTS 5            /* snapshots tried when the target passed the point */
#define VJ_LOCK_TIMEOUT "10s"
/* A new common point between chunks once the snapshots are this old. */
#define VJ_SNAPSHOT_MAX_MS 1000.0

/* A frame from the sink, copied for the thread. */
struct vj_frame {
	struct vj_frame *next;
	uint64_t job;
	uint8_t op;
	uint8_t ok;
	uint32_t seq;
	uint64_t lsn;
	uint16_t ncols;
	uint32_t nvalues;
	char *text;
	uint8_t *values;
	size_t values_len;
	size_t wire_len;
};

enum vj_call_kind {
	VJ_CALL_INFO,
	VJ_CALL_SEND,
	VJ_CALL_ARM,
};

/* A request from the thread, carried out in the loop. */
struct vj_call {
	enum vj_call_kind kind;
	const char *stream;
	const char *to;                         /* the destination site */
	const struct relay_proto_verify *head;  /* SEND */
	const char *const *values;
	const size_t *lens;
	uint64_t lsn;                           /* ARM */
	bool result;
	/* INFO: copies, owned by the thread */
	char *peer;
	char *conninfo;
	char *publication;
	bool link_up;
	bool held;
	bool syncing;
};

struct verify_job {
	struct event_base *base;
	struct streams *streams;
	verify_job_done_fn done;
	void *arg;

	/* the request, copied: each stream and destination compared */
	char **stream_names;
	char **stream_peers;
	size_t nstreams;
	char **tables;
	size_t ntables;
	double rows_per_second;
	unsigned wait_s;

	pthread_t thread;
	bool thread_started;
	int wake_fd[2];
	struct event *wake;

	pthread_mutex_t mu;
	pthread_cond_t cv;
	/* under mu */
	struct vj_call *call;
	bool call_done;
	struct vj_frame *inbox;
	struct vj_frame **inbox_tail;
	bool cancel;
	bool finished;
	uint64_t job_id;          /* the attempt's id: frames of others are dropped */
	PGcancel *cancels[2];

	/* the thread's */
	uint32_t seq;
	const char *cur_stream;
	const char *cur_peer;
	uint64_t link_bytes;
	struct verify_job_outcome out;
	struct json_out json;
	char *text;
	size_t text_len;
	FILE *text_f;
};

static uint64_t vj_next_id;

/* ---------------------------------------------------------------- thread side */

static void vj_wake(struct verify_job *j)
{
	ssize_t n;

	do
		n = write(j->wake_fd[1], "x", 1);
	while (n < 0 && errno == EINTR);
}

/* Runs a call in the loop and waits for it; false when cancelled or it failed. */
static bool vj_call(struct verify_job *j, struct vj_call *c)
{
	bool ok;

	pthread_mutex_lock(&j->mu);
	if (j->cancel) {
		pthread_mutex_unlock(&j->mu);
		return false;
	}
	j->call = c;
	j->call_done = false;
	vj_wake(j);
	while (!j->call_done && !j->cancel)
		pthread_cond_wait(&j->cv, &j->mu);
	ok = j->call_done && c->result;
	j->call = NULL;
	pthread_mutex_unlock(&j->mu);
	return ok;
}

static void vj_frame_free(struct vj_frame *f)
{
	if (!f)
		return;
	free(f->text);
	free(f->values);
	free(f);
}

/*
 * The next frame of the current attempt with op (or READY/RESULT ok 0, which
 * answer anything); NULL on timeout or cancel, with err set.
 */
static struct vj_frame *vj_wait(struct verify_job *j, uint8_t op, uint32_t seq, unsigned timeout_s,
				char *err, size_t errlen)
{
	struct timespec deadline;
	struct vj_frame *f = NULL;

	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += timeout_s;
	pthread_mutex_lock(&j->mu);
	for (;;) {
		struct vj_frame **pp = &j->inbox;

		while (*pp) {
			struct vj_frame *x = *pp;

			*pp = x->next;
			if (x->job == j->job_id && (x->op == op || !x->ok) &&
			    (op != RELAY_VERIFY_RESULT || x->seq == seq || !x->ok)) {
				f = x;
				break;
			}
			vj_frame_free(x);   /* stale: an earlier attempt's */
		}
		j->inbox_tail = &j->inbox;
		while (*j->inbox_tail)
			j->inbox_tail = &(*j->inbox_tail)->next;
		if (f || j->cancel)
			break;
		if (pthread_cond_timedwait(&j->cv, &j->mu, &deadline) == ETIMEDOUT) {
			snprintf(err, errlen, "no answer from the target's site within %u s", timeout_s);
			break;
		}
	}
	if (!f && j->cancel)
		snprintf(err, errlen, "cancelled");
	pthread_mutex_unlock(&j->mu);
	if (f)
		j->link_bytes += f->wire_len;
	return f;
}

static bool vj_send(struct verify_job *j, struct relay_proto_verify *head, const char *const *values,
		    const size_t *lens)
{
	struct vj_call c = { .kind = VJ_CALL_SEND, .stream = j->cur_stream, .to = j->cur_peer,
			     .head = head, .values = values, .lens = lens };
	size_t bytes = 96 + head->text.len + head->schema.len + head->table.len;

	head->stream = relay_proto_str(j->cur_stream);
	head->job = j->job_id;
	for (uint32_t i = 0; i < head->nvalues; i++)
		bytes += 5 + (values[i] ? lens[i] : 0);
	j->link_bytes += bytes;
	return vj_call(j, &c);
}

/* verify_remote.exec: one request, which the sink makes its statement of, in its snapshot. */
static PGresult *vj_remote_exec(void *arg, const struct verify_query *vq, int nparams,
				const char *const *params, char *err, size_t errlen)
{
	struct verify_job *j = arg;
	struct relay_proto_verify q = { .op = RELAY_VERIFY_QUERY, .ok = 1, .seq = ++j->seq };
	const char *values[3 * VERIFY_MAX_KEYS];
	size_t lens[3 * VERIFY_MAX_KEYS], nv = 0;
	struct vj_frame *f;
	struct wire_reader r;
	PGresult *res;

	if (vq->n_keys > VERIFY_MAX_KEYS || nparams < 0 || (size_t)nparams > 2 * VERIFY_MAX_KEYS) {
		snprintf(err, errlen, "request too large to send");
		return NULL;
	}
	verify_request_head(&q, vq, (size_t)nparams);
	for (size_t i = 0; i < vq->n_keys; i++)
		values[nv++] = vq->key_columns[i];
	for (int i = 0; i < nparams; i++)
		values[nv++] = params[i];
	for (size_t i = 0; i < nv; i++)
		lens[i] = values[i] ? strlen(values[i]) : 0;
	if (!vj_send(j, &q, values, lens)) {
		snprintf(err, errlen, "could not send the query to the target's site (link down?)");
		return NULL;
	}
	f = vj_wait(j, RELAY_VERIFY_RESULT, q.seq, VJ_QUERY_WAIT_S, err, errlen);
	if (!f)
		return NULL;
	if (!f->ok || f->op != RELAY_VERIFY_RESULT) {
		snprintf(err, errlen, "%s", f->text && f->text[0] ? f->text : "refused by the target's site");
		vj_frame_free(f);
		return NULL;
	}
	res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
	if (res && f->ncols) {
		PGresAttDesc *attrs = calloc(f->ncols, sizeof(*attrs));
		bool ok = attrs != NULL;

		for (int c = 0; ok && c < f->ncols; c++)
			attrs[c] = (PGresAttDesc){ .name = (char *)"?column?", .typid = 25, .typlen = -1,
						   .atttypmod = -1 };
		ok = ok && PQsetResultAttrs(res, f->ncols, attrs);
		free(attrs);
		wire_reader_init(&r, f->values, f->values_len);
		for (uint32_t i = 0; ok && i < f->nvalues; i++) {
			const char *v;
			uint32_t n;

			ok = relay_proto_verify_value(&r, &v, &n) &&
			     PQsetvalue(res, (int)(i / f->ncols), (int)(i % f->ncols), (char *)(v ? v : ""),
					v ? (int)n : -1);
		}
		if (!ok) {
			PQclear(res);
			res = NULL;
		}
	}
	vj_frame_free(f);
	if (!res)
		snprintf(err, errlen, "out of memory");
	return res;
}

static PGconn *vj_connect(struct verify_job *j, const char *conninfo, int slot, char *err, size_t errlen)
{
	/* a bounded connect: a stopping daemon joins this thread */
	static const char *const keys[] = { "connect_timeout", "dbname", "fallback_application_name", NULL };
	const char *values[] = { "10", conninfo, "strait-verify", NULL };
	PGconn *conn = PQconnectdbParams(keys, values, 1);

	if (PQstatus(conn) != CONNECTION_OK) {
		snprintf(err, errlen, "could not connect to the source database: %s", PQerrorMessage(conn));
		err[strcspn(err, "\n")] = '\0';
		PQfinish(conn);
		return NULL;
	}
	pthread_mutex_lock(&j->mu);
	j->cancels[slot] = PQgetCancel(conn);
	pthread_mutex_unlock(&j->mu);
	return conn;
}

static void vj_disconnect(struct verify_job *j, PGconn *conn, int slot)
{
	pthread_mutex_lock(&j->mu);
	if (j->cancels[slot])
		PQfreeCancel(j->cancels[slot]);
	j->cancels[slot] = NULL;
	pthread_mutex_unlock(&j->mu);
	PQfinish(conn);
}

static bool vj_exec(PGconn *conn, const char *sql, ExecStatusType want, PGresult **keep, char *err,
		    size_t errlen)
{
	PGresult *res = PQexec(conn, sql);

	if (PQresultStatus(res) != want) {
		if (err) {
			snprintf(err, errlen, "%s", PQresultErrorMessage(res));
			err[strcspn(err, "\n")] = '\0';
		}
		PQclear(res);
		return false;
	}
	if (keep)
		*keep = res;
	else
		PQclear(res);
	return true;
}

struct vj_table {
	char *schema;
	char *name;
};

static bool vj_table_wanted(const struct verify_job *j, const char *schema, const char *name)
{
	char full[256];

	if (j->ntables == 0)
		return true;
	snprintf(full, sizeof(full), "%s.%s", schema, name);
	for (size_t i = 0; i < j->ntables; i++)
		if (strcmp(j->tables[i], full) == 0 ||
		    (strchr(j->tables[i], '.') == NULL && strcmp(schema, "public") == 0 &&
		     strcmp(j->tables[i], name) == 0))
			return true;
	return false;
}

/*
 * The publication's tables this job compares, in name order. They are also
 * the locked set: only writers of a compared table can sit between their
 * commit record and their visibility in a way the comparison would see, so
 * writers of the stream's other tables never wait for a verify.
 */
static bool vj_tables(const struct verify_job *j, PGconn *conn, const char *publication,
		      struct vj_table **out, size_t *n, char *err, size_t errlen)
{
	const char *params[1] = { publication };
	PGresult *res = PQexecParams(conn,
		"SELECT schemaname, tablename FROM pg_catalog.pg_publication_tables WHERE pubname = $1 "
		"AND schemaname <> '" SYNCSTATE_SCHEMA "' ORDER BY 1, 2", 1, NULL, params, NULL, NULL, 0);
	int rows;

	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		snprintf(err, errlen, "could not list the publication's tables: %s", PQresultErrorMessage(res));
		err[strcspn(err, "\n")] = '\0';
		PQclear(res);
		return false;
	}
	rows = PQntuples(res);
	*out = calloc((size_t)rows + 1, sizeof(**out));
	*n = 0;
	for (int i = 0; *out && i < rows; i++) {
		size_t k = *n;

		if (!vj_table_wanted(j, PQgetvalue(res, i, 0), PQgetvalue(res, i, 1)))
			continue;
		(*out)[k].schema = strdup(PQgetvalue(res, i, 0));
		(*out)[k].name = strdup(PQgetvalue(res, i, 1));
		(*n)++;
		if (!(*out)[k].schema || !(*out)[k].name)
			break;
	}
	PQclear(res);
	if (!*out || (*n && (!(*out)[*n - 1].schema || !(*out)[*n - 1].name))) {
		snprintf(err, errlen, "out of memory");
		return false;
	}
	return true;
}

static void vj_tables_free(struct vj_table *t, size_t n)
{
	for (size_t i = 0; t && i < n; i++) {
		free(t[i].schema);
		free(t[i].name);
	}
	free(t);
}

/*
 * Takes the source snapshot and meets the sink at its position: lock the
 * tables, snapshot and WAL position, HOLD out before the writers go on.
 */
static bool vj_meet(struct verify_job *j, PGconn *locker, PGconn *snap, const struct vj_table *t,
		    size_t nt, uint64_t *lsn, char *err, size_t errlen)
{
	struct apply_sql_buf b;
	PGresult *res = NULL;
	struct relay_proto_verify hold = { .op = RELAY_VERIFY_HOLD, .ok = 1, .text = relay_proto_str("") };
	struct vj_call arm = { .kind = VJ_CALL_ARM, .stream = j->cur_stream, .to = j->cur_peer };
	struct vj_frame *f;
	bool locked;

	/* one round trip each for the lock and the snapshot: writers wait while it is held */
	apply_sql_buf_init(&b);
	apply_sql_buf_puts(&b, "BEGIN; SET LOCAL lock_timeout = '" VJ_LOCK_TIMEOUT "'; LOCK TABLE ");
	for (size_t i = 0; i < nt; i++) {
		if (i)
			apply_sql_buf_puts(&b, ", ");
		apply_sql_qualified(&b, t[i].schema, t[i].name);
	}
	apply_sql_buf_puts(&b, " IN SHARE MODE");
	locked = vj_exec(locker, apply_sql_buf_cstr(&b), PGRES_COMMAND_OK, NULL, err, errlen);
	apply_sql_buf_free(&b);
	if (!locked) {
		char *why = strdup(err);

		snprintf(err, errlen, "could not lock the stream's tables for a moment: %s",
			 why ? why : "out of memory");
		free(why);
		vj_exec(locker, "ROLLBACK", PGRES_COMMAND_OK, NULL, NULL, 0);
		return false;
	}
	if (!vj_exec(snap, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; "
		     "SELECT pg_catalog.pg_current_wal_insert_lsn()::text", PGRES_TUPLES_OK, &res, err,
		     errlen) ||
	    !lsn_parse(PQgetvalue(res, 0, 0), lsn)) {
		PQclear(res);
		vj_exec(locker, "ROLLBACK", PGRES_COMMAND_OK, NULL, NULL, 0);
		return false;
	}
	PQclear(res);
	pthread_mutex_lock(&j->mu);
	j->job_id = ++vj_next_id ^ ((uint64_t)time(NULL) << 24);
	pthread_mutex_unlock(&j->mu);
	hold.lsn = *lsn;
	if (!vj_send(j, &hold, NULL, NULL)) {
		snprintf(err, errlen, "could not reach the target's site (link down?)");
		vj_exec(locker, "ROLLBACK", PGRES_COMMAND_OK, NULL, NULL, 0);
		return false;
	}
	/* HOLD is queued on the link ahead of any batch committed after the lock */
	if (!vj_exec(locker, "COMMIT", PGRES_COMMAND_OK, NULL, err, errlen))
		return false;
	arm.lsn = *lsn;
	if (!vj_call(j, &arm)) {
		snprintf(err, errlen, "the stream stopped on this site");
		return false;
	}
	f = vj_wait(j, RELAY_VERIFY_READY, 0, j->wait_s, err, errlen);
	if (!f)
		return false;
	if (!f->ok) {
		snprintf(err, errlen, "target: %s", f->text ? f->text : "refused");
		vj_frame_free(f);
		return false;
	}
	vj_frame_free(f);
	return true;
}

static void vj_end(struct verify_job *j, const char *why)
{
	struct relay_proto_verify end = { .op = RELAY_VERIFY_END, .ok = why == NULL,
					  .text = relay_proto_str(why ? why : "") };

	(void)vj_send(j, &end, NULL, NULL);
}

/* What a meeting needs: the source connections and the tables to lock. */
struct vj_meeting {
	struct verify_job *j;
	PGconn *locker;
	PGconn *snap;
	const struct vj_table *tables;
	size_t ntables;
	uint64_t lsn;
	bool met;                /* a point is held at both ends now */
	unsigned points;
};

/* A new common point: a source snapshot and the sink's at its WAL position. */
static bool vj_meet_again(struct vj_meeting *m, char *err, size_t errlen)
{
	if (m->met) {
		vj_end(m->j, NULL);
		vj_exec(m->snap, "ROLLBACK", PGRES_COMMAND_OK, NULL, NULL, 0);
		m->met = false;
	}
	for (int attempt = 1; attempt <= VJ_ATTEMPTS; attempt++) {
		err[0] = '\0';
		if (vj_meet(m->j, m->locker, m->snap, m->tables, m->ntables, &m->lsn, err, errlen)) {
			m->met = true;
			m->points++;
			return true;
		}
		vj_exec(m->snap, "ROLLBACK", PGRES_COMMAND_OK, NULL, NULL, 0);
		/* only a target that went past the point is worth another snapshot */
		if (!strstr(err, "past the verify point"))
			break;
	}
	return false;
}

/* verify_options.refresh: snapshots are not kept for long (they hold back vacuum). */
static bool vj_refresh(void *arg, char *err, size_t errlen)
{
	return vj_meet_again(arg, err, errlen);
}

/* Whether the stream (info, asked for as name) can be verified now; err says why not. */
static bool vj_stream_ready(struct verify_job *j, const char *name, struct vj_call *info,
		char *err, size_t errlen)
{
	if (!vj_call(j, info)) {
		snprintf(err, errlen, "this site does not send a stream named %s (now)", name);
		return false;
	}
	fprintf(j->text_f, " (to site %s)", info->peer);
	if (info->syncing) {
		snprintf(err, errlen, "its initial sync is still running");
		return false;
	}
	if (info->held) {
		snprintf(err, errlen, "its schedule holds it now (rate 0, or outside its batch "
			 "windows): the target cannot reach a verify point; straitctl sync-now opens it");
		return false;
	}
	if (!info->link_up) {
		snprintf(err, errlen, "the link to site %s is down", info->peer);
		return false;
	}
	return true;
}

/* Compares each table of m at its verify point, adding up into out; stops at the first failure. */
static void vj_compare_tables(struct verify_job *j, struct vj_meeting *m,
		struct verify_job_stream *out, char *err, size_t errlen)
{
	struct verify_remote remote = { .exec = vj_remote_exec, .arg = j };
	struct verify_options opt = { .rows_per_second = j->rows_per_second, .refresh = vj_refresh,
				      .refresh_arg = m, .refresh_after_ms = VJ_SNAPSHOT_MAX_MS };
	size_t compared = 0;

	json_array_begin(&j->json, "tables");
	for (size_t i = 0; i < m->ntables; i++) {
		struct verify_target t = { .schema = m->tables[i].schema, .name = m->tables[i].name };
		struct verify_result r;
		bool ok;
		char *report;

		ok = verify_table_remote(m->snap, &remote, &t, &opt, &r, err, errlen);
		if (ok) {
			compared++;
			out->rows += (uint64_t)r.rows_source;
			out->differences += (uint64_t)(r.missing.total + r.extra.total + r.changed.total);
			report = verify_report_text(&r);
			fputs(report ? report : "(out of memory)\n", j->text_f);
			free(report);
			verify_result_json(&j->json, NULL, &r);
		}
		verify_result_free(&r);
		if (!ok)
			break;
	}
	json_array_end(&j->json);
	out->tables = compared;
}

/* The stream's outcome (err "" when it was compared), begun at t0, into out and the reports. */
static void vj_stream_report(struct verify_job *j, struct verify_job_stream *out,
		const char *err, const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	out->seconds = (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
	out->link_bytes = j->link_bytes;
	out->ok = err[0] == '\0';
	out->equal = out->ok && out->differences == 0;
	out->error = out->ok ? NULL : strdup(err);
	clock_gettime(CLOCK_REALTIME, &t1);
	out->finished_us = (int64_t)t1.tv_sec * 1000000 + t1.tv_nsec / 1000;
	if (!out->ok)
		fprintf(j->text_f, "%s  FAILED: %s\n", out->lsn ? "" : "\n", err);
	fprintf(j->text_f, "  %s: %" PRIu64 " table%s, %" PRIu64 " rows, %" PRIu64 " difference%s, "
		"%" PRIu64 " bytes over the link, %.2f s\n\n",
		out->ok ? (out->equal ? "equal" : "DIFFERENT") : "not compared", out->tables,
		out->tables == 1 ? "" : "s", out->rows, out->differences, out->differences == 1 ? "" : "s",
		out->link_bytes, out->seconds);
	json_bool(&j->json, "ok", out->ok);
	json_bool(&j->json, "equal", out->equal);
	json_string(&j->json, "error", out->error);
	json_uint(&j->json, "rows", out->rows);
	json_uint(&j->json, "differences", out->differences);
	json_uint(&j->json, "link_bytes", out->link_bytes);
	json_uint(&j->json, "points", out->points);
	json_double(&j->json, "seconds", out->seconds);
	json_object_end(&j->json);
}

static void vj_stream(struct verify_job *j, const char *name, const char *peer,
		struct verify_job_stream *out)
{
	struct vj_call info = { .kind = VJ_CALL_INFO, .stream = name, .to = peer };
	struct vj_meeting m = { .j = j };
	struct timespec t0;
	PGconn *locker = NULL, *snap = NULL;
	struct vj_table *tables = NULL;
	size_t ntables = 0;
	char err[1024] = "";

	clock_gettime(CLOCK_MONOTONIC, &t0);
	j->cur_stream = name;
	j->cur_peer = peer;
	j->link_bytes = 0;
	out->stream = strdup(name);
	out->to = strdup(peer);
	json_object_begin(&j->json, NULL);
	json_string(&j->json, "stream", name);
	json_string(&j->json, "to", peer);
	fprintf(j->text_f, "stream %s", name);
	if (!vj_stream_ready(j, name, &info, err, sizeof(err)))
		goto done;
	if (!(locker = vj_connect(j, info.conninfo, 0, err, sizeof(err))) ||
	    !(snap = vj_connect(j, info.conninfo, 1, err, sizeof(err))) ||
	    !vj_tables(j, snap, info.publication, &tables, &ntables, err, sizeof(err)))
		goto done;
	if (ntables == 0) {
		if (j->ntables)
			snprintf(err, sizeof(err), "none of the tables asked for is in the stream");
		else
			snprintf(err, sizeof(err), "publication %s has no tables", info.publication);
		goto done;
	}
	m.locker = locker;
	m.snap = snap;
	m.tables = tables;
	m.ntables = ntables;
	if (!vj_meet_again(&m, err, sizeof(err)))
		goto done;
	out->lsn = m.lsn;
	fprintf(j->text_f, " at " LSN_FMT "\n", LSN_ARGS(out->lsn));
	json_lsn(&j->json, "lsn", out->lsn);
	vj_compare_tables(j, &m, out, err, sizeof(err));
done:
	if (m.met)
		vj_end(j, err[0] ? err : NULL);
	out->points = m.points;
	if (snap)
		vj_disconnect(j, snap, 1);
	if (locker)
		vj_disconnect(j, locker, 0);
	vj_tables_free(tables, ntables);
	free(info.peer);
	free(info.conninfo);
	free(info.publication);
	vj_stream_report(j, out, err, &t0);
}

static void *vj_thread(void *arg)
{
	struct verify_job *j = arg;
	struct verify_job_outcome *o = &j->out;

	o->ok = true;
	o->equal = true;
	for (size_t i = 0; i < o->nstreams; i++) {
		vj_stream(j, j->stream_names[i], j->stream_peers[i], &o->streams[i]);
		o->ok &= o->streams[i].ok;
		o->equal &= o->streams[i].equal;
	}
	json_array_end(&j->json);
	json_bool(&j->json, "ok", o->ok);
	json_bool(&j->json, "equal", o->equal);
	json_object_end(&j->json);
	o->json = json_finish_line(&j->json, NULL);
	fprintf(j->text_f, "verify: %s\n", !o->ok ? "FAILED (see above)" : o->equal ? "equal" : "DIFFERENT");
	fclose(j->text_f);
	j->text_f = NULL;
	o->text = j->text;
	j->text = NULL;
	pthread_mutex_lock(&j->mu);
	j->finished = true;
	vj_wake(j);
	pthread_mutex_unlock(&j->mu);
	return NULL;
}

/* ---------------------------------------------------------------- loop side */

static void vj_do_call(struct verify_job *j, struct vj_call *c)
{
	struct streams_verify_info info;

	switch (c->kind) {
	case VJ_CALL_INFO:
		c->result = streams_verify_info(j->streams, c->stream, c->to, &info);
		if (c->result) {
			c->peer = strdup(info.peer);
			c->conninfo = strdup(info.conninfo);
			c->publication = strdup(info.publication);
			c->link_up = info.link_up;
			c->held = info.held;
			c->syncing = info.syncing;
			c->result = c->peer && c->conninfo && c->publication;
		}
		return;
	case VJ_CALL_SEND:
		c->result = streams_verify_send(j->streams, c->stream, c->to, c->head, c->values,
						c->lens);
		return;
	case VJ_CALL_ARM:
		c->result = streams_verify_arm_mark(j->streams, c->stream, c->to, j->job_id, c->lsn);
		return;
	}
}

static void vj_wake_cb(evutil_socket_t fd, short what, void *arg)
{
	struct verify_job *j = arg;
	struct vj_call *call;
	char buf[64];
	bool finished;

	(void)what;
	while (read(fd, buf, sizeof(buf)) > 0)
		;
	pthread_mutex_lock(&j->mu);
	call = j->call && !j->call_done ? j->call : NULL;
	pthread_mutex_unlock(&j->mu);
	/*
	 * Outside the lock: the thread waits for call_done and leaves the call
	 * alone, and what the call sets off in the loop may come back here
	 * (verify_job_frame takes the lock).
	 */
	if (call)
		vj_do_call(j, call);
	pthread_mutex_lock(&j->mu);
	if (call) {
		j->call_done = true;
		pthread_cond_broadcast(&j->cv);
	}
	finished = j->finished;
	pthread_mutex_unlock(&j->mu);
	if (finished && j->thread_started) {
		pthread_join(j->thread, NULL);
		j->thread_started = false;
		j->done(j->arg, &j->out);
	}
}

void verify_job_frame(struct verify_job *j, const char *stream, const char *peer,
		const struct relay_proto_verify *m)
{
	struct vj_frame *f;

	(void)stream;
	pthread_mutex_lock(&j->mu);
	/* the job's id is the attempt's, and one destination at a time is compared */
	if (m->job != j->job_id || j->finished || !j->cur_peer || strcmp(peer, j->cur_peer) != 0) {
		pthread_mutex_unlock(&j->mu);
		return;
	}
	f = calloc(1, sizeof(*f));
	if (f) {
		f->job = m->job;
		f->op = m->op;
		f->ok = m->ok;
		f->seq = m->seq;
		f->lsn = m->lsn;
		f->ncols = m->ncols;
		f->nvalues = m->nvalues;
		f->text = wire_str_dup(m->text);
		f->values = malloc(m->values_len ? m->values_len : 1);
		f->values_len = m->values_len;
		f->wire_len = 64 + m->text.len + m->values_len;
		if (!f->text || !f->values) {
			vj_frame_free(f);
			f = NULL;
		} else {
			memcpy(f->values, m->values, m->values_len);
			*j->inbox_tail = f;
			j->inbox_tail = &f->next;
			pthread_cond_broadcast(&j->cv);
		}
	}
	pthread_mutex_unlock(&j->mu);
	if (!f)
		log_error("verify: out of memory taking a frame from the target's site");
}

static char *vj_dup_name(const char *s)
{
	return strdup(s ? s : "");
}

struct verify_job *verify_job_start(struct event_base *base, struct streams *streams,
		const struct verify_job_request *rq, verify_job_done_fn done, void *arg,
		char *err, size_t errlen)
{
	struct verify_job *j = calloc(1, sizeof(*j));
	const char *names[VJ_MAX_TARGETS], *peers[VJ_MAX_TARGETS];
	size_t n = 0;

	if (!j)
		goto oom;
	j->base = base;
	j->streams = streams;
	j->done = done;
	j->arg = arg;
	j->rows_per_second = rq->rows_per_second;
	j->wait_s = rq->wait_s ? rq->wait_s : VJ_DEFAULT_WAIT_S;
	j->wake_fd[0] = j->wake_fd[1] = -1;
	j->inbox_tail = &j->inbox;
	pthread_mutex_init(&j->mu, NULL);
	pthread_cond_init(&j->cv, NULL);
	/* every destination of each stream asked for (or of every stream this site sends) */
	for (size_t i = 0; i < (rq->nstreams ? rq->nstreams : 1) && n < VJ_MAX_TARGETS; i++) {
		const char *name = rq->nstreams ? rq->streams[i] : NULL;
		size_t got = streams_sent_targets(streams, name, names + n, peers + n,
						  VJ_MAX_TARGETS - n);

		if (got == 0 && name) {
			snprintf(err, errlen, "this site does not send a stream named %s (verify runs on the "
				 "site a stream comes from: the primary)", name);
			verify_job_free(j);
			return NULL;
		}
		n += got;
	}
	if (n == 0) {
		snprintf(err, errlen, "this site sends no stream now (verify runs on the site a stream "
			 "comes from: the primary)");
		verify_job_free(j);
		return NULL;
	}
	j->stream_names = calloc(n, sizeof(char *));
	j->stream_peers = calloc(n, sizeof(char *));
	j->out.streams = calloc(n, sizeof(*j->out.streams));
	if (!j->stream_names || !j->stream_peers || !j->out.streams)
		goto oom;
	for (size_t i = 0; i < n; i++) {
		if (!(j->stream_names[i] = vj_dup_name(names[i])) ||
		    !(j->stream_peers[i] = vj_dup_name(peers[i])))
			goto oom;
		j->nstreams++;
	}
	j->out.nstreams = n;
	if (rq->ntables && !(j->tables = calloc(rq->ntables, sizeof(char *))))
		goto oom;
	for (size_t i = 0; i < rq->ntables; i++, j->ntables++)
		if (!(j->tables[i] = vj_dup_name(rq->tables[i])))
			goto oom;
	j->text_f = open_memstream(&j->text, &j->text_len);
	if (!j->text_f)
		goto oom;
	json_init(&j->json);
	json_object_begin(&j->json, NULL);
	json_array_begin(&j->json, "streams");
	if (pipe2(j->wake_fd, O_NONBLOCK | O_CLOEXEC) != 0 ||
	    !(j->wake = event_new(base, j->wake_fd[0], EV_READ | EV_PERSIST, vj_wake_cb, j)) ||
	    event_add(j->wake, NULL) != 0) {
		snprintf(err, errlen, "could not set up the verify: %s", strerror(errno));
		verify_job_free(j);
		return NULL;
	}
	if (pthread_create(&j->thread, NULL, vj_thread, j) != 0) {
		snprintf(err, errlen, "could not start the verify thread");
		verify_job_free(j);
		return NULL;
	}
	j->thread_started = true;
	return j;
oom:
	snprintf(err, errlen, "out of memory");
	verify_job_free(j);
	return NULL;
}

void verify_job_free(struct verify_job *j)
{
	if (!j)
		return;
	if (j->thread_started) {
		char buf[256];

		pthread_mutex_lock(&j->mu);
		j->cancel = true;
		for (int i = 0; i < 2; i++)
			if (j->cancels[i])
				PQcancel(j->cancels[i], buf, sizeof(buf));
		pthread_cond_broadcast(&j->cv);
		pthread_mutex_unlock(&j->mu);
		pthread_join(j->thread, NULL);
	}
	if (j->wake)
		event_free(j->wake);
	for (int i = 0; i < 2; i++)
		if (j->wake_fd[i] >= 0)
			close(j->wake_fd[i]);
	while (j->inbox) {
		struct vj_frame *f = j->inbox;

		j->inbox = f->next;
		vj_frame_free(f);
	}
	for (size_t i = 0; i < j->nstreams; i++) {
		free(j->stream_names[i]);
		free(j->stream_peers[i]);
	}
	free(j->stream_names);
	free(j->stream_peers);
	for (size_t i = 0; i < j->ntables; i++)
		free(j->tables[i]);
	free(j->tables);
	for (size_t i = 0; j->out.streams && i < j->out.nstreams; i++) {
		free(j->out.streams[i].stream);
		free(j->out.streams[i].to);
		free(j->out.streams[i].error);
	}
	free(j->out.streams);
	free(j->out.text);
	free(j->out.json);
	if (j->text_f)
		fclose(j->text_f);
	free(j->text);
	if (!j->out.json)
		json_discard(&j->json);
	pthread_mutex_destroy(&j->mu);
	pthread_cond_destroy(&j->cv);
	free(j);
}
