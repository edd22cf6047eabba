/*
 * schedule.c — a stream's schedule rules and batch windows evaluated at a
 * moment of local time, and what a frame costs on the wire (see schedule.h).
 *
 * NOTES
 * The evaluation is a function of the local weekday and minute of day (and
 * the one-off window). Those change only
 *   - at a minute the schedule names (a rule's or window's start or end, or
 *     midnight, where the weekday changes), reached while the UTC offset
 *     stays the same, or
 *   - at a change of the UTC offset (daylight saving time), where the wall
 *     clock jumps.
 * next_change therefore lists these instants over the horizon and takes the
 * earliest one at which the evaluation differs from now's; instants at which
 * nothing changes cost one evaluation each and are passed over. Every instant
 * where the evaluation can change is listed, so the earliest that differs is
 * the next change: no sorting or allocation is needed.
 *
 * Offset changes are found by probing the offset every hour and bisecting to
 * the second where it differs; the named minutes are turned into instants
 * once per UTC offset seen in the horizon (wall time as if UTC, minus the
 * offset), keeping only those that the zone really shows at that offset.
 * So a time skipped in spring yields no instant (the jump itself is one),
 * and a time repeated in autumn yields two. Zones whose offset changes twice
 * within an hour are not handled (no zone does that).
 */
#include "gateway/stream/schedule.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "gateway/relay/frame.h"

#define HORIZON_SEC (8 * 86400)
#define SCAN_DAYS 10             /* local days whose minutes are listed: today and 9 more */
#define TZ_PROBE_SEC 3600
#define MAX_TRANSITIONS 16       /* offset changes within 8 days; real zones have 0 or 1 */
#define MINUTES_PER_DAY 1440

/* What next_change compares: the evaluation without its text. */
struct verdict {
	bool held;
	struct config_rate rate;
	int rule;
	int window;
	bool one_off;
};

/* ---- local time ---- */

static bool local_tm(time_t t, struct tm *tm)
{
	if (localtime_r(&t, tm))
		return true;
	/* Only for times beyond any calendar (year > 2^31): read as Sunday 00:00. */
	memset(tm, 0, sizeof(*tm));
	return false;
}

static long utc_offset(time_t t)
{
	struct tm tm;

	return local_tm(t, &tm) ? tm.tm_gmtoff : 0;
}

/* ---- matching ---- */

static bool on_day(config_days days, int wday)
{
	return (days & (1u << wday)) != 0;
}

/*
 * A window that crosses midnight (end <= start) belongs to the day it starts
 * on: its part before end is matched against yesterday's weekday.
 */
static bool rule_matches(const struct config_schedule_rule *r, int wday, unsigned m)
{
	const struct config_window *w = &r->hours;

	if (!r->has_hours)
		return on_day(r->days, wday);
	if (w->start_min < w->end_min)
		return on_day(r->days, wday) && m >= w->start_min && m < w->end_min;
	if (m >= w->start_min)
		return on_day(r->days, wday);
	return m < w->end_min && on_day(r->days, (wday + 6) % 7);
}

static int first_rule(const struct config_stream *cs, int wday, unsigned m)
{
	for (size_t i = 0; i < cs->n_schedule; i++)
		if (rule_matches(&cs->schedule[i], wday, m))
			return (int)i;
	return -1;
}

static int first_window(const struct config_stream *cs, unsigned m)
{
	for (size_t i = 0; i < cs->n_windows; i++)
		if (config_window_contains(&cs->windows[i], m))
			return (int)i;
	return -1;
}

static void decide(const struct config_stream *cs, time_t t, time_t one_off_until,
		struct verdict *v)
{
	struct tm tm;
	unsigned m;

	memset(v, 0, sizeof(*v));
	v->rule = -1;
	v->window = -1;
	if (one_off_until > t) {
		v->one_off = true;
		v->rate.unlimited = true;
		return;
	}
	local_tm(t, &tm);
	m = (unsigned)(tm.tm_hour * 60 + tm.tm_min);
	if (cs->mode == CONFIG_MODE_BATCH) {
		v->window = first_window(cs, m);
		if (v->window < 0) {
			v->held = true;
			return;
		}
	}
	v->rule = first_rule(cs, tm.tm_wday, m);
	if (v->rule < 0) {
		v->rate.unlimited = true;
		return;
	}
	v->rate = cs->schedule[v->rule].rate;
	if (v->rate.unlimited)
		v->rate.bytes_per_sec = 0;
	v->held = !v->rate.unlimited && v->rate.bytes_per_sec == 0;
}

static bool same_verdict(const struct verdict *a, const struct verdict *b)
{
	return a->held == b->held && a->rate.unlimited == b->rate.unlimited &&
		a->rate.bytes_per_sec == b->rate.bytes_per_sec && a->rule == b->rule &&
		a->window == b->window && a->one_off == b->one_off;
}

/* ---- next change ---- */

struct change_search {
	const struct config_stream *cs;
	time_t now;
	time_t one_off_until;
	struct verdict current;
	time_t best;                 /* earliest instant found to differ; 0: none yet */
};

static void try_instant(struct change_search *s, time_t t)
{
	struct verdict v;

	if (t <= s->now || t > s->now + HORIZON_SEC || (s->best != 0 && t >= s->best))
		return;
	decide(s->cs, t, s->one_off_until, &v);
	if (!same_verdict(&v, &s->current))
		s->best = t;
}

/*
 * Offset changes in (from, to]: each is the first second showing the new
 * offset. Returns how many were stored in at.
 */
static int find_transitions(time_t from, time_t to, time_t *at, int max)
{
	long prev = utc_offset(from);
	int n = 0;

	for (time_t a = from; a < to && n < max; a += TZ_PROBE_SEC) {
		time_t lo = a, hi = a + TZ_PROBE_SEC > to ? to : a + TZ_PROBE_SEC;
		long off = utc_offset(hi);

		if (off == prev)
			continue;
		/* utc_offset(lo) == prev, utc_offset(hi) != prev */
		while (hi - lo > 1) {
			time_t mid = lo + (hi - lo) / 2;

			if (utc_offset(mid) == prev)
				lo = mid;
			else
				hi = mid;
		}
		at[n++] = hi;
		prev = off;
	}
	return n;
}

/* Marks every minute of the day at which some rule or window starts or ends. */
static void mark_minutes(const struct config_stream *cs, bool marks[MINUTES_PER_DAY])
{
	memset(marks, 0, MINUTES_PER_DAY * sizeof(bool));
	marks[0] = true;  /* the weekday changes */
	for (size_t i = 0; i < cs->n_schedule; i++) {
		if (!cs->schedule[i].has_hours)
			continue;
		marks[cs->schedule[i].hours.start_min % MINUTES_PER_DAY] = true;
		marks[cs->schedule[i].hours.end_min % MINUTES_PER_DAY] = true;
	}
	if (cs->mode != CONFIG_MODE_BATCH)
		return;
	for (size_t i = 0; i < cs->n_windows; i++) {
		marks[cs->windows[i].start_min % MINUTES_PER_DAY] = true;
		marks[cs->windows[i].end_min % MINUTES_PER_DAY] = true;
	}
}

/* Tries local wall time (day, minute) at each UTC offset that the zone shows then. */
static void try_wall_time(struct change_search *s, const struct tm *day, unsigned m,
		const long *offsets, int n_offsets)
{
	struct tm w = *day;
	time_t as_utc;

	w.tm_hour = (int)(m / 60);
	w.tm_min = (int)(m % 60);
	w.tm_sec = 0;
	w.tm_isdst = 0;
	as_utc = timegm(&w);
	if (as_utc == (time_t)-1)
		return;
	for (int i = 0; i < n_offsets; i++) {
		time_t t = as_utc - offsets[i];

		if (t > s->now && t <= s->now + HORIZON_SEC && utc_offset(t) == offsets[i])
			try_instant(s, t);
	}
}

static time_t next_change(const struct config_stream *cs, time_t now, time_t one_off_until,
		const struct verdict *current)
{
	struct change_search s = {
		.cs = cs, .now = now, .one_off_until = one_off_until, .current = *current,
	};
	time_t transitions[MAX_TRANSITIONS];
	long offsets[MAX_TRANSITIONS + 1];
	bool marks[MINUTES_PER_DAY];
	struct tm today;
	int n_trans, n_offsets = 0;

	/* A one-off window decides until its end; after that it plays no part. */
	if (current->one_off)
		return one_off_until - now <= HORIZON_SEC ? one_off_until : 0;
	/* Nothing in the schedule depends on the time. */
	if (cs->mode == CONFIG_MODE_BATCH ? cs->n_windows == 0 : cs->n_schedule == 0)
		return 0;

	n_trans = find_transitions(now, now + HORIZON_SEC, transitions, MAX_TRANSITIONS);
	offsets[n_offsets++] = utc_offset(now);
	for (int i = 0; i < n_trans; i++) {
		try_instant(&s, transitions[i]);
		offsets[n_offsets++] = utc_offset(transitions[i]);
	}

	mark_minutes(cs, marks);
	if (!local_tm(now, &today))
		return 0;
	for (int d = 0; d < SCAN_DAYS; d++) {
		struct tm day = today;

		day.tm_mday += d;  /* timegm() normalizes into the next months */
		for (unsigned m = 0; m < MINUTES_PER_DAY; m++)
			if (marks[m])
				try_wall_time(&s, &day, m, offsets, n_offsets);
	}
	return s.best;
}

/* ---- the text for status ---- */

/* As config prints a size: the largest unit that divides it exactly. */
static void format_rate(char *buf, size_t len, const struct config_rate *rate)
{
	static const struct { const char *name; uint64_t mult; } units[] = {
		{ "TiB", UINT64_C(1) << 40 }, { "TB", UINT64_C(1000000000000) },
		{ "GiB", UINT64_C(1) << 30 }, { "GB", UINT64_C(1000000000) },
		{ "MiB", UINT64_C(1) << 20 }, { "MB", UINT64_C(1000000) },
		{ "KiB", UINT64_C(1) << 10 }, { "kB", UINT64_C(1000) },
	};
	uint64_t v = rate->bytes_per_sec;

	if (rate->unlimited) {
		snprintf(buf, len, "unlimited");
		return;
	}
	if (v == 0) {
		snprintf(buf, len, "0 (held)");
		return;
	}
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (v % units[i].mult == 0) {
			snprintf(buf, len, "%" PRIu64 "%s/s", v / units[i].mult, units[i].name);
			return;
		}
	}
	snprintf(buf, len, "%" PRIu64 "B/s", v);
}

/* "daily", or Monday first with runs of three or more as ranges: "mon-fri", "sat,sun". */
static void format_days(char *buf, size_t len, config_days days)
{
	static const char *const names[7] = { "sun", "mon", "tue", "wed", "thu", "fri", "sat" };
	static const int order[7] = { 1, 2, 3, 4, 5, 6, 0 };
	size_t used = 0;

	buf[0] = '\0';
	if ((days & CONFIG_ALL_DAYS) == CONFIG_ALL_DAYS) {
		snprintf(buf, len, "daily");
		return;
	}
	for (int i = 0; i < 7 && used < len; i++) {
		int j = i, n;

		if (!on_day(days, order[i]))
			continue;
		while (j + 1 < 7 && on_day(days, order[j + 1]))
			j++;
		if (j - i >= 2) {
			n = snprintf(buf + used, len - used, "%s%s-%s", used ? "," : "",
					names[order[i]], names[order[j]]);
			i = j;
		} else {
			n = snprintf(buf + used, len - used, "%s%s", used ? "," : "", names[order[i]]);
		}
		if (n < 0)
			break;
		used += (size_t)n;
	}
}

static void format_window(char *buf, size_t len, const struct config_window *w)
{
	snprintf(buf, len, "%02u:%02u-%02u:%02u", w->start_min / 60u, w->start_min % 60u,
			w->end_min / 60u, w->end_min % 60u);
}

/* "rule 1: mon-fri 08:00-18:00 at 2MiB/s"; rules count from 1, as a reader of the file does. */
static void describe_rule(char *buf, size_t len, const struct config_stream *cs, int i)
{
	const struct config_schedule_rule *r = &cs->schedule[i];
	char days[48], hours[24] = "", rate[48];

	format_days(days, sizeof(days), r->days);
	if (r->has_hours) {
		hours[0] = ' ';
		format_window(hours + 1, sizeof(hours) - 1, &r->hours);
	}
	format_rate(rate, sizeof(rate), &r->rate);
	snprintf(buf, len, "rule %d: %s%s at %s", i + 1, days, hours, rate);
}

/* The rules' part: the matching rule, or why the stream is unlimited. */
static void describe_rules(char *buf, size_t len, const struct config_stream *cs, int rule)
{
	if (rule >= 0)
		describe_rule(buf, len, cs, rule);
	else if (cs->n_schedule == 0)
		snprintf(buf, len, "no schedule: unlimited");
	else
		snprintf(buf, len, "no rule matches: unlimited");
}

/* "outside batch windows (01:00-05:00, 22:00-23:00)", shortened with "..." when long. */
static void describe_outside(char *buf, size_t len, const struct config_stream *cs)
{
	size_t used;
	int n;

	n = snprintf(buf, len, "outside batch windows (");
	used = n > 0 ? (size_t)n : 0;
	for (size_t i = 0; i < cs->n_windows && used < len; i++) {
		char w[24];

		format_window(w, sizeof(w), &cs->windows[i]);
		if (used + strlen(w) + 8 > len) {
			n = snprintf(buf + used, len - used, "...");
			used += n > 0 ? (size_t)n : 0;
			break;
		}
		n = snprintf(buf + used, len - used, "%s%s", i ? ", " : "", w);
		used += n > 0 ? (size_t)n : 0;
	}
	if (used < len)
		snprintf(buf + used, len - used, ")");
}

static void describe(const struct config_stream *cs, const struct verdict *v,
		time_t one_off_until, char *buf, size_t len)
{
	char rules[112], w[24];
	struct tm tm;

	if (v->one_off) {
		local_tm(one_off_until, &tm);
		snprintf(buf, len, "sync-now until %02d:%02d:%02d", tm.tm_hour, tm.tm_min, tm.tm_sec);
		return;
	}
	if (cs->mode != CONFIG_MODE_BATCH) {
		describe_rules(buf, len, cs, v->rule);
		return;
	}
	if (cs->n_windows == 0) {
		snprintf(buf, len, "no batch windows: held");
		return;
	}
	if (v->window < 0) {
		describe_outside(buf, len, cs);
		return;
	}
	format_window(w, sizeof(w), &cs->windows[v->window]);
	describe_rules(rules, sizeof(rules), cs, v->rule);
	snprintf(buf, len, "in batch window %s, %s", w, rules);
}

void schedule_eval(const struct config_stream *cs, time_t now, time_t one_off_until,
		struct schedule_state *out)
{
	struct verdict v;

	decide(cs, now, one_off_until, &v);
	memset(out, 0, sizeof(*out));
	out->held = v.held;
	out->rate = v.rate;
	out->rule = v.rule;
	out->window = v.window;
	out->one_off = v.one_off;
	describe(cs, &v, one_off_until, out->why, sizeof(out->why));
	out->next_change = next_change(cs, now, one_off_until, &v);
}

/* ---- wire cost ---- */

#define TLS_RECORD_MAX 16384         /* TLS 1.3 plaintext per record */
#define TLS_RECORD_COST 22           /* header 5, inner content type 1, AEAD tag 16 */
#define TCP_IP_COST 52               /* IPv4 20, TCP 20, timestamps option 12 */
#define ETHERNET_COST 14             /* as interface counters count it (no FCS, preamble) */
#define WG_COST 60                   /* WireGuard data header 16 and tag 16, outer UDP 8, IPv4 20 */
#define WG_PAD 16                    /* WireGuard pads what it encrypts to a multiple of 16 */
#define PLAIN_MTU 1500
#define TUNNEL_MTU_DEFAULT 1420
#define MTU_MIN 576                  /* the smallest IPv4 datagram every host takes */

/* One inner packet of inner bytes through the tunnel, on the wire. */
static uint64_t tunnel_packet_cost(uint64_t inner, unsigned mtu)
{
	uint64_t padded = (inner + WG_PAD - 1) / WG_PAD * WG_PAD;

	if (padded > mtu)
		padded = mtu;
	return padded + WG_COST + ETHERNET_COST;
}

/* stream bytes of TCP payload in segments, on the wire (TLS records already in them). */
static uint64_t tcp_bytes_cost(uint64_t stream, unsigned mtu, bool tunnel)
{
	uint64_t mss, full, rest, cost;

	if (stream == 0)
		return 0;
	if (!tunnel) {
		mss = PLAIN_MTU - TCP_IP_COST;
		return stream + (stream + mss - 1) / mss * (TCP_IP_COST + ETHERNET_COST);
	}
	if (mtu == 0)
		mtu = TUNNEL_MTU_DEFAULT;
	if (mtu < MTU_MIN)
		mtu = MTU_MIN;
	mss = mtu - TCP_IP_COST;
	full = stream / mss;
	rest = stream % mss;
	cost = full * tunnel_packet_cost(mtu, mtu);
	if (rest > 0)
		cost += tunnel_packet_cost(rest + TCP_IP_COST, mtu);
	return cost;
}

uint64_t schedule_wire_cost(size_t frame_bytes, unsigned mtu, bool tunnel)
{
	uint64_t records;

	if (frame_bytes == 0)
		return 0;
	records = ((uint64_t)frame_bytes + TLS_RECORD_MAX - 1) / TLS_RECORD_MAX;
	return tcp_bytes_cost((uint64_t)frame_bytes + records * TLS_RECORD_COST, mtu, tunnel);
}

uint64_t schedule_frame_cost(size_t payload_bytes, const struct strait_config *cfg)
{
	return schedule_wire_cost(FRAME_HEADER_SIZE + payload_bytes, cfg->tunnel.mtu,
				  cfg->tunnel.backend != CONFIG_BACKEND_NONE);
}

uint64_t schedule_resent_cost(uint64_t tcp_bytes, const struct strait_config *cfg)
{
	return tcp_bytes_cost(tcp_bytes, cfg->tunnel.mtu, cfg->tunnel.backend != CONFIG_BACKEND_NONE);
}
