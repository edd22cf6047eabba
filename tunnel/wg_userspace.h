/*
 * wg_userspace.h — supervision of the userspace WireGuard implementation
 * (wireguard-go by default) that serves one interface's UAPI socket.
 *
 * At start-up, an implementation already serving the socket is adopted (and
 * left running at exit); otherwise one is started in the foreground as a
 * child ($WG_QUICK_USERSPACE_IMPLEMENTATION or "wireguard-go", in its own
 * session, with WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1), and
 * tunnel_start() waits a bounded time for its socket. From then on nothing
 * blocks: a SIGCHLD event (and a one-second timer, in case another part of
 * the daemon reaps with waitpid(-1)) notices the child's death with
 * waitpid() on its own pid only; it is started again at once (after a
 * backoff when it keeps dying), a 50 ms timer polls its socket, and the
 * ready callback re-applies the whole configuration to the new device. An
 * adopted implementation that goes away is replaced the same way.
 *
 * One state per supervisor, changed by one function that logs the reason.
 * Ownership: wg_userspace_start() returns an object freed by wg_userspace_stop().
 */
#ifndef STRAIT_WG_USERSPACE_H
#define STRAIT_WG_USERSPACE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct event_base;
struct json_out;
struct wg_userspace;

/* Called when a (re)started implementation serves the socket: configure it. */
typedef void (*wg_userspace_ready_cb)(void *arg);

/* Seconds tunnel_start() waits for a new implementation's socket. */
#define WG_USERSPACE_START_TIMEOUT 10

/*
 * Starts or adopts the implementation for ifname and waits until its socket
 * answers. NULL with a message in err on failure. ready is not called for this
 * first start: the caller configures the device itself.
 */
struct wg_userspace *wg_userspace_start(struct event_base *base, const char *ifname,
		bool keep_on_exit, wg_userspace_ready_cb ready, void *arg, char *err, size_t errlen);

/* True while the socket is known to be served (configuration can be sent). */
bool wg_userspace_ready(const struct wg_userspace *u);

/* Appends "userspace": {implementation, pid, state, restarts}. */
void wg_userspace_status_json(const struct wg_userspace *u, struct json_out *j);

/*
 * Stops the child it started (SIGTERM, then SIGKILL after a bounded wait)
 * unless keep, which leaves it serving the interface. Frees u; NULL is fine.
 * True when it stopped a child (the interface went with it).
 */
bool wg_userspace_stop(struct wg_userspace *u, bool keep);

#endif
