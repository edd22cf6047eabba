/*
 * coalesce.c — a frame waits while records keep coming (coalesce.h).
 */
#include "gateway/stream/coalesce.h"

int64_t coalesce_note(struct coalesce *c, int64_t now_us)
{
	int64_t last;

	if (!c->since_us || now_us < c->since_us)
		c->since_us = now_us ? now_us : 1;
	last = c->since_us + COALESCE_MAX_US;
	return now_us + COALESCE_QUIET_US < last ? now_us + COALESCE_QUIET_US
		: (last > now_us ? last : now_us);
}

bool coalesce_waiting(const struct coalesce *c)
{
	return c->since_us != 0;
}

void coalesce_sent(struct coalesce *c)
{
	c->since_us = 0;
}
