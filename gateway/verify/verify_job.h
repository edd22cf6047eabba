/*
 * verify_job.h — one run of `straitctl verify` (or of a stream's periodic
 * verify) on the site that sends the streams: compares each stream's tables
 * at its source with its target at the other site, at one point of the
 * stream, while replication goes on.
 *
 * How the two sides meet at one point: the job locks the stream's tables
 * (SHARE, a moment) so no transaction writing them is between its commit
 * record and its visibility, takes the source snapshot and reads the WAL
 * insert position L in it, sends HOLD(L) to the sink ahead of anything
 * committed later, and lets the writers go. The sink applies everything
 * before L, nothing after, takes its own snapshot there and goes on. The
 * tables are then compared chunk by chunk (replicator/verify.h) with the
 * source's queries run here and the target's run by the sink's straitd in
 * its snapshot: only statements and checksums cross the link.
 *
 * Threads: replicator/verify.c blocks on libpq, so the job runs in a thread
 * of its own. It touches the streams only through the loop: a call (send a
 * frame, arm the MARK, read a stream's settings) is posted through a pipe
 * and answered under the job's mutex; frames from the sink are queued for
 * the thread by verify_job_frame(). done() runs in the loop, after the
 * thread has ended.
 *
 * Ownership: the caller frees the job with verify_job_free() after done(),
 * or at any time to cancel it (the thread is told, its queries are
 * cancelled, and it is joined).
 */
#ifndef STRAIT_VERIFY_JOB_H
#define STRAIT_VERIFY_JOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct relay_proto_verify;
struct streams;
struct verify_job;

struct verify_job_request {
	const char *const *streams;  /* NULL/0: every stream this site sends */
	size_t nstreams;
	const char *const *tables;   /* "schema.table" or "table" (public); NULL/0: all */
	size_t ntables;
	double rows_per_second;      /* > 0: read no faster, per side */
	unsigned wait_s;             /* for the target to reach the point; 0: 120 s */
};

/* Per stream, what status and metrics keep of the last run. */
struct verify_job_stream {
	char *stream;
	char *to;                    /* the destination site compared */
	bool ok;                     /* compared (not failed) */
	bool equal;
	char *error;                 /* when !ok */
	uint64_t lsn;                /* the (first) point compared at */
	unsigned points;             /* common points taken: a new one about every second */
	uint64_t tables;
	uint64_t rows;               /* on the source */
	uint64_t differences;        /* keys missing, extra or changed */
	uint64_t link_bytes;         /* VERIFY frames, both ways */
	double seconds;
	int64_t finished_us;         /* wall clock */
};

struct verify_job_outcome {
	bool ok;                     /* every stream compared */
	bool equal;                  /* and no difference anywhere */
	char *text;                  /* the human report */
	char *json;                  /* the same as a JSON document, ending in a newline */
	struct verify_job_stream *streams;
	size_t nstreams;
};

typedef void (*verify_job_done_fn)(void *arg, const struct verify_job_outcome *o);

/* NULL with err set when it cannot start (out of memory, no thread). */
struct verify_job *verify_job_start(struct event_base *base, struct streams *streams,
		const struct verify_job_request *rq, verify_job_done_fn done, void *arg,
		char *err, size_t errlen);
/* A VERIFY frame from the sink's site of one of the job's streams. */
void verify_job_frame(struct verify_job *j, const char *stream, const char *peer,
		const struct relay_proto_verify *m);
void verify_job_free(struct verify_job *j);

#endif
