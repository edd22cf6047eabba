/*
 * slot_reader.c — reading a stream's replication slot: the logical
 * replication connection of a stream's source (see slot_reader.h).
 *
 * NOTES
 * One state enum and one function that changes it (source_set_state), logged
 * with the reason. The connection is a walsender in database mode
 * (replication=database), which also runs the few SQL statements of the setup,
 * so the source holds one connection per stream.
 *
 * Batching: every time the socket turns readable we drain what libpq has, and
 * when nothing more is buffered we hand over the whole transactions collected
 * so far. Under load that naturally puts many transactions into one batch
 * (fewer frames, better compression); when idle a commit leaves at once.
 *
 * Feedback: the walsender ends a connection that stays silent for
 * wal_sender_timeout, even while we stop reading for backpressure, so a
 * status update goes out on a timer regardless, at once when the server asks,
 * and soon after the confirmed position moves. When nothing we sent is
 * unconfirmed, the flush position may follow the server's sent position (a
 * keepalive's WAL end), so an idle publication does not pin WAL.
 *
 * Initial sync: with export_snapshot, a slot created here exports its
 * snapshot (CREATE_REPLICATION_SLOT ... SNAPSHOT 'export'). Any command on
 * this connection ends it, so the connection stays idle in READY until the
 * copies have imported it; source_release_snapshot() then ends it with a
 * harmless IDENTIFY_SYSTEM (it would hold back the primary's xmin), or
 * source_start() does.
 */
#include "replicator/slot_reader.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <event2/event.h>
#include <libpq-fe.h>

#include "common/be32.h"
#include "common/json.h"
#include "common/log.h"
#include "common/lsn.h"
#include "replicator/pgoutput.h"
#include "replicator/replcmd.h"

#define SOURCE_FEEDBACK_INTERVAL_MS 10000
#define SOURCE_CONFIRM_DELAY_MS 100
#define SOURCE_ORIGIN_PREFIX "strait_"

enum source_state {
	SOURCE_CONNECTING,
	SOURCE_SETUP,
	SOURCE_READY,
	SOURCE_STARTING,
	SOURCE_STREAMING,
	SOURCE_STOPPED,
};

static const char *const source_state_names[] = {
	[SOURCE_CONNECTING] = "connecting",
	[SOURCE_SETUP] = "setting up",
	[SOURCE_READY] = "ready",
	[SOURCE_STARTING] = "starting",
	[SOURCE_STREAMING] = "streaming",
	[SOURCE_STOPPED] = "stopped",
};

enum source_setup_step {
	SETUP_FIND_PUBLICATION,
	SETUP_CREATE_PUBLICATION,
	SETUP_FIND_SLOT,
	SETUP_CREATE_SLOT,
	SETUP_DONE,
};

/* What each setup step does, for messages. */
static const char *const source_setup_step_names[] = {
	[SETUP_FIND_PUBLICATION] = "looking up the publication",
	[SETUP_CREATE_PUBLICATION] = "creating the publication",
	[SETUP_FIND_SLOT] = "looking up the replication slot",
	[SETUP_CREATE_SLOT] = "creating the replication slot",
	[SETUP_DONE] = "done",
};

struct source_buf {
	uint8_t *data;
	size_t len;
	size_t cap;
};

/* A streamed transaction open on this connection. */
struct source_stream {
	uint32_t xid;
	bool skipping;                   /* one strait applied: its changes are not passed on */
	bool placed;                     /* batch_no says which batch holds its first block */
	size_t start_off;                /* its first Stream Start in the batch buffer, until placed */
	uint64_t batch_no;
	bool closing;                    /* its Stream Commit or Abort is at close_off in the buffer */
	size_t close_off;
};

struct source {
	struct event_base *base;
	struct source_callbacks cb;
	void *arg;
	char *stream;
	char *conninfo;
	char *publication;
	char **tables;
	size_t n_tables;
	size_t batch_max;
	bool export_snapshot;
	char slot[64];
	char snapshot[128];              /* exported at slot creation; "" when none or spent */
	uint64_t snapshot_lsn;
	bool releasing;                  /* IDENTIFY_SYSTEM in flight to end the snapshot */
	bool start_pending;              /* source_start() came meanwhile */
	uint64_t pending_start_lsn;

	enum source_state state;
	enum source_setup_step step;
	PGconn *conn;
	PGresult *partial;               /* the command's result so far: its end may come in a later read */
	struct event *ev_read;
	struct event *ev_write;
	struct event *ev_timer;
	bool reading_paused;
	bool connect_polling_write;

	struct pgoutput_decoder decoder;
	struct source_buf batch;
	size_t batch_committed_len;      /* bytes of batch that end at a commit */
	size_t batch_head;               /* bytes at its start handed over already, in pieces */
	size_t batch_scan;               /* a message starts here (at or after batch_head) */
	uint32_t piece_lead;             /* bytes at batch_head that end a message cut by a piece */
	struct event *ev_piece;          /* hands over the next piece of a large batch */
	bool piece_due;                  /* ev_piece is on its way: read nothing new before it */
	struct source_batch_info pending; /* describes batch[0..batch_committed_len) */
	struct source_batch_info open;    /* the messages after it */
	bool in_txn;
	bool skipping_txn;               /* a transaction strait applied itself */
	bool in_block;                   /* between Stream Start and Stream Stop */
	bool block_skipping;             /* the block's transaction is one strait applied */
	uint32_t block_xid;
	struct source_stream *streams;   /* streamed transactions open on this connection */
	size_t nstreams, capstreams;
	uint64_t batch_counter;          /* batches handed over */
	uint8_t *held_begin;             /* Begin held until we know the origin */
	size_t held_begin_len;
	uint64_t held_begin_lsn;
	uint64_t open_commit_lsn;        /* the open transaction's commit LSN (its Begin's final_lsn) */

	uint64_t received_lsn;           /* WAL end of the last message received */
	uint64_t sent_lsn;               /* end of the last commit handed over */
	uint64_t confirmed_lsn;          /* what the owner says is safe */
	uint64_t flushed_reported;       /* flush position last told to the server */
	uint64_t server_sent_lsn;        /* a keepalive's WAL end */
	int64_t last_feedback_ms;
	bool feedback_soon;

	uint64_t stat_messages;
	uint64_t stat_transactions;
	uint64_t stat_skipped;
	uint64_t stat_bytes;
	char last_error[256];
};

static int64_t source_now_ms(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static int64_t source_now_us(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
}

void source_slot_name(const char *stream, char *out, size_t outlen)
{
	size_t n = (size_t)snprintf(out, outlen, SOURCE_ORIGIN_PREFIX "%s", stream);

	for (size_t i = 0; i < n && i < outlen; i++) {
		if (out[i] == '-')
			out[i] = '_';
	}
}

static void source_set_state(struct source *src, enum source_state next, const char *why)
{
	if (src->state == next)
		return;
	log_info("stream \"%s\": source %s -> %s: %s", src->stream,
		 source_state_names[src->state], source_state_names[next], why);
	src->state = next;
}

static void source_close_conn(struct source *src)
{
	if (src->ev_read) {
		event_free(src->ev_read);
		src->ev_read = NULL;
	}
	if (src->ev_write) {
		event_free(src->ev_write);
		src->ev_write = NULL;
	}
	PQclear(src->partial);
	src->partial = NULL;
	if (src->conn) {
		PQfinish(src->conn);
		src->conn = NULL;
	}
	src->snapshot[0] = '\0';
}

static void source_reset_batch(struct source *src)
{
	src->batch.len = 0;
	src->batch_committed_len = 0;
	src->batch_head = src->batch_scan = 0;
	src->piece_lead = 0;
	src->piece_due = false;
	if (src->ev_piece)
		event_del(src->ev_piece);
	memset(&src->pending, 0, sizeof(src->pending));
	memset(&src->open, 0, sizeof(src->open));
	src->in_txn = false;
	src->skipping_txn = false;
	src->in_block = false;
	src->block_skipping = false;
	src->nstreams = 0;           /* a new connection sends them again from their start */
	free(src->held_begin);
	src->held_begin = NULL;
	src->held_begin_len = 0;
}

/* Logs the failure, drops the connection and tells the owner. */
static void source_fail(struct source *src, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void source_fail(struct source *src, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(src->last_error, sizeof(src->last_error), fmt, ap);
	va_end(ap);
	/* libpq messages end with a newline */
	src->last_error[strcspn(src->last_error, "\n")] = '\0';
	log_error("stream \"%s\": %s", src->stream, src->last_error);
	source_close_conn(src);
	source_reset_batch(src);
	source_set_state(src, SOURCE_STOPPED, "connection closed");
	if (src->cb.stopped)
		src->cb.stopped(src->arg, src->last_error);
}

/* ---- sending feedback ---- */

static void source_write_cb(evutil_socket_t fd, short what, void *arg);

static void source_flush_output(struct source *src)
{
	int r = PQflush(src->conn);

	if (r < 0) {
		source_fail(src, "could not send to source database: %s", PQerrorMessage(src->conn));
		return;
	}
	if (r == 1 && !event_pending(src->ev_write, EV_WRITE, NULL))
		event_add(src->ev_write, NULL);
}

static void source_write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct source *src = arg;

	(void)fd;
	(void)what;
	if (src->conn)
		source_flush_output(src);
}

/* The flush position we may report: confirmed data, or the server's position when idle. */
static uint64_t source_flush_position(const struct source *src)
{
	uint64_t flush = src->confirmed_lsn;

	/* Everything handed over is confirmed and no transaction is open here. */
	if (src->confirmed_lsn >= src->sent_lsn && !src->in_txn && !src->in_block && src->batch.len == 0 &&
	    src->server_sent_lsn > flush)
		flush = src->server_sent_lsn;
	return flush;
}

static void source_send_feedback(struct source *src, bool reply_requested)
{
	uint8_t msg[PGOUTPUT_STATUS_UPDATE_SIZE];
	uint64_t flush;

	if (src->state != SOURCE_STREAMING)
		return;
	flush = source_flush_position(src);
	pgoutput_encode_status_update(msg, src->received_lsn > flush ? src->received_lsn : flush,
				      flush, flush, pgoutput_time_from_unix_us(source_now_us()),
				      reply_requested);
	if (PQputCopyData(src->conn, (const char *)msg, sizeof(msg)) != 1) {
		source_fail(src, "could not send status update: %s", PQerrorMessage(src->conn));
		return;
	}
	src->flushed_reported = flush;
	src->last_feedback_ms = source_now_ms();
	src->feedback_soon = false;
	source_flush_output(src);
}

static void source_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct source *src = arg;
	int64_t now = source_now_ms();

	(void)fd;
	(void)what;
	if (src->state != SOURCE_STREAMING)
		return;
	if (now - src->last_feedback_ms >= SOURCE_FEEDBACK_INTERVAL_MS ||
	    (src->feedback_soon && now - src->last_feedback_ms >= SOURCE_CONFIRM_DELAY_MS))
		source_send_feedback(src, false);
}

void source_confirm(struct source *src, uint64_t lsn)
{
	if (lsn <= src->confirmed_lsn)
		return;
	src->confirmed_lsn = lsn;
	src->feedback_soon = true;
}

/* ---- batching ---- */

static bool source_buf_append(struct source_buf *b, const void *data, size_t len)
{
	if (b->cap - b->len < len) {
		size_t cap = b->cap ? b->cap : 64 * 1024;
		uint8_t *grown;

		while (cap - b->len < len)
			cap *= 2;
		grown = realloc(b->data, cap);
		if (!grown)
			return false;
		b->data = grown;
		b->cap = cap;
	}
	memcpy(b->data + b->len, data, len);
	b->len += len;
	return true;
}

static bool source_append_message(struct source *src, const uint8_t *msg, size_t len, uint64_t lsn)
{
	uint8_t hdr[4] = { (uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8), (uint8_t)len };

	if (!source_buf_append(&src->batch, hdr, 4) || !source_buf_append(&src->batch, msg, len))
		return false;
	if (src->open.messages == 0)
		src->open.first_lsn = lsn;
	src->open.messages++;
	src->stat_messages++;
	return true;
}

/* ---- streamed transactions ---- */

static struct source_stream *source_stream_find(struct source *src, uint32_t xid)
{
	for (size_t i = 0; i < src->nstreams; i++)
		if (src->streams[i].xid == xid)
			return &src->streams[i];
	return NULL;
}

/* A Stream Start: the transaction's entry (a first block makes it anew); NULL when out of memory. */
static struct source_stream *source_stream_start(struct source *src, uint32_t xid, bool first)
{
	struct source_stream *t = source_stream_find(src, xid);

	if (!t) {
		if (src->nstreams == src->capstreams) {
			size_t cap = src->capstreams ? 2 * src->capstreams : 8;
			struct source_stream *v = realloc(src->streams, cap * sizeof(*v));

			if (!v)
				return NULL;
			src->streams = v;
			src->capstreams = cap;
		}
		t = &src->streams[src->nstreams++];
		first = true;  /* not seen on this connection: anchored here whatever the flag */
	} else if (!first) {
		return t;
	}
	*t = (struct source_stream){ .xid = xid, .start_off = src->batch.len };
	return t;
}

/* Its Stream Commit or Abort is the next message in the buffer. */
static void source_stream_close(struct source *src, uint32_t xid)
{
	struct source_stream *t = source_stream_find(src, xid);

	if (t && !t->closing) {
		t->closing = true;
		t->close_off = src->batch.len;
	}
}

/*
 * The batch [batch_head, cut) is about to go: the first blocks in it are
 * placed in it, and open_since names the oldest transaction still open
 * after it.
 */
static void source_streams_place(struct source *src, size_t cut, struct source_batch_info *info)
{
	info->batch_no = ++src->batch_counter;
	info->starts_stream = false;
	info->open_since = 0;
	for (size_t i = 0; i < src->nstreams; i++) {
		struct source_stream *t = &src->streams[i];

		if (!t->placed && t->start_off < cut) {
			t->placed = true;
			t->batch_no = info->batch_no;
			info->starts_stream = true;
		}
		if (t->placed && !(t->closing && t->close_off < cut) &&
		    (info->open_since == 0 || t->batch_no < info->open_since))
			info->open_since = t->batch_no;
	}
}

/* Forgets the transactions that ended in the batch that went, up to cut. */
static void source_streams_closed(struct source *src, size_t cut)
{
	size_t kept = 0;

	for (size_t i = 0; i < src->nstreams; i++)
		if (!(src->streams[i].closing && src->streams[i].close_off < cut))
			src->streams[kept++] = src->streams[i];
	src->nstreams = kept;
}

/* The buffer loses its first n bytes. */
static void source_streams_shift(struct source *src, size_t n)
{
	for (size_t i = 0; i < src->nstreams; i++) {
		if (!src->streams[i].placed)
			src->streams[i].start_off -= n;
		if (src->streams[i].closing)
			src->streams[i].close_off -= n;
	}
}

/* Describes the piece [batch_head, cut) of a larger batch: it ends no transaction. */
static void source_piece_info(struct source *src, size_t cut, struct source_batch_info *info)
{
	info->commit_end_lsn = 0;
	info->commit_time = 0;
	info->transactions = 0;
	info->messages = 0;          /* counted with the last piece */
	while (src->batch_scan < cut)
		src->batch_scan += 4 + (size_t)be32_load(src->batch.data + src->batch_scan);
	info->continues = src->batch_scan > cut;
}

/*
 * Hands over the complete transactions collected so far (or, when force is
 * set, everything — for a transaction too big for one batch). A batch
 * larger than SOURCE_PIECE_MAX (a large value) goes in pieces, one per call,
 * so that the owner's work per loop pass (spooling, fsync) stays small:
 * *piece is then set and the rest is due. Only the last piece carries the
 * batch's commit. Returns false when the owner asked to stop reading.
 */
static bool source_emit(struct source *src, bool force, bool *piece)
{
	size_t end = force ? src->batch.len : src->batch_committed_len, cut;
	struct source_batch_info info = src->pending;
	bool more;

	*piece = false;
	if (end <= src->batch_head)
		return true;
	if (force) {
		/* the open transaction's messages go too; its commit comes later */
		if (info.messages == 0)
			info.first_lsn = src->open.first_lsn;
		info.messages += src->open.messages;
	}
	cut = end - src->batch_head > SOURCE_PIECE_MAX ? src->batch_head + SOURCE_PIECE_MAX : end;
	if (src->batch_head)
		info.first_lsn = 0;  /* a continuation */
	info.lead = src->piece_lead < cut - src->batch_head ? src->piece_lead :
		    (uint32_t)(cut - src->batch_head);
	if (cut < end)
		source_piece_info(src, cut, &info);
	source_streams_place(src, cut, &info);
	more = src->cb.batch(src->arg, src->batch.data + src->batch_head, cut - src->batch_head, &info);
	source_streams_closed(src, cut);
	src->stat_bytes += cut - src->batch_head;
	if (cut < end) {
		src->piece_lead = info.continues ? (uint32_t)(src->batch_scan - cut) : 0;
		src->batch_head = cut;
		*piece = true;
		return more;
	}
	if (force)
		memset(&src->open, 0, sizeof(src->open));
	if (info.commit_end_lsn > src->sent_lsn)
		src->sent_lsn = info.commit_end_lsn;
	source_streams_shift(src, end);
	memmove(src->batch.data, src->batch.data + end, src->batch.len - end);
	src->batch.len -= end;
	src->batch_head = src->batch_scan = 0;
	src->piece_lead = 0;
	if (src->batch.len == 0 && src->batch.cap > 4 * src->batch_max) {
		/* grown for a large value: not kept */
		free(src->batch.data);
		src->batch = (struct source_buf){ 0 };
	}
	src->batch_committed_len = 0;
	memset(&src->pending, 0, sizeof(src->pending));
	return more;
}

/*
 * Hands over what is due: a full batch (whole transactions first, else the
 * open one's part), and with all the whole transactions collected. False
 * when reading stops here for now: the owner asked (backpressure), or a
 * piece of a large batch went and the next goes in the next loop pass.
 */
static bool source_hand_over(struct source *src, bool all)
{
	for (;;) {
		bool full = src->batch.len - src->batch_head >= src->batch_max, piece;

		if (!full && !(all && src->batch_committed_len > src->batch_head))
			return true;
		if (!source_emit(src, full && src->batch_committed_len == 0, &piece)) {
			src->reading_paused = true;
			return false;
		}
		if (piece) {
			src->piece_due = true;
			event_active(src->ev_piece, EV_TIMEOUT, 1);
			return false;
		}
	}
}

/*
 * A unit ended where a batch may be cut: a transaction or a Stream Commit
 * (end_lsn set), a streamed block or a Stream Abort (end_lsn 0).
 */
static void source_unit_done(struct source *src, uint64_t end_lsn, int64_t commit_time)
{
	if (end_lsn) {
		src->open.commit_end_lsn = end_lsn;
		src->open.commit_time = pgoutput_time_to_unix_us(commit_time);
		src->open.transactions = 1;
		src->stat_transactions++;
	}
	if (src->pending.messages == 0) {
		src->pending = src->open;
	} else {
		if (end_lsn) {
			src->pending.commit_end_lsn = end_lsn;
			src->pending.commit_time = src->open.commit_time;
			src->pending.transactions++;
		}
		src->pending.messages += src->open.messages;
	}
	memset(&src->open, 0, sizeof(src->open));
	src->batch_committed_len = src->batch.len;
}

/* Puts the held Begin into the batch: the transaction is one to pass on. */
static bool source_release_begin(struct source *src)
{
	bool ok;

	if (!src->held_begin)
		return true;
	ok = source_append_message(src, src->held_begin, src->held_begin_len, src->held_begin_lsn);
	free(src->held_begin);
	src->held_begin = NULL;
	return ok;
}

/* A message of a streamed transaction (see slot_reader.h); false on a fatal problem (failed). */
static bool source_stream_message(struct source *src, const uint8_t *data, size_t len, uint64_t lsn,
		const struct pgoutput_msg *msg)
{
	struct source_stream *t;

	switch (msg->type) {
	case PGOUTPUT_STREAM_START:
		t = source_stream_start(src, msg->stream_start.xid, msg->stream_start.first_segment);
		if (!t)
			goto oom;
		src->in_block = true;
		src->block_xid = t->xid;
		src->block_skipping = t->skipping;
		break;
	case PGOUTPUT_STREAM_STOP:
		if (!source_append_message(src, data, len, lsn))
			goto oom;
		src->in_block = false;
		source_unit_done(src, 0, 0);
		return true;
	case PGOUTPUT_STREAM_COMMIT:
		source_stream_close(src, msg->stream_commit.xid);
		if (!source_append_message(src, data, len, lsn))
			goto oom;
		source_unit_done(src, msg->stream_commit.end_lsn, msg->stream_commit.commit_time);
		return true;
	case PGOUTPUT_STREAM_ABORT:
		if (msg->stream_abort.subxid == msg->stream_abort.xid)
			source_stream_close(src, msg->stream_abort.xid);
		if (!source_append_message(src, data, len, lsn))
			goto oom;
		source_unit_done(src, 0, 0);
		return true;
	case PGOUTPUT_ORIGIN:
		/* sent in a transaction's first block: one strait applied is passed on empty */
		if (strncmp(msg->origin.name, SOURCE_ORIGIN_PREFIX, strlen(SOURCE_ORIGIN_PREFIX)) == 0) {
			t = source_stream_find(src, src->block_xid);
			if (t)
				t->skipping = true;
			src->block_skipping = true;
			src->stat_skipped++;
		}
		break;
	case PGOUTPUT_RELATION:
	case PGOUTPUT_TYPE:
		break;
	default:
		if (src->block_skipping)
			return true;
		break;
	}
	if (!source_append_message(src, data, len, lsn))
		goto oom;
	return true;
oom:
	source_fail(src, "out of memory while batching");
	return false;
}

/* One pgoutput message from XLogData. Returns false on a fatal problem (already failed). */
static bool source_handle_message(struct source *src, const uint8_t *data, size_t len, uint64_t lsn)
{
	struct pgoutput_msg msg;
	enum pgoutput_status st;

	if (len == 0) {
		source_fail(src, "empty pgoutput message at " LSN_FMT, LSN_ARGS(lsn));
		return false;
	}
	/*
	 * Only transaction boundaries and origins matter here; rows pass
	 * through untouched (the sink decodes and checks them).
	 */
	if (data[0] == PGOUTPUT_BEGIN || data[0] == PGOUTPUT_COMMIT || data[0] == PGOUTPUT_ORIGIN ||
	    data[0] == PGOUTPUT_STREAM_START || data[0] == PGOUTPUT_STREAM_STOP ||
	    data[0] == PGOUTPUT_STREAM_COMMIT || data[0] == PGOUTPUT_STREAM_ABORT) {
		st = pgoutput_decode(&src->decoder, data, len, &msg, NULL, 0);
		if (st != PGOUTPUT_OK) {
			source_fail(src, "malformed pgoutput message at " LSN_FMT ": %s",
				    LSN_ARGS(lsn), pgoutput_status_str(st));
			return false;
		}
	} else {
		msg.type = (enum pgoutput_msg_type)data[0];
	}

	if (src->in_block || msg.type == PGOUTPUT_STREAM_START || msg.type == PGOUTPUT_STREAM_COMMIT ||
	    msg.type == PGOUTPUT_STREAM_ABORT)
		return source_stream_message(src, data, len, lsn, &msg);
	switch (msg.type) {
	case PGOUTPUT_BEGIN:
		src->in_txn = true;
		src->skipping_txn = false;
		free(src->held_begin);
		src->held_begin = malloc(len);
		if (!src->held_begin)
			goto oom;
		memcpy(src->held_begin, data, len);
		src->held_begin_len = len;
		src->held_begin_lsn = lsn;
		src->open_commit_lsn = msg.begin.final_lsn;
		return true;
	case PGOUTPUT_ORIGIN:
		if (strncmp(msg.origin.name, SOURCE_ORIGIN_PREFIX, strlen(SOURCE_ORIGIN_PREFIX)) == 0) {
			src->skipping_txn = true;
			src->stat_skipped++;
		}
		if (!source_release_begin(src))
			goto oom;
		return true;
	case PGOUTPUT_RELATION:
	case PGOUTPUT_TYPE:
		break;
	case PGOUTPUT_COMMIT:
		if (!source_release_begin(src) || !source_append_message(src, data, len, lsn))
			goto oom;
		src->in_txn = false;
		src->skipping_txn = false;
		source_unit_done(src, msg.commit.end_lsn, msg.commit.commit_time);
		return true;
	default:
		if (src->skipping_txn)
			return true;
		break;
	}
	if (!source_release_begin(src) || !source_append_message(src, data, len, lsn))
		goto oom;
	return true;
oom:
	source_fail(src, "out of memory while batching");
	return false;
}

/* ---- reading the stream ---- */

static void source_read_stream(struct source *src)
{
	for (;;) {
		struct pgoutput_copy copy;
		char *buf = NULL;
		int n;

		/* nothing new while a large batch goes in pieces (source_piece_cb goes on) */
		if (src->reading_paused || src->piece_due)
			return;
		n = PQgetCopyData(src->conn, &buf, 1);
		if (n == 0)
			break;
		if (n == -1) {
			PGresult *res = PQgetResult(src->conn);
			char msg[256];
			snprintf(msg, sizeof(msg), "source database ended the stream: %s",
				 res ? PQresultErrorMessage(res) : "no reason given");
			PQclear(res);
			source_fail(src, "%s", msg);
			return;
		}
		if (n < 0) {
			source_fail(src, "could not read from source database: %s", PQerrorMessage(src->conn));
			return;
		}
		if (pgoutput_decode_copy((const uint8_t *)buf, (size_t)n, &copy) != PGOUTPUT_OK) {
			PQfreemem(buf);
			source_fail(src, "malformed replication message from source database");
			return;
		}
		if (copy.wal_end > src->received_lsn)
			src->received_lsn = copy.wal_end;
		if (src->cb.wal_position)
			src->cb.wal_position(src->arg, copy.wal_end,
					     pgoutput_time_to_unix_us(copy.server_time));
		if (copy.type == PGOUTPUT_COPY_KEEPALIVE) {
			if (copy.wal_end > src->server_sent_lsn)
				src->server_sent_lsn = copy.wal_end;
			PQfreemem(buf);
			if (copy.reply_requested) {
				source_send_feedback(src, false);
				if (src->state != SOURCE_STREAMING)
					return;
			}
			continue;
		}
		if (!source_handle_message(src, copy.data, copy.data_len, copy.wal_start)) {
			PQfreemem(buf);
			return;
		}
		PQfreemem(buf);
		/* full: whole transactions if there are any, else the big one in parts */
		if (!source_hand_over(src, false))
			return;
	}
	(void)source_hand_over(src, true);
}

/* The next piece of a large batch, then reading goes on. */
static void source_piece_cb(evutil_socket_t fd, short what, void *arg)
{
	struct source *src = arg;

	(void)fd;
	(void)what;
	src->piece_due = false;
	if (src->state == SOURCE_STREAMING && !src->reading_paused && source_hand_over(src, false))
		source_read_stream(src);
}

/* ---- setup ---- */

static void source_send_setup_step(struct source *src);

static char *source_publication_sql(struct source *src)
{
	char *pub = PQescapeIdentifier(src->conn, src->publication, strlen(src->publication));
	char *sql = NULL;
	size_t cap, len;

	if (!pub)
		return NULL;
	cap = strlen(pub) + 64;
	for (size_t i = 0; i < src->n_tables; i++)
		cap += 2 * strlen(src->tables[i]) + 8;
	sql = malloc(cap);
	if (!sql)
		goto out;
	if (src->n_tables == 0) {
		snprintf(sql, cap, "CREATE PUBLICATION %s FOR ALL TABLES", pub);
		goto out;
	}
	len = (size_t)snprintf(sql, cap, "CREATE PUBLICATION %s FOR TABLE ", pub);
	for (size_t i = 0; i < src->n_tables; i++) {
		/* "schema.table" or "table": quote each part */
		const char *name = src->tables[i], *dot = strchr(name, '.');
		char *part;

		if (i > 0)
			len += (size_t)snprintf(sql + len, cap - len, ", ");
		if (dot) {
			part = PQescapeIdentifier(src->conn, name, (size_t)(dot - name));
			len += (size_t)snprintf(sql + len, cap - len, "%s.", part ? part : "");
			PQfreemem(part);
			name = dot + 1;
		}
		part = PQescapeIdentifier(src->conn, name, strlen(name));
		len += (size_t)snprintf(sql + len, cap - len, "%s", part ? part : "");
		PQfreemem(part);
	}
out:
	PQfreemem(pub);
	return sql;
}

static void source_send_setup_step(struct source *src)
{
	char *sql = NULL, *lit;
	int ok = 0;

	switch (src->step) {
	case SETUP_FIND_PUBLICATION:
		lit = PQescapeLiteral(src->conn, src->publication, strlen(src->publication));
		if (lit && asprintf(&sql, "SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = %s", lit) < 0)
			sql = NULL;
		PQfreemem(lit);
		break;
	case SETUP_CREATE_PUBLICATION:
		sql = source_publication_sql(src);
		break;
	case SETUP_FIND_SLOT:
		if (asprintf(&sql, "SELECT confirmed_flush_lsn::text, plugin, database = current_database() "
			     "FROM pg_catalog.pg_replication_slots WHERE slot_name = '%s'", src->slot) < 0)
			sql = NULL;
		break;
	case SETUP_CREATE_SLOT:
		/* an exported snapshot lives until this connection runs its next command */
		sql = replcmd_create_slot_sql(PQserverVersion(src->conn), src->slot, false,
					      src->export_snapshot);
		break;
	case SETUP_DONE:
		return;
	}
	if (sql)
		ok = PQsendQuery(src->conn, sql);
	free(sql);
	if (!ok)
		source_fail(src, "could not send setup query: %s", PQerrorMessage(src->conn));
}

/* One setup query finished with res; decides the next step. */
static void source_setup_result(struct source *src, PGresult *res)
{
	ExecStatusType st = PQresultStatus(res);

	if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
		const char *hint = "";
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

		if (src->step == SETUP_CREATE_SLOT)
			hint = " (is wal_level logical and max_replication_slots large enough?)";
		/* only a superuser may publish all tables: say what a lesser role can do */
		else if (src->step == SETUP_CREATE_PUBLICATION && src->n_tables == 0 && state &&
			 strcmp(state, "42501") == 0)
			hint = " (a publication FOR ALL TABLES needs superuser: list the tables in "
			       "streams[].tables, or have a superuser create the publication and "
			       "ALTER PUBLICATION ... OWNER TO this role)";
		const char *msg = PQresultErrorMessage(res);

		source_fail(src, "setup on source database failed while %s: %.*s%s",
			    source_setup_step_names[src->step], (int)strcspn(msg, "\n"), msg, hint);
		return;
	}
	switch (src->step) {
	case SETUP_FIND_PUBLICATION:
		src->step = PQntuples(res) > 0 ? SETUP_FIND_SLOT : SETUP_CREATE_PUBLICATION;
		break;
	case SETUP_CREATE_PUBLICATION:
		log_notice("stream \"%s\": created publication \"%s\"", src->stream, src->publication);
		src->step = SETUP_FIND_SLOT;
		break;
	case SETUP_FIND_SLOT:
		if (PQntuples(res) == 0) {
			src->step = SETUP_CREATE_SLOT;
			break;
		}
		if (strcmp(PQgetvalue(res, 0, 1), "pgoutput") != 0 ||
		    strcmp(PQgetvalue(res, 0, 2), "t") != 0) {
			source_fail(src, "replication slot \"%s\" exists but is not a pgoutput slot of this "
				    "database; drop it or rename the stream", src->slot);
			return;
		}
		if (!lsn_parse(PQgetvalue(res, 0, 0), &src->confirmed_lsn))
			src->confirmed_lsn = 0;
		src->step = SETUP_DONE;
		break;
	case SETUP_CREATE_SLOT:
		if (PQntuples(res) != 1 || !lsn_parse(PQgetvalue(res, 0, 1), &src->confirmed_lsn)) {
			source_fail(src, "unexpected answer to CREATE_REPLICATION_SLOT");
			return;
		}
		log_notice("stream \"%s\": created replication slot \"%s\" at " LSN_FMT, src->stream, src->slot,
			   LSN_ARGS(src->confirmed_lsn));
		if (src->export_snapshot && PQnfields(res) >= 3 && !PQgetisnull(res, 0, 2)) {
			snprintf(src->snapshot, sizeof(src->snapshot), "%s", PQgetvalue(res, 0, 2));
			src->snapshot_lsn = src->confirmed_lsn;
			log_info("stream \"%s\": slot exported snapshot \"%s\"", src->stream, src->snapshot);
		}
		src->step = SETUP_DONE;
		break;
	case SETUP_DONE:
		break;
	}
}

/* Drains query results; returns true once the current query is complete. */
static bool source_collect_results(struct source *src, PGresult **last)
{
	PGresult *res;

	while (!PQisBusy(src->conn)) {
		res = PQgetResult(src->conn);
		if (!res)
			return true;
		if (PQresultStatus(res) == PGRES_COPY_BOTH) {
			PQclear(*last);
			*last = res;
			return true;      /* START_REPLICATION: COPY mode from here */
		}
		PQclear(*last);
		*last = res;
	}
	return false;
}

static void source_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct source *src = arg;
	PGresult *res = NULL;

	(void)fd;
	(void)what;
	if (!PQconsumeInput(src->conn)) {
		source_fail(src, "lost connection to source database: %s", PQerrorMessage(src->conn));
		return;
	}
	switch (src->state) {
	case SOURCE_SETUP:
		if (!source_collect_results(src, &src->partial))
			break;
		res = src->partial;
		src->partial = NULL;
		if (!res) {
			source_fail(src, "setup query returned nothing");
			break;
		}
		source_setup_result(src, res);
		if (src->state != SOURCE_SETUP)
			break;
		if (src->step == SETUP_DONE) {
			source_set_state(src, SOURCE_READY, "publication and slot in place");
			if (src->cb.ready)
				src->cb.ready(src->arg, src->confirmed_lsn);
		} else {
			source_send_setup_step(src);
		}
		break;
	case SOURCE_STARTING:
		if (!source_collect_results(src, &src->partial))
			break;
		res = src->partial;
		src->partial = NULL;
		if (!res || PQresultStatus(res) != PGRES_COPY_BOTH) {
			source_fail(src, "could not start replication: %s",
				    res ? PQresultErrorMessage(res) : "no answer");
			break;
		}
		source_set_state(src, SOURCE_STREAMING, "START_REPLICATION accepted");
		source_send_feedback(src, false);
		if (src->state == SOURCE_STREAMING)
			source_read_stream(src);
		break;
	case SOURCE_STREAMING:
		source_read_stream(src);
		break;
	case SOURCE_READY:
		/*
		 * Nothing is expected while idle but the answer that ends an
		 * exported snapshot; a notice or an error may still come.
		 */
		while (!PQisBusy(src->conn)) {
			PGresult *r = PQgetResult(src->conn);

			if (r) {
				PQclear(r);
				continue;
			}
			if (src->releasing) {
				src->releasing = false;
				log_debug("stream \"%s\": exported snapshot released", src->stream);
				if (src->start_pending) {
					src->start_pending = false;
					(void)source_start(src, src->pending_start_lsn);
				}
			}
			break;
		}
		break;
	default:
		break;
	}
	PQclear(res);
}

static void source_connect_cb(evutil_socket_t fd, short what, void *arg);

static bool source_watch_connect(struct source *src, short events)
{
	if (src->ev_read)
		event_free(src->ev_read);
	src->ev_read = event_new(src->base, PQsocket(src->conn), events, source_connect_cb, src);
	return src->ev_read && event_add(src->ev_read, NULL) == 0;
}

static void source_connect_cb(evutil_socket_t fd, short what, void *arg)
{
	struct source *src = arg;

	(void)fd;
	(void)what;
	switch (PQconnectPoll(src->conn)) {
	case PGRES_POLLING_READING:
		if (!source_watch_connect(src, EV_READ))
			source_fail(src, "could not watch connection");
		return;
	case PGRES_POLLING_WRITING:
		if (!source_watch_connect(src, EV_WRITE))
			source_fail(src, "could not watch connection");
		return;
	case PGRES_POLLING_FAILED:
		source_fail(src, "could not connect to source database: %s", PQerrorMessage(src->conn));
		return;
	default:
		break;
	}
	/* Connected: the socket is final now. */
	event_free(src->ev_read);
	src->ev_read = event_new(src->base, PQsocket(src->conn), EV_READ | EV_PERSIST, source_read_cb, src);
	src->ev_write = event_new(src->base, PQsocket(src->conn), EV_WRITE, source_write_cb, src);
	if (!src->ev_read || !src->ev_write || event_add(src->ev_read, NULL) < 0 ||
	    PQsetnonblocking(src->conn, 1) < 0) {
		source_fail(src, "could not watch connection");
		return;
	}
	source_set_state(src, SOURCE_SETUP, "connected");
	src->step = SETUP_FIND_PUBLICATION;
	source_send_setup_step(src);
}

/*
 * Connects with the stream's connection string (keywords or a URI) expanded
 * as dbname, then replication=database: parameters after the expanded one
 * override it, so both forms work and the user's own settings are kept.
 */
static void source_connect(struct source *src)
{
	static const char *const keys[] = { "dbname", "replication", "fallback_application_name", NULL };
	const char *values[] = { src->conninfo, "database", "strait", NULL };

	source_set_state(src, SOURCE_CONNECTING, "connecting to source database");
	src->conn = PQconnectStartParams(keys, values, 1);
	if (!src->conn || PQstatus(src->conn) == CONNECTION_BAD) {
		source_fail(src, "could not connect to source database: %s",
			    src->conn ? PQerrorMessage(src->conn) : "out of memory");
		return;
	}
	if (!source_watch_connect(src, EV_WRITE))
		source_fail(src, "could not watch connection");
}

struct source *source_new(struct event_base *base, const struct source_config *cfg,
		const struct source_callbacks *cb, void *arg)
{
	struct source *src = calloc(1, sizeof(*src));
	struct timeval second = { 0, 50000 };

	if (!src)
		return NULL;
	src->base = base;
	src->cb = *cb;
	src->arg = arg;
	src->stream = strdup(cfg->stream);
	src->conninfo = strdup(cfg->conninfo);
	src->publication = strdup(cfg->publication);
	src->batch_max = cfg->batch_max_bytes ? cfg->batch_max_bytes : 256 * 1024;
	src->export_snapshot = cfg->export_snapshot;
	source_slot_name(cfg->stream, src->slot, sizeof(src->slot));
	if (cfg->n_tables) {
		src->tables = calloc(cfg->n_tables, sizeof(char *));
		if (!src->tables)
			goto fail;
		for (size_t i = 0; i < cfg->n_tables; i++) {
			if (!(src->tables[i] = strdup(cfg->tables[i])))
				goto fail;
			src->n_tables++;
		}
	}
	src->ev_timer = event_new(base, -1, EV_PERSIST, source_timer_cb, src);
	src->ev_piece = event_new(base, -1, 0, source_piece_cb, src);
	if (!src->stream || !src->conninfo || !src->publication || !src->ev_timer || !src->ev_piece ||
	    event_add(src->ev_timer, &second) < 0)
		goto fail;
	if (!pgoutput_decoder_init(&src->decoder, 2))
		goto fail;
	source_connect(src);
	return src;
fail:
	source_free(src);
	return NULL;
}

void source_free(struct source *src)
{
	if (!src)
		return;
	source_close_conn(src);
	if (src->ev_timer)
		event_free(src->ev_timer);
	source_reset_batch(src);
	if (src->ev_piece)
		event_free(src->ev_piece);
	free(src->batch.data);
	free(src->streams);
	for (size_t i = 0; i < src->n_tables; i++)
		free(src->tables[i]);
	free(src->tables);
	free(src->stream);
	free(src->conninfo);
	free(src->publication);
	free(src);
}

bool source_start(struct source *src, uint64_t start_lsn)
{
	char sql[512], *pub;
	int ok;

	if (src->state != SOURCE_READY)
		return false;
	if (src->releasing) {
		/* after the answer to the command that ends the snapshot */
		src->start_pending = true;
		src->pending_start_lsn = start_lsn;
		return true;
	}
	pub = PQescapeLiteral(src->conn, src->publication, strlen(src->publication));
	if (!pub)
		return false;
	/*
	 * publication_names is a list of identifiers inside a string literal:
	 * quote the name as an identifier first, then the whole as a literal.
	 */
	{
		char *ident = PQescapeIdentifier(src->conn, src->publication, strlen(src->publication));
		char *lit = ident ? PQescapeLiteral(src->conn, ident, strlen(ident)) : NULL;
		int version = PQserverVersion(src->conn);

		snprintf(sql, sizeof(sql),
			 "START_REPLICATION SLOT \"%s\" LOGICAL " LSN_FMT " (proto_version '%d', "
			 "publication_names %s%s%s)",
			 src->slot, LSN_ARGS(start_lsn), replcmd_proto_version(version),
			 lit ? lit : "''", replcmd_has_messages(version) ? ", messages 'true'" : "",
			 replcmd_has_streaming(version) ? ", streaming 'on'" : "");
		PQfreemem(ident);
		PQfreemem(lit);
	}
	PQfreemem(pub);
	/*
	 * The sink may ask for more than it has committed (batches it has
	 * queued): that is where to go on, not what is safe to confirm.
	 */
	src->sent_lsn = start_lsn > src->confirmed_lsn ? start_lsn : src->confirmed_lsn;
	src->received_lsn = start_lsn;
	src->reading_paused = false;
	if (!pgoutput_decoder_init(&src->decoder, 2))
		return false;
	source_reset_batch(src);
	src->snapshot[0] = '\0';     /* the next command ends the exported snapshot */
	ok = PQsendQuery(src->conn, sql);
	if (!ok) {
		source_fail(src, "could not start replication: %s", PQerrorMessage(src->conn));
		return false;
	}
	source_set_state(src, SOURCE_STARTING, "sink asked to resume");
	log_info("stream \"%s\": streaming from slot \"%s\" at " LSN_FMT, src->stream, src->slot,
		 LSN_ARGS(start_lsn));
	return true;
}

void source_resume_reading(struct source *src)
{
	if (!src->reading_paused || src->state != SOURCE_STREAMING)
		return;
	src->reading_paused = false;
	if (source_hand_over(src, false))
		source_read_stream(src);
}

void source_release_snapshot(struct source *src)
{
	if (src->state != SOURCE_READY || !src->snapshot[0] || src->releasing)
		return;
	src->snapshot[0] = '\0';
	/* any command ends it; this one changes nothing */
	if (!PQsendQuery(src->conn, "IDENTIFY_SYSTEM")) {
		log_warning("stream \"%s\": could not release the exported snapshot: %s", src->stream,
			    PQerrorMessage(src->conn));
		return;
	}
	src->releasing = true;
	source_flush_output(src);
}

const char *source_exported_snapshot(const struct source *src, uint64_t *lsn)
{
	if (src->state != SOURCE_READY || !src->snapshot[0])
		return NULL;
	*lsn = src->snapshot_lsn;
	return src->snapshot;
}

uint64_t source_reported_flush(const struct source *src)
{
	return src->flushed_reported;
}

bool source_is_ready(const struct source *src)
{
	return src->state == SOURCE_READY || src->state == SOURCE_STARTING ||
	       src->state == SOURCE_STREAMING;
}

void source_status_json(const struct source *src, struct json_out *j)
{
	json_object_begin(j, "source");
	json_string(j, "state", source_state_names[src->state]);
	json_string(j, "slot", src->slot);
	json_bool(j, "reading_paused", src->reading_paused);
	json_lsn(j, "received_lsn", src->received_lsn);
	json_lsn(j, "sent_lsn", src->sent_lsn);
	json_lsn(j, "confirmed_lsn", src->confirmed_lsn);
	json_lsn(j, "reported_flush_lsn", src->flushed_reported);
	json_uint(j, "messages", src->stat_messages);
	json_uint(j, "transactions", src->stat_transactions);
	json_uint(j, "skipped_own_transactions", src->stat_skipped);
	json_uint(j, "bytes", src->stat_bytes);
	json_string(j, "last_error", src->last_error[0] ? src->last_error : NULL);
	json_object_end(j);
}

uint64_t source_handed_over_before(const struct source *src)
{
	/* whole transactions still batched: their commit LSNs are not kept, try later */
	if (src->batch_committed_len > 0)
		return 0;
	/* transactions arrive in commit order: all before the open one are out */
	if (src->in_txn)
		return src->open_commit_lsn;
	return src->received_lsn;
}

void source_request_position(struct source *src)
{
	source_send_feedback(src, true);
}
