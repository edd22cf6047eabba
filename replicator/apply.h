/*
 * apply.h — the sink's apply engine: takes the pgoutput message stream of
 * whole source transactions (as the source site's straitd relays it) and
 * applies it to the target PostgreSQL through non-blocking libpq in pipeline
 * mode, recording progress with a replication origin in the same target
 * transactions, so that a crash anywhere resumes exactly once.
 *
 * Input contract (fixed): a batch body is a sequence of records, each a u32
 * big-endian length followed by one pgoutput message (protocol version 2,
 * exactly as the walsender sent it in XLogData; no streamed transactions). A
 * batch holds whole transactions (Begin ... Commit), possibly several;
 * Relation messages come before the changes that use them. A transaction
 * larger than one batch may span several; when the source is interrupted in
 * the middle of one and sends it again from its Begin, the partial copy is
 * dropped (and rolled back on the target if part of it was applied: the
 * engine reconnects by itself, and calls ready() again).
 *
 * Life cycle: apply_new() connects in the background; ready() reports the
 * origin's progress (the LSN the source must resume after). apply_submit()
 * queues batches; committed() reports each source commit once the target
 * transaction that holds it has committed. A source transaction of any size
 * is applied as it arrives, in one target transaction: past a few MiB held,
 * what is applied is freed (released()), and a rewind after that drops the
 * queue and falls back to the committed position (ready() asks again). On an error (schema mismatch, a
 * conflict under on_conflict=error, bad input, connection loss) the engine
 * logs it once, closes its connection, forgets everything that was not
 * committed and calls stopped(); the queued batches stay, and apply_resume()
 * reconnects and continues from the origin's position — nothing lost, nothing
 * applied twice.
 *
 * Callbacks run from the event loop, never from inside apply_new(),
 * apply_submit() or apply_resume(). They may call apply_submit(),
 * apply_resume() and the status functions, but not apply_free().
 *
 * Return conventions: bool, false on failure (already logged).
 */
#ifndef STRAIT_APPLY_H
#define STRAIT_APPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define APPLY_MUSTCHECK __attribute__((warn_unused_result))

struct event_base;
struct json_out;
struct apply;

/* What to do when a change does not fit the target's rows. */
enum apply_conflict {
	APPLY_CONFLICT_ERROR,        /* stop the stream, naming the table and key */
	APPLY_CONFLICT_SOURCE_WINS,  /* upsert; a missing UPDATE row is inserted */
	APPLY_CONFLICT_TARGET_WINS,  /* keep the target's row; skip the change */
};

struct apply_config {
	const char *conninfo;        /* the target database (libpq conninfo or URI) */
	const char *stream;          /* the stream's name; the origin is strait_<stream> */
	enum apply_conflict on_conflict;
	/*
	 * Grouping: consecutive source transactions already queued are applied in
	 * one target transaction until it holds this many changes or source
	 * transactions (0: the defaults, 5000 and 200). group_max_txns 1 applies
	 * every source transaction in its own target transaction. Larger groups
	 * save commits but make a row updated again and again (a pgbench branch)
	 * walk an ever longer version chain inside the one transaction.
	 */
	size_t group_max_changes;
	size_t group_max_txns;
	unsigned connect_timeout_s;  /* 0: 30 seconds */
	/*
	 * Target sessions applying independent source transactions side by side
	 * (applypar.h); 0 or 1: one session, every transaction after the other.
	 */
	unsigned workers;
	/* For applypar.c only: this engine is one of its workers (see below). */
	const struct apply_worker *worker;
};

struct apply_callbacks {
	/* Connected and set up; the source must resume after resume_lsn (0: from the start). */
	void (*ready)(void *arg, uint64_t resume_lsn);
	/*
	 * The source transaction ending at end_lsn is committed on the target.
	 * Called in commit order, once per transaction (not for transactions
	 * found already applied: ready()'s resume_lsn covers those).
	 */
	void (*committed)(void *arg, uint64_t end_lsn, int64_t commit_time_us);
	/* The stream paused; reason is the logged error. apply_resume() continues. */
	void (*stopped)(void *arg, const char *reason);
	/* Optional (may be NULL): everything submitted so far is applied. */
	void (*idle)(void *arg);
	/* Optional (may be NULL): batches were freed, apply_released_bytes() grew. */
	void (*released)(void *arg);
};

/*
 * The replication origin a stream's apply advances on its target: "strait_"
 * and the stream name as written ('-' stays; its slot name turns it into
 * '_', see source_slot_name()). Parallel sessions add ":apply:<n>".
 */
void apply_origin_name(const char *stream, char *out, size_t outlen);

/*
 * Starts an engine; it connects from the event loop. The config's strings are
 * copied. NULL when out of memory or the config is invalid (logged).
 */
struct apply *apply_new(struct event_base *base, const struct apply_config *cfg,
		const struct apply_callbacks *cb, void *cb_arg) APPLY_MUSTCHECK;

/*
 * Queues one batch body (copied). False when the body's record framing is
 * broken (a length running past the end) or memory runs out; nothing is
 * queued then. Batches may be submitted in any state, also while stopped.
 */
bool apply_submit(struct apply *a, const uint8_t *body, size_t len) APPLY_MUSTCHECK;

/* Bytes of submitted batches the engine holds (not committed, or not yet freed). */
size_t apply_pending_bytes(const struct apply *a);

/*
 * Bytes of submitted batches freed once used: committed, or (in a source
 * transaction larger than the engine holds) decoded, sent and forgotten.
 * Only grows; the source's send window counts what the sink holds with it.
 */
uint64_t apply_released_bytes(const struct apply *a);

/*
 * The end LSN of the last whole source transaction the engine holds,
 * committed or queued (at least the origin's position): where the source
 * may resume sending.
 */
uint64_t apply_received_lsn(const struct apply *a);

/*
 * Drops what was submitted after the last whole transaction (the part of one
 * that the source will send again from its Begin). True when part of it had
 * gone into the open target transaction: the engine then rolls back,
 * reconnects and calls ready() again (nothing committed is lost).
 */
bool apply_drop_partial(struct apply *a);

/* Reconnects a stopped engine. False (and nothing happens) when not stopped. */
bool apply_resume(struct apply *a);

/* Whether the engine is stopped (on an error, waiting for apply_resume()). */
bool apply_is_stopped(const struct apply *a);

/*
 * A hold point, for comparing the target with a source snapshot: from now
 * on no source transaction whose commit LSN is at or after lsn begins; the
 * group before it commits. False (nothing changes) when such a transaction
 * has begun already: the point has passed. A stop or reconnect keeps the
 * hold; apply_hold_release() goes on.
 */
bool apply_hold_at(struct apply *a, uint64_t lsn) APPLY_MUSTCHECK;
enum apply_hold {
	APPLY_HOLD_MOVING,           /* no hold, or still applying toward the point */
	APPLY_HOLD_BLOCKED,          /* stopped before a transaction at or after the point,
					everything before it committed */
	APPLY_HOLD_DRAINED,          /* everything submitted is committed, all before the point */
};
/* BLOCKED: the target holds exactly what precedes the point. DRAINED: so
 * far; exactly, once the source says every earlier transaction was sent. */
enum apply_hold apply_hold_state(const struct apply *a);
void apply_hold_release(struct apply *a);

/* The last source commit applied (0: none yet). */
uint64_t apply_applied_lsn(const struct apply *a);

/*
 * Writes the engine's status as an object (key: the member name, or NULL):
 * state, origin, applied LSN, last commit time, transactions and rows
 * applied, conflicts, pending bytes, last error.
 */
void apply_status_json(const struct apply *a, struct json_out *j, const char *key);

/* Closes the connection (rolling back what is not committed) and frees everything. */
void apply_free(struct apply *a);

/*
 * ---- an engine as a worker of parallel apply (applypar.c only) ----
 *
 * A worker applies "segments": runs of whole source transactions that are
 * consecutive in the source's commit order, each in one target transaction,
 * on its own session and replication origin. Its session commits
 * asynchronously (the coordinator makes a segment now and then flush the
 * WAL, and acknowledges only what is flushed). Each segment takes an
 * advisory lock (lock_class, its number) when it begins and, before it
 * commits, waits for the previous segment's lock and checks that segment's
 * origin really moved past it: the target itself keeps the commit order,
 * without a round trip through the daemon, and a previous segment that
 * rolled back makes this one roll back too.
 *
 * The hooks run from the worker's event callbacks (arg is the worker's own):
 *   may_begin(commit_lsn)  may the source transaction committing at commit_lsn
 *                          begin now? (false: it waits until apply_gate_open())
 *   executed(commit_lsn)   every change of it has its result (its row locks are held)
 *   started(seg)           segment seg holds its lock
 *   may_commit(seg, sync)  may seg commit now? *sync: with a WAL flush
 *                          (false: it waits until apply_gate_open())
 *   seg_committed(seg)     seg committed
 */
struct apply_worker {
	const char *stream_origin;   /* the stream's origin: the resume point is the highest
					of it and its workers' ("<it>:apply:<n>") */
	int32_t lock_class;
	bool (*may_begin)(void *arg, uint64_t commit_lsn);
	void (*executed)(void *arg, uint64_t commit_lsn);
	void (*started)(void *arg, uint64_t seg);
	bool (*may_commit)(void *arg, uint64_t seg, bool *sync);
	void (*seg_committed)(void *arg, uint64_t seg);
	void *arg;
};

struct apply_segment {
	uint64_t seq;                /* the coordinator's numbering, from 1 */
	const char *prev_origin;     /* the origin that commits the previous segment (the
					string outlives the segment); NULL: nothing to wait for */
	uint64_t prev_end_lsn;       /* that segment's last source transaction's end */
};

/*
 * A worker's engine: origin is its own ("<stream origin>:apply:<n>", or the
 * stream's for worker 0). NULL when out of memory (logged).
 */
struct apply *apply_new_worker(struct event_base *base, const struct apply_config *cfg,
		const char *origin, const struct apply_callbacks *cb, void *cb_arg) APPLY_MUSTCHECK;
/* Queues one segment: whole transactions, or the start of one large one. */
bool apply_submit_segment(struct apply *a, const struct apply_segment *seg,
		const uint8_t *body, size_t len) APPLY_MUSTCHECK;
/* A hook said wait: ask it again. */
void apply_gate_open(struct apply *a);
/* What an engine applied, for the coordinator's status. */
struct apply_totals {
	uint64_t txns;
	uint64_t skipped;
	uint64_t target_txns;
	uint64_t inserted;
	uint64_t updated;
	uint64_t deleted;
	uint64_t truncated;
	uint64_t insert_exists;      /* conflicts */
	uint64_t update_missing;
	uint64_t delete_missing;
	size_t inflight;             /* commands awaiting their results */
	int server_version;
	bool triggers_fire;
};
void apply_totals(const struct apply *a, struct apply_totals *t);

/* "error", "source_wins", "target_wins"; parse returns false when unknown. */
const char *apply_conflict_name(enum apply_conflict c);
bool apply_conflict_parse(const char *name, enum apply_conflict *out) APPLY_MUSTCHECK;

#endif
