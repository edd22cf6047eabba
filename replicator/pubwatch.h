/*
 * pubwatch.h — which tables a stream's publication holds, watched on the
 * source: tables added after the stream started (ALTER PUBLICATION ... ADD
 * TABLE, a reloaded tables: list, a table created under FOR ALL TABLES) and
 * tables removed from it.
 *
 * It reads pg_publication_tables every interval (and on pubwatch_poll_now(),
 * e.g. after a reload). The first answer is the baseline: the tables the
 * stream had when it started; later answers are compared with it. A table
 * added shows in added() until it is removed again or pubwatch_accept() takes
 * it into the baseline (once it has joined the stream); a baseline table no
 * longer published shows in removed() — pgoutput sends no change of it past
 * the removal, so the stream stops applying it there. Schema "strait" (the
 * sync record a FOR ALL TABLES publication on a target holds) is never
 * listed.
 *
 * Ownership: the caller frees the object with pubwatch_free(), never inside
 * its callback. Non-blocking (pgquery.h) inside the caller's event loop.
 */
#ifndef STRAIT_PUBWATCH_H
#define STRAIT_PUBWATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct json_out;
struct pubwatch;

/* A table of the publication, "schema.table" as quote_ident() writes each part. */
struct pubwatch_change {
	const char *name;
	bool added;              /* else removed */
};

/* Called after a poll that found differences from the previous one (valid during the call). */
typedef void (*pubwatch_fn)(void *arg, const struct pubwatch_change *changes, size_t n);

/* Polls every interval_ms from the next loop pass; NULL when out of memory. */
struct pubwatch *pubwatch_new(struct event_base *base, const char *conninfo,
		const char *publication, unsigned interval_ms, const char *what, pubwatch_fn cb,
		void *arg);
void pubwatch_free(struct pubwatch *w);
/*
 * Every answer whole, as the server gave it (names unquoted), with the WAL
 * position read after it: the list holds every change to the publication
 * committed before that position. Valid during the call.
 */
typedef void (*pubwatch_list_fn)(void *arg, const char *const *schemas,
		const char *const *tables, size_t n, uint64_t lsn);
void pubwatch_on_list(struct pubwatch *w, pubwatch_list_fn fn, void *arg);

/* Polls at the next loop pass (a reload may have changed the publication). */
void pubwatch_poll_now(struct pubwatch *w);

/* Whether the baseline is known (the first poll answered). */
bool pubwatch_ready(const struct pubwatch *w);

/* Takes an added table into the baseline (it has joined the stream). */
void pubwatch_accept(struct pubwatch *w, const char *name);

/* Members of the caller's open object: "publication": {tables, added: [...], removed: [...]} */
void pubwatch_status_json(const struct pubwatch *w, struct json_out *j);

#endif
