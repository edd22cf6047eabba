/*
 * relmap.c — source relation to target table mapping (see relmap.h).
 */
#include "replicator/relmap.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "replicator/apply_sql.h"

/*
 * One row per column of the table (one row with NULL columns when it has
 * none). The key is the primary key, else the replica identity index.
 * "eqable": enums, ranges and string types compare with their "=" (always an
 * equality); other types when a default btree operator class exists for the
 * type, or for a domain's base type.
 */
const char relmap_catalog_sql[] =
	"SELECT c.relkind, a.attname, a.atttypid, a.attgenerated <> '' AS generated,\n"
	"       coalesce(a.attnum = ANY (k.indkey), false) AS key,\n"
	"       (t.typcategory IN ('E', 'R', 'S') OR EXISTS (\n"
	"          SELECT 1 FROM pg_catalog.pg_opclass oc\n"
	"          JOIN pg_catalog.pg_am am ON am.oid = oc.opcmethod\n"
	"          WHERE am.amname = 'btree' AND oc.opcdefault\n"
	"            AND oc.opcintype = CASE WHEN t.typtype = 'd' THEN t.typbasetype\n"
	"                                    ELSE t.oid END)) AS eqable\n"
	"FROM pg_catalog.pg_class c\n"
	"JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace\n"
	"LEFT JOIN pg_catalog.pg_attribute a\n"
	"       ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped\n"
	"LEFT JOIN pg_catalog.pg_type t ON t.oid = a.atttypid\n"
	"LEFT JOIN LATERAL (SELECT i.indkey FROM pg_catalog.pg_index i\n"
	"                   WHERE i.indrelid = c.oid AND (i.indisprimary OR i.indisreplident)\n"
	"                   ORDER BY i.indisprimary DESC LIMIT 1) k ON true\n"
	"WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')\n"
	"ORDER BY a.attnum";

struct relmap_target *relmap_target_new(const char *nspname, const char *relname,
		char relkind)
{
	struct relmap_target *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->nspname = strdup(nspname);
	t->relname = strdup(relname);
	t->relkind = relkind;
	if (!t->nspname || !t->relname) {
		relmap_target_free(t);
		return NULL;
	}
	return t;
}

bool relmap_target_add(struct relmap_target *t, const char *name, uint32_t type_oid,
		bool eqable, bool key, bool generated)
{
	struct relmap_column *c;

	if (t->ncols == t->cap) {
		size_t cap = t->cap ? 2 * t->cap : 16;
		struct relmap_column *p = realloc(t->cols, cap * sizeof(*p));

		if (!p)
			return false;
		t->cols = p;
		t->cap = cap;
	}
	c = &t->cols[t->ncols];
	c->name = strdup(name);
	if (!c->name)
		return false;
	c->type_oid = type_oid;
	c->eqable = eqable;
	c->key = key;
	c->generated = generated;
	t->ncols++;
	return true;
}

void relmap_target_free(struct relmap_target *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->ncols; i++)
		free(t->cols[i].name);
	free(t->cols);
	free(t->nspname);
	free(t->relname);
	free(t);
}

static char *relmap_strdup_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *relmap_strdup_printf(const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	return n < 0 ? NULL : s;
}

static bool relmap_bool(const char *v)
{
	return v && (v[0] == 't' || v[0] == 'T');
}

bool relmap_target_from_result(const char *nspname, const char *relname,
		const struct pg_result *res, struct relmap_target **out, char **err)
{
	PGresult *r = (PGresult *)res;
	struct relmap_target *t = NULL;
	int nrows = PQntuples(r);
	const char *kind;
	bool ok = false;

	*out = NULL;
	*err = NULL;
	if (nrows == 0)
		return true;
	if (PQnfields(r) != RELMAP_F_COUNT) {
		*err = relmap_strdup_printf("catalog query for \"%s.%s\" returned %d columns, expected %d",
			nspname, relname, PQnfields(r), (int)RELMAP_F_COUNT);
		goto out;
	}
	kind = PQgetvalue(r, 0, RELMAP_F_RELKIND);
	t = relmap_target_new(nspname, relname, kind[0]);
	if (!t)
		goto out;
	for (int i = 0; i < nrows; i++) {
		const char *name, *typ;
		char *end;
		unsigned long oid;

		if (PQgetisnull(r, i, RELMAP_F_ATTNAME))
			continue;            /* a table without columns */
		name = PQgetvalue(r, i, RELMAP_F_ATTNAME);
		typ = PQgetvalue(r, i, RELMAP_F_ATTTYPID);
		oid = strtoul(typ, &end, 10);
		if (*typ == '\0' || *end != '\0' || oid > UINT32_MAX) {
			*err = relmap_strdup_printf("catalog query for \"%s.%s\" returned type \"%s\" for column \"%s\"",
				nspname, relname, typ, name);
			goto out;
		}
		if (!relmap_target_add(t, name, (uint32_t)oid,
				relmap_bool(PQgetvalue(r, i, RELMAP_F_EQABLE)),
				relmap_bool(PQgetvalue(r, i, RELMAP_F_KEY)),
				relmap_bool(PQgetvalue(r, i, RELMAP_F_GENERATED))))
			goto out;
	}
	*out = t;
	t = NULL;
	ok = true;
out:
	relmap_target_free(t);
	return ok;
}

void relmap_free(struct relmap *m)
{
	if (!m)
		return;
	for (uint16_t i = 0; m->atts && i < m->natts; i++) {
		free(m->atts[i].quoted);
		free(m->atts[i].name);
	}
	free(m->atts);
	free(m->display);
	free(m->qualified);
	free(m);
}

static int relmap_target_find(const struct relmap_target *t, const char *name)
{
	for (size_t i = 0; i < t->ncols; i++)
		if (strcmp(t->cols[i].name, name) == 0)
			return (int)i;
	return -1;
}

/* Appends ", "name"" for each listed source column to b. */
static void relmap_list(struct apply_sql_buf *b, const struct pgoutput_rel *src,
		const int *which, int n)
{
	for (int i = 0; i < n; i++)
		apply_sql_buf_printf(b, "%s\"%s\"", i ? ", " : "", src->attrs[which[i]].name);
}

/* The mismatch message; NULL when out of memory. */
static char *relmap_mismatch(const struct pgoutput_rel *src, const int *missing, int nmissing)
{
	struct apply_sql_buf b;

	apply_sql_buf_init(&b);
	apply_sql_buf_printf(&b, "target table \"%s.%s\" lacks column%s ", src->nspname,
		src->relname, nmissing > 1 ? "s" : "");
	relmap_list(&b, src, missing, nmissing);
	apply_sql_buf_puts(&b, " that the source publishes");
	return apply_sql_buf_take(&b);
}

bool relmap_build(const struct pgoutput_rel *src, const struct relmap_target *tgt,
		struct relmap **out, char **err)
{
	struct relmap *m = NULL;
	int *missing = NULL, nmissing = 0;
	struct apply_sql_buf b;
	bool ok = false;
	size_t tgt_key_found = 0;

	*out = NULL;
	*err = NULL;
	if (!tgt) {
		*err = relmap_strdup_printf("target table \"%s.%s\" does not exist",
			src->nspname, src->relname);
		return false;
	}
	missing = calloc((size_t)src->natts + 1, sizeof(int));
	m = calloc(1, sizeof(*m));
	if (!missing || !m)
		goto out;
	m->atts = calloc((size_t)src->natts + 1, sizeof(*m->atts));
	if (!m->atts)
		goto out;
	m->natts = src->natts;
	m->replident = src->replident;
	m->partitioned = tgt->relkind == 'p';
	m->display = relmap_strdup_printf("%s.%s", src->nspname, src->relname);
	apply_sql_buf_init(&b);
	apply_sql_qualified(&b, tgt->nspname, tgt->relname);
	m->qualified = apply_sql_buf_take(&b);
	if (!m->display || !m->qualified)
		goto out;

	for (size_t i = 0; i < tgt->ncols; i++)
		m->n_tgt_key += tgt->cols[i].key;
	for (uint16_t i = 0; i < src->natts; i++) {
		const struct pgoutput_rel_attr *sa = &src->attrs[i];
		struct relmap_att *ma = &m->atts[i];
		int t = relmap_target_find(tgt, sa->name);

		if (t < 0) {
			missing[nmissing++] = i;
			continue;
		}
		ma->target = (uint16_t)t;
		ma->quoted = apply_sql_ident_dup(sa->name);
		ma->name = strdup(sa->name);
		if (!ma->quoted || !ma->name)
			goto out;
		ma->type_oid = tgt->cols[t].type_oid;
		ma->eqable = tgt->cols[t].eqable;
		ma->src_key = sa->key;
		ma->tgt_key = tgt->cols[t].key;
		ma->generated = tgt->cols[t].generated;
		m->n_src_key += sa->key;
		tgt_key_found += ma->tgt_key;
	}
	if (nmissing) {
		*err = relmap_mismatch(src, missing, nmissing);
		goto out;
	}
	m->tgt_key_usable = m->n_tgt_key > 0 && tgt_key_found == m->n_tgt_key;
	*out = m;
	m = NULL;
	ok = true;
out:
	relmap_free(m);
	free(missing);
	return ok;
}

int relmap_find(const struct relmap *m, const char *name)
{
	for (uint16_t i = 0; i < m->natts; i++)
		if (m->atts[i].name && strcmp(m->atts[i].name, name) == 0)
			return i;
	return -1;
}
