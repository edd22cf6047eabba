/*
 * test_tls.c — the relay link's TLS rules (gateway/relay/tls.c): which site a
 * certificate names, how names are shown in messages, and what the site's own
 * context refuses to load. Certificates come from tests/unit/data/tls
 * (make_certs.py there says what each one is).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#include "common/log.h"
#include "gateway/relay/tls.h"
#include "tests/unit/tls_data.h"

static char data_dir[4096];

static const char *data_path(const char *name)
{
	static char paths[8][4200];
	static int next;
	char *p = paths[next++ % 8];

	snprintf(p, sizeof(paths[0]), "%s/%s", data_dir, name);
	return p;
}

static X509 *load_cert(const char *name)
{
	FILE *f = fopen(data_path(name), "r");
	X509 *cert;

	assert_non_null(f);
	cert = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	assert_non_null(cert);
	return cert;
}

static void test_names_site(void **state)
{
	X509 *cert = load_cert("cloud.crt");

	(void)state;
	assert_true(tls_cert_names_site(cert, "cloud"));
	assert_false(tls_cert_names_site(cert, "edge"));
	assert_false(tls_cert_names_site(cert, "clou"));
	assert_false(tls_cert_names_site(cert, "cloudy"));
	assert_false(tls_cert_names_site(cert, ""));
	assert_false(tls_cert_names_site(cert, NULL));
	assert_false(tls_cert_names_site(NULL, "cloud"));
	X509_free(cert);
}

static void test_cn_counts_only_without_san(void **state)
{
	X509 *cn_only = load_cert("cn-only.crt");
	X509 *san_wins = load_cert("san-wins.crt");

	(void)state;
	/* No DNS subjectAltName: the commonName names the site. */
	assert_true(tls_cert_names_site(cn_only, "onprem"));
	/* With one, the commonName does not count (RFC 6125). */
	assert_false(tls_cert_names_site(san_wins, "cloud"));
	assert_true(tls_cert_names_site(san_wins, "other"));
	X509_free(cn_only);
	X509_free(san_wins);
}

static void test_every_san_and_no_wildcards(void **state)
{
	X509 *two = load_cert("two-names.crt");
	X509 *wild = load_cert("wildcard.crt");

	(void)state;
	assert_true(tls_cert_names_site(two, "cloud"));
	assert_true(tls_cert_names_site(two, "backup"));
	assert_false(tls_cert_names_site(two, "edge"));
	assert_false(tls_cert_names_site(wild, "a.example"));
	assert_false(tls_cert_names_site(wild, "example"));
	assert_false(tls_cert_names_site(wild, "wild"));
	X509_free(two);
	X509_free(wild);
}

static void test_describe_names(void **state)
{
	X509 *cloud = load_cert("cloud.crt"), *two = load_cert("two-names.crt");
	X509 *cn_only = load_cert("cn-only.crt");
	char buf[128], tiny[8];

	(void)state;
	tls_cert_describe_names(cloud, buf, sizeof(buf));
	assert_string_equal(buf, "\"cloud\"");
	tls_cert_describe_names(two, buf, sizeof(buf));
	assert_string_equal(buf, "\"cloud\", \"backup\"");
	tls_cert_describe_names(cn_only, buf, sizeof(buf));
	assert_string_equal(buf, "\"onprem\"");
	tls_cert_describe_names(NULL, buf, sizeof(buf));
	assert_string_equal(buf, "no name");
	/* Cut, never overrun. */
	memset(tiny, 'x', sizeof(tiny));
	tls_cert_describe_names(two, tiny, sizeof(tiny));
	assert_int_equal(strlen(tiny), sizeof(tiny) - 1);
	assert_memory_equal(tiny, "\"cloud\"", 7);
	X509_free(cloud);
	X509_free(two);
	X509_free(cn_only);
}

static SSL_CTX *context(const char *ca, const char *cert, const char *key, const char *site)
{
	struct config_tls tls = {
		.ca = (char *)data_path(ca),
		.cert = (char *)data_path(cert),
		.key = (char *)data_path(key),
	};

	return tls_context_new(&tls, site);
}

static void test_context_policy(void **state)
{
	SSL_CTX *ctx = context("cluster-ca.crt", "cloud.crt", "cloud.key", "cloud");
	int mode;

	(void)state;
	assert_non_null(ctx);
	assert_int_equal(SSL_CTX_get_min_proto_version(ctx), TLS1_3_VERSION);
	mode = SSL_CTX_get_verify_mode(ctx);
	assert_true(mode & SSL_VERIFY_PEER);
	assert_true(mode & SSL_VERIFY_FAIL_IF_NO_PEER_CERT);
	SSL_CTX_free(ctx);
}

static void test_context_refusals(void **state)
{
	(void)state;
	/* The certificate names another site than this one. */
	assert_null(context("cluster-ca.crt", "cloud.crt", "cloud.key", "edge"));
	/* Not from the cluster CA. */
	assert_null(context("cluster-ca.crt", "foreign.crt", "foreign.key", "cloud"));
	/* The key is another certificate's. */
	assert_null(context("cluster-ca.crt", "cloud.crt", "edge.key", "cloud"));
	/* Missing files. */
	assert_null(context("missing-ca.crt", "cloud.crt", "cloud.key", "cloud"));
	assert_null(context("cluster-ca.crt", "missing.crt", "cloud.key", "cloud"));
	assert_null(context("cluster-ca.crt", "cloud.crt", "missing.key", "cloud"));
	/* A CA file where the key belongs. */
	assert_null(context("cluster-ca.crt", "cloud.crt", "cluster-ca.crt", "cloud"));
	/* No paths at all. */
	{
		struct config_tls none = { 0 };

		assert_null(tls_context_new(&none, "cloud"));
	}
}

static void test_context_expired_is_a_warning(void **state)
{
	/* An expired certificate still loads: a renewed one comes with a reload. */
	SSL_CTX *ctx = context("cluster-ca.crt", "expired.crt", "expired.key", "cloud");

	(void)state;
	assert_non_null(ctx);
	SSL_CTX_free(ctx);
}

static void test_error_describe(void **state)
{
	char buf[256];

	(void)state;
	tls_error_describe(ERR_PACK(ERR_LIB_SSL, 0, SSL_R_CERTIFICATE_VERIFY_FAILED), NULL,
		buf, sizeof(buf));
	assert_string_equal(buf, "certificate verify failed");
	tls_error_describe(ERR_PACK(ERR_LIB_SSL, 0, SSL_R_UNSUPPORTED_PROTOCOL), NULL,
		buf, sizeof(buf));
	assert_string_equal(buf, "unsupported protocol");
}

int main(void)
{
	const char *src = getenv("STRAIT_SOURCE_DIR");
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names_site),
		cmocka_unit_test(test_cn_counts_only_without_san),
		cmocka_unit_test(test_every_san_and_no_wildcards),
		cmocka_unit_test(test_describe_names),
		cmocka_unit_test(test_context_policy),
		cmocka_unit_test(test_context_refusals),
		cmocka_unit_test(test_context_expired_is_a_warning),
		cmocka_unit_test(test_error_describe),
	};

	snprintf(data_dir, sizeof(data_dir), "%s/tests/unit/data/tls", src ? src : ".");
	tls_data_private_copy(data_dir, sizeof(data_dir));  /* keys must be 0600 */
	log_init("test_tls");
	log_set_level(LOG_LEVEL_FATAL);     /* refusals are expected here */
	OPENSSL_init_ssl(0, NULL);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
