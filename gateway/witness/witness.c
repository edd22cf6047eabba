/*
 * witness.c — automatic failover with etcd as the witness (see witness.h):
 * the tick, what the keys say, the primary's lease and its self-fencing.
 * The replicas' election is in witness_elect.c, status and commands in
 * witness_report.c.
 */
#include "gateway/witness/witness_int.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/dirs.h"
#include "common/log.h"
#include "config/config.h"
#include "gateway/cluster/role.h"
#include "replicator/fence.h"

int64_t witness_now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

void witness_key(const struct witness *w, const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "%s%s", w->prefix, name);
}

static void witness_failed(struct witness *w, const struct etcd_result *r)
{
	if (w->reachable || strcmp(w->error, r->error ? r->error : "") != 0)
		log_warning("witness: %s", r->error ? r->error : "no answer");
	w->reachable = false;
	snprintf(w->error, sizeof(w->error), "%s", r->error ? r->error : "no answer");
}

static void witness_answered(struct witness *w)
{
	if (!w->reachable)
		log_notice("witness: etcd answers%s", w->ever_answered ? " again" : "");
	w->ever_answered = true;
	w->reachable = true;
	w->error[0] = '\0';
}

/* The tick's request came back: the witness, or NULL (noted) when it failed. */
struct witness *witness_reply(void *arg, const struct etcd_result *r)
{
	struct witness *w = arg;

	w->busy = false;
	if (!r->ok) {
		witness_failed(w, r);
		return NULL;
	}
	witness_answered(w);
	return w;
}

/* ---- what the keys say ---- */

/* "SITE EPOCH" into its parts; false when it is not that. */
bool witness_parse_leader(const char *v, size_t len, char *site, size_t site_len,
		uint64_t *epoch)
{
	const char *sp = memchr(v, ' ', len);
	char num[24];
	char *end;

	if (!sp || sp == v || (size_t)(sp - v) >= site_len || len - (size_t)(sp - v) - 1 == 0 ||
	    len - (size_t)(sp - v) - 1 >= sizeof(num))
		return false;
	memcpy(site, v, (size_t)(sp - v));
	site[sp - v] = '\0';
	memcpy(num, sp + 1, len - (size_t)(sp - v) - 1);
	num[len - (size_t)(sp - v) - 1] = '\0';
	errno = 0;
	*epoch = strtoull(num, &end, 10);
	return errno == 0 && *end == '\0' && *epoch > 0;
}

/* The keys under the prefix, as read by one range of it. */
void witness_read_keys(struct witness *w, const struct etcd_reply *rep)
{
	size_t plen = strlen(w->prefix);

	w->leader[0] = '\0';
	w->leader_epoch = 0;
	w->leader_lease = 0;
	w->epoch_kv = 0;
	w->epoch_rev = 0;
	w->paused = false;
	w->last_auto_s = 0;
	w->last_auto_site[0] = '\0';
	w->n_candidates = 0;
	for (size_t i = 0; i < rep->n_kvs; i++) {
		const struct etcd_kv *kv = &rep->kvs[i];
		const char *name = kv->key_len > plen ? kv->key + plen : "";

		if (strcmp(name, "leader") == 0 &&
		    witness_parse_leader(kv->value, kv->value_len, w->leader, sizeof(w->leader),
					 &w->leader_epoch)) {
			w->leader_lease = kv->lease;
			w->leader_seen_ms = witness_now_ms();
		} else if (strcmp(name, "epoch") == 0) {
			w->epoch_kv = strtoull(kv->value, NULL, 10);
			w->epoch_rev = kv->mod_revision;
		} else if (strcmp(name, "paused") == 0) {
			w->paused = true;
		} else if (strcmp(name, "last_automatic") == 0) {
			char *end;

			w->last_auto_s = strtoll(kv->value, &end, 10);
			snprintf(w->last_auto_site, sizeof(w->last_auto_site), "%s",
				 *end == ' ' ? end + 1 : "");
		} else if (strncmp(name, "candidates/", 11) == 0 &&
			   w->n_candidates < WITNESS_MAX_CANDIDATES) {
			struct witness_candidate *c = &w->candidates[w->n_candidates++];

			snprintf(c->site, sizeof(c->site), "%s", name + 11);
			c->applied = strtoull(kv->value, NULL, 10);
		}
	}
}

/* ---- the primary's fence ---- */

/*
 * STATE_DIR/witness-fenced: made before the fence runs and gone once the
 * unfence is done, its directory fsynced either way, so that a restart
 * knows the database is fenced by the witness (unfenced with the lease).
 */
static void witness_fence_file(struct witness *w, bool present)
{
	char path[4096], err[512];
	int fd = -1;
	bool ok;

	snprintf(path, sizeof(path), "%s/%s", w->cfg->state_dir, WITNESS_FENCED_FILE);
	if (!present)
		ok = unlink(path) == 0 || errno == ENOENT;
	else
		ok = (fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) >= 0 &&
		     fsync(fd) == 0;
	if (!ok)
		log_warning("witness: could not %s \"%s\": %s", present ? "write" : "remove", path,
			    strerror(errno));
	if (fd >= 0)
		close(fd);
	if (ok && !dirs_sync(w->cfg->state_dir, err, sizeof(err)))
		log_warning("witness: %s", err);
}

static void witness_fence_done(void *arg, const struct fence_result *res)
{
	struct witness *w = arg;
	struct fence *done = w->fence;     /* res lives as long as the fence: freed last */
	bool fencing = w->fence_op == FENCE_OP_FENCE;

	w->fence = NULL;
	if (!res->ok) {
		log_error("witness: could not %s this site's database: %s (tried again at the next "
			  "tick)", fencing ? "fence" : "unfence", res->error);
		w->fence_failed = true;
		fence_free(done);
		return;
	}
	w->fence_failed = false;
	log_notice("witness: this site's database is %s", fencing ?
		   "fenced (read-only for applications) until this site holds the witness's lease "
		   "again" : "unfenced: this site holds the witness's lease again");
	if (!fencing)
		witness_fence_file(w, false);
	fence_free(done);
}

/* Fences (or unfences) this site's database unless that is under way already. */
void witness_fence(struct witness *w, bool fence, const char *why)
{
	if (w->fence || !w->cfg->sites[w->self].database)
		return;
	if (fence && !w->self_fenced)
		log_error("witness: %s: fencing this site's database before a replica can take over",
			  why);
	if (fence && !w->self_fenced)
		witness_fence_file(w, true);
	w->self_fenced = fence;
	w->fence_op = fence ? FENCE_OP_FENCE : FENCE_OP_UNFENCE;
	w->fence = fence_start(w->base, w->cfg->sites[w->self].database, w->fence_op, 0,
			       witness_fence_done, w);
	if (!w->fence)
		log_error("witness: out of memory fencing the database");
}

static void witness_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct witness *w = arg;
	char why[512];

	(void)fd;
	(void)what;
	if (role_current(w->role) != ROLE_PRIMARY || w->paused)
		return;
	snprintf(why, sizeof(why), "the witness has not renewed this site's lease for %.1f s "
		 "(%.300s)", (double)(witness_now_ms() - w->lease_ok_ms) / 1000.0,
		 w->error[0] ? w->error : "etcd did not answer in time");
	w->holds = false;
	witness_fence(w, true, why);
}

/* The fence deadline: two thirds of the ttl after the last good renewal was sent. */
static void witness_arm_deadline(struct witness *w)
{
	int64_t at = w->lease_ok_ms + (int64_t)w->cfg->failover.ttl * 2 / 3 - witness_now_ms();
	struct timeval tv;

	if (at < 0)
		at = 0;
	tv.tv_sec = at / 1000;
	tv.tv_usec = (at % 1000) * 1000;
	event_add(w->deadline, &tv);
}

/* ---- the primary's lease ---- */

static void primary_keys_read(void *arg, const struct etcd_result *r);

/*
 * The keys say who is primary: this site (it holds the key), nobody (it may
 * take it), or another site, or an epoch above this site's (given to a
 * replica that won an election, even if its promotion failed): fenced at
 * once, never taken back. False in that last case.
 */
static bool primary_check_keys(struct witness *w)
{
	const char *self = w->cfg->sites[w->self].name;
	char why[256];

	w->holds = false;
	if (w->leader[0] && strcmp(w->leader, self) != 0 && w->leader_epoch >= role_epoch(w->role))
		snprintf(why, sizeof(why), "the witness names site %s primary at epoch %" PRIu64,
			 w->leader, w->leader_epoch);
	else if (w->epoch_kv > role_epoch(w->role))
		snprintf(why, sizeof(why), "the witness gave epoch %" PRIu64 " to another site "
			 "(this site's is %" PRIu64 ")", w->epoch_kv, role_epoch(w->role));
	else {
		w->holds = strcmp(w->leader, self) == 0 && w->leader_epoch == role_epoch(w->role) &&
			   w->leader_lease == w->lease;
		return true;
	}
	witness_fence(w, true, why);
	return false;
}

static void primary_renewed(void *arg, const struct etcd_result *r)
{
	struct witness *w = witness_reply(arg, r);

	if (!w)
		return;
	if (r->reply.ttl <= 0) {
		log_warning("witness: this site's lease ended at etcd: taking a new one");
		w->lease = 0;
		w->holds = false;
		witness_tick_now(w);
		return;
	}
	w->busy = etcd_get(w->etcd, w->prefix, true, primary_keys_read, w);
}

static void primary_keys_read(void *arg, const struct etcd_result *r)
{
	struct witness *w = witness_reply(arg, r);

	if (!w)
		return;
	witness_read_keys(w, &r->reply);
	if (!primary_check_keys(w))
		return;
	if (!w->holds) {
		witness_acquire(w);
		return;
	}
	w->lease_ok_ms = w->renew_sent_ms;
	witness_arm_deadline(w);
	if (w->self_fenced && !w->fence)
		witness_fence(w, false, NULL);
}

static void primary_granted(void *arg, const struct etcd_result *r)
{
	struct witness *w = witness_reply(arg, r);

	if (!w)
		return;
	w->lease = r->reply.lease_id;
	w->renew_sent_ms = w->grant_sent_ms;
	w->busy = etcd_get(w->etcd, w->prefix, true, primary_keys_read, w);
}

static void primary_step(struct witness *w)
{
	if (w->lease == 0) {
		w->grant_sent_ms = witness_now_ms();
		w->busy = etcd_lease_grant(w->etcd, witness_ttl_s(w), primary_granted, w);
		return;
	}
	w->renew_sent_ms = witness_now_ms();
	if (!w->holds)     /* the keys first: the key is taken only when they allow it */
		w->busy = etcd_get(w->etcd, w->prefix, true, primary_keys_read, w);
	else
		w->busy = etcd_lease_keepalive(w->etcd, w->lease, primary_renewed, w);
}

/* ---- the tick ---- */

/* A promotion under way keeps the lease the election put the leader key on. */
static void promoting_renewed(void *arg, const struct etcd_result *r)
{
	struct witness *w = witness_reply(arg, r);

	if (w && r->reply.ttl <= 0)
		log_error("witness: the lease ended during the promotion: the leader key is gone");
}

static void witness_observe_read(void *arg, const struct etcd_result *r)
{
	struct witness *w = witness_reply(arg, r);

	if (!w)
		return;
	witness_read_keys(w, &r->reply);
}

/* A role that is no longer primary lets the key go (a switchover's hand-over). */
static void witness_left_primary(struct witness *w)
{
	event_del(w->deadline);
	if (w->self_fenced)
		witness_fence_file(w, false);     /* the failover module fences from here */
	w->self_fenced = false;
	if (w->lease && etcd_lease_revoke(w->etcd, w->lease, witness_revoked, w))
		log_info("witness: this site is %s now: its lease and the leader key go",
			 role_name(role_current(w->role)));
	w->lease = 0;
	w->holds = false;
}

static void witness_step(struct witness *w)
{
	enum role_kind role;

	witness_members_step(w);
	if (!w->role) {
		w->busy = etcd_get(w->etcd, w->prefix, true, witness_observe_read, w);
		return;
	}
	role = role_current(w->role);
	if (w->fence_failed && !w->fence && role == ROLE_PRIMARY)
		witness_fence(w, w->self_fenced, "fencing again after a failure");
	if (w->was_primary && role != ROLE_PRIMARY)
		witness_left_primary(w);
	if (!w->was_primary && role == ROLE_PRIMARY) {
		w->lease_ok_ms = witness_now_ms();     /* the deadline counts from here */
		witness_arm_deadline(w);
		witness_release_candidacy(w);
	}
	w->was_primary = role == ROLE_PRIMARY;
	if (role == ROLE_PRIMARY)
		primary_step(w);
	else if (role == ROLE_REPLICA && w->promoting && w->lease)
		w->busy = etcd_lease_keepalive(w->etcd, w->lease, promoting_renewed, w);
	else if (role == ROLE_REPLICA && !w->promoting)
		witness_replica_step(w);
	else
		w->busy = etcd_get(w->etcd, w->prefix, true, witness_observe_read, w);
}

static void witness_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct witness *w = arg;

	(void)fd;
	(void)what;
	if (!w->busy)
		witness_step(w);
}

void witness_tick_now(struct witness *w)
{
	event_active(w->kick, 0, 0);
}

void witness_role_changed(struct witness *w)
{
	if (w)
		witness_tick_now(w);
}

int64_t witness_ttl_s(const struct witness *w)
{
	int64_t s = (int64_t)((w->cfg->failover.ttl + 999) / 1000);

	return s < 2 ? 2 : s;
}

static bool witness_events(struct witness *w)
{
	int64_t every = (int64_t)w->cfg->failover.ttl / 3;
	struct timeval tv = { every / 1000, (every % 1000) * 1000 };

	w->tick = event_new(w->base, -1, EV_PERSIST, witness_tick_cb, w);
	w->kick = event_new(w->base, -1, 0, witness_tick_cb, w);
	w->deadline = evtimer_new(w->base, witness_deadline_cb, w);
	return w->tick && w->kick && w->deadline && event_add(w->tick, &tv) == 0;
}

struct witness *witness_new(struct event_base *base, const struct strait_config *cfg,
		size_t self, struct role *role, struct failover *failover)
{
	struct witness *w = calloc(1, sizeof(*w));
	char err[256], path[4096];
	/* an attempt may take a quarter of the ttl: three endpoints fit before the deadline */
	int attempt_ms = (int)(cfg->failover.ttl / 4 > 500 ? cfg->failover.ttl / 4 : 500);

	if (!w) {
		log_error("witness: out of memory");
		return NULL;
	}
	*w = (struct witness){ .base = base, .cfg = cfg, .self = self, .role = role,
			       .failover = failover };
	snprintf(w->prefix, sizeof(w->prefix), "/strait/%s/", cfg->cluster);
	snprintf(w->error, sizeof(w->error), "no answer yet");
	w->reachable = false;
	w->etcd = etcd_new(base, (const char *const *)cfg->failover.etcd, cfg->failover.n_etcd,
			   attempt_ms, err, sizeof(err));
	if (!w->etcd || !witness_events(w)) {
		log_error("witness: %s", w->etcd ? "out of memory" : err);
		witness_free(w);
		return NULL;
	}
	snprintf(path, sizeof(path), "%s/%s", cfg->state_dir, WITNESS_FENCED_FILE);
	/* fenced by the witness before a restart: unfenced only once the lease is held again */
	w->self_fenced = role && access(path, F_OK) == 0;
	log_info("witness: automatic failover, etcd at %zu endpoint%s, lease ttl %" PRId64 " s%s",
		 cfg->failover.n_etcd, cfg->failover.n_etcd == 1 ? "" : "s", witness_ttl_s(w),
		 w->self_fenced ? "; the database stays fenced until this site holds the lease" : "");
	witness_tick_now(w);
	return w;
}

void witness_reconfigure(struct witness *w, const struct strait_config *cfg)
{
	if (w)
		w->cfg = cfg;
}

void witness_free(struct witness *w)
{
	if (!w)
		return;
	etcd_free(w->etcd);
	fence_free(w->fence);
	if (w->tick)
		event_free(w->tick);
	if (w->kick)
		event_free(w->kick);
	if (w->deadline)
		event_free(w->deadline);
	free(w->members);
	free(w);
}
