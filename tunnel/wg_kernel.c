/*
 * wg_kernel.c — WireGuard over generic netlink (see wg_kernel.h).
 */
#include "tunnel/wg_kernel.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <libmnl/libmnl.h>
#include <linux/genetlink.h>
#include <linux/netlink.h>

#include "tunnel/wg_genl.h"

/* Fixed sizes: libmnl's MNL_SOCKET_BUFFER_SIZE is computed at run time. */
#define WG_KERNEL_SEND_SIZE 8192
#define WG_KERNEL_RECV_SIZE 32768

static struct mnl_socket *wg_kernel_open(unsigned *portid, char *err, size_t errlen)
{
	struct timeval timeout = { .tv_sec = 5, .tv_usec = 0 };
	struct mnl_socket *nl = mnl_socket_open2(NETLINK_GENERIC, SOCK_CLOEXEC);

	if (!nl) {
		snprintf(err, errlen, "could not open generic netlink socket: %s", strerror(errno));
		return NULL;
	}
	if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		snprintf(err, errlen, "could not bind generic netlink socket: %s", strerror(errno));
		mnl_socket_close(nl);
		return NULL;
	}
	/* The kernel answers at once; a bound keeps a surprise from hanging the loop. */
	if (setsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, SO_RCVTIMEO, &timeout,
		       sizeof(timeout)) < 0) {
		snprintf(err, errlen, "could not set generic netlink socket timeout: %s",
			 strerror(errno));
		mnl_socket_close(nl);
		return NULL;
	}
	*portid = mnl_socket_get_portid(nl);
	return nl;
}

static uint32_t wg_kernel_seq(void)
{
	static uint32_t seq;

	if (!seq)
		seq = (uint32_t)getpid() << 8;
	return ++seq;
}

/* Sends one message and runs cb over the replies until ACK, error or dump end. */
static int wg_kernel_talk(struct mnl_socket *nl, unsigned portid, const struct nlmsghdr *nlh,
		mnl_cb_t cb, void *data)
{
	char buf[WG_KERNEL_RECV_SIZE];

	if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0)
		return -errno;
	for (;;) {
		ssize_t n = mnl_socket_recvfrom(nl, buf, sizeof(buf));
		int rc;

		if (n < 0)
			return -errno;
		rc = mnl_cb_run(buf, (size_t)n, nlh->nlmsg_seq, portid, cb, data);
		if (rc < 0)
			return errno ? -errno : -EPROTO;
		if (rc == MNL_CB_STOP)
			return 0;
	}
}

static int wg_kernel_family_cb(const struct nlmsghdr *nlh, void *data)
{
	return wg_genl_parse_family(nlh, data) == 0 ? MNL_CB_OK : MNL_CB_ERROR;
}

static int wg_kernel_family_on(struct mnl_socket *nl, unsigned portid, uint16_t *family,
		char *err, size_t errlen)
{
	char buf[WG_KERNEL_SEND_SIZE];
	size_t len = wg_genl_build_getfamily(buf, sizeof(buf), wg_kernel_seq());
	int rc;

	*family = 0;
	rc = len ? wg_kernel_talk(nl, portid, (struct nlmsghdr *)buf, wg_kernel_family_cb, family)
		 : -EMSGSIZE;
	if (rc < 0 || *family == 0) {
		rc = rc < 0 ? rc : -ENOENT;
		snprintf(err, errlen, "could not find the \"wireguard\" generic netlink family: %s%s",
			 strerror(-rc), rc == -ENOENT ? " (is the wireguard kernel module loaded?)" : "");
		return rc;
	}
	return 0;
}

int wg_kernel_family(uint16_t *family, char *err, size_t errlen)
{
	struct mnl_socket *nl;
	unsigned portid;
	int rc;

	nl = wg_kernel_open(&portid, err, errlen);
	if (!nl)
		return -EIO;
	rc = wg_kernel_family_on(nl, portid, family, err, errlen);
	mnl_socket_close(nl);
	return rc;
}

static int wg_kernel_get_cb(const struct nlmsghdr *nlh, void *data)
{
	int rc = wg_genl_parse_device(nlh, data);

	if (rc < 0) {
		errno = -rc;
		return MNL_CB_ERROR;
	}
	return MNL_CB_OK;
}

int wg_kernel_get(const char *ifname, struct wgdev **out, char *err, size_t errlen)
{
	char buf[WG_KERNEL_SEND_SIZE];
	struct mnl_socket *nl;
	struct wgdev *dev = NULL;
	uint16_t family;
	unsigned portid;
	int rc;

	*out = NULL;
	nl = wg_kernel_open(&portid, err, errlen);
	if (!nl)
		return -EIO;
	rc = wg_kernel_family_on(nl, portid, &family, err, errlen);
	if (rc < 0)
		goto out;
	dev = wgdev_new();
	if (!dev) {
		snprintf(err, errlen, "out of memory");
		rc = -ENOMEM;
		goto out;
	}
	if (wg_genl_build_get(buf, sizeof(buf), family, wg_kernel_seq(), ifname) == 0) {
		snprintf(err, errlen, "invalid interface name \"%s\"", ifname);
		rc = -EINVAL;
		goto out;
	}
	errno = 0;
	rc = wg_kernel_talk(nl, portid, (struct nlmsghdr *)buf, wg_kernel_get_cb, dev);
	if (rc < 0) {
		snprintf(err, errlen, "generic netlink: %s", strerror(-rc));
		goto out;
	}
	snprintf(dev->name, sizeof(dev->name), "%s", ifname);
	*out = dev;
	dev = NULL;
out:
	wgdev_free(dev);
	mnl_socket_close(nl);
	return rc;
}

int wg_kernel_set(const struct wgdev *dev, char *err, size_t errlen)
{
	char buf[WG_KERNEL_SEND_SIZE];
	struct wg_genl_cursor cur = { 0 };
	struct mnl_socket *nl;
	uint16_t family;
	unsigned portid;
	int rc;

	nl = wg_kernel_open(&portid, err, errlen);
	if (!nl)
		return -EIO;
	rc = wg_kernel_family_on(nl, portid, &family, err, errlen);
	if (rc < 0)
		goto out;
	while (!cur.done) {
		size_t len = wg_genl_build_set(buf, sizeof(buf), family, wg_kernel_seq(), dev, &cur);

		if (len == 0) {
			snprintf(err, errlen, "a peer does not fit in one netlink message");
			rc = -EMSGSIZE;
			goto out;
		}
		rc = wg_kernel_talk(nl, portid, (struct nlmsghdr *)buf, NULL, NULL);
		if (rc < 0) {
			snprintf(err, errlen, "generic netlink: %s", strerror(-rc));
			goto out;
		}
	}
out:
	wgkey_wipe(buf, sizeof(buf));
	mnl_socket_close(nl);
	return rc;
}
