/*
 * config.h — the declarative site config (strait.yaml): its typed form, loading
 * with line:column diagnostics, normalized printing and reload checks.
 *
 * One file describes every site and stream and is identical on every host.
 * Loading never stops at the first problem: every error of a file is collected
 * as a diagnostic that names the file, line, column and key, so an operator
 * fixes them all in one pass.
 *
 * Ownership: config_load_*() returns a config the caller frees with
 * config_free(); diagnostics are appended to a caller-owned list freed with
 * config_diags_free().
 */
#ifndef STRAIT_CONFIG_H
#define STRAIT_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CONFIG_DEFAULT_PATH "/etc/strait/strait.yaml"
#define WG_KEY_LEN 32              /* a WireGuard key's bytes */
#define WG_KEY_B64_LEN 44          /* ... in base64, without the terminating NUL */

/* A size in bytes ("10GiB", "16MiB", "512kB", "1000"). */
typedef uint64_t config_size;

/* A duration in milliseconds ("30s", "5m", "250ms", "1h"). */
typedef uint64_t config_msec;

/* A transfer rate: unlimited, or bytes per second (0 holds the stream). */
struct config_rate {
	bool unlimited;
	uint64_t bytes_per_sec;
};

/* Days of the week as a bit mask, bit n = struct tm's tm_wday n (0 = Sunday). */
typedef uint8_t config_days;
#define CONFIG_ALL_DAYS ((config_days)0x7f)

/*
 * A time-of-day window in minutes since local midnight, [start, end).
 * end <= start means the window crosses midnight ("22:00-06:00");
 * "00:00-24:00" is the whole day (start 0, end 1440).
 */
struct config_window {
	uint16_t start_min;
	uint16_t end_min;
};

/* An interface address with its prefix ("10.77.0.1/24", "fd00::1/64"). */
struct config_cidr {
	int family;              /* AF_INET or AF_INET6 */
	uint8_t addr[16];        /* network byte order; 4 bytes used for AF_INET */
	uint8_t prefix;
};

/* "host:port" or "[v6addr]:port"; host may be a DNS name. */
struct config_endpoint {
	char *host;
	uint16_t port;
};

struct config_site {
	char *name;
	char *role;                  /* "primary" | "replica" | "witness": the initial role */
	struct config_endpoint endpoint;
	struct config_cidr tunnel_address;
	uint8_t public_key[WG_KEY_LEN];
	char *database;              /* libpq connection string, validated; NULL at a witness */
	int line;                    /* where the site is declared, for messages */
};

enum config_backend {
	CONFIG_BACKEND_AUTO,
	CONFIG_BACKEND_KERNEL,
	CONFIG_BACKEND_USERSPACE,
	CONFIG_BACKEND_NONE,
};

struct config_tunnel {
	enum config_backend backend;
	char *interface;
	uint16_t listen_port;
	uint32_t mtu;                /* 0 = computed from the route to the endpoints */
	config_msec persistent_keepalive; /* 0 = off */
};

struct config_tls {
	char *ca;
	char *cert;
	char *key;
	char *crl;               /* NULL: no revocation list */
};

struct config_relay {
	uint16_t port;
};

enum config_codec {
	CONFIG_CODEC_ZSTD,
	CONFIG_CODEC_NONE,
};

enum config_durability {
	CONFIG_DURABILITY_SPOOL,
	CONFIG_DURABILITY_REMOTE,
};

enum config_conflict {
	CONFIG_CONFLICT_ERROR,
	CONFIG_CONFLICT_SOURCE_WINS,
	CONFIG_CONFLICT_TARGET_WINS,
};

enum config_stream_mode {
	CONFIG_MODE_LIVE,
	CONFIG_MODE_BATCH,
};

/* One schedule rule; the first rule that matches the local time wins. */
struct config_schedule_rule {
	config_days days;            /* CONFIG_ALL_DAYS when the rule names none */
	bool has_hours;
	struct config_window hours;
	struct config_rate rate;
};

/*
 * The most copies an initial sync runs at a time: the sink loads each on a
 * connection of its own, and its loaders' pool (one replication origin each
 * on the target) has this many.
 */
#define CONFIG_SYNC_WORKERS_MAX 3

/*
 * The most target sessions a stream's sink applies with side by side
 * (parallel apply): each holds a replication origin on the target.
 */
#define CONFIG_APPLY_WORKERS_MAX 16

/* A site index that names no site: a destination without a relay. */
#define CONFIG_SITE_NONE SIZE_MAX

struct config_stream {
	char *name;
	size_t from;                 /* index into config.sites */
	size_t *to;                  /* destinations, indexes into config.sites; n_to >= 1 */
	size_t n_to;
	size_t *via;                 /* per destination: the site that relays it, or CONFIG_SITE_NONE */
	config_msec retain;          /* how long a replica keeps applied batches for its siblings */
	char *publication;
	char **tables;               /* "schema.table"; NULL/0 = FOR ALL TABLES */
	size_t n_tables;
	enum config_codec codec;
	int compression_level;
	enum config_durability durability;
	config_size spool_max;
	enum config_conflict on_conflict;
	uint32_t apply_workers;      /* target sessions applying side by side, 1 to CONFIG_APPLY_WORKERS_MAX */
	bool initial_sync;
	uint32_t sync_workers;       /* copies at a time, 1 to CONFIG_SYNC_WORKERS_MAX */
	config_size sync_split_above; /* larger tables are copied in ranges; 0 = never */
	enum config_stream_mode mode;
	struct config_schedule_rule *schedule;  /* empty = unlimited at all times */
	size_t n_schedule;
	struct config_window *windows;          /* batch windows */
	size_t n_windows;
	config_msec verify_every;    /* periodic verify; 0 = on demand only */
	uint64_t verify_rate;        /* rows per second each side reads; 0 = no limit */
	int line;
};

enum config_failover_mode {
	CONFIG_FAILOVER_MANUAL,
	CONFIG_FAILOVER_AUTOMATIC,
};

struct config_failover {
	enum config_failover_mode mode;
	char **etcd;                 /* the witness's client URLs ("http://host:port") */
	size_t n_etcd;
	config_msec ttl;             /* the primary's lease on the witness */
	config_msec cooldown;        /* least time between two automatic failovers */
	config_size max_lag_bytes;
	config_msec max_lag_seconds;
	config_msec health_interval;
	uint32_t health_failures;
	uint64_t sequence_margin;
};

struct config_metrics {
	char *listen;                /* "host:port"; NULL = off */
};

struct config_control {
	char *socket;
	char *group;                 /* members may use the socket (0660); NULL = owner-only */
};

struct config_hooks {
	char *on_role_change;        /* run with ROLE SITE EPOCH after each change; NULL = none */
};

/* A site with role witness: etcd and a straitd, no database, no stream. */
bool config_site_is_witness(const struct config_site *site);

/* Private to config/: the file's text and where each key sits, for diagnostics. */
struct config_source;

struct strait_config {
	char *path;                  /* the file it was loaded from */
	char *cluster;
	char *private_key_file;
	char *state_dir;
	struct config_site *sites;
	size_t n_sites;
	struct config_tunnel tunnel;
	struct config_tls tls;
	struct config_relay relay;
	struct config_stream *streams;
	size_t n_streams;
	struct config_failover failover;
	struct config_metrics metrics;
	struct config_control control;
	struct config_hooks hooks;
	struct config_source *source; /* private; NULL in a config built by hand */
};

/* One problem found in a config file. line/column are 1-based; 0 when unknown. */
struct config_diag {
	char *file;
	int line;
	int column;
	char *key;          /* dotted path, e.g. "streams[1].schedule[0].rate" */
	char *message;      /* PostgreSQL style: lowercase, no final period */
	char *source_line;  /* the offending line's text, or NULL */
};

struct config_diags {
	struct config_diag *items;
	size_t count;
	size_t capacity;
};

/*
 * Load and validate a config. Returns NULL when any error was found; every
 * error is appended to diags (which must be initialised to zero).
 */
struct strait_config *config_load_file(const char *path, struct config_diags *diags);
struct strait_config *config_load_buffer(const char *name, const char *text, size_t len,
		struct config_diags *diags);
void config_free(struct strait_config *cfg);

/*
 * Open every file the config names (private key, TLS CA, certificate and key)
 * and check that it is readable and, for secrets, not readable by group or
 * others. Returns true when all is well; problems are appended to diags.
 */
bool config_check_files(const struct strait_config *cfg, struct config_diags *diags);

/*
 * True when new_cfg may replace old_cfg in a running daemon: keys that a reload
 * cannot change (per the schema table) are unchanged. Otherwise appends one
 * diagnostic per such key.
 */
bool config_reload_allowed(const struct strait_config *old_cfg,
		const struct strait_config *new_cfg, struct config_diags *diags);

/*
 * Print the config in normalized form with every default filled in, sizes,
 * durations and rates in a canonical unit. The output loads back to an equal
 * config, except that a password inside a connection string prints as ********.
 */
void config_print(FILE *out, const struct strait_config *cfg);

/* Print every key of the schema: path, type, default, reloadable, documentation. */
void config_print_reference(FILE *out);

/* Index of the site called name, or -1. */
int config_site_index(const struct strait_config *cfg, const char *name);

/*
 * A stream's first destination, to[0] (n_to must be >= 1): the one
 * destination of each of the gateway's per-destination views of a stream.
 */
size_t config_stream_to(const struct config_stream *cs);
/*
 * Whether a and b have the same streams going the same ways: the same names,
 * each from the same site to the same sites (by name, in any order).
 */
bool config_routes_equal(const struct strait_config *a, const struct strait_config *b);
/* Whether site is an end of the stream: its source or one of its destinations. */
bool config_stream_end(const struct config_stream *cs, size_t site);

/*
 * Print diagnostics as:
 *   strait.yaml:12:21: error: sites.cloud.tunnel_address: invalid CIDR "10.0.0.300/24"
 *      12 |     tunnel_address: 10.0.0.300/24
 *         |                     ^
 */
void config_diags_print(FILE *out, const struct config_diags *diags);
void config_diags_free(struct config_diags *diags);

/* Typed value parsers, shared with straitctl's options. Return false on bad input. */
bool config_parse_size(const char *text, config_size *out);
bool config_parse_duration(const char *text, config_msec *out);
bool config_parse_rate(const char *text, struct config_rate *out);
bool config_parse_days(const char *text, config_days *out);
bool config_parse_window(const char *text, struct config_window *out);
bool config_parse_cidr(const char *text, struct config_cidr *out);
bool config_parse_endpoint(const char *text, struct config_endpoint *out); /* out->host malloc'd */
/*
 * A WireGuard key in canonical padded base64, exactly as `wg genkey` and `wg
 * pubkey` print it (WG_KEY_B64_LEN characters, nothing around them): the one
 * decoder of key text, the tunnel's key files included.
 */
bool config_parse_wg_key(const char *text, uint8_t out[WG_KEY_LEN]);

/* True when the window contains minute-of-day m (0..1439). */
bool config_window_contains(const struct config_window *w, unsigned m);

#endif
