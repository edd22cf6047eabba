/*
 * test_frame.c — relay link framing: the exact header layout, round trips of
 * every message type, incremental decoding byte by byte, and every error:
 * bad magic, version, type, flags, reserved byte, length over the cap (seen
 * before the payload arrives) and every single-bit corruption.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/crc32c.h"
#include "gateway/relay/frame.h"

static const enum frame_type all_types[] = {
	FRAME_HELLO, FRAME_BATCH, FRAME_SYNC, FRAME_SEQUENCES, FRAME_ACK,
	FRAME_HEARTBEAT, FRAME_GOODBYE, FRAME_RESUME, FRAME_CATCHUP, FRAME_CATCHUP_REPLY, FRAME_CATCHUP_BATCH,
	FRAME_CATCHUP_ACK, FRAME_FENCE, FRAME_FENCE_ACK,
	FRAME_PROMOTE, FRAME_PROMOTE_ACK, FRAME_VERIFY, FRAME_COMMAND, FRAME_COMMAND_REPLY,
	FRAME_CLAIM, FRAME_CLAIM_REPLY, FRAME_FOLLOW_REQ, FRAME_PROBE,
};
#define NTYPES (sizeof(all_types) / sizeof(all_types[0]))

/* Decodes from an exact-size heap copy, so ASan catches any overread. */
static enum frame_status
decode_copy(const uint8_t *buf, size_t len, struct frame *f, uint8_t **keep)
{
	uint8_t *copy = malloc(len + 1);
	enum frame_status st;

	assert_non_null(copy);
	if (len > 0)
		memcpy(copy, buf, len);
	st = frame_decode(copy, len, f);
	if (keep != NULL)
		*keep = copy;
	else
		free(copy);
	return st;
}

static void
test_header_layout(void **state)
{
	uint8_t hdr[FRAME_HEADER_SIZE];
	uint8_t whole[FRAME_HEADER_SIZE + 3];
	static const uint8_t want[20] = {
		'S', 'T', 'R', 'T', 1, 0x06, 0x00, 0x00,
		0x00, 0x00, 0x00, 0x03,
		0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
	};
	uint32_t crc;
	struct frame f;

	(void)state;
	assert_true(frame_encode_header(hdr, FRAME_HEARTBEAT, 0,
		UINT64_C(0x0102030405060708), "abc", 3));
	assert_memory_equal(hdr, want, sizeof(want));
	crc = crc32c(crc32c(0, hdr, 20), "abc", 3);
	assert_int_equal(wire_load_u32(hdr + 20), crc);

	memcpy(whole, hdr, sizeof(hdr));
	memcpy(whole + FRAME_HEADER_SIZE, "abc", 3);
	assert_int_equal(frame_decode(whole, sizeof(whole), &f), FRAME_OK);
	assert_int_equal(f.type, FRAME_HEARTBEAT);
	assert_int_equal(f.flags, 0);
	assert_true(f.epoch == UINT64_C(0x0102030405060708));
	assert_int_equal(f.payload_len, 3);
	assert_ptr_equal(f.payload, whole + FRAME_HEADER_SIZE);
	assert_int_equal(f.size, sizeof(whole));
}

static void
test_round_trip_all_types(void **state)
{
	struct wire_writer w;

	(void)state;
	wire_writer_init_heap(&w, 1 << 20);
	for (size_t i = 0; i < NTYPES; i++) {
		uint8_t payload[256];
		struct frame f;
		size_t len = i * 9;

		for (size_t k = 0; k < len; k++)
			payload[k] = (uint8_t)(k ^ i);
		wire_writer_reset(&w);
		assert_true(frame_append(&w, all_types[i],
			i % 2 ? FRAME_FLAG_COMPRESSED : 0, i * 1000, payload, len));
		assert_int_equal(w.len, FRAME_HEADER_SIZE + len);
		assert_int_equal(frame_decode(w.data, w.len, &f), FRAME_OK);
		assert_int_equal(f.type, all_types[i]);
		assert_int_equal(f.flags, i % 2 ? FRAME_FLAG_COMPRESSED : 0);
		assert_true(f.epoch == i * 1000);
		assert_int_equal(f.payload_len, len);
		if (len > 0)
			assert_memory_equal(f.payload, payload, len);
		assert_int_equal(f.size, w.len);
		assert_string_not_equal(frame_type_name(all_types[i]), "unknown");
	}
	wire_writer_free(&w);
}

/* Several frames in one buffer, and a byte-by-byte arrival of each. */
static void
test_stream_of_frames(void **state)
{
	struct wire_writer w;
	size_t at, off = 0;
	int n = 0;
	struct frame f;

	(void)state;
	wire_writer_init_heap(&w, 1 << 20);
	assert_true(frame_append(&w, FRAME_HELLO, 0, 1, "hi", 2));
	assert_true(frame_append(&w, FRAME_ACK, 0, 1, NULL, 0));
	assert_true(frame_begin(&w, FRAME_BATCH, FRAME_FLAG_COMPRESSED, 2, &at));
	assert_true(wire_put_string(&w, "stream"));
	assert_true(wire_put_u64(&w, 42));
	assert_true(frame_end(&w, at));
	assert_true(wire_writer_ok(&w));

	while (off < w.len) {
		/* Arrives one byte at a time: NEED_MORE until complete. */
		size_t have;

		for (have = 0; ; have++) {
			enum frame_status st = decode_copy(w.data + off, have, &f, NULL);

			if (st == FRAME_OK)
				break;
			assert_int_equal(st, FRAME_NEED_MORE);
			assert_true(f.size > have);
			/* The size asked for is the header until the length is in. */
			assert_int_equal(f.size, have < 12 ? FRAME_HEADER_SIZE :
				FRAME_HEADER_SIZE + wire_load_u32(w.data + off + 8));
			assert_true(have < w.len - off);
		}
		assert_int_equal(frame_decode(w.data + off, w.len - off, &f), FRAME_OK);
		assert_int_equal(have, f.size);
		off += f.size;
		n++;
	}
	assert_int_equal(n, 3);
	assert_int_equal(f.type, FRAME_BATCH);
	assert_int_equal(f.payload_len, 2 + 6 + 8);
	wire_writer_free(&w);
}

static void
build(uint8_t *buf, enum frame_type t, const char *payload)
{
	assert_true(frame_encode_header(buf, t, 0, 9, payload, strlen(payload)));
	memcpy(buf + FRAME_HEADER_SIZE, payload, strlen(payload));
}

/* Header errors are reported as soon as the offending byte arrives. */
static void
test_header_errors_early(void **state)
{
	uint8_t good[FRAME_HEADER_SIZE + 4];
	uint8_t bad[FRAME_HEADER_SIZE + 4];
	struct frame f;
	static const struct {
		size_t off;
		uint8_t val;
		enum frame_status st;
	} cases[] = {
		{ 0, 'G', FRAME_ERR_MAGIC },
		{ 1, 't', FRAME_ERR_MAGIC },
		{ 2, 0, FRAME_ERR_MAGIC },
		{ 3, 'X', FRAME_ERR_MAGIC },
		{ 4, 0, FRAME_ERR_VERSION },
		{ 4, 2, FRAME_ERR_VERSION },
		{ 5, 0x00, FRAME_ERR_TYPE },
		{ 5, 0x0d, FRAME_ERR_TYPE },
		{ 5, 0x1a, FRAME_ERR_TYPE },
		{ 5, 0x1f, FRAME_ERR_TYPE },
		{ 5, 0x21, FRAME_ERR_TYPE },
		{ 5, 'B', FRAME_ERR_TYPE },
		{ 5, 0xff, FRAME_ERR_TYPE },
		{ 6, 0x02, FRAME_ERR_FLAGS },
		{ 6, 0x80, FRAME_ERR_FLAGS },
		{ 7, 0x01, FRAME_ERR_FLAGS },
	};

	(void)state;
	build(good, FRAME_ACK, "data");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memcpy(bad, good, sizeof(good));
		bad[cases[i].off] = cases[i].val;
		/* Not before the byte is there, and from then on at every length. */
		for (size_t len = 0; len <= sizeof(bad); len++) {
			enum frame_status st = decode_copy(bad, len, &f, NULL);

			if (len <= cases[i].off)
				assert_int_equal(st, FRAME_NEED_MORE);
			else
				assert_int_equal(st, cases[i].st);
		}
	}
	/* Plain text from something that is not straitd. */
	assert_int_equal(frame_decode((const uint8_t *)"GET / HTTP/1.1\r\n", 16, &f),
		FRAME_ERR_MAGIC);
	assert_int_equal(frame_decode((const uint8_t *)"\x16\x03\x01", 3, &f),
		FRAME_ERR_MAGIC);
	assert_int_equal(frame_decode(NULL, 0, &f), FRAME_NEED_MORE);
	assert_int_equal(f.size, FRAME_HEADER_SIZE);
}

/* An oversized length is refused with 12 bytes in hand: nothing to allocate. */
static void
test_length_cap(void **state)
{
	uint8_t hdr[FRAME_HEADER_SIZE];
	struct frame f;
	static const uint32_t lens[] = {
		FRAME_MAX_PAYLOAD + 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF,
	};

	(void)state;
	build(hdr, FRAME_BATCH, "");
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		wire_store_u32(hdr + 8, lens[i]);
		assert_int_equal(decode_copy(hdr, 11, &f, NULL), FRAME_NEED_MORE);
		assert_int_equal(decode_copy(hdr, 12, &f, NULL), FRAME_ERR_TOO_LONG);
		assert_int_equal(decode_copy(hdr, FRAME_HEADER_SIZE, &f, NULL),
			FRAME_ERR_TOO_LONG);
	}
	/* Exactly the cap is fine: the decoder asks for all of it. */
	wire_store_u32(hdr + 8, FRAME_MAX_PAYLOAD);
	assert_int_equal(decode_copy(hdr, 12, &f, NULL), FRAME_NEED_MORE);
	assert_int_equal(f.size, FRAME_MAX_SIZE);

	/* The encoders refuse more than the cap. */
	assert_false(frame_encode_header(hdr, FRAME_BATCH, 0, 0, NULL,
		(size_t)FRAME_MAX_PAYLOAD + 1));
}

static void
test_max_payload_round_trip(void **state)
{
	struct wire_writer w;
	size_t at;
	uint8_t *p;
	struct frame f;

	(void)state;
	wire_writer_init_heap(&w, FRAME_MAX_SIZE + 1);
	assert_true(frame_begin(&w, FRAME_SYNC, 0, 5, &at));
	assert_true(wire_put_reserve(&w, FRAME_MAX_PAYLOAD, &p));
	memset(p, 0x5a, FRAME_MAX_PAYLOAD);
	assert_true(frame_end(&w, at));
	assert_int_equal(frame_decode(w.data, w.len, &f), FRAME_OK);
	assert_int_equal(f.payload_len, FRAME_MAX_PAYLOAD);
	assert_int_equal(frame_decode(w.data, w.len - 1, &f), FRAME_NEED_MORE);

	/* One byte more and frame_end refuses, failing the writer. */
	assert_true(wire_put_u8(&w, 0));
	assert_false(frame_end(&w, at));
	assert_false(wire_writer_ok(&w));
	wire_writer_free(&w);
}

/* No single flipped bit anywhere in a frame gets through. */
static void
test_every_bit_flip(void **state)
{
	uint8_t good[FRAME_HEADER_SIZE + 16];
	uint8_t bad[sizeof(good)];
	struct frame f;
	int crc_errors = 0;

	(void)state;
	build(good, FRAME_HEARTBEAT, "0123456789abcdef");
	assert_int_equal(frame_decode(good, sizeof(good), &f), FRAME_OK);
	for (size_t bit = 0; bit < sizeof(good) * 8; bit++) {
		size_t byte = bit / 8;
		enum frame_status st;

		memcpy(bad, good, sizeof(good));
		bad[byte] ^= (uint8_t)(1u << (bit % 8));
		st = decode_copy(bad, sizeof(bad), &f, NULL);
		assert_int_not_equal(st, FRAME_OK);
		/* A longer length waits for more; anything else is an error. */
		if (byte < 8 || byte >= 12)
			assert_int_not_equal(st, FRAME_NEED_MORE);
		crc_errors += st == FRAME_ERR_CRC;
	}
	/* The epoch, CRC and payload bits are caught by the CRC alone. */
	assert_true(crc_errors >= (8 + 4 + 16) * 8);
}

/* Every prefix of a frame is NEED_MORE, and the payload is never read early. */
static void
test_truncated_every_offset(void **state)
{
	uint8_t good[FRAME_HEADER_SIZE + 40];
	struct frame f;

	(void)state;
	build(good, FRAME_SEQUENCES, "0123456789012345678901234567890123456789");
	for (size_t len = 0; len < sizeof(good); len++)
		assert_int_equal(decode_copy(good, len, &f, NULL), FRAME_NEED_MORE);
	assert_int_equal(decode_copy(good, sizeof(good), &f, NULL), FRAME_OK);
}

static void
test_encoder_refusals(void **state)
{
	uint8_t hdr[FRAME_HEADER_SIZE];
	uint8_t buf[64];
	struct wire_writer w;
	size_t at;

	(void)state;
	memset(hdr, 0xEE, sizeof(hdr));
	assert_false(frame_encode_header(hdr, (enum frame_type)0x0d, 0, 0, NULL, 0));
	assert_false(frame_encode_header(hdr, FRAME_ACK, 0x04, 0, NULL, 0));
	assert_int_equal(hdr[0], 0xEE);        /* untouched */

	wire_writer_init(&w, buf, sizeof(buf));
	assert_false(frame_append(&w, (enum frame_type)0x30, 0, 0, NULL, 0));
	assert_false(wire_writer_ok(&w));

	wire_writer_init(&w, buf, sizeof(buf));
	assert_false(frame_begin(&w, FRAME_ACK, 0x10, 0, &at));

	/* Does not fit the fixed buffer. */
	wire_writer_init(&w, buf, sizeof(buf));
	assert_false(frame_append(&w, FRAME_ACK, 0, 0, buf, 41));
	wire_writer_init(&w, buf, 20);
	assert_false(frame_begin(&w, FRAME_ACK, 0, 0, &at));

	/* frame_end after a failed put. */
	wire_writer_init(&w, buf, 30);
	assert_true(frame_begin(&w, FRAME_ACK, 0, 0, &at));
	assert_false(wire_put_u64(&w, 1));
	assert_false(frame_end(&w, at));
	/* frame_end with a start that is no frame. */
	wire_writer_init(&w, buf, sizeof(buf));
	assert_true(wire_put_u32(&w, 1));
	assert_false(frame_end(&w, 0));
	wire_writer_init(&w, buf, sizeof(buf));
	assert_false(frame_end(&w, 100));
}

static void
test_names(void **state)
{
	(void)state;
	assert_string_equal(frame_type_name(FRAME_HELLO), "HELLO");
	assert_string_equal(frame_type_name(FRAME_PROMOTE), "PROMOTE");
	assert_string_equal(frame_type_name(0x99), "unknown");
	assert_string_equal(frame_status_str(FRAME_ERR_CRC), "CRC mismatch");
	for (int st = FRAME_OK; st <= FRAME_ERR_CRC; st++)
		assert_string_not_equal(frame_status_str((enum frame_status)st),
			"unknown frame status");
	for (unsigned t = 0; t < 256; t++) {
		bool listed = false;

		for (size_t i = 0; i < NTYPES; i++)
			listed |= all_types[i] == t;
		assert_int_equal(frame_type_valid(t), listed);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_header_layout),
		cmocka_unit_test(test_round_trip_all_types),
		cmocka_unit_test(test_stream_of_frames),
		cmocka_unit_test(test_header_errors_early),
		cmocka_unit_test(test_length_cap),
		cmocka_unit_test(test_max_payload_round_trip),
		cmocka_unit_test(test_every_bit_flip),
		cmocka_unit_test(test_truncated_every_offset),
		cmocka_unit_test(test_encoder_refusals),
		cmocka_unit_test(test_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
