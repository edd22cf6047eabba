/*
 * retain_serve.c — serving retained batches to a sibling (retain_serve.h).
 */
#include "gateway/stream/retain_serve.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#include "common/log.h"
#include "common/lsn.h"
#include "config/config.h"
#include "gateway/relay/frame.h"
#include "gateway/relay/relay.h"
#include "gateway/relay/relay_proto.h"
#include "gateway/relay/wire.h"
#include "gateway/stream/clock.h"
#include "gateway/stream/codec.h"
#include "gateway/stream/retain.h"
#include "gateway/stream/spool.h"

/* Raw bytes sent and not yet freed by the asker's apply. */
#define SERVE_WINDOW (16u * 1024u * 1024u)

struct serve_session {
	struct serve_session *next;
	char peer[64];
	char *stream;
	uint32_t generation;
	uint32_t seq;
	struct retain *retain;       /* the sink's, or owned */
	bool owned;                  /* opened here: this site has no sink of the stream */
	uint64_t retain_gen;         /* the sink's retain replaced its spool: the cursor is gone */
	struct spool_cursor *cursor;
	struct codec *enc;
	uint64_t cap;                /* what this site applied: nothing beyond it goes */
	uint64_t window_sent;
	uint64_t window_freed;
	uint64_t batches;
	bool follow;                 /* a relayed destination: goes on as more is fsynced */
};

/* What a relayed destination committed: the relay keeps what follows. */
struct serve_hold {
	char stream[64];
	char peer[64];
	uint64_t lsn;
	int64_t written_ms;          /* monotonic, when its file was last written */
};

#define SERVE_HOLDS 64
#define SERVE_HOLD_WRITE_MS 1000

struct retain_serve {
	struct relay *relay;
	const struct strait_config *cfg;
	retain_serve_sink_fn sink;
	void *arg;
	struct serve_session *sessions;
	struct wire_writer out;
	struct serve_hold holds[SERVE_HOLDS];
	size_t n_holds;
};

struct retain_serve *retain_serve_new(struct relay *relay, const struct strait_config *cfg,
		retain_serve_sink_fn sink, void *arg)
{
	struct retain_serve *srv = calloc(1, sizeof(*srv));

	if (!srv)
		return NULL;
	srv->relay = relay;
	srv->cfg = cfg;
	srv->sink = sink;
	srv->arg = arg;
	wire_writer_init_heap(&srv->out, FRAME_MAX_PAYLOAD);
	return srv;
}

static void session_free(struct serve_session *ss)
{
	if (ss->owned)
		retain_close(ss->retain);     /* frees the cursor with the spool */
	else
		spool_cursor_free(ss->cursor);
	codec_free(ss->enc);
	free(ss->stream);
	free(ss);
}

/* Ends the sessions for which drop(ss, key) holds. */
static void sessions_drop(struct retain_serve *srv, bool (*drop)(const struct serve_session *, const void *),
		const void *key)
{
	struct serve_session **pp = &srv->sessions;

	while (*pp) {
		struct serve_session *ss = *pp;

		if (drop(ss, key)) {
			*pp = ss->next;
			session_free(ss);
		} else {
			pp = &ss->next;
		}
	}
}

static bool drop_all(const struct serve_session *ss, const void *key)
{
	(void)ss;
	(void)key;
	return true;
}

static bool drop_session(const struct serve_session *ss, const void *key)
{
	return ss == key;
}

static bool drop_peer_stream(const struct serve_session *ss, const void *key)
{
	const struct serve_session *like = key;

	return like->stream && strcmp(ss->peer, like->peer) == 0 && strcmp(ss->stream, like->stream) == 0;
}

static bool drop_peer(const struct serve_session *ss, const void *key)
{
	return strcmp(ss->peer, key) == 0;
}

static bool drop_retain(const struct serve_session *ss, const void *key)
{
	return !ss->owned && ss->retain == key;
}

void retain_serve_free(struct retain_serve *srv)
{
	if (!srv)
		return;
	sessions_drop(srv, drop_all, NULL);
	wire_writer_free(&srv->out);
	free(srv);
}

void retain_serve_reconfigure(struct retain_serve *srv, const struct strait_config *cfg)
{
	if (srv)
		srv->cfg = cfg;
}

void retain_serve_link_down(struct retain_serve *srv, const char *peer)
{
	if (srv)
		sessions_drop(srv, drop_peer, peer);
}

void retain_serve_forget(struct retain_serve *srv, const struct retain *retain)
{
	if (srv)
		sessions_drop(srv, drop_retain, retain);
}

/* ------------------------------------------------------------ the seal */

char *retain_serve_dir(const struct strait_config *cfg, const char *stream)
{
	char *dir;

	return asprintf(&dir, "%s/retain/%s", cfg->state_dir, stream) < 0 ? NULL : dir;
}

/* ------------------------------------------------------------ sending */

/* Where the messages of body [0, len) hold transactions ending at or before cap: the prefix length. */
static size_t body_prefix_upto(const uint8_t *body, size_t len, uint64_t cap, uint64_t *last_end)
{
	size_t at = 0, keep = 0;

	while (len - at >= 4) {
		uint32_t n = (uint32_t)body[at] << 24 | (uint32_t)body[at + 1] << 16 |
			     (uint32_t)body[at + 2] << 8 | body[at + 3];
		const uint8_t *m = body + at + 4;

		if (n > len - at - 4)
			break;
		/* Commit: 'C', flags, commit LSN, end LSN, time */
		if (n >= 26 && m[0] == 'C') {
			uint64_t end = 0;

			for (int i = 0; i < 8; i++)
				end = end << 8 | m[10 + i];
			if (end > cap)
				break;
			keep = at + 4 + n;
			*last_end = end;
		}
		at += 4 + (size_t)n;
	}
	return keep;
}

static bool session_send(struct retain_serve *srv, struct serve_session *ss, const uint8_t *body,
		size_t len, uint64_t prev, uint64_t first, uint64_t last, bool continues)
{
	const uint8_t *wire;
	size_t wire_len;
	char err[256];
	struct relay_proto_batch b;

	if (!codec_run(ss->enc, body, len, SIZE_MAX, &wire, &wire_len, err, sizeof(err))) {
		log_error("stream \"%s\": serving site \"%s\": %s", ss->stream, ss->peer, err);
		return false;
	}
	b = (struct relay_proto_batch){
		.stream = relay_proto_str(ss->stream),
		.first_lsn = last ? first : 0,
		.last_lsn = last,
		.prev_lsn = prev,
		.generation = ss->generation,
		.seq = ss->seq,
		.flags = continues ? RELAY_BATCH_CONTINUES : 0,
		.raw_len = (uint32_t)len,
		.data = wire,
		.data_len = wire_len,
	};
	wire_writer_reset(&srv->out);
	if (!relay_proto_write_batch(&srv->out, &b) ||
	    !relay_send(srv->relay, ss->peer, FRAME_CATCHUP_BATCH,
			codec_compresses(ss->enc) ? FRAME_FLAG_COMPRESSED : 0, srv->out.data, srv->out.len))
		return false;
	/* unmetered, sent as fast as the link takes it: each may be the last for a while */
	(void)relay_batch_sent(srv->relay, ss->peer, true);
	ss->seq++;
	ss->batches++;
	ss->window_sent += len;
	return true;
}

/*
 * One retained record: whole, its part up to the cap, or nothing (it goes
 * past the cap). 1: sent, go on; 0: the cap is reached; -2: sending failed.
 */
static int session_record(struct retain_serve *srv, struct serve_session *ss,
		const struct spool_meta *meta, const uint8_t *body, size_t len, uint64_t prev)
{
	uint64_t last = 0;
	size_t keep;

	if (meta->commit_end_lsn == 0) {
		/* a piece of a large transaction: it commits at first_lsn (its first piece's) */
		if (meta->first_lsn && meta->first_lsn >= ss->cap)
			return 0;
		return session_send(srv, ss, body, len, prev, 0, 0,
				    meta->flags & SPOOL_FLAG_CONTINUES) ? 1 : -2;
	}
	if (meta->commit_end_lsn <= ss->cap) {
		if (!session_send(srv, ss, body, len, prev, meta->first_lsn, meta->commit_end_lsn, false))
			return -2;
		return meta->commit_end_lsn < ss->cap;
	}
	keep = body_prefix_upto(body, len, ss->cap, &last);
	if (keep && !session_send(srv, ss, body, keep, prev, meta->first_lsn, last, false))
		return -2;
	return 0;
}

/* Sends while the link and the window take more; the session ends at the cap. */
static void session_pump(struct retain_serve *srv, struct serve_session *ss)
{
	if (!ss->owned && retain_generation(ss->retain) != ss->retain_gen) {
		log_warning("stream \"%s\": serving site \"%s\": the retained batches were emptied; "
			    "it stops (the site asks again)", ss->stream, ss->peer);
		ss->cursor = NULL;    /* freed with the spool it read */
		sessions_drop(srv, drop_session, ss);
		return;
	}
	while (relay_is_up(srv->relay, ss->peer) &&
	       relay_output_pending(srv->relay, ss->peer) < RELAY_OUTPUT_HIGH &&
	       ss->window_sent - ss->window_freed < SERVE_WINDOW &&
	       (!ss->follow || spool_cursor_prev(ss->cursor) < spool_durable_lsn(retain_spool(ss->retain)))) {
		uint64_t prev = spool_cursor_prev(ss->cursor);
		struct spool_meta meta;
		const uint8_t *body;
		size_t len;
		char err[256];
		int r = spool_cursor_read(ss->cursor, &meta, &body, &len, err, sizeof(err));

		if (r == 0 && ss->follow)
			return;       /* more comes: retain_serve_kick() */
		if (r < 0)
			log_error("stream \"%s\": serving site \"%s\": %s; it stops", ss->stream, ss->peer, err);
		if (r > 0)
			r = ss->follow ? (session_send(srv, ss, body, len, prev, meta.first_lsn,
						       meta.commit_end_lsn, meta.flags & SPOOL_FLAG_CONTINUES) ? 1 : -2)
				       : session_record(srv, ss, &meta, body, len, prev);
		if (r == -2)
			return;       /* the link: writable() or a new CATCHUP goes on */
		if (r <= 0) {
			log_info("stream \"%s\": served site \"%s\" %" PRIu64 " retained batches up to "
				 LSN_FMT, ss->stream, ss->peer, ss->batches, LSN_ARGS(ss->cap));
			sessions_drop(srv, drop_session, ss);
			return;
		}
	}
}

/* ------------------------------------------------------------ holds */

static struct serve_hold *hold_find(struct retain_serve *srv, const char *stream, const char *peer)
{
	for (size_t i = 0; i < srv->n_holds; i++)
		if (strcmp(srv->holds[i].stream, stream) == 0 && strcmp(srv->holds[i].peer, peer) == 0)
			return &srv->holds[i];
	return NULL;
}

/* dir/hold-PEER: what peer committed, as text; written in place of the old one, no fsync (an
 * older value holds more, never less). */
static void hold_write(struct retain_serve *srv, const struct serve_hold *h)
{
	char *dir = retain_serve_dir(srv->cfg, h->stream), path[4096], tmp[4200];
	FILE *f;

	if (!dir)
		return;
	snprintf(path, sizeof(path), "%s/hold-%s", dir, h->peer);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	free(dir);
	if (!(f = fopen(tmp, "we")))
		return;
	if (fprintf(f, "%" PRIu64 "\n", h->lsn) < 0 || fclose(f) != 0 || rename(tmp, path) != 0)
		log_warning("could not record what site \"%s\" committed of stream \"%s\": %s", h->peer,
			    h->stream, strerror(errno));
}

/* The hold of peer on stream, from memory or its file (0: nothing known, everything held). */
static struct serve_hold *hold_get(struct retain_serve *srv, const char *stream, const char *peer)
{
	struct serve_hold *h = hold_find(srv, stream, peer);
	char *dir, path[4096], line[64];
	FILE *f;

	if (h || srv->n_holds == SERVE_HOLDS)
		return h;
	h = &srv->holds[srv->n_holds++];
	*h = (struct serve_hold){ 0 };
	snprintf(h->stream, sizeof(h->stream), "%s", stream);
	snprintf(h->peer, sizeof(h->peer), "%s", peer);
	if (!(dir = retain_serve_dir(srv->cfg, stream)))
		return h;
	snprintf(path, sizeof(path), "%s/hold-%s", dir, peer);
	free(dir);
	if ((f = fopen(path, "re"))) {
		if (!fgets(line, sizeof(line), f) || sscanf(line, "%" SCNu64, &h->lsn) != 1)
			h->lsn = 0;
		fclose(f);
	}
	return h;
}

static void hold_note(struct retain_serve *srv, const char *stream, const char *peer, uint64_t lsn)
{
	struct serve_hold *h = hold_get(srv, stream, peer);
	int64_t now = clock_mono_us() / 1000;

	if (!h || lsn <= h->lsn)
		return;
	h->lsn = lsn;
	if (now - h->written_ms >= SERVE_HOLD_WRITE_MS) {
		h->written_ms = now;
		hold_write(srv, h);
	}
}

uint64_t retain_serve_hold(struct retain_serve *srv, const char *stream, const char *const *peers,
		size_t n)
{
	uint64_t lsn = UINT64_MAX;

	for (size_t i = 0; srv && i < n; i++) {
		struct serve_hold *h = hold_get(srv, stream, peers[i]);

		if (!h || h->lsn < lsn)
			lsn = h ? h->lsn : 0;
	}
	return lsn;
}

void retain_serve_kick(struct retain_serve *srv, const char *stream)
{
	struct serve_session *ss, *next;

	if (!srv)
		return;
	for (ss = srv->sessions; ss; ss = next) {
		next = ss->next;
		if (ss->follow && strcmp(ss->stream, stream) == 0)
			session_pump(srv, ss);
	}
}

/* ------------------------------------------------------------ asking */

static void serve_reply(struct retain_serve *srv, const char *peer, const struct relay_proto_catchup *m,
		const struct relay_proto_catchup_reply *r)
{
	wire_writer_reset(&srv->out);
	if (!relay_proto_write_catchup_reply(&srv->out, r) ||
	    !relay_send(srv->relay, peer, FRAME_CATCHUP_REPLY, 0, srv->out.data, srv->out.len))
		log_warning("stream \"%.*s\": could not answer site \"%s\"'s catch-up", (int)m->stream.len,
			    m->stream.ptr, peer);
}

/*
 * What this site applied of source's transactions on stream (0: not known)
 * and its retained batches of them: its sink's, or (no sink: it was
 * promoted) opened here, with the position sealed then. NULL with why in msg.
 */
static struct retain *serve_find(struct retain_serve *srv, const char *stream, const char *source,
		bool *owned, uint64_t *applied, char *msg, size_t msglen)
{
	struct retain *r = NULL;
	char *dir, held[128], err[256];

	*owned = false;
	*applied = 0;
	if (srv->sink(srv->arg, stream, &r, applied)) {
		if (r && strcmp(retain_source(r), source) == 0)
			return r;
		if (!r)
			snprintf(msg, msglen, "its sink of stream %s keeps no retained batches, or is not "
				 "connected to its database yet", stream);
		else
			snprintf(msg, msglen, "its retained batches are of site %s, not %s",
				 retain_source(r), source);
		if (r)
			*applied = 0;     /* in another site's LSNs */
		return NULL;
	}
	if (!(dir = retain_serve_dir(srv->cfg, stream))) {
		snprintf(msg, msglen, "out of memory");
		return NULL;
	}
	if (!retain_sealed(dir, source, applied)) {
		*applied = 0;
		snprintf(msg, msglen, "it does not know what it applied of site %s on stream %s", source,
			 stream);
	} else if (!retain_dir_source(dir, held, sizeof(held)) || strcmp(held, source) != 0) {
		snprintf(msg, msglen, "no retained batches of site %s for stream %s here", source, stream);
	} else if (!(r = retain_open(dir, source, err, sizeof(err)))) {
		snprintf(msg, msglen, "retained batches: %s", err);
	} else {
		*owned = true;
	}
	free(dir);
	return r;
}

static const struct config_stream *stream_config(const struct strait_config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->n_streams; i++)
		if (strcmp(cfg->streams[i].name, name) == 0)
			return &cfg->streams[i];
	return NULL;
}

/* Checks the range, positions a new session at the asker's place; false with why in msg. */
static bool serve_start(struct retain_serve *srv, struct serve_session *ss,
		const struct relay_proto_catchup *m, char *msg, size_t msglen)
{
	const struct config_stream *cs = stream_config(srv->cfg, ss->stream);
	uint64_t prev, end = retain_end_lsn(ss->retain);
	struct spool *sp = retain_spool(ss->retain);
	char err[256];

	/* seeking below the floor (0 included) would serve from the oldest record held */
	if (m->after_lsn < retain_floor_lsn(ss->retain)) {
		snprintf(msg, msglen, "gap: it retains what follows " LSN_FMT " only, the asker stands "
			 "at " LSN_FMT, LSN_ARGS(retain_floor_lsn(ss->retain)), LSN_ARGS(m->after_lsn));
		return false;
	}
	if (!ss->follow && end < ss->cap) {
		snprintf(msg, msglen, "it retains up to " LSN_FMT " only, but applied up to " LSN_FMT,
			 LSN_ARGS(end), LSN_ARGS(ss->cap));
		return false;
	}
	if (!sp) {
		snprintf(msg, msglen, "its retained batches cannot be read now");
		return false;
	}
	ss->retain_gen = retain_generation(ss->retain);
	if (!cs || !(ss->enc = codec_new_encoder(cs->codec, cs->compression_level, CODEC_CONTENT_PGOUTPUT)) ||
	    !(ss->cursor = spool_cursor_new(sp, err, sizeof(err)))) {
		snprintf(msg, msglen, "%s", cs ? "out of memory" : "no such stream here");
		return false;
	}
	if (spool_cursor_seek(ss->cursor, m->after_lsn, &prev, err, sizeof(err)) != SPOOL_SEEK_OK) {
		snprintf(msg, msglen, "%s", err);
		return false;
	}
	return true;
}

/* CATCHUP: answer, and serve what the asker lacks. */
static void serve_request(struct retain_serve *srv, const char *peer, const struct relay_proto_catchup *m)
{
	struct relay_proto_catchup_reply r = { .stream = m->stream, .generation = m->generation };
	struct serve_session *ss = calloc(1, sizeof(*ss));
	char msg[512] = "out of memory", *source = wire_str_dup(m->source);

	if (ss && source && (ss->stream = wire_str_dup(m->stream))) {
		snprintf(ss->peer, sizeof(ss->peer), "%s", peer);
		/* a new ask of this site's replaces the one before */
		sessions_drop(srv, drop_peer_stream, ss);
		ss->generation = m->generation;
		ss->retain = serve_find(srv, ss->stream, source, &ss->owned, &ss->cap, msg, sizeof(msg));
		/* what it applied says level or ahead even when nothing can be served */
		r.applied_lsn = ss->cap;
	}
	if (ss && ss->retain) {
		r.floor_lsn = retain_floor_lsn(ss->retain);
		r.end_lsn = retain_end_lsn(ss->retain);
		ss->follow = m->flags & RELAY_CATCHUP_FOLLOW;
		r.ok = (m->flags & RELAY_CATCHUP_PROBE) ||
		       (!ss->follow && m->after_lsn >= ss->cap) ||
		       serve_start(srv, ss, m, msg, sizeof(msg));
	}
	if (!r.ok)
		r.message = relay_proto_str(msg);
	log_info("stream \"%.*s\": site \"%s\" asks %s \"%s\" after " LSN_FMT ": %s",
		 (int)m->stream.len, m->stream.ptr, peer, (m->flags & RELAY_CATCHUP_PROBE) ?
		 "whether this site retains the transactions of" : (m->flags & RELAY_CATCHUP_FOLLOW) ?
		 "for the batches this site relays from" : "for what this site applied from",
		 source ? source : "?", LSN_ARGS(m->after_lsn), !r.ok ? msg :
		 (m->flags & RELAY_CATCHUP_PROBE) ? "it does" : (ss->follow ? "relaying them" :
		 m->after_lsn >= r.applied_lsn ? "nothing to send" : "serving it"));
	serve_reply(srv, peer, m, &r);
	free(source);
	if (!r.ok || (m->flags & RELAY_CATCHUP_PROBE) || (!ss->follow && m->after_lsn >= ss->cap)) {
		if (ss)
			session_free(ss);
		return;
	}
	ss->next = srv->sessions;
	srv->sessions = ss;
	session_pump(srv, ss);
}

static void serve_ack(struct retain_serve *srv, const char *peer, const struct relay_proto_ack *a)
{
	for (struct serve_session *ss = srv->sessions; ss; ss = ss->next) {
		if (strcmp(ss->peer, peer) != 0 || !wire_str_eq(a->stream, ss->stream) ||
		    a->generation != ss->generation)
			continue;
		if (a->released_bytes > ss->window_freed)
			ss->window_freed = a->released_bytes;
		if (ss->follow)
			hold_note(srv, ss->stream, peer, a->committed_lsn);
		session_pump(srv, ss);
		return;
	}
}

void retain_serve_frame(struct retain_serve *srv, const char *peer, const struct frame *f)
{
	struct relay_proto_catchup m;
	struct relay_proto_ack a;

	if (!srv)
		return;
	if (f->type == FRAME_CATCHUP) {
		if (relay_proto_read_catchup(f->payload, f->payload_len, &m) != RELAY_PROTO_OK)
			log_error("refused malformed CATCHUP from \"%s\"", peer);
		else
			serve_request(srv, peer, &m);
	} else if (f->type == FRAME_CATCHUP_ACK) {
		if (relay_proto_read_ack(f->payload, f->payload_len, &a) != RELAY_PROTO_OK)
			log_error("refused malformed CATCHUP_ACK from \"%s\"", peer);
		else
			serve_ack(srv, peer, &a);
	}
}

void retain_serve_writable(struct retain_serve *srv, const char *peer)
{
	struct serve_session *ss, *next;

	if (!srv)
		return;
	/* a session that ends frees itself */
	for (ss = srv->sessions; ss; ss = next) {
		next = ss->next;
		if (strcmp(ss->peer, peer) == 0)
			session_pump(srv, ss);
	}
}
