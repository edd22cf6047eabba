/*
 * msgjoin.h — joins the pieces of messages larger than a batch.
 *
 * A batch body is a sequence of messages (u32 big-endian length, then the
 * pgoutput message). A message larger than a relay frame (a row with a
 * value of hundreds of MB) travels in pieces: each batch but the last of it
 * says it continues (RELAY_BATCH_CONTINUES) and ends inside the message. The
 * sink's apply takes whole messages only, so the joiner keeps the unfinished
 * tail and hands out the whole messages that each batch completes. Memory
 * grows with the largest message, never with a transaction.
 *
 * A batch that says it continues must end inside a message, and one that
 * does not must end at a message boundary: anything else is a broken stream
 * (refused, never guessed at). A message longer than the joiner's limit is
 * refused before it is collected.
 *
 * Ownership: *out points into the batch given or into the joiner's buffer,
 * valid until the next call; msgjoin_done() then drops what was handed out.
 */
#ifndef STRAIT_MSGJOIN_H
#define STRAIT_MSGJOIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct msgjoin {
	uint8_t *buf;                /* the tail of an unfinished message, then what joins it */
	size_t len;
	size_t cap;
	size_t handed;               /* bytes of buf handed out by the last msgjoin_take() */
	size_t max_message;          /* the largest message taken (its length field) */
};

enum msgjoin_status {
	MSGJOIN_OK,
	MSGJOIN_NOMEM,
	MSGJOIN_TOO_BIG,             /* a message over max_message */
	MSGJOIN_BROKEN,              /* the continues flag disagrees with the data */
};

void msgjoin_init(struct msgjoin *j, size_t max_message);
void msgjoin_free(struct msgjoin *j);

/* Forgets an unfinished message (a new generation sends it again from its start). */
void msgjoin_reset(struct msgjoin *j);

/* Bytes of an unfinished message held. */
size_t msgjoin_pending(const struct msgjoin *j);

/*
 * Takes one batch body; *out, *out_len: the whole messages it completes
 * (possibly none: *out_len 0). Not OK: why says what was wrong (sizes
 * included), and nothing changed.
 */
enum msgjoin_status msgjoin_take(struct msgjoin *j, const uint8_t *body, size_t len,
		bool continues, const uint8_t **out, size_t *out_len, char *why, size_t whylen);

/* The messages the last msgjoin_take() handed out were used: drop them. */
void msgjoin_done(struct msgjoin *j);

#endif
