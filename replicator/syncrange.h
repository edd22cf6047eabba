/*
 * syncrange.h — a large table's initial copy cut into ranges of its heap's
 * blocks, each copied, loaded and recorded on its own: how many ranges a
 * table gets, which blocks each covers, and sets of range numbers with the
 * text form the plan carries ("0-3,7,9-11").
 *
 * Ranges are by block (ctid), not by key: every row visible in a snapshot
 * sits in exactly one block, so the ranges of one snapshot partition the
 * table whatever its keys, and PostgreSQL 14's TID Range Scan reads only a
 * range's blocks. The first range has no lower bound and the last no upper
 * one, so a row in a block past the size read at listing time is still in
 * exactly one range.
 *
 * Return conventions: bool, false when out of memory or (parsing) when the
 * text is not a canonical list.
 */
#ifndef STRAIT_SYNCRANGE_H
#define STRAIT_SYNCRANGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SYNCRANGE_MUSTCHECK __attribute__((warn_unused_result))

/* Ranges of one table at most (and the most a plan from the peer may name). */
#define SYNCRANGE_MAX 4096u
/* A split table's ranges are about split_above / SYNCRANGE_PER_THRESHOLD bytes each. */
#define SYNCRANGE_PER_THRESHOLD 8u

/* Whether a source of this version can read a block range alone (TID Range Scan, 14). */
bool syncrange_supported(int server_version);

/*
 * How many ranges a table of size bytes in nblocks blocks is copied in: 1
 * when split_above is 0 or the table is not larger, else one per
 * split_above / SYNCRANGE_PER_THRESHOLD bytes, at most SYNCRANGE_MAX and at
 * most one per block.
 */
uint32_t syncrange_count(uint64_t size, uint64_t nblocks, uint64_t split_above);

/*
 * Range k of n over nblocks: blocks [*first, *end). Range 0 starts at block
 * 0 and range n - 1 ends at nblocks; callers leave those bounds open.
 */
void syncrange_bounds(uint64_t nblocks, uint32_t n, uint32_t k, uint64_t *first, uint64_t *end);

/* A set of range numbers below n. */
struct syncrange_set {
	uint32_t n;
	uint32_t count;          /* members */
	uint64_t *bits;
};

/* An empty set over [0, n); n at most SYNCRANGE_MAX. */
bool syncrange_set_init(struct syncrange_set *s, uint32_t n) SYNCRANGE_MUSTCHECK;
/* Every range of [0, n). */
bool syncrange_set_init_full(struct syncrange_set *s, uint32_t n) SYNCRANGE_MUSTCHECK;
bool syncrange_set_copy(struct syncrange_set *dst, const struct syncrange_set *src)
	SYNCRANGE_MUSTCHECK;
void syncrange_set_free(struct syncrange_set *s);
/* Adds k (below n); whether it was new. */
bool syncrange_set_add(struct syncrange_set *s, uint32_t k);
bool syncrange_set_has(const struct syncrange_set *s, uint32_t k);
static inline bool syncrange_set_full(const struct syncrange_set *s)
{
	return s->n > 0 && s->count == s->n;
}

/* "0-3,7": ascending, runs joined; malloc'd, NULL when out of memory. An empty set is "". */
char *syncrange_set_format(const struct syncrange_set *s);
/*
 * Parses a non-empty list as syncrange_set_format() writes it, every member
 * below n, into out (initialised here; left empty on failure). Refuses
 * anything not canonical: descending or touching runs, "a-a", leading zeros,
 * signs, spaces.
 */
bool syncrange_set_parse(const char *text, size_t len, uint32_t n, struct syncrange_set *out)
	SYNCRANGE_MUSTCHECK;

#endif
