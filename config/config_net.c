/*
 * config_net.c — the network values of strait.yaml: CIDR interface addresses,
 * endpoints ("host:port", "[v6]:port") and base64 WireGuard keys.
 *
 * Addresses go through inet_pton, so only what the kernel will take passes.
 * Host names must be valid DNS names (letters, digits and hyphens in labels of
 * at most 63, at most 253 in all); they are resolved later by the tunnel, not
 * here. A WireGuard key is exactly 32 bytes in canonical padded base64, as
 * `wg genkey` prints it.
 */
#include "config/config_int.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

bool config_parse_cidr(const char *text, struct config_cidr *out)
{
	char addr[INET6_ADDRSTRLEN + 1];
	const char *slash;
	size_t alen;
	unsigned prefix = 0, max;
	struct config_cidr c;

	if (!text)
		return false;
	memset(&c, 0, sizeof(c));
	slash = strchr(text, '/');
	if (!slash)
		return false;
	alen = (size_t)(slash - text);
	if (alen == 0 || alen >= sizeof(addr))
		return false;
	memcpy(addr, text, alen);
	addr[alen] = '\0';
	if (inet_pton(AF_INET, addr, c.addr) == 1) {
		c.family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, addr, c.addr) == 1) {
		c.family = AF_INET6;
		max = 128;
	} else {
		return false;
	}
	slash++;
	if (*slash == '\0' || strlen(slash) > 3)
		return false;
	for (const char *p = slash; *p; p++) {
		if (!isdigit((unsigned char)*p))
			return false;
		prefix = prefix * 10 + (unsigned)(*p - '0');
	}
	if (prefix > max)
		return false;
	c.prefix = (uint8_t)prefix;
	*out = c;
	return true;
}

void config_format_cidr(char *buf, size_t len, const struct config_cidr *cidr)
{
	char addr[INET6_ADDRSTRLEN];

	if (!inet_ntop(cidr->family == AF_INET6 ? AF_INET6 : AF_INET, cidr->addr, addr, sizeof(addr)))
		snprintf(addr, sizeof(addr), "?");
	snprintf(buf, len, "%s/%u", addr, (unsigned)cidr->prefix);
}

bool config_valid_hostname(const char *text)
{
	size_t len = strlen(text), label = 0;
	bool all_numeric = true;
	unsigned char prev = '.';

	if (len == 0 || len > 253)
		return false;
	for (const char *p = text; *p; p++) {
		unsigned char c = (unsigned char)*p;

		if (c == '.') {
			/* no empty label, no label ending in a hyphen */
			if (prev == '.' || prev == '-')
				return false;
			label = 0;
		} else if (isalnum(c) || c == '-') {
			if (c == '-' && prev == '.')
				return false;
			if (++label > 63)
				return false;
			if (!isdigit(c))
				all_numeric = false;
		} else {
			return false;
		}
		prev = c;
	}
	if (prev == '-' || (prev == '.' && len == 1))
		return false;
	/* All digits and dots is an IPv4 address or nothing. */
	if (all_numeric) {
		struct in_addr a;

		return inet_pton(AF_INET, text, &a) == 1;
	}
	return true;
}

static bool parse_port(const char *p, uint16_t *out)
{
	unsigned v = 0;
	size_t n = 0;

	for (; *p; p++, n++) {
		if (!isdigit((unsigned char)*p) || n >= 5)
			return false;
		v = v * 10 + (unsigned)(*p - '0');
	}
	if (n == 0 || v == 0 || v > 65535)
		return false;
	*out = (uint16_t)v;
	return true;
}

bool config_parse_endpoint(const char *text, struct config_endpoint *out)
{
	char host[256];
	const char *colon;
	size_t hlen;
	uint16_t port;
	char *copy;

	if (!text)
		return false;
	if (text[0] == '[') {
		const char *close = strchr(text, ']');
		struct in6_addr a6;

		if (!close || close[1] != ':')
			return false;
		hlen = (size_t)(close - text - 1);
		if (hlen == 0 || hlen >= sizeof(host))
			return false;
		memcpy(host, text + 1, hlen);
		host[hlen] = '\0';
		if (inet_pton(AF_INET6, host, &a6) != 1)
			return false;
		colon = close + 1;
	} else {
		colon = strrchr(text, ':');
		if (!colon || memchr(text, ':', (size_t)(colon - text)))
			return false;  /* none, or an IPv6 address without brackets */
		hlen = (size_t)(colon - text);
		if (hlen == 0 || hlen >= sizeof(host))
			return false;
		memcpy(host, text, hlen);
		host[hlen] = '\0';
		if (!config_valid_hostname(host))
			return false;
	}
	if (!parse_port(colon + 1, &port))
		return false;
	copy = strdup(host);
	if (!copy)
		return false;
	out->host = copy;
	out->port = port;
	return true;
}

static int b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

int config_base64_len(const char *text)
{
	size_t len = strlen(text), pad = 0;

	if (len == 0 || len % 4 != 0 || len > 4096)
		return -1;
	while (pad < 2 && text[len - 1 - pad] == '=')
		pad++;
	for (size_t i = 0; i < len - pad; i++)
		if (b64_value((unsigned char)text[i]) < 0)
			return -1;
	return (int)(len / 4 * 3 - pad);
}

bool config_parse_wg_key(const char *text, uint8_t out[WG_KEY_LEN])
{
	uint8_t key[WG_KEY_LEN];
	size_t o = 0;
	uint32_t acc = 0;
	int bits = 0;

	/* 32 bytes: 43 characters and one '=' of padding (WG_KEY_B64_LEN). */
	if (!text || config_base64_len(text) != WG_KEY_LEN)
		return false;
	for (size_t i = 0; i < WG_KEY_B64_LEN - 1; i++) {
		acc = (acc << 6) | (uint32_t)b64_value((unsigned char)text[i]);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			key[o++] = (uint8_t)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	/* Canonical form: the two bits left over are zero. */
	if (o != WG_KEY_LEN || acc != 0) {
		explicit_bzero(key, sizeof(key));
		return false;
	}
	memcpy(out, key, WG_KEY_LEN);
	/* private keys pass here too (the tunnel's key files): no copy stays behind */
	explicit_bzero(key, sizeof(key));
	return true;
}

/*
 * An etcd client URL: http://host:port, a trailing slash allowed. https is
 * refused: etcd is reached over the tunnel, which WireGuard encrypts.
 */
bool config_valid_http_url(const char *text, char *err, size_t errlen)
{
	struct config_endpoint ep;
	char rest[300];
	size_t n;

	if (strncmp(text, "https://", 8) == 0) {
		snprintf(err, errlen, "https is not supported in \"%.60s\": give etcd's client URL on "
			 "the tunnel (http://<tunnel address>:2379), which WireGuard encrypts", text);
		return false;
	}
	n = strncmp(text, "http://", 7) == 0 ? strlen(text + 7) : 0;
	if (n > 0 && n < sizeof(rest)) {
		memcpy(rest, text + 7, n + 1);
		if (rest[n - 1] == '/')
			rest[n - 1] = '\0';
		if (config_parse_endpoint(rest, &ep)) {
			uint8_t addr[16];
			bool ip = inet_pton(AF_INET, ep.host, addr) == 1 ||
				  inet_pton(AF_INET6, ep.host, addr) == 1;

			free(ep.host);
			if (ip)
				return true;
			snprintf(err, errlen, "\"%.60s\" names a host: give etcd's address (a tunnel "
				 "address, such as http://10.77.0.4:2379); names are not resolved", text);
			return false;
		}
	}
	snprintf(err, errlen, "invalid URL \"%.60s\" (use http://host:port, such as "
		 "http://10.77.0.4:2379)", text);
	return false;
}
