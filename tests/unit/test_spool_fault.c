/*
 * test_spool_fault.c — the spool when its disk fails, through the fault
 * points of test builds (common/fault.h): a failed write in spool_append()
 * fails the spool until it is reopened; a failed fsync in spool_sync()
 * fails it for good (spool_fsync_failed()), keeps what was durable as it
 * was, and every later call that would write refuses.
 *
 * The faults are read from STRAIT_FAULTS once per process, at the first
 * hit: main() sets it before any test runs, and each point fires at one
 * counted pass, so the tests run in the order listed and count their passes
 * (spool_append() counts once per call on a usable spool, spool_sync() too).
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/fault.h"
#include "gateway/stream/spool.h"
#include "spool_fixture.h"

/* The 3rd append fails; the 2nd sync fails (the first test syncs nothing). */
#define FAULTS "source.spool_append=fail@3,source.spool_fsync=fail@2"

static struct spool *open_spool(struct fx *f)
{
	char err[512] = "";
	struct spool *sp = spool_open(f->dir, 0, NULL, err, sizeof(err));

	if (sp == NULL)
		fail_msg("spool_open: %s", err);
	return sp;
}

static bool try_append(struct spool *sp, uint64_t commit_end, char *err, size_t errlen)
{
	struct spool_meta m = { .first_lsn = commit_end - 1, .commit_end_lsn = commit_end,
		.spooled_at_us = 1 };

	return spool_append(sp, &m, "body", 4, err, errlen);
}

static void append(struct spool *sp, uint64_t commit_end)
{
	char err[512] = "";

	if (!try_append(sp, commit_end, err, sizeof(err)))
		fail_msg("spool_append: %s", err);
}

/* The calls that write refuse on a failed spool, naming the first error. */
static void expect_unusable(struct spool *sp, const char *first)
{
	char err[512] = "";

	assert_false(try_append(sp, 900, err, sizeof(err)));
	assert_non_null(strstr(err, "unusable"));
	assert_non_null(strstr(err, first));
	err[0] = '\0';
	assert_false(spool_sync(sp, err, sizeof(err)));
	assert_non_null(strstr(err, "unusable"));
	err[0] = '\0';
	assert_int_equal(spool_release(sp, 1000, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "unusable"));
	err[0] = '\0';
	assert_false(spool_set_floor(sp, 1000, err, sizeof(err)));
	assert_non_null(strstr(err, "unusable"));
	err[0] = '\0';
	assert_false(spool_truncate_incomplete(sp, err, sizeof(err)));
	assert_non_null(strstr(err, "unusable"));
}

static void test_append_fails(void **state)
{
	struct fx *f = *state;
	struct spool *sp = open_spool(f);
	char err[512] = "";

	append(sp, 100);                     /* pass 1 */
	append(sp, 200);                     /* pass 2 */
	assert_false(try_append(sp, 300, err, sizeof(err)));    /* pass 3: fails */
	assert_non_null(strstr(err, "could not write"));
	assert_non_null(strstr(err, "0000000000000001.seg"));
	assert_non_null(strstr(err, "Input/output error"));
	/* a failed write is no failed fsync: reopening is fine */
	assert_false(spool_fsync_failed(sp));
	assert_int_equal(spool_end_lsn(sp), 200);
	assert_int_equal(spool_records(sp), 2);
	expect_unusable(sp, "Input/output error");
	spool_close(sp);

	/* what was written before is there (nothing of the failed one) */
	sp = open_spool(f);
	assert_int_equal(spool_records(sp), 2);
	assert_int_equal(spool_end_lsn(sp), 200);
	assert_int_equal(spool_durable_lsn(sp), 200);
	append(sp, 300);                     /* the fault fired once */
	spool_close(sp);
}

static void test_fsync_fails(void **state)
{
	struct fx *f = *state;
	struct spool *sp = open_spool(f);
	char err[512] = "";

	append(sp, 100);
	assert_true(spool_sync(sp, err, sizeof(err)));          /* pass 1 */
	assert_int_equal(spool_durable_lsn(sp), 100);
	append(sp, 200);
	assert_false(spool_sync(sp, err, sizeof(err)));         /* pass 2: fails */
	assert_non_null(strstr(err, "could not fsync"));
	assert_non_null(strstr(err, "0000000000000001.seg"));
	assert_non_null(strstr(err, "Input/output error"));
	/* for good: what the fsync was to cover is not counted durable */
	assert_true(spool_fsync_failed(sp));
	assert_int_equal(spool_durable_lsn(sp), 100);
	assert_int_equal(spool_end_lsn(sp), 200);
	expect_unusable(sp, "could not fsync");
	assert_true(spool_fsync_failed(sp));
	spool_close(sp);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_append_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fsync_fails, setup, teardown),
	};

	/* read once, at the first hit: before anything reaches a fault point */
	setenv("STRAIT_FAULTS", FAULTS, 1);
	if (fault_unknown_point() != NULL) {
		fprintf(stderr, "unknown fault point in STRAIT_FAULTS: %s\n", fault_unknown_point());
		return 1;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
