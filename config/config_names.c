/*
 * config_names.c — the name rules of strait.yaml and the "did you mean"
 * suggestions for misspelt keys and site names.
 *
 * Site and stream names become replication slot, origin and file names, so
 * they are short lowercase identifiers ([a-z][a-z0-9_-]{0,62}). Publication
 * names are lowercase PostgreSQL identifiers that need no quoting; table names
 * are "table" or "schema.table", each part an unquoted lowercase identifier or
 * a double-quoted one, at most 63 bytes (NAMEDATALEN - 1).
 */
#include "config/config_int.h"

#include <string.h>

#define NAME_MAX_LEN 63
#define IFNAME_MAX_LEN 15           /* IFNAMSIZ - 1 */
#define SUGGEST_MAX_LEN 64

static bool is_lower(char c)
{
	return c >= 'a' && c <= 'z';
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

bool config_valid_name(const char *text)
{
	size_t len = strlen(text);

	if (len == 0 || len > NAME_MAX_LEN || !is_lower(text[0]))
		return false;
	for (size_t i = 1; i < len; i++)
		if (!is_lower(text[i]) && !is_digit(text[i]) && text[i] != '_' && text[i] != '-')
			return false;
	return true;
}

/* Length of an unquoted lowercase identifier at p, or 0. */
static size_t plain_ident(const char *p)
{
	size_t n = 0;

	if (!is_lower(p[0]) && p[0] != '_')
		return 0;
	while (is_lower(p[n]) || is_digit(p[n]) || p[n] == '_' || p[n] == '$')
		n++;
	return n;
}

bool config_valid_pgname(const char *text)
{
	size_t n = plain_ident(text);

	return n > 0 && n <= NAME_MAX_LEN && text[n] == '\0';
}

/* One part of a table name at p; returns its length in the text, or 0. */
static size_t table_part(const char *p)
{
	size_t n, bytes = 0;

	if (*p != '"') {
		n = plain_ident(p);
		return n <= NAME_MAX_LEN ? n : 0;
	}
	/* "quoted", with "" for a quote inside */
	n = 1;
	for (;;) {
		if (p[n] == '\0')
			return 0;
		if (p[n] == '"') {
			if (p[n + 1] != '"')
				break;
			n++;
		}
		n++;
		bytes++;
	}
	if (bytes == 0 || bytes > NAME_MAX_LEN)
		return 0;
	return n + 1;
}

bool config_valid_table(const char *text)
{
	size_t a = table_part(text), b;

	if (a == 0)
		return false;
	if (text[a] == '\0')
		return true;
	if (text[a] != '.')
		return false;
	b = table_part(text + a + 1);
	return b > 0 && text[a + 1 + b] == '\0';
}

bool config_valid_ifname(const char *text)
{
	size_t len = strlen(text);

	if (len == 0 || len > IFNAME_MAX_LEN || strcmp(text, ".") == 0 || strcmp(text, "..") == 0)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = text[i];

		if (!is_lower(c) && !is_digit(c) && !(c >= 'A' && c <= 'Z') &&
		    c != '_' && c != '-' && c != '.')
			return false;
	}
	return true;
}

/* Optimal string alignment distance: edits and swaps of neighbours cost 1. */
static unsigned edit_distance(const char *a, const char *b)
{
	unsigned d[SUGGEST_MAX_LEN + 1][SUGGEST_MAX_LEN + 1];
	size_t la = strlen(a), lb = strlen(b);

	if (la > SUGGEST_MAX_LEN || lb > SUGGEST_MAX_LEN)
		return ~0u;
	for (size_t i = 0; i <= la; i++)
		d[i][0] = (unsigned)i;
	for (size_t j = 0; j <= lb; j++)
		d[0][j] = (unsigned)j;
	for (size_t i = 1; i <= la; i++) {
		for (size_t j = 1; j <= lb; j++) {
			unsigned cost = a[i - 1] == b[j - 1] ? 0 : 1;
			unsigned best = d[i - 1][j] + 1;

			if (d[i][j - 1] + 1 < best)
				best = d[i][j - 1] + 1;
			if (d[i - 1][j - 1] + cost < best)
				best = d[i - 1][j - 1] + cost;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
			    d[i - 2][j - 2] + 1 < best)
				best = d[i - 2][j - 2] + 1;
			d[i][j] = best;
		}
	}
	return d[la][lb];
}

const char *config_suggest(const char *word, const char *const *cands, size_t n)
{
	size_t len = strlen(word);
	unsigned limit = len <= 3 ? 1 : len <= 6 ? 2 : (unsigned)(len / 3);
	unsigned best = ~0u;
	const char *found = NULL;

	if (limit > 4)
		limit = 4;
	for (size_t i = 0; i < n; i++) {
		unsigned dist = edit_distance(word, cands[i]);

		if (dist < best) {
			best = dist;
			found = cands[i];
		}
	}
	return best <= limit ? found : NULL;
}
