/*
 * reachback.h — where a resend from the spool must start so that the sink
 * gets every streamed transaction it needs whole.
 *
 * A streamed transaction's blocks sit in the spool between ordinary
 * transactions, long before its commit. A sink that resumes after a commit
 * C (it lost what it held: a restart, a new link, an apply that started
 * over) needs, besides everything after C, every block of the streamed
 * transactions still open at C — from their first block on, which may lie
 * well before C. The reader notes each record as it is spooled: whether it
 * holds a first block (by the slot reader's batch number) and which batch
 * holds the first block of the oldest transaction still open after it.
 * From that, reachback_at() says where a resume after C must reach back to,
 * and the spool keeps the segments from there on.
 *
 * Only this process's records are described: after a restart the source
 * connection starts again, the server sends every open transaction again
 * from its start, and the blocks spooled before are void (the sink is told
 * so). reachback_new_connection() says a new connection begins numbering.
 */
#ifndef STRAIT_REACHBACK_H
#define STRAIT_REACHBACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/stream/spool.h"

struct reachback;

struct reachback *reachback_new(void);
void reachback_free(struct reachback *rb);

/*
 * A record was spooled at pos. batch_no, starts_stream and open_since are the
 * slot reader's (struct source_batch_info); commit_end_lsn the record's. False
 * when out of memory (nothing noted: treat as a failed append).
 */
bool reachback_record(struct reachback *rb, struct spool_pos pos, uint64_t commit_end_lsn,
		uint64_t batch_no, bool starts_stream, uint64_t open_since);

/* A new source connection: its batch numbers start again (records noted so far stay). */
void reachback_new_connection(struct reachback *rb);

/*
 * Where a resume after lsn must start at the latest: true with *pos when a
 * streamed transaction was open after the last record ending at or before lsn.
 */
bool reachback_at(const struct reachback *rb, uint64_t lsn, struct spool_pos *pos);

/* The sink committed up to lsn: what only older positions needed is forgotten. */
void reachback_release(struct reachback *rb, uint64_t lsn);

/* Entries held (for tests and status). */
size_t reachback_entries(const struct reachback *rb);

#endif
