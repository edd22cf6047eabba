/*
 * report.c — what the daemon reports about itself: the status document and
 * each stream's lag.
 *
 * CONTRACT
 * daemon_stream_rows() copies every stream's report, so that they outlive the
 * streams' callback; daemon_status_json() and daemon_lag_json() write them
 * (and the site, its role, epoch, config and peers) into a JSON document,
 * which the caller renders as JSON or as text. Nothing here changes state.
 */
#include "gateway/daemon/daemon_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/json.h"
#include "common/lsn.h"
#include "config/config.h"
#include "gateway/cluster/failover.h"
#include "gateway/cluster/role.h"
#include "gateway/relay/relay.h"
#include "gateway/stream/stream.h"
#include "gateway/verify/verify_service.h"
#include "gateway/witness/witness.h"
#include "tunnel/tunnel.h"

const char *const daemon_stream_states[] = { STREAM_STATES };
const size_t daemon_n_stream_states = sizeof(daemon_stream_states) / sizeof(daemon_stream_states[0]);

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
		/* each row's report points at its own copies of the names: they moved */
		for (size_t i = 0; i < rows->n; i++) {
			rows->v[i].r.name = rows->v[i].name;
			rows->v[i].r.peer = rows->v[i].peer;
		}
	}
	row = &rows->v[rows->n++];
	row->r = *r;
	snprintf(row->name, sizeof(row->name), "%s", r->name);
	snprintf(row->peer, sizeof(row->peer), "%s", r->peer);
	row->r.name = row->name;
	row->r.peer = row->peer;
	row->r.state = "unknown";
	for (size_t i = 0; i < daemon_n_stream_states; i++) {
		if (strcmp(r->state, daemon_stream_states[i]) == 0)
			row->r.state = daemon_stream_states[i];
	}
}

void daemon_rows_free(struct daemon_rows *rows)
{
	free(rows->v);
}

int64_t daemon_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Every stream's report; false when out of memory (rows freed). */
bool daemon_stream_rows(const struct daemon *d, struct daemon_rows *rows)
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

void daemon_lag_json(const struct daemon_rows *rows, struct json_out *j)
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

/* The witness as this site sees it (automatic failover), or the mode alone. */
static void daemon_witness_json(const struct daemon *d, struct json_out *j)
{
	if (d->witness) {
		witness_status_json(d->witness, j);
		return;
	}
	json_object_begin(j, "witness");
	json_string(j, "mode", d->cfg->failover.mode == CONFIG_FAILOVER_AUTOMATIC ? "automatic" :
		    "manual");
	json_object_end(j);
}

/* A witness site's status: no role, no stream; the tunnel and what etcd says. */
static void daemon_witness_site_json(struct daemon *d, struct json_out *j)
{
	json_object_begin(j, NULL);
	json_string(j, "cluster", d->cfg->cluster);
	json_string(j, "site", d->site_name);
	json_string(j, "role", "witness");
	json_string(j, "version", STRAIT_VERSION);
	json_int(j, "pid", (int64_t)getpid());
	json_int(j, "uptime_seconds", (int64_t)(time(NULL) - d->started_at));
	if (d->tunnel)
		tunnel_status_json(d->tunnel, j);
	daemon_witness_json(d, j);
	json_object_end(j);
}

void daemon_status_json(struct daemon *d, struct json_out *j)
{
	const struct strait_config *cfg = d->cfg;
	time_t now = time(NULL);

	if (!d->role) {
		daemon_witness_site_json(d, j);
		return;
	}
	json_object_begin(j, NULL);
	json_string(j, "cluster", cfg->cluster);
	json_string(j, "site", d->site_name);
	json_string(j, "role", daemon_site_role(d));
	json_uint(j, "epoch", role_epoch(d->role));
	json_string(j, "primary", role_primary(d->role)[0] ? role_primary(d->role) : NULL);
	if (role_current(d->role) == ROLE_FENCED)
		json_bool(j, "database_fenced", d->failover && failover_fence_holds(d->failover));
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
		json_string(j, "to", cfg->sites[config_stream_to(s)].name);
		json_array_begin(j, "destinations");
		for (size_t k = 0; k < s->n_to; k++)
			json_string(j, NULL, cfg->sites[s->to[k]].name);
		json_array_end(j);
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
	daemon_witness_json(d, j);
	json_object_end(j);
}
