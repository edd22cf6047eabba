/*
 * stream_sink.c — the sink side of a stream: decompress BATCH frames, apply
 * them to the target, ACK what committed, and say where to resume.
 *
 * The apply engine connects to the target and reports its origin position.
 * HELLO and RESUME carry two positions (relay_proto.h): received, the end of
 * the last whole transaction the sink holds (where the source sends from),
 * and committed, the origin's (the only acknowledgement). BATCH frames are
 * decompressed and submitted; each committed source transaction is ACKed
 * (coalesced: one ACK per STREAM_ACK_DELAY_US at most).
 *
 * A gap is an error, never a skip. Each batch must follow the one before in
 * its generation (seq and prev_lsn); the first must continue from at or
 * before what was asked for. A batch that does not follow, or that cannot be
 * read, decompressed or queued, is refused and asked for again with a new
 * RESUME, never dropped while later ones are applied; after a few refusals
 * in a row the stream halts (error) and asks again on a timer. Before every
 * HELLO or RESUME an unfinished transaction is cut from the apply queue, so
 * the source's copy from its Begin is the only one (no livelock on a big
 * transaction whose link keeps dropping), and the bytes the sink still holds
 * count against the source's send window (each new link does not add a
 * window's worth to the sink's memory).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "common/fault.h"
#include "common/json.h"
#include "common/log.h"
#include "common/lsn.h"
#include "gateway/relay/relay.h"
#include "gateway/relay/relay_proto.h"
#include "gateway/stream/codec.h"
#include "gateway/stream/clock.h"
#include "gateway/stream/lag.h"
#include "gateway/stream/retain.h"
#include "gateway/stream/retain_serve.h"
#include "gateway/stream/spool.h"
#include "gateway/stream/stream_int.h"
#include "gateway/stream/stream_join.h"
#include "gateway/stream/stream_sync.h"
#include "replicator/apply.h"
#include "replicator/sequences.h"

/*
 * ACKs go out on a short timer, not after every commit: each is a packet
 * back across the WAN (carrying the TCP ACKs with it), and under load one
 * ACK covers a frame or more of transactions. The source needs them only to
 * free spool segments, confirm the slot (durability remote) and count lag,
 * so tens of milliseconds cost nothing there; seconds would hold segments.
 */
#define STREAM_ACK_DELAY_US 20000
/* Refused batches asked for again in a row before the stream halts. */
#define STREAM_RESENDS_MAX 3

static void sink_spill_go_on(struct stream *st);
static void sink_ack_soon(struct stream *st);

/* ------------------------------------------------------------ retained batches */

/*
 * What the apply takes is kept for the stream's other destinations (retain.h):
 * after the primary is lost, a sibling that is behind takes it from here.
 * Retaining is a service to the siblings, never a reason to stop applying: a
 * retain that fails is closed (its siblings are told it has nothing) and the
 * stream goes on.
 */
#define SINK_RETAIN_TRIM_US (10 * 1000000LL)

/*
 * The retained batches, while they follow the stream (not during an initial
 * sync round, whose filter passes part of it); NULL otherwise.
 */
static struct spool *sink_retain_live(const struct stream *st)
{
	if (!st->sink.retain || (st->sync && streamsync_in_progress(st->sync)))
		return NULL;
	return retain_spool(st->sink.retain);
}

/*
 * What this sink may claim to hold at most: what its retained batches hold
 * on disk (they follow the stream), else anything (UINT64_MAX).
 */
static uint64_t sink_retain_bound(const struct stream *st)
{
	struct spool *sp = sink_retain_live(st);

	return sp ? spool_durable_lsn(sp) : UINT64_MAX;
}

static void sink_retain_stop(struct stream *st, const char *err)
{
	log_error("stream \"%s\": retained batches: %s; this site keeps none for its siblings "
		  "until the stream starts again", st->name, err);
	retain_serve_forget(st->owner->serve, st->sink.retain);
	retain_close(st->sink.retain);
	st->sink.retain = NULL;
}

static void sink_retain_sync_cb(evutil_socket_t fd, short what, void *arg)
{
	struct stream *st = arg;
	char err[256];

	(void)fd;
	(void)what;
	if (st->sink.retain && !retain_sync(st->sink.retain, err, sizeof(err)))
		sink_retain_stop(st, err);
	else if (st->sink.retain) {
		retain_serve_kick(st->owner->serve, st->name);   /* relayed destinations go on */
		sink_ack_soon(st);       /* what waited for the fsync may be acknowledged now */
	}
}

static void sink_retain_take(struct stream *st, const uint8_t *body, size_t len)
{
	struct timespec ts;
	uint64_t from;
	char err[256];

	if (!st->sink.retain)
		return;
	/* what an initial sync's filter lets through is not the whole stream */
	if (st->sync && streamsync_in_progress(st->sync))
		return;
	/*
	 * What comes continues from where this generation was asked: what the
	 * retained batches lack below it (a copy, a start) they never get. They
	 * start over there, so a sibling asking below gets a gap, never a hole.
	 */
	from = st->sink.asked_lsn;
	if (retain_end_lsn(st->sink.retain) < from &&
	    !retain_resume(st->sink.retain, from, err, sizeof(err))) {
		sink_retain_stop(st, err);
		return;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	if (!retain_take(st->sink.retain, body, len, (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000,
			 err, sizeof(err))) {
		sink_retain_stop(st, err);
		return;
	}
	/* durable at the end of this loop pass, before the apply's commit comes back */
	event_active(st->sink.retain_event, EV_TIMEOUT, 0);
}

static void sink_retain_trim(struct stream *st)
{
	int64_t mono = clock_mono_us();
	struct timespec ts;
	uint64_t hold;
	bool relays;
	char err[256];

	if (mono - st->sink.retain_trimmed_at < SINK_RETAIN_TRIM_US)
		return;
	hold = streams_relay_hold(st->owner, st, &relays);
	st->sink.retain_trimmed_at = mono;
	clock_gettime(CLOCK_REALTIME, &ts);
	if (retain_trim(st->sink.retain, (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000,
			(int64_t)st->cs->retain * 1000, st->cs->spool_max, hold, err, sizeof(err)) < 0)
		sink_retain_stop(st, err);
}

/* STATE_DIR/retain/<stream>, for streams with siblings and a retain time. */
static void sink_retain_open(struct stream *st, const struct strait_config *cfg)
{
	char *dir = NULL, err[256];
	bool relays;

	(void)streams_relay_hold(st->owner, st, &relays);
	/* a relay keeps what its destinations lack, whatever retain says */
	if (!st->siblings || (st->cs->retain == 0 && !relays))
		return;
	if (!(dir = retain_serve_dir(cfg, st->name)))
		return;
	st->sink.retain = retain_open(dir, st->peer, err, sizeof(err));
	if (!st->sink.retain)
		log_error("stream \"%s\": retained batches in %s: %s; none kept for the siblings",
			  st->name, dir, err);
	else
		retain_unseal(dir);     /* the running sink says what it applied */
	free(dir);
	st->sink.retain_event = event_new(st->owner->base, -1, 0, sink_retain_sync_cb, st);
	if (!st->sink.retain_event) {
		retain_close(st->sink.retain);
		st->sink.retain = NULL;
	}
}

void stream_sink_sequences(struct stream *st, const struct relay_proto_sequences *m)
{
	static struct seq_value vals[STREAM_MAX_SEQUENCES];
	size_t n = 0;

	for (; n < m->nseqs; n++) {
		vals[n].schema = wire_str_dup(m->seqs[n].schema);
		vals[n].name = wire_str_dup(m->seqs[n].name);
		vals[n].value = m->seqs[n].value;
		if (!vals[n].schema || !vals[n].name) {
			free(vals[n].schema);
			free(vals[n].name);
			log_error("stream \"%s\": out of memory taking sequence values", st->name);
			break;
		}
	}
	if (st->sink.seq_writer && !seq_writer_apply(st->sink.seq_writer, vals, n))
		log_error("stream \"%s\": out of memory queueing sequence values", st->name);
	for (size_t i = 0; i < n; i++) {
		free(vals[i].schema);
		free(vals[i].name);
	}
}

/*
 * Batch bytes freed so far: what the apply freed, plus what the spill took
 * without the apply (on disk, or control messages), less what its replays
 * handed the apply (counted again when the apply frees them).
 */
static uint64_t sink_freed_total(const struct stream *st)
{
	uint64_t freed = st->sink.apply ? apply_released_bytes(st->sink.apply) : 0, replayed = 0;

	if (st->sink.spill) {
		freed += streamspill_consumed_bytes(st->sink.spill);
		replayed += streamspill_replayed_bytes(st->sink.spill);
	}
	/* a joining table's held changes count as freed once on disk, as the spill's do */
	freed += streamjoin_held_bytes(st->join);
	replayed += streamjoin_replayed_bytes(st->join);
	/*
	 * A replay hands over more than it took in (a held change gets its
	 * Begin, Relation and Commit again) before the apply frees it: never below 0.
	 */
	return freed > replayed ? freed - replayed : 0;
}

/*
 * Bytes freed since this generation began: the source's window credit.
 * Never less than what was ACKed (a replay hands bytes to the apply before
 * it frees them).
 */
static uint64_t sink_released(const struct stream *st)
{
	int64_t freed = (int64_t)(sink_freed_total(st) - st->sink.released_base);

	return freed > (int64_t)st->sink.released_sent ? (uint64_t)freed : st->sink.released_sent;
}

static void sink_ack_soon(struct stream *st)
{
	if (!event_pending(st->sink.ack_event, EV_TIMEOUT, NULL))
		event_add(st->sink.ack_event, &(struct timeval){ 0, STREAM_ACK_DELAY_US });
}

static void stream_ack_cb(evutil_socket_t fd, short what, void *arg)
{
	struct stream *st = arg;
	struct relay_proto_ack ack;
	uint64_t released, committed;

	(void)fd;
	(void)what;
	released = sink_released(st);
	/*
	 * Never past what the retained batches hold durably: the source keeps
	 * what this site's siblings and relayed destinations could still need
	 * from it, and a crash between a commit here and the fsync there is
	 * made good from the source (stream_sink_position()).
	 */
	committed = st->sink.ack_lsn < sink_retain_bound(st) ? st->sink.ack_lsn : sink_retain_bound(st);
	if (committed <= st->sink.ack_sent_lsn && released <= st->sink.released_sent)
		return;
	ack = (struct relay_proto_ack){
		.stream = relay_proto_str(st->name),
		.committed_lsn = committed,
		.commit_time_us = st->sink.ack_commit_time,
		.generation = st->sink.want_generation,
		.released_bytes = released,
	};
	wire_writer_reset(&st->owner->out);
	if (relay_proto_write_ack(&st->owner->out, &ack) &&
	    stream_send_to(st, stream_sink_upstream(st), st->sink.catchup ? FRAME_CATCHUP_ACK : FRAME_ACK, 0)) {
		bool moved = committed > st->sink.ack_sent_lsn;

		st->sink.ack_sent_lsn = committed;
		st->sink.released_sent = released;
		if (moved)
			(void)fault_hit("sink.ack_sent");
	}
}

/*
 * Cuts an unfinished transaction from the apply queue (it comes again whole).
 * False when part of it had reached the target: the engine rolls back and
 * reconnects, and its ready() asks again.
 */
static bool sink_cut_partial(struct stream *st)
{
	char err[256];

	msgjoin_reset(&st->sink.join);
	if (st->sink.retain && !retain_cut(st->sink.retain, err, sizeof(err)))
		sink_retain_stop(st, err);
	/* the source sends every open streamed transaction again from its start */
	if (st->sink.spill)
		streamspill_reset(st->sink.spill);
	if (st->join)
		streamjoin_restart(st->join);
	if (!st->sink.apply || !apply_drop_partial(st->sink.apply))
		return true;
	st->sink.apply_ready = false;
	return false;
}

bool stream_sink_position(struct stream *st, struct relay_proto_position *pos)
{
	if (!st->sink.apply_ready || !sink_cut_partial(st))
		return false;
	*pos = (struct relay_proto_position){
		.stream = relay_proto_str(st->name),
		.received_lsn = apply_received_lsn(st->sink.apply),
		.committed_lsn = st->sink.ack_lsn,
		.queued_bytes = apply_pending_bytes(st->sink.apply),
	};
	/* committed never passes received on the wire */
	if (pos->received_lsn < pos->committed_lsn)
		pos->received_lsn = pos->committed_lsn;
	/*
	 * The retained batches lost their tail (a crash before their fsync, the
	 * apply's commit was durable): ask from their end, so they get it again;
	 * the apply skips what it has. 0: they never held anything, nothing to
	 * make good (and 0 would ask for a copy).
	 */
	if (sink_retain_bound(st) > 0 && sink_retain_bound(st) < pos->received_lsn) {
		pos->received_lsn = sink_retain_bound(st);
		if (pos->committed_lsn > pos->received_lsn)
			pos->committed_lsn = pos->received_lsn;
	}
	return true;
}

void stream_sink_expect(struct stream *st, uint64_t asked_lsn)
{
	st->sink.asked_lsn = asked_lsn;
	st->sink.expect_seq = 0;
	st->sink.expect_prev = 0;
	st->sink.dec_started = false;
	msgjoin_reset(&st->sink.join);
	if (st->sink.spill)
		streamspill_reset(st->sink.spill);
	/* the queued bytes the sink asked with are the source's window from here */
	st->sink.released_base = sink_freed_total(st);
	st->sink.released_sent = 0;
}

bool stream_sink_hello_position(struct stream *st, struct relay_proto_position *pos)
{
	/* while it takes a sibling's batches, the primary's would only be dropped */
	if (st->sink.halted || st->sink.catchup || !stream_sink_position(st, pos))
		return false;
	/* a stream that needs an initial sync round asks with RESUME once up */
	if (st->sync && !streamsync_sink_hello(st->sync, &pos->received_lsn))
		return false;
	if (st->join && !streamjoin_sink_ready(st->join))
		return false;       /* its resume() asks once it may */
	stream_sink_expect(st, pos->received_lsn);
	return true;
}

/*
 * Asks the source to (re)start after the received position. From here on
 * only batches of the new generation count: older ones may still be on the way.
 */
void stream_sink_send_resume(struct stream *st)
{
	if (st->sink.catchup) {
		stream_relay_resume(st);
		return;
	}
	stream_sink_resume_source(st);
}

void stream_sink_resume_source(struct stream *st)
{
	struct relay_proto_resume_req resume;

	if (!relay_is_up(st->owner->relay, st->peer) || st->sink.halted)
		return;       /* the next HELLO (or the retry) carries it */
	if (!stream_sink_position(st, &resume.pos))
		return;       /* the apply is not ready: its ready() asks */
	if (st->sync && !streamsync_sink_resume(st->sync, st->sink.want_generation + 1,
						&resume.pos.received_lsn))
		return;       /* the initial sync calls stream_sync_resume() when it is time */
	if (st->join && resume.pos.received_lsn != 0 && !streamjoin_sink_ready(st->join))
		return;       /* the join calls stream_sync_resume() when it may */
	st->sink.want_generation++;
	stream_sink_expect(st, resume.pos.received_lsn);
	resume.generation = st->sink.want_generation;
	wire_writer_reset(&st->owner->out);
	if (relay_proto_write_resume(&st->owner->out, &resume) && stream_send(st, FRAME_RESUME, 0))
		log_info("stream \"%s\": asked \"%s\" to resume at " LSN_FMT " (committed " LSN_FMT ", "
			 "%" PRIu64 " bytes queued)%s", st->name, st->peer,
			 LSN_ARGS(resume.pos.received_lsn), LSN_ARGS(resume.pos.committed_lsn),
			 resume.pos.queued_bytes,
			 st->sync && resume.pos.received_lsn == 0 ? " (initial sync)" : "");
}

/* The stream stops here: nothing later is applied until the retry asks again. */
static void sink_halt(struct stream *st, const char *why)
{
	snprintf(st->last_error, sizeof(st->last_error), "%s", why);
	if (!st->sink.halted)
		log_error("stream \"%s\": %s; the stream stops here (nothing after it is applied) "
			  "and asks \"%s\" again in %d s", st->name, why, st->peer,
			  STREAM_APPLY_RETRY_MS / 1000);
	st->sink.halted = true;
	stream_schedule_retry(st, STREAM_APPLY_RETRY_MS);
}

void stream_sink_ask_again(struct stream *st, const char *why)
{
	if (st->sink.halted)
		return;
	if (++st->sink.resends > STREAM_RESENDS_MAX) {
		sink_halt(st, why);
		return;
	}
	log_warning("stream \"%s\": %s; refused, asking \"%s\" again", st->name, why, st->peer);
	stream_sink_send_resume(st);
}

void stream_sink_link_down(struct stream *st)
{
	if (st->sink.apply_ready)
		(void)sink_cut_partial(st);
}

/* The initial sync knows what to ask for now (its state is read, or a round ended). */
static void stream_sync_resume(void *arg)
{
	struct stream *st = arg;

	if (st->sink.apply_ready)
		stream_sink_send_resume(st);
}

static void stream_apply_ready(void *arg, uint64_t resume_lsn)
{
	struct stream *st = arg;

	char err[256];

	st->sink.apply_ready = true;
	st->sink.ack_sent_lsn = st->sink.ack_lsn = resume_lsn;
	/* retained batches that lost their tail keep what they have: the resume makes it good */
	if (st->sink.retain) {
		uint64_t end = retain_end_lsn(st->sink.retain);

		if (!retain_resume(st->sink.retain, end > 0 && end < resume_lsn ? end : resume_lsn,
				   err, sizeof(err)))
			sink_retain_stop(st, err);
	}
	streamjoin_apply_restarted(st->join);
	lag_acked(st->lag, resume_lsn, 0);
	st->last_error[0] = '\0';
	stream_sink_send_resume(st);
}

static void stream_apply_committed(void *arg, uint64_t end_lsn, int64_t commit_time_us)
{
	struct stream *st = arg;

	lag_acked(st->lag, end_lsn, commit_time_us);
	if (end_lsn > st->sink.ack_lsn) {
		st->sink.ack_lsn = end_lsn;
		st->sink.ack_commit_time = commit_time_us;
	}
	sink_ack_soon(st);
	stream_verify_sink_progress(st);
	if (st->sync)
		streamsync_committed(st->sync, end_lsn);
	if (st->join)
		streamjoin_committed(st->join, end_lsn);
	if (st->sink.retain)
		sink_retain_trim(st);
	if (st->sink.catchup)
		stream_catchup_committed(st);
	sink_spill_go_on(st);
}

static void stream_apply_idle(void *arg)
{
	struct stream *st = arg;

	if (st->join)
		streamjoin_idle(st->join);
}

/* The apply freed batches inside a large transaction: the source may send more. */
static void stream_apply_released(void *arg)
{
	struct stream *st = arg;

	if (st->join)
		streamjoin_pump(st->join);
	sink_ack_soon(arg);
	sink_spill_go_on(arg);
}

static void stream_apply_stopped(void *arg, const char *reason)
{
	struct stream *st = arg;

	snprintf(st->last_error, sizeof(st->last_error), "%s", reason);
	st->sink.apply_ready = false;
	stream_verify_sink_stop(st, "the apply stopped");
	log_warning("stream \"%s\": paused; retrying every %d s", st->name, STREAM_APPLY_RETRY_MS / 1000);
	stream_schedule_retry(st, STREAM_APPLY_RETRY_MS);
}

void stream_sink_retry(struct stream *st)
{
	if (st->sink.halted) {
		st->sink.halted = false;
		st->sink.resends = 0;
		st->last_error[0] = '\0';
		log_info("stream \"%s\": asking \"%s\" again", st->name, st->peer);
		stream_sink_send_resume(st);
	}
	if (st->sink.apply && apply_is_stopped(st->sink.apply)) {
		log_info("stream \"%s\": retrying apply", st->name);
		if (!apply_resume(st->sink.apply))
			stream_schedule_retry(st, STREAM_APPLY_RETRY_MS);
	}
}

/*
 * A resume asked below what the apply committed, to make good the retained
 * batches' lost tail, and the source no longer has it: the apply misses
 * nothing (it has everything up to ack_lsn), only the retained batches, which
 * start over at prev. True when that is the case (logged).
 */
static bool sink_retain_hole(struct stream *st, uint64_t prev)
{
	char err[256];

	if (!sink_retain_live(st) || prev > st->sink.ack_lsn)
		return false;
	log_warning("stream \"%s\": \"%s\" no longer holds what the retained batches lost (after "
		    LSN_FMT "): they start over at " LSN_FMT ", a sibling below it gets a gap",
		    st->name, st->peer, LSN_ARGS(st->sink.asked_lsn), LSN_ARGS(prev));
	if (!retain_resume(st->sink.retain, prev, err, sizeof(err)))
		sink_retain_stop(st, err);
	return true;
}

/* Whether b follows what came before in its generation; why not into why. */
static bool sink_follows(const struct stream *st, const struct relay_proto_batch *b,
		char *why, size_t whylen)
{
	if (b->seq != st->sink.expect_seq) {
		snprintf(why, whylen, "batch %u of generation %u arrived where batch %u was due "
			 "(a batch is missing)", b->seq, b->generation, st->sink.expect_seq);
		return false;
	}
	if (b->seq > 0 && b->prev_lsn != st->sink.expect_prev) {
		snprintf(why, whylen, "batch %u continues from " LSN_FMT ", but the one before ended at "
			 LSN_FMT, b->seq, LSN_ARGS(b->prev_lsn), LSN_ARGS(st->sink.expect_prev));
		return false;
	}
	return true;
}

/* Whole messages, nothing streamed in them: through the initial sync's filter to the apply. */
static bool sink_deliver(void *arg, const uint8_t *body, size_t len)
{
	struct stream *st = arg;

	if (st->sync && !streamsync_filter(st->sync, body, len, &body, &len)) {
		st->sink.filter_failed = true;
		return false;
	}
	switch (st->join ? streamjoin_gate(st->join, body, len, &body, &len) : STREAMJOIN_PASS) {
	case STREAMJOIN_PASS:
		break;
	case STREAMJOIN_REFUSE:
		st->sink.join_refused = true;
		return false;
	case STREAMJOIN_BROKEN:
		st->sink.filter_failed = true;
		return false;
	}
	if (len == 0)
		return true;
	if (!apply_submit(st->sink.apply, body, len))
		return false;
	sink_retain_take(st, body, len);
	return true;
}

/* A replay hands the apply more only while it holds less than this. */
#define SINK_REPLAY_ROOM (8u * 1024u * 1024u)

static bool sink_room(void *arg)
{
	const struct stream *st = arg;

	return apply_pending_bytes(st->sink.apply) < SINK_REPLAY_ROOM;
}

static uint64_t sink_received(void *arg)
{
	const struct stream *st = arg;

	return apply_received_lsn(st->sink.apply);
}

static const struct streamspill_env *sink_spill_env(struct stream *st)
{
	static struct streamspill_env env = { sink_deliver, sink_room, sink_received, NULL };

	env.arg = st;
	return &env;
}

/* How the spill went; false when the batch was refused or the stream stopped (handled). */
static bool sink_spill_result(struct stream *st, enum streamspill_result r, const char *why)
{
	char msg[512];

	switch (r) {
	case STREAMSPILL_DONE:
	case STREAMSPILL_WAITING:
		return true;
	case STREAMSPILL_REFUSED:
		if (st->sink.join_refused) {
			/* asked again once the joining table is recorded (streamjoin_sink_ready()) */
			st->sink.join_refused = false;
			stream_sink_send_resume(st);
		} else if (st->sink.filter_failed) {
			st->sink.filter_failed = false;
			sink_halt(st, "a batch could not go through the initial sync's filter (logged)");
		} else {
			stream_sink_ask_again(st, "a batch could not be queued for the apply (logged)");
		}
		return false;
	case STREAMSPILL_BROKEN:
		snprintf(msg, sizeof(msg), "streamed transactions from \"%s\": %s", st->peer, why);
		sink_halt(st, msg);
		return false;
	case STREAMSPILL_IOERR:
		snprintf(msg, sizeof(msg), "streamed transactions: %s", why);
		sink_halt(st, msg);
		return false;
	}
	return false;
}

/* A batch's whole messages: to the apply, or held while their transaction streams. */
static bool sink_take(struct stream *st, const uint8_t *body, size_t len)
{
	char why[256] = "";

	return sink_spill_result(st, streamspill_take(st->sink.spill, body, len, sink_spill_env(st),
						      why, sizeof(why)), why);
}

/* The apply has room again: a waiting replay goes on. */
static void sink_spill_go_on(struct stream *st)
{
	char why[256] = "";

	if (st->sink.spill && streamspill_busy(st->sink.spill) && st->sink.apply_ready &&
	    !st->sink.halted)
		(void)sink_spill_result(st, streamspill_run(st->sink.spill, sink_spill_env(st), why,
							    sizeof(why)), why);
}

/*
 * The whole messages a batch completes (pieces of a large one are joined
 * first); false when it was refused (handled).
 */
static bool sink_join(struct stream *st, const struct relay_proto_batch *b,
		const uint8_t **body, size_t *body_len)
{
	char why[256], msg[512];

	switch (msgjoin_take(&st->sink.join, *body, *body_len, b->flags & RELAY_BATCH_CONTINUES,
			     body, body_len, why, sizeof(why))) {
	case MSGJOIN_OK:
		return true;
	case MSGJOIN_TOO_BIG:
		snprintf(msg, sizeof(msg), "batch %u from \"%s\": %s", b->seq, st->peer, why);
		sink_halt(st, msg);
		return false;
	case MSGJOIN_NOMEM:
	case MSGJOIN_BROKEN:
		break;
	}
	snprintf(msg, sizeof(msg), "batch %u from \"%s\": %s", b->seq, st->peer, why);
	stream_sink_ask_again(st, msg);
	return false;
}

void stream_sink_batch(struct stream *st, const struct relay_proto_batch *b)
{
	const uint8_t *body;
	size_t body_len;
	char err[256], why[512];

	if (st->sink.halted || !st->sink.apply_ready || b->generation != st->sink.want_generation)
		return;       /* halted, paused, or sent before our last RESUME: asked for again */
	(void)fault_hit("sink.batch_received");
	if (b->seq == 0 && st->sink.asked_lsn && b->prev_lsn > st->sink.asked_lsn &&
	    !sink_retain_hole(st, b->prev_lsn)) {
		/*
		 * The source has nothing between what was asked for and where it
		 * sends from (asked 0: the sink has nothing, any start will do),
		 * and the apply lacks it too.
		 */
		snprintf(why, sizeof(why), "gap: asked \"%s\" to resume after " LSN_FMT " but its first "
			 "batch continues from " LSN_FMT, st->peer, LSN_ARGS(st->sink.asked_lsn),
			 LSN_ARGS(b->prev_lsn));
		sink_halt(st, why);
		return;
	}
	if (!sink_follows(st, b, why, sizeof(why))) {
		stream_sink_ask_again(st, why);
		return;
	}
	if (!st->sink.dec_started) {
		/* the source started a new compression frame for this generation */
		codec_reset(st->sink.dec);
		st->sink.dec_started = true;
	}
	if (b->raw_len > STREAM_RAW_MAX) {
		snprintf(why, sizeof(why), "a batch of %u bytes from \"%s\" is over the limit of %u",
			 b->raw_len, st->peer, STREAM_RAW_MAX);
		sink_halt(st, why);
		return;
	}
	if (!codec_run(st->sink.dec, b->data, b->data_len, b->raw_len, &body, &body_len, err, sizeof(err)) ||
	    body_len != b->raw_len) {
		/* the compression window is lost: ask again from a fresh context */
		snprintf(why, sizeof(why), "bad BATCH from \"%s\": %s", st->peer,
			 body_len != b->raw_len ? "size differs from its header" : err);
		stream_sink_ask_again(st, why);
		return;
	}
	if (!sink_join(st, b, &body, &body_len))
		return;
	if (body_len && !sink_take(st, body, body_len))
		return;
	/* what the spill took is freed: the window opens without waiting for a commit */
	if (sink_released(st) > st->sink.released_sent)
		sink_ack_soon(st);
	msgjoin_done(&st->sink.join);
	st->sink.expect_seq++;
	st->sink.expect_prev = b->last_lsn ? b->last_lsn : b->prev_lsn;
	st->sink.resends = 0;
	st->sink.batches_received++;
	/* the sink does not know the commit time before applying: it ages from arrival */
	if (b->last_lsn) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		lag_commit_sent(st->lag, b->last_lsn, (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000);
		lag_wal_position(st->lag, b->last_lsn);
	}
}

static bool sink_join_submit(void *arg, const uint8_t *body, size_t len)
{
	const struct stream *st = arg;

	return apply_submit(st->sink.apply, body, len);
}

static size_t sink_join_pending(void *arg)
{
	const struct stream *st = arg;

	return apply_pending_bytes(st->sink.apply);
}

/* Tables that join later: their held changes share the stream's spill directory. */
static bool sink_join_init(struct stream *st, const char *state_dir)
{
	static struct streamjoin_env env = { sink_join_submit, sink_room, sink_received,
					     sink_join_pending, stream_sync_resume, NULL };
	char *dir;

	env.arg = st;
	if (asprintf(&dir, "%s/spill/%s", state_dir, st->name) < 0)
		return false;
	st->join = streamjoin_new_sink(st->owner->base, st->owner->relay, st->name, st->peer,
				       st->sink.sink_conninfo, dir, &env);
	free(dir);
	return st->join != NULL;
}

bool stream_sink_init(struct stream *st, const struct strait_config *cfg, size_t self)
{
	static const struct apply_callbacks cb = {
		.ready = stream_apply_ready,
		.committed = stream_apply_committed,
		.stopped = stream_apply_stopped,
		.released = stream_apply_released,
		.idle = stream_apply_idle,
	};
	const struct config_stream *cs = st->cs;
	const struct config_site *target = &cfg->sites[self];
	struct apply_config acfg = {
		.conninfo = target->database,
		.stream = cs->name,
		.on_conflict = cs->on_conflict == CONFIG_CONFLICT_SOURCE_WINS ? APPLY_CONFLICT_SOURCE_WINS :
			       cs->on_conflict == CONFIG_CONFLICT_TARGET_WINS ? APPLY_CONFLICT_TARGET_WINS :
			       APPLY_CONFLICT_ERROR,
		.workers = cs->apply_workers,
	};
	struct streams *s = st->owner;
	char *spill_dir, err[256] = "out of memory";

	st->role = STREAM_ROLE_SINK;
	st->peer = strdup(cfg->sites[cs->from].name);
	st->sink.sink_conninfo = strdup(target->database);
	st->sink.dec = codec_new_decoder(cs->codec);
	st->sink.seq_writer = seq_writer_new(s->base, target->database, st->name);
	st->sink.ack_event = event_new(s->base, -1, 0, stream_ack_cb, st);
	msgjoin_init(&st->sink.join, STREAM_MESSAGE_MAX);
	if (asprintf(&spill_dir, "%s/spill/%s", cfg->state_dir, cs->name) < 0)
		spill_dir = NULL;
	st->sink.spill = spill_dir ? streamspill_new(spill_dir, err, sizeof(err)) : NULL;
	free(spill_dir);
	if (!st->sink.spill) {
		/* without it a streamed transaction could not be taken: not a stream to start */
		log_error("stream \"%s\": %s", st->name, err);
		return false;
	}
	if (!st->peer || !st->sink.sink_conninfo || !st->sink.dec || !st->sink.seq_writer || !st->sink.ack_event)
		return false;
	st->sink.apply = apply_new(s->base, &acfg, &cb, st);
	if (!st->sink.apply)
		log_error("stream \"%s\": could not create the apply engine", st->name);
	if (cs->initial_sync &&
	    !(st->sync = streamsync_new_sink(s->base, s->relay, st->name, st->peer, target->database,
					     cs->codec, stream_sync_resume, st)))
		return false;
	if (cs->initial_sync && !sink_join_init(st, cfg->state_dir))
		return false;
	sink_retain_open(st, cfg);
	if (st->relay && !stream_relay_start(st))
		return false;
	return true;
}

void stream_sink_fini(struct stream *st)
{
	stream_verify_sink_stop(st, "the stream stopped here");
	stream_catchup_free(st);
	if (st->sink.retain_event) {
		event_free(st->sink.retain_event);
		st->sink.retain_event = NULL;
	}
	retain_serve_forget(st->owner->serve, st->sink.retain);
	retain_close(st->sink.retain);
	st->sink.retain = NULL;
	free(st->sink.sink_conninfo);
	st->sink.sink_conninfo = NULL;
	seq_writer_free(st->sink.seq_writer);
	if (st->sink.apply)
		apply_free(st->sink.apply);
	codec_free(st->sink.dec);
	msgjoin_free(&st->sink.join);
	streamspill_free(st->sink.spill);
	st->sink.spill = NULL;
	if (st->sink.ack_event)
		event_free(st->sink.ack_event);
}

void stream_sink_status(const struct stream *st, struct json_out *j)
{
	json_bool(j, "apply_ready", st->sink.apply_ready);
	json_string(j, "relay", st->relay);
	json_bool(j, "halted", st->sink.halted);
	json_lsn(j, "received_lsn", st->sink.apply ? apply_received_lsn(st->sink.apply) : 0);
	json_lsn(j, "committed_lsn", st->sink.ack_lsn);
	json_lsn(j, "acked_lsn", st->sink.ack_sent_lsn);
	json_uint(j, "queued_bytes", st->sink.apply ? apply_pending_bytes(st->sink.apply) : 0);
	json_uint(j, "batches_received", st->sink.batches_received);
	json_uint(j, "joining_bytes", msgjoin_pending(&st->sink.join));
	if (st->sink.spill) {
		json_object_begin(j, "streamed");
		json_uint(j, "open", streamspill_open_count(st->sink.spill));
		json_uint(j, "spilled_bytes", streamspill_spilled_bytes(st->sink.spill));
		json_uint(j, "committed", streamspill_committed_count(st->sink.spill));
		json_uint(j, "aborted", streamspill_aborted_count(st->sink.spill));
		json_object_end(j);
	}
	if (st->sink.retain && retain_spool(st->sink.retain)) {
		json_object_begin(j, "retained");
		json_lsn(j, "floor_lsn", retain_floor_lsn(st->sink.retain));
		json_lsn(j, "end_lsn", retain_end_lsn(st->sink.retain));
		json_uint(j, "bytes", spool_bytes(retain_spool(st->sink.retain)));
		json_object_end(j);
	}
	if (st->sink.apply)
		apply_status_json(st->sink.apply, j, "apply");
	if (st->sink.seq_writer)
		seq_writer_status_json(st->sink.seq_writer, j);
}
