/*
 * test_lossprobe.c — when batches are owed probes: never on a link that has
 * not retransmitted; three after each batch for 30 s after a retransmission,
 * each only once the output took what was queued; a batch sent meanwhile
 * takes the owed probes over; the state changes are reported once each;
 * what the connection retransmitted before it came up does not count.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "gateway/relay/lossprobe.h"

#define T0 1000000ull

/* Fires the timer until it stops; returns the probes it sent. */
static unsigned drain(struct loss_probe *lp)
{
	unsigned n = 0;
	bool again = true;

	while (again)
		n += loss_probe_due(lp, true, &again);
	return n;
}

static void test_a_clean_link_is_never_probed(void **state)
{
	struct loss_probe lp = { 0 };

	(void)state;
	for (uint64_t t = T0; t < T0 + 120000; t += 1000) {
		assert_false(loss_probe_observe(&lp, 0, t));
		assert_false(loss_probe_after_batch(&lp, t, true));
		assert_int_equal(drain(&lp), 0);
	}
	assert_int_equal(lp.sent, 0);
}

static void test_a_retransmission_turns_probes_on_for_a_while(void **state)
{
	struct loss_probe lp = { 0 };

	(void)state;
	assert_false(loss_probe_observe(&lp, 0, T0));
	assert_true(loss_probe_observe(&lp, 2, T0 + 1000));       /* reported once */
	assert_false(loss_probe_observe(&lp, 2, T0 + 2000));
	assert_true(loss_probe_losing(&lp, T0 + 2000));
	assert_true(loss_probe_after_batch(&lp, T0 + 2000, true));
	assert_int_equal(drain(&lp), LOSS_PROBE_COUNT);
	/* another later: the memory starts again from it */
	assert_false(loss_probe_observe(&lp, 3, T0 + 20000));
	assert_true(loss_probe_losing(&lp, T0 + 20000 + LOSS_PROBE_MEMORY_MS - 1));
	assert_false(loss_probe_observe(&lp, 3, T0 + 20000 + LOSS_PROBE_MEMORY_MS - 1));
	/* quiet for the whole memory: off, reported once, and batches owe nothing */
	assert_true(loss_probe_observe(&lp, 3, T0 + 20000 + LOSS_PROBE_MEMORY_MS));
	assert_false(loss_probe_observe(&lp, 3, T0 + 20000 + LOSS_PROBE_MEMORY_MS + 1000));
	assert_false(loss_probe_after_batch(&lp, T0 + 20000 + LOSS_PROBE_MEMORY_MS + 1000, true));
	assert_int_equal(drain(&lp), 0);
	assert_int_equal(lp.sent, LOSS_PROBE_COUNT);
}

static void test_probes_wait_for_the_output_and_follow_the_last_batch(void **state)
{
	struct loss_probe lp = { 0 };
	bool again;

	(void)state;
	loss_probe_observe(&lp, 1, T0);
	assert_true(loss_probe_after_batch(&lp, T0, true));
	/* the batch is still in the output: nothing yet, the timer comes again */
	assert_false(loss_probe_due(&lp, false, &again));
	assert_true(again);
	assert_true(loss_probe_due(&lp, true, &again));
	assert_true(again);
	/* a new batch: it is the tail now and is owed every probe */
	assert_true(loss_probe_after_batch(&lp, T0 + 5, true));
	assert_int_equal(drain(&lp), LOSS_PROBE_COUNT);
	assert_int_equal(lp.sent, 1 + LOSS_PROBE_COUNT);
	/* nothing owed: the timer stops */
	assert_false(loss_probe_due(&lp, true, &again));
	assert_false(again);
}

static void test_a_batch_with_more_behind_it_is_not_probed(void **state)
{
	struct loss_probe lp = { 0 };
	bool again;

	(void)state;
	loss_probe_observe(&lp, 1, T0);
	assert_true(loss_probe_losing(&lp, T0 + 1));
	/* a backlog going out at its rate: no probe after any of its batches */
	for (uint64_t t = T0 + 1; t < T0 + 1000; t += 10) {
		assert_false(loss_probe_after_batch(&lp, t, false));
		assert_false(loss_probe_due(&lp, true, &again));
		assert_false(again);
	}
	/* a tail owes the probes; a batch with more behind it then takes them away */
	assert_true(loss_probe_after_batch(&lp, T0 + 1000, true));
	assert_true(loss_probe_due(&lp, true, &again));
	assert_false(loss_probe_after_batch(&lp, T0 + 1001, false));
	assert_false(loss_probe_due(&lp, true, &again));
	assert_false(again);
	assert_int_equal(lp.sent, 1);
	/* the backlog's last batch is a tail again */
	assert_true(loss_probe_after_batch(&lp, T0 + 1010, true));
	assert_int_equal(drain(&lp), LOSS_PROBE_COUNT);
}

static void test_retransmissions_before_the_link_came_up_do_not_count(void **state)
{
	struct loss_probe lp = { 0 };

	(void)state;
	loss_probe_start(&lp, 4);
	assert_false(loss_probe_observe(&lp, 4, T0));
	assert_false(loss_probe_losing(&lp, T0));
	assert_true(loss_probe_observe(&lp, 5, T0 + 1000));
	assert_true(loss_probe_losing(&lp, T0 + 1000));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_a_clean_link_is_never_probed),
		cmocka_unit_test(test_a_retransmission_turns_probes_on_for_a_while),
		cmocka_unit_test(test_probes_wait_for_the_output_and_follow_the_last_batch),
		cmocka_unit_test(test_a_batch_with_more_behind_it_is_not_probed),
		cmocka_unit_test(test_retransmissions_before_the_link_came_up_do_not_count),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
