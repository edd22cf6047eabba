/*
 * config_check.c — the checks no single value can make: site and stream names
 * (they become slot and file names), one primary that every stream comes
 * from, streams between different existing sites (config_route.c), distinct
 * tunnel addresses in one subnet, distinct public keys, batch mode and its
 * windows, a database at every site but a witness, which no stream touches,
 * and the witness's etcd with automatic failover.
 *
 * Each check skips values that were already refused (config_where_ok), so one
 * mistake gives one message, and every message points at the key it is about.
 */
#include "config/config_int.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

int config_site_index(const struct strait_config *cfg, const char *name)
{
	if (!cfg || !name)
		return -1;
	for (size_t i = 0; i < cfg->n_sites && i < (size_t)INT32_MAX; i++)
		if (cfg->sites[i].name && strcmp(cfg->sites[i].name, name) == 0)
			return (int)i;
	return -1;
}

bool config_site_is_witness(const struct config_site *site)
{
	return site && site->role && strcmp(site->role, "witness") == 0;
}

/* A database at every site but a witness; none at a witness. */
static void check_database(struct config_ctx *ctx, const struct config_site *s)
{
	char path[CONFIG_KEY_MAX];

	snprintf(path, sizeof(path), "sites.%s.database", s->name);
	if (config_site_is_witness(s) && config_where_find(ctx->src, path))
		config_error_at(ctx, path, "site \"%s\" is a witness: it has no database (etcd and "
				"straitd alone run there)", s->name);
	if (!config_site_is_witness(s) && !s->database && !config_where_find(ctx->src, path)) {
		char site[CONFIG_KEY_MAX];
		const struct config_where *w;

		snprintf(site, sizeof(site), "sites.%s", s->name);
		w = config_where_find(ctx->src, site);
		config_error(ctx, w ? w->line : 0, w ? w->column : 0, path,
			     "missing required key \"database\"");
	}
}

/* Bytes of a CIDR address with the host bits cleared (host = false) or kept alone. */
static void split_cidr(const struct config_cidr *c, uint8_t out[16], bool host)
{
	size_t len = c->family == AF_INET ? 4 : 16;

	memset(out, 0, 16);
	for (size_t i = 0; i < len; i++) {
		unsigned bits = c->prefix > i * 8 ? c->prefix - (unsigned)(i * 8) : 0;
		uint8_t mask = bits >= 8 ? 0xff : (uint8_t)(0xff << (8 - bits));

		out[i] = host ? (uint8_t)(c->addr[i] & ~mask) : (uint8_t)(c->addr[i] & mask);
	}
}

static bool all_bytes(const uint8_t *p, size_t len, uint8_t v, const struct config_cidr *c)
{
	for (size_t i = 0; i < len; i++) {
		unsigned bits = c->prefix > i * 8 ? c->prefix - (unsigned)(i * 8) : 0;
		uint8_t hostmask = bits >= 8 ? 0 : (uint8_t)(0xff >> bits);

		if ((p[i] & hostmask) != (v & hostmask))
			return false;
	}
	return true;
}

/* Which sites' values were given and accepted: looked up once, used pairwise. */
struct site_flags {
	bool addr_ok;
	bool key_ok;
};

static void check_address(struct config_ctx *ctx, const struct strait_config *cfg, size_t i,
		const struct site_flags *flags, size_t *ref)
{
	const struct config_site *s = &cfg->sites[i];
	const struct config_cidr *a = &s->tunnel_address;
	size_t len = a->family == AF_INET ? 4 : 16;
	char path[CONFIG_KEY_MAX], text[CONFIG_VALUE_BUF], net_text[CONFIG_VALUE_BUF];
	uint8_t host[16], mine[16];
	const struct config_cidr *r;
	struct config_cidr net;

	if (!flags[i].addr_ok)
		return;
	snprintf(path, sizeof(path), "sites.%s.tunnel_address", s->name);
	config_format_cidr(text, sizeof(text), a);
	split_cidr(a, host, true);
	if ((a->family == AF_INET && a->prefix <= 30) || (a->family != AF_INET && a->prefix <= 126)) {
		if (all_bytes(host, len, 0, a)) {
			config_error_at(ctx, path, "tunnel address %s is the network address of its subnet",
					text);
			return;
		}
		if (a->family == AF_INET && all_bytes(host, len, 0xff, a)) {
			config_error_at(ctx, path,
					"tunnel address %s is the broadcast address of its subnet", text);
			return;
		}
	}
	if (*ref == SIZE_MAX) {
		*ref = i;
		return;
	}
	/* Same family, prefix and network as the first site with a usable address. */
	r = &cfg->sites[*ref].tunnel_address;
	net = *r;
	split_cidr(r, net.addr, false);
	config_format_cidr(net_text, sizeof(net_text), &net);
	split_cidr(a, mine, false);
	if (a->family != r->family || a->prefix != r->prefix || memcmp(mine, net.addr, 16) != 0) {
		config_error_at(ctx, path, "tunnel address %s is not in subnet %s of site \"%s\" "
				"(all sites share one subnet)", text, net_text, cfg->sites[*ref].name);
		return;
	}
	for (size_t j = 0; j < i; j++) {
		if (flags[j].addr_ok && cfg->sites[j].tunnel_address.family == a->family &&
		    memcmp(cfg->sites[j].tunnel_address.addr, a->addr, len) == 0) {
			config_error_at(ctx, path, "tunnel address %s is already the address of site \"%s\"",
					text, cfg->sites[j].name);
			return;
		}
	}
}

static void check_key(struct config_ctx *ctx, const struct strait_config *cfg, size_t i,
		const struct site_flags *flags)
{
	char path[CONFIG_KEY_MAX];

	if (!flags[i].key_ok)
		return;
	for (size_t j = 0; j < i; j++) {
		if (flags[j].key_ok &&
		    memcmp(cfg->sites[j].public_key, cfg->sites[i].public_key, WG_KEY_LEN) == 0) {
			snprintf(path, sizeof(path), "sites.%s.public_key", cfg->sites[i].name);
			config_error_at(ctx, path, "public key is already the key of site \"%s\"",
					cfg->sites[j].name);
			return;
		}
	}
}

/* Returns the primary's index, or SIZE_MAX when there is none (or it is unclear). */
static size_t check_sites(struct config_ctx *ctx, const struct strait_config *cfg)
{
	size_t primary = SIZE_MAX, ref = SIZE_MAX;
	bool roles_ok = true;
	char path[CONFIG_KEY_MAX];
	struct site_flags *flags;

	if (cfg->n_sites == 0)
		return SIZE_MAX;
	flags = calloc(cfg->n_sites, sizeof(*flags));
	if (!flags) {
		ctx->oom = true;
		return SIZE_MAX;
	}
	for (size_t i = 0; i < cfg->n_sites; i++) {
		const struct config_site *s = &cfg->sites[i];

		if (!s->name)
			continue;
		snprintf(path, sizeof(path), "sites.%s.tunnel_address", s->name);
		flags[i].addr_ok = config_where_ok(ctx->src, path);
		snprintf(path, sizeof(path), "sites.%s.public_key", s->name);
		flags[i].key_ok = config_where_ok(ctx->src, path);
	}
	for (size_t i = 0; i < cfg->n_sites; i++) {
		const struct config_site *s = &cfg->sites[i];

		if (!s->name)
			continue;
		snprintf(path, sizeof(path), "sites.%s", s->name);
		if (!config_valid_name(s->name))
			config_error_at(ctx, path, "invalid site name \"%.60s\" (use 1 to 63 of a-z, 0-9, _ "
					"and -, starting with a letter)", s->name);
		snprintf(path, sizeof(path), "sites.%s.role", s->name);
		if (config_where_find(ctx->src, path) && !config_where_ok(ctx->src, path)) {
			roles_ok = false;
		} else if (s->role && strcmp(s->role, "primary") == 0) {
			if (primary == SIZE_MAX)
				primary = i;
			else
				config_error_at(ctx, path, "site \"%s\" is primary too, after site \"%s\" "
						"(exactly one site is the primary)", s->name,
						cfg->sites[primary].name);
		}
		check_address(ctx, cfg, i, flags, &ref);
		check_key(ctx, cfg, i, flags);
		check_database(ctx, s);
	}
	free(flags);
	if (primary == SIZE_MAX && roles_ok)
		config_error_at(ctx, "sites", "no site is the primary (set role: primary on one site)");
	return roles_ok ? primary : SIZE_MAX;
}

static void check_stream(struct config_ctx *ctx, const struct strait_config *cfg, size_t i,
		size_t primary)
{
	const struct config_stream *st = &cfg->streams[i];
	char base[CONFIG_KEY_MAX], path[CONFIG_KEY_MAX + 16], from[CONFIG_KEY_MAX + 16];
	char windows[CONFIG_KEY_MAX + 16];
	bool from_ok;

	snprintf(base, sizeof(base), "streams[%zu]", i);
	snprintf(path, sizeof(path), "%s.name", base);
	if (st->name && config_where_ok(ctx->src, path)) {
		for (size_t j = 0; j < i; j++) {
			if (cfg->streams[j].name && strcmp(cfg->streams[j].name, st->name) == 0) {
				config_error_at(ctx, path, "stream name \"%s\" is already used by streams[%zu] "
						"(line %d)", st->name, j, cfg->streams[j].line);
				break;
			}
		}
	}
	snprintf(from, sizeof(from), "%s.from", base);
	from_ok = config_where_ok(ctx->src, from) && st->from < cfg->n_sites;
	config_check_route(ctx, cfg, i);
	if (from_ok && primary != SIZE_MAX && st->from != primary)
		config_error_at(ctx, from, "site \"%s\" is not the primary (site \"%s\" is; a stream "
				"comes from the primary)", cfg->sites[st->from].name, cfg->sites[primary].name);

	snprintf(path, sizeof(path), "%s.mode", base);
	snprintf(windows, sizeof(windows), "%s.windows", base);
	if (!config_where_ok(ctx->src, path) || st->mode != CONFIG_MODE_BATCH || st->n_windows > 0)
		return;
	if (!config_where_find(ctx->src, windows))
		config_error_at(ctx, path, "mode batch needs windows, the hours when the stream ships");
	else if (config_where_ok(ctx->src, windows))
		config_error_at(ctx, windows, "mode batch needs at least one window");
}

static void check_windows_mode(struct config_ctx *ctx, const struct strait_config *cfg, size_t i)
{
	const struct config_stream *st = &cfg->streams[i];
	char mode[CONFIG_KEY_MAX], windows[CONFIG_KEY_MAX];

	snprintf(mode, sizeof(mode), "streams[%zu].mode", i);
	snprintf(windows, sizeof(windows), "streams[%zu].windows", i);
	if (st->mode == CONFIG_MODE_LIVE && st->n_windows > 0 &&
	    (!config_where_find(ctx->src, mode) || config_where_ok(ctx->src, mode)))
		config_error_at(ctx, windows, "windows apply only to mode batch (this stream is live)");
}

/* A stream from, to or via a witness: refused at the key that names it. */
static void check_no_witness(struct config_ctx *ctx, const struct strait_config *cfg, size_t i)
{
	const struct config_stream *st = &cfg->streams[i];
	char path[CONFIG_KEY_MAX];
	for (size_t t = 0; t < st->n_to; t++) {
		bool to = st->to[t] < cfg->n_sites && config_site_is_witness(&cfg->sites[st->to[t]]);
		bool via = st->via && st->via[t] < cfg->n_sites &&
			   config_site_is_witness(&cfg->sites[st->via[t]]);

		if (!to && !via)
			continue;
		snprintf(path, sizeof(path), "streams[%zu].%s", i, to ? "to" : "via");
		config_error_at(ctx, path, "site \"%s\" is a witness: no stream goes to or through it",
				cfg->sites[to ? st->to[t] : st->via[t]].name);
		return;
	}
}

static void check_automatic(struct config_ctx *ctx, const struct strait_config *cfg)
{
	if (cfg->failover.mode != CONFIG_FAILOVER_AUTOMATIC || cfg->failover.n_etcd > 0 ||
	    !config_where_ok(ctx->src, "failover.mode") || config_where_find(ctx->src, "failover.etcd"))
		return;
	config_error_at(ctx, "failover.mode", "mode automatic needs failover.etcd, the client URLs "
			"of the etcd cluster that witnesses the primary");
}

void config_check_all(struct config_ctx *ctx, struct strait_config *cfg)
{
	size_t primary = check_sites(ctx, cfg);

	for (size_t i = 0; i < cfg->n_streams; i++) {
		check_stream(ctx, cfg, i, primary);
		check_windows_mode(ctx, cfg, i);
		check_no_witness(ctx, cfg, i);
	}
	check_automatic(ctx, cfg);
}
