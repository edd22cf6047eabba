/*
 * stream.c — sources and sinks of this site's streams, joined by the relay
 * link (see stream.h).
 *
 * NOTES
 * Source side. The source connects and sets up as soon as the daemon starts,
 * but streams only once the relay link to the sink is up and the sink has
 * said where to resume (HELLO or RESUME). A lost link, a RESUME while
 * streaming, or a failed source connection all end the same way: the source
 * is dropped and made anew (after a backoff when it failed), and waits for
 * the next resume position. Batches are compressed with the stream's codec
 * and sent as BATCH frames; when the link's output is full the source stops
 * reading (the slot then holds WAL) until the relay says it drained.
 *
 * Sink side. The apply engine connects to the target and reports its origin
 * position; the sink sends it as RESUME (and in every HELLO). BATCH frames are
 * decompressed and submitted; each committed source transaction is ACKed
 * (coalesced: one ACK per loop pass at most). When the apply stops on an
 * error the stream pauses; it retries on a timer, and its next ready() sends
 * a RESUME, so whatever was dropped meanwhile is sent again.
 *
 * Partial transactions. A transaction larger than one batch spans several;
 * such batches carry first_lsn = last_lsn = 0. Whatever interrupts them, the
 * source resends the transaction from its Begin, and the apply engine rolls
 * back a transaction that a new Begin interrupts.
 */
#include "gateway/stream.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "config/config.h"
#include "gateway/codec.h"
#include "gateway/frame.h"
#include "gateway/json.h"
#include "gateway/lag.h"
#include "gateway/log.h"
#include "gateway/relay.h"
#include "gateway/relay_proto.h"
#include "gateway/streamsync.h"
#include "gateway/wire.h"
#include "replicator/apply.h"
#include "replicator/sequences.h"
#include "replicator/source.h"

#define STREAM_RETRY_MIN_MS 1000
#define STREAM_RETRY_MAX_MS 30000
#define STREAM_APPLY_RETRY_MS 5000
#define STREAM_BATCH_MAX (256u * 1024u)
#define STREAM_SEQUENCE_POLL_MS 5000
#define STREAM_MAX_SEQUENCES 4096
/* A sink refuses batches that claim to inflate beyond this. */
#define STREAM_RAW_MAX (64u * 1024u * 1024u)

enum stream_role {
	STREAM_ROLE_NONE,        /* this site neither sends nor receives it */
	STREAM_ROLE_SOURCE,
	STREAM_ROLE_SINK,
};

struct stream {
	struct streams *owner;
	char *name;
	char *peer;              /* the site at the other end */
	enum stream_role role;
	enum config_codec codec_kind;
	int codec_level;
	enum config_durability durability;
	struct streamsync *sync; /* initial sync (initial_sync: true), else NULL */

	/* source side */
	struct source_config src_cfg;
	char *src_conninfo;
	char *src_publication;
	char **src_tables;
	struct source *source;
	struct codec *enc;
	bool have_resume;
	uint64_t resume_lsn;
	uint32_t generation;     /* of the resume being served; stamped on batches */
	bool streaming;
	unsigned failures;
	struct event *retry;     /* source re-creation, or apply resume */
	uint64_t acked_lsn;
	int64_t acked_commit_time;
	uint64_t batches_sent;
	uint64_t bytes_raw;
	uint64_t bytes_wire;
	struct seq_reader *seq_reader;
	struct lag *lag;         /* both sides: this end's view of the stream's lag */
	uint64_t sequence_frames;

	/* sink side */
	struct seq_writer *seq_writer;
	struct apply *apply;
	struct codec *dec;
	bool apply_ready;
	uint64_t next_lsn;       /* where the source should resume from */
	uint32_t want_generation; /* batches of other generations are stale */
	bool in_hello;           /* our last HELLO to the peer named this stream */
	bool dec_started;        /* the decoder has seen this generation's first batch */
	uint64_t ack_lsn;        /* committed, to ACK */
	int64_t ack_commit_time;
	uint64_t ack_sent_lsn;
	struct event *ack_event;
	uint64_t batches_received;
	char last_error[256];
};

struct streams {
	struct event_base *base;
	struct relay *relay;
	struct stream *v;
	size_t n;
	struct wire_writer out;  /* frame payloads, reused */
};

static void stream_source_make(struct stream *st);

static bool stream_send(struct stream *st, enum frame_type type, uint8_t flags)
{
	struct streams *s = st->owner;

	return wire_writer_ok(&s->out) &&
	       relay_send(s->relay, st->peer, type, flags, s->out.data, s->out.len);
}

/* ---------------------------------------------------------------- source */

static bool stream_source_batch(void *arg, const uint8_t *body, size_t len,
		const struct source_batch_info *info)
{
	struct stream *st = arg;
	struct streams *s = st->owner;
	struct relay_proto_batch b;
	const uint8_t *wire;
	size_t wire_len;
	char err[256];

	if (!codec_run(st->enc, body, len, SIZE_MAX, &wire, &wire_len, err, sizeof(err))) {
		log_error("stream \"%s\": %s", st->name, err);
		return false;
	}
	b = (struct relay_proto_batch){
		.stream = relay_proto_str(st->name),
		.first_lsn = info->commit_end_lsn ? info->first_lsn : 0,
		.last_lsn = info->commit_end_lsn,
		.generation = st->generation,
		.raw_len = (uint32_t)len,
		.data = wire,
		.data_len = wire_len,
	};
	wire_writer_reset(&s->out);
	if (!relay_proto_write_batch(&s->out, &b) ||
	    !stream_send(st, FRAME_BATCH, codec_compresses(st->enc) ? FRAME_FLAG_COMPRESSED : 0)) {
		/* The link went down under us: the next HELLO says where to go on. */
		return true;
	}
	st->batches_sent++;
	st->bytes_raw += len;
	st->bytes_wire += wire_len;
	if (info->commit_end_lsn)
		lag_commit_sent(st->lag, info->commit_end_lsn, info->commit_time);
	/* a transaction that spans batches is open until its last part */
	lag_set_pending(st->lag, info->commit_end_lsn == 0);
	if (relay_output_pending(s->relay, st->peer) >= RELAY_OUTPUT_HIGH) {
		lag_set_pending(st->lag, true);       /* reading stops: changes wait in the slot */
		return false;
	}
	return true;
}

static void stream_source_try_start(struct stream *st)
{
	if (st->streaming || !st->have_resume || !st->source || !source_is_ready(st->source) ||
	    !relay_is_up(st->owner->relay, st->peer))
		return;
	codec_reset(st->enc);
	if (source_start(st->source, st->resume_lsn))
		st->streaming = true;
}

static void stream_source_ready(void *arg, uint64_t confirmed_lsn)
{
	struct stream *st = arg;

	/* the slot's confirmed position: applied at the sink, at least */
	lag_acked(st->lag, confirmed_lsn, 0);
	st->failures = 0;
	if (st->sync)
		streamsync_source_ready(st->sync, st->source);
	stream_source_try_start(st);
}

static void stream_source_wal(void *arg, uint64_t wal_end, int64_t server_time_us)
{
	struct stream *st = arg;

	(void)server_time_us;
	lag_wal_position(st->lag, wal_end);
}

static void stream_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct stream *st = arg;

	(void)fd;
	(void)what;
	if (st->role == STREAM_ROLE_SOURCE) {
		source_free(st->source);
		st->source = NULL;
		stream_source_make(st);
	} else if (st->apply && apply_is_stopped(st->apply)) {
		log_info("stream \"%s\": retrying apply", st->name);
		if (!apply_resume(st->apply))
			event_add(st->retry, &(struct timeval){ STREAM_APPLY_RETRY_MS / 1000, 0 });
	}
}

static void stream_schedule_retry(struct stream *st, unsigned ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	event_add(st->retry, &tv);
}

/* The source failed; it may not be freed inside its own callback: retry from a timer. */
static void stream_source_stopped(void *arg, const char *reason)
{
	struct stream *st = arg;
	unsigned ms = STREAM_RETRY_MIN_MS;

	snprintf(st->last_error, sizeof(st->last_error), "%s", reason);
	st->streaming = false;
	st->have_resume = false;
	for (unsigned i = 0; i < st->failures && ms < STREAM_RETRY_MAX_MS; i++)
		ms *= 2;
	if (ms > STREAM_RETRY_MAX_MS)
		ms = STREAM_RETRY_MAX_MS;
	st->failures++;
	stream_schedule_retry(st, ms);
}

static void stream_source_make(struct stream *st)
{
	static const struct source_callbacks cb = {
		.ready = stream_source_ready,
		.batch = stream_source_batch,
		.wal_position = stream_source_wal,
		.stopped = stream_source_stopped,
	};

	st->streaming = false;
	st->source = source_new(st->owner->base, &st->src_cfg, &cb, st);
	if (!st->source) {
		log_error("stream \"%s\": out of memory creating the source", st->name);
		stream_schedule_retry(st, STREAM_RETRY_MAX_MS);
	}
}

/* Drops a streaming source (it must start over from a new resume position). */
static void stream_source_restart(struct stream *st)
{
	if (!st->source || !st->streaming)
		return;
	source_free(st->source);
	st->source = NULL;
	stream_source_make(st);
}

static void stream_source_resume_at(struct stream *st, uint64_t lsn, uint32_t generation)
{
	if (st->streaming)
		stream_source_restart(st);
	if (st->sync && lsn == 0) {
		/* the sink asks for a copy round; it says where to stream once loaded */
		st->have_resume = false;
		streamsync_source_request(st->sync, generation, st->source);
		return;
	}
	if (st->sync)
		streamsync_source_stop(st->sync);
	st->have_resume = true;
	st->resume_lsn = lsn;
	st->generation = generation;
	stream_source_try_start(st);
}

static void stream_source_ack(struct stream *st, const struct relay_proto_ack *ack)
{
	lag_acked(st->lag, ack->applied_lsn, ack->commit_time_us);
	if (ack->applied_lsn <= st->acked_lsn)
		return;
	st->acked_lsn = ack->applied_lsn;
	st->acked_commit_time = ack->commit_time_us;
	if (st->source)
		source_confirm(st->source, ack->applied_lsn);
}

/* ------------------------------------------------------------- sequences */

static void stream_sequences_changed(void *arg, const struct seq_value *seqs, size_t n)
{
	static struct relay_proto_sequence list[STREAM_MAX_SEQUENCES];
	struct stream *st = arg;
	struct relay_proto_sequences m = { .stream = relay_proto_str(st->name), .seqs = list };

	if (!relay_is_up(st->owner->relay, st->peer)) {
		/* sent in full once the link is back */
		seq_reader_resend_all(st->seq_reader);
		return;
	}
	for (size_t done = 0; done < n; done += m.nseqs) {
		m.nseqs = n - done < STREAM_MAX_SEQUENCES ? n - done : STREAM_MAX_SEQUENCES;
		for (size_t i = 0; i < m.nseqs; i++) {
			list[i].schema = relay_proto_str(seqs[done + i].schema);
			list[i].name = relay_proto_str(seqs[done + i].name);
			list[i].value = seqs[done + i].value;
		}
		wire_writer_reset(&st->owner->out);
		if (!relay_proto_write_sequences(&st->owner->out, &m) ||
		    !stream_send(st, FRAME_SEQUENCES, 0)) {
			seq_reader_resend_all(st->seq_reader);
			return;
		}
		st->sequence_frames++;
	}
}

static void stream_sink_sequences(struct stream *st, const struct relay_proto_sequences *m)
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

/* ------------------------------------------------------------------ sink */

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
static void stream_send_resume(struct stream *st)
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
		stream_send_resume(st);
}

static void stream_apply_ready(void *arg, uint64_t resume_lsn)
{
	struct stream *st = arg;

	st->apply_ready = true;
	st->next_lsn = resume_lsn;
	st->ack_sent_lsn = st->ack_lsn = resume_lsn;
	lag_acked(st->lag, resume_lsn, 0);
	st->last_error[0] = '\0';
	stream_send_resume(st);
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
		event_active(st->ack_event, EV_TIMEOUT, 0);
}

static void stream_apply_stopped(void *arg, const char *reason)
{
	struct stream *st = arg;

	snprintf(st->last_error, sizeof(st->last_error), "%s", reason);
	st->apply_ready = false;
	log_warning("stream \"%s\": paused; retrying every %d s", st->name, STREAM_APPLY_RETRY_MS / 1000);
	stream_schedule_retry(st, STREAM_APPLY_RETRY_MS);
}

static void stream_sink_batch(struct stream *st, const struct frame *f)
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
		stream_send_resume(st);
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

static void stream_sink_make(struct stream *st, const struct config_site *target,
		const struct config_stream *cs)
{
	static const struct apply_callbacks cb = {
		.ready = stream_apply_ready,
		.committed = stream_apply_committed,
		.stopped = stream_apply_stopped,
	};
	struct apply_config acfg = {
		.conninfo = target->database,
		.stream = cs->name,
		.on_conflict = cs->on_conflict == CONFIG_CONFLICT_SOURCE_WINS ? APPLY_CONFLICT_SOURCE_WINS :
			       cs->on_conflict == CONFIG_CONFLICT_TARGET_WINS ? APPLY_CONFLICT_TARGET_WINS :
			       APPLY_CONFLICT_ERROR,
	};

	st->apply = apply_new(st->owner->base, &acfg, &cb, st);
	if (!st->apply)
		log_error("stream \"%s\": could not create the apply engine", st->name);
}

/* ----------------------------------------------------------------- setup */

static bool stream_init(struct streams *s, struct stream *st, const struct strait_config *cfg,
		size_t self, const struct config_stream *cs)
{
	st->owner = s;
	st->name = strdup(cs->name);
	st->codec_kind = cs->codec;
	st->codec_level = cs->compression_level;
	st->durability = cs->durability;
	st->retry = event_new(s->base, -1, 0, stream_retry_cb, st);
	st->ack_event = event_new(s->base, -1, 0, stream_ack_cb, st);
	st->lag = lag_new(0);
	if (!st->name || !st->retry || !st->ack_event || !st->lag)
		return false;

	if (cs->from == self) {
		st->role = STREAM_ROLE_SOURCE;
		st->peer = strdup(cfg->sites[cs->to].name);
		st->src_conninfo = strdup(cfg->sites[self].database);
		st->src_publication = strdup(cs->publication);
		st->enc = codec_new_encoder(cs->codec, cs->compression_level);
		if (!st->peer || !st->src_conninfo || !st->src_publication || !st->enc)
			return false;
		if (cs->n_tables) {
			st->src_tables = calloc(cs->n_tables, sizeof(char *));
			if (!st->src_tables)
				return false;
			for (size_t i = 0; i < cs->n_tables; i++)
				if (!(st->src_tables[i] = strdup(cs->tables[i])))
					return false;
		}
		st->seq_reader = seq_reader_new(s->base, st->src_conninfo, st->name, st->src_publication,
						STREAM_SEQUENCE_POLL_MS, stream_sequences_changed, st);
		if (!st->seq_reader)
			return false;
		st->src_cfg = (struct source_config){
			.stream = st->name,
			.conninfo = st->src_conninfo,
			.publication = st->src_publication,
			.tables = st->src_tables,
			.n_tables = cs->n_tables,
			.batch_max_bytes = STREAM_BATCH_MAX,
			.export_snapshot = cs->initial_sync,
		};
		if (cs->initial_sync &&
		    !(st->sync = streamsync_new_source(s->base, s->relay, st->name, st->peer,
						       st->src_conninfo, st->src_publication, cs->codec,
						       cs->compression_level, &st->source)))
			return false;
		stream_source_make(st);
	} else if (cs->to == self) {
		st->role = STREAM_ROLE_SINK;
		st->peer = strdup(cfg->sites[cs->from].name);
		st->dec = codec_new_decoder(cs->codec);
		st->seq_writer = seq_writer_new(s->base, cfg->sites[self].database, st->name);
		if (!st->peer || !st->dec || !st->seq_writer)
			return false;
		stream_sink_make(st, &cfg->sites[self], cs);
		if (cs->initial_sync &&
		    !(st->sync = streamsync_new_sink(s->base, s->relay, st->name, st->peer,
						     cfg->sites[self].database, cs->codec,
						     stream_sync_resume, st)))
			return false;
	}
	return true;
}

static void stream_fini(struct stream *st)
{
	lag_free(st->lag);
	streamsync_free(st->sync);
	source_free(st->source);
	seq_reader_free(st->seq_reader);
	seq_writer_free(st->seq_writer);
	if (st->apply)
		apply_free(st->apply);
	codec_free(st->enc);
	codec_free(st->dec);
	if (st->retry)
		event_free(st->retry);
	if (st->ack_event)
		event_free(st->ack_event);
	if (st->src_tables) {
		for (size_t i = 0; i < st->src_cfg.n_tables; i++)
			free(st->src_tables[i]);
		free(st->src_tables);
	}
	free(st->src_conninfo);
	free(st->src_publication);
	free(st->peer);
	free(st->name);
}

struct streams *streams_new(struct event_base *base, const struct strait_config *cfg,
		size_t self_site, struct relay *relay)
{
	struct streams *s = calloc(1, sizeof(*s));

	if (!s)
		goto oom;
	s->base = base;
	s->relay = relay;
	wire_writer_init_heap(&s->out, FRAME_MAX_PAYLOAD);
	s->v = calloc(cfg->n_streams ? cfg->n_streams : 1, sizeof(*s->v));
	if (!s->v)
		goto oom;
	for (size_t i = 0; i < cfg->n_streams; i++) {
		s->n++;
		if (!stream_init(s, &s->v[i], cfg, self_site, &cfg->streams[i]))
			goto oom;
	}
	return s;
oom:
	log_error("out of memory setting up streams");
	streams_free(s);
	return NULL;
}

void streams_free(struct streams *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n; i++)
		stream_fini(&s->v[i]);
	free(s->v);
	wire_writer_free(&s->out);
	free(s);
}

static struct stream *streams_find(struct streams *s, const char *peer, struct wire_str name,
		enum stream_role role)
{
	for (size_t i = 0; i < s->n; i++) {
		struct stream *st = &s->v[i];
		if (st->role == role && strcmp(st->peer, peer) == 0 && wire_str_eq(name, st->name))
			return st;
	}
	return NULL;
}

/* ------------------------------------------------------- relay callbacks */

void streams_hello(struct streams *s, const char *peer, struct relay_proto_hello *hello)
{
	static struct relay_proto_resume resume[64];
	size_t n = 0;

	for (size_t i = 0; i < s->n && n < sizeof(resume) / sizeof(resume[0]); i++) {
		struct stream *st = &s->v[i];
		if (st->role != STREAM_ROLE_SINK || strcmp(st->peer, peer) != 0)
			continue;
		resume[n].lsn = st->next_lsn;
		/* a stream that needs an initial sync round asks with RESUME once up */
		st->in_hello = st->apply_ready &&
			       (!st->sync || streamsync_sink_hello(st->sync, &resume[n].lsn));
		if (!st->in_hello)
			continue;
		resume[n].stream = relay_proto_str(st->name);
		n++;
	}
	hello->streams = resume;
	hello->nstreams = n;
}

void streams_connected(struct streams *s, const char *peer, const struct relay_proto_hello *hello)
{
	for (size_t i = 0; i < s->n; i++) {
		struct stream *st = &s->v[i];
		if (strcmp(st->peer ? st->peer : "", peer) != 0)
			continue;
		if (st->role == STREAM_ROLE_SINK) {
			/* our HELLO asked for generation 0 of this link */
			st->want_generation = 0;
			st->dec_started = false;
			/* ready after the HELLO left: ask now */
			if (st->apply_ready && !st->in_hello)
				stream_send_resume(st);
			continue;
		}
		if (st->role != STREAM_ROLE_SOURCE)
			continue;
		seq_reader_resend_all(st->seq_reader);
		for (size_t k = 0; k < hello->nstreams; k++) {
			if (wire_str_eq(hello->streams[k].stream, st->name))
				stream_source_resume_at(st, hello->streams[k].lsn, 0);
		}
	}
}

void streams_disconnected(struct streams *s, const char *peer)
{
	for (size_t i = 0; i < s->n; i++) {
		struct stream *st = &s->v[i];
		if (st->sync && strcmp(st->peer, peer) == 0)
			streamsync_link_down(st->sync);
		if (st->role != STREAM_ROLE_SOURCE || strcmp(st->peer, peer) != 0)
			continue;
		st->have_resume = false;
		stream_source_restart(st);
	}
}

void streams_writable(struct streams *s, const char *peer)
{
	for (size_t i = 0; i < s->n; i++) {
		struct stream *st = &s->v[i];
		if (st->role == STREAM_ROLE_SOURCE && strcmp(st->peer, peer) == 0 && st->source) {
			lag_set_pending(st->lag, false);
			source_resume_reading(st->source);
		}
		if (st->role == STREAM_ROLE_SOURCE && strcmp(st->peer, peer) == 0 && st->sync)
			streamsync_writable(st->sync);
	}
}

/* SYNC: copy data or a plan for a sink, "have" and acknowledgements for a source. */
static void stream_sync_frame(struct streams *s, const char *peer, const struct frame *f)
{
	struct relay_proto_sync m;
	enum relay_proto_status ps = relay_proto_read_sync(f->payload, f->payload_len, &m);
	struct stream *st;

	if (ps != RELAY_PROTO_OK) {
		log_error("refused malformed SYNC frame from \"%s\": %s", peer, relay_proto_status_str(ps));
		return;
	}
	st = streams_find(s, peer, m.stream, STREAM_ROLE_SINK);
	if (!st)
		st = streams_find(s, peer, m.stream, STREAM_ROLE_SOURCE);
	if (!st || !st->sync) {
		log_warning("refused SYNC frame from \"%s\" for stream \"%.*s\": no initial sync of it "
			    "with that site here", peer, (int)m.stream.len, m.stream.ptr);
		return;
	}
	streamsync_frame(st->sync, f, &m);
}

void streams_frame(struct streams *s, const char *peer, const struct frame *f)
{
	struct relay_proto_resume_req resume;
	struct relay_proto_batch batch;
	struct relay_proto_ack ack;
	struct stream *st;

	switch (f->type) {
	case FRAME_BATCH:
		if (relay_proto_read_batch(f->payload, f->payload_len, &batch) != RELAY_PROTO_OK) {
			log_error("malformed BATCH from \"%s\"", peer);
			return;
		}
		st = streams_find(s, peer, batch.stream, STREAM_ROLE_SINK);
		if (!st) {
			log_warning("BATCH from \"%s\" for a stream this site does not receive from it", peer);
			return;
		}
		stream_sink_batch(st, f);
		return;
	case FRAME_SEQUENCES: {
		static struct relay_proto_sequence seqs[STREAM_MAX_SEQUENCES];
		struct relay_proto_sequences m;

		if (relay_proto_read_sequences(f->payload, f->payload_len, &m, seqs,
					       STREAM_MAX_SEQUENCES) != RELAY_PROTO_OK) {
			log_error("malformed SEQUENCES from \"%s\"", peer);
			return;
		}
		st = streams_find(s, peer, m.stream, STREAM_ROLE_SINK);
		if (!st) {
			log_warning("SEQUENCES from \"%s\" for a stream this site does not receive from it",
				    peer);
			return;
		}
		stream_sink_sequences(st, &m);
		return;
	}
	case FRAME_ACK:
		if (relay_proto_read_ack(f->payload, f->payload_len, &ack) != RELAY_PROTO_OK) {
			log_error("malformed ACK from \"%s\"", peer);
			return;
		}
		st = streams_find(s, peer, ack.stream, STREAM_ROLE_SOURCE);
		if (!st) {
			log_warning("ACK from \"%s\" for a stream this site does not send to it", peer);
			return;
		}
		stream_source_ack(st, &ack);
		return;
	case FRAME_SYNC:
		stream_sync_frame(s, peer, f);
		return;
	case FRAME_RESUME:
		if (relay_proto_read_resume(f->payload, f->payload_len, &resume) != RELAY_PROTO_OK) {
			log_error("malformed RESUME from \"%s\"", peer);
			return;
		}
		st = streams_find(s, peer, resume.stream, STREAM_ROLE_SOURCE);
		if (!st) {
			log_warning("RESUME from \"%s\" for a stream this site does not send to it", peer);
			return;
		}
		log_info("stream \"%s\": \"%s\" asks to resume at %X/%X", st->name, peer,
			 (unsigned)(resume.lsn >> 32), (unsigned)resume.lsn);
		stream_source_resume_at(st, resume.lsn, resume.generation);
		return;
	default:
		return;
	}
}

/* ---------------------------------------------------------------- status */

void streams_status_json(const struct streams *s, struct json_out *j)
{
	json_array_begin(j, "replication");
	for (size_t i = 0; i < s->n; i++) {
		const struct stream *st = &s->v[i];
		if (st->role == STREAM_ROLE_NONE)
			continue;
		json_object_begin(j, NULL);
		json_string(j, "stream", st->name);
		json_string(j, "role", st->role == STREAM_ROLE_SOURCE ? "source" : "sink");
		json_string(j, "peer", st->peer);
		json_bool(j, "link_up", relay_is_up(s->relay, st->peer));
		if (st->role == STREAM_ROLE_SOURCE) {
			json_bool(j, "streaming", st->streaming);
			json_lsn(j, "acked_lsn", st->acked_lsn);
			json_uint(j, "batches_sent", st->batches_sent);
			json_uint(j, "bytes_raw", st->bytes_raw);
			json_uint(j, "bytes_wire", st->bytes_wire);
			json_uint(j, "sequence_frames", st->sequence_frames);
			if (st->source)
				source_status_json(st->source, j);
		} else {
			json_bool(j, "apply_ready", st->apply_ready);
			json_lsn(j, "received_lsn", st->next_lsn);
			json_lsn(j, "acked_lsn", st->ack_sent_lsn);
			json_uint(j, "batches_received", st->batches_received);
			if (st->apply)
				apply_status_json(st->apply, j, "apply");
			if (st->seq_writer)
				seq_writer_status_json(st->seq_writer, j);
		}
		if (st->sync)
			streamsync_status_json(st->sync, j);
		json_string(j, "last_error", st->last_error[0] ? st->last_error : NULL);
		json_object_end(j);
	}
	json_array_end(j);
}

/* ---------------------------------------------------------------- report */

/*
 * What each stream reports to metrics and health checks. Syncing, held and
 * stopped come with initial sync, the scheduler and the failover commands;
 * the spool with its own issue.
 */
void streams_report(const struct streams *s, int64_t now_us,
		void (*fn)(void *arg, const struct stream_report *r), void *arg)
{
	for (size_t i = 0; i < s->n; i++) {
		const struct stream *st = &s->v[i];
		struct stream_report r = { .name = st->name, .peer = st->peer };

		if (st->role == STREAM_ROLE_NONE)
			continue;
		r.sink = st->role == STREAM_ROLE_SINK;
		if (r.sink) {
			if (!st->apply || apply_is_stopped(st->apply))
				r.state = "error";
			else if (st->apply_ready)
				r.state = "streaming";
			else
				r.state = "starting";
			r.applied_lsn = st->ack_lsn;
			r.batches = st->batches_received;
		} else {
			if (st->streaming && relay_output_pending(s->relay, st->peer) >= RELAY_OUTPUT_HIGH)
				r.state = "backpressure";
			else if (st->streaming)
				r.state = "streaming";
			else if (st->last_error[0] && !(st->source && source_is_ready(st->source)))
				r.state = "error";
			else
				r.state = "starting";
			r.applied_lsn = st->acked_lsn;
			r.batches = st->batches_sent;
			r.bytes_raw = st->bytes_raw;
			r.bytes_compressed = st->bytes_wire;
		}
		r.lag_bytes = lag_bytes(st->lag);
		r.lag_seconds = lag_seconds(st->lag, now_us);
		fn(arg, &r);
	}
}
