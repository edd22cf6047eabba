/*
 * slotwatch.h — measuring how much WAL a stream's replication slot holds on
 * the source server, and how much room is left for it.
 *
 * A held or throttled stream keeps its slot's restart_lsn still while the
 * server writes on: the WAL in between stays in pg_wal until the slot moves,
 * until max_slot_wal_keep_size invalidates the slot (PostgreSQL 13+), or
 * until pg_wal's disk is full and the server stops. slotwatch polls the
 * source on an ordinary connection every interval and keeps the latest
 * figures; gateway/stream/diskwarn.h judges them.
 *
 * Each poll is one statement: the server's WAL position, the slot's
 * restart_lsn, confirmed_flush_lsn, wal_status and safe_wal_size, the
 * server's max_slot_wal_keep_size, on 17+ the slot's invalidation_reason and
 * how long it has been inactive, on 18+ idle_replication_slot_timeout and, when the server runs on this host (a
 * unix socket, or localhost / 127.x / ::1) and the role may read
 * data_directory (superuser or pg_read_all_settings), statvfs() of
 * DATA_DIR/pg_wal. Anything unknown is flagged as such, never guessed.
 *
 * The server's version and the slot figures it lacks are logged once per
 * slotwatch (pgversion.h), when first seen and when the version changes.
 *
 * Failures never block and never spam: after a failed connection the next
 * attempt waits for the first tick at least max(interval, SLOTWATCH_RETRY_MS)
 * later (at most one attempt a second, never more often than polls), a poll
 * with no answer
 * within SLOTWATCH_TIMEOUT_MS drops the connection, and a failure is logged
 * (warning) only when its message differs from the previous one; the first
 * success after failures is logged once (info).
 *
 * Ownership: the caller owns the slotwatch and frees it with
 * slotwatch_free(), never from inside its callback. Samples handed out
 * belong to the slotwatch and change at the next poll.
 */
#ifndef STRAIT_SLOTWATCH_H
#define STRAIT_SLOTWATCH_H

#include <stdbool.h>
#include <stdint.h>

struct event_base;
struct slotwatch;

#define SLOTWATCH_RETRY_MS 1000u     /* least wait after a failed connection */
#define SLOTWATCH_TIMEOUT_MS 30000u  /* a poll unanswered this long drops the connection */

/* One poll's figures. Each *_known flag says whether the field beside it holds a value. */
struct slot_sample {
	int64_t taken_us;                /* when it was taken, wall clock, µs since the Unix epoch */
	int server_version;              /* PQserverVersion(): 150004 for 15.4 */
	bool in_recovery;                /* a standby: wal_lsn is its replay position */

	bool wal_lsn_known;
	uint64_t wal_lsn;                /* pg_current_wal_lsn() (standby: pg_last_wal_replay_lsn()) */

	bool slot_found;                 /* false: no slot of that name (all slot figures unknown) */
	bool restart_known;
	uint64_t restart_lsn;            /* oldest WAL the slot needs */
	bool confirmed_known;
	uint64_t confirmed_flush_lsn;    /* what the stream confirmed */
	bool retained_known;
	uint64_t retained_bytes;         /* wal_lsn - restart_lsn: WAL held for the slot (0 if behind) */
	char wal_status[16];             /* reserved, extended, unreserved, lost; "" when unknown (< 13) */
	bool safe_wal_size_known;        /* NULL for lost slots and when the limit is -1 */
	int64_t safe_wal_size;           /* bytes the server may write before the slot is at risk */

	/* PostgreSQL 17+: why the server invalidated the slot (wal_removed, rows_removed,
	 * wal_level_insufficient, idle_timeout on 18); "" when it is valid or unknown */
	char invalidation_reason[32];
	bool inactive_known;             /* 17+, and the slot is not in use */
	int64_t inactive_seconds;        /* since inactive_since */
	bool idle_timeout_known;         /* 18+: idle_replication_slot_timeout */
	int64_t idle_timeout_seconds;    /* 0 = never */

	bool max_keep_known;             /* false before PostgreSQL 13 (no such limit: unlimited) */
	int64_t max_slot_wal_keep_size;  /* bytes; -1 = unlimited */

	bool server_local;               /* connected over a unix socket or to a loopback address */
	bool wal_disk_known;             /* statvfs() of wal_disk_path worked */
	uint64_t wal_disk_free;          /* bytes free to unprivileged users (f_bavail) */
	uint64_t wal_disk_size;          /* bytes used + free to them: what df counts as 100% */
	char wal_disk_path[1040];        /* DATA_DIR/pg_wal, or DATA_DIR when pg_wal is not reachable */
};

/*
 * Called after every poll: with the sample (err NULL) or, when the poll
 * failed, with NULL and the reason (the previous sample is still in
 * slotwatch_last()).
 */
typedef void (*slotwatch_fn)(void *arg, const struct slot_sample *s, const char *err);

/*
 * Polls slot_name on conninfo (keyword=value or URI; a replication=
 * setting in it is overridden) every interval_ms, the first time at once
 * (from the loop). what names it in log messages, e.g. "stream \"app\"".
 * cb may be NULL. NULL when out of memory or libevent refused the timer.
 */
struct slotwatch *slotwatch_new(struct event_base *base, const char *conninfo,
		const char *slot_name, unsigned interval_ms, const char *what,
		slotwatch_fn cb, void *arg);
void slotwatch_free(struct slotwatch *w);

/* The latest successful sample, NULL before the first. */
const struct slot_sample *slotwatch_last(const struct slotwatch *w);

/* Why the latest poll failed, "" when it succeeded (or none finished yet). */
const char *slotwatch_error(const struct slotwatch *w);

const char *slotwatch_slot_name(const struct slotwatch *w);

/* The statement one poll runs (slot_literal already quoted); exposed for tests. Caller frees. */
char *slotwatch_sql(int server_version, const char *slot_literal);

/* Whether a libpq host (PQhost()/PQhostaddr()) is this host: a socket directory or a loopback address. */
bool slotwatch_host_is_local(const char *host);

#endif
