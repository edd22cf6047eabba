/*
 * wire.c — bounds-checked big-endian field readers and writers for relay
 * payloads. See wire.h for the conventions: readers fail without moving,
 * writers fail sticky.
 */
#include "gateway/relay/wire.h"

#include <stdlib.h>
#include <string.h>

void
wire_reader_init(struct wire_reader *r, const void *buf, size_t len)
{
	r->data = buf;
	r->len = buf != NULL ? len : 0;
	r->pos = 0;
}

bool
wire_get_u8(struct wire_reader *r, uint8_t *out)
{
	if (wire_remaining(r) < 1)
		return false;
	*out = r->data[r->pos];
	r->pos += 1;
	return true;
}

bool
wire_get_u16(struct wire_reader *r, uint16_t *out)
{
	if (wire_remaining(r) < 2)
		return false;
	*out = wire_load_u16(r->data + r->pos);
	r->pos += 2;
	return true;
}

bool
wire_get_u32(struct wire_reader *r, uint32_t *out)
{
	if (wire_remaining(r) < 4)
		return false;
	*out = wire_load_u32(r->data + r->pos);
	r->pos += 4;
	return true;
}

bool
wire_get_u64(struct wire_reader *r, uint64_t *out)
{
	if (wire_remaining(r) < 8)
		return false;
	*out = wire_load_u64(r->data + r->pos);
	r->pos += 8;
	return true;
}

bool
wire_get_i64(struct wire_reader *r, int64_t *out)
{
	uint64_t v;

	if (!wire_get_u64(r, &v))
		return false;
	/* Two's complement reinterpretation without implementation-defined casts. */
	memcpy(out, &v, sizeof(*out));
	return true;
}

bool
wire_get_bytes(struct wire_reader *r, size_t n, const uint8_t **out)
{
	if (wire_remaining(r) < n)
		return false;
	*out = r->data + r->pos;
	r->pos += n;
	return true;
}

bool
wire_get_string(struct wire_reader *r, struct wire_str *out)
{
	size_t start = r->pos;
	uint16_t n;
	const uint8_t *p;

	if (!wire_get_u16(r, &n))
		return false;
	if (!wire_get_bytes(r, n, &p) || (n > 0 && memchr(p, 0, n) != NULL)) {
		r->pos = start;
		return false;
	}
	out->ptr = (const char *)p;
	out->len = n;
	return true;
}

void
wire_get_rest(struct wire_reader *r, const uint8_t **out, size_t *len)
{
	*out = r->data != NULL ? r->data + r->pos : NULL;
	*len = wire_remaining(r);
	r->pos = r->len;
}

bool
wire_str_eq(struct wire_str s, const char *c)
{
	size_t n = strlen(c);

	return n == s.len && (n == 0 || memcmp(s.ptr, c, n) == 0);
}

char *
wire_str_dup(struct wire_str s)
{
	char *d = malloc(s.len + 1);

	if (d == NULL)
		return NULL;
	if (s.len > 0)
		memcpy(d, s.ptr, s.len);
	d[s.len] = '\0';
	return d;
}

void
wire_writer_init(struct wire_writer *w, void *buf, size_t cap)
{
	w->data = buf;
	w->len = 0;
	w->cap = buf != NULL ? cap : 0;
	w->max = w->cap;
	w->heap = false;
	w->failed = false;
}

void
wire_writer_init_heap(struct wire_writer *w, size_t max)
{
	w->data = NULL;
	w->len = 0;
	w->cap = 0;
	w->max = max;
	w->heap = true;
	w->failed = false;
}

void
wire_writer_free(struct wire_writer *w)
{
	if (w->heap) {
		free(w->data);
		w->data = NULL;
		w->cap = 0;
	}
	w->len = 0;
	w->failed = false;
}

void
wire_writer_reset(struct wire_writer *w)
{
	w->len = 0;
	w->failed = false;
}

/* Makes sure n more bytes fit; grows a heap buffer geometrically up to max. */
static bool
wire_room(struct wire_writer *w, size_t n)
{
	size_t want, cap;
	uint8_t *p;

	if (w->failed)
		return false;
	if (n <= w->cap - w->len)
		return true;
	if (!w->heap || n > w->max - w->len)
		goto fail;
	want = w->len + n;
	cap = w->cap < 256 ? 256 : w->cap;
	while (cap < want)
		cap = cap > w->max / 2 ? w->max : cap * 2;
	if (cap > w->max)
		cap = w->max;
	p = realloc(w->data, cap);
	if (p == NULL)
		goto fail;
	w->data = p;
	w->cap = cap;
	return true;
fail:
	w->failed = true;
	return false;
}

bool
wire_put_u8(struct wire_writer *w, uint8_t v)
{
	if (!wire_room(w, 1))
		return false;
	w->data[w->len++] = v;
	return true;
}

bool
wire_put_u16(struct wire_writer *w, uint16_t v)
{
	if (!wire_room(w, 2))
		return false;
	wire_store_u16(w->data + w->len, v);
	w->len += 2;
	return true;
}

bool
wire_put_u32(struct wire_writer *w, uint32_t v)
{
	if (!wire_room(w, 4))
		return false;
	wire_store_u32(w->data + w->len, v);
	w->len += 4;
	return true;
}

bool
wire_put_u64(struct wire_writer *w, uint64_t v)
{
	if (!wire_room(w, 8))
		return false;
	wire_store_u64(w->data + w->len, v);
	w->len += 8;
	return true;
}

bool
wire_put_i64(struct wire_writer *w, int64_t v)
{
	uint64_t u;

	memcpy(&u, &v, sizeof(u));
	return wire_put_u64(w, u);
}

bool
wire_put_bytes(struct wire_writer *w, const void *p, size_t n)
{
	if (!wire_room(w, n))
		return false;
	if (n > 0)
		memcpy(w->data + w->len, p, n);
	w->len += n;
	return true;
}

bool
wire_put_string_n(struct wire_writer *w, const char *s, size_t n)
{
	if (n > WIRE_STRING_MAX || (n > 0 && memchr(s, 0, n) != NULL)) {
		w->failed = true;
		return false;
	}
	if (!wire_room(w, 2 + n))
		return false;
	wire_store_u16(w->data + w->len, (uint16_t)n);
	if (n > 0)
		memcpy(w->data + w->len + 2, s, n);
	w->len += 2 + n;
	return true;
}

bool
wire_put_string(struct wire_writer *w, const char *s)
{
	if (s == NULL) {
		w->failed = true;
		return false;
	}
	return wire_put_string_n(w, s, strlen(s));
}

bool
wire_put_reserve(struct wire_writer *w, size_t n, uint8_t **out)
{
	if (!wire_room(w, n))
		return false;
	*out = w->data != NULL ? w->data + w->len : NULL;
	w->len += n;
	return true;
}

bool
wire_patch_u32(struct wire_writer *w, size_t offset, uint32_t v)
{
	if (offset > w->len || w->len - offset < 4)
		return false;
	wire_store_u32(w->data + offset, v);
	return true;
}
