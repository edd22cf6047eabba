/*
 * test_coalesce.c — when a frame goes, over simulated time: a lone record
 * goes after the quiet time, not after the longest wait; records that keep
 * coming closer than the quiet time are held together up to the longest wait
 * from the first, and no longer; after a frame went, the next record starts a
 * new wait; a clock that goes back never makes a frame due in the past.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "gateway/stream/coalesce.h"

#define MS 1000LL
#define T0 (5000 * 1000 * MS)

static void test_lone_record_goes_after_the_quiet_time(void **state)
{
	struct coalesce c = { 0 };

	(void)state;
	assert_false(coalesce_waiting(&c));
	assert_int_equal(coalesce_note(&c, T0), T0 + COALESCE_QUIET_US);
	assert_true(coalesce_waiting(&c));
	assert_true(COALESCE_QUIET_US * 10 <= COALESCE_MAX_US);
}

/* Records every step µs until the frame is due; returns when it went. */
static int64_t stream_of_records(struct coalesce *c, int64_t start, int64_t step, int *records)
{
	int64_t now = start, due = coalesce_note(c, now);

	*records = 1;
	while (now + step < due) {
		now += step;
		due = coalesce_note(c, now);
		(*records)++;
	}
	coalesce_sent(c);
	return due;
}

static void test_a_burst_is_held_together_up_to_the_longest_wait(void **state)
{
	struct coalesce c = { 0 };
	int records;
	int64_t went;

	(void)state;
	/* a record every millisecond: one frame of 30 ms of them */
	went = stream_of_records(&c, T0, MS, &records);
	assert_int_equal(went, T0 + COALESCE_MAX_US);
	assert_int_equal(records, COALESCE_MAX_US / MS);
	assert_false(coalesce_waiting(&c));
	/* the next record starts a new wait */
	went = stream_of_records(&c, T0 + 40 * MS, MS, &records);
	assert_int_equal(went, T0 + 40 * MS + COALESCE_MAX_US);
	/* three records half a quiet time apart, then silence */
	assert_int_equal(coalesce_note(&c, T0 + 100 * MS), T0 + 100 * MS + COALESCE_QUIET_US);
	assert_int_equal(coalesce_note(&c, T0 + 101 * MS), T0 + 101 * MS + COALESCE_QUIET_US);
	assert_int_equal(coalesce_note(&c, T0 + 102 * MS), T0 + 102 * MS + COALESCE_QUIET_US);
}

static void test_records_further_apart_than_the_quiet_time_go_alone(void **state)
{
	struct coalesce c = { 0 };
	int records;

	(void)state;
	for (int i = 0; i < 10; i++) {
		int64_t at = T0 + i * 10 * MS;

		assert_int_equal(stream_of_records(&c, at, 10 * MS, &records), at + COALESCE_QUIET_US);
		assert_int_equal(records, 1);
	}
}

static void test_late_in_the_wait_the_longest_wait_decides(void **state)
{
	struct coalesce c = { 0 };

	(void)state;
	coalesce_note(&c, T0);
	assert_int_equal(coalesce_note(&c, T0 + COALESCE_MAX_US - 1), T0 + COALESCE_MAX_US);
	/* a record past the longest wait (the loop was late): due at once */
	assert_int_equal(coalesce_note(&c, T0 + COALESCE_MAX_US + 5 * MS),
			 T0 + COALESCE_MAX_US + 5 * MS);
}

static void test_clock_going_back_is_never_due_in_the_past(void **state)
{
	struct coalesce c = { 0 };

	(void)state;
	coalesce_note(&c, T0);
	assert_true(coalesce_note(&c, T0 - 50 * MS) >= T0 - 50 * MS);
	assert_int_equal(coalesce_note(&c, T0 - 50 * MS), T0 - 50 * MS + COALESCE_QUIET_US);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lone_record_goes_after_the_quiet_time),
		cmocka_unit_test(test_a_burst_is_held_together_up_to_the_longest_wait),
		cmocka_unit_test(test_records_further_apart_than_the_quiet_time_go_alone),
		cmocka_unit_test(test_late_in_the_wait_the_longest_wait_decides),
		cmocka_unit_test(test_clock_going_back_is_never_due_in_the_past),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
