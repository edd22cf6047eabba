/*
 * diskwarn.h — judging whether a held stream is about to fill a disk, early
 * enough for an operator to act.
 *
 * Three disks are at risk while a stream is held or throttled: the source's
 * slot keeps WAL (up to max_slot_wal_keep_size, then PostgreSQL invalidates
 * the slot and the stream can only start over with a new initial sync),
 * that WAL lies on pg_wal's disk (a full pg_wal stops the whole source
 * server), and strait's own spool grows in state_dir. The judging
 * functions are pure — figures in, warnings out — so every threshold is
 * unit-tested with made-up numbers; the measuring is common/diskspace.h's.
 *
 * THRESHOLDS AND WHY THEY ARE EARLY ENOUGH
 *
 * A held slot's WAL grows at the source's write rate, so a fraction of a
 * budget used is a fraction of the time left: at half of a budget the
 * operator has as long again as the hold has lasted, at 80 % a quarter of
 * it. Both slot rules use these marks.
 *
 *  slot_keep_size  retained WAL / max_slot_wal_keep_size (when not -1):
 *                  warning at >= 50 %, critical at >= 80 %. wal_status
 *                  "unreserved" (past the limit, removed at the next
 *                  checkpoint) and "lost" (invalidated) are critical
 *                  whatever the figures say.
 *  slot_invalidated  PostgreSQL 17+ names why a slot is invalid
 *                  (invalidation_reason): critical, said instead of
 *                  slot_keep_size's "lost".
 *  slot_idle_timeout  PostgreSQL 18+ invalidates a slot inactive longer than
 *                  idle_replication_slot_timeout (when not 0): inactive
 *                  time / timeout, warning at >= 50 %, critical at >= 80 %.
 *  wal_disk_retained  only when max_slot_wal_keep_size would not save the
 *                  disk, i.e. it is unlimited or what the slot may still
 *                  grow (limit - retained) exceeds the disk's free space:
 *                  retained / (retained + free), the share of the room the
 *                  slot could have used, warning at >= 50 % (retained >=
 *                  free), critical at >= 80 % (retained >= 4 x free).
 *  wal_disk_free   pg_wal's disk below 10 % free: critical at once, as a
 *                  full pg_wal stops the source server, not just strait.
 *  spool_disk_free state_dir's disk below 10 % free: warning; below 5 %:
 *                  critical (a full spool disk stops the stream, never the
 *                  source).
 *  spool_cap       the disk has less free space than the spool may still
 *                  grow (spool_max - spool_bytes): the cap would not save
 *                  the disk. Warning: true from the moment it is so, long
 *                  before either fills.
 *
 * "Free" is what unprivileged users may still write (f_bavail, as
 * PostgreSQL runs unprivileged) and a disk's size is used + that free
 * space, as df(1) counts Use%: "10 % free" is df's 90 %.
 *
 * Not judged: wal_keep_size and other slots also hold WAL. PostgreSQL
 * removes whole segments, so a slot survives up to one segment (16 MiB by
 * default) past max_slot_wal_keep_size (safe_wal_size shows it), and longer
 * when wal_keep_size is larger: the keep_size rule is then a little early,
 * never late.
 *
 * Ownership: plain values; a diskwarn_list is the caller's (start it
 * zeroed; the judges append to it).
 */
#ifndef STRAIT_DISKWARN_H
#define STRAIT_DISKWARN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/diskspace.h"
#include "replicator/slotwatch.h"

enum diskwarn_level {
	DISKWARN_NONE = 0,
	DISKWARN_WARNING = 1,
	DISKWARN_CRITICAL = 2,
};

struct diskwarn {
	enum diskwarn_level level;
	const char *kind;        /* static: "slot_keep_size", "wal_disk_retained", "wal_disk_free", "spool_disk_free", "spool_cap",
				  * "slot_invalidated", "slot_idle_timeout" */
	char text[1536];         /* one line for humans, lowercase, no final period */
};

/* More than the judges can produce together (3 for a slot, 2 for a spool). */
#define DISKWARN_MAX 8

struct diskwarn_list {
	size_t n;
	struct diskwarn w[DISKWARN_MAX];     /* beyond DISKWARN_MAX, warnings are dropped */
};

/* Thresholds, in percent. */
#define DISKWARN_KEEP_WARN_PCT 50u
#define DISKWARN_KEEP_CRIT_PCT 80u
#define DISKWARN_WAL_RETAINED_WARN_PCT 50u
#define DISKWARN_WAL_RETAINED_CRIT_PCT 80u
#define DISKWARN_WAL_FREE_CRIT_PCT 10u
#define DISKWARN_SPOOL_FREE_WARN_PCT 10u
#define DISKWARN_SPOOL_FREE_CRIT_PCT 5u

/*
 * Appends the warnings for one slot sample (slot_keep_size,
 * wal_disk_retained, wal_disk_free); nothing for figures that are unknown
 * or a slot that does not exist.
 */
void diskwarn_slot(const struct slot_sample *s, const char *slot_name, struct diskwarn_list *out);

/*
 * Appends the warnings for a spool of spool_bytes, capped at spool_max (0:
 * no cap, so only the free-space rules apply), on a disk with the room in disk. Several streams sharing
 * state_dir: pass their sums. state_dir only names the disk in the text.
 */
void diskwarn_spool_judge(const struct disk_space *disk, const char *state_dir,
		uint64_t spool_bytes, uint64_t spool_max, struct diskwarn_list *out);

/* disk_space_measure(state_dir) and diskwarn_spool_judge(); false (nothing appended) when statvfs failed. */
bool diskwarn_spool(const char *state_dir, uint64_t spool_bytes, uint64_t spool_max,
		struct diskwarn_list *out, char *err, size_t errlen);

/* The highest level in the list (DISKWARN_NONE when empty). */
enum diskwarn_level diskwarn_worst(const struct diskwarn_list *l);

/* "ok", "warning", "critical". */
const char *diskwarn_level_name(enum diskwarn_level level);

/* Writes n bytes for humans ("512 bytes", "7.8 GiB", "10 GiB") into buf; returns buf. */
char *diskwarn_format_bytes(uint64_t n, char *buf, size_t len);

#endif
