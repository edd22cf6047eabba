/*
 * json_value.c — a JSON document read into a tree (see json_value.h).
 *
 * CONTRACT
 * A recursive descent over the text, one pass; each container's items grow
 * by doubling. On any error everything built so far is freed and the message
 * names the byte offset, so a truncated reply reads as such.
 */
#include "common/json_value.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct json_reader {
	const char *start;
	const char *p;
	char *err;
	size_t errlen;
	bool failed;
};

static bool json_parse_value(struct json_reader *r, struct json_value *v, int depth);

static bool json_fail(struct json_reader *r, const char *what)
{
	if (!r->failed && r->errlen)
		snprintf(r->err, r->errlen, "%s at byte %zu", what, (size_t)(r->p - r->start));
	r->failed = true;
	return false;
}

static void json_skip_space(struct json_reader *r)
{
	while (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r')
		r->p++;
}

static void json_value_clear(struct json_value *v)
{
	for (size_t i = 0; i < v->n; i++) {
		json_value_clear(&v->items[i]);
		if (v->keys)
			free(v->keys[i]);
	}
	free(v->items);
	free(v->keys);
	free(v->string);
	memset(v, 0, sizeof(*v));
}

void json_value_free(struct json_value *v)
{
	if (!v)
		return;
	json_value_clear(v);
	free(v);
}

/* A literal: true, false or null. */
static bool json_parse_word(struct json_reader *r, struct json_value *v)
{
	static const struct { const char *word; enum json_type type; bool b; } words[] = {
		{ "true", JSON_BOOL, true }, { "false", JSON_BOOL, false }, { "null", JSON_NULL, false },
	};

	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
		size_t n = strlen(words[i].word);

		if (strncmp(r->p, words[i].word, n) == 0) {
			v->type = words[i].type;
			v->boolean = words[i].b;
			r->p += n;
			return true;
		}
	}
	return json_fail(r, "unexpected character");
}

/* A number as RFC 8259 spells it (strtod alone would take "0x1", "inf", "+1"). */
static bool json_parse_number(struct json_reader *r, struct json_value *v)
{
	const char *q = r->p;
	char *end;

	if (*q == '-')
		q++;
	if (*q == '0')
		q++;
	else if (*q >= '1' && *q <= '9')
		q += strspn(q, "0123456789");
	else
		return json_fail(r, "bad number");
	if (*q == '.') {
		if (!(q[1] >= '0' && q[1] <= '9'))
			return json_fail(r, "bad number");
		q += 1 + strspn(q + 1, "0123456789");
	}
	if (*q == 'e' || *q == 'E') {
		q++;
		if (*q == '+' || *q == '-')
			q++;
		if (!(*q >= '0' && *q <= '9'))
			return json_fail(r, "bad number");
		q += strspn(q, "0123456789");
	}
	v->type = JSON_NUMBER;
	v->number = strtod(r->p, &end);
	if (end != q || !isfinite(v->number))
		return json_fail(r, "bad number");
	r->p = q;
	return true;
}

static int json_hex4(const char *s)
{
	int cp = 0;

	for (int i = 0; i < 4; i++) {
		char c = s[i];
		int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 :
			c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;

		if (d < 0)
			return -1;
		cp = cp * 16 + d;
	}
	return cp;
}

static size_t json_utf8(uint32_t cp, char *out)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xc0 | cp >> 6);
		out[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xe0 | cp >> 12);
		out[1] = (char)(0x80 | (cp >> 6 & 0x3f));
		out[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (char)(0xf0 | cp >> 18);
	out[1] = (char)(0x80 | (cp >> 12 & 0x3f));
	out[2] = (char)(0x80 | (cp >> 6 & 0x3f));
	out[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* \uXXXX (r->p on the u), a surrogate pair taken whole; the UTF-8 goes to out. */
static bool json_parse_unicode(struct json_reader *r, char *out, size_t *n)
{
	int hi = json_hex4(r->p + 1), lo;

	if (hi < 0)
		return json_fail(r, "bad \\u escape");
	r->p += 5;
	if (hi >= 0xdc00 && hi <= 0xdfff)
		return json_fail(r, "lone low surrogate");
	if (hi < 0xd800 || hi > 0xdbff) {
		*n = json_utf8((uint32_t)hi, out);
		return true;
	}
	if (r->p[0] != '\\' || r->p[1] != 'u' || (lo = json_hex4(r->p + 2)) < 0xdc00 || lo > 0xdfff)
		return json_fail(r, "lone high surrogate");
	r->p += 6;
	*n = json_utf8(0x10000 + ((uint32_t)(hi - 0xd800) << 10) + (uint32_t)(lo - 0xdc00), out);
	return true;
}

/* One escape after the backslash (r->p on the letter); its bytes go to out. */
static bool json_parse_escape(struct json_reader *r, char *out, size_t *n)
{
	static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
	const char *at = *r->p ? strchr(from, *r->p) : NULL;

	if (*r->p == 'u')
		return json_parse_unicode(r, out, n);
	if (!at)
		return json_fail(r, "bad escape");
	out[0] = to[at - from];
	*n = 1;
	r->p++;
	return true;
}

/* A string (r->p on the opening quote) into *out, which the caller frees. */
static bool json_parse_string(struct json_reader *r, char **out)
{
	const char *close = r->p + 1;
	char *s, *w;

	/* the decoded text is never longer than the quoted one */
	while (*close && *close != '"')
		close += *close == '\\' && close[1] ? 2 : 1;
	if (*close != '"')
		return json_fail(r, "unterminated string");
	s = malloc((size_t)(close - r->p));
	if (!s)
		return json_fail(r, "out of memory");
	w = s;
	for (r->p++; *r->p != '"';) {
		size_t n = 1;

		if ((unsigned char)*r->p < 0x20) {
			free(s);
			return json_fail(r, "control character in string");
		}
		if (*r->p != '\\') {
			*w++ = *r->p++;
			continue;
		}
		r->p++;
		if (!json_parse_escape(r, w, &n)) {
			free(s);
			return false;
		}
		w += n;
	}
	*w = '\0';
	r->p++;
	*out = s;
	return true;
}

/* Room for one more item (and key, for an object) in v. */
static bool json_grow(struct json_reader *r, struct json_value *v, size_t *cap)
{
	size_t want = *cap ? *cap * 2 : 4;
	struct json_value *items;

	if (v->n < *cap)
		return true;
	items = realloc(v->items, want * sizeof(*items));
	if (!items)
		return json_fail(r, "out of memory");
	v->items = items;
	if (v->type == JSON_OBJECT) {
		char **keys = realloc(v->keys, want * sizeof(*keys));

		if (!keys)
			return json_fail(r, "out of memory");
		v->keys = keys;
	}
	*cap = want;
	return true;
}

/* An array or an object (r->p on its bracket): items, with keys for an object. */
static bool json_parse_container(struct json_reader *r, struct json_value *v, int depth)
{
	bool object = *r->p == '{';
	char close = object ? '}' : ']';
	size_t cap = 0;

	if (depth >= JSON_VALUE_MAX_DEPTH)
		return json_fail(r, "nested too deeply");
	v->type = object ? JSON_OBJECT : JSON_ARRAY;
	r->p++;
	json_skip_space(r);
	if (*r->p == close) {
		r->p++;
		return true;
	}
	for (;;) {
		struct json_value *item;

		if (!json_grow(r, v, &cap))
			return false;
		item = &v->items[v->n];
		memset(item, 0, sizeof(*item));
		if (object) {
			json_skip_space(r);
			if (*r->p != '"')
				return json_fail(r, "expected a key");
			if (!json_parse_string(r, &v->keys[v->n]))
				return false;
			json_skip_space(r);
			if (*r->p != ':') {
				free(v->keys[v->n]);
				return json_fail(r, "expected ':'");
			}
			r->p++;
		}
		v->n++;         /* counted now, so that a failure below frees it */
		if (!json_parse_value(r, item, depth + 1))
			return false;
		json_skip_space(r);
		if (*r->p == close) {
			r->p++;
			return true;
		}
		if (*r->p != ',')
			return json_fail(r, object ? "expected ',' or '}'" : "expected ',' or ']'");
		r->p++;
	}
}

static bool json_parse_value(struct json_reader *r, struct json_value *v, int depth)
{
	json_skip_space(r);
	switch (*r->p) {
	case '{':
	case '[':
		return json_parse_container(r, v, depth);
	case '"':
		v->type = JSON_STRING;
		return json_parse_string(r, &v->string);
	case '-':
	case '0': case '1': case '2': case '3': case '4':
	case '5': case '6': case '7': case '8': case '9':
		return json_parse_number(r, v);
	case '\0':
		return json_fail(r, "unexpected end");
	default:
		return json_parse_word(r, v);
	}
}

struct json_value *json_parse(const char *text, char *err, size_t errlen)
{
	struct json_reader r = { .start = text, .p = text, .err = err, .errlen = errlen };
	struct json_value *v = calloc(1, sizeof(*v));

	if (!v) {
		json_fail(&r, "out of memory");
		return NULL;
	}
	if (json_parse_value(&r, v, 0)) {
		json_skip_space(&r);
		if (*r.p == '\0')
			return v;
		json_fail(&r, "text after the document");
	}
	json_value_free(v);
	return NULL;
}

const struct json_value *json_get(const struct json_value *obj, const char *key)
{
	if (!obj || obj->type != JSON_OBJECT)
		return NULL;
	for (size_t i = 0; i < obj->n; i++) {
		if (strcmp(obj->keys[i], key) == 0)
			return &obj->items[i];
	}
	return NULL;
}

const struct json_value *json_at(const struct json_value *arr, size_t i)
{
	return arr && arr->type == JSON_ARRAY && i < arr->n ? &arr->items[i] : NULL;
}

size_t json_len(const struct json_value *arr)
{
	return arr && arr->type == JSON_ARRAY ? arr->n : 0;
}

const char *json_get_string(const struct json_value *obj, const char *key)
{
	const struct json_value *v = json_get(obj, key);

	return v && v->type == JSON_STRING ? v->string : NULL;
}

double json_get_number(const struct json_value *obj, const char *key, double dflt)
{
	const struct json_value *v = json_get(obj, key);

	return v && v->type == JSON_NUMBER ? v->number : dflt;
}

bool json_get_bool(const struct json_value *obj, const char *key, bool dflt)
{
	const struct json_value *v = json_get(obj, key);

	return v && v->type == JSON_BOOL ? v->boolean : dflt;
}

bool json_has_number(const struct json_value *obj, const char *key)
{
	const struct json_value *v = json_get(obj, key);

	return v && v->type == JSON_NUMBER;
}
