/*
 * verify_request.h — what a verify may ask of the target's site. The site
 * that compares sends a request (replicator/verify.h's struct verify_query:
 * a kind, a table, key column names and bound values) in a VERIFY QUERY
 * frame; the target's site checks it, looks the table and its key columns
 * up in its own catalog and builds the statement itself. Nothing a peer
 * sends becomes SQL text: names and values travel as parameters of a fixed
 * catalog lookup and of the statement, and the statement's identifiers are
 * quoted from what the catalog matched.
 */
#ifndef STRAIT_VERIFY_REQUEST_H
#define STRAIT_VERIFY_REQUEST_H

#include <stdbool.h>
#include <stddef.h>

#include <libpq-fe.h>

#include "config/config.h"
#include "gateway/relay/relay_proto.h"
#include "replicator/verify.h"

/* A QUERY's head for q (m's other fields as the caller set them): its
 * values are then q's key column names and the nparams bound values. */
void verify_request_head(struct relay_proto_verify *m, const struct verify_query *q, size_t nparams);

/* A request as read from a peer, owning its strings. */
struct verify_request {
	struct verify_query q;       /* points into the fields below */
	char *schema;
	char *name;
	char *keys[VERIFY_MAX_KEYS];
	size_t nparams;
	char *params[2 * VERIFY_MAX_KEYS];   /* NULL: an SQL NULL */
};

/*
 * Reads and checks a QUERY from a peer for stream cs: false with why set
 * when it is not a request the comparison makes of a table the stream
 * carries (statement text, an unknown kind, a system schema, a table the
 * config does not list, bounds that do not fit). r is freed either way by
 * verify_request_free().
 */
bool verify_request_read(const struct relay_proto_verify *m, const struct config_stream *cs,
			 struct verify_request *r, char *why, size_t whylen);
void verify_request_free(struct verify_request *r);

/* A table and its key columns, as this site's catalog has them. */
struct verify_request_table {
	char *schema;
	char *name;
	char *keys[VERIFY_MAX_KEYS];
	char *types[VERIFY_MAX_KEYS];  /* format_type() of each key column */
	size_t n;
};

/* The catalog lookup of r's table and key columns: a fixed statement taking
 * r->q.n_keys + 2 parameters (verify_request_lookup_params). */
char *verify_request_lookup_sql(const struct verify_request *r);
/* Its parameters (pointing into r): schema, name, each key column. */
size_t verify_request_lookup_params(const struct verify_request *r, const char **params, size_t max);
/* The lookup's result into t; false with why set when the table or a key
 * column is not there. */
bool verify_request_table_set(struct verify_request_table *t, const struct verify_request *r,
			      const PGresult *lookup, char *why, size_t whylen);
/* Whether t is r's table and key columns (a lookup done already). */
bool verify_request_table_matches(const struct verify_request_table *t, const struct verify_request *r);
void verify_request_table_free(struct verify_request_table *t);

/* r's statement over t (t must match r); NULL with why set (empty: out of memory). */
char *verify_request_sql(const struct verify_request *r, const struct verify_request_table *t,
			 char *why, size_t whylen);

#endif
