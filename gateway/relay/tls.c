/*
 * tls.c — OpenSSL context and peer naming for the relay link (see tls.h).
 *
 * NOTES
 * Both directions share one SSL_CTX made with TLS_method(): SSL objects made
 * from it act as client or server depending on how the bufferevent starts
 * them. A site certificate therefore serves as TLS server and as TLS client
 * certificate; when it carries extendedKeyUsage, it needs both serverAuth and
 * clientAuth (OpenSSL checks the purpose of the peer's certificate).
 *
 * Session tickets are turned off: each side dials once per link and never
 * resumes, so tickets would only cost bytes and keep key material around.
 *
 * The key file must pass the private key rule (common/keyfile.h) and is read
 * from the descriptor that was checked, at start and at every reload.
 */
#include "gateway/relay/tls.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "common/keyfile.h"
#include "common/log.h"

#define TLS_EXPIRY_WARN_DAYS 30

/* The reason of the oldest queued OpenSSL error, and clears the queue. */
static void tls_last_error(char *buf, size_t len)
{
	unsigned long err = ERR_get_error();

	if (err == 0)
		snprintf(buf, len, "unknown error");
	else
		tls_error_describe(err, NULL, buf, len);
	ERR_clear_error();
}

void tls_error_describe(unsigned long err, SSL *ssl, char *buf, size_t len)
{
	const char *reason = ERR_reason_error_string(err);
	char code[64];

	if (reason == NULL) {
		ERR_error_string_n(err, code, sizeof(code));
		reason = code;
	}
	if (ssl != NULL && ERR_GET_LIB(err) == ERR_LIB_SSL &&
			ERR_GET_REASON(err) == SSL_R_CERTIFICATE_VERIFY_FAILED) {
		long vr = SSL_get_verify_result(ssl);

		if (vr != X509_V_OK) {
			snprintf(buf, len, "%s: %s", reason, X509_verify_cert_error_string(vr));
			return;
		}
	}
	snprintf(buf, len, "%s", reason);
}

void tls_session_describe(SSL *ssl, char *buf, size_t len)
{
	snprintf(buf, len, "%s %s", SSL_get_version(ssl), SSL_get_cipher_name(ssl));
}

bool tls_cert_names_site(X509 *cert, const char *site)
{
	if (cert == NULL || site == NULL || site[0] == '\0')
		return false;
	return X509_check_host(cert, site, strlen(site), X509_CHECK_FLAG_NO_WILDCARDS,
			NULL) == 1;
}

/*
 * Appends "\"name\"" (after ", " when not first) to buf[0..len - 1) at *used;
 * the caller NUL-terminates. Names come from the peer: anything that is not
 * printable ASCII is shown as '?', so a log line stays one line.
 */
static void tls_append_name(char *buf, size_t len, size_t *used, const unsigned char *name,
		int name_len)
{
	const char *sep = *used > 0 ? ", " : "";

	for (; *sep != '\0' && *used + 1 < len; sep++)
		buf[(*used)++] = *sep;
	if (*used + 1 < len)
		buf[(*used)++] = '"';
	for (int i = 0; i < name_len && *used + 1 < len; i++) {
		unsigned char c = name[i];

		buf[(*used)++] = (c >= 0x20 && c < 0x7f && c != '"') ? (char)c : '?';
	}
	if (*used + 1 < len)
		buf[(*used)++] = '"';
}

void tls_cert_describe_names(X509 *cert, char *buf, size_t len)
{
	GENERAL_NAMES *sans = NULL;
	size_t used = 0;

	if (len == 0)
		return;
	buf[0] = '\0';
	if (cert == NULL)
		goto out;

	sans = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	for (int i = 0; sans != NULL && i < sk_GENERAL_NAME_num(sans); i++) {
		const GENERAL_NAME *gn = sk_GENERAL_NAME_value(sans, i);

		if (gn->type != GEN_DNS)
			continue;
		tls_append_name(buf, len, &used, ASN1_STRING_get0_data(gn->d.dNSName),
				ASN1_STRING_length(gn->d.dNSName));
	}
	if (used == 0) {
		X509_NAME *subject = X509_get_subject_name(cert);
		int idx = subject ? X509_NAME_get_index_by_NID(subject, NID_commonName, -1) : -1;

		if (idx >= 0) {
			ASN1_STRING *cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, idx));

			tls_append_name(buf, len, &used, ASN1_STRING_get0_data(cn),
					ASN1_STRING_length(cn));
		}
	}
out:
	buf[used] = '\0';
	if (sans != NULL)
		GENERAL_NAMES_free(sans);
	if (buf[0] == '\0')
		snprintf(buf, len, "no name");
}

/*
 * Checks the site's own certificate the way a peer will: it must name the
 * site and chain to the CA. Expiry is only a warning here: the daemon should
 * still start (tunnel, status) and pick up a renewed certificate on reload.
 */
static bool tls_check_own_cert(SSL_CTX *ctx, const struct config_tls *tls, const char *site)
{
	X509 *cert = SSL_CTX_get0_certificate(ctx);
	X509_STORE_CTX *vctx = NULL;
	STACK_OF(X509) *chain = NULL;
	const ASN1_TIME *not_after;
	int days = 0, secs = 0;
	char names[256];
	bool ok = false;

	if (!tls_cert_names_site(cert, site)) {
		tls_cert_describe_names(cert, names, sizeof(names));
		log_error("TLS certificate \"%s\" is for site %s, not for this site \"%s\"",
			tls->cert, names, site);
		goto out;
	}

	vctx = X509_STORE_CTX_new();
	if (vctx == NULL) {
		log_error("could not check TLS certificate \"%s\": out of memory", tls->cert);
		goto out;
	}
	SSL_CTX_get0_chain_certs(ctx, &chain);
	if (!X509_STORE_CTX_init(vctx, SSL_CTX_get_cert_store(ctx), cert, chain)) {
		log_error("could not check TLS certificate \"%s\": out of memory", tls->cert);
		goto out;
	}
	if (X509_verify_cert(vctx) != 1) {
		int err = X509_STORE_CTX_get_error(vctx);

		if (err != X509_V_ERR_CERT_HAS_EXPIRED && err != X509_V_ERR_CERT_NOT_YET_VALID) {
			log_error("TLS certificate \"%s\" does not verify against CA \"%s\": %s",
				tls->cert, tls->ca, X509_verify_cert_error_string(err));
			goto out;
		}
	}

	not_after = X509_get0_notAfter(cert);
	if (ASN1_TIME_diff(&days, &secs, NULL, not_after)) {
		if (days < 0 || secs < 0)
			log_warning("TLS certificate \"%s\" has expired: peers will refuse this site",
				tls->cert);
		else if (days < TLS_EXPIRY_WARN_DAYS)
			log_warning("TLS certificate \"%s\" expires in %d days", tls->cert, days);
	}
	ok = true;
out:
	X509_STORE_CTX_free(vctx);
	ERR_clear_error();
	return ok;
}

/* A daemon never asks for a passphrase: an encrypted key simply fails to load. */
static int tls_no_passphrase(char *buf, int size, int rwflag, void *arg)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)arg;
	return -1;
}

/* Loads the key from path once it passes the key file rule; logs why not. */
static bool tls_use_key_file(SSL_CTX *ctx, const char *path)
{
	char reason[512];
	EVP_PKEY *pkey = NULL;
	BIO *bio = NULL;
	bool ok = false;
	int fd;

	fd = keyfile_open(path, reason, sizeof(reason));
	if (fd < 0) {
		log_error("could not load TLS key: %s", reason);
		return false;
	}
	bio = BIO_new_fd(fd, BIO_CLOSE);
	if (bio == NULL) {
		close(fd);
		tls_last_error(reason, sizeof(reason));
		log_error("could not load TLS key file \"%s\": %s", path, reason);
		goto out;
	}
	/* Never print the key; the reason names only what went wrong. */
	pkey = PEM_read_bio_PrivateKey(bio, NULL, tls_no_passphrase, NULL);
	if (pkey == NULL || SSL_CTX_use_PrivateKey(ctx, pkey) != 1) {
		tls_last_error(reason, sizeof(reason));
		log_error("could not load TLS key file \"%s\": %s", path, reason);
		goto out;
	}
	ok = true;
out:
	EVP_PKEY_free(pkey);
	BIO_free(bio);
	return ok;
}

/*
 * The CA's revocation list: every peer's certificate (and this site's own,
 * checked below) is looked up in it. A reload builds a new context, so a
 * new list applies to every connection made after it.
 */
static bool tls_use_crl(SSL_CTX *ctx, const char *path)
{
	X509_STORE *store = SSL_CTX_get_cert_store(ctx);
	X509_LOOKUP *lookup = X509_STORE_add_lookup(store, X509_LOOKUP_file());
	char reason[256];

	if (lookup == NULL || X509_load_crl_file(lookup, path, X509_FILETYPE_PEM) < 1) {
		tls_last_error(reason, sizeof(reason));
		log_error("could not load TLS revocation list \"%s\": %s", path, reason);
		return false;
	}
	X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
	return true;
}

SSL_CTX *tls_context_new(const struct config_tls *tls, const char *self_site)
{
	SSL_CTX *ctx = NULL;
	char reason[256];
	bool ok = false;

	ERR_clear_error();
	if (tls->ca == NULL || tls->cert == NULL || tls->key == NULL) {
		log_error("could not set up TLS: tls.ca, tls.cert and tls.key are all required");
		goto out;
	}
	ctx = SSL_CTX_new(TLS_method());
	if (ctx == NULL) {
		tls_last_error(reason, sizeof(reason));
		log_error("could not create TLS context: %s", reason);
		goto out;
	}
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION)) {
		tls_last_error(reason, sizeof(reason));
		log_error("could not require TLS 1.3: %s", reason);
		goto out;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	SSL_CTX_set_num_tickets(ctx, 0);
	/*
	 * A peer that goes away without close_notify is an EOF, not an error:
	 * frames carry their own length, so the link sees a truncated frame
	 * itself (and says so), and a crashed peer reads as "closed".
	 */
	SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);

	if (SSL_CTX_load_verify_locations(ctx, tls->ca, NULL) != 1) {
		tls_last_error(reason, sizeof(reason));
		log_error("could not load TLS CA file \"%s\": %s", tls->ca, reason);
		goto out;
	}
	if (tls->crl && !tls_use_crl(ctx, tls->crl))
		goto out;
	if (SSL_CTX_use_certificate_chain_file(ctx, tls->cert) != 1) {
		tls_last_error(reason, sizeof(reason));
		log_error("could not load TLS certificate file \"%s\": %s", tls->cert, reason);
		goto out;
	}
	if (!tls_use_key_file(ctx, tls->key))
		goto out;
	if (SSL_CTX_check_private_key(ctx) != 1) {
		tls_last_error(reason, sizeof(reason));
		log_error("TLS key \"%s\" does not match certificate \"%s\": %s",
			tls->key, tls->cert, reason);
		goto out;
	}
	if (!tls_check_own_cert(ctx, tls, self_site))
		goto out;
	ok = true;
out:
	if (!ok) {
		SSL_CTX_free(ctx);
		ctx = NULL;
	}
	ERR_clear_error();
	return ctx;
}
