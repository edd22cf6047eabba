/*
 * test_peers.c — the desired state from the config, the diff against a
 * running device (only what changed is sent; roamed endpoints survive),
 * carrying state over a reload, routes, and the plain-words peer state.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "tunnel/peers.h"

struct fixture {
	struct strait_config cfg;
	struct config_site sites[4];
	char hosts[4][32];
	char names[4][16];
};

static void site_init(struct fixture *f, size_t i, const char *name, const char *host,
		const char *addr, uint8_t prefix)
{
	struct config_site *s = &f->sites[i];

	memset(s, 0, sizeof(*s));
	strcpy(f->names[i], name);
	s->name = f->names[i];
	if (host) {
		strcpy(f->hosts[i], host);
		s->endpoint.host = f->hosts[i];
	}
	s->endpoint.port = 51820;
	s->tunnel_address.family = AF_INET;
	assert_int_equal(inet_pton(AF_INET, addr, s->tunnel_address.addr), 1);
	s->tunnel_address.prefix = prefix;
	memset(s->public_key, 0x10 * (int)(i + 1), WG_KEY_LEN);
}

static struct fixture *fixture_new(void)
{
	struct fixture *f = calloc(1, sizeof(*f));

	site_init(f, 0, "onprem", "192.0.2.1", "10.77.0.1", 24);
	site_init(f, 1, "cloud", "192.0.2.2", "10.77.0.2", 24);
	site_init(f, 2, "edge", "gw-edge.example.net", "10.78.0.3", 24);
	f->cfg.sites = f->sites;
	f->cfg.n_sites = 3;
	f->cfg.tunnel.backend = CONFIG_BACKEND_USERSPACE;
	f->cfg.tunnel.listen_port = 51820;
	f->cfg.tunnel.persistent_keepalive = 25000;
	return f;
}

static struct peers_desired *want_of(struct fixture *f, size_t self)
{
	struct peers_desired *w;
	char err[256];

	assert_int_equal(peers_from_config(&f->cfg, self, &w, err, sizeof(err)), 0);
	return w;
}

/* What a device configured exactly as w looks like when read back. */
static struct wgdev *running_from(const struct peers_desired *w, const uint8_t *priv)
{
	struct wgdev *r = wgdev_new();

	if (priv) {
		memcpy(r->private_key, priv, WG_KEY_LEN);
		r->flags |= WGDEV_HAS_PRIVATE_KEY;
	}
	r->listen_port = w->listen_port;
	for (size_t i = 0; i < w->n_sites; i++) {
		struct wgdev_peer *p = wgdev_add_peer(r, w->sites[i].public_key);

		p->keepalive = w->keepalive;
		p->endpoint = w->sites[i].endpoint;
		assert_true(wgdev_peer_add_allowedip(p, &w->sites[i].allowed));
	}
	return r;
}

static void test_from_config(void **state)
{
	struct fixture *f = fixture_new();
	struct peers_desired *w;
	char err[256], text[64];

	(void)state;
	w = want_of(f, 0);
	assert_string_equal(w->self_name, "onprem");
	assert_int_equal(w->n_sites, 2);
	assert_int_equal(w->listen_port, 51820);
	assert_int_equal(w->keepalive, 25);
	assert_true(wgdev_allowedip_format(&w->address, text, sizeof(text)));
	assert_string_equal(text, "10.77.0.1/24");
	assert_string_equal(w->sites[0].name, "cloud");
	assert_true(w->sites[0].numeric);
	assert_true(wgdev_endpoint_format(&w->sites[0].endpoint, text, sizeof(text)));
	assert_string_equal(text, "192.0.2.2:51820");
	assert_true(w->sites[0].endpoint_dirty);
	assert_true(wgdev_allowedip_format(&w->sites[0].allowed, text, sizeof(text)));
	assert_string_equal(text, "10.77.0.2/32");
	/* A name is left for the resolver. */
	assert_string_equal(w->sites[1].name, "edge");
	assert_false(w->sites[1].numeric);
	assert_false(wgdev_endpoint_set(&w->sites[1].endpoint));
	peers_free(w);

	/* Keepalive rounds up to whole seconds; no listen_port: the own endpoint's port. */
	f->cfg.tunnel.persistent_keepalive = 1500;
	f->cfg.tunnel.listen_port = 0;
	f->sites[0].endpoint.port = 4000;
	w = want_of(f, 0);
	assert_int_equal(w->keepalive, 2);
	assert_int_equal(w->listen_port, 4000);
	peers_free(w);

	/* Two sites with one key are refused. */
	memset(f->sites[2].public_key, 0x20, WG_KEY_LEN);
	assert_int_equal(peers_from_config(&f->cfg, 0, &w, err, sizeof(err)), -22);
	assert_non_null(strstr(err, "same public_key"));
	assert_int_equal(peers_from_config(&f->cfg, 9, &w, err, sizeof(err)), -22);
	free(f);
}

static void test_diff_fresh_device(void **state)
{
	struct fixture *f = fixture_new();
	struct peers_desired *w = want_of(f, 0);
	struct wgdev *empty = wgdev_new(), *d;
	uint8_t priv[WG_KEY_LEN];

	(void)state;
	memset(priv, 0x77, sizeof(priv));
	d = peers_diff(w, empty, priv);
	assert_true(d->flags & WGDEV_HAS_PRIVATE_KEY);
	assert_true(d->flags & WGDEV_HAS_LISTEN_PORT);
	assert_false(d->flags & WGDEV_REPLACE_PEERS);
	assert_int_equal(d->n_peers, 2);
	/* New peers: created (no update_only), whole allowed-IP list, keepalive. */
	assert_int_equal(d->peers[0].flags, WGPEER_REPLACE_ALLOWEDIPS | WGPEER_HAS_KEEPALIVE |
			 WGPEER_HAS_ENDPOINT);
	assert_int_equal(d->peers[0].keepalive, 25);
	assert_int_equal(d->peers[0].n_allowedips, 1);
	/* The unresolved name: added without an endpoint. */
	assert_int_equal(d->peers[1].flags, WGPEER_REPLACE_ALLOWEDIPS | WGPEER_HAS_KEEPALIVE);

	peers_applied(w, d, 1000);
	assert_int_equal(w->sites[0].added_at, 1000);
	assert_false(w->sites[0].endpoint_dirty);
	assert_true(w->sites[1].endpoint_dirty);
	wgdev_free(d);
	wgdev_free(empty);
	peers_free(w);
	free(f);
}

static void test_diff_nothing_changed(void **state)
{
	struct fixture *f = fixture_new();
	struct peers_desired *w = want_of(f, 0);
	uint8_t priv[WG_KEY_LEN];
	struct wgdev *r, *d;

	(void)state;
	memset(priv, 0x77, sizeof(priv));
	r = running_from(w, priv);
	r->peers[0].last_handshake_sec = 999;
	r->peers[0].rx_bytes = 5;
	d = peers_diff(w, r, priv);
	assert_true(wgdev_is_empty(d));
	wgdev_free(d);
	wgdev_free(r);
	peers_free(w);
	free(f);
}

static void test_diff_add_remove_update(void **state)
{
	struct fixture *f = fixture_new();
	struct peers_desired *w = want_of(f, 0), *next;
	uint8_t priv[WG_KEY_LEN];
	struct wgdev *r, *d;
	struct wgdev_peer *stranger;
	uint8_t k[WG_KEY_LEN];

	(void)state;
	memset(priv, 0x77, sizeof(priv));
	r = running_from(w, priv);
	peers_applied(w, r, 100);   /* pretend everything was applied */
	for (size_t i = 0; i < w->n_sites; i++)
		w->sites[i].endpoint_dirty = false;
	memset(k, 0xee, sizeof(k));
	stranger = wgdev_add_peer(r, k);
	(void)stranger;

	/* Reload: "edge" leaves, "branch" joins, keepalive changes, cloud unchanged otherwise. */
	site_init(f, 2, "branch", "192.0.2.4", "10.77.0.4", 24);
	memset(f->sites[2].public_key, 0x40, WG_KEY_LEN);
	f->cfg.tunnel.persistent_keepalive = 0;
	next = want_of(f, 0);
	peers_carry_over(next, w);
	assert_false(next->sites[0].endpoint_dirty);   /* cloud: same endpoint, carried */
	assert_int_equal(next->sites[0].added_at, 100);
	assert_true(next->sites[1].endpoint_dirty);    /* branch: new */

	d = peers_diff(next, r, priv);
	assert_false(d->flags & WGDEV_HAS_PRIVATE_KEY);
	assert_false(d->flags & WGDEV_HAS_LISTEN_PORT);
	assert_int_equal(d->n_peers, 4);
	/* cloud: only keepalive, and never created anew. */
	assert_int_equal(d->peers[0].public_key[0], 0x20);
	assert_int_equal(d->peers[0].flags, WGPEER_UPDATE_ONLY | WGPEER_HAS_KEEPALIVE);
	assert_int_equal(d->peers[0].keepalive, 0);
	assert_int_equal(d->peers[0].n_allowedips, 0);
	/* branch: created (keepalive 0 is the default: not sent). */
	assert_int_equal(d->peers[1].public_key[0], 0x40);
	assert_int_equal(d->peers[1].flags, WGPEER_REPLACE_ALLOWEDIPS | WGPEER_HAS_ENDPOINT);
	/* edge and the peer nobody configured: removed. */
	assert_int_equal(d->peers[2].public_key[0], 0x30);
	assert_int_equal(d->peers[2].flags, WGPEER_REMOVE);
	assert_int_equal(d->peers[3].public_key[0], 0xee);
	assert_int_equal(d->peers[3].flags, WGPEER_REMOVE);
	wgdev_free(d);
	wgdev_free(r);
	peers_free(w);
	peers_free(next);
	free(f);
}

static void test_diff_removes_unknown(void **state)
{
	struct fixture *f = fixture_new();
	struct peers_desired *w = want_of(f, 0);
	struct wgdev *r, *d;
	uint8_t k[WG_KEY_LEN];

	(void)state;
	r = running_from(w, NULL);
	memset(k, 0xee, sizeof(k));
	wgdev_add_peer(r, k);
	d = peers_diff(w, r, NULL);
	assert_int_equal(d->n_peers, 1);
	assert_int_equal(d->peers[0].public_key[0], 0xee);
	assert_int_equal(d->peers[0].flags, WGPEER_REMOVE);
	wgdev_free(d);

	/* A changed key is a different peer: the old one goes, the new one comes. */
	memset(f->sites[1].public_key, 0x99, WG_KEY_LEN);
	peers_free(w);
	w = want_of(f, 0);
	d = peers_diff(w, r, NULL);
	assert_int_equal(d->n_peers, 3);
	assert_int_equal(d->peers[0].public_key[0], 0x99);
	assert_false(d->peers[0].flags & WGPEER_UPDATE_ONLY);
	assert_int_equal(d->peers[1].public_key[0], 0x20);
	assert_int_equal(d->peers[1].flags, WGPEER_REMOVE);
	assert_int_equal(d->peers[2].flags, WGPEER_REMOVE);
	wgdev_free(d);
	wgdev_free(r);
	peers_free(w);
	free(f);
}

static void test_diff_allowed_ips_and_key(void **state)
{
	struct fixture *f = fixture_new();
	struct peers_desired *w = want_of(f, 0);
	uint8_t priv[WG_KEY_LEN], other[WG_KEY_LEN];
	struct wgdev_allowedip extra;
	struct wgdev *r, *d;

	(void)state;
	memset(priv, 0x77, sizeof(priv));
	memset(other, 0x78, sizeof(other));
	r = running_from(w, other);
	r->listen_port = 1;
	assert_true(wgdev_allowedip_parse("10.200.0.0/16", &extra));
	assert_true(wgdev_peer_add_allowedip(&r->peers[0], &extra));
	d = peers_diff(w, r, priv);
	assert_true(d->flags & WGDEV_HAS_PRIVATE_KEY);
	assert_memory_equal(d->private_key, priv, WG_KEY_LEN);
	assert_true(d->flags & WGDEV_HAS_LISTEN_PORT);
	assert_int_equal(d->listen_port, 51820);
	assert_int_equal(d->n_peers, 1);
	assert_int_equal(d->peers[0].flags, WGPEER_UPDATE_ONLY | WGPEER_REPLACE_ALLOWEDIPS);
	assert_int_equal(d->peers[0].n_allowedips, 1);
	wgdev_free(d);
	wgdev_free(r);
	peers_free(w);
	free(f);
}

/* A peer that roamed (NAT) keeps its new endpoint unless the config changed. */
static void test_diff_endpoint_rules(void **state)
{
	struct fixture *f = fixture_new();
	struct peers_desired *w = want_of(f, 0), *next;
	struct wgdev *r, *d;

	(void)state;
	r = running_from(w, NULL);
	assert_true(wgdev_endpoint_parse("198.51.100.7:3333", &r->peers[0].endpoint));

	/* Dirty (config given, never applied): it is sent. */
	d = peers_diff(w, r, NULL);
	assert_int_equal(d->n_peers, 1);
	assert_true(d->peers[0].flags & WGPEER_HAS_ENDPOINT);
	peers_applied(w, d, 5);
	wgdev_free(d);
	assert_false(w->sites[0].endpoint_dirty);

	/* Applied before, then the peer roamed: left alone. */
	d = peers_diff(w, r, NULL);
	assert_true(wgdev_is_empty(d));
	wgdev_free(d);

	/* Reload with the same endpoint: still left alone. */
	next = want_of(f, 0);
	peers_carry_over(next, w);
	d = peers_diff(next, r, NULL);
	assert_true(wgdev_is_empty(d));
	wgdev_free(d);
	peers_free(next);

	/* Reload with a new endpoint in the config: sent. */
	strcpy(f->hosts[1], "192.0.2.22");
	next = want_of(f, 0);
	peers_carry_over(next, w);
	d = peers_diff(next, r, NULL);
	assert_int_equal(d->n_peers, 1);
	assert_true(d->peers[0].flags & WGPEER_HAS_ENDPOINT);
	wgdev_free(d);

	/* A running peer without endpoint always gets the known one. */
	memset(&r->peers[0].endpoint, 0, sizeof(r->peers[0].endpoint));
	next->sites[0].endpoint_dirty = false;
	d = peers_diff(next, r, NULL);
	assert_int_equal(d->n_peers, 1);
	assert_true(d->peers[0].flags & WGPEER_HAS_ENDPOINT);
	wgdev_free(d);

	/* Already equal: dirty is cleared without sending. */
	next->sites[0].endpoint_dirty = true;
	r->peers[0].endpoint = next->sites[0].endpoint;
	peers_sync_dirty(next, r);
	assert_false(next->sites[0].endpoint_dirty);

	peers_free(next);
	wgdev_free(r);
	peers_free(w);
	free(f);
}

static void test_needs_route(void **state)
{
	struct fixture *f = fixture_new();
	struct peers_desired *w = want_of(f, 0);

	(void)state;
	assert_false(peers_needs_route(w, &w->sites[0]));   /* 10.77.0.2 in 10.77.0.0/24 */
	assert_true(peers_needs_route(w, &w->sites[1]));    /* 10.78.0.3 is not */
	peers_free(w);
	f->sites[0].tunnel_address.prefix = 32;
	w = want_of(f, 0);
	assert_true(peers_needs_route(w, &w->sites[0]));
	peers_free(w);
	f->sites[0].tunnel_address.prefix = 8;
	w = want_of(f, 0);
	assert_false(peers_needs_route(w, &w->sites[1]));
	peers_free(w);
	free(f);
}

static void test_describe(void **state)
{
	struct fixture *f = fixture_new();
	struct peers_desired *w = want_of(f, 0);
	struct wgdev *r = running_from(w, NULL);
	char st[160], problem[256], age[32];

	(void)state;
	w->sites[0].added_at = 1000;
	peers_describe(&w->sites[0], &r->peers[0], 25, 1005, st, sizeof(st), problem, sizeof(problem));
	assert_string_equal(st, "no handshake yet");
	assert_string_equal(problem, "");
	/* Still nothing after a while: the operator is told what to check. */
	peers_describe(&w->sites[0], &r->peers[0], 25, 1060, st, sizeof(st), problem, sizeof(problem));
	assert_string_equal(st, "no handshake yet");
	assert_non_null(strstr(problem, "public_key"));
	assert_non_null(strstr(problem, "\"cloud\""));
	assert_non_null(strstr(problem, "1m00s"));

	r->peers[0].last_handshake_sec = 2000;
	peers_describe(&w->sites[0], &r->peers[0], 25, 2100, st, sizeof(st), problem, sizeof(problem));
	assert_string_equal(st, "up");
	assert_string_equal(problem, "");
	peers_describe(&w->sites[0], &r->peers[0], 25, 2192, st, sizeof(st), problem, sizeof(problem));
	assert_string_equal(st, "stale (no handshake for 3m12s)");
	assert_non_null(strstr(problem, "unreachable"));
	peers_describe(&w->sites[0], &r->peers[0], 0, 2192, st, sizeof(st), problem, sizeof(problem));
	assert_string_equal(st, "idle (last handshake 3m12s ago)");

	/* The named endpoint not resolved yet. */
	peers_describe(&w->sites[1], &r->peers[1], 25, 2192, st, sizeof(st), problem, sizeof(problem));
	assert_string_equal(st, "no handshake yet (resolving \"gw-edge.example.net\")");
	peers_describe(&w->sites[1], NULL, 25, 2192, st, sizeof(st), problem, sizeof(problem));
	assert_string_equal(st, "not configured on the interface");
	peers_describe(NULL, &r->peers[1], 25, 2192, st, sizeof(st), problem, sizeof(problem));
	assert_string_equal(st, "not in the config (will be removed)");

	peers_format_age(0, age, sizeof(age));
	assert_string_equal(age, "0s");
	peers_format_age(59, age, sizeof(age));
	assert_string_equal(age, "59s");
	peers_format_age(3600 * 2 + 300, age, sizeof(age));
	assert_string_equal(age, "2h05m");
	peers_format_age(86400 * 3 + 3600 * 4, age, sizeof(age));
	assert_string_equal(age, "3d04h");
	wgdev_free(r);
	peers_free(w);
	free(f);
}

static void test_should_resolve(void **state)
{
	struct fixture *f = fixture_new();
	struct peers_desired *w = want_of(f, 0);
	struct wgdev *r = running_from(w, NULL);
	struct peers_site *edge = &w->sites[1], *cloud = &w->sites[0];
	struct wgdev_peer *p = &r->peers[1];

	(void)state;
	/* Address literals are never resolved. */
	assert_int_equal(peers_should_resolve(cloud, &r->peers[0], 10000, 30), PEERS_RESOLVE_NOTHING);
	/* A name never resolved: now, then not again within the interval. */
	assert_int_equal(peers_should_resolve(edge, p, 10000, 30), PEERS_RESOLVE_FIRST);
	edge->resolved_at = 9990;
	assert_int_equal(peers_should_resolve(edge, p, 10000, 30), PEERS_RESOLVE_NOTHING);
	assert_true(wgdev_endpoint_parse("192.0.2.3:51820", &edge->endpoint));
	edge->resolved_at = 5000;
	edge->added_at = 9000;
	/* Healthy peer (recent handshake): its endpoint is left alone, even if it roamed. */
	p->last_handshake_sec = 9950;
	assert_int_equal(peers_should_resolve(edge, p, 10000, 30), PEERS_RESOLVE_NOTHING);
	/* Stale handshake: re-resolve, as reresolve-dns does after 135 s. */
	p->last_handshake_sec = 10000 - PEERS_RERESOLVE_AFTER - 1;
	assert_int_equal(peers_should_resolve(edge, p, 10000, 30), PEERS_RESOLVE_STALE);
	p->last_handshake_sec = 10000 - PEERS_RERESOLVE_AFTER;
	assert_int_equal(peers_should_resolve(edge, p, 10000, 30), PEERS_RESOLVE_NOTHING);
	/* Never a handshake: counted from when the peer was added. */
	p->last_handshake_sec = 0;
	assert_int_equal(peers_should_resolve(edge, p, 9100, 30), PEERS_RESOLVE_NOTHING);
	assert_int_equal(peers_should_resolve(edge, p, 9200, 30), PEERS_RESOLVE_STALE);
	assert_int_equal(peers_should_resolve(edge, NULL, 9200, 30), PEERS_RESOLVE_NOTHING);
	wgdev_free(r);
	peers_free(w);
	free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_from_config),
		cmocka_unit_test(test_diff_fresh_device),
		cmocka_unit_test(test_diff_nothing_changed),
		cmocka_unit_test(test_diff_add_remove_update),
		cmocka_unit_test(test_diff_removes_unknown),
		cmocka_unit_test(test_diff_allowed_ips_and_key),
		cmocka_unit_test(test_diff_endpoint_rules),
		cmocka_unit_test(test_needs_route),
		cmocka_unit_test(test_describe),
		cmocka_unit_test(test_should_resolve),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
