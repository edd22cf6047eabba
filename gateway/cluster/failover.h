/*
 * failover.h — planned switchover, DR failover, stepping down on a higher
 * epoch, and rejoin: the control path that moves the primary role between
 * two sites (DESIGN.md, "Switchover, failover and rejoin").
 *
 *   switchover --to T   (run on the primary P): fence P's database, wait
 *                       until every stream to T is drained, send PROMOTE;
 *                       T raises its sequences, unfences its database,
 *                       creates each stream's slot, takes epoch+1 and
 *                       answers PROMOTE_ACK with the slots' start LSNs; P
 *                       points its origins there, drops its slots and
 *                       becomes T's replica. Nothing committed is lost.
 *   failover --to T     (run on T, P unreachable): the lag gate, then the
 *                       same promotion alone. P learns the epoch when it is
 *                       heard again and fences its database.
 *   failover --to T --dry-run
 *                       a readiness report, nothing done: would a failover
 *                       to T go through if P were lost now, and what would
 *                       it cost (failover_readiness()). T's database is
 *                       asked one read-only question; the rest is what T
 *                       knows already.
 *   rejoin P            (run on P, fenced): the transactions P committed that
 *                       T never applied (T says how far it applied in FENCE)
 *                       are read from P's slot into a SQL file; then P's
 *                       slot and origins go, its database is unfenced and it
 *                       becomes T's replica, re-seeded by an initial sync.
 *
 * Streams follow the role (stream.h): the daemon rebuilds them through
 * ops->rebuild whenever this module changes the role. Every command prints
 * its steps, one line each, and answers later through control_reply().
 *
 * Ownership: failover_new() keeps pointers to the relay and role (the
 * daemon's, not owned); failover_free() answers a command still running
 * with an error.
 */
#ifndef STRAIT_FAILOVER_H
#define STRAIT_FAILOVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/cluster/role.h"
#include "gateway/daemon/control.h"

struct control_request;
struct event_base;
struct frame;
struct relay;
struct relay_proto_heartbeat;
struct strait_config;
struct streams;

struct failover_ops {
	struct streams *(*streams)(void *arg);   /* the daemon's current streams, or NULL */
	void (*rebuild)(void *arg);              /* the role changed: streams follow it */
	void (*stop)(void *arg);                 /* no stream runs until the next rebuild */
};

struct failover;
struct failover_position;

/* NULL when out of memory (logged). */
struct failover *failover_new(struct event_base *base, const struct strait_config *cfg,
		size_t self, struct relay *relay, struct role *role,
		const struct failover_ops *ops, void *arg);
void failover_free(struct failover *f);
/* The daemon took a new config (limits, conninfo). */
void failover_reconfigure(struct failover *f, const struct strait_config *cfg);

/* Control commands (argv[0] is the command's name). */
void failover_cmd_switchover(struct failover *f, struct control_request *req, int argc,
		char **argv);
void failover_cmd_failover(struct failover *f, struct control_request *req, int argc,
		char **argv);
void failover_cmd_rejoin(struct failover *f, struct control_request *req, int argc,
		char **argv);

/* Relay: PROMOTE and PROMOTE_ACK frames, and what peers say in HEARTBEATs. */
void failover_frame(struct failover *f, const char *peer, const struct frame *fr);
void failover_heartbeat(struct failover *f, const char *peer, uint64_t epoch,
		const struct relay_proto_heartbeat *hb);
/*
 * This site heard a higher epoch from peer and stepped down to fenced (the
 * daemon rebuilt the streams already): fence the database. Also at start-up
 * when the role is fenced (peer NULL).
 */
void failover_stepped_down(struct failover *f, const char *peer);

/*
 * The site a failover here would take over from (the primary this site
 * follows, else the other end of its streams); NULL when there is none.
 */
const char *failover_old_primary(const struct failover *f);
/*
 * The other replicas' positions, for the next failover --dry-run (copied;
 * it forgets them once it reported).
 */
void failover_set_positions(struct failover *f, const struct failover_position *v, size_t n);

/*
 * Automatic failover (gateway/witness): whether this replica passes the lag
 * gate for a failover from the primary it follows now (why gets the gate's
 * line, or what stops it), and the lowest position it applied of that
 * primary's streams, to compare with other candidates.
 */
bool failover_auto_ready(const struct failover *f, char *why, size_t len, uint64_t *applied);
/*
 * This replica won the witness's election for epoch: the promotion of
 * failover --to this site, at that epoch, with the lag gate again; the old
 * primary may be reachable (its lease ended, so it fenced its database
 * first). done(arg, ok, output) comes once, from the loop. False (nothing
 * started) when another operation runs or this site is no replica.
 */
bool failover_auto_start(struct failover *f, uint64_t epoch, control_reply_fn done, void *arg);

/*
 * A site fenced at start (its state directory was lost) learned from its
 * peers that it keeps or takes back a role that writes: unfence its database
 * (why goes into the log).
 */
void failover_unfence(struct failover *f, const char *why);

/*
 * A fenced site: whether its database was fenced since it stepped down (false
 * while fencing is retried, and before the first attempt ends).
 */
bool failover_fence_holds(const struct failover *f);

/* ---- pure parts, for tests ---- */

/*
 * A stream configured from site from to sites to[0..n_to), at site self
 * whose role is role: where it runs from now (*src) and to (dst[], at most
 * n_to + 1 entries); returns how many destinations dst holds here: every
 * other end when self is the source (a primary sends to every end of the
 * stream, the configured source too when it is a replica now), 1 (self)
 * when self receives it, 0 when it does not run here (self is no end, is
 * fenced, or is a replica that does not know which end sends).
 * A replica receives from primary (the site it knows is primary) when that
 * is another end of the stream; not knowing (CONFIG_SITE_NONE), from the
 * configured source, or from the other end of a two-ended stream when it is
 * the configured source itself.
 */
size_t failover_stream_ends(size_t from, const size_t *to, size_t n_to, size_t self,
		enum role_kind role, size_t primary, size_t *src, size_t *dst);

/* What the target of a failover knows of what it lacks. */
struct failover_lag {
	uint64_t lag_bytes;          /* received or reported, not applied */
	double lag_seconds;          /* age of the oldest commit not applied */
	int64_t last_applied_time_us; /* commit time of the last applied transaction, 0 unknown */
	uint64_t applied_lsn;        /* the lowest applied over the streams from it, 0 unknown */
	bool known;                  /* the site ever heard of the streams' position */
};

/*
 * The lag gate: true when a failover may go on (lag within both limits, or
 * force). msg gets one line either way: what would be lost.
 */
bool failover_gate(const struct failover_lag *lag, uint64_t max_bytes, uint64_t max_ms,
		bool force, char *msg, size_t msglen);

/*
 * How long role changes took on this site, kept in STATE_DIR/role-durations
 * (written when one completes) so that a dry run can say how long a
 * failover is expected to take. One line per kind, the latest measurement:
 *
 *   # strait: how long role changes took on this site, written by straitd
 *   format=1
 *   switchover=2.310 1764769875      (seconds, then when: Unix time)
 *   promotion=1.120 1764769800
 *   failover=0.950 1764769000
 *
 * switchover: the whole hand-over measured on the old primary; promotion:
 * this site's half of a switchover; failover: a failover to this site.
 */
#define FAILOVER_DURATIONS_FILE     "role-durations"
#define FAILOVER_DURATIONS_FILE_TMP "role-durations.tmp"

enum failover_change {
	FAILOVER_CHANGE_SWITCHOVER,
	FAILOVER_CHANGE_PROMOTION,
	FAILOVER_CHANGE_FAILOVER,
	FAILOVER_CHANGES,
};

struct failover_durations {
	double seconds[FAILOVER_CHANGES];
	int64_t at[FAILOVER_CHANGES];        /* Unix time; 0: never measured */
};

/* "switchover", "promotion", "failover". */
const char *failover_change_name(enum failover_change c);
/* The file's text; false when buf is too small. */
bool failover_durations_format(const struct failover_durations *d, char *buf, size_t len);
/* Parses the file's text; false with the problem (and its line) in err. */
bool failover_durations_parse(const char *text, struct failover_durations *out, char *err,
		size_t errlen);
/*
 * The estimate for a failover to this site: the latest failover or promotion
 * measured here (the same work), else the latest switchover (the whole
 * hand-over, an upper bound). False when none was measured.
 */
bool failover_durations_expected(const struct failover_durations *d, enum failover_change *which,
		double *seconds, int64_t *at);

/* What a dry run found out; failover_readiness() turns it into the report. */
/* Where another replica of the old primary's streams is (failover --dry-run). */
struct failover_position {
	char site[64];
	bool known;                     /* it answered */
	uint64_t applied_lsn;           /* the lowest over the streams from the old primary */
	char why[160];                  /* when not known */
};

#define FAILOVER_MAX_POSITIONS 16

struct failover_facts {
	const char *site;               /* this site, the one that would take over */
	const char *old_primary;
	enum role_kind role;
	uint64_t epoch;
	bool role_persisted;
	struct failover_lag lag;        /* the last known lag (fo_known_lag) */
	uint64_t max_lag_bytes;
	uint64_t max_lag_ms;
	bool force;
	size_t streams_in;              /* streams this site receives from the old primary */
	const char *stream_states;      /* "app: streaming, ..." or NULL */
	bool heard_old;                 /* a HEARTBEAT from it since straitd started */
	double heard_ago_s;
	bool old_reachable;             /* its relay link is up now */
	/* this site's database (one read-only query) */
	const char *db_error;           /* NULL when it answered */
	bool db_in_recovery;            /* a standby: nothing can be written */
	bool db_fenced;                 /* default_transaction_read_only is on for new sessions */
	bool db_can_create_slots;       /* superuser or REPLICATION */
	int64_t sequences;              /* in the database */
	int64_t sequences_with_value;   /* that hold a value (the sequence writer sets them) */
	uint64_t sequence_margin;
	const char *metrics_listen;     /* NULL: no health endpoints */
	const struct failover_durations *durations; /* NULL: none measured */
	/* streams of more than two sites: this site's position and the other replicas' */
	bool many_sites;
	uint64_t applied_lsn;           /* this site's, the lowest over the streams (0: none) */
	const struct failover_position *positions;
	size_t n_positions;
};

enum failover_check_id {
	FAILOVER_CHECK_ROLE,
	FAILOVER_CHECK_LAG,
	FAILOVER_CHECK_STREAMS,
	FAILOVER_CHECK_DATABASE,
	FAILOVER_CHECK_SEQUENCES,
	FAILOVER_CHECK_FENCING,
	FAILOVER_CHECK_HEALTH,
	FAILOVER_CHECK_LOSS,
	FAILOVER_CHECK_DURATION,
	FAILOVER_CHECK_SIBLINGS,
	FAILOVER_CHECKS,
};

struct failover_check {
	const char *name;               /* "role", "lag", ... */
	bool gate;                      /* the verdict depends on it */
	bool ok;                        /* passes (gate) or nothing to warn about */
	char detail[640];
};

struct failover_readiness {
	struct failover_check checks[FAILOVER_CHECKS];
	size_t n;                       /* only the role check when this site is no replica */
	bool go;                        /* every gate check passes */
	char verdict[512];              /* one line: go or no-go, and why */
	bool duration_known;
	double duration_s;
};

/*
 * The dry run's verdict: go when the site is a replica whose role state is
 * persisted, the lag is within the gate (or forced), the streams from the
 * old primary are known (received, and the old primary heard since start),
 * and the database answers and can be written by the promotion. Whether the
 * old primary is reachable now does not change it (the verdict answers "if
 * it were lost now"), but the verdict says that a failover now would be
 * refused and that a switchover is the lossless choice.
 */
void failover_readiness(const struct failover_facts *in, struct failover_readiness *out);

#endif
