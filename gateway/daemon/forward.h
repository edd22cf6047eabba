/*
 * forward.h — control commands across the relay link.
 *
 * A site asks a peer to run a command (a COMMAND frame) and gets its answer
 * (COMMAND_REPLY) in a callback: `switchover` typed at a replica runs at the
 * primary, and `status --cluster` gathers every site's status. The peer runs
 * only the commands it lets peers run (forward.c: status, lag, schedule,
 * switchover), through the same handlers as its control socket. The relay
 * link is mutual TLS between the cluster's own sites, so a peer may ask what
 * a local operator may.
 *
 * Every call ends exactly once: with the answer, or unanswered when the link
 * to the peer goes down, the time is up, or the frame cannot be sent.
 */
#ifndef STRAIT_FORWARD_H
#define STRAIT_FORWARD_H

#include <stdbool.h>

struct control_command;
struct event_base;
struct frame;
struct relay;
struct forward;

/* answered false: body says why (never NULL). */
typedef void (*forward_done_fn)(void *arg, const char *peer, bool answered, bool ok,
		const char *body);

/* commands and arg are the control socket's table and its argument. NULL when out of memory. */
struct forward *forward_new(struct event_base *base, struct relay *relay,
		const struct control_command *commands, void *arg);
/* Calls still waiting end unanswered; requests peers asked for are answered into the void. */
void forward_free(struct forward *fw);

/* Asks peer to run argv; done follows (it may have run already when this returns). */
void forward_call(struct forward *fw, const char *peer, int argc, char *const *argv,
		unsigned timeout_ms, forward_done_fn done, void *arg);

/* A COMMAND or COMMAND_REPLY frame from peer. */
void forward_frame(struct forward *fw, const char *peer, const struct frame *f);
/* The link to peer went down: its calls end unanswered. */
void forward_link_down(struct forward *fw, const char *peer);

#endif
