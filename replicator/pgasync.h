/*
 * pgasync.h — a non-blocking libpq connection driven by the libevent loop,
 * for modules that run their own statement sequences, COPY included (the
 * initial sync's copy and load). pgquery.h is the simpler one-statement
 * helper; this one only connects, watches the socket and leaves the
 * protocol to its owner.
 *
 * The owner sends with libpq's asynchronous calls (PQsendQuery,
 * PQputCopyData, ...) and then calls pgasync_flush(). input() runs whenever
 * the server sent something (PQconsumeInput() has been called) or the owner
 * kicked it; the owner then reads results or COPY rows until PQisBusy() or
 * PQgetCopyData() says to wait. drained() runs once pending output has
 * gone out, after a pgasync_flush() that could not send everything.
 *
 * Ownership: the owner frees the object with pgasync_free(), which may be
 * called from inside one of its callbacks (no callback follows). failed()
 * comes once, after the connection was closed; the object then only waits
 * to be freed.
 */
#ifndef STRAIT_PGASYNC_H
#define STRAIT_PGASYNC_H

#include <stdbool.h>

#include <libpq-fe.h>

struct event_base;
struct pgasync;

struct pgasync_callbacks {
	void (*connected)(void *arg);
	void (*input)(void *arg);
	void (*drained)(void *arg);
	void (*failed)(void *arg, const char *err);
};

/*
 * Starts connecting to conninfo (keyword=value or URI) with the settings
 * named in keys/values (NULL-terminated, may be NULL) taking precedence;
 * NULL when out of memory (logged by the caller). what names the
 * connection in logged notices (copied).
 */
struct pgasync *pgasync_new(struct event_base *base, const char *conninfo,
		const char *const *keys, const char *const *values, const char *what,
		const struct pgasync_callbacks *cb, void *arg);
void pgasync_free(struct pgasync *a);

/* The connection (NULL once failed). */
PGconn *pgasync_conn(const struct pgasync *a);

/*
 * Sends what libpq has queued. Returns 0 when all of it went out, 1 when
 * some is left (drained() follows once it is out), -1 on an error (err
 * holds libpq's message; the owner decides: usually pgasync_fail()).
 */
int pgasync_flush(struct pgasync *a);

/* Closes the connection with a reason and calls failed(). */
void pgasync_fail(struct pgasync *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Stops or restarts watching the socket for input (backpressure). */
void pgasync_set_reading(struct pgasync *a, bool on);

/* Calls input() from the loop soon, whatever the socket says. */
void pgasync_kick(struct pgasync *a);

/* libpq's last message, one line (for error reports; valid until the next call). */
const char *pgasync_error(const struct pgasync *a);

/* Sends sql (simple query protocol, may hold several statements) and flushes; false after pgasync_fail(). */
bool pgasync_send(struct pgasync *a, const char *sql);

enum pgasync_step {
	PGASYNC_WAIT,            /* more results to come: wait for input() */
	PGASYNC_DONE,            /* every result is in; *last is the final one */
	PGASYNC_COPY,            /* a COPY started; *last is its result */
	PGASYNC_ERROR,           /* every result is in and a statement failed: pgasync_statement_error() */
};

/*
 * Reads the results of what was sent. *last (the caller's, NULL at first)
 * receives the latest successful result; the caller PQclear()s it. After a
 * COPY, call again once PQgetCopyData() returned -1 (COPY OUT) or after
 * PQputCopyEnd() (COPY IN).
 */
enum pgasync_step pgasync_results(struct pgasync *a, PGresult **last);

/* The first failed statement's message since the last pgasync_send(), one line. */
const char *pgasync_statement_error(const struct pgasync *a);

/* That statement's SQLSTATE ("" when none came), e.g. "42501" for a missing privilege. */
const char *pgasync_statement_sqlstate(const struct pgasync *a);

#endif
