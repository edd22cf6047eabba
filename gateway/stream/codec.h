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
 * Codec "none" passes bytes through, behind the same interface (an ops
 * table), for streams whose data must not be compressed before encryption.
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

/* An encoder (compress) or decoder (decompress); NULL when out of memory. */
struct codec *codec_new_encoder(enum config_codec kind, int level);
struct codec *codec_new_decoder(enum config_codec kind);
void codec_free(struct codec *c);

/* Whether this codec's output is compressed (the frame's COMPRESSED flag). */
bool codec_compresses(const struct codec *c);

/* Starts over: forget the window (both ends do this when a link restarts). */
void codec_reset(struct codec *c);

/*
 * Encodes or decodes one batch. A decoder refuses to produce more than
 * max_out bytes (a peer cannot make us inflate without bound).
 */
bool codec_run(struct codec *c, const uint8_t *in, size_t len, size_t max_out,
		const uint8_t **out, size_t *out_len, char *err, size_t errlen) CODEC_MUSTCHECK;

/*
 * An encoder's zstd level: set for the batches encoded from now on (the
 * decoder needs nothing); false for a decoder or codec none. codec_level()
 * is the level in force (0: not compressing).
 */
bool codec_set_level(struct codec *c, int level);
int codec_level(const struct codec *c);

/* Bytes in and out since creation, for metrics. */
uint64_t codec_bytes_in(const struct codec *c);
uint64_t codec_bytes_out(const struct codec *c);

#endif
