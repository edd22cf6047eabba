/*
 * level.c — failover among three or more sites: one site takes over, and
 * every replica it reaches ends level with it, nothing applied anywhere
 * thrown away.
 *
 * The replicas of a lost primary may stand at different positions of its
 * WAL. Each keeps what it applied (retained batches, retain.h), so:
 *
 *  1. Claim. The site failing over asks every reachable sibling (CLAIM). A
 *     sibling that is primary, or is taking over already, answers no; one
 *     failing over itself answers by name: the site whose name sorts first
 *     goes on, the other gives its own failover up (and follows once the
 *     first is primary). So two failovers started at once leave one primary.
 *  2. Level. For each stream of the old primary, it takes from each
 *     reachable sibling in turn what that sibling applied beyond it
 *     (streams_catchup()), as MHA does with relay logs: afterwards it holds
 *     the most any reachable replica holds.
 *  3. Promote, as a two-site failover does, and send every other replica
 *     PROMOTE_ACK (each slot's start).
 *  4. Follow. A replica that gets it asks the new primary for what it lacks
 *     (the new primary serves its own retained batches, sealed at what it
 *     applied), then moves its origins to the slots' starts. A replica that
 *     holds more than the new primary, or cannot get what it lacks, is
 *     fenced: it must rejoin.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "common/fault.h"
#include "common/log.h"
#include "common/lsn.h"
#include "config/config.h"
#include "gateway/cluster/failover_int.h"
#include "gateway/relay/frame.h"
#include "gateway/relay/relay.h"
#include "gateway/relay/relay_proto.h"
#include "gateway/relay/wire.h"
#include "gateway/stream/stream.h"

#define FO_CLAIM_TIMEOUT_MS 5000

/* The other replicas of old's streams that share one with this site: into sites[]; how many. */
static size_t fo_siblings(const struct failover *f, const char *old, size_t *sites, size_t max)
{
	int o = fo_site_index(f, old);
	size_t n = 0;

	for (size_t p = 0; p < f->cfg->n_sites && n < max; p++) {
		if ((int)p == o || p == f->self)
			continue;
		for (size_t i = 0; i < f->cfg->n_streams; i++) {
			const struct config_stream *cs = &f->cfg->streams[i];

			if (o >= 0 && fo_stream_with(f, cs, (size_t)o) && fo_stream_with(f, cs, p)) {
				sites[n++] = p;
				break;
			}
		}
	}
	return n;
}

/* ------------------------------------------------------------------ claim */

static void fo_send_claim_frame(struct failover *f, const char *peer, enum frame_type type,
		bool ok, const char *why)
{
	uint8_t buf[2048];
	struct wire_writer w;
	bool written;

	wire_writer_init(&w, buf, sizeof(buf));
	if (type == FRAME_CLAIM)
		written = relay_proto_write_promote(&w, &(struct relay_proto_promote){
			.epoch = f->new_epoch, .reason = relay_proto_str("failover") });
	else
		written = relay_proto_write_promote_ack(&w, &(struct relay_proto_promote_ack){
			.ok = ok, .epoch = role_epoch(f->role), .message = relay_proto_str(why) });
	if (!written || !relay_send(f->relay, peer, type, 0, w.data, w.len))
		log_warning("could not send %s to site \"%s\"", frame_type_name(type), peer);
}

static void fo_level_next(struct failover *f);

static void fo_claim_settled(struct failover *f)
{
	f->claimed = true;
	f->n_claim_wait = 0;
	event_del(f->timer);
	f->lv_stream = 0;
	f->lv_sibling = 0;
	fo_level_next(f);
}

static void fo_claim_timeout(struct failover *f)
{
	for (size_t i = 0; i < f->n_claim_wait; i++)
		fo_step(f, "WARNING: site %s did not answer the claim in %d s", f->claim_wait[i],
			FO_CLAIM_TIMEOUT_MS / 1000);
	fo_claim_settled(f);
}

/* Step 1: every reachable sibling is asked; the level starts once all answered. */
void fo_level_start(struct failover *f, const char *old)
{
	size_t sites[FO_MAX_PEERS], n = fo_siblings(f, old, sites, FO_MAX_PEERS);

	f->n_claim_wait = 0;
	f->lv_n = 0;
	for (size_t i = 0; i < n; i++) {
		const char *name = f->cfg->sites[sites[i]].name;

		if (!relay_is_up(f->relay, name)) {
			fo_step(f, "WARNING: site %s, another replica, is not reachable: what it applied "
				"beyond this site is not taken; if it holds more, it is fenced and must "
				"rejoin", name);
			continue;
		}
		f->lv_sites[f->lv_n++] = sites[i];
		snprintf(f->claim_wait[f->n_claim_wait++], sizeof(f->claim_wait[0]), "%s", name);
		fo_send_claim_frame(f, name, FRAME_CLAIM, true, NULL);
	}
	if (!f->n_claim_wait) {
		fo_claim_settled(f);
		return;
	}
	fo_step(f, "asked %zu other replica(s) whether another failover runs", f->n_claim_wait);
	fo_arm(f, FO_CLAIM_TIMEOUT_MS, fo_claim_timeout);
	(void)fault_hit("failover.claims_sent");
}

/* A CLAIM from a sibling failing over: yes, or no and why. */
static void fo_on_claim(struct failover *f, const char *peer)
{
	const char *self = f->cfg->sites[f->self].name;
	char why[256];

	if (role_current(f->role) == ROLE_PRIMARY) {
		snprintf(why, sizeof(why), "site %s is primary at epoch %" PRIu64, self, role_epoch(f->role));
	} else if (f->op == FO_PROMOTE && !f->answer_peer && f->claimed) {
		snprintf(why, sizeof(why), "site %s is taking over already", self);
	} else if (f->op == FO_PROMOTE && !f->answer_peer && strcmp(self, peer) < 0) {
		snprintf(why, sizeof(why), "site %s is failing over too, and goes first (its name "
			 "sorts first)", self);
	} else {
		if (f->op == FO_PROMOTE && !f->answer_peer) {
			fo_send_claim_frame(f, peer, FRAME_CLAIM_REPLY, true, "");
			fo_end(f, false, "refused: site %s is failing over at the same time and goes first "
			       "(its name sorts first): this site follows it once it is primary", peer);
			return;
		}
		fo_send_claim_frame(f, peer, FRAME_CLAIM_REPLY, true, "");
		log_notice("site \"%s\" is failing over: this site follows it once it is primary", peer);
		return;
	}
	fo_send_claim_frame(f, peer, FRAME_CLAIM_REPLY, false, why);
}

static void fo_on_claim_reply(struct failover *f, const char *peer,
		const struct relay_proto_promote_ack *m)
{
	size_t i;

	for (i = 0; i < f->n_claim_wait && strcmp(f->claim_wait[i], peer) != 0; i++)
		;
	if (f->op != FO_PROMOTE || f->claimed || i == f->n_claim_wait)
		return;
	if (!m->ok) {
		char *why = wire_str_dup(m->message);

		fo_end(f, false, "refused: %s", why ? why : "out of memory");
		free(why);
		return;
	}
	fo_step(f, "site %s lets this site take over", peer);
	memmove(f->claim_wait[i], f->claim_wait[i + 1], (f->n_claim_wait - i - 1) * sizeof(f->claim_wait[0]));
	if (--f->n_claim_wait == 0)
		fo_claim_settled(f);
}

void fo_claim_frame(struct failover *f, const char *peer, const struct frame *fr)
{
	struct relay_proto_promote c;
	struct relay_proto_promote_ack r;
	enum relay_proto_status ps = fr->type == FRAME_CLAIM
		? relay_proto_read_promote(fr->payload, fr->payload_len, &c)
		: relay_proto_read_promote_ack(fr->payload, fr->payload_len, &r, NULL, 0);

	if (ps != RELAY_PROTO_OK) {
		log_error("refused malformed %s from \"%s\": %s", frame_type_name(fr->type), peer,
			  relay_proto_status_str(ps));
		return;
	}
	if (fr->type == FRAME_CLAIM)
		fo_on_claim(f, peer);
	else
		fo_on_claim_reply(f, peer, &r);
}

/* ------------------------------------------------------------------ level */

/* The stream from the old primary that the level works on now, or NULL when done. */
static const struct config_stream *fo_level_stream(struct failover *f)
{
	int o = fo_site_index(f, f->peer);

	for (; f->lv_stream < f->cfg->n_streams; f->lv_stream++) {
		const struct config_stream *cs = &f->cfg->streams[f->lv_stream];

		if (o >= 0 && cs->n_to > 1 && fo_stream_with(f, cs, (size_t)o) && f->lv_sibling < f->lv_n)
			return cs;
		f->lv_sibling = 0;
	}
	return NULL;
}

static void fo_level_done(void *arg, const char *stream, enum streams_catchup_result r,
		uint64_t applied, const char *msg)
{
	struct failover *f = arg;
	const char *sib;

	(void)applied;
	if (f->op != FO_PROMOTE || !f->catching_up)
		return;       /* the failover ended meanwhile */
	f->catching_up = false;
	sib = f->cfg->sites[f->lv_sites[f->lv_sibling]].name;
	switch (r) {
	case STREAMS_CATCHUP_LEVEL:
	case STREAMS_CATCHUP_AHEAD:
		fo_step(f, "stream %s: site %s holds nothing this site lacks (%s)", stream, sib, msg);
		break;
	case STREAMS_CATCHUP_TAKEN:
		fo_step(f, "stream %s: took from site %s what it applied beyond this site (%s)", stream,
			sib, msg);
		break;
	case STREAMS_CATCHUP_FAILED:
		if (!f->force) {
			fo_end(f, false, "refused: stream %s: site %s may hold transactions this site lacks "
			       "and could not serve them (%s); fail over to the most caught-up site "
			       "(--dry-run names it), or --force, which fences site %s if it holds more",
			       stream, sib, msg, sib);
			return;
		}
		fo_step(f, "WARNING: stream %s: site %s could not serve what it may hold beyond this "
			"site (%s); --force: going on", stream, sib, msg);
		break;
	}
	f->lv_sibling++;
	fo_level_next(f);
}

/* Step 2: the next (stream, sibling); then the promotion. */
static void fo_level_next(struct failover *f)
{
	const struct config_stream *cs = fo_level_stream(f);
	struct streams *s = f->ops.streams(f->arg);
	char err[256];

	if (!cs) {
		fo_step(f, "this site holds what every reachable replica applied");
		fo_promote(f);
		return;
	}
	if (!s || !streams_catchup(s, cs->name, f->cfg->sites[f->lv_sites[f->lv_sibling]].name,
				   fo_level_done, f, err, sizeof(err))) {
		fo_fail(f, s ? err : "no streams run here");
		return;
	}
	f->catching_up = true;
}

/* ----------------------------------------------------------------- follow */

static void fo_follow_next(struct failover *f);

/* This replica cannot be brought level with the new primary: fenced, for a rejoin. */
static void fo_follow_refused(struct failover *f, const char *why)
{
	char peer[64];

	snprintf(peer, sizeof(peer), "%s", f->peer);
	fo_step(f, "%s", why);
	if (!role_set(f->role, ROLE_FENCED, f->new_epoch, peer, "cannot follow the new primary")) {
		fo_fail(f, "could not record the role (see the log)");
		return;
	}
	relay_set_epoch(f->relay, f->new_epoch);
	f->ops.rebuild(f->arg);
	fo_end(f, false, "site %s cannot follow site %s without losing what only it "
	       "applied: it is fenced; run rejoin on it (its retained batches and the rejoin's "
	       "report keep what it had)", f->cfg->sites[f->self].name, peer);
	failover_stepped_down(f, peer);
}

static void fo_follow_level_done(void *arg, const char *stream, enum streams_catchup_result r,
		uint64_t applied, const char *msg)
{
	struct failover *f = arg;
	char why[768];

	(void)applied;
	if (f->op != FO_FOLLOW || !f->catching_up)
		return;       /* the follow ended meanwhile */
	f->catching_up = false;
	switch (r) {
	case STREAMS_CATCHUP_LEVEL:
		fo_step(f, "stream %s: level with site %s (%s)", stream, f->peer, msg);
		break;
	case STREAMS_CATCHUP_TAKEN:
		fo_step(f, "stream %s: took from site %s what this site lacked (%s)", stream, f->peer, msg);
		break;
	case STREAMS_CATCHUP_AHEAD:
	case STREAMS_CATCHUP_FAILED:
		snprintf(why, sizeof(why), "stream %s: %s", stream, msg);
		fo_follow_refused(f, why);
		return;
	}
	f->lv_stream++;
	fo_follow_next(f);
}

static void fo_follow_next(struct failover *f)
{
	struct streams *s = f->ops.streams(f->arg);
	char err[256];

	if (f->lv_stream >= f->n_follow) {
		fo_follow_move(f);
		return;
	}
	if (!s || !streams_catchup(s, f->follow_at[f->lv_stream].stream, f->peer,
				   fo_follow_level_done, f, err, sizeof(err))) {
		fo_follow_refused(f, s ? err : "no streams run here");
		return;
	}
	f->catching_up = true;
}

/* Step 4, at a replica told by the new primary: level first, then its streams. */
void fo_follow_level(struct failover *f)
{
	f->lv_stream = 0;
	fo_follow_next(f);
}
