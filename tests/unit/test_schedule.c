/*
 * test_schedule.c — schedule rules and batch windows at a moment of local
 * time: weekday rules, first match wins, windows across midnight (and which
 * day their morning belongs to), the whole day, batch windows, the one-off
 * window, next_change across midnight, weekends and both daylight saving
 * changes in New York and Berlin; and the wire cost of a frame.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gateway/stream/schedule.h"

#define MIN 60
#define HOUR 3600
#define DAY 86400

#define MON (1u << 1)
#define TUE (1u << 2)
#define WED (1u << 3)
#define THU (1u << 4)
#define FRI (1u << 5)
#define SAT (1u << 6)
#define SUN (1u << 0)
#define MON_FRI (MON | TUE | WED | THU | FRI)

static void set_tz(const char *tz)
{
	setenv("TZ", tz, 1);
	tzset();
}

/* A local time that exists once (not at a daylight saving change). */
static time_t local(int y, int mo, int d, int h, int mi)
{
	struct tm tm = { .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h,
		.tm_min = mi, .tm_isdst = -1 };

	return mktime(&tm);
}

static time_t utc(int y, int mo, int d, int h, int mi)
{
	struct tm tm = { .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h,
		.tm_min = mi };

	return timegm(&tm);
}

static int wday_of(time_t t)
{
	struct tm tm;

	localtime_r(&t, &tm);
	return tm.tm_wday;
}

static struct config_window win(int sh, int sm, int eh, int em)
{
	struct config_window w = { (uint16_t)(sh * 60 + sm), (uint16_t)(eh * 60 + em) };

	return w;
}

static struct config_schedule_rule rule_hours(config_days days, struct config_window w,
		bool unlimited, uint64_t bps)
{
	struct config_schedule_rule r = { .days = days, .has_hours = true, .hours = w,
		.rate = { unlimited, bps } };

	return r;
}

static struct config_schedule_rule rule_days(config_days days, uint64_t bps)
{
	struct config_schedule_rule r = { .days = days, .rate = { false, bps } };

	return r;
}

static struct config_stream live(struct config_schedule_rule *rules, size_t n)
{
	struct config_stream cs = { .name = "s", .mode = CONFIG_MODE_LIVE, .schedule = rules,
		.n_schedule = n };

	return cs;
}

static struct config_stream batch(struct config_window *w, size_t nw,
		struct config_schedule_rule *rules, size_t n)
{
	struct config_stream cs = { .name = "s", .mode = CONFIG_MODE_BATCH, .schedule = rules,
		.n_schedule = n, .windows = w, .n_windows = nw };

	return cs;
}

static struct schedule_state eval(const struct config_stream *cs, time_t now)
{
	struct schedule_state st;

	memset(&st, 0xa5, sizeof(st));
	schedule_eval(cs, now, 0, &st);
	return st;
}

/* Monday 2026-06-01, Berlin summer time: far from any clock change. */
static time_t june(int day, int h, int mi)
{
	return local(2026, 6, day, h, mi);
}

/* Every test starts in Berlin, whatever zone the test before it left. */
static int setup_berlin(void **state)
{
	(void)state;
	set_tz("Europe/Berlin");
	return 0;
}

static void test_no_rules_unlimited(void **state)
{
	struct config_stream cs = live(NULL, 0);
	struct schedule_state st = eval(&cs, june(1, 12, 0));

	(void)state;
	assert_false(st.held);
	assert_true(st.rate.unlimited);
	assert_int_equal(st.rate.bytes_per_sec, 0);
	assert_int_equal(st.rule, -1);
	assert_int_equal(st.window, -1);
	assert_false(st.one_off);
	assert_string_equal(st.why, "no schedule: unlimited");
	assert_int_equal(st.next_change, 0);
}

static void test_weekday_rule(void **state)
{
	struct config_schedule_rule rules[] = {
		rule_hours(MON_FRI, win(8, 0, 18, 0), false, 2 << 20),
	};
	struct config_stream cs = live(rules, 1);
	struct schedule_state st;

	(void)state;
	assert_int_equal(wday_of(june(1, 12, 0)), 1);  /* the calendar is what we think */

	st = eval(&cs, june(1, 7, 59));
	assert_false(st.held);
	assert_true(st.rate.unlimited);
	assert_int_equal(st.rule, -1);
	assert_string_equal(st.why, "no rule matches: unlimited");
	assert_int_equal(st.next_change, june(1, 8, 0));

	st = eval(&cs, june(1, 8, 0));
	assert_false(st.held);
	assert_false(st.rate.unlimited);
	assert_int_equal(st.rate.bytes_per_sec, 2 << 20);
	assert_int_equal(st.rule, 0);
	assert_string_equal(st.why, "rule 1: mon-fri 08:00-18:00 at 2MiB/s");
	assert_int_equal(st.next_change, june(1, 18, 0));

	/* a second before the end: still the rule, change in one second */
	st = eval(&cs, june(1, 18, 0) - 1);
	assert_int_equal(st.rule, 0);
	assert_int_equal(st.next_change, june(1, 18, 0));

	/* Friday evening: over the weekend to Monday 08:00 */
	st = eval(&cs, june(5, 18, 0));
	assert_int_equal(st.rule, -1);
	assert_int_equal(st.next_change, june(8, 8, 0));
	st = eval(&cs, june(6, 12, 0));  /* Saturday */
	assert_int_equal(st.rule, -1);
	assert_int_equal(st.next_change, june(8, 8, 0));
	/* Wednesday: the rule */
	st = eval(&cs, june(3, 12, 30));
	assert_int_equal(st.rule, 0);
}

static void test_first_match_wins(void **state)
{
	struct config_schedule_rule rules[] = {
		rule_days(SAT | SUN, 0),
		rule_hours(CONFIG_ALL_DAYS, win(1, 0, 5, 0), false, 10000000),
		rule_days(CONFIG_ALL_DAYS, 1 << 20),
	};
	struct config_stream cs = live(rules, 3);
	struct schedule_state st;

	(void)state;
	st = eval(&cs, june(6, 3, 0));  /* Saturday 03:00: rules 1 and 2 match too */
	assert_true(st.held);
	assert_false(st.rate.unlimited);
	assert_int_equal(st.rate.bytes_per_sec, 0);
	assert_int_equal(st.rule, 0);
	assert_string_equal(st.why, "rule 1: sat,sun at 0 (held)");
	/* Sunday midday: held until Monday 00:00, when the last rule takes over */
	st = eval(&cs, june(7, 12, 0));
	assert_int_equal(st.rule, 0);
	assert_int_equal(st.next_change, june(8, 0, 0));

	st = eval(&cs, june(1, 3, 0));
	assert_false(st.held);
	assert_int_equal(st.rule, 1);
	assert_int_equal(st.rate.bytes_per_sec, 10000000);
	assert_string_equal(st.why, "rule 2: daily 01:00-05:00 at 10MB/s");
	assert_int_equal(st.next_change, june(1, 5, 0));

	st = eval(&cs, june(1, 6, 0));
	assert_int_equal(st.rule, 2);
	assert_string_equal(st.why, "rule 3: daily at 1MiB/s");
	assert_int_equal(st.next_change, june(2, 1, 0));
	/* Friday 05:00: rule 3 until Saturday 00:00 */
	st = eval(&cs, june(5, 5, 0));
	assert_int_equal(st.rule, 2);
	assert_int_equal(st.next_change, june(6, 0, 0));
}

static void test_midnight_crossing_belongs_to_start_day(void **state)
{
	struct config_schedule_rule rules[] = {
		rule_hours(FRI, win(22, 0, 6, 0), false, 1000000),
	};
	struct config_stream cs = live(rules, 1);
	struct schedule_state st;

	(void)state;
	st = eval(&cs, june(5, 21, 59));
	assert_int_equal(st.rule, -1);
	assert_int_equal(st.next_change, june(5, 22, 0));

	st = eval(&cs, june(5, 22, 0));
	assert_int_equal(st.rule, 0);
	assert_string_equal(st.why, "rule 1: fri 22:00-06:00 at 1MB/s");
	/* midnight (a new weekday) changes nothing: the next change is Saturday 06:00 */
	assert_int_equal(st.next_change, june(6, 6, 0));
	st = eval(&cs, june(6, 0, 0));
	assert_int_equal(st.rule, 0);
	st = eval(&cs, june(6, 5, 59));
	assert_int_equal(st.rule, 0);
	assert_int_equal(st.next_change, june(6, 6, 0));
	st = eval(&cs, june(6, 6, 0));
	assert_int_equal(st.rule, -1);
	assert_int_equal(st.next_change, june(12, 22, 0));

	/* Friday's early morning is Thursday's window, which has no rule */
	st = eval(&cs, june(5, 3, 0));
	assert_int_equal(st.rule, -1);
	assert_int_equal(st.next_change, june(5, 22, 0));
	/* nor does Saturday evening start a window */
	st = eval(&cs, june(6, 23, 0));
	assert_int_equal(st.rule, -1);
}

static void test_whole_day(void **state)
{
	struct config_schedule_rule rules[] = {
		rule_hours(SUN, win(0, 0, 24, 0), false, 0),
		rule_days(WED, 5000),
	};
	struct config_stream cs = live(rules, 2);
	struct schedule_state st;

	(void)state;
	st = eval(&cs, june(6, 12, 0));
	assert_int_equal(st.rule, -1);
	assert_int_equal(st.next_change, june(7, 0, 0));
	st = eval(&cs, june(7, 0, 0));
	assert_true(st.held);
	assert_int_equal(st.rule, 0);
	assert_string_equal(st.why, "rule 1: sun 00:00-24:00 at 0 (held)");
	assert_int_equal(st.next_change, june(8, 0, 0));
	st = eval(&cs, june(7, 23, 59));
	assert_true(st.held);
	st = eval(&cs, june(8, 0, 0));
	assert_false(st.held);
	assert_int_equal(st.rule, -1);
	assert_int_equal(st.next_change, june(10, 0, 0));
	st = eval(&cs, june(10, 13, 0));
	assert_int_equal(st.rule, 1);
	assert_int_equal(st.rate.bytes_per_sec, 5000);
	assert_string_equal(st.why, "rule 2: wed at 5kB/s");
	assert_int_equal(st.next_change, june(11, 0, 0));
}

static void test_rule_without_change_has_no_next_change(void **state)
{
	struct config_schedule_rule rules[] = {
		rule_days(CONFIG_ALL_DAYS, 3000),
	};
	struct config_stream cs = live(rules, 1);
	struct schedule_state st = eval(&cs, june(1, 12, 0));

	(void)state;
	assert_int_equal(st.rule, 0);
	assert_int_equal(st.rate.bytes_per_sec, 3000);
	assert_string_equal(st.why, "rule 1: daily at 3kB/s");
	assert_int_equal(st.next_change, 0);
}

static void test_batch_windows(void **state)
{
	struct config_window w[] = { win(1, 0, 5, 0), win(23, 0, 0, 30) };
	struct config_stream cs = batch(w, 2, NULL, 0);
	struct schedule_state st;

	(void)state;
	st = eval(&cs, june(1, 0, 45));
	assert_true(st.held);
	assert_false(st.rate.unlimited);
	assert_int_equal(st.rate.bytes_per_sec, 0);
	assert_int_equal(st.window, -1);
	assert_int_equal(st.rule, -1);
	assert_string_equal(st.why, "outside batch windows (01:00-05:00, 23:00-00:30)");
	assert_int_equal(st.next_change, june(1, 1, 0));

	st = eval(&cs, june(1, 1, 0));
	assert_false(st.held);
	assert_true(st.rate.unlimited);
	assert_int_equal(st.window, 0);
	assert_string_equal(st.why, "in batch window 01:00-05:00, no schedule: unlimited");
	assert_int_equal(st.next_change, june(1, 5, 0));

	st = eval(&cs, june(1, 5, 0));
	assert_true(st.held);
	assert_int_equal(st.next_change, june(1, 23, 0));

	/* across midnight, every day alike */
	st = eval(&cs, june(6, 23, 30));
	assert_false(st.held);
	assert_int_equal(st.window, 1);
	assert_int_equal(st.next_change, june(7, 0, 30));
	st = eval(&cs, june(7, 0, 10));
	assert_int_equal(st.window, 1);
}

static void test_batch_windows_with_rules(void **state)
{
	struct config_window w[] = { win(1, 0, 5, 0), win(23, 0, 0, 30) };
	struct config_schedule_rule rules[] = {
		rule_days(SAT | SUN, 1 << 20),
		rule_hours(MON, win(4, 0, 6, 0), false, 0),
	};
	struct config_stream cs = batch(w, 2, rules, 2);
	struct schedule_state st;

	(void)state;
	st = eval(&cs, june(6, 2, 0));  /* Saturday */
	assert_false(st.held);
	assert_int_equal(st.window, 0);
	assert_int_equal(st.rule, 0);
	assert_int_equal(st.rate.bytes_per_sec, 1 << 20);
	assert_string_equal(st.why, "in batch window 01:00-05:00, rule 1: sat,sun at 1MiB/s");

	/* Sunday 23:30: the rule until midnight, then the window alone */
	st = eval(&cs, june(7, 23, 30));
	assert_int_equal(st.window, 1);
	assert_int_equal(st.rule, 0);
	assert_int_equal(st.next_change, june(8, 0, 0));
	st = eval(&cs, june(8, 0, 10));
	assert_int_equal(st.window, 1);
	assert_int_equal(st.rule, -1);
	assert_true(st.rate.unlimited);
	assert_string_equal(st.why, "in batch window 23:00-00:30, no rule matches: unlimited");

	/* a rate 0 rule holds the stream inside a window */
	st = eval(&cs, june(8, 4, 0));
	assert_true(st.held);
	assert_int_equal(st.window, 0);
	assert_int_equal(st.rule, 1);
	assert_string_equal(st.why, "in batch window 01:00-05:00, rule 2: mon 04:00-06:00 at 0 (held)");
	assert_int_equal(st.next_change, june(8, 5, 0));
	/* outside the windows no rule counts: next change is the window, not 06:00 */
	st = eval(&cs, june(8, 5, 0));
	assert_true(st.held);
	assert_int_equal(st.rule, -1);
	assert_int_equal(st.window, -1);
	assert_int_equal(st.next_change, june(8, 23, 0));
}

static void test_batch_without_windows_is_held(void **state)
{
	struct config_stream cs = batch(NULL, 0, NULL, 0);
	struct schedule_state st = eval(&cs, june(1, 12, 0));

	(void)state;
	assert_true(st.held);
	assert_int_equal(st.window, -1);
	assert_string_equal(st.why, "no batch windows: held");
	assert_int_equal(st.next_change, 0);
}

static void test_one_off(void **state)
{
	struct config_window w[] = { win(1, 0, 5, 0) };
	struct config_stream cs = batch(w, 1, NULL, 0);
	struct config_schedule_rule rules[] = { rule_days(CONFIG_ALL_DAYS, 0) };
	struct config_stream held_live = live(rules, 1);
	time_t now = june(1, 12, 0);
	time_t until = now + 30 * MIN + 15;
	struct schedule_state st;

	(void)state;
	schedule_eval(&cs, now, until, &st);
	assert_false(st.held);
	assert_true(st.rate.unlimited);
	assert_true(st.one_off);
	assert_int_equal(st.rule, -1);
	assert_int_equal(st.window, -1);
	assert_string_equal(st.why, "sync-now until 12:30:15");
	assert_int_equal(st.next_change, until);

	/* at its end the schedule is back */
	schedule_eval(&cs, until, until, &st);
	assert_false(st.one_off);
	assert_true(st.held);
	assert_int_equal(st.next_change, june(2, 1, 0));
	/* one in the past is ignored */
	schedule_eval(&cs, now, now - 10, &st);
	assert_true(st.held);
	assert_false(st.one_off);

	/* a live stream held by its rules opens too */
	schedule_eval(&held_live, now, until, &st);
	assert_false(st.held);
	assert_true(st.one_off);
	assert_int_equal(st.next_change, until);
	/* a rule that never changes: the one-off's end is the only change */
	schedule_eval(&held_live, now - HOUR, now, &st);
	assert_true(st.one_off);
	assert_int_equal(st.next_change, now);

	/* the end counts only within 8 days */
	schedule_eval(&cs, now, now + 7 * DAY, &st);
	assert_int_equal(st.next_change, now + 7 * DAY);
	schedule_eval(&cs, now, now + 9 * DAY, &st);
	assert_true(st.one_off);
	assert_int_equal(st.next_change, 0);
}

/* ---- daylight saving time ---- */

static void test_dst_new_york_spring_forward(void **state)
{
	/* 2026-03-08: 02:00 EST (07:00Z) becomes 03:00 EDT. */
	struct config_window w1[] = { win(1, 0, 5, 0) };
	struct config_window w2[] = { win(2, 0, 3, 0) };
	struct config_window w3[] = { win(2, 30, 4, 0) };
	struct config_stream s1 = batch(w1, 1, NULL, 0);
	struct config_stream s2 = batch(w2, 1, NULL, 0);
	struct config_stream s3 = batch(w3, 1, NULL, 0);
	struct schedule_state st;

	(void)state;
	set_tz("America/New_York");
	/* 01:00-05:00 lasts three real hours */
	st = eval(&s1, utc(2026, 3, 8, 5, 30));
	assert_true(st.held);
	assert_int_equal(st.next_change, utc(2026, 3, 8, 6, 0));
	st = eval(&s1, utc(2026, 3, 8, 6, 0));
	assert_false(st.held);
	assert_int_equal(st.next_change, utc(2026, 3, 8, 9, 0));
	st = eval(&s1, utc(2026, 3, 8, 7, 0));  /* 03:00 EDT, just after the jump */
	assert_false(st.held);
	assert_int_equal(st.next_change, utc(2026, 3, 8, 9, 0));
	st = eval(&s1, utc(2026, 3, 8, 9, 0));
	assert_true(st.held);
	assert_int_equal(st.next_change, utc(2026, 3, 9, 5, 0));  /* 01:00 EDT next night */

	/* 02:00-03:00 does not exist that night: it opens the next night */
	st = eval(&s2, utc(2026, 3, 8, 6, 30));
	assert_true(st.held);
	assert_int_equal(st.next_change, utc(2026, 3, 9, 6, 0));

	/* 02:30-04:00 opens at the jump (03:00 EDT) */
	st = eval(&s3, utc(2026, 3, 8, 6, 30));
	assert_true(st.held);
	assert_int_equal(st.next_change, utc(2026, 3, 8, 7, 0));
	st = eval(&s3, utc(2026, 3, 8, 7, 0));
	assert_false(st.held);
	assert_int_equal(st.next_change, utc(2026, 3, 8, 8, 0));
	st = eval(&s3, utc(2026, 3, 8, 7, 0) - 1);  /* 01:59:59 EST */
	assert_true(st.held);
	assert_int_equal(st.next_change, utc(2026, 3, 8, 7, 0));
}

static void test_dst_new_york_fall_back(void **state)
{
	/* 2026-11-01: 02:00 EDT (06:00Z) becomes 01:00 EST. */
	struct config_window w1[] = { win(1, 0, 2, 0) };
	struct config_window w2[] = { win(1, 30, 2, 30) };
	struct config_schedule_rule rules[] = {
		rule_hours(SAT, win(23, 0, 1, 30), false, 1000000),
	};
	struct config_stream s1 = batch(w1, 1, NULL, 0);
	struct config_stream s2 = batch(w2, 1, NULL, 0);
	struct config_stream s3 = live(rules, 1);
	struct schedule_state st;

	(void)state;
	set_tz("America/New_York");
	/* 01:00-02:00 lasts two real hours */
	st = eval(&s1, utc(2026, 11, 1, 4, 30));
	assert_true(st.held);
	assert_int_equal(st.next_change, utc(2026, 11, 1, 5, 0));
	st = eval(&s1, utc(2026, 11, 1, 5, 0));
	assert_false(st.held);
	assert_int_equal(st.next_change, utc(2026, 11, 1, 7, 0));

	/* 01:30-02:30: open, closed at the jump back to 01:00, open again at 01:30 EST */
	st = eval(&s2, utc(2026, 11, 1, 5, 0));
	assert_true(st.held);
	assert_int_equal(st.next_change, utc(2026, 11, 1, 5, 30));
	st = eval(&s2, utc(2026, 11, 1, 5, 30));
	assert_false(st.held);
	assert_int_equal(st.next_change, utc(2026, 11, 1, 6, 0));
	st = eval(&s2, utc(2026, 11, 1, 6, 0));
	assert_true(st.held);
	assert_int_equal(st.next_change, utc(2026, 11, 1, 6, 30));
	st = eval(&s2, utc(2026, 11, 1, 6, 30));
	assert_false(st.held);
	assert_int_equal(st.next_change, utc(2026, 11, 1, 7, 30));

	/* Saturday's 23:00-01:30 window: its morning repeats too */
	st = eval(&s3, utc(2026, 11, 1, 3, 0));  /* Sat 23:00 EDT */
	assert_int_equal(st.rule, 0);
	assert_int_equal(st.next_change, utc(2026, 11, 1, 5, 30));
	st = eval(&s3, utc(2026, 11, 1, 5, 30));
	assert_int_equal(st.rule, -1);
	assert_int_equal(st.next_change, utc(2026, 11, 1, 6, 0));
	st = eval(&s3, utc(2026, 11, 1, 6, 0));
	assert_int_equal(st.rule, 0);
	assert_int_equal(st.next_change, utc(2026, 11, 1, 6, 30));
	st = eval(&s3, utc(2026, 11, 1, 6, 30));
	assert_int_equal(st.rule, -1);
	assert_int_equal(st.next_change, utc(2026, 11, 8, 4, 0));  /* Sat 23:00 EST */
}

static void test_dst_berlin(void **state)
{
	/* 2026-03-29: 02:00 CET (01:00Z) becomes 03:00 CEST;
	 * 2026-10-25: 03:00 CEST (01:00Z) becomes 02:00 CET. */
	struct config_window w1[] = { win(1, 0, 5, 0) };
	struct config_window w2[] = { win(2, 0, 3, 0) };
	struct config_schedule_rule rules[] = {
		rule_hours(SAT, win(22, 0, 3, 0), false, 1000000),
	};
	struct config_stream s1 = batch(w1, 1, NULL, 0);
	struct config_stream s2 = batch(w2, 1, NULL, 0);
	struct config_stream s3 = live(rules, 1);
	struct schedule_state st;

	(void)state;
	set_tz("Europe/Berlin");
	/* spring: 01:00-05:00 is three hours, 02:00-03:00 does not happen */
	st = eval(&s1, utc(2026, 3, 28, 23, 30));
	assert_true(st.held);
	assert_int_equal(st.next_change, utc(2026, 3, 29, 0, 0));
	st = eval(&s1, utc(2026, 3, 29, 0, 0));
	assert_false(st.held);
	assert_int_equal(st.next_change, utc(2026, 3, 29, 3, 0));
	st = eval(&s2, utc(2026, 3, 28, 23, 30));
	assert_true(st.held);
	assert_int_equal(st.next_change, utc(2026, 3, 30, 0, 0));  /* 02:00 CEST, Monday */

	/* autumn: 02:00-03:00 is two hours */
	st = eval(&s2, utc(2026, 10, 24, 23, 30));
	assert_true(st.held);
	assert_int_equal(st.next_change, utc(2026, 10, 25, 0, 0));
	st = eval(&s2, utc(2026, 10, 25, 0, 0));
	assert_false(st.held);
	assert_int_equal(st.next_change, utc(2026, 10, 25, 2, 0));
	st = eval(&s2, utc(2026, 10, 25, 1, 0));  /* 02:00 CET, the second time */
	assert_false(st.held);
	assert_int_equal(st.next_change, utc(2026, 10, 25, 2, 0));

	/* Saturday 22:00-03:00 runs on through the repeated hour */
	st = eval(&s3, utc(2026, 10, 24, 21, 0));  /* Sat 23:00 CEST */
	assert_int_equal(st.rule, 0);
	assert_int_equal(st.next_change, utc(2026, 10, 25, 2, 0));
	st = eval(&s3, utc(2026, 10, 25, 2, 0));
	assert_int_equal(st.rule, -1);
	assert_int_equal(st.next_change, utc(2026, 10, 31, 21, 0));  /* Sat 22:00 CET */
}

static void test_eval_is_cheap(void **state)
{
	struct config_window w[] = { win(1, 0, 5, 0), win(22, 0, 23, 0) };
	struct config_schedule_rule rules[] = {
		rule_hours(MON_FRI, win(8, 0, 18, 0), false, 2 << 20),
		rule_hours(FRI, win(22, 0, 6, 0), false, 1000000),
		rule_days(SAT | SUN, 0),
	};
	struct config_stream cs = batch(w, 2, rules, 3);
	struct timespec a, b;
	struct schedule_state st;
	double ms;

	(void)state;
	set_tz("America/New_York");
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (int i = 0; i < 20; i++)
		schedule_eval(&cs, utc(2026, 3, 5, 0, 0) + i * 3 * HOUR, 0, &st);
	clock_gettime(CLOCK_MONOTONIC, &b);
	ms = ((double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6) / 20;
	/* about 0.08 ms under ASan (3 rules, 2 windows); generous against a busy host */
	assert_true(ms < 50.0);
}

static bool same_state(const struct schedule_state *a, const struct schedule_state *b)
{
	return a->held == b->held && a->rate.unlimited == b->rate.unlimited &&
		a->rate.bytes_per_sec == b->rate.bytes_per_sec && a->rule == b->rule &&
		a->window == b->window && a->one_off == b->one_off && strcmp(a->why, b->why) == 0;
}

/*
 * Follows next_change from start for a day and a half, checking every minute
 * (every change in these zones falls on a whole UTC minute): the state holds
 * until next_change and differs there.
 */
static void walk(const struct config_stream *cs, time_t start, time_t one_off_until)
{
	struct schedule_state seg, st;
	int changes = 0;

	schedule_eval(cs, start, one_off_until, &seg);
	for (time_t t = start + 60; t < start + 36 * HOUR; t += 60) {
		schedule_eval(cs, t, one_off_until, &st);
		if (seg.next_change == 0 || t < seg.next_change) {
			if (!same_state(&st, &seg))
				fail_msg("state changed at %lld before next_change %lld (%s -> %s)",
						(long long)t, (long long)seg.next_change, seg.why, st.why);
			continue;
		}
		assert_int_equal(t, seg.next_change);
		if (same_state(&st, &seg))
			fail_msg("nothing changed at next_change %lld (%s)", (long long)t, st.why);
		seg = st;
		changes++;
	}
	if (changes < 3)
		fail_msg("only %d changes from %lld", changes, (long long)start);
}

static void test_next_change_matches_minute_walk(void **state)
{
	struct config_window w[] = { win(1, 0, 2, 30), win(2, 45, 3, 15), win(23, 30, 0, 15) };
	struct config_schedule_rule rules[] = {
		rule_hours(SUN, win(2, 15, 2, 50), false, 1000000),
		rule_hours(SAT, win(23, 45, 1, 45), false, 2000000),
		rule_hours(CONFIG_ALL_DAYS, win(1, 10, 1, 20), false, 0),
		rule_hours(MON_FRI, win(0, 0, 24, 0), true, 0),
	};
	struct config_stream b = batch(w, 3, rules, 4);
	struct config_stream l = live(rules, 4);
	/* noon the day before each change of 2026, local time */
	time_t starts[4];

	(void)state;
	starts[0] = utc(2026, 3, 7, 17, 0);
	starts[1] = utc(2026, 10, 31, 16, 0);
	starts[2] = utc(2026, 3, 28, 11, 0);
	starts[3] = utc(2026, 10, 24, 10, 0);
	for (int i = 0; i < 4; i++) {
		set_tz(i < 2 ? "America/New_York" : "Europe/Berlin");
		walk(&b, starts[i], 0);
		walk(&l, starts[i], 0);
	}
	/* a one-off that ends in the middle of the night */
	set_tz("America/New_York");
	walk(&b, starts[1], utc(2026, 11, 1, 5, 40));
}

/* ---- wire cost ---- */

/* a frame costs its header and payload through the configured path, whatever its type */
static void test_frame_cost(void **state)
{
	struct strait_config cfg = { 0 };

	(void)state;
	cfg.tunnel.backend = CONFIG_BACKEND_NONE;
	assert_int_equal(schedule_frame_cost(976, &cfg), schedule_wire_cost(1000, 0, false));
	assert_int_equal(schedule_frame_cost(976, &cfg), 1022 + 66);
	assert_int_equal(schedule_frame_cost(0, &cfg), schedule_wire_cost(24, 0, false));
	cfg.tunnel.backend = CONFIG_BACKEND_KERNEL;
	cfg.tunnel.mtu = 1420;
	assert_int_equal(schedule_frame_cost(976, &cfg), 1162);
	cfg.tunnel.mtu = 9000;
	assert_int_equal(schedule_frame_cost(16360, &cfg), 9074 + 7520 + 74);
}

/* bytes TCP sent again: full segments of the path's MSS, no TLS added (it is in them) */
static void test_resent_cost(void **state)
{
	struct strait_config cfg = { 0 };

	(void)state;
	cfg.tunnel.backend = CONFIG_BACKEND_KERNEL;
	cfg.tunnel.mtu = 1420;
	assert_int_equal(schedule_resent_cost(0, &cfg), 0);
	assert_int_equal(schedule_resent_cost(1368, &cfg), 1494);
	assert_int_equal(schedule_resent_cost(10 * 1368, &cfg), 10 * 1494);
	/* 100 bytes: 152, padded to 160, + 74 */
	assert_int_equal(schedule_resent_cost(100, &cfg), 234);
	cfg.tunnel.backend = CONFIG_BACKEND_NONE;
	assert_int_equal(schedule_resent_cost(1448, &cfg), 1448 + 66);
	assert_int_equal(schedule_resent_cost(1449, &cfg), 1449 + 2 * 66);
}

static void test_wire_cost(void **state)
{
	(void)state;
	assert_int_equal(schedule_wire_cost(0, 1420, true), 0);
	/* 1000 + 22 (one record) + 52 TCP/IP, padded to 1088, + 74 */
	assert_int_equal(schedule_wire_cost(1000, 1420, true), 1162);
	assert_int_equal(schedule_wire_cost(1000, 0, true), 1162);
	/* one record of 16406; 11 full segments of 1368 (1494 each) + 1358 (1410, capped at 1420) */
	assert_int_equal(schedule_wire_cost(16384, 1420, true), 11 * 1494 + 1420 + 74);
	assert_int_equal(schedule_wire_cost(16384, 1420, true), 17928);
	/* two records, 16429: 12 full segments + 13 bytes (65, padded to 80) */
	assert_int_equal(schedule_wire_cost(16385, 1420, true), 12 * 1494 + 80 + 74);
	/* jumbo tunnel: 8948 + 7458 (7510, padded to 7520) */
	assert_int_equal(schedule_wire_cost(16384, 9000, true), 9074 + 7520 + 74);
	/* a tiny MTU counts as 576 */
	assert_int_equal(schedule_wire_cost(1000, 100, true), 650 + 560 + 74);
	/* no tunnel: 1500-byte Ethernet, MSS 1448, 66 per packet; mtu unused */
	assert_int_equal(schedule_wire_cost(1000, 1420, false), 1022 + 66);
	assert_int_equal(schedule_wire_cost(100000, 9000, false), 100154 + 70 * 66);
	assert_int_equal(schedule_wire_cost(1, 0, false), 1 + 22 + 66);
	/* more bytes never cost less */
	for (size_t n = 1; n < 70000; n += 97)
		assert_true(schedule_wire_cost(n + 1, 1420, true) >= schedule_wire_cost(n, 1420, true));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_no_rules_unlimited, setup_berlin),
		cmocka_unit_test_setup(test_weekday_rule, setup_berlin),
		cmocka_unit_test_setup(test_first_match_wins, setup_berlin),
		cmocka_unit_test_setup(test_midnight_crossing_belongs_to_start_day, setup_berlin),
		cmocka_unit_test_setup(test_whole_day, setup_berlin),
		cmocka_unit_test_setup(test_rule_without_change_has_no_next_change, setup_berlin),
		cmocka_unit_test_setup(test_batch_windows, setup_berlin),
		cmocka_unit_test_setup(test_batch_windows_with_rules, setup_berlin),
		cmocka_unit_test_setup(test_batch_without_windows_is_held, setup_berlin),
		cmocka_unit_test_setup(test_one_off, setup_berlin),
		cmocka_unit_test_setup(test_dst_new_york_spring_forward, setup_berlin),
		cmocka_unit_test_setup(test_dst_new_york_fall_back, setup_berlin),
		cmocka_unit_test_setup(test_dst_berlin, setup_berlin),
		cmocka_unit_test_setup(test_next_change_matches_minute_walk, setup_berlin),
		cmocka_unit_test_setup(test_eval_is_cheap, setup_berlin),
		cmocka_unit_test_setup(test_resent_cost, setup_berlin),
		cmocka_unit_test_setup(test_wire_cost, setup_berlin),
		cmocka_unit_test_setup(test_frame_cost, setup_berlin),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
