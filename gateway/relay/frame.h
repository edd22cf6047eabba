/*
 * frame.h — framing of the relay link between two straitd.
 *
 * Everything one straitd sends another over the relay link (TLS inside the
 * tunnel) is a sequence of frames. A frame is a fixed 24-byte header followed
 * by the payload; all integers are big-endian.
 *
 *   offset size field
 *        0    4 magic     "STRT" (0x53 0x54 0x52 0x54)
 *        4    1 version   FRAME_VERSION; anything else is refused
 *        5    1 type      enum frame_type (the wire byte itself)
 *        6    1 flags     FRAME_FLAG_*; an unknown bit is refused
 *        7    1 reserved  0; anything else is refused
 *        8    4 length    payload bytes, at most FRAME_MAX_PAYLOAD
 *       12    8 epoch     the sender's cluster epoch (DESIGN: "every message
 *                         carries the epoch"; a site that hears a higher one
 *                         steps down), so the link checks it in one place
 *       20    4 crc       CRC-32C of header bytes 0..19, then the payload
 *       24    n payload   the message; its layout depends on the type
 *                         (relay_proto.h)
 *
 * Why this shape: the magic rejects a peer that is not straitd (plain HTTP,
 * a port scanner) within the first bytes; the length is checked against the
 * cap as soon as its four bytes arrive, before anything is allocated, so a
 * peer cannot make us reserve memory it never sends; the CRC catches
 * corruption TLS would not (our own bugs, a bad spool replay) and covers the
 * header too, so a flipped type or length is caught. The header is a multiple
 * of 8 bytes so payloads stay aligned in a buffer that starts aligned.
 *
 * Versioning: the frame header has its own version (the framing format);
 * HELLO carries the message vocabulary's version (relay_proto.h).
 *
 * Decoding is incremental: frame_decode() looks at the bytes received so far
 * and says "need more", "here is one frame", or which error it found. It never
 * reads past the bytes it is given and never trusts the length field: an
 * error is reported as soon as the prefix at hand proves the frame bad.
 * Any error means the peer is broken or hostile: log it, close the link.
 */
#ifndef STRAIT_FRAME_H
#define STRAIT_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/relay/wire.h"

#define FRAME_MAGIC        "STRT"
#define FRAME_VERSION      1
#define FRAME_HEADER_SIZE  24
#define FRAME_MAX_PAYLOAD  (16u * 1024u * 1024u)
#define FRAME_MAX_SIZE     ((size_t)FRAME_HEADER_SIZE + FRAME_MAX_PAYLOAD)

/* Message types; each value is the byte on the wire. */
enum frame_type {
	FRAME_HELLO       = 0x01,  /* first frame each way: who we are, where streams resume */
	FRAME_BATCH       = 0x02,  /* a stream's pgoutput messages, cut at transaction ends */
	FRAME_SYNC        = 0x03,  /* a chunk of a table's initial copy */
	FRAME_SEQUENCES   = 0x04,  /* the publication's sequence values */
	FRAME_ACK         = 0x05,  /* the sink applied a stream up to an LSN */
	FRAME_HEARTBEAT   = 0x06,  /* WAL position, time, role, health */
	FRAME_GOODBYE     = 0x07,  /* the sender closes the link, with a reason */
	FRAME_RESUME      = 0x08,  /* sink to source: (re)start a stream at an LSN */
	FRAME_CATCHUP     = 0x09,  /* a replica asks a sibling for the primary's batches it retained */
	FRAME_CATCHUP_REPLY = 0x0a, /* what the sibling applied and can serve, or why not */
	FRAME_CATCHUP_BATCH = 0x0b, /* a retained batch (a BATCH's payload) */
	FRAME_CATCHUP_ACK = 0x0c,  /* the asking replica applied and freed (an ACK's payload) */
	/* 0x0d..0x0f reserved for replication. */
	/* Failover: 0x10..0x1f. Payloads belong to the failover code. */
	FRAME_FENCE       = 0x10,  /* become read-only: a higher epoch took over */
	FRAME_FENCE_ACK   = 0x11,  /* fenced, with the final WAL position */
	FRAME_PROMOTE     = 0x12,  /* become primary at the given epoch */
	FRAME_PROMOTE_ACK = 0x13,  /* promoted */
	FRAME_VERIFY      = 0x14,  /* a step of a cross-site verify (relay_proto.h) */
	FRAME_COMMAND     = 0x15,  /* a control command run at the receiving site */
	FRAME_COMMAND_REPLY = 0x16, /* its answer */
	FRAME_CLAIM       = 0x17,  /* a replica is failing over: may it? (level.c) */
	FRAME_CLAIM_REPLY = 0x18,  /* yes, or no and why */
	FRAME_FOLLOW_REQ  = 0x19,  /* a replica of an old primary: where do your streams start? */
	FRAME_PROBE       = 0x20,  /* empty, dropped: a packet behind a batch on a lossy link (lossprobe.h) */
	/* 0x1a..0x1f reserved for failover; everything else is unknown. */
};

/* The payload of a BATCH or SYNC frame carries compressed data (zstd). */
#define FRAME_FLAG_COMPRESSED 0x01u
#define FRAME_FLAGS_KNOWN     (FRAME_FLAG_COMPRESSED)

enum frame_status {
	FRAME_OK = 0,          /* one complete frame decoded */
	FRAME_NEED_MORE,       /* not an error: a valid prefix, wait for more bytes */
	FRAME_ERR_MAGIC,       /* does not start with "STRT" */
	FRAME_ERR_VERSION,     /* header version other than FRAME_VERSION */
	FRAME_ERR_TYPE,        /* type byte not in enum frame_type */
	FRAME_ERR_FLAGS,       /* unknown flag bits or non-zero reserved byte */
	FRAME_ERR_TOO_LONG,    /* length field above FRAME_MAX_PAYLOAD */
	FRAME_ERR_CRC,         /* checksum mismatch */
};

/* A decoded frame; payload points into the caller's buffer. */
struct frame {
	enum frame_type type;
	uint8_t flags;
	uint64_t epoch;
	const uint8_t *payload;
	uint32_t payload_len;
	/*
	 * FRAME_OK: the frame's whole size (header + payload), to consume.
	 * FRAME_NEED_MORE: how many bytes in total the buffer must hold before
	 * decoding can go on (FRAME_HEADER_SIZE until the length is known).
	 */
	size_t size;
};

/* Whether t is a type this build knows (and so may send or accept). */
bool frame_type_valid(unsigned t);
/* "HELLO", "BATCH", ...; "unknown" for anything else. */
const char *frame_type_name(unsigned t);
/* A lowercase reason for logs: "bad magic", "CRC mismatch", ... */
const char *frame_status_str(enum frame_status st);

/*
 * Decodes the frame at the start of buf[0..len). On FRAME_OK *out describes
 * it (the caller consumes out->size bytes and calls again for the next). On
 * FRAME_NEED_MORE, out->size says how many bytes to wait for. On an error,
 * *out is unspecified. buf may be NULL when len is 0.
 */
enum frame_status frame_decode(const uint8_t *buf, size_t len, struct frame *out);

/*
 * Writes a frame header for the given payload into hdr, CRC included, so
 * header and payload can be sent from separate buffers. False (hdr untouched)
 * when the type is not valid, the flags unknown or payload_len over the cap.
 */
bool frame_encode_header(uint8_t hdr[FRAME_HEADER_SIZE], enum frame_type type,
		uint8_t flags, uint64_t epoch, const void *payload, size_t payload_len)
	WIRE_MUSTCHECK;

/*
 * Appends a whole frame (header and a copy of the payload) to w; payload must
 * not point into w's own buffer.
 */
bool frame_append(struct wire_writer *w, enum frame_type type, uint8_t flags,
		uint64_t epoch, const void *payload, size_t payload_len) WIRE_MUSTCHECK;

/*
 * Building a frame in place: frame_begin() writes a header with the length
 * and CRC left blank and returns its offset in *start; the caller then puts
 * the payload with wire_put_*() (relay_proto.h's writers) and frame_end()
 * fills in length and CRC. frame_end() fails when the writer failed on the
 * way or the payload grew over the cap; the writer is then marked failed.
 *
 *     size_t at;
 *     if (!frame_begin(w, FRAME_ACK, 0, epoch, &at) ||
 *         !relay_proto_write_ack(w, &ack) || !frame_end(w, at))
 *             ... could not encode
 */
bool frame_begin(struct wire_writer *w, enum frame_type type, uint8_t flags,
		uint64_t epoch, size_t *start) WIRE_MUSTCHECK;
bool frame_end(struct wire_writer *w, size_t start) WIRE_MUSTCHECK;

#endif
