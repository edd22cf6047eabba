/*
 * lag.h — one stream's replication lag, in bytes and in seconds, from what the
 * stream sees go by: the commits handed to the link, the sink's acks and the
 * source's WAL position. Pure bookkeeping: no I/O, no clock of its own (the
 * caller passes "now"), so both ends of a stream can run one and the unit
 * tests can drive it.
 *
 * Definitions (DESIGN, "The control path"):
 *
 *   lag bytes    the source's WAL end minus the LSN the sink has applied —
 *                but 0 when every commit handed over has been applied and
 *                nothing published is pending, so WAL that nothing
 *                publishes (other databases, unpublished tables, the
 *                checkpointer) never shows as lag.
 *   lag seconds  the age of the oldest commit handed over and not applied;
 *                0 when caught up.
 *
 * Feeding it (the source side of a stream):
 *
 *   lag_acked(l, resume_lsn, 0)        when the sink names where it resumes
 *                                      (HELLO, RESUME): its applied position
 *   lag_commit_sent(l, end, time)      for each whole transaction handed to
 *                                      the link: its commit end LSN and commit
 *                                      time (µs since the Unix epoch)
 *   lag_wal_position(l, wal_end)       from every keepalive and XLogData: how
 *                                      far the walsender has decoded and sent
 *   lag_set_pending(l, true/false)     whether published changes may be held
 *                                      back beyond the commits handed over: a
 *                                      transaction open (Begin seen, Commit
 *                                      not yet), reading paused by
 *                                      backpressure, a schedule hold
 *   lag_acked(l, applied, commit_time) for each ACK from the sink
 *
 * The sink side can feed the same calls from the batches it receives (their
 * last_lsn and, lacking the source's commit time, the arrival time), its own
 * commits, and the source's WAL position from HEARTBEAT.
 *
 * Rules: positions only move forward — a commit at or below the newest one
 * recorded is a re-send after a resume and is ignored (the first sending's
 * commit time stays), an ack at or below the applied position is a duplicate
 * or reordered and is ignored, and a WAL position below the known one is
 * stale. Until the first lag_acked() the applied position is unknown and
 * lag_bytes() is 0 (lag_seconds() still counts from the commits recorded).
 * Times are the source's clock; a commit time in the future (clock skew
 * between sites) counts as age 0.
 *
 * Memory is bounded: at most `capacity` unapplied commits are kept. When the
 * ring is full, the two adjacent commits closest in time are coalesced into
 * one entry (the later end LSN, the earlier commit time), so lag_bytes() stays
 * exact and lag_seconds() errs on the high side by at most that gap.
 *
 * Ownership: lag_new() returns an object the caller frees with lag_free().
 * Not thread-safe (the daemon has one loop).
 */
#ifndef STRAIT_LAG_H
#define STRAIT_LAG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Unapplied commits kept before coalescing, unless lag_new() is told otherwise. */
#define LAG_DEFAULT_CAPACITY 1024u

struct lag;

/* capacity: entries in the ring (at least 2; 0 means LAG_DEFAULT_CAPACITY). NULL when out of memory. */
struct lag *lag_new(size_t capacity);
/* NULL is fine. */
void lag_free(struct lag *l);

/* Forgets everything (a stream re-seeded from scratch). */
void lag_reset(struct lag *l);

/* A whole transaction handed to the link: its commit end LSN and commit time (µs, Unix epoch). */
void lag_commit_sent(struct lag *l, uint64_t end_lsn, int64_t commit_time_us);

/*
 * The sink applied and committed everything up to applied_lsn (an ACK, or the
 * resume position it names). commit_time_us is the source commit time of that
 * transaction, 0 when not known; kept for lag_last_applied_time().
 */
void lag_acked(struct lag *l, uint64_t applied_lsn, int64_t commit_time_us);

/* The source's WAL position as the walsender reports it (keepalive / XLogData wal_end). */
void lag_wal_position(struct lag *l, uint64_t wal_end);

/* Whether published changes may be pending beyond the commits handed over (see above). */
void lag_set_pending(struct lag *l, bool pending);

/* Lag in bytes (see above). */
uint64_t lag_bytes(const struct lag *l);

/* Lag in seconds at now_us (µs, Unix epoch): the age of the oldest unapplied commit, or 0. */
double lag_seconds(const struct lag *l, int64_t now_us);

/* Whether everything handed over is applied and nothing is pending. */
bool lag_caught_up(const struct lag *l);

/* What the tracker knows, for status and failover decisions. */
uint64_t lag_applied_lsn(const struct lag *l);      /* 0: unknown yet */
int64_t lag_last_applied_time(const struct lag *l); /* commit time of the last ack, 0: unknown */
uint64_t lag_wal_lsn(const struct lag *l);          /* 0: unknown yet */
uint64_t lag_sent_lsn(const struct lag *l);         /* newest commit end handed over, 0: none */
size_t lag_pending_commits(const struct lag *l);    /* ring entries (coalesced ones count once) */

#endif
