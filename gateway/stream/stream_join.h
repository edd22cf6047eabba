/*
 * stream_join.h — tables that join a stream after its initial sync: the
 * sink notices a change of a table the stream does not have, holds that
 * table's changes while the source copies it in a snapshot of its own, loads
 * the copy, applies the held changes and takes the table in, while every
 * other table streams on (DESIGN.md, "Tables that join later").
 *
 * The conversation, in SYNC frames flagged RELAY_SYNC_JOIN (sink K, source S):
 *   K  schema, table, flag LAST, no data: "copy this table"
 *   S  the plan pseudo-table (syncplan.h) with that one table and its
 *      columns, at the copy's snapshot LSN; chunk STREAMJOIN_REFUSED_CHUNK
 *      when the table is not published, STREAMJOIN_FAILED_CHUNK when the
 *      copy failed (K asks again later)
 *   S  the table's COPY text in chunks, LAST on the final one
 *   K  per chunk loaded: schema, table, LSN, chunk, no flag (acknowledgement)
 *
 * The sink's record (syncstate.h): a sync_join row is committed before any
 * change of the table is held (the batch that showed the table is refused
 * and asked for again meanwhile), and replaced by a sync_member row once the
 * held changes are committed; a start that finds a sync_join row copies the
 * table again. Its statements and the load run on one connection on the
 * loader pool's last origin, never in use once the initial sync is done.
 *
 * Ownership: streamjoin_new_*() return an object freed by streamjoin_free().
 */
#ifndef STRAIT_STREAM_JOIN_H
#define STRAIT_STREAM_JOIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct json_out;
struct relay;
struct relay_proto_sync;
struct streamjoin;

#define STREAMJOIN_REFUSED_CHUNK 0xfffffffeu
#define STREAMJOIN_FAILED_CHUNK 0xffffffffu

/* What the sink's join needs of its stream. */
struct streamjoin_env {
	/* Hands a body to the apply; false: refused (logged). */
	bool (*submit)(void *arg, const uint8_t *body, size_t len);
	/* Whether the apply can take more now. */
	bool (*room)(void *arg);
	/* The end of the last whole transaction the apply holds. */
	uint64_t (*received)(void *arg);
	/* Bytes the apply holds, not yet committed. */
	size_t (*pending)(void *arg);
	/* The join may let the stream resume now (send RESUME). */
	void (*resume)(void *arg);
	void *arg;
};

struct streamjoin *streamjoin_new_source(struct event_base *base, struct relay *relay,
		const char *stream, const char *peer, const char *conninfo, const char *publication);
struct streamjoin *streamjoin_new_sink(struct event_base *base, struct relay *relay,
		const char *stream, const char *peer, const char *conninfo, const char *spill_dir,
		const struct streamjoin_env *env);
void streamjoin_free(struct streamjoin *j);

/* A SYNC frame flagged RELAY_SYNC_JOIN for this stream. */
void streamjoin_frame(struct streamjoin *j, const struct relay_proto_sync *m);
void streamjoin_link_down(struct streamjoin *j);
/* The link drained (source): a paused copy goes on. */
void streamjoin_writable(struct streamjoin *j);

/* The pseudo-table of the publication's list (the source's, to the sink). */
#define STREAMJOIN_LIST_TABLE "strait_publication"

/*
 * The source's publication lists these tables as of lsn (pubwatch.h): sent
 * to the sink when the list changed, after the link came back, and once a
 * minute, as SYNC frames of STREAMJOIN_LIST_TABLE in schema pg_catalog
 * (syncplan.h's text, every table kept). The sink copies a listed table it
 * does not have, and lets go of a member not listed once it has applied
 * everything before lsn.
 */
void streamjoin_source_list(struct streamjoin *j, const char *const *schemas,
		const char *const *tables, size_t n, uint64_t lsn);

/* ---- sink ---- */

/*
 * Whether the stream may ask the source to resume (the initial sync is
 * done): false while the record of members is read or a joining table's row
 * is written; resume() comes when it may.
 */
bool streamjoin_sink_ready(struct streamjoin *j);

enum streamjoin_gate {
	STREAMJOIN_PASS,         /* *out holds what goes to the apply (maybe nothing) */
	STREAMJOIN_REFUSE,       /* a table joins: ask for the batch again (quietly) */
	STREAMJOIN_BROKEN,       /* malformed or the hold failed (logged): stop the stream */
};
enum streamjoin_gate streamjoin_gate(struct streamjoin *j, const uint8_t *body, size_t len,
		const uint8_t **out, size_t *out_len);
/* The source streams anew from the received position. */
void streamjoin_restart(struct streamjoin *j);
/* The apply reconnected: a replay under way is lost with what it had not committed. */
void streamjoin_apply_restarted(struct streamjoin *j);
/* The apply has committed everything it was given. */
void streamjoin_idle(struct streamjoin *j);
/* The apply committed a source transaction ending at lsn. */
void streamjoin_committed(struct streamjoin *j, uint64_t lsn);
/* Hands held changes to the apply when it is between two source transactions. */
void streamjoin_pump(struct streamjoin *j);
/* Batch bytes held instead of applied, and held bytes handed to the apply (window credit). */
uint64_t streamjoin_held_bytes(const struct streamjoin *j);
uint64_t streamjoin_replayed_bytes(const struct streamjoin *j);
/* Appends the "joining" status members. */
void streamjoin_status_json(const struct streamjoin *j, struct json_out *out);

#endif
