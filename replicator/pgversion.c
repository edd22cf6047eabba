/*
 * pgversion.c — features by PostgreSQL major version (see pgversion.h).
 */
#include "replicator/pgversion.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"

struct pgversion_feature {
	int since;                   /* the first major version that has it, as 140000 */
	enum pgversion_role role;
	const char *what;
};

static const struct pgversion_feature pgversion_features[] = {
	{ 140000, PGVERSION_SOURCE, "logical decoding messages (14)" },
	{ 170000, PGVERSION_SOURCE, "slot invalidation_reason and inactive_since (17)" },
	{ 180000, PGVERSION_SOURCE, "idle_replication_slot_timeout (18)" },
	{ 180000, PGVERSION_TARGET, "max_active_replication_origins (18; origins count against "
				    "max_replication_slots)" },
};

size_t pgversion_lacks(int server_version, enum pgversion_role role, const char **out)
{
	size_t n = 0;

	for (size_t i = 0; i < sizeof(pgversion_features) / sizeof(pgversion_features[0]); i++) {
		const struct pgversion_feature *f = &pgversion_features[i];

		if (f->role == role && server_version < f->since && n < PGVERSION_MAX_LACKS)
			out[n++] = f->what;
	}
	return n;
}

char *pgversion_format(int server_version, char *buf, size_t len)
{
	if (server_version >= 100000)
		snprintf(buf, len, "%d.%d", server_version / 10000, server_version % 10000);
	else
		snprintf(buf, len, "%d.%d.%d", server_version / 10000, server_version / 100 % 100,
			 server_version % 100);
	return buf;
}

const char *pgversion_origin_limit_setting(int server_version)
{
	return server_version >= 180000 ? "max_active_replication_origins" : "max_replication_slots";
}

bool pgversion_has_invalidation_reason(int server_version)
{
	return server_version >= 170000;
}

bool pgversion_has_idle_slot_timeout(int server_version)
{
	return server_version >= 180000;
}

char *pgversion_describe(int server_version, enum pgversion_role role)
{
	const char *lacks[PGVERSION_MAX_LACKS];
	size_t n = pgversion_lacks(server_version, role, lacks);
	char ver[32], *s = NULL;
	size_t cap = 64, len;

	for (size_t i = 0; i < n; i++)
		cap += strlen(lacks[i]) + 2;
	s = malloc(cap);
	if (!s)
		return NULL;
	len = (size_t)snprintf(s, cap, "PostgreSQL %s",
			       pgversion_format(server_version, ver, sizeof(ver)));
	for (size_t i = 0; i < n; i++)
		len += (size_t)snprintf(s + len, cap - len, "%s%s", i ? ", " : ", without ", lacks[i]);
	return s;
}

void pgversion_json(struct json_out *j, const char *key, int server_version,
		enum pgversion_role role)
{
	const char *lacks[PGVERSION_MAX_LACKS];
	size_t n = pgversion_lacks(server_version, role, lacks);
	char ver[32];

	json_object_begin(j, key);
	json_string(j, "version", pgversion_format(server_version, ver, sizeof(ver)));
	json_int(j, "version_num", server_version);
	json_array_begin(j, "lacks");
	for (size_t i = 0; i < n; i++)
		json_string(j, NULL, lacks[i]);
	json_array_end(j);
	json_object_end(j);
}
