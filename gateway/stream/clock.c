/*
 * clock.c — the wall and monotonic clocks the scheduler reads (see clock.h).
 *
 * Test builds (STRAIT_TEST_HOOKS) can move the wall clock: clock_set_test()
 * records the wanted wall time together with the monotonic time of the call,
 * and later readings add the monotonic time passed since, so a test's clock
 * runs at the real pace from where it was put. Production builds have no
 * setter, so the state below stays at "not set" and the real clock is read.
 *
 * The daemon reads the clock from its event loop only; nothing here is
 * shared between threads.
 */
#include "gateway/stream/clock.h"

#include <stdbool.h>
#include <time.h>

static unsigned generation;
#ifdef STRAIT_TEST_HOOKS
static bool test_set;
static int64_t test_wall_us;     /* the wall time a test asked for ... */
static int64_t test_mono_us;     /* ... and the monotonic time when it did */
#endif

static int64_t read_us(clockid_t id)
{
	struct timespec ts;

	/* Neither clock can fail on Linux with a valid id and pointer. */
	(void)clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t clock_mono_us(void)
{
	return read_us(CLOCK_MONOTONIC);
}

int64_t clock_wall_us(void)
{
#ifdef STRAIT_TEST_HOOKS
	if (test_set)
		return test_wall_us + (clock_mono_us() - test_mono_us);
#endif
	return read_us(CLOCK_REALTIME);
}

unsigned clock_generation(void)
{
	return generation;
}

#ifdef STRAIT_TEST_HOOKS
void clock_set_test(int64_t wall_us)
{
	test_mono_us = clock_mono_us();
	test_wall_us = wall_us;
	test_set = true;
	generation++;
}
#endif
