/*
 * test_failover.c — the pure parts of switchover and failover: which way a
 * stream runs for each role, the lag gate, and the PROMOTE and PROMOTE_ACK
 * payloads and FENCE's (round trips inside a real frame, exact bytes, truncation at
 * every offset, trailing bytes, refused values).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "gateway/failover.h"
#include "gateway/frame.h"
#include "gateway/relay_proto.h"

#define S(x) relay_proto_str(x)

/* ---- which way a stream runs ---- */

static void
test_stream_ends(void **state)
{
	size_t src = 99, dst = 99;

	(void)state;
	/* configured from 0 to 1 */
	assert_true(failover_stream_ends(0, 1, 0, ROLE_PRIMARY, &src, &dst));
	assert_int_equal(src, 0);
	assert_int_equal(dst, 1);
	assert_true(failover_stream_ends(0, 1, 1, ROLE_REPLICA, &src, &dst));
	assert_int_equal(src, 0);
	assert_int_equal(dst, 1);
	/* after a switchover: site 1 is primary, the stream runs back */
	assert_true(failover_stream_ends(0, 1, 1, ROLE_PRIMARY, &src, &dst));
	assert_int_equal(src, 1);
	assert_int_equal(dst, 0);
	assert_true(failover_stream_ends(0, 1, 0, ROLE_REPLICA, &src, &dst));
	assert_int_equal(src, 1);
	assert_int_equal(dst, 0);
	/* fenced: nothing runs; a site that is no end: nothing */
	src = dst = 99;
	assert_false(failover_stream_ends(0, 1, 0, ROLE_FENCED, &src, &dst));
	assert_false(failover_stream_ends(0, 1, 1, ROLE_FENCED, &src, &dst));
	assert_false(failover_stream_ends(0, 1, 2, ROLE_PRIMARY, &src, &dst));
	assert_false(failover_stream_ends(0, 1, 2, ROLE_REPLICA, &src, &dst));
	assert_int_equal(src, 99);
	assert_int_equal(dst, 99);
}

/* ---- the lag gate ---- */

static void
test_gate(void **state)
{
	struct failover_lag lag = { .lag_bytes = 0, .lag_seconds = 0, .known = true };
	char msg[512];

	(void)state;
	assert_true(failover_gate(&lag, 1000, 1000, false, msg, sizeof(msg)));
	assert_non_null(strstr(msg, "lag within the limits"));
	assert_non_null(strstr(msg, "last applied commit unknown"));
	/* at the limits is within */
	lag.lag_bytes = 1000;
	lag.lag_seconds = 1.0;
	assert_true(failover_gate(&lag, 1000, 1000, false, msg, sizeof(msg)));
	/* one byte over */
	lag.lag_bytes = 1001;
	assert_false(failover_gate(&lag, 1000, 1000, false, msg, sizeof(msg)));
	assert_non_null(strstr(msg, "refused"));
	assert_non_null(strstr(msg, "1001 bytes"));
	assert_non_null(strstr(msg, "would be lost"));
	/* seconds over alone */
	lag.lag_bytes = 0;
	lag.lag_seconds = 1.5;
	lag.last_applied_time_us = 1764769875000000;   /* 2025-12-03T13:51:15Z */
	assert_false(failover_gate(&lag, 1000, 1000, false, msg, sizeof(msg)));
	assert_non_null(strstr(msg, "1.5 s"));
	assert_non_null(strstr(msg, "last applied commit 2025-12-03T13:51:15Z"));
	/* forced */
	assert_true(failover_gate(&lag, 1000, 1000, true, msg, sizeof(msg)));
	assert_non_null(strstr(msg, "forced"));
	assert_non_null(strstr(msg, "would be lost"));
	/* limits of 0: any lag refuses, none passes */
	lag.lag_seconds = 0;
	assert_true(failover_gate(&lag, 0, 0, false, msg, sizeof(msg)));
	lag.lag_bytes = 1;
	assert_false(failover_gate(&lag, 0, 0, false, msg, sizeof(msg)));
	/* a tiny buffer is cut, not overrun */
	assert_false(failover_gate(&lag, 0, 0, false, msg, 8));
	assert_int_equal(strlen(msg), 7);
}

/* ---- PROMOTE ---- */

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
test_promote(void **state)
{
	static const uint8_t exact[] = {
		0, 0, 0, 0, 0, 0, 0, 7,      /* epoch */
		0, 10, 's', 'w', 'i', 't', 'c', 'h', 'o', 'v', 'e', 'r',
	};
	uint8_t buf[256], frame_buf[512];
	struct relay_proto_promote m = { .epoch = 7, .reason = S("switchover") }, out;
	struct wire_writer w;
	const uint8_t *p;
	size_t at, len;

	(void)state;
	wire_writer_init(&w, buf, sizeof(buf));
	assert_true(relay_proto_write_promote(&w, &m));
	assert_int_equal(w.len, sizeof(exact));
	assert_memory_equal(w.data, exact, sizeof(exact));
	assert_int_equal(relay_proto_read_promote(exact, sizeof(exact), &out), RELAY_PROTO_OK);
	assert_true(out.epoch == 7);
	assert_true(wire_str_eq(out.reason, "switchover"));
	/* inside a frame */
	wire_writer_init(&w, frame_buf, sizeof(frame_buf));
	assert_true(frame_begin(&w, FRAME_PROMOTE, 0, 3, &at));
	assert_true(relay_proto_write_promote(&w, &m));
	p = through_frame(&w, FRAME_PROMOTE, at, &len);
	assert_int_equal(relay_proto_read_promote(p, len, &out), RELAY_PROTO_OK);
	/* an empty reason is fine */
	m.reason = S("");
	wire_writer_init(&w, buf, sizeof(buf));
	assert_true(relay_proto_write_promote(&w, &m));
	assert_int_equal(relay_proto_read_promote(w.data, w.len, &out), RELAY_PROTO_OK);
	assert_int_equal(out.reason.len, 0);
	/* truncated anywhere, trailing bytes, epoch 0, a NUL in the reason */
	for (size_t n = 0; n < sizeof(exact); n++)
		assert_int_equal(relay_proto_read_promote(exact, n, &out), RELAY_PROTO_ERR_TRUNCATED);
	{
		uint8_t more[sizeof(exact) + 1];

		memcpy(more, exact, sizeof(exact));
		more[sizeof(exact)] = 0;
		assert_int_equal(relay_proto_read_promote(more, sizeof(more), &out),
				 RELAY_PROTO_ERR_TRAILING);
		memcpy(more, exact, sizeof(exact));
		more[7] = 0;
		assert_int_equal(relay_proto_read_promote(more, sizeof(exact), &out),
				 RELAY_PROTO_ERR_VALUE);
		memcpy(more, exact, sizeof(exact));
		more[12] = 0;
		assert_int_equal(relay_proto_read_promote(more, sizeof(exact), &out),
				 RELAY_PROTO_ERR_STRING);
	}
}

/* ---- PROMOTE_ACK ---- */

static void
test_promote_ack(void **state)
{
	static const uint8_t exact[] = {
		1,                           /* ok */
		0, 0, 0, 0, 0, 0, 0, 2,      /* epoch */
		0, 2, 'o', 'k',              /* message */
		0, 1,                        /* n */
		0, 3, 'a', 'p', 'p', 0, 0, 0, 0, 0x01, 0x53, 0x10, 0x38,
	};
	struct relay_proto_resume in[2] = { { S("app"), 0x1531038 }, { S("b"), 5 } };
	struct relay_proto_resume got[4];
	struct relay_proto_promote_ack m = {
		.ok = 1, .epoch = 2, .message = S("ok"), .streams = in, .nstreams = 1,
	}, out;
	uint8_t buf[512], frame_buf[1024];
	struct wire_writer w;
	const uint8_t *p;
	size_t at, len;

	(void)state;
	wire_writer_init(&w, buf, sizeof(buf));
	assert_true(relay_proto_write_promote_ack(&w, &m));
	assert_int_equal(w.len, sizeof(exact));
	assert_memory_equal(w.data, exact, sizeof(exact));
	assert_int_equal(relay_proto_read_promote_ack(exact, sizeof(exact), &out, got, 4),
			 RELAY_PROTO_OK);
	assert_int_equal(out.ok, 1);
	assert_true(out.epoch == 2);
	assert_int_equal(out.nstreams, 1);
	assert_true(wire_str_eq(out.streams[0].stream, "app"));
	assert_true(out.streams[0].lsn == 0x1531038);
	/* two streams, inside a frame */
	m.nstreams = 2;
	wire_writer_init(&w, frame_buf, sizeof(frame_buf));
	assert_true(frame_begin(&w, FRAME_PROMOTE_ACK, 0, 2, &at));
	assert_true(relay_proto_write_promote_ack(&w, &m));
	p = through_frame(&w, FRAME_PROMOTE_ACK, at, &len);
	assert_int_equal(relay_proto_read_promote_ack(p, len, &out, got, 4), RELAY_PROTO_OK);
	assert_int_equal(out.nstreams, 2);
	assert_true(wire_str_eq(out.streams[1].stream, "b") && out.streams[1].lsn == 5);
	assert_int_equal(relay_proto_read_promote_ack(p, len, &out, got, 1),
			 RELAY_PROTO_ERR_TOO_MANY);
	/* a refusal carries no streams but its reason */
	m = (struct relay_proto_promote_ack){ .ok = 0, .epoch = 1, .message = S("busy") };
	wire_writer_init(&w, buf, sizeof(buf));
	assert_true(relay_proto_write_promote_ack(&w, &m));
	assert_int_equal(relay_proto_read_promote_ack(w.data, w.len, &out, got, 4), RELAY_PROTO_OK);
	assert_int_equal(out.ok, 0);
	assert_true(wire_str_eq(out.message, "busy"));
	/* the writer refuses what the reader would */
	m.ok = 2;
	wire_writer_init(&w, buf, sizeof(buf));
	assert_false(relay_proto_write_promote_ack(&w, &m));
	m = (struct relay_proto_promote_ack){ .ok = 1, .streams = NULL, .nstreams = 1 };
	wire_writer_init(&w, buf, sizeof(buf));
	assert_false(relay_proto_write_promote_ack(&w, &m));
	in[0].stream = S("");
	m = (struct relay_proto_promote_ack){ .ok = 1, .streams = in, .nstreams = 1 };
	wire_writer_init(&w, buf, sizeof(buf));
	assert_false(relay_proto_write_promote_ack(&w, &m));
	/* truncation, trailing bytes, bad ok, empty stream name, a count too large */
	for (size_t n = 0; n < sizeof(exact); n++)
		assert_int_not_equal(relay_proto_read_promote_ack(exact, n, &out, got, 4),
				     RELAY_PROTO_OK);
	{
		uint8_t bad[sizeof(exact) + 1];

		memcpy(bad, exact, sizeof(exact));
		bad[sizeof(exact)] = 9;
		assert_int_equal(relay_proto_read_promote_ack(bad, sizeof(bad), &out, got, 4),
				 RELAY_PROTO_ERR_TRAILING);
		memcpy(bad, exact, sizeof(exact));
		bad[0] = 2;
		assert_int_equal(relay_proto_read_promote_ack(bad, sizeof(exact), &out, got, 4),
				 RELAY_PROTO_ERR_VALUE);
		memcpy(bad, exact, sizeof(exact));
		bad[14] = 200;               /* n = 200: cannot fit */
		assert_int_equal(relay_proto_read_promote_ack(bad, sizeof(exact), &out, got, 4),
				 RELAY_PROTO_ERR_TRUNCATED);
	}
	{
		static const uint8_t empty_name[] = {
			1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 1,
			0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
		};

		assert_int_equal(relay_proto_read_promote_ack(empty_name, sizeof(empty_name), &out,
							      got, 4), RELAY_PROTO_ERR_STRING);
	}
}

/* ---- FENCE ---- */

static void
test_fence(void **state)
{
	static const uint8_t exact[] = {
		0, 1, 0, 3, 'a', 'p', 'p', 0, 0, 0, 0, 0x01, 0x53, 0x05, 0xC8,
	};
	struct relay_proto_resume in[1] = { { S("app"), 0x15305C8 } }, got[2];
	struct relay_proto_fence m = { .streams = in, .nstreams = 1 }, out;
	uint8_t buf[256];
	struct wire_writer w;

	(void)state;
	wire_writer_init(&w, buf, sizeof(buf));
	assert_true(relay_proto_write_fence(&w, &m));
	assert_int_equal(w.len, sizeof(exact));
	assert_memory_equal(w.data, exact, sizeof(exact));
	assert_int_equal(relay_proto_read_fence(exact, sizeof(exact), &out, got, 2), RELAY_PROTO_OK);
	assert_int_equal(out.nstreams, 1);
	assert_true(wire_str_eq(out.streams[0].stream, "app") && out.streams[0].lsn == 0x15305C8);
	assert_int_equal(relay_proto_read_fence(exact, sizeof(exact), &out, got, 0),
			 RELAY_PROTO_ERR_TOO_MANY);
	for (size_t n = 0; n < sizeof(exact); n++)
		assert_int_not_equal(relay_proto_read_fence(exact, n, &out, got, 2), RELAY_PROTO_OK);
	{
		uint8_t more[sizeof(exact) + 1];

		memcpy(more, exact, sizeof(exact));
		more[sizeof(exact)] = 1;
		assert_int_equal(relay_proto_read_fence(more, sizeof(more), &out, got, 2),
				 RELAY_PROTO_ERR_TRAILING);
	}
	/* none is fine */
	m.nstreams = 0;
	wire_writer_init(&w, buf, sizeof(buf));
	assert_true(relay_proto_write_fence(&w, &m));
	assert_int_equal(relay_proto_read_fence(w.data, w.len, &out, got, 2), RELAY_PROTO_OK);
	assert_int_equal(out.nstreams, 0);
	m.streams = NULL;
	m.nstreams = 1;
	wire_writer_init(&w, buf, sizeof(buf));
	assert_false(relay_proto_write_fence(&w, &m));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stream_ends),
		cmocka_unit_test(test_gate),
		cmocka_unit_test(test_promote),
		cmocka_unit_test(test_promote_ack),
		cmocka_unit_test(test_fence),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
