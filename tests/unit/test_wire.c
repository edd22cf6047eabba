/*
 * test_wire.c — the bounds-checked field reader and writer: round trips,
 * big-endian byte layout, underrun at every offset without moving, the
 * writer's sticky failure on a fixed buffer and growth limit on the heap.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "gateway/relay/wire.h"

static void
test_round_trip_and_layout(void **state)
{
	uint8_t buf[64];
	struct wire_writer w;
	struct wire_reader r;
	static const uint8_t want[] = {
		0xAB,
		0x12, 0x34,
		0xDE, 0xAD, 0xBE, 0xEF,
		0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
		0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE,
		0x00, 0x03, 'a', 'b', 'c',
		0x00, 0x00,
		'x', 'y',
	};
	uint8_t u8;
	uint16_t u16;
	uint32_t u32;
	uint64_t u64;
	int64_t i64;
	struct wire_str s;
	const uint8_t *p;
	size_t n;

	(void)state;
	wire_writer_init(&w, buf, sizeof(buf));
	assert_true(wire_put_u8(&w, 0xAB));
	assert_true(wire_put_u16(&w, 0x1234));
	assert_true(wire_put_u32(&w, 0xDEADBEEF));
	assert_true(wire_put_u64(&w, UINT64_C(0x0102030405060708)));
	assert_true(wire_put_i64(&w, -2));
	assert_true(wire_put_string(&w, "abc"));
	assert_true(wire_put_string_n(&w, "", 0));
	assert_true(wire_put_bytes(&w, "xy", 2));
	assert_true(wire_writer_ok(&w));
	assert_int_equal(w.len, sizeof(want));
	assert_memory_equal(buf, want, sizeof(want));

	wire_reader_init(&r, buf, w.len);
	assert_true(wire_get_u8(&r, &u8));
	assert_int_equal(u8, 0xAB);
	assert_true(wire_get_u16(&r, &u16));
	assert_int_equal(u16, 0x1234);
	assert_true(wire_get_u32(&r, &u32));
	assert_int_equal(u32, 0xDEADBEEF);
	assert_true(wire_get_u64(&r, &u64));
	assert_true(u64 == UINT64_C(0x0102030405060708));
	assert_true(wire_get_i64(&r, &i64));
	assert_true(i64 == -2);
	assert_true(wire_get_string(&r, &s));
	assert_true(wire_str_eq(s, "abc"));
	assert_false(wire_str_eq(s, "ab"));
	assert_false(wire_str_eq(s, "abcd"));
	assert_true(wire_get_string(&r, &s));
	assert_int_equal(s.len, 0);
	assert_true(wire_str_eq(s, ""));
	assert_true(wire_get_bytes(&r, 2, &p));
	assert_memory_equal(p, "xy", 2);
	assert_int_equal(wire_remaining(&r), 0);
	assert_false(wire_get_u8(&r, &u8));
	wire_get_rest(&r, &p, &n);
	assert_int_equal(n, 0);
}

/* A reader over every prefix fails at the first field that does not fit, without moving. */
static void
test_underrun_every_offset(void **state)
{
	uint8_t buf[64];
	struct wire_writer w;

	(void)state;
	wire_writer_init(&w, buf, sizeof(buf));
	assert_true(wire_put_u8(&w, 1));
	assert_true(wire_put_u16(&w, 2));
	assert_true(wire_put_u32(&w, 3));
	assert_true(wire_put_u64(&w, 4));
	assert_true(wire_put_string(&w, "hello"));
	assert_true(wire_put_bytes(&w, "zz", 2));

	for (size_t len = 0; len < w.len; len++) {
		uint8_t *copy = malloc(len + 1);
		struct wire_reader r;
		uint8_t u8;
		uint16_t u16;
		uint32_t u32;
		uint64_t u64;
		struct wire_str s;
		const uint8_t *p;
		size_t before;
		bool ok;

		assert_non_null(copy);
		memcpy(copy, buf, len);
		wire_reader_init(&r, copy, len);
		before = r.pos;
		ok = wire_get_u8(&r, &u8);
		if (ok) {
			before = r.pos;
			ok = wire_get_u16(&r, &u16);
		}
		if (ok) {
			before = r.pos;
			ok = wire_get_u32(&r, &u32);
		}
		if (ok) {
			before = r.pos;
			ok = wire_get_u64(&r, &u64);
		}
		if (ok) {
			before = r.pos;
			ok = wire_get_string(&r, &s);
		}
		if (ok) {
			before = r.pos;
			ok = wire_get_bytes(&r, 2, &p);
		}
		assert_false(ok);
		assert_int_equal(r.pos, before);
		free(copy);
	}
}

static void
test_string_rules(void **state)
{
	uint8_t buf[8] = { 0x00, 0x03, 'a', 0x00, 'b' };
	struct wire_reader r;
	struct wire_writer w;
	struct wire_str s;
	char *big = malloc(WIRE_STRING_MAX + 2);
	uint8_t *heap;

	(void)state;
	/* A NUL inside a string is refused, and the reader stays put. */
	wire_reader_init(&r, buf, 5);
	assert_false(wire_get_string(&r, &s));
	assert_int_equal(r.pos, 0);

	/* Writing a NUL inside, or more than 65535 bytes, fails (sticky). */
	wire_writer_init(&w, buf, sizeof(buf));
	assert_false(wire_put_string_n(&w, "a\0b", 3));
	assert_false(wire_writer_ok(&w));
	assert_false(wire_put_u8(&w, 1));
	assert_int_equal(w.len, 0);
	wire_writer_reset(&w);
	assert_true(wire_writer_ok(&w));
	assert_false(wire_put_string(&w, NULL));

	assert_non_null(big);
	memset(big, 'q', WIRE_STRING_MAX + 1);
	big[WIRE_STRING_MAX + 1] = '\0';
	wire_writer_init_heap(&w, 1 << 20);
	assert_false(wire_put_string(&w, big));
	wire_writer_reset(&w);
	big[WIRE_STRING_MAX] = '\0';
	assert_true(wire_put_string(&w, big));
	assert_int_equal(w.len, 2 + WIRE_STRING_MAX);
	heap = w.data;
	wire_reader_init(&r, heap, w.len);
	assert_true(wire_get_string(&r, &s));
	assert_int_equal(s.len, WIRE_STRING_MAX);
	{
		char *dup = wire_str_dup(s);

		assert_non_null(dup);
		assert_int_equal(strlen(dup), WIRE_STRING_MAX);
		free(dup);
	}
	wire_writer_free(&w);
	free(big);
}

static void
test_fixed_writer_overflow(void **state)
{
	uint8_t buf[10];
	struct wire_writer w;
	uint8_t *p;

	(void)state;
	wire_writer_init(&w, buf, sizeof(buf));
	assert_true(wire_put_u64(&w, 1));
	assert_false(wire_put_u32(&w, 2));      /* 8 + 4 > 10 */
	assert_false(wire_writer_ok(&w));
	assert_int_equal(w.len, 8);
	assert_false(wire_put_u8(&w, 3));       /* would fit, but the writer failed */
	assert_int_equal(w.len, 8);

	wire_writer_init(&w, buf, sizeof(buf));
	assert_true(wire_put_reserve(&w, 6, &p));
	assert_ptr_equal(p, buf);
	assert_true(wire_patch_u32(&w, 2, 0x01020304));
	assert_false(wire_patch_u32(&w, 3, 0));  /* would run past len */
	assert_false(wire_patch_u32(&w, SIZE_MAX, 0));
	assert_memory_equal(buf + 2, "\x01\x02\x03\x04", 4);
	assert_true(wire_put_bytes(&w, "ab", 2));
	assert_true(wire_put_bytes(&w, NULL, 0));
	assert_false(wire_put_bytes(&w, "abc", 3));
	wire_writer_free(&w);                  /* fixed: does not free buf */
	assert_ptr_equal(w.data, buf);
}

static void
test_heap_writer(void **state)
{
	struct wire_writer w;

	(void)state;
	wire_writer_init_heap(&w, 1000);
	for (int i = 0; i < 250; i++)
		assert_true(wire_put_u32(&w, (uint32_t)i));
	assert_int_equal(w.len, 1000);
	assert_true(w.cap <= 1000);
	assert_false(wire_put_u8(&w, 0));      /* at the limit */
	assert_false(wire_writer_ok(&w));
	for (int i = 0; i < 250; i++)
		assert_int_equal(wire_load_u32(w.data + 4 * i), (uint32_t)i);
	wire_writer_free(&w);
	assert_null(w.data);

	/* A limit below the first growth step. */
	wire_writer_init_heap(&w, 5);
	assert_true(wire_put_u32(&w, 1));
	assert_true(wire_put_u8(&w, 1));
	assert_false(wire_put_u8(&w, 1));
	wire_writer_free(&w);

	/* A huge request is refused without allocating. */
	wire_writer_init_heap(&w, SIZE_MAX / 2);
	assert_true(wire_put_u8(&w, 1));
	assert_false(wire_put_bytes(&w, "", SIZE_MAX - 1));
	wire_writer_free(&w);
}

static void
test_null_buffers(void **state)
{
	struct wire_reader r;
	struct wire_writer w;
	const uint8_t *p;
	size_t n;
	uint8_t v;

	(void)state;
	wire_reader_init(&r, NULL, 10);
	assert_int_equal(wire_remaining(&r), 0);
	assert_false(wire_get_u8(&r, &v));
	wire_get_rest(&r, &p, &n);
	assert_int_equal(n, 0);
	wire_writer_init(&w, NULL, 10);
	assert_false(wire_put_u8(&w, 1));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip_and_layout),
		cmocka_unit_test(test_underrun_every_offset),
		cmocka_unit_test(test_string_rules),
		cmocka_unit_test(test_fixed_writer_overflow),
		cmocka_unit_test(test_heap_writer),
		cmocka_unit_test(test_null_buffers),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
