/*
 * verify.c — table comparison by in-database checksums (see verify.h).
 *
 * Every query against the target goes through verify_exec(), which counts
 * the bytes of its result (and the statement sent) as checksum traffic; the
 * source side is where boundaries are chosen, so its traffic is not what the
 * link between sites carries twice.
 */
#include "replicator/verify.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "replicator/apply_sql.h"

/* ---- SQL builders ---- */

static void verify_key_list(struct apply_sql_buf *b, const struct verify_keys *k)
{
	for (size_t i = 0; i < k->n; i++)
		apply_sql_buf_printf(b, "%s%s", i ? ", " : "", k->columns[i]);
}

static void verify_param_list(struct apply_sql_buf *b, const struct verify_keys *k, size_t first)
{
	for (size_t i = 0; i < k->n; i++)
		apply_sql_buf_printf(b, "%s$%zu::%s", i ? ", " : "", first + i, k->types[i]);
}

static void verify_add_range(struct apply_sql_buf *b, const struct verify_keys *k, bool lo, bool hi)
{
	if (!lo && !hi)
		return;
	apply_sql_buf_puts(b, " WHERE ");
	if (lo) {
		apply_sql_buf_puts(b, "(");
		verify_key_list(b, k);
		apply_sql_buf_puts(b, ") > (");
		verify_param_list(b, k, 1);
		apply_sql_buf_puts(b, ")");
	}
	if (hi) {
		apply_sql_buf_puts(b, lo ? " AND (" : "(");
		verify_key_list(b, k);
		apply_sql_buf_puts(b, ") <= (");
		verify_param_list(b, k, lo ? k->n + 1 : 1);
		apply_sql_buf_puts(b, ")");
	}
}

char *verify_sql_range(const struct verify_keys *k, bool lo, bool hi)
{
	struct apply_sql_buf b;

	apply_sql_buf_init(&b);
	verify_add_range(&b, k, lo, hi);
	if (b.len == 0) {
		apply_sql_buf_free(&b);
		return strdup("");
	}
	return apply_sql_buf_take(&b);
}

char *verify_sql_checksum(const struct verify_keys *k, bool lo, bool hi)
{
	struct apply_sql_buf b;

	apply_sql_buf_init(&b);
	apply_sql_buf_printf(&b, "SELECT count(*), coalesce(sum(hashtextextended((t.*)::text, 0)), 0) FROM %s AS t",
			     k->table);
	verify_add_range(&b, k, lo, hi);
	return apply_sql_buf_take(&b);
}

char *verify_sql_boundary(const struct verify_keys *k, bool lo, bool hi, int64_t offset)
{
	struct apply_sql_buf b;

	apply_sql_buf_init(&b);
	apply_sql_buf_puts(&b, "SELECT ");
	for (size_t i = 0; i < k->n; i++)
		apply_sql_buf_printf(&b, "%s%s::text", i ? ", " : "", k->columns[i]);
	apply_sql_buf_printf(&b, " FROM %s AS t", k->table);
	verify_add_range(&b, k, lo, hi);
	/* qualified: a bare name would sort by the output column, its text form */
	apply_sql_buf_puts(&b, " ORDER BY ");
	for (size_t i = 0; i < k->n; i++)
		apply_sql_buf_printf(&b, "%st.%s", i ? ", " : "", k->columns[i]);
	apply_sql_buf_printf(&b, " OFFSET %" PRId64 " LIMIT 1", offset);
	return apply_sql_buf_take(&b);
}

char *verify_sql_rows(const struct verify_keys *k, bool lo, bool hi)
{
	struct apply_sql_buf b;

	apply_sql_buf_init(&b);
	apply_sql_buf_puts(&b, "SELECT ");
	for (size_t i = 0; i < k->n; i++)
		apply_sql_buf_printf(&b, "%s::text, ", k->columns[i]);
	apply_sql_buf_printf(&b, "hashtextextended((t.*)::text, 0) FROM %s AS t", k->table);
	verify_add_range(&b, k, lo, hi);
	return apply_sql_buf_take(&b);
}

/* ---- pure planning and diffing ---- */

/* One statement (the settings are local to the snapshot's transaction). */
static const char verify_settings[] =
	"SELECT set_config('datestyle', 'ISO, YMD', true), set_config('timezone', 'UTC', true), "
	"set_config('extra_float_digits', '3', true), set_config('bytea_output', 'hex', true), "
	"set_config('intervalstyle', 'postgres', true)";

size_t verify_query_nparams(const struct verify_query *q)
{
	return ((q->lo ? 1u : 0u) + (q->hi ? 1u : 0u)) * q->n_keys;
}

/* Whether q is a request the comparison makes: its shape, not its table. */
static bool verify_query_shape(const struct verify_query *q, char *err, size_t errlen)
{
	bool keyed = q->kind == VERIFY_Q_BOUNDARY || q->kind == VERIFY_Q_ROWS;
	bool ranged = keyed || q->kind == VERIFY_Q_CHECKSUM;
	bool bucketed = q->kind == VERIFY_Q_BUCKETS || q->kind == VERIFY_Q_BUCKET_ROWS;
	const char *bad = NULL;

	if (q->kind < VERIFY_Q_SETTINGS || q->kind > VERIFY_Q_LAST)
		bad = "an unknown kind of request";
	else if (q->n_keys > VERIFY_MAX_KEYS)
		bad = "too many key columns";
	else if ((keyed && q->n_keys == 0) || (!ranged && q->n_keys != 0))
		bad = "key columns that do not fit the request";
	else if (!ranged && (q->lo || q->hi))
		bad = "bounds on a request that takes none";
	else if (q->offset < 0 || (q->kind != VERIFY_Q_BOUNDARY && q->offset != 0))
		bad = "an offset that does not fit the request";
	else if (q->mask >= VERIFY_MAX_BUCKETS || (q->mask & (q->mask + 1)) != 0 ||
		 (!bucketed && q->mask != 0))
		bad = "a bucket mask that does not fit the request";
	else if (q->bucket > q->mask || (q->kind != VERIFY_Q_BUCKET_ROWS && q->bucket != 0))
		bad = "a bucket that does not fit the request";
	if (bad)
		snprintf(err, errlen, "%s", bad);
	return bad == NULL;
}

char *verify_query_sql(const struct verify_query *q, const struct verify_keys *k, char *err, size_t errlen)
{
	char *sql = NULL;

	if (errlen)
		err[0] = '\0';
	if (!verify_query_shape(q, err, errlen))
		return NULL;
	if (k->n != q->n_keys) {
		snprintf(err, errlen, "key columns that do not fit the request");
		return NULL;
	}
	switch (q->kind) {
	case VERIFY_Q_SETTINGS:
		return strdup(verify_settings);
	case VERIFY_Q_CHECKSUM:
		return verify_sql_checksum(k, q->lo, q->hi);
	case VERIFY_Q_BOUNDARY:
		return verify_sql_boundary(k, q->lo, q->hi, q->offset);
	case VERIFY_Q_ROWS:
		return verify_sql_rows(k, q->lo, q->hi);
	case VERIFY_Q_BUCKETS:
		if (asprintf(&sql, "SELECT h & %" PRIu64 ", count(*), sum(h) FROM (SELECT "
			     "hashtextextended((t.*)::text, 0) AS h FROM %s AS t) AS s GROUP BY 1",
			     q->mask, k->table) < 0)
			sql = NULL;
		return sql;
	case VERIFY_Q_BUCKET_ROWS:
		if (asprintf(&sql, "SELECT r, count(*) FROM (SELECT (t.*)::text AS r FROM %s AS t) AS s "
			     "WHERE hashtextextended(r, 0) & %" PRIu64 " = %" PRIu64 " GROUP BY 1",
			     k->table, q->mask, q->bucket) < 0)
			sql = NULL;
		return sql;
	}
	return NULL;
}

enum verify_step verify_plan_split(int64_t src_rows, int64_t dst_rows, int64_t leaf_rows,
				   bool *from_target, int64_t *offset)
{
	int64_t big = src_rows >= dst_rows ? src_rows : dst_rows;

	*from_target = dst_rows > src_rows;
	*offset = 0;
	if (big == 0)
		return VERIFY_STEP_EQUAL;
	if (leaf_rows < 1)
		leaf_rows = 1;
	if (src_rows <= leaf_rows && dst_rows <= leaf_rows)
		return VERIFY_STEP_LEAF;
	/* big > leaf_rows >= 1, so both halves get at least one row */
	*offset = big / 2 - 1;
	return VERIFY_STEP_SPLIT;
}

uint64_t verify_bucket_count(int64_t rows, int64_t leaf_rows)
{
	uint64_t want, n = 1;

	if (leaf_rows < 1)
		leaf_rows = 1;
	if (rows <= leaf_rows)
		return 1;
	want = (uint64_t)((rows + leaf_rows - 1) / leaf_rows);
	while (n < want && n < 65536)
		n <<= 1;
	return n;
}

static int verify_row_cmp(const void *a, const void *b)
{
	const struct verify_row *x = a, *y = b;

	return strcmp(x->key, y->key);
}

void verify_sort_rows(struct verify_row *rows, size_t n)
{
	if (n > 1)
		qsort(rows, n, sizeof(*rows), verify_row_cmp);
}

void verify_diff_rows(const struct verify_row *src, size_t n_src, const struct verify_row *dst,
		      size_t n_dst, bool multiset, verify_diff_fn fn, void *arg)
{
	size_t i = 0, j = 0;

	while (i < n_src || j < n_dst) {
		int c = i == n_src ? 1 : j == n_dst ? -1 : strcmp(src[i].key, dst[j].key);

		if (c < 0) {
			fn(arg, VERIFY_MISSING, &src[i], multiset ? src[i].count : 1);
			i++;
		} else if (c > 0) {
			fn(arg, VERIFY_EXTRA, &dst[j], multiset ? dst[j].count : 1);
			j++;
		} else {
			if (multiset && src[i].count > dst[j].count)
				fn(arg, VERIFY_MISSING, &src[i], src[i].count - dst[j].count);
			else if (multiset && src[i].count < dst[j].count)
				fn(arg, VERIFY_EXTRA, &dst[j], dst[j].count - src[i].count);
			else if (!multiset && strcmp(src[i].hash, dst[j].hash) != 0)
				fn(arg, VERIFY_CHANGED, &src[i], 1);
			i++;
			j++;
		}
	}
}

char *verify_encode_key(const char *const *values, size_t n)
{
	struct apply_sql_buf b;

	apply_sql_buf_init(&b);
	for (size_t i = 0; i < n; i++)
		apply_sql_buf_printf(&b, "%zu:%s", strlen(values[i]), values[i]);
	if (b.len == 0) {
		apply_sql_buf_free(&b);
		return strdup("");
	}
	return apply_sql_buf_take(&b);
}

char *verify_key_label(const char *const *names, const char *const *values, size_t n)
{
	struct apply_sql_buf b;

	apply_sql_buf_init(&b);
	apply_sql_buf_puts(&b, "(");
	for (size_t i = 0; i < n; i++)
		apply_sql_buf_printf(&b, "%s%s", i ? ", " : "", names[i]);
	apply_sql_buf_puts(&b, ")=(");
	for (size_t i = 0; i < n; i++)
		apply_sql_buf_printf(&b, "%s%s", i ? ", " : "", values[i]);
	apply_sql_buf_puts(&b, ")");
	return apply_sql_buf_take(&b);
}

/* ---- the comparison ---- */

static double verify_now_ms(void);

struct verify_ctx {
	PGconn *src;
	PGconn *dst;
	const struct verify_remote *remote; /* the target, when dst is NULL */
	double rows_per_second;
	double paced_since_ms;
	int64_t paced_rows;
	const struct verify_options *opt;
	double snapshot_ms;        /* when the current snapshots were taken */
	struct verify_result *r;
	struct verify_keys keys;
	const char *schema;        /* the table, unquoted */
	const char *name;
	char *table_q;
	char **cols_q;
	char **types;
	int64_t chunk_rows;
	int64_t leaf_rows;
	size_t max_report;
	char *err;
	size_t errlen;
	bool oom;
};

/* A key value set: n text values, or absent (an open end of the range). */
struct verify_bound {
	char **v;
};

static uint64_t verify_result_bytes(const PGresult *res)
{
	int rows = PQntuples(res), cols = PQnfields(res);
	uint64_t bytes = 0;

	/* DataRow: type, length, field count, then length + value per field */
	for (int i = 0; i < rows; i++) {
		bytes += 7;
		for (int c = 0; c < cols; c++)
			bytes += 4 + (uint64_t)PQgetlength(res, i, c);
	}
	return bytes + 32; /* CommandComplete, ReadyForQuery, RowDescription, roughly */
}

/* A request over this table's key, its bounds as parameters; NULL with err set on failure. */
static PGresult *verify_exec(struct verify_ctx *c, bool target, struct verify_query q,
			     const struct verify_bound *lo, const struct verify_bound *hi)
{
	const char *params[2 * VERIFY_MAX_KEYS];
	int n = 0;
	PGresult *res;
	char *sql;

	q.schema = c->schema;
	q.name = c->name;
	q.key_columns = (const char *const *)c->r->key_columns;
	q.n_keys = c->keys.n;
	q.lo = lo && lo->v;
	q.hi = hi && hi->v;
	if (q.kind == VERIFY_Q_BUCKETS || q.kind == VERIFY_Q_BUCKET_ROWS)
		q.n_keys = 0;
	for (size_t i = 0; q.lo && i < c->keys.n; i++)
		params[n++] = lo->v[i];
	for (size_t i = 0; q.hi && i < c->keys.n; i++)
		params[n++] = hi->v[i];
	sql = verify_query_sql(&q, &c->keys, c->err, c->errlen);
	if (!sql) {
		c->oom = !c->err[0];
		if (c->oom)
			snprintf(c->err, c->errlen, "out of memory");
		return NULL;
	}
	if (target && c->remote) {
		char why[512];

		res = c->remote->exec(c->remote->arg, &q, n, params, why, sizeof(why));
		if (!res) {
			snprintf(c->err, c->errlen, "could not query target for %s: %s", c->keys.table, why);
			free(sql);
			return NULL;
		}
	} else {
		res = PQexecParams(target ? c->dst : c->src, sql, n, NULL, params, NULL, NULL, 0);
	}
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		snprintf(c->err, c->errlen, "could not query %s for %s: %s", target ? "target" : "source",
			 c->keys.table, PQresultErrorMessage(res));
		c->err[strcspn(c->err, "\n")] = '\0';
		PQclear(res);
		free(sql);
		return NULL;
	}
	if (target)
		c->r->checksum_bytes += strlen(sql) + verify_result_bytes(res);
	free(sql);
	return res;
}

static void verify_bound_free(struct verify_bound *b, size_t n)
{
	if (!b->v)
		return;
	for (size_t i = 0; i < n; i++)
		free(b->v[i]);
	free(b->v);
	b->v = NULL;
}

/* Copies row 0 of res (n text columns) into b. */
static bool verify_bound_take(struct verify_ctx *c, const PGresult *res, struct verify_bound *b)
{
	b->v = calloc(c->keys.n, sizeof(*b->v));
	if (!b->v)
		return false;
	for (size_t i = 0; i < c->keys.n; i++) {
		b->v[i] = strdup(PQgetvalue(res, 0, (int)i));
		if (!b->v[i]) {
			verify_bound_free(b, c->keys.n);
			return false;
		}
	}
	return true;
}

struct verify_sum {
	int64_t count;
	char sum[64];
};

static bool verify_checksum(struct verify_ctx *c, bool target, const struct verify_bound *lo,
			    const struct verify_bound *hi, struct verify_sum *out)
{
	PGresult *res = verify_exec(c, target, (struct verify_query){ .kind = VERIFY_Q_CHECKSUM }, lo, hi);

	if (!res)
		return false;
	out->count = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	snprintf(out->sum, sizeof(out->sum), "%s", PQgetvalue(res, 0, 1));
	PQclear(res);
	return true;
}

static bool verify_same(const struct verify_sum *a, const struct verify_sum *b)
{
	return a->count == b->count && strcmp(a->sum, b->sum) == 0;
}

static bool verify_list_add(struct verify_ctx *c, struct verify_list *l, const char *text, int64_t count)
{
	struct verify_item *items;
	size_t kept = c->r->missing.n + c->r->extra.n + c->r->changed.n;

	l->total += count;
	if (kept >= c->max_report) {
		c->r->truncated = true;
		return true;
	}
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;

		items = realloc(l->items, cap * sizeof(*items));
		if (!items)
			return false;
		l->items = items;
		l->cap = cap;
	}
	l->items[l->n].text = strdup(text);
	if (!l->items[l->n].text)
		return false;
	l->items[l->n++].count = count;
	return true;
}

static void verify_on_diff(void *arg, enum verify_diff_kind kind, const struct verify_row *row, int64_t count)
{
	struct verify_ctx *c = arg;
	struct verify_list *l = kind == VERIFY_MISSING ? &c->r->missing
			      : kind == VERIFY_EXTRA ? &c->r->extra : &c->r->changed;

	if (!verify_list_add(c, l, row->label, count))
		c->oom = true;
}

/* The rows of one fetched result, keyed (keys, hash) or multiset (text, count). */
struct verify_rows {
	struct verify_row *rows;
	char **owned;              /* keys and labels this list allocated */
	size_t n;
	size_t n_owned;
};

static void verify_rows_free(struct verify_rows *rs)
{
	for (size_t i = 0; i < rs->n_owned; i++)
		free(rs->owned[i]);
	free(rs->owned);
	free(rs->rows);
	memset(rs, 0, sizeof(*rs));
}

static bool verify_rows_load(struct verify_ctx *c, const PGresult *res, bool multiset, struct verify_rows *rs)
{
	int n = PQntuples(res);
	const char *vals[64];

	memset(rs, 0, sizeof(*rs));
	rs->rows = calloc(n ? (size_t)n : 1, sizeof(*rs->rows));
	rs->owned = calloc(n ? 2 * (size_t)n : 1, sizeof(*rs->owned));
	if (!rs->rows || !rs->owned)
		return false;
	for (int i = 0; i < n; i++) {
		struct verify_row *row = &rs->rows[rs->n++];

		if (multiset) {
			row->key = row->label = PQgetvalue(res, i, 0);
			row->count = strtoll(PQgetvalue(res, i, 1), NULL, 10);
			row->hash = "";
			continue;
		}
		for (size_t k = 0; k < c->keys.n; k++)
			vals[k] = PQgetvalue(res, i, (int)k);
		row->hash = PQgetvalue(res, i, (int)c->keys.n);
		row->count = 1;
		if (!(rs->owned[rs->n_owned++] = verify_encode_key(vals, c->keys.n)))
			return false;
		row->key = rs->owned[rs->n_owned - 1];
		if (!(rs->owned[rs->n_owned++] = verify_key_label((const char *const *)c->r->key_columns,
								   vals, c->keys.n)))
			return false;
		row->label = rs->owned[rs->n_owned - 1];
	}
	verify_sort_rows(rs->rows, rs->n);
	return true;
}

/* Fetches both sides' rows of a statement and reports their differences. */
static bool verify_fetch_diff(struct verify_ctx *c, struct verify_query q, const struct verify_bound *lo,
			      const struct verify_bound *hi, bool multiset)
{
	PGresult *sres = NULL, *dres = NULL;
	struct verify_rows s = {0}, d = {0};
	bool ok = false;

	c->r->narrowed++;
	if (!(sres = verify_exec(c, false, q, lo, hi)) || !(dres = verify_exec(c, true, q, lo, hi)))
		goto out;
	if (!verify_rows_load(c, sres, multiset, &s) || !verify_rows_load(c, dres, multiset, &d)) {
		c->oom = true;
		snprintf(c->err, c->errlen, "out of memory");
		goto out;
	}
	verify_diff_rows(s.rows, s.n, d.rows, d.n, multiset, verify_on_diff, c);
	if (c->oom) {
		snprintf(c->err, c->errlen, "out of memory");
		goto out;
	}
	ok = true;
out:
	verify_rows_free(&s);
	verify_rows_free(&d);
	PQclear(sres);
	PQclear(dres);
	return ok;
}

static bool verify_narrow(struct verify_ctx *c, const struct verify_bound *lo, const struct verify_bound *hi,
			  const struct verify_sum *s, const struct verify_sum *d);

/* Compares (lo, hi] by checksums and narrows it when they differ. */
static bool verify_range(struct verify_ctx *c, const struct verify_bound *lo, const struct verify_bound *hi,
			 bool top)
{
	struct verify_sum s, d;

	if (!verify_checksum(c, false, lo, hi, &s) || !verify_checksum(c, true, lo, hi, &d))
		return false;
	if (top) {
		c->r->chunks++;
		c->r->rows_source += s.count;
		c->r->rows_target += d.count;
	}
	if (verify_same(&s, &d))
		return true;
	return verify_narrow(c, lo, hi, &s, &d);
}

static bool verify_narrow(struct verify_ctx *c, const struct verify_bound *lo, const struct verify_bound *hi,
			  const struct verify_sum *s, const struct verify_sum *d)
{
	struct verify_bound mid = {0};
	bool from_target, ok = false;
	int64_t offset;
	PGresult *res = NULL;

	switch (verify_plan_split(s->count, d->count, c->leaf_rows, &from_target, &offset)) {
	case VERIFY_STEP_EQUAL:
		return true;
	case VERIFY_STEP_LEAF:
		return verify_fetch_diff(c, (struct verify_query){ .kind = VERIFY_Q_ROWS }, lo, hi, false);
	case VERIFY_STEP_SPLIT:
		break;
	}
	res = verify_exec(c, from_target, (struct verify_query){ .kind = VERIFY_Q_BOUNDARY, .offset = offset },
			  lo, hi);
	if (!res)
		return false;
	if (PQntuples(res) != 1) {
		snprintf(c->err, c->errlen, "could not split a range of %s: rows changed within the snapshot",
			 c->keys.table);
		goto out;
	}
	if (!verify_bound_take(c, res, &mid)) {
		snprintf(c->err, c->errlen, "out of memory");
		goto out;
	}
	ok = verify_range(c, lo, &mid, false) && verify_range(c, &mid, hi, false);
out:
	verify_bound_free(&mid, c->keys.n);
	PQclear(res);
	return ok;
}

/* --rate: after a chunk of rows (read on each side), sleeps until the pace allows it. */
static void verify_pace(struct verify_ctx *c, int64_t rows)
{
	double due_ms, now_ms;

	if (c->rows_per_second <= 0)
		return;
	c->paced_rows += rows;
	due_ms = c->paced_since_ms + (double)c->paced_rows * 1000.0 / c->rows_per_second;
	now_ms = verify_now_ms();
	if (due_ms > now_ms) {
		double wait = due_ms - now_ms;
		struct timespec ts = { .tv_sec = (time_t)(wait / 1000.0),
				       .tv_nsec = (long)(fmod(wait, 1000.0) * 1e6) };

		nanosleep(&ts, NULL);
	}
}

static bool verify_settle(struct verify_ctx *c, bool target);

/* Newer snapshots between chunks, when the caller asked for them. */
static bool verify_refresh(struct verify_ctx *c)
{
	const struct verify_options *o = c->opt;

	if (!o || !o->refresh || verify_now_ms() - c->snapshot_ms < o->refresh_after_ms)
		return true;
	if (!o->refresh(o->refresh_arg, c->err, c->errlen) || !verify_settle(c, false) ||
	    !verify_settle(c, true))
		return false;
	c->snapshot_ms = verify_now_ms();
	c->r->points++;
	return true;
}

static bool verify_keyed(struct verify_ctx *c)
{
	struct verify_bound lo = {0}, hi = {0};
	bool ok = false;

	for (;;) {
		PGresult *res;

		if (lo.v && !verify_refresh(c))
			goto out;
		res = verify_exec(c, false, (struct verify_query){ .kind = VERIFY_Q_BOUNDARY,
								   .offset = c->chunk_rows - 1 }, &lo, NULL);
		if (!res)
			goto out;
		if (PQntuples(res) == 1 && !verify_bound_take(c, res, &hi)) {
			PQclear(res);
			snprintf(c->err, c->errlen, "out of memory");
			goto out;
		}
		PQclear(res);
		if (!verify_range(c, &lo, &hi, true))
			goto out;
		verify_pace(c, c->chunk_rows);
		verify_bound_free(&lo, c->keys.n);
		if (!hi.v)
			break;
		lo = hi;
		hi.v = NULL;
	}
	ok = true;
out:
	verify_bound_free(&lo, c->keys.n);
	verify_bound_free(&hi, c->keys.n);
	return ok;
}

/* ---- tables without a key: multisets of row texts ---- */

struct verify_bucket {
	uint64_t bucket;
	struct verify_sum sum;
};

static bool verify_buckets(struct verify_ctx *c, bool target, uint64_t mask, struct verify_bucket **out,
			   size_t *n_out)
{
	PGresult *res = verify_exec(c, target, (struct verify_query){ .kind = VERIFY_Q_BUCKETS, .mask = mask },
				    NULL, NULL);
	int n;

	if (!res)
		return false;
	n = PQntuples(res);
	*n_out = 0;
	*out = calloc(n ? (size_t)n : 1, sizeof(**out));
	if (!*out) {
		PQclear(res);
		snprintf(c->err, c->errlen, "out of memory");
		return false;
	}
	for (int i = 0; i < n; i++) {
		struct verify_bucket *b = &(*out)[(*n_out)++];

		b->bucket = strtoull(PQgetvalue(res, i, 0), NULL, 10);
		b->sum.count = strtoll(PQgetvalue(res, i, 1), NULL, 10);
		snprintf(b->sum.sum, sizeof(b->sum.sum), "%s", PQgetvalue(res, i, 2));
	}
	PQclear(res);
	return true;
}

static int verify_bucket_cmp(const void *a, const void *b)
{
	const struct verify_bucket *x = a, *y = b;

	return x->bucket < y->bucket ? -1 : x->bucket > y->bucket;
}

static bool verify_bucket_rows(struct verify_ctx *c, uint64_t mask, uint64_t bucket)
{
	return verify_fetch_diff(c, (struct verify_query){ .kind = VERIFY_Q_BUCKET_ROWS, .mask = mask,
							   .bucket = bucket }, NULL, NULL, true);
}

static bool verify_multiset(struct verify_ctx *c)
{
	struct verify_bound none = {0};
	struct verify_bucket *sb = NULL, *db = NULL;
	size_t ns = 0, nd = 0, i = 0, j = 0;
	struct verify_sum s, d;
	uint64_t mask;
	bool ok = false;

	if (!verify_checksum(c, false, &none, &none, &s) || !verify_checksum(c, true, &none, &none, &d))
		return false;
	c->r->chunks = 1;
	c->r->rows_source = s.count;
	c->r->rows_target = d.count;
	if (verify_same(&s, &d))
		return true;
	mask = verify_bucket_count(s.count > d.count ? s.count : d.count, c->leaf_rows) - 1;
	if (!verify_buckets(c, false, mask, &sb, &ns) || !verify_buckets(c, true, mask, &db, &nd))
		goto out;
	qsort(sb, ns, sizeof(*sb), verify_bucket_cmp);
	qsort(db, nd, sizeof(*db), verify_bucket_cmp);
	while (i < ns || j < nd) {
		uint64_t b;
		bool differ;

		if (j == nd || (i < ns && sb[i].bucket < db[j].bucket)) {
			b = sb[i++].bucket;
			differ = true;
		} else if (i == ns || db[j].bucket < sb[i].bucket) {
			b = db[j++].bucket;
			differ = true;
		} else {
			b = sb[i].bucket;
			differ = !verify_same(&sb[i].sum, &db[j].sum);
			i++;
			j++;
		}
		if (differ && !verify_bucket_rows(c, mask, b))
			goto out;
	}
	ok = true;
out:
	free(sb);
	free(db);
	return ok;
}

/* ---- set-up ---- */

static bool verify_settle(struct verify_ctx *c, bool target)
{
	PGresult *res;
	const char *side = target ? "target" : "source";
	char why[512];
	bool ok;

	if (target && c->remote) {
		struct verify_query q = { .kind = VERIFY_Q_SETTINGS };

		res = c->remote->exec(c->remote->arg, &q, 0, NULL, why, sizeof(why));
		if (!res) {
			snprintf(c->err, c->errlen, "could not set output settings on %s: %s", side, why);
			return false;
		}
	} else {
		res = PQexec(target ? c->dst : c->src, verify_settings);
	}
	ok = PQresultStatus(res) == PGRES_TUPLES_OK;
	if (!ok) {
		snprintf(c->err, c->errlen, "could not set output settings on %s: %s", side,
			 PQresultErrorMessage(res));
		c->err[strcspn(c->err, "\n")] = '\0';
	}
	PQclear(res);
	return ok;
}

/* The key columns and their types, from the source's catalog. */
static bool verify_lookup_keys(struct verify_ctx *c, const struct verify_target *t)
{
	static const char by_index[] =
		"SELECT a.attname, format_type(a.atttypid, a.atttypmod) "
		"FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey) "
		"WHERE i.indexrelid = (SELECT indexrelid FROM pg_index WHERE indrelid = $1::regclass "
		"AND (indisprimary OR indisreplident) ORDER BY indisprimary DESC LIMIT 1) "
		"ORDER BY array_position(i.indkey::int2[], a.attnum)";
	static const char by_name[] =
		"SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
		"WHERE a.attrelid = $1::regclass AND a.attname = $2 AND a.attnum > 0 AND NOT a.attisdropped";
	PGresult *res = NULL;
	size_t n;
	bool ok = false;

	if (t->key_columns && t->n_keys > VERIFY_MAX_KEYS) {
		snprintf(c->err, c->errlen, "too many key columns for %s", c->table_q);
		return false;
	}
	if (!t->key_columns) {
		const char *p[1] = {c->table_q};

		res = PQexecParams(c->src, by_index, 1, NULL, p, NULL, NULL, 0);
		if (PQresultStatus(res) != PGRES_TUPLES_OK)
			goto failed;
		n = (size_t)PQntuples(res);
		if (n > VERIFY_MAX_KEYS) {
			snprintf(c->err, c->errlen, "too many key columns for %s", c->table_q);
			goto out;
		}
	} else {
		n = t->n_keys;
	}
	c->r->key_columns = calloc(n ? n : 1, sizeof(char *));
	c->cols_q = calloc(n ? n : 1, sizeof(char *));
	c->types = calloc(n ? n : 1, sizeof(char *));
	if (!c->r->key_columns || !c->cols_q || !c->types)
		goto oom;
	for (size_t i = 0; i < n; i++) {
		const char *name, *type;

		if (t->key_columns) {
			const char *p[2] = {c->table_q, t->key_columns[i]};

			PQclear(res);
			res = PQexecParams(c->src, by_name, 2, NULL, p, NULL, NULL, 0);
			if (PQresultStatus(res) != PGRES_TUPLES_OK)
				goto failed;
			if (PQntuples(res) != 1) {
				snprintf(c->err, c->errlen, "column \"%s\" of %s does not exist", t->key_columns[i],
					 c->table_q);
				goto out;
			}
			name = PQgetvalue(res, 0, 0);
			type = PQgetvalue(res, 0, 1);
		} else {
			name = PQgetvalue(res, (int)i, 0);
			type = PQgetvalue(res, (int)i, 1);
		}
		c->r->key_columns[i] = strdup(name);
		c->cols_q[i] = apply_sql_ident_dup(name);
		c->types[i] = strdup(type);
		c->r->n_keys = c->keys.n = i + 1;
		if (!c->r->key_columns[i] || !c->cols_q[i] || !c->types[i])
			goto oom;
	}
	c->keys.columns = (const char *const *)c->cols_q;
	c->keys.types = (const char *const *)c->types;
	c->r->keyed = n > 0;
	ok = true;
	goto out;
failed:
	snprintf(c->err, c->errlen, "could not look up the key of %s: %s", c->table_q, PQresultErrorMessage(res));
	c->err[strcspn(c->err, "\n")] = '\0';
	goto out;
oom:
	snprintf(c->err, c->errlen, "out of memory");
out:
	PQclear(res);
	return ok;
}

static double verify_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static bool verify_run(PGconn *source, PGconn *target, const struct verify_remote *remote,
		       const struct verify_target *t, const struct verify_options *options,
		       struct verify_result *out, char *err, size_t errlen)
{
	struct verify_ctx c = {
		.src = source, .dst = target, .remote = remote, .r = out, .err = err, .errlen = errlen,
		.rows_per_second = options ? options->rows_per_second : 0,
		.opt = options,
		.chunk_rows = options && options->chunk_rows > 0 ? options->chunk_rows : VERIFY_DEFAULT_CHUNK_ROWS,
		.leaf_rows = options && options->leaf_rows > 0 ? options->leaf_rows : VERIFY_DEFAULT_LEAF_ROWS,
		.max_report = options && options->max_report > 0 ? options->max_report : VERIFY_DEFAULT_MAX_REPORT,
	};
	double start = verify_now_ms();
	struct apply_sql_buf b;
	bool ok = false;

	memset(out, 0, sizeof(*out));
	apply_sql_buf_init(&b);
	apply_sql_qualified(&b, t->schema, t->name);
	c.table_q = apply_sql_buf_take(&b);
	out->table = c.table_q ? strdup(c.table_q) : NULL;
	if (!c.table_q || !out->table) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	c.keys.table = c.table_q;
	c.schema = t->schema;
	c.name = t->name;
	c.paced_since_ms = start;
	c.snapshot_ms = start;
	out->points = 1;
	if (!verify_settle(&c, false) || !verify_settle(&c, true))
		goto out;
	if (!verify_lookup_keys(&c, t))
		goto out;
	ok = out->keyed ? verify_keyed(&c) : verify_multiset(&c);
out:
	out->elapsed_ms = verify_now_ms() - start;
	for (size_t i = 0; i < c.keys.n; i++) {
		free(c.cols_q[i]);
		free(c.types[i]);
	}
	free(c.cols_q);
	free(c.types);
	free(c.table_q);
	return ok;
}

bool verify_table(PGconn *source, PGconn *target, const struct verify_target *t,
		  const struct verify_options *options, struct verify_result *out,
		  char *err, size_t errlen)
{
	return verify_run(source, target, NULL, t, options, out, err, errlen);
}

bool verify_table_remote(PGconn *source, const struct verify_remote *target,
			 const struct verify_target *t, const struct verify_options *options,
			 struct verify_result *out, char *err, size_t errlen)
{
	return verify_run(source, NULL, target, t, options, out, err, errlen);
}

bool verify_result_equal(const struct verify_result *r)
{
	return r->missing.total == 0 && r->extra.total == 0 && r->changed.total == 0;
}

static void verify_list_free(struct verify_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->items[i].text);
	free(l->items);
	memset(l, 0, sizeof(*l));
}

void verify_result_free(struct verify_result *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n_keys; i++)
		free(r->key_columns[i]);
	free(r->key_columns);
	free(r->table);
	verify_list_free(&r->missing);
	verify_list_free(&r->extra);
	verify_list_free(&r->changed);
	memset(r, 0, sizeof(*r));
}

/* ---- rendering ---- */

static void verify_list_json(struct json_out *j, const char *key, const struct verify_list *l, bool counted)
{
	json_array_begin(j, key);
	for (size_t i = 0; i < l->n; i++) {
		if (!counted) {
			json_string(j, NULL, l->items[i].text);
			continue;
		}
		json_object_begin(j, NULL);
		json_string(j, "row", l->items[i].text);
		json_int(j, "count", l->items[i].count);
		json_object_end(j);
	}
	json_array_end(j);
}

void verify_result_json(struct json_out *j, const char *key, const struct verify_result *r)
{
	json_object_begin(j, key);
	json_string(j, "table", r->table);
	json_bool(j, "keyed", r->keyed);
	json_array_begin(j, "key");
	for (size_t i = 0; i < r->n_keys; i++)
		json_string(j, NULL, r->key_columns[i]);
	json_array_end(j);
	json_bool(j, "equal", verify_result_equal(r));
	json_int(j, "rows_source", r->rows_source);
	json_int(j, "rows_target", r->rows_target);
	json_uint(j, "chunks", r->chunks);
	json_uint(j, "narrowed", r->narrowed);
	json_int(j, "missing_total", r->missing.total);
	json_int(j, "extra_total", r->extra.total);
	json_int(j, "changed_total", r->changed.total);
	verify_list_json(j, "missing", &r->missing, !r->keyed);
	verify_list_json(j, "extra", &r->extra, !r->keyed);
	verify_list_json(j, "changed", &r->changed, false);
	json_bool(j, "truncated", r->truncated);
	json_uint(j, "checksum_bytes", r->checksum_bytes);
	json_uint(j, "points", r->points);
	json_double(j, "elapsed_ms", r->elapsed_ms);
	json_object_end(j);
}

static void verify_list_text(FILE *f, const char *what, const struct verify_list *l, bool counted)
{
	if (l->total == 0)
		return;
	fprintf(f, "  %s on the target: %" PRId64 "\n", what, l->total);
	for (size_t i = 0; i < l->n; i++) {
		if (counted)
			fprintf(f, "    %s (x%" PRId64 ")\n", l->items[i].text, l->items[i].count);
		else
			fprintf(f, "    %s\n", l->items[i].text);
	}
}

char *verify_report_text(const struct verify_result *r)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (!f)
		return NULL;
	fprintf(f, "%s: %s\n", r->table ? r->table : "(unknown table)",
		verify_result_equal(r) ? "equal" : "DIFFERENT");
	fprintf(f, "  rows: %" PRId64 " on the source, %" PRId64 " on the target, in %" PRIu64 " chunk%s%s\n",
		r->rows_source, r->rows_target, r->chunks, r->chunks == 1 ? "" : "s",
		r->keyed ? "" : " (no key: compared as a multiset of rows)");
	verify_list_text(f, "missing", &r->missing, !r->keyed);
	verify_list_text(f, "extra", &r->extra, !r->keyed);
	verify_list_text(f, "changed", &r->changed, false);
	if (r->truncated)
		fprintf(f, "  (more differences than reported)\n");
	fprintf(f, "  checksum traffic: %" PRIu64 " bytes, %.1f ms\n", r->checksum_bytes, r->elapsed_ms);
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}
