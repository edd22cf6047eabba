/*
 * test_relay.c — the relay link (gateway/relay/relay.c): the pure rules (who dials,
 * reconnect backoff) and, in one process under the sanitizers, two relays on
 * one event loop over loopback: HELLO both ways, frames, backpressure,
 * refusals, a reload that removes a peer, and clean teardown (leaks show).
 * The certificates are tests/unit/data/tls's: "cloud" (cloud.crt) and
 * "onprem" (cn-only.crt, named by its commonName).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/log.h"
#include "config/config.h"
#include "gateway/relay/relay.h"
#include "tests/unit/tls_data.h"

/* ---- pure parts ---- */

static void test_dial_rule(void **state)
{
	(void)state;
	assert_true(relay_dials("cloud", "onprem"));
	assert_false(relay_dials("onprem", "cloud"));
	assert_false(relay_dials("cloud", "cloud"));
	assert_true(relay_dials("a", "b"));
	assert_true(relay_dials("edge", "edge2"));
	assert_false(relay_dials("edge2", "edge"));
}

static void test_backoff_bounds(void **state)
{
	const uint32_t rnds[] = { 0, 1, 0x40000000u, 0x80000000u, 0xC0000000u, UINT32_MAX };

	(void)state;
	for (unsigned a = 0; a < 20; a++) {
		uint64_t base = (uint64_t)RELAY_BACKOFF_MIN_MS << a;

		if (base > RELAY_BACKOFF_MAX_MS)
			base = RELAY_BACKOFF_MAX_MS;
		for (size_t i = 0; i < sizeof(rnds) / sizeof(rnds[0]); i++) {
			uint64_t d = relay_backoff_ms(a, rnds[i]);

			assert_true(d >= base * 75 / 100);
			assert_true(d < base * 125 / 100);
		}
		/* The two ends and the middle of the jitter range. */
		assert_int_equal(relay_backoff_ms(a, 0), base * 75 / 100);
		assert_int_equal(relay_backoff_ms(a, 0x80000000u), base);
	}
}

static void test_backoff_sequence(void **state)
{
	(void)state;
	/* 100 ms doubling: 100, 200, 400, ... 25.6 s, then 30 s for good. */
	assert_int_equal(relay_backoff_ms(0, 0x80000000u), 100);
	assert_int_equal(relay_backoff_ms(1, 0x80000000u), 200);
	assert_int_equal(relay_backoff_ms(4, 0x80000000u), 1600);
	assert_int_equal(relay_backoff_ms(8, 0x80000000u), 25600);
	assert_int_equal(relay_backoff_ms(9, 0x80000000u), 30000);
	assert_int_equal(relay_backoff_ms(1000, 0x80000000u), 30000);
	assert_int_equal(relay_backoff_ms(UINT32_MAX, UINT32_MAX), 37499);
	for (unsigned a = 0; a < 40; a++)
		assert_true(relay_backoff_ms(a + 1, 12345) >= relay_backoff_ms(a, 12345));
}

/* ---- two relays on one loop ---- */

static char data_dir[4096];

struct site_files {
	char ca[4200];
	char cert[4200];
	char key[4200];
};

struct pair {
	struct event_base *base;
	struct strait_config cfg[2];       /* cfg[i] is site i's view (its own TLS files) */
	struct config_site sites[2];
	struct site_files files[2];
	struct relay *relay[2];
	/* what each side saw */
	int connected[2];
	int disconnected[2];
	char last_reason[2][512];
	uint64_t hello_epoch[2];
	size_t hello_streams[2];
	char hello_stream0[2][32];
	uint64_t hello_lsn0[2];
	unsigned batches[2];
	uint64_t batch_bytes[2];
	unsigned heartbeats[2];
	uint8_t heartbeat_role[2];
	unsigned writable[2];
	size_t pending_at_writable[2];     /* output queued when writable came */
	unsigned writable_before;
};

static const char *const site_names[2] = { "cloud", "onprem" };

static int side_of(const char *peer)
{
	/* The callback of side i is told about the other side. */
	return strcmp(peer, "onprem") == 0 ? 0 : 1;
}

static void cb_hello(void *arg, const char *peer, struct relay_proto_hello *hello)
{
	static struct relay_proto_position resume[1];

	(void)arg;
	if (strcmp(peer, "cloud") == 0) {       /* onprem's HELLO to cloud */
		resume[0].stream = relay_proto_str("app");
		resume[0].received_lsn = 0x16B3A28;
		hello->streams = resume;
		hello->nstreams = 1;
	}
}

static void cb_heartbeat(void *arg, const char *peer, struct relay_proto_heartbeat *hb)
{
	(void)arg;
	hb->role = side_of(peer) == 0 ? RELAY_ROLE_PRIMARY : RELAY_ROLE_REPLICA;
	hb->wal_lsn = 42;
}

static void cb_connected(void *arg, const char *peer, uint64_t epoch,
		const struct relay_proto_hello *hello)
{
	struct pair *p = arg;
	int i = side_of(peer);

	p->connected[i]++;
	p->hello_epoch[i] = epoch;
	p->hello_streams[i] = hello->nstreams;
	if (hello->nstreams > 0) {
		snprintf(p->hello_stream0[i], sizeof(p->hello_stream0[i]), "%.*s",
			(int)hello->streams[0].stream.len, hello->streams[0].stream.ptr);
		p->hello_lsn0[i] = hello->streams[0].received_lsn;
	}
}

static void cb_disconnected(void *arg, const char *peer, const char *reason)
{
	struct pair *p = arg;
	int i = side_of(peer);

	p->disconnected[i]++;
	snprintf(p->last_reason[i], sizeof(p->last_reason[i]), "%s", reason);
}

static void cb_frame(void *arg, const char *peer, const struct frame *f)
{
	struct pair *p = arg;
	int i = side_of(peer);
	struct relay_proto_heartbeat hb;

	if (f->type == FRAME_BATCH) {
		p->batches[i]++;
		p->batch_bytes[i] += f->payload_len;
	} else if (f->type == FRAME_HEARTBEAT) {
		assert_int_equal(relay_proto_read_heartbeat(f->payload, f->payload_len, &hb),
			RELAY_PROTO_OK);
		p->heartbeats[i]++;
		p->heartbeat_role[i] = hb.role;
	}
}

static void cb_writable(void *arg, const char *peer)
{
	struct pair *p = arg;

	p->writable[side_of(peer)]++;
	p->pending_at_writable[side_of(peer)] = relay_output_pending(p->relay[side_of(peer)], peer);
}

static const struct relay_callbacks callbacks = {
	.hello = cb_hello,
	.heartbeat = cb_heartbeat,
	.connected = cb_connected,
	.frame = cb_frame,
	.writable = cb_writable,
	.disconnected = cb_disconnected,
};

static uint16_t free_port(const char *addr)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	inet_pton(AF_INET, addr, &sin.sin_addr);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	close(fd);
	return ntohs(sin.sin_port);
}

static void pair_config(struct pair *p, const char *const certs[2], const char *const keys[2])
{
	uint16_t port = free_port("127.0.0.2");

	for (int i = 0; i < 2; i++) {
		struct config_site *s = &p->sites[i];

		s->name = (char *)site_names[i];
		s->tunnel_address.family = AF_INET;
		s->tunnel_address.prefix = 8;
		inet_pton(AF_INET, i == 0 ? "127.0.0.1" : "127.0.0.2", s->tunnel_address.addr);
	}
	for (int i = 0; i < 2; i++) {
		struct strait_config *c = &p->cfg[i];

		snprintf(p->files[i].ca, sizeof(p->files[i].ca), "%s/cluster-ca.crt", data_dir);
		snprintf(p->files[i].cert, sizeof(p->files[i].cert), "%s/%s", data_dir, certs[i]);
		snprintf(p->files[i].key, sizeof(p->files[i].key), "%s/%s", data_dir, keys[i]);
		c->cluster = (char *)"acme";
		c->sites = p->sites;
		c->n_sites = 2;
		c->tls.ca = p->files[i].ca;
		c->tls.cert = p->files[i].cert;
		c->tls.key = p->files[i].key;
		c->relay.port = port;
		c->failover.health_interval = 50;
		c->failover.health_failures = 4;
	}
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Runs the loop until cond holds (true) or ms pass (false); the relays' tick keeps it moving. */
static bool run_until(struct pair *p, bool (*cond)(struct pair *), unsigned ms)
{
	uint64_t deadline = now_ms() + ms;

	while (!cond(p)) {
		if (now_ms() > deadline)
			return false;
		event_base_loop(p->base, EVLOOP_ONCE);
	}
	return true;
}

static bool both_up(struct pair *p)
{
	return relay_is_up(p->relay[0], "onprem") && relay_is_up(p->relay[1], "cloud") &&
		p->connected[0] > 0 && p->connected[1] > 0;
}

static bool heartbeats_seen(struct pair *p)
{
	return p->heartbeats[0] >= 3 && p->heartbeats[1] >= 3;
}

static bool batches_in(struct pair *p)
{
	return p->batches[1] == 200;
}

static bool drained(struct pair *p)
{
	return relay_output_pending(p->relay[0], "onprem") == 0 && p->batches[1] >= 200 + 40;
}

static bool woken_again(struct pair *p)
{
	return p->writable[0] > p->writable_before;
}

/*
 * A producer's own mark: where its frames end in the output, and writable
 * once the output has drained to the mark it asked for.
 */
static void check_output_mark(struct pair *p)
{
	uint64_t queued, drained, queued2, drained2;
	uint8_t *chunk = calloc(1, 256 * 1024);

	assert_non_null(chunk);
	assert_true(relay_output_position(p->relay[0], "onprem", &queued, &drained));
	assert_true(queued >= drained);
	for (int n = 0; n < 6; n++)
		assert_true(relay_send(p->relay[0], "onprem", FRAME_BATCH, 0, chunk, 256 * 1024));
	free(chunk);
	assert_true(relay_output_position(p->relay[0], "onprem", &queued2, &drained2));
	assert_int_equal(queued2 - queued, 6 * (FRAME_HEADER_SIZE + 256 * 1024));
	assert_int_equal(queued2 - drained2, relay_output_pending(p->relay[0], "onprem"));
	p->writable_before = p->writable[0];
	relay_wait_output(p->relay[0], "onprem", 64 * 1024);
	assert_true(run_until(p, woken_again, 20000));
	assert_true(p->pending_at_writable[0] <= 64 * 1024);
	assert_false(relay_output_position(p->relay[0], "nowhere", &queued, &drained));
	assert_int_equal(queued, 0);
}

static bool cloud_dropped(struct pair *p)
{
	return p->disconnected[0] > 0 && p->disconnected[1] > 0;
}

static void pair_start(struct pair *p)
{
	p->base = event_base_new();
	assert_non_null(p->base);
	for (int i = 0; i < 2; i++) {
		p->relay[i] = relay_new(p->base, &p->cfg[i], site_names[i], &callbacks, p);
		assert_non_null(p->relay[i]);
	}
}

static void pair_stop(struct pair *p)
{
	for (int i = 0; i < 2; i++)
		relay_free(p->relay[i]);
	event_base_free(p->base);
}

static void test_link_in_process(void **state)
{
	static const char *const certs[2] = { "cloud.crt", "cn-only.crt" };
	static const char *const keys[2] = { "cloud.key", "cn-only.key" };
	struct pair *p = calloc(1, sizeof(*p));
	struct strait_config alone;
	struct relay_stats st;
	struct json_out j;
	uint8_t *big;
	char *doc;

	(void)state;
	pair_config(p, certs, keys);
	pair_start(p);
	relay_set_epoch(p->relay[1], 7);

	/* Nothing is up before the loop runs: sends are refused, not queued. */
	assert_false(relay_send(p->relay[0], "onprem", FRAME_BATCH, 0, "x", 1));
	assert_int_equal(relay_output_pending(p->relay[0], "onprem"), 0);

	assert_true(run_until(p, both_up, 5000));
	/* cloud dialed onprem; onprem's HELLO carried its resume position and epoch. */
	assert_int_equal(p->hello_epoch[0], 7);
	assert_int_equal(p->hello_streams[0], 1);
	assert_string_equal(p->hello_stream0[0], "app");
	assert_int_equal(p->hello_lsn0[0], 0x16B3A28);
	assert_int_equal(p->hello_streams[1], 0);

	assert_true(run_until(p, heartbeats_seen, 5000));
	assert_int_equal(p->heartbeat_role[1], RELAY_ROLE_PRIMARY);
	assert_int_equal(p->heartbeat_role[0], RELAY_ROLE_REPLICA);

	/* The relay's own frame types are refused from callers. */
	assert_false(relay_send(p->relay[0], "onprem", FRAME_HELLO, 0, NULL, 0));
	assert_false(relay_send(p->relay[0], "onprem", FRAME_GOODBYE, 0, NULL, 0));
	assert_false(relay_send(p->relay[0], "onprem", (enum frame_type)0x42, 0, NULL, 0));
	assert_false(relay_send(p->relay[0], "nowhere", FRAME_BATCH, 0, "x", 1));

	for (int n = 0; n < 200; n++)
		assert_true(relay_send(p->relay[0], "onprem", FRAME_BATCH, 0, "0123456789", 10));
	assert_true(run_until(p, batches_in, 5000));
	assert_int_equal(p->batch_bytes[1], 2000);

	/* Backpressure: past the high mark, writable comes once it drains. */
	big = calloc(1, 1024 * 1024);
	assert_non_null(big);
	for (int n = 0; n < 40; n++)
		assert_true(relay_send(p->relay[0], "onprem", FRAME_BATCH, 0, big, 1024 * 1024));
	assert_true(relay_output_pending(p->relay[0], "onprem") >= RELAY_OUTPUT_HIGH);
	free(big);
	assert_true(run_until(p, drained, 20000));
	assert_true(p->writable[0] >= 1);
	check_output_mark(p);

	assert_true(relay_peer_stats(p->relay[0], "onprem", &st));
	assert_true(st.up);
	assert_int_equal(st.connects, 1);
	assert_true(st.frames_sent >= 246);
	assert_true(st.bytes_sent >= 246 * FRAME_HEADER_SIZE + 2000 + 40u * 1024 * 1024 +
		    6u * 256 * 1024);
	assert_false(relay_peer_stats(p->relay[0], "nowhere", &st));

	json_init(&j);
	relay_status_json(p->relay[1], &j, NULL);
	doc = json_finish(&j, NULL);
	assert_non_null(doc);
	assert_non_null(strstr(doc, "\"site\":\"cloud\",\"direction\":\"accept\""));
	assert_non_null(strstr(doc, "\"state\":\"up\""));
	assert_non_null(strstr(doc, "\"listening\":true"));
	free(doc);

	/* A reload of onprem without cloud closes the link; cloud is told why. */
	alone = p->cfg[1];
	alone.sites = &p->sites[1];
	alone.n_sites = 1;
	assert_true(relay_reconfigure(p->relay[1], &alone, "onprem"));
	assert_int_equal(p->disconnected[1], 0);     /* owed, never called inside the API */
	assert_true(run_until(p, cloud_dropped, 5000));
	assert_string_equal(p->last_reason[1], "site removed from the configuration");
	assert_non_null(strstr(p->last_reason[0], "site removed from the configuration"));

	/* A reload whose TLS files do not load changes nothing. */
	alone.tls.cert = (char *)"/nonexistent/site.crt";
	assert_false(relay_reconfigure(p->relay[1], &alone, "onprem"));
	assert_false(relay_reconfigure(p->relay[1], &p->cfg[1], "elsewhere"));

	pair_stop(p);
	free(p);
}

static bool cloud_retried(struct pair *p)
{
	struct relay_stats st;

	return relay_peer_stats(p->relay[0], "onprem", &st) && st.failures >= 3;
}

static bool garbage_refused(struct pair *p)
{
	struct json_out j;
	char *doc;
	bool done;

	json_init(&j);
	relay_status_json(p->relay[1], &j, NULL);
	doc = json_finish(&j, NULL);
	done = doc != NULL && strstr(doc, "\"pending_connections\":0,\"refused_connections\":1") != NULL;
	free(doc);
	return done;
}

static void test_refusals_in_process(void **state)
{
	static const char *const certs[2] = { "cloud.crt", "cn-only.crt" };
	static const char *const keys[2] = { "cloud.key", "cn-only.key" };
	struct pair *p = calloc(1, sizeof(*p));
	struct sockaddr_in sin = { .sin_family = AF_INET };
	static const char junk[] = "GET / HTTP/1.0\r\n\r\n";
	int fd;

	(void)state;
	pair_config(p, certs, keys);
	p->base = event_base_new();
	assert_non_null(p->base);

	/* Unknown site, and a certificate that names another site than this one. */
	assert_null(relay_new(p->base, &p->cfg[0], "elsewhere", &callbacks, p));
	assert_null(relay_new(p->base, &p->cfg[1], "cloud", &callbacks, p));

	/* cloud alone: nobody listens, so it keeps retrying with backoff. */
	p->relay[0] = relay_new(p->base, &p->cfg[0], "cloud", &callbacks, p);
	assert_non_null(p->relay[0]);
	assert_true(run_until(p, cloud_retried, 5000));
	assert_int_equal(p->connected[0], 0);
	assert_int_equal(p->disconnected[0], 0);    /* never up, never "disconnected" */

	/* onprem alone gets plain text where TLS belongs and drops it. */
	relay_free(p->relay[0]);
	p->relay[0] = NULL;
	p->relay[1] = relay_new(p->base, &p->cfg[1], "onprem", &callbacks, p);
	assert_non_null(p->relay[1]);
	event_base_loop(p->base, EVLOOP_NONBLOCK);   /* binds the listener */
	fd = socket(AF_INET, SOCK_STREAM, 0);
	sin.sin_port = htons(p->cfg[1].relay.port);
	inet_pton(AF_INET, "127.0.0.2", &sin.sin_addr);
	assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(write(fd, junk, sizeof(junk) - 1), (ssize_t)(sizeof(junk) - 1));
	assert_true(run_until(p, garbage_refused, 5000));
	close(fd);

	pair_stop(p);
	free(p);
}

int main(void)
{
	const char *src = getenv("STRAIT_SOURCE_DIR");
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dial_rule),
		cmocka_unit_test(test_backoff_bounds),
		cmocka_unit_test(test_backoff_sequence),
		cmocka_unit_test(test_link_in_process),
		cmocka_unit_test(test_refusals_in_process),
	};

	snprintf(data_dir, sizeof(data_dir), "%s/tests/unit/data/tls", src ? src : ".");
	tls_data_private_copy(data_dir, sizeof(data_dir));  /* keys must be 0600 */
	log_init("test_relay");
	log_set_level(getenv("TEST_RELAY_VERBOSE") ? LOG_LEVEL_DEBUG : LOG_LEVEL_FATAL);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
