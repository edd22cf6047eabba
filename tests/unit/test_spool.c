/*
 * test_spool.c — the durable spool: the exact on-disk format, append, sync
 * and read back, segments rolling, the seek rule around continuation
 * records and the prev it reports, release (the segment being appended to
 * included), reopening, and recovery from a torn tail, a corrupt record, a
 * corrupt or headerless segment in the middle and an incomplete trailing
 * transaction; the floor (raised by release and spool_set_floor(), kept
 * across reopening in its exact format, a damaged file refused, a resume
 * below it a gap, an interrupted release finished on opening); recovery
 * counting what it keeps durable; the record parser on cut and garbage
 * input. Failing writes and fsyncs are in test_spool_fault.c.
 *
 * Each test works in its own directory from mkdtemp(), removed afterwards.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/crc32c.h"
#include "gateway/stream/spool.h"
#include "spool_fixture.h"

#define SEG_HDR 16
#define REC_OVERHEAD 48            /* length, CRC and the meta */
#define BODY 100                   /* the usual test body */
#define REC (REC_OVERHEAD + BODY)  /* a usual record on disk */
#define TWO_PER_SEG (SEG_HDR + 2 * REC)

/* --- helpers ---------------------------------------------------------- */

static struct spool *open_spool(struct fx *f, uint64_t segment_bytes, struct spool_recovery *rec)
{
	char err[512] = "";
	struct spool *sp = spool_open(f->dir, segment_bytes, rec, err, sizeof(err));

	if (sp == NULL)
		fail_msg("spool_open: %s", err);
	return sp;
}

static void fill_body(uint8_t *body, size_t len, uint64_t tag)
{
	for (size_t i = 0; i < len; i++)
		body[i] = (uint8_t)(tag * 31 + i);
}

/* Appends a record tagged by first_lsn (the body is derived from it). */
static void append_len(struct spool *sp, uint64_t first_lsn, uint64_t commit_end, size_t len)
{
	struct spool_meta m = {
		.first_lsn = first_lsn,
		.commit_end_lsn = commit_end,
		.commit_time_us = (int64_t)commit_end * 10,
		.spooled_at_us = 1700000000000000LL + (int64_t)first_lsn,
		.transactions = commit_end ? 1 : 0,
	};
	uint8_t *body = malloc(len ? len : 1);
	char err[512] = "";

	assert_non_null(body);
	fill_body(body, len, first_lsn);
	if (!spool_append(sp, &m, body, len, err, sizeof(err)))
		fail_msg("spool_append: %s", err);
	free(body);
}

static void append(struct spool *sp, uint64_t first_lsn, uint64_t commit_end)
{
	append_len(sp, first_lsn, commit_end, BODY);
}

static void sync_ok(struct spool *sp)
{
	char err[512] = "";

	if (!spool_sync(sp, err, sizeof(err)))
		fail_msg("spool_sync: %s", err);
}

/* Reads the next record and checks it is the one tagged first_lsn. */
static void expect_len(struct spool *sp, uint64_t first_lsn, uint64_t commit_end, size_t len)
{
	struct spool_meta m;
	const uint8_t *body;
	size_t blen;
	uint8_t *want = malloc(len ? len : 1);
	char err[512] = "";
	int rc = spool_read(sp, &m, &body, &blen, err, sizeof(err));

	if (rc != 1)
		fail_msg("spool_read for record %" PRIu64 ": %d (%s)", first_lsn, rc, err);
	assert_int_equal(m.first_lsn, first_lsn);
	assert_int_equal(m.commit_end_lsn, commit_end);
	assert_int_equal(m.commit_time_us, (int64_t)commit_end * 10);
	assert_int_equal(m.spooled_at_us, 1700000000000000LL + (int64_t)first_lsn);
	assert_int_equal(m.transactions, commit_end ? 1 : 0);
	assert_int_equal(m.flags, 0);
	assert_int_equal(blen, len);
	fill_body(want, len, first_lsn);
	assert_memory_equal(body, want, len ? len : 0);
	free(want);
}

static void expect(struct spool *sp, uint64_t first_lsn, uint64_t commit_end)
{
	expect_len(sp, first_lsn, commit_end, BODY);
}

static void expect_end(struct spool *sp)
{
	struct spool_meta m;
	const uint8_t *body;
	size_t blen;
	char err[512] = "";

	assert_int_equal(spool_read(sp, &m, &body, &blen, err, sizeof(err)), 0);
}

/* Seeks (must succeed); returns the prev it reports. */
static uint64_t seek(struct spool *sp, uint64_t lsn)
{
	char err[512] = "";
	uint64_t prev = 0xdeadbeef;
	enum spool_seek_result r = spool_seek(sp, lsn, &prev, err, sizeof(err));

	if (r != SPOOL_SEEK_OK)
		fail_msg("spool_seek(%" PRIu64 "): %d (%s)", lsn, (int)r, err);
	assert_int_equal(spool_cursor_prev_lsn(sp), prev);
	return prev;
}

/* Releases (must succeed); returns the segments removed. */
static int release(struct spool *sp, uint64_t acked)
{
	char err[512] = "";
	int n = spool_release(sp, acked, err, sizeof(err));

	if (n < 0)
		fail_msg("spool_release(%" PRIu64 "): %s", acked, err);
	return n;
}

static void floor_file(struct fx *f, char *out, size_t n)
{
	snprintf(out, n, "%s/floor", f->dir);
}

static bool floor_exists(struct fx *f)
{
	char path[256];

	floor_file(f, path, sizeof(path));
	return access(path, F_OK) == 0;
}

static void seg_file(struct fx *f, uint64_t seq, char *out, size_t n)
{
	snprintf(out, n, "%s/%016" PRIx64 ".seg", f->dir, seq);
}

static bool seg_exists(struct fx *f, uint64_t seq)
{
	char path[256];

	seg_file(f, seq, path, sizeof(path));
	return access(path, F_OK) == 0;
}

static unsigned count_segments(struct fx *f)
{
	DIR *d = opendir(f->dir);
	struct dirent *de;
	unsigned n = 0;

	assert_non_null(d);
	while ((de = readdir(d)) != NULL)
		if (strlen(de->d_name) == 20 && strcmp(de->d_name + 16, ".seg") == 0)
			n++;
	closedir(d);
	return n;
}

static off_t seg_size(struct fx *f, uint64_t seq)
{
	char path[256];
	struct stat st;

	seg_file(f, seq, path, sizeof(path));
	assert_int_equal(stat(path, &st), 0);
	return st.st_size;
}

static void seg_truncate(struct fx *f, uint64_t seq, off_t size)
{
	char path[256];

	seg_file(f, seq, path, sizeof(path));
	assert_int_equal(truncate(path, size), 0);
}

static void seg_flip(struct fx *f, uint64_t seq, off_t off)
{
	char path[256];
	uint8_t b;
	int fd;

	seg_file(f, seq, path, sizeof(path));
	fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &b, 1, off), 1);
	b ^= 0x40;
	assert_int_equal(pwrite(fd, &b, 1, off), 1);
	close(fd);
}

static void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* The record format as spool.h documents it, written independently. */
static size_t encode_record(uint8_t *out, const struct spool_meta *m, const uint8_t *body,
		size_t len)
{
	uint8_t *meta = out + 8;

	put_le64(meta, m->first_lsn);
	put_le64(meta + 8, m->commit_end_lsn);
	put_le64(meta + 16, (uint64_t)m->commit_time_us);
	put_le64(meta + 24, (uint64_t)m->spooled_at_us);
	put_le32(meta + 32, m->transactions);
	put_le32(meta + 36, m->flags);
	memcpy(meta + 40, body, len);
	put_le32(out, (uint32_t)(40 + len));
	put_le32(out + 4, crc32c(0, meta, 40 + len));
	return 48 + len;
}

/* --- format, append, read --------------------------------------------- */

static void test_spool_file_format(void **state)
{
	struct fx *f = *state;
	struct spool *sp = open_spool(f, 0, NULL);
	struct spool_meta m = {
		.first_lsn = 0x0102030405060708ull, .commit_end_lsn = 0x1112131415161718ull,
		.commit_time_us = -5, .spooled_at_us = 77, .transactions = 3, .flags = 0,
	};
	const uint8_t body[] = "hello, spool";
	uint8_t want[SEG_HDR + 48 + sizeof(body)], got[sizeof(want) + 1];
	char path[256], err[256];
	int fd;

	assert_true(spool_append(sp, &m, body, sizeof(body), err, sizeof(err)));
	sync_ok(sp);
	memcpy(want, "STRAITSP", 8);
	put_le32(want + 8, 1);
	put_le32(want + 12, 0);
	encode_record(want + SEG_HDR, &m, body, sizeof(body));

	seg_file(f, 1, path, sizeof(path));
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(read(fd, got, sizeof(got)), sizeof(want));
	close(fd);
	assert_memory_equal(got, want, sizeof(want));
	assert_int_equal(spool_bytes(sp), sizeof(want));
	spool_close(sp);

	/* directory made private */
	{
		struct stat st;

		assert_int_equal(stat(f->dir, &st), 0);
		assert_int_equal(st.st_mode & 0777, 0700);
	}
}

static void test_spool_round_trip(void **state)
{
	struct fx *f = *state;
	struct spool *sp = open_spool(f, 0, NULL);

	assert_int_equal(spool_records(sp), 0);
	assert_int_equal(spool_bytes(sp), 0);
	assert_int_equal(spool_oldest_us(sp), 0);
	assert_int_equal(spool_unread_bytes(sp), 0);
	expect_end(sp);

	append(sp, 10, 100);
	append_len(sp, 20, 0, 0);            /* empty body */
	append_len(sp, 30, 300, 70000);
	append_len(sp, 40, 400, 600000);     /* bigger than the read-ahead window */
	append(sp, 50, 500);
	assert_int_equal(spool_records(sp), 5);
	assert_int_equal(spool_bytes(sp), SEG_HDR + 5 * REC_OVERHEAD + BODY + 0 + 70000 + 600000 + BODY);
	assert_int_equal(spool_oldest_us(sp), 1700000000000000LL + 10);
	assert_int_equal(spool_unread_bytes(sp), 5 * REC_OVERHEAD + BODY + 70000 + 600000 + BODY);

	expect(sp, 10, 100);
	assert_int_equal(spool_unread_bytes(sp), 4 * REC_OVERHEAD + 70000 + 600000 + BODY);
	expect_len(sp, 20, 0, 0);
	expect_len(sp, 30, 300, 70000);
	expect_len(sp, 40, 400, 600000);
	expect(sp, 50, 500);
	expect_end(sp);
	assert_int_equal(spool_unread_bytes(sp), 0);

	/* reading a segment still being appended to */
	append(sp, 60, 600);
	assert_int_equal(spool_unread_bytes(sp), REC);
	expect(sp, 60, 600);
	expect_end(sp);
	/* appending never moved the cursor; seeking back re-reads */
	seek(sp, 0);
	expect(sp, 10, 100);
	spool_close(sp);
	assert_int_equal(count_segments(f), 1);
}

static void test_spool_durable_lsn(void **state)
{
	struct fx *f = *state;
	struct spool *sp = open_spool(f, 0, NULL);

	assert_int_equal(spool_end_lsn(sp), 0);
	assert_int_equal(spool_durable_lsn(sp), 0);
	append(sp, 10, 100);
	assert_int_equal(spool_end_lsn(sp), 100);
	assert_int_equal(spool_durable_lsn(sp), 0);
	sync_ok(sp);
	assert_int_equal(spool_durable_lsn(sp), 100);
	append(sp, 20, 0);                   /* continuation: ends nothing */
	assert_int_equal(spool_end_lsn(sp), 100);
	append(sp, 30, 300);
	assert_int_equal(spool_end_lsn(sp), 300);
	assert_int_equal(spool_durable_lsn(sp), 100);
	sync_ok(sp);
	assert_int_equal(spool_durable_lsn(sp), 300);
	spool_close(sp);
}

static void test_spool_segment_roll(void **state)
{
	struct fx *f = *state;
	struct spool *sp = open_spool(f, TWO_PER_SEG, NULL);

	append(sp, 10, 100);
	append(sp, 20, 200);
	assert_int_equal(count_segments(f), 1);
	assert_int_equal(seg_size(f, 1), TWO_PER_SEG);
	append(sp, 30, 300);                 /* would pass segment_bytes: rolls */
	assert_int_equal(count_segments(f), 2);
	assert_int_equal(seg_size(f, 2), SEG_HDR + REC);
	append_len(sp, 40, 400, 1000);       /* over segment_bytes alone: its own segment */
	assert_int_equal(count_segments(f), 3);
	assert_int_equal(seg_size(f, 3), SEG_HDR + REC_OVERHEAD + 1000);
	append(sp, 50, 500);                 /* and the next one rolls again */
	assert_int_equal(count_segments(f), 4);
	assert_int_equal(seg_size(f, 4), SEG_HDR + REC);
	assert_int_equal(spool_bytes(sp), 4 * SEG_HDR + 4 * REC + REC_OVERHEAD + 1000);
	assert_int_equal(spool_records(sp), 5);
	sync_ok(sp);
	assert_int_equal(spool_durable_lsn(sp), 500);

	/* the unread count leaves out segment headers */
	assert_int_equal(spool_unread_bytes(sp), 4 * REC + REC_OVERHEAD + 1000);
	expect(sp, 10, 100);
	expect(sp, 20, 200);
	expect(sp, 30, 300);
	expect_len(sp, 40, 400, 1000);
	expect(sp, 50, 500);
	expect_end(sp);
	/* at the end of a full segment, the next append's new segment is read */
	append(sp, 60, 600);
	expect(sp, 60, 600);
	append(sp, 70, 700);
	assert_int_equal(count_segments(f), 5);
	expect(sp, 70, 700);
	expect_end(sp);
	spool_close(sp);
}

/* --- seek ------------------------------------------------------------- */

/*
 * r10 ends 100 | r20 continues | r30 ends 200 | r40 ends 300 |
 * r50, r60 continue | r70 ends 400
 */
static void seek_layout(struct spool *sp)
{
	append(sp, 10, 100);
	append(sp, 20, 0);
	append(sp, 30, 200);
	append(sp, 40, 300);
	append(sp, 50, 0);
	append(sp, 60, 0);
	append(sp, 70, 400);
}

static void check_seeks(struct spool *sp)
{
	static const struct { uint64_t resume, first, prev; } cases[] = {
		{ 0, 10, 0 }, { 99, 10, 0 },
		{ 100, 20, 100 }, { 101, 20, 100 }, { 199, 20, 100 },
		{ 200, 40, 200 }, { 250, 40, 200 },
		{ 300, 50, 300 }, { 399, 50, 300 },
		{ 400, 0, 400 }, { 100000, 0, 400 },
	};
	static const uint64_t ends[] = { 100, 0, 200, 300, 0, 0, 400 };

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t prev = cases[i].prev;

		assert_int_equal(seek(sp, cases[i].resume), prev);
		if (cases[i].first == 0) {
			assert_int_equal(spool_unread_bytes(sp), 0);
			expect_end(sp);
			assert_int_equal(spool_cursor_prev_lsn(sp), prev);
			continue;
		}
		assert_int_equal(spool_unread_bytes(sp), (uint64_t)(80 - cases[i].first) / 10 * REC);
		/* each record continues from the last one read that ends a transaction */
		for (uint64_t r = cases[i].first; r <= 70; r += 10) {
			assert_int_equal(spool_cursor_prev_lsn(sp), prev);
			expect(sp, r, ends[r / 10 - 1]);
			if (ends[r / 10 - 1] != 0)
				prev = ends[r / 10 - 1];
		}
		expect_end(sp);
		assert_int_equal(spool_cursor_prev_lsn(sp), 400);
	}
}

static void test_spool_seek_one_segment(void **state)
{
	struct fx *f = *state;
	struct spool *sp = open_spool(f, 0, NULL);

	seek(sp, 100);                       /* empty spool: nothing to read */
	expect_end(sp);
	seek_layout(sp);
	assert_int_equal(count_segments(f), 1);
	check_seeks(sp);
	spool_close(sp);
}

static void test_spool_seek_across_segments(void **state)
{
	struct fx *f = *state;
	struct spool *sp = open_spool(f, TWO_PER_SEG, NULL);

	seek_layout(sp);
	assert_int_equal(count_segments(f), 4);
	check_seeks(sp);
	/* the same after reopening (summaries rebuilt by recovery) */
	sync_ok(sp);
	spool_close(sp);
	sp = open_spool(f, TWO_PER_SEG, NULL);
	check_seeks(sp);
	spool_close(sp);
}

/* --- release ---------------------------------------------------------- */

static void test_spool_release(void **state)
{
	struct fx *f = *state;
	struct spool *sp = open_spool(f, TWO_PER_SEG, NULL);

	/* segments: [10:100 20:200] [30:300 40:cont] [50:400 60:500] [70:600] */
	append(sp, 10, 100);
	append(sp, 20, 200);
	append(sp, 30, 300);
	append(sp, 40, 0);
	append(sp, 50, 400);
	append(sp, 60, 500);
	append(sp, 70, 600);
	sync_ok(sp);
	assert_int_equal(count_segments(f), 4);
	expect(sp, 10, 100);                 /* cursor inside segment 1 */

	assert_int_equal(release(sp, 0), 0);
	assert_int_equal(release(sp, 199), 0);
	assert_int_equal(spool_records(sp), 7);
	assert_int_equal(spool_floor_lsn(sp), 0);
	assert_false(floor_exists(f));
	assert_int_equal(release(sp, 200), 1);
	assert_false(seg_exists(f, 1));
	assert_int_equal(spool_floor_lsn(sp), 200);
	assert_true(floor_exists(f));
	assert_int_equal(spool_records(sp), 5);
	assert_int_equal(spool_bytes(sp), 3 * SEG_HDR + 5 * REC);
	assert_int_equal(spool_oldest_us(sp), 1700000000000000LL + 30);
	/* the cursor was in segment 1: it moves to the start of segment 2 */
	assert_int_equal(spool_unread_bytes(sp), 5 * REC);
	assert_int_equal(spool_cursor_prev_lsn(sp), 200);
	expect(sp, 30, 300);

	/* segment 2 ends inside the transaction that ends at 400 in segment 3 */
	assert_int_equal(release(sp, 300), 0);
	assert_int_equal(release(sp, 399), 0);
	assert_int_equal(spool_floor_lsn(sp), 200);
	assert_int_equal(release(sp, 400), 1);
	assert_false(seg_exists(f, 2));
	assert_int_equal(spool_records(sp), 3);
	/*
	 * The floor is where that transaction ends: its start is gone. The
	 * cursor was in segment 2: record 40 and its end, record 50, both
	 * acknowledged, are skipped.
	 */
	assert_int_equal(spool_floor_lsn(sp), 400);
	assert_int_equal(spool_cursor_prev_lsn(sp), 400);
	assert_int_equal(spool_unread_bytes(sp), 2 * REC);
	expect(sp, 60, 500);
	expect(sp, 70, 600);
	expect_end(sp);

	/* caught up: everything goes, the segment being appended to too */
	assert_int_equal(release(sp, 10000), 2);
	assert_int_equal(spool_floor_lsn(sp), 600);
	assert_int_equal(count_segments(f), 0);
	assert_int_equal(spool_records(sp), 0);
	assert_int_equal(spool_bytes(sp), 0);
	assert_int_equal(spool_oldest_us(sp), 0);
	assert_int_equal(spool_unread_bytes(sp), 0);
	assert_int_equal(spool_end_lsn(sp), 600);
	assert_int_equal(spool_durable_lsn(sp), 600);
	expect_end(sp);
	assert_int_equal(release(sp, 10000), 0);

	/* appending goes on in a new segment, where the cursor finds it */
	append(sp, 80, 700);
	assert_true(seg_exists(f, 5));
	assert_int_equal(spool_records(sp), 1);
	assert_int_equal(spool_bytes(sp), SEG_HDR + REC);
	expect(sp, 80, 700);
	expect_end(sp);
	sync_ok(sp);
	spool_close(sp);

	sp = open_spool(f, TWO_PER_SEG, NULL);
	assert_int_equal(spool_records(sp), 1);
	assert_int_equal(spool_floor_lsn(sp), 600);
	assert_int_equal(spool_cursor_prev_lsn(sp), 600);
	expect(sp, 80, 700);
	spool_close(sp);
}

/* --- reopen and recovery ---------------------------------------------- */

/* A streamed transaction's first block, far before later commits: resends reach back to it. */
static void test_spool_reach_back(void **state)
{
	struct fx *f = *state;
	struct spool *sp = open_spool(f, TWO_PER_SEG, NULL);
	struct spool_pos block, gone = { .seq = 99, .off = SEG_HDR };
	uint64_t prev;
	char err[512];

	/* segments: [10:100 20:block] [30:300 40:400] [50:500] */
	append(sp, 10, 100);
	append(sp, 20, 0);
	block = spool_last_pos(sp);
	assert_int_equal(block.seq, 1);
	assert_int_equal(block.off, SEG_HDR + REC);
	append(sp, 30, 300);
	append(sp, 40, 400);
	append(sp, 50, 500);
	sync_ok(sp);

	/* after 400, back to the block: it continues from 100 */
	assert_int_equal(spool_seek_from(sp, 400, &block, &prev, err, sizeof(err)), SPOOL_SEEK_OK);
	assert_int_equal(prev, 100);
	assert_int_equal(spool_cursor_prev_lsn(sp), 100);
	expect(sp, 20, 0);
	expect(sp, 30, 300);
	/* a position after the one sought is no reaching back */
	assert_int_equal(spool_seek_from(sp, 0, &block, &prev, err, sizeof(err)), SPOOL_SEEK_OK);
	expect(sp, 10, 100);
	/* a position the spool does not hold is a gap */
	assert_int_equal(spool_seek_from(sp, 400, &gone, &prev, err, sizeof(err)), SPOOL_SEEK_GAP);

	/* everything acknowledged, but the block's segment and later ones are kept */
	assert_int_equal(spool_release_keep(sp, 500, &block, err, sizeof(err)), 0);
	assert_int_equal(spool_records(sp), 5);
	assert_int_equal(spool_seek_from(sp, 500, &block, &prev, err, sizeof(err)), SPOOL_SEEK_OK);
	expect(sp, 20, 0);
	/* the block kept in the second segment only: the first goes */
	block.seq = 2;
	block.off = SEG_HDR;
	assert_int_equal(spool_release_keep(sp, 500, &block, err, sizeof(err)), 1);
	assert_int_equal(spool_records(sp), 3);
	spool_close(sp);
}

static void test_spool_reopen_clean(void **state)
{
	struct fx *f = *state;
	struct spool_recovery rec;
	struct spool *sp = open_spool(f, TWO_PER_SEG, &rec);

	assert_int_equal(rec.records, 0);
	assert_false(rec.torn);
	for (uint64_t r = 10; r <= 50; r += 10)
		append(sp, r, r * 10);
	sync_ok(sp);
	spool_close(sp);

	memset(&rec, 0xaa, sizeof(rec));
	sp = open_spool(f, TWO_PER_SEG, &rec);
	assert_int_equal(rec.records, 5);
	assert_int_equal(rec.bytes, 3 * SEG_HDR + 5 * REC);
	assert_int_equal(rec.dropped_bytes, 0);
	assert_int_equal(rec.dropped_records, 0);
	assert_false(rec.torn);
	assert_string_equal(rec.detail, "");
	assert_int_equal(spool_records(sp), 5);
	assert_int_equal(spool_bytes(sp), 3 * SEG_HDR + 5 * REC);
	assert_int_equal(spool_end_lsn(sp), 500);
	assert_int_equal(spool_durable_lsn(sp), 500);
	assert_int_equal(spool_oldest_us(sp), 1700000000000000LL + 10);
	for (uint64_t r = 10; r <= 50; r += 10)
		expect(sp, r, r * 10);
	expect_end(sp);
	/* the last segment had room: appending continues in it */
	append(sp, 60, 600);
	assert_int_equal(count_segments(f), 3);
	expect(sp, 60, 600);
	sync_ok(sp);
	spool_close(sp);

	sp = open_spool(f, TWO_PER_SEG, &rec);
	assert_int_equal(rec.records, 6);
	spool_close(sp);
}

static void test_spool_open_errors(void **state)
{
	struct fx *f = *state;
	char path[256], err[512] = "";
	struct spool *sp;

	snprintf(path, sizeof(path), "%s/missing/spool", f->tmp);
	assert_null(spool_open(path, 0, NULL, err, sizeof(err)));
	assert_non_null(strstr(err, path));
	assert_non_null(strstr(err, "No such file"));

	/* one owner at a time */
	sp = open_spool(f, 0, NULL);
	err[0] = '\0';
	assert_null(spool_open(f->dir, 0, NULL, err, sizeof(err)));
	assert_non_null(strstr(err, "already open"));
	spool_close(sp);
	sp = open_spool(f, 0, NULL);
	spool_close(sp);
}

static void test_spool_torn_tail(void **state)
{
	struct fx *f = *state;
	struct spool_recovery rec;
	struct spool *sp = open_spool(f, 0, NULL);

	append(sp, 10, 100);
	append(sp, 20, 200);
	append(sp, 30, 300);
	sync_ok(sp);
	spool_close(sp);
	/* a crash in the middle of writing the last record */
	seg_truncate(f, 1, SEG_HDR + 2 * REC + 60);

	sp = open_spool(f, 0, &rec);
	assert_true(rec.torn);
	assert_int_equal(rec.records, 2);
	assert_int_equal(rec.bytes, SEG_HDR + 2 * REC);
	assert_int_equal(rec.dropped_bytes, 60);
	assert_int_equal(rec.dropped_records, 0);
	assert_non_null(strstr(rec.detail, "0000000000000001.seg at 312"));
	assert_non_null(strstr(rec.detail, "cut short"));
	assert_int_equal(seg_size(f, 1), SEG_HDR + 2 * REC);
	assert_int_equal(spool_end_lsn(sp), 200);
	assert_int_equal(spool_durable_lsn(sp), 200);
	expect(sp, 10, 100);
	expect(sp, 20, 200);
	expect_end(sp);
	/* appending goes on after the cut */
	append(sp, 30, 300);
	expect(sp, 30, 300);
	sync_ok(sp);
	spool_close(sp);

	/* a tail cut inside the record header */
	seg_truncate(f, 1, SEG_HDR + 2 * REC + 3);
	sp = open_spool(f, 0, &rec);
	assert_true(rec.torn);
	assert_int_equal(rec.records, 2);
	assert_int_equal(rec.dropped_bytes, 3);
	spool_close(sp);
}

static void test_spool_corrupt_last_record(void **state)
{
	struct fx *f = *state;
	struct spool_recovery rec;
	struct spool *sp = open_spool(f, 0, NULL);

	append(sp, 10, 100);
	append(sp, 20, 200);
	sync_ok(sp);
	spool_close(sp);
	seg_flip(f, 1, SEG_HDR + REC + 48 + 7);     /* a body byte of the last record */

	sp = open_spool(f, 0, &rec);
	assert_true(rec.torn);
	assert_int_equal(rec.records, 1);
	assert_int_equal(rec.dropped_bytes, REC);
	assert_non_null(strstr(rec.detail, "0000000000000001.seg at 164: CRC mismatch"));
	assert_int_equal(spool_end_lsn(sp), 100);
	expect(sp, 10, 100);
	expect_end(sp);
	spool_close(sp);
}

static void test_spool_bad_length(void **state)
{
	struct fx *f = *state;
	struct spool_recovery rec;
	struct spool *sp = open_spool(f, 0, NULL);

	append(sp, 10, 100);
	append(sp, 20, 200);
	sync_ok(sp);
	spool_close(sp);
	seg_flip(f, 1, SEG_HDR + REC + 3);          /* top byte of the length: over the limit */

	sp = open_spool(f, 0, &rec);
	assert_true(rec.torn);
	assert_int_equal(rec.records, 1);
	assert_non_null(strstr(rec.detail, "bad record length"));
	spool_close(sp);
}

static void test_spool_corrupt_middle_segment(void **state)
{
	struct fx *f = *state;
	struct spool_recovery rec;
	struct spool *sp = open_spool(f, TWO_PER_SEG, NULL);

	for (uint64_t r = 10; r <= 70; r += 10)
		append(sp, r, r * 10);
	sync_ok(sp);
	spool_close(sp);
	assert_int_equal(count_segments(f), 4);
	seg_flip(f, 2, SEG_HDR + REC + 20);         /* second record of segment 2 */

	sp = open_spool(f, TWO_PER_SEG, &rec);
	assert_true(rec.torn);
	assert_int_equal(rec.records, 3);
	assert_int_equal(rec.bytes, 2 * SEG_HDR + 3 * REC);
	assert_int_equal(rec.dropped_bytes, REC + 2 * SEG_HDR + 3 * REC);
	assert_non_null(strstr(rec.detail, "0000000000000002.seg at 164: CRC mismatch"));
	assert_non_null(strstr(rec.detail, "2 later segments removed"));
	assert_int_equal(count_segments(f), 2);
	assert_false(seg_exists(f, 3));
	assert_false(seg_exists(f, 4));
	assert_int_equal(seg_size(f, 2), SEG_HDR + REC);
	assert_int_equal(spool_end_lsn(sp), 300);
	for (uint64_t r = 10; r <= 30; r += 10)
		expect(sp, r, r * 10);
	expect_end(sp);
	/* a removed sequence number is not used again */
	append(sp, 40, 400);
	append(sp, 50, 500);
	assert_true(seg_exists(f, 5));
	assert_false(seg_exists(f, 3));
	sync_ok(sp);
	spool_close(sp);

	sp = open_spool(f, TWO_PER_SEG, &rec);
	assert_false(rec.torn);
	assert_int_equal(rec.records, 5);
	for (uint64_t r = 10; r <= 50; r += 10)
		expect(sp, r, r * 10);
	spool_close(sp);
}

static void test_spool_bad_segment_header(void **state)
{
	struct fx *f = *state;
	struct spool_recovery rec;
	struct spool *sp = open_spool(f, TWO_PER_SEG, NULL);
	char path[256];
	int fd;

	for (uint64_t r = 10; r <= 60; r += 10)
		append(sp, r, r * 10);
	sync_ok(sp);
	spool_close(sp);
	assert_int_equal(count_segments(f), 3);

	/* the last segment half created: dropped as a torn tail */
	seg_file(f, 4, path, sizeof(path));
	fd = open(path, O_WRONLY | O_CREAT, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "STRAIT", 6), 6);
	close(fd);
	sp = open_spool(f, TWO_PER_SEG, &rec);
	assert_true(rec.torn);
	assert_int_equal(rec.records, 6);
	assert_int_equal(rec.dropped_bytes, 6);
	assert_non_null(strstr(rec.detail, "0000000000000004.seg: segment header cut short"));
	assert_false(seg_exists(f, 4));
	spool_close(sp);

	/* a bad magic in the middle: it and all after it go */
	seg_flip(f, 2, 0);
	sp = open_spool(f, TWO_PER_SEG, &rec);
	assert_true(rec.torn);
	assert_int_equal(rec.records, 2);
	assert_int_equal(rec.dropped_bytes, 2 * (SEG_HDR + 2 * REC));
	assert_non_null(strstr(rec.detail, "0000000000000002.seg: bad segment magic"));
	assert_non_null(strstr(rec.detail, "1 later segment removed"));
	assert_int_equal(count_segments(f), 1);
	expect(sp, 10, 100);
	expect(sp, 20, 200);
	expect_end(sp);
	spool_close(sp);

	/* an unknown format version */
	seg_flip(f, 1, 8);
	sp = open_spool(f, TWO_PER_SEG, &rec);
	assert_true(rec.torn);
	assert_int_equal(rec.records, 0);
	assert_non_null(strstr(rec.detail, "unsupported segment format version"));
	assert_int_equal(count_segments(f), 0);
	assert_int_equal(spool_end_lsn(sp), 0);
	spool_close(sp);
}

static void test_spool_incomplete_tail_on_open(void **state)
{
	struct fx *f = *state;
	struct spool_recovery rec;
	struct spool *sp = open_spool(f, TWO_PER_SEG, NULL);

	/* [10:100 20:200] [30:300 40:cont] [50:cont 60:cont] [70:cont] */
	append(sp, 10, 100);
	append(sp, 20, 200);
	append(sp, 30, 300);
	append(sp, 40, 0);
	append(sp, 50, 0);
	append(sp, 60, 0);
	append(sp, 70, 0);
	sync_ok(sp);
	assert_int_equal(spool_end_lsn(sp), 300);
	spool_close(sp);
	assert_int_equal(count_segments(f), 4);

	sp = open_spool(f, TWO_PER_SEG, &rec);
	assert_false(rec.torn);
	assert_int_equal(rec.records, 3);
	assert_int_equal(rec.dropped_records, 4);
	assert_int_equal(rec.dropped_bytes, 4 * REC + 2 * SEG_HDR);
	assert_non_null(strstr(rec.detail, "4 records of an incomplete transaction dropped"));
	assert_int_equal(count_segments(f), 2);
	assert_int_equal(seg_size(f, 2), SEG_HDR + REC);
	assert_int_equal(spool_end_lsn(sp), 300);
	for (uint64_t r = 10; r <= 30; r += 10)
		expect(sp, r, r * 10);
	expect_end(sp);
	spool_close(sp);

	/* a torn record after an incomplete one: both go */
	sp = open_spool(f, TWO_PER_SEG, NULL);
	append(sp, 40, 0);
	append(sp, 50, 500);
	sync_ok(sp);
	spool_close(sp);
	assert_true(seg_exists(f, 3));       /* 3 and 4 went durably: the number is free again */
	seg_truncate(f, 3, SEG_HDR + REC - 1);
	sp = open_spool(f, TWO_PER_SEG, &rec);
	assert_true(rec.torn);
	assert_int_equal(rec.records, 3);
	assert_int_equal(rec.dropped_records, 1);
	assert_non_null(strstr(rec.detail, "cut short"));
	assert_non_null(strstr(rec.detail, "1 record of an incomplete transaction dropped"));
	assert_int_equal(count_segments(f), 2);
	spool_close(sp);
}

static void test_spool_truncate_incomplete(void **state)
{
	struct fx *f = *state;
	struct spool *sp = open_spool(f, TWO_PER_SEG, NULL);
	char err[256];

	append(sp, 10, 100);
	append(sp, 20, 200);
	append(sp, 30, 300);
	append(sp, 40, 0);
	append(sp, 50, 0);
	append(sp, 60, 0);
	sync_ok(sp);
	assert_int_equal(count_segments(f), 3);
	/* the sender read everything, the incomplete records too */
	for (uint64_t r = 10; r <= 60; r += 10)
		expect(sp, r, r <= 30 ? r * 10 : 0);
	expect_end(sp);

	assert_true(spool_truncate_incomplete(sp, err, sizeof(err)));
	assert_int_equal(count_segments(f), 2);
	assert_int_equal(seg_size(f, 2), SEG_HDR + REC);
	assert_int_equal(spool_records(sp), 3);
	assert_int_equal(spool_bytes(sp), 2 * SEG_HDR + 3 * REC);
	assert_int_equal(spool_end_lsn(sp), 300);
	assert_int_equal(spool_unread_bytes(sp), 0);
	/* the cursor sits at the new end: what the source appends next is read */
	append(sp, 40, 400);
	assert_int_equal(spool_unread_bytes(sp), REC);
	expect(sp, 40, 400);
	expect_end(sp);
	/* nothing incomplete: nothing to do */
	assert_true(spool_truncate_incomplete(sp, err, sizeof(err)));
	assert_int_equal(spool_records(sp), 4);
	sync_ok(sp);

	/* a cursor before the cut stays where it was */
	seek(sp, 100);
	append(sp, 50, 0);
	assert_true(spool_truncate_incomplete(sp, err, sizeof(err)));
	expect(sp, 20, 200);
	expect(sp, 30, 300);
	expect(sp, 40, 400);
	expect_end(sp);
	spool_close(sp);

	sp = open_spool(f, TWO_PER_SEG, NULL);
	assert_int_equal(spool_records(sp), 4);
	spool_close(sp);
}

static void test_spool_truncate_within_segment(void **state)
{
	struct fx *f = *state;
	struct spool *sp = open_spool(f, 0, NULL);
	char err[256];

	append(sp, 10, 100);
	append(sp, 20, 0);
	append(sp, 30, 0);
	expect(sp, 10, 100);
	expect(sp, 20, 0);
	expect(sp, 30, 0);
	assert_true(spool_truncate_incomplete(sp, err, sizeof(err)));
	assert_int_equal(seg_size(f, 1), SEG_HDR + REC);
	assert_int_equal(spool_unread_bytes(sp), 0);
	/* the cursor was past the cut in the same segment: it comes back to it */
	append(sp, 20, 200);
	expect(sp, 20, 200);
	expect_end(sp);
	spool_close(sp);
}

static void test_spool_truncate_everything(void **state)
{
	struct fx *f = *state;
	struct spool *sp = open_spool(f, TWO_PER_SEG, NULL);
	char err[256];

	append(sp, 10, 0);
	append(sp, 20, 0);
	append(sp, 30, 0);
	expect(sp, 10, 0);
	assert_true(spool_truncate_incomplete(sp, err, sizeof(err)));
	assert_int_equal(count_segments(f), 0);
	assert_int_equal(spool_records(sp), 0);
	assert_int_equal(spool_bytes(sp), 0);
	assert_int_equal(spool_oldest_us(sp), 0);
	expect_end(sp);
	append(sp, 10, 0);
	append(sp, 20, 200);
	assert_true(seg_exists(f, 3));
	expect(sp, 10, 0);
	expect(sp, 20, 200);
	spool_close(sp);
}

static void test_spool_read_detects_corruption(void **state)
{
	struct fx *f = *state;
	struct spool *sp = open_spool(f, 0, NULL);
	struct spool_meta m;
	const uint8_t *body;
	size_t blen;
	char err[512] = "";

	append(sp, 10, 100);
	append(sp, 20, 200);
	sync_ok(sp);
	seg_flip(f, 1, SEG_HDR + 30);        /* a meta byte of the first record */
	assert_int_equal(spool_read(sp, &m, &body, &blen, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "0000000000000001.seg"));
	assert_non_null(strstr(err, "CRC mismatch"));
	spool_close(sp);
}

/* --- the floor ------------------------------------------------------- */

/* The floor file as spool.h documents it, written independently. */
static void write_floor_file(struct fx *f, uint64_t lsn)
{
	uint8_t buf[28];
	char path[256];
	int fd;

	memcpy(buf, "STRAITFL", 8);
	put_le32(buf + 8, 1);
	put_le32(buf + 12, 0);
	put_le64(buf + 16, lsn);
	put_le32(buf + 24, crc32c(0, buf, 24));
	floor_file(f, path, sizeof(path));
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, buf, sizeof(buf)), sizeof(buf));
	close(fd);
}

static void read_floor_file(struct fx *f, uint8_t *buf, size_t cap, ssize_t *len)
{
	char path[256];
	int fd;

	floor_file(f, path, sizeof(path));
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	*len = read(fd, buf, cap);
	close(fd);
}

static void test_spool_floor_new(void **state)
{
	struct fx *f = *state;
	struct spool *sp = open_spool(f, 0, NULL);

	assert_int_equal(spool_floor_lsn(sp), 0);
	assert_int_equal(spool_cursor_prev_lsn(sp), 0);
	assert_false(spool_fsync_failed(sp));
	append(sp, 10, 100);
	sync_ok(sp);
	spool_close(sp);
	/* appending and syncing never write a floor */
	assert_false(floor_exists(f));
	sp = open_spool(f, 0, NULL);
	assert_int_equal(spool_floor_lsn(sp), 0);
	assert_int_equal(seek(sp, 0), 0);
	expect(sp, 10, 100);
	spool_close(sp);
}

static void test_spool_floor_format_and_reopen(void **state)
{
	struct fx *f = *state;
	struct spool_recovery rec;
	struct spool *sp = open_spool(f, TWO_PER_SEG, NULL);
	uint8_t want[28], got[64];
	ssize_t len;
	char path[256];

	/* high LSNs: both halves of the file's u64 matter */
	append(sp, 10, 0x100000100ull);
	append(sp, 20, 0x100000200ull);
	append(sp, 30, 0x100000300ull);
	sync_ok(sp);
	assert_int_equal(release(sp, 0x100000250ull), 1);
	assert_int_equal(spool_floor_lsn(sp), 0x100000200ull);

	memcpy(want, "STRAITFL", 8);
	put_le32(want + 8, 1);
	put_le32(want + 12, 0);
	put_le64(want + 16, 0x100000200ull);
	put_le32(want + 24, crc32c(0, want, 24));
	read_floor_file(f, got, sizeof(got), &len);
	assert_int_equal(len, sizeof(want));
	assert_memory_equal(got, want, sizeof(want));
	/* no temporary file left behind */
	snprintf(path, sizeof(path), "%s/floor.tmp", f->dir);
	assert_int_equal(access(path, F_OK), -1);
	spool_close(sp);

	/* the floor survives reopening */
	sp = open_spool(f, TWO_PER_SEG, &rec);
	assert_int_equal(spool_floor_lsn(sp), 0x100000200ull);
	assert_int_equal(rec.records, 1);
	assert_int_equal(rec.released_bytes, 0);
	assert_int_equal(spool_end_lsn(sp), 0x100000300ull);
	assert_int_equal(spool_cursor_prev_lsn(sp), 0x100000200ull);
	expect(sp, 30, 0x100000300ull);
	/* everything released: reopened empty, the spool ends at its floor */
	assert_int_equal(release(sp, 0x100000300ull), 1);
	assert_int_equal(spool_floor_lsn(sp), 0x100000300ull);
	spool_close(sp);
	sp = open_spool(f, TWO_PER_SEG, &rec);
	assert_int_equal(rec.records, 0);
	assert_int_equal(spool_records(sp), 0);
	assert_int_equal(spool_floor_lsn(sp), 0x100000300ull);
	assert_int_equal(spool_end_lsn(sp), 0x100000300ull);
	assert_int_equal(spool_durable_lsn(sp), 0x100000300ull);
	assert_int_equal(spool_cursor_prev_lsn(sp), 0x100000300ull);
	expect_end(sp);
	spool_close(sp);

	/* a temporary file a crash left is ignored and removed */
	{
		int fd = open(path, O_WRONLY | O_CREAT, 0600);

		assert_true(fd >= 0);
		assert_int_equal(write(fd, "junk", 4), 4);
		close(fd);
	}
	sp = open_spool(f, TWO_PER_SEG, NULL);
	assert_int_equal(spool_floor_lsn(sp), 0x100000300ull);
	assert_int_equal(access(path, F_OK), -1);
	spool_close(sp);
}

static void test_spool_set_floor(void **state)
{
	struct fx *f = *state;
	struct spool *sp = open_spool(f, 0, NULL);
	char err[512] = "";

	assert_true(spool_set_floor(sp, 500, err, sizeof(err)));
	assert_int_equal(spool_floor_lsn(sp), 500);
	assert_int_equal(spool_end_lsn(sp), 500);
	assert_int_equal(spool_durable_lsn(sp), 500);
	assert_int_equal(spool_cursor_prev_lsn(sp), 500);
	/* never lowered */
	assert_true(spool_set_floor(sp, 300, err, sizeof(err)));
	assert_true(spool_set_floor(sp, 0, err, sizeof(err)));
	assert_int_equal(spool_floor_lsn(sp), 500);
	assert_true(spool_set_floor(sp, 600, err, sizeof(err)));
	assert_int_equal(spool_floor_lsn(sp), 600);
	spool_close(sp);

	sp = open_spool(f, 0, NULL);
	assert_int_equal(spool_floor_lsn(sp), 600);
	assert_int_equal(spool_end_lsn(sp), 600);
	assert_int_equal(spool_durable_lsn(sp), 600);
	/* reading starts there: the first record continues from the floor */
	append(sp, 10, 700);
	assert_int_equal(spool_cursor_prev_lsn(sp), 600);
	expect(sp, 10, 700);
	assert_int_equal(spool_cursor_prev_lsn(sp), 700);
	/* not over records held: refused, nothing changed, the spool goes on */
	assert_false(spool_set_floor(sp, 800, err, sizeof(err)));
	assert_non_null(strstr(err, "0/320"));
	assert_non_null(strstr(err, "holds 1 record"));
	assert_int_equal(spool_floor_lsn(sp), 600);
	/* one not above the floor is no change at all */
	assert_true(spool_set_floor(sp, 600, err, sizeof(err)));
	append(sp, 20, 800);
	sync_ok(sp);
	spool_close(sp);
}

/* A resume below the floor is a gap: an error naming both positions, the cursor stays. */
static void expect_gap(struct spool *sp, uint64_t resume, const char *resume_text,
		const char *floor_text)
{
	char err[512] = "";
	uint64_t prev = 12345, before = spool_cursor_prev_lsn(sp), unread = spool_unread_bytes(sp);

	assert_int_equal(spool_seek(sp, resume, &prev, err, sizeof(err)), SPOOL_SEEK_GAP);
	assert_non_null(strstr(err, resume_text));
	assert_non_null(strstr(err, floor_text));
	assert_non_null(strstr(err, "released"));
	assert_int_equal(prev, 12345);
	assert_int_equal(spool_cursor_prev_lsn(sp), before);
	assert_int_equal(spool_unread_bytes(sp), unread);
}

static void test_spool_seek_gap(void **state)
{
	struct fx *f = *state;
	struct spool *sp = open_spool(f, TWO_PER_SEG, NULL);

	/* [10:100 20:200] [30:300 40:cont] [50:400 60:500] [70:600], floor 200 */
	append(sp, 10, 100);
	append(sp, 20, 200);
	append(sp, 30, 300);
	append(sp, 40, 0);
	append(sp, 50, 400);
	append(sp, 60, 500);
	append(sp, 70, 600);
	sync_ok(sp);
	assert_int_equal(release(sp, 250), 1);
	assert_int_equal(spool_floor_lsn(sp), 200);

	/* the cursor after record 30: a gap leaves it there */
	assert_int_equal(seek(sp, 300), 300);
	expect_gap(sp, 199, "after 0/C7", "floor is 0/C8");
	expect_gap(sp, 1, "after 0/1:", "0/C8");
	expect(sp, 40, 0);

	/* at or above the floor: served, with where it continues from */
	assert_int_equal(seek(sp, 200), 200);
	expect(sp, 30, 300);
	assert_int_equal(seek(sp, 250), 200);
	expect(sp, 30, 300);
	assert_int_equal(seek(sp, 300), 300);
	expect(sp, 40, 0);
	assert_int_equal(spool_cursor_prev_lsn(sp), 300);
	expect(sp, 50, 400);
	assert_int_equal(spool_cursor_prev_lsn(sp), 400);
	assert_int_equal(seek(sp, 450), 400);
	expect(sp, 60, 500);
	assert_int_equal(seek(sp, 600), 600);
	expect_end(sp);
	assert_int_equal(seek(sp, 99999), 600);
	expect_end(sp);
	/* 0: the sink has nothing, served from the oldest record held */
	assert_int_equal(seek(sp, 0), 200);
	expect(sp, 30, 300);

	/* the transaction ending at 400 lost its start: the floor is its end */
	assert_int_equal(release(sp, 400), 1);
	assert_int_equal(spool_floor_lsn(sp), 400);
	expect_gap(sp, 300, "after 0/12C", "floor is 0/190");
	expect_gap(sp, 399, "after 0/18F", "0/190");
	/* its end (record 50) is never sent again */
	assert_int_equal(seek(sp, 0), 400);
	assert_int_equal(spool_unread_bytes(sp), 2 * REC);
	expect(sp, 60, 500);
	assert_int_equal(seek(sp, 400), 400);
	expect(sp, 60, 500);
	sync_ok(sp);
	spool_close(sp);

	/* the same after reopening */
	sp = open_spool(f, TWO_PER_SEG, NULL);
	assert_int_equal(spool_floor_lsn(sp), 400);
	assert_int_equal(spool_records(sp), 3);
	assert_int_equal(spool_cursor_prev_lsn(sp), 400);
	expect(sp, 60, 500);
	expect_gap(sp, 100, "after 0/64", "0/190");
	assert_int_equal(seek(sp, 0), 400);
	expect(sp, 60, 500);
	expect(sp, 70, 600);
	expect_end(sp);
	spool_close(sp);

	/* a floor in the upper half */
	rm_dir(f->dir);
	sp = open_spool(f, 0, NULL);
	assert_true(spool_set_floor(sp, 0x1A00000200ull, NULL, 0));
	expect_gap(sp, 0x1A000000FFull, "after 1A/FF", "floor is 1A/200");
	assert_int_equal(seek(sp, 0), 0x1A00000200ull);
	spool_close(sp);
}

static void test_spool_floor_damaged(void **state)
{
	struct fx *f = *state;
	struct spool *sp = open_spool(f, 0, NULL);
	char path[256], err[512];
	static const struct { size_t off; const char *why; } flips[] = {
		{ 0, "bad magic" }, { 8, "unsupported format version" },
		{ 12, "reserved field not 0" }, { 16, "CRC mismatch" }, { 23, "CRC mismatch" },
		{ 25, "CRC mismatch" },
	};

	append(sp, 10, 100);
	sync_ok(sp);
	spool_close(sp);
	floor_file(f, path, sizeof(path));

	for (size_t i = 0; i < sizeof(flips) / sizeof(flips[0]); i++) {
		uint8_t b;
		int fd;

		write_floor_file(f, 50);
		fd = open(path, O_RDWR);
		assert_true(fd >= 0);
		assert_int_equal(pread(fd, &b, 1, (off_t)flips[i].off), 1);
		b ^= 0x10;
		assert_int_equal(pwrite(fd, &b, 1, (off_t)flips[i].off), 1);
		close(fd);
		err[0] = '\0';
		assert_null(spool_open(f->dir, 0, NULL, err, sizeof(err)));
		assert_non_null(strstr(err, path));
		assert_non_null(strstr(err, "damaged"));
		assert_non_null(strstr(err, flips[i].why));
	}
	/* cut short, too long, empty */
	for (off_t size = 0; size <= 40; size += 20) {
		write_floor_file(f, 50);
		assert_int_equal(truncate(path, size == 40 ? 29 : size), 0);
		err[0] = '\0';
		assert_null(spool_open(f->dir, 0, NULL, err, sizeof(err)));
		assert_non_null(strstr(err, "damaged (wrong size)"));
	}
	/* nothing was removed meanwhile; a good floor opens again */
	write_floor_file(f, 50);
	sp = open_spool(f, 0, NULL);
	assert_int_equal(spool_floor_lsn(sp), 50);
	assert_int_equal(spool_records(sp), 1);
	expect(sp, 10, 100);
	spool_close(sp);
}

/* A crash between writing the floor and removing the segments it covers. */
static void test_spool_release_finished_on_open(void **state)
{
	struct fx *f = *state;
	struct spool_recovery rec;
	struct spool *sp = open_spool(f, TWO_PER_SEG, NULL);

	/* [10:100 20:200] [30:300 40:cont] [50:400 60:500] [70:600] */
	append(sp, 10, 100);
	append(sp, 20, 200);
	append(sp, 30, 300);
	append(sp, 40, 0);
	append(sp, 50, 400);
	append(sp, 60, 500);
	append(sp, 70, 600);
	sync_ok(sp);
	spool_close(sp);
	write_floor_file(f, 400);

	sp = open_spool(f, TWO_PER_SEG, &rec);
	assert_false(rec.torn);
	assert_string_equal(rec.detail, "");
	assert_int_equal(rec.released_bytes, 2 * (SEG_HDR + 2 * REC));
	assert_int_equal(rec.records, 3);
	assert_int_equal(rec.bytes, 2 * SEG_HDR + 3 * REC);
	assert_int_equal(rec.dropped_bytes, 0);
	assert_int_equal(count_segments(f), 2);
	assert_false(seg_exists(f, 1));
	assert_false(seg_exists(f, 2));
	assert_int_equal(spool_records(sp), 3);
	assert_int_equal(spool_end_lsn(sp), 600);
	/* record 50 ends the transaction the floor covers: not read */
	assert_int_equal(spool_cursor_prev_lsn(sp), 400);
	expect(sp, 60, 500);
	expect(sp, 70, 600);
	expect_end(sp);
	spool_close(sp);

	/* a floor past everything: all of it goes */
	write_floor_file(f, 600);
	sp = open_spool(f, TWO_PER_SEG, &rec);
	assert_int_equal(rec.records, 0);
	assert_int_equal(rec.released_bytes, 2 * SEG_HDR + 3 * REC);
	assert_int_equal(count_segments(f), 0);
	assert_int_equal(spool_end_lsn(sp), 600);
	/* new segments continue the numbering */
	append(sp, 80, 700);
	assert_true(seg_exists(f, 5));
	expect(sp, 80, 700);
	spool_close(sp);
}

/* Recovery counts durable only what it fsynced: everything it keeps. */
static void test_spool_open_makes_durable(void **state)
{
	struct fx *f = *state;
	struct spool_recovery rec;
	struct spool *sp = open_spool(f, TWO_PER_SEG, NULL);

	for (uint64_t r = 10; r <= 50; r += 10)
		append(sp, r, r * 10);
	assert_int_equal(spool_durable_lsn(sp), 0);
	spool_close(sp);                     /* never synced */

	sp = open_spool(f, TWO_PER_SEG, &rec);
	assert_false(rec.fsync_failed);
	assert_false(spool_fsync_failed(sp));
	assert_int_equal(rec.records, 5);
	assert_int_equal(spool_end_lsn(sp), 500);
	assert_int_equal(spool_durable_lsn(sp), 500);
	spool_close(sp);
}

/* --- the parser ------------------------------------------------------- */

static void test_spool_parse_record(void **state)
{
	uint8_t buf[48 + 64 + 16], body[64];
	struct spool_meta m = { .first_lsn = 1, .commit_end_lsn = 2, .commit_time_us = 3,
		.spooled_at_us = 4, .transactions = 5, .flags = 0 };
	struct spool_meta got;
	const uint8_t *b;
	size_t blen, n;

	(void)state;
	fill_body(body, sizeof(body), 9);
	n = encode_record(buf, &m, body, sizeof(body));
	memset(buf + n, 0xee, sizeof(buf) - n);

	/* whole, with trailing bytes (the next record) after it */
	assert_int_equal(spool_parse_record(buf, sizeof(buf), &got, &b, &blen), (long)n);
	assert_int_equal(got.first_lsn, 1);
	assert_int_equal(got.commit_end_lsn, 2);
	assert_int_equal(got.commit_time_us, 3);
	assert_int_equal(got.spooled_at_us, 4);
	assert_int_equal(got.transactions, 5);
	assert_ptr_equal(b, buf + 48);
	assert_int_equal(blen, sizeof(body));

	/* every shorter prefix is incomplete, read from an exact-size copy */
	for (size_t len = 0; len < n; len++) {
		uint8_t *copy = malloc(len ? len : 1);

		memcpy(copy, buf, len);
		assert_int_equal(spool_parse_record(copy, len, &got, &b, &blen), 0);
		free(copy);
	}

	/* every single-bit flip in the length, CRC, meta or body is caught */
	for (size_t i = 0; i < n * 8; i++) {
		long r;

		buf[i / 8] ^= (uint8_t)(1u << (i % 8));
		r = spool_parse_record(buf, n, &got, &b, &blen);
		/* a longer length makes the record look incomplete: never accepted */
		assert_true(r == -1 || (r == 0 && i < 32));
		buf[i / 8] ^= (uint8_t)(1u << (i % 8));
	}

	/* lengths out of bounds */
	put_le32(buf, 39);
	assert_int_equal(spool_parse_record(buf, sizeof(buf), &got, &b, &blen), -1);
	assert_int_equal(spool_parse_record(buf, 4, &got, &b, &blen), -1);
	put_le32(buf, 0);
	assert_int_equal(spool_parse_record(buf, sizeof(buf), &got, &b, &blen), -1);
	put_le32(buf, SPOOL_RECORD_MAX + 1);
	assert_int_equal(spool_parse_record(buf, sizeof(buf), &got, &b, &blen), -1);
	put_le32(buf, SPOOL_RECORD_MAX);       /* legal, just not all there */
	assert_int_equal(spool_parse_record(buf, sizeof(buf), &got, &b, &blen), 0);

	/* an empty body */
	n = encode_record(buf, &m, body, 0);
	assert_int_equal(spool_parse_record(buf, n, &got, &b, &blen), 48);
	assert_int_equal(blen, 0);

	/* garbage */
	memset(buf, 0xff, sizeof(buf));
	assert_int_equal(spool_parse_record(buf, sizeof(buf), &got, &b, &blen), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_spool_file_format, setup, teardown),
		cmocka_unit_test_setup_teardown(test_spool_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_spool_durable_lsn, setup, teardown),
		cmocka_unit_test_setup_teardown(test_spool_segment_roll, setup, teardown),
		cmocka_unit_test_setup_teardown(test_spool_seek_one_segment, setup, teardown),
		cmocka_unit_test_setup_teardown(test_spool_seek_across_segments, setup, teardown),
		cmocka_unit_test_setup_teardown(test_spool_release, setup, teardown),
		cmocka_unit_test_setup_teardown(test_spool_reopen_clean, setup, teardown),
		cmocka_unit_test_setup_teardown(test_spool_open_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_spool_torn_tail, setup, teardown),
		cmocka_unit_test_setup_teardown(test_spool_corrupt_last_record, setup, teardown),
		cmocka_unit_test_setup_teardown(test_spool_bad_length, setup, teardown),
		cmocka_unit_test_setup_teardown(test_spool_corrupt_middle_segment, setup, teardown),
		cmocka_unit_test_setup_teardown(test_spool_bad_segment_header, setup, teardown),
		cmocka_unit_test_setup_teardown(test_spool_incomplete_tail_on_open, setup, teardown),
		cmocka_unit_test_setup_teardown(test_spool_truncate_incomplete, setup, teardown),
		cmocka_unit_test_setup_teardown(test_spool_truncate_within_segment, setup, teardown),
		cmocka_unit_test_setup_teardown(test_spool_truncate_everything, setup, teardown),
		cmocka_unit_test_setup_teardown(test_spool_read_detects_corruption, setup, teardown),
		cmocka_unit_test_setup_teardown(test_spool_floor_new, setup, teardown),
		cmocka_unit_test_setup_teardown(test_spool_floor_format_and_reopen, setup, teardown),
		cmocka_unit_test_setup_teardown(test_spool_set_floor, setup, teardown),
		cmocka_unit_test_setup_teardown(test_spool_seek_gap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_spool_floor_damaged, setup, teardown),
		cmocka_unit_test_setup_teardown(test_spool_release_finished_on_open, setup, teardown),
		cmocka_unit_test_setup_teardown(test_spool_open_makes_durable, setup, teardown),
		cmocka_unit_test_setup_teardown(test_spool_reach_back, setup, teardown),
		cmocka_unit_test(test_spool_parse_record),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
