/*
 * test_syncrange.c — a large table's copy in ranges: how many ranges a size
 * gives, that the ranges' blocks follow each other without gap or overlap,
 * and the range lists of the plan (written canonically, and every other
 * form refused).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "replicator/syncrange.h"

static void test_count(void **state)
{
	(void)state;
	/* off, small, at the threshold: one range */
	assert_int_equal(syncrange_count(10u << 30, 1310720, 0), 1);
	assert_int_equal(syncrange_count(100, 1, 1000), 1);
	assert_int_equal(syncrange_count(1000, 1000, 1000), 1);
	/* above: one range per eighth of the threshold */
	assert_int_equal(syncrange_count(1001, 1000, 1000), 9);
	assert_int_equal(syncrange_count(8000000000ull, 976563, 1000000000ull), 64);
	/* never more ranges than blocks, nor than the limit */
	assert_int_equal(syncrange_count(1u << 20, 3, 1000), 3);
	assert_int_equal(syncrange_count(1ull << 50, 1ull << 37, 1u << 20), SYNCRANGE_MAX);
	/* a one-block table is never split */
	assert_int_equal(syncrange_count(8192, 1, 10), 1);
	assert_true(syncrange_supported(140000));
	assert_false(syncrange_supported(130023));
}

static void test_bounds(void **state)
{
	static const uint64_t sizes[] = { 2, 7, 64, 1000, 976563, 4294967295ull };
	static const uint32_t counts[] = { 2, 3, 7, 9, 64, 4096 };

	(void)state;
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		for (size_t c = 0; c < sizeof(counts) / sizeof(counts[0]); c++) {
			uint64_t nb = sizes[s], prev_end = 0, first, end;
			uint32_t n = counts[c];

			if (n > nb)
				continue;
			for (uint32_t k = 0; k < n; k++) {
				syncrange_bounds(nb, n, k, &first, &end);
				assert_true(first == prev_end);      /* no gap, no overlap */
				assert_true(end > first);            /* never empty */
				prev_end = end;
			}
			assert_true(prev_end == nb);
		}
	}
}

static void check_round_trip(uint32_t n, const uint32_t *members, size_t count, const char *text)
{
	struct syncrange_set s, t;
	char *out;

	assert_true(syncrange_set_init(&s, n));
	for (size_t i = 0; i < count; i++)
		assert_true(syncrange_set_add(&s, members[i]));
	assert_int_equal(s.count, count);
	out = syncrange_set_format(&s);
	assert_non_null(out);
	assert_string_equal(out, text);
	assert_true(syncrange_set_parse(out, strlen(out), n, &t));
	assert_int_equal(t.count, count);
	for (uint32_t k = 0; k < n; k++)
		assert_int_equal(syncrange_set_has(&s, k), syncrange_set_has(&t, k));
	free(out);
	syncrange_set_free(&s);
	syncrange_set_free(&t);
}

static void test_lists(void **state)
{
	static const uint32_t a[] = { 0, 1, 2, 3, 7, 9, 10, 11 };
	static const uint32_t b[] = { 4095 };
	static const uint32_t c[] = { 0, 2, 4 };
	struct syncrange_set s;

	(void)state;
	check_round_trip(12, a, 8, "0-3,7,9-11");
	check_round_trip(4096, b, 1, "4095");
	check_round_trip(5, c, 3, "0,2,4");
	assert_true(syncrange_set_init_full(&s, 70));
	assert_true(syncrange_set_full(&s));
	assert_false(syncrange_set_add(&s, 69));     /* already in */
	assert_false(syncrange_set_add(&s, 70));     /* out of the set's span */
	{
		char *out = syncrange_set_format(&s);

		assert_string_equal(out, "0-69");
		free(out);
	}
	syncrange_set_free(&s);
}

static void test_malformed_lists(void **state)
{
	static const char *const bad[] = {
		"", ",", "1,", ",1", "3,1", "1,2", "0-1,2", "1-1", "2-1", "01", "+1", "-1", "1 ",
		" 1", "1--2", "1-", "12", "0-12", "a", "1,,2", "0-3,3-5", "4294967296",
	};
	struct syncrange_set s;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (syncrange_set_parse(bad[i], strlen(bad[i]), 12, &s))
			fail_msg("accepted \"%s\"", bad[i]);
		assert_null(s.bits);
	}
	assert_false(syncrange_set_init(&s, SYNCRANGE_MAX + 1));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_count),
		cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_lists),
		cmocka_unit_test(test_malformed_lists),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
