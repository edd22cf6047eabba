/*
 * witness.h — automatic failover with etcd as the witness (failover.mode
 * automatic; DESIGN.md, "Automatic failover").
 *
 * Keys, under /strait/<cluster>/ on the etcd cluster of failover.etcd:
 *   leader          "SITE EPOCH", attached to the primary's lease
 *   epoch           the epoch of the last primary the witness knew
 *   last_automatic  "UNIX-TIME SITE" of the last automatic failover
 *   paused          present while automatic failover is paused
 *   candidates/SITE the applied position of a replica that wants to take
 *                   over, attached to its lease
 *
 * The primary holds a lease of failover.ttl and the leader key, renewing the
 * lease every third of the ttl and reading the key back each time. When
 * neither has worked for two thirds of the ttl (counted from when the last
 * good renewal was sent, so well before etcd can end the lease), it fences
 * its own database; it unfences once it holds the key again. A key that
 * names another site fences it at once.
 *
 * A replica reads the keys every third of the ttl. Once the leader key is
 * gone (the lease ended) and the epoch the witness knew is the one this
 * replica knows (not during a switchover's hand-over), it is not paused and
 * the cooldown since the last automatic failover has passed, a replica that
 * passes the lag gate puts its candidacy; a tick later the candidate with
 * the highest applied position (then the name that sorts first) runs one
 * etcd transaction: the leader key still absent and the epoch key unchanged
 * → leader = itself at epoch+1, epoch = epoch+1, last_automatic = now. The
 * winner then runs the promotion of a failover to itself at that epoch
 * (failover_auto_start(): siblings brought level, the old primary fenced
 * when heard). A replica that fails the lag gate never runs for it, and
 * says why (status, log, metrics).
 *
 * The witness never promotes or fences without etcd's say: with no quorum
 * nobody wins an election, and a primary that cannot reach a quorum fences
 * itself (it cannot tell a partition from an outage).
 *
 * Ownership: witness_new() keeps pointers to the config, role and failover
 * (the daemon's); witness_free() drops pending requests.
 */
#ifndef STRAIT_WITNESS_H
#define STRAIT_WITNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/daemon/control.h"

struct event_base;
struct failover;
struct json_out;
struct role;
struct strait_config;
struct witness;

/*
 * The witness of a data site (role and failover not NULL), or the observer
 * of a witness site (both NULL: status only). NULL (logged) on a bad config
 * or out of memory.
 */
struct witness *witness_new(struct event_base *base, const struct strait_config *cfg,
		size_t self, struct role *role, struct failover *failover);
void witness_free(struct witness *w);
/* The daemon took a new config (cooldown, limits); the endpoints and ttl stay. */
void witness_reconfigure(struct witness *w, const struct strait_config *cfg);

/* This site's role or epoch changed: act on it now, not at the next tick. */
void witness_role_changed(struct witness *w);

/* straitctl pause-auto / resume-auto: sets or clears the paused key; answers req. */
void witness_cmd_pause(struct witness *w, struct control_request *req, bool pause);

/* The "witness" object of status. */
void witness_status_json(const struct witness *w, struct json_out *j);

/* What metrics export. */
struct witness_metrics {
	bool reachable;              /* the last request was answered */
	bool paused;
	bool holds;                  /* primary: holds the leader key */
	bool self_fenced;            /* primary: fenced its database for want of the lease */
	bool blocked;                /* replica: the primary's lease ended and it will not promote */
	double lease_age_s;          /* primary: since the last good renewal was sent; -1 none */
	uint64_t automatic_failovers; /* won and promoted here */
};
void witness_metrics(const struct witness *w, struct witness_metrics *out);

#endif
