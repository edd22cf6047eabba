/*
 * remote.c — the commands that reach other sites over the relay link
 * (forward.h): `switchover` typed at a site that is not the primary runs at
 * the primary, and `status --cluster` gathers every site's status into one
 * document.
 *
 * Which site is primary: the one this site's role state names, else the
 * peer whose last HEARTBEAT claimed it at the highest epoch.
 */
#include "gateway/daemon/daemon_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/json_value.h"
#include "common/log.h"
#include "common/lsn.h"
#include "config/config.h"
#include "gateway/cluster/failover.h"
#include "gateway/cluster/role.h"
#include "gateway/daemon/control.h"
#include "gateway/daemon/forward.h"
#include "gateway/relay/relay.h"
#include "gateway/relay/relay_proto.h"

/* A switchover drains for up to 60 s and waits up to 60 s for the promotion. */
#define REMOTE_SWITCHOVER_MS 180000
#define REMOTE_STATUS_MS 5000

/* The primary as this site knows it, other than itself; NULL when none is known. */
static const char *remote_primary(const struct daemon *d)
{
	const char *named = role_primary(d->role);
	const struct daemon_peer *best = NULL;

	if (named[0] && strcmp(named, d->site_name) != 0)
		return named;
	for (size_t i = 0; i < d->n_peers; i++) {
		const struct daemon_peer *p = &d->peers[i];

		if (p->role == RELAY_ROLE_PRIMARY && (!best || p->epoch > best->epoch))
			best = p;
	}
	return best ? best->name : NULL;
}

struct remote_switchover {
	struct control_request *req;
	char primary[64];
};

static void remote_switchover_done(void *arg, const char *peer, bool answered, bool ok,
		const char *body)
{
	struct remote_switchover *rs = arg;
	char *text = NULL;

	if (!answered) {
		if (asprintf(&text, "could not run the switchover at site %s (the primary): %s", peer,
			     body) < 0)
			text = NULL;
		control_reply(rs->req, false, text ? text : "out of memory\n");
	} else {
		if (asprintf(&text, "site %s (the primary) answers:\n%s", peer, body) < 0)
			text = NULL;
		control_reply(rs->req, ok, text ? text : "out of memory\n");
	}
	free(text);
	free(rs);
}

bool daemon_forward_switchover(struct daemon *d, struct control_request *req, int argc,
		char **argv)
{
	const char *primary;
	struct remote_switchover *rs;

	/* a command a peer forwarded is never forwarded again */
	if (role_current(d->role) == ROLE_PRIMARY || !d->forward || control_request_remote(req) ||
	    !(primary = remote_primary(d)) || !relay_is_up(d->relay, primary))
		return false;
	rs = calloc(1, sizeof(*rs));
	if (!rs) {
		control_reply(req, false, "out of memory\n");
		return true;
	}
	rs->req = req;
	snprintf(rs->primary, sizeof(rs->primary), "%s", primary);
	log_info("switchover asked here: run at site \"%s\", the primary", primary);
	forward_call(d->forward, rs->primary, argc, argv, REMOTE_SWITCHOVER_MS,
		     remote_switchover_done, rs);
	return true;
}

/* ------------------------------------------------------ status --cluster */

struct cluster_site {
	const char *name;            /* the config's */
	bool reachable;
	char *status;                /* the site's status document, or NULL */
	char *error;                 /* why it is missing, or NULL */
};

struct cluster_gather {
	struct daemon *d;
	struct control_request *req;
	size_t waiting;
	struct cluster_site *sites;  /* one per configured site, in the config's order */
};

static void cluster_reply(struct cluster_gather *g)
{
	struct daemon *d = g->d;
	struct json_out j;
	char *doc;

	json_init(&j);
	json_object_begin(&j, NULL);
	json_string(&j, "cluster", d->cfg->cluster);
	json_string(&j, "asked_at", d->site_name);
	json_array_begin(&j, "sites");
	for (size_t i = 0; i < d->cfg->n_sites; i++) {
		const struct cluster_site *s = &g->sites[i];

		json_object_begin(&j, NULL);
		json_string(&j, "site", s->name);
		json_bool(&j, "reachable", s->reachable);
		json_string(&j, "error", s->error);
		if (s->status)
			json_raw(&j, "status", s->status);
		else
			json_null(&j, "status");
		json_object_end(&j);
	}
	json_array_end(&j);
	json_object_end(&j);
	doc = json_finish_line(&j, NULL);
	control_reply(g->req, doc != NULL, doc ? doc : "could not render the cluster's status\n");
	free(doc);
	for (size_t i = 0; i < d->cfg->n_sites; i++) {
		free(g->sites[i].status);
		free(g->sites[i].error);
	}
	free(g->sites);
	free(g);
}

static void cluster_site_done(void *arg, const char *peer, bool answered, bool ok,
		const char *body)
{
	struct cluster_gather *g = arg;

	for (size_t i = 0; i < g->d->cfg->n_sites; i++) {
		struct cluster_site *s = &g->sites[i];
		size_t n;

		if (strcmp(s->name, peer) != 0)
			continue;
		s->reachable = answered;
		if (answered && ok && body[0] == '{') {
			s->status = strdup(body);
		} else {
			s->error = strdup(body);
			n = s->error ? strlen(s->error) : 0;
			if (n && s->error[n - 1] == '\n')
				s->error[n - 1] = '\0';
		}
	}
	if (--g->waiting == 0)
		cluster_reply(g);
}

void daemon_status_cluster(struct daemon *d, struct control_request *req)
{
	static char *const ask[] = { "status", "--json" };
	struct cluster_gather *g = calloc(1, sizeof(*g));
	struct json_out j;

	if (!g || !(g->sites = calloc(d->cfg->n_sites, sizeof(*g->sites)))) {
		free(g);
		control_reply(req, false, "out of memory\n");
		return;
	}
	g->d = d;
	g->req = req;
	/* one more than the peers: this site's own part is the last to end */
	g->waiting = 1;
	for (size_t i = 0; i < d->cfg->n_sites; i++) {
		g->sites[i].name = d->cfg->sites[i].name;
		if (config_site_is_witness(&d->cfg->sites[i]))
			g->sites[i].error = strdup("a witness: etcd speaks for it (see \"witness\")");
		else if (i != d->self && d->forward)
			g->waiting++;
	}
	for (size_t i = 0; i < d->cfg->n_sites; i++)
		if (i != d->self && d->forward && !config_site_is_witness(&d->cfg->sites[i]))
			forward_call(d->forward, d->cfg->sites[i].name, 2, ask, REMOTE_STATUS_MS,
				     cluster_site_done, g);
	json_init(&j);
	daemon_status_json(d, &j);
	g->sites[d->self].status = json_finish_line(&j, NULL);
	g->sites[d->self].reachable = true;
	if (--g->waiting == 0)
		cluster_reply(g);
}

/* ---------------------------------------------- failover --dry-run, N sites */

struct position_gather {
	struct daemon *d;
	struct control_request *req;
	int argc;
	char **argv;                 /* the request's own words */
	char old[64];                /* the primary a failover would take over from */
	size_t waiting;
	struct failover_position v[FAILOVER_MAX_POSITIONS];
	size_t n;
};

static void position_finish(struct position_gather *g)
{
	failover_set_positions(g->d->failover, g->v, g->n);
	failover_cmd_failover(g->d->failover, g->req, g->argc, g->argv);
	free(g);
}

/* The lowest applied LSN of the streams a sibling's `lag --json` says it receives from old. */
static bool position_of(const char *body, const char *old, uint64_t *lsn)
{
	char err[128];
	struct json_value *doc = json_parse(body, err, sizeof(err));
	const struct json_value *lag = json_get(doc, "lag");
	bool found = false;

	for (size_t i = 0; i < json_len(lag); i++) {
		const struct json_value *r = json_at(lag, i);
		const char *role = json_get_string(r, "role"), *peer = json_get_string(r, "peer"),
			   *text = json_get_string(r, "applied_lsn");
		uint64_t v;

		if (!role || !peer || !text || strcmp(role, "sink") != 0 || strcmp(peer, old) != 0 ||
		    !lsn_parse(text, &v))
			continue;
		if (!found || v < *lsn)
			*lsn = v;
		found = true;
	}
	json_value_free(doc);
	return found;
}

static void position_done(void *arg, const char *peer, bool answered, bool ok, const char *body)
{
	struct position_gather *g = arg;

	for (size_t i = 0; i < g->n; i++) {
		struct failover_position *p = &g->v[i];
		size_t n;

		if (strcmp(p->site, peer) != 0)
			continue;
		p->known = answered && ok && position_of(body, g->old, &p->applied_lsn);
		if (!p->known) {
			snprintf(p->why, sizeof(p->why), "%s", answered && ok ?
				 "it receives no stream from the old primary" : body);
			n = strlen(p->why);
			if (n && p->why[n - 1] == '\n')
				p->why[n - 1] = '\0';
		}
	}
	if (--g->waiting == 0)
		position_finish(g);
}

bool daemon_dry_run_positions(struct daemon *d, struct control_request *req, int argc,
		char **argv)
{
	static char *const ask[] = { "lag", "--json" };
	struct position_gather *g;
	const char *old;
	bool dry = false;

	for (int i = 1; i < argc; i++)
		dry = dry || strcmp(argv[i], "--dry-run") == 0;
	if (!dry || !d->failover || !d->forward || control_request_remote(req) ||
	    !(old = failover_old_primary(d->failover)) || !(g = calloc(1, sizeof(*g))))
		return false;
	*g = (struct position_gather){ .d = d, .req = req, .argc = argc, .argv = argv };
	snprintf(g->old, sizeof(g->old), "%s", old);
	/* the other ends of this site's streams of more than two sites */
	for (size_t s = 0; s < d->cfg->n_sites && g->n < FAILOVER_MAX_POSITIONS; s++) {
		bool sibling = false;

		for (size_t i = 0; i < d->cfg->n_streams; i++) {
			const struct config_stream *cs = &d->cfg->streams[i];

			sibling = sibling || (cs->n_to > 1 && config_stream_end(cs, d->self) &&
					      config_stream_end(cs, s));
		}
		if (sibling && s != d->self && strcmp(d->cfg->sites[s].name, g->old) != 0)
			snprintf(g->v[g->n++].site, sizeof(g->v[0].site), "%s", d->cfg->sites[s].name);
	}
	if (!g->n) {
		free(g);
		return false;
	}
	g->waiting = g->n + 1;
	for (size_t i = 0; i < g->n; i++)
		forward_call(d->forward, g->v[i].site, 2, ask, REMOTE_STATUS_MS, position_done, g);
	if (--g->waiting == 0)
		position_finish(g);
	return true;
}
