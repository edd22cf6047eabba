/*
 * test_identity.c — which site a host is: by --site, or by the public half of
 * its private key; refusals for a key of another site, a key of no site, an
 * unknown site and a key file others can read.
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

#include "config/config.h"
#include "gateway/daemon/identity.h"
#include "tunnel/wgkey.h"

struct fixture {
	char dir[64];
	char keyfile[128];
	char east_priv[WG_KEY_B64_LEN + 1];
	char west_priv[WG_KEY_B64_LEN + 1];
	struct strait_config *cfg;
};

static void make_key(char priv_b64[WG_KEY_B64_LEN + 1], char pub_b64[WG_KEY_B64_LEN + 1])
{
	uint8_t priv[WG_KEY_LEN], pub[WG_KEY_LEN];
	char err[128];

	assert_true(wgkey_generate(priv, err, sizeof(err)));
	assert_true(wgkey_public(priv, pub, err, sizeof(err)));
	wgkey_to_base64(priv, priv_b64);
	wgkey_to_base64(pub, pub_b64);
}

static void write_key(struct fixture *f, const char *b64, mode_t mode)
{
	int fd;

	unlink(f->keyfile);
	fd = open(f->keyfile, O_WRONLY | O_CREAT | O_TRUNC, mode);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, b64, strlen(b64)), (ssize_t)strlen(b64));
	close(fd);
	chmod(f->keyfile, mode);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct config_diags diags = { 0 };
	char east_pub[WG_KEY_B64_LEN + 1], west_pub[WG_KEY_B64_LEN + 1], *text = NULL;
	int n;

	strcpy(f->dir, "/tmp/strait-identity-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->keyfile, sizeof(f->keyfile), "%s/wg.key", f->dir);
	make_key(f->east_priv, east_pub);
	make_key(f->west_priv, west_pub);
	n = asprintf(&text,
		"cluster: lab\n"
		"private_key_file: %s\n"
		"sites:\n"
		"  east:\n"
		"    role: primary\n"
		"    endpoint: 192.0.2.1:51820\n"
		"    tunnel_address: 10.0.0.1/24\n"
		"    public_key: \"%s\"\n"
		"    database: dbname=app\n"
		"  west:\n"
		"    endpoint: 192.0.2.2:51820\n"
		"    tunnel_address: 10.0.0.2/24\n"
		"    public_key: \"%s\"\n"
		"    database: dbname=app\n"
		"tunnel: { backend: none }\n"
		"tls: { ca: /x/ca.crt, cert: /x/site.crt, key: /x/site.key }\n",
		f->keyfile, east_pub, west_pub);
	assert_true(n > 0);
	f->cfg = config_load_buffer("identity.yaml", text, strlen(text), &diags);
	if (!f->cfg)
		config_diags_print(stderr, &diags);
	assert_non_null(f->cfg);
	config_diags_free(&diags);
	free(text);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	unlink(f->keyfile);
	rmdir(f->dir);
	config_free(f->cfg);
	free(f);
	return 0;
}

static void test_found_by_key(void **state)
{
	struct fixture *f = *state;
	char err[512];

	write_key(f, f->west_priv, 0600);
	assert_int_equal(identity_resolve(f->cfg, NULL, err, sizeof(err)),
			 config_site_index(f->cfg, "west"));
	write_key(f, f->east_priv, 0600);
	assert_int_equal(identity_resolve(f->cfg, NULL, err, sizeof(err)),
			 config_site_index(f->cfg, "east"));
}

static void test_site_flag_must_match_key(void **state)
{
	struct fixture *f = *state;
	char err[512];

	write_key(f, f->east_priv, 0600);
	assert_int_equal(identity_resolve(f->cfg, "east", err, sizeof(err)),
			 config_site_index(f->cfg, "east"));
	assert_int_equal(identity_resolve(f->cfg, "west", err, sizeof(err)), -1);
	assert_non_null(strstr(err, "does not match site \"west\""));
}

static void test_unknown_site(void **state)
{
	struct fixture *f = *state;
	char err[512];

	assert_int_equal(identity_resolve(f->cfg, "north", err, sizeof(err)), -1);
	assert_non_null(strstr(err, "site \"north\" is not defined"));
}

static void test_key_of_no_site(void **state)
{
	struct fixture *f = *state;
	char other[WG_KEY_B64_LEN + 1], other_pub[WG_KEY_B64_LEN + 1], err[512];

	make_key(other, other_pub);
	write_key(f, other, 0600);
	assert_int_equal(identity_resolve(f->cfg, NULL, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "no site"));
	assert_non_null(strstr(err, other_pub));     /* the public half helps the operator */
	assert_null(strstr(err, other));             /* the private key never shows */
}

static void test_key_readable_by_others(void **state)
{
	struct fixture *f = *state;
	char err[512];

	write_key(f, f->east_priv, 0644);
	assert_int_equal(identity_resolve(f->cfg, NULL, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "group or world access"));
}

static void test_no_key_with_site_flag_and_backend_none(void **state)
{
	struct fixture *f = *state;
	char err[512];

	unlink(f->keyfile);
	assert_int_equal(identity_resolve(f->cfg, "west", err, sizeof(err)),
			 config_site_index(f->cfg, "west"));
	assert_int_equal(identity_resolve(f->cfg, NULL, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "--site"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_found_by_key, setup, teardown),
		cmocka_unit_test_setup_teardown(test_site_flag_must_match_key, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_site, setup, teardown),
		cmocka_unit_test_setup_teardown(test_key_of_no_site, setup, teardown),
		cmocka_unit_test_setup_teardown(test_key_readable_by_others, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_key_with_site_flag_and_backend_none, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
