/*
 * collect.c — straitd's metrics and health checks, gathered at scrape time.
 *
 * CONTRACT
 * daemon_metrics_callbacks is handed to the metrics server: collect declares
 * every metric family and writes the current values from the modules' own
 * accessors (the site, its role and reloads, each stream, each verify, each
 * relay link, the tunnel's handshakes); health fills in the health check
 * from the role and the incoming streams. Nothing here changes state, and
 * metrics.c knows nothing of the modules.
 */
#include "gateway/daemon/daemon_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "config/config.h"
#include "gateway/cluster/role.h"
#include "gateway/daemon/metrics.h"
#include "gateway/relay/relay.h"
#include "gateway/stream/stream.h"
#include "gateway/verify/verify_service.h"
#include "gateway/witness/witness.h"
#include "tunnel/tunnel.h"

static void daemon_collect_witness(const struct daemon *d, struct metrics_writer *w)
{
	struct witness_metrics m;

	witness_metrics(d->witness, &m);
	metrics_value(w, "strait_witness_reachable", m.reachable, NULL);
	metrics_value(w, "strait_witness_paused", m.paused, NULL);
	metrics_value(w, "strait_witness_holds_lease", m.holds, NULL);
	metrics_value(w, "strait_witness_self_fenced", m.self_fenced, NULL);
	if (m.lease_age_s >= 0)
		metrics_value(w, "strait_witness_lease_age_seconds", m.lease_age_s, NULL);
	metrics_value(w, "strait_auto_failover_blocked", m.blocked, NULL);
	metrics_value(w, "strait_auto_failovers_total", (double)m.automatic_failovers, NULL);
}

/* Every family straitd serves, declared even before its first sample. */
static const struct {
	const char *name;
	enum metrics_type type;
	const char *help;
} daemon_families[] = {
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
	{ "strait_stream_bytes_packed_total", METRICS_COUNTER,
	  "batch bytes sent as zstd took them: pgoutput messages packed, before compression" },
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
	{ "strait_stream_compression_level", METRICS_GAUGE,
	  "the zstd level the stream's sender uses now, by what limits it (0: not compressed)" },
	{ "strait_stream_wan_bytes_total", METRICS_COUNTER,
	  "estimated bytes the stream's batches cost on the WAN (what the rate limit counts)" },
	{ "strait_initial_sync_running", METRICS_GAUGE,
	  "1 from the sink's request for an initial-sync round until it streams (source side)" },
	{ "strait_initial_sync_tables", METRICS_GAUGE,
	  "tables in the initial-sync round's plan, copied or kept (source side)" },
	{ "strait_initial_sync_tables_done", METRICS_GAUGE,
	  "tables of the round's plan the target has or that were read in full (source side)" },
	{ "strait_initial_sync_eta_seconds", METRICS_GAUGE,
	  "estimated seconds left reading the round's tables, by heap size (source side)" },
	{ "strait_initial_sync_rows_total", METRICS_COUNTER,
	  "rows read by initial-sync copies since straitd started (source side)" },
	{ "strait_initial_sync_bytes_total", METRICS_COUNTER,
	  "COPY text bytes read by initial-sync copies since straitd started (source side)" },
	{ "strait_verify_last_run_seconds", METRICS_GAUGE,
	  "when the stream's last verify ended (Unix time)" },
	{ "strait_verify_last_result", METRICS_GAUGE,
	  "the stream's last verify: 1 equal, 0 different, -1 could not compare" },
	{ "strait_verify_last_differences", METRICS_GAUGE,
	  "keys missing, extra or changed at the target in the stream's last verify" },
	{ "strait_verify_last_rows", METRICS_GAUGE, "source rows compared by the stream's last verify" },
	{ "strait_verify_last_duration_seconds", METRICS_GAUGE, "how long the stream's last verify took" },
	{ "strait_witness_reachable", METRICS_GAUGE,
	  "1 while etcd, the witness of automatic failover, answers this site" },
	{ "strait_witness_paused", METRICS_GAUGE, "1 while automatic failover is paused" },
	{ "strait_witness_holds_lease", METRICS_GAUGE,
	  "1 while this site, the primary, holds the witness's leader key" },
	{ "strait_witness_self_fenced", METRICS_GAUGE,
	  "1 while this site fenced its database for want of the witness's lease" },
	{ "strait_witness_lease_age_seconds", METRICS_GAUGE,
	  "seconds since the primary's lease was last renewed (absent when it holds none)" },
	{ "strait_auto_failover_blocked", METRICS_GAUGE,
	  "1 while the primary's lease has ended and this replica will not promote itself "
	  "(the lag gate refuses it)" },
	{ "strait_auto_failovers_total", METRICS_COUNTER,
	  "automatic failovers this site won and promoted itself in" },
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
	{ "strait_relay_losing_packets", METRICS_GAUGE,
	  "1 while the link's TCP retransmitted within the last 30 s (batches are then followed "
	  "by probe packets)" },
	{ "strait_relay_loss_probes_sent_total", METRICS_COUNTER,
	  "probe frames sent after batches on a link that loses packets" },
	{ "strait_relay_bytes_resent_total", METRICS_COUNTER,
	  "bytes the link's TCP sent again (lost packets), counted against the streams' rates" },
	{ "strait_peer_epoch", METRICS_GAUGE, "the epoch the peer site last sent" },
	{ "strait_tunnel_last_handshake_seconds", METRICS_GAUGE,
	  "Unix time of the latest WireGuard handshake with the peer site (0: never)" },
};

static void daemon_declare_metrics(struct metrics_writer *w)
{
	for (size_t i = 0; i < sizeof(daemon_families) / sizeof(daemon_families[0]); i++)
		metrics_declare(w, daemon_families[i].name, daemon_families[i].type,
				daemon_families[i].help);
}

/* A source's initial sync: the round's figures once it has a plan. */
static void daemon_collect_sync(struct metrics_writer *w, const char *stream, const char *to,
		const struct streamsync_figures *f)
{
	metrics_value(w, "strait_initial_sync_running", f->running, "stream", stream, "to", to,
		      NULL);
	metrics_value(w, "strait_initial_sync_rows_total", (double)f->rows, "stream", stream, "to",
		      to, NULL);
	metrics_value(w, "strait_initial_sync_bytes_total", (double)f->bytes, "stream", stream, "to",
		      to, NULL);
	if (!f->round)
		return;
	metrics_value(w, "strait_initial_sync_tables", (double)f->tables_total, "stream", stream,
		      "to", to, NULL);
	metrics_value(w, "strait_initial_sync_tables_done", (double)f->tables_done, "stream", stream,
		      "to", to, NULL);
	if (f->eta_s >= 0)
		metrics_value(w, "strait_initial_sync_eta_seconds", f->eta_s, "stream", stream, "to",
			      to, NULL);
}

/* What the stream's one reader has, whatever the destination: once per stream. */
static void daemon_collect_reader(struct metrics_writer *w, const struct stream_report *r)
{
	metrics_value(w, "strait_spool_bytes", (double)r->spool_bytes, "stream", r->name, NULL);
	metrics_value(w, "strait_spool_max_bytes", (double)r->spool_max_bytes, "stream", r->name,
		      NULL);
	metrics_value(w, "strait_spool_records", (double)r->spool_records, "stream", r->name, NULL);
	metrics_value(w, "strait_spool_oldest_record_age_seconds", r->spool_oldest_age, "stream",
		      r->name, NULL);
	if (r->slot_retained_bytes >= 0)
		metrics_value(w, "strait_slot_retained_bytes", (double)r->slot_retained_bytes, "stream",
			      r->name, NULL);
	metrics_value(w, "strait_disk_warning_level", r->warning_level, "stream", r->name, NULL);
}

/*
 * One stream to one destination, as the source or that destination sees it:
 * labelled by stream and to (the destination site) on both sides, so that
 * both views of one destination share their labels.
 */
static void daemon_collect_stream(void *arg, const struct stream_report *r)
{
	struct metrics_writer *w = arg;
	const char *n = r->name, *t = r->to;

	metrics_value(w, "strait_stream_info", 1, "stream", n,
		      "role", r->sink ? "sink" : "source", "peer", r->peer, NULL);
	for (size_t i = 0; i < daemon_n_stream_states; i++)
		metrics_value(w, "strait_stream_state", strcmp(r->state, daemon_stream_states[i]) == 0,
			      "stream", n, "to", t, "state", daemon_stream_states[i], NULL);
	metrics_value(w, "strait_stream_lag_bytes", (double)r->lag_bytes, "stream", n, "to", t, NULL);
	metrics_value(w, "strait_stream_lag_seconds", r->lag_seconds, "stream", n, "to", t, NULL);
	metrics_value(w, "strait_stream_applied_lsn", (double)r->applied_lsn, "stream", n, "to", t,
		      NULL);
	metrics_value(w, "strait_stream_batches_total", (double)r->batches, "stream", n, "to", t,
		      NULL);
	if (r->sink)
		return;
	metrics_value(w, "strait_stream_bytes_raw_total", (double)r->bytes_raw, "stream", n, "to", t,
		      NULL);
	metrics_value(w, "strait_stream_bytes_compressed_total", (double)r->bytes_compressed,
		      "stream", n, "to", t, NULL);
	metrics_value(w, "strait_stream_bytes_packed_total", (double)r->bytes_packed,
		      "stream", n, "to", t, NULL);
	if (r->reader)
		daemon_collect_reader(w, r);
	metrics_value(w, "strait_stream_held", r->held, "stream", n, "to", t, NULL);
	metrics_value(w, "strait_stream_rate_limit_bytes_per_second",
		      r->rate_unlimited ? INFINITY : (double)r->rate, "stream", n, "to", t, NULL);
	metrics_value(w, "strait_stream_schedule_rule", r->rule, "stream", n, "to", t, NULL);
	metrics_value(w, "strait_stream_wan_bytes_total", (double)r->bytes_wan, "stream", n, "to", t,
		      NULL);
	metrics_value(w, "strait_stream_compression_level", r->compression_level, "stream", n, "to", t,
		      NULL);
	if (r->sync)
		daemon_collect_sync(w, n, t, &r->sync_figures);
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
	const char *n = l->stream, *t = l->to;

	metrics_value(w, "strait_verify_last_run_seconds", l->finished, "stream", n, "to", t, NULL);
	metrics_value(w, "strait_verify_last_result", !l->ok ? -1 : l->equal ? 1 : 0, "stream", n,
		      "to", t, NULL);
	metrics_value(w, "strait_verify_last_differences", (double)l->differences, "stream", n,
		      "to", t, NULL);
	metrics_value(w, "strait_verify_last_rows", (double)l->rows, "stream", n, "to", t, NULL);
	metrics_value(w, "strait_verify_last_duration_seconds", l->seconds, "stream", n, "to", t,
		      NULL);
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
		metrics_value(w, "strait_relay_losing_packets", st.losing_packets, "peer", peer, NULL);
		metrics_value(w, "strait_relay_loss_probes_sent_total", (double)st.probes_sent,
			      "peer", peer, NULL);
		metrics_value(w, "strait_relay_bytes_resent_total", (double)st.bytes_resent,
			      "peer", peer, NULL);
		if (p)
			metrics_value(w, "strait_peer_epoch", (double)p->epoch, "peer", peer, NULL);
	}
	if (d->tunnel)
		daemon_collect_tunnel(d, w);
	if (d->witness)
		daemon_collect_witness(d, w);
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

const struct metrics_callbacks daemon_metrics_callbacks = {
	.collect = daemon_collect,
	.health = daemon_health,
};
