/*
 * test_failover.c — the pure parts of switchover and failover: which way a
 * stream runs for each role, the lag gate, the dry run's readiness verdict
 * and the measured durations it reads, and the PROMOTE and PROMOTE_ACK
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

#include "config/config.h"
#include "gateway/cluster/failover.h"
#include "gateway/relay/frame.h"
#include "gateway/relay/relay_proto.h"

#define S(x) relay_proto_str(x)

/* ---- which way a stream runs ---- */

static void
test_stream_ends(void **state)
{
	const size_t one[] = { 1 };
	size_t src = 99, dst[4] = { 99, 99, 99, 99 };

	(void)state;
	/* configured from 0 to 1 */
	assert_int_equal(failover_stream_ends(0, one, 1, 0, ROLE_PRIMARY, CONFIG_SITE_NONE, &src, dst), 1);
	assert_int_equal(src, 0);
	assert_int_equal(dst[0], 1);
	assert_int_equal(failover_stream_ends(0, one, 1, 1, ROLE_REPLICA, CONFIG_SITE_NONE, &src, dst), 1);
	assert_int_equal(src, 0);
	assert_int_equal(dst[0], 1);
	/* after a switchover: site 1 is primary, the stream runs back */
	assert_int_equal(failover_stream_ends(0, one, 1, 1, ROLE_PRIMARY, CONFIG_SITE_NONE, &src, dst), 1);
	assert_int_equal(src, 1);
	assert_int_equal(dst[0], 0);
	assert_int_equal(failover_stream_ends(0, one, 1, 0, ROLE_REPLICA, CONFIG_SITE_NONE, &src, dst), 1);
	assert_int_equal(src, 1);
	assert_int_equal(dst[0], 0);
	/* fenced: nothing runs; a site that is no end: nothing */
	src = dst[0] = 99;
	assert_int_equal(failover_stream_ends(0, one, 1, 0, ROLE_FENCED, CONFIG_SITE_NONE, &src, dst), 0);
	assert_int_equal(failover_stream_ends(0, one, 1, 1, ROLE_FENCED, CONFIG_SITE_NONE, &src, dst), 0);
	assert_int_equal(failover_stream_ends(0, one, 1, 2, ROLE_PRIMARY, CONFIG_SITE_NONE, &src, dst), 0);
	assert_int_equal(failover_stream_ends(0, one, 1, 2, ROLE_REPLICA, CONFIG_SITE_NONE, &src, dst), 0);
	assert_int_equal(src, 99);
	assert_int_equal(dst[0], 99);
}

static void
test_stream_ends_fan_out(void **state)
{
	const size_t two[] = { 1, 2 };
	size_t src = 99, dst[4] = { 99, 99, 99, 99 };

	(void)state;
	/* from 0 to 1 and 2: the primary sends to both, each replica receives from it */
	assert_int_equal(failover_stream_ends(0, two, 2, 0, ROLE_PRIMARY, CONFIG_SITE_NONE, &src, dst), 2);
	assert_int_equal(src, 0);
	assert_int_equal(dst[0], 1);
	assert_int_equal(dst[1], 2);
	assert_int_equal(failover_stream_ends(0, two, 2, 2, ROLE_REPLICA, CONFIG_SITE_NONE, &src, dst), 1);
	assert_int_equal(src, 0);
	assert_int_equal(dst[0], 2);
	/* site 2 promoted: it sends to the configured source and to the other replica */
	assert_int_equal(failover_stream_ends(0, two, 2, 2, ROLE_PRIMARY, CONFIG_SITE_NONE, &src, dst), 2);
	assert_int_equal(src, 2);
	assert_int_equal(dst[0], 0);
	assert_int_equal(dst[1], 1);
	/* told which site is primary, a replica receives from it */
	assert_int_equal(failover_stream_ends(0, two, 2, 1, ROLE_REPLICA, 2, &src, dst), 1);
	assert_int_equal(src, 2);
	assert_int_equal(failover_stream_ends(0, two, 2, 0, ROLE_REPLICA, 1, &src, dst), 1);
	assert_int_equal(src, 1);
	/* a primary that is no end of the stream, or this site itself, is not taken */
	assert_int_equal(failover_stream_ends(0, two, 2, 1, ROLE_REPLICA, 3, &src, dst), 1);
	assert_int_equal(src, 0);
	assert_int_equal(failover_stream_ends(0, two, 2, 1, ROLE_REPLICA, 1, &src, dst), 1);
	assert_int_equal(src, 0);
	/* the configured source as a replica of three ends cannot tell which end sends */
	src = 99;
	assert_int_equal(failover_stream_ends(0, two, 2, 0, ROLE_REPLICA, CONFIG_SITE_NONE, &src, dst), 0);
	assert_int_equal(src, 99);
	/* a site listed twice counts once */
	{
		const size_t dup[] = { 1, 0 };

		assert_int_equal(failover_stream_ends(0, dup, 2, 0, ROLE_PRIMARY, CONFIG_SITE_NONE, &src, dst), 1);
		assert_int_equal(dst[0], 1);
		assert_int_equal(failover_stream_ends(0, dup, 2, 0, ROLE_REPLICA, CONFIG_SITE_NONE, &src, dst), 1);
		assert_int_equal(src, 1);
	}
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

/* ---- measured durations ---- */

static void
test_durations(void **state)
{
	struct failover_durations d = { 0 }, back;
	enum failover_change which;
	double secs;
	int64_t at;
	char text[512], err[256];

	(void)state;
	/* none measured */
	assert_false(failover_durations_expected(&d, &which, &secs, &at));
	assert_true(failover_durations_format(&d, text, sizeof(text)));
	assert_string_equal(text, "# strait: how long role changes took on this site, written by "
			    "straitd\nformat=1\n");
	assert_true(failover_durations_parse(text, &back, err, sizeof(err)));
	assert_false(failover_durations_expected(&back, &which, &secs, &at));
	/* a switchover alone is the estimate */
	d.seconds[FAILOVER_CHANGE_SWITCHOVER] = 2.31;
	d.at[FAILOVER_CHANGE_SWITCHOVER] = 1764769875;
	assert_true(failover_durations_expected(&d, &which, &secs, &at));
	assert_int_equal(which, FAILOVER_CHANGE_SWITCHOVER);
	assert_true(secs == 2.31 && at == 1764769875);
	/* this site's promotion wins over a later switchover: it is the work a failover does */
	d.seconds[FAILOVER_CHANGE_PROMOTION] = 1.12;
	d.at[FAILOVER_CHANGE_PROMOTION] = 1764769800;
	assert_true(failover_durations_expected(&d, &which, &secs, &at));
	assert_int_equal(which, FAILOVER_CHANGE_PROMOTION);
	assert_true(secs == 1.12);
	/* the later of failover and promotion */
	d.seconds[FAILOVER_CHANGE_FAILOVER] = 0.95;
	d.at[FAILOVER_CHANGE_FAILOVER] = 1764769000;
	assert_true(failover_durations_expected(&d, &which, &secs, &at));
	assert_int_equal(which, FAILOVER_CHANGE_PROMOTION);
	d.at[FAILOVER_CHANGE_FAILOVER] = 1764770000;
	assert_true(failover_durations_expected(&d, &which, &secs, &at));
	assert_int_equal(which, FAILOVER_CHANGE_FAILOVER);
	assert_true(secs == 0.95 && at == 1764770000);
	/* round trip */
	assert_true(failover_durations_format(&d, text, sizeof(text)));
	assert_non_null(strstr(text, "\nswitchover=2.310 1764769875\n"));
	assert_non_null(strstr(text, "\npromotion=1.120 1764769800\n"));
	assert_non_null(strstr(text, "\nfailover=0.950 1764770000\n"));
	assert_true(failover_durations_parse(text, &back, err, sizeof(err)));
	for (int c = 0; c < FAILOVER_CHANGES; c++) {
		assert_true(back.at[c] == d.at[c]);
		assert_true(back.seconds[c] > d.seconds[c] - 0.0005 &&
			    back.seconds[c] < d.seconds[c] + 0.0005);
	}
	assert_string_equal(failover_change_name(FAILOVER_CHANGE_PROMOTION), "promotion");
	/* too small a buffer */
	assert_false(failover_durations_format(&d, text, 60));
	/* refused */
	assert_false(failover_durations_parse("switchover=1.0 5\n", &back, err, sizeof(err)));
	assert_non_null(strstr(err, "no format line"));
	assert_false(failover_durations_parse("format=2\n", &back, err, sizeof(err)));
	assert_non_null(strstr(err, "line 1"));
	assert_false(failover_durations_parse("format=1\nrejoin=1.0 5\n", &back, err, sizeof(err)));
	assert_non_null(strstr(err, "line 2: unknown key rejoin"));
	assert_false(failover_durations_parse("format=1\nfailover=1.0\n", &back, err, sizeof(err)));
	assert_false(failover_durations_parse("format=1\nfailover=x 5\n", &back, err, sizeof(err)));
	assert_false(failover_durations_parse("format=1\nfailover=-1 5\n", &back, err, sizeof(err)));
	assert_false(failover_durations_parse("format=1\nfailover=1 0\n", &back, err, sizeof(err)));
	assert_false(failover_durations_parse("format=1\nfailover=1 5x\n", &back, err, sizeof(err)));
	assert_false(failover_durations_parse("format=1\nnothing\n", &back, err, sizeof(err)));
	/* comments, blank lines and a missing last newline are fine */
	assert_true(failover_durations_parse("# x\n\nformat=1\nfailover=3.5 7", &back, err,
					     sizeof(err)));
	assert_true(back.seconds[FAILOVER_CHANGE_FAILOVER] == 3.5 &&
		    back.at[FAILOVER_CHANGE_FAILOVER] == 7);
}

/* ---- the dry run's verdict ---- */

/* A caught-up replica whose primary is reachable, with everything in place. */
static struct failover_facts
ready_facts(void)
{
	return (struct failover_facts){
		.site = "cloud", .old_primary = "onprem", .role = ROLE_REPLICA, .epoch = 4,
		.role_persisted = true,
		.lag = { .lag_bytes = 0, .lag_seconds = 0.2,
			 .last_applied_time_us = 1764769875000000, .known = true },
		.max_lag_bytes = 16000000, .max_lag_ms = 60000,
		.streams_in = 1, .stream_states = "app: streaming", .heard_old = true,
		.heard_ago_s = 1, .old_reachable = true,
		.db_can_create_slots = true, .sequences = 3, .sequences_with_value = 2,
		.sequence_margin = 1000, .metrics_listen = "127.0.0.1:9187",
	};
}

static const struct failover_check *
check_of(const struct failover_readiness *r, const char *name)
{
	for (size_t i = 0; i < r->n; i++)
		if (strcmp(r->checks[i].name, name) == 0)
			return &r->checks[i];
	return NULL;
}

static void
assert_detail(const struct failover_readiness *r, const char *name, bool ok, const char *text)
{
	const struct failover_check *c = check_of(r, name);

	assert_non_null(c);
	if (c->ok != ok || !strstr(c->detail, text))
		fail_msg("check %s: ok %d, detail \"%s\"; expected ok %d and \"%s\"", name, c->ok,
			 c->detail, ok, text);
}

/* A stream of three sites: every replica's position, the most caught up named; no-go for now. */
static void
test_readiness_siblings(void **state)
{
	struct failover_facts in = ready_facts();
	struct failover_position pos[2] = {
		{ .site = "edge", .known = true, .applied_lsn = 0x3000100 },
		{ .site = "dc2", .known = false, .why = "site dc2 is not reachable" },
	};
	struct failover_readiness r;

	(void)state;
	in.many_sites = true;
	in.applied_lsn = 0x2F00000;
	in.positions = pos;
	in.n_positions = 2;
	failover_readiness(&in, &r);
	assert_int_equal(r.n, FAILOVER_CHECKS);
	assert_true(r.go);
	assert_detail(&r, "replicas", true, "applied of the old primary's streams: cloud 0/2F00000 "
		      "(this site), edge 0/3000100 (the most caught up), dc2 unknown (site dc2 is "
		      "not reachable); a failover here first takes from each reachable replica what "
		      "it applied beyond this site; one not reachable that holds more is fenced and "
		      "must rejoin");
	assert_null(strstr(r.verdict, "no-go"));
	/* this site ahead */
	in.applied_lsn = 0x3000200;
	failover_readiness(&in, &r);
	assert_detail(&r, "replicas", true, "cloud 0/3000200 (this site, the most caught up), "
		      "edge 0/3000100, dc2 unknown");
	/* every one known: nothing about the unreachable */
	pos[1].known = true;
	pos[1].applied_lsn = 0x1000;
	failover_readiness(&in, &r);
	assert_null(strstr(check_of(&r, "replicas")->detail, "not reachable"));
}

static void
test_readiness_go(void **state)
{
	struct failover_facts in = ready_facts();
	struct failover_durations d = { 0 };
	struct failover_readiness r;

	(void)state;
	/* the primary is reachable: ready, and the verdict says switchover is the way now */
	failover_readiness(&in, &r);
	assert_true(r.go);
	assert_int_equal(r.n, FAILOVER_CHECK_SIBLINGS);
	assert_null(check_of(&r, "replicas"));
	assert_non_null(strstr(r.verdict, "go: a failover to site cloud would go through if site "
				"onprem were lost now"));
	assert_non_null(strstr(r.verdict, "switchover is the lossless choice"));
	assert_detail(&r, "role", true, "replica at epoch 4; the promotion would take epoch 5");
	assert_detail(&r, "lag", true, "lag within the limits: last known lag 0 bytes");
	assert_detail(&r, "streams", true, "1 stream(s) from site onprem (app: streaming)");
	assert_detail(&r, "database", true, "not fenced");
	assert_detail(&r, "sequences", true, "2 of 3 sequence(s) here hold a value");
	assert_detail(&r, "sequences", true, "raises each by 1000 (failover.sequence_margin)");
	assert_detail(&r, "fencing", true, "reachable now");
	assert_detail(&r, "fencing", true, "run switchover --to cloud on site onprem");
	assert_detail(&r, "fencing", true, "hear epoch 5");
	assert_detail(&r, "health", true, "metrics.listen 127.0.0.1:9187: /primary would answer "
		      "200 here, and 503 on site onprem");
	assert_detail(&r, "loss", true, "expected loss 0 bytes, 0.2 s");
	assert_detail(&r, "loss", true, "last applied commit 2025-12-03T13:51:15Z");
	assert_detail(&r, "duration", false, "no switchover or failover measured on this "
		      "cluster yet");
	assert_false(r.duration_known);
	for (size_t i = 0; i < r.n; i++)
		assert_true(r.checks[i].gate == (i <= FAILOVER_CHECK_DATABASE));

	/* unreachable: the same verdict, without the switchover advice */
	in.old_reachable = false;
	d.seconds[FAILOVER_CHANGE_PROMOTION] = 1.5;
	d.at[FAILOVER_CHANGE_PROMOTION] = 1764769875;
	in.durations = &d;
	in.db_fenced = true;
	failover_readiness(&in, &r);
	assert_true(r.go);
	assert_string_equal(r.verdict, "go: a failover to site cloud would go through");
	assert_detail(&r, "fencing", true, "not reachable: it will be fenced when heard again");
	assert_detail(&r, "fencing", true, "default_transaction_read_only = on");
	assert_detail(&r, "database", true, "fenced now (default_transaction_read_only on): the "
		      "promotion unfences it");
	assert_detail(&r, "duration", true, "expected duration 1.50 s: the last promotion");
	assert_true(r.duration_known && r.duration_s == 1.5);

	/* what only warns: no sequence value yet, no health endpoints */
	in.sequences_with_value = 0;
	in.metrics_listen = NULL;
	failover_readiness(&in, &r);
	assert_true(r.go);
	assert_detail(&r, "sequences", false, "no sequence value received from site onprem");
	assert_detail(&r, "health", false, "metrics.listen is not set");
	in.sequences = 0;
	failover_readiness(&in, &r);
	assert_detail(&r, "sequences", true, "no sequence in this database");

	/* lag within the gate still costs it: the loss says how much */
	in = ready_facts();
	in.lag.lag_bytes = 500;
	in.durations = &d;
	failover_readiness(&in, &r);
	assert_true(r.go);
	assert_detail(&r, "loss", false, "expected loss 500 bytes");
	assert_detail(&r, "duration", true, "plus the wait for what was received to be applied");
}

static void
test_readiness_no_go(void **state)
{
	struct failover_facts in;
	struct failover_readiness r;

	(void)state;
	/* lagging: the lag is named */
	in = ready_facts();
	in.lag.lag_bytes = 20000000;
	in.lag.lag_seconds = 75;
	failover_readiness(&in, &r);
	assert_false(r.go);
	assert_string_equal(r.verdict, "no-go: a failover to site cloud would be refused (lag)");
	assert_detail(&r, "lag", false, "refused: lag over the limits: last known lag 20000000 "
		      "bytes, 75.0 s");
	assert_detail(&r, "loss", false, "expected loss 20000000 bytes, 75.0 s");
	/* forced, it would go through */
	in.force = true;
	failover_readiness(&in, &r);
	assert_true(r.go);
	assert_detail(&r, "lag", true, "forced");

	/* seconds alone */
	in = ready_facts();
	in.lag.lag_seconds = 61;
	failover_readiness(&in, &r);
	assert_false(r.go);

	/* the streams: none received, or never heard */
	in = ready_facts();
	in.streams_in = 0;
	in.stream_states = NULL;
	failover_readiness(&in, &r);
	assert_false(r.go);
	assert_detail(&r, "streams", false, "receives no stream from site onprem");
	in = ready_facts();
	in.heard_old = false;
	in.old_reachable = false;
	failover_readiness(&in, &r);
	assert_false(r.go);
	assert_string_equal(r.verdict, "no-go: a failover to site cloud would be refused (streams)");
	assert_detail(&r, "streams", false, "not been heard since straitd started");

	/* the database */
	in = ready_facts();
	in.db_error = "connection refused";
	failover_readiness(&in, &r);
	assert_false(r.go);
	assert_detail(&r, "database", false, "does not answer: connection refused");
	assert_detail(&r, "sequences", false, "unknown");
	in = ready_facts();
	in.db_in_recovery = true;
	failover_readiness(&in, &r);
	assert_false(r.go);
	assert_detail(&r, "database", false, "standby");
	in = ready_facts();
	in.db_can_create_slots = false;
	in.lag.lag_bytes = 20000000;
	failover_readiness(&in, &r);
	assert_false(r.go);
	assert_detail(&r, "database", false, "REPLICATION or superuser");
	assert_string_equal(r.verdict, "no-go: a failover to site cloud would be refused "
			    "(lag, database)");

	/* the role: not persisted, primary, fenced (then the role check alone) */
	in = ready_facts();
	in.role_persisted = false;
	failover_readiness(&in, &r);
	assert_false(r.go);
	assert_detail(&r, "role", false, "could not record the new role");
	in = ready_facts();
	in.role = ROLE_PRIMARY;
	failover_readiness(&in, &r);
	assert_false(r.go);
	assert_int_equal(r.n, 1);
	assert_detail(&r, "role", false, "site cloud is the primary already");
	in.role = ROLE_FENCED;
	failover_readiness(&in, &r);
	assert_false(r.go);
	assert_int_equal(r.n, 1);
	assert_detail(&r, "role", false, "fenced: it must rejoin as a replica first");
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
		cmocka_unit_test(test_stream_ends_fan_out),
		cmocka_unit_test(test_gate),
		cmocka_unit_test(test_durations),
		cmocka_unit_test(test_readiness_go),
		cmocka_unit_test(test_readiness_siblings),
		cmocka_unit_test(test_readiness_no_go),
		cmocka_unit_test(test_promote),
		cmocka_unit_test(test_promote_ack),
		cmocka_unit_test(test_fence),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
