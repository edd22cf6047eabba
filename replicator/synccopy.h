/*
 * synccopy.h — the source side of one initial-sync round: take a snapshot,
 * list the publication's tables in it, and read them with COPY ... TO
 * STDOUT, a few tables at a time, handing the COPY text over in chunks.
 *
 * The snapshot is either the one the stream's slot exported when it was
 * created (its consistent point is where streaming starts), or, when that
 * one is gone (the slot existed, or a crash came between), a fresh one from
 * a TEMPORARY logical slot made on a replication connection of the round's
 * own: its consistent point is this round's snapshot LSN, and the sink
 * skips the stream's changes to these tables up to it. Either way every
 * worker connection opens a REPEATABLE READ transaction and imports the
 * snapshot (SET TRANSACTION SNAPSHOT) before anything else; once all have,
 * the exporting connection may run commands again (the temporary slot is
 * dropped then).
 *
 * The first worker lists the tables (pg_publication_tables: published
 * columns without generated ones, row filters, partitioned roots), largest
 * first, so the longest copy starts early; the workers then take tables in
 * that order. Tables the sink already has (has() says so) are in the plan as
 * kept and not copied.
 *
 * A plain table larger than split_above (on PostgreSQL 14 and later) is
 * copied in block ranges (syncrange.h), each read by one worker with a TID
 * Range Scan and handed over as a copy of its own; the workers take ranges
 * like tables. Ranges the sink has from this very snapshot (has_range())
 * are kept.
 *
 * Holding the snapshot. A round that loses its sink (link down, the sink
 * restarted) is parked, not ended: synccopy_park() lets every worker finish
 * or drop the COPY it runs (rows read to the end and thrown away: the
 * transaction, and with it the snapshot, must stay intact) and keeps its
 * REPEATABLE READ transaction open. synccopy_continue() then starts a new
 * round in the same snapshot with the same ranges, copying only what the
 * sink still lacks — ranges of different snapshots are never combined. The
 * caller bounds how long a parked copy is kept: it holds the source's xmin.
 *
 * Flow control, two ways: chunk() returning false pauses every worker until
 * synccopy_resume_reading() (the relay link is full); and a worker reads a
 * table no further than `window` chunks beyond what the sink acknowledged
 * with synccopy_ack() (the target loads slower than the link carries).
 *
 * Non-blocking libpq inside the caller's event loop. Ownership: the caller
 * frees the object with synccopy_free(), never inside one of its callbacks.
 * failed() comes at most once, and nothing after it; finished() at most once
 * per round.
 */
#ifndef STRAIT_SYNCCOPY_H
#define STRAIT_SYNCCOPY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "replicator/syncplan.h"

struct event_base;
struct json_out;
struct synccopy;

#define SYNCCOPY_CHUNK_BYTES (256u * 1024u)
#define SYNCCOPY_WINDOW 32u
#define SYNCCOPY_WORKERS 2u
#define SYNCCOPY_MAX_WORKERS 8u

struct synccopy_config {
	const char *stream;          /* for messages and the temporary slot's name */
	const char *conninfo;        /* the source database */
	const char *publication;
	const char *snapshot;        /* an exported snapshot still valid, or NULL: take one */
	uint64_t snapshot_lsn;       /* its consistent point */
	uint32_t generation;         /* written into the plan */
	size_t chunk_bytes;          /* 0: SYNCCOPY_CHUNK_BYTES */
	unsigned window;             /* 0: SYNCCOPY_WINDOW */
	unsigned workers;            /* tables at a time; 0: SYNCCOPY_WORKERS */
	uint64_t split_above;        /* larger plain tables are copied in ranges; 0: never */
};

struct synccopy_callbacks {
	/* Whether the sink already has schema.table loaded (kept, not copied). */
	bool (*has)(void *arg, const char *schema, const char *table);
	/*
	 * Whether the sink has range `range` of `ranges` of schema.table loaded
	 * from the snapshot at lsn (kept, not copied). May be NULL: none.
	 */
	bool (*has_range)(void *arg, const char *schema, const char *table, uint64_t lsn,
			uint32_t range, uint32_t ranges);
	/* Every worker imported the snapshot: its exporter may let it go (may be NULL). */
	void (*imported)(void *arg);
	/* The round's plan, listed in its snapshot. */
	void (*planned)(void *arg, const struct syncplan *plan, uint64_t snapshot_lsn);
	/*
	 * COPY text of table t (taken in the snapshot at lsn), or of its range
	 * `range` when t->ranges is set, chunks numbered from 0 (rows may be cut
	 * anywhere); last on the final one, which may be empty. Return false to
	 * pause (synccopy_resume_reading() goes on).
	 */
	bool (*chunk)(void *arg, const struct syncplan_table *t, uint64_t lsn, uint32_t range,
			uint32_t chunk, const uint8_t *data, size_t len, bool last);
	/* Every table and range of the round's plan is read (the snapshot is still held). */
	void (*finished)(void *arg);
	/* The round failed; reason is already logged. */
	void (*failed)(void *arg, const char *reason);
};

/* Starts the round from the next loop pass; NULL when out of memory. */
struct synccopy *synccopy_new(struct event_base *base, const struct synccopy_config *cfg,
		const struct synccopy_callbacks *cb, void *arg);
void synccopy_free(struct synccopy *sc);

void synccopy_resume_reading(struct synccopy *sc);

/* The sink took chunks 0..chunk of schema.table, or of its range (from the snapshot at lsn). */
void synccopy_ack(struct synccopy *sc, const char *schema, size_t schema_len,
		const char *table, size_t table_len, uint64_t lsn, uint32_t range, uint32_t chunk);

/*
 * The round's sink is gone: stop handing chunks over and keep the snapshot
 * (every worker's transaction) for synccopy_continue(). False when there is
 * no snapshot to keep (not imported yet, failed, or released): free it then.
 */
bool synccopy_park(struct synccopy *sc);
/*
 * A new round (generation) in the held snapshot, from the next loop pass:
 * planned() again, with has() and has_range() asked afresh, then the
 * tables and ranges the sink lacks. Only after synccopy_park().
 */
void synccopy_continue(struct synccopy *sc, uint32_t generation);
/* The snapshot is not needed any more: every connection closes; status stays. */
void synccopy_release(struct synccopy *sc);
/* The round's snapshot LSN (0 before it is known). */
uint64_t synccopy_snapshot_lsn(const struct synccopy *sc);

/* Whether the snapshot was imported by every worker (an exporting connection may move on). */
bool synccopy_snapshot_taken(const struct synccopy *sc);

/*
 * Members of the caller's open status object: state, snapshot, tables, rows,
 * bytes, rates, the estimated time left (eta_s, by heap size), the biggest
 * tables still to copy (with ranges done of ranges for a split table),
 * current.
 */
void synccopy_status_json(const struct synccopy *sc, struct json_out *j);

/* The round's figures, the same as status shows (for metrics). */
struct synccopy_progress {
	bool planned;                /* the tables are listed: the figures below hold */
	size_t tables_total;         /* in the plan, copied or kept */
	size_t tables_to_copy;
	size_t tables_copied;        /* read in full */
	uint64_t rows;               /* read so far */
	uint64_t bytes;              /* COPY text read so far */
	double eta_s;                /* seconds left reading, by heap size; -1 not known yet */
};
void synccopy_progress(const struct synccopy *sc, struct synccopy_progress *out);

#endif
