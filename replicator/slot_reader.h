/*
 * slot_reader.h — reading a stream's replication slot: the logical
 * replication connection to the primary's PostgreSQL, cut into batches for
 * the relay link. (The stream's source half that spools and sends the
 * batches is gateway's stream_source.c.)
 *
 * The source creates what it needs when missing (the stream's publication and
 * a pgoutput slot owned by strait), then streams with START_REPLICATION ...
 * LOGICAL (protocol version 2) from the position the sink asks for. It never
 * reinterprets rows: it passes pgoutput messages on, framed as a batch body
 * (each message as a u32 big-endian length and the message), cut at
 * transaction ends. A transaction larger than the batch limit spans several
 * batches; every other batch holds whole transactions. A batch larger than
 * SOURCE_PIECE_MAX (it holds a large value) is handed over in pieces, one
 * per loop pass, that may start and end inside a message (see
 * source_batch_info); only the last carries the batch's commit.
 *
 * Large transactions stream while they run (pgoutput streaming, PostgreSQL
 * 14 and later): Stream Start ... Stream Stop blocks of their changes go
 * between ordinary transactions, then a Stream Commit (a commit: it carries
 * the batch's commit_end_lsn) or a Stream Abort. A block is cut from a batch
 * like a transaction. When the connection starts again the server sends each
 * transaction still running from its start (or never again, when it ended
 * meanwhile): the owner must treat every block before as void.
 *
 * Transactions that were applied by strait itself (they carry an Origin whose
 * name starts with "strait_") are passed on empty — Begin, their Relation and
 * Type messages, Commit — so streams in both directions never loop, while the
 * sink still learns the relation shapes and advances its position.
 *
 * The slot's flush position only moves to what the owner confirms with
 * source_confirm(): what the sink committed (durability remote) or what the
 * spool holds durably (durability spool).
 *
 * Non-blocking libpq inside the caller's libevent loop. Ownership: the caller
 * owns the source and frees it with source_free() — never inside one of the
 * source's own callbacks (schedule it); the batch pointer given to the batch
 * callback is valid during the call only.
 */
#ifndef STRAIT_SLOT_READER_H
#define STRAIT_SLOT_READER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct json_out;
struct source;

struct source_config {
	const char *stream;          /* for messages and the slot name */
	const char *conninfo;        /* the source site's database */
	const char *publication;
	char *const *tables;         /* NULL: FOR ALL TABLES */
	size_t n_tables;
	size_t batch_max_bytes;      /* cut a batch at a commit once it is this big */
	/*
	 * Create a missing slot with an exported snapshot (initial sync): the
	 * snapshot stays valid while the source is ready and idle, until
	 * source_start() — see source_exported_snapshot().
	 */
	bool export_snapshot;
};

/* The largest batch handed over at once: larger ones go in pieces. */
#define SOURCE_PIECE_MAX (4u * 1024u * 1024u)

/* What the batch callback gets besides the body. */
struct source_batch_info {
	uint64_t first_lsn;          /* WAL start of the first message (0: a later piece) */
	uint64_t commit_end_lsn;     /* end LSN of the last whole transaction, 0 if none */
	int64_t commit_time;         /* its commit time, µs since the Unix epoch */
	uint32_t transactions;       /* commits in this batch */
	uint32_t messages;
	uint32_t lead;               /* a piece: bytes at its start that end a message begun before */
	bool continues;              /* a piece: it ends inside a message the next one goes on with */
	/*
	 * Streamed transactions (see NOTES): batches are numbered from 1 in a
	 * source's life; starts_stream says this one holds the first block of a
	 * streamed transaction; open_since is the number of the batch holding
	 * the first block of the oldest one still open after this batch (0:
	 * none). Whoever resends from a position must reach back to it.
	 */
	uint64_t batch_no;
	bool starts_stream;
	uint64_t open_since;
};

struct source_callbacks {
	/* Setup done: publication and slot exist. confirmed_lsn is the slot's position. */
	void (*ready)(void *arg, uint64_t confirmed_lsn);
	/* A batch body. Return false to stop reading (backpressure); resume with source_resume_reading(). */
	bool (*batch)(void *arg, const uint8_t *body, size_t len, const struct source_batch_info *info);
	/* The server's WAL end and clock, from every message (for lag). */
	void (*wal_position)(void *arg, uint64_t wal_end, int64_t server_time_us);
	/* The connection failed or ended; reason is already logged. The source is idle now. */
	void (*stopped)(void *arg, const char *reason);
};

/* Connects and sets up; NULL only when out of memory. */
struct source *source_new(struct event_base *base, const struct source_config *cfg,
		const struct source_callbacks *cb, void *arg);
void source_free(struct source *src);

/* Starts streaming at start_lsn (0: the slot's confirmed position). Only when ready. */
bool source_start(struct source *src, uint64_t start_lsn);

/* Everything up to lsn is safe (committed at the sink, or durable in the spool). */
void source_confirm(struct source *src, uint64_t lsn);

void source_resume_reading(struct source *src);

/*
 * Every source transaction that commits before the returned LSN has been
 * handed to batch() (0: not known right now; ask again after the next read).
 */
uint64_t source_handed_over_before(const struct source *src);

/* Asks the server for a keepalive carrying its sent position (wal_position() follows). */
void source_request_position(struct source *src);

/* The flush position last reported to the server (it follows the sent position when idle). */
uint64_t source_reported_flush(const struct source *src);

/* True once ready() was called and until stopped(). */
bool source_is_ready(const struct source *src);

/*
 * The snapshot this source's connection exported when it created the slot
 * (and *lsn, the slot's consistent point), while it is still valid: the
 * source is ready and has run no command since. NULL otherwise. Whoever
 * imports it must do so before source_start().
 */
const char *source_exported_snapshot(const struct source *src, uint64_t *lsn);

/*
 * Ends the exported snapshot once every copy has imported it, so that it
 * does not hold back the primary's xmin while nobody needs it (a later copy
 * round takes a snapshot of its own). A source_start() meanwhile goes out
 * when the server has answered.
 */
void source_release_snapshot(struct source *src);

void source_status_json(const struct source *src, struct json_out *j);

/* The slot name a stream uses: "strait_" and the stream name with '-' as '_'. */
void source_slot_name(const char *stream, char *out, size_t outlen);

#endif
