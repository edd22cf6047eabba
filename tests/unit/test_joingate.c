/*
 * test_joingate.c — the sink's gate for tables that join a stream later:
 * members pass byte for byte, a joining table's changes are held as whole
 * transactions of their own (Begin, its Relation, the changes, Commit), an
 * unknown table stops the gate before anything is held, a table that left
 * passes up to its LSN, Truncates are split, transactions span bodies, and
 * malformed bodies are refused. Bodies are built here from pgoutput's
 * documented message formats.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "replicator/joingate.h"

/* ---- building batches ---- */

struct buf {
	uint8_t data[4096];
	size_t len;
};

static void put(struct buf *b, const void *p, size_t n)
{
	assert_true(b->len + n <= sizeof(b->data));
	memcpy(b->data + b->len, p, n);
	b->len += n;
}

static void put8(struct buf *b, uint8_t v)
{
	put(b, &v, 1);
}

static void put16(struct buf *b, uint16_t v)
{
	uint8_t p[2] = { (uint8_t)(v >> 8), (uint8_t)v };

	put(b, p, 2);
}

static void put32(struct buf *b, uint32_t v)
{
	uint8_t p[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v };

	put(b, p, 4);
}

static void put64(struct buf *b, uint64_t v)
{
	put32(b, (uint32_t)(v >> 32));
	put32(b, (uint32_t)v);
}

static void putstr(struct buf *b, const char *s)
{
	put(b, s, strlen(s) + 1);
}

/* Appends one message (m) to batch as a record: u32 length + bytes. */
static void record(struct buf *batch, const struct buf *m)
{
	put32(batch, (uint32_t)m->len);
	put(batch, m->data, m->len);
}

static void begin(struct buf *batch, uint64_t final_lsn)
{
	struct buf m = { .len = 0 };

	put8(&m, 'B');
	put64(&m, final_lsn);
	put64(&m, 700000000000000);
	put32(&m, 1234);
	record(batch, &m);
}

static void commit(struct buf *batch, uint64_t lsn)
{
	struct buf m = { .len = 0 };

	put8(&m, 'C');
	put8(&m, 0);
	put64(&m, lsn);
	put64(&m, lsn + 0x30);
	put64(&m, 700000000000000);
	record(batch, &m);
}

/* A Relation message of natts columns c0, c1, ... */
static void relation_n(struct buf *batch, uint32_t oid, const char *nsp, const char *rel,
		uint16_t natts)
{
	struct buf m = { .len = 0 };
	char name[8];

	put8(&m, 'R');
	put32(&m, oid);
	putstr(&m, nsp);
	putstr(&m, rel);
	put8(&m, 'd');
	put16(&m, natts);
	for (uint16_t i = 0; i < natts; i++) {
		snprintf(name, sizeof(name), "c%u", (unsigned)i);
		put8(&m, i == 0);
		putstr(&m, name);
		put32(&m, 23);
		put32(&m, 0xffffffffu);
	}
	record(batch, &m);
}

static void relation(struct buf *batch, uint32_t oid, const char *nsp, const char *rel)
{
	relation_n(batch, oid, nsp, rel, 1);
}

static void tuple(struct buf *m, const char *value)
{
	put16(m, 1);
	put8(m, 't');
	put32(m, (uint32_t)strlen(value));
	put(m, value, strlen(value));
}

static void insert(struct buf *batch, uint32_t oid, const char *value)
{
	struct buf m = { .len = 0 };

	put8(&m, 'I');
	put32(&m, oid);
	put8(&m, 'N');
	tuple(&m, value);
	record(batch, &m);
}

static void update(struct buf *batch, uint32_t oid, const char *value)
{
	struct buf m = { .len = 0 };

	put8(&m, 'U');
	put32(&m, oid);
	put8(&m, 'N');
	tuple(&m, value);
	record(batch, &m);
}

static void delete(struct buf *batch, uint32_t oid, const char *value)
{
	struct buf m = { .len = 0 };

	put8(&m, 'D');
	put32(&m, oid);
	put8(&m, 'K');
	tuple(&m, value);
	record(batch, &m);
}

static void truncate_(struct buf *batch, const uint32_t *oids, uint32_t n, uint8_t options)
{
	struct buf m = { .len = 0 };

	put8(&m, 'T');
	put32(&m, n);
	put8(&m, options);
	for (uint32_t i = 0; i < n; i++)
		put32(&m, oids[i]);
	record(batch, &m);
}

/* The message types of a batch, in order, e.g. "BRIIC". */
static void types(const uint8_t *body, size_t len, char *out)
{
	size_t pos = 0, n = 0;

	while (pos + 4 <= len) {
		uint32_t l = (uint32_t)body[pos] << 24 | (uint32_t)body[pos + 1] << 16 |
			     (uint32_t)body[pos + 2] << 8 | body[pos + 3];
		out[n++] = (char)body[pos + 4];
		pos += 4 + l;
	}
	assert_int_equal(pos, len);
	out[n] = '\0';
}

/* The relation OIDs of the batch's changes (a Truncate lists its own), e.g. "1 2 2". */
static void relids(const uint8_t *body, size_t len, char *out)
{
	size_t pos = 0;

	out[0] = '\0';
	while (pos + 4 <= len) {
		uint32_t l = (uint32_t)body[pos] << 24 | (uint32_t)body[pos + 1] << 16 |
			     (uint32_t)body[pos + 2] << 8 | body[pos + 3];
		const uint8_t *m = body + pos + 4;
		char one[16];

		if (m[0] == 'I' || m[0] == 'U' || m[0] == 'D') {
			snprintf(one, sizeof(one), "%s%u", out[0] ? " " : "",
				 (unsigned)((uint32_t)m[1] << 24 | (uint32_t)m[2] << 16 |
					    (uint32_t)m[3] << 8 | m[4]));
			strcat(out, one);
		} else if (m[0] == 'T') {
			uint32_t n = (uint32_t)m[1] << 24 | (uint32_t)m[2] << 16 | (uint32_t)m[3] << 8 | m[4];

			assert_int_equal(l, 6 + 4 * n);
			for (uint32_t i = 0; i < n; i++) {
				const uint8_t *p = m + 6 + 4 * i;

				snprintf(one, sizeof(one), "%sT%u", out[0] ? " " : "",
					 (unsigned)((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
						    (uint32_t)p[2] << 8 | p[3]));
				strcat(out, one);
			}
		}
		pos += 4 + l;
	}
}

#define M_OID 16401u     /* public.m, a member */
#define J_OID 16402u     /* public.j, joining */
#define K_OID 16403u     /* public.k, joining too */
#define X_OID 16404u     /* public.x, unknown */
#define L_OID 16405u     /* public.l, out of the publication as of 0x3000 */

/* ---- what hold() got ---- */

struct held_msg {
	char table[32];          /* "" when hold() named none */
	uint8_t *msg;
	size_t len;
};

struct holds {
	struct held_msg m[64];
	size_t n;
};

static bool hold_cb(void *arg, const char *schema, const char *table, const uint8_t *msg,
		size_t len)
{
	struct holds *h = arg;

	assert_true(h->n < sizeof(h->m) / sizeof(h->m[0]));
	assert_true(len > 0);
	if (schema)
		snprintf(h->m[h->n].table, sizeof(h->m[h->n].table), "%s.%s", schema, table);
	else
		h->m[h->n].table[0] = '\0';
	h->m[h->n].msg = malloc(len);
	assert_non_null(h->m[h->n].msg);
	memcpy(h->m[h->n].msg, msg, len);
	h->m[h->n].len = len;
	h->n++;
	return true;
}

static void holds_clear(struct holds *h)
{
	for (size_t i = 0; i < h->n; i++)
		free(h->m[i].msg);
	h->n = 0;
}

/* The held messages as "j:B j:R j:I j:C" (the table's name without its schema, "-" for none). */
static void held_str(const struct holds *h, char *out, size_t outlen)
{
	out[0] = '\0';
	for (size_t i = 0; i < h->n; i++) {
		const char *dot = strchr(h->m[i].table, '.');
		char one[48];

		snprintf(one, sizeof(one), "%s%s:%c", i ? " " : "", dot ? dot + 1 : "-",
			 (char)h->m[i].msg[0]);
		assert_true(strlen(out) + strlen(one) < outlen);
		strcat(out, one);
	}
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* A Relation message's column count (after 'R', oid, two names and the identity). */
static uint16_t relation_natts(const uint8_t *msg, size_t len)
{
	size_t pos = 5;

	pos += strlen((const char *)msg + pos) + 1;
	pos += strlen((const char *)msg + pos) + 1;
	pos++;
	assert_true(pos + 2 <= len);
	return (uint16_t)(msg[pos] << 8 | msg[pos + 1]);
}

/* The record of type `type` number `nth` (0 first) in a body: its message. */
static const uint8_t *find_msg(const uint8_t *body, size_t len, char type, int nth, size_t *mlen)
{
	size_t pos = 0;

	while (pos + 4 <= len) {
		uint32_t l = get32(body + pos);

		if (body[pos + 4] == type && nth-- == 0) {
			*mlen = l;
			return body + pos + 4;
		}
		pos += 4 + l;
	}
	fail_msg("no %c message number %d", type, nth);
	return NULL;
}

/* ---- the gate ---- */

static struct joingate *gate(struct holds *h)
{
	struct joingate *g = joingate_new(hold_cb, h);

	assert_non_null(g);
	h->n = 0;
	assert_true(joingate_set(g, "public", "m", JOINGATE_MEMBER));
	assert_true(joingate_set(g, "public", "j", JOINGATE_JOINING));
	joingate_guard(g, true);
	return g;
}

static void run(struct joingate *g, const struct buf *in, const uint8_t **out, size_t *out_len)
{
	char err[256] = "";

	assert_int_equal(joingate_run(g, in->data, in->len, out, out_len, err, sizeof(err)),
			 JOINGATE_OK);
	assert_string_equal(err, "");
}

static void run_unknown(struct joingate *g, const struct buf *in, const char *schema,
		const char *table)
{
	const uint8_t *out;
	size_t len;
	const char *s, *t;
	char err[256] = "";

	assert_int_equal(joingate_run(g, in->data, in->len, &out, &len, err, sizeof(err)),
			 JOINGATE_UNKNOWN);
	assert_int_equal(len, 0);
	joingate_unknown(g, &s, &t);
	assert_string_equal(s, schema);
	assert_string_equal(t, table);
}

/* ---- tests ---- */

static void test_member_passes_untouched(void **state)
{
	struct holds h;
	struct joingate *g = gate(&h);
	struct buf b = { .len = 0 };
	const uint32_t m_only[] = { M_OID };
	const uint8_t *out;
	size_t len;

	(void)state;
	begin(&b, 0x100);
	relation(&b, M_OID, "public", "m");
	relation(&b, J_OID, "public", "j");
	insert(&b, M_OID, "1");
	update(&b, M_OID, "2");
	delete(&b, M_OID, "3");
	truncate_(&b, m_only, 1, 0);
	commit(&b, 0x100);
	run(g, &b, &out, &len);
	assert_ptr_equal(out, b.data);
	assert_int_equal(len, b.len);
	assert_int_equal(h.n, 0);
	assert_int_equal(joingate_held(g), 0);
	assert_false(joingate_in_txn(g));

	/* no table joining: the same */
	assert_true(joingate_set(g, "public", "j", JOINGATE_MEMBER));
	run(g, &b, &out, &len);
	assert_ptr_equal(out, b.data);
	assert_int_equal(len, b.len);
	assert_int_equal(h.n, 0);
	joingate_free(g);
}

static void test_guard_off_passes_unknown(void **state)
{
	struct holds h;
	struct joingate *g = gate(&h);
	struct buf b = { .len = 0 };
	const uint8_t *out;
	size_t len;
	char t[32], r[64];

	(void)state;
	joingate_guard(g, false);
	assert_false(joingate_guarded(g));
	begin(&b, 0x100);
	relation(&b, X_OID, "public", "x");
	insert(&b, X_OID, "1");
	insert(&b, 99999, "2");
	commit(&b, 0x100);
	run(g, &b, &out, &len);
	assert_ptr_equal(out, b.data);
	assert_int_equal(len, b.len);

	/* with a joining change beside it: x's change stays in the output */
	b.len = 0;
	begin(&b, 0x200);
	relation(&b, J_OID, "public", "j");
	insert(&b, X_OID, "3");
	insert(&b, J_OID, "4");
	commit(&b, 0x200);
	run(g, &b, &out, &len);
	types(out, len, t);
	relids(out, len, r);
	assert_string_equal(t, "BRIC");
	assert_string_equal(r, "16404");
	assert_int_equal(joingate_held(g), 1);
	holds_clear(&h);
	joingate_free(g);
}

static void test_guard_stops_at_unknown(void **state)
{
	struct holds h;
	struct joingate *g = gate(&h);
	struct buf b = { .len = 0 };
	const uint8_t *out;
	size_t len;
	char s[128];

	(void)state;
	assert_true(joingate_guarded(g));
	/* j's change comes first: the first pass finds x before anything is held */
	begin(&b, 0x100);
	relation(&b, M_OID, "public", "m");
	relation(&b, J_OID, "public", "j");
	relation(&b, X_OID, "public", "x");
	insert(&b, M_OID, "1");
	insert(&b, J_OID, "2");
	insert(&b, X_OID, "3");
	commit(&b, 0x100);
	run_unknown(g, &b, "public", "x");
	assert_int_equal(h.n, 0);
	assert_int_equal(joingate_held(g), 0);
	assert_false(joingate_in_txn(g));

	/* the caller makes it joining and sends the batch again: both are held */
	assert_true(joingate_set(g, "public", "x", JOINGATE_JOINING));
	assert_int_equal(joingate_joining_count(g), 2);
	run(g, &b, &out, &len);
	held_str(&h, s, sizeof(s));
	assert_string_equal(s, "j:B j:R j:I x:B x:R x:I j:C x:C");
	types(out, len, s);
	assert_string_equal(s, "BRRRIC");
	assert_int_equal(joingate_held(g), 2);
	holds_clear(&h);

	/* a change of a relation no Relation message named: a gap, never a table to join */
	b.len = 0;
	begin(&b, 0x200);
	delete(&b, 77777, "1");
	commit(&b, 0x200);
	{
		char err[256] = "";

		assert_int_equal(joingate_run(g, b.data, b.len, &out, &len, err, sizeof(err)),
				 JOINGATE_BROKEN);
		assert_non_null(strstr(err, "relation 77777, which no Relation message described"));
	}
	assert_int_equal(h.n, 0);
	joingate_free(g);
}

static void test_unknown_leaves_the_open_transaction(void **state)
{
	struct holds h;
	struct joingate *g = gate(&h);
	struct buf b1 = { .len = 0 }, b2 = { .len = 0 };
	const uint8_t *out;
	size_t len;
	char s[128];

	(void)state;
	begin(&b1, 0x100);
	relation(&b1, J_OID, "public", "j");
	insert(&b1, J_OID, "1");
	run(g, &b1, &out, &len);
	assert_true(joingate_in_txn(g));

	/* the first transaction ends in the body that stops at x */
	commit(&b2, 0x100);
	begin(&b2, 0x200);
	relation(&b2, X_OID, "public", "x");
	insert(&b2, X_OID, "2");
	commit(&b2, 0x200);
	run_unknown(g, &b2, "public", "x");
	assert_true(joingate_in_txn(g));
	held_str(&h, s, sizeof(s));
	assert_string_equal(s, "j:B j:R j:I");

	assert_true(joingate_set(g, "public", "x", JOINGATE_JOINING));
	run(g, &b2, &out, &len);
	held_str(&h, s, sizeof(s));
	assert_string_equal(s, "j:B j:R j:I j:C x:B x:R x:I x:C");
	assert_int_equal(get64(h.m[4].msg + 1), 0x200);
	types(out, len, s);
	assert_string_equal(s, "CBRC");
	assert_false(joingate_in_txn(g));
	holds_clear(&h);
	joingate_free(g);
}

static void test_joining_change_is_held(void **state)
{
	struct holds h;
	struct joingate *g = gate(&h);
	struct buf b = { .len = 0 };
	const uint8_t *out, *m;
	size_t len, mlen;
	char s[128], r[64];

	(void)state;
	begin(&b, 0x500);
	relation(&b, M_OID, "public", "m");
	relation(&b, J_OID, "public", "j");
	insert(&b, M_OID, "1");
	insert(&b, J_OID, "2");
	update(&b, J_OID, "3");
	delete(&b, M_OID, "4");
	delete(&b, J_OID, "5");
	commit(&b, 0x500);
	run(g, &b, &out, &len);
	assert_ptr_not_equal(out, b.data);
	types(out, len, s);
	relids(out, len, r);
	assert_string_equal(s, "BRRIDC");
	assert_string_equal(r, "16401 16401");
	/* the output keeps the rest byte for byte */
	m = find_msg(out, len, 'B', 0, &mlen);
	assert_memory_equal(m - 4, b.data, 4 + 21);

	held_str(&h, s, sizeof(s));
	assert_string_equal(s, "j:B j:R j:I j:U j:D j:C");
	assert_string_equal(h.m[0].table, "public.j");
	assert_int_equal(h.m[0].len, 21);
	assert_memory_equal(h.m[0].msg, b.data + 4, 21);
	m = find_msg(b.data, b.len, 'R', 1, &mlen);
	assert_int_equal(h.m[1].len, mlen);
	assert_memory_equal(h.m[1].msg, m, mlen);
	assert_int_equal(get32(h.m[2].msg + 1), J_OID);
	assert_int_equal(h.m[5].len, 26);
	assert_int_equal(get64(h.m[5].msg + 2), 0x500);
	assert_int_equal(joingate_held(g), 3);
	assert_false(joingate_in_txn(g));
	holds_clear(&h);
	joingate_free(g);
}

static void test_relation_once_per_transaction(void **state)
{
	struct holds h;
	struct joingate *g = gate(&h);
	struct buf b = { .len = 0 };
	const uint8_t *out;
	size_t len;
	char s[160];

	(void)state;
	relation(&b, J_OID, "public", "j");
	relation(&b, M_OID, "public", "m");
	begin(&b, 0x100);
	insert(&b, J_OID, "1");
	insert(&b, J_OID, "2");
	commit(&b, 0x100);
	begin(&b, 0x200);
	update(&b, J_OID, "3");
	commit(&b, 0x200);
	begin(&b, 0x300);
	insert(&b, M_OID, "4");
	commit(&b, 0x300);
	run(g, &b, &out, &len);
	held_str(&h, s, sizeof(s));
	assert_string_equal(s, "j:B j:R j:I j:I j:C j:B j:R j:U j:C");
	assert_int_equal(get64(h.m[5].msg + 1), 0x200);
	types(out, len, s);
	assert_string_equal(s, "RRBCBCBIC");
	holds_clear(&h);
	joingate_free(g);
}

static void test_new_relation_message_where_it_stands(void **state)
{
	struct holds h;
	struct joingate *g = gate(&h);
	struct buf b = { .len = 0 }, c = { .len = 0 };
	const uint8_t *out;
	size_t len;
	char s[160];

	(void)state;
	/* a column added between two transactions of one body, and within one */
	begin(&b, 0x100);
	relation_n(&b, J_OID, "public", "j", 1);
	insert(&b, J_OID, "1");
	relation_n(&b, J_OID, "public", "j", 2);
	insert(&b, J_OID, "2");
	commit(&b, 0x100);
	begin(&b, 0x200);
	insert(&b, J_OID, "3");
	commit(&b, 0x200);
	run(g, &b, &out, &len);
	held_str(&h, s, sizeof(s));
	assert_string_equal(s, "j:B j:R j:I j:R j:I j:C j:B j:R j:I j:C");
	assert_int_equal(relation_natts(h.m[1].msg, h.m[1].len), 1);
	assert_int_equal(relation_natts(h.m[3].msg, h.m[3].len), 2);
	assert_int_equal(relation_natts(h.m[7].msg, h.m[7].len), 2);
	types(out, len, s);
	assert_string_equal(s, "BRRCBC");
	holds_clear(&h);

	/* a relation renamed from a member to a joining table mid-body */
	begin(&c, 0x300);
	relation(&c, 20000, "public", "m");
	insert(&c, 20000, "1");
	relation(&c, 20000, "public", "j");
	insert(&c, 20000, "2");
	commit(&c, 0x300);
	run(g, &c, &out, &len);
	held_str(&h, s, sizeof(s));
	assert_string_equal(s, "j:B j:R j:I j:C");
	assert_memory_equal(h.m[2].msg + h.m[2].len - 1, "2", 1);
	types(out, len, s);
	assert_string_equal(s, "BRIRC");
	holds_clear(&h);
	joingate_free(g);
}

static void test_two_joining_tables(void **state)
{
	struct holds h;
	struct joingate *g = gate(&h);
	struct buf b = { .len = 0 };
	const uint8_t *out;
	size_t len;
	char s[160];

	(void)state;
	assert_true(joingate_set(g, "public", "k", JOINGATE_JOINING));
	relation(&b, J_OID, "public", "j");
	relation(&b, K_OID, "public", "k");
	begin(&b, 0x100);
	insert(&b, J_OID, "1");
	insert(&b, K_OID, "2");
	insert(&b, J_OID, "3");
	commit(&b, 0x100);
	/* k has nothing in this one: no Commit of its own */
	begin(&b, 0x200);
	insert(&b, J_OID, "4");
	commit(&b, 0x200);
	run(g, &b, &out, &len);
	held_str(&h, s, sizeof(s));
	assert_string_equal(s, "j:B j:R j:I k:B k:R k:I j:I j:C k:C j:B j:R j:I j:C");
	for (size_t i = 0; i < h.n; i++)
		assert_true(h.m[i].table[0] != '\0');
	types(out, len, s);
	assert_string_equal(s, "RRBCBC");
	assert_int_equal(joingate_held(g), 4);
	holds_clear(&h);
	joingate_free(g);
}

static void test_transaction_across_bodies(void **state)
{
	struct holds h;
	struct joingate *g = gate(&h);
	struct buf b1 = { .len = 0 }, b2 = { .len = 0 }, b3 = { .len = 0 };
	const uint8_t *out;
	size_t len;
	char s[128];

	(void)state;
	begin(&b1, 0x700);
	relation(&b1, M_OID, "public", "m");
	relation(&b1, J_OID, "public", "j");
	insert(&b1, J_OID, "1");
	insert(&b1, M_OID, "2");
	run(g, &b1, &out, &len);
	types(out, len, s);
	assert_string_equal(s, "BRRI");
	assert_true(joingate_in_txn(g));
	held_str(&h, s, sizeof(s));
	assert_string_equal(s, "j:B j:R j:I");

	/* a body of member changes only, still inside */
	insert(&b2, M_OID, "3");
	run(g, &b2, &out, &len);
	assert_ptr_equal(out, b2.data);
	assert_true(joingate_in_txn(g));

	update(&b3, J_OID, "1");
	commit(&b3, 0x700);
	run(g, &b3, &out, &len);
	types(out, len, s);
	assert_string_equal(s, "C");
	held_str(&h, s, sizeof(s));
	assert_string_equal(s, "j:B j:R j:I j:U j:C");
	assert_false(joingate_in_txn(g));
	holds_clear(&h);
	joingate_free(g);
}

static void test_truncate_is_split(void **state)
{
	struct holds h;
	struct joingate *g = gate(&h);
	struct buf b = { .len = 0 };
	const uint32_t both[] = { J_OID, M_OID }, j_only[] = { J_OID };
	const uint8_t *out, *m;
	size_t len, mlen;
	char s[128], r[64];

	(void)state;
	relation(&b, M_OID, "public", "m");
	relation(&b, J_OID, "public", "j");
	begin(&b, 0x800);
	truncate_(&b, both, 2, 0x01);
	commit(&b, 0x800);
	run(g, &b, &out, &len);
	types(out, len, s);
	relids(out, len, r);
	assert_string_equal(s, "RRBTC");
	assert_string_equal(r, "T16401");
	m = find_msg(out, len, 'T', 0, &mlen);
	assert_int_equal(mlen, 10);
	assert_int_equal(m[5], 0x01);
	held_str(&h, s, sizeof(s));
	assert_string_equal(s, "j:B j:R j:T j:C");
	assert_int_equal(h.m[2].len, 10);
	assert_int_equal(get32(h.m[2].msg + 1), 1);
	assert_int_equal(h.m[2].msg[5], 0x01);
	assert_int_equal(get32(h.m[2].msg + 6), J_OID);
	assert_int_equal(joingate_held(g), 1);
	holds_clear(&h);

	/* j alone: no Truncate left in the output */
	b.len = 0;
	begin(&b, 0x900);
	truncate_(&b, j_only, 1, 0);
	commit(&b, 0x900);
	run(g, &b, &out, &len);
	types(out, len, s);
	assert_string_equal(s, "BC");
	held_str(&h, s, sizeof(s));
	assert_string_equal(s, "j:B j:R j:T j:C");
	holds_clear(&h);
	joingate_free(g);
}

static void test_left_table(void **state)
{
	struct holds h;
	struct joingate *g = gate(&h);
	struct buf b = { .len = 0 };
	const uint8_t *out;
	size_t len;

	(void)state;
	assert_true(joingate_set_left(g, "public", "l", 0x3000));
	assert_int_equal(joingate_kind_of(g, "public", "l"), JOINGATE_LEFT);
	/* committed before it left: passes */
	relation(&b, L_OID, "public", "l");
	begin(&b, 0x2fff);
	insert(&b, L_OID, "1");
	commit(&b, 0x2fff);
	run(g, &b, &out, &len);
	assert_ptr_equal(out, b.data);
	assert_int_equal(len, b.len);

	/* at or after: the table came back, it is unknown's */
	b.len = 0;
	begin(&b, 0x3000);
	insert(&b, L_OID, "2");
	commit(&b, 0x3000);
	run_unknown(g, &b, "public", "l");
	assert_int_equal(h.n, 0);

	/* without the guard it passes */
	joingate_guard(g, false);
	run(g, &b, &out, &len);
	assert_ptr_equal(out, b.data);
	joingate_free(g);
}

static void test_restart_mid_transaction(void **state)
{
	struct holds h;
	struct joingate *g = gate(&h);
	struct buf b1 = { .len = 0 }, b2 = { .len = 0 };
	const uint8_t *out;
	size_t len;
	char s[128];

	(void)state;
	begin(&b1, 0x100);
	relation(&b1, J_OID, "public", "j");
	insert(&b1, J_OID, "1");
	run(g, &b1, &out, &len);
	assert_true(joingate_in_txn(g));
	joingate_restart(g);
	assert_false(joingate_in_txn(g));

	/* the source sends it again from its Begin: Begin and Relation are held anew */
	begin(&b2, 0x100);
	insert(&b2, J_OID, "1");
	commit(&b2, 0x100);
	run(g, &b2, &out, &len);
	held_str(&h, s, sizeof(s));
	assert_string_equal(s, "j:B j:R j:I j:B j:R j:I j:C");
	types(out, len, s);
	assert_string_equal(s, "BC");
	assert_false(joingate_in_txn(g));
	holds_clear(&h);
	joingate_free(g);
}

static void test_malformed_bodies(void **state)
{
	struct holds h;
	struct joingate *g = gate(&h);
	struct buf b = { .len = 0 };
	const uint8_t *out;
	size_t len;
	char err[256];
	const uint8_t zero_len[] = { 0, 0, 0, 0 };
	const uint8_t short_hdr[] = { 0, 0, 1 };
	const uint8_t past_end[] = { 0, 0, 0, 9, 'C', 0 };
	const uint8_t short_insert[] = { 0, 0, 0, 3, 'I', 0, 1 };
	const uint8_t bad_relation[] = { 0, 0, 0, 6, 'R', 0, 0, 0, 1, 'p' };
	const uint8_t bad_truncate[] = { 0, 0, 0, 6, 'T', 0, 0, 0, 2, 0 };

	(void)state;
	assert_int_equal(joingate_run(g, zero_len, sizeof(zero_len), &out, &len, err, sizeof(err)),
			 JOINGATE_BROKEN);
	assert_int_equal(joingate_run(g, short_hdr, sizeof(short_hdr), &out, &len, err, sizeof(err)),
			 JOINGATE_BROKEN);
	assert_non_null(strstr(err, "cut short"));
	assert_int_equal(joingate_run(g, past_end, sizeof(past_end), &out, &len, err, sizeof(err)),
			 JOINGATE_BROKEN);
	assert_non_null(strstr(err, "runs past"));
	assert_int_equal(joingate_run(g, bad_relation, sizeof(bad_relation), &out, &len, err,
				      sizeof(err)), JOINGATE_BROKEN);
	assert_non_null(strstr(err, "RELATION"));
	begin(&b, 0x100);
	relation(&b, J_OID, "public", "j");
	run(g, &b, &out, &len);
	assert_int_equal(joingate_run(g, short_insert, sizeof(short_insert), &out, &len, err,
				      sizeof(err)), JOINGATE_BROKEN);
	assert_int_equal(joingate_run(g, bad_truncate, sizeof(bad_truncate), &out, &len, err,
				      sizeof(err)), JOINGATE_BROKEN);
	assert_non_null(strstr(err, "TRUNCATE"));
	/* a good change after a malformed one in the same body: nothing held */
	b.len = 0;
	insert(&b, J_OID, "1");
	put(&b, short_hdr, sizeof(short_hdr));
	assert_int_equal(joingate_run(g, b.data, b.len, &out, &len, err, sizeof(err)),
			 JOINGATE_BROKEN);
	assert_int_equal(h.n, 0);
	/* an empty body is fine */
	assert_int_equal(joingate_run(g, NULL, 0, &out, &len, err, sizeof(err)), JOINGATE_OK);
	assert_int_equal(len, 0);
	joingate_free(g);
}

static void test_table_list(void **state)
{
	struct holds h;
	struct joingate *g = gate(&h);
	const char *s, *t;
	bool seen[3] = { false, false, false };

	(void)state;
	assert_true(joingate_set_left(g, "other", "l", 0x3000));
	assert_int_equal(joingate_count(g), 3);
	assert_int_equal(joingate_joining_count(g), 1);
	for (size_t i = 0; i < joingate_count(g); i++) {
		enum joingate_kind k = joingate_at(g, i, &s, &t);

		if (strcmp(t, "m") == 0) {
			assert_string_equal(s, "public");
			assert_int_equal(k, JOINGATE_MEMBER);
			seen[0] = true;
		} else if (strcmp(t, "j") == 0) {
			assert_string_equal(s, "public");
			assert_int_equal(k, JOINGATE_JOINING);
			seen[1] = true;
		} else {
			assert_string_equal(s, "other");
			assert_string_equal(t, "l");
			assert_int_equal(k, JOINGATE_LEFT);
			seen[2] = true;
		}
	}
	assert_true(seen[0] && seen[1] && seen[2]);
	assert_int_equal(joingate_kind_of(g, "public", "m"), JOINGATE_MEMBER);
	assert_int_equal(joingate_kind_of(g, "public", "j"), JOINGATE_JOINING);
	assert_int_equal(joingate_kind_of(g, "public", "l"), JOINGATE_UNKNOWN_TABLE);
	assert_int_equal(joingate_kind_of(g, "other", "m"), JOINGATE_UNKNOWN_TABLE);

	/* a kind changes in place; UNKNOWN_TABLE forgets */
	assert_true(joingate_set(g, "public", "j", JOINGATE_MEMBER));
	assert_int_equal(joingate_count(g), 3);
	assert_int_equal(joingate_joining_count(g), 0);
	assert_true(joingate_set(g, "public", "m", JOINGATE_UNKNOWN_TABLE));
	assert_int_equal(joingate_count(g), 2);
	assert_int_equal(joingate_kind_of(g, "public", "m"), JOINGATE_UNKNOWN_TABLE);
	assert_true(joingate_set(g, "public", "nothing", JOINGATE_UNKNOWN_TABLE));
	assert_int_equal(joingate_count(g), 2);
	joingate_guard(g, false);
	assert_false(joingate_guarded(g));
	joingate_guard(g, true);
	assert_true(joingate_guarded(g));
	joingate_free(g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_member_passes_untouched),
		cmocka_unit_test(test_guard_off_passes_unknown),
		cmocka_unit_test(test_guard_stops_at_unknown),
		cmocka_unit_test(test_unknown_leaves_the_open_transaction),
		cmocka_unit_test(test_joining_change_is_held),
		cmocka_unit_test(test_relation_once_per_transaction),
		cmocka_unit_test(test_new_relation_message_where_it_stands),
		cmocka_unit_test(test_two_joining_tables),
		cmocka_unit_test(test_transaction_across_bodies),
		cmocka_unit_test(test_truncate_is_split),
		cmocka_unit_test(test_left_table),
		cmocka_unit_test(test_restart_mid_transaction),
		cmocka_unit_test(test_malformed_bodies),
		cmocka_unit_test(test_table_list),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
