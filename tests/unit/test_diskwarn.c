/*
 * test_diskwarn.c — every threshold of the disk warnings, on both sides of
 * its boundary, and the exact text an operator reads: the slot against
 * max_slot_wal_keep_size and wal_status, pg_wal's disk against what the
 * slot retains and against its size, and the spool's disk.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "gateway/stream/diskwarn.h"

#define KiB 1024ull
#define MiB (1024ull * KiB)
#define GiB (1024ull * MiB)
#define TiB (1024ull * GiB)

/* A healthy PostgreSQL 15 slot: 0 bytes retained, limit unlimited, disk unknown. */
static struct slot_sample sample(void)
{
	struct slot_sample s;

	memset(&s, 0, sizeof(s));
	s.server_version = 150004;
	s.wal_lsn_known = true;
	s.wal_lsn = 0x100000000ull;
	s.slot_found = true;
	s.restart_known = true;
	s.restart_lsn = s.wal_lsn;
	s.confirmed_known = true;
	s.confirmed_flush_lsn = s.wal_lsn;
	s.retained_known = true;
	strcpy(s.wal_status, "reserved");
	s.max_keep_known = true;
	s.max_slot_wal_keep_size = -1;
	return s;
}

static void retain(struct slot_sample *s, uint64_t bytes)
{
	s->retained_bytes = bytes;
	s->restart_lsn = s->wal_lsn - bytes;
}

static void on_disk(struct slot_sample *s, uint64_t avail, uint64_t size)
{
	s->wal_disk_known = true;
	s->wal_disk_free = avail;
	s->wal_disk_size = size;
	strcpy(s->wal_disk_path, "/srv/pg/data/pg_wal");
}

static struct diskwarn_list judge(const struct slot_sample *s)
{
	struct diskwarn_list l = { 0 };

	diskwarn_slot(s, "strait_app", &l);
	return l;
}

static void expect_one(const struct diskwarn_list *l, enum diskwarn_level level, const char *kind,
		const char *text)
{
	assert_int_equal(l->n, 1);
	assert_int_equal(l->w[0].level, level);
	assert_string_equal(l->w[0].kind, kind);
	if (text)
		assert_string_equal(l->w[0].text, text);
}

/* ------------------------------------------------------------ sizes */

static void test_format_bytes(void **state)
{
	char b[32];

	(void)state;
	assert_string_equal(diskwarn_format_bytes(0, b, sizeof(b)), "0 bytes");
	assert_string_equal(diskwarn_format_bytes(1023, b, sizeof(b)), "1023 bytes");
	assert_string_equal(diskwarn_format_bytes(1024, b, sizeof(b)), "1 KiB");
	assert_string_equal(diskwarn_format_bytes(1536, b, sizeof(b)), "1.5 KiB");
	assert_string_equal(diskwarn_format_bytes(64 * MiB, b, sizeof(b)), "64 MiB");
	assert_string_equal(diskwarn_format_bytes(7988 * MiB, b, sizeof(b)), "7.8 GiB");
	assert_string_equal(diskwarn_format_bytes(10 * GiB, b, sizeof(b)), "10 GiB");
	/* 1023.99 MiB would read "1024.0 MiB": the next unit instead */
	assert_string_equal(diskwarn_format_bytes(GiB - 1, b, sizeof(b)), "1 GiB");
	assert_string_equal(diskwarn_format_bytes(3 * TiB, b, sizeof(b)), "3 TiB");
	assert_string_equal(diskwarn_format_bytes(UINT64_MAX, b, sizeof(b)), "16 EiB");
}

/* ------------------------------------------------------------ max_slot_wal_keep_size */

static void test_keep_size_thresholds(void **state)
{
	struct slot_sample s = sample();
	struct diskwarn_list l;

	(void)state;
	s.max_slot_wal_keep_size = (int64_t)(10 * GiB);

	retain(&s, 5 * GiB - 1);                       /* just under 50 % */
	l = judge(&s);
	assert_int_equal(l.n, 0);

	retain(&s, 5 * GiB);                           /* 50 %: warning */
	l = judge(&s);
	expect_one(&l, DISKWARN_WARNING, "slot_keep_size",
		   "slot strait_app retains 5 GiB of WAL, 50% of max_slot_wal_keep_size (10 GiB): "
		   "the slot is invalidated at 100%");

	retain(&s, 7988 * MiB);
	l = judge(&s);
	expect_one(&l, DISKWARN_WARNING, "slot_keep_size",
		   "slot strait_app retains 7.8 GiB of WAL, 78% of max_slot_wal_keep_size (10 GiB): "
		   "the slot is invalidated at 100%");

	retain(&s, 8 * GiB - 1);                       /* just under 80 % */
	l = judge(&s);
	expect_one(&l, DISKWARN_WARNING, "slot_keep_size", NULL);
	assert_non_null(strstr(l.w[0].text, ", 79% of max_slot_wal_keep_size"));

	retain(&s, 8 * GiB);                           /* 80 %: critical */
	l = judge(&s);
	expect_one(&l, DISKWARN_CRITICAL, "slot_keep_size",
		   "slot strait_app retains 8 GiB of WAL, 80% of max_slot_wal_keep_size (10 GiB): "
		   "the slot is invalidated at 100%");
	assert_int_equal(diskwarn_worst(&l), DISKWARN_CRITICAL);
}

static void test_keep_size_unlimited_or_unknown(void **state)
{
	struct slot_sample s = sample();
	struct diskwarn_list l;

	(void)state;
	retain(&s, 500 * GiB);
	l = judge(&s);                                 /* -1: unlimited, disk unknown */
	assert_int_equal(l.n, 0);

	s.max_keep_known = false;                      /* PostgreSQL 12 */
	s.wal_status[0] = '\0';
	l = judge(&s);
	assert_int_equal(l.n, 0);

	s = sample();                                  /* retained unknown (standby before replay) */
	s.max_slot_wal_keep_size = (int64_t)(1 * GiB);
	s.retained_known = false;
	s.retained_bytes = 0;
	l = judge(&s);
	assert_int_equal(l.n, 0);
}

static void test_wal_status_unreserved_and_lost(void **state)
{
	struct slot_sample s = sample();
	struct diskwarn_list l;

	(void)state;
	s.max_slot_wal_keep_size = (int64_t)(64 * MiB);
	retain(&s, 70 * MiB);
	strcpy(s.wal_status, "unreserved");
	l = judge(&s);
	expect_one(&l, DISKWARN_CRITICAL, "slot_keep_size",
		   "slot strait_app retains 70 MiB of WAL, 109% of max_slot_wal_keep_size (64 MiB), "
		   "and is unreserved: the server removes that WAL at its next checkpoint and the "
		   "slot is lost");

	/* unreserved is critical whatever the figures say */
	retain(&s, 1 * MiB);
	s.max_slot_wal_keep_size = 0;
	l = judge(&s);
	expect_one(&l, DISKWARN_CRITICAL, "slot_keep_size",
		   "slot strait_app is unreserved (wal_status unreserved): the server removes WAL it "
		   "needs at its next checkpoint and the slot is lost");

	s = sample();
	s.max_slot_wal_keep_size = (int64_t)(64 * MiB);
	strcpy(s.wal_status, "lost");
	s.restart_known = false;
	s.retained_known = false;
	l = judge(&s);
	expect_one(&l, DISKWARN_CRITICAL, "slot_keep_size",
		   "slot strait_app is lost (wal_status lost): the server removed WAL it needs, so the "
		   "stream cannot resume from it and needs a new slot and initial sync");

	/* extended (past max_wal_size, still kept) is no alarm in itself */
	s = sample();
	s.max_slot_wal_keep_size = (int64_t)(10 * GiB);
	retain(&s, 2 * GiB);
	strcpy(s.wal_status, "extended");
	l = judge(&s);
	assert_int_equal(l.n, 0);

	/* a limit of 0 keeps nothing for slots: no percentage, wal_status speaks */
	s = sample();
	s.max_slot_wal_keep_size = 0;
	retain(&s, 10 * MiB);
	l = judge(&s);
	assert_int_equal(l.n, 0);
}

static void test_invalidation_reason_and_idle_timeout(void **state)
{
	struct slot_sample s = sample();
	struct diskwarn_list l;

	(void)state;
	/* 17+: the server's reason, said once instead of wal_status lost */
	s.server_version = 170002;
	strcpy(s.wal_status, "lost");
	strcpy(s.invalidation_reason, "wal_removed");
	l = judge(&s);
	expect_one(&l, DISKWARN_CRITICAL, "slot_invalidated",
		   "slot strait_app is invalidated (invalidation_reason wal_removed: the server removed "
		   "WAL it needs (max_slot_wal_keep_size)): the stream cannot resume from it and needs "
		   "a new slot and initial sync");
	strcpy(s.invalidation_reason, "idle_timeout");
	l = judge(&s);
	assert_non_null(strstr(l.w[0].text, "inactive longer than idle_replication_slot_timeout"));

	/* 18+: an inactive slot nears idle_replication_slot_timeout */
	s = sample();
	s.server_version = 180001;
	s.idle_timeout_known = true;
	s.idle_timeout_seconds = 3600;
	s.inactive_known = true;
	s.inactive_seconds = 1799;
	assert_int_equal(judge(&s).n, 0);
	s.inactive_seconds = 1800;
	l = judge(&s);
	expect_one(&l, DISKWARN_WARNING, "slot_idle_timeout",
		   "slot strait_app has been inactive for 1800 s of idle_replication_slot_timeout "
		   "(3600 s): the server invalidates it at the first checkpoint after that");
	s.inactive_seconds = 2880;
	l = judge(&s);
	expect_one(&l, DISKWARN_CRITICAL, "slot_idle_timeout", NULL);
	/* 0 never invalidates; an active slot has no inactive_since */
	s.idle_timeout_seconds = 0;
	assert_int_equal(judge(&s).n, 0);
	s.idle_timeout_seconds = 3600;
	s.inactive_known = false;
	assert_int_equal(judge(&s).n, 0);
}

static void test_missing_slot_has_no_warnings(void **state)
{
	struct slot_sample s = sample();
	struct diskwarn_list l;

	(void)state;
	s.slot_found = false;
	s.restart_known = s.confirmed_known = s.retained_known = false;
	s.wal_status[0] = '\0';
	on_disk(&s, 1 * GiB, 100 * GiB);               /* 1 % free, but not this slot's doing */
	l = judge(&s);
	assert_int_equal(l.n, 0);
	diskwarn_slot(NULL, "strait_app", &l);
	assert_int_equal(l.n, 0);
}

/* ------------------------------------------------------------ pg_wal's disk */

static void test_wal_disk_retained_unlimited(void **state)
{
	struct slot_sample s = sample();
	struct diskwarn_list l;

	(void)state;
	on_disk(&s, 20 * GiB, 200 * GiB);

	retain(&s, 20 * GiB - 1);                      /* less than the free space */
	l = judge(&s);
	assert_int_equal(l.n, 0);

	retain(&s, 20 * GiB);                          /* as much as is free: warning */
	l = judge(&s);
	expect_one(&l, DISKWARN_WARNING, "wal_disk_retained",
		   "slot strait_app retains 20 GiB of WAL and the disk of /srv/pg/data/pg_wal has "
		   "20 GiB free (max_slot_wal_keep_size is unlimited): if the hold goes on, pg_wal's "
		   "disk fills and the source server stops");

	retain(&s, 80 * GiB - 1);                      /* under 4 x free */
	l = judge(&s);
	expect_one(&l, DISKWARN_WARNING, "wal_disk_retained", NULL);

	retain(&s, 80 * GiB);                          /* 4 x free: critical */
	l = judge(&s);
	expect_one(&l, DISKWARN_CRITICAL, "wal_disk_retained", NULL);

	/* PostgreSQL 12: no limit at all, judged as unlimited */
	s.max_keep_known = false;
	s.wal_status[0] = '\0';
	l = judge(&s);
	expect_one(&l, DISKWARN_CRITICAL, "wal_disk_retained", NULL);
	assert_non_null(strstr(l.w[0].text, "(max_slot_wal_keep_size is unlimited)"));

	/* nothing retained, nothing free: the free-space rule speaks, not this one */
	s = sample();
	on_disk(&s, 0, 200 * GiB);
	l = judge(&s);
	expect_one(&l, DISKWARN_CRITICAL, "wal_disk_free", NULL);
}

static void test_wal_disk_limit_protects_the_disk(void **state)
{
	struct slot_sample s = sample();
	struct diskwarn_list l;

	(void)state;
	s.max_slot_wal_keep_size = (int64_t)(64 * GiB);
	retain(&s, 30 * GiB);                          /* 46 % of the limit: no keep warning */

	on_disk(&s, 34 * GiB, 200 * GiB);              /* the slot may grow 34 GiB: just fits */
	l = judge(&s);
	assert_int_equal(l.n, 0);

	/* exactly fits while retained = free: only the limit's own warning */
	retain(&s, 32 * GiB);
	on_disk(&s, 32 * GiB, 200 * GiB);
	l = judge(&s);
	expect_one(&l, DISKWARN_WARNING, "slot_keep_size", NULL);

	retain(&s, 30 * GiB);
	on_disk(&s, 30 * GiB, 200 * GiB);              /* 34 GiB more would not fit */
	l = judge(&s);
	expect_one(&l, DISKWARN_WARNING, "wal_disk_retained",
		   "slot strait_app retains 30 GiB of WAL and the disk of /srv/pg/data/pg_wal has "
		   "30 GiB free (max_slot_wal_keep_size (64 GiB) lets it grow 34 GiB more): if the "
		   "hold goes on, pg_wal's disk fills and the source server stops");

	/* both rules at once: 80 % of the limit and 4 x the free space */
	retain(&s, 52 * GiB);
	on_disk(&s, 11 * GiB, 100 * GiB);             /* 11 % free: no wal_disk_free */
	l = judge(&s);
	assert_int_equal(l.n, 2);
	assert_string_equal(l.w[0].kind, "slot_keep_size");
	assert_int_equal(l.w[0].level, DISKWARN_CRITICAL);
	assert_string_equal(l.w[1].kind, "wal_disk_retained");
	assert_int_equal(l.w[1].level, DISKWARN_CRITICAL);
}

static void test_wal_disk_free_below_ten_percent(void **state)
{
	struct slot_sample s = sample();
	struct diskwarn_list l;

	(void)state;
	retain(&s, 100 * MiB);
	on_disk(&s, 10 * GiB, 100 * GiB);              /* exactly 10 %: no warning */
	l = judge(&s);
	assert_int_equal(l.n, 0);

	on_disk(&s, 10 * GiB - 1, 100 * GiB);
	l = judge(&s);
	expect_one(&l, DISKWARN_CRITICAL, "wal_disk_free", NULL);

	on_disk(&s, 9 * GiB, 100 * GiB);
	l = judge(&s);
	expect_one(&l, DISKWARN_CRITICAL, "wal_disk_free",
		   "the disk of /srv/pg/data/pg_wal has 9 GiB free, 9% of 100 GiB: the source server "
		   "stops when pg_wal's disk is full (slot strait_app retains 100 MiB of WAL)");

	/* a disk of unknown size (statvfs said 0) is not judged by percentage */
	on_disk(&s, 0, 0);
	retain(&s, 0);
	l = judge(&s);
	assert_int_equal(l.n, 0);

	/* disk not measured: nothing about it */
	s = sample();
	retain(&s, 100 * GiB);
	l = judge(&s);
	assert_int_equal(l.n, 0);
}

/* ------------------------------------------------------------ the spool */

static struct diskwarn_list spool(uint64_t avail, uint64_t size, uint64_t bytes, uint64_t max)
{
	struct diskwarn_list l = { 0 };
	struct disk_space disk = { .free = avail, .size = size };

	diskwarn_spool_judge(&disk, "/var/lib/strait", bytes, max, &l);
	return l;
}

static void test_spool_free_space(void **state)
{
	struct diskwarn_list l;

	(void)state;
	l = spool(50 * GiB, 100 * GiB, 1 * GiB, 10 * GiB);
	assert_int_equal(l.n, 0);

	l = spool(10 * GiB, 100 * GiB, 2 * GiB, 10 * GiB);    /* exactly 10 % */
	assert_int_equal(l.n, 0);

	l = spool(9 * GiB, 100 * GiB, 2 * GiB, 10 * GiB);     /* under 10 %: warning */
	expect_one(&l, DISKWARN_WARNING, "spool_disk_free",
		   "the disk of state_dir /var/lib/strait has 9 GiB free, 9% of 100 GiB: the stream "
		   "stops when it is full");

	l = spool(5 * GiB, 100 * GiB, 8 * GiB, 10 * GiB);     /* exactly 5 %: still a warning */
	expect_one(&l, DISKWARN_WARNING, "spool_disk_free", NULL);

	l = spool(5 * GiB - 1, 100 * GiB, 8 * GiB, 10 * GiB); /* under 5 %: critical */
	expect_one(&l, DISKWARN_CRITICAL, "spool_disk_free", NULL);
	assert_non_null(strstr(l.w[0].text, ", 4% of 100 GiB"));

	l = spool(0, 0, 0, 10 * GiB);                         /* unknown size: nothing to divide */
	expect_one(&l, DISKWARN_WARNING, "spool_cap", NULL);
}

static void test_spool_cap_would_not_save_the_disk(void **state)
{
	struct diskwarn_list l;

	(void)state;
	l = spool(200 * GiB, 1 * TiB, 100 * GiB, 500 * GiB);
	expect_one(&l, DISKWARN_WARNING, "spool_cap",
		   "the disk of state_dir /var/lib/strait has 200 GiB free but the spool may still "
		   "grow by 400 GiB (spool_max 500 GiB): the cap would not save the disk");

	l = spool(400 * GiB, 1 * TiB, 100 * GiB, 500 * GiB);  /* exactly fits */
	assert_int_equal(l.n, 0);

	l = spool(200 * GiB, 1 * TiB, 0, 0);                  /* no cap: only free space counts */
	assert_int_equal(l.n, 0);

	l = spool(200 * GiB, 1 * TiB, 600 * GiB, 500 * GiB);  /* already past the cap */
	assert_int_equal(l.n, 0);

	/* both: little free space and a cap above it */
	l = spool(3 * GiB, 100 * GiB, 0, 10 * GiB);
	assert_int_equal(l.n, 2);
	assert_string_equal(l.w[0].kind, "spool_disk_free");
	assert_int_equal(l.w[0].level, DISKWARN_CRITICAL);
	assert_string_equal(l.w[1].kind, "spool_cap");
	assert_int_equal(diskwarn_worst(&l), DISKWARN_CRITICAL);
}

static void test_spool_measures_a_real_disk(void **state)
{
	struct diskwarn_list l = { 0 };
	struct disk_space disk;
	char err[256];

	(void)state;
	assert_true(disk_space_measure("/", &disk, err, sizeof(err)));
	assert_true(disk.size > 0);
	assert_true(disk.free <= disk.size);
	/* a cap far beyond any disk: the spool_cap warning must come */
	assert_true(diskwarn_spool("/", 0, UINT64_MAX, &l, err, sizeof(err)));
	assert_true(l.n >= 1);
	assert_string_equal(l.w[l.n - 1].kind, "spool_cap");

	l.n = 0;
	assert_false(diskwarn_spool("/nonexistent/strait-state", 0, 1, &l, err, sizeof(err)));
	assert_int_equal(l.n, 0);
	assert_string_equal(err, "could not measure the disk of \"/nonexistent/strait-state\": "
			    "No such file or directory");
}

/* ------------------------------------------------------------ the list */

static void test_list_levels_and_bound(void **state)
{
	struct diskwarn_list l = { 0 };
	struct disk_space disk = { .free = 0, .size = 100 };

	(void)state;
	assert_int_equal(diskwarn_worst(&l), DISKWARN_NONE);
	assert_string_equal(diskwarn_level_name(DISKWARN_NONE), "ok");
	assert_string_equal(diskwarn_level_name(DISKWARN_WARNING), "warning");
	assert_string_equal(diskwarn_level_name(DISKWARN_CRITICAL), "critical");
	for (int i = 0; i < DISKWARN_MAX; i++)
		diskwarn_spool_judge(&disk, "/x", 0, 10, &l);
	assert_int_equal(l.n, DISKWARN_MAX);            /* full: the rest is dropped */
	assert_string_equal(l.w[DISKWARN_MAX - 1].kind, "spool_cap");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_format_bytes),
		cmocka_unit_test(test_keep_size_thresholds),
		cmocka_unit_test(test_keep_size_unlimited_or_unknown),
		cmocka_unit_test(test_wal_status_unreserved_and_lost),
		cmocka_unit_test(test_missing_slot_has_no_warnings),
		cmocka_unit_test(test_invalidation_reason_and_idle_timeout),
		cmocka_unit_test(test_wal_disk_retained_unlimited),
		cmocka_unit_test(test_wal_disk_limit_protects_the_disk),
		cmocka_unit_test(test_wal_disk_free_below_ten_percent),
		cmocka_unit_test(test_spool_free_space),
		cmocka_unit_test(test_spool_cap_would_not_save_the_disk),
		cmocka_unit_test(test_spool_measures_a_real_disk),
		cmocka_unit_test(test_list_levels_and_bound),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
