/*
 * sequences.c — sequence values from the source to the sink (see
 * sequences.h).
 */
#include "replicator/sequences.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "common/json.h"
#include "common/log.h"
#include "replicator/pgquery.h"

struct seq_list {
	struct seq_value *v;
	size_t n;
	size_t cap;
};

static void seq_list_clear(struct seq_list *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->v[i].schema);
		free(l->v[i].name);
	}
	l->n = 0;
}

static void seq_list_free(struct seq_list *l)
{
	seq_list_clear(l);
	free(l->v);
	l->v = NULL;
	l->cap = 0;
}

static struct seq_value *seq_list_find(struct seq_list *l, const char *schema, const char *name)
{
	for (size_t i = 0; i < l->n; i++) {
		if (strcmp(l->v[i].schema, schema) == 0 && strcmp(l->v[i].name, name) == 0)
			return &l->v[i];
	}
	return NULL;
}

/* Sets schema.name to value, or raises it when keep_max and it is there already. */
static bool seq_list_put(struct seq_list *l, const char *schema, const char *name, int64_t value,
		bool keep_max)
{
	struct seq_value *e = seq_list_find(l, schema, name);

	if (e) {
		if (!keep_max || value > e->value)
			e->value = value;
		return true;
	}
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		struct seq_value *grown = realloc(l->v, cap * sizeof(*grown));
		if (!grown)
			return false;
		l->v = grown;
		l->cap = cap;
	}
	e = &l->v[l->n];
	e->schema = strdup(schema);
	e->name = strdup(name);
	e->value = value;
	if (!e->schema || !e->name) {
		free(e->schema);
		free(e->name);
		return false;
	}
	l->n++;
	return true;
}

/* Appends text as a SQL string literal (standard_conforming_strings). */
static bool seq_put_literal(FILE *out, const char *text)
{
	fputc('\'', out);
	for (const char *p = text; *p; p++) {
		if (*p == '\'')
			fputc('\'', out);
		fputc(*p, out);
	}
	fputc('\'', out);
	return !ferror(out);
}

/* ------------------------------------------------------------- reader */

struct seq_reader {
	struct event_base *base;
	struct pgquery *q;
	struct event *timer;
	char *sql;
	unsigned interval_ms;
	struct seq_list sent;
	seq_changed_fn cb;
	void *arg;
};

static void seq_reader_result(void *arg, const PGresult *res, const char *err)
{
	struct seq_reader *r = arg;
	struct seq_list changed = { 0 };

	if (!res) {
		(void)err;   /* logged by pgquery; the next poll tries again */
		return;
	}
	for (int i = 0; i < PQntuples(res); i++) {
		const char *schema = PQgetvalue(res, i, 0), *name = PQgetvalue(res, i, 1);
		int64_t value = strtoll(PQgetvalue(res, i, 2), NULL, 10);
		struct seq_value *prev = seq_list_find(&r->sent, schema, name);

		if (prev && prev->value == value)
			continue;
		if (!seq_list_put(&changed, schema, name, value, false) ||
		    !seq_list_put(&r->sent, schema, name, value, false)) {
			log_error("out of memory reading sequences");
			break;
		}
	}
	if (changed.n > 0)
		r->cb(r->arg, changed.v, changed.n);
	seq_list_free(&changed);
}

static void seq_reader_tick(evutil_socket_t fd, short what, void *arg)
{
	struct seq_reader *r = arg;

	(void)fd;
	(void)what;
	if (!pgquery_busy(r->q))
		pgquery_run(r->q, r->sql, seq_reader_result, r);
}

static char *seq_reader_sql(const char *publication)
{
	char *sql = NULL, *lit = NULL;
	size_t len = 0, litlen = 0;
	FILE *out = open_memstream(&lit, &litlen);

	if (!out)
		return NULL;
	seq_put_literal(out, publication);
	fclose(out);
	out = open_memstream(&sql, &len);
	if (!out) {
		free(lit);
		return NULL;
	}
	fprintf(out,
		/* names joined to the catalog, not cast to regclass: a cast needs USAGE on
		 * the schema, and the planner may apply it to rows of any schema
		 * (pg_toast), which a role without superuser is refused */
		"SELECT s.schemaname, s.sequencename, s.last_value "
		"FROM pg_catalog.pg_sequences s "
		"JOIN pg_catalog.pg_namespace sn ON sn.nspname = s.schemaname "
		"JOIN pg_catalog.pg_class sc ON sc.relnamespace = sn.oid AND sc.relname = s.sequencename "
		"WHERE s.last_value IS NOT NULL AND ("
		"(EXISTS (SELECT 1 FROM pg_catalog.pg_publication p "
		"WHERE p.pubname = %s AND p.puballtables) "
		"AND s.schemaname NOT IN ('pg_catalog', 'information_schema')) "
		"OR EXISTS (SELECT 1 FROM pg_catalog.pg_depend d "
		"JOIN pg_catalog.pg_class tc ON tc.oid = d.refobjid "
		"JOIN pg_catalog.pg_namespace tn ON tn.oid = tc.relnamespace "
		"JOIN pg_catalog.pg_publication_tables pt ON pt.pubname = %s "
		"AND pt.schemaname = tn.nspname AND pt.tablename = tc.relname "
		"WHERE d.classid = 'pg_catalog.pg_class'::regclass "
		"AND d.refclassid = 'pg_catalog.pg_class'::regclass "
		"AND d.objid = sc.oid AND d.deptype IN ('a', 'i'))) "
		"ORDER BY 1, 2", lit, lit);
	fclose(out);
	free(lit);
	return sql;
}

struct seq_reader *seq_reader_new(struct event_base *base, const char *conninfo,
		const char *stream, const char *publication, unsigned interval_ms,
		seq_changed_fn cb, void *arg)
{
	struct seq_reader *r = calloc(1, sizeof(*r));
	struct timeval tv = { interval_ms / 1000, (interval_ms % 1000) * 1000 };
	char what[160];

	if (!r)
		return NULL;
	snprintf(what, sizeof(what), "stream \"%s\": reading sequences at the source", stream);
	r->base = base;
	r->cb = cb;
	r->arg = arg;
	r->interval_ms = interval_ms;
	r->sql = seq_reader_sql(publication);
	r->q = pgquery_new(base, conninfo, what);
	r->timer = event_new(base, -1, EV_PERSIST, seq_reader_tick, r);
	if (!r->sql || !r->q || !r->timer || event_add(r->timer, &tv) < 0) {
		seq_reader_free(r);
		return NULL;
	}
	return r;
}

void seq_reader_resend_all(struct seq_reader *r)
{
	seq_list_clear(&r->sent);
}

void seq_reader_free(struct seq_reader *r)
{
	if (!r)
		return;
	if (r->timer)
		event_free(r->timer);
	pgquery_free(r->q);
	seq_list_free(&r->sent);
	free(r->sql);
	free(r);
}

/* ------------------------------------------------------------- writer */

struct seq_writer {
	struct pgquery *q;
	struct seq_list pending;     /* to send next, highest value per sequence */
	uint64_t updates;            /* statements that succeeded */
	uint64_t raised;             /* sequences raised by them */
	uint64_t failures;
};

char *seq_writer_sql(const struct seq_value *seqs, size_t n)
{
	char *sql = NULL;
	size_t len = 0;
	FILE *out;

	if (n == 0)
		return NULL;
	out = open_memstream(&sql, &len);
	if (!out)
		return NULL;
	/*
	 * setval only where the target is behind: a sequence is never lowered,
	 * and one missing on the target is passed over (the join drops it).
	 */
	/* READ WRITE: a fenced old primary that is now a replica still takes them */
	fputs("BEGIN READ WRITE; ", out);
	fputs("SELECT count(pg_catalog.setval(format('%I.%I', v.s, v.n)::regclass, v.val)) "
	      "FROM (VALUES ", out);
	for (size_t i = 0; i < n; i++) {
		fputs(i ? ", (" : "(", out);
		seq_put_literal(out, seqs[i].schema);
		fputs(", ", out);
		seq_put_literal(out, seqs[i].name);
		fprintf(out, ", %" PRId64 "::bigint)", seqs[i].value);
	}
	fputs(") AS v(s, n, val) "
	      "JOIN pg_catalog.pg_sequences ps ON ps.schemaname = v.s AND ps.sequencename = v.n "
	      "WHERE ps.last_value IS NULL OR ps.last_value < v.val; COMMIT", out);
	if (fclose(out) != 0) {
		free(sql);
		return NULL;
	}
	return sql;
}

static void seq_writer_flush(struct seq_writer *w);

static void seq_writer_result(void *arg, const PGresult *res, const char *err)
{
	struct seq_writer *w = arg;

	(void)err;
	if (res) {
		w->updates++;
		if (PQntuples(res) == 1)
			w->raised += strtoull(PQgetvalue(res, 0, 0), NULL, 10);
	} else {
		w->failures++;
	}
	seq_writer_flush(w);
}

static void seq_writer_flush(struct seq_writer *w)
{
	char *sql;

	if (w->pending.n == 0 || pgquery_busy(w->q))
		return;
	sql = seq_writer_sql(w->pending.v, w->pending.n);
	if (sql && pgquery_run(w->q, sql, seq_writer_result, w))
		seq_list_clear(&w->pending);
	free(sql);
}

struct seq_writer *seq_writer_new(struct event_base *base, const char *conninfo,
		const char *stream)
{
	struct seq_writer *w = calloc(1, sizeof(*w));
	char what[160];

	if (!w)
		return NULL;
	snprintf(what, sizeof(what), "stream \"%s\": raising sequences at the target", stream);
	w->q = pgquery_new(base, conninfo, what);
	if (!w->q) {
		free(w);
		return NULL;
	}
	return w;
}

bool seq_writer_apply(struct seq_writer *w, const struct seq_value *seqs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (!seq_list_put(&w->pending, seqs[i].schema, seqs[i].name, seqs[i].value, true))
			return false;
	}
	seq_writer_flush(w);
	return true;
}

void seq_writer_status_json(const struct seq_writer *w, struct json_out *j)
{
	json_object_begin(j, "sequences");
	json_uint(j, "updates", w->updates);
	json_uint(j, "raised", w->raised);
	json_uint(j, "failures", w->failures);
	json_uint(j, "pending", w->pending.n);
	json_object_end(j);
}

void seq_writer_free(struct seq_writer *w)
{
	if (!w)
		return;
	pgquery_free(w->q);
	seq_list_free(&w->pending);
	free(w);
}
