/*
 * stream_sync.h — a stream's initial sync across the relay link: the
 * conversation in SYNC frames between the source site (synccopy.h reads the
 * tables) and the sink site (syncload.h loads them), and the sink's filter
 * that drops streamed changes a table's copy already holds (syncfilter.h).
 * stream.c owns one per stream whose config says initial_sync: true and
 * calls in at a few points; a stream without one behaves as before.
 *
 * The conversation (sink K, source S; every message a SYNC frame unless
 * named otherwise):
 *
 *   K  one frame per table the target has loaded: schema, table, its
 *      snapshot LSN, flag LAST, no data ("I have it"); and one per range
 *      loaded of a table copied in ranges and not loaded whole yet (the
 *      same, with range k of n)
 *   K  RESUME lsn 0, generation g: "run a copy round"
 *   S  plan: pseudo-table pg_catalog.strait_sync_plan, the round's snapshot
 *      LSN, chunks 0.. (LAST on the final one), data: syncplan.h's text
 *      with generation g, listing every published table as copied ('c')
 *      or kept ('k': K said it has it)
 *   S  per copied table (or range of a split table): chunks 0, 1, ... of
 *      its COPY text, LAST on the final one, sync_workers interleaved at a
 *      time
 *   K  per chunk that went into the target: schema, table, LSN, chunk
 *      number, no flag, no data (an acknowledgement: S reads a table no
 *      further than SYNCCOPY_WINDOW chunks ahead of it)
 *   K  per table committed: as in the first step ("I have it")
 *   K  once every table of the plan is loaded: records the sync as done on
 *      the target, then RESUME at the earliest snapshot LSN of the plan's
 *      tables — streaming goes on as usual from there
 *
 * Every frame from S goes through the stream's second zstd context (the
 * sync encoder, separate from the one for BATCH frames so that neither
 * disturbs the other's window); both ends start it afresh at each plan.
 * Frames from K carry no data and are not compressed. The direction tells
 * the two vocabularies apart: S never receives data, K never receives
 * acknowledgements.
 *
 * Anything wrong in a round (a table not in the plan, a chunk out of order,
 * another snapshot LSN, data that does not inflate to its declared size, a
 * plan that does not parse) is logged with its reason and ends the round at
 * the sink: loads in progress roll back, loaded tables stay, and a new round
 * is asked for after STREAMSYNC_RETRY_MS. A lost link ends the round on both
 * sides the same way, except that the source keeps the round's snapshot
 * (synccopy_park()) for STREAMSYNC_HOLD_MS: the next round goes on in it and
 * copies only the tables and ranges the sink lacks (DESIGN.md, "Large tables
 * in ranges"). A round the source cannot finish (its database went
 * away) is retried by the source with backoff, under the same generation:
 * the sink takes a new plan of its current generation as a fresh start.
 *
 * Ownership: streamsync_new_*() return an object freed by streamsync_free();
 * it keeps pointers to the relay (not owned). Callbacks are called from the
 * event loop, never from inside a streamsync_*() call.
 */
#ifndef STRAIT_STREAM_SYNC_H
#define STRAIT_STREAM_SYNC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

struct event_base;
struct frame;
struct json_out;
struct relay;
struct relay_proto_sync;
struct source;
struct streamsync;

/* A round failed at the sink: ask again after this long. */
#define STREAMSYNC_RETRY_MS 5000u
/* A copy stops queueing on the link here (live streams may go to RELAY_OUTPUT_HIGH). */
#define STREAMSYNC_OUTPUT_MAX (512u * 1024u)
/* Largest chunk the sink inflates (the source sends SYNCCOPY_CHUNK_BYTES). */
#define STREAMSYNC_RAW_MAX (1024u * 1024u)

/* The sink's stream: ask the source where to go on (send RESUME) now. */
typedef void (*streamsync_resume_fn)(void *arg);

/* NULL when out of memory (logged). */
/*
 * source: where the stream keeps its source (replaced when it fails), whose
 * exported snapshot the first round uses and then releases.
 */
struct streamsync *streamsync_new_source(struct event_base *base, struct relay *relay,
		const char *stream, const char *peer, const char *conninfo, const char *publication,
		enum config_codec codec, int level, struct source *const *source);
struct streamsync *streamsync_new_sink(struct event_base *base, struct relay *relay,
		const char *stream, const char *peer, const char *conninfo, enum config_codec codec,
		streamsync_resume_fn resume, void *arg);
void streamsync_free(struct streamsync *ss);

/* ---- source side ---- */

/*
 * The sink asked for a copy round (RESUME at 0) with this generation. It
 * starts once src is ready (now, or at streamsync_source_ready()); src's
 * exported snapshot is used while it is still valid.
 */
void streamsync_source_request(struct streamsync *ss, uint32_t generation, struct source *src);
void streamsync_source_ready(struct streamsync *ss, struct source *src);
/*
 * The stream's sync_workers and sync_split_above (config.h), for the rounds
 * started from now on.
 */
void streamsync_set_copy_limits(struct streamsync *ss, unsigned workers, uint64_t split_above);
/* The sink resumes streaming (RESUME past 0): any round is over. */
void streamsync_source_stop(struct streamsync *ss);
/* The link drained: go on reading. */
void streamsync_writable(struct streamsync *ss);

/* ---- both ---- */

/* A SYNC frame for this stream from the peer (m decoded from f). */
void streamsync_frame(struct streamsync *ss, const struct frame *f, const struct relay_proto_sync *m);
/* The link to the peer went down. */
void streamsync_link_down(struct streamsync *ss);

/* ---- sink side ---- */

/*
 * About to send RESUME with this generation; *lsn holds where the apply
 * engine would resume. False: do not send (the sync state is not known yet,
 * or a round is running; the resume callback comes when to). True: send
 * *lsn — 0 asks for a round (the "have" frames went out just now), else the
 * position to stream from.
 */
bool streamsync_sink_resume(struct streamsync *ss, uint32_t generation, uint64_t *lsn);
/* The same for a HELLO (generation 0), which cannot ask for a round: false then. */
bool streamsync_sink_hello(struct streamsync *ss, uint64_t *lsn);
/*
 * Filters a batch body before apply (syncfilter.h). False: do not apply it
 * (logged; e.g. streamed data before the sync is done). *out as
 * syncfilter_run() gives it.
 */
/* The sink's apply committed up to lsn: table records it has passed are folded away. */
void streamsync_committed(struct streamsync *ss, uint64_t lsn);

bool streamsync_filter(struct streamsync *ss, const uint8_t *body, size_t len,
		const uint8_t **out, size_t *out_len);

/*
 * Whether the sync holds the stream back: a round is asked for or running
 * (source), or the tables are not all loaded yet (sink) — "syncing" in
 * reports.
 */
bool streamsync_in_progress(const struct streamsync *ss);

/*
 * The source's figures, for metrics: the current round's (or the last one's,
 * kept until the next), and rows and bytes read by every round since the
 * daemon started. The source has the plan and the tables' sizes; the sink's
 * loads follow its reading within SYNCCOPY_WINDOW chunks per table.
 */
struct streamsync_figures {
	bool running;                /* streamsync_in_progress() */
	bool round;                  /* a round's plan is listed: tables and eta_s hold */
	size_t tables_total;         /* the round's plan */
	size_t tables_done;          /* kept (the target has them) or read in full */
	double eta_s;                /* seconds left reading; -1 not known yet */
	uint64_t rows;               /* every round's, since the daemon started */
	uint64_t bytes;              /* COPY text, likewise */
};
void streamsync_source_figures(const struct streamsync *ss, struct streamsync_figures *out);

/* Appends the "initial_sync" status object. */
void streamsync_status_json(const struct streamsync *ss, struct json_out *j);

#endif
