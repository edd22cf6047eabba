/*
 * relay.c — the relay link between two straitd (see relay.h for the rules:
 * who dials, how peers are authenticated, HELLO, heartbeats, backoff).
 *
 * NOTES
 * Objects. A struct relay_peer exists for every other site of the config and
 * outlives its connections: it holds the address, the counters, the
 * reconnect state and the connection bound to it, if any. A struct
 * relay_conn is one TCP connection. Dialed connections are bound to their
 * peer from the start; accepted ones are "pending" (no peer) until the
 * dialer's HELLO checks out, and are then bound to the peer it names,
 * replacing an older connection of that peer.
 *
 * States. Each connection has one state (enum relay_state) and
 * relay_conn_set_state() is the only function that changes it; it logs every
 * transition with its reason and does what entering a state implies:
 *
 *   CONNECTING --TCP up--> TLS --handshake, certificate ok--> HELLO
 *   HELLO --peer's HELLO ok--> UP
 *   any --peer broke a rule, with TLS up--> CLOSING --GOODBYE flushed, EOF both ways--> CLOSED
 *   any --I/O error, EOF, timeout--> CLOSED
 *
 * Leaving CONNECTING..UP unbinds the connection from its peer (a dialer peer
 * then schedules its next attempt) and, if the link was up, calls the
 * disconnected callback; when that happens inside relay_send() or
 * relay_reconfigure(), the call is owed (struct relay_note) and made from the
 * loop, so callbacks never run inside the API. Entering CLOSED stops every
 * event of the
 * connection; its memory, bufferevent and socket are released by the reaper,
 * an event that runs in a later loop pass, so a connection (or a peer
 * removed by a reload) is never freed while one of its callbacks, or a
 * loop over the connection list, is still using it.
 *
 * Reading. Frames are decoded straight out of the bufferevent's input with
 * frame_decode(): first the header (at most 24 bytes pulled up), which the
 * decoder checks, length against the cap included, before the whole frame is
 * pulled up into one piece. So a peer can make us hold at most one frame it
 * has actually sent, never memory it only announced.
 *
 * Callbacks of the bufferevents are deferred (BEV_OPT_DEFER_CALLBACKS): they
 * run from the loop, never from inside bufferevent_write(), so relay_send()
 * does not call back into the caller.
 *
 * Closing after a GOODBYE lingers: the GOODBYE is flushed, our side shut down
 * (TCP FIN), the peer's last bytes read and dropped until its EOF, bounded by
 * RELAY_GOODBYE_MS. Closing a socket with unread input would make the kernel
 * send a reset, which can destroy the GOODBYE before the peer reads it.
 *
 * Time: one periodic timer, every health_interval but at least once a
 * second, sends the heartbeats (on their own health_interval cadence),
 * closes dead, stuck and lingering connections and retries a listener that
 * could not bind; only reconnect delays have their own per-peer timer.
 */
#include "gateway/relay/relay.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/listener.h>
#include <linux/sockios.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "common/log.h"
#include "gateway/relay/lossprobe.h"
#include "gateway/relay/tcpstat.h"
#include "gateway/relay/tls.h"

#define RELAY_ADDR_LEN    64       /* "[ipv6]:port" */
#define RELAY_REASON_LEN  512
#define RELAY_NAME_SHOWN  64       /* peer-supplied names are cut here in messages */
#define RELAY_LISTEN_BACKLOG 64
#define RELAY_IO_CHUNK    (256u * 1024u)   /* bytes per read/write call */
#define RELAY_NOTSENT_LOWAT (128 * 1024)  /* unsent bytes the kernel may hold per link */
#define RELAY_TICK_MAX_MS 1000u            /* timeouts are checked at least this often */
/* Smallest encoding of one HELLO position entry: u16 length, 1 byte, 3 × u64. */
#define RELAY_HELLO_ENTRY_MIN 27u

enum relay_state {
	RELAY_STATE_CONNECTING,      /* TCP connection being set up */
	RELAY_STATE_TLS,             /* TLS handshake */
	RELAY_STATE_HELLO,           /* TLS up, waiting for the peer's HELLO */
	RELAY_STATE_UP,              /* HELLO exchanged: frames flow */
	RELAY_STATE_CLOSING,         /* GOODBYE queued: flush, half-close, wait for EOF */
	RELAY_STATE_CLOSED,          /* dead, waiting for the reaper */
};

static const char *const relay_state_names[] = {
	[RELAY_STATE_CONNECTING] = "connecting",
	[RELAY_STATE_TLS] = "tls",
	[RELAY_STATE_HELLO] = "hello",
	[RELAY_STATE_UP] = "up",
	[RELAY_STATE_CLOSING] = "closing",
	[RELAY_STATE_CLOSED] = "closed",
};

struct relay_counters {
	uint64_t bytes_sent;
	uint64_t bytes_received;
	uint64_t frames_sent;
	uint64_t frames_received;
	uint64_t probes_sent;        /* PROBE frames (lossprobe.h), among frames_sent */
	uint64_t bytes_resent;       /* TCP payload sent again (tcpstat.h) */
};

struct relay_peer;

struct relay_conn {
	struct relay *relay;
	struct relay_peer *peer;     /* bound peer (CONNECTING..UP), else NULL */
	bool pending;                /* accepted, not identified yet (counted in npending) */
	bool dialed;
	bool announced;              /* the connected callback ran */
	enum relay_state state;
	evutil_socket_t fd;          /* ours until the bufferevent takes it, then -1 */
	struct event *connect_ev;    /* CONNECTING: the socket became writable */
	struct bufferevent *bev;
	char remote[RELAY_ADDR_LEN];
	char label[RELAY_ADDR_LEN + 96];   /* who, for log lines */
	uint64_t created_ms;
	uint64_t state_since_ms;
	uint64_t last_rx_ms;
	bool rx_since_beat;          /* bytes arrived since the last heartbeat tick */
	unsigned silent_beats;       /* heartbeat ticks in a row without any */
	uint64_t up_since_ms;
	time_t up_since;             /* wall clock, for status */
	size_t need;                 /* bytes the frame being received needs in all */
	bool throttled;              /* output reached RELAY_OUTPUT_HIGH */
	bool wake_asked;             /* a producer waits for the output to drain to wake_pending */
	size_t wake_pending;
	bool half_closed;            /* CLOSING: GOODBYE flushed, our side shut down */
	bool over_limit_logged;
	struct relay_counters n;
	struct loss_probe lp;        /* is the link losing packets; probes owed (lossprobe.h) */
	struct event *probe_ev;      /* the next probe */
	uint64_t resent_base;        /* TCP's bytes sent again when the link came up */
	uint64_t resent_charged;     /* of n.bytes_resent, handed to senders (relay_batch_sent()) */
	struct relay_conn *next;     /* relay->conns; kept when dead (see NOTES) */
	struct relay_conn *next_dead;
};

struct relay_peer {
	struct relay *relay;
	char *name;
	bool dials;                  /* this site dials the peer */
	bool removed;                /* gone from the config: waiting for the reaper */
	struct sockaddr_storage addr;
	socklen_t addrlen;
	char addr_str[RELAY_ADDR_LEN];
	struct relay_conn *conn;     /* bound connection (CONNECTING..UP), or NULL */
	struct event *retry_ev;
	unsigned attempt;            /* reconnect attempts since the last stable link */
	uint64_t next_attempt_ms;    /* 0: none scheduled */
	struct relay_counters total; /* of connections no longer bound */
	uint64_t connects;
	uint64_t failures;
	char last_error[RELAY_REASON_LEN];
	time_t last_error_at;
	struct relay_peer *next_dead;
};

/* A disconnected callback owed to the caller (see relay_notify()). */
struct relay_note {
	struct relay_peer *peer;
	char reason[RELAY_REASON_LEN];
};

struct relay {
	struct event_base *base;
	struct relay_callbacks cb;
	void *arg;
	SSL_CTX *ctx;
	char *cluster;
	char *self;
	struct sockaddr_storage self_addr;   /* tunnel address, relay.port */
	socklen_t self_addrlen;
	char self_addr_str[RELAY_ADDR_LEN];
	uint64_t health_ms;
	uint32_t health_failures;
	uint64_t tick_ms;                    /* min(health_ms, RELAY_TICK_MAX_MS) */
	uint64_t next_beat_ms;               /* when the next heartbeat tick is due */
	uint64_t epoch;
	struct relay_peer **peers;
	size_t npeers;
	struct relay_conn *conns;            /* every connection not yet CLOSED */
	size_t npending;
	uint64_t refused;                    /* accepted connections refused or failed */
	struct evconnlistener *listener;
	bool listener_paused;                /* out of file descriptors */
	char listen_error[RELAY_REASON_LEN]; /* why the listener is not bound, or "" */
	struct event *tick;
	struct event *reaper;
	struct relay_conn *dead_conns;
	struct relay_peer *dead_peers;
	int in_api;                          /* inside relay_send()/relay_reconfigure() */
	struct relay_note *notes;            /* disconnected callbacks owed */
	size_t nnotes;
	size_t capnotes;
};

static void relay_conn_read_cb(struct bufferevent *bev, void *arg);
static void relay_conn_write_cb(struct bufferevent *bev, void *arg);
static void relay_conn_event_cb(struct bufferevent *bev, short what, void *arg);
static void relay_peer_schedule(struct relay_peer *p);

/* ------------------------------------------------------------------ */
/* Pure helpers */

bool relay_dials(const char *self, const char *peer)
{
	return strcmp(self, peer) < 0;
}

uint64_t relay_backoff_ms(unsigned attempt, uint32_t rnd)
{
	uint64_t base = RELAY_BACKOFF_MIN_MS;
	uint64_t lo, width;

	for (unsigned i = 0; i < attempt && base < RELAY_BACKOFF_MAX_MS; i++)
		base *= 2;
	if (base > RELAY_BACKOFF_MAX_MS)
		base = RELAY_BACKOFF_MAX_MS;
	lo = base * (100 - RELAY_BACKOFF_JITTER) / 100;
	width = base * 2 * RELAY_BACKOFF_JITTER / 100;
	return lo + ((width * (uint64_t)rnd) >> 32);
}

static uint64_t relay_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void relay_format_addr(const struct sockaddr *sa, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN];

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

		inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
		snprintf(buf, len, "%s:%u", host, ntohs(sin->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;

		inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
		snprintf(buf, len, "[%s]:%u", host, ntohs(sin6->sin6_port));
	} else {
		snprintf(buf, len, "(address family %d)", sa->sa_family);
	}
}

/* A socket address from a config address and a port. */
static void relay_make_addr(const struct config_cidr *cidr, uint16_t port,
		struct sockaddr_storage *ss, socklen_t *len)
{
	memset(ss, 0, sizeof(*ss));
	if (cidr->family == AF_INET6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		memcpy(&sin6->sin6_addr, cidr->addr, 16);
		*len = sizeof(*sin6);
	} else {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;

		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		memcpy(&sin->sin_addr, cidr->addr, 4);
		*len = sizeof(*sin);
	}
}

/* A peer-supplied string made safe for one log line (cut, non-printables as '?'). */
static void relay_printable(struct wire_str s, char *buf, size_t len)
{
	size_t n = 0;

	for (size_t i = 0; i < s.len && i < RELAY_NAME_SHOWN && n + 1 < len; i++) {
		unsigned char c = (unsigned char)s.ptr[i];

		buf[n++] = (c >= 0x20 && c < 0x7f && c != '"') ? (char)c : '?';
	}
	if (s.len > RELAY_NAME_SHOWN && n + 4 < len) {
		memcpy(buf + n, "...", 3);
		n += 3;
	}
	buf[n] = '\0';
}

static struct relay_peer *relay_find_peer(const struct relay *relay, const char *name)
{
	for (size_t i = 0; i < relay->npeers; i++)
		if (strcmp(relay->peers[i]->name, name) == 0)
			return relay->peers[i];
	return NULL;
}

static struct relay_peer *relay_find_peer_str(const struct relay *relay, struct wire_str name)
{
	for (size_t i = 0; i < relay->npeers; i++)
		if (wire_str_eq(name, relay->peers[i]->name))
			return relay->peers[i];
	return NULL;
}

static void relay_counters_add(struct relay_counters *to, const struct relay_counters *from)
{
	to->bytes_sent += from->bytes_sent;
	to->bytes_received += from->bytes_received;
	to->frames_sent += from->frames_sent;
	to->frames_received += from->frames_received;
	to->probes_sent += from->probes_sent;
	to->bytes_resent += from->bytes_resent;
}

/* Names c in log lines: "site "b" at 127.0.0.2:7543" or "connection from 127.0.0.1:40110". */
static void relay_conn_set_label(struct relay_conn *c)
{
	if (c->peer != NULL)
		snprintf(c->label, sizeof(c->label), "site \"%s\" at %s", c->peer->name, c->remote);
	else
		snprintf(c->label, sizeof(c->label), "connection from %s", c->remote);
}

/* ------------------------------------------------------------------ */
/* The state machine */

static void relay_reap_cb(evutil_socket_t fd, short what, void *arg);

/*
 * Tells the caller that the link to p went down. From the event loop this
 * calls back at once; inside relay_send() or relay_reconfigure() the call is
 * owed and made by the reaper in a later loop pass (callbacks never run
 * inside the API). p stays allocated until then: the reaper delivers notes
 * before it frees anything.
 */
static void relay_notify(struct relay *relay, struct relay_peer *p, const char *reason)
{
	struct relay_note *n;

	if (relay->cb.disconnected == NULL)
		return;
	if (relay->in_api == 0) {
		relay->cb.disconnected(relay->arg, p->name, reason);
		return;
	}
	if (relay->nnotes == relay->capnotes) {
		size_t cap = relay->capnotes ? relay->capnotes * 2 : 8;
		struct relay_note *grown = realloc(relay->notes, cap * sizeof(*grown));

		if (grown == NULL) {
			log_error("relay: out of memory: site \"%s\" disconnected unannounced (%s)",
				p->name, reason);
			return;
		}
		relay->notes = grown;
		relay->capnotes = cap;
	}
	n = &relay->notes[relay->nnotes++];
	n->peer = p;
	snprintf(n->reason, sizeof(n->reason), "%s", reason);
	event_active(relay->reaper, EV_TIMEOUT, 1);
}

/* Delivers the owed disconnected callbacks, oldest first. */
static void relay_flush_notes(struct relay *relay)
{
	while (relay->nnotes > 0) {
		struct relay_note n = relay->notes[0];

		memmove(relay->notes, relay->notes + 1, (relay->nnotes - 1) * sizeof(*relay->notes));
		relay->nnotes--;
		relay->cb.disconnected(relay->arg, n.peer->name, n.reason);
	}
}

static void relay_conn_release_events(struct relay_conn *c)
{
	if (c->probe_ev != NULL)
		event_del(c->probe_ev);
	if (c->connect_ev != NULL)
		event_del(c->connect_ev);
	if (c->bev != NULL) {
		bufferevent_setcb(c->bev, NULL, NULL, NULL, NULL);
		bufferevent_disable(c->bev, EV_READ | EV_WRITE);
	}
}

static void relay_conn_unlink(struct relay_conn *c)
{
	struct relay *relay = c->relay;

	for (struct relay_conn **pp = &relay->conns; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;   /* c->next stays: a loop standing on c goes on */
			break;
		}
	}
	c->next_dead = relay->dead_conns;
	relay->dead_conns = c;
	event_active(relay->reaper, EV_TIMEOUT, 1);
}

/*
 * Unbinds c from its peer (folding its counters into the peer's), records
 * why it ended and schedules the next attempt of a dialer. Returns the peer
 * for the disconnected callback (NULL when c had none); it stays allocated
 * until the reaper runs, even when a reload removes it.
 */
static struct relay_peer *relay_conn_detach(struct relay_conn *c, const char *reason,
		bool failure)
{
	struct relay_peer *p = c->peer;
	struct relay *relay = c->relay;

	if (c->pending) {
		c->pending = false;
		relay->npending--;
		relay->refused++;
		return NULL;
	}
	if (p == NULL)
		return NULL;
	c->peer = NULL;
	if (p->conn != c)
		return p;
	p->conn = NULL;
	relay_counters_add(&p->total, &c->n);
	memset(&c->n, 0, sizeof(c->n));
	snprintf(p->last_error, sizeof(p->last_error), "%s", reason);
	p->last_error_at = time(NULL);
	if (failure)
		p->failures++;
	if (c->dialed && !p->removed) {
		if (c->up_since_ms != 0 && relay_now_ms() - c->up_since_ms >= RELAY_STABLE_MS)
			p->attempt = 0;
		relay_peer_schedule(p);
	}
	return p;
}

/*
 * The one place a connection changes state: logs the transition with its
 * reason at level, then does what entering the new state implies.
 */
static void relay_conn_set_state(struct relay_conn *c, enum relay_state to,
		enum log_level level, const char *reason)
{
	enum relay_state from = c->state;
	struct relay *relay = c->relay;
	struct relay_peer *p = NULL;
	bool was_live = from <= RELAY_STATE_UP;
	bool announced = c->announced;

	if (from == to || from == RELAY_STATE_CLOSED)
		return;
	log_msg(level, "relay %s: %s -> %s: %s", c->label, relay_state_names[from],
		relay_state_names[to], reason);
	c->state = to;
	c->state_since_ms = relay_now_ms();

	switch (to) {
	case RELAY_STATE_CONNECTING:
	case RELAY_STATE_TLS:
	case RELAY_STATE_HELLO:
		break;
	case RELAY_STATE_UP:
		c->up_since_ms = c->state_since_ms;
		c->up_since = time(NULL);
		c->last_rx_ms = c->state_since_ms;
		c->rx_since_beat = true;
		c->silent_beats = 0;
		if (c->peer != NULL)
			c->peer->connects++;
		break;
	case RELAY_STATE_CLOSING:
	case RELAY_STATE_CLOSED:
		if (was_live) {
			c->announced = false;
			p = relay_conn_detach(c, reason, from != RELAY_STATE_UP);
		}
		if (to == RELAY_STATE_CLOSING) {
			/* The write callback half-closes once the GOODBYE is out (see there). */
			bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
		} else {
			relay_conn_release_events(c);
			relay_conn_unlink(c);
		}
		/* Last: the callback may call back into the relay. */
		if (announced && p != NULL)
			relay_notify(relay, p, reason);
		break;
	}
}

static void relay_conn_close(struct relay_conn *c, enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Closes c at once (I/O errors, timeouts, refusals before TLS is up). */
static void relay_conn_close(struct relay_conn *c, enum log_level level, const char *fmt, ...)
{
	char reason[RELAY_REASON_LEN];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	relay_conn_set_state(c, RELAY_STATE_CLOSED, level, reason);
}

static bool relay_conn_write_frame(struct relay_conn *c, enum frame_type type, uint8_t flags,
		const void *payload, size_t len);

/*
 * Ends c, telling the peer why in a GOODBYE when TLS is up (so its log shows
 * what went wrong on its side), then closes once that is flushed.
 */
static void relay_conn_goodbye(struct relay_conn *c, enum log_level level, const char *reason)
{
	struct wire_writer w;
	struct relay_proto_goodbye bye;
	uint8_t buf[2 + 256];
	size_t n = strlen(reason);

	if (c->state != RELAY_STATE_HELLO && c->state != RELAY_STATE_UP) {
		relay_conn_set_state(c, RELAY_STATE_CLOSED, level, reason);
		return;
	}
	bye.reason.ptr = reason;
	bye.reason.len = n < sizeof(buf) - 2 ? n : sizeof(buf) - 2;
	wire_writer_init(&w, buf, sizeof(buf));
	if (!relay_proto_write_goodbye(&w, &bye) ||
			!relay_conn_write_frame(c, FRAME_GOODBYE, 0, w.data, w.len)) {
		relay_conn_set_state(c, RELAY_STATE_CLOSED, level, reason);
		return;
	}
	relay_conn_set_state(c, RELAY_STATE_CLOSING, level, reason);
}

static void relay_conn_fail(struct relay_conn *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* The peer broke the protocol: log why, say GOODBYE, close. */
static void relay_conn_fail(struct relay_conn *c, const char *fmt, ...)
{
	char reason[RELAY_REASON_LEN];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	relay_conn_goodbye(c, LOG_LEVEL_WARNING, reason);
}

/* ------------------------------------------------------------------ */
/* Sending */

/* Queues one frame on c's bufferevent; false (c untouched) when it cannot. */
static bool relay_conn_write_frame(struct relay_conn *c, enum frame_type type, uint8_t flags,
		const void *payload, size_t len)
{
	uint8_t hdr[FRAME_HEADER_SIZE];
	struct evbuffer *out = bufferevent_get_output(c->bev);

	if (!frame_encode_header(hdr, type, flags, c->relay->epoch, payload, len))
		return false;
	/* Both pieces or neither: a half-queued frame would corrupt the stream. */
	if (evbuffer_expand(out, sizeof(hdr) + len) != 0 ||
			bufferevent_write(c->bev, hdr, sizeof(hdr)) != 0)
		return false;
	if (len > 0 && bufferevent_write(c->bev, payload, len) != 0)
		return false;
	c->n.bytes_sent += sizeof(hdr) + len;
	c->n.frames_sent++;
	if (!c->throttled && evbuffer_get_length(out) >= RELAY_OUTPUT_HIGH)
		c->throttled = true;
	return true;
}

static void relay_conn_send_hello(struct relay_conn *c)
{
	struct relay *relay = c->relay;
	struct relay_proto_hello h = {
		.version = RELAY_PROTO_VERSION,
		.cluster = relay_proto_str(relay->cluster),
		.site = relay_proto_str(relay->self),
	};
	struct wire_writer w;
	bool ok;

	if (relay->cb.hello != NULL)
		relay->cb.hello(relay->arg, c->peer->name, &h);
	wire_writer_init_heap(&w, FRAME_MAX_PAYLOAD);
	ok = relay_proto_write_hello(&w, &h) &&
		relay_conn_write_frame(c, FRAME_HELLO, 0, w.data, w.len);
	wire_writer_free(&w);
	if (!ok)
		relay_conn_close(c, LOG_LEVEL_ERROR, "could not send HELLO (%zu streams)", h.nstreams);
}

/*
 * Whether everything queued on c has left for the network: our output is
 * empty and TCP holds nothing unsent. Only then is a probe a packet of its
 * own; behind unsent bytes it would ride in their segments (a busy or
 * rate-bound link), costing bytes and finding nothing.
 */
static bool relay_conn_all_sent(struct relay_conn *c)
{
	int kernel = 0;

	if (evbuffer_get_length(bufferevent_get_output(c->bev)) != 0)
		return false;
	return ioctl(bufferevent_getfd(c->bev), SIOCOUTQNSD, &kernel) == 0 && kernel == 0;
}

/* The probe timer: the next probe once the link has sent the batch (lossprobe.h). */
static void relay_conn_probe_cb(evutil_socket_t fd, short what, void *arg)
{
	struct relay_conn *c = arg;
	bool again = false;

	(void)fd;
	(void)what;
	if (c->state != RELAY_STATE_UP)
		return;
	if (loss_probe_due(&c->lp, relay_conn_all_sent(c), &again)) {
		if (!relay_conn_write_frame(c, FRAME_PROBE, 0, NULL, 0)) {
			relay_conn_close(c, LOG_LEVEL_ERROR, "could not send PROBE");
			return;
		}
		c->n.probes_sent++;
	}
	if (again)
		event_add(c->probe_ev, &(struct timeval){ 0, LOSS_PROBE_GAP_US });
}

/*
 * What the link's TCP sent again (tcpstat.h): whether it loses packets
 * (lossprobe.h), and the bytes resent. Every tick, and at each batch.
 */
static void relay_conn_watch_loss(struct relay_conn *c)
{
	struct tcp_stat ts;

	if (!tcp_stat_read(bufferevent_getfd(c->bev), &ts))
		return;
	if (!c->lp.started) {
		/* what the handshake sent again is no batch's */
		loss_probe_start(&c->lp, ts.total_retrans);
		c->resent_base = ts.bytes_retrans;
		return;
	}
	if (ts.bytes_retrans >= c->resent_base)
		c->n.bytes_resent = ts.bytes_retrans - c->resent_base;
	if (!loss_probe_observe(&c->lp, ts.total_retrans, relay_now_ms()))
		return;
	if (loss_probe_losing(&c->lp, relay_now_ms()))
		log_info("relay %s: the link loses packets (%u retransmitted): each batch is followed "
			 "by %d small probe packets, so a lost one is found a round trip later",
			 c->label, ts.total_retrans, LOSS_PROBE_COUNT);
	else
		log_info("relay %s: no packet lost for %u s: no more probes", c->label,
			 LOSS_PROBE_MEMORY_MS / 1000);
}

struct relay_batch_extra relay_batch_sent(struct relay *relay, const char *peer, bool tail)
{
	struct relay_peer *p = relay_find_peer(relay, peer);
	struct relay_conn *c = p != NULL ? p->conn : NULL;
	struct relay_batch_extra x = { 0 };

	if (c == NULL || c->state != RELAY_STATE_UP || c->probe_ev == NULL)
		return x;
	relay_conn_watch_loss(c);
	x.resent_bytes = c->n.bytes_resent - c->resent_charged;
	c->resent_charged = c->n.bytes_resent;
	if (loss_probe_after_batch(&c->lp, relay_now_ms(), tail)) {
		event_add(c->probe_ev, &(struct timeval){ 0, 0 });  /* the first at the next loop pass */
		x.probes = LOSS_PROBE_COUNT;
	}
	return x;
}

static void relay_conn_send_heartbeat(struct relay_conn *c)
{
	struct relay *relay = c->relay;
	struct relay_proto_heartbeat hb = { 0 };
	struct timespec ts;
	struct wire_writer w;
	uint8_t buf[64];

	clock_gettime(CLOCK_REALTIME, &ts);
	hb.time_us = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
	hb.role = RELAY_ROLE_UNKNOWN;
	if (relay->cb.heartbeat != NULL)
		relay->cb.heartbeat(relay->arg, c->peer->name, &hb);
	if (c->state != RELAY_STATE_UP)
		return;      /* the callback reconfigured the link away */
	wire_writer_init(&w, buf, sizeof(buf));
	if (!relay_proto_write_heartbeat(&w, &hb) ||
			!relay_conn_write_frame(c, FRAME_HEARTBEAT, 0, w.data, w.len))
		relay_conn_close(c, LOG_LEVEL_ERROR, "could not send HEARTBEAT");
}

bool relay_send(struct relay *relay, const char *peer, enum frame_type type, uint8_t flags,
		const void *payload, size_t len)
{
	struct relay_peer *p = relay_find_peer(relay, peer);
	struct relay_conn *c = p != NULL ? p->conn : NULL;
	size_t pending;

	if (type == FRAME_HELLO || type == FRAME_GOODBYE || !frame_type_valid(type)) {
		log_error("relay: refusing to send a frame of type %s (0x%02x) to site \"%s\"",
			frame_type_name(type), (unsigned)type, peer);
		return false;
	}
	if (len > FRAME_MAX_PAYLOAD) {
		log_error("relay: refusing to send a %s frame of %zu bytes to site \"%s\": over the limit of %u",
			frame_type_name(type), len, peer, FRAME_MAX_PAYLOAD);
		return false;
	}
	if (c == NULL || c->state != RELAY_STATE_UP)
		return false;
	pending = evbuffer_get_length(bufferevent_get_output(c->bev));
	if (pending > RELAY_OUTPUT_LIMIT) {
		if (!c->over_limit_logged)
			log_error("relay: not queueing more for site \"%s\": %zu bytes already queued",
				peer, pending);
		c->over_limit_logged = true;
		return false;
	}
	c->over_limit_logged = false;
	if (!relay_conn_write_frame(c, type, flags, payload, len)) {
		relay->in_api++;
		relay_conn_close(c, LOG_LEVEL_ERROR, "could not queue a %s frame of %zu bytes",
			frame_type_name(type), len);
		relay->in_api--;
		return false;
	}
	return true;
}

size_t relay_output_pending(const struct relay *relay, const char *peer)
{
	struct relay_peer *p = relay_find_peer(relay, peer);

	if (p == NULL || p->conn == NULL || p->conn->state != RELAY_STATE_UP)
		return 0;
	return evbuffer_get_length(bufferevent_get_output(p->conn->bev));
}

void relay_wait_drain(struct relay *relay, const char *peer)
{
	struct relay_peer *p = relay_find_peer(relay, peer);

	/* the write callback (low watermark RELAY_OUTPUT_LOW) then calls writable() */
	if (p != NULL && p->conn != NULL && p->conn->state == RELAY_STATE_UP)
		p->conn->throttled = true;
}

bool relay_output_position(const struct relay *relay, const char *peer, uint64_t *queued,
		uint64_t *drained)
{
	struct relay_peer *p = relay_find_peer(relay, peer);

	*queued = *drained = 0;
	if (p == NULL || p->conn == NULL || p->conn->state != RELAY_STATE_UP)
		return false;
	/* every frame of the link went into the output buffer, which TLS drains in order */
	*queued = p->conn->n.bytes_sent;
	*drained = *queued - evbuffer_get_length(bufferevent_get_output(p->conn->bev));
	return true;
}

size_t relay_output_unsent(const struct relay *relay, const char *peer)
{
	struct relay_peer *p = relay_find_peer(relay, peer);
	int kernel = 0;

	if (p == NULL || p->conn == NULL || p->conn->state != RELAY_STATE_UP)
		return 0;
	/* what TCP has not sent yet (TLS records: a little more than the frames in them) */
	if (ioctl(bufferevent_getfd(p->conn->bev), SIOCOUTQNSD, &kernel) != 0 || kernel < 0)
		kernel = 0;
	return evbuffer_get_length(bufferevent_get_output(p->conn->bev)) + (size_t)kernel;
}

void relay_wait_output(struct relay *relay, const char *peer, size_t pending)
{
	struct relay_peer *p = relay_find_peer(relay, peer);
	struct relay_conn *c = p != NULL ? p->conn : NULL;

	if (c == NULL || c->state != RELAY_STATE_UP)
		return;
	/* the highest mark asked for wakes every producer; one that needs less asks again */
	if (!c->wake_asked || pending > c->wake_pending)
		c->wake_pending = pending;
	c->wake_asked = true;
}

bool relay_is_up(const struct relay *relay, const char *peer)
{
	struct relay_peer *p = relay_find_peer(relay, peer);

	return p != NULL && p->conn != NULL && p->conn->state == RELAY_STATE_UP;
}

void relay_set_epoch(struct relay *relay, uint64_t epoch)
{
	relay->epoch = epoch;
}

/* ------------------------------------------------------------------ */
/* Receiving */

/*
 * Binds an accepted connection whose HELLO named p, replacing p's older one.
 * False when c is gone meanwhile: the old link's disconnected callback may
 * have reloaded p away (which also fails c here) or closed c.
 */
static bool relay_conn_bind(struct relay_conn *c, struct relay_peer *p)
{
	struct relay *relay = c->relay;

	if (p->conn != NULL) {
		relay_conn_close(p->conn, LOG_LEVEL_INFO, "replaced by a new connection from %s",
			c->remote);
		if (p->removed && c->state == RELAY_STATE_HELLO)
			relay_conn_fail(c, "site \"%s\" was removed from the configuration", p->name);
		if (c->state != RELAY_STATE_HELLO)
			return false;
	}
	c->pending = false;
	relay->npending--;
	c->peer = p;
	p->conn = c;
	relay_conn_set_label(c);
	return true;
}

/* The acceptor's checks of the site a HELLO claims; NULL after failing c. */
static struct relay_peer *relay_conn_accept_site(struct relay_conn *c, struct wire_str site)
{
	struct relay *relay = c->relay;
	SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
	X509 *cert = ssl != NULL ? SSL_get0_peer_certificate(ssl) : NULL;
	struct relay_peer *p = relay_find_peer_str(relay, site);
	char shown[RELAY_NAME_SHOWN + 8], names[256];

	relay_printable(site, shown, sizeof(shown));
	if (p == NULL) {
		relay_conn_fail(c, "HELLO from site \"%s\", which is not a peer site of \"%s\"",
			shown, relay->self);
		return NULL;
	}
	if (!tls_cert_names_site(cert, p->name)) {
		tls_cert_describe_names(cert, names, sizeof(names));
		relay_conn_fail(c, "HELLO from site \"%s\", but its certificate is for site %s",
			p->name, names);
		return NULL;
	}
	if (p->dials) {
		relay_conn_fail(c, "site \"%s\" dialed, but \"%s\" dials it (the lower name dials)",
			p->name, relay->self);
		return NULL;
	}
	return p;
}

static void relay_conn_on_hello(struct relay_conn *c, const struct frame *f)
{
	struct relay *relay = c->relay;
	struct relay_proto_position *streams = NULL;
	struct relay_proto_hello h;
	enum relay_proto_status st;
	struct relay_peer *p;
	char shown[RELAY_NAME_SHOWN + 8], reason[RELAY_REASON_LEN];
	size_t max = f->payload_len / RELAY_HELLO_ENTRY_MIN + 1;

	if (max > RELAY_PROTO_MAX_LIST)
		max = RELAY_PROTO_MAX_LIST;
	streams = calloc(max, sizeof(*streams));
	if (streams == NULL) {
		relay_conn_close(c, LOG_LEVEL_ERROR, "could not read HELLO: out of memory");
		goto out;
	}
	st = relay_proto_read_hello(f->payload, f->payload_len, &h, streams, max);
	if (st != RELAY_PROTO_OK) {
		relay_conn_fail(c, "invalid HELLO: %s", relay_proto_status_str(st));
		goto out;
	}
	if (h.version != RELAY_PROTO_VERSION) {
		relay_conn_fail(c, "peer speaks relay protocol version %u, this site version %u",
			(unsigned)h.version, RELAY_PROTO_VERSION);
		goto out;
	}
	if (!wire_str_eq(h.cluster, relay->cluster)) {
		relay_printable(h.cluster, shown, sizeof(shown));
		relay_conn_fail(c, "HELLO for cluster \"%s\", expected \"%s\"", shown,
			relay->cluster);
		goto out;
	}
	if (c->dialed) {
		p = c->peer;
		if (!wire_str_eq(h.site, p->name)) {
			relay_printable(h.site, shown, sizeof(shown));
			relay_conn_fail(c, "HELLO from site \"%s\", expected \"%s\"", shown, p->name);
			goto out;
		}
	} else {
		p = relay_conn_accept_site(c, h.site);
		if (p == NULL || !relay_conn_bind(c, p))
			goto out;
		relay_conn_send_hello(c);
		if (c->state != RELAY_STATE_HELLO)
			goto out;
	}

	/* A "down" owed for this peer is told before its "up". */
	relay_flush_notes(relay);
	if (c->state != RELAY_STATE_HELLO)
		goto out;
	snprintf(reason, sizeof(reason), "HELLO from \"%s\" (protocol %u, epoch %llu, %zu streams)",
		p->name, (unsigned)h.version, (unsigned long long)f->epoch, h.nstreams);
	relay_conn_set_state(c, RELAY_STATE_UP, LOG_LEVEL_INFO, reason);
	c->announced = true;
	if (relay->cb.connected != NULL)
		relay->cb.connected(relay->arg, p->name, f->epoch, &h);
	/* The first heartbeat at once, so the peer learns our position now. */
	if (c->state == RELAY_STATE_UP)
		relay_conn_send_heartbeat(c);
out:
	free(streams);
}

static void relay_conn_on_goodbye(struct relay_conn *c, const struct frame *f)
{
	struct relay_proto_goodbye bye;
	enum relay_proto_status st;
	char shown[300];

	st = relay_proto_read_goodbye(f->payload, f->payload_len, &bye);
	if (st != RELAY_PROTO_OK) {
		relay_conn_fail(c, "invalid GOODBYE: %s", relay_proto_status_str(st));
		return;
	}
	/* Show the whole reason: it is the peer's explanation of a refusal. */
	{
		size_t n = 0;

		for (size_t i = 0; i < bye.reason.len && n + 1 < sizeof(shown); i++) {
			unsigned char ch = (unsigned char)bye.reason.ptr[i];

			shown[n++] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
		}
		shown[n] = '\0';
	}
	relay_conn_close(c, LOG_LEVEL_WARNING, "peer closed the link: %s",
		shown[0] != '\0' ? shown : "no reason given");
}

/* One decoded frame; may close c. */
static void relay_conn_dispatch(struct relay_conn *c, const struct frame *f)
{
	struct relay *relay = c->relay;
	struct relay_proto_heartbeat hb;
	enum relay_proto_status st;

	c->n.frames_received++;
	c->n.bytes_received += f->size;

	if (f->type == FRAME_GOODBYE) {
		relay_conn_on_goodbye(c, f);
		return;
	}
	if (c->state == RELAY_STATE_HELLO) {
		if (f->type != FRAME_HELLO)
			relay_conn_fail(c, "%s frame before HELLO", frame_type_name(f->type));
		else
			relay_conn_on_hello(c, f);
		return;
	}
	if (f->type == FRAME_HELLO) {
		relay_conn_fail(c, "second HELLO");
		return;
	}
	if (f->type == FRAME_PROBE) {
		if (f->payload_len != 0)
			relay_conn_fail(c, "invalid PROBE: %u bytes of payload (it has none)",
					f->payload_len);
		return;          /* it only had to arrive */
	}
	if (f->type == FRAME_HEARTBEAT) {
		st = relay_proto_read_heartbeat(f->payload, f->payload_len, &hb);
		if (st != RELAY_PROTO_OK) {
			relay_conn_fail(c, "invalid HEARTBEAT: %s", relay_proto_status_str(st));
			return;
		}
	}
	if (relay->cb.frame != NULL)
		relay->cb.frame(relay->arg, c->peer->name, f);
}

static void relay_conn_read_cb(struct bufferevent *bev, void *arg)
{
	struct relay_conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	c->last_rx_ms = relay_now_ms();
	c->rx_since_beat = true;
	if (c->state == RELAY_STATE_CLOSING) {
		evbuffer_drain(in, evbuffer_get_length(in));
		return;
	}
	while (c->state == RELAY_STATE_HELLO || c->state == RELAY_STATE_UP) {
		size_t len = evbuffer_get_length(in);
		size_t want = len < FRAME_HEADER_SIZE ? len : FRAME_HEADER_SIZE;
		enum frame_status st;
		const uint8_t *p;
		struct frame f;

		if (len == 0)
			break;
		p = evbuffer_pullup(in, (ev_ssize_t)want);
		if (p == NULL)
			goto oom;
		st = frame_decode(p, want, &f);
		if (st == FRAME_NEED_MORE && want == FRAME_HEADER_SIZE && f.size <= len) {
			/* The header checked out and the whole frame is here. */
			want = f.size;
			p = evbuffer_pullup(in, (ev_ssize_t)want);
			if (p == NULL)
				goto oom;
			st = frame_decode(p, want, &f);
		}
		if (st == FRAME_NEED_MORE) {
			c->need = f.size;
			break;
		}
		if (st != FRAME_OK) {
			if (st == FRAME_ERR_TYPE && want > 5)
				relay_conn_fail(c, "invalid frame: %s 0x%02x", frame_status_str(st), p[5]);
			else
				relay_conn_fail(c, "invalid frame: %s", frame_status_str(st));
			return;
		}
		c->need = 0;
		relay_conn_dispatch(c, &f);
		if (c->state != RELAY_STATE_HELLO && c->state != RELAY_STATE_UP)
			return;
		evbuffer_drain(in, f.size);
	}
	return;
oom:
	relay_conn_close(c, LOG_LEVEL_ERROR, "could not receive a frame: out of memory");
}

static void relay_conn_write_cb(struct bufferevent *bev, void *arg)
{
	struct relay_conn *c = arg;
	struct relay *relay = c->relay;
	size_t pending = evbuffer_get_length(bufferevent_get_output(bev));
	bool wake = false;

	if (c->state == RELAY_STATE_CLOSING) {
		/*
		 * A lingering close: closing a socket with unread input makes the
		 * kernel send a reset, which can destroy the GOODBYE in the peer's
		 * receive queue. So send EOF after it and wait for the peer's EOF
		 * (input is thrown away meanwhile), or RELAY_GOODBYE_MS.
		 */
		if (pending == 0 && !c->half_closed) {
			c->half_closed = true;
			if (shutdown(bufferevent_getfd(bev), SHUT_WR) < 0)
				relay_conn_set_state(c, RELAY_STATE_CLOSED, LOG_LEVEL_DEBUG,
					"GOODBYE sent");
		}
		return;
	}
	if (c->state != RELAY_STATE_UP)
		return;
	if (c->wake_asked && pending <= c->wake_pending) {
		c->wake_asked = false;
		wake = true;
	}
	if (c->throttled && pending <= RELAY_OUTPUT_LOW) {
		c->throttled = false;
		wake = true;
	}
	if (wake && relay->cb.writable != NULL)
		relay->cb.writable(relay->arg, c->peer->name);
}

/* ------------------------------------------------------------------ */
/* TLS handshake and transport events */

/* The handshake completed: check the version and the peer's certificate. */
static void relay_conn_tls_done(struct relay_conn *c)
{
	struct relay *relay = c->relay;
	SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
	X509 *cert = SSL_get0_peer_certificate(ssl);
	char names[256], session[128];
	long vr;
	bool named = false;

	if (SSL_version(ssl) != TLS1_3_VERSION) {
		relay_conn_close(c, LOG_LEVEL_WARNING, "peer negotiated %s, TLS 1.3 is required",
			SSL_get_version(ssl));
		return;
	}
	if (cert == NULL) {
		relay_conn_close(c, LOG_LEVEL_WARNING, "peer %s presented no certificate", c->remote);
		return;
	}
	vr = SSL_get_verify_result(ssl);
	if (vr != X509_V_OK) {
		relay_conn_close(c, LOG_LEVEL_WARNING, "certificate verify failed: %s",
			X509_verify_cert_error_string(vr));
		return;
	}
	tls_cert_describe_names(cert, names, sizeof(names));
	if (c->dialed) {
		if (!tls_cert_names_site(cert, c->peer->name)) {
			relay_conn_close(c, LOG_LEVEL_WARNING,
				"peer %s presented a certificate for site %s, expected \"%s\"",
				c->remote, names, c->peer->name);
			return;
		}
	} else {
		for (size_t i = 0; i < relay->npeers && !named; i++)
			named = tls_cert_names_site(cert, relay->peers[i]->name);
		if (!named) {
			relay_conn_close(c, LOG_LEVEL_WARNING,
				"peer %s presented a certificate for site %s, which is not a peer site of \"%s\"",
				c->remote, names, relay->self);
			return;
		}
	}
	tls_session_describe(ssl, session, sizeof(session));
	{
		char reason[RELAY_REASON_LEN];

		snprintf(reason, sizeof(reason), "%s, certificate for %s", session, names);
		relay_conn_set_state(c, RELAY_STATE_HELLO, LOG_LEVEL_DEBUG, reason);
	}
	if (c->dialed)
		relay_conn_send_hello(c);
}

/*
 * Why the transport ended, from libevent's flags and the errors it kept.
 * libevent's error queue mixes OpenSSL error codes with the bare result of
 * SSL_get_error() (library 0: SSL_ERROR_SYSCALL is an I/O error or a reset
 * underneath TLS); the first real OpenSSL error says the most.
 */
static void relay_conn_transport_reason(struct relay_conn *c, short what, char *buf, size_t len)
{
	SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
	unsigned long err, first = 0;
	bool io_error = false;
	int sock_err = EVUTIL_SOCKET_ERROR();
	size_t have = evbuffer_get_length(bufferevent_get_input(c->bev));
	bool up = c->state == RELAY_STATE_UP;
	const char *during = c->state == RELAY_STATE_TLS ? " during the TLS handshake" : "";
	char tls[256];

	while ((err = bufferevent_get_openssl_error(c->bev)) != 0) {
		if (ERR_GET_LIB(err) == 0)
			io_error = io_error || err == SSL_ERROR_SYSCALL;
		else if (first == 0)
			first = err;
	}
	if (first != 0) {
		tls_error_describe(first, ssl, tls, sizeof(tls));
		snprintf(buf, len, "%s: %s", up ? "TLS error" : "TLS handshake failed", tls);
	} else if ((what & BEV_EVENT_EOF) && have > 0) {
		if (c->need > 0)
			snprintf(buf, len, "peer closed the connection in the middle of a frame "
				"(%zu of %zu bytes)", have, c->need);
		else
			snprintf(buf, len, "peer closed the connection in the middle of a frame "
				"(%zu bytes)", have);
	} else if (what & BEV_EVENT_EOF) {
		snprintf(buf, len, "peer closed the connection%s", during);
	} else if (io_error || sock_err == 0) {
		/* The errno of a deferred callback is long gone. */
		snprintf(buf, len, "connection reset or broken%s", during);
	} else {
		snprintf(buf, len, "connection error%s: %s", during,
			evutil_socket_error_to_string(sock_err));
	}
	ERR_clear_error();
}

static void relay_conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct relay_conn *c = arg;
	char reason[RELAY_REASON_LEN];

	(void)bev;
	if (what & BEV_EVENT_CONNECTED) {
		if (c->state == RELAY_STATE_TLS)
			relay_conn_tls_done(c);
		return;
	}
	if (c->state == RELAY_STATE_CLOSING) {
		relay_conn_set_state(c, RELAY_STATE_CLOSED, LOG_LEVEL_DEBUG,
			c->half_closed ? "GOODBYE sent" : "connection ended while sending GOODBYE");
		return;
	}
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) {
		relay_conn_transport_reason(c, what, reason, sizeof(reason));
		relay_conn_set_state(c, RELAY_STATE_CLOSED, LOG_LEVEL_WARNING, reason);
	}
}

/* Wraps the connected socket in TLS; the bufferevent owns fd from here on. */
static void relay_conn_start_tls(struct relay_conn *c, enum bufferevent_ssl_state how)
{
	struct relay *relay = c->relay;
	SSL *ssl = SSL_new(relay->ctx);
	int one = 1, notsent = RELAY_NOTSENT_LOWAT;

	if (ssl == NULL) {
		relay_conn_close(c, LOG_LEVEL_ERROR, "could not create TLS session: out of memory");
		return;
	}
	(void)setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	/*
	 * Keep unsent data in our queue rather than in the kernel's: what waits
	 * there can still be ordered (live batches before initial-sync copies);
	 * data in flight is not limited by it, so throughput is not either.
	 */
	(void)setsockopt(c->fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &notsent, sizeof(notsent));
	c->probe_ev = evtimer_new(relay->base, relay_conn_probe_cb, c);
	if (c->probe_ev == NULL) {
		SSL_free(ssl);
		relay_conn_close(c, LOG_LEVEL_ERROR, "could not create a timer: out of memory");
		return;
	}
	c->bev = bufferevent_openssl_socket_new(relay->base, c->fd, ssl, how,
			BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (c->bev == NULL) {
		SSL_free(ssl);
		relay_conn_close(c, LOG_LEVEL_ERROR, "could not create TLS bufferevent");
		return;
	}
	c->fd = -1;
	/* EOF without close_notify: frames carry their own length, truncation shows. */
	bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
	bufferevent_setcb(c->bev, relay_conn_read_cb, relay_conn_write_cb, relay_conn_event_cb, c);
	bufferevent_setwatermark(c->bev, EV_WRITE, RELAY_OUTPUT_LOW, 0);
	/*
	 * libevent moves at most 16 KiB per read or write call by default;
	 * larger steps mean fewer system calls and callbacks per MiB of BATCH
	 * and SYNC data.
	 */
	bufferevent_set_max_single_read(c->bev, RELAY_IO_CHUNK);
	bufferevent_set_max_single_write(c->bev, RELAY_IO_CHUNK);
	if (bufferevent_enable(c->bev, EV_READ | EV_WRITE) != 0) {
		relay_conn_close(c, LOG_LEVEL_ERROR, "could not start TLS");
		return;
	}
	relay_conn_set_state(c, RELAY_STATE_TLS, LOG_LEVEL_DEBUG,
		how == BUFFEREVENT_SSL_CONNECTING ? "TCP connected" : "accepted");
}

/*
 * A connection in state CONNECTING on socket fd (which it then owns, -1 when
 * socket() failed), bound to p when p is not NULL. NULL when out of memory.
 */
static struct relay_conn *relay_conn_new(struct relay *relay, struct relay_peer *p,
		bool dialed, evutil_socket_t fd, const char *remote)
{
	struct relay_conn *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->relay = relay;
	c->peer = p;
	c->dialed = dialed;
	c->fd = fd;
	c->state = RELAY_STATE_CONNECTING;
	c->created_ms = c->state_since_ms = c->last_rx_ms = relay_now_ms();
	snprintf(c->remote, sizeof(c->remote), "%s", remote);
	relay_conn_set_label(c);
	c->next = relay->conns;
	relay->conns = c;
	if (p != NULL)
		p->conn = c;
	return c;
}

/* ------------------------------------------------------------------ */
/* Dialing */

static void relay_connect_cb(evutil_socket_t fd, short what, void *arg)
{
	struct relay_conn *c = arg;
	int err = 0;
	socklen_t len = sizeof(err);

	(void)what;
	if (c->state != RELAY_STATE_CONNECTING)
		return;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err != 0) {
		relay_conn_close(c, LOG_LEVEL_WARNING, "could not connect to %s: %s", c->remote,
			strerror(err));
		return;
	}
	relay_conn_start_tls(c, BUFFEREVENT_SSL_CONNECTING);
}


static void relay_peer_dial(struct relay_peer *p)
{
	struct relay *relay = p->relay;
	struct sockaddr_storage local = relay->self_addr;
	struct relay_conn *c;
	evutil_socket_t fd;
	int one = 1;

	if (p->conn != NULL || p->removed)
		return;
	fd = socket(p->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	c = relay_conn_new(relay, p, true, fd, p->addr_str);
	if (c == NULL) {
		if (fd >= 0)
			close(fd);
		log_error("relay: could not dial site \"%s\": out of memory", p->name);
		p->failures++;
		relay_peer_schedule(p);
		return;
	}
	log_debug("relay site \"%s\" at %s: dialing (attempt %u)", p->name, p->addr_str,
		p->attempt + 1);
	if (fd < 0) {
		relay_conn_close(c, LOG_LEVEL_ERROR, "could not create socket: %s", strerror(errno));
		return;
	}
	/*
	 * Leave from our own tunnel address, so the peer sees the link come from
	 * the tunnel; the port is picked at connect() time.
	 */
	if (local.ss_family == p->addr.ss_family) {
		if (local.ss_family == AF_INET)
			((struct sockaddr_in *)&local)->sin_port = 0;
		else
			((struct sockaddr_in6 *)&local)->sin6_port = 0;
		(void)setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
		if (bind(fd, (struct sockaddr *)&local, relay->self_addrlen) < 0) {
			char self[RELAY_ADDR_LEN];

			relay_format_addr((struct sockaddr *)&local, self, sizeof(self));
			relay_conn_close(c, LOG_LEVEL_WARNING, "could not bind to %s: %s", self,
				strerror(errno));
			return;
		}
	}
	if (connect(fd, (struct sockaddr *)&p->addr, p->addrlen) == 0) {
		relay_conn_start_tls(c, BUFFEREVENT_SSL_CONNECTING);
		return;
	}
	if (errno != EINPROGRESS) {
		relay_conn_close(c, LOG_LEVEL_WARNING, "could not connect to %s: %s", p->addr_str,
			strerror(errno));
		return;
	}
	c->connect_ev = event_new(relay->base, fd, EV_WRITE, relay_connect_cb, c);
	if (c->connect_ev == NULL || event_add(c->connect_ev, NULL) != 0)
		relay_conn_close(c, LOG_LEVEL_ERROR, "could not wait for the connection to %s",
			p->addr_str);
}

static void relay_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct relay_peer *p = arg;

	(void)fd;
	(void)what;
	p->next_attempt_ms = 0;
	relay_peer_dial(p);
}

static void relay_peer_schedule_in(struct relay_peer *p, uint64_t delay_ms)
{
	struct timeval tv = {
		.tv_sec = (time_t)(delay_ms / 1000),
		.tv_usec = (suseconds_t)(delay_ms % 1000) * 1000,
	};

	p->next_attempt_ms = relay_now_ms() + delay_ms;
	if (evtimer_add(p->retry_ev, &tv) != 0)
		log_error("relay: could not schedule a connection to site \"%s\"", p->name);
}

/* The next attempt of a dialer peer, after the backoff delay. */
static void relay_peer_schedule(struct relay_peer *p)
{
	uint64_t delay = relay_backoff_ms(p->attempt, arc4random());

	if (p->attempt < 32)
		p->attempt++;
	log_debug("relay site \"%s\": next attempt in %llu ms", p->name,
		(unsigned long long)delay);
	relay_peer_schedule_in(p, delay);
}

/* ------------------------------------------------------------------ */
/* Accepting */

static void relay_accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
		int socklen, void *arg)
{
	struct relay *relay = arg;
	char remote[RELAY_ADDR_LEN];
	struct relay_conn *c;

	(void)l;
	(void)socklen;
	relay_format_addr(sa, remote, sizeof(remote));
	if (relay->npending >= RELAY_MAX_PENDING) {
		log_warning("relay: refusing connection from %s: %zu connections are not identified yet",
			remote, relay->npending);
		relay->refused++;
		evutil_closesocket(fd);
		return;
	}
	c = relay_conn_new(relay, NULL, false, fd, remote);
	if (c == NULL) {
		log_error("relay: could not accept connection from %s: out of memory", remote);
		relay->refused++;
		evutil_closesocket(fd);
		return;
	}
	c->pending = true;
	relay->npending++;
	relay_conn_start_tls(c, BUFFEREVENT_SSL_ACCEPTING);
}

static void relay_accept_error_cb(struct evconnlistener *l, void *arg)
{
	struct relay *relay = arg;
	int err = EVUTIL_SOCKET_ERROR();

	if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
		/* Stop accepting until the next tick rather than spin on the error. */
		log_warning("relay: not accepting connections on %s for now: %s",
			relay->self_addr_str, evutil_socket_error_to_string(err));
		evconnlistener_disable(l);
		relay->listener_paused = true;
		return;
	}
	log_warning("relay: could not accept a connection on %s: %s", relay->self_addr_str,
		evutil_socket_error_to_string(err));
}

static bool relay_needs_listener(const struct relay *relay)
{
	for (size_t i = 0; i < relay->npeers; i++)
		if (!relay->peers[i]->dials)
			return true;
	return false;
}

static void relay_listener_close(struct relay *relay)
{
	if (relay->listener != NULL) {
		evconnlistener_free(relay->listener);
		relay->listener = NULL;
		log_info("relay: stopped listening on %s", relay->self_addr_str);
	}
	relay->listener_paused = false;
	relay->listen_error[0] = '\0';
}

/*
 * Binds the listener when some peer dials this site and it is not bound yet
 * (the tunnel address may not exist yet: retried every tick; the error is
 * logged when it first shows and when it changes).
 */
static void relay_listener_update(struct relay *relay)
{
	char error[RELAY_REASON_LEN];
	evutil_socket_t fd;
	int one = 1;

	if (!relay_needs_listener(relay)) {
		relay_listener_close(relay);
		return;
	}
	if (relay->listener != NULL) {
		if (relay->listener_paused && evconnlistener_enable(relay->listener) == 0)
			relay->listener_paused = false;
		return;
	}
	fd = socket(relay->self_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(error, sizeof(error), "could not create socket: %s", strerror(errno));
		goto fail;
	}
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&relay->self_addr, relay->self_addrlen) < 0 ||
			listen(fd, RELAY_LISTEN_BACKLOG) < 0) {
		snprintf(error, sizeof(error), "%s", strerror(errno));
		goto fail;
	}
	relay->listener = evconnlistener_new(relay->base, relay_accept_cb, relay,
			LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd);
	if (relay->listener == NULL) {
		snprintf(error, sizeof(error), "could not create listener");
		goto fail;
	}
	evconnlistener_set_error_cb(relay->listener, relay_accept_error_cb);
	relay->listen_error[0] = '\0';
	log_info("relay: listening on %s", relay->self_addr_str);
	return;
fail:
	if (fd >= 0)
		close(fd);
	if (strcmp(error, relay->listen_error) != 0)
		log_warning("relay: could not listen on %s: %s (retrying)", relay->self_addr_str,
			error);
	snprintf(relay->listen_error, sizeof(relay->listen_error), "%s", error);
}

/* ------------------------------------------------------------------ */
/* The periodic tick and the reaper */

/*
 * Heartbeat intervals without a byte from the peer before a link is dead:
 * failover.health_failures, at least 2 (with 1, a heartbeat that arrives a
 * moment after the tick would already kill the link).
 */
static unsigned relay_dead_ticks(const struct relay *relay)
{
	return relay->health_failures < 2 ? 2 : relay->health_failures;
}

/* The same as a time. */
static uint64_t relay_dead_ms(const struct relay *relay)
{
	return relay->health_ms * relay_dead_ticks(relay);
}

/* How long a connection may take to come up: as long as a dead link, at most 10 s. */
static uint64_t relay_handshake_ms(const struct relay *relay)
{
	uint64_t dead = relay_dead_ms(relay);

	return dead < RELAY_HANDSHAKE_MAX_MS ? dead : RELAY_HANDSHAKE_MAX_MS;
}

static void relay_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct relay *relay = arg;
	uint64_t now = relay_now_ms();
	uint64_t handshake = relay_handshake_ms(relay);
	bool beat = now >= relay->next_beat_ms;
	struct relay_conn *c, *next;

	(void)fd;
	(void)what;
	if (beat)
		relay->next_beat_ms = now + relay->health_ms;
	for (c = relay->conns; c != NULL; c = next) {
		next = c->next;
		switch (c->state) {
		case RELAY_STATE_CONNECTING:
		case RELAY_STATE_TLS:
		case RELAY_STATE_HELLO:
			if (now - c->created_ms >= handshake)
				relay_conn_close(c, LOG_LEVEL_WARNING,
					"timed out after %.1f s in state %s",
					(double)(now - c->created_ms) / 1000.0,
					relay_state_names[c->state]);
			break;
		case RELAY_STATE_UP:
			relay_conn_watch_loss(c);
			if (!beat)
				break;
			/*
			 * Count ticks without a byte rather than compare clocks: when
			 * this process is starved (a busy loop, a loaded host, a
			 * stopped debugger) its ticks are late too, and its own stall
			 * is not taken for the peer's death.
			 */
			c->silent_beats = c->rx_since_beat ? 0 : c->silent_beats + 1;
			c->rx_since_beat = false;
			if (c->silent_beats >= relay_dead_ticks(relay))
				relay_conn_close(c, LOG_LEVEL_WARNING,
					"peer is dead: nothing received in %u heartbeat intervals (%.1f s)",
					c->silent_beats, (double)(now - c->last_rx_ms) / 1000.0);
			else
				relay_conn_send_heartbeat(c);
			break;
		case RELAY_STATE_CLOSING:
			if (now - c->state_since_ms >= RELAY_GOODBYE_MS)
				relay_conn_set_state(c, RELAY_STATE_CLOSED, LOG_LEVEL_DEBUG,
					c->half_closed ? "GOODBYE sent, peer did not close in time" :
					"GOODBYE not flushed in time");
			break;
		case RELAY_STATE_CLOSED:
			break;
		}
	}
	relay_listener_update(relay);
}

static void relay_conn_free(struct relay_conn *c)
{
	if (c->probe_ev != NULL)
		event_free(c->probe_ev);
	if (c->connect_ev != NULL)
		event_free(c->connect_ev);
	if (c->bev != NULL)
		bufferevent_free(c->bev);
	else if (c->fd >= 0)
		evutil_closesocket(c->fd);
	free(c);
}

static void relay_peer_free(struct relay_peer *p)
{
	if (p->retry_ev != NULL)
		event_free(p->retry_ev);
	free(p->name);
	free(p);
}

static void relay_reap_cb(evutil_socket_t fd, short what, void *arg)
{
	struct relay *relay = arg;

	(void)fd;
	(void)what;
	/* Owed callbacks first: they name peers the loops below may free. */
	relay_flush_notes(relay);
	while (relay->dead_conns != NULL) {
		struct relay_conn *c = relay->dead_conns;

		relay->dead_conns = c->next_dead;
		relay_conn_free(c);
	}
	while (relay->dead_peers != NULL) {
		struct relay_peer *p = relay->dead_peers;

		relay->dead_peers = p->next_dead;
		relay_peer_free(p);
	}
}

/* ------------------------------------------------------------------ */
/* Peers and configuration */

static struct relay_peer *relay_peer_new(struct relay *relay, const char *name)
{
	struct relay_peer *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return NULL;
	p->relay = relay;
	p->name = strdup(name);
	p->retry_ev = evtimer_new(relay->base, relay_retry_cb, p);
	if (p->name == NULL || p->retry_ev == NULL) {
		relay_peer_free(p);
		return NULL;
	}
	return p;
}

/* Takes p out of service: closes its link (telling the peer why) and hands it to the reaper. */
static void relay_peer_remove(struct relay_peer *p, const char *reason)
{
	struct relay *relay = p->relay;

	p->removed = true;
	event_del(p->retry_ev);
	p->next_attempt_ms = 0;
	if (p->conn != NULL)
		relay_conn_goodbye(p->conn, LOG_LEVEL_INFO, reason);
	p->next_dead = relay->dead_peers;
	relay->dead_peers = p;
	event_active(relay->reaper, EV_TIMEOUT, 1);
}

static bool relay_same_addr(const struct sockaddr_storage *a, socklen_t alen,
		const struct sockaddr_storage *b, socklen_t blen)
{
	return alen == blen && memcmp(a, b, alen) == 0;
}

/*
 * Takes ctx, cluster and self_name (owned from here on) as the relay's;
 * when a reload renamed the cluster or this site, every connection closes.
 */
static void relay_apply_names(struct relay *relay, SSL_CTX *ctx, char *cluster, char *self_name)
{
	bool renamed = relay->cluster != NULL &&
		(strcmp(relay->cluster, cluster) != 0 || strcmp(relay->self, self_name) != 0);

	if (renamed) {
		for (struct relay_conn *c = relay->conns, *next; c != NULL; c = next) {
			next = c->next;
			relay_conn_close(c, LOG_LEVEL_INFO, "cluster or site renamed by a reload");
		}
	}
	SSL_CTX_free(relay->ctx);
	relay->ctx = ctx;
	free(relay->cluster);
	relay->cluster = cluster;
	free(relay->self);
	relay->self = self_name;
}

/* This site's listening address; a new one closes the listener (relay_listener_update reopens). */
static void relay_apply_self_addr(struct relay *relay, const struct strait_config *cfg,
		size_t self)
{
	struct sockaddr_storage self_addr;
	socklen_t self_addrlen;

	relay_make_addr(&cfg->sites[self].tunnel_address, cfg->relay.port, &self_addr,
		&self_addrlen);
	if (!relay_same_addr(&self_addr, self_addrlen, &relay->self_addr, relay->self_addrlen)) {
		relay_listener_close(relay);
		relay->self_addr = self_addr;
		relay->self_addrlen = self_addrlen;
		relay_format_addr((struct sockaddr *)&self_addr, relay->self_addr_str,
			sizeof(relay->self_addr_str));
	}
}

/* Makes peers (owned from here on) the relay's peers; those gone from the config are removed. */
static void relay_apply_peer_list(struct relay *relay, struct relay_peer **peers, size_t npeers)
{
	for (size_t i = 0; i < relay->npeers; i++) {
		bool kept = false;

		for (size_t k = 0; k < npeers && !kept; k++)
			kept = peers[k] == relay->peers[i];
		if (!kept)
			relay_peer_remove(relay->peers[i], "site removed from the configuration");
	}
	free(relay->peers);
	relay->peers = peers;
	relay->npeers = npeers;
}

/* The address and direction of peer p, site i of cfg, that stays (or came: is_new). */
static void relay_apply_peer(struct relay *relay, const struct strait_config *cfg, size_t i,
		struct relay_peer *p, bool is_new)
{
	struct sockaddr_storage addr;
	socklen_t addrlen;
	bool moved = false, dials;

	relay_make_addr(&cfg->sites[i].tunnel_address, cfg->relay.port, &addr, &addrlen);
	dials = relay_dials(relay->self, p->name);
	if (!relay_same_addr(&addr, addrlen, &p->addr, p->addrlen)) {
		moved = !is_new;
		p->addr = addr;
		p->addrlen = addrlen;
		relay_format_addr((struct sockaddr *)&addr, p->addr_str, sizeof(p->addr_str));
		if (!is_new)
			log_info("relay site \"%s\": address is now %s (from the next connection on)",
				p->name, p->addr_str);
	}
	if (!is_new && p->dials != dials && p->conn != NULL)
		relay_conn_close(p->conn, LOG_LEVEL_INFO, "dial direction changed by a reload");
	if (!is_new && p->dials && !dials) {
		event_del(p->retry_ev);
		p->next_attempt_ms = 0;
	}
	p->dials = dials;
	if (dials && p->conn == NULL && (is_new || moved ||
			!evtimer_pending(p->retry_ev, NULL))) {
		p->attempt = 0;
		relay_peer_schedule_in(p, 0);
	}
}

/* The health beat's interval and failure count; the tick restarts when the interval changed. */
static void relay_apply_health(struct relay *relay, const struct strait_config *cfg)
{
	uint64_t health_ms = cfg->failover.health_interval > 0 ? cfg->failover.health_interval : 1000;
	struct timeval tv;

	relay->health_failures = cfg->failover.health_failures > 0 ?
		cfg->failover.health_failures : 1;
	if (health_ms != relay->health_ms || !evtimer_pending(relay->tick, NULL)) {
		relay->health_ms = health_ms;
		relay->tick_ms = health_ms < RELAY_TICK_MAX_MS ? health_ms : RELAY_TICK_MAX_MS;
		relay->next_beat_ms = relay_now_ms() + health_ms;
		tv.tv_sec = (time_t)(relay->tick_ms / 1000);
		tv.tv_usec = (suseconds_t)(relay->tick_ms % 1000) * 1000;
		event_add(relay->tick, &tv);
	}
}

/*
 * Makes the relay follow cfg. Everything that can fail (the TLS context,
 * memory) is done before anything changes, so a failure leaves the relay as
 * it was.
 */
static bool relay_apply(struct relay *relay, const struct strait_config *cfg,
		const char *self_site)
{
	int found = config_site_index(cfg, self_site);
	size_t self = found >= 0 ? (size_t)found : 0;
	struct relay_peer **peers = NULL, **fresh = NULL;
	size_t npeers = 0, nfresh = 0;
	SSL_CTX *ctx = NULL;
	char *cluster = NULL, *self_name = NULL;
	bool ok = false;

	if (found < 0) {
		log_error("relay: site \"%s\" is not in the configuration", self_site);
		goto out;
	}
	ctx = tls_context_new(&cfg->tls, self_site);
	if (ctx == NULL)
		goto out;
	cluster = strdup(cfg->cluster);
	self_name = strdup(self_site);
	peers = calloc(cfg->n_sites, sizeof(*peers));
	fresh = calloc(cfg->n_sites, sizeof(*fresh));
	if (cluster == NULL || self_name == NULL || peers == NULL || fresh == NULL)
		goto oom;
	for (size_t i = 0; i < cfg->n_sites; i++) {
		const char *name = cfg->sites[i].name;
		struct relay_peer *p;

		if (i == self || config_site_is_witness(&cfg->sites[i]))
			continue;       /* a witness runs no relay: etcd alone speaks for it */
		p = relay_find_peer(relay, name);
		if (p == NULL) {
			p = relay_peer_new(relay, name);
			if (p == NULL)
				goto oom;
			fresh[nfresh++] = p;
		}
		peers[npeers++] = p;
	}

	/* Nothing fails from here on. */
	relay_apply_names(relay, ctx, cluster, self_name);
	ctx = NULL;
	cluster = NULL;
	self_name = NULL;
	relay_apply_self_addr(relay, cfg, self);
	relay_apply_peer_list(relay, peers, npeers);
	peers = NULL;
	for (size_t i = 0; i < cfg->n_sites; i++) {
		struct relay_peer *p;
		bool is_new = false;

		if (i == self || config_site_is_witness(&cfg->sites[i]))
			continue;
		p = relay_find_peer(relay, cfg->sites[i].name);
		for (size_t k = 0; k < nfresh && !is_new; k++)
			is_new = fresh[k] == p;
		relay_apply_peer(relay, cfg, i, p, is_new);
	}
	relay_apply_health(relay, cfg);
	relay_listener_update(relay);
	ok = true;
	goto out;
oom:
	log_error("relay: could not apply the configuration: out of memory");
	for (size_t k = 0; k < nfresh; k++)
		relay_peer_free(fresh[k]);
out:
	SSL_CTX_free(ctx);
	free(cluster);
	free(self_name);
	free(peers);
	free(fresh);
	return ok;
}

struct relay *relay_new(struct event_base *base, const struct strait_config *cfg,
		const char *self_site, const struct relay_callbacks *cb, void *arg)
{
	struct relay *relay = calloc(1, sizeof(*relay));
	bool ok;

	if (relay == NULL) {
		log_error("relay: out of memory");
		return NULL;
	}
	relay->base = base;
	if (cb != NULL)
		relay->cb = *cb;
	relay->arg = arg;
	relay->tick = event_new(base, -1, EV_PERSIST, relay_tick_cb, relay);
	relay->reaper = event_new(base, -1, 0, relay_reap_cb, relay);
	if (relay->tick == NULL || relay->reaper == NULL) {
		log_error("relay: could not create timers");
		goto fail;
	}
	relay->in_api++;
	ok = relay_apply(relay, cfg, self_site);
	relay->in_api--;
	if (!ok)
		goto fail;
	return relay;
fail:
	relay_free(relay);
	return NULL;
}

bool relay_reconfigure(struct relay *relay, const struct strait_config *cfg,
		const char *self_site)
{
	bool ok;

	relay->in_api++;
	ok = relay_apply(relay, cfg, self_site);
	relay->in_api--;
	return ok;
}

void relay_free(struct relay *relay)
{
	if (relay == NULL)
		return;
	while (relay->conns != NULL) {
		struct relay_conn *c = relay->conns;

		relay->conns = c->next;
		relay_conn_free(c);
	}
	for (size_t i = 0; i < relay->npeers; i++)
		relay_peer_free(relay->peers[i]);
	free(relay->peers);
	relay->nnotes = 0;          /* relay_free() calls nothing back */
	if (relay->reaper != NULL) {
		relay_reap_cb(-1, 0, relay);
		event_free(relay->reaper);
	}
	free(relay->notes);
	if (relay->tick != NULL)
		event_free(relay->tick);
	if (relay->listener != NULL)
		evconnlistener_free(relay->listener);
	SSL_CTX_free(relay->ctx);
	free(relay->cluster);
	free(relay->self);
	free(relay);
}

/* ------------------------------------------------------------------ */
/* Status */

static void relay_peer_counters(const struct relay_peer *p, struct relay_counters *out)
{
	*out = p->total;
	if (p->conn != NULL)
		relay_counters_add(out, &p->conn->n);
}

bool relay_peer_stats(const struct relay *relay, const char *peer, struct relay_stats *out)
{
	struct relay_peer *p = relay_find_peer(relay, peer);
	struct relay_counters n;

	if (p == NULL)
		return false;
	relay_peer_counters(p, &n);
	memset(out, 0, sizeof(*out));
	out->bytes_sent = n.bytes_sent;
	out->bytes_received = n.bytes_received;
	out->frames_sent = n.frames_sent;
	out->frames_received = n.frames_received;
	out->probes_sent = n.probes_sent;
	out->bytes_resent = n.bytes_resent;
	out->losing_packets = p->conn != NULL && p->conn->state == RELAY_STATE_UP &&
		loss_probe_losing(&p->conn->lp, relay_now_ms());
	out->connects = p->connects;
	out->failures = p->failures;
	out->up = p->conn != NULL && p->conn->state == RELAY_STATE_UP;
	out->output_pending = relay_output_pending(relay, peer);
	return true;
}

void relay_status_json(const struct relay *relay, struct json_out *j, const char *key)
{
	uint64_t now = relay_now_ms();

	json_object_begin(j, key);
	json_string(j, "cluster", relay->cluster);
	json_string(j, "site", relay->self);
	json_string(j, "listen", relay_needs_listener(relay) ? relay->self_addr_str : NULL);
	json_bool(j, "listening", relay->listener != NULL && !relay->listener_paused);
	json_string(j, "listen_error", relay->listen_error[0] ? relay->listen_error : NULL);
	json_uint(j, "epoch", relay->epoch);
	json_uint(j, "health_interval_ms", relay->health_ms);
	json_uint(j, "dead_after_ms", relay_dead_ms(relay));
	json_uint(j, "pending_connections", relay->npending);
	json_uint(j, "refused_connections", relay->refused);
	json_array_begin(j, "peers");
	for (size_t i = 0; i < relay->npeers; i++) {
		const struct relay_peer *p = relay->peers[i];
		const struct relay_conn *c = p->conn;
		struct relay_counters n;

		relay_peer_counters(p, &n);
		json_object_begin(j, NULL);
		json_string(j, "site", p->name);
		json_string(j, "direction", p->dials ? "dial" : "accept");
		json_string(j, "address", p->addr_str);
		json_string(j, "state", c != NULL ? relay_state_names[c->state] :
			p->dials ? "backoff" : "waiting");
		json_string(j, "remote", c != NULL ? c->remote : NULL);
		if (c != NULL && c->state == RELAY_STATE_UP)
			json_int(j, "connected_since", (int64_t)c->up_since);
		else
			json_null(j, "connected_since");
		json_uint(j, "bytes_sent", n.bytes_sent);
		json_uint(j, "bytes_received", n.bytes_received);
		json_uint(j, "frames_sent", n.frames_sent);
		json_uint(j, "frames_received", n.frames_received);
		json_bool(j, "losing_packets", c != NULL && c->state == RELAY_STATE_UP &&
			  loss_probe_losing(&c->lp, now));
		json_uint(j, "loss_probes_sent", n.probes_sent);
		json_uint(j, "bytes_resent", n.bytes_resent);
		json_uint(j, "output_pending", c != NULL && c->state == RELAY_STATE_UP ?
			evbuffer_get_length(bufferevent_get_output(c->bev)) : 0);
		json_uint(j, "connects", p->connects);
		json_uint(j, "reconnects", p->connects > 0 ? p->connects - 1 : 0);
		json_uint(j, "failures", p->failures);
		if (p->next_attempt_ms != 0 && c == NULL)
			json_uint(j, "next_attempt_in_ms",
				p->next_attempt_ms > now ? p->next_attempt_ms - now : 0);
		json_string(j, "last_error", p->last_error[0] ? p->last_error : NULL);
		if (p->last_error_at != 0)
			json_int(j, "last_error_at", (int64_t)p->last_error_at);
		else
			json_null(j, "last_error_at");
		json_object_end(j);
	}
	json_array_end(j);
	json_object_end(j);
}
