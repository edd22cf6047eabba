/*
 * failover.c — the failover object, its operation log, the asynchronous
 * building blocks every operation is made of, promotion, failover and
 * stepping down (see failover.h). The other operations live beside it:
 * switchover.c, rejoin.c, fence_proto.c (the frames), readiness.c (the dry
 * run), durations.c (role-durations) and failover_cmd.c (the commands'
 * arguments); failover_int.h is what they share.
 *
 * NOTES
 * One operation at a time per site. An operation is a short chain of
 * asynchronous steps (fence or unfence through replicator/fence.h, SQL
 * statements on one pgquery connection to this site's database, a wait for
 * the streams to drain, a PROMOTE exchange with the peer); each step that
 * completes adds one line to the operation's log, which is the command's
 * answer. A step that fails ends the operation with the reason, after
 * undoing what must not stay half done (a switchover that cannot drain or
 * whose peer refuses unfences the primary again).
 *
 * Promotion (failover, or the target's half of a switchover) creates each
 * stream's publication and slot before the site takes the primary role, so
 * the slot's consistent point is where the stream starts: every write the new
 * primary takes is after it. In a switchover both databases are equal there,
 * so the old primary only points its replication origin at that LSN and the
 * stream runs the other way without a copy.
 *
 * Statements that change this site's database run with
 * default_transaction_read_only off in their own session: a fenced database
 * stays read-only for applications, not for strait.
 */
#include "gateway/cluster/failover_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/log.h"
#include "common/lsn.h"
#include "config/config.h"
#include "gateway/daemon/control.h"
#include "gateway/relay/relay.h"
#include "gateway/stream/stream.h"
#include "replicator/apply.h"
#include "replicator/fence.h"
#include "replicator/lostxacts.h"
#include "replicator/pgquery.h"
#include "replicator/slot_reader.h"

/* ------------------------------------------------------------ pure parts */

size_t failover_stream_ends(size_t from, const size_t *to, size_t n_to, size_t self,
		enum role_kind role, size_t primary, size_t *src, size_t *dst)
{
	size_t n = 0, ends = 1;
	bool mine = from == self, primary_end = primary == from;

	for (size_t i = 0; i < n_to; i++) {
		mine = mine || to[i] == self;
		primary_end = primary_end || to[i] == primary;
		ends += to[i] != from;
	}
	if (!mine || role == ROLE_FENCED)
		return 0;
	if (role == ROLE_PRIMARY) {
		*src = self;
		if (from != self)
			dst[n++] = from;
		for (size_t i = 0; i < n_to; i++)
			if (to[i] != self && to[i] != from)
				dst[n++] = to[i];
		return n;
	}
	if (primary_end && primary != self) {
		*src = primary;
	} else if (from != self) {
		*src = from;
	} else if (ends == 2) {
		for (size_t i = 0; i < n_to; i++)
			if (to[i] != self)
				*src = to[i];
	} else {
		return 0;
	}
	dst[0] = self;
	return 1;
}

void fo_time_text(int64_t us, char *buf, size_t len)
{
	time_t secs = (time_t)(us / 1000000);
	struct tm tm;

	if (us <= 0 || !gmtime_r(&secs, &tm)) {
		snprintf(buf, len, "unknown");
		return;
	}
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

bool failover_gate(const struct failover_lag *lag, uint64_t max_bytes, uint64_t max_ms,
		bool force, char *msg, size_t msglen)
{
	char when[64];
	bool over_bytes = lag->lag_bytes > max_bytes;
	bool over_secs = lag->lag_seconds * 1000.0 > (double)max_ms;
	bool over = over_bytes || over_secs;

	fo_time_text(lag->last_applied_time_us, when, sizeof(when));
	snprintf(msg, msglen,
		 "%s: last known lag %" PRIu64 " bytes, %.1f s (limits %" PRIu64 " bytes, %.1f s); "
		 "last applied commit %s%s",
		 !over ? "lag within the limits" : force ? "lag over the limits, forced" :
		 "refused: lag over the limits", lag->lag_bytes, lag->lag_seconds, max_bytes,
		 (double)max_ms / 1000.0, when,
		 over ? "; that much would be lost" : "");
	return !over || force;
}

/* ------------------------------------------------------------- the log */

static void fo_append(struct failover *f, const char *line)
{
	size_t n;
	char *grown;

	n = strlen(line);
	grown = realloc(f->log, f->log_len + n + 2);
	if (!grown) {
		f->log_failed = true;
		return;
	}
	f->log = grown;
	memcpy(f->log + f->log_len, line, n);
	f->log_len += n;
	f->log[f->log_len++] = '\n';
	f->log[f->log_len] = '\0';
}

void fo_step(struct failover *f, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	log_notice("%s", line);
	fo_append(f, line);
}

/* Adds a multi-line log (fence's) with an indent. */
void fo_step_lines(struct failover *f, const char *text)
{
	const char *p = text;

	while (p && *p) {
		const char *nl = strchr(p, '\n');
		int n = nl ? (int)(nl - p) : (int)strlen(p);

		if (n > 0) {
			char line[1024];

			/* logged already by the module that did it */
			snprintf(line, sizeof(line), "  %.*s", n, p);
			fo_append(f, line);
		}
		p = nl ? nl + 1 : NULL;
	}
}

double fo_elapsed(const struct failover *f)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - f->started.tv_sec) +
	       (double)(now.tv_nsec - f->started.tv_nsec) / 1e9;
}

int64_t fo_now_ms(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

static void fo_clear_steps(struct failover *f)
{
	for (size_t i = 0; i < f->n_steps; i++) {
		free(f->steps[i].sql);
		free(f->steps[i].what);
	}
	free(f->steps);
	f->steps = NULL;
	f->n_steps = f->step_i = 0;
}

void fo_begin(struct failover *f, enum fo_op op, struct control_request *req,
		const char *peer)
{
	f->op = op;
	f->req = req;
	snprintf(f->peer, sizeof(f->peer), "%s", peer ? peer : "");
	free(f->log);
	f->log = NULL;
	f->log_len = 0;
	f->log_failed = false;
	f->answer_peer = false;
	f->unfence_on_fail = false;
	f->force = false;
	f->streams_stopped = false;
	f->n_slots = 0;
	f->claimed = false;
	f->n_claim_wait = 0;
	f->lv_n = 0;
	f->n_follow = 0;
	f->catching_up = false;
	clock_gettime(CLOCK_MONOTONIC, &f->started);
}

void fo_end(struct failover *f, bool ok, const char *fmt, ...)
{
	enum fo_op ended = f->op;
	char last[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(last, sizeof(last), fmt, ap);
	va_end(ap);
	if (ok)
		fo_step(f, "%s", last);
	else
		log_error("%s", last);
	if (f->req) {
		char *body = NULL;

		if (asprintf(&body, "%s%s%s%s", f->log ? f->log : "", ok ? "" : "error: ",
			     ok ? "" : last, ok ? "" : "\n") < 0)
			body = NULL;
		control_reply(f->req, ok, body ? body : last);
		free(body);
		f->req = NULL;
	}
	fo_clear_steps(f);
	event_del(f->timer);
	/* a level or a follow that ends early: its catch-up ends too, untold */
	if ((f->op == FO_PROMOTE || f->op == FO_FOLLOW) && f->ops.streams(f->arg))
		streams_catchup_cancel(f->ops.streams(f->arg));
	/* a rejoin's reader (fo_end is never called from inside a running peek) */
	lostxacts_peek_free(f->peek);
	f->peek = NULL;
	lostxacts_free(f->lx);
	f->lx = NULL;
	/* a dry run ended before its database answered (never inside that query's callback) */
	if (f->q_dry && pgquery_busy(f->q_dry)) {
		pgquery_free(f->q_dry);
		f->q_dry = NULL;
	}
	f->op = FO_NONE;
	if (ended == FO_STEP_DOWN)
		fo_after_step_down(f);
}

/* -------------------------------------------------- the async building blocks */

void fo_arm(struct failover *f, unsigned ms, void (*fn)(struct failover *f))
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	f->timer_fn = fn;
	event_add(f->timer, &tv);
}

static void fo_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct failover *f = arg;

	(void)fd;
	(void)what;
	if (f->timer_fn)
		f->timer_fn(f);
}

static void fo_fence_done(void *arg, const struct fence_result *res)
{
	struct failover *f = arg;
	void (*next)(struct failover *f) = f->fence_next;
	bool ok = res->ok;
	char why[512];

	fo_step_lines(f, res->log);
	snprintf(why, sizeof(why), "%s", res->error ? res->error : "failed");
	/* res dies with the fence */
	fence_free(f->fence);
	f->fence = NULL;
	if (!ok) {
		fo_fail(f, why);
		return;
	}
	next(f);
}

void fo_fence(struct failover *f, enum fence_op op, void (*next)(struct failover *f))
{
	fo_step(f, "%s the database of site %s", op == FENCE_OP_FENCE ? "fencing" : "unfencing",
		f->cfg->sites[f->self].name);
	f->fence_next = next;
	/* the fence ends every session not named strait*, ours among them: reconnect after */
	if (f->q && !pgquery_busy(f->q)) {
		pgquery_free(f->q);
		f->q = NULL;
	}
	f->fence = fence_start(f->base, f->cfg->sites[f->self].database, op, 0, fo_fence_done, f);
	if (!f->fence)
		fo_fail(f, "out of memory starting the fence");
}

static void fo_sql_cb(void *arg, const PGresult *res, const char *err)
{
	struct failover *f = arg;
	struct fo_sql *s = &f->steps[f->step_i];

	if (err) {
		if (s->retries-- > 0) {
			fo_arm(f, FO_RETRY_MS, fo_steps_run);
			return;
		}
		{
			char why[1024];

			snprintf(why, sizeof(why), "failed at the step \"%s\": %s", s->what, err);
			fo_fail(f, why);
		}
		return;
	}
	if (s->result)
		s->result(f, res);
	if (f->op == FO_NONE)
		return;          /* the result ended the operation */
	fo_step(f, "%s", s->what);
	f->step_i++;
	fo_steps_run(f);
}

void fo_steps_run(struct failover *f)
{
	if (f->step_i == f->n_steps) {
		void (*next)(struct failover *f) = f->steps_next;

		fo_clear_steps(f);
		next(f);
		return;
	}
	if (!f->q)
		f->q = pgquery_new(f->base, f->cfg->sites[f->self].database, "failover");
	if (!f->q || !pgquery_run(f->q, f->steps[f->step_i].sql, fo_sql_cb, f))
		fo_fail(f, "could not send a statement to this site's database");
}

bool fo_add_sql(struct failover *f, int retries,
		void (*result)(struct failover *f, const PGresult *res), const char *what,
		const char *fmt, ...)
{
	struct fo_sql *grown = realloc(f->steps, (f->n_steps + 1) * sizeof(*grown));
	struct fo_sql *s;
	va_list ap;
	int n;

	if (!grown)
		return false;
	f->steps = grown;
	s = &f->steps[f->n_steps];
	/* one retry at least: a statement on a connection that was ended reconnects */
	*s = (struct fo_sql){ .retries = retries > 0 ? retries : 1, .result = result,
			      .what = strdup(what) };
	va_start(ap, fmt);
	n = vasprintf(&s->sql, fmt, ap);
	va_end(ap);
	if (n < 0 || !s->what) {
		free(s->what);
		if (n >= 0)
			free(s->sql);
		return false;
	}
	f->n_steps++;
	return true;
}

/* SQL quoting for names from the config: "ident", 'literal'. */
char *fo_quote(const char *s, char q)
{
	size_t n = strlen(s), k = 0;
	char *out = malloc(2 * n + 3);

	if (!out)
		return NULL;
	out[k++] = q;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == q)
			out[k++] = q;
		out[k++] = s[i];
	}
	out[k++] = q;
	out[k] = '\0';
	return out;
}

/* "schema.table" or "table", each part quoted. */
static bool fo_append_table(FILE *out, const char *name)
{
	const char *dot = strchr(name, '.');
	char *part;

	if (dot) {
		char *schema = strndup(name, (size_t)(dot - name));

		part = schema ? fo_quote(schema, '"') : NULL;
		free(schema);
		if (!part)
			return false;
		fprintf(out, "%s.", part);
		free(part);
		name = dot + 1;
	}
	part = fo_quote(name, '"');
	if (!part)
		return false;
	fprintf(out, "%s", part);
	free(part);
	return true;
}

/* -------------------------------------------------------------- promotion */

const char fo_rw[] = "SET default_transaction_read_only = off; ";

/* The streams between this site and peer: both are ends of it (whichever way it runs now). */
bool fo_stream_with(const struct failover *f, const struct config_stream *cs, size_t peer)
{
	return peer != f->self && config_stream_end(cs, f->self) && config_stream_end(cs, peer);
}

bool fo_many_sites(const struct failover *f)
{
	for (size_t i = 0; i < f->cfg->n_streams; i++)
		if (config_stream_end(&f->cfg->streams[i], f->self) && f->cfg->streams[i].n_to > 1)
			return true;
	return false;
}

size_t fo_stream_peers(const struct failover *f, size_t *sites, size_t max)
{
	size_t n = 0;

	for (size_t p = 0; p < f->cfg->n_sites && n < max; p++) {
		for (size_t i = 0; i < f->cfg->n_streams; i++) {
			if (fo_stream_with(f, &f->cfg->streams[i], p)) {
				sites[n++] = p;
				break;
			}
		}
	}
	return n;
}

int fo_site_index(const struct failover *f, const char *name)
{
	for (size_t i = 0; i < f->cfg->n_sites; i++)
		if (strcmp(f->cfg->sites[i].name, name) == 0)
			return (int)i;
	return -1;
}

static void fo_seq_result(struct failover *f, const PGresult *res)
{
	if (PQntuples(res) == 1 && PQnfields(res) == 2 && *PQgetvalue(res, 0, 1))
		fo_step(f, "WARNING: sequences not raised (this role lacks SELECT or UPDATE on them): %s",
			PQgetvalue(res, 0, 1));
}

static void fo_slot_result(struct failover *f, const PGresult *res)
{
	uint64_t lsn;

	if (PQntuples(res) != 1 || PQnfields(res) < 2 || !lsn_parse(PQgetvalue(res, 0, 1), &lsn)) {
		fo_fail(f, "could not read the created slot's LSN");
		return;
	}
	if (f->n_slots < FO_MAX_STREAMS) {
		struct fo_slot *s = &f->slots[f->n_slots++];
		const char *name = PQgetvalue(res, 0, 0);

		/* the first column is the stream's name */
		snprintf(s->stream, sizeof(s->stream), "%s", name);
		s->lsn = lsn;
		fo_step(f, "stream %s starts at " LSN_FMT " on site %s", s->stream, LSN_ARGS(lsn),
			f->cfg->sites[f->self].name);
	}
}

static bool fo_add_stream_setup(struct failover *f, const struct config_stream *cs)
{
	char slot[128], what[256], *pub = fo_quote(cs->publication, '"'),
	     *publit = fo_quote(cs->publication, '\''), *slotlit = NULL, *namelit = NULL,
	     *create = NULL;
	size_t create_len = 0;
	FILE *out = NULL;
	bool ok = false;

	source_slot_name(cs->name, slot, sizeof(slot));
	slotlit = fo_quote(slot, '\'');
	namelit = fo_quote(cs->name, '\'');
	out = open_memstream(&create, &create_len);
	if (!pub || !publit || !slotlit || !namelit || !out)
		goto out;
	fprintf(out, "CREATE PUBLICATION %s FOR ", pub);
	if (cs->n_tables == 0)
		fprintf(out, "ALL TABLES");
	else
		fprintf(out, "TABLE ");
	for (size_t i = 0; i < cs->n_tables; i++) {
		if (i > 0)
			fprintf(out, ", ");
		if (!fo_append_table(out, cs->tables[i]))
			goto out;
	}
	if (fclose(out) != 0) {
		out = NULL;
		goto out;
	}
	out = NULL;
	snprintf(what, sizeof(what), "publication %s is in place", cs->publication);
	if (!fo_add_sql(f, 0, NULL, what,
			"%sDO $strait$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_publication "
			"WHERE pubname = %s) THEN %s; END IF; END$strait$", fo_rw, publit, create))
		goto out;
	snprintf(what, sizeof(what), "dropped an old slot %s, if any", slot);
	if (!fo_add_sql(f, 0, NULL, what,
			"SELECT pg_catalog.pg_drop_replication_slot(slot_name) "
			"FROM pg_catalog.pg_replication_slots WHERE slot_name = %s AND NOT active",
			slotlit))
		goto out;
	snprintf(what, sizeof(what), "created slot %s", slot);
	if (!fo_add_sql(f, 0, fo_slot_result, what,
			"SELECT %s, lsn::text FROM pg_catalog.pg_create_logical_replication_slot(%s, "
			"'pgoutput')", namelit, slotlit))
		goto out;
	ok = true;
out:
	if (out)
		fclose(out);
	free(create);
	free(pub);
	free(publit);
	free(slotlit);
	free(namelit);
	return ok;
}

static void fo_promoted(struct failover *f);

bool fo_add_end_apply_sessions(struct failover *f)
{
	/* a closed apply connection whose backend waits on a lock lingers, holding its xid */
	return fo_add_sql(f, 0, NULL, "ended this site's leftover apply sessions, if any",
			  "SELECT count(" FENCE_TERMINATE_WAIT("a.pid") ") FROM "
			  "pg_catalog.pg_stat_activity a WHERE application_name = 'strait-apply' "
			  "AND pid <> pg_catalog.pg_backend_pid()");
}

bool fo_add_origin_at(struct failover *f, const char *stream, uint64_t lsn)
{
	char slot[160], what[256], text[32], *slotlit;
	bool ok;

	/* the apply's origin: the stream's name as written, unlike its slot's */
	apply_origin_name(stream, slot, sizeof(slot));
	slotlit = fo_quote(slot, '\'');
	lsn_format(text, lsn);
	snprintf(what, sizeof(what), "origin %s set to %s (stream %s resumes there)", slot, text,
		 stream);
	/*
	 * The parallel apply workers' origins hold positions of the old source:
	 * they go, or the highest of them would be taken for the resume point.
	 */
	ok = slotlit &&
	     fo_add_sql(f, 0, NULL, what,
			"%sSELECT pg_catalog.pg_replication_origin_create(%s) WHERE NOT EXISTS "
			"(SELECT 1 FROM pg_catalog.pg_replication_origin WHERE roname = %s); "
			"SELECT pg_catalog.pg_replication_origin_advance(%s, '%s'); "
			"SELECT count(pg_catalog.pg_replication_origin_drop(roname)) FROM "
			"pg_catalog.pg_replication_origin WHERE "
			"pg_catalog.starts_with(roname, %s || ':apply:')", fo_rw,
			slotlit, slotlit, slotlit, text, slotlit);
	free(slotlit);
	return ok;
}

static void fo_promote_sql(struct failover *f)
{
	int peer = fo_site_index(f, f->peer);
	char what[128];

	if (!fo_add_end_apply_sessions(f)) {
		fo_fail(f, "out of memory");
		return;
	}
	snprintf(what, sizeof(what), "raised every sequence by %" PRIu64 " (sequence_margin) that "
		 "this role may read and update", f->cfg->failover.sequence_margin);
	/* a role without superuser may lack a sequence: skipped and named, not a failed promotion;
	 * joined by name, not cast to regclass (a cast needs USAGE on the schema) */
	if (!fo_add_sql(f, 0, fo_seq_result, what,
			"%sSELECT count(CASE WHEN m.ok THEN pg_catalog.setval(c.oid::pg_catalog.regclass, "
			"CASE WHEN increment_by > 0 THEN "
			"LEAST(max_value, COALESCE(last_value, start_value) + increment_by * %" PRIu64 ") "
			"ELSE GREATEST(min_value, COALESCE(last_value, start_value) + increment_by * %"
			PRIu64 ") END) END), coalesce(string_agg(CASE WHEN NOT m.ok THEN "
			"pg_catalog.format('%%I.%%I', s.schemaname, s.sequencename) END, ', '), '') "
			"FROM pg_catalog.pg_sequences s "
			"JOIN pg_catalog.pg_namespace n ON n.nspname = s.schemaname "
			"JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = s.sequencename "
			"CROSS JOIN LATERAL (SELECT pg_catalog.has_sequence_privilege(c.oid, 'UPDATE') "
			"AND pg_catalog.has_sequence_privilege(c.oid, 'SELECT') AS ok) m",
			fo_rw, f->cfg->failover.sequence_margin, f->cfg->failover.sequence_margin)) {
		fo_fail(f, "out of memory");
		return;
	}
	for (size_t i = 0; i < f->cfg->n_streams; i++) {
		const struct config_stream *cs = &f->cfg->streams[i];

		if (peer >= 0 && fo_stream_with(f, cs, (size_t)peer) && !fo_add_stream_setup(f, cs)) {
			fo_fail(f, "out of memory");
			return;
		}
	}
	f->steps_next = fo_promoted;
	fo_steps_run(f);
}

static void fo_promoted(struct failover *f)
{
	char reason[128];

	snprintf(reason, sizeof(reason), "%s to this site", f->answer_peer ? "switchover" : "failover");
	if (!role_set(f->role, ROLE_PRIMARY, f->new_epoch, f->cfg->sites[f->self].name, reason)) {
		fo_fail(f, "could not record the new role (see the log)");
		return;
	}
	relay_set_epoch(f->relay, f->new_epoch);
	memcpy(f->starts, f->slots, f->n_slots * sizeof(f->slots[0]));
	f->n_starts = f->n_slots;
	fo_step(f, "site %s is primary at epoch %" PRIu64, f->cfg->sites[f->self].name,
		f->new_epoch);
	f->streams_stopped = false;
	f->ops.rebuild(f->arg);
	fo_step(f, "streams run from site %s now", f->cfg->sites[f->self].name);
	if (f->answer_peer) {
		/* first: the old primary's answer then shows which replicas were told */
		fo_send_follow(f);
		fo_send_promote_ack(f, f->peer, true, NULL);
		fo_record_duration(f, FAILOVER_CHANGE_PROMOTION, fo_elapsed(f));
		fo_end(f, true, "promoted in %.2f s", fo_elapsed(f));
		return;
	}
	/* the other replicas of the old primary level with this site and follow it */
	fo_send_follow(f);
	fo_record_duration(f, FAILOVER_CHANGE_FAILOVER, fo_elapsed(f));
	fo_end(f, true, "failover done in %.2f s", fo_elapsed(f));
}

/*
 * Promotion: apply what arrived, stop the streams (an apply transaction
 * still open would hold up the slot's creation, which waits for running
 * transactions), unfence this database, then the SQL, then the role.
 */
static void fo_promote_stop(struct failover *f, const char *why)
{
	struct streams *s = f->ops.streams(f->arg);

	fo_step(f, "%s", why);
	/* what a sibling gets from this site's retained batches once it is primary */
	if (s)
		streams_retain_seal(s);
	f->ops.stop(f->arg);
	f->streams_stopped = true;
	fo_step(f, "stopped the streams from site %s", f->peer);
	fo_fence(f, FENCE_OP_UNFENCE, fo_promote_sql);
}

static void fo_promote_apply_poll(struct failover *f)
{
	struct streams *s = f->ops.streams(f->arg);
	struct streams_peer_lag pl = { 0 };
	char why[256];

	if (s)
		streams_peer_lag(s, f->peer, 0, &pl);
	if (pl.lag_bytes == 0) {
		fo_promote_stop(f, "applied everything received from the old primary");
		return;
	}
	if (fo_now_ms() > f->deadline_ms) {
		snprintf(why, sizeof(why), "gave up waiting for the apply: %" PRIu64 " bytes received "
			 "from site %s were not applied and are lost", pl.lag_bytes, f->peer);
		fo_promote_stop(f, why);
		return;
	}
	fo_arm(f, FO_DRAIN_POLL_MS, fo_promote_apply_poll);
}

void fo_promote(struct failover *f)
{
	f->deadline_ms = fo_now_ms() + (f->force ? 3000 : 30000);
	fo_promote_apply_poll(f);
}

/* A stepped-down site whose database could not be fenced tries again until it is. */
static void fo_step_down_retry(struct failover *f)
{
	if (f->op == FO_NONE && role_current(f->role) == ROLE_FENCED)
		failover_stepped_down(f, NULL);
}

void fo_fail(struct failover *f, const char *why)
{
	fo_step(f, "failed: %s", why);
	if (f->op == FO_STEP_DOWN) {
		f->fence_holds = false;
		fo_end(f, false, "could not fence this site's database (%s): trying again in %d s; "
		       "it takes no writes through strait meanwhile, but applications may still write",
		       why, FO_FENCE_RETRY_MS / 1000);
		fo_arm(f, FO_FENCE_RETRY_MS, fo_step_down_retry);
		return;
	}
	if (f->op == FO_PROMOTE && f->answer_peer)
		fo_send_promote_ack(f, f->peer, false, why);
	if ((f->op == FO_PROMOTE || f->op == FO_FOLLOW) && f->streams_stopped) {
		f->streams_stopped = false;
		f->ops.rebuild(f->arg);
		fo_step(f, "the streams run again as before");
	}
	if (f->op == FO_SWITCHOVER && f->unfence_on_fail &&
	    role_current(f->role) == ROLE_PRIMARY) {
		f->unfence_on_fail = false;
		fo_clear_steps(f);
		fo_step(f, "undoing: site %s stays primary", f->cfg->sites[f->self].name);
		fo_fence(f, FENCE_OP_UNFENCE, fo_switch_unfenced);
		return;
	}
	fo_end(f, false, "%s", why);
}

/* ------------------------------------------------------------ the commands */

const char *fo_old_primary(const struct failover *f)
{
	const char *known = role_primary(f->role);

	/* the primary this site follows, else the other end of its streams */
	if (known[0] && strcmp(known, f->cfg->sites[f->self].name) != 0)
		return known;
	for (size_t i = 0; i < f->cfg->n_streams; i++) {
		const struct config_stream *cs = &f->cfg->streams[i];

		if (cs->from == f->self)
			return f->cfg->sites[config_stream_to(cs)].name;
		if (config_stream_to(cs) == f->self)
			return f->cfg->sites[cs->from].name;
	}
	for (size_t i = 0; i < f->cfg->n_sites; i++)
		if (i != f->self)
			return f->cfg->sites[i].name;
	return NULL;
}

const struct fo_peer *fo_find_peer(const struct failover *f, const char *name)
{
	for (size_t i = 0; i < f->n_peers; i++)
		if (strcmp(f->peers[i].name, name) == 0)
			return &f->peers[i];
	return NULL;
}

/* What this site knows it lacks from peer. */
void fo_known_lag(const struct failover *f, const char *peer, struct failover_lag *lag)
{
	struct streams *s = f->ops.streams(f->arg);
	const struct fo_peer *p = fo_find_peer(f, peer);
	struct streams_peer_lag pl = { 0 };
	struct timespec now;
	int64_t now_us;

	clock_gettime(CLOCK_REALTIME, &now);
	now_us = (int64_t)now.tv_sec * 1000000 + now.tv_nsec / 1000;
	*lag = (struct failover_lag){ 0 };
	if (s)
		streams_peer_lag(s, peer, now_us, &pl);
	lag->lag_bytes = pl.lag_bytes;
	lag->lag_seconds = pl.lag_seconds;
	lag->last_applied_time_us = pl.last_applied_time_us;
	lag->applied_lsn = pl.applied_lsn;
	lag->known = pl.streams > 0;
	/* what the peer said it had read and we had not applied */
	if (p && p->pending_wal > pl.applied_lsn) {
		uint64_t bytes = p->pending_wal - pl.applied_lsn;

		if (bytes > lag->lag_bytes)
			lag->lag_bytes = bytes;
		if (pl.last_applied_time_us > 0) {
			double secs = (double)(now_us - pl.last_applied_time_us) / 1e6;

			if (secs > lag->lag_seconds)
				lag->lag_seconds = secs;
		}
	}
}

static void fo_failover_go(struct failover *f, const char *old, bool force, uint64_t auto_epoch)
{
	const char *self = f->cfg->sites[f->self].name;
	bool gate_ok, reachable;
	struct failover_lag lag;
	char gate[512];

	fo_step(f, "%sfailover to site %s from site %s at epoch %" PRIu64,
		auto_epoch ? "automatic " : "", self, old, role_epoch(f->role));
	reachable = relay_is_up(f->relay, old);
	if (reachable && auto_epoch)
		fo_step(f, "site %s is reachable, but its lease on the witness ended: it fenced its "
			"database first, and steps down when it hears epoch %" PRIu64, old, auto_epoch);
	else if (reachable)
		fo_step(f, "site %s is reachable (its relay link is up): it would be asked to fence "
			"itself; a failover is refused while it is, use switchover", old);
	else
		fo_step(f, "site %s is not reachable (its relay link is down): it will be fenced when "
			"it is heard again", old);
	fo_known_lag(f, old, &lag);
	gate_ok = failover_gate(&lag, f->cfg->failover.max_lag_bytes,
				(uint64_t)f->cfg->failover.max_lag_seconds, force, gate, sizeof(gate));
	fo_step(f, "%s", gate);
	if (!lag.known)
		fo_step(f, "warning: this site receives no stream from site %s", old);
	if (reachable && !auto_epoch) {
		fo_end(f, false, "refused: site %s is reachable; run switchover on it to hand over "
		       "without loss", old);
		return;
	}
	if (!gate_ok) {
		fo_end(f, false, "refused: the lag is over failover.max_lag_bytes or "
		       "failover.max_lag_seconds; --force fails over anyway, losing it");
		return;
	}
	if (auto_epoch && auto_epoch <= role_epoch(f->role)) {
		fo_end(f, false, "refused: the witness gave epoch %" PRIu64 ", not above this site's "
		       "%" PRIu64, auto_epoch, role_epoch(f->role));
		return;
	}
	f->new_epoch = auto_epoch ? auto_epoch : role_epoch(f->role) + 1;
	f->force = force;
	if (fo_many_sites(f)) {
		fo_level_start(f, old);
		return;
	}
	fo_promote(f);
}

void fo_failover_start(struct failover *f, struct control_request *req, const char *old,
		bool force)
{
	fo_begin(f, FO_PROMOTE, req, old);
	fo_failover_go(f, old, force, 0);
}

bool failover_auto_ready(const struct failover *f, char *why, size_t len, uint64_t *applied)
{
	const char *old = fo_old_primary(f);
	struct failover_lag lag;

	*applied = 0;
	if (role_current(f->role) != ROLE_REPLICA || !old) {
		snprintf(why, len, "site %s is %s, not a replica", f->cfg->sites[f->self].name,
			 role_name(role_current(f->role)));
		return false;
	}
	if (f->op != FO_NONE) {
		snprintf(why, len, "a %s is in progress", fo_op_name(f->op));
		return false;
	}
	fo_known_lag(f, old, &lag);
	*applied = lag.applied_lsn;
	if (!lag.known) {
		snprintf(why, len, "this site receives no stream from site %s", old);
		return false;
	}
	return failover_gate(&lag, f->cfg->failover.max_lag_bytes,
			     (uint64_t)f->cfg->failover.max_lag_seconds, false, why, len);
}

bool failover_auto_start(struct failover *f, uint64_t epoch, control_reply_fn done, void *arg)
{
	static char *const argv[] = { "failover", NULL };
	const char *old = fo_old_primary(f);
	struct control_request *req;

	if (f->op != FO_NONE || role_current(f->role) != ROLE_REPLICA || !old ||
	    !(req = control_request_new(1, argv, done, arg)))
		return false;
	fo_begin(f, FO_PROMOTE, req, old);
	fo_failover_go(f, old, false, epoch);
	return true;
}

/* ---------------------------------------------------------------- dry run */

/* ---------------------------------------------------------------- rejoin */

/* ------------------------------------------------- FENCE: primary to old primary */

/* ------------------------------------------------------------------ relay */

static void fo_step_down_done(struct failover *f)
{
	f->fence_holds = true;
	fo_end(f, true, "site %s is fenced: its database is read-only for applications",
	       f->cfg->sites[f->self].name);
}

const char *failover_old_primary(const struct failover *f)
{
	return fo_old_primary(f);
}

void failover_set_positions(struct failover *f, const struct failover_position *v, size_t n)
{
	f->n_positions = n < FAILOVER_MAX_POSITIONS ? n : FAILOVER_MAX_POSITIONS;
	memcpy(f->positions, v, f->n_positions * sizeof(*v));
}

bool failover_fence_holds(const struct failover *f)
{
	return f->fence_holds;
}

void failover_stepped_down(struct failover *f, const char *peer)
{
	if (f->op == FO_SWITCHOVER)
		return;          /* fenced by the switchover itself */
	if (f->op != FO_NONE) {
		log_warning("stepping down while a %s runs", fo_op_name(f->op));
		if (f->op == FO_STEP_DOWN)
			return;
		fo_end(f, false, "a higher epoch was heard: this site stepped down");
		if (f->fence) {
			fence_free(f->fence);
			f->fence = NULL;
		}
	}
	fo_begin(f, FO_STEP_DOWN, NULL, peer);
	if (peer)
		fo_step(f, "site %s is at a higher epoch: fencing this site's database first",
			peer);
	else
		fo_step(f, "this site is fenced: making sure its database is");
	fo_fence(f, FENCE_OP_FENCE, fo_step_down_done);
}

static void fo_unfenced(struct failover *f)
{
	f->fence_holds = false;
	fo_end(f, true, "site %s's database takes writes again", f->cfg->sites[f->self].name);
}

void failover_unfence(struct failover *f, const char *why)
{
	if (f->op != FO_NONE) {
		fo_end(f, false, "%s: the %s ends", why, fo_op_name(f->op));
		fence_free(f->fence);
		f->fence = NULL;
	}
	fo_begin(f, FO_UNFENCE, NULL, NULL);
	fo_step(f, "%s: unfencing this site's database", why);
	fo_fence(f, FENCE_OP_UNFENCE, fo_unfenced);
}

/* ------------------------------------------------------------------ object */

struct failover *failover_new(struct event_base *base, const struct strait_config *cfg,
		size_t self, struct relay *relay, struct role *role,
		const struct failover_ops *ops, void *arg)
{
	struct failover *f = calloc(1, sizeof(*f));

	if (!f || !(f->timer = event_new(base, -1, 0, fo_timer_cb, f)) ||
	    !(f->rejoin_ev = event_new(base, -1, 0, fo_rejoin_resume_cb, f))) {
		log_error("out of memory setting up failover");
		if (f && f->timer)
			event_free(f->timer);
		free(f);
		return NULL;
	}
	f->base = base;
	f->cfg = cfg;
	f->self = self;
	f->relay = relay;
	f->role = role;
	f->ops = *ops;
	f->arg = arg;
	return f;
}

void failover_reconfigure(struct failover *f, const struct strait_config *cfg)
{
	f->cfg = cfg;
	if (f->q && !pgquery_busy(f->q) && f->op == FO_NONE) {
		pgquery_free(f->q);
		f->q = NULL;      /* the database's conninfo may have changed */
	}
	if (f->q_dry && !pgquery_busy(f->q_dry)) {
		pgquery_free(f->q_dry);
		f->q_dry = NULL;
	}
}

void failover_free(struct failover *f)
{
	if (!f)
		return;
	if (f->req) {
		control_reply(f->req, false, "straitd is stopping: the operation was interrupted\n");
		f->req = NULL;
	}
	if (f->rejoin_waiting)
		control_reply(f->rejoin_waiting, false,
			      "straitd is stopping: the rejoin did not start\n");
	fence_free(f->fence);
	lostxacts_peek_free(f->peek);
	lostxacts_free(f->lx);
	pgquery_free(f->q);
	pgquery_free(f->q_info);
	pgquery_free(f->q_dry);
	fo_clear_steps(f);
	event_free(f->timer);
	event_free(f->rejoin_ev);
	free(f->log);
	free(f);
}
