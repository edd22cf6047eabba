/*
 * fuzz_codec.c — libFuzzer target for a stream's batch codec: the packing of
 * pgoutput messages (gateway/stream/batchpack.c) and the zstd decoder that
 * reads what a peer sent (gateway/stream/codec.c).
 *
 * The input's first byte chooses what the rest is:
 *   0  batches of u32-length-prefixed messages, as a source sends them (the
 *      second byte says how many messages a batch holds, 1..16): each goes
 *      through a packer and an unpacker, and through a pgoutput encoder and
 *      a decoder, keeping their state across batches. It must come back the
 *      same, packed never longer than it was. A batch that is not a sequence
 *      of whole messages goes as it is.
 *   1  a packed batch from a peer, unpacked twice (a fresh state, then the
 *      state the first left): refused with a message or at most the limit.
 *   2  what a peer sent as compressed batches (a byte of length before
 *      each): the decoder refuses with a message or stays within the limit.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/stream/batchpack.h"
#include "gateway/stream/codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)
#define LIMIT (1u << 20)

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The end of the batch that starts at off: per whole messages, or the rest (a piece). */
static size_t batch_end(const uint8_t *s, size_t len, size_t off, unsigned per)
{
	for (unsigned i = 0; i < per && off < len; i++) {
		uint32_t n;

		if (len - off < 4 || (n = be32(s + off)) > len - off - 4)
			return len;
		off += 4 + (size_t)n;
	}
	return off;
}

static void through_codec(struct codec *enc, struct codec *dec, const uint8_t *b, size_t len)
{
	const uint8_t *wire, *out;
	size_t wire_len, out_len;
	uint8_t *copy;
	char err[256];

	CHECK(codec_run(enc, b, len, SIZE_MAX, &wire, &wire_len, err, sizeof(err)));
	copy = malloc(wire_len ? wire_len : 1);
	CHECK(copy);
	memcpy(copy, wire, wire_len);
	CHECK(codec_run(dec, copy, wire_len, len, &out, &out_len, err, sizeof(err)));
	CHECK(out_len == len && memcmp(out, b, len) == 0);
	free(copy);
}

static void roundtrips(const uint8_t *s, size_t len)
{
	struct batchpack *packer = batchpack_new(), *unpacker = batchpack_new();
	struct codec *enc = codec_new_encoder(CONFIG_CODEC_ZSTD, 1, CODEC_CONTENT_PGOUTPUT);
	struct codec *dec = codec_new_decoder(CONFIG_CODEC_ZSTD);
	unsigned per = len ? (unsigned)(s[0] & 15) + 1 : 1;
	size_t off = len ? 1 : 0;

	CHECK(packer && unpacker && enc && dec);
	while (off < len) {
		size_t end = batch_end(s, len, off, per), packed_len, out_len;
		const uint8_t *packed, *out;
		char err[256];

		if (batchpack_packable(s + off, end - off)) {
			CHECK(batchpack_pack(packer, s + off, end - off, &packed, &packed_len));
			CHECK(packed_len <= end - off);
			CHECK(batchpack_unpack(unpacker, packed, packed_len, end - off, &out, &out_len, err,
					       sizeof(err)));
			CHECK(out_len == end - off && memcmp(out, s + off, out_len) == 0);
		}
		through_codec(enc, dec, s + off, end - off);
		off = end;
	}
	batchpack_free(packer);
	batchpack_free(unpacker);
	codec_free(enc);
	codec_free(dec);
}

static void hostile_packed(const uint8_t *s, size_t len)
{
	struct batchpack *bp = batchpack_new();

	CHECK(bp);
	for (int i = 0; i < 2; i++) {
		const uint8_t *out;
		size_t out_len;
		char err[256] = "";

		if (batchpack_unpack(bp, s, len, LIMIT, &out, &out_len, err, sizeof(err)))
			CHECK(out_len <= LIMIT);
		else
			CHECK(err[0] != '\0');
	}
	batchpack_free(bp);
}

static void hostile_compressed(const uint8_t *s, size_t len)
{
	struct codec *dec = codec_new_decoder(CONFIG_CODEC_ZSTD);
	size_t off = 0;

	CHECK(dec);
	while (off < len) {
		size_t n = s[off++], out_len;
		const uint8_t *out;
		char err[256] = "";

		if (n > len - off)
			n = len - off;
		if (codec_run(dec, s + off, n, LIMIT, &out, &out_len, err, sizeof(err)))
			CHECK(out_len <= LIMIT);
		else
			CHECK(err[0] != '\0');
		off += n;
	}
	codec_free(dec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	switch (data[0] % 3) {
	case 0:
		roundtrips(data + 1, size - 1);
		break;
	case 1:
		hostile_packed(data + 1, size - 1);
		break;
	default:
		hostile_compressed(data + 1, size - 1);
		break;
	}
	return 0;
}
