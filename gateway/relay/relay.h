/*
 * relay.h — the relay link: one TLS 1.3 TCP connection between this site and
 * each other site of the cluster, carrying frames (frame.h) whose payloads
 * relay_proto.h defines.
 *
 * Who connects: of two sites, the one whose name sorts lower (strcmp, byte
 * order) dials; the other accepts. So "cloud" dials "onprem", and there is
 * never more than one link per pair. The acceptor listens on its tunnel
 * address at relay.port; the dialer connects from its own tunnel address to
 * the peer's tunnel address and relay.port. A connection from a site that
 * should be dialed rather than dial is refused.
 *
 * Authentication (tls.h): both ends present a certificate from the cluster CA
 * and verify the other's. The dialer requires the acceptor's certificate to
 * name the site it dialed. The acceptor requires the dialer's certificate to
 * name a configured peer site, and the site in the dialer's HELLO to be one
 * the certificate names.
 *
 * Opening: after the TLS handshake the dialer sends HELLO; the acceptor checks
 * it, answers with its own HELLO and the link is up; the dialer's link is up
 * when that HELLO arrives and checks out. HELLO carries the cluster name
 * (which must match), the site, the vocabulary version (which must equal
 * RELAY_PROTO_VERSION) and per-stream resume positions, which the relay gets
 * from the hello callback and hands over, decoded, to the connected callback.
 * Any other frame before HELLO, a second HELLO, an undecodable frame (bad
 * magic, version, type, flags, CRC, a length over the cap) or an invalid
 * HEARTBEAT or GOODBYE payload closes that connection with a logged reason
 * (and a GOODBYE to the peer saying why); other links are not affected.
 *
 * Liveness: every failover.health_interval the relay sends each up link a
 * HEARTBEAT (payload from the heartbeat callback). A link that has received
 * nothing in health_failures (at least 2) heartbeat intervals in a row is
 * closed as dead. Intervals are counted as this site's own heartbeat ticks,
 * so a stall of this process (a loaded host) is not mistaken for the peer's
 * death. A connection that is not up within health_interval *
 * health_failures (at most RELAY_HANDSHAKE_MAX_MS) is closed as timed out.
 *
 * Reconnects (dialer side): after a failed attempt or a lost link, the next
 * attempt waits relay_backoff_ms(): 100 ms doubling up to 30 s, each delay
 * drawn within ±25 %. A link that stayed up for RELAY_STABLE_MS resets the
 * sequence, so one drop after a long quiet time retries within 100 ms. The
 * acceptor just waits; when a site it already has a link with connects
 * again and its HELLO checks out, the new connection replaces the old one
 * (the peer restarted before the old link was noticed dead).
 *
 * Backpressure: relay_send() queues into the link's output buffer.
 * Producers check relay_output_pending() and stop at RELAY_OUTPUT_HIGH; once
 * they have pushed it to that mark, the writable callback fires when it has
 * drained to RELAY_OUTPUT_LOW. A producer that keeps less queued (a live
 * stream on a slow link: relay_output_position()) asks for the callback at
 * its own mark with relay_wait_output(). Heartbeats are never held back.
 *
 * Events: nothing here blocks. Callbacks are never called from inside
 * relay_new(), relay_reconfigure() or relay_send(); they run from the event
 * loop. A callback may call relay_send(), relay_output_pending(),
 * relay_set_epoch(), relay_status_json() and relay_reconfigure(), but not
 * relay_free(). Peer names passed to callbacks are valid during the call.
 *
 * Return conventions: constructors return NULL after logging why; functions
 * that can fail return bool (false logged where it happened, except
 * relay_send(), whose false is the ordinary "link is not up").
 */
#ifndef STRAIT_RELAY_H
#define STRAIT_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "common/json.h"
#include "config/config.h"
#include "gateway/relay/frame.h"
#include "gateway/relay/relay_proto.h"
#include "gateway/relay/wire.h"

/* Output-buffer marks for producers (bytes of frames queued, before TLS). */
#define RELAY_OUTPUT_HIGH   (8u * 1024u * 1024u)
#define RELAY_OUTPUT_LOW    (2u * 1024u * 1024u)
/* relay_send() refuses a frame once this much is queued: a producer that ignores backpressure. */
#define RELAY_OUTPUT_LIMIT  (64u * 1024u * 1024u)

/* Reconnect backoff. */
#define RELAY_BACKOFF_MIN_MS   100u
#define RELAY_BACKOFF_MAX_MS   30000u
#define RELAY_BACKOFF_JITTER   25u         /* percent, either way */
#define RELAY_STABLE_MS        10000u      /* up this long: backoff starts over */

/* A closing link gets this long to flush its GOODBYE and see the peer's EOF. */
#define RELAY_GOODBYE_MS       1000u
/* A connection must be up within health_interval * health_failures, at most this. */
#define RELAY_HANDSHAKE_MAX_MS 10000u
/* Connections accepted but not yet identified, at most (more are refused). */
#define RELAY_MAX_PENDING      64u

struct relay;

struct relay_callbacks {
	/*
	 * Supplies the streams of the HELLO about to be sent to peer. hello
	 * arrives with version, cluster and site filled in and no streams; the
	 * callback may point hello->streams at nstreams entries of its own. The
	 * relay encodes the message as soon as the callback returns and keeps
	 * no pointer into it. NULL: HELLO carries no streams.
	 */
	void (*hello)(void *arg, const char *peer, struct relay_proto_hello *hello);
	/*
	 * Fills the HEARTBEAT about to be sent to peer; it arrives with time_us
	 * set to now, role RELAY_ROLE_UNKNOWN and the rest zero. NULL: sent as is.
	 */
	void (*heartbeat)(void *arg, const char *peer, struct relay_proto_heartbeat *hb);
	/*
	 * The link to peer is up. hello is the peer's, decoded (its strings and
	 * streams valid during the call), epoch the one in its frame header.
	 */
	void (*connected)(void *arg, const char *peer, uint64_t epoch,
			const struct relay_proto_hello *hello);
	/*
	 * A frame from an up link: anything but HELLO and GOODBYE, which the relay
	 * handles. HEARTBEAT payloads have been checked to decode. f->payload is
	 * valid during the call only.
	 */
	void (*frame)(void *arg, const char *peer, const struct frame *f);
	/*
	 * The output to peer drained to RELAY_OUTPUT_LOW after reaching
	 * RELAY_OUTPUT_HIGH, or to what relay_wait_output() asked for.
	 */
	void (*writable)(void *arg, const char *peer);
	/* A link that was up (connected was called) is gone; reason is for humans. */
	void (*disconnected)(void *arg, const char *peer, const char *reason);
};

/* Counters of one peer, over every connection so far (bytes are frame bytes, before TLS). */
struct relay_stats {
	uint64_t bytes_sent;
	uint64_t bytes_received;
	uint64_t frames_sent;
	uint64_t frames_received;
	uint64_t probes_sent;        /* PROBE frames after batches on a lossy link (lossprobe.h) */
	uint64_t bytes_resent;       /* TCP payload the link's TCP sent again */
	bool losing_packets;         /* its TCP retransmitted within the last 30 s */
	uint64_t connects;           /* times the link came up */
	uint64_t failures;           /* connections closed before coming up, or refused */
	size_t output_pending;       /* bytes queued now */
	bool up;
};

/*
 * Starts the relay of site self_site (a name in cfg->sites): listens (when
 * some peer dials this site) and dials (the peers this site dials) from the
 * next loop pass on. Copies what it needs from cfg and self_site, which the
 * caller may free afterwards. cb is copied; arg is passed to every callback.
 * Returns NULL (logged) when self_site is not in cfg or the TLS files do not
 * load. A listener that cannot bind yet (the tunnel address not up) is
 * retried, not an error.
 */
struct relay *relay_new(struct event_base *base, const struct strait_config *cfg,
		const char *self_site, const struct relay_callbacks *cb, void *arg);

/*
 * Applies a reloaded config: the TLS files are read again (new connections
 * use them; links that are up stay up), peers that appeared are dialed or
 * awaited, peers that were removed are closed, changed addresses take effect
 * on the next connection, a changed listen address or port re-binds. Returns
 * false (logged, nothing changed) when the new TLS files do not load or
 * self_site is not in cfg.
 */
bool relay_reconfigure(struct relay *relay, const struct strait_config *cfg,
		const char *self_site) WIRE_MUSTCHECK;

/* The epoch stamped on every frame sent from now on (0 at start). */
void relay_set_epoch(struct relay *relay, uint64_t epoch);

/*
 * Queues one frame to peer (header built here, payload copied). Returns false
 * when the link to peer is not up, when type is HELLO or GOODBYE (the relay's
 * own) or not a valid type, when len is over FRAME_MAX_PAYLOAD, or when more
 * than RELAY_OUTPUT_LIMIT is already queued. Only the last three are logged.
 */
bool relay_send(struct relay *relay, const char *peer, enum frame_type type, uint8_t flags,
		const void *payload, size_t len) WIRE_MUSTCHECK;

/* What a batch costs the link beyond its own frame (relay_batch_sent()). */
struct relay_batch_extra {
	unsigned probes;             /* empty PROBE frames that will follow it */
	uint64_t resent_bytes;       /* TCP payload the link sent again since the last batch */
};

/*
 * After relay_send() of a BATCH or CATCHUP_BATCH frame, the frames whose
 * delivery the replicas' lag is made of. tail: its sender sends nothing more
 * without waiting on the peer (its spool is sent, or its window is full);
 * false when another batch follows as soon as its rate allows. On a link
 * that loses packets a tail is followed by small probe frames
 * (lossprobe.h). Returns those, and what TCP sent again on the link since
 * the last batch (any sender's): bytes on the WAN that are the sender's to
 * count against its rate.
 */
struct relay_batch_extra relay_batch_sent(struct relay *relay, const char *peer, bool tail);

/* Bytes queued to peer and not yet handed to TLS; 0 when the link is down. */
size_t relay_output_pending(const struct relay *relay, const char *peer);
/*
 * Asks for the writable callback once the output to peer has drained to
 * RELAY_OUTPUT_LOW, for a producer that stopped below RELAY_OUTPUT_HIGH (an
 * initial-sync copy, which leaves the deep end of the queue to live streams).
 */
void relay_wait_drain(struct relay *relay, const char *peer);

/*
 * The output to peer as positions in the bytes of frames queued on the link
 * since it came up: *queued where the last one ends, *drained how much has
 * left the output buffer for TLS. A producer that notes *queued after its
 * frame knows how much waits ahead of it, itself included (relay_wait_output()
 * until that is little enough). False, both 0, when the link is not up.
 */
bool relay_output_position(const struct relay *relay, const char *peer, uint64_t *queued,
		uint64_t *drained);

/*
 * What waits for the link to peer to send it: the output buffer and what the
 * kernel holds unsent (at most its TCP_NOTSENT_LOWAT, and in TLS records);
 * data in flight is not counted. On a link that keeps up it is near 0;
 * what stays there tells the link is the limit. 0 when the link is not up.
 */
size_t relay_output_unsent(const struct relay *relay, const char *peer);

/*
 * Asks for the writable callback once the output to peer has drained to at
 * most pending bytes (once: ask again to wait again). Above RELAY_OUTPUT_LOW
 * the callback comes at RELAY_OUTPUT_LOW.
 */
void relay_wait_output(struct relay *relay, const char *peer, size_t pending);

/* Whether the link to peer is up. */
bool relay_is_up(const struct relay *relay, const char *peer);

/* Counters of peer; false when peer is not a peer of this site. */
bool relay_peer_stats(const struct relay *relay, const char *peer, struct relay_stats *out);

/*
 * Writes the relay's status as one object (member key, or a value when key is
 * NULL): listen address, pending connections and per peer: state, address,
 * who dials, connected since (Unix seconds), bytes and frames each way,
 * queued output, connects, reconnects, failures, last error and when.
 */
void relay_status_json(const struct relay *relay, struct json_out *j, const char *key);

/*
 * Closes every connection (no callbacks) and frees the relay. Must not be
 * called from a relay callback. NULL is fine.
 */
void relay_free(struct relay *relay);

/* ---- pure parts, exposed for tests ---- */

/* Whether self dials peer (self sorts lower). */
bool relay_dials(const char *self, const char *peer);

/*
 * Delay before reconnect attempt number attempt (0 = the first retry):
 * min(RELAY_BACKOFF_MAX_MS, RELAY_BACKOFF_MIN_MS << attempt), scaled by a
 * factor in [1 - jitter, 1 + jitter] chosen by rnd (uniform over uint32_t).
 */
uint64_t relay_backoff_ms(unsigned attempt, uint32_t rnd);

#endif
