/*
 * test_retain.c — a replica's retained batches: whole transactions across
 * calls coalesced into records with exact metas and bodies, seeking by LSN,
 * self-contained records, transactions taken again dropped (one beginning
 * at the end is not), large transactions in continuation records and cut
 * again, a message larger than a piece joined back, resuming (the floor, a
 * hole, an unfinished transaction forgotten), reopening (the same source, a
 * torn tail, another source), trimming by age and by size (a checkpoint per
 * segment, thinned when full, records found on opening kept from then), and
 * malformed bodies refused.
 *
 * Each test works in its own directory from mkdtemp(), removed afterwards.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gateway/stream/msgjoin.h"
#include "gateway/stream/retain.h"
#include "gateway/stream/spool.h"
#include "replicator/pgoutput.h"
#include "spool_fixture.h"

#define T0 INT64_C(1700000000000000)     /* now_us of the first take */
#define SEC INT64_C(1000000)
#define LSN_BASE UINT64_C(0x1000000)
#define REL_A 16384u
#define REL_B 16390u
#define MIB (1024u * 1024u)
#define BEGIN_BYTES 25                   /* framed: length and message */
#define COMMIT_BYTES 30
#define INSERT_OVERHEAD 17               /* framed Insert without its value */
#define SEG_HDR 16
#define REC_OVERHEAD 48                  /* a spool record's length, CRC and meta */

/* --- pgoutput bodies ----------------------------------------------------- */

struct body {
	uint8_t *b;
	size_t len, cap;
};

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)(v >> 32));
	put32(p + 4, (uint32_t)v);
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static void reserve(struct body *b, size_t n)
{
	if (b->cap - b->len >= n)
		return;
	while (b->cap - b->len < n)
		b->cap = b->cap ? 2 * b->cap : 4096;
	b->b = realloc(b->b, b->cap);
	assert_non_null(b->b);
}

/* Appends a message of len bytes; returns where it starts (after its length). */
static uint8_t *add_msg(struct body *b, size_t len)
{
	uint8_t *m;

	reserve(b, 4 + len);
	put32(b->b + b->len, (uint32_t)len);
	m = b->b + b->len + 4;
	memset(m, 0, len);
	b->len += 4 + len;
	return m;
}

static void add_bytes(struct body *b, const uint8_t *p, size_t len)
{
	reserve(b, len);
	memcpy(b->b + b->len, p, len);
	b->len += len;
}

static void body_free(struct body *b)
{
	free(b->b);
	*b = (struct body){ 0 };
}

/* Transaction i: its Begin's final_lsn, its end, its commit time (PostgreSQL µs). */
static uint64_t txn_lsn(unsigned i)
{
	return LSN_BASE + (uint64_t)i * 0x100;
}

static uint64_t txn_end(unsigned i)
{
	return txn_lsn(i) + 0x30;
}

static int64_t txn_time(unsigned i)
{
	return INT64_C(750000000000000) + i;
}

static void add_begin_at(struct body *b, uint64_t final_lsn, int64_t pg_time)
{
	uint8_t *m = add_msg(b, 21);

	m[0] = 'B';
	put64(m + 1, final_lsn);
	put64(m + 9, (uint64_t)pg_time);
	put32(m + 17, 1000);
}

static void add_commit_at(struct body *b, uint64_t lsn, uint64_t end, int64_t pg_time)
{
	uint8_t *m = add_msg(b, 26);

	m[0] = 'C';
	put64(m + 2, lsn);
	put64(m + 10, end);
	put64(m + 18, (uint64_t)pg_time);
}

static void add_begin(struct body *b, unsigned i)
{
	add_begin_at(b, txn_lsn(i), txn_time(i));
}

static void add_commit(struct body *b, unsigned i)
{
	add_commit_at(b, txn_lsn(i), txn_end(i), txn_time(i));
}

/* A Relation message: public.<relid's name>, one integer key column "id". */
static void add_relation(struct body *b, uint32_t relid)
{
	static const uint8_t rest[] = { 'd', 0, 1, 1, 'i', 'd', 0, 0, 0, 0, 23, 0xff, 0xff, 0xff, 0xff };
	char name[16];
	size_t nlen = (size_t)snprintf(name, sizeof(name), "t%" PRIu32, relid) + 1;
	uint8_t *m = add_msg(b, 1 + 4 + 7 + nlen + sizeof(rest));

	m[0] = 'R';
	put32(m + 1, relid);
	memcpy(m + 5, "public", 7);
	memcpy(m + 12, name, nlen);
	memcpy(m + 12 + nlen, rest, sizeof(rest));
}

/* An Insert of one text value of value_len bytes (INSERT_OVERHEAD + value_len framed). */
static void add_insert(struct body *b, uint32_t relid, size_t value_len)
{
	uint8_t *m = add_msg(b, INSERT_OVERHEAD - 4 + value_len);

	m[0] = 'I';
	put32(m + 1, relid);
	m[5] = 'N';
	m[7] = 1;
	m[8] = 't';
	put32(m + 9, (uint32_t)value_len);
	memset(m + 13, (int)('a' + value_len % 26), value_len);
}

/* Transaction i with one Insert of value_len bytes into relid. */
static void add_txn(struct body *b, unsigned i, uint32_t relid, size_t value_len)
{
	add_begin(b, i);
	add_insert(b, relid, value_len);
	add_commit(b, i);
}

static struct body relation_bytes(uint32_t relid)
{
	struct body b = { 0 };

	add_relation(&b, relid);
	return b;
}

/* --- the retain ------------------------------------------------------------ */

static struct retain *open_retain(const struct fx *f, const char *source)
{
	char err[512] = "";
	struct retain *r = retain_open(f->dir, source, err, sizeof(err));

	if (r == NULL)
		fail_msg("retain_open: %s", err);
	return r;
}

static void take(struct retain *r, const struct body *b, int64_t now_us)
{
	char err[512] = "";

	if (!retain_take(r, b->b, b->len, now_us, err, sizeof(err)))
		fail_msg("retain_take: %s", err);
}

static void take_txn(struct retain *r, unsigned i, uint32_t relid, size_t value_len, int64_t now_us)
{
	struct body b = { 0 };

	add_txn(&b, i, relid, value_len);
	take(r, &b, now_us);
	body_free(&b);
}

static void resume(struct retain *r, uint64_t applied_lsn)
{
	char err[512] = "";

	if (!retain_resume(r, applied_lsn, err, sizeof(err)))
		fail_msg("retain_resume: %s", err);
}

static int trim(struct retain *r, int64_t now_us, int64_t keep_us, uint64_t max_bytes)
{
	char err[512] = "";
	int n = retain_trim(r, now_us, keep_us, max_bytes, UINT64_MAX, err, sizeof(err));

	if (n < 0)
		fail_msg("retain_trim: %s", err);
	return n;
}

struct rec {
	struct spool_meta m;
	uint8_t *body;
	size_t len;
};

struct recs {
	struct rec v[64];
	size_t n;
	uint64_t prev;               /* where the first continues from */
};

/* Every record a reader resuming after resume_lsn gets. */
static void read_from(struct retain *r, uint64_t resume_lsn, struct recs *out)
{
	char err[512] = "";
	struct spool_cursor *c = spool_cursor_new(retain_spool(r), err, sizeof(err));
	const uint8_t *body;
	int rc;

	if (c == NULL)
		fail_msg("spool_cursor_new: %s", err);
	out->n = 0;
	if (spool_cursor_seek(c, resume_lsn, &out->prev, err, sizeof(err)) != SPOOL_SEEK_OK)
		fail_msg("spool_cursor_seek: %s", err);
	while ((rc = spool_cursor_read(c, &out->v[out->n].m, &body, &out->v[out->n].len, err,
				       sizeof(err))) == 1) {
		struct rec *e = &out->v[out->n++];

		assert_true(out->n < 64);
		e->body = malloc(e->len ? e->len : 1);
		assert_non_null(e->body);
		memcpy(e->body, body, e->len);
	}
	if (rc < 0)
		fail_msg("spool_cursor_read: %s", err);
	spool_cursor_free(c);
}

static void recs_free(struct recs *rs)
{
	for (size_t i = 0; i < rs->n; i++)
		free(rs->v[i].body);
	rs->n = 0;
}

static void expect_meta(const struct rec *e, uint64_t first_lsn, uint64_t commit_end,
		uint32_t transactions, uint32_t flags)
{
	assert_int_equal(e->m.first_lsn, first_lsn);
	assert_int_equal(e->m.commit_end_lsn, commit_end);
	assert_int_equal(e->m.transactions, transactions);
	assert_int_equal(e->m.flags, flags);
}

/* The body of records [from, to) joined. */
static struct body joined(const struct recs *rs, size_t from, size_t to)
{
	struct body b = { 0 };

	for (size_t i = from; i < to; i++)
		add_bytes(&b, rs->v[i].body, rs->v[i].len);
	return b;
}

static void expect_body(const struct body *got, const struct body *want)
{
	assert_int_equal(got->len, want->len);
	assert_memory_equal(got->b, want->b, want->len);
}

/* --- tests ---------------------------------------------------------------- */

static void test_whole_transactions_across_calls(void **state)
{
	struct fx *f = *state;
	struct retain *r = open_retain(f, "primary-a");
	struct body b1 = { 0 }, b2 = { 0 }, b3 = { 0 }, rel = relation_bytes(REL_A), want = { 0 }, got;
	struct recs rs;
	size_t whole;

	resume(r, txn_end(0));
	/* T1 (which defines the relation), T2 and the start of T3 in one call */
	add_begin(&b1, 1);
	add_relation(&b1, REL_A);
	add_insert(&b1, REL_A, 10);
	add_commit(&b1, 1);
	add_txn(&b1, 2, REL_A, 20);
	whole = b1.len;
	add_begin(&b1, 3);
	add_insert(&b1, REL_A, 30);
	take(r, &b1, T0);
	assert_int_equal(spool_records(retain_spool(r)), 1);
	assert_int_equal(retain_end_lsn(r), txn_end(2));
	/* the rest of T3 over two calls: nothing appended until its Commit */
	add_insert(&b2, REL_A, 40);
	take(r, &b2, T0 + SEC);
	assert_int_equal(spool_records(retain_spool(r)), 1);
	assert_int_equal(retain_end_lsn(r), txn_end(2));
	add_insert(&b3, REL_A, 50);
	add_commit(&b3, 3);
	take(r, &b3, T0 + 2 * SEC);
	assert_int_equal(retain_end_lsn(r), txn_end(3));

	read_from(r, 0, &rs);
	assert_int_equal(rs.n, 2);
	assert_int_equal(rs.prev, txn_end(0));
	expect_meta(&rs.v[0], txn_lsn(1), txn_end(2), 2, 0);
	assert_int_equal(rs.v[0].m.commit_time_us, txn_time(2) + PGOUTPUT_EPOCH_OFFSET_US);
	assert_int_equal(rs.v[0].m.spooled_at_us, T0);
	got = joined(&rs, 0, 1);
	assert_int_equal(got.len, whole);
	assert_memory_equal(got.b, b1.b, whole);
	body_free(&got);
	expect_meta(&rs.v[1], txn_lsn(3), txn_end(3), 1, 0);
	assert_int_equal(rs.v[1].m.commit_time_us, txn_time(3) + PGOUTPUT_EPOCH_OFFSET_US);
	assert_int_equal(rs.v[1].m.spooled_at_us, T0 + 2 * SEC);
	/* the second record carries the relation in front */
	add_bytes(&want, rel.b, rel.len);
	add_bytes(&want, b1.b + whole, b1.len - whole);
	add_bytes(&want, b2.b, b2.len);
	add_bytes(&want, b3.b, b3.len);
	got = joined(&rs, 1, 2);
	expect_body(&got, &want);
	body_free(&got);
	recs_free(&rs);
	body_free(&b1);
	body_free(&b2);
	body_free(&b3);
	body_free(&rel);
	body_free(&want);
	retain_close(r);
}

enum { MANY = 2000, TXN_BYTES = BEGIN_BYTES + INSERT_OVERHEAD + 100 + COMMIT_BYTES };
/* transactions per record: the first Commit at or past the target ends it */
#define PER_RECORD ((RETAIN_RECORD_TARGET + TXN_BYTES - 1) / TXN_BYTES)

static void test_seek_by_lsn_finds_the_record_holding_the_next_transaction(void **state)
{
	struct fx *f = *state;
	struct retain *r = open_retain(f, "primary-a");
	struct body b = { 0 };
	struct recs rs;
	char err[512] = "";
	struct spool_cursor *c;

	resume(r, txn_end(0));
	for (unsigned i = 1; i <= MANY; i++)
		add_txn(&b, i, REL_A, 100);
	take(r, &b, T0);
	read_from(r, 0, &rs);
	assert_int_equal(rs.n, (MANY + PER_RECORD - 1) / PER_RECORD);
	for (size_t k = 0; k < rs.n; k++) {
		unsigned first = (unsigned)(k * PER_RECORD) + 1;
		unsigned count = k + 1 < rs.n ? PER_RECORD : MANY - (unsigned)(k * PER_RECORD);

		expect_meta(&rs.v[k], txn_lsn(first), txn_end(first + count - 1), count, 0);
		assert_int_equal(rs.v[k].len, (size_t)count * TXN_BYTES);
		assert_memory_equal(rs.v[k].body, b.b + (size_t)(first - 1) * TXN_BYTES, rs.v[k].len);
	}
	recs_free(&rs);

	c = spool_cursor_new(retain_spool(r), err, sizeof(err));
	assert_non_null(c);
	for (unsigned k = 1; k < MANY; k++) {
		/* T(k+1) is the first the reader lacks: the record holding it, never a later one */
		unsigned rec = k / PER_RECORD, first = rec * PER_RECORD + 1;
		struct spool_meta m;
		const uint8_t *body;
		size_t len;
		uint64_t prev;

		assert_int_equal(spool_cursor_seek(c, txn_end(k), &prev, err, sizeof(err)), SPOOL_SEEK_OK);
		assert_int_equal(prev, rec == 0 ? txn_end(0) : txn_end(first - 1));
		assert_true(prev <= txn_end(k));
		assert_int_equal(spool_cursor_read(c, &m, &body, &len, err, sizeof(err)), 1);
		assert_int_equal(get64(body + 5), txn_lsn(first));    /* its first Begin */
		assert_true(get64(body + 5) <= txn_lsn(k + 1));
		assert_true(m.commit_end_lsn >= txn_end(k + 1));
	}
	{
		struct spool_meta m;
		const uint8_t *body;
		size_t len;
		uint64_t prev;

		assert_int_equal(spool_cursor_seek(c, txn_end(MANY), &prev, err, sizeof(err)), SPOOL_SEEK_OK);
		assert_int_equal(prev, txn_end(MANY));
		assert_int_equal(spool_cursor_read(c, &m, &body, &len, err, sizeof(err)), 0);
	}
	spool_cursor_free(c);
	body_free(&b);
	retain_close(r);
}

static void test_records_carry_the_relations_they_use(void **state)
{
	struct fx *f = *state;
	struct retain *r = open_retain(f, "primary-a");
	struct body b1 = { 0 }, b2 = { 0 }, want = { 0 }, rel_a = relation_bytes(REL_A),
		    rel_b = relation_bytes(REL_B), got;
	struct recs rs;

	resume(r, txn_end(0));
	add_begin(&b1, 1);
	add_relation(&b1, REL_A);
	add_insert(&b1, REL_A, 5);
	add_relation(&b1, REL_B);
	add_insert(&b1, REL_B, 5);
	add_commit(&b1, 1);
	take(r, &b1, T0);
	/* a record that starts later: B first, then A, each in front once */
	add_txn(&b2, 2, REL_B, 7);
	add_begin(&b2, 3);
	add_insert(&b2, REL_A, 8);
	add_insert(&b2, REL_B, 9);
	add_commit(&b2, 3);
	take(r, &b2, T0 + SEC);
	read_from(r, txn_end(1), &rs);
	assert_int_equal(rs.n, 1);
	expect_meta(&rs.v[0], txn_lsn(2), txn_end(3), 2, 0);
	add_bytes(&want, rel_b.b, rel_b.len);
	add_bytes(&want, rel_a.b, rel_a.len);
	add_bytes(&want, b2.b, b2.len);
	got = joined(&rs, 0, 1);
	expect_body(&got, &want);
	body_free(&got);
	recs_free(&rs);
	body_free(&b1);
	body_free(&b2);
	body_free(&want);
	body_free(&rel_a);
	body_free(&rel_b);
	retain_close(r);
}

static void test_a_transaction_taken_again_is_dropped(void **state)
{
	struct fx *f = *state;
	struct retain *r = open_retain(f, "primary-a");
	struct body b1 = { 0 }, b2 = { 0 }, b3 = { 0 }, b4 = { 0 }, want = { 0 },
		    rel = relation_bytes(REL_A), got;
	struct recs rs;
	uint64_t last = 0;

	resume(r, txn_end(0));
	for (unsigned i = 1; i <= 3; i++)
		add_txn(&b1, i, REL_A, 10);
	take(r, &b1, T0);
	/* after a reconnect: T2 (defining the relation again, as a new session does), T3, then T4 */
	add_begin(&b2, 2);
	add_relation(&b2, REL_A);
	add_insert(&b2, REL_A, 10);
	add_commit(&b2, 2);
	add_txn(&b2, 3, REL_A, 10);
	add_txn(&b2, 4, REL_A, 44);
	take(r, &b2, T0 + SEC);
	assert_int_equal(retain_end_lsn(r), txn_end(4));
	/* T4 again, split over two calls, then T5 */
	add_begin(&b3, 4);
	add_insert(&b3, REL_A, 44);
	take(r, &b3, T0 + 2 * SEC);
	add_commit(&b4, 4);
	add_txn(&b4, 5, REL_A, 55);
	take(r, &b4, T0 + 3 * SEC);

	read_from(r, 0, &rs);
	assert_int_equal(rs.n, 3);
	expect_meta(&rs.v[0], txn_lsn(1), txn_end(3), 3, 0);
	/* T4 alone, after the relation T2 defined */
	expect_meta(&rs.v[1], txn_lsn(4), txn_end(4), 1, 0);
	add_bytes(&want, rel.b, rel.len);
	add_bytes(&want, b2.b + b2.len - (BEGIN_BYTES + INSERT_OVERHEAD + 44 + COMMIT_BYTES),
		  BEGIN_BYTES + INSERT_OVERHEAD + 44 + COMMIT_BYTES);
	got = joined(&rs, 1, 2);
	expect_body(&got, &want);
	body_free(&got);
	/* T5 alone, nothing of T4's second copy */
	expect_meta(&rs.v[2], txn_lsn(5), txn_end(5), 1, 0);
	want.len = 0;
	add_bytes(&want, rel.b, rel.len);
	add_bytes(&want, b4.b + COMMIT_BYTES, b4.len - COMMIT_BYTES);
	got = joined(&rs, 2, 3);
	expect_body(&got, &want);
	body_free(&got);
	recs_free(&rs);
	/* one that begins at the end (a joining table's held changes, moving nowhere) is new */
	body_free(&b3);
	add_begin_at(&b3, txn_end(5), txn_time(6));
	add_insert(&b3, REL_A, 6);
	add_commit_at(&b3, txn_end(5), txn_end(5), txn_time(6));
	take(r, &b3, T0 + 4 * SEC);
	read_from(r, 0, &rs);
	assert_int_equal(rs.n, 4);
	expect_meta(&rs.v[3], txn_end(5), txn_end(5), 1, 0);
	for (size_t i = 0; i < rs.n; i++) {
		assert_true(rs.v[i].m.commit_end_lsn >= last);
		last = rs.v[i].m.commit_end_lsn;
	}
	recs_free(&rs);
	body_free(&b1);
	body_free(&b2);
	body_free(&b3);
	body_free(&b4);
	body_free(&want);
	body_free(&rel);
	retain_close(r);
}

/* Framed Inserts of exactly 1 MiB. */
#define MIB_VALUE (MIB - INSERT_OVERHEAD)

static void test_large_transaction_in_continuation_records_and_cut(void **state)
{
	struct fx *f = *state;
	struct retain *r = open_retain(f, "primary-a");
	struct body calls[4] = { { 0 } }, all = { 0 }, t3 = { 0 }, part = { 0 }, got;
	struct recs rs;
	char err[512] = "";

	resume(r, txn_end(0));
	take_txn(r, 1, REL_A, 10, T0);
	add_begin(&calls[0], 2);
	for (int i = 0; i < 20; i++)
		add_insert(&calls[i / 5], REL_A, MIB_VALUE);
	add_commit(&calls[3], 2);
	for (int i = 0; i < 4; i++) {
		take(r, &calls[i], T0 + (i + 1) * SEC);
		add_bytes(&all, calls[i].b, calls[i].len);
		if (i == 1) {
			/* the 8th Insert would take it past a piece: Begin and 7 MiB went */
			assert_int_equal(spool_records(retain_spool(r)), 2);
			assert_int_equal(retain_end_lsn(r), txn_end(1));
		}
	}
	assert_int_equal(retain_end_lsn(r), txn_end(2));
	read_from(r, txn_end(1), &rs);
	assert_int_equal(rs.n, 3);
	expect_meta(&rs.v[0], txn_lsn(2), 0, 0, 0);
	assert_int_equal(rs.v[0].len, BEGIN_BYTES + 7 * MIB);
	expect_meta(&rs.v[1], 0, 0, 0, 0);
	assert_int_equal(rs.v[1].len, 8 * MIB);
	expect_meta(&rs.v[2], 0, txn_end(2), 1, 0);
	assert_int_equal(rs.v[2].len, 5 * MIB + COMMIT_BYTES);
	got = joined(&rs, 0, 3);
	expect_body(&got, &all);
	body_free(&got);
	recs_free(&rs);

	/* T3 dropped by the apply half-way: its piece is cut, nothing of it is read */
	add_begin(&t3, 3);
	for (int i = 0; i < 10; i++)
		add_insert(&t3, REL_A, MIB_VALUE);
	add_bytes(&part, t3.b, t3.len);
	take(r, &part, T0 + 10 * SEC);
	assert_int_equal(spool_records(retain_spool(r)), 5);
	assert_true(retain_cut(r, err, sizeof(err)));
	assert_int_equal(spool_records(retain_spool(r)), 4);
	assert_int_equal(retain_end_lsn(r), txn_end(2));
	read_from(r, txn_end(2), &rs);
	assert_int_equal(rs.n, 0);
	/* and taken again whole */
	add_commit(&t3, 3);
	take(r, &t3, T0 + 11 * SEC);
	assert_int_equal(retain_end_lsn(r), txn_end(3));
	read_from(r, txn_end(2), &rs);
	assert_int_equal(rs.n, 2);
	expect_meta(&rs.v[0], txn_lsn(3), 0, 0, 0);
	expect_meta(&rs.v[1], 0, txn_end(3), 1, 0);
	got = joined(&rs, 0, 2);
	expect_body(&got, &t3);
	body_free(&got);
	recs_free(&rs);
	for (int i = 0; i < 4; i++)
		body_free(&calls[i]);
	body_free(&all);
	body_free(&t3);
	body_free(&part);
	retain_close(r);
}

static void test_a_message_larger_than_a_piece_is_cut_and_joins_back(void **state)
{
	struct fx *f = *state;
	struct retain *r = open_retain(f, "primary-a");
	struct body b = { 0 }, b2 = { 0 }, rel = relation_bytes(REL_A), want = { 0 }, got = { 0 };
	size_t big = 2 * RETAIN_PIECE_BYTES + 1000, commit_at;
	struct msgjoin j;
	struct recs rs;
	char why[256];

	resume(r, txn_end(0));
	add_begin(&b, 1);
	add_relation(&b, REL_A);
	add_insert(&b, REL_A, big - INSERT_OVERHEAD);
	commit_at = b.len;
	add_commit(&b, 1);
	add_txn(&b, 2, REL_A, 2);
	take(r, &b, T0);
	read_from(r, 0, &rs);
	assert_int_equal(rs.n, 3);
	expect_meta(&rs.v[0], txn_lsn(1), 0, 0, SPOOL_FLAG_CONTINUES);
	assert_int_equal(rs.v[0].len, RETAIN_PIECE_BYTES);
	expect_meta(&rs.v[1], 0, 0, 0, SPOOL_FLAG_CONTINUES);
	assert_int_equal(rs.v[1].len, RETAIN_PIECE_BYTES);
	/*
	 * It starts with the rest of the message: a continuation, though T2
	 * begins in it; T2 needs the relation, which goes after the rest.
	 */
	expect_meta(&rs.v[2], 0, txn_end(2), 2, 0);
	assert_int_equal(rs.v[2].len, b.len - 2 * RETAIN_PIECE_BYTES + rel.len);
	add_bytes(&want, b.b, commit_at);
	add_bytes(&want, rel.b, rel.len);
	add_bytes(&want, b.b + commit_at, b.len - commit_at);
	/* a sink joins the pieces into the messages taken */
	msgjoin_init(&j, 3 * RETAIN_PIECE_BYTES);
	for (size_t i = 0; i < rs.n; i++) {
		const uint8_t *out;
		size_t out_len;

		assert_int_equal(msgjoin_take(&j, rs.v[i].body, rs.v[i].len,
					      (rs.v[i].m.flags & SPOOL_FLAG_CONTINUES) != 0, &out, &out_len,
					      why, sizeof(why)), MSGJOIN_OK);
		add_bytes(&got, out, out_len);
		msgjoin_done(&j);
	}
	msgjoin_free(&j);
	expect_body(&got, &want);
	body_free(&got);
	recs_free(&rs);
	want.len = 0;
	/* the relation defined in the first piece goes in front of the next record */
	add_txn(&b2, 3, REL_A, 3);
	take(r, &b2, T0 + SEC);
	read_from(r, txn_end(2), &rs);
	assert_int_equal(rs.n, 1);
	add_bytes(&want, rel.b, rel.len);
	add_bytes(&want, b2.b, b2.len);
	got = joined(&rs, 0, 1);
	expect_body(&got, &want);
	body_free(&got);
	recs_free(&rs);
	body_free(&b);
	body_free(&b2);
	body_free(&rel);
	body_free(&want);
	retain_close(r);
}

static enum spool_seek_result seek(struct retain *r, uint64_t lsn)
{
	char err[512] = "";
	struct spool_cursor *c = spool_cursor_new(retain_spool(r), err, sizeof(err));
	enum spool_seek_result res;
	uint64_t prev;

	assert_non_null(c);
	res = spool_cursor_seek(c, lsn, &prev, err, sizeof(err));
	spool_cursor_free(c);
	return res;
}

static void test_resume_sets_the_floor_and_empties_on_a_hole(void **state)
{
	struct fx *f = *state;
	struct retain *r = open_retain(f, "primary-a");
	struct body open_txn = { 0 }, want = { 0 }, got;
	uint64_t hole = txn_end(4) + 0x1000;
	struct recs rs;

	/* a new retain continues from the apply's position */
	resume(r, txn_end(0));
	assert_int_equal(retain_floor_lsn(r), txn_end(0));
	assert_int_equal(retain_end_lsn(r), txn_end(0));
	assert_int_equal(seek(r, txn_end(0) - 1), SPOOL_SEEK_GAP);
	assert_int_equal(seek(r, txn_end(0)), SPOOL_SEEK_OK);
	take_txn(r, 1, REL_A, 10, T0);
	take_txn(r, 2, REL_A, 10, T0);
	/* at or below the end: nothing changes */
	resume(r, txn_end(2));
	resume(r, txn_end(1));
	assert_int_equal(spool_records(retain_spool(r)), 2);
	assert_int_equal(retain_floor_lsn(r), txn_end(0));
	assert_int_equal(retain_end_lsn(r), txn_end(2));
	/* an unfinished transaction is forgotten: it comes again whole */
	add_begin(&open_txn, 3);
	add_insert(&open_txn, REL_A, 10);
	take(r, &open_txn, T0);
	resume(r, txn_end(2));
	take_txn(r, 4, REL_A, 10, T0);
	read_from(r, txn_end(2), &rs);
	assert_int_equal(rs.n, 1);
	add_txn(&want, 4, REL_A, 10);
	got = joined(&rs, 0, 1);
	expect_body(&got, &want);
	body_free(&got);
	recs_free(&rs);
	/* a hole: emptied, the floor at the apply's position */
	resume(r, hole);
	assert_int_equal(spool_records(retain_spool(r)), 0);
	assert_int_equal(retain_floor_lsn(r), hole);
	assert_int_equal(retain_end_lsn(r), hole);
	assert_int_equal(seek(r, txn_end(4)), SPOOL_SEEK_GAP);
	/* below the floor is dropped, above it taken */
	take_txn(r, 5, REL_A, 10, T0);
	assert_int_equal(spool_records(retain_spool(r)), 0);
	take_txn(r, 30, REL_A, 10, T0);
	read_from(r, hole, &rs);
	assert_int_equal(rs.n, 1);
	assert_int_equal(rs.prev, hole);
	expect_meta(&rs.v[0], txn_lsn(30), txn_end(30), 1, 0);
	recs_free(&rs);
	body_free(&open_txn);
	body_free(&want);
	retain_close(r);
}

static void read_file(const char *path, char *out, size_t outlen)
{
	FILE *fp = fopen(path, "r");
	size_t n;

	assert_non_null(fp);
	n = fread(out, 1, outlen - 1, fp);
	out[n] = '\0';
	fclose(fp);
}

static void test_reopen_keeps_the_same_source_and_empties_another(void **state)
{
	struct fx *f = *state;
	struct retain *r = open_retain(f, "primary-a"), *again;
	char path[256], text[64], err[512] = "";
	struct stat st;
	struct recs rs;
	FILE *fp;

	resume(r, txn_end(0));
	take_txn(r, 1, REL_A, 10, T0);
	take_txn(r, 2, REL_A, 10, T0);
	snprintf(path, sizeof(path), "%s/source", f->dir);
	read_file(path, text, sizeof(text));
	assert_string_equal(text, "primary-a\n");
	/* one owner at a time */
	again = retain_open(f->dir, "primary-a", err, sizeof(err));
	assert_null(again);
	assert_true(strlen(err) > 0);
	retain_close(r);

	r = open_retain(f, "primary-a");
	assert_string_equal(retain_source(r), "primary-a");
	assert_int_equal(spool_records(retain_spool(r)), 2);
	assert_int_equal(retain_end_lsn(r), txn_end(2));
	assert_int_equal(retain_floor_lsn(r), txn_end(0));
	retain_close(r);

	/* a torn tail: the last record goes, the transaction is taken again */
	snprintf(path, sizeof(path), "%s/0000000000000001.seg", f->dir);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(truncate(path, st.st_size - 10), 0);
	r = open_retain(f, "primary-a");
	assert_int_equal(spool_records(retain_spool(r)), 1);
	assert_int_equal(retain_end_lsn(r), txn_end(1));
	resume(r, txn_end(1));
	take_txn(r, 2, REL_A, 10, T0);
	read_from(r, 0, &rs);
	assert_int_equal(rs.n, 2);
	expect_meta(&rs.v[1], txn_lsn(2), txn_end(2), 1, 0);
	recs_free(&rs);
	retain_close(r);

	/* another source: everything goes, the floor too */
	snprintf(path, sizeof(path), "%s/stray", f->dir);
	fp = fopen(path, "w");
	assert_non_null(fp);
	fclose(fp);
	r = open_retain(f, "primary-b");
	assert_string_equal(retain_source(r), "primary-b");
	assert_int_equal(spool_records(retain_spool(r)), 0);
	assert_int_equal(retain_end_lsn(r), 0);
	assert_int_equal(retain_floor_lsn(r), 0);
	assert_int_equal(access(path, F_OK), -1);
	snprintf(path, sizeof(path), "%s/floor", f->dir);
	assert_int_equal(access(path, F_OK), -1);
	snprintf(path, sizeof(path), "%s/source", f->dir);
	read_file(path, text, sizeof(text));
	assert_string_equal(text, "primary-b\n");
	retain_close(r);
}

/* Records of exactly 1 MiB on disk: 15 to a segment. */
#define MIB_RECORD_VALUE (MIB - REC_OVERHEAD - BEGIN_BYTES - INSERT_OVERHEAD - COMMIT_BYTES)
#define PER_SEGMENT ((RETAIN_SEGMENT_BYTES - SEG_HDR) / MIB)

/* Transactions from..to, one MiB record each, transaction i taken at T0 + i seconds. */
static void take_mib_records(struct retain *r, unsigned from, unsigned to)
{
	for (unsigned i = from; i <= to; i++)
		take_txn(r, i, REL_A, MIB_RECORD_VALUE, T0 + (int64_t)i * SEC);
}

static void test_trim_by_age(void **state)
{
	struct fx *f = *state;
	struct retain *r = open_retain(f, "primary-a");

	assert_int_equal(PER_SEGMENT, 15);
	resume(r, txn_end(0));
	take_mib_records(r, 1, 40);
	assert_int_equal(spool_bytes(retain_spool(r)), 3 * SEG_HDR + 40 * MIB);
	/* older than 25 s at T0 + 50 s: T1..T24; the first segment (T1..T15) goes */
	assert_int_equal(trim(r, T0 + 50 * SEC, 25 * SEC, 0), 1);
	assert_int_equal(spool_records(retain_spool(r)), 25);
	assert_int_equal(retain_floor_lsn(r), txn_end(15));
	assert_int_equal(trim(r, T0 + 50 * SEC, 25 * SEC, 0), 0);
	/* T30, the second segment's last, spooled exactly 30 s before: kept, then not */
	assert_int_equal(trim(r, T0 + 60 * SEC, 30 * SEC, 0), 0);
	assert_int_equal(trim(r, T0 + 60 * SEC, 29 * SEC, 0), 1);
	assert_int_equal(spool_records(retain_spool(r)), 10);
	assert_int_equal(retain_floor_lsn(r), txn_end(30));
	/* the segment being appended to goes as well */
	assert_int_equal(trim(r, T0 + 100 * SEC, 25 * SEC, 0), 1);
	assert_int_equal(spool_records(retain_spool(r)), 0);
	assert_int_equal(retain_end_lsn(r), txn_end(40));
	assert_int_equal(retain_floor_lsn(r), txn_end(40));
	retain_close(r);
}

/* What a relayed site has not committed is held against age, not against size. */
static void test_trim_holds_for_a_relayed_site(void **state)
{
	struct fx *f = *state;
	struct retain *r = open_retain(f, "primary-a");
	char err[512] = "";

	resume(r, txn_end(0));
	take_mib_records(r, 1, 40);
	/* everything is old, but the site relayed to committed up to T20 only */
	assert_int_equal(retain_trim(r, T0 + 1000 * SEC, 25 * SEC, 0, txn_end(20), err, sizeof(err)), 1);
	assert_int_equal(retain_floor_lsn(r), txn_end(15));
	assert_int_equal(retain_trim(r, T0 + 1000 * SEC, 25 * SEC, 0, txn_end(29), err, sizeof(err)), 0);
	assert_int_equal(retain_trim(r, T0 + 1000 * SEC, 25 * SEC, 0, txn_end(30), err, sizeof(err)), 1);
	assert_int_equal(retain_floor_lsn(r), txn_end(30));
	/* spool_max still bounds it */
	assert_int_equal(retain_trim(r, T0 + 1000 * SEC, 25 * SEC, 5 * MIB, txn_end(30), err,
				     sizeof(err)), 1);
	assert_int_equal(spool_records(retain_spool(r)), 0);
	retain_close(r);
}

static void test_trim_by_size(void **state)
{
	struct fx *f = *state;
	struct retain *r = open_retain(f, "primary-a");

	resume(r, txn_end(0));
	take_mib_records(r, 1, 40);
	/* 40 MiB over 20: the oldest two segments go, 10 MiB are left */
	assert_int_equal(trim(r, T0 + 41 * SEC, 1000 * SEC, 20 * MIB), 2);
	assert_int_equal(spool_bytes(retain_spool(r)), SEG_HDR + 10 * MIB);
	assert_int_equal(retain_floor_lsn(r), txn_end(30));
	assert_int_equal(trim(r, T0 + 41 * SEC, 1000 * SEC, 20 * MIB), 0);
	/* under a segment: the last one goes too */
	assert_int_equal(trim(r, T0 + 41 * SEC, 1000 * SEC, 5 * MIB), 1);
	assert_int_equal(spool_bytes(retain_spool(r)), 0);
	assert_int_equal(retain_end_lsn(r), txn_end(40));
	retain_close(r);
}

static void test_trim_by_size_within_one_second(void **state)
{
	struct fx *f = *state;
	struct retain *r = open_retain(f, "primary-a");

	resume(r, txn_end(0));
	for (unsigned i = 1; i <= 40; i++)
		take_txn(r, i, REL_A, MIB_RECORD_VALUE, T0);
	/* a checkpoint at each new segment: released a segment at a time */
	assert_int_equal(trim(r, T0, 1000 * SEC, 20 * MIB), 2);
	assert_int_equal(spool_bytes(retain_spool(r)), SEG_HDR + 10 * MIB);
	assert_int_equal(retain_floor_lsn(r), txn_end(30));
	retain_close(r);
}

static void test_checkpoints_thinned_when_full(void **state)
{
	struct fx *f = *state;
	struct retain *r = open_retain(f, "primary-a");
	unsigned n = RETAIN_CHECKPOINTS + 1000;

	resume(r, txn_end(0));
	for (unsigned i = 1; i <= n; i++)
		take_txn(r, i, REL_A, 1, T0 + (int64_t)i * SEC);
	/* one segment: it goes once its last transaction is old enough, the newest checkpoint */
	assert_int_equal(trim(r, T0 + (int64_t)n * SEC, 0, 0), 0);
	assert_int_equal(trim(r, T0 + (int64_t)n * SEC + 1, 0, 0), 1);
	assert_int_equal(retain_floor_lsn(r), txn_end(n));
	retain_close(r);
}

static void test_records_found_on_opening_count_from_then(void **state)
{
	struct fx *f = *state;
	struct retain *r = open_retain(f, "primary-a");
	int64_t later = T0 + 1000 * SEC;

	resume(r, txn_end(0));
	take_mib_records(r, 1, 20);
	retain_close(r);
	r = open_retain(f, "primary-a");
	resume(r, txn_end(20));
	/* spooled long ago, but not known to be: kept from the first time given */
	assert_int_equal(trim(r, later, 10 * SEC, 0), 0);
	take_txn(r, 21, REL_A, MIB_RECORD_VALUE, later + SEC);
	assert_int_equal(trim(r, later + 10 * SEC, 10 * SEC, 0), 0);
	/* the segment T21 went into stays */
	assert_int_equal(trim(r, later + 11 * SEC, 10 * SEC, 0), 1);
	assert_int_equal(spool_records(retain_spool(r)), 6);
	assert_int_equal(retain_floor_lsn(r), txn_end(15));
	retain_close(r);
}

static void expect_refused(struct retain *r, const struct body *b, const char *says)
{
	char err[512] = "";

	assert_false(retain_take(r, b->b, b->len, T0, err, sizeof(err)));
	if (strstr(err, says) == NULL)
		fail_msg("error \"%s\" does not say \"%s\"", err, says);
}

static void test_malformed_bodies_are_refused_whole(void **state)
{
	struct fx *f = *state;
	struct retain *r = open_retain(f, "primary-a");
	struct body b = { 0 };
	uint8_t *m;

	resume(r, txn_end(0));
	take_txn(r, 1, REL_A, 10, T0);
	/* a whole transaction, then a length running past the end */
	add_txn(&b, 2, REL_A, 10);
	add_begin(&b, 3);
	put32(b.b + b.len - 25, 1000);
	expect_refused(r, &b, "says 1000 bytes");
	assert_int_equal(spool_records(retain_spool(r)), 1);
	assert_int_equal(retain_end_lsn(r), txn_end(1));
	/* nothing more until resumed */
	body_free(&b);
	add_txn(&b, 2, REL_A, 10);
	expect_refused(r, &b, "stopped");
	resume(r, txn_end(1));
	take(r, &b, T0);
	assert_int_equal(retain_end_lsn(r), txn_end(2));
	/* streamed transactions, a Commit without its Begin, a cut length */
	body_free(&b);
	m = add_msg(&b, 6);
	m[0] = 'S';
	expect_refused(r, &b, "not part of an ordinary transaction");
	resume(r, txn_end(2));
	body_free(&b);
	add_commit(&b, 3);
	expect_refused(r, &b, "outside a transaction");
	resume(r, txn_end(2));
	body_free(&b);
	add_txn(&b, 3, REL_A, 10);
	add_bytes(&b, (const uint8_t *)"\0\0", 2);
	expect_refused(r, &b, "length cut");
	assert_int_equal(spool_records(retain_spool(r)), 2);
	body_free(&b);
	retain_close(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_whole_transactions_across_calls, setup, teardown),
		cmocka_unit_test_setup_teardown(test_seek_by_lsn_finds_the_record_holding_the_next_transaction,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_records_carry_the_relations_they_use, setup, teardown),
		cmocka_unit_test_setup_teardown(test_a_transaction_taken_again_is_dropped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_large_transaction_in_continuation_records_and_cut,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_a_message_larger_than_a_piece_is_cut_and_joins_back,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_resume_sets_the_floor_and_empties_on_a_hole, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_reopen_keeps_the_same_source_and_empties_another,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_trim_by_age, setup, teardown),
		cmocka_unit_test_setup_teardown(test_trim_holds_for_a_relayed_site, setup, teardown),
		cmocka_unit_test_setup_teardown(test_trim_by_size, setup, teardown),
		cmocka_unit_test_setup_teardown(test_trim_by_size_within_one_second, setup, teardown),
		cmocka_unit_test_setup_teardown(test_checkpoints_thinned_when_full, setup, teardown),
		cmocka_unit_test_setup_teardown(test_records_found_on_opening_count_from_then, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_malformed_bodies_are_refused_whole, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
