/*
 * test_complevel.c — the zstd level by what limits a stream: up a step each
 * tick while the sender mostly waits on its link or rate with a backlog
 * (a quarter second of sending or more), or while what it sent waits in the
 * link's queue; down at once when the CPU is the limit and not up again for
 * a while, back to the configured level once nothing waits; never beyond 1
 * and 19.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "gateway/stream/complevel.h"

#define BIG (8u * 1024u * 1024u)

/* backlog, sent, wait share, busy share, the link's queue, sent on the link */
static const struct complevel_sample link_bound = { BIG, 1024 * 1024, 0.9, 0.1, 0, 0 };
static const struct complevel_sample cpu_bound = { BIG, 1024 * 1024, 0.9, 0.9, 0, 0 };
static const struct complevel_sample idle = { 0, 0, 0, 0, 0, 0 };

static int tick(struct complevel *p, uint64_t backlog, uint64_t sent, double wait, double busy)
{
	const struct complevel_sample s = { backlog, sent, wait, busy, 0, 0 };

	return complevel_tick(p, &s);
}

static void test_link_bound_climbs_a_step_a_tick(void **state)
{
	static const int expect[] = { 6, 9, 12, 15, 19, 19, 19 };
	struct complevel p;

	(void)state;
	complevel_init(&p, 3);
	assert_string_equal(complevel_reason(&p), "configured");
	for (size_t i = 0; i < sizeof(expect) / sizeof(expect[0]); i++)
		assert_int_equal(complevel_tick(&p, &link_bound), expect[i]);
	assert_string_equal(complevel_reason(&p), "link or rate bound");
}

static void test_bytes_not_scarce_stays(void **state)
{
	struct complevel p;

	(void)state;
	complevel_init(&p, 3);
	for (int i = 0; i < 30; i++) {
		/* the sender hardly waited: the link keeps up */
		assert_int_equal(tick(&p, BIG, 1024 * 1024, 0.3, 0.1), 3);
		/* little waits */
		assert_int_equal(tick(&p, COMPLEVEL_BACKLOG_MIN - 1, 1000, 1.0, 0.1), 3);
		/* less than a quarter second of what goes out: the link catches up */
		assert_int_equal(tick(&p, 200000, 1000000, 1.0, 0.1), 3);
	}
	assert_int_equal(tick(&p, 250000, 1000000, 1.0, 0.1), 6);
}

/* The sender keeps up with the link's queue, but what it sent waits there: the link is behind. */
static void test_link_queue_behind_raises(void **state)
{
	struct complevel_sample s = { 0, 700000, 0, 0.05, 20000, 60000 };
	struct complevel p;

	(void)state;
	complevel_init(&p, 3);
	assert_int_equal(complevel_tick(&p, &s), 6);
	assert_int_equal(complevel_tick(&p, &s), 9);
	/* less than a quarter second of what went out, or little: the link keeps up */
	s.link_backlog = 14000;
	for (int i = 0; i < 3; i++)
		assert_int_equal(complevel_tick(&p, &s), 9);
	s.link_backlog = 20000;
	s.link_sent = 100000;
	for (int i = 0; i < 3; i++)
		assert_int_equal(complevel_tick(&p, &s), 9);
	/* not calm while the link's queue holds that much: the level stays */
	s.link_backlog = 17000;
	for (int i = 0; i < 3 * COMPLEVEL_CALM_TICKS; i++)
		assert_int_equal(complevel_tick(&p, &s), 9);
	s.link_backlog = 0;
	for (int i = 0; i < COMPLEVEL_CALM_TICKS - 1; i++)
		assert_int_equal(complevel_tick(&p, &s), 9);
	assert_int_equal(complevel_tick(&p, &s), 6);
}

static void test_cpu_bound_goes_down_at_once_and_waits(void **state)
{
	struct complevel p;
	unsigned ticks = 0;

	(void)state;
	complevel_init(&p, 9);
	assert_int_equal(complevel_tick(&p, &link_bound), 12);
	/* right after a step up */
	assert_int_equal(complevel_tick(&p, &cpu_bound), 9);
	/* link bound again: not up before the retry is over */
	while (complevel_tick(&p, &link_bound) == 9)
		ticks++;
	assert_int_equal(ticks, COMPLEVEL_RETRY_TICKS - 1);
	assert_int_equal(p.level, 12);
	/* all the way down to 1, a step a tick */
	assert_int_equal(complevel_tick(&p, &cpu_bound), 9);
	assert_int_equal(complevel_tick(&p, &cpu_bound), 6);
	assert_int_equal(complevel_tick(&p, &cpu_bound), 3);
	assert_int_equal(complevel_tick(&p, &cpu_bound), 1);
	assert_string_equal(complevel_reason(&p), "CPU bound");
	for (int i = 0; i < 10; i++)
		assert_int_equal(complevel_tick(&p, &cpu_bound), 1);
}

/* Ticks until the level is to (at most 100). */
static unsigned ticks_to(struct complevel *p, int to, const struct complevel_sample *s)
{
	unsigned ticks = 0;

	while (p->level != to && ticks < 100) {
		complevel_tick(p, s);
		ticks++;
	}
	return ticks;
}

static void test_back_to_the_configured_level(void **state)
{
	struct complevel p;

	(void)state;
	complevel_init(&p, 3);
	while (p.level < 12)
		complevel_tick(&p, &link_bound);
	/* the backlog is gone: a step back after a few calm ticks, down to 3 and no lower */
	assert_true(ticks_to(&p, 3, &idle) >= 3 * COMPLEVEL_CALM_TICKS);
	assert_int_equal(p.level, 3);
	for (int i = 0; i < 20; i++)
		assert_int_equal(complevel_tick(&p, &idle), 3);
	/* from below, after the CPU was the limit: up to the configured level */
	complevel_init(&p, 6);
	while (p.level > 1)
		complevel_tick(&p, &cpu_bound);
	assert_true(ticks_to(&p, 6, &idle) < 100);
	/* an odd configured level is kept as it is */
	complevel_init(&p, 4);
	assert_int_equal(complevel_tick(&p, &link_bound), 6);
	assert_true(ticks_to(&p, 4, &idle) < 100);
	assert_int_equal(p.level, 4);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_link_bound_climbs_a_step_a_tick),
		cmocka_unit_test(test_bytes_not_scarce_stays),
		cmocka_unit_test(test_link_queue_behind_raises),
		cmocka_unit_test(test_cpu_bound_goes_down_at_once_and_waits),
		cmocka_unit_test(test_back_to_the_configured_level),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
