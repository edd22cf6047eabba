/*
 * lostxacts_driver.c — writes the SQL file of an old primary's lost
 * transactions with replicator/lostxacts.h, for the integration tests.
 *
 *   lostxacts_driver --after LSN [--conninfo DSN --slot NAME --publication NAME]
 *                    [--batch FILE]... [--stream NAME] [--out FILE]
 *
 * With --conninfo the slot is peeked (never consumed); each --batch FILE (a
 * batch body: u32 big-endian length + pgoutput message, repeated) is fed
 * after it, in order. The SQL goes to --out (default stdout). On stderr, one
 * line:
 *   stats kept=N statements=N before=N duplicates=N strait_origin=N empty=N
 *         incomplete=N orphans=N unrendered=N messages=N
 * or "error <message>". Exit status: 0 written, 1 failed, 2 usage.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "common/log.h"
#include "common/lsn.h"
#include "replicator/lostxacts.h"

#define DRIVER_MAX_BATCHES 16

struct driver {
	struct event_base *base;
	const char *err;
	char errbuf[1024];
	uint64_t messages;
};

static void driver_peeked(void *arg, const char *err, uint64_t messages)
{
	struct driver *d = arg;

	d->messages = messages;
	if (err) {
		snprintf(d->errbuf, sizeof(d->errbuf), "%s", err);
		d->err = d->errbuf;
	}
	event_base_loopbreak(d->base);
}

static bool driver_feed_file(struct lostxacts *lx, const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	long size;
	bool ok = false;

	if (!f) {
		snprintf(err, errlen, "could not open \"%s\": %m", path);
		return false;
	}
	if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
		snprintf(err, errlen, "could not read \"%s\": %m", path);
		goto out;
	}
	buf = malloc(size ? (size_t)size : 1);
	if (!buf || fread(buf, 1, (size_t)size, f) != (size_t)size) {
		snprintf(err, errlen, "could not read \"%s\"", path);
		goto out;
	}
	ok = lostxacts_feed_batch(lx, buf, (size_t)size, err, errlen);
out:
	free(buf);
	fclose(f);
	return ok;
}

static void usage(FILE *out)
{
	fprintf(out, "usage: lostxacts_driver --after LSN [--conninfo DSN --slot NAME --publication NAME]\n"
		"                        [--batch FILE]... [--stream NAME] [--out FILE]\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "after", required_argument, NULL, 'a' },
		{ "conninfo", required_argument, NULL, 'c' },
		{ "slot", required_argument, NULL, 's' },
		{ "publication", required_argument, NULL, 'p' },
		{ "batch", required_argument, NULL, 'b' },
		{ "stream", required_argument, NULL, 'n' },
		{ "out", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct lostxacts_options lo = { 0 };
	const char *conninfo = NULL, *publication = NULL, *out_path = NULL;
	const char *batches[DRIVER_MAX_BATCHES];
	size_t nbatches = 0;
	bool have_after = false;
	struct driver d = { 0 };
	struct lostxacts *lx;
	struct lostxacts_stats st;
	char err[1024];
	FILE *out = stdout;
	int c, rc = 1;

	log_init("lostxacts_driver");
	log_set_level(LOG_LEVEL_WARNING);
	while ((c = getopt_long(argc, argv, "a:c:s:p:b:n:o:h", opts, NULL)) != -1) {
		switch (c) {
		case 'a':
			if (!lsn_parse(optarg, &lo.after_lsn)) {
				fprintf(stderr, "lostxacts_driver: bad LSN \"%s\"\n", optarg);
				return 2;
			}
			have_after = true;
			break;
		case 'c':
			conninfo = optarg;
			break;
		case 's':
			lo.slot = optarg;
			break;
		case 'p':
			publication = optarg;
			break;
		case 'b':
			if (nbatches == DRIVER_MAX_BATCHES) {
				fprintf(stderr, "lostxacts_driver: too many --batch\n");
				return 2;
			}
			batches[nbatches++] = optarg;
			break;
		case 'n':
			lo.stream = optarg;
			break;
		case 'o':
			out_path = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc || !have_after || (conninfo && (!lo.slot || !publication)) ||
	    (!conninfo && !nbatches)) {
		usage(stderr);
		return 2;
	}
	lx = lostxacts_new(&lo);
	if (!lx)
		log_fatal("out of memory");
	if (conninfo) {
		struct lostxacts_peek *p;

		d.base = event_base_new();
		if (!d.base)
			log_fatal("could not create the event loop");
		p = lostxacts_peek_start(d.base, conninfo, lo.slot, publication, lx, driver_peeked, &d);
		if (!p)
			log_fatal("out of memory");
		event_base_dispatch(d.base);
		lostxacts_peek_free(p);
		event_base_free(d.base);
		if (d.err) {
			fprintf(stderr, "error %s\n", d.err);
			goto out;
		}
	}
	for (size_t i = 0; i < nbatches; i++) {
		if (!lostxacts_add_note(lx, "fed from the batch file %s", batches[i]))
			log_fatal("out of memory");
		if (!driver_feed_file(lx, batches[i], err, sizeof(err))) {
			fprintf(stderr, "error %s: %s\n", batches[i], err);
			goto out;
		}
	}
	if (out_path && !(out = fopen(out_path, "w"))) {
		fprintf(stderr, "error could not open \"%s\": %m\n", out_path);
		goto out;
	}
	if (!lostxacts_write(lx, out, err, sizeof(err))) {
		fprintf(stderr, "error %s\n", err);
		goto out;
	}
	lostxacts_get_stats(lx, &st);
	fprintf(stderr, "stats kept=%" PRIu64 " statements=%" PRIu64 " before=%" PRIu64
		" duplicates=%" PRIu64 " strait_origin=%" PRIu64 " empty=%" PRIu64
		" incomplete=%" PRIu64 " orphans=%" PRIu64 " unrendered=%" PRIu64
		" messages=%" PRIu64 "\n", st.kept, st.statements, st.before, st.duplicates,
		st.strait_origin, st.empty, st.incomplete, st.orphans, st.unrendered, d.messages);
	rc = 0;
out:
	if (out != stdout && out && fclose(out) != 0 && rc == 0) {
		fprintf(stderr, "error could not write \"%s\": %m\n", out_path);
		rc = 1;
	}
	lostxacts_free(lx);
	return rc;
}
