/*
 * stream_catchup.c — a sink takes the transactions it lacks from a sibling's
 * retained batches (streams_catchup()).
 *
 * After the primary is lost, the replicas of a stream may stand at different
 * positions of its WAL. The one ahead retained what it applied (retain.h),
 * so a replica behind asks it: CATCHUP with the position it holds, in a new
 * generation of its own. The sibling answers CATCHUP_REPLY (what it applied
 * and what it retains), then CATCHUP_BATCH frames (a BATCH's payload, the
 * same continuity rules: seq, prev_lsn), capped at what it applied. They go
 * through the sink's ordinary path (stream_sink_batch(): decompress, join,
 * spill, filters, apply), so exactly once holds as for the primary's
 * batches: the apply skips what it has, and ACKs (as CATCHUP_ACK, to the
 * sibling) free the sibling's send window. A refused batch asks again, from
 * what is committed, in a new generation.
 *
 * Done when the apply committed what the sibling applied. Level and ahead
 * are answers too: the caller (a failover) decides what they mean. No
 * answer in CATCHUP_REPLY_MS, or no progress for CATCHUP_STALL_MS, fails.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "common/log.h"
#include "common/lsn.h"
#include "gateway/relay/relay.h"
#include "gateway/relay/relay_proto.h"
#include "gateway/stream/clock.h"
#include "gateway/stream/stream_int.h"

#define CATCHUP_TICK_MS 1000
#define CATCHUP_REPLY_MS 10000
#define CATCHUP_STALL_MS 30000

struct stream_catchup {
	char *from;                  /* the sibling */
	streams_catchup_fn fn;
	void *arg;
	struct event *tick;
	bool asked;
	bool replied;
	uint64_t target;             /* what the sibling applied: done once committed here */
	int64_t asked_at_ms;
	uint64_t progress_lsn;       /* committed at the last sign of progress */
	int64_t progress_at_ms;
};

static int64_t now_ms(void)
{
	return clock_mono_us() / 1000;
}

const char *stream_sink_upstream(const struct stream *st)
{
	return st->sink.catchup ? st->sink.catchup->from : st->peer;
}

void stream_catchup_free(struct stream *st)
{
	struct stream_catchup *c = st->sink.catchup;

	if (!c)
		return;
	if (c->tick)
		event_free(c->tick);
	free(c->from);
	free(c);
	st->sink.catchup = NULL;
}

/* The caller's answer, from the event loop: the sink may be deep in its apply's callback now. */
struct catchup_report {
	streams_catchup_fn fn;
	void *arg;
	char stream[128];
	enum streams_catchup_result result;
	uint64_t applied;
	char msg[512];
};

static void catchup_report_cb(evutil_socket_t fd, short what, void *arg)
{
	struct catchup_report *r = arg;

	(void)fd;
	(void)what;
	r->fn(r->arg, r->stream, r->result, r->applied, r->msg);
	free(r);
}

/* Ends the catch-up (the sink takes the primary's batches again) and tells the caller. */
static void catchup_finish(struct stream *st, enum streams_catchup_result result, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void catchup_finish(struct stream *st, enum streams_catchup_result result, const char *fmt, ...)
{
	struct stream_catchup *c = st->sink.catchup;
	struct catchup_report *r = calloc(1, sizeof(*r));
	char msg[512], from[64];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(from, sizeof(from), "%s", c->from);
	if (r) {
		*r = (struct catchup_report){ .fn = c->fn, .arg = c->arg, .result = result,
					      .applied = c->target };
		snprintf(r->stream, sizeof(r->stream), "%s", st->name);
		snprintf(r->msg, sizeof(r->msg), "%s", msg);
	}
	stream_catchup_free(st);
	if (result == STREAMS_CATCHUP_FAILED)
		log_warning("stream \"%s\": catching up from site \"%s\": %s", st->name, from, msg);
	else
		log_info("stream \"%s\": catching up from site \"%s\": %s", st->name, from, msg);
	/* a batch of the sibling's still on its way is of an old generation now */
	stream_sink_send_resume(st);
	if (!r || event_base_once(st->owner->base, -1, EV_TIMEOUT, catchup_report_cb, r,
				  &(struct timeval){ 0, 0 }) != 0) {
		log_error("stream \"%s\": out of memory telling how the catch-up went", st->name);
		free(r);
	}
}

void stream_catchup_ask(struct stream *st)
{
	struct stream_catchup *c = st->sink.catchup;
	struct relay_proto_position pos;
	struct relay_proto_catchup m;

	if (!relay_is_up(st->owner->relay, c->from) || !stream_sink_position(st, &pos))
		return;       /* the tick fails it if this lasts */
	st->sink.want_generation++;
	stream_sink_expect(st, pos.received_lsn);
	m = (struct relay_proto_catchup){
		.stream = relay_proto_str(st->name),
		.source = relay_proto_str(st->peer),
		.after_lsn = pos.received_lsn,
		.generation = st->sink.want_generation,
	};
	wire_writer_reset(&st->owner->out);
	if (!relay_proto_write_catchup(&st->owner->out, &m) ||
	    !stream_send_to(st, c->from, FRAME_CATCHUP, 0))
		return;
	c->asked = true;
	c->replied = false;
	c->asked_at_ms = now_ms();
	log_info("stream \"%s\": asked site \"%s\" for what it applied from \"%s\" after " LSN_FMT,
		 st->name, c->from, st->peer, LSN_ARGS(pos.received_lsn));
}

void stream_catchup_committed(struct stream *st)
{
	struct stream_catchup *c = st->sink.catchup;

	if (st->sink.ack_lsn > c->progress_lsn) {
		c->progress_lsn = st->sink.ack_lsn;
		c->progress_at_ms = now_ms();
	}
	if (c->replied && st->sink.ack_lsn >= c->target)
		catchup_finish(st, STREAMS_CATCHUP_TAKEN, "applied everything up to " LSN_FMT,
			       LSN_ARGS(c->target));
}

/* The sibling's answer: ahead, level, a range to take, or why not. */
static void catchup_answer(struct stream *st, const struct relay_proto_catchup_reply *r)
{
	struct stream_catchup *c = st->sink.catchup;
	char *why;

	/* what it applied decides even when it cannot serve (0: it does not know) */
	if (r->applied_lsn && st->sink.asked_lsn > r->applied_lsn) {
		catchup_finish(st, STREAMS_CATCHUP_AHEAD, "this site holds transactions up to " LSN_FMT
			       ", beyond what it applied (" LSN_FMT ")", LSN_ARGS(st->sink.asked_lsn),
			       LSN_ARGS(r->applied_lsn));
		return;
	}
	if (r->applied_lsn && st->sink.ack_lsn >= r->applied_lsn) {
		catchup_finish(st, STREAMS_CATCHUP_LEVEL, "level: both applied up to " LSN_FMT,
			       LSN_ARGS(r->applied_lsn));
		return;
	}
	if (!r->ok && !(r->applied_lsn && st->sink.asked_lsn == r->applied_lsn)) {
		why = wire_str_dup(r->message);
		catchup_finish(st, STREAMS_CATCHUP_FAILED, "it cannot serve what this site lacks: %s",
			       why ? why : "out of memory");
		free(why);
		return;
	}
	/* batches follow, or this site's apply commits what it holds already */
	c->replied = true;
	c->target = r->applied_lsn;
	c->progress_at_ms = now_ms();
	c->progress_lsn = st->sink.ack_lsn;
	log_info("stream \"%s\": site \"%s\" applied up to " LSN_FMT " and retains (" LSN_FMT ", "
		 LSN_FMT "]: taking what this site lacks", st->name, c->from, LSN_ARGS(r->applied_lsn),
		 LSN_ARGS(r->floor_lsn), LSN_ARGS(r->end_lsn));
}

void stream_catchup_reply(struct stream *st, const char *peer, const struct frame *f)
{
	struct relay_proto_catchup_reply r;

	if (!st->sink.catchup || strcmp(peer, st->sink.catchup->from) != 0)
		return;
	if (relay_proto_read_catchup_reply(f->payload, f->payload_len, &r) != RELAY_PROTO_OK) {
		catchup_finish(st, STREAMS_CATCHUP_FAILED, "a malformed CATCHUP_REPLY arrived");
		return;
	}
	if (r.generation != st->sink.want_generation)
		return;       /* the answer to an earlier ask */
	catchup_answer(st, &r);
}

void stream_catchup_link_down(struct stream *st, const char *peer)
{
	if (st->sink.catchup && strcmp(peer, st->sink.catchup->from) == 0)
		catchup_finish(st, STREAMS_CATCHUP_FAILED, "the link to it dropped");
}

static void catchup_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct stream *st = arg;
	struct stream_catchup *c = st->sink.catchup;
	int64_t now = now_ms();

	(void)fd;
	(void)what;
	if (!c->asked) {
		stream_catchup_ask(st);
		if (!c->asked && now - c->progress_at_ms > CATCHUP_REPLY_MS) {
			catchup_finish(st, STREAMS_CATCHUP_FAILED, "%s", !relay_is_up(st->owner->relay, c->from)
				       ? "it is not reachable" : "the apply here is not ready");
			return;
		}
	} else if (!c->replied && now - c->asked_at_ms > CATCHUP_REPLY_MS) {
		catchup_finish(st, STREAMS_CATCHUP_FAILED, "no answer in %d s", CATCHUP_REPLY_MS / 1000);
		return;
	} else if (c->replied && now - c->progress_at_ms > CATCHUP_STALL_MS) {
		catchup_finish(st, STREAMS_CATCHUP_FAILED, "no progress in %d s (applied " LSN_FMT
			       " of " LSN_FMT ")", CATCHUP_STALL_MS / 1000, LSN_ARGS(st->sink.ack_lsn),
			       LSN_ARGS(c->target));
		return;
	}
	event_add(c->tick, &(struct timeval){ CATCHUP_TICK_MS / 1000, 0 });
}

bool streams_catchup(struct streams *s, const char *name, const char *from, streams_catchup_fn fn,
		void *arg, char *err, size_t errlen)
{
	struct stream *st = streams_sink_named(s, relay_proto_str(name));
	struct stream_catchup *c;

	if (!st) {
		snprintf(err, errlen, "this site does not receive stream \"%s\"", name);
		return false;
	}
	if (st->sink.catchup) {
		snprintf(err, errlen, "stream \"%s\" is catching up from site \"%s\" already", name,
			 st->sink.catchup->from);
		return false;
	}
	c = calloc(1, sizeof(*c));
	if (!c || !(c->from = strdup(from)) ||
	    !(c->tick = event_new(s->base, -1, 0, catchup_tick_cb, st))) {
		if (c)
			free(c->from);
		free(c);
		snprintf(err, errlen, "out of memory");
		return false;
	}
	c->fn = fn;
	c->arg = arg;
	c->progress_at_ms = now_ms();
	st->sink.catchup = c;
	/* a stream halted on the primary's batches takes the sibling's afresh */
	st->sink.halted = false;
	st->sink.resends = 0;
	/* batches of the primary's generation that still come are dropped from here on */
	if (st->sink.apply_ready)
		stream_catchup_ask(st);
	event_add(c->tick, &(struct timeval){ CATCHUP_TICK_MS / 1000, 0 });
	return true;
}

void streams_catchup_cancel(struct streams *s)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->v[i].role == STREAM_ROLE_SINK)
			stream_catchup_free(&s->v[i]);
}
