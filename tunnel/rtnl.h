/*
 * rtnl.h — rtnetlink for the tunnel interface: create and delete links, MTU
 * and link state, addresses, routes, and the path MTU towards an endpoint.
 * Serves both backends: a wireguard-go device is an ordinary TUN link.
 *
 * Every request opens its own NETLINK_ROUTE socket in the caller's network
 * namespace and waits for the kernel's acknowledgement (the kernel answers
 * synchronously). Return convention: 0 on success, a negative errno on failure
 * with a PostgreSQL-style message in err. Nothing here logs.
 */
#ifndef STRAIT_RTNL_H
#define STRAIT_RTNL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tunnel/wgdev.h"

/* What wg-quick assumes when no route says otherwise. */
#define RTNL_DEFAULT_PATH_MTU 1500
/* WireGuard's overhead over IPv6 (40 + 8 + 32); wg-quick subtracts it for both families. */
#define RTNL_WG_OVERHEAD 80
/* Never go below IPv6's minimum link MTU. */
#define RTNL_MIN_MTU 1280

int rtnl_link_create(const char *ifname, const char *kind, char *err, size_t errlen);
int rtnl_link_delete(const char *ifname, char *err, size_t errlen);
/* The link's IFLA_INFO_KIND ("wireguard", "tun", "" when none); -ENODEV when absent. */
int rtnl_link_kind(const char *ifname, char *kind, size_t kindlen, char *err, size_t errlen);
/* Sets the MTU (0 leaves it) and brings the link up. */
int rtnl_link_up(const char *ifname, uint32_t mtu, char *err, size_t errlen);
int rtnl_link_mtu(const char *ifname, uint32_t *mtu, char *err, size_t errlen);

/* Adds (or replaces) / removes an interface address, e.g. 10.77.0.1/24. */
int rtnl_addr(const char *ifname, const struct wgdev_allowedip *addr, bool add,
		char *err, size_t errlen);
/* Adds (or replaces) / removes a link-scope route to dst via the interface. */
int rtnl_route(const char *ifname, const struct wgdev_allowedip *dst, bool add,
		char *err, size_t errlen);

/*
 * The MTU of the path to dst as the kernel's route lookup sees it: the route's
 * mtu metric, else the MTU of its output link. -ENETUNREACH without a route.
 */
int rtnl_route_mtu(const union wgdev_endpoint *dst, uint32_t *mtu, char *err, size_t errlen);

/*
 * The tunnel MTU as wg-quick computes it: the smallest of the path MTUs
 * (zeros are skipped; RTNL_DEFAULT_PATH_MTU when there is none) minus
 * RTNL_WG_OVERHEAD, and at least RTNL_MIN_MTU.
 */
uint32_t rtnl_mtu_choose(const uint32_t *path_mtus, size_t n);

#endif
