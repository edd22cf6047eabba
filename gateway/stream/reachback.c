/*
 * reachback.c — where a resend from the spool must start (see reachback.h).
 *
 * Two short lists: the records holding first blocks of transactions that may
 * still be open (dropped once a later record says the oldest open one is
 * younger), and the positions from which a resume reaches back, one entry
 * each time that answer changes (dropped once the sink committed past the
 * next one). Both stay as short as the streamed transactions open at once.
 */
#include "gateway/stream/reachback.h"

#include <stdlib.h>
#include <string.h>

struct rb_start {
	uint64_t batch_no;
	struct spool_pos pos;
};

struct rb_run {
	uint64_t commit_lsn;         /* from this commit on */
	bool has;                    /* a resume reaches back to pos */
	struct spool_pos pos;
};

struct reachback {
	struct rb_start *starts;
	size_t nstarts, capstarts;
	struct rb_run *runs;
	size_t nruns, capruns;
};

struct reachback *reachback_new(void)
{
	return calloc(1, sizeof(struct reachback));
}

void reachback_free(struct reachback *rb)
{
	if (!rb)
		return;
	free(rb->starts);
	free(rb->runs);
	free(rb);
}

static bool grow(void **v, size_t *cap, size_t n, size_t size)
{
	size_t c = *cap ? 2 * *cap : 8;
	void *p;

	if (n < *cap)
		return true;
	p = realloc(*v, c * size);
	if (!p)
		return false;
	*v = p;
	*cap = c;
	return true;
}

bool reachback_record(struct reachback *rb, struct spool_pos pos, uint64_t commit_end_lsn,
		uint64_t batch_no, bool starts_stream, uint64_t open_since)
{
	struct rb_run run = { .commit_lsn = commit_end_lsn };
	size_t kept = 0;

	if (starts_stream) {
		if (!grow((void **)&rb->starts, &rb->capstarts, rb->nstarts, sizeof(*rb->starts)))
			return false;
		rb->starts[rb->nstarts++] = (struct rb_start){ batch_no, pos };
	}
	for (size_t i = 0; i < rb->nstarts; i++) {
		if (open_since && rb->starts[i].batch_no == open_since) {
			run.has = true;
			run.pos = rb->starts[i].pos;
		}
		/* the oldest open one only gets younger: older first blocks are never named again */
		if (open_since && rb->starts[i].batch_no >= open_since)
			rb->starts[kept++] = rb->starts[i];
	}
	rb->nstarts = kept;
	if (commit_end_lsn) {
		const struct rb_run *last = rb->nruns ? &rb->runs[rb->nruns - 1] : NULL;
		bool same = last ? last->has == run.has &&
				   (!run.has || memcmp(&last->pos, &run.pos, sizeof(run.pos)) == 0) :
				   !run.has;

		if (!same) {
			if (!grow((void **)&rb->runs, &rb->capruns, rb->nruns, sizeof(*rb->runs)))
				return false;
			rb->runs[rb->nruns++] = run;
		}
	}
	return true;
}

void reachback_new_connection(struct reachback *rb)
{
	rb->nstarts = 0;
}

/* Index + 1 of the last entry from a commit at or before lsn, 0 if none. */
static size_t run_at(const struct reachback *rb, uint64_t lsn)
{
	size_t i = rb->nruns;

	while (i > 0 && rb->runs[i - 1].commit_lsn > lsn)
		i--;
	return i;
}

bool reachback_at(const struct reachback *rb, uint64_t lsn, struct spool_pos *pos)
{
	size_t i = run_at(rb, lsn);

	if (i == 0 || !rb->runs[i - 1].has)
		return false;
	*pos = rb->runs[i - 1].pos;
	return true;
}

void reachback_release(struct reachback *rb, uint64_t lsn)
{
	size_t i = run_at(rb, lsn);

	if (i > 1) {
		memmove(rb->runs, rb->runs + (i - 1), (rb->nruns - (i - 1)) * sizeof(*rb->runs));
		rb->nruns -= i - 1;
	}
}

size_t reachback_entries(const struct reachback *rb)
{
	return rb->nstarts + rb->nruns;
}
