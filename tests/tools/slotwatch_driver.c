/*
 * slotwatch_driver.c — polls one replication slot with replicator/slotwatch.h
 * and judges each sample with gateway/stream/diskwarn.h, for the integration tests.
 *
 *   slotwatch_driver [options] CONNINFO SLOT
 *     --interval MS        poll interval (default 200)
 *     --samples N          exit 0 after N samples (default 1; 0: run until SIGTERM)
 *     --max-failures N     exit 1 after N failed polls (default 0: never)
 *     --spool-dir DIR      also judge a spool in DIR of --spool-bytes,
 *     --spool-bytes N        capped at --spool-max (bytes)
 *     --spool-max N
 *
 * Output on stdout, one JSON object per line and poll: a sample with its
 * figures (absent when unknown), "warnings" (level, kind, text) and "worst";
 * or {"error": "..."} for a failed poll. Exit status: 0 done (or SIGTERM),
 * 1 too many failures or a spool directory that cannot be measured, 2 usage.
 */
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "common/json.h"
#include "common/log.h"
#include "gateway/stream/diskwarn.h"
#include "replicator/slotwatch.h"

struct driver {
	struct event_base *base;
	const char *slot;
	unsigned long samples_wanted;
	unsigned long failures_allowed;
	unsigned long samples;
	unsigned long failures;
	const char *spool_dir;
	uint64_t spool_bytes;
	uint64_t spool_max;
	int exit_code;
};

static void print_line(struct json_out *j)
{
	char *doc = json_finish(j, NULL);

	if (!doc) {
		fprintf(stderr, "slotwatch_driver: out of memory\n");
		exit(1);
	}
	printf("%s\n", doc);
	fflush(stdout);
	free(doc);
}

static void put_warnings(struct json_out *j, const struct diskwarn_list *l)
{
	json_array_begin(j, "warnings");
	for (size_t i = 0; i < l->n; i++) {
		json_object_begin(j, NULL);
		json_string(j, "level", diskwarn_level_name(l->w[i].level));
		json_string(j, "kind", l->w[i].kind);
		json_string(j, "text", l->w[i].text);
		json_object_end(j);
	}
	json_array_end(j);
	json_string(j, "worst", diskwarn_level_name(diskwarn_worst(l)));
}

static void put_sample(struct json_out *j, const struct slot_sample *s)
{
	json_int(j, "taken_us", s->taken_us);
	json_int(j, "server_version", s->server_version);
	json_bool(j, "in_recovery", s->in_recovery);
	if (s->wal_lsn_known)
		json_lsn(j, "wal_lsn", s->wal_lsn);
	json_bool(j, "slot_found", s->slot_found);
	if (s->restart_known)
		json_lsn(j, "restart_lsn", s->restart_lsn);
	if (s->confirmed_known)
		json_lsn(j, "confirmed_flush_lsn", s->confirmed_flush_lsn);
	if (s->retained_known)
		json_uint(j, "retained_bytes", s->retained_bytes);
	if (s->wal_status[0])
		json_string(j, "wal_status", s->wal_status);
	if (s->safe_wal_size_known)
		json_int(j, "safe_wal_size", s->safe_wal_size);
	if (s->max_keep_known)
		json_int(j, "max_slot_wal_keep_size", s->max_slot_wal_keep_size);
	json_bool(j, "server_local", s->server_local);
	json_bool(j, "wal_disk_known", s->wal_disk_known);
	if (s->wal_disk_known) {
		json_string(j, "wal_disk_path", s->wal_disk_path);
		json_uint(j, "wal_disk_free", s->wal_disk_free);
		json_uint(j, "wal_disk_size", s->wal_disk_size);
	}
}

static void on_poll(void *arg, const struct slot_sample *s, const char *err)
{
	struct driver *d = arg;
	struct diskwarn_list warnings = { 0 };
	struct json_out j;
	char spool_err[512];

	json_init(&j);
	json_object_begin(&j, NULL);
	if (!s) {
		json_string(&j, "error", err);
		json_object_end(&j);
		print_line(&j);
		if (++d->failures == d->failures_allowed) {
			d->exit_code = 1;
			event_base_loopbreak(d->base);
		}
		return;
	}
	json_uint(&j, "sample", ++d->samples);
	put_sample(&j, s);
	diskwarn_slot(s, d->slot, &warnings);
	if (d->spool_dir &&
	    !diskwarn_spool(d->spool_dir, d->spool_bytes, d->spool_max, &warnings, spool_err,
			    sizeof(spool_err))) {
		json_string(&j, "spool_error", spool_err);
		d->exit_code = 1;
		event_base_loopbreak(d->base);
	}
	put_warnings(&j, &warnings);
	json_object_end(&j);
	print_line(&j);
	if (d->samples == d->samples_wanted)
		event_base_loopbreak(d->base);
}

static void on_signal(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	event_base_loopbreak(arg);
}

static void usage(FILE *out)
{
	fprintf(out, "usage: slotwatch_driver [--interval MS] [--samples N] [--max-failures N]\n"
		     "       [--spool-dir DIR --spool-bytes N --spool-max N] CONNINFO SLOT\n");
}

static bool parse_number(const char *text, uint64_t *out)
{
	char *end;

	if (!text || !*text || *text == '-')
		return false;
	*out = strtoull(text, &end, 10);
	return *end == '\0';
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
		{ "interval", required_argument, NULL, 'i' },
		{ "samples", required_argument, NULL, 'n' },
		{ "max-failures", required_argument, NULL, 'f' },
		{ "spool-dir", required_argument, NULL, 'd' },
		{ "spool-bytes", required_argument, NULL, 'b' },
		{ "spool-max", required_argument, NULL, 'm' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct driver d = { .samples_wanted = 1 };
	uint64_t interval = 200, v;
	struct slotwatch *w;
	struct event *sigterm, *sigint;
	int c;

	log_init("slotwatch_driver");
	while ((c = getopt_long(argc, argv, "h", options, NULL)) != -1) {
		switch (c) {
		case 'h':
			usage(stdout);
			return 0;
		case 'd':
			d.spool_dir = optarg;
			continue;
		default:
			break;
		}
		if (c == '?' || !parse_number(optarg, &v)) {
			usage(stderr);
			return 2;
		}
		if (c == 'i')
			interval = v;
		else if (c == 'n')
			d.samples_wanted = v;
		else if (c == 'f')
			d.failures_allowed = v;
		else if (c == 'b')
			d.spool_bytes = v;
		else if (c == 'm')
			d.spool_max = v;
	}
	if (argc - optind != 2 || interval == 0 || interval > 3600000) {
		usage(stderr);
		return 2;
	}
	d.slot = argv[optind + 1];
	d.base = event_base_new();
	if (!d.base)
		return 1;
	sigterm = evsignal_new(d.base, SIGTERM, on_signal, d.base);
	sigint = evsignal_new(d.base, SIGINT, on_signal, d.base);
	if (!sigterm || !sigint || event_add(sigterm, NULL) < 0 || event_add(sigint, NULL) < 0)
		return 1;
	w = slotwatch_new(d.base, argv[optind], d.slot, (unsigned)interval, "slotwatch_driver",
			  on_poll, &d);
	if (!w) {
		fprintf(stderr, "slotwatch_driver: could not start polling\n");
		return 1;
	}
	event_base_dispatch(d.base);
	slotwatch_free(w);
	event_free(sigterm);
	event_free(sigint);
	event_base_free(d.base);
	return d.exit_code;
}
