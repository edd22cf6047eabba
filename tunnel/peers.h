/*
 * peers.h — the site's desired WireGuard state (from the config), the diff
 * that brings a running device to it, and the plain-words peer state shown by
 * status.
 *
 * Full mesh: one peer per other site, its allowed IP the site's tunnel address
 * as a /32 or /128. The diff sends only what differs, in the spirit of
 * `wg syncconf`: peers that did not change are not mentioned, so their
 * sessions and handshakes are untouched. An endpoint is sent only when the
 * running peer has none or the config's endpoint changed (endpoint_dirty):
 * otherwise a peer that roamed behind NAT keeps the address it roamed to.
 *
 * Everything here is pure (no I/O, no logging) and unit-tested.
 * Ownership: peers_from_config() returns a desired state freed with peers_free().
 */
#ifndef STRAIT_PEERS_H
#define STRAIT_PEERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tunnel/wgdev.h"

struct strait_config;

/* A handshake older than this means the session is gone (REJECT_AFTER_TIME). */
#define PEERS_STALE_AFTER 180
/* Re-resolve a named endpoint once its handshake is older than this (as reresolve-dns). */
#define PEERS_RERESOLVE_AFTER 135
/* Without a handshake this long after the peer was added, say what to check. */
#define PEERS_NO_HANDSHAKE_HINT_AFTER 15

struct peers_site {
	char *name;
	uint8_t public_key[WG_KEY_LEN];
	char *host;                       /* NULL: the config gives no endpoint */
	uint16_t port;
	bool numeric;                     /* host is an address literal */
	struct wgdev_allowedip allowed;   /* tunnel address as /32 or /128 */

	/* Run-time state, carried over a reload while key, host and port stay. */
	union wgdev_endpoint endpoint;    /* resolved address; AF_UNSPEC until known */
	bool endpoint_dirty;              /* the config's endpoint was not sent yet */
	int64_t added_at;                 /* unix time the peer was created; 0 unknown */
	int64_t resolved_at;              /* unix time of the last resolution */
};

struct peers_desired {
	char *self_name;
	uint8_t self_public_key[WG_KEY_LEN];
	struct wgdev_allowedip address;   /* the site's own address, host bits kept */
	uint16_t listen_port;
	uint16_t keepalive;               /* seconds; 0 = off */
	uint32_t mtu;                     /* 0 = computed from the paths to endpoints */
	struct peers_site *sites;         /* every other site */
	size_t n_sites;
};

/* Builds the desired state of site self; -EINVAL with a message for a bad config. */
int peers_from_config(const struct strait_config *cfg, size_t self, struct peers_desired **out,
		char *err, size_t errlen) __attribute__((warn_unused_result));
void peers_free(struct peers_desired *want);

/* Copies run-time state from prev for sites whose key, host and port are unchanged. */
void peers_carry_over(struct peers_desired *next, const struct peers_desired *prev);

struct peers_site *peers_find(const struct peers_desired *want, const uint8_t key[WG_KEY_LEN]);

/*
 * The changes that bring running to want: a device holding only what must be
 * sent (empty when nothing), or NULL when out of memory. private_key, when
 * not NULL, is set if the running one differs.
 */
struct wgdev *peers_diff(const struct peers_desired *want, const struct wgdev *running,
		const uint8_t *private_key);

/* Records that changes were applied at time now (clears endpoint_dirty, sets added_at). */
void peers_applied(struct peers_desired *want, const struct wgdev *changes, int64_t now);

/* Clears endpoint_dirty where the running peer already has the wanted endpoint. */
void peers_sync_dirty(struct peers_desired *want, const struct wgdev *running);

/*
 * What the maintenance timer should do about a named endpoint at time now:
 * PEERS_RESOLVE_NOW when it was never resolved, or when the running peer's
 * handshake (or, without one, its creation) is older than
 * PEERS_RERESOLVE_AFTER — never for a healthy peer, whose endpoint may have
 * roamed. Resolutions are at least min_interval seconds apart.
 */
enum peers_resolve {
	PEERS_RESOLVE_NOTHING,
	PEERS_RESOLVE_FIRST,
	PEERS_RESOLVE_STALE,
};
enum peers_resolve peers_should_resolve(const struct peers_site *site, const struct wgdev_peer *peer,
		int64_t now, int64_t min_interval);

/* True when the site's allowed IP is outside the own address's subnet: it needs a route. */
bool peers_needs_route(const struct peers_desired *want, const struct peers_site *site);

/*
 * Peer state in plain words, e.g. "up", "no handshake yet",
 * "stale (no handshake for 3m12s)"; problem gets a hint for the operator or
 * "" when there is none. site or peer may be NULL (not configured / missing).
 */
void peers_describe(const struct peers_site *site, const struct wgdev_peer *peer,
		uint16_t keepalive, int64_t now, char *state, size_t statelen,
		char *problem, size_t problemlen);

/* "47s", "3m12s", "2h05m", "3d04h". */
void peers_format_age(int64_t seconds, char *buf, size_t len);

#endif
