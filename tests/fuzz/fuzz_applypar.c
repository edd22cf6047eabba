/*
 * fuzz_applypar.c — libFuzzer target for what parallel apply makes of the
 * batches a peer sends (replicator/applypar.c): its own reading of the
 * records into transactions, their keys and the relation definitions each
 * needs, before any session runs.
 *
 * The engine is made with three workers whose connections never start (the
 * event loop does not run), so nothing is dealt: every batch is taken in
 * and parsed. The input's first byte chooses the batch size (1..64 records)
 * and whether the unfinished tail is dropped between batches (as a link
 * lost mid-transaction does); the rest is the u32-length-prefixed records.
 * Beyond "no crash and no leak", it checks that the pending bytes never
 * exceed what was submitted and that the received position never goes
 * backwards.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "common/log.h"
#include "replicator/apply.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct event_base *base;
	struct apply_config cfg = {
		.conninfo = "host=/nonexistent dbname=none",
		.stream = "fuzz",
		.workers = 3,
	};
	struct apply *a;
	size_t off = 1, per, start, submitted = 0;
	uint64_t received = 0;
	int drop;

	if (size < 1)
		return 0;
	if (!base) {
		log_set_level(LOG_LEVEL_FATAL);
		base = event_base_new();
		if (!base)
			abort();
	}
	per = (size_t)(data[0] & 0x3f) + 1;
	drop = data[0] & 0x40;
	a = apply_new(base, &cfg, NULL, NULL);
	CHECK(a != NULL);
	while (off < size) {
		size_t n = 0;

		start = off;
		while (off < size && n < per) {
			uint32_t len;

			if (size - off < 4) {
				off = size;
				break;
			}
			len = be32(data + off);
			off = len > size - off - 4 ? size : off + 4 + len;
			n++;
		}
		if (apply_submit(a, data + start, off - start))
			submitted += off - start;
		CHECK(apply_pending_bytes(a) <= submitted);
		CHECK(apply_received_lsn(a) >= received);
		received = apply_received_lsn(a);
		if (drop)
			(void)apply_drop_partial(a);
	}
	apply_free(a);
	return 0;
}
