/*
 * daemon_int.h — what the files of straitd's daemon share: the daemon's
 * state (struct daemon) and the functions and tables one file hands another.
 * Private to gateway/daemon/; the programs see only daemon.h.
 *
 * Who owns what: daemon.c the life cycle (start, reload, signals, stop);
 * relay_dispatch.c the relay's callbacks, the failover's hooks and what each
 * peer last said about itself; commands.c the control commands; report.c
 * the status and lag documents; collect.c the metrics and health checks.
 */
#ifndef STRAIT_DAEMON_INT_H
#define STRAIT_DAEMON_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "gateway/cluster/role.h"
#include "gateway/daemon/control.h"
#include "gateway/stream/stream.h"

struct control_server;
struct event;
struct event_base;
struct failover;
struct failover_ops;
struct json_out;
struct metrics_callbacks;
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
	time_t stale_logged_at;      /* when a frame of a lower epoch from it was last logged */
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
	struct forward *forward;     /* commands run at other sites, and theirs here */
	struct verify_service *verify; /* verify command and periodic verifies */
	struct pgquery *forget_q;    /* forget-stream's connection to this site's database */
	struct control_request *forget_req;  /* the forget-stream command it answers */
	struct daemon_peer *peers;
	size_t n_peers;
	struct event *signals[3];
	struct event *lost_timer;    /* fenced, no primary known: ask the peers (lost.c) */
	struct hooks *hooks;         /* hooks.on_role_change runs */
	struct witness *witness;     /* failover.mode automatic; at a witness site, its status */
	time_t started_at;
	time_t loaded_at;
	unsigned reloads;
	unsigned failed_reloads;
	char *reload_error;          /* why the last reload was refused, or NULL */
};

/* commands.c: ends a forget-stream still running (answering it) and its connection. */
void daemon_forget_free(struct daemon *d);

/* This site's current role, by name. */
static inline const char *daemon_site_role(const struct daemon *d)
{
	return role_name(role_current(d->role));
}

/* The site the config makes primary at bootstrap (NULL: none). */
const char *daemon_config_primary(const struct strait_config *cfg);
/* The site this one knows is primary now (itself when it is), or CONFIG_SITE_NONE. */
size_t daemon_primary_site(const struct daemon *d);

/* ---- lost.c: a site whose state directory was lost ---- */

/* At start, before the role is loaded: no role file, but the database shows strait ran here. */
bool daemon_state_lost(const struct strait_config *cfg, size_t self);
/* Every few seconds: fenced and knowing no primary, ask the peers and take the role they show. */
void daemon_lost_tick(struct daemon *d);

/* ---- remote.c ---- */

/*
 * switchover typed at a site that is not the primary: run at the primary
 * when it is known and its link is up (the answer comes from there). False,
 * req untouched, when this site runs it itself (or refuses it).
 */
bool daemon_forward_switchover(struct daemon *d, struct control_request *req, int argc,
		char **argv);
/*
 * failover --dry-run at a replica of a stream of more than two sites: the
 * other replicas' positions are asked for first (lag --json over the relay),
 * then the dry run runs with them. False, req untouched, when there is
 * nothing to ask.
 */
bool daemon_dry_run_positions(struct daemon *d, struct control_request *req, int argc,
		char **argv);
/* status --cluster: every site's status (each asked over the relay) in one JSON document. */
void daemon_status_cluster(struct daemon *d, struct control_request *req);

/* ---- relay_dispatch.c ---- */

/* The relay's callbacks and the failover's hooks; arg is the struct daemon. */
extern const struct relay_callbacks daemon_relay_callbacks;
extern const struct failover_ops daemon_failover_ops;

/*
 * The streams set up anew for the site's role and config (a role change, a
 * reload that adds or removes streams or destinations); links already up
 * are handed to them at once.
 */
void daemon_rebuild_streams(struct daemon *d);

/* What the named peer last said about itself; NULL until it was heard. */
struct daemon_peer *daemon_find_peer(const struct daemon *d, const char *name);

/* ---- daemon.c ---- */

/* Reloads the config file: NULL when the reload took, else why not (caller frees). */
char *daemon_reload(struct daemon *d);

/* ---- commands.c ---- */

/* The control commands, ended by { NULL, NULL }; arg is the struct daemon. */
extern const struct control_command daemon_commands[];
/* Those of a witness site (status, ping, pause-auto, resume-auto). */
extern const struct control_command daemon_witness_commands[];

/* ---- collect.c ---- */

/* The metrics server's callbacks; arg is the struct daemon. */
extern const struct metrics_callbacks daemon_metrics_callbacks;

/* ---- report.c ---- */

/* The names a stream's state may have (STREAM_STATES), and their number. */
extern const char *const daemon_stream_states[];
extern const size_t daemon_n_stream_states;

/* A stream's report, kept beyond the callback (names are at most 63 characters). */
struct daemon_row {
	struct stream_report r;
	char name[64];
	char peer[64];
};

struct daemon_rows {
	struct daemon_row *v;
	size_t n;
	size_t cap;
	bool failed;
};

/* Wall-clock time in microseconds, as the streams' reports take it. */
int64_t daemon_now_us(void);

/* Every stream's report; false when out of memory (rows freed). */
bool daemon_stream_rows(const struct daemon *d, struct daemon_rows *rows);
void daemon_rows_free(struct daemon_rows *rows);

/* The "lag" array: one object per row. */
void daemon_lag_json(const struct daemon_rows *rows, struct json_out *j);

/* The whole status document, as one object. */
void daemon_status_json(struct daemon *d, struct json_out *j);

#endif
