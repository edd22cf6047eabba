/*
 * test_spool_cursor.c — several cursors on one spool: each reads every
 * record in order at its own pace while records are appended, across
 * segment boundaries; seeking one (spool_cursor_seek(), _seek_from())
 * leaves the others where they are; a body a cursor returned stays valid
 * through other cursors' reads, appends and the release of its segment;
 * releasing at the lowest acknowledgement keeps what the slowest cursor
 * needs, moves a cursor in a removed segment on (prev: the floor), leaves
 * no descriptor open on a removed segment, and a resume below the floor is
 * a gap; cutting an incomplete tail and raising
 * the floor move every cursor; freeing cursors (spool_close() frees what is
 * left); the default cursor (spool_read() and the rest) is one of them.
 *
 * Each test works in its own directory from mkdtemp(), removed afterwards.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gateway/stream/spool.h"
#include "spool_fixture.h"

#define SEG_HDR 16
#define REC_OVERHEAD 48            /* length, CRC and the meta */
#define BODY 100
#define REC (REC_OVERHEAD + BODY)
#define TWO_PER_SEG (SEG_HDR + 2 * REC)

/* --- helpers ---------------------------------------------------------- */

static struct spool *open_spool(struct fx *f, uint64_t segment_bytes)
{
	char err[512] = "";
	struct spool *sp = spool_open(f->dir, segment_bytes, NULL, err, sizeof(err));

	if (sp == NULL)
		fail_msg("spool_open: %s", err);
	return sp;
}

static struct spool_cursor *new_cursor(struct spool *sp)
{
	char err[512] = "";
	struct spool_cursor *c = spool_cursor_new(sp, err, sizeof(err));

	if (c == NULL)
		fail_msg("spool_cursor_new: %s", err);
	return c;
}

static void fill_body(uint8_t *body, size_t len, uint64_t tag)
{
	for (size_t i = 0; i < len; i++)
		body[i] = (uint8_t)(tag * 31 + i);
}

/* Appends a record tagged by first_lsn (its body derived from it). */
static void append(struct spool *sp, uint64_t first_lsn, uint64_t commit_end)
{
	struct spool_meta m = {
		.first_lsn = first_lsn,
		.commit_end_lsn = commit_end,
		.spooled_at_us = 1700000000000000LL + (int64_t)first_lsn,
		.transactions = commit_end ? 1 : 0,
	};
	uint8_t body[BODY];
	char err[512] = "";

	fill_body(body, sizeof(body), first_lsn);
	if (!spool_append(sp, &m, body, sizeof(body), err, sizeof(err)))
		fail_msg("spool_append: %s", err);
}

static bool body_is(const uint8_t *body, uint64_t first_lsn)
{
	uint8_t want[BODY];

	fill_body(want, sizeof(want), first_lsn);
	return memcmp(body, want, sizeof(want)) == 0;
}

/* Reads c's next record, checks it is the one tagged first_lsn; returns its body. */
static const uint8_t *expect(struct spool_cursor *c, uint64_t first_lsn, uint64_t commit_end)
{
	struct spool_meta m;
	const uint8_t *body;
	size_t blen;
	char err[512] = "";
	int rc = spool_cursor_read(c, &m, &body, &blen, err, sizeof(err));

	if (rc != 1)
		fail_msg("spool_cursor_read for record %" PRIu64 ": %d (%s)", first_lsn, rc, err);
	assert_int_equal(m.first_lsn, first_lsn);
	assert_int_equal(m.commit_end_lsn, commit_end);
	assert_int_equal(blen, BODY);
	assert_true(body_is(body, first_lsn));
	return body;
}

/* The same through the default cursor's spool_read(). */
static void expect_default(struct spool *sp, uint64_t first_lsn, uint64_t commit_end)
{
	struct spool_meta m;
	const uint8_t *body;
	size_t blen;
	char err[512] = "";
	int rc = spool_read(sp, &m, &body, &blen, err, sizeof(err));

	if (rc != 1)
		fail_msg("spool_read for record %" PRIu64 ": %d (%s)", first_lsn, rc, err);
	assert_int_equal(m.first_lsn, first_lsn);
	assert_int_equal(m.commit_end_lsn, commit_end);
	assert_true(blen == BODY && body_is(body, first_lsn));
}

static void expect_end(struct spool_cursor *c)
{
	struct spool_meta m;
	const uint8_t *body;
	size_t blen;
	char err[512] = "";

	assert_int_equal(spool_cursor_read(c, &m, &body, &blen, err, sizeof(err)), 0);
}

static uint64_t seek(struct spool_cursor *c, uint64_t lsn)
{
	char err[512] = "";
	uint64_t prev = 0xdeadbeef;
	enum spool_seek_result r = spool_cursor_seek(c, lsn, &prev, err, sizeof(err));

	if (r != SPOOL_SEEK_OK)
		fail_msg("spool_cursor_seek(%" PRIu64 "): %d (%s)", lsn, (int)r, err);
	assert_int_equal(spool_cursor_prev(c), prev);
	return prev;
}

static int release(struct spool *sp, uint64_t acked)
{
	char err[512] = "";
	int n = spool_release(sp, acked, err, sizeof(err));

	if (n < 0)
		fail_msg("spool_release(%" PRIu64 "): %s", acked, err);
	return n;
}

/* Descriptors this process holds on files that were removed. */
static int open_removed(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	int n = 0;

	assert_non_null(d);
	while ((de = readdir(d)) != NULL) {
		char path[300], target[PATH_MAX];
		ssize_t len;

		snprintf(path, sizeof(path), "/proc/self/fd/%s", de->d_name);
		len = readlink(path, target, sizeof(target) - 1);
		if (len <= 0)
			continue;
		target[len] = '\0';
		if (strstr(target, " (deleted)") != NULL)
			n++;
	}
	closedir(d);
	return n;
}

static uint64_t min3(uint64_t a, uint64_t b, uint64_t c)
{
	uint64_t m = a < b ? a : b;

	return m < c ? m : c;
}

/* Records 1..n, each a transaction ending at 10 * its tag. */
static void append_txns(struct spool *sp, uint64_t from, uint64_t to)
{
	for (uint64_t t = from; t <= to; t++)
		append(sp, t, 10 * t);
}

/* --- tests ------------------------------------------------------------ */

/* Three readers, three paces, appends in between: each gets everything in order. */
static void test_cursor_paces(void **state)
{
	struct fx *f = *state;
	struct spool *sp = open_spool(f, TWO_PER_SEG);
	struct spool_cursor *fast = new_cursor(sp), *slow = new_cursor(sp);
	uint64_t next_fast = 1, next_slow = 1, next_def = 1, appended = 0;

	for (int round = 0; round < 12; round++) {
		append_txns(sp, appended + 1, appended + 3);
		appended += 3;
		while (next_fast <= appended) {
			expect(fast, next_fast, 10 * next_fast);
			next_fast++;
		}
		expect_end(fast);
		if (round % 2 == 1) {
			expect_default(sp, next_def, 10 * next_def);
			next_def++;
		}
		expect(slow, next_slow, 10 * next_slow);
		next_slow++;
		assert_int_equal(spool_cursor_unread_bytes(fast), 0);
		assert_int_equal(spool_cursor_unread_bytes(slow), (appended - next_slow + 1) * REC);
		assert_int_equal(spool_unread_bytes(sp), (appended - next_def + 1) * REC);
		assert_int_equal(spool_cursor_prev(slow), 10 * (next_slow - 1));
		assert_int_equal(spool_cursor_prev_lsn(sp), 10 * (next_def - 1));
	}
	while (next_slow <= appended) {
		expect(slow, next_slow, 10 * next_slow);
		next_slow++;
	}
	expect_end(slow);
	while (next_def <= appended) {
		expect_default(sp, next_def, 10 * next_def);
		next_def++;
	}
	spool_cursor_free(fast);
	spool_cursor_free(slow);
	spool_close(sp);
}

/* Seeking one cursor moves no other, the default one included. */
static void test_cursor_seek_independent(void **state)
{
	struct fx *f = *state;
	struct spool *sp = open_spool(f, TWO_PER_SEG);
	struct spool_cursor *a = new_cursor(sp), *b = new_cursor(sp);
	struct spool_pos third;
	uint64_t prev = 0;
	char err[512] = "";

	append_txns(sp, 1, 2);
	append(sp, 3, 0);                /* a transaction over records 3 and 4 */
	third = spool_last_pos(sp);
	append(sp, 4, 40);
	append_txns(sp, 5, 8);
	expect(a, 1, 10);
	expect(b, 1, 10);
	expect(b, 2, 20);
	expect_default(sp, 1, 10);

	assert_int_equal(seek(a, 50), 50);
	expect(b, 3, 0);
	expect_default(sp, 2, 20);
	expect(a, 6, 60);

	assert_int_equal(spool_cursor_seek_from(b, 70, &third, &prev, err, sizeof(err)),
			 SPOOL_SEEK_OK);
	assert_int_equal(prev, 20);
	assert_int_equal(spool_cursor_prev(b), 20);
	expect(a, 7, 70);
	expect(b, 3, 0);
	expect(b, 4, 40);
	expect_default(sp, 3, 0);

	assert_int_equal(seek(b, 0), 0);
	expect(b, 1, 10);
	expect(a, 8, 80);
	expect_end(a);
	expect_default(sp, 4, 40);
	spool_cursor_free(a);
	spool_cursor_free(b);
	spool_close(sp);
}

/*
 * A body stays where the cursor returned it until that cursor's next call:
 * through other cursors' reads and seeks, appends, a sync, a release of its
 * segment that has to read to move the cursors (the floor inside a
 * transaction), and a cut tail. The default cursor's too.
 */
static void test_cursor_body_valid(void **state)
{
	struct fx *f = *state;
	struct spool *sp = open_spool(f, TWO_PER_SEG);
	struct spool_cursor *a = new_cursor(sp), *b = new_cursor(sp);
	const uint8_t *held, *held_default;
	struct spool_meta m;
	size_t len;
	char err[512] = "";

	append(sp, 1, 10);
	append(sp, 2, 0);              /* a transaction from segment 1 into 2 */
	append(sp, 3, 30);
	append(sp, 4, 40);
	held = expect(a, 1, 10);
	assert_int_equal(spool_read(sp, &m, &held_default, &len, err, sizeof(err)), 1);
	for (uint64_t t = 1; t <= 4; t++)
		expect(b, t, t == 2 ? 0 : 10 * t);
	seek(b, 0);
	expect(b, 1, 10);
	append_txns(sp, 5, 9);
	append(sp, 10, 0);
	assert_true(spool_sync(sp, err, sizeof(err)));
	assert_true(body_is(held, 1) && body_is(held_default, 1));
	assert_int_equal(release(sp, 30), 1);        /* segment 1; the floor is 30 */
	assert_true(body_is(held, 1) && body_is(held_default, 1));
	assert_true(spool_truncate_incomplete(sp, err, sizeof(err)));
	assert_true(body_is(held, 1) && body_is(held_default, 1));
	/* moved on past what the floor covers: released, 1 to 3 count as acknowledged */
	expect(a, 4, 40);
	expect(b, 4, 40);
	expect_default(sp, 4, 40);
	spool_cursor_free(a);
	spool_cursor_free(b);
	spool_close(sp);
}

/*
 * Release at the lowest acknowledgement: the slowest cursor still reads
 * all it has not read, across the segments left; the others go on.
 */
static void test_cursor_release_at_min(void **state)
{
	struct fx *f = *state;
	struct spool *sp = open_spool(f, TWO_PER_SEG);
	struct spool_cursor *a = new_cursor(sp), *b = new_cursor(sp), *c = new_cursor(sp);
	uint64_t ack_a, ack_b, ack_c;

	append_txns(sp, 1, 10);        /* five segments */
	for (uint64_t t = 1; t <= 9; t++)
		expect(a, t, 10 * t);
	for (uint64_t t = 1; t <= 5; t++)
		expect(b, t, 10 * t);
	expect(c, 1, 10);
	/* each sink acknowledged what its sender sent */
	ack_a = spool_cursor_prev(a);
	ack_b = spool_cursor_prev(b);
	ack_c = spool_cursor_prev(c);
	assert_int_equal(release(sp, min3(ack_a, ack_b, ack_c)), 0);  /* 10 ends mid-segment */
	expect(c, 2, 20);
	ack_c = spool_cursor_prev(c);
	assert_int_equal(release(sp, min3(ack_a, ack_b, ack_c)), 1);
	assert_int_equal(open_removed(), 0);
	assert_int_equal(spool_floor_lsn(sp), 20);
	assert_int_equal(spool_records(sp), 8);
	/* nothing a cursor had still to read went */
	for (uint64_t t = 3; t <= 10; t++)
		expect(c, t, 10 * t);
	expect_end(c);
	for (uint64_t t = 6; t <= 10; t++)
		expect(b, t, 10 * t);
	expect(a, 10, 100);
	assert_int_equal(spool_cursor_prev(a), 100);
	assert_int_equal(spool_cursor_prev(b), 100);
	assert_int_equal(release(sp, 100), 4);   /* the segments all cursors are in */
	assert_int_equal(open_removed(), 0);
	assert_int_equal(spool_records(sp), 0);
	append(sp, 11, 110);
	expect(a, 11, 110);
	expect(b, 11, 110);
	expect(c, 11, 110);
	expect_default(sp, 11, 110);   /* the default cursor was moved on too */
	spool_cursor_free(a);
	spool_cursor_free(b);
	spool_cursor_free(c);
	spool_close(sp);
}

/*
 * A cursor in a removed segment moves on to the oldest record the floor
 * does not cover, its prev the floor; a sink behind the floor (released
 * above its acknowledgement) gets a gap when its sender seeks.
 */
static void test_cursor_behind_release(void **state)
{
	struct fx *f = *state;
	struct spool *sp = open_spool(f, TWO_PER_SEG);
	struct spool_cursor *behind = new_cursor(sp), *ahead = new_cursor(sp);
	uint64_t prev = 0;
	char err[512] = "";

	append_txns(sp, 1, 2);
	append(sp, 3, 0);              /* a transaction from segment 2 into 3 */
	append(sp, 4, 0);
	append(sp, 5, 50);
	append(sp, 6, 60);
	for (uint64_t t = 1; t <= 5; t++)
		expect(ahead, t, t == 5 ? 50 : t < 3 ? 10 * t : 0);
	expect(behind, 1, 10);
	assert_int_equal(release(sp, 50), 2);
	assert_int_equal(spool_floor_lsn(sp), 50);
	/* record 5 ends the transaction the floor covers: it is not read again */
	assert_int_equal(spool_cursor_prev(behind), 50);
	assert_int_equal(spool_cursor_unread_bytes(behind), REC);
	expect(behind, 6, 60);
	expect(ahead, 6, 60);
	assert_int_equal(spool_cursor_seek(behind, 10, &prev, err, sizeof(err)), SPOOL_SEEK_GAP);
	assert_non_null(strstr(err, "floor"));
	assert_int_equal(spool_cursor_prev(behind), 60);   /* a gap does not move it */
	expect_end(behind);
	assert_int_equal(seek(behind, 50), 50);
	expect(behind, 6, 60);
	assert_int_equal(seek(behind, 0), 50);
	expect(behind, 6, 60);
	spool_cursor_free(behind);
	spool_cursor_free(ahead);
	spool_close(sp);
}

/* Cursors at segment ends while segments roll and go: small segments, one record each. */
static void test_cursor_segment_boundaries(void **state)
{
	struct fx *f = *state;
	struct spool *sp = open_spool(f, SEG_HDR + REC);
	struct spool_cursor *a = new_cursor(sp), *b = new_cursor(sp);

	for (uint64_t t = 1; t <= 6; t++) {
		append(sp, t, 10 * t);
		expect(a, t, 10 * t);            /* a at the end of the segment made last */
		expect_end(a);
		if (t % 2 == 0) {
			expect(b, t - 1, 10 * (t - 1));
			expect(b, t, 10 * t);
		}
		if (t == 2)
			assert_int_equal(release(sp, 10), 1);
		if (t == 5)
			assert_int_equal(release(sp, 30), 2);
	}
	assert_int_equal(spool_cursor_unread_bytes(a), 0);
	assert_int_equal(spool_cursor_unread_bytes(b), 0);
	assert_int_equal(release(sp, 60), 3);
	assert_int_equal(spool_records(sp), 0);
	assert_int_equal(spool_cursor_prev(a), 60);
	assert_int_equal(spool_cursor_prev(b), 60);
	append(sp, 7, 70);
	expect(b, 7, 70);
	expect(a, 7, 70);
	expect_end(a);
	spool_cursor_free(a);
	spool_cursor_free(b);
	spool_close(sp);
}

/* A new cursor starts at the oldest record the floor does not cover. */
static void test_cursor_new_position(void **state)
{
	struct fx *f = *state;
	struct spool *sp = open_spool(f, TWO_PER_SEG);
	struct spool_cursor *a, *b;
	char err[512] = "";

	a = new_cursor(sp);           /* an empty spool: at its end */
	assert_int_equal(spool_cursor_prev(a), 0);
	assert_true(spool_set_floor(sp, 5, err, sizeof(err)));
	assert_int_equal(spool_cursor_prev(a), 5);
	assert_int_equal(spool_cursor_prev_lsn(sp), 5);
	append(sp, 1, 0);
	append(sp, 2, 0);
	append(sp, 3, 30);            /* the transaction goes on into segment 2 */
	append(sp, 4, 40);
	assert_int_equal(release(sp, 30), 1);
	b = new_cursor(sp);
	assert_int_equal(spool_cursor_prev(b), 30);
	assert_int_equal(spool_cursor_unread_bytes(b), REC);
	expect(b, 4, 40);
	expect(a, 4, 40);              /* moved on by the release */
	spool_cursor_free(a);
	spool_cursor_free(b);
	spool_close(sp);
}

/* Cutting an incomplete tail brings every cursor past the new end back to it. */
static void test_cursor_truncate_incomplete(void **state)
{
	struct fx *f = *state;
	struct spool *sp = open_spool(f, TWO_PER_SEG);
	struct spool_cursor *a = new_cursor(sp), *b = new_cursor(sp);
	char err[512] = "";

	append_txns(sp, 1, 2);
	append(sp, 3, 0);
	append(sp, 4, 0);
	append(sp, 5, 0);
	for (uint64_t t = 1; t <= 5; t++)
		expect(a, t, t <= 2 ? 10 * t : 0);
	expect(b, 1, 10);
	expect(b, 2, 20);
	expect(b, 3, 0);
	assert_true(spool_truncate_incomplete(sp, err, sizeof(err)));
	assert_int_equal(spool_records(sp), 2);
	assert_int_equal(spool_cursor_unread_bytes(a), 0);
	assert_int_equal(spool_cursor_unread_bytes(b), 0);
	assert_int_equal(spool_cursor_prev(a), 20);
	append(sp, 6, 0);
	append(sp, 7, 70);
	expect(a, 6, 0);
	expect(b, 6, 0);
	expect(b, 7, 70);
	expect(a, 7, 70);
	expect_default(sp, 1, 10);
	spool_cursor_free(a);
	spool_cursor_free(b);
	spool_close(sp);
}

/* Freeing cursors in any order; NULL is nothing; spool_close() frees the rest. */
static void test_cursor_free(void **state)
{
	struct fx *f = *state;
	struct spool *sp = open_spool(f, TWO_PER_SEG);
	struct spool_cursor *c[4];

	append_txns(sp, 1, 5);
	for (int i = 0; i < 4; i++)
		c[i] = new_cursor(sp);
	expect(c[1], 1, 10);
	expect(c[2], 1, 10);
	spool_cursor_free(c[1]);            /* in the middle of the list */
	spool_cursor_free(NULL);
	expect(c[2], 2, 20);
	spool_cursor_free(c[3]);            /* the last made */
	spool_cursor_free(c[0]);
	assert_int_equal(release(sp, 20), 1);   /* the cursors left are moved */
	expect(c[2], 3, 30);
	c[1] = new_cursor(sp);
	expect(c[1], 3, 30);
	expect_default(sp, 3, 30);
	spool_close(sp);                    /* c[1] and c[2] go with it */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_cursor_paces, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cursor_seek_independent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cursor_body_valid, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cursor_release_at_min, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cursor_behind_release, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cursor_segment_boundaries, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cursor_new_position, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cursor_truncate_incomplete, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cursor_free, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
