/*
 * config_yaml.c — reads strait.yaml with libyaml's event API into a small node
 * tree that remembers each node's line and column.
 *
 * libyaml checks the syntax; this file refuses what YAML allows but a config
 * should not use, each at its own line:column: aliases and anchors (a value
 * should be read where it stands), tags (strait types values by key, not by
 * tag), duplicate keys (which one wins is a trap), complex keys, several
 * documents in one file. Nesting is bounded (CONFIG_MAX_DEPTH) so recursion
 * here and in the walk stays small whatever the input. No YAML type
 * resolution happens: every scalar stays text for the schema to type.
 */
#include "config/config_int.h"

#include <stdlib.h>
#include <string.h>

#include <yaml.h>

struct yreader {
	yaml_parser_t parser;
	struct config_ctx *ctx;
	bool failed;                 /* stop reading: a syntax error or too deep */
};

void config_node_free(struct config_node *node)
{
	if (!node)
		return;
	for (size_t i = 0; i < node->n_kids; i++)
		config_node_free(node->kids[i]);
	free(node->kids);
	free(node->value);
	free(node);
}

bool config_node_is_null(const struct config_node *node)
{
	if (!node || node->kind != CONFIG_NODE_SCALAR || !node->plain)
		return false;
	return node->value[0] == '\0' || strcmp(node->value, "~") == 0 ||
		strcmp(node->value, "null") == 0 || strcmp(node->value, "Null") == 0 ||
		strcmp(node->value, "NULL") == 0;
}

const char *config_node_kind_name(const struct config_node *node)
{
	switch (node->kind) {
	case CONFIG_NODE_MAP:
		return "a mapping";
	case CONFIG_NODE_SEQ:
		return "a sequence";
	case CONFIG_NODE_SCALAR:
		return config_node_is_null(node) ? "nothing" : "a scalar";
	case CONFIG_NODE_BAD:
		break;
	}
	return "an alias";
}

/* Line and column (1-based) of a byte offset, for reader errors. */
static void offset_position(const struct config_source *src, size_t offset, int *line, int *column)
{
	int l = 1, c = 1;

	for (size_t i = 0; i < offset && i < src->len; i++) {
		if (src->text[i] == '\n') {
			l++;
			c = 1;
		} else if (((unsigned char)src->text[i] & 0xc0) != 0x80) {
			c++;
		}
	}
	*line = l;
	*column = c;
}

static void report_parser_error(struct yreader *r)
{
	yaml_parser_t *p = &r->parser;
	const char *problem = p->problem ? p->problem : "unknown error";
	int line, column;

	r->failed = true;
	if (p->error == YAML_MEMORY_ERROR) {
		r->ctx->oom = true;
		return;
	}
	if (p->error == YAML_READER_ERROR) {
		offset_position(r->ctx->src, p->problem_offset, &line, &column);
		config_error(r->ctx, line, column, NULL, "invalid YAML: %s", problem);
		return;
	}
	line = (int)p->problem_mark.line + 1;
	column = (int)p->problem_mark.column + 1;
	if (p->context)
		config_error(r->ctx, line, column, NULL, "invalid YAML: %s (%s at line %d, column %d)",
				problem, p->context, (int)p->context_mark.line + 1,
				(int)p->context_mark.column + 1);
	else
		config_error(r->ctx, line, column, NULL, "invalid YAML: %s", problem);
}

static bool next_event(struct yreader *r, yaml_event_t *ev)
{
	if (yaml_parser_parse(&r->parser, ev))
		return true;
	report_parser_error(r);
	return false;
}

static bool add_kid(struct yreader *r, struct config_node *parent, struct config_node *kid)
{
	size_t limit = parent->kind == CONFIG_NODE_MAP ? 2 * CONFIG_MAX_ENTRIES : CONFIG_MAX_ENTRIES;

	if (parent->n_kids >= limit) {
		config_error(r->ctx, parent->line, parent->column, NULL,
				"too many entries in one %s (more than %d)",
				parent->kind == CONFIG_NODE_MAP ? "mapping" : "sequence", CONFIG_MAX_ENTRIES);
		r->failed = true;
		return false;
	}
	if (parent->n_kids == parent->cap_kids) {
		size_t cap = parent->cap_kids ? parent->cap_kids * 2 : 8;
		struct config_node **grown = realloc(parent->kids, cap * sizeof(*grown));

		if (!grown) {
			r->ctx->oom = true;
			r->failed = true;
			return false;
		}
		parent->kids = grown;
		parent->cap_kids = cap;
	}
	parent->kids[parent->n_kids++] = kid;
	return true;
}

/* The pair key: value goes into map unless the key is unusable or repeated. */
static void add_pair(struct yreader *r, struct config_node *map, struct config_node *key,
		struct config_node *value)
{
	if (key->kind == CONFIG_NODE_BAD)
		goto drop;
	if (key->kind != CONFIG_NODE_SCALAR) {
		config_error(r->ctx, key->line, key->column, NULL,
				"a key must be a scalar, not %s", config_node_kind_name(key));
		goto drop;
	}
	for (size_t i = 0; i < map->n_kids; i += 2) {
		if (strcmp(map->kids[i]->value, key->value) == 0) {
			config_error(r->ctx, key->line, key->column, NULL,
					"duplicate key \"%.80s\" (first at line %d)", key->value,
					map->kids[i]->line);
			goto drop;
		}
	}
	if (!add_kid(r, map, key))
		goto drop;
	if (!add_kid(r, map, value)) {
		map->n_kids--;
		goto drop;
	}
	return;
drop:
	config_node_free(key);
	config_node_free(value);
}

static struct config_node *read_node(struct yreader *r, yaml_event_t *ev, int depth);

/* Reads the items of a mapping or sequence up to its end event. */
static void read_children(struct yreader *r, struct config_node *node, int depth)
{
	yaml_event_type_t end = node->kind == CONFIG_NODE_MAP ?
		YAML_MAPPING_END_EVENT : YAML_SEQUENCE_END_EVENT;

	while (!r->failed) {
		yaml_event_t ev;
		struct config_node *key, *value;

		if (!next_event(r, &ev))
			return;
		if (ev.type == end) {
			yaml_event_delete(&ev);
			return;
		}
		key = read_node(r, &ev, depth + 1);
		if (node->kind == CONFIG_NODE_SEQ) {
			if (key && !add_kid(r, node, key))
				config_node_free(key);
			continue;
		}
		if (!key || r->failed || !next_event(r, &ev)) {
			config_node_free(key);
			return;
		}
		value = read_node(r, &ev, depth + 1);
		if (!value) {
			config_node_free(key);
			return;
		}
		add_pair(r, node, key, value);
	}
}

/* Builds the node that starts with ev, consuming (and deleting) ev. */
static struct config_node *read_node(struct yreader *r, yaml_event_t *ev, int depth)
{
	struct config_node *node = calloc(1, sizeof(*node));
	yaml_char_t *anchor = NULL, *tag = NULL;

	if (!node) {
		r->ctx->oom = true;
		r->failed = true;
		yaml_event_delete(ev);
		return NULL;
	}
	node->line = (int)ev->start_mark.line + 1;
	node->column = (int)ev->start_mark.column + 1;
	switch (ev->type) {
	case YAML_SCALAR_EVENT:
		node->kind = CONFIG_NODE_SCALAR;
		anchor = ev->data.scalar.anchor;
		tag = ev->data.scalar.tag;
		node->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
		node->value = malloc(ev->data.scalar.length + 1);
		if (!node->value) {
			r->ctx->oom = true;
			r->failed = true;
			break;
		}
		memcpy(node->value, ev->data.scalar.value, ev->data.scalar.length);
		node->value[ev->data.scalar.length] = '\0';
		if (strlen(node->value) != ev->data.scalar.length)
			config_error(r->ctx, node->line, node->column, NULL,
					"a value must not contain a NUL character");
		break;
	case YAML_MAPPING_START_EVENT:
		node->kind = CONFIG_NODE_MAP;
		anchor = ev->data.mapping_start.anchor;
		tag = ev->data.mapping_start.tag;
		break;
	case YAML_SEQUENCE_START_EVENT:
		node->kind = CONFIG_NODE_SEQ;
		anchor = ev->data.sequence_start.anchor;
		tag = ev->data.sequence_start.tag;
		break;
	case YAML_ALIAS_EVENT:
		node->kind = CONFIG_NODE_BAD;
		config_error(r->ctx, node->line, node->column, NULL,
				"YAML aliases are not supported; write the value out");
		break;
	default:
		/* The parser never puts another event where a node goes. */
		node->kind = CONFIG_NODE_BAD;
		r->failed = true;
		break;
	}
	if (anchor)
		config_error(r->ctx, node->line, node->column, NULL,
				"YAML anchors are not supported; write the value out");
	if (tag)
		config_error(r->ctx, node->line, node->column, NULL,
				"YAML tags are not supported; strait types each value by its key");
	yaml_event_delete(ev);
	if (node->kind == CONFIG_NODE_MAP || node->kind == CONFIG_NODE_SEQ) {
		if (depth >= CONFIG_MAX_DEPTH) {
			config_error(r->ctx, node->line, node->column, NULL,
					"nesting is too deep (more than %d levels)", CONFIG_MAX_DEPTH);
			r->failed = true;
			return node;
		}
		read_children(r, node, depth);
	}
	if (!node->value && node->kind == CONFIG_NODE_SCALAR) {
		config_node_free(node);
		return NULL;
	}
	return node;
}

struct config_node *config_yaml_read(struct config_ctx *ctx)
{
	struct yreader r;
	yaml_event_t ev;
	struct config_node *root = NULL;

	memset(&r, 0, sizeof(r));
	r.ctx = ctx;
	if (!yaml_parser_initialize(&r.parser)) {
		ctx->oom = true;
		return NULL;
	}
	yaml_parser_set_input_string(&r.parser, (const unsigned char *)ctx->src->text, ctx->src->len);
	/* STREAM-START, then DOCUMENT-START or STREAM-END (an empty file). */
	if (!next_event(&r, &ev))
		goto out;
	yaml_event_delete(&ev);
	if (!next_event(&r, &ev))
		goto out;
	if (ev.type != YAML_DOCUMENT_START_EVENT) {
		yaml_event_delete(&ev);
		config_error(ctx, 0, 0, NULL, "the file is empty");
		r.failed = true;
		goto out;
	}
	yaml_event_delete(&ev);
	if (!next_event(&r, &ev))
		goto out;
	root = read_node(&r, &ev, 0);
	if (r.failed || !root)
		goto out;
	/* DOCUMENT-END, then STREAM-END: one document only. */
	if (!next_event(&r, &ev))
		goto out;
	yaml_event_delete(&ev);
	if (!next_event(&r, &ev))
		goto out;
	if (ev.type != YAML_STREAM_END_EVENT) {
		config_error(ctx, (int)ev.start_mark.line + 1, (int)ev.start_mark.column + 1, NULL,
				"a config file holds one YAML document; found another");
		r.failed = true;
	}
	yaml_event_delete(&ev);
out:
	yaml_parser_delete(&r.parser);
	if (r.failed) {
		config_node_free(root);
		return NULL;
	}
	return root;
}
