/*
 * fault.h — named fault points, for tests that crash or stall straitd at one
 * exact step of a transaction's life (receive, apply, commit, ACK, spool
 * append and fsync, slot confirm, sync chunk).
 *
 * Only test builds (STRAIT_TEST_HOOKS) have them; elsewhere fault_hit() is an
 * inline that returns FAULT_NONE and costs nothing.
 *
 * The faults come from the environment, read once at the first hit:
 *
 *     STRAIT_FAULTS="POINT=ACTION[@N][,POINT=ACTION[@N]...]"
 *
 * ACTION is "crash" (the process kills itself with SIGKILL, as kill -9
 * would), "stall:SECONDS" (the calling thread sleeps: the event loop stops
 * answering) or "fail" (fault_hit() returns FAULT_FAIL and the caller
 * behaves as if its system call had failed with EIO). A fault fires at the
 * Nth time its point is reached (default 1), once. Each firing is written to
 * stderr ("fault point POINT: ACTION") before it acts, so a test can wait
 * for it in the log.
 */
#ifndef STRAIT_FAULT_H
#define STRAIT_FAULT_H

enum fault_action {
	FAULT_NONE,
	FAULT_FAIL,                  /* the caller fails its step (EIO) */
};

#ifdef STRAIT_TEST_HOOKS
/* Counts a pass through point; crashes, stalls or returns FAULT_FAIL when set to. */
enum fault_action fault_hit(const char *point);
/* A point (or item) of STRAIT_FAULTS that is unknown, or NULL: straitd refuses to start. */
const char *fault_unknown_point(void);
#else
static inline enum fault_action fault_hit(const char *point)
{
	(void)point;
	return FAULT_NONE;
}
static inline const char *fault_unknown_point(void)
{
	return 0;
}
#endif

/* Every point that exists, NULL-terminated (the names tests may use). */
extern const char *const fault_points[];

#endif
