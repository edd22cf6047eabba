/*
 * test_slotwatch.c — the slot poll's pieces that need no server: which
 * hosts count as this host, the statement for old and new servers, and a
 * server that cannot be reached (retried, reported at every poll, logged
 * once). The poll against a real server is in
 * tests/integration/test_slotwatch.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/log.h"
#include "replicator/slotwatch.h"

static void test_host_is_local(void **state)
{
	(void)state;
	assert_true(slotwatch_host_is_local("/var/run/postgresql"));
	assert_true(slotwatch_host_is_local("@abstract"));
	assert_true(slotwatch_host_is_local("localhost"));
	assert_true(slotwatch_host_is_local("127.0.0.1"));
	assert_true(slotwatch_host_is_local("127.0.1.1"));
	assert_true(slotwatch_host_is_local("::1"));
	assert_false(slotwatch_host_is_local(NULL));
	assert_false(slotwatch_host_is_local(""));
	assert_false(slotwatch_host_is_local("db.example.com"));
	assert_false(slotwatch_host_is_local("10.0.0.5"));
	assert_false(slotwatch_host_is_local("localhost.example.com"));
	assert_false(slotwatch_host_is_local("::2"));
}

static void test_sql_by_server_version(void **state)
{
	char *sql = slotwatch_sql(150004, "'strait_app'");

	(void)state;
	assert_non_null(sql);
	assert_non_null(strstr(sql, "s.slot_name = 'strait_app'"));
	assert_non_null(strstr(sql, "s.wal_status, s.safe_wal_size, "
			       "pg_catalog.pg_size_bytes(pg_catalog.current_setting("
			       "'max_slot_wal_keep_size'))"));
	/* readable without superuser: pg_settings hides, current_setting() would fail */
	assert_non_null(strstr(sql, "FROM pg_catalog.pg_settings WHERE name = 'data_directory'"));
	assert_non_null(strstr(sql, "LEFT JOIN pg_catalog.pg_replication_slots"));
	free(sql);

	/* PostgreSQL 12 has none of the three */
	sql = slotwatch_sql(120010, "'strait_app'");
	assert_non_null(sql);
	assert_null(strstr(sql, "wal_status"));
	assert_null(strstr(sql, "safe_wal_size"));
	assert_null(strstr(sql, "max_slot_wal_keep_size"));
	assert_non_null(strstr(sql, "NULL::text, NULL::bigint, NULL::bigint"));
	free(sql);

	/* 15 lacks 17's invalidation_reason and inactive_since and 18's idle timeout */
	sql = slotwatch_sql(150004, "'strait_app'");
	assert_null(strstr(sql, "invalidation_reason"));
	assert_null(strstr(sql, "inactive_since"));
	assert_null(strstr(sql, "idle_replication_slot_timeout"));
	free(sql);
	sql = slotwatch_sql(170002, "'strait_app'");
	assert_non_null(strstr(sql, "s.invalidation_reason"));
	assert_non_null(strstr(sql, "s.inactive_since"));
	assert_null(strstr(sql, "idle_replication_slot_timeout"));
	free(sql);
	sql = slotwatch_sql(180001, "'strait_app'");
	assert_non_null(strstr(sql, "s.invalidation_reason"));
	assert_non_null(strstr(sql, "WHERE name = 'idle_replication_slot_timeout'"));
	free(sql);
}

/* ------------------------------------------------------------ no server */

struct failures {
	struct event_base *base;
	int n;
	int samples;
	char first[512];
	bool all_same;
	struct timespec at[3];
};

static void on_poll(void *arg, const struct slot_sample *s, const char *err)
{
	struct failures *f = arg;

	if (s) {
		f->samples++;
		return;
	}
	assert_non_null(err);
	if (f->n == 0)
		snprintf(f->first, sizeof(f->first), "%s", err);
	else if (strcmp(err, f->first) != 0)
		f->all_same = false;
	clock_gettime(CLOCK_MONOTONIC, &f->at[f->n < 3 ? f->n : 2]);
	if (++f->n == 3)
		event_base_loopbreak(f->base);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	event_base_loopbreak(arg);
}

static double seconds_between(const struct timespec *a, const struct timespec *b)
{
	return (double)(b->tv_sec - a->tv_sec) + (double)(b->tv_nsec - a->tv_nsec) / 1e9;
}

static void test_unreachable_server_retried_and_logged_once(void **state)
{
	struct failures f = { .all_same = true };
	struct timeval deadline = { 15, 0 };
	struct slotwatch *w;
	struct event *timeout;
	char logpath[] = "/tmp/test_slotwatch_log.XXXXXX";
	char text[8192];
	int logfd = mkstemp(logpath), saved = dup(2);
	ssize_t len;
	int count = 0;

	(void)state;
	assert_true(logfd >= 0 && saved >= 0);
	f.base = event_base_new();
	assert_non_null(f.base);
	timeout = evtimer_new(f.base, on_deadline, f.base);
	evtimer_add(timeout, &deadline);

	fflush(stderr);
	dup2(logfd, 2);
	w = slotwatch_new(f.base, "host=/nonexistent-strait-test-dir port=5432 dbname=x",
			  "strait_app", 50, "stream \"app\"", on_poll, &f);
	assert_non_null(w);
	assert_null(slotwatch_last(w));
	assert_string_equal(slotwatch_error(w), "");
	assert_string_equal(slotwatch_slot_name(w), "strait_app");
	event_base_dispatch(f.base);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);

	assert_int_equal(f.n, 3);
	assert_int_equal(f.samples, 0);
	assert_true(f.all_same);
	assert_null(slotwatch_last(w));
	assert_string_equal(slotwatch_error(w), f.first);
	assert_non_null(strstr(f.first, "/nonexistent-strait-test-dir"));
	/* retried, but not at every 50 ms tick: at least SLOTWATCH_RETRY_MS apart (less half a tick) */
	assert_true(seconds_between(&f.at[0], &f.at[1]) >= 0.9);
	assert_true(seconds_between(&f.at[1], &f.at[2]) >= 0.9);

	/* three failures with one message: one line in the log */
	len = pread(logfd, text, sizeof(text) - 1, 0);
	assert_true(len > 0);
	text[len] = '\0';
	for (const char *p = text; (p = strstr(p, "could not read replication slot \"strait_app\"")); p++)
		count++;
	assert_int_equal(count, 1);
	assert_non_null(strstr(text, "stream \"app\": could not read replication slot \"strait_app\": "));

	slotwatch_free(w);
	event_free(timeout);
	event_base_free(f.base);
	close(logfd);
	unlink(logpath);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_host_is_local),
		cmocka_unit_test(test_sql_by_server_version),
		cmocka_unit_test(test_unreachable_server_retried_and_logged_once),
	};

	log_init("test_slotwatch");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
