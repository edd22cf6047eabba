/*
 * verify_request.c — a verify's requests to the target's site: written by
 * the comparing site, read, checked and turned into SQL by the target's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/verify/verify_request.h"
#include "replicator/apply_sql.h"

void verify_request_head(struct relay_proto_verify *m, const struct verify_query *q, size_t nparams)
{
	m->kind = (uint8_t)q->kind;
	m->schema = relay_proto_str(q->schema ? q->schema : "");
	m->table = relay_proto_str(q->name ? q->name : "");
	m->range = (uint8_t)((q->lo ? RELAY_VERIFY_RANGE_LO : 0) | (q->hi ? RELAY_VERIFY_RANGE_HI : 0));
	m->offset = q->offset;
	m->mask = q->mask;
	m->bucket = q->bucket;
	m->ncols = (uint16_t)q->n_keys;
	m->nvalues = (uint32_t)(q->n_keys + nparams);
}

void verify_request_free(struct verify_request *r)
{
	free(r->schema);
	free(r->name);
	for (size_t i = 0; i < VERIFY_MAX_KEYS; i++)
		free(r->keys[i]);
	for (size_t i = 0; i < 2 * VERIFY_MAX_KEYS; i++)
		free(r->params[i]);
	memset(r, 0, sizeof(*r));
}

/* Schemas a verify never reads: the catalogs, and strait's own record. */
static bool verify_request_system_schema(const char *schema)
{
	return strncmp(schema, "pg_", 3) == 0 || strcmp(schema, "information_schema") == 0 ||
	       strcmp(schema, "strait") == 0;
}

/* With streams[].tables set, only those ("table" is in public). */
static bool verify_request_listed(const struct config_stream *cs, const char *schema, const char *name)
{
	size_t ls = strlen(schema);

	if (!cs || cs->n_tables == 0)
		return true;
	for (size_t i = 0; i < cs->n_tables; i++) {
		const char *t = cs->tables[i], *dot = strchr(t, '.');

		if (dot ? ((size_t)(dot - t) == ls && strncmp(t, schema, ls) == 0 && strcmp(dot + 1, name) == 0)
			: (strcmp(schema, "public") == 0 && strcmp(t, name) == 0))
			return true;
	}
	return false;
}

/* The next value of m's values into *out (NULL for an SQL NULL). */
static bool verify_request_value(struct wire_reader *rd, char **out, bool nullable)
{
	const char *v;
	uint32_t n;

	if (!relay_proto_verify_value(rd, &v, &n) || (!v && !nullable) || (v && memchr(v, 0, n)))
		return false;
	*out = NULL;
	return !v || (*out = strndup(v, n)) != NULL;
}

static bool verify_request_fields(const struct relay_proto_verify *m, struct verify_request *r,
				  char *why, size_t whylen)
{
	struct wire_reader rd;

	r->q.kind = (enum verify_query_kind)m->kind;
	r->q.n_keys = m->ncols;
	r->q.lo = (m->range & RELAY_VERIFY_RANGE_LO) != 0;
	r->q.hi = (m->range & RELAY_VERIFY_RANGE_HI) != 0;
	r->q.offset = m->offset;
	r->q.mask = m->mask;
	r->q.bucket = m->bucket;
	if (m->range & ~(RELAY_VERIFY_RANGE_LO | RELAY_VERIFY_RANGE_HI)) {
		snprintf(why, whylen, "unknown range flags");
		return false;
	}
	if (m->ncols > VERIFY_MAX_KEYS) {
		snprintf(why, whylen, "too many key columns");
		return false;
	}
	r->nparams = m->nvalues - m->ncols;
	if (r->nparams != verify_query_nparams(&r->q)) {
		snprintf(why, whylen, "%zu values for bounds that take %zu", r->nparams,
			 verify_query_nparams(&r->q));
		return false;
	}
	r->schema = strndup(m->schema.ptr ? m->schema.ptr : "", m->schema.len);
	r->name = strndup(m->table.ptr ? m->table.ptr : "", m->table.len);
	if (!r->schema || !r->name)
		goto oom;
	wire_reader_init(&rd, m->values, m->values_len);
	for (size_t i = 0; i < m->ncols; i++)
		if (!verify_request_value(&rd, &r->keys[i], false) || !r->keys[i][0]) {
			snprintf(why, whylen, "a key column name that is empty, NULL or not text");
			return false;
		}
	for (size_t i = 0; i < r->nparams; i++)
		if (!verify_request_value(&rd, &r->params[i], true)) {
			snprintf(why, whylen, "a bound value that is not text");
			return false;
		}
	r->q.schema = r->schema;
	r->q.name = r->name;
	r->q.key_columns = (const char *const *)r->keys;
	return true;
oom:
	snprintf(why, whylen, "out of memory");
	return false;
}

bool verify_request_read(const struct relay_proto_verify *m, const struct config_stream *cs,
			 struct verify_request *r, char *why, size_t whylen)
{
	struct verify_keys none = { .table = "", .n = 0 };
	char *probe;

	memset(r, 0, sizeof(*r));
	if (m->op != RELAY_VERIFY_QUERY) {
		snprintf(why, whylen, "not a query");
		return false;
	}
	if (m->text.len != 0) {
		snprintf(why, whylen, "it carries statement text (%u bytes): this site builds every "
			 "statement itself", (unsigned)m->text.len);
		return false;
	}
	if (!verify_request_fields(m, r, why, whylen))
		return false;
	/* the shape: every kind, bound, offset, mask and bucket the comparison makes */
	none.n = r->q.n_keys;
	{
		const char *cols[VERIFY_MAX_KEYS], *types[VERIFY_MAX_KEYS];

		for (size_t i = 0; i < none.n; i++)
			cols[i] = types[i] = "x";
		none.columns = cols;
		none.types = types;
		probe = verify_query_sql(&r->q, &none, why, whylen);
	}
	if (!probe) {
		if (!why[0])
			snprintf(why, whylen, "out of memory");
		return false;
	}
	free(probe);
	if (r->q.kind == VERIFY_Q_SETTINGS) {
		if (r->schema[0] || r->name[0]) {
			snprintf(why, whylen, "a table on a request that takes none");
			return false;
		}
		return true;
	}
	if (!r->schema[0] || !r->name[0]) {
		snprintf(why, whylen, "no table named");
		return false;
	}
	if (verify_request_system_schema(r->schema)) {
		snprintf(why, whylen, "schema \"%s\" is not replicated", r->schema);
		return false;
	}
	if (!verify_request_listed(cs, r->schema, r->name)) {
		snprintf(why, whylen, "table \"%s\".\"%s\" is not one of the stream's tables", r->schema, r->name);
		return false;
	}
	return true;
}

/* ---- this site's catalog ---- */

char *verify_request_lookup_sql(const struct verify_request *r)
{
	struct apply_sql_buf b;

	/* one row per key column in order (one row of NULLs without keys); none without the table */
	apply_sql_buf_init(&b);
	apply_sql_buf_puts(&b, "SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod) "
			   "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
			   "LEFT JOIN unnest(ARRAY[");
	for (size_t i = 0; i < r->q.n_keys; i++)
		apply_sql_buf_printf(&b, "%s$%zu", i ? ", " : "", i + 3);
	apply_sql_buf_puts(&b, "]::text[]) WITH ORDINALITY AS k(name, ord) ON true "
			   "LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attname = k.name "
			   "AND a.attnum > 0 AND NOT a.attisdropped "
			   "WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p') ORDER BY k.ord");
	return apply_sql_buf_take(&b);
}

size_t verify_request_lookup_params(const struct verify_request *r, const char **params, size_t max)
{
	size_t n = 0;

	if (max < r->q.n_keys + 2)
		return 0;
	params[n++] = r->schema;
	params[n++] = r->name;
	for (size_t i = 0; i < r->q.n_keys; i++)
		params[n++] = r->keys[i];
	return n;
}

void verify_request_table_free(struct verify_request_table *t)
{
	free(t->schema);
	free(t->name);
	for (size_t i = 0; i < t->n; i++) {
		free(t->keys[i]);
		free(t->types[i]);
	}
	memset(t, 0, sizeof(*t));
}

bool verify_request_table_set(struct verify_request_table *t, const struct verify_request *r,
			      const PGresult *lookup, char *why, size_t whylen)
{
	int rows = PQntuples(lookup);

	verify_request_table_free(t);
	if (PQresultStatus(lookup) != PGRES_TUPLES_OK || PQnfields(lookup) != 2) {
		snprintf(why, whylen, "the catalog lookup failed");
		return false;
	}
	if (rows == 0) {
		snprintf(why, whylen, "no table \"%s\".\"%s\" here", r->schema, r->name);
		return false;
	}
	if ((size_t)rows != (r->q.n_keys ? r->q.n_keys : 1)) {
		snprintf(why, whylen, "the catalog lookup of \"%s\".\"%s\" did not fit", r->schema, r->name);
		return false;
	}
	for (size_t i = 0; i < r->q.n_keys; i++)
		if (PQgetisnull(lookup, (int)i, 0)) {
			snprintf(why, whylen, "no column \"%s\" in \"%s\".\"%s\" here", r->keys[i], r->schema,
				 r->name);
			return false;
		}
	t->schema = strdup(r->schema);
	t->name = strdup(r->name);
	if (!t->schema || !t->name)
		goto oom;
	for (size_t i = 0; i < r->q.n_keys; i++) {
		t->keys[i] = strdup(PQgetvalue(lookup, (int)i, 0));
		t->types[i] = strdup(PQgetvalue(lookup, (int)i, 1));
		t->n = i + 1;
		if (!t->keys[i] || !t->types[i])
			goto oom;
	}
	return true;
oom:
	verify_request_table_free(t);
	snprintf(why, whylen, "out of memory");
	return false;
}

bool verify_request_table_matches(const struct verify_request_table *t, const struct verify_request *r)
{
	if (!t->schema || strcmp(t->schema, r->schema) != 0 || strcmp(t->name, r->name) != 0 ||
	    t->n != r->q.n_keys)
		return false;
	for (size_t i = 0; i < t->n; i++)
		if (strcmp(t->keys[i], r->keys[i]) != 0)
			return false;
	return true;
}

char *verify_request_sql(const struct verify_request *r, const struct verify_request_table *t,
			 char *why, size_t whylen)
{
	struct verify_keys k = { .n = 0 };
	char *cols[VERIFY_MAX_KEYS] = { 0 }, *table = NULL, *sql = NULL;
	struct apply_sql_buf b;
	bool settings = r->q.kind == VERIFY_Q_SETTINGS;

	why[0] = '\0';
	if (!settings && !verify_request_table_matches(t, r)) {
		snprintf(why, whylen, "the table was not looked up");
		return NULL;
	}
	apply_sql_buf_init(&b);
	if (!settings)
		apply_sql_qualified(&b, t->schema, t->name);
	table = apply_sql_buf_take(&b);
	if (!table)
		goto out;
	for (size_t i = 0; !settings && i < t->n; i++)
		if (!(cols[i] = apply_sql_ident_dup(t->keys[i])))
			goto out;
	k.table = table;
	k.columns = (const char *const *)cols;
	k.types = (const char *const *)t->types;
	k.n = settings ? 0 : t->n;
	sql = verify_query_sql(&r->q, &k, why, whylen);
out:
	for (size_t i = 0; i < VERIFY_MAX_KEYS; i++)
		free(cols[i]);
	free(table);
	return sql;
}
