/*
 * config_int.h — what the files of the config module share with each other and
 * with nobody else: the YAML node tree, the schema table, the load context and
 * the typed-value helpers. Code outside config/ includes config.h only.
 *
 * NOTES
 * Loading runs in three passes over one file:
 *   1. config_yaml.c turns libyaml's events into a small node tree, refusing
 *      aliases, anchors, tags and duplicate keys (each at its own line:column);
 *   2. config_load.c walks that tree against the schema table (config_schema.c),
 *      setting typed fields through config_types.c and recording where every
 *      key sits (struct config_where) for later messages;
 *   3. config_check.c cross-checks what single values cannot show (references,
 *      uniqueness, subnets, roles).
 * Every pass keeps going after an error; the diagnostics are sorted by position
 * at the end so an operator reads them top to bottom.
 */
#ifndef STRAIT_CONFIG_INT_H
#define STRAIT_CONFIG_INT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config/config.h"

#define CONFIG_MAX_DEPTH 32          /* YAML nesting; the schema itself needs 5 */
#define CONFIG_MAX_FILE_SIZE (1024 * 1024)
#define CONFIG_MAX_ERRORS 100        /* per file; then one "too many errors" */
#define CONFIG_MAX_ENTRIES 1024      /* keys of one mapping, items of one sequence */
#define CONFIG_KEY_MAX 256           /* longest dotted key path kept */
#define CONFIG_ERR_MAX 512           /* longest message */
#define CONFIG_VALUE_BUF 64          /* a formatted size, duration, rate, days, window, CIDR */
#define CONFIG_MAX_KEYS 96           /* entries of the schema table */

/* ---- YAML node tree (config_yaml.c) ---- */

enum config_node_kind {
	CONFIG_NODE_SCALAR,
	CONFIG_NODE_MAP,
	CONFIG_NODE_SEQ,
	CONFIG_NODE_BAD,             /* an alias: already reported, skipped by the walk */
};

struct config_node {
	enum config_node_kind kind;
	int line;                    /* 1-based, where the node starts */
	int column;
	char *value;                 /* scalar text, NUL-terminated */
	bool plain;                  /* scalar written without quotes */
	struct config_node **kids;   /* map: key, value, key, value...; sequence: items */
	size_t n_kids;
	size_t cap_kids;
};

struct config_ctx;

/* Returns the document's root node, or NULL (errors reported) when there is none. */
struct config_node *config_yaml_read(struct config_ctx *ctx);
void config_node_free(struct config_node *node);
/* A plain empty scalar, "~" or "null": YAML's way of writing nothing. */
bool config_node_is_null(const struct config_node *node);
/* "a mapping", "a sequence", "a scalar": for type errors. */
const char *config_node_kind_name(const struct config_node *node);

/* ---- source text and key positions (config_source.c) ---- */

struct config_where {
	char *key;                   /* concrete dotted path, "streams[0].from" */
	int line;
	int column;
	bool bad;                    /* its value was rejected: cross-checks skip it */
};

/* Owned by struct strait_config: lets later checks point into the file. */
struct config_source {
	char *text;
	size_t len;
	struct config_where *where;
	size_t n_where;
	size_t cap_where;
};

void config_source_free(struct config_source *src);
const struct config_where *config_where_find(const struct config_source *src, const char *key);
/* True when key was given and its value was accepted. */
bool config_where_ok(const struct config_source *src, const char *key);

/* ---- diagnostics (config_diag.c) ---- */

/* Appends one diagnostic; src (may be NULL) supplies the source line. */
void config_diag_add(struct config_diags *diags, const struct config_source *src,
		const char *file, int line, int column, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 7, 8)));
/* Stable sort of diags->items[from..] by line and column. */
void config_diags_sort(struct config_diags *diags, size_t from);

/* ---- load context (config_load.c) ---- */

struct config_ctx {
	const char *file;            /* name used in messages */
	struct config_source *src;
	struct config_diags *diags;
	size_t first_diag;
	unsigned n_errors;
	bool oom;
	bool sites_ok;               /* "sites" was a usable mapping: resolve references */
	struct strait_config *cfg;
};

void config_error(struct config_ctx *ctx, int line, int column, const char *key,
		const char *fmt, ...) __attribute__((format(printf, 5, 6)));
void config_where_add(struct config_ctx *ctx, const char *key, int line, int column);
void config_where_bad(struct config_ctx *ctx, const char *key);
/* Error at a recorded key's position (or line 0 when it was never given). */
void config_error_at(struct config_ctx *ctx, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* ---- the schema table (config_schema.c) ---- */

enum config_type {
	/* containers */
	CT_SECTION,                  /* a mapping of further keys, same struct */
	CT_SITES,                    /* mapping of site name -> site */
	CT_STREAMS,                  /* sequence of streams */
	CT_SCHEDULE,                 /* sequence of schedule rules */
	CT_WINDOWS,                  /* sequence of hour windows */
	CT_TABLES,                   /* sequence of table names */
	CT_URLS,                     /* sequence of http://host:port URLs */
	/* scalars */
	CT_NAME,                     /* [a-z][a-z0-9_-]{0,62}, char * */
	CT_PGNAME,                   /* lowercase PostgreSQL identifier, char * */
	CT_PATH,                     /* absolute path, char * */
	CT_IFNAME,                   /* network interface name, char * */
	CT_CHOICE,                   /* one of choices, stored as char * */
	CT_ENUM,                     /* one of choices, stored as its index in an enum */
	CT_BOOL,
	CT_INT,
	CT_SIZE,
	CT_DURATION,
	CT_RATE,
	CT_DAYS,
	CT_WINDOW,
	CT_CIDR,
	CT_ENDPOINT,
	CT_LISTEN,                   /* host:port or off, char * (NULL = off) */
	CT_KEY,
	CT_CONNINFO,
	CT_SITEREF,                  /* a site's name, stored as its index (size_t) */
	CT_SITELIST,                 /* a stream's to: a site name or a list of them (config_route.c) */
	CT_VIA,                      /* a stream's via: destination -> relay site (config_route.c) */
	CT_GROUP,                    /* a system group that exists on this host, char * (NULL = none) */
};

enum config_scope {
	CS_ROOT,                     /* struct strait_config */
	CS_SITE,                     /* struct config_site */
	CS_STREAM,                   /* struct config_stream */
	CS_RULE,                     /* struct config_schedule_rule */
};

enum config_int_kind {
	CI_INT,
	CI_U16,
	CI_U32,
	CI_U64,
};

struct config_key {
	const char *path;            /* pattern: "sites.<name>.role", "streams[].schedule[].rate" */
	enum config_type type;
	enum config_scope scope;
	size_t offset;               /* of the field within the scope's struct */
	bool has_aux;
	size_t aux;                  /* list count field, or the "given" flag of an optional value */
	const char *def;             /* default as it would be written; NULL = none */
	bool required;
	bool reload;                 /* a reload may change it */
	enum config_int_kind int_kind;
	long long min;               /* CT_INT, CT_SIZE, CT_DURATION range (ms); max 0 = none */
	long long max;               /* CT_PATH: longest length, 0 = PATH_MAX */
	bool zero_ok;                /* CT_INT, CT_DURATION: 0 allowed besides min..max */
	bool seconds;                /* CT_DURATION: whole seconds only */
	const char *const *choices;  /* CT_CHOICE, CT_ENUM: NULL-terminated */
	const char *doc;
};

extern const struct config_key config_keys[];
extern const size_t config_n_keys;

/* Last component of a key's path: "role" for "sites.<name>.role". */
const char *config_schema_name(const struct config_key *key);
/* True when key sits directly under prefix ("" is the top level). */
bool config_schema_is_child(const struct config_key *key, const char *prefix);
/* The child of prefix called name, or NULL. */
const struct config_key *config_schema_child(const char *prefix, const char *name);
/* Pattern of the keys inside a container key: "tunnel", "sites.<name>", "streams[]". */
void config_schema_inner(const struct config_key *key, char *buf, size_t len);
/* "a size", "an endpoint"... */
const char *config_type_name(enum config_type type);

/* ---- typed values (config_types.c) ---- */

/*
 * Parses text as key's type into base + key->offset, freeing what was there.
 * ctx may be NULL (defaults). On failure returns false with a message in err;
 * an empty message means the failure was already reported or is a consequence
 * of another error.
 */
bool config_type_set(struct config_ctx *ctx, const struct config_key *key, void *base,
		const char *text, char *err, size_t errlen);
/* A site's name as its index into ctx's sites; err as config_type_set's. */
bool config_parse_siteref(struct config_ctx *ctx, const char *text, size_t *out,
		char *err, size_t errlen);
/* Writes the value as a YAML scalar (quoted when needed). */
void config_type_format(FILE *out, const struct config_key *key, const void *base,
		const struct strait_config *cfg);
void config_type_free(const struct config_key *key, void *base);
/* Sets every default of scope into base. */
void config_defaults(enum config_scope scope, void *base);

/* ---- value formatting and helpers (config_values.c, config_time.c, config_net.c) ---- */

void config_format_size(char *buf, size_t len, config_size v);
void config_format_duration(char *buf, size_t len, config_msec v);
void config_format_rate(char *buf, size_t len, const struct config_rate *rate);
void config_format_days(char *buf, size_t len, config_days days);
void config_format_window(char *buf, size_t len, const struct config_window *w);
void config_format_cidr(char *buf, size_t len, const struct config_cidr *cidr);
/* As config_parse_window, with the reason for a refusal in *why. */
bool config_parse_window_why(const char *text, struct config_window *out, const char **why);
/* Decoded length of strict, padded base64 text, or -1 when it is not base64. */
int config_base64_len(const char *text);
bool config_valid_hostname(const char *text);
/* http://host:port (etcd's client URLs); false with the reason in err. */
bool config_valid_http_url(const char *text, char *err, size_t errlen);

/* ---- names (config_names.c) ---- */

bool config_valid_name(const char *text);
bool config_valid_pgname(const char *text);
bool config_valid_table(const char *text);
bool config_valid_ifname(const char *text);
/* Closest candidate within a small edit distance, or NULL. */
const char *config_suggest(const char *word, const char *const *cands, size_t n);

/* ---- connection strings (config_conninfo.c) ---- */

/* Checks with PQconninfoParse; err never contains a password. */
bool config_conninfo_check(const char *text, char *err, size_t errlen);
/* The string as a YAML scalar, any password replaced by ********. */
void config_conninfo_print(FILE *out, const char *text);

/* ---- output (config_print.c) ---- */

/* text as a YAML scalar: plain when that is unambiguous, else double-quoted. */
void config_print_scalar(FILE *out, const char *text);

/* ---- a stream's destinations and relays (config_route.c) ---- */

/*
 * streams[].to and streams[].via, whose values are not one scalar each: to is
 * a site or a list of sites, via a mapping over those sites. Both fill the
 * stream's parallel arrays to[] and via[], allocated and freed together with
 * to; an entry that was refused holds CONFIG_SITE_NONE.
 */
void config_walk_to(struct config_ctx *ctx, struct config_stream *st,
		const struct config_node *value, const char *path);
void config_walk_via(struct config_ctx *ctx, struct config_stream *st,
		const struct config_node *value, const char *path);
void config_format_to(FILE *out, const struct config_stream *st, const struct strait_config *cfg);
void config_format_via(FILE *out, const struct config_stream *st, const struct strait_config *cfg);
void config_route_free(struct config_stream *st);
/* Cross-checks of streams[i]'s destinations and relays against each other and from. */
void config_check_route(struct config_ctx *ctx, const struct strait_config *cfg, size_t i);

/* ---- cross-checks (config_check.c) ---- */

void config_check_all(struct config_ctx *ctx, struct strait_config *cfg);


#endif
