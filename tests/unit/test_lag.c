/*
 * test_lag.c — a stream's lag in bytes and seconds: zero when caught up even
 * while unrelated WAL moves, pending commits, acks out of order and twice,
 * re-sends after a resume, and the bounded ring coalescing when full.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>

#include "gateway/stream/lag.h"

#define SEC 1000000LL
#define T0 (1700000000LL * SEC)

static void test_lag_unknown_until_first_ack(void **state)
{
	struct lag *l = lag_new(0);

	(void)state;
	assert_non_null(l);
	lag_wal_position(l, 5000);
	lag_commit_sent(l, 4000, T0);
	/* where the sink stands is unknown: no byte figure yet, the commit ages */
	assert_int_equal(lag_bytes(l), 0);
	assert_int_equal(lag_applied_lsn(l), 0);
	assert_true(lag_seconds(l, T0 + 2 * SEC) == 2.0);
	lag_acked(l, 1000, 0);
	assert_int_equal(lag_bytes(l), 4000);
	lag_free(l);
}

static void test_lag_caught_up_with_unrelated_wal(void **state)
{
	struct lag *l = lag_new(0);

	(void)state;
	lag_acked(l, 1000, 0);                 /* the sink resumes at 1000 */
	lag_wal_position(l, 1000);
	assert_true(lag_caught_up(l));
	assert_int_equal(lag_bytes(l), 0);
	/* WAL that nothing publishes moves on: still no lag */
	lag_wal_position(l, 900000);
	assert_int_equal(lag_bytes(l), 0);
	assert_true(lag_seconds(l, T0 + 100 * SEC) == 0.0);

	/* a commit handed over: lag is the WAL end minus applied */
	lag_commit_sent(l, 901000, T0);
	lag_wal_position(l, 902000);
	assert_false(lag_caught_up(l));
	assert_int_equal(lag_bytes(l), 902000 - 1000);
	assert_true(lag_seconds(l, T0 + 3 * SEC) == 3.0);
	assert_int_equal(lag_sent_lsn(l), 901000);

	/* applied: caught up again, whatever the WAL does */
	lag_acked(l, 901000, T0);
	assert_int_equal(lag_bytes(l), 0);
	assert_true(lag_seconds(l, T0 + 4 * SEC) == 0.0);
	assert_int_equal(lag_last_applied_time(l), T0);
	lag_wal_position(l, 5000000);
	assert_int_equal(lag_bytes(l), 0);
	lag_free(l);
}

static void test_lag_pending_without_commits(void **state)
{
	struct lag *l = lag_new(0);

	(void)state;
	lag_acked(l, 1000, 0);
	lag_wal_position(l, 8000);
	assert_int_equal(lag_bytes(l), 0);
	/* a transaction open, or reading held back: published changes may wait */
	lag_set_pending(l, true);
	assert_false(lag_caught_up(l));
	assert_int_equal(lag_bytes(l), 7000);
	assert_true(lag_seconds(l, T0) == 0.0);  /* no commit to age yet */
	lag_set_pending(l, false);
	assert_int_equal(lag_bytes(l), 0);
	lag_free(l);
}

static void test_lag_pending_commits_and_partial_acks(void **state)
{
	struct lag *l = lag_new(0);

	(void)state;
	lag_acked(l, 100, 0);
	lag_commit_sent(l, 200, T0);
	lag_commit_sent(l, 300, T0 + 1 * SEC);
	lag_commit_sent(l, 400, T0 + 2 * SEC);
	lag_wal_position(l, 350);               /* a keepalive older than the last commit */
	assert_int_equal(lag_pending_commits(l), 3);
	assert_int_equal(lag_bytes(l), 400 - 100);
	assert_true(lag_seconds(l, T0 + 10 * SEC) == 10.0);

	/* an ack between commits keeps the next one pending */
	lag_acked(l, 250, T0);
	assert_int_equal(lag_pending_commits(l), 2);
	assert_int_equal(lag_bytes(l), 400 - 250);
	assert_true(lag_seconds(l, T0 + 10 * SEC) == 9.0);

	lag_acked(l, 300, T0 + 1 * SEC);
	assert_true(lag_seconds(l, T0 + 10 * SEC) == 8.0);
	lag_acked(l, 400, T0 + 2 * SEC);
	assert_int_equal(lag_pending_commits(l), 0);
	assert_int_equal(lag_bytes(l), 0);
	assert_int_equal(lag_applied_lsn(l), 400);
	lag_free(l);
}

static void test_lag_acks_out_of_order_and_duplicate(void **state)
{
	struct lag *l = lag_new(0);

	(void)state;
	lag_acked(l, 100, 0);
	for (int i = 1; i <= 5; i++)
		lag_commit_sent(l, 100 + 100 * (uint64_t)i, T0 + i * SEC);
	lag_acked(l, 400, T0 + 3 * SEC);
	lag_acked(l, 200, T0 + 1 * SEC);       /* overtaken: ignored */
	lag_acked(l, 400, T0 + 3 * SEC);       /* twice: ignored */
	assert_int_equal(lag_applied_lsn(l), 400);
	assert_int_equal(lag_last_applied_time(l), T0 + 3 * SEC);
	assert_int_equal(lag_pending_commits(l), 2);
	assert_int_equal(lag_bytes(l), 600 - 400);
	assert_true(lag_seconds(l, T0 + 10 * SEC) == 6.0);
	/* an ack beyond everything sent (the sink knew more): all applied */
	lag_acked(l, 10000, 0);
	assert_int_equal(lag_pending_commits(l), 0);
	assert_int_equal(lag_bytes(l), 0);
	assert_int_equal(lag_last_applied_time(l), T0 + 3 * SEC);
	lag_free(l);
}

static void test_lag_resend_after_resume(void **state)
{
	struct lag *l = lag_new(0);

	(void)state;
	lag_acked(l, 100, 0);
	lag_commit_sent(l, 200, T0);
	lag_commit_sent(l, 300, T0 + SEC);
	/* the link drops; the sink resumes at 100 and the source sends both again */
	lag_acked(l, 100, 0);
	lag_commit_sent(l, 200, T0 + 50 * SEC);
	lag_commit_sent(l, 300, T0 + 51 * SEC);
	assert_int_equal(lag_pending_commits(l), 2);
	/* the first sending's time counts (the commit's own time) */
	assert_true(lag_seconds(l, T0 + 60 * SEC) == 60.0);
	/* a commit below the applied position is not pending */
	lag_acked(l, 300, 0);
	lag_commit_sent(l, 250, T0);
	assert_int_equal(lag_pending_commits(l), 0);
	lag_free(l);
}

static void test_lag_future_commit_time_and_unknown(void **state)
{
	struct lag *l = lag_new(0);

	(void)state;
	lag_acked(l, 1, 0);
	lag_commit_sent(l, 10, T0 + 5 * SEC);   /* the source's clock is ahead */
	assert_true(lag_seconds(l, T0) == 0.0);
	lag_acked(l, 10, 0);
	lag_commit_sent(l, 20, 0);              /* time not known */
	assert_true(lag_seconds(l, T0) == 0.0);
	assert_int_equal(lag_pending_commits(l), 1);
	lag_free(l);
}

static void test_lag_ring_coalesces_when_full(void **state)
{
	struct lag *l = lag_new(4);

	(void)state;
	lag_acked(l, 0, 0);
	/* commits at 0s, 10s, 11s, 30s: the ring is full */
	lag_commit_sent(l, 100, T0);
	lag_commit_sent(l, 200, T0 + 10 * SEC);
	lag_commit_sent(l, 300, T0 + 11 * SEC);
	lag_commit_sent(l, 400, T0 + 30 * SEC);
	assert_int_equal(lag_pending_commits(l), 4);
	/* a fifth merges the pair closest in time (10s and 11s) */
	lag_commit_sent(l, 500, T0 + 60 * SEC);
	assert_int_equal(lag_pending_commits(l), 4);
	assert_int_equal(lag_bytes(l), 500);
	assert_true(lag_seconds(l, T0 + 100 * SEC) == 100.0);   /* the head is exact */
	lag_acked(l, 100, 0);
	assert_true(lag_seconds(l, T0 + 100 * SEC) == 90.0);
	/* inside the merged entry: its earlier time holds until its end is applied */
	lag_acked(l, 200, 0);
	assert_true(lag_seconds(l, T0 + 100 * SEC) == 90.0);
	lag_acked(l, 300, 0);
	assert_true(lag_seconds(l, T0 + 100 * SEC) == 70.0);
	lag_acked(l, 400, 0);
	assert_true(lag_seconds(l, T0 + 100 * SEC) == 40.0);
	assert_int_equal(lag_bytes(l), 100);
	lag_acked(l, 500, 0);
	assert_true(lag_caught_up(l));
	lag_free(l);
}

static void test_lag_ring_stays_bounded_under_a_long_backlog(void **state)
{
	struct lag *l = lag_new(16);

	(void)state;
	lag_acked(l, 0, 0);
	for (uint64_t i = 1; i <= 100000; i++) {
		lag_commit_sent(l, i * 100, T0 + (int64_t)i * 1000);
		assert_true(lag_pending_commits(l) <= 16);
	}
	assert_int_equal(lag_bytes(l), 100000 * 100);
	assert_true(lag_seconds(l, T0 + 100 * SEC) > 99.99);
	/* catching up: the lag only falls, and reaches 0 exactly */
	{
		double prev = 1e9;
		for (uint64_t i = 1; i <= 100000; i += 777) {
			double s;
			lag_acked(l, i * 100, 0);
			s = lag_seconds(l, T0 + 100 * SEC);
			assert_true(s <= prev);
			/* errs high only: at least the true age of the oldest unapplied commit */
			assert_true(s + 1e-9 >= (double)(100 * SEC - (int64_t)(i + 1) * 1000) / 1e6);
			prev = s;
		}
	}
	lag_acked(l, 100000 * 100, 0);
	assert_true(lag_caught_up(l));
	assert_true(lag_seconds(l, T0 + 100 * SEC) == 0.0);
	lag_free(l);
}

static void test_lag_reset(void **state)
{
	struct lag *l = lag_new(2);

	(void)state;
	lag_acked(l, 10, 0);
	lag_commit_sent(l, 20, T0);
	lag_wal_position(l, 30);
	lag_reset(l);
	assert_int_equal(lag_pending_commits(l), 0);
	assert_int_equal(lag_wal_lsn(l), 0);
	assert_int_equal(lag_bytes(l), 0);
	lag_acked(l, 5, 0);
	lag_commit_sent(l, 6, T0);             /* below the old sent position: counts after reset */
	assert_int_equal(lag_pending_commits(l), 1);
	lag_free(l);
	lag_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lag_unknown_until_first_ack),
		cmocka_unit_test(test_lag_caught_up_with_unrelated_wal),
		cmocka_unit_test(test_lag_pending_without_commits),
		cmocka_unit_test(test_lag_pending_commits_and_partial_acks),
		cmocka_unit_test(test_lag_acks_out_of_order_and_duplicate),
		cmocka_unit_test(test_lag_resend_after_resume),
		cmocka_unit_test(test_lag_future_commit_time_and_unknown),
		cmocka_unit_test(test_lag_ring_coalesces_when_full),
		cmocka_unit_test(test_lag_ring_stays_bounded_under_a_long_backlog),
		cmocka_unit_test(test_lag_reset),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
