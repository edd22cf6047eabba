/*
 * witness_report.c — what the witness shows: etcd's members and leader
 * (asked every few ticks), the "witness" object of status, the metrics, and
 * the pause-auto / resume-auto commands.
 */
#include "gateway/witness/witness_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/json.h"
#include "common/log.h"
#include "config/config.h"

/* ---- members and leader ---- */

static void status_read(void *arg, const struct etcd_result *r)
{
	struct witness *w = arg;

	w->members_busy = false;
	w->etcd_leader = r->ok ? r->reply.leader : 0;
}

static void members_read(void *arg, const struct etcd_result *r)
{
	struct witness *w = arg;
	struct witness_member *v;

	w->members_busy = false;
	if (!r->ok)
		return;
	v = calloc(r->reply.n_members ? r->reply.n_members : 1, sizeof(*v));
	if (!v)
		return;
	for (size_t i = 0; i < r->reply.n_members; i++) {
		const struct etcd_member *m = &r->reply.members[i];

		v[i].id = m->id;
		snprintf(v[i].name, sizeof(v[i].name), "%s", m->name ? m->name : "");
		snprintf(v[i].url, sizeof(v[i].url), "%s",
			 m->n_client_urls ? m->client_urls[0] : "");
	}
	free(w->members);
	w->members = v;
	w->n_members = r->reply.n_members;
	w->members_busy = etcd_status(w->etcd, status_read, w);
}

void witness_members_step(struct witness *w)
{
	if (w->ticks++ % WITNESS_MEMBERS_EVERY != 0 || w->members_busy)
		return;
	w->members_busy = etcd_members(w->etcd, members_read, w);
}

/* ---- status and metrics ---- */

static double lease_age_s(const struct witness *w)
{
	if (!w->holds)
		return -1;
	return (double)(witness_now_ms() - w->lease_ok_ms) / 1000.0;
}

static void status_members(const struct witness *w, struct json_out *j)
{
	const char *leader = NULL;

	json_array_begin(j, "members");
	for (size_t i = 0; i < w->n_members; i++) {
		json_object_begin(j, NULL);
		json_string(j, "name", w->members[i].name);
		json_string(j, "url", w->members[i].url);
		json_bool(j, "leader", w->members[i].id == w->etcd_leader);
		json_object_end(j);
		if (w->members[i].id == w->etcd_leader)
			leader = w->members[i].name;
	}
	json_array_end(j);
	json_string(j, "etcd_leader", leader);
}

void witness_status_json(const struct witness *w, struct json_out *j)
{
	json_object_begin(j, "witness");
	json_string(j, "mode", "automatic");
	json_bool(j, "reachable", w->reachable);
	json_string(j, "error", w->error[0] ? w->error : NULL);
	status_members(w, j);
	json_string(j, "primary", w->leader[0] ? w->leader : NULL);
	json_uint(j, "primary_epoch", w->leader_epoch);
	json_double(j, "primary_seen_s_ago", w->leader[0] ?
		    (double)(witness_now_ms() - w->leader_seen_ms) / 1000.0 : -1);
	json_bool(j, "holds_lease", w->holds);
	json_double(j, "lease_age_s", lease_age_s(w));
	json_uint(j, "lease_ttl_s", (uint64_t)witness_ttl_s(w));
	json_bool(j, "self_fenced", w->self_fenced);
	json_bool(j, "paused", w->paused);
	json_bool(j, "candidate", w->candidate);
	json_bool(j, "promoting", w->promoting);
	json_bool(j, "blocked", w->blocked);
	json_string(j, "blocked_why", w->blocked ? w->blocked_why : NULL);
	json_string(j, "holding", w->holding[0] ? w->holding : NULL);
	json_int(j, "last_automatic_failover", w->last_auto_s);
	json_string(j, "last_automatic_failover_to", w->last_auto_s ? w->last_auto_site : NULL);
	json_uint(j, "cooldown_s", w->cfg->failover.cooldown / 1000);
	json_uint(j, "automatic_failovers", w->automatic_failovers);
	json_object_end(j);
}

void witness_metrics(const struct witness *w, struct witness_metrics *out)
{
	*out = (struct witness_metrics){
		.reachable = w->reachable, .paused = w->paused, .holds = w->holds,
		.self_fenced = w->self_fenced, .blocked = w->blocked, .lease_age_s = lease_age_s(w),
		.automatic_failovers = w->automatic_failovers,
	};
}

/* ---- pause-auto, resume-auto ---- */

struct pause_call {
	struct witness *w;
	struct control_request *req;
	bool pause;
};

static void pause_done(void *arg, const struct etcd_result *r)
{
	struct pause_call *c = arg;
	char msg[768];

	if (!r->ok) {
		snprintf(msg, sizeof(msg), "the witness did not take it: %s\n", r->error);
		control_reply(c->req, false, msg);
	} else {
		c->w->paused = c->pause;
		log_notice("witness: automatic failover %s (straitctl %s)",
			   c->pause ? "paused" : "resumed", c->pause ? "pause-auto" : "resume-auto");
		snprintf(msg, sizeof(msg), "automatic failover is %s for every site of cluster %s%s\n",
			 c->pause ? "paused" : "on again", c->w->cfg->cluster,
			 c->pause ? " (switchover and failover still run when typed)" : "");
		control_reply(c->req, true, msg);
	}
	free(c);
}

void witness_cmd_pause(struct witness *w, struct control_request *req, bool pause)
{
	struct pause_call *c = calloc(1, sizeof(*c));
	char key[160], value[96];
	bool started;

	if (!c) {
		control_reply(req, false, "out of memory\n");
		return;
	}
	*c = (struct pause_call){ w, req, pause };
	witness_key(w, "paused", key, sizeof(key));
	snprintf(value, sizeof(value), "%lld %s", (long long)time(NULL), w->cfg->sites[w->self].name);
	started = pause ? etcd_put(w->etcd, key, value, strlen(value), 0, pause_done, c)
			: etcd_delete(w->etcd, key, false, pause_done, c);
	if (!started) {
		free(c);
		control_reply(req, false, "out of memory\n");
	}
}
