/*
 * config_load.c — loads strait.yaml: reads the file, walks the YAML node tree
 * against the schema table, fills in defaults, runs the cross-checks and hands
 * back a config only when no error was found. Also frees configs.
 *
 * The walk visits a mapping's keys in table order (so sites exist before the
 * streams that name them, wherever they stand in the file), then reports the
 * keys the table does not know with the nearest known one. A value that fails
 * is reported and the walk goes on; its key is marked bad so later checks do
 * not pile consequences on top of it.
 */
#include "config/config_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void config_error(struct config_ctx *ctx, int line, int column, const char *key,
		const char *fmt, ...)
{
	char msg[CONFIG_ERR_MAX];
	va_list ap;

	ctx->n_errors++;
	if (ctx->n_errors > CONFIG_MAX_ERRORS)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	config_diag_add(ctx->diags, ctx->src, ctx->file, line, column, key, "%s", msg);
}

void config_error_at(struct config_ctx *ctx, const char *key, const char *fmt, ...)
{
	const struct config_where *w = config_where_find(ctx->src, key);
	char msg[CONFIG_ERR_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	config_error(ctx, w ? w->line : 0, w ? w->column : 0, key, "%s", msg);
}

/* path + "." + name, or path + "[i]"; a path too long for messages is cut. */
static void join(char *buf, size_t len, const char *path, const char *name)
{
	int n = snprintf(buf, len, "%s%s%s", path, path[0] ? "." : "", name);

	if (n < 0)
		buf[0] = '\0';
}

static void join_index(char *buf, size_t len, const char *path, size_t i)
{
	int n = snprintf(buf, len, "%s[%zu]", path, i);

	if (n < 0)
		buf[0] = '\0';
}

static void walk_map(struct config_ctx *ctx, const struct config_node *map, const char *pattern,
		const char *path, void *base, int line, int column);

/* A type error unless value is of kind; path's recorded position is marked bad. */
static bool want_kind(struct config_ctx *ctx, const struct config_node *value,
		enum config_node_kind kind, const char *path, const char *what)
{
	if (value->kind == kind)
		return true;
	if (value->kind != CONFIG_NODE_BAD)
		config_error(ctx, value->line, value->column, path, "expected %s, found %s", what,
				config_node_kind_name(value));
	config_where_bad(ctx, path);
	return false;
}

/* The same for a list item, which has no recorded position to mark. */
static bool want_item_kind(struct config_ctx *ctx, const struct config_node *value,
		enum config_node_kind kind, const char *path, const char *what)
{
	if (value->kind == kind)
		return true;
	if (value->kind != CONFIG_NODE_BAD)
		config_error(ctx, value->line, value->column, path, "expected %s, found %s", what,
				config_node_kind_name(value));
	return false;
}

static void walk_sites(struct config_ctx *ctx, const struct config_key *key,
		const struct config_node *value, const char *path)
{
	struct strait_config *cfg = ctx->cfg;
	char inner[CONFIG_KEY_MAX], site_path[CONFIG_KEY_MAX];
	size_t n;

	if (config_node_is_null(value)) {
		config_error(ctx, value->line, value->column, path, "at least one site is needed");
		return;
	}
	if (!want_kind(ctx, value, CONFIG_NODE_MAP, path, "a mapping of sites"))
		return;
	n = value->n_kids / 2;
	if (n == 0) {
		config_error(ctx, value->line, value->column, path, "at least one site is needed");
		return;
	}
	cfg->sites = calloc(n, sizeof(*cfg->sites));
	if (!cfg->sites) {
		ctx->oom = true;
		return;
	}
	ctx->sites_ok = true;
	config_schema_inner(key, inner, sizeof(inner));
	for (size_t i = 0; i < n; i++) {
		const struct config_node *name = value->kids[2 * i], *body = value->kids[2 * i + 1];
		struct config_site *site = &cfg->sites[cfg->n_sites++];

		config_defaults(CS_SITE, site);
		site->name = strdup(name->value);
		if (!site->name)
			ctx->oom = true;
		site->line = name->line;
		join(site_path, sizeof(site_path), path, name->value);
		config_where_add(ctx, site_path, name->line, name->column);
		if (config_node_is_null(body))
			walk_map(ctx, NULL, inner, site_path, site, name->line, name->column);
		else if (want_kind(ctx, body, CONFIG_NODE_MAP, site_path, "a mapping"))
			walk_map(ctx, body, inner, site_path, site, name->line, name->column);
	}
}

/* streams and schedule: sequences of mappings that become arrays of structs. */
static void walk_items(struct config_ctx *ctx, const struct config_key *key, void *base,
		const struct config_node *value, const char *path)
{
	enum config_scope scope = key->type == CT_STREAMS ? CS_STREAM : CS_RULE;
	size_t size = scope == CS_STREAM ? sizeof(struct config_stream) :
		sizeof(struct config_schedule_rule);
	void **array = (void **)((char *)base + key->offset);
	size_t *count = (size_t *)((char *)base + key->aux);
	char inner[CONFIG_KEY_MAX], item_path[CONFIG_KEY_MAX];
	char *items;

	if (config_node_is_null(value))
		return;
	if (!want_kind(ctx, value, CONFIG_NODE_SEQ, path, "a sequence"))
		return;
	if (value->n_kids == 0)
		return;
	items = calloc(value->n_kids, size);
	if (!items) {
		ctx->oom = true;
		return;
	}
	config_type_free(key, base);
	*array = items;
	config_schema_inner(key, inner, sizeof(inner));
	for (size_t i = 0; i < value->n_kids; i++) {
		const struct config_node *item = value->kids[i];
		void *elem = items + i * size;

		(*count)++;
		config_defaults(scope, elem);
		join_index(item_path, sizeof(item_path), path, i);
		config_where_add(ctx, item_path, item->line, item->column);
		if (scope == CS_STREAM)
			((struct config_stream *)elem)->line = item->line;
		if (!want_kind(ctx, item, CONFIG_NODE_MAP, item_path, "a mapping"))
			continue;
		walk_map(ctx, item, inner, item_path, elem, item->line, item->column);
	}
}

/* windows and tables: sequences of scalars. */
static void walk_scalars(struct config_ctx *ctx, const struct config_key *key, void *base,
		const struct config_node *value, const char *path)
{
	size_t *count = (size_t *)((char *)base + key->aux);
	char item_path[CONFIG_KEY_MAX], err[CONFIG_ERR_MAX];
	struct config_window *windows = NULL;
	char **tables = NULL;
	const char *why;

	if (config_node_is_null(value))
		return;
	if (!want_kind(ctx, value, CONFIG_NODE_SEQ, path, "a sequence"))
		return;
	if (value->n_kids == 0)
		return;
	config_type_free(key, base);
	if (key->type == CT_WINDOWS)
		windows = calloc(value->n_kids, sizeof(*windows));
	else
		tables = calloc(value->n_kids, sizeof(*tables));
	if (!windows && !tables) {
		ctx->oom = true;
		return;
	}
	*(void **)((char *)base + key->offset) = windows ? (void *)windows : (void *)tables;
	for (size_t i = 0; i < value->n_kids; i++) {
		const struct config_node *item = value->kids[i];

		join_index(item_path, sizeof(item_path), path, i);
		if (!want_item_kind(ctx, item, CONFIG_NODE_SCALAR, item_path, "a scalar"))
			continue;
		if (windows) {
			if (config_parse_window_why(item->value, &windows[*count], &why)) {
				(*count)++;
				continue;
			}
			if (why)
				snprintf(err, sizeof(err), "invalid hour window \"%.60s\": %s",
						item->value, why);
			else
				snprintf(err, sizeof(err), "invalid hour window \"%.60s\" (use HH:MM-HH:MM"
						" such as 01:00-05:00 or 22:00-06:00)", item->value);
			config_error(ctx, item->line, item->column, item_path, "%s", err);
			continue;
		}
		if (key->type == CT_TABLES && !config_valid_table(item->value)) {
			config_error(ctx, item->line, item->column, item_path,
					"invalid table name \"%.60s\" (use table or schema.table, "
					"lowercase or in double quotes)", item->value);
			continue;
		}
		if (key->type == CT_URLS && !config_valid_http_url(item->value, err, sizeof(err))) {
			config_error(ctx, item->line, item->column, item_path, "%s", err);
			continue;
		}
		for (size_t j = 0; j < *count; j++) {
			if (strcmp(tables[j], item->value) == 0) {
				config_error(ctx, item->line, item->column, item_path,
						"%s \"%.60s\" is listed twice",
						key->type == CT_URLS ? "URL" : "table", item->value);
				goto next;
			}
		}
		tables[*count] = strdup(item->value);
		if (!tables[*count]) {
			ctx->oom = true;
			return;
		}
		(*count)++;
next:;
	}
}

static void walk_value(struct config_ctx *ctx, const struct config_key *key, void *base,
		const struct config_node *value, const char *path, const struct config_node *name)
{
	char inner[CONFIG_KEY_MAX], err[CONFIG_ERR_MAX];

	switch (key->type) {
	case CT_SECTION:
		config_schema_inner(key, inner, sizeof(inner));
		if (config_node_is_null(value))
			walk_map(ctx, NULL, inner, path, base, name->line, name->column);
		else if (want_kind(ctx, value, CONFIG_NODE_MAP, path, "a mapping"))
			walk_map(ctx, value, inner, path, base, name->line, name->column);
		return;
	case CT_SITES:
		walk_sites(ctx, key, value, path);
		return;
	case CT_STREAMS:
	case CT_SCHEDULE:
		walk_items(ctx, key, base, value, path);
		return;
	case CT_WINDOWS:
	case CT_TABLES:
	case CT_URLS:
		walk_scalars(ctx, key, base, value, path);
		return;
	case CT_SITELIST:
		config_walk_to(ctx, base, value, path);
		return;
	case CT_VIA:
		config_walk_via(ctx, base, value, path);
		return;
	default:
		break;
	}
	if (!want_kind(ctx, value, CONFIG_NODE_SCALAR, path, config_type_name(key->type)))
		return;
	if (config_node_is_null(value) && key->type != CT_LISTEN) {
		config_error(ctx, value->line, value->column, path, "a value is missing");
		config_where_bad(ctx, path);
		return;
	}
	if (!config_type_set(ctx, key, base, config_node_is_null(value) ? "off" : value->value,
			err, sizeof(err))) {
		if (err[0])
			config_error(ctx, value->line, value->column, path, "%s", err);
		config_where_bad(ctx, path);
	}
}

/* The unknown key name under pattern: an error with the nearest known key. */
static void unknown_key(struct config_ctx *ctx, const char *pattern,
		const struct config_node *name, const char *path)
{
	const char *cands[CONFIG_MAX_KEYS];
	const char *guess;
	size_t n = 0;

	for (size_t i = 0; i < config_n_keys; i++)
		if (config_schema_is_child(&config_keys[i], pattern))
			cands[n++] = config_schema_name(&config_keys[i]);
	guess = config_suggest(name->value, cands, n);
	if (!guess) {
		/* Maybe the right name one level off: "level" for compression.level. */
		for (size_t i = 0; i < config_n_keys; i++) {
			const struct config_key *k = &config_keys[i];
			size_t plen = strlen(pattern);

			if (strcmp(config_schema_name(k), name->value) == 0 &&
			    strncmp(k->path, pattern, plen) == 0 && k->path[plen] == '.') {
				config_error(ctx, name->line, name->column, path,
						"unknown key \"%.60s\" (did you mean \"%s\"?)", name->value,
						k->path + plen + 1);
				return;
			}
		}
		config_error(ctx, name->line, name->column, path, "unknown key \"%.60s\"",
				name->value);
		return;
	}
	config_error(ctx, name->line, name->column, path,
			"unknown key \"%.60s\" (did you mean \"%s\"?)", name->value, guess);
}

static void walk_map(struct config_ctx *ctx, const struct config_node *map, const char *pattern,
		const char *path, void *base, int line, int column)
{
	size_t n_pairs = map ? map->n_kids / 2 : 0;
	char child_path[CONFIG_KEY_MAX];

	/* Known keys, in table order. */
	for (size_t i = 0; i < config_n_keys; i++) {
		const struct config_key *k = &config_keys[i];
		const struct config_node *name = NULL, *value = NULL;

		if (!config_schema_is_child(k, pattern))
			continue;
		for (size_t p = 0; p < n_pairs; p++) {
			if (strcmp(map->kids[2 * p]->value, config_schema_name(k)) == 0) {
				name = map->kids[2 * p];
				value = map->kids[2 * p + 1];
				break;
			}
		}
		join(child_path, sizeof(child_path), path, config_schema_name(k));
		if (!name) {
			if (k->required)
				config_error(ctx, line, column, child_path, "missing required key \"%s\"",
						config_schema_name(k));
			continue;
		}
		config_where_add(ctx, child_path, value->line, value->column);
		walk_value(ctx, k, base, value, child_path, name);
	}
	/* Unknown keys. */
	for (size_t p = 0; p < n_pairs; p++) {
		const struct config_node *name = map->kids[2 * p];

		if (config_schema_child(pattern, name->value))
			continue;
		join(child_path, sizeof(child_path), path, name->value);
		unknown_key(ctx, pattern, name, child_path);
	}
}

void config_free(struct strait_config *cfg)
{
	if (!cfg)
		return;
	for (size_t s = 0; s < cfg->n_sites; s++) {
		for (size_t i = 0; i < config_n_keys; i++)
			if (config_keys[i].scope == CS_SITE)
				config_type_free(&config_keys[i], &cfg->sites[s]);
		free(cfg->sites[s].name);
	}
	free(cfg->sites);
	for (size_t s = 0; s < cfg->n_streams; s++)
		for (size_t i = 0; i < config_n_keys; i++)
			if (config_keys[i].scope == CS_STREAM)
				config_type_free(&config_keys[i], &cfg->streams[s]);
	free(cfg->streams);
	for (size_t i = 0; i < config_n_keys; i++)
		if (config_keys[i].scope == CS_ROOT && config_keys[i].type != CT_SITES &&
		    config_keys[i].type != CT_STREAMS)
			config_type_free(&config_keys[i], cfg);
	config_source_free(cfg->source);
	free(cfg->path);
	free(cfg);
}

static struct strait_config *load_buffer(const char *name, const char *text, size_t len,
		struct config_diags *diags)
{
	struct config_ctx ctx;
	struct config_node *root = NULL;
	struct strait_config *cfg = NULL;

	memset(&ctx, 0, sizeof(ctx));
	ctx.file = name ? name : "<config>";
	ctx.diags = diags;
	ctx.first_diag = diags ? diags->count : 0;
	cfg = calloc(1, sizeof(*cfg));
	ctx.src = calloc(1, sizeof(*ctx.src));
	if (cfg)
		cfg->source = ctx.src;
	if (!cfg || !ctx.src || !(ctx.src->text = malloc(len + 1)) || !(cfg->path = strdup(ctx.file))) {
		ctx.oom = true;
		goto out;
	}
	if (len > 0)
		memcpy(ctx.src->text, text, len);
	ctx.src->text[len] = '\0';
	ctx.src->len = len;
	ctx.cfg = cfg;
	config_defaults(CS_ROOT, cfg);

	if (len > CONFIG_MAX_FILE_SIZE) {
		config_error(&ctx, 0, 0, NULL, "the file is too large (more than %d bytes)",
				CONFIG_MAX_FILE_SIZE);
		goto out;
	}
	root = config_yaml_read(&ctx);
	if (!root)
		goto out;
	if (config_node_is_null(root)) {
		config_error(&ctx, 0, 0, NULL, "the file is empty");
		goto out;
	}
	if (root->kind != CONFIG_NODE_MAP) {
		config_error(&ctx, root->line, root->column, NULL,
				"expected a mapping of keys at the top level, found %s",
				config_node_kind_name(root));
		goto out;
	}
	walk_map(&ctx, root, "", "", cfg, root->line, root->column);
	if (!ctx.oom)
		config_check_all(&ctx, cfg);
out:
	config_node_free(root);
	if (ctx.oom)
		config_error(&ctx, 0, 0, NULL, "out of memory");
	if (diags)
		config_diags_sort(diags, ctx.first_diag);
	if (ctx.n_errors > CONFIG_MAX_ERRORS)
		config_diag_add(diags, NULL, ctx.file, 0, 0, NULL,
				"too many errors, only the first %d are shown", CONFIG_MAX_ERRORS);
	if (ctx.n_errors > 0 || ctx.oom) {
		if (cfg)
			config_free(cfg);
		else
			config_source_free(ctx.src);
		return NULL;
	}
	return cfg;
}

struct strait_config *config_load_buffer(const char *name, const char *text, size_t len,
		struct config_diags *diags)
{
	return load_buffer(name, text, len, diags);
}

struct strait_config *config_load_file(const char *path, struct config_diags *diags)
{
	struct strait_config *cfg = NULL;
	struct stat st;
	char *text = NULL;
	size_t len = 0;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		config_diag_add(diags, NULL, path, 0, 0, NULL, "could not open file \"%s\": %s", path,
				strerror(errno));
		goto out;
	}
	if (fstat(fd, &st) < 0) {
		config_diag_add(diags, NULL, path, 0, 0, NULL, "could not stat file \"%s\": %s", path,
				strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		config_diag_add(diags, NULL, path, 0, 0, NULL, "could not read file \"%s\": %s", path,
				S_ISDIR(st.st_mode) ? "it is a directory" : "not a regular file");
		goto out;
	}
	if (st.st_size > CONFIG_MAX_FILE_SIZE) {
		config_diag_add(diags, NULL, path, 0, 0, NULL,
				"the file is too large (more than %d bytes)", CONFIG_MAX_FILE_SIZE);
		goto out;
	}
	text = malloc((size_t)st.st_size + 1);
	if (!text) {
		config_diag_add(diags, NULL, path, 0, 0, NULL, "out of memory");
		goto out;
	}
	while (len < (size_t)st.st_size) {
		ssize_t n = read(fd, text + len, (size_t)st.st_size - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			config_diag_add(diags, NULL, path, 0, 0, NULL, "could not read file \"%s\": %s",
					path, strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	cfg = config_load_buffer(path, text, len, diags);
out:
	if (fd >= 0)
		close(fd);
	free(text);
	return cfg;
}
