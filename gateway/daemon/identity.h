/*
 * identity.h — which site this host is.
 *
 * The same config runs on every host, so each straitd must work out its own
 * site: `--site NAME`, or else the site whose public_key is the public half of
 * the key in private_key_file. With --site, a readable key that belongs to
 * another site is refused: it would bring up a tunnel no peer accepts.
 */
#ifndef STRAIT_IDENTITY_H
#define STRAIT_IDENTITY_H

#include <stddef.h>

struct strait_config;

/* Returns the site's index, or -1 with the reason in err. */
int identity_resolve(const struct strait_config *cfg, const char *site_flag,
		char *err, size_t errlen);

#endif
