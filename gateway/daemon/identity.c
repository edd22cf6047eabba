/*
 * identity.c — works out this host's site (see identity.h). The key file is
 * held to the private key rule (common/keyfile.h) before it is read: mode
 * 0600 or 0400, owned by straitd's user or root.
 */
#include "gateway/daemon/identity.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/keyfile.h"
#include "config/config.h"
#include "tunnel/wgkey.h"

int identity_resolve(const struct strait_config *cfg, const char *site_flag,
		char *err, size_t errlen)
{
	uint8_t priv[WG_KEY_LEN], pub[WG_KEY_LEN];
	char keyerr[512];
	int index = -1, fd;

	if (site_flag) {
		index = config_site_index(cfg, site_flag);
		if (index < 0) {
			snprintf(err, errlen, "site \"%s\" is not defined in \"%s\"", site_flag, cfg->path);
			return -1;
		}
		/* Without a key file the site may still run (tunnel backend none). */
		if (access(cfg->private_key_file, F_OK) < 0)
			return index;
	}

	fd = keyfile_open(cfg->private_key_file, keyerr, sizeof(keyerr));
	if (fd >= 0)
		close(fd);
	if (fd < 0 || !wgkey_read_private_file(cfg->private_key_file, priv, keyerr, sizeof(keyerr))) {
		if (site_flag && cfg->tunnel.backend == CONFIG_BACKEND_NONE)
			return index;
		snprintf(err, errlen, "%s%s", keyerr,
			 site_flag ? "" : " (or name the site with --site)");
		index = -1;
		goto out;
	}
	if (!wgkey_public(priv, pub, keyerr, sizeof(keyerr))) {
		snprintf(err, errlen, "%s", keyerr);
		index = -1;
		goto out;
	}

	if (site_flag) {
		if (memcmp(cfg->sites[index].public_key, pub, WG_KEY_LEN) != 0) {
			snprintf(err, errlen,
				 "the key in \"%s\" does not match site \"%s\"'s public_key",
				 cfg->private_key_file, site_flag);
			index = -1;
		}
		goto out;
	}
	for (size_t i = 0; i < cfg->n_sites; i++) {
		if (memcmp(cfg->sites[i].public_key, pub, WG_KEY_LEN) == 0) {
			index = (int)i;
			goto out;
		}
	}
	{
		char b64[WG_KEY_B64_LEN + 1];
		wgkey_to_base64(pub, b64);
		snprintf(err, errlen,
			 "no site in \"%s\" has public_key \"%s\" (the public half of \"%s\"); "
			 "name the site with --site", cfg->path, b64, cfg->private_key_file);
	}
out:
	wgkey_wipe(priv, sizeof(priv));
	return index;
}
