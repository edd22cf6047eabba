/*
 * config_source.c — what a loaded config remembers of its file: the text and
 * the position of every key, so checks that run after loading (cross-checks,
 * file permissions, reloads) can still point at a line and column.
 */
#include "config/config_int.h"

#include <stdlib.h>
#include <string.h>

void config_source_free(struct config_source *src)
{
	if (!src)
		return;
	for (size_t i = 0; i < src->n_where; i++)
		free(src->where[i].key);
	free(src->where);
	free(src->text);
	free(src);
}

static struct config_where *find(const struct config_source *src, const char *key)
{
	if (!src || !key)
		return NULL;
	/* Each key is recorded once; the latest are the likeliest to be asked for. */
	for (size_t i = src->n_where; i > 0; i--)
		if (strcmp(src->where[i - 1].key, key) == 0)
			return &src->where[i - 1];
	return NULL;
}

const struct config_where *config_where_find(const struct config_source *src, const char *key)
{
	return find(src, key);
}

bool config_where_ok(const struct config_source *src, const char *key)
{
	const struct config_where *w = config_where_find(src, key);

	return w && !w->bad;
}

void config_where_add(struct config_ctx *ctx, const char *key, int line, int column)
{
	struct config_source *src = ctx->src;
	struct config_where *w;

	if (src->n_where == src->cap_where) {
		size_t cap = src->cap_where ? src->cap_where * 2 : 32;
		struct config_where *grown = realloc(src->where, cap * sizeof(*grown));

		if (!grown) {
			ctx->oom = true;
			return;
		}
		src->where = grown;
		src->cap_where = cap;
	}
	w = &src->where[src->n_where];
	w->key = strdup(key);
	if (!w->key) {
		ctx->oom = true;
		return;
	}
	w->line = line;
	w->column = column;
	w->bad = false;
	src->n_where++;
}

void config_where_bad(struct config_ctx *ctx, const char *key)
{
	struct config_where *w = find(ctx->src, key);

	if (w)
		w->bad = true;
}
