/*
 * daemon_int.h — what the files of straitd's daemon share: the daemon's
 * state (struct daemon) and the functions and tables one file hands another.
 * Private to gateway/daemon/; the programs see only daemon.h.
 *
 * Who owns what: daemon.c the life cycle (start, reload, signals, stop);
 * relay_dispatch.c the relay's callbacks, the failover's hooks and what each
 * peer last said about itself.
 */
#ifndef STRAIT_DAEMON_INT_H
#define STRAIT_DAEMON_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "gateway/cluster/role.h"

struct control_server;
struct event;
struct event_base;
struct failover;
struct failover_ops;
struct metrics_server;
struct relay;
struct relay_callbacks;
struct strait_config;
struct streams;
struct tunnel;
struct verify_service;

/* What a peer site last said about itself. */
struct daemon_peer {
	char *name;
	uint8_t role;                /* enum relay_role of its last HEARTBEAT */
	uint64_t epoch;              /* in its last frame's header */
	time_t heard_at;
};

struct daemon {
	struct event_base *base;
	struct strait_config *cfg;
	size_t self;
	char *site_name;
	bool keep_tunnel;
	struct tunnel *tunnel;
	struct relay *relay;
	struct streams *streams;
	struct control_server *control;
	struct metrics_server *metrics;
	struct role *role;
	struct failover *failover;   /* switchover, failover, stepping down */
	struct verify_service *verify; /* verify command and periodic verifies */
	struct daemon_peer *peers;
	size_t n_peers;
	struct event *signals[3];
	time_t started_at;
	time_t loaded_at;
	unsigned reloads;
	unsigned failed_reloads;
	char *reload_error;          /* why the last reload was refused, or NULL */
};

/* This site's current role, by name. */
static inline const char *daemon_site_role(const struct daemon *d)
{
	return role_name(role_current(d->role));
}

/* ---- relay_dispatch.c ---- */

/* The relay's callbacks and the failover's hooks; arg is the struct daemon. */
extern const struct relay_callbacks daemon_relay_callbacks;
extern const struct failover_ops daemon_failover_ops;

/* What the named peer last said about itself; NULL until it was heard. */
struct daemon_peer *daemon_find_peer(const struct daemon *d, const char *name);

#endif
