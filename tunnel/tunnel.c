/*
 * tunnel.c — the site's WireGuard interface (see tunnel.h): the facade over
 * the kernel and userspace backends.
 *
 * NOTES
 *
 * Backends. Each backend is an ops table (get / set / ready / close /
 * status), like wireguard-tools' ipc.c sends each request to kernel_* or
 * userspace_*: the kernel backend speaks generic netlink (wg_kernel.c over
 * wg_genl.c) to a link created over rtnetlink; the userspace backend speaks
 * the UAPI (uapi.c) to an implementation supervised by wg_userspace.c.
 * "auto" tries the kernel (the genl family lookup, then link creation) and
 * falls back to userspace with one log line. "none" has no ops at all.
 *
 * Applying. tunnel_apply() is the only path that changes the device: it
 * brings the link to the wanted MTU, address and routes (rtnl.c), then reads
 * the running state back and sends only the difference from the desired
 * state (peers.c). It runs at start, on reload, when an endpoint resolves, and with
 * full=true when a restarted wireguard-go brought up a fresh device. A
 * failure is logged once and retried by the maintenance timer.
 *
 * Endpoints. Address literals are used as they are. Names are resolved with
 * evdns (never blocking the loop); a peer is configured without an endpoint
 * until its name resolves. Every 10 s the timer looks at peers with named
 * endpoints and re-resolves those whose handshake is older than
 * PEERS_RERESOLVE_AFTER, as wireguard-tools' reresolve-dns does: a healthy
 * peer's endpoint is never touched, so NAT roaming keeps working.
 *
 * Blocking. UAPI and netlink requests are synchronous but local and bounded
 * (the UAPI client has a 3 s timeout); the only longer waits (wireguard-go's
 * first start, stopping it at exit) happen before or after the loop runs.
 */
#include "tunnel/tunnel.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>

#include "common/json.h"
#include "common/log.h"
#include "config/config.h"
#include "tunnel/peers.h"
#include "tunnel/rtnl.h"
#include "tunnel/uapi.h"
#include "tunnel/wg_kernel.h"
#include "tunnel/wg_userspace.h"
#include "tunnel/wgdev.h"
#include "tunnel/wgkey.h"

#define TUNNEL_ERRLEN 512
/* Maintenance timer period, and how often it looks at named endpoints. */
#define TUNNEL_TICK_MS 1000
#define TUNNEL_ENDPOINT_CHECK_TICKS 10
/* Retry a failed apply this often (ticks). */
#define TUNNEL_RETRY_TICKS 5
/* Do not resolve one name more often than this (seconds). */
#define TUNNEL_RESOLVE_INTERVAL 30

struct tunnel;

struct tunnel_ops {
	const char *name;
	/* Reads the running device; *out freed with wgdev_free(). */
	int (*get)(const struct tunnel *t, struct wgdev **out, char *err, size_t errlen);
	/* Sends changes (changes->name is the interface). */
	int (*set)(const struct tunnel *t, const struct wgdev *changes, char *err, size_t errlen);
	/* True when the device can take configuration now. */
	bool (*ready)(const struct tunnel *t);
	/* Removes what this backend created, unless keep_on_exit; true when it did. */
	bool (*close)(struct tunnel *t);
	/* Backend-specific status members; may be NULL. */
	void (*status)(const struct tunnel *t, struct json_out *j);
};

struct tunnel_dns_req {
	struct tunnel *t;
	struct tunnel_dns_req *next;
	struct evdns_getaddrinfo_request *req;
	uint8_t key[WG_KEY_LEN];
	char *host;
	uint16_t port;
};

struct tunnel {
	struct event_base *base;
	const struct tunnel_ops *ops;        /* NULL for backend none */
	enum config_backend configured;
	char ifname[WGDEV_IFNAMSIZ];
	bool keep_on_exit;
	bool created_link;                   /* kernel: we created the link */
	struct wg_userspace *us;             /* userspace: the supervisor */
	uint8_t private_key[WG_KEY_LEN];
	uint8_t public_key[WG_KEY_LEN];
	bool key_matches_config;
	struct peers_desired *want;

	/* What tunnel_apply_link() put on the link. */
	bool has_address;
	struct wgdev_allowedip address;
	uint32_t mtu;
	struct wgdev_allowedip *routes;
	size_t n_routes;

	bool needs_apply;
	bool needs_full;
	unsigned ticks;
	unsigned last_retry;
	struct event *tick;

	struct evdns_base *dns;
	struct tunnel_dns_req *reqs;
};

static const char *tunnel_backend_name(enum config_backend b)
{
	switch (b) {
	case CONFIG_BACKEND_AUTO: return "auto";
	case CONFIG_BACKEND_KERNEL: return "kernel";
	case CONFIG_BACKEND_USERSPACE: return "userspace";
	case CONFIG_BACKEND_NONE: return "none";
	}
	return "unknown";
}

/* ---- backends -------------------------------------------------------------- */

static int tunnel_kernel_get(const struct tunnel *t, struct wgdev **out, char *err, size_t errlen)
{
	return wg_kernel_get(t->ifname, out, err, errlen);
}

static int tunnel_kernel_set(const struct tunnel *t, const struct wgdev *changes, char *err,
		size_t errlen)
{
	(void)t;
	return wg_kernel_set(changes, err, errlen);
}

static bool tunnel_kernel_ready(const struct tunnel *t)
{
	(void)t;
	return true;
}

static bool tunnel_kernel_close(struct tunnel *t)
{
	char err[TUNNEL_ERRLEN];

	if (!t->created_link)
		return false;
	if (t->keep_on_exit) {
		log_info("keeping WireGuard interface \"%s\"", t->ifname);
		return false;
	}
	if (rtnl_link_delete(t->ifname, err, sizeof(err)) < 0) {
		log_warning("%s", err);
		return false;
	}
	log_info("deleted WireGuard interface \"%s\"", t->ifname);
	return true;
}

static const struct tunnel_ops tunnel_kernel_ops = {
	.name = "kernel",
	.get = tunnel_kernel_get,
	.set = tunnel_kernel_set,
	.ready = tunnel_kernel_ready,
	.close = tunnel_kernel_close,
	.status = NULL,
};

static int tunnel_userspace_get(const struct tunnel *t, struct wgdev **out, char *err,
		size_t errlen)
{
	return uapi_get(t->ifname, out, err, errlen);
}

static int tunnel_userspace_set(const struct tunnel *t, const struct wgdev *changes, char *err,
		size_t errlen)
{
	return uapi_set(t->ifname, changes, err, errlen);
}

static bool tunnel_userspace_ready(const struct tunnel *t)
{
	return t->us && wg_userspace_ready(t->us);
}

static bool tunnel_userspace_close(struct tunnel *t)
{
	bool stopped = wg_userspace_stop(t->us, t->keep_on_exit);

	t->us = NULL;
	return stopped;
}

static void tunnel_userspace_status(const struct tunnel *t, struct json_out *j)
{
	if (t->us)
		wg_userspace_status_json(t->us, j);
}

static const struct tunnel_ops tunnel_userspace_ops = {
	.name = "userspace",
	.get = tunnel_userspace_get,
	.set = tunnel_userspace_set,
	.ready = tunnel_userspace_ready,
	.close = tunnel_userspace_close,
	.status = tunnel_userspace_status,
};

/* Kernel: the genl family must exist; the link is adopted or created. */
static bool tunnel_kernel_open(struct tunnel *t, char *err, size_t errlen)
{
	char kind[32];
	uint16_t family;
	int rc;

	if (wg_kernel_family(&family, err, errlen) < 0)
		return false;
	rc = rtnl_link_kind(t->ifname, kind, sizeof(kind), err, errlen);
	if (rc == 0) {
		if (strcmp(kind, "wireguard") != 0) {
			snprintf(err, errlen, "interface \"%s\" exists and is not a WireGuard "
				 "interface (kind \"%s\")", t->ifname, kind);
			return false;
		}
		log_info("using existing kernel WireGuard interface \"%s\"", t->ifname);
		return true;
	}
	if (rc != -ENODEV)
		return false;
	if (rtnl_link_create(t->ifname, "wireguard", err, errlen) < 0)
		return false;
	t->created_link = true;
	log_info("created kernel WireGuard interface \"%s\"", t->ifname);
	return true;
}

static void tunnel_on_userspace_ready(void *arg);

static bool tunnel_userspace_open(struct tunnel *t, char *err, size_t errlen)
{
	t->us = wg_userspace_start(t->base, t->ifname, t->keep_on_exit,
				   tunnel_on_userspace_ready, t, err, errlen);
	return t->us != NULL;
}

/* ---- applying -------------------------------------------------------------- */

static bool tunnel_same_ip(const struct wgdev_allowedip *a, const struct wgdev_allowedip *b)
{
	return a->family == b->family && a->cidr == b->cidr &&
	       memcmp(a->addr, b->addr, a->family == AF_INET ? 4 : 16) == 0;
}

static uint32_t tunnel_compute_mtu(const struct tunnel *t)
{
	uint32_t *mtus;
	size_t n = 0;
	uint32_t mtu;

	if (t->want->mtu)
		return t->want->mtu;
	mtus = calloc(t->want->n_sites + 1, sizeof(*mtus));
	if (!mtus)
		return rtnl_mtu_choose(NULL, 0);
	for (size_t i = 0; i < t->want->n_sites; i++) {
		const struct peers_site *s = &t->want->sites[i];
		char err[TUNNEL_ERRLEN];

		if (!wgdev_endpoint_set(&s->endpoint))
			continue;
		if (rtnl_route_mtu(&s->endpoint, &mtus[n], err, sizeof(err)) < 0)
			log_debug("MTU towards site \"%s\": %s", s->name, err);
		else
			n++;
	}
	mtu = rtnl_mtu_choose(mtus, n);
	free(mtus);
	return mtu;
}

static bool tunnel_route_listed(const struct wgdev_allowedip *list, size_t n,
		const struct wgdev_allowedip *ip)
{
	for (size_t i = 0; i < n; i++)
		if (tunnel_same_ip(&list[i], ip))
			return true;
	return false;
}

/* MTU, link up, address and routes: the rtnetlink half of applying. */
static bool tunnel_apply_link(struct tunnel *t, bool full)
{
	const struct peers_desired *w = t->want;
	struct wgdev_allowedip *wanted = NULL;
	char err[TUNNEL_ERRLEN];
	size_t n_wanted = 0;
	uint32_t mtu = tunnel_compute_mtu(t);
	bool ok = false;

	if (full || mtu != t->mtu) {
		if (rtnl_link_up(t->ifname, mtu, err, sizeof(err)) < 0) {
			log_error("%s", err);
			goto out;
		}
		if (t->mtu && mtu != t->mtu)
			log_info("interface \"%s\": MTU %u", t->ifname, mtu);
		t->mtu = mtu;
	}
	if (full || !t->has_address || !tunnel_same_ip(&t->address, &w->address)) {
		if (!full && t->has_address && !tunnel_same_ip(&t->address, &w->address) &&
		    rtnl_addr(t->ifname, &t->address, false, err, sizeof(err)) < 0)
			log_warning("%s", err);
		t->has_address = false;
		if (rtnl_addr(t->ifname, &w->address, true, err, sizeof(err)) < 0) {
			log_error("%s", err);
			goto out;
		}
		t->address = w->address;
		t->has_address = true;
	}
	wanted = calloc(w->n_sites + 1, sizeof(*wanted));
	if (!wanted) {
		log_error("out of memory");
		goto out;
	}
	for (size_t i = 0; i < w->n_sites; i++)
		if (peers_needs_route(w, &w->sites[i]))
			wanted[n_wanted++] = w->sites[i].allowed;
	if (full)
		t->n_routes = 0;   /* a fresh device has none of them */
	for (size_t i = 0; i < t->n_routes;) {
		if (tunnel_route_listed(wanted, n_wanted, &t->routes[i])) {
			i++;
			continue;
		}
		if (rtnl_route(t->ifname, &t->routes[i], false, err, sizeof(err)) < 0)
			log_warning("%s", err);
		t->routes[i] = t->routes[--t->n_routes];
	}
	for (size_t i = 0; i < n_wanted; i++) {
		struct wgdev_allowedip *grown;

		if (tunnel_route_listed(t->routes, t->n_routes, &wanted[i]))
			continue;
		if (rtnl_route(t->ifname, &wanted[i], true, err, sizeof(err)) < 0) {
			log_error("%s", err);
			goto out;
		}
		grown = realloc(t->routes, (t->n_routes + 1) * sizeof(*grown));
		if (!grown) {
			log_error("out of memory");
			goto out;
		}
		t->routes = grown;
		t->routes[t->n_routes++] = wanted[i];
	}
	ok = true;
out:
	free(wanted);
	return ok;
}

static void tunnel_log_changes(const struct tunnel *t, const struct wgdev *changes)
{
	char key[WG_KEY_B64_LEN + 1], ep[INET6_ADDRSTRLEN + 16];

	if (changes->flags & WGDEV_HAS_PRIVATE_KEY)
		log_info("interface \"%s\": private key set", t->ifname);
	if (changes->flags & WGDEV_HAS_LISTEN_PORT)
		log_info("interface \"%s\": listen port %u", t->ifname, changes->listen_port);
	for (size_t i = 0; i < changes->n_peers; i++) {
		const struct wgdev_peer *p = &changes->peers[i];
		const struct peers_site *s = peers_find(t->want, p->public_key);

		wgkey_to_base64(p->public_key, key);
		if (p->flags & WGPEER_REMOVE) {
			log_info("interface \"%s\": removed peer %s", t->ifname, key);
			continue;
		}
		if (!wgdev_endpoint_format(&p->endpoint, ep, sizeof(ep)))
			ep[0] = '\0';
		log_info("interface \"%s\": %s peer for site \"%s\" (%s%s%s%s%s)", t->ifname,
			 (p->flags & WGPEER_UPDATE_ONLY) ? "updated" : "added", s ? s->name : "?",
			 (p->flags & WGPEER_HAS_ENDPOINT) ? "endpoint " : "",
			 (p->flags & WGPEER_HAS_ENDPOINT) ? ep : "",
			 (p->flags & WGPEER_REPLACE_ALLOWEDIPS) ? " allowed IPs" : "",
			 (p->flags & WGPEER_HAS_KEEPALIVE) ? " keepalive" : "",
			 (p->flags & WGPEER_UPDATE_ONLY) ? "" : " new");
	}
}

/*
 * Brings the device to t->want: the link, then the peers (only the
 * difference). full: the device is new (wireguard-go restarted): redo the
 * link's MTU, address and routes even if they were set before.
 */
static bool tunnel_apply(struct tunnel *t, bool full)
{
	struct wgdev *running = NULL, *changes = NULL;
	char err[TUNNEL_ERRLEN];
	bool ok = false;

	if (!t->ops)
		return true;
	full = full || t->needs_full;
	if (!t->ops->ready(t)) {
		/* The supervisor calls back once the device is there again. */
		t->needs_apply = true;
		t->needs_full = full;
		return true;
	}
	/* The link first: packets that arrive for new peers find it up. */
	if (!tunnel_apply_link(t, full))
		goto out;
	if (t->ops->get(t, &running, err, sizeof(err)) < 0) {
		log_error("could not read WireGuard interface \"%s\": %s", t->ifname, err);
		goto out;
	}
	peers_sync_dirty(t->want, running);
	changes = peers_diff(t->want, running, t->private_key);
	if (!changes) {
		log_error("out of memory");
		goto out;
	}
	if (!wgdev_is_empty(changes)) {
		snprintf(changes->name, sizeof(changes->name), "%s", t->ifname);
		if (t->ops->set(t, changes, err, sizeof(err)) < 0) {
			log_error("could not configure WireGuard interface \"%s\": %s", t->ifname, err);
			goto out;
		}
		peers_applied(t->want, changes, (int64_t)time(NULL));
		tunnel_log_changes(t, changes);
	}
	ok = true;
out:
	t->needs_apply = !ok;
	t->needs_full = ok ? false : full;
	t->last_retry = t->ticks;
	wgdev_free(running);
	wgdev_free(changes);
	return ok;
}

static void tunnel_on_userspace_ready(void *arg)
{
	struct tunnel *t = arg;

	if (tunnel_apply(t, true))
		log_info("WireGuard interface \"%s\" configured again", t->ifname);
}

/* ---- endpoint resolution ----------------------------------------------------- */

static bool tunnel_dns_pending(const struct tunnel *t, const uint8_t key[WG_KEY_LEN])
{
	for (const struct tunnel_dns_req *r = t->reqs; r; r = r->next)
		if (memcmp(r->key, key, WG_KEY_LEN) == 0)
			return true;
	return false;
}

static void tunnel_dns_unlink(struct tunnel *t, struct tunnel_dns_req *req)
{
	for (struct tunnel_dns_req **p = &t->reqs; *p; p = &(*p)->next) {
		if (*p == req) {
			*p = req->next;
			return;
		}
	}
}

static void tunnel_dns_cb(int result, struct evutil_addrinfo *res, void *arg)
{
	struct tunnel_dns_req *req = arg;
	struct tunnel *t = req->t;
	struct peers_site *s;
	union wgdev_endpoint ep;
	char text[INET6_ADDRSTRLEN + 16];
	bool found = false;

	tunnel_dns_unlink(t, req);
	if (result == EVUTIL_EAI_CANCEL)
		goto out;
	s = peers_find(t->want, req->key);
	if (!s || !s->host || strcmp(s->host, req->host) != 0 || s->port != req->port)
		goto out;   /* the config changed while we waited */
	s->resolved_at = (int64_t)time(NULL);
	if (result != 0) {
		log_warning("could not resolve endpoint \"%s\" of site \"%s\": %s", req->host,
			    s->name, evutil_gai_strerror(result));
		goto out;
	}
	memset(&ep, 0, sizeof(ep));
	for (struct evutil_addrinfo *ai = res; ai && !found; ai = ai->ai_next) {
		if (ai->ai_family == AF_INET && ai->ai_addrlen >= sizeof(ep.in)) {
			memcpy(&ep.in, ai->ai_addr, sizeof(ep.in));
			found = true;
		} else if (ai->ai_family == AF_INET6 && ai->ai_addrlen >= sizeof(ep.in6)) {
			memcpy(&ep.in6, ai->ai_addr, sizeof(ep.in6));
			found = true;
		}
	}
	if (!found) {
		log_warning("could not resolve endpoint \"%s\" of site \"%s\": no address",
			    req->host, s->name);
		goto out;
	}
	if (!wgdev_endpoint_equal(&ep, &s->endpoint)) {
		if (!wgdev_endpoint_format(&ep, text, sizeof(text)))
			text[0] = '\0';
		log_info("endpoint \"%s\" of site \"%s\" resolves to %s", req->host, s->name, text);
		s->endpoint = ep;
		s->endpoint_dirty = true;
		tunnel_apply(t, false);
	}
out:
	if (res)
		evutil_freeaddrinfo(res);
	free(req->host);
	free(req);
}

static void tunnel_resolve(struct tunnel *t, const struct peers_site *s, const char *why)
{
	struct evutil_addrinfo hints;
	struct evdns_getaddrinfo_request *pending;
	struct tunnel_dns_req *req;
	char port[8];

	if (!s->host || s->numeric || tunnel_dns_pending(t, s->public_key))
		return;
	if (!t->dns) {
		t->dns = evdns_base_new(t->base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
					EVDNS_BASE_DISABLE_WHEN_INACTIVE);
		if (!t->dns) {
			log_warning("could not set up the DNS resolver for endpoint \"%s\" of "
				    "site \"%s\"", s->host, s->name);
			return;
		}
	}
	req = calloc(1, sizeof(*req));
	if (!req || !(req->host = strdup(s->host))) {
		free(req);
		log_error("out of memory");
		return;
	}
	req->t = t;
	memcpy(req->key, s->public_key, WG_KEY_LEN);
	req->port = s->port;
	req->next = t->reqs;
	t->reqs = req;
	log_debug("resolving endpoint \"%s\" of site \"%s\" (%s)", s->host, s->name, why);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_DGRAM;
	hints.ai_protocol = IPPROTO_UDP;
	hints.ai_flags = EVUTIL_AI_NUMERICSERV;
	snprintf(port, sizeof(port), "%u", s->port);
	/* The callback may run before this returns (then the result is NULL and req is gone). */
	pending = evdns_getaddrinfo(t->dns, s->host, port, &hints, tunnel_dns_cb, req);
	if (pending)
		req->req = pending;
}

static void tunnel_resolve_unresolved(struct tunnel *t)
{
	for (size_t i = 0; i < t->want->n_sites; i++) {
		const struct peers_site *s = &t->want->sites[i];

		if (s->host && !s->numeric && !wgdev_endpoint_set(&s->endpoint))
			tunnel_resolve(t, s, "not resolved yet");
	}
}

static void tunnel_dns_cancel_all(struct tunnel *t)
{
	while (t->reqs) {
		struct tunnel_dns_req *req = t->reqs;

		if (req->req) {
			/* Runs the callback with EVUTIL_EAI_CANCEL, which unlinks and frees req. */
			evdns_getaddrinfo_cancel(req->req);
			if (t->reqs != req)
				continue;
		}
		t->reqs = req->next;
		free(req->host);
		free(req);
	}
}

/* Re-resolves named endpoints whose handshake went stale (reresolve-dns). */
static void tunnel_check_endpoints(struct tunnel *t, int64_t now)
{
	struct wgdev *running = NULL;
	char err[TUNNEL_ERRLEN];
	bool named = false;

	for (size_t i = 0; i < t->want->n_sites; i++)
		named = named || (t->want->sites[i].host && !t->want->sites[i].numeric);
	if (!named || !t->ops->ready(t))
		return;
	if (t->ops->get(t, &running, err, sizeof(err)) < 0) {
		log_debug("could not read WireGuard interface \"%s\": %s", t->ifname, err);
		return;
	}
	for (size_t i = 0; i < t->want->n_sites; i++) {
		const struct peers_site *s = &t->want->sites[i];
		const struct wgdev_peer *p = wgdev_find_peer(running, s->public_key);

		switch (peers_should_resolve(s, p, now, TUNNEL_RESOLVE_INTERVAL)) {
		case PEERS_RESOLVE_FIRST:
			tunnel_resolve(t, s, "retrying");
			break;
		case PEERS_RESOLVE_STALE:
			tunnel_resolve(t, s, "handshake is stale");
			break;
		case PEERS_RESOLVE_NOTHING:
			break;
		}
	}
	wgdev_free(running);
}

static void tunnel_on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct tunnel *t = arg;

	(void)fd;
	(void)what;
	t->ticks++;
	if (t->needs_apply && t->ops->ready(t) && t->ticks - t->last_retry >= TUNNEL_RETRY_TICKS)
		tunnel_apply(t, false);
	if (t->ticks % TUNNEL_ENDPOINT_CHECK_TICKS == 0)
		tunnel_check_endpoints(t, (int64_t)time(NULL));
}

/* ---- interface ----------------------------------------------------------------- */

static bool tunnel_load_key(struct tunnel *t, const struct strait_config *cfg, size_t self,
		uint8_t priv[WG_KEY_LEN], uint8_t pub[WG_KEY_LEN])
{
	char err[TUNNEL_ERRLEN];
	char have[WG_KEY_B64_LEN + 1], want[WG_KEY_B64_LEN + 1];

	if (!cfg->private_key_file) {
		log_error("private_key_file is not set: the tunnel needs the site's private key");
		return false;
	}
	if (!wgkey_read_private_file(cfg->private_key_file, priv, err, sizeof(err))) {
		log_error("%s", err);
		return false;
	}
	if (!wgkey_public(priv, pub, err, sizeof(err))) {
		log_error("%s", err);
		wgkey_wipe(priv, WG_KEY_LEN);
		return false;
	}
	t->key_matches_config = memcmp(pub, cfg->sites[self].public_key, WG_KEY_LEN) == 0;
	if (!t->key_matches_config) {
		wgkey_to_base64(pub, have);
		wgkey_to_base64(cfg->sites[self].public_key, want);
		log_warning("the private key in \"%s\" has public key %s, but site \"%s\" is "
			    "configured with %s: the other sites will not accept its handshakes",
			    cfg->private_key_file, have, cfg->sites[self].name, want);
	}
	return true;
}

struct tunnel *tunnel_start(struct event_base *base, const struct strait_config *cfg,
		size_t self_site, bool keep_on_exit)
{
	char err[TUNNEL_ERRLEN];
	struct tunnel *t;
	struct timeval tv = { .tv_sec = TUNNEL_TICK_MS / 1000, .tv_usec = 0 };
	enum config_backend b = cfg->tunnel.backend;

	t = calloc(1, sizeof(*t));
	if (!t) {
		log_error("out of memory");
		return NULL;
	}
	t->base = base;
	t->configured = b;
	t->keep_on_exit = keep_on_exit;
	if (b == CONFIG_BACKEND_NONE) {
		log_info("tunnel backend \"none\": sites are joined by an existing link");
		return t;
	}
	if (self_site >= cfg->n_sites) {
		log_error("site index %zu is out of range", self_site);
		goto fail;
	}
	if (!cfg->tunnel.interface || !uapi_socket_path(cfg->tunnel.interface, err, sizeof(err))) {
		log_error("invalid tunnel interface name \"%s\"",
			  cfg->tunnel.interface ? cfg->tunnel.interface : "");
		goto fail;
	}
	snprintf(t->ifname, sizeof(t->ifname), "%s", cfg->tunnel.interface);
	if (peers_from_config(cfg, self_site, &t->want, err, sizeof(err)) < 0) {
		log_error("could not set up the tunnel of site \"%s\": %s",
			  cfg->sites[self_site].name, err);
		goto fail;
	}
	if (!tunnel_load_key(t, cfg, self_site, t->private_key, t->public_key))
		goto fail;

	if (b == CONFIG_BACKEND_KERNEL || b == CONFIG_BACKEND_AUTO) {
		if (tunnel_kernel_open(t, err, sizeof(err))) {
			t->ops = &tunnel_kernel_ops;
		} else if (b == CONFIG_BACKEND_KERNEL) {
			log_error("%s", err);
			goto fail;
		} else {
			log_notice("kernel WireGuard is not available (%s); using the userspace "
				   "implementation", err);
		}
	}
	if (!t->ops) {
		if (!tunnel_userspace_open(t, err, sizeof(err))) {
			log_error("could not start userspace WireGuard for interface \"%s\": %s",
				  t->ifname, err);
			goto fail;
		}
		t->ops = &tunnel_userspace_ops;
	}
	t->tick = event_new(base, -1, EV_PERSIST, tunnel_on_tick, t);
	if (!t->tick || event_add(t->tick, &tv) < 0) {
		log_error("could not set up the tunnel maintenance timer");
		goto fail;
	}
	if (!tunnel_apply(t, true))
		goto fail;
	tunnel_resolve_unresolved(t);
	log_info("tunnel \"%s\" is up: backend %s, %zu peer%s, listen port %u, MTU %u",
		 t->ifname, t->ops->name, t->want->n_sites, t->want->n_sites == 1 ? "" : "s",
		 t->want->listen_port, t->mtu);
	return t;
fail:
	/* A tunnel that never came up leaves nothing behind, --keep-tunnel or not. */
	t->keep_on_exit = false;
	tunnel_stop(t);
	return NULL;
}

bool tunnel_reconcile(struct tunnel *t, const struct strait_config *cfg, size_t self_site)
{
	uint8_t priv[WG_KEY_LEN], pub[WG_KEY_LEN];
	struct peers_desired *next = NULL;
	char err[TUNNEL_ERRLEN];
	bool ok = false;

	if (cfg->tunnel.backend != t->configured) {
		log_error("tunnel.backend cannot change on reload (from \"%s\" to \"%s\"): restart "
			  "straitd", tunnel_backend_name(t->configured),
			  tunnel_backend_name(cfg->tunnel.backend));
		return false;
	}
	if (!t->ops)
		return true;
	if (!cfg->tunnel.interface || strcmp(cfg->tunnel.interface, t->ifname) != 0) {
		log_error("tunnel.interface cannot change on reload (from \"%s\"): restart straitd",
			  t->ifname);
		return false;
	}
	if (self_site >= cfg->n_sites) {
		log_error("site index %zu is out of range", self_site);
		return false;
	}
	if (peers_from_config(cfg, self_site, &next, err, sizeof(err)) < 0) {
		log_error("could not reconcile the tunnel of site \"%s\": %s",
			  cfg->sites[self_site].name, err);
		return false;
	}
	if (!tunnel_load_key(t, cfg, self_site, priv, pub))
		goto out;
	peers_carry_over(next, t->want);
	peers_free(t->want);
	t->want = next;
	next = NULL;
	memcpy(t->private_key, priv, WG_KEY_LEN);
	memcpy(t->public_key, pub, WG_KEY_LEN);
	ok = tunnel_apply(t, false);
	tunnel_resolve_unresolved(t);
	if (ok)
		log_info("tunnel \"%s\" reconciled: %zu peer%s", t->ifname, t->want->n_sites,
			 t->want->n_sites == 1 ? "" : "s");
out:
	wgkey_wipe(priv, sizeof(priv));
	peers_free(next);
	return ok;
}

static void tunnel_status_peer(const struct tunnel *t, const struct peers_site *s,
		const struct wgdev_peer *p, int64_t now, struct json_out *j)
{
	char key[WG_KEY_B64_LEN + 1], text[INET6_ADDRSTRLEN + 16];
	char state[160], problem[256];
	char configured[300];

	json_object_begin(j, NULL);
	json_string(j, "site", s ? s->name : NULL);
	wgkey_to_base64(s ? s->public_key : p->public_key, key);
	json_string(j, "public_key", key);
	if (s && s->host) {
		snprintf(configured, sizeof(configured), strchr(s->host, ':') ? "[%s]:%u" : "%s:%u",
			 s->host, s->port);
		json_string(j, "configured_endpoint", configured);
	} else {
		json_null(j, "configured_endpoint");
	}
	if (p && wgdev_endpoint_set(&p->endpoint) &&
	    wgdev_endpoint_format(&p->endpoint, text, sizeof(text)))
		json_string(j, "endpoint", text);
	else
		json_null(j, "endpoint");
	json_array_begin(j, "allowed_ips");
	if (p) {
		for (size_t i = 0; i < p->n_allowedips; i++)
			if (wgdev_allowedip_format(&p->allowedips[i], text, sizeof(text)))
				json_string(j, NULL, text);
	}
	json_array_end(j);
	if (p && p->last_handshake_sec) {
		json_int(j, "last_handshake", p->last_handshake_sec);
		json_int(j, "handshake_age_seconds", now - p->last_handshake_sec);
	} else {
		json_null(j, "last_handshake");
		json_null(j, "handshake_age_seconds");
	}
	json_uint(j, "rx_bytes", p ? p->rx_bytes : 0);
	json_uint(j, "tx_bytes", p ? p->tx_bytes : 0);
	json_uint(j, "persistent_keepalive", p ? p->keepalive : 0);
	peers_describe(s, p, t->want->keepalive, now, state, sizeof(state), problem,
		       sizeof(problem));
	json_string(j, "state", state);
	if (problem[0])
		json_string(j, "problem", problem);
	json_object_end(j);
}

void tunnel_status_json(const struct tunnel *t, struct json_out *j)
{
	struct wgdev *running = NULL;
	char err[TUNNEL_ERRLEN], text[INET6_ADDRSTRLEN + 16], key[WG_KEY_B64_LEN + 1];
	int64_t now = (int64_t)time(NULL);

	json_object_begin(j, "tunnel");
	json_string(j, "backend", t->ops ? t->ops->name : "none");
	json_string(j, "configured_backend", tunnel_backend_name(t->configured));
	if (!t->ops) {
		json_array_begin(j, "peers");
		json_array_end(j);
		json_object_end(j);
		return;
	}
	json_string(j, "interface", t->ifname);
	wgkey_to_base64(t->public_key, key);
	json_string(j, "public_key", key);
	json_bool(j, "public_key_matches_config", t->key_matches_config);
	if (wgdev_allowedip_format(&t->want->address, text, sizeof(text)))
		json_string(j, "address", text);
	json_uint(j, "mtu", t->mtu);
	if (t->ops->status)
		t->ops->status(t, j);
	if (!t->ops->ready(t)) {
		json_string(j, "error", "the interface is being restarted");
	} else if (t->ops->get(t, &running, err, sizeof(err)) < 0) {
		json_string(j, "error", err);
		running = NULL;
	}
	json_uint(j, "listen_port", running ? running->listen_port : t->want->listen_port);
	if (t->needs_apply)
		json_string(j, "pending", "the configuration is not fully applied yet; retrying");
	json_array_begin(j, "peers");
	for (size_t i = 0; i < t->want->n_sites; i++) {
		const struct peers_site *s = &t->want->sites[i];

		tunnel_status_peer(t, s, running ? wgdev_find_peer(running, s->public_key) : NULL,
				   now, j);
	}
	for (size_t i = 0; running && i < running->n_peers; i++)
		if (!peers_find(t->want, running->peers[i].public_key))
			tunnel_status_peer(t, NULL, &running->peers[i], now, j);
	json_array_end(j);
	json_object_end(j);
	wgdev_free(running);
}

void tunnel_stop(struct tunnel *t)
{
	if (!t)
		return;
	tunnel_dns_cancel_all(t);
	if (t->dns)
		evdns_base_free(t->dns, 0);
	if (t->tick)
		event_free(t->tick);
	if (t->ops && t->ops->close(t))
		log_info("tunnel \"%s\" is down", t->ifname);
	else if (t->us)
		wg_userspace_stop(t->us, t->keep_on_exit);
	free(t->routes);
	peers_free(t->want);
	wgkey_wipe(t, sizeof(*t));
	free(t);
}
