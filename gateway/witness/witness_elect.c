/*
 * witness_elect.c — who holds the leader key: the primary takes it, and
 * once its lease ended the replicas that pass the lag gate run for it (see
 * witness.h); the winner promotes itself.
 */
#include "gateway/witness/witness_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "config/config.h"
#include "gateway/cluster/failover.h"
#include "gateway/cluster/role.h"

static const char *self_name(const struct witness *w)
{
	return w->cfg->sites[w->self].name;
}

void witness_revoked(void *arg, const struct etcd_result *r)
{
	struct witness *w = arg;

	if (!r->ok)
		log_warning("witness: letting the lease go: %s (it ends with its ttl)", r->error);
	(void)w;
}

/* ---- the primary takes the key ---- */

static void acquired(void *arg, const struct etcd_result *r);

/*
 * One transaction: the leader key absent (or still holding value: this
 * site's own from before, or a primary's of a lower epoch) and the epoch
 * key as last read (no election since) → this site's, with its lease, and
 * the epoch key with it.
 */
static void acquire_txn(struct witness *w, const char *value, size_t value_len)
{
	char leader_key[160], epoch_key[160], mine[96], epoch[24];
	struct etcd_compare cmp[2] = {
		{ .key = leader_key, .target = ETCD_CMP_CREATE, .number = 0 },
		{ .key = epoch_key, .target = ETCD_CMP_MOD, .number = w->epoch_rev },
	};
	struct etcd_op ok[2], fail = { .type = ETCD_OP_RANGE, .key = leader_key };
	struct etcd_txn txn = { cmp, 2, ok, 2, &fail, 1 };

	witness_key(w, "leader", leader_key, sizeof(leader_key));
	witness_key(w, "epoch", epoch_key, sizeof(epoch_key));
	snprintf(mine, sizeof(mine), "%s %" PRIu64, self_name(w), role_epoch(w->role));
	snprintf(epoch, sizeof(epoch), "%" PRIu64, role_epoch(w->role));
	if (value) {
		cmp[0].target = ETCD_CMP_VALUE;
		cmp[0].value = value;
		cmp[0].value_len = value_len;
	}
	ok[0] = (struct etcd_op){ .type = ETCD_OP_PUT, .key = leader_key, .value = mine,
				  .value_len = strlen(mine), .lease = w->lease };
	ok[1] = (struct etcd_op){ .type = ETCD_OP_PUT, .key = epoch_key, .value = epoch,
				  .value_len = strlen(epoch) };
	w->renew_sent_ms = witness_now_ms();
	w->busy = etcd_txn(w->etcd, &txn, acquired, w);
}

static void acquired(void *arg, const struct etcd_result *r)
{
	struct witness *w = witness_reply(arg, r);
	char site[64], why[256];
	uint64_t epoch;
	const struct etcd_kv *kv;

	if (!w)
		return;
	if (r->reply.succeeded) {
		if (!w->holds)
			log_notice("witness: site %s holds the leader key at epoch %" PRIu64, self_name(w),
				   role_epoch(w->role));
		w->holds = true;
		w->lease_ok_ms = w->renew_sent_ms;
		witness_tick_now(w);          /* renews, reads back, re-arms the deadline */
		return;
	}
	kv = r->reply.n_kvs ? &r->reply.kvs[0] : NULL;
	if (!kv) {
		witness_tick_now(w);          /* gone meanwhile: try again */
		return;
	}
	if (!witness_parse_leader(kv->value, kv->value_len, site, sizeof(site), &epoch) ||
	    (strcmp(site, self_name(w)) == 0 && epoch <= role_epoch(w->role)) ||
	    epoch < role_epoch(w->role)) {
		/* this site's own from before (a restart), or a primary's of an older epoch */
		acquire_txn(w, kv->value, kv->value_len);
		return;
	}
	snprintf(why, sizeof(why), "the witness names site %s primary at epoch %" PRIu64, site,
		 epoch);
	w->holds = false;
	witness_fence(w, true, why);
}

void witness_acquire(struct witness *w)
{
	acquire_txn(w, NULL, 0);
}

/* ---- the replicas' election ---- */

void witness_release_candidacy(struct witness *w)
{
	char key[160];

	if (!w->candidate)
		return;
	w->candidate = false;
	witness_key(w, "candidates/", key, sizeof(key));
	strncat(key, self_name(w), sizeof(key) - strlen(key) - 1);
	if (!etcd_delete(w->etcd, key, false, witness_revoked, w))
		log_warning("witness: out of memory withdrawing the candidacy (it ends with its lease)");
}

static void auto_done(void *arg, bool ok, const char *body)
{
	struct witness *w = arg;

	w->promoting = false;
	w->candidate = false;
	if (ok) {
		w->automatic_failovers++;
		log_notice("witness: automatic failover done:\n%s", body ? body : "");
		witness_tick_now(w);
		return;
	}
	log_error("witness: the automatic failover failed: %s; the leader key goes, so that "
		  "another replica may run", body ? body : "");
	w->retry_ms = witness_now_ms() + (int64_t)w->cfg->failover.ttl * 3;
	if (w->lease && !etcd_lease_revoke(w->etcd, w->lease, witness_revoked, w))
		log_warning("witness: out of memory letting the lease go (it ends with its ttl)");
	w->lease = 0;
}

static void elected(void *arg, const struct etcd_result *r)
{
	struct witness *w = witness_reply(arg, r);
	uint64_t epoch = w->epoch_kv + 1;

	if (!w)
		return;
	if (!r->reply.succeeded) {
		log_info("witness: another site took the leader key first");
		witness_release_candidacy(w);
		return;
	}
	log_notice("witness: the primary's lease ended; site %s won the election for epoch %"
		   PRIu64 ": promoting itself", self_name(w), epoch);
	w->candidate = false;
	w->promoting = failover_auto_start(w->failover, epoch, auto_done, w);
	if (!w->promoting)
		auto_done(w, false, "the promotion could not start (another operation runs)");
}

/* The transaction that makes this site the leader at the witness's epoch + 1. */
static void elect(struct witness *w)
{
	char leader_key[160], epoch_key[160], last_key[160], cand_key[160];
	char mine[96], epoch[24], last[96];
	struct etcd_compare cmp[2] = {
		{ .key = leader_key, .target = ETCD_CMP_CREATE, .number = 0 },
		{ .key = epoch_key, .target = ETCD_CMP_MOD, .number = w->epoch_rev },
	};
	struct etcd_op ok[4];
	struct etcd_txn txn = { cmp, 2, ok, 4, NULL, 0 };

	witness_key(w, "leader", leader_key, sizeof(leader_key));
	witness_key(w, "epoch", epoch_key, sizeof(epoch_key));
	witness_key(w, "last_automatic", last_key, sizeof(last_key));
	witness_key(w, "candidates/", cand_key, sizeof(cand_key));
	strncat(cand_key, self_name(w), sizeof(cand_key) - strlen(cand_key) - 1);
	snprintf(mine, sizeof(mine), "%s %" PRIu64, self_name(w), w->epoch_kv + 1);
	snprintf(epoch, sizeof(epoch), "%" PRIu64, w->epoch_kv + 1);
	snprintf(last, sizeof(last), "%lld %s", (long long)time(NULL), self_name(w));
	ok[0] = (struct etcd_op){ .type = ETCD_OP_PUT, .key = leader_key, .value = mine,
				  .value_len = strlen(mine), .lease = w->lease };
	ok[1] = (struct etcd_op){ .type = ETCD_OP_PUT, .key = epoch_key, .value = epoch,
				  .value_len = strlen(epoch) };
	ok[2] = (struct etcd_op){ .type = ETCD_OP_PUT, .key = last_key, .value = last,
				  .value_len = strlen(last) };
	ok[3] = (struct etcd_op){ .type = ETCD_OP_DELETE, .key = cand_key };
	w->busy = etcd_txn(w->etcd, &txn, elected, w);
}

/* Whether this site is the best candidate: the highest position, then the first name. */
static bool best_candidate(const struct witness *w)
{
	const struct witness_candidate *best = NULL;

	for (size_t i = 0; i < w->n_candidates; i++) {
		const struct witness_candidate *c = &w->candidates[i];

		if (!best || c->applied > best->applied ||
		    (c->applied == best->applied && strcmp(c->site, best->site) < 0))
			best = c;
	}
	return best && strcmp(best->site, self_name(w)) == 0;
}

static void candidacy_put(void *arg, const struct etcd_result *r)
{
	struct witness *w = witness_reply(arg, r);

	if (!w)
		return;
	w->candidate = true;
	w->candidate_ms = witness_now_ms();
	log_notice("witness: the primary's lease ended: site %s runs for primary (applied %"
		   PRIu64 ")", self_name(w), w->applied);
}

static void candidacy_leased(void *arg, const struct etcd_result *r)
{
	struct witness *w = witness_reply(arg, r);
	char key[160], value[24];

	if (!w)
		return;
	if (r->reply.ttl <= 0) {
		w->lease = 0;                 /* the keepalive found it gone: a new one next tick */
		w->candidate = false;
		return;
	}
	w->lease = r->reply.lease_id ? r->reply.lease_id : w->lease;
	if (w->candidate) {
		if (witness_now_ms() - w->candidate_ms >= (int64_t)w->cfg->failover.ttl / 3 &&
		    best_candidate(w))
			elect(w);
		return;
	}
	witness_key(w, "candidates/", key, sizeof(key));
	strncat(key, self_name(w), sizeof(key) - strlen(key) - 1);
	snprintf(value, sizeof(value), "%" PRIu64, w->applied);
	w->busy = etcd_put(w->etcd, key, value, strlen(value), w->lease, candidacy_put, w);
}

/* Why this replica does not run now, besides the lag gate ("" when it may). */
static bool replica_holds_back(struct witness *w)
{
	int64_t since = w->last_auto_s ? (int64_t)time(NULL) - w->last_auto_s : INT64_MAX;
	int64_t cooldown = (int64_t)(w->cfg->failover.cooldown / 1000);

	w->holding[0] = '\0';
	if (w->leader[0])
		snprintf(w->holding, sizeof(w->holding), "site %s holds the leader key", w->leader);
	else if (w->paused)
		snprintf(w->holding, sizeof(w->holding), "automatic failover is paused");
	else if (w->epoch_kv != role_epoch(w->role))
		snprintf(w->holding, sizeof(w->holding), "the witness knows epoch %" PRIu64 ", this "
			 "site %" PRIu64 " (a hand-over under way)", w->epoch_kv, role_epoch(w->role));
	else if (since < cooldown)
		snprintf(w->holding, sizeof(w->holding), "the last automatic failover was %" PRId64
			 " s ago (failover.cooldown: %" PRId64 " s)", since, cooldown);
	else if (witness_now_ms() < w->retry_ms)
		snprintf(w->holding, sizeof(w->holding), "its last promotion failed: trying again "
			 "later");
	return w->holding[0] != '\0';
}

static void replica_read(void *arg, const struct etcd_result *r)
{
	struct witness *w = witness_reply(arg, r);
	char why[512];

	if (!w)
		return;
	witness_read_keys(w, &r->reply);
	if (replica_holds_back(w)) {
		w->blocked = false;
		if (w->leader[0])
			witness_release_candidacy(w);
		return;
	}
	if (!failover_auto_ready(w->failover, why, sizeof(why), &w->applied)) {
		if (!w->blocked || strcmp(w->blocked_why, why) != 0)
			log_error("witness: the primary's lease on the witness ended, but site %s does "
				  "not promote itself: %s", self_name(w), why);
		w->blocked = true;
		snprintf(w->blocked_why, sizeof(w->blocked_why), "%s", why);
		witness_release_candidacy(w);
		return;
	}
	w->blocked = false;
	if (w->lease == 0)
		w->busy = etcd_lease_grant(w->etcd, witness_ttl_s(w), candidacy_leased, w);
	else
		w->busy = etcd_lease_keepalive(w->etcd, w->lease, candidacy_leased, w);
}

void witness_replica_step(struct witness *w)
{
	w->busy = etcd_get(w->etcd, w->prefix, true, replica_read, w);
}
