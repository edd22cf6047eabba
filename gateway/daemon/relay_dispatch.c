/*
 * relay_dispatch.c — where each thing the relay hands the daemon goes.
 *
 * CONTRACT
 * The relay's callbacks (daemon_relay_callbacks) take every frame, link-up,
 * link-down and writable from the relay. Each frame's epoch is checked first:
 * a higher one than this site's makes it step down (role.c), and the peer's
 * entry remembers the epoch and, from a HEARTBEAT, the role it claims.
 * FENCE, PROMOTE and PROMOTE_ACK go to the failover; everything else goes to
 * the streams. Outgoing HELLOs and HEARTBEATs are filled in from the streams
 * and this site's role.
 *
 * The failover's hooks (daemon_failover_ops) let it read, rebuild or stop the
 * streams: when the role changes the streams are built anew for it, and the
 * links already up are handed to them at once.
 */
#include "gateway/daemon/daemon_int.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "config/config.h"
#include "gateway/cluster/failover.h"
#include "gateway/cluster/role.h"
#include "gateway/daemon/forward.h"
#include "gateway/relay/frame.h"
#include "gateway/relay/relay.h"
#include "gateway/stream/stream.h"
#include "gateway/verify/verify_service.h"

struct daemon_peer *daemon_find_peer(const struct daemon *d, const char *name)
{
	for (size_t i = 0; i < d->n_peers; i++) {
		if (strcmp(d->peers[i].name, name) == 0)
			return &d->peers[i];
	}
	return NULL;
}

/* The peer's entry, made on first contact; NULL when out of memory. */
static struct daemon_peer *daemon_peer(struct daemon *d, const char *name)
{
	struct daemon_peer *p = daemon_find_peer(d, name), *grown;

	if (p)
		return p;
	grown = realloc(d->peers, (d->n_peers + 1) * sizeof(*grown));
	if (!grown)
		return NULL;
	d->peers = grown;
	p = &d->peers[d->n_peers];
	*p = (struct daemon_peer){ .name = strdup(name) };
	if (!p->name)
		return NULL;
	d->n_peers++;
	return p;
}

/* ---- relay callbacks: the streams take what concerns them ---- */

/*
 * The role changed: streams follow it (each runs from the primary). Links
 * already up get the streams' link-up at once; the sinks ask to resume when
 * their apply is ready.
 */
void daemon_rebuild_streams(struct daemon *d)
{
	struct relay_proto_hello none = { 0 };

	if (!d->relay)
		return;
	verify_service_set_streams(d->verify, NULL);
	streams_free(d->streams);
	d->streams = streams_new_role(d->base, d->cfg, d->self, d->relay, role_current(d->role),
				      daemon_primary_site(d));
	if (d->streams)
		verify_service_set_streams(d->verify, d->streams);
	if (!d->streams) {
		log_error("could not set up the streams for role %s", daemon_site_role(d));
		return;
	}
	for (size_t i = 0; i < d->cfg->n_sites; i++) {
		if (i != d->self && relay_is_up(d->relay, d->cfg->sites[i].name))
			streams_connected(d->streams, d->cfg->sites[i].name, &none);
	}
}

static struct streams *daemon_failover_streams(void *arg)
{
	return ((struct daemon *)arg)->streams;
}

static void daemon_failover_rebuild(void *arg)
{
	daemon_rebuild_streams(arg);
}

/* Promotion: no stream runs while the slots are made. */
static void daemon_failover_stop(void *arg)
{
	struct daemon *d = arg;

	verify_service_set_streams(d->verify, NULL);
	streams_free(d->streams);
	d->streams = streams_new_role(d->base, d->cfg, d->self, d->relay, ROLE_FENCED,
				      CONFIG_SITE_NONE);
	if (d->streams)
		verify_service_set_streams(d->verify, d->streams);
}

const struct failover_ops daemon_failover_ops = {
	.streams = daemon_failover_streams,
	.rebuild = daemon_failover_rebuild,
	.stop = daemon_failover_stop,
};

/* Every frame from a peer carries its epoch: a higher one than ours makes us step down. */
static void daemon_heard(struct daemon *d, const char *peer, uint64_t epoch)
{
	struct daemon_peer *p = daemon_peer(d, peer);

	if (p) {
		p->epoch = epoch;
		p->heard_at = time(NULL);
	}
	enum role_kind before = role_current(d->role);

	if (role_heard_epoch(d->role, peer, epoch) && d->relay)
		relay_set_epoch(d->relay, role_epoch(d->role));
	if (before != ROLE_FENCED && role_current(d->role) == ROLE_FENCED) {
		/* no stream runs from a fenced site; its database is fenced next */
		daemon_rebuild_streams(d);
		if (d->failover)
			failover_stepped_down(d->failover, peer);
	}
}

static void daemon_relay_hello(void *arg, const char *peer, struct relay_proto_hello *hello)
{
	struct daemon *d = arg;

	if (d->streams)
		streams_hello(d->streams, peer, hello);
}

static void daemon_relay_heartbeat(void *arg, const char *peer, struct relay_proto_heartbeat *hb)
{
	struct daemon *d = arg;

	/* what this site's sources read for peer and peer has not applied (0: caught up) */
	if (d->streams)
		hb->wal_lsn = streams_peer_pending_wal(d->streams, peer);
	switch (role_current(d->role)) {
	case ROLE_PRIMARY:
		hb->role = RELAY_ROLE_PRIMARY;
		break;
	case ROLE_REPLICA:
		hb->role = RELAY_ROLE_REPLICA;
		break;
	case ROLE_FENCED:
		hb->role = RELAY_ROLE_FENCED;
		break;
	}
}

static void daemon_relay_connected(void *arg, const char *peer, uint64_t epoch,
		const struct relay_proto_hello *hello)
{
	struct daemon *d = arg;

	daemon_heard(d, peer, epoch);
	if (d->streams)
		streams_connected(d->streams, peer, hello);
}

/*
 * Frames that carry data or change roles are refused from a site at a lower
 * epoch than this one: it has not heard of the newer primary yet (it will,
 * from this site's frames), and what it sends may be what a deposed primary
 * took. Heartbeats, HELLO, ACK, RESUME and FENCE still pass, so it learns.
 */
static bool daemon_refuse_stale(struct daemon *d, const char *peer, const struct frame *f)
{
	struct daemon_peer *p;
	time_t now;

	if (f->epoch >= role_epoch(d->role))
		return false;
	switch (f->type) {
	case FRAME_BATCH:
	case FRAME_SYNC:
	case FRAME_SEQUENCES:
	case FRAME_VERIFY:
	case FRAME_PROMOTE:
	case FRAME_PROMOTE_ACK:
	case FRAME_COMMAND:
	case FRAME_CLAIM:
	case FRAME_CATCHUP_BATCH:
		break;
	default:
		return false;
	}
	p = daemon_peer(d, peer);
	now = time(NULL);
	if (!p || now - p->stale_logged_at >= 10) {
		log_warning("refused %s from site \"%s\" at epoch %" PRIu64 ", lower than this site's "
			    "%" PRIu64 " (it has not heard of the newer primary yet)",
			    frame_type_name(f->type), peer, f->epoch, role_epoch(d->role));
		if (p)
			p->stale_logged_at = now;
	}
	return true;
}

static void daemon_relay_frame(void *arg, const char *peer, const struct frame *f)
{
	struct daemon *d = arg;
	struct relay_proto_heartbeat hb;

	daemon_heard(d, peer, f->epoch);
	if (f->type == FRAME_HEARTBEAT &&
	    relay_proto_read_heartbeat(f->payload, f->payload_len, &hb) == RELAY_PROTO_OK) {
		struct daemon_peer *p = daemon_peer(d, peer);

		/* a site that takes the primary role back set its streams up anew: they wait for us */
		if (p && p->role != hb.role && p->role != RELAY_ROLE_UNKNOWN &&
		    hb.role == RELAY_ROLE_PRIMARY && d->streams)
			streams_peer_became_primary(d->streams, peer);
		if (p)
			p->role = hb.role;
		/* two primaries at one epoch: one name wins, the other site steps down */
		if (hb.role == RELAY_ROLE_PRIMARY && role_heard_primary(d->role, peer, f->epoch)) {
			daemon_rebuild_streams(d);
			if (d->failover)
				failover_stepped_down(d->failover, peer);
		}
		if (d->failover)
			failover_heartbeat(d->failover, peer, f->epoch, &hb);
	}
	if (daemon_refuse_stale(d, peer, f))
		return;
	if (f->type == FRAME_FENCE || f->type == FRAME_PROMOTE || f->type == FRAME_PROMOTE_ACK ||
	    f->type == FRAME_CLAIM || f->type == FRAME_CLAIM_REPLY || f->type == FRAME_FOLLOW_REQ) {
		if (d->failover)
			failover_frame(d->failover, peer, f);
		return;
	}
	if (f->type == FRAME_COMMAND || f->type == FRAME_COMMAND_REPLY) {
		if (d->forward)
			forward_frame(d->forward, peer, f);
		return;
	}
	if (d->streams)
		streams_frame(d->streams, peer, f);
}

static void daemon_relay_writable(void *arg, const char *peer)
{
	struct daemon *d = arg;

	if (d->streams)
		streams_writable(d->streams, peer);
}

static void daemon_relay_disconnected(void *arg, const char *peer, const char *reason)
{
	struct daemon *d = arg;

	(void)reason;
	if (d->forward)
		forward_link_down(d->forward, peer);
	if (d->streams)
		streams_disconnected(d->streams, peer);
}

const struct relay_callbacks daemon_relay_callbacks = {
	.hello = daemon_relay_hello,
	.heartbeat = daemon_relay_heartbeat,
	.connected = daemon_relay_connected,
	.frame = daemon_relay_frame,
	.writable = daemon_relay_writable,
	.disconnected = daemon_relay_disconnected,
};
