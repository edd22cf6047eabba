/*
 * control.h — the control socket that straitctl talks to.
 *
 * A unix stream socket, owner-only (0600) by default. With a group
 * (control.group) the socket is 0660 and owned by that group. Either way every
 * connection's credentials (SO_PEERCRED) are checked, so the file mode is not
 * the only gate: root, the daemon's own user and, with a group, the group's
 * members (primary or supplementary group of the connecting process) are
 * served; anyone else gets an error reply, a warning in the log, and the
 * connection is closed. The protocol is one request and one reply per
 * connection:
 *
 *   request:  words separated by TAB, ending with "\n" (at most 4 KiB)
 *   reply:    "ok\n" or "error\n", then the body, then the server closes
 *
 * A handler may answer later (long operations): it keeps the request and calls
 * control_reply() once. If the client went away meanwhile, the reply is
 * dropped and the request freed all the same.
 */
#ifndef STRAIT_CONTROL_H
#define STRAIT_CONTROL_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct control_server;
struct control_request;

#define CONTROL_MAX_REQUEST 4096
#define CONTROL_MAX_ARGS 32

typedef void (*control_handler_fn)(struct control_request *req, int argc, char **argv, void *arg);

struct control_command {
	const char *name;
	control_handler_fn handler;
};

/*
 * Binds path (creating its directory, replacing a stale socket, refusing one a
 * live daemon still answers on). commands ends with a {NULL, NULL} entry.
 * Returns NULL on failure (logged).
 */
struct control_server *control_listen(struct event_base *base, const char *path,
		const struct control_command *commands, void *arg);
/*
 * As control_listen(), and when group is not NULL the socket becomes 0660,
 * owned by group, whose members may then connect. An unknown group fails
 * (logged). control_listen() is this with group NULL.
 */
struct control_server *control_listen_group(struct event_base *base, const char *path,
		const char *group, const struct control_command *commands, void *arg);
/* Closes the listener, unlinks the socket, drops pending requests. NULL is fine. */
void control_close(struct control_server *srv);

/* Sends the reply and frees req. body may be NULL. */
void control_reply(struct control_request *req, bool ok, const char *body);

/*
 * Requests that come from elsewhere than the socket (a command a peer site
 * asked for over the relay): control_request_new() copies argv (at most
 * CONTROL_MAX_ARGS words; NULL when out of memory or out of range), and
 * control_reply() hands the answer to fn(arg, ok, body) instead of a client,
 * then frees the request. control_request_run() gives it to the handler of
 * its argv[0] in commands (which then owns it until it replies); false, the
 * request still the caller's, when no command has that name.
 * control_request_drop() frees one that was never run.
 */
typedef void (*control_reply_fn)(void *arg, bool ok, const char *body);
struct control_request *control_request_new(int argc, char *const *argv, control_reply_fn fn,
		void *arg);
bool control_request_run(struct control_request *req, const struct control_command *commands,
		void *arg);
void control_request_drop(struct control_request *req);
/* Whether req came from elsewhere than the socket (control_request_new()). */
bool control_request_remote(const struct control_request *req);

/*
 * Client side, for straitctl: sends argv as one request and reads the whole
 * reply. Returns 0 with *ok and *body (caller frees) set, or -1 with a message
 * in err.
 */
int control_call(const char *path, int argc, char **argv, bool *ok, char **body,
		char *err, size_t errlen);

#endif
