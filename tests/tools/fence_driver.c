/*
 * fence_driver.c — fences, unfences or checks a PostgreSQL server with
 * replicator/fence.h, for the integration tests.
 *
 *   fence_driver [--timeout-ms N] [--log-level L] CONNINFO fence|unfence|status
 *
 * Output on stdout: the run's log (one line per step), then one line
 *   result ok fenced=<0|1> checked=<0|1> ended=<N>
 * or
 *   result error <message>
 * Exit status: 0 done, 1 the run failed, 2 usage.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "common/log.h"
#include "replicator/fence.h"

struct driver {
	struct event_base *base;
	int exit_code;
};

static void driver_done(void *arg, const struct fence_result *res)
{
	struct driver *d = arg;

	fputs(res->log, stdout);
	if (res->ok)
		printf("result ok fenced=%d checked=%d ended=%u left=%u\n", res->fenced, res->checked,
		       res->sessions_ended, res->sessions_left);
	else
		printf("result error %s\n", res->error);
	fflush(stdout);
	d->exit_code = res->ok ? 0 : 1;
	event_base_loopbreak(d->base);
}

static void usage(FILE *out)
{
	fprintf(out, "usage: fence_driver [--timeout-ms N] [--log-level LEVEL] CONNINFO fence|unfence|status\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "timeout-ms", required_argument, NULL, 't' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct driver d = { .exit_code = 1 };
	enum log_level level = LOG_LEVEL_WARNING;
	unsigned long timeout_ms = 0;
	enum fence_op op;
	struct fence *f;
	int c;

	log_init("fence_driver");
	while ((c = getopt_long(argc, argv, "t:l:h", opts, NULL)) != -1) {
		switch (c) {
		case 't':
			timeout_ms = strtoul(optarg, NULL, 10);
			break;
		case 'l':
			if (!log_parse_level(optarg, &level)) {
				fprintf(stderr, "fence_driver: unknown log level \"%s\"\n", optarg);
				return 2;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (argc - optind != 2) {
		usage(stderr);
		return 2;
	}
	if (strcmp(argv[optind + 1], "fence") == 0)
		op = FENCE_OP_FENCE;
	else if (strcmp(argv[optind + 1], "unfence") == 0)
		op = FENCE_OP_UNFENCE;
	else if (strcmp(argv[optind + 1], "status") == 0)
		op = FENCE_OP_STATUS;
	else {
		usage(stderr);
		return 2;
	}
	log_set_level(level);
	d.base = event_base_new();
	if (!d.base)
		log_fatal("could not create the event loop");
	f = fence_start(d.base, argv[optind], op, (unsigned)timeout_ms, driver_done, &d);
	if (!f)
		log_fatal("out of memory");
	event_base_dispatch(d.base);
	fence_free(f);
	event_base_free(d.base);
	return d.exit_code;
}
