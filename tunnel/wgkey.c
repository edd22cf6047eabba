/*
 * wgkey.c — WireGuard key generation and encoding (see wgkey.h).
 */
#include "tunnel/wgkey.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "common/hexdigit.h"

static void wgkey_openssl_error(char *err, size_t errlen, const char *what)
{
	unsigned long code = ERR_get_error();

	snprintf(err, errlen, "%s: %s", what, code ? ERR_reason_error_string(code) : "unknown error");
	ERR_clear_error();
}

bool wgkey_generate(uint8_t priv[WG_KEY_LEN], char *err, size_t errlen)
{
	if (RAND_priv_bytes(priv, WG_KEY_LEN) != 1) {
		wgkey_openssl_error(err, errlen, "could not generate random key");
		return false;
	}
	/* Curve25519 clamping, as wg genkey does. */
	priv[0] &= 248;
	priv[31] = (priv[31] & 127) | 64;
	return true;
}

bool wgkey_public(const uint8_t priv[WG_KEY_LEN], uint8_t pub[WG_KEY_LEN], char *err, size_t errlen)
{
	EVP_PKEY *pkey;
	size_t len = WG_KEY_LEN;
	bool ok;

	pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, priv, WG_KEY_LEN);
	if (!pkey) {
		wgkey_openssl_error(err, errlen, "could not load X25519 private key");
		return false;
	}
	ok = EVP_PKEY_get_raw_public_key(pkey, pub, &len) == 1 && len == WG_KEY_LEN;
	if (!ok)
		wgkey_openssl_error(err, errlen, "could not derive X25519 public key");
	EVP_PKEY_free(pkey);
	return ok;
}

void wgkey_to_base64(const uint8_t key[WG_KEY_LEN], char out[WG_KEY_B64_LEN + 1])
{
	EVP_EncodeBlock((unsigned char *)out, key, WG_KEY_LEN);
	out[WG_KEY_B64_LEN] = '\0';
}

bool wgkey_from_base64(const char *text, uint8_t key[WG_KEY_LEN])
{
	char trimmed[WG_KEY_B64_LEN + 1];
	size_t len;
	bool ok;

	while (*text == ' ' || *text == '\t' || *text == '\n' || *text == '\r')
		text++;
	len = strlen(text);
	while (len > 0 && (text[len - 1] == ' ' || text[len - 1] == '\t' ||
			   text[len - 1] == '\n' || text[len - 1] == '\r'))
		len--;
	if (len != WG_KEY_B64_LEN)
		return false;
	memcpy(trimmed, text, WG_KEY_B64_LEN);
	trimmed[WG_KEY_B64_LEN] = '\0';
	ok = config_parse_wg_key(trimmed, key);
	wgkey_wipe(trimmed, sizeof(trimmed));
	return ok;
}

void wgkey_to_hex(const uint8_t key[WG_KEY_LEN], char out[2 * WG_KEY_LEN + 1])
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < WG_KEY_LEN; i++) {
		out[2 * i] = digits[key[i] >> 4];
		out[2 * i + 1] = digits[key[i] & 15];
	}
	out[2 * WG_KEY_LEN] = '\0';
}

bool wgkey_from_hex(const char *text, uint8_t key[WG_KEY_LEN])
{
	if (strlen(text) != 2 * WG_KEY_LEN)
		return false;
	for (size_t i = 0; i < WG_KEY_LEN; i++) {
		int hi = hex_digit_value(text[2 * i]);
		int lo = hex_digit_value(text[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return false;
		key[i] = (uint8_t)(hi << 4 | lo);
	}
	return true;
}

bool wgkey_read_private_file(const char *path, uint8_t priv[WG_KEY_LEN], char *err, size_t errlen)
{
	char text[128];
	struct stat st;
	ssize_t n;
	bool ok = false;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		snprintf(err, errlen, "could not open private key file \"%s\": %s", path, strerror(errno));
		return false;
	}
	if (fstat(fd, &st) < 0) {
		snprintf(err, errlen, "could not stat private key file \"%s\": %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "private key file \"%s\" is not a regular file", path);
		goto out;
	}
	if (st.st_mode & 077) {
		snprintf(err, errlen,
			 "private key file \"%s\" has group or world access (mode %04o); "
			 "run: chmod 600 %s", path, (unsigned)(st.st_mode & 07777), path);
		goto out;
	}
	n = read(fd, text, sizeof(text) - 1);
	if (n < 0) {
		snprintf(err, errlen, "could not read private key file \"%s\": %s", path, strerror(errno));
		goto out;
	}
	text[n] = '\0';
	if (!wgkey_from_base64(text, priv)) {
		snprintf(err, errlen, "private key file \"%s\" does not hold a base64 WireGuard key", path);
		goto out;
	}
	ok = true;
out:
	wgkey_wipe(text, sizeof(text));
	close(fd);
	return ok;
}

void wgkey_wipe(void *buf, size_t len)
{
	OPENSSL_cleanse(buf, len);
}
