/*
 * pgquery.h — one ordinary (non-replication) libpq connection that runs one
 * SQL statement at a time inside the libevent loop, without blocking it.
 *
 * For the small periodic work around a stream (sequence values, health
 * probes): it connects lazily on the first query, reconnects after a failure
 * on the next one, and hands each statement's last result (the last one with rows,
 * when there is one) to a callback.
 *
 * Ownership: the caller owns the pgquery and frees it with pgquery_free() —
 * never from inside its own callback. The PGresult given to the callback is
 * freed after the callback returns.
 */
#ifndef STRAIT_PGQUERY_H
#define STRAIT_PGQUERY_H

#include <stdbool.h>

#include <libpq-fe.h>

struct event_base;
struct pgquery;

/* res is NULL when the statement could not run; err then says why (already logged). */
typedef void (*pgquery_fn)(void *arg, const PGresult *res, const char *err);

/* what names the connection in messages, e.g. "stream \"app\": target". NULL when out of memory. */
struct pgquery *pgquery_new(struct event_base *base, const char *conninfo, const char *what);
void pgquery_free(struct pgquery *q);

/* Sends sql (simple query protocol); false when a statement is still running. */
bool pgquery_run(struct pgquery *q, const char *sql, pgquery_fn cb, void *arg);
bool pgquery_busy(const struct pgquery *q);

#endif
