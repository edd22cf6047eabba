/*
 * config_schema.c — the one table of strait.yaml's keys. Each entry gives the
 * key's path, type, where its value lives, its default, whether it is required,
 * whether a reload may change it, its bounds and one line of documentation.
 * Loading, defaults, the normalized print, the reference (config_print_reference)
 * and the reload check all read this table, so a key cannot be documented
 * differently from how it behaves.
 *
 * Paths are patterns: "sites.<name>.role" is the role of any site,
 * "streams[].schedule[].rate" the rate of any rule of any stream. Entries are
 * in print order; children follow their parent.
 *
 * Decisions recorded here (and in the doc lines):
 * - required: cluster, sites, each site's endpoint, tunnel_address, public_key
 *   and database (a witness has none: config_check.c), the tls section (ca,
 *   cert, key: the relay link is always TLS), each stream's name, from, to and
 *   publication, each schedule rule's rate, failover.etcd with mode automatic;
 * - not reloadable (a restart is needed): cluster, private_key_file, state_dir,
 *   failover.mode, failover.etcd, failover.ttl, streams[].apply_workers,
 *   tunnel.backend, tunnel.interface, relay.port, metrics.listen,
 *   control.socket, control.group;
 * - roles: exactly one site is the primary, and every stream comes from it (the
 *   design: a stream's `from` names the site that is primary at bootstrap).
 */
#include "config/config_int.h"

#include <stddef.h>
#include <string.h>

static const char *const roles[] = { "primary", "replica", "witness", NULL };
/* The order of each list is its enum's order. */
static const char *const backends[] = { "auto", "kernel", "userspace", "none", NULL };
static const char *const codecs[] = { "zstd", "none", NULL };
static const char *const durabilities[] = { "spool", "remote", NULL };
static const char *const conflicts[] = { "error", "source_wins", "target_wins", NULL };
static const char *const modes[] = { "live", "batch", NULL };
static const char *const failover_modes[] = { "manual", "automatic", NULL };

#define ROOT(f) .scope = CS_ROOT, .offset = offsetof(struct strait_config, f)
#define SITE(f) .scope = CS_SITE, .offset = offsetof(struct config_site, f)
#define STREAM(f) .scope = CS_STREAM, .offset = offsetof(struct config_stream, f)
#define RULE(f) .scope = CS_RULE, .offset = offsetof(struct config_schedule_rule, f)
#define COUNT(s, f) .has_aux = true, .aux = offsetof(s, f)

const struct config_key config_keys[] = {
	{ "cluster", CT_NAME, ROOT(cluster), .required = true,
	  .doc = "name of the cluster, the same on every site; a site refuses peers of another cluster" },
	{ "private_key_file", CT_PATH, ROOT(private_key_file), .def = "/etc/strait/wireguard.key",
	  .doc = "this host's WireGuard private key (base64, as wg genkey writes it); mode 0600" },
	{ "state_dir", CT_PATH, ROOT(state_dir), .def = "/var/lib/strait",
	  .doc = "directory of the site's role, epoch and stream spools" },

	{ "sites", CT_SITES, ROOT(sites), COUNT(struct strait_config, n_sites), .required = true,
	  .reload = true,
	  .doc = "every site by name: 1 to 63 of a-z, 0-9, _ and -, starting with a letter" },
	{ "sites.<name>.role", CT_CHOICE, SITE(role), .def = "replica", .reload = true,
	  .choices = roles,
	  .doc = "role at bootstrap; exactly one site is primary (the state directory keeps the current "
		 "one); witness: a site of etcd and straitd alone, no database, no stream" },
	{ "sites.<name>.endpoint", CT_ENDPOINT, SITE(endpoint), .required = true, .reload = true,
	  .doc = "host:port or [v6]:port where the site's WireGuard listens; DNS names are allowed" },
	{ "sites.<name>.tunnel_address", CT_CIDR, SITE(tunnel_address), .required = true,
	  .reload = true,
	  .doc = "the site's address on the tunnel with its prefix; one subnet for all sites, distinct addresses" },
	{ "sites.<name>.public_key", CT_KEY, SITE(public_key), .required = true, .reload = true,
	  .doc = "the site's WireGuard public key (base64, as wg pubkey prints it); distinct per site" },
	{ "sites.<name>.database", CT_CONNINFO, SITE(database), .reload = true,
	  .doc = "libpq connection string of the site's PostgreSQL; keep passwords in a .pgpass file; "
		 "required, except at a witness, which has none" },

	{ "tunnel", CT_SECTION, .scope = CS_ROOT, .reload = true,
	  .doc = "the WireGuard tunnel between the sites" },
	{ "tunnel.backend", CT_ENUM, ROOT(tunnel.backend), .def = "auto", .choices = backends,
	  .doc = "auto (kernel when it can), kernel, userspace (wireguard-go via the UAPI socket) or none" },
	{ "tunnel.interface", CT_IFNAME, ROOT(tunnel.interface), .def = "strait0",
	  .doc = "name of the WireGuard interface (at most 15 characters)" },
	{ "tunnel.listen_port", CT_INT, ROOT(tunnel.listen_port), .def = "51820", .reload = true,
	  .int_kind = CI_U16, .min = 1, .max = 65535,
	  .doc = "UDP port WireGuard listens on" },
	{ "tunnel.mtu", CT_INT, ROOT(tunnel.mtu), .def = "0", .reload = true,
	  .int_kind = CI_U32, .min = 576, .max = 65535, .zero_ok = true,
	  .doc = "MTU of the interface; 0 computes it from the route to the endpoints" },
	{ "tunnel.persistent_keepalive", CT_DURATION, ROOT(tunnel.persistent_keepalive),
	  .def = "25s", .reload = true, .min = 1000, .max = 65535000, .zero_ok = true,
	  .seconds = true,
	  .doc = "keepalive interval in whole seconds (at most 65535s) through NAT; 0 turns it off" },

	{ "tls", CT_SECTION, .scope = CS_ROOT, .required = true, .reload = true,
	  .doc = "certificates of the relay link (TLS 1.3, mutual, the cluster's own CA)" },
	{ "tls.ca", CT_PATH, ROOT(tls.ca), .required = true, .reload = true,
	  .doc = "CA certificate (PEM) that signs every site's certificate" },
	{ "tls.cert", CT_PATH, ROOT(tls.cert), .required = true, .reload = true,
	  .doc = "this host's certificate (PEM); its subject names the site" },
	{ "tls.key", CT_PATH, ROOT(tls.key), .required = true, .reload = true,
	  .doc = "this host's certificate key (PEM); mode 0600" },
	{ "tls.crl", CT_PATH, ROOT(tls.crl), .reload = true,
	  .doc = "the CA's certificate revocation list (PEM); a revoked site is refused" },

	{ "relay", CT_SECTION, .scope = CS_ROOT, .reload = true,
	  .doc = "the relay link that carries the streams between sites" },
	{ "relay.port", CT_INT, ROOT(relay.port), .def = "7543",
	  .int_kind = CI_U16, .min = 1, .max = 65535,
	  .doc = "TCP port the relay listens on, on the site's tunnel address" },

	{ "streams", CT_STREAMS, ROOT(streams), COUNT(struct strait_config, n_streams),
	  .reload = true,
	  .doc = "the replication streams; none means tunnels only" },
	{ "streams[].name", CT_NAME, STREAM(name), .required = true, .reload = true,
	  .doc = "unique name of the stream (1 to 63 of a-z, 0-9, _ and -, starting with a letter)" },
	{ "streams[].from", CT_SITEREF, STREAM(from), .required = true, .reload = true,
	  .doc = "the site the stream comes from: the primary at bootstrap" },
	{ "streams[].to", CT_SITELIST, STREAM(to), .required = true, .reload = true,
	  .doc = "the site the stream goes to, or a list of sites (fan-out); never the one it comes from" },
	{ "streams[].via", CT_VIA, STREAM(via), .reload = true,
	  .doc = "destination: relay, where relay is another destination, fed direct, whose straitd "
		 "passes the stream on; none: every destination direct from the source" },
	{ "streams[].retain", CT_DURATION, STREAM(retain), .def = "1h", .reload = true,
	  .doc = "how long each replica keeps the batches it applied, for its siblings after a "
		 "failover; 0s: none" },
	{ "streams[].publication", CT_PGNAME, STREAM(publication), .required = true, .reload = true,
	  .doc = "publication on the source (lowercase identifier); created if missing" },
	{ "streams[].tables", CT_TABLES, STREAM(tables), COUNT(struct config_stream, n_tables),
	  .reload = true,
	  .doc = "tables of a publication strait creates (table or schema.table); none: FOR ALL TABLES" },
	{ "streams[].compression", CT_SECTION, .scope = CS_STREAM, .reload = true,
	  .doc = "compression of the stream on the relay link" },
	{ "streams[].compression.codec", CT_ENUM, STREAM(codec), .def = "zstd", .reload = true,
	  .choices = codecs,
	  .doc = "zstd, or none for data that must not be compressed before encryption" },
	{ "streams[].compression.level", CT_INT, STREAM(compression_level), .def = "3", .reload = true,
	  .int_kind = CI_INT, .min = 1, .max = 22,
	  .doc = "zstd level, 1 (fastest) to 22" },
	{ "streams[].durability", CT_ENUM, STREAM(durability), .def = "spool", .reload = true,
	  .choices = durabilities,
	  .doc = "when the source's slot may move on: spool (fsynced locally) or remote (committed at the sink)" },
	{ "streams[].spool_max", CT_SIZE, STREAM(spool_max), .def = "10GiB", .reload = true,
	  .min = 1048576,
	  .doc = "cap of the stream's spool (at least 1MiB); at the cap the source stops reading" },
	{ "streams[].on_conflict", CT_ENUM, STREAM(on_conflict), .def = "error", .reload = true,
	  .choices = conflicts,
	  .doc = "on a duplicate key or missing row: error (stop the stream), source_wins or target_wins" },
	{ "streams[].apply_workers", CT_INT, STREAM(apply_workers), .def = "1",
	  .int_kind = CI_U32, .min = 1, .max = CONFIG_APPLY_WORKERS_MAX,
	  .doc = "target sessions applying independent transactions side by side, each with a "
		 "replication origin; commits keep the source's order (1: one session)" },
	{ "streams[].initial_sync", CT_BOOL, STREAM(initial_sync), .def = "true", .reload = true,
	  .doc = "copy the tables before streaming changes" },
	{ "streams[].sync_workers", CT_INT, STREAM(sync_workers), .def = "2", .reload = true,
	  .int_kind = CI_U32, .min = 1, .max = CONFIG_SYNC_WORKERS_MAX,
	  .doc = "tables or ranges the initial sync copies at a time (connections at each end)" },
	{ "streams[].sync_split_above", CT_SIZE, STREAM(sync_split_above), .def = "1GB",
	  .reload = true,
	  .doc = "a larger table is copied in resumable ranges of about an eighth of this; 0: never" },
	{ "streams[].mode", CT_ENUM, STREAM(mode), .def = "live", .reload = true, .choices = modes,
	  .doc = "live, or batch: ship only inside the stream's windows" },
	{ "streams[].schedule", CT_SCHEDULE, STREAM(schedule), COUNT(struct config_stream, n_schedule),
	  .reload = true,
	  .doc = "rate rules in local time, first match wins; none: unlimited at all times" },
	{ "streams[].schedule[].days", CT_DAYS, RULE(days), .def = "mon-sun", .reload = true,
	  .doc = "days the rule applies, such as mon-fri, sat,sun or fri-mon; none: every day" },
	{ "streams[].schedule[].hours", CT_WINDOW, RULE(hours),
	  COUNT(struct config_schedule_rule, has_hours), .reload = true,
	  .doc = "hours the rule applies, HH:MM-HH:MM, may cross midnight; none: all day" },
	{ "streams[].schedule[].rate", CT_RATE, RULE(rate), .required = true, .reload = true,
	  .doc = "rate while the rule applies: 2MiB/s, 100kB/s, unlimited, or 0 to hold" },
	{ "streams[].windows", CT_WINDOWS, STREAM(windows), COUNT(struct config_stream, n_windows),
	  .reload = true,
	  .doc = "hours (HH:MM-HH:MM) a batch stream ships; required with mode batch, refused otherwise" },
	{ "streams[].verify", CT_SECTION, .scope = CS_STREAM, .reload = true,
	  .doc = "periodic comparison of the stream's tables with its target (as straitctl verify)" },
	{ "streams[].verify.every", CT_DURATION, STREAM(verify_every), .def = "0s", .reload = true,
	  .doc = "time between verifies, run by the site the stream comes from; 0s: on demand only" },
	{ "streams[].verify.rate", CT_INT, STREAM(verify_rate), .def = "0", .reload = true,
	  .int_kind = CI_U64, .min = 0, .max = 1000000000000LL,
	  .doc = "rows per second each side reads at most during a verify; 0: no limit" },

	{ "failover", CT_SECTION, .scope = CS_ROOT, .reload = true,
	  .doc = "limits of failover and switchover, and automatic failover" },
	{ "failover.mode", CT_ENUM, ROOT(failover.mode), .def = "manual", .choices = failover_modes,
	  .doc = "manual (an operator types failover) or automatic (the witness, etcd, decides)" },
	{ "failover.etcd", CT_URLS, ROOT(failover.etcd), COUNT(struct strait_config, failover.n_etcd),
	  .doc = "client URLs (http://host:port) of the etcd cluster that witnesses the primary; "
		 "required with mode automatic" },
	{ "failover.ttl", CT_DURATION, ROOT(failover.ttl), .def = "10s", .min = 2000, .max = 300000,
	  .doc = "the primary's lease on the witness (2s to 5m): renewed every third of it, the "
		 "database fenced when not renewed for two thirds, a replica takes over once it ends" },
	{ "failover.cooldown", CT_DURATION, ROOT(failover.cooldown), .def = "5m", .reload = true,
	  .max = 86400000,
	  .doc = "least time between two automatic failovers (no flapping); 0s: none" },
	{ "failover.max_lag_bytes", CT_SIZE, ROOT(failover.max_lag_bytes), .def = "16MiB",
	  .reload = true,
	  .doc = "failover is refused (without --force) when the last known lag is larger" },
	{ "failover.max_lag_seconds", CT_DURATION, ROOT(failover.max_lag_seconds), .def = "30s",
	  .reload = true,
	  .doc = "failover is refused (without --force) when the last known lag is older" },
	{ "failover.health_interval", CT_DURATION, ROOT(failover.health_interval), .def = "1s",
	  .reload = true, .min = 10, .max = 3600000,
	  .doc = "time between health checks of the peers (10ms to 1h)" },
	{ "failover.health_failures", CT_INT, ROOT(failover.health_failures), .def = "5",
	  .reload = true, .int_kind = CI_U32, .min = 1, .max = 1000,
	  .doc = "failed health checks in a row before a site counts as down" },
	{ "failover.sequence_margin", CT_INT, ROOT(failover.sequence_margin), .def = "1000",
	  .reload = true, .int_kind = CI_U64, .min = 0, .max = 1000000000000LL,
	  .doc = "added to each sequence on the promoted site, so it never hands out a used value" },

	{ "metrics", CT_SECTION, .scope = CS_ROOT, .reload = true,
	  .doc = "the HTTP listener for /metrics and the health checks" },
	{ "metrics.listen", CT_LISTEN, ROOT(metrics.listen), .def = "127.0.0.1:9543",
	  .doc = "host:port of /metrics, /health, /primary and /replica; off turns it off" },

	{ "hooks", CT_SECTION, .scope = CS_ROOT, .reload = true,
	  .doc = "operator programs straitd runs on events" },
	{ "hooks.on_role_change", CT_PATH, ROOT(hooks.on_role_change), .reload = true,
	  .doc = "run after this site's role or epoch changes, with the new role, the site and the "
		 "epoch as arguments (DNS or a load balancer can follow); none: nothing runs" },

	{ "control", CT_SECTION, .scope = CS_ROOT, .reload = true,
	  .doc = "the control socket straitctl talks to" },
	{ "control.socket", CT_PATH, ROOT(control.socket), .def = "/run/strait/control.sock",
	  .max = 107,
	  .doc = "path of the unix socket (at most 107 bytes); mode 0600, or 0660 with control.group" },
	{ "control.group", CT_GROUP, ROOT(control.group),
	  .doc = "system group whose members may use the socket too (mode 0660); none: owner-only" },
};

const size_t config_n_keys = sizeof(config_keys) / sizeof(config_keys[0]);

_Static_assert(sizeof(config_keys) / sizeof(config_keys[0]) <= CONFIG_MAX_KEYS,
		"raise CONFIG_MAX_KEYS");

const char *config_schema_name(const struct config_key *key)
{
	const char *dot = strrchr(key->path, '.');

	return dot ? dot + 1 : key->path;
}

bool config_schema_is_child(const struct config_key *key, const char *prefix)
{
	size_t plen = strlen(prefix);

	if (plen == 0)
		return strchr(key->path, '.') == NULL;
	return strncmp(key->path, prefix, plen) == 0 && key->path[plen] == '.' &&
		strchr(key->path + plen + 1, '.') == NULL;
}

const struct config_key *config_schema_child(const char *prefix, const char *name)
{
	for (size_t i = 0; i < config_n_keys; i++)
		if (config_schema_is_child(&config_keys[i], prefix) &&
		    strcmp(config_schema_name(&config_keys[i]), name) == 0)
			return &config_keys[i];
	return NULL;
}

void config_schema_inner(const struct config_key *key, char *buf, size_t len)
{
	switch (key->type) {
	case CT_SITES:
		snprintf(buf, len, "%s.<name>", key->path);
		break;
	case CT_STREAMS:
	case CT_SCHEDULE:
		snprintf(buf, len, "%s[]", key->path);
		break;
	default:
		snprintf(buf, len, "%s", key->path);
		break;
	}
}

const char *config_type_name(enum config_type type)
{
	switch (type) {
	case CT_SECTION:
	case CT_SITES:
		return "a mapping";
	case CT_STREAMS:
	case CT_SCHEDULE:
	case CT_WINDOWS:
	case CT_TABLES:
	case CT_URLS:
		return "a sequence";
	case CT_NAME:
		return "a name";
	case CT_PGNAME:
		return "an identifier";
	case CT_PATH:
		return "a path";
	case CT_IFNAME:
		return "an interface name";
	case CT_CHOICE:
	case CT_ENUM:
		return "a choice";
	case CT_BOOL:
		return "a boolean";
	case CT_INT:
		return "an integer";
	case CT_SIZE:
		return "a size";
	case CT_DURATION:
		return "a duration";
	case CT_RATE:
		return "a rate";
	case CT_DAYS:
		return "a day range";
	case CT_WINDOW:
		return "an hour window";
	case CT_CIDR:
		return "a CIDR address";
	case CT_ENDPOINT:
	case CT_LISTEN:
		return "an endpoint";
	case CT_KEY:
		return "a WireGuard key";
	case CT_CONNINFO:
		return "a connection string";
	case CT_SITEREF:
		return "a site name";
	case CT_SITELIST:
		return "a site name or a list of site names";
	case CT_VIA:
		return "a mapping of destinations to relays";
	case CT_GROUP:
		return "a group name";
	}
	return "a value";
}

/* The type's name without its article, for the reference. */
static const char *bare_type_name(const struct config_key *key)
{
	const char *name = config_type_name(key->type);

	if (key->type == CT_SITES)
		return "map of sites";
	if (key->type == CT_STREAMS || key->type == CT_SCHEDULE)
		return "list";
	if (key->type == CT_WINDOWS)
		return "list of windows";
	if (key->type == CT_TABLES)
		return "list of tables";
	if (key->type == CT_URLS)
		return "list of URLs";
	if (key->type == CT_SECTION)
		return "section";
	if (key->type == CT_SITELIST)
		return "site name or list of site names";
	if (key->type == CT_VIA)
		return "map of destination to relay site";
	return strchr(name, ' ') + 1;
}

/* The range of a number, size or duration, as the reference shows it. */
static void print_bounds(FILE *out, const struct config_key *key)
{
	char lo[CONFIG_VALUE_BUF], hi[CONFIG_VALUE_BUF];

	if (key->type == CT_INT) {
		fprintf(out, ", %s%lld to %lld", key->zero_ok ? "0 or " : "", key->min, key->max);
	} else if (key->type == CT_DURATION && key->max > 0) {
		config_format_duration(lo, sizeof(lo), (config_msec)key->min);
		config_format_duration(hi, sizeof(hi), (config_msec)key->max);
		fprintf(out, ", %s%s to %s%s", key->zero_ok ? "0 or " : "", lo, hi,
				key->seconds ? " in whole seconds" : "");
	} else if (key->type == CT_SIZE && key->min > 0) {
		config_format_size(lo, sizeof(lo), (config_size)key->min);
		fprintf(out, ", at least %s", lo);
	} else if (key->type == CT_PATH && key->max > 0) {
		fprintf(out, ", absolute, at most %lld bytes", key->max);
	} else if (key->type == CT_PATH) {
		fprintf(out, ", absolute");
	}
}

void config_print_reference(FILE *out)
{
	for (size_t i = 0; i < config_n_keys; i++) {
		const struct config_key *k = &config_keys[i];
		const char *def = k->def ? k->def : k->required ? "(required)" : "-";

		fprintf(out, "%s\n", k->path);
		fprintf(out, "    type: %s", bare_type_name(k));
		if (k->choices) {
			fprintf(out, " (");
			for (size_t c = 0; k->choices[c]; c++)
				fprintf(out, "%s%s", c ? " | " : "", k->choices[c]);
			fprintf(out, ")");
		}
		print_bounds(out, k);
		fprintf(out, "; default: %s; reload: %s\n", def, k->reload ? "yes" : "no");
		fprintf(out, "    %s\n", k->doc);
	}
}
