/*
 * streamspill.h — the sink's side of streamed transactions: the changes of a
 * source transaction that is still running wait on local disk until its
 * commit, then go to the apply as one ordinary transaction.
 *
 * The source streams a large transaction while it runs (pgoutput streaming):
 * blocks of its changes (Stream Start ... Stream Stop, every change carrying
 * the xid of the subtransaction that made it), interleaved with ordinary
 * transactions, then a Stream Commit or a Stream Abort (of the whole
 * transaction, or of a subtransaction: a rolled-back savepoint). Everything
 * the apply sees is an ordinary transaction: a Stream Commit becomes Begin,
 * the spilled changes (without their xids, less what a subtransaction abort
 * covered) and Commit, delivered in the stream's place, so commit order,
 * exactly-once skipping and the initial sync's filter work as for any other.
 *
 * Bounded memory: the blocks go to one file per open transaction in dir
 * (removed at commit, abort, reset and start: they are never trusted across
 * a restart, the source sends them again), and a replay hands the apply at
 * most STREAMSPILL_REPLAY_CHUNK at a time (one larger message whole), only
 * while room() says the apply has room. What arrives meanwhile is parked
 * behind the replay, in order; the source's send window bounds it.
 *
 * Gaps. A transaction whose first block was not seen (a block that is not
 * its first for an xid not open here) is broken: its commit stops the stream
 * (STREAMSPILL_BROKEN), nothing is applied over the hole. An abort, a new
 * first block or STREAMSPILL_MSG_VOID clears it.
 *
 * STREAMSPILL_MSG_VOID is strait's own message (one byte, a type pgoutput
 * never sends): the source puts it where its replication connection started
 * again. The server then sends every transaction that is still running from
 * its start, or, when it ended meanwhile, not at all: every open one is void.
 *
 * Not thread-safe; plain blocking file I/O.
 */
#ifndef STRAIT_STREAMSPILL_H
#define STRAIT_STREAMSPILL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STREAMSPILL_MSG_VOID 'X'
/* A replay hands the apply this much at a time (more for one larger message). */
#define STREAMSPILL_REPLAY_CHUNK (1u * 1024u * 1024u)

struct streamspill;

struct streamspill_env {
	/* A body of whole messages for the apply, nothing streamed in it; false: refused. */
	bool (*deliver)(void *arg, const uint8_t *body, size_t len);
	/* The apply can take more replayed bytes now. */
	bool (*room)(void *arg);
	/* Source commits ending at or before this are held already (skipped). */
	uint64_t (*received)(void *arg);
	void *arg;
};

enum streamspill_result {
	STREAMSPILL_DONE,            /* everything taken in went where it goes */
	STREAMSPILL_WAITING,         /* a replay waits for room: streamspill_run() again later */
	STREAMSPILL_REFUSED,         /* deliver() refused: ask the source again */
	STREAMSPILL_BROKEN,          /* malformed, or a gap (why says): stop the stream */
	STREAMSPILL_IOERR,           /* the spill files failed (why says) */
};

/* Removes what a previous process left in dir (made when missing); NULL on failure (err says). */
struct streamspill *streamspill_new(const char *dir, char *err, size_t errlen);
void streamspill_free(struct streamspill *ss);

/* Forgets every open transaction, a replay and what is parked (the source sends them again). */
void streamspill_reset(struct streamspill *ss);

/*
 * Takes a body (whole messages) in: delivered, spilled, or parked behind a
 * replay (copied). On REFUSED, BROKEN or IOERR the body is not taken and the
 * state is unchanged only up to the message that failed: reset before going on.
 */
enum streamspill_result streamspill_take(struct streamspill *ss, const uint8_t *body, size_t len,
		const struct streamspill_env *env, char *why, size_t whylen);

/* Goes on with a replay and what is parked behind it. */
enum streamspill_result streamspill_run(struct streamspill *ss, const struct streamspill_env *env,
		char *why, size_t whylen);

/* True while a replay or parked bodies wait. */
bool streamspill_busy(const struct streamspill *ss);

/*
 * Bytes taken in that never reach the apply as they came (spilled, control
 * messages, dropped), and bytes a replay delivered (its Begin and Commit
 * included): the window credit is the apply's released bytes plus the first,
 * less the second.
 */
uint64_t streamspill_consumed_bytes(const struct streamspill *ss);
uint64_t streamspill_replayed_bytes(const struct streamspill *ss);

/* Open transactions and bytes in their files now; transactions replayed and discarded. */
size_t streamspill_open_count(const struct streamspill *ss);
uint64_t streamspill_spilled_bytes(const struct streamspill *ss);
uint64_t streamspill_committed_count(const struct streamspill *ss);
uint64_t streamspill_aborted_count(const struct streamspill *ss);

#endif
