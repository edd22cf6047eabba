/*
 * wgdev.h — the in-memory form of a WireGuard device: its configuration and,
 * when read back, its per-peer state.
 *
 * One model serves both directions and both backends: the UAPI codec
 * (uapi.c) and the generic netlink codec (wg_genl.c) turn it into wire
 * messages and back, and the peer diff (peers.c) produces one that holds only
 * the changes to send. Flags say which optional fields are meaningful, as in
 * a "set" operation where an absent field means "leave it as it is".
 *
 * Ownership: wgdev_new() returns a device the caller frees with wgdev_free(),
 * which also frees its peers and wipes the private key. Peer pointers stay
 * valid until the next wgdev_add_peer() on the same device.
 */
#ifndef STRAIT_WGDEV_H
#define STRAIT_WGDEV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "tunnel/wgkey.h"

/* Device flags: which fields are set. */
#define WGDEV_HAS_PRIVATE_KEY   (1u << 0)
#define WGDEV_HAS_PUBLIC_KEY    (1u << 1)
#define WGDEV_HAS_LISTEN_PORT   (1u << 2)
#define WGDEV_HAS_FWMARK        (1u << 3)
#define WGDEV_REPLACE_PEERS     (1u << 4)   /* set: drop peers not listed */

/* Peer flags. */
#define WGPEER_REMOVE           (1u << 0)   /* set: remove this peer */
#define WGPEER_UPDATE_ONLY      (1u << 1)   /* set: do not create it */
#define WGPEER_REPLACE_ALLOWEDIPS (1u << 2) /* set: allowed IPs are the whole list */
#define WGPEER_HAS_ENDPOINT     (1u << 3)
#define WGPEER_HAS_KEEPALIVE    (1u << 4)

/* Longest interface name, as IFNAMSIZ counts it (with the NUL). */
#define WGDEV_IFNAMSIZ IFNAMSIZ

struct wgdev_allowedip {
	uint16_t family;            /* AF_INET or AF_INET6 */
	uint8_t cidr;
	uint8_t addr[16];           /* network byte order; 4 bytes used for AF_INET */
};

union wgdev_endpoint {
	struct sockaddr sa;         /* sa_family AF_UNSPEC when none */
	struct sockaddr_in in;
	struct sockaddr_in6 in6;
};

struct wgdev_peer {
	uint32_t flags;
	uint8_t public_key[WG_KEY_LEN];
	union wgdev_endpoint endpoint;
	uint16_t keepalive;         /* seconds; 0 = off */
	int64_t last_handshake_sec; /* unix time; 0 = never */
	int64_t last_handshake_nsec;
	uint64_t rx_bytes;
	uint64_t tx_bytes;
	struct wgdev_allowedip *allowedips;
	size_t n_allowedips;
	size_t cap_allowedips;
};

struct wgdev {
	char name[WGDEV_IFNAMSIZ];
	uint32_t ifindex;
	uint32_t flags;
	uint8_t private_key[WG_KEY_LEN];
	uint8_t public_key[WG_KEY_LEN];
	uint16_t listen_port;
	uint32_t fwmark;
	struct wgdev_peer *peers;
	size_t n_peers;
	size_t cap_peers;
};

/* NULL when out of memory. */
struct wgdev *wgdev_new(void);
/* Frees peers, wipes keys, frees dev. NULL is fine. */
void wgdev_free(struct wgdev *dev);

/* Appends a zeroed peer with that key; NULL when out of memory. */
struct wgdev_peer *wgdev_add_peer(struct wgdev *dev, const uint8_t public_key[WG_KEY_LEN]);
/* The peer with that public key, or NULL. */
struct wgdev_peer *wgdev_find_peer(const struct wgdev *dev, const uint8_t public_key[WG_KEY_LEN]);
/* false when out of memory. */
bool wgdev_peer_add_allowedip(struct wgdev_peer *peer, const struct wgdev_allowedip *ip);

/* True when the allowed-IP sets are equal, in any order. */
bool wgdev_allowedips_equal(const struct wgdev_peer *a, const struct wgdev_peer *b);
/* True when the device carries no change at all (nothing to send). */
bool wgdev_is_empty(const struct wgdev *dev);

/*
 * Endpoints in the UAPI's text form: "192.0.2.1:51820" or "[2001:db8::1]:51820".
 * Parsing accepts numeric addresses only (names are resolved by the daemon).
 */
bool wgdev_endpoint_parse(const char *text, union wgdev_endpoint *out);
/* Writes "" for no endpoint; false when buf is too small. */
bool wgdev_endpoint_format(const union wgdev_endpoint *ep, char *buf, size_t len);
bool wgdev_endpoint_equal(const union wgdev_endpoint *a, const union wgdev_endpoint *b);
bool wgdev_endpoint_set(const union wgdev_endpoint *ep);

/* "10.77.0.2/32", "fd00::2/128"; host bits are cleared. */
bool wgdev_allowedip_parse(const char *text, struct wgdev_allowedip *out);
/* Needs INET6_ADDRSTRLEN + 4 bytes at most. */
bool wgdev_allowedip_format(const struct wgdev_allowedip *ip, char *buf, size_t len);
/* True when addr (family, 4 or 16 bytes) lies inside the prefix. */
bool wgdev_allowedip_contains(const struct wgdev_allowedip *prefix, uint16_t family,
		const uint8_t *addr);

#endif
