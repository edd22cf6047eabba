/*
 * test_uapi.c — the UAPI codec: "set" requests as text, "get" replies parsed
 * into the device model, errno handling (negated and positive), and
 * malformed replies refused without crashing or echoing secrets.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tunnel/uapi.h"

#define K1 "1111111111111111111111111111111111111111111111111111111111111111"
#define K2 "2222222222222222222222222222222222222222222222222222222222222222"
#define PRIV "a8a8a8a8a8a8a8a8a8a8a8a8a8a8a8a8a8a8a8a8a8a8a8a8a8a8a8a8a8a8a868"
#define ZERO "0000000000000000000000000000000000000000000000000000000000000000"

/* What wireguard-go 0.0.20220316 answers, captured from a live device. */
static const char get_reply[] =
	"private_key=" PRIV "\n"
	"listen_port=51999\n"
	"public_key=" K1 "\n"
	"preshared_key=" ZERO "\n"
	"protocol_version=1\n"
	"endpoint=192.0.2.9:5000\n"
	"last_handshake_time_sec=1700000000\n"
	"last_handshake_time_nsec=123456789\n"
	"tx_bytes=1024\n"
	"rx_bytes=18446744073709551615\n"
	"persistent_keepalive_interval=25\n"
	"allowed_ip=10.1.0.2/32\n"
	"allowed_ip=10.9.0.0/16\n"
	"public_key=" K2 "\n"
	"preshared_key=" ZERO "\n"
	"protocol_version=1\n"
	"endpoint=[2001:db8::1]:51820\n"
	"last_handshake_time_sec=0\n"
	"last_handshake_time_nsec=0\n"
	"tx_bytes=0\n"
	"rx_bytes=0\n"
	"persistent_keepalive_interval=0\n"
	"allowed_ip=fd00::2/128\n"
	"errno=0\n"
	"\n";

static int parse(const char *text, struct wgdev **dev, char *err, size_t errlen)
{
	return uapi_parse_get(text, strlen(text), dev, err, errlen);
}

static void test_parse_get(void **state)
{
	struct wgdev *dev;
	char err[256], text[64];
	const struct wgdev_peer *p;

	(void)state;
	assert_int_equal(parse(get_reply, &dev, err, sizeof(err)), 0);
	assert_true(dev->flags & WGDEV_HAS_PRIVATE_KEY);
	assert_int_equal(dev->private_key[31], 0x68);
	assert_true(dev->flags & WGDEV_HAS_LISTEN_PORT);
	assert_int_equal(dev->listen_port, 51999);
	assert_int_equal(dev->n_peers, 2);

	p = &dev->peers[0];
	assert_int_equal(p->public_key[0], 0x11);
	assert_true(wgdev_endpoint_format(&p->endpoint, text, sizeof(text)));
	assert_string_equal(text, "192.0.2.9:5000");
	assert_int_equal(p->last_handshake_sec, 1700000000);
	assert_int_equal(p->last_handshake_nsec, 123456789);
	assert_int_equal(p->tx_bytes, 1024);
	assert_true(p->rx_bytes == UINT64_MAX);
	assert_int_equal(p->keepalive, 25);
	assert_int_equal(p->n_allowedips, 2);
	assert_true(wgdev_allowedip_format(&p->allowedips[1], text, sizeof(text)));
	assert_string_equal(text, "10.9.0.0/16");

	p = &dev->peers[1];
	assert_int_equal(p->public_key[0], 0x22);
	assert_true(wgdev_endpoint_format(&p->endpoint, text, sizeof(text)));
	assert_string_equal(text, "[2001:db8::1]:51820");
	assert_int_equal(p->last_handshake_sec, 0);
	assert_int_equal(p->n_allowedips, 1);
	assert_int_equal(p->allowedips[0].family, AF_INET6);
	assert_int_equal(p->allowedips[0].cidr, 128);
	wgdev_free(dev);
}

static void test_parse_minimal_and_unknown_keys(void **state)
{
	struct wgdev *dev;
	char err[256];

	(void)state;
	/* A fresh device: no key, no peers. */
	assert_int_equal(parse("listen_port=0\nerrno=0\n\n", &dev, err, sizeof(err)), 0);
	assert_int_equal(dev->n_peers, 0);
	assert_false(dev->flags & WGDEV_HAS_PRIVATE_KEY);
	wgdev_free(dev);
	/* Keys a newer server might add are skipped. */
	assert_int_equal(parse("listen_port=1\nfuture_key=x\npublic_key=" K1 "\nfuture_peer=1\n"
			       "errno=0\n\n", &dev, err, sizeof(err)), 0);
	assert_int_equal(dev->n_peers, 1);
	wgdev_free(dev);
}

static void test_errno(void **state)
{
	struct wgdev *dev = (struct wgdev *)1;
	char err[256];

	(void)state;
	/* wireguard-go negates errno, boringtun does not: both are failures. */
	assert_int_equal(parse("errno=-22\n\n", &dev, err, sizeof(err)), -EINVAL);
	assert_null(dev);
	assert_non_null(strstr(err, "Invalid argument"));
	assert_int_equal(parse("errno=22\n\n", &dev, err, sizeof(err)), -EINVAL);
	assert_int_equal(parse("listen_port=1\nerrno=-5\n\n", &dev, err, sizeof(err)), -EIO);

	assert_int_equal(uapi_parse_errno("errno=0\n\n", 9, err, sizeof(err)), 0);
	assert_int_equal(uapi_parse_errno("errno=-22\n\n", 11, err, sizeof(err)), -EINVAL);
	assert_int_equal(uapi_parse_errno("errno=1\n\n", 9, err, sizeof(err)), -EPERM);
	assert_int_equal(uapi_parse_errno("errno=\n\n", 8, err, sizeof(err)), -EPROTO);
	assert_int_equal(uapi_parse_errno("errno=0\n", 8, err, sizeof(err)), -EPROTO);
	assert_int_equal(uapi_parse_errno("errno=0\n\nx", 10, err, sizeof(err)), -EPROTO);
	assert_int_equal(uapi_parse_errno("", 0, err, sizeof(err)), -EPROTO);
	assert_int_equal(uapi_parse_errno("errno=99999\n\n", 13, err, sizeof(err)), -EPROTO);
	assert_int_equal(uapi_parse_errno("errno=--1\n\n", 11, err, sizeof(err)), -EPROTO);
}

static void test_malformed(void **state)
{
	static const char *const bad[] = {
		"",                                             /* nothing */
		"listen_port=1\n",                              /* no errno */
		"listen_port=1\nerrno=0\n",                     /* no blank line */
		"listen_port=1\nerrno=0\n\nmore\n",             /* data after the end */
		"listen_port\nerrno=0\n\n",                     /* not key=value */
		"=1\nerrno=0\n\n",                              /* empty key */
		"listen_port=65536\nerrno=0\n\n",               /* out of range */
		"listen_port=-1\nerrno=0\n\n",
		"listen_port= 1\nerrno=0\n\n",
		"listen_port=\nerrno=0\n\n",
		"private_key=abc\nerrno=0\n\n",                 /* short key */
		"public_key=" K1 "x\nerrno=0\n\n",              /* long key */
		"public_key=" K1 "\nendpoint=example.net:1\nerrno=0\n\n", /* names are refused */
		"public_key=" K1 "\nendpoint=192.0.2.1\nerrno=0\n\n",
		"public_key=" K1 "\nendpoint=[::1:1\nerrno=0\n\n",
		"public_key=" K1 "\nallowed_ip=10.0.0.1/33\nerrno=0\n\n",
		"public_key=" K1 "\nallowed_ip=10.0.0.1\nerrno=0\n\n",
		"public_key=" K1 "\nrx_bytes=18446744073709551616\nerrno=0\n\n",
		"public_key=" K1 "\nlast_handshake_time_nsec=1000000000\nerrno=0\n\n",
		"public_key=" K1 "\npersistent_keepalive_interval=65536\nerrno=0\n\n",
		"public_key=" K1 "\npreshared_key=zz\nerrno=0\n\n",
		"listen_port=1\nerrno=x\n\n",
	};
	struct wgdev *dev;
	char err[256];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = parse(bad[i], &dev, err, sizeof(err));

		if (rc != -EPROTO)
			fail_msg("case %zu: rc %d, want -EPROTO", i, rc);
		assert_null(dev);
		assert_non_null(strstr(err, "malformed UAPI reply"));
	}
	/* A NUL byte inside a line. */
	assert_int_equal(uapi_parse_get("listen_port=1\0\nerrno=0\n\n", 24, &dev, err, sizeof(err)),
			 -EPROTO);
	/* A line longer than any valid one. */
	{
		char big[600];

		memset(big, 'a', sizeof(big));
		memcpy(big, "x=", 2);
		memcpy(big + sizeof(big) - 10, "\nerrno=0\n\n", 10);
		assert_int_equal(uapi_parse_get(big, sizeof(big), &dev, err, sizeof(err)), -EPROTO);
	}
}

static void test_malformed_private_key_not_echoed(void **state)
{
	struct wgdev *dev;
	char err[256];

	(void)state;
	assert_int_equal(parse("private_key=" PRIV "zz\nerrno=0\n\n", &dev, err, sizeof(err)),
			 -EPROTO);
	assert_null(strstr(err, "a8a8"));
	assert_non_null(strstr(err, "private_key"));
}

static void test_format_set(void **state)
{
	struct wgdev *dev = wgdev_new();
	struct wgdev_peer *p;
	struct wgdev_allowedip ip;
	uint8_t k[WG_KEY_LEN];
	char *req;
	size_t len;

	(void)state;
	memset(dev->private_key, 0xa8, WG_KEY_LEN);
	dev->listen_port = 51820;
	dev->flags = WGDEV_HAS_PRIVATE_KEY | WGDEV_HAS_LISTEN_PORT;
	memset(k, 0x11, sizeof(k));
	p = wgdev_add_peer(dev, k);
	p->flags = WGPEER_HAS_ENDPOINT | WGPEER_HAS_KEEPALIVE | WGPEER_REPLACE_ALLOWEDIPS;
	assert_true(wgdev_endpoint_parse("192.0.2.2:51820", &p->endpoint));
	p->keepalive = 25;
	assert_true(wgdev_allowedip_parse("10.77.0.2/32", &ip));
	assert_true(wgdev_peer_add_allowedip(p, &ip));
	memset(k, 0x22, sizeof(k));
	p = wgdev_add_peer(dev, k);
	p->flags = WGPEER_UPDATE_ONLY | WGPEER_HAS_ENDPOINT;
	assert_true(wgdev_endpoint_parse("[2001:db8::2]:1", &p->endpoint));
	memset(k, 0x33, sizeof(k));
	p = wgdev_add_peer(dev, k);
	p->flags = WGPEER_REMOVE | WGPEER_HAS_KEEPALIVE;

	req = uapi_format_set(dev, &len);
	assert_non_null(req);
	assert_int_equal(len, strlen(req));
	assert_string_equal(req,
		"set=1\n"
		"private_key=a8a8a8a8a8a8a8a8a8a8a8a8a8a8a8a8a8a8a8a8a8a8a8a8a8a8a8a8a8a8a8a8\n"
		"listen_port=51820\n"
		"public_key=" K1 "\n"
		"endpoint=192.0.2.2:51820\n"
		"persistent_keepalive_interval=25\n"
		"replace_allowed_ips=true\n"
		"allowed_ip=10.77.0.2/32\n"
		"public_key=" K2 "\n"
		"update_only=true\n"
		"endpoint=[2001:db8::2]:1\n"
		"public_key=3333333333333333333333333333333333333333333333333333333333333333\n"
		"remove=true\n"
		"\n");
	uapi_request_free(req, len);

	/* Nothing to change: just the header and the blank line. */
	dev->n_peers = 0;
	dev->flags = WGDEV_REPLACE_PEERS;
	req = uapi_format_set(dev, &len);
	assert_string_equal(req, "set=1\nreplace_peers=true\n\n");
	uapi_request_free(req, len);
	dev->n_peers = 3;
	wgdev_free(dev);
}

static void test_model_helpers(void **state)
{
	union wgdev_endpoint a, b;
	struct wgdev_allowedip ip, net;
	uint8_t addr[4] = { 10, 77, 1, 9 };
	char text[64];

	(void)state;
	assert_true(wgdev_endpoint_parse("192.0.2.1:51820", &a));
	assert_true(wgdev_endpoint_parse("192.0.2.1:51820", &b));
	assert_true(wgdev_endpoint_equal(&a, &b));
	assert_true(wgdev_endpoint_parse("192.0.2.1:51821", &b));
	assert_false(wgdev_endpoint_equal(&a, &b));
	assert_false(wgdev_endpoint_parse("192.0.2.1:", &a));
	assert_false(wgdev_endpoint_parse("192.0.2.1:70000", &a));
	assert_false(wgdev_endpoint_parse(":1", &a));
	assert_false(wgdev_endpoint_parse("[]:1", &a));
	memset(&a, 0, sizeof(a));
	assert_true(wgdev_endpoint_format(&a, text, sizeof(text)));
	assert_string_equal(text, "");
	assert_false(wgdev_endpoint_set(&a));

	assert_true(wgdev_allowedip_parse("10.77.1.200/24", &net));
	assert_true(wgdev_allowedip_format(&net, text, sizeof(text)));
	assert_string_equal(text, "10.77.1.0/24");
	assert_true(wgdev_allowedip_contains(&net, AF_INET, addr));
	addr[2] = 2;
	assert_false(wgdev_allowedip_contains(&net, AF_INET, addr));
	assert_true(wgdev_allowedip_parse("fd00::1:2/112", &ip));
	assert_true(wgdev_allowedip_format(&ip, text, sizeof(text)));
	assert_string_equal(text, "fd00::1:0/112");
	assert_true(wgdev_allowedip_parse("0.0.0.0/0", &ip));
	assert_true(wgdev_allowedip_contains(&ip, AF_INET, addr));
	assert_false(wgdev_allowedip_parse("10.0.0.0/", &ip));
	assert_false(wgdev_allowedip_parse("10.0.0.0/1x", &ip));
}

static void test_socket_path(void **state)
{
	char path[108];

	(void)state;
	assert_true(uapi_socket_path("strait0", path, sizeof(path)));
	assert_string_equal(path, "/var/run/wireguard/strait0.sock");
	assert_false(uapi_socket_path("", path, sizeof(path)));
	assert_false(uapi_socket_path("../etc", path, sizeof(path)));
	assert_false(uapi_socket_path("..", path, sizeof(path)));
	assert_false(uapi_socket_path("sixteen-chars-xx", path, sizeof(path)));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_get),
		cmocka_unit_test(test_parse_minimal_and_unknown_keys),
		cmocka_unit_test(test_errno),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_malformed_private_key_not_echoed),
		cmocka_unit_test(test_format_set),
		cmocka_unit_test(test_model_helpers),
		cmocka_unit_test(test_socket_path),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
