/*
 * frame.c — encoding and incremental decoding of relay link frames. The
 * layout and the reasons for it are in frame.h.
 */
#include "gateway/relay/frame.h"

#include <string.h>

#include "common/crc32c.h"

/* Offsets of the header fields. */
#define OFF_MAGIC    0
#define OFF_VERSION  4
#define OFF_TYPE     5
#define OFF_FLAGS    6
#define OFF_RESERVED 7
#define OFF_LENGTH   8
#define OFF_EPOCH    12
#define OFF_CRC      20

_Static_assert(OFF_CRC + 4 == FRAME_HEADER_SIZE, "frame header layout");
_Static_assert(FRAME_HEADER_SIZE % 8 == 0, "payload alignment");

bool
frame_type_valid(unsigned t)
{
	switch (t) {
	case FRAME_HELLO:
	case FRAME_BATCH:
	case FRAME_SYNC:
	case FRAME_SEQUENCES:
	case FRAME_ACK:
	case FRAME_HEARTBEAT:
	case FRAME_GOODBYE:
	case FRAME_RESUME:
	case FRAME_CATCHUP:
	case FRAME_CATCHUP_REPLY:
	case FRAME_CATCHUP_BATCH:
	case FRAME_CATCHUP_ACK:
	case FRAME_FENCE:
	case FRAME_FENCE_ACK:
	case FRAME_PROMOTE:
	case FRAME_PROMOTE_ACK:
	case FRAME_VERIFY:
	case FRAME_COMMAND:
	case FRAME_COMMAND_REPLY:
	case FRAME_CLAIM:
	case FRAME_CLAIM_REPLY:
	case FRAME_FOLLOW_REQ:
	case FRAME_PROBE:
		return true;
	default:
		return false;
	}
}

const char *
frame_type_name(unsigned t)
{
	switch (t) {
	case FRAME_HELLO:       return "HELLO";
	case FRAME_BATCH:       return "BATCH";
	case FRAME_SYNC:        return "SYNC";
	case FRAME_SEQUENCES:   return "SEQUENCES";
	case FRAME_ACK:         return "ACK";
	case FRAME_HEARTBEAT:   return "HEARTBEAT";
	case FRAME_GOODBYE:     return "GOODBYE";
	case FRAME_RESUME:      return "RESUME";
	case FRAME_CATCHUP:     return "CATCHUP";
	case FRAME_CATCHUP_REPLY: return "CATCHUP_REPLY";
	case FRAME_CATCHUP_BATCH: return "CATCHUP_BATCH";
	case FRAME_CATCHUP_ACK: return "CATCHUP_ACK";
	case FRAME_FENCE:       return "FENCE";
	case FRAME_FENCE_ACK:   return "FENCE_ACK";
	case FRAME_PROMOTE:     return "PROMOTE";
	case FRAME_PROMOTE_ACK: return "PROMOTE_ACK";
	case FRAME_VERIFY:      return "VERIFY";
	case FRAME_COMMAND:     return "COMMAND";
	case FRAME_COMMAND_REPLY: return "COMMAND_REPLY";
	case FRAME_CLAIM:       return "CLAIM";
	case FRAME_CLAIM_REPLY: return "CLAIM_REPLY";
	case FRAME_FOLLOW_REQ:  return "FOLLOW_REQ";
	case FRAME_PROBE:       return "PROBE";
	default:                return "unknown";
	}
}

const char *
frame_status_str(enum frame_status st)
{
	switch (st) {
	case FRAME_OK:           return "ok";
	case FRAME_NEED_MORE:    return "incomplete frame";
	case FRAME_ERR_MAGIC:    return "bad magic (not a strait relay peer)";
	case FRAME_ERR_VERSION:  return "unsupported frame version";
	case FRAME_ERR_TYPE:     return "unknown message type";
	case FRAME_ERR_FLAGS:    return "unknown frame flags";
	case FRAME_ERR_TOO_LONG: return "payload length over the limit";
	case FRAME_ERR_CRC:      return "CRC mismatch";
	}
	return "unknown frame status";
}

static uint32_t
frame_crc(const uint8_t *hdr, const uint8_t *payload, size_t len)
{
	return crc32c(crc32c(0, hdr, OFF_CRC), payload, len);
}

enum frame_status
frame_decode(const uint8_t *buf, size_t len, struct frame *out)
{
	size_t have = len < FRAME_HEADER_SIZE ? len : FRAME_HEADER_SIZE;
	uint32_t plen = 0;
	bool plen_known = false;
	size_t total;

	/* Check every header field the prefix at hand already holds. */
	for (size_t i = 0; i < have && i < 4; i++)
		if (buf[OFF_MAGIC + i] != (uint8_t)FRAME_MAGIC[i])
			return FRAME_ERR_MAGIC;
	if (have > OFF_VERSION && buf[OFF_VERSION] != FRAME_VERSION)
		return FRAME_ERR_VERSION;
	if (have > OFF_TYPE && !frame_type_valid(buf[OFF_TYPE]))
		return FRAME_ERR_TYPE;
	if (have > OFF_FLAGS && (buf[OFF_FLAGS] & ~FRAME_FLAGS_KNOWN) != 0)
		return FRAME_ERR_FLAGS;
	if (have > OFF_RESERVED && buf[OFF_RESERVED] != 0)
		return FRAME_ERR_FLAGS;
	if (have >= OFF_LENGTH + 4) {
		plen = wire_load_u32(buf + OFF_LENGTH);
		if (plen > FRAME_MAX_PAYLOAD)
			return FRAME_ERR_TOO_LONG;
		plen_known = true;
	}

	/* plen <= FRAME_MAX_PAYLOAD, so this cannot overflow. */
	total = (size_t)FRAME_HEADER_SIZE + plen;
	if (!plen_known || len < total) {
		out->size = plen_known ? total : FRAME_HEADER_SIZE;
		return FRAME_NEED_MORE;
	}

	if (frame_crc(buf, buf + FRAME_HEADER_SIZE, plen) !=
			wire_load_u32(buf + OFF_CRC))
		return FRAME_ERR_CRC;

	out->type = (enum frame_type)buf[OFF_TYPE];
	out->flags = buf[OFF_FLAGS];
	out->epoch = wire_load_u64(buf + OFF_EPOCH);
	out->payload = buf + FRAME_HEADER_SIZE;
	out->payload_len = plen;
	out->size = total;
	return FRAME_OK;
}

/* The header with length and CRC left zero. */
static void
frame_fill_header(uint8_t *hdr, enum frame_type type, uint8_t flags,
		uint64_t epoch)
{
	memcpy(hdr + OFF_MAGIC, FRAME_MAGIC, 4);
	hdr[OFF_VERSION] = FRAME_VERSION;
	hdr[OFF_TYPE] = (uint8_t)type;
	hdr[OFF_FLAGS] = flags;
	hdr[OFF_RESERVED] = 0;
	wire_store_u32(hdr + OFF_LENGTH, 0);
	wire_store_u64(hdr + OFF_EPOCH, epoch);
	wire_store_u32(hdr + OFF_CRC, 0);
}

static bool
frame_header_args_ok(enum frame_type type, uint8_t flags)
{
	return frame_type_valid((unsigned)type) &&
		(flags & ~FRAME_FLAGS_KNOWN) == 0;
}

bool
frame_encode_header(uint8_t hdr[FRAME_HEADER_SIZE], enum frame_type type,
		uint8_t flags, uint64_t epoch, const void *payload, size_t payload_len)
{
	if (!frame_header_args_ok(type, flags) || payload_len > FRAME_MAX_PAYLOAD)
		return false;
	frame_fill_header(hdr, type, flags, epoch);
	wire_store_u32(hdr + OFF_LENGTH, (uint32_t)payload_len);
	wire_store_u32(hdr + OFF_CRC, frame_crc(hdr, payload, payload_len));
	return true;
}

bool
frame_append(struct wire_writer *w, enum frame_type type, uint8_t flags,
		uint64_t epoch, const void *payload, size_t payload_len)
{
	uint8_t *hdr;

	if (!frame_header_args_ok(type, flags) || payload_len > FRAME_MAX_PAYLOAD) {
		w->failed = true;
		return false;
	}
	if (!wire_put_reserve(w, FRAME_HEADER_SIZE, &hdr))
		return false;
	if (!frame_encode_header(hdr, type, flags, epoch, payload, payload_len))
		return false;
	return wire_put_bytes(w, payload, payload_len);
}

bool
frame_begin(struct wire_writer *w, enum frame_type type, uint8_t flags,
		uint64_t epoch, size_t *start)
{
	uint8_t *hdr;

	if (!frame_header_args_ok(type, flags)) {
		w->failed = true;
		return false;
	}
	*start = w->len;
	if (!wire_put_reserve(w, FRAME_HEADER_SIZE, &hdr))
		return false;
	frame_fill_header(hdr, type, flags, epoch);
	return true;
}

bool
frame_end(struct wire_writer *w, size_t start)
{
	uint8_t *hdr;
	size_t plen;

	if (!wire_writer_ok(w))
		return false;
	if (start > w->len || w->len - start < FRAME_HEADER_SIZE ||
			w->len - start - FRAME_HEADER_SIZE > FRAME_MAX_PAYLOAD) {
		w->failed = true;
		return false;
	}
	hdr = w->data + start;
	plen = w->len - start - FRAME_HEADER_SIZE;
	wire_store_u32(hdr + OFF_LENGTH, (uint32_t)plen);
	wire_store_u32(hdr + OFF_CRC, frame_crc(hdr, hdr + FRAME_HEADER_SIZE, plen));
	return true;
}
