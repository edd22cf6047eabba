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

void complevel_init(struct complevel *p, int base)
{
	*p = (struct complevel){ .base = base, .level = base };
}

static int complevel_move(struct complevel *p, int to)
{
	if (to != p->level) {
		p->level = to;
		p->hold = COMPLEVEL_HOLD_TICKS;
	}
	return p->level;
}

int complevel_tick(struct complevel *p, uint64_t backlog, bool limited, double busy_share)
{
	unsigned at = complevel_step_of(p->level);

	p->calm = backlog < COMPLEVEL_BACKLOG_LOW ? p->calm + 1 : 0;
	if (p->hold) {
		p->hold--;
		return p->level;
	}
	if (busy_share > COMPLEVEL_BUSY_SHARE) {
		/* the CPU is the limit: spend less of it per byte */
		if (complevel_steps[at] >= p->level && at > 0)
			at--;
		return complevel_move(p, complevel_steps[at] < p->level ? complevel_steps[at] : p->level);
	}
	if (limited && backlog >= COMPLEVEL_BACKLOG_HIGH) {
		/* the link or the rate is the limit: spend CPU to send fewer bytes */
		if (complevel_steps[at] <= p->level && at + 1 < COMPLEVEL_NSTEPS)
			at++;
		return complevel_move(p, complevel_steps[at] > p->level ? complevel_steps[at] : p->level);
	}
	if (p->calm >= COMPLEVEL_CALM_TICKS && p->level != p->base) {
		/* nothing waits any more: a step back toward the configured level */
		int next = p->level > p->base ? complevel_steps[at > 0 ? at - 1 : 0]
					      : complevel_steps[at + 1 < COMPLEVEL_NSTEPS ? at + 1 : at];

		if ((p->level > p->base && next < p->base) || (p->level < p->base && next > p->base))
			next = p->base;
		p->calm = 0;
		return complevel_move(p, next);
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
