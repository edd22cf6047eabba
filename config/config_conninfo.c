/*
 * config_conninfo.c — libpq connection strings: checked with libpq's own
 * PQconninfoParse, so strait accepts exactly what libpq will, both the
 * keyword=value and the postgresql:// URI forms.
 *
 * A password must never reach a log or a terminal: libpq's messages quote the
 * piece they choke on, which could be part of a password, so every quoted word
 * that is not a libpq keyword is replaced by "..."; the normalized print shows
 * a password as ********.
 */
#include "config/config_int.h"

#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#define HIDDEN "********"

/* True when word (len bytes) is one of libpq's connection keywords, or "=". */
static bool is_keyword(const char *word, size_t len)
{
	PQconninfoOption *opts;
	char *err = NULL;
	bool found = false;

	if (len == 1 && word[0] == '=')
		return true;
	/* Parsing an empty string lists every keyword, without reading the environment. */
	opts = PQconninfoParse("", &err);
	if (err)
		PQfreemem(err);
	if (!opts)
		return false;
	for (PQconninfoOption *o = opts; o->keyword; o++) {
		if (strlen(o->keyword) == len && memcmp(o->keyword, word, len) == 0) {
			found = true;
			break;
		}
	}
	PQconninfoFree(opts);
	return found;
}

/* Copies libpq's message into err with quoted non-keywords masked. */
static void scrub_message(const char *msg, char *err, size_t errlen)
{
	size_t o = 0;

	if (errlen == 0)
		return;
	for (const char *p = msg; *p && o + 1 < errlen; p++) {
		const char *close;

		if (*p == '\n' || *p == '\r')
			continue;
		if (*p != '"' || !(close = strchr(p + 1, '"'))) {
			err[o++] = *p;
			continue;
		}
		if (is_keyword(p + 1, (size_t)(close - p - 1))) {
			size_t n = (size_t)(close - p + 1);

			if (n > errlen - 1 - o)
				n = errlen - 1 - o;
			memcpy(err + o, p, n);
			o += n;
		} else {
			int n = snprintf(err + o, errlen - o, "\"...\"");

			o += n > 0 ? (size_t)n : 0;
			if (o >= errlen)
				o = errlen - 1;
		}
		p = close;
	}
	err[o] = '\0';
}

bool config_conninfo_check(const char *text, char *err, size_t errlen)
{
	PQconninfoOption *opts;
	char *msg = NULL;
	char clean[CONFIG_ERR_MAX];

	opts = PQconninfoParse(text, &msg);
	if (opts) {
		PQconninfoFree(opts);
		if (msg)
			PQfreemem(msg);
		return true;
	}
	if (msg) {
		scrub_message(msg, clean, sizeof(clean));
		PQfreemem(msg);
	} else {
		snprintf(clean, sizeof(clean), "out of memory");
	}
	snprintf(err, errlen, "invalid connection string: %s", clean);
	return false;
}

/* A keyword=value value, single-quoted when it needs to be. */
static void put_value(FILE *out, const char *v)
{
	bool quote = *v == '\0' || strpbrk(v, " \t\n\r'\\") != NULL;

	if (!quote) {
		fputs(v, out);
		return;
	}
	fputc('\'', out);
	for (; *v; v++) {
		if (*v == '\'' || *v == '\\')
			fputc('\\', out);
		fputc(*v, out);
	}
	fputc('\'', out);
}

void config_conninfo_print(FILE *out, const char *text)
{
	PQconninfoOption *opts;
	char *msg = NULL, *buf = NULL;
	size_t len = 0;
	bool has_password = false;
	FILE *mem = NULL;

	opts = PQconninfoParse(text, &msg);
	if (msg)
		PQfreemem(msg);
	if (opts)
		for (PQconninfoOption *o = opts; o->keyword; o++)
			if (strcmp(o->keyword, "password") == 0 && o->val)
				has_password = true;
	if (!has_password) {
		config_print_scalar(out, text);
		goto out;
	}
	/* Rebuild as keyword=value with the password hidden. */
	mem = open_memstream(&buf, &len);
	if (!mem) {
		config_print_scalar(out, HIDDEN);
		goto out;
	}
	for (PQconninfoOption *o = opts; o->keyword; o++) {
		if (!o->val)
			continue;
		if (ftell(mem) > 0)
			fputc(' ', mem);
		fprintf(mem, "%s=", o->keyword);
		put_value(mem, strcmp(o->keyword, "password") == 0 ? HIDDEN : o->val);
	}
	if (fclose(mem) == 0 && buf)
		config_print_scalar(out, buf);
	else
		config_print_scalar(out, HIDDEN);
out:
	free(buf);
	if (opts)
		PQconninfoFree(opts);
}
