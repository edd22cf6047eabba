/*
 * metrics.c — Prometheus metrics and health checks over HTTP (see metrics.h).
 *
 * NOTES
 * The exposition format wants every sample of a family in one group under its
 * HELP and TYPE lines, while the daemon's collectors naturally walk objects
 * (a stream's lag, then its state, then the next stream). So the writer keeps
 * one text buffer per family and concatenates them at the end.
 *
 * The listener is libevent's evhttp on a socket bound here (so a bind error
 * is reported with its errno), limited to GET and HEAD, with bounded headers
 * and bodies and a timeout, so a client can neither hold memory nor crash the
 * daemon.
 */
#include "gateway/daemon/metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "common/json.h"
#include "common/log.h"
#include "config/config.h"

/* --------------------------------------------------------------- writer */

struct metrics_buf {
	char *data;
	size_t len;
	size_t cap;
};

struct metrics_family {
	char *name;
	char *help;
	enum metrics_type type;
	struct metrics_buf samples;
};

struct metrics_writer {
	struct metrics_family *fam;
	size_t n;
	size_t cap;
	bool failed;                 /* out of memory: sticky */
};

static void metrics_put(struct metrics_writer *w, struct metrics_buf *b, const char *s, size_t n)
{
	if (w->failed)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		char *grown;

		while (cap < b->len + n + 1)
			cap *= 2;
		grown = realloc(b->data, cap);
		if (!grown) {
			w->failed = true;
			return;
		}
		b->data = grown;
		b->cap = cap;
	}
	memcpy(b->data + b->len, s, n);
	b->len += n;
	b->data[b->len] = '\0';
}

static void metrics_puts(struct metrics_writer *w, struct metrics_buf *b, const char *s)
{
	metrics_put(w, b, s, strlen(s));
}

/* HELP text: backslash and newline escaped. Label values: also the double quote. */
static void metrics_put_escaped(struct metrics_writer *w, struct metrics_buf *b, const char *s,
		bool quote)
{
	for (; *s; s++) {
		if (*s == '\\')
			metrics_put(w, b, "\\\\", 2);
		else if (*s == '\n')
			metrics_put(w, b, "\\n", 2);
		else if (*s == '"' && quote)
			metrics_put(w, b, "\\\"", 2);
		else
			metrics_put(w, b, s, 1);
	}
}

struct metrics_writer *metrics_writer_new(void)
{
	return calloc(1, sizeof(struct metrics_writer));
}

void metrics_writer_free(struct metrics_writer *w)
{
	if (!w)
		return;
	for (size_t i = 0; i < w->n; i++) {
		free(w->fam[i].name);
		free(w->fam[i].help);
		free(w->fam[i].samples.data);
	}
	free(w->fam);
	free(w);
}

bool metrics_name_valid(const char *name)
{
	if (!name || !*name)
		return false;
	for (const char *p = name; *p; p++) {
		bool alpha = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_' ||
			     *p == ':';
		if (!alpha && !(p > name && *p >= '0' && *p <= '9'))
			return false;
	}
	return true;
}

/* Label names: like metric names without ':', and "__" is reserved. */
static bool metrics_label_name_valid(const char *name)
{
	return metrics_name_valid(name) && !strchr(name, ':') && strncmp(name, "__", 2) != 0;
}

static struct metrics_family *metrics_find(struct metrics_writer *w, const char *name)
{
	for (size_t i = 0; i < w->n; i++) {
		if (strcmp(w->fam[i].name, name) == 0)
			return &w->fam[i];
	}
	return NULL;
}

void metrics_declare(struct metrics_writer *w, const char *name, enum metrics_type type,
		const char *help)
{
	struct metrics_family *f;

	if (w->failed || metrics_find(w, name))
		return;
	if (!metrics_name_valid(name)) {
		log_error("metrics: invalid metric name \"%s\"", name ? name : "");
		return;
	}
	if (w->n == w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 32;
		struct metrics_family *grown = realloc(w->fam, cap * sizeof(*grown));

		if (!grown) {
			w->failed = true;
			return;
		}
		w->fam = grown;
		w->cap = cap;
	}
	f = &w->fam[w->n];
	memset(f, 0, sizeof(*f));
	f->name = strdup(name);
	f->help = strdup(help ? help : "");
	f->type = type;
	if (!f->name || !f->help) {
		free(f->name);
		free(f->help);
		w->failed = true;
		return;
	}
	w->n++;
}

/* Shortest text that reads back as v; NaN and infinities as the format spells them. */
static void metrics_format_value(double v, char *out, size_t len)
{
	if (isnan(v)) {
		snprintf(out, len, "NaN");
	} else if (isinf(v)) {
		snprintf(out, len, v > 0 ? "+Inf" : "-Inf");
	} else if (v == trunc(v) && fabs(v) < 1e17) {
		snprintf(out, len, "%.0f", v);
	} else {
		for (int prec = 15; prec <= 17; prec++) {
			snprintf(out, len, "%.*g", prec, v);
			if (strtod(out, NULL) == v)
				break;
		}
	}
}

void metrics_value(struct metrics_writer *w, const char *name, double value, ...)
{
	const char *labels[2 * METRICS_MAX_LABELS];
	struct metrics_family *f;
	size_t n = 0;
	char num[40];
	va_list ap;

	if (w->failed)
		return;
	f = metrics_find(w, name);
	if (!f) {
		log_error("metrics: sample of undeclared metric \"%s\"", name);
		return;
	}
	va_start(ap, value);
	for (;;) {
		const char *k = va_arg(ap, const char *), *v;

		if (!k)
			break;
		v = va_arg(ap, const char *);
		if (n == 2 * METRICS_MAX_LABELS || !metrics_label_name_valid(k)) {
			va_end(ap);
			log_error("metrics: sample of \"%s\" with too many labels or an invalid label "
				  "name \"%s\"", name, k);
			return;
		}
		for (size_t i = 0; i < n; i += 2) {
			if (strcmp(labels[i], k) == 0) {
				va_end(ap);
				log_error("metrics: sample of \"%s\" with label \"%s\" twice", name, k);
				return;
			}
		}
		labels[n++] = k;
		labels[n++] = v ? v : "";
	}
	va_end(ap);

	metrics_puts(w, &f->samples, name);
	for (size_t i = 0; i < n; i += 2) {
		metrics_puts(w, &f->samples, i == 0 ? "{" : ",");
		metrics_puts(w, &f->samples, labels[i]);
		metrics_puts(w, &f->samples, "=\"");
		metrics_put_escaped(w, &f->samples, labels[i + 1], true);
		metrics_puts(w, &f->samples, "\"");
	}
	if (n)
		metrics_puts(w, &f->samples, "}");
	metrics_format_value(value, num, sizeof(num));
	metrics_puts(w, &f->samples, " ");
	metrics_puts(w, &f->samples, num);
	metrics_puts(w, &f->samples, "\n");
}

char *metrics_writer_finish(struct metrics_writer *w, size_t *len)
{
	struct metrics_buf out = { 0 };
	char *text = NULL;

	for (size_t i = 0; i < w->n; i++) {
		const struct metrics_family *f = &w->fam[i];

		metrics_puts(w, &out, "# HELP ");
		metrics_puts(w, &out, f->name);
		metrics_puts(w, &out, " ");
		metrics_put_escaped(w, &out, f->help, false);
		metrics_puts(w, &out, "\n# TYPE ");
		metrics_puts(w, &out, f->name);
		metrics_puts(w, &out, f->type == METRICS_COUNTER ? " counter\n" : " gauge\n");
		if (f->samples.len)
			metrics_put(w, &out, f->samples.data, f->samples.len);
	}
	if (!w->failed) {
		text = out.data ? out.data : strdup("");
		if (len)
			*len = text ? out.len : 0;
	} else {
		free(out.data);
	}
	metrics_writer_free(w);
	return text;
}

/* --------------------------------------------------------------- checks */

bool metrics_parse_lag(const char *text, uint64_t *out)
{
	static const struct { const char *unit; uint64_t mult; } units[] = {
		{ "", 1 }, { "B", 1 },
		{ "kB", 1ull << 10 }, { "MB", 1ull << 20 }, { "GB", 1ull << 30 }, { "TB", 1ull << 40 },
		{ "KiB", 1ull << 10 }, { "MiB", 1ull << 20 }, { "GiB", 1ull << 30 },
		{ "TiB", 1ull << 40 },
	};
	uint64_t v = 0;
	const char *p = text;

	if (!text || *p < '0' || *p > '9')
		return false;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (v > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
			return false;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(p, units[i].unit) == 0) {
			if (v > UINT64_MAX / units[i].mult)
				return false;
			*out = v * units[i].mult;
			return true;
		}
	}
	return false;
}

/* The lag threshold of a /replica query: 1 given, 0 none, -1 malformed. */
static int metrics_query_lag(const char *query, uint64_t *out)
{
	struct evkeyvalq params;
	const char *v;
	int ret = 0;

	if (!query || !*query)
		return 0;
	TAILQ_INIT(&params);
	if (evhttp_parse_query_str(query, &params) < 0) {
		ret = -1;
		goto out;
	}
	v = evhttp_find_header(&params, "lag");
	if (v)
		ret = metrics_parse_lag(v, out) ? 1 : -1;
out:
	evhttp_clear_headers(&params);
	return ret;
}

int metrics_check(const char *path, const char *query, const struct metrics_health *h,
		struct json_out *body)
{
	const char *reason = NULL;
	char why[160];
	uint64_t max_lag = 0;
	int code = 200, has_lag = 0;
	bool known = true;

	if (strcmp(path, "/health") == 0) {
		if (!h->working)
			reason = h->not_working ? h->not_working : "the daemon is not working";
	} else if (strcmp(path, "/primary") == 0) {
		if (!h->working) {
			reason = h->not_working ? h->not_working : "the daemon is not working";
		} else if (strcmp(h->role, "primary") != 0) {
			snprintf(why, sizeof(why), "this site is %s, not primary", h->role);
			reason = why;
		}
	} else if (strcmp(path, "/replica") == 0) {
		has_lag = metrics_query_lag(query, &max_lag);
		if (has_lag < 0) {
			code = 400;
			reason = "invalid lag: give bytes, or a number with B, kB, MB, GB or TB";
		} else if (!h->working) {
			reason = h->not_working ? h->not_working : "the daemon is not working";
		} else if (strcmp(h->role, "replica") != 0) {
			snprintf(why, sizeof(why), "this site is %s, not replica", h->role);
			reason = why;
		} else if (h->streams_in_stopped > 0) {
			snprintf(why, sizeof(why), "%zu of the %zu streams this site receives %s stopped",
				 h->streams_in_stopped, h->streams_in,
				 h->streams_in_stopped == 1 ? "is" : "are");
			reason = why;
		} else if (has_lag > 0 && h->lag_bytes > max_lag) {
			snprintf(why, sizeof(why), "lag of %" PRIu64 " bytes is over %" PRIu64,
				 h->lag_bytes, max_lag);
			reason = why;
		}
	} else {
		known = false;
		code = 404;
	}
	if (reason && code == 200)
		code = 503;

	json_object_begin(body, NULL);
	if (!known) {
		json_string(body, "error", "not found");
		json_string(body, "paths", "/metrics /health /primary /replica");
		json_object_end(body);
		return code;
	}
	json_string(body, "site", h->site);
	json_string(body, "role", h->role);
	json_uint(body, "epoch", h->epoch);
	json_bool(body, "working", h->working);
	json_uint(body, "lag_bytes", h->lag_bytes);
	json_double(body, "lag_seconds", h->lag_seconds);
	json_uint(body, "streams_in", h->streams_in);
	json_uint(body, "streams_in_stopped", h->streams_in_stopped);
	if (has_lag > 0)
		json_uint(body, "max_lag_bytes", max_lag);
	json_string(body, "reason", reason);
	json_object_end(body);
	return code;
}

/* ------------------------------------------------------------- listener */

struct metrics_server {
	struct evhttp *http;
	struct metrics_callbacks cb;
	void *arg;
};

static const char *metrics_reason_phrase(int code)
{
	switch (code) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 503: return "Service Unavailable";
	default: return "Internal Server Error";
	}
}

static void metrics_reply(struct evhttp_request *req, int code, const char *content_type,
		const char *body, size_t len)
{
	struct evkeyvalq *hdrs = evhttp_request_get_output_headers(req);
	struct evbuffer *buf = evbuffer_new();
	bool head = evhttp_request_get_command(req) == EVHTTP_REQ_HEAD;

	if (!buf || evbuffer_add(buf, body, head ? 0 : len) < 0) {
		if (buf)
			evbuffer_free(buf);
		evhttp_send_error(req, 500, NULL);
		return;
	}
	evhttp_add_header(hdrs, "Content-Type", content_type);
	evhttp_add_header(hdrs, "Cache-Control", "no-store");
	if (head) {
		char n[32];

		snprintf(n, sizeof(n), "%zu", len);
		evhttp_add_header(hdrs, "Content-Length", n);
	}
	evhttp_send_reply(req, code, metrics_reason_phrase(code), buf);
	evbuffer_free(buf);
}

static void metrics_serve_metrics(struct metrics_server *m, struct evhttp_request *req)
{
	struct metrics_writer *w = metrics_writer_new();
	char *text;
	size_t len = 0;

	if (!w) {
		evhttp_send_error(req, 500, NULL);
		return;
	}
	m->cb.collect(m->arg, w);
	text = metrics_writer_finish(w, &len);
	if (!text) {
		log_error("metrics: out of memory rendering metrics");
		evhttp_send_error(req, 500, NULL);
		return;
	}
	metrics_reply(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
	free(text);
}

static void metrics_serve_check(struct metrics_server *m, struct evhttp_request *req,
		const char *path, const char *query)
{
	struct metrics_health h = { .site = "", .role = "unknown" };
	struct json_out j;
	char *doc;
	size_t len = 0;
	int code;

	m->cb.health(m->arg, &h);
	json_init(&j);
	code = metrics_check(path, query, &h, &j);
	/* end with a newline, as for a terminal */
	doc = json_finish_line(&j, &len);
	if (!doc) {
		evhttp_send_error(req, 500, NULL);
		return;
	}
	metrics_reply(req, code, "application/json", doc, len);
	free(doc);
}

static void metrics_request_cb(struct evhttp_request *req, void *arg)
{
	struct metrics_server *m = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);

	if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
		evhttp_send_error(req, 405, NULL);
		return;
	}
	if (!path || !*path) {
		evhttp_send_error(req, 400, NULL);
		return;
	}
	if (strcmp(path, "/metrics") == 0)
		metrics_serve_metrics(m, req);
	else
		metrics_serve_check(m, req, path, evhttp_uri_get_query(uri));
}

/* Binds one address; returns the listening socket or -1 with errno set. */
static int metrics_bind(const struct addrinfo *ai)
{
	int fd, one = 1, saved;

	fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
	if (fd < 0)
		return -1;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 64) < 0) {
		saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	return fd;
}

struct metrics_server *metrics_start(struct event_base *base, const char *listen,
		const struct metrics_callbacks *cb, void *arg)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct config_endpoint ep = { 0 };
	struct metrics_server *m = NULL;
	struct addrinfo *res = NULL;
	char port[8];
	int rc, bound = 0;

	if (!config_parse_endpoint(listen, &ep)) {
		log_error("could not listen for metrics on \"%s\": expected host:port", listen);
		goto fail;
	}
	snprintf(port, sizeof(port), "%u", (unsigned)ep.port);
	rc = getaddrinfo(ep.host, port, &hints, &res);
	if (rc != 0) {
		log_error("could not listen for metrics on \"%s\": %s", listen, gai_strerror(rc));
		goto fail;
	}
	m = calloc(1, sizeof(*m));
	if (!m || !(m->http = evhttp_new(base))) {
		log_error("could not listen for metrics on \"%s\": out of memory", listen);
		goto fail;
	}
	m->cb = *cb;
	m->arg = arg;
	/* every method reaches the callback, which answers 405 to all but GET and HEAD */
	evhttp_set_allowed_methods(m->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
				   EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS |
				   EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
	evhttp_set_max_headers_size(m->http, METRICS_MAX_HEADERS);
	evhttp_set_max_body_size(m->http, METRICS_MAX_BODY);
	evhttp_set_timeout(m->http, METRICS_TIMEOUT_S);
	evhttp_set_gencb(m->http, metrics_request_cb, m);
	for (const struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		int fd = metrics_bind(ai);

		/* a name with an address of a family this host lacks ("localhost" and ::1) */
		if (fd < 0 && (errno == EAFNOSUPPORT || errno == EADDRNOTAVAIL) &&
		    (bound > 0 || ai->ai_next))
			continue;
		if (fd < 0) {
			log_error("could not listen for metrics on \"%s\": %s", listen, strerror(errno));
			goto fail;
		}
		if (!evhttp_accept_socket_with_handle(m->http, fd)) {
			close(fd);
			log_error("could not listen for metrics on \"%s\": out of memory", listen);
			goto fail;
		}
		bound++;
	}
	if (!bound) {
		log_error("could not listen for metrics on \"%s\": no address", listen);
		goto fail;
	}
	log_info("serving metrics and health checks on %s", listen);
	freeaddrinfo(res);
	free(ep.host);
	return m;
fail:
	if (res)
		freeaddrinfo(res);
	free(ep.host);
	metrics_stop(m);
	return NULL;
}

void metrics_stop(struct metrics_server *m)
{
	if (!m)
		return;
	if (m->http)
		evhttp_free(m->http);
	free(m);
}
