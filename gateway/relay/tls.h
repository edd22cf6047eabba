/*
 * tls.h — the TLS side of the relay link: one OpenSSL context per site for
 * both directions (the dialer is the TLS client, the acceptor the server),
 * and the rule that binds a peer's certificate to a site name.
 *
 * Policy (DESIGN.md "Relay link"): TLS 1.3 only; both ends present a
 * certificate signed by the cluster CA (tls.ca) and verify the other's chain
 * (a missing peer certificate fails the handshake).
 *
 * Which site a certificate names: the site name is a DNS name of the
 * certificate. tls_cert_names_site() follows RFC 6125 as X509_check_host()
 * does: when the certificate has DNS subjectAltNames, one of them must equal
 * the site name; only when it has none does the subject's commonName count.
 * Wildcards never match (X509_CHECK_FLAG_NO_WILDCARDS): a site certificate
 * names exactly one site. Site names are lowercase ([a-z][a-z0-9_-]*), so the
 * DNS rule's case folding changes nothing. The test helper
 * (tests/integration/tlsutil.py) issues CN = SAN DNS = site name.
 *
 * Return conventions: constructors return NULL after logging why; predicates
 * return bool and log nothing.
 */
#ifndef STRAIT_TLS_H
#define STRAIT_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "config/config.h"

/*
 * The context for one site: CA, certificate chain and key from tls, TLS 1.3
 * only, mutual verification. Checks that the key matches the certificate and
 * that the certificate names self_site (a peer would refuse it otherwise).
 * Logs a warning when the certificate has expired or expires within 30 days.
 * Returns NULL (logged, with the file at fault) on failure; the caller frees
 * the context with SSL_CTX_free(). SSL objects made from it hold their own
 * reference, so a reload may drop the old context while links still use it.
 */
SSL_CTX *tls_context_new(const struct config_tls *tls, const char *self_site);

/* Whether cert names site (the rule above). */
bool tls_cert_names_site(X509 *cert, const char *site);

/*
 * Writes the names cert claims to buf, for messages: its DNS
 * subjectAltNames, or its commonName when it has none, each in double
 * quotes and comma-separated ("\"edge\"", "\"a\", \"b\""), or "no name".
 * Always NUL-terminates (truncates at len).
 */
void tls_cert_describe_names(X509 *cert, char *buf, size_t len);

/*
 * Writes a one-line reason for OpenSSL error err (from ERR_get_error() or
 * bufferevent_get_openssl_error()) to buf: the reason string, plus the
 * verification result of ssl when the reason is a failed certificate check
 * ("certificate verify failed: certificate has expired"). ssl may be NULL.
 */
void tls_error_describe(unsigned long err, SSL *ssl, char *buf, size_t len);

/* "TLSv1.3 TLS_AES_256_GCM_SHA384" for the established session of ssl. */
void tls_session_describe(SSL *ssl, char *buf, size_t len);

#endif
