/*
 * batchpack.c — pgoutput messages packed for zstd, and unpacked (see batchpack.h).
 */
#include "gateway/stream/batchpack.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "replicator/pgoutput.h"

/* An item whose length is 0 is a packed message: a tag follows. */
#define PACK_ESCAPE 0x00
/* A column kind of packed tuples only: a 't' value that is a decimal integer. */
#define PACK_INTEGER 'i'
/* The tuple kind of a change's new row (Insert, Update). */
#define PACK_NEW_TUPLE 'N'
#define BEGIN_LEN 21u
#define COMMIT_LEN 26u
/* Messages at least this long stay unpackable: their varint length would outgrow the u32. */
#define PACK_MESSAGE_LIMIT (1u << 28)
/* The longest decimal integer packed: its value fits 63 bits. */
#define PACK_INTEGER_DIGITS 18u
#define VARINT_MAX 10u

struct batchpack_relation {
	uint32_t key;                /* the four bytes after the type byte */
	uint32_t len;                /* 0: the slot is empty */
	uint8_t *msg;
};

struct batchpack {
	uint64_t end_lsn;            /* the last Commit's end LSN */
	uint64_t begin_lsn;          /* the last Begin's final LSN */
	uint64_t time;               /* the last Begin's or Commit's commit time */
	uint32_t xid;                /* the last Begin's */
	struct batchpack_relation rel[BATCHPACK_RELATIONS];
	uint8_t *buf;                /* output, reused across calls */
	size_t len;
	size_t cap;
};

/* A bounds-checked reader of a packed batch. */
struct reader {
	const uint8_t *p;
	const uint8_t *end;
	const uint8_t *start;
};

/* ------------------------------------------------------------- numbers */

static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t get_be64(const uint8_t *p)
{
	return (uint64_t)get_be32(p) << 32 | get_be32(p + 4);
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static void put_be64(uint8_t *p, uint64_t v)
{
	put_be32(p, (uint32_t)(v >> 32));
	put_be32(p + 4, (uint32_t)v);
}

/* Zigzag: small differences either way become small numbers. */
static uint64_t zz64(uint64_t v)
{
	return (v << 1) ^ (0 - (v >> 63));
}

static uint64_t unzz64(uint64_t z)
{
	return (z >> 1) ^ (0 - (z & 1));
}

static uint32_t zz32(uint32_t v)
{
	return (v << 1) ^ (0u - (v >> 31));
}

static uint32_t unzz32(uint32_t z)
{
	return (z >> 1) ^ (0u - (z & 1));
}

static uint8_t *put_varint(uint8_t *w, uint64_t v)
{
	while (v >= 0x80) {
		*w++ = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	*w++ = (uint8_t)v;
	return w;
}

static size_t varint_len(uint64_t v)
{
	size_t n = 1;

	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

/*
 * A canonical decimal integer — digits, '-' before them or nothing, no
 * leading zero, not "-0", at most PACK_INTEGER_DIGITS — as zz of its value:
 * only such text comes back the same from the number.
 */
static bool text_integer(const uint8_t *s, size_t n, uint64_t *z)
{
	bool neg = n > 0 && s[0] == '-';
	size_t i = neg ? 1 : 0;
	uint64_t mag = 0;

	if (n == i || n - i > PACK_INTEGER_DIGITS || (s[i] == '0' && (neg || n - i > 1)))
		return false;
	for (; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		mag = mag * 10 + (uint64_t)(s[i] - '0');
	}
	*z = neg ? (mag << 1) - 1 : mag << 1;
	return true;
}

/* The decimal text of the integer whose zz is z (at most 21 bytes); its length. */
static size_t integer_text(uint64_t z, uint8_t *s)
{
	uint64_t mag = z & 1 ? (z >> 1) + 1 : z >> 1;
	uint8_t digits[20];
	size_t n = 0, len = 0;

	do {
		digits[n++] = (uint8_t)('0' + mag % 10);
		mag /= 10;
	} while (mag);
	if (z & 1)
		s[len++] = '-';
	while (n)
		s[len++] = digits[--n];
	return len;
}

/* --------------------------------------------------------------- state */

_Static_assert(BATCHPACK_RELATIONS == 256, "relation_slot() takes 8 bits of the hash");

/* Fibonacci hashing: keys that differ in any bits spread over the slots. */
static struct batchpack_relation *relation_slot(struct batchpack *bp, uint32_t key)
{
	return &bp->rel[(uint32_t)(key * 2654435761u) >> 24];
}

/* Keeps a Relation message for later references to it; false: out of memory. */
static bool relation_keep(struct batchpack *bp, const uint8_t *m, size_t n)
{
	struct batchpack_relation *r = relation_slot(bp, get_be32(m + 1));
	uint8_t *msg;

	if (n > BATCHPACK_RELATION_MAX || (r->len == n && memcmp(r->msg, m, n) == 0))
		return true;
	if (!(msg = realloc(r->msg, n)))
		return false;
	memcpy(msg, m, n);
	*r = (struct batchpack_relation){ get_be32(m + 1), (uint32_t)n, msg };
	return true;
}

/* What every Begin, Commit and Relation message of a packed batch does to the state. */
static bool note_message(struct batchpack *bp, const uint8_t *m, size_t n)
{
	if (m[0] == PGOUTPUT_BEGIN && n == BEGIN_LEN) {
		bp->begin_lsn = get_be64(m + 1);
		bp->time = get_be64(m + 9);
		bp->xid = get_be32(m + 17);
	} else if (m[0] == PGOUTPUT_COMMIT && n == COMMIT_LEN) {
		bp->end_lsn = get_be64(m + 10);
		bp->time = get_be64(m + 18);
	} else if (m[0] == PGOUTPUT_RELATION && n >= 5) {
		return relation_keep(bp, m, n);
	}
	return true;
}

struct batchpack *batchpack_new(void)
{
	return calloc(1, sizeof(struct batchpack));
}

void batchpack_reset(struct batchpack *bp)
{
	for (size_t i = 0; i < BATCHPACK_RELATIONS; i++) {
		free(bp->rel[i].msg);
		bp->rel[i] = (struct batchpack_relation){ 0 };
	}
	bp->end_lsn = bp->begin_lsn = bp->time = 0;
	bp->xid = 0;
}

void batchpack_free(struct batchpack *bp)
{
	if (!bp)
		return;
	batchpack_reset(bp);
	free(bp->buf);
	free(bp);
}

/* Room for at least more bytes after len, never beyond max in all. */
static bool out_room(struct batchpack *bp, size_t more, size_t max)
{
	size_t cap = bp->cap ? bp->cap : 64u * 1024u;
	uint8_t *grown;

	if (more > max || bp->len > max - more)
		return false;
	if (bp->cap - bp->len >= more)
		return true;
	while (cap - bp->len < more)
		cap *= 2;
	if (!(grown = realloc(bp->buf, cap)))
		return false;
	bp->buf = grown;
	bp->cap = cap;
	return true;
}

/* ------------------------------------------------------------- packing */

bool batchpack_packable(const uint8_t *body, size_t len)
{
	size_t at = 0;

	while (len - at >= 4) {
		uint32_t n = get_be32(body + at);

		if (n == 0 || n >= PACK_MESSAGE_LIMIT || n > len - at - 4)
			return false;
		at += 4 + (size_t)n;
	}
	return at == len;
}

static uint8_t *pack_plain(const uint8_t *m, size_t n, uint8_t *w)
{
	w = put_varint(w, n);
	memcpy(w, m, n);
	return w + n;
}

/* A packed form is taken only when it is shorter (packing never lengthens a batch). */
static uint8_t *pack_if_shorter(const uint8_t *packed, size_t len, const uint8_t *m, size_t n,
		uint8_t *w)
{
	if (len >= varint_len(n) + n)
		return pack_plain(m, n, w);
	memcpy(w, packed, len);
	return w + len;
}

static uint8_t *pack_begin(const struct batchpack *bp, const uint8_t *m, uint8_t *w)
{
	uint8_t tmp[2 + 3 * VARINT_MAX], *t = tmp;

	*t++ = PACK_ESCAPE;
	*t++ = PGOUTPUT_BEGIN;
	t = put_varint(t, zz64(get_be64(m + 1) - bp->end_lsn));
	t = put_varint(t, zz64(get_be64(m + 9) - bp->time));
	t = put_varint(t, zz32(get_be32(m + 17) - bp->xid));
	return pack_if_shorter(tmp, (size_t)(t - tmp), m, BEGIN_LEN, w);
}

static uint8_t *pack_commit(const struct batchpack *bp, const uint8_t *m, uint8_t *w)
{
	uint8_t tmp[3 + 3 * VARINT_MAX], *t = tmp;
	uint64_t commit_lsn = get_be64(m + 2);

	*t++ = PACK_ESCAPE;
	*t++ = PGOUTPUT_COMMIT;
	*t++ = m[1];
	t = put_varint(t, zz64(commit_lsn - bp->begin_lsn));
	t = put_varint(t, zz64(get_be64(m + 10) - commit_lsn));
	t = put_varint(t, zz64(get_be64(m + 18) - bp->time));
	return pack_if_shorter(tmp, (size_t)(t - tmp), m, COMMIT_LEN, w);
}

/* A Relation message the stream carried before, unchanged: its key. NULL: not so. */
static uint8_t *pack_relation(struct batchpack *bp, const uint8_t *m, size_t n, uint8_t *w)
{
	const struct batchpack_relation *r = relation_slot(bp, get_be32(m + 1));

	if (r->len != n || r->key != get_be32(m + 1) || memcmp(r->msg, m, n) != 0)
		return NULL;
	*w++ = PACK_ESCAPE;
	*w++ = PGOUTPUT_RELATION;
	memcpy(w, m + 1, 4);
	return w + 4;
}

/* One tuple's columns from *r (ending at end) into *w; false: not a tuple. */
static bool pack_tuple(const uint8_t **r, const uint8_t *end, uint8_t **w)
{
	const uint8_t *p = *r;
	uint8_t *q = *w;
	unsigned ncols;

	if (end - p < 2)
		return false;
	ncols = (unsigned)p[0] << 8 | p[1];
	memcpy(q, p, 2);
	p += 2;
	q += 2;
	for (unsigned c = 0; c < ncols; c++) {
		uint8_t kind;
		uint32_t len;
		uint64_t z;

		if (p == end)
			return false;
		kind = *p++;
		if (kind == PGOUTPUT_VALUE_NULL || kind == PGOUTPUT_VALUE_UNCHANGED) {
			*q++ = kind;
			continue;
		}
		if ((kind != PGOUTPUT_VALUE_TEXT && kind != PGOUTPUT_VALUE_BINARY) || end - p < 4 ||
		    (len = get_be32(p)) > (size_t)(end - p - 4))
			return false;
		p += 4;
		if (kind == PGOUTPUT_VALUE_TEXT && text_integer(p, len, &z)) {
			*q++ = PACK_INTEGER;
			q = put_varint(q, z);
		} else {
			*q++ = kind;
			q = put_varint(q, len);
			memcpy(q, p, len);
			q += len;
		}
		p += len;
	}
	*r = p;
	*w = q;
	return true;
}

/* Whether kind may start a change's tuples; *more: an 'N' tuple must follow it. */
static bool change_first_kind(uint8_t type, uint8_t kind, bool *more)
{
	bool old = kind == PGOUTPUT_OLD_KEY || kind == PGOUTPUT_OLD_FULL;

	*more = type == PGOUTPUT_UPDATE && old;
	if (type == PGOUTPUT_INSERT)
		return kind == PACK_NEW_TUPLE;
	if (type == PGOUTPUT_UPDATE)
		return old || kind == PACK_NEW_TUPLE;
	return type == PGOUTPUT_DELETE && old;
}

/* An Insert, Update or Delete whose tuples start h bytes after its type byte. NULL: not so. */
static uint8_t *pack_change_at(const uint8_t *m, size_t n, size_t h, uint8_t *w)
{
	const uint8_t *r = m + 1 + h, *end = m + n;
	bool more;

	if (n < 2 + h || !change_first_kind(m[0], *r, &more))
		return NULL;
	*w++ = PACK_ESCAPE;
	*w++ = m[0];
	*w++ = (uint8_t)h;
	memcpy(w, m + 1, h);
	w += h;
	do {
		*w++ = *r++;
		if (!pack_tuple(&r, end, &w))
			return NULL;
		if (!more)
			break;
		if (r == end || *r != PACK_NEW_TUPLE)
			return NULL;
		more = false;
	} while (true);
	return r == end ? w : NULL;
}

static uint8_t *pack_message(struct batchpack *bp, const uint8_t *m, size_t n, uint8_t *w)
{
	uint8_t *packed = NULL;

	switch (m[0]) {
	case PGOUTPUT_BEGIN:
		return n == BEGIN_LEN ? pack_begin(bp, m, w) : pack_plain(m, n, w);
	case PGOUTPUT_COMMIT:
		return n == COMMIT_LEN ? pack_commit(bp, m, w) : pack_plain(m, n, w);
	case PGOUTPUT_RELATION:
		packed = n >= 5 ? pack_relation(bp, m, n, w) : NULL;
		break;
	case PGOUTPUT_INSERT:
	case PGOUTPUT_UPDATE:
	case PGOUTPUT_DELETE:
		/* outside a streamed block the OID comes first, inside one the xid */
		if (!(packed = pack_change_at(m, n, 4, w)))
			packed = pack_change_at(m, n, 8, w);
		break;
	default:
		break;
	}
	return packed ? packed : pack_plain(m, n, w);
}

bool batchpack_pack(struct batchpack *bp, const uint8_t *body, size_t len,
		const uint8_t **out, size_t *out_len)
{
	size_t at = 0;
	uint8_t *w;

	bp->len = 0;
	/* a packed message is never longer than its plain form: len will do (and a tuple's slack) */
	if (!out_room(bp, len + 16, SIZE_MAX))
		return false;
	w = bp->buf;
	while (at < len) {
		const uint8_t *m = body + at + 4;
		size_t n = get_be32(body + at);

		w = pack_message(bp, m, n, w);
		if (!note_message(bp, m, n))
			return false;
		at += 4 + n;
	}
	*out = bp->buf;
	*out_len = (size_t)(w - bp->buf);
	return true;
}

/* ----------------------------------------------------------- unpacking */

static bool get_u8(struct reader *r, uint8_t *v)
{
	if (r->p == r->end)
		return false;
	*v = *r->p++;
	return true;
}

static bool get_bytes(struct reader *r, uint64_t n, const uint8_t **p)
{
	if (n > (uint64_t)(r->end - r->p))
		return false;
	*p = r->p;
	r->p += n;
	return true;
}

static bool get_varint(struct reader *r, uint64_t *v)
{
	uint64_t x = 0;

	for (unsigned i = 0; i < VARINT_MAX; i++) {
		uint8_t b;

		if (!get_u8(r, &b) || (i == VARINT_MAX - 1 && b > 1))
			return false;
		x |= (uint64_t)(b & 0x7f) << (7 * i);
		if (!(b & 0x80)) {
			*v = x;
			return true;
		}
	}
	return false;
}

/* What went wrong where, for the error message. */
enum unpack_error {
	UNPACK_TRUNCATED,
	UNPACK_TOO_BIG,
	UNPACK_NO_MEMORY,
	UNPACK_UNKNOWN_TAG,
	UNPACK_BAD_TUPLE,
	UNPACK_NO_RELATION,
};

struct unpacker {
	struct batchpack *bp;
	struct reader in;
	size_t max;
	enum unpack_error error;
};

static bool fail(struct unpacker *u, enum unpack_error e)
{
	u->error = e;
	return false;
}

/* Room for n more output bytes: false (noted) when over max or out of memory. */
static bool room(struct unpacker *u, uint64_t n)
{
	if (n > u->max || u->bp->len > u->max - n)
		return fail(u, UNPACK_TOO_BIG);
	return out_room(u->bp, (size_t)n, u->max) || fail(u, UNPACK_NO_MEMORY);
}

static bool emit(struct unpacker *u, const void *p, size_t n)
{
	if (!room(u, n))
		return false;
	memcpy(u->bp->buf + u->bp->len, p, n);
	u->bp->len += n;
	return true;
}

static bool emit_be32(struct unpacker *u, uint32_t v)
{
	uint8_t b[4];

	put_be32(b, v);
	return emit(u, b, 4);
}

static bool emit_be64(struct unpacker *u, uint64_t v)
{
	uint8_t b[8];

	put_be64(b, v);
	return emit(u, b, 8);
}

static bool read_varint(struct unpacker *u, uint64_t *v)
{
	return get_varint(&u->in, v) || fail(u, UNPACK_TRUNCATED);
}

static bool read_u8(struct unpacker *u, uint8_t *v)
{
	return get_u8(&u->in, v) || fail(u, UNPACK_TRUNCATED);
}

static bool read_bytes(struct unpacker *u, uint64_t n, const uint8_t **p)
{
	return get_bytes(&u->in, n, p) || fail(u, UNPACK_TRUNCATED);
}

static bool unpack_begin(struct unpacker *u)
{
	const struct batchpack *bp = u->bp;
	uint64_t lsn, time, xid;
	uint8_t type = PGOUTPUT_BEGIN;

	if (!read_varint(u, &lsn) || !read_varint(u, &time) || !read_varint(u, &xid))
		return false;
	if (xid > UINT32_MAX)
		return fail(u, UNPACK_BAD_TUPLE);
	return emit(u, &type, 1) && emit_be64(u, bp->end_lsn + unzz64(lsn)) &&
	       emit_be64(u, bp->time + unzz64(time)) && emit_be32(u, bp->xid + unzz32((uint32_t)xid));
}

static bool unpack_commit(struct unpacker *u)
{
	const struct batchpack *bp = u->bp;
	uint64_t commit_lsn, end_lsn, time;
	uint8_t head[2] = { PGOUTPUT_COMMIT, 0 };

	if (!read_u8(u, &head[1]) || !read_varint(u, &commit_lsn) || !read_varint(u, &end_lsn) ||
	    !read_varint(u, &time))
		return false;
	commit_lsn = bp->begin_lsn + unzz64(commit_lsn);
	return emit(u, head, 2) && emit_be64(u, commit_lsn) &&
	       emit_be64(u, commit_lsn + unzz64(end_lsn)) && emit_be64(u, bp->time + unzz64(time));
}

static bool unpack_relation(struct unpacker *u)
{
	const struct batchpack_relation *r;
	const uint8_t *key;

	if (!read_bytes(u, 4, &key))
		return false;
	r = relation_slot(u->bp, get_be32(key));
	if (!r->len || r->key != get_be32(key))
		return fail(u, UNPACK_NO_RELATION);
	return emit(u, r->msg, r->len);
}

static bool unpack_column(struct unpacker *u)
{
	uint8_t kind, text[24];
	uint64_t v;
	const uint8_t *p;

	if (!read_u8(u, &kind))
		return false;
	switch (kind) {
	case PGOUTPUT_VALUE_NULL:
	case PGOUTPUT_VALUE_UNCHANGED:
		return emit(u, &kind, 1);
	case PACK_INTEGER: {
		size_t len;

		if (!read_varint(u, &v))
			return false;
		len = integer_text(v, text);
		kind = PGOUTPUT_VALUE_TEXT;
		return emit(u, &kind, 1) && emit_be32(u, (uint32_t)len) && emit(u, text, len);
	}
	case PGOUTPUT_VALUE_TEXT:
	case PGOUTPUT_VALUE_BINARY:
		if (!read_varint(u, &v) || !read_bytes(u, v, &p))
			return false;
		if (v > UINT32_MAX)
			return fail(u, UNPACK_BAD_TUPLE);
		return emit(u, &kind, 1) && emit_be32(u, (uint32_t)v) && emit(u, p, (size_t)v);
	default:
		return fail(u, UNPACK_BAD_TUPLE);
	}
}

static bool unpack_tuple(struct unpacker *u)
{
	const uint8_t *ncols;

	if (!read_bytes(u, 2, &ncols) || !emit(u, ncols, 2))
		return false;
	for (unsigned c = 0, n = (unsigned)ncols[0] << 8 | ncols[1]; c < n; c++)
		if (!unpack_column(u))
			return false;
	return true;
}

static bool unpack_change(struct unpacker *u, uint8_t type)
{
	const uint8_t *head;
	uint8_t h, kind;
	bool more;

	if (!read_u8(u, &h))
		return false;
	if (h != 4 && h != 8)
		return fail(u, UNPACK_BAD_TUPLE);
	if (!read_bytes(u, h, &head) || !emit(u, &type, 1) || !emit(u, head, h) || !read_u8(u, &kind))
		return false;
	if (!change_first_kind(type, kind, &more))
		return fail(u, UNPACK_BAD_TUPLE);
	if (!emit(u, &kind, 1) || !unpack_tuple(u))
		return false;
	if (!more)
		return true;
	if (!read_u8(u, &kind))
		return false;
	if (kind != PACK_NEW_TUPLE)
		return fail(u, UNPACK_BAD_TUPLE);
	return emit(u, &kind, 1) && unpack_tuple(u);
}

static bool unpack_packed(struct unpacker *u)
{
	uint8_t tag;

	if (!read_u8(u, &tag))
		return false;
	switch (tag) {
	case PGOUTPUT_BEGIN:
		return unpack_begin(u);
	case PGOUTPUT_COMMIT:
		return unpack_commit(u);
	case PGOUTPUT_RELATION:
		return unpack_relation(u);
	case PGOUTPUT_INSERT:
	case PGOUTPUT_UPDATE:
	case PGOUTPUT_DELETE:
		return unpack_change(u, tag);
	default:
		return fail(u, UNPACK_UNKNOWN_TAG);
	}
}

/* One item: its message, length first, appended to the output; then noted. */
static bool unpack_item(struct unpacker *u)
{
	size_t at = u->bp->len, n;
	uint64_t plain;
	const uint8_t *p;

	if (!room(u, 4))
		return false;
	u->bp->len += 4;
	if (!read_varint(u, &plain))
		return false;
	if (plain == 0) {
		if (!unpack_packed(u))
			return false;
	} else if (!read_bytes(u, plain, &p) || !emit(u, p, (size_t)plain)) {
		return false;
	}
	if (u->bp->len - at - 4 > UINT32_MAX)
		return fail(u, UNPACK_TOO_BIG);
	n = u->bp->len - at - 4;
	put_be32(u->bp->buf + at, (uint32_t)n);
	return note_message(u->bp, u->bp->buf + at + 4, n) || fail(u, UNPACK_NO_MEMORY);
}

static void unpack_describe(const struct unpacker *u, char *err, size_t errlen)
{
	static const char *const what[] = {
		[UNPACK_TRUNCATED] = "ends inside an item",
		[UNPACK_TOO_BIG] = "unpacks beyond the batch's size",
		[UNPACK_NO_MEMORY] = "out of memory",
		[UNPACK_UNKNOWN_TAG] = "has an unknown packed message",
		[UNPACK_BAD_TUPLE] = "has a malformed packed message",
		[UNPACK_NO_RELATION] = "refers to a Relation message the stream did not carry",
	};

	snprintf(err, errlen, "packed batch %s (at byte %zu of %zu)", what[u->error],
		 (size_t)(u->in.p - u->in.start), (size_t)(u->in.end - u->in.start));
}

bool batchpack_unpack(struct batchpack *bp, const uint8_t *in, size_t len, size_t max,
		const uint8_t **out, size_t *out_len, char *err, size_t errlen)
{
	struct unpacker u = { bp, { in, in + len, in }, max, UNPACK_TRUNCATED };

	bp->len = 0;
	while (u.in.p < u.in.end) {
		if (!unpack_item(&u)) {
			unpack_describe(&u, err, errlen);
			return false;
		}
	}
	*out = bp->buf ? bp->buf : (const uint8_t *)"";
	*out_len = bp->len;
	return true;
}
