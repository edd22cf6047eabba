/*
 * stream_int.h — what stream.c, stream_source.c and stream_sink.c share: the
 * per-stream state. Private to those three files.
 * Every role shares the top of struct stream; reader and sender belong to a
 * source (slot → spool, spool → link), sink to a sink, and mark to a source
 * answering a verify's MARK.
 */
#ifndef STRAIT_STREAM_INT_H
#define STRAIT_STREAM_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "config/config.h"
#include "gateway/relay/frame.h"
#include "gateway/relay/relay.h"
#include "gateway/relay/wire.h"
#include "gateway/stream/coalesce.h"
#include "gateway/stream/complevel.h"
#include "gateway/stream/msgjoin.h"
#include "gateway/stream/reachback.h"
#include "gateway/stream/streamspill.h"
#include "gateway/stream/schedule.h"
#include "gateway/stream/stream.h"
#include "gateway/stream/tokenbucket.h"
#include "replicator/slot_reader.h"

struct apply;
struct frame;
struct codec;
struct event;
struct event_base;
struct json_out;
struct lag;
struct relay;
struct relay_proto_ack;
struct relay_proto_batch;
struct relay_proto_sequences;
struct pgquery;
struct pubwatch;
struct seq_reader;
struct seq_writer;
struct source;
struct spool;
struct spool_cursor;
struct slotwatch;
struct relcache;
struct streamsync;

#define STREAM_RETRY_MIN_MS 1000
#define STREAM_RETRY_MAX_MS 30000
#define STREAM_APPLY_RETRY_MS 5000
#define STREAM_BATCH_MAX (256u * 1024u)
#define STREAM_MAX_SEQUENCES 4096
/* A sink refuses batches that claim to inflate beyond this. */
#define STREAM_RAW_MAX (64u * 1024u * 1024u)
/*
 * The largest message a sink joins from pieces: PostgreSQL's own limit on a
 * value (1 GB) and the message around it.
 */
#define STREAM_MESSAGE_MAX ((size_t)1024u * 1024u * 1024u + 16u * 1024u * 1024u)

enum stream_role {
	STREAM_ROLE_NONE,        /* this site neither sends nor receives it */
	STREAM_ROLE_SOURCE,
	STREAM_ROLE_SINK,
};

/* ---- source: reader (slot → spool) ---- */
struct stream_reader {
	struct source_config src_cfg;
	char *src_conninfo;
	char *src_publication;
	char **src_tables;
	struct source *source;
	bool reading;            /* START_REPLICATION sent on this source */
	bool spool_full;         /* reading paused: the spool is at spool_max */
	bool txn_open;           /* the last record spooled ends inside a transaction */
	unsigned failures;
	struct spool *spool;     /* NULL when it could not be opened (stream in error) */
	struct relcache *relcache; /* makes each spooled batch self-contained */
	char *spool_dir;
	uint64_t spool_max;
	struct event *sync_event; /* fsync what was spooled, once per loop pass */
	uint64_t confirmed_lsn;  /* told to the slot */
	struct reachback *reach;  /* streamed transactions open in the spool: where a resend starts */
	uint64_t bytes_spooled;
	struct seq_reader *seq_reader;
	struct pubwatch *pubwatch;  /* tables added to or removed from the publication */
	struct pgquery *pubalter;   /* a reloaded tables: list, set on the publication */
	struct slotwatch *slotwatch; /* the slot's retained WAL, for disk warnings */
	int warn_level;          /* worst disk warning logged last (enum diskwarn_level) */
	bool spool_broken;       /* an fsync failed: the spool is never trusted again */
};

/* ---- source: sender (spool → link) ---- */
struct stream_sender {
	struct spool_cursor *cursor; /* this destination's place in the reader's spool, or NULL */
	struct codec *enc;
	struct complevel level;  /* the zstd level by what limits the sender (complevel.h) */
	uint64_t compress_ns;    /* spent compressing since the last tick */
	int64_t wait_since;      /* waiting on the link or the rate since (monotonic us; 0: not) */
	uint64_t waited_us;      /* waited on them since the last tick */
	uint64_t raw_at_tick;    /* bytes_raw at the last tick */
	uint64_t wire_at_tick;   /* bytes_wire at the last tick */
	uint64_t queued_end;     /* where its last frame ends in the link's output (relay.h) */
	bool have_resume;        /* the sink said where to go on, on this link */
	uint64_t resume_lsn;
	uint32_t generation;     /* of the resume being served; stamped on batches */
	uint32_t send_seq;       /* the next batch's seq in this generation */
	bool gap;                /* the sink asked for what the spool no longer holds: stopped */
	bool oversized;          /* a batch too big for a relay frame: stopped until a resume */
	bool sending;            /* the spool cursor serves the current resume */
	struct event *pump_event; /* send more: token bucket refilled, or kicked */
	struct coalesce coalesce; /* what waits to be packed, and until when (coalesce.h) */
	struct event *tick;      /* once a second: schedule, sync-now, warnings */
	struct schedule_state sched;
	unsigned sched_clock_gen;
	time_t sched_recheck;    /* evaluate the schedule again at */
	time_t one_off_until;    /* sync-now window end; 0: none */
	bool one_off_drain;      /* the window closes once the spool is drained */
	unsigned drained_ticks;  /* ticks in a row the drain found nothing left */
	struct token_bucket bucket;
	uint64_t acked_lsn;
	int64_t acked_commit_time;
	/*
	 * Flow control: raw batch bytes the sink holds, counted from the resume
	 * (what it held then, plus what went out) less what its ACKs say it freed.
	 */
	uint64_t window_sent;
	uint64_t window_freed;
	bool window_mid_msg;     /* the last frame sent ended inside a message */
	uint64_t batches_sent;
	uint64_t bytes_raw;
	uint64_t bytes_wire;
	uint64_t bytes_charged;  /* estimated WAN bytes, as the bucket counted them */
	uint64_t sequence_frames;
};

/* ---- sink ---- */
struct retain;
struct stream_catchup;

struct stream_sink_state {
	struct seq_writer *seq_writer;
	struct apply *apply;
	struct codec *dec;
	bool apply_ready;
	uint32_t want_generation; /* batches of other generations are stale */
	bool in_hello;           /* our last HELLO to the peer named this stream */
	bool dec_started;        /* the decoder has seen this generation's first batch */
	/* continuity within a generation: a batch that does not follow is refused */
	uint64_t asked_lsn;      /* the received position this generation was asked from */
	uint32_t expect_seq;     /* the next batch's seq */
	uint64_t expect_prev;    /* the next batch's prev_lsn (from seq 1 on) */
	unsigned resends;        /* batches asked for again in a row (a halt after a few) */
	bool halted;             /* stopped on a batch it cannot take; the retry asks again */
	struct msgjoin join;     /* the unfinished message of a batch that continues */
	struct streamspill *spill; /* streamed transactions until their commit */
	bool filter_failed;      /* the initial sync's filter refused a delivery */
	bool join_refused;       /* a table joins: the delivery waits for its record */
	uint64_t ack_lsn;        /* committed, to ACK */
	int64_t ack_commit_time;
	uint64_t ack_sent_lsn;
	uint64_t released_base;  /* sink_freed_total() when this generation began */
	uint64_t released_sent;  /* released bytes (in the generation) last ACKed */
	struct event *ack_event;
	uint64_t batches_received;
	char *sink_conninfo;     /* the target database */
	struct stream_verify *verify; /* the verify being answered (stream_verify.c), or NULL */
	/* the source's transactions as applied, kept for siblings (retain.h), or NULL */
	struct retain *retain;
	struct event *retain_event; /* fsync what was retained, once per loop pass */
	int64_t retain_trimmed_at; /* µs, monotonic */
	struct stream_catchup *catchup; /* taking a sibling's retained batches (stream_catchup.c), or NULL */
};

/* ---- source: a verify's MARK (stream_verify.c) ---- */
struct stream_mark {
	bool mark_armed;
	bool mark_captured;      /* the reader handed over everything before mark_lsn */
	uint64_t mark_job;
	uint64_t mark_lsn;
	struct event *mark_timer;
};

struct stream {
	struct streams *owner;
	char *name;
	char *peer;              /* the site at the other end */
	enum stream_role role;
	const struct config_stream *cs; /* in the daemon's current config */
	bool siblings;           /* the stream has more than one destination */
	/*
	 * streams[].via: the site the batches go through (a source's destination
	 * gets them from it; a sink takes them from it); NULL: direct.
	 */
	char *relay;
	struct streamsync *sync; /* initial sync (initial_sync: true), else NULL */
	struct streamjoin *join; /* tables that join later (with sync), else NULL */
	struct lag *lag;         /* both sides: this end's view of the stream's lag */
	struct event *retry;     /* source re-creation, or apply resume */
	char last_error[512];

	/*
	 * A source sends to one destination per struct stream. The destinations
	 * of one stream share one reader (one slot, one spool): the lead, the
	 * first of them, holds it; every destination's reader points there.
	 */
	struct stream *lead;             /* source: the destination holding the reader */
	struct stream *next_dest;        /* source: the lead's next destination, or NULL */
	struct stream_reader *reader;    /* source: the lead's own_reader */
	struct stream_reader own_reader; /* source, the lead only: slot → spool */
	struct stream_sender sender;     /* source: the sender, spool → link */
	struct stream_sink_state sink;   /* sink */
	struct stream_mark mark;         /* source: a verify's MARK (stream_verify.c) */
};

struct streams {
	struct event_base *base;
	struct relay *relay;
	const struct strait_config *cfg;
	struct stream *v;
	size_t n;
	struct wire_writer out;  /* frame payloads, reused */
	streams_verify_fn verify_frame; /* VERIFY frames for a stream this site sends */
	void *verify_arg;
	struct retain_serve *serve; /* siblings taking this site's retained batches */
};

/* stream.c */
bool stream_send(struct stream *st, enum frame_type type, uint8_t flags);
/* As stream_send(), to another site than the stream's peer. */
bool stream_send_to(struct stream *st, const char *site, enum frame_type type, uint8_t flags);
/*
 * A sink that relays its batches to other destinations (streams[].via):
 * *relays, and the lowest position they committed (UINT64_MAX: relays none).
 */
uint64_t streams_relay_hold(struct streams *s, const struct stream *st, bool *relays);
/* The sink of stream name here, whoever it takes it from; NULL: none. */
struct stream *streams_sink_named(struct streams *s, struct wire_str name);
/*
 * Charges the stream's rate (and its WAN estimate) for the frame just sent
 * from its owner's writer, and for what else the link's WAN carried for it
 * (relay_batch_sent(): probes after it, bytes TCP sent again), at their
 * estimated WAN cost; returns that cost.
 */
uint64_t stream_charge(struct stream *st, struct relay_batch_extra extra, int64_t now_us);
void stream_schedule_retry(struct stream *st, unsigned ms);

/* stream_source.c */
bool stream_source_init(struct stream *st, const struct strait_config *cfg, size_t self);
void stream_source_fini(struct stream *st);
void stream_source_retry(struct stream *st);
struct relay_proto_position;
void stream_source_resume_at(struct stream *st, const struct relay_proto_position *pos,
		uint32_t generation);
void stream_source_ack(struct stream *st, const struct relay_proto_ack *ack);
void stream_source_link_up(struct stream *st);
void stream_source_link_down(struct stream *st);
void stream_source_writable(struct stream *st);
void stream_source_status(const struct stream *st, struct json_out *j);
void stream_source_schedule_json(const struct stream *st, struct json_out *j);
void stream_source_report(const struct stream *st, struct stream_report *r, int64_t now_us);
void stream_source_warnings_json(const struct stream *st, struct json_out *j);
bool stream_source_sync_now(struct stream *st, uint64_t for_seconds, char *msg, size_t msglen);
void stream_source_reconfigure(struct stream *st);
const char *stream_source_state(const struct stream *st);

/* stream_verify.c */
struct relay_proto_verify;
void stream_verify_frame(struct stream *st, const struct relay_proto_verify *m);
void stream_verify_sink_progress(struct stream *st);
void stream_verify_sink_stop(struct stream *st, const char *why);
bool stream_verify_arm_mark(struct stream *st, uint64_t job, uint64_t lsn);
/* ask: request the server's position when it is not known to be past the point yet */
void stream_verify_mark_check(struct stream *st, bool ask);
void stream_verify_source_fini(struct stream *st);

/* stream_sink.c */
bool stream_sink_init(struct stream *st, const struct strait_config *cfg, size_t self);
void stream_sink_fini(struct stream *st);
void stream_sink_retry(struct stream *st);
/* A BATCH for this stream, read once by streams_frame() (stream.c). */
void stream_sink_batch(struct stream *st, const struct relay_proto_batch *b);
void stream_sink_sequences(struct stream *st, const struct relay_proto_sequences *m);
void stream_sink_send_resume(struct stream *st);
/* The sink's positions for a HELLO (false: it does not ask in HELLO). */
bool stream_sink_hello_position(struct stream *st, struct relay_proto_position *pos);
/* A BATCH from the peer that could not be read: every stream from it asks again. */
void stream_sink_ask_again(struct stream *st, const char *why);
/* The link to the source dropped: an unfinished transaction is cut from the queue. */
void stream_sink_link_down(struct stream *st);
void stream_sink_status(const struct stream *st, struct json_out *j);
/* The positions to ask with now (cuts an unfinished transaction); false: the apply is not ready. */
bool stream_sink_position(struct stream *st, struct relay_proto_position *pos);
/* A new generation starts: what its first batch must continue from. */
void stream_sink_expect(struct stream *st, uint64_t asked_lsn);

/* stream_catchup.c: this sink takes a sibling's retained batches (stream.h: streams_catchup()) */
/* The apply is ready, or a batch was refused: ask (again) in a new generation. */
void stream_catchup_ask(struct stream *st);
void stream_catchup_reply(struct stream *st, const char *peer, const struct frame *f);
/* The apply committed: done once it reached what the sibling applied. */
void stream_catchup_committed(struct stream *st);
/* The link to peer dropped. */
void stream_catchup_link_down(struct stream *st, const char *peer);
void stream_catchup_free(struct stream *st);
/* Where the sink's frames (ACK) go now: the sibling while catching up, else the peer. */
const char *stream_sink_upstream(const struct stream *st);
/* A relayed sink (st->relay): takes the relay's batches for good. False when out of memory. */
bool stream_relay_start(struct stream *st);
/* stream_sink_send_resume() of a sink that takes a sibling's batches (relayed or catching up). */
void stream_relay_resume(struct stream *st);
/* stream_sink.c: RESUME to the source itself (a relayed sink's copy round). */
void stream_sink_resume_source(struct stream *st);

#endif
