/*
 * failover.h — planned switchover, DR failover, stepping down on a higher
 * epoch, and rejoin: the control path that moves the primary role between
 * two sites (DESIGN.md, "Switchover, failover and rejoin").
 *
 *   switchover --to T   (run on the primary P): fence P's database, wait
 *                       until every stream to T is drained, send PROMOTE;
 *                       T raises its sequences, unfences its database,
 *                       creates each stream's slot, takes epoch+1 and
 *                       answers PROMOTE_ACK with the slots' start LSNs; P
 *                       points its origins there, drops its slots and
 *                       becomes T's replica. Nothing committed is lost.
 *   failover --to T     (run on T, P unreachable): the lag gate, then the
 *                       same promotion alone. P learns the epoch when it is
 *                       heard again and fences its database.
 *   rejoin P            (run on P, fenced): the transactions P committed that
 *                       T never applied (T says how far it applied in FENCE)
 *                       are read from P's slot into a SQL file; then P's
 *                       slot and origins go, its database is unfenced and it
 *                       becomes T's replica, re-seeded by an initial sync.
 *
 * Streams follow the role (stream.h): the daemon rebuilds them through
 * ops->rebuild whenever this module changes the role. Every command prints
 * its steps, one line each, and answers later through control_reply().
 *
 * Ownership: failover_new() keeps pointers to the relay and role (the
 * daemon's, not owned); failover_free() answers a command still running
 * with an error.
 */
#ifndef STRAIT_FAILOVER_H
#define STRAIT_FAILOVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/role.h"

struct control_request;
struct event_base;
struct frame;
struct relay;
struct relay_proto_heartbeat;
struct strait_config;
struct streams;

struct failover_ops {
	struct streams *(*streams)(void *arg);   /* the daemon's current streams, or NULL */
	void (*rebuild)(void *arg);              /* the role changed: streams follow it */
	void (*stop)(void *arg);                 /* no stream runs until the next rebuild */
};

struct failover;

/* NULL when out of memory (logged). */
struct failover *failover_new(struct event_base *base, const struct strait_config *cfg,
		size_t self, struct relay *relay, struct role *role,
		const struct failover_ops *ops, void *arg);
void failover_free(struct failover *f);
/* The daemon took a new config (limits, conninfo). */
void failover_reconfigure(struct failover *f, const struct strait_config *cfg);

/* Control commands (argv[0] is the command's name). */
void failover_cmd_switchover(struct failover *f, struct control_request *req, int argc,
		char **argv);
void failover_cmd_failover(struct failover *f, struct control_request *req, int argc,
		char **argv);
void failover_cmd_rejoin(struct failover *f, struct control_request *req, int argc,
		char **argv);

/* Relay: PROMOTE and PROMOTE_ACK frames, and what peers say in HEARTBEATs. */
void failover_frame(struct failover *f, const char *peer, const struct frame *fr);
void failover_heartbeat(struct failover *f, const char *peer,
		const struct relay_proto_heartbeat *hb);
/*
 * This site heard a higher epoch from peer and stepped down to fenced (the
 * daemon rebuilt the streams already): fence the database. Also at start-up
 * when the role is fenced (peer NULL).
 */
void failover_stepped_down(struct failover *f, const char *peer);

/* ---- pure parts, for tests ---- */

/*
 * A stream configured between from and to, at site self whose role is role:
 * where it runs from (*src) and to (*dst). False when self is neither end or
 * is fenced (the stream does not run here).
 */
bool failover_stream_ends(size_t from, size_t to, size_t self, enum role_kind role,
		size_t *src, size_t *dst);

/* What the target of a failover knows of what it lacks. */
struct failover_lag {
	uint64_t lag_bytes;          /* received or reported, not applied */
	double lag_seconds;          /* age of the oldest commit not applied */
	int64_t last_applied_time_us; /* commit time of the last applied transaction, 0 unknown */
	bool known;                  /* the site ever heard of the streams' position */
};

/*
 * The lag gate: true when a failover may go on (lag within both limits, or
 * force). msg gets one line either way: what would be lost.
 */
bool failover_gate(const struct failover_lag *lag, uint64_t max_bytes, uint64_t max_ms,
		bool force, char *msg, size_t msglen);

#endif
