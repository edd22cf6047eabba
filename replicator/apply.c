/*
 * apply.c — the sink's apply engine (see apply.h for the contract).
 *
 * NOTES
 *
 * Data flow. Submitted batches are kept in a queue until every transaction in
 * them is committed on the target, or, inside a source transaction larger
 * than APPLY_HOLD_BYTES, until they are decoded and their results are in
 * (apply_forget(): after that a rewind drops the queue and the source sends
 * again from the committed position). The pump decodes records from the queue
 * (pgoutput_decode(), zero copy: a decoded change points into its batch) and
 * turns each change into one prepared statement sent in libpq pipeline mode;
 * it never waits for a result before sending the next change. The socket has
 * a persistent read event; results are matched, in order, against a ring of
 * the commands sent (struct apply_cmd). Nothing in the loop blocks.
 *
 * Grouping. Consecutive source transactions that are already queued go into
 * one target transaction (a "group"), up to group_max_changes changes or
 * group_max_txns transactions; a group is closed when the queue runs dry, so
 * a busy stream gets large groups and a quiet one commits each transaction at
 * once. A group ends with
 *     SELECT pg_replication_origin_xact_setup(<last end_lsn>, <its commit time>),
 *            txid_current();  COMMIT;  Sync
 * so the origin advances atomically with the data (txid_current() makes sure
 * the commit writes a record even when every change was a no-op). The
 * session's origin (pg_replication_origin_session_setup() once per connection)
 * also tags every applied change with our origin, which the reverse stream's
 * source filters out. committed() is called for each source transaction of a
 * group only when that group's COMMIT has succeeded (its command tag is
 * checked: COMMIT of an aborted transaction reports ROLLBACK).
 *
 * Interrupted transactions. A transaction larger than a batch spans several;
 * when the link drops inside one, the source sends it again from its Begin.
 * So before the sink asks to resume it cuts the queue back to the last whole
 * transaction (apply_drop_partial()): no partial copy stays queued, and a
 * resume never brings a second copy of what is queued. If part of the cut
 * transaction already went into the open target transaction, the engine
 * closes the connection, rewinds and reconnects (ready() follows). A Begin
 * that still arrives inside a transaction (a source that misbehaves) is
 * handled the same way: the partial copy's stretch of the queue is marked
 * dead (never decoded again, also after a rewind) and rolled back if needed
 * (apply_interrupted()).
 *
 * Exactly once. The origin's progress is read at every connect
 * (pg_replication_origin_session_progress(true)) and reported by ready(); the
 * pump skips source transactions whose commit LSN is below it (or below the
 * last one it has already taken), so a re-sent batch is harmless. A kill -9
 * anywhere leaves either a committed group with its origin position or an
 * aborted one without: never half.
 *
 * Conflicts. Each statement resolves its own conflict on the server (see
 * apply_sql.h), so the pipeline never branches on a result. Under
 * on_conflict=error an UPDATE or DELETE that finds no row is only visible in
 * its affected-row count, which arrives after later statements are already
 * sent; so a group holding such statements is closed with a Sync and its
 * COMMIT is sent only after all its results are in (one round trip per group).
 * A duplicate INSERT is a server error that aborts the target transaction by
 * itself, so insert-only groups commit without that wait.
 *
 * Errors. Any error — a failed statement, a conflict under "error", a schema
 * mismatch, bad input, a lost connection — is logged once (apply_fail()), the
 * connection is closed (the open target transaction rolls back), and the
 * decode position rewinds to just after the last committed group. Relation
 * messages are remembered with their stream offsets (a short history per
 * relation), so the relation cache can be rebuilt as it was at that point.
 * stopped() is called; apply_resume() reconnects, re-reads the target's
 * catalog (the operator may have fixed the table) and goes on.
 *
 * The target session. Like PostgreSQL's own apply worker: search_path is
 * empty (every name in our SQL is qualified), session_replication_role is
 * replica (ordinary triggers and foreign-key triggers do not fire: the
 * source already ran them, and a cascade on the target would make the
 * source's own cascaded deletes miss), DateStyle ISO, IntervalStyle postgres,
 * extra_float_digits 3, enable_seqscan off (a change finds its row through
 * the key's index). synchronous_commit is raised to local when it is off,
 * because committed() lets the source forget the transaction. The target role
 * needs superuser, or EXECUTE on the pg_replication_origin_* functions and
 * SET on session_replication_role (PostgreSQL 15's GRANT SET ON PARAMETER);
 * without that SET it applies with the target's triggers and foreign-key
 * checks running, and says so (triggers_fire).
 * One origin, one session: a second engine on the same stream fails its
 * pg_replication_origin_session_setup() and stops.
 *
 * Memory. The hot path allocates nothing per row: decoded columns go into a
 * preallocated array, parameter values are copied (NUL-terminated, as libpq
 * wants text parameters) into one reusable buffer, and the command ring and
 * group ring grow by doubling. Relation state (mapping and prepared
 * statements) is the relation cache entry's priv, reference-counted because
 * in-flight commands point at it; statements of a replaced relation stay
 * prepared on the server until the connection closes.
 */
#include "replicator/apply.h"

#include <errno.h>
#include <poll.h>
#include <time.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <libpq-fe.h>

#include "common/be32.h"
#include "common/fault.h"
#include "common/json.h"
#include "common/log.h"
#include "common/lsn.h"
#include "replicator/apply_sql.h"
#include "replicator/applypar.h"
#include "replicator/loaderr.h"
#include "replicator/pgoutput.h"
#include "replicator/pgversion.h"
#include "replicator/relmap.h"

#define APPLY_MAX_COLS 1664             /* PostgreSQL's MaxTupleAttributeNumber */
#define APPLY_MAX_INFLIGHT 16384        /* commands awaiting their results */
#define APPLY_FLUSH_BYTES (256u * 1024u) /* the pump flushes after this much */
#define APPLY_MAX_SHAPES 128            /* prepared statements per relation */
#define APPLY_DEFAULT_GROUP_CHANGES 5000
#define APPLY_DEFAULT_GROUP_TXNS 200
#define APPLY_DEFAULT_CONNECT_TIMEOUT 30
#define APPLY_ORIGIN_PREFIX "strait_"
#define APPLY_ORIGIN_BUSY_RETRY_MS 50     /* reconnect while an ending backend holds the origin */
#define APPLY_ORIGIN_BUSY_WAIT_MS 10000   /* then it is another process's: stop */
#define APPLY_HOLD_BYTES (8u * 1024u * 1024u) /* uncommitted bytes held before some are freed */
#define APPLY_LARGE_COMMAND (16u * 1024u * 1024u) /* sent in blocking mode (apply_set_blocking) */
#define APPLY_KEY_VALUE_MAX 64          /* bytes of a key value shown in messages */

enum apply_state {
	APPLY_CONNECTING,            /* libpq connecting */
	APPLY_SETUP,                 /* session and origin set-up in flight */
	APPLY_RUNNING,
	APPLY_STOPPED,
};

static const char *const apply_state_names[] = {
	[APPLY_CONNECTING] = "connecting",
	[APPLY_SETUP] = "setting up",
	[APPLY_RUNNING] = "running",
	[APPLY_STOPPED] = "stopped",
};

/* A submitted batch; base is the stream offset of data[0]. */
struct apply_batch {
	struct apply_batch *next;
	uint64_t base;
	size_t len;
	unsigned refs;               /* commands in flight that point into it */
	uint8_t data[];
};

/* A position in the queue; b NULL means the start of the queue's head. */
struct apply_pos {
	struct apply_batch *b;
	size_t off;
};

/* A prepared statement for one shape of one relation. */
struct apply_stmt {
	char *key;
	size_t keylen;
	char name[24];
	struct apply_sql_stmt sql;
};

/* What the engine keeps per relation: the relation cache entry's priv. */
struct apply_rel {
	unsigned refs;
	uint32_t oid;
	char *nspname;
	char *relname;
	char *display;               /* nspname.relname */
	struct relmap *map;          /* NULL until the catalog answered */
	bool catalog_sent;
	struct apply_stmt *stmts;
	size_t nstmts;
	size_t capstmts;
	struct apply_stmt *last[3];  /* the last statement used per kind */
};

/* A Relation message as it was, to rebuild the cache after a rewind. */
struct apply_relhist {
	uint64_t pos;                /* stream offset of its record */
	uint32_t oid;
	size_t len;
	uint8_t *msg;
};

/* A stretch of the queue holding a transaction that a new Begin interrupted. */
struct apply_dead {
	uint64_t start;              /* stream offset of its Begin record */
	uint64_t end;                /* stream offset of the Begin that interrupted it */
};

enum apply_cmd_kind {
	CMD_SETUP,                   /* session set-up statement */
	CMD_REPLICA_ROLE,            /* session_replication_role, set when the role may */
	CMD_PROGRESS,                /* the origin's progress */
	CMD_BEGIN,
	CMD_CATALOG,                 /* a target table's description */
	CMD_PREPARE,
	CMD_CHANGE,                  /* INSERT / UPDATE / DELETE */
	CMD_TRUNCATE,
	CMD_ORIGIN,                  /* pg_replication_origin_xact_setup() */
	CMD_COMMIT,
	CMD_SYNC,
	CMD_LOCK,                    /* a worker's segment takes its advisory lock */
	CMD_CHAIN,                   /* a worker's segment waits for the previous one */
};

enum apply_sync_kind {
	SYNC_PLAIN,
	SYNC_SETUP_DONE,             /* the set-up is complete: start applying */
	SYNC_CHECK,                  /* a group's results are all in: commit it */
};

/* One command sent, awaiting its result(s). */
struct apply_cmd {
	uint8_t kind;                /* enum apply_cmd_kind */
	uint8_t change;              /* CHANGE: 'I', 'U', 'D'; SYNC: enum apply_sync_kind */
	uint8_t outcome;             /* CHANGE: enum apply_sql_outcome */
	bool got;                    /* its result came; the NULL that ends it is next */
	struct apply_rel *rel;       /* CATALOG, PREPARE, CHANGE: a reference */
	uint64_t group;              /* the group it belongs to */
	uint64_t txn_lsn;            /* CHANGE, TRUNCATE: the source commit LSN */
	struct apply_batch *batch;   /* CHANGE: its message, for messages */
	size_t off;
	const uint16_t *params;      /* CHANGE, prepared: its statement's parameters (loaderr.h) */
	int nparams;
	bool ends_txn;               /* a worker's: the last change of its source transaction */
};

enum apply_group_state {
	GROUP_OPEN,                  /* taking transactions */
	GROUP_CHECKING,              /* closed with a Sync; COMMIT after the results */
	GROUP_COMMITTING,            /* COMMIT sent */
	GROUP_DONE,                  /* committed (or nothing to commit) */
};

enum apply_conflict_kind {
	CONFLICT_INSERT_EXISTS,
	CONFLICT_UPDATE_MISSING,
	CONFLICT_DELETE_MISSING,
	CONFLICT_KINDS,
};

struct apply_counts {
	uint64_t txns;
	uint64_t skipped;
	uint64_t inserted;
	uint64_t updated;
	uint64_t deleted;
	uint64_t truncated;
	uint64_t conflicts[CONFLICT_KINDS];
};

/* A target transaction holding consecutive source transactions. */
struct apply_group {
	uint64_t id;
	enum apply_group_state state;
	bool begun;                  /* BEGIN sent */
	bool needs_check;
	size_t ntxns;                /* source transactions, skipped ones included */
	size_t nreal;                /* source transactions applied here */
	size_t nchanges;
	uint64_t last_end_lsn;
	int64_t last_commit_time;    /* PostgreSQL µs */
	uint64_t end_off;            /* stream offset just after its last Commit */
	struct apply_counts counts;  /* added to the totals at commit */
	uint64_t seg;                /* a worker's: its segment (struct apply_segment) */
	const char *prev_origin;
	uint64_t prev_end_lsn;
};

/* A worker's queued segment: it starts with the Begin at stream offset start. */
struct apply_segpos {
	uint64_t start;
	struct apply_segment seg;
};

/* A source commit to report once its group commits. */
struct apply_ack {
	uint64_t group;
	uint64_t end_lsn;
	int64_t commit_time;         /* PostgreSQL µs */
};

/* A FIFO of fixed-size items that grows by doubling. */
struct apply_ring {
	uint8_t *items;
	size_t size;
	size_t cap;                  /* power of two, or 0 */
	size_t head;
	size_t count;
};

struct apply {
	struct applypar *par;        /* workers > 1: the parallel engine does everything */
	struct event_base *base;
	char *conninfo;
	char *stream;
	char *origin;                /* strait_<stream> */
	enum apply_conflict policy;
	size_t group_max_changes;
	size_t group_max_txns;
	unsigned connect_timeout_s;
	struct apply_callbacks cb;
	void *cb_arg;

	enum apply_state state;
	PGconn *conn;
	struct event *ev_conn;       /* connecting: one shot on the socket */
	struct event *ev_read;       /* connected: persistent */
	struct event *ev_write;      /* connected: while PQflush has more to send */
	struct event *ev_kick;       /* deferred work */
	struct event *ev_timeout;    /* connecting */
	struct event *ev_retry;      /* reconnecting while the origin is still held */
	uint64_t origin_busy_since;  /* monotonic ms of the first "origin in use" (0: none) */
	bool out_blocked;            /* PQflush could not send everything */
	size_t out_since_flush;      /* record bytes the pump handled since its last flush */
	unsigned unflushed;          /* commands sent since the last Sync / flush request */
	unsigned stmt_seq;

	/* queue */
	struct apply_batch *head;
	struct apply_batch *tail;
	uint64_t submitted;          /* stream offset after the last batch */
	uint64_t whole_off;          /* stream offset after the last Commit submitted */
	uint64_t whole_lsn;          /* that Commit's end LSN (0: none yet) */
	struct apply_pos cur;        /* the next record to decode */
	uint64_t done_off;           /* stream offset just after the last committed group */
	size_t held;                 /* bytes of the batches queued */
	uint64_t released;           /* bytes of batches freed once used (committed or forgotten) */
	uint64_t forgot_off;         /* uncommitted bytes before this were freed (see apply_forget) */

	/* decoding */
	struct pgoutput_decoder dec;
	struct pgoutput_relcache rels;
	struct pgoutput_value *cols;
	struct apply_relhist *hist;
	size_t nhist;
	size_t caphist;
	bool hist_dirty;
	bool in_txn;
	bool txn_skip;
	bool txn_sent;               /* something of the open transaction went to the target */
	uint64_t txn_start;          /* stream offset of its Begin record */
	uint64_t txn_lsn;
	uint64_t skip_before;        /* source commits below this are applied already */
	struct apply_dead *dead;     /* interrupted transactions: never decoded again */
	size_t ndead;
	size_t capdead;
	size_t waiting_catalog;      /* catalog queries in flight */
	bool waiting_check;          /* a group waits for its results before COMMIT */

	/* sending */
	struct apply_ring cmds;
	struct apply_ring groups;
	struct apply_ring acks;
	uint64_t next_group;
	char *shape_key;
	char *set_codes;
	char *where_codes;
	const char **values;
	char *vbuf;
	size_t vcap;

	/* status */
	uint64_t resume_lsn;
	uint64_t applied_lsn;
	int64_t last_commit_time_us;
	uint64_t target_txns;
	struct apply_counts totals;
	char *last_error;
	int server_version;          /* the target's, once connected (pgversion.h) */
	bool triggers_fire;          /* session_replication_role could not be set: triggers run */
	bool idle_notified;

	/* a worker of parallel apply (apply_new_worker()); worker.arg NULL: not one */
	struct apply_worker worker;
	struct apply_ring segs;      /* struct apply_segpos, in stream order */
	struct apply_segment cur_seg; /* the segment the next group belongs to (seq 0: none) */
	bool waiting_gate;           /* a group waits for may_commit() */
	uint64_t gate_group;
	uint64_t pushed;             /* commands sent so far */
	uint64_t popped;             /* ... and done with */
	uint64_t txn_last_cmd;       /* the open transaction's last change: its pushed count */

	/* a hold point (verify): no source transaction committing at or after it begins */
	uint64_t hold_lsn;           /* 0: none */
	bool hold_blocked;           /* the next transaction is at or after hold_lsn */
	uint64_t max_begun_lsn;      /* highest commit LSN of a transaction begun on the target */
};

static void apply_pump(struct apply *a);
static void apply_kick(struct apply *a);
static bool apply_gate_retry(struct apply *a);

/* ---- small helpers ---- */

const char *apply_conflict_name(enum apply_conflict c)
{
	switch (c) {
	case APPLY_CONFLICT_ERROR:
		return "error";
	case APPLY_CONFLICT_SOURCE_WINS:
		return "source_wins";
	case APPLY_CONFLICT_TARGET_WINS:
		return "target_wins";
	}
	return "unknown";
}

bool apply_conflict_parse(const char *name, enum apply_conflict *out)
{
	static const enum apply_conflict all[] = {
		APPLY_CONFLICT_ERROR, APPLY_CONFLICT_SOURCE_WINS, APPLY_CONFLICT_TARGET_WINS,
	};

	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		if (strcmp(name, apply_conflict_name(all[i])) == 0) {
			*out = all[i];
			return true;
		}
	}
	return false;
}

static bool apply_ring_init(struct apply_ring *r, size_t size)
{
	memset(r, 0, sizeof(*r));
	r->size = size;
	r->cap = 64;
	r->items = calloc(r->cap, size);
	return r->items != NULL;
}

static void *apply_ring_at(const struct apply_ring *r, size_t i)
{
	return r->items + ((r->head + i) & (r->cap - 1)) * r->size;
}

/* A new zeroed slot at the tail, or NULL when out of memory. */
static void *apply_ring_push(struct apply_ring *r)
{
	void *slot;

	if (r->count == r->cap) {
		size_t cap = r->cap * 2;
		uint8_t *p = malloc(cap * r->size);
		size_t first;

		if (!p)
			return NULL;
		/* Unwrap: [head, cap) then [0, head). */
		first = r->cap - r->head;
		memcpy(p, r->items + r->head * r->size, first * r->size);
		memcpy(p + first * r->size, r->items, r->head * r->size);
		free(r->items);
		r->items = p;
		r->cap = cap;
		r->head = 0;
	}
	slot = apply_ring_at(r, r->count++);
	memset(slot, 0, r->size);
	return slot;
}

static void apply_ring_pop(struct apply_ring *r)
{
	r->head = (r->head + 1) & (r->cap - 1);
	r->count--;
}

static void *apply_ring_tail(const struct apply_ring *r)
{
	return r->count ? apply_ring_at(r, r->count - 1) : NULL;
}

/* The one place the state changes; every transition is logged with its reason. */
static void apply_set_state(struct apply *a, enum apply_state st, const char *why)
{
	if (a->state == st)
		return;
	log_msg(st == APPLY_STOPPED ? LOG_LEVEL_NOTICE : LOG_LEVEL_INFO,
		"stream \"%s\": apply %s -> %s: %s", a->stream, apply_state_names[a->state],
		apply_state_names[st], why);
	a->state = st;
}

/* ---- relations ---- */

static void apply_rel_unref(struct apply_rel *r)
{
	if (!r || --r->refs > 0)
		return;
	for (size_t i = 0; i < r->nstmts; i++) {
		free(r->stmts[i].key);
		apply_sql_stmt_free(&r->stmts[i].sql);
	}
	free(r->stmts);
	relmap_free(r->map);
	free(r->nspname);
	free(r->relname);
	free(r->display);
	free(r);
}

static struct apply_rel *apply_rel_ref(struct apply_rel *r)
{
	r->refs++;
	return r;
}

/* The relation cache's free_priv. */
static void apply_rel_release(void *priv)
{
	apply_rel_unref(priv);
}

/* The entry's priv, created on first use; NULL when out of memory. */
static struct apply_rel *apply_rel_get(struct pgoutput_rel *rel)
{
	struct apply_rel *r = rel->priv;

	if (r)
		return r;
	r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->refs = 1;
	r->oid = rel->oid;
	r->nspname = strdup(rel->nspname);
	r->relname = strdup(rel->relname);
	if (r->nspname && r->relname &&
			asprintf(&r->display, "%s.%s", rel->nspname, rel->relname) < 0)
		r->display = NULL;
	if (!r->nspname || !r->relname || !r->display) {
		apply_rel_unref(r);
		return NULL;
	}
	rel->priv = r;
	return r;
}

/* Whether a decoded Relation message says what the cache entry says. */
static bool apply_rel_same(const struct pgoutput_rel *rel, const struct pgoutput_msg *m)
{
	struct pgoutput_attr_iter it;
	struct pgoutput_attr att;
	uint16_t i = 0;

	if (strcmp(rel->nspname, m->relation.nspname) != 0 ||
			strcmp(rel->relname, m->relation.relname) != 0 ||
			rel->replident != m->relation.replident || rel->natts != m->relation.natts)
		return false;
	pgoutput_attr_iter_init(&it, m);
	while (pgoutput_attr_next(&it, &att)) {
		const struct pgoutput_rel_attr *ra = &rel->attrs[i++];

		if (strcmp(ra->name, att.name) != 0 || ra->type_oid != att.type_oid ||
				ra->typmod != att.typmod || ra->key != ((att.flags & PGOUTPUT_ATTR_KEY) != 0))
			return false;
	}
	return i == rel->natts;
}

/* ---- queue positions ---- */

/* Moves p past the ends of batches that have a successor; false when nothing is there. */
static bool apply_pos_norm(const struct apply *a, struct apply_pos *p)
{
	if (!p->b) {
		if (!a->head)
			return false;
		p->b = a->head;
		p->off = 0;
	}
	while (p->off == p->b->len) {
		if (!p->b->next)
			return false;
		p->b = p->b->next;
		p->off = 0;
	}
	return true;
}

static uint64_t apply_pos_offset(const struct apply *a, const struct apply_pos *p)
{
	if (!p->b)
		return a->head ? a->head->base : a->submitted;
	return p->b->base + p->off;
}

/* The position of stream offset off in the queue (the head's start when it is not there). */
static struct apply_pos apply_pos_at(const struct apply *a, uint64_t off)
{
	for (struct apply_batch *b = a->head; b; b = b->next)
		if (off >= b->base && off - b->base <= b->len)
			return (struct apply_pos){ b, (size_t)(off - b->base) };
	return (struct apply_pos){ NULL, 0 };
}

/*
 * Frees the head batch: used (committed, or decoded and forgotten: it
 * counts as released) or dropped. The decode position is at its end or in
 * a later batch.
 */
static void apply_free_head(struct apply *a, bool used)
{
	struct apply_batch *b = a->head;

	a->head = b->next;
	if (!a->head)
		a->tail = NULL;
	if (a->cur.b == b)
		a->cur = (struct apply_pos){ NULL, 0 };
	a->held -= b->len;
	if (used)
		a->released += b->len;
	free(b);
}

/* Whether the head batch is decoded and no command in flight points into it. */
static bool apply_head_spent(struct apply *a)
{
	apply_pos_norm(a, &a->cur);
	return a->head && !a->head->refs && (a->cur.b != a->head || a->cur.off == a->head->len);
}

/* Drops the command at the ring's front (its batch reference with it). */
static void apply_pop_cmd(struct apply *a)
{
	struct apply_cmd *c = apply_ring_at(&a->cmds, 0);

	if (c->batch) {
		c->batch->refs--;
		c->batch = NULL;
	}
	apply_rel_unref(c->rel);
	c->rel = NULL;
	apply_ring_pop(&a->cmds);
	a->popped++;
}

/* ---- teardown, failure ---- */

static void apply_clear_inflight(struct apply *a)
{
	while (a->cmds.count)
		apply_pop_cmd(a);
	a->groups.count = a->groups.head = 0;
	a->acks.count = a->acks.head = 0;
	a->waiting_catalog = 0;
	a->waiting_check = false;
	a->waiting_gate = false;
	a->segs.count = a->segs.head = 0;
	a->cur_seg = (struct apply_segment){ 0 };
	a->unflushed = 0;
	a->out_blocked = false;
}

static void apply_disconnect(struct apply *a)
{
	if (a->ev_conn) {
		event_free(a->ev_conn);
		a->ev_conn = NULL;
	}
	if (a->ev_read) {
		event_free(a->ev_read);
		a->ev_read = NULL;
	}
	if (a->ev_write) {
		event_free(a->ev_write);
		a->ev_write = NULL;
	}
	if (a->ev_timeout)
		evtimer_del(a->ev_timeout);
	if (a->ev_retry)
		evtimer_del(a->ev_retry);
	if (a->conn) {
		PQfinish(a->conn);
		a->conn = NULL;
	}
	apply_clear_inflight(a);
}

/* Drops history entries at or after pos, and those superseded before it. */
static void apply_hist_prune(struct apply *a, uint64_t pos, bool drop_after)
{
	size_t n = 0;

	for (size_t i = 0; i < a->nhist; i++) {
		struct apply_relhist *h = &a->hist[i];
		bool keep = true;

		if (h->pos >= pos) {
			keep = !drop_after;
		} else {
			/* A later entry for the same relation, also before pos, replaces it. */
			for (size_t j = i + 1; j < a->nhist; j++) {
				if (a->hist[j].oid == h->oid && a->hist[j].pos < pos) {
					keep = false;
					break;
				}
			}
		}
		if (keep)
			a->hist[n++] = *h;
		else
			free(h->msg);
	}
	a->nhist = n;
}

/* Rebuilds the relation cache as it was at the committed position. */
static void apply_rels_rewind(struct apply *a)
{
	struct pgoutput_decoder d;
	struct pgoutput_msg m;

	pgoutput_relcache_free(&a->rels);
	pgoutput_relcache_init(&a->rels, apply_rel_release);
	apply_hist_prune(a, a->done_off, true);
	if (!pgoutput_decoder_init(&d, 2))
		return;
	for (size_t i = 0; i < a->nhist; i++) {
		if (pgoutput_decode(&d, a->hist[i].msg, a->hist[i].len, &m, NULL, 0) != PGOUTPUT_OK ||
				!pgoutput_relcache_update(&a->rels, &m))
			log_error("stream \"%s\": could not restore relation %u in the relation cache",
				a->stream, a->hist[i].oid);
	}
}

/*
 * Part of what is not committed was freed (apply_forget()): nothing can be
 * decoded again from the committed position, so the whole queue goes. The
 * received position falls back to the committed one, and the sink's next
 * RESUME has the source send everything after it again.
 */
static void apply_drop_queue(struct apply *a)
{
	uint64_t dropped = a->submitted - a->done_off;

	while (a->head)
		apply_free_head(a, false);
	a->cur = (struct apply_pos){ NULL, 0 };
	a->done_off = a->whole_off = a->forgot_off = a->submitted;
	a->whole_lsn = 0;
	a->ndead = 0;
	/* what the source sends again carries the Relation messages it needs */
	pgoutput_relcache_free(&a->rels);
	pgoutput_relcache_init(&a->rels, apply_rel_release);
	for (size_t i = 0; i < a->nhist; i++)
		free(a->hist[i].msg);
	a->nhist = 0;
	a->hist_dirty = false;
	log_info("stream \"%s\": dropped the %" PRIu64 " bytes queued after the last committed "
		 "source transaction (part of a large one had been applied and freed); the source "
		 "sends them again", a->stream, dropped);
}

/*
 * Closes the connection (the open target transaction rolls back) and goes
 * back to just after the last committed group, with the relation cache as it
 * was there (or drops the queue when part of it was forgotten).
 */
static void apply_rewind(struct apply *a)
{
	apply_disconnect(a);
	a->in_txn = false;
	a->txn_skip = false;
	a->txn_sent = false;
	if (!pgoutput_decoder_init(&a->dec, 2))
		log_error("stream \"%s\": could not reset the pgoutput decoder", a->stream);
	if (a->forgot_off > a->done_off) {
		apply_drop_queue(a);
		return;
	}
	a->cur = apply_pos_at(a, a->done_off);
	apply_rels_rewind(a);
}

/*
 * Stops the stream: logs reason once, closes the connection, rewinds to the
 * last committed group and calls stopped(). Returns false for the caller to
 * pass on; the caller must not touch the connection or decoded messages after.
 */
static bool apply_fail(struct apply *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static bool apply_fail(struct apply *a, const char *fmt, ...)
{
	va_list ap;
	char *reason = NULL;

	va_start(ap, fmt);
	if (vasprintf(&reason, fmt, ap) < 0)
		reason = NULL;
	va_end(ap);
	log_error("stream \"%s\": %s", a->stream, reason ? reason : "out of memory");
	free(a->last_error);
	a->last_error = reason ? strdup(reason) : NULL;

	apply_rewind(a);
	apply_set_state(a, APPLY_STOPPED, "rewound to the last committed source transaction");
	if (a->cb.stopped)
		a->cb.stopped(a->cb_arg, reason ? reason : "out of memory");
	free(reason);
	return false;
}

/* "primary message: detail" of a failed result (into buf). */
static const char *apply_result_error(const PGresult *res, char *buf, size_t len)
{
	const char *prim = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	const char *detail = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);

	if (!prim) {
		const char *msg = PQresultErrorMessage(res);
		size_t n;

		snprintf(buf, len, "%s", msg && *msg ? msg : PQresStatus(PQresultStatus(res)));
		n = strlen(buf);
		while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
			buf[--n] = '\0';
		return buf;
	}
	if (detail)
		snprintf(buf, len, "%s (%s)", prim, detail);
	else
		snprintf(buf, len, "%s", prim);
	return buf;
}

/* ---- sending ---- */

static struct apply_cmd *apply_push_cmd(struct apply *a, enum apply_cmd_kind kind)
{
	struct apply_cmd *c = apply_ring_push(&a->cmds);

	if (!c) {
		apply_fail(a, "out of memory");
		return NULL;
	}
	*c = (struct apply_cmd){ .kind = (uint8_t)kind };
	a->pushed++;
	if (kind != CMD_SYNC)
		a->unflushed++;
	return c;
}

static bool apply_send_failed(struct apply *a, const char *what)
{
	return apply_fail(a, "could not send %s to the target: %s", what, PQerrorMessage(a->conn));
}

/* A statement with text parameters (unnamed, not prepared). */
static bool apply_send_query(struct apply *a, enum apply_cmd_kind kind, const char *sql,
		int nparams, const char *const *values)
{
	struct apply_cmd *c;

	if (!PQsendQueryParams(a->conn, sql, nparams, NULL, values, NULL, NULL, 0))
		return apply_send_failed(a, "a statement");
	c = apply_push_cmd(a, kind);
	return c != NULL;
}

static bool apply_send_sync(struct apply *a, enum apply_sync_kind kind, uint64_t group)
{
	struct apply_cmd *c;

	if (!PQpipelineSync(a->conn))
		return apply_send_failed(a, "a pipeline sync");
	c = apply_push_cmd(a, CMD_SYNC);
	if (!c)
		return false;
	c->change = (uint8_t)kind;
	c->group = group;
	a->unflushed = 0;
	return true;
}

static bool apply_flush(struct apply *a)
{
	int r;

	if (a->unflushed) {
		if (!PQsendFlushRequest(a->conn))
			return apply_send_failed(a, "a flush request");
		a->unflushed = 0;
	}
	r = PQflush(a->conn);
	if (r < 0)
		return apply_send_failed(a, "data");
	a->out_blocked = r > 0;
	if (a->out_blocked && a->ev_write)
		event_add(a->ev_write, NULL);
	return true;
}

/*
 * libpq's non-blocking sending moves what the socket did not take to the
 * front of its buffer on every call: for a command carrying a value of
 * hundreds of MB that is quadratic (terabytes of copying, minutes of CPU).
 * Such a command is queued and sent with the connection in blocking mode,
 * which sends it in one go as fast as the target reads it (libpq reads the
 * target's answers meanwhile, so neither side waits on the other). libpq
 * switches modes only with nothing queued: what is queued goes first.
 */
static bool apply_set_blocking(struct apply *a, bool blocking)
{
	int sock = PQsocket(a->conn), r;

	if (!blocking) {
		if (PQflush(a->conn) != 0 || PQsetnonblocking(a->conn, 1) != 0)
			return apply_send_failed(a, "a large command");
		a->out_blocked = false;
		return true;
	}
	while ((r = PQflush(a->conn)) == 1) {
		struct pollfd p = { .fd = sock, .events = POLLOUT | POLLIN };

		if (poll(&p, 1, 1000) < 0 && errno != EINTR)
			return apply_send_failed(a, "a large command");
		if ((p.revents & POLLIN) && !PQconsumeInput(a->conn))
			return apply_send_failed(a, "a large command");
	}
	if (r < 0 || PQsetnonblocking(a->conn, 0) != 0)
		return apply_send_failed(a, "a large command");
	return true;
}

/* ---- groups ---- */

static struct apply_group *apply_group_find(struct apply *a, uint64_t id)
{
	struct apply_group *g0;

	if (!a->groups.count)
		return NULL;
	g0 = apply_ring_at(&a->groups, 0);
	if (id < g0->id || id - g0->id >= a->groups.count)
		return NULL;
	return apply_ring_at(&a->groups, (size_t)(id - g0->id));
}

/* The open group, created when there is none; NULL on failure (already stopped). */
static struct apply_group *apply_group_open(struct apply *a)
{
	struct apply_group *g = apply_ring_tail(&a->groups);

	if (g && g->state == GROUP_OPEN)
		return g;
	g = apply_ring_push(&a->groups);
	if (!g) {
		apply_fail(a, "out of memory");
		return NULL;
	}
	*g = (struct apply_group){ .id = ++a->next_group, .state = GROUP_OPEN };
	if (a->worker.arg) {
		g->seg = a->cur_seg.seq;
		g->prev_origin = a->cur_seg.prev_origin;
		g->prev_end_lsn = a->cur_seg.prev_end_lsn;
	}
	return g;
}

/* ---- a worker's segments (apply.h: parallel apply) ---- */

/* The segment's number as its advisory lock's second key. */
static void apply_seg_key(uint64_t seg, char *buf, size_t len)
{
	snprintf(buf, len, "%" PRId32, (int32_t)(uint32_t)seg);
}

/* A segment's first statement after BEGIN: its lock, held until it commits. */
static bool apply_worker_lock(struct apply *a, struct apply_group *g)
{
	char cls[16], key[16];
	const char *params[2] = { cls, key };
	struct apply_cmd *c;

	snprintf(cls, sizeof(cls), "%" PRId32, a->worker.lock_class);
	apply_seg_key(g->seg, key, sizeof(key));
	if (!PQsendQueryPrepared(a->conn, "strait_seg_lock", 2, params, NULL, NULL, 0))
		return apply_send_failed(a, "a segment's lock");
	if (!(c = apply_push_cmd(a, CMD_LOCK)))
		return false;
	c->group = g->id;
	return true;
}

/*
 * Before a segment's commit: wait for the previous segment's lock (it is
 * held until that one ends) and check that its origin moved past it, so a
 * previous segment that rolled back makes this one fail instead of
 * committing over a hole. The ELSE arm raises the error; it reads a
 * setting so that the planner cannot evaluate it ahead.
 */
static bool apply_worker_chain(struct apply *a, struct apply_group *g)
{
	char cls[16], key[16], lsn[LSN_BUF];
	const char *params[4] = { cls, key, g->prev_origin, lsn };
	struct apply_cmd *c;

	if (!g->prev_origin)
		return true;
	snprintf(cls, sizeof(cls), "%" PRId32, a->worker.lock_class);
	apply_seg_key(g->seg - 1, key, sizeof(key));
	lsn_format(lsn, g->prev_end_lsn);
	if (!PQsendQueryPrepared(a->conn, "strait_seg_chain", 4, params, NULL, NULL, 0))
		return apply_send_failed(a, "a segment's wait for the previous one");
	if (!(c = apply_push_cmd(a, CMD_CHAIN)))
		return false;
	c->group = g->id;
	return true;
}

/* The statements a worker prepares once per session. */
static bool apply_worker_prepare(struct apply *a)
{
	static const struct { const char *name, *sql; int n; } stmts[] = {
		{ "strait_seg_lock", "SELECT pg_catalog.pg_advisory_xact_lock($1::pg_catalog.int4, "
		  "$2::pg_catalog.int4)", 2 },
		{ "strait_seg_chain", "SELECT CASE WHEN pg_catalog.pg_replication_origin_progress($3, false) "
		  ">= $4::pg_catalog.pg_lsn THEN true ELSE ('the previous segment (origin ' || $3 || ') "
		  "did not commit' || pg_catalog.current_setting('application_name'))::pg_catalog.bool END "
		  "FROM (SELECT pg_catalog.pg_advisory_xact_lock_shared($1::pg_catalog.int4, "
		  "$2::pg_catalog.int4) OFFSET 0) l", 4 },
		{ "strait_seg_origin", "SELECT pg_catalog.pg_replication_origin_xact_setup($1, $2), "
		  "pg_catalog.txid_current(), pg_catalog.set_config('synchronous_commit', $3, true)", 3 },
	};

	for (size_t i = 0; i < sizeof(stmts) / sizeof(stmts[0]); i++) {
		if (!PQsendPrepare(a->conn, stmts[i].name, stmts[i].sql, stmts[i].n, NULL))
			return apply_send_failed(a, "a statement to prepare");
		if (!apply_push_cmd(a, CMD_SETUP))
			return false;
	}
	return true;
}

static bool apply_group_begin(struct apply *a, struct apply_group *g)
{
	struct apply_cmd *c;

	if (g->begun)
		return true;
	if (!PQsendQueryParams(a->conn, "BEGIN", 0, NULL, NULL, NULL, NULL, 0))
		return apply_send_failed(a, "BEGIN");
	c = apply_push_cmd(a, CMD_BEGIN);
	if (!c)
		return false;
	c->group = g->id;
	g->begun = true;
	return !a->worker.arg || apply_worker_lock(a, g);
}

static bool apply_send_commit(struct apply *a, struct apply_group *g)
{
	char lsn[LSN_BUF], ts[APPLY_SQL_TIME_LEN];
	const char *params[3] = { lsn, ts, NULL };
	struct apply_cmd *c;
	bool sync = false;
	int sent;

	if (a->worker.arg) {
		if (!a->worker.may_commit(a->worker.arg, g->seg, &sync)) {
			a->waiting_gate = true;
			a->gate_group = g->id;
			g->state = GROUP_CHECKING;   /* closed: apply_gate_open() commits it */
			return true;
		}
		a->waiting_gate = false;
		if (!apply_worker_chain(a, g))
			return false;
		params[2] = sync ? "local" : "off";
	}
	lsn_format(lsn, g->last_end_lsn);
	apply_sql_format_time(ts, g->last_commit_time);
	if (a->worker.arg)
		sent = PQsendQueryPrepared(a->conn, "strait_seg_origin", 3, params, NULL, NULL, 0);
	else
		sent = PQsendQueryParams(a->conn,
			"SELECT pg_catalog.pg_replication_origin_xact_setup($1, $2), "
			"pg_catalog.txid_current()", 2, NULL, params, NULL, NULL, 0);
	if (!sent)
		return apply_send_failed(a, "the origin position");
	if (!(c = apply_push_cmd(a, CMD_ORIGIN)))
		return false;
	c->group = g->id;
	if (!PQsendQueryParams(a->conn, "COMMIT", 0, NULL, NULL, NULL, NULL, 0))
		return apply_send_failed(a, "COMMIT");
	if (!(c = apply_push_cmd(a, CMD_COMMIT)))
		return false;
	c->group = g->id;
	g->state = GROUP_COMMITTING;
	return apply_send_sync(a, SYNC_PLAIN, g->id);
}

/* The owner learns that memory was given back (the source's window). */
static void apply_notify_released(struct apply *a, uint64_t before)
{
	if (a->released != before && a->cb.released)
		a->cb.released(a->cb_arg);
}

/*
 * Memory stays bounded whatever the size of a source transaction: once the
 * queue holds more than APPLY_HOLD_BYTES, the batches already decoded and
 * sent (every result in) are freed before their transaction commits, down to
 * half of it. They cannot be decoded again, so a rewind after that drops the
 * queue and the source sends from the committed position again (it keeps
 * everything uncommitted): a rare failure costs a resend, and a transaction
 * of any size never needs more than the window in memory.
 */
static void apply_forget(struct apply *a)
{
	uint64_t before = a->released;

	if (a->held <= APPLY_HOLD_BYTES)
		return;
	while (a->held > APPLY_HOLD_BYTES / 2 && apply_head_spent(a)) {
		if (a->head->base + a->head->len > a->done_off)
			a->forgot_off = a->head->base + a->head->len;
		apply_free_head(a, true);
	}
	apply_notify_released(a, before);
}

static void apply_check_idle(struct apply *a)
{
	struct apply_pos p = a->cur;

	if (a->state != APPLY_RUNNING || a->idle_notified || a->groups.count || a->in_txn)
		return;
	if (apply_pos_norm(a, &p))
		return;              /* more to decode */
	a->idle_notified = true;
	if (a->cb.idle)
		a->cb.idle(a->cb_arg);
}

/* Frees batches wholly before the committed position. */
static void apply_release(struct apply *a)
{
	uint64_t before = a->released;

	while (a->head && a->head->base + a->head->len <= a->done_off && apply_head_spent(a))
		apply_free_head(a, true);
	apply_notify_released(a, before);
}

/* Retires committed groups in order: reports their commits and frees their batches. */
static void apply_retire(struct apply *a)
{
	bool any = false;

	while (a->groups.count) {
		struct apply_group *g = apply_ring_at(&a->groups, 0);
		struct apply_group done;

		if (g->state != GROUP_DONE)
			break;
		done = *g;
		apply_ring_pop(&a->groups);
		a->done_off = done.end_off;
		a->totals.txns += done.counts.txns;
		a->totals.skipped += done.counts.skipped;
		a->totals.inserted += done.counts.inserted;
		a->totals.updated += done.counts.updated;
		a->totals.deleted += done.counts.deleted;
		a->totals.truncated += done.counts.truncated;
		for (int k = 0; k < CONFLICT_KINDS; k++)
			a->totals.conflicts[k] += done.counts.conflicts[k];
		if (done.nreal) {
			a->target_txns++;
			(void)fault_hit("sink.target_committed");
		}
		any = true;
		while (a->acks.count) {
			struct apply_ack ack = *(struct apply_ack *)apply_ring_at(&a->acks, 0);

			if (ack.group != done.id)
				break;
			apply_ring_pop(&a->acks);
			a->applied_lsn = ack.end_lsn;
			a->last_commit_time_us = pgoutput_time_to_unix_us(ack.commit_time);
			if (a->cb.committed)
				a->cb.committed(a->cb_arg, ack.end_lsn, a->last_commit_time_us);
		}
		if (a->worker.arg && done.nreal)
			a->worker.seg_committed(a->worker.arg, done.seg);
	}
	if (!any)
		return;
	apply_release(a);
	for (size_t i = 0; i < a->ndead; ) {
		if (a->dead[i].end <= a->done_off)
			a->dead[i] = a->dead[--a->ndead];
		else
			i++;
	}
	if (a->hist_dirty) {
		/* Entries after the committed position may become prunable later. */
		apply_hist_prune(a, a->done_off, false);
		a->hist_dirty = false;
		for (size_t i = 0; i < a->nhist; i++)
			a->hist_dirty |= a->hist[i].pos >= a->done_off;
	}
}

/* Closes the open group: commit it (or check it first); a group of skipped transactions is done. */
static bool apply_close_group(struct apply *a)
{
	struct apply_group *g = apply_ring_tail(&a->groups);

	if (!g || g->state != GROUP_OPEN || g->ntxns == 0)
		return true;
	if (g->nreal == 0) {
		g->state = GROUP_DONE;
		apply_retire(a);
		return true;
	}
	if (g->needs_check) {
		g->state = GROUP_CHECKING;
		a->waiting_check = true;
		return apply_send_sync(a, SYNC_CHECK, g->id);
	}
	return apply_send_commit(a, g);
}

/* ---- statements ---- */

static int apply_kind_index(char kind)
{
	return kind == APPLY_SQL_INSERT ? 0 : kind == APPLY_SQL_UPDATE ? 1 : 2;
}

/*
 * The prepared statement for shape s (prepared now if new). *uncached is set
 * when the relation has too many shapes: the caller sends that statement
 * unnamed and frees it. NULL on failure (already stopped).
 */
static struct apply_stmt *apply_stmt_get(struct apply *a, struct apply_rel *r,
		const struct apply_sql_shape *s, struct apply_stmt *tmp, bool *uncached)
{
	size_t klen = APPLY_SQL_KEY_LEN(r->map->natts);
	int k = apply_kind_index(s->kind);
	struct apply_stmt *st = r->last[k];
	const char *why = NULL;
	struct apply_cmd *c;

	*uncached = false;
	apply_sql_shape_key(s, r->map->natts, a->shape_key);
	if (st && st->keylen == klen && memcmp(st->key, a->shape_key, klen) == 0)
		return st;
	for (size_t i = 0; i < r->nstmts; i++) {
		st = &r->stmts[i];
		if (st->keylen == klen && memcmp(st->key, a->shape_key, klen) == 0) {
			r->last[k] = st;
			return st;
		}
	}

	if (r->nstmts >= APPLY_MAX_SHAPES) {
		memset(tmp, 0, sizeof(*tmp));
		if (!apply_sql_build(r->map, s, &tmp->sql, &why))
			goto build_failed;
		*uncached = true;
		return tmp;
	}
	if (r->nstmts == r->capstmts) {
		size_t cap = r->capstmts ? 2 * r->capstmts : 4;
		struct apply_stmt *p = realloc(r->stmts, cap * sizeof(*p));

		if (!p) {
			apply_fail(a, "out of memory");
			return NULL;
		}
		r->stmts = p;
		r->capstmts = cap;
		/* the cached pointers moved with the array */
		for (int i = 0; i < 3; i++)
			r->last[i] = NULL;
	}
	st = &r->stmts[r->nstmts];
	memset(st, 0, sizeof(*st));
	if (!apply_sql_build(r->map, s, &st->sql, &why))
		goto build_failed;
	st->key = malloc(klen);
	if (!st->key) {
		apply_sql_stmt_free(&st->sql);
		apply_fail(a, "out of memory");
		return NULL;
	}
	memcpy(st->key, a->shape_key, klen);
	st->keylen = klen;
	snprintf(st->name, sizeof(st->name), "strait_%u", ++a->stmt_seq);
	r->nstmts++;
	r->last[k] = st;
	log_debug("stream \"%s\": preparing %s for \"%s\": %s", a->stream, st->name,
		r->display, st->sql.sql);
	if (!PQsendPrepare(a->conn, st->name, st->sql.sql, st->sql.nparams,
			(const Oid *)st->sql.types)) {
		apply_send_failed(a, "a statement to prepare");
		return NULL;
	}
	if (!(c = apply_push_cmd(a, CMD_PREPARE)))
		return NULL;
	c->rel = apply_rel_ref(r);
	return st;

build_failed:
	if (why)
		apply_fail(a, "cannot apply %s to target table \"%s\": %s",
			s->kind == APPLY_SQL_INSERT ? "INSERT" : s->kind == APPLY_SQL_UPDATE ? "UPDATE" : "DELETE",
			r->display, why);
	else
		apply_fail(a, "out of memory");
	return NULL;
}

/* Copies the parameters' values, NUL-terminated, into vbuf; points values at them. */
static bool apply_fill_params(struct apply *a, const struct apply_sql_stmt *st,
		const struct pgoutput_tuple *newtup, const struct pgoutput_tuple *oldtup)
{
	size_t need = 0, off = 0;

	for (int i = 0; i < st->nparams; i++) {
		uint16_t p = st->params[i];
		const struct pgoutput_tuple *t = (p & APPLY_SQL_PARAM_OLD) ? oldtup : newtup;
		const struct pgoutput_value *v = &t->cols[p & ~APPLY_SQL_PARAM_OLD];

		if (v->kind == PGOUTPUT_VALUE_TEXT)
			need += (size_t)v->len + 1;
	}
	if (need > a->vcap) {
		size_t cap = a->vcap ? a->vcap : 4096;
		char *p;

		while (cap < need)
			cap *= 2;
		p = realloc(a->vbuf, cap);
		if (!p)
			return apply_fail(a, "out of memory");
		a->vbuf = p;
		a->vcap = cap;
	}
	for (int i = 0; i < st->nparams; i++) {
		uint16_t p = st->params[i];
		const struct pgoutput_tuple *t = (p & APPLY_SQL_PARAM_OLD) ? oldtup : newtup;
		const struct pgoutput_value *v = &t->cols[p & ~APPLY_SQL_PARAM_OLD];

		if (v->kind != PGOUTPUT_VALUE_TEXT) {
			a->values[i] = NULL;         /* NULL; the shape rules out the others */
			continue;
		}
		memcpy(a->vbuf + off, v->data, v->len);
		a->vbuf[off + v->len] = '\0';
		a->values[i] = a->vbuf + off;
		off += (size_t)v->len + 1;
	}
	return true;
}

/* ---- decoding and applying ---- */

enum apply_step {
	STEP_DONE,                   /* the record is consumed */
	STEP_WAIT,                   /* not consumed: decode it again later */
	STEP_FAIL,                   /* stopped or restarted: touch nothing */
	STEP_DONE_AGAIN,             /* apply_interrupted(): go on with the new Begin */
};

static enum apply_step apply_relation(struct apply *a, const struct pgoutput_msg *m,
		const uint8_t *rec, size_t len, uint64_t pos)
{
	struct pgoutput_rel *old = pgoutput_relcache_get(&a->rels, m->relation.oid);
	struct apply_relhist *h;

	if (old && apply_rel_same(old, m))
		return STEP_DONE;
	if (m->relation.natts > APPLY_MAX_COLS)
		return apply_fail(a, "Relation message for \"%s.%s\" announces %u columns, more "
			"than PostgreSQL allows (%d)", m->relation.nspname, m->relation.relname,
			m->relation.natts, APPLY_MAX_COLS), STEP_FAIL;
	if (a->nhist == a->caphist) {
		size_t cap = a->caphist ? 2 * a->caphist : 16;
		struct apply_relhist *p = realloc(a->hist, cap * sizeof(*p));

		if (!p)
			return apply_fail(a, "out of memory"), STEP_FAIL;
		a->hist = p;
		a->caphist = cap;
	}
	h = &a->hist[a->nhist];
	h->msg = malloc(len ? len : 1);
	if (!h->msg)
		return apply_fail(a, "out of memory"), STEP_FAIL;
	memcpy(h->msg, rec, len);
	h->len = len;
	h->pos = pos;
	h->oid = m->relation.oid;
	a->nhist++;
	a->hist_dirty = true;
	if (!pgoutput_relcache_update(&a->rels, m))
		return apply_fail(a, "out of memory"), STEP_FAIL;
	log_debug("stream \"%s\": relation %u is \"%s.%s\" (%u columns, replica identity '%c')",
		a->stream, m->relation.oid, m->relation.nspname, m->relation.relname,
		m->relation.natts, m->relation.replident);
	return STEP_DONE;
}

/* Sends the catalog query for r unless it is in flight. */
static bool apply_send_catalog(struct apply *a, struct apply_rel *r)
{
	const char *params[2] = { r->nspname, r->relname };
	struct apply_cmd *c;

	if (r->catalog_sent)
		return true;
	if (!PQsendQueryParams(a->conn, relmap_catalog_sql, 2, NULL, params, NULL, NULL, 0))
		return apply_send_failed(a, "a catalog query");
	if (!(c = apply_push_cmd(a, CMD_CATALOG)))
		return false;
	c->rel = apply_rel_ref(r);
	r->catalog_sent = true;
	a->waiting_catalog++;
	return true;
}

/* The mapped relation for a change's OID; STEP_WAIT while its catalog query runs. */
static enum apply_step apply_lookup(struct apply *a, uint32_t relid, const char *what,
		struct pgoutput_rel **relp, struct apply_rel **rp)
{
	struct pgoutput_rel *rel = pgoutput_relcache_get(&a->rels, relid);
	struct apply_rel *r;
	char lsn[LSN_BUF];

	if (!rel)
		return apply_fail(a, "%s for unknown relation OID %u (no Relation message before it) "
			"in source transaction %s", what, relid, lsn_format(lsn, a->txn_lsn)), STEP_FAIL;
	r = apply_rel_get(rel);
	if (!r)
		return apply_fail(a, "out of memory"), STEP_FAIL;
	*relp = rel;
	*rp = r;
	if (r->map)
		return STEP_DONE;
	if (!apply_send_catalog(a, r))
		return STEP_FAIL;
	return STEP_WAIT;
}

static bool apply_check_ncols(struct apply *a, const struct pgoutput_rel *rel,
		const struct apply_rel *r, const struct pgoutput_tuple *t, const char *what)
{
	char lsn[LSN_BUF];

	if (t->ncols == rel->natts)
		return true;
	return apply_fail(a, "%s for \"%s\" has %u columns but its Relation message announced %u "
		"(source transaction %s)", what, r->display, t->ncols, rel->natts,
		lsn_format(lsn, a->txn_lsn));
}

/* The WHERE codes from tuple t: key columns only, or all columns for FULL. */
static bool apply_where_codes(struct apply *a, const struct apply_rel *r,
		const struct pgoutput_tuple *t, bool full, const char *what)
{
	const struct relmap *m = r->map;
	char lsn[LSN_BUF];

	for (uint16_t i = 0; i < m->natts; i++) {
		char kind = t->cols[i].kind;

		a->where_codes[i] = APPLY_SQL_COL_SKIP;
		if (!full && !m->atts[i].src_key)
			continue;
		if (kind == PGOUTPUT_VALUE_NULL) {
			a->where_codes[i] = APPLY_SQL_COL_NULL;
		} else if (kind == PGOUTPUT_VALUE_TEXT) {
			a->where_codes[i] = APPLY_SQL_COL_VALUE;
		} else if (kind == PGOUTPUT_VALUE_UNCHANGED && full) {
			continue;                /* not comparable: match on the others */
		} else {
			return apply_fail(a, "%s for \"%s\": identity column \"%s\" has %s value "
				"(source transaction %s)", what, r->display, m->atts[i].name,
				kind == PGOUTPUT_VALUE_BINARY ? "a binary" : "an unchanged TOAST",
				lsn_format(lsn, a->txn_lsn));
		}
	}
	return true;
}

/* Rejects binary values (the stream must use the text format). */
static bool apply_check_text(struct apply *a, const struct apply_rel *r,
		const struct pgoutput_tuple *t, const char *what)
{
	char lsn[LSN_BUF];

	for (uint16_t i = 0; i < t->ncols; i++) {
		if (t->cols[i].kind == PGOUTPUT_VALUE_BINARY)
			return apply_fail(a, "%s for \"%s\" carries a binary value in column \"%s\"; "
				"the stream must use the text format (source transaction %s)", what,
				r->display, r->map->atts[i].name, lsn_format(lsn, a->txn_lsn));
	}
	return true;
}

/* What one INSERT, UPDATE or DELETE carries, as apply_change needs it. */
struct apply_change_msg {
	const char *what;
	uint32_t relid;
	const struct pgoutput_tuple *newtup;
	const struct pgoutput_tuple *oldtup;
	char old_kind;
};

static void apply_change_unpack(const struct pgoutput_msg *m, struct apply_change_msg *cm,
		struct apply_sql_shape *shape)
{
	*cm = (struct apply_change_msg){ .old_kind = PGOUTPUT_OLD_NONE };
	switch (m->type) {
	case PGOUTPUT_INSERT:
		cm->what = "INSERT";
		cm->relid = m->insert.relid;
		cm->newtup = &m->insert.newtup;
		shape->kind = APPLY_SQL_INSERT;
		break;
	case PGOUTPUT_UPDATE:
		cm->what = "UPDATE";
		cm->relid = m->update.relid;
		cm->newtup = &m->update.newtup;
		cm->old_kind = m->update.old_kind;
		if (cm->old_kind != PGOUTPUT_OLD_NONE)
			cm->oldtup = &m->update.oldtup;
		shape->kind = APPLY_SQL_UPDATE;
		break;
	default:
		cm->what = "DELETE";
		cm->relid = m->delete.relid;
		cm->old_kind = m->delete.old_kind;
		cm->oldtup = &m->delete.oldtup;
		shape->kind = APPLY_SQL_DELETE;
		break;
	}
}

/* The new row's column codes: an unchanged TOAST value keeps the target's in an UPDATE. */
static bool apply_shape_set(struct apply *a, const struct pgoutput_rel *rel,
		const struct apply_rel *r, const struct pgoutput_tuple *newtup,
		struct apply_sql_shape *shape)
{
	char lsn[LSN_BUF];

	for (uint16_t i = 0; i < rel->natts; i++) {
		if (r->map->atts[i].generated) {
			a->set_codes[i] = APPLY_SQL_COL_SKIP;   /* the target computes it */
		} else if (newtup->cols[i].kind != PGOUTPUT_VALUE_UNCHANGED) {
			a->set_codes[i] = APPLY_SQL_COL_VALUE;
		} else if (shape->kind == APPLY_SQL_UPDATE) {
			a->set_codes[i] = APPLY_SQL_COL_SKIP;   /* keep the target's value */
		} else {
			return apply_fail(a, "INSERT for \"%s\" has an unchanged TOAST value in "
				"column \"%s\" (source transaction %s)", r->display,
				r->map->atts[i].name, lsn_format(lsn, a->txn_lsn)), false;
		}
	}
	shape->set = a->set_codes;
	return true;
}

/* The row identity of an UPDATE or DELETE: the old row (full or key), else the new row's key. */
static bool apply_shape_where(struct apply *a, const struct pgoutput_rel *rel,
		const struct apply_rel *r, const struct apply_change_msg *cm,
		struct apply_sql_shape *shape)
{
	char lsn[LSN_BUF];
	bool ok;

	if (cm->old_kind == PGOUTPUT_OLD_FULL) {
		shape->ident = APPLY_SQL_ID_FULL;
		ok = apply_where_codes(a, r, cm->oldtup, true, cm->what);
	} else if (cm->old_kind == PGOUTPUT_OLD_KEY) {
		shape->ident = APPLY_SQL_ID_KEY;
		ok = apply_where_codes(a, r, cm->oldtup, false, cm->what);
	} else if (rel->replident == PGOUTPUT_REPLIDENT_FULL) {
		return apply_fail(a, "%s for \"%s\" (REPLICA IDENTITY FULL) lacks the old row "
			"(source transaction %s)", cm->what, r->display,
			lsn_format(lsn, a->txn_lsn)), false;
	} else {
		shape->ident = APPLY_SQL_ID_NEW;
		ok = apply_where_codes(a, r, cm->newtup, false, cm->what);
	}
	if (!ok)
		return false;
	shape->where = a->where_codes;
	return true;
}

/* Books command c, the change just sent through st in group g, from offset off of batch b. */
static void apply_change_booked(struct apply *a, struct apply_cmd *c, struct apply_rel *r,
		const struct apply_sql_shape *shape, const struct apply_stmt *st,
		struct apply_group *g, struct apply_batch *b, size_t off)
{
	c->change = (uint8_t)shape->kind;
	c->outcome = (uint8_t)st->sql.outcome;
	c->rel = apply_rel_ref(r);
	c->group = g->id;
	c->txn_lsn = a->txn_lsn;
	c->batch = b;
	b->refs++;
	c->off = off;
	a->txn_sent = true;
	a->txn_last_cmd = a->pushed;
	g->nchanges++;
	if (a->policy == APPLY_CONFLICT_ERROR && st->sql.outcome == APPLY_SQL_ZERO_IS_CONFLICT)
		g->needs_check = true;
	if (shape->kind == APPLY_SQL_INSERT)
		g->counts.inserted++;
	else if (shape->kind == APPLY_SQL_UPDATE)
		g->counts.updated++;
	else
		g->counts.deleted++;
}

/* Sends the change of shape (prepared, or as is when not cached) in the open group. */
static bool apply_change_send(struct apply *a, struct apply_rel *r,
		const struct apply_sql_shape *shape, const struct apply_change_msg *cm,
		struct apply_batch *b, size_t off)
{
	struct apply_stmt tmp, *st;
	struct apply_group *g;
	struct apply_cmd *c;
	bool uncached, large;
	int sent;

	g = apply_group_open(a);
	if (!g || !apply_group_begin(a, g))
		return false;
	st = apply_stmt_get(a, r, shape, &tmp, &uncached);
	if (!st)
		return false;
	large = be32_load(b->data + off) > APPLY_LARGE_COMMAND;
	if (!apply_fill_params(a, &st->sql, cm->newtup, cm->oldtup) ||
	    (large && !apply_set_blocking(a, true))) {
		if (uncached)
			apply_sql_stmt_free(&tmp.sql);
		return false;
	}
	if (uncached)
		sent = PQsendQueryParams(a->conn, st->sql.sql, st->sql.nparams,
			(const Oid *)st->sql.types, a->values, NULL, NULL, 0);
	else
		sent = PQsendQueryPrepared(a->conn, st->name, st->sql.nparams, a->values,
			NULL, NULL, 0);
	c = NULL;
	if (sent)
		c = apply_push_cmd(a, CMD_CHANGE);
	else
		apply_send_failed(a, cm->what);
	if (c)
		apply_change_booked(a, c, r, shape, st, g, b, off);
	if (c && !uncached) {
		c->params = st->sql.params;      /* kept while c holds its relation */
		c->nparams = st->sql.nparams;
	}
	if (uncached)
		apply_sql_stmt_free(&tmp.sql);
	if (large && a->conn && !apply_set_blocking(a, false))
		return false;
	return c != NULL;
}

static enum apply_step apply_change(struct apply *a, const struct pgoutput_msg *m,
		struct apply_batch *b, size_t off)
{
	struct apply_change_msg cm;
	struct apply_sql_shape shape = { .policy = a->policy };
	struct pgoutput_rel *rel = NULL;
	struct apply_rel *r = NULL;
	const struct pgoutput_tuple *newtup, *oldtup;
	const char *what;
	enum apply_step step;

	apply_change_unpack(m, &cm, &shape);
	newtup = cm.newtup;
	oldtup = cm.oldtup;
	what = cm.what;
	if (!a->in_txn)
		return apply_fail(a, "%s outside a transaction", what), STEP_FAIL;
	if (a->txn_skip)
		return STEP_DONE;
	step = apply_lookup(a, cm.relid, what, &rel, &r);
	if (step != STEP_DONE)
		return step;
	if ((newtup && !apply_check_ncols(a, rel, r, newtup, what)) ||
			(oldtup && !apply_check_ncols(a, rel, r, oldtup, what)) ||
			(newtup && !apply_check_text(a, r, newtup, what)) ||
			(oldtup && !apply_check_text(a, r, oldtup, what)))
		return STEP_FAIL;
	if (newtup && !apply_shape_set(a, rel, r, newtup, &shape))
		return STEP_FAIL;
	if (shape.kind != APPLY_SQL_INSERT && !apply_shape_where(a, rel, r, &cm, &shape))
		return STEP_FAIL;
	return apply_change_send(a, r, &shape, &cm, b, off) ? STEP_DONE : STEP_FAIL;
}

static enum apply_step apply_truncate(struct apply *a, const struct pgoutput_msg *m)
{
	const struct relmap **maps = NULL;
	struct apply_sql_buf sql;
	struct apply_group *g;
	enum apply_step step = STEP_DONE, s;
	size_t n = 0;

	if (!a->in_txn)
		return apply_fail(a, "TRUNCATE outside a transaction"), STEP_FAIL;
	if (a->txn_skip || m->truncate.nrelids == 0)
		return STEP_DONE;
	maps = calloc(m->truncate.nrelids, sizeof(*maps));
	if (!maps)
		return apply_fail(a, "out of memory"), STEP_FAIL;
	for (uint32_t i = 0; i < m->truncate.nrelids; i++) {
		struct pgoutput_rel *rel;
		struct apply_rel *r;
		bool dup = false;

		s = apply_lookup(a, pgoutput_truncate_relid(m, i), "TRUNCATE", &rel, &r);
		if (s == STEP_FAIL) {
			free(maps);
			return STEP_FAIL;
		}
		if (s == STEP_WAIT) {
			step = STEP_WAIT;    /* ask for all of them, then wait */
			continue;
		}
		for (size_t j = 0; j < n; j++)
			dup |= maps[j] == r->map;
		if (!dup)
			maps[n++] = r->map;
	}
	if (step == STEP_WAIT) {
		free(maps);
		return STEP_WAIT;
	}
	g = apply_group_open(a);
	if (!g || !apply_group_begin(a, g)) {
		free(maps);
		return STEP_FAIL;
	}
	apply_sql_buf_init(&sql);
	apply_sql_truncate(&sql, maps, n, m->truncate.options);
	free(maps);
	if (!apply_sql_buf_cstr(&sql)) {
		apply_sql_buf_free(&sql);
		return apply_fail(a, "out of memory"), STEP_FAIL;
	}
	log_debug("stream \"%s\": %s", a->stream, sql.data);
	if (!apply_send_query(a, CMD_TRUNCATE, sql.data, 0, NULL)) {
		apply_sql_buf_free(&sql);
		return STEP_FAIL;
	}
	apply_sql_buf_free(&sql);
	((struct apply_cmd *)apply_ring_tail(&a->cmds))->txn_lsn = a->txn_lsn;
	((struct apply_cmd *)apply_ring_tail(&a->cmds))->group = g->id;
	a->txn_sent = true;
	a->txn_last_cmd = a->pushed;
	g->nchanges++;
	g->counts.truncated++;
	return STEP_DONE;
}

/*
 * A Begin inside a transaction: the source was interrupted in the middle of a
 * transaction that spanned batches and sends it again from its Begin. The
 * partial copy is marked dead. When none of it reached the target it is
 * simply dropped; otherwise the open target transaction holds part of it, so
 * the engine rolls back (closes the connection), rewinds to the last
 * committed group and reconnects at once — the origin keeps it exactly once.
 */
static enum apply_step apply_interrupted(struct apply *a, const struct pgoutput_msg *m,
		uint64_t pos)
{
	char lsn[LSN_BUF], lsn2[LSN_BUF];
	struct apply_dead *d;

	if (a->ndead == a->capdead) {
		size_t cap = a->capdead ? 2 * a->capdead : 4;
		struct apply_dead *p = realloc(a->dead, cap * sizeof(*p));

		if (!p)
			return apply_fail(a, "out of memory"), STEP_FAIL;
		a->dead = p;
		a->capdead = cap;
	}
	d = &a->dead[a->ndead++];
	d->start = a->txn_start;
	d->end = pos;
	lsn_format(lsn, a->txn_lsn);
	lsn_format(lsn2, m->begin.final_lsn);
	if (!a->txn_sent) {
		log_notice("stream \"%s\": source transaction %s was interrupted by the BEGIN of %s; "
			"dropping its partial copy", a->stream, lsn, lsn2);
		a->in_txn = false;
		a->txn_skip = false;
		return STEP_DONE_AGAIN;
	}
	log_notice("stream \"%s\": source transaction %s was interrupted by the BEGIN of %s after "
		"part of it was applied; rolling back the target transaction and applying again "
		"from source LSN %s", a->stream, lsn, lsn2,
		lsn_format((char[LSN_BUF]){ 0 }, a->applied_lsn));
	apply_rewind(a);
	apply_set_state(a, APPLY_CONNECTING, "rolled back an interrupted source transaction");
	apply_kick(a);
	return STEP_FAIL;
}

/*
 * A worker at a Begin: a new segment closes the open group first; then the
 * coordinator says whether the transaction may begin (what it depends on
 * holds its rows already).
 */
static enum apply_step apply_worker_begin(struct apply *a, const struct pgoutput_msg *m,
		uint64_t pos)
{
	struct apply_segpos *s = a->segs.count ? apply_ring_at(&a->segs, 0) : NULL;

	if (s && s->start == pos) {
		struct apply_group *g = apply_ring_tail(&a->groups);

		if (g && g->state == GROUP_OPEN && g->ntxns && !apply_close_group(a))
			return STEP_FAIL;
		if (a->waiting_check || a->waiting_gate)
			return STEP_WAIT;
		a->cur_seg = s->seg;
		apply_ring_pop(&a->segs);
	}
	if (!a->cur_seg.seq)
		return apply_fail(a, "source transaction %s is in no segment",
			lsn_format((char[LSN_BUF]){ 0 }, m->begin.final_lsn)), STEP_FAIL;
	if (m->begin.final_lsn >= a->skip_before &&
	    !a->worker.may_begin(a->worker.arg, m->begin.final_lsn))
		return STEP_WAIT;
	return STEP_DONE;
}

/* A worker decoded a transaction's Commit: executed() once its last change has its result. */
static void apply_worker_txn_sent(struct apply *a, uint64_t commit_lsn)
{
	if (a->txn_last_cmd > a->popped) {
		struct apply_cmd *c = apply_ring_at(&a->cmds, (size_t)(a->txn_last_cmd - 1 - a->popped));

		if (!c->got) {
			c->ends_txn = true;
			return;
		}
	}
	a->worker.executed(a->worker.arg, commit_lsn);
}

static enum apply_step apply_begin(struct apply *a, const struct pgoutput_msg *m, uint64_t pos)
{
	struct apply_group *g = apply_ring_tail(&a->groups);
	char lsn[LSN_BUF];

	if (a->in_txn) {
		enum apply_step st = apply_interrupted(a, m, pos);

		if (st != STEP_DONE_AGAIN)
			return st;
	}
	if (a->worker.arg) {
		enum apply_step st = apply_worker_begin(a, m, pos);

		if (st != STEP_DONE)
			return st;
	}
	/* At a hold point the open group commits and nothing after it begins. */
	if (a->hold_lsn && m->begin.final_lsn >= a->hold_lsn && m->begin.final_lsn >= a->skip_before) {
		if (!apply_close_group(a))
			return STEP_FAIL;
		a->hold_blocked = true;
		return STEP_WAIT;
	}
	/* A full group is closed before the next transaction starts. */
	if (g && g->state == GROUP_OPEN && g->ntxns &&
			(g->nchanges >= a->group_max_changes || g->ntxns >= a->group_max_txns)) {
		if (!apply_close_group(a))
			return STEP_FAIL;
		if (a->waiting_check)
			return STEP_WAIT;
	}
	if (!(m->begin.final_lsn < a->skip_before))
		(void)fault_hit("sink.before_apply");
	a->in_txn = true;
	a->txn_sent = false;
	a->txn_last_cmd = 0;
	a->txn_start = pos;
	a->txn_lsn = m->begin.final_lsn;
	a->txn_skip = m->begin.final_lsn < a->skip_before;
	if (!a->txn_skip && m->begin.final_lsn > a->max_begun_lsn)
		a->max_begun_lsn = m->begin.final_lsn;
	if (a->txn_skip)
		log_debug("stream \"%s\": skipping source transaction %s: already applied",
			a->stream, lsn_format(lsn, a->txn_lsn));
	return STEP_DONE;
}

static enum apply_step apply_commit(struct apply *a, const struct pgoutput_msg *m,
		struct apply_pos next)
{
	struct apply_group *g;
	struct apply_ack *ack;
	char lsn[LSN_BUF], lsn2[LSN_BUF];

	if (!a->in_txn)
		return apply_fail(a, "COMMIT of source transaction %s outside a transaction",
			lsn_format(lsn, m->commit.commit_lsn)), STEP_FAIL;
	/*
	 * end_lsn == commit_lsn: a joining table's held changes (joinhold.h),
	 * placed at the position the stream is at, moving it nowhere.
	 */
	if (m->commit.commit_lsn != a->txn_lsn || m->commit.end_lsn < m->commit.commit_lsn)
		return apply_fail(a, "COMMIT (LSN %s) does not match BEGIN (LSN %s)",
			lsn_format(lsn, m->commit.commit_lsn),
			lsn_format(lsn2, a->txn_lsn)), STEP_FAIL;
	g = apply_group_open(a);
	if (!g)
		return STEP_FAIL;
	a->in_txn = false;
	g->ntxns++;
	g->end_off = next.b->base + next.off;
	if (a->txn_skip) {
		g->counts.skipped++;
	} else {
		if (!apply_group_begin(a, g))
			return STEP_FAIL;
		ack = apply_ring_push(&a->acks);
		if (!ack)
			return apply_fail(a, "out of memory"), STEP_FAIL;
		ack->group = g->id;
		ack->end_lsn = m->commit.end_lsn;
		ack->commit_time = m->commit.commit_time;
		g->nreal++;
		g->counts.txns++;
		g->last_end_lsn = m->commit.end_lsn;
		g->last_commit_time = m->commit.commit_time;
		if (m->commit.end_lsn > a->skip_before)
			a->skip_before = m->commit.end_lsn;
		if (a->worker.arg)
			apply_worker_txn_sent(a, m->commit.commit_lsn);
	}
	a->txn_skip = false;
	if (g->nchanges >= a->group_max_changes || g->ntxns >= a->group_max_txns)
		return apply_close_group(a) ? STEP_DONE : STEP_FAIL;
	return STEP_DONE;
}

static enum apply_step apply_record(struct apply *a, struct apply_batch *b, size_t off,
		struct apply_pos next)
{
	const uint8_t *rec = b->data + off + 4;
	size_t len = be32_load(b->data + off);
	struct pgoutput_msg m;
	enum pgoutput_status st;
	char lsn[LSN_BUF];

	st = pgoutput_decode(&a->dec, rec, len, &m, a->cols, 2 * APPLY_MAX_COLS);
	if (st != PGOUTPUT_OK)
		return apply_fail(a, "could not decode %s message of %zu bytes at stream offset %" PRIu64
			" (after source LSN %s): %s at byte %zu",
			len ? pgoutput_msg_type_name(rec[0]) : "empty", len, b->base + off,
			lsn_format(lsn, a->in_txn ? a->txn_lsn : a->applied_lsn),
			pgoutput_status_str(st), a->dec.error_offset), STEP_FAIL;

	switch (m.type) {
	case PGOUTPUT_BEGIN:
		return apply_begin(a, &m, b->base + off);
	case PGOUTPUT_COMMIT:
		return apply_commit(a, &m, next);
	case PGOUTPUT_RELATION:
		return apply_relation(a, &m, rec, len, b->base + off);
	case PGOUTPUT_INSERT:
	case PGOUTPUT_UPDATE:
	case PGOUTPUT_DELETE:
		return apply_change(a, &m, b, off);
	case PGOUTPUT_TRUNCATE:
		return apply_truncate(a, &m);
	case PGOUTPUT_TYPE:
	case PGOUTPUT_ORIGIN:
		return STEP_DONE;
	case PGOUTPUT_MESSAGE:
		log_debug("stream \"%s\": ignoring logical decoding message with prefix \"%s\" "
			"(%" PRIu32 " bytes)", a->stream, m.message.prefix, m.message.content_len);
		return STEP_DONE;
	case PGOUTPUT_STREAM_START:
	case PGOUTPUT_STREAM_STOP:
	case PGOUTPUT_STREAM_COMMIT:
	case PGOUTPUT_STREAM_ABORT:
		break;
	}
	return apply_fail(a, "%s message: streamed transactions are not supported",
		pgoutput_msg_type_name(m.type)), STEP_FAIL;
}

static bool apply_is_dead(const struct apply *a, uint64_t pos)
{
	for (size_t i = 0; i < a->ndead; i++)
		if (pos >= a->dead[i].start && pos < a->dead[i].end)
			return true;
	return false;
}

/*
 * Results libpq holds that no read event will announce. When the socket
 * does not take all it sends, libpq reads what the target sent meanwhile
 * into its own buffer (so that neither side waits on the other): the
 * socket is then empty, and a result that came in that way, such as the
 * commit of a segment another session waits for, would wait for the next
 * byte from the target, which may never come.
 */
static bool apply_results_buffered(struct apply *a)
{
	return a->conn && a->cmds.count && !PQisBusy(a->conn);
}

/* Decodes and sends until the queue runs dry or something must be waited for. */
static void apply_pump(struct apply *a)
{
	if (a->state != APPLY_RUNNING)
		return;
	while (!a->out_blocked && !a->waiting_catalog && !a->waiting_check && !a->waiting_gate &&
			!a->hold_blocked && a->cmds.count < APPLY_MAX_INFLIGHT) {
		struct apply_pos p = a->cur, next;
		enum apply_step step;

		if (!apply_pos_norm(a, &p)) {
			/* The queue ran dry: commit what is open. */
			if (!a->in_txn && !apply_close_group(a))
				return;
			break;
		}
		next.b = p.b;
		next.off = p.off + 4 + be32_load(p.b->data + p.off);
		if (a->ndead && apply_is_dead(a, p.b->base + p.off)) {
			a->cur = next;
			continue;
		}
		/*
		 * Past the record while it is handled: a group it closes may retire
		 * and free batches up to the record's end, and cur must not lag.
		 */
		a->cur = next;
		step = apply_record(a, p.b, p.off, next);
		if (step == STEP_FAIL)
			return;
		if (step == STEP_WAIT) {
			a->cur = p;          /* not consumed; p is not before done, so alive */
			break;
		}
		/*
		 * Sent a while: what the socket does not take stays in libpq's
		 * buffer, so stop once it is full rather than copy the whole queue
		 * there (megabytes per session with large values side by side).
		 */
		a->out_since_flush += next.off - p.off;
		if (a->out_since_flush >= APPLY_FLUSH_BYTES) {
			a->out_since_flush = 0;
			if (!apply_flush(a))
				return;
		}
	}
	if (a->state != APPLY_RUNNING)
		return;
	if (!apply_flush(a))
		return;
	if (apply_results_buffered(a))
		apply_kick(a);
	apply_forget(a);
	apply_check_idle(a);
}

/* ---- results ---- */

/* "(a, b)=(1, x)" for the row a change was looking for, into buf. */
/*
 * The column whose value the target refused: by the parameter the error's
 * context names, else (PostgreSQL 13 names none) by the text its message
 * quotes, matched against the change's values decoded again.
 */
static const char *apply_refused_column(struct apply *a, const struct apply_cmd *c,
		const PGresult *res, const char *state)
{
	struct pgoutput_decoder d;
	struct pgoutput_msg m;
	struct apply_change_msg cm;
	struct apply_sql_shape shape;
	const char *col = loaderr_column(c->rel->map, c->params, c->nparams, state,
					 PQresultErrorField(res, PG_DIAG_CONTEXT));

	if (col || !c->params || !c->batch || !pgoutput_decoder_init(&d, 2) ||
	    pgoutput_decode(&d, c->batch->data + c->off + 4, be32_load(c->batch->data + c->off),
			    &m, a->cols, 2 * APPLY_MAX_COLS) != PGOUTPUT_OK ||
	    (m.type != PGOUTPUT_INSERT && m.type != PGOUTPUT_UPDATE && m.type != PGOUTPUT_DELETE))
		return col;
	apply_change_unpack(&m, &cm, &shape);
	/* an UPDATE that did not change its key sends no old row: the key is in the new one */
	return loaderr_column_quoted(c->rel->map, c->params, c->nparams, cm.newtup,
				     cm.oldtup ? cm.oldtup : cm.newtup, state,
				     PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY));
}

static void apply_describe_key(struct apply *a, const struct apply_cmd *c, char *buf, size_t len)
{
	struct pgoutput_decoder d;
	struct pgoutput_msg m;
	const struct pgoutput_tuple *t;
	const struct relmap *map = c->rel->map;
	struct apply_sql_buf names, vals;
	bool full = false, any = false;
	const uint8_t *rec = c->batch->data + c->off + 4;
	size_t rlen = be32_load(c->batch->data + c->off);

	snprintf(buf, len, "(unknown)");
	if (!map || !pgoutput_decoder_init(&d, 2) ||
			pgoutput_decode(&d, rec, rlen, &m, a->cols, 2 * APPLY_MAX_COLS) != PGOUTPUT_OK)
		return;
	if (m.type == PGOUTPUT_INSERT) {
		t = &m.insert.newtup;
	} else if (m.type == PGOUTPUT_UPDATE) {
		t = m.update.old_kind ? &m.update.oldtup : &m.update.newtup;
		full = m.update.old_kind == PGOUTPUT_OLD_FULL;
	} else if (m.type == PGOUTPUT_DELETE) {
		t = &m.delete.oldtup;
		full = m.delete.old_kind == PGOUTPUT_OLD_FULL;
	} else {
		return;
	}
	if (t->ncols != map->natts)
		return;
	apply_sql_buf_init(&names);
	apply_sql_buf_init(&vals);
	/* The identity columns (the target's key for an INSERT); else the whole row. */
	for (int pass = 0; pass < 2 && !any; pass++) {
		for (uint16_t i = 0; i < map->natts; i++) {
			const struct pgoutput_value *v = &t->cols[i];
			bool use = pass == 1 || full;

			if (!use && m.type == PGOUTPUT_INSERT)
				use = map->tgt_key_usable ? map->atts[i].tgt_key : map->atts[i].src_key;
			else if (!use)
				use = map->atts[i].src_key;
			if (!use || v->kind == PGOUTPUT_VALUE_UNCHANGED)
				continue;
			apply_sql_buf_printf(&names, "%s%s", any ? ", " : "", map->atts[i].name);
			if (any)
				apply_sql_buf_puts(&vals, ", ");
			if (v->kind == PGOUTPUT_VALUE_NULL) {
				apply_sql_buf_puts(&vals, "NULL");
			} else {
				size_t n = v->len > APPLY_KEY_VALUE_MAX ? APPLY_KEY_VALUE_MAX : v->len;

				apply_sql_buf_add(&vals, (const char *)v->data, n);
				if (n < v->len)
					apply_sql_buf_puts(&vals, "...");
			}
			any = true;
		}
	}
	if (apply_sql_buf_cstr(&names) && apply_sql_buf_cstr(&vals))
		snprintf(buf, len, "(%s)=(%s)", names.data, vals.data);
	apply_sql_buf_free(&names);
	apply_sql_buf_free(&vals);
}

static bool apply_on_catalog(struct apply *a, struct apply_cmd *c, const PGresult *res)
{
	struct apply_rel *r = c->rel;
	struct pgoutput_rel *rel = pgoutput_relcache_get(&a->rels, r->oid);
	struct relmap_target *t = NULL;
	struct relmap *map = NULL;
	char *err = NULL;
	bool ok;

	a->waiting_catalog--;
	r->catalog_sent = false;
	if (!rel || rel->priv != r)
		return true;             /* replaced meanwhile: it will be asked again */
	ok = relmap_target_from_result(r->nspname, r->relname, res, &t, &err) &&
		relmap_build(rel, t, &map, &err);
	relmap_target_free(t);
	if (!ok) {
		apply_fail(a, "%s", err ? err : "out of memory");
		free(err);
		return false;
	}
	r->map = map;
	log_debug("stream \"%s\": mapped \"%s\" onto %s (%u columns, replica identity '%c', "
		"target key %s)", a->stream, r->display, map->qualified, map->natts, map->replident,
		map->tgt_key_usable ? "usable" : "none");
	return true;
}

static const char *apply_kind_word(char kind)
{
	return kind == APPLY_SQL_INSERT ? "INSERT" : kind == APPLY_SQL_UPDATE ? "UPDATE" : "DELETE";
}

static bool apply_on_change(struct apply *a, struct apply_cmd *c, const PGresult *res)
{
	struct apply_group *g = apply_group_find(a, c->group);
	const char *tuples = PQcmdTuples((PGresult *)res);
	unsigned long long n = strtoull(tuples, NULL, 10);
	enum apply_conflict_kind kind;
	char key[512], lsn[LSN_BUF];
	bool conflict;

	conflict = (c->outcome == APPLY_SQL_ZERO_IS_CONFLICT && n == 0) ||
		(c->outcome == APPLY_SQL_ONE_IS_CONFLICT && n == 1);
	if (!conflict)
		return true;
	kind = c->change == APPLY_SQL_INSERT ? CONFLICT_INSERT_EXISTS :
		c->change == APPLY_SQL_UPDATE ? CONFLICT_UPDATE_MISSING : CONFLICT_DELETE_MISSING;
	apply_describe_key(a, c, key, sizeof(key));
	lsn_format(lsn, c->txn_lsn);
	if (a->policy == APPLY_CONFLICT_ERROR) {
		a->totals.conflicts[kind]++;
		return apply_fail(a, "conflict: %s found no row in target table \"%s\" with key %s "
			"(source transaction %s; on_conflict is error)", apply_kind_word((char)c->change),
			c->rel->display, key, lsn);
	}
	if (g)
		g->counts.conflicts[kind]++;
	log_warning("stream \"%s\": conflict in target table \"%s\": %s %s key %s, %s "
		"(source transaction %s; on_conflict is %s)", a->stream, c->rel->display,
		apply_kind_word((char)c->change),
		kind == CONFLICT_INSERT_EXISTS ? "found an existing row with" : "found no row with",
		key,
		a->policy == APPLY_CONFLICT_TARGET_WINS ? "change skipped" :
		kind == CONFLICT_INSERT_EXISTS ? "row overwritten" :
		kind == CONFLICT_UPDATE_MISSING ? "row inserted" : "change skipped",
		lsn, apply_conflict_name(a->policy));
	return true;
}

static uint64_t apply_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/*
 * The origin is active in another backend. Right after this engine closed a
 * connection (a rewind, a lost session) that is usually its own previous
 * backend, still exiting: PostgreSQL releases the origin only as the backend
 * ends. Reconnect shortly, for APPLY_ORIGIN_BUSY_WAIT_MS at most; past that
 * another process applies to this origin, and the caller stops with the
 * error. Returns true when a retry was scheduled (the connection is closed).
 */
static bool apply_retry_origin_busy(struct apply *a, const char *err)
{
	struct timeval tv = { 0, APPLY_ORIGIN_BUSY_RETRY_MS * 1000 };
	uint64_t now = apply_now_ms();

	if (!a->origin_busy_since) {
		a->origin_busy_since = now;
		log_notice("stream \"%s\": %s; waiting up to %d s for that session to end",
			a->stream, err, APPLY_ORIGIN_BUSY_WAIT_MS / 1000);
	} else if (now - a->origin_busy_since >= APPLY_ORIGIN_BUSY_WAIT_MS) {
		return false;
	}
	apply_rewind(a);
	apply_set_state(a, APPLY_CONNECTING, "the origin is still held by an ending session");
	evtimer_add(a->ev_retry, &tv);
	return true;
}

static bool apply_on_error(struct apply *a, struct apply_cmd *c, const PGresult *res)
{
	const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE), *col;
	char err[1024], key[512], lsn[LSN_BUF], ver[32];

	apply_result_error(res, err, sizeof(err));
	if (PQstatus(a->conn) == CONNECTION_BAD ||
			(state && (strncmp(state, "08", 2) == 0 || strncmp(state, "57P", 3) == 0)))
		return apply_fail(a, "lost the connection to the target: %s", err);
	switch (c->kind) {
	case CMD_SETUP:
	case CMD_REPLICA_ROLE:
	case CMD_PROGRESS:
		if (state && strcmp(state, "55006") == 0 && strstr(err, "replication origin") &&
				apply_retry_origin_busy(a, err))
			return false;
		/* out of origin slots (53400), or none configured (55000): name the setting */
		if (state && (strcmp(state, "53400") == 0 || strcmp(state, "55000") == 0) &&
				strstr(err, "replication origin"))
			return apply_fail(a, "could not set up the target session (origin \"%s\"): %s: "
				"the target (PostgreSQL %s) has no free replication origin; raise %s "
				"there (a restart applies it)", a->origin, err,
				pgversion_format(a->server_version, ver, sizeof(ver)),
				pgversion_origin_limit_setting(a->server_version));
		return apply_fail(a, "could not set up the target session (origin \"%s\"): %s",
			a->origin, err);
	case CMD_CATALOG:
		return apply_fail(a, "could not read the catalog of target table \"%s\": %s",
			c->rel->display, err);
	case CMD_PREPARE:
		return apply_fail(a, "could not prepare a statement for target table \"%s\": %s",
			c->rel->display, err);
	case CMD_CHANGE:
		lsn_format(lsn, c->txn_lsn);
		if (state && strcmp(state, "23505") == 0 && c->change == APPLY_SQL_INSERT) {
			a->totals.conflicts[CONFLICT_INSERT_EXISTS]++;
			return apply_fail(a, "conflict: INSERT into target table \"%s\" found an existing "
				"row: %s (source transaction %s; on_conflict is %s)", c->rel->display, err,
				lsn, apply_conflict_name(a->policy));
		}
		apply_describe_key(a, c, key, sizeof(key));
		if ((col = apply_refused_column(a, c, res, state)))
			return apply_fail(a, "could not apply %s to target table \"%s\" (key %s, source "
				"transaction %s): the target does not accept the value of column \"%s\": "
				"%s", apply_kind_word((char)c->change), c->rel->display, key, lsn, col, err);
		return apply_fail(a, "could not apply %s to target table \"%s\" (key %s, source "
			"transaction %s): %s", apply_kind_word((char)c->change), c->rel->display, key,
			lsn, err);
	case CMD_TRUNCATE:
		return apply_fail(a, "could not apply TRUNCATE (source transaction %s): %s",
			lsn_format(lsn, c->txn_lsn), err);
	case CMD_ORIGIN:
		return apply_fail(a, "could not record the origin position for origin \"%s\": %s",
			a->origin, err);
	case CMD_LOCK:
		return apply_fail(a, "could not take a segment's lock on the target: %s", err);
	case CMD_CHAIN:
		return apply_fail(a, "rolled back a segment: the one before it, applied by another "
			"session, did not commit (source order is kept): %s", err);
	case CMD_BEGIN:
	case CMD_COMMIT:
	case CMD_SYNC:
		break;
	}
	return apply_fail(a, "target transaction failed: %s", err);
}

static void apply_set_running(struct apply *a)
{
	char lsn[LSN_BUF];

	lsn_format(lsn, a->resume_lsn);
	apply_set_state(a, APPLY_RUNNING, "the origin is set up");
	/*
	 * The target's word, not ours: a stop rolled back groups whose commits
	 * were already decoded, and those must be applied again.
	 */
	a->skip_before = a->resume_lsn;
	/* what was begun and not committed was rolled back; it is decoded again */
	a->max_begun_lsn = 0;
	a->hold_blocked = false;
	if (a->applied_lsn < a->resume_lsn)
		a->applied_lsn = a->resume_lsn;
	log_info("stream \"%s\": applying to the target, origin \"%s\" at %s", a->stream,
		a->origin, lsn);
	if (a->cb.ready)
		a->cb.ready(a->cb_arg, a->resume_lsn);
	apply_kick(a);
}

/* Handles one result for the oldest command. False when the stream stopped. */
/*
 * Without session_replication_role = replica the target's own triggers and
 * foreign-key checks run on every applied change: said once per stream, and
 * in status (triggers_fire).
 */
static void apply_on_replica_role(struct apply *a, const char *value)
{
	bool fire = strcmp(value, "replica") != 0;

	if (fire && !a->triggers_fire)
		log_warning("stream \"%s\": the target role may not set session_replication_role "
			"(it needs superuser, or on PostgreSQL 15 and later GRANT SET ON PARAMETER "
			"session_replication_role): applying without it, so the target's triggers and "
			"foreign-key checks run on every change (the source ran them already)", a->stream);
	a->triggers_fire = fire;
}

static bool apply_on_result(struct apply *a, struct apply_cmd *c, const PGresult *res)
{
	ExecStatusType st = PQresultStatus(res);
	struct apply_group *g;
	const char *v;

	if (st == PGRES_FATAL_ERROR || st == PGRES_NONFATAL_ERROR || st == PGRES_BAD_RESPONSE)
		return apply_on_error(a, c, res);
	if (c->kind == CMD_SYNC) {
		if (st != PGRES_PIPELINE_SYNC)
			return apply_fail(a, "unexpected result from the target: %s where a "
				"pipeline sync was due", PQresStatus(st));
		if (c->change == SYNC_SETUP_DONE) {
			a->origin_busy_since = 0;
			apply_set_running(a);
		} else if (c->change == SYNC_CHECK) {
			g = apply_group_find(a, c->group);
			a->waiting_check = false;
			if (g && g->state == GROUP_CHECKING && !apply_send_commit(a, g))
				return false;
		}
		return true;
	}
	if (st == PGRES_PIPELINE_SYNC)
		return apply_fail(a, "unexpected pipeline sync from the target");
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
		return apply_on_error(a, c, res);

	switch (c->kind) {
	case CMD_REPLICA_ROLE:
		apply_on_replica_role(a, PQntuples(res) == 1 ? PQgetvalue(res, 0, 0) : "");
		return true;
	case CMD_PROGRESS:
		v = PQntuples(res) == 1 ? PQgetvalue(res, 0, 0) : NULL;
		a->resume_lsn = 0;
		if (PQntuples(res) == 1 && !PQgetisnull(res, 0, 0) &&
				!lsn_parse(v, &a->resume_lsn))
			return apply_fail(a, "could not parse the progress \"%s\" of origin \"%s\"",
				v, a->origin);
		return true;
	case CMD_CATALOG:
		return apply_on_catalog(a, c, res);
	case CMD_CHANGE:
		return apply_on_change(a, c, res);
	case CMD_LOCK:
		g = apply_group_find(a, c->group);
		if (g)
			a->worker.started(a->worker.arg, g->seg);
		return true;
	case CMD_COMMIT:
		if (strcmp(PQcmdStatus((PGresult *)res), "COMMIT") != 0)
			return apply_fail(a, "target transaction did not commit (%s)",
				PQcmdStatus((PGresult *)res));
		g = apply_group_find(a, c->group);
		if (g) {
			g->state = GROUP_DONE;
			apply_retire(a);
		}
		return true;
	default:
		return true;
	}
}

/* Reads every result that is complete. */
static void apply_read_results(struct apply *a)
{
	while (a->conn && a->cmds.count) {
		struct apply_cmd *c = apply_ring_at(&a->cmds, 0);
		PGresult *res;
		uint64_t txn_lsn;
		bool ok, ends_txn;

		if (PQisBusy(a->conn))
			return;
		res = PQgetResult(a->conn);
		if (!res) {
			if (!c->got) {
				apply_fail(a, "unexpected end of results from the target: %s",
					PQerrorMessage(a->conn));
				return;
			}
			apply_pop_cmd(a);
			continue;
		}
		if (c->got) {
			PQclear(res);
			apply_fail(a, "unexpected extra result from the target");
			return;
		}
		c->got = true;
		ends_txn = c->ends_txn;
		txn_lsn = c->txn_lsn;
		ok = apply_on_result(a, c, res);
		PQclear(res);
		if (!ok)
			return;
		if (ends_txn)
			a->worker.executed(a->worker.arg, txn_lsn);
		/* A sync has no NULL after it. The ring may have moved: look again. */
		c = apply_ring_at(&a->cmds, 0);
		if (c->kind == CMD_SYNC && c->got)
			apply_pop_cmd(a);
	}
}

/* ---- connection ---- */

static void apply_on_notice(void *arg, const char *message)
{
	struct apply *a = arg;
	size_t n = strlen(message);

	while (n > 0 && message[n - 1] == '\n')
		n--;
	log_info("stream \"%s\": target: %.*s", a->stream, (int)n, message);
}

static void apply_on_read(evutil_socket_t fd, short what, void *arg)
{
	struct apply *a = arg;

	(void)fd;
	(void)what;
	if (!PQconsumeInput(a->conn)) {
		apply_fail(a, "lost the connection to the target: %s", PQerrorMessage(a->conn));
		return;
	}
	apply_read_results(a);
	if (!a->conn)
		return;
	if (a->out_blocked && !apply_flush(a))
		return;
	if (a->state == APPLY_RUNNING)
		apply_pump(a);
	else if (a->conn && !apply_flush(a))
		return;
}

static void apply_on_write(evutil_socket_t fd, short what, void *arg)
{
	struct apply *a = arg;

	(void)fd;
	(void)what;
	if (!apply_flush(a))
		return;
	/* what libpq read while it could not send (see apply_results_buffered()) */
	apply_read_results(a);
	if (a->conn && !a->out_blocked && a->state == APPLY_RUNNING)
		apply_pump(a);
}

static bool apply_send_setup(struct apply *a)
{
	const char *origin[1] = { a->origin };
	const char *stream_origin[1] = { a->worker.arg ? a->worker.stream_origin : a->origin };

	/* The same session settings as PostgreSQL's own apply worker. */
	if (!apply_send_query(a, CMD_SETUP,
			"SELECT pg_catalog.set_config('search_path', '', false), "
			"pg_catalog.set_config('datestyle', 'ISO', false), "
			"pg_catalog.set_config('intervalstyle', 'postgres', false), "
			"pg_catalog.set_config('extra_float_digits', '3', false), "
			/* a fenced old primary that rejoined as a replica stays read-only for
			 * applications, yet takes changes through strait */
			"pg_catalog.set_config('default_transaction_read_only', 'off', false)", 0, NULL))
		return false;
	/*
	 * A role that may not set session_replication_role (no superuser, no
	 * GRANT SET ON PARAMETER, which PostgreSQL 15 brought) goes without:
	 * the answer says which (apply_on_replica_role()).
	 */
	if (!apply_send_query(a, CMD_REPLICA_ROLE, a->server_version >= 150000 ?
			"SELECT CASE WHEN (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) "
			"OR pg_catalog.has_parameter_privilege('session_replication_role', 'SET') "
			"THEN pg_catalog.set_config('session_replication_role', 'replica', false) "
			"ELSE pg_catalog.current_setting('session_replication_role') END" :
			"SELECT CASE WHEN (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) "
			"THEN pg_catalog.set_config('session_replication_role', 'replica', false) "
			"ELSE pg_catalog.current_setting('session_replication_role') END", 0, NULL))
		return false;
	/*
	 * An acknowledged commit must survive a crash of the target. A worker
	 * commits without waiting for the WAL: its coordinator acknowledges only
	 * up to a segment that committed with a flush.
	 */
	if (!apply_send_query(a, CMD_SETUP, a->worker.arg ?
			"SELECT pg_catalog.set_config('synchronous_commit', 'off', false)" :
			"SELECT pg_catalog.set_config('synchronous_commit', 'local', false) "
			"WHERE pg_catalog.current_setting('synchronous_commit') = 'off'", 0, NULL))
		return false;
	/*
	 * A change finds its row by key, as PostgreSQL's own apply does through
	 * the key's index. The planner would scan a small table whole (its
	 * statistics say a page or two), and a table whose few rows are updated
	 * all the time (a branch's balance) fills those pages with dead versions
	 * every such scan reads again; an index scan reaches the live one.
	 */
	if (!apply_send_query(a, CMD_SETUP,
			"SELECT pg_catalog.set_config('enable_seqscan', 'off', false)", 0, NULL))
		return false;
	if (!apply_send_query(a, CMD_SETUP,
			"SELECT pg_catalog.pg_replication_origin_create($1) WHERE NOT EXISTS "
			"(SELECT 1 FROM pg_catalog.pg_replication_origin WHERE roname = $1)", 1, origin))
		return false;
	if (!apply_send_sync(a, SYNC_PLAIN, 0))
		return false;
	if (!apply_send_query(a, CMD_SETUP,
			"SELECT pg_catalog.pg_replication_origin_session_setup($1)", 1, origin))
		return false;
	if (a->worker.arg && !apply_worker_prepare(a))
		return false;
	/*
	 * Where to resume: the highest position of the stream's origin and its
	 * parallel workers' (a worker commits ahead of the others, and a worker
	 * count lowered since leaves origins behind), read once a commit that
	 * waits for the WAL flush has made every earlier commit durable (a
	 * worker's own are not flushed when they return).
	 */
	if (!apply_send_query(a, CMD_SETUP, "BEGIN", 0, NULL) ||
	    !apply_send_query(a, CMD_SETUP, "SELECT pg_catalog.set_config('synchronous_commit', "
			"'local', true), pg_catalog.txid_current()", 0, NULL) ||
	    !apply_send_query(a, CMD_SETUP, "COMMIT", 0, NULL))
		return false;
	if (!apply_send_query(a, CMD_PROGRESS,
			"SELECT pg_catalog.max(pg_catalog.pg_replication_origin_progress(roname, false)) "
			"FROM pg_catalog.pg_replication_origin WHERE roname = $1 OR "
			"pg_catalog.starts_with(roname, $1 || ':apply:')", 1, stream_origin))
		return false;
	if (!apply_send_sync(a, SYNC_SETUP_DONE, 0))
		return false;
	return apply_flush(a);
}

/* The target's version and what strait does without there: logged once per version seen. */
static void apply_note_version(struct apply *a, int version)
{
	char *line;

	if (version == a->server_version)
		return;
	a->server_version = version;
	line = pgversion_describe(version, PGVERSION_TARGET);
	log_info("stream \"%s\": target server is %s", a->stream, line ? line : "of an unknown version");
	free(line);
}

static void apply_connected(struct apply *a)
{
	evutil_socket_t fd = PQsocket(a->conn);

	evtimer_del(a->ev_timeout);
	event_free(a->ev_conn);
	a->ev_conn = NULL;
	if (PQsetnonblocking(a->conn, 1) != 0 || !PQenterPipelineMode(a->conn)) {
		apply_fail(a, "could not enter pipeline mode on the target connection: %s",
			PQerrorMessage(a->conn));
		return;
	}
	PQsetNoticeProcessor(a->conn, apply_on_notice, a);
	a->ev_read = event_new(a->base, fd, EV_READ | EV_PERSIST, apply_on_read, a);
	a->ev_write = event_new(a->base, fd, EV_WRITE, apply_on_write, a);
	if (!a->ev_read || !a->ev_write || event_add(a->ev_read, NULL) != 0) {
		apply_fail(a, "could not watch the target connection");
		return;
	}
	apply_note_version(a, PQserverVersion(a->conn));
	apply_set_state(a, APPLY_SETUP, "connected to the target");
	apply_send_setup(a);
}

static void apply_on_connect_io(evutil_socket_t fd, short what, void *arg);

static void apply_connect_wait(struct apply *a, PostgresPollingStatusType st)
{
	evutil_socket_t fd = PQsocket(a->conn);

	if (a->ev_conn)
		event_free(a->ev_conn);
	a->ev_conn = fd < 0 ? NULL : event_new(a->base, fd,
		st == PGRES_POLLING_READING ? EV_READ : EV_WRITE, apply_on_connect_io, a);
	if (!a->ev_conn || event_add(a->ev_conn, NULL) != 0)
		apply_fail(a, "could not watch the target connection");
}

static void apply_on_connect_io(evutil_socket_t fd, short what, void *arg)
{
	struct apply *a = arg;
	PostgresPollingStatusType st;

	(void)fd;
	(void)what;
	st = PQconnectPoll(a->conn);
	switch (st) {
	case PGRES_POLLING_OK:
		apply_connected(a);
		return;
	case PGRES_POLLING_READING:
	case PGRES_POLLING_WRITING:
		apply_connect_wait(a, st);
		return;
	default:
		apply_fail(a, "could not connect to the target: %s", PQerrorMessage(a->conn));
		return;
	}
}

static void apply_on_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct apply *a = arg;

	(void)fd;
	(void)what;
	apply_fail(a, "could not connect to the target: timed out after %u seconds",
		a->connect_timeout_s);
}

static void apply_connect(struct apply *a)
{
	const char *keys[] = { "dbname", "fallback_application_name", NULL };
	const char *vals[] = { a->conninfo, "strait-apply", NULL };
	struct timeval tv = { .tv_sec = a->connect_timeout_s };

	a->conn = PQconnectStartParams(keys, vals, 1);
	if (!a->conn) {
		apply_fail(a, "could not connect to the target: out of memory");
		return;
	}
	if (PQstatus(a->conn) == CONNECTION_BAD) {
		apply_fail(a, "could not connect to the target: %s", PQerrorMessage(a->conn));
		return;
	}
	evtimer_add(a->ev_timeout, &tv);
	apply_connect_wait(a, PGRES_POLLING_WRITING);
}

static void apply_on_kick(evutil_socket_t fd, short what, void *arg)
{
	struct apply *a = arg;

	(void)fd;
	(void)what;
	if (a->state == APPLY_CONNECTING && !a->conn) {
		apply_connect(a);
		return;
	}
	if (apply_results_buffered(a)) {
		apply_read_results(a);
		if (!a->conn)
			return;
	}
	if (a->state == APPLY_RUNNING && apply_gate_retry(a))
		apply_pump(a);
}

static void apply_kick(struct apply *a)
{
	event_active(a->ev_kick, 0, 0);
}

static void apply_on_retry(evutil_socket_t fd, short what, void *arg)
{
	struct apply *a = arg;

	(void)fd;
	(void)what;
	if (a->state == APPLY_CONNECTING && !a->conn)
		apply_connect(a);
}

/* ---- API ---- */

void apply_origin_name(const char *stream, char *out, size_t outlen)
{
	snprintf(out, outlen, APPLY_ORIGIN_PREFIX "%s", stream);
}

static struct apply *apply_new_session(struct event_base *base, const struct apply_config *cfg,
		const char *origin, const struct apply_callbacks *cb, void *cb_arg)
{
	struct apply *a;

	if (!cfg->conninfo || !cfg->stream || !*cfg->stream) {
		log_error("apply: a target conninfo and a stream name are required");
		return NULL;
	}
	a = calloc(1, sizeof(*a));
	if (!a)
		goto oom;
	a->base = base;
	a->conninfo = strdup(cfg->conninfo);
	a->stream = strdup(cfg->stream);
	if (origin)
		a->origin = strdup(origin);
	else if (asprintf(&a->origin, APPLY_ORIGIN_PREFIX "%s", cfg->stream) < 0)
		a->origin = NULL;
	if (cfg->worker) {
		a->worker = *cfg->worker;
		a->group_max_changes = a->group_max_txns = SIZE_MAX;  /* segments bound groups */
	}
	a->policy = cfg->on_conflict;
	if (!a->group_max_changes)
		a->group_max_changes = cfg->group_max_changes ? cfg->group_max_changes
			: APPLY_DEFAULT_GROUP_CHANGES;
	if (!a->group_max_txns)
		a->group_max_txns = cfg->group_max_txns ? cfg->group_max_txns
			: APPLY_DEFAULT_GROUP_TXNS;
	a->connect_timeout_s = cfg->connect_timeout_s ? cfg->connect_timeout_s
		: APPLY_DEFAULT_CONNECT_TIMEOUT;
	if (cb)
		a->cb = *cb;
	a->cb_arg = cb_arg;
	pgoutput_relcache_init(&a->rels, apply_rel_release);
	a->cols = calloc(2 * APPLY_MAX_COLS, sizeof(*a->cols));
	a->shape_key = malloc(APPLY_SQL_KEY_LEN(APPLY_MAX_COLS));
	a->set_codes = malloc(APPLY_MAX_COLS);
	a->where_codes = malloc(APPLY_MAX_COLS);
	a->values = calloc(2 * APPLY_MAX_COLS, sizeof(*a->values));
	a->ev_kick = event_new(base, -1, 0, apply_on_kick, a);
	a->ev_timeout = evtimer_new(base, apply_on_timeout, a);
	a->ev_retry = evtimer_new(base, apply_on_retry, a);
	if (!a->conninfo || !a->stream || !a->origin || !a->cols || !a->shape_key ||
			!a->set_codes || !a->where_codes || !a->values || !a->ev_kick ||
			!a->ev_timeout || !a->ev_retry || !pgoutput_decoder_init(&a->dec, 2) ||
			!apply_ring_init(&a->cmds, sizeof(struct apply_cmd)) ||
			!apply_ring_init(&a->groups, sizeof(struct apply_group)) ||
			!apply_ring_init(&a->acks, sizeof(struct apply_ack)) ||
			!apply_ring_init(&a->segs, sizeof(struct apply_segpos)))
		goto oom;
	a->state = APPLY_CONNECTING;
	apply_kick(a);
	return a;
oom:
	log_error("apply: could not start stream \"%s\": out of memory", cfg->stream);
	apply_free(a);
	return NULL;
}

struct apply *apply_new(struct event_base *base, const struct apply_config *cfg,
		const struct apply_callbacks *cb, void *cb_arg)
{
	struct apply *a;

	if (cfg->workers <= 1 || cfg->worker)
		return apply_new_session(base, cfg, NULL, cb, cb_arg);
	a = calloc(1, sizeof(*a));
	if (!a || !(a->par = applypar_new(base, cfg, cb, cb_arg))) {
		log_error("apply: could not start stream \"%s\"", cfg->stream);
		free(a);
		return NULL;
	}
	return a;
}

struct apply *apply_new_worker(struct event_base *base, const struct apply_config *cfg,
		const char *origin, const struct apply_callbacks *cb, void *cb_arg)
{
	if (!cfg->worker || !origin)
		return NULL;
	return apply_new_session(base, cfg, origin, cb, cb_arg);
}

bool apply_submit_segment(struct apply *a, const struct apply_segment *seg,
		const uint8_t *body, size_t len)
{
	struct apply_segpos *s;
	uint64_t start = a->submitted;
	size_t off = 0;

	if (!a->worker.arg || !seg->seq)
		return false;
	/* it starts at its first Begin (Relation messages it needs may come before) */
	while (off + 4 < len && body[off + 4] != PGOUTPUT_BEGIN)
		off += 4 + (size_t)be32_load(body + off);
	start += off;
	if (!apply_submit(a, body, len))
		return false;
	s = apply_ring_push(&a->segs);
	if (!s) {
		log_error("stream \"%s\": could not queue a segment: out of memory", a->stream);
		return false;
	}
	s->start = start;
	s->seg = *seg;
	return true;
}

void apply_gate_open(struct apply *a)
{
	/* from the kick, never inside a hook of this or another engine */
	if (a->state == APPLY_RUNNING)
		apply_kick(a);
}

/* A group waiting at its commit gate asks again (apply_gate_open()). */
static bool apply_gate_retry(struct apply *a)
{
	struct apply_group *g;

	if (!a->waiting_gate)
		return true;
	g = apply_group_find(a, a->gate_group);
	a->waiting_gate = false;
	if (g && g->state == GROUP_CHECKING && !apply_send_commit(a, g))
		return false;
	return true;
}

void apply_totals(const struct apply *a, struct apply_totals *t)
{
	*t = (struct apply_totals){
		.txns = a->totals.txns,
		.skipped = a->totals.skipped,
		.target_txns = a->target_txns,
		.inserted = a->totals.inserted,
		.updated = a->totals.updated,
		.deleted = a->totals.deleted,
		.truncated = a->totals.truncated,
		.insert_exists = a->totals.conflicts[CONFLICT_INSERT_EXISTS],
		.update_missing = a->totals.conflicts[CONFLICT_UPDATE_MISSING],
		.delete_missing = a->totals.conflicts[CONFLICT_DELETE_MISSING],
		.inflight = a->cmds.count,
		.server_version = a->server_version,
		.triggers_fire = a->triggers_fire,
	};
}

bool apply_submit(struct apply *a, const uint8_t *body, size_t len)
{
	if (a->par)
		return applypar_submit(a->par, body, len);
	struct pgoutput_decoder commits;
	struct pgoutput_msg m;
	struct apply_batch *b;
	size_t off = 0, whole = 0;
	uint64_t whole_lsn = 0;

	if (!pgoutput_decoder_init(&commits, 2))
		return false;
	/* Never trust a length: every record must end inside the body. */
	while (off < len) {
		uint32_t n;

		if (len - off < 4) {
			log_error("stream \"%s\": batch of %zu bytes has a truncated record length "
				"at byte %zu", a->stream, len, off);
			return false;
		}
		n = be32_load(body + off);
		if (n > len - off - 4) {
			log_error("stream \"%s\": batch of %zu bytes has a record of %" PRIu32
				" bytes at byte %zu that runs past its end", a->stream, len, n, off);
			return false;
		}
		/* a Commit ends a whole transaction (one that does not decode fails at apply) */
		if (n > 0 && body[off + 4] == PGOUTPUT_COMMIT &&
		    pgoutput_decode(&commits, body + off + 4, n, &m, NULL, 0) == PGOUTPUT_OK) {
			whole = off + 4 + (size_t)n;
			whole_lsn = m.commit.end_lsn;
		}
		off += 4 + (size_t)n;
	}
	if (len == 0)
		return true;
	b = malloc(sizeof(*b) + len);
	if (!b) {
		log_error("stream \"%s\": could not queue a batch of %zu bytes: out of memory",
			a->stream, len);
		return false;
	}
	b->next = NULL;
	b->base = a->submitted;
	b->len = len;
	b->refs = 0;
	memcpy(b->data, body, len);
	if (a->tail)
		a->tail->next = b;
	else
		a->head = b;
	a->tail = b;
	if (whole) {
		a->whole_off = a->submitted + whole;
		a->whole_lsn = whole_lsn;
	}
	a->submitted += len;
	a->held += len;
	a->idle_notified = false;
	if (a->state == APPLY_RUNNING)
		apply_kick(a);
	return true;
}

size_t apply_pending_bytes(const struct apply *a)
{
	if (a->par)
		return applypar_pending_bytes(a->par);
	return a->held;
}

uint64_t apply_released_bytes(const struct apply *a)
{
	if (a->par)
		return applypar_released_bytes(a->par);
	return a->released;
}

uint64_t apply_received_lsn(const struct apply *a)
{
	if (a->par)
		return applypar_received_lsn(a->par);
	uint64_t lsn = a->applied_lsn > a->resume_lsn ? a->applied_lsn : a->resume_lsn;

	return a->whole_lsn > lsn ? a->whole_lsn : lsn;
}

/* p moved back to the cut when it is past it (in a batch after the cut one). */
static void apply_pos_clamp(struct apply_pos *p, struct apply_batch *cut_b, uint64_t cut)
{
	if (p->b && p->b->base + p->off >= cut && p->b != cut_b) {
		p->b = cut_b;
		p->off = cut_b ? cut_b->len : 0;
	}
}

bool apply_drop_partial(struct apply *a)
{
	if (a->par)
		return applypar_drop_partial(a->par);
	uint64_t cut = a->whole_off, cur = apply_pos_offset(a, &a->cur);
	struct apply_batch *b, *keep = NULL;
	bool rewind;

	if (a->submitted == cut)
		return false;
	/* part of the cut transaction was decoded: roll it back and decode again up to the cut */
	rewind = cur > cut || (a->in_txn && a->txn_start >= cut);
	if (rewind && a->forgot_off > a->done_off) {
		/* part of what it would go back to was freed: the queue goes, the source sends it again */
		apply_rewind(a);
		apply_set_state(a, APPLY_CONNECTING, "rolled back an unfinished source transaction");
		apply_kick(a);
		return true;
	}
	if (rewind)
		apply_rewind(a);
	for (b = a->head; b && b->base < cut; b = b->next)
		keep = b;
	if (keep && keep->base + keep->len > cut) {
		a->held -= keep->base + keep->len - cut;
		keep->len = (size_t)(cut - keep->base);
	}
	apply_pos_clamp(&a->cur, keep, cut);
	b = keep ? keep->next : a->head;
	if (keep)
		keep->next = NULL;
	else
		a->head = NULL;
	a->tail = keep;
	while (b) {
		struct apply_batch *next = b->next;

		a->held -= b->len;
		free(b);
		b = next;
	}
	if (!a->head)
		a->cur = (struct apply_pos){ NULL, 0 };
	for (size_t i = 0; i < a->ndead; ) {
		if (a->dead[i].start >= cut)
			a->dead[i] = a->dead[--a->ndead];
		else
			i++;
	}
	log_info("stream \"%s\": dropped %" PRIu64 " bytes of an unfinished source transaction%s",
		a->stream, a->submitted - cut, rewind ? "; rolling back what was applied of it" : "");
	a->submitted = cut;
	if (!rewind)
		return false;
	apply_set_state(a, APPLY_CONNECTING, "rolled back an unfinished source transaction");
	apply_kick(a);
	return true;
}

bool apply_resume(struct apply *a)
{
	if (a->par)
		return applypar_resume(a->par);
	if (a->state != APPLY_STOPPED)
		return false;
	apply_set_state(a, APPLY_CONNECTING, "resumed");
	apply_kick(a);
	return true;
}

bool apply_is_stopped(const struct apply *a)
{
	if (a->par)
		return applypar_is_stopped(a->par);
	return a->state == APPLY_STOPPED;
}

bool apply_hold_at(struct apply *a, uint64_t lsn)
{
	if (a->par)
		return applypar_hold_at(a->par, lsn);
	if (lsn == 0 || a->max_begun_lsn >= lsn || a->applied_lsn > lsn ||
	    (a->in_txn && !a->txn_skip && a->txn_lsn >= lsn))
		return false;
	a->hold_lsn = lsn;
	a->hold_blocked = false;
	return true;
}

enum apply_hold apply_hold_state(const struct apply *a)
{
	if (a->par)
		return applypar_hold_state(a->par);
	struct apply_pos p = a->cur;

	if (!a->hold_lsn || a->state != APPLY_RUNNING || a->groups.count || a->in_txn ||
	    a->waiting_check || a->cmds.count)
		return APPLY_HOLD_MOVING;
	if (a->hold_blocked)
		return APPLY_HOLD_BLOCKED;
	return apply_pos_norm(a, &p) ? APPLY_HOLD_MOVING : APPLY_HOLD_DRAINED;
}

void apply_hold_release(struct apply *a)
{
	if (a->par) {
		applypar_hold_release(a->par);
		return;
	}
	bool was_blocked = a->hold_blocked;

	a->hold_lsn = 0;
	a->hold_blocked = false;
	if (was_blocked && a->state == APPLY_RUNNING)
		apply_kick(a);
}

uint64_t apply_applied_lsn(const struct apply *a)
{
	if (a->par)
		return applypar_applied_lsn(a->par);
	return a->applied_lsn;
}

void apply_status_json(const struct apply *a, struct json_out *j, const char *key)
{
	if (a->par) {
		applypar_status_json(a->par, j, key);
		return;
	}
	char lsn[LSN_BUF];
	uint64_t conflicts = 0;

	for (int k = 0; k < CONFLICT_KINDS; k++)
		conflicts += a->totals.conflicts[k];
	json_object_begin(j, key);
	json_string(j, "stream", a->stream);
	json_string(j, "state", apply_state_names[a->state]);
	json_string(j, "origin", a->origin);
	json_string(j, "on_conflict", apply_conflict_name(a->policy));
	json_string(j, "applied_lsn", lsn_format(lsn, a->applied_lsn));
	if (a->last_commit_time_us)
		json_int(j, "last_commit_time_us", a->last_commit_time_us);
	else
		json_null(j, "last_commit_time_us");
	json_uint(j, "transactions", a->totals.txns);
	json_uint(j, "transactions_skipped", a->totals.skipped);
	json_uint(j, "target_transactions", a->target_txns);
	json_object_begin(j, "rows");
	json_uint(j, "inserted", a->totals.inserted);
	json_uint(j, "updated", a->totals.updated);
	json_uint(j, "deleted", a->totals.deleted);
	json_object_end(j);
	json_uint(j, "truncates", a->totals.truncated);
	json_object_begin(j, "conflicts");
	json_uint(j, "total", conflicts);
	json_uint(j, "insert_exists", a->totals.conflicts[CONFLICT_INSERT_EXISTS]);
	json_uint(j, "update_missing", a->totals.conflicts[CONFLICT_UPDATE_MISSING]);
	json_uint(j, "delete_missing", a->totals.conflicts[CONFLICT_DELETE_MISSING]);
	json_object_end(j);
	json_uint(j, "pending_bytes", apply_pending_bytes(a));
	json_uint(j, "in_flight_commands", a->cmds.count);
	json_string(j, "last_error", a->last_error);
	if (a->server_version)
		pgversion_json(j, "target_server", a->server_version, PGVERSION_TARGET);
	json_bool(j, "triggers_fire", a->triggers_fire);
	json_object_end(j);
}

void apply_free(struct apply *a)
{
	if (!a)
		return;
	if (a->par) {
		applypar_free(a->par);
		free(a);
		return;
	}
	apply_disconnect(a);
	while (a->head) {
		struct apply_batch *b = a->head;

		a->head = b->next;
		free(b);
	}
	pgoutput_relcache_free(&a->rels);
	for (size_t i = 0; i < a->nhist; i++)
		free(a->hist[i].msg);
	free(a->hist);
	free(a->dead);
	if (a->ev_kick)
		event_free(a->ev_kick);
	if (a->ev_timeout)
		event_free(a->ev_timeout);
	if (a->ev_retry)
		event_free(a->ev_retry);
	free(a->cmds.items);
	free(a->groups.items);
	free(a->acks.items);
	free(a->segs.items);
	free(a->cols);
	free(a->shape_key);
	free(a->set_codes);
	free(a->where_codes);
	free(a->values);
	free(a->vbuf);
	free(a->conninfo);
	free(a->stream);
	free(a->origin);
	free(a->last_error);
	free(a);
}
