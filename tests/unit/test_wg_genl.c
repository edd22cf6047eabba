/*
 * test_wg_genl.c — WireGuard's generic netlink messages checked byte by byte
 * against <linux/wireguard.h>: attribute types, nesting (NLA_F_NESTED), flags
 * and payload layouts; splitting of large set requests; parsing of get dumps
 * including a peer continued across messages; malformed replies refused.
 * The machine has no WireGuard module, so nothing here talks to a kernel.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <libmnl/libmnl.h>
#include <linux/genetlink.h>
#include <linux/netlink.h>
#include <linux/wireguard.h>

#include "tunnel/wg_genl.h"

#define FAMILY 0x1d

/* The wire ABI: these numbers may never change (linux/wireguard.h). */
static void test_abi_constants(void **state)
{
	(void)state;
	assert_int_equal(WG_CMD_GET_DEVICE, 0);
	assert_int_equal(WG_CMD_SET_DEVICE, 1);
	assert_int_equal(WGDEVICE_A_IFINDEX, 1);
	assert_int_equal(WGDEVICE_A_IFNAME, 2);
	assert_int_equal(WGDEVICE_A_PRIVATE_KEY, 3);
	assert_int_equal(WGDEVICE_A_FLAGS, 5);
	assert_int_equal(WGDEVICE_A_LISTEN_PORT, 6);
	assert_int_equal(WGDEVICE_A_PEERS, 8);
	assert_int_equal(WGPEER_A_PUBLIC_KEY, 1);
	assert_int_equal(WGPEER_A_FLAGS, 3);
	assert_int_equal(WGPEER_A_ENDPOINT, 4);
	assert_int_equal(WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL, 5);
	assert_int_equal(WGPEER_A_LAST_HANDSHAKE_TIME, 6);
	assert_int_equal(WGPEER_A_ALLOWEDIPS, 9);
	assert_int_equal(WGALLOWEDIP_A_FAMILY, 1);
	assert_int_equal(WGALLOWEDIP_A_IPADDR, 2);
	assert_int_equal(WGALLOWEDIP_A_CIDR_MASK, 3);
	assert_int_equal(WGDEVICE_F_REPLACE_PEERS, 1);
	assert_int_equal(WGPEER_F_REMOVE_ME, 1);
	assert_int_equal(WGPEER_F_REPLACE_ALLOWEDIPS, 2);
	assert_int_equal(WGPEER_F_UPDATE_ONLY, 4);
}

/* ---- raw attribute walking, independent of the code under test ---- */

struct raw {
	const uint8_t *p;
	size_t len;
};

static struct raw raw_payload(const struct nlmsghdr *nlh)
{
	struct raw r;

	r.p = (const uint8_t *)nlh + NLMSG_HDRLEN + NLA_ALIGN(sizeof(struct genlmsghdr));
	r.len = nlh->nlmsg_len - NLMSG_HDRLEN - NLA_ALIGN(sizeof(struct genlmsghdr));
	return r;
}

/* The i-th attribute of a run; its nested payload in *inner. */
static const struct nlattr *raw_attr(struct raw run, size_t index, struct raw *inner)
{
	size_t off = 0, i = 0;

	while (off + NLA_HDRLEN <= run.len) {
		const struct nlattr *a = (const struct nlattr *)(run.p + off);

		assert_true(a->nla_len >= NLA_HDRLEN);
		assert_true(off + a->nla_len <= run.len);
		if (i == index) {
			if (inner) {
				inner->p = (const uint8_t *)a + NLA_HDRLEN;
				inner->len = a->nla_len - NLA_HDRLEN;
			}
			return a;
		}
		off += NLA_ALIGN(a->nla_len);
		i++;
	}
	return NULL;
}

static size_t raw_count(struct raw run)
{
	size_t n = 0;

	while (raw_attr(run, n, NULL))
		n++;
	return n;
}

static const void *raw_data(const struct nlattr *a)
{
	return (const uint8_t *)a + NLA_HDRLEN;
}

static uint16_t raw_u16(const struct nlattr *a)
{
	uint16_t v;

	assert_int_equal(a->nla_len, NLA_HDRLEN + 2);
	memcpy(&v, raw_data(a), 2);
	return v;
}

static uint32_t raw_u32(const struct nlattr *a)
{
	uint32_t v;

	assert_int_equal(a->nla_len, NLA_HDRLEN + 4);
	memcpy(&v, raw_data(a), 4);
	return v;
}

static void key_fill(uint8_t k[WG_KEY_LEN], uint8_t v)
{
	memset(k, v, WG_KEY_LEN);
}

static struct wgdev *sample_device(void)
{
	struct wgdev *dev = wgdev_new();
	struct wgdev_peer *p;
	struct wgdev_allowedip ip;
	uint8_t k[WG_KEY_LEN];

	strcpy(dev->name, "strait0");
	key_fill(dev->private_key, 0xa5);
	dev->listen_port = 51820;
	dev->flags = WGDEV_HAS_PRIVATE_KEY | WGDEV_HAS_LISTEN_PORT | WGDEV_REPLACE_PEERS;
	key_fill(k, 0x11);
	p = wgdev_add_peer(dev, k);
	p->flags = WGPEER_HAS_ENDPOINT | WGPEER_HAS_KEEPALIVE | WGPEER_REPLACE_ALLOWEDIPS;
	assert_true(wgdev_endpoint_parse("192.0.2.2:51820", &p->endpoint));
	p->keepalive = 25;
	assert_true(wgdev_allowedip_parse("10.77.0.2/32", &ip));
	assert_true(wgdev_peer_add_allowedip(p, &ip));
	assert_true(wgdev_allowedip_parse("fd00::2/128", &ip));
	assert_true(wgdev_peer_add_allowedip(p, &ip));
	key_fill(k, 0x22);
	p = wgdev_add_peer(dev, k);
	p->flags = WGPEER_REMOVE;
	key_fill(k, 0x33);
	p = wgdev_add_peer(dev, k);
	p->flags = WGPEER_UPDATE_ONLY | WGPEER_HAS_ENDPOINT;
	assert_true(wgdev_endpoint_parse("[2001:db8::3]:4000", &p->endpoint));
	return dev;
}

static void test_build_set_layout(void **state)
{
	uint8_t buf[8192];
	struct wg_genl_cursor cur = { 0 };
	struct wgdev *dev = sample_device();
	const struct nlmsghdr *nlh = (const struct nlmsghdr *)buf;
	const struct genlmsghdr *genl;
	const struct nlattr *a;
	struct raw top, peers, peer, ips, ip;
	struct sockaddr_in sin;
	struct sockaddr_in6 sin6;
	size_t len;

	(void)state;
	len = wg_genl_build_set(buf, sizeof(buf), FAMILY, 42, dev, &cur);
	assert_true(len > 0);
	assert_true(cur.done);
	assert_int_equal(nlh->nlmsg_len, len);
	assert_int_equal(nlh->nlmsg_type, FAMILY);
	assert_int_equal(nlh->nlmsg_flags, NLM_F_REQUEST | NLM_F_ACK);
	assert_int_equal(nlh->nlmsg_seq, 42);
	genl = (const struct genlmsghdr *)(buf + NLMSG_HDRLEN);
	assert_int_equal(genl->cmd, WG_CMD_SET_DEVICE);
	assert_int_equal(genl->version, WG_GENL_VERSION);

	top = raw_payload(nlh);
	assert_int_equal(raw_count(top), 5);
	a = raw_attr(top, 0, NULL);
	assert_int_equal(a->nla_type, WGDEVICE_A_IFNAME);
	assert_int_equal(a->nla_len, NLA_HDRLEN + strlen("strait0") + 1);
	assert_string_equal(raw_data(a), "strait0");
	a = raw_attr(top, 1, NULL);
	assert_int_equal(a->nla_type, WGDEVICE_A_PRIVATE_KEY);
	assert_int_equal(a->nla_len, NLA_HDRLEN + WG_KEY_LEN);
	assert_int_equal(((const uint8_t *)raw_data(a))[0], 0xa5);
	a = raw_attr(top, 2, NULL);
	assert_int_equal(a->nla_type, WGDEVICE_A_LISTEN_PORT);
	assert_int_equal(raw_u16(a), 51820);   /* host byte order, NLA_U16 */
	a = raw_attr(top, 3, NULL);
	assert_int_equal(a->nla_type, WGDEVICE_A_FLAGS);
	assert_int_equal(raw_u32(a), WGDEVICE_F_REPLACE_PEERS);
	a = raw_attr(top, 4, &peers);
	assert_int_equal(a->nla_type, WGDEVICE_A_PEERS | NLA_F_NESTED);
	assert_int_equal(raw_count(peers), 3);

	/* Peer 0: key, flags, endpoint, keepalive, allowed IPs. */
	a = raw_attr(peers, 0, &peer);
	assert_true(a->nla_type & NLA_F_NESTED);
	assert_int_equal(raw_count(peer), 5);
	a = raw_attr(peer, 0, NULL);
	assert_int_equal(a->nla_type, WGPEER_A_PUBLIC_KEY);
	assert_int_equal(a->nla_len, NLA_HDRLEN + WG_KEY_LEN);
	a = raw_attr(peer, 1, NULL);
	assert_int_equal(a->nla_type, WGPEER_A_FLAGS);
	assert_int_equal(raw_u32(a), WGPEER_F_REPLACE_ALLOWEDIPS);
	a = raw_attr(peer, 2, NULL);
	assert_int_equal(a->nla_type, WGPEER_A_ENDPOINT);
	assert_int_equal(a->nla_len, NLA_HDRLEN + sizeof(struct sockaddr_in));
	memcpy(&sin, raw_data(a), sizeof(sin));
	assert_int_equal(sin.sin_family, AF_INET);
	assert_int_equal(ntohs(sin.sin_port), 51820);
	assert_int_equal(ntohl(sin.sin_addr.s_addr), 0xc0000202);
	a = raw_attr(peer, 3, NULL);
	assert_int_equal(a->nla_type, WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL);
	assert_int_equal(raw_u16(a), 25);
	a = raw_attr(peer, 4, &ips);
	assert_int_equal(a->nla_type, WGPEER_A_ALLOWEDIPS | NLA_F_NESTED);
	assert_int_equal(raw_count(ips), 2);
	a = raw_attr(ips, 0, &ip);
	assert_true(a->nla_type & NLA_F_NESTED);
	assert_int_equal(raw_attr(ip, 0, NULL)->nla_type, WGALLOWEDIP_A_FAMILY);
	assert_int_equal(raw_u16(raw_attr(ip, 0, NULL)), AF_INET);
	assert_int_equal(raw_attr(ip, 1, NULL)->nla_type, WGALLOWEDIP_A_IPADDR);
	assert_int_equal(raw_attr(ip, 1, NULL)->nla_len, NLA_HDRLEN + 4);
	assert_memory_equal(raw_data(raw_attr(ip, 1, NULL)), "\x0a\x4d\x00\x02", 4);
	assert_int_equal(raw_attr(ip, 2, NULL)->nla_type, WGALLOWEDIP_A_CIDR_MASK);
	assert_int_equal(raw_attr(ip, 2, NULL)->nla_len, NLA_HDRLEN + 1);
	assert_int_equal(*(const uint8_t *)raw_data(raw_attr(ip, 2, NULL)), 32);
	raw_attr(ips, 1, &ip);
	assert_int_equal(raw_u16(raw_attr(ip, 0, NULL)), AF_INET6);
	assert_int_equal(raw_attr(ip, 1, NULL)->nla_len, NLA_HDRLEN + 16);
	assert_int_equal(*(const uint8_t *)raw_data(raw_attr(ip, 2, NULL)), 128);

	/* Peer 1: removal carries only the key and WGPEER_F_REMOVE_ME. */
	raw_attr(peers, 1, &peer);
	assert_int_equal(raw_count(peer), 2);
	assert_int_equal(raw_attr(peer, 1, NULL)->nla_type, WGPEER_A_FLAGS);
	assert_int_equal(raw_u32(raw_attr(peer, 1, NULL)), WGPEER_F_REMOVE_ME);

	/* Peer 2: update only, IPv6 endpoint as a struct sockaddr_in6. */
	raw_attr(peers, 2, &peer);
	assert_int_equal(raw_count(peer), 3);
	assert_int_equal(raw_u32(raw_attr(peer, 1, NULL)), WGPEER_F_UPDATE_ONLY);
	a = raw_attr(peer, 2, NULL);
	assert_int_equal(a->nla_type, WGPEER_A_ENDPOINT);
	assert_int_equal(a->nla_len, NLA_HDRLEN + sizeof(struct sockaddr_in6));
	memcpy(&sin6, raw_data(a), sizeof(sin6));
	assert_int_equal(sin6.sin6_family, AF_INET6);
	assert_int_equal(ntohs(sin6.sin6_port), 4000);

	/* Done: no further message. */
	assert_int_equal(wg_genl_build_set(buf, sizeof(buf), FAMILY, 43, dev, &cur), 0);
	wgdev_free(dev);
}

static void test_build_get_and_family(void **state)
{
	uint8_t buf[512];
	const struct nlmsghdr *nlh = (const struct nlmsghdr *)buf;
	const struct genlmsghdr *genl = (const struct genlmsghdr *)(buf + NLMSG_HDRLEN);
	const struct nlattr *a;
	size_t len;

	(void)state;
	len = wg_genl_build_get(buf, sizeof(buf), FAMILY, 7, "strait0");
	assert_true(len > 0);
	assert_int_equal(nlh->nlmsg_type, FAMILY);
	assert_int_equal(nlh->nlmsg_flags, NLM_F_REQUEST | NLM_F_ACK | NLM_F_DUMP);
	assert_int_equal(genl->cmd, WG_CMD_GET_DEVICE);
	assert_int_equal(genl->version, WG_GENL_VERSION);
	a = raw_attr(raw_payload(nlh), 0, NULL);
	assert_int_equal(a->nla_type, WGDEVICE_A_IFNAME);
	assert_string_equal(raw_data(a), "strait0");
	assert_int_equal(wg_genl_build_get(buf, sizeof(buf), FAMILY, 7, "much-too-long-name"), 0);
	assert_int_equal(wg_genl_build_get(buf, 16, FAMILY, 7, "strait0"), 0);

	len = wg_genl_build_getfamily(buf, sizeof(buf), 9);
	assert_true(len > 0);
	assert_int_equal(nlh->nlmsg_type, GENL_ID_CTRL);
	assert_int_equal(genl->cmd, CTRL_CMD_GETFAMILY);
	a = raw_attr(raw_payload(nlh), 0, NULL);
	assert_int_equal(a->nla_type, CTRL_ATTR_FAMILY_NAME);
	assert_string_equal(raw_data(a), WG_GENL_NAME);
}

static void test_parse_family(void **state)
{
	uint8_t buf[512];
	struct nlmsghdr *nlh;
	struct genlmsghdr *genl;
	uint16_t family = 0;

	(void)state;
	memset(buf, 0, sizeof(buf));
	nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = GENL_ID_CTRL;
	genl = mnl_nlmsg_put_extra_header(nlh, sizeof(*genl));
	genl->cmd = CTRL_CMD_NEWFAMILY;
	mnl_attr_put_strz(nlh, CTRL_ATTR_FAMILY_NAME, WG_GENL_NAME);
	assert_int_equal(wg_genl_parse_family(nlh, &family), -ENOENT);
	mnl_attr_put_u16(nlh, CTRL_ATTR_FAMILY_ID, 0x21);
	assert_int_equal(wg_genl_parse_family(nlh, &family), 0);
	assert_int_equal(family, 0x21);
}

/* A dump reply as the kernel writes it. */
static struct nlmsghdr *dump_header(uint8_t *buf, size_t len)
{
	struct nlmsghdr *nlh;
	struct genlmsghdr *genl;

	memset(buf, 0, len);
	nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = FAMILY;
	nlh->nlmsg_flags = NLM_F_MULTI;
	genl = mnl_nlmsg_put_extra_header(nlh, sizeof(*genl));
	genl->cmd = WG_CMD_GET_DEVICE;
	genl->version = WG_GENL_VERSION;
	mnl_attr_put_u32(nlh, WGDEVICE_A_IFINDEX, 7);
	mnl_attr_put_strz(nlh, WGDEVICE_A_IFNAME, "strait0");
	return nlh;
}

static void dump_allowedip(struct nlmsghdr *nlh, uint16_t family, const void *addr, uint8_t cidr)
{
	struct nlattr *n = mnl_attr_nest_start(nlh, 0);

	mnl_attr_put_u16(nlh, WGALLOWEDIP_A_FAMILY, family);
	mnl_attr_put(nlh, WGALLOWEDIP_A_IPADDR, family == AF_INET ? 4 : 16, addr);
	mnl_attr_put_u8(nlh, WGALLOWEDIP_A_CIDR_MASK, cidr);
	mnl_attr_nest_end(nlh, n);
}

static void test_parse_dump(void **state)
{
	uint8_t buf1[4096], buf2[4096], key[WG_KEY_LEN];
	struct nlmsghdr *nlh;
	struct nlattr *peers, *peer, *ips;
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(51820) };
	int64_t ts[2] = { 1700000000, 5 };
	uint8_t a1[4] = { 10, 77, 0, 2 }, a2[4] = { 10, 99, 0, 0 }, a3[16] = { 0xfd };
	struct wgdev *dev = wgdev_new();
	char text[64];

	(void)state;
	sin.sin_addr.s_addr = htonl(0xc0000202);

	/* Message 1: device fields and the start of peer 0x11. */
	nlh = dump_header(buf1, sizeof(buf1));
	key_fill(key, 0x5a);
	mnl_attr_put(nlh, WGDEVICE_A_PRIVATE_KEY, WG_KEY_LEN, key);
	key_fill(key, 0x5b);
	mnl_attr_put(nlh, WGDEVICE_A_PUBLIC_KEY, WG_KEY_LEN, key);
	mnl_attr_put_u16(nlh, WGDEVICE_A_LISTEN_PORT, 51820);
	mnl_attr_put_u32(nlh, WGDEVICE_A_FWMARK, 0);
	peers = mnl_attr_nest_start(nlh, WGDEVICE_A_PEERS);
	peer = mnl_attr_nest_start(nlh, 0);
	key_fill(key, 0x11);
	mnl_attr_put(nlh, WGPEER_A_PUBLIC_KEY, WG_KEY_LEN, key);
	key_fill(key, 0);
	mnl_attr_put(nlh, WGPEER_A_PRESHARED_KEY, WG_KEY_LEN, key);
	mnl_attr_put(nlh, WGPEER_A_ENDPOINT, sizeof(sin), &sin);
	mnl_attr_put_u16(nlh, WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL, 25);
	mnl_attr_put(nlh, WGPEER_A_LAST_HANDSHAKE_TIME, sizeof(ts), ts);
	mnl_attr_put_u64(nlh, WGPEER_A_RX_BYTES, 1000);
	mnl_attr_put_u64(nlh, WGPEER_A_TX_BYTES, 2000);
	mnl_attr_put_u32(nlh, WGPEER_A_PROTOCOL_VERSION, 1);
	ips = mnl_attr_nest_start(nlh, WGPEER_A_ALLOWEDIPS);
	dump_allowedip(nlh, AF_INET, a1, 32);
	mnl_attr_nest_end(nlh, ips);
	mnl_attr_nest_end(nlh, peer);
	mnl_attr_nest_end(nlh, peers);
	assert_int_equal(wg_genl_parse_device(nlh, dev), 0);

	/* Message 2: peer 0x11 continued (key and more IPs), then peer 0x22. */
	nlh = dump_header(buf2, sizeof(buf2));
	peers = mnl_attr_nest_start(nlh, WGDEVICE_A_PEERS);
	peer = mnl_attr_nest_start(nlh, 0);
	key_fill(key, 0x11);
	mnl_attr_put(nlh, WGPEER_A_PUBLIC_KEY, WG_KEY_LEN, key);
	ips = mnl_attr_nest_start(nlh, WGPEER_A_ALLOWEDIPS);
	dump_allowedip(nlh, AF_INET, a2, 16);
	dump_allowedip(nlh, AF_INET6, a3, 8);
	mnl_attr_nest_end(nlh, ips);
	mnl_attr_nest_end(nlh, peer);
	peer = mnl_attr_nest_start(nlh, 1);
	key_fill(key, 0x22);
	mnl_attr_put(nlh, WGPEER_A_PUBLIC_KEY, WG_KEY_LEN, key);
	mnl_attr_nest_end(nlh, peer);
	mnl_attr_nest_end(nlh, peers);
	assert_int_equal(wg_genl_parse_device(nlh, dev), 0);

	assert_string_equal(dev->name, "strait0");
	assert_int_equal(dev->ifindex, 7);
	assert_true(dev->flags & WGDEV_HAS_PRIVATE_KEY);
	assert_int_equal(dev->private_key[0], 0x5a);
	assert_int_equal(dev->public_key[0], 0x5b);
	assert_int_equal(dev->listen_port, 51820);
	assert_int_equal(dev->n_peers, 2);
	assert_int_equal(dev->peers[0].n_allowedips, 3);
	assert_true(wgdev_allowedip_format(&dev->peers[0].allowedips[1], text, sizeof(text)));
	assert_string_equal(text, "10.99.0.0/16");
	assert_true(wgdev_allowedip_format(&dev->peers[0].allowedips[2], text, sizeof(text)));
	assert_string_equal(text, "fd00::/8");
	assert_true(wgdev_endpoint_format(&dev->peers[0].endpoint, text, sizeof(text)));
	assert_string_equal(text, "192.0.2.2:51820");
	assert_int_equal(dev->peers[0].keepalive, 25);
	assert_int_equal(dev->peers[0].last_handshake_sec, 1700000000);
	assert_int_equal(dev->peers[0].last_handshake_nsec, 5);
	assert_int_equal(dev->peers[0].rx_bytes, 1000);
	assert_int_equal(dev->peers[0].tx_bytes, 2000);
	assert_int_equal(dev->peers[1].public_key[0], 0x22);
	assert_int_equal(dev->peers[1].n_allowedips, 0);
	wgdev_free(dev);
}

static void test_parse_malformed(void **state)
{
	uint8_t buf[1024], key[WG_KEY_LEN];
	struct nlmsghdr *nlh;
	struct nlattr *peers, *peer, *ips;
	struct wgdev *dev;
	uint8_t a[4] = { 10, 0, 0, 1 };

	(void)state;
	key_fill(key, 1);

	/* A short private key. */
	nlh = dump_header(buf, sizeof(buf));
	mnl_attr_put(nlh, WGDEVICE_A_PRIVATE_KEY, 31, key);
	dev = wgdev_new();
	assert_int_equal(wg_genl_parse_device(nlh, dev), -EPROTO);
	wgdev_free(dev);

	/* A peer without a public key. */
	nlh = dump_header(buf, sizeof(buf));
	peers = mnl_attr_nest_start(nlh, WGDEVICE_A_PEERS);
	peer = mnl_attr_nest_start(nlh, 0);
	mnl_attr_put_u64(nlh, WGPEER_A_RX_BYTES, 1);
	mnl_attr_nest_end(nlh, peer);
	mnl_attr_nest_end(nlh, peers);
	dev = wgdev_new();
	assert_int_equal(wg_genl_parse_device(nlh, dev), -EPROTO);
	wgdev_free(dev);

	/* An endpoint of the wrong size for its family. */
	nlh = dump_header(buf, sizeof(buf));
	peers = mnl_attr_nest_start(nlh, WGDEVICE_A_PEERS);
	peer = mnl_attr_nest_start(nlh, 0);
	mnl_attr_put(nlh, WGPEER_A_PUBLIC_KEY, WG_KEY_LEN, key);
	{
		struct sockaddr_in sin = { .sin_family = AF_INET6 };

		mnl_attr_put(nlh, WGPEER_A_ENDPOINT, sizeof(sin), &sin);
	}
	mnl_attr_nest_end(nlh, peer);
	mnl_attr_nest_end(nlh, peers);
	dev = wgdev_new();
	assert_int_equal(wg_genl_parse_device(nlh, dev), -EPROTO);
	wgdev_free(dev);

	/* An IPv4 allowed IP with a /33 mask, and one with a 16-byte address. */
	for (int variant = 0; variant < 2; variant++) {
		uint8_t a16[16] = { 0 };
		struct nlattr *n;

		nlh = dump_header(buf, sizeof(buf));
		peers = mnl_attr_nest_start(nlh, WGDEVICE_A_PEERS);
		peer = mnl_attr_nest_start(nlh, 0);
		mnl_attr_put(nlh, WGPEER_A_PUBLIC_KEY, WG_KEY_LEN, key);
		ips = mnl_attr_nest_start(nlh, WGPEER_A_ALLOWEDIPS);
		n = mnl_attr_nest_start(nlh, 0);
		mnl_attr_put_u16(nlh, WGALLOWEDIP_A_FAMILY, AF_INET);
		if (variant == 0)
			mnl_attr_put(nlh, WGALLOWEDIP_A_IPADDR, 4, a);
		else
			mnl_attr_put(nlh, WGALLOWEDIP_A_IPADDR, 16, a16);
		mnl_attr_put_u8(nlh, WGALLOWEDIP_A_CIDR_MASK, variant == 0 ? 33 : 32);
		mnl_attr_nest_end(nlh, n);
		mnl_attr_nest_end(nlh, ips);
		mnl_attr_nest_end(nlh, peer);
		mnl_attr_nest_end(nlh, peers);
		dev = wgdev_new();
		assert_int_equal(wg_genl_parse_device(nlh, dev), -EPROTO);
		wgdev_free(dev);
	}

	/* Not a get reply at all. */
	nlh = dump_header(buf, sizeof(buf));
	((struct genlmsghdr *)mnl_nlmsg_get_payload(nlh))->cmd = WG_CMD_SET_DEVICE;
	dev = wgdev_new();
	assert_int_equal(wg_genl_parse_device(nlh, dev), -EPROTO);
	nlh->nlmsg_len = NLMSG_HDRLEN;
	assert_int_equal(wg_genl_parse_device(nlh, dev), -EPROTO);
	wgdev_free(dev);
}

/*
 * 300 allowed IPs do not fit one small message: the builder splits them, the
 * device fields and flags go only in the first message, and the continued
 * peer never repeats WGPEER_F_REPLACE_ALLOWEDIPS. Turned into get replies,
 * the parts parse back into the same peer.
 */
static void test_split_set(void **state)
{
	uint8_t buf[1024];
	struct wg_genl_cursor cur = { 0 };
	struct wgdev *dev = wgdev_new(), *back = wgdev_new();
	struct wgdev_peer *p;
	struct wgdev_allowedip ip = { .family = AF_INET, .cidr = 32 };
	uint8_t k[WG_KEY_LEN];
	size_t msgs = 0;

	(void)state;
	strcpy(dev->name, "strait0");
	dev->flags = WGDEV_REPLACE_PEERS | WGDEV_HAS_LISTEN_PORT;
	dev->listen_port = 1;
	key_fill(k, 0x44);
	p = wgdev_add_peer(dev, k);
	p->flags = WGPEER_REPLACE_ALLOWEDIPS;
	for (unsigned i = 0; i < 300; i++) {
		ip.addr[0] = 10;
		ip.addr[2] = (uint8_t)(i >> 8);
		ip.addr[3] = (uint8_t)i;
		assert_true(wgdev_peer_add_allowedip(p, &ip));
	}
	key_fill(k, 0x55);
	p = wgdev_add_peer(dev, k);
	p->flags = WGPEER_REMOVE;

	while (!cur.done) {
		struct nlmsghdr *nlh = (struct nlmsghdr *)buf;
		struct raw top, peers, peer;
		size_t len = wg_genl_build_set(buf, sizeof(buf), FAMILY, (uint32_t)msgs, dev, &cur);
		bool has_flags = false;

		assert_true(len > 0 && len <= sizeof(buf));
		top = raw_payload(nlh);
		for (size_t i = 0; raw_attr(top, i, NULL); i++) {
			uint16_t type = raw_attr(top, i, NULL)->nla_type & NLA_TYPE_MASK;

			if (type == WGDEVICE_A_FLAGS || type == WGDEVICE_A_LISTEN_PORT) {
				assert_int_equal(msgs, 0);
				has_flags = true;
			}
			if (type != WGDEVICE_A_PEERS)
				continue;
			raw_attr(top, i, &peers);
			raw_attr(peers, 0, &peer);
			for (size_t k2 = 0; raw_attr(peer, k2, NULL); k2++)
				if ((raw_attr(peer, k2, NULL)->nla_type & NLA_TYPE_MASK) == WGPEER_A_FLAGS &&
				    ((const uint8_t *)raw_data(raw_attr(peer, 0, NULL)))[0] == 0x44)
					assert_int_equal(msgs, 0);
		}
		if (msgs == 0)
			assert_true(has_flags);
		((struct genlmsghdr *)mnl_nlmsg_get_payload(nlh))->cmd = WG_CMD_GET_DEVICE;
		assert_int_equal(wg_genl_parse_device(nlh, back), 0);
		msgs++;
		assert_true(msgs < 100);
	}
	assert_true(msgs > 2);
	assert_int_equal(back->n_peers, 2);
	assert_int_equal(back->peers[0].n_allowedips, 300);
	assert_true(wgdev_allowedips_equal(&dev->peers[0], &back->peers[0]));
	assert_int_equal(back->peers[1].public_key[0], 0x55);
	/* A buffer that cannot hold a header is refused. */
	memset(&cur, 0, sizeof(cur));
	assert_int_equal(wg_genl_build_set(buf, 32, FAMILY, 0, dev, &cur), 0);
	wgdev_free(dev);
	wgdev_free(back);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_abi_constants),
		cmocka_unit_test(test_build_set_layout),
		cmocka_unit_test(test_build_get_and_family),
		cmocka_unit_test(test_parse_family),
		cmocka_unit_test(test_parse_dump),
		cmocka_unit_test(test_parse_malformed),
		cmocka_unit_test(test_split_set),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
