/*
 * test_clock.c — the scheduler's clock: the real clocks by default, a test
 * clock that starts where it is set and runs on at the real pace, and the
 * generation that tells cached evaluations to redo.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <time.h>

#include "gateway/stream/clock.h"

#define SEC 1000000LL

static int64_t real_wall_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * SEC + ts.tv_nsec / 1000;
}

/* Spins (no sleep) until the monotonic clock has moved by at least us. */
static void let_pass(int64_t us)
{
	int64_t start = clock_mono_us();

	while (clock_mono_us() - start < us)
		;
}

/* Runs first: before any test sets it, the clock is the real one. */
static void test_real_clock(void **state)
{
	int64_t before = real_wall_us(), wall = clock_wall_us(), after = real_wall_us();
	int64_t m1, m2;

	(void)state;
	assert_int_equal(clock_generation(), 0);
	assert_true(wall >= before && wall <= after);
	m1 = clock_mono_us();
	let_pass(2000);
	m2 = clock_mono_us();
	assert_true(m2 - m1 >= 2000);
	assert_true(m1 > 0);
}

static void test_set_clock_runs_on(void **state)
{
	/* Monday 2026-06-01 07:59:00 UTC */
	const int64_t t = 1780300740LL * SEC;
	unsigned gen = clock_generation();
	int64_t w1, w2, m1, m2;

	(void)state;
	clock_set_test(t);
	assert_int_equal(clock_generation(), gen + 1);
	w1 = clock_wall_us();
	m1 = clock_mono_us();
	assert_true(w1 >= t && w1 < t + SEC);
	let_pass(5000);
	w2 = clock_wall_us();
	m2 = clock_mono_us();
	/* it runs at the monotonic clock's pace, far from the real date */
	assert_true(w2 - w1 >= 5000);
	assert_true(w2 - w1 <= (m2 - m1) + 1000);
	assert_true(real_wall_us() - w2 > 30 * SEC || w2 - real_wall_us() > 30 * SEC);

	/* set again, into the past: the generation moves each time */
	clock_set_test(t - 3600 * SEC);
	assert_int_equal(clock_generation(), gen + 2);
	w1 = clock_wall_us();
	assert_true(w1 >= t - 3600 * SEC && w1 < t - 3600 * SEC + SEC);
	/* the monotonic clock is not affected */
	assert_true(clock_mono_us() >= m2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_real_clock),
		cmocka_unit_test(test_set_clock_runs_on),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
