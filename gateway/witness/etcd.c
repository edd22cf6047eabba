/*
 * etcd.c — the asynchronous etcd v3 client (see etcd.h).
 *
 * NOTES
 * A request is a small state machine moved by one zero-delay event of its
 * own (step): REQ_NEXT starts the next attempt, REQ_SENT waits for the
 * HTTP reply or the attempt's timer, REQ_ANSWERED judges what came back.
 * libevent's HTTP callbacks only record the outcome and activate step:
 * libevent still uses the connection and the request after its callback
 * returns, so the connection is freed, and the caller's done() called,
 * only from step, outside any HTTP callback. That is also what lets the
 * caller free the whole client from inside done(). The timer frees the
 * connection itself (libevent then drops the request without a callback).
 *
 * Failed attempts are collected as "endpoint: why" in the request, so the
 * final error says what each endpoint did, and are logged at debug level
 * as they happen; the request's outcome is the caller's to log.
 *
 * Endpoint hosts are IP addresses (etcd.h, LIMITS says why).
 *
 * A failed connect reaches the callback with errno already overwritten by
 * libevent's clean-up, so it reads "could not connect" without a reason;
 * errors that libevent reports through the error callback keep theirs.
 */
#include "gateway/witness/etcd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>

#include "common/log.h"

#define ETCD_DEFAULT_PORT 2379
#define ETCD_MAX_HEADER_BYTES 65536
#define ETCD_URL_MAX 72              /* "http://[" + an IPv6 address + "]:65535" */

struct etcd_endpoint {
	char url[ETCD_URL_MAX];      /* "http://host:port", normalised */
	char host[INET6_ADDRSTRLEN]; /* the address, without brackets */
	const char *host_header;     /* "host:port", within url */
	uint16_t port;
};

enum etcd_req_state {
	REQ_NEXT,                    /* step starts the next attempt */
	REQ_SENT,                    /* an attempt is under way */
	REQ_ANSWERED,                /* the attempt ended; step judges it */
};

struct etcd_req {
	TAILQ_ENTRY(etcd_req) link;
	struct etcd *e;
	enum etcd_call call;
	char *body;
	size_t body_len;
	etcd_done_fn done;
	void *arg;
	enum etcd_req_state state;
	size_t first;                /* the endpoint of the first attempt */
	size_t tries;                /* attempts started */
	size_t ep;                   /* the current attempt's endpoint */
	struct evhttp_connection *conn;
	struct event *timer;         /* the attempt's timeout */
	struct event *step;
	/* the current attempt's outcome, as the HTTP callbacks saw it */
	int status;                  /* 0: no HTTP reply */
	char reason[64];             /* the status line's reason phrase */
	char *reply;
	size_t reply_len;
	char why[160];               /* without a reply: what went wrong */
	/* the failed attempts: "endpoint: why; endpoint: why" */
	char tried[1024];
	char error[1536];            /* the result's error */
	char url[ETCD_URL_MAX];      /* the result's endpoint */
};

TAILQ_HEAD(etcd_reqs, etcd_req);

struct etcd {
	struct event_base *base;
	struct etcd_endpoint *eps;
	size_t n_eps;
	size_t current;              /* the endpoint that answered last */
	int attempt_timeout_ms;
	struct etcd_reqs reqs;
	size_t n_reqs;
};

/* ------------------------------------------------------------ endpoints */

static bool etcd_endpoint_bad(char *err, size_t errlen, const char *url, const char *why)
{
	snprintf(err, errlen, "etcd endpoint \"%s\": %s", url, why);
	return false;
}

/* ":port" (default 2379), an optional "/", nothing else. */
static bool etcd_parse_port(const char *p, const char *url, uint16_t *port, char *err,
		size_t errlen)
{
	unsigned long n = 0;
	size_t digits;

	*port = ETCD_DEFAULT_PORT;
	if (*p == ':') {
		p++;
		digits = strspn(p, "0123456789");
		if (digits == 0 || digits > 5)
			return etcd_endpoint_bad(err, errlen, url, "bad port");
		for (size_t i = 0; i < digits; i++)
			n = n * 10 + (unsigned long)(p[i] - '0');
		if (n == 0 || n > 65535)
			return etcd_endpoint_bad(err, errlen, url, "port out of range");
		*port = (uint16_t)n;
		p += digits;
	}
	if (*p == '/')
		p++;
	if (*p)
		return etcd_endpoint_bad(err, errlen, url, "nothing may follow host:port but \"/\"");
	return true;
}

static bool etcd_parse_endpoint(const char *url, struct etcd_endpoint *ep, char *err,
		size_t errlen)
{
	const char *host, *end;
	unsigned char addr[16];
	bool v6;
	size_t n;

	if (strncmp(url, "https://", 8) == 0)
		return etcd_endpoint_bad(err, errlen, url, "https is not supported yet (use http://)");
	if (strncmp(url, "http://", 7) != 0)
		return etcd_endpoint_bad(err, errlen, url, "not an http://host:port URL");
	host = url + 7;
	v6 = *host == '[';
	if (v6) {
		host++;
		end = strchr(host, ']');
		if (!end)
			return etcd_endpoint_bad(err, errlen, url, "no \"]\" after the IPv6 address");
	} else {
		end = host + strcspn(host, ":/");
	}
	n = (size_t)(end - host);
	if (n == 0 || n >= sizeof(ep->host))
		return etcd_endpoint_bad(err, errlen, url, n ? "bad host" : "no host");
	memcpy(ep->host, host, n);
	ep->host[n] = '\0';
	if (inet_pton(v6 ? AF_INET6 : AF_INET, ep->host, addr) != 1)
		return etcd_endpoint_bad(err, errlen, url, v6 ? "not an IPv6 address" :
					 "the host must be an IP address (names are not resolved)");
	if (!etcd_parse_port(end + v6, url, &ep->port, err, errlen))
		return false;
	snprintf(ep->url, sizeof(ep->url), "http://%s%s%s:%u", v6 ? "[" : "", ep->host,
		 v6 ? "]" : "", (unsigned)ep->port);
	ep->host_header = ep->url + 7;
	return true;
}

struct etcd *etcd_new(struct event_base *base, const char *const *endpoints, size_t n,
		int attempt_timeout_ms, char *err, size_t errlen)
{
	struct etcd *e;

	if (n == 0 || n > ETCD_MAX_ENDPOINTS) {
		snprintf(err, errlen, "etcd needs 1 to %d endpoints, not %zu", ETCD_MAX_ENDPOINTS, n);
		return NULL;
	}
	if (attempt_timeout_ms <= 0) {
		snprintf(err, errlen, "etcd attempt timeout must be positive, not %d ms",
			 attempt_timeout_ms);
		return NULL;
	}
	e = calloc(1, sizeof(*e));
	if (!e || !(e->eps = calloc(n, sizeof(*e->eps)))) {
		free(e);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		if (!etcd_parse_endpoint(endpoints[i], &e->eps[i], err, errlen)) {
			free(e->eps);
			free(e);
			return NULL;
		}
	}
	e->base = base;
	e->n_eps = n;
	e->attempt_timeout_ms = attempt_timeout_ms;
	TAILQ_INIT(&e->reqs);
	return e;
}

const char *etcd_current_endpoint(const struct etcd *e)
{
	return e->eps[e->current].url;
}

size_t etcd_pending(const struct etcd *e)
{
	return e->n_reqs;
}

/* ------------------------------------------------------------- requests */

static void etcd_req_drop_conn(struct etcd_req *q)
{
	if (q->conn) {
		evhttp_connection_free(q->conn);
		q->conn = NULL;
	}
}

/* Frees the request; it must already be out of the client's list. */
static void etcd_req_free(struct etcd_req *q)
{
	etcd_req_drop_conn(q);
	if (q->timer)
		event_free(q->timer);
	if (q->step)
		event_free(q->step);
	free(q->body);
	free(q->reply);
	free(q);
}

void etcd_free(struct etcd *e)
{
	struct etcd_req *q;

	if (!e)
		return;
	while ((q = TAILQ_FIRST(&e->reqs)) != NULL) {
		TAILQ_REMOVE(&e->reqs, q, link);
		etcd_req_free(q);
	}
	free(e->eps);
	free(e);
}

/* Records why the current attempt failed, for the final error. */
static void etcd_req_note(struct etcd_req *q, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void etcd_req_note(struct etcd_req *q, const char *fmt, ...)
{
	const char *url = q->e->eps[q->ep].url;
	size_t used = strlen(q->tried);
	char why[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	log_debug("etcd %s at %s: %s", etcd_proto_call_name(q->call), url, why);
	snprintf(q->tried + used, sizeof(q->tried) - used, "%s%s: %s", used ? "; " : "", url, why);
}

/* Calls done() with res and frees the request; q is gone when this returns. */
static void etcd_req_finish(struct etcd_req *q, struct etcd_result *res)
{
	struct etcd *e = q->e;

	TAILQ_REMOVE(&e->reqs, q, link);
	e->n_reqs--;
	/* e may be freed inside done(): nothing below touches it */
	q->done(q->arg, res);
	etcd_reply_clear(&res->reply);
	etcd_req_free(q);
}

static void etcd_req_fail(struct etcd_req *q, const struct etcd_result *answered, const char *fmt,
		...) __attribute__((format(printf, 3, 4)));

/* Ends the request with ok=false; answered: the endpoint's status and code, if one answered. */
static void etcd_req_fail(struct etcd_req *q, const struct etcd_result *answered, const char *fmt,
		...)
{
	struct etcd_result res;
	va_list ap;

	memset(&res, 0, sizeof(res));
	if (answered)
		res = *answered;
	va_start(ap, fmt);
	vsnprintf(q->error, sizeof(q->error), fmt, ap);
	va_end(ap);
	res.ok = false;
	res.error = q->error;
	etcd_req_finish(q, &res);
}

/* --------------------------------------------------------- HTTP callbacks */

/* errno after a network failure, when it is one (libevent leaves it set, but not always). */
static bool etcd_net_errno(int err)
{
	switch (err) {
	case ECONNREFUSED:
	case ECONNRESET:
	case ECONNABORTED:
	case EHOSTUNREACH:
	case ENETUNREACH:
	case ENETDOWN:
	case EHOSTDOWN:
	case ETIMEDOUT:
	case EPIPE:
	case EADDRNOTAVAIL:
		return true;
	default:
		return false;
	}
}

static void etcd_req_set_why(struct etcd_req *q, const char *what, int err)
{
	if (etcd_net_errno(err))
		snprintf(q->why, sizeof(q->why), "%s: %s", what, strerror(err));
	else
		snprintf(q->why, sizeof(q->why), "%s", what);
}

/* libevent's word on a failed exchange; the done callback follows with no request. */
static void etcd_http_error_cb(enum evhttp_request_error error, void *arg)
{
	struct etcd_req *q = arg;
	int err = errno;

	switch (error) {
	case EVREQ_HTTP_TIMEOUT:
		etcd_req_set_why(q, "timed out", 0);
		break;
	case EVREQ_HTTP_EOF:
		etcd_req_set_why(q, "connection closed", err);
		break;
	case EVREQ_HTTP_INVALID_HEADER:
		etcd_req_set_why(q, "malformed HTTP reply", 0);
		break;
	case EVREQ_HTTP_DATA_TOO_LONG:
		snprintf(q->why, sizeof(q->why), "reply over %u bytes", ETCD_MAX_REPLY_BYTES);
		break;
	case EVREQ_HTTP_BUFFER_ERROR:
	case EVREQ_HTTP_REQUEST_CANCEL:
	default:
		etcd_req_set_why(q, "connection error", err);
		break;
	}
}

static void etcd_http_keep_reply(struct etcd_req *q, struct evhttp_request *req)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	const char *line = evhttp_request_get_response_code_line(req);

	q->reply_len = evbuffer_get_length(in);
	q->reply = malloc(q->reply_len + 1);
	if (!q->reply) {
		snprintf(q->why, sizeof(q->why), "out of memory for a reply of %zu bytes", q->reply_len);
		return;
	}
	evbuffer_remove(in, q->reply, q->reply_len);
	q->reply[q->reply_len] = '\0';
	q->status = evhttp_request_get_response_code(req);
	snprintf(q->reason, sizeof(q->reason), "%s", line ? line : "");
}

static void etcd_http_done_cb(struct evhttp_request *req, void *arg)
{
	struct etcd_req *q = arg;
	int err = errno;

	if (q->state != REQ_SENT)
		return;
	event_del(q->timer);
	if (req && evhttp_request_get_response_code(req) > 0)
		etcd_http_keep_reply(q, req);
	else if (!q->why[0])
		/* a connection that failed before the request went out: no error callback */
		etcd_req_set_why(q, "could not connect", err);
	q->state = REQ_ANSWERED;
	event_active(q->step, EV_TIMEOUT, 0);
}

static void etcd_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct etcd_req *q = arg;

	(void)fd;
	(void)what;
	if (q->state != REQ_SENT)
		return;
	/* not inside an HTTP callback: freeing the connection drops its request silently */
	etcd_req_drop_conn(q);
	etcd_req_note(q, "no answer within %d ms", q->e->attempt_timeout_ms);
	q->state = REQ_NEXT;
	event_active(q->step, EV_TIMEOUT, 0);
}

/* ------------------------------------------------------------- attempts */

static bool etcd_req_prepare(struct etcd_req *q, struct evhttp_request *req)
{
	const struct etcd_endpoint *ep = &q->e->eps[q->ep];
	struct evkeyvalq *headers = evhttp_request_get_output_headers(req);

	evhttp_connection_set_max_body_size(q->conn, ETCD_MAX_REPLY_BYTES);
	evhttp_connection_set_max_headers_size(q->conn, ETCD_MAX_HEADER_BYTES);
	evhttp_request_set_error_cb(req, etcd_http_error_cb);
	return evhttp_add_header(headers, "Host", ep->host_header) == 0 &&
	       evhttp_add_header(headers, "Content-Type", "application/json") == 0 &&
	       evhttp_add_header(headers, "Connection", "close") == 0 &&
	       evbuffer_add(evhttp_request_get_output_buffer(req), q->body, q->body_len) == 0;
}

/* Starts an attempt at endpoint q->ep; false (noted) when it could not. */
static bool etcd_req_send(struct etcd_req *q)
{
	struct etcd *e = q->e;
	const struct etcd_endpoint *ep = &e->eps[q->ep];
	struct timeval tv = { e->attempt_timeout_ms / 1000, (e->attempt_timeout_ms % 1000) * 1000 };
	struct evhttp_request *req = NULL;

	q->status = 0;
	q->why[0] = q->reason[0] = '\0';
	free(q->reply);
	q->reply = NULL;
	q->reply_len = 0;
	q->conn = evhttp_connection_base_new(e->base, NULL, ep->host, ep->port);
	if (q->conn)
		req = evhttp_request_new(etcd_http_done_cb, q);
	if (!req || !etcd_req_prepare(q, req)) {
		if (req)
			evhttp_request_free(req);
		etcd_req_drop_conn(q);
		etcd_req_note(q, "out of memory");
		return false;
	}
	q->state = REQ_SENT;
	evtimer_add(q->timer, &tv);
	/* a connection that fails at once calls back before this returns (then step is active) */
	if (evhttp_make_request(q->conn, req, EVHTTP_REQ_POST, etcd_proto_path(q->call)) != 0) {
		event_del(q->timer);
		etcd_req_drop_conn(q);
		q->state = REQ_NEXT;
		etcd_req_note(q, "could not send the request");
		return false;
	}
	return true;
}

/* The next endpoint not tried yet; when every one has been, the request fails. */
static void etcd_req_advance(struct etcd_req *q)
{
	struct etcd *e = q->e;

	if (q->tries == 0)
		q->first = e->current;
	while (q->tries < e->n_eps) {
		q->ep = (q->first + q->tries) % e->n_eps;
		q->tries++;
		if (etcd_req_send(q))
			return;
	}
	etcd_req_fail(q, NULL, "etcd %s failed at every endpoint: %s",
		      etcd_proto_call_name(q->call), q->tried);
}

/* An error reply's message: etcd's, else the status line's reason, else the status. */
static void etcd_reply_message(const struct etcd_req *q, char *msg, size_t msglen, int *code)
{
	if (q->reply && etcd_proto_parse_error(q->reply, q->reply_len, msg, msglen, code))
		return;
	*code = 0;
	snprintf(msg, msglen, "%s", q->reason[0] ? q->reason : "(no message)");
}

/* A reply of 2xx or 4xx: the request's outcome. */
static void etcd_req_answered(struct etcd_req *q)
{
	struct etcd_result res;
	char msg[512];

	memset(&res, 0, sizeof(res));
	snprintf(q->url, sizeof(q->url), "%s", q->e->eps[q->ep].url);
	res.endpoint = q->url;
	res.http_status = q->status;
	q->e->current = q->ep;
	if (q->status >= 200 && q->status < 300) {
		if (etcd_proto_parse(q->call, q->reply, q->reply_len, &res.reply, msg, sizeof(msg))) {
			res.ok = true;
			etcd_req_finish(q, &res);
			return;
		}
		/* a refusal the gateway sent with 200 (a streamed call's) has a code */
		if (!etcd_proto_parse_error(q->reply, q->reply_len, q->why, sizeof(q->why),
					    &res.code))
			res.code = 0;
		etcd_req_fail(q, &res, "%s (%s, HTTP %d)", msg, q->url, q->status);
		return;
	}
	etcd_reply_message(q, msg, sizeof(msg), &res.code);
	etcd_req_fail(q, &res, "etcd %s refused: %s (%s, HTTP %d)", etcd_proto_call_name(q->call),
		      msg, q->url, q->status);
}

/*
 * An attempt's end, judged: true when the request is over (q is gone),
 * false when the next endpoint should be tried.
 */
static bool etcd_req_judge(struct etcd_req *q)
{
	char msg[512];
	int code;

	if (q->status == 0) {
		etcd_req_note(q, "%s", q->why[0] ? q->why : "no reply");
		return false;
	}
	if (q->status >= 500) {
		etcd_reply_message(q, msg, sizeof(msg), &code);
		etcd_req_note(q, "HTTP %d: %s", q->status, msg);
		return false;
	}
	etcd_req_answered(q);
	return true;
}

static void etcd_step_cb(evutil_socket_t fd, short what, void *arg)
{
	struct etcd_req *q = arg;

	(void)fd;
	(void)what;
	if (q->state == REQ_ANSWERED) {
		etcd_req_drop_conn(q);       /* outside libevent's HTTP code now */
		q->state = REQ_NEXT;
		if (etcd_req_judge(q))
			return;
	}
	if (q->state == REQ_NEXT)
		etcd_req_advance(q);
}

/* A request for body (NULL: out of memory), first attempt from the loop. */
static bool etcd_submit(struct etcd *e, enum etcd_call call, char *body, size_t len,
		etcd_done_fn done, void *arg)
{
	struct etcd_req *q;

	if (!body)
		return false;
	q = calloc(1, sizeof(*q));
	if (!q) {
		free(body);
		return false;
	}
	q->e = e;
	q->call = call;
	q->body = body;
	q->body_len = len;
	q->done = done;
	q->arg = arg;
	q->state = REQ_NEXT;
	q->timer = evtimer_new(e->base, etcd_timeout_cb, q);
	q->step = event_new(e->base, -1, 0, etcd_step_cb, q);
	if (!q->timer || !q->step) {
		etcd_req_free(q);
		return false;
	}
	TAILQ_INSERT_TAIL(&e->reqs, q, link);
	e->n_reqs++;
	event_active(q->step, EV_TIMEOUT, 0);
	return true;
}

/* ----------------------------------------------------------- operations */

bool etcd_lease_grant(struct etcd *e, int64_t ttl_s, etcd_done_fn done, void *arg)
{
	size_t len = 0;
	char *body = etcd_proto_grant(ttl_s, &len);

	return etcd_submit(e, ETCD_CALL_GRANT, body, len, done, arg);
}

bool etcd_lease_keepalive(struct etcd *e, int64_t lease_id, etcd_done_fn done, void *arg)
{
	size_t len = 0;
	char *body = etcd_proto_lease(lease_id, &len);

	return etcd_submit(e, ETCD_CALL_KEEPALIVE, body, len, done, arg);
}

bool etcd_lease_revoke(struct etcd *e, int64_t lease_id, etcd_done_fn done, void *arg)
{
	size_t len = 0;
	char *body = etcd_proto_lease(lease_id, &len);

	return etcd_submit(e, ETCD_CALL_REVOKE, body, len, done, arg);
}

bool etcd_get(struct etcd *e, const char *key, bool prefix, etcd_done_fn done, void *arg)
{
	size_t len = 0;
	char *body = etcd_proto_range(key, prefix, &len);

	return etcd_submit(e, ETCD_CALL_RANGE, body, len, done, arg);
}

bool etcd_put(struct etcd *e, const char *key, const void *value, size_t value_len,
		int64_t lease, etcd_done_fn done, void *arg)
{
	size_t len = 0;
	char *body = etcd_proto_put(key, value, value_len, lease, &len);

	return etcd_submit(e, ETCD_CALL_PUT, body, len, done, arg);
}

bool etcd_delete(struct etcd *e, const char *key, bool prefix, etcd_done_fn done, void *arg)
{
	size_t len = 0;
	char *body = etcd_proto_delete(key, prefix, &len);

	return etcd_submit(e, ETCD_CALL_DELETE, body, len, done, arg);
}

bool etcd_txn(struct etcd *e, const struct etcd_txn *txn, etcd_done_fn done, void *arg)
{
	size_t len = 0;
	char *body = etcd_proto_txn(txn, &len);

	return etcd_submit(e, ETCD_CALL_TXN, body, len, done, arg);
}

bool etcd_status(struct etcd *e, etcd_done_fn done, void *arg)
{
	size_t len = 0;
	char *body = etcd_proto_empty(&len);

	return etcd_submit(e, ETCD_CALL_STATUS, body, len, done, arg);
}

bool etcd_members(struct etcd *e, etcd_done_fn done, void *arg)
{
	size_t len = 0;
	char *body = etcd_proto_empty(&len);

	return etcd_submit(e, ETCD_CALL_MEMBERS, body, len, done, arg);
}
