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

static void fo_switch_drain_poll(struct failover *f)
{
	struct streams *s = f->ops.streams(f->arg);

	if (!relay_is_up(f->relay, f->peer)) {
		fo_fail(f, "the link to the target went down while draining");
		return;
	}
	if (s && streams_drained(s, f->peer, f->drain_lsn)) {
		fo_step(f, "drained: site %s applied everything up to " LSN_FMT " (lag 0)", f->peer,
			LSN_ARGS(f->drain_lsn));
		fo_switch_send_promote(f);
		return;
	}
	if (fo_now_ms() > f->deadline_ms) {
		fo_fail(f, "the streams did not drain in time");
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
	if (!role_set(f->role, ROLE_REPLICA, f->new_epoch, "switchover: replica of the new primary")) {
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
		char *name = wire_str_dup(ack->streams[i].stream), slot[128], what[256], lsn[32];
		char *slotlit;

		if (!name) {
			fo_end(f, false, "out of memory");
			return;
		}
		source_slot_name(name, slot, sizeof(slot));
		slotlit = fo_quote(slot, '\'');
		lsn_format(lsn, ack->streams[i].lsn);
		snprintf(what, sizeof(what), "origin %s set to %s (stream %s resumes there)", slot, lsn,
			 name);
		if (!slotlit ||
		    !fo_add_sql(f, 0, NULL, what,
				"%sSELECT pg_catalog.pg_replication_origin_create(%s) WHERE NOT EXISTS "
				"(SELECT 1 FROM pg_catalog.pg_replication_origin WHERE roname = %s); "
				"SELECT pg_catalog.pg_replication_origin_advance(%s, '%s')", fo_rw,
				slotlit, slotlit, slotlit, lsn)) {
			free(slotlit);
			free(name);
			fo_end(f, false, "out of memory");
			return;
		}
		snprintf(what, sizeof(what), "dropped slot %s of the old direction", slot);
		/* our walsender may take a moment to go once the source is closed */
		if (!fo_add_sql(f, 50, NULL, what,
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

void fo_switch_start(struct failover *f, struct control_request *req, const char *to)
{
	fo_begin(f, FO_SWITCHOVER, req, to);
	fo_step(f, "switchover from site %s to site %s at epoch %" PRIu64,
		f->cfg->sites[f->self].name, to, role_epoch(f->role));
	f->unfence_on_fail = true;
	fo_fence(f, FENCE_OP_FENCE, fo_switch_fenced);
}
