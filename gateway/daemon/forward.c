/*
 * forward.c — control commands across the relay link (see forward.h).
 *
 * Outgoing calls wait in a list, each with its id (unique per site and run)
 * and a timer; a reply is matched by id and by the peer it came from.
 * Commands a peer asks for run as control requests whose answer goes back
 * as COMMAND_REPLY; forward_free() leaves those still running to answer
 * into the void (a switchover ends when the daemon stops).
 */
#include "gateway/daemon/forward.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "common/log.h"
#include "gateway/daemon/control.h"
#include "gateway/relay/frame.h"
#include "gateway/relay/relay.h"
#include "gateway/relay/relay_proto.h"
#include "gateway/relay/wire.h"

#define FORWARD_NAME_MAX 64

/* What a peer may have this site run: reading its state, and the switchover the primary runs. */
static const char *const forward_allowed[] = { "status", "lag", "schedule", "switchover", NULL };

struct forward_call {
	struct forward *fw;
	uint32_t id;
	char peer[FORWARD_NAME_MAX];
	forward_done_fn done;
	void *arg;
	struct event *timer;
	struct forward_call *next;
};

struct forward_serve {
	struct forward *fw;      /* NULL once forward_free() ran: the answer goes nowhere */
	uint32_t id;
	char peer[FORWARD_NAME_MAX];
	struct forward_serve *next;
};

struct forward {
	struct event_base *base;
	struct relay *relay;
	const struct control_command *commands;
	void *arg;
	uint32_t last_id;
	struct forward_call *calls;
	struct forward_serve *serving;
	struct wire_writer out;
};

struct forward *forward_new(struct event_base *base, struct relay *relay,
		const struct control_command *commands, void *arg)
{
	struct forward *fw = calloc(1, sizeof(*fw));

	if (!fw)
		return NULL;
	fw->base = base;
	fw->relay = relay;
	fw->commands = commands;
	fw->arg = arg;
	wire_writer_init_heap(&fw->out, FRAME_MAX_PAYLOAD);
	return fw;
}

/* Ends call: unlinked, done told, freed. */
static void call_end(struct forward_call *call, bool answered, bool ok, const char *body)
{
	struct forward_call **p;

	for (p = &call->fw->calls; *p; p = &(*p)->next) {
		if (*p == call) {
			*p = call->next;
			break;
		}
	}
	if (call->timer)
		event_free(call->timer);
	call->done(call->arg, call->peer, answered, ok, body);
	free(call);
}

static void call_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct forward_call *call = arg;
	char why[160];

	(void)fd;
	(void)what;
	snprintf(why, sizeof(why), "site %s did not answer in time\n", call->peer);
	call_end(call, false, false, why);
}

void forward_free(struct forward *fw)
{
	if (!fw)
		return;
	while (fw->calls)
		call_end(fw->calls, false, false, "straitd is stopping\n");
	for (struct forward_serve *s = fw->serving; s; s = s->next)
		s->fw = NULL;
	wire_writer_free(&fw->out);
	free(fw);
}

/* Sends the frame written into fw->out to peer; false when it could not go. */
static bool forward_send(struct forward *fw, const char *peer, enum frame_type type)
{
	return wire_writer_ok(&fw->out) && relay_is_up(fw->relay, peer) &&
	       relay_send(fw->relay, peer, type, 0, fw->out.data, fw->out.len);
}

void forward_call(struct forward *fw, const char *peer, int argc, char *const *argv,
		unsigned timeout_ms, forward_done_fn done, void *arg)
{
	struct forward_call *call = calloc(1, sizeof(*call));
	struct relay_proto_command m = { .argc = (size_t)argc };
	struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
	char why[160];

	if (!call || argc < 1 || argc > RELAY_COMMAND_MAX_ARGS) {
		free(call);
		done(arg, peer, false, false, "out of memory, or too many words\n");
		return;
	}
	*call = (struct forward_call){ .fw = fw, .id = ++fw->last_id, .done = done, .arg = arg };
	snprintf(call->peer, sizeof(call->peer), "%s", peer);
	call->next = fw->calls;
	fw->calls = call;
	m.id = call->id;
	for (int i = 0; i < argc; i++)
		m.argv[i] = relay_proto_str(argv[i]);
	wire_writer_reset(&fw->out);
	call->timer = evtimer_new(fw->base, call_timeout_cb, call);
	if (!call->timer || !relay_proto_write_command(&fw->out, &m) ||
	    !forward_send(fw, peer, FRAME_COMMAND)) {
		snprintf(why, sizeof(why), "site %s is not reachable (the relay link is down)\n", peer);
		call_end(call, false, false, why);
		return;
	}
	evtimer_add(call->timer, &tv);
}

/* ------------------------------------------------ commands a peer asks for */

static void serve_unlink(struct forward_serve *s)
{
	struct forward_serve **p;

	for (p = &s->fw->serving; *p; p = &(*p)->next) {
		if (*p == s) {
			*p = s->next;
			break;
		}
	}
}

static void serve_answer(struct forward *fw, const char *peer, uint32_t id, bool ok,
		const char *body)
{
	struct relay_proto_command_reply r = {
		.id = id,
		.ok = ok,
		.body = body ? body : "",
		.body_len = body ? strlen(body) : 0,
	};

	/* a frame holds the answer and its header */
	if (r.body_len > FRAME_MAX_PAYLOAD - 64)
		r.body_len = FRAME_MAX_PAYLOAD - 64;
	wire_writer_reset(&fw->out);
	if (!relay_proto_write_command_reply(&fw->out, &r) ||
	    !forward_send(fw, peer, FRAME_COMMAND_REPLY))
		log_warning("could not send the answer to site \"%s\"'s command (the link is down)",
			    peer);
}

static void serve_reply_cb(void *arg, bool ok, const char *body)
{
	struct forward_serve *s = arg;

	if (s->fw) {
		serve_unlink(s);
		serve_answer(s->fw, s->peer, s->id, ok, body);
	}
	free(s);
}

static bool forward_allows(struct wire_str name)
{
	for (size_t i = 0; forward_allowed[i]; i++)
		if (wire_str_eq(name, forward_allowed[i]))
			return true;
	return false;
}

/* The words of m as C strings in one block (*block frees them); false when out of memory. */
static bool command_words(const struct relay_proto_command *m, char **argv, char **block)
{
	size_t len = 0, at = 0;

	for (size_t i = 0; i < m->argc; i++)
		len += m->argv[i].len + 1;
	if (!(*block = malloc(len)))
		return false;
	for (size_t i = 0; i < m->argc; i++) {
		argv[i] = *block + at;
		memcpy(argv[i], m->argv[i].ptr, m->argv[i].len);
		argv[i][m->argv[i].len] = '\0';
		at += m->argv[i].len + 1;
	}
	argv[m->argc] = NULL;
	return true;
}

static void serve_command(struct forward *fw, const char *peer, const struct relay_proto_command *m)
{
	char *argv[RELAY_COMMAND_MAX_ARGS + 1], *block = NULL, msg[160];
	struct forward_serve *s;
	struct control_request *req;

	if (!forward_allows(m->argv[0])) {
		snprintf(msg, sizeof(msg), "this site does not run \"%.*s\" for another site: run it "
			 "here\n", (int)(m->argv[0].len > 32 ? 32 : m->argv[0].len), m->argv[0].ptr);
		serve_answer(fw, peer, m->id, false, msg);
		return;
	}
	s = calloc(1, sizeof(*s));
	if (!s || !command_words(m, argv, &block) ||
	    !(req = control_request_new((int)m->argc, argv, serve_reply_cb, s))) {
		free(s);
		free(block);
		serve_answer(fw, peer, m->id, false, "out of memory\n");
		return;
	}
	log_info("site \"%s\" asks this site to run \"%s\"", peer, argv[0]);
	free(block);   /* the request has its own copy */
	*s = (struct forward_serve){ .fw = fw, .id = m->id, .next = fw->serving };
	snprintf(s->peer, sizeof(s->peer), "%s", peer);
	fw->serving = s;
	if (!control_request_run(req, fw->commands, fw->arg)) {
		serve_unlink(s);
		free(s);
		control_request_drop(req);
		serve_answer(fw, peer, m->id, false, "unknown command\n");
	}
}

static void take_reply(struct forward *fw, const char *peer, const struct relay_proto_command_reply *r)
{
	struct forward_call *call = fw->calls;
	char *body;

	while (call && (call->id != r->id || strcmp(call->peer, peer) != 0))
		call = call->next;
	if (!call) {
		log_warning("COMMAND_REPLY from \"%s\" that no call here waits for", peer);
		return;
	}
	body = malloc(r->body_len + 1);
	if (!body) {
		call_end(call, false, false, "out of memory\n");
		return;
	}
	memcpy(body, r->body, r->body_len);
	body[r->body_len] = '\0';
	call_end(call, true, r->ok, body);
	free(body);
}

void forward_frame(struct forward *fw, const char *peer, const struct frame *f)
{
	enum relay_proto_status ps;

	if (f->type == FRAME_COMMAND) {
		struct relay_proto_command m;

		ps = relay_proto_read_command(f->payload, f->payload_len, &m);
		if (ps != RELAY_PROTO_OK)
			log_error("refused malformed COMMAND from \"%s\": %s", peer,
				  relay_proto_status_str(ps));
		else
			serve_command(fw, peer, &m);
	} else if (f->type == FRAME_COMMAND_REPLY) {
		struct relay_proto_command_reply r;

		ps = relay_proto_read_command_reply(f->payload, f->payload_len, &r);
		if (ps != RELAY_PROTO_OK)
			log_error("refused malformed COMMAND_REPLY from \"%s\": %s", peer,
				  relay_proto_status_str(ps));
		else
			take_reply(fw, peer, &r);
	}
}

void forward_link_down(struct forward *fw, const char *peer)
{
	struct forward_call *call = fw->calls, *next;
	char why[160];

	snprintf(why, sizeof(why), "the relay link to site %s went down before it answered\n", peer);
	for (; call; call = next) {
		next = call->next;
		if (strcmp(call->peer, peer) == 0)
			call_end(call, false, false, why);
	}
}
