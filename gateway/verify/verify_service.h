/*
 * verify_service.h — the daemon's side of verify: the `verify` control
 * command, the periodic verify of streams that ask for one
 * (streams[].verify.every), one job at a time, and the last result per
 * stream for status and metrics.
 *
 * The streams are rebuilt when the site's role changes: the daemon calls
 * verify_service_set_streams() before freeing them (a running job is
 * cancelled then) and after making new ones.
 */
#ifndef STRAIT_VERIFY_SERVICE_H
#define STRAIT_VERIFY_SERVICE_H

#include <stdbool.h>

struct control_request;
struct event_base;
struct json_out;
struct strait_config;
struct streams;
struct verify_service;

struct verify_service *verify_service_new(struct event_base *base, const struct strait_config *cfg);
void verify_service_free(struct verify_service *vs);

void verify_service_set_streams(struct verify_service *vs, struct streams *streams);
/* A new config (periodic settings); cfg stays valid until the next call. */
void verify_service_reconfigure(struct verify_service *vs, const struct strait_config *cfg);

/*
 * verify [--stream NAME]... [--table T]... [--rate ROWS] [--json]: answers
 * when the job ends; "ok" when every stream compared equal.
 */
void verify_service_cmd(struct verify_service *vs, struct control_request *req, int argc, char **argv);

/* Appends "verify": the running job and each stream's last result. */
void verify_service_status_json(const struct verify_service *vs, struct json_out *j);

/* Each stream's last result, for metrics. */
struct verify_service_last {
	const char *stream;
	const char *to;              /* the destination site */
	bool ok;
	bool equal;
	double finished;             /* Unix time */
	double seconds;
	unsigned long long rows;
	unsigned long long differences;
	unsigned long long link_bytes;
};
void verify_service_each(const struct verify_service *vs,
		void (*fn)(void *arg, const struct verify_service_last *l), void *arg);

#endif
