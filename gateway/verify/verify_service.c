/*
 * verify_service.c — the verify command, periodic verifies and their last
 * results (see verify_service.h).
 */
#include "gateway/verify/verify_service.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "common/json.h"
#include "common/log.h"
#include "config/config.h"
#include "gateway/daemon/control.h"
#include "gateway/stream/stream.h"
#include "gateway/verify/verify_job.h"

#define VS_TICK_S 5
#define VS_MAX_NAMES 32

/*
 * A stream's last result at one destination (its strings owned here); the
 * entry of a stream without a destination (to NULL) only keeps when its
 * last verify started, for the periodic schedule.
 */
struct vs_last {
	struct verify_job_stream r;
	time_t attempted;            /* last start, for the periodic schedule */
};

struct verify_service {
	struct event_base *base;
	const struct strait_config *cfg;
	struct streams *streams;
	struct verify_job *job;
	struct verify_job *finished; /* freed from the reap event */
	struct control_request *req; /* the command waiting for the job, or NULL */
	bool req_json;
	bool periodic;               /* the job was started by the schedule */
	struct vs_last *last;
	size_t nlast;
	struct event *tick;
	struct event *reap;
	time_t since;                /* periodic verifies count from here at first */
};

static bool vs_same_to(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static struct vs_last *vs_last_of(struct verify_service *vs, const char *stream, const char *to,
		bool create)
{
	struct vs_last *grown;

	for (size_t i = 0; i < vs->nlast; i++)
		if (strcmp(vs->last[i].r.stream, stream) == 0 && vs_same_to(vs->last[i].r.to, to))
			return &vs->last[i];
	if (!create)
		return NULL;
	grown = realloc(vs->last, (vs->nlast + 1) * sizeof(*grown));
	if (!grown)
		return NULL;
	vs->last = grown;
	memset(&vs->last[vs->nlast], 0, sizeof(vs->last[0]));
	if (!(vs->last[vs->nlast].r.stream = strdup(stream)))
		return NULL;
	if (to && !(vs->last[vs->nlast].r.to = strdup(to))) {
		free(vs->last[vs->nlast].r.stream);
		return NULL;
	}
	return &vs->last[vs->nlast++];
}

static void vs_reap_cb(evutil_socket_t fd, short what, void *arg)
{
	struct verify_service *vs = arg;

	(void)fd;
	(void)what;
	verify_job_free(vs->finished);
	vs->finished = NULL;
}

static void vs_done(void *arg, const struct verify_job_outcome *o)
{
	struct verify_service *vs = arg;

	for (size_t i = 0; i < o->nstreams; i++) {
		const struct verify_job_stream *s = &o->streams[i];
		struct vs_last *l = s->stream && s->to ? vs_last_of(vs, s->stream, s->to, true) : NULL;
		char *own_stream, *own_to;

		if (!l)
			continue;
		own_stream = l->r.stream;
		own_to = l->r.to;
		free(l->r.error);
		l->r = *s;
		l->r.stream = own_stream;
		l->r.to = own_to;
		l->r.error = s->error ? strdup(s->error) : NULL;
		if (s->ok && !s->equal)
			log_warning("verify: stream \"%s\" differs from its target at site \"%s\": %" PRIu64
				    " key%s (straitctl verify --stream %s names them)", s->stream, s->to,
				    s->differences, s->differences == 1 ? "" : "s", s->stream);
		else if (!s->ok)
			log_warning("verify: stream \"%s\" to site \"%s\" could not be compared: %s",
				    s->stream, s->to, s->error ? s->error : "failed");
	}
	if (vs->req) {
		const char *body = vs->req_json ? o->json : o->text;

		control_reply(vs->req, o->ok && o->equal, body ? body : "out of memory\n");
		vs->req = NULL;
	}
	vs->finished = vs->job;
	vs->job = NULL;
	event_active(vs->reap, EV_TIMEOUT, 0);
}

static bool vs_start(struct verify_service *vs, const struct verify_job_request *rq, char *err,
		     size_t errlen)
{
	if (!vs->streams) {
		snprintf(err, errlen, "this site runs no streams now");
		return false;
	}
	vs->job = verify_job_start(vs->base, vs->streams, rq, vs_done, vs, err, errlen);
	if (!vs->job)
		return false;
	for (size_t i = 0; i < rq->nstreams; i++) {
		struct vs_last *l = vs_last_of(vs, rq->streams[i], NULL, true);

		if (l)
			l->attempted = time(NULL);
	}
	return true;
}

static const struct config_stream *vs_config_stream(const struct verify_service *vs, const char *name)
{
	for (size_t i = 0; i < vs->cfg->n_streams; i++)
		if (strcmp(vs->cfg->streams[i].name, name) == 0)
			return &vs->cfg->streams[i];
	return NULL;
}

/* Periodic verifies: one due stream at a time, when nothing else runs. */
static void vs_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct verify_service *vs = arg;
	const char *names[VS_MAX_NAMES];
	size_t n;
	time_t now = time(NULL);

	(void)fd;
	(void)what;
	if (vs->job || vs->finished || !vs->streams)
		return;
	n = streams_sent_names(vs->streams, names, VS_MAX_NAMES);
	for (size_t i = 0; i < n; i++) {
		const struct config_stream *cs = vs_config_stream(vs, names[i]);
		struct vs_last *l = vs_last_of(vs, names[i], NULL, false);
		time_t from = l && l->attempted ? l->attempted : vs->since;
		struct verify_job_request rq = { .streams = &names[i], .nstreams = 1 };
		char err[512];

		if (!cs || cs->verify_every == 0 || (uint64_t)(now - from) * 1000 < cs->verify_every)
			continue;
		rq.rows_per_second = (double)cs->verify_rate;
		log_info("verify: periodic verify of stream \"%s\"", names[i]);
		vs->periodic = true;
		if (!vs_start(vs, &rq, err, sizeof(err))) {
			log_warning("verify: periodic verify of stream \"%s\" did not start: %s", names[i], err);
			if ((l = vs_last_of(vs, names[i], NULL, true)))
				l->attempted = now;
		}
		return;
	}
}

struct verify_service *verify_service_new(struct event_base *base, const struct strait_config *cfg)
{
	struct verify_service *vs = calloc(1, sizeof(*vs));

	if (!vs)
		return NULL;
	vs->base = base;
	vs->cfg = cfg;
	vs->since = time(NULL);
	vs->tick = event_new(base, -1, EV_PERSIST, vs_tick_cb, vs);
	vs->reap = event_new(base, -1, 0, vs_reap_cb, vs);
	if (!vs->tick || !vs->reap) {
		verify_service_free(vs);
		return NULL;
	}
	event_add(vs->tick, &(struct timeval){ VS_TICK_S, 0 });
	return vs;
}

static void vs_cancel(struct verify_service *vs, const char *why)
{
	if (!vs->job)
		return;
	verify_job_free(vs->job);
	vs->job = NULL;
	if (vs->req) {
		char msg[256];

		snprintf(msg, sizeof(msg), "verify cancelled: %s\n", why);
		control_reply(vs->req, false, msg);
		vs->req = NULL;
	}
}

void verify_service_free(struct verify_service *vs)
{
	if (!vs)
		return;
	vs_cancel(vs, "straitd is stopping");
	verify_job_free(vs->finished);
	if (vs->tick)
		event_free(vs->tick);
	if (vs->reap)
		event_free(vs->reap);
	for (size_t i = 0; i < vs->nlast; i++) {
		free(vs->last[i].r.stream);
		free(vs->last[i].r.to);
		free(vs->last[i].r.error);
	}
	free(vs->last);
	free(vs);
}

static void vs_frame(void *arg, const char *stream, const char *peer,
		const struct relay_proto_verify *m)
{
	struct verify_service *vs = arg;

	if (vs->job)
		verify_job_frame(vs->job, stream, peer, m);
}

void verify_service_set_streams(struct verify_service *vs, struct streams *streams)
{
	if (vs->streams && streams != vs->streams)
		vs_cancel(vs, "the site's streams were rebuilt (a role change)");
	vs->streams = streams;
	if (streams)
		streams_set_verify_handler(streams, vs_frame, vs);
}

void verify_service_reconfigure(struct verify_service *vs, const struct strait_config *cfg)
{
	vs->cfg = cfg;
}

static bool vs_parse_rate(const char *s, double *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || v == 0)
		return false;
	*out = (double)v;
	return true;
}

void verify_service_cmd(struct verify_service *vs, struct control_request *req, int argc, char **argv)
{
	const char *streams[VS_MAX_NAMES], *tables[VS_MAX_NAMES];
	struct verify_job_request rq = { .streams = streams, .tables = tables };
	bool json = false, rate = false;
	char err[512];

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0) {
			json = true;
		} else if (strcmp(argv[i], "--stream") == 0 && i + 1 < argc && rq.nstreams < VS_MAX_NAMES) {
			streams[rq.nstreams++] = argv[++i];
		} else if (strcmp(argv[i], "--table") == 0 && i + 1 < argc && rq.ntables < VS_MAX_NAMES) {
			tables[rq.ntables++] = argv[++i];
		} else if (strcmp(argv[i], "--rate") == 0 && i + 1 < argc) {
			if (!vs_parse_rate(argv[++i], &rq.rows_per_second)) {
				control_reply(req, false, "verify: --rate takes rows per second, a whole number "
					      "above 0\n");
				return;
			}
			rate = true;
		} else {
			control_reply(req, false, "usage: verify [--stream NAME]... [--table TABLE]... "
				      "[--rate ROWS] [--json]\n");
			return;
		}
	}
	if (vs->job) {
		control_reply(req, false, "verify: a verify is running already; try again when it ends "
			      "(straitctl status shows it)\n");
		return;
	}
	if (!rate && rq.nstreams == 1) {
		const struct config_stream *cs = vs_config_stream(vs, streams[0]);

		if (cs)
			rq.rows_per_second = (double)cs->verify_rate;
	}
	vs->periodic = false;
	if (!vs_start(vs, &rq, err, sizeof(err))) {
		char msg[600];

		snprintf(msg, sizeof(msg), "verify: %s\n", err);
		control_reply(req, false, msg);
		return;
	}
	vs->req = req;
	vs->req_json = json;
}

void verify_service_status_json(const struct verify_service *vs, struct json_out *j)
{
	json_object_begin(j, "verify");
	json_bool(j, "running", vs->job != NULL);
	json_array_begin(j, "streams");
	for (size_t i = 0; i < vs->nlast; i++) {
		const struct verify_job_stream *l = &vs->last[i].r;

		if (l->finished_us == 0)
			continue;
		json_object_begin(j, NULL);
		json_string(j, "stream", l->stream);
		json_string(j, "to", l->to);
		json_string(j, "result", !l->ok ? "failed" : l->equal ? "equal" : "different");
		json_string(j, "error", l->error);
		json_lsn(j, "lsn", l->lsn);
		json_double(j, "finished", (double)l->finished_us / 1e6);
		json_double(j, "seconds", l->seconds);
		json_uint(j, "rows", l->rows);
		json_uint(j, "differences", l->differences);
		json_uint(j, "link_bytes", l->link_bytes);
		json_object_end(j);
	}
	json_array_end(j);
	json_object_end(j);
}

void verify_service_each(const struct verify_service *vs,
		void (*fn)(void *arg, const struct verify_service_last *l), void *arg)
{
	for (size_t i = 0; i < vs->nlast; i++) {
		const struct verify_job_stream *l = &vs->last[i].r;
		struct verify_service_last out = {
			.stream = l->stream, .to = l->to, .ok = l->ok, .equal = l->equal,
			.finished = (double)l->finished_us / 1e6, .seconds = l->seconds, .rows = l->rows,
			.differences = l->differences, .link_bytes = l->link_bytes,
		};

		if (l->finished_us)
			fn(arg, &out);
	}
}
