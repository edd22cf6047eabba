/*
 * witness_int.h — what the files of the witness share: its state and the
 * steps one file hands another. Private to gateway/witness/.
 */
#ifndef STRAIT_WITNESS_INT_H
#define STRAIT_WITNESS_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/witness/etcd.h"
#include "gateway/witness/witness.h"

struct event;
struct fence;

/* In STATE_DIR while the witness keeps this site's database fenced. */
#define WITNESS_FENCED_FILE "witness-fenced"
#define WITNESS_MAX_CANDIDATES 16
/* Members and the etcd leader are asked for every this many ticks. */
#define WITNESS_MEMBERS_EVERY 5

struct witness_candidate {
	char site[64];
	uint64_t applied;
};

struct witness_member {
	uint64_t id;
	char name[64];
	char url[128];
};

struct witness {
	struct event_base *base;
	const struct strait_config *cfg;
	size_t self;
	struct role *role;               /* NULL at a witness site */
	struct failover *failover;
	struct etcd *etcd;
	struct event *tick;              /* every third of the ttl */
	struct event *kick;              /* a tick now */
	struct event *deadline;          /* primary: fence when the lease was not renewed by then */
	char prefix[96];                 /* /strait/<cluster>/ */
	bool busy;                       /* the tick's request is in flight */

	/* etcd */
	bool reachable;
	bool ever_answered;
	char error[512];
	struct witness_member *members;
	size_t n_members;
	uint64_t etcd_leader;            /* member id; 0: none known */
	unsigned ticks;
	bool members_busy;

	/* the keys, as last read */
	char leader[64];                 /* "": no leader key */
	uint64_t leader_epoch;
	int64_t leader_lease;
	int64_t leader_seen_ms;
	uint64_t epoch_kv;               /* 0: no epoch key */
	int64_t epoch_rev;
	bool paused;
	int64_t last_auto_s;             /* Unix time; 0: never */
	char last_auto_site[64];
	struct witness_candidate candidates[WITNESS_MAX_CANDIDATES];
	size_t n_candidates;

	/* this site's lease (the primary's, or a candidate's) */
	int64_t lease;                   /* 0: none */
	int64_t grant_sent_ms;
	int64_t renew_sent_ms;
	int64_t lease_ok_ms;             /* when the last good renewal was sent */

	/* primary */
	bool was_primary;
	bool holds;                      /* the leader key is this site's, at its epoch */
	bool self_fenced;
	bool fence_failed;
	int fence_op;                    /* enum fence_op of the run below */
	struct fence *fence;

	/* replica */
	bool blocked;                    /* the lease ended, and this site will not promote */
	char blocked_why[512];
	char holding[256];               /* why it does not run now otherwise ("": it would) */
	int64_t retry_ms;                /* a failed promotion: not again before */
	bool candidate;                  /* its candidacy key is put */
	int64_t candidate_ms;
	uint64_t applied;
	bool promoting;
	uint64_t automatic_failovers;
};

/* witness.c */
int64_t witness_now_ms(void);
int64_t witness_ttl_s(const struct witness *w);
void witness_key(const struct witness *w, const char *name, char *buf, size_t len);
/*
 * The start of every reply callback: the tick's request is over; the
 * witness, or NULL (the failure noted, reachable false) when it failed.
 */
struct witness *witness_reply(void *arg, const struct etcd_result *r);
bool witness_parse_leader(const char *v, size_t len, char *site, size_t site_len,
		uint64_t *epoch);
void witness_read_keys(struct witness *w, const struct etcd_reply *rep);
void witness_fence(struct witness *w, bool fence, const char *why);
void witness_tick_now(struct witness *w);

/* witness_elect.c */
/* The primary takes the leader key (absent, or its own from before a restart). */
void witness_acquire(struct witness *w);
void witness_replica_step(struct witness *w);
void witness_release_candidacy(struct witness *w);
void witness_revoked(void *arg, const struct etcd_result *r);

/* witness_report.c */
void witness_members_step(struct witness *w);

#endif
