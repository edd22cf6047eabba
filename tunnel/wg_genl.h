/*
 * wg_genl.h — WireGuard's generic netlink messages (linux/wireguard.h), built
 * and parsed over caller-provided buffers with libmnl. No sockets here: the
 * kernel backend (wg_kernel.c) does the I/O, and unit tests check every byte
 * against the header's layout.
 *
 * A WG_CMD_SET_DEVICE request may not fit one netlink message; the builder
 * splits it at peer and allowed-IP boundaries, as the kernel expects: only the
 * first message carries the device fields and WGDEVICE_F_REPLACE_PEERS, and a
 * peer continued in a later message carries only its key and the remaining
 * allowed IPs (without WGPEER_F_REPLACE_ALLOWEDIPS, which would drop the
 * first part). A WG_CMD_GET_DEVICE dump may split a device the same way; the
 * parser merges the parts.
 *
 * Return convention: builders return the message length (0 when buf is too
 * small); parsers return 0 or a negative errno.
 */
#ifndef STRAIT_WG_GENL_H
#define STRAIT_WG_GENL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tunnel/wgdev.h"

struct nlmsghdr;

/* Where the next set message resumes. Zero it before the first call. */
struct wg_genl_cursor {
	size_t peer;
	size_t allowedip;
	bool started;           /* the first message was built */
	bool done;
};

/* CTRL_CMD_GETFAMILY for "wireguard" on GENL_ID_CTRL. */
size_t wg_genl_build_getfamily(void *buf, size_t len, uint32_t seq);
/* Reads CTRL_ATTR_FAMILY_ID from a reply to it; -ENOENT when absent. */
int wg_genl_parse_family(const struct nlmsghdr *nlh, uint16_t *family);

/* WG_CMD_GET_DEVICE dump request for an interface name. */
size_t wg_genl_build_get(void *buf, size_t len, uint16_t family, uint32_t seq, const char *ifname);

/*
 * Builds the next WG_CMD_SET_DEVICE message for dev at cursor. Returns its
 * length, and sets cur->done once everything was emitted; 0 when buf cannot
 * hold even one peer.
 */
size_t wg_genl_build_set(void *buf, size_t len, uint16_t family, uint32_t seq,
		const struct wgdev *dev, struct wg_genl_cursor *cur);

/*
 * Merges one reply message of a get dump into dev (device fields, peers and
 * their allowed IPs; a peer continued from the previous message is joined).
 * -EPROTO for a malformed message, -ENOMEM.
 */
int wg_genl_parse_device(const struct nlmsghdr *nlh, struct wgdev *dev);

#endif
