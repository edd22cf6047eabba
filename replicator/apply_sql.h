/*
 * apply_sql.h — the text of the apply engine's SQL: identifier quoting,
 * timestamp literals (LSN literals are common/lsn.h's), the statement-shape
 * key, and the INSERT / UPDATE / DELETE / TRUNCATE statements prepared per
 * (relation, shape).
 *
 * NOTES
 *
 * Shapes. One prepared statement serves every change with the same shape: the
 * kind (insert, update, delete), the conflict policy, where the row-finding
 * values come from (the old key tuple, the old full tuple, or the new tuple's
 * key columns) and, per source column, a code for the SET/INSERT list and one
 * for the WHERE clause. A column whose new value is an unchanged TOAST datum
 * is left out of the SET list (the target keeps its value); under REPLICA
 * IDENTITY FULL an old value that is NULL is matched with IS NULL, so the
 * null pattern is part of the shape. The shape key is these codes as bytes
 * (apply_sql_shape_key()); most relations use one or two shapes.
 *
 * Parameters carry text values typed with the target columns' types (the
 * prepare's paramTypes), so no casts appear in the text and the planner can
 * use indexes. Parameters are numbered: first the SET/INSERT columns in source
 * column order, then the WHERE columns not already among them.
 *
 * Conflicts are resolved inside the one statement, so a pipeline never has to
 * wait for a result to decide what to send next:
 *   INSERT, error:        plain INSERT (a duplicate key is a server error)
 *   INSERT, target_wins:  INSERT ... ON CONFLICT [(key)] DO NOTHING
 *                         (0 rows: conflict, skipped)
 *   INSERT, source_wins:  WITH i AS (INSERT ... ON CONFLICT (key) DO NOTHING
 *                         RETURNING 1) UPDATE ... WHERE key AND NOT EXISTS i
 *                         (1 row updated: conflict, source row written)
 *   UPDATE, error/target: UPDATE ... WHERE identity (0 rows: conflict)
 *   UPDATE, source_wins:  WITH u AS (UPDATE ... RETURNING 1) INSERT ...
 *                         SELECT ... WHERE NOT EXISTS u (1 row: conflict)
 *   DELETE:               DELETE ... WHERE identity (0 rows: conflict)
 * REPLICA IDENTITY FULL may find several equal rows (a table without a key can
 * hold duplicates) and must change one: WHERE ctid = (SELECT ctid ... LIMIT 1)
 * (with tableoid too when the target is partitioned).
 *
 * Return conventions: bool, false when out of memory (or, for the statement
 * builder, when the shape cannot be expressed; *why says so).
 */
#ifndef STRAIT_APPLY_SQL_H
#define STRAIT_APPLY_SQL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "replicator/apply.h"
#include "replicator/relmap.h"

#define APPLY_SQL_MUSTCHECK __attribute__((warn_unused_result))

/* ---- a growable string; failure is sticky ---- */

struct apply_sql_buf {
	char *data;                  /* NUL-terminated when len > 0 or after _cstr() */
	size_t len;
	size_t cap;
	bool failed;
};

void apply_sql_buf_init(struct apply_sql_buf *b);
void apply_sql_buf_free(struct apply_sql_buf *b);
void apply_sql_buf_reset(struct apply_sql_buf *b);
void apply_sql_buf_add(struct apply_sql_buf *b, const char *s, size_t n);
void apply_sql_buf_puts(struct apply_sql_buf *b, const char *s);
void apply_sql_buf_printf(struct apply_sql_buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* The text (never NULL unless failed), or NULL after a failure. */
const char *apply_sql_buf_cstr(struct apply_sql_buf *b);
/* Hands the text over (caller frees); NULL after a failure. Resets b. */
char *apply_sql_buf_take(struct apply_sql_buf *b);

/* ---- literals ---- */

/* "name" with embedded quotes doubled: always quoted, so case survives. */
void apply_sql_ident(struct apply_sql_buf *b, const char *name);
/* "schema"."name" */
void apply_sql_qualified(struct apply_sql_buf *b, const char *nspname, const char *relname);
/* Newly allocated quoted identifier, or NULL when out of memory. */
char *apply_sql_ident_dup(const char *name);

#define APPLY_SQL_TIME_LEN 96      /* generous: the compiler cannot bound struct tm */
/*
 * A PostgreSQL timestamp (µs since 2000-01-01 UTC) as a timestamptz literal,
 * "2024-05-06 07:08:09.123456+00". Years outside 1..9999 are clamped.
 */
void apply_sql_format_time(char out[APPLY_SQL_TIME_LEN], int64_t pg_time);

/* ---- statement shapes ---- */

enum apply_sql_kind {
	APPLY_SQL_INSERT = 'I',
	APPLY_SQL_UPDATE = 'U',
	APPLY_SQL_DELETE = 'D',
};

/* Where an UPDATE/DELETE takes the values that find the row. */
enum apply_sql_ident_src {
	APPLY_SQL_ID_NEW = 'n',      /* the new tuple's key columns (key unchanged) */
	APPLY_SQL_ID_KEY = 'k',      /* the old key tuple */
	APPLY_SQL_ID_FULL = 'f',     /* the old full tuple (REPLICA IDENTITY FULL) */
};

/* Per-column codes. */
#define APPLY_SQL_COL_SKIP  '-'      /* not in this clause */
#define APPLY_SQL_COL_VALUE 'v'      /* SET/INSERT: a value or NULL; WHERE: equals */
#define APPLY_SQL_COL_NULL  'n'      /* WHERE: IS NULL */

struct apply_sql_shape {
	char kind;                   /* enum apply_sql_kind */
	char ident;                  /* enum apply_sql_ident_src; 0 for INSERT */
	enum apply_conflict policy;
	const char *set;             /* natts codes (INSERT, UPDATE), else NULL */
	const char *where;           /* natts codes (UPDATE, DELETE), else NULL */
};

/* Bytes of a shape key for natts columns. */
#define APPLY_SQL_KEY_LEN(natts) (3 + 2 * (size_t)(natts))
/* Writes the shape's key (APPLY_SQL_KEY_LEN(natts) bytes) into out. */
void apply_sql_shape_key(const struct apply_sql_shape *s, uint16_t natts, char *out);

/* A parameter's value: source column col of the new tuple, or of the old one. */
#define APPLY_SQL_PARAM_OLD 0x8000u

/* When the affected-row count means a conflict. */
enum apply_sql_outcome {
	APPLY_SQL_NO_CONFLICT,       /* the statement fails or applies: no count to read */
	APPLY_SQL_ZERO_IS_CONFLICT,  /* 0 rows: the row was missing / a duplicate skipped */
	APPLY_SQL_ONE_IS_CONFLICT,   /* 1 row: the conflict branch ran (source_wins) */
};

struct apply_sql_stmt {
	char *sql;
	int nparams;
	uint16_t *params;            /* per parameter: column | APPLY_SQL_PARAM_OLD */
	uint32_t *types;             /* per parameter: type OID */
	enum apply_sql_outcome outcome;
};

/*
 * Writes the statement for shape s on mapping m into *out (free it with
 * apply_sql_stmt_free()). False when out of memory (*why NULL) or the shape
 * cannot find a row (*why: a static message, e.g. no identity columns).
 */
bool apply_sql_build(const struct relmap *m, const struct apply_sql_shape *s,
		struct apply_sql_stmt *out, const char **why) APPLY_SQL_MUSTCHECK;
void apply_sql_stmt_free(struct apply_sql_stmt *st);

/*
 * TRUNCATE ONLY t1, ONLY t2 [RESTART IDENTITY] [CASCADE] (ONLY is left out
 * for partitioned tables, which it would refuse). options: pgoutput's
 * PGOUTPUT_TRUNCATE_* bits.
 */
void apply_sql_truncate(struct apply_sql_buf *b, const struct relmap *const *rels,
		size_t n, uint8_t options);

#endif
