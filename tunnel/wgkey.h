/*
 * wgkey.h — WireGuard keys: X25519 through OpenSSL, base64 as `wg` writes it.
 *
 * A private key is 32 random bytes clamped as Curve25519 requires (what
 * `wg genkey` prints); its public key is the X25519 base point multiple.
 * Key bytes live in caller-owned buffers; wipe them with wgkey_wipe(). Key
 * text is read by the config's one decoder (config_parse_wg_key()), so a
 * key file and strait.yaml accept exactly the same text.
 */
#ifndef STRAIT_WGKEY_H
#define STRAIT_WGKEY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"        /* WG_KEY_LEN, WG_KEY_B64_LEN, config_parse_wg_key() */

/* Each returns false on failure, with a message in err (PostgreSQL style). */
bool wgkey_generate(uint8_t priv[WG_KEY_LEN], char *err, size_t errlen)
	__attribute__((warn_unused_result));
bool wgkey_public(const uint8_t priv[WG_KEY_LEN], uint8_t pub[WG_KEY_LEN], char *err, size_t errlen)
	__attribute__((warn_unused_result));

/* out must hold WG_KEY_B64_LEN + 1 bytes. */
void wgkey_to_base64(const uint8_t key[WG_KEY_LEN], char out[WG_KEY_B64_LEN + 1]);
/* config_parse_wg_key() of text with surrounding whitespace trimmed. */
bool wgkey_from_base64(const char *text, uint8_t key[WG_KEY_LEN]);
/* out must hold 2 * WG_KEY_LEN + 1 bytes: the UAPI's lowercase hex. */
void wgkey_to_hex(const uint8_t key[WG_KEY_LEN], char out[2 * WG_KEY_LEN + 1]);
bool wgkey_from_hex(const char *text, uint8_t key[WG_KEY_LEN]);

/*
 * Reads a base64 private key file. Refuses a file that group or others can
 * read (mode & 077), as `wg` warns and systemd's credentials require.
 */
bool wgkey_read_private_file(const char *path, uint8_t priv[WG_KEY_LEN], char *err, size_t errlen)
	__attribute__((warn_unused_result));

void wgkey_wipe(void *buf, size_t len);

#endif
