/*
 * tokenbucket.h — a token bucket that meters bytes at a rate. Pure: the
 * caller passes the time (µs, monotonic).
 *
 * Sending may overdraw the bucket (a frame is sent whole), and the debt is
 * paid back before anything else goes, so over any stretch of time the
 * average is exact; the burst caps what an idle stream saves up.
 *
 * A zeroed struct is a valid bucket that has no rate yet; call
 * token_bucket_set() before the others. Times are µs of one monotonic clock;
 * a time earlier than one already seen counts as no time passed.
 */
#ifndef STRAIT_TOKENBUCKET_H
#define STRAIT_TOKENBUCKET_H

#include <stdbool.h>
#include <stdint.h>

struct token_bucket {
	bool unlimited;
	uint64_t rate;               /* bytes per second; 0 holds */
	double tokens;               /* may go negative (debt) */
	double burst;
	int64_t last_us;
};

/*
 * Sets the rate (keeping what the bucket holds, capped at the new burst;
 * what the old rate earned up to now_us is credited first). A debt is kept
 * and paid at the new rate. The first rate of a zeroed bucket, and a rate
 * that follows unlimited, start with a full burst.
 * burst = max(rate / 20, 16 KiB) unless given (burst_bytes > 0).
 * unlimited ignores bytes_per_sec; !unlimited with bytes_per_sec 0 holds.
 */
void token_bucket_set(struct token_bucket *tb, bool unlimited, uint64_t bytes_per_sec,
		uint64_t burst_bytes, int64_t now_us);

/* True when a frame may go now (tokens > 0, or unlimited); never while held. */
bool token_bucket_ready(struct token_bucket *tb, int64_t now_us);

/* Charges what was sent (may leave a debt; nothing when unlimited). */
void token_bucket_take(struct token_bucket *tb, uint64_t bytes, int64_t now_us);

/* µs until ready (0 when ready now; -1 when held: rate 0, never). */
int64_t token_bucket_wait_us(struct token_bucket *tb, int64_t now_us);

#endif
