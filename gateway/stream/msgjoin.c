/*
 * msgjoin.c — joins the pieces of messages larger than a batch (msgjoin.h).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/be32.h"
#include "gateway/stream/msgjoin.h"

/* A buffer this big or smaller is kept for the next message; a bigger one goes. */
#define MSGJOIN_KEEP (1u * 1024u * 1024u)

/*
 * The offset just after the last whole message of p[0..len); *next: the
 * length field of the unfinished message after it (0 while its length field
 * is not all there, or when there is none).
 */
static size_t whole_prefix(const uint8_t *p, size_t len, uint32_t *next)
{
	size_t off = 0;

	*next = 0;
	while (len - off >= 4) {
		uint32_t n = be32_load(p + off);

		if (n > len - off - 4) {
			*next = n;
			break;
		}
		off += 4 + (size_t)n;
	}
	return off;
}

void msgjoin_init(struct msgjoin *j, size_t max_message)
{
	*j = (struct msgjoin){ .max_message = max_message };
}

void msgjoin_free(struct msgjoin *j)
{
	free(j->buf);
	*j = (struct msgjoin){ .max_message = j->max_message };
}

void msgjoin_reset(struct msgjoin *j)
{
	j->len = 0;
	j->handed = 0;
	if (j->cap > MSGJOIN_KEEP)
		msgjoin_free(j);
}

size_t msgjoin_pending(const struct msgjoin *j)
{
	return j->len - j->handed;
}

static bool reserve(struct msgjoin *j, size_t need)
{
	uint8_t *p;
	size_t cap;

	if (need <= j->cap)
		return true;
	cap = j->cap ? j->cap : 64u * 1024u;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	if (!(p = realloc(j->buf, cap)))
		return false;
	j->buf = p;
	j->cap = cap;
	return true;
}

/* Checks what the data ends with against what the batch said; false with why. */
static enum msgjoin_status check_end(const struct msgjoin *j, size_t whole, size_t len,
		uint32_t next, bool continues, char *why, size_t whylen)
{
	if (next > j->max_message) {
		snprintf(why, whylen, "a message of %" PRIu32 " bytes is over the limit of %zu bytes",
			 next, j->max_message);
		return MSGJOIN_TOO_BIG;
	}
	if (continues && whole == len) {
		snprintf(why, whylen, "a batch says it ends inside a message, but its last message "
			 "is whole");
		return MSGJOIN_BROKEN;
	}
	if (!continues && whole != len) {
		snprintf(why, whylen, "a batch ends %zu bytes into a message, but does not say it "
			 "continues", len - whole);
		return MSGJOIN_BROKEN;
	}
	return MSGJOIN_OK;
}

enum msgjoin_status msgjoin_take(struct msgjoin *j, const uint8_t *body, size_t len,
		bool continues, const uint8_t **out, size_t *out_len, char *why, size_t whylen)
{
	enum msgjoin_status st;
	size_t old, whole;
	uint32_t next;

	msgjoin_done(j);
	old = j->len;
	if (old == 0 && !continues) {
		/* the common case: whole messages, taken where they are */
		whole = whole_prefix(body, len, &next);
		if ((st = check_end(j, whole, len, next, false, why, whylen)) != MSGJOIN_OK)
			return st;
		*out = body;
		*out_len = len;
		return MSGJOIN_OK;
	}
	if (len > SIZE_MAX - old || !reserve(j, old + len)) {
		snprintf(why, whylen, "out of memory joining a message of %zu bytes so far", old + len);
		return MSGJOIN_NOMEM;
	}
	memcpy(j->buf + old, body, len);
	j->len = old + len;
	whole = whole_prefix(j->buf, j->len, &next);
	if ((st = check_end(j, whole, j->len, next, continues, why, whylen)) != MSGJOIN_OK) {
		j->len = old;
		return st;
	}
	/* room for the whole unfinished message now: no doubling past it later */
	if (next && !reserve(j, whole + 4 + (size_t)next)) {
		j->len = old;
		snprintf(why, whylen, "out of memory for a message of %" PRIu32 " bytes", next);
		return MSGJOIN_NOMEM;
	}
	*out = j->buf;
	*out_len = whole;
	j->handed = whole;
	return MSGJOIN_OK;
}

void msgjoin_done(struct msgjoin *j)
{
	if (!j->handed)
		return;
	memmove(j->buf, j->buf + j->handed, j->len - j->handed);
	j->len -= j->handed;
	j->handed = 0;
	if (j->len == 0 && j->cap > MSGJOIN_KEEP)
		msgjoin_free(j);
}
