/*
 * wire.h — bounds-checked readers and writers for the relay link's payload
 * fields. Every integer is big-endian, like PostgreSQL's protocol; a string is
 * a u16 byte count followed by that many bytes (no terminating NUL, no NUL
 * inside).
 *
 * Reader: wire_get_*() return false when the field does not fit in what is
 * left (or, for strings, is malformed) and then leave the position where it
 * was. Nothing is copied: bytes and strings come back as pointers into the
 * reader's buffer, valid as long as that buffer is.
 *
 * Writer: writes into a caller buffer of fixed size, or into a heap buffer it
 * grows up to a limit. wire_put_*() return false when the value does not fit;
 * the failure is also sticky (wire_writer_ok() turns false and later puts do
 * nothing), so an encoder may write every field and check once at the end.
 */
#ifndef STRAIT_WIRE_H
#define STRAIT_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WIRE_MUSTCHECK __attribute__((warn_unused_result))

/* Longest string a u16 length can describe. */
#define WIRE_STRING_MAX 65535u

/* A string field: pointer into the wire buffer and its length, not NUL-terminated. */
struct wire_str {
	const char *ptr;
	size_t len;
};

/* ---- reader ---- */

struct wire_reader {
	const uint8_t *data;
	size_t len;
	size_t pos;
};

void wire_reader_init(struct wire_reader *r, const void *buf, size_t len);

static inline size_t
wire_remaining(const struct wire_reader *r)
{
	return r->len - r->pos;
}

bool wire_get_u8(struct wire_reader *r, uint8_t *out) WIRE_MUSTCHECK;
bool wire_get_u16(struct wire_reader *r, uint16_t *out) WIRE_MUSTCHECK;
bool wire_get_u32(struct wire_reader *r, uint32_t *out) WIRE_MUSTCHECK;
bool wire_get_u64(struct wire_reader *r, uint64_t *out) WIRE_MUSTCHECK;
bool wire_get_i64(struct wire_reader *r, int64_t *out) WIRE_MUSTCHECK;
/* n bytes, returned in place (*out points into the buffer). */
bool wire_get_bytes(struct wire_reader *r, size_t n, const uint8_t **out) WIRE_MUSTCHECK;
/* A u16-length string; false on underrun or when it contains a NUL byte. */
bool wire_get_string(struct wire_reader *r, struct wire_str *out) WIRE_MUSTCHECK;
/* Everything that is left (possibly nothing); the reader ends up at the end. */
void wire_get_rest(struct wire_reader *r, const uint8_t **out, size_t *len);

/* Whether s equals the NUL-terminated c. */
bool wire_str_eq(struct wire_str s, const char *c);
/* A NUL-terminated heap copy of s (caller frees), NULL when out of memory. */
char *wire_str_dup(struct wire_str s);

/* ---- writer ---- */

struct wire_writer {
	uint8_t *data;
	size_t len;
	size_t cap;
	size_t max;         /* growth limit of a heap buffer */
	bool heap;          /* data is ours: grown with realloc, freed by wire_writer_free */
	bool failed;        /* sticky: something did not fit */
};

/* Writes into buf[0..cap); the writer never frees it. */
void wire_writer_init(struct wire_writer *w, void *buf, size_t cap);
/* Writes into a heap buffer grown on demand up to max bytes. */
void wire_writer_init_heap(struct wire_writer *w, size_t max);
/* Frees a heap writer's buffer (no-op for a fixed one); the writer is then empty. */
void wire_writer_free(struct wire_writer *w);
/* Forgets the contents and the failure, keeps the buffer. */
void wire_writer_reset(struct wire_writer *w);

static inline bool
wire_writer_ok(const struct wire_writer *w)
{
	return !w->failed;
}

bool wire_put_u8(struct wire_writer *w, uint8_t v);
bool wire_put_u16(struct wire_writer *w, uint16_t v);
bool wire_put_u32(struct wire_writer *w, uint32_t v);
bool wire_put_u64(struct wire_writer *w, uint64_t v);
bool wire_put_i64(struct wire_writer *w, int64_t v);
bool wire_put_bytes(struct wire_writer *w, const void *p, size_t n);
/* A u16-length string; fails when longer than WIRE_STRING_MAX or s holds a NUL. */
bool wire_put_string_n(struct wire_writer *w, const char *s, size_t n);
/* The same for a NUL-terminated string. */
bool wire_put_string(struct wire_writer *w, const char *s);
/*
 * Makes room for n bytes the caller fills in itself (e.g. a compressor
 * writing in place): *out points at them. The pointer is valid until the
 * next put on a heap writer.
 */
bool wire_put_reserve(struct wire_writer *w, size_t n, uint8_t **out);
/* Overwrites 4 bytes already written at offset; false when out of range. */
bool wire_patch_u32(struct wire_writer *w, size_t offset, uint32_t v);

/* Raw big-endian helpers for fixed headers. */
static inline uint16_t
wire_load_u16(const uint8_t *p)
{
	return (uint16_t)((uint16_t)p[0] << 8 | p[1]);
}

static inline uint32_t
wire_load_u32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
		(uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static inline uint64_t
wire_load_u64(const uint8_t *p)
{
	return (uint64_t)wire_load_u32(p) << 32 | wire_load_u32(p + 4);
}

static inline void
wire_store_u16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline void
wire_store_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static inline void
wire_store_u64(uint8_t *p, uint64_t v)
{
	wire_store_u32(p, (uint32_t)(v >> 32));
	wire_store_u32(p + 4, (uint32_t)v);
}

#endif
