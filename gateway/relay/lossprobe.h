/*
 * lossprobe.h — small packets after a batch's last one, while the link
 * loses packets, so TCP finds a lost one a round trip after it was sent.
 *
 * TCP finds a lost packet by the packets behind it: three of them acked
 * (SACK) and it sends it again at once; fewer, and it waits a quarter of
 * the round trip more (RACK's reordering window); none, and it waits for
 * its probe timer, two round trips or more. Native replication sends a
 * transaction as many small packets (a message each), so its losses mostly
 * have three behind them; strait packs a transaction, or many, into one
 * frame, often one packet with nothing behind it until the next commit.
 * On a lossy link that tail made strait's lag p99 worse than native's.
 *
 * So while the link is losing packets (its TCP retransmitted within
 * LOSS_PROBE_MEMORY_MS), a batch frame that is a tail is followed, once the
 * link has sent it (our output empty, nothing unsent in TCP: a probe behind
 * unsent bytes would ride in their segments, bytes for nothing on a busy or
 * rate-bound link), by LOSS_PROBE_COUNT empty PROBE frames (the first at
 * once, then LOSS_PROBE_GAP_US apart): each its own small packet (about
 * 160 B on the WAN with WireGuard, TCP and TLS), which the peer drops. A
 * batch sent meanwhile is the tail and is owed the probes instead. A clean
 * link never sees one.
 *
 * A tail is a batch its sender follows with nothing without a wait on the
 * peer. One it follows with another as soon as its rate allows (a backlog
 * behind a bandwidth schedule) has packets behind it anyway, and probes
 * after each would add their bytes to every batch of a rate-bound stream:
 * it owes nothing, and takes the probes from one before it.
 *
 * Pure: the caller passes the time (ms, monotonic) and the retransmission
 * count it read (TCP_INFO's tcpi_total_retrans). A zeroed struct is a link
 * that lost nothing.
 */
#ifndef STRAIT_LOSSPROBE_H
#define STRAIT_LOSSPROBE_H

#include <stdbool.h>
#include <stdint.h>

#define LOSS_PROBE_COUNT 3
#define LOSS_PROBE_GAP_US 1000
#define LOSS_PROBE_MEMORY_MS 30000u

struct loss_probe {
	bool started;                /* loss_probe_start() ran */
	uint32_t retrans_seen;       /* the count at the last look */
	uint64_t losing_until_ms;    /* 0: no retransmission seen lately */
	bool was_losing;             /* as the last look found it */
	unsigned owed;               /* probes still owed to the last batch */
	uint64_t sent;               /* probes sent on this link */
};

/* The link came up with total_retrans already (its handshake's): they do not count. */
void loss_probe_start(struct loss_probe *lp, uint32_t total_retrans);
/*
 * The link's retransmission count at now_ms. True when this look changed
 * whether the link is losing packets (for a log line).
 */
bool loss_probe_observe(struct loss_probe *lp, uint32_t total_retrans, uint64_t now_ms);
bool loss_probe_losing(const struct loss_probe *lp, uint64_t now_ms);
/*
 * A batch frame was queued at now_ms; tail: nothing follows it without a
 * wait on the peer. True when probes are owed (arm the timer).
 */
bool loss_probe_after_batch(struct loss_probe *lp, uint64_t now_ms, bool tail);
/*
 * The timer fired: output_empty says whether the link's output took
 * everything. True when a probe should be sent now (counted); *again says
 * whether to arm the timer once more.
 */
bool loss_probe_due(struct loss_probe *lp, bool output_empty, bool *again);

#endif
