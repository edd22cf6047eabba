/*
 * apply_driver.c — runs the sink's apply engine (replicator/apply.h) against a
 * real target database, for the integration tests.
 *
 * Input: a file (or stdin) holding pgoutput messages as batch records, each a
 * u32 big-endian length and one message — the batch body format. The driver
 * cuts it into batches of --txns-per-batch transactions and submits them once
 * the engine is ready.
 *
 * Output, one line each, on stdout:
 *   ready <LSN>                 the origin's resume position
 *   committed <LSN> <time_us>   a source commit is committed on the target
 *   stopped <reason>            the stream stopped
 *   done <commits> <seconds>     everything applied (commits reported by this run)
 *   status <json>               apply_status_json(), last
 * Exit status: 0 when everything was applied, 1 when the stream stopped (or
 * on a usage error: 2), 3 when --exit-after cut it short.
 *
 * --exit-after N ends the process with _exit() right after the Nth commit is
 * reported, without any cleanup — a crash at a commit boundary. --resume-file
 * PATH makes a stopped stream wait for PATH to exist, then apply_resume().
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/json.h"
#include "common/log.h"
#include "common/lsn.h"
#include "replicator/apply.h"

struct driver {
	struct event_base *base;
	struct apply *apply;
	uint8_t *input;
	size_t input_len;
	size_t txns_per_batch;
	bool submitted;
	unsigned long exit_after;
	unsigned long commits;
	const char *resume_file;
	struct event *resume_timer;
	int exit_code;
	struct timespec started;
	bool timing;
	bool failed;                 /* a submit was refused: exit 1 whatever comes */
	uint64_t input_end;          /* the last Commit's end LSN in the input */
};

static double driver_elapsed(const struct driver *d)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - d->started.tv_sec) +
		(double)(now.tv_nsec - d->started.tv_nsec) / 1e9;
}

static void driver_print_lsn(const char *what, uint64_t lsn)
{
	printf("%s " LSN_FMT, what, LSN_ARGS(lsn));
}

static uint32_t driver_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The end LSN of a Commit message (pgoutput: 'C', flags, commit LSN, end LSN, time). */
static uint64_t driver_commit_end(const uint8_t *msg, uint32_t len)
{
	uint64_t v = 0;

	if (len < 18)
		return 0;
	for (int i = 10; i < 18; i++)
		v = v << 8 | msg[i];
	return v;
}

/*
 * Submits the input in batches of whole transactions, as a source sends
 * them after the sink asked to resume after `after` (0: everything): the
 * transactions ending at or before it are left out, but the Relation
 * messages in them go first (a source describes its relations again on a
 * new start). Broken framing is not checked here: the rest of the input
 * goes in one batch for the engine to refuse.
 */
static bool driver_submit(struct driver *d, uint64_t after)
{
	size_t off = 0, start = 0, txns = 0, begin = 0;
	bool skipping = after > 0;

	while (off < d->input_len) {
		uint32_t n;
		const uint8_t *m = d->input + off + 4;

		if (d->input_len - off < 4 || (n = driver_be32(d->input + off)) > d->input_len - off - 4) {
			off = d->input_len;
			break;
		}
		if (skipping) {
			if (n > 0 && m[0] == 'B')
				begin = off;
			if (n > 0 && m[0] == 'R' && !apply_submit(d->apply, d->input + off, 4 + (size_t)n))
				return false;
			if (n > 0 && m[0] == 'C' && driver_commit_end(m, n) > after) {
				skipping = false;
				off = start = begin;
				continue;
			}
			off += 4 + (size_t)n;
			start = off;
			continue;
		}
		if (n > 0 && m[0] == 'C')
			txns++;
		off += 4 + (size_t)n;
		if (txns == d->txns_per_batch) {
			if (!apply_submit(d->apply, d->input + start, off - start))
				return false;
			start = off;
			txns = 0;
		}
	}
	if (off > start && !apply_submit(d->apply, d->input + start, off - start))
		return false;
	return true;
}

static void driver_print_status(struct driver *d)
{
	struct json_out j;
	char *doc;

	json_init(&j);
	apply_status_json(d->apply, &j, NULL);
	doc = json_finish(&j, NULL);
	if (doc) {
		printf("status %s\n", doc);
		free(doc);
	}
	fflush(stdout);
}

static void driver_on_ready(void *arg, uint64_t resume_lsn)
{
	struct driver *d = arg;

	driver_print_lsn("ready", resume_lsn);
	printf("\n");
	if (!d->timing) {
		clock_gettime(CLOCK_MONOTONIC, &d->started);
		d->timing = true;
	}
	/* the first time everything; after a stop what the engine no longer holds */
	if (!d->submitted || apply_received_lsn(d->apply) < d->input_end) {
		uint64_t after = d->submitted ? apply_received_lsn(d->apply) : 0;

		d->submitted = true;
		if (!driver_submit(d, after)) {
			d->failed = true;
			event_base_loopbreak(d->base);
		}
	}
}

static void driver_on_committed(void *arg, uint64_t end_lsn, int64_t commit_time_us)
{
	struct driver *d = arg;

	driver_print_lsn("committed", end_lsn);
	printf(" %" PRId64 "\n", commit_time_us);
	d->commits++;
	if (d->exit_after && d->commits >= d->exit_after) {
		fflush(stdout);
		_exit(3);
	}
}

static void driver_on_resume_timer(evutil_socket_t fd, short what, void *arg)
{
	struct driver *d = arg;
	struct timeval tv = { .tv_sec = 0, .tv_usec = 50000 };
	struct stat st;

	(void)fd;
	(void)what;
	if (stat(d->resume_file, &st) == 0) {
		unlink(d->resume_file);
		printf("resuming\n");
		if (!apply_resume(d->apply)) {
			d->exit_code = 1;
			event_base_loopbreak(d->base);
		}
		return;
	}
	evtimer_add(d->resume_timer, &tv);
}

static void driver_on_stopped(void *arg, const char *reason)
{
	struct driver *d = arg;
	struct timeval tv = { 0 };

	printf("stopped %s\n", reason);
	fflush(stdout);
	if (d->resume_file) {
		evtimer_add(d->resume_timer, &tv);
		return;
	}
	d->exit_code = 1;
	event_base_loopbreak(d->base);
}

static void driver_on_idle(void *arg)
{
	struct driver *d = arg;

	d->exit_code = d->failed ? 1 : 0;
	event_base_loopbreak(d->base);
}

static bool driver_read_input(struct driver *d, const char *path)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	size_t cap = 1 << 16;
	bool ok = false;

	if (!f) {
		fprintf(stderr, "apply_driver: could not open \"%s\": %s\n", path, strerror(errno));
		return false;
	}
	d->input = malloc(cap);
	while (d->input) {
		size_t n = fread(d->input + d->input_len, 1, cap - d->input_len, f);

		d->input_len += n;
		if (d->input_len < cap) {
			ok = !ferror(f);
			break;
		}
		cap *= 2;
		uint8_t *p = realloc(d->input, cap);
		if (!p)
			break;
		d->input = p;
	}
	if (!ok)
		fprintf(stderr, "apply_driver: could not read \"%s\"\n", path);
	if (f != stdin)
		fclose(f);
	for (size_t off = 0; ok && off + 4 <= d->input_len; ) {
		uint32_t n = driver_be32(d->input + off);

		if (n > d->input_len - off - 4)
			break;
		if (n > 0 && d->input[off + 4] == 'C')
			d->input_end = driver_commit_end(d->input + off + 4, n);
		off += 4 + (size_t)n;
	}
	return ok;
}

static void driver_usage(FILE *out)
{
	fprintf(out,
		"usage: apply_driver --target CONNINFO --stream NAME [options]\n"
		"  -t, --target CONNINFO      the target database\n"
		"  -s, --stream NAME          the stream (origin strait_NAME)\n"
		"  -c, --on-conflict POLICY   error (default), source_wins, target_wins\n"
		"  -i, --input FILE           batch records (default: stdin)\n"
		"  -b, --txns-per-batch N     transactions per submitted batch (default 100)\n"
		"      --group-changes N      changes per target transaction\n"
		"      --group-txns N         source transactions per target transaction\n"
		"      --workers N            target sessions applying side by side (1: one)\n"
		"      --exit-after N         _exit(3) right after the Nth commit\n"
		"      --resume-file PATH     when stopped, wait for PATH, then resume\n"
		"  -l, --log-level LEVEL      debug, info (default), notice, warning, error\n"
		"  -h, --help\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "target", required_argument, NULL, 't' },
		{ "stream", required_argument, NULL, 's' },
		{ "on-conflict", required_argument, NULL, 'c' },
		{ "input", required_argument, NULL, 'i' },
		{ "txns-per-batch", required_argument, NULL, 'b' },
		{ "group-changes", required_argument, NULL, 'G' },
		{ "group-txns", required_argument, NULL, 'T' },
		{ "workers", required_argument, NULL, 'w' },
		{ "exit-after", required_argument, NULL, 'x' },
		{ "resume-file", required_argument, NULL, 'r' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct driver d = { .txns_per_batch = 100, .exit_code = 1 };
	struct apply_config cfg = { .on_conflict = APPLY_CONFLICT_ERROR };
	struct apply_callbacks cb = {
		.ready = driver_on_ready,
		.committed = driver_on_committed,
		.stopped = driver_on_stopped,
		.idle = driver_on_idle,
	};
	const char *input = "-";
	enum log_level level = LOG_LEVEL_INFO;
	int c;

	log_init("apply_driver");
	setvbuf(stdout, NULL, _IOLBF, 0);
	while ((c = getopt_long(argc, argv, "t:s:c:i:b:l:h", opts, NULL)) != -1) {
		switch (c) {
		case 't':
			cfg.conninfo = optarg;
			break;
		case 's':
			cfg.stream = optarg;
			break;
		case 'c':
			if (!apply_conflict_parse(optarg, &cfg.on_conflict)) {
				fprintf(stderr, "apply_driver: unknown on-conflict policy \"%s\"\n", optarg);
				return 2;
			}
			break;
		case 'i':
			input = optarg;
			break;
		case 'b':
			d.txns_per_batch = strtoul(optarg, NULL, 10);
			break;
		case 'G':
			cfg.group_max_changes = strtoul(optarg, NULL, 10);
			break;
		case 'T':
			cfg.group_max_txns = strtoul(optarg, NULL, 10);
			break;
		case 'w':
			cfg.workers = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'x':
			d.exit_after = strtoul(optarg, NULL, 10);
			break;
		case 'r':
			d.resume_file = optarg;
			break;
		case 'l':
			if (!log_parse_level(optarg, &level)) {
				fprintf(stderr, "apply_driver: unknown log level \"%s\"\n", optarg);
				return 2;
			}
			break;
		case 'h':
			driver_usage(stdout);
			return 0;
		default:
			driver_usage(stderr);
			return 2;
		}
	}
	if (!cfg.conninfo || !cfg.stream || optind != argc || d.txns_per_batch == 0) {
		driver_usage(stderr);
		return 2;
	}
	log_set_level(level);
	if (!driver_read_input(&d, input))
		return 1;

	d.base = event_base_new();
	d.resume_timer = d.base ? evtimer_new(d.base, driver_on_resume_timer, &d) : NULL;
	if (!d.base || !d.resume_timer) {
		fprintf(stderr, "apply_driver: could not set up the event loop\n");
		return 1;
	}
	d.apply = apply_new(d.base, &cfg, &cb, &d);
	if (!d.apply)
		return 1;
	event_base_dispatch(d.base);
	if (d.failed)
		d.exit_code = 1;
	if (d.exit_code == 0) {
		printf("done %" PRIu64 " %.3f\n", (uint64_t)d.commits, d.timing ? driver_elapsed(&d) : 0.0);
	}
	driver_print_status(&d);
	apply_free(d.apply);
	event_free(d.resume_timer);
	event_base_free(d.base);
	free(d.input);
	return d.exit_code;
}
