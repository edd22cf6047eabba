/*
 * stream_sync.c — a stream's initial sync across the relay link (see
 * stream_sync.h for the conversation).
 *
 * NOTES
 * One state enum for both roles (the source uses the first five values, the
 * sink the rest) and one function that changes it, logging the reason.
 *
 * What is recorded where. The sink's target holds the truth (syncstate.h):
 * a row per loaded table, committed with its rows, and a row for the whole
 * stream once every table is in. Nothing about the sync is stored on the
 * source site: after a restart of either daemon, or a new link, the sink
 * reads its record, tells the source what it has, and asks for a round;
 * the source lists the publication again and copies the rest. The
 * stream-wide row's LSN is where streaming starts; the sink uses it (when
 * its apply engine has not applied anything yet) in every RESUME and
 * HELLO, so a crash right after the sync resumes there and not at the
 * slot's start. Once the apply has committed past every table's LSN, the
 * table rows are folded away (deleted) by a loader opened for that.
 *
 * Where streaming starts. Tables of the first round are copied in the
 * snapshot the slot exported when it was created: its consistent point is
 * the slot's, so streaming from it misses nothing and repeats nothing. A
 * table copied again later (after a crash) comes from a newer snapshot; the
 * stream then starts at the earliest table's LSN and the filter drops each
 * table's changes that its copy already holds.
 *
 * Memory. The source reads a table no further than SYNCCOPY_WINDOW chunks
 * beyond what the sink acknowledged as handed to the target, so neither the
 * link nor the sink's queues grow with a slow target; and it stops reading
 * while the link's output is above RELAY_OUTPUT_HIGH.
 */
#include "gateway/stream/stream_sync.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <event2/event.h>

#include "common/fault.h"
#include "common/json.h"
#include "common/log.h"
#include "common/lsn.h"
#include "gateway/relay/frame.h"
#include "gateway/relay/relay.h"
#include "gateway/relay/relay_proto.h"
#include "gateway/relay/wire.h"
#include "gateway/stream/codec.h"
#include "replicator/slot_reader.h"
#include "replicator/synccopy.h"
#include "replicator/syncfilter.h"
#include "replicator/syncload.h"
#include "replicator/syncplan.h"
#include "replicator/syncrange.h"

#define STREAMSYNC_BACKOFF_MIN_MS 1000u
/* Every copy the source runs at once has a loader of its own at the sink. */
_Static_assert(CONFIG_SYNC_WORKERS_MAX <= SYNCLOAD_MAX_CONNS &&
	       CONFIG_SYNC_WORKERS_MAX <= SYNCCOPY_MAX_WORKERS, "sync_workers beyond the pools");
/* How long the source keeps a copy's snapshot for a sink that went away. */
#define STREAMSYNC_HOLD_MS (5u * 60u * 1000u)
#define STREAMSYNC_BACKOFF_MAX_MS 30000u

enum streamsync_state {
	/* source */
	SS_SOURCE_IDLE,          /* no round asked for */
	SS_SOURCE_PENDING,       /* asked for; waiting for the source connection */
	SS_SOURCE_COPYING,
	SS_SOURCE_RETRY,         /* the round failed here; again after a backoff */
	SS_SOURCE_SHIPPED,       /* every table sent; the sink loads them */
	/* sink */
	SS_SINK_QUERYING,        /* reading what the target has */
	SS_SINK_NEEDED,          /* the next RESUME asks for a round */
	SS_SINK_WAIT_PLAN,       /* asked; waiting for the round's plan */
	SS_SINK_LOADING,
	SS_SINK_MARKING,         /* every table loaded; recording the sync as done */
	SS_SINK_DONE,            /* streaming goes on */
	SS_SINK_PAUSED,          /* the round failed; asked again after a while */
};

static const char *const streamsync_state_names[] = {
	[SS_SOURCE_IDLE] = "idle",
	[SS_SOURCE_PENDING] = "waiting for the source",
	[SS_SOURCE_COPYING] = "copying",
	[SS_SOURCE_RETRY] = "waiting to retry",
	[SS_SOURCE_SHIPPED] = "shipped",
	[SS_SINK_QUERYING] = "reading the target's state",
	[SS_SINK_NEEDED] = "needed",
	[SS_SINK_WAIT_PLAN] = "waiting for the plan",
	[SS_SINK_LOADING] = "loading",
	[SS_SINK_MARKING] = "recording completion",
	[SS_SINK_DONE] = "done",
	[SS_SINK_PAUSED] = "paused",
};

/* The sink's progress on one copy of the round: a whole table, or one range of it. */
struct streamsync_unit {
	uint64_t job;            /* syncload job, 0 before the first chunk */
	uint32_t next_chunk;
	bool loaded;             /* committed in this round */
};

/* The sink's progress on one table of the plan. */
struct streamsync_progress {
	struct streamsync_unit *units;   /* one per range, or one for a whole table */
	uint32_t left;           /* units of the round not loaded yet */
	bool fresh;              /* a split table copied afresh: its first load clears it */
	bool cleared;            /* ... and that load is begun */
};

/* A load in flight: job id -> plan index and unit. */
struct streamsync_active {
	uint64_t job;
	size_t table;
	uint32_t unit;
};

struct streamsync {
	struct event_base *base;
	struct relay *relay;
	char *stream;
	char *peer;
	char *conninfo;
	char *publication;
	bool sink;
	enum streamsync_state state;
	struct codec *codec;     /* the sync encoder (source) or decoder (sink) */
	struct wire_writer out;
	struct event *ev_retry;
	struct event *ev_later;  /* frees what may not be freed inside its own callback */
	uint32_t generation;
	unsigned rounds;         /* plans taken (sink) or rounds started (source) */
	char last_error[256];
	int64_t started_ms;
	int64_t finished_ms;
	uint64_t frames;
	uint64_t bytes_raw;
	uint64_t bytes_wire;

	/* source */
	struct source *const *sourcep;
	struct synccopy *copy;
	struct synccopy *copy_dead;
	struct syncplan_set have_pending;   /* "have" frames since the last round began */
	struct syncplan_set round_have;     /* what the current round keeps */
	struct syncplan_ranges have_ranges_pending;  /* ... of ranges */
	struct syncplan_ranges round_have_ranges;
	struct event *ev_hold;              /* a parked copy is let go at the end of its hold */
	unsigned copy_workers;              /* config: copies at a time (0: synccopy's default) */
	uint64_t split_above;               /* config: larger tables are copied in ranges */
	unsigned failures;
	bool retry_temporary;               /* retries take a snapshot of their own */
	bool broken;                        /* a chunk could not be sent: fail from ev_later */
	uint64_t rows_before;               /* rows and bytes read by the rounds before this one */
	uint64_t bytes_before;

	/* sink */
	streamsync_resume_fn resume;
	void *arg;
	struct syncload *load;
	bool load_dead;
	struct syncplan_set done;           /* loaded tables -> their snapshot LSN */
	struct syncplan_ranges ranges;      /* loaded ranges of tables not loaded whole */
	uint64_t done_lsn;                  /* the stream-wide record: streaming starts here */
	uint64_t fold_at;                   /* the highest table LSN recorded; 0: nothing to fold */
	struct syncfilter *filter;
	struct syncplan plan;
	struct syncplan_set plan_index;     /* name -> plan index */
	struct streamsync_progress *progress;
	size_t nprogress;
	uint64_t plan_lsn;
	size_t tables_satisfied;            /* plan tables the target has */
	size_t tables_loaded;               /* ... loaded in this round */
	struct syncplan_text plan_text;
	bool collecting;
	uint32_t plan_next_chunk;
	uint64_t plan_frame_lsn;
	struct streamsync_active *active;
	size_t nactive;
	size_t active_cap;
	uint64_t rows_loaded;
	bool warned_batch;
};

static int64_t streamsync_now_ms(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static void streamsync_set_state(struct streamsync *ss, enum streamsync_state next, const char *why)
{
	if (ss->state == next)
		return;
	log_info("stream \"%s\": initial sync %s -> %s: %s", ss->stream,
		 streamsync_state_names[ss->state], streamsync_state_names[next], why);
	ss->state = next;
}

static void streamsync_later(struct streamsync *ss)
{
	if (!event_pending(ss->ev_later, EV_TIMEOUT, NULL))
		event_active(ss->ev_later, EV_TIMEOUT, 0);
}

static void streamsync_retry_in(struct streamsync *ss, unsigned ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	event_add(ss->ev_retry, &tv);
}

static bool streamsync_is_plan(struct wire_str schema, struct wire_str table)
{
	return wire_str_eq(schema, SYNCPLAN_SCHEMA) && wire_str_eq(table, SYNCPLAN_TABLE);
}

/*
 * Sends one SYNC frame; data goes through the sync encoder when compress is
 * set. False when the link is down or the frame could not be built (logged).
 */
/* Which range of a table copied in ranges a frame is about (0 of 0: the whole table). */
struct streamsync_part {
	uint32_t range;
	uint32_t ranges;
};

static bool streamsync_send_part(struct streamsync *ss, const char *schema, size_t schema_len,
		const char *table, size_t table_len, uint64_t lsn, struct streamsync_part part,
		uint32_t chunk, bool last, const uint8_t *data, size_t len, bool compress);

static bool streamsync_send(struct streamsync *ss, const char *schema, size_t schema_len,
		const char *table, size_t table_len, uint64_t lsn, uint32_t chunk, bool last,
		const uint8_t *data, size_t len, bool compress)
{
	const struct streamsync_part whole = { 0, 0 };

	return streamsync_send_part(ss, schema, schema_len, table, table_len, lsn, whole, chunk,
				    last, data, len, compress);
}

/* A SYNC frame about one range of a table (or the whole, 0 of 0). */
static bool streamsync_send_part(struct streamsync *ss, const char *schema, size_t schema_len,
		const char *table, size_t table_len, uint64_t lsn, struct streamsync_part part,
		uint32_t chunk, bool last, const uint8_t *data, size_t len, bool compress)
{
	struct relay_proto_sync m = {
		.stream = relay_proto_str(ss->stream),
		.schema = { schema, schema_len },
		.table = { table, table_len },
		.snapshot_lsn = lsn,
		.range = part.range,
		.ranges = part.ranges,
		.chunk = chunk,
		.flags = last ? RELAY_SYNC_LAST : 0,
		.raw_len = (uint32_t)len,
		.data = data,
		.data_len = len,
	};
	char err[256];
	uint8_t flags = 0;

	if (compress) {
		if (!codec_run(ss->codec, data, len, SIZE_MAX, &m.data, &m.data_len, err, sizeof(err))) {
			log_error("stream \"%s\": initial sync: %s", ss->stream, err);
			ss->broken = true;
			return false;
		}
		if (codec_compresses(ss->codec))
			flags = FRAME_FLAG_COMPRESSED;
	}
	wire_writer_reset(&ss->out);
	if (!relay_proto_write_sync(&ss->out, &m)) {
		log_error("stream \"%s\": initial sync: could not encode a SYNC frame of %zu bytes",
			  ss->stream, m.data_len);
		ss->broken = true;
		return false;
	}
	if (!relay_send(ss->relay, ss->peer, FRAME_SYNC, flags, ss->out.data, ss->out.len))
		return false;
	if (compress) {
		/* data frames only, as the sink counts them */
		ss->frames++;
		ss->bytes_raw += len;
		ss->bytes_wire += m.data_len;
	}
	return true;
}

/* ================================================================ source */

/* The current copy goes: its rows and bytes stay in the stream's counters. */
static void streamsync_count_copy(struct streamsync *ss)
{
	struct synccopy_progress p;

	if (!ss->copy)
		return;
	synccopy_progress(ss->copy, &p);
	ss->rows_before += p.rows;
	ss->bytes_before += p.bytes;
}

static void streamsync_source_end_round(struct streamsync *ss)
{
	streamsync_count_copy(ss);
	synccopy_free(ss->copy);
	ss->copy = NULL;
	event_del(ss->ev_retry);
	event_del(ss->ev_hold);
}

static bool streamsync_copy_has_range(void *arg, const char *schema, const char *table,
		uint64_t lsn, uint32_t range, uint32_t ranges)
{
	struct streamsync *ss = arg;
	const struct syncplan_ranges_entry *e = syncplan_ranges_get(&ss->round_have_ranges, schema,
			strlen(schema), table, strlen(table));

	return e && e->lsn == lsn && e->got.n == ranges && syncrange_set_has(&e->got, range);
}

static bool streamsync_copy_has(void *arg, const char *schema, const char *table)
{
	struct streamsync *ss = arg;

	return syncplan_set_get(&ss->round_have, schema, strlen(schema), table, strlen(table)) != NULL;
}

/* The copies hold the snapshot now: the slot's export need not hold the primary's xmin. */
static void streamsync_copy_imported(void *arg)
{
	struct streamsync *ss = arg;

	if (*ss->sourcep)
		source_release_snapshot(*ss->sourcep);
}

static void streamsync_copy_planned(void *arg, const struct syncplan *plan, uint64_t lsn)
{
	struct streamsync *ss = arg;
	struct syncplan_text text = { 0 };
	size_t off = 0;
	uint32_t chunk = 0;

	if (!syncplan_encode(plan, &text)) {
		log_error("stream \"%s\": initial sync: out of memory encoding the plan", ss->stream);
		ss->broken = true;
		streamsync_later(ss);
		return;
	}
	/* A plan starts the round's compression afresh at both ends. */
	codec_reset(ss->codec);
	do {
		size_t n = text.len - off > SYNCCOPY_CHUNK_BYTES ? SYNCCOPY_CHUNK_BYTES : text.len - off;

		if (!streamsync_send(ss, SYNCPLAN_SCHEMA, strlen(SYNCPLAN_SCHEMA), SYNCPLAN_TABLE,
				     strlen(SYNCPLAN_TABLE), lsn, chunk++, off + n == text.len,
				     (const uint8_t *)text.data + off, n, true))
			break;
		off += n;
	} while (off < text.len);
	syncplan_text_free(&text);
	if (ss->broken)
		streamsync_later(ss);
}

static bool streamsync_copy_chunk(void *arg, const struct syncplan_table *t, uint64_t lsn,
		uint32_t range, uint32_t chunk, const uint8_t *data, size_t len, bool last)
{
	struct streamsync *ss = arg;
	const struct streamsync_part part = { t->ranges ? range : 0, t->ranges };

	(void)fault_hit("source.sync_chunk");
	if (!streamsync_send_part(ss, t->schema, strlen(t->schema), t->table, strlen(t->table), lsn,
				  part, chunk, last, data, len, true)) {
		if (ss->broken)
			streamsync_later(ss);
		return false;  /* link down: the round ends with it */
	}
	/*
	 * Copies keep the link's queue short and leave the rest of it to live
	 * streams, whose batches then wait behind at most this much copy data.
	 */
	if (relay_output_pending(ss->relay, ss->peer) < STREAMSYNC_OUTPUT_MAX)
		return true;
	relay_wait_drain(ss->relay, ss->peer);
	return false;
}

static void streamsync_copy_finished(void *arg)
{
	struct streamsync *ss = arg;

	ss->finished_ms = streamsync_now_ms();
	streamsync_set_state(ss, SS_SOURCE_SHIPPED, "every table sent");
}

static unsigned streamsync_backoff(struct streamsync *ss)
{
	unsigned ms = STREAMSYNC_BACKOFF_MIN_MS;

	for (unsigned i = 0; i < ss->failures && ms < STREAMSYNC_BACKOFF_MAX_MS; i++)
		ms *= 2;
	ss->failures++;
	return ms < STREAMSYNC_BACKOFF_MAX_MS ? ms : STREAMSYNC_BACKOFF_MAX_MS;
}

static void streamsync_copy_failed(void *arg, const char *reason)
{
	struct streamsync *ss = arg;
	unsigned ms;

	snprintf(ss->last_error, sizeof(ss->last_error), "%s", reason);
	/* freed from the loop: we are inside one of its callbacks */
	streamsync_count_copy(ss);
	ss->copy_dead = ss->copy;
	ss->copy = NULL;
	streamsync_later(ss);
	if (ss->state != SS_SOURCE_COPYING && ss->state != SS_SOURCE_SHIPPED) {
		/* a held snapshot is lost: the next round takes a new one */
		event_del(ss->ev_hold);
		ss->retry_temporary = true;
		return;
	}
	ms = streamsync_backoff(ss);
	ss->retry_temporary = true;
	streamsync_later(ss);
	streamsync_set_state(ss, SS_SOURCE_RETRY, "the copy failed");
	log_warning("stream \"%s\": initial sync round fails; trying again in %u ms", ss->stream, ms);
	streamsync_retry_in(ss, ms);
}

static void streamsync_source_start(struct streamsync *ss, struct source *src)
{
	static const struct synccopy_callbacks cb = {
		.has = streamsync_copy_has,
		.has_range = streamsync_copy_has_range,
		.imported = streamsync_copy_imported,
		.planned = streamsync_copy_planned,
		.chunk = streamsync_copy_chunk,
		.finished = streamsync_copy_finished,
		.failed = streamsync_copy_failed,
	};
	struct synccopy_config cfg = {
		.stream = ss->stream,
		.conninfo = ss->conninfo,
		.publication = ss->publication,
		.generation = ss->generation,
		.workers = ss->copy_workers,
		.split_above = ss->split_above,
	};

	if (src && !ss->retry_temporary)
		cfg.snapshot = source_exported_snapshot(src, &cfg.snapshot_lsn);
	ss->broken = false;
	ss->copy = synccopy_new(ss->base, &cfg, &cb, ss);
	if (!ss->copy) {
		log_error("stream \"%s\": initial sync: out of memory starting a round", ss->stream);
		streamsync_set_state(ss, SS_SOURCE_RETRY, "out of memory");
		streamsync_retry_in(ss, streamsync_backoff(ss));
		return;
	}
	ss->started_ms = streamsync_now_ms();
	ss->finished_ms = 0;
	ss->rounds++;
	streamsync_set_state(ss, SS_SOURCE_COPYING, cfg.snapshot ? "using the slot's exported snapshot" :
			     "taking a snapshot of its own");
}

/*
 * A round in the snapshot a parked (or running) copy holds, copying what the
 * sink lacks; false when there is none to go on in.
 */
static bool streamsync_source_continue(struct streamsync *ss, uint32_t generation)
{
	if (!ss->copy || !synccopy_park(ss->copy))
		return false;
	event_del(ss->ev_retry);
	event_del(ss->ev_hold);
	ss->generation = generation;
	ss->failures = 0;
	ss->last_error[0] = '\0';
	ss->started_ms = streamsync_now_ms();
	ss->finished_ms = 0;
	ss->rounds++;
	log_info("stream \"%s\": \"%s\" asks for an initial sync round (generation %u, it has %zu "
		 "tables, and ranges of %zu others); going on in the held snapshot", ss->stream, ss->peer,
		 generation, ss->round_have.n, ss->round_have_ranges.index.n);
	synccopy_continue(ss->copy, generation);
	streamsync_set_state(ss, SS_SOURCE_COPYING, "going on in the held snapshot");
	return true;
}

void streamsync_source_request(struct streamsync *ss, uint32_t generation, struct source *src)
{
	struct syncplan_set empty = { 0 };
	struct syncplan_ranges no_ranges = { 0 };

	syncplan_set_free(&ss->round_have);
	ss->round_have = ss->have_pending;
	ss->have_pending = empty;
	syncplan_ranges_free(&ss->round_have_ranges);
	ss->round_have_ranges = ss->have_ranges_pending;
	ss->have_ranges_pending = no_ranges;
	if (streamsync_source_continue(ss, generation))
		return;
	streamsync_source_end_round(ss);
	ss->generation = generation;
	ss->failures = 0;
	ss->retry_temporary = false;
	ss->last_error[0] = '\0';
	log_info("stream \"%s\": \"%s\" asks for an initial sync round (generation %u, it has %zu tables)",
		 ss->stream, ss->peer, generation, ss->round_have.n);
	streamsync_set_state(ss, SS_SOURCE_PENDING, "the sink asked for a round");
	if (src && source_is_ready(src))
		streamsync_source_start(ss, src);
}

void streamsync_set_copy_limits(struct streamsync *ss, unsigned workers, uint64_t split_above)
{
	ss->copy_workers = workers;
	ss->split_above = split_above;
}

void streamsync_source_ready(struct streamsync *ss, struct source *src)
{
	if (ss->state == SS_SOURCE_PENDING)
		streamsync_source_start(ss, src);
}

void streamsync_source_stop(struct streamsync *ss)
{
	if (ss->sink)
		return;
	/* the sink has every table: the snapshot goes; the copy stays for status until the next round */
	event_del(ss->ev_hold);
	event_del(ss->ev_retry);
	if (ss->copy)
		synccopy_release(ss->copy);
	if (ss->state != SS_SOURCE_IDLE)
		streamsync_set_state(ss, SS_SOURCE_IDLE, "the sink streams");
}

void streamsync_writable(struct streamsync *ss)
{
	if (ss->sink || !ss->copy)
		return;
	if (relay_output_pending(ss->relay, ss->peer) >= STREAMSYNC_OUTPUT_MAX) {
		relay_wait_drain(ss->relay, ss->peer);   /* live streams' data goes first */
		return;
	}
	synccopy_resume_reading(ss->copy);
}

/* "I have this range (from this snapshot)" from the sink. */
static void streamsync_source_have_range(struct streamsync *ss, const struct relay_proto_sync *m)
{
	if (m->ranges > SYNCRANGE_MAX || ss->have_ranges_pending.n >= SYNCPLAN_MAX_TABLES) {
		log_error("stream \"%s\": refused SYNC frame from \"%s\": a range beyond the limits",
			  ss->stream, ss->peer);
		return;
	}
	if (!syncplan_ranges_add(&ss->have_ranges_pending, m->schema.ptr, m->schema.len, m->table.ptr,
				 m->table.len, m->snapshot_lsn, m->range, m->ranges) ||
	    (ss->state != SS_SOURCE_IDLE &&
	     !syncplan_ranges_add(&ss->round_have_ranges, m->schema.ptr, m->schema.len, m->table.ptr,
				  m->table.len, m->snapshot_lsn, m->range, m->ranges)))
		log_error("stream \"%s\": out of memory recording a loaded range", ss->stream);
}

/* A SYNC frame from the sink: "have" or an acknowledgement. */
static void streamsync_source_frame(struct streamsync *ss, const struct relay_proto_sync *m)
{
	if (m->data_len != 0 || m->raw_len != 0 || streamsync_is_plan(m->schema, m->table)) {
		log_error("stream \"%s\": refused SYNC frame from \"%s\": a sink sends no data or plan",
			  ss->stream, ss->peer);
		return;
	}
	if ((m->flags & RELAY_SYNC_LAST) && m->ranges) {
		streamsync_source_have_range(ss, m);
		return;
	}
	if (m->flags & RELAY_SYNC_LAST) {
		if (ss->have_pending.n >= SYNCPLAN_MAX_TABLES) {
			log_error("stream \"%s\": refused SYNC frame from \"%s\": more than %u tables reported",
				  ss->stream, ss->peer, SYNCPLAN_MAX_TABLES);
			return;
		}
		if (!syncplan_set_put(&ss->have_pending, m->schema.ptr, m->schema.len, m->table.ptr,
				      m->table.len, m->snapshot_lsn) ||
		    (ss->state != SS_SOURCE_IDLE &&
		     !syncplan_set_put(&ss->round_have, m->schema.ptr, m->schema.len, m->table.ptr,
				       m->table.len, m->snapshot_lsn)))
			log_error("stream \"%s\": out of memory recording a loaded table", ss->stream);
		return;
	}
	if (ss->copy)
		synccopy_ack(ss->copy, m->schema.ptr, m->schema.len, m->table.ptr, m->table.len,
			     m->snapshot_lsn, m->range, m->chunk);
}

/* ================================================================== sink */

static void streamsync_sink_end_round(struct streamsync *ss)
{
	if (ss->load)
		syncload_abort(ss->load);
	ss->nactive = 0;
	ss->collecting = false;
}

static void streamsync_sink_fail(struct streamsync *ss, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Ends the round on a problem (logged here) and asks again later. */
static void streamsync_sink_fail(struct streamsync *ss, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(ss->last_error, sizeof(ss->last_error), fmt, ap);
	va_end(ap);
	log_error("stream \"%s\": %s", ss->stream, ss->last_error);
	streamsync_sink_end_round(ss);
	streamsync_set_state(ss, SS_SINK_PAUSED, "the round failed");
	log_warning("stream \"%s\": initial sync paused; asking for a new round in %u s", ss->stream,
		    STREAMSYNC_RETRY_MS / 1000);
	streamsync_retry_in(ss, STREAMSYNC_RETRY_MS);
}

/* "I have this table" to the source. */
static void streamsync_send_have(struct streamsync *ss, const char *schema, const char *table,
		uint64_t lsn)
{
	(void)streamsync_send(ss, schema, strlen(schema), table, strlen(table), lsn, 0, true, NULL, 0,
			      false);
}

static bool streamsync_record_done(struct streamsync *ss, const char *schema, const char *table,
		uint64_t lsn)
{
	if (lsn > ss->fold_at)
		ss->fold_at = lsn;
	return syncplan_set_put(&ss->done, schema, strlen(schema), table, strlen(table), lsn) &&
	       syncfilter_set_table(ss->filter, schema, table, lsn);
}

static void streamsync_check_complete(struct streamsync *ss)
{
	uint64_t start = ss->plan_lsn;
	char lsn[32];

	if (ss->state != SS_SINK_LOADING || ss->tables_satisfied < ss->plan.n)
		return;
	for (size_t i = 0; i < ss->plan.n; i++) {
		const struct syncplan_table *t = &ss->plan.tables[i];
		const struct syncplan_set_entry *e = syncplan_set_get(&ss->done, t->schema,
				strlen(t->schema), t->table, strlen(t->table));

		if (e && (i == 0 || e->value < start))
			start = e->value;
	}
	ss->finished_ms = streamsync_now_ms();
	lsn_format(lsn, start);
	log_notice("stream \"%s\": initial sync loaded: %zu tables (%zu in this round), %" PRIu64
		   " rows, %" PRIu64 " bytes (%" PRIu64 " on the link) in %.1f s; streaming from %s",
		   ss->stream, ss->plan.n, ss->tables_loaded, ss->rows_loaded, ss->bytes_raw,
		   ss->bytes_wire, (double)(ss->finished_ms - ss->started_ms) / 1000.0, lsn);
	streamsync_set_state(ss, SS_SINK_MARKING, "every table of the plan is loaded");
	syncload_mark_done(ss->load, start);
}

static void streamsync_progress_free(struct streamsync *ss)
{
	for (size_t i = 0; i < ss->nprogress; i++)
		free(ss->progress[i].units);
	free(ss->progress);
	ss->progress = NULL;
	ss->nprogress = 0;
}

/*
 * Why a plan's split table cannot be taken (NULL: it can). Each range is
 * either kept, and then the target has it from the plan's snapshot, or
 * copied, and then it has not; a fresh copy (every range) of a table the
 * target holds whole is refused too. Ranges from two snapshots never mix.
 */
static const char *streamsync_ranges_refusal(const struct streamsync *ss,
		const struct syncplan_table *t)
{
	const struct syncplan_ranges_entry *e = syncplan_ranges_get(&ss->ranges, t->schema,
			strlen(t->schema), t->table, strlen(t->table));
	bool same = e && e->lsn == ss->plan_lsn && e->got.n == t->ranges;

	if (syncplan_set_get(&ss->done, t->schema, strlen(t->schema), t->table, strlen(t->table)))
		return "it copies a table the target has loaded";
	for (uint32_t k = 0; k < t->ranges; k++) {
		bool have = same && syncrange_set_has(&e->got, k);

		if (have == syncrange_set_has(&t->copied, k))
			return have ? "it copies a range the target has from this snapshot" :
			       "it keeps a range the target has not loaded from this snapshot";
	}
	return NULL;
}

/* The sink's progress on copied table i of a new plan; false when the round ended (logged). */
static bool streamsync_plan_progress(struct streamsync *ss, size_t i)
{
	const struct syncplan_table *t = &ss->plan.tables[i];
	struct streamsync_progress *p = &ss->progress[i];
	const char *why = t->ranges ? streamsync_ranges_refusal(ss, t) : NULL;

	if (why) {
		char *q = syncplan_qualified(t->schema, t->table);

		streamsync_sink_fail(ss, "refused initial sync plan from \"%s\" for table %s: %s",
				     ss->peer, q ? q : t->table, why);
		free(q);
		return false;
	}
	p->units = calloc(t->ranges ? t->ranges : 1, sizeof(*p->units));
	if (!p->units) {
		streamsync_sink_fail(ss, "initial sync: out of memory taking the plan");
		return false;
	}
	p->left = t->ranges ? t->copied.count : 1;
	p->fresh = t->ranges && t->copied.count == t->ranges;
	for (uint32_t k = 0; k < t->ranges; k++)
		p->units[k].loaded = !syncrange_set_has(&t->copied, k);
	return true;
}

static void streamsync_accept_plan(struct streamsync *ss, struct syncplan *plan)
{
	if (ss->state == SS_SINK_LOADING) {
		log_notice("stream \"%s\": the source started the round over", ss->stream);
		streamsync_sink_end_round(ss);
	}
	syncplan_free(&ss->plan);
	syncplan_set_free(&ss->plan_index);
	streamsync_progress_free(ss);
	ss->plan = *plan;
	syncplan_init(plan);
	ss->plan_lsn = ss->plan_frame_lsn;
	ss->tables_satisfied = 0;
	ss->tables_loaded = 0;
	ss->progress = calloc(ss->plan.n ? ss->plan.n : 1, sizeof(*ss->progress));
	if (!ss->progress) {
		streamsync_sink_fail(ss, "initial sync: out of memory taking the plan");
		return;
	}
	ss->nprogress = ss->plan.n;
	for (size_t i = 0; i < ss->plan.n; i++) {
		const struct syncplan_table *t = &ss->plan.tables[i];

		if (!syncplan_set_put(&ss->plan_index, t->schema, strlen(t->schema), t->table,
				      strlen(t->table), i)) {
			streamsync_sink_fail(ss, "initial sync: out of memory taking the plan");
			return;
		}
		if (t->copy) {
			if (!streamsync_plan_progress(ss, i))
				return;
			continue;
		}
		if (!syncplan_set_get(&ss->done, t->schema, strlen(t->schema), t->table, strlen(t->table))) {
			char *q = syncplan_qualified(t->schema, t->table);

			streamsync_sink_fail(ss, "refused initial sync plan from \"%s\": it keeps table %s, "
					     "which the target has not loaded", ss->peer, q ? q : t->table);
			free(q);
			return;
		}
		ss->tables_satisfied++;
	}
	ss->started_ms = streamsync_now_ms();
	ss->finished_ms = 0;
	ss->bytes_raw = ss->bytes_wire = ss->frames = 0;
	ss->rows_loaded = 0;
	{
		char lsn[32];

		lsn_format(lsn, ss->plan_lsn);
		log_notice("stream \"%s\": initial sync round %u: %zu tables, %zu to copy, snapshot at %s",
			   ss->stream, ++ss->rounds, ss->plan.n, ss->plan.n - ss->tables_satisfied, lsn);
	}
	streamsync_set_state(ss, SS_SINK_LOADING, "plan received");
	streamsync_check_complete(ss);
}

/* Inflates a frame's data into *out; false with a reason in err. */
static bool streamsync_inflate(struct streamsync *ss, const struct frame *f,
		const struct relay_proto_sync *m, const uint8_t **out, size_t *len, char *err,
		size_t errlen)
{
	if (((f->flags & FRAME_FLAG_COMPRESSED) != 0) != codec_compresses(ss->codec)) {
		snprintf(err, errlen, "compression flag differs from the stream's codec");
		return false;
	}
	if (m->raw_len > STREAMSYNC_RAW_MAX) {
		snprintf(err, errlen, "chunk of %u bytes is over the limit", m->raw_len);
		return false;
	}
	if (!codec_run(ss->codec, m->data, m->data_len, m->raw_len, out, len, err, errlen))
		return false;
	if (*len != m->raw_len) {
		snprintf(err, errlen, "data inflates to %zu bytes, its header says %u", *len, m->raw_len);
		return false;
	}
	ss->frames++;
	ss->bytes_raw += *len;
	ss->bytes_wire += m->data_len;
	return true;
}

static void streamsync_sink_plan_frame(struct streamsync *ss, const struct frame *f,
		const struct relay_proto_sync *m)
{
	struct syncplan plan;
	const uint8_t *data;
	size_t len;
	char err[256];

	if (m->chunk == 0) {
		codec_reset(ss->codec);
		ss->plan_text.len = 0;
		ss->collecting = true;
		ss->plan_next_chunk = 0;
		ss->plan_frame_lsn = m->snapshot_lsn;
	}
	if (!ss->collecting)
		return;       /* the rest of a plan that is not ours */
	if (m->chunk != ss->plan_next_chunk || m->snapshot_lsn != ss->plan_frame_lsn) {
		streamsync_sink_fail(ss, "refused SYNC plan from \"%s\": chunk %u out of order",
				     ss->peer, m->chunk);
		return;
	}
	if (!streamsync_inflate(ss, f, m, &data, &len, err, sizeof(err))) {
		streamsync_sink_fail(ss, "refused SYNC plan from \"%s\": %s", ss->peer, err);
		return;
	}
	if (ss->plan_text.len + len > SYNCPLAN_MAX_TEXT) {
		streamsync_sink_fail(ss, "refused SYNC plan from \"%s\": over %u bytes", ss->peer,
				     SYNCPLAN_MAX_TEXT);
		return;
	}
	if (!syncplan_text_append(&ss->plan_text, data, len)) {
		streamsync_sink_fail(ss, "initial sync: out of memory taking the plan");
		return;
	}
	ss->plan_next_chunk++;
	if (!(m->flags & RELAY_SYNC_LAST))
		return;
	ss->collecting = false;
	if (!syncplan_decode(ss->plan_text.data, ss->plan_text.len, &plan, err, sizeof(err))) {
		streamsync_sink_fail(ss, "refused SYNC plan from \"%s\": %s", ss->peer, err);
		return;
	}
	if (plan.generation != ss->generation) {
		log_debug("stream \"%s\": ignoring the plan of round %u (waiting for %u)", ss->stream,
			  plan.generation, ss->generation);
		syncplan_free(&plan);
		return;
	}
	streamsync_accept_plan(ss, &plan);
	syncplan_free(&plan);
}

static bool streamsync_add_active(struct streamsync *ss, uint64_t job, size_t table, uint32_t unit)
{
	if (ss->nactive == ss->active_cap) {
		size_t cap = ss->active_cap ? ss->active_cap * 2 : 8;
		struct streamsync_active *grown = realloc(ss->active, cap * sizeof(*grown));

		if (!grown)
			return false;
		ss->active = grown;
		ss->active_cap = cap;
	}
	ss->active[ss->nactive++] = (struct streamsync_active){ job, table, unit };
	return true;
}

static long streamsync_find_active(const struct streamsync *ss, uint64_t job)
{
	for (size_t i = 0; i < ss->nactive; i++) {
		if (ss->active[i].job == job)
			return (long)i;
	}
	return -1;
}

/* Why a data frame does not fit the plan's copy of its table (NULL: it does). */
static const char *streamsync_frame_refusal(const struct streamsync *ss,
		const struct syncplan_table *t, const struct streamsync_unit *u,
		const struct relay_proto_sync *m)
{
	if (m->snapshot_lsn != ss->plan_lsn)
		return "snapshot LSN differs from the plan's";
	if (u->loaded)
		return t->ranges ? "range already loaded" : "table already loaded";
	if (m->chunk != u->next_chunk || (u->job == 0 && m->chunk != 0))
		return "chunk out of order";
	return NULL;
}

/* A table's (or range's) first chunk: its load begins. False when out of memory. */
static bool streamsync_begin_load(struct streamsync *ss, size_t table, uint32_t unit)
{
	const struct syncplan_table *t = &ss->plan.tables[table];
	struct streamsync_progress *p = &ss->progress[table];
	struct streamsync_unit *u = &p->units[unit];

	if (t->ranges) {
		/* a fresh copy's first range clears the table; the others wait for it to commit */
		const struct syncload_range r = { unit, t->ranges, p->fresh && !p->cleared };

		u->job = syncload_begin_range(ss->load, t->schema, t->table, t->columns, t->ncolumns,
					      ss->plan_lsn, &r);
		p->cleared = p->cleared || r.clear;
	} else {
		u->job = syncload_begin(ss->load, t->schema, t->table, t->columns, t->ncolumns,
					ss->plan_lsn);
	}
	return u->job && streamsync_add_active(ss, u->job, table, unit);
}

static void streamsync_sink_data_frame(struct streamsync *ss, const struct frame *f,
		const struct relay_proto_sync *m)
{
	const struct syncplan_set_entry *e;
	struct streamsync_unit *u;
	const struct syncplan_table *t;
	const uint8_t *data;
	const char *why;
	size_t len;
	char err[256];

	if (ss->state != SS_SINK_LOADING || ss->collecting)
		return;       /* sent before the plan we wait for: an older round's */
	e = syncplan_set_get(&ss->plan_index, m->schema.ptr, m->schema.len, m->table.ptr, m->table.len);
	if (!e || !ss->plan.tables[e->value].copy || m->ranges != ss->plan.tables[e->value].ranges ||
	    (m->ranges && !syncrange_set_has(&ss->plan.tables[e->value].copied, m->range))) {
		snprintf(err, sizeof(err), " (range %u of %u)", m->range, m->ranges);
		streamsync_sink_fail(ss, "refused SYNC frame from \"%s\": table \"%.*s\".\"%.*s\"%s is "
				     "not copied in this round", ss->peer, (int)m->schema.len,
				     m->schema.ptr, (int)m->table.len, m->table.ptr, m->ranges ? err : "");
		return;
	}
	t = &ss->plan.tables[e->value];
	u = &ss->progress[e->value].units[m->range];
	why = streamsync_frame_refusal(ss, t, u, m);
	if (why || !streamsync_inflate(ss, f, m, &data, &len, err, sizeof(err))) {
		char *q = syncplan_qualified(t->schema, t->table);

		streamsync_sink_fail(ss, "refused SYNC frame from \"%s\" for table %s: %s", ss->peer,
				     q ? q : t->table, why ? why : err);
		free(q);
		return;
	}
	(void)fault_hit("sink.sync_chunk");
	if (m->chunk == 0 && !streamsync_begin_load(ss, (size_t)e->value, m->range)) {
		streamsync_sink_fail(ss, "initial sync: out of memory starting a load");
		return;
	}
	if (!syncload_data(ss->load, u->job, m->chunk, data, len) ||
	    ((m->flags & RELAY_SYNC_LAST) && !syncload_end(ss->load, u->job))) {
		streamsync_sink_fail(ss, "initial sync: out of memory queueing a chunk");
		return;
	}
	u->next_chunk++;
}

/* ---- loader callbacks ---- */

/* Tables whose every range is recorded, from one snapshot, are loaded. */
static bool streamsync_ranges_complete(struct streamsync *ss)
{
	for (size_t i = 0; i < ss->ranges.index.cap; i++) {
		const struct syncplan_set_entry *slot = &ss->ranges.index.slots[i];
		const struct syncplan_ranges_entry *e;

		if (!slot->schema)
			continue;
		e = &ss->ranges.v[slot->value];
		if (!syncrange_set_full(&e->got))
			continue;
		if (!streamsync_record_done(ss, slot->schema, slot->table, e->lsn))
			return false;
		syncplan_ranges_drop(&ss->ranges, slot->schema, strlen(slot->schema), slot->table,
				     strlen(slot->table));
	}
	return true;
}

static void streamsync_load_state(void *arg, const struct syncload_loaded *tables, size_t n,
		uint64_t done_lsn)
{
	struct streamsync *ss = arg;
	char lsn[32];

	syncplan_set_free(&ss->done);
	syncplan_ranges_free(&ss->ranges);
	ss->fold_at = 0;
	for (size_t i = 0; i < n; i++) {
		const struct syncload_loaded *t = &tables[i];

		if (t->ranges ? !syncplan_ranges_add(&ss->ranges, t->schema, strlen(t->schema), t->table,
						     strlen(t->table), t->lsn, t->range, t->ranges) :
		    !streamsync_record_done(ss, t->schema, t->table, t->lsn)) {
			streamsync_sink_fail(ss, "initial sync: out of memory reading the target's state");
			return;
		}
	}
	if (!streamsync_ranges_complete(ss)) {
		streamsync_sink_fail(ss, "initial sync: out of memory reading the target's state");
		return;
	}
	ss->done_lsn = done_lsn;
	if (done_lsn) {
		lsn_format(lsn, done_lsn);
		log_info("stream \"%s\": initial sync done before (%zu tables), streaming from %s at the "
			 "earliest", ss->stream, n, lsn);
		streamsync_set_state(ss, SS_SINK_DONE, "recorded on the target");
		ss->load_dead = true;
		streamsync_later(ss);
	} else {
		streamsync_set_state(ss, SS_SINK_NEEDED, n ? "some tables are loaded, not all" :
				     "nothing loaded yet");
	}
	ss->resume(ss->arg);
}

static void streamsync_load_taken(void *arg, uint64_t job, uint32_t chunk)
{
	struct streamsync *ss = arg;
	long i = streamsync_find_active(ss, job);
	const struct syncplan_table *t;

	if (i < 0 || ss->state != SS_SINK_LOADING)
		return;
	t = &ss->plan.tables[ss->active[i].table];
	(void)streamsync_send_part(ss, t->schema, strlen(t->schema), t->table, strlen(t->table),
				   ss->plan_lsn, (struct streamsync_part){ ss->active[i].unit, t->ranges },
				   chunk, false, NULL, 0, false);
}

/* What the target has now, in memory and told to the source ("I have it"). */
static bool streamsync_note_loaded(struct streamsync *ss, const struct syncload_loaded *t)
{
	if (!t->ranges) {
		if (!streamsync_record_done(ss, t->schema, t->table, t->lsn))
			return false;
		streamsync_send_have(ss, t->schema, t->table, t->lsn);
		return true;
	}
	if (!syncplan_ranges_add(&ss->ranges, t->schema, strlen(t->schema), t->table,
				 strlen(t->table), t->lsn, t->range, t->ranges))
		return false;
	(void)streamsync_send_part(ss, t->schema, strlen(t->schema), t->table, strlen(t->table),
				   t->lsn, (struct streamsync_part){ t->range, t->ranges }, 0, true,
				   NULL, 0, false);
	return true;
}

static void streamsync_load_loaded(void *arg, uint64_t job, const struct syncload_loaded *t,
		uint64_t rows)
{
	struct streamsync *ss = arg;
	long i = streamsync_find_active(ss, job);
	struct streamsync_progress *p;
	const struct syncplan_table *pt;

	/* true whichever round it belonged to: the target has it */
	if (!streamsync_note_loaded(ss, t)) {
		streamsync_sink_fail(ss, "initial sync: out of memory recording a loaded table");
		return;
	}
	if (i < 0 || ss->state != SS_SINK_LOADING)
		return;
	pt = &ss->plan.tables[ss->active[i].table];
	p = &ss->progress[ss->active[i].table];
	p->units[ss->active[i].unit].loaded = true;
	ss->active[i] = ss->active[--ss->nactive];
	ss->rows_loaded += rows;
	if (--p->left > 0)
		return;
	if (pt->ranges) {
		/* every range is in, from the plan's snapshot: the table is loaded */
		if (!streamsync_ranges_complete(ss)) {
			streamsync_sink_fail(ss, "initial sync: out of memory recording a loaded table");
			return;
		}
		streamsync_send_have(ss, pt->schema, pt->table, ss->plan_lsn);
	}
	ss->tables_satisfied++;
	ss->tables_loaded++;
	streamsync_check_complete(ss);
}

static void streamsync_load_marked(void *arg, uint64_t done_lsn)
{
	struct streamsync *ss = arg;

	ss->done_lsn = done_lsn;
	streamsync_set_state(ss, SS_SINK_DONE, "recorded on the target");
	ss->load_dead = true;      /* its connections are not needed any more */
	streamsync_later(ss);
	ss->resume(ss->arg);
}

static void streamsync_load_failed(void *arg, const char *reason)
{
	struct streamsync *ss = arg;

	if (ss->state == SS_SINK_DONE)
		return;
	snprintf(ss->last_error, sizeof(ss->last_error), "%s", reason);
	ss->nactive = 0;
	ss->collecting = false;
	streamsync_set_state(ss, SS_SINK_PAUSED, "loading failed");
	log_warning("stream \"%s\": initial sync paused; asking for a new round in %u s", ss->stream,
		    STREAMSYNC_RETRY_MS / 1000);
	streamsync_retry_in(ss, STREAMSYNC_RETRY_MS);
}

/* "I have this range" for every range the target holds of a table not loaded whole. */
static bool streamsync_send_have_ranges(struct streamsync *ss)
{
	for (size_t i = 0; i < ss->ranges.index.cap; i++) {
		const struct syncplan_set_entry *slot = &ss->ranges.index.slots[i];
		const struct syncplan_ranges_entry *e;

		if (!slot->schema)
			continue;
		e = &ss->ranges.v[slot->value];
		for (uint32_t k = 0; k < e->got.n; k++) {
			if (syncrange_set_has(&e->got, k) &&
			    !streamsync_send_part(ss, slot->schema, strlen(slot->schema), slot->table,
						  strlen(slot->table), e->lsn,
						  (struct streamsync_part){ k, e->got.n }, 0, true, NULL, 0,
						  false))
				return false;
		}
	}
	return true;
}

bool streamsync_sink_resume(struct streamsync *ss, uint32_t generation, uint64_t *lsn)
{
	if (!ss->sink)
		return true;
	switch (ss->state) {
	case SS_SINK_DONE:
		if (ss->done_lsn > *lsn)
			*lsn = ss->done_lsn;
		syncfilter_restart(ss->filter);
		return true;
	case SS_SINK_NEEDED:
		break;
	default:
		return false;
	}
	if (*lsn > 0) {
		/* the apply engine has applied changes: the sync is behind us */
		streamsync_set_state(ss, SS_SINK_DONE, "the stream has applied changes already");
		ss->load_dead = true;
		streamsync_later(ss);
		syncfilter_restart(ss->filter);
		return true;
	}
	for (size_t i = 0; i < ss->done.cap; i++) {
		const struct syncplan_set_entry *e = &ss->done.slots[i];

		if (e->schema && !streamsync_send(ss, e->schema, strlen(e->schema), e->table,
						  strlen(e->table), e->value, 0, true, NULL, 0, false))
			return false;     /* the link went down: the next one asks again */
	}
	if (!streamsync_send_have_ranges(ss))
		return false;
	ss->generation = generation;
	ss->collecting = false;
	streamsync_set_state(ss, SS_SINK_WAIT_PLAN, "asked the source for a round");
	*lsn = 0;
	return true;
}

bool streamsync_sink_hello(struct streamsync *ss, uint64_t *lsn)
{
	if (!ss->sink)
		return true;
	if (ss->state == SS_SINK_DONE || (ss->state == SS_SINK_NEEDED && *lsn > 0)) {
		uint64_t dummy = *lsn;

		(void)streamsync_sink_resume(ss, 0, &dummy);
		*lsn = dummy;
		return true;
	}
	return false;
}

bool streamsync_filter(struct streamsync *ss, const uint8_t *body, size_t len,
		const uint8_t **out, size_t *out_len)
{
	char err[256];

	if (ss->state != SS_SINK_DONE) {
		if (!ss->warned_batch)
			log_warning("stream \"%s\": BATCH before the initial sync is done, ignored (does the "
				    "source's config say initial_sync too?)", ss->stream);
		ss->warned_batch = true;
		return false;
	}
	if (!syncfilter_run(ss->filter, body, len, out, out_len, err, sizeof(err))) {
		log_error("stream \"%s\": could not filter a batch: %s", ss->stream, err);
		return false;
	}
	return true;
}

static void streamsync_load_folded(void *arg, uint64_t lsn)
{
	(void)arg;
	(void)lsn;       /* logged by the loader; its connection goes with load_dead */
}

static const struct syncload_callbacks streamsync_load_cb = {
	.state = streamsync_load_state,
	.taken = streamsync_load_taken,
	.loaded = streamsync_load_loaded,
	.marked = streamsync_load_marked,
	.folded = streamsync_load_folded,
	.failed = streamsync_load_failed,
};

void streamsync_committed(struct streamsync *ss, uint64_t lsn)
{
	if (!ss->sink || ss->state != SS_SINK_DONE || ss->fold_at == 0 || lsn < ss->fold_at)
		return;
	/* every table record is behind the stream now: fold them, once */
	ss->fold_at = 0;
	if (!ss->load)
		ss->load = syncload_new(ss->base, ss->conninfo, ss->stream, &streamsync_load_cb, ss);
	if (!ss->load) {
		log_warning("stream \"%s\": out of memory folding the initial sync's record (the next "
			    "start folds it)", ss->stream);
		return;
	}
	syncload_fold(ss->load, lsn);
	ss->load_dead = true;        /* freed once idle */
	event_add(ss->ev_later, &(struct timeval){ 1, 0 });
}

/* ================================================================= both */

void streamsync_frame(struct streamsync *ss, const struct frame *f, const struct relay_proto_sync *m)
{
	if (!ss->sink) {
		streamsync_source_frame(ss, m);
		return;
	}
	if (ss->state != SS_SINK_WAIT_PLAN && ss->state != SS_SINK_LOADING)
		return;       /* no round under way: an old one's */
	if (streamsync_is_plan(m->schema, m->table))
		streamsync_sink_plan_frame(ss, f, m);
	else
		streamsync_sink_data_frame(ss, f, m);
}

/*
 * The source's end of a lost link: a copy under way keeps its snapshot for
 * STREAMSYNC_HOLD_MS, so the sink's next round goes on in it.
 */
static void streamsync_source_link_down(struct streamsync *ss)
{
	bool copying = ss->state == SS_SOURCE_COPYING || ss->state == SS_SOURCE_SHIPPED;

	syncplan_set_free(&ss->have_pending);
	syncplan_set_free(&ss->round_have);
	syncplan_ranges_free(&ss->have_ranges_pending);
	syncplan_ranges_free(&ss->round_have_ranges);
	if (copying && ss->copy && synccopy_park(ss->copy)) {
		event_del(ss->ev_retry);
		event_add(ss->ev_hold, &(struct timeval){ STREAMSYNC_HOLD_MS / 1000, 0 });
		log_notice("stream \"%s\": initial sync: the link is down; the copy's snapshot is held "
			   "for %u s (it holds back the source's xmin meanwhile)", ss->stream,
			   STREAMSYNC_HOLD_MS / 1000);
	} else if (ss->state != SS_SOURCE_IDLE) {
		streamsync_source_end_round(ss);
	}
	if (ss->state != SS_SOURCE_IDLE)
		streamsync_set_state(ss, SS_SOURCE_IDLE, "the link is down");
}

/* The sink did not come back for the held snapshot: let it go. */
static void streamsync_hold_cb(evutil_socket_t fd, short what, void *arg)
{
	struct streamsync *ss = arg;

	(void)fd;
	(void)what;
	if (ss->state != SS_SOURCE_IDLE || !ss->copy)
		return;
	log_notice("stream \"%s\": initial sync: the sink did not come back within %u s; releasing "
		   "the copy's snapshot (a later round copies its tables again)", ss->stream,
		   STREAMSYNC_HOLD_MS / 1000);
	synccopy_free(ss->copy);
	ss->copy = NULL;
}

void streamsync_link_down(struct streamsync *ss)
{
	if (!ss->sink) {
		streamsync_source_link_down(ss);
		return;
	}
	if (ss->state == SS_SINK_WAIT_PLAN || ss->state == SS_SINK_LOADING) {
		streamsync_sink_end_round(ss);
		streamsync_set_state(ss, SS_SINK_NEEDED, "the link is down");
	}
}

static void streamsync_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct streamsync *ss = arg;

	(void)fd;
	(void)what;
	if (!ss->sink) {
		if (ss->state == SS_SOURCE_RETRY)
			streamsync_source_start(ss, NULL);
		return;
	}
	if (ss->state == SS_SINK_PAUSED && ss->load) {
		streamsync_set_state(ss, SS_SINK_QUERYING, "retrying");
		syncload_query(ss->load);
	}
}

static void streamsync_later_cb(evutil_socket_t fd, short what, void *arg)
{
	struct streamsync *ss = arg;

	(void)fd;
	(void)what;
	synccopy_free(ss->copy_dead);
	ss->copy_dead = NULL;
	if (ss->broken && ss->copy) {
		ss->broken = false;
		/* as if the copy had failed: it could not hand its data over */
		streamsync_count_copy(ss);
		synccopy_free(ss->copy);
		ss->copy = NULL;
		ss->retry_temporary = true;
		streamsync_set_state(ss, SS_SOURCE_RETRY, "could not send a chunk");
		streamsync_retry_in(ss, streamsync_backoff(ss));
	}
	if (ss->load_dead && ss->load) {
		if (syncload_idle(ss->load)) {
			syncload_free(ss->load);
			ss->load = NULL;
		} else {
			/* a commit under way: look again in a second */
			event_add(ss->ev_later, &(struct timeval){ 1, 0 });
		}
	}
}

/* ================================================================ set-up */

static struct streamsync *streamsync_new(struct event_base *base, struct relay *relay,
		const char *stream, const char *peer, const char *conninfo)
{
	struct streamsync *ss = calloc(1, sizeof(*ss));

	if (!ss)
		return NULL;
	ss->base = base;
	ss->relay = relay;
	ss->stream = strdup(stream);
	ss->peer = strdup(peer);
	ss->conninfo = strdup(conninfo);
	wire_writer_init_heap(&ss->out, FRAME_MAX_PAYLOAD);
	syncplan_init(&ss->plan);
	ss->ev_retry = event_new(base, -1, 0, streamsync_retry_cb, ss);
	ss->ev_later = event_new(base, -1, 0, streamsync_later_cb, ss);
	ss->ev_hold = event_new(base, -1, 0, streamsync_hold_cb, ss);
	if (!ss->stream || !ss->peer || !ss->conninfo || !ss->ev_retry || !ss->ev_later ||
	    !ss->ev_hold) {
		streamsync_free(ss);
		return NULL;
	}
	return ss;
}

struct streamsync *streamsync_new_source(struct event_base *base, struct relay *relay,
		const char *stream, const char *peer, const char *conninfo, const char *publication,
		enum config_codec codec, int level, struct source *const *source)
{
	struct streamsync *ss = streamsync_new(base, relay, stream, peer, conninfo);

	if (!ss)
		goto oom;
	ss->state = SS_SOURCE_IDLE;
	ss->sourcep = source;
	ss->publication = strdup(publication);
	ss->codec = codec_new_encoder(codec, level, CODEC_CONTENT_OPAQUE);
	if (!ss->publication || !ss->codec)
		goto oom;
	return ss;
oom:
	log_error("stream \"%s\": out of memory setting up the initial sync", stream);
	streamsync_free(ss);
	return NULL;
}

struct streamsync *streamsync_new_sink(struct event_base *base, struct relay *relay,
		const char *stream, const char *peer, const char *conninfo, enum config_codec codec,
		streamsync_resume_fn resume, void *arg)
{
	struct streamsync *ss = streamsync_new(base, relay, stream, peer, conninfo);

	if (!ss)
		goto oom;
	ss->sink = true;
	ss->state = SS_SINK_QUERYING;
	ss->resume = resume;
	ss->arg = arg;
	ss->codec = codec_new_decoder(codec);
	ss->filter = syncfilter_new();
	ss->load = ss->codec && ss->filter ? syncload_new(base, conninfo, stream, &streamsync_load_cb, ss) : NULL;
	if (!ss->load)
		goto oom;
	syncload_query(ss->load);
	return ss;
oom:
	log_error("stream \"%s\": out of memory setting up the initial sync", stream);
	streamsync_free(ss);
	return NULL;
}

void streamsync_free(struct streamsync *ss)
{
	if (!ss)
		return;
	synccopy_free(ss->copy);
	synccopy_free(ss->copy_dead);
	syncload_free(ss->load);
	syncfilter_free(ss->filter);
	codec_free(ss->codec);
	if (ss->ev_retry)
		event_free(ss->ev_retry);
	if (ss->ev_later)
		event_free(ss->ev_later);
	if (ss->ev_hold)
		event_free(ss->ev_hold);
	syncplan_ranges_free(&ss->have_ranges_pending);
	syncplan_ranges_free(&ss->round_have_ranges);
	syncplan_ranges_free(&ss->ranges);
	syncplan_set_free(&ss->have_pending);
	syncplan_set_free(&ss->round_have);
	syncplan_set_free(&ss->done);
	syncplan_set_free(&ss->plan_index);
	syncplan_free(&ss->plan);
	syncplan_text_free(&ss->plan_text);
	streamsync_progress_free(ss);
	free(ss->active);
	wire_writer_free(&ss->out);
	free(ss->stream);
	free(ss->peer);
	free(ss->conninfo);
	free(ss->publication);
	free(ss);
}

/* ================================================================ status */

bool streamsync_in_progress(const struct streamsync *ss)
{
	switch (ss->state) {
	case SS_SOURCE_PENDING:
	case SS_SOURCE_COPYING:
	case SS_SOURCE_RETRY:
	case SS_SOURCE_SHIPPED:
	case SS_SINK_NEEDED:
	case SS_SINK_WAIT_PLAN:
	case SS_SINK_LOADING:
	case SS_SINK_MARKING:
	case SS_SINK_PAUSED:
		return true;
	default:
		return false;
	}
}

void streamsync_source_figures(const struct streamsync *ss, struct streamsync_figures *out)
{
	struct synccopy_progress p = { .eta_s = -1.0 };

	if (ss->copy)
		synccopy_progress(ss->copy, &p);
	out->running = streamsync_in_progress(ss);
	out->round = p.planned;
	out->tables_total = p.tables_total;
	out->tables_done = p.tables_total - p.tables_to_copy + p.tables_copied;
	out->eta_s = p.eta_s;
	out->rows = ss->rows_before + p.rows;
	out->bytes = ss->bytes_before + p.bytes;
}

void streamsync_status_json(const struct streamsync *ss, struct json_out *j)
{
	char lsn[32];
	int64_t end = ss->finished_ms ? ss->finished_ms : streamsync_now_ms();

	json_object_begin(j, "initial_sync");
	json_string(j, "state", streamsync_state_names[ss->state]);
	json_uint(j, "rounds", ss->rounds);
	json_uint(j, "generation", ss->generation);
	json_uint(j, "frames", ss->frames);
	json_uint(j, "bytes_wire", ss->bytes_wire);
	if (!ss->sink) {
		/* tables, rows and COPY text read: the round's, or the last one's */
		if (ss->copy)
			synccopy_status_json(ss->copy, j);
	} else {
		json_uint(j, "bytes", ss->bytes_raw);
		lsn_format(lsn, ss->plan_lsn);
		json_string(j, "snapshot_lsn", ss->plan_lsn ? lsn : NULL);
		json_uint(j, "tables_total", ss->plan.n);
		json_uint(j, "tables_done", ss->tables_satisfied);
		json_uint(j, "tables_loaded_this_round", ss->tables_loaded);
		json_uint(j, "tables_recorded", ss->done.n);
		json_uint(j, "rows", ss->rows_loaded);
		lsn_format(lsn, ss->done_lsn);
		json_string(j, "streaming_from", ss->done_lsn ? lsn : NULL);
		json_bool(j, "filter_active", syncfilter_active(ss->filter));
		json_uint(j, "changes_skipped", syncfilter_dropped(ss->filter));
		if (ss->load)
			syncload_status_json(ss->load, j);
	}
	json_double(j, "elapsed_s", ss->started_ms ? (double)(end - ss->started_ms) / 1000.0 : 0.0);
	if (ss->sink) {
		double secs = ss->started_ms ? (double)(end - ss->started_ms) / 1000.0 : 0.0;

		json_double(j, "rows_per_s", secs > 0 ? (double)ss->rows_loaded / secs : 0.0);
		json_double(j, "bytes_per_s", secs > 0 ? (double)ss->bytes_raw / secs : 0.0);
	}
	json_string(j, "last_error", ss->last_error[0] ? ss->last_error : NULL);
	json_object_end(j);
}
