/*
 * relay_proto.h — the payloads of relay link frames (frame.h): what HELLO,
 * BATCH, SYNC, SEQUENCES, ACK, HEARTBEAT and GOODBYE carry, with each
 * message's writer and reader side by side in relay_proto.c.
 *
 * Field types are wire.h's: big-endian integers, strings as u16 length +
 * bytes. LSNs are PostgreSQL's (u64, 0 = none). Times are microseconds since
 * the Unix epoch (i64) — not PostgreSQL's 2000-01-01 epoch; convert at the
 * edge with pgoutput_time_to_unix_us(). The cluster epoch travels in every
 * frame header (frame.h), so no payload repeats it.
 *
 *   HELLO      u16 version, str cluster, str site, u16 n,
 *              n × (str stream, u64 received_lsn, u64 committed_lsn,
 *                   u64 queued_bytes)
 *   ACK        str stream, u64 committed_lsn, i64 commit_time_us,
 *              u32 generation, u64 released_bytes
 *   HEARTBEAT  u64 wal_lsn, i64 time_us, u8 role, u32 health
 *   BATCH      str stream, u64 first_lsn, u64 last_lsn, u64 prev_lsn,
 *              u32 generation, u32 seq, u8 batch_flags, u32 raw_len, data…
 *   RESUME     str stream, u64 received_lsn, u64 committed_lsn,
 *              u64 queued_bytes, u32 generation
 *   SYNC       str stream, str schema, str table, u64 snapshot_lsn,
 *              u32 ranges, u32 range, u32 chunk, u8 sync_flags, u32 raw_len,
 *              data…
 *   SEQUENCES  str stream, u16 n, n × (str schema, str name, i64 value)
 *   GOODBYE    str reason
 *   FENCE      u16 n, n × (str stream, u64 applied_lsn)
 *   PROMOTE    u64 epoch, str reason
 *   PROMOTE_ACK u8 ok, u64 epoch, str message, u16 n,
 *              n × (str stream, u64 start_lsn)
 *   VERIFY     str stream, u64 job, u8 op, u8 ok, u32 seq, u64 lsn,
 *              u32 generation, str text, u8 kind, str schema, str table,
 *              u8 range, i64 offset, u64 mask, u64 bucket, u16 ncols,
 *              u32 nvalues, nvalues × (u8 null, u32 len, bytes)
 *
 * BATCH and SYNC data is opaque here: pgoutput messages (BATCH) or COPY text
 * (SYNC), zstd-compressed when the frame has FRAME_FLAG_COMPRESSED (in the
 * stream's codec, gateway/stream/codec.h). raw_len is its size once
 * decompressed (and unpacked), so the receiver can refuse an oversized
 * batch before inflating it. A message larger than a frame travels in
 * pieces: a BATCH with RELAY_BATCH_CONTINUES ends inside a message, which
 * the next BATCH of the generation goes on with.
 *
 * Positions. Two positions of a stream travel from the sink to the source,
 * and they are never confused:
 *   committed  the end LSN of the last source transaction committed on the
 *              target (its replication origin). The only acknowledgement:
 *              only it may release spool records or confirm the slot.
 *   received   the end LSN of the last whole transaction the sink holds,
 *              committed or queued: a resume hint, where to send from. It is
 *              never below committed (0: the sink has nothing).
 * HELLO and RESUME carry both (and the bytes the sink holds unapplied, which
 * count against the send window); ACK carries committed, and the batch bytes
 * the sink has freed since the generation began (committed, or applied
 * inside a large transaction and forgotten): the send window's credit,
 * which moves nothing else. Every BATCH says
 * where it continues from (prev_lsn: the end of the last whole transaction
 * before its first record) and its place in the generation (seq: 0, 1, 2,
 * ...), so the sink refuses a batch that does not follow the one before:
 * nothing is ever applied over a hole.
 *
 * Conventions: readers take a frame's payload and return RELAY_PROTO_OK or
 * the first problem found; on success, strings and data point into the
 * payload (valid as long as it is), lists go into a caller-provided array
 * (RELAY_PROTO_ERR_TOO_MANY when it is too small). Names (cluster, site,
 * stream, schema, table) must not be empty. Readers refuse trailing bytes
 * (BATCH and SYNC have none: their data runs to the end of the payload).
 * Writers append the payload to a wire_writer and return false when it does
 * not fit or a value cannot be encoded (the writer is then failed).
 */
#ifndef STRAIT_RELAY_PROTO_H
#define STRAIT_RELAY_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/relay/wire.h"

/*
 * Version of the message vocabulary, sent in HELLO (2: received and
 * committed positions; 3: batches that end inside a message, and ACKs that
 * free the send window inside a transaction; 4: verify requests; 5: SYNC
 * frames name a block range of a table copied in ranges; 6: compressed
 * BATCH, SYNC and CATCHUP_BATCH data starts each batch with its form byte
 * and may pack pgoutput messages, and zstd frames have at most a 1 MiB
 * window: codec.h; 7: PROBE frames, empty, dropped: lossprobe.h).
 */
#define RELAY_PROTO_VERSION 7

/* Per-HELLO and per-SEQUENCES list limit (the count is a u16 on the wire). */
#define RELAY_PROTO_MAX_LIST 65535u

enum relay_proto_status {
	RELAY_PROTO_OK = 0,
	RELAY_PROTO_ERR_TRUNCATED,   /* a field runs past the end of the payload */
	RELAY_PROTO_ERR_TRAILING,    /* bytes left after the last field */
	RELAY_PROTO_ERR_STRING,      /* a string with a NUL byte, or an empty name */
	RELAY_PROTO_ERR_TOO_MANY,    /* more list entries than the caller's array holds */
	RELAY_PROTO_ERR_VALUE,       /* a field out of range (role, LSN order, flags) */
};

const char *relay_proto_status_str(enum relay_proto_status st);

/* A string field from a C string (for filling messages to write). */
static inline struct wire_str
relay_proto_str(const char *s)
{
	struct wire_str r = { s, 0 };

	while (s != NULL && s[r.len] != '\0')
		r.len++;
	return r;
}

/* ---- HELLO ---- */

/* A (stream, LSN) pair: FENCE's and PROMOTE_ACK's lists. */
struct relay_proto_resume {
	struct wire_str stream;
	uint64_t lsn;
};

/* A sink's positions of one stream (see Positions above). */
struct relay_proto_position {
	struct wire_str stream;
	uint64_t received_lsn;   /* where to send from (0: the sink has nothing) */
	uint64_t committed_lsn;  /* committed on the target; <= received_lsn unless that is 0 */
	uint64_t queued_bytes;   /* batch bytes the sink holds that are not committed yet */
};

struct relay_proto_hello {
	uint16_t version;        /* RELAY_PROTO_VERSION of the sender */
	struct wire_str cluster;
	struct wire_str site;
	struct relay_proto_position *streams;
	size_t nstreams;
};

bool relay_proto_write_hello(struct wire_writer *w,
		const struct relay_proto_hello *m) WIRE_MUSTCHECK;
/* Fills out->streams = streams[0..out->nstreams), at most max_streams. */
enum relay_proto_status relay_proto_read_hello(const uint8_t *p, size_t len,
		struct relay_proto_hello *out, struct relay_proto_position *streams,
		size_t max_streams);

/* ---- ACK ---- */

struct relay_proto_ack {
	struct wire_str stream;
	uint64_t committed_lsn;  /* end LSN of the last transaction committed on the target */
	int64_t commit_time_us;  /* its commit time at the source */
	uint32_t generation;     /* the generation released_bytes counts in */
	uint64_t released_bytes; /* batch bytes the sink freed since that generation began */
};

bool relay_proto_write_ack(struct wire_writer *w,
		const struct relay_proto_ack *m) WIRE_MUSTCHECK;
enum relay_proto_status relay_proto_read_ack(const uint8_t *p, size_t len,
		struct relay_proto_ack *out);

/* ---- HEARTBEAT ---- */

enum relay_role {
	RELAY_ROLE_UNKNOWN = 0,
	RELAY_ROLE_PRIMARY = 1,
	RELAY_ROLE_REPLICA = 2,
	RELAY_ROLE_FENCED  = 3,
};

const char *relay_proto_role_name(unsigned role);

/* Health bits; unknown bits are kept as they are (newer peers may send more). */
#define RELAY_HEALTH_PG_UP       0x00000001u  /* the local PostgreSQL answers */
#define RELAY_HEALTH_PG_WRITABLE 0x00000002u  /* ... and accepts writes */
#define RELAY_HEALTH_SPOOL_FULL  0x00000004u  /* a spool is at its cap */
#define RELAY_HEALTH_DEGRADED    0x00000008u  /* some stream is paused on an error */

struct relay_proto_heartbeat {
	uint64_t wal_lsn;        /* primary: current WAL end; replica: last replayed/applied */
	int64_t time_us;         /* sender's clock */
	uint8_t role;            /* enum relay_role */
	uint32_t health;         /* RELAY_HEALTH_* */
};

bool relay_proto_write_heartbeat(struct wire_writer *w,
		const struct relay_proto_heartbeat *m) WIRE_MUSTCHECK;
enum relay_proto_status relay_proto_read_heartbeat(const uint8_t *p, size_t len,
		struct relay_proto_heartbeat *out);

/* ---- BATCH ---- */

/* The data ends inside a message: the generation's next batch goes on with it. */
#define RELAY_BATCH_CONTINUES 0x01u
#define RELAY_BATCH_FLAGS_KNOWN (RELAY_BATCH_CONTINUES)

struct relay_proto_batch {
	struct wire_str stream;
	uint64_t first_lsn;      /* first transaction's begin (final) LSN */
	uint64_t last_lsn;       /* last transaction's end LSN; first_lsn <= last_lsn */
	uint64_t prev_lsn;       /* end of the last whole transaction before its first record
				    (<= last_lsn when that is not 0) */
	uint32_t generation;     /* the RESUME this batch answers (0: the link's HELLO) */
	uint32_t seq;            /* 0, 1, 2, ... within the generation */
	uint8_t flags;           /* RELAY_BATCH_* */
	uint32_t raw_len;        /* data size once decompressed */
	const uint8_t *data;     /* opaque, possibly compressed */
	size_t data_len;
};

/* Envelope and data. */
bool relay_proto_write_batch(struct wire_writer *w,
		const struct relay_proto_batch *m) WIRE_MUSTCHECK;
/* Envelope only (m->data ignored): the caller appends the data itself. */
bool relay_proto_write_batch_head(struct wire_writer *w,
		const struct relay_proto_batch *m) WIRE_MUSTCHECK;
enum relay_proto_status relay_proto_read_batch(const uint8_t *p, size_t len,
		struct relay_proto_batch *out);

/* ---- RESUME ---- */

/*
 * Sink to source: (re)start the stream after received_lsn. Each RESUME on a
 * link has a new generation; the source stamps it on every batch it then
 * sends, so the sink can tell the batches it asked for from older ones still
 * in flight. committed_lsn and queued_bytes are as in HELLO.
 */
struct relay_proto_resume_req {
	struct relay_proto_position pos;
	uint32_t generation;
};

bool relay_proto_write_resume(struct wire_writer *w,
		const struct relay_proto_resume_req *m) WIRE_MUSTCHECK;
enum relay_proto_status relay_proto_read_resume(const uint8_t *p, size_t len,
		struct relay_proto_resume_req *out);

/* ---- CATCHUP and CATCHUP_REPLY (sibling catch-up) ---- */

/*
 * A replica asks a sibling for the transactions of stream that the sibling
 * applied from site source and retained, after after_lsn (the asker's
 * received position, in source's LSNs). generation is stamped on the
 * CATCHUP_BATCH frames that answer it (their payload is a BATCH's); the
 * asker frees the sibling's send window with CATCHUP_ACK (an ACK's payload).
 */
/*
 * FOLLOW: a destination relayed through the sibling (streams[].via): it
 * keeps sending as it applies more, never past what it fsynced. PROBE: the
 * answer only, no batch (a relayed destination asks whether the relay
 * retains before it starts its copy).
 */
#define RELAY_CATCHUP_FOLLOW 0x01u
#define RELAY_CATCHUP_PROBE  0x02u
#define RELAY_CATCHUP_FLAGS_KNOWN (RELAY_CATCHUP_FOLLOW | RELAY_CATCHUP_PROBE)

struct relay_proto_catchup {
	struct wire_str stream;
	struct wire_str source;
	uint64_t after_lsn;
	uint32_t generation;
	uint8_t flags;           /* RELAY_CATCHUP_* */
};

bool relay_proto_write_catchup(struct wire_writer *w,
		const struct relay_proto_catchup *m) WIRE_MUSTCHECK;
enum relay_proto_status relay_proto_read_catchup(const uint8_t *p, size_t len,
		struct relay_proto_catchup *out);

/*
 * The sibling's answer: ok 1 with applied_lsn (the end of the last
 * transaction of source it applied: batches go up to it and no further)
 * and the retained range (floor_lsn, end_lsn]; batches follow when the
 * asker is behind and the range covers what it lacks. ok 0: nothing is
 * served, message says why (no retained batches of that source, a gap).
 * ok other than 0 or 1 is refused (VALUE).
 */
struct relay_proto_catchup_reply {
	struct wire_str stream;
	uint32_t generation;
	uint8_t ok;
	uint64_t applied_lsn;
	uint64_t floor_lsn;
	uint64_t end_lsn;
	struct wire_str message;
};

bool relay_proto_write_catchup_reply(struct wire_writer *w,
		const struct relay_proto_catchup_reply *m) WIRE_MUSTCHECK;
enum relay_proto_status relay_proto_read_catchup_reply(const uint8_t *p, size_t len,
		struct relay_proto_catchup_reply *out);

/* ---- SYNC ---- */

#define RELAY_SYNC_LAST 0x01u    /* last chunk of this table's copy */
#define RELAY_SYNC_JOIN 0x02u    /* a table that joins a streaming stream (stream_join.h) */

struct relay_proto_sync {
	struct wire_str stream;
	struct wire_str schema;
	struct wire_str table;
	uint64_t snapshot_lsn;   /* consistent point of the snapshot the copy was taken in */
	uint32_t chunk;          /* 0, 1, 2, ... per table (or range) */
	uint8_t flags;           /* RELAY_SYNC_*; unknown bits are refused */
	uint32_t raw_len;
	const uint8_t *data;
	size_t data_len;
	/*
	 * A table copied in block ranges: how many, and which one this frame
	 * is about (below ranges); 0 and 0 for a table copied whole. Chunks
	 * count per range.
	 */
	uint32_t ranges;
	uint32_t range;
};

bool relay_proto_write_sync(struct wire_writer *w,
		const struct relay_proto_sync *m) WIRE_MUSTCHECK;
bool relay_proto_write_sync_head(struct wire_writer *w,
		const struct relay_proto_sync *m) WIRE_MUSTCHECK;
enum relay_proto_status relay_proto_read_sync(const uint8_t *p, size_t len,
		struct relay_proto_sync *out);

/* ---- SEQUENCES ---- */

struct relay_proto_sequence {
	struct wire_str schema;
	struct wire_str name;
	int64_t value;           /* last_value at the source */
};

struct relay_proto_sequences {
	struct wire_str stream;
	struct relay_proto_sequence *seqs;
	size_t nseqs;
};

bool relay_proto_write_sequences(struct wire_writer *w,
		const struct relay_proto_sequences *m) WIRE_MUSTCHECK;
/* Fills out->seqs = seqs[0..out->nseqs), at most max_seqs. */
enum relay_proto_status relay_proto_read_sequences(const uint8_t *p, size_t len,
		struct relay_proto_sequences *out, struct relay_proto_sequence *seqs,
		size_t max_seqs);

/* ---- GOODBYE ---- */

struct relay_proto_goodbye {
	struct wire_str reason;  /* may be empty */
};

bool relay_proto_write_goodbye(struct wire_writer *w,
		const struct relay_proto_goodbye *m) WIRE_MUSTCHECK;
enum relay_proto_status relay_proto_read_goodbye(const uint8_t *p, size_t len,
		struct relay_proto_goodbye *out);

/* ---- FENCE (failover) ---- */

/*
 * The primary to a site at a lower epoch (an old primary it took over from):
 * you are fenced; per stream that came from you, the end LSN of your last
 * transaction applied here (0: none). A rejoin keeps what is after it.
 */
struct relay_proto_fence {
	struct relay_proto_resume *streams;   /* stream, applied LSN */
	size_t nstreams;
};

bool relay_proto_write_fence(struct wire_writer *w,
		const struct relay_proto_fence *m) WIRE_MUSTCHECK;
/* Fills out->streams = streams[0..out->nstreams), at most max_streams. */
enum relay_proto_status relay_proto_read_fence(const uint8_t *p, size_t len,
		struct relay_proto_fence *out, struct relay_proto_resume *streams,
		size_t max_streams);

/* ---- PROMOTE and PROMOTE_ACK (switchover) ---- */

/*
 * The primary, fenced and drained, asks the peer to become primary at epoch
 * (higher than the sender's). reason is for the peer's log (may be empty).
 */
struct relay_proto_promote {
	uint64_t epoch;
	struct wire_str reason;
};

bool relay_proto_write_promote(struct wire_writer *w,
		const struct relay_proto_promote *m) WIRE_MUSTCHECK;
enum relay_proto_status relay_proto_read_promote(const uint8_t *p, size_t len,
		struct relay_proto_promote *out);

/*
 * The answer: ok (1) with the epoch taken and, per stream that now runs the
 * other way, the LSN the new primary's slot starts at (the old primary's
 * origin goes there); or ok 0 with the reason in message and nothing
 * changed. message is the step log either way (may be empty). ok other
 * than 0 or 1 is refused (VALUE).
 */
struct relay_proto_promote_ack {
	uint8_t ok;
	uint64_t epoch;
	struct wire_str message;
	struct relay_proto_resume *streams;   /* stream, start LSN */
	size_t nstreams;
};

bool relay_proto_write_promote_ack(struct wire_writer *w,
		const struct relay_proto_promote_ack *m) WIRE_MUSTCHECK;
/* Fills out->streams = streams[0..out->nstreams), at most max_streams. */
enum relay_proto_status relay_proto_read_promote_ack(const uint8_t *p, size_t len,
		struct relay_proto_promote_ack *out, struct relay_proto_resume *streams,
		size_t max_streams);

/* ---- VERIFY ---- */

/*
 * One step of a cross-site verify (gateway/verify/verify_job.c drives it from the
 * source's site, gateway/stream/stream_verify.c answers at the sink's). In order:
 *   HOLD    source to sink: stop applying before the first transaction that
 *           commits at or after lsn (the source snapshot's WAL position);
 *   MARK    source to sink, behind every batch that holds a transaction
 *           before lsn (generation: the RESUME those batches answered);
 *   READY   sink to source: held at lsn and its snapshot taken, apply goes
 *           on (ok 0: refused, the reason in text);
 *   QUERY   source to sink: one request of the comparison, never SQL: its
 *           kind (replicator/verify.h's enum verify_query_kind), the table
 *           (schema, table), which bounds the range has (range), offset,
 *           mask and bucket; values are the ncols key column names, then
 *           the bounds' key values. The sink builds the statement from its
 *           own catalog (gateway/verify/verify_request.h) and runs it in its
 *           snapshot; seq numbers the queries of a job;
 *   RESULT  sink to source: the rows (ncols columns, nvalues = ncols × rows)
 *           or, with ok 0, the error in text;
 *   END     source to sink: the job is over (text: why, if it failed).
 * Values are text or NULL; their lengths are u32 (a row's text may exceed a
 * str's 64 KiB). A reader checks every value's framing; walk them with
 * relay_proto_verify_value().
 */
enum relay_proto_verify_op {
	RELAY_VERIFY_HOLD = 1,
	RELAY_VERIFY_MARK,
	RELAY_VERIFY_READY,
	RELAY_VERIFY_QUERY,
	RELAY_VERIFY_RESULT,
	RELAY_VERIFY_END,
};

#define RELAY_VERIFY_RANGE_LO 0x01
#define RELAY_VERIFY_RANGE_HI 0x02

struct relay_proto_verify {
	struct wire_str stream;
	uint64_t job;
	uint8_t op;              /* enum relay_proto_verify_op */
	uint8_t ok;              /* 0 or 1 */
	uint32_t seq;
	uint64_t lsn;
	uint32_t generation;
	struct wire_str text;
	uint8_t kind;            /* QUERY only (else 0): the request */
	struct wire_str schema;
	struct wire_str table;
	uint8_t range;           /* RELAY_VERIFY_RANGE_* */
	int64_t offset;
	uint64_t mask;
	uint64_t bucket;
	uint16_t ncols;          /* RESULT: columns; QUERY: key column names first in values */
	uint32_t nvalues;
	const uint8_t *values;   /* reader: the encoded values */
	size_t values_len;
};

/* The fields and the value count; the caller appends nvalues values next. */
bool relay_proto_write_verify_head(struct wire_writer *w,
		const struct relay_proto_verify *m) WIRE_MUSTCHECK;
bool relay_proto_put_verify_value(struct wire_writer *w, const char *value, size_t len) WIRE_MUSTCHECK;
enum relay_proto_status relay_proto_read_verify(const uint8_t *p, size_t len,
		struct relay_proto_verify *out);
/* The next value from a reader over out->values (NULL value: *value NULL). */
bool relay_proto_verify_value(struct wire_reader *r, const char **value, uint32_t *len);

/* ---- COMMAND and COMMAND_REPLY ---- */

/*
 * A control command (straitctl's words, argv[0] the command) a site asks a
 * peer to run, and the peer's answer: the same id, ok 0 or 1, and the reply
 * body (text or JSON, no NUL byte; may be empty). Which commands a site runs
 * for a peer is its own decision (gateway/daemon/forward.c).
 */
#define RELAY_COMMAND_MAX_ARGS 32

struct relay_proto_command {
	uint32_t id;
	struct wire_str argv[RELAY_COMMAND_MAX_ARGS];
	size_t argc;                          /* 1..RELAY_COMMAND_MAX_ARGS */
};

bool relay_proto_write_command(struct wire_writer *w,
		const struct relay_proto_command *m) WIRE_MUSTCHECK;
enum relay_proto_status relay_proto_read_command(const uint8_t *p, size_t len,
		struct relay_proto_command *out);

struct relay_proto_command_reply {
	uint32_t id;
	uint8_t ok;
	const char *body;                     /* body_len bytes, not NUL-terminated */
	size_t body_len;
};

bool relay_proto_write_command_reply(struct wire_writer *w,
		const struct relay_proto_command_reply *m) WIRE_MUSTCHECK;
enum relay_proto_status relay_proto_read_command_reply(const uint8_t *p, size_t len,
		struct relay_proto_command_reply *out);

#endif
