/* Unit tests for lostrole: the role of a site whose state directory was lost. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "gateway/cluster/lostrole.h"

static void decide(const char *self, size_t peers, const struct lostrole_answer *a, size_t n,
		struct lostrole_decision *d)
{
	lostrole_decide(self, "onprem", peers, a, n, d);
}

static void
test_waits_without_answers(void **state)
{
	struct lostrole_decision d;
	const struct lostrole_answer a[] = { { "cloud", ROLE_REPLICA, 1, "" } };

	(void)state;
	decide("onprem", 1, NULL, 0, &d);
	assert_int_equal(d.action, LOSTROLE_WAIT);
	assert_string_equal(d.why, "no peer answered yet");
	/* an answer that names no primary */
	decide("onprem", 1, a, 1, &d);
	assert_int_equal(d.action, LOSTROLE_WAIT);
	assert_string_equal(d.why, "no peer names a primary at epoch 1");
}

static void
test_the_primary_comes_back_once_every_peer_answered(void **state)
{
	const struct lostrole_answer a[] = {
		{ "cloud", ROLE_REPLICA, 3, "onprem" },
		{ "edge", ROLE_REPLICA, 3, "onprem" },
	};
	struct lostrole_decision d;

	(void)state;
	decide("onprem", 2, a, 1, &d);
	assert_int_equal(d.action, LOSTROLE_WAIT);
	assert_string_equal(d.why, "the peers that answered name this site primary at epoch 3, but 1 "
			    "of 2 have not answered");
	decide("onprem", 2, a, 2, &d);
	assert_int_equal(d.action, LOSTROLE_PRIMARY);
	assert_true(d.epoch == 3);
	assert_string_equal(d.primary, "onprem");
}

static void
test_a_replica_follows_only_when_nothing_changed(void **state)
{
	const struct lostrole_answer first[] = { { "onprem", ROLE_PRIMARY, 1, "onprem" } };
	const struct lostrole_answer later[] = { { "onprem", ROLE_PRIMARY, 2, "onprem" } };
	struct lostrole_decision d;

	(void)state;
	decide("cloud", 1, first, 1, &d);
	assert_int_equal(d.action, LOSTROLE_REPLICA);
	assert_string_equal(d.primary, "onprem");
	assert_true(d.epoch == 1);
	/* a switchover and back happened meanwhile: its origins may be of another primary */
	decide("cloud", 1, later, 1, &d);
	assert_int_equal(d.action, LOSTROLE_FENCED);
	assert_string_equal(d.primary, "onprem");
	assert_true(d.epoch == 2);
}

static void
test_the_config_primary_after_a_failover_is_fenced(void **state)
{
	/* onprem (the config's primary) lost its state after cloud took over */
	const struct lostrole_answer a[] = {
		{ "cloud", ROLE_PRIMARY, 2, "cloud" },
		{ "edge", ROLE_REPLICA, 2, "cloud" },
	};
	struct lostrole_decision d;

	(void)state;
	decide("onprem", 2, a, 2, &d);
	assert_int_equal(d.action, LOSTROLE_FENCED);
	assert_string_equal(d.primary, "cloud");
	assert_true(d.epoch == 2);
	/* one answer is enough to stay fenced */
	decide("onprem", 2, a + 1, 1, &d);
	assert_int_equal(d.action, LOSTROLE_FENCED);
	assert_string_equal(d.primary, "cloud");
}

static void
test_the_highest_epoch_decides(void **state)
{
	/* edge missed the failover: it still names onprem at epoch 1 */
	const struct lostrole_answer a[] = {
		{ "edge", ROLE_REPLICA, 1, "onprem" },
		{ "cloud", ROLE_PRIMARY, 2, "cloud" },
	};
	/* two primaries at one epoch: the name that sorts first */
	const struct lostrole_answer two[] = {
		{ "edge", ROLE_PRIMARY, 4, "edge" },
		{ "cloud", ROLE_PRIMARY, 4, "cloud" },
	};
	struct lostrole_decision d;

	(void)state;
	decide("onprem", 2, a, 2, &d);
	assert_int_equal(d.action, LOSTROLE_FENCED);
	assert_string_equal(d.primary, "cloud");
	decide("onprem", 2, two, 2, &d);
	assert_int_equal(d.action, LOSTROLE_FENCED);
	assert_string_equal(d.primary, "cloud");
	assert_true(d.epoch == 4);
}

static void
test_every_site_lost_its_state(void **state)
{
	const struct lostrole_answer a[] = {
		{ "cloud", ROLE_FENCED, 1, "" },
		{ "edge", ROLE_FENCED, 1, "" },
	};
	struct lostrole_decision d;

	(void)state;
	decide("onprem", 2, a, 2, &d);
	assert_int_equal(d.action, LOSTROLE_PRIMARY);
	assert_string_equal(d.primary, "onprem");
	assert_string_equal(d.why, "every peer lost its state too: the configured roles (site onprem "
			    "primary)");
	decide("cloud", 2, a + 1, 1, &d);
	assert_int_equal(d.action, LOSTROLE_WAIT);       /* one has not answered */
	{
		const struct lostrole_answer b[] = {
			{ "onprem", ROLE_FENCED, 1, "" },
			{ "edge", ROLE_FENCED, 1, "" },
		};

		decide("cloud", 2, b, 2, &d);
		assert_int_equal(d.action, LOSTROLE_REPLICA);
		assert_string_equal(d.primary, "onprem");
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_waits_without_answers),
		cmocka_unit_test(test_the_primary_comes_back_once_every_peer_answered),
		cmocka_unit_test(test_a_replica_follows_only_when_nothing_changed),
		cmocka_unit_test(test_the_config_primary_after_a_failover_is_fenced),
		cmocka_unit_test(test_the_highest_epoch_decides),
		cmocka_unit_test(test_every_site_lost_its_state),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
