/*
 * test_wgkey.c — WireGuard keys: base64 and hex encodings, X25519 against
 * RFC 7748's test vector, generation, and the private key file checks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tunnel/wgkey.h"

static void from_hex(const char *hex, uint8_t out[WG_KEY_LEN])
{
	assert_true(wgkey_from_hex(hex, out));
}

/* RFC 7748, section 6.1: Alice's and Bob's key pairs. */
static void test_rfc7748_vector(void **state)
{
	uint8_t priv[WG_KEY_LEN], pub[WG_KEY_LEN], want[WG_KEY_LEN];
	char err[256];

	(void)state;
	from_hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a", priv);
	from_hex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a", want);
	assert_true(wgkey_public(priv, pub, err, sizeof(err)));
	assert_memory_equal(pub, want, WG_KEY_LEN);

	from_hex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb", priv);
	from_hex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f", want);
	assert_true(wgkey_public(priv, pub, err, sizeof(err)));
	assert_memory_equal(pub, want, WG_KEY_LEN);
}

static void test_base64_round_trip(void **state)
{
	uint8_t key[WG_KEY_LEN], back[WG_KEY_LEN];
	char b64[WG_KEY_B64_LEN + 1];

	(void)state;
	for (int round = 0; round < 64; round++) {
		for (size_t i = 0; i < WG_KEY_LEN; i++)
			key[i] = (uint8_t)(i * 37 + (size_t)round * 101);
		wgkey_to_base64(key, b64);
		assert_int_equal(strlen(b64), WG_KEY_B64_LEN);
		assert_int_equal(b64[WG_KEY_B64_LEN - 1], '=');
		assert_true(wgkey_from_base64(b64, back));
		assert_memory_equal(key, back, WG_KEY_LEN);
	}
	/* All zeros and all ones have well-known forms. */
	memset(key, 0, sizeof(key));
	wgkey_to_base64(key, b64);
	assert_string_equal(b64, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
	memset(key, 0xff, sizeof(key));
	wgkey_to_base64(key, b64);
	assert_string_equal(b64, "//////////////////////////////////////////8=");
}

static void test_base64_rejects(void **state)
{
	uint8_t key[WG_KEY_LEN];

	(void)state;
	assert_true(wgkey_from_base64("  AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n", key));
	assert_false(wgkey_from_base64("", key));
	assert_false(wgkey_from_base64("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", key));
	assert_false(wgkey_from_base64("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==", key));
	assert_false(wgkey_from_base64("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", key));
	assert_false(wgkey_from_base64("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA*A=", key));
	assert_false(wgkey_from_base64("AAAAAAAAAAAAAAAAAAAA AAAAAAAAAAAAAAAAAAAAAA=", key));
	/* the two bits past the 32nd byte set: not the text `wg` writes, refused as `wg` does */
	assert_false(wgkey_from_base64("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB=", key));
}

static void test_hex_round_trip(void **state)
{
	uint8_t key[WG_KEY_LEN], back[WG_KEY_LEN];
	char hex[2 * WG_KEY_LEN + 1];

	(void)state;
	for (size_t i = 0; i < WG_KEY_LEN; i++)
		key[i] = (uint8_t)(0xf0 + i);
	wgkey_to_hex(key, hex);
	assert_string_equal(hex, "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff000102030405060708090a0b0c0d0e0f");
	assert_true(wgkey_from_hex(hex, back));
	assert_memory_equal(key, back, WG_KEY_LEN);
	/* Upper case is read too; the UAPI writes lower case. */
	assert_true(wgkey_from_hex("F0F1F2F3F4F5F6F7F8F9FAFBFCFDFEFF000102030405060708090A0B0C0D0E0F",
				   back));
	assert_memory_equal(key, back, WG_KEY_LEN);
	assert_false(wgkey_from_hex("f0", back));
	assert_false(wgkey_from_hex("g0f1f2f3f4f5f6f7f8f9fafbfcfdfeff000102030405060708090a0b0c0d0e0f",
				    back));
	assert_false(wgkey_from_hex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff000102030405060708090a0b0c0d0e0f0",
				    back));
}

static void test_generate_is_clamped(void **state)
{
	uint8_t a[WG_KEY_LEN], b[WG_KEY_LEN], pub[WG_KEY_LEN];
	char err[256];

	(void)state;
	assert_true(wgkey_generate(a, err, sizeof(err)));
	assert_true(wgkey_generate(b, err, sizeof(err)));
	assert_memory_not_equal(a, b, WG_KEY_LEN);
	assert_int_equal(a[0] & 7, 0);
	assert_int_equal(a[31] & 0xc0, 0x40);
	assert_true(wgkey_public(a, pub, err, sizeof(err)));
	wgkey_wipe(a, sizeof(a));
	for (size_t i = 0; i < WG_KEY_LEN; i++)
		assert_int_equal(a[i], 0);
}

static void write_key_file(const char *path, mode_t mode, const char *text)
{
	int fd;

	unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

static void test_private_file(void **state)
{
	char dir[] = "/tmp/test_wgkey.XXXXXX";
	char path[128], err[512];
	uint8_t priv[WG_KEY_LEN];

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/key", dir);

	write_key_file(path, 0600, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n");
	assert_true(wgkey_read_private_file(path, priv, err, sizeof(err)));

	/* Readable by group or others: refused, with a message that says how to fix it. */
	write_key_file(path, 0644, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n");
	assert_false(wgkey_read_private_file(path, priv, err, sizeof(err)));
	assert_non_null(strstr(err, "group or world access"));
	assert_non_null(strstr(err, "chmod 600"));
	write_key_file(path, 0640, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n");
	assert_false(wgkey_read_private_file(path, priv, err, sizeof(err)));

	/* Not a key: refused, and the message does not echo the content. */
	write_key_file(path, 0600, "c2VjcmV0IGJ1dCBub3QgYSBrZXk=\n");
	assert_false(wgkey_read_private_file(path, priv, err, sizeof(err)));
	assert_null(strstr(err, "c2VjcmV0"));

	unlink(path);
	assert_false(wgkey_read_private_file(path, priv, err, sizeof(err)));
	assert_non_null(strstr(err, "could not open private key file"));
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rfc7748_vector),
		cmocka_unit_test(test_base64_round_trip),
		cmocka_unit_test(test_base64_rejects),
		cmocka_unit_test(test_hex_round_trip),
		cmocka_unit_test(test_generate_is_clamped),
		cmocka_unit_test(test_private_file),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
