/*
 * relay_proto.c — writers and readers of relay frame payloads, one message at
 * a time, writer first. Layouts and conventions are in relay_proto.h.
 *
 * Readers go field by field through a wire_reader; the first field that does
 * not fit ends the read with TRUNCATED, so a peer's length never makes us
 * look outside the payload. They allocate nothing.
 */
#include "gateway/relay/relay_proto.h"

#include <string.h>

const char *
relay_proto_status_str(enum relay_proto_status st)
{
	switch (st) {
	case RELAY_PROTO_OK:            return "ok";
	case RELAY_PROTO_ERR_TRUNCATED: return "payload truncated";
	case RELAY_PROTO_ERR_TRAILING:  return "trailing bytes after payload";
	case RELAY_PROTO_ERR_STRING:    return "malformed or empty name";
	case RELAY_PROTO_ERR_TOO_MANY:  return "too many list entries";
	case RELAY_PROTO_ERR_VALUE:     return "field value out of range";
	}
	return "unknown payload status";
}

const char *
relay_proto_role_name(unsigned role)
{
	switch (role) {
	case RELAY_ROLE_UNKNOWN: return "unknown";
	case RELAY_ROLE_PRIMARY: return "primary";
	case RELAY_ROLE_REPLICA: return "replica";
	case RELAY_ROLE_FENCED:  return "fenced";
	default:                 return "invalid";
	}
}

/* ---- shared field helpers ---- */

/*
 * Reads a string field, telling an underrun (TRUNCATED) from a malformed or,
 * for names, empty one (STRING).
 */
static enum relay_proto_status
get_str(struct wire_reader *r, struct wire_str *out, bool name)
{
	uint16_t n;

	if (wire_remaining(r) < 2)
		return RELAY_PROTO_ERR_TRUNCATED;
	n = wire_load_u16(r->data + r->pos);
	if (wire_remaining(r) - 2 < n)
		return RELAY_PROTO_ERR_TRUNCATED;
	if (!wire_get_string(r, out) || (name && out->len == 0))
		return RELAY_PROTO_ERR_STRING;
	return RELAY_PROTO_OK;
}

static bool
put_str(struct wire_writer *w, struct wire_str s, bool name)
{
	if (name && s.len == 0) {
		w->failed = true;
		return false;
	}
	return wire_put_string_n(w, s.ptr, s.len);
}

static enum relay_proto_status
at_end(const struct wire_reader *r)
{
	return wire_remaining(r) == 0 ? RELAY_PROTO_OK : RELAY_PROTO_ERR_TRAILING;
}

/* Shorthands inside readers: bail out with the status of a failing step. */
#define TRY(expr) do { \
		enum relay_proto_status try_st_ = (expr); \
		if (try_st_ != RELAY_PROTO_OK) \
			return try_st_; \
	} while (0)
#define NEED(expr) do { \
		if (!(expr)) \
			return RELAY_PROTO_ERR_TRUNCATED; \
	} while (0)

/* A list of (stream, LSN) pairs: PROMOTE_ACK, FENCE. */
static bool
stream_lsns_ok(const struct relay_proto_resume *streams, size_t n)
{
	return n <= RELAY_PROTO_MAX_LIST && (n == 0 || streams != NULL);
}

static void
put_stream_lsns(struct wire_writer *w, const struct relay_proto_resume *streams, size_t n)
{
	wire_put_u16(w, (uint16_t)n);
	for (size_t i = 0; i < n; i++) {
		put_str(w, streams[i].stream, true);
		wire_put_u64(w, streams[i].lsn);
	}
}

/* Reads n entries (the count came first) into streams[0..n). */
static enum relay_proto_status
get_stream_lsns(struct wire_reader *r, uint16_t n, struct relay_proto_resume *streams,
		size_t max_streams)
{
	/* Each entry takes at least 2 + 1 + 8 bytes: refuse a count the payload cannot hold. */
	if ((size_t)n * 11 > wire_remaining(r))
		return RELAY_PROTO_ERR_TRUNCATED;
	if (n > max_streams)
		return RELAY_PROTO_ERR_TOO_MANY;
	for (size_t i = 0; i < n; i++) {
		TRY(get_str(r, &streams[i].stream, true));
		NEED(wire_get_u64(r, &streams[i].lsn));
	}
	return RELAY_PROTO_OK;
}

/* ---- positions (HELLO, RESUME) ---- */

static bool
position_ok(const struct relay_proto_position *p)
{
	return p->received_lsn == 0 || p->committed_lsn <= p->received_lsn;
}

static void
put_position(struct wire_writer *w, const struct relay_proto_position *p)
{
	put_str(w, p->stream, true);
	wire_put_u64(w, p->received_lsn);
	wire_put_u64(w, p->committed_lsn);
	wire_put_u64(w, p->queued_bytes);
}

static enum relay_proto_status
get_position(struct wire_reader *r, struct relay_proto_position *p)
{
	TRY(get_str(r, &p->stream, true));
	NEED(wire_get_u64(r, &p->received_lsn));
	NEED(wire_get_u64(r, &p->committed_lsn));
	NEED(wire_get_u64(r, &p->queued_bytes));
	return position_ok(p) ? RELAY_PROTO_OK : RELAY_PROTO_ERR_VALUE;
}

/* ---- HELLO ---- */

bool
relay_proto_write_hello(struct wire_writer *w, const struct relay_proto_hello *m)
{
	bool ok = m->nstreams <= RELAY_PROTO_MAX_LIST && (m->nstreams == 0 || m->streams);

	for (size_t i = 0; ok && i < m->nstreams; i++)
		ok = position_ok(&m->streams[i]);
	if (!ok) {
		w->failed = true;
		return false;
	}
	wire_put_u16(w, m->version);
	put_str(w, m->cluster, true);
	put_str(w, m->site, true);
	wire_put_u16(w, (uint16_t)m->nstreams);
	for (size_t i = 0; i < m->nstreams; i++)
		put_position(w, &m->streams[i]);
	return wire_writer_ok(w);
}

enum relay_proto_status
relay_proto_read_hello(const uint8_t *p, size_t len,
		struct relay_proto_hello *out, struct relay_proto_position *streams,
		size_t max_streams)
{
	struct wire_reader r;
	uint16_t n;

	wire_reader_init(&r, p, len);
	NEED(wire_get_u16(&r, &out->version));
	TRY(get_str(&r, &out->cluster, true));
	TRY(get_str(&r, &out->site, true));
	NEED(wire_get_u16(&r, &n));
	/* Each entry takes at least 2 + 1 + 3 × 8 bytes: refuse a count the payload cannot hold. */
	if ((size_t)n * 27 > wire_remaining(&r))
		return RELAY_PROTO_ERR_TRUNCATED;
	if (n > max_streams)
		return RELAY_PROTO_ERR_TOO_MANY;
	for (size_t i = 0; i < n; i++)
		TRY(get_position(&r, &streams[i]));
	out->streams = streams;
	out->nstreams = n;
	return at_end(&r);
}

/* ---- ACK ---- */

bool
relay_proto_write_ack(struct wire_writer *w, const struct relay_proto_ack *m)
{
	put_str(w, m->stream, true);
	wire_put_u64(w, m->committed_lsn);
	wire_put_i64(w, m->commit_time_us);
	wire_put_u32(w, m->generation);
	wire_put_u64(w, m->released_bytes);
	return wire_writer_ok(w);
}

enum relay_proto_status
relay_proto_read_ack(const uint8_t *p, size_t len, struct relay_proto_ack *out)
{
	struct wire_reader r;

	wire_reader_init(&r, p, len);
	TRY(get_str(&r, &out->stream, true));
	NEED(wire_get_u64(&r, &out->committed_lsn));
	NEED(wire_get_i64(&r, &out->commit_time_us));
	NEED(wire_get_u32(&r, &out->generation));
	NEED(wire_get_u64(&r, &out->released_bytes));
	return at_end(&r);
}

/* ---- HEARTBEAT ---- */

bool
relay_proto_write_heartbeat(struct wire_writer *w,
		const struct relay_proto_heartbeat *m)
{
	if (m->role > RELAY_ROLE_FENCED) {
		w->failed = true;
		return false;
	}
	wire_put_u64(w, m->wal_lsn);
	wire_put_i64(w, m->time_us);
	wire_put_u8(w, m->role);
	wire_put_u32(w, m->health);
	return wire_writer_ok(w);
}

enum relay_proto_status
relay_proto_read_heartbeat(const uint8_t *p, size_t len,
		struct relay_proto_heartbeat *out)
{
	struct wire_reader r;

	wire_reader_init(&r, p, len);
	NEED(wire_get_u64(&r, &out->wal_lsn));
	NEED(wire_get_i64(&r, &out->time_us));
	NEED(wire_get_u8(&r, &out->role));
	NEED(wire_get_u32(&r, &out->health));
	if (out->role > RELAY_ROLE_FENCED)
		return RELAY_PROTO_ERR_VALUE;
	return at_end(&r);
}

/* ---- BATCH ---- */

bool
relay_proto_write_batch_head(struct wire_writer *w,
		const struct relay_proto_batch *m)
{
	if (m->first_lsn > m->last_lsn || (m->last_lsn && m->prev_lsn > m->last_lsn) ||
	    (m->flags & ~RELAY_BATCH_FLAGS_KNOWN)) {
		w->failed = true;
		return false;
	}
	put_str(w, m->stream, true);
	wire_put_u64(w, m->first_lsn);
	wire_put_u64(w, m->last_lsn);
	wire_put_u64(w, m->prev_lsn);
	wire_put_u32(w, m->generation);
	wire_put_u32(w, m->seq);
	wire_put_u8(w, m->flags);
	wire_put_u32(w, m->raw_len);
	return wire_writer_ok(w);
}

bool
relay_proto_write_batch(struct wire_writer *w, const struct relay_proto_batch *m)
{
	return relay_proto_write_batch_head(w, m) &&
		wire_put_bytes(w, m->data, m->data_len);
}

enum relay_proto_status
relay_proto_read_batch(const uint8_t *p, size_t len,
		struct relay_proto_batch *out)
{
	struct wire_reader r;

	wire_reader_init(&r, p, len);
	TRY(get_str(&r, &out->stream, true));
	NEED(wire_get_u64(&r, &out->first_lsn));
	NEED(wire_get_u64(&r, &out->last_lsn));
	NEED(wire_get_u64(&r, &out->prev_lsn));
	NEED(wire_get_u32(&r, &out->generation));
	NEED(wire_get_u32(&r, &out->seq));
	NEED(wire_get_u8(&r, &out->flags));
	NEED(wire_get_u32(&r, &out->raw_len));
	if (out->first_lsn > out->last_lsn || (out->last_lsn && out->prev_lsn > out->last_lsn) ||
	    (out->flags & ~RELAY_BATCH_FLAGS_KNOWN))
		return RELAY_PROTO_ERR_VALUE;
	wire_get_rest(&r, &out->data, &out->data_len);
	return RELAY_PROTO_OK;
}

/* ---- RESUME ---- */

bool
relay_proto_write_resume(struct wire_writer *w, const struct relay_proto_resume_req *m)
{
	if (!position_ok(&m->pos)) {
		w->failed = true;
		return false;
	}
	put_position(w, &m->pos);
	wire_put_u32(w, m->generation);
	return wire_writer_ok(w);
}

enum relay_proto_status
relay_proto_read_resume(const uint8_t *p, size_t len, struct relay_proto_resume_req *out)
{
	struct wire_reader r;

	wire_reader_init(&r, p, len);
	TRY(get_position(&r, &out->pos));
	NEED(wire_get_u32(&r, &out->generation));
	return at_end(&r);
}

/* ---- CATCHUP and CATCHUP_REPLY ---- */

bool
relay_proto_write_catchup(struct wire_writer *w, const struct relay_proto_catchup *m)
{
	if (m->flags & ~RELAY_CATCHUP_FLAGS_KNOWN) {
		w->failed = true;
		return false;
	}
	put_str(w, m->stream, true);
	put_str(w, m->source, true);
	wire_put_u64(w, m->after_lsn);
	wire_put_u32(w, m->generation);
	wire_put_u8(w, m->flags);
	return wire_writer_ok(w);
}

enum relay_proto_status
relay_proto_read_catchup(const uint8_t *p, size_t len, struct relay_proto_catchup *out)
{
	struct wire_reader r;

	wire_reader_init(&r, p, len);
	TRY(get_str(&r, &out->stream, true));
	TRY(get_str(&r, &out->source, true));
	NEED(wire_get_u64(&r, &out->after_lsn));
	NEED(wire_get_u32(&r, &out->generation));
	NEED(wire_get_u8(&r, &out->flags));
	if (out->flags & ~RELAY_CATCHUP_FLAGS_KNOWN)
		return RELAY_PROTO_ERR_VALUE;
	return at_end(&r);
}

bool
relay_proto_write_catchup_reply(struct wire_writer *w, const struct relay_proto_catchup_reply *m)
{
	if (m->ok > 1) {
		w->failed = true;
		return false;
	}
	put_str(w, m->stream, true);
	wire_put_u32(w, m->generation);
	wire_put_u8(w, m->ok);
	wire_put_u64(w, m->applied_lsn);
	wire_put_u64(w, m->floor_lsn);
	wire_put_u64(w, m->end_lsn);
	put_str(w, m->message, false);
	return wire_writer_ok(w);
}

enum relay_proto_status
relay_proto_read_catchup_reply(const uint8_t *p, size_t len, struct relay_proto_catchup_reply *out)
{
	struct wire_reader r;

	wire_reader_init(&r, p, len);
	TRY(get_str(&r, &out->stream, true));
	NEED(wire_get_u32(&r, &out->generation));
	NEED(wire_get_u8(&r, &out->ok));
	NEED(wire_get_u64(&r, &out->applied_lsn));
	NEED(wire_get_u64(&r, &out->floor_lsn));
	NEED(wire_get_u64(&r, &out->end_lsn));
	TRY(get_str(&r, &out->message, false));
	if (out->ok > 1)
		return RELAY_PROTO_ERR_VALUE;
	return at_end(&r);
}

/* ---- SYNC ---- */

/* A whole table (0 of 0), or one of at least two ranges. */
static bool
sync_range_ok(uint32_t ranges, uint32_t range)
{
	return ranges == 0 ? range == 0 : ranges >= 2 && range < ranges;
}

bool
relay_proto_write_sync_head(struct wire_writer *w,
		const struct relay_proto_sync *m)
{
	if ((m->flags & ~(RELAY_SYNC_LAST | RELAY_SYNC_JOIN)) != 0 || !sync_range_ok(m->ranges, m->range)) {
		w->failed = true;
		return false;
	}
	put_str(w, m->stream, true);
	put_str(w, m->schema, true);
	put_str(w, m->table, true);
	wire_put_u64(w, m->snapshot_lsn);
	wire_put_u32(w, m->ranges);
	wire_put_u32(w, m->range);
	wire_put_u32(w, m->chunk);
	wire_put_u8(w, m->flags);
	wire_put_u32(w, m->raw_len);
	return wire_writer_ok(w);
}

bool
relay_proto_write_sync(struct wire_writer *w, const struct relay_proto_sync *m)
{
	return relay_proto_write_sync_head(w, m) &&
		wire_put_bytes(w, m->data, m->data_len);
}

enum relay_proto_status
relay_proto_read_sync(const uint8_t *p, size_t len, struct relay_proto_sync *out)
{
	struct wire_reader r;

	wire_reader_init(&r, p, len);
	TRY(get_str(&r, &out->stream, true));
	TRY(get_str(&r, &out->schema, true));
	TRY(get_str(&r, &out->table, true));
	NEED(wire_get_u64(&r, &out->snapshot_lsn));
	NEED(wire_get_u32(&r, &out->ranges));
	NEED(wire_get_u32(&r, &out->range));
	NEED(wire_get_u32(&r, &out->chunk));
	NEED(wire_get_u8(&r, &out->flags));
	NEED(wire_get_u32(&r, &out->raw_len));
	if ((out->flags & ~(RELAY_SYNC_LAST | RELAY_SYNC_JOIN)) != 0 || !sync_range_ok(out->ranges, out->range))
		return RELAY_PROTO_ERR_VALUE;
	wire_get_rest(&r, &out->data, &out->data_len);
	return RELAY_PROTO_OK;
}

/* ---- SEQUENCES ---- */

bool
relay_proto_write_sequences(struct wire_writer *w,
		const struct relay_proto_sequences *m)
{
	if (m->nseqs > RELAY_PROTO_MAX_LIST || (m->nseqs > 0 && m->seqs == NULL)) {
		w->failed = true;
		return false;
	}
	put_str(w, m->stream, true);
	wire_put_u16(w, (uint16_t)m->nseqs);
	for (size_t i = 0; i < m->nseqs; i++) {
		put_str(w, m->seqs[i].schema, true);
		put_str(w, m->seqs[i].name, true);
		wire_put_i64(w, m->seqs[i].value);
	}
	return wire_writer_ok(w);
}

enum relay_proto_status
relay_proto_read_sequences(const uint8_t *p, size_t len,
		struct relay_proto_sequences *out, struct relay_proto_sequence *seqs,
		size_t max_seqs)
{
	struct wire_reader r;
	uint16_t n;

	wire_reader_init(&r, p, len);
	TRY(get_str(&r, &out->stream, true));
	NEED(wire_get_u16(&r, &n));
	/* Each entry takes at least (2 + 1) * 2 + 8 bytes. */
	if ((size_t)n * 14 > wire_remaining(&r))
		return RELAY_PROTO_ERR_TRUNCATED;
	if (n > max_seqs)
		return RELAY_PROTO_ERR_TOO_MANY;
	for (size_t i = 0; i < n; i++) {
		TRY(get_str(&r, &seqs[i].schema, true));
		TRY(get_str(&r, &seqs[i].name, true));
		NEED(wire_get_i64(&r, &seqs[i].value));
	}
	out->seqs = seqs;
	out->nseqs = n;
	return at_end(&r);
}

/* ---- GOODBYE ---- */

bool
relay_proto_write_goodbye(struct wire_writer *w,
		const struct relay_proto_goodbye *m)
{
	put_str(w, m->reason, false);
	return wire_writer_ok(w);
}

enum relay_proto_status
relay_proto_read_goodbye(const uint8_t *p, size_t len,
		struct relay_proto_goodbye *out)
{
	struct wire_reader r;

	wire_reader_init(&r, p, len);
	TRY(get_str(&r, &out->reason, false));
	return at_end(&r);
}

/* ---- PROMOTE ---- */

bool
relay_proto_write_promote(struct wire_writer *w, const struct relay_proto_promote *m)
{
	wire_put_u64(w, m->epoch);
	put_str(w, m->reason, false);
	return wire_writer_ok(w);
}

enum relay_proto_status
relay_proto_read_promote(const uint8_t *p, size_t len, struct relay_proto_promote *out)
{
	struct wire_reader r;

	wire_reader_init(&r, p, len);
	NEED(wire_get_u64(&r, &out->epoch));
	TRY(get_str(&r, &out->reason, false));
	if (out->epoch == 0)
		return RELAY_PROTO_ERR_VALUE;
	return at_end(&r);
}

/* ---- PROMOTE_ACK ---- */

bool
relay_proto_write_promote_ack(struct wire_writer *w, const struct relay_proto_promote_ack *m)
{
	if (m->ok > 1 || !stream_lsns_ok(m->streams, m->nstreams)) {
		w->failed = true;
		return false;
	}
	wire_put_u8(w, m->ok);
	wire_put_u64(w, m->epoch);
	put_str(w, m->message, false);
	put_stream_lsns(w, m->streams, m->nstreams);
	return wire_writer_ok(w);
}

enum relay_proto_status
relay_proto_read_promote_ack(const uint8_t *p, size_t len, struct relay_proto_promote_ack *out,
		struct relay_proto_resume *streams, size_t max_streams)
{
	struct wire_reader r;
	uint16_t n;

	wire_reader_init(&r, p, len);
	NEED(wire_get_u8(&r, &out->ok));
	NEED(wire_get_u64(&r, &out->epoch));
	TRY(get_str(&r, &out->message, false));
	NEED(wire_get_u16(&r, &n));
	if (out->ok > 1)
		return RELAY_PROTO_ERR_VALUE;
	TRY(get_stream_lsns(&r, n, streams, max_streams));
	out->streams = streams;
	out->nstreams = n;
	return at_end(&r);
}

/* ---- FENCE ---- */

bool
relay_proto_write_fence(struct wire_writer *w, const struct relay_proto_fence *m)
{
	if (!stream_lsns_ok(m->streams, m->nstreams)) {
		w->failed = true;
		return false;
	}
	put_stream_lsns(w, m->streams, m->nstreams);
	return wire_writer_ok(w);
}

enum relay_proto_status
relay_proto_read_fence(const uint8_t *p, size_t len, struct relay_proto_fence *out,
		struct relay_proto_resume *streams, size_t max_streams)
{
	struct wire_reader r;
	uint16_t n;

	wire_reader_init(&r, p, len);
	NEED(wire_get_u16(&r, &n));
	TRY(get_stream_lsns(&r, n, streams, max_streams));
	out->streams = streams;
	out->nstreams = n;
	return at_end(&r);
}

/* ---- VERIFY ---- */

bool
relay_proto_write_verify_head(struct wire_writer *w, const struct relay_proto_verify *m)
{
	if (m->op < RELAY_VERIFY_HOLD || m->op > RELAY_VERIFY_END || m->ok > 1 ||
	    (m->op != RELAY_VERIFY_QUERY && m->kind != 0) ||
	    (m->op == RELAY_VERIFY_QUERY && m->ncols > m->nvalues)) {
		w->failed = true;
		return false;
	}
	put_str(w, m->stream, true);
	wire_put_u64(w, m->job);
	wire_put_u8(w, m->op);
	wire_put_u8(w, m->ok);
	wire_put_u32(w, m->seq);
	wire_put_u64(w, m->lsn);
	wire_put_u32(w, m->generation);
	put_str(w, m->text, false);
	wire_put_u8(w, m->kind);
	put_str(w, m->schema, false);
	put_str(w, m->table, false);
	wire_put_u8(w, m->range);
	wire_put_i64(w, m->offset);
	wire_put_u64(w, m->mask);
	wire_put_u64(w, m->bucket);
	wire_put_u16(w, m->ncols);
	wire_put_u32(w, m->nvalues);
	return wire_writer_ok(w);
}

bool
relay_proto_put_verify_value(struct wire_writer *w, const char *value, size_t len)
{
	if (len > UINT32_MAX) {
		w->failed = true;
		return false;
	}
	wire_put_u8(w, value == NULL);
	wire_put_u32(w, value ? (uint32_t)len : 0);
	if (value)
		wire_put_bytes(w, value, len);
	return wire_writer_ok(w);
}

bool
relay_proto_verify_value(struct wire_reader *r, const char **value, uint32_t *len)
{
	uint8_t null;
	const uint8_t *p;

	if (!wire_get_u8(r, &null) || null > 1 || !wire_get_u32(r, len) ||
	    (null && *len != 0) || !wire_get_bytes(r, *len, &p))
		return false;
	*value = null ? NULL : (const char *)p;
	return true;
}

enum relay_proto_status
relay_proto_read_verify(const uint8_t *p, size_t len, struct relay_proto_verify *out)
{
	struct wire_reader r;
	size_t start;

	wire_reader_init(&r, p, len);
	TRY(get_str(&r, &out->stream, true));
	NEED(wire_get_u64(&r, &out->job));
	NEED(wire_get_u8(&r, &out->op));
	NEED(wire_get_u8(&r, &out->ok));
	NEED(wire_get_u32(&r, &out->seq));
	NEED(wire_get_u64(&r, &out->lsn));
	NEED(wire_get_u32(&r, &out->generation));
	TRY(get_str(&r, &out->text, false));
	NEED(wire_get_u8(&r, &out->kind));
	TRY(get_str(&r, &out->schema, false));
	TRY(get_str(&r, &out->table, false));
	NEED(wire_get_u8(&r, &out->range));
	NEED(wire_get_i64(&r, &out->offset));
	NEED(wire_get_u64(&r, &out->mask));
	NEED(wire_get_u64(&r, &out->bucket));
	NEED(wire_get_u16(&r, &out->ncols));
	NEED(wire_get_u32(&r, &out->nvalues));
	if (out->op < RELAY_VERIFY_HOLD || out->op > RELAY_VERIFY_END || out->ok > 1 ||
	    (out->op != RELAY_VERIFY_QUERY && out->kind != 0) ||
	    (out->op == RELAY_VERIFY_QUERY && out->ncols > out->nvalues))
		return RELAY_PROTO_ERR_VALUE;
	/* a value takes 5 bytes at least: refuse counts the payload cannot hold */
	if (out->nvalues > wire_remaining(&r) / 5)
		return RELAY_PROTO_ERR_TRUNCATED;
	if (out->op == RELAY_VERIFY_RESULT && out->ok &&
	    (out->ncols == 0 ? out->nvalues != 0 : out->nvalues % out->ncols != 0))
		return RELAY_PROTO_ERR_VALUE;
	start = r.pos;
	for (uint32_t i = 0; i < out->nvalues; i++) {
		const uint8_t *v;
		uint32_t n;
		uint8_t null;

		NEED(wire_get_u8(&r, &null));
		NEED(wire_get_u32(&r, &n));
		if (null > 1 || (null && n != 0))
			return RELAY_PROTO_ERR_VALUE;
		NEED(wire_get_bytes(&r, n, &v));
	}
	out->values = p + start;
	out->values_len = r.pos - start;
	return at_end(&r);
}

/* ---- COMMAND ---- */

bool
relay_proto_write_command(struct wire_writer *w, const struct relay_proto_command *m)
{
	if (m->argc == 0 || m->argc > RELAY_COMMAND_MAX_ARGS || m->argv[0].len == 0) {
		w->failed = true;
		return false;
	}
	wire_put_u32(w, m->id);
	wire_put_u8(w, (uint8_t)m->argc);
	for (size_t i = 0; i < m->argc; i++)
		put_str(w, m->argv[i], false);
	return wire_writer_ok(w);
}

enum relay_proto_status
relay_proto_read_command(const uint8_t *p, size_t len, struct relay_proto_command *out)
{
	struct wire_reader r;
	uint8_t n;

	wire_reader_init(&r, p, len);
	NEED(wire_get_u32(&r, &out->id));
	NEED(wire_get_u8(&r, &n));
	if (n == 0 || n > RELAY_COMMAND_MAX_ARGS)
		return RELAY_PROTO_ERR_VALUE;
	for (size_t i = 0; i < n; i++)
		TRY(get_str(&r, &out->argv[i], i == 0));
	out->argc = n;
	return at_end(&r);
}

/* ---- COMMAND_REPLY ---- */

bool
relay_proto_write_command_reply(struct wire_writer *w, const struct relay_proto_command_reply *m)
{
	if (m->ok > 1 || (m->body_len && memchr(m->body, '\0', m->body_len))) {
		w->failed = true;
		return false;
	}
	wire_put_u32(w, m->id);
	wire_put_u8(w, m->ok);
	if (m->body_len)
		wire_put_bytes(w, m->body, m->body_len);
	return wire_writer_ok(w);
}

enum relay_proto_status
relay_proto_read_command_reply(const uint8_t *p, size_t len, struct relay_proto_command_reply *out)
{
	struct wire_reader r;
	const uint8_t *rest;

	wire_reader_init(&r, p, len);
	NEED(wire_get_u32(&r, &out->id));
	NEED(wire_get_u8(&r, &out->ok));
	if (out->ok > 1)
		return RELAY_PROTO_ERR_VALUE;
	wire_get_rest(&r, &rest, &out->body_len);
	if (out->body_len && memchr(rest, '\0', out->body_len))
		return RELAY_PROTO_ERR_STRING;
	out->body = (const char *)rest;
	return RELAY_PROTO_OK;
}
