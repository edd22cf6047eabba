/*
 * rejoin.c — a fenced old primary becomes the new primary's replica: for
 * each stream between them, the transactions committed here that the
 * primary never applied (after the LSN its FENCE gave) are read from the
 * stream's spool and slot into STATE_DIR/lost-STREAM-TIME.sql; then the
 * database is unfenced, the slots, origins and spools go, and the role turns
 * replica, re-seeded by an initial sync.
 *
 * A stream that cannot be read ends the rejoin before anything is dropped:
 * the site stays fenced and keeps what it has.
 */
#include <sys/stat.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/lsn.h"
#include "config/config.h"
#include "gateway/cluster/failover_int.h"
#include "gateway/stream/spool.h"
#include "replicator/lostxacts.h"
#include "replicator/slot_reader.h"
#include "replicator/syncstate.h"

static void fo_rejoin_next_stream(struct failover *f);
static bool fo_rejoin_read_dir(struct failover *f, const struct config_stream *cs,
		uint64_t after_lsn, const char *kind);

static const struct fo_slot *fo_applied_of(const struct failover *f, const char *stream)
{
	for (size_t i = 0; i < f->n_applied; i++)
		if (strcmp(f->applied[i].stream, stream) == 0)
			return &f->applied[i];
	return NULL;
}

static void fo_rejoin_done(struct failover *f)
{
	if (!role_set(f->role, ROLE_REPLICA, role_epoch(f->role), f->fence_from,
		      "rejoin as a replica")) {
		fo_end(f, false, "could not record the new role (see the log)");
		return;
	}
	fo_step(f, "site %s is a replica of site %s at epoch %" PRIu64 "; it is re-seeded by an "
		"initial sync now", f->cfg->sites[f->self].name, f->peer, role_epoch(f->role));
	f->ops.rebuild(f->arg);
	fo_end(f, true, "rejoin done in %.2f s", fo_elapsed(f));
}

/* The slot, the stream's origin and its sync origins go: the sync starts over. */
static void fo_rejoin_cleanup(struct failover *f)
{
	int peer = fo_site_index(f, f->peer);

	for (size_t i = 0; i < f->cfg->n_streams; i++) {
		const struct config_stream *cs = &f->cfg->streams[i];
		char slot[128], sync[160], what[512], *slotlit, *synclit, *forget;

		if (peer < 0 || !fo_stream_with(f, cs, (size_t)peer))
			continue;
		source_slot_name(cs->name, slot, sizeof(slot));
		snprintf(sync, sizeof(sync), "%s:sync", slot);
		slotlit = fo_quote(slot, '\'');
		synclit = fo_quote(sync, '\'');
		snprintf(what, sizeof(what), "dropped slot %s", slot);
		if (!slotlit || !synclit ||
		    !fo_add_sql(f, 50, NULL, what,
				"SELECT pg_catalog.pg_terminate_backend(active_pid) FROM "
				"pg_catalog.pg_replication_slots WHERE slot_name = %s AND active; "
				"SELECT pg_catalog.pg_drop_replication_slot(slot_name) FROM "
				"pg_catalog.pg_replication_slots WHERE slot_name = %s", slotlit, slotlit)) {
			free(slotlit);
			free(synclit);
			fo_end(f, false, "out of memory");
			return;
		}
		snprintf(what, sizeof(what), "dropped origins %s, %s:* and %s:apply:* (the initial "
			 "sync starts over)", slot, sync, slot);
		if (!fo_add_sql(f, 0, NULL, what,
				"%sSELECT count(pg_catalog.pg_replication_origin_drop(roname)) FROM "
				"pg_catalog.pg_replication_origin WHERE roname = %s OR "
				"pg_catalog.left(roname, %zu) = %s OR "
				"pg_catalog.starts_with(roname, %s || ':apply:')", fo_rw, slotlit,
				strlen(sync), synclit, slotlit)) {
			free(slotlit);
			free(synclit);
			fo_end(f, false, "out of memory");
			return;
		}
		free(slotlit);
		free(synclit);
		snprintf(what, sizeof(what), "forgot stream %s's initial sync record and origins",
			 cs->name);
		forget = syncstate_forget_sql(cs->name);
		if (!forget || !fo_add_sql(f, 0, NULL, what, "%s%s", fo_rw, forget)) {
			free(forget);
			fo_end(f, false, "out of memory");
			return;
		}
		free(forget);
		fo_remove_spool(f, cs->name);
	}
	f->steps_next = fo_rejoin_done;
	fo_steps_run(f);
}

/* The initial sync's loaders need a writable database: the site is an ordinary replica again. */
static void fo_rejoin_unfence(struct failover *f)
{
	fo_fence(f, FENCE_OP_UNFENCE, fo_rejoin_cleanup);
}

static void fo_rejoin_peeked(void *arg, const char *err, uint64_t messages)
{
	struct failover *f = arg;
	const struct config_stream *cs = &f->cfg->streams[f->rj_i];
	struct lostxacts_stats st;
	char path[4096], why[4600], stamp[32], from[64];
	time_t now = time(NULL);
	bool no_slot = false;
	struct tm tm;
	FILE *out;

	lostxacts_peek_free(f->peek);
	f->peek = NULL;
	if (err && strstr(err, "does not exist")) {
		const struct fo_slot *ap = fo_applied_of(f, cs->name);

		/*
		 * No slot: this site was a replica (fenced because it applied more
		 * than the primary it would have followed); what it applied beyond
		 * is in its retained batches.
		 */
		fo_step(f, "stream %s: no slot here (%s)", cs->name, err);
		if (!fo_rejoin_read_dir(f, cs, ap ? ap->lsn : 0, "retain")) {
			fo_end(f, false, "could not read the retained batches of stream %s", cs->name);
			return;
		}
		lostxacts_get_stats(f->lx, &st);
		if (st.kept == 0)
			goto next;
		no_slot = true;
		err = NULL;
	}
	if (err) {
		snprintf(why, sizeof(why), "could not read the slot of stream %s: %s", cs->name, err);
		fo_end(f, false, "%s", why);
		return;
	}
	gmtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
	snprintf(path, sizeof(path), "%s/lost-%s-%s.sql", f->cfg->state_dir, cs->name, stamp);
	out = fopen(path, "w");
	if (!out || !lostxacts_write(f->lx, out, why, sizeof(why))) {
		if (out)
			fclose(out);
		else
			snprintf(why, sizeof(why), "could not create \"%s\": %s", path, strerror(errno));
		fo_end(f, false, "%s", why);
		return;
	}
	if (fclose(out) != 0) {
		fo_end(f, false, "could not write \"%s\": %s", path, strerror(errno));
		return;
	}
	lostxacts_get_stats(f->lx, &st);
	if (no_slot)
		snprintf(from, sizeof(from), "from the retained batches");
	else
		snprintf(from, sizeof(from), "read %" PRIu64 " messages from the slot", messages);
	fo_step(f, "stream %s: %s; %" PRIu64 " transactions (%" PRIu64 " statements) committed here "
		"never reached site %s: written to %s", cs->name, from, st.kept, st.statements, f->peer,
		path);
next:
	lostxacts_free(f->lx);
	f->lx = NULL;
	f->rj_i++;
	fo_rejoin_next_stream(f);
}

/*
 * The stream's spool may hold transactions the slot no longer has (with
 * durability spool the slot is confirmed once spooled, e.g. by a restarted
 * old primary that read its slot before it heard the new epoch): feed every
 * record after what the primary applied; the slot's overlap is deduplicated.
 * A replica's retained batches (kind "retain") are read the same way.
 */
static bool fo_rejoin_read_dir(struct failover *f, const struct config_stream *cs,
		uint64_t after_lsn, const char *kind)
{
	char dir[4096], err[512];
	struct spool *sp;
	struct stat st;
	uint64_t records = 0, prev;
	enum spool_seek_result seek;
	bool ok = true;

	snprintf(dir, sizeof(dir), "%s/%s/%s", f->cfg->state_dir, kind, cs->name);
	if (stat(dir, &st) != 0)
		return true;
	sp = spool_open(dir, 0, NULL, err, sizeof(err));
	if (!sp) {
		fo_step(f, "stream %s: could not open its %s: %s", cs->name, kind, err);
		return false;
	}
	seek = spool_seek(sp, after_lsn, &prev, err, sizeof(err));
	if (seek == SPOOL_SEEK_GAP) {
		/* released records were committed there: what is left is after them */
		fo_step(f, "stream %s: %s; reading what its %s holds", cs->name, err, kind);
		seek = spool_seek(sp, 0, &prev, err, sizeof(err));
	}
	if (seek != SPOOL_SEEK_OK) {
		fo_step(f, "stream %s: could not read its %s: %s", cs->name, kind, err);
		spool_close(sp);
		return false;
	}
	for (;;) {
		struct spool_meta meta;
		const uint8_t *body;
		size_t len;
		int r = spool_read(sp, &meta, &body, &len, err, sizeof(err));

		if (r == 0)
			break;
		if (r < 0) {
			fo_step(f, "stream %s: could not read its %s: %s", cs->name, kind, err);
			ok = false;
			break;
		}
		records++;
		if (!lostxacts_feed_batch(f->lx, body, len, err, sizeof(err)))
			fo_step(f, "stream %s: a %s record does not decode: %s", cs->name, kind, err);
	}
	spool_close(sp);
	if (ok)
		fo_step(f, "stream %s: read %" PRIu64 " records from its %s", cs->name, records, kind);
	return ok;
}

static void fo_rejoin_next_stream(struct failover *f)
{
	int peer = fo_site_index(f, f->peer);

	for (; f->rj_i < f->cfg->n_streams; f->rj_i++) {
		const struct config_stream *cs = &f->cfg->streams[f->rj_i];
		const struct fo_slot *ap = fo_applied_of(f, cs->name);
		struct lostxacts_options opt = { .stream = cs->name };
		char slot[128];

		if (peer < 0 || !fo_stream_with(f, cs, (size_t)peer))
			continue;
		source_slot_name(cs->name, slot, sizeof(slot));
		opt.slot = slot;
		opt.after_lsn = ap ? ap->lsn : 0;
		fo_step(f, "stream %s: site %s applied this site's transactions up to " LSN_FMT "; reading "
			"slot %s for the ones after", cs->name, f->peer, LSN_ARGS(opt.after_lsn), slot);
		f->lx = lostxacts_new(&opt);
		if (f->lx && !lostxacts_add_note(f->lx, "committed on site %s, never applied on site %s "
						  "(primary since epoch %" PRIu64 ")",
						  f->cfg->sites[f->self].name, f->peer,
						  role_epoch(f->role))) {
			lostxacts_free(f->lx);
			f->lx = NULL;
		}
		if (f->lx && !fo_rejoin_read_dir(f, cs, opt.after_lsn, "spool")) {
			fo_end(f, false, "could not read the spool of stream %s", cs->name);
			return;
		}
		if (f->lx)
			f->peek = lostxacts_peek_start(f->base, f->cfg->sites[f->self].database, slot,
						       cs->publication, f->lx, fo_rejoin_peeked, f);
		if (!f->lx || !f->peek) {
			fo_end(f, false, "out of memory reading the slot");
			return;
		}
		return;
	}
	fo_rejoin_unfence(f);
}

void fo_rejoin_start(struct failover *f, struct control_request *req)
{
	fo_begin(f, FO_REJOIN, req, f->fence_from);
	fo_step(f, "rejoin of site %s as a replica of site %s at epoch %" PRIu64,
		f->cfg->sites[f->self].name, f->peer, role_epoch(f->role));
	f->rj_i = 0;
	fo_rejoin_next_stream(f);
}
