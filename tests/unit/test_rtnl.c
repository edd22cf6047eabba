/*
 * test_rtnl.c — the tunnel MTU as wg-quick computes it: the smallest path
 * MTU towards the endpoints minus WireGuard's 80 bytes, 1420 without a route.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tunnel/rtnl.h"

static void test_mtu_choose(void **state)
{
	uint32_t one[] = { 1500 };
	uint32_t many[] = { 9000, 1500, 0, 1400 };
	uint32_t zeros[] = { 0, 0 };
	uint32_t tiny[] = { 1300 };
	uint32_t jumbo[] = { 9000 };

	(void)state;
	assert_int_equal(rtnl_mtu_choose(NULL, 0), 1420);
	assert_int_equal(rtnl_mtu_choose(zeros, 2), 1420);
	assert_int_equal(rtnl_mtu_choose(one, 1), 1420);
	assert_int_equal(rtnl_mtu_choose(many, 4), 1320);
	assert_int_equal(rtnl_mtu_choose(jumbo, 1), 8920);
	/* Never below IPv6's minimum. */
	assert_int_equal(rtnl_mtu_choose(tiny, 1), 1280);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mtu_choose),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
