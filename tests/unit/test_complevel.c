/*
 * test_complevel.c — the zstd level by what limits a stream: up a step a
 * tick while the link or the rate holds a backlog back, down when the CPU
 * is the limit, back to the configured level once nothing waits; one change
 * and then a pause, never beyond 1 and 19.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "gateway/stream/complevel.h"

#define BIG (8u * 1024u * 1024u)

/* Ticks until the level changes (at most n); the level then. */
static int tick_until_change(struct complevel *p, uint64_t backlog, bool limited, double busy,
		unsigned n)
{
	int from = p->level;

	for (unsigned i = 0; i < n; i++)
		if (complevel_tick(p, backlog, limited, busy) != from)
			break;
	return p->level;
}

static void test_link_bound_climbs_to_19(void **state)
{
	struct complevel p;
	int seen[8], n = 0;

	(void)state;
	complevel_init(&p, 3);
	assert_string_equal(complevel_reason(&p), "configured");
	while (p.level < 19 && n < 8)
		seen[n++] = tick_until_change(&p, BIG, true, 0.1, 10);
	assert_int_equal(n, 5);
	assert_int_equal(seen[0], 6);
	assert_int_equal(seen[1], 9);
	assert_int_equal(seen[4], 19);
	assert_string_equal(complevel_reason(&p), "link or rate bound");
	/* it stays at the top */
	for (int i = 0; i < 20; i++)
		assert_int_equal(complevel_tick(&p, BIG, true, 0.1), 19);
}

static void test_a_change_then_a_pause(void **state)
{
	struct complevel p;

	(void)state;
	complevel_init(&p, 3);
	assert_int_equal(complevel_tick(&p, BIG, true, 0), 6);
	for (unsigned i = 0; i < COMPLEVEL_HOLD_TICKS; i++)
		assert_int_equal(complevel_tick(&p, BIG, true, 0), 6);
	assert_int_equal(complevel_tick(&p, BIG, true, 0), 9);
}

static void test_not_limited_or_small_backlog_stays(void **state)
{
	struct complevel p;

	(void)state;
	complevel_init(&p, 3);
	for (int i = 0; i < 30; i++) {
		assert_int_equal(complevel_tick(&p, BIG, false, 0.1), 3);      /* sender not held */
		assert_int_equal(complevel_tick(&p, 100000, true, 0.1), 3);   /* little waits */
	}
}

static void test_cpu_bound_goes_down_to_1(void **state)
{
	struct complevel p;

	(void)state;
	complevel_init(&p, 9);
	assert_int_equal(tick_until_change(&p, BIG, true, 0.9, 10), 6);
	assert_int_equal(tick_until_change(&p, BIG, true, 0.9, 10), 3);
	assert_int_equal(tick_until_change(&p, BIG, true, 0.9, 10), 1);
	assert_string_equal(complevel_reason(&p), "CPU bound");
	for (int i = 0; i < 10; i++)
		assert_int_equal(complevel_tick(&p, BIG, true, 0.9), 1);
}

static void test_back_to_the_configured_level(void **state)
{
	struct complevel p;
	unsigned ticks = 0;

	(void)state;
	complevel_init(&p, 3);
	while (p.level < 12)
		complevel_tick(&p, BIG, true, 0);
	/* the backlog is gone: a step back after a few calm ticks, down to 3 and no lower */
	while (p.level != 3 && ticks < 100) {
		complevel_tick(&p, 0, false, 0);
		ticks++;
	}
	assert_int_equal(p.level, 3);
	assert_true(ticks >= 3 * COMPLEVEL_CALM_TICKS);
	for (int i = 0; i < 20; i++)
		assert_int_equal(complevel_tick(&p, 0, false, 0), 3);
	/* from below, after the CPU was the limit: up to the configured level */
	complevel_init(&p, 6);
	while (p.level > 1)
		complevel_tick(&p, BIG, true, 0.9);
	ticks = 0;
	while (p.level != 6 && ticks < 100) {
		complevel_tick(&p, 0, false, 0);
		ticks++;
	}
	assert_int_equal(p.level, 6);
	/* an odd configured level is kept as it is */
	complevel_init(&p, 4);
	assert_int_equal(complevel_tick(&p, BIG, true, 0), 6);
	ticks = 0;
	while (p.level != 4 && ticks < 100) {
		complevel_tick(&p, 0, false, 0);
		ticks++;
	}
	assert_int_equal(p.level, 4);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_link_bound_climbs_to_19),
		cmocka_unit_test(test_a_change_then_a_pause),
		cmocka_unit_test(test_not_limited_or_small_backlog_stays),
		cmocka_unit_test(test_cpu_bound_goes_down_to_1),
		cmocka_unit_test(test_back_to_the_configured_level),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
