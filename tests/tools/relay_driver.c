/*
 * relay_driver.c — runs one relay endpoint (gateway/relay/relay.c) from a strait
 * config, for the integration tests (tests/integration/test_relay.py).
 *
 *   relay_driver --config FILE --site NAME [--epoch N] [--role ROLE]
 *                [--resume STREAM=LSN]... [--log-level LEVEL]
 *
 * Logs go to stderr. Events go to stdout, one line each, for the test to
 * wait on:
 *
 *   ready
 *   connected PEER epoch=E version=V streams=NAME:LSN,...
 *   disconnected PEER reason=TEXT
 *   heartbeat PEER role=ROLE wal=LSN             (the first from each link)
 *   frame PEER type=TYPE len=N                   (anything but BATCH/HEARTBEAT)
 *   sent PEER count=N bytes=B sum=CRC seconds=S  (a send command finished)
 *   send-aborted PEER sent=N reason=TEXT
 *   received PEER count=N bytes=B sum=CRC seconds=S   (an expect command was met)
 *   stats PEER count=N bytes=B sum=CRC heartbeats=H     (sum: since the last expect)
 *   status JSON
 *
 * Commands on stdin, one per line (EOF or "quit" ends the driver):
 *
 *   send PEER COUNT SIZE [SEED]  COUNT BATCH frames of SIZE bytes, contents
 *                                from SEED, sent as fast as backpressure lets
 *   expect PEER COUNT            report "received" once COUNT BATCH frames have
 *                                come from PEER since this command
 *   stats PEER                   BATCH frames received from PEER so far
 *   status                       relay_status_json()
 *   epoch N                      relay_set_epoch()
 *   reload FILE                  load FILE and relay_reconfigure() with it;
 *                                prints "reloaded" or "reload-failed"
 *
 * sum is the CRC-32C of every BATCH payload in order, so sender and receiver
 * agree only when every byte arrived, in order, once.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/crc32c.h"
#include "common/json.h"
#include "common/log.h"
#include "common/lsn.h"
#include "config/config.h"
#include "gateway/relay/relay.h"
#include "gateway/relay/relay_proto.h"

#define DRIVER_MAX_PEERS   16
#define DRIVER_MAX_RESUME  16
#define DRIVER_LINE_MAX    4096

struct driver_peer {
	char name[64];
	/* received */
	uint64_t count;
	uint64_t bytes;
	uint32_t sum;
	uint64_t heartbeats;
	bool expecting;
	uint64_t expect_until;
	uint64_t expect_base_count;
	uint64_t expect_base_bytes;
	double expect_started;
	/* sending */
	bool sending;
	uint64_t send_total;
	uint64_t send_done;
	uint64_t send_bytes;
	size_t send_size;
	uint64_t send_seed;
	uint32_t send_sum;
	double send_started;
	uint8_t *send_buf;
};

struct driver {
	struct event_base *base;
	const char *site;
	struct relay *relay;
	struct driver_peer peers[DRIVER_MAX_PEERS];
	size_t npeers;
	struct relay_proto_position resume[DRIVER_MAX_RESUME];
	size_t nresume;
	uint8_t role;
	char line[DRIVER_LINE_MAX];
	size_t line_len;
	struct event *stdin_ev;
	struct event *sig_ev[2];
	struct event *pump_ev;
};

static double driver_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct driver_peer *driver_peer(struct driver *d, const char *name)
{
	for (size_t i = 0; i < d->npeers; i++)
		if (strcmp(d->peers[i].name, name) == 0)
			return &d->peers[i];
	if (d->npeers == DRIVER_MAX_PEERS || strlen(name) >= sizeof(d->peers[0].name))
		return NULL;
	snprintf(d->peers[d->npeers].name, sizeof(d->peers[0].name), "%s", name);
	return &d->peers[d->npeers++];
}

/* ---- relay callbacks ---- */

static void driver_hello(void *arg, const char *peer, struct relay_proto_hello *hello)
{
	struct driver *d = arg;

	(void)peer;
	hello->streams = d->resume;
	hello->nstreams = d->nresume;
}

static void driver_heartbeat(void *arg, const char *peer, struct relay_proto_heartbeat *hb)
{
	struct driver *d = arg;

	(void)peer;
	hb->role = d->role;
	hb->wal_lsn = 0x16B3A28;
	hb->health = RELAY_HEALTH_PG_UP;
}

static void driver_connected(void *arg, const char *peer, uint64_t epoch,
		const struct relay_proto_hello *hello)
{
	(void)arg;
	printf("connected %s epoch=%" PRIu64 " version=%u streams=", peer, epoch,
		(unsigned)hello->version);
	for (size_t i = 0; i < hello->nstreams; i++)
		printf("%s%.*s:" LSN_FMT, i ? "," : "", (int)hello->streams[i].stream.len,
			hello->streams[i].stream.ptr, LSN_ARGS(hello->streams[i].received_lsn));
	printf("\n");
}

static void driver_send_abort(struct driver_peer *p, const char *reason)
{
	if (!p->sending)
		return;
	p->sending = false;
	printf("send-aborted %s sent=%" PRIu64 " reason=%s\n", p->name, p->send_done, reason);
	free(p->send_buf);
	p->send_buf = NULL;
}

static void driver_disconnected(void *arg, const char *peer, const char *reason)
{
	struct driver *d = arg;
	struct driver_peer *p = driver_peer(d, peer);

	printf("disconnected %s reason=%s\n", peer, reason);
	if (p != NULL)
		driver_send_abort(p, "link down");
}

static void driver_check_expect(struct driver_peer *p)
{
	if (p->expecting && p->count - p->expect_base_count >= p->expect_until) {
		p->expecting = false;
		printf("received %s count=%" PRIu64 " bytes=%" PRIu64 " sum=%08x seconds=%.3f\n",
			p->name, p->count - p->expect_base_count, p->bytes - p->expect_base_bytes,
			p->sum, driver_now() - p->expect_started);
	}
}

static void driver_frame(void *arg, const char *peer, const struct frame *f)
{
	struct driver *d = arg;
	struct driver_peer *p = driver_peer(d, peer);
	struct relay_proto_heartbeat hb;

	if (p == NULL)
		return;
	switch (f->type) {
	case FRAME_BATCH:
		p->count++;
		p->bytes += f->payload_len;
		p->sum = crc32c(p->sum, f->payload, f->payload_len);
		driver_check_expect(p);
		break;
	case FRAME_HEARTBEAT:
		if (p->heartbeats++ == 0 &&
				relay_proto_read_heartbeat(f->payload, f->payload_len, &hb) == RELAY_PROTO_OK)
			printf("heartbeat %s role=%s wal=" LSN_FMT "\n", peer, relay_proto_role_name(hb.role),
				LSN_ARGS(hb.wal_lsn));
		break;
	default:
		printf("frame %s type=%s len=%u\n", peer, frame_type_name(f->type), f->payload_len);
		break;
	}
}

/* Deterministic payload: the frame number, then xorshift words from the seed. */
static void driver_fill(uint8_t *buf, size_t len, uint64_t seed, uint64_t n)
{
	uint64_t x = seed * 0x9E3779B97F4A7C15ull + n + 1;
	size_t i = 0;

	for (; i + 8 <= len; i += 8) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(buf + i, &x, 8);
	}
	for (; i < len; i++)
		buf[i] = (uint8_t)(x >> (8 * (i % 8)));
	for (i = 0; i < 8 && i < len; i++)
		buf[i] = (uint8_t)(n >> (8 * i));
}

/* Sends what backpressure allows; the writable callback resumes. */
static void driver_pump(struct driver *d, struct driver_peer *p)
{
	while (p->sending && p->send_done < p->send_total) {
		if (relay_output_pending(d->relay, p->name) >= RELAY_OUTPUT_HIGH)
			return;
		driver_fill(p->send_buf, p->send_size, p->send_seed, p->send_done);
		if (!relay_send(d->relay, p->name, FRAME_BATCH, 0, p->send_buf, p->send_size)) {
			driver_send_abort(p, "relay_send refused");
			return;
		}
		p->send_sum = crc32c(p->send_sum, p->send_buf, p->send_size);
		p->send_bytes += p->send_size;
		p->send_done++;
	}
	if (p->sending) {
		p->sending = false;
		free(p->send_buf);
		p->send_buf = NULL;
		printf("sent %s count=%" PRIu64 " bytes=%" PRIu64 " sum=%08x seconds=%.3f\n",
			p->name, p->send_done, p->send_bytes, p->send_sum,
			driver_now() - p->send_started);
	}
}

static void driver_writable(void *arg, const char *peer)
{
	struct driver *d = arg;
	struct driver_peer *p = driver_peer(d, peer);

	if (p != NULL)
		driver_pump(d, p);
}

/* ---- commands ---- */

static void driver_status(struct driver *d)
{
	struct json_out j;
	char *doc;

	json_init(&j);
	relay_status_json(d->relay, &j, NULL);
	doc = json_finish(&j, NULL);
	printf("status %s\n", doc ? doc : "null");
	free(doc);
}

static void driver_reload(struct driver *d, const char *path)
{
	struct config_diags diags = { 0 };
	struct strait_config *cfg = config_load_file(path, &diags);

	if (cfg == NULL) {
		config_diags_print(stderr, &diags);
		printf("reload-failed config\n");
	} else if (!relay_reconfigure(d->relay, cfg, d->site)) {
		printf("reload-failed relay\n");
	} else {
		printf("reloaded\n");
	}
	config_diags_free(&diags);
	config_free(cfg);
}

static void driver_command(struct driver *d, char *line)
{
	char *argv[8], *save = NULL;
	int argc = 0;
	struct driver_peer *p;

	for (char *t = strtok_r(line, " \t\r", &save); t && argc < 8; t = strtok_r(NULL, " \t\r", &save))
		argv[argc++] = t;
	if (argc == 0)
		return;
	if (strcmp(argv[0], "quit") == 0) {
		event_base_loopexit(d->base, NULL);
	} else if (strcmp(argv[0], "status") == 0) {
		driver_status(d);
	} else if (strcmp(argv[0], "reload") == 0 && argc == 2) {
		driver_reload(d, argv[1]);
	} else if (strcmp(argv[0], "epoch") == 0 && argc == 2) {
		relay_set_epoch(d->relay, strtoull(argv[1], NULL, 10));
	} else if (strcmp(argv[0], "stats") == 0 && argc == 2 && (p = driver_peer(d, argv[1]))) {
		printf("stats %s count=%" PRIu64 " bytes=%" PRIu64 " sum=%08x heartbeats=%" PRIu64 "\n",
			p->name, p->count, p->bytes, p->sum, p->heartbeats);
	} else if (strcmp(argv[0], "expect") == 0 && argc == 3 && (p = driver_peer(d, argv[1]))) {
		p->expecting = true;
		p->expect_until = strtoull(argv[2], NULL, 10);
		p->expect_base_count = p->count;
		p->expect_base_bytes = p->bytes;
		p->sum = 0;
		p->expect_started = driver_now();
		driver_check_expect(p);
	} else if (strcmp(argv[0], "send") == 0 && (argc == 4 || argc == 5) &&
			(p = driver_peer(d, argv[1]))) {
		if (p->sending) {
			printf("error send to %s already running\n", p->name);
			return;
		}
		p->send_total = strtoull(argv[2], NULL, 10);
		p->send_size = strtoull(argv[3], NULL, 10);
		p->send_seed = argc == 5 ? strtoull(argv[4], NULL, 10) : 1;
		if (p->send_size > FRAME_MAX_PAYLOAD) {
			printf("error size over %u\n", FRAME_MAX_PAYLOAD);
			return;
		}
		p->send_buf = malloc(p->send_size ? p->send_size : 1);
		if (p->send_buf == NULL) {
			printf("error out of memory\n");
			return;
		}
		p->send_done = p->send_bytes = 0;
		p->send_sum = 0;
		p->send_started = driver_now();
		p->sending = true;
		driver_pump(d, p);
	} else {
		printf("error unknown command %s\n", argv[0]);
	}
}

static void driver_stdin_cb(evutil_socket_t fd, short what, void *arg)
{
	struct driver *d = arg;
	char buf[1024];
	ssize_t n = read(fd, buf, sizeof(buf));

	(void)what;
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		event_base_loopexit(d->base, NULL);
		return;
	}
	for (ssize_t i = 0; i < n; i++) {
		if (buf[i] == '\n') {
			d->line[d->line_len] = '\0';
			driver_command(d, d->line);
			d->line_len = 0;
		} else if (d->line_len + 1 < sizeof(d->line)) {
			d->line[d->line_len++] = buf[i];
		}
	}
}

static void driver_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct driver *d = arg;

	(void)sig;
	(void)what;
	event_base_loopexit(d->base, NULL);
}

static void usage(FILE *out)
{
	fprintf(out,
		"usage: relay_driver --config FILE --site NAME [--epoch N] [--role ROLE]\n"
		"                    [--resume STREAM=LSN]... [--log-level LEVEL]\n"
		"Runs one relay endpoint; commands on stdin, events on stdout.\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "site", required_argument, NULL, 's' },
		{ "epoch", required_argument, NULL, 'e' },
		{ "role", required_argument, NULL, 'r' },
		{ "resume", required_argument, NULL, 'R' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static struct driver d;
	struct config_diags diags = { 0 };
	struct strait_config *cfg = NULL;
	const char *config_path = NULL, *site = NULL;
	uint64_t epoch = 0;
	enum log_level level = LOG_LEVEL_DEBUG;
	struct relay_callbacks cb = {
		.hello = driver_hello,
		.heartbeat = driver_heartbeat,
		.connected = driver_connected,
		.frame = driver_frame,
		.writable = driver_writable,
		.disconnected = driver_disconnected,
	};
	int c, rc = 1;

	log_init("relay_driver");
	setvbuf(stdout, NULL, _IOLBF, 0);
	d.role = RELAY_ROLE_REPLICA;
	while ((c = getopt_long(argc, argv, "c:s:e:r:R:l:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			config_path = optarg;
			break;
		case 's':
			site = optarg;
			break;
		case 'e':
			epoch = strtoull(optarg, NULL, 10);
			break;
		case 'r':
			d.role = strcmp(optarg, "primary") == 0 ? RELAY_ROLE_PRIMARY :
				strcmp(optarg, "fenced") == 0 ? RELAY_ROLE_FENCED : RELAY_ROLE_REPLICA;
			break;
		case 'R': {
			char *eq = strchr(optarg, '=');

			if (eq == NULL || d.nresume == DRIVER_MAX_RESUME) {
				usage(stderr);
				return 2;
			}
			*eq = '\0';
			d.resume[d.nresume].stream = relay_proto_str(optarg);
			d.resume[d.nresume].received_lsn = strtoull(eq + 1, NULL, 0);
			d.nresume++;
			break;
		}
		case 'l':
			if (!log_parse_level(optarg, &level)) {
				usage(stderr);
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
	if (config_path == NULL || site == NULL || optind != argc) {
		usage(stderr);
		return 2;
	}
	log_set_level(level);
	signal(SIGPIPE, SIG_IGN);

	cfg = config_load_file(config_path, &diags);
	if (cfg == NULL) {
		config_diags_print(stderr, &diags);
		config_diags_free(&diags);
		return 2;
	}
	config_diags_free(&diags);

	d.base = event_base_new();
	if (d.base == NULL)
		goto out;
	d.site = site;
	d.relay = relay_new(d.base, cfg, site, &cb, &d);
	if (d.relay == NULL)
		goto out;
	relay_set_epoch(d.relay, epoch);
	/* The relay copied what it needs: the config is not needed any more. */
	config_free(cfg);
	cfg = NULL;

	d.stdin_ev = event_new(d.base, STDIN_FILENO, EV_READ | EV_PERSIST, driver_stdin_cb, &d);
	d.sig_ev[0] = evsignal_new(d.base, SIGTERM, driver_signal_cb, &d);
	d.sig_ev[1] = evsignal_new(d.base, SIGINT, driver_signal_cb, &d);
	if (!d.stdin_ev || !d.sig_ev[0] || !d.sig_ev[1] || event_add(d.stdin_ev, NULL) ||
			event_add(d.sig_ev[0], NULL) || event_add(d.sig_ev[1], NULL))
		goto out;
	printf("ready\n");
	event_base_dispatch(d.base);
	rc = 0;
out:
	relay_free(d.relay);
	for (size_t i = 0; i < d.npeers; i++)
		free(d.peers[i].send_buf);
	if (d.stdin_ev)
		event_free(d.stdin_ev);
	for (int i = 0; i < 2; i++)
		if (d.sig_ev[i])
			event_free(d.sig_ev[i]);
	if (d.base)
		event_base_free(d.base);
	config_free(cfg);
	return rc;
}
