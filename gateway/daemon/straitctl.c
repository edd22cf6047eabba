/*
 * straitctl.c — the operator's tool: checks configs, makes keys, and talks to
 * the local straitd over its control socket.
 *
 * Subcommands come from one table that also prints the usage. The daemon's
 * socket is --socket PATH, or control.socket of --config FILE (default
 * /etc/strait/strait.yaml).
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/json_value.h"
#include "config/config.h"
#include "gateway/daemon/control.h"
#include "gateway/daemon/status_text.h"
#include "tunnel/wgkey.h"

struct ctl_globals {
	const char *config_path;
	const char *socket_path;
};

struct ctl_command {
	const char *name;
	int (*run)(struct ctl_globals *g, int argc, char **argv);
	const char *args;
	const char *description;
	const char *help;
};

static const struct ctl_command *ctl_find(const char *name);

/* Prints a subcommand's help when argv holds -h/--help; returns true if it did. */
static bool ctl_wants_help(const char *name, int argc, char **argv)
{
	const struct ctl_command *cmd = ctl_find(name);

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0)
			break;
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			printf("Usage: straitctl %s%s%s\n%s\n%s", cmd->name, *cmd->args ? " " : "",
			       cmd->args, cmd->description, cmd->help);
			return true;
		}
	}
	return false;
}

static int ctl_bad_usage(const char *name, const char *what)
{
	fprintf(stderr, "straitctl %s: %s\nTry \"straitctl %s --help\" for more information.\n",
		name, what, name);
	return 2;
}

/* Resolves the control socket: --socket, or control.socket of the config. */
static char *ctl_socket_path(struct ctl_globals *g)
{
	struct config_diags diags = { 0 };
	struct strait_config *cfg;
	char *path;

	if (g->socket_path)
		return strdup(g->socket_path);
	cfg = config_load_file(g->config_path, &diags);
	if (!cfg) {
		config_diags_print(stderr, &diags);
		fprintf(stderr, "straitctl: could not find the control socket: \"%s\" does not load "
			"(give --socket PATH, or --config FILE)\n", g->config_path);
		config_diags_free(&diags);
		return NULL;
	}
	path = strdup(cfg->control.socket);
	config_free(cfg);
	config_diags_free(&diags);
	return path;
}

/*
 * Sends one request to straitd: 0 with *ok and *body (the caller frees it),
 * or an exit code when there was no reply (1: no socket, 3: unreachable),
 * said on stderr.
 */
static int ctl_request(struct ctl_globals *g, int argc, char **argv, bool *ok, char **body)
{
	char err[512], *path = ctl_socket_path(g);
	int code = 0;

	if (!path)
		return 1;
	if (control_call(path, argc, argv, ok, body, err, sizeof(err)) < 0) {
		fprintf(stderr, "straitctl: %s\n", err);
		code = 3;
	}
	free(path);
	return code;
}

/*
 * Sends one request to straitd and prints its reply: on stdout, or on stderr
 * when the daemon said no (unless the reply is a document for a script,
 * which goes to stdout either way). Exit code 0, 1 or 3 (unreachable).
 */
static int ctl_call_out(struct ctl_globals *g, int argc, char **argv, bool always_stdout)
{
	char *body = NULL;
	bool ok = false;
	int code = ctl_request(g, argc, argv, &ok, &body);

	if (code != 0)
		return code;
	fputs(body, ok || always_stdout ? stdout : stderr);
	free(body);
	return ok ? 0 : 1;
}

static int ctl_call(struct ctl_globals *g, int argc, char **argv)
{
	return ctl_call_out(g, argc, argv, false);
}

/*
 * Sends req (a request for a JSON document) and prints the reply as render
 * makes it: the compact tables of status, status --cluster and schedule. A
 * refusal goes to stderr as the daemon wrote it.
 */
static int ctl_call_table_req(struct ctl_globals *g, const char *command, int argc, char **req,
		char *(*render)(const struct json_value *doc))
{
	char *body = NULL, *text = NULL, err[128];
	struct json_value *doc = NULL;
	bool ok = false;
	int code = ctl_request(g, argc, req, &ok, &body);

	if (code != 0)
		return code;
	if (!ok) {
		fputs(body, stderr);
		free(body);
		return 1;
	}
	doc = json_parse(body, err, sizeof(err));
	if (doc)
		text = render(doc);
	if (text)
		code = fputs(text, stdout) < 0;
	else if (doc)
		fprintf(stderr, "straitctl %s: out of memory\n", command);
	else
		fprintf(stderr, "straitctl %s: the daemon's reply does not read as JSON (%s)\n",
			command, err);
	if (!text)
		code = 1;
	free(text);
	json_value_free(doc);
	free(body);
	return code;
}

/* command --json as a table. */
static int ctl_call_table(struct ctl_globals *g, const char *command,
		char *(*render)(const struct json_value *doc))
{
	char *req[2] = { (char *)command, "--json" };

	return ctl_call_table_req(g, command, 2, req, render);
}

/*
 * status and schedule [--json | --verbose]: a compact table by default, the
 * daemon's outline of every field with --verbose, its JSON with --json.
 */
static int ctl_status_like(struct ctl_globals *g, const char *name, int argc, char **argv,
		char *(*render)(const struct json_value *doc))
{
	char *req[2] = { (char *)name, "--json" };
	bool json = false, verbose = false, cluster = false;

	if (ctl_wants_help(name, argc, argv))
		return 0;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			json = true;
		else if (strcmp(argv[i], "--verbose") == 0 || strcmp(argv[i], "-v") == 0)
			verbose = true;
		else if (strcmp(argv[i], "--cluster") == 0 && strcmp(name, "status") == 0)
			cluster = true;
		else
			return ctl_bad_usage(name, "unexpected argument");
	}
	if (json && verbose)
		return ctl_bad_usage(name, "--json and --verbose do not go together");
	if (cluster && verbose)
		return ctl_bad_usage(name, "--cluster and --verbose do not go together");
	if (cluster) {
		req[1] = "--cluster";
		return json ? ctl_call(g, 2, req) : ctl_call_table_req(g, name, 2, req,
									 status_text_cluster);
	}
	if (json || verbose)
		return ctl_call(g, json ? 2 : 1, req);
	return ctl_call_table(g, name, render);
}

static int ctl_status(struct ctl_globals *g, int argc, char **argv)
{
	return ctl_status_like(g, "status", argc, argv, status_text_status);
}

/* A refresh interval in seconds: a number from 0.1 to 86400. */
static bool ctl_parse_interval(const char *text, double *out)
{
	char *end;
	double v = strtod(text, &end);

	if (end == text || *end != '\0' || !isfinite(v) || v < 0.1 || v > 86400)
		return false;
	*out = v;
	return true;
}

static int ctl_lag(struct ctl_globals *g, int argc, char **argv)
{
	static const char bad_watch[] = "--watch takes seconds from 0.1 to 86400";
	char *req[2] = { "lag", "--json" };
	bool json = false, watch = false;
	double interval = 2.0;
	long count = 0;          /* 0: until interrupted */
	int code = 0;

	if (ctl_wants_help("lag", argc, argv))
		return 0;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0) {
			json = true;
		} else if (strcmp(argv[i], "--watch") == 0) {
			watch = true;
			if (i + 1 < argc && argv[i + 1][0] != '-') {
				if (!ctl_parse_interval(argv[++i], &interval))
					return ctl_bad_usage("lag", bad_watch);
			}
		} else if (strncmp(argv[i], "--watch=", 8) == 0) {
			watch = true;
			if (!ctl_parse_interval(argv[i] + 8, &interval))
				return ctl_bad_usage("lag", bad_watch);
		} else if (strcmp(argv[i], "--count") == 0 && i + 1 < argc) {
			char *end;

			count = strtol(argv[++i], &end, 10);
			if (*argv[i] == '\0' || *end != '\0' || count < 1 || count > 1000000)
				return ctl_bad_usage("lag", "--count takes a number from 1 to 1000000");
			watch = true;
		} else {
			return ctl_bad_usage("lag", "unexpected argument");
		}
	}
	if (!watch)
		return ctl_call(g, json ? 2 : 1, req);
	for (long n = 0; count == 0 || n < count; n++) {
		if (n > 0) {
			struct timespec ts = { (time_t)interval,
					       (long)((interval - floor(interval)) * 1e9) };

			while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
				;
		}
		if (!json) {
			time_t now = time(NULL);
			char when[64];

			if (isatty(STDOUT_FILENO))
				fputs("\033[H\033[2J", stdout);      /* clear the screen */
			strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S %Z", localtime(&now));
			printf("%severy %gs: straitctl lag    %s\n", n > 0 && !isatty(STDOUT_FILENO) ?
			       "\n" : "", interval, when);
			fflush(stdout);
		}
		code = ctl_call(g, json ? 2 : 1, req);
		fflush(stdout);
		if (code != 0)
			break;
	}
	return code;
}

static int ctl_ping(struct ctl_globals *g, int argc, char **argv)
{
	char *req[1] = { "ping" };

	if (ctl_wants_help("ping", argc, argv))
		return 0;
	if (argc > 1)
		return ctl_bad_usage("ping", "unexpected argument");
	return ctl_call(g, 1, req);
}

static int ctl_reload(struct ctl_globals *g, int argc, char **argv)
{
	char *req[1] = { "reload" };

	if (ctl_wants_help("reload", argc, argv))
		return 0;
	if (argc > 1)
		return ctl_bad_usage("reload", "unexpected argument");
	return ctl_call(g, 1, req);
}

/* pause-auto, resume-auto: no arguments. */
static int ctl_pause_auto(struct ctl_globals *g, int argc, char **argv)
{
	char *req[1] = { argv[0] };

	if (ctl_wants_help(argv[0], argc, argv))
		return 0;
	if (argc > 1)
		return ctl_bad_usage(argv[0], "unexpected argument");
	return ctl_call(g, 1, req);
}

static int ctl_sync_now(struct ctl_globals *g, int argc, char **argv)
{
	char secs[32], *req[3] = { "sync-now", NULL, NULL };
	const char *stream = NULL;
	config_msec dur = 0;
	bool have_for = false;

	if (ctl_wants_help("sync-now", argc, argv))
		return 0;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--for") == 0) {
			if (++i >= argc || !config_parse_duration(argv[i], &dur) || dur < 1000)
				return ctl_bad_usage("sync-now", "--for takes a duration of at least 1s "
						     "(\"30m\", \"2h\")");
			have_for = true;
		} else if (argv[i][0] == '-' || stream) {
			return ctl_bad_usage("sync-now", "unexpected argument");
		} else {
			stream = argv[i];
		}
	}
	if (!stream)
		return ctl_bad_usage("sync-now", "which stream?");
	req[1] = (char *)stream;
	if (!have_for)
		return ctl_call(g, 2, req);
	snprintf(secs, sizeof(secs), "%llu", (unsigned long long)(dur / 1000));
	req[2] = secs;
	return ctl_call(g, 3, req);
}

static int ctl_schedule(struct ctl_globals *g, int argc, char **argv)
{
	return ctl_status_like(g, "schedule", argc, argv, status_text_schedule);
}

static int ctl_check_config(struct ctl_globals *g, int argc, char **argv)
{
	struct config_diags diags = { 0 };
	struct strait_config *cfg;
	const char *path = g->config_path;
	bool print = false, files = false, have_path = false;
	int code = 1;

	if (ctl_wants_help("check-config", argc, argv))
		return 0;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--print") == 0)
			print = true;
		else if (strcmp(argv[i], "--files") == 0)
			files = true;
		else if (argv[i][0] == '-' && argv[i][1] != '\0')
			return ctl_bad_usage("check-config", "unknown option");
		else if (have_path)
			return ctl_bad_usage("check-config", "more than one file given");
		else
			path = argv[i], have_path = true;
	}

	cfg = config_load_file(path, &diags);
	if (cfg && files && !config_check_files(cfg, &diags)) {
		config_free(cfg);
		cfg = NULL;
	}
	config_diags_print(stderr, &diags);
	if (!cfg) {
		fprintf(stderr, "straitctl: \"%s\" has errors\n", path);
		goto out;
	}
	if (print)
		config_print(stdout, cfg);
	else
		printf("%s: ok (%zu sites, %zu streams)\n", path, cfg->n_sites, cfg->n_streams);
	code = 0;
out:
	config_free(cfg);
	config_diags_free(&diags);
	return code;
}

static int ctl_config_reference(struct ctl_globals *g, int argc, char **argv)
{
	(void)g;
	if (ctl_wants_help("config-reference", argc, argv))
		return 0;
	if (argc > 1)
		return ctl_bad_usage("config-reference", "unexpected argument");
	config_print_reference(stdout);
	return 0;
}

static int ctl_genkey(struct ctl_globals *g, int argc, char **argv)
{
	uint8_t priv[WG_KEY_LEN];
	char b64[WG_KEY_B64_LEN + 1], err[256];

	(void)g;
	if (ctl_wants_help("genkey", argc, argv))
		return 0;
	if (argc > 1)
		return ctl_bad_usage("genkey", "unexpected argument");
	if (isatty(STDOUT_FILENO))
		fprintf(stderr, "straitctl: warning: writing a private key to a terminal\n");
	if (!wgkey_generate(priv, err, sizeof(err))) {
		fprintf(stderr, "straitctl: %s\n", err);
		return 1;
	}
	wgkey_to_base64(priv, b64);
	printf("%s\n", b64);
	wgkey_wipe(priv, sizeof(priv));
	wgkey_wipe(b64, sizeof(b64));
	return 0;
}

static int ctl_pubkey(struct ctl_globals *g, int argc, char **argv)
{
	uint8_t priv[WG_KEY_LEN], pub[WG_KEY_LEN];
	char line[256], b64[WG_KEY_B64_LEN + 1], err[256];
	int code = 1;

	(void)g;
	if (ctl_wants_help("pubkey", argc, argv))
		return 0;
	if (argc > 1)
		return ctl_bad_usage("pubkey", "unexpected argument");
	if (!fgets(line, sizeof(line), stdin) || !wgkey_from_base64(line, priv)) {
		fprintf(stderr, "straitctl: standard input does not hold a base64 WireGuard private key\n");
		goto out;
	}
	if (!wgkey_public(priv, pub, err, sizeof(err))) {
		fprintf(stderr, "straitctl: %s\n", err);
		goto out;
	}
	wgkey_to_base64(pub, b64);
	printf("%s\n", b64);
	code = 0;
out:
	wgkey_wipe(line, sizeof(line));
	wgkey_wipe(priv, sizeof(priv));
	return code;
}

/*
 * switchover --to SITE, failover --to SITE [--force] [--dry-run [--json]]:
 * checked here for usage, then handed to straitd as they are; the daemon
 * prints the steps as it takes them and says why when it does not act.
 */
static int ctl_role_change(struct ctl_globals *g, const char *name, int argc, char **argv,
		bool with_flags)
{
	char *req[6] = { (char *)name };
	int n = 1;
	bool to = false, force = false, dry_run = false, json = false;

	if (ctl_wants_help(name, argc, argv))
		return 0;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--to") == 0 && i + 1 < argc && argv[i + 1][0] != '-' && !to) {
			req[n++] = "--to";
			req[n++] = argv[++i];
			to = true;
		} else if (with_flags && strcmp(argv[i], "--force") == 0 && !force) {
			req[n++] = "--force";
			force = true;
		} else if (with_flags && strcmp(argv[i], "--dry-run") == 0 && !dry_run) {
			req[n++] = "--dry-run";
			dry_run = true;
		} else if (with_flags && strcmp(argv[i], "--json") == 0 && !json) {
			req[n++] = "--json";
			json = true;
		} else {
			return ctl_bad_usage(name, "unexpected argument");
		}
	}
	if (!to)
		return ctl_bad_usage(name, "which site? (--to SITE)");
	if (json && !dry_run)
		return ctl_bad_usage(name, "--json goes with --dry-run");
	return ctl_call_out(g, n, req, json);
}

static int ctl_switchover(struct ctl_globals *g, int argc, char **argv)
{
	return ctl_role_change(g, "switchover", argc, argv, false);
}

static int ctl_failover(struct ctl_globals *g, int argc, char **argv)
{
	return ctl_role_change(g, "failover", argc, argv, true);
}

static int ctl_rejoin(struct ctl_globals *g, int argc, char **argv)
{
	char *req[2] = { "rejoin", NULL };

	if (ctl_wants_help("rejoin", argc, argv))
		return 0;
	if (argc != 2 || argv[1][0] == '-')
		return ctl_bad_usage("rejoin", "which site?");
	req[1] = argv[1];
	return ctl_call(g, 2, req);
}

static int ctl_forget_stream(struct ctl_globals *g, int argc, char **argv)
{
	char *req[2] = { "forget-stream", NULL };

	if (ctl_wants_help("forget-stream", argc, argv))
		return 0;
	if (argc != 2 || argv[1][0] == '-')
		return ctl_bad_usage("forget-stream", "which stream?");
	req[1] = argv[1];
	return ctl_call(g, 2, req);
}

/*
 * verify [--stream NAME]... [--table T]... [--rate ROWS] [--json]: checked
 * here, then run by straitd, which answers when the comparison is done. The
 * report goes to standard output either way; exit 1 when anything differs
 * or could not be compared.
 */
static int ctl_verify(struct ctl_globals *g, int argc, char **argv)
{
	char *req[CONTROL_MAX_ARGS] = { "verify" };
	int n = 1;

	if (ctl_wants_help("verify", argc, argv))
		return 0;
	for (int i = 1; i < argc; i++) {
		if (n + 2 > CONTROL_MAX_ARGS)
			return ctl_bad_usage("verify", "too many arguments");
		if (strcmp(argv[i], "--json") == 0) {
			req[n++] = "--json";
		} else if ((strcmp(argv[i], "--stream") == 0 || strcmp(argv[i], "--table") == 0 ||
			    strcmp(argv[i], "--rate") == 0) && i + 1 < argc && argv[i + 1][0] != '-') {
			if (strcmp(argv[i], "--rate") == 0 && strspn(argv[i + 1], "0123456789") != strlen(argv[i + 1]))
				return ctl_bad_usage("verify", "--rate takes rows per second, a whole number");
			req[n++] = argv[i];
			req[n++] = argv[++i];
		} else {
			return ctl_bad_usage("verify", "unexpected argument");
		}
	}
	return ctl_call_out(g, n, req, true);
}

static int ctl_help(struct ctl_globals *g, int argc, char **argv);

static const struct ctl_command ctl_commands[] = {
	{ "status", ctl_status, "[--verbose | --json] [--cluster]",
	  "Show the site, its peers and its streams as the running straitd sees them:\n"
	  "a line per site (role, epoch, link, tunnel handshake age, health) and a\n"
	  "line per stream and direction (state, lag, rate and rule, spool, warnings).",
	  "  -v, --verbose   print every field, as an indented outline\n"
	  "  --json          print one JSON document (every field, for scripts)\n" },
	{ "lag", ctl_lag, "[--json] [--watch [SECONDS]] [--count N]",
	  "Show each stream's replication lag (bytes and seconds) and state.",
	  "  --json             print one JSON document per refresh\n"
	  "  --watch [SECONDS]  refresh every SECONDS (default 2) until interrupted\n"
	  "  --count N          stop after N refreshes (implies --watch)\n" },
	{ "schedule", ctl_schedule, "[--verbose | --json]",
	  "Show each stream this site sends: the schedule rule in force, its rate,\n"
	  "whether it is held, and when that changes next; a line per stream.",
	  "  -v, --verbose   print every field, as an indented outline\n"
	  "  --json          print one JSON document (every field, for scripts)\n" },
	{ "sync-now", ctl_sync_now, "STREAM [--for DURATION]",
	  "Open a one-off window on a stream this site sends: it goes unlimited now,\n"
	  "whatever its schedule or batch windows say, until its spool is drained\n"
	  "or, with --for, for DURATION.",
	  "  --for DURATION   keep the window open this long (\"30m\", \"2h\")\n" },
	{ "switchover", ctl_switchover, "--to SITE",
	  "Planned switchover, run on the primary: fence its database, drain every\n"
	  "stream to SITE, promote SITE at a new epoch and make this site its\n"
	  "replica. Nothing committed is lost. Prints each step.",
	  "  --to SITE   the replica that becomes primary\n" },
	{ "failover", ctl_failover, "--to SITE [--force] [--dry-run [--json]]",
	  "Disaster failover, run on SITE while the primary is unreachable: apply\n"
	  "what arrived, raise sequences by failover.sequence_margin, promote this\n"
	  "site at a new epoch. Refused while the primary is reachable (use\n"
	  "switchover) or when the last known lag is over failover.max_lag_bytes or\n"
	  "failover.max_lag_seconds; the refusal says what would be lost.",
	  "  --to SITE   this site, the one that takes over\n"
	  "  --force     fail over even when the lag is over the limits\n"
	  "  --dry-run   change nothing: a readiness report, one check a line (lag\n"
	  "              against the gate, streams, database and sequences, fencing\n"
	  "              of the old primary, health endpoints, expected loss and\n"
	  "              duration); exit 0 when a failover would go through were the\n"
	  "              primary lost now, 1 when not\n"
	  "  --json      with --dry-run: the report as one JSON document, on\n"
	  "              standard output whatever the verdict\n" },
	{ "pause-auto", ctl_pause_auto, "",
	  "Pause automatic failover (failover.mode automatic) for every site of the\n"
	  "cluster, for maintenance: no replica promotes itself and the primary does\n"
	  "not fence itself when the witness is away. Switchover and failover still\n"
	  "run when typed. Kept by the witness (etcd) until resume-auto.", "" },
	{ "resume-auto", ctl_pause_auto, "",
	  "End a pause-auto: automatic failover is on again for every site.", "" },
	{ "rejoin", ctl_rejoin, "SITE",
	  "Run on a fenced old primary SITE: write the transactions it committed\n"
	  "that never reached the new primary to a SQL file in the state directory,\n"
	  "then make it a replica again, re-seeded by an initial sync.", "" },
	{ "forget-stream", ctl_forget_stream, "STREAM",
	  "Run on the site a dropped stream went to, once it is out of the config:\n"
	  "delete its rows from strait.sync_table and strait.sync_stream and drop\n"
	  "its replication origins (strait_STREAM, strait_STREAM:*) in this site's\n"
	  "database, which free their max_replication_slots places.", "" },
	{ "verify", ctl_verify, "[--stream NAME]... [--table TABLE]... [--rate ROWS] [--json]",
	  "Run on the site the streams come from: compare each stream's tables with\n"
	  "its target while replication goes on, both sides at the same point of the\n"
	  "stream, chunk by chunk with checksums computed in PostgreSQL (only they\n"
	  "cross the link). Reports rows, chunks and the keys that differ (missing,\n"
	  "extra, changed) per table; exit 1 when anything differs or could not be\n"
	  "compared.",
	  "  --stream NAME   only this stream (repeatable; default: every stream sent here)\n"
	  "  --table TABLE   only this table (schema.table or table; repeatable)\n"
	  "  --rate ROWS     read at most ROWS rows per second on each side\n"
	  "                  (default: the stream's verify.rate)\n"
	  "  --json          print one JSON document\n" },
	{ "check-config", ctl_check_config, "[--print] [--files] [FILE]",
	  "Check a config file (default: --config) and exit 0, or 1 with every error.\n"
	  "It changes nothing and may run while a daemon uses the same file.",
	  "  --print   print the normalized config with every default filled in\n"
	  "  --files   also open every file the config names (keys, certificates)\n"
	  "            and check their permissions\n" },
	{ "ping", ctl_ping, "",
	  "Check that straitd answers on its control socket (exit 0, or 3 when it does not).", "" },
	{ "reload", ctl_reload, "",
	  "Ask straitd to reload its config, like SIGHUP, and report whether it took.", "" },
	{ "genkey", ctl_genkey, "",
	  "Print a new base64 WireGuard private key (like wg genkey).", "" },
	{ "pubkey", ctl_pubkey, "",
	  "Read a base64 private key on standard input and print its public key\n"
	  "(like wg pubkey).", "" },
	{ "config-reference", ctl_config_reference, "",
	  "Print every config key with its type, default, whether a reload can change\n"
	  "it, and what it does.", "" },
	{ "help", ctl_help, "[COMMAND]", "Show help for straitctl or one of its commands.", "" },
	{ NULL, NULL, NULL, NULL, NULL },
};

static const struct ctl_command *ctl_find(const char *name)
{
	for (const struct ctl_command *c = ctl_commands; c->name; c++) {
		if (strcmp(c->name, name) == 0)
			return c;
	}
	return NULL;
}

static void ctl_usage(FILE *out)
{
	fprintf(out,
		"Usage: straitctl [--config FILE | --socket PATH] COMMAND [ARGS]...\n"
		"The strait operator's tool.\n"
		"\n"
		"  -c, --config FILE   site config (default " CONFIG_DEFAULT_PATH "); its\n"
		"                      control.socket locates the daemon\n"
		"  -S, --socket PATH   the daemon's control socket\n"
		"  -h, --help          show this help and exit\n"
		"  -V, --version       show the version and exit\n"
		"\n"
		"Commands:\n");
	for (const struct ctl_command *c = ctl_commands; c->name; c++) {
		const char *nl = strchr(c->description, '\n');
		int len = nl ? (int)(nl - c->description) : (int)strlen(c->description);
		fprintf(out, "  %-18s %.*s\n", c->name, len, c->description);
	}
	fprintf(out, "\nRun \"straitctl COMMAND --help\" for a command's options.\n");
}

static int ctl_help(struct ctl_globals *g, int argc, char **argv)
{
	const struct ctl_command *cmd;
	char *args[2];

	(void)g;
	if (ctl_wants_help("help", argc, argv))
		return 0;
	if (argc < 2) {
		ctl_usage(stdout);
		return 0;
	}
	cmd = ctl_find(argv[1]);
	if (!cmd)
		return ctl_bad_usage("help", "unknown command");
	args[0] = (char *)cmd->name;
	args[1] = "--help";
	return ctl_wants_help(cmd->name, 2, args) ? 0 : 1;
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "socket", required_argument, NULL, 'S' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct ctl_globals g = { .config_path = CONFIG_DEFAULT_PATH };
	const struct ctl_command *cmd;
	int c;

	/* "+" stops at the first non-option: the rest belongs to the subcommand. */
	while ((c = getopt_long(argc, argv, "+c:S:hV", options, NULL)) != -1) {
		switch (c) {
		case 'c':
			g.config_path = optarg;
			break;
		case 'S':
			g.socket_path = optarg;
			break;
		case 'h':
			ctl_usage(stdout);
			return 0;
		case 'V':
			printf("straitctl %s\n", STRAIT_VERSION);
			return 0;
		default:
			fprintf(stderr, "Try \"straitctl --help\" for more information.\n");
			return 2;
		}
	}
	if (optind >= argc) {
		ctl_usage(stderr);
		return 2;
	}
	cmd = ctl_find(argv[optind]);
	if (!cmd) {
		fprintf(stderr, "straitctl: unknown command \"%s\"\n"
			"Try \"straitctl --help\" for more information.\n", argv[optind]);
		return 2;
	}
	return cmd->run(&g, argc - optind, argv + optind);
}
