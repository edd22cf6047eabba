/*
 * lag.c — a stream's replication lag from commits handed over, acks and the
 * source's WAL position (see lag.h).
 *
 * NOTES
 * The unapplied commits live in a ring in LSN order. An ack drops every entry
 * at or below the applied LSN from the head; a new commit goes at the tail.
 * When the ring is full, the adjacent pair closest in commit time is merged,
 * found by a scan of the ring: that costs O(capacity) per commit only while
 * the sink is behind by more than capacity transactions, and keeps the
 * entries spread over the backlog rather than piling the newest commits into
 * one entry (which would make lag_seconds() jump while catching up).
 */
#include "gateway/stream/lag.h"

#include <stdlib.h>
#include <string.h>

/* A commit time the caller did not know: such an entry does not age. */
#define LAG_TIME_UNKNOWN INT64_MAX

struct lag_entry {
	uint64_t end_lsn;
	int64_t commit_time_us;
};

struct lag {
	struct lag_entry *ring;
	size_t cap;
	size_t head;             /* index of the oldest entry */
	size_t count;
	uint64_t applied_lsn;
	bool applied_known;
	int64_t applied_time_us;
	uint64_t wal_lsn;
	uint64_t sent_lsn;       /* newest commit end ever recorded */
	bool pending;
};

struct lag *lag_new(size_t capacity)
{
	struct lag *l;

	if (capacity == 0)
		capacity = LAG_DEFAULT_CAPACITY;
	if (capacity < 2)
		capacity = 2;
	l = calloc(1, sizeof(*l));
	if (!l)
		return NULL;
	l->ring = calloc(capacity, sizeof(*l->ring));
	if (!l->ring) {
		free(l);
		return NULL;
	}
	l->cap = capacity;
	return l;
}

void lag_free(struct lag *l)
{
	if (!l)
		return;
	free(l->ring);
	free(l);
}

void lag_reset(struct lag *l)
{
	struct lag_entry *ring = l->ring;
	size_t cap = l->cap;

	memset(l, 0, sizeof(*l));
	l->ring = ring;
	l->cap = cap;
}

static struct lag_entry *lag_at(const struct lag *l, size_t i)
{
	return &l->ring[(l->head + i) % l->cap];
}

static int64_t lag_min_time(int64_t a, int64_t b)
{
	return a < b ? a : b;
}

/* Merges the adjacent pair closest in commit time, freeing one slot. */
static void lag_coalesce(struct lag *l)
{
	size_t best = 0;
	uint64_t best_gap = UINT64_MAX;

	for (size_t i = 0; i + 1 < l->count; i++) {
		int64_t a = lag_at(l, i)->commit_time_us, b = lag_at(l, i + 1)->commit_time_us;
		uint64_t gap;

		if (a == LAG_TIME_UNKNOWN || b == LAG_TIME_UNKNOWN)
			gap = 0;     /* an entry without a time costs nothing to merge */
		else
			gap = a <= b ? (uint64_t)b - (uint64_t)a : (uint64_t)a - (uint64_t)b;
		if (gap < best_gap) {
			best_gap = gap;
			best = i;
		}
	}
	/* entry best takes best + 1's end and the earlier time; the rest move up one */
	lag_at(l, best)->end_lsn = lag_at(l, best + 1)->end_lsn;
	lag_at(l, best)->commit_time_us = lag_min_time(lag_at(l, best)->commit_time_us,
						       lag_at(l, best + 1)->commit_time_us);
	for (size_t i = best + 1; i + 1 < l->count; i++)
		*lag_at(l, i) = *lag_at(l, i + 1);
	l->count--;
}

void lag_commit_sent(struct lag *l, uint64_t end_lsn, int64_t commit_time_us)
{
	struct lag_entry *e;

	if (end_lsn == 0 || end_lsn <= l->sent_lsn)
		return;          /* a re-send after a resume: the first sending counts */
	l->sent_lsn = end_lsn;
	if (l->applied_known && end_lsn <= l->applied_lsn)
		return;          /* already applied (the sink resumed past it) */
	if (l->count == l->cap)
		lag_coalesce(l);
	e = lag_at(l, l->count);
	e->end_lsn = end_lsn;
	e->commit_time_us = commit_time_us > 0 ? commit_time_us : LAG_TIME_UNKNOWN;
	l->count++;
}

void lag_acked(struct lag *l, uint64_t applied_lsn, int64_t commit_time_us)
{
	if (l->applied_known && applied_lsn <= l->applied_lsn)
		return;          /* a duplicate or an ack overtaken by a later one */
	l->applied_known = true;
	l->applied_lsn = applied_lsn;
	if (commit_time_us > 0)
		l->applied_time_us = commit_time_us;
	while (l->count > 0 && lag_at(l, 0)->end_lsn <= applied_lsn) {
		l->head = (l->head + 1) % l->cap;
		l->count--;
	}
	if (l->count == 0)
		l->head = 0;
}

void lag_wal_position(struct lag *l, uint64_t wal_end)
{
	if (wal_end > l->wal_lsn)
		l->wal_lsn = wal_end;
}

void lag_set_pending(struct lag *l, bool pending)
{
	l->pending = pending;
}

bool lag_caught_up(const struct lag *l)
{
	return l->count == 0 && !l->pending;
}

uint64_t lag_bytes(const struct lag *l)
{
	uint64_t top;

	if (!l->applied_known || lag_caught_up(l))
		return 0;
	top = l->wal_lsn > l->sent_lsn ? l->wal_lsn : l->sent_lsn;
	return top > l->applied_lsn ? top - l->applied_lsn : 0;
}

double lag_seconds(const struct lag *l, int64_t now_us)
{
	int64_t oldest;

	if (l->count == 0)
		return 0.0;
	oldest = lag_at(l, 0)->commit_time_us;
	if (oldest == LAG_TIME_UNKNOWN || now_us <= oldest)
		return 0.0;
	return (double)(now_us - oldest) / 1e6;
}

uint64_t lag_applied_lsn(const struct lag *l)
{
	return l->applied_known ? l->applied_lsn : 0;
}

int64_t lag_last_applied_time(const struct lag *l)
{
	return l->applied_time_us;
}

uint64_t lag_wal_lsn(const struct lag *l)
{
	return l->wal_lsn;
}

uint64_t lag_sent_lsn(const struct lag *l)
{
	return l->sent_lsn;
}

size_t lag_pending_commits(const struct lag *l)
{
	return l->count;
}
