/*
 * fence.h — fencing a PostgreSQL server (making it refuse ordinary writes)
 * and unfencing it, for switchover, failover and rejoin.
 *
 * Fence, on one connection (fallback_application_name "strait-fence"):
 *   1. SELECT current_setting('default_transaction_read_only')   (the state before)
 *   2. ALTER SYSTEM SET default_transaction_read_only = on
 *   3. SELECT pg_reload_conf()
 *   4. end the sessions that could write: pg_terminate_backend(pid, 5000) for
 *      every 'client backend' of every database, except this connection and
 *      strait's own sessions (application_name starting with "strait":
 *      "strait" for the source, "strait-apply", "strait_sync", ...); each
 *      ended session is listed, and the count reported. Walsenders and
 *      background workers are not client backends and stay.
 *   5. from a fresh connection, SHOW default_transaction_read_only must say
 *      on (a new session is forked by the postmaster, so it tells what the
 *      server now gives every new session; retried for up to 2 s while the
 *      reload spreads).
 * Unfence: ALTER SYSTEM RESET default_transaction_read_only, reload, and
 * the same check expecting off. Status: the check alone.
 *
 * Managed services (RDS, Cloud SQL, Azure) refuse ALTER SYSTEM to every role
 * they give out. When step 2 fails for want of privilege (SQLSTATE 42501),
 * the run says so and uses ALTER DATABASE <its database> SET
 * default_transaction_read_only = on instead (RESET to unfence), which the
 * database's owner may run; no reload is needed, and step 4 ends only that
 * database's sessions: the fence covers that database alone. Unfencing a
 * database fenced so needs the same fallback (or ALTER DATABASE ... RESET
 * by hand): ALTER SYSTEM RESET leaves the database's setting in place, and
 * the check then fails and says so.
 *
 * Sessions this role may not end (a superuser's without superuser, another
 * role's without pg_signal_backend) are listed and counted in
 * sessions_left, with a warning, instead of failing the run.
 *
 * Each run is idempotent (fencing a fenced server does the same steps and
 * succeeds), and the setting survives a restart of PostgreSQL: ALTER SYSTEM
 * writes postgresql.auto.conf.
 *
 * LIMITS. This stops ordinary applications, not a determined superuser:
 * default_transaction_read_only is only a default, so a session can still
 * run SET default_transaction_read_only = off, or BEGIN READ WRITE, and
 * write. A session of strait's own (recognised only by its
 * application_name, which any client can set) is not ended. A role or
 * database setting (ALTER ROLE/DATABASE ... SET default_transaction_read_only
 * = off) overrides the server's value for new sessions: the check in step 5
 * then fails and says so. The role used needs superuser, or ALTER SYSTEM on
 * the parameter, EXECUTE on pg_reload_conf() and pg_signal_backend, or (the
 * fallback) ownership of the database and pg_signal_backend. Note that strait's connections only set
 * fallback_application_name (source, apply) or application_name
 * (initial sync): a connection string that names its own application_name
 * takes precedence, and such a session is ended like any other.
 *
 * Non-blocking, inside the caller's libevent loop. done() comes exactly once,
 * from the loop, never inside fence_start(); the fence may be freed inside
 * done() (the result's strings die with it). A run that takes longer than
 * its timeout fails with the step it was at.
 */
#ifndef STRAIT_FENCE_H
#define STRAIT_FENCE_H

#include <stdbool.h>

struct event_base;
struct fence;

enum fence_op {
	FENCE_OP_FENCE,
	FENCE_OP_UNFENCE,
	FENCE_OP_STATUS,             /* is_fenced: the check alone */
};

/* Sessions whose application_name starts with this are strait's and not ended. */
#define FENCE_STRAIT_APP_PREFIX "strait"

/*
 * An SQL expression that ends the backend PID (an SQL expression, as a
 * string literal) and waits up to 5 s until it holds no lock, i.e. its
 * transaction is over: true when it did. Any version from 13 (14's
 * pg_terminate_backend(pid, timeout) waits for the exit, 13's does not
 * wait; pg_locks is read live, where pg_stat_activity is a snapshot).
 */
#define FENCE_TERMINATE_WAIT(PID) \
	"pg_catalog.pg_terminate_backend(" PID ") AND (" \
	"WITH RECURSIVE w(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM w " \
	"WHERE n < 500 AND EXISTS (SELECT 1 FROM pg_catalog.pg_locks l WHERE l.pid = " PID ") " \
	"AND pg_catalog.pg_sleep(0.01) IS NOT NULL) " \
	"SELECT NOT EXISTS (SELECT 1 FROM pg_catalog.pg_locks l WHERE l.pid = " PID ") " \
	"FROM (SELECT max(n) FROM w) AS m)"

struct fence_result {
	bool ok;
	const char *error;           /* one line when !ok, else NULL */
	const char *log;             /* what was done, one line per step ("\n"-terminated) */
	bool checked;                /* the fresh-connection check ran */
	bool fenced;                 /* what it saw: read-only by default for new sessions */
	bool in_recovery;            /* the server is a standby (read-only anyway) */
	unsigned sessions_ended;     /* fence: sessions terminated */
	unsigned sessions_left;      /* fence: sessions it could not end (listed in the log) */
	const char *method;          /* "ALTER SYSTEM" or, when that was refused, "ALTER DATABASE" */
};

typedef void (*fence_done_fn)(void *arg, const struct fence_result *res);

/*
 * Starts op against conninfo (keyword=value or URI; never printed, it may
 * hold a password). timeout_ms 0 means 30 s. NULL when out of memory.
 */
struct fence *fence_start(struct event_base *base, const char *conninfo, enum fence_op op,
		unsigned timeout_ms, fence_done_fn done, void *arg);
void fence_free(struct fence *f);

/* "fence", "unfence", "status". */
const char *fence_op_name(enum fence_op op);

#endif
