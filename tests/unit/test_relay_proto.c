/*
 * test_relay_proto.c — relay payloads: round trips of every message inside a
 * real frame, the exact bytes of one, truncation at every offset, trailing
 * bytes, and each field check (empty or NUL-holding names, roles, LSN order,
 * list sizes) on both the writing and the reading side.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "gateway/relay/frame.h"
#include "gateway/relay/relay_proto.h"

#define S(x) relay_proto_str(x)

static bool
str_is(struct wire_str s, const char *c)
{
	return wire_str_eq(s, c);
}

/* Wraps a payload in a frame and decodes it back; returns the payload. */
static const uint8_t *
through_frame(struct wire_writer *w, enum frame_type t, size_t at, size_t *len)
{
	struct frame f;

	assert_true(frame_end(w, at));
	assert_int_equal(frame_decode(w->data, w->len, &f), FRAME_OK);
	assert_int_equal(f.type, t);
	*len = f.payload_len;
	return f.payload;
}

static void
test_hello(void **state)
{
	struct wire_writer w;
	struct relay_proto_position res[3] = {
		{ S("orders"), UINT64_C(0x16B3748), UINT64_C(0x16B3000), 4096 },
		{ S("inventory"), 0, 0, 0 },
		{ S("s"), UINT64_MAX, UINT64_MAX, UINT64_MAX },
	};
	struct relay_proto_hello h = {
		RELAY_PROTO_VERSION, S("prod"), S("onprem"), res, 3,
	};
	struct relay_proto_hello out;
	struct relay_proto_position got[3];
	const uint8_t *p;
	size_t len, at;

	(void)state;
	wire_writer_init_heap(&w, 1 << 16);
	assert_true(frame_begin(&w, FRAME_HELLO, 0, 3, &at));
	assert_true(relay_proto_write_hello(&w, &h));
	p = through_frame(&w, FRAME_HELLO, at, &len);
	assert_int_equal(relay_proto_read_hello(p, len, &out, got, 3), RELAY_PROTO_OK);
	assert_int_equal(out.version, RELAY_PROTO_VERSION);
	assert_true(str_is(out.cluster, "prod"));
	assert_true(str_is(out.site, "onprem"));
	assert_int_equal(out.nstreams, 3);
	assert_ptr_equal(out.streams, got);
	assert_true(str_is(got[0].stream, "orders"));
	assert_true(got[0].received_lsn == UINT64_C(0x16B3748));
	assert_true(got[0].committed_lsn == UINT64_C(0x16B3000));
	assert_true(got[0].queued_bytes == 4096);
	assert_true(str_is(got[1].stream, "inventory"));
	assert_true(got[2].received_lsn == UINT64_MAX && got[2].committed_lsn == UINT64_MAX);

	/* A caller array too small. */
	assert_int_equal(relay_proto_read_hello(p, len, &out, got, 2),
		RELAY_PROTO_ERR_TOO_MANY);
	/* Every prefix is truncated; one byte more is trailing. */
	for (size_t cut = 0; cut < len; cut++) {
		uint8_t *copy = malloc(cut + 1);

		memcpy(copy, p, cut);
		assert_int_equal(relay_proto_read_hello(copy, cut, &out, got, 3),
			RELAY_PROTO_ERR_TRUNCATED);
		free(copy);
	}
	{
		uint8_t *copy = malloc(len + 1);

		memcpy(copy, p, len);
		copy[len] = 0;
		assert_int_equal(relay_proto_read_hello(copy, len + 1, &out, got, 3),
			RELAY_PROTO_ERR_TRAILING);
		free(copy);
	}

	/* No streams. */
	h.nstreams = 0;
	h.streams = NULL;
	wire_writer_reset(&w);
	assert_true(relay_proto_write_hello(&w, &h));
	assert_int_equal(relay_proto_read_hello(w.data, w.len, &out, NULL, 0),
		RELAY_PROTO_OK);
	assert_int_equal(out.nstreams, 0);

	/* Committed past received: refused by the writer and the reader. */
	h.streams = res;
	h.nstreams = 1;
	res[0].committed_lsn = res[0].received_lsn + 1;
	wire_writer_reset(&w);
	assert_false(relay_proto_write_hello(&w, &h));
	res[0].committed_lsn = UINT64_C(0x16B3000);
	wire_writer_reset(&w);
	assert_true(relay_proto_write_hello(&w, &h));
	/* the entry's committed field: 8 bytes from the end */
	w.data[w.len - 16 + 7] = 0xFF;
	w.data[w.len - 16 + 6] = 0xFF;
	assert_int_equal(relay_proto_read_hello(w.data, w.len, &out, got, 3), RELAY_PROTO_ERR_VALUE);
	h.nstreams = 0;
	h.streams = NULL;

	/* Writers refuse empty names and missing arrays. */
	h.site = S("");
	wire_writer_reset(&w);
	assert_false(relay_proto_write_hello(&w, &h));
	h.site = S("x");
	h.nstreams = 1;
	wire_writer_reset(&w);
	assert_false(relay_proto_write_hello(&w, &h));
	wire_writer_free(&w);
}

static void
test_hello_hostile(void **state)
{
	struct relay_proto_hello out;
	struct relay_proto_position got[4];
	/* version 1, cluster "c", site "s", 65535 streams but no bytes for them. */
	static const uint8_t huge[] = { 0, 1, 0, 1, 'c', 0, 1, 's', 0xFF, 0xFF };
	/* cluster with a NUL inside */
	static const uint8_t nul[] = { 0, 1, 0, 2, 'c', 0, 0, 1, 's', 0, 0 };
	/* empty site */
	static const uint8_t empty[] = { 0, 1, 0, 1, 'c', 0, 0, 0, 0 };
	/* an empty stream name */
	static const uint8_t empty_stream[] = {
		0, 1, 0, 1, 'c', 0, 1, 's', 0, 1,
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	};

	(void)state;
	assert_int_equal(relay_proto_read_hello(huge, sizeof(huge), &out, got, 4),
		RELAY_PROTO_ERR_TRUNCATED);
	assert_int_equal(relay_proto_read_hello(nul, sizeof(nul), &out, got, 4),
		RELAY_PROTO_ERR_STRING);
	assert_int_equal(relay_proto_read_hello(empty, sizeof(empty), &out, got, 4),
		RELAY_PROTO_ERR_STRING);
	assert_int_equal(relay_proto_read_hello(empty_stream, sizeof(empty_stream),
		&out, got, 4), RELAY_PROTO_ERR_STRING);
	assert_int_equal(relay_proto_read_hello(NULL, 0, &out, got, 4),
		RELAY_PROTO_ERR_TRUNCATED);
}

static void
test_ack_bytes(void **state)
{
	uint8_t buf[64];
	struct wire_writer w;
	struct relay_proto_ack a = { S("db"), UINT64_C(0x0000000100000010), -1, 3,
				     UINT64_C(0x0000000200000020) };
	struct relay_proto_ack out;
	static const uint8_t want[] = {
		0x00, 0x02, 'd', 'b',
		0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x10,
		0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
		0x00, 0x00, 0x00, 0x03,
		0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x20,
	};

	(void)state;
	wire_writer_init(&w, buf, sizeof(buf));
	assert_true(relay_proto_write_ack(&w, &a));
	assert_int_equal(w.len, sizeof(want));
	assert_memory_equal(buf, want, sizeof(want));
	assert_int_equal(relay_proto_read_ack(buf, w.len, &out), RELAY_PROTO_OK);
	assert_true(str_is(out.stream, "db"));
	assert_true(out.committed_lsn == a.committed_lsn);
	assert_true(out.commit_time_us == -1);
	assert_int_equal(out.generation, 3);
	assert_true(out.released_bytes == a.released_bytes);
	for (size_t cut = 0; cut < w.len; cut++)
		assert_int_equal(relay_proto_read_ack(buf, cut, &out),
			RELAY_PROTO_ERR_TRUNCATED);
	buf[w.len] = 7;
	assert_int_equal(relay_proto_read_ack(buf, w.len + 1, &out),
		RELAY_PROTO_ERR_TRAILING);

	/* Too small a fixed buffer. */
	wire_writer_init(&w, buf, 10);
	assert_false(relay_proto_write_ack(&w, &a));
}

static void
test_heartbeat(void **state)
{
	uint8_t buf[64];
	struct wire_writer w;
	struct relay_proto_heartbeat out;

	(void)state;
	for (unsigned role = RELAY_ROLE_UNKNOWN; role <= RELAY_ROLE_FENCED; role++) {
		struct relay_proto_heartbeat hb = {
			UINT64_C(0xABCDEF0123), INT64_C(1700000000123456), (uint8_t)role,
			RELAY_HEALTH_PG_UP | RELAY_HEALTH_SPOOL_FULL | 0x80000000u,
		};

		wire_writer_init(&w, buf, sizeof(buf));
		assert_true(relay_proto_write_heartbeat(&w, &hb));
		assert_int_equal(w.len, 8 + 8 + 1 + 4);
		assert_int_equal(relay_proto_read_heartbeat(buf, w.len, &out),
			RELAY_PROTO_OK);
		assert_true(out.wal_lsn == hb.wal_lsn);
		assert_true(out.time_us == hb.time_us);
		assert_int_equal(out.role, role);
		/* Unknown health bits are kept. */
		assert_int_equal(out.health, hb.health);
		assert_string_not_equal(relay_proto_role_name(role), "invalid");
		for (size_t cut = 0; cut < w.len; cut++)
			assert_int_equal(relay_proto_read_heartbeat(buf, cut, &out),
				RELAY_PROTO_ERR_TRUNCATED);
	}
	assert_string_equal(relay_proto_role_name(RELAY_ROLE_FENCED), "fenced");
	/* Role 4 does not exist. */
	buf[16] = 4;
	assert_int_equal(relay_proto_read_heartbeat(buf, 21, &out),
		RELAY_PROTO_ERR_VALUE);
	{
		struct relay_proto_heartbeat hb = { 0, 0, 4, 0 };

		wire_writer_init(&w, buf, sizeof(buf));
		assert_false(relay_proto_write_heartbeat(&w, &hb));
	}
}

static void
test_resume(void **state)
{
	struct relay_proto_resume_req m = {
		{ S("orders"), 0x1234567890ull, 0x1234500000ull, 1u << 20 }, 42,
	}, out;
	struct wire_writer w;

	(void)state;
	wire_writer_init_heap(&w, 1 << 16);
	assert_true(relay_proto_write_resume(&w, &m));
	assert_int_equal(relay_proto_read_resume(w.data, w.len, &out), RELAY_PROTO_OK);
	assert_true(str_is(out.pos.stream, "orders"));
	assert_true(out.pos.received_lsn == 0x1234567890ull);
	assert_true(out.pos.committed_lsn == 0x1234500000ull);
	assert_true(out.pos.queued_bytes == 1u << 20);
	assert_int_equal(out.generation, 42);
	/* received 0 (the sink has nothing, or asks for an initial sync) takes any committed */
	m.pos.received_lsn = 0;
	wire_writer_reset(&w);
	assert_true(relay_proto_write_resume(&w, &m));
	assert_int_equal(relay_proto_read_resume(w.data, w.len, &out), RELAY_PROTO_OK);
	/* otherwise committed never passes received */
	m.pos.received_lsn = m.pos.committed_lsn - 1;
	wire_writer_reset(&w);
	assert_false(relay_proto_write_resume(&w, &m));
	m.pos.received_lsn = 0x1234567890ull;
	wire_writer_reset(&w);
	assert_true(relay_proto_write_resume(&w, &m));
	for (size_t cut = 0; cut < w.len; cut++)
		assert_int_not_equal(relay_proto_read_resume(w.data, cut, &out), RELAY_PROTO_OK);
	assert_true(wire_put_u8(&w, 0));
	assert_int_equal(relay_proto_read_resume(w.data, w.len, &out), RELAY_PROTO_ERR_TRAILING);
	wire_writer_free(&w);
}

static void
test_catchup(void **state)
{
	struct relay_proto_catchup m = { S("orders"), S("aws"), 0x1234567890ull, 7,
					 RELAY_CATCHUP_FOLLOW }, out;
	struct relay_proto_catchup_reply rm = {
		S("orders"), 7, 1, 0x3000, 0x1000, 0x3100, S(""),
	}, rout;
	struct wire_writer w;

	(void)state;
	wire_writer_init_heap(&w, 1 << 16);
	assert_true(relay_proto_write_catchup(&w, &m));
	assert_int_equal(relay_proto_read_catchup(w.data, w.len, &out), RELAY_PROTO_OK);
	assert_true(str_is(out.stream, "orders"));
	assert_true(str_is(out.source, "aws"));
	assert_true(out.after_lsn == 0x1234567890ull);
	assert_int_equal(out.generation, 7);
	assert_int_equal(out.flags, RELAY_CATCHUP_FOLLOW);
	for (size_t cut = 0; cut < w.len; cut++)
		assert_int_not_equal(relay_proto_read_catchup(w.data, cut, &out), RELAY_PROTO_OK);
	/* an unknown flag is refused both ways */
	w.data[w.len - 1] = 0x04;
	assert_int_equal(relay_proto_read_catchup(w.data, w.len, &out), RELAY_PROTO_ERR_VALUE);
	w.data[w.len - 1] = RELAY_CATCHUP_PROBE;
	assert_int_equal(relay_proto_read_catchup(w.data, w.len, &out), RELAY_PROTO_OK);
	m.flags = 0x80;
	wire_writer_reset(&w);
	assert_false(relay_proto_write_catchup(&w, &m));
	m.flags = 0;
	wire_writer_reset(&w);
	assert_true(relay_proto_write_catchup(&w, &m));
	assert_true(wire_put_u8(&w, 0));
	assert_int_equal(relay_proto_read_catchup(w.data, w.len, &out), RELAY_PROTO_ERR_TRAILING);
	/* a source is a site's name: never empty */
	m.source = S("");
	wire_writer_reset(&w);
	assert_false(relay_proto_write_catchup(&w, &m));

	wire_writer_reset(&w);
	assert_true(relay_proto_write_catchup_reply(&w, &rm));
	assert_int_equal(relay_proto_read_catchup_reply(w.data, w.len, &rout), RELAY_PROTO_OK);
	assert_true(str_is(rout.stream, "orders"));
	assert_int_equal(rout.generation, 7);
	assert_int_equal(rout.ok, 1);
	assert_true(rout.applied_lsn == 0x3000 && rout.floor_lsn == 0x1000 && rout.end_lsn == 0x3100);
	assert_int_equal(rout.message.len, 0);
	for (size_t cut = 0; cut < w.len; cut++)
		assert_int_not_equal(relay_proto_read_catchup_reply(w.data, cut, &rout), RELAY_PROTO_OK);
	/* ok is 0 or 1 */
	rm.ok = 2;
	wire_writer_reset(&w);
	assert_false(relay_proto_write_catchup_reply(&w, &rm));
	rm.ok = 0;
	rm.message = S("no retained batches of site aws");
	wire_writer_reset(&w);
	assert_true(relay_proto_write_catchup_reply(&w, &rm));
	w.data[2 + 6 + 4] = 2;       /* after the stream (u16 length, "orders") and the generation */
	assert_int_equal(relay_proto_read_catchup_reply(w.data, w.len, &rout), RELAY_PROTO_ERR_VALUE);
	w.data[2 + 6 + 4] = 0;
	assert_int_equal(relay_proto_read_catchup_reply(w.data, w.len, &rout), RELAY_PROTO_OK);
	assert_true(str_is(rout.message, "no retained batches of site aws"));
	wire_writer_free(&w);
}

static void
test_batch(void **state)
{
	struct wire_writer w;
	struct relay_proto_batch b = {
		S("orders"), 100, 200, 90, 7, 3, RELAY_BATCH_CONTINUES, 5,
		(const uint8_t *)"\x01\x02\x03", 3,
	};
	struct relay_proto_batch out;
	const uint8_t *p;
	size_t len, at, head;
	uint8_t *room;

	(void)state;
	wire_writer_init_heap(&w, 1 << 16);
	assert_true(frame_begin(&w, FRAME_BATCH, FRAME_FLAG_COMPRESSED, 1, &at));
	assert_true(relay_proto_write_batch(&w, &b));
	p = through_frame(&w, FRAME_BATCH, at, &len);
	assert_int_equal(relay_proto_read_batch(p, len, &out), RELAY_PROTO_OK);
	assert_true(str_is(out.stream, "orders"));
	assert_true(out.first_lsn == 100 && out.last_lsn == 200 && out.prev_lsn == 90);
	assert_int_equal(out.generation, 7);
	assert_int_equal(out.seq, 3);
	assert_int_equal(out.flags, RELAY_BATCH_CONTINUES);
	assert_int_equal(out.raw_len, 5);
	assert_int_equal(out.data_len, 3);
	assert_memory_equal(out.data, "\x01\x02\x03", 3);
	head = len - 3;
	/* Cut inside the envelope: truncated; inside the data: shorter data. */
	for (size_t cut = 0; cut < len; cut++) {
		enum relay_proto_status st = relay_proto_read_batch(p, cut, &out);

		if (cut < head) {
			assert_int_equal(st, RELAY_PROTO_ERR_TRUNCATED);
		} else {
			assert_int_equal(st, RELAY_PROTO_OK);
			assert_int_equal(out.data_len, cut - head);
		}
	}

	/* Envelope first, data written in place afterwards (a compressor would). */
	wire_writer_reset(&w);
	assert_true(frame_begin(&w, FRAME_BATCH, 0, 1, &at));
	assert_true(relay_proto_write_batch_head(&w, &b));
	assert_true(wire_put_reserve(&w, 4, &room));
	memcpy(room, "abcd", 4);
	p = through_frame(&w, FRAME_BATCH, at, &len);
	assert_int_equal(relay_proto_read_batch(p, len, &out), RELAY_PROTO_OK);
	assert_int_equal(out.data_len, 4);
	assert_memory_equal(out.data, "abcd", 4);

	/* No data at all is a valid (empty) batch. */
	b.data = NULL;
	b.data_len = 0;
	wire_writer_reset(&w);
	assert_true(relay_proto_write_batch(&w, &b));
	assert_int_equal(relay_proto_read_batch(w.data, w.len, &out), RELAY_PROTO_OK);
	assert_int_equal(out.data_len, 0);

	/* Flags this version does not know: refused both ways. */
	b.flags = 0x80;
	wire_writer_reset(&w);
	assert_false(relay_proto_write_batch(&w, &b));
	b.flags = 0;
	wire_writer_reset(&w);
	assert_true(relay_proto_write_batch(&w, &b));
	w.data[2 + 6 + 3 * 8 + 2 * 4] = 0x02;
	assert_int_equal(relay_proto_read_batch(w.data, w.len, &out), RELAY_PROTO_ERR_VALUE);

	/* LSNs out of order. */
	b.first_lsn = 300;
	wire_writer_reset(&w);
	assert_false(relay_proto_write_batch(&w, &b));
	b.first_lsn = 100;
	wire_writer_reset(&w);
	assert_true(relay_proto_write_batch(&w, &b));
	wire_store_u64(w.data + 2 + 6, 201);
	assert_int_equal(relay_proto_read_batch(w.data, w.len, &out),
		RELAY_PROTO_ERR_VALUE);
	/* A batch cannot continue from past its own end. */
	b.prev_lsn = 201;
	wire_writer_reset(&w);
	assert_false(relay_proto_write_batch(&w, &b));
	b.prev_lsn = 90;
	wire_writer_reset(&w);
	assert_true(relay_proto_write_batch(&w, &b));
	wire_store_u64(w.data + 2 + 6 + 16, 201);
	assert_int_equal(relay_proto_read_batch(w.data, w.len, &out),
		RELAY_PROTO_ERR_VALUE);
	/* ... unless it ends no transaction (a middle part of a big one) */
	b.first_lsn = b.last_lsn = 0;
	b.prev_lsn = 500;
	wire_writer_reset(&w);
	assert_true(relay_proto_write_batch(&w, &b));
	assert_int_equal(relay_proto_read_batch(w.data, w.len, &out), RELAY_PROTO_OK);
	assert_true(out.prev_lsn == 500);
	b.stream = S("");
	wire_writer_reset(&w);
	assert_false(relay_proto_write_batch_head(&w, &b));
	wire_writer_free(&w);
}

static void
test_sync(void **state)
{
	struct wire_writer w;
	struct relay_proto_sync s = {
		S("orders"), S("Weird Schema"), S("Mixed Case"), UINT64_C(0x5000028),
		7, RELAY_SYNC_LAST, 11, (const uint8_t *)"1\tx\n2\ty\n", 8, 12, 11,
	};
	struct relay_proto_sync out;
	size_t head;

	(void)state;
	wire_writer_init_heap(&w, 1 << 16);
	assert_true(relay_proto_write_sync(&w, &s));
	assert_int_equal(relay_proto_read_sync(w.data, w.len, &out), RELAY_PROTO_OK);
	assert_true(str_is(out.stream, "orders"));
	assert_true(str_is(out.schema, "Weird Schema"));
	assert_true(str_is(out.table, "Mixed Case"));
	assert_true(out.snapshot_lsn == UINT64_C(0x5000028));
	assert_int_equal(out.chunk, 7);
	assert_int_equal(out.ranges, 12);
	assert_int_equal(out.range, 11);
	assert_int_equal(out.flags, RELAY_SYNC_LAST);
	assert_int_equal(out.raw_len, 11);
	assert_int_equal(out.data_len, 8);
	assert_memory_equal(out.data, "1\tx\n2\ty\n", 8);
	head = w.len - 8;
	for (size_t cut = 0; cut < head; cut++)
		assert_int_equal(relay_proto_read_sync(w.data, cut, &out),
			RELAY_PROTO_ERR_TRUNCATED);

	/* A joining table's frame; unknown flag bits. */
	w.data[head - 5] = RELAY_SYNC_JOIN | RELAY_SYNC_LAST;
	assert_int_equal(relay_proto_read_sync(w.data, w.len, &out), RELAY_PROTO_OK);
	assert_int_equal(out.flags, RELAY_SYNC_JOIN | RELAY_SYNC_LAST);
	w.data[head - 5] = 0x04;
	assert_int_equal(relay_proto_read_sync(w.data, w.len, &out),
		RELAY_PROTO_ERR_VALUE);
	s.flags = 0x80;
	wire_writer_reset(&w);
	assert_false(relay_proto_write_sync(&w, &s));
	s.flags = 0;
	/* A range beyond the count, a count of one, a range of a whole table. */
	s.range = 12;
	wire_writer_reset(&w);
	assert_false(relay_proto_write_sync(&w, &s));
	s.ranges = 1;
	s.range = 0;
	wire_writer_reset(&w);
	assert_false(relay_proto_write_sync(&w, &s));
	s.ranges = 0;
	s.range = 3;
	wire_writer_reset(&w);
	assert_false(relay_proto_write_sync(&w, &s));
	s.range = 0;
	wire_writer_reset(&w);
	assert_true(relay_proto_write_sync(&w, &s));
	w.data[head - 10] = 2;       /* the range's low byte: 2 of 0 */
	assert_int_equal(relay_proto_read_sync(w.data, w.len, &out),
		RELAY_PROTO_ERR_VALUE);
	s.table = S("");
	wire_writer_reset(&w);
	assert_false(relay_proto_write_sync_head(&w, &s));
	wire_writer_free(&w);
}

static void
test_sequences(void **state)
{
	struct wire_writer w;
	struct relay_proto_sequence seqs[2] = {
		{ S("public"), S("orders_id_seq"), INT64_C(123456789012) },
		{ S("s"), S("neg"), INT64_MIN },
	};
	struct relay_proto_sequences m = { S("orders"), seqs, 2 };
	struct relay_proto_sequences out;
	struct relay_proto_sequence got[2];

	(void)state;
	wire_writer_init_heap(&w, 1 << 16);
	assert_true(relay_proto_write_sequences(&w, &m));
	assert_int_equal(relay_proto_read_sequences(w.data, w.len, &out, got, 2),
		RELAY_PROTO_OK);
	assert_int_equal(out.nseqs, 2);
	assert_true(str_is(got[0].name, "orders_id_seq"));
	assert_true(got[0].value == INT64_C(123456789012));
	assert_true(got[1].value == INT64_MIN);
	assert_int_equal(relay_proto_read_sequences(w.data, w.len, &out, got, 1),
		RELAY_PROTO_ERR_TOO_MANY);
	for (size_t cut = 0; cut < w.len; cut++)
		assert_int_equal(relay_proto_read_sequences(w.data, cut, &out, got, 2),
			RELAY_PROTO_ERR_TRUNCATED);
	m.nseqs = RELAY_PROTO_MAX_LIST + 1;
	wire_writer_reset(&w);
	assert_false(relay_proto_write_sequences(&w, &m));
	wire_writer_free(&w);
}

static void
test_goodbye(void **state)
{
	uint8_t buf[64];
	struct wire_writer w;
	struct relay_proto_goodbye g = { S("CRC mismatch") }, out;

	(void)state;
	wire_writer_init(&w, buf, sizeof(buf));
	assert_true(relay_proto_write_goodbye(&w, &g));
	assert_int_equal(relay_proto_read_goodbye(buf, w.len, &out), RELAY_PROTO_OK);
	assert_true(str_is(out.reason, "CRC mismatch"));
	/* An empty reason is allowed. */
	g.reason = S("");
	wire_writer_init(&w, buf, sizeof(buf));
	assert_true(relay_proto_write_goodbye(&w, &g));
	assert_int_equal(relay_proto_read_goodbye(buf, w.len, &out), RELAY_PROTO_OK);
	assert_int_equal(out.reason.len, 0);
	assert_int_equal(relay_proto_read_goodbye(buf, 1, &out),
		RELAY_PROTO_ERR_TRUNCATED);
}

static void
test_command(void **state)
{
	uint8_t buf[256];
	struct wire_writer w;
	struct relay_proto_command m = { .id = 7, .argc = 3 }, out;
	struct relay_proto_command_reply r = { .id = 7, .ok = 1, .body = "done\n", .body_len = 5 }, rout;

	(void)state;
	m.argv[0] = S("switchover");
	m.argv[1] = S("--to");
	m.argv[2] = S("azure");
	wire_writer_init(&w, buf, sizeof(buf));
	assert_true(relay_proto_write_command(&w, &m));
	assert_int_equal(relay_proto_read_command(buf, w.len, &out), RELAY_PROTO_OK);
	assert_int_equal(out.id, 7);
	assert_int_equal(out.argc, 3);
	assert_true(str_is(out.argv[0], "switchover"));
	assert_true(str_is(out.argv[2], "azure"));
	/* every cut is refused, as is a count of 0 or over the limit, or an empty command */
	for (size_t len = 0; len < w.len; len++)
		assert_int_not_equal(relay_proto_read_command(buf, len, &out), RELAY_PROTO_OK);
	buf[4] = 0;
	assert_int_equal(relay_proto_read_command(buf, w.len, &out), RELAY_PROTO_ERR_VALUE);
	buf[4] = RELAY_COMMAND_MAX_ARGS + 1;
	assert_int_equal(relay_proto_read_command(buf, w.len, &out), RELAY_PROTO_ERR_VALUE);
	m.argv[0] = S("");
	wire_writer_init(&w, buf, sizeof(buf));
	assert_false(relay_proto_write_command(&w, &m));
	m.argc = 0;
	wire_writer_init(&w, buf, sizeof(buf));
	assert_false(relay_proto_write_command(&w, &m));

	wire_writer_init(&w, buf, sizeof(buf));
	assert_true(relay_proto_write_command_reply(&w, &r));
	assert_int_equal(relay_proto_read_command_reply(buf, w.len, &rout), RELAY_PROTO_OK);
	assert_int_equal(rout.id, 7);
	assert_int_equal(rout.ok, 1);
	assert_int_equal(rout.body_len, 5);
	assert_memory_equal(rout.body, "done\n", 5);
	/* an empty body; ok beyond 1; a NUL in the body */
	r.body_len = 0;
	wire_writer_init(&w, buf, sizeof(buf));
	assert_true(relay_proto_write_command_reply(&w, &r));
	assert_int_equal(relay_proto_read_command_reply(buf, w.len, &rout), RELAY_PROTO_OK);
	assert_int_equal(rout.body_len, 0);
	buf[4] = 2;
	assert_int_equal(relay_proto_read_command_reply(buf, w.len, &rout), RELAY_PROTO_ERR_VALUE);
	assert_int_equal(relay_proto_read_command_reply(buf, 4, &rout), RELAY_PROTO_ERR_TRUNCATED);
	r.body = "a\0b";
	r.body_len = 3;
	wire_writer_init(&w, buf, sizeof(buf));
	assert_false(relay_proto_write_command_reply(&w, &r));
	memcpy(buf, "\0\0\0\7\1a\0b", 8);
	assert_int_equal(relay_proto_read_command_reply(buf, 8, &rout), RELAY_PROTO_ERR_STRING);
}

static void
test_status_strings(void **state)
{
	(void)state;
	for (int st = RELAY_PROTO_OK; st <= RELAY_PROTO_ERR_VALUE; st++)
		assert_string_not_equal(relay_proto_status_str((enum relay_proto_status)st),
			"unknown payload status");
	assert_int_equal(relay_proto_str(NULL).len, 0);
	assert_int_equal(relay_proto_str("abc").len, 3);
}

static void
test_verify(void **state)
{
	uint8_t buf[256];
	struct wire_writer w;
	struct wire_reader r;
	struct relay_proto_verify m = {
		.stream = S("app"), .job = 7, .op = RELAY_VERIFY_RESULT, .ok = 1, .seq = 3,
		.lsn = 0x1234, .generation = 2, .text = S(""), .ncols = 2, .nvalues = 4,
	}, out;
	const char *v;
	uint32_t n;

	(void)state;
	wire_writer_init(&w, buf, sizeof(buf));
	assert_true(relay_proto_write_verify_head(&w, &m));
	assert_true(relay_proto_put_verify_value(&w, "10", 2));
	assert_true(relay_proto_put_verify_value(&w, NULL, 0));
	assert_true(relay_proto_put_verify_value(&w, "", 0));
	assert_true(relay_proto_put_verify_value(&w, "a\0b", 3));
	assert_int_equal(relay_proto_read_verify(buf, w.len, &out), RELAY_PROTO_OK);
	assert_true(str_is(out.stream, "app"));
	assert_int_equal(out.job, 7);
	assert_int_equal(out.op, RELAY_VERIFY_RESULT);
	assert_int_equal(out.seq, 3);
	assert_int_equal(out.lsn, 0x1234);
	assert_int_equal(out.generation, 2);
	assert_int_equal(out.nvalues, 4);
	wire_reader_init(&r, out.values, out.values_len);
	assert_true(relay_proto_verify_value(&r, &v, &n));
	assert_int_equal(n, 2);
	assert_memory_equal(v, "10", 2);
	assert_true(relay_proto_verify_value(&r, &v, &n));
	assert_null(v);
	assert_true(relay_proto_verify_value(&r, &v, &n));
	assert_non_null(v);
	assert_int_equal(n, 0);
	assert_true(relay_proto_verify_value(&r, &v, &n));
	assert_int_equal(n, 3);
	assert_false(relay_proto_verify_value(&r, &v, &n));
	/* every shorter payload is truncated, never read past */
	for (size_t len = 0; len < w.len; len++)
		assert_int_not_equal(relay_proto_read_verify(buf, len, &out), RELAY_PROTO_OK);
	/* rows must be whole: 4 values are not rows of 3 columns */
	buf[4 + 8 + 1 + 1 + 4 + 8 + 4 + 2 + 1] = 3;
	assert_int_equal(relay_proto_read_verify(buf, w.len, &out), RELAY_PROTO_ERR_VALUE);
	/* a value count the payload cannot hold is refused before any walk */
	m.nvalues = 1000000;
	wire_writer_init(&w, buf, sizeof(buf));
	assert_true(relay_proto_write_verify_head(&w, &m));
	assert_int_equal(relay_proto_read_verify(buf, w.len, &out), RELAY_PROTO_ERR_TRUNCATED);
	/* unknown operations are refused both ways */
	m.op = 99;
	wire_writer_init(&w, buf, sizeof(buf));
	assert_false(relay_proto_write_verify_head(&w, &m));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hello),
		cmocka_unit_test(test_hello_hostile),
		cmocka_unit_test(test_ack_bytes),
		cmocka_unit_test(test_heartbeat),
		cmocka_unit_test(test_batch),
		cmocka_unit_test(test_resume),
		cmocka_unit_test(test_catchup),
		cmocka_unit_test(test_sync),
		cmocka_unit_test(test_sequences),
		cmocka_unit_test(test_goodbye),
		cmocka_unit_test(test_verify),
		cmocka_unit_test(test_command),
		cmocka_unit_test(test_status_strings),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
