/*
 * switchover.c — the old primary's side of a planned switchover: fence this
 * database, write a drain mark in the WAL, wait until the target applied
 * everything up to it, send PROMOTE, and once PROMOTE_ACK says yes point the
 * origins at the target's new slots, drop this site's slots and spools and
 * become the target's replica at the new epoch.
 *
 * Nothing committed is lost. Until PROMOTE is sent a failure unfences the
 * database again (fo_fail()) and this site stays primary; a target that does
 * not answer PROMOTE leaves it fenced, for the operator to decide.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/log.h"
#include "common/lsn.h"
#include "config/config.h"
#include "gateway/cluster/failover_int.h"
#include "gateway/relay/frame.h"
#include "gateway/relay/relay.h"
#include "gateway/relay/relay_proto.h"
#include "gateway/relay/wire.h"
#include "gateway/stream/stream.h"
#include "replicator/slot_reader.h"

/* ------------------------------------------------------------- switchover */

static void fo_switch_drain_poll(struct failover *f);

void fo_switch_unfenced(struct failover *f)
{
	fo_end(f, false, "switchover to site %s failed; site %s stays primary (see the steps above)",
	       f->peer, f->cfg->sites[f->self].name);
}

static void fo_mark_result(struct failover *f, const PGresult *res)
{
	if (PQntuples(res) != 1 || !lsn_parse(PQgetvalue(res, 0, 0), &f->drain_lsn)) {
		fo_fail(f, "could not read the WAL position");
		return;
	}
}

static void fo_switch_promote_timeout(struct failover *f)
{
	fo_end(f, false, "site %s did not answer PROMOTE within %d s: this site stays fenced; "
	       "check site %s's status, then run failover or unfence by hand", f->peer,
	       FO_PROMOTE_TIMEOUT_MS / 1000, f->peer);
}

static void fo_switch_send_promote(struct failover *f)
{
	struct relay_proto_promote m = {
		.epoch = role_epoch(f->role) + 1,
		.reason = relay_proto_str("switchover"),
	};
	uint8_t buf[256];
	struct wire_writer w;

	wire_writer_init(&w, buf, sizeof(buf));
	if (!relay_proto_write_promote(&w, &m) ||
	    !relay_send(f->relay, f->peer, FRAME_PROMOTE, 0, w.data, w.len)) {
		fo_fail(f, "could not send PROMOTE");
		return;
	}
	fo_step(f, "asked site %s to become primary at epoch %" PRIu64, f->peer, m.epoch);
	f->new_epoch = m.epoch;
	fo_arm(f, FO_PROMOTE_TIMEOUT_MS, fo_switch_promote_timeout);
}

/* The first replica of this site's streams not drained yet (NULL: all are); *down when its link is. */
static const char *fo_switch_undrained(struct failover *f, struct streams *s, bool *down)
{
	size_t sites[FO_MAX_PEERS], n = fo_stream_peers(f, sites, FO_MAX_PEERS);

	*down = false;
	if (!n) {
		*down = !relay_is_up(f->relay, f->peer);
		return *down || !(s && streams_drained(s, f->peer, f->drain_lsn)) ? f->peer : NULL;
	}
	for (size_t i = 0; i < n; i++) {
		const char *name = f->cfg->sites[sites[i]].name;

		*down = !relay_is_up(f->relay, name);
		if (*down || !(s && streams_drained(s, name, f->drain_lsn)))
			return name;
	}
	return NULL;
}

static void fo_switch_drain_poll(struct failover *f)
{
	struct streams *s = f->ops.streams(f->arg);
	size_t sites[FO_MAX_PEERS], n = fo_stream_peers(f, sites, FO_MAX_PEERS);
	bool down;
	const char *waiting = fo_switch_undrained(f, s, &down);
	char why[160];

	if (down) {
		snprintf(why, sizeof(why), "the link to site %s went down while draining", waiting);
		fo_fail(f, why);
		return;
	}
	if (!waiting) {
		for (size_t i = 0; i < n; i++)
			fo_step(f, "drained: site %s applied everything up to " LSN_FMT " (lag 0)",
				f->cfg->sites[sites[i]].name, LSN_ARGS(f->drain_lsn));
		if (!n)
			fo_step(f, "drained: site %s applied everything up to " LSN_FMT " (lag 0)",
				f->peer, LSN_ARGS(f->drain_lsn));
		fo_switch_send_promote(f);
		return;
	}
	if (fo_now_ms() > f->deadline_ms) {
		snprintf(why, sizeof(why), "the streams to site %s did not drain in time", waiting);
		fo_fail(f, why);
		return;
	}
	fo_arm(f, FO_DRAIN_POLL_MS, fo_switch_drain_poll);
}

static void fo_switch_marked(struct failover *f)
{
	f->deadline_ms = fo_now_ms() + FO_DRAIN_TIMEOUT_MS;
	fo_switch_drain_poll(f);
}

static void fo_switch_fenced(struct failover *f)
{
	if (!fo_add_sql(f, 0, fo_mark_result, "wrote a drain mark in the WAL",
			"%sSELECT pg_catalog.pg_logical_emit_message(false, 'strait_switchover', "
			"'')::text", fo_rw)) {
		fo_fail(f, "out of memory");
		return;
	}
	f->steps_next = fo_switch_marked;
	fo_steps_run(f);
}

/* Removes a stream's spool (it served the old direction). */
void fo_remove_spool(struct failover *f, const char *stream)
{
	char dir[4096];
	DIR *d;
	struct dirent *e;

	snprintf(dir, sizeof(dir), "%s/spool/%s", f->cfg->state_dir, stream);
	d = opendir(dir);
	if (!d)
		return;
	while ((e = readdir(d))) {
		char path[4400];

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (unlink(path) != 0)
			log_warning("could not remove \"%s\": %s", path, strerror(errno));
	}
	closedir(d);
	if (rmdir(dir) == 0)
		fo_step(f, "removed the spool of stream %s", stream);
}

static void fo_switch_replica(struct failover *f)
{
	int peer = fo_site_index(f, f->peer);

	for (size_t i = 0; i < f->cfg->n_streams; i++)
		if (peer >= 0 && fo_stream_with(f, &f->cfg->streams[i], (size_t)peer))
			fo_remove_spool(f, f->cfg->streams[i].name);
	if (!role_set(f->role, ROLE_REPLICA, f->new_epoch, f->peer,
		      "switchover: replica of the new primary")) {
		fo_end(f, false, "could not record the new role (see the log)");
		return;
	}
	fo_step(f, "site %s is a replica of site %s at epoch %" PRIu64,
		f->cfg->sites[f->self].name, f->peer, f->new_epoch);
	f->ops.rebuild(f->arg);
	fo_record_duration(f, FAILOVER_CHANGE_SWITCHOVER, fo_elapsed(f));
	fo_end(f, true, "switchover done in %.2f s", fo_elapsed(f));
}

/* PROMOTE_ACK ok: point the origins at the new slots, drop our slots, become replica. */
void fo_switch_acked(struct failover *f, const struct relay_proto_promote_ack *ack)
{
	event_del(f->timer);
	fo_step(f, "site %s promoted itself at epoch %" PRIu64, f->peer, ack->epoch);
	f->new_epoch = ack->epoch;
	for (size_t i = 0; i < ack->nstreams; i++) {
		char *name = wire_str_dup(ack->streams[i].stream), slot[128], what[256];
		char *slotlit;

		if (!name || !fo_add_origin_at(f, name, ack->streams[i].lsn)) {
			free(name);
			fo_end(f, false, "out of memory");
			return;
		}
		source_slot_name(name, slot, sizeof(slot));
		slotlit = fo_quote(slot, '\'');
		snprintf(what, sizeof(what), "dropped slot %s of the old direction", slot);
		/* our walsender may take a moment to go once the source is closed */
		if (!slotlit ||
		    !fo_add_sql(f, 50, NULL, what,
				"SELECT pg_catalog.pg_terminate_backend(active_pid) FROM "
				"pg_catalog.pg_replication_slots WHERE slot_name = %s AND active; "
				"SELECT pg_catalog.pg_drop_replication_slot(slot_name) FROM "
				"pg_catalog.pg_replication_slots WHERE slot_name = %s", slotlit, slotlit)) {
			free(slotlit);
			free(name);
			fo_end(f, false, "out of memory");
			return;
		}
		free(slotlit);
		free(name);
	}
	f->steps_next = fo_switch_replica;
	fo_steps_run(f);
}

/* ------------------------------------------------ the other replicas follow */

void fo_send_follow(struct failover *f)
{
	size_t sites[FO_MAX_PEERS], n = fo_stream_peers(f, sites, FO_MAX_PEERS);

	for (size_t i = 0; i < n; i++) {
		const char *name = f->cfg->sites[sites[i]].name;

		if (strcmp(name, f->peer) == 0)
			continue;
		if (!relay_is_up(f->relay, name)) {
			fo_step(f, "WARNING: site %s is not reachable: it does not know where the streams "
				"of site %s start", name, f->cfg->sites[f->self].name);
			continue;
		}
		fo_send_promote_ack(f, name, true, NULL);
		fo_step(f, "told site %s where the streams start: it follows site %s", name,
			f->cfg->sites[f->self].name);
	}
}

static void fo_follow_done(struct failover *f)
{
	if (!role_set(f->role, ROLE_REPLICA, f->new_epoch, f->peer, "following the new primary")) {
		fo_fail(f, "could not record the new primary (see the log)");
		return;
	}
	f->streams_stopped = false;
	f->ops.rebuild(f->arg);
	fo_end(f, true, "site %s takes the streams from site %s at epoch %" PRIu64 " (%.2f s)",
	       f->cfg->sites[f->self].name, f->peer, f->new_epoch, fo_elapsed(f));
}

/*
 * A replica hears a new primary. Once it holds exactly the transactions the
 * new primary held when it took over (a switchover drained both; after a
 * failover it takes what it lacks from the new primary's retained batches,
 * level.c), its origins move to where the new primary's slots start, as the
 * old primary's do, and nothing is copied.
 */
void fo_follow_start(struct failover *f, const char *peer, const struct relay_proto_promote_ack *ack)
{
	int p = fo_site_index(f, peer);

	fo_begin(f, FO_FOLLOW, NULL, peer);
	f->new_epoch = ack->epoch;
	fo_step(f, "site %s is primary at epoch %" PRIu64 ": site %s takes its streams", peer,
		ack->epoch, f->cfg->sites[f->self].name);
	f->n_follow = 0;
	for (size_t i = 0; p >= 0 && i < ack->nstreams && f->n_follow < FO_MAX_STREAMS; i++) {
		for (size_t k = 0; k < f->cfg->n_streams; k++) {
			const struct config_stream *cs = &f->cfg->streams[k];
			struct fo_slot *at = &f->follow_at[f->n_follow];

			if (!wire_str_eq(ack->streams[i].stream, cs->name) ||
			    !fo_stream_with(f, cs, (size_t)p))
				continue;
			snprintf(at->stream, sizeof(at->stream), "%s", cs->name);
			at->lsn = ack->streams[i].lsn;
			f->n_follow++;
		}
	}
	/* after a failover the replicas may stand apart: level with the new primary first */
	fo_follow_level(f);
}

/* The sinks stop first: an origin in use cannot be moved. */
void fo_follow_move(struct failover *f)
{
	f->ops.stop(f->arg);
	f->streams_stopped = true;
	if (!fo_add_end_apply_sessions(f)) {
		fo_fail(f, "out of memory");
		return;
	}
	for (size_t i = 0; i < f->n_follow; i++) {
		if (!fo_add_origin_at(f, f->follow_at[i].stream, f->follow_at[i].lsn)) {
			fo_fail(f, "out of memory");
			return;
		}
	}
	f->steps_next = fo_follow_done;
	fo_steps_run(f);
}

void fo_switch_start(struct failover *f, struct control_request *req, const char *to)
{
	fo_begin(f, FO_SWITCHOVER, req, to);
	fo_step(f, "switchover from site %s to site %s at epoch %" PRIu64,
		f->cfg->sites[f->self].name, to, role_epoch(f->role));
	f->unfence_on_fail = true;
	fo_fence(f, FENCE_OP_FENCE, fo_switch_fenced);
}
