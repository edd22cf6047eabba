/*
 * pubwatch.c — watches a publication's table list (see pubwatch.h).
 *
 * NOTES
 * Lists are sorted arrays of "schema.table" names, compared by a merge: a
 * poll every few seconds over a few thousand names costs nothing next to the
 * query itself, and sorted lists make the differences come out in order.
 */
#include "replicator/pubwatch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <libpq-fe.h>

#include "common/json.h"
#include "common/log.h"
#include "common/lsn.h"
#include "replicator/pgquery.h"
#include "replicator/syncplan.h"
#include "replicator/syncstate.h"

struct pubwatch_list {
	char **v;
	size_t n;
};

struct pubwatch {
	struct pgquery *q;
	struct event *timer;
	struct event *now;
	char *sql;
	char *what;
	unsigned interval_ms;
	bool have_base;
	struct pubwatch_list base;   /* the stream's tables: the first answer, and accepted joins */
	struct pubwatch_list cur;    /* the last answer */
	pubwatch_fn cb;
	void *arg;
	pubwatch_list_fn list_cb;
	void *list_arg;
};

static void pubwatch_list_free(struct pubwatch_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

static int pubwatch_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool pubwatch_list_has(const struct pubwatch_list *l, const char *name)
{
	return l->n && bsearch(&name, l->v, l->n, sizeof(char *), pubwatch_cmp) != NULL;
}

static bool pubwatch_list_copy(struct pubwatch_list *dst, const struct pubwatch_list *src)
{
	struct pubwatch_list out = { calloc(src->n ? src->n : 1, sizeof(char *)), 0 };

	if (!out.v)
		return false;
	for (; out.n < src->n; out.n++) {
		if (!(out.v[out.n] = strdup(src->v[out.n]))) {
			pubwatch_list_free(&out);
			return false;
		}
	}
	pubwatch_list_free(dst);
	*dst = out;
	return true;
}

/* The whole answer to whoever wants it (pubwatch_on_list()). */
static void pubwatch_give_list(struct pubwatch *w, const PGresult *res)
{
	int rows = PQntuples(res);
	const char **schemas = calloc(rows ? (size_t)rows : 1, sizeof(char *));
	const char **tables = calloc(rows ? (size_t)rows : 1, sizeof(char *));
	uint64_t lsn = 0;

	if (!schemas || !tables || !lsn_parse(PQgetvalue(res, 0, 2), &lsn)) {
		log_error("%s: could not read the publication's tables", w->what);
	} else {
		for (int r = 0; r < rows; r++) {
			schemas[r] = PQgetvalue(res, r, 0);
			tables[r] = PQgetvalue(res, r, 1);
		}
		w->list_cb(w->list_arg, schemas, tables, (size_t)rows, lsn);
	}
	free(schemas);
	free(tables);
}

static void pubwatch_result(void *arg, const PGresult *res, const char *err)
{
	struct pubwatch *w = arg;
	struct pubwatch_list next = { 0 };
	struct pubwatch_change *changes = NULL;
	size_t nchanges = 0, i = 0, k = 0;
	int rows;

	(void)err;           /* logged by pgquery; the next poll tries again */
	if (!res || PQresultStatus(res) != PGRES_TUPLES_OK)
		return;
	rows = PQntuples(res);
	if (rows == 1 && PQgetisnull(res, 0, 0))
		return;              /* no publication yet: nothing to compare with */
	if (w->list_cb && rows > 0)  /* an empty answer has no position: nothing is given */
		pubwatch_give_list(w, res);
	next.v = calloc(rows ? (size_t)rows : 1, sizeof(char *));
	if (!next.v)
		goto oom;
	for (int r = 0; r < rows; r++, next.n++)
		if (!(next.v[next.n] = syncplan_qualified(PQgetvalue(res, r, 0), PQgetvalue(res, r, 1))))
			goto oom;
	qsort(next.v, next.n, sizeof(char *), pubwatch_cmp);
	if (!w->have_base) {
		if (!pubwatch_list_copy(&w->base, &next))
			goto oom;
		w->have_base = true;
		log_info("%s: publication lists %zu tables", w->what, next.n);
	} else {
		/* what changed since the last answer, in name order */
		changes = calloc(w->cur.n + next.n + 1, sizeof(*changes));
		if (!changes)
			goto oom;
		while (i < w->cur.n || k < next.n) {
			int c = i == w->cur.n ? 1 : k == next.n ? -1 : strcmp(w->cur.v[i], next.v[k]);

			if (c < 0)
				changes[nchanges++] = (struct pubwatch_change){ w->cur.v[i++], false };
			else if (c > 0)
				changes[nchanges++] = (struct pubwatch_change){ next.v[k++], true };
			else
				i++, k++;
		}
		if (nchanges)
			w->cb(w->arg, changes, nchanges);
		free(changes);
	}
	pubwatch_list_free(&w->cur);
	w->cur = next;
	return;
oom:
	log_error("%s: out of memory reading the publication's tables", w->what);
	pubwatch_list_free(&next);
}

static void pubwatch_tick(evutil_socket_t fd, short what, void *arg)
{
	struct pubwatch *w = arg;

	(void)fd;
	(void)what;
	if (!pgquery_busy(w->q))
		(void)pgquery_run(w->q, w->sql, pubwatch_result, w);
}

struct pubwatch *pubwatch_new(struct event_base *base, const char *conninfo,
		const char *publication, unsigned interval_ms, const char *what, pubwatch_fn cb,
		void *arg)
{
	struct pubwatch *w = calloc(1, sizeof(*w));
	char *lit = syncstate_literal(publication);
	struct timeval tv = { interval_ms / 1000, (interval_ms % 1000) * 1000 };

	if (!w || !lit)
		goto fail;
	w->cb = cb;
	w->arg = arg;
	w->interval_ms = interval_ms;
	w->what = strdup(what);
	/* a row of NULLs: the publication is not there yet (the source creates it) */
	/* the WAL position after the list: every change to it committed before there */
	if (asprintf(&w->sql, "SELECT schemaname, tablename, pg_catalog.pg_current_wal_lsn()::text "
		     "FROM pg_catalog.pg_publication_tables "
		     "WHERE pubname = %s AND schemaname <> '" SYNCSTATE_SCHEMA "' UNION ALL "
		     "SELECT NULL, NULL, NULL WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_publication "
		     "WHERE pubname = %s)", lit, lit) < 0)
		w->sql = NULL;
	w->q = pgquery_new(base, conninfo, what);
	w->timer = event_new(base, -1, EV_PERSIST, pubwatch_tick, w);
	w->now = event_new(base, -1, 0, pubwatch_tick, w);
	if (!w->what || !w->sql || !w->q || !w->timer || !w->now)
		goto fail;
	event_add(w->timer, &tv);
	event_active(w->now, EV_TIMEOUT, 0);
	free(lit);
	return w;
fail:
	free(lit);
	pubwatch_free(w);
	return NULL;
}

void pubwatch_free(struct pubwatch *w)
{
	if (!w)
		return;
	if (w->timer)
		event_free(w->timer);
	if (w->now)
		event_free(w->now);
	pgquery_free(w->q);
	pubwatch_list_free(&w->base);
	pubwatch_list_free(&w->cur);
	free(w->sql);
	free(w->what);
	free(w);
}

void pubwatch_on_list(struct pubwatch *w, pubwatch_list_fn fn, void *arg)
{
	w->list_cb = fn;
	w->list_arg = arg;
}

void pubwatch_poll_now(struct pubwatch *w)
{
	if (!event_pending(w->now, EV_TIMEOUT, NULL))
		event_active(w->now, EV_TIMEOUT, 0);
}

bool pubwatch_ready(const struct pubwatch *w)
{
	return w->have_base;
}

void pubwatch_accept(struct pubwatch *w, const char *name)
{
	char **grown, *copy;

	if (pubwatch_list_has(&w->base, name))
		return;
	grown = realloc(w->base.v, (w->base.n + 1) * sizeof(char *));
	if (grown)
		w->base.v = grown;
	copy = grown ? strdup(name) : NULL;
	if (!copy) {
		log_error("%s: out of memory recording a joined table", w->what);
		return;
	}
	w->base.v[w->base.n++] = copy;
	qsort(w->base.v, w->base.n, sizeof(char *), pubwatch_cmp);
}

void pubwatch_status_json(const struct pubwatch *w, struct json_out *j)
{
	json_object_begin(j, "publication");
	json_bool(j, "known", w->have_base);
	json_uint(j, "tables", w->cur.n);
	json_array_begin(j, "added");
	for (size_t i = 0; w->have_base && i < w->cur.n; i++)
		if (!pubwatch_list_has(&w->base, w->cur.v[i]))
			json_string(j, NULL, w->cur.v[i]);
	json_array_end(j);
	json_array_begin(j, "removed");
	for (size_t i = 0; i < w->base.n; i++)
		if (!pubwatch_list_has(&w->cur, w->base.v[i]))
			json_string(j, NULL, w->base.v[i]);
	json_array_end(j);
	json_object_end(j);
}
