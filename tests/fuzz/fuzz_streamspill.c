/*
 * fuzz_streamspill.c — libFuzzer target for the sink's streamed
 * transactions (gateway/stream/streamspill.c): Stream Start/Stop/Commit/
 * Abort, changes with xids, strait's void mark, in any order a peer could
 * send them.
 *
 * The input is a series of bodies, each a u16 big-endian length and that
 * many bytes (the last one takes what is left). A body's first byte sets
 * the environment for it: bit 0 whether the apply has room, bits 1-2 what
 * it has received already (nothing, or a high position). Beyond "no crash":
 * whatever reaches the apply is a sequence of whole messages none of which
 * is a stream message or the void mark (nothing streamed leaks through); a
 * refused or broken body is followed by a reset, which leaves nothing open,
 * nothing on disk and nothing parked; counters never go backwards.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gateway/stream/streamspill.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

struct env_state {
	bool room;
	uint64_t received;
};

static bool fz_deliver(void *arg, const uint8_t *body, size_t len)
{
	(void)arg;
	for (size_t off = 0; off < len;) {
		uint32_t n;

		CHECK(len - off >= 5);
		n = (uint32_t)body[off] << 24 | (uint32_t)body[off + 1] << 16 |
		    (uint32_t)body[off + 2] << 8 | body[off + 3];
		CHECK(n >= 1 && n <= len - off - 4);
		CHECK(body[off + 4] != 'S' && body[off + 4] != 'E' && body[off + 4] != 'c' &&
		      body[off + 4] != 'A' && body[off + 4] != STREAMSPILL_MSG_VOID);
		off += 4 + (size_t)n;
	}
	return true;
}

static bool fz_room(void *arg)
{
	return ((struct env_state *)arg)->room;
}

static uint64_t fz_received(void *arg)
{
	return ((struct env_state *)arg)->received;
}

static struct streamspill *ss;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct env_state es = { true, 0 };
	struct streamspill_env env = { fz_deliver, fz_room, fz_received, &es };
	uint64_t consumed = 0, replayed = 0;
	char why[256];

	if (!ss) {
		char dir[64], err[256];

		snprintf(dir, sizeof(dir), "/tmp/fuzz-streamspill-%d/s", (int)getpid());
		ss = streamspill_new(dir, err, sizeof(err));
		CHECK(ss != NULL);
	}
	while (size > 0) {
		size_t len = size >= 2 ? (size_t)data[0] << 8 | data[1] : size;
		const uint8_t *body;
		enum streamspill_result r;

		if (size >= 2) {
			data += 2;
			size -= 2;
		}
		if (len > size)
			len = size;
		body = data;
		data += len;
		size -= len;
		if (len == 0)
			continue;
		es.room = body[0] & 1;
		es.received = (body[0] & 6) ? UINT64_C(0x100000000) : 0;
		r = streamspill_take(ss, body + 1, len - 1, &env, why, sizeof(why));
		CHECK(streamspill_consumed_bytes(ss) >= consumed);
		CHECK(streamspill_replayed_bytes(ss) >= replayed);
		consumed = streamspill_consumed_bytes(ss);
		replayed = streamspill_replayed_bytes(ss);
		if (r == STREAMSPILL_WAITING) {
			es.room = true;
			r = streamspill_run(ss, &env, why, sizeof(why));
			CHECK(r != STREAMSPILL_WAITING);
		}
		if (r != STREAMSPILL_DONE) {
			streamspill_reset(ss);
			CHECK(!streamspill_busy(ss));
			CHECK(streamspill_open_count(ss) == 0 && streamspill_spilled_bytes(ss) == 0);
		}
	}
	streamspill_reset(ss);
	CHECK(streamspill_open_count(ss) == 0 && streamspill_spilled_bytes(ss) == 0);
	return 0;
}
