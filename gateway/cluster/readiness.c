/*
 * readiness.c — failover --dry-run: would a failover to this site go through
 * if the primary were lost now, and what would it cost.
 *
 * failover_readiness() is pure: the facts in, one check per line and a
 * verdict out. fo_dry_run() gathers the facts: one read-only query on its
 * own connection to this site's database (bounded by FO_DRY_DB_TIMEOUT_MS),
 * the rest from what this site knows already (lag, streams, heartbeats,
 * role-durations). It changes nothing, and answers in text or JSON.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/json.h"
#include "common/log.h"
#include "common/lsn.h"
#include "config/config.h"
#include "gateway/cluster/failover_int.h"
#include "gateway/daemon/control.h"
#include "gateway/relay/relay.h"
#include "gateway/stream/stream.h"
#include "replicator/pgquery.h"

/* ------------------------------------------------------- the readiness report */

static void fo_check(struct failover_readiness *out, enum failover_check_id id, const char *name,
		bool gate, bool ok, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static void fo_check(struct failover_readiness *out, enum failover_check_id id, const char *name,
		bool gate, bool ok, const char *fmt, ...)
{
	struct failover_check *c = &out->checks[id];
	va_list ap;

	c->name = name;
	c->gate = gate;
	c->ok = ok;
	va_start(ap, fmt);
	vsnprintf(c->detail, sizeof(c->detail), fmt, ap);
	va_end(ap);
	if (gate && !ok)
		out->go = false;
}

static void fo_check_role(const struct failover_facts *in, struct failover_readiness *out)
{
	switch (in->role) {
	case ROLE_PRIMARY:
		fo_check(out, FAILOVER_CHECK_ROLE, "role", true, false,
			 "site %s is the primary already", in->site);
		return;
	case ROLE_FENCED:
		fo_check(out, FAILOVER_CHECK_ROLE, "role", true, false,
			 "site %s is fenced: it must rejoin as a replica first", in->site);
		return;
	case ROLE_REPLICA:
		break;
	}
	if (!in->role_persisted)
		fo_check(out, FAILOVER_CHECK_ROLE, "role", true, false,
			 "site %s is a replica at epoch %" PRIu64 ", but its role state could not be "
			 "written (see the log): the promotion could not record the new role",
			 in->site, in->epoch);
	else
		fo_check(out, FAILOVER_CHECK_ROLE, "role", true, true,
			 "site %s is a replica at epoch %" PRIu64 "; the promotion would take epoch %"
			 PRIu64, in->site, in->epoch, in->epoch + 1);
}

static void fo_check_streams(const struct failover_facts *in, struct failover_readiness *out)
{
	if (in->streams_in == 0)
		fo_check(out, FAILOVER_CHECK_STREAMS, "streams", true, false,
			 "this site receives no stream from site %s: nothing tells what it lacks",
			 in->old_primary);
	else if (!in->heard_old)
		fo_check(out, FAILOVER_CHECK_STREAMS, "streams", true, false,
			 "site %s has not been heard since straitd started here: what it committed "
			 "and this site lacks is unknown (%s)", in->old_primary,
			 in->stream_states ? in->stream_states : "no stream state");
	else
		fo_check(out, FAILOVER_CHECK_STREAMS, "streams", true, true,
			 "%zu stream(s) from site %s (%s); site %s last heard %.0f s ago",
			 in->streams_in, in->old_primary,
			 in->stream_states ? in->stream_states : "no stream state",
			 in->old_primary, in->heard_ago_s);
}

static void fo_check_database(const struct failover_facts *in, struct failover_readiness *out)
{
	const char *fence = in->db_fenced ?
		"it is fenced now (default_transaction_read_only on): the promotion unfences it" :
		"it is not fenced (default_transaction_read_only off)";

	if (in->db_error)
		fo_check(out, FAILOVER_CHECK_DATABASE, "database", true, false,
			 "the database of site %s does not answer: %s", in->site, in->db_error);
	else if (in->db_in_recovery)
		fo_check(out, FAILOVER_CHECK_DATABASE, "database", true, false,
			 "the database of site %s is a standby (in recovery): the promotion cannot "
			 "write to it", in->site);
	else if (!in->db_can_create_slots)
		fo_check(out, FAILOVER_CHECK_DATABASE, "database", true, false,
			 "the database of site %s answers, but strait's role there can create no "
			 "replication slot (needs REPLICATION or superuser); %s", in->site, fence);
	else
		fo_check(out, FAILOVER_CHECK_DATABASE, "database", true, true,
			 "the database of site %s answers and the promotion can write to it; %s",
			 in->site, fence);
}

static void fo_check_sequences(const struct failover_facts *in, struct failover_readiness *out)
{
	if (in->db_error)
		fo_check(out, FAILOVER_CHECK_SEQUENCES, "sequences", false, false,
			 "unknown: the database does not answer");
	else if (in->sequences == 0)
		fo_check(out, FAILOVER_CHECK_SEQUENCES, "sequences", false, true,
			 "no sequence in this database: nothing to raise");
	else if (in->sequences_with_value == 0)
		fo_check(out, FAILOVER_CHECK_SEQUENCES, "sequences", false, false,
			 "no sequence value received from site %s: none of the %" PRId64 " sequence(s) "
			 "here holds a value; the promotion raises each from its start by %" PRIu64
			 " (failover.sequence_margin)", in->old_primary, in->sequences,
			 in->sequence_margin);
	else
		fo_check(out, FAILOVER_CHECK_SEQUENCES, "sequences", false, true,
			 "%" PRId64 " of %" PRId64 " sequence(s) here hold a value received from site "
			 "%s; the promotion raises each by %" PRIu64 " (failover.sequence_margin)",
			 in->sequences_with_value, in->sequences, in->old_primary, in->sequence_margin);
}

static void fo_check_fencing(const struct failover_facts *in, struct failover_readiness *out)
{
	/* what a site that steps down does to its database (failover_stepped_down) */
	static const char db_fence[] = "(ALTER SYSTEM default_transaction_read_only = on, the "
		"sessions that could write ended)";

	if (in->old_reachable)
		fo_check(out, FAILOVER_CHECK_FENCING, "fencing", false, true,
			 "site %s is reachable now (its relay link is up): it would hear epoch %" PRIu64
			 " over the link at once, step down and fence its database %s; a failover is "
			 "refused while it is reachable: run switchover --to %s on site %s, the "
			 "lossless choice", in->old_primary, in->epoch + 1, db_fence, in->site,
			 in->old_primary);
	else
		fo_check(out, FAILOVER_CHECK_FENCING, "fencing", false, true,
			 "site %s is not reachable: it will be fenced when heard again: it hears "
			 "epoch %" PRIu64 ", steps down and fences its database %s", in->old_primary,
			 in->epoch + 1, db_fence);
}

static void fo_check_health(const struct failover_facts *in, struct failover_readiness *out)
{
	if (in->metrics_listen)
		fo_check(out, FAILOVER_CHECK_HEALTH, "health", false, true,
			 "metrics.listen %s: /primary would answer 200 here, and 503 on site %s "
			 "once it has stepped down", in->metrics_listen, in->old_primary);
	else
		fo_check(out, FAILOVER_CHECK_HEALTH, "health", false, false,
			 "metrics.listen is not set: this site serves no /health, /primary or "
			 "/replica, so a load balancer cannot follow the role here (site %s answers "
			 "503 on /primary once it has stepped down, if it serves them)",
			 in->old_primary);
}

static void fo_check_loss(const struct failover_facts *in, struct failover_readiness *out)
{
	char when[64];

	fo_time_text(in->lag.last_applied_time_us, when, sizeof(when));
	if (in->lag.lag_bytes == 0)
		fo_check(out, FAILOVER_CHECK_LOSS, "loss", false, true,
			 "expected loss 0 bytes, %.1f s: nothing site %s sent is left to apply; "
			 "last applied commit %s", in->lag.lag_seconds, in->old_primary, when);
	else
		fo_check(out, FAILOVER_CHECK_LOSS, "loss", false, false,
			 "expected loss %" PRIu64 " bytes, %.1f s: what site %s committed after the "
			 "last applied commit %s and this site has not applied (the last known lag)",
			 in->lag.lag_bytes, in->lag.lag_seconds, in->old_primary, when);
}

static void fo_check_duration(const struct failover_facts *in, struct failover_readiness *out)
{
	enum failover_change which;
	char when[64];
	int64_t at;

	if (!in->durations ||
	    !failover_durations_expected(in->durations, &which, &out->duration_s, &at)) {
		fo_check(out, FAILOVER_CHECK_DURATION, "duration", false, false,
			 "no switchover or failover measured on this cluster yet");
		return;
	}
	out->duration_known = true;
	fo_time_text(at * 1000000, when, sizeof(when));
	fo_check(out, FAILOVER_CHECK_DURATION, "duration", false, true,
		 "expected duration %.2f s: the last %s measured on this site took that long "
		 "(%s)%s", out->duration_s,
		 which == FAILOVER_CHANGE_PROMOTION ? "promotion (this site's half of a switchover)" :
		 which == FAILOVER_CHANGE_SWITCHOVER ? "switchover (the whole hand-over)" :
		 "failover", when,
		 in->lag.lag_bytes > 0 ? ", plus the wait for what was received to be applied "
		 "(30 s at most)" : "");
}

/* The position of every replica of a stream of more than two sites, and which is ahead. */
static void fo_check_siblings(const struct failover_facts *in, struct failover_readiness *out)
{
	char text[sizeof(out->checks[0].detail)], lsn[32];
	const char *best = in->site;
	uint64_t top = in->applied_lsn;
	size_t used = 0;
	bool unknown = false;
	int n;

	if (!in->many_sites)
		return;
	for (size_t i = 0; i < in->n_positions; i++) {
		if (in->positions[i].known && in->positions[i].applied_lsn > top) {
			top = in->positions[i].applied_lsn;
			best = in->positions[i].site;
		}
	}
	lsn_format(lsn, in->applied_lsn);
	n = snprintf(text, sizeof(text), "%s %s (this site%s)", in->site, lsn,
		     best == in->site ? ", the most caught up" : "");
	used = n > 0 ? (size_t)n : 0;
	for (size_t i = 0; i < in->n_positions && used < sizeof(text); i++) {
		const struct failover_position *p = &in->positions[i];

		lsn_format(lsn, p->applied_lsn);
		if (p->known)
			n = snprintf(text + used, sizeof(text) - used, ", %s %s%s", p->site, lsn,
				     best == p->site ? " (the most caught up)" : "");
		else
			n = snprintf(text + used, sizeof(text) - used, ", %s unknown (%s)", p->site,
				     p->why);
		unknown = unknown || !p->known;
		used += n > 0 ? (size_t)n : 0;
	}
	/* a failover takes what the reachable ones applied beyond this site first (level.c) */
	fo_check(out, FAILOVER_CHECK_SIBLINGS, "replicas", true, true,
		 "applied of the old primary's streams: %s; a failover here first takes from each "
		 "reachable replica what it applied beyond this site%s", text, unknown ?
		 "; one not reachable that holds more is fenced and must rejoin" : "");
}

void failover_readiness(const struct failover_facts *in, struct failover_readiness *out)
{
	char failed[256] = "";
	size_t used = 0;
	bool gate_ok;

	*out = (struct failover_readiness){ .go = true };
	fo_check_role(in, out);
	out->n = 1;
	if (in->role == ROLE_REPLICA) {
		char gate[512];

		gate_ok = failover_gate(&in->lag, in->max_lag_bytes, in->max_lag_ms, in->force, gate,
					sizeof(gate));
		fo_check(out, FAILOVER_CHECK_LAG, "lag", true, gate_ok, "%s", gate);
		fo_check_streams(in, out);
		fo_check_database(in, out);
		fo_check_sequences(in, out);
		fo_check_fencing(in, out);
		fo_check_health(in, out);
		fo_check_loss(in, out);
		fo_check_duration(in, out);
		fo_check_siblings(in, out);
		out->n = in->many_sites ? FAILOVER_CHECKS : FAILOVER_CHECK_SIBLINGS;
	}
	for (size_t i = 0; i < out->n; i++) {
		const struct failover_check *c = &out->checks[i];
		int n;

		if (!c->gate || c->ok)
			continue;
		n = snprintf(failed + used, sizeof(failed) - used, "%s%s", used ? ", " : "",
			     c->name);
		if (n > 0 && (size_t)n < sizeof(failed) - used)
			used += (size_t)n;
	}
	if (!out->go)
		snprintf(out->verdict, sizeof(out->verdict), "no-go: a failover to site %s would be "
			 "refused (%s)", in->site, failed);
	else if (in->old_reachable)
		snprintf(out->verdict, sizeof(out->verdict), "go: a failover to site %s would go "
			 "through if site %s were lost now; it is reachable now, so a failover now "
			 "is refused: switchover is the lossless choice", in->site, in->old_primary);
	else
		snprintf(out->verdict, sizeof(out->verdict), "go: a failover to site %s would go "
			 "through", in->site);
}

/* What the dry run learnt from this site's database. */
struct fo_dry_db {
	char error[512];         /* empty when it answered */
	bool in_recovery, fenced, can_create_slots;
	int64_t sequences, sequences_with_value;
};

struct fo_dry_streams {
	const char *peer;
	size_t n;
	char states[512];
};

static void fo_dry_stream(void *arg, const struct stream_report *r)
{
	struct fo_dry_streams *ds = arg;
	size_t used = strlen(ds->states);

	if (!r->sink || strcmp(r->peer, ds->peer) != 0)
		return;
	ds->n++;
	snprintf(ds->states + used, sizeof(ds->states) - used, "%s%s: %s", used ? ", " : "",
		 r->name, r->state);
}

static const char *fo_dry_status(const struct failover_check *c)
{
	if (c->gate)
		return c->ok ? "ok" : "no-go";
	return c->ok ? "info" : "warn";
}

static char *fo_dry_text(const struct failover *f, const struct failover_facts *in,
		const struct failover_readiness *r)
{
	char *body = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&body, &len);

	if (!out)
		return NULL;
	fprintf(out, "failover to site %s from site %s at epoch %" PRIu64 ": dry run, nothing "
		"is done\n", in->site, in->old_primary, role_epoch(f->role));
	for (size_t i = 0; i < r->n; i++)
		fprintf(out, "  %-6s %-10s %s\n", fo_dry_status(&r->checks[i]), r->checks[i].name,
			r->checks[i].detail);
	fprintf(out, "%s\n", r->verdict);
	if (fclose(out) != 0) {
		free(body);
		return NULL;
	}
	return body;
}

static char *fo_dry_json(const struct failover *f, const struct failover_facts *in,
		const struct failover_readiness *r)
{
	struct json_out j;
	char when[64];

	json_init(&j);
	json_object_begin(&j, NULL);
	json_string(&j, "site", in->site);
	json_string(&j, "old_primary", in->old_primary);
	json_uint(&j, "epoch", role_epoch(f->role));
	json_bool(&j, "go", r->go);
	json_string(&j, "verdict", r->verdict);
	json_bool(&j, "old_primary_reachable", in->old_reachable);
	/* a real failover is refused while the old primary is reachable */
	json_bool(&j, "failover_now", r->go && !in->old_reachable);
	json_array_begin(&j, "checks");
	for (size_t i = 0; i < r->n; i++) {
		json_object_begin(&j, NULL);
		json_string(&j, "check", r->checks[i].name);
		json_bool(&j, "ok", r->checks[i].ok);
		json_bool(&j, "gate", r->checks[i].gate);
		json_string(&j, "detail", r->checks[i].detail);
		json_object_end(&j);
	}
	json_array_end(&j);
	if (in->role == ROLE_REPLICA) {
		json_object_begin(&j, "expected_loss");
		json_uint(&j, "bytes", in->lag.lag_bytes);
		json_double(&j, "seconds", in->lag.lag_seconds);
		fo_time_text(in->lag.last_applied_time_us, when, sizeof(when));
		json_string(&j, "last_applied_commit",
			    in->lag.last_applied_time_us > 0 ? when : NULL);
		json_object_end(&j);
	} else {
		json_null(&j, "expected_loss");
	}
	if (r->duration_known)
		json_double(&j, "expected_duration_s", r->duration_s);
	else
		json_null(&j, "expected_duration_s");
	json_object_end(&j);
	return json_finish_line(&j, NULL);
}

/* The dry run's connection is closed once its answer is in (never inside its callback). */
static void fo_dry_close(struct failover *f)
{
	if (f->op != FO_DRY_RUN && f->q_dry && !pgquery_busy(f->q_dry)) {
		pgquery_free(f->q_dry);
		f->q_dry = NULL;
	}
}

/* Gathers what this site knows, adds the database's answer (db), answers the command. */
static void fo_dry_report(struct failover *f, const struct fo_dry_db *db)
{
	struct streams *s = f->ops.streams(f->arg);
	const struct fo_peer *p = fo_find_peer(f, f->peer);
	struct fo_dry_streams ds = { .peer = f->peer };
	struct failover_durations durations;
	struct failover_readiness r;
	struct failover_facts in = {
		.site = f->cfg->sites[f->self].name,
		.old_primary = f->peer,
		.role = role_current(f->role),
		.epoch = role_epoch(f->role),
		.role_persisted = role_persisted(f->role),
		.max_lag_bytes = f->cfg->failover.max_lag_bytes,
		.max_lag_ms = (uint64_t)f->cfg->failover.max_lag_seconds,
		.force = f->force,
		.old_reachable = relay_is_up(f->relay, f->peer),
		.sequence_margin = f->cfg->failover.sequence_margin,
		.metrics_listen = f->cfg->metrics.listen,
	};
	char err[4608], *body;
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	fo_known_lag(f, f->peer, &in.lag);
	if (s)
		streams_report(s, (int64_t)now.tv_sec * 1000000 + now.tv_nsec / 1000, fo_dry_stream,
			       &ds);
	in.streams_in = ds.n;
	in.stream_states = ds.states[0] ? ds.states : NULL;
	in.many_sites = fo_many_sites(f);
	if (in.many_sites && s) {
		struct streams_peer_lag pl;

		streams_peer_lag(s, f->peer, 0, &pl);
		in.applied_lsn = pl.applied_lsn;
		in.positions = f->positions;
		in.n_positions = f->n_positions;
	}
	in.heard_old = p && p->heard_at > 0;
	in.heard_ago_s = in.heard_old ? difftime(time(NULL), p->heard_at) : 0;
	if (db) {
		in.db_error = db->error[0] ? db->error : NULL;
		in.db_in_recovery = db->in_recovery;
		in.db_fenced = db->fenced;
		in.db_can_create_slots = db->can_create_slots;
		in.sequences = db->sequences;
		in.sequences_with_value = db->sequences_with_value;
	}
	switch (fo_durations_load(f, &durations, err, sizeof(err))) {
	case 1:
		in.durations = &durations;
		break;
	case -1:
		log_warning("%s", err);
		break;
	default:
		break;
	}
	failover_readiness(&in, &r);
	body = f->dry_json ? fo_dry_json(f, &in, &r) : fo_dry_text(f, &in, &r);
	f->n_positions = 0;
	log_notice("failover dry run to site %s: %s", in.site, r.verdict);
	f->op = FO_NONE;
	fo_arm(f, 0, fo_dry_close);
	if (f->req) {
		control_reply(f->req, r.go, body ? body : "out of memory writing the report\n");
		f->req = NULL;
	}
	free(body);
}

static void fo_dry_db_result(void *arg, const PGresult *res, const char *err)
{
	struct failover *f = arg;
	struct fo_dry_db db = { 0 };

	if (f->op != FO_DRY_RUN)
		return;
	if (!res || PQntuples(res) != 1 || PQnfields(res) != 5)
		snprintf(db.error, sizeof(db.error), "%s", err ? err : "an unexpected answer");
	else {
		db.in_recovery = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
		db.fenced = strcmp(PQgetvalue(res, 0, 1), "t") == 0;
		db.can_create_slots = strcmp(PQgetvalue(res, 0, 2), "t") == 0;
		db.sequences = strtoll(PQgetvalue(res, 0, 3), NULL, 10);
		db.sequences_with_value = strtoll(PQgetvalue(res, 0, 4), NULL, 10);
	}
	fo_dry_report(f, &db);
}

static void fo_dry_db_timeout(struct failover *f)
{
	struct fo_dry_db db = { 0 };

	if (f->op != FO_DRY_RUN)
		return;
	/* not inside its callback: the query that never answered goes */
	pgquery_free(f->q_dry);
	f->q_dry = NULL;
	snprintf(db.error, sizeof(db.error), "no answer within %d s", FO_DRY_DB_TIMEOUT_MS / 1000);
	fo_dry_report(f, &db);
}

/*
 * failover --dry-run: one read-only question to this site's database (can
 * the promotion write there, its fence state, its sequences), the rest from
 * what this site knows; answered by fo_dry_report().
 */
void fo_dry_run(struct failover *f, struct control_request *req, bool force, bool json)
{
	static const char sql[] =
		"SELECT pg_catalog.pg_is_in_recovery(), "
		"pg_catalog.current_setting('default_transaction_read_only')::boolean, "
		"COALESCE((SELECT rolsuper OR rolreplication FROM pg_catalog.pg_roles "
		"WHERE rolname = current_user), false), "
		"(SELECT count(*) FROM pg_catalog.pg_sequences), "
		"(SELECT count(*) FROM pg_catalog.pg_sequences WHERE last_value IS NOT NULL)";
	const char *old = fo_old_primary(f);

	if (!old) {
		fo_refuse(req, "no other site in the configuration");
		return;
	}
	fo_begin(f, FO_DRY_RUN, req, old);
	f->force = force;
	f->dry_json = json;
	if (role_current(f->role) != ROLE_REPLICA) {
		fo_dry_report(f, NULL);
		return;
	}
	/* a fresh connection each time: one left from a restarted server would answer wrong */
	pgquery_free(f->q_dry);
	f->q_dry = pgquery_new(f->base, f->cfg->sites[f->self].database,
			       "failover --dry-run: this site's database");
	fo_arm(f, FO_DRY_DB_TIMEOUT_MS, fo_dry_db_timeout);
	if (!f->q_dry || !pgquery_run(f->q_dry, sql, fo_dry_db_result, f)) {
		struct fo_dry_db db = { .error = "could not send the query (out of memory)" };

		if (f->op == FO_DRY_RUN)
			fo_dry_report(f, &db);
	}
}
