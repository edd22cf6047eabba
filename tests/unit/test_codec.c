/*
 * test_codec.c — batch compression: round trips across many batches, the
 * window kept across batches, resets, and hostile input on the decoder.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/stream/codec.h"

/* A pgoutput-like batch: repetitive structure, varying values. */
static size_t make_batch(uint8_t *buf, size_t cap, unsigned seed)
{
	size_t len = 0;

	for (unsigned i = 0; len + 128 < cap && i < 40; i++) {
		len += (size_t)snprintf((char *)buf + len, cap - len,
			"I\x01\x40\x12N\x04t\x05%05u t%u aid=%u bid=%u delta=%d;",
			seed * 40 + i, i % 7, (seed * 7919 + i) % 100000, i % 10, (int)(seed % 5000) - 2500);
	}
	return len;
}

static void roundtrip(enum config_codec kind, size_t *wire_total, size_t *raw_total)
{
	struct codec *enc = codec_new_encoder(kind, 3);
	struct codec *dec = codec_new_decoder(kind);
	uint8_t batch[8192];
	char err[256];

	assert_non_null(enc);
	assert_non_null(dec);
	*wire_total = *raw_total = 0;
	for (unsigned b = 0; b < 500; b++) {
		const uint8_t *wire, *plain;
		size_t wire_len, plain_len, len = make_batch(batch, sizeof(batch), b);
		uint8_t *copy;

		assert_true(codec_run(enc, batch, len, SIZE_MAX, &wire, &wire_len, err, sizeof(err)));
		copy = malloc(wire_len ? wire_len : 1);
		memcpy(copy, wire, wire_len);
		assert_true(codec_run(dec, copy, wire_len, 1 << 20, &plain, &plain_len, err, sizeof(err)));
		assert_int_equal(plain_len, len);
		assert_memory_equal(plain, batch, len);
		free(copy);
		*wire_total += wire_len;
		*raw_total += len;
	}
	assert_int_equal(codec_bytes_in(enc), *raw_total);
	assert_int_equal(codec_bytes_out(dec), *raw_total);
	codec_free(enc);
	codec_free(dec);
}

static void test_zstd_roundtrip_and_window(void **state)
{
	size_t wire, raw, wire_alone = 0;
	uint8_t batch[8192];
	char err[256];

	(void)state;
	roundtrip(CONFIG_CODEC_ZSTD, &wire, &raw);
	assert_true(wire * 3 < raw);

	/* The same batches each compressed by a fresh context do worse. */
	for (unsigned b = 0; b < 500; b++) {
		struct codec *enc = codec_new_encoder(CONFIG_CODEC_ZSTD, 3);
		const uint8_t *out;
		size_t out_len, len = make_batch(batch, sizeof(batch), b);

		assert_true(codec_run(enc, batch, len, SIZE_MAX, &out, &out_len, err, sizeof(err)));
		wire_alone += out_len;
		codec_free(enc);
	}
	assert_true(wire < wire_alone);
}

static void test_none_passes_through(void **state)
{
	size_t wire, raw;
	struct codec *c = codec_new_encoder(CONFIG_CODEC_NONE, 0);

	(void)state;
	assert_false(codec_compresses(c));
	codec_free(c);
	roundtrip(CONFIG_CODEC_NONE, &wire, &raw);
	assert_int_equal(wire, raw);
}

static void test_reset_starts_a_new_window(void **state)
{
	struct codec *enc = codec_new_encoder(CONFIG_CODEC_ZSTD, 3);
	struct codec *dec = codec_new_decoder(CONFIG_CODEC_ZSTD);
	struct codec *fresh = codec_new_decoder(CONFIG_CODEC_ZSTD);
	uint8_t batch[8192], *copy;
	const uint8_t *out;
	size_t out_len, wire_len, len;
	char err[256];

	(void)state;
	for (unsigned b = 0; b < 3; b++) {
		len = make_batch(batch, sizeof(batch), b);
		assert_true(codec_run(enc, batch, len, SIZE_MAX, &out, &out_len, err, sizeof(err)));
		assert_true(codec_run(dec, out, out_len, 1 << 20, &out, &out_len, err, sizeof(err)));
	}
	/* After a reset on both ends, a fresh decoder understands the encoder too. */
	codec_reset(enc);
	codec_reset(dec);
	len = make_batch(batch, sizeof(batch), 9);
	assert_true(codec_run(enc, batch, len, SIZE_MAX, &out, &out_len, err, sizeof(err)));
	wire_len = out_len;
	copy = malloc(wire_len);
	memcpy(copy, out, wire_len);
	assert_true(codec_run(fresh, copy, wire_len, 1 << 20, &out, &out_len, err, sizeof(err)));
	assert_memory_equal(out, batch, len);
	assert_true(codec_run(dec, copy, wire_len, 1 << 20, &out, &out_len, err, sizeof(err)));
	assert_memory_equal(out, batch, len);
	free(copy);
	codec_free(enc);
	codec_free(dec);
	codec_free(fresh);
}

static void test_decoder_refuses_garbage(void **state)
{
	struct codec *dec = codec_new_decoder(CONFIG_CODEC_ZSTD);
	static const uint8_t garbage[] = "this is not a zstd frame at all, no magic here";
	const uint8_t *out;
	size_t out_len;
	char err[256];

	(void)state;
	assert_false(codec_run(dec, garbage, sizeof(garbage), 1 << 20, &out, &out_len, err, sizeof(err)));
	assert_non_null(strstr(err, "could not decompress batch"));
	codec_free(dec);
}

static void test_decoder_caps_inflation(void **state)
{
	struct codec *enc = codec_new_encoder(CONFIG_CODEC_ZSTD, 3);
	struct codec *dec = codec_new_decoder(CONFIG_CODEC_ZSTD);
	uint8_t *zeros = calloc(1, 8 << 20);
	const uint8_t *out;
	size_t out_len;
	char err[256];

	(void)state;
	assert_true(codec_run(enc, zeros, 8 << 20, SIZE_MAX, &out, &out_len, err, sizeof(err)));
	assert_true(out_len < 4096);
	assert_false(codec_run(dec, out, out_len, 1 << 20, &out, &out_len, err, sizeof(err)));
	assert_non_null(strstr(err, "inflates beyond"));
	free(zeros);
	codec_free(enc);
	codec_free(dec);
}

/*
 * A batch of exactly max_out bytes is taken, also when it fills the
 * decoder's buffer to the end (128 KiB, 256 KiB) and when it is empty.
 */
static void test_decoder_takes_exactly_max_out(void **state)
{
	static const size_t sizes[] = { 0, 1, 65536, 131072, 131073, 262144 };
	uint8_t *raw = malloc(262144);

	(void)state;
	assert_non_null(raw);
	for (size_t i = 0; i < 262144; i++)
		raw[i] = (uint8_t)(i * 7 % 251);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		struct codec *enc = codec_new_encoder(CONFIG_CODEC_ZSTD, 3);
		struct codec *dec = codec_new_decoder(CONFIG_CODEC_ZSTD);
		const uint8_t *wire, *out;
		size_t wire_len, out_len;
		uint8_t *copy;
		char err[256];

		assert_true(codec_run(enc, raw, sizes[i], SIZE_MAX, &wire, &wire_len, err, sizeof(err)));
		copy = malloc(wire_len + 1);
		memcpy(copy, wire, wire_len);
		if (sizes[i] > 0) {
			assert_false(codec_run(dec, copy, wire_len, sizes[i] - 1, &out, &out_len, err,
					       sizeof(err)));
			codec_reset(dec);
		}
		assert_true(codec_run(dec, copy, wire_len, sizes[i], &out, &out_len, err, sizeof(err)));
		assert_int_equal(out_len, sizes[i]);
		assert_memory_equal(out, raw, sizes[i]);
		free(copy);
		codec_free(enc);
		codec_free(dec);
	}
	free(raw);
}

static void test_empty_batch(void **state)
{
	struct codec *enc = codec_new_encoder(CONFIG_CODEC_ZSTD, 3);
	struct codec *dec = codec_new_decoder(CONFIG_CODEC_ZSTD);
	const uint8_t *out;
	size_t out_len;
	char err[256];

	(void)state;
	assert_true(codec_run(enc, (const uint8_t *)"", 0, SIZE_MAX, &out, &out_len, err, sizeof(err)));
	assert_true(codec_run(dec, out, out_len, 1 << 20, &out, &out_len, err, sizeof(err)));
	assert_int_equal(out_len, 0);
	codec_free(enc);
	codec_free(dec);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_zstd_roundtrip_and_window),
		cmocka_unit_test(test_none_passes_through),
		cmocka_unit_test(test_reset_starts_a_new_window),
		cmocka_unit_test(test_decoder_refuses_garbage),
		cmocka_unit_test(test_decoder_caps_inflation),
		cmocka_unit_test(test_empty_batch),
		cmocka_unit_test(test_decoder_takes_exactly_max_out),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
