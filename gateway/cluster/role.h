/*
 * role.h — this site's role (primary, replica or fenced) and the cluster
 * epoch, kept in the state directory so that a restart, a reboot or a new
 * package never forgets that the site stepped down or was promoted.
 *
 * The epoch is a u64 that only grows. Every frame on the relay link carries
 * the sender's epoch (frame.h); a site that hears a higher epoch than its own
 * records it and steps down: a primary becomes fenced (a newer primary exists
 * somewhere: this site must not take writes), a replica or a fenced site
 * keeps its role. Hearing a lower or equal epoch changes nothing (the other
 * site steps down when it hears ours). Promotion and rejoin go through
 * role_set() with a new epoch.
 *
 * The state file, STATE_DIR/role, is a few "key=value" lines:
 *
 *   # strait site role and cluster epoch: written by straitd, do not edit while it runs
 *   format=1
 *   cluster=acme-dr
 *   site=onprem
 *   role=primary
 *   epoch=7
 *   primary=onprem
 *
 * primary names the site this one takes the streams from (itself when it is
 * the primary); it is missing when that is not known (a stepped-down
 * primary, a file from before it was kept), and the streams then run as the
 * configuration's from and to say (failover_stream_ends()).
 * It is replaced atomically (write STATE_DIR/role.tmp, fsync, rename, fsync
 * the directory); a failed fsync is fatal (log_fatal), since nothing can be
 * known about what reached the disk. A file that does not parse, names
 * another cluster or site, or holds epoch 0 is refused: guessing could bring
 * back a fenced primary. On first start (no file) the role is the config's
 * and the epoch 1, and the file is written at once.
 *
 * Return conventions: role_load() returns NULL after logging why; role_set()
 * and role_heard_epoch() log their own errors. The role_state_* functions
 * below are the pure and file parts, exposed for tests: they log nothing and
 * put a message in err (PostgreSQL style) instead.
 */
#ifndef STRAIT_ROLE_H
#define STRAIT_ROLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ROLE_MUSTCHECK __attribute__((warn_unused_result))

/* The state file's name inside the state directory, and its temporary twin. */
#define ROLE_FILE      "role"
#define ROLE_FILE_TMP  "role.tmp"
/* A state file larger than this is refused (it is a few dozen bytes). */
#define ROLE_FILE_MAX  4096
/* Longest cluster or site name (the config allows 63 characters). */
#define ROLE_NAME_MAX  63

enum role_kind {
	ROLE_PRIMARY,
	ROLE_REPLICA,
	ROLE_FENCED,
};

/* "primary", "replica", "fenced". */
const char *role_name(enum role_kind role);
/* false when name is none of them. */
bool role_parse_name(const char *name, enum role_kind *out) ROLE_MUSTCHECK;

struct role;

/*
 * Loads STATE_DIR/role for this cluster and site, or creates it with
 * initial_role ("primary" or "replica", the config's) and epoch 1. A stale
 * role.tmp (a crash between write and rename) is removed. NULL (logged) when
 * the file is refused or cannot be written.
 */
struct role *role_load(const char *state_dir, const char *cluster, const char *site,
		const char *initial_role, const char *initial_primary);
void role_free(struct role *r);

enum role_kind role_current(const struct role *r);
uint64_t role_epoch(const struct role *r);
/* False when the last change could not be written (the site runs on, unhealthy). */
bool role_persisted(const struct role *r);
/* The primary this site knows of ("": not known). */
const char *role_primary(const struct role *r);

/*
 * Called after every change of the role or the epoch (role_set(), or a step
 * down on a higher epoch or a tie), once the state is in memory (persisted
 * or not: the log says). Not at role_load(). fn NULL: none.
 */
typedef void (*role_change_fn)(void *arg, enum role_kind role, uint64_t epoch);
void role_on_change(struct role *r, role_change_fn fn, void *arg);

/*
 * Sets role, epoch and the primary (NULL: not known), persisting them before
 * it returns. epoch must be at least the current one. Returns false (logged,
 * nothing changed) when epoch is lower or the file cannot be written. reason
 * is for the log.
 */
bool role_set(struct role *r, enum role_kind role, uint64_t epoch, const char *primary,
		const char *reason) ROLE_MUSTCHECK;

/*
 * A frame from peer carried epoch. A higher epoch than ours is recorded and a
 * primary becomes fenced (logged, persisted). Returns true when the epoch or
 * role changed — the caller then stamps the new epoch on its frames. When
 * the file cannot be written the change still holds in memory (stepping down
 * is the safe direction) and role_persisted() turns false.
 */
bool role_heard_epoch(struct role *r, const char *peer, uint64_t epoch);

/*
 * A peer claims primary (its HEARTBEAT) at epoch. Two primaries at one epoch
 * (failovers at two sites at once) are resolved by name: the site whose name
 * sorts first (byte order, role_claim_wins()) stays primary, and the other
 * steps down to fenced when it hears it, recording that site as the primary.
 * Returns true when this site stepped down (logged, persisted as
 * role_heard_epoch() does).
 */
bool role_heard_primary(struct role *r, const char *peer, uint64_t epoch);

/* ---- pure and file parts, for tests ---- */

/* Whether site a's claim to be primary wins over site b's at the same epoch. */
bool role_claim_wins(const char *a, const char *b);

struct role_state {
	char cluster[ROLE_NAME_MAX + 1];
	char site[ROLE_NAME_MAX + 1];
	enum role_kind role;
	uint64_t epoch;
	char primary[ROLE_NAME_MAX + 1]; /* "": not known */
};

/* The file's text; false when buf is too small. */
bool role_state_format(const struct role_state *st, char *buf, size_t len) ROLE_MUSTCHECK;
/* Parses the file's text; false with the problem (and its line) in err. */
bool role_state_parse(const char *text, size_t len, struct role_state *out,
		char *err, size_t errlen) ROLE_MUSTCHECK;
/*
 * Reads path. Returns 1 with *out filled, 0 when the file does not exist,
 * -1 with a message in err when it cannot be read or does not parse.
 */
int role_state_read(const char *path, struct role_state *out, char *err, size_t errlen);
/*
 * Writes st to dir/ROLE_FILE atomically (temporary file, fsync, rename, fsync
 * of dir). False with a message in err when a step fails; a failed fsync
 * calls log_fatal().
 */
bool role_state_write(const char *dir, const struct role_state *st, char *err, size_t errlen)
	ROLE_MUSTCHECK;

#endif
