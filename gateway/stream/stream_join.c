/*
 * stream_join.c — tables that join a stream after its initial sync (see
 * stream_join.h). One table is copied at a time; others that show up
 * meanwhile are held from their first change and wait their turn.
 */
#include "gateway/stream/stream_join.h"

#include <event2/event.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/json.h"
#include "common/log.h"
#include "common/lsn.h"
#include "gateway/relay/frame.h"
#include "gateway/relay/relay.h"
#include "gateway/relay/relay_proto.h"
#include "gateway/relay/wire.h"
#include "gateway/stream/joinhold.h"
#include "gateway/stream/stream_sync.h"
#include "replicator/joingate.h"
#include "replicator/synccopy.h"
#include "replicator/syncload.h"
#include "replicator/syncplan.h"
#include "replicator/syncstate.h"

/* A failed copy is asked for again after this long. */
#define STREAMJOIN_RETRY_MS 5000u
/* The replay hands the apply more only while it holds less than this. */
#define STREAMJOIN_REPLAY_ROOM (8u * 1024u * 1024u)

enum join_phase {
	JP_RECORDING,            /* its sync_join row is being written */
	JP_WAITING,              /* recorded; its copy not asked for yet (another goes first) */
	JP_ASKED,                /* asked the source for the copy */
	JP_LOADING,
	JP_REPLAYING,            /* loaded: its held changes go to the apply */
	JP_FINISHING,            /* taken in by the gate; recording it as a member */
};

static const char *const join_phase_names[] = {
	[JP_RECORDING] = "recording", [JP_WAITING] = "waiting", [JP_ASKED] = "copy asked for",
	[JP_LOADING] = "loading", [JP_REPLAYING] = "applying held changes",
	[JP_FINISHING] = "recording as a member",
};

struct join_table {
	struct join_table *next;
	char *schema;
	char *table;
	enum join_phase phase;
	struct joinhold *hold;
	uint64_t lsn;            /* its copy's snapshot LSN */
	uint64_t job;
	uint32_t next_chunk;
	uint64_t switch_lsn;     /* the apply's position when the gate took it in */
	bool applied;            /* FINISHING: every held transaction is committed */
	bool ending;             /* FINISHING: its member row is being written */
	uint64_t rows;
	int64_t since;
};

enum join_state { JS_UNREAD, JS_READING, JS_READY };

/* Statement tags. */
enum { TAG_MEMBERS = 1, TAG_BEGIN, TAG_END, TAG_LEAVE, TAG_ADOPT };

/* The source resends an unchanged list this often. */
#define STREAMJOIN_LIST_EVERY_S 60


struct streamjoin {
	struct event_base *base;
	struct relay *relay;
	char *stream;
	char *peer;
	char *conninfo;
	bool sink;
	struct wire_writer out;
	struct event *ev_later;

	/* source */
	char *publication;
	struct synccopy *copy;
	struct synccopy *copy_dead;
	char *copy_schema;
	char *copy_table;
	uint64_t copies;
	char *list_sent;                    /* the list text last sent */
	int64_t list_sent_at;

	/* sink */
	struct streamjoin_env env;
	char *spill_dir;
	enum join_state state;
	struct joingate *gate;
	struct syncload *load;
	struct join_table *tables;          /* oldest first; the head is the one copied */
	struct join_table *recording;       /* the head of a TAG_BEGIN in flight */
	unsigned next_file;
	uint64_t held_bytes;
	uint64_t replayed_bytes;
	uint64_t committed_lsn;
	uint64_t joined;
	bool replay_in_txn;                 /* a held transaction is half handed over */
	struct syncplan_text list_text;     /* the publication's list, being collected */
	uint32_t list_next_chunk;
	struct syncplan adopting;           /* the list an older record takes as its members */
	uint64_t left;
	bool link_up;
	char last_error[256];
};

static void join_adopted(struct streamjoin *j);
static void join_start_over(struct streamjoin *j, struct join_table *t);

static int64_t join_now(void)
{
	return (int64_t)time(NULL);
}

static void join_later(struct streamjoin *j, unsigned ms)
{
	event_add(j->ev_later, &(struct timeval){ ms / 1000, (ms % 1000) * 1000 });
}

/* One SYNC frame flagged JOIN; false when the link is down or it could not be built. */
static bool join_send(struct streamjoin *j, const char *schema, const char *table, uint64_t lsn,
		uint32_t chunk, bool last, const uint8_t *data, size_t len)
{
	struct relay_proto_sync m = {
		.stream = relay_proto_str(j->stream),
		.schema = relay_proto_str(schema),
		.table = relay_proto_str(table),
		.snapshot_lsn = lsn,
		.chunk = chunk,
		.flags = (uint8_t)(RELAY_SYNC_JOIN | (last ? RELAY_SYNC_LAST : 0)),
		.raw_len = (uint32_t)len,
		.data = data,
		.data_len = len,
	};

	wire_writer_reset(&j->out);
	if (!relay_proto_write_sync(&j->out, &m)) {
		log_error("stream \"%s\": joining table: could not encode a SYNC frame", j->stream);
		return false;
	}
	return relay_send(j->relay, j->peer, FRAME_SYNC, 0, j->out.data, j->out.len);
}

/* ================================================================ source */

static bool join_copy_has(void *arg, const char *schema, const char *table)
{
	struct streamjoin *j = arg;

	return strcmp(schema, j->copy_schema) != 0 || strcmp(table, j->copy_table) != 0;
}

static void join_copy_end(struct streamjoin *j)
{
	if (j->copy) {
		j->copy_dead = j->copy;
		j->copy = NULL;
		join_later(j, 0);
	}
}

static void join_copy_planned(void *arg, const struct syncplan *plan, uint64_t lsn)
{
	struct streamjoin *j = arg;
	long i = syncplan_find(plan, j->copy_schema, strlen(j->copy_schema), j->copy_table,
			       strlen(j->copy_table));
	struct syncplan one;
	struct syncplan_text text = { 0 };
	bool ok;

	if (i < 0 || !plan->tables[i].copy) {
		log_warning("stream \"%s\": \"%s\" asks for %s.%s, which the publication does not hold",
			    j->stream, j->peer, j->copy_schema, j->copy_table);
		(void)join_send(j, SYNCPLAN_SCHEMA, SYNCPLAN_TABLE, lsn, STREAMJOIN_REFUSED_CHUNK, true,
				NULL, 0);
		join_copy_end(j);
		return;
	}
	syncplan_init(&one);
	ok = syncplan_add(&one, j->copy_schema, j->copy_table, true);
	for (size_t c = 0; ok && c < plan->tables[i].ncolumns; c++)
		ok = syncplan_add_column(&one, plan->tables[i].columns[c]);
	ok = ok && syncplan_encode(&one, &text) && text.len <= SYNCCOPY_CHUNK_BYTES;
	syncplan_free(&one);
	if (!ok || !join_send(j, SYNCPLAN_SCHEMA, SYNCPLAN_TABLE, lsn, 0, true,
			      (const uint8_t *)text.data, text.len))
		join_copy_end(j);
	syncplan_text_free(&text);
}

static bool join_copy_chunk(void *arg, const struct syncplan_table *t, uint64_t lsn,
		uint32_t range, uint32_t chunk, const uint8_t *data, size_t len, bool last)
{
	struct streamjoin *j = arg;

	(void)range;         /* a joining table is copied whole (split_above 0) */
	if (!join_send(j, t->schema, t->table, lsn, chunk, last, data, len)) {
		join_copy_end(j);
		return false;
	}
	if (relay_output_pending(j->relay, j->peer) < STREAMSYNC_OUTPUT_MAX)
		return true;
	relay_wait_drain(j->relay, j->peer);
	return false;
}

static void join_copy_finished(void *arg)
{
	struct streamjoin *j = arg;

	log_info("stream \"%s\": %s.%s sent to \"%s\" to join the stream", j->stream, j->copy_schema,
		 j->copy_table, j->peer);
	join_copy_end(j);
}

static void join_copy_failed(void *arg, const char *reason)
{
	struct streamjoin *j = arg;

	log_warning("stream \"%s\": copy of joining table %s.%s failed: %s", j->stream, j->copy_schema,
		    j->copy_table, reason);
	(void)join_send(j, SYNCPLAN_SCHEMA, SYNCPLAN_TABLE, 0, STREAMJOIN_FAILED_CHUNK, true, NULL, 0);
	join_copy_end(j);
}

static void join_source_request(struct streamjoin *j, const struct relay_proto_sync *m)
{
	static const struct synccopy_callbacks cb = {
		.has = join_copy_has,
		.planned = join_copy_planned,
		.chunk = join_copy_chunk,
		.finished = join_copy_finished,
		.failed = join_copy_failed,
	};
	struct synccopy_config cfg = {
		.stream = j->stream,
		.conninfo = j->conninfo,
		.publication = j->publication,
		.workers = 1,
	};

	if (j->copy) {
		synccopy_free(j->copy);      /* the sink asks again: it lost the one under way */
		j->copy = NULL;
	}
	free(j->copy_schema);
	free(j->copy_table);
	j->copy_schema = strndup(m->schema.ptr, m->schema.len);
	j->copy_table = strndup(m->table.ptr, m->table.len);
	if (j->copy_schema && j->copy_table)
		j->copy = synccopy_new(j->base, &cfg, &cb, j);
	if (!j->copy) {
		log_error("stream \"%s\": out of memory starting the copy of a joining table", j->stream);
		return;
	}
	j->copies++;
	log_info("stream \"%s\": \"%s\" asks for a copy of %s.%s (a table that joins the stream)",
		 j->stream, j->peer, j->copy_schema, j->copy_table);
}

static void join_source_frame(struct streamjoin *j, const struct relay_proto_sync *m)
{
	if (m->data_len != 0 || m->raw_len != 0) {
		log_error("stream \"%s\": refused SYNC frame from \"%s\": a sink sends no data",
			  j->stream, j->peer);
		return;
	}
	if (m->flags & RELAY_SYNC_LAST) {
		join_source_request(j, m);
		return;
	}
	if (j->copy)
		synccopy_ack(j->copy, m->schema.ptr, m->schema.len, m->table.ptr, m->table.len,
			     m->snapshot_lsn, 0, m->chunk);
}

void streamjoin_writable(struct streamjoin *j)
{
	if (j->sink || !j->copy)
		return;
	if (relay_output_pending(j->relay, j->peer) >= STREAMSYNC_OUTPUT_MAX) {
		relay_wait_drain(j->relay, j->peer);
		return;
	}
	synccopy_resume_reading(j->copy);
}

static bool join_list_changed(struct streamjoin *j, const struct syncplan_text *text)
{
	return !j->list_sent || strlen(j->list_sent) != text->len ||
	       memcmp(j->list_sent, text->data, text->len) != 0 ||
	       join_now() - j->list_sent_at >= STREAMJOIN_LIST_EVERY_S;
}

void streamjoin_source_list(struct streamjoin *j, const char *const *schemas,
		const char *const *tables, size_t n, uint64_t lsn)
{
	struct syncplan list;
	struct syncplan_text text = { 0 };
	bool ok = true;
	size_t off = 0;
	uint32_t chunk = 0;

	if (j->sink || !relay_is_up(j->relay, j->peer))
		return;
	syncplan_init(&list);
	for (size_t i = 0; ok && i < n; i++)
		ok = syncplan_add(&list, schemas[i], tables[i], false);
	ok = ok && syncplan_encode(&list, &text) && syncplan_text_append(&text, "", 1);
	syncplan_free(&list);
	if (!ok || !join_list_changed(j, &text)) {
		syncplan_text_free(&text);
		return;
	}
	text.len--;          /* the NUL kept the copy below a string */
	do {
		size_t k = text.len - off > SYNCCOPY_CHUNK_BYTES ? SYNCCOPY_CHUNK_BYTES : text.len - off;

		if (!join_send(j, SYNCPLAN_SCHEMA, STREAMJOIN_LIST_TABLE, lsn, chunk++, off + k == text.len,
			       (const uint8_t *)text.data + off, k)) {
			syncplan_text_free(&text);
			return;
		}
		off += k;
	} while (off < text.len);
	free(j->list_sent);
	j->list_sent = text.data;        /* NUL-terminated: see above */
	j->list_sent_at = join_now();
}

/* ================================================================== sink */

static struct join_table *join_find(const struct streamjoin *j, const char *schema,
		const char *table)
{
	for (struct join_table *t = j->tables; t; t = t->next)
		if (strcmp(t->schema, schema) == 0 && strcmp(t->table, table) == 0)
			return t;
	return NULL;
}

static void join_table_free(struct join_table *t)
{
	joinhold_free(t->hold);
	free(t->schema);
	free(t->table);
	free(t);
}

static void join_unlink(struct streamjoin *j, struct join_table *t)
{
	for (struct join_table **p = &j->tables; *p; p = &(*p)->next) {
		if (*p == t) {
			*p = t->next;
			break;
		}
	}
	join_table_free(t);
}

static bool join_hold_cb(void *arg, const char *schema, const char *table, const uint8_t *msg,
		size_t len)
{
	struct streamjoin *j = arg;
	char err[256];

	for (struct join_table *t = j->tables; t; t = t->next) {
		/* Begin and Commit go to every hold that has an open transaction or takes one */
		if (schema && (strcmp(t->schema, schema) != 0 || strcmp(t->table, table) != 0))
			continue;
		if (!schema && msg[0] == 'C' && !t->hold)
			continue;
		if (!t->hold || !joinhold_append(t->hold, msg, len, err, sizeof(err))) {
			log_error("stream \"%s\": holding a change of %s.%s: %s", j->stream, t->schema,
				  t->table, t->hold ? err : "no hold");
			return false;
		}
	}
	return true;
}

/* A new joining table: held from now on; its record row is written first. */
static struct join_table *join_add(struct streamjoin *j, const char *schema, const char *table,
		enum join_phase phase)
{
	struct join_table *t = calloc(1, sizeof(*t)), **tail = &j->tables;
	char err[256] = "out of memory";

	if (t) {
		t->schema = strdup(schema);
		t->table = strdup(table);
		t->phase = phase;
		t->since = join_now();
		t->hold = joinhold_new(j->spill_dir, j->next_file++, err, sizeof(err));
	}
	if (!t || !t->schema || !t->table || !t->hold ||
	    !joingate_set(j->gate, schema, table, JOINGATE_JOINING)) {
		log_error("stream \"%s\": cannot hold the changes of %s.%s: %s", j->stream, schema,
			  table, err);
		if (t)
			join_table_free(t);
		return NULL;
	}
	while (*tail)
		tail = &(*tail)->next;
	*tail = t;
	return t;
}

static bool join_statement(struct streamjoin *j, char *sql, uint64_t tag)
{
	bool ok = sql && syncload_statement(j->load, sql, tag);

	free(sql);
	if (!ok)
		log_error("stream \"%s\": out of memory writing the record of a joining table", j->stream);
	return ok;
}

/* Asks the source for the head table's copy when the link is up and nothing else runs. */
static void join_ask(struct streamjoin *j)
{
	struct join_table *t = j->tables;

	if (!t || t->phase != JP_WAITING || !j->link_up)
		return;
	if (join_send(j, t->schema, t->table, 0, 0, true, NULL, 0)) {
		t->phase = JP_ASKED;
		log_info("stream \"%s\": %s.%s joins the stream: its changes are held while \"%s\" "
			 "copies it", j->stream, t->schema, t->table, j->peer);
	}
}

/* After the members query: the gate knows the stream's tables. */
static void join_members_read(struct streamjoin *j, const PGresult *res)
{
	bool guard = false;
	uint64_t left;

	for (int r = 0; res && r < PQntuples(res); r++) {
		const char *kind = PQgetvalue(res, r, 0), *a = PQgetvalue(res, r, 1);
		const char *b = PQgetvalue(res, r, 2);

		if (kind[0] == 's')
			guard = strcmp(a, "true") == 0 || strcmp(a, "t") == 0;
		else if (kind[0] == 'm' && PQgetisnull(res, r, 3) &&
			 !joingate_set(j->gate, a, b, JOINGATE_MEMBER))
			goto oom;
		else if (kind[0] == 'm' && !PQgetisnull(res, r, 3) &&
			 (!lsn_parse(PQgetvalue(res, r, 3), &left) || !joingate_set_left(j->gate, a, b, left)))
			goto oom;
		else if (kind[0] == 'j' && !join_find(j, a, b) && !join_add(j, a, b, JP_WAITING))
			goto oom;
	}
	joingate_guard(j->gate, guard);
	j->state = JS_READY;
	log_info("stream \"%s\": tables that join later: %s%s", j->stream,
		 guard ? "watched" : "not watched (the record predates it)",
		 j->tables ? "; a table left joining is copied again" : "");
	join_ask(j);
	j->env.resume(j->env.arg);
	return;
oom:
	log_error("stream \"%s\": out of memory reading the stream's members", j->stream);
}

static void join_finished(struct streamjoin *j, struct join_table *t)
{
	log_info("stream \"%s\": %s.%s joined the stream (%" PRIu64 " rows copied, %" PRIu64
		 " held transactions applied)", j->stream, t->schema, t->table, t->rows,
		 joinhold_replayed_count(t->hold));
	j->joined++;
	join_unlink(j, t);
	join_ask(j);
}

static void join_statement_done(void *arg, uint64_t tag, const PGresult *res)
{
	struct streamjoin *j = arg;
	struct join_table *t = j->tables;

	switch (tag) {
	case TAG_MEMBERS:
		join_members_read(j, res);
		return;
	case TAG_BEGIN:
		for (t = j->tables; t; t = t->next)
			if (t->phase == JP_RECORDING)
				t->phase = JP_WAITING;
		join_ask(j);
		j->env.resume(j->env.arg);
		return;
	case TAG_END:
		if (t && t->phase == JP_FINISHING)
			join_finished(j, t);
		return;
	case TAG_ADOPT:
		join_adopted(j);
		return;
	default:
		return;
	}
}

static void join_load_taken(void *arg, uint64_t job, uint32_t chunk)
{
	struct streamjoin *j = arg;
	struct join_table *t = j->tables;

	if (t && t->job == job)
		(void)join_send(j, t->schema, t->table, t->lsn, chunk, false, NULL, 0);
}

static void join_load_loaded(void *arg, uint64_t job, const struct syncload_loaded *l,
		uint64_t rows)
{
	struct streamjoin *j = arg;
	struct join_table *t = j->tables;

	(void)l;
	if (!t || t->job != job || t->phase != JP_LOADING)
		return;
	t->rows = rows;
	t->phase = JP_REPLAYING;
	joinhold_replay_from(t->hold, t->lsn);
	log_info("stream \"%s\": %s.%s loaded (%" PRIu64 " rows, snapshot at " LSN_FMT "); applying "
		 "its %" PRIu64 " held transactions", j->stream, t->schema, t->table, rows,
		 LSN_ARGS(t->lsn), joinhold_kept_count(t->hold));
	streamjoin_pump(j);
}

/* The loader failed (logged): every table goes back to waiting for a copy, after a while. */
static void join_load_failed(void *arg, const char *reason)
{
	struct streamjoin *j = arg;

	snprintf(j->last_error, sizeof(j->last_error), "%s", reason);
	for (struct join_table *t = j->tables; t; t = t->next) {
		if (t->phase == JP_ASKED || t->phase == JP_LOADING)
			t->phase = JP_WAITING;
		else if (t->phase == JP_REPLAYING || t->phase == JP_FINISHING)
			join_start_over(j, t);   /* its member row may not be written: copied again */
	}
	if (j->state == JS_READING)
		j->state = JS_UNREAD;
	join_later(j, STREAMJOIN_RETRY_MS);
}

static void join_load_state(void *arg, const struct syncload_loaded *t, size_t n, uint64_t lsn)
{
	(void)arg;
	(void)t;
	(void)n;
	(void)lsn;
}

static void join_load_marked(void *arg, uint64_t lsn)
{
	(void)arg;
	(void)lsn;
}

static const struct syncload_callbacks join_load_cb = {
	.state = join_load_state,
	.taken = join_load_taken,
	.loaded = join_load_loaded,
	.marked = join_load_marked,
	.statement = join_statement_done,
	.failed = join_load_failed,
};

/* The loader on the pool's last origin, made when first needed. */
static bool join_loader(struct streamjoin *j)
{
	if (j->load)
		return true;
	j->load = syncload_new(j->base, j->conninfo, j->stream, &join_load_cb, j);
	if (!j->load) {
		log_error("stream \"%s\": out of memory opening a loader for joining tables", j->stream);
		return false;
	}
	syncload_use_origin(j->load, SYNCLOAD_MAX_CONNS - 1);
	return true;
}

bool streamjoin_sink_ready(struct streamjoin *j)
{
	if (j->state == JS_UNREAD) {
		if (!join_loader(j) || !join_statement(j, syncstate_members_sql(j->stream), TAG_MEMBERS))
			return false;
		j->state = JS_READING;
	}
	if (j->state != JS_READY)
		return false;
	for (struct join_table *t = j->tables; t; t = t->next)
		if (t->phase == JP_RECORDING)
			return false;
	return true;
}

/* ---- the gate ---- */

static enum streamjoin_gate join_new_table(struct streamjoin *j)
{
	const char *schema, *table;
	struct join_table *t;

	joingate_unknown(j->gate, &schema, &table);
	t = join_add(j, schema, table, JP_RECORDING);
	if (!t)
		return STREAMJOIN_BROKEN;
	log_info("stream \"%s\": a change of %s.%s, which the stream does not have: it joins (asking "
		 "for the batch again once that is recorded)", j->stream, schema, table);
	if (!join_loader(j) ||
	    !join_statement(j, syncstate_join_begin_sql(j->stream, schema, table), TAG_BEGIN))
		return STREAMJOIN_BROKEN;
	return STREAMJOIN_REFUSE;
}

enum streamjoin_gate streamjoin_gate(struct streamjoin *j, const uint8_t *body, size_t len,
		const uint8_t **out, size_t *out_len)
{
	char err[256];

	*out = body;
	*out_len = len;
	if (j->state != JS_READY)
		return STREAMJOIN_PASS;
	streamjoin_pump(j);
	switch (joingate_run(j->gate, body, len, out, out_len, err, sizeof(err))) {
	case JOINGATE_OK:
		j->held_bytes += len - *out_len;
		return STREAMJOIN_PASS;
	case JOINGATE_UNKNOWN:
		return join_new_table(j);
	case JOINGATE_BROKEN:
	default:
		log_error("stream \"%s\": could not hold a joining table's changes: %s", j->stream, err);
		snprintf(j->last_error, sizeof(j->last_error), "%s", err);
		return STREAMJOIN_BROKEN;
	}
}

void streamjoin_restart(struct streamjoin *j)
{
	char err[256];

	if (!j->sink)
		return;
	joingate_restart(j->gate);
	for (struct join_table *t = j->tables; t; t = t->next)
		if (t->hold && !joinhold_restart(t->hold, err, sizeof(err)))
			log_error("stream \"%s\": %s", j->stream, err);
}

/* The replay of t lost what the apply had not committed: copy it again. */
static void join_start_over(struct streamjoin *j, struct join_table *t)
{
	char err[256] = "out of memory";

	joinhold_free(t->hold);
	t->hold = joinhold_new(j->spill_dir, j->next_file++, err, sizeof(err));
	if (!t->hold || !joingate_set(j->gate, t->schema, t->table, JOINGATE_JOINING))
		log_error("stream \"%s\": cannot hold the changes of %s.%s: %s", j->stream, t->schema,
			  t->table, err);
	t->phase = JP_WAITING;
	t->ending = t->applied = false;
	j->replay_in_txn = false;
	log_warning("stream \"%s\": the apply restarted while %s.%s was joining: copying it again",
		    j->stream, t->schema, t->table);
}

void streamjoin_apply_restarted(struct streamjoin *j)
{
	struct join_table *t = j ? j->tables : NULL;

	if (!t || (t->phase != JP_REPLAYING && t->phase != JP_FINISHING))
		return;
	join_start_over(j, t);
	join_ask(j);
}

void streamjoin_idle(struct streamjoin *j)
{
	struct join_table *t = j->tables;

	if (t && t->phase == JP_FINISHING && !j->replay_in_txn) {
		t->applied = true;       /* everything handed over before is committed */
		streamjoin_pump(j);
	}
}

void streamjoin_committed(struct streamjoin *j, uint64_t lsn)
{
	if (!j->sink)
		return;
	if (lsn > j->committed_lsn)
		j->committed_lsn = lsn;
	streamjoin_pump(j);
}

/* The hold of t is replayed and the gate takes t in: record it once the apply committed it. */
static void join_take_in(struct streamjoin *j, struct join_table *t)
{
	if (!joingate_set(j->gate, t->schema, t->table, JOINGATE_MEMBER)) {
		log_error("stream \"%s\": out of memory taking %s.%s in", j->stream, t->schema, t->table);
		return;
	}
	t->switch_lsn = j->env.received(j->env.arg);
	/* nothing handed over: nothing to wait for; else a later commit or the apply's idle says */
	t->applied = joinhold_replayed_count(t->hold) == 0;
	t->phase = JP_FINISHING;
}

/* Hands held transactions of the head table over while the apply has room. */
static void join_replay(struct streamjoin *j, struct join_table *t)
{
	char err[256];

	while (j->replay_in_txn || j->env.pending(j->env.arg) < STREAMJOIN_REPLAY_ROOM) {
		uint8_t *body;
		size_t len;
		enum joinhold_next r = joinhold_next(t->hold, j->env.received(j->env.arg), &body, &len,
						     &j->replay_in_txn, err, sizeof(err));

		if (r == JOINHOLD_CAUGHT_UP) {
			join_take_in(j, t);
			return;
		}
		if (r == JOINHOLD_ERROR || !j->env.submit(j->env.arg, body, len)) {
			free(body);
			log_error("stream \"%s\": applying the held changes of %s.%s: %s", j->stream,
				  t->schema, t->table, r == JOINHOLD_ERROR ? err : "refused");
			join_start_over(j, t);
			join_ask(j);
			return;
		}
		j->replayed_bytes += len;
		free(body);
	}
}

void streamjoin_pump(struct streamjoin *j)
{
	struct join_table *t = j->tables;

	if (!j->sink || !t || joingate_in_txn(j->gate))
		return;
	if (t->phase == JP_REPLAYING)
		join_replay(j, t);
	if (t->phase == JP_FINISHING && !t->ending &&
	    (t->applied || j->committed_lsn > t->switch_lsn)) {
		t->ending = true;
		if (!join_statement(j, syncstate_join_end_sql(j->stream, t->schema, t->table), TAG_END))
			join_start_over(j, t);
	}
}

/* ---- the publication's list ---- */

/* An older record: the listed tables are the stream's, as they were before members were kept. */
static void join_adopt(struct streamjoin *j, struct syncplan *list)
{
	const char **schemas = calloc(list->n + 1, sizeof(char *));
	const char **tables = calloc(list->n + 1, sizeof(char *));

	for (size_t i = 0; schemas && tables && i < list->n; i++) {
		schemas[i] = list->tables[i].schema;
		tables[i] = list->tables[i].table;
	}
	if (schemas && tables &&
	    join_statement(j, syncstate_adopt_sql(j->stream, schemas, tables, list->n), TAG_ADOPT)) {
		j->adopting = *list;
		syncplan_init(list);
	}
	free(schemas);
	free(tables);
}

static void join_adopted(struct streamjoin *j)
{
	for (size_t i = 0; i < j->adopting.n; i++) {
		if (!joingate_set(j->gate, j->adopting.tables[i].schema, j->adopting.tables[i].table,
				  JOINGATE_MEMBER)) {
			log_error("stream \"%s\": out of memory taking the stream's tables", j->stream);
			return;
		}
	}
	log_info("stream \"%s\": the record predates the stream's members: the %zu tables the "
		 "publication lists are taken as its members; tables that join later are watched",
		 j->stream, j->adopting.n);
	syncplan_free(&j->adopting);
	joingate_guard(j->gate, true);
}

/* A member the publication does not list any more: out of the stream from lsn on. */
static void join_leave(struct streamjoin *j, const char *schema, const char *table, uint64_t lsn)
{
	if (!joingate_set_left(j->gate, schema, table, lsn) ||
	    !join_statement(j, syncstate_member_leave_sql(j->stream, schema, table, lsn), TAG_LEAVE)) {
		log_error("stream \"%s\": out of memory noting that %s.%s left", j->stream, schema,
			  table);
		return;
	}
	j->left++;
	log_info("stream \"%s\": %s.%s is no longer in the publication (as of " LSN_FMT "): its "
		 "later changes are not applied, its rows stay; back in the publication, it is copied "
		 "again", j->stream, schema, table, LSN_ARGS(lsn));
}

/* Members the list leaves out. */
static bool join_mark_left(struct streamjoin *j, const struct syncplan_set *listed, uint64_t lsn)
{
	size_t n = joingate_count(j->gate), k = 0;
	char **names = calloc(2 * n + 1, sizeof(char *));

	if (!names)
		return false;
	/* collected first: join_leave() changes the gate's table array */
	for (size_t i = 0; i < n; i++) {
		const char *schema, *table;

		if (joingate_at(j->gate, i, &schema, &table) != JOINGATE_MEMBER ||
		    syncplan_set_get(listed, schema, strlen(schema), table, strlen(table)))
			continue;
		names[k++] = strdup(schema);
		names[k++] = strdup(table);
	}
	for (size_t i = 0; i + 1 < k; i += 2)
		if (names[i] && names[i + 1])
			join_leave(j, names[i], names[i + 1], lsn);
	for (size_t i = 0; i < k; i++)
		free(names[i]);
	free(names);
	return true;
}

static void join_list(struct streamjoin *j, struct syncplan *list, uint64_t lsn)
{
	struct syncplan_set listed = { 0 };

	if (j->state != JS_READY || j->adopting.n)
		return;
	if (!joingate_guarded(j->gate)) {
		join_adopt(j, list);
		return;
	}
	for (size_t i = 0; i < list->n; i++) {
		const char *schema = list->tables[i].schema, *table = list->tables[i].table;

		if (!syncplan_set_put(&listed, schema, strlen(schema), table, strlen(table), 0))
			goto oom;
		enum joingate_kind kind = joingate_kind_of(j->gate, schema, table);

		if (kind != JOINGATE_UNKNOWN_TABLE && kind != JOINGATE_LEFT)
			continue;
		if (!join_add(j, schema, table, JP_RECORDING) ||
		    !join_statement(j, syncstate_join_begin_sql(j->stream, schema, table), TAG_BEGIN))
			goto oom;
		log_info("stream \"%s\": the publication lists %s.%s, which the stream does not have: "
			 "it joins", j->stream, schema, table);
	}
	if (!join_mark_left(j, &listed, lsn))
		goto oom;
	syncplan_set_free(&listed);
	return;
oom:
	syncplan_set_free(&listed);
	log_error("stream \"%s\": out of memory reading the publication's list", j->stream);
}

static void join_list_frame(struct streamjoin *j, const struct relay_proto_sync *m)
{
	struct syncplan list;
	char err[256];

	if (m->chunk == 0)
		j->list_text.len = 0;
	if (m->chunk != (m->chunk ? j->list_next_chunk : 0) || m->raw_len != m->data_len ||
	    j->list_text.len + m->data_len > SYNCPLAN_MAX_TEXT ||
	    !syncplan_text_append(&j->list_text, m->data, m->data_len)) {
		log_error("stream \"%s\": refused a piece of the publication's list from \"%s\"",
			  j->stream, j->peer);
		j->list_next_chunk = 0;
		return;
	}
	j->list_next_chunk = m->chunk + 1;
	if (!(m->flags & RELAY_SYNC_LAST))
		return;
	j->list_next_chunk = 0;
	syncplan_init(&list);
	if (!syncplan_decode(j->list_text.data, j->list_text.len, &list, err, sizeof(err))) {
		log_error("stream \"%s\": refused the publication's list from \"%s\": %s", j->stream,
			  j->peer, err);
		return;
	}
	join_list(j, &list, m->snapshot_lsn);
	syncplan_free(&list);
}

/* ---- frames from the source ---- */

static void join_plan_frame(struct streamjoin *j, struct join_table *t,
		const struct relay_proto_sync *m)
{
	struct syncplan plan;
	char err[256];
	long i;

	if (m->chunk == STREAMJOIN_REFUSED_CHUNK) {
		log_warning("stream \"%s\": %s.%s is not in the publication any more: not joining it",
			    j->stream, t->schema, t->table);
		join_leave(j, t->schema, t->table, m->snapshot_lsn);
		join_unlink(j, t);
		join_ask(j);
		return;
	}
	if (m->chunk == STREAMJOIN_FAILED_CHUNK) {
		t->phase = JP_WAITING;
		join_later(j, STREAMJOIN_RETRY_MS);
		return;
	}
	syncplan_init(&plan);
	if (m->chunk != 0 || !(m->flags & RELAY_SYNC_LAST) ||
	    !syncplan_decode((const char *)m->data, m->data_len, &plan, err, sizeof(err)) ||
	    (i = syncplan_find(&plan, t->schema, strlen(t->schema), t->table, strlen(t->table))) < 0 ||
	    !plan.tables[i].copy) {
		log_error("stream \"%s\": refused a joining table's plan from \"%s\"", j->stream, j->peer);
		syncplan_free(&plan);
		return;
	}
	t->lsn = m->snapshot_lsn;
	t->next_chunk = 0;
	t->job = syncload_begin(j->load, t->schema, t->table, plan.tables[i].columns,
				plan.tables[i].ncolumns, t->lsn);
	syncplan_free(&plan);
	if (t->job)
		t->phase = JP_LOADING;
}

static void join_data_frame(struct streamjoin *j, struct join_table *t,
		const struct relay_proto_sync *m)
{
	if (m->chunk != t->next_chunk || m->snapshot_lsn != t->lsn || m->raw_len != m->data_len) {
		log_error("stream \"%s\": refused chunk %u of joining table %s.%s (expected %u)",
			  j->stream, m->chunk, t->schema, t->table, t->next_chunk);
		syncload_abort(j->load);
		t->phase = JP_WAITING;
		join_later(j, STREAMJOIN_RETRY_MS);
		return;
	}
	if (!syncload_data(j->load, t->job, m->chunk, m->data, m->data_len) ||
	    ((m->flags & RELAY_SYNC_LAST) && !syncload_end(j->load, t->job))) {
		log_error("stream \"%s\": out of memory loading %s.%s", j->stream, t->schema, t->table);
		return;
	}
	t->next_chunk++;
}

static void join_sink_frame(struct streamjoin *j, const struct relay_proto_sync *m)
{
	struct join_table *t = j->tables;
	bool plan = wire_str_eq(m->schema, SYNCPLAN_SCHEMA) && wire_str_eq(m->table, SYNCPLAN_TABLE);

	if (wire_str_eq(m->schema, SYNCPLAN_SCHEMA) && wire_str_eq(m->table, STREAMJOIN_LIST_TABLE)) {
		join_list_frame(j, m);
		return;
	}
	if (!t || !j->load || (plan ? t->phase != JP_ASKED : t->phase != JP_LOADING))
		return;      /* an old copy's */
	if (plan) {
		join_plan_frame(j, t, m);
		return;
	}
	if (!wire_str_eq(m->schema, t->schema) || !wire_str_eq(m->table, t->table)) {
		log_error("stream \"%s\": refused a chunk of %.*s.%.*s: %s.%s is the table joining",
			  j->stream, (int)m->schema.len, m->schema.ptr, (int)m->table.len, m->table.ptr,
			  t->schema, t->table);
		return;
	}
	join_data_frame(j, t, m);
}

/* ================================================================== both */

void streamjoin_frame(struct streamjoin *j, const struct relay_proto_sync *m)
{
	if (j->sink)
		join_sink_frame(j, m);
	else
		join_source_frame(j, m);
}

void streamjoin_link_down(struct streamjoin *j)
{
	j->link_up = false;
	if (!j->sink) {
		join_copy_end(j);
		free(j->list_sent);      /* the next poll sends it again */
		j->list_sent = NULL;
		return;
	}
	if (j->tables && (j->tables->phase == JP_ASKED || j->tables->phase == JP_LOADING)) {
		if (j->load)
			syncload_abort(j->load);
		j->tables->phase = JP_WAITING;
	}
}

static void join_later_cb(evutil_socket_t fd, short what, void *arg)
{
	struct streamjoin *j = arg;

	(void)fd;
	(void)what;
	synccopy_free(j->copy_dead);
	j->copy_dead = NULL;
	if (!j->sink)
		return;
	j->link_up = relay_is_up(j->relay, j->peer);
	if (j->state == JS_UNREAD && j->load) {
		syncload_free(j->load);  /* failed: a new one reads again */
		j->load = NULL;
		j->env.resume(j->env.arg);
	}
	join_ask(j);
	streamjoin_pump(j);
	join_later(j, 1000);
}

static struct streamjoin *join_new(struct event_base *base, struct relay *relay,
		const char *stream, const char *peer, const char *conninfo)
{
	struct streamjoin *j = calloc(1, sizeof(*j));

	if (!j)
		return NULL;
	j->base = base;
	j->relay = relay;
	j->stream = strdup(stream);
	j->peer = strdup(peer);
	j->conninfo = strdup(conninfo);
	j->ev_later = event_new(base, -1, 0, join_later_cb, j);
	wire_writer_init_heap(&j->out, FRAME_MAX_PAYLOAD);
	if (!j->stream || !j->peer || !j->conninfo || !j->ev_later) {
		streamjoin_free(j);
		return NULL;
	}
	return j;
}

struct streamjoin *streamjoin_new_source(struct event_base *base, struct relay *relay,
		const char *stream, const char *peer, const char *conninfo, const char *publication)
{
	struct streamjoin *j = join_new(base, relay, stream, peer, conninfo);

	if (j && !(j->publication = strdup(publication))) {
		streamjoin_free(j);
		return NULL;
	}
	return j;
}

struct streamjoin *streamjoin_new_sink(struct event_base *base, struct relay *relay,
		const char *stream, const char *peer, const char *conninfo, const char *spill_dir,
		const struct streamjoin_env *env)
{
	struct streamjoin *j = join_new(base, relay, stream, peer, conninfo);

	if (!j)
		return NULL;
	j->sink = true;
	j->env = *env;
	j->spill_dir = strdup(spill_dir);
	j->gate = joingate_new(join_hold_cb, j);
	syncplan_init(&j->adopting);
	joinhold_clean(spill_dir);
	if (!j->spill_dir || !j->gate) {
		streamjoin_free(j);
		return NULL;
	}
	join_later(j, 1000);
	return j;
}

void streamjoin_free(struct streamjoin *j)
{
	if (!j)
		return;
	synccopy_free(j->copy);
	synccopy_free(j->copy_dead);
	syncload_free(j->load);
	while (j->tables)
		join_unlink(j, j->tables);
	syncplan_text_free(&j->list_text);
	syncplan_free(&j->adopting);
	free(j->list_sent);
	joingate_free(j->gate);
	if (j->ev_later)
		event_free(j->ev_later);
	wire_writer_free(&j->out);
	free(j->copy_schema);
	free(j->copy_table);
	free(j->publication);
	free(j->spill_dir);
	free(j->stream);
	free(j->peer);
	free(j->conninfo);
	free(j);
}

uint64_t streamjoin_held_bytes(const struct streamjoin *j)
{
	return j ? j->held_bytes : 0;
}

uint64_t streamjoin_replayed_bytes(const struct streamjoin *j)
{
	return j ? j->replayed_bytes : 0;
}

void streamjoin_status_json(const struct streamjoin *j, struct json_out *out)
{
	if (!j->sink) {
		json_uint(out, "join_copies", j->copies);
		if (j->copy)
			json_string(out, "join_copying", j->copy_table);
		return;
	}
	json_uint(out, "tables_joined", j->joined);
	json_uint(out, "tables_left", j->left);
	json_array_begin(out, "joining");
	for (const struct join_table *t = j->tables; t; t = t->next) {
		json_object_begin(out, NULL);
		json_string(out, "schema", t->schema);
		json_string(out, "table", t->table);
		json_string(out, "phase", join_phase_names[t->phase]);
		json_uint(out, "held_transactions", t->hold ? joinhold_kept_count(t->hold) : 0);
		json_uint(out, "applied_transactions", t->hold ? joinhold_replayed_count(t->hold) : 0);
		json_int(out, "seconds", join_now() - t->since);
		json_object_end(out);
	}
	json_array_end(out);
	if (j->last_error[0])
		json_string(out, "join_error", j->last_error);
}
