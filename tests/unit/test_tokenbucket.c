/*
 * test_tokenbucket.c — the token bucket over simulated time: a greedy sender
 * gets exactly rate × time plus the starting burst (within one frame) at
 * several rates and frame sizes, the burst caps what an idle sender saves,
 * rate changes keep the debt, a held bucket never lets anything through, an
 * unlimited one always does.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "gateway/stream/tokenbucket.h"

#define SEC 1000000LL
#define T0 (1000 * SEC)

/* Frame sizes from 1 byte to 64 KiB, the same sequence every run. */
static uint64_t next_frame(uint32_t *seed)
{
	*seed = *seed * 1103515245u + 12345u;
	switch ((*seed >> 16) % 4) {
	case 0:
		return 1 + (*seed >> 8) % 200;
	case 1:
		return 1500;
	case 2:
		return 16384 + 22;
	default:
		return 1 + (*seed >> 4) % 65536;
	}
}

/* A sender that sends whenever it may, for secs of simulated time. */
static void greedy(uint64_t rate, int64_t secs, uint32_t seed)
{
	struct token_bucket tb;
	int64_t now = T0, end = T0 + secs * SEC;
	uint64_t sent = 0, max_frame = 0;
	double expect, avg;

	memset(&tb, 0, sizeof(tb));
	token_bucket_set(&tb, false, rate, 0, now);
	assert_true(tb.burst == fmax((double)(rate / 20), 16384.0));
	for (;;) {
		int64_t wait = token_bucket_wait_us(&tb, now);
		uint64_t f;

		assert_true(wait >= 0);
		if (wait > 0) {
			assert_false(token_bucket_ready(&tb, now));
			now += wait;
			if (now > end)
				break;
			/* the wait is exact: ready then, not a µs before */
			assert_true(token_bucket_ready(&tb, now));
			continue;
		}
		assert_true(token_bucket_ready(&tb, now));
		f = next_frame(&seed);

		token_bucket_take(&tb, f, now);
		sent += f;
		if (f > max_frame)
			max_frame = f;
	}
	/* what the rate earned plus the full bucket it started with, one frame over at most */
	expect = (double)rate * (double)secs + tb.burst;
	assert_true((double)sent >= expect - 1.0);
	assert_true((double)sent <= expect + (double)max_frame + 1.0);
	avg = (double)sent / (double)secs;
	assert_true(fabs(avg - (double)rate) / (double)rate < 0.005);
}

static void test_average_rates(void **state)
{
	(void)state;
	greedy(10000, 2000, 1);          /* 10 kB/s, big frames well above the rate */
	greedy(1 << 20, 600, 2);         /* 1 MiB/s */
	greedy(12500000, 60, 3);         /* 100 Mbit/s */
	greedy(125000000, 30, 4);        /* 1 Gbit/s */
}

/* The wait before a frame that left a debt, and the wait rounding. */
static void test_debt_is_paid_back(void **state)
{
	struct token_bucket tb;

	(void)state;
	memset(&tb, 0, sizeof(tb));
	token_bucket_set(&tb, false, 1000, 16384, T0);
	assert_true(token_bucket_ready(&tb, T0));
	token_bucket_take(&tb, 16384 + 10000, T0);
	assert_false(token_bucket_ready(&tb, T0));
	/* 10000 bytes at 1000 B/s: ten seconds, then the first µs with a positive balance */
	assert_int_equal(token_bucket_wait_us(&tb, T0), 10 * SEC + 1);
	assert_false(token_bucket_ready(&tb, T0 + 10 * SEC));
	assert_true(token_bucket_ready(&tb, T0 + 10 * SEC + 1));
}

static void test_burst_caps_savings(void **state)
{
	struct token_bucket tb;
	int frames = 0;

	(void)state;
	memset(&tb, 0, sizeof(tb));
	token_bucket_set(&tb, false, 1000000, 0, T0);   /* burst 50 kB */
	token_bucket_take(&tb, 50000, T0);
	assert_false(token_bucket_ready(&tb, T0));
	/* idle for a minute: only the burst is saved up */
	while (token_bucket_ready(&tb, T0 + 60 * SEC)) {
		token_bucket_take(&tb, 1000, T0 + 60 * SEC);
		frames++;
	}
	assert_int_equal(frames, 50);

	/* an explicit burst */
	memset(&tb, 0, sizeof(tb));
	token_bucket_set(&tb, false, 1000000, 5000, T0);
	assert_true(tb.tokens == 5000.0);
	token_bucket_take(&tb, 5000, T0);
	frames = 0;
	while (token_bucket_ready(&tb, T0 + 3600 * SEC)) {
		token_bucket_take(&tb, 1000, T0 + 3600 * SEC);
		frames++;
	}
	assert_int_equal(frames, 5);

	/* a small rate gets 16 KiB */
	memset(&tb, 0, sizeof(tb));
	token_bucket_set(&tb, false, 100, 0, T0);
	assert_true(tb.burst == 16384.0);
}

static void test_rate_change_keeps_debt(void **state)
{
	struct token_bucket tb;

	(void)state;
	memset(&tb, 0, sizeof(tb));
	token_bucket_set(&tb, false, 1000, 16384, T0);
	token_bucket_take(&tb, 16384 + 10000, T0);
	/* five seconds at 1000 B/s earn 5000, then the rate goes up fivefold */
	token_bucket_set(&tb, false, 5000, 16384, T0 + 5 * SEC);
	assert_true(fabs(tb.tokens + 5000.0) < 1e-6);
	assert_int_equal(token_bucket_wait_us(&tb, T0 + 5 * SEC), 1 * SEC + 1);

	/* a lower burst cuts what was saved */
	token_bucket_set(&tb, false, 5000, 16384, T0 + 100 * SEC);
	assert_true(tb.tokens == 16384.0);
	token_bucket_set(&tb, false, 5000, 1000, T0 + 100 * SEC);
	assert_true(tb.tokens == 1000.0);
	/* a higher one does not fill the bucket */
	token_bucket_set(&tb, false, 5000, 100000, T0 + 100 * SEC);
	assert_true(tb.tokens == 1000.0);
}

static void test_held(void **state)
{
	struct token_bucket tb;

	(void)state;
	memset(&tb, 0, sizeof(tb));
	token_bucket_set(&tb, false, 1000, 0, T0);
	token_bucket_take(&tb, 20000, T0);           /* 16384 - 20000: a debt of 3616 */
	token_bucket_set(&tb, false, 0, 0, T0 + SEC);  /* held: 1000 earned first */
	assert_true(fabs(tb.tokens + 2616.0) < 1e-6);
	assert_false(token_bucket_ready(&tb, T0 + SEC));
	assert_int_equal(token_bucket_wait_us(&tb, T0 + SEC), -1);
	/* nothing is earned while held, however long */
	assert_false(token_bucket_ready(&tb, T0 + 86400 * SEC));
	assert_int_equal(token_bucket_wait_us(&tb, T0 + 86400 * SEC), -1);
	assert_true(fabs(tb.tokens + 2616.0) < 1e-6);
	/* a held bucket with tokens still holds */
	memset(&tb, 0, sizeof(tb));
	token_bucket_set(&tb, false, 0, 0, T0);
	assert_false(token_bucket_ready(&tb, T0));
	assert_int_equal(token_bucket_wait_us(&tb, T0), -1);
	/* released: the debt is paid first, at the new rate */
	memset(&tb, 0, sizeof(tb));
	token_bucket_set(&tb, false, 1000, 0, T0);
	token_bucket_take(&tb, 20000, T0);
	token_bucket_set(&tb, false, 0, 0, T0);
	token_bucket_set(&tb, false, 3616, 0, T0 + 3600 * SEC);
	assert_int_equal(token_bucket_wait_us(&tb, T0 + 3600 * SEC), SEC + 1);
}

static void test_unlimited(void **state)
{
	struct token_bucket tb;

	(void)state;
	memset(&tb, 0, sizeof(tb));
	token_bucket_set(&tb, true, 0, 0, T0);
	for (int i = 0; i < 1000; i++) {
		assert_true(token_bucket_ready(&tb, T0));
		assert_int_equal(token_bucket_wait_us(&tb, T0), 0);
		token_bucket_take(&tb, 1 << 30, T0);
	}
	/* limited again: a full burst, no debt from what went while unlimited */
	token_bucket_set(&tb, false, 2000000, 0, T0 + 1);
	assert_true(tb.tokens == 100000.0);
	assert_true(token_bucket_ready(&tb, T0 + 1));
	token_bucket_take(&tb, 100000, T0 + 1);
	assert_false(token_bucket_ready(&tb, T0 + 1));
	assert_int_equal(token_bucket_wait_us(&tb, T0 + 1), 1);
}

static void test_time_going_back_earns_nothing(void **state)
{
	struct token_bucket tb;

	(void)state;
	memset(&tb, 0, sizeof(tb));
	token_bucket_set(&tb, false, 1000, 0, T0);
	token_bucket_take(&tb, 16384 + 1000, T0);
	assert_int_equal(token_bucket_wait_us(&tb, T0 - 10 * SEC), SEC + 1);
	assert_int_equal(token_bucket_wait_us(&tb, T0 + SEC / 2), SEC / 2 + 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_average_rates),
		cmocka_unit_test(test_debt_is_paid_back),
		cmocka_unit_test(test_burst_caps_savings),
		cmocka_unit_test(test_rate_change_keeps_debt),
		cmocka_unit_test(test_held),
		cmocka_unit_test(test_unlimited),
		cmocka_unit_test(test_time_going_back_earns_nothing),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
