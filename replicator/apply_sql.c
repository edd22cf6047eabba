/*
 * apply_sql.c — statement text for the apply engine (see apply_sql.h for the
 * shapes and the conflict statements).
 *
 * Everything here is pure string work, unit-tested on its own: no libpq, no
 * event loop. Identifiers are always double-quoted (quotes doubled), so
 * names keep their case and may hold spaces or quotes.
 */
#include "replicator/apply_sql.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- buffer ---- */

void apply_sql_buf_init(struct apply_sql_buf *b)
{
	memset(b, 0, sizeof(*b));
}

void apply_sql_buf_free(struct apply_sql_buf *b)
{
	free(b->data);
	apply_sql_buf_init(b);
}

void apply_sql_buf_reset(struct apply_sql_buf *b)
{
	b->len = 0;
	b->failed = false;
	if (b->data)
		b->data[0] = '\0';
}

static bool apply_sql_buf_reserve(struct apply_sql_buf *b, size_t extra)
{
	size_t need, cap;
	char *p;

	if (b->failed)
		return false;
	if (extra > SIZE_MAX - b->len - 1)
		goto fail;
	need = b->len + extra + 1;
	if (need <= b->cap)
		return true;
	cap = b->cap ? b->cap : 128;
	while (cap < need) {
		if (cap > SIZE_MAX / 2)
			goto fail;
		cap *= 2;
	}
	p = realloc(b->data, cap);
	if (!p)
		goto fail;
	b->data = p;
	b->cap = cap;
	return true;
fail:
	b->failed = true;
	return false;
}

void apply_sql_buf_add(struct apply_sql_buf *b, const char *s, size_t n)
{
	if (!apply_sql_buf_reserve(b, n))
		return;
	memcpy(b->data + b->len, s, n);
	b->len += n;
	b->data[b->len] = '\0';
}

void apply_sql_buf_puts(struct apply_sql_buf *b, const char *s)
{
	apply_sql_buf_add(b, s, strlen(s));
}

void apply_sql_buf_printf(struct apply_sql_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->failed)
		return;
	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || !apply_sql_buf_reserve(b, (size_t)n)) {
		b->failed = true;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

const char *apply_sql_buf_cstr(struct apply_sql_buf *b)
{
	if (!apply_sql_buf_reserve(b, 0))
		return NULL;
	b->data[b->len] = '\0';
	return b->data;
}

char *apply_sql_buf_take(struct apply_sql_buf *b)
{
	char *s = NULL;

	if (apply_sql_buf_cstr(b)) {
		s = b->data;
		b->data = NULL;
	}
	apply_sql_buf_free(b);
	return s;
}

/* ---- literals ---- */

void apply_sql_ident(struct apply_sql_buf *b, const char *name)
{
	const char *p = name, *q;

	apply_sql_buf_add(b, "\"", 1);
	while ((q = strchr(p, '"')) != NULL) {
		apply_sql_buf_add(b, p, (size_t)(q - p) + 1);
		apply_sql_buf_add(b, "\"", 1);
		p = q + 1;
	}
	apply_sql_buf_puts(b, p);
	apply_sql_buf_add(b, "\"", 1);
}

void apply_sql_qualified(struct apply_sql_buf *b, const char *nspname, const char *relname)
{
	apply_sql_ident(b, nspname);
	apply_sql_buf_add(b, ".", 1);
	apply_sql_ident(b, relname);
}

char *apply_sql_ident_dup(const char *name)
{
	struct apply_sql_buf b;

	apply_sql_buf_init(&b);
	apply_sql_ident(&b, name);
	return apply_sql_buf_take(&b);
}

void apply_sql_format_time(char out[APPLY_SQL_TIME_LEN], int64_t pg_time)
{
	/* Seconds between the Unix epoch and 2000-01-01, and the clamp bounds. */
	const int64_t epoch_s = INT64_C(946684800);
	const int64_t min_s = INT64_C(-62135596800) - epoch_s;   /* 0001-01-01 */
	const int64_t max_s = INT64_C(253402300799) - epoch_s;   /* 9999-12-31 23:59:59 */
	int64_t secs = pg_time / 1000000, frac = pg_time % 1000000;
	time_t t;
	struct tm tm;

	if (frac < 0) {
		frac += 1000000;
		secs -= 1;
	}
	if (secs < min_s) {
		secs = min_s;
		frac = 0;
	} else if (secs > max_s) {
		secs = max_s;
		frac = 999999;
	}
	t = (time_t)(secs + epoch_s);
	if (!gmtime_r(&t, &tm)) {
		snprintf(out, APPLY_SQL_TIME_LEN, "2000-01-01 00:00:00+00");
		return;
	}
	snprintf(out, APPLY_SQL_TIME_LEN, "%04d-%02d-%02d %02d:%02d:%02d.%06d+00",
		tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
		tm.tm_sec, (int)frac);
}

/* ---- shapes ---- */

void apply_sql_shape_key(const struct apply_sql_shape *s, uint16_t natts, char *out)
{
	out[0] = s->kind;
	out[1] = s->ident ? s->ident : '-';
	out[2] = (char)('0' + (int)s->policy);
	if (s->set)
		memcpy(out + 3, s->set, natts);
	else
		memset(out + 3, APPLY_SQL_COL_SKIP, natts);
	if (s->where)
		memcpy(out + 3 + natts, s->where, natts);
	else
		memset(out + 3 + natts, APPLY_SQL_COL_SKIP, natts);
}

void apply_sql_stmt_free(struct apply_sql_stmt *st)
{
	free(st->sql);
	free(st->params);
	free(st->types);
	memset(st, 0, sizeof(*st));
}

/* Builder state: parameter numbers per column and the parameter list. */
struct apply_sql_build {
	const struct relmap *m;
	const struct apply_sql_shape *s;
	struct apply_sql_buf b;
	int *setp;                   /* per column: SET/INSERT parameter, 0 if none */
	int *wherep;                 /* per column: WHERE parameter, 0 if none */
	struct apply_sql_stmt *st;
};

static int apply_sql_add_param(struct apply_sql_build *k, uint16_t col, bool old)
{
	struct apply_sql_stmt *st = k->st;

	st->params[st->nparams] = (uint16_t)(col | (old ? APPLY_SQL_PARAM_OLD : 0));
	st->types[st->nparams] = k->m->atts[col].type_oid;
	return ++st->nparams;
}

static size_t apply_sql_count(const char *codes, uint16_t natts, char c)
{
	size_t n = 0;

	for (uint16_t i = 0; codes && i < natts; i++)
		n += codes[i] == c;
	return n;
}

/* ("a", "b") */
static void apply_sql_collist(struct apply_sql_build *k)
{
	bool first = true;

	apply_sql_buf_puts(&k->b, " (");
	for (uint16_t i = 0; i < k->m->natts; i++) {
		if (!k->setp[i])
			continue;
		if (!first)
			apply_sql_buf_puts(&k->b, ", ");
		apply_sql_buf_puts(&k->b, k->m->atts[i].quoted);
		first = false;
	}
	apply_sql_buf_puts(&k->b, ")");
}

/* $1, $2 */
static void apply_sql_values(struct apply_sql_build *k)
{
	bool first = true;

	for (uint16_t i = 0; i < k->m->natts; i++) {
		if (!k->setp[i])
			continue;
		apply_sql_buf_printf(&k->b, first ? "$%d" : ", $%d", k->setp[i]);
		first = false;
	}
}

/* "a" = $1, "b" = $2 */
/*
 * Whether SET leaves column i out: a key column the WHERE finds by the same
 * value (unchanged) would be set to itself, which PostgreSQL refuses for a
 * GENERATED ALWAYS identity column ("can only be updated to DEFAULT").
 */
static bool apply_sql_set_redundant(const struct apply_sql_build *k, uint16_t i)
{
	if (k->s->kind == APPLY_SQL_INSERT)
		return k->m->atts[i].tgt_key;  /* the conflict branch's WHERE is key = the value */
	return k->wherep[i] && k->wherep[i] == k->setp[i];
}

/* Some column is set to a value that may differ from the row's. */
static bool apply_sql_sets_something(const struct apply_sql_build *k)
{
	for (uint16_t i = 0; i < k->m->natts; i++)
		if (k->setp[i] && !apply_sql_set_redundant(k, i))
			return true;
	return false;
}

static void apply_sql_setlist(struct apply_sql_build *k)
{
	bool first = true, skip = apply_sql_sets_something(k);

	for (uint16_t i = 0; i < k->m->natts; i++) {
		if (!k->setp[i] || (skip && apply_sql_set_redundant(k, i)))
			continue;
		apply_sql_buf_printf(&k->b, "%s%s = $%d", first ? "" : ", ",
			k->m->atts[i].quoted, k->setp[i]);
		first = false;
	}
}

/* The row-finding conditions joined with AND ("true" when there are none). */
static void apply_sql_conds(struct apply_sql_build *k)
{
	const struct relmap *m = k->m;
	const char *where = k->s->where;
	bool full = k->s->ident == APPLY_SQL_ID_FULL, first = true;

	for (uint16_t i = 0; i < m->natts; i++) {
		const char *col = m->atts[i].quoted;

		if (where[i] == APPLY_SQL_COL_SKIP)
			continue;
		if (!first)
			apply_sql_buf_puts(&k->b, " AND ");
		first = false;
		if (where[i] == APPLY_SQL_COL_NULL)
			apply_sql_buf_printf(&k->b, "%s IS NULL", col);
		else if (full && !m->atts[i].eqable)
			apply_sql_buf_printf(&k->b, "%s::pg_catalog.text = $%d::pg_catalog.text",
				col, k->wherep[i]);
		else
			apply_sql_buf_printf(&k->b, "%s = $%d", col, k->wherep[i]);
	}
	if (first)
		apply_sql_buf_puts(&k->b, "true");
}

/* What follows WHERE in an UPDATE/DELETE: the conditions, or one row of them. */
static void apply_sql_target(struct apply_sql_build *k)
{
	const char *id = k->m->partitioned ? "(tableoid, ctid)" : "ctid";
	const char *sel = k->m->partitioned ? "tableoid, ctid" : "ctid";

	if (k->s->ident != APPLY_SQL_ID_FULL) {
		apply_sql_conds(k);
		return;
	}
	apply_sql_buf_printf(&k->b, "%s = (SELECT %s FROM %s WHERE ", id, sel, k->m->qualified);
	apply_sql_conds(k);
	apply_sql_buf_puts(&k->b, " LIMIT 1)");
}

static void apply_sql_insert(struct apply_sql_build *k)
{
	const struct relmap *m = k->m;
	enum apply_conflict policy = k->s->policy;
	bool any = false, keyed = m->tgt_key_usable, first = true;
	struct apply_sql_buf *b = &k->b;

	for (uint16_t i = 0; i < m->natts; i++)
		any |= k->setp[i] != 0;
	/* A key column left out of the INSERT cannot arbitrate a conflict. */
	for (uint16_t i = 0; keyed && i < m->natts; i++)
		if (m->atts[i].tgt_key && !k->setp[i])
			keyed = false;

	if (policy == APPLY_CONFLICT_SOURCE_WINS && keyed && any)
		apply_sql_buf_puts(b, "WITH i AS (");
	apply_sql_buf_printf(b, "INSERT INTO %s", m->qualified);
	if (any) {
		apply_sql_collist(k);
		/* the source's value wins over a GENERATED ALWAYS identity column */
		apply_sql_buf_puts(b, " OVERRIDING SYSTEM VALUE VALUES (");
		apply_sql_values(k);
		apply_sql_buf_puts(b, ")");
	} else {
		apply_sql_buf_puts(b, " DEFAULT VALUES");
	}
	k->st->outcome = APPLY_SQL_NO_CONFLICT;
	if (policy == APPLY_CONFLICT_ERROR)
		return;
	if (policy == APPLY_CONFLICT_TARGET_WINS || !keyed || !any) {
		if (policy == APPLY_CONFLICT_SOURCE_WINS)
			return;              /* no arbiter: a duplicate is an error */
		apply_sql_buf_puts(b, " ON CONFLICT");
		if (keyed) {
			apply_sql_buf_puts(b, " (");
			for (uint16_t i = 0; i < m->natts; i++) {
				if (!m->atts[i].tgt_key)
					continue;
				apply_sql_buf_printf(b, "%s%s", first ? "" : ", ", m->atts[i].quoted);
				first = false;
			}
			apply_sql_buf_puts(b, ")");
		}
		apply_sql_buf_puts(b, " DO NOTHING");
		k->st->outcome = APPLY_SQL_ZERO_IS_CONFLICT;
		return;
	}
	/* source_wins: insert, or update the row holding the key. */
	apply_sql_buf_puts(b, " ON CONFLICT (");
	for (uint16_t i = 0; i < m->natts; i++) {
		if (!m->atts[i].tgt_key)
			continue;
		apply_sql_buf_printf(b, "%s%s", first ? "" : ", ", m->atts[i].quoted);
		first = false;
	}
	apply_sql_buf_printf(b, ") DO NOTHING RETURNING 1) UPDATE %s SET ", m->qualified);
	apply_sql_setlist(k);
	apply_sql_buf_puts(b, " WHERE ");
	for (uint16_t i = 0; i < m->natts; i++) {
		if (!m->atts[i].tgt_key)
			continue;
		apply_sql_buf_printf(b, "%s = $%d AND ", m->atts[i].quoted, k->setp[i]);
	}
	apply_sql_buf_puts(b, "NOT EXISTS (SELECT 1 FROM i)");
	k->st->outcome = APPLY_SQL_ONE_IS_CONFLICT;
}

static void apply_sql_update(struct apply_sql_build *k)
{
	const struct relmap *m = k->m;
	struct apply_sql_buf *b = &k->b;
	bool any = false;

	for (uint16_t i = 0; i < m->natts; i++)
		any |= k->setp[i] != 0;
	/* only unchanged keys to set: nothing to write unless a missing row is inserted */
	if (k->s->policy != APPLY_CONFLICT_SOURCE_WINS && !apply_sql_sets_something(k))
		any = false;
	k->st->outcome = APPLY_SQL_ZERO_IS_CONFLICT;
	if (!any) {
		/* Every new value is unchanged: only whether the row exists matters. */
		apply_sql_buf_printf(b, "SELECT 1 FROM %s WHERE ", m->qualified);
		apply_sql_conds(k);
		apply_sql_buf_puts(b, " LIMIT 1");
		return;
	}
	if (k->s->policy == APPLY_CONFLICT_SOURCE_WINS)
		apply_sql_buf_puts(b, "WITH u AS (");
	apply_sql_buf_printf(b, "UPDATE %s SET ", m->qualified);
	apply_sql_setlist(k);
	apply_sql_buf_puts(b, " WHERE ");
	apply_sql_target(k);
	if (k->s->policy != APPLY_CONFLICT_SOURCE_WINS)
		return;
	/* source_wins: a missing row is inserted from the new values. */
	apply_sql_buf_printf(b, " RETURNING 1) INSERT INTO %s", m->qualified);
	apply_sql_collist(k);
	apply_sql_buf_puts(b, " OVERRIDING SYSTEM VALUE SELECT ");
	apply_sql_values(k);
	apply_sql_buf_puts(b, " WHERE NOT EXISTS (SELECT 1 FROM u)");
	k->st->outcome = APPLY_SQL_ONE_IS_CONFLICT;
}

static void apply_sql_delete(struct apply_sql_build *k)
{
	apply_sql_buf_printf(&k->b, "DELETE FROM %s WHERE ", k->m->qualified);
	apply_sql_target(k);
	k->st->outcome = APPLY_SQL_ZERO_IS_CONFLICT;
}

bool apply_sql_build(const struct relmap *m, const struct apply_sql_shape *s,
		struct apply_sql_stmt *out, const char **why)
{
	struct apply_sql_build k = { .m = m, .s = s, .st = out };
	size_t n = (size_t)m->natts ? m->natts : 1;
	bool ok = false;

	*why = NULL;
	memset(out, 0, sizeof(*out));
	apply_sql_buf_init(&k.b);
	k.setp = calloc(n, sizeof(*k.setp));
	k.wherep = calloc(n, sizeof(*k.wherep));
	out->params = calloc(2 * n, sizeof(*out->params));
	out->types = calloc(2 * n, sizeof(*out->types));
	if (!k.setp || !k.wherep || !out->params || !out->types)
		goto out;

	if (s->kind != APPLY_SQL_DELETE && s->set) {
		for (uint16_t i = 0; i < m->natts; i++)
			if (s->set[i] == APPLY_SQL_COL_VALUE)
				k.setp[i] = apply_sql_add_param(&k, i, false);
	}
	if (s->kind != APPLY_SQL_INSERT) {
		if (!s->where) {
			*why = "no row identity";
			goto out;
		}
		if (s->ident != APPLY_SQL_ID_FULL &&
				apply_sql_count(s->where, m->natts, APPLY_SQL_COL_SKIP) == m->natts) {
			*why = "the relation has no replica identity columns";
			goto out;
		}
		for (uint16_t i = 0; i < m->natts; i++) {
			if (s->where[i] != APPLY_SQL_COL_VALUE)
				continue;
			if (s->ident == APPLY_SQL_ID_NEW && k.setp[i])
				k.wherep[i] = k.setp[i];
			else
				k.wherep[i] = apply_sql_add_param(&k, i, s->ident != APPLY_SQL_ID_NEW);
		}
	}

	switch (s->kind) {
	case APPLY_SQL_INSERT:
		apply_sql_insert(&k);
		break;
	case APPLY_SQL_UPDATE:
		apply_sql_update(&k);
		break;
	case APPLY_SQL_DELETE:
		apply_sql_delete(&k);
		break;
	default:
		*why = "unknown statement kind";
		goto out;
	}
	out->sql = apply_sql_buf_take(&k.b);
	ok = out->sql != NULL;
out:
	apply_sql_buf_free(&k.b);
	free(k.setp);
	free(k.wherep);
	if (!ok)
		apply_sql_stmt_free(out);
	return ok;
}

void apply_sql_truncate(struct apply_sql_buf *b, const struct relmap *const *rels,
		size_t n, uint8_t options)
{
	apply_sql_buf_puts(b, "TRUNCATE ");
	for (size_t i = 0; i < n; i++)
		apply_sql_buf_printf(b, "%s%s%s", i ? ", " : "",
			rels[i]->partitioned ? "" : "ONLY ", rels[i]->qualified);
	if (options & PGOUTPUT_TRUNCATE_RESTART_SEQS)
		apply_sql_buf_puts(b, " RESTART IDENTITY");
	if (options & PGOUTPUT_TRUNCATE_CASCADE)
		apply_sql_buf_puts(b, " CASCADE");
}
