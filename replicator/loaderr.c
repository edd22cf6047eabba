/*
 * loaderr.c — the column of a value the target refuses (see loaderr.h).
 */
#include "replicator/loaderr.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "replicator/apply_sql.h"

int loaderr_param(const char *context)
{
	const char *p = context;

	while (p && (p = strstr(p, "parameter $")) != NULL) {
		char *end;
		long n;

		p += strlen("parameter $");
		n = strtol(p, &end, 10);
		if (end != p && n > 0 && n <= 65535)
			return (int)n;
	}
	return 0;
}

const char *loaderr_column(const struct relmap *m, const uint16_t *params, int nparams,
		const char *sqlstate, const char *context)
{
	int n;
	unsigned col;

	/* class 22: the value, not the statement or the row, is wrong */
	if (!m || !params || !sqlstate || strncmp(sqlstate, "22", 2) != 0)
		return NULL;
	n = loaderr_param(context);
	if (n == 0 || n > nparams)
		return NULL;
	col = params[n - 1] & ~APPLY_SQL_PARAM_OLD;
	return col < m->natts ? m->atts[col].name : NULL;
}

/* "text", quoted, is in message. */
static bool loaderr_quotes(const char *message, const struct pgoutput_value *v)
{
	const char *p = message;

	if (v->kind != PGOUTPUT_VALUE_TEXT || v->len == 0)
		return false;
	while ((p = strchr(p, '"')) != NULL) {
		p++;
		if (strlen(p) > v->len && memcmp(p, v->data, v->len) == 0 && p[v->len] == '"')
			return true;
	}
	return false;
}

const char *loaderr_column_quoted(const struct relmap *m, const uint16_t *params, int nparams,
		const struct pgoutput_tuple *newtup, const struct pgoutput_tuple *oldtup,
		const char *sqlstate, const char *message)
{
	const char *found = NULL;

	if (!m || !params || !sqlstate || !message || strncmp(sqlstate, "22", 2) != 0)
		return NULL;
	for (int i = 0; i < nparams; i++) {
		const struct pgoutput_tuple *t = (params[i] & APPLY_SQL_PARAM_OLD) ? oldtup : newtup;
		unsigned col = params[i] & ~APPLY_SQL_PARAM_OLD;

		if (!t || col >= t->ncols || col >= m->natts || !loaderr_quotes(message, &t->cols[col]))
			continue;
		if (found && strcmp(found, m->atts[col].name) != 0)
			return NULL;            /* two columns could be meant */
		found = m->atts[col].name;
	}
	return found;
}
