/*
 * syncfilter.h — after an initial sync, drops the changes a table's copy
 * already holds, before a batch reaches the apply engine.
 *
 * Each table is loaded from a snapshot taken at some LSN (its "sync LSN");
 * tables copied again after a crash have later ones than the rest. Streaming
 * starts at the earliest, so for a while the stream carries transactions
 * that some tables' copies already contain. As PostgreSQL's own apply worker
 * does for tables whose sync finished, a change to such a table is applied
 * only when its transaction's commit comes at or after the table's sync
 * LSN; that is, it is dropped when
 *
 *     Begin.final_lsn  <  sync LSN of the change's table
 *
 * (final_lsn is where the commit record starts: a copy taken at LSN L holds
 * exactly the transactions that committed before L).
 *
 * Input and output are batch bodies as apply.h defines them: records of a
 * u32 big-endian length and one pgoutput message (protocol 2, no streamed
 * transactions). Insert, Update and Delete of such a table are dropped; a
 * Truncate loses those of its relations (and goes when none is left);
 * everything else — Begin, Commit, Relation, Type, Origin, Message — passes,
 * so the apply engine still advances its origin and learns relation shapes.
 * Relation messages map relation OIDs to schema.table; the mapping is kept
 * across batches. A transaction may span batches, so the filter remembers
 * the open transaction's final_lsn.
 *
 * Once a Begin at or after the highest sync LSN has gone by, nothing can be
 * dropped any more and batches pass untouched without being read, until
 * syncfilter_restart() (the source starts over, maybe from further back).
 *
 * Ownership: syncfilter_new() returns an object freed by syncfilter_free().
 * Return conventions: bool, false when out of memory or the body's record
 * framing is broken (err says which).
 */
#ifndef STRAIT_SYNCFILTER_H
#define STRAIT_SYNCFILTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SYNCFILTER_MUSTCHECK __attribute__((warn_unused_result))

struct syncfilter;

struct syncfilter *syncfilter_new(void);
void syncfilter_free(struct syncfilter *f);

/* The table's copy was taken at sync_lsn (replaces an earlier value). */
bool syncfilter_set_table(struct syncfilter *f, const char *schema, const char *table,
		uint64_t sync_lsn) SYNCFILTER_MUSTCHECK;

/* The source streams anew (a RESUME): no transaction is open, look again. */
void syncfilter_restart(struct syncfilter *f);

/* Whether a change can still be dropped (some sync LSN is ahead of the stream). */
bool syncfilter_active(const struct syncfilter *f);

/*
 * Filters one batch body. *out is body itself when nothing was dropped,
 * else the filter's own buffer (valid until the next call).
 */
bool syncfilter_run(struct syncfilter *f, const uint8_t *body, size_t len,
		const uint8_t **out, size_t *out_len, char *err, size_t errlen)
	SYNCFILTER_MUSTCHECK;

/* Changes dropped so far (a Truncate's relation counts as one). */
uint64_t syncfilter_dropped(const struct syncfilter *f);

#endif
