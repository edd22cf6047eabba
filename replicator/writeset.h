/*
 * writeset.h — a map from 64-bit keys to 64-bit owners, for parallel apply:
 * which in-flight source transaction last wrote a row (the key is a hash of
 * the relation and its replica-identity values), and which Relation message
 * version a worker session was given last.
 *
 * Open addressing with linear probing; removal shifts the probe chain back,
 * so no tombstones pile up however many keys come and go. Key 0 is stored
 * as 1: a collision only makes two rows look the same, which for the
 * writeset means two transactions look dependent (applied one after the
 * other), never the reverse.
 *
 * Return conventions: bool, false when out of memory (the map is unchanged).
 */
#ifndef STRAIT_WRITESET_H
#define STRAIT_WRITESET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct writeset {
	uint64_t *keys;              /* 0: empty slot */
	uint64_t *owners;
	size_t cap;                  /* power of two, or 0 */
	size_t count;
};

void writeset_init(struct writeset *w);
void writeset_free(struct writeset *w);
/* Empties the map, keeping its memory. */
void writeset_clear(struct writeset *w);
/* The owner of key; 0 when it has none. */
uint64_t writeset_get(const struct writeset *w, uint64_t key);
/* Sets key's owner (not 0); *prev (may be NULL) gets the one it had, or 0. */
bool writeset_put(struct writeset *w, uint64_t key, uint64_t owner, uint64_t *prev)
	__attribute__((warn_unused_result));
/* Removes key when owner still owns it. */
void writeset_forget(struct writeset *w, uint64_t key, uint64_t owner);

/* Hashing of key material: start with writeset_hash_start(), add bytes, finish. */
static inline uint64_t writeset_hash_start(void)
{
	return 0xcbf29ce484222325ull;
}
uint64_t writeset_hash_add(uint64_t h, const void *data, size_t len);
uint64_t writeset_hash_finish(uint64_t h);

#endif
