/*
 * test_lsn.c — an LSN as text: the one format (PostgreSQL's, upper case, no
 * leading zeros) in a buffer and inside a printf format, and the one parser
 * with its edges (eight digits a half at most, either case, nothing around).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>

#include "common/lsn.h"

static void test_format(void **state)
{
	char buf[LSN_BUF];

	(void)state;
	assert_string_equal(lsn_format(buf, 0), "0/0");
	assert_string_equal(lsn_format(buf, UINT64_C(0x16B3748)), "0/16B3748");
	assert_string_equal(lsn_format(buf, UINT64_C(0x16B374D848)), "16/B374D848");
	assert_string_equal(lsn_format(buf, UINT64_C(1) << 32), "1/0");
	assert_string_equal(lsn_format(buf, UINT64_MAX), "FFFFFFFF/FFFFFFFF");
	assert_int_equal(sizeof("FFFFFFFF/FFFFFFFF"), LSN_BUF);
	assert_ptr_equal(lsn_format(buf, 1), buf);
}

static void test_format_in_printf(void **state)
{
	char text[64];
	uint64_t lsn = UINT64_C(0xABCDEF0012345678);

	(void)state;
	snprintf(text, sizeof(text), "at " LSN_FMT " (" LSN_FMT ")", LSN_ARGS(lsn), LSN_ARGS(0));
	assert_string_equal(text, "at ABCDEF00/12345678 (0/0)");
	/* an argument of any integer type, evaluated as a 64-bit position */
	snprintf(text, sizeof(text), LSN_FMT, LSN_ARGS(7u));
	assert_string_equal(text, "0/7");
}

static void test_parse(void **state)
{
	uint64_t v = 1;

	(void)state;
	assert_true(lsn_parse("16/B374D848", &v));
	assert_true(v == UINT64_C(0x16B374D848));
	assert_true(lsn_parse("0/16B3748", &v));
	assert_true(v == UINT64_C(0x16B3748));
	assert_true(lsn_parse("0/0", &v));
	assert_true(v == 0);
	assert_true(lsn_parse("1/0", &v));
	assert_true(v == UINT64_C(1) << 32);
	assert_true(lsn_parse("ffffffff/ffffffff", &v));
	assert_true(v == UINT64_MAX);
	assert_true(lsn_parse("FFFFFFFF/FFFFFFFF", &v));
	assert_true(v == UINT64_MAX);
	assert_true(lsn_parse("00000001/00000002", &v));
	assert_true(v == (UINT64_C(1) << 32 | 2));
}

static void test_parse_refuses(void **state)
{
	static const char *const bad[] = {
		"", "12", "/1", "1/", "/", "G/1", "1/G", "1/2/3", "123456789/0", "0/123456789",
		" 1/2", "1/2 ", "1 /2", "1/ 2", "16/B374D848x", "zz/1", "0x1/2", "1/0x2", "+1/2",
		"-1/2", "1/-2",
	};
	uint64_t v = 7;

	(void)state;
	assert_false(lsn_parse(NULL, &v));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (lsn_parse(bad[i], &v))
			fail_msg("\"%s\" parsed", bad[i]);
	}
	assert_true(v == 7);
}

static void test_round_trip(void **state)
{
	static const uint64_t lsns[] = {
		0, 1, 0xF, 0x10, UINT64_C(0xFFFFFFFF), UINT64_C(0x100000000),
		UINT64_C(0x16B374D848), UINT64_C(0x8000000000000000), UINT64_MAX,
	};
	char buf[LSN_BUF];
	uint64_t v;

	(void)state;
	for (size_t i = 0; i < sizeof(lsns) / sizeof(lsns[0]); i++) {
		assert_true(lsn_parse(lsn_format(buf, lsns[i]), &v));
		assert_true(v == lsns[i]);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_format_in_printf),
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_parse_refuses),
		cmocka_unit_test(test_round_trip),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
