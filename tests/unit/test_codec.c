/*
 * test_codec.c — batch compression: round trips across many batches, the
 * window kept across batches, resets, pgoutput batches packed (and pieces
 * of messages not), a new level taking effect at the next batch, and
 * hostile input on the decoder: garbage, inflation, a window over the
 * limit, an unknown form, a corrupt packed batch.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

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
	struct codec *enc = codec_new_encoder(kind, 3, CODEC_CONTENT_OPAQUE);
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
		struct codec *enc = codec_new_encoder(CONFIG_CODEC_ZSTD, 3, CODEC_CONTENT_OPAQUE);
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
	struct codec *c = codec_new_encoder(CONFIG_CODEC_NONE, 0, CODEC_CONTENT_OPAQUE);

	(void)state;
	assert_false(codec_compresses(c));
	codec_free(c);
	roundtrip(CONFIG_CODEC_NONE, &wire, &raw);
	assert_int_equal(wire, raw);
}

static void test_reset_starts_a_new_window(void **state)
{
	struct codec *enc = codec_new_encoder(CONFIG_CODEC_ZSTD, 3, CODEC_CONTENT_OPAQUE);
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
	struct codec *enc = codec_new_encoder(CONFIG_CODEC_ZSTD, 3, CODEC_CONTENT_OPAQUE);
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
		struct codec *enc = codec_new_encoder(CONFIG_CODEC_ZSTD, 3, CODEC_CONTENT_OPAQUE);
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
	struct codec *enc = codec_new_encoder(CONFIG_CODEC_ZSTD, 3, CODEC_CONTENT_OPAQUE);
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

/* One batch through enc and dec; the wire size. */
static size_t through(struct codec *enc, struct codec *dec, const uint8_t *batch, size_t len)
{
	const uint8_t *wire, *plain;
	size_t wire_len, plain_len;
	uint8_t *copy;
	char err[256];

	assert_true(codec_run(enc, batch, len, SIZE_MAX, &wire, &wire_len, err, sizeof(err)));
	copy = malloc(wire_len);
	memcpy(copy, wire, wire_len);
	if (!codec_run(dec, copy, wire_len, len, &plain, &plain_len, err, sizeof(err)))
		fail_msg("decode: %s", err);
	assert_int_equal(plain_len, len);
	assert_memory_equal(plain, batch, len);
	free(copy);
	return wire_len;
}

static uint8_t *load_sample(const char *name, size_t *len)
{
	const char *dir = getenv("STRAIT_SOURCE_DIR");
	char path[1024];
	uint8_t *data;
	long size;
	FILE *f;

	snprintf(path, sizeof(path), "%s/tests/unit/data/pgoutput/%s", dir ? dir : ".", name);
	f = fopen(path, "rb");
	if (!f)
		fail_msg("could not open \"%s\"", path);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	size = ftell(f);
	rewind(f);
	data = malloc((size_t)size);
	assert_non_null(data);
	assert_int_equal(fread(data, 1, (size_t)size, f), (size_t)size);
	fclose(f);
	*len = (size_t)size;
	return data;
}

/*
 * pgoutput batches are packed, pieces of messages (a batch cut at any byte)
 * travel as they are, and the decoder follows both across batches.
 */
static void test_pgoutput_packed_and_pieces(void **state)
{
	static const char *const names[] = { "basic.bin", "stream.bin", "types.bin", "toast.bin" };
	struct codec *enc = codec_new_encoder(CONFIG_CODEC_ZSTD, 3, CODEC_CONTENT_PGOUTPUT);
	struct codec *opaque = codec_new_encoder(CONFIG_CODEC_ZSTD, 3, CODEC_CONTENT_OPAQUE);
	struct codec *dec = codec_new_decoder(CONFIG_CODEC_ZSTD);
	struct codec *dec2 = codec_new_decoder(CONFIG_CODEC_ZSTD);
	size_t batches = 0;

	(void)state;
	assert_true(codec_packs(enc));
	assert_false(codec_packs(opaque));
	assert_false(codec_packs(dec));
	for (unsigned round = 0; round < 3; round++) {
		for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
			size_t len, cut;
			uint8_t *b = load_sample(names[i], &len);

			through(enc, dec, b, len);
			through(opaque, dec2, b, len);
			/* the same messages in two pieces, cut inside one: not packable */
			cut = len / 2 + round;
			through(enc, dec, b, cut);
			through(enc, dec, b + cut, len - cut);
			batches += 3;
			free(b);
		}
		/* a new link: both ends start over */
		codec_reset(enc);
		codec_reset(dec);
	}
	/* what zstd took: the batches' form bytes, whole batches packed, pieces as they are */
	assert_true(codec_bytes_packed(enc) < codec_bytes_in(enc));
	assert_int_equal(codec_bytes_packed(opaque), codec_bytes_in(opaque) + batches / 3);
	codec_free(enc);
	codec_free(opaque);
	codec_free(dec);
	codec_free(dec2);
}

/* A level set between batches is the level of the next batch (a new frame), up and down. */
static void test_level_change_takes_effect(void **state)
{
	struct codec *stays = codec_new_encoder(CONFIG_CODEC_ZSTD, 1, CODEC_CONTENT_OPAQUE);
	struct codec *moves = codec_new_encoder(CONFIG_CODEC_ZSTD, 1, CODEC_CONTENT_OPAQUE);
	struct codec *dec = codec_new_decoder(CONFIG_CODEC_ZSTD);
	struct codec *dec2 = codec_new_decoder(CONFIG_CODEC_ZSTD);
	static const int levels[] = { 19, 3, 12, 1, 19 };
	size_t at_1 = 0, raised = 0;
	uint8_t batch[8192];

	(void)state;
	for (unsigned b = 0; b < 100; b++) {
		size_t len = make_batch(batch, sizeof(batch), b);

		through(stays, dec, batch, len);
		through(moves, dec2, batch, len);
	}
	assert_true(codec_set_level(moves, 19));
	assert_int_equal(codec_level(moves), 19);
	for (unsigned b = 100; b < 400; b++) {
		size_t len = make_batch(batch, sizeof(batch), b);

		at_1 += through(stays, dec, batch, len);
		raised += through(moves, dec2, batch, len);
	}
	assert_true(raised * 10 < at_1 * 9);
	/* changes back and forth, each at a batch boundary: the decoder follows every one */
	for (unsigned b = 400; b < 500; b++) {
		size_t len = make_batch(batch, sizeof(batch), b);

		if (b % 20 == 0)
			assert_true(codec_set_level(moves, levels[(b - 400) / 20]));
		through(moves, dec2, batch, len);
	}
	assert_false(codec_set_level(dec, 9));
	assert_false(codec_set_level(moves, 0));
	assert_false(codec_set_level(moves, 23));
	codec_free(stays);
	codec_free(moves);
	codec_free(dec);
	codec_free(dec2);
}

/* zstd output made here by hand: a frame with the window given, holding form and data. */
static size_t hand_made(int window_log, uint8_t form, const void *data, size_t len, uint8_t *out,
		size_t cap)
{
	ZSTD_CCtx *cctx = ZSTD_createCCtx();
	ZSTD_outBuffer o = { out, cap, 0 };
	ZSTD_inBuffer f = { &form, 1, 0 }, d = { data, len, 0 };

	assert_false(ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_windowLog, window_log)));
	assert_false(ZSTD_isError(ZSTD_compressStream2(cctx, &o, &f, ZSTD_e_continue)));
	assert_int_equal(ZSTD_compressStream2(cctx, &o, &d, ZSTD_e_flush), 0);
	ZSTD_freeCCtx(cctx);
	return o.pos;
}

static void test_decoder_refuses_a_larger_window(void **state)
{
	static uint8_t wire[4096];
	const uint8_t *out;
	size_t wire_len, out_len;
	char err[256];
	struct codec *dec = codec_new_decoder(CONFIG_CODEC_ZSTD);

	(void)state;
	wire_len = hand_made(CODEC_WINDOW_LOG, CODEC_BATCH_AS_IS, "abc", 3, wire, sizeof(wire));
	assert_true(codec_run(dec, wire, wire_len, 1 << 20, &out, &out_len, err, sizeof(err)));
	assert_int_equal(out_len, 3);
	codec_reset(dec);
	/* 8 MiB of window: the decoder would have to hold it */
	wire_len = hand_made(CODEC_WINDOW_LOG + 3, CODEC_BATCH_AS_IS, "abc", 3, wire, sizeof(wire));
	assert_false(codec_run(dec, wire, wire_len, 1 << 20, &out, &out_len, err, sizeof(err)));
	assert_non_null(strstr(err, "could not decompress batch"));
	codec_free(dec);
}

static void test_decoder_refuses_unknown_forms_and_bad_packing(void **state)
{
	static uint8_t wire[4096];
	const uint8_t *out;
	size_t wire_len, out_len;
	char err[256];
	struct codec *dec = codec_new_decoder(CONFIG_CODEC_ZSTD);

	(void)state;
	wire_len = hand_made(CODEC_WINDOW_LOG, 7, "abc", 3, wire, sizeof(wire));
	assert_false(codec_run(dec, wire, wire_len, 1 << 20, &out, &out_len, err, sizeof(err)));
	assert_non_null(strstr(err, "unknown form (7)"));
	codec_reset(dec);
	wire_len = hand_made(CODEC_WINDOW_LOG, CODEC_BATCH_PACKED, "\0X", 2, wire, sizeof(wire));
	assert_false(codec_run(dec, wire, wire_len, 1 << 20, &out, &out_len, err, sizeof(err)));
	assert_non_null(strstr(err, "packed batch has an unknown packed message"));
	codec_reset(dec);
	/* nothing at all, not even the form byte */
	{
		ZSTD_CCtx *cctx = ZSTD_createCCtx();
		ZSTD_outBuffer o = { wire, sizeof(wire), 0 };
		ZSTD_inBuffer none = { "", 0, 0 };

		assert_int_equal(ZSTD_compressStream2(cctx, &o, &none, ZSTD_e_flush), 0);
		wire_len = o.pos;
		ZSTD_freeCCtx(cctx);
	}
	assert_false(codec_run(dec, wire, wire_len, 1 << 20, &out, &out_len, err, sizeof(err)));
	assert_non_null(strstr(err, "no form byte"));
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
		cmocka_unit_test(test_pgoutput_packed_and_pieces),
		cmocka_unit_test(test_level_change_takes_effect),
		cmocka_unit_test(test_decoder_refuses_a_larger_window),
		cmocka_unit_test(test_decoder_refuses_unknown_forms_and_bad_packing),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
