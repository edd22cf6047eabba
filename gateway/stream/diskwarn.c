/*
 * diskwarn.c — warnings before a held stream fills a disk (see diskwarn.h).
 */
#include "gateway/stream/diskwarn.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* part >= pct % of whole, exactly (no overflow, no rounding) */
static bool pct_at_least(uint64_t part, uint64_t whole, unsigned pct)
{
	return (unsigned __int128)part * 100u >= (unsigned __int128)whole * pct;
}

/* part as a whole percentage of whole, rounded down; whole > 0 */
static unsigned pct_of(uint64_t part, uint64_t whole)
{
	unsigned __int128 p = (unsigned __int128)part * 100u / whole;

	return p > 100000u ? 100000u : (unsigned)p;
}

char *diskwarn_format_bytes(uint64_t n, char *buf, size_t len)
{
	static const char *const units[] = { "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
	double v = (double)n;
	size_t u = 0;
	int w;

	if (n < 1024) {
		snprintf(buf, len, "%llu bytes", (unsigned long long)n);
		return buf;
	}
	v /= 1024.0;
	while (v >= 1023.95 && u + 1 < sizeof(units) / sizeof(units[0])) {
		v /= 1024.0;
		u++;
	}
	w = snprintf(buf, len, "%.1f", v);
	/* "10.0" reads better as "10" */
	if (w >= 2 && (size_t)w < len && strcmp(buf + w - 2, ".0") == 0)
		buf[w - 2] = '\0';
	snprintf(buf + strlen(buf), len - strlen(buf), " %s", units[u]);
	return buf;
}

static void add(struct diskwarn_list *out, enum diskwarn_level level, const char *kind,
		const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void add(struct diskwarn_list *out, enum diskwarn_level level, const char *kind,
		const char *fmt, ...)
{
	struct diskwarn *w;
	va_list ap;

	if (out->n >= DISKWARN_MAX)
		return;
	w = &out->w[out->n++];
	w->level = level;
	w->kind = kind;
	va_start(ap, fmt);
	vsnprintf(w->text, sizeof(w->text), fmt, ap);
	va_end(ap);
}

/* ---------------------------------------------------------------- slot */

static void judge_wal_status(const struct slot_sample *s, const char *slot, struct diskwarn_list *out)
{
	char r[32], l[32];

	if (strcmp(s->wal_status, "lost") == 0) {
		add(out, DISKWARN_CRITICAL, "slot_keep_size",
		    "slot %s is lost (wal_status lost): the server removed WAL it needs, so the stream "
		    "cannot resume from it and needs a new slot and initial sync", slot);
		return;
	}
	/* unreserved */
	if (s->retained_known && s->max_keep_known && s->max_slot_wal_keep_size > 0) {
		uint64_t limit = (uint64_t)s->max_slot_wal_keep_size;

		add(out, DISKWARN_CRITICAL, "slot_keep_size",
		    "slot %s retains %s of WAL, %u%% of max_slot_wal_keep_size (%s), and is unreserved: "
		    "the server removes that WAL at its next checkpoint and the slot is lost",
		    slot, diskwarn_format_bytes(s->retained_bytes, r, sizeof(r)),
		    pct_of(s->retained_bytes, limit), diskwarn_format_bytes(limit, l, sizeof(l)));
		return;
	}
	add(out, DISKWARN_CRITICAL, "slot_keep_size",
	    "slot %s is unreserved (wal_status unreserved): the server removes WAL it needs at its "
	    "next checkpoint and the slot is lost", slot);
}

static void judge_keep_size(const struct slot_sample *s, const char *slot, struct diskwarn_list *out)
{
	uint64_t limit;
	enum diskwarn_level level;
	char r[32], l[32];

	if (strcmp(s->wal_status, "lost") == 0 || strcmp(s->wal_status, "unreserved") == 0) {
		judge_wal_status(s, slot, out);
		return;
	}
	/* 0 keeps nothing for slots: wal_status turns unreserved, judged above */
	if (!s->retained_known || !s->max_keep_known || s->max_slot_wal_keep_size <= 0)
		return;
	limit = (uint64_t)s->max_slot_wal_keep_size;
	if (pct_at_least(s->retained_bytes, limit, DISKWARN_KEEP_CRIT_PCT))
		level = DISKWARN_CRITICAL;
	else if (pct_at_least(s->retained_bytes, limit, DISKWARN_KEEP_WARN_PCT))
		level = DISKWARN_WARNING;
	else
		return;
	add(out, level, "slot_keep_size",
	    "slot %s retains %s of WAL, %u%% of max_slot_wal_keep_size (%s): the slot is "
	    "invalidated at 100%%", slot, diskwarn_format_bytes(s->retained_bytes, r, sizeof(r)),
	    pct_of(s->retained_bytes, limit), diskwarn_format_bytes(limit, l, sizeof(l)));
}

static void judge_wal_disk(const struct slot_sample *s, const char *slot, struct diskwarn_list *out)
{
	uint64_t avail = s->wal_disk_free, retained = s->retained_bytes;
	enum diskwarn_level level;
	char r[32], f[32], z[32], h[32], l[32], why[160];

	if (!s->wal_disk_known)
		return;
	if (s->wal_disk_size > 0 &&
	    !pct_at_least(avail, s->wal_disk_size, DISKWARN_WAL_FREE_CRIT_PCT)) {
		add(out, DISKWARN_CRITICAL, "wal_disk_free",
		    "the disk of %s has %s free, %u%% of %s: the source server stops when pg_wal's "
		    "disk is full (slot %s retains %s of WAL)", s->wal_disk_path,
		    diskwarn_format_bytes(avail, f, sizeof(f)), pct_of(avail, s->wal_disk_size),
		    diskwarn_format_bytes(s->wal_disk_size, z, sizeof(z)), slot,
		    s->retained_known ? diskwarn_format_bytes(retained, r, sizeof(r)) : "an unknown amount");
	}
	if (!s->retained_known)
		return;
	/* a limit that invalidates the slot before the disk fills protects the disk */
	if (s->max_keep_known && s->max_slot_wal_keep_size >= 0) {
		uint64_t limit = (uint64_t)s->max_slot_wal_keep_size;
		uint64_t headroom = limit > retained ? limit - retained : 0;

		if (headroom <= avail)
			return;
		snprintf(why, sizeof(why), "max_slot_wal_keep_size (%s) lets it grow %s more",
			 diskwarn_format_bytes(limit, l, sizeof(l)),
			 diskwarn_format_bytes(headroom, h, sizeof(h)));
	} else {
		snprintf(why, sizeof(why), "max_slot_wal_keep_size is unlimited");
	}
	if (pct_at_least(retained, retained + avail, DISKWARN_WAL_RETAINED_CRIT_PCT) &&
	    retained > 0)
		level = DISKWARN_CRITICAL;
	else if (pct_at_least(retained, retained + avail, DISKWARN_WAL_RETAINED_WARN_PCT) &&
		 retained > 0)
		level = DISKWARN_WARNING;
	else
		return;
	add(out, level, "wal_disk_retained",
	    "slot %s retains %s of WAL and the disk of %s has %s free (%s): if the hold goes on, "
	    "pg_wal's disk fills and the source server stops", slot,
	    diskwarn_format_bytes(retained, r, sizeof(r)), s->wal_disk_path,
	    diskwarn_format_bytes(avail, f, sizeof(f)), why);
}

/* What each invalidation_reason means to the operator (PostgreSQL 17, 18). */
static const char *invalidation_meaning(const char *reason)
{
	if (strcmp(reason, "wal_removed") == 0)
		return "the server removed WAL it needs (max_slot_wal_keep_size)";
	if (strcmp(reason, "rows_removed") == 0)
		return "the primary removed rows the slot needs (a slot on a standby)";
	if (strcmp(reason, "wal_level_insufficient") == 0)
		return "wal_level is below logical on the primary";
	if (strcmp(reason, "idle_timeout") == 0)
		return "it was inactive longer than idle_replication_slot_timeout";
	return "a reason this version of strait does not know";
}

/* 17+: the server says why a slot is invalid; 18+: an idle slot is invalidated after a timeout. */
static bool judge_invalidation(const struct slot_sample *s, const char *slot, struct diskwarn_list *out)
{
	enum diskwarn_level level;

	if (s->invalidation_reason[0]) {
		add(out, DISKWARN_CRITICAL, "slot_invalidated",
		    "slot %s is invalidated (invalidation_reason %s: %s): the stream cannot resume from "
		    "it and needs a new slot and initial sync", slot, s->invalidation_reason,
		    invalidation_meaning(s->invalidation_reason));
		return true;
	}
	if (!s->inactive_known || !s->idle_timeout_known || s->idle_timeout_seconds <= 0)
		return false;
	/* time runs like a held slot's WAL: the same 50 % and 80 % marks */
	if (s->inactive_seconds * 100 >= s->idle_timeout_seconds * (int64_t)DISKWARN_KEEP_CRIT_PCT)
		level = DISKWARN_CRITICAL;
	else if (s->inactive_seconds * 100 >= s->idle_timeout_seconds * (int64_t)DISKWARN_KEEP_WARN_PCT)
		level = DISKWARN_WARNING;
	else
		return false;
	add(out, level, "slot_idle_timeout",
	    "slot %s has been inactive for %lld s of idle_replication_slot_timeout (%lld s): the "
	    "server invalidates it at the first checkpoint after that", slot,
	    (long long)s->inactive_seconds, (long long)s->idle_timeout_seconds);
	return false;
}

void diskwarn_slot(const struct slot_sample *s, const char *slot_name, struct diskwarn_list *out)
{
	if (!s || !s->slot_found)
		return;
	/* an invalidated slot's wal_status is lost too: say it once, with the server's reason */
	if (judge_invalidation(s, slot_name, out))
		return;
	judge_keep_size(s, slot_name, out);
	judge_wal_disk(s, slot_name, out);
}

/* ---------------------------------------------------------------- spool */

void diskwarn_spool_judge(const struct disk_space *disk, const char *state_dir,
		uint64_t spool_bytes, uint64_t spool_max, struct diskwarn_list *out)
{
	char f[32], z[32], g[32], m[32];

	if (disk->size > 0 && !pct_at_least(disk->free, disk->size, DISKWARN_SPOOL_FREE_WARN_PCT)) {
		bool crit = !pct_at_least(disk->free, disk->size, DISKWARN_SPOOL_FREE_CRIT_PCT);

		add(out, crit ? DISKWARN_CRITICAL : DISKWARN_WARNING, "spool_disk_free",
		    "the disk of state_dir %s has %s free, %u%% of %s: the stream stops when it is full",
		    state_dir, diskwarn_format_bytes(disk->free, f, sizeof(f)),
		    pct_of(disk->free, disk->size), diskwarn_format_bytes(disk->size, z, sizeof(z)));
	}
	if (spool_max > 0 && spool_bytes < spool_max && disk->free < spool_max - spool_bytes) {
		add(out, DISKWARN_WARNING, "spool_cap",
		    "the disk of state_dir %s has %s free but the spool may still grow by %s "
		    "(spool_max %s): the cap would not save the disk", state_dir,
		    diskwarn_format_bytes(disk->free, f, sizeof(f)),
		    diskwarn_format_bytes(spool_max - spool_bytes, g, sizeof(g)),
		    diskwarn_format_bytes(spool_max, m, sizeof(m)));
	}
}

bool diskwarn_spool(const char *state_dir, uint64_t spool_bytes, uint64_t spool_max,
		struct diskwarn_list *out, char *err, size_t errlen)
{
	struct disk_space disk;

	if (!disk_space_measure(state_dir, &disk, err, errlen))
		return false;
	diskwarn_spool_judge(&disk, state_dir, spool_bytes, spool_max, out);
	return true;
}

enum diskwarn_level diskwarn_worst(const struct diskwarn_list *l)
{
	enum diskwarn_level worst = DISKWARN_NONE;

	for (size_t i = 0; i < l->n; i++)
		if (l->w[i].level > worst)
			worst = l->w[i].level;
	return worst;
}

const char *diskwarn_level_name(enum diskwarn_level level)
{
	switch (level) {
	case DISKWARN_WARNING:
		return "warning";
	case DISKWARN_CRITICAL:
		return "critical";
	case DISKWARN_NONE:
		break;
	}
	return "ok";
}
