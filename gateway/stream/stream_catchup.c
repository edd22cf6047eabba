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
 *
 * Relayed (streams[].via): a destination whose batches go through another
 * destination's site takes them this way for good (FOLLOW: the relay keeps
 * sending as it fsyncs more). Its initial copy still comes from the
 * source, and only once the relay answers a PROBE (it retains the source's
 * transactions, so the copy's position is within what it holds); after the
 * copy the source is told where the copy ended (its round is over, it sends
 * nothing) and the relay is asked from there. A relay that cannot serve is
 * asked again every CATCHUP_RELAY_RETRY_MS; a failover's catch-up takes
 * over the sink for its time and hands it back.
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
#include "gateway/stream/stream_join.h"
#include "gateway/stream/stream_sync.h"

#define CATCHUP_TICK_MS 1000
#define CATCHUP_REPLY_MS 10000
#define CATCHUP_STALL_MS 30000
#define CATCHUP_RELAY_RETRY_MS 5000

struct stream_catchup {
	char *from;                  /* the sibling */
	bool follow;                 /* relayed: for good (st->relay) */
	bool relay_ready;            /* relayed: the relay said it retains (PROBE) */
	bool probing;
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

static void catchup_tick_cb(evutil_socket_t fd, short what, void *arg);

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
	/* a relayed destination takes the relay's batches again */
	if (st->relay && !stream_relay_start(st))
		log_error("stream \"%s\": out of memory taking the relay's batches again", st->name);
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

/* CATCHUP after lsn in a new generation; false when it could not go (the tick asks again). */
static bool catchup_send(struct stream *st, uint64_t lsn, uint8_t flags)
{
	struct stream_catchup *c = st->sink.catchup;
	struct relay_proto_catchup m;

	if (!relay_is_up(st->owner->relay, c->from))
		return false;
	if (!(flags & RELAY_CATCHUP_PROBE)) {
		st->sink.want_generation++;
		stream_sink_expect(st, lsn);
	}
	m = (struct relay_proto_catchup){
		.stream = relay_proto_str(st->name),
		.source = relay_proto_str(st->peer),
		.after_lsn = lsn,
		.generation = st->sink.want_generation,
		.flags = flags,
	};
	wire_writer_reset(&st->owner->out);
	if (!relay_proto_write_catchup(&st->owner->out, &m) ||
	    !stream_send_to(st, c->from, FRAME_CATCHUP, 0))
		return false;
	c->asked = true;
	c->replied = false;
	c->probing = flags & RELAY_CATCHUP_PROBE;
	c->asked_at_ms = now_ms();
	log_info("stream \"%s\": asked site \"%s\" %s \"%s\" after " LSN_FMT, st->name, c->from,
		 c->probing ? "whether it retains the transactions of" :
		 c->follow ? "for the batches it relays from" : "for what it applied from", st->peer,
		 LSN_ARGS(lsn));
	return true;
}

void stream_catchup_ask(struct stream *st)
{
	struct relay_proto_position pos;

	if (stream_sink_position(st, &pos))
		(void)catchup_send(st, pos.received_lsn, 0);
}

/* The source's transactions as the relay holds them, after what the sink has. */
void stream_relay_resume(struct stream *st)
{
	struct stream_catchup *c = st->sink.catchup;
	struct relay_proto_resume_req resume;

	if (!c || !c->follow) {
		stream_catchup_ask(st);
		return;
	}
	if (st->sink.halted || !stream_sink_position(st, &resume.pos))
		return;
	if (st->sync && streamsync_in_progress(st->sync) && !c->relay_ready) {
		/* the copy waits until the relay holds the source's transactions */
		(void)catchup_send(st, 0, RELAY_CATCHUP_PROBE);
		return;
	}
	if (st->sync && streamsync_in_progress(st->sync)) {
		stream_sink_resume_source(st);      /* the copy round, from the source */
		return;
	}
	if (st->sync && !streamsync_sink_resume(st->sync, st->sink.want_generation + 1,
						&resume.pos.received_lsn))
		return;
	if (st->join && !streamjoin_sink_ready(st->join))
		return;
	/* the source's round (if any) ends there; it sends this site nothing itself */
	resume.generation = ++st->sink.want_generation;
	wire_writer_reset(&st->owner->out);
	if (relay_is_up(st->owner->relay, st->peer) &&
	    relay_proto_write_resume(&st->owner->out, &resume))
		(void)stream_send(st, FRAME_RESUME, 0);
	(void)catchup_send(st, resume.pos.received_lsn, RELAY_CATCHUP_FOLLOW);
}

bool stream_relay_start(struct stream *st)
{
	struct stream_catchup *c = calloc(1, sizeof(*c));

	if (!c || !(c->from = strdup(st->relay)) ||
	    !(c->tick = event_new(st->owner->base, -1, 0, catchup_tick_cb, st))) {
		if (c)
			free(c->from);
		free(c);
		return false;
	}
	c->follow = true;
	c->progress_at_ms = now_ms();
	st->sink.catchup = c;
	event_add(c->tick, &(struct timeval){ CATCHUP_TICK_MS / 1000, 0 });
	return true;
}

void stream_catchup_committed(struct stream *st)
{
	struct stream_catchup *c = st->sink.catchup;

	if (c->follow) {
		c->progress_at_ms = now_ms();
		return;
	}
	if (st->sink.ack_lsn > c->progress_lsn) {
		c->progress_lsn = st->sink.ack_lsn;
		c->progress_at_ms = now_ms();
	}
	if (c->replied && st->sink.ack_lsn >= c->target)
		catchup_finish(st, STREAMS_CATCHUP_TAKEN, "applied everything up to " LSN_FMT,
			       LSN_ARGS(c->target));
}

/* The sibling's answer: ahead, level, a range to take, or why not. */
/* The relay's answer: to a PROBE (the copy may start), or to FOLLOW (or why not). */
static void relay_answer(struct stream *st, const struct relay_proto_catchup_reply *r)
{
	struct stream_catchup *c = st->sink.catchup;
	char *why = r->ok ? NULL : wire_str_dup(r->message);

	c->replied = true;
	if (!r->ok) {
		snprintf(st->last_error, sizeof(st->last_error), "relay site %s: %s", c->from,
			 why ? why : "out of memory");
		log_warning("stream \"%s\": relay site \"%s\" cannot serve: %s; asking again in %d s",
			    st->name, c->from, why ? why : "out of memory", CATCHUP_RELAY_RETRY_MS / 1000);
		free(why);
		c->asked = false;
		c->asked_at_ms = now_ms();
		return;
	}
	st->last_error[0] = '\0';
	if (c->probing) {
		c->relay_ready = true;
		log_info("stream \"%s\": relay site \"%s\" retains from " LSN_FMT ": the copy may start",
			 st->name, c->from, LSN_ARGS(r->floor_lsn));
		stream_sink_send_resume(st);
	}
}

static void catchup_answer(struct stream *st, const struct relay_proto_catchup_reply *r)
{
	struct stream_catchup *c = st->sink.catchup;
	char *why;

	if (c->follow) {
		relay_answer(st, r);
		return;
	}
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
	if (!st->sink.catchup || strcmp(peer, st->sink.catchup->from) != 0)
		return;
	if (st->sink.catchup->follow)
		st->sink.catchup->asked = false;     /* asked again once it is back */
	else
		catchup_finish(st, STREAMS_CATCHUP_FAILED, "the link to it dropped");
}

static void catchup_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct stream *st = arg;
	struct stream_catchup *c = st->sink.catchup;
	int64_t now = now_ms();

	(void)fd;
	(void)what;
	if (c->follow) {
		/*
		 * relayed: ask again after a refusal or a lost link, never give up;
		 * and after a quiet spell, in case the relay dropped the session
		 * (its streams were set up anew): a new ask replaces the old one
		 */
		if (st->sink.apply_ready &&
		    ((!c->asked && now - c->asked_at_ms >= CATCHUP_RELAY_RETRY_MS) ||
		     (c->asked && now - c->progress_at_ms >= CATCHUP_STALL_MS &&
		      now - c->asked_at_ms >= CATCHUP_STALL_MS)))
			stream_sink_send_resume(st);
	} else if (!c->asked) {
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
	if (st->sink.catchup && !st->sink.catchup->follow) {
		snprintf(err, errlen, "stream \"%s\" is catching up from site \"%s\" already", name,
			 st->sink.catchup->from);
		return false;
	}
	/* a relayed destination: the failover's catch-up takes the sink for its time */
	stream_catchup_free(st);
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
