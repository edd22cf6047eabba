/*
 * lostrole.h — the role of a site whose state directory was lost, from what
 * its peers say (DESIGN.md, "A lost state directory").
 *
 * Without its role file a site cannot know whether a failover happened
 * while it was away, so it never takes the config's role on trust when its
 * database shows it ran before: it starts fenced, asks every peer for its
 * status (role, epoch, the primary it follows) and decides here:
 *
 *  - the primary at the highest epoch heard is the one a peer claims to be
 *    at that epoch (two at once: the name that sorts first), else the one
 *    the replicas at that epoch name;
 *  - that is this site: primary again at that epoch, but only once every
 *    peer answered (one unheard might know of a later primary);
 *  - another site S, at epoch 1, the config's primary, and this site is a
 *    replica in the config: nothing ever changed, this site follows S as
 *    before (its origins are in S's LSNs);
 *  - any other S: fenced, following S, for a rejoin (what its origins point
 *    at, or whether its slot still counts, cannot be known);
 *  - every peer answered, each fenced and knowing no primary: they all lost
 *    their state, nothing is known anywhere: the config's roles, as at a
 *    first start;
 *  - nobody answered, or no primary is named: wait and ask again.
 */
#ifndef STRAIT_LOSTROLE_H
#define STRAIT_LOSTROLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/cluster/role.h"

struct lostrole_answer {
	const char *site;
	enum role_kind role;
	uint64_t epoch;
	const char *primary;         /* the primary it names ("" when none) */
};

enum lostrole_action {
	LOSTROLE_WAIT,
	LOSTROLE_PRIMARY,            /* this site, at epoch */
	LOSTROLE_REPLICA,            /* of primary, at epoch */
	LOSTROLE_FENCED,             /* following primary, at epoch, until a rejoin */
};

struct lostrole_decision {
	enum lostrole_action action;
	uint64_t epoch;
	const char *primary;         /* points into the answers, or at self */
	char why[256];
};

/*
 * self: this site; config_primary: the config's primary (NULL: none);
 * peers: how many peers the config has (all must answer before this site
 * takes the primary role back).
 */
void lostrole_decide(const char *self, const char *config_primary, size_t peers,
		const struct lostrole_answer *answers, size_t n, struct lostrole_decision *out);

#endif
