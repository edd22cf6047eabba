/*
 * test_crc32c.c — CRC-32C against published vectors (the check value and
 * RFC 3720's iSCSI examples), incremental use, and agreement of the portable
 * and SSE4.2 paths on random inputs at every alignment.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/crc32c.h"

typedef uint32_t (*crc_fn)(uint32_t, const void *, size_t);

static void
check_vectors(crc_fn f)
{
	uint8_t buf[48];
	static const uint8_t iscsi_read[48] = {
		0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00,
		0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18,
		0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	};

	assert_int_equal(f(0, "123456789", 9), 0xE3069283u);
	assert_int_equal(f(0, NULL, 0), 0);
	assert_int_equal(f(0, "a", 1), 0xC1D04330u);
	memset(buf, 0, 32);
	assert_int_equal(f(0, buf, 32), 0x8A9136AAu);
	memset(buf, 0xff, 32);
	assert_int_equal(f(0, buf, 32), 0x62A8AB43u);
	for (int i = 0; i < 32; i++)
		buf[i] = (uint8_t)i;
	assert_int_equal(f(0, buf, 32), 0x46DD794Eu);
	for (int i = 0; i < 32; i++)
		buf[i] = (uint8_t)(31 - i);
	assert_int_equal(f(0, buf, 32), 0x113FDB5Cu);
	assert_int_equal(f(0, iscsi_read, sizeof(iscsi_read)), 0xD9963A56u);
}

static void
test_vectors_sw(void **state)
{
	(void)state;
	check_vectors(crc32c_sw);
}

static void
test_vectors_hw(void **state)
{
	(void)state;
	if (!crc32c_hw_available())
		skip();
	check_vectors(crc32c_hw);
}

static void
test_vectors_dispatch(void **state)
{
	(void)state;
	check_vectors(crc32c);
}

/* Feeding the result back in continues the CRC, wherever the input is cut. */
static void
test_incremental(void **state)
{
	uint8_t buf[300];
	uint32_t whole;

	(void)state;
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 7 + 3);
	whole = crc32c(0, buf, sizeof(buf));
	for (size_t cut = 0; cut <= sizeof(buf); cut++) {
		assert_int_equal(crc32c(crc32c(0, buf, cut), buf + cut,
			sizeof(buf) - cut), whole);
		assert_int_equal(crc32c_sw(crc32c_sw(0, buf, cut), buf + cut,
			sizeof(buf) - cut), whole);
	}
	/* Three pieces, one of them empty. */
	assert_int_equal(crc32c(crc32c(crc32c(0, buf, 10), buf + 10, 0), buf + 10,
		sizeof(buf) - 10), whole);
	/* Byte at a time. */
	{
		uint32_t c = 0;

		for (size_t i = 0; i < sizeof(buf); i++)
			c = crc32c(c, buf + i, 1);
		assert_int_equal(c, whole);
	}
}

static uint64_t rng = 0x9E3779B97F4A7C15u;

static uint64_t
next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* Both paths agree on random data of random lengths at every alignment. */
static void
test_paths_agree(void **state)
{
	enum { SIZE = 8192 + 16 };
	uint8_t *buf = malloc(SIZE);

	(void)state;
	assert_non_null(buf);
	for (size_t i = 0; i < SIZE; i++)
		buf[i] = (uint8_t)next_rand();
	for (int round = 0; round < 4000; round++) {
		size_t off = next_rand() % 16;
		size_t len = round < 200 ? (size_t)round : next_rand() % 8192;
		uint32_t seed = round % 3 == 0 ? 0 : (uint32_t)next_rand();
		uint32_t sw = crc32c_sw(seed, buf + off, len);

		assert_int_equal(crc32c_hw(seed, buf + off, len), sw);
		assert_int_equal(crc32c(seed, buf + off, len), sw);
	}
	free(buf);
}

/* Any single flipped bit changes the CRC. */
static void
test_bit_flips(void **state)
{
	uint8_t buf[64];
	uint32_t base;

	(void)state;
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)next_rand();
	base = crc32c(0, buf, sizeof(buf));
	for (size_t bit = 0; bit < sizeof(buf) * 8; bit++) {
		buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		assert_int_not_equal(crc32c(0, buf, sizeof(buf)), base);
		buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vectors_sw),
		cmocka_unit_test(test_vectors_hw),
		cmocka_unit_test(test_vectors_dispatch),
		cmocka_unit_test(test_incremental),
		cmocka_unit_test(test_paths_agree),
		cmocka_unit_test(test_bit_flips),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
