/*
 * fuzz_msgjoin.c — libFuzzer target for the sink's joining of messages that
 * continuation batches carry in pieces (gateway/stream/msgjoin.c).
 *
 * The input's first byte chooses the piece size (1..128) and whether each
 * piece's "continues" flag is the honest one (the piece ends inside a
 * message of the stream, as a source sends it) or taken from the input's
 * bytes (a peer that lies). The rest is the stream of u32-length-prefixed
 * messages, cut into pieces. Beyond "no crash", it checks: what comes out
 * is always a prefix of the stream made of whole messages; with honest
 * flags every piece is taken (unless a message is over the limit) and what
 * is held at the end is exactly the unfinished tail; a refused piece changes
 * nothing; and a reset leaves nothing held.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/stream/msgjoin.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)
#define MAX_MESSAGE 4096

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Whether the stream s[0..len) has a message boundary at off (walking from the start). */
static int boundary_at(const uint8_t *s, size_t len, size_t off)
{
	size_t at = 0;

	while (at < off && len - at >= 4) {
		uint32_t n = be32(s + at);

		if (n > len - at - 4)
			return 0;
		at += 4 + (size_t)n;
	}
	return at == off;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct msgjoin j;
	const uint8_t *s;
	uint8_t *got;
	size_t len, step, got_len = 0, fed = 0;
	int honest;

	if (size < 1)
		return 0;
	step = (size_t)(data[0] & 0x7f) + 1;
	honest = !(data[0] & 0x80);
	s = data + 1;
	len = size - 1;
	got = malloc(len + 1);
	CHECK(got);
	msgjoin_init(&j, MAX_MESSAGE);
	for (size_t off = 0; off < len; off += step) {
		size_t n = len - off < step ? len - off : step, out_len;
		int cont = honest ? !boundary_at(s, len, off + n) : (s[off] & 1);
		size_t held = msgjoin_pending(&j);
		const uint8_t *out;
		char why[256];
		enum msgjoin_status st = msgjoin_take(&j, s + off, n, cont, &out, &out_len, why, sizeof(why));

		if (st != MSGJOIN_OK) {
			CHECK(msgjoin_pending(&j) == held);   /* a refusal changes nothing */
			CHECK(why[0] != '\0');
			CHECK(!honest || st == MSGJOIN_TOO_BIG);
			break;
		}
		CHECK(out_len <= fed + n - got_len);
		memcpy(got + got_len, out, out_len);
		got_len += out_len;
		msgjoin_done(&j);
		fed = off + n;
		CHECK(memcmp(got, s, got_len) == 0);
		CHECK(boundary_at(s, len, got_len));
		CHECK(got_len + msgjoin_pending(&j) == fed);
	}
	msgjoin_reset(&j);
	CHECK(msgjoin_pending(&j) == 0);
	msgjoin_free(&j);
	free(got);
	return 0;
}
