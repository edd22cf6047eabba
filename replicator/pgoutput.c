/*
 * pgoutput.c — zero-copy decoder of pgoutput messages (protocols 1 and 2),
 * the START_REPLICATION CopyData envelope, the standby status update, and the
 * relation cache. The design notes are in pgoutput.h.
 *
 * Each message's reader is a case of rd_body() or rd_txn_body(); they share
 * a small cursor (struct rd) whose readers fail, recording where, instead of
 * reading past the end. The first failure ends the decode.
 */
#include "replicator/pgoutput.h"

#include <stdlib.h>
#include <string.h>

/* ---- cursor ---- */

struct rd {
	const uint8_t *p;
	size_t len;
	size_t pos;
	enum pgoutput_status err;   /* first failure */
	size_t err_pos;
};

static bool
rd_fail(struct rd *r, enum pgoutput_status st)
{
	if (r->err == PGOUTPUT_OK) {
		r->err = st;
		r->err_pos = r->pos;
	}
	return false;
}

static inline size_t
rd_left(const struct rd *r)
{
	return r->len - r->pos;
}

static inline bool
rd_u8(struct rd *r, uint8_t *v)
{
	if (rd_left(r) < 1)
		return rd_fail(r, PGOUTPUT_ERR_TRUNCATED);
	*v = r->p[r->pos++];
	return true;
}

static inline bool
rd_u16(struct rd *r, uint16_t *v)
{
	if (rd_left(r) < 2)
		return rd_fail(r, PGOUTPUT_ERR_TRUNCATED);
	*v = (uint16_t)((uint16_t)r->p[r->pos] << 8 | r->p[r->pos + 1]);
	r->pos += 2;
	return true;
}

static inline bool
rd_u32(struct rd *r, uint32_t *v)
{
	const uint8_t *q;

	if (rd_left(r) < 4)
		return rd_fail(r, PGOUTPUT_ERR_TRUNCATED);
	q = r->p + r->pos;
	*v = (uint32_t)q[0] << 24 | (uint32_t)q[1] << 16 |
		(uint32_t)q[2] << 8 | (uint32_t)q[3];
	r->pos += 4;
	return true;
}

static inline bool
rd_i32(struct rd *r, int32_t *v)
{
	uint32_t u;

	if (!rd_u32(r, &u))
		return false;
	memcpy(v, &u, sizeof(*v));
	return true;
}

static inline bool
rd_u64(struct rd *r, uint64_t *v)
{
	const uint8_t *q;
	uint64_t x = 0;

	if (rd_left(r) < 8)
		return rd_fail(r, PGOUTPUT_ERR_TRUNCATED);
	q = r->p + r->pos;
	for (int i = 0; i < 8; i++)
		x = x << 8 | q[i];
	*v = x;
	r->pos += 8;
	return true;
}

static inline bool
rd_i64(struct rd *r, int64_t *v)
{
	uint64_t u;

	if (!rd_u64(r, &u))
		return false;
	memcpy(v, &u, sizeof(*v));
	return true;
}

/* A NUL-terminated string in place. */
static inline bool
rd_str(struct rd *r, const char **s)
{
	const uint8_t *nul;

	if (rd_left(r) == 0)
		return rd_fail(r, PGOUTPUT_ERR_TRUNCATED);
	nul = memchr(r->p + r->pos, 0, rd_left(r));
	if (nul == NULL)
		return rd_fail(r, PGOUTPUT_ERR_TRUNCATED);
	*s = (const char *)(r->p + r->pos);
	r->pos = (size_t)(nul - r->p) + 1;
	return true;
}

static inline bool
rd_bytes(struct rd *r, size_t n, const uint8_t **out)
{
	if (rd_left(r) < n)
		return rd_fail(r, PGOUTPUT_ERR_TRUNCATED);
	*out = r->p + r->pos;
	r->pos += n;
	return true;
}

/* ---- names ---- */

const char *
pgoutput_status_str(enum pgoutput_status st)
{
	switch (st) {
	case PGOUTPUT_OK:                   return "ok";
	case PGOUTPUT_ERR_EMPTY:            return "empty message";
	case PGOUTPUT_ERR_UNKNOWN_TYPE:     return "unknown message type";
	case PGOUTPUT_ERR_TRUNCATED:        return "message truncated";
	case PGOUTPUT_ERR_TRAILING:         return "trailing bytes after message";
	case PGOUTPUT_ERR_FLAGS:            return "undefined flag bits";
	case PGOUTPUT_ERR_VALUE:            return "field value out of range";
	case PGOUTPUT_ERR_TUPLE_MARKER:     return "bad tuple marker";
	case PGOUTPUT_ERR_COLUMN_KIND:      return "bad column kind";
	case PGOUTPUT_ERR_TOO_MANY_COLUMNS: return "too many columns";
	case PGOUTPUT_ERR_STATE:            return "message out of order for the stream state";
	case PGOUTPUT_ERR_COPY_TYPE:        return "unknown CopyData message type";
	}
	return "unknown pgoutput status";
}

const char *
pgoutput_msg_type_name(unsigned type)
{
	switch (type) {
	case PGOUTPUT_BEGIN:         return "BEGIN";
	case PGOUTPUT_COMMIT:        return "COMMIT";
	case PGOUTPUT_ORIGIN:        return "ORIGIN";
	case PGOUTPUT_RELATION:      return "RELATION";
	case PGOUTPUT_TYPE:          return "TYPE";
	case PGOUTPUT_INSERT:        return "INSERT";
	case PGOUTPUT_UPDATE:        return "UPDATE";
	case PGOUTPUT_DELETE:        return "DELETE";
	case PGOUTPUT_TRUNCATE:      return "TRUNCATE";
	case PGOUTPUT_MESSAGE:       return "MESSAGE";
	case PGOUTPUT_STREAM_START:  return "STREAM START";
	case PGOUTPUT_STREAM_STOP:   return "STREAM STOP";
	case PGOUTPUT_STREAM_COMMIT: return "STREAM COMMIT";
	case PGOUTPUT_STREAM_ABORT:  return "STREAM ABORT";
	default:                     return "unknown";
	}
}

/* ---- decoder ---- */

bool
pgoutput_decoder_init(struct pgoutput_decoder *d, int proto_version)
{
	memset(d, 0, sizeof(*d));
	if (proto_version != 1 && proto_version != 2)
		return false;
	d->proto_version = proto_version;
	return true;
}

/*
 * TupleData: Int16 column count, then per column a kind byte and, for text
 * and binary values, Int32 length + bytes. Columns go to cols[*used..].
 */
static bool
rd_tuple(struct rd *r, struct pgoutput_tuple *t, struct pgoutput_value *cols,
		size_t max_cols, size_t *used)
{
	uint16_t n;

	if (!rd_u16(r, &n))
		return false;
	/* Every column takes at least its kind byte. */
	if (n > rd_left(r))
		return rd_fail(r, PGOUTPUT_ERR_TRUNCATED);
	if (n > max_cols - *used)
		return rd_fail(r, PGOUTPUT_ERR_TOO_MANY_COLUMNS);
	t->ncols = n;
	t->cols = n > 0 ? cols + *used : NULL;
	for (uint16_t i = 0; i < n; i++) {
		struct pgoutput_value *v = &cols[*used + i];
		uint8_t kind;

		if (!rd_u8(r, &kind))
			return false;
		v->kind = (char)kind;
		v->len = 0;
		v->data = NULL;
		switch (kind) {
		case PGOUTPUT_VALUE_NULL:
		case PGOUTPUT_VALUE_UNCHANGED:
			break;
		case PGOUTPUT_VALUE_TEXT:
		case PGOUTPUT_VALUE_BINARY:
			if (!rd_u32(r, &v->len) || !rd_bytes(r, v->len, &v->data))
				return false;
			break;
		default:
			r->pos--;
			return rd_fail(r, PGOUTPUT_ERR_COLUMN_KIND);
		}
	}
	*used += n;
	return true;
}

/* The xid that streamed changes carry in protocol 2. */
static bool
rd_stream_xid(struct rd *r, const struct pgoutput_decoder *d,
		struct pgoutput_msg *m)
{
	if (!d->in_stream)
		return true;
	m->has_xid = true;
	return rd_u32(r, &m->xid);
}

static bool
valid_replident(uint8_t c)
{
	return c == PGOUTPUT_REPLIDENT_DEFAULT || c == PGOUTPUT_REPLIDENT_NOTHING ||
		c == PGOUTPUT_REPLIDENT_FULL || c == PGOUTPUT_REPLIDENT_INDEX;
}

static bool
rd_relation(struct rd *r, struct pgoutput_msg *m)
{
	uint8_t ident;
	size_t start;

	if (!rd_u32(r, &m->relation.oid) ||
			!rd_str(r, &m->relation.nspname) ||
			!rd_str(r, &m->relation.relname) ||
			!rd_u8(r, &ident))
		return false;
	if (!valid_replident(ident)) {
		r->pos--;
		return rd_fail(r, PGOUTPUT_ERR_VALUE);
	}
	m->relation.replident = (char)ident;
	if (!rd_u16(r, &m->relation.natts))
		return false;
	start = r->pos;
	for (uint16_t i = 0; i < m->relation.natts; i++) {
		uint8_t flags;
		const char *name;
		uint32_t typ;
		int32_t typmod;

		if (!rd_u8(r, &flags))
			return false;
		if ((flags & ~PGOUTPUT_ATTR_KEY) != 0) {
			r->pos--;
			return rd_fail(r, PGOUTPUT_ERR_FLAGS);
		}
		if (!rd_str(r, &name) || !rd_u32(r, &typ) || !rd_i32(r, &typmod))
			return false;
	}
	m->relation.attrs = r->p + start;
	m->relation.attrs_len = r->pos - start;
	return true;
}

/* 'N' then the new tuple. */
static bool
rd_new_tuple(struct rd *r, struct pgoutput_tuple *t, struct pgoutput_value *cols,
		size_t max_cols, size_t *used)
{
	uint8_t marker;

	if (!rd_u8(r, &marker))
		return false;
	if (marker != 'N') {
		r->pos--;
		return rd_fail(r, PGOUTPUT_ERR_TUPLE_MARKER);
	}
	return rd_tuple(r, t, cols, max_cols, used);
}

static bool
rd_update(struct rd *r, struct pgoutput_msg *m, struct pgoutput_value *cols,
		size_t max_cols)
{
	size_t used = 0;
	uint8_t marker;

	if (!rd_u32(r, &m->update.relid) || !rd_u8(r, &marker))
		return false;
	switch (marker) {
	case PGOUTPUT_OLD_KEY:
	case PGOUTPUT_OLD_FULL:
		m->update.old_kind = (char)marker;
		if (!rd_tuple(r, &m->update.oldtup, cols, max_cols, &used))
			return false;
		break;
	case 'N':
		m->update.old_kind = PGOUTPUT_OLD_NONE;
		r->pos--;
		break;
	default:
		r->pos--;
		return rd_fail(r, PGOUTPUT_ERR_TUPLE_MARKER);
	}
	return rd_new_tuple(r, &m->update.newtup, cols, max_cols, &used);
}

static bool
rd_delete(struct rd *r, struct pgoutput_msg *m, struct pgoutput_value *cols,
		size_t max_cols)
{
	size_t used = 0;
	uint8_t marker;

	if (!rd_u32(r, &m->delete.relid) || !rd_u8(r, &marker))
		return false;
	if (marker != PGOUTPUT_OLD_KEY && marker != PGOUTPUT_OLD_FULL) {
		r->pos--;
		return rd_fail(r, PGOUTPUT_ERR_TUPLE_MARKER);
	}
	m->delete.old_kind = (char)marker;
	return rd_tuple(r, &m->delete.oldtup, cols, max_cols, &used);
}

static bool
rd_truncate(struct rd *r, struct pgoutput_msg *m)
{
	if (!rd_u32(r, &m->truncate.nrelids) || !rd_u8(r, &m->truncate.options))
		return false;
	if ((m->truncate.options &
			~(PGOUTPUT_TRUNCATE_CASCADE | PGOUTPUT_TRUNCATE_RESTART_SEQS)) != 0) {
		r->pos--;
		return rd_fail(r, PGOUTPUT_ERR_FLAGS);
	}
	/* Compare without multiplying, so a huge count cannot overflow. */
	if (m->truncate.nrelids > rd_left(r) / 4)
		return rd_fail(r, PGOUTPUT_ERR_TRUNCATED);
	return rd_bytes(r, (size_t)m->truncate.nrelids * 4, &m->truncate.relids);
}

static bool
rd_message(struct rd *r, struct pgoutput_msg *m)
{
	if (!rd_u8(r, &m->message.flags))
		return false;
	if ((m->message.flags & ~PGOUTPUT_MESSAGE_TRANSACTIONAL) != 0) {
		r->pos--;
		return rd_fail(r, PGOUTPUT_ERR_FLAGS);
	}
	return rd_u64(r, &m->message.lsn) &&
		rd_str(r, &m->message.prefix) &&
		rd_u32(r, &m->message.content_len) &&
		rd_bytes(r, m->message.content_len, &m->message.content);
}

/* Commit and Stream Commit flags: "currently unused (must be 0)". */
static bool
rd_commit_flags(struct rd *r, uint8_t *flags)
{
	if (!rd_u8(r, flags))
		return false;
	if (*flags != 0) {
		r->pos--;
		return rd_fail(r, PGOUTPUT_ERR_FLAGS);
	}
	return true;
}

/*
 * The body of a message that begins, ends or brackets a transaction, into m
 * (a failure recorded in r); PGOUTPUT_ERR_UNKNOWN_TYPE or PGOUTPUT_ERR_STATE
 * when the type is not one or comes out of order.
 */
static enum pgoutput_status
rd_txn_body(struct rd *r, const struct pgoutput_decoder *d, uint8_t type,
		struct pgoutput_msg *m)
{
	bool v2 = d->proto_version >= 2;
	uint8_t first;

	switch (type) {
	case PGOUTPUT_BEGIN:
		if (d->in_stream)
			return PGOUTPUT_ERR_STATE;
		(void)(rd_u64(r, &m->begin.final_lsn) &&
			rd_i64(r, &m->begin.commit_time) &&
			rd_u32(r, &m->begin.xid));
		return PGOUTPUT_OK;
	case PGOUTPUT_COMMIT:
		if (d->in_stream)
			return PGOUTPUT_ERR_STATE;
		(void)(rd_commit_flags(r, &m->commit.flags) &&
			rd_u64(r, &m->commit.commit_lsn) &&
			rd_u64(r, &m->commit.end_lsn) &&
			rd_i64(r, &m->commit.commit_time));
		return PGOUTPUT_OK;
	case PGOUTPUT_STREAM_START:
		if (!v2)
			return PGOUTPUT_ERR_UNKNOWN_TYPE;
		if (d->in_stream)
			return PGOUTPUT_ERR_STATE;
		if (rd_u32(r, &m->stream_start.xid) && rd_u8(r, &first)) {
			if (first > 1) {
				r->pos--;
				rd_fail(r, PGOUTPUT_ERR_VALUE);
			}
			m->stream_start.first_segment = first == 1;
		}
		return PGOUTPUT_OK;
	case PGOUTPUT_STREAM_STOP:
		if (!v2)
			return PGOUTPUT_ERR_UNKNOWN_TYPE;
		return d->in_stream ? PGOUTPUT_OK : PGOUTPUT_ERR_STATE;
	case PGOUTPUT_STREAM_COMMIT:
		if (!v2)
			return PGOUTPUT_ERR_UNKNOWN_TYPE;
		if (d->in_stream)
			return PGOUTPUT_ERR_STATE;
		(void)(rd_u32(r, &m->stream_commit.xid) &&
			rd_commit_flags(r, &m->stream_commit.flags) &&
			rd_u64(r, &m->stream_commit.commit_lsn) &&
			rd_u64(r, &m->stream_commit.end_lsn) &&
			rd_i64(r, &m->stream_commit.commit_time));
		return PGOUTPUT_OK;
	case PGOUTPUT_STREAM_ABORT:
		if (!v2)
			return PGOUTPUT_ERR_UNKNOWN_TYPE;
		if (d->in_stream)
			return PGOUTPUT_ERR_STATE;
		(void)(rd_u32(r, &m->stream_abort.xid) &&
			rd_u32(r, &m->stream_abort.subxid));
		return PGOUTPUT_OK;
	default:
		return PGOUTPUT_ERR_UNKNOWN_TYPE;
	}
}

/*
 * The body of a message of type into m (a failure recorded in r): the
 * messages within a transaction here, the others by rd_txn_body().
 */
static enum pgoutput_status
rd_body(struct rd *r, const struct pgoutput_decoder *d, uint8_t type,
		struct pgoutput_msg *m, struct pgoutput_value *cols, size_t max_cols, size_t *used)
{
	switch (type) {
	case PGOUTPUT_ORIGIN:
		(void)(rd_u64(r, &m->origin.commit_lsn) &&
			rd_str(r, &m->origin.name));
		return PGOUTPUT_OK;
	case PGOUTPUT_RELATION:
		(void)(rd_stream_xid(r, d, m) && rd_relation(r, m));
		return PGOUTPUT_OK;
	case PGOUTPUT_TYPE:
		(void)(rd_stream_xid(r, d, m) &&
			rd_u32(r, &m->pgtype.oid) &&
			rd_str(r, &m->pgtype.nspname) &&
			rd_str(r, &m->pgtype.typname));
		return PGOUTPUT_OK;
	case PGOUTPUT_INSERT:
		(void)(rd_stream_xid(r, d, m) &&
			rd_u32(r, &m->insert.relid) &&
			rd_new_tuple(r, &m->insert.newtup, cols, max_cols, used));
		return PGOUTPUT_OK;
	case PGOUTPUT_UPDATE:
		(void)(rd_stream_xid(r, d, m) && rd_update(r, m, cols, max_cols));
		return PGOUTPUT_OK;
	case PGOUTPUT_DELETE:
		(void)(rd_stream_xid(r, d, m) && rd_delete(r, m, cols, max_cols));
		return PGOUTPUT_OK;
	case PGOUTPUT_TRUNCATE:
		(void)(rd_stream_xid(r, d, m) && rd_truncate(r, m));
		return PGOUTPUT_OK;
	case PGOUTPUT_MESSAGE:
		(void)(rd_stream_xid(r, d, m) && rd_message(r, m));
		return PGOUTPUT_OK;
	default:
		return rd_txn_body(r, d, type, m);
	}
}

enum pgoutput_status
pgoutput_decode(struct pgoutput_decoder *d, const uint8_t *buf, size_t len,
		struct pgoutput_msg *m, struct pgoutput_value *cols, size_t max_cols)
{
	struct rd r = { buf, len, 1, PGOUTPUT_OK, 0 };
	size_t used = 0;
	uint8_t type;
	enum pgoutput_status st;

	if (cols == NULL)
		max_cols = 0;
	if (len == 0) {
		d->error_offset = 0;
		return PGOUTPUT_ERR_EMPTY;
	}
	memset(m, 0, sizeof(*m));
	type = buf[0];
	m->type = (enum pgoutput_msg_type)type;
	st = rd_body(&r, d, type, m, cols, max_cols, &used);
	if (st != PGOUTPUT_OK) {
		/* an unknown type, or one out of order */
		d->error_offset = 0;
		return st;
	}
	if (r.err == PGOUTPUT_OK && r.pos != r.len)
		rd_fail(&r, PGOUTPUT_ERR_TRAILING);
	if (r.err != PGOUTPUT_OK) {
		d->error_offset = r.err_pos;
		return r.err;
	}
	if (type == PGOUTPUT_STREAM_START) {
		d->in_stream = true;
		d->stream_xid = m->stream_start.xid;
	} else if (type == PGOUTPUT_STREAM_STOP) {
		d->in_stream = false;
		d->stream_xid = 0;
	}
	return PGOUTPUT_OK;
}

void
pgoutput_attr_iter_init(struct pgoutput_attr_iter *it,
		const struct pgoutput_msg *relation)
{
	if (relation->type != PGOUTPUT_RELATION) {
		it->p = it->end = NULL;
		it->left = 0;
		return;
	}
	it->p = relation->relation.attrs;
	it->end = it->p != NULL ? it->p + relation->relation.attrs_len : NULL;
	it->left = relation->relation.natts;
}

bool
pgoutput_attr_next(struct pgoutput_attr_iter *it, struct pgoutput_attr *out)
{
	struct rd r;
	uint32_t typmod;

	if (it->left == 0 || it->p == NULL)
		return false;
	/* Validated by pgoutput_decode(); the checks below cannot fail then. */
	r = (struct rd){ it->p, (size_t)(it->end - it->p), 0, PGOUTPUT_OK, 0 };
	if (!rd_u8(&r, &out->flags) || !rd_str(&r, &out->name) ||
			!rd_u32(&r, &out->type_oid) || !rd_u32(&r, &typmod)) {
		it->left = 0;
		return false;
	}
	memcpy(&out->typmod, &typmod, sizeof(out->typmod));
	it->p += r.pos;
	it->left--;
	return true;
}

uint32_t
pgoutput_truncate_relid(const struct pgoutput_msg *m, uint32_t i)
{
	const uint8_t *q;

	if (m->type != PGOUTPUT_TRUNCATE || i >= m->truncate.nrelids)
		return 0;
	q = m->truncate.relids + (size_t)i * 4;
	return (uint32_t)q[0] << 24 | (uint32_t)q[1] << 16 |
		(uint32_t)q[2] << 8 | (uint32_t)q[3];
}

/* ---- CopyData ---- */

enum pgoutput_status
pgoutput_decode_copy(const uint8_t *buf, size_t len, struct pgoutput_copy *out)
{
	struct rd r = { buf, len, 1, PGOUTPUT_OK, 0 };
	uint8_t reply;

	if (len == 0)
		return PGOUTPUT_ERR_EMPTY;
	memset(out, 0, sizeof(*out));
	out->type = (char)buf[0];
	switch (buf[0]) {
	case PGOUTPUT_COPY_XLOGDATA:
		if (rd_u64(&r, &out->wal_start) && rd_u64(&r, &out->wal_end) &&
				rd_i64(&r, &out->server_time)) {
			out->data = buf + r.pos;
			out->data_len = len - r.pos;
			r.pos = len;
		}
		break;
	case PGOUTPUT_COPY_KEEPALIVE:
		if (rd_u64(&r, &out->wal_end) && rd_i64(&r, &out->server_time) &&
				rd_u8(&r, &reply)) {
			if (reply > 1)
				rd_fail(&r, PGOUTPUT_ERR_VALUE);
			out->reply_requested = reply == 1;
		}
		break;
	default:
		return PGOUTPUT_ERR_COPY_TYPE;
	}
	if (r.err == PGOUTPUT_OK && r.pos != r.len)
		return PGOUTPUT_ERR_TRAILING;
	return r.err;
}

static void
put_u64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		p[i] = (uint8_t)v;
		v >>= 8;
	}
}

void
pgoutput_encode_status_update(uint8_t out[PGOUTPUT_STATUS_UPDATE_SIZE],
		uint64_t write_lsn, uint64_t flush_lsn, uint64_t apply_lsn,
		int64_t client_time, bool reply_requested)
{
	uint64_t t;

	memcpy(&t, &client_time, sizeof(t));
	out[0] = PGOUTPUT_COPY_STATUS;
	put_u64(out + 1, write_lsn);
	put_u64(out + 9, flush_lsn);
	put_u64(out + 17, apply_lsn);
	put_u64(out + 25, t);
	out[33] = reply_requested ? 1 : 0;
}

/* ---- time ---- */

int64_t
pgoutput_time_to_unix_us(int64_t pg_time)
{
	if (pg_time > INT64_MAX - PGOUTPUT_EPOCH_OFFSET_US)
		return INT64_MAX;
	return pg_time + PGOUTPUT_EPOCH_OFFSET_US;
}

int64_t
pgoutput_time_from_unix_us(int64_t unix_us)
{
	if (unix_us < INT64_MIN + PGOUTPUT_EPOCH_OFFSET_US)
		return INT64_MIN;
	return unix_us - PGOUTPUT_EPOCH_OFFSET_US;
}

/* ---- relation cache ---- */

void
pgoutput_relcache_init(struct pgoutput_relcache *c, void (*free_priv)(void *priv))
{
	c->slots = NULL;
	c->cap = 0;
	c->count = 0;
	c->free_priv = free_priv;
}

static void
relcache_release(struct pgoutput_relcache *c, struct pgoutput_rel *rel)
{
	if (rel->priv != NULL && c->free_priv != NULL)
		c->free_priv(rel->priv);
	free(rel);
}

void
pgoutput_relcache_free(struct pgoutput_relcache *c)
{
	for (size_t i = 0; i < c->cap; i++)
		if (c->slots[i] != NULL)
			relcache_release(c, c->slots[i]);
	free(c->slots);
	c->slots = NULL;
	c->cap = 0;
	c->count = 0;
}

static size_t
relcache_hash(uint32_t oid)
{
	/* A 32-bit avalanche mix: OIDs are sequential, slots should not be. */
	oid ^= oid >> 16;
	oid *= 0x7feb352du;
	oid ^= oid >> 15;
	oid *= 0x846ca68bu;
	oid ^= oid >> 16;
	return oid;
}

/* The slot holding oid, or the empty slot where it would go. cap > 0. */
static size_t
relcache_find(struct pgoutput_rel *const *slots, size_t cap, uint32_t oid)
{
	size_t i = relcache_hash(oid) & (cap - 1);

	while (slots[i] != NULL && slots[i]->oid != oid)
		i = (i + 1) & (cap - 1);
	return i;
}

static bool
relcache_grow(struct pgoutput_relcache *c)
{
	size_t ncap = c->cap == 0 ? 64 : c->cap * 2;
	struct pgoutput_rel **ns = calloc(ncap, sizeof(*ns));

	if (ns == NULL)
		return false;
	for (size_t i = 0; i < c->cap; i++)
		if (c->slots[i] != NULL)
			ns[relcache_find(ns, ncap, c->slots[i]->oid)] = c->slots[i];
	free(c->slots);
	c->slots = ns;
	c->cap = ncap;
	return true;
}

/* One allocation: the entry, its attrs array, then all its strings. */
static struct pgoutput_rel *
relcache_build(const struct pgoutput_msg *m)
{
	struct pgoutput_attr_iter it;
	struct pgoutput_attr a;
	size_t nsp = strlen(m->relation.nspname) + 1;
	size_t rel = strlen(m->relation.relname) + 1;
	size_t size = sizeof(struct pgoutput_rel) +
		(size_t)m->relation.natts * sizeof(struct pgoutput_rel_attr) + nsp + rel;
	struct pgoutput_rel *e;
	char *s;
	uint16_t i = 0;

	pgoutput_attr_iter_init(&it, m);
	while (pgoutput_attr_next(&it, &a))
		size += strlen(a.name) + 1;
	e = malloc(size);
	if (e == NULL)
		return NULL;
	e->oid = m->relation.oid;
	e->replident = m->relation.replident;
	e->natts = m->relation.natts;
	e->attrs = (struct pgoutput_rel_attr *)(e + 1);
	e->priv = NULL;
	s = (char *)(e->attrs + e->natts);
	e->nspname = memcpy(s, m->relation.nspname, nsp);
	s += nsp;
	e->relname = memcpy(s, m->relation.relname, rel);
	s += rel;
	pgoutput_attr_iter_init(&it, m);
	while (pgoutput_attr_next(&it, &a) && i < e->natts) {
		size_t n = strlen(a.name) + 1;

		e->attrs[i].name = memcpy(s, a.name, n);
		e->attrs[i].type_oid = a.type_oid;
		e->attrs[i].typmod = a.typmod;
		e->attrs[i].key = (a.flags & PGOUTPUT_ATTR_KEY) != 0;
		s += n;
		i++;
	}
	return e;
}

bool
pgoutput_relcache_update(struct pgoutput_relcache *c, const struct pgoutput_msg *m)
{
	struct pgoutput_rel *e;
	size_t i;

	if (m->type != PGOUTPUT_RELATION)
		return false;
	e = relcache_build(m);
	if (e == NULL)
		return false;
	/* Keep the load at most one half. */
	if ((c->count + 1) * 2 > c->cap && !relcache_grow(c)) {
		free(e);
		return false;
	}
	i = relcache_find(c->slots, c->cap, e->oid);
	if (c->slots[i] != NULL)
		relcache_release(c, c->slots[i]);
	else
		c->count++;
	c->slots[i] = e;
	return true;
}

struct pgoutput_rel *
pgoutput_relcache_get(const struct pgoutput_relcache *c, uint32_t oid)
{
	if (c->cap == 0)
		return NULL;
	return c->slots[relcache_find(c->slots, c->cap, oid)];
}
