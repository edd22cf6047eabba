/*
 * complevel.h — the zstd level a stream's sender uses, by what limits it.
 *
 * When the sender spends most of a tick waiting on its link or its rate
 * while a backlog waits to be sent, or what it sent waits a quarter second
 * or more in the link's own queue (its output buffer and the kernel's
 * unsent bytes, which fill before the sender has to wait), bytes are what is
 * scarce: each such tick raises the level a step (more CPU per byte, fewer
 * bytes). When compressing
 * takes most of the tick, the CPU is what is scarce: a step down at once,
 * and no step up for COMPLEVEL_RETRY_TICKS. When the backlog is gone for a
 * while, the level goes back a step toward the configured one. The steps
 * are zstd's levels 1, 3, 6, 9, 12, 15 and 19; one change a tick at most.
 * Waiting on the sink's send window is not a reason: the sink's pace, not
 * the link, holds the sender back then, and fewer bytes would not help.
 *
 * Pure: the caller measures and applies (stream_source.c, codec.h).
 */
#ifndef STRAIT_COMPLEVEL_H
#define STRAIT_COMPLEVEL_H

#include <stdbool.h>
#include <stdint.h>

/* Waiting this share of a tick or more on the link or the rate: they are the limit. */
#define COMPLEVEL_WAIT_SHARE 0.5
/*
 * ... when at least this much waits, and at least what went out in the
 * tick times COMPLEVEL_BACKLOG_SECONDS (a quarter second of sending).
 */
#define COMPLEVEL_BACKLOG_MIN (64u * 1024u)
#define COMPLEVEL_BACKLOG_SECONDS 0.25
/* The link's queue behind by this much, and a quarter second of what the stream sent on it. */
#define COMPLEVEL_LINK_BACKLOG_MIN (16u * 1024u)
/* Below both minimums for COMPLEVEL_CALM_TICKS ticks, the level goes back toward the base. */
#define COMPLEVEL_CALM_TICKS 5
/* Compressing more than this share of a tick means the CPU is the limit. */
#define COMPLEVEL_BUSY_SHARE 0.5
/* After a step down for the CPU, the level is not raised again for this long. */
#define COMPLEVEL_RETRY_TICKS 10

struct complevel {
	int base;                    /* the configured level */
	int level;                   /* in force */
	unsigned calm;               /* ticks in a row with a small backlog */
	unsigned retry;              /* ticks left before the level may go up again */
};

/* What the sender saw during one tick. */
struct complevel_sample {
	uint64_t backlog;            /* raw bytes spooled and not sent to this destination */
	uint64_t sent;               /* raw bytes sent during the tick */
	double wait_share;           /* share of the tick spent waiting on the link or the rate */
	double busy_share;           /* share of the tick spent compressing */
	uint64_t link_backlog;       /* bytes waiting in the link's queue at the tick (relay.h) */
	uint64_t link_sent;          /* bytes the stream sent on the link during the tick */
};

void complevel_init(struct complevel *p, int base);

/* One tick: the level to use from now on. */
int complevel_tick(struct complevel *p, const struct complevel_sample *s);

/* Why the level is what it is: "configured", "link or rate bound", "CPU bound". */
const char *complevel_reason(const struct complevel *p);

#endif
