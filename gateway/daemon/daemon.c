/*
 * daemon.c — straitd's life cycle (see daemon.h): start, reload, signals,
 * stop.
 *
 * CONTRACT
 * daemon_run() loads the config, works out the site, loads its role, brings
 * up the tunnel, the relay, the streams, the verify service, the failover,
 * the control socket and the metrics, then runs the event loop until SIGTERM
 * or SIGINT, and tears everything down in reverse. SIGHUP and the reload
 * command call daemon_reload().
 *
 * NOTES
 * A reload parses the new file into a fresh config, validates it, checks that
 * it changes nothing a reload cannot change, applies it to the tunnel and only
 * then swaps it in: a typo never takes a running site down. The result of the
 * last reload shows in status, so an operator who sent SIGHUP can see whether
 * it took.
 *
 * The site's role and epoch live in role.c; relay_dispatch.c stamps the epoch
 * on the relay, checks the epoch of every frame it is handed (a higher one
 * makes this site step down) and remembers what each peer last said about
 * itself. Metrics and health checks are gathered at scrape time from the
 * modules' own accessors (collect.c; metrics.h knows nothing of them).
 */
#include "gateway/daemon/daemon.h"
#include "gateway/daemon/daemon_int.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/log.h"
#include "config/config.h"
#include "gateway/cluster/failover.h"
#include "gateway/cluster/role.h"
#include "gateway/daemon/control.h"
#include "gateway/daemon/forward.h"
#include "gateway/daemon/hooks.h"
#include "gateway/daemon/identity.h"
#include "gateway/daemon/metrics.h"
#include "gateway/daemon/sdnotify.h"
#include "gateway/relay/relay.h"
#include "gateway/stream/clock.h"
#include "gateway/stream/stream.h"
#include "gateway/verify/verify_service.h"
#include "gateway/witness/witness.h"
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

/* Returns NULL when the reload took, else why not (caller frees). */
char *daemon_reload(struct daemon *d)
{
	struct config_diags diags = { 0 };
	struct strait_config *next;
	char *reason = NULL;
	bool rebuild;
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
	rebuild = !config_routes_equal(d->cfg, next);
	if (d->streams)
		streams_reconfigure(d->streams, next);
	if (d->verify)
		verify_service_reconfigure(d->verify, next);
	if (d->failover)
		failover_reconfigure(d->failover, next);
	witness_reconfigure(d->witness, next);
	config_free(d->cfg);
	d->cfg = next;
	d->self = (size_t)self;
	d->loaded_at = time(NULL);
	log_info("configuration reloaded");
	if (rebuild && d->role) {
		/* a stream or destination came or went: every stream is set up anew */
		log_notice("the streams or their destinations changed: the streams start again");
		daemon_rebuild_streams(d);
	}
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
const char *daemon_config_primary(const struct strait_config *cfg)
{
	for (size_t i = 0; i < cfg->n_sites; i++)
		if (cfg->sites[i].role && strcmp(cfg->sites[i].role, "primary") == 0)
			return cfg->sites[i].name;
	return NULL;
}

size_t daemon_primary_site(const struct daemon *d)
{
	const char *name = role_primary(d->role);

	for (size_t i = 0; name[0] && i < d->cfg->n_sites; i++)
		if (strcmp(d->cfg->sites[i].name, name) == 0)
			return i;
	return CONFIG_SITE_NONE;
}


/* How often a fenced site that knows no primary asks its peers. */
#define DAEMON_LOST_ASK_S 5

static void daemon_lost_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	daemon_lost_tick(arg);
}

/* hooks.on_role_change, with the new role, this site and the epoch. */
static void daemon_role_changed(void *arg, enum role_kind role, uint64_t epoch)
{
	struct daemon *d = arg;

	hooks_role_change(d->hooks, d->cfg->hooks.on_role_change, role_name(role), d->site_name,
			  epoch);
	witness_role_changed(d->witness);
}

/* A witness site: the tunnel (etcd's members talk over it), status and the pause commands. */
static bool daemon_start_witness(struct daemon *d)
{
	log_info("site \"%s\" is a witness: no database, no stream; straitd keeps the tunnel "
		 "up and reports what etcd says", d->site_name);
	d->tunnel = tunnel_start(d->base, d->cfg, d->self, d->keep_tunnel);
	if (!d->tunnel)
		return false;
	if (d->cfg->failover.n_etcd && !(d->witness = witness_new(d->base, d->cfg, d->self, NULL,
								    NULL)))
		return false;
	d->control = control_listen_group(d->base, d->cfg->control.socket,
			d->cfg->control.group, daemon_witness_commands, d);
	return d->control != NULL;
}

/* The role file; a site whose file was lost starts fenced (lost.c). */
static bool daemon_load_role(struct daemon *d, size_t self)
{
	bool lost = daemon_state_lost(d->cfg, self);

	d->role = role_load(d->cfg->state_dir, d->cfg->cluster, d->site_name,
			    d->cfg->sites[self].role, daemon_config_primary(d->cfg));
	if (!d->role)
		return false;
	/* never the config's role on trust: a failover may have happened meanwhile */
	return !lost || role_set(d->role, ROLE_FENCED, role_epoch(d->role), NULL,
				 "state directory lost (no role file, but the database shows strait "
				 "ran here): fenced until the peers say who is primary");
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
	if (config_site_is_witness(&d->cfg->sites[self]))
		return daemon_start_witness(d);
	if (!daemon_load_role(d, (size_t)self))
		return false;

	if (!(d->hooks = hooks_new(d->base)))
		return false;
	role_on_change(d->role, daemon_role_changed, d);
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
					      role_current(d->role), daemon_primary_site(d));
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
		if (d->cfg->failover.mode == CONFIG_FAILOVER_AUTOMATIC &&
		    !(d->witness = witness_new(d->base, d->cfg, d->self, d->role, d->failover)))
			return false;
		d->forward = forward_new(d->base, d->relay, daemon_commands, d);
		if (!d->forward)
			return false;
		d->lost_timer = event_new(d->base, -1, EV_PERSIST, daemon_lost_cb, d);
		if (!d->lost_timer ||
		    event_add(d->lost_timer, &(struct timeval){ DAEMON_LOST_ASK_S, 0 }) < 0)
			return false;
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
	if (d->lost_timer)
		event_free(d->lost_timer);
	forward_free(d->forward);     /* calls to peers end: their commands are answered */
	failover_free(d->failover);   /* answers a command still running (an automatic one too) */
	witness_free(d->witness);
	verify_service_free(d->verify);   /* cancels a verify, answering its command */
	daemon_forget_free(d);
	control_close(d->control);
	streams_free(d->streams);
	relay_free(d->relay);
	tunnel_stop(d->tunnel);
	for (size_t i = 0; i < sizeof(d->signals) / sizeof(d->signals[0]); i++) {
		if (d->signals[i])
			event_free(d->signals[i]);
	}
	if (d->role)
		role_on_change(d->role, NULL, NULL);
	hooks_free(d->hooks);
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
