/*
 * loaderr.c — the column of a value the target refuses (see loaderr.h).
 */
#include "replicator/loaderr.h"

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
