/*
 * wg_kernel.h — the kernel WireGuard backend: generic netlink I/O for the
 * messages built and parsed in wg_genl.c. The link itself is created and
 * deleted over rtnetlink (rtnl.c, kind "wireguard").
 *
 * Return convention: 0 or a negative errno with a message in err (the
 * caller names the interface); nothing here logs.
 */
#ifndef STRAIT_WG_KERNEL_H
#define STRAIT_WG_KERNEL_H

#include <stddef.h>
#include <stdint.h>

#include "tunnel/wgdev.h"

/* Resolves the "wireguard" generic netlink family; -ENOENT without the module. */
int wg_kernel_family(uint16_t *family, char *err, size_t errlen);

/* Reads the device (a WG_CMD_GET_DEVICE dump); *out is freed with wgdev_free(). */
int wg_kernel_get(const char *ifname, struct wgdev **out, char *err, size_t errlen);

/* Sends dev (dev->name names the interface) in as many messages as it takes. */
int wg_kernel_set(const struct wgdev *dev, char *err, size_t errlen);

#endif
