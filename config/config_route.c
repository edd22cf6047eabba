/*
 * config_route.c — where a stream goes: streams[].to, one site or a list of
 * sites (fan-out), and streams[].via, the destinations that receive the
 * stream through another destination's straitd. Both live in the stream's
 * parallel arrays to[] and via[]: per destination, its site and the site that
 * relays it (CONFIG_SITE_NONE: direct from the source).
 *
 * Relays do not chain: a relay is a destination that gets the stream direct
 * from the source. A chain puts every site behind a relay at the mercy of
 * each site before it, and its failover needs more than one relay's retained
 * batches; refusing chains now keeps the way open to accept them later
 * without breaking a config that loads today. For the same reason a relay
 * must be a destination of the stream: it relays what it applies and keeps.
 */
#include "config/config_int.h"

#include <stdlib.h>
#include <string.h>

size_t config_stream_to(const struct config_stream *cs)
{
	return cs->to[0];
}

bool config_stream_end(const struct config_stream *cs, size_t site)
{
	if (cs->from == site)
		return true;
	for (size_t i = 0; i < cs->n_to; i++)
		if (cs->to[i] == site)
			return true;
	return false;
}

/* Whether site name is among cs's destinations in cfg. */
static bool route_has(const struct strait_config *cfg, const struct config_stream *cs,
		const char *name)
{
	for (size_t i = 0; i < cs->n_to; i++)
		if (strcmp(cfg->sites[cs->to[i]].name, name) == 0)
			return true;
	return false;
}

bool config_routes_equal(const struct strait_config *a, const struct strait_config *b)
{
	if (a->n_streams != b->n_streams)
		return false;
	for (size_t i = 0; i < a->n_streams; i++) {
		const struct config_stream *x = &a->streams[i], *y = NULL;

		for (size_t k = 0; !y && k < b->n_streams; k++)
			if (strcmp(b->streams[k].name, x->name) == 0)
				y = &b->streams[k];
		if (!y || x->n_to != y->n_to ||
		    strcmp(a->sites[x->from].name, b->sites[y->from].name) != 0)
			return false;
		for (size_t k = 0; k < x->n_to; k++)
			if (!route_has(b, y, a->sites[x->to[k]].name))
				return false;
	}
	return true;
}

void config_route_free(struct config_stream *st)
{
	free(st->to);
	free(st->via);
	st->to = NULL;
	st->via = NULL;
	st->n_to = 0;
}

/* Room for n destinations, none resolved yet and none relayed. */
static bool route_alloc(struct config_ctx *ctx, struct config_stream *st, size_t n)
{
	config_route_free(st);
	st->to = malloc(n * sizeof(*st->to));
	st->via = malloc(n * sizeof(*st->via));
	if (!st->to || !st->via) {
		config_route_free(st);
		ctx->oom = true;
		return false;
	}
	for (size_t k = 0; k < n; k++)
		st->to[k] = st->via[k] = CONFIG_SITE_NONE;
	st->n_to = n;
	return true;
}

/* The slot of site among the stream's destinations, or CONFIG_SITE_NONE. */
static size_t dest_slot(const struct config_stream *st, size_t site)
{
	for (size_t k = 0; k < st->n_to; k++)
		if (st->to[k] == site)
			return k;
	return CONFIG_SITE_NONE;
}

/* node names a site: its index in *out; false, reported, otherwise. */
static bool site_of(struct config_ctx *ctx, const struct config_node *node, const char *path,
		size_t *out)
{
	char err[CONFIG_ERR_MAX];

	if (node->kind != CONFIG_NODE_SCALAR) {
		if (node->kind != CONFIG_NODE_BAD)
			config_error(ctx, node->line, node->column, path, "expected a site name, found %s",
					config_node_kind_name(node));
		return false;
	}
	if (config_node_is_null(node)) {
		config_error(ctx, node->line, node->column, path, "a value is missing");
		return false;
	}
	if (config_parse_siteref(ctx, node->value, out, err, sizeof(err)))
		return true;
	if (err[0])
		config_error(ctx, node->line, node->column, path, "%s", err);
	return false;
}

/* True, reported, when the k-th destination repeats an earlier one. */
static bool listed_before(struct config_ctx *ctx, const struct config_stream *st, size_t k,
		const struct config_node *node, const char *path)
{
	for (size_t j = 0; j < k; j++) {
		if (st->to[j] == st->to[k]) {
			config_error(ctx, node->line, node->column, path,
					"site \"%s\" is already a destination of the stream (to[%zu])",
					node->value, j);
			return true;
		}
	}
	return false;
}

static void walk_to_list(struct config_ctx *ctx, struct config_stream *st,
		const struct config_node *value, const char *path)
{
	char item[CONFIG_KEY_MAX + 32];
	bool ok = true;

	if (value->n_kids == 0) {
		config_error(ctx, value->line, value->column, path,
				"at least one destination is needed (a site, or a list of sites)");
		config_where_bad(ctx, path);
		return;
	}
	if (!route_alloc(ctx, st, value->n_kids))
		return;
	for (size_t k = 0; k < value->n_kids; k++) {
		const struct config_node *node = value->kids[k];

		snprintf(item, sizeof(item), "%s[%zu]", path, k);
		config_where_add(ctx, item, node->line, node->column);
		if (site_of(ctx, node, item, &st->to[k]) && !listed_before(ctx, st, k, node, item))
			continue;
		st->to[k] = CONFIG_SITE_NONE;
		config_where_bad(ctx, item);
		ok = false;
	}
	if (!ok)
		config_where_bad(ctx, path);
}

void config_walk_to(struct config_ctx *ctx, struct config_stream *st,
		const struct config_node *value, const char *path)
{
	if (value->kind == CONFIG_NODE_SEQ) {
		walk_to_list(ctx, st, value, path);
		return;
	}
	if (value->kind == CONFIG_NODE_MAP)
		config_error(ctx, value->line, value->column, path,
				"expected a site name or a list of site names, found a mapping");
	if (value->kind != CONFIG_NODE_SCALAR) {
		config_where_bad(ctx, path);
		return;
	}
	if (!route_alloc(ctx, st, 1))
		return;
	if (!site_of(ctx, value, path, &st->to[0])) {
		st->to[0] = CONFIG_SITE_NONE;
		config_where_bad(ctx, path);
	}
}

/* One "destination: relay" of via; to_ok: the stream's to was accepted whole. */
static void via_entry(struct config_ctx *ctx, struct config_stream *st,
		const struct config_node *name, const struct config_node *relay, const char *path,
		bool to_ok)
{
	char entry[CONFIG_KEY_MAX + 80];
	size_t dest, site, slot = CONFIG_SITE_NONE;
	bool dest_ok, relay_ok;

	snprintf(entry, sizeof(entry), "%s.%s", path, name->value);
	config_where_add(ctx, entry, relay->line, relay->column);
	dest_ok = site_of(ctx, name, entry, &dest);
	if (dest_ok && to_ok) {
		slot = dest_slot(st, dest);
		if (slot == CONFIG_SITE_NONE)
			config_error(ctx, name->line, name->column, entry,
					"site \"%s\" is not a destination of the stream (via maps a "
					"destination in to onto the site that relays it)", name->value);
	}
	relay_ok = site_of(ctx, relay, entry, &site);
	if (!relay_ok || slot == CONFIG_SITE_NONE) {
		config_where_bad(ctx, entry);
		return;
	}
	st->via[slot] = site;
}

void config_walk_via(struct config_ctx *ctx, struct config_stream *st,
		const struct config_node *value, const char *path)
{
	char to_path[CONFIG_KEY_MAX + 8];
	size_t stem = strlen(path) - strlen("via");
	bool to_ok;

	if (config_node_is_null(value))
		return;
	if (value->kind != CONFIG_NODE_MAP) {
		if (value->kind != CONFIG_NODE_BAD)
			config_error(ctx, value->line, value->column, path,
					"expected a mapping of destination: relay, found %s",
					config_node_kind_name(value));
		config_where_bad(ctx, path);
		return;
	}
	/* path is "streams[i].via": its stream's to is "streams[i].to" */
	snprintf(to_path, sizeof(to_path), "%.*sto", (int)stem, path);
	to_ok = config_where_ok(ctx->src, to_path) && st->n_to > 0;
	for (size_t p = 0; p + 1 < value->n_kids; p += 2)
		via_entry(ctx, st, value->kids[p], value->kids[p + 1], path, to_ok);
}

/* The recorded key of streams[i]'s k-th destination: its list item, or to itself. */
static void dest_key(char *buf, size_t len, const struct config_source *src, size_t i, size_t k)
{
	snprintf(buf, len, "streams[%zu].to[%zu]", i, k);
	if (!config_where_find(src, buf))
		snprintf(buf, len, "streams[%zu].to", i);
}

static void check_relay(struct config_ctx *ctx, const struct strait_config *cfg, size_t i,
		size_t k, bool from_ok)
{
	const struct config_stream *st = &cfg->streams[i];
	const char *dest = cfg->sites[st->to[k]].name, *relay = cfg->sites[st->via[k]].name;
	size_t r = dest_slot(st, st->via[k]);
	char key[CONFIG_KEY_MAX + 80];

	snprintf(key, sizeof(key), "streams[%zu].via.%s", i, dest);
	if (st->via[k] == st->to[k])
		config_error_at(ctx, key, "destination \"%s\" is relayed through itself (leave it out "
				"of via for a direct copy)", dest);
	else if (from_ok && st->via[k] == st->from)
		config_error_at(ctx, key, "relay \"%s\" is the site the stream comes from (leave \"%s\" "
				"out of via for a direct copy)", relay, dest);
	else if (r == CONFIG_SITE_NONE)
		config_error_at(ctx, key, "relay \"%s\" is not a destination of the stream (a relay "
				"passes on what it applies: add it to to)", relay);
	else if (st->via[r] != CONFIG_SITE_NONE)
		config_error_at(ctx, key, "relay \"%s\" is itself relayed, through \"%s\" (relays do "
				"not chain: a relay gets the stream direct from the source)", relay,
				cfg->sites[st->via[r]].name);
}

void config_check_route(struct config_ctx *ctx, const struct strait_config *cfg, size_t i)
{
	const struct config_stream *st = &cfg->streams[i];
	char key[CONFIG_KEY_MAX];
	bool from_ok;

	snprintf(key, sizeof(key), "streams[%zu].from", i);
	from_ok = config_where_ok(ctx->src, key) && st->from < cfg->n_sites;
	for (size_t k = 0; k < st->n_to; k++) {
		if (from_ok && st->to[k] == st->from) {
			dest_key(key, sizeof(key), ctx->src, i, k);
			config_error_at(ctx, key, "stream goes from site \"%s\" to itself",
					cfg->sites[st->from].name);
		}
		if (st->via[k] != CONFIG_SITE_NONE)
			check_relay(ctx, cfg, i, k, from_ok);
	}
}

static void print_site(FILE *out, size_t site, const struct strait_config *cfg)
{
	config_print_scalar(out, cfg && site < cfg->n_sites && cfg->sites[site].name ?
			cfg->sites[site].name : "");
}

/* One destination as a scalar, today's form; several as a flow list. */
void config_format_to(FILE *out, const struct config_stream *st, const struct strait_config *cfg)
{
	if (st->n_to == 1) {
		print_site(out, st->to[0], cfg);
		return;
	}
	fputc('[', out);
	for (size_t k = 0; k < st->n_to; k++) {
		if (k > 0)
			fputs(", ", out);
		print_site(out, st->to[k], cfg);
	}
	fputc(']', out);
}

/* The relayed destinations in to's order, as a flow mapping; {} when none. */
void config_format_via(FILE *out, const struct config_stream *st, const struct strait_config *cfg)
{
	bool first = true;

	fputc('{', out);
	for (size_t k = 0; st->via && k < st->n_to; k++) {
		if (st->via[k] == CONFIG_SITE_NONE)
			continue;
		fputs(first ? "" : ", ", out);
		first = false;
		print_site(out, st->to[k], cfg);
		fputs(": ", out);
		print_site(out, st->via[k], cfg);
	}
	fputc('}', out);
}
