/*
 * stream.c — this site's streams: setup, the relay's callbacks dispatched to
 * each stream's source (stream_source.c) or sink (stream_sink.c), status and
 * reports (see stream.h).
 */
#include "gateway/stream/stream.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "common/json.h"
#include "common/log.h"
#include "common/lsn.h"
#include "config/config.h"
#include "gateway/cluster/failover.h"
#include "gateway/relay/frame.h"
#include "gateway/relay/relay.h"
#include "gateway/relay/relay_proto.h"
#include "gateway/relay/wire.h"
#include "gateway/stream/clock.h"
#include "gateway/stream/lag.h"
#include "gateway/stream/retain.h"
#include "gateway/stream/retain_serve.h"
#include "gateway/stream/stream_int.h"
#include "gateway/stream/stream_join.h"
#include "gateway/stream/stream_sync.h"
#include "replicator/apply.h"

bool stream_send(struct stream *st, enum frame_type type, uint8_t flags)
{
	return stream_send_to(st, st->peer, type, flags);
}

bool stream_send_to(struct stream *st, const char *site, enum frame_type type, uint8_t flags)
{
	struct streams *s = st->owner;

	return wire_writer_ok(&s->out) &&
	       relay_send(s->relay, site, type, flags, s->out.data, s->out.len);
}

struct stream *streams_sink_named(struct streams *s, struct wire_str name)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->v[i].role == STREAM_ROLE_SINK && wire_str_eq(name, s->v[i].name))
			return &s->v[i];
	return NULL;
}

uint64_t stream_charge(struct stream *st, struct relay_batch_extra extra, int64_t now_us)
{
	const struct strait_config *cfg = st->owner->cfg;
	uint64_t cost = schedule_frame_cost(st->owner->out.len, cfg) +
			extra.probes * schedule_frame_cost(0, cfg) +
			schedule_resent_cost(extra.resent_bytes, cfg);

	token_bucket_take(&st->sender.bucket, cost, now_us);
	st->sender.bytes_charged += cost;
	return cost;
}

static void stream_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct stream *st = arg;

	(void)fd;
	(void)what;
	if (st->role == STREAM_ROLE_SOURCE)
		stream_source_retry(st);
	else
		stream_sink_retry(st);
}

void stream_schedule_retry(struct stream *st, unsigned ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	event_add(st->retry, &tv);
}

/* ----------------------------------------------------------------- setup */

/* A view's one destination: its to[] and via[], which a role change may turn. */
struct stream_dest {
	size_t to;
	size_t via;
};

/*
 * struct streams with what only this file needs: each stream's view of its
 * config entry, with from and to as the site's role makes them (a stream
 * configured from A to B runs from B while B is primary). The source and
 * sink read from/to through st->cs, so they follow without knowing why.
 */
struct streams_box {
	struct streams s;            /* first: a struct streams * is a box */
	struct config_stream *views; /* one per stream, st->cs points here */
	struct stream_dest *dests;   /* one per view: what its to and via point at */
	size_t self;
	enum role_kind role;
	size_t primary;              /* the site this one knows is primary, or CONFIG_SITE_NONE */
	bool by_config;              /* streams_new(): the config's direction */
};

static struct streams_box *streams_box(const struct streams *s)
{
	return (struct streams_box *)(void *)s;
}

/* The view goes to site to, direct; its to and via point into dest, not the config. */
static void view_dest(struct config_stream *view, struct stream_dest *dest, size_t to)
{
	dest->to = to;
	dest->via = CONFIG_SITE_NONE;
	view->to = &dest->to;
	view->via = &dest->via;
	view->n_to = 1;
}

/*
 * Where the config entry runs now: its source (*src) and its destinations
 * (dst, room for n_to + 1); 0 when this site has no part in it.
 */
static size_t stream_ends(const struct streams_box *b, const struct config_stream *cs, size_t *src,
		size_t *dst)
{
	enum role_kind role = b->role;

	if (b->by_config)
		role = cs->from == b->self ? ROLE_PRIMARY : ROLE_REPLICA;
	return failover_stream_ends(cs->from, cs->to, cs->n_to, b->self, role,
				    b->by_config ? cs->from : b->primary, src, dst);
}

/* How many struct streams the config entry makes here: one per destination it sends to, else one. */
static size_t stream_count(const struct streams_box *b, const struct config_stream *cs)
{
	size_t src, *dst = calloc(cs->n_to + 1, sizeof(*dst)), n;

	if (!dst)
		return 1;
	n = stream_ends(b, cs, &src, dst);
	free(dst);
	return n && src == b->self ? n : 1;
}

/*
 * The site the entry's batches reach dst through now (streams[].via), or
 * CONFIG_SITE_NONE: direct. A relay that is the source now (it took over)
 * or the destination itself relays nothing.
 */
static size_t stream_relay_site(const struct config_stream *cs, size_t src, size_t dst)
{
	for (size_t i = 0; cs->via && i < cs->n_to; i++)
		if (cs->to[i] == dst && cs->via[i] != CONFIG_SITE_NONE && cs->via[i] != src &&
		    cs->via[i] != dst)
			return cs->via[i];
	return CONFIG_SITE_NONE;
}

/*
 * One struct stream: the config entry's view from src to dst (role none when
 * this site is neither). A source's destinations share the lead's reader.
 */
static bool stream_init(struct streams *s, struct stream *st, const struct config_stream *cs,
		size_t k, size_t src, size_t dst, struct stream *lead)
{
	struct streams_box *b = streams_box(s);
	struct config_stream *view = &b->views[k];

	*view = *cs;
	view_dest(view, &b->dests[k], dst);
	view->from = src;
	st->owner = s;
	st->cs = view;
	/* the view has one destination: whether the stream has more is the entry's */
	st->siblings = cs->n_to > 1;
	if (src != CONFIG_SITE_NONE && dst != CONFIG_SITE_NONE &&
	    stream_relay_site(cs, src, dst) != CONFIG_SITE_NONE &&
	    !(st->relay = strdup(s->cfg->sites[stream_relay_site(cs, src, dst)].name)))
		return false;
	st->name = strdup(cs->name);
	st->retry = event_new(s->base, -1, 0, stream_retry_cb, st);
	st->lag = lag_new(0);
	if (!st->name || !st->retry || !st->lag)
		return false;
	if (src == b->self && src != CONFIG_SITE_NONE) {
		st->lead = lead ? lead : st;
		st->reader = &st->lead->own_reader;
		for (struct stream *d = st->lead; d != st; d = d->next_dest)
			if (!d->next_dest)
				d->next_dest = st;
		return stream_source_init(st, s->cfg, b->self);
	}
	if (dst == b->self)
		return stream_sink_init(st, s->cfg, b->self);
	return true;
}

/* The config entry's struct streams, from s->v[*k] on; *k moves past them. */
static bool stream_make(struct streams *s, const struct config_stream *cs, size_t *k)
{
	struct streams_box *b = streams_box(s);
	size_t src = CONFIG_SITE_NONE, n, *dst = calloc(cs->n_to + 1, sizeof(*dst));
	struct stream *lead = NULL;
	bool ok = dst != NULL;

	n = ok ? stream_ends(b, cs, &src, dst) : 0;
	if (!n) {
		src = CONFIG_SITE_NONE;
		n = 1;
	}
	for (size_t i = 0; ok && i < n; i++) {
		struct stream *st = &s->v[*k];

		s->n++;
		ok = stream_init(s, st, cs, (*k)++, src, src != CONFIG_SITE_NONE ? dst[i] : CONFIG_SITE_NONE,
				 lead);
		if (!lead && st->role == STREAM_ROLE_SOURCE)
			lead = st;
	}
	free(dst);
	return ok;
}

static void stream_fini(struct stream *st)
{
	/* the sync refers to the source: it goes first */
	streamjoin_free(st->join);
	st->join = NULL;
	streamsync_free(st->sync);
	st->sync = NULL;
	if (st->role == STREAM_ROLE_SOURCE)
		stream_source_fini(st);
	else if (st->role == STREAM_ROLE_SINK)
		stream_sink_fini(st);
	lag_free(st->lag);
	if (st->retry)
		event_free(st->retry);
	free(st->peer);
	free(st->relay);
	free(st->name);
}

/* The destinations this site relays st's batches to now (streams[].via); how many, at most max. */
static size_t streams_relayed(const struct streams *s, const struct stream *st, const char **peers,
		size_t max)
{
	const struct streams_box *b = streams_box(s);
	int src = config_site_index(s->cfg, st->peer);
	size_t n = 0;

	for (size_t k = 0; k < s->cfg->n_streams; k++) {
		const struct config_stream *cs = &s->cfg->streams[k];

		if (strcmp(cs->name, st->name) != 0 || !cs->via)
			continue;
		for (size_t i = 0; i < cs->n_to && n < max; i++)
			if (cs->via[i] == b->self && cs->to[i] != b->self && (int)cs->to[i] != src)
				peers[n++] = s->cfg->sites[cs->to[i]].name;
	}
	return n;
}

uint64_t streams_relay_hold(struct streams *s, const struct stream *st, bool *relays)
{
	const char *peers[64];
	size_t n = streams_relayed(s, st, peers, 64);

	*relays = n > 0;
	return n ? retain_serve_hold(s->serve, st->name, peers, n) : UINT64_MAX;
}

/* What the server of retained batches needs of a sink (retain_serve.h). */
static bool streams_sink_retain(void *arg, const char *stream, struct retain **retain,
		uint64_t *committed_lsn)
{
	struct stream *st = streams_sink_named(arg, relay_proto_str(stream));

	if (!st)
		return false;
	/* before its apply connects, what it committed is not known; while its own copy
	 * runs, it retains nothing yet */
	*retain = st->sink.apply_ready && !(st->sync && streamsync_in_progress(st->sync))
		  ? st->sink.retain : NULL;
	*committed_lsn = st->sink.apply_ready ? st->sink.ack_lsn : 0;
	return true;
}

void streams_retain_seal(struct streams *s)
{
	for (size_t i = 0; i < s->n; i++) {
		struct stream *st = &s->v[i];
		char *dir, err[256];

		/* only a stream with siblings is ever asked */
		if (st->role != STREAM_ROLE_SINK || !st->sink.apply_ready || !st->siblings ||
		    !(dir = retain_serve_dir(s->cfg, st->name)))
			continue;
		if (!retain_seal(dir, st->peer, st->sink.ack_lsn, err, sizeof(err)))
			log_error("stream \"%s\": recording what was applied beside the retained batches: %s; "
				  "no sibling can catch up from this site", st->name, err);
		else
			log_info("stream \"%s\": retained batches of \"%s\" sealed at " LSN_FMT, st->name,
				 st->peer, LSN_ARGS(st->sink.ack_lsn));
		free(dir);
	}
}

static struct streams *streams_make(struct event_base *base, const struct strait_config *cfg,
		size_t self_site, struct relay *relay, enum role_kind role, size_t primary, bool by_config)
{
	struct streams_box *b = calloc(1, sizeof(*b));
	struct streams *s = b ? &b->s : NULL;
	size_t total = 0, k = 0;

	if (!b)
		goto oom;
	b->self = self_site;
	b->role = role;
	b->primary = primary;
	b->by_config = by_config;
	s->base = base;
	s->relay = relay;
	s->cfg = cfg;
	wire_writer_init_heap(&s->out, FRAME_MAX_PAYLOAD);
	if (!(s->serve = retain_serve_new(relay, cfg, streams_sink_retain, s)))
		goto oom;
	for (size_t i = 0; i < cfg->n_streams; i++)
		total += stream_count(b, &cfg->streams[i]);
	s->v = calloc(total ? total : 1, sizeof(*s->v));
	b->views = calloc(total ? total : 1, sizeof(*b->views));
	b->dests = calloc(total ? total : 1, sizeof(*b->dests));
	if (!s->v || !b->views || !b->dests)
		goto oom;
	for (size_t i = 0; i < cfg->n_streams; i++)
		if (!stream_make(s, &cfg->streams[i], &k))
			goto oom;
	return s;
oom:
	log_error("out of memory setting up streams");
	streams_free(s);
	return NULL;
}

struct streams *streams_new(struct event_base *base, const struct strait_config *cfg,
		size_t self_site, struct relay *relay)
{
	return streams_make(base, cfg, self_site, relay, ROLE_PRIMARY, self_site, true);
}

struct streams *streams_new_role(struct event_base *base, const struct strait_config *cfg,
		size_t self_site, struct relay *relay, enum role_kind site_role, size_t primary)
{
	return streams_make(base, cfg, self_site, relay, site_role, primary, false);
}

void streams_free(struct streams *s)
{
	struct streams_box *b;

	if (!s)
		return;
	b = streams_box(s);
	retain_serve_free(s->serve);
	s->serve = NULL;
	/* last first: a source's other destinations go before the lead that holds their reader */
	for (size_t i = s->n; i-- > 0;)
		stream_fini(&s->v[i]);
	free(s->v);
	free(b->views);
	free(b->dests);
	wire_writer_free(&s->out);
	free(b);
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
	static struct relay_proto_position resume[64];
	size_t n = 0;

	for (size_t i = 0; i < s->n && n < sizeof(resume) / sizeof(resume[0]); i++) {
		struct stream *st = &s->v[i];
		if (st->role != STREAM_ROLE_SINK || strcmp(st->peer, peer) != 0)
			continue;
		st->sink.in_hello = stream_sink_hello_position(st, &resume[n]);
		if (st->sink.in_hello)
			n++;
	}
	hello->streams = resume;
	hello->nstreams = n;
}

void streams_connected(struct streams *s, const char *peer, const struct relay_proto_hello *hello)
{
	for (size_t i = 0; i < s->n; i++) {
		struct stream *st = &s->v[i];

		/* a sink that takes its batches from this site (its relay) asks it now */
		if (st->role == STREAM_ROLE_SINK && st->sink.catchup && st->sink.apply_ready &&
		    strcmp(stream_sink_upstream(st), peer) == 0)
			stream_sink_send_resume(st);
		if (strcmp(st->peer ? st->peer : "", peer) != 0)
			continue;
		if (st->role == STREAM_ROLE_SINK && st->sink.catchup)
			continue;      /* its batches come from elsewhere: the generation is the relay's */
		if (st->role == STREAM_ROLE_SINK) {
			/* our HELLO asked for generation 0 of this link */
			st->sink.want_generation = 0;
			st->sink.dec_started = false;
			/* ready after the HELLO left: ask now */
			if (st->sink.apply_ready && !st->sink.in_hello)
				stream_sink_send_resume(st);
			continue;
		}
		if (st->role != STREAM_ROLE_SOURCE)
			continue;
		stream_source_link_up(st);
		for (size_t k = 0; k < hello->nstreams; k++) {
			if (wire_str_eq(hello->streams[k].stream, st->name))
				stream_source_resume_at(st, &hello->streams[k], 0);
		}
	}
}

void streams_disconnected(struct streams *s, const char *peer)
{
	for (size_t i = 0; i < s->n; i++) {
		struct stream *st = &s->v[i];
		if (st->sync && strcmp(st->peer, peer) == 0)
			streamsync_link_down(st->sync);
		if (st->join && strcmp(st->peer, peer) == 0)
			streamjoin_link_down(st->join);
		if (st->role == STREAM_ROLE_SINK)
			stream_catchup_link_down(st, peer);
		/* while a sibling serves it, what the apply holds came from the sibling */
		if (st->role == STREAM_ROLE_SINK && strcmp(st->peer, peer) == 0 && !st->sink.catchup) {
			stream_verify_sink_stop(st, "the link to the source's site was lost");
			stream_sink_link_down(st);
		}
		if (st->role != STREAM_ROLE_SOURCE || strcmp(st->peer, peer) != 0)
			continue;
		stream_source_link_down(st);
	}
	retain_serve_link_down(s->serve, peer);
}

void streams_peer_became_primary(struct streams *s, const char *peer)
{
	for (size_t i = 0; i < s->n; i++) {
		struct stream *st = &s->v[i];

		if (st->role == STREAM_ROLE_SINK && strcmp(st->peer, peer) == 0 && st->sink.apply_ready)
			stream_sink_send_resume(st);
	}
}

void streams_writable(struct streams *s, const char *peer)
{
	retain_serve_writable(s->serve, peer);
	/* live streams first, then initial-sync copies */
	for (size_t i = 0; i < s->n; i++) {
		struct stream *st = &s->v[i];
		if (st->role == STREAM_ROLE_SOURCE && strcmp(st->peer, peer) == 0)
			stream_source_writable(st);
	}
	for (size_t i = 0; i < s->n; i++) {
		struct stream *st = &s->v[i];
		if (st->role == STREAM_ROLE_SOURCE && strcmp(st->peer, peer) == 0 && st->sync &&
		    !st->sender.sched.held)
			streamsync_writable(st->sync);
		if (st->role == STREAM_ROLE_SOURCE && strcmp(st->peer, peer) == 0 && st->join &&
		    !st->sender.sched.held)
			streamjoin_writable(st->join);
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
	if (m.flags & RELAY_SYNC_JOIN) {
		if (st->join)
			streamjoin_frame(st->join, &m);
		return;
	}
	streamsync_frame(st->sync, f, &m);
}

/*
 * Sibling catch-up: an ask or its ACK for this site's retained batches
 * (retain_serve.c), or an answer or batch for a sink that catches up
 * (stream_catchup.c).
 */
static void streams_catchup_frame(struct streams *s, const char *peer, const struct frame *f)
{
	struct relay_proto_catchup_reply reply;
	struct relay_proto_batch batch;
	struct stream *st;
	bool ok;

	if (f->type == FRAME_CATCHUP || f->type == FRAME_CATCHUP_ACK) {
		retain_serve_frame(s->serve, peer, f);
		return;
	}
	ok = f->type == FRAME_CATCHUP_BATCH
	     ? relay_proto_read_batch(f->payload, f->payload_len, &batch) == RELAY_PROTO_OK
	     : relay_proto_read_catchup_reply(f->payload, f->payload_len, &reply) == RELAY_PROTO_OK;
	if (!ok) {
		log_error("refused malformed %s from \"%s\"", frame_type_name(f->type), peer);
		return;
	}
	st = streams_sink_named(s, f->type == FRAME_CATCHUP_BATCH ? batch.stream : reply.stream);
	if (!st || !st->sink.catchup || strcmp(stream_sink_upstream(st), peer) != 0) {
		log_warning("%s from \"%s\" that no catch-up here waits for", frame_type_name(f->type),
			    peer);
		return;
	}
	if (f->type == FRAME_CATCHUP_BATCH)
		stream_sink_batch(st, &batch);
	else
		stream_catchup_reply(st, peer, f);
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
			/* whose it was is unknown: every stream from the peer asks again */
			for (size_t i = 0; i < s->n; i++)
				if (s->v[i].role == STREAM_ROLE_SINK && strcmp(s->v[i].peer, peer) == 0)
					stream_sink_ask_again(&s->v[i], "a malformed BATCH arrived");
			return;
		}
		st = streams_find(s, peer, batch.stream, STREAM_ROLE_SINK);
		if (!st) {
			log_warning("BATCH from \"%s\" for a stream this site does not receive from it", peer);
			return;
		}
		stream_sink_batch(st, &batch);
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
	case FRAME_VERIFY: {
		struct relay_proto_verify m;
		enum relay_proto_status ps = relay_proto_read_verify(f->payload, f->payload_len, &m);

		if (ps != RELAY_PROTO_OK) {
			log_error("malformed VERIFY from \"%s\": %s", peer, relay_proto_status_str(ps));
			return;
		}
		st = streams_find(s, peer, m.stream, STREAM_ROLE_SINK);
		if (!st)
			st = streams_find(s, peer, m.stream, STREAM_ROLE_SOURCE);
		if (!st) {
			log_warning("VERIFY from \"%s\" for a stream this site does not share with it", peer);
			return;
		}
		stream_verify_frame(st, &m);
		return;
	}
	case FRAME_CATCHUP:
	case FRAME_CATCHUP_ACK:
	case FRAME_CATCHUP_REPLY:
	case FRAME_CATCHUP_BATCH:
		streams_catchup_frame(s, peer, f);
		return;
	case FRAME_RESUME:
		if (relay_proto_read_resume(f->payload, f->payload_len, &resume) != RELAY_PROTO_OK) {
			log_error("malformed RESUME from \"%s\"", peer);
			return;
		}
		st = streams_find(s, peer, resume.pos.stream, STREAM_ROLE_SOURCE);
		if (!st) {
			log_warning("RESUME from \"%s\" for a stream this site does not send to it", peer);
			return;
		}
		log_info("stream \"%s\": \"%s\" asks to resume at " LSN_FMT " (committed " LSN_FMT ")",
			 st->name, peer, LSN_ARGS(resume.pos.received_lsn), LSN_ARGS(resume.pos.committed_lsn));
		stream_source_resume_at(st, &resume.pos, resume.generation);
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
		if (st->role == STREAM_ROLE_SOURCE)
			stream_source_status(st, j);
		else
			stream_sink_status(st, j);
		if (st->sync)
			streamsync_status_json(st->sync, j);
		if (st->join)
			streamjoin_status_json(st->join, j);
		json_string(j, "last_error", st->last_error[0] ? st->last_error : NULL);
		json_object_end(j);
	}
	json_array_end(j);
}

/* ---------------------------------------------------------------- report */

/* What each stream reports to metrics and health checks. */
void streams_report(const struct streams *s, int64_t now_us,
		void (*fn)(void *arg, const struct stream_report *r), void *arg)
{
	for (size_t i = 0; i < s->n; i++) {
		const struct stream *st = &s->v[i];
		struct stream_report r = { .name = st->name, .peer = st->peer, .rule = -1 };

		/* a relayed destination reports itself; the source sends it nothing */
		if (st->role == STREAM_ROLE_NONE || (st->role == STREAM_ROLE_SOURCE && st->relay))
			continue;
		r.sink = st->role == STREAM_ROLE_SINK;
		r.to = r.sink ? s->cfg->sites[streams_box(s)->self].name : st->peer;
		if (r.sink) {
			if (!st->sink.apply || apply_is_stopped(st->sink.apply) || st->sink.halted)
				r.state = "error";
			else if (st->sync && streamsync_in_progress(st->sync))
				r.state = "syncing";
			else if (st->sink.apply_ready)
				r.state = "streaming";
			else
				r.state = "starting";
			r.applied_lsn = st->sink.ack_lsn;
			r.batches = st->sink.batches_received;
		} else {
			r.state = stream_source_state(st);
			stream_source_report(st, &r, now_us);
			r.sync = st->sync != NULL;
			if (r.sync)
				streamsync_source_figures(st->sync, &r.sync_figures);
		}
		r.lag_bytes = lag_bytes(st->lag);
		r.lag_seconds = lag_seconds(st->lag, now_us);
		fn(arg, &r);
	}
}

/* -------------------------------------------------------------- schedule */

/* The source of stream name toward peer (NULL: its first destination). */
static struct stream *streams_source_to(const struct streams *s, const char *name, const char *peer)
{
	for (size_t i = 0; i < s->n; i++) {
		struct stream *st = &s->v[i];

		if (st->role == STREAM_ROLE_SOURCE && strcmp(st->name, name) == 0 &&
		    (!peer || strcmp(st->peer, peer) == 0))
			return st;
	}
	return NULL;
}

bool streams_sync_now(struct streams *s, const char *name, uint64_t for_seconds, char *msg,
		size_t msglen)
{
	struct stream *st = streams_source_to(s, name, NULL);
	size_t used = 0;
	bool ok = true;

	if (!st) {
		for (size_t i = 0; i < s->cfg->n_streams; i++) {
			const struct config_stream *cs = &s->cfg->streams[i];
			if (strcmp(cs->name, name) == 0) {
				snprintf(msg, msglen, "stream %s is sent by site %s: run sync-now there\n",
					 name, s->cfg->sites[cs->from].name);
				return false;
			}
		}
		snprintf(msg, msglen, "no stream named %s\n", name);
		return false;
	}
	/* every destination of the stream: one line each */
	for (struct stream *d = st; d && used < msglen; d = d->next_dest) {
		ok = stream_source_sync_now(d, for_seconds, msg + used, msglen - used) && ok;
		used += strlen(msg + used);
	}
	return ok;
}

void streams_schedule_json(const struct streams *s, struct json_out *j)
{
	json_array_begin(j, "streams");
	for (size_t i = 0; i < s->n; i++) {
		const struct stream *st = &s->v[i];
		if (st->role != STREAM_ROLE_SOURCE)
			continue;
		json_object_begin(j, NULL);
		json_string(j, "stream", st->name);
		json_string(j, "to", st->peer);
		stream_source_schedule_json(st, j);
		json_object_end(j);
	}
	json_array_end(j);
}

void streams_reconfigure(struct streams *s, const struct strait_config *cfg)
{
	struct streams_box *b = streams_box(s);

	s->cfg = cfg;
	retain_serve_reconfigure(s->serve, cfg);
	for (size_t i = 0; i < s->n; i++) {
		struct stream *st = &s->v[i];
		for (size_t k = 0; k < cfg->n_streams; k++) {
			if (strcmp(cfg->streams[k].name, st->name) != 0)
				continue;
			/* the direction stays what it was until the role changes */
			{
				size_t from = b->views[i].from, to = b->dests[i].to;

				b->views[i] = cfg->streams[k];
				b->views[i].from = from;
				view_dest(&b->views[i], &b->dests[i], to);
			}
			st->cs = &b->views[i];
			if (st->role == STREAM_ROLE_SOURCE)
				stream_source_reconfigure(st);
		}
	}
}

/* ------------------------------------------------ switchover and failover */

void streams_peer_lag(const struct streams *s, const char *peer, int64_t now_us,
		struct streams_peer_lag *out)
{
	*out = (struct streams_peer_lag){ 0 };
	for (size_t i = 0; i < s->n; i++) {
		const struct stream *st = &s->v[i];
		uint64_t bytes;
		double secs;
		int64_t at;

		if (st->role != STREAM_ROLE_SINK || strcmp(st->peer, peer) != 0)
			continue;
		bytes = lag_bytes(st->lag);
		secs = lag_seconds(st->lag, now_us);
		at = lag_last_applied_time(st->lag);
		if (out->streams == 0 || st->sink.ack_lsn < out->applied_lsn)
			out->applied_lsn = st->sink.ack_lsn;
		if (at && (out->last_applied_time_us == 0 || at < out->last_applied_time_us))
			out->last_applied_time_us = at;
		if (bytes > out->lag_bytes)
			out->lag_bytes = bytes;
		if (secs > out->lag_seconds)
			out->lag_seconds = secs;
		out->streams++;
	}
}

uint64_t streams_peer_pending_wal(const struct streams *s, const char *peer)
{
	uint64_t wal = 0;

	for (size_t i = 0; i < s->n; i++) {
		const struct stream *st = &s->v[i];

		if (st->role != STREAM_ROLE_SOURCE || st->relay || strcmp(st->peer, peer) != 0)
			continue;
		if (lag_bytes(st->lag) > 0 && lag_wal_lsn(st->lag) > wal)
			wal = lag_wal_lsn(st->lag);
	}
	return wal;
}

bool streams_drained(const struct streams *s, const char *peer, uint64_t upto)
{
	for (size_t i = 0; i < s->n; i++) {
		const struct stream *st = &s->v[i];

		/* a relayed destination levels with the new primary when it follows it */
		if (st->role != STREAM_ROLE_SOURCE || st->relay || strcmp(st->peer, peer) != 0)
			continue;
		if (lag_wal_lsn(st->lag) < upto || !lag_caught_up(st->lag))
			return false;
	}
	return true;
}

/* ---------------------------------------------------------------- verify */

void streams_set_verify_handler(struct streams *s, streams_verify_fn fn, void *arg)
{
	s->verify_frame = fn;
	s->verify_arg = arg;
}

size_t streams_sent_names(const struct streams *s, const char **names, size_t max)
{
	size_t n = 0;

	for (size_t i = 0; i < s->n; i++)
		if (s->v[i].role == STREAM_ROLE_SOURCE && s->v[i].lead == &s->v[i] && n < max)
			names[n++] = s->v[i].name;
	return n;
}

size_t streams_sent_targets(const struct streams *s, const char *name, const char **names,
		const char **peers, size_t max)
{
	size_t n = 0;

	for (size_t i = 0; i < s->n && n < max; i++) {
		const struct stream *st = &s->v[i];

		/* a relayed destination's batches do not go from here: no MARK could follow them */
		if (st->role != STREAM_ROLE_SOURCE || st->relay || (name && strcmp(st->name, name) != 0))
			continue;
		names[n] = st->name;
		peers[n++] = st->peer;
	}
	return n;
}

bool streams_verify_info(const struct streams *s, const char *name, const char *peer,
		struct streams_verify_info *out)
{
	const struct stream *st = streams_source_to(s, name, peer);

	if (!st)
		return false;
	*out = (struct streams_verify_info){
		.peer = st->peer,
		.conninfo = st->reader->src_conninfo,
		.publication = st->reader->src_publication,
		.link_up = relay_is_up(s->relay, st->peer),
		.held = st->sender.sched.held,
		.syncing = st->sync && streamsync_in_progress(st->sync),
	};
	return true;
}

bool streams_verify_send(struct streams *s, const char *name, const char *peer,
		const struct relay_proto_verify *head, const char *const *values, const size_t *lens)
{
	struct stream *st = streams_source_to(s, name, peer);

	if (!st)
		return false;
	wire_writer_reset(&s->out);
	if (!relay_proto_write_verify_head(&s->out, head))
		return false;
	for (uint32_t i = 0; i < head->nvalues; i++)
		if (!relay_proto_put_verify_value(&s->out, values[i], values[i] ? lens[i] : 0))
			return false;
	if (!stream_send(st, FRAME_VERIFY, 0))
		return false;
	/* what the verify carries counts against the stream's rate like its batches */
	stream_charge(st, (struct relay_batch_extra){ 0 }, clock_mono_us());
	return true;
}

bool streams_verify_arm_mark(struct streams *s, const char *name, const char *peer, uint64_t job,
		uint64_t lsn)
{
	struct stream *st = streams_source_to(s, name, peer);

	return st && stream_verify_arm_mark(st, job, lsn);
}
