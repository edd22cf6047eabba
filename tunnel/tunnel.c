/*
 * tunnel.c — the site's WireGuard interface (see tunnel.h).
 */
#include "tunnel/tunnel.h"

#include <stdlib.h>

#include "config/config.h"
#include "gateway/json.h"
#include "gateway/log.h"

struct tunnel {
	enum config_backend backend;
	char *interface;
};

static const char *tunnel_backend_name(enum config_backend b)
{
	switch (b) {
	case CONFIG_BACKEND_AUTO: return "auto";
	case CONFIG_BACKEND_KERNEL: return "kernel";
	case CONFIG_BACKEND_USERSPACE: return "userspace";
	case CONFIG_BACKEND_NONE: return "none";
	}
	return "unknown";
}

struct tunnel *tunnel_start(struct event_base *base, const struct strait_config *cfg,
		size_t self_site, bool keep_on_exit)
{
	struct tunnel *t;

	(void)base;
	(void)self_site;
	(void)keep_on_exit;
	if (cfg->tunnel.backend != CONFIG_BACKEND_NONE) {
		log_error("tunnel backend \"%s\" is not available in this build",
			  tunnel_backend_name(cfg->tunnel.backend));
		return NULL;
	}
	t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->backend = cfg->tunnel.backend;
	log_info("tunnel backend \"none\": sites are joined by an existing link");
	return t;
}

bool tunnel_reconcile(struct tunnel *t, const struct strait_config *cfg, size_t self_site)
{
	(void)self_site;
	if (cfg->tunnel.backend != t->backend) {
		log_error("tunnel backend cannot change on reload");
		return false;
	}
	return true;
}

void tunnel_status_json(const struct tunnel *t, struct json_out *j)
{
	json_object_begin(j, "tunnel");
	json_string(j, "backend", tunnel_backend_name(t->backend));
	json_array_begin(j, "peers");
	json_array_end(j);
	json_object_end(j);
}

void tunnel_stop(struct tunnel *t)
{
	if (!t)
		return;
	free(t->interface);
	free(t);
}
