/*
 * relcache.c — Relation messages per relation OID, to make batch bodies
 * self-contained (see relcache.h).
 *
 * An open-addressing table keyed by OID (never 0 in PostgreSQL) that only
 * grows; a relation's entry is replaced when a new Relation message for it
 * goes by.
 *
 * Inside a streamed transaction pgoutput sends the Relation messages it uses
 * with the transaction's xid, and once that transaction commits it counts
 * them as sent: later transactions carry none. So the Relation messages of a
 * streamed block are kept aside per xid (in their unstreamed form) and join
 * the table at its Stream Commit; a Stream Abort of the whole transaction
 * drops them, as pgoutput then sends them again.
 */
#include "gateway/stream/relcache.h"

#include <stdlib.h>
#include <string.h>

#include "common/be32.h"
#include "gateway/stream/streamspill.h"

struct relcache_entry {
	uint32_t relid;          /* 0: empty */
	uint8_t *msg;            /* the Relation message, without its length prefix */
	size_t len;
	uint64_t seen;           /* batch counter when it was last defined or prefixed */
};

/* A Relation message of an open streamed transaction. */
struct relcache_pending {
	uint32_t xid;
	uint32_t relid;
	uint8_t *msg;            /* unstreamed: the type byte, then what followed the xid */
	size_t len;
};

struct relcache {
	struct relcache_entry *v;
	size_t cap;              /* a power of two */
	size_t n;
	uint64_t batch;          /* counts relcache_complete() calls */
	bool in_block;           /* inside a streamed block (Stream Start ... Stream Stop) */
	bool type_pending;       /* the last body ended in the header of a message: its */
	size_t type_at;          /* type byte is at this offset of the next body */
	uint8_t *out;
	size_t out_cap;
	struct relcache_pending *pend;
	size_t n_pend;
	size_t cap_pend;
	uint8_t *carry;          /* a block's message cut between bodies, from its length on */
	size_t carry_len;
};

/* An output buffer this big or smaller is kept for the next batch. */
#define RELCACHE_KEEP (1u * 1024u * 1024u)

static void put_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

struct relcache *relcache_new(void)
{
	struct relcache *rc = calloc(1, sizeof(*rc));

	if (!rc)
		return NULL;
	rc->cap = 64;
	rc->v = calloc(rc->cap, sizeof(*rc->v));
	if (!rc->v) {
		free(rc);
		return NULL;
	}
	return rc;
}

void relcache_free(struct relcache *rc)
{
	if (!rc)
		return;
	for (size_t i = 0; i < rc->cap; i++)
		free(rc->v[i].msg);
	for (size_t i = 0; i < rc->n_pend; i++)
		free(rc->pend[i].msg);
	free(rc->pend);
	free(rc->carry);
	free(rc->v);
	free(rc->out);
	free(rc);
}

size_t relcache_count(const struct relcache *rc)
{
	return rc->n;
}

static struct relcache_entry *relcache_slot(struct relcache_entry *v, size_t cap, uint32_t relid)
{
	size_t i = (relid * 2654435761u) & (cap - 1);

	while (v[i].relid && v[i].relid != relid)
		i = (i + 1) & (cap - 1);
	return &v[i];
}

static bool relcache_grow(struct relcache *rc)
{
	size_t cap = rc->cap * 2;
	struct relcache_entry *v = calloc(cap, sizeof(*v));

	if (!v)
		return false;
	for (size_t i = 0; i < rc->cap; i++)
		if (rc->v[i].relid)
			*relcache_slot(v, cap, rc->v[i].relid) = rc->v[i];
	free(rc->v);
	rc->v = v;
	rc->cap = cap;
	return true;
}

static bool relcache_learn(struct relcache *rc, uint32_t relid, const uint8_t *msg, size_t len)
{
	struct relcache_entry *e;
	uint8_t *copy;

	if ((rc->n + 1) * 4 > rc->cap * 3 && !relcache_grow(rc))
		return false;
	copy = malloc(len);
	if (!copy)
		return false;
	memcpy(copy, msg, len);
	e = relcache_slot(rc->v, rc->cap, relid);
	if (!e->relid)
		rc->n++;
	free(e->msg);
	*e = (struct relcache_entry){ .relid = relid, .msg = copy, .len = len, .seen = rc->batch };
	return true;
}

static bool out_reserve(struct relcache *rc, size_t need)
{
	uint8_t *p;
	size_t cap = rc->out_cap ? rc->out_cap : 4096;

	if (need <= rc->out_cap)
		return true;
	while (cap < need)
		cap *= 2;
	p = realloc(rc->out, cap);
	if (!p)
		return false;
	rc->out = p;
	rc->out_cap = cap;
	return true;
}

/* Puts a relation's cached message in the prefix unless this body defined it already. */
static bool relcache_need(struct relcache *rc, uint32_t relid, uint64_t batch, size_t *prefix)
{
	struct relcache_entry *e = relcache_slot(rc->v, rc->cap, relid);

	if (!e->relid || e->seen == batch)
		return true;  /* unknown here (the sink says so), or defined already */
	e->seen = batch;
	if (!out_reserve(rc, *prefix + 4 + e->len))
		return false;
	put_u32(rc->out + *prefix, (uint32_t)e->len);
	memcpy(rc->out + *prefix + 4, e->msg, e->len);
	*prefix += 4 + e->len;
	return true;
}

/* A streamed block's Relation message ('R', xid, relid, ...): kept aside for its xid. */
static bool relcache_pend(struct relcache *rc, const uint8_t *m, size_t mlen)
{
	uint32_t xid = be32_load(m + 1), relid = be32_load(m + 5);
	struct relcache_pending *p = NULL;
	uint8_t *copy = malloc(mlen - 4);

	if (!copy)
		return false;
	copy[0] = 'R';
	memcpy(copy + 1, m + 5, mlen - 5);
	for (size_t i = 0; i < rc->n_pend && !p; i++)
		if (rc->pend[i].xid == xid && rc->pend[i].relid == relid)
			p = &rc->pend[i];
	if (!p) {
		if (rc->n_pend == rc->cap_pend) {
			size_t cap = rc->cap_pend ? rc->cap_pend * 2 : 8;
			struct relcache_pending *v = realloc(rc->pend, cap * sizeof(*v));

			if (!v) {
				free(copy);
				return false;
			}
			rc->pend = v;
			rc->cap_pend = cap;
		}
		p = &rc->pend[rc->n_pend++];
		p->msg = NULL;
	}
	free(p->msg);
	*p = (struct relcache_pending){ .xid = xid, .relid = relid, .msg = copy, .len = mlen - 4 };
	return true;
}

/*
 * A streamed transaction ends: at its commit its Relation messages join the
 * table (not stamped with a batch: a later change in this body still gets
 * one in front); at its abort they go. xid 0: every one goes (a new source
 * connection streams open transactions again from their start).
 */
static bool relcache_stream_end(struct relcache *rc, uint32_t xid, bool commit)
{
	bool ok = true;
	size_t kept = 0;

	for (size_t i = 0; i < rc->n_pend; i++) {
		struct relcache_pending *p = &rc->pend[i];

		if (xid != 0 && p->xid != xid) {
			rc->pend[kept++] = *p;
			continue;
		}
		if (commit && ok) {
			ok = relcache_learn(rc, p->relid, p->msg, p->len);
			if (ok)
				relcache_slot(rc->v, rc->cap, p->relid)->seen = 0;
		}
		free(p->msg);
	}
	rc->n_pend = kept;
	return ok;
}

/* A message of this type begins: streamed blocks open and close. */
static void relcache_block_state(struct relcache *rc, uint8_t type)
{
	if (type == 'S')
		rc->in_block = true;
	else if (type == 'E' || type == STREAMSPILL_MSG_VOID)
		rc->in_block = false;  /* a void ends a block the source connection left open */
}

/*
 * Learns a whole message, or notes the relations a change needs; false when
 * out of memory. A streamed block needs nothing in front (pgoutput sends
 * each streamed transaction the Relation messages it uses inside it, and the
 * sink gets all of its blocks whenever it gets its commit); its Relation
 * messages count from its Stream Commit on.
 */
static bool relcache_message(struct relcache *rc, const uint8_t *m, size_t mlen, uint64_t batch,
		size_t *prefix)
{
	bool was_in_block = rc->in_block;

	relcache_block_state(rc, m[0]);
	if (m[0] == STREAMSPILL_MSG_VOID)
		return relcache_stream_end(rc, 0, false);
	if (was_in_block && rc->in_block)
		return m[0] == 'R' && mlen >= 9 ? relcache_pend(rc, m, mlen) : true;
	if (was_in_block || rc->in_block)
		return true;
	if (m[0] == 'c' && mlen >= 5)
		return relcache_stream_end(rc, be32_load(m + 1), true);
	if (m[0] == 'A' && mlen >= 9 && be32_load(m + 1) == be32_load(m + 5))
		return relcache_stream_end(rc, be32_load(m + 1), false);
	if (m[0] == 'R' && mlen >= 5)
		return relcache_learn(rc, be32_load(m + 1), m, mlen);
	if ((m[0] == 'I' || m[0] == 'U' || m[0] == 'D') && mlen >= 5)
		return relcache_need(rc, be32_load(m + 1), batch, prefix);
	if (m[0] == 'T' && mlen >= 6) {
		/* Truncate: number of relations, options, then their OIDs */
		uint32_t count = be32_load(m + 1);

		for (size_t i = 0, p = 6; i < count && p + 4 <= mlen; i++, p += 4)
			if (!relcache_need(rc, be32_load(m + p), batch, prefix))
				return false;
	}
	return true;
}

/* The longest Relation message kept while it is cut between bodies. */
#define RELCACHE_CARRY_MAX (16u * 1024u * 1024u)

static bool carry_append(struct relcache *rc, const uint8_t *p, size_t n)
{
	uint8_t *c = realloc(rc->carry, rc->carry_len + n);

	if (!c)
		return false;
	memcpy(c + rc->carry_len, p, n);
	rc->carry = c;
	rc->carry_len += n;
	return true;
}

/*
 * The first lead bytes of a body go on with the message the last body
 * ended in: taken into the carry while it may be a block's Relation
 * message, which is kept aside once whole. False when out of memory.
 */
static bool carry_take(struct relcache *rc, const uint8_t *body, size_t lead)
{
	size_t used = 0, want;

	while (rc->carry_len < 5 && used < lead)
		if (!carry_append(rc, body + used++, 1))
			return false;
	if (rc->carry_len < 5)
		return true;            /* still no type byte: the next body has it */
	want = 4 + (size_t)be32_load(rc->carry);
	if (rc->carry[4] != 'R' || want > RELCACHE_CARRY_MAX || want < rc->carry_len) {
		rc->carry_len = 0;      /* not a Relation message: nothing to keep */
		return true;
	}
	if (!carry_append(rc, body + used, lead - used < want - rc->carry_len ?
					 lead - used : want - rc->carry_len))
		return false;
	if (rc->carry_len < want)
		return true;
	rc->carry_len = 0;
	return want - 4 < 9 || relcache_pend(rc, rc->carry + 4, want - 4);
}

bool relcache_complete(struct relcache *rc, const uint8_t *body, size_t len, size_t lead,
		bool continues, const uint8_t **out, size_t *out_len)
{
	uint64_t batch = ++rc->batch;
	size_t prefix = 0, off, at;

	*out = body;
	*out_len = len;
	/* the last result is spent: a buffer grown for a large value is not kept */
	if (rc->out_cap > RELCACHE_KEEP) {
		free(rc->out);
		rc->out = NULL;
		rc->out_cap = 0;
	}
	if (lead > len)
		return false;
	if (rc->carry_len && lead == 0)
		rc->carry_len = 0;      /* the message it was cut from never went on */
	else if (rc->carry_len && !carry_take(rc, body, lead))
		return false;
	if (rc->type_pending && rc->type_at < lead)
		relcache_block_state(rc, body[rc->type_at]);
	rc->type_pending = false;
	/* the Relation messages go before the first message outside a streamed block */
	at = rc->in_block ? len : lead;
	/*
	 * One pass: a relation defined in the body counts as defined from there
	 * on (entries are stamped with this batch number); a change to one not
	 * yet defined in this body needs the cached message in front, copied as
	 * it is now (a later Relation message in the body may replace it). The
	 * first bytes of a change that goes on in the next piece say which
	 * relation it needs; a Relation message cut in two is not learnt.
	 */
	for (off = lead; off + 4 <= len;) {
		uint32_t mlen = be32_load(body + off);
		const uint8_t *m = body + off + 4;

		if (mlen == 0)
			return false;
		if (at == len && !rc->in_block)
			at = off;
		if (mlen > len - off - 4) {
			size_t have = len - off - 4;

			if (!continues || (have > 0 && m[0] == 'R' && !rc->in_block))
				return false;
			if (have >= 5 && (m[0] == 'I' || m[0] == 'U' || m[0] == 'D') && !rc->in_block &&
			    !relcache_need(rc, be32_load(m + 1), batch, &prefix))
				return false;
			/* a block's Relation message cut here is kept whole by the next body */
			if (rc->in_block && (have == 0 || m[0] == 'R') &&
			    !carry_append(rc, body + off, len - off))
				return false;
			if (have > 0)
				relcache_block_state(rc, m[0]);
			off = len;
			break;
		}
		if (!relcache_message(rc, m, mlen, batch, &prefix))
			return false;
		off += 4 + mlen;
	}
	if (off != len && !continues)
		return false;
	if (off < len) {
		/* the body ends inside a message's length: its type byte comes next */
		rc->type_pending = true;
		rc->type_at = 4 - (len - off);
		if (rc->in_block && !carry_append(rc, body + off, len - off))
			return false;
	}
	if (prefix == 0)
		return true;
	if (!out_reserve(rc, prefix + len))
		return false;
	/* the Relation messages go where the body's first message outside a block starts */
	memmove(rc->out + at, rc->out, prefix);
	memcpy(rc->out, body, at);
	memcpy(rc->out + at + prefix, body + at, len - at);
	*out = rc->out;
	*out_len = prefix + len;
	return true;
}
