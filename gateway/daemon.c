/*
 * daemon.c — straitd's life cycle (see daemon.h).
 *
 * NOTES
 * A reload parses the new file into a fresh config, validates it, checks that
 * it changes nothing a reload cannot change, applies it to the tunnel and only
 * then swaps it in: a typo never takes a running site down. The result of the
 * last reload shows in status, so an operator who sent SIGHUP can see whether
 * it took.
 */
#include "gateway/daemon.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "config/config.h"
#include "gateway/control.h"
#include "gateway/identity.h"
#include "gateway/json.h"
#include "gateway/log.h"
#include "gateway/relay.h"
#include "gateway/sdnotify.h"
#include "gateway/stream.h"
#include "tunnel/tunnel.h"

struct daemon {
	struct event_base *base;
	struct strait_config *cfg;
	size_t self;
	char *site_name;
	bool keep_tunnel;
	struct tunnel *tunnel;
	struct relay *relay;
	struct streams *streams;
	struct control_server *control;
	struct event *signals[3];
	time_t started_at;
	time_t loaded_at;
	unsigned reloads;
	unsigned failed_reloads;
	char *reload_error;          /* why the last reload was refused, or NULL */
};

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

static const char *daemon_site_role(const struct daemon *d)
{
	return d->cfg->sites[d->self].role;
}

static void daemon_status_json(struct daemon *d, struct json_out *j)
{
	const struct strait_config *cfg = d->cfg;
	time_t now = time(NULL);

	json_object_begin(j, NULL);
	json_string(j, "cluster", cfg->cluster);
	json_string(j, "site", d->site_name);
	json_string(j, "role", daemon_site_role(d));
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
		json_object_begin(j, NULL);
		json_string(j, "name", s->name);
		json_string(j, "role", s->role);
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

	if (d->streams)
		streams_status_json(d->streams, j);
	if (d->relay)
		relay_status_json(d->relay, j, "relay");
	if (d->tunnel)
		tunnel_status_json(d->tunnel, j);
	json_object_end(j);
}

/* ---- relay callbacks: the streams take what concerns them ---- */

static void daemon_relay_hello(void *arg, const char *peer, struct relay_proto_hello *hello)
{
	struct daemon *d = arg;

	if (d->streams)
		streams_hello(d->streams, peer, hello);
}

static void daemon_relay_heartbeat(void *arg, const char *peer, struct relay_proto_heartbeat *hb)
{
	struct daemon *d = arg;
	const char *role = daemon_site_role(d);

	(void)peer;
	hb->role = strcmp(role, "primary") == 0 ? RELAY_ROLE_PRIMARY : RELAY_ROLE_REPLICA;
}

static void daemon_relay_connected(void *arg, const char *peer, uint64_t epoch,
		const struct relay_proto_hello *hello)
{
	struct daemon *d = arg;

	(void)epoch;
	if (d->streams)
		streams_connected(d->streams, peer, hello);
}

static void daemon_relay_frame(void *arg, const char *peer, const struct frame *f)
{
	struct daemon *d = arg;

	if (d->streams)
		streams_frame(d->streams, peer, f);
}

static void daemon_relay_writable(void *arg, const char *peer)
{
	struct daemon *d = arg;

	if (d->streams)
		streams_writable(d->streams, peer);
}

static void daemon_relay_disconnected(void *arg, const char *peer, const char *reason)
{
	struct daemon *d = arg;

	(void)reason;
	if (d->streams)
		streams_disconnected(d->streams, peer);
}

static const struct relay_callbacks daemon_relay_callbacks = {
	.hello = daemon_relay_hello,
	.heartbeat = daemon_relay_heartbeat,
	.connected = daemon_relay_connected,
	.frame = daemon_relay_frame,
	.writable = daemon_relay_writable,
	.disconnected = daemon_relay_disconnected,
};

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
	doc = json_finish(&j, NULL);
	if (!doc) {
		control_reply(req, false, "could not render status\n");
		return;
	}
	if (as_json) {
		/* one document per line keeps the reply easy to stream */
		size_t n = strlen(doc);
		char *line = realloc(doc, n + 2);
		if (line) {
			doc = line;
			strcpy(doc + n, "\n");
		}
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

static void daemon_cmd_reload(struct control_request *req, int argc, char **argv, void *arg);

static const struct control_command daemon_commands[] = {
	{ "status", daemon_cmd_status },
	{ "ping", daemon_cmd_ping },
	{ "reload", daemon_cmd_reload },
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
		d->streams = streams_new(d->base, d->cfg, d->self, d->relay);
		if (!d->streams)
			return false;
	}

	d->control = control_listen(d->base, d->cfg->control.socket, daemon_commands, d);
	if (!d->control)
		return false;
	return true;
}

static void daemon_teardown(struct daemon *d)
{
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
	free(d->site_name);
	free(d->reload_error);
}

int daemon_run(const struct daemon_options *opts)
{
	struct daemon d = { 0 };
	int code = 1;

	signal(SIGPIPE, SIG_IGN);
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
