/*
 * joingate.c — see joingate.h. Two passes per body: the first only looks
 * for a change of an unknown table (so a body that stops the gate has held
 * nothing), the second takes the joining tables' changes out.
 */
#include "replicator/joingate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/be32.h"
#include "replicator/pgoutput.h"

struct joingate_table {
	char *schema;
	char *table;
	enum joingate_kind kind;
	uint64_t left_lsn;           /* LEFT: from here on */
	bool txn_held;               /* its Begin is held in the open transaction */
};

/* A relation seen in a Relation message. */
struct joingate_rel {
	uint32_t oid;
	struct joingate_table *t;    /* NULL: unknown */
	char *schema;
	char *table;
	uint8_t *msg;                /* the Relation message, kept for joining tables */
	uint32_t len;
	bool sent_in_txn;            /* already held in the open transaction */
};

/* A relation as it was before the body: the second pass starts from there. */
struct joingate_undo {
	size_t i;
	struct joingate_rel was;
};

struct joingate {
	joingate_hold_fn hold;
	void *arg;
	bool guard;

	struct joingate_table *tables;
	size_t tables_cap;           /* grown by doubling: relations point into the array */
	size_t ntables;
	struct joingate_rel *rels;
	size_t nrels;
	size_t last_rel;             /* the relation looked up last: changes come in runs */
	struct joingate_undo *undo;  /* the first pass's replaced relations */
	size_t nundo;
	size_t nrels_run;            /* relations known before the body */
	bool keep_undo;              /* in the first pass */

	bool in_txn;
	uint8_t begin[64];           /* the open transaction's Begin */
	uint32_t begin_len;
	bool begin_held;

	struct pgoutput_decoder dec;
	uint8_t *buf;
	size_t len;
	size_t cap;
	uint64_t held;
	const char *unknown_schema;
	const char *unknown_table;
};

struct joingate *joingate_new(joingate_hold_fn hold, void *arg)
{
	struct joingate *g = calloc(1, sizeof(*g));

	if (!g)
		return NULL;
	if (!pgoutput_decoder_init(&g->dec, 2)) {
		free(g);
		return NULL;
	}
	g->hold = hold;
	g->arg = arg;
	return g;
}

void joingate_free(struct joingate *g)
{
	if (!g)
		return;
	for (size_t i = 0; i < g->ntables; i++) {
		free(g->tables[i].schema);
		free(g->tables[i].table);
	}
	free(g->tables);
	for (size_t i = 0; i < g->nrels; i++) {
		free(g->rels[i].schema);
		free(g->rels[i].table);
		free(g->rels[i].msg);
	}
	free(g->rels);
	free(g->undo);
	free(g->buf);
	free(g);
}

static struct joingate_table *joingate_find(const struct joingate *g, const char *schema,
		const char *table)
{
	for (size_t i = 0; i < g->ntables; i++)
		if (strcmp(g->tables[i].schema, schema) == 0 && strcmp(g->tables[i].table, table) == 0)
			return &g->tables[i];
	return NULL;
}

bool joingate_set(struct joingate *g, const char *schema, const char *table,
		enum joingate_kind kind)
{
	struct joingate_table *t = joingate_find(g, schema, table), *grown;
	bool moved = false;

	if (t && kind != JOINGATE_UNKNOWN_TABLE) {
		t->kind = kind;
		return true;
	}
	if (t) {
		free(t->schema);
		free(t->table);
		*t = g->tables[--g->ntables];
		moved = true;             /* the last table took its place */
	} else if (kind != JOINGATE_UNKNOWN_TABLE) {
		if (g->ntables == g->tables_cap) {
			size_t cap = g->tables_cap ? 2 * g->tables_cap : 64;

			grown = realloc(g->tables, cap * sizeof(*grown));
			if (!grown)
				return false;
			moved = grown != g->tables;
			g->tables = grown;
			g->tables_cap = cap;
		}
		t = &g->tables[g->ntables];
		t->schema = strdup(schema);
		t->table = strdup(table);
		t->kind = kind;
		t->left_lsn = 0;
		t->txn_held = false;
		if (!t->schema || !t->table) {
			free(t->schema);
			free(t->table);
			return false;
		}
		g->ntables++;
	}
	/*
	 * Relations point into the array: when it moved, every one is looked up
	 * again (rarely: it doubles), else only those of this name.
	 */
	for (size_t i = 0; i < g->nrels; i++)
		if (moved || (strcmp(g->rels[i].schema, schema) == 0 &&
			      strcmp(g->rels[i].table, table) == 0))
			g->rels[i].t = joingate_find(g, g->rels[i].schema, g->rels[i].table);
	return true;
}

bool joingate_set_left(struct joingate *g, const char *schema, const char *table, uint64_t lsn)
{
	struct joingate_table *t;

	if (!joingate_set(g, schema, table, JOINGATE_LEFT))
		return false;
	t = joingate_find(g, schema, table);
	t->left_lsn = lsn;
	return true;
}

enum joingate_kind joingate_kind_of(const struct joingate *g, const char *schema,
		const char *table)
{
	const struct joingate_table *t = joingate_find(g, schema, table);

	return t ? t->kind : JOINGATE_UNKNOWN_TABLE;
}

void joingate_guard(struct joingate *g, bool on)
{
	g->guard = on;
}

bool joingate_guarded(const struct joingate *g)
{
	return g->guard;
}

size_t joingate_count(const struct joingate *g)
{
	return g->ntables;
}

enum joingate_kind joingate_at(const struct joingate *g, size_t i, const char **schema,
		const char **table)
{
	*schema = g->tables[i].schema;
	*table = g->tables[i].table;
	return g->tables[i].kind;
}

size_t joingate_joining_count(const struct joingate *g)
{
	size_t n = 0;

	for (size_t i = 0; i < g->ntables; i++)
		n += g->tables[i].kind == JOINGATE_JOINING;
	return n;
}

bool joingate_in_txn(const struct joingate *g)
{
	return g->in_txn;
}

void joingate_restart(struct joingate *g)
{
	g->in_txn = false;
	g->begin_held = false;
}

void joingate_unknown(const struct joingate *g, const char **schema, const char **table)
{
	*schema = g->unknown_schema;
	*table = g->unknown_table;
}

uint64_t joingate_held(const struct joingate *g)
{
	return g->held;
}

/* ---- relations ---- */

static struct joingate_rel *joingate_rel(struct joingate *g, uint32_t oid)
{
	if (g->last_rel < g->nrels && g->rels[g->last_rel].oid == oid)
		return &g->rels[g->last_rel];
	for (size_t i = 0; i < g->nrels; i++) {
		if (g->rels[i].oid == oid) {
			g->last_rel = i;
			return &g->rels[i];
		}
	}
	return NULL;
}

static bool joingate_undone(const struct joingate *g, size_t i)
{
	for (size_t k = 0; k < g->nundo; k++)
		if (g->undo[k].i == i)
			return true;
	return false;
}

/* In the first pass, a relation known before the body keeps its former self in undo. */
static bool joingate_save(struct joingate *g, struct joingate_rel *r)
{
	size_t i = (size_t)(r - g->rels);
	struct joingate_undo *grown;

	if (!g->keep_undo || i >= g->nrels_run || joingate_undone(g, i))
		return true;
	grown = realloc(g->undo, (g->nundo + 1) * sizeof(*grown));
	if (!grown)
		return false;
	g->undo = grown;
	g->undo[g->nundo].i = i;
	g->undo[g->nundo++].was = *r;
	r->schema = r->table = NULL;
	r->msg = NULL;
	return true;
}

static void joingate_rel_clear(struct joingate_rel *r)
{
	free(r->schema);
	free(r->table);
	free(r->msg);
}

/* After the first pass: the relations before the body are forgotten (kept) or back (!kept). */
static void joingate_undo_end(struct joingate *g, bool kept)
{
	if (!kept) {
		for (size_t i = g->nrels_run; i < g->nrels; i++)
			joingate_rel_clear(&g->rels[i]);
		g->nrels = g->nrels_run;
	}
	for (size_t k = 0; k < g->nundo; k++) {
		struct joingate_rel *r = &g->rels[g->undo[k].i];

		if (kept) {
			joingate_rel_clear(&g->undo[k].was);
		} else {
			joingate_rel_clear(r);
			*r = g->undo[k].was;
		}
	}
	g->nundo = 0;
	g->keep_undo = false;
}

static bool joingate_learn(struct joingate *g, const uint8_t *msg, uint32_t len,
		const struct pgoutput_msg *m)
{
	struct joingate_rel *r = joingate_rel(g, m->relation.oid), *grown;
	uint8_t *copy = malloc(len);
	char *schema = strdup(m->relation.nspname), *table = strdup(m->relation.relname);

	if (!copy || !schema || !table || (r && !joingate_save(g, r)))
		goto oom;
	if (!r) {
		grown = realloc(g->rels, (g->nrels + 1) * sizeof(*grown));
		if (!grown)
			goto oom;
		g->rels = grown;
		r = &g->rels[g->nrels++];
		memset(r, 0, sizeof(*r));
		r->oid = m->relation.oid;
	}
	joingate_rel_clear(r);
	memcpy(copy, msg, len);
	r->schema = schema;
	r->table = table;
	r->msg = copy;
	r->len = len;
	r->sent_in_txn = false;
	r->t = joingate_find(g, schema, table);
	return true;
oom:
	free(copy);
	free(schema);
	free(table);
	return false;
}

/* The open transaction's commit LSN (its Begin's final_lsn). */
static uint64_t joingate_final_lsn(const struct joingate *g)
{
	return g->begin_len >= 9 ? (uint64_t)be32_load(g->begin + 1) << 32 | be32_load(g->begin + 5) : 0;
}

/* A relation's kind for the open transaction: a table that left is a member before it left. */
static enum joingate_kind joingate_rel_kind(struct joingate *g, uint32_t oid)
{
	const struct joingate_rel *r = joingate_rel(g, oid);

	if (!r || !r->t)
		return g->guard ? JOINGATE_UNKNOWN_TABLE : JOINGATE_MEMBER;
	if (r->t->kind == JOINGATE_LEFT)
		return joingate_final_lsn(g) < r->t->left_lsn || !g->guard ? JOINGATE_MEMBER :
		       JOINGATE_UNKNOWN_TABLE;
	return r->t->kind;
}

/* ---- output ---- */

static bool joingate_out(struct joingate *g, const uint8_t *msg, uint32_t len)
{
	uint8_t hdr[4] = { (uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8), (uint8_t)len };

	if (g->cap - g->len < (size_t)len + 4) {
		size_t cap = g->cap ? g->cap : 64 * 1024;
		uint8_t *grown;

		while (cap - g->len < (size_t)len + 4)
			cap *= 2;
		grown = realloc(g->buf, cap);
		if (!grown)
			return false;
		g->buf = grown;
		g->cap = cap;
	}
	memcpy(g->buf + g->len, hdr, 4);
	memcpy(g->buf + g->len + 4, msg, len);
	g->len += (size_t)len + 4;
	return true;
}

/* Holds one change of relation r, with the transaction's Begin and r's Relation first. */
static bool joingate_hold(struct joingate *g, struct joingate_rel *r, const uint8_t *msg,
		uint32_t len)
{
	if (!g->begin_held) {
		g->begin_held = true;
		for (size_t i = 0; i < g->ntables; i++)
			g->tables[i].txn_held = false;
		for (size_t i = 0; i < g->nrels; i++)
			g->rels[i].sent_in_txn = false;
	}
	if (!r->t->txn_held) {
		if (!g->hold(g->arg, r->schema, r->table, g->begin, g->begin_len))
			return false;
		r->t->txn_held = true;
	}
	if (!r->sent_in_txn) {
		if (!g->hold(g->arg, r->schema, r->table, r->msg, r->len))
			return false;
		r->sent_in_txn = true;
	}
	g->held++;
	return g->hold(g->arg, r->schema, r->table, msg, len);
}

/* The Commit, to each table whose Begin the open transaction held. */
static bool joingate_hold_commit(struct joingate *g, const uint8_t *msg, uint32_t len)
{
	for (size_t i = 0; i < g->ntables; i++) {
		if (!g->tables[i].txn_held)
			continue;
		g->tables[i].txn_held = false;
		if (!g->hold(g->arg, g->tables[i].schema, g->tables[i].table, msg, len))
			return false;
	}
	return true;
}

/* ---- the two passes ---- */


/* Walks the body's records: calls fn per message; false stops (err set by fn or here). */
typedef int (*joingate_visit_fn)(struct joingate *g, const uint8_t *msg, uint32_t len,
		char *err, size_t errlen);

enum { VISIT_NEXT, VISIT_STOP, VISIT_FAIL };

static int joingate_walk(struct joingate *g, const uint8_t *body, size_t len,
		joingate_visit_fn fn, char *err, size_t errlen)
{
	size_t pos = 0;

	while (pos < len) {
		uint32_t mlen;
		int v;

		if (len - pos < 4) {
			snprintf(err, errlen, "record header cut short at offset %zu", pos);
			return VISIT_FAIL;
		}
		mlen = be32_load(body + pos);
		if (mlen == 0 || mlen > len - pos - 4) {
			snprintf(err, errlen, "record length %u at offset %zu runs past the batch", mlen, pos);
			return VISIT_FAIL;
		}
		v = fn(g, body + pos + 4, mlen, err, errlen);
		if (v != VISIT_NEXT)
			return v;
		pos += 4 + (size_t)mlen;
	}
	return VISIT_NEXT;
}

static int joingate_malformed(const uint8_t *msg, enum pgoutput_status st, char *err, size_t errlen)
{
	snprintf(err, errlen, "malformed %s message: %s", pgoutput_msg_type_name(msg[0]),
		 pgoutput_status_str(st));
	return VISIT_FAIL;
}

/*
 * A change of a table the stream does not have stops the gate; one of a
 * relation no Relation message described is a gap in the stream: broken.
 */
static int joingate_stop_unknown(struct joingate *g, uint32_t oid, char *err, size_t errlen)
{
	const struct joingate_rel *r = joingate_rel(g, oid);

	if (!r) {
		snprintf(err, errlen, "a change of relation %u, which no Relation message described "
			 "(a gap in the stream)", oid);
		return VISIT_FAIL;
	}
	g->unknown_schema = r->schema;
	g->unknown_table = r->table;
	return VISIT_STOP;
}

/* First pass: learns relations, stops at the first change of an unknown table. */
static int joingate_scan(struct joingate *g, const uint8_t *msg, uint32_t len, char *err,
		size_t errlen)
{
	struct pgoutput_msg m;
	enum pgoutput_status st;

	switch (msg[0]) {
	case PGOUTPUT_BEGIN:
		if (len > sizeof(g->begin))
			return joingate_malformed(msg, PGOUTPUT_ERR_TRUNCATED, err, errlen);
		memcpy(g->begin, msg, len);
		g->begin_len = len;
		g->in_txn = true;
		g->begin_held = false;
		return VISIT_NEXT;
	case PGOUTPUT_COMMIT:
		g->in_txn = false;
		g->begin_held = false;
		return VISIT_NEXT;
	case PGOUTPUT_RELATION:
		st = pgoutput_decode(&g->dec, msg, len, &m, NULL, 0);
		if (st != PGOUTPUT_OK)
			return joingate_malformed(msg, st, err, errlen);
		if (!joingate_learn(g, msg, len, &m)) {
			snprintf(err, errlen, "out of memory");
			return VISIT_FAIL;
		}
		return VISIT_NEXT;
	case PGOUTPUT_INSERT:
	case PGOUTPUT_UPDATE:
	case PGOUTPUT_DELETE:
		if (len < 5)
			return joingate_malformed(msg, PGOUTPUT_ERR_TRUNCATED, err, errlen);
		if (joingate_rel_kind(g, be32_load(msg + 1)) == JOINGATE_UNKNOWN_TABLE)
			return joingate_stop_unknown(g, be32_load(msg + 1), err, errlen);
		return VISIT_NEXT;
	case PGOUTPUT_TRUNCATE:
		st = pgoutput_decode(&g->dec, msg, len, &m, NULL, 0);
		if (st != PGOUTPUT_OK)
			return joingate_malformed(msg, st, err, errlen);
		for (uint32_t i = 0; i < m.truncate.nrelids; i++)
			if (joingate_rel_kind(g, pgoutput_truncate_relid(&m, i)) == JOINGATE_UNKNOWN_TABLE)
				return joingate_stop_unknown(g, pgoutput_truncate_relid(&m, i), err, errlen);
		return VISIT_NEXT;
	default:
		return VISIT_NEXT;
	}
}

/* A Truncate split: the joining tables' relids held (one Truncate per table), the rest passed. */
static int joingate_split_truncate(struct joingate *g, const uint8_t *msg, uint32_t len,
		char *err, size_t errlen)
{
	struct pgoutput_msg m;
	enum pgoutput_status st = pgoutput_decode(&g->dec, msg, len, &m, NULL, 0);
	uint8_t one[10], *rest;
	uint32_t kept = 0;

	if (st != PGOUTPUT_OK)
		return joingate_malformed(msg, st, err, errlen);
	rest = malloc(6 + 4 * (size_t)m.truncate.nrelids);
	if (!rest)
		goto oom;
	for (uint32_t i = 0; i < m.truncate.nrelids; i++) {
		uint32_t relid = pgoutput_truncate_relid(&m, i);
		struct joingate_rel *r = joingate_rel(g, relid);

		if (joingate_rel_kind(g, relid) != JOINGATE_JOINING) {
			memcpy(rest + 6 + 4 * kept++, msg + 6 + 4 * i, 4);
			continue;
		}
		/* 'T', u32 count 1, u8 options, u32 relid */
		one[0] = PGOUTPUT_TRUNCATE;
		one[1] = one[2] = one[3] = 0;
		one[4] = 1;
		one[5] = m.truncate.options;
		memcpy(one + 6, msg + 6 + 4 * i, 4);
		if (!joingate_hold(g, r, one, sizeof(one)))
			goto oom_rest;
	}
	rest[0] = PGOUTPUT_TRUNCATE;
	rest[1] = (uint8_t)(kept >> 24);
	rest[2] = (uint8_t)(kept >> 16);
	rest[3] = (uint8_t)(kept >> 8);
	rest[4] = (uint8_t)kept;
	rest[5] = m.truncate.options;
	if (kept > 0 && !joingate_out(g, rest, 6 + 4 * kept))
		goto oom_rest;
	free(rest);
	return VISIT_NEXT;
oom_rest:
	free(rest);
oom:
	snprintf(err, errlen, "out of memory holding a change");
	return VISIT_FAIL;
}

static bool joingate_truncate_touches_joining(struct joingate *g, const uint8_t *msg, uint32_t len)
{
	struct pgoutput_msg m;

	if (pgoutput_decode(&g->dec, msg, len, &m, NULL, 0) != PGOUTPUT_OK)
		return false;
	for (uint32_t i = 0; i < m.truncate.nrelids; i++)
		if (joingate_rel_kind(g, pgoutput_truncate_relid(&m, i)) == JOINGATE_JOINING)
			return true;
	return false;
}

/* Second pass: passes or holds each message. */
static int joingate_gate(struct joingate *g, const uint8_t *msg, uint32_t len, char *err,
		size_t errlen)
{
	struct joingate_rel *r;
	struct pgoutput_msg m;
	enum pgoutput_status st;

	switch (msg[0]) {
	case PGOUTPUT_BEGIN:
		if (len > sizeof(g->begin)) {
			snprintf(err, errlen, "malformed Begin message: %u bytes", len);
			return VISIT_FAIL;
		}
		memcpy(g->begin, msg, len);
		g->begin_len = len;
		g->in_txn = true;
		g->begin_held = false;
		break;
	case PGOUTPUT_COMMIT:
		if (g->begin_held && !joingate_hold_commit(g, msg, len)) {
			snprintf(err, errlen, "out of memory holding a change");
			return VISIT_FAIL;
		}
		g->in_txn = false;
		g->begin_held = false;
		break;
	case PGOUTPUT_RELATION:
		/* learnt again where it stands: the changes before it keep the former one */
		st = pgoutput_decode(&g->dec, msg, len, &m, NULL, 0);
		if (st != PGOUTPUT_OK)
			return joingate_malformed(msg, st, err, errlen);
		if (!joingate_learn(g, msg, len, &m)) {
			snprintf(err, errlen, "out of memory");
			return VISIT_FAIL;
		}
		break;
	case PGOUTPUT_INSERT:
	case PGOUTPUT_UPDATE:
	case PGOUTPUT_DELETE:
		r = joingate_rel(g, be32_load(msg + 1));
		if (g->in_txn && r && r->t && r->t->kind == JOINGATE_JOINING) {
			if (!joingate_hold(g, r, msg, len)) {
				snprintf(err, errlen, "out of memory holding a change");
				return VISIT_FAIL;
			}
			return VISIT_NEXT;
		}
		break;
	case PGOUTPUT_TRUNCATE:
		if (g->in_txn && joingate_truncate_touches_joining(g, msg, len))
			return joingate_split_truncate(g, msg, len, err, errlen);
		break;
	default:
		break;
	}
	if (!joingate_out(g, msg, len)) {
		snprintf(err, errlen, "out of memory");
		return VISIT_FAIL;
	}
	return VISIT_NEXT;
}

enum joingate_result joingate_run(struct joingate *g, const uint8_t *body, size_t len,
		const uint8_t **out, size_t *out_len, char *err, size_t errlen)
{
	uint64_t held = g->held;
	bool in_txn = g->in_txn, begin_held = g->begin_held;
	uint8_t begin[sizeof(g->begin)];
	uint32_t begin_len = g->begin_len;
	int v;

	*out = body;
	*out_len = len;
	memcpy(begin, g->begin, sizeof(begin));
	g->nrels_run = g->nrels;
	g->keep_undo = true;
	v = joingate_walk(g, body, len, joingate_scan, err, errlen);
	if (v == VISIT_FAIL || (v == VISIT_NEXT && joingate_joining_count(g) == 0)) {
		/* nothing to take out: pass 1 kept the transaction's state */
		joingate_undo_end(g, true);
		return v == VISIT_FAIL ? JOINGATE_BROKEN : JOINGATE_OK;
	}
	/* the transaction's state as the body found it: pass 2 walks it again from there */
	joingate_undo_end(g, v == VISIT_STOP);
	g->in_txn = in_txn;
	g->begin_held = begin_held;
	g->begin_len = begin_len;
	memcpy(g->begin, begin, sizeof(begin));
	if (v == VISIT_STOP) {
		*out_len = 0;
		return JOINGATE_UNKNOWN;
	}
	g->len = 0;
	if (joingate_walk(g, body, len, joingate_gate, err, errlen) != VISIT_NEXT)
		return JOINGATE_BROKEN;
	if (g->held != held) {
		*out = g->buf;
		*out_len = g->len;
	}
	return JOINGATE_OK;
}
