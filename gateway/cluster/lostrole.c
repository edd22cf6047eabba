/*
 * lostrole.c — the role of a site whose state directory was lost (see lostrole.h).
 */
#include "gateway/cluster/lostrole.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* The primary at the highest epoch the answers show; NULL when none is named. */
static const char *lostrole_primary(const struct lostrole_answer *a, size_t n, uint64_t *epoch)
{
	const char *claimed = NULL, *named = NULL;
	uint64_t top = 0;

	for (size_t i = 0; i < n; i++)
		if (a[i].epoch > top)
			top = a[i].epoch;
	for (size_t i = 0; i < n; i++) {
		if (a[i].epoch != top)
			continue;
		if (a[i].role == ROLE_PRIMARY && (!claimed || strcmp(a[i].site, claimed) < 0))
			claimed = a[i].site;
		if (!named && a[i].primary && a[i].primary[0])
			named = a[i].primary;
	}
	*epoch = top;
	return claimed ? claimed : named;
}

/* Every peer answered, fenced and knowing no primary: they all lost their state too. */
static bool lostrole_all_lost(const struct lostrole_answer *a, size_t n, size_t peers)
{
	if (n < peers || n == 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (a[i].role != ROLE_FENCED || (a[i].primary && a[i].primary[0]))
			return false;
	return true;
}

void lostrole_decide(const char *self, const char *config_primary, size_t peers,
		const struct lostrole_answer *answers, size_t n, struct lostrole_decision *out)
{
	uint64_t epoch;
	const char *primary = lostrole_primary(answers, n, &epoch);

	*out = (struct lostrole_decision){ .action = LOSTROLE_WAIT, .epoch = epoch,
					   .primary = primary };
	if (config_primary && lostrole_all_lost(answers, n, peers)) {
		/* nothing is known anywhere: the config's roles, as at a first start */
		out->action = strcmp(self, config_primary) == 0 ? LOSTROLE_PRIMARY : LOSTROLE_REPLICA;
		out->primary = out->action == LOSTROLE_PRIMARY ? self : config_primary;
		snprintf(out->why, sizeof(out->why), "every peer lost its state too: the configured "
			 "roles (site %s primary)", config_primary);
	} else if (!n) {
		snprintf(out->why, sizeof(out->why), "no peer answered yet");
	} else if (!primary) {
		snprintf(out->why, sizeof(out->why), "no peer names a primary at epoch %" PRIu64, epoch);
	} else if (strcmp(primary, self) == 0) {
		if (n < peers) {
			snprintf(out->why, sizeof(out->why), "the peers that answered name this site "
				 "primary at epoch %" PRIu64 ", but %zu of %zu have not answered", epoch,
				 peers - n, peers);
			return;
		}
		out->action = LOSTROLE_PRIMARY;
		out->primary = self;
		snprintf(out->why, sizeof(out->why), "every peer names this site primary at epoch %"
			 PRIu64, epoch);
	} else if (epoch == 1 && config_primary && strcmp(primary, config_primary) == 0 &&
		   strcmp(self, config_primary) != 0) {
		out->action = LOSTROLE_REPLICA;
		snprintf(out->why, sizeof(out->why), "site %s is primary at epoch 1, as configured: "
			 "nothing changed since the start", primary);
	} else {
		out->action = LOSTROLE_FENCED;
		snprintf(out->why, sizeof(out->why), "site %s is primary at epoch %" PRIu64 ": what this "
			 "site holds may be of an earlier primary; a rejoin makes it a replica", primary,
			 epoch);
	}
}
