/*
 * syncrange.c — ranges of a table's heap for the initial copy (see
 * syncrange.h).
 */
#include "replicator/syncrange.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool syncrange_supported(int server_version)
{
	return server_version >= 140000;
}

uint32_t syncrange_count(uint64_t size, uint64_t nblocks, uint64_t split_above)
{
	uint64_t unit, n;

	if (split_above == 0 || size <= split_above || nblocks < 2)
		return 1;
	unit = split_above / SYNCRANGE_PER_THRESHOLD;
	if (unit == 0)
		unit = 1;
	n = size / unit + (size % unit != 0);
	if (n > SYNCRANGE_MAX)
		n = SYNCRANGE_MAX;
	if (n > nblocks)
		n = nblocks;
	return (uint32_t)n;
}

void syncrange_bounds(uint64_t nblocks, uint32_t n, uint32_t k, uint64_t *first, uint64_t *end)
{
	/* even shares: range k starts at floor(k * nblocks / n) */
	*first = n ? (uint64_t)((unsigned __int128)nblocks * k / n) : 0;
	*end = n ? (uint64_t)((unsigned __int128)nblocks * (k + 1) / n) : nblocks;
}

/* ---- sets ---- */

static size_t syncrange_words(uint32_t n)
{
	return n / 64 + 1;
}

bool syncrange_set_init(struct syncrange_set *s, uint32_t n)
{
	memset(s, 0, sizeof(*s));
	if (n > SYNCRANGE_MAX)
		return false;
	s->bits = calloc(syncrange_words(n), sizeof(*s->bits));
	if (!s->bits)
		return false;
	s->n = n;
	return true;
}

bool syncrange_set_init_full(struct syncrange_set *s, uint32_t n)
{
	if (!syncrange_set_init(s, n))
		return false;
	for (uint32_t k = 0; k < n; k++)
		syncrange_set_add(s, k);
	return true;
}

bool syncrange_set_copy(struct syncrange_set *dst, const struct syncrange_set *src)
{
	if (!syncrange_set_init(dst, src->n))
		return false;
	memcpy(dst->bits, src->bits, syncrange_words(src->n) * sizeof(*dst->bits));
	dst->count = src->count;
	return true;
}

void syncrange_set_free(struct syncrange_set *s)
{
	free(s->bits);
	memset(s, 0, sizeof(*s));
}

bool syncrange_set_add(struct syncrange_set *s, uint32_t k)
{
	uint64_t bit;

	if (k >= s->n)
		return false;
	bit = (uint64_t)1 << (k % 64);
	if (s->bits[k / 64] & bit)
		return false;
	s->bits[k / 64] |= bit;
	s->count++;
	return true;
}

bool syncrange_set_has(const struct syncrange_set *s, uint32_t k)
{
	return k < s->n && (s->bits[k / 64] >> (k % 64) & 1u);
}

char *syncrange_set_format(const struct syncrange_set *s)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);
	bool ok = out != NULL, first = true;

	for (uint32_t k = 0; ok && k < s->n; k++) {
		uint32_t end = k;

		if (!syncrange_set_has(s, k))
			continue;
		while (end + 1 < s->n && syncrange_set_has(s, end + 1))
			end++;
		ok = (end == k ? fprintf(out, "%s%u", first ? "" : ",", k) :
			fprintf(out, "%s%u-%u", first ? "" : ",", k, end)) > 0;
		first = false;
		k = end;
	}
	if (!out)
		return NULL;
	if (fclose(out) != 0 || !ok) {
		free(buf);
		return NULL;
	}
	return buf;
}

/* A number without sign or leading zero at text[*pos], below limit. */
static bool syncrange_number(const char *text, size_t len, size_t *pos, uint32_t limit,
		uint32_t *out)
{
	size_t start = *pos;
	uint64_t v = 0;

	while (*pos < len && text[*pos] >= '0' && text[*pos] <= '9') {
		v = v * 10 + (uint64_t)(text[*pos] - '0');
		if (v >= limit)
			return false;
		(*pos)++;
	}
	if (*pos == start || (text[start] == '0' && *pos - start > 1))
		return false;
	*out = (uint32_t)v;
	return true;
}

bool syncrange_set_parse(const char *text, size_t len, uint32_t n, struct syncrange_set *out)
{
	size_t pos = 0;
	bool any = false;
	uint32_t next = 0;      /* the lowest a run may start at */

	if (!syncrange_set_init(out, n))
		return false;
	while (pos < len) {
		uint32_t a, b;

		if (any && text[pos++] != ',')
			goto bad;
		if (!syncrange_number(text, len, &pos, n, &a) || (any && a <= next))
			goto bad;
		b = a;
		if (pos < len && text[pos] == '-') {
			pos++;
			if (!syncrange_number(text, len, &pos, n, &b) || b <= a)
				goto bad;
		}
		for (uint32_t k = a; k <= b; k++)
			syncrange_set_add(out, k);
		next = b + 1;      /* a following run must leave a gap */
		any = true;
	}
	if (any)
		return true;
bad:
	syncrange_set_free(out);
	return false;
}
