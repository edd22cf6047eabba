/*
 * metrics.h — the HTTP listener on metrics.listen: Prometheus metrics at
 * /metrics and Patroni-style health checks for load balancers and DNS.
 *
 *   GET /metrics   the text exposition format (version 0.0.4)
 *   GET /health    200 when the daemon works, else 503
 *   GET /primary   200 only on the site that is primary now, else 503
 *   GET /replica   200 on a healthy replica, else 503; ?lag=N (bytes, or with
 *                  a unit: B, kB, MB, GB, TB as in PostgreSQL and Patroni, so
 *                  16MB = 16777216; KiB, MiB, GiB, TiB the same) also needs
 *                  the lag of every stream this site receives to be at most
 *                  N; a lag that does not parse is 400
 *   anything else  404;  other methods than GET and HEAD  405
 *
 * The checks answer with a small JSON document for humans (site, role,
 * epoch, lag, and the reason when the answer is not 200); HEAD answers the
 * same without the body.
 *
 * "Healthy replica": the site's role is replica (not primary, not fenced), the
 * daemon works, and no stream it receives is stopped (paused on an error or
 * by the operator). "Works": straitd is up and its role state is persisted.
 *
 * The module knows nothing of streams, links or tunnels: at each scrape it
 * calls the owner's collect callback, which writes samples through a
 * metrics_writer, and for each check its health callback, which fills a
 * metrics_health. Samples may be written in any order; the writer groups them
 * by metric family, as the format requires, in the order the families were
 * declared.
 *
 * Bounds: request headers at most METRICS_MAX_HEADERS bytes, bodies at most
 * METRICS_MAX_BODY, an idle or slow connection is closed after
 * METRICS_TIMEOUT_S seconds. Everything runs in the event loop; callbacks
 * must not block.
 *
 * Return conventions: metrics_start() returns NULL after logging why. The
 * writer logs a sample it refuses (a bad name, an undeclared family: bugs)
 * and goes on without it.
 */
#ifndef STRAIT_METRICS_H
#define STRAIT_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct json_out;

#define METRICS_MAX_HEADERS 8192
#define METRICS_MAX_BODY    4096
#define METRICS_TIMEOUT_S   10
/* Label pairs per sample, at most. */
#define METRICS_MAX_LABELS  8

/* ---- writing samples ---- */

enum metrics_type {
	METRICS_GAUGE,
	METRICS_COUNTER,             /* name it ..._total */
};

struct metrics_writer;

/* NULL when out of memory. */
struct metrics_writer *metrics_writer_new(void);

/*
 * Declares a family: its HELP text and TYPE. A family declared and given no
 * samples still shows its HELP and TYPE lines. Declaring it again is a no-op.
 */
void metrics_declare(struct metrics_writer *w, const char *name, enum metrics_type type,
		const char *help);

/*
 * One sample of a declared family: label name/value pairs, then NULL, e.g.
 *   metrics_value(w, "strait_stream_lag_bytes", 42, "stream", "app", NULL);
 * Label values may hold anything; they are escaped.
 */
void metrics_value(struct metrics_writer *w, const char *name, double value, ...)
	__attribute__((sentinel));

/* The exposition text (caller frees), and frees w; NULL when memory ran out. */
char *metrics_writer_finish(struct metrics_writer *w, size_t *len);
/* Frees w without rendering. NULL is fine. */
void metrics_writer_free(struct metrics_writer *w);

/* Whether name is a valid metric name ([a-zA-Z_:][a-zA-Z0-9_:]*). */
bool metrics_name_valid(const char *name);

/* ---- health checks ---- */

struct metrics_health {
	const char *site;
	const char *role;            /* "primary", "replica", "fenced" */
	uint64_t epoch;
	bool working;                /* the daemon works */
	const char *not_working;     /* why not (for the body), when !working */
	size_t streams_in;           /* streams this site receives */
	size_t streams_in_stopped;   /* ... of which stopped */
	uint64_t lag_bytes;          /* the largest over the streams this site receives */
	double lag_seconds;          /* likewise */
};

/*
 * Answers one check: path ("/health", "/primary", "/replica"), the raw query
 * string (NULL when none) and the site's state. Writes the JSON body into
 * body (an initialised writer) and returns the HTTP status: 200, 503, 400 for
 * a bad ?lag=, 404 for another path (with a body saying so).
 */
int metrics_check(const char *path, const char *query, const struct metrics_health *h,
		struct json_out *body);

/* Parses a ?lag= value ("16777216", "16MB", "512kB", "1GiB"); false when it does not. */
bool metrics_parse_lag(const char *text, uint64_t *out);

/* ---- the listener ---- */

struct metrics_callbacks {
	/* Writes every sample of a scrape. */
	void (*collect)(void *arg, struct metrics_writer *w);
	/* Fills the site's state for a check. */
	void (*health)(void *arg, struct metrics_health *h);
};

struct metrics_server;

/*
 * Listens on listen ("host:port", "[v6addr]:port"; a host name is resolved
 * now, so call it at start-up) with the callbacks (copied) and arg. NULL
 * (logged) when it cannot bind.
 */
struct metrics_server *metrics_start(struct event_base *base, const char *listen,
		const struct metrics_callbacks *cb, void *arg);
/* Closes the listener and its connections. NULL is fine. */
void metrics_stop(struct metrics_server *m);

#endif
