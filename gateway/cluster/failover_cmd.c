/*
 * failover_cmd.c — the switchover, failover and rejoin control commands:
 * their arguments, and the checks that refuse a command before anything is
 * done (unknown site, wrong role, wrong site to run it on, peer unreachable,
 * another operation in progress). A command that passes hands over to its
 * operation (fo_switch_start(), fo_failover_start(), fo_dry_run(),
 * fo_rejoin_start()), which answers it when it ends.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <event2/event.h>

#include "common/log.h"
#include "config/config.h"
#include "gateway/cluster/failover_int.h"
#include "gateway/daemon/control.h"
#include "gateway/relay/relay.h"

const char *fo_op_name(enum fo_op op)
{
	switch (op) {
	case FO_SWITCHOVER:
		return "switchover";
	case FO_PROMOTE:
		return "promotion";
	case FO_STEP_DOWN:
		return "step-down";
	case FO_REJOIN:
		return "rejoin";
	case FO_DRY_RUN:
		return "failover dry run";
	case FO_FOLLOW:
		return "change of primary";
	case FO_UNFENCE:
		return "unfencing";
	case FO_NONE:
		break;
	}
	return "operation";
}

static bool fo_busy(struct failover *f, struct control_request *req)
{
	char msg[256];

	if (f->op == FO_NONE)
		return false;
	snprintf(msg, sizeof(msg), "another %s is in progress\n", fo_op_name(f->op));
	control_reply(req, false, msg);
	return true;
}

void fo_refuse(struct control_request *req, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	size_t n;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg) - 1, fmt, ap);
	va_end(ap);
	n = strlen(msg);
	if (n == 0 || msg[n - 1] != '\n')
		strcat(msg, "\n");
	control_reply(req, false, msg);
}

/* Parses "--to SITE" and flags; false (answered) on bad usage. */
static bool fo_parse(struct control_request *req, int argc, char **argv, const char **to,
		bool *force, bool *dry_run, bool *json, const char *usage)
{
	*to = NULL;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--to") == 0 && i + 1 < argc) {
			*to = argv[++i];
		} else if (force && strcmp(argv[i], "--force") == 0) {
			*force = true;
		} else if (dry_run && strcmp(argv[i], "--dry-run") == 0) {
			*dry_run = true;
		} else if (json && strcmp(argv[i], "--json") == 0) {
			*json = true;
		} else {
			fo_refuse(req, "usage: %s", usage);
			return false;
		}
	}
	if (!*to || (json && *json && !(dry_run && *dry_run))) {
		fo_refuse(req, "usage: %s", usage);
		return false;
	}
	return true;
}

/*
 * Every replica of this site's streams is drained before the switchover, so
 * that each takes the new primary's streams where they start, with no copy:
 * all must be reachable, and the target must be one of them. False (answered)
 * otherwise.
 */
static bool fo_switch_all_reachable(struct failover *f, struct control_request *req,
		const char *to)
{
	size_t sites[FO_MAX_PEERS], n = fo_stream_peers(f, sites, FO_MAX_PEERS);
	bool target = false;

	for (size_t i = 0; i < n; i++) {
		const char *name = f->cfg->sites[sites[i]].name;

		target = target || strcmp(name, to) == 0;
		if (!relay_is_up(f->relay, name)) {
			fo_refuse(req, "site %s, a replica of this site's streams, is not reachable (the "
				  "relay link is down): a switchover brings every replica along; bring "
				  "it back first", name);
			return false;
		}
	}
	if (n && !target)
		fo_refuse(req, "site %s receives none of this site's streams: it cannot take them over",
			  to);
	return target || !n;
}

void failover_cmd_switchover(struct failover *f, struct control_request *req, int argc,
		char **argv)
{
	const char *to, *self = f->cfg->sites[f->self].name;
	int target;

	if (!fo_parse(req, argc, argv, &to, NULL, NULL, NULL, "switchover --to SITE") ||
	    fo_busy(f, req))
		return;
	target = fo_site_index(f, to);
	if (target < 0) {
		fo_refuse(req, "no site named %s", to);
		return;
	}
	if (role_current(f->role) != ROLE_PRIMARY) {
		fo_refuse(req, "site %s is %s, not the primary: run switchover on the primary", self,
			  role_name(role_current(f->role)));
		return;
	}
	if ((size_t)target == f->self) {
		fo_refuse(req, "site %s is the primary already", to);
		return;
	}
	if (!relay_is_up(f->relay, to)) {
		fo_refuse(req, "site %s is not reachable (the relay link is down): a switchover needs "
			  "both sites; see failover", to);
		return;
	}
	if (!fo_switch_all_reachable(f, req, to))
		return;
	fo_switch_start(f, req, to);
}

void failover_cmd_failover(struct failover *f, struct control_request *req, int argc,
		char **argv)
{
	const char *to, *self = f->cfg->sites[f->self].name, *old;
	bool force = false, dry_run = false, json = false;
	int target;

	if (!fo_parse(req, argc, argv, &to, &force, &dry_run, &json,
		      "failover --to SITE [--force] [--dry-run [--json]]") || fo_busy(f, req))
		return;
	target = fo_site_index(f, to);
	if (target < 0) {
		fo_refuse(req, "no site named %s", to);
		return;
	}
	if ((size_t)target != f->self) {
		fo_refuse(req, "run failover on the site that takes over: site %s, not this site (%s)",
			  to, self);
		return;
	}
	if (dry_run) {
		fo_dry_run(f, req, force, json);
		return;
	}
	if (role_current(f->role) == ROLE_PRIMARY) {
		fo_refuse(req, "site %s is the primary already", self);
		return;
	}
	if (role_current(f->role) == ROLE_FENCED) {
		fo_refuse(req, "site %s is fenced: it must rejoin as a replica first", self);
		return;
	}
	old = fo_old_primary(f);
	if (!old) {
		fo_refuse(req, "no other site in the configuration");
		return;
	}
	fo_failover_start(f, req, old, force);
}

void failover_cmd_rejoin(struct failover *f, struct control_request *req, int argc, char **argv)
{
	const char *self = f->cfg->sites[f->self].name;
	int peer;

	if (argc != 2) {
		fo_refuse(req, "usage: rejoin SITE");
		return;
	}
	/*
	 * A site turns fenced the moment it hears a higher epoch; fencing its
	 * database takes a moment more (longer when sessions are slow to end).
	 * The rejoin needs that step-down done: it waits for it instead of
	 * refusing what the status just invited.
	 */
	if (f->op == FO_STEP_DOWN) {
		if (f->rejoin_waiting) {
			fo_refuse(req, "another rejoin already waits for the step-down to end");
			return;
		}
		f->rejoin_waiting = req;
		snprintf(f->rejoin_site, sizeof(f->rejoin_site), "%s", argv[1]);
		log_info("rejoin: waiting for the step-down to fence this site's database first");
		return;
	}
	if (fo_busy(f, req))
		return;
	if (fo_site_index(f, argv[1]) < 0) {
		fo_refuse(req, "no site named %s", argv[1]);
		return;
	}
	if (strcmp(argv[1], self) != 0) {
		fo_refuse(req, "run rejoin on the fenced site itself: site %s, not this site (%s)",
			  argv[1], self);
		return;
	}
	if (role_current(f->role) != ROLE_FENCED) {
		fo_refuse(req, "site %s is %s, not fenced: only a fenced old primary rejoins", self,
			  role_name(role_current(f->role)));
		return;
	}
	if (!f->fence_from[0] || !relay_is_up(f->relay, f->fence_from)) {
		fo_refuse(req, "site %s has not heard from the primary yet (it tells what it applied "
			  "of this site's transactions): wait until its relay link is up", self);
		return;
	}
	peer = fo_site_index(f, f->fence_from);
	for (size_t i = 0; peer >= 0 && i < f->cfg->n_streams; i++) {
		const struct config_stream *cs = &f->cfg->streams[i];

		if (fo_stream_with(f, cs, (size_t)peer) && !cs->initial_sync) {
			fo_refuse(req, "stream %s has initial_sync: false: a rejoin re-seeds this site "
				  "through an initial sync; enable it (and reload) first", cs->name);
			return;
		}
	}
	fo_rejoin_start(f, req);
}

void fo_after_step_down(struct failover *f)
{
	if (f->rejoin_waiting)
		event_active(f->rejoin_ev, EV_TIMEOUT, 1);
}

void fo_rejoin_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct failover *f = arg;
	struct control_request *req = f->rejoin_waiting;
	char *argv[] = { "rejoin", f->rejoin_site, NULL };

	(void)fd;
	(void)what;
	if (!req || f->op == FO_STEP_DOWN)
		return;              /* another step-down began: it waits on */
	f->rejoin_waiting = NULL;
	if (role_current(f->role) == ROLE_FENCED && !f->fence_holds) {
		fo_refuse(req, "the step-down could not fence this site's database (the log says "
			  "why; it is tried again): the rejoin did not start; run it again once the "
			  "database is fenced");
		return;
	}
	failover_cmd_rejoin(f, req, 2, argv);
}
