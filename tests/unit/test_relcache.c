/* Unit tests for relcache: batch bodies made self-contained for the spool. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "gateway/stream/relcache.h"

struct body {
	uint8_t b[4096];
	size_t len;
};

static void add(struct body *b, const uint8_t *m, size_t len)
{
	b->b[b->len] = (uint8_t)(len >> 24);
	b->b[b->len + 1] = (uint8_t)(len >> 16);
	b->b[b->len + 2] = (uint8_t)(len >> 8);
	b->b[b->len + 3] = (uint8_t)len;
	memcpy(b->b + b->len + 4, m, len);
	b->len += 4 + len;
}

/* A Relation message: 'R', relid, then a tag byte standing for its columns. */
static void add_rel(struct body *b, uint32_t relid, uint8_t version)
{
	uint8_t m[] = { 'R', 0, 0, (uint8_t)(relid >> 8), (uint8_t)relid, 'v', version };
	add(b, m, sizeof(m));
}

static void add_change(struct body *b, char kind, uint32_t relid)
{
	uint8_t m[] = { (uint8_t)kind, 0, 0, (uint8_t)(relid >> 8), (uint8_t)relid, 'N', 0, 0 };
	add(b, m, sizeof(m));
}

static void add_simple(struct body *b, char kind)
{
	uint8_t m[21] = { (uint8_t)kind };
	add(b, m, sizeof(m));
}

/* The relation OIDs of the Relation messages in out, in order, and their version tags. */
static size_t rels_of(const uint8_t *p, size_t len, uint32_t *ids, uint8_t *versions)
{
	size_t n = 0;

	for (size_t off = 0; off < len;) {
		uint32_t mlen = (uint32_t)p[off] << 24 | (uint32_t)p[off + 1] << 16 |
				(uint32_t)p[off + 2] << 8 | p[off + 3];
		if (p[off + 4] == 'R') {
			ids[n] = (uint32_t)p[off + 7] << 8 | p[off + 8];
			versions[n++] = p[off + 10];
		}
		off += 4 + mlen;
	}
	return n;
}

static void test_a_later_record_carries_the_definitions(void **state)
{
	struct relcache *rc = relcache_new();
	struct body b1 = { 0 }, b2 = { 0 };
	const uint8_t *out;
	size_t out_len, n;
	uint32_t ids[8];
	uint8_t ver[8];

	(void)state;
	add_simple(&b1, 'B');
	add_rel(&b1, 100, 1);
	add_change(&b1, 'I', 100);
	add_rel(&b1, 200, 1);
	add_change(&b1, 'I', 200);
	add_simple(&b1, 'C');
	assert_true(relcache_complete(rc, b1.b, b1.len, 0, false, &out, &out_len));
	assert_ptr_equal(out, b1.b);          /* defined inside: nothing to add */
	assert_int_equal(relcache_count(rc), 2);

	add_simple(&b2, 'B');
	add_change(&b2, 'U', 200);
	add_change(&b2, 'D', 200);
	add_simple(&b2, 'C');
	assert_true(relcache_complete(rc, b2.b, b2.len, 0, false, &out, &out_len));
	n = rels_of(out, out_len, ids, ver);
	assert_int_equal(n, 1);               /* 200 once, 100 not at all */
	assert_int_equal(ids[0], 200);
	assert_int_equal(out_len, b2.len + 4 + 7);
	assert_memory_equal(out + 4 + 7, b2.b, b2.len);
	relcache_free(rc);
}

static void test_the_definition_in_force_at_first_use(void **state)
{
	struct relcache *rc = relcache_new();
	struct body b1 = { 0 }, b2 = { 0 };
	const uint8_t *out;
	size_t out_len;
	uint32_t ids[8];
	uint8_t ver[8];

	(void)state;
	add_rel(&b1, 100, 1);
	add_change(&b1, 'I', 100);
	assert_true(relcache_complete(rc, b1.b, b1.len, 0, false, &out, &out_len));
	/* the relation changes in the middle of the next body (ALTER TABLE) */
	add_change(&b2, 'I', 100);
	add_rel(&b2, 100, 2);
	add_change(&b2, 'I', 100);
	assert_true(relcache_complete(rc, b2.b, b2.len, 0, false, &out, &out_len));
	assert_int_equal(rels_of(out, out_len, ids, ver), 2);
	assert_int_equal(ver[0], 1);          /* the prefix is the old shape */
	assert_int_equal(ver[1], 2);
	/* and from then on the new one */
	b1.len = 0;
	add_change(&b1, 'D', 100);
	assert_true(relcache_complete(rc, b1.b, b1.len, 0, false, &out, &out_len));
	assert_int_equal(rels_of(out, out_len, ids, ver), 1);
	assert_int_equal(ver[0], 2);
	relcache_free(rc);
}

static void test_truncate_and_unknown_relations(void **state)
{
	struct relcache *rc = relcache_new();
	struct body b1 = { 0 }, b2 = { 0 };
	uint8_t trunc[] = { 'T', 0, 0, 0, 3, 0, 0, 0, 0, 10, 0, 0, 0, 11, 0, 0, 0, 99 };
	const uint8_t *out;
	size_t out_len;
	uint32_t ids[8];
	uint8_t ver[8];

	(void)state;
	add_rel(&b1, 10, 1);
	add_rel(&b1, 11, 1);
	assert_true(relcache_complete(rc, b1.b, b1.len, 0, false, &out, &out_len));
	add(&b2, trunc, sizeof(trunc));
	add_change(&b2, 'I', 77);             /* never defined: left for the sink to report */
	assert_true(relcache_complete(rc, b2.b, b2.len, 0, false, &out, &out_len));
	assert_int_equal(rels_of(out, out_len, ids, ver), 2);
	assert_int_equal(ids[0], 10);
	assert_int_equal(ids[1], 11);
	relcache_free(rc);
}

static void test_many_relations_and_malformed_bodies(void **state)
{
	struct relcache *rc = relcache_new();
	struct body b = { 0 };
	const uint8_t *out;
	size_t out_len;
	uint8_t bad[] = { 0, 0, 0, 9, 'I', 0 };

	(void)state;
	for (uint32_t r = 1; r <= 300; r++) {
		b.len = 0;
		add_rel(&b, r, 1);
		assert_true(relcache_complete(rc, b.b, b.len, 0, false, &out, &out_len));
	}
	assert_int_equal(relcache_count(rc), 300);
	b.len = 0;
	add_change(&b, 'I', 257);
	assert_true(relcache_complete(rc, b.b, b.len, 0, false, &out, &out_len));
	assert_int_equal(out_len, b.len + 11);
	assert_false(relcache_complete(rc, bad, sizeof(bad), 0, false, &out, &out_len));
	assert_ptr_equal(out, bad);
	relcache_free(rc);
}

/* Pieces of a large batch: the lead bytes stay first, a cut change still names its relation. */
static void test_pieces_of_a_large_batch(void **state)
{
	struct relcache *rc = relcache_new();
	struct body def = { 0 }, b = { 0 };
	const uint8_t *out;
	size_t out_len, cut;
	uint8_t big[64];

	(void)state;
	add_rel(&def, 9, 1);
	assert_true(relcache_complete(rc, def.b, def.len, 0, false, &out, &out_len));
	/* a change of 60 bytes to relation 9, cut after 20 bytes of it */
	memset(big, 'v', sizeof(big));
	big[0] = 'I';
	big[1] = big[2] = big[3] = 0;
	big[4] = 9;
	add(&b, big, 60);
	cut = 4 + 20;
	assert_true(relcache_complete(rc, b.b, cut, 0, true, &out, &out_len));
	assert_int_equal(out_len, def.len + cut);          /* the definition in front */
	assert_memory_equal(out, def.b, def.len);
	assert_memory_equal(out + def.len, b.b, cut);
	/* the rest is lead bytes only: nothing to add, nothing parsed */
	assert_true(relcache_complete(rc, b.b + cut, b.len - cut, b.len - cut, false, &out, &out_len));
	assert_ptr_equal(out, b.b + cut);
	/* lead bytes, then a whole change: the definition goes after the lead */
	memcpy(b.b + b.len, b.b, 4 + 60);
	b.len += 4 + 60;
	assert_true(relcache_complete(rc, b.b + cut, b.len - cut, 40, false, &out, &out_len));
	assert_int_equal(out_len, b.len - cut + def.len);
	assert_memory_equal(out, b.b + cut, 40);
	assert_memory_equal(out + 40, def.b, def.len);
	assert_memory_equal(out + 40 + def.len, b.b + cut + 40, b.len - cut - 40);
	/* a body that ends inside a message without saying so is not a sequence of messages */
	assert_false(relcache_complete(rc, b.b, cut, 0, false, &out, &out_len));
	relcache_free(rc);
}

/* A streamed change or Relation: its xid comes before the relation OID. */
static void add_streamed(struct body *b, char kind, uint32_t relid)
{
	uint8_t m[] = { (uint8_t)kind, 0, 0, 0x30, 0x39, 0, 0, (uint8_t)(relid >> 8), (uint8_t)relid, 'v', 9 };
	add(b, m, sizeof(m));
}

static void test_streamed_blocks_are_left_alone(void **state)
{
	struct relcache *rc = relcache_new();
	struct body b0 = { 0 }, b1 = { 0 }, b2 = { 0 };
	uint8_t start[] = { 'S', 0, 0, 0x30, 0x39, 1 }, stop[] = { 'E' };
	const uint8_t *out;
	size_t out_len, n, block;
	uint32_t ids[8];
	uint8_t ver[8];

	(void)state;
	add_rel(&b0, 100, 1);
	assert_true(relcache_complete(rc, b0.b, b0.len, 0, false, &out, &out_len));

	/* a block's Relation and changes (xid first) are not learnt nor completed */
	add(&b1, start, sizeof(start));
	add_streamed(&b1, 'R', 100);
	add_streamed(&b1, 'I', 100);
	assert_true(relcache_complete(rc, b1.b, b1.len, 0, false, &out, &out_len));
	assert_ptr_equal(out, b1.b);
	assert_int_equal(relcache_count(rc), 1);

	/* a body that starts inside the block: the definitions go after its Stream Stop */
	add_streamed(&b2, 'U', 100);
	add(&b2, stop, sizeof(stop));
	block = b2.len;
	add_simple(&b2, 'B');
	add_change(&b2, 'I', 100);
	add_simple(&b2, 'C');
	assert_true(relcache_complete(rc, b2.b, b2.len, 0, false, &out, &out_len));
	n = rels_of(out + block, out_len - block, ids, ver);
	assert_int_equal(n, 1);
	assert_int_equal(ids[0], 100);
	assert_int_equal(ver[0], 1);          /* the one defined outside the block */
	assert_memory_equal(out, b2.b, block);
	assert_int_equal(out_len, b2.len + 4 + 7);
	relcache_free(rc);
}

/* Stream Commit ('c', xid, ...) or Stream Abort ('A', xid, subxid) of xid 0x3039. */
static void add_stream_end(struct body *b, char kind, uint32_t subxid)
{
	uint8_t m[] = { (uint8_t)kind, 0, 0, 0x30, 0x39, (uint8_t)(subxid >> 24),
			(uint8_t)(subxid >> 16), (uint8_t)(subxid >> 8), (uint8_t)subxid, 0, 0 };
	add(b, m, sizeof(m));
}

/* The relation OIDs and versions put in front of a body that changes relid. */
static size_t prefix_for(struct relcache *rc, uint32_t relid, uint32_t *ids, uint8_t *ver)
{
	struct body b = { 0 };
	const uint8_t *out;
	size_t out_len;

	add_simple(&b, 'B');
	add_change(&b, 'U', relid);
	add_simple(&b, 'C');
	assert_true(relcache_complete(rc, b.b, b.len, 0, false, &out, &out_len));
	return rels_of(out, out_len, ids, ver);
}

static void test_a_streamed_transaction_defines_at_its_commit(void **state)
{
	struct relcache *rc = relcache_new();
	struct body b1 = { 0 }, b2 = { 0 }, b3 = { 0 };
	uint8_t start[] = { 'S', 0, 0, 0x30, 0x39, 1 }, stop[] = { 'E' };
	const uint8_t *out;
	size_t out_len, cut;
	uint32_t ids[8];
	uint8_t ver[8];

	(void)state;
	/* pgoutput sends no Relation message after a streamed commit that sent one */
	add(&b1, start, sizeof(start));
	add_streamed(&b1, 'R', 100);
	add_streamed(&b1, 'I', 100);
	add(&b1, stop, sizeof(stop));
	assert_true(relcache_complete(rc, b1.b, b1.len, 0, false, &out, &out_len));
	assert_int_equal(relcache_count(rc), 0);    /* not before its commit */
	add_stream_end(&b2, 'c', 0);
	assert_true(relcache_complete(rc, b2.b, b2.len, 0, false, &out, &out_len));
	assert_int_equal(relcache_count(rc), 1);
	assert_int_equal(prefix_for(rc, 100, ids, ver), 1);
	assert_int_equal(ids[0], 100);
	assert_int_equal(ver[0], 9);

	/* an aborted streamed transaction's definitions go (pgoutput sends them again) */
	b1.len = 0;
	add(&b1, start, sizeof(start));
	add_streamed(&b1, 'R', 300);
	add(&b1, stop, sizeof(stop));
	add_stream_end(&b1, 'A', 0x77);             /* a subtransaction's abort: kept */
	assert_true(relcache_complete(rc, b1.b, b1.len, 0, false, &out, &out_len));
	b2.len = 0;
	add_stream_end(&b2, 'A', 0x3039);
	add_stream_end(&b2, 'c', 0);
	assert_true(relcache_complete(rc, b2.b, b2.len, 0, false, &out, &out_len));
	assert_int_equal(prefix_for(rc, 300, ids, ver), 0);

	/* a block's Relation message cut between two pieces is kept whole */
	b3.len = 0;
	add(&b3, start, sizeof(start));
	cut = b3.len + 6;                             /* inside the next message's xid */
	add_streamed(&b3, 'R', 200);
	add(&b3, stop, sizeof(stop));
	assert_true(relcache_complete(rc, b3.b, cut, 0, true, &out, &out_len));
	assert_true(relcache_complete(rc, b3.b + cut, b3.len - cut, 11 + 4 - 6, false, &out,
				      &out_len));
	b2.len = 0;
	add_stream_end(&b2, 'c', 0);
	assert_true(relcache_complete(rc, b2.b, b2.len, 0, false, &out, &out_len));
	assert_int_equal(prefix_for(rc, 200, ids, ver), 1);
	assert_int_equal(ids[0], 200);

	/* ... also when the cut falls inside its length */
	b3.len = 0;
	add(&b3, start, sizeof(start));
	cut = b3.len + 2;
	add_streamed(&b3, 'R', 400);
	add(&b3, stop, sizeof(stop));
	assert_true(relcache_complete(rc, b3.b, cut, 0, true, &out, &out_len));
	assert_true(relcache_complete(rc, b3.b + cut, b3.len - cut, 11 + 4 - 2, false, &out,
				      &out_len));
	assert_true(relcache_complete(rc, b2.b, b2.len, 0, false, &out, &out_len));
	assert_int_equal(prefix_for(rc, 400, ids, ver), 1);
	relcache_free(rc);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_a_later_record_carries_the_definitions),
		cmocka_unit_test(test_the_definition_in_force_at_first_use),
		cmocka_unit_test(test_truncate_and_unknown_relations),
		cmocka_unit_test(test_many_relations_and_malformed_bodies),
		cmocka_unit_test(test_pieces_of_a_large_batch),
		cmocka_unit_test(test_streamed_blocks_are_left_alone),
		cmocka_unit_test(test_a_streamed_transaction_defines_at_its_commit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
