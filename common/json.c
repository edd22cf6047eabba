/*
 * json.c — status output as JSON or as an indented outline (see json.h).
 */
#include "common/json.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/lsn.h"

void json_init(struct json_out *j)
{
	memset(j, 0, sizeof(*j));
	j->first[0] = true;
}

void json_init_text(struct json_out *j)
{
	json_init(j);
	j->text = true;
}

static void json_reserve(struct json_out *j, size_t more)
{
	size_t need, cap;
	char *grown;

	if (j->failed)
		return;
	need = j->len + more + 1;
	if (need <= j->cap)
		return;
	cap = j->cap ? j->cap : 256;
	while (cap < need)
		cap *= 2;
	grown = realloc(j->buf, cap);
	if (!grown) {
		j->failed = true;
		return;
	}
	j->buf = grown;
	j->cap = cap;
}

static void json_put(struct json_out *j, const char *s, size_t n)
{
	json_reserve(j, n);
	if (j->failed)
		return;
	memcpy(j->buf + j->len, s, n);
	j->len += n;
	j->buf[j->len] = '\0';
}

static void json_puts(struct json_out *j, const char *s)
{
	json_put(j, s, strlen(s));
}

static void json_putf(struct json_out *j, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void json_putf(struct json_out *j, const char *fmt, ...)
{
	char tmp[64];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n > 0)
		json_put(j, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

static void json_quoted(struct json_out *j, const char *s)
{
	json_put(j, "\"", 1);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		switch (*p) {
		case '"': json_put(j, "\\\"", 2); break;
		case '\\': json_put(j, "\\\\", 2); break;
		case '\n': json_put(j, "\\n", 2); break;
		case '\r': json_put(j, "\\r", 2); break;
		case '\t': json_put(j, "\\t", 2); break;
		default:
			if (*p < 0x20)
				json_putf(j, "\\u%04x", *p);
			else
				json_put(j, (const char *)p, 1);
		}
	}
	json_put(j, "\"", 1);
}

/*
 * Starts a member in outline form: a new line, indented by depth; the first
 * member of an array's item carries the item's "- ".
 */
static void json_text_member(struct json_out *j, const char *key)
{
	int indent = j->depth > 0 ? (j->depth - 1) * 2 : 0;
	bool item_start = j->depth >= 2 && j->array[j->depth - 1] && j->first[j->depth];

	if (j->len > 0)
		json_put(j, "\n", 1);
	if (j->array[j->depth]) {
		/* a scalar or a nested container directly inside an array */
		for (int i = 0; i < indent; i++)
			json_put(j, " ", 1);
		json_put(j, "- ", 2);
	} else {
		for (int i = 0; i < indent - (item_start ? 2 : 0); i++)
			json_put(j, " ", 1);
		if (item_start)
			json_put(j, "- ", 2);
	}
	if (key) {
		json_puts(j, key);
		json_put(j, ":", 1);
	}
	j->first[j->depth] = false;
}

/* Separator and key before a value at the current depth. */
static void json_member(struct json_out *j, const char *key)
{
	if (j->text) {
		json_text_member(j, key);
		if (key)
			json_put(j, " ", 1);
		return;
	}
	if (!j->first[j->depth])
		json_put(j, ",", 1);
	j->first[j->depth] = false;
	if (key) {
		json_quoted(j, key);
		json_put(j, ":", 1);
	}
}

static void json_open(struct json_out *j, const char *key, bool array)
{
	if (j->text) {
		/* The top-level object and objects that are array items get no line. */
		bool item = j->array[j->depth];
		if (j->depth > 0 && !(item && !array && !key))
			json_text_member(j, key);
		else if (item)
			j->first[j->depth] = false;
	} else {
		json_member(j, key);
		json_put(j, array ? "[" : "{", 1);
	}
	if (j->depth + 1 >= JSON_MAX_DEPTH) {
		j->failed = true;
		return;
	}
	j->depth++;
	j->first[j->depth] = true;
	j->array[j->depth] = array;
}

static void json_close(struct json_out *j, bool array)
{
	if (j->depth == 0 || j->array[j->depth] != array) {
		j->failed = true;
		return;
	}
	if (j->text) {
		if (array && j->first[j->depth])
			json_puts(j, " (none)");
	} else {
		json_put(j, array ? "]" : "}", 1);
	}
	j->array[j->depth] = false;
	j->depth--;
}

void json_object_begin(struct json_out *j, const char *key) { json_open(j, key, false); }
void json_object_end(struct json_out *j) { json_close(j, false); }
void json_array_begin(struct json_out *j, const char *key) { json_open(j, key, true); }
void json_array_end(struct json_out *j) { json_close(j, true); }

void json_string(struct json_out *j, const char *key, const char *value)
{
	json_member(j, key);
	if (j->text)
		json_puts(j, value ? value : "-");
	else if (value)
		json_quoted(j, value);
	else
		json_put(j, "null", 4);
}

void json_int(struct json_out *j, const char *key, int64_t value)
{
	json_member(j, key);
	json_putf(j, "%" PRId64, value);
}

void json_uint(struct json_out *j, const char *key, uint64_t value)
{
	json_member(j, key);
	json_putf(j, "%" PRIu64, value);
}

void json_double(struct json_out *j, const char *key, double value)
{
	json_member(j, key);
	if (isfinite(value))
		json_putf(j, j->text ? "%.3f" : "%.17g", value);
	else
		json_puts(j, j->text ? "-" : "null");
}

void json_bool(struct json_out *j, const char *key, bool value)
{
	json_member(j, key);
	if (j->text)
		json_puts(j, value ? "yes" : "no");
	else
		json_puts(j, value ? "true" : "false");
}

void json_null(struct json_out *j, const char *key)
{
	json_member(j, key);
	json_puts(j, j->text ? "-" : "null");
}

void json_lsn(struct json_out *j, const char *key, uint64_t lsn)
{
	char text[LSN_BUF];

	json_string(j, key, lsn_format(text, lsn));
}

void json_raw(struct json_out *j, const char *key, const char *value)
{
	size_t n = strlen(value);

	if (j->text) {
		j->failed = true;
		return;
	}
	while (n > 0 && value[n - 1] == '\n')
		n--;
	json_member(j, key);
	json_put(j, value, n);
}

char *json_finish(struct json_out *j, size_t *len)
{
	char *doc;

	if (j->text && !j->failed)
		json_put(j, "\n", 1);
	if (j->failed || j->depth != 0 || !j->buf) {
		json_discard(j);
		return NULL;
	}
	doc = j->buf;
	if (len)
		*len = j->len;
	j->buf = NULL;
	return doc;
}

char *json_finish_line(struct json_out *j, size_t *len)
{
	size_t n = 0;
	char *doc = json_finish(j, &n), *line;

	if (doc && !j->text) {
		line = realloc(doc, n + 2);
		if (!line) {
			free(doc);
			return NULL;
		}
		doc = line;
		doc[n++] = '\n';
		doc[n] = '\0';
	}
	if (doc && len)
		*len = n;
	return doc;
}

void json_discard(struct json_out *j)
{
	bool text = j->text;

	free(j->buf);
	json_init(j);
	j->text = text;
}
