/*
 * tunnel.h — the site's WireGuard interface, brought to the config's state and
 * kept there by straitd.
 *
 * straitd calls tunnel_start() once at start-up, tunnel_reconcile() on every
 * accepted reload and tunnel_stop() at shutdown. Backend "none" does nothing:
 * the sites are already joined by a private link.
 *
 * Ownership: tunnel_start() returns an object owned by the caller and freed by
 * tunnel_stop(); it keeps no pointer into the config it was given.
 */
#ifndef STRAIT_TUNNEL_H
#define STRAIT_TUNNEL_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct json_out;
struct strait_config;
struct tunnel;

/* Brings the interface up; NULL on failure (already logged). */
struct tunnel *tunnel_start(struct event_base *base, const struct strait_config *cfg,
		size_t self_site, bool keep_on_exit);

/* Applies a new config: only what changed is sent. Returns false on failure (logged). */
bool tunnel_reconcile(struct tunnel *t, const struct strait_config *cfg, size_t self_site);

/*
 * Appends the "tunnel" member to a status object: backend (the one in use)
 * and configured_backend; unless "none": interface, public_key (never the
 * private key), public_key_matches_config, address, mtu, listen_port,
 * "userspace" {implementation, state, pid, restarts} for that backend,
 * "error" when the device cannot be read, and "peers": per site its name,
 * public_key, configured_endpoint, endpoint (as the device knows it),
 * allowed_ips, last_handshake (unix time or null), handshake_age_seconds,
 * rx_bytes, tx_bytes, persistent_keepalive, state in plain words ("up",
 * "no handshake yet", "stale (no handshake for 3m12s)", ...) and, when there
 * is something to check, "problem". Reads the device: a local request.
 */
void tunnel_status_json(const struct tunnel *t, struct json_out *j);

/* Removes what tunnel_start() created (unless keep_on_exit) and frees t. NULL is fine. */
void tunnel_stop(struct tunnel *t);

#endif
