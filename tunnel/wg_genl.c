/*
 * wg_genl.c — WireGuard generic netlink messages over buffers (see wg_genl.h).
 */
#include "tunnel/wg_genl.h"

#include <errno.h>
#include <string.h>

#include <libmnl/libmnl.h>
#include <linux/genetlink.h>
#include <linux/netlink.h>
#include <linux/wireguard.h>

/* Room for the netlink and generic netlink headers and one interface name. */
#define WG_GENL_MIN_BUF 128

static struct nlmsghdr *wg_genl_put_header(void *buf, size_t len, uint16_t type, uint16_t flags,
		uint32_t seq, uint8_t cmd, uint8_t version)
{
	struct nlmsghdr *nlh;
	struct genlmsghdr *genl;

	if (len < WG_GENL_MIN_BUF)
		return NULL;
	memset(buf, 0, WG_GENL_MIN_BUF);
	nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = type;
	nlh->nlmsg_flags = flags;
	nlh->nlmsg_seq = seq;
	genl = mnl_nlmsg_put_extra_header(nlh, sizeof(*genl));
	genl->cmd = cmd;
	genl->version = version;
	return nlh;
}

size_t wg_genl_build_getfamily(void *buf, size_t len, uint32_t seq)
{
	struct nlmsghdr *nlh = wg_genl_put_header(buf, len, GENL_ID_CTRL,
			NLM_F_REQUEST | NLM_F_ACK, seq, CTRL_CMD_GETFAMILY, 1);

	if (!nlh || !mnl_attr_put_strz_check(nlh, len, CTRL_ATTR_FAMILY_NAME, WG_GENL_NAME))
		return 0;
	return nlh->nlmsg_len;
}

static const struct genlmsghdr *wg_genl_header(const struct nlmsghdr *nlh)
{
	if (nlh->nlmsg_len < MNL_NLMSG_HDRLEN + MNL_ALIGN(sizeof(struct genlmsghdr)))
		return NULL;
	return mnl_nlmsg_get_payload(nlh);
}

int wg_genl_parse_family(const struct nlmsghdr *nlh, uint16_t *family)
{
	const struct nlattr *attr;

	if (!wg_genl_header(nlh))
		return -EPROTO;
	mnl_attr_for_each(attr, nlh, MNL_ALIGN(sizeof(struct genlmsghdr))) {
		if (mnl_attr_get_type(attr) != CTRL_ATTR_FAMILY_ID)
			continue;
		if (mnl_attr_validate(attr, MNL_TYPE_U16) < 0)
			return -EPROTO;
		*family = mnl_attr_get_u16(attr);
		return 0;
	}
	return -ENOENT;
}

static bool wg_genl_put_ifname(struct nlmsghdr *nlh, size_t len, const struct wgdev *dev,
		const char *ifname)
{
	if (ifname && ifname[0])
		return mnl_attr_put_strz_check(nlh, len, WGDEVICE_A_IFNAME, ifname);
	return mnl_attr_put_u32_check(nlh, len, WGDEVICE_A_IFINDEX, dev ? dev->ifindex : 0);
}

size_t wg_genl_build_get(void *buf, size_t len, uint16_t family, uint32_t seq, const char *ifname)
{
	struct nlmsghdr *nlh = wg_genl_put_header(buf, len, family,
			NLM_F_REQUEST | NLM_F_ACK | NLM_F_DUMP, seq, WG_CMD_GET_DEVICE, WG_GENL_VERSION);

	if (!nlh || strlen(ifname) >= WGDEV_IFNAMSIZ || !wg_genl_put_ifname(nlh, len, NULL, ifname))
		return 0;
	return nlh->nlmsg_len;
}

static bool wg_genl_put_device(struct nlmsghdr *nlh, size_t len, const struct wgdev *dev)
{
	if ((dev->flags & WGDEV_HAS_PRIVATE_KEY) &&
	    !mnl_attr_put_check(nlh, len, WGDEVICE_A_PRIVATE_KEY, WG_KEY_LEN, dev->private_key))
		return false;
	if ((dev->flags & WGDEV_HAS_LISTEN_PORT) &&
	    !mnl_attr_put_u16_check(nlh, len, WGDEVICE_A_LISTEN_PORT, dev->listen_port))
		return false;
	if ((dev->flags & WGDEV_HAS_FWMARK) &&
	    !mnl_attr_put_u32_check(nlh, len, WGDEVICE_A_FWMARK, dev->fwmark))
		return false;
	if ((dev->flags & WGDEV_REPLACE_PEERS) &&
	    !mnl_attr_put_u32_check(nlh, len, WGDEVICE_A_FLAGS, WGDEVICE_F_REPLACE_PEERS))
		return false;
	return true;
}

/* The attributes a peer carries in the first message that holds it. */
static bool wg_genl_put_peer_head(struct nlmsghdr *nlh, size_t len, const struct wgdev_peer *p)
{
	uint32_t flags = 0;

	if (p->flags & WGPEER_REMOVE)
		flags |= WGPEER_F_REMOVE_ME;
	if (p->flags & WGPEER_UPDATE_ONLY)
		flags |= WGPEER_F_UPDATE_ONLY;
	if (p->flags & WGPEER_REPLACE_ALLOWEDIPS)
		flags |= WGPEER_F_REPLACE_ALLOWEDIPS;
	if (flags && !mnl_attr_put_u32_check(nlh, len, WGPEER_A_FLAGS, flags))
		return false;
	if (p->flags & WGPEER_REMOVE)
		return true;
	if ((p->flags & WGPEER_HAS_ENDPOINT) && p->endpoint.sa.sa_family == AF_INET &&
	    !mnl_attr_put_check(nlh, len, WGPEER_A_ENDPOINT, sizeof(p->endpoint.in), &p->endpoint.in))
		return false;
	if ((p->flags & WGPEER_HAS_ENDPOINT) && p->endpoint.sa.sa_family == AF_INET6 &&
	    !mnl_attr_put_check(nlh, len, WGPEER_A_ENDPOINT, sizeof(p->endpoint.in6), &p->endpoint.in6))
		return false;
	if ((p->flags & WGPEER_HAS_KEEPALIVE) &&
	    !mnl_attr_put_u16_check(nlh, len, WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL, p->keepalive))
		return false;
	return true;
}

static bool wg_genl_put_allowedip(struct nlmsghdr *nlh, size_t len, const struct wgdev_allowedip *ip)
{
	struct nlattr *nest = mnl_attr_nest_start_check(nlh, len, 0);

	if (!nest)
		return false;
	if (!mnl_attr_put_u16_check(nlh, len, WGALLOWEDIP_A_FAMILY, ip->family) ||
	    !mnl_attr_put_check(nlh, len, WGALLOWEDIP_A_IPADDR, ip->family == AF_INET ? 4 : 16, ip->addr) ||
	    !mnl_attr_put_u8_check(nlh, len, WGALLOWEDIP_A_CIDR_MASK, ip->cidr)) {
		mnl_attr_nest_cancel(nlh, nest);
		return false;
	}
	mnl_attr_nest_end(nlh, nest);
	return true;
}

/*
 * Adds the peer at the cursor. Returns 1 when the whole (rest of the) peer
 * went in, 0 when part of its allowed IPs did (the cursor says where to go on),
 * -1 when nothing of it fit (the message is left as it was).
 */
static int wg_genl_put_peer(struct nlmsghdr *nlh, size_t len, const struct wgdev_peer *p,
		struct wg_genl_cursor *cur)
{
	struct nlattr *peer, *ips;
	size_t first = cur->allowedip;

	peer = mnl_attr_nest_start_check(nlh, len, 0);
	if (!peer)
		return -1;
	if (!mnl_attr_put_check(nlh, len, WGPEER_A_PUBLIC_KEY, WG_KEY_LEN, p->public_key))
		goto none;
	if (first == 0 && !wg_genl_put_peer_head(nlh, len, p))
		goto none;
	if ((p->flags & WGPEER_REMOVE) || p->n_allowedips == 0) {
		mnl_attr_nest_end(nlh, peer);
		return 1;
	}
	ips = mnl_attr_nest_start_check(nlh, len, WGPEER_A_ALLOWEDIPS);
	if (!ips)
		goto none;
	while (cur->allowedip < p->n_allowedips &&
	       wg_genl_put_allowedip(nlh, len, &p->allowedips[cur->allowedip]))
		cur->allowedip++;
	if (cur->allowedip == first) {
		mnl_attr_nest_cancel(nlh, ips);
		goto none;
	}
	mnl_attr_nest_end(nlh, ips);
	mnl_attr_nest_end(nlh, peer);
	return cur->allowedip == p->n_allowedips ? 1 : 0;
none:
	mnl_attr_nest_cancel(nlh, peer);
	return -1;
}

size_t wg_genl_build_set(void *buf, size_t len, uint16_t family, uint32_t seq,
		const struct wgdev *dev, struct wg_genl_cursor *cur)
{
	struct nlmsghdr *nlh;
	struct nlattr *peers;
	bool progress = false;

	if (cur->done)
		return 0;
	nlh = wg_genl_put_header(buf, len, family, NLM_F_REQUEST | NLM_F_ACK, seq,
			WG_CMD_SET_DEVICE, WG_GENL_VERSION);
	if (!nlh || !wg_genl_put_ifname(nlh, len, dev, dev->name))
		return 0;
	if (!cur->started) {
		if (!wg_genl_put_device(nlh, len, dev))
			return 0;
		progress = true;
	}
	if (cur->peer < dev->n_peers) {
		peers = mnl_attr_nest_start_check(nlh, len, WGDEVICE_A_PEERS);
		if (peers) {
			bool any = false;

			while (cur->peer < dev->n_peers) {
				int r = wg_genl_put_peer(nlh, len, &dev->peers[cur->peer], cur);

				if (r < 0)
					break;
				any = true;
				if (r == 0)
					break;
				cur->peer++;
				cur->allowedip = 0;
			}
			if (any)
				mnl_attr_nest_end(nlh, peers);
			else
				mnl_attr_nest_cancel(nlh, peers);
			progress = progress || any;
		}
	}
	if (!progress)
		return 0;
	cur->started = true;
	cur->done = cur->peer >= dev->n_peers;
	return nlh->nlmsg_len;
}

/* ---- parsing -------------------------------------------------------------- */

static int wg_genl_parse_allowedip(const struct nlattr *nest, struct wgdev_peer *p)
{
	struct wgdev_allowedip ip = { 0 };
	const struct nlattr *attr;
	bool has_family = false, has_addr = false, has_cidr = false;
	size_t addrlen = 0;

	mnl_attr_for_each_nested(attr, nest) {
		switch (mnl_attr_get_type(attr)) {
		case WGALLOWEDIP_A_FAMILY:
			if (mnl_attr_validate(attr, MNL_TYPE_U16) < 0)
				return -EPROTO;
			ip.family = mnl_attr_get_u16(attr);
			has_family = true;
			break;
		case WGALLOWEDIP_A_IPADDR:
			addrlen = mnl_attr_get_payload_len(attr);
			if (addrlen != 4 && addrlen != 16)
				return -EPROTO;
			memcpy(ip.addr, mnl_attr_get_payload(attr), addrlen);
			has_addr = true;
			break;
		case WGALLOWEDIP_A_CIDR_MASK:
			if (mnl_attr_validate(attr, MNL_TYPE_U8) < 0)
				return -EPROTO;
			ip.cidr = mnl_attr_get_u8(attr);
			has_cidr = true;
			break;
		default:
			break;
		}
	}
	if (!has_family || !has_addr || !has_cidr)
		return -EPROTO;
	if (!((ip.family == AF_INET && addrlen == 4 && ip.cidr <= 32) ||
	      (ip.family == AF_INET6 && addrlen == 16 && ip.cidr <= 128)))
		return -EPROTO;
	return wgdev_peer_add_allowedip(p, &ip) ? 0 : -ENOMEM;
}

static int wg_genl_parse_allowedips(const struct nlattr *nest, struct wgdev_peer *p)
{
	const struct nlattr *attr;

	mnl_attr_for_each_nested(attr, nest) {
		int rc = wg_genl_parse_allowedip(attr, p);

		if (rc < 0)
			return rc;
	}
	return 0;
}

/* Scalars of one peer nest, except the key and the allowed IPs. */
static int wg_genl_parse_peer_attr(const struct nlattr *attr, struct wgdev_peer *p)
{
	const void *payload = mnl_attr_get_payload(attr);
	size_t plen = mnl_attr_get_payload_len(attr);

	switch (mnl_attr_get_type(attr)) {
	case WGPEER_A_ENDPOINT:
		if (plen == sizeof(struct sockaddr_in) &&
		    ((const struct sockaddr *)payload)->sa_family == AF_INET) {
			memcpy(&p->endpoint.in, payload, plen);
		} else if (plen == sizeof(struct sockaddr_in6) &&
			   ((const struct sockaddr *)payload)->sa_family == AF_INET6) {
			memcpy(&p->endpoint.in6, payload, plen);
		} else {
			return -EPROTO;
		}
		p->flags |= WGPEER_HAS_ENDPOINT;
		break;
	case WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL:
		if (mnl_attr_validate(attr, MNL_TYPE_U16) < 0)
			return -EPROTO;
		p->keepalive = mnl_attr_get_u16(attr);
		p->flags |= WGPEER_HAS_KEEPALIVE;
		break;
	case WGPEER_A_LAST_HANDSHAKE_TIME: {
		int64_t ts[2];

		/* struct __kernel_timespec: two signed 64-bit fields. */
		if (plen != sizeof(ts))
			return -EPROTO;
		memcpy(ts, payload, sizeof(ts));
		if (ts[0] < 0 || ts[1] < 0 || ts[1] > 999999999)
			return -EPROTO;
		p->last_handshake_sec = ts[0];
		p->last_handshake_nsec = ts[1];
		break;
	}
	case WGPEER_A_RX_BYTES:
		if (mnl_attr_validate(attr, MNL_TYPE_U64) < 0)
			return -EPROTO;
		p->rx_bytes = mnl_attr_get_u64(attr);
		break;
	case WGPEER_A_TX_BYTES:
		if (mnl_attr_validate(attr, MNL_TYPE_U64) < 0)
			return -EPROTO;
		p->tx_bytes = mnl_attr_get_u64(attr);
		break;
	case WGPEER_A_FLAGS:
	case WGPEER_A_PRESHARED_KEY:
	case WGPEER_A_PROTOCOL_VERSION:
	default:
		break;
	}
	return 0;
}

static int wg_genl_parse_peer(const struct nlattr *nest, struct wgdev *dev, bool first_in_msg)
{
	const struct nlattr *attr, *key = NULL, *ips = NULL;
	struct wgdev_peer *p;
	int rc;

	mnl_attr_for_each_nested(attr, nest) {
		if (mnl_attr_get_type(attr) == WGPEER_A_PUBLIC_KEY) {
			if (mnl_attr_get_payload_len(attr) != WG_KEY_LEN)
				return -EPROTO;
			key = attr;
		} else if (mnl_attr_get_type(attr) == WGPEER_A_ALLOWEDIPS) {
			ips = attr;
		}
	}
	if (!key)
		return -EPROTO;
	/* A dump continues a peer in the next message with the same key first. */
	p = NULL;
	if (first_in_msg && dev->n_peers > 0 &&
	    memcmp(dev->peers[dev->n_peers - 1].public_key, mnl_attr_get_payload(key), WG_KEY_LEN) == 0)
		p = &dev->peers[dev->n_peers - 1];
	if (!p) {
		p = wgdev_add_peer(dev, mnl_attr_get_payload(key));
		if (!p)
			return -ENOMEM;
	}
	mnl_attr_for_each_nested(attr, nest) {
		rc = wg_genl_parse_peer_attr(attr, p);
		if (rc < 0)
			return rc;
	}
	return ips ? wg_genl_parse_allowedips(ips, p) : 0;
}

int wg_genl_parse_device(const struct nlmsghdr *nlh, struct wgdev *dev)
{
	const struct genlmsghdr *genl = wg_genl_header(nlh);
	const struct nlattr *attr;
	int rc;

	if (!genl || genl->cmd != WG_CMD_GET_DEVICE)
		return -EPROTO;
	mnl_attr_for_each(attr, nlh, MNL_ALIGN(sizeof(struct genlmsghdr))) {
		switch (mnl_attr_get_type(attr)) {
		case WGDEVICE_A_IFINDEX:
			if (mnl_attr_validate(attr, MNL_TYPE_U32) < 0)
				return -EPROTO;
			dev->ifindex = mnl_attr_get_u32(attr);
			break;
		case WGDEVICE_A_IFNAME: {
			const char *name = mnl_attr_get_payload(attr);
			size_t n = mnl_attr_get_payload_len(attr);

			if (n == 0 || n > WGDEV_IFNAMSIZ || name[n - 1] != '\0' || strlen(name) + 1 != n)
				return -EPROTO;
			memcpy(dev->name, name, n);
			break;
		}
		case WGDEVICE_A_PRIVATE_KEY:
			if (mnl_attr_get_payload_len(attr) != WG_KEY_LEN)
				return -EPROTO;
			memcpy(dev->private_key, mnl_attr_get_payload(attr), WG_KEY_LEN);
			dev->flags |= WGDEV_HAS_PRIVATE_KEY;
			break;
		case WGDEVICE_A_PUBLIC_KEY:
			if (mnl_attr_get_payload_len(attr) != WG_KEY_LEN)
				return -EPROTO;
			memcpy(dev->public_key, mnl_attr_get_payload(attr), WG_KEY_LEN);
			dev->flags |= WGDEV_HAS_PUBLIC_KEY;
			break;
		case WGDEVICE_A_LISTEN_PORT:
			if (mnl_attr_validate(attr, MNL_TYPE_U16) < 0)
				return -EPROTO;
			dev->listen_port = mnl_attr_get_u16(attr);
			dev->flags |= WGDEV_HAS_LISTEN_PORT;
			break;
		case WGDEVICE_A_FWMARK:
			if (mnl_attr_validate(attr, MNL_TYPE_U32) < 0)
				return -EPROTO;
			dev->fwmark = mnl_attr_get_u32(attr);
			dev->flags |= WGDEV_HAS_FWMARK;
			break;
		case WGDEVICE_A_PEERS: {
			const struct nlattr *peer;
			bool first = true;

			mnl_attr_for_each_nested(peer, attr) {
				rc = wg_genl_parse_peer(peer, dev, first);
				if (rc < 0)
					return rc;
				first = false;
			}
			break;
		}
		default:
			break;
		}
	}
	return 0;
}
