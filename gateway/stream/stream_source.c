/*
 * stream_source.c — the source side of a stream, in two halves joined by the
 * spool:
 *
 *   reader   slot → spool. Runs whenever the source database is reachable,
 *            link or no link: batches are appended to the spool, and the
 *            slot is told what the durability mode allows — with `spool`,
 *            what is fsynced in the spool (so the primary frees its WAL
 *            while the WAN is down); with `remote`, what the sink ACKed.
 *   sender   spool → link. Serves the sink's received position (HELLO or
 *            RESUME) from the spool, compressing with the stream's codec, at
 *            the pace of a token bucket whose rate the schedule sets. Records
 *            leave the spool when the sink has committed them: only the
 *            committed position (ACK, and the one HELLO and RESUME carry)
 *            releases records or confirms the slot, never the received one.
 *
 * Gaps. A sink that asks for a position the spool no longer holds (below its
 * floor: released, so the slot is past it too) stops the stream with an
 * error naming both positions; nothing later is sent over the hole. Each
 * batch carries where it continues from and its place in the generation, so
 * the sink can check the same.
 *
 * Fsync. A failed fsync stops the stream for good: after EIO the kernel may
 * have dropped the pages, so the spool is not reopened and trusted again in
 * this process (the slot still holds everything not durably spooled).
 *
 * NOTES
 * Backpressure. At spool_max the reader stops reading (the slot then holds
 * WAL) and the stream reports "backpressure"; an ACK that frees a segment
 * starts it again. When the link's output is full the sender stops until the
 * relay says it drained; the reader goes on into the spool.
 *
 * Fsync. With durability spool, what a loop pass appended is fsynced once,
 * then confirmed. With durability remote the slot keeps everything the sink
 * has not committed, so the spool is only a buffer and is not fsynced.
 *
 * Restarts. The reader starts at the spool's last whole transaction (or at
 * the slot's confirmed position when the spool is empty); PostgreSQL skips
 * transactions that committed before it. A source that fails in the middle
 * of a transaction leaves part of it in the spool: that part is cut off
 * (spool_truncate_incomplete) and read again whole.
 *
 * Initial sync. A new slot's exported snapshot is only good until the
 * replication connection runs another command, so the reader waits until the
 * copy has imported it (or the sink resumes without a copy, which releases it).
 *
 * Held. A schedule at rate 0 or a batch stream outside its windows sends no
 * batches and no sequence values; heartbeats and ACKs are never held (they
 * do not go through here).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <event2/event.h>

#include "common/fault.h"
#include "common/json.h"
#include "common/log.h"
#include "common/lsn.h"
#include "gateway/relay/relay.h"
#include "gateway/relay/relay_proto.h"
#include "gateway/stream/clock.h"
#include "gateway/stream/codec.h"
#include "gateway/stream/diskwarn.h"
#include "gateway/stream/lag.h"
#include "gateway/stream/relcache.h"
#include "gateway/stream/spool.h"
#include "gateway/stream/stream_int.h"
#include "gateway/stream/stream_join.h"
#include "gateway/stream/stream_sync.h"
#include "replicator/pgquery.h"
#include "replicator/pgversion.h"
#include "replicator/pubwatch.h"
#include "replicator/sequences.h"
#include "replicator/slot_reader.h"
#include "replicator/slotwatch.h"

#define STREAM_SEQUENCE_POLL_MS 5000
#define STREAM_SLOTWATCH_MS 10000
#define STREAM_PUBWATCH_MS 10000
#define STREAM_TICK_MS 1000
#define STREAM_SEGMENT_MIN (1u * 1024u * 1024u)
#define STREAM_SEGMENT_MAX (64u * 1024u * 1024u)
/* The sender yields to the loop after this much in one pass. */
#define STREAM_PUMP_SLICE (4u * 1024u * 1024u)
/* sync-now without --for: open until drained, but no longer than this. */
#define STREAM_DRAIN_MAX_S (7 * 24 * 3600)
/*
 * At most this many raw batch bytes are held by the sink: sent, and not yet
 * freed there (committed, or applied inside a large transaction and
 * forgotten: its ACKs say how much). Without a window a backlog released at
 * once piles up in its memory (94 MiB for a minute's backlog of pgbench),
 * and a large transaction would go there whole. 16 MiB is seconds of apply, far more
 * than a WAN round trip needs. Only a message is never cut by it (the sink
 * needs a message whole before it can apply and free it).
 */
#define STREAM_WINDOW_BYTES (16u * 1024u * 1024u)

static void reader_make(struct stream *st);
static void sender_kick(struct stream *st);

/* Every destination of st's stream, the lead first (they share its reader). */
#define FOR_EACH_DEST(d, st) for (struct stream *d = (st)->lead; d; d = d->next_dest)

static uint64_t max_u64(uint64_t a, uint64_t b)
{
	return a > b ? a : b;
}

/*
 * What every destination has committed: the spool releases and (durability
 * remote) the slot is confirmed no further, so a destination that is away
 * finds everything it lacks when it comes back.
 */
static uint64_t reader_acked_by_all(const struct stream *st)
{
	uint64_t lsn = UINT64_MAX;

	/* a relayed destination: its relay keeps what it lacks (retained batches) */
	FOR_EACH_DEST(d, st)
		if (!d->relay && d->sender.acked_lsn < lsn)
			lsn = d->sender.acked_lsn;
	return lsn;
}

/* ---------------------------------------------------------------- reader */

/* Tells the slot what the durability mode allows. */
static void reader_confirm(struct stream *st)
{
	uint64_t lsn = reader_acked_by_all(st);

	if (st->cs->durability == CONFIG_DURABILITY_SPOOL && st->reader->spool)
		lsn = max_u64(lsn, spool_durable_lsn(st->reader->spool));
	if (lsn > st->reader->confirmed_lsn && st->reader->source && source_is_ready(st->reader->source)) {
		(void)fault_hit("source.slot_confirm");
		source_confirm(st->reader->source, lsn);
		st->reader->confirmed_lsn = lsn;
	}
}

static void reader_fail_spool(struct stream *st, const char *err)
{
	st->reader->spool_broken = st->reader->spool_broken ||
				  (st->reader->spool && spool_fsync_failed(st->reader->spool));
	if (st->reader->spool_broken)
		log_error("stream \"%s\": spool: %s; an fsync failed, so what is spooled cannot be "
			  "trusted: the stream stops (the slot keeps what was not durably spooled); "
			  "fix the disk and restart straitd", st->name, err);
	else
		log_error("stream \"%s\": spool: %s", st->name, err);
	/* closing frees every destination's cursor */
	FOR_EACH_DEST(d, st) {
		snprintf(d->last_error, sizeof(d->last_error), "spool: %s", err);
		d->sender.cursor = NULL;
		d->sender.sending = false;
	}
	spool_close(st->reader->spool);
	st->reader->spool = NULL;
	/* the source restarts from the slot once the spool reopens */
	if (!st->reader->spool_broken)
		stream_schedule_retry(st->lead, STREAM_RETRY_MAX_MS);
}

static void reader_sync_cb(evutil_socket_t fd, short what, void *arg)
{
	struct stream *st = arg;
	char err[256];

	(void)fd;
	(void)what;
	if (!st->reader->spool)
		return;
	if (!spool_sync(st->reader->spool, err, sizeof(err))) {
		reader_fail_spool(st, err);
		return;
	}
	reader_confirm(st);
}

static bool reader_batch(void *arg, const uint8_t *body, size_t len,
		const struct source_batch_info *info)
{
	struct stream *st = arg;
	struct spool_meta meta = {
		.first_lsn = info->first_lsn,
		.commit_end_lsn = info->commit_end_lsn,
		.commit_time_us = info->commit_time,
		.spooled_at_us = clock_wall_us(),
		.transactions = info->transactions,
		.flags = info->continues ? SPOOL_FLAG_CONTINUES : 0,
	};
	const uint8_t *rec;
	size_t rec_len;
	char err[256];

	if (!st->reader->spool)
		return false;
	/* a sink may resume at any record: each carries the Relation messages it uses */
	if (!relcache_complete(st->reader->relcache, body, len, info->lead, info->continues, &rec, &rec_len))
		log_warning("stream \"%s\": a batch at " LSN_FMT " is not a sequence of messages; "
			    "spooled as it is",
			    st->name, LSN_ARGS(info->first_lsn));
	if (!spool_append(st->reader->spool, &meta, rec, rec_len, err, sizeof(err))) {
		reader_fail_spool(st, err);
		return false;
	}
	if (!reachback_record(st->reader->reach, spool_last_pos(st->reader->spool), info->commit_end_lsn,
			      info->batch_no, info->starts_stream, info->open_since)) {
		reader_fail_spool(st, "out of memory noting a streamed transaction");
		return false;
	}
	st->reader->bytes_spooled += len;
	st->reader->txn_open = info->commit_end_lsn == 0;
	FOR_EACH_DEST(d, st)
		if (info->commit_end_lsn)
			lag_commit_sent(d->lag, info->commit_end_lsn, info->commit_time);
	if (st->cs->durability == CONFIG_DURABILITY_SPOOL &&
	    !event_pending(st->reader->sync_event, EV_TIMEOUT, NULL))
		event_active(st->reader->sync_event, EV_TIMEOUT, 0);
	FOR_EACH_DEST(d, st)
		sender_kick(d);
	/*
	 * The cap applies at transaction ends: the sink commits only whole
	 * transactions, so a spool stopped in the middle of one would never be
	 * acknowledged and never drain. It may exceed spool_max by one transaction.
	 */
	if (spool_bytes(st->reader->spool) >= st->reader->spool_max && !st->reader->txn_open) {
		if (!st->reader->spool_full)
			log_warning("stream \"%s\": the spool is full (%" PRIu64 " of %" PRIu64
				    " bytes): reading stops, the slot holds WAL until the sink catches up",
				    st->name, spool_bytes(st->reader->spool), st->reader->spool_max);
		st->reader->spool_full = true;
	}
	FOR_EACH_DEST(d, st)
		lag_set_pending(d->lag, st->reader->txn_open || st->reader->spool_full);
	return !st->reader->spool_full;
}

/*
 * A new source connection: the server sends each streamed transaction still
 * open from its start again (or not at all, when it ended meanwhile), so the
 * blocks spooled before are void. The sink learns it in order, from a
 * message of strait's own (streamspill.h).
 */
static void reader_spool_void(struct stream *st)
{
	static const uint8_t body[5] = { 0, 0, 0, 1, STREAMSPILL_MSG_VOID };
	const uint8_t *rec;
	size_t rec_len;
	struct spool_meta meta = { .spooled_at_us = clock_wall_us() };
	char err[256];

	reachback_new_connection(st->reader->reach);
	(void)relcache_complete(st->reader->relcache, body, sizeof(body), 0, false, &rec, &rec_len);
	if (!spool_append(st->reader->spool, &meta, body, sizeof(body), err, sizeof(err)) ||
	    !reachback_record(st->reader->reach, spool_last_pos(st->reader->spool), 0, 0, false, 0)) {
		reader_fail_spool(st, err);
		return;
	}
	/* like a block: cut again when the reader stops before a commit follows */
	st->reader->txn_open = true;
}

static void reader_try_start(struct stream *st)
{
	uint64_t snap_lsn;

	st = st->lead;
	if (st->reader->reading || !st->reader->source || !source_is_ready(st->reader->source) || !st->reader->spool ||
	    st->reader->spool_full)
		return;
	/* the copy imports a new slot's snapshot first (see the notes) */
	if (st->sync && source_exported_snapshot(st->reader->source, &snap_lsn))
		return;
	if (source_start(st->reader->source, spool_end_lsn(st->reader->spool))) {
		st->reader->reading = true;
		reader_spool_void(st);
	}
}

static void reader_ready(void *arg, uint64_t confirmed_lsn)
{
	struct stream *st = arg;
	char err[256];

	st->reader->confirmed_lsn = confirmed_lsn;
	/* an empty spool continues from where the slot is: nothing before it can be sent */
	if (st->reader->spool && spool_records(st->reader->spool) == 0 &&
	    !spool_set_floor(st->reader->spool, confirmed_lsn, err, sizeof(err))) {
		reader_fail_spool(st, err);
		return;
	}
	FOR_EACH_DEST(d, st)
		if (st->cs->durability == CONFIG_DURABILITY_REMOTE)
			lag_acked(d->lag, confirmed_lsn, 0);  /* applied at every sink, at least */
	st->reader->failures = 0;
	/* the publication exists now: its tables are the stream's from here */
	if (st->reader->pubwatch && !pubwatch_ready(st->reader->pubwatch))
		pubwatch_poll_now(st->reader->pubwatch);
	FOR_EACH_DEST(d, st)
		if (d->sync)
			streamsync_source_ready(d->sync, st->reader->source);
	reader_confirm(st);
	reader_try_start(st);
}

static void reader_wal(void *arg, uint64_t wal_end, int64_t server_time_us)
{
	struct stream *st = arg;

	(void)server_time_us;
	/*
	 * Caught up, the slot's flush position follows the server's (unrelated
	 * WAL): so does what counts as applied, as PostgreSQL's view of the slot.
	 */
	FOR_EACH_DEST(d, st) {
		if (lag_caught_up(d->lag) && st->reader->source && source_reported_flush(st->reader->source))
			lag_acked(d->lag, source_reported_flush(st->reader->source), 0);
		lag_wal_position(d->lag, wal_end);
		stream_verify_mark_check(d, false);
	}
}

/* The source failed; it may not be freed inside its own callback: retry from a timer. */
static void reader_stopped(void *arg, const char *reason)
{
	struct stream *st = arg;
	unsigned ms = STREAM_RETRY_MIN_MS;
	char err[256];

	FOR_EACH_DEST(d, st)
		snprintf(d->last_error, sizeof(d->last_error), "%s", reason);
	st->reader->reading = false;
	if (st->reader->txn_open && st->reader->spool) {
		/* read again whole from the slot */
		if (!spool_truncate_incomplete(st->reader->spool, err, sizeof(err)))
			reader_fail_spool(st, err);
		st->reader->txn_open = false;
	}
	for (unsigned i = 0; i < st->reader->failures && ms < STREAM_RETRY_MAX_MS; i++)
		ms *= 2;
	if (ms > STREAM_RETRY_MAX_MS)
		ms = STREAM_RETRY_MAX_MS;
	st->reader->failures++;
	stream_schedule_retry(st, ms);
}

static void reader_make(struct stream *st)
{
	static const struct source_callbacks cb = {
		.ready = reader_ready,
		.batch = reader_batch,
		.wal_position = reader_wal,
		.stopped = reader_stopped,
	};

	st->reader->reading = false;
	st->reader->confirmed_lsn = 0;
	st->reader->source = source_new(st->owner->base, &st->reader->src_cfg, &cb, st);
	if (!st->reader->source) {
		log_error("stream \"%s\": out of memory creating the source", st->name);
		stream_schedule_retry(st, STREAM_RETRY_MAX_MS);
	}
}

static bool reader_open_spool(struct stream *st)
{
	struct spool_recovery rec;
	uint64_t seg = st->reader->spool_max / 16;
	char err[256];

	if (seg < STREAM_SEGMENT_MIN)
		seg = STREAM_SEGMENT_MIN;
	if (seg > STREAM_SEGMENT_MAX)
		seg = STREAM_SEGMENT_MAX;
	st->reader->spool = spool_open(st->reader->spool_dir, seg, &rec, err, sizeof(err));
	if (!st->reader->spool && rec.fsync_failed) {
		st->reader->spool_broken = true;
		log_error("stream \"%s\": %s; an fsync failed, so what is spooled cannot be trusted: "
			  "the stream stops (the slot keeps what was not durably spooled); fix the disk "
			  "and restart straitd", st->name, err);
		snprintf(st->last_error, sizeof(st->last_error), "spool: %s", err);
		return false;
	}
	if (!st->reader->spool) {
		log_error("stream \"%s\": %s", st->name, err);
		snprintf(st->last_error, sizeof(st->last_error), "spool: %s", err);
		return false;
	}
	if (rec.dropped_bytes)
		log_warning("stream \"%s\": spool recovered: dropped %" PRIu64 " bytes at its end (%s%s); "
			    "they are read again from the slot", st->name, rec.dropped_bytes,
			    rec.torn ? "torn or corrupt: " : "an unfinished transaction",
			    rec.torn ? rec.detail : "");
	if (rec.records)
		log_info("stream \"%s\": spool holds %" PRIu64 " records (%" PRIu64 " bytes) up to " LSN_FMT,
			 st->name, rec.records, rec.bytes, LSN_ARGS(spool_end_lsn(st->reader->spool)));
	st->reader->spool_full = spool_bytes(st->reader->spool) >= st->reader->spool_max;
	return true;
}

/* The retry timer: a failed source (or spool) is made anew. */
void stream_source_retry(struct stream *st)
{
	st = st->lead;
	if (st->reader->spool_broken)
		return;
	source_free(st->reader->source);
	st->reader->source = NULL;
	st->reader->reading = false;
	if (!st->reader->spool && !reader_open_spool(st)) {
		if (!st->reader->spool_broken)
			stream_schedule_retry(st, STREAM_RETRY_MAX_MS);
		return;
	}
	reader_make(st);
}

/* ---------------------------------------------------------------- sender */

/*
 * Coalescing (coalesce.h): a frame carries every unread record (up to
 * STREAM_FRAME_RAW) and waits while records keep coming. A backlog of
 * STREAM_COALESCE_BYTES goes at once, and so does the spool when the sink
 * resumes.
 */
#define STREAM_COALESCE_BYTES (64u * 1024u)
/*
 * A short queue. A destination sends while its last frame is less than this
 * from leaving the link's output buffer (with whatever went between its
 * frames; not what others queued after it): on a slow link the backlog
 * waits in the spool rather than compressed in a queue of seconds, so the
 * next frames go packed bigger and at the zstd level of the moment they
 * leave (complevel.h), and the time spent waiting tells the link is the
 * limit. What the kernel holds unsent (the relay's TCP_NOTSENT_LOWAT) keeps
 * a fast link busy meanwhile.
 */
#define STREAM_LINK_QUEUE (64u * 1024u)
/* A frame holds at most this (raw), or one larger record alone. */
#define STREAM_FRAME_RAW STREAM_BATCH_MAX

/*
 * The frame being packed: the bodies of consecutive spool records, which are
 * sequences of pgoutput messages, so their concatenation is one too. It is
 * filled and sent within one sender_pump() call, so one buffer serves every
 * stream; stream_source_fini() frees it.
 */
struct sender_frame {
	uint64_t prev_lsn;       /* the end of the last whole transaction before its first record */
	uint64_t first_lsn;      /* of the first record */
	uint64_t last_lsn;       /* the last whole transaction's end among the records, 0 if none */
	bool ends_txn;           /* the last record ends a transaction (only a big one's parts do not) */
	bool continues;          /* the last record ends inside a message (a piece of a large one) */
	size_t len;
	unsigned records;
};

static uint8_t *sender_buf;
static size_t sender_buf_cap;

/* Spooled bytes this destination has not been sent yet. */
static uint64_t sender_unread(const struct stream *st)
{
	return st->sender.cursor ? spool_cursor_unread_bytes(st->sender.cursor) : 0;
}

/* Sends at the next loop pass, whatever is unread. */
static void sender_now(struct stream *st)
{
	if (!st->sender.sending)
		return;
	event_del(st->sender.pump_event);  /* a coalescing or token-bucket wait: looked at again */
	coalesce_sent(&st->sender.coalesce);
	event_active(st->sender.pump_event, EV_TIMEOUT, 0);
}

/* Something was spooled or may go now: send once enough waits, or after the delay. */
static void sender_kick(struct stream *st)
{
	int64_t now = clock_mono_us(), wait;

	if (!st->sender.sending)
		return;
	if (sender_unread(st) >= STREAM_COALESCE_BYTES && token_bucket_ready(&st->sender.bucket, now)) {
		sender_now(st);
		return;
	}
	/* a wait on the rate is not brought forward */
	if (!coalesce_waiting(&st->sender.coalesce) &&
	    event_pending(st->sender.pump_event, EV_TIMEOUT, NULL))
		return;
	wait = coalesce_note(&st->sender.coalesce, now) - now;
	event_add(st->sender.pump_event, &(struct timeval){ wait / 1000000, wait % 1000000 });
}

/*
 * Counts one record into the frame's LSNs and size (its body is copied by the
 * caller, or not); prev is the spool cursor's prev_lsn before the record was read.
 */
static void sender_frame_note(struct sender_frame *f, const struct spool_meta *meta, size_t len,
		uint64_t prev)
{
	if (!f->records) {
		f->first_lsn = meta->first_lsn;
		f->prev_lsn = prev;
	}
	if (meta->commit_end_lsn)
		f->last_lsn = meta->commit_end_lsn;
	f->ends_txn = meta->commit_end_lsn != 0;
	f->continues = (meta->flags & SPOOL_FLAG_CONTINUES) != 0;
	f->len += len;
	f->records++;
}

/* Appends one record to the packed frame; false (f untouched) when out of memory. */
static bool sender_frame_add(struct sender_frame *f, const struct spool_meta *meta,
		const uint8_t *body, size_t len, uint64_t prev)
{
	if (f->len + len > sender_buf_cap) {
		size_t cap = sender_buf_cap ? sender_buf_cap : 64u * 1024u;
		uint8_t *p;

		while (cap < f->len + len)
			cap *= 2;
		if (!(p = realloc(sender_buf, cap)))
			return false;
		sender_buf = p;
		sender_buf_cap = cap;
	}
	memcpy(sender_buf + f->len, body, len);
	sender_frame_note(f, meta, len, prev);
	return true;
}

static void window_reset(struct stream *st, uint64_t held)
{
	st->sender.window_sent = held;
	st->sender.window_freed = 0;
	st->sender.window_mid_msg = false;
}

static bool window_open(const struct stream *st)
{
	return st->sender.window_sent - st->sender.window_freed < STREAM_WINDOW_BYTES ||
	       st->sender.window_freed > st->sender.window_sent;
}

/* An ACK of the current generation says how much the sink freed. */
static void window_freed(struct stream *st, const struct relay_proto_ack *ack)
{
	bool was_open = window_open(st);

	if (ack->generation != st->sender.generation || ack->released_bytes <= st->sender.window_freed)
		return;
	st->sender.window_freed = ack->released_bytes;
	if (!was_open && window_open(st))
		sender_kick(st);
}

/* The sender waits on its link or its rate from now (the level's measure of what limits it). */
static void sender_wait_begin(struct stream *st, int64_t now)
{
	if (!st->sender.wait_since)
		st->sender.wait_since = now;
}

static void sender_wait_end(struct stream *st, int64_t now)
{
	if (st->sender.wait_since) {
		st->sender.waited_us += (uint64_t)(now - st->sender.wait_since);
		st->sender.wait_since = 0;
	}
}

/*
 * Whether the link still holds STREAM_LINK_QUEUE bytes or more up to this
 * destination's last frame; if so, writable() is asked for once less does.
 */
static bool sender_link_full(struct stream *st)
{
	uint64_t queued, drained, ahead;

	if (!relay_output_position(st->owner->relay, st->peer, &queued, &drained) ||
	    st->sender.queued_end <= drained)
		return false;
	ahead = st->sender.queued_end - drained;
	if (ahead < STREAM_LINK_QUEUE)
		return false;
	/* drained past queued_end - STREAM_LINK_QUEUE: what is queued now, less that */
	relay_wait_output(st->owner->relay, st->peer,
			  (size_t)(queued - drained - (ahead - STREAM_LINK_QUEUE) - 1));
	return true;
}

/* Sends frame f, whose records are body, as one BATCH and empties it; false when the link went down. */
static bool sender_batch(struct stream *st, struct sender_frame *f, const uint8_t *body,
		int64_t now_us)
{
	struct streams *s = st->owner;
	struct sender_frame fr = *f;
	struct relay_proto_batch b;
	const uint8_t *wire;
	size_t wire_len;
	uint64_t drained;
	char err[256];
	int64_t t0;
	bool coded, tail;

	if (!fr.records)
		return true;
	*f = (struct sender_frame){ 0 };
	t0 = clock_mono_us();
	coded = codec_run(st->sender.enc, body, fr.len, SIZE_MAX, &wire, &wire_len, err, sizeof(err));
	st->sender.compress_ns += (uint64_t)(clock_mono_us() - t0) * 1000u;
	if (!coded) {
		log_error("stream \"%s\": %s", st->name, err);
		return false;
	}
	b = (struct relay_proto_batch){
		.stream = relay_proto_str(st->name),
		/* a frame that ends no transaction continues one: no LSNs */
		.first_lsn = fr.last_lsn && fr.first_lsn <= fr.last_lsn ? fr.first_lsn : 0,
		.last_lsn = fr.last_lsn,
		.prev_lsn = fr.prev_lsn,
		.generation = st->sender.generation,
		.seq = st->sender.send_seq,
		.flags = fr.continues ? RELAY_BATCH_CONTINUES : 0,
		.raw_len = (uint32_t)fr.len,
		.data = wire,
		.data_len = wire_len,
	};
	wire_writer_reset(&s->out);
	if (!relay_proto_write_batch(&s->out, &b)) {
		/* never skipped: the stream stops here, loudly, until a resume tries again */
		snprintf(st->last_error, sizeof(st->last_error), "a batch at " LSN_FMT " of %zu bytes "
			 "(%zu compressed) does not fit in a relay frame: the stream stops here",
			 LSN_ARGS(fr.first_lsn), fr.len, wire_len);
		log_error("stream \"%s\": %s", st->name, st->last_error);
		st->sender.oversized = true;
		return false;
	}
	if (!stream_send(st, FRAME_BATCH, codec_compresses(st->sender.enc) ? FRAME_FLAG_COMPRESSED : 0))
		return false;  /* the next HELLO says where to go on */
	(void)relay_output_position(s->relay, st->peer, &st->sender.queued_end, &drained);
	st->sender.window_sent += fr.len;
	st->sender.window_mid_msg = fr.continues;
	/* a tail: nothing follows it but after the sink's ACK or a new record */
	tail = sender_unread(st) == 0 || !window_open(st) || st->sender.sched.held;
	stream_charge(st, relay_batch_sent(s->relay, st->peer, tail), now_us);
	st->sender.send_seq++;
	st->sender.batches_sent++;
	st->sender.bytes_raw += fr.len;
	st->sender.bytes_wire += wire_len;
	return true;
}

/*
 * Packs the records read next into f until it is full or the spool has no
 * more (*more false); a record that would overfill f sends it first. -1 when
 * sending failed (the link went down), -2 when the spool did (handled).
 */
static int sender_fill(struct stream *st, struct sender_frame *f, size_t *sent, bool *more,
		int64_t now_us)
{
	/*
	 * A frame sent on the way may close the window, end the slice or fill
	 * the link's queue: the caller looks again.
	 */
	while (f->len < STREAM_FRAME_RAW && *sent < STREAM_PUMP_SLICE &&
	       (window_open(st) || st->sender.window_mid_msg) && (f->records || !sender_link_full(st))) {
		uint64_t prev = spool_cursor_prev(st->sender.cursor);
		struct spool_meta meta;
		const uint8_t *body;
		size_t len;
		char err[256];
		int r = spool_cursor_read(st->sender.cursor, &meta, &body, &len, err, sizeof(err));

		if (r == 0) {
			*more = false;
			break;
		}
		if (r < 0) {
			reader_fail_spool(st, err);
			return -2;
		}
		*sent += len;
		/*
		 * Too big, or the start of a transaction that spans records after
		 * whole ones: the whole ones go first, so a frame ends at a commit
		 * unless it holds parts of one transaction only (as records do).
		 */
		if (f->records && (f->len + len > STREAM_FRAME_RAW ||
				   (f->last_lsn && !meta.commit_end_lsn)) &&
		    !sender_batch(st, f, sender_buf, now_us))
			return -1;
		if (!sender_frame_add(f, &meta, body, len, prev)) {
			/* no memory to pack: what is packed goes, then this record alone */
			struct sender_frame one = { 0 };

			sender_frame_note(&one, &meta, len, prev);
			if (!sender_batch(st, f, sender_buf, now_us) ||
			    !sender_batch(st, &one, body, now_us))
				return -1;
		}
	}
	return 0;
}

static void sender_pump(struct stream *st)
{
	struct streams *s = st->owner;
	struct sender_frame f = { 0 };
	size_t sent = 0;
	bool more = true;

	coalesce_sent(&st->sender.coalesce);   /* what waits goes now, or waits on the link or rate */

	while (more && st->sender.sending && st->sender.cursor && !st->sender.sched.held &&
	       relay_is_up(s->relay, st->peer)) {
		int64_t now = clock_mono_us(), wait;
		int r;

		if (relay_output_pending(s->relay, st->peer) >= RELAY_OUTPUT_HIGH || sender_link_full(st)) {
			sender_wait_begin(st, now);
			return;       /* writable() goes on */
		}
		sender_wait_end(st, now);
		/* the sink applies whole messages only: one is never cut by the window */
		if (!window_open(st) && !st->sender.window_mid_msg)
			return;       /* an ACK goes on (the sink's pace: no reason for the level) */
		if (!token_bucket_ready(&st->sender.bucket, now)) {
			sender_wait_begin(st, now);
			wait = token_bucket_wait_us(&st->sender.bucket, now);
			if (wait > 0)
				event_add(st->sender.pump_event,
					  &(struct timeval){ wait / 1000000, wait % 1000000 });
			return;
		}
		sender_wait_end(st, now);
		if (sent >= STREAM_PUMP_SLICE) {
			sender_now(st);
			return;
		}
		r = sender_fill(st, &f, &sent, &more, now);
		if (r == -2)
			return;
		if (r < 0 || !sender_batch(st, &f, sender_buf, now)) {
			st->sender.sending = false;
			return;
		}
	}
	/* everything spooled may be out now: a verify's MARK can follow it */
	stream_verify_mark_check(st, false);
	/* what the live stream had is out: an initial-sync copy may use the link */
	if (st->sync && relay_output_pending(s->relay, st->peer) < RELAY_OUTPUT_HIGH)
		streamsync_writable(st->sync);
}

static void sender_pump_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	sender_pump(arg);
}

/* The sink needs what the spool no longer holds: the stream stops, loudly. */
static void sender_gap(struct stream *st, const char *err)
{
	log_error("stream \"%s\": gap: %s; nothing after it is sent to \"%s\". The target "
		  "misses committed transactions: re-sync the stream (initial sync into an emptied "
		  "target) to go on", st->name, err, st->peer);
	snprintf(st->last_error, sizeof(st->last_error), "gap: %s", err);
	st->sender.gap = true;
	st->sender.sending = false;
}

void stream_source_resume_at(struct stream *st, const struct relay_proto_position *pos,
		uint32_t generation)
{
	uint64_t snap_lsn, prev, lsn = pos->received_lsn;
	struct spool_pos from;
	char err[256];

	st->sender.sending = false;
	if (st->sync && lsn == 0) {
		/* the sink asks for a copy round; it says where to stream once loaded */
		st->sender.have_resume = false;
		streamsync_source_request(st->sync, generation, st->reader->source);
		return;
	}
	if (st->sync)
		streamsync_source_stop(st->sync);
	/* no copy needs a new slot's snapshot now: let the reader start */
	if (st->reader->source && source_exported_snapshot(st->reader->source, &snap_lsn))
		source_release_snapshot(st->reader->source);
	if (st->relay) {
		log_info("stream \"%s\": \"%s\" takes its batches from \"%s\" (via): nothing is sent "
			 "from here", st->name, st->peer, st->relay);
		return;
	}
	st->sender.have_resume = true;
	st->sender.resume_lsn = lsn;
	st->sender.generation = generation;
	st->sender.send_seq = 0;
	st->sender.oversized = false;
	st->sender.queued_end = 0;   /* a new link counts from 0; on the same one nothing of ours waits */
	/* what the sink holds counts against the window until its ACKs free it */
	window_reset(st, pos->queued_bytes);
	/* committed is the only acknowledgement: received is where to send from */
	stream_source_ack(st, &(struct relay_proto_ack){ .committed_lsn = pos->committed_lsn });
	reader_try_start(st);
	if (!st->reader->spool)
		return;
	if (!st->sender.cursor && !(st->sender.cursor = spool_cursor_new(st->reader->spool, err, sizeof(err)))) {
		reader_fail_spool(st, err);
		return;
	}
	/* streamed transactions open there go again from their first block */
	switch (spool_cursor_seek_from(st->sender.cursor, lsn,
				       reachback_at(st->reader->reach, lsn, &from) ? &from : NULL,
				       &prev, err, sizeof(err))) {
	case SPOOL_SEEK_OK:
		break;
	case SPOOL_SEEK_GAP:
		sender_gap(st, err);
		return;
	case SPOOL_SEEK_ERROR:
		reader_fail_spool(st, err);
		return;
	}
	if (st->sender.gap) {
		log_info("stream \"%s\": \"%s\" resumes within the spool again: the gap is gone",
			 st->name, st->peer);
		st->sender.gap = false;
		st->last_error[0] = '\0';
	}
	codec_reset(st->sender.enc);
	st->sender.sending = true;
	sender_now(st);
}

void stream_source_ack(struct stream *st, const struct relay_proto_ack *ack)
{
	uint64_t all;
	char err[256];

	lag_acked(st->lag, ack->committed_lsn, ack->commit_time_us);
	window_freed(st, ack);
	if (ack->committed_lsn <= st->sender.acked_lsn)
		return;
	st->sender.acked_lsn = ack->committed_lsn;
	if (ack->commit_time_us)
		st->sender.acked_commit_time = ack->commit_time_us;
	(void)fault_hit("source.ack_received");
	all = reader_acked_by_all(st);
	if (st->reader->spool) {
		struct spool_pos keep;
		bool keeping = reachback_at(st->reader->reach, all, &keep);

		reachback_release(st->reader->reach, all);
		if (spool_release_keep(st->reader->spool, all, keeping ? &keep : NULL,
				       err, sizeof(err)) < 0) {
			reader_fail_spool(st, err);
			return;
		}
		if (st->reader->spool_full && spool_bytes(st->reader->spool) < st->reader->spool_max) {
			st->reader->spool_full = false;
			log_info("stream \"%s\": the spool has room again (%" PRIu64 " of %" PRIu64
				 " bytes): reading goes on", st->name, spool_bytes(st->reader->spool),
				 st->reader->spool_max);
			FOR_EACH_DEST(d, st)
				lag_set_pending(d->lag, st->reader->txn_open);
			if (st->reader->reading && st->reader->source)
				source_resume_reading(st->reader->source);
			else
				reader_try_start(st);
		}
	}
	reader_confirm(st);
}

void stream_source_link_up(struct stream *st)
{
	seq_reader_resend_all(st->reader->seq_reader);
}

void stream_source_link_down(struct stream *st)
{
	/* the reader goes on into the spool; the next HELLO says where to send from */
	st->sender.have_resume = false;
	st->sender.sending = false;
	st->sender.wait_since = 0;
}

void stream_source_writable(struct stream *st)
{
	sender_pump(st);
}

/* ------------------------------------------------------------- warnings */

/* The slot's and the disks' warnings now (diskwarn.h). */
static void stream_warnings(const struct stream *st, struct diskwarn_list *l)
{
	char err[256];
	char slot[128];

	memset(l, 0, sizeof(*l));
	source_slot_name(st->name, slot, sizeof(slot));
	diskwarn_slot(st->reader->slotwatch ? slotwatch_last(st->reader->slotwatch) : NULL, slot, l);
	if (!diskwarn_spool(st->owner->cfg->state_dir, st->reader->spool ? spool_bytes(st->reader->spool) : 0,
			    st->reader->spool_max, l, err, sizeof(err)))
		log_debug("stream \"%s\": %s", st->name, err);
}

/* Logs the warnings when their worst level changes (not at every tick). */
static void stream_warnings_check(struct stream *st)
{
	struct diskwarn_list l;
	enum diskwarn_level worst;

	stream_warnings(st, &l);
	worst = diskwarn_worst(&l);
	if ((int)worst == st->reader->warn_level)
		return;
	for (size_t i = 0; i < l.n; i++) {
		if (l.w[i].level == DISKWARN_CRITICAL)
			log_error("stream \"%s\": %s", st->name, l.w[i].text);
		else
			log_warning("stream \"%s\": %s", st->name, l.w[i].text);
	}
	if (worst == DISKWARN_NONE)
		log_info("stream \"%s\": no disk warnings any more", st->name);
	st->reader->warn_level = (int)worst;
}

void stream_source_warnings_json(const struct stream *st, struct json_out *j)
{
	const struct slot_sample *smp = st->reader->slotwatch ? slotwatch_last(st->reader->slotwatch) : NULL;
	struct diskwarn_list l;

	stream_warnings(st, &l);
	json_array_begin(j, "warnings");
	for (size_t i = 0; i < l.n; i++) {
		json_object_begin(j, NULL);
		json_string(j, "level", diskwarn_level_name(l.w[i].level));
		json_string(j, "kind", l.w[i].kind);
		json_string(j, "text", l.w[i].text);
		json_object_end(j);
	}
	json_array_end(j);
	json_object_begin(j, "slot");
	if (smp && smp->retained_known)
		json_uint(j, "retained_bytes", smp->retained_bytes);
	else
		json_null(j, "retained_bytes");
	if (smp && smp->max_keep_known)
		json_int(j, "max_slot_wal_keep_size", smp->max_slot_wal_keep_size);
	else
		json_null(j, "max_slot_wal_keep_size");
	if (smp && smp->wal_disk_known)
		json_uint(j, "wal_disk_free_bytes", smp->wal_disk_free);
	else
		json_null(j, "wal_disk_free_bytes");
	json_string(j, "wal_status", smp && smp->wal_status[0] ? smp->wal_status : NULL);
	json_string(j, "invalidation_reason", smp && smp->invalidation_reason[0] ?
					      smp->invalidation_reason : NULL);
	if (smp && smp->inactive_known)
		json_int(j, "inactive_seconds", smp->inactive_seconds);
	else
		json_null(j, "inactive_seconds");
	if (smp && smp->idle_timeout_known)
		json_int(j, "idle_replication_slot_timeout", smp->idle_timeout_seconds);
	else
		json_null(j, "idle_replication_slot_timeout");
	json_object_end(j);
	if (smp)
		pgversion_json(j, "source_server", smp->server_version, PGVERSION_SOURCE);
}

/* ------------------------------------------------------------- schedule */

static bool schedule_differs(const struct schedule_state *a, const struct schedule_state *b)
{
	return a->held != b->held || a->rate.unlimited != b->rate.unlimited ||
	       a->rate.bytes_per_sec != b->rate.bytes_per_sec || a->rule != b->rule ||
	       a->window != b->window || a->one_off != b->one_off;
}

/* Re-evaluates the schedule when it may have changed; force after a reload or sync-now. */
static void schedule_update(struct stream *st, bool force)
{
	time_t now = (time_t)(clock_wall_us() / 1000000);
	struct schedule_state next;

	if (st->sender.one_off_until && now >= st->sender.one_off_until) {
		log_info("stream \"%s\": the sync-now window closed", st->name);
		st->sender.one_off_until = 0;
		st->sender.one_off_drain = false;
		force = true;
	}
	if (!force && st->sender.sched_clock_gen == clock_generation() && now < st->sender.sched_recheck)
		return;
	st->sender.sched_clock_gen = clock_generation();
	schedule_eval(st->cs, now, st->sender.one_off_until, &next);
	if (next.one_off && st->sender.one_off_drain)
		snprintf(next.why, sizeof(next.why), "sync-now until the spool is drained");
	if (force || schedule_differs(&st->sender.sched, &next)) {
		if (schedule_differs(&st->sender.sched, &next))
			log_info("stream \"%s\": %s: %s", st->name, next.held ? "held" : "sending", next.why);
		token_bucket_set(&st->sender.bucket, next.rate.unlimited, next.rate.bytes_per_sec, 0,
				 clock_mono_us());
	}
	if (st->sender.sched.held && !next.held)
		seq_reader_resend_all(st->reader->seq_reader);
	st->sender.sched = next;
	/* nothing changes within the horizon: look again in an hour */
	st->sender.sched_recheck = next.next_change ? next.next_change : now + 3600;
	if (!st->sender.sched.held)
		sender_kick(st);
}

/*
 * Once a tick: the zstd level follows what limits this destination's sender
 * (complevel.h): the link or the rate with a backlog, or the CPU.
 */
static void sender_adapt_level(struct stream *st)
{
	int64_t now = clock_mono_us();
	struct complevel_sample smp = {
		.backlog = sender_unread(st),
		.sent = st->sender.bytes_raw - st->sender.raw_at_tick,
		.busy_share = (double)st->sender.compress_ns / (STREAM_TICK_MS * 1e6),
	};
	int next;

	/* a wait that goes on counts up to now, and on into the next tick */
	if (st->sender.wait_since) {
		st->sender.waited_us += (uint64_t)(now - st->sender.wait_since);
		st->sender.wait_since = now;
	}
	if (st->sender.sending && !st->sender.sched.held) {
		smp.wait_share = (double)st->sender.waited_us / (STREAM_TICK_MS * 1e3);
		smp.link_backlog = relay_output_unsent(st->owner->relay, st->peer);
		smp.link_sent = st->sender.bytes_wire - st->sender.wire_at_tick;
	}
	st->sender.compress_ns = 0;
	st->sender.waited_us = 0;
	st->sender.raw_at_tick = st->sender.bytes_raw;
	st->sender.wire_at_tick = st->sender.bytes_wire;
	if (!codec_compresses(st->sender.enc))
		return;
	next = complevel_tick(&st->sender.level, &smp);
	if (next == codec_level(st->sender.enc))
		return;
	if (codec_set_level(st->sender.enc, next))
		log_info("stream \"%s\" to \"%s\": zstd level %d (%s)", st->name, st->peer, next,
			 complevel_reason(&st->sender.level));
}

static void source_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct stream *st = arg;

	(void)fd;
	(void)what;
	/*
	 * sync-now without --for closes once everything spooled has gone out and
	 * been applied, two ticks in a row (the reader may be a moment behind).
	 */
	if (st->sender.one_off_drain && st->reader->spool && sender_unread(st) == 0 &&
	    !st->reader->txn_open && st->sender.sending && lag_bytes(st->lag) == 0)
		st->sender.drained_ticks++;
	else
		st->sender.drained_ticks = 0;
	if (st->sender.drained_ticks >= 2) {
		log_info("stream \"%s\": drained: the sync-now window closes", st->name);
		st->sender.one_off_until = 0;
		st->sender.one_off_drain = false;
		st->sender.drained_ticks = 0;
		schedule_update(st, true);
	} else {
		schedule_update(st, false);
	}
	reader_try_start(st);
	stream_warnings_check(st);
	sender_adapt_level(st);
	event_add(st->sender.tick, &(struct timeval){ STREAM_TICK_MS / 1000, (STREAM_TICK_MS % 1000) * 1000 });
}

bool stream_source_sync_now(struct stream *st, uint64_t for_seconds, char *msg, size_t msglen)
{
	time_t now = (time_t)(clock_wall_us() / 1000000);

	st->sender.one_off_drain = for_seconds == 0;
	st->sender.one_off_until = now + (time_t)(for_seconds ? for_seconds : STREAM_DRAIN_MAX_S);
	schedule_update(st, true);
	if (st->sender.one_off_drain)
		snprintf(msg, msglen, "stream %s to %s: sending now, unlimited, until its spool is "
			 "drained (%" PRIu64 " bytes to send)\n", st->name, st->peer, sender_unread(st));
	else
		snprintf(msg, msglen, "stream %s to %s: sending now, unlimited, for %" PRIu64 " s\n",
			 st->name, st->peer, for_seconds);
	if (st->sender.one_off_drain)
		log_info("stream \"%s\": sync-now: sending until the spool is drained", st->name);
	else
		log_info("stream \"%s\": sync-now: sending for %" PRIu64 " s", st->name, for_seconds);
	return true;
}

/* ---------------------------------------------------- the publication's tables */

static void stream_pub_changed(void *arg, const struct pubwatch_change *changes, size_t n)
{
	struct stream *st = arg;

	for (size_t i = 0; i < n; i++) {
		if (changes[i].added && st->join)
			log_info("stream \"%s\": table %s was added to publication \"%s\": it joins the "
				 "stream (copied to every destination with the rows it has)", st->name,
				 changes[i].name, st->reader->src_publication);
		else if (changes[i].added)
			log_warning("stream \"%s\": table %s was added to publication \"%s\": its changes "
				    "stream from the addition on; the rows it had before are not copied",
				    st->name, changes[i].name, st->reader->src_publication);
		else
			log_warning("stream \"%s\": table %s is no longer in publication \"%s\": its "
				    "changes are not applied any more", st->name, changes[i].name,
				    st->reader->src_publication);
	}
}

/* Every answer goes to the sink, which copies what joined and lets go of what left. */
static void stream_pub_listed(void *arg, const char *const *schemas, const char *const *tables,
		size_t n, uint64_t lsn)
{
	struct stream *st = arg;

	FOR_EACH_DEST(d, st)
		if (d->join)
			streamjoin_source_list(d->join, schemas, tables, n, lsn);
}

static void stream_pubalter_done(void *arg, const PGresult *res, const char *err)
{
	struct stream *st = arg;

	if (res && PQresultStatus(res) == PGRES_COMMAND_OK)
		log_notice("stream \"%s\": publication \"%s\" now lists the configured tables", st->name,
			   st->reader->src_publication);
	else
		log_error("stream \"%s\": could not set the tables of publication \"%s\": %s", st->name,
			  st->reader->src_publication, err ? err : "no answer");
	if (st->reader->pubwatch)
		pubwatch_poll_now(st->reader->pubwatch);
}

/* name[0..len) as a quoted identifier. */
static void stream_put_ident(FILE *out, const char *name, size_t len)
{
	fputc('"', out);
	for (size_t i = 0; i < len; i++) {
		if (name[i] == '"')
			fputc('"', out);
		fputc(name[i], out);
	}
	fputc('"', out);
}

/* "ALTER PUBLICATION p SET TABLE a, s.b" for a tables: list, each part quoted; NULL: OOM. */
static char *stream_pubalter_sql(const char *publication, char *const *tables, size_t n)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);

	if (!out)
		return NULL;
	fputs("ALTER PUBLICATION ", out);
	stream_put_ident(out, publication, strlen(publication));
	fputs(" SET TABLE ", out);
	for (size_t i = 0; i < n; i++) {
		const char *t = tables[i], *dot = strchr(t, '.');

		fputs(i ? ", " : "", out);
		if (dot) {
			stream_put_ident(out, t, (size_t)(dot - t));
			fputc('.', out);
			t = dot + 1;
		}
		stream_put_ident(out, t, strlen(t));
	}
	if (fclose(out) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

/*
 * A reload changed the tables: list: the publication is set to it (ALTER
 * PUBLICATION ... SET TABLE); the watcher then sees what was added or
 * removed. A list cannot make a publication FOR ALL TABLES or the other way
 * round: that needs the publication made again by hand.
 */
static void stream_source_reconcile_tables(struct stream *st)
{
	const struct config_stream *cs = st->cs;
	bool same = cs->n_tables == st->reader->src_cfg.n_tables;
	char **copy;
	char *sql;

	if (st != st->lead)
		return;  /* the lead's reader owns the publication */
	for (size_t i = 0; same && i < cs->n_tables; i++)
		same = strcmp(cs->tables[i], st->reader->src_tables[i]) == 0;
	if (same)
		return;
	if (!cs->n_tables || !st->reader->src_cfg.n_tables) {
		log_warning("stream \"%s\": tables: changed between a list and none (FOR ALL TABLES); "
			    "publication \"%s\" is left as it is: make it again by hand", st->name,
			    st->reader->src_publication);
		return;
	}
	copy = calloc(cs->n_tables, sizeof(char *));
	for (size_t i = 0; copy && i < cs->n_tables; i++) {
		if (!(copy[i] = strdup(cs->tables[i]))) {
			while (i--)
				free(copy[i]);
			free(copy);
			copy = NULL;
		}
	}
	sql = copy ? stream_pubalter_sql(st->reader->src_publication, copy, cs->n_tables) : NULL;
	if (!st->reader->pubalter)
		st->reader->pubalter = pgquery_new(st->owner->base, st->reader->src_conninfo, st->name);
	if (!sql || !st->reader->pubalter || pgquery_busy(st->reader->pubalter) ||
	    !pgquery_run(st->reader->pubalter, sql, stream_pubalter_done, st)) {
		log_error("stream \"%s\": could not set the tables of publication \"%s\" now (out of "
			  "memory, or a change still running): reload again", st->name,
			  st->reader->src_publication);
		for (size_t i = 0; copy && i < cs->n_tables; i++)
			free(copy[i]);
		free(copy);
		free(sql);
		return;
	}
	free(sql);
	for (size_t i = 0; i < st->reader->src_cfg.n_tables; i++)
		free(st->reader->src_tables[i]);
	free(st->reader->src_tables);
	st->reader->src_tables = copy;
	st->reader->src_cfg.tables = copy;
	st->reader->src_cfg.n_tables = cs->n_tables;
}

void stream_source_reconfigure(struct stream *st)
{
	if (st->reader->spool_max != st->cs->spool_max) {
		st->reader->spool_max = st->cs->spool_max;
		if (st->reader->spool_full && st->reader->spool &&
		    spool_bytes(st->reader->spool) < st->reader->spool_max) {
			st->reader->spool_full = false;
			if (st->reader->reading && st->reader->source)
				source_resume_reading(st->reader->source);
		}
	}
	if (st->sync)
		streamsync_set_copy_limits(st->sync, st->cs->sync_workers, st->cs->sync_split_above);
	stream_source_reconcile_tables(st);
	schedule_update(st, true);
}

/* --------------------------------------------------------------- sequences */

/* The values to one destination; false when they must go again in full. */
static bool stream_sequences_send(struct stream *st, const struct seq_value *seqs, size_t n)
{
	static struct relay_proto_sequence list[STREAM_MAX_SEQUENCES];
	struct relay_proto_sequences m = { .stream = relay_proto_str(st->name), .seqs = list };

	if (!relay_is_up(st->owner->relay, st->peer) || st->sender.sched.held)
		return false;  /* sent in full once the link is back, or the stream may send again */
	for (size_t done = 0; done < n; done += m.nseqs) {
		m.nseqs = n - done < STREAM_MAX_SEQUENCES ? n - done : STREAM_MAX_SEQUENCES;
		for (size_t i = 0; i < m.nseqs; i++) {
			list[i].schema = relay_proto_str(seqs[done + i].schema);
			list[i].name = relay_proto_str(seqs[done + i].name);
			list[i].value = seqs[done + i].value;
		}
		wire_writer_reset(&st->owner->out);
		if (!relay_proto_write_sequences(&st->owner->out, &m) ||
		    !stream_send(st, FRAME_SEQUENCES, 0))
			return false;
		st->sender.sequence_frames++;
	}
	return true;
}

/*
 * Changed values go to every destination; one that could not take them gets
 * them all again later (the others then hear the same values twice, which
 * sets nothing new).
 */
static void stream_sequences_changed(void *arg, const struct seq_value *seqs, size_t n)
{
	struct stream *st = arg;
	bool all = true;

	FOR_EACH_DEST(d, st)
		all = stream_sequences_send(d, seqs, n) && all;
	if (!all)
		seq_reader_resend_all(st->reader->seq_reader);
}

/* ------------------------------------------------------------------ setup */

/* The lead's reader: slot, spool, sequences and the publication's watchers. */
static bool reader_init(struct stream *st, const struct strait_config *cfg, size_t self)
{
	const struct config_stream *cs = st->cs;
	struct streams *s = st->owner;
	char slot[128], what[160];

	st->reader->src_conninfo = strdup(cfg->sites[self].database);
	st->reader->src_publication = strdup(cs->publication);
	st->reader->sync_event = event_new(s->base, -1, 0, reader_sync_cb, st);
	st->reader->relcache = relcache_new();
	st->reader->reach = reachback_new();
	source_slot_name(cs->name, slot, sizeof(slot));
	snprintf(what, sizeof(what), "stream \"%s\"", cs->name);
	st->reader->slotwatch = slotwatch_new(s->base, cfg->sites[self].database, slot,
					      STREAM_SLOTWATCH_MS, what, NULL, NULL);
	st->reader->spool_max = cs->spool_max;
	if (asprintf(&st->reader->spool_dir, "%s/spool/%s", cfg->state_dir, cs->name) < 0)
		st->reader->spool_dir = NULL;
	if (!st->reader->src_conninfo || !st->reader->src_publication || !st->reader->sync_event ||
	    !st->reader->spool_dir || !st->reader->relcache || !st->reader->reach ||
	    !st->reader->slotwatch)
		return false;
	if (cs->n_tables) {
		st->reader->src_tables = calloc(cs->n_tables, sizeof(char *));
		if (!st->reader->src_tables)
			return false;
		for (size_t i = 0; i < cs->n_tables; i++)
			if (!(st->reader->src_tables[i] = strdup(cs->tables[i])))
				return false;
	}
	st->reader->seq_reader = seq_reader_new(s->base, st->reader->src_conninfo, st->name,
					       st->reader->src_publication, STREAM_SEQUENCE_POLL_MS,
					       stream_sequences_changed, st);
	st->reader->pubwatch = pubwatch_new(s->base, st->reader->src_conninfo,
					   st->reader->src_publication, STREAM_PUBWATCH_MS, what,
					   stream_pub_changed, st);
	if (!st->reader->seq_reader || !st->reader->pubwatch)
		return false;
	if (cs->initial_sync)
		pubwatch_on_list(st->reader->pubwatch, stream_pub_listed, st);
	st->reader->src_cfg = (struct source_config){
		.stream = st->name,
		.conninfo = st->reader->src_conninfo,
		.publication = st->reader->src_publication,
		.tables = st->reader->src_tables,
		.n_tables = cs->n_tables,
		.batch_max_bytes = STREAM_BATCH_MAX,
		.export_snapshot = cs->initial_sync,
	};
	return true;
}

/* The lead's reader starts: its spool opened (made first), then the source. */
static void reader_start(struct stream *st, const struct strait_config *cfg)
{
	char spool_root[4096];

	snprintf(spool_root, sizeof(spool_root), "%s/spool", cfg->state_dir);
	if (mkdir(spool_root, 0700) != 0 && errno != EEXIST) {
		log_error("stream \"%s\": cannot create \"%s\": %s", st->name, spool_root, strerror(errno));
		snprintf(st->last_error, sizeof(st->last_error), "cannot create %.300s: %s", spool_root,
			 strerror(errno));
		stream_schedule_retry(st, STREAM_RETRY_MAX_MS);
		return;
	}
	if (!reader_open_spool(st)) {
		if (!st->reader->spool_broken)
			stream_schedule_retry(st, STREAM_RETRY_MAX_MS);
		return;
	}
	reader_make(st);
}

bool stream_source_init(struct stream *st, const struct strait_config *cfg, size_t self)
{
	const struct config_stream *cs = st->cs;
	struct streams *s = st->owner;
	bool lead = st->lead == st;

	st->role = STREAM_ROLE_SOURCE;
	st->peer = strdup(cfg->sites[config_stream_to(cs)].name);
	st->sender.enc = codec_new_encoder(cs->codec, cs->compression_level, CODEC_CONTENT_PGOUTPUT);
	complevel_init(&st->sender.level, cs->compression_level);
	st->sender.pump_event = event_new(s->base, -1, 0, sender_pump_cb, st);
	st->sender.tick = event_new(s->base, -1, 0, source_tick_cb, st);
	if (!st->peer || !st->sender.enc || !st->sender.pump_event || !st->sender.tick)
		return false;
	if (lead && !reader_init(st, cfg, self))
		return false;
	/* every destination has an initial sync and joining tables of its own */
	if (cs->initial_sync &&
	    !(st->sync = streamsync_new_source(s->base, s->relay, st->name, st->peer, st->reader->src_conninfo,
					       st->reader->src_publication, cs->codec, cs->compression_level,
					       &st->reader->source)))
		return false;
	if (cs->initial_sync &&
	    !(st->join = streamjoin_new_source(s->base, s->relay, st->name, st->peer,
					       st->reader->src_conninfo, st->reader->src_publication)))
		return false;
	if (st->sync)
		streamsync_set_copy_limits(st->sync, cs->sync_workers, cs->sync_split_above);
	schedule_update(st, true);
	event_add(st->sender.tick, &(struct timeval){ STREAM_TICK_MS / 1000, (STREAM_TICK_MS % 1000) * 1000 });
	if (lead)
		reader_start(st, cfg);
	return true;
}

/* The lead's reader goes (after every other destination: streams_free() frees them last first). */
static void reader_fini(struct stream *st)
{
	char err[256];

	source_free(st->reader->source);
	st->reader->source = NULL;
	seq_reader_free(st->reader->seq_reader);
	pubwatch_free(st->reader->pubwatch);
	pgquery_free(st->reader->pubalter);
	if (st->reader->spool && st->cs->durability == CONFIG_DURABILITY_SPOOL &&
	    !spool_sync(st->reader->spool, err, sizeof(err)))
		log_error("stream \"%s\": spool: %s", st->name, err);
	spool_close(st->reader->spool);
	st->reader->spool = NULL;
	relcache_free(st->reader->relcache);
	reachback_free(st->reader->reach);
	slotwatch_free(st->reader->slotwatch);
	if (st->reader->sync_event)
		event_free(st->reader->sync_event);
	if (st->reader->src_tables) {
		for (size_t i = 0; i < st->reader->src_cfg.n_tables; i++)
			free(st->reader->src_tables[i]);
		free(st->reader->src_tables);
	}
	free(st->reader->spool_dir);
	free(st->reader->src_conninfo);
	free(st->reader->src_publication);
}

void stream_source_fini(struct stream *st)
{
	stream_verify_source_fini(st);
	codec_free(st->sender.enc);
	free(sender_buf);  /* the next frame packed, for any stream, allocates it again */
	sender_buf = NULL;
	sender_buf_cap = 0;
	if (st->reader->spool)
		spool_cursor_free(st->sender.cursor);
	st->sender.cursor = NULL;
	if (st->sender.pump_event)
		event_free(st->sender.pump_event);
	if (st->sender.tick)
		event_free(st->sender.tick);
	if (st->lead == st)
		reader_fini(st);
}

/* ----------------------------------------------------------------- status */

const char *stream_source_state(const struct stream *st)
{
	if (st->relay)
		return "relayed";
	if (!st->reader->spool || st->sender.gap || st->sender.oversized ||
	    (st->last_error[0] && !(st->reader->source && source_is_ready(st->reader->source))))
		return "error";
	if (st->sync && streamsync_in_progress(st->sync))
		return "syncing";
	if (st->reader->spool_full)
		return "backpressure";
	if (st->sender.sched.held)
		return "held";
	if (st->sender.sending &&
	    relay_output_pending(st->owner->relay, st->peer) >= RELAY_OUTPUT_HIGH)
		return "backpressure";
	if (st->sender.sending)
		return "streaming";
	return "starting";
}

static void status_time(struct json_out *j, const char *key, time_t t)
{
	struct tm tm;
	char buf[40];

	if (!t) {
		json_null(j, key);
		return;
	}
	localtime_r(&t, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S%z", &tm);
	json_string(j, key, buf);
}

void stream_source_schedule_json(const struct stream *st, struct json_out *j)
{
	json_object_begin(j, "schedule");
	json_string(j, "mode", st->cs->mode == CONFIG_MODE_BATCH ? "batch" : "live");
	json_bool(j, "held", st->sender.sched.held);
	if (st->sender.sched.held || st->sender.sched.rate.unlimited)
		json_null(j, "rate_bytes_per_sec");
	else
		json_uint(j, "rate_bytes_per_sec", st->sender.sched.rate.bytes_per_sec);
	json_bool(j, "unlimited", !st->sender.sched.held && st->sender.sched.rate.unlimited);
	json_int(j, "rule", st->sender.sched.rule);
	json_int(j, "window", st->sender.sched.window);
	json_string(j, "why", st->sender.sched.why);
	status_time(j, "next_change", st->sender.sched.next_change);
	status_time(j, "sync_now_until", st->sender.one_off_drain ? 0 : st->sender.one_off_until);
	json_bool(j, "sync_now_until_drained", st->sender.one_off_drain);
	json_object_end(j);
}

void stream_source_status(const struct stream *st, struct json_out *j)
{
	int64_t now = clock_wall_us();

	json_bool(j, "reading", st->reader->reading);
	json_bool(j, "streaming", st->sender.sending);
	json_string(j, "relayed_by", st->relay);
	json_lsn(j, "acked_lsn", st->sender.acked_lsn);
	json_lsn(j, "confirmed_lsn", st->reader->confirmed_lsn);
	json_uint(j, "batches_sent", st->sender.batches_sent);
	json_uint(j, "bytes_raw", st->sender.bytes_raw);
	json_uint(j, "bytes_wire", st->sender.bytes_wire);
	/* what zstd took: pgoutput messages packed (codec.h), or the batches as they are */
	json_string(j, "packing", codec_packs(st->sender.enc) ? "pgoutput" : "none");
	json_uint(j, "bytes_packed", codec_bytes_packed(st->sender.enc));
	json_uint(j, "bytes_wan_estimate", st->sender.bytes_charged);
	json_uint(j, "sequence_frames", st->sender.sequence_frames);
	json_object_begin(j, "compression");
	json_int(j, "level", codec_level(st->sender.enc));
	json_int(j, "configured_level", st->sender.level.base);
	json_string(j, "why", codec_compresses(st->sender.enc) ?
			      complevel_reason(&st->sender.level) : "not compressed");
	json_object_end(j);
	json_object_begin(j, "spool");
	json_string(j, "durability", st->cs->durability == CONFIG_DURABILITY_SPOOL ? "spool" : "remote");
	json_uint(j, "bytes", st->reader->spool ? spool_bytes(st->reader->spool) : 0);
	json_uint(j, "max_bytes", st->reader->spool_max);
	json_uint(j, "records", st->reader->spool ? spool_records(st->reader->spool) : 0);
	json_uint(j, "unsent_bytes", sender_unread(st));
	json_uint(j, "unacked_bytes", st->sender.window_sent > st->sender.window_freed ?
				      st->sender.window_sent - st->sender.window_freed : 0);
	if (st->reader->spool && spool_oldest_us(st->reader->spool))
		json_double(j, "oldest_record_age_seconds",
			    (double)(now - spool_oldest_us(st->reader->spool)) / 1e6);
	else
		json_null(j, "oldest_record_age_seconds");
	json_lsn(j, "end_lsn", st->reader->spool ? spool_end_lsn(st->reader->spool) : 0);
	json_lsn(j, "floor_lsn", st->reader->spool ? spool_floor_lsn(st->reader->spool) : 0);
	json_lsn(j, "durable_lsn", st->reader->spool ? spool_durable_lsn(st->reader->spool) : 0);
	json_bool(j, "full", st->reader->spool_full);
	json_string(j, "reason", st->reader->spool_full ? "spool_max reached: reading stopped, the slot holds WAL"
						: NULL);
	json_object_end(j);
	stream_source_schedule_json(st, j);
	stream_source_warnings_json(st, j);
	if (st->reader->pubwatch)
		pubwatch_status_json(st->reader->pubwatch, j);
	if (st->reader->source)
		source_status_json(st->reader->source, j);
}

void stream_source_report(const struct stream *st, struct stream_report *r, int64_t now_us)
{
	r->reader = st->lead == st;
	r->compression_level = codec_level(st->sender.enc);
	r->applied_lsn = st->sender.acked_lsn;
	r->batches = st->sender.batches_sent;
	r->bytes_raw = st->sender.bytes_raw;
	r->bytes_compressed = st->sender.bytes_wire;
	r->bytes_packed = codec_bytes_packed(st->sender.enc);
	r->spool_bytes = st->reader->spool ? spool_bytes(st->reader->spool) : 0;
	r->spool_max_bytes = st->reader->spool_max;
	r->spool_records = st->reader->spool ? spool_records(st->reader->spool) : 0;
	r->spool_oldest_age = st->reader->spool && spool_oldest_us(st->reader->spool) ?
		(double)(now_us - spool_oldest_us(st->reader->spool)) / 1e6 : 0;
	r->held = st->sender.sched.held;
	r->rate_unlimited = !st->sender.sched.held && st->sender.sched.rate.unlimited;
	r->rate = st->sender.sched.held ? 0 : st->sender.sched.rate.bytes_per_sec;
	r->rule = st->sender.sched.rule;
	r->bytes_wan = st->sender.bytes_charged;
	{
		const struct slot_sample *smp = st->reader->slotwatch ? slotwatch_last(st->reader->slotwatch) : NULL;
		struct diskwarn_list l;

		r->slot_retained_bytes = smp && smp->retained_known ? (int64_t)smp->retained_bytes : -1;
		stream_warnings(st, &l);
		r->warning_level = (int)diskwarn_worst(&l);
	}
}
