/*
 * failover_int.h — what the failover files share: the operation's state (one
 * struct failover per site) and the steps each file offers the others.
 * Private to gateway/cluster/: failover.c (the object, the log, the
 * asynchronous building blocks, promotion, failover, stepping down),
 * switchover.c, rejoin.c, fence_proto.c (FENCE, PROMOTE and PROMOTE_ACK
 * frames, HEARTBEATs), readiness.c (failover --dry-run), durations.c
 * (role-durations) and failover_cmd.c (the commands' arguments).
 *
 * An operation runs one step at a time on the event loop: each step calls the
 * next one, or fo_fail() / fo_end(), which answer the command.
 */
#ifndef STRAIT_FAILOVER_INT_H
#define STRAIT_FAILOVER_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <event2/util.h>
#include <libpq-fe.h>

#include "gateway/cluster/failover.h"
#include "replicator/fence.h"

struct config_stream;
struct fence;
struct frame;
struct lostxacts;
struct lostxacts_peek;
struct pgquery;
struct relay_proto_promote_ack;

#define FO_DRAIN_POLL_MS     50
#define FO_DRAIN_TIMEOUT_MS  60000
#define FO_PROMOTE_TIMEOUT_MS 60000
#define FO_RETRY_MS          200
#define FO_FENCE_RETRY_MS    5000
#define FO_MAX_STREAMS       64
#define FO_MAX_PEERS         16
#define FO_DRY_DB_TIMEOUT_MS 5000

enum fo_op {
	FO_NONE,
	FO_SWITCHOVER,           /* this site is the primary handing over */
	FO_PROMOTE,              /* this site becomes primary (failover, or asked by PROMOTE) */
	FO_STEP_DOWN,            /* fencing this site's database after a higher epoch */
	FO_REJOIN,               /* this fenced site becomes the primary's replica */
	FO_DRY_RUN,              /* failover --dry-run: asking this site's database */
	FO_FOLLOW,               /* this replica takes the streams from a new primary */
	FO_UNFENCE,              /* a site fenced at start takes its role back (lost state) */
};

struct fo_sql {
	char *sql;
	char *what;              /* the log line when it succeeded */
	int retries;             /* left, for a statement that may fail for a while */
	void (*result)(struct failover *f, const PGresult *res);
};

struct fo_slot {
	char stream[64];
	uint64_t lsn;
};

struct fo_peer {
	char name[64];
	uint64_t pending_wal;    /* from its last HEARTBEAT (0: caught up) */
	time_t heard_at;
	time_t fence_sent_at;    /* primary: when FENCE last went to this fenced peer */
	time_t follow_asked_at;  /* replica: when FOLLOW_REQ last went to this new primary */
};

struct failover {
	struct event_base *base;
	const struct strait_config *cfg;
	size_t self;
	struct relay *relay;
	struct role *role;
	struct failover_ops ops;
	void *arg;

	enum fo_op op;
	struct control_request *req; /* the command being answered, or NULL */
	char peer[64];           /* the other site of the operation */
	char *log;               /* the steps so far, one line each */
	size_t log_len;
	bool log_failed;
	struct timespec started;
	uint64_t new_epoch;
	bool answer_peer;        /* promotion asked by PROMOTE: answer PROMOTE_ACK */
	bool unfence_on_fail;    /* switchover: the primary was fenced by us */
	bool force;              /* failover --force */
	uint64_t auto_epoch;     /* automatic failover: the epoch the witness gave; 0: typed */
	bool streams_stopped;    /* promotion: the streams are stopped, rebuild on failure */
	bool fence_holds;        /* stepped down: the database was fenced (else it is retried) */

	struct fence *fence;
	void (*fence_next)(struct failover *f);
	struct pgquery *q;
	struct fo_sql *steps;
	size_t n_steps, step_i;
	void (*steps_next)(struct failover *f);
	struct event *timer;     /* retries, drain polls, timeouts */
	void (*timer_fn)(struct failover *f);
	uint64_t drain_lsn;
	int64_t deadline_ms;

	struct fo_slot slots[FO_MAX_STREAMS];
	size_t n_slots;
	struct fo_peer peers[FO_MAX_PEERS];
	size_t n_peers;

	/* fenced site: what the primary (fence_from) said it applied of ours */
	char fence_from[64];
	struct fo_slot applied[FO_MAX_STREAMS];
	size_t n_applied;
	/* primary: reading origins for a FENCE */
	struct pgquery *q_info;
	char info_peer[64];
	/* rejoin: the stream whose lost transactions are being read */
	size_t rj_i;
	struct lostxacts *lx;
	struct lostxacts_peek *peek;
	/* failover --dry-run: its own connection, so a stale answer is never mistaken */
	struct pgquery *q_dry;
	bool dry_json;
	struct failover_position positions[FAILOVER_MAX_POSITIONS]; /* the other replicas' */
	size_t n_positions;
	/* failover among three or more sites (level.c) */
	char claim_wait[FO_MAX_PEERS][64]; /* siblings whose answer to CLAIM is awaited */
	size_t n_claim_wait;
	bool claimed;            /* every sibling answered: another failover is told no */
	size_t lv_sites[FO_MAX_PEERS]; /* the reachable siblings, taken from in turn */
	size_t lv_n;
	size_t lv_stream, lv_sibling; /* the level's place: config stream, sibling (follow: follow_at) */
	bool catching_up;        /* a streams_catchup() of ours runs */
	struct fo_slot follow_at[FO_MAX_STREAMS]; /* follow: where the new primary's slots start */
	size_t n_follow;
	/* primary: where its slots started when it was promoted (FOLLOW_REQ); this process only */
	struct fo_slot starts[FO_MAX_STREAMS];
	size_t n_starts;
	/* a rejoin typed while the step-down still fences the database waits for it */
	struct control_request *rejoin_waiting;
	char rejoin_site[64];
	struct event *rejoin_ev;
};

/* failover.c: the log */
void fo_step(struct failover *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Adds a multi-line log (fence's) with an indent. */
void fo_step_lines(struct failover *f, const char *text);
/* Seconds since the operation began. */
double fo_elapsed(const struct failover *f);
int64_t fo_now_ms(void);
void fo_begin(struct failover *f, enum fo_op op, struct control_request *req, const char *peer);
/* Ends the operation: answers the command (if any) with the log and a last line. */
void fo_end(struct failover *f, bool ok, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Ends the operation with why, after undoing what must not stay half done. */
void fo_fail(struct failover *f, const char *why);

/* failover.c: the asynchronous building blocks */
void fo_arm(struct failover *f, unsigned ms, void (*fn)(struct failover *f));
/* Fences or unfences this site's database, then next (fo_fail() on failure). */
void fo_fence(struct failover *f, enum fence_op op, void (*next)(struct failover *f));
/* Queues a statement for fo_steps_run(); false when out of memory. */
bool fo_add_sql(struct failover *f, int retries,
		void (*result)(struct failover *f, const PGresult *res), const char *what,
		const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* Runs the queued statements in order, then f->steps_next. */
void fo_steps_run(struct failover *f);
/* SQL quoting for names from the config: "ident", 'literal'. NULL: out of memory. */
char *fo_quote(const char *s, char q);
/* Prefix of a statement that must write to a fenced database. */
extern const char fo_rw[];

/* failover.c: sites, streams and what this site knows of its peers */
void fo_time_text(int64_t us, char *buf, size_t len);
bool fo_stream_with(const struct failover *f, const struct config_stream *cs, size_t peer);
/* Whether one of this site's streams goes to more than one site. */
bool fo_many_sites(const struct failover *f);
/* The other sites that share a stream with this one, into sites[] (at most max); how many. */
size_t fo_stream_peers(const struct failover *f, size_t *sites, size_t max);
int fo_site_index(const struct failover *f, const char *name);
const char *fo_old_primary(const struct failover *f);
const struct fo_peer *fo_find_peer(const struct failover *f, const char *name);
void fo_known_lag(const struct failover *f, const char *peer, struct failover_lag *lag);

/* failover.c: promotion and failover */
/* Queues the end of this site's leftover apply sessions; false when out of memory. */
bool fo_add_end_apply_sessions(struct failover *f);
/* Queues stream's origin (created if missing) set to lsn, either way; false when out of memory. */
bool fo_add_origin_at(struct failover *f, const char *stream, uint64_t lsn);
void fo_promote(struct failover *f);
/* failover --to (this site, checked by failover_cmd_failover()) from old. */
void fo_failover_start(struct failover *f, struct control_request *req, const char *old,
		bool force);

/* switchover.c */
/* switchover --to (checked by failover_cmd_switchover()). */
void fo_switch_start(struct failover *f, struct control_request *req, const char *to);
/* PROMOTE_ACK ok: point the origins at the new slots, drop our slots, become replica. */
void fo_switch_acked(struct failover *f, const struct relay_proto_promote_ack *ack);
/* A PROMOTE_ACK to a replica from the new primary of a switchover: take its streams. */
void fo_follow_start(struct failover *f, const char *peer, const struct relay_proto_promote_ack *ack);
/* The new primary of a switchover tells the other replicas where its streams start. */
void fo_send_follow(struct failover *f);
/* The primary was unfenced again after a failed switchover. */
void fo_switch_unfenced(struct failover *f);
/* Removes a stream's spool (it served the old direction). */
void fo_remove_spool(struct failover *f, const char *stream);

/* switchover.c: the follow's second half, once level (origins to the slots, role, streams) */
void fo_follow_move(struct failover *f);

/* level.c: failover among three or more sites */
/* Claim, then level this site with the reachable siblings, then fo_promote(). */
void fo_level_start(struct failover *f, const char *old);
void fo_claim_frame(struct failover *f, const char *peer, const struct frame *fr);
/* A follow with siblings: level with the new primary first, then fo_follow_move(). */
void fo_follow_level(struct failover *f);

/* rejoin.c: rejoin (checked by failover_cmd_rejoin()) */
void fo_rejoin_start(struct failover *f, struct control_request *req);

/* fence_proto.c */
void fo_send_promote_ack(struct failover *f, const char *peer, bool ok, const char *why);

/* readiness.c: failover --dry-run */
void fo_dry_run(struct failover *f, struct control_request *req, bool force, bool json);

/* durations.c */
/* 1 loaded, 0 none measured yet, -1 unreadable (err says why). */
int fo_durations_load(const struct failover *f, struct failover_durations *d, char *err,
		size_t errlen);
/* Keeps how long a role change took, for the next dry run's estimate. */
void fo_record_duration(struct failover *f, enum failover_change c, double seconds);

/* failover_cmd.c */
const char *fo_op_name(enum fo_op op);
/* Answers req with an error (a newline added). */
void fo_refuse(struct control_request *req, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/*
 * A step-down ended (fo_end()): a rejoin that waited for it runs its checks
 * now, from the loop (never inside the operation that just ended).
 */
void fo_after_step_down(struct failover *f);
/* The event fo_after_step_down() fires (made by failover_new()). */
void fo_rejoin_resume_cb(evutil_socket_t fd, short what, void *arg);

#endif
