/*
 * commands.c — the control commands straitd answers, and their table.
 *
 * CONTRACT
 * daemon_commands is the table handed to the control server; each handler
 * gets the struct daemon as arg, checks its arguments (a usage line when they
 * are wrong) and answers with exactly one control_reply(). status and lag
 * render what report.c gathers, as text by default or one JSON document per
 * line with --json; switchover, failover, rejoin and verify are passed to the
 * failover and the verify service, which answer them (at once or later).
 */
#include "gateway/daemon/daemon_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/json.h"
#include "common/log.h"
#include "common/lsn.h"
#include "config/config.h"
#include "gateway/cluster/failover.h"
#include "gateway/cluster/role.h"
#include "gateway/daemon/control.h"
#include "gateway/daemon/text_table.h"
#include "gateway/stream/clock.h"
#include "gateway/stream/stream.h"
#include "gateway/verify/verify_service.h"
#include "gateway/witness/witness.h"
#include "replicator/pgquery.h"
#include "replicator/syncstate.h"

static void daemon_cmd_status(struct control_request *req, int argc, char **argv, void *arg)
{
	struct daemon *d = arg;
	struct json_out j;
	bool as_json = false, cluster = false;
	char *doc;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0) {
			as_json = true;
		} else if (strcmp(argv[i], "--cluster") == 0 && !control_request_remote(req)) {
			cluster = true;
		} else {
			control_reply(req, false, "usage: status [--json | --cluster]\n");
			return;
		}
	}
	if (cluster) {
		daemon_status_cluster(d, req);   /* JSON: straitctl makes the table */
		return;
	}
	if (as_json)
		json_init(&j);
	else
		json_init_text(&j);
	daemon_status_json(d, &j);
	/* one document per line keeps the reply easy to stream */
	doc = json_finish_line(&j, NULL);
	if (!doc) {
		control_reply(req, false, "could not render status\n");
		return;
	}
	control_reply(req, true, doc);
	free(doc);
}

static const struct text_table_column daemon_lag_columns[] = {
	{ "STREAM", 6, false, false },
	{ "ROLE", 6, false, true },
	{ "PEER", 4, false, false },
	{ "STATE", 5, false, false },
	{ "LAG_BYTES", 15, true, true },
	{ "LAG_SECONDS", 11, true, true },
	{ "APPLIED_LSN", 0, false, false },
};

/* The lag as text: the site's line, then a table of the streams; NULL when out of memory. */
static char *daemon_lag_text(const struct daemon *d, const struct daemon_rows *rows)
{
	struct text_table *t = text_table_new(daemon_lag_columns,
			sizeof(daemon_lag_columns) / sizeof(daemon_lag_columns[0]));
	char *doc = NULL;
	size_t len = 0;
	FILE *out = NULL;
	bool ok = t != NULL;

	for (size_t i = 0; ok && i < rows->n; i++) {
		const struct stream_report *r = &rows->v[i].r;
		char bytes[24], secs[400], lsn[32];
		const char *cells[] = { r->name, r->sink ? "sink" : "source", r->peer, r->state,
					bytes, secs, lsn };

		snprintf(bytes, sizeof(bytes), "%" PRIu64, r->lag_bytes);
		snprintf(secs, sizeof(secs), "%.1f", r->lag_seconds);
		lsn_format(lsn, r->applied_lsn);
		ok = text_table_row(t, cells);
	}
	if (ok)
		out = open_memstream(&doc, &len);
	if (out) {
		fprintf(out, "site %s, role %s, epoch %" PRIu64 "\n", d->site_name,
			daemon_site_role(d), role_epoch(d->role));
		if (rows->n == 0)
			fprintf(out, "no streams at this site\n");
		else
			text_table_print(t, out);
		if (fclose(out) != 0) {
			free(doc);
			doc = NULL;
		}
	}
	text_table_free(t);
	return doc;
}

/* lag [--json]: each stream's lag, as a table or one JSON document. */
static void daemon_cmd_lag(struct control_request *req, int argc, char **argv, void *arg)
{
	struct daemon *d = arg;
	struct daemon_rows rows;
	struct json_out j;
	char *doc;
	bool as_json = false;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0) {
			as_json = true;
		} else {
			control_reply(req, false, "usage: lag [--json]\n");
			return;
		}
	}
	if (!daemon_stream_rows(d, &rows)) {
		control_reply(req, false, "out of memory\n");
		return;
	}
	if (as_json) {
		json_init(&j);
		json_object_begin(&j, NULL);
		json_string(&j, "site", d->site_name);
		json_string(&j, "role", daemon_site_role(d));
		json_uint(&j, "epoch", role_epoch(d->role));
		json_int(&j, "time", (int64_t)time(NULL));
		daemon_lag_json(&rows, &j);
		json_object_end(&j);
		doc = json_finish_line(&j, NULL);
	} else {
		doc = daemon_lag_text(d, &rows);
	}
	daemon_rows_free(&rows);
	if (!doc) {
		control_reply(req, false, "out of memory\n");
		return;
	}
	control_reply(req, true, doc);
	free(doc);
}

static void daemon_cmd_ping(struct control_request *req, int argc, char **argv, void *arg)
{
	(void)argc;
	(void)argv;
	(void)arg;
	control_reply(req, true, "pong\n");
}

/* sync-now STREAM [SECONDS]: a one-off window (0 or none: until drained). */
static void daemon_cmd_sync_now(struct control_request *req, int argc, char **argv, void *arg)
{
	struct daemon *d = arg;
	unsigned long long secs = 0;
	char msg[512], *end;
	bool ok;

	if (argc < 2 || argc > 3) {
		control_reply(req, false, "usage: sync-now STREAM [SECONDS]\n");
		return;
	}
	if (argc == 3) {
		errno = 0;
		secs = strtoull(argv[2], &end, 10);
		if (errno || end == argv[2] || *end || secs > 366ull * 24 * 3600) {
			control_reply(req, false, "sync-now: SECONDS must be a whole number of seconds\n");
			return;
		}
	}
	if (!d->streams) {
		control_reply(req, false, "no streams are running\n");
		return;
	}
	ok = streams_sync_now(d->streams, argv[1], secs, msg, sizeof(msg));
	control_reply(req, ok, msg);
}

/* schedule [--json]: each stream this site sends, its rule, rate and next change. */
static void daemon_cmd_schedule(struct control_request *req, int argc, char **argv, void *arg)
{
	struct daemon *d = arg;
	struct json_out j;
	char *doc;

	if (argc > 2 || (argc == 2 && strcmp(argv[1], "--json") != 0)) {
		control_reply(req, false, "usage: schedule [--json]\n");
		return;
	}
	if (argc == 2)
		json_init(&j);
	else
		json_init_text(&j);
	json_object_begin(&j, NULL);
	json_string(&j, "site", d->site_name);
	if (d->streams)
		streams_schedule_json(d->streams, &j);
	json_object_end(&j);
	doc = json_finish_line(&j, NULL);
	control_reply(req, doc != NULL, doc ? doc : "out of memory\n");
	free(doc);
}

#ifdef STRAIT_TEST_HOOKS
/* test-clock UNIX_SECONDS: test builds only — the scheduler's wall clock jumps there. */
static void daemon_cmd_test_clock(struct control_request *req, int argc, char **argv, void *arg)
{
	long long t;
	char *end;

	(void)arg;
	if (argc != 2 || (t = strtoll(argv[1], &end, 10), *end != '\0')) {
		control_reply(req, false, "usage: test-clock UNIX_SECONDS\n");
		return;
	}
	clock_set_test((int64_t)t * 1000000);
	log_info("test clock set to %lld", t);
	control_reply(req, true, "clock set\n");
}
#endif


/* switchover --to SITE, failover --to SITE [--force] [--dry-run], rejoin SITE */
static void daemon_cmd_switchover(struct control_request *req, int argc, char **argv, void *arg)
{
	struct daemon *d = arg;

	if (!d->failover) {
		control_reply(req, false, "a single site has nothing to switch over to\n");
		return;
	}
	if (daemon_forward_switchover(d, req, argc, argv))
		return;
	failover_cmd_switchover(d->failover, req, argc, argv);
}

static void daemon_cmd_failover(struct control_request *req, int argc, char **argv, void *arg)
{
	struct daemon *d = arg;

	if (!d->failover) {
		control_reply(req, false, "a single site has nothing to fail over to\n");
		return;
	}
	if (daemon_dry_run_positions(d, req, argc, argv))
		return;
	failover_cmd_failover(d->failover, req, argc, argv);
}

static void daemon_cmd_verify(struct control_request *req, int argc, char **argv, void *arg)
{
	struct daemon *d = arg;

	if (!d->verify) {
		control_reply(req, false, "verify: this site has no peers\n");
		return;
	}
	verify_service_cmd(d->verify, req, argc, argv);
}

static void daemon_cmd_rejoin(struct control_request *req, int argc, char **argv, void *arg)
{
	struct daemon *d = arg;

	if (!d->failover) {
		control_reply(req, false, "a single site has nothing to rejoin\n");
		return;
	}
	failover_cmd_rejoin(d->failover, req, argc, argv);
}

static void daemon_forget_done(void *arg, const PGresult *res, const char *err)
{
	struct daemon *d = arg;
	char msg[768];
	bool ok = res && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;

	if (ok)
		snprintf(msg, sizeof(msg), "forgot the stream: its initial sync record is deleted and %s "
			 "replication origins dropped\n", PQgetvalue(res, 0, 0));
	else
		snprintf(msg, sizeof(msg), "could not forget the stream: %s\n",
			 err ? err : "no answer from the database");
	log_info("forget-stream: %s", msg);
	if (d->forget_req)
		control_reply(d->forget_req, ok, msg);
	d->forget_req = NULL;
}

void daemon_forget_free(struct daemon *d)
{
	if (d->forget_req)
		control_reply(d->forget_req, false, "straitd is stopping\n");
	d->forget_req = NULL;
	pgquery_free(d->forget_q);
	d->forget_q = NULL;
}

/*
 * forget-stream STREAM: on the site a dropped stream went to, removes what
 * strait kept for it in this site's database (syncstate.h). A stream still
 * in the config is refused: it would make them again.
 */
static void daemon_cmd_forget_stream(struct control_request *req, int argc, char **argv,
		void *arg)
{
	struct daemon *d = arg;
	char *sql;

	if (argc != 2) {
		control_reply(req, false, "usage: forget-stream STREAM\n");
		return;
	}
	for (size_t i = 0; i < d->cfg->n_streams; i++) {
		if (strcmp(d->cfg->streams[i].name, argv[1]) == 0) {
			control_reply(req, false, "forget-stream: the stream is in the config: remove it "
				      "and reload first\n");
			return;
		}
	}
	if (d->forget_req || (d->forget_q && pgquery_busy(d->forget_q))) {
		control_reply(req, false, "forget-stream: another one is running\n");
		return;
	}
	if (!d->forget_q)
		d->forget_q = pgquery_new(d->base, d->cfg->sites[d->self].database, "forget-stream");
	sql = syncstate_forget_sql(argv[1]);
	if (!d->forget_q || !sql || !pgquery_run(d->forget_q, sql, daemon_forget_done, d)) {
		free(sql);
		control_reply(req, false, "forget-stream: out of memory\n");
		return;
	}
	free(sql);
	d->forget_req = req;
}

static void daemon_cmd_reload(struct control_request *req, int argc, char **argv, void *arg)
{
	char *reason, *body;

	(void)argc;
	(void)argv;
	reason = daemon_reload(arg);
	if (!reason) {
		control_reply(req, true, "configuration reloaded\n");
		return;
	}
	if (asprintf(&body, "reload refused: %s\n", reason) < 0)
		body = NULL;
	control_reply(req, false, body ? body : "reload refused\n");
	free(body);
	free(reason);
}

/* pause-auto, resume-auto: automatic failover held for maintenance, for the whole cluster. */
static void daemon_cmd_pause_auto(struct control_request *req, int argc, char **argv, void *arg)
{
	struct daemon *d = arg;
	bool pause = strcmp(argv[0], "pause-auto") == 0;

	if (argc != 1) {
		control_reply(req, false, pause ? "usage: pause-auto\n" : "usage: resume-auto\n");
		return;
	}
	if (!d->witness) {
		control_reply(req, false, "automatic failover is off here (failover.mode manual, or "
			      "no failover.etcd): there is nothing to pause\n");
		return;
	}
	witness_cmd_pause(d->witness, req, pause);
}

const struct control_command daemon_witness_commands[] = {
	{ "status", daemon_cmd_status },
	{ "ping", daemon_cmd_ping },
	{ "reload", daemon_cmd_reload },
	{ "pause-auto", daemon_cmd_pause_auto },
	{ "resume-auto", daemon_cmd_pause_auto },
	{ NULL, NULL },
};

const struct control_command daemon_commands[] = {
	{ "pause-auto", daemon_cmd_pause_auto },
	{ "resume-auto", daemon_cmd_pause_auto },
	{ "status", daemon_cmd_status },
	{ "lag", daemon_cmd_lag },
	{ "ping", daemon_cmd_ping },
	{ "reload", daemon_cmd_reload },
	{ "sync-now", daemon_cmd_sync_now },
	{ "schedule", daemon_cmd_schedule },
	{ "switchover", daemon_cmd_switchover },
	{ "failover", daemon_cmd_failover },
	{ "rejoin", daemon_cmd_rejoin },
	{ "forget-stream", daemon_cmd_forget_stream },
	{ "verify", daemon_cmd_verify },
#ifdef STRAIT_TEST_HOOKS
	{ "test-clock", daemon_cmd_test_clock },
#endif
	{ NULL, NULL },
};
