/*
 * test_batchpack.c — pgoutput batches packed for zstd and unpacked: real
 * PostgreSQL 15 output (tests/unit/data/pgoutput/) and a pgbench-like
 * stream round-trip byte for byte across batch boundaries and resets; the
 * packed forms are used (Begin/Commit differences, Relation references,
 * varint lengths, integers); values only packing's plain form can carry
 * still round-trip; a piece of a message is not packable; and a corrupt,
 * truncated or oversized packed batch is refused with a message.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/stream/batchpack.h"

#define CAP (1u << 20)

/* A batch being built: u32 big-endian length, message, ... */
struct batch {
	uint8_t b[CAP];
	size_t len;
	size_t msg_start;
};

static void put(struct batch *bt, const void *p, size_t n)
{
	assert_true(bt->len + n <= CAP);
	memcpy(bt->b + bt->len, p, n);
	bt->len += n;
}

static void put_u8(struct batch *bt, uint8_t v)
{
	put(bt, &v, 1);
}

static void put_u16(struct batch *bt, uint16_t v)
{
	uint8_t b[2] = { (uint8_t)(v >> 8), (uint8_t)v };

	put(bt, b, 2);
}

static void put_u32(struct batch *bt, uint32_t v)
{
	uint8_t b[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v };

	put(bt, b, 4);
}

static void put_u64(struct batch *bt, uint64_t v)
{
	put_u32(bt, (uint32_t)(v >> 32));
	put_u32(bt, (uint32_t)v);
}

static void msg_begin(struct batch *bt)
{
	bt->msg_start = bt->len;
	put_u32(bt, 0);
}

static void msg_end(struct batch *bt)
{
	uint32_t n = (uint32_t)(bt->len - bt->msg_start - 4);
	uint8_t *p = bt->b + bt->msg_start;

	p[0] = (uint8_t)(n >> 24);
	p[1] = (uint8_t)(n >> 16);
	p[2] = (uint8_t)(n >> 8);
	p[3] = (uint8_t)n;
}

static void add_begin(struct batch *bt, uint64_t lsn, uint64_t time, uint32_t xid)
{
	msg_begin(bt);
	put_u8(bt, 'B');
	put_u64(bt, lsn);
	put_u64(bt, time);
	put_u32(bt, xid);
	msg_end(bt);
}

static void add_commit(struct batch *bt, uint64_t lsn, uint64_t end, uint64_t time)
{
	msg_begin(bt);
	put_u8(bt, 'C');
	put_u8(bt, 0);
	put_u64(bt, lsn);
	put_u64(bt, end);
	put_u64(bt, time);
	msg_end(bt);
}

static void add_relation(struct batch *bt, uint32_t oid, const char *name)
{
	msg_begin(bt);
	put_u8(bt, 'R');
	put_u32(bt, oid);
	put(bt, "public", 7);
	put(bt, name, strlen(name) + 1);
	put_u8(bt, 'd');
	put_u16(bt, 2);
	put_u8(bt, 1);
	put(bt, "id", 3);
	put_u32(bt, 23);
	put_u32(bt, 0xffffffffu);
	put_u8(bt, 0);
	put(bt, "filler", 7);
	put_u32(bt, 1042);
	put_u32(bt, 88);
	msg_end(bt);
}

static void put_text(struct batch *bt, const char *text)
{
	put_u8(bt, 't');
	put_u32(bt, (uint32_t)strlen(text));
	put(bt, text, strlen(text));
}

/* An Update of oid setting (id, text, null, unchanged): 'N' only, or with an old key. */
static void add_update(struct batch *bt, uint32_t oid, const char *id, const char *text, bool key)
{
	msg_begin(bt);
	put_u8(bt, 'U');
	put_u32(bt, oid);
	if (key) {
		put_u8(bt, 'K');
		put_u16(bt, 1);
		put_text(bt, id);
	}
	put_u8(bt, 'N');
	put_u16(bt, 4);
	put_text(bt, id);
	put_text(bt, text);
	put_u8(bt, 'n');
	put_u8(bt, 'u');
	msg_end(bt);
}

/* A pgbench-like transaction: Begin, Relations (as each spool record repeats them), changes, Commit. */
static void add_transaction(struct batch *bt, unsigned i, uint64_t *lsn, bool relations)
{
	char id[32], delta[32];
	uint64_t time = 800000000000000ull + (uint64_t)i * 531u;

	add_begin(bt, *lsn + 400, time, 5000 + i + (i % 3));
	if (relations) {
		add_relation(bt, 16390, "pgbench_accounts");
		add_relation(bt, 16393, "pgbench_tellers");
	}
	snprintf(id, sizeof(id), "%u", (i * 7919u) % 2000000u + 1);
	snprintf(delta, sizeof(delta), "%d", (int)((i * 31u) % 10001u) - 5000);
	add_update(bt, 16390, id, delta, false);
	add_update(bt, 16393, "7", "2026-12-07 05:26:01.123456+00", i % 5 == 0);
	add_commit(bt, *lsn + 400, *lsn + 456, time);
	*lsn += 456 + (i % 13) * 8;
}

static void roundtrip(struct batchpack *enc, struct batchpack *dec, const uint8_t *b, size_t len,
		size_t *packed_len)
{
	const uint8_t *packed, *out;
	size_t plen, out_len;
	uint8_t *copy;
	char err[256];

	assert_true(batchpack_packable(b, len));
	assert_true(batchpack_pack(enc, b, len, &packed, &plen));
	assert_true(plen <= len);
	copy = malloc(plen + 1);
	memcpy(copy, packed, plen);
	if (!batchpack_unpack(dec, copy, plen, len, &out, &out_len, err, sizeof(err)))
		fail_msg("unpack: %s", err);
	assert_int_equal(out_len, len);
	assert_memory_equal(out, b, len);
	free(copy);
	if (packed_len)
		*packed_len = plen;
}

/* ---------------------------------------------------------- real samples */

static uint8_t *load_sample(const char *name, size_t *len)
{
	const char *dir = getenv("STRAIT_SOURCE_DIR");
	char path[1024];
	uint8_t *data;
	long size;
	FILE *f;

	snprintf(path, sizeof(path), "%s/tests/unit/data/pgoutput/%s", dir ? dir : ".", name);
	f = fopen(path, "rb");
	if (!f)
		fail_msg("could not open \"%s\"", path);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	size = ftell(f);
	rewind(f);
	data = malloc((size_t)size);
	assert_non_null(data);
	assert_int_equal(fread(data, 1, (size_t)size, f), (size_t)size);
	fclose(f);
	*len = (size_t)size;
	return data;
}

static const char *const samples[] = {
	"basic.bin", "v1_basic.bin", "toast.bin", "identity.bin", "truncate.bin", "message.bin",
	"types.bin", "binary.bin", "origin.bin", "stream.bin",
};

static void test_real_pgoutput_roundtrips(void **state)
{
	struct batchpack *enc = batchpack_new(), *dec = batchpack_new();
	size_t raw = 0, packed = 0;

	(void)state;
	/* every scenario one after the other through one pair: the state carries across batches */
	for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
		size_t len, plen;
		uint8_t *b = load_sample(samples[i], &len);

		roundtrip(enc, dec, b, len, &plen);
		raw += len;
		packed += plen;
		free(b);
	}
	assert_true(packed < raw);
	batchpack_free(enc);
	batchpack_free(dec);
}

/* One message a batch: every message on its own, the state carried between them. */
static void test_real_pgoutput_message_by_message(void **state)
{
	struct batchpack *enc = batchpack_new(), *dec = batchpack_new();

	(void)state;
	for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
		size_t len, at = 0;
		uint8_t *b = load_sample(samples[i], &len);

		while (at < len) {
			size_t n = 4 + ((size_t)b[at] << 24 | (size_t)b[at + 1] << 16 |
					(size_t)b[at + 2] << 8 | b[at + 3]);

			roundtrip(enc, dec, b + at, n, NULL);
			at += n;
		}
		free(b);
	}
	batchpack_free(enc);
	batchpack_free(dec);
}

/* ------------------------------------------------------ pgbench-like stream */

static void test_stream_across_batches_and_resets(void **state)
{
	struct batchpack *enc = batchpack_new(), *dec = batchpack_new();
	static struct batch bt;
	uint64_t lsn = 0x10AE7DF0ull;
	size_t raw = 0, packed = 0;

	(void)state;
	for (unsigned b = 0; b < 200; b++) {
		size_t plen;

		bt.len = 0;
		for (unsigned t = 0; t < 1 + b % 7; t++)
			add_transaction(&bt, b * 10 + t, &lsn, t % 2 == 0);
		if (b % 50 == 49) {
			/* a new link: both ends start over; the next batch needs no earlier state */
			batchpack_reset(enc);
			batchpack_reset(dec);
		}
		roundtrip(enc, dec, bt.b, bt.len, &plen);
		raw += bt.len;
		packed += plen;
	}
	/* Relations referenced, Begin/Commit differences, varint lengths, integers: well under half */
	assert_true(packed * 2 < raw);
	batchpack_free(enc);
	batchpack_free(dec);
}

/* A Relation message the stream carried is a reference; a changed one travels whole and replaces it. */
static void test_relation_references(void **state)
{
	struct batchpack *enc = batchpack_new(), *dec = batchpack_new(), *fresh = batchpack_new();
	static struct batch bt;
	const uint8_t *packed, *out;
	size_t first, again, changed, out_len;
	char err[256];

	(void)state;
	bt.len = 0;
	add_relation(&bt, 16390, "pgbench_accounts");
	roundtrip(enc, dec, bt.b, bt.len, &first);
	roundtrip(enc, dec, bt.b, bt.len, &again);
	assert_int_equal(again, 6);        /* escape, tag, the OID */
	assert_true(first > again);
	bt.len = 0;
	add_relation(&bt, 16390, "pgbench_accounts2");
	roundtrip(enc, dec, bt.b, bt.len, &changed);
	assert_true(changed > again);
	/* the reference needs the state: a decoder that never saw the message refuses it */
	assert_true(batchpack_pack(enc, bt.b, bt.len, &packed, &again));
	assert_int_equal(again, 6);
	assert_false(batchpack_unpack(fresh, packed, again, CAP, &out, &out_len, err, sizeof(err)));
	assert_non_null(strstr(err, "Relation message the stream did not carry"));
	batchpack_free(enc);
	batchpack_free(dec);
	batchpack_free(fresh);
}

/* Each packed form, by its size: what zstd is spared. */
static void test_packed_forms(void **state)
{
	struct batchpack *enc = batchpack_new(), *dec = batchpack_new();
	static struct batch bt;
	size_t plen;

	(void)state;
	bt.len = 0;
	add_commit(&bt, 1000, 1056, 5000000);
	roundtrip(enc, dec, bt.b, bt.len, NULL);
	/* Begin: LSN +400 (2 bytes), time +531 (2), xid +1 from 0 (1): escape and tag, 7 of 25 */
	bt.len = 0;
	add_begin(&bt, 1456, 5000531, 1);
	roundtrip(enc, dec, bt.b, bt.len, &plen);
	assert_int_equal(plen, 7);
	/* Commit: flags, commit LSN as the Begin's (1), end +56 (1), time as the Begin's (1): 6 of 30 */
	bt.len = 0;
	add_commit(&bt, 1456, 1512, 5000531);
	roundtrip(enc, dec, bt.b, bt.len, &plen);
	assert_int_equal(plen, 6);
	/*
	 * Update, 32 bytes: escape, tag, h, OID, 'N', columns; "12345" as 'i' and 3 bytes, "-42" 'i'
	 * and 1, null and unchanged as they are: 18
	 */
	bt.len = 0;
	add_update(&bt, 16390, "12345", "-42", false);
	assert_int_equal(bt.len, 4 + 28);
	roundtrip(enc, dec, bt.b, bt.len, &plen);
	assert_int_equal(plen, 18);
	/* a text column: kind, its length in one byte instead of four, the text (6, not 'i' and 1) */
	bt.len = 0;
	add_update(&bt, 16390, "12345", "x-42", false);
	roundtrip(enc, dec, bt.b, bt.len, &plen);
	assert_int_equal(plen, 18 + 4);
	/* inside a streamed block (xid, then OID): h is 8 */
	bt.len = 0;
	msg_begin(&bt);
	put_u8(&bt, 'U');
	put_u32(&bt, 777);
	put_u32(&bt, 16390);
	put_u8(&bt, 'N');
	put_u16(&bt, 1);
	put_text(&bt, "12345");
	msg_end(&bt);
	roundtrip(enc, dec, bt.b, bt.len, &plen);
	assert_int_equal(plen, 3 + 8 + 1 + 2 + 1 + 3);
	/* a message as it is: a one-byte length */
	bt.len = 0;
	msg_begin(&bt);
	put(&bt, "Y12345", 6);
	msg_end(&bt);
	roundtrip(enc, dec, bt.b, bt.len, &plen);
	assert_int_equal(plen, 1 + 6);
	batchpack_free(enc);
	batchpack_free(dec);
}

/* Values packing cannot shorten still come back exactly. */
static void test_awkward_values_roundtrip(void **state)
{
	static const char *const texts[] = {
		"0", "-1", "1", "007", "-0", "+5", "123456789012345678", "1234567890123456789",
		"-999999999999999999", "9223372036854775808", "1e5", "", "-", "12a", " 1",
	};
	struct batchpack *enc = batchpack_new(), *dec = batchpack_new();
	static struct batch bt;

	(void)state;
	bt.len = 0;
	/* Begin/Commit far from the last ones: the differences do not fit shorter, sent as they are */
	add_begin(&bt, UINT64_MAX, 0, UINT32_MAX);
	add_commit(&bt, 0, UINT64_MAX, UINT64_MAX);
	add_begin(&bt, 0x8000000000000000ull, 0x7fffffffffffffffull, 0);
	add_commit(&bt, 0x8000000000000000ull, 0x8000000000000001ull, 1);
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
		add_update(&bt, 16390 + (uint32_t)i, texts[i], texts[i], i % 2 == 0);
	/* a Begin and a Commit of an unexpected length, a message of one byte */
	msg_begin(&bt);
	put(&bt, "B1234", 5);
	msg_end(&bt);
	msg_begin(&bt);
	put_u8(&bt, 'C');
	msg_end(&bt);
	msg_begin(&bt);
	put_u8(&bt, 'R');
	msg_end(&bt);
	/* an Update whose tuples do not parse: as it is */
	msg_begin(&bt);
	put(&bt, "U\0\0\0\1N\0\5t", 9);
	msg_end(&bt);
	roundtrip(enc, dec, bt.b, bt.len, NULL);
	roundtrip(enc, dec, bt.b, bt.len, NULL);
	batchpack_free(enc);
	batchpack_free(dec);
}

static void test_packable(void **state)
{
	static struct batch bt;
	uint64_t lsn = 1;

	(void)state;
	bt.len = 0;
	assert_true(batchpack_packable(bt.b, 0));
	add_transaction(&bt, 1, &lsn, true);
	assert_true(batchpack_packable(bt.b, bt.len));
	/* a piece: ends inside a message, or starts with the end of one */
	assert_false(batchpack_packable(bt.b, bt.len - 1));
	assert_false(batchpack_packable(bt.b + 1, bt.len - 1));
	assert_false(batchpack_packable(bt.b, 3));
	/* a message of length 0 */
	memset(bt.b, 0, 8);
	assert_false(batchpack_packable(bt.b, 8));
}

/* ----------------------------------------------------------- hostile input */

static void test_truncated_packed_batches_are_refused(void **state)
{
	struct batchpack *enc = batchpack_new();
	static struct batch bt;
	const uint8_t *packed, *out;
	size_t plen, out_len;
	uint64_t lsn = 77;
	uint8_t *copy;
	char err[256];

	(void)state;
	bt.len = 0;
	add_transaction(&bt, 3, &lsn, true);
	assert_true(batchpack_pack(enc, bt.b, bt.len, &packed, &plen));
	copy = malloc(plen);
	memcpy(copy, packed, plen);
	/* cut anywhere: an item is cut short, or the batch unpacks to something shorter; never a crash */
	for (size_t cut = 0; cut < plen; cut++) {
		struct batchpack *dec = batchpack_new();

		if (batchpack_unpack(dec, copy, cut, CAP, &out, &out_len, err, sizeof(err)))
			assert_true(out_len < bt.len);
		else
			assert_non_null(strstr(err, "packed batch"));
		batchpack_free(dec);
	}
	free(copy);
	batchpack_free(enc);
}

static void test_corrupt_packed_batches_are_refused(void **state)
{
	static const struct {
		const char *bytes;
		size_t len;
		const char *error;
	} cases[] = {
		{ "\0X", 2, "unknown packed message" },
		{ "\0", 1, "ends inside an item" },
		{ "\5abc", 4, "ends inside an item" },
		{ "\0B\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01", 13, "ends inside an item" },
		{ "\0B\1\1\xff\xff\xff\xff\x7f", 9, "malformed packed message" },   /* xid over 32 bits */
		{ "\0I\5\0\0\0\1N", 8, "malformed packed message" },               /* head of 5 bytes */
		{ "\0I\4\0\0\0\1K\0\0", 10, "malformed packed message" },          /* an Insert's old key */
		{ "\0U\4\0\0\0\1K\0\0K\0\0", 13, "malformed packed message" },     /* no new tuple after it */
		{ "\0D\4\0\0\0\1K\0\1x", 11, "malformed packed message" },         /* unknown column kind */
		{ "\0D\4\0\0\0\1K\0\1t\5ab", 13, "ends inside an item" },          /* column longer than left */
		{ "\0R\0\0\0\1", 6, "Relation message the stream did not carry" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct batchpack *dec = batchpack_new();
		const uint8_t *out;
		size_t out_len;
		char err[256] = "";

		if (batchpack_unpack(dec, (const uint8_t *)cases[i].bytes, cases[i].len, CAP, &out, &out_len,
				     err, sizeof(err)))
			fail_msg("case %zu unpacked", i);
		if (!strstr(err, cases[i].error))
			fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err, cases[i].error);
		batchpack_free(dec);
	}
}

/* A small packed batch cannot unpack beyond the size the caller allows. */
static void test_unpacking_is_bounded(void **state)
{
	struct batchpack *enc = batchpack_new(), *dec = batchpack_new();
	static struct batch bt;
	static uint8_t many[60000];
	const uint8_t *packed, *out;
	size_t plen, out_len, n = 0;
	char err[256];

	(void)state;
	bt.len = 0;
	add_relation(&bt, 16390, "pgbench_accounts");
	roundtrip(enc, dec, bt.b, bt.len, &plen);
	/* one reference of 6 bytes stands for the whole message, 10000 times */
	assert_true(batchpack_pack(enc, bt.b, bt.len, &packed, &plen));
	for (n = 0; n + plen <= sizeof(many); n += plen)
		memcpy(many + n, packed, plen);
	assert_false(batchpack_unpack(dec, many, n, 64 * 1024, &out, &out_len, err, sizeof(err)));
	assert_non_null(strstr(err, "unpacks beyond"));
	/* exactly the size allowed is fine */
	batchpack_reset(enc);
	batchpack_reset(dec);
	roundtrip(enc, dec, bt.b, bt.len, NULL);
	assert_true(batchpack_unpack(dec, many, plen, bt.len, &out, &out_len, err, sizeof(err)));
	assert_false(batchpack_unpack(dec, many, plen, bt.len - 1, &out, &out_len, err, sizeof(err)));
	batchpack_free(enc);
	batchpack_free(dec);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_real_pgoutput_roundtrips),
		cmocka_unit_test(test_real_pgoutput_message_by_message),
		cmocka_unit_test(test_stream_across_batches_and_resets),
		cmocka_unit_test(test_relation_references),
		cmocka_unit_test(test_packed_forms),
		cmocka_unit_test(test_awkward_values_roundtrip),
		cmocka_unit_test(test_packable),
		cmocka_unit_test(test_truncated_packed_batches_are_refused),
		cmocka_unit_test(test_corrupt_packed_batches_are_refused),
		cmocka_unit_test(test_unpacking_is_bounded),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
