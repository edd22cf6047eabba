/*
 * loaderr.h — naming the column of a value the target refuses.
 *
 * A value travels as text and is converted by the target's input function
 * when the change's statement is bound. When the two servers' versions
 * differ, a value the source wrote may not load: 17's infinite interval on
 * 16, 14's numeric Infinity on 13, or text that is not valid in the target
 * column's type. The server's error then says which parameter failed (its
 * context: "unnamed portal parameter $3 = '...'", PostgreSQL 14 and later),
 * not which column; the statement's parameter list maps one to the other.
 * PostgreSQL 13 names no parameter of a bind error, but its input functions
 * quote the refused text in the message ("malformed range literal:
 * \"{[1,3)}\""): the one parameter whose text that is names the column.
 */
#ifndef STRAIT_LOADERR_H
#define STRAIT_LOADERR_H

#include <stdint.h>

#include "replicator/relmap.h"

/*
 * The 1-based parameter a bind error's context names ("parameter $N"), or 0
 * when it names none.
 */
int loaderr_param(const char *context);

/*
 * The source column whose value the target refused: an error of class 22
 * (data exception) whose context names a parameter of params (per
 * parameter: a column of m, APPLY_SQL_PARAM_OLD bit set for the old row's).
 * NULL when that is not the case.
 */
const char *loaderr_column(const struct relmap *m, const uint16_t *params, int nparams,
		const char *sqlstate, const char *context);

/*
 * When the context names no parameter (PostgreSQL 13): the column of the
 * one parameter whose text (from newtup, or oldtup for an old row's) the
 * error's message quotes; NULL for none or more than one.
 */
const char *loaderr_column_quoted(const struct relmap *m, const uint16_t *params, int nparams,
		const struct pgoutput_tuple *newtup, const struct pgoutput_tuple *oldtup,
		const char *sqlstate, const char *message);

#endif
