/*
 * applypar.c — parallel apply: a coordinator over several worker engines
 * (see applypar.h for the design, apply.h for the contract and the workers).
 *
 * NOTES
 *
 * Transactions. Everything submitted is parsed into a FIFO of source
 * transactions (struct par_txn), numbered from 1 (seq): each holds its
 * records, the keys it writes, the Relation definitions it uses before it
 * redefines them, and once dealt, its worker and segment. They leave the
 * FIFO when a flushing commit made them durable, and are reported then.
 *
 * Relation messages. pgoutput describes a relation once per connection, but
 * each worker is a session of its own: the coordinator keeps every
 * definition (struct par_rel, a version each) and puts the one a
 * transaction needs in front of it when the worker it goes to was not
 * given that version yet (each worker's map of relation to version).
 *
 * Dependencies. At dealing, each key of a transaction is looked up in the
 * writeset: the transaction that wrote it last, if it is on another worker
 * and not executed yet, is a dependency (the ones before it are covered:
 * it waited for them). The worker asks may_begin() at the Begin. A barrier
 * (TRUNCATE, a transaction without keys it could read, a large one)
 * depends on the last transaction of every other worker, and every later
 * transaction depends on it.
 *
 * Segments. Up to PAR_SEG_TXNS consecutive transactions that are complete
 * go to one worker as one segment, the workers in turn, each with at most
 * PAR_AHEAD segments not committed. A transaction larger than
 * PAR_LARGE_BYTES is not held: once everything before it committed it goes
 * to worker 0 as it comes, alone.
 *
 * Failure. A worker's stopped(), or a worker restarting by itself, ends
 * every worker from the event loop (par_on_fail): what is not durable is
 * dropped, the received position falls back to the durable one, and the
 * source sends the rest again after the next ready().
 */
#include "replicator/applypar.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "common/be32.h"
#include "common/json.h"
#include "common/log.h"
#include "common/lsn.h"
#include "replicator/pgoutput.h"
#include "replicator/pgversion.h"
#include "replicator/writeset.h"

#define PAR_MAX_COLS 1664                   /* PostgreSQL's MaxTupleAttributeNumber */
#define PAR_SEG_TXNS 32                     /* source transactions in a segment at most */
#define PAR_SEG_CHANGES 4000
#define PAR_SEG_BYTES (1024u * 1024u)
#define PAR_LARGE_BYTES (4u * 1024u * 1024u) /* larger: streamed to worker 0 alone */
#define PAR_AHEAD 3                         /* segments a worker holds, not committed */
#define PAR_SYNC_TXNS 2000                  /* a flushing commit at least this often ... */
#define PAR_SYNC_US 50000                   /* ... and this often (µs) */
#define PAR_FAILED_WAIT_S 10                /* for what precedes a failure to commit */
/*
 * Hot rows: when more than this share of recent segments writes a row an
 * earlier segment still holds uncommitted (one such transaction holds up
 * the rest of its segment until that one commits), sessions side by side
 * would only wait on each other's row locks: the segments go to one
 * session, in one-session groups, until that share falls again.
 */
#define PAR_HOT_SHARE 0.5
#define PAR_HOT_WEIGHT 0.1                  /* of each segment in the running share */
#define PAR_ONE_SEG_TXNS 200                /* a segment then: apply.c's group bounds */
#define PAR_ONE_SEG_CHANGES 5000

/* A Relation message kept as a record (u32 length, message), one per version. */
struct par_rel {
	unsigned refs;
	uint32_t relid;
	uint64_t version;
	size_t len;
	uint8_t rec[];
};

struct par_txn {
	uint64_t seq;
	uint64_t commit_lsn;
	uint64_t end_lsn;
	int64_t commit_time;
	bool complete;               /* its Commit is in */
	bool barrier;
	bool large;                  /* not held: goes to worker 0 as it comes */
	bool executed;
	bool creates;                /* inserts a keyed row (or moves one to a new key), or
					changes one its session created, not committed yet */
	int worker;                  /* -1: not dealt */
	uint64_t seg;
	uint8_t *data;               /* its records; freed once dealt */
	size_t len;
	size_t cap;
	size_t nchanges;
	uint64_t *keys;
	size_t nkeys;
	size_t capkeys;
	struct par_rel **needs;      /* definitions in force at its start that it uses */
	size_t nneeds;
	struct par_rel **defines;    /* Relation messages inside it */
	size_t ndefines;
	uint64_t *deps;              /* transactions it waits for (par_pending_elsewhere()) */
	size_t ndeps;
};

struct par_seg {
	uint64_t seq;
	int worker;
	uint64_t last_txn;
	uint64_t end_lsn;
	size_t ntxns;
	bool started;                /* its lock is held */
	bool committed;              /* it, or a later one, committed */
	bool reported;               /* its worker said so */
	bool sync;                   /* committed with a WAL flush */
};

struct par_worker {
	struct applypar *p;
	int index;
	char *origin;
	struct apply *a;
	bool ready;
	uint64_t resume;
	bool waiting;                /* may_begin() said no */
	unsigned segs;               /* segments dealt, not committed */
	uint64_t last_txn;           /* the last transaction dealt to it */
	struct writeset seen;        /* relation OID + 1 -> version given */
};

enum par_state {
	PAR_STARTING,
	PAR_RUNNING,
	PAR_STOPPED,
};

static const char *const par_state_names[] = {
	[PAR_STARTING] = "connecting",
	[PAR_RUNNING] = "running",
	[PAR_STOPPED] = "stopped",
};

/* A FIFO of pointers indexed by a running number. */
struct par_fifo {
	void **items;
	size_t cap;                  /* power of two, or 0 */
	size_t head;
	size_t count;
	uint64_t first;              /* the number of items[head] */
};

struct applypar {
	struct event_base *base;
	char *conninfo;
	char *stream;
	char *stream_origin;
	enum apply_conflict policy;
	unsigned connect_timeout_s;
	size_t seg_txns;             /* a segment's bounds (group_max_txns, _changes) */
	size_t seg_changes;
	size_t one_txns;             /* ... with one session */
	size_t one_changes;
	int32_t lock_class;
	struct apply_callbacks cb;
	void *cb_arg;
	unsigned nworkers;
	struct par_worker w[APPLYPAR_WORKERS_MAX];

	enum par_state state;
	struct event *ev_fail;
	bool failing;                /* the workers end from the event loop ... */
	bool fail_restart;           /* ... and start again at once */
	char fail_reason[512];       /* the first failure's */
	char *last_error;
	/*
	 * A worker stopped in segment failed_seg: what comes before it commits
	 * first (nothing is dealt meanwhile), then every worker ends. Another
	 * worker stopping in an earlier segment gives the reason instead.
	 */
	uint64_t failed_seg;
	char failed_why[512];
	struct event *ev_failed_wait;

	/* parsing */
	struct pgoutput_decoder dec;
	struct pgoutput_value *cols;
	struct pgoutput_relcache rels;   /* priv: the struct par_rel in force */
	uint64_t rel_version;
	struct par_txn *open;        /* Begin seen, no Commit yet */
	bool skipping;               /* inside a transaction that is applied or queued already */
	uint64_t skip_before;        /* source commits below this are */

	/* dealing */
	struct par_fifo txns;        /* by seq */
	uint64_t next_seq;
	uint64_t next_deal;          /* the first transaction not dealt */
	struct par_fifo segs;        /* by seq */
	uint64_t next_seg;
	int prev_seg_worker;         /* the last segment dealt: its worker, -1 none */
	uint64_t prev_seg_end;
	unsigned turn;               /* the worker the next segment goes to */
	struct writeset writes;
	uint64_t last_barrier;
	struct par_txn *streaming;   /* a large transaction dealt before its Commit */

	/* progress */
	uint64_t resume_lsn;
	uint64_t durable_lsn;        /* reported committed() */
	uint64_t applied_lsn;        /* committed on the target */
	uint64_t whole_lsn;          /* the last whole transaction received */
	int64_t last_commit_time_us;
	uint64_t unsynced_txns;
	int64_t last_sync_us;
	uint64_t serial_until;       /* up to here one worker applies (after a failure) */

	/* a hold point (apply_hold_at()) */
	uint64_t hold_lsn;
	bool hold_blocked;

	/* accounting */
	size_t held;                 /* bytes parsed, not dealt */
	uint64_t released_gone;      /* released by workers that ended */
	struct apply_totals gone;    /* what workers that ended applied */
	double hot;                  /* running share of segments meeting an earlier segment's rows */
	bool seg_met;                /* the segment being dealt does */
	uint64_t one_session_segments;
	uint64_t segments;
	uint64_t flushes;
	uint64_t waits;
	uint64_t skipped;            /* transactions passed over: applied or queued already */
	bool idle_notified;
};

static void par_deal(struct applypar *p);
static void par_check_failed(struct applypar *p);
static void par_fail(struct applypar *p, bool restart, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void par_fail_logged(struct applypar *p, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* ---- small helpers ---- */

static int64_t par_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static bool par_fifo_push(struct par_fifo *f, void *item)
{
	if (f->count == f->cap) {
		size_t cap = f->cap ? 2 * f->cap : 64;
		void **items = malloc(cap * sizeof(*items));

		if (!items)
			return false;
		for (size_t i = 0; i < f->count; i++)
			items[i] = f->items[(f->head + i) & (f->cap - 1)];
		free(f->items);
		f->items = items;
		f->cap = cap;
		f->head = 0;
	}
	f->items[(f->head + f->count) & (f->cap - 1)] = item;
	f->count++;
	return true;
}

/* The item numbered n, or NULL when it is not (or no longer) there. */
static void *par_fifo_get(const struct par_fifo *f, uint64_t n)
{
	if (n < f->first || n - f->first >= f->count)
		return NULL;
	return f->items[(f->head + (size_t)(n - f->first)) & (f->cap - 1)];
}

static void *par_fifo_pop(struct par_fifo *f)
{
	void *item;

	if (!f->count)
		return NULL;
	item = f->items[f->head];
	f->head = (f->head + 1) & (f->cap - 1);
	f->count--;
	f->first++;
	return item;
}

static struct par_rel *par_rel_ref(struct par_rel *r)
{
	if (r)
		r->refs++;
	return r;
}

static void par_rel_unref(void *priv)
{
	struct par_rel *r = priv;

	if (r && --r->refs == 0)
		free(r);
}

static bool par_grow(void **arr, size_t *cap, size_t need, size_t size)
{
	size_t c = *cap ? *cap : 4;
	void *p;

	if (need <= *cap)
		return true;
	while (c < need)
		c *= 2;
	p = realloc(*arr, c * size);
	if (!p)
		return false;
	*arr = p;
	*cap = c;
	return true;
}

static void par_txn_free(struct par_txn *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->nneeds; i++)
		par_rel_unref(t->needs[i]);
	for (size_t i = 0; i < t->ndefines; i++)
		par_rel_unref(t->defines[i]);
	free(t->needs);
	free(t->defines);
	free(t->data);
	free(t->keys);
	free(t->deps);
	free(t);
}

static struct par_txn *par_txn_at(const struct applypar *p, uint64_t seq)
{
	return par_fifo_get(&p->txns, seq);
}

/*
 * Worker w's transaction committing at commit_lsn (the FIFO is in LSN
 * order; a joining table's held changes may share an LSN with a
 * neighbour: the first of w's not executed yet among them).
 */
static struct par_txn *par_txn_by_lsn(const struct applypar *p, int w, uint64_t commit_lsn)
{
	size_t lo = 0, hi = p->txns.count;
	struct par_txn *t, *found = NULL;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (par_txn_at(p, p->txns.first + mid)->commit_lsn < commit_lsn)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (; lo < p->txns.count; lo++) {
		t = par_txn_at(p, p->txns.first + lo);
		if (t->commit_lsn != commit_lsn)
			break;
		if (t->worker == w && !found)
			found = t;
		if (t->worker == w && !t->executed)
			return t;
	}
	return found;
}

/* Adds a record to t; one dealt already (a large one) has it sent to its worker instead. */
static bool par_txn_append(struct applypar *p, struct par_txn *t, const uint8_t *rec, size_t len)
{
	void *data = t->data;

	if (t->worker >= 0)
		return true;
	if (!par_grow(&data, &t->cap, t->len + 4 + len, 1))
		return false;
	t->data = data;
	be32_store(t->data + t->len, (uint32_t)len);
	memcpy(t->data + t->len + 4, rec, len);
	t->len += 4 + len;
	p->held += 4 + len;
	if (!t->complete && t->len > PAR_LARGE_BYTES)
		t->large = true;
	return true;
}

/*
 * A key twice is harmless (the second finds the transaction itself), so
 * none is looked for: a transaction of 100,000 rows would scan its keys
 * 100,000 times.
 */
static bool par_txn_add_key(struct par_txn *t, uint64_t key)
{
	void *keys = t->keys;

	if (!par_grow(&keys, &t->capkeys, t->nkeys + 1, sizeof(*t->keys)))
		return false;
	t->keys = keys;
	t->keys[t->nkeys++] = key;
	return true;
}

/* ---- parsing ---- */

/* Records the definition in force for relid as one t uses (unless it defined it itself). */
static bool par_txn_needs(struct applypar *p, struct par_txn *t, uint32_t relid)
{
	struct pgoutput_rel *rel = pgoutput_relcache_get(&p->rels, relid);
	struct par_rel *r = rel ? rel->priv : NULL;
	void *arr;
	size_t cap;

	if (!r)
		return true;         /* undescribed: the worker says so */
	for (size_t i = 0; i < t->ndefines; i++)
		if (t->defines[i]->relid == relid)
			return true;
	for (size_t i = 0; i < t->nneeds; i++)
		if (t->needs[i]->relid == relid)
			return true;
	arr = t->needs;
	cap = t->nneeds;
	if (!par_grow(&arr, &cap, t->nneeds + 1, sizeof(*t->needs)))
		return false;
	t->needs = arr;
	t->needs[t->nneeds++] = par_rel_ref(r);
	return true;
}

/* The key of a row: its relation and the values of its replica-identity columns. */
static uint64_t par_row_key(const struct pgoutput_rel *rel, const struct pgoutput_tuple *tup,
		bool *any)
{
	uint64_t h = writeset_hash_add(writeset_hash_start(), &rel->oid, sizeof(rel->oid));

	*any = false;
	for (uint16_t i = 0; i < rel->natts && i < tup->ncols; i++) {
		const struct pgoutput_value *v = &tup->cols[i];
		uint32_t len = v->len;

		if (!rel->attrs[i].key)
			continue;
		*any = true;
		h = writeset_hash_add(h, &v->kind, 1);
		h = writeset_hash_add(h, &len, sizeof(len));
		if (v->data)
			h = writeset_hash_add(h, v->data, v->len);
	}
	return writeset_hash_finish(h);
}

/* The keys a change writes; a change whose row has no key it can read makes t a barrier. */
static bool par_change_keys(struct applypar *p, struct par_txn *t, const struct pgoutput_msg *m)
{
	const struct pgoutput_tuple *tups[2] = { NULL, NULL };
	struct pgoutput_rel *rel;
	uint32_t relid;

	switch (m->type) {
	case PGOUTPUT_INSERT:
		relid = m->insert.relid;
		tups[0] = &m->insert.newtup;
		break;
	case PGOUTPUT_UPDATE:
		relid = m->update.relid;
		tups[0] = &m->update.newtup;
		if (m->update.oldtup.ncols)
			tups[1] = &m->update.oldtup;
		break;
	default:
		relid = m->delete.relid;
		tups[0] = &m->delete.oldtup;
		break;
	}
	if (!par_txn_needs(p, t, relid))
		return false;
	if (t->large)
		return true;         /* a barrier: what it writes orders nothing */
	rel = pgoutput_relcache_get(&p->rels, relid);
	for (int i = 0; i < 2; i++) {
		bool any;
		uint64_t key;

		if (!tups[i])
			continue;
		if (!rel) {
			t->barrier = true;
			continue;
		}
		key = par_row_key(rel, tups[i], &any);
		/* a row without a key (REPLICA IDENTITY NOTHING) can only be inserted: nothing to order */
		if (any && !par_txn_add_key(t, key))
			return false;
		/* a new row, or a row under a new key (an UPDATE that carries its old key) */
		if (any && i == 0 && (m->type == PGOUTPUT_INSERT || tups[1]))
			t->creates = true;
	}
	return true;
}

static bool par_relation(struct applypar *p, const struct pgoutput_msg *m,
		const uint8_t *rec, size_t len)
{
	struct par_rel *r = malloc(sizeof(*r) + 4 + len);
	struct pgoutput_rel *rel;
	void *arr;
	size_t cap;

	if (!r)
		return false;
	r->refs = 1;
	r->relid = m->relation.oid;
	r->version = ++p->rel_version;
	r->len = 4 + len;
	be32_store(r->rec, (uint32_t)len);
	memcpy(r->rec + 4, rec, len);
	if (!pgoutput_relcache_update(&p->rels, m)) {
		free(r);
		return false;
	}
	rel = pgoutput_relcache_get(&p->rels, m->relation.oid);
	rel->priv = r;
	if (!p->open)
		return true;
	arr = p->open->defines;
	cap = p->open->ndefines;
	if (!par_grow(&arr, &cap, p->open->ndefines + 1, sizeof(*p->open->defines)))
		return false;
	p->open->defines = arr;
	p->open->defines[p->open->ndefines++] = par_rel_ref(r);
	return par_txn_append(p, p->open, rec, len);
}

/* Drops the open transaction, the last one in the FIFO (it was not dealt). */
static void par_drop_open(struct applypar *p)
{
	struct par_txn *t = p->open;

	p->held -= t->len <= p->held ? t->len : p->held;
	p->open = NULL;
	par_txn_free(t);
	p->txns.count--;
	p->next_seq--;
}

/* A Begin: a transaction opens (one still open was interrupted: its partial copy goes). */
static bool par_begin(struct applypar *p, const struct pgoutput_msg *m, const uint8_t *rec,
		size_t len)
{
	struct par_txn *t;

	if (p->open) {
		if (p->open == p->streaming) {
			par_fail(p, true, "source transaction " LSN_FMT " was interrupted after part of "
				 "it was applied; applying again from the last durable commit",
				 LSN_ARGS(p->open->commit_lsn));
			return true;
		}
		log_notice("stream \"%s\": source transaction " LSN_FMT " was interrupted by the "
			   "BEGIN of " LSN_FMT "; dropping its partial copy", p->stream,
			   LSN_ARGS(p->open->commit_lsn), LSN_ARGS(m->begin.final_lsn));
		par_drop_open(p);
	}
	/* a batch sent again: what is applied or queued already is passed over */
	p->skipping = m->begin.final_lsn < p->skip_before;
	if (p->skipping) {
		p->skipped++;
		return true;
	}
	t = calloc(1, sizeof(*t));
	if (!t)
		return false;
	t->seq = p->next_seq;
	t->commit_lsn = m->begin.final_lsn;
	t->worker = -1;
	if (!par_fifo_push(&p->txns, t) || !par_txn_append(p, t, rec, len)) {
		par_txn_free(t);
		return false;
	}
	if (p->txns.count == 1)
		p->txns.first = t->seq;
	p->next_seq++;
	p->open = t;
	return true;
}

static bool par_commit(struct applypar *p, const struct pgoutput_msg *m, const uint8_t *rec,
		size_t len)
{
	struct par_txn *t = p->open;

	if (p->skipping) {
		p->skipping = false;
		return true;
	}
	if (!t) {
		par_fail(p, false, "COMMIT of source transaction " LSN_FMT " outside a transaction",
			 LSN_ARGS(m->commit.commit_lsn));
		return true;
	}
	if (m->commit.commit_lsn != t->commit_lsn || m->commit.end_lsn < m->commit.commit_lsn) {
		par_fail(p, false, "COMMIT (LSN " LSN_FMT ") does not match BEGIN (LSN " LSN_FMT ")",
			 LSN_ARGS(m->commit.commit_lsn), LSN_ARGS(t->commit_lsn));
		return true;
	}
	t->end_lsn = m->commit.end_lsn;
	t->commit_time = m->commit.commit_time;
	t->complete = true;
	p->open = NULL;
	p->whole_lsn = t->end_lsn;
	if (t->end_lsn > p->skip_before)
		p->skip_before = t->end_lsn;
	if (t == p->streaming)
		p->streaming = NULL;     /* its Commit went to its worker with the rest */
	return par_txn_append(p, t, rec, len);
}

/* One record of a submitted batch. False when out of memory. */
static bool par_record(struct applypar *p, const uint8_t *rec, size_t len)
{
	struct pgoutput_msg m;
	enum pgoutput_status st;
	struct par_txn *t;

	st = pgoutput_decode(&p->dec, rec, len, &m, p->cols, 2 * PAR_MAX_COLS);
	if (st != PGOUTPUT_OK) {
		if (!p->open) {
			par_fail(p, false, "could not decode a %s message of %zu bytes: %s",
				 len ? pgoutput_msg_type_name(rec[0]) : "empty", len,
				 pgoutput_status_str(st));
			return true;
		}
		/* its worker says what is wrong with it; nothing may run beside it */
		p->open->barrier = true;
		return par_txn_append(p, p->open, rec, len);
	}
	switch (m.type) {
	case PGOUTPUT_BEGIN:
		return par_begin(p, &m, rec, len);
	case PGOUTPUT_COMMIT:
		return par_commit(p, &m, rec, len);
	case PGOUTPUT_RELATION:
		return par_relation(p, &m, rec, len);
	default:
		break;
	}
	t = p->open;
	if (p->skipping)
		return true;
	if (!t) {
		/* outside a transaction: a message the apply ignores anyway */
		if (m.type == PGOUTPUT_MESSAGE || m.type == PGOUTPUT_TYPE || m.type == PGOUTPUT_ORIGIN)
			return true;
		par_fail(p, false, "%s message outside a transaction", pgoutput_msg_type_name(m.type));
		return true;
	}
	switch (m.type) {
	case PGOUTPUT_INSERT:
	case PGOUTPUT_UPDATE:
	case PGOUTPUT_DELETE:
		t->nchanges++;
		if (t->worker < 0 && !par_change_keys(p, t, &m))
			return false;
		break;
	case PGOUTPUT_TRUNCATE:
		t->nchanges++;
		t->barrier = true;
		for (uint32_t i = 0; i < m.truncate.nrelids; i++)
			if (!par_txn_needs(p, t, pgoutput_truncate_relid(&m, i)))
				return false;
		break;
	default:
		break;
	}
	return par_txn_append(p, t, rec, len);
}

/* ---- dealing ---- */

static bool par_txn_depends(struct par_txn *t, uint64_t seq)
{
	void *deps = t->deps;
	size_t cap = t->ndeps;

	for (size_t i = 0; i < t->ndeps; i++)
		if (t->deps[i] == seq)
			return true;
	if (!par_grow(&deps, &cap, t->ndeps + 1, sizeof(*t->deps)))
		return false;
	t->deps = deps;
	t->deps[t->ndeps++] = seq;
	return true;
}

/*
 * Whether seq created a keyed row that other sessions cannot see yet: its
 * segment has not committed (or is the one being dealt).
 */
static bool par_creation_pending(const struct applypar *p, uint64_t seq)
{
	struct par_txn *o = seq ? par_txn_at(p, seq) : NULL;
	struct par_seg *s;

	if (!o || o->worker < 0 || !o->creates)
		return false;
	if (o->seg >= p->next_seg)
		return true;
	s = par_fifo_get(&p->segs, o->seg);
	return s && !s->committed;
}

/*
 * Whether a transaction of another worker still keeps one that writes a
 * key after it from beginning. Its changes executed, the rows it updated or
 * deleted are locked, and a later change of them waits on the target until
 * it commits. A row it inserted is different: invisible to other sessions
 * until it commits, an UPDATE or DELETE of it there would find nothing (a
 * conflict, or under target_wins a change skipped). So a transaction that
 * creates a keyed row holds the ones after it until its segment committed.
 */
static bool par_pending_elsewhere(const struct applypar *p, uint64_t seq, int w)
{
	struct par_txn *o = seq ? par_txn_at(p, seq) : NULL;

	if (!o || o->worker < 0 || o->worker == w)
		return false;
	return !o->executed || par_creation_pending(p, seq);
}

/* Whether seq is a transaction of a segment before seg that has not committed yet. */
static bool par_held_before(const struct applypar *p, uint64_t seq, uint64_t seg)
{
	struct par_txn *o = seq ? par_txn_at(p, seq) : NULL;
	struct par_seg *s;

	if (!o || o->worker < 0 || o->seg >= seg)
		return false;
	s = par_fifo_get(&p->segs, o->seg);
	return s && !s->committed;
}

/* t goes to worker w in segment seg: what it must wait for, and its keys recorded as its own. */
static bool par_txn_deal(struct applypar *p, struct par_txn *t, int w, uint64_t seg)
{
	bool met = false;

	t->worker = w;
	for (size_t i = 0; i < t->nkeys; i++) {
		uint64_t prev;

		if (!writeset_put(&p->writes, t->keys[i], t->seq, &prev))
			return false;
		met |= par_held_before(p, prev, seg);
		if (par_pending_elsewhere(p, prev, w) && !par_txn_depends(t, prev))
			return false;
		/*
		 * A row this session created and has not committed, changed again
		 * here: t is now its last writer, and one after it on another
		 * session must wait for t's segment to commit as for the
		 * creator's, or its change finds no row.
		 */
		if (par_creation_pending(p, prev) && par_txn_at(p, prev)->worker == w)
			t->creates = true;
	}
	p->seg_met |= met;
	if (t->barrier || t->large) {
		for (unsigned v = 0; v < p->nworkers; v++)
			if (par_pending_elsewhere(p, p->w[v].last_txn, w) &&
			    !par_txn_depends(t, p->w[v].last_txn))
				return false;
		p->last_barrier = t->seq;
	} else if (par_pending_elsewhere(p, p->last_barrier, w) &&
		   !par_txn_depends(t, p->last_barrier)) {
		return false;
	}
	p->w[w].last_txn = t->seq;
	return true;
}

/* Appends the definitions t needs that worker w was not given, then t. */
static bool par_body_add(struct par_worker *w, struct par_txn *t, uint8_t **body, size_t *len,
		size_t *cap)
{
	void *b = *body;

	for (size_t i = 0; i < t->nneeds; i++) {
		struct par_rel *r = t->needs[i];

		if (writeset_get(&w->seen, (uint64_t)r->relid + 1) == r->version)
			continue;
		if (!par_grow(&b, cap, *len + r->len, 1))
			return false;
		*body = b;
		memcpy(*body + *len, r->rec, r->len);
		*len += r->len;
		if (!writeset_put(&w->seen, (uint64_t)r->relid + 1, r->version, NULL))
			return false;
	}
	for (size_t i = 0; i < t->ndefines; i++)
		if (!writeset_put(&w->seen, (uint64_t)t->defines[i]->relid + 1,
				  t->defines[i]->version, NULL))
			return false;
	if (!par_grow(&b, cap, *len + t->len, 1))
		return false;
	*body = b;
	memcpy(*body + *len, t->data, t->len);
	*len += t->len;
	return true;
}

/* Whether a complete transaction waits to be dealt (a hold point stops it). */
static bool par_dealable(const struct applypar *p)
{
	struct par_txn *t = par_txn_at(p, p->next_deal);

	return t && (t->complete || t->large) && !(p->hold_lsn && t->commit_lsn >= p->hold_lsn);
}

/* Whether every segment dealt has committed. */
static bool par_all_committed(const struct applypar *p)
{
	struct par_seg *s = par_fifo_get(&p->segs, p->next_seg - 1);

	return !s || s->committed;
}

/*
 * Deals the next segment to worker w: transactions from next_deal on, up to
 * a segment's bounds, or with one (hot rows, or after a failure) a group's.
 */
static bool par_deal_segment(struct applypar *p, int w, bool one)
{
	size_t max_txns = one ? p->one_txns : p->seg_txns;
	size_t max_changes = one ? p->one_changes : p->seg_changes;
	struct par_worker *wk = &p->w[w];
	struct par_seg *s = calloc(1, sizeof(*s));
	struct apply_segment seg = { .seq = p->next_seg };
	uint8_t *body = NULL;
	size_t len = 0, cap = 0, changes = 0;
	bool ok = s != NULL;

	while (ok && s->ntxns < max_txns && changes < max_changes && len < 4 * PAR_SEG_BYTES) {
		struct par_txn *t = par_txn_at(p, p->next_deal);

		if (!t || !(t->complete || t->large) ||
		    (p->hold_lsn && t->commit_lsn >= p->hold_lsn))
			break;
		/* a large one goes alone */
		if (t->large && s->ntxns)
			break;
		ok = par_txn_deal(p, t, w, seg.seq) && par_body_add(wk, t, &body, &len, &cap);
		if (!ok)
			break;
		t->seg = seg.seq;
		p->held -= t->len;
		free(t->data);
		t->data = NULL;
		t->len = t->cap = 0;
		s->ntxns++;
		s->last_txn = t->seq;
		s->end_lsn = t->end_lsn;
		changes += t->nchanges;
		p->next_deal++;
		if (t->large) {
			log_info("stream \"%s\": source transaction " LSN_FMT " holds over %u MiB: "
				 "session %d applies it alone%s", p->stream, LSN_ARGS(t->commit_lsn),
				 PAR_LARGE_BYTES >> 20, w, t->complete ? "" : ", as it arrives");
			if (!t->complete)
				p->streaming = t;
			break;
		}
	}
	if (s && s->ntxns)
		p->hot += PAR_HOT_WEIGHT * ((p->seg_met ? 1.0 : 0.0) - p->hot);
	p->seg_met = false;
	if (!ok || !s->ntxns) {
		free(body);
		free(s);
		return ok;
	}
	s->seq = seg.seq;
	s->worker = w;
	if (p->prev_seg_worker >= 0) {
		seg.prev_origin = p->w[p->prev_seg_worker].origin;
		seg.prev_end_lsn = p->prev_seg_end;
	}
	ok = par_fifo_push(&p->segs, s);
	if (ok && p->segs.count == 1)
		p->segs.first = s->seq;
	ok = ok && apply_submit_segment(wk->a, &seg, body, len);
	free(body);
	if (!ok)
		return false;
	p->next_seg++;
	p->prev_seg_worker = w;
	p->prev_seg_end = s->end_lsn;
	wk->segs++;
	p->segments++;
	p->one_session_segments += one;
	return true;
}

/* Deals segments while a worker has room and complete transactions wait. */
static void par_deal(struct applypar *p)
{
	while (p->state == PAR_RUNNING && !p->failing && !p->failed_seg && !p->streaming) {
		struct par_txn *t = par_txn_at(p, p->next_deal);
		bool one;
		int w;

		p->hold_blocked = t && p->hold_lsn && t->commit_lsn >= p->hold_lsn;
		if (!par_dealable(p))
			return;
		/* a large one waits for everything before it to commit */
		if (t->large && !par_all_committed(p))
			return;
		/* one session: a large one, after a failure, or while rows are hot */
		one = t->large || t->end_lsn <= p->serial_until || p->hot > PAR_HOT_SHARE;
		w = t->large ? 0 : one ? (p->prev_seg_worker >= 0 ? p->prev_seg_worker : 0)
			: (int)p->turn;
		if (p->w[w].segs >= PAR_AHEAD)
			return;
		if (!par_deal_segment(p, w, one)) {
			par_fail(p, false, "out of memory");
			return;
		}
		if (!one && w == (int)p->turn)
			p->turn = (p->turn + 1) % p->nworkers;
	}
}

/* ---- progress ---- */

/* Everything submitted is durable: said once until more comes. */
static void par_check_idle(struct applypar *p)
{
	if (p->state != PAR_RUNNING || p->failing || p->idle_notified || p->txns.count)
		return;
	p->idle_notified = true;
	if (p->cb.idle)
		p->cb.idle(p->cb_arg);
}

/* Transactions of segments up to seg are durable: report them and let them go. */
static void par_durable(struct applypar *p, uint64_t seg)
{
	struct par_txn *t;
	struct par_seg *s;

	while ((t = par_txn_at(p, p->txns.first)) && t->worker >= 0 && t->complete &&
	       t->seg <= seg) {
		par_fifo_pop(&p->txns);
		for (size_t i = 0; i < t->nkeys; i++)
			writeset_forget(&p->writes, t->keys[i], t->seq);
		p->durable_lsn = t->end_lsn;
		if (p->cb.committed)
			p->cb.committed(p->cb_arg, t->end_lsn, pgoutput_time_to_unix_us(t->commit_time));
		par_txn_free(t);
		if (p->failing)
			return;
	}
	while ((s = par_fifo_get(&p->segs, p->segs.first)) && s->seq <= seg && s->reported) {
		par_fifo_pop(&p->segs);
		free(s);
	}
	par_check_idle(p);
}

/* ---- worker hooks ---- */

static bool par_may_begin(void *arg, uint64_t commit_lsn)
{
	struct par_worker *w = arg;
	struct applypar *p = w->p;
	struct par_txn *t = par_txn_by_lsn(p, w->index, commit_lsn);

	if (!t)
		return true;
	for (size_t i = 0; i < t->ndeps; i++) {
		if (par_pending_elsewhere(p, t->deps[i], w->index)) {
			w->waiting = true;
			p->waits++;
			return false;
		}
	}
	return true;
}

static void par_executed(void *arg, uint64_t commit_lsn)
{
	struct par_worker *w = arg;
	struct applypar *p = w->p;
	struct par_txn *t = par_txn_by_lsn(p, w->index, commit_lsn);

	if (t)
		t->executed = true;
	for (unsigned i = 0; i < p->nworkers; i++) {
		if (p->w[i].waiting && p->w[i].a) {
			p->w[i].waiting = false;
			apply_gate_open(p->w[i].a);
		}
	}
}

static void par_started(void *arg, uint64_t seg)
{
	struct par_worker *w = arg;
	struct applypar *p = w->p;
	struct par_seg *s = par_fifo_get(&p->segs, seg), *next;

	if (s)
		s->started = true;
	next = par_fifo_get(&p->segs, seg + 1);
	if (next && p->w[next->worker].a)
		apply_gate_open(p->w[next->worker].a);
}

static bool par_may_commit(void *arg, uint64_t seg, bool *sync)
{
	struct par_worker *w = arg;
	struct applypar *p = w->p;
	struct par_seg *s = par_fifo_get(&p->segs, seg), *prev = par_fifo_get(&p->segs, seg - 1);
	int64_t now;

	/* the previous segment's lock must be held before this one waits for it */
	if (prev && !prev->started && !prev->committed)
		return false;
	if (!s)
		return true;
	now = par_now_us();
	p->unsynced_txns += s->ntxns;
	/* before a failure: durable before every worker ends */
	s->sync = p->failed_seg || (seg == p->next_seg - 1 && !par_dealable(p)) ||
		  p->unsynced_txns >= PAR_SYNC_TXNS || now - p->last_sync_us >= PAR_SYNC_US;
	if (s->sync) {
		p->unsynced_txns = 0;
		p->last_sync_us = now;
		p->flushes++;
	}
	*sync = s->sync;
	return true;
}

static void par_seg_committed(void *arg, uint64_t seg)
{
	struct par_worker *w = arg;
	struct applypar *p = w->p;
	struct par_seg *s = par_fifo_get(&p->segs, seg);
	uint64_t durable = 0;

	if (!s)
		return;
	s->reported = true;
	if (w->segs)
		w->segs--;
	/* the target commits in order: every earlier segment has committed too */
	for (uint64_t n = p->segs.first; n <= seg; n++) {
		struct par_seg *e = par_fifo_get(&p->segs, n);

		if (!e)
			continue;
		e->committed = true;
		if (e->sync)
			durable = n;
	}
	if (durable)
		par_durable(p, durable);
	/* a worker may wait for a row this segment inserted (par_pending_elsewhere()) */
	for (unsigned i = 0; i < p->nworkers; i++) {
		if (p->w[i].waiting && p->w[i].a) {
			p->w[i].waiting = false;
			apply_gate_open(p->w[i].a);
		}
	}
	par_check_failed(p);
	if (!p->failing)
		par_deal(p);
}

/* ---- worker callbacks ---- */

static void par_running(struct applypar *p)
{
	uint64_t resume = 0;

	for (unsigned i = 0; i < p->nworkers; i++)
		if (p->w[i].resume > resume)
			resume = p->w[i].resume;
	p->resume_lsn = p->durable_lsn = p->skip_before = resume;
	if (p->applied_lsn < resume)
		p->applied_lsn = resume;
	if (p->whole_lsn < resume)
		p->whole_lsn = resume;
	p->state = PAR_RUNNING;
	/* running again: the error that stopped it is in the log */
	free(p->last_error);
	p->last_error = NULL;
	p->last_sync_us = par_now_us();
	log_info("stream \"%s\": applying with %u sessions side by side, from " LSN_FMT,
		 p->stream, p->nworkers, LSN_ARGS(resume));
	p->idle_notified = false;
	if (p->cb.ready)
		p->cb.ready(p->cb_arg, resume);
	par_deal(p);
	par_check_idle(p);
}

static void par_on_ready(void *arg, uint64_t resume_lsn)
{
	struct par_worker *w = arg;
	struct applypar *p = w->p;

	if (p->state != PAR_STARTING) {
		par_fail(p, true, "apply session %d started over by itself", w->index);
		return;
	}
	w->ready = true;
	w->resume = resume_lsn;
	for (unsigned i = 0; i < p->nworkers; i++)
		if (!p->w[i].ready)
			return;
	par_running(p);
}

static void par_on_committed(void *arg, uint64_t end_lsn, int64_t commit_time_us)
{
	struct par_worker *w = arg;
	struct applypar *p = w->p;

	if (end_lsn > p->applied_lsn) {
		p->applied_lsn = end_lsn;
		p->last_commit_time_us = commit_time_us;
	}
}

/* The segments before the failed one have all committed: the workers end now. */
static void par_check_failed(struct applypar *p)
{
	struct par_seg *s = par_fifo_get(&p->segs, p->segs.first);

	if (!p->failed_seg || p->failing)
		return;
	while (s && s->seq < p->failed_seg && s->committed)
		s = par_fifo_get(&p->segs, s->seq + 1);
	if (s && s->seq < p->failed_seg)
		return;
	/* the session's own words, which it logged */
	par_fail_logged(p, "%s", p->failed_why);
}

static void par_on_failed_wait(evutil_socket_t fd, short what, void *arg)
{
	struct applypar *p = arg;

	(void)fd;
	(void)what;
	if (p->failed_seg && !p->failing) {
		log_warning("stream \"%s\": the transactions before the failed one did not commit "
			    "within %d s: rolling them back too", p->stream, PAR_FAILED_WAIT_S);
		par_fail_logged(p, "%s", p->failed_why);
	}
}

static void par_on_stopped(void *arg, const char *reason)
{
	struct par_worker *w = arg;
	struct applypar *p = w->p;
	struct timeval tv = { .tv_sec = PAR_FAILED_WAIT_S };
	uint64_t seg = UINT64_MAX;

	if (p->state != PAR_RUNNING) {
		par_fail_logged(p, "%s", reason);
		return;
	}
	/* the worker stopped in its oldest segment not committed */
	for (uint64_t n = p->segs.first; n < p->next_seg; n++) {
		struct par_seg *s = par_fifo_get(&p->segs, n);

		if (s && s->worker == w->index && !s->committed) {
			seg = n;
			break;
		}
	}
	if (!p->failed_seg || seg < p->failed_seg) {
		if (!p->failed_seg)
			evtimer_add(p->ev_failed_wait, &tv);
		p->failed_seg = seg;
		snprintf(p->failed_why, sizeof(p->failed_why), "%s", reason);
	}
	par_check_failed(p);
}

static void par_on_released(void *arg)
{
	struct par_worker *w = arg;

	if (w->p->cb.released)
		w->p->cb.released(w->p->cb_arg);
}

/* ---- starting and ending the workers ---- */

static void par_add_totals(struct apply_totals *sum, const struct apply_totals *t)
{
	sum->txns += t->txns;
	sum->skipped += t->skipped;
	sum->target_txns += t->target_txns;
	sum->inserted += t->inserted;
	sum->updated += t->updated;
	sum->deleted += t->deleted;
	sum->truncated += t->truncated;
	sum->insert_exists += t->insert_exists;
	sum->update_missing += t->update_missing;
	sum->delete_missing += t->delete_missing;
	sum->inflight += t->inflight;
	if (t->server_version)
		sum->server_version = t->server_version;
	sum->triggers_fire |= t->triggers_fire;
}

static bool par_start(struct applypar *p)
{
	static const struct apply_callbacks wcb = {
		.ready = par_on_ready,
		.committed = par_on_committed,
		.stopped = par_on_stopped,
		.released = par_on_released,
	};

	p->state = PAR_STARTING;
	for (unsigned i = 0; i < p->nworkers; i++) {
		struct par_worker *w = &p->w[i];
		struct apply_worker hooks = {
			.stream_origin = p->stream_origin,
			.lock_class = p->lock_class,
			.may_begin = par_may_begin,
			.executed = par_executed,
			.started = par_started,
			.may_commit = par_may_commit,
			.seg_committed = par_seg_committed,
			.arg = w,
		};
		struct apply_config cfg = {
			.conninfo = p->conninfo,
			.stream = p->stream,
			.on_conflict = p->policy,
			.connect_timeout_s = p->connect_timeout_s,
			.worker = &hooks,
		};

		w->ready = false;
		w->waiting = false;
		w->segs = 0;
		w->last_txn = 0;
		writeset_clear(&w->seen);
		w->a = apply_new_worker(p->base, &cfg, w->origin, &wcb, w);
		if (!w->a)
			return false;
	}
	return true;
}

/* Ends every worker and drops what is not durable; the source sends it again. */
static void par_end_workers(struct applypar *p)
{
	struct par_txn *t;
	struct par_seg *s;

	for (unsigned i = 0; i < p->nworkers; i++) {
		struct par_worker *w = &p->w[i];
		struct apply_totals tot;

		if (!w->a)
			continue;
		apply_totals(w->a, &tot);
		tot.inflight = 0;
		par_add_totals(&p->gone, &tot);
		p->released_gone += apply_released_bytes(w->a);
		apply_free(w->a);
		w->a = NULL;
	}
	while ((t = par_fifo_pop(&p->txns))) {
		if (t->worker >= 0 && t->end_lsn > p->serial_until)
			p->serial_until = t->end_lsn;
		par_txn_free(t);
	}
	while ((s = par_fifo_pop(&p->segs)))
		free(s);
	p->txns.first = p->next_deal = p->next_seq;
	p->segs.first = p->next_seg;
	p->prev_seg_worker = -1;
	p->open = p->streaming = NULL;
	p->skipping = false;
	p->failed_seg = 0;
	if (p->ev_failed_wait)
		evtimer_del(p->ev_failed_wait);
	p->held = 0;
	p->last_barrier = 0;
	p->hold_blocked = false;
	writeset_clear(&p->writes);
	/* what is not durable may be lost with the target: ask from the durable end */
	p->whole_lsn = p->applied_lsn = p->durable_lsn;
	/* what the source sends again describes its relations again */
	pgoutput_relcache_free(&p->rels);
	pgoutput_relcache_init(&p->rels, par_rel_unref);
	if (!pgoutput_decoder_init(&p->dec, 2))
		log_error("stream \"%s\": could not reset the pgoutput decoder", p->stream);
}

static void par_on_fail(evutil_socket_t fd, short what, void *arg)
{
	struct applypar *p = arg;
	const char *reason = p->fail_reason;

	(void)fd;
	(void)what;
	if (!p->failing)
		return;
	par_end_workers(p);
	p->failing = false;
	if (p->fail_restart) {
		if (!par_start(p))
			par_fail(p, false, "could not start the apply sessions");
		return;
	}
	free(p->last_error);
	p->last_error = strdup(reason);
	p->state = PAR_STOPPED;
	log_warning("stream \"%s\": every apply session rolled back; from " LSN_FMT " the source "
		    "sends again what was not durable, applied by one session up to " LSN_FMT,
		    p->stream, LSN_ARGS(p->durable_lsn), LSN_ARGS(p->serial_until));
	if (p->cb.stopped)
		p->cb.stopped(p->cb_arg, reason);
}

/* Ends the workers from the event loop; a worker's own reason is logged already. */
static void par_fail_as(struct applypar *p, bool restart, bool logged, const char *fmt, va_list ap)
{
	if (p->failing)
		return;              /* the first failure says why */
	vsnprintf(p->fail_reason, sizeof(p->fail_reason), fmt, ap);
	p->failing = true;
	p->fail_restart = restart;
	event_active(p->ev_fail, 0, 0);
	if (logged)
		return;
	if (restart)
		log_notice("stream \"%s\": %s", p->stream, p->fail_reason);
	else
		log_error("stream \"%s\": %s", p->stream, p->fail_reason);
}

static void par_fail(struct applypar *p, bool restart, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	par_fail_as(p, restart, false, fmt, ap);
	va_end(ap);
}

static void par_fail_logged(struct applypar *p, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	par_fail_as(p, false, true, fmt, ap);
	va_end(ap);
}

/* ---- API ---- */

struct applypar *applypar_new(struct event_base *base, const struct apply_config *cfg,
		const struct apply_callbacks *cb, void *cb_arg)
{
	struct applypar *p = calloc(1, sizeof(*p));
	uint64_t h;

	if (!p)
		return NULL;
	p->base = base;
	p->conninfo = strdup(cfg->conninfo);
	p->stream = strdup(cfg->stream);
	p->policy = cfg->on_conflict;
	p->connect_timeout_s = cfg->connect_timeout_s;
	/* a segment is a target transaction: the group bounds are its bounds, or less */
	p->seg_txns = cfg->group_max_txns && cfg->group_max_txns < PAR_SEG_TXNS ?
		cfg->group_max_txns : PAR_SEG_TXNS;
	p->seg_changes = cfg->group_max_changes && cfg->group_max_changes < PAR_SEG_CHANGES ?
		cfg->group_max_changes : PAR_SEG_CHANGES;
	p->one_txns = cfg->group_max_txns && cfg->group_max_txns < PAR_ONE_SEG_TXNS ?
		cfg->group_max_txns : PAR_ONE_SEG_TXNS;
	p->one_changes = cfg->group_max_changes && cfg->group_max_changes < PAR_ONE_SEG_CHANGES ?
		cfg->group_max_changes : PAR_ONE_SEG_CHANGES;
	p->nworkers = cfg->workers > APPLYPAR_WORKERS_MAX ? APPLYPAR_WORKERS_MAX : cfg->workers;
	if (cb)
		p->cb = *cb;
	p->cb_arg = cb_arg;
	p->next_seq = p->next_deal = p->txns.first = 1;
	p->next_seg = p->segs.first = 1;
	p->prev_seg_worker = -1;
	/* the stream's advisory locks: one class per stream, keyed by segment */
	h = writeset_hash_finish(writeset_hash_add(writeset_hash_start(), cfg->stream,
						   strlen(cfg->stream)));
	p->lock_class = (int32_t)(uint32_t)h;
	{
		char origin[160];

		apply_origin_name(cfg->stream, origin, sizeof(origin));
		p->stream_origin = strdup(origin);
	}
	pgoutput_relcache_init(&p->rels, par_rel_unref);
	writeset_init(&p->writes);
	p->cols = calloc(2 * PAR_MAX_COLS, sizeof(*p->cols));
	p->ev_fail = event_new(base, -1, 0, par_on_fail, p);
	p->ev_failed_wait = evtimer_new(base, par_on_failed_wait, p);
	if (!p->conninfo || !p->stream || !p->stream_origin || !p->cols || !p->ev_fail ||
	    !p->ev_failed_wait ||
	    !pgoutput_decoder_init(&p->dec, 2))
		goto fail;
	for (unsigned i = 0; i < p->nworkers; i++) {
		struct par_worker *w = &p->w[i];

		w->p = p;
		w->index = (int)i;
		writeset_init(&w->seen);
		if (i == 0)
			w->origin = strdup(p->stream_origin);
		else if (asprintf(&w->origin, "%s:apply:%u", p->stream_origin, i) < 0)
			w->origin = NULL;
		if (!w->origin)
			goto fail;
	}
	if (!par_start(p))
		goto fail;
	return p;
fail:
	applypar_free(p);
	return NULL;
}

bool applypar_submit(struct applypar *p, const uint8_t *body, size_t len)
{
	size_t off = 0, fwd = SIZE_MAX;

	/* Never trust a length: every record must end inside the body. */
	while (off < len) {
		uint32_t n;

		if (len - off < 4) {
			log_error("stream \"%s\": batch of %zu bytes has a truncated record length "
				  "at byte %zu", p->stream, len, off);
			return false;
		}
		n = be32_load(body + off);
		if (n > len - off - 4) {
			log_error("stream \"%s\": batch of %zu bytes has a record of %" PRIu32
				  " bytes at byte %zu that runs past its end", p->stream, len, n, off);
			return false;
		}
		off += 4 + (size_t)n;
	}
	if (p->state == PAR_STOPPED || p->failing)
		return true;         /* dropped: the source sends it again after ready() */
	if (len)
		p->idle_notified = false;
	for (off = 0; off < len; ) {
		uint32_t n = be32_load(body + off);
		struct par_txn *streaming = p->streaming;

		/* a large transaction dealt already: its records go on to its worker */
		if (streaming && fwd == SIZE_MAX)
			fwd = off;
		if (!par_record(p, body + off + 4, n)) {
			log_error("stream \"%s\": out of memory", p->stream);
			return false;
		}
		off += 4 + (size_t)n;
		if (p->failing)
			return true;
		if (fwd != SIZE_MAX && p->streaming != streaming) {
			if (!apply_submit(p->w[streaming->worker].a, body + fwd, off - fwd))
				return false;
			fwd = SIZE_MAX;
		}
	}
	if (fwd != SIZE_MAX && !apply_submit(p->w[p->streaming->worker].a, body + fwd, len - fwd))
		return false;
	par_deal(p);
	return true;
}

size_t applypar_pending_bytes(const struct applypar *p)
{
	size_t n = p->held;

	for (unsigned i = 0; i < p->nworkers; i++)
		if (p->w[i].a)
			n += apply_pending_bytes(p->w[i].a);
	return n;
}

uint64_t applypar_released_bytes(const struct applypar *p)
{
	uint64_t n = p->released_gone;

	for (unsigned i = 0; i < p->nworkers; i++)
		if (p->w[i].a)
			n += apply_released_bytes(p->w[i].a);
	return n;
}

uint64_t applypar_received_lsn(const struct applypar *p)
{
	uint64_t lsn = p->applied_lsn > p->resume_lsn ? p->applied_lsn : p->resume_lsn;

	return p->whole_lsn > lsn ? p->whole_lsn : lsn;
}

bool applypar_drop_partial(struct applypar *p)
{
	struct par_txn *t = p->open;

	if (!t)
		return false;
	if (t == p->streaming) {
		/* part of it went to a worker: start over from what is durable */
		par_fail(p, true, "source transaction " LSN_FMT " was cut off after part of it was "
			 "applied; rolling back and applying again from the last durable commit",
			 LSN_ARGS(t->commit_lsn));
		p->state = PAR_STARTING;
		return true;
	}
	log_info("stream \"%s\": dropped %zu bytes of an unfinished source transaction",
		 p->stream, t->len);
	par_drop_open(p);
	return false;
}

bool applypar_resume(struct applypar *p)
{
	if (p->state != PAR_STOPPED)
		return false;
	if (!par_start(p)) {
		par_fail(p, false, "could not start the apply sessions");
		return true;
	}
	return true;
}

bool applypar_is_stopped(const struct applypar *p)
{
	return p->state == PAR_STOPPED;
}

bool applypar_hold_at(struct applypar *p, uint64_t lsn)
{
	struct par_txn *last = p->next_deal > p->txns.first ? par_txn_at(p, p->next_deal - 1) : NULL;

	if (lsn == 0 || p->applied_lsn > lsn || (last && last->commit_lsn >= lsn))
		return false;
	p->hold_lsn = lsn;
	p->hold_blocked = false;
	return true;
}

enum apply_hold applypar_hold_state(const struct applypar *p)
{
	if (!p->hold_lsn || p->state != PAR_RUNNING || p->failing || !par_all_committed(p) ||
	    p->streaming)
		return APPLY_HOLD_MOVING;
	if (p->hold_blocked)
		return APPLY_HOLD_BLOCKED;
	return p->next_deal == p->next_seq ? APPLY_HOLD_DRAINED : APPLY_HOLD_MOVING;
}

void applypar_hold_release(struct applypar *p)
{
	p->hold_lsn = 0;
	p->hold_blocked = false;
	par_deal(p);
}

uint64_t applypar_applied_lsn(const struct applypar *p)
{
	return p->applied_lsn;
}

void applypar_status_json(const struct applypar *p, struct json_out *j, const char *key)
{
	struct apply_totals t = p->gone;
	uint64_t conflicts;

	t.server_version = p->gone.server_version;
	for (unsigned i = 0; i < p->nworkers; i++) {
		struct apply_totals wt;

		if (!p->w[i].a)
			continue;
		apply_totals(p->w[i].a, &wt);
		par_add_totals(&t, &wt);
	}
	conflicts = t.insert_exists + t.update_missing + t.delete_missing;
	json_object_begin(j, key);
	json_string(j, "stream", p->stream);
	json_string(j, "state", par_state_names[p->state]);
	json_string(j, "origin", p->stream_origin);
	json_string(j, "on_conflict", apply_conflict_name(p->policy));
	json_lsn(j, "applied_lsn", p->applied_lsn);
	json_lsn(j, "durable_lsn", p->durable_lsn);
	if (p->last_commit_time_us)
		json_int(j, "last_commit_time_us", p->last_commit_time_us);
	else
		json_null(j, "last_commit_time_us");
	json_uint(j, "transactions", t.txns);
	json_uint(j, "transactions_skipped", t.skipped + p->skipped);
	json_uint(j, "target_transactions", t.target_txns);
	json_object_begin(j, "rows");
	json_uint(j, "inserted", t.inserted);
	json_uint(j, "updated", t.updated);
	json_uint(j, "deleted", t.deleted);
	json_object_end(j);
	json_uint(j, "truncates", t.truncated);
	json_object_begin(j, "conflicts");
	json_uint(j, "total", conflicts);
	json_uint(j, "insert_exists", t.insert_exists);
	json_uint(j, "update_missing", t.update_missing);
	json_uint(j, "delete_missing", t.delete_missing);
	json_object_end(j);
	json_uint(j, "pending_bytes", applypar_pending_bytes(p));
	json_uint(j, "in_flight_commands", t.inflight);
	json_string(j, "last_error", p->last_error);
	if (t.server_version)
		pgversion_json(j, "target_server", t.server_version, PGVERSION_TARGET);
	json_bool(j, "triggers_fire", t.triggers_fire);
	json_object_begin(j, "parallel");
	json_uint(j, "workers", p->nworkers);
	json_uint(j, "segments", p->segments);
	json_uint(j, "one_session_segments", p->one_session_segments);
	json_double(j, "hot_share", p->hot);
	json_uint(j, "flushing_commits", p->flushes);
	json_uint(j, "waits", p->waits);
	json_lsn(j, "one_session_until", p->serial_until);
	json_object_end(j);
	json_object_end(j);
}

void applypar_free(struct applypar *p)
{
	if (!p)
		return;
	par_end_workers(p);
	for (unsigned i = 0; i < p->nworkers; i++) {
		free(p->w[i].origin);
		writeset_free(&p->w[i].seen);
	}
	pgoutput_relcache_free(&p->rels);
	writeset_free(&p->writes);
	free(p->txns.items);
	free(p->segs.items);
	if (p->ev_fail)
		event_free(p->ev_fail);
	if (p->ev_failed_wait)
		event_free(p->ev_failed_wait);
	free(p->cols);
	free(p->conninfo);
	free(p->stream);
	free(p->stream_origin);
	free(p->last_error);
	free(p);
}
