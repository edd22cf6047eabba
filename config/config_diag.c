/*
 * config_diag.c — diagnostics: collecting them, sorting them by position and
 * printing them the way compilers do, with the offending line and a caret, so
 * an operator sees every problem of a file at once and where it is.
 *
 * A source line that holds a password (a connection string's password= or a
 * URI's user:password@) is never copied into a diagnostic.
 */
#include "config/config_int.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SOURCE_LINE_MAX 512

/* True when the line may show a secret. */
static bool line_has_secret(const char *p, size_t len)
{
	const char *scheme = NULL;

	for (size_t i = 0; i + 8 <= len; i++)
		if (strncasecmp(p + i, "password", 8) == 0)
			return true;
	for (size_t i = 0; i + 3 <= len; i++) {
		if (memcmp(p + i, "://", 3) == 0) {
			scheme = p + i + 3;
			break;
		}
	}
	if (scheme) {
		/* user:password@host */
		const char *end = p + len, *colon = NULL;

		for (const char *q = scheme; q < end && *q != '/'; q++) {
			if (*q == ':' && !colon)
				colon = q;
			if (*q == '@' && colon)
				return true;
		}
	}
	return false;
}

/* A copy of line number line (1-based) of src, control characters made visible. */
static char *source_line(const struct config_source *src, int line)
{
	const char *p, *end, *eol;
	size_t len;
	char *copy;

	if (!src || !src->text || line <= 0)
		return NULL;
	p = src->text;
	end = src->text + src->len;
	for (int n = 1; n < line; n++) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));

		if (!nl)
			return NULL;
		p = nl + 1;
	}
	eol = memchr(p, '\n', (size_t)(end - p));
	len = (size_t)((eol ? eol : end) - p);
	if (len > 0 && p[len - 1] == '\r')
		len--;
	if (line_has_secret(p, len))
		return NULL;
	if (len > SOURCE_LINE_MAX)
		len = SOURCE_LINE_MAX;
	copy = malloc(len + 1);
	if (!copy)
		return NULL;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)p[i];

		copy[i] = (c < 0x20 && c != '\t') || c == 0x7f ? '?' : (char)c;
	}
	copy[len] = '\0';
	return copy;
}

void config_diag_add(struct config_diags *diags, const struct config_source *src,
		const char *file, int line, int column, const char *key, const char *fmt, ...)
{
	struct config_diag d;
	char msg[CONFIG_ERR_MAX];
	va_list ap;

	if (!diags)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (diags->count == diags->capacity) {
		size_t cap = diags->capacity ? diags->capacity * 2 : 16;
		struct config_diag *grown = realloc(diags->items, cap * sizeof(*grown));

		if (!grown)
			return;
		diags->items = grown;
		diags->capacity = cap;
	}
	memset(&d, 0, sizeof(d));
	d.file = strdup(file ? file : "");
	d.line = line;
	d.column = column;
	d.key = key && *key ? strdup(key) : NULL;
	d.message = strdup(msg);
	d.source_line = source_line(src, line);
	if (!d.file || !d.message) {
		free(d.file);
		free(d.key);
		free(d.message);
		free(d.source_line);
		return;
	}
	diags->items[diags->count++] = d;
}

static bool diag_before(const struct config_diag *a, const struct config_diag *b)
{
	return a->line < b->line || (a->line == b->line && a->column < b->column);
}

void config_diags_sort(struct config_diags *diags, size_t from)
{
	/* Insertion sort: stable, and a file holds at most CONFIG_MAX_ERRORS + 1. */
	for (size_t i = from + 1; i < diags->count; i++) {
		struct config_diag d = diags->items[i];
		size_t j = i;

		while (j > from && diag_before(&d, &diags->items[j - 1])) {
			diags->items[j] = diags->items[j - 1];
			j--;
		}
		diags->items[j] = d;
	}
}

/* Blanks up to the 1-based column, keeping tabs so the caret lines up. */
static void print_caret(FILE *out, const char *line, int column)
{
	int col = 1;

	for (const char *p = line; *p && col < column; p++) {
		/* Continuation bytes of UTF-8 share the column of their lead byte. */
		if (((unsigned char)*p & 0xc0) == 0x80)
			continue;
		fputc(*p == '\t' ? '\t' : ' ', out);
		col++;
	}
	fputs("^\n", out);
}

void config_diags_print(FILE *out, const struct config_diags *diags)
{
	if (!diags)
		return;
	for (size_t i = 0; i < diags->count; i++) {
		const struct config_diag *d = &diags->items[i];

		if (d->line > 0 && d->column > 0)
			fprintf(out, "%s:%d:%d: error: ", d->file, d->line, d->column);
		else if (d->line > 0)
			fprintf(out, "%s:%d: error: ", d->file, d->line);
		else
			fprintf(out, "%s: error: ", d->file);
		if (d->key)
			fprintf(out, "%s: ", d->key);
		fprintf(out, "%s\n", d->message);
		if (d->source_line && d->line > 0) {
			fprintf(out, "%5d | %s\n", d->line, d->source_line);
			if (d->column > 0) {
				fputs("      | ", out);
				print_caret(out, d->source_line, d->column);
			}
		}
	}
}

void config_diags_free(struct config_diags *diags)
{
	if (!diags)
		return;
	for (size_t i = 0; i < diags->count; i++) {
		free(diags->items[i].file);
		free(diags->items[i].key);
		free(diags->items[i].message);
		free(diags->items[i].source_line);
	}
	free(diags->items);
	diags->items = NULL;
	diags->count = 0;
	diags->capacity = 0;
}
