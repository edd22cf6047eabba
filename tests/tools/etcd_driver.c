/*
 * etcd_driver.c — one command against an etcd cluster through the
 * asynchronous client (gateway/witness/etcd.h), in an event loop of its
 * own, for the integration tests (tests/integration/test_etcd_client.py).
 *
 *   etcd_driver [--timeout-ms N] [--interval-ms N] [--log-level L]
 *               ENDPOINT... -- COMMAND ARGS...
 *
 * Commands, and the line each prints on success:
 *
 *   grant TTL                        ok endpoint=URL id=ID ttl=TTL
 *   keepalive ID                     ok endpoint=URL ttl=TTL    (0: the lease is gone)
 *   keep ID SECONDS                  a keepalive every --interval-ms (500) for
 *                                    SECONDS: a line "ok endpoint=URL ttl=TTL"
 *                                    for each, then "ok kept=N"; it stops at
 *                                    the first failure or a ttl of 0
 *   revoke ID                        ok endpoint=URL
 *   put KEY VALUE [LEASE]            ok endpoint=URL revision=REV
 *   get KEY                          ok endpoint=URL count=N [KV]...
 *   get-prefix PREFIX                the same, for every key under PREFIX
 *   delete KEY                       ok endpoint=URL deleted=N
 *   create-if-absent KEY VALUE LEASE ok endpoint=URL created revision=REV
 *                                    or, exit 3: ok endpoint=URL held KV
 *   status                           ok endpoint=URL leader=ID member=ID version=V
 *   members                          ok endpoint=URL count=N [name=NAME id=ID urls=URL,URL]...
 *   get-many N KEY                   N gets at once: ok answered=N
 *   abandon N KEY                    N gets at once, the client freed inside the
 *                                    first answer: ok answered=1 dropped=N-1
 *
 * A KV is "key=K value=V lease=L version=N create=R mod=R"; bytes outside
 * printable ASCII, spaces and backslashes are written \xHH. A failure
 * prints "error code=C http=S MESSAGE".
 *
 * Exit status: 0 done, 1 the request failed, 2 usage, 3 create-if-absent
 * found the key held.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "common/log.h"
#include "gateway/witness/etcd.h"

struct driver {
	struct event_base *base;
	struct etcd *etcd;
	const char *cmd;
	char **args;
	int nargs;
	int exit_code;
	int interval_ms;
	/* keep */
	int64_t lease;
	int64_t keep_until_ms;
	int kept;
	struct event *tick;
	/* get-many, abandon */
	int launched;
	int answered;
};

static void usage(FILE *out)
{
	fprintf(out, "usage: etcd_driver [--timeout-ms N] [--interval-ms N] [--log-level LEVEL] "
		     "ENDPOINT... -- COMMAND ARGS...\n"
		     "commands: grant TTL | keepalive ID | keep ID SECONDS | revoke ID |\n"
		     "  put KEY VALUE [LEASE] | get KEY | get-prefix PREFIX | delete KEY |\n"
		     "  create-if-absent KEY VALUE LEASE | status | members | get-many N KEY |\n"
		     "  abandon N KEY\n");
}

static bool parse_int64(const char *text, int64_t *out)
{
	char *end;

	errno = 0;
	*out = strtoll(text, &end, 10);
	return errno == 0 && end != text && *end == '\0';
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void print_bytes(const char *data, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)data[i];

		if (c > ' ' && c < 0x7f && c != '\\')
			putchar(c);
		else
			printf("\\x%02x", c);
	}
}

static void print_kv(const struct etcd_kv *kv)
{
	fputs(" key=", stdout);
	print_bytes(kv->key, kv->key_len);
	fputs(" value=", stdout);
	print_bytes(kv->value, kv->value_len);
	printf(" lease=%" PRId64 " version=%" PRId64 " create=%" PRId64 " mod=%" PRId64, kv->lease,
	       kv->version, kv->create_revision, kv->mod_revision);
}

static void print_members(const struct etcd_reply *r)
{
	printf(" count=%zu", r->n_members);
	for (size_t i = 0; i < r->n_members; i++) {
		const struct etcd_member *m = &r->members[i];

		printf(" name=%s id=%" PRIu64 " urls=", m->name[0] ? m->name : "-", m->id);
		for (size_t u = 0; u < m->n_client_urls; u++)
			printf("%s%s", u ? "," : "", m->client_urls[u]);
	}
}

/* The one line of an answered command; false when the command asks for exit 3. */
static bool print_result(const struct driver *d, const struct etcd_result *r)
{
	const struct etcd_reply *p = &r->reply;
	bool held = false;

	printf("ok endpoint=%s", r->endpoint);
	if (strcmp(d->cmd, "grant") == 0)
		printf(" id=%" PRId64 " ttl=%" PRId64, p->lease_id, p->ttl);
	else if (strcmp(d->cmd, "keepalive") == 0 || strcmp(d->cmd, "keep") == 0)
		printf(" ttl=%" PRId64, p->ttl);
	else if (strcmp(d->cmd, "put") == 0)
		printf(" revision=%" PRId64, p->revision);
	else if (strcmp(d->cmd, "delete") == 0)
		printf(" deleted=%" PRId64, p->deleted);
	else if (strcmp(d->cmd, "create-if-absent") == 0) {
		held = !p->succeeded;
		if (held)
			fputs(" held", stdout);
		else
			printf(" created revision=%" PRId64, p->revision);
		for (size_t i = 0; held && i < p->n_kvs; i++)
			print_kv(&p->kvs[i]);
	} else if (strncmp(d->cmd, "get", 3) == 0) {
		printf(" count=%zu", p->n_kvs);
		for (size_t i = 0; i < p->n_kvs; i++)
			print_kv(&p->kvs[i]);
	} else if (strcmp(d->cmd, "status") == 0)
		printf(" leader=%" PRIu64 " member=%" PRIu64 " version=%s", p->leader, p->member_id,
		       p->version);
	else if (strcmp(d->cmd, "members") == 0)
		print_members(p);
	putchar('\n');
	return !held;
}

static void print_error(const struct etcd_result *r)
{
	printf("error code=%d http=%d %s\n", r->code, r->http_status, r->error);
}

static void finish(struct driver *d, int code)
{
	d->exit_code = code;
	fflush(stdout);
	/* the client is freed inside its own callback, as its contract allows */
	etcd_free(d->etcd);
	d->etcd = NULL;
	if (d->tick)
		event_del(d->tick);
	event_base_loopbreak(d->base);
}

static void one_done(void *arg, const struct etcd_result *r)
{
	struct driver *d = arg;

	if (!r->ok) {
		print_error(r);
		finish(d, 1);
		return;
	}
	finish(d, print_result(d, r) ? 0 : 3);
}

static void keep_send(struct driver *d);

static void keep_done(void *arg, const struct etcd_result *r)
{
	struct driver *d = arg;
	struct timeval tv = { d->interval_ms / 1000, (d->interval_ms % 1000) * 1000 };

	if (!r->ok) {
		print_error(r);
		finish(d, 1);
		return;
	}
	print_result(d, r);
	fflush(stdout);
	d->kept++;
	if (r->reply.ttl == 0) {
		finish(d, 1);
		return;
	}
	if (now_ms() >= d->keep_until_ms) {
		printf("ok kept=%d\n", d->kept);
		finish(d, 0);
		return;
	}
	evtimer_add(d->tick, &tv);
}

static void keep_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	keep_send(arg);
}

static void keep_send(struct driver *d)
{
	if (!etcd_lease_keepalive(d->etcd, d->lease, keep_done, d))
		log_fatal("out of memory");
}

static void many_done(void *arg, const struct etcd_result *r)
{
	struct driver *d = arg;

	if (!r->ok) {
		print_error(r);
		finish(d, 1);
		return;
	}
	d->answered++;
	if (strcmp(d->cmd, "abandon") == 0) {
		printf("ok answered=%d dropped=%zu\n", d->answered, etcd_pending(d->etcd));
		finish(d, 0);
	} else if (d->answered == d->launched) {
		printf("ok answered=%d\n", d->answered);
		finish(d, 0);
	}
}

static bool start_many(struct driver *d)
{
	int64_t n;

	if (d->nargs != 2 || !parse_int64(d->args[0], &n) || n < 1 || n > 1000)
		return false;
	d->launched = (int)n;
	for (int i = 0; i < d->launched; i++)
		if (!etcd_get(d->etcd, d->args[1], false, many_done, d))
			log_fatal("out of memory");
	return true;
}

static bool start_keep(struct driver *d)
{
	int64_t secs;

	if (d->nargs != 2 || !parse_int64(d->args[0], &d->lease) ||
	    !parse_int64(d->args[1], &secs) || secs < 0)
		return false;
	d->keep_until_ms = now_ms() + secs * 1000;
	d->tick = evtimer_new(d->base, keep_tick, d);
	if (!d->tick)
		log_fatal("out of memory");
	keep_send(d);
	return true;
}

static bool start_create(struct driver *d)
{
	struct etcd_compare cmp = { .key = d->args[0], .target = ETCD_CMP_CREATE,
				    .result = ETCD_CMP_EQUAL, .number = 0 };
	struct etcd_op put = { .type = ETCD_OP_PUT, .key = d->args[0], .value = d->args[1],
			       .value_len = strlen(d->args[1]) };
	struct etcd_op get = { .type = ETCD_OP_RANGE, .key = d->args[0] };
	struct etcd_txn txn = { .compares = &cmp, .n_compares = 1, .success = &put, .n_success = 1,
				.failure = &get, .n_failure = 1 };

	if (!parse_int64(d->args[2], &put.lease))
		return false;
	return etcd_txn(d->etcd, &txn, one_done, d);
}

/* Starts the command; false for bad arguments. */
static bool start(struct driver *d)
{
	const char *c = d->cmd;
	char **a = d->args;
	int64_t n = 0;
	bool ok = true;

	if (strcmp(c, "grant") == 0 && d->nargs == 1 && parse_int64(a[0], &n))
		ok = etcd_lease_grant(d->etcd, n, one_done, d);
	else if (strcmp(c, "keepalive") == 0 && d->nargs == 1 && parse_int64(a[0], &n))
		ok = etcd_lease_keepalive(d->etcd, n, one_done, d);
	else if (strcmp(c, "revoke") == 0 && d->nargs == 1 && parse_int64(a[0], &n))
		ok = etcd_lease_revoke(d->etcd, n, one_done, d);
	else if (strcmp(c, "put") == 0 && (d->nargs == 2 || (d->nargs == 3 && parse_int64(a[2], &n))))
		ok = etcd_put(d->etcd, a[0], a[1], strlen(a[1]), n, one_done, d);
	else if ((strcmp(c, "get") == 0 || strcmp(c, "get-prefix") == 0) && d->nargs == 1)
		ok = etcd_get(d->etcd, a[0], strcmp(c, "get-prefix") == 0, one_done, d);
	else if (strcmp(c, "delete") == 0 && d->nargs == 1)
		ok = etcd_delete(d->etcd, a[0], false, one_done, d);
	else if (strcmp(c, "status") == 0 && d->nargs == 0)
		ok = etcd_status(d->etcd, one_done, d);
	else if (strcmp(c, "members") == 0 && d->nargs == 0)
		ok = etcd_members(d->etcd, one_done, d);
	else if (strcmp(c, "create-if-absent") == 0 && d->nargs == 3)
		return start_create(d);
	else if (strcmp(c, "keep") == 0)
		return start_keep(d);
	else if (strcmp(c, "get-many") == 0 || strcmp(c, "abandon") == 0)
		return start_many(d);
	else
		return false;
	if (!ok)
		log_fatal("out of memory");
	return true;
}

/* Options; the index of "--" in argv, or -1 on a usage error (0 when done, e.g. --help). */
static int parse_options(int argc, char **argv, int *timeout_ms, struct driver *d)
{
	static const struct option opts[] = {
		{ "timeout-ms", required_argument, NULL, 't' },
		{ "interval-ms", required_argument, NULL, 'i' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	enum log_level level = LOG_LEVEL_WARNING;
	int64_t n;
	int c;

	while ((c = getopt_long(argc, argv, "+t:i:l:h", opts, NULL)) != -1) {
		if (c == 'h') {
			usage(stdout);
			return 0;
		}
		if (c == 'l' && log_parse_level(optarg, &level))
			continue;
		if ((c == 't' || c == 'i') && parse_int64(optarg, &n) && n > 0 && n < 3600000) {
			*(c == 't' ? timeout_ms : &d->interval_ms) = (int)n;
			continue;
		}
		return -1;
	}
	log_set_level(level);
	for (int i = optind; i < argc; i++)
		if (strcmp(argv[i], "--") == 0)
			return i > optind && i + 1 < argc ? i : -1;
	return -1;
}

int main(int argc, char **argv)
{
	struct driver d = { .exit_code = 1, .interval_ms = 500 };
	int timeout_ms = 2000;
	char err[512];
	int sep;

	log_init("etcd_driver");
	/* a member that closes while a request is written must not kill us (etcd.h) */
	signal(SIGPIPE, SIG_IGN);
	sep = parse_options(argc, argv, &timeout_ms, &d);
	if (sep <= 0) {
		if (sep < 0)
			usage(stderr);
		return sep == 0 ? 0 : 2;
	}
	d.cmd = argv[sep + 1];
	d.args = argv + sep + 2;
	d.nargs = argc - sep - 2;
	d.base = event_base_new();
	if (!d.base)
		log_fatal("could not create the event loop");
	d.etcd = etcd_new(d.base, (const char *const *)argv + optind, (size_t)(sep - optind),
			  timeout_ms, err, sizeof(err));
	if (!d.etcd) {
		fprintf(stderr, "etcd_driver: %s\n", err);
		event_base_free(d.base);
		return 2;
	}
	if (!start(&d)) {
		usage(stderr);
		etcd_free(d.etcd);
		event_base_free(d.base);
		return 2;
	}
	event_base_dispatch(d.base);
	etcd_free(d.etcd);
	if (d.tick)
		event_free(d.tick);
	event_base_free(d.base);
	return d.exit_code;
}
