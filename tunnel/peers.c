/*
 * peers.c — desired state, diff and peer state words (see peers.h).
 */
#include "tunnel/peers.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"

void peers_free(struct peers_desired *want)
{
	if (!want)
		return;
	for (size_t i = 0; i < want->n_sites; i++) {
		free(want->sites[i].name);
		free(want->sites[i].host);
	}
	free(want->sites);
	free(want->self_name);
	free(want);
}

static bool peers_cidr_to_ip(const struct config_cidr *c, struct wgdev_allowedip *ip)
{
	memset(ip, 0, sizeof(*ip));
	if (c->family == AF_INET && c->prefix <= 32) {
		memcpy(ip->addr, c->addr, 4);
	} else if (c->family == AF_INET6 && c->prefix <= 128) {
		memcpy(ip->addr, c->addr, 16);
	} else {
		return false;
	}
	ip->family = (uint16_t)c->family;
	ip->cidr = c->prefix;
	return true;
}

static bool peers_numeric_endpoint(const char *host, uint16_t port, union wgdev_endpoint *ep)
{
	memset(ep, 0, sizeof(*ep));
	if (inet_pton(AF_INET, host, &ep->in.sin_addr) == 1) {
		ep->in.sin_family = AF_INET;
		ep->in.sin_port = htons(port);
		return true;
	}
	if (inet_pton(AF_INET6, host, &ep->in6.sin6_addr) == 1) {
		ep->in6.sin6_family = AF_INET6;
		ep->in6.sin6_port = htons(port);
		return true;
	}
	memset(ep, 0, sizeof(*ep));
	return false;
}

int peers_from_config(const struct strait_config *cfg, size_t self, struct peers_desired **out,
		char *err, size_t errlen)
{
	const struct config_site *me;
	struct peers_desired *want;
	int rc = -EINVAL;

	*out = NULL;
	if (self >= cfg->n_sites) {
		snprintf(err, errlen, "site index %zu is out of range", self);
		return -EINVAL;
	}
	me = &cfg->sites[self];
	want = calloc(1, sizeof(*want));
	if (!want || !(want->self_name = strdup(me->name)) ||
	    (cfg->n_sites > 1 && !(want->sites = calloc(cfg->n_sites - 1, sizeof(*want->sites))))) {
		snprintf(err, errlen, "out of memory");
		rc = -ENOMEM;
		goto out;
	}
	memcpy(want->self_public_key, me->public_key, WG_KEY_LEN);
	if (!peers_cidr_to_ip(&me->tunnel_address, &want->address)) {
		snprintf(err, errlen, "site \"%s\" has no valid tunnel_address", me->name);
		goto out;
	}
	want->listen_port = cfg->tunnel.listen_port ? cfg->tunnel.listen_port : me->endpoint.port;
	want->keepalive = (uint16_t)(cfg->tunnel.persistent_keepalive >= 65535000u ? 65535 :
				     (cfg->tunnel.persistent_keepalive + 999) / 1000);
	want->mtu = cfg->tunnel.mtu;
	for (size_t i = 0; i < cfg->n_sites; i++) {
		const struct config_site *cs = &cfg->sites[i];
		struct peers_site *s;

		if (i == self)
			continue;
		if (memcmp(cs->public_key, me->public_key, WG_KEY_LEN) == 0) {
			snprintf(err, errlen, "sites \"%s\" and \"%s\" have the same public_key",
				 me->name, cs->name);
			goto out;
		}
		for (size_t k = 0; k < want->n_sites; k++) {
			if (memcmp(want->sites[k].public_key, cs->public_key, WG_KEY_LEN) == 0) {
				snprintf(err, errlen, "sites \"%s\" and \"%s\" have the same public_key",
					 want->sites[k].name, cs->name);
				goto out;
			}
		}
		s = &want->sites[want->n_sites++];
		memcpy(s->public_key, cs->public_key, WG_KEY_LEN);
		if (!(s->name = strdup(cs->name)) ||
		    (cs->endpoint.host && cs->endpoint.host[0] && !(s->host = strdup(cs->endpoint.host)))) {
			snprintf(err, errlen, "out of memory");
			rc = -ENOMEM;
			goto out;
		}
		s->port = cs->endpoint.port;
		if (!peers_cidr_to_ip(&cs->tunnel_address, &s->allowed)) {
			snprintf(err, errlen, "site \"%s\" has no valid tunnel_address", cs->name);
			goto out;
		}
		/* The peer's own address only: a /32 or /128. */
		s->allowed.cidr = s->allowed.family == AF_INET ? 32 : 128;
		if (s->host) {
			s->numeric = peers_numeric_endpoint(s->host, s->port, &s->endpoint);
			s->endpoint_dirty = true;
		}
	}
	rc = 0;
	*out = want;
	want = NULL;
out:
	peers_free(want);
	return rc;
}

struct peers_site *peers_find(const struct peers_desired *want, const uint8_t key[WG_KEY_LEN])
{
	for (size_t i = 0; i < want->n_sites; i++)
		if (memcmp(want->sites[i].public_key, key, WG_KEY_LEN) == 0)
			return &want->sites[i];
	return NULL;
}

static bool peers_same_str(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

void peers_carry_over(struct peers_desired *next, const struct peers_desired *prev)
{
	if (!prev)
		return;
	for (size_t i = 0; i < next->n_sites; i++) {
		struct peers_site *s = &next->sites[i];
		const struct peers_site *old = peers_find(prev, s->public_key);

		if (!old)
			continue;
		s->added_at = old->added_at;
		if (!peers_same_str(s->host, old->host) || s->port != old->port)
			continue;
		s->endpoint = old->endpoint;
		s->endpoint_dirty = old->endpoint_dirty;
		s->resolved_at = old->resolved_at;
	}
}

static bool peers_site_allowed_matches(const struct peers_site *s, const struct wgdev_peer *p)
{
	struct wgdev_peer one = { 0 };

	one.allowedips = (struct wgdev_allowedip *)&s->allowed;
	one.n_allowedips = 1;
	return wgdev_allowedips_equal(&one, p);
}

static bool peers_want_endpoint(const struct peers_site *s, const struct wgdev_peer *running)
{
	if (!wgdev_endpoint_set(&s->endpoint))
		return false;
	if (!running || !wgdev_endpoint_set(&running->endpoint))
		return true;
	if (wgdev_endpoint_equal(&s->endpoint, &running->endpoint))
		return false;
	return s->endpoint_dirty;
}

struct wgdev *peers_diff(const struct peers_desired *want, const struct wgdev *running,
		const uint8_t *private_key)
{
	struct wgdev *d = wgdev_new();

	if (!d)
		return NULL;
	if (private_key && (!(running->flags & WGDEV_HAS_PRIVATE_KEY) ||
			    memcmp(running->private_key, private_key, WG_KEY_LEN) != 0)) {
		memcpy(d->private_key, private_key, WG_KEY_LEN);
		d->flags |= WGDEV_HAS_PRIVATE_KEY;
	}
	if (want->listen_port && running->listen_port != want->listen_port) {
		d->listen_port = want->listen_port;
		d->flags |= WGDEV_HAS_LISTEN_PORT;
	}
	for (size_t i = 0; i < want->n_sites; i++) {
		const struct peers_site *s = &want->sites[i];
		const struct wgdev_peer *r = wgdev_find_peer(running, s->public_key);
		struct wgdev_peer *p;
		uint32_t flags = 0;

		if (!r || !peers_site_allowed_matches(s, r))
			flags |= WGPEER_REPLACE_ALLOWEDIPS;
		if (r ? r->keepalive != want->keepalive : want->keepalive != 0)
			flags |= WGPEER_HAS_KEEPALIVE;
		if (peers_want_endpoint(s, r))
			flags |= WGPEER_HAS_ENDPOINT;
		if (r && !flags)
			continue;
		p = wgdev_add_peer(d, s->public_key);
		if (!p)
			goto oom;
		p->flags = flags | (r ? WGPEER_UPDATE_ONLY : 0);
		p->keepalive = want->keepalive;
		if (flags & WGPEER_HAS_ENDPOINT)
			p->endpoint = s->endpoint;
		if ((flags & WGPEER_REPLACE_ALLOWEDIPS) && !wgdev_peer_add_allowedip(p, &s->allowed))
			goto oom;
	}
	for (size_t i = 0; i < running->n_peers; i++) {
		struct wgdev_peer *p;

		if (peers_find(want, running->peers[i].public_key))
			continue;
		p = wgdev_add_peer(d, running->peers[i].public_key);
		if (!p)
			goto oom;
		p->flags = WGPEER_REMOVE;
	}
	return d;
oom:
	wgdev_free(d);
	return NULL;
}

void peers_applied(struct peers_desired *want, const struct wgdev *changes, int64_t now)
{
	for (size_t i = 0; i < changes->n_peers; i++) {
		const struct wgdev_peer *p = &changes->peers[i];
		struct peers_site *s = peers_find(want, p->public_key);

		if (!s || (p->flags & WGPEER_REMOVE))
			continue;
		if (!(p->flags & WGPEER_UPDATE_ONLY))
			s->added_at = now;
		if ((p->flags & WGPEER_HAS_ENDPOINT) && wgdev_endpoint_equal(&p->endpoint, &s->endpoint))
			s->endpoint_dirty = false;
	}
}

void peers_sync_dirty(struct peers_desired *want, const struct wgdev *running)
{
	for (size_t i = 0; i < want->n_sites; i++) {
		struct peers_site *s = &want->sites[i];
		const struct wgdev_peer *r = wgdev_find_peer(running, s->public_key);

		if (s->endpoint_dirty && r && wgdev_endpoint_set(&s->endpoint) &&
		    wgdev_endpoint_equal(&s->endpoint, &r->endpoint))
			s->endpoint_dirty = false;
	}
}

enum peers_resolve peers_should_resolve(const struct peers_site *site, const struct wgdev_peer *peer,
		int64_t now, int64_t min_interval)
{
	int64_t since;

	if (!site->host || site->numeric || now - site->resolved_at < min_interval)
		return PEERS_RESOLVE_NOTHING;
	if (!wgdev_endpoint_set(&site->endpoint))
		return PEERS_RESOLVE_FIRST;
	if (!peer)
		return PEERS_RESOLVE_NOTHING;
	since = peer->last_handshake_sec ? peer->last_handshake_sec : site->added_at;
	if (since && now - since > PEERS_RERESOLVE_AFTER)
		return PEERS_RESOLVE_STALE;
	return PEERS_RESOLVE_NOTHING;
}

bool peers_needs_route(const struct peers_desired *want, const struct peers_site *site)
{
	struct wgdev_allowedip net = want->address;
	size_t len = net.family == AF_INET ? 4 : 16;

	/* Mask the own address down to its subnet, then test the peer's address. */
	for (size_t i = 0; i < len; i++) {
		unsigned bits = net.cidr > i * 8 ? net.cidr - (unsigned)(i * 8) : 0;

		if (bits < 8)
			net.addr[i] &= (uint8_t)(0xff00u >> bits);
	}
	return !wgdev_allowedip_contains(&net, site->allowed.family, site->allowed.addr);
}

void peers_format_age(int64_t s, char *buf, size_t len)
{
	if (s < 0)
		s = 0;
	if (s < 60)
		snprintf(buf, len, "%" PRId64 "s", s);
	else if (s < 3600)
		snprintf(buf, len, "%" PRId64 "m%02" PRId64 "s", s / 60, s % 60);
	else if (s < 86400)
		snprintf(buf, len, "%" PRId64 "h%02" PRId64 "m", s / 3600, s / 60 % 60);
	else
		snprintf(buf, len, "%" PRId64 "d%02" PRId64 "h", s / 86400, s / 3600 % 24);
}

void peers_describe(const struct peers_site *site, const struct wgdev_peer *peer,
		uint16_t keepalive, int64_t now, char *state, size_t statelen,
		char *problem, size_t problemlen)
{
	char age[32];

	problem[0] = '\0';
	if (!site) {
		snprintf(state, statelen, "not in the config (will be removed)");
		return;
	}
	if (!peer) {
		snprintf(state, statelen, "not configured on the interface");
		return;
	}
	if (peer->last_handshake_sec == 0) {
		if (!wgdev_endpoint_set(&peer->endpoint)) {
			if (site->host)
				snprintf(state, statelen, "no handshake yet (resolving \"%s\")", site->host);
			else
				snprintf(state, statelen, "no handshake yet (waiting for the peer to "
					 "connect: no endpoint configured)");
			return;
		}
		snprintf(state, statelen, "no handshake yet");
		if (site->added_at && now - site->added_at >= PEERS_NO_HANDSHAKE_HINT_AFTER) {
			peers_format_age(now - site->added_at, age, sizeof(age));
			snprintf(problem, problemlen,
				 "no handshake in %s: check site \"%s\"'s public_key, its endpoint "
				 "and that UDP reaches it", age, site->name);
		}
		return;
	}
	peers_format_age(now - peer->last_handshake_sec, age, sizeof(age));
	if (now - peer->last_handshake_sec <= PEERS_STALE_AFTER)
		snprintf(state, statelen, "up");
	else if (keepalive) {
		snprintf(state, statelen, "stale (no handshake for %s)", age);
		snprintf(problem, problemlen, "site \"%s\" has not answered for %s: it is down, "
			 "unreachable, or its key changed", site->name, age);
	}
	else
		snprintf(state, statelen, "idle (last handshake %s ago)", age);
}
