/*
 * test_keyfile.c — the private key file rule (common/keyfile.h): modes 0600
 * and 0400 pass; any group or other bit, a directory, a missing file and
 * (when run as root) a file of another user are refused with the file named;
 * tls_context_new() applies the rule to tls.key.
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

#include <openssl/ssl.h>

#include "common/keyfile.h"
#include "common/log.h"
#include "gateway/relay/tls.h"
#include "tests/unit/tls_data.h"

static char data_dir[4096];
static char scratch[64];

static const char *scratch_file(const char *name, mode_t mode)
{
	static char path[128];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", scratch, name);
	unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "secret\n", 7), 7);
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
	return path;
}

static bool check(const char *path, char *err, size_t errlen)
{
	int fd = keyfile_open(path, err, errlen);

	if (fd < 0)
		return false;
	close(fd);
	return true;
}

static void test_owner_only_modes_pass(void **state)
{
	char err[512] = "";

	(void)state;
	assert_true(check(scratch_file("a.key", 0600), err, sizeof(err)));
	assert_true(check(scratch_file("b.key", 0400), err, sizeof(err)));
	assert_string_equal(err, "");
}

static void test_group_or_other_bits_are_refused(void **state)
{
	static const mode_t modes[] = { 0640, 0604, 0610, 0601, 0620, 0602, 0644, 0660 };
	char err[512], want[64];

	(void)state;
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		const char *path = scratch_file("loose.key", modes[i]);

		err[0] = '\0';
		assert_false(check(path, err, sizeof(err)));
		assert_non_null(strstr(err, path));
		assert_non_null(strstr(err, "group or world access"));
		snprintf(want, sizeof(want), "(mode %04o)", (unsigned)modes[i]);
		assert_non_null(strstr(err, want));
		assert_non_null(strstr(err, "chmod 600"));
	}
}

static void test_not_a_key_file(void **state)
{
	char err[512], path[128];

	(void)state;
	assert_false(check(scratch, err, sizeof(err)));
	assert_non_null(strstr(err, "is not a regular file"));
	snprintf(path, sizeof(path), "%s/missing.key", scratch);
	assert_false(check(path, err, sizeof(err)));
	assert_non_null(strstr(err, "could not open private key file"));
	assert_non_null(strstr(err, "missing.key"));
}

static void test_owner_must_be_self_or_root(void **state)
{
	char err[512];
	const char *path;

	(void)state;
	if (geteuid() != 0)
		skip();
	path = scratch_file("nobody.key", 0600);
	assert_int_equal(chown(path, 65534, 65534), 0);
	assert_false(check(path, err, sizeof(err)));
	assert_non_null(strstr(err, "belongs to uid 65534"));
	assert_non_null(strstr(err, path));
	assert_int_equal(chown(path, 0, 0), 0);
	assert_true(check(path, err, sizeof(err)));
}

static SSL_CTX *context_with_key_mode(mode_t mode)
{
	char ca[4200], cert[4200], key[4200];
	struct config_tls tls = { .ca = ca, .cert = cert, .key = key };

	snprintf(ca, sizeof(ca), "%s/cluster-ca.crt", data_dir);
	snprintf(cert, sizeof(cert), "%s/cloud.crt", data_dir);
	snprintf(key, sizeof(key), "%s/cloud.key", data_dir);
	assert_int_equal(chmod(key, mode), 0);
	return tls_context_new(&tls, "cloud");
}

static void test_tls_key_follows_the_rule(void **state)
{
	SSL_CTX *ctx;

	(void)state;
	ctx = context_with_key_mode(0600);
	assert_non_null(ctx);
	SSL_CTX_free(ctx);
	ctx = context_with_key_mode(0400);
	assert_non_null(ctx);
	SSL_CTX_free(ctx);
	assert_null(context_with_key_mode(0640));
	assert_null(context_with_key_mode(0644));
	ctx = context_with_key_mode(0600);
	assert_non_null(ctx);
	SSL_CTX_free(ctx);
}

static void remove_scratch(void)
{
	static const char *const names[] = { "a.key", "b.key", "loose.key", "nobody.key" };
	char path[128];

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", scratch, names[i]);
		unlink(path);
	}
	rmdir(scratch);
}

int main(void)
{
	const char *src = getenv("STRAIT_SOURCE_DIR");
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_owner_only_modes_pass),
		cmocka_unit_test(test_group_or_other_bits_are_refused),
		cmocka_unit_test(test_not_a_key_file),
		cmocka_unit_test(test_owner_must_be_self_or_root),
		cmocka_unit_test(test_tls_key_follows_the_rule),
	};

	snprintf(data_dir, sizeof(data_dir), "%s/tests/unit/data/tls", src ? src : ".");
	tls_data_private_copy(data_dir, sizeof(data_dir));
	snprintf(scratch, sizeof(scratch), "/tmp/strait-keyfile-XXXXXX");
	if (!mkdtemp(scratch))
		return 1;
	atexit(remove_scratch);
	log_init("test_keyfile");
	log_set_level(LOG_LEVEL_FATAL);     /* refusals are expected here */
	OPENSSL_init_ssl(0, NULL);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
