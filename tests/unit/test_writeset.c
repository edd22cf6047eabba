/*
 * test_writeset.c — the key-to-owner map of parallel apply: owners replace
 * each other, a key is forgotten only by its own owner, removal keeps every
 * other key findable however the probe chains run (checked against a plain
 * array through many random puts and removals), key 0 is a key like any
 * other, and clearing keeps nothing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "replicator/writeset.h"

static void test_put_get_owner(void **state)
{
	struct writeset w;
	uint64_t prev = 99;

	(void)state;
	writeset_init(&w);
	assert_int_equal(writeset_get(&w, 42), 0);
	assert_true(writeset_put(&w, 42, 7, &prev));
	assert_int_equal(prev, 0);
	assert_int_equal(writeset_get(&w, 42), 7);
	/* a later transaction takes the key over: the earlier one is what it waits for */
	assert_true(writeset_put(&w, 42, 9, &prev));
	assert_int_equal(prev, 7);
	assert_int_equal(writeset_get(&w, 42), 9);
	assert_int_equal(w.count, 1);
	/* only the owner forgets it */
	writeset_forget(&w, 42, 7);
	assert_int_equal(writeset_get(&w, 42), 9);
	writeset_forget(&w, 42, 9);
	assert_int_equal(writeset_get(&w, 42), 0);
	assert_int_equal(w.count, 0);
	writeset_free(&w);
}

static void test_key_zero(void **state)
{
	struct writeset w;

	(void)state;
	writeset_init(&w);
	assert_true(writeset_put(&w, 0, 5, NULL));
	assert_int_equal(writeset_get(&w, 0), 5);
	writeset_forget(&w, 0, 5);
	assert_int_equal(writeset_get(&w, 0), 0);
	writeset_free(&w);
}

/* Many keys that share home slots, put and removed at random, against a plain array. */
static void test_against_a_model(void **state)
{
	enum { N = 5000, ROUNDS = 200000 };
	uint64_t *model = calloc(N, sizeof(*model));
	struct writeset w;
	unsigned seed = 12345;

	(void)state;
	assert_non_null(model);
	writeset_init(&w);
	for (int r = 0; r < ROUNDS; r++) {
		uint64_t k, owner;

		seed = seed * 1103515245u + 12345u;
		k = (seed >> 8) % N;
		owner = (uint64_t)r + 1;
		if ((seed >> 4) % 3 == 0 && model[k]) {
			writeset_forget(&w, k << 20, model[k]);   /* high bits only: clustered homes */
			model[k] = 0;
		} else {
			assert_true(writeset_put(&w, k << 20, owner, NULL));
			model[k] = owner;
		}
	}
	for (uint64_t k = 0; k < N; k++)
		assert_int_equal(writeset_get(&w, k << 20), model[k]);
	writeset_clear(&w);
	for (uint64_t k = 0; k < N; k++)
		assert_int_equal(writeset_get(&w, k << 20), 0);
	assert_int_equal(w.count, 0);
	writeset_free(&w);
	free(model);
}

static void test_hash(void **state)
{
	uint64_t a, b, c;

	(void)state;
	a = writeset_hash_finish(writeset_hash_add(writeset_hash_start(), "row 1", 5));
	b = writeset_hash_finish(writeset_hash_add(writeset_hash_start(), "row 1", 5));
	c = writeset_hash_finish(writeset_hash_add(writeset_hash_start(), "row 2", 5));
	assert_int_equal(a, b);
	assert_true(a != c);
	/* in pieces or whole: the same */
	b = writeset_hash_finish(writeset_hash_add(writeset_hash_add(writeset_hash_start(),
		"row", 3), " 1", 2));
	assert_int_equal(a, b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_put_get_owner),
		cmocka_unit_test(test_key_zero),
		cmocka_unit_test(test_against_a_model),
		cmocka_unit_test(test_hash),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
