/*
 * daemon.c — straitd's life cycle (see daemon.h).
 *
 * NOTES
 * A reload parses the new file into a fresh config, validates it, checks that
 * it changes nothing a reload cannot change, applies it to the tunnel and only
 * then swaps it in: a typo never takes a running site down. The result of the
 * last reload shows in status, so an operator who sent SIGHUP can see whether
 * it took.
 *
 * The site's role and epoch live in role.c; the daemon stamps the epoch on
 * the relay, checks the epoch of every frame it is handed (a higher one makes
 * this site step down) and remembers what each peer last said about itself.
 * Metrics and health checks are gathered at scrape time from the modules'
 * own accessors (metrics.h knows nothing of them).
 */
#include "gateway/daemon/daemon.h"
#include "gateway/daemon/daemon_int.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/json.h"
#include "common/log.h"
#include "common/lsn.h"
#include "config/config.h"
#include "gateway/cluster/failover.h"
#include "gateway/cluster/role.h"
#include "gateway/daemon/control.h"
#include "gateway/daemon/identity.h"
#include "gateway/daemon/metrics.h"
#include "gateway/daemon/sdnotify.h"
#include "gateway/relay/relay.h"
#include "gateway/stream/clock.h"
#include "gateway/stream/stream.h"
#include "gateway/verify/verify_service.h"
#include "tunnel/tunnel.h"

/* Logs every diagnostic line at error level (the file's own format). */
static void daemon_log_diags(const struct config_diags *diags)
{
	char *text = NULL, *save = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&text, &len);

	if (!mem)
		return;
	config_diags_print(mem, diags);
	fclose(mem);
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		log_error("%s", line);
	free(text);
}

static bool daemon_make_state_dir(const char *dir)
{
	struct stat st;

	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		log_error("could not create state directory \"%s\": %s", dir, strerror(errno));
		return false;
	}
	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
		log_error("state directory \"%s\" is not a directory", dir);
		return false;
	}
	return true;
}

static const char *const daemon_stream_states[] = { STREAM_STATES };

/* A stream's report, kept beyond the callback (names are at most 63 characters). */
struct daemon_row {
	struct stream_report r;
	char name[64];
	char peer[64];
};

struct daemon_rows {
	struct daemon_row *v;
	size_t n;
	size_t cap;
	bool failed;
};

static void daemon_row_cb(void *arg, const struct stream_report *r)
{
	struct daemon_rows *rows = arg;
	struct daemon_row *row;

	if (rows->failed)
		return;
	if (rows->n == rows->cap) {
		size_t cap = rows->cap ? rows->cap * 2 : 8;
		struct daemon_row *v = realloc(rows->v, cap * sizeof(*v));

		if (!v) {
			rows->failed = true;
			return;
		}
		rows->v = v;
		rows->cap = cap;
	}
	row = &rows->v[rows->n++];
	row->r = *r;
	snprintf(row->name, sizeof(row->name), "%s", r->name);
	snprintf(row->peer, sizeof(row->peer), "%s", r->peer);
	row->r.name = row->name;
	row->r.peer = row->peer;
	row->r.state = "unknown";
	for (size_t i = 0; i < sizeof(daemon_stream_states) / sizeof(daemon_stream_states[0]); i++) {
		if (strcmp(r->state, daemon_stream_states[i]) == 0)
			row->r.state = daemon_stream_states[i];
	}
}

static void daemon_rows_free(struct daemon_rows *rows)
{
	free(rows->v);
}

static int64_t daemon_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Every stream's report; false when out of memory (rows freed). */
static bool daemon_stream_rows(const struct daemon *d, struct daemon_rows *rows)
{
	*rows = (struct daemon_rows){ 0 };
	if (d->streams)
		streams_report(d->streams, daemon_now_us(), daemon_row_cb, rows);
	if (rows->failed) {
		daemon_rows_free(rows);
		*rows = (struct daemon_rows){ 0 };
		return false;
	}
	return true;
}

static void daemon_lag_json(const struct daemon_rows *rows, struct json_out *j)
{
	char lsn[32];

	json_array_begin(j, "lag");
	for (size_t i = 0; i < rows->n; i++) {
		const struct stream_report *r = &rows->v[i].r;

		json_object_begin(j, NULL);
		json_string(j, "stream", r->name);
		json_string(j, "role", r->sink ? "sink" : "source");
		json_string(j, "peer", r->peer);
		json_string(j, "state", r->state);
		json_uint(j, "lag_bytes", r->lag_bytes);
		json_double(j, "lag_seconds", r->lag_seconds);
		lsn_format(lsn, r->applied_lsn);
		json_string(j, "applied_lsn", lsn);
		json_object_end(j);
	}
	json_array_end(j);
}

static void daemon_status_json(struct daemon *d, struct json_out *j)
{
	const struct strait_config *cfg = d->cfg;
	time_t now = time(NULL);

	json_object_begin(j, NULL);
	json_string(j, "cluster", cfg->cluster);
	json_string(j, "site", d->site_name);
	json_string(j, "role", daemon_site_role(d));
	json_uint(j, "epoch", role_epoch(d->role));
	if (!role_persisted(d->role))
		json_string(j, "role_error", "the role state could not be written (see the log)");
	json_string(j, "version", STRAIT_VERSION);
	json_int(j, "pid", (int64_t)getpid());
	json_int(j, "uptime_seconds", (int64_t)(now - d->started_at));
	json_object_begin(j, "config");
	json_string(j, "path", cfg->path);
	json_int(j, "loaded_at", (int64_t)d->loaded_at);
	json_uint(j, "reloads", d->reloads);
	json_uint(j, "failed_reloads", d->failed_reloads);
	json_string(j, "last_reload_error", d->reload_error);
	json_object_end(j);

	json_array_begin(j, "sites");
	for (size_t i = 0; i < cfg->n_sites; i++) {
		const struct config_site *s = &cfg->sites[i];
		const struct daemon_peer *p = daemon_find_peer(d, s->name);
		json_object_begin(j, NULL);
		json_string(j, "name", s->name);
		/* as it is now: ours, or what the peer last said (null until heard) */
		if (i == d->self) {
			json_string(j, "role", daemon_site_role(d));
			json_uint(j, "epoch", role_epoch(d->role));
		} else {
			json_string(j, "role", p && p->role != RELAY_ROLE_UNKNOWN ?
				    relay_proto_role_name(p->role) : NULL);
			if (p)
				json_uint(j, "epoch", p->epoch);
			else
				json_null(j, "epoch");
		}
		json_string(j, "configured_role", s->role);
		json_bool(j, "self", i == d->self);
		json_string(j, "endpoint_host", s->endpoint.host);
		json_uint(j, "endpoint_port", s->endpoint.port);
		json_object_end(j);
	}
	json_array_end(j);

	json_array_begin(j, "streams");
	for (size_t i = 0; i < cfg->n_streams; i++) {
		const struct config_stream *s = &cfg->streams[i];
		json_object_begin(j, NULL);
		json_string(j, "name", s->name);
		json_string(j, "from", cfg->sites[s->from].name);
		json_string(j, "to", cfg->sites[s->to].name);
		json_string(j, "publication", s->publication);
		json_string(j, "mode", s->mode == CONFIG_MODE_BATCH ? "batch" : "live");
		json_object_end(j);
	}
	json_array_end(j);

	if (d->streams) {
		struct daemon_rows rows;

		streams_status_json(d->streams, j);
		if (daemon_stream_rows(d, &rows)) {
			daemon_lag_json(&rows, j);
			daemon_rows_free(&rows);
		}
	}
	if (d->verify)
		verify_service_status_json(d->verify, j);
	if (d->relay)
		relay_status_json(d->relay, j, "relay");
	if (d->tunnel)
		tunnel_status_json(d->tunnel, j);
	json_object_end(j);
}

static void daemon_cmd_status(struct control_request *req, int argc, char **argv, void *arg)
{
	struct daemon *d = arg;
	struct json_out j;
	bool as_json = false;
	char *doc;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0) {
			as_json = true;
		} else {
			control_reply(req, false, "usage: status [--json]\n");
			return;
		}
	}
	if (as_json)
		json_init(&j);
	else
		json_init_text(&j);
	daemon_status_json(d, &j);
	/* one document per line keeps the reply easy to stream */
	doc = json_finish_line(&j, NULL);
	if (!doc) {
		control_reply(req, false, "could not render status\n");
		return;
	}
	control_reply(req, true, doc);
	free(doc);
}

/* lag [--json]: each stream's lag, as a table or one JSON document. */
static void daemon_cmd_lag(struct control_request *req, int argc, char **argv, void *arg)
{
	struct daemon *d = arg;
	struct daemon_rows rows;
	struct json_out j;
	char *doc = NULL, lsn[32];
	size_t len = 0;
	FILE *out = NULL;
	bool as_json = false;
	int w_name = 6, w_peer = 4, w_state = 5;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0) {
			as_json = true;
		} else {
			control_reply(req, false, "usage: lag [--json]\n");
			return;
		}
	}
	if (!daemon_stream_rows(d, &rows)) {
		control_reply(req, false, "out of memory\n");
		return;
	}
	if (as_json) {
		json_init(&j);
		json_object_begin(&j, NULL);
		json_string(&j, "site", d->site_name);
		json_string(&j, "role", daemon_site_role(d));
		json_uint(&j, "epoch", role_epoch(d->role));
		json_int(&j, "time", (int64_t)time(NULL));
		daemon_lag_json(&rows, &j);
		json_object_end(&j);
		doc = json_finish_line(&j, &len);
		goto out;
	}
	out = open_memstream(&doc, &len);
	if (!out)
		goto out;
	for (size_t i = 0; i < rows.n; i++) {
		int n = (int)strlen(rows.v[i].r.name), p = (int)strlen(rows.v[i].r.peer),
		    st = (int)strlen(rows.v[i].r.state);
		w_name = n > w_name ? n : w_name;
		w_peer = p > w_peer ? p : w_peer;
		w_state = st > w_state ? st : w_state;
	}
	fprintf(out, "site %s, role %s, epoch %" PRIu64 "\n", d->site_name, daemon_site_role(d),
		role_epoch(d->role));
	if (rows.n == 0) {
		fprintf(out, "no streams at this site\n");
	} else {
		fprintf(out, "%-*s  %-6s  %-*s  %-*s  %15s  %11s  %s\n", w_name, "STREAM", "ROLE",
			w_peer, "PEER", w_state, "STATE", "LAG_BYTES", "LAG_SECONDS", "APPLIED_LSN");
	}
	for (size_t i = 0; i < rows.n; i++) {
		const struct stream_report *r = &rows.v[i].r;

		lsn_format(lsn, r->applied_lsn);
		fprintf(out, "%-*s  %-6s  %-*s  %-*s  %15" PRIu64 "  %11.1f  %s\n", w_name, r->name,
			r->sink ? "sink" : "source", w_peer, r->peer, w_state, r->state, r->lag_bytes,
			r->lag_seconds, lsn);
	}
	if (fclose(out) != 0) {
		free(doc);
		doc = NULL;
	}
out:
	daemon_rows_free(&rows);
	if (!doc) {
		control_reply(req, false, "out of memory\n");
		return;
	}
	control_reply(req, true, doc);
	free(doc);
}

static void daemon_cmd_ping(struct control_request *req, int argc, char **argv, void *arg)
{
	(void)argc;
	(void)argv;
	(void)arg;
	control_reply(req, true, "pong\n");
}

/* sync-now STREAM [SECONDS]: a one-off window (0 or none: until drained). */
static void daemon_cmd_sync_now(struct control_request *req, int argc, char **argv, void *arg)
{
	struct daemon *d = arg;
	unsigned long long secs = 0;
	char msg[512], *end;
	bool ok;

	if (argc < 2 || argc > 3) {
		control_reply(req, false, "usage: sync-now STREAM [SECONDS]\n");
		return;
	}
	if (argc == 3) {
		errno = 0;
		secs = strtoull(argv[2], &end, 10);
		if (errno || end == argv[2] || *end || secs > 366ull * 24 * 3600) {
			control_reply(req, false, "sync-now: SECONDS must be a whole number of seconds\n");
			return;
		}
	}
	if (!d->streams) {
		control_reply(req, false, "no streams are running\n");
		return;
	}
	ok = streams_sync_now(d->streams, argv[1], secs, msg, sizeof(msg));
	control_reply(req, ok, msg);
}

/* schedule [--json]: each stream this site sends, its rule, rate and next change. */
static void daemon_cmd_schedule(struct control_request *req, int argc, char **argv, void *arg)
{
	struct daemon *d = arg;
	struct json_out j;
	char *doc;

	if (argc > 2 || (argc == 2 && strcmp(argv[1], "--json") != 0)) {
		control_reply(req, false, "usage: schedule [--json]\n");
		return;
	}
	if (argc == 2)
		json_init(&j);
	else
		json_init_text(&j);
	json_object_begin(&j, NULL);
	json_string(&j, "site", d->site_name);
	if (d->streams)
		streams_schedule_json(d->streams, &j);
	json_object_end(&j);
	doc = json_finish_line(&j, NULL);
	control_reply(req, doc != NULL, doc ? doc : "out of memory\n");
	free(doc);
}

#ifdef STRAIT_TEST_HOOKS
/* test-clock UNIX_SECONDS: test builds only — the scheduler's wall clock jumps there. */
static void daemon_cmd_test_clock(struct control_request *req, int argc, char **argv, void *arg)
{
	long long t;
	char *end;

	(void)arg;
	if (argc != 2 || (t = strtoll(argv[1], &end, 10), *end != '\0')) {
		control_reply(req, false, "usage: test-clock UNIX_SECONDS\n");
		return;
	}
	clock_set_test((int64_t)t * 1000000);
	log_info("test clock set to %lld", t);
	control_reply(req, true, "clock set\n");
}
#endif

static void daemon_cmd_reload(struct control_request *req, int argc, char **argv, void *arg);

/* switchover --to SITE, failover --to SITE [--force] [--dry-run], rejoin SITE */
static void daemon_cmd_switchover(struct control_request *req, int argc, char **argv, void *arg)
{
	struct daemon *d = arg;

	if (!d->failover) {
		control_reply(req, false, "a single site has nothing to switch over to\n");
		return;
	}
	failover_cmd_switchover(d->failover, req, argc, argv);
}

static void daemon_cmd_failover(struct control_request *req, int argc, char **argv, void *arg)
{
	struct daemon *d = arg;

	if (!d->failover) {
		control_reply(req, false, "a single site has nothing to fail over to\n");
		return;
	}
	failover_cmd_failover(d->failover, req, argc, argv);
}

static void daemon_cmd_verify(struct control_request *req, int argc, char **argv, void *arg)
{
	struct daemon *d = arg;

	if (!d->verify) {
		control_reply(req, false, "verify: this site has no peers\n");
		return;
	}
	verify_service_cmd(d->verify, req, argc, argv);
}

static void daemon_cmd_rejoin(struct control_request *req, int argc, char **argv, void *arg)
{
	struct daemon *d = arg;

	if (!d->failover) {
		control_reply(req, false, "a single site has nothing to rejoin\n");
		return;
	}
	failover_cmd_rejoin(d->failover, req, argc, argv);
}

static const struct control_command daemon_commands[] = {
	{ "status", daemon_cmd_status },
	{ "lag", daemon_cmd_lag },
	{ "ping", daemon_cmd_ping },
	{ "reload", daemon_cmd_reload },
	{ "sync-now", daemon_cmd_sync_now },
	{ "schedule", daemon_cmd_schedule },
	{ "switchover", daemon_cmd_switchover },
	{ "failover", daemon_cmd_failover },
	{ "rejoin", daemon_cmd_rejoin },
	{ "verify", daemon_cmd_verify },
#ifdef STRAIT_TEST_HOOKS
	{ "test-clock", daemon_cmd_test_clock },
#endif
	{ NULL, NULL },
};

/* Returns NULL when the reload took, else why not (caller frees). */
static char *daemon_reload(struct daemon *d)
{
	struct config_diags diags = { 0 };
	struct strait_config *next;
	char *reason = NULL;
	int self;

	log_info("reloading configuration from \"%s\"", d->cfg->path);
	sdnotify_send("RELOADING=1");
	next = config_load_file(d->cfg->path, &diags);
	if (next && !config_reload_allowed(d->cfg, next, &diags)) {
		config_free(next);
		next = NULL;
	}
	if (!next) {
		daemon_log_diags(&diags);
		reason = strdup("the new configuration has errors (see the log)");
		goto out;
	}
	self = config_site_index(next, d->site_name);
	if (self < 0) {
		log_error("site \"%s\" is no longer defined in \"%s\"", d->site_name, next->path);
		reason = strdup("this site is no longer defined in the new configuration");
		config_free(next);
		goto out;
	}
	if (d->relay && !relay_reconfigure(d->relay, next, d->site_name)) {
		reason = strdup("the relay could not take the new configuration (see the log)");
		config_free(next);
		goto out;
	}
	if (d->tunnel && !tunnel_reconcile(d->tunnel, next, (size_t)self)) {
		reason = strdup("the tunnel could not be brought to the new configuration (see the log)");
		config_free(next);
		goto out;
	}
	if (d->streams)
		streams_reconfigure(d->streams, next);
	if (d->verify)
		verify_service_reconfigure(d->verify, next);
	if (d->failover)
		failover_reconfigure(d->failover, next);
	config_free(d->cfg);
	d->cfg = next;
	d->self = (size_t)self;
	d->loaded_at = time(NULL);
	log_info("configuration reloaded");
out:
	if (reason) {
		log_error("reload refused: the old configuration stays in force");
		d->failed_reloads++;
	} else {
		d->reloads++;
	}
	free(d->reload_error);
	d->reload_error = reason ? strdup(reason) : NULL;
	config_diags_free(&diags);
	sdnotify_send("READY=1");
	return reason;
}

static void daemon_cmd_reload(struct control_request *req, int argc, char **argv, void *arg)
{
	char *reason, *body;

	(void)argc;
	(void)argv;
	reason = daemon_reload(arg);
	if (!reason) {
		control_reply(req, true, "configuration reloaded\n");
		return;
	}
	if (asprintf(&body, "reload refused: %s\n", reason) < 0)
		body = NULL;
	control_reply(req, false, body ? body : "reload refused\n");
	free(body);
	free(reason);
}

/* ---- metrics and health checks, gathered at scrape time ---- */

static void daemon_declare_metrics(struct metrics_writer *w)
{
	static const struct {
		const char *name;
		enum metrics_type type;
		const char *help;
	} families[] = {
		{ "strait_up", METRICS_GAUGE, "1 while straitd serves" },
		{ "strait_build_info", METRICS_GAUGE, "straitd's version, as a label (value 1)" },
		{ "strait_start_time_seconds", METRICS_GAUGE, "when straitd started (Unix time)" },
		{ "strait_site_role", METRICS_GAUGE,
		  "1 for this site's current role (primary, replica, fenced), else 0" },
		{ "strait_site_epoch", METRICS_GAUGE, "this site's cluster epoch" },
		{ "strait_config_reloads_total", METRICS_COUNTER, "configuration reloads that took" },
		{ "strait_config_reload_failures_total", METRICS_COUNTER,
		  "configuration reloads refused" },
		{ "strait_stream_info", METRICS_GAUGE,
		  "1 per stream this site sends (role source) or receives (role sink), with its peer" },
		{ "strait_stream_state", METRICS_GAUGE, "1 for the stream's current state, else 0" },
		{ "strait_stream_lag_bytes", METRICS_GAUGE,
		  "WAL bytes published at the source and not yet applied at the sink "
		  "(0 when nothing is pending)" },
		{ "strait_stream_lag_seconds", METRICS_GAUGE,
		  "age of the oldest commit not yet applied at the sink (0 when caught up)" },
		{ "strait_stream_applied_lsn", METRICS_GAUGE,
		  "last source LSN applied and committed at the sink, as this site knows it" },
		{ "strait_stream_batches_total", METRICS_COUNTER,
		  "batches sent (source) or received (sink)" },
		{ "strait_stream_bytes_raw_total", METRICS_COUNTER,
		  "batch bytes sent before compression" },
		{ "strait_stream_bytes_compressed_total", METRICS_COUNTER,
		  "batch bytes sent after compression" },
		{ "strait_spool_bytes", METRICS_GAUGE, "bytes in the stream's spool (source side)" },
		{ "strait_spool_max_bytes", METRICS_GAUGE, "the stream's spool cap (0: no spool)" },
		{ "strait_spool_records", METRICS_GAUGE, "records (batches) in the stream's spool" },
		{ "strait_spool_oldest_record_age_seconds", METRICS_GAUGE,
		  "age of the oldest record in the stream's spool (0: empty)" },
		{ "strait_stream_held", METRICS_GAUGE,
		  "1 while the schedule holds the stream (rate 0, or outside its batch windows)" },
		{ "strait_stream_rate_limit_bytes_per_second", METRICS_GAUGE,
		  "the rate the schedule allows now (+Inf: unlimited, 0: held)" },
		{ "strait_stream_schedule_rule", METRICS_GAUGE,
		  "index of the schedule rule in force (-1: none matches)" },
		{ "strait_slot_retained_bytes", METRICS_GAUGE,
		  "WAL the stream's slot holds back on the source (pg_current_wal_lsn - restart_lsn)" },
		{ "strait_disk_warning_level", METRICS_GAUGE,
		  "worst disk warning for the stream: 0 none, 1 warning, 2 critical (slot WAL, pg_wal, spool disk)" },
		{ "strait_stream_wan_bytes_total", METRICS_COUNTER,
		  "estimated bytes the stream's batches cost on the WAN (what the rate limit counts)" },
		{ "strait_verify_last_run_seconds", METRICS_GAUGE,
		  "when the stream's last verify ended (Unix time)" },
		{ "strait_verify_last_result", METRICS_GAUGE,
		  "the stream's last verify: 1 equal, 0 different, -1 could not compare" },
		{ "strait_verify_last_differences", METRICS_GAUGE,
		  "keys missing, extra or changed at the target in the stream's last verify" },
		{ "strait_verify_last_rows", METRICS_GAUGE, "source rows compared by the stream's last verify" },
		{ "strait_verify_last_duration_seconds", METRICS_GAUGE, "how long the stream's last verify took" },
		{ "strait_relay_up", METRICS_GAUGE, "1 while the relay link to the peer site is up" },
		{ "strait_relay_connects_total", METRICS_COUNTER, "times the relay link came up" },
		{ "strait_relay_connect_failures_total", METRICS_COUNTER,
		  "relay connections closed before coming up, or refused" },
		{ "strait_relay_bytes_sent_total", METRICS_COUNTER,
		  "frame bytes sent to the peer site (before TLS)" },
		{ "strait_relay_bytes_received_total", METRICS_COUNTER,
		  "frame bytes received from the peer site (after TLS)" },
		{ "strait_relay_frames_sent_total", METRICS_COUNTER, "frames sent to the peer site" },
		{ "strait_relay_frames_received_total", METRICS_COUNTER,
		  "frames received from the peer site" },
		{ "strait_relay_output_pending_bytes", METRICS_GAUGE,
		  "frame bytes queued to the peer site and not yet sent" },
		{ "strait_peer_epoch", METRICS_GAUGE, "the epoch the peer site last sent" },
		{ "strait_tunnel_last_handshake_seconds", METRICS_GAUGE,
		  "Unix time of the latest WireGuard handshake with the peer site (0: never)" },
	};

	for (size_t i = 0; i < sizeof(families) / sizeof(families[0]); i++)
		metrics_declare(w, families[i].name, families[i].type, families[i].help);
}

static void daemon_collect_stream(void *arg, const struct stream_report *r)
{
	struct metrics_writer *w = arg;

	metrics_value(w, "strait_stream_info", 1, "stream", r->name,
		      "role", r->sink ? "sink" : "source", "peer", r->peer, NULL);
	for (size_t i = 0; i < sizeof(daemon_stream_states) / sizeof(daemon_stream_states[0]); i++)
		metrics_value(w, "strait_stream_state", strcmp(r->state, daemon_stream_states[i]) == 0,
			      "stream", r->name, "state", daemon_stream_states[i], NULL);
	metrics_value(w, "strait_stream_lag_bytes", (double)r->lag_bytes, "stream", r->name, NULL);
	metrics_value(w, "strait_stream_lag_seconds", r->lag_seconds, "stream", r->name, NULL);
	metrics_value(w, "strait_stream_applied_lsn", (double)r->applied_lsn, "stream", r->name,
		      NULL);
	metrics_value(w, "strait_stream_batches_total", (double)r->batches, "stream", r->name,
		      NULL);
	if (r->sink)
		return;
	metrics_value(w, "strait_stream_bytes_raw_total", (double)r->bytes_raw, "stream", r->name,
		      NULL);
	metrics_value(w, "strait_stream_bytes_compressed_total", (double)r->bytes_compressed,
		      "stream", r->name, NULL);
	metrics_value(w, "strait_spool_bytes", (double)r->spool_bytes, "stream", r->name, NULL);
	metrics_value(w, "strait_spool_max_bytes", (double)r->spool_max_bytes, "stream", r->name,
		      NULL);
	metrics_value(w, "strait_spool_records", (double)r->spool_records, "stream", r->name, NULL);
	metrics_value(w, "strait_spool_oldest_record_age_seconds", r->spool_oldest_age, "stream",
		      r->name, NULL);
	metrics_value(w, "strait_stream_held", r->held, "stream", r->name, NULL);
	metrics_value(w, "strait_stream_rate_limit_bytes_per_second",
		      r->rate_unlimited ? INFINITY : (double)r->rate, "stream", r->name, NULL);
	metrics_value(w, "strait_stream_schedule_rule", r->rule, "stream", r->name, NULL);
	if (r->slot_retained_bytes >= 0)
		metrics_value(w, "strait_slot_retained_bytes", (double)r->slot_retained_bytes, "stream",
			      r->name, NULL);
	metrics_value(w, "strait_disk_warning_level", r->warning_level, "stream", r->name, NULL);
	metrics_value(w, "strait_stream_wan_bytes_total", (double)r->bytes_wan, "stream", r->name,
		      NULL);
}

/*
 * The latest handshake per peer site, read from the tunnel's status (the
 * tunnel has no other accessor): each peer is an object that starts with its
 * "site" and has a "last_handshake" (Unix time or null).
 */
static void daemon_collect_tunnel(const struct daemon *d, struct metrics_writer *w)
{
	static const char site_key[] = "{\"site\":\"", hs_key[] = "\"last_handshake\":";
	struct json_out j;
	char *doc, *p;

	json_init(&j);
	json_object_begin(&j, NULL);
	tunnel_status_json(d->tunnel, &j);
	json_object_end(&j);
	doc = json_finish(&j, NULL);
	if (!doc)
		return;
	for (p = strstr(doc, site_key); p; p = strstr(p, site_key)) {
		char *name = p + sizeof(site_key) - 1, *end = strchr(name, '"'), *hs, *next;

		if (!end)
			break;
		*end = '\0';
		p = end + 1;
		hs = strstr(p, hs_key);
		next = strstr(p, site_key);
		if (!hs || (next && hs > next))
			continue;
		metrics_value(w, "strait_tunnel_last_handshake_seconds",
			      strtod(hs + sizeof(hs_key) - 1, NULL), "peer", name, NULL);
	}
	free(doc);
}

static void daemon_collect_verify(void *arg, const struct verify_service_last *l)
{
	struct metrics_writer *w = arg;

	metrics_value(w, "strait_verify_last_run_seconds", l->finished, "stream", l->stream, NULL);
	metrics_value(w, "strait_verify_last_result", !l->ok ? -1 : l->equal ? 1 : 0, "stream",
		      l->stream, NULL);
	metrics_value(w, "strait_verify_last_differences", (double)l->differences, "stream", l->stream,
		      NULL);
	metrics_value(w, "strait_verify_last_rows", (double)l->rows, "stream", l->stream, NULL);
	metrics_value(w, "strait_verify_last_duration_seconds", l->seconds, "stream", l->stream, NULL);
}

static void daemon_collect(void *arg, struct metrics_writer *w)
{
	struct daemon *d = arg;
	enum role_kind role = role_current(d->role);

	daemon_declare_metrics(w);
	metrics_value(w, "strait_up", 1, NULL);
	metrics_value(w, "strait_build_info", 1, "version", STRAIT_VERSION, NULL);
	metrics_value(w, "strait_start_time_seconds", (double)d->started_at, NULL);
	for (enum role_kind r = ROLE_PRIMARY; r <= ROLE_FENCED; r++)
		metrics_value(w, "strait_site_role", r == role, "role", role_name(r), NULL);
	metrics_value(w, "strait_site_epoch", (double)role_epoch(d->role), NULL);
	metrics_value(w, "strait_config_reloads_total", d->reloads, NULL);
	metrics_value(w, "strait_config_reload_failures_total", d->failed_reloads, NULL);
	if (d->streams)
		streams_report(d->streams, daemon_now_us(), daemon_collect_stream, w);
	if (d->verify)
		verify_service_each(d->verify, daemon_collect_verify, w);
	for (size_t i = 0; d->relay && i < d->cfg->n_sites; i++) {
		const char *peer = d->cfg->sites[i].name;
		const struct daemon_peer *p = daemon_find_peer(d, peer);
		struct relay_stats st;

		if (i == d->self || !relay_peer_stats(d->relay, peer, &st))
			continue;
		metrics_value(w, "strait_relay_up", st.up, "peer", peer, NULL);
		metrics_value(w, "strait_relay_connects_total", (double)st.connects, "peer", peer, NULL);
		metrics_value(w, "strait_relay_connect_failures_total", (double)st.failures,
			      "peer", peer, NULL);
		metrics_value(w, "strait_relay_bytes_sent_total", (double)st.bytes_sent,
			      "peer", peer, NULL);
		metrics_value(w, "strait_relay_bytes_received_total", (double)st.bytes_received,
			      "peer", peer, NULL);
		metrics_value(w, "strait_relay_frames_sent_total", (double)st.frames_sent,
			      "peer", peer, NULL);
		metrics_value(w, "strait_relay_frames_received_total", (double)st.frames_received,
			      "peer", peer, NULL);
		metrics_value(w, "strait_relay_output_pending_bytes", (double)st.output_pending,
			      "peer", peer, NULL);
		if (p)
			metrics_value(w, "strait_peer_epoch", (double)p->epoch, "peer", peer, NULL);
	}
	if (d->tunnel)
		daemon_collect_tunnel(d, w);
}

static void daemon_health_stream(void *arg, const struct stream_report *r)
{
	struct metrics_health *h = arg;

	if (!r->sink)
		return;
	h->streams_in++;
	if (strcmp(r->state, "error") == 0 || strcmp(r->state, "stopped") == 0)
		h->streams_in_stopped++;
	if (r->lag_bytes > h->lag_bytes)
		h->lag_bytes = r->lag_bytes;
	if (r->lag_seconds > h->lag_seconds)
		h->lag_seconds = r->lag_seconds;
}

static void daemon_health(void *arg, struct metrics_health *h)
{
	struct daemon *d = arg;

	h->site = d->site_name;
	h->role = daemon_site_role(d);
	h->epoch = role_epoch(d->role);
	h->working = role_persisted(d->role);
	if (!h->working)
		h->not_working = "the role state could not be written (see the log)";
	if (d->streams)
		streams_report(d->streams, daemon_now_us(), daemon_health_stream, h);
}

static const struct metrics_callbacks daemon_metrics_callbacks = {
	.collect = daemon_collect,
	.health = daemon_health,
};

static void daemon_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct daemon *d = arg;

	(void)what;
	if (sig == SIGHUP) {
		free(daemon_reload(d));
		return;
	}
	log_info("received %s, shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
	sdnotify_send("STOPPING=1");
	event_base_loopexit(d->base, NULL);
}

static bool daemon_start(struct daemon *d, const struct daemon_options *opts)
{
	static const int sigs[] = { SIGHUP, SIGTERM, SIGINT };
	struct config_diags diags = { 0 };
	char err[512];
	int self;

	d->cfg = config_load_file(opts->config_path, &diags);
	if (!d->cfg) {
		daemon_log_diags(&diags);
		log_error("could not load configuration \"%s\"", opts->config_path);
		config_diags_free(&diags);
		return false;
	}
	config_diags_free(&diags);

	self = identity_resolve(d->cfg, opts->site, err, sizeof(err));
	if (self < 0) {
		log_error("could not work out this host's site: %s", err);
		return false;
	}
	d->self = (size_t)self;
	d->site_name = strdup(d->cfg->sites[self].name);
	d->keep_tunnel = opts->keep_tunnel;
	d->started_at = d->loaded_at = time(NULL);
	if (!d->site_name)
		return false;
	log_info("starting as site \"%s\" of cluster \"%s\"", d->site_name, d->cfg->cluster);

	if (!daemon_make_state_dir(d->cfg->state_dir))
		return false;
	d->role = role_load(d->cfg->state_dir, d->cfg->cluster, d->site_name,
			    d->cfg->sites[self].role);
	if (!d->role)
		return false;

	d->base = event_base_new();
	if (!d->base) {
		log_error("could not create event loop");
		return false;
	}
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
		d->signals[i] = evsignal_new(d->base, sigs[i], daemon_signal_cb, d);
		if (!d->signals[i] || event_add(d->signals[i], NULL) < 0) {
			log_error("could not install signal handler");
			return false;
		}
	}

	d->tunnel = tunnel_start(d->base, d->cfg, d->self, d->keep_tunnel);
	if (!d->tunnel)
		return false;

	if (d->cfg->n_sites > 1) {
		d->relay = relay_new(d->base, d->cfg, d->site_name, &daemon_relay_callbacks, d);
		if (!d->relay)
			return false;
		relay_set_epoch(d->relay, role_epoch(d->role));
		d->streams = streams_new_role(d->base, d->cfg, d->self, d->relay,
					      role_current(d->role));
		if (!d->streams)
			return false;
		d->verify = verify_service_new(d->base, d->cfg);
		if (!d->verify)
			return false;
		verify_service_set_streams(d->verify, d->streams);
		d->failover = failover_new(d->base, d->cfg, d->self, d->relay, d->role,
					   &daemon_failover_ops, d);
		if (!d->failover)
			return false;
		if (role_current(d->role) == ROLE_FENCED)
			failover_stepped_down(d->failover, NULL);
	}

	d->control = control_listen_group(d->base, d->cfg->control.socket,
			d->cfg->control.group, daemon_commands, d);
	if (!d->control)
		return false;
	if (d->cfg->metrics.listen && *d->cfg->metrics.listen) {
		d->metrics = metrics_start(d->base, d->cfg->metrics.listen,
					   &daemon_metrics_callbacks, d);
		if (!d->metrics)
			return false;
	}
	return true;
}

static void daemon_teardown(struct daemon *d)
{
	metrics_stop(d->metrics);
	failover_free(d->failover);   /* answers a command still running */
	verify_service_free(d->verify);   /* cancels a verify, answering its command */
	control_close(d->control);
	streams_free(d->streams);
	relay_free(d->relay);
	tunnel_stop(d->tunnel);
	for (size_t i = 0; i < sizeof(d->signals) / sizeof(d->signals[0]); i++) {
		if (d->signals[i])
			event_free(d->signals[i]);
	}
	if (d->base)
		event_base_free(d->base);
	config_free(d->cfg);
	role_free(d->role);
	for (size_t i = 0; i < d->n_peers; i++)
		free(d->peers[i].name);
	free(d->peers);
	free(d->site_name);
	free(d->reload_error);
}

int daemon_run(const struct daemon_options *opts)
{
	struct daemon d = { 0 };
	int code = 1;

	signal(SIGPIPE, SIG_IGN);
#ifdef STRAIT_TEST_HOOKS
	/* test builds: start the scheduler's clock at a given Unix time */
	if (getenv("STRAIT_TEST_CLOCK"))
		clock_set_test(strtoll(getenv("STRAIT_TEST_CLOCK"), NULL, 10) * 1000000);
#endif
	if (!daemon_start(&d, opts))
		goto out;
	sdnotify_send("READY=1\nSTATUS=serving");
	log_info("straitd %s ready", STRAIT_VERSION);
	if (event_base_dispatch(d.base) < 0) {
		log_error("event loop failed");
		goto out;
	}
	code = 0;
	log_info("stopped");
out:
	daemon_teardown(&d);
	return code;
}
