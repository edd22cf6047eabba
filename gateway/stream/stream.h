/*
 * stream.h — the streams of this site: each stream's source (on the site it
 * comes from) or sink (on the site it goes to), joined by the relay link.
 *
 * The conversation for one stream between its source site S and sink site K:
 *
 *   K: HELLO (or RESUME once its apply is ready) names the LSN to resume at
 *   S: START_REPLICATION from there; BATCH frames, zstd-compressed
 *   K: decompress, apply; ACK each committed source transaction
 *   S: confirm ACKed positions to the slot (durability remote)
 *
 * A RESUME also restarts a source that is already streaming: the sink sends
 * one whenever its apply (re)connects, since it may have dropped batches it
 * had queued. The source therefore never guesses where to go on: after a lost
 * link or its own restart it waits for HELLO or RESUME.
 *
 * The daemon forwards the relay's callbacks to streams_*(); this module owns
 * every source, apply and codec. Ownership: streams_new() returns an object
 * freed by streams_free(); it keeps pointers to the relay (not owned).
 */
#ifndef STRAIT_STREAM_H
#define STRAIT_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/cluster/role.h"
#include "gateway/stream/stream_sync.h"

struct event_base;
struct frame;
struct json_out;
struct relay;
struct relay_proto_hello;
struct strait_config;
struct streams;

/*
 * NULL when out of memory (logged). Each stream runs from the site that is
 * primary now: as primary this site is the source of every stream it is an
 * end of (toward every other end), as replica the sink (from primary, the
 * site it knows is primary, CONFIG_SITE_NONE when it does not), as fenced
 * neither (site_role; failover_stream_ends()). streams_new() is
 * streams_new_role() as the config's from/to say (this site is the source of
 * what comes from it).
 */
struct streams *streams_new(struct event_base *base, const struct strait_config *cfg,
		size_t self_site, struct relay *relay);
struct streams *streams_new_role(struct event_base *base, const struct strait_config *cfg,
		size_t self_site, struct relay *relay, enum role_kind site_role, size_t primary);
void streams_free(struct streams *s);

/* Relay callbacks, forwarded by the daemon. */
void streams_hello(struct streams *s, const char *peer, struct relay_proto_hello *hello);
void streams_connected(struct streams *s, const char *peer, const struct relay_proto_hello *hello);
void streams_frame(struct streams *s, const char *peer, const struct frame *f);
void streams_writable(struct streams *s, const char *peer);
void streams_disconnected(struct streams *s, const char *peer);
/*
 * peer began to claim primary (its heartbeats said otherwise before): its
 * streams were set up anew there and wait to be told where to resume, so
 * every sink of a stream from it asks (RESUME).
 */
void streams_peer_became_primary(struct streams *s, const char *peer);

/*
 * sync-now: opens a one-off window on a stream this site sends, for
 * for_seconds (0: until its spool is drained). msg gets what was done, or
 * why not (false).
 */
bool streams_sync_now(struct streams *s, const char *name, uint64_t for_seconds, char *msg,
		size_t msglen);
/* Appends a "streams" array: each stream this site sends and its schedule state. */
void streams_schedule_json(const struct streams *s, struct json_out *j);
/*
 * The daemon took a new config (cfg stays valid until the next call): streams
 * pick up their schedule, windows, durability and spool_max. Streams or
 * destinations added or removed are the daemon's to rebuild (its reload does).
 */
void streams_reconfigure(struct streams *s, const struct strait_config *cfg);

/* Appends the "streams" array to a status object. */
void streams_status_json(const struct streams *s, struct json_out *j);

/* ---- for verify (gateway/verify/verify_job.c), on the site that sends a stream ---- */

struct relay_proto_verify;
/* A VERIFY frame from the sink's site (peer) of a stream this site sends. */
typedef void (*streams_verify_fn)(void *arg, const char *stream, const char *peer,
		const struct relay_proto_verify *m);
void streams_set_verify_handler(struct streams *s, streams_verify_fn fn, void *arg);
/* The names of the streams this site sends now, once each (valid until the streams change). */
size_t streams_sent_names(const struct streams *s, const char **names, size_t max);
/*
 * Each stream this site sends now and each of its destinations: names[i]
 * to peers[i] (name filters by stream name, NULL: every stream); how many.
 */
size_t streams_sent_targets(const struct streams *s, const char *name, const char **names,
		const char **peers, size_t max);

struct streams_verify_info {
	const char *peer;            /* strings valid until the streams change */
	const char *conninfo;        /* the source database */
	const char *publication;
	bool link_up;
	bool held;                   /* the schedule holds it now */
	bool syncing;                /* its initial sync runs */
};
/*
 * The stream name as sent to peer (NULL: its first destination). False when
 * this site does not send a stream of that name there.
 */
bool streams_verify_info(const struct streams *s, const char *name, const char *peer,
		struct streams_verify_info *out);
/* Sends a VERIFY frame on the stream's link to peer (values: head->nvalues, NULL for SQL NULL). */
bool streams_verify_send(struct streams *s, const char *name, const char *peer,
		const struct relay_proto_verify *head, const char *const *values, const size_t *lens);
/* Sends MARK(job, lsn) to peer once everything before lsn went to it. */
bool streams_verify_arm_mark(struct streams *s, const char *name, const char *peer, uint64_t job,
		uint64_t lsn);

/* ---- a failover among three or more sites: replicas brought level from each other ---- */

enum streams_catchup_result {
	STREAMS_CATCHUP_LEVEL,       /* this site had applied everything the sibling had */
	STREAMS_CATCHUP_TAKEN,       /* it took what it lacked from the sibling and applied it */
	STREAMS_CATCHUP_AHEAD,       /* it holds transactions beyond what the sibling applied */
	STREAMS_CATCHUP_FAILED,      /* the sibling could not serve, or no progress (msg says) */
};

/*
 * applied_lsn: what the sibling applied (0 when it never said). msg: one
 * line for the operator. Called once, from the event loop on its own (the
 * streams may be freed in it); never after streams_catchup_cancel() — a
 * report already on its way still comes, see there.
 */
typedef void (*streams_catchup_fn)(void *arg, const char *stream,
		enum streams_catchup_result result, uint64_t applied_lsn, const char *msg);
/*
 * The sink of stream name takes, from site from, the transactions of its
 * source that from applied and this site lacks (from's retained batches,
 * stream_catchup.c); fn says how it went. False (err says) when this site
 * does not receive the stream or it is catching up already.
 */
bool streams_catchup(struct streams *s, const char *name, const char *from, streams_catchup_fn fn,
		void *arg, char *err, size_t errlen);
/*
 * Every catch-up under way ends, untold. One that ended just before may
 * still report: the caller ignores a report it no longer waits for.
 */
void streams_catchup_cancel(struct streams *s);
/*
 * Before the streams stop for a promotion: each sink records, beside its
 * retained batches, what it applied, so that a sibling served after this
 * site became primary gets that and no more.
 */
void streams_retain_seal(struct streams *s);

/* ---- per-stream report: state, lag and counters, for metrics and health ---- */

/* Stream states, as strait_stream_state{state} names them. */
#define STREAM_STATES "starting", "syncing", "streaming", "held", "backpressure", "error", "stopped"

struct stream_report {
	const char *name;            /* strings valid during the callback only */
	const char *peer;            /* the site at the other end */
	const char *to;              /* the destination site: peer at a source, this site at a sink */
	bool sink;                   /* this site receives the stream (else it sends it) */
	bool reader;                 /* source: the first destination, which reports the spool, slot and disk */
	const char *state;           /* one of STREAM_STATES */
	uint64_t applied_lsn;        /* last source commit applied at the sink, as this end knows it */
	uint64_t lag_bytes;
	double lag_seconds;
	uint64_t batches;            /* sent (source) or received (sink) */
	uint64_t bytes_raw;          /* source: batch bytes before compression */
	uint64_t bytes_compressed;   /* source: the same after compression */
	uint64_t bytes_packed;       /* source: what zstd took (pgoutput packed, codec.h) */
	uint64_t spool_bytes;        /* source: bytes in the spool */
	uint64_t spool_max_bytes;    /* source: the spool's cap */
	uint64_t spool_records;      /* source: records in the spool */
	double spool_oldest_age;     /* source: age of the oldest record, seconds (0: empty) */
	bool held;                   /* source: the schedule holds it */
	bool rate_unlimited;         /* source: no rate limit in force */
	uint64_t rate;               /* source: bytes per second in force (when limited) */
	int rule;                    /* source: the schedule rule in force, -1 none */
	uint64_t bytes_wan;          /* source: estimated WAN bytes of its batches */
	int compression_level;       /* source: the zstd level in force (0: not compressed) */
	int64_t slot_retained_bytes; /* source: WAL the slot holds back, -1 unknown */
	int warning_level;           /* source: worst disk warning, 0 none, 1 warning, 2 critical */
	bool sync;                   /* source: the stream has an initial sync; figures in sync_figures */
	struct streamsync_figures sync_figures;
};

/* ---- for switchover and failover (gateway/cluster/failover.c) ---- */

/* What this site knows of the streams it receives from peer. */
struct streams_peer_lag {
	size_t streams;              /* how many it receives from peer */
	uint64_t lag_bytes;          /* the largest */
	double lag_seconds;          /* the largest */
	uint64_t applied_lsn;        /* the lowest applied LSN (0: unknown) */
	int64_t last_applied_time_us; /* the oldest last-applied commit time (0: unknown) */
};
void streams_peer_lag(const struct streams *s, const char *peer, int64_t now_us,
		struct streams_peer_lag *out);
/*
 * Source side: the WAL position read from the slot of streams sent to peer
 * that the peer has not applied yet (the highest), or 0 when every stream to
 * peer is caught up. Sent in HEARTBEAT, so a replica knows what it lacks.
 */
uint64_t streams_peer_pending_wal(const struct streams *s, const char *peer);
/*
 * Source side: true when every stream sent to peer has read its slot up to
 * upto and the peer applied all of it.
 */
bool streams_drained(const struct streams *s, const char *peer, uint64_t upto);

/*
 * Calls fn once for each stream this site sends or receives, at now_us (µs
 * since the Unix epoch, for lag seconds). fn must not call back into streams.
 */
void streams_report(const struct streams *s, int64_t now_us,
		void (*fn)(void *arg, const struct stream_report *r), void *arg);

#endif
