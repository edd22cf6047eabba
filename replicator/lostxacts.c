/*
 * lostxacts.c — renders an old primary's unreplicated transactions as SQL
 * for the operator (see lostxacts.h).
 *
 * NOTES
 * Each transaction is rendered into its own buffer while its messages come
 * in; only its Commit says whether it is kept (end LSN above after_lsn, not
 * seen before, not strait's own, not empty), so the decision costs nothing
 * but the buffer. Kept transactions are written sorted by commit LSN, which
 * is the order they committed in whatever order the sources were fed.
 *
 * Comments in the file are written through lx_comment(), which replaces
 * control characters: a newline inside a relation name must not end a "--"
 * comment and turn the rest of the name into SQL.
 */
#include "replicator/lostxacts.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <event2/event.h>
#include <libpq-fe.h>

#include "common/lsn.h"
#include "replicator/pgasync.h"
#include "replicator/pgoutput.h"

/* PostgreSQL's limit on a table's columns (MaxHeapAttributeNumber); old and new tuples share the array. */
#define LX_MAX_COLS (2 * 1600)
#define LX_STRAIT_ORIGIN "strait_"

struct lx_txn {
	uint64_t commit_lsn;
	uint64_t end_lsn;
	char *sql;                   /* the whole block, comment to COMMIT */
	size_t len;
};

struct lostxacts {
	char *stream;
	char *slot;
	char *encoding;              /* from the options */
	char db_encoding[64];        /* from a peek's connection */
	uint64_t after_lsn;
	int64_t generated_at_us;
	char **notes;
	size_t nnotes;

	struct pgoutput_decoder dec;
	struct pgoutput_relcache rels;
	struct pgoutput_value *cols;

	/* the open transaction */
	bool in_txn;
	bool strait_origin;
	uint32_t xid;
	uint64_t final_lsn;
	int64_t commit_time;
	uint64_t txn_statements;
	uint64_t txn_unrendered;
	struct lostxacts_buf cur;

	struct lx_txn *txns;
	size_t ntxns;
	size_t captxns;
	uint64_t *seen;              /* commit LSNs kept: open addressing, 0 = free */
	size_t seen_cap;

	struct lostxacts_stats st;
};

/* ---- buffers ---- */

static bool lx_reserve(struct lostxacts_buf *b, size_t more)
{
	size_t need, cap;
	char *p;

	if (more > SIZE_MAX - b->len - 1)
		return false;
	need = b->len + more + 1;
	if (need <= b->cap)
		return true;
	cap = b->cap ? b->cap : 256;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	p = realloc(b->data, cap);
	if (!p)
		return false;
	b->data = p;
	b->cap = cap;
	return true;
}

static bool lx_append(struct lostxacts_buf *b, const char *s, size_t n)
{
	if (!lx_reserve(b, n))
		return false;
	memcpy(b->data + b->len, s, n);
	b->len += n;
	b->data[b->len] = '\0';
	return true;
}

static bool lx_puts(struct lostxacts_buf *b, const char *s)
{
	return lx_append(b, s, strlen(s));
}

static bool lx_printf(struct lostxacts_buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static bool lx_printf(struct lostxacts_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || !lx_reserve(b, (size_t)n))
		return false;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return true;
}

/* Comment text: control characters become '?', so nothing escapes the "--" line. */
static bool lx_comment_text(struct lostxacts_buf *b, const char *s)
{
	if (!lx_reserve(b, strlen(s)))
		return false;
	for (; *s; s++)
		b->data[b->len++] = ((unsigned char)*s < 0x20 || *s == 0x7f) ? '?' : *s;
	b->data[b->len] = '\0';
	return true;
}

void lostxacts_buf_free(struct lostxacts_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

/*
 * 'text' with quotes doubled. A backslash makes it E'...' with backslashes
 * doubled too: that reads the same under either standard_conforming_strings.
 */
bool lostxacts_buf_literal(struct lostxacts_buf *b, const char *s, size_t len)
{
	bool backslash = memchr(s, '\\', len) != NULL;
	size_t extra = 3;

	for (size_t i = 0; i < len; i++)
		if (s[i] == '\'' || s[i] == '\\')
			extra++;
	if (!lx_reserve(b, len + extra))
		return false;
	if (backslash)
		b->data[b->len++] = 'E';
	b->data[b->len++] = '\'';
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '\'' || s[i] == '\\')
			b->data[b->len++] = s[i];
		b->data[b->len++] = s[i];
	}
	b->data[b->len++] = '\'';
	b->data[b->len] = '\0';
	return true;
}

bool lostxacts_buf_ident(struct lostxacts_buf *b, const char *s)
{
	size_t len = strlen(s), extra = 2;

	for (size_t i = 0; i < len; i++)
		if (s[i] == '"')
			extra++;
	if (!lx_reserve(b, len + extra))
		return false;
	b->data[b->len++] = '"';
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '"')
			b->data[b->len++] = '"';
		b->data[b->len++] = s[i];
	}
	b->data[b->len++] = '"';
	b->data[b->len] = '\0';
	return true;
}

/* ---- formatting ---- */

/* Unix µs as 2026-12-03T13:51:15.123456Z. */
static void lx_format_time(char *out, size_t outlen, int64_t unix_us)
{
	int64_t secs = unix_us / 1000000, us = unix_us % 1000000;
	time_t t;
	struct tm tm;

	if (us < 0) {
		us += 1000000;
		secs--;
	}
	t = (time_t)secs;
	if (!gmtime_r(&t, &tm)) {
		snprintf(out, outlen, "(unknown)");
		return;
	}
	snprintf(out, outlen, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)us);
}

static int64_t lx_now_us(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
}

static bool lx_relname(struct lostxacts_buf *b, const struct pgoutput_rel *rel)
{
	/* pgoutput sends "" for pg_catalog */
	return lostxacts_buf_ident(b, rel->nspname[0] ? rel->nspname : "pg_catalog") &&
		lx_puts(b, ".") && lostxacts_buf_ident(b, rel->relname);
}

/*
 * Types without a btree equality, or whose "=" is not identity (box
 * compares areas): compared by their text form, as the apply engine does.
 */
static bool lx_compare_as_text(uint32_t type_oid)
{
	static const uint32_t oids[] = {
		114, 199,                /* json, json[] */
		142, 143,                /* xml, xml[] */
		600, 1017, 601, 1018,    /* point, lseg */
		602, 1019, 603, 1020,    /* path, box */
		604, 1027, 628, 629,     /* polygon, line */
		718, 719,                /* circle */
	};

	for (size_t i = 0; i < sizeof(oids) / sizeof(oids[0]); i++)
		if (oids[i] == type_oid)
			return true;
	return false;
}

static bool lx_value(struct lostxacts_buf *b, const struct pgoutput_value *v)
{
	if (v->kind == PGOUTPUT_VALUE_NULL)
		return lx_puts(b, "NULL");
	return lostxacts_buf_literal(b, (const char *)v->data, v->len);
}

/* ---- rendering changes ---- */

/* A change that cannot be written as SQL: a warning in the file, counted. */
static bool lx_unrendered(struct lostxacts *lx, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static bool lx_unrendered(struct lostxacts *lx, const char *fmt, ...)
{
	char why[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	lx->txn_unrendered++;
	return lx_puts(&lx->cur, "-- WARNING: a change was not rendered: ") &&
		lx_comment_text(&lx->cur, why) && lx_puts(&lx->cur, "\n");
}

/* Binary values never come (binary mode is not requested); refuse rather than guess. */
static const char *lx_tuple_problem(const struct pgoutput_rel *rel, const struct pgoutput_tuple *t)
{
	if (t->ncols != rel->natts)
		return "the tuple's column count differs from the Relation message";
	for (uint16_t i = 0; i < t->ncols; i++)
		if (t->cols[i].kind == PGOUTPUT_VALUE_BINARY)
			return "a value in binary format";
	return NULL;
}

/*
 * The row's condition: the key columns of tup (all columns when all is
 * set), unchanged TOAST values left out. *n counts the terms.
 */
static bool lx_condition(struct lostxacts_buf *b, const struct pgoutput_rel *rel,
		const struct pgoutput_tuple *tup, bool all, unsigned *n)
{
	*n = 0;
	for (uint16_t i = 0; i < tup->ncols; i++) {
		const struct pgoutput_value *v = &tup->cols[i];
		const struct pgoutput_rel_attr *a = &rel->attrs[i];

		if ((!all && !a->key) || v->kind == PGOUTPUT_VALUE_UNCHANGED)
			continue;
		if (!lx_puts(b, *n ? " AND " : "") || !lostxacts_buf_ident(b, a->name))
			return false;
		if (v->kind == PGOUTPUT_VALUE_NULL) {
			if (!lx_puts(b, " IS NULL"))
				return false;
		} else if (!lx_puts(b, lx_compare_as_text(a->type_oid) ? "::text = " : " = ") ||
			   !lx_value(b, v)) {
			return false;
		}
		(*n)++;
	}
	return true;
}

/*
 * " WHERE ..." finding the row. Under REPLICA IDENTITY FULL there is no key
 * and identical rows may exist: exactly one of them is touched.
 */
static bool lx_where(struct lostxacts *lx, const struct pgoutput_rel *rel,
		const struct pgoutput_tuple *tup, bool from_old, bool *ok)
{
	struct lostxacts_buf *b = &lx->cur;
	bool full = rel->replident == PGOUTPUT_REPLIDENT_FULL;
	struct lostxacts_buf cond = { 0 };
	unsigned n;
	bool res;

	*ok = false;
	if (!lx_condition(&cond, rel, tup, full && from_old, &n)) {
		lostxacts_buf_free(&cond);
		return false;
	}
	if (n == 0) {
		lostxacts_buf_free(&cond);
		return true;
	}
	*ok = true;
	if (full)
		res = lx_puts(b, " WHERE ctid = (SELECT ctid FROM ") && lx_relname(b, rel) &&
			lx_puts(b, " WHERE ") && lx_append(b, cond.data, cond.len) &&
			lx_puts(b, " LIMIT 1)");
	else
		res = lx_puts(b, " WHERE ") && lx_append(b, cond.data, cond.len);
	lostxacts_buf_free(&cond);
	return res;
}

static struct pgoutput_rel *lx_rel(struct lostxacts *lx, uint32_t relid)
{
	return pgoutput_relcache_get(&lx->rels, relid);
}

static bool lx_insert(struct lostxacts *lx, const struct pgoutput_msg *m)
{
	struct pgoutput_rel *rel = lx_rel(lx, m->insert.relid);
	const struct pgoutput_tuple *t = &m->insert.newtup;
	struct lostxacts_buf *b = &lx->cur;
	const char *problem;
	bool first = true;

	if (!rel)
		return lx_unrendered(lx, "INSERT into relation OID %" PRIu32 ", whose Relation message was not seen",
				     m->insert.relid);
	if ((problem = lx_tuple_problem(rel, t)))
		return lx_unrendered(lx, "INSERT into relation OID %" PRIu32 ": %s", rel->oid, problem);
	if (!lx_puts(b, "INSERT INTO ") || !lx_relname(b, rel) || !lx_puts(b, " ("))
		return false;
	for (uint16_t i = 0; i < t->ncols; i++) {
		if (t->cols[i].kind == PGOUTPUT_VALUE_UNCHANGED)
			continue;
		if (!lx_puts(b, first ? "" : ", ") || !lostxacts_buf_ident(b, rel->attrs[i].name))
			return false;
		first = false;
	}
	if (!lx_puts(b, ") OVERRIDING SYSTEM VALUE VALUES ("))
		return false;
	first = true;
	for (uint16_t i = 0; i < t->ncols; i++) {
		if (t->cols[i].kind == PGOUTPUT_VALUE_UNCHANGED)
			continue;
		if (!lx_puts(b, first ? "" : ", ") || !lx_value(b, &t->cols[i]))
			return false;
		first = false;
	}
	lx->txn_statements++;
	return lx_puts(b, ");\n");
}

static bool lx_same_value(const struct pgoutput_value *a, const struct pgoutput_value *b)
{
	return a->kind == b->kind && a->len == b->len &&
		(a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

/* " SET ..." of the new tuple; with the whole old row known, only what changed. */
static bool lx_set_list(struct lostxacts_buf *b, const struct pgoutput_rel *rel,
		const struct pgoutput_tuple *newt, const struct pgoutput_tuple *oldt, unsigned *n)
{
	*n = 0;
	for (uint16_t i = 0; i < newt->ncols; i++) {
		const struct pgoutput_value *v = &newt->cols[i];

		if (v->kind == PGOUTPUT_VALUE_UNCHANGED)
			continue;
		if (oldt && lx_same_value(v, &oldt->cols[i]))
			continue;
		if (!lx_puts(b, *n ? ", " : " SET ") || !lostxacts_buf_ident(b, rel->attrs[i].name) ||
		    !lx_puts(b, " = ") || !lx_value(b, v))
			return false;
		(*n)++;
	}
	return true;
}

static bool lx_update(struct lostxacts *lx, const struct pgoutput_msg *m)
{
	struct pgoutput_rel *rel = lx_rel(lx, m->update.relid);
	const struct pgoutput_tuple *newt = &m->update.newtup, *oldt = &m->update.oldtup;
	bool has_old = m->update.old_kind != PGOUTPUT_OLD_NONE;
	bool full_old = m->update.old_kind == PGOUTPUT_OLD_FULL;
	struct lostxacts_buf *b = &lx->cur;
	size_t mark = b->len;
	const char *problem;
	unsigned n;
	bool found;

	if (!rel)
		return lx_unrendered(lx, "UPDATE of relation OID %" PRIu32 ", whose Relation message was not seen",
				     m->update.relid);
	if ((problem = lx_tuple_problem(rel, newt)) || (has_old && (problem = lx_tuple_problem(rel, oldt))))
		return lx_unrendered(lx, "UPDATE of relation OID %" PRIu32 ": %s", rel->oid, problem);
	if (!lx_puts(b, "UPDATE ") || !lx_relname(b, rel) ||
	    !lx_set_list(b, rel, newt, full_old ? oldt : NULL, &n))
		return false;
	/* an update that changed nothing visible still happened: say so in full */
	if (n == 0 && full_old) {
		b->len = mark;
		b->data[b->len] = '\0';
		if (!lx_puts(b, "UPDATE ") || !lx_relname(b, rel) ||
		    !lx_set_list(b, rel, newt, NULL, &n))
			return false;
	}
	if (n == 0) {
		b->len = mark;
		b->data[b->len] = '\0';
		return lx_unrendered(lx, "UPDATE of relation OID %" PRIu32 " sends no column but unchanged TOAST values",
				     rel->oid);
	}
	if (!lx_where(lx, rel, has_old ? oldt : newt, has_old, &found))
		return false;
	if (!found) {
		b->len = mark;
		b->data[b->len] = '\0';
		return lx_unrendered(lx, "UPDATE of relation OID %" PRIu32 ": no key to find the row", rel->oid);
	}
	lx->txn_statements++;
	return lx_puts(b, ";\n");
}

static bool lx_delete(struct lostxacts *lx, const struct pgoutput_msg *m)
{
	struct pgoutput_rel *rel = lx_rel(lx, m->delete.relid);
	struct lostxacts_buf *b = &lx->cur;
	size_t mark = b->len;
	const char *problem;
	bool found;

	if (!rel)
		return lx_unrendered(lx, "DELETE from relation OID %" PRIu32 ", whose Relation message was not seen",
				     m->delete.relid);
	if ((problem = lx_tuple_problem(rel, &m->delete.oldtup)))
		return lx_unrendered(lx, "DELETE from relation OID %" PRIu32 ": %s", rel->oid, problem);
	if (!lx_puts(b, "DELETE FROM ") || !lx_relname(b, rel) ||
	    !lx_where(lx, rel, &m->delete.oldtup, true, &found))
		return false;
	if (!found) {
		b->len = mark;
		b->data[b->len] = '\0';
		return lx_unrendered(lx, "DELETE from relation OID %" PRIu32 ": no key to find the row", rel->oid);
	}
	lx->txn_statements++;
	return lx_puts(b, ";\n");
}

static bool lx_truncate(struct lostxacts *lx, const struct pgoutput_msg *m)
{
	struct lostxacts_buf *b = &lx->cur;

	for (uint32_t i = 0; i < m->truncate.nrelids; i++) {
		uint32_t relid = pgoutput_truncate_relid(m, i);

		if (!lx_rel(lx, relid))
			return lx_unrendered(lx, "TRUNCATE of relation OID %" PRIu32 ", whose Relation message was not seen",
					     relid);
	}
	if (!lx_puts(b, "TRUNCATE "))
		return false;
	for (uint32_t i = 0; i < m->truncate.nrelids; i++)
		if (!lx_puts(b, i ? ", " : "") || !lx_relname(b, lx_rel(lx, pgoutput_truncate_relid(m, i))))
			return false;
	if ((m->truncate.options & PGOUTPUT_TRUNCATE_RESTART_SEQS) && !lx_puts(b, " RESTART IDENTITY"))
		return false;
	if ((m->truncate.options & PGOUTPUT_TRUNCATE_CASCADE) && !lx_puts(b, " CASCADE"))
		return false;
	lx->txn_statements++;
	return lx_puts(b, ";\n");
}

static bool lx_message(struct lostxacts *lx, const struct pgoutput_msg *m)
{
	char line[160];

	snprintf(line, sizeof(line), "-- (a logical decoding message of %" PRIu32 " bytes, prefix ",
		 m->message.content_len);
	return lx_puts(&lx->cur, line) && lx_comment_text(&lx->cur, m->message.prefix) &&
		lx_puts(&lx->cur, ", not rendered)\n");
}

/* ---- transactions ---- */

static void lx_drop_open(struct lostxacts *lx)
{
	if (lx->in_txn)
		lx->st.incomplete++;
	lx->in_txn = false;
	lx->cur.len = 0;
	if (lx->cur.data)
		lx->cur.data[0] = '\0';
}

static void lx_begin(struct lostxacts *lx, const struct pgoutput_msg *m)
{
	lx_drop_open(lx);
	lx->in_txn = true;
	lx->strait_origin = false;
	lx->xid = m->begin.xid;
	lx->final_lsn = m->begin.final_lsn;
	lx->commit_time = m->begin.commit_time;
	lx->txn_statements = 0;
	lx->txn_unrendered = 0;
}

static size_t lx_seen_slot(const struct lostxacts *lx, uint64_t lsn)
{
	uint64_t h = lsn * UINT64_C(0x9E3779B97F4A7C15);

	return (size_t)(h >> 32) & (lx->seen_cap - 1);
}

static bool lx_seen(const struct lostxacts *lx, uint64_t lsn)
{
	if (!lx->seen_cap)
		return false;
	for (size_t i = lx_seen_slot(lx, lsn);; i = (i + 1) & (lx->seen_cap - 1)) {
		if (lx->seen[i] == lsn)
			return true;
		if (lx->seen[i] == 0)
			return false;
	}
}

static void lx_seen_put(struct lostxacts *lx, uint64_t lsn)
{
	size_t i = lx_seen_slot(lx, lsn);

	while (lx->seen[i] != 0)
		i = (i + 1) & (lx->seen_cap - 1);
	lx->seen[i] = lsn;
}

/* Room for one more kept transaction, in the list and in the set (load at most 1/2). */
static bool lx_grow(struct lostxacts *lx)
{
	if (lx->ntxns == lx->captxns) {
		size_t cap = lx->captxns ? lx->captxns * 2 : 16;
		struct lx_txn *t = realloc(lx->txns, cap * sizeof(*t));

		if (!t)
			return false;
		lx->txns = t;
		lx->captxns = cap;
	}
	if ((lx->ntxns + 1) * 2 > lx->seen_cap) {
		size_t cap = lx->seen_cap ? lx->seen_cap * 2 : 64;
		uint64_t *old = lx->seen, *set = calloc(cap, sizeof(*set));
		size_t oldcap = lx->seen_cap;

		if (!set)
			return false;
		lx->seen = set;
		lx->seen_cap = cap;
		for (size_t i = 0; i < oldcap; i++)
			if (old[i])
				lx_seen_put(lx, old[i]);
		free(old);
	}
	return true;
}

static bool lx_commit(struct lostxacts *lx, const struct pgoutput_msg *m, char *err, size_t errlen)
{
	struct lostxacts_buf block = { 0 };
	char lsn[32], end[32], when[48];
	struct lx_txn *t;

	if (m->commit.commit_lsn != lx->final_lsn) {
		lsn_format(lsn, m->commit.commit_lsn);
		lsn_format(end, lx->final_lsn);
		snprintf(err, errlen, "commit at %s does not match the final LSN %s of its begin", lsn, end);
		lx_drop_open(lx);
		return false;
	}
	lx->in_txn = false;
	if (m->commit.end_lsn <= lx->after_lsn) {
		lx->st.before++;
		return true;
	}
	if (lx_seen(lx, m->commit.commit_lsn)) {
		lx->st.duplicates++;
		return true;
	}
	if (lx->strait_origin) {
		lx->st.strait_origin++;
		return true;
	}
	if (lx->txn_statements == 0 && lx->txn_unrendered == 0) {
		lx->st.empty++;
		return true;
	}
	lsn_format(lsn, m->commit.commit_lsn);
	lsn_format(end, m->commit.end_lsn);
	lx_format_time(when, sizeof(when), pgoutput_time_to_unix_us(m->commit.commit_time));
	if (!lx_grow(lx) ||
	    !lx_printf(&block, "-- transaction %" PRIu32 ", commit LSN %s (ends %s), committed %s\n",
		       lx->xid, lsn, end, when) ||
	    (lx->txn_unrendered &&
	     !lx_printf(&block, "-- WARNING: %" PRIu64 " change(s) of this transaction could not be rendered (see below)\n",
			lx->txn_unrendered)) ||
	    !lx_puts(&block, "BEGIN;\n") || !lx_append(&block, lx->cur.data ? lx->cur.data : "", lx->cur.len) ||
	    !lx_puts(&block, "COMMIT;\n")) {
		lostxacts_buf_free(&block);
		snprintf(err, errlen, "out of memory");
		return false;
	}
	t = &lx->txns[lx->ntxns++];
	t->commit_lsn = m->commit.commit_lsn;
	t->end_lsn = m->commit.end_lsn;
	t->sql = block.data;
	t->len = block.len;
	lx_seen_put(lx, t->commit_lsn);
	lx->st.kept++;
	lx->st.statements += lx->txn_statements;
	lx->st.unrendered += lx->txn_unrendered;
	if (!lx->st.first_commit_lsn || t->commit_lsn < lx->st.first_commit_lsn)
		lx->st.first_commit_lsn = t->commit_lsn;
	if (t->commit_lsn > lx->st.last_commit_lsn)
		lx->st.last_commit_lsn = t->commit_lsn;
	return true;
}

static bool lx_change(struct lostxacts *lx, const struct pgoutput_msg *m)
{
	switch (m->type) {
	case PGOUTPUT_INSERT:
		return lx_insert(lx, m);
	case PGOUTPUT_UPDATE:
		return lx_update(lx, m);
	case PGOUTPUT_DELETE:
		return lx_delete(lx, m);
	case PGOUTPUT_TRUNCATE:
		return lx_truncate(lx, m);
	case PGOUTPUT_MESSAGE:
		return lx_message(lx, m);
	default:
		return true;
	}
}

bool lostxacts_feed_message(struct lostxacts *lx, const uint8_t *msg, size_t len,
		char *err, size_t errlen)
{
	struct pgoutput_msg m;
	enum pgoutput_status st;

	st = pgoutput_decode(&lx->dec, msg, len, &m, lx->cols, LX_MAX_COLS);
	if (st != PGOUTPUT_OK) {
		snprintf(err, errlen, "malformed pgoutput message (type '%c'): %s at byte %zu",
			 len && msg[0] >= 0x20 && msg[0] < 0x7f ? msg[0] : '?',
			 pgoutput_status_str(st), lx->dec.error_offset);
		lx_drop_open(lx);
		return false;
	}
	switch (m.type) {
	case PGOUTPUT_BEGIN:
		lx_begin(lx, &m);
		return true;
	case PGOUTPUT_COMMIT:
		if (!lx->in_txn) {
			lx->st.orphans++;
			return true;
		}
		return lx_commit(lx, &m, err, errlen);
	case PGOUTPUT_ORIGIN:
		if (lx->in_txn && strncmp(m.origin.name, LX_STRAIT_ORIGIN, strlen(LX_STRAIT_ORIGIN)) == 0)
			lx->strait_origin = true;
		return true;
	case PGOUTPUT_RELATION:
		if (!pgoutput_relcache_update(&lx->rels, &m)) {
			snprintf(err, errlen, "out of memory");
			lx_drop_open(lx);
			return false;
		}
		return true;
	case PGOUTPUT_TYPE:
		return true;
	case PGOUTPUT_STREAM_START:
	case PGOUTPUT_STREAM_STOP:
	case PGOUTPUT_STREAM_COMMIT:
	case PGOUTPUT_STREAM_ABORT:
		snprintf(err, errlen, "streamed transactions (%s) are not supported",
			 pgoutput_msg_type_name(m.type));
		lx_drop_open(lx);
		if (!pgoutput_decoder_init(&lx->dec, 2))
			return false;
		return false;
	default:
		break;
	}
	if (m.type == PGOUTPUT_MESSAGE && !(m.message.flags & PGOUTPUT_MESSAGE_TRANSACTIONAL))
		return true;          /* not part of any transaction */
	if (!lx->in_txn) {
		lx->st.orphans++;
		return true;
	}
	if (lx->strait_origin)
		return true;
	if (!lx_change(lx, &m)) {
		snprintf(err, errlen, "out of memory");
		lx_drop_open(lx);
		return false;
	}
	return true;
}

bool lostxacts_feed_batch(struct lostxacts *lx, const uint8_t *body, size_t len,
		char *err, size_t errlen)
{
	size_t off = 0;

	while (off < len) {
		uint32_t n;

		if (len - off < 4) {
			snprintf(err, errlen, "batch body cut inside a record length at byte %zu", off);
			lx_drop_open(lx);
			return false;
		}
		n = (uint32_t)body[off] << 24 | (uint32_t)body[off + 1] << 16 |
			(uint32_t)body[off + 2] << 8 | body[off + 3];
		off += 4;
		if (n > len - off) {
			snprintf(err, errlen, "batch record at byte %zu claims %" PRIu32 " bytes, %zu are left",
				 off - 4, n, len - off);
			lx_drop_open(lx);
			return false;
		}
		if (!lostxacts_feed_message(lx, body + off, n, err, errlen))
			return false;
		off += n;
	}
	return true;
}

/* ---- the file ---- */

static int lx_txn_cmp(const void *a, const void *b)
{
	const struct lx_txn *x = a, *y = b;

	return x->commit_lsn < y->commit_lsn ? -1 : x->commit_lsn > y->commit_lsn;
}

static bool lx_header(struct lostxacts *lx, struct lostxacts_buf *h)
{
	char after[32], first[32], last[32], when[48];
	const char *enc = lx->encoding ? lx->encoding : lx->db_encoding[0] ? lx->db_encoding : "UTF8";
	bool ok;

	lsn_format(after, lx->after_lsn);
	lx_format_time(when, sizeof(when), lx->generated_at_us ? lx->generated_at_us : lx_now_us());
	ok = lx_puts(h, "-- strait: transactions the old primary committed that the new primary never applied\n"
		     "--\n-- stream: ") &&
		lx_comment_text(h, lx->stream ? lx->stream : "(not given)") &&
		lx_puts(h, "\n-- slot: ") && lx_comment_text(h, lx->slot ? lx->slot : "(not given)") &&
		lx_printf(h, "\n-- transactions whose commit ends after LSN %s (what the new primary applied)\n"
			  "-- generated %s\n", after, when);
	for (size_t i = 0; ok && i < lx->nnotes; i++)
		ok = lx_puts(h, "-- ") && lx_comment_text(h, lx->notes[i]) && lx_puts(h, "\n");
	if (!ok)
		return false;
	if (lx->st.kept) {
		lsn_format(first, lx->st.first_commit_lsn);
		lsn_format(last, lx->st.last_commit_lsn);
		ok = lx_printf(h, "-- %" PRIu64 " transaction(s), %" PRIu64 " statement(s), commit LSNs %s to %s\n",
			       lx->st.kept, lx->st.statements, first, last);
	} else {
		ok = lx_puts(h, "-- no lost transactions\n");
	}
	if (ok && lx->st.unrendered)
		ok = lx_printf(h, "-- WARNING: %" PRIu64 " change(s) could not be rendered; look for WARNING below\n",
			       lx->st.unrendered);
	if (ok && lx->in_txn)
		ok = lx_puts(h, "-- WARNING: the input ended inside a transaction, which is not in this file\n");
	return ok && lx_puts(h, "--\n-- NOTHING IN THIS FILE HAS BEEN APPLIED. It records changes that exist only on the\n"
			     "-- old primary. Review each transaction against the new primary's data, then apply\n"
			     "-- what should be kept, e.g. psql -v ON_ERROR_STOP=1 -f FILE.\n\n"
			     "SET client_encoding = ") &&
		lostxacts_buf_literal(h, enc, strlen(enc)) &&
		lx_puts(h, ";\nSET datestyle = 'ISO';\nSET intervalstyle = 'postgres';\n");
}

bool lostxacts_write(struct lostxacts *lx, FILE *out, char *err, size_t errlen)
{
	struct lostxacts_buf h = { 0 };
	bool ok;

	if (!lx_header(lx, &h)) {
		lostxacts_buf_free(&h);
		snprintf(err, errlen, "out of memory");
		return false;
	}
	if (lx->ntxns)
		qsort(lx->txns, lx->ntxns, sizeof(*lx->txns), lx_txn_cmp);
	ok = fwrite(h.data, 1, h.len, out) == h.len;
	for (size_t i = 0; ok && i < lx->ntxns; i++)
		ok = fputc('\n', out) != EOF &&
			fwrite(lx->txns[i].sql, 1, lx->txns[i].len, out) == lx->txns[i].len;
	ok = ok && fflush(out) == 0;
	lostxacts_buf_free(&h);
	if (!ok)
		snprintf(err, errlen, "could not write the SQL file: %m");
	return ok;
}

void lostxacts_get_stats(const struct lostxacts *lx, struct lostxacts_stats *out)
{
	*out = lx->st;
	if (lx->in_txn)
		out->incomplete++;
}

bool lostxacts_add_note(struct lostxacts *lx, const char *fmt, ...)
{
	char **notes = realloc(lx->notes, (lx->nnotes + 1) * sizeof(*notes));
	va_list ap;
	int n;

	if (!notes)
		return false;
	lx->notes = notes;
	va_start(ap, fmt);
	n = vasprintf(&notes[lx->nnotes], fmt, ap);
	va_end(ap);
	if (n < 0)
		return false;
	lx->nnotes++;
	return true;
}

struct lostxacts *lostxacts_new(const struct lostxacts_options *opt)
{
	struct lostxacts *lx = calloc(1, sizeof(*lx));

	if (!lx)
		return NULL;
	pgoutput_relcache_init(&lx->rels, NULL);
	if (!pgoutput_decoder_init(&lx->dec, 2))
		goto fail;
	lx->after_lsn = opt->after_lsn;
	lx->generated_at_us = opt->generated_at_us;
	lx->cols = calloc(LX_MAX_COLS, sizeof(*lx->cols));
	if (!lx->cols ||
	    (opt->stream && !(lx->stream = strdup(opt->stream))) ||
	    (opt->slot && !(lx->slot = strdup(opt->slot))) ||
	    (opt->encoding && !(lx->encoding = strdup(opt->encoding))))
		goto fail;
	return lx;
fail:
	lostxacts_free(lx);
	return NULL;
}

void lostxacts_free(struct lostxacts *lx)
{
	if (!lx)
		return;
	for (size_t i = 0; i < lx->ntxns; i++)
		free(lx->txns[i].sql);
	free(lx->txns);
	free(lx->seen);
	for (size_t i = 0; i < lx->nnotes; i++)
		free(lx->notes[i]);
	free(lx->notes);
	lostxacts_buf_free(&lx->cur);
	pgoutput_relcache_free(&lx->rels);
	free(lx->cols);
	free(lx->stream);
	free(lx->slot);
	free(lx->encoding);
	free(lx);
}

/* ---- peeking the slot ---- */

enum peek_state {
	PEEK_CONNECTING,
	PEEK_SETTING,                /* the session's output formats */
	PEEK_CHECKING,               /* pg_replication_slots */
	PEEK_READING,                /* the peek's rows */
	PEEK_DONE,
};

struct lostxacts_peek {
	struct lostxacts *lx;
	struct pgasync *pg;
	enum peek_state state;
	char *slot;
	char *pubname;               /* the publication quoted as an identifier */
	lostxacts_peek_fn done;
	void *arg;
	uint64_t messages;
	PGresult *last;
};

/* Reports once and goes quiet; the connection goes with lostxacts_peek_free(). */
static void peek_finish(struct lostxacts_peek *p, const char *err)
{
	if (p->state == PEEK_DONE)
		return;
	p->state = PEEK_DONE;
	if (p->pg && pgasync_conn(p->pg))
		pgasync_set_reading(p->pg, false);
	p->done(p->arg, err, p->messages);
}

static void peek_failf(struct lostxacts_peek *p, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void peek_failf(struct lostxacts_peek *p, const char *fmt, ...)
{
	char msg[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	msg[strcspn(msg, "\n")] = '\0';
	peek_finish(p, msg);
}

/*
 * The peek's values are made by this session's output functions: fix the
 * formats that depend on settings, as the apply engine does for its input,
 * so the file reads back the same anywhere.
 */
static void peek_connected(void *arg)
{
	struct lostxacts_peek *p = arg;
	const char *enc = PQparameterStatus(pgasync_conn(p->pg), "server_encoding");

	if (enc)
		snprintf(p->lx->db_encoding, sizeof(p->lx->db_encoding), "%s", enc);
	p->state = PEEK_SETTING;
	pgasync_send(p->pg, "SET datestyle = ISO; SET intervalstyle = postgres; "
		     "SET extra_float_digits = 3; SET bytea_output = hex");
}

static void peek_send_check(struct lostxacts_peek *p)
{
	const char *params[] = { p->slot };
	PGconn *c = pgasync_conn(p->pg);

	p->state = PEEK_CHECKING;
	if (!PQsendQueryParams(c,
			"SELECT plugin, slot_type, database::text, current_database()::text, "
			"active_pid, confirmed_flush_lsn::text, wal_status "
			"FROM pg_replication_slots WHERE slot_name = $1",
			1, NULL, params, NULL, NULL, 0) || pgasync_flush(p->pg) < 0)
		peek_failf(p, "could not query pg_replication_slots: %s", pgasync_error(p->pg));
}

/* Checks the slot's row; NULL when it can be peeked, else why not (in buf). */
static const char *peek_check_slot(struct lostxacts_peek *p, const PGresult *r, char *buf, size_t buflen)
{
	if (PQntuples(r) != 1) {
		snprintf(buf, buflen, "replication slot \"%s\" does not exist", p->slot);
		return buf;
	}
	if (strcmp(PQgetvalue(r, 0, 1), "logical") != 0 || strcmp(PQgetvalue(r, 0, 0), "pgoutput") != 0) {
		snprintf(buf, buflen, "replication slot \"%s\" is not a pgoutput logical slot (type %s, plugin %s)",
			 p->slot, PQgetvalue(r, 0, 1), PQgetisnull(r, 0, 0) ? "none" : PQgetvalue(r, 0, 0));
		return buf;
	}
	if (strcmp(PQgetvalue(r, 0, 2), PQgetvalue(r, 0, 3)) != 0) {
		snprintf(buf, buflen, "replication slot \"%s\" belongs to database \"%s\", not \"%s\"",
			 p->slot, PQgetvalue(r, 0, 2), PQgetvalue(r, 0, 3));
		return buf;
	}
	if (!PQgetisnull(r, 0, 4)) {
		snprintf(buf, buflen,
			 "replication slot \"%s\" is in use by process %s (a walsender: straitd on that site still "
			 "streams from it); a slot in use cannot be peeked, stop the stream there first",
			 p->slot, PQgetvalue(r, 0, 4));
		return buf;
	}
	if (!PQgetisnull(r, 0, 6) && strcmp(PQgetvalue(r, 0, 6), "lost") == 0) {
		snprintf(buf, buflen, "replication slot \"%s\" has lost the WAL it needs (wal_status lost)", p->slot);
		return buf;
	}
	return NULL;
}

static void peek_send_peek(struct lostxacts_peek *p)
{
	const char *params[] = { p->slot, p->pubname };
	const int formats[] = { 0, 0 };
	PGconn *c = pgasync_conn(p->pg);

	p->state = PEEK_READING;
	/* binary results: the bytea arrives as its bytes, whatever bytea_output says */
	if (!PQsendQueryParams(c,
			"SELECT data FROM pg_logical_slot_peek_binary_changes($1, NULL, NULL, "
			"'proto_version', '1', 'publication_names', $2)",
			2, NULL, params, NULL, formats, 1) ||
	    !PQsetSingleRowMode(c) || pgasync_flush(p->pg) < 0)
		peek_failf(p, "could not peek replication slot \"%s\": %s", p->slot, pgasync_error(p->pg));
}

static void peek_result_error(struct lostxacts_peek *p, const PGresult *r)
{
	const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
	const char *msg = PQresultErrorMessage(r);

	if (state && strcmp(state, "55006") == 0)
		peek_failf(p, "could not peek replication slot \"%s\": %s (a walsender uses it: stop the stream "
			   "on that site first)", p->slot, msg);
	else
		peek_failf(p, "could not %s replication slot \"%s\": %s",
			   p->state == PEEK_READING ? "peek" : "look up", p->slot, msg);
}

static void peek_input(void *arg)
{
	struct lostxacts_peek *p = arg;
	PGconn *c = pgasync_conn(p->pg);
	char why[512], err[512];

	while (p->state != PEEK_DONE && !PQisBusy(c)) {
		PGresult *r = PQgetResult(c);
		ExecStatusType st;
		const char *problem;

		if (!r) {
			if (p->state == PEEK_SETTING) {
				peek_send_check(p);
				continue;
			}
			if (p->state == PEEK_CHECKING) {
				if (!p->last) {
					peek_failf(p, "no answer from pg_replication_slots");
					return;
				}
				problem = peek_check_slot(p, p->last, why, sizeof(why));
				if (problem) {
					peek_finish(p, problem);
					return;
				}
				if (!lostxacts_add_note(p->lx, "read from slot \"%s\" with pg_logical_slot_peek_binary_changes "
							"(confirmed up to %s); the slot was not advanced",
							p->slot, PQgetvalue(p->last, 0, 5))) {
					peek_finish(p, "out of memory");
					return;
				}
				PQclear(p->last);
				p->last = NULL;
				peek_send_peek(p);
				continue;
			}
			peek_finish(p, NULL);
			return;
		}
		st = PQresultStatus(r);
		if (st == PGRES_SINGLE_TUPLE && p->state == PEEK_READING) {
			bool ok = lostxacts_feed_message(p->lx, (const uint8_t *)PQgetvalue(r, 0, 0),
							 (size_t)PQgetlength(r, 0, 0), err, sizeof(err));

			PQclear(r);
			p->messages++;
			if (!ok) {
				peek_failf(p, "replication slot \"%s\", message %" PRIu64 ": %s", p->slot, p->messages, err);
				return;
			}
			continue;
		}
		if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
			if (p->state == PEEK_CHECKING) {
				PQclear(p->last);
				p->last = r;
			} else {
				PQclear(r);
			}
			continue;
		}
		peek_result_error(p, r);
		PQclear(r);
		return;
	}
}

static void peek_drained(void *arg)
{
	(void)arg;
}

static void peek_failed(void *arg, const char *err)
{
	struct lostxacts_peek *p = arg;

	peek_failf(p, "connection to the old primary failed: %s", err);
}

struct lostxacts_peek *lostxacts_peek_start(struct event_base *base, const char *conninfo,
		const char *slot, const char *publication, struct lostxacts *lx,
		lostxacts_peek_fn done, void *arg)
{
	static const struct pgasync_callbacks cb = {
		.connected = peek_connected,
		.input = peek_input,
		.drained = peek_drained,
		.failed = peek_failed,
	};
	static const char *const keys[] = { "fallback_application_name", NULL };
	static const char *const values[] = { "strait-rejoin", NULL };
	struct lostxacts_peek *p = calloc(1, sizeof(*p));
	struct lostxacts_buf pub = { 0 };
	char what[160];

	if (!p)
		return NULL;
	p->lx = lx;
	p->done = done;
	p->arg = arg;
	p->slot = strdup(slot);
	/* publication_names is a list of identifiers: quote the name as one */
	if (!p->slot || !lostxacts_buf_ident(&pub, publication)) {
		lostxacts_buf_free(&pub);
		lostxacts_peek_free(p);
		return NULL;
	}
	p->pubname = pub.data;
	snprintf(what, sizeof(what), "replication slot \"%s\": peek", slot);
	p->pg = pgasync_new(base, conninfo, keys, values, what, &cb, p);
	if (!p->pg) {
		lostxacts_peek_free(p);
		return NULL;
	}
	return p;
}

void lostxacts_peek_free(struct lostxacts_peek *p)
{
	if (!p)
		return;
	pgasync_free(p->pg);
	PQclear(p->last);
	free(p->slot);
	free(p->pubname);
	free(p);
}
