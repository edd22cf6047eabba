/*
 * codec.h — batch compression for a stream in one direction.
 *
 * One encoder per stream and direction keeps its zstd window across batches:
 * each batch ends with a flush, so the receiver can decode it at once, yet
 * later batches still refer back to earlier ones — small pgoutput batches
 * compress several times better than when each is compressed alone. The
 * decoder on the other side keeps the matching window. Both are reset
 * together whenever the link restarts (a new link starts a new zstd frame).
 *
 * What zstd compresses, per batch: one byte saying the batch's form, then the
 * batch — as it is (CODEC_BATCH_AS_IS), or its pgoutput messages packed
 * (CODEC_BATCH_PACKED, batchpack.h), which an encoder made for pgoutput
 * batches does whenever a batch holds whole messages. The packing's state
 * resets with the zstd state. A decoder reads either form; it refuses a form
 * it does not know, a malformed packed batch and a zstd frame whose window is
 * over CODEC_WINDOW_LOG, with a message, never a crash.
 *
 * Levels: zstd fixes a frame's parameters when the frame starts (a level set
 * in the middle of one is ignored), so a new level ends the frame and starts
 * the next batch in a new one; the decoder needs nothing for it. Every frame
 * has a window of 2^CODEC_WINDOW_LOG bytes, and from level
 * CODEC_TABLES_CAPPED_FROM on match tables of 2^CODEC_TABLE_LOG entries:
 * zstd's own grow to 90 MiB at level 19 for a few percent fewer bytes.
 *
 * Codec "none" passes bytes through, behind the same interface (an ops
 * table), for streams whose data must not be compressed before encryption:
 * it neither packs nor writes the form byte.
 *
 * Ownership: the codec owns its output buffer; the pointer a call returns is
 * valid until the next call on the same codec. Return convention: bool, false
 * with a message in err.
 */
#ifndef STRAIT_CODEC_H
#define STRAIT_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

struct codec;

#define CODEC_MUSTCHECK __attribute__((warn_unused_result))

/* The form byte in front of each batch (zstd only). */
#define CODEC_BATCH_AS_IS  0u
#define CODEC_BATCH_PACKED 1u

/* A frame's window (1 MiB) and, from level CODEC_TABLES_CAPPED_FROM, its match tables. */
#define CODEC_WINDOW_LOG 20
#define CODEC_TABLE_LOG 20
#define CODEC_TABLES_CAPPED_FROM 9

/* What an encoder's batches hold: pgoutput messages are packed before zstd. */
enum codec_content {
	CODEC_CONTENT_OPAQUE,        /* COPY text, anything */
	CODEC_CONTENT_PGOUTPUT,      /* batch bodies: u32 length, message, ... */
};

/* An encoder (compress) or decoder (decompress); NULL when out of memory. */
struct codec *codec_new_encoder(enum config_codec kind, int level, enum codec_content content);
struct codec *codec_new_decoder(enum config_codec kind);
void codec_free(struct codec *c);

/* Whether this codec's output is compressed (the frame's COMPRESSED flag). */
bool codec_compresses(const struct codec *c);

/* Whether this encoder packs pgoutput messages before compressing them. */
bool codec_packs(const struct codec *c);

/* Starts over: forget the window and the packing's state (both ends do this when a link restarts). */
void codec_reset(struct codec *c);

/*
 * Encodes or decodes one batch. A decoder refuses to produce more than
 * max_out bytes (a peer cannot make us inflate without bound).
 */
bool codec_run(struct codec *c, const uint8_t *in, size_t len, size_t max_out,
		const uint8_t **out, size_t *out_len, char *err, size_t errlen) CODEC_MUSTCHECK;

/*
 * An encoder's zstd level: the next batch starts a new frame at it (the
 * decoder needs nothing); false for a decoder, codec none or a level zstd
 * does not have. codec_level() is the level of the batches encoded from now
 * on (0: not compressing).
 */
bool codec_set_level(struct codec *c, int level);
int codec_level(const struct codec *c);

/*
 * Bytes in and out since creation, for metrics; an encoder's packed bytes
 * are what zstd took (each batch's form byte and the batch, packed or not).
 */
uint64_t codec_bytes_in(const struct codec *c);
uint64_t codec_bytes_out(const struct codec *c);
uint64_t codec_bytes_packed(const struct codec *c);

#endif
