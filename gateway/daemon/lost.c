/*
 * lost.c — a site whose state directory was lost (DESIGN.md, "A lost state
 * directory").
 *
 * At start, a site without a role file whose database shows that strait ran
 * there (a slot or a replication origin named strait_*) starts fenced, not
 * as the config says: a failover may have happened while it was away.
 * While it is fenced and knows no primary, it asks every reachable peer for
 * its status (daemon.c's timer), and takes the role lostrole_decide() gives.
 */
#include "gateway/daemon/daemon_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <event2/event.h>
#include <libpq-fe.h>

#include "common/json_value.h"
#include "common/log.h"
#include "config/config.h"
#include "gateway/cluster/failover.h"
#include "gateway/cluster/lostrole.h"
#include "gateway/cluster/role.h"
#include "gateway/daemon/forward.h"
#include "gateway/relay/relay.h"
#include "gateway/stream/stream.h"

/* How long an answer may take. */
#define LOST_ASK_MS 5000
#define LOST_CONNECT_TIMEOUT "5"

/* strait's traces in the site's database: 1 found, 0 none, -1 unknown (logged). */
static int lost_traces(const char *conninfo)
{
	const char *const keys[] = { "dbname", "connect_timeout", "application_name", NULL };
	const char *const values[] = { conninfo, LOST_CONNECT_TIMEOUT, "strait-start", NULL };
	PGconn *conn = PQconnectdbParams(keys, values, 1);
	PGresult *res = NULL;
	int found = -1;

	if (PQstatus(conn) != CONNECTION_OK) {
		log_warning("could not ask this site's database whether strait ran here before: %.*s",
			    (int)strcspn(PQerrorMessage(conn), "\n"), PQerrorMessage(conn));
		PQfinish(conn);
		return -1;
	}
	res = PQexec(conn, "SELECT (SELECT count(*) FROM pg_catalog.pg_replication_slots "
		     "WHERE slot_name LIKE 'strait\\_%') + (SELECT count(*) FROM "
		     "pg_catalog.pg_replication_origin WHERE roname LIKE 'strait\\_%')");
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
		found = strcmp(PQgetvalue(res, 0, 0), "0") != 0;
	else
		log_warning("could not ask this site's database whether strait ran here before: %.*s",
			    (int)strcspn(PQerrorMessage(conn), "\n"), PQerrorMessage(conn));
	PQclear(res);
	PQfinish(conn);
	return found;
}

bool daemon_state_lost(const struct strait_config *cfg, size_t self)
{
	char path[4096];
	struct stat st;

	snprintf(path, sizeof(path), "%s/role", cfg->state_dir);
	if (stat(path, &st) == 0 || cfg->n_sites < 2)
		return false;
	/* unknown (the database is down) is a first start, as before: a site waiting on
	 * peers that all wait too would never start */
	return lost_traces(cfg->sites[self].database) == 1;
}

/* ------------------------------------------------------------ asking peers */

struct lost_ask {
	struct daemon *d;
	size_t waiting;
	struct lostrole_answer answers[64];
	char *sites[64];          /* the answering sites' names (answers point here) */
	struct json_value *values[64];
	size_t n;
};

static enum role_kind lost_role_of(const char *name)
{
	enum role_kind k = ROLE_FENCED;

	return name && role_parse_name(name, &k) ? k : ROLE_FENCED;
}

static void lost_apply(struct daemon *d, const struct lostrole_decision *dec)
{
	char why[320];

	snprintf(why, sizeof(why), "state directory lost: %s", dec->why);
	switch (dec->action) {
	case LOSTROLE_WAIT:
		log_info("%s; this site stays fenced and asks again", why);
		return;
	case LOSTROLE_PRIMARY:
		if (!role_set(d->role, ROLE_PRIMARY, dec->epoch, d->site_name, why))
			return;
		break;
	case LOSTROLE_REPLICA:
		if (!role_set(d->role, ROLE_REPLICA, dec->epoch, dec->primary, why))
			return;
		break;
	case LOSTROLE_FENCED:
		if (!role_set(d->role, ROLE_FENCED, dec->epoch, dec->primary, why))
			return;
		log_notice("%s: run rejoin on this site to make it a replica of site \"%s\"", why,
			   dec->primary);
		break;
	}
	relay_set_epoch(d->relay, role_epoch(d->role));
	if (dec->action == LOSTROLE_FENCED)
		return;
	daemon_rebuild_streams(d);
	if (d->failover)
		failover_unfence(d->failover, why);
}

static void lost_decide(struct lost_ask *a)
{
	struct daemon *d = a->d;
	struct lostrole_decision dec;
	size_t peers = 0;

	for (size_t i = 0; i < d->cfg->n_sites; i++)
		peers += i != d->self && !config_site_is_witness(&d->cfg->sites[i]);
	/* a role learned meanwhile (a peer's frames, a command) stands */
	if (role_current(d->role) == ROLE_FENCED && !role_primary(d->role)[0]) {
		lostrole_decide(d->site_name, daemon_config_primary(d->cfg), peers,
				a->answers, a->n, &dec);
		lost_apply(d, &dec);
	}
	for (size_t i = 0; i < a->n; i++) {
		json_value_free(a->values[i]);
		free(a->sites[i]);
	}
	free(a);
}

static void lost_answer(void *arg, const char *peer, bool answered, bool ok, const char *body)
{
	struct lost_ask *a = arg;
	struct json_value *v;
	char err[128];

	if (answered && ok && a->n < 64 && (v = json_parse(body, err, sizeof(err)))) {
		struct lostrole_answer *an = &a->answers[a->n];

		a->values[a->n] = v;
		a->sites[a->n] = strdup(peer);
		an->site = a->sites[a->n] ? a->sites[a->n] : "";
		an->role = lost_role_of(json_get_string(v, "role"));
		an->epoch = (uint64_t)json_get_number(v, "epoch", 0);
		an->primary = json_get_string(v, "primary") ? json_get_string(v, "primary") : "";
		a->n++;
	}
	if (--a->waiting == 0)
		lost_decide(a);
}

/* The timer: while fenced and knowing no primary, ask every reachable peer. */
void daemon_lost_tick(struct daemon *d)
{
	static char *const ask[] = { "status", "--json" };
	struct lost_ask *a;

	if (role_current(d->role) != ROLE_FENCED || role_primary(d->role)[0] || !d->forward)
		return;
	if (!(a = calloc(1, sizeof(*a))))
		return;
	a->d = d;
	a->waiting = 1;
	for (size_t i = 0; i < d->cfg->n_sites; i++) {
		const char *name = d->cfg->sites[i].name;

		if (i == d->self || !relay_is_up(d->relay, name))
			continue;
		a->waiting++;
		forward_call(d->forward, name, 2, ask, LOST_ASK_MS, lost_answer, a);
	}
	/* the last to end decides: here when no peer was asked */
	if (--a->waiting == 0)
		lost_decide(a);
}
