/*
 * codec.c — zstd streaming compression per stream and direction (see codec.h).
 */
#include "gateway/stream/codec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

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
	uint8_t *buf;          /* output, reused across calls */
	size_t len;
	size_t cap;
	const uint8_t *view;   /* for "none": the input itself, no copy */
	uint64_t bytes_in;
	uint64_t bytes_out;
	int level;             /* an encoder's zstd level now */
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

static bool codec_zstd_compress(struct codec *c, const uint8_t *in, size_t len, size_t max_out,
		char *err, size_t errlen)
{
	ZSTD_inBuffer input = { in, len, 0 };
	size_t remaining;

	(void)max_out;
	c->len = 0;
	do {
		ZSTD_outBuffer output;

		if (!codec_grow(c, ZSTD_CStreamOutSize())) {
			snprintf(err, errlen, "out of memory");
			return false;
		}
		output = (ZSTD_outBuffer){ c->buf + c->len, c->cap - c->len, 0 };
		/* e_flush ends the batch on a block boundary but keeps the window. */
		remaining = ZSTD_compressStream2(c->cctx, &output, &input, ZSTD_e_flush);
		if (ZSTD_isError(remaining)) {
			snprintf(err, errlen, "could not compress batch: %s", ZSTD_getErrorName(remaining));
			return false;
		}
		c->len += output.pos;
	} while (remaining != 0 || input.pos < input.size);
	return true;
}

static bool codec_zstd_decompress(struct codec *c, const uint8_t *in, size_t len, size_t max_out,
		char *err, size_t errlen)
{
	ZSTD_inBuffer input = { in, len, 0 };

	c->len = 0;
	for (;;) {
		ZSTD_outBuffer output;
		size_t ret;

		/*
		 * Exactly max_out may fill the buffer to its end: one more call
		 * (producing nothing) tells that apart from more to come.
		 */
		if (c->len > max_out) {
			snprintf(err, errlen, "batch inflates beyond %zu bytes", max_out);
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
		 * sender flushed has come out.
		 */
		if (input.pos == input.size && output.pos < output.size)
			break;
	}
	if (c->len > max_out) {
		snprintf(err, errlen, "batch inflates beyond %zu bytes", max_out);
		return false;
	}
	return true;
}

static void codec_zstd_reset(struct codec *c)
{
	if (c->cctx)
		ZSTD_CCtx_reset(c->cctx, ZSTD_reset_session_only);
	if (c->dctx)
		ZSTD_DCtx_reset(c->dctx, ZSTD_reset_session_only);
}

static void codec_zstd_free(struct codec *c)
{
	ZSTD_freeCCtx(c->cctx);
	ZSTD_freeDCtx(c->dctx);
}

static bool codec_none_run(struct codec *c, const uint8_t *in, size_t len, size_t max_out,
		char *err, size_t errlen)
{
	if (len > max_out) {
		snprintf(err, errlen, "batch of %zu bytes exceeds %zu", len, max_out);
		return false;
	}
	c->view = in;
	c->len = len;
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

struct codec *codec_new_encoder(enum config_codec kind, int level)
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
	if (!c->cctx ||
	    ZSTD_isError(ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_compressionLevel, level)) ||
	    ZSTD_isError(ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_checksumFlag, 0))) {
		codec_free(c);
		return NULL;
	}
	c->level = level;
	return c;
}

bool codec_set_level(struct codec *c, int level)
{
	/* the level (not the window) may change inside a frame: the next block uses it */
	if (!c->cctx || ZSTD_isError(ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_compressionLevel, level)))
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
	if (!c->dctx) {
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
	*out_len = c->len;
	c->bytes_in += len;
	c->bytes_out += c->len;
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
