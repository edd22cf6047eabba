/*
 * lossprobe.c — when a batch frame is owed probes (lossprobe.h).
 */
#include "gateway/relay/lossprobe.h"

void loss_probe_start(struct loss_probe *lp, uint32_t total_retrans)
{
	lp->retrans_seen = total_retrans;
	lp->started = true;
}

bool loss_probe_observe(struct loss_probe *lp, uint32_t total_retrans, uint64_t now_ms)
{
	bool was = lp->was_losing;

	if (total_retrans > lp->retrans_seen)
		lp->losing_until_ms = now_ms + LOSS_PROBE_MEMORY_MS;
	lp->retrans_seen = total_retrans;
	lp->was_losing = loss_probe_losing(lp, now_ms);
	return was != lp->was_losing;
}

bool loss_probe_losing(const struct loss_probe *lp, uint64_t now_ms)
{
	return lp->losing_until_ms != 0 && now_ms < lp->losing_until_ms;
}

bool loss_probe_after_batch(struct loss_probe *lp, uint64_t now_ms, bool tail)
{
	lp->owed = tail && loss_probe_losing(lp, now_ms) ? LOSS_PROBE_COUNT : 0;
	return lp->owed > 0;
}

bool loss_probe_due(struct loss_probe *lp, bool output_empty, bool *again)
{
	if (lp->owed == 0) {
		*again = false;
		return false;
	}
	if (!output_empty) {
		*again = true;           /* the batch is still going out: after it */
		return false;
	}
	lp->owed--;
	lp->sent++;
	*again = lp->owed > 0;
	return true;
}
