/*
 * relcache.h — makes batch bodies self-contained for the spool.
 *
 * pgoutput sends a relation's Relation message once per walsender session,
 * before the first change to it (and again after the relation changes). A
 * sink that resumes in the middle of the spool has not seen the Relation
 * messages of earlier records, so each record must carry them itself: the
 * source passes every batch body through relcache_complete(), which learns
 * the Relation messages the body holds and puts in front of it the ones it
 * lacks for the changes it carries, as the stream defined them at that
 * point. A sink takes a Relation message it already knows as a no-op.
 *
 * A batch body is a sequence of messages, each a u32 big-endian length and
 * the pgoutput message (protocol version 2: outside a streamed block a
 * change starts with its type byte and the relation OID). Streamed blocks
 * (Stream Start ... Stream Stop) are left alone, and the Relation messages a
 * body lacks go before its first message outside one. A piece of a larger batch may
 * start with the end of a message begun in the piece before (lead bytes,
 * left as they are) and end inside one.
 *
 * Ownership: the cache owns copies of the Relation messages; *out is valid
 * until the next call or relcache_free().
 */
#ifndef STRAIT_RELCACHE_H
#define STRAIT_RELCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct relcache;

/* NULL when out of memory. */
struct relcache *relcache_new(void);
void relcache_free(struct relcache *rc);

/*
 * *out and *out_len: the body with the Relation messages it lacks put in
 * front of its first whole message, after the lead bytes (body itself when
 * it lacks none); continues: the body ends inside a message. False when the
 * body is not a sequence of messages, or out of memory; *out is then body,
 * unchanged.
 */
bool relcache_complete(struct relcache *rc, const uint8_t *body, size_t len, size_t lead,
		bool continues, const uint8_t **out, size_t *out_len);

/* Relations known. */
size_t relcache_count(const struct relcache *rc);

#endif
