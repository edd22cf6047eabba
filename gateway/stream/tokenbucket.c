/*
 * tokenbucket.c — meters bytes at a rate (see tokenbucket.h).
 *
 * NOTES
 * The bucket is refilled lazily: every call first credits rate × the time
 * since the last call, capped at the burst, then acts. Tokens are a double so
 * that the fraction of a byte earned in a microsecond is never rounded away:
 * over a long run the bytes let through are exactly rate × time, plus what
 * the bucket held at the start, plus at most one frame of debt.
 *
 * A sender goes while tokens > 0 and may overdraw; the debt is paid back,
 * at whatever rate is in force, before the next frame. A held bucket (rate 0)
 * earns nothing and keeps its balance, so leaving the hold neither forgives
 * a debt nor hands out a saved-up burst beyond the cap.
 */
#include "gateway/stream/tokenbucket.h"

#include <math.h>

#define TB_MIN_BURST 16384.0     /* 16 KiB: a few frames, whatever the rate */
#define TB_BURST_DIVISOR 20      /* rate / 20: 50 ms worth of sending */

static bool held(const struct token_bucket *tb)
{
	return !tb->unlimited && tb->rate == 0;
}

/* Credits what the rate earned since last_us; time never runs backwards here. */
static void refill(struct token_bucket *tb, int64_t now_us)
{
	if (now_us <= tb->last_us)
		return;
	if (!tb->unlimited && tb->rate > 0) {
		tb->tokens += (double)tb->rate * (double)(now_us - tb->last_us) / 1e6;
		if (tb->tokens > tb->burst)
			tb->tokens = tb->burst;
	}
	tb->last_us = now_us;
}

void token_bucket_set(struct token_bucket *tb, bool unlimited, uint64_t bytes_per_sec,
		uint64_t burst_bytes, int64_t now_us)
{
	/* A zeroed bucket has burst 0: this is its first rate. */
	bool start_full = tb->burst == 0 || tb->unlimited;
	double burst;

	if (tb->burst == 0)
		tb->last_us = now_us;
	refill(tb, now_us);
	if (burst_bytes > 0)
		burst = (double)burst_bytes;
	else
		burst = fmax((double)(bytes_per_sec / TB_BURST_DIVISOR), TB_MIN_BURST);
	tb->unlimited = unlimited;
	tb->rate = unlimited ? 0 : bytes_per_sec;
	tb->burst = burst;
	if (start_full || tb->tokens > burst)
		tb->tokens = burst;
}

bool token_bucket_ready(struct token_bucket *tb, int64_t now_us)
{
	refill(tb, now_us);
	if (tb->unlimited)
		return true;
	return !held(tb) && tb->tokens > 0;
}

void token_bucket_take(struct token_bucket *tb, uint64_t bytes, int64_t now_us)
{
	refill(tb, now_us);
	if (!tb->unlimited)
		tb->tokens -= (double)bytes;
}

int64_t token_bucket_wait_us(struct token_bucket *tb, int64_t now_us)
{
	double us;

	refill(tb, now_us);
	if (tb->unlimited)
		return 0;
	if (held(tb))
		return -1;
	if (tb->tokens > 0)
		return 0;
	/* The first whole µs at which the balance is strictly positive. */
	us = floor(-tb->tokens * 1e6 / (double)tb->rate) + 1;
	if (us >= (double)INT64_MAX / 2)
		return INT64_MAX / 2;
	return (int64_t)us;
}
