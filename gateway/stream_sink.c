/*
 * stream_sink.c — the sink side of a stream: decompress BATCH frames, apply
 * them to the target, ACK what committed, and say where to resume.
 *
 * The apply engine connects to the target and reports its origin position;
 * the sink sends it as RESUME (and in every HELLO). BATCH frames are
 * decompressed and submitted; each committed source transaction is ACKed
 * (coalesced: one ACK per STREAM_ACK_DELAY_US at most). When the apply stops on an
 * error the stream pauses; it retries on a timer, and its next ready() sends
 * a RESUME, so whatever was dropped meanwhile is sent again.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "gateway/codec.h"
#include "gateway/json.h"
#include "gateway/lag.h"
#include "gateway/log.h"
#include "gateway/relay.h"
#include "gateway/relay_proto.h"
#include "gateway/stream_int.h"
#include "gateway/streamsync.h"
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
	if (st->seq_writer && !seq_writer_apply(st->seq_writer, vals, n))
		log_error("stream \"%s\": out of memory queueing sequence values", st->name);
	for (size_t i = 0; i < n; i++) {
		free(vals[i].schema);
		free(vals[i].name);
	}
}

static void stream_ack_cb(evutil_socket_t fd, short what, void *arg)
{
	struct stream *st = arg;
	struct relay_proto_ack ack;

	(void)fd;
	(void)what;
	if (st->ack_lsn <= st->ack_sent_lsn)
		return;
	ack = (struct relay_proto_ack){
		.stream = relay_proto_str(st->name),
		.applied_lsn = st->ack_lsn,
		.commit_time_us = st->ack_commit_time,
	};
	wire_writer_reset(&st->owner->out);
	if (relay_proto_write_ack(&st->owner->out, &ack) && stream_send(st, FRAME_ACK, 0))
		st->ack_sent_lsn = st->ack_lsn;
}

/*
 * Asks the source to (re)start at next_lsn. From here on only batches of the
 * new generation count: older ones may still be on the way.
 */
void stream_sink_send_resume(struct stream *st)
{
	struct relay_proto_resume_req resume = {
		.stream = relay_proto_str(st->name),
		.lsn = st->next_lsn,
	};

	if (!relay_is_up(st->owner->relay, st->peer))
		return;       /* the next HELLO carries it */
	if (st->sync && !streamsync_sink_resume(st->sync, st->want_generation + 1, &resume.lsn))
		return;       /* the initial sync calls stream_sync_resume() when it is time */
	st->want_generation++;
	st->dec_started = false;
	resume.generation = st->want_generation;
	wire_writer_reset(&st->owner->out);
	if (relay_proto_write_resume(&st->owner->out, &resume) && stream_send(st, FRAME_RESUME, 0))
		log_info("stream \"%s\": asked \"%s\" to resume at %X/%X%s", st->name, st->peer,
			 (unsigned)(resume.lsn >> 32), (unsigned)resume.lsn,
			 st->sync && resume.lsn == 0 ? " (initial sync)" : "");
}

/* The initial sync knows what to ask for now (its state is read, or a round ended). */
static void stream_sync_resume(void *arg)
{
	struct stream *st = arg;

	if (st->apply_ready)
		stream_sink_send_resume(st);
}

static void stream_apply_ready(void *arg, uint64_t resume_lsn)
{
	struct stream *st = arg;

	st->apply_ready = true;
	st->next_lsn = resume_lsn;
	st->ack_sent_lsn = st->ack_lsn = resume_lsn;
	lag_acked(st->lag, resume_lsn, 0);
	st->last_error[0] = '\0';
	stream_sink_send_resume(st);
}

static void stream_apply_committed(void *arg, uint64_t end_lsn, int64_t commit_time_us)
{
	struct stream *st = arg;

	lag_acked(st->lag, end_lsn, commit_time_us);
	if (end_lsn > st->ack_lsn) {
		st->ack_lsn = end_lsn;
		st->ack_commit_time = commit_time_us;
	}
	if (!event_pending(st->ack_event, EV_TIMEOUT, NULL))
		event_add(st->ack_event, &(struct timeval){ 0, STREAM_ACK_DELAY_US });
	stream_verify_sink_progress(st);
}

static void stream_apply_stopped(void *arg, const char *reason)
{
	struct stream *st = arg;

	snprintf(st->last_error, sizeof(st->last_error), "%s", reason);
	st->apply_ready = false;
	stream_verify_sink_stop(st, "the apply stopped");
	log_warning("stream \"%s\": paused; retrying every %d s", st->name, STREAM_APPLY_RETRY_MS / 1000);
	stream_schedule_retry(st, STREAM_APPLY_RETRY_MS);
}

void stream_sink_retry(struct stream *st)
{
	if (st->apply && apply_is_stopped(st->apply)) {
		log_info("stream \"%s\": retrying apply", st->name);
		if (!apply_resume(st->apply))
			stream_schedule_retry(st, STREAM_APPLY_RETRY_MS);
	}
}

void stream_sink_batch(struct stream *st, const struct frame *f)
{
	struct relay_proto_batch b;
	enum relay_proto_status ps;
	const uint8_t *body;
	size_t body_len;
	char err[256];

	ps = relay_proto_read_batch(f->payload, f->payload_len, &b);
	if (ps != RELAY_PROTO_OK) {
		log_error("stream \"%s\": malformed BATCH from \"%s\": %s", st->name, st->peer,
			  relay_proto_status_str(ps));
		return;
	}
	if (!st->apply_ready || b.generation != st->want_generation)
		return;       /* paused, or sent before our last RESUME: asked for again */
	if (!st->dec_started) {
		/* the source started a new compression frame for this generation */
		codec_reset(st->dec);
		st->dec_started = true;
	}
	if (b.raw_len > STREAM_RAW_MAX) {
		log_error("stream \"%s\": BATCH of %u bytes is over the limit", st->name, b.raw_len);
		return;
	}
	if (!codec_run(st->dec, b.data, b.data_len, b.raw_len, &body, &body_len, err, sizeof(err)) ||
	    body_len != b.raw_len) {
		log_error("stream \"%s\": bad BATCH from \"%s\": %s", st->name, st->peer,
			  body_len != b.raw_len ? "size differs from its header" : err);
		/* The window is lost: ask for everything again from a fresh context. */
		stream_sink_send_resume(st);
		return;
	}
	if (st->sync && !streamsync_filter(st->sync, body, body_len, &body, &body_len))
		return;       /* logged */
	if (!apply_submit(st->apply, body, body_len))
		return;       /* logged by the apply engine; the stream stops there */
	st->batches_received++;
	/* the sink does not know the commit time before applying: it ages from arrival */
	if (b.last_lsn) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		lag_commit_sent(st->lag, b.last_lsn, (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000);
		lag_wal_position(st->lag, b.last_lsn);
	}
	if (b.last_lsn > st->next_lsn)
		st->next_lsn = b.last_lsn;
}

bool stream_sink_init(struct stream *st, const struct strait_config *cfg, size_t self)
{
	static const struct apply_callbacks cb = {
		.ready = stream_apply_ready,
		.committed = stream_apply_committed,
		.stopped = stream_apply_stopped,
	};
	const struct config_stream *cs = st->cs;
	const struct config_site *target = &cfg->sites[self];
	struct apply_config acfg = {
		.conninfo = target->database,
		.stream = cs->name,
		.on_conflict = cs->on_conflict == CONFIG_CONFLICT_SOURCE_WINS ? APPLY_CONFLICT_SOURCE_WINS :
			       cs->on_conflict == CONFIG_CONFLICT_TARGET_WINS ? APPLY_CONFLICT_TARGET_WINS :
			       APPLY_CONFLICT_ERROR,
	};
	struct streams *s = st->owner;

	st->role = STREAM_ROLE_SINK;
	st->peer = strdup(cfg->sites[cs->from].name);
	st->sink_conninfo = strdup(target->database);
	st->dec = codec_new_decoder(cs->codec);
	st->seq_writer = seq_writer_new(s->base, target->database, st->name);
	st->ack_event = event_new(s->base, -1, 0, stream_ack_cb, st);
	if (!st->peer || !st->sink_conninfo || !st->dec || !st->seq_writer || !st->ack_event)
		return false;
	st->apply = apply_new(s->base, &acfg, &cb, st);
	if (!st->apply)
		log_error("stream \"%s\": could not create the apply engine", st->name);
	if (cs->initial_sync &&
	    !(st->sync = streamsync_new_sink(s->base, s->relay, st->name, st->peer, target->database,
					     cs->codec, stream_sync_resume, st)))
		return false;
	return true;
}

void stream_sink_fini(struct stream *st)
{
	stream_verify_sink_stop(st, "the stream stopped here");
	free(st->sink_conninfo);
	st->sink_conninfo = NULL;
	seq_writer_free(st->seq_writer);
	if (st->apply)
		apply_free(st->apply);
	codec_free(st->dec);
	if (st->ack_event)
		event_free(st->ack_event);
}

void stream_sink_status(const struct stream *st, struct json_out *j)
{
	json_bool(j, "apply_ready", st->apply_ready);
	json_lsn(j, "received_lsn", st->next_lsn);
	json_lsn(j, "acked_lsn", st->ack_sent_lsn);
	json_uint(j, "batches_received", st->batches_received);
	if (st->apply)
		apply_status_json(st->apply, j, "apply");
	if (st->seq_writer)
		seq_writer_status_json(st->seq_writer, j);
}
