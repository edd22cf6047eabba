/*
 * config_reload.c — may a new config replace the running one on SIGHUP? Keys
 * the schema table marks as not reloadable (the cluster, where state and the
 * key live, the tunnel's interface and backend, the listening sockets) must be
 * unchanged; each one that changed gets its own diagnostic, pointing into the
 * new file, and the daemon keeps the old config.
 */
#include "config/config_int.h"

#include <stdlib.h>
#include <string.h>

/* The value as config_print writes it; NULL when out of memory. */
static char *value_text(const struct config_key *key, const struct strait_config *cfg)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&buf, &len);

	if (!mem)
		return NULL;
	config_type_format(mem, key, cfg, cfg);
	if (fclose(mem) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

bool config_reload_allowed(const struct strait_config *old_cfg,
		const struct strait_config *new_cfg, struct config_diags *diags)
{
	bool ok = true;

	if (!old_cfg || !new_cfg)
		return false;
	for (size_t i = 0; i < config_n_keys; i++) {
		const struct config_key *k = &config_keys[i];
		const struct config_where *w;
		char *was, *now;

		if (k->reload || k->scope != CS_ROOT || k->type == CT_SECTION)
			continue;
		was = value_text(k, old_cfg);
		now = value_text(k, new_cfg);
		if (!was || !now || strcmp(was, now) != 0) {
			w = config_where_find(new_cfg->source, k->path);
			config_diag_add(diags, new_cfg->source, new_cfg->path ? new_cfg->path : "<config>",
					w ? w->line : 0, w ? w->column : 0, k->path,
					"cannot be changed by a reload (was %s, now %s); restart straitd",
					was ? was : "?", now ? now : "?");
			ok = false;
		}
		free(was);
		free(now);
	}
	return ok;
}
