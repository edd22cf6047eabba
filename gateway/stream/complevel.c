/*
 * complevel.c — the zstd level by what limits the stream (see complevel.h).
 */
#include "gateway/stream/complevel.h"

static const int complevel_steps[] = { 1, 3, 6, 9, 12, 15, 19 };
#define COMPLEVEL_NSTEPS (sizeof(complevel_steps) / sizeof(complevel_steps[0]))

/* The step at or just above level. */
static unsigned complevel_step_of(int level)
{
	unsigned i = 0;

	while (i + 1 < COMPLEVEL_NSTEPS && complevel_steps[i] < level)
		i++;
	return i;
}

/* The next step below level (level itself at the bottom). */
static int complevel_below(int level)
{
	unsigned at = complevel_step_of(level);

	if (complevel_steps[at] >= level && at > 0)
		at--;
	return complevel_steps[at] < level ? complevel_steps[at] : level;
}

/* The next step above level (level itself at the top). */
static int complevel_above(int level)
{
	unsigned at = complevel_step_of(level);

	if (complevel_steps[at] <= level && at + 1 < COMPLEVEL_NSTEPS)
		at++;
	return complevel_steps[at] > level ? complevel_steps[at] : level;
}

void complevel_init(struct complevel *p, int base)
{
	*p = (struct complevel){ .base = base, .level = base };
}

/*
 * Bytes are scarce: the sender mostly waited on its link or rate with a
 * backlog to send, or what went out waits in the link's queue.
 */
static bool complevel_bytes_scarce(const struct complevel_sample *s)
{
	bool sender_held = s->wait_share >= COMPLEVEL_WAIT_SHARE &&
			   s->backlog >= COMPLEVEL_BACKLOG_MIN &&
			   (double)s->backlog >= (double)s->sent * COMPLEVEL_BACKLOG_SECONDS;
	bool link_behind = s->link_backlog >= COMPLEVEL_LINK_BACKLOG_MIN &&
			   (double)s->link_backlog >= (double)s->link_sent * COMPLEVEL_BACKLOG_SECONDS;

	return sender_held || link_behind;
}

/* A step back toward the configured level, never past it. */
static int complevel_toward_base(const struct complevel *p)
{
	if (p->level > p->base) {
		int next = complevel_below(p->level);

		return next < p->base ? p->base : next;
	}
	if (p->level < p->base) {
		int next = complevel_above(p->level);

		return next > p->base ? p->base : next;
	}
	return p->level;
}

int complevel_tick(struct complevel *p, const struct complevel_sample *s)
{
	p->calm = s->backlog < COMPLEVEL_BACKLOG_MIN && s->link_backlog < COMPLEVEL_LINK_BACKLOG_MIN ?
		  p->calm + 1 : 0;
	if (p->retry)
		p->retry--;
	if (s->busy_share > COMPLEVEL_BUSY_SHARE) {
		/* the CPU is the limit: spend less of it per byte, now */
		if (complevel_below(p->level) != p->level)
			p->retry = COMPLEVEL_RETRY_TICKS;
		return p->level = complevel_below(p->level);
	}
	if (complevel_bytes_scarce(s)) {
		/* the link or the rate is the limit: spend CPU to send fewer bytes */
		if (!p->retry)
			p->level = complevel_above(p->level);
		return p->level;
	}
	if (p->calm >= COMPLEVEL_CALM_TICKS && p->level != p->base) {
		/* nothing waits any more: a step back toward the configured level */
		p->calm = 0;
		p->level = complevel_toward_base(p);
	}
	return p->level;
}

const char *complevel_reason(const struct complevel *p)
{
	if (p->level > p->base)
		return "link or rate bound";
	if (p->level < p->base)
		return "CPU bound";
	return "configured";
}
