/*
 * complevel.h — the zstd level a stream's sender uses, by what limits it.
 *
 * When the stream waits on its link or its rate with a backlog to send,
 * bytes are what is scarce: each tick raises the level a step (more CPU per
 * byte, fewer bytes). When compressing takes most of the sender's time, the
 * CPU is what is scarce: a step down. When the backlog is gone for a while,
 * the level goes back a step toward the configured one. The steps are zstd's
 * levels 1, 3, 6, 9, 12, 15 and 19; one change a tick (a second) at most,
 * and none for COMPLEVEL_HOLD_TICKS after one, so it does not swing.
 *
 * Pure: the caller measures and applies (stream_source.c, codec.h).
 */
#ifndef STRAIT_COMPLEVEL_H
#define STRAIT_COMPLEVEL_H

#include <stdbool.h>
#include <stdint.h>

/* A backlog this large, waiting on the link or the rate, raises the level. */
#define COMPLEVEL_BACKLOG_HIGH (1024u * 1024u)
/* Below this for COMPLEVEL_CALM_TICKS ticks, the level goes back toward the base. */
#define COMPLEVEL_BACKLOG_LOW (64u * 1024u)
#define COMPLEVEL_CALM_TICKS 5
/* Compressing more than this share of a tick means the CPU is the limit. */
#define COMPLEVEL_BUSY_SHARE 0.5
#define COMPLEVEL_HOLD_TICKS 2

struct complevel {
	int base;                    /* the configured level */
	int level;                   /* in force */
	unsigned calm;               /* ticks in a row with a small backlog */
	unsigned hold;               /* ticks left before the next change */
};

void complevel_init(struct complevel *p, int base);

/*
 * One tick: backlog (bytes spooled and not sent to this destination),
 * limited (the sender waited on its link, its rate or its window during the
 * tick) and busy_share (the share of the tick spent compressing). Returns
 * the level to use from now on.
 */
int complevel_tick(struct complevel *p, uint64_t backlog, bool limited, double busy_share);

/* Why the level is what it is: "configured", "link or rate bound", "CPU bound". */
const char *complevel_reason(const struct complevel *p);

#endif
