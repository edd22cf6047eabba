/*
 * rtnl.c — rtnetlink requests for the tunnel interface (see rtnl.h).
 */
#include "tunnel/rtnl.h"

#include <errno.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <libmnl/libmnl.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>

/* Fixed sizes: libmnl's MNL_SOCKET_BUFFER_SIZE is computed at run time. */
#define RTNL_BUF_SIZE 8192
#define RTNL_RECV_SIZE 32768

struct rtnl_link_info {
	char *kind;
	size_t kindlen;
	uint32_t mtu;
};

struct rtnl_route_info {
	uint32_t oif;
	uint32_t mtu;
	bool found;
};

uint32_t rtnl_mtu_choose(const uint32_t *path_mtus, size_t n)
{
	uint32_t best = 0;

	for (size_t i = 0; i < n; i++)
		if (path_mtus[i] && (!best || path_mtus[i] < best))
			best = path_mtus[i];
	if (!best)
		best = RTNL_DEFAULT_PATH_MTU;
	if (best < RTNL_MIN_MTU + RTNL_WG_OVERHEAD)
		return RTNL_MIN_MTU;
	return best - RTNL_WG_OVERHEAD;
}

/*
 * Sends one request and runs cb over every reply until the kernel's ACK,
 * its error, or the end of a dump.
 */
static int rtnl_talk(struct nlmsghdr *nlh, mnl_cb_t cb, void *data, const char *what,
		char *err, size_t errlen)
{
	char buf[RTNL_RECV_SIZE];
	struct timeval timeout = { .tv_sec = 5, .tv_usec = 0 };
	struct mnl_socket *nl;
	unsigned portid;
	uint32_t seq;
	int rc;

	nl = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
	if (!nl) {
		rc = -errno;
		snprintf(err, errlen, "could not open rtnetlink socket: %s", strerror(-rc));
		return rc;
	}
	if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		rc = -errno;
		snprintf(err, errlen, "could not bind rtnetlink socket: %s", strerror(-rc));
		goto out;
	}
	/* The kernel answers at once; a bound keeps a surprise from hanging the loop. */
	if (setsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, SO_RCVTIMEO, &timeout,
		       sizeof(timeout)) < 0) {
		rc = -errno;
		snprintf(err, errlen, "could not set rtnetlink socket timeout: %s", strerror(-rc));
		goto out;
	}
	portid = mnl_socket_get_portid(nl);
	seq = nlh->nlmsg_seq;
	if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) {
		rc = -errno;
		snprintf(err, errlen, "could not %s: %s", what, strerror(-rc));
		goto out;
	}
	for (;;) {
		ssize_t n = mnl_socket_recvfrom(nl, buf, sizeof(buf));

		if (n < 0) {
			rc = -errno;
			snprintf(err, errlen, "could not %s: %s", what, strerror(-rc));
			goto out;
		}
		rc = mnl_cb_run(buf, (size_t)n, seq, portid, cb, data);
		if (rc < 0) {
			rc = -errno;
			snprintf(err, errlen, "could not %s: %s", what, strerror(-rc));
			goto out;
		}
		if (rc == MNL_CB_STOP)
			break;
	}
	rc = 0;
out:
	mnl_socket_close(nl);
	return rc;
}

static uint32_t rtnl_seq(void)
{
	static uint32_t seq;

	if (!seq)
		seq = (uint32_t)getpid() << 8;
	return ++seq;
}

static struct nlmsghdr *rtnl_header(char *buf, uint16_t type, uint16_t flags)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);

	nlh->nlmsg_type = type;
	/* Always ask for the ACK: it ends the reply of a plain get too. */
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
	nlh->nlmsg_seq = rtnl_seq();
	return nlh;
}

static int rtnl_ifindex(const char *ifname, unsigned *index, char *err, size_t errlen)
{
	*index = if_nametoindex(ifname);
	if (!*index) {
		int e = errno;

		snprintf(err, errlen, "could not find interface \"%s\": %s", ifname, strerror(e));
		return e == ENXIO || e == ENODEV ? -ENODEV : -e;
	}
	return 0;
}

int rtnl_link_create(const char *ifname, const char *kind, char *err, size_t errlen)
{
	char buf[RTNL_BUF_SIZE];
	char what[128];
	struct nlmsghdr *nlh;
	struct ifinfomsg *ifi;
	struct nlattr *info;

	nlh = rtnl_header(buf, RTM_NEWLINK, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL);
	ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifi));
	ifi->ifi_family = AF_UNSPEC;
	mnl_attr_put_strz(nlh, IFLA_IFNAME, ifname);
	info = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
	mnl_attr_put_strz(nlh, IFLA_INFO_KIND, kind);
	mnl_attr_nest_end(nlh, info);
	snprintf(what, sizeof(what), "create %s interface \"%s\"", kind, ifname);
	return rtnl_talk(nlh, NULL, NULL, what, err, errlen);
}

int rtnl_link_delete(const char *ifname, char *err, size_t errlen)
{
	char buf[RTNL_BUF_SIZE];
	char what[128];
	struct nlmsghdr *nlh;
	struct ifinfomsg *ifi;
	unsigned index;
	int rc;

	rc = rtnl_ifindex(ifname, &index, err, errlen);
	if (rc < 0)
		return rc;
	nlh = rtnl_header(buf, RTM_DELLINK, NLM_F_ACK);
	ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifi));
	ifi->ifi_family = AF_UNSPEC;
	ifi->ifi_index = (int)index;
	snprintf(what, sizeof(what), "delete interface \"%s\"", ifname);
	return rtnl_talk(nlh, NULL, NULL, what, err, errlen);
}

static int rtnl_link_info_cb(const struct nlmsghdr *nlh, void *data)
{
	struct rtnl_link_info *info = data;
	const struct nlattr *attr, *nested;

	mnl_attr_for_each(attr, nlh, sizeof(struct ifinfomsg)) {
		switch (mnl_attr_get_type(attr)) {
		case IFLA_MTU:
			if (mnl_attr_validate(attr, MNL_TYPE_U32) >= 0)
				info->mtu = mnl_attr_get_u32(attr);
			break;
		case IFLA_LINKINFO:
			mnl_attr_for_each_nested(nested, attr) {
				if (mnl_attr_get_type(nested) == IFLA_INFO_KIND &&
				    mnl_attr_validate(nested, MNL_TYPE_STRING) >= 0 && info->kind)
					snprintf(info->kind, info->kindlen, "%.*s",
						 (int)mnl_attr_get_payload_len(nested),
						 mnl_attr_get_str(nested));
			}
			break;
		default:
			break;
		}
	}
	return MNL_CB_OK;
}

static int rtnl_link_get(const char *ifname, struct rtnl_link_info *info, char *err, size_t errlen)
{
	char buf[RTNL_BUF_SIZE];
	char what[128];
	struct nlmsghdr *nlh;
	struct ifinfomsg *ifi;
	unsigned index;
	int rc;

	rc = rtnl_ifindex(ifname, &index, err, errlen);
	if (rc < 0)
		return rc;
	nlh = rtnl_header(buf, RTM_GETLINK, 0);
	ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifi));
	ifi->ifi_family = AF_UNSPEC;
	ifi->ifi_index = (int)index;
	snprintf(what, sizeof(what), "read interface \"%s\"", ifname);
	return rtnl_talk(nlh, rtnl_link_info_cb, info, what, err, errlen);
}

int rtnl_link_kind(const char *ifname, char *kind, size_t kindlen, char *err, size_t errlen)
{
	struct rtnl_link_info info = { .kind = kind, .kindlen = kindlen };

	if (kindlen)
		kind[0] = '\0';
	return rtnl_link_get(ifname, &info, err, errlen);
}

int rtnl_link_mtu(const char *ifname, uint32_t *mtu, char *err, size_t errlen)
{
	struct rtnl_link_info info = { 0 };
	int rc = rtnl_link_get(ifname, &info, err, errlen);

	*mtu = info.mtu;
	return rc;
}

int rtnl_link_up(const char *ifname, uint32_t mtu, char *err, size_t errlen)
{
	char buf[RTNL_BUF_SIZE];
	char what[128];
	struct nlmsghdr *nlh;
	struct ifinfomsg *ifi;
	unsigned index;
	int rc;

	rc = rtnl_ifindex(ifname, &index, err, errlen);
	if (rc < 0)
		return rc;
	nlh = rtnl_header(buf, RTM_NEWLINK, NLM_F_ACK);
	ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifi));
	ifi->ifi_family = AF_UNSPEC;
	ifi->ifi_index = (int)index;
	ifi->ifi_flags = IFF_UP;
	ifi->ifi_change = IFF_UP;
	if (mtu)
		mnl_attr_put_u32(nlh, IFLA_MTU, mtu);
	snprintf(what, sizeof(what), "bring up interface \"%s\" with MTU %u", ifname, mtu);
	return rtnl_talk(nlh, NULL, NULL, what, err, errlen);
}

int rtnl_addr(const char *ifname, const struct wgdev_allowedip *addr, bool add,
		char *err, size_t errlen)
{
	char buf[RTNL_BUF_SIZE];
	char what[160], text[INET6_ADDRSTRLEN + 8];
	struct nlmsghdr *nlh;
	struct ifaddrmsg *ifa;
	size_t alen = addr->family == AF_INET ? 4 : 16;
	unsigned index;
	int rc;

	rc = rtnl_ifindex(ifname, &index, err, errlen);
	if (rc < 0)
		return rc;
	nlh = rtnl_header(buf, add ? RTM_NEWADDR : RTM_DELADDR,
			  NLM_F_ACK | (add ? NLM_F_CREATE | NLM_F_REPLACE : 0));
	ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));
	ifa->ifa_family = (uint8_t)addr->family;
	ifa->ifa_prefixlen = addr->cidr;
	ifa->ifa_scope = RT_SCOPE_UNIVERSE;
	ifa->ifa_index = index;
	mnl_attr_put(nlh, IFA_LOCAL, alen, addr->addr);
	mnl_attr_put(nlh, IFA_ADDRESS, alen, addr->addr);
	if (!wgdev_allowedip_format(addr, text, sizeof(text)))
		snprintf(text, sizeof(text), "?");
	snprintf(what, sizeof(what), "%s address %s %s interface \"%s\"", add ? "add" : "remove",
		 text, add ? "to" : "from", ifname);
	return rtnl_talk(nlh, NULL, NULL, what, err, errlen);
}

int rtnl_route(const char *ifname, const struct wgdev_allowedip *dst, bool add,
		char *err, size_t errlen)
{
	char buf[RTNL_BUF_SIZE];
	char what[160], text[INET6_ADDRSTRLEN + 8];
	struct nlmsghdr *nlh;
	struct rtmsg *rtm;
	unsigned index;
	int rc;

	rc = rtnl_ifindex(ifname, &index, err, errlen);
	if (rc < 0)
		return rc;
	nlh = rtnl_header(buf, add ? RTM_NEWROUTE : RTM_DELROUTE,
			  NLM_F_ACK | (add ? NLM_F_CREATE | NLM_F_REPLACE : 0));
	rtm = mnl_nlmsg_put_extra_header(nlh, sizeof(*rtm));
	rtm->rtm_family = (uint8_t)dst->family;
	rtm->rtm_dst_len = dst->cidr;
	rtm->rtm_table = RT_TABLE_MAIN;
	rtm->rtm_protocol = RTPROT_STATIC;
	rtm->rtm_scope = add ? RT_SCOPE_LINK : RT_SCOPE_NOWHERE;
	rtm->rtm_type = RTN_UNICAST;
	mnl_attr_put(nlh, RTA_DST, dst->family == AF_INET ? 4 : 16, dst->addr);
	mnl_attr_put_u32(nlh, RTA_OIF, index);
	if (!wgdev_allowedip_format(dst, text, sizeof(text)))
		snprintf(text, sizeof(text), "?");
	snprintf(what, sizeof(what), "%s route %s via interface \"%s\"", add ? "add" : "remove",
		 text, ifname);
	return rtnl_talk(nlh, NULL, NULL, what, err, errlen);
}

static int rtnl_route_cb(const struct nlmsghdr *nlh, void *data)
{
	struct rtnl_route_info *info = data;
	const struct nlattr *attr, *metric;

	if (nlh->nlmsg_type != RTM_NEWROUTE)
		return MNL_CB_OK;
	info->found = true;
	mnl_attr_for_each(attr, nlh, sizeof(struct rtmsg)) {
		switch (mnl_attr_get_type(attr)) {
		case RTA_OIF:
			if (mnl_attr_validate(attr, MNL_TYPE_U32) >= 0)
				info->oif = mnl_attr_get_u32(attr);
			break;
		case RTA_METRICS:
			mnl_attr_for_each_nested(metric, attr) {
				if (mnl_attr_get_type(metric) == RTAX_MTU &&
				    mnl_attr_validate(metric, MNL_TYPE_U32) >= 0)
					info->mtu = mnl_attr_get_u32(metric);
			}
			break;
		default:
			break;
		}
	}
	return MNL_CB_OK;
}

int rtnl_route_mtu(const union wgdev_endpoint *dst, uint32_t *mtu, char *err, size_t errlen)
{
	char buf[RTNL_BUF_SIZE];
	char what[160], text[INET6_ADDRSTRLEN + 16], ifname[IF_NAMESIZE];
	struct rtnl_route_info info = { 0 };
	struct nlmsghdr *nlh;
	struct rtmsg *rtm;
	int rc;

	*mtu = 0;
	if (!wgdev_endpoint_set(dst)) {
		snprintf(err, errlen, "no endpoint address");
		return -EINVAL;
	}
	nlh = rtnl_header(buf, RTM_GETROUTE, 0);
	rtm = mnl_nlmsg_put_extra_header(nlh, sizeof(*rtm));
	rtm->rtm_family = (uint8_t)dst->sa.sa_family;
	if (dst->sa.sa_family == AF_INET) {
		rtm->rtm_dst_len = 32;
		mnl_attr_put(nlh, RTA_DST, 4, &dst->in.sin_addr);
	} else {
		rtm->rtm_dst_len = 128;
		mnl_attr_put(nlh, RTA_DST, 16, &dst->in6.sin6_addr);
	}
	if (!wgdev_endpoint_format(dst, text, sizeof(text)))
		snprintf(text, sizeof(text), "?");
	snprintf(what, sizeof(what), "look up the route to %s", text);
	rc = rtnl_talk(nlh, rtnl_route_cb, &info, what, err, errlen);
	if (rc < 0)
		return rc;
	if (!info.found || !info.oif) {
		snprintf(err, errlen, "no route to %s", text);
		return -ENETUNREACH;
	}
	if (info.mtu) {
		*mtu = info.mtu;
		return 0;
	}
	if (!if_indextoname(info.oif, ifname)) {
		rc = -errno;
		snprintf(err, errlen, "could not find interface %u: %s", info.oif, strerror(-rc));
		return rc;
	}
	return rtnl_link_mtu(ifname, mtu, err, errlen);
}
