/*
 * status_text.c — `straitctl status` and `schedule` as tables (see
 * status_text.h).
 *
 * CONTRACT
 * Pure functions of the JSON tree: no clock, no I/O but the memory stream
 * the text is built in. A stream's row joins its "replication" entry (what
 * the stream reports) with its "lag" entry (the state and lag that `lag`
 * shows), matched by stream name, role and peer.
 */
#include "gateway/daemon/status_text.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json_value.h"
#include "gateway/daemon/text_table.h"

#define CELL 64
#define NOTES 512

void status_text_bytes(char *buf, size_t len, double bytes)
{
	static const char *const units[] = { "KiB", "MiB", "GiB", "TiB", "PiB" };
	double v = bytes;
	size_t u = 0;

	if (bytes < 1024) {
		snprintf(buf, len, "%.0f B", bytes < 0 ? 0 : bytes);
		return;
	}
	for (v = bytes / 1024; v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0]); u++)
		v /= 1024;
	/* one decimal while it says something; 9.96 would round to "10.0" */
	if (v < 9.95)
		snprintf(buf, len, "%.1f %s", v, units[u]);
	else
		snprintf(buf, len, "%.0f %s", v, units[u]);
}

void status_text_duration(char *buf, size_t len, double s)
{
	if (s < 0)
		s = 0;
	if (s < 9.95)
		snprintf(buf, len, "%.1f s", s);
	else if (s < 99.5)
		snprintf(buf, len, "%.0f s", s);
	else if (s < 99.5 * 60)
		snprintf(buf, len, "%.0f m", s / 60);
	else if (s < 47.95 * 3600)
		snprintf(buf, len, "%.1f h", s / 3600);
	else
		snprintf(buf, len, "%.1f d", s / 86400);
}

void status_text_rate(char *buf, size_t len, const struct json_value *sched)
{
	char b[CELL];

	if (!sched)
		snprintf(buf, len, "-");
	else if (json_get_bool(sched, "held", false))
		snprintf(buf, len, "held");
	else if (json_get_bool(sched, "unlimited", false))
		snprintf(buf, len, "unlimited");
	else if (json_has_number(sched, "rate_bytes_per_sec")) {
		status_text_bytes(b, sizeof(b), json_get_number(sched, "rate_bytes_per_sec", 0));
		snprintf(buf, len, "%s/s", b);
	} else
		snprintf(buf, len, "-");
}

/* ---- small pieces ---- */

/* A string member, or "-" when it is null or missing. */
static const char *str_or_dash(const struct json_value *obj, const char *key)
{
	const char *s = json_get_string(obj, key);

	return s ? s : "-";
}

/* The first item of an array whose member key is the string want. */
static const struct json_value *find_by(const struct json_value *arr, const char *key,
		const char *want)
{
	for (size_t i = 0; i < json_len(arr); i++) {
		const char *s = json_get_string(json_at(arr, i), key);

		if (s && want && strcmp(s, want) == 0)
			return json_at(arr, i);
	}
	return NULL;
}

/* Notes joined with "; ", cut short (never overflowing) when too many. */
struct notes {
	char buf[NOTES];
	size_t used;
};

static void note(struct notes *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void note(struct notes *n, const char *fmt, ...)
{
	va_list ap;
	int w;

	if (n->used + 3 >= sizeof(n->buf))
		return;
	if (n->used) {
		memcpy(n->buf + n->used, "; ", 3);
		n->used += 2;
	}
	va_start(ap, fmt);
	w = vsnprintf(n->buf + n->used, sizeof(n->buf) - n->used, fmt, ap);
	va_end(ap);
	if (w > 0)
		n->used += (size_t)w < sizeof(n->buf) - n->used ? (size_t)w : sizeof(n->buf) - n->used - 1;
}

static const char *notes_or(const struct notes *n, const char *none)
{
	return n->used ? n->buf : none;
}

/*
 * Closes the memory stream out writes *doc through and returns the text:
 * NULL when writing it failed or ok is false (then nothing is left to free).
 */
static char *finish(FILE *out, char **doc, bool ok)
{
	if (fclose(out) != 0 || !ok) {
		free(*doc);
		*doc = NULL;
	}
	return *doc;
}

/* ---- sites ---- */

static const struct text_table_column site_columns[] = {
	{ "SITE", 0, false, false },
	{ "ROLE", 0, false, false },
	{ "EPOCH", 0, true, false },
	{ "LINK", 0, false, false },
	{ "HANDSHAKE", 0, true, false },
	{ "HEALTH", 0, false, false },
};

/* What is wrong with this site as its daemon sees itself. */
static void self_health(const struct json_value *doc, struct notes *n)
{
	const struct json_value *cfg = json_get(doc, "config");
	const struct json_value *relay = json_get(doc, "relay");
	const struct json_value *tunnel = json_get(doc, "tunnel");

	if (json_get_string(doc, "role_error"))
		note(n, "%s", json_get_string(doc, "role_error"));
	if (json_get_string(cfg, "last_reload_error"))
		note(n, "last reload refused: %s", json_get_string(cfg, "last_reload_error"));
	if (json_get_string(relay, "listen_error"))
		note(n, "relay: %s", json_get_string(relay, "listen_error"));
	if (json_get_string(tunnel, "error"))
		note(n, "tunnel: %s", json_get_string(tunnel, "error"));
	if (json_get_string(tunnel, "pending"))
		note(n, "tunnel: %s", json_get_string(tunnel, "pending"));
}

/* A peer's link and health, from the relay's and the tunnel's view of it. */
static void peer_health(const struct json_value *rp, const struct json_value *tp,
		const char **link, struct notes *n)
{
	const char *state = json_get_string(rp, "state");
	bool up = state && strcmp(state, "up") == 0;

	*link = !rp ? "-" : up ? "up" : "down";
	if (rp && !up) {
		if (json_get_string(rp, "last_error"))
			note(n, "unreachable (%s): %s", state ? state : "-",
			     json_get_string(rp, "last_error"));
		else
			note(n, "unreachable (%s)", state ? state : "-");
	}
	if (json_get_string(tp, "problem"))
		note(n, "tunnel: %s", json_get_string(tp, "problem"));
}

static void handshake_cell(char *buf, size_t len, const struct json_value *tp)
{
	char age[32];

	if (!tp) {
		snprintf(buf, len, "-");
	} else if (!json_has_number(tp, "handshake_age_seconds")) {
		snprintf(buf, len, "never");
	} else {
		status_text_duration(age, sizeof(age), json_get_number(tp, "handshake_age_seconds", 0));
		snprintf(buf, len, "%s ago", age);
	}
}

static bool site_row(struct text_table *t, const struct json_value *doc,
		const struct json_value *s)
{
	const char *name = json_get_string(s, "name");
	const struct json_value *rp = find_by(json_get(json_get(doc, "relay"), "peers"), "site", name);
	const struct json_value *tp = find_by(json_get(json_get(doc, "tunnel"), "peers"), "site", name);
	char epoch[CELL], handshake[CELL];
	const char *link = "self";
	struct notes n = { 0 };
	const char *cells[6];

	if (json_has_number(s, "epoch"))
		snprintf(epoch, sizeof(epoch), "%.0f", json_get_number(s, "epoch", 0));
	else
		snprintf(epoch, sizeof(epoch), "-");
	if (json_get_bool(s, "self", false)) {
		self_health(doc, &n);
		snprintf(handshake, sizeof(handshake), "-");
	} else {
		peer_health(rp, tp, &link, &n);
		handshake_cell(handshake, sizeof(handshake), tp);
	}
	cells[0] = name ? name : "-";
	/* a peer's role is null until it has been heard from */
	cells[1] = json_get_string(s, "role") ? json_get_string(s, "role") : "unknown";
	cells[2] = epoch;
	cells[3] = link;
	cells[4] = handshake;
	cells[5] = notes_or(&n, "ok");
	return text_table_row(t, cells);
}

/* ---- streams ---- */

static const struct text_table_column stream_columns[] = {
	{ "STREAM", 0, false, false },
	{ "PEER", 0, false, false },
	{ "STATE", 0, false, false },
	{ "LAG", 0, true, false },
	{ "LAG_TIME", 0, true, false },
	{ "RATE", 0, false, false },
	{ "SPOOL", 0, true, false },
	{ "WARNINGS", 0, false, false },
};

/* An initial sync's progress: tables done of the plan's. */
static void sync_note(const struct json_value *is, bool sink, struct notes *n)
{
	double total = json_get_number(is, "tables_total", 0), done;

	if (sink)
		done = json_get_number(is, "tables_done", 0);
	else    /* as streamsync_source_figures() counts: tables not to copy are done */
		done = total - json_get_number(is, "tables_to_copy", 0) +
		       json_get_number(is, "tables_copied", 0);
	if (total > 0)
		note(n, "sync %.0f/%.0f tables", done, total);
	else
		note(n, "sync %s", str_or_dash(is, "state"));
}

/* The source's warnings: spool, slot and disk, tables added to the publication. */
static void source_notes(const struct json_value *r, struct notes *n)
{
	const struct json_value *w = json_get(r, "warnings");
	const struct json_value *spool = json_get(r, "spool");
	const struct json_value *pub = json_get(r, "publication");
	size_t added = json_len(json_get(pub, "added")), removed = json_len(json_get(pub, "removed"));

	if (json_get_bool(spool, "full", false))
		note(n, "spool full: reading stopped, the slot holds WAL");
	for (size_t i = 0; i < json_len(w); i++) {
		const char *level = json_get_string(json_at(w, i), "level");

		note(n, "%s%s", level && strcmp(level, "critical") == 0 ? "CRITICAL: " : "",
		     str_or_dash(json_at(w, i), "text"));
	}
	if (json_get_string(json_get(r, "slot"), "invalidation_reason"))
		note(n, "slot invalidated: %s",
		     json_get_string(json_get(r, "slot"), "invalidation_reason"));
	if (added)
		note(n, "%zu table%s joining: earlier rows not copied", added, added == 1 ? "" : "s");
	if (removed)
		note(n, "%zu table%s left the publication", removed, removed == 1 ? "" : "s");
	if (json_get_string(json_get(r, "source"), "last_error"))
		note(n, "source: %s", json_get_string(json_get(r, "source"), "last_error"));
}

static void sink_notes(const struct json_value *r, struct notes *n)
{
	const struct json_value *apply = json_get(r, "apply");

	/* halted shows as the state; the reason is the apply's error */
	if (json_get_string(apply, "last_error"))
		note(n, "apply: %s", json_get_string(apply, "last_error"));
}

/* Everything a person should see about a stream, worst first. */
static void stream_notes(const struct json_value *r, const char *state, struct notes *n)
{
	const struct json_value *is = json_get(r, "initial_sync");
	bool sink = json_get_string(r, "role") && strcmp(json_get_string(r, "role"), "sink") == 0;

	if (json_get_string(r, "last_error"))
		note(n, "error: %s", json_get_string(r, "last_error"));
	if (sink)
		sink_notes(r, n);
	else
		source_notes(r, n);
	if (is && strcmp(state, "syncing") == 0)
		sync_note(is, sink, n);
	if (json_get_string(is, "last_error"))
		note(n, "sync: %s", json_get_string(is, "last_error"));
	if (json_get_string(is, "load_error"))
		note(n, "load: %s", json_get_string(is, "load_error"));
}

/* The state `lag` shows, named more precisely where the report says more. */
static const char *stream_state(const struct json_value *r, const struct json_value *lag)
{
	const char *sync = json_get_string(json_get(r, "initial_sync"), "state");

	if (json_get_bool(r, "halted", false))
		return "halted";
	if (json_get_string(r, "relayed_by"))
		return "relayed";
	if (sync && strcmp(sync, "paused") == 0)
		return "paused";
	return str_or_dash(lag, "state");
}

/* The rate in force and what set it: (rule N) as the file counts, or sync-now. */
static void rate_cell(char *buf, size_t len, const struct json_value *sched)
{
	char rate[CELL];
	double rule = json_get_number(sched, "rule", -1);

	status_text_rate(rate, sizeof(rate), sched);
	if (json_get_string(sched, "sync_now_until") || json_get_bool(sched, "sync_now_until_drained", false))
		snprintf(buf, len, "%s (sync-now)", rate);
	else if (rule >= 0)
		snprintf(buf, len, "%s (rule %.0f)", rate, rule + 1);
	else
		snprintf(buf, len, "%s", rate);
}

static bool stream_row(struct text_table *t, const struct json_value *doc,
		const struct json_value *r)
{
	const char *name = json_get_string(r, "stream"), *role = json_get_string(r, "role"),
		   *to = json_get_string(r, "peer");
	bool sink = role && strcmp(role, "sink") == 0;
	const struct json_value *lag = NULL, *lags = json_get(doc, "lag");
	char peer[CELL + 4], bytes[CELL], secs[CELL], rate[CELL * 2], spool[CELL];
	struct notes n = { 0 };
	const char *state;

	for (size_t i = 0; !lag && i < json_len(lags); i++) {
		const struct json_value *l = json_at(lags, i);

		/* a stream sent to several sites has a lag per destination */
		if (name && role && to && json_get_string(l, "stream") && json_get_string(l, "role") &&
		    json_get_string(l, "peer") && strcmp(json_get_string(l, "stream"), name) == 0 &&
		    strcmp(json_get_string(l, "role"), role) == 0 &&
		    strcmp(json_get_string(l, "peer"), to) == 0)
			lag = l;
	}
	state = stream_state(r, lag);
	snprintf(peer, sizeof(peer), "%s %s", sink ? "<-" : "->", str_or_dash(r, "peer"));
	if (lag) {
		status_text_bytes(bytes, sizeof(bytes), json_get_number(lag, "lag_bytes", 0));
		status_text_duration(secs, sizeof(secs), json_get_number(lag, "lag_seconds", 0));
	} else {
		snprintf(bytes, sizeof(bytes), "-");
		snprintf(secs, sizeof(secs), "-");
	}
	snprintf(rate, sizeof(rate), "-");
	snprintf(spool, sizeof(spool), "-");
	if (!sink) {
		rate_cell(rate, sizeof(rate), json_get(r, "schedule"));
		status_text_bytes(spool, sizeof(spool),
				  json_get_number(json_get(r, "spool"), "bytes", 0));
	}
	stream_notes(r, state, &n);
	return text_table_row(t, (const char *const[]){ name ? name : "-", peer, state, bytes, secs,
							rate, spool, notes_or(&n, "-") });
}

/* Writes the table, or says there is nothing; false when out of memory. */
static bool print_table(FILE *out, const struct text_table_column *cols, size_t n_cols,
		const struct json_value *arr, const char *none,
		bool (*row)(struct text_table *, const struct json_value *, const struct json_value *),
		const struct json_value *doc)
{
	struct text_table *t;
	bool ok;

	if (json_len(arr) == 0) {
		fprintf(out, "%s\n", none);
		return true;
	}
	t = text_table_new(cols, n_cols);
	ok = t != NULL;
	for (size_t i = 0; ok && i < json_len(arr); i++)
		ok = row(t, doc, json_at(arr, i));
	if (ok)
		text_table_print(t, out);
	text_table_free(t);
	return ok;
}

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

/* The witness of automatic failover: etcd's members, who holds the lease, and why not. */
static void witness_lines(FILE *out, const struct json_value *w)
{
	const struct json_value *members = json_get(w, "members");
	const char *primary = json_get_string(w, "primary");
	double age = json_get_number(w, "lease_age_s", -1);

	if (!w || strcmp(str_or_dash(w, "mode"), "automatic") != 0)
		return;
	fputs("\nwitness (automatic failover): etcd", out);
	for (size_t i = 0; i < json_len(members); i++)
		fprintf(out, "%s%s%s", i ? ", " : " members ", str_or_dash(json_at(members, i), "name"),
			json_get_bool(json_at(members, i), "leader", false) ? " (leader)" : "");
	if (json_get_bool(w, "reachable", false))
		fputs("; reachable\n", out);
	else
		fprintf(out, "; not reachable: %s\n", str_or_dash(w, "error"));
	if (primary && age >= 0)
		fprintf(out, "  primary %s at epoch %.0f holds the lease: renewed %.1f s ago (ttl %.0f s)\n",
			primary, json_get_number(w, "primary_epoch", 0), age,
			json_get_number(w, "lease_ttl_s", 0));
	else if (primary)
		fprintf(out, "  primary %s at epoch %.0f holds the lease (read %.1f s ago)\n", primary,
			json_get_number(w, "primary_epoch", 0),
			json_get_number(w, "primary_seen_s_ago", 0));
	else
		fputs("  no site holds the lease\n", out);
	if (json_get_bool(w, "paused", false))
		fputs("  paused (straitctl resume-auto ends it)\n", out);
	if (json_get_bool(w, "self_fenced", false))
		fputs("  this site fenced its database: it could not renew its lease\n", out);
	if (json_get_bool(w, "blocked", false))
		fprintf(out, "  this site will not promote itself: %s\n", str_or_dash(w, "blocked_why"));
	else if (json_get_string(w, "holding") && !primary)
		fprintf(out, "  this site does not run for primary now: %s\n",
			json_get_string(w, "holding"));
}

char *status_text_status(const struct json_value *doc)
{
	char *text = NULL, up[CELL];
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);
	bool ok;

	if (!out)
		return NULL;
	status_text_duration(up, sizeof(up), json_get_number(doc, "uptime_seconds", 0));
	fprintf(out, "site %s, role %s, epoch %.0f (cluster %s, straitd %s, up %s)\n\n",
		str_or_dash(doc, "site"), str_or_dash(doc, "role"), json_get_number(doc, "epoch", 0),
		str_or_dash(doc, "cluster"), str_or_dash(doc, "version"), up);
	ok = print_table(out, site_columns, N_OF(site_columns), json_get(doc, "sites"),
			 "no sites", site_row, doc);
	fputc('\n', out);
	ok = ok && print_table(out, stream_columns, N_OF(stream_columns),
			       json_get(doc, "replication"), "no streams at this site", stream_row, doc);
	witness_lines(out, json_get(doc, "witness"));
	return finish(out, &text, ok);
}

/* ---- schedule ---- */

static const struct text_table_column schedule_columns[] = {
	{ "STREAM", 0, false, false },
	{ "TO", 0, false, false },
	{ "MODE", 0, false, false },
	{ "RATE", 0, false, false },
	{ "NEXT_CHANGE", 0, false, false },
	{ "RULE", 0, false, false },
};

static bool schedule_row(struct text_table *t, const struct json_value *doc,
		const struct json_value *s)
{
	const struct json_value *sched = json_get(s, "schedule");
	char rate[CELL];
	const char *next = json_get_string(sched, "sync_now_until");

	(void)doc;
	status_text_rate(rate, sizeof(rate), sched);
	if (!next)
		next = json_get_bool(sched, "sync_now_until_drained", false) ? "when drained" :
		       str_or_dash(sched, "next_change");
	return text_table_row(t, (const char *const[]){ str_or_dash(s, "stream"), str_or_dash(s, "to"),
							str_or_dash(sched, "mode"), rate, next,
							str_or_dash(sched, "why") });
}

char *status_text_schedule(const struct json_value *doc)
{
	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);
	bool ok;

	if (!out)
		return NULL;
	fprintf(out, "site %s\n", str_or_dash(doc, "site"));
	ok = print_table(out, schedule_columns, N_OF(schedule_columns), json_get(doc, "streams"),
			 "no streams sent from this site", schedule_row, doc);
	return finish(out, &text, ok);
}

/* ---- status --cluster ---- */

static const struct text_table_column cluster_columns[] = {
	{ "SITE", 0, false, false },
	{ "ROLE", 0, false, false },
	{ "EPOCH", 0, true, false },
	{ "STREAM", 0, false, false },
	{ "PEER", 0, false, false },
	{ "STATE", 0, false, false },
	{ "LAG", 0, true, false },
	{ "LAG_TIME", 0, true, false },
	{ "APPLIED_LSN", 0, false, false },
	{ "NOTES", 0, false, false },
};

/* One site's rows: its role and epoch on the first, one row per stream it sends or receives. */
static bool cluster_site_rows(struct text_table *t, const struct json_value *site,
		const char *asked_at)
{
	const struct json_value *st = json_get(site, "status"), *lags;
	const char *name = str_or_dash(site, "site");
	char epoch[CELL], note[NOTES];
	bool ok = true;

	if (st && st->type != JSON_OBJECT)
		st = NULL;
	lags = json_get(st, "lag");
	snprintf(epoch, sizeof(epoch), "-");
	if (json_get(st, "epoch"))
		snprintf(epoch, sizeof(epoch), "%.0f", json_get_number(st, "epoch", 0));
	if (!st)
		snprintf(note, sizeof(note), "unreachable: %s", str_or_dash(site, "error"));
	else
		snprintf(note, sizeof(note), "%s", asked_at && strcmp(asked_at, name) == 0 ? "this site" : "-");
	if (json_len(lags) == 0)
		return text_table_row(t, (const char *const[]){ name, st ? str_or_dash(st, "role") : "-",
						epoch, "-", "-", "-", "-", "-", "-", note });
	for (size_t i = 0; ok && i < json_len(lags); i++) {
		const struct json_value *l = json_at(lags, i);
		const char *role = json_get_string(l, "role");
		char peer[CELL + 4], bytes[CELL], secs[CELL];

		snprintf(peer, sizeof(peer), "%s %s", role && strcmp(role, "sink") == 0 ? "<-" : "->",
			 str_or_dash(l, "peer"));
		status_text_bytes(bytes, sizeof(bytes), json_get_number(l, "lag_bytes", 0));
		status_text_duration(secs, sizeof(secs), json_get_number(l, "lag_seconds", 0));
		ok = text_table_row(t, (const char *const[]){ i ? "" : name,
						i ? "" : str_or_dash(st, "role"), i ? "" : epoch,
						str_or_dash(l, "stream"), peer, str_or_dash(l, "state"),
						bytes, secs, str_or_dash(l, "applied_lsn"),
						i ? "" : note });
	}
	return ok;
}

char *status_text_cluster(const struct json_value *doc)
{
	const struct json_value *sites = json_get(doc, "sites");
	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);
	struct text_table *t;
	bool ok;

	if (!out)
		return NULL;
	fprintf(out, "cluster %s, as seen from site %s\n\n", str_or_dash(doc, "cluster"),
		str_or_dash(doc, "asked_at"));
	t = text_table_new(cluster_columns, N_OF(cluster_columns));
	ok = t != NULL;
	for (size_t i = 0; ok && i < json_len(sites); i++)
		ok = cluster_site_rows(t, json_at(sites, i), json_get_string(doc, "asked_at"));
	if (ok)
		text_table_print(t, out);
	text_table_free(t);
	return finish(out, &text, ok);
}
