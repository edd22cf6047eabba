/*
 * applypar.h — parallel apply: the apply engine of apply.h with several
 * target sessions (workers) applying independent source transactions side
 * by side, every transaction still committing in the source's commit order.
 * apply.c hands every call to it when apply_config.workers > 1; the contract
 * is apply.h's.
 *
 * How. The coordinator splits what it is given into whole source
 * transactions, and each transaction's writes into keys (its relation and
 * replica-identity values, writeset.h). It deals runs of consecutive
 * transactions ("segments", one target transaction each) to the workers in
 * turn. A transaction begins on its worker only when every earlier
 * transaction that wrote one of its keys on another worker has executed
 * its changes (their row locks are held, so the later one waits on the
 * target, behind it, and never ahead of it); a TRUNCATE, or a transaction
 * too large to hold, waits for everything before it and everything after
 * it waits for it. The commit order is kept on the target itself (the
 * workers' advisory locks, apply.h), and a segment rolled back makes every
 * later one roll back: nothing commits over a hole.
 *
 * Exactly once. Each worker records its progress in its own replication
 * origin, atomically with each segment. Since segments commit in source
 * order, what is committed is always a prefix of the source's transactions,
 * and the resume position is the highest of the origins (read after a
 * flushing commit). Workers commit without waiting for the WAL flush; every
 * so often, and always when nothing more is waiting, a segment commits with
 * one, which makes all before it durable: only then are their commits
 * reported (committed()), so the source never forgets what a crash of the
 * target could lose.
 *
 * Failures. Any error of any worker (a conflict, a lost connection, a
 * rolled-back predecessor) ends every worker (rolling back what is not
 * committed), drops everything not committed and calls stopped();
 * apply_resume() starts the workers again, ready() reports the highest
 * origin and the source sends the rest again. Until past what was in
 * flight at the failure, transactions are applied by one worker, one after
 * the other, so an error that parallelism caused (a unique key outside the
 * replica identity) does not come back, and a real one stops the stream as
 * with one session.
 */
#ifndef STRAIT_APPLYPAR_H
#define STRAIT_APPLYPAR_H

#include "replicator/apply.h"

#define APPLYPAR_WORKERS_MAX 16    /* config.h's CONFIG_APPLY_WORKERS_MAX */

struct applypar;

struct applypar *applypar_new(struct event_base *base, const struct apply_config *cfg,
		const struct apply_callbacks *cb, void *cb_arg);
bool applypar_submit(struct applypar *p, const uint8_t *body, size_t len);
size_t applypar_pending_bytes(const struct applypar *p);
uint64_t applypar_released_bytes(const struct applypar *p);
uint64_t applypar_received_lsn(const struct applypar *p);
bool applypar_drop_partial(struct applypar *p);
bool applypar_resume(struct applypar *p);
bool applypar_is_stopped(const struct applypar *p);
bool applypar_hold_at(struct applypar *p, uint64_t lsn);
enum apply_hold applypar_hold_state(const struct applypar *p);
void applypar_hold_release(struct applypar *p);
uint64_t applypar_applied_lsn(const struct applypar *p);
void applypar_status_json(const struct applypar *p, struct json_out *j, const char *key);
void applypar_free(struct applypar *p);

#endif
