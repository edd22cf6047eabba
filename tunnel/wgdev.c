/*
 * wgdev.c — the in-memory WireGuard device model (see wgdev.h).
 */
#include "tunnel/wgdev.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct wgdev *wgdev_new(void)
{
	return calloc(1, sizeof(struct wgdev));
}

void wgdev_free(struct wgdev *dev)
{
	if (!dev)
		return;
	for (size_t i = 0; i < dev->n_peers; i++)
		free(dev->peers[i].allowedips);
	free(dev->peers);
	wgkey_wipe(dev, sizeof(*dev));
	free(dev);
}

struct wgdev_peer *wgdev_add_peer(struct wgdev *dev, const uint8_t public_key[WG_KEY_LEN])
{
	struct wgdev_peer *peer;

	if (dev->n_peers == dev->cap_peers) {
		size_t cap = dev->cap_peers ? dev->cap_peers * 2 : 4;
		struct wgdev_peer *grown = realloc(dev->peers, cap * sizeof(*grown));

		if (!grown)
			return NULL;
		dev->peers = grown;
		dev->cap_peers = cap;
	}
	peer = &dev->peers[dev->n_peers++];
	memset(peer, 0, sizeof(*peer));
	memcpy(peer->public_key, public_key, WG_KEY_LEN);
	return peer;
}

struct wgdev_peer *wgdev_find_peer(const struct wgdev *dev, const uint8_t public_key[WG_KEY_LEN])
{
	for (size_t i = 0; i < dev->n_peers; i++)
		if (memcmp(dev->peers[i].public_key, public_key, WG_KEY_LEN) == 0)
			return &dev->peers[i];
	return NULL;
}

bool wgdev_peer_add_allowedip(struct wgdev_peer *peer, const struct wgdev_allowedip *ip)
{
	if (peer->n_allowedips == peer->cap_allowedips) {
		size_t cap = peer->cap_allowedips ? peer->cap_allowedips * 2 : 2;
		struct wgdev_allowedip *grown = realloc(peer->allowedips, cap * sizeof(*grown));

		if (!grown)
			return false;
		peer->allowedips = grown;
		peer->cap_allowedips = cap;
	}
	peer->allowedips[peer->n_allowedips++] = *ip;
	return true;
}

static bool wgdev_allowedip_same(const struct wgdev_allowedip *a, const struct wgdev_allowedip *b)
{
	size_t len = a->family == AF_INET ? 4 : 16;

	return a->family == b->family && a->cidr == b->cidr && memcmp(a->addr, b->addr, len) == 0;
}

static bool wgdev_allowedips_subset(const struct wgdev_peer *a, const struct wgdev_peer *b)
{
	for (size_t i = 0; i < a->n_allowedips; i++) {
		bool found = false;

		for (size_t k = 0; k < b->n_allowedips && !found; k++)
			found = wgdev_allowedip_same(&a->allowedips[i], &b->allowedips[k]);
		if (!found)
			return false;
	}
	return true;
}

bool wgdev_allowedips_equal(const struct wgdev_peer *a, const struct wgdev_peer *b)
{
	return wgdev_allowedips_subset(a, b) && wgdev_allowedips_subset(b, a);
}

bool wgdev_is_empty(const struct wgdev *dev)
{
	return (dev->flags & (WGDEV_HAS_PRIVATE_KEY | WGDEV_HAS_LISTEN_PORT | WGDEV_HAS_FWMARK |
			      WGDEV_REPLACE_PEERS)) == 0 && dev->n_peers == 0;
}

static bool wgdev_parse_port(const char *text, uint16_t *port)
{
	unsigned long v;
	char *end;

	if (*text < '0' || *text > '9')
		return false;
	errno = 0;
	v = strtoul(text, &end, 10);
	if (errno || *end || v > 65535)
		return false;
	*port = (uint16_t)v;
	return true;
}

bool wgdev_endpoint_parse(const char *text, union wgdev_endpoint *out)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *colon;
	uint16_t port;
	size_t hlen;

	memset(out, 0, sizeof(*out));
	if (text[0] == '[') {
		const char *close = strchr(text, ']');

		if (!close || close[1] != ':')
			return false;
		hlen = (size_t)(close - text - 1);
		if (hlen == 0 || hlen >= sizeof(host))
			return false;
		memcpy(host, text + 1, hlen);
		host[hlen] = '\0';
		if (!wgdev_parse_port(close + 2, &port))
			return false;
		if (inet_pton(AF_INET6, host, &out->in6.sin6_addr) != 1)
			return false;
		out->in6.sin6_family = AF_INET6;
		out->in6.sin6_port = htons(port);
		return true;
	}
	colon = strrchr(text, ':');
	if (!colon)
		return false;
	hlen = (size_t)(colon - text);
	if (hlen == 0 || hlen >= sizeof(host))
		return false;
	memcpy(host, text, hlen);
	host[hlen] = '\0';
	if (!wgdev_parse_port(colon + 1, &port))
		return false;
	if (inet_pton(AF_INET, host, &out->in.sin_addr) != 1)
		return false;
	out->in.sin_family = AF_INET;
	out->in.sin_port = htons(port);
	return true;
}

bool wgdev_endpoint_format(const union wgdev_endpoint *ep, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN];
	int n;

	if (ep->sa.sa_family == AF_INET) {
		if (!inet_ntop(AF_INET, &ep->in.sin_addr, host, sizeof(host)))
			return false;
		n = snprintf(buf, len, "%s:%u", host, ntohs(ep->in.sin_port));
	} else if (ep->sa.sa_family == AF_INET6) {
		if (!inet_ntop(AF_INET6, &ep->in6.sin6_addr, host, sizeof(host)))
			return false;
		n = snprintf(buf, len, "[%s]:%u", host, ntohs(ep->in6.sin6_port));
	} else {
		n = snprintf(buf, len, "%s", "");
	}
	return n >= 0 && (size_t)n < len;
}

bool wgdev_endpoint_equal(const union wgdev_endpoint *a, const union wgdev_endpoint *b)
{
	if (a->sa.sa_family != b->sa.sa_family)
		return false;
	if (a->sa.sa_family == AF_INET)
		return a->in.sin_port == b->in.sin_port &&
		       a->in.sin_addr.s_addr == b->in.sin_addr.s_addr;
	if (a->sa.sa_family == AF_INET6)
		return a->in6.sin6_port == b->in6.sin6_port &&
		       memcmp(&a->in6.sin6_addr, &b->in6.sin6_addr, 16) == 0;
	return true;
}

bool wgdev_endpoint_set(const union wgdev_endpoint *ep)
{
	return ep->sa.sa_family == AF_INET || ep->sa.sa_family == AF_INET6;
}

static void wgdev_mask(uint8_t *addr, size_t len, unsigned cidr)
{
	for (size_t i = 0; i < len; i++) {
		unsigned bits = cidr > i * 8 ? cidr - (unsigned)(i * 8) : 0;

		if (bits < 8)
			addr[i] &= (uint8_t)(0xff00u >> bits);
	}
}

bool wgdev_allowedip_parse(const char *text, struct wgdev_allowedip *out)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *slash = strchr(text, '/');
	unsigned long cidr;
	size_t hlen;
	char *end;

	memset(out, 0, sizeof(*out));
	if (!slash)
		return false;
	hlen = (size_t)(slash - text);
	if (hlen == 0 || hlen >= sizeof(host) || slash[1] < '0' || slash[1] > '9')
		return false;
	memcpy(host, text, hlen);
	host[hlen] = '\0';
	errno = 0;
	cidr = strtoul(slash + 1, &end, 10);
	if (errno || *end)
		return false;
	if (inet_pton(AF_INET, host, out->addr) == 1) {
		if (cidr > 32)
			return false;
		out->family = AF_INET;
	} else if (inet_pton(AF_INET6, host, out->addr) == 1) {
		if (cidr > 128)
			return false;
		out->family = AF_INET6;
	} else {
		return false;
	}
	out->cidr = (uint8_t)cidr;
	wgdev_mask(out->addr, out->family == AF_INET ? 4 : 16, out->cidr);
	return true;
}

bool wgdev_allowedip_format(const struct wgdev_allowedip *ip, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN];
	int n;

	if (ip->family != AF_INET && ip->family != AF_INET6)
		return false;
	if (!inet_ntop(ip->family, ip->addr, host, sizeof(host)))
		return false;
	n = snprintf(buf, len, "%s/%u", host, ip->cidr);
	return n >= 0 && (size_t)n < len;
}

bool wgdev_allowedip_contains(const struct wgdev_allowedip *prefix, uint16_t family,
		const uint8_t *addr)
{
	uint8_t masked[16];
	size_t len = family == AF_INET ? 4 : 16;

	if (prefix->family != family)
		return false;
	memcpy(masked, addr, len);
	wgdev_mask(masked, len, prefix->cidr);
	return memcmp(masked, prefix->addr, len) == 0;
}
