/*
 * codec.c — zstd streaming compression per stream and direction (see codec.h).
 */
#include "gateway/stream/codec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#include "gateway/stream/batchpack.h"

struct codec_ops {
	bool compresses;
	bool (*run)(struct codec *c, const uint8_t *in, size_t len, size_t max_out,
		    char *err, size_t errlen);
	void (*reset)(struct codec *c);
	void (*free_state)(struct codec *c);
};

struct codec {
	const struct codec_ops *ops;
	ZSTD_CCtx *cctx;
	ZSTD_DCtx *dctx;
	struct batchpack *pack;  /* an encoder's for pgoutput; every zstd decoder's */
	uint8_t *buf;            /* output (a decoder's: inflated), reused across calls */
	size_t len;
	size_t cap;
	const uint8_t *view;     /* the output when it is not buf: the input ("none"), unpacked, ... */
	size_t view_len;
	uint64_t bytes_in;
	uint64_t bytes_out;
	uint64_t bytes_packed;
	int level;               /* an encoder's zstd level for the next batch */
	int frame_level;         /* the level of the frame under way (0: none under way) */
};

/* Makes room for at least more bytes after len. */
static bool codec_grow(struct codec *c, size_t more)
{
	size_t cap = c->cap ? c->cap : 64 * 1024;
	uint8_t *grown;

	if (c->cap - c->len >= more)
		return true;
	while (cap - c->len < more)
		cap *= 2;
	grown = realloc(c->buf, cap);
	if (!grown)
		return false;
	c->buf = grown;
	c->cap = cap;
	return true;
}

/* ---------------------------------------------------------------- encoder */

/*
 * A frame's parameters: the level, the window, and from
 * CODEC_TABLES_CAPPED_FROM on capped match tables (0: the level's own).
 */
static bool codec_zstd_params(ZSTD_CCtx *cctx, int level)
{
	int tables = level >= CODEC_TABLES_CAPPED_FROM ? CODEC_TABLE_LOG : 0;

	return !ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level)) &&
	       !ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_windowLog, CODEC_WINDOW_LOG)) &&
	       !ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_hashLog, tables)) &&
	       !ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_chainLog, tables)) &&
	       !ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 0));
}

/* Appends what zstd makes of in: all of it taken (continue), or flushed too (flush, end). */
static bool codec_zstd_feed(struct codec *c, const void *in, size_t len, ZSTD_EndDirective how,
		char *err, size_t errlen)
{
	ZSTD_inBuffer input = { in, len, 0 };
	size_t remaining;

	do {
		ZSTD_outBuffer output;

		if (!codec_grow(c, ZSTD_CStreamOutSize())) {
			snprintf(err, errlen, "out of memory");
			return false;
		}
		output = (ZSTD_outBuffer){ c->buf + c->len, c->cap - c->len, 0 };
		remaining = ZSTD_compressStream2(c->cctx, &output, &input, how);
		if (ZSTD_isError(remaining)) {
			snprintf(err, errlen, "could not compress batch: %s", ZSTD_getErrorName(remaining));
			return false;
		}
		c->len += output.pos;
	} while (input.pos < input.size || (how != ZSTD_e_continue && remaining != 0));
	return true;
}

/* A new level: the frame under way ends here, and the batch starts the next one at it. */
static bool codec_zstd_apply_level(struct codec *c, char *err, size_t errlen)
{
	if (c->frame_level == c->level)
		return true;
	if (c->frame_level && !codec_zstd_feed(c, NULL, 0, ZSTD_e_end, err, errlen))
		return false;
	ZSTD_CCtx_reset(c->cctx, ZSTD_reset_session_only);
	if (!codec_zstd_params(c->cctx, c->level)) {
		snprintf(err, errlen, "zstd refused level %d", c->level);
		return false;
	}
	c->frame_level = c->level;
	return true;
}

static bool codec_zstd_compress(struct codec *c, const uint8_t *in, size_t len, size_t max_out,
		char *err, size_t errlen)
{
	uint8_t form = CODEC_BATCH_AS_IS;
	const uint8_t *data = in;
	size_t data_len = len;

	(void)max_out;
	c->len = 0;
	if (!codec_zstd_apply_level(c, err, errlen))
		return false;
	if (c->pack && batchpack_packable(in, len)) {
		if (!batchpack_pack(c->pack, in, len, &data, &data_len)) {
			snprintf(err, errlen, "out of memory");
			return false;
		}
		form = CODEC_BATCH_PACKED;
	}
	c->bytes_packed += 1 + data_len;
	/* e_flush ends the batch on a block boundary but keeps the window */
	return codec_zstd_feed(c, &form, 1, ZSTD_e_continue, err, errlen) &&
	       codec_zstd_feed(c, data, data_len, ZSTD_e_flush, err, errlen);
}

/* ---------------------------------------------------------------- decoder */

/* Inflates in into buf, at most limit bytes. */
static bool codec_zstd_inflate(struct codec *c, const uint8_t *in, size_t len, size_t limit,
		char *err, size_t errlen)
{
	ZSTD_inBuffer input = { in, len, 0 };

	c->len = 0;
	for (;;) {
		ZSTD_outBuffer output;
		size_t ret;

		/*
		 * Exactly limit may fill the buffer to its end: one more call
		 * (producing nothing) tells that apart from more to come.
		 */
		if (c->len > limit) {
			snprintf(err, errlen, "batch inflates beyond %zu bytes", limit);
			return false;
		}
		if (!codec_grow(c, ZSTD_DStreamOutSize())) {
			snprintf(err, errlen, "out of memory");
			return false;
		}
		output = (ZSTD_outBuffer){ c->buf + c->len, c->cap - c->len, 0 };
		ret = ZSTD_decompressStream(c->dctx, &output, &input);
		if (ZSTD_isError(ret)) {
			snprintf(err, errlen, "could not decompress batch: %s", ZSTD_getErrorName(ret));
			return false;
		}
		c->len += output.pos;
		/*
		 * All input consumed and the output not filled: everything the
		 * sender flushed has come out (a frame that ended in the batch
		 * and the next one begun in it included).
		 */
		if (input.pos == input.size && output.pos < output.size)
			break;
	}
	if (c->len > limit) {
		snprintf(err, errlen, "batch inflates beyond %zu bytes", limit);
		return false;
	}
	return true;
}

static bool codec_zstd_decompress(struct codec *c, const uint8_t *in, size_t len, size_t max_out,
		char *err, size_t errlen)
{
	/* a packed batch is never longer than the batch: with its form byte, max_out + 1 */
	if (!codec_zstd_inflate(c, in, len, max_out < SIZE_MAX ? max_out + 1 : max_out, err, errlen))
		return false;
	if (c->len == 0) {
		snprintf(err, errlen, "batch has no form byte");
		return false;
	}
	switch (c->buf[0]) {
	case CODEC_BATCH_AS_IS:
		if (c->len - 1 > max_out) {
			snprintf(err, errlen, "batch inflates beyond %zu bytes", max_out);
			return false;
		}
		c->view = c->buf + 1;
		c->view_len = c->len - 1;
		return true;
	case CODEC_BATCH_PACKED:
		return batchpack_unpack(c->pack, c->buf + 1, c->len - 1, max_out, &c->view, &c->view_len,
					err, errlen);
	default:
		snprintf(err, errlen, "batch of an unknown form (%u)", (unsigned)c->buf[0]);
		return false;
	}
}

static void codec_zstd_reset(struct codec *c)
{
	if (c->cctx) {
		ZSTD_CCtx_reset(c->cctx, ZSTD_reset_session_only);
		c->frame_level = 0;
	}
	if (c->dctx)
		ZSTD_DCtx_reset(c->dctx, ZSTD_reset_session_only);
	if (c->pack)
		batchpack_reset(c->pack);
}

static void codec_zstd_free(struct codec *c)
{
	ZSTD_freeCCtx(c->cctx);
	ZSTD_freeDCtx(c->dctx);
	batchpack_free(c->pack);
}

/* ------------------------------------------------------------------- none */

static bool codec_none_run(struct codec *c, const uint8_t *in, size_t len, size_t max_out,
		char *err, size_t errlen)
{
	if (len > max_out) {
		snprintf(err, errlen, "batch of %zu bytes exceeds %zu", len, max_out);
		return false;
	}
	c->view = in;
	c->view_len = len;
	return true;
}

static void codec_none_reset(struct codec *c)
{
	(void)c;
}

static void codec_none_free(struct codec *c)
{
	(void)c;
}

static const struct codec_ops codec_zstd_encoder = {
	true, codec_zstd_compress, codec_zstd_reset, codec_zstd_free,
};
static const struct codec_ops codec_zstd_decoder = {
	true, codec_zstd_decompress, codec_zstd_reset, codec_zstd_free,
};
static const struct codec_ops codec_none = {
	false, codec_none_run, codec_none_reset, codec_none_free,
};

/* ------------------------------------------------------------------- API */

static bool codec_level_valid(int level)
{
	return level >= ZSTD_minCLevel() && level <= ZSTD_maxCLevel() && level != 0;
}

struct codec *codec_new_encoder(enum config_codec kind, int level, enum codec_content content)
{
	struct codec *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	if (kind == CONFIG_CODEC_NONE) {
		c->ops = &codec_none;
		return c;
	}
	c->ops = &codec_zstd_encoder;
	c->cctx = ZSTD_createCCtx();
	if (content == CODEC_CONTENT_PGOUTPUT)
		c->pack = batchpack_new();
	if (!c->cctx || (content == CODEC_CONTENT_PGOUTPUT && !c->pack) || !codec_level_valid(level)) {
		codec_free(c);
		return NULL;
	}
	c->level = level;
	return c;
}

bool codec_set_level(struct codec *c, int level)
{
	if (!c->cctx || !codec_level_valid(level))
		return false;
	c->level = level;
	return true;
}

int codec_level(const struct codec *c)
{
	return c->cctx ? c->level : 0;
}

struct codec *codec_new_decoder(enum config_codec kind)
{
	struct codec *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	if (kind == CONFIG_CODEC_NONE) {
		c->ops = &codec_none;
		return c;
	}
	c->ops = &codec_zstd_decoder;
	c->dctx = ZSTD_createDCtx();
	c->pack = batchpack_new();
	/* a peer's frame cannot make us hold a larger window than our encoders use */
	if (!c->dctx || !c->pack ||
	    ZSTD_isError(ZSTD_DCtx_setParameter(c->dctx, ZSTD_d_windowLogMax, CODEC_WINDOW_LOG))) {
		codec_free(c);
		return NULL;
	}
	return c;
}

void codec_free(struct codec *c)
{
	if (!c)
		return;
	c->ops->free_state(c);
	free(c->buf);
	free(c);
}

bool codec_compresses(const struct codec *c)
{
	return c->ops->compresses;
}

bool codec_packs(const struct codec *c)
{
	return c->cctx && c->pack;
}

void codec_reset(struct codec *c)
{
	c->ops->reset(c);
}

bool codec_run(struct codec *c, const uint8_t *in, size_t len, size_t max_out,
		const uint8_t **out, size_t *out_len, char *err, size_t errlen)
{
	c->view = NULL;
	if (!c->ops->run(c, in, len, max_out, err, errlen))
		return false;
	*out = c->view ? c->view : c->buf;
	*out_len = c->view ? c->view_len : c->len;
	c->bytes_in += len;
	c->bytes_out += *out_len;
	return true;
}

uint64_t codec_bytes_in(const struct codec *c)
{
	return c->bytes_in;
}

uint64_t codec_bytes_out(const struct codec *c)
{
	return c->bytes_out;
}

uint64_t codec_bytes_packed(const struct codec *c)
{
	return c->bytes_packed;
}
