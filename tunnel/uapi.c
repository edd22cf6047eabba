/*
 * uapi.c — WireGuard cross-platform UAPI: codec and client (see uapi.h).
 */
#include "tunnel/uapi.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* Longest line we accept in a reply: "allowed_ip=" and an IPv6 prefix, with room. */
#define UAPI_MAX_LINE 256
/* How long one operation may take on the local socket. */
#define UAPI_TIMEOUT_MS 3000

/* ---- formatting ---------------------------------------------------------- */

struct uapi_buf {
	char *data;
	size_t len;
	size_t cap;
};

static void uapi_put(struct uapi_buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void uapi_put(struct uapi_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	/* The buffer is sized up front, so this never truncates. */
	if (n > 0 && (size_t)n < b->cap - b->len)
		b->len += (size_t)n;
}

char *uapi_format_set(const struct wgdev *dev, size_t *len)
{
	char hex[2 * WG_KEY_LEN + 1];
	char text[INET6_ADDRSTRLEN + 16];
	struct uapi_buf b = { 0 };

	/*
	 * Sized once, so that the private key is never left behind in a buffer
	 * freed by realloc: 160 bytes of device lines, 256 per peer, 64 per IP.
	 */
	b.cap = 160;
	for (size_t i = 0; i < dev->n_peers; i++)
		b.cap += 256 + 64 * dev->peers[i].n_allowedips;
	b.data = malloc(b.cap);
	if (!b.data)
		return NULL;
	b.data[0] = '\0';

	uapi_put(&b, "set=1\n");
	if (dev->flags & WGDEV_HAS_PRIVATE_KEY) {
		wgkey_to_hex(dev->private_key, hex);
		uapi_put(&b, "private_key=%s\n", hex);
		wgkey_wipe(hex, sizeof(hex));
	}
	if (dev->flags & WGDEV_HAS_LISTEN_PORT)
		uapi_put(&b, "listen_port=%u\n", dev->listen_port);
	if (dev->flags & WGDEV_HAS_FWMARK)
		uapi_put(&b, "fwmark=%" PRIu32 "\n", dev->fwmark);
	if (dev->flags & WGDEV_REPLACE_PEERS)
		uapi_put(&b, "replace_peers=true\n");
	for (size_t i = 0; i < dev->n_peers; i++) {
		const struct wgdev_peer *p = &dev->peers[i];

		wgkey_to_hex(p->public_key, hex);
		uapi_put(&b, "public_key=%s\n", hex);
		if (p->flags & WGPEER_REMOVE) {
			uapi_put(&b, "remove=true\n");
			continue;
		}
		if (p->flags & WGPEER_UPDATE_ONLY)
			uapi_put(&b, "update_only=true\n");
		if ((p->flags & WGPEER_HAS_ENDPOINT) && wgdev_endpoint_set(&p->endpoint) &&
		    wgdev_endpoint_format(&p->endpoint, text, sizeof(text)))
			uapi_put(&b, "endpoint=%s\n", text);
		if (p->flags & WGPEER_HAS_KEEPALIVE)
			uapi_put(&b, "persistent_keepalive_interval=%u\n", p->keepalive);
		if (p->flags & WGPEER_REPLACE_ALLOWEDIPS)
			uapi_put(&b, "replace_allowed_ips=true\n");
		for (size_t k = 0; k < p->n_allowedips; k++)
			if (wgdev_allowedip_format(&p->allowedips[k], text, sizeof(text)))
				uapi_put(&b, "allowed_ip=%s\n", text);
	}
	uapi_put(&b, "\n");
	*len = b.len;
	return b.data;
}

void uapi_request_free(char *req, size_t len)
{
	if (!req)
		return;
	wgkey_wipe(req, len);
	free(req);
}

/* ---- parsing -------------------------------------------------------------- */

static bool uapi_parse_u64(const char *text, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;

	if (!*text)
		return false;
	for (; *text; text++) {
		unsigned d;

		if (*text < '0' || *text > '9')
			return false;
		d = (unsigned)(*text - '0');
		if (v > (max - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*out = v;
	return true;
}

/* errno=N with N an optionally signed decimal; the result is -|N| or 0. */
static bool uapi_parse_errno_value(const char *text, int *out)
{
	uint64_t v;

	if (*text == '-' || *text == '+')
		text++;
	if (!uapi_parse_u64(text, 4095, &v))
		return false;
	*out = -(int)v;
	return true;
}

/*
 * Reads the next line of buf[*pos..len) into line (without "\n").
 * Returns 1 for a line, 0 at the end of the buffer, -1 for a line that is
 * too long, holds a NUL byte or lacks its newline.
 */
static int uapi_next_line(const char *buf, size_t len, size_t *pos, char *line)
{
	size_t start = *pos, n;
	const char *nl;

	if (start >= len)
		return 0;
	nl = memchr(buf + start, '\n', len - start);
	if (!nl)
		return -1;
	n = (size_t)(nl - (buf + start));
	if (n >= UAPI_MAX_LINE || memchr(buf + start, '\0', n))
		return -1;
	memcpy(line, buf + start, n);
	line[n] = '\0';
	*pos = start + n + 1;
	return 1;
}

/* After "errno=N": exactly one blank line and nothing else. */
static int uapi_finish(const char *buf, size_t len, size_t pos, int code, const char *line,
		char *err, size_t errlen)
{
	if (pos + 1 != len || buf[pos] != '\n') {
		snprintf(err, errlen, "malformed UAPI reply: unexpected data after \"%s\"", line);
		return -EPROTO;
	}
	if (code != 0) {
		snprintf(err, errlen, "UAPI operation failed: %s", strerror(-code));
		return code;
	}
	return 0;
}

int uapi_parse_errno(const char *buf, size_t len, char *err, size_t errlen)
{
	char line[UAPI_MAX_LINE];
	size_t pos = 0;
	int code, r;

	r = uapi_next_line(buf, len, &pos, line);
	if (r <= 0 || strncmp(line, "errno=", 6) != 0 || !uapi_parse_errno_value(line + 6, &code)) {
		snprintf(err, errlen, "malformed UAPI reply: expected \"errno=N\"");
		return -EPROTO;
	}
	return uapi_finish(buf, len, pos, code, line, err, errlen);
}

static int uapi_parse_device_key(struct wgdev *dev, const char *key, const char *value)
{
	uint64_t v;

	if (strcmp(key, "private_key") == 0) {
		if (!wgkey_from_hex(value, dev->private_key))
			return -1;
		dev->flags |= WGDEV_HAS_PRIVATE_KEY;
	} else if (strcmp(key, "listen_port") == 0) {
		if (!uapi_parse_u64(value, UINT16_MAX, &v))
			return -1;
		dev->listen_port = (uint16_t)v;
		dev->flags |= WGDEV_HAS_LISTEN_PORT;
	} else if (strcmp(key, "fwmark") == 0) {
		if (!uapi_parse_u64(value, UINT32_MAX, &v))
			return -1;
		dev->fwmark = (uint32_t)v;
		dev->flags |= WGDEV_HAS_FWMARK;
	} else {
		return 0;  /* unknown device keys are skipped: newer servers may add some */
	}
	return 1;
}

static int uapi_parse_peer_key(struct wgdev_peer *p, const char *key, const char *value)
{
	struct wgdev_allowedip ip;
	uint64_t v;

	if (strcmp(key, "endpoint") == 0) {
		if (!wgdev_endpoint_parse(value, &p->endpoint))
			return -1;
		p->flags |= WGPEER_HAS_ENDPOINT;
	} else if (strcmp(key, "last_handshake_time_sec") == 0) {
		if (!uapi_parse_u64(value, INT64_MAX, &v))
			return -1;
		p->last_handshake_sec = (int64_t)v;
	} else if (strcmp(key, "last_handshake_time_nsec") == 0) {
		if (!uapi_parse_u64(value, 999999999, &v))
			return -1;
		p->last_handshake_nsec = (int64_t)v;
	} else if (strcmp(key, "rx_bytes") == 0) {
		if (!uapi_parse_u64(value, UINT64_MAX, &p->rx_bytes))
			return -1;
	} else if (strcmp(key, "tx_bytes") == 0) {
		if (!uapi_parse_u64(value, UINT64_MAX, &p->tx_bytes))
			return -1;
	} else if (strcmp(key, "persistent_keepalive_interval") == 0) {
		if (!uapi_parse_u64(value, UINT16_MAX, &v))
			return -1;
		p->keepalive = (uint16_t)v;
		p->flags |= WGPEER_HAS_KEEPALIVE;
	} else if (strcmp(key, "allowed_ip") == 0) {
		if (!wgdev_allowedip_parse(value, &ip))
			return -1;
		if (!wgdev_peer_add_allowedip(p, &ip))
			return -2;
	} else if (strcmp(key, "preshared_key") == 0) {
		uint8_t psk[WG_KEY_LEN];
		bool ok = wgkey_from_hex(value, psk);

		/* Checked for form, never kept: strait does not use preshared keys. */
		wgkey_wipe(psk, sizeof(psk));
		if (!ok)
			return -1;
	} else if (strcmp(key, "protocol_version") == 0) {
		if (!uapi_parse_u64(value, UINT32_MAX, &v))
			return -1;
	} else {
		return 0;
	}
	return 1;
}

int uapi_parse_get(const char *buf, size_t len, struct wgdev **out, char *err, size_t errlen)
{
	char line[UAPI_MAX_LINE];
	struct wgdev *dev;
	struct wgdev_peer *peer = NULL;
	size_t pos = 0;
	int rc = -EPROTO;

	*out = NULL;
	dev = wgdev_new();
	if (!dev) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	for (;;) {
		char *eq, *value;
		int r = uapi_next_line(buf, len, &pos, line);

		if (r == 0) {
			snprintf(err, errlen, "malformed UAPI reply: it ends without \"errno=N\"");
			goto out;
		}
		if (r < 0) {
			snprintf(err, errlen, "malformed UAPI reply: a line is too long, "
				 "unterminated or holds a NUL byte");
			goto out;
		}
		eq = strchr(line, '=');
		if (!eq || eq == line) {
			snprintf(err, errlen, "malformed UAPI reply: line \"%.64s\" is not key=value",
				 line);
			goto out;
		}
		*eq = '\0';
		value = eq + 1;
		if (strcmp(line, "errno") == 0) {
			int code;

			*eq = '=';
			if (!uapi_parse_errno_value(value, &code)) {
				snprintf(err, errlen, "malformed UAPI reply: invalid \"%.64s\"", line);
				goto out;
			}
			rc = uapi_finish(buf, len, pos, code, line, err, errlen);
			goto out;
		}
		if (strcmp(line, "public_key") == 0) {
			uint8_t key[WG_KEY_LEN];

			if (!wgkey_from_hex(value, key)) {
				snprintf(err, errlen, "malformed UAPI reply: invalid public_key");
				goto out;
			}
			peer = wgdev_add_peer(dev, key);
			if (!peer) {
				snprintf(err, errlen, "out of memory");
				rc = -ENOMEM;
				goto out;
			}
			continue;
		}
		r = peer ? uapi_parse_peer_key(peer, line, value) : uapi_parse_device_key(dev, line, value);
		if (r == -2) {
			snprintf(err, errlen, "out of memory");
			rc = -ENOMEM;
			goto out;
		}
		if (r < 0) {
			/* Never echo the value: it may be the private key. */
			snprintf(err, errlen, "malformed UAPI reply: invalid value for \"%.32s\"", line);
			goto out;
		}
	}
out:
	wgkey_wipe(line, sizeof(line));
	if (rc == 0)
		*out = dev;
	else
		wgdev_free(dev);
	return rc;
}

/* ---- client ---------------------------------------------------------------- */

bool uapi_socket_path(const char *ifname, char *buf, size_t len)
{
	size_t n = strlen(ifname);
	int w;

	if (n == 0 || n >= WGDEV_IFNAMSIZ || strchr(ifname, '/') || strcmp(ifname, ".") == 0 ||
	    strcmp(ifname, "..") == 0)
		return false;
	w = snprintf(buf, len, "%s/%s.sock", UAPI_SOCKET_DIR, ifname);
	return w > 0 && (size_t)w < len;
}

static int64_t uapi_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int uapi_connect(const char *ifname, char *err, size_t errlen)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd, e;

	if (!uapi_socket_path(ifname, sun.sun_path, sizeof(sun.sun_path))) {
		snprintf(err, errlen, "invalid interface name \"%s\"", ifname);
		return -EINVAL;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		e = errno;
		snprintf(err, errlen, "could not create socket: %s", strerror(e));
		return -e;
	}
	/* A local stream socket connects at once or fails (EAGAIN: backlog full). */
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		e = errno;
		snprintf(err, errlen, "could not connect to \"%s\": %s", sun.sun_path, strerror(e));
		close(fd);
		return -e;
	}
	return fd;
}

static int uapi_wait(int fd, short events, int64_t deadline)
{
	struct pollfd pfd = { .fd = fd, .events = events };
	int64_t left = deadline - uapi_now_ms();
	int r;

	if (left <= 0)
		return -ETIMEDOUT;
	r = poll(&pfd, 1, (int)left);
	if (r < 0)
		return errno == EINTR ? 0 : -errno;
	return r == 0 ? -ETIMEDOUT : 0;
}

/*
 * Sends req and reads the reply up to its blank line. *reply is malloc'd
 * (wipe it: a get reply holds the private key).
 */
static int uapi_exchange(const char *ifname, const char *req, size_t reqlen,
		char **reply, size_t *replylen, char *err, size_t errlen)
{
	int64_t deadline = uapi_now_ms() + UAPI_TIMEOUT_MS;
	size_t sent = 0, len = 0, cap = 0;
	char *buf = NULL;
	int fd, rc;

	*reply = NULL;
	*replylen = 0;
	fd = uapi_connect(ifname, err, errlen);
	if (fd < 0)
		return fd;
	while (sent < reqlen) {
		ssize_t n = send(fd, req + sent, reqlen - sent, MSG_NOSIGNAL);

		if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
			rc = uapi_wait(fd, POLLOUT, deadline);
			if (rc < 0)
				goto io_error;
			continue;
		}
		if (n < 0) {
			rc = -errno;
			goto io_error;
		}
		sent += (size_t)n;
	}
	for (;;) {
		ssize_t n;

		if (len + 4096 > cap) {
			size_t ncap = cap ? cap * 2 : 8192;
			char *grown;

			if (ncap > UAPI_MAX_REPLY + 4096) {
				snprintf(err, errlen, "UAPI reply on interface \"%s\" is too large", ifname);
				rc = -EMSGSIZE;
				goto out;
			}
			grown = malloc(ncap);
			if (!grown) {
				snprintf(err, errlen, "out of memory");
				rc = -ENOMEM;
				goto out;
			}
			if (buf) {
				memcpy(grown, buf, len);
				wgkey_wipe(buf, cap);
				free(buf);
			}
			buf = grown;
			cap = ncap;
		}
		n = recv(fd, buf + len, cap - len, 0);
		if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
			rc = uapi_wait(fd, POLLIN, deadline);
			if (rc < 0)
				goto io_error;
			continue;
		}
		if (n < 0) {
			rc = -errno;
			goto io_error;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		/* Every line is non-empty, so the first blank line ends the reply. */
		if ((len == 1 && buf[0] == '\n') ||
		    (len >= 2 && memmem(buf, len, "\n\n", 2)))
			break;
	}
	*reply = buf;
	*replylen = len;
	buf = NULL;
	rc = 0;
	goto out;
io_error:
	snprintf(err, errlen, "could not talk to the UAPI socket of interface \"%s\": %s",
		 ifname, strerror(-rc));
out:
	if (buf) {
		wgkey_wipe(buf, cap);
		free(buf);
	}
	close(fd);
	return rc;
}

int uapi_probe(const char *ifname)
{
	char err[256];
	int fd = uapi_connect(ifname, err, sizeof(err));

	if (fd < 0)
		return fd;
	close(fd);
	return 0;
}

int uapi_get(const char *ifname, struct wgdev **out, char *err, size_t errlen)
{
	static const char req[] = "get=1\n\n";
	char *reply;
	size_t len;
	int rc;

	*out = NULL;
	rc = uapi_exchange(ifname, req, sizeof(req) - 1, &reply, &len, err, errlen);
	if (rc < 0)
		return rc;
	rc = uapi_parse_get(reply, len, out, err, errlen);
	wgkey_wipe(reply, len);
	free(reply);
	if (rc == 0)
		snprintf((*out)->name, sizeof((*out)->name), "%s", ifname);
	return rc;
}

int uapi_set(const char *ifname, const struct wgdev *dev, char *err, size_t errlen)
{
	char *req, *reply;
	size_t reqlen, len;
	int rc;

	req = uapi_format_set(dev, &reqlen);
	if (!req) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	rc = uapi_exchange(ifname, req, reqlen, &reply, &len, err, errlen);
	uapi_request_free(req, reqlen);
	if (rc < 0)
		return rc;
	rc = uapi_parse_errno(reply, len, err, errlen);
	free(reply);
	return rc;
}
