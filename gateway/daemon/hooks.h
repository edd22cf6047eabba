/*
 * hooks.h — operator programs straitd runs on events (hooks: in the config).
 *
 * on_role_change runs as PROGRAM ROLE SITE EPOCH ("primary onprem 3") after
 * every change of this site's role or epoch, so DNS or a load balancer can
 * follow, as Patroni's callbacks do. Runs go one at a time, in the order of
 * the changes (a later one never overtakes an earlier one), with stdin from
 * /dev/null and straitd's stdout and stderr (the journal); each is given
 * HOOKS_TIMEOUT_S, then killed. Its exit status is logged; a failure never
 * changes the role. Only this module's children are reaped (by pid): the
 * tunnel supervises its own.
 */
#ifndef STRAIT_HOOKS_H
#define STRAIT_HOOKS_H

#include <stdint.h>

struct event_base;
struct hooks;

#define HOOKS_TIMEOUT_S 60

/* NULL when out of memory. */
struct hooks *hooks_new(struct event_base *base);
/* Runs still going are left to finish on their own; queued ones are dropped (logged). */
void hooks_free(struct hooks *h);
/* Queues program ROLE SITE EPOCH (program NULL: nothing). */
void hooks_role_change(struct hooks *h, const char *program, const char *role, const char *site,
		uint64_t epoch);

#endif
