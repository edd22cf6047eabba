/*
 * writeset.c — a map of 64-bit keys to owners (see writeset.h).
 */
#include "replicator/writeset.h"

#include <stdlib.h>
#include <string.h>

#define WRITESET_MIN_CAP 64

static uint64_t writeset_stored(uint64_t key)
{
	return key ? key : 1;
}

/* The slot a key hashes to: the key is already a hash, its low bits will do after a mix. */
static size_t writeset_home(const struct writeset *w, uint64_t key)
{
	return (size_t)((key * 0x9e3779b97f4a7c15ull) >> 7) & (w->cap - 1);
}

void writeset_init(struct writeset *w)
{
	memset(w, 0, sizeof(*w));
}

void writeset_free(struct writeset *w)
{
	free(w->keys);
	free(w->owners);
	writeset_init(w);
}

void writeset_clear(struct writeset *w)
{
	if (w->cap)
		memset(w->keys, 0, w->cap * sizeof(*w->keys));
	w->count = 0;
}

static bool writeset_grow(struct writeset *w)
{
	size_t cap = w->cap ? 2 * w->cap : WRITESET_MIN_CAP;
	uint64_t *keys = calloc(cap, sizeof(*keys)), *owners = malloc(cap * sizeof(*owners));
	struct writeset old = *w;

	if (!keys || !owners) {
		free(keys);
		free(owners);
		return false;
	}
	w->keys = keys;
	w->owners = owners;
	w->cap = cap;
	for (size_t i = 0; i < old.cap; i++) {
		size_t s;

		if (!old.keys[i])
			continue;
		for (s = writeset_home(w, old.keys[i]); w->keys[s]; s = (s + 1) & (cap - 1))
			;
		w->keys[s] = old.keys[i];
		w->owners[s] = old.owners[i];
	}
	free(old.keys);
	free(old.owners);
	return true;
}

/* The slot holding key, or the empty slot where it would go. */
static size_t writeset_find(const struct writeset *w, uint64_t key)
{
	size_t s = writeset_home(w, key);

	while (w->keys[s] && w->keys[s] != key)
		s = (s + 1) & (w->cap - 1);
	return s;
}

uint64_t writeset_get(const struct writeset *w, uint64_t key)
{
	size_t s;

	if (!w->cap)
		return 0;
	key = writeset_stored(key);
	s = writeset_find(w, key);
	return w->keys[s] ? w->owners[s] : 0;
}

bool writeset_put(struct writeset *w, uint64_t key, uint64_t owner, uint64_t *prev)
{
	size_t s;

	key = writeset_stored(key);
	/* at most half full: probe chains stay short */
	if ((w->count + 1) * 2 > w->cap && !writeset_grow(w))
		return false;
	s = writeset_find(w, key);
	if (prev)
		*prev = w->keys[s] ? w->owners[s] : 0;
	if (!w->keys[s]) {
		w->keys[s] = key;
		w->count++;
	}
	w->owners[s] = owner;
	return true;
}

void writeset_forget(struct writeset *w, uint64_t key, uint64_t owner)
{
	size_t hole, s;

	if (!w->cap)
		return;
	key = writeset_stored(key);
	hole = writeset_find(w, key);
	if (!w->keys[hole] || w->owners[hole] != owner)
		return;
	w->keys[hole] = 0;
	w->count--;
	/* shift back every later entry of the chain that may sit in the hole */
	for (s = (hole + 1) & (w->cap - 1); w->keys[s]; s = (s + 1) & (w->cap - 1)) {
		size_t home = writeset_home(w, w->keys[s]);
		bool movable = hole <= s ? (home <= hole || home > s) : (home <= hole && home > s);

		if (!movable)
			continue;
		w->keys[hole] = w->keys[s];
		w->owners[hole] = w->owners[s];
		w->keys[s] = 0;
		hole = s;
	}
}

uint64_t writeset_hash_add(uint64_t h, const void *data, size_t len)
{
	const unsigned char *p = data;

	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

uint64_t writeset_hash_finish(uint64_t h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ull;
	h ^= h >> 33;
	return h;
}
