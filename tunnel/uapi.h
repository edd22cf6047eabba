/*
 * uapi.h — the cross-platform WireGuard UAPI: the text protocol that userspace
 * implementations (wireguard-go, boringtun) serve on
 * /var/run/wireguard/IFACE.sock.
 *
 * A request is "get=1\n\n" or "set=1\n" followed by key=value lines and a
 * blank line; every reply ends with "errno=N\n\n" (wireguard-go sends N
 * negated, boringtun positive: any non-zero is a failure). Keys travel in
 * lowercase hex. One connection carries one operation. A set is applied line
 * by line, not atomically, so callers send only what must change.
 *
 * The codec (uapi_format_set, uapi_parse_get, uapi_parse_errno) works on
 * buffers and is pure; the client functions do the socket I/O, bounded by a
 * short timeout: the socket is local and its server answers at once.
 *
 * Return convention: 0 on success, a negative errno on failure with a
 * PostgreSQL-style message in err. Nothing here logs.
 */
#ifndef STRAIT_UAPI_H
#define STRAIT_UAPI_H

#include <stdbool.h>
#include <stddef.h>

#include "tunnel/wgdev.h"

#define UAPI_SOCKET_DIR "/var/run/wireguard"
/* A reply larger than this is refused (about 20,000 peers' worth). */
#define UAPI_MAX_REPLY (8u << 20)

/*
 * Formats dev as a "set=1" request, blank line included. Returns a
 * NUL-terminated string the caller wipes and frees with uapi_request_free()
 * (it may carry the private key), or NULL when out of memory.
 */
char *uapi_format_set(const struct wgdev *dev, size_t *len);
void uapi_request_free(char *req, size_t len);

/*
 * Parses a complete "get" reply (up to and including the blank line). On
 * success *out is a new device the caller frees with wgdev_free(). A non-zero
 * errno line is returned as -|N|; malformed text as -EPROTO.
 */
int uapi_parse_get(const char *buf, size_t len, struct wgdev **out, char *err, size_t errlen)
	__attribute__((warn_unused_result));

/* Parses a "set" reply: "errno=N\n\n". Returns 0, -|N|, or -EPROTO. */
int uapi_parse_errno(const char *buf, size_t len, char *err, size_t errlen)
	__attribute__((warn_unused_result));

/* The socket path of ifname; false when ifname is not a valid interface name. */
bool uapi_socket_path(const char *ifname, char *buf, size_t len);

/* 0 when something answers on the interface's socket, else a negative errno. */
int uapi_probe(const char *ifname);

int uapi_get(const char *ifname, struct wgdev **out, char *err, size_t errlen)
	__attribute__((warn_unused_result));
int uapi_set(const char *ifname, const struct wgdev *dev, char *err, size_t errlen)
	__attribute__((warn_unused_result));

#endif
