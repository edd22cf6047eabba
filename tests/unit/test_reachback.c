/* Unit tests for reachback: where a resend must start for open streamed transactions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "gateway/stream/reachback.h"

static struct spool_pos at(uint64_t seq, uint64_t off)
{
	return (struct spool_pos){ .seq = seq, .off = off };
}

static void test_nothing_streamed_never_reaches_back(void **state)
{
	struct reachback *rb = reachback_new();
	struct spool_pos p;

	(void)state;
	assert_true(reachback_record(rb, at(1, 16), 100, 1, false, 0));
	assert_true(reachback_record(rb, at(1, 200), 200, 2, false, 0));
	assert_false(reachback_at(rb, 150, &p));
	assert_false(reachback_at(rb, 0, &p));
	assert_int_equal(reachback_entries(rb), 0);
	reachback_free(rb);
}

static void test_resume_reaches_back_to_the_oldest_open_first_block(void **state)
{
	struct reachback *rb = reachback_new();
	struct spool_pos p;

	(void)state;
	/* batch 1: commit 100; batch 2: T1's first block; batch 3: commit 300 */
	assert_true(reachback_record(rb, at(1, 16), 100, 1, false, 0));
	assert_true(reachback_record(rb, at(1, 100), 0, 2, true, 2));
	assert_true(reachback_record(rb, at(1, 300), 300, 3, false, 2));
	/* batch 4: T2's first block; batch 5: T1 commits at 500, T2 still open */
	assert_true(reachback_record(rb, at(2, 16), 0, 4, true, 2));
	assert_true(reachback_record(rb, at(2, 90), 500, 5, false, 4));
	/* batch 6: T2 aborted, commit 600 */
	assert_true(reachback_record(rb, at(2, 400), 600, 6, false, 0));

	assert_false(reachback_at(rb, 100, &p));     /* nothing open after 100 */
	assert_true(reachback_at(rb, 300, &p));
	assert_int_equal(p.seq, 1);
	assert_int_equal(p.off, 100);
	assert_true(reachback_at(rb, 499, &p));      /* still T1's */
	assert_int_equal(p.off, 100);
	assert_true(reachback_at(rb, 500, &p));      /* T2's */
	assert_int_equal(p.seq, 2);
	assert_int_equal(p.off, 16);
	assert_false(reachback_at(rb, 600, &p));

	/* committed past 500: what only 300 needed goes */
	reachback_release(rb, 550);
	assert_true(reachback_at(rb, 550, &p));
	assert_int_equal(p.seq, 2);
	assert_false(reachback_at(rb, 700, &p));
	reachback_free(rb);
}

static void test_first_block_and_commit_in_one_record(void **state)
{
	struct reachback *rb = reachback_new();
	struct spool_pos p;

	(void)state;
	/* one record: a commit at 100, then T's first block after it */
	assert_true(reachback_record(rb, at(3, 16), 100, 1, true, 1));
	assert_true(reachback_at(rb, 100, &p));
	assert_int_equal(p.seq, 3);
	assert_int_equal(p.off, 16);
	reachback_free(rb);
}

static void test_a_new_connection_numbers_again(void **state)
{
	struct reachback *rb = reachback_new();
	struct spool_pos p;

	(void)state;
	assert_true(reachback_record(rb, at(1, 16), 0, 1, true, 1));
	assert_true(reachback_record(rb, at(1, 50), 100, 2, false, 1));
	reachback_new_connection(rb);
	/* batch 1 of the new connection is another record: the old start is not it */
	assert_true(reachback_record(rb, at(1, 80), 0, 1, false, 0));
	assert_true(reachback_record(rb, at(1, 90), 200, 2, true, 2));
	assert_true(reachback_at(rb, 100, &p));      /* records noted before still answer */
	assert_int_equal(p.off, 16);
	assert_true(reachback_at(rb, 200, &p));
	assert_int_equal(p.off, 90);
	reachback_free(rb);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nothing_streamed_never_reaches_back),
		cmocka_unit_test(test_resume_reaches_back_to_the_oldest_open_first_block),
		cmocka_unit_test(test_first_block_and_commit_in_one_record),
		cmocka_unit_test(test_a_new_connection_numbers_again),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
