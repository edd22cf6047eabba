/*
 * fence_proto.c — the failover's frames on the relay: PROMOTE (a switchover
 * asks its target to take over), PROMOTE_ACK (the answer, with each stream's
 * start LSN), FENCE (the primary tells a fenced old primary how far it
 * applied of each stream, for its rejoin), and the HEARTBEATs that say how
 * far each peer read and when it was last heard.
 *
 * A malformed frame is logged and dropped; a frame that comes at the wrong
 * time (no switchover waiting, a site that cannot be promoted) is answered
 * or logged, never acted on.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "common/log.h"
#include "common/lsn.h"
#include "config/config.h"
#include "gateway/cluster/failover_int.h"
#include "gateway/relay/frame.h"
#include "gateway/relay/relay.h"
#include "gateway/relay/relay_proto.h"
#include "gateway/relay/wire.h"
#include "replicator/apply.h"
#include "replicator/pgquery.h"

void fo_send_promote_ack(struct failover *f, const char *peer, bool ok, const char *why)
{
	struct relay_proto_resume streams[FO_MAX_STREAMS];
	struct relay_proto_promote_ack ack = {
		.ok = ok,
		.epoch = role_epoch(f->role),
		.message = relay_proto_str(ok ? (f->log ? f->log : "") : why),
		.streams = streams,
	};
	uint8_t buf[16384];
	struct wire_writer w;

	if (ack.message.len > 8000)
		ack.message.len = 8000;
	/* during a promotion its slots; later (FOLLOW_REQ) where they started */
	const struct fo_slot *slots = f->n_slots ? f->slots : f->starts;
	size_t n = f->n_slots ? f->n_slots : f->n_starts;

	for (size_t i = 0; ok && i < n; i++) {
		streams[i].stream = relay_proto_str(slots[i].stream);
		streams[i].lsn = slots[i].lsn;
		ack.nstreams++;
	}
	wire_writer_init(&w, buf, sizeof(buf));
	if (!relay_proto_write_promote_ack(&w, &ack) ||
	    !relay_send(f->relay, peer, FRAME_PROMOTE_ACK, 0, w.data, w.len))
		log_error("could not send PROMOTE_ACK to site \"%s\"", peer);
}

static void fo_info_result(void *arg, const PGresult *res, const char *err)
{
	struct failover *f = arg;
	struct relay_proto_resume streams[FO_MAX_STREAMS];
	struct relay_proto_fence m = { .streams = streams };
	uint8_t buf[8192];
	struct wire_writer w;

	if (err || !res || role_current(f->role) != ROLE_PRIMARY)
		return;
	for (int i = 0; i < PQntuples(res) && m.nstreams < FO_MAX_STREAMS; i++) {
		if (!lsn_parse(PQgetvalue(res, i, 1), &streams[m.nstreams].lsn))
			continue;
		streams[m.nstreams].stream = relay_proto_str(PQgetvalue(res, i, 0));
		m.nstreams++;
	}
	wire_writer_init(&w, buf, sizeof(buf));
	if (relay_proto_write_fence(&w, &m) &&
	    relay_send(f->relay, f->info_peer, FRAME_FENCE, 0, w.data, w.len))
		log_info("told fenced site \"%s\" what this site applied of its %zu stream(s)",
			 f->info_peer, m.nstreams);
}

/* The primary hears a fenced peer: tell it what we applied of it (origin progress). */
static void fo_send_fence(struct failover *f, const char *peer)
{
	int p = fo_site_index(f, peer);
	FILE *out;
	char *sql = NULL;
	size_t len = 0;
	bool any = false;

	if (p < 0 || (f->q_info && pgquery_busy(f->q_info)))
		return;
	out = open_memstream(&sql, &len);
	if (!out)
		return;
	/* the stream's origin and its parallel apply workers': the highest is where it is */
	fprintf(out, "SELECT v.name, COALESCE((SELECT pg_catalog.max("
		"pg_catalog.pg_replication_origin_progress(roname, false)) FROM "
		"pg_catalog.pg_replication_origin WHERE roname = v.origin OR "
		"pg_catalog.starts_with(roname, v.origin || ':apply:')), '0/0')::text FROM (VALUES ");
	for (size_t i = 0; i < f->cfg->n_streams; i++) {
		const struct config_stream *cs = &f->cfg->streams[i];
		char origin[160], *a, *b;

		if (!fo_stream_with(f, cs, (size_t)p))
			continue;
		apply_origin_name(cs->name, origin, sizeof(origin));
		a = fo_quote(cs->name, '\'');
		b = fo_quote(origin, '\'');
		if (a && b)
			fprintf(out, "%s(%s, %s)", any ? ", " : "", a, b);
		any = any || (a && b);
		free(a);
		free(b);
	}
	fprintf(out, ") v(name, origin)");
	if (fclose(out) != 0 || !any) {
		free(sql);
		return;
	}
	if (!f->q_info)
		f->q_info = pgquery_new(f->base, f->cfg->sites[f->self].database, "failover: origins");
	snprintf(f->info_peer, sizeof(f->info_peer), "%s", peer);
	if (f->q_info)
		(void)pgquery_run(f->q_info, sql, fo_info_result, f);
	free(sql);
}

static void fo_on_fence(struct failover *f, const char *peer, const struct frame *fr)
{
	static struct relay_proto_resume streams[FO_MAX_STREAMS];
	struct relay_proto_fence m;
	enum relay_proto_status ps = relay_proto_read_fence(fr->payload, fr->payload_len, &m,
							    streams, FO_MAX_STREAMS);

	if (ps != RELAY_PROTO_OK) {
		log_error("refused malformed FENCE from \"%s\": %s", peer, relay_proto_status_str(ps));
		return;
	}
	if (role_current(f->role) != ROLE_FENCED)
		return;          /* only a fenced site keeps it, for its rejoin */
	snprintf(f->fence_from, sizeof(f->fence_from), "%s", peer);
	f->n_applied = 0;
	for (size_t i = 0; i < m.nstreams; i++) {
		struct fo_slot *a = &f->applied[f->n_applied++];

		snprintf(a->stream, sizeof(a->stream), "%.*s", (int)m.streams[i].stream.len,
			 m.streams[i].stream.ptr);
		a->lsn = m.streams[i].lsn;
	}
	log_info("site \"%s\" (the primary) applied %zu stream(s) of this site's transactions "
		 "up to the LSNs a rejoin keeps what follows of", peer, m.nstreams);
}

static void fo_on_promote(struct failover *f, const char *peer, const struct frame *fr)
{
	struct relay_proto_promote m;
	enum relay_proto_status ps = relay_proto_read_promote(fr->payload, fr->payload_len, &m);

	if (ps != RELAY_PROTO_OK) {
		log_error("refused malformed PROMOTE from \"%s\": %s", peer, relay_proto_status_str(ps));
		return;
	}
	if (f->op != FO_NONE || role_current(f->role) != ROLE_REPLICA ||
	    m.epoch <= role_epoch(f->role)) {
		char why[256];

		snprintf(why, sizeof(why), "site %s cannot be promoted now (role %s at epoch %" PRIu64
			 "%s)", f->cfg->sites[f->self].name, role_name(role_current(f->role)),
			 role_epoch(f->role), f->op != FO_NONE ? ", busy" : "");
		log_error("%s", why);
		fo_send_promote_ack(f, peer, false, why);
		return;
	}
	fo_begin(f, FO_PROMOTE, NULL, peer);
	f->answer_peer = true;
	f->new_epoch = m.epoch;
	fo_step(f, "site %s asks site %s to become primary at epoch %" PRIu64 " (%.*s)", peer,
		f->cfg->sites[f->self].name, m.epoch, (int)m.reason.len, m.reason.ptr);
	fo_promote(f);
}

static void fo_on_promote_ack(struct failover *f, const char *peer, const struct frame *fr)
{
	static struct relay_proto_resume streams[FO_MAX_STREAMS];
	struct relay_proto_promote_ack ack;
	enum relay_proto_status ps = relay_proto_read_promote_ack(fr->payload, fr->payload_len, &ack,
								   streams, FO_MAX_STREAMS);

	if (ps != RELAY_PROTO_OK) {
		log_error("refused malformed PROMOTE_ACK from \"%s\": %s", peer,
			  relay_proto_status_str(ps));
		return;
	}
	/* a replica hears the new primary of another site's switchover */
	if (f->op == FO_NONE && ack.ok && role_current(f->role) == ROLE_REPLICA &&
	    ack.epoch >= role_epoch(f->role) && strcmp(role_primary(f->role), peer) != 0) {
		fo_follow_start(f, peer, &ack);
		return;
	}
	if (f->op != FO_SWITCHOVER || strcmp(peer, f->peer) != 0 || !f->new_epoch) {
		log_warning("PROMOTE_ACK from \"%s\" that no switchover here waits for", peer);
		return;
	}
	{
		char *text = wire_str_dup(ack.message);

		fo_step(f, "site %s says:", peer);
		fo_step_lines(f, text);
		free(text);
	}
	if (!ack.ok) {
		event_del(f->timer);
		fo_fail(f, "the target refused to become primary");
		return;
	}
	fo_switch_acked(f, &ack);
}

/*
 * A replica that was away when a new primary took over (it never got its
 * PROMOTE_ACK) asks where its streams start; the answer makes it follow.
 */
static void fo_on_follow_req(struct failover *f, const char *peer)
{
	if (role_current(f->role) != ROLE_PRIMARY)
		return;
	if (!f->n_starts) {
		log_warning("site \"%s\" asks where this site's streams start, which this process does "
			    "not know (it was promoted before straitd started): run rejoin on it", peer);
		return;
	}
	log_notice("site \"%s\" follows another primary: telling it where this site's streams start",
		   peer);
	fo_send_promote_ack(f, peer, true, NULL);
}

void failover_frame(struct failover *f, const char *peer, const struct frame *fr)
{
	if (fr->type == FRAME_FENCE)
		fo_on_fence(f, peer, fr);
	else if (fr->type == FRAME_PROMOTE)
		fo_on_promote(f, peer, fr);
	else if (fr->type == FRAME_PROMOTE_ACK)
		fo_on_promote_ack(f, peer, fr);
	else if (fr->type == FRAME_CLAIM || fr->type == FRAME_CLAIM_REPLY)
		fo_claim_frame(f, peer, fr);
	else if (fr->type == FRAME_FOLLOW_REQ)
		fo_on_follow_req(f, peer);
}

/* A replica hears a primary it does not follow, at its own epoch: it asks where to follow it from. */
static void fo_ask_follow(struct failover *f, struct fo_peer *p, uint64_t epoch)
{
	/* a role file that names no primary (an older one) follows the config: nothing to ask */
	if (role_current(f->role) != ROLE_REPLICA || f->op != FO_NONE || epoch < role_epoch(f->role) ||
	    !role_primary(f->role)[0] || strcmp(role_primary(f->role), p->name) == 0 ||
	    p->heard_at - p->follow_asked_at < 5)
		return;
	p->follow_asked_at = p->heard_at;
	log_notice("site \"%s\" is primary at epoch %" PRIu64 ", not site \"%s\": asking it where its "
		   "streams start", p->name, epoch, role_primary(f->role));
	{
		uint8_t buf[256];
		struct wire_writer w;

		wire_writer_init(&w, buf, sizeof(buf));
		if (!relay_proto_write_promote(&w, &(struct relay_proto_promote){
			.epoch = epoch, .reason = relay_proto_str("follow") }) ||
		    !relay_send(f->relay, p->name, FRAME_FOLLOW_REQ, 0, w.data, w.len))
			log_warning("could not ask site \"%s\" where its streams start", p->name);
	}
}

void failover_heartbeat(struct failover *f, const char *peer, uint64_t epoch,
		const struct relay_proto_heartbeat *hb)
{
	struct fo_peer *p = NULL;

	for (size_t i = 0; i < f->n_peers; i++)
		if (strcmp(f->peers[i].name, peer) == 0)
			p = &f->peers[i];
	if (!p && f->n_peers < FO_MAX_PEERS) {
		p = &f->peers[f->n_peers++];
		snprintf(p->name, sizeof(p->name), "%s", peer);
	}
	if (!p)
		return;
	p->pending_wal = hb->wal_lsn;
	p->heard_at = time(NULL);
	if (hb->role == RELAY_ROLE_PRIMARY)
		fo_ask_follow(f, p, epoch);
	/* a fenced old primary learns what we applied of it, for its rejoin */
	if (hb->role == RELAY_ROLE_FENCED && role_current(f->role) == ROLE_PRIMARY &&
	    p->heard_at - p->fence_sent_at >= 5) {
		p->fence_sent_at = p->heard_at;
		fo_send_fence(f, peer);
	}
}
