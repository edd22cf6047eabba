/*
 * coalesce.h — when the sender packs what waits into a BATCH frame.
 *
 * Every frame costs a WAN packet of headers (some 200 B with WireGuard, TCP
 * and TLS) and draws an ACK back, so records that come close together go in
 * one frame. Waiting is latency added to every transaction in it, and a
 * fixed wait (the first record held 30 ms) made a lone commit wait the
 * whole of it: on a link where a lost packet already costs a round trip,
 * those 30 ms took the lag past native's. So a frame waits only while
 * records keep coming: it goes once none came for COALESCE_QUIET_US (the
 * burst is over: a lone commit leaves at once, give or take that), and at
 * the latest COALESCE_MAX_US after its first record (a steady stream still
 * packs tens of transactions a frame). The caller sends at once besides
 * when enough waits (a frame's worth) or the sink resumes.
 *
 * Pure: the caller passes the time (µs, monotonic). A zeroed struct holds
 * nothing.
 */
#ifndef STRAIT_COALESCE_H
#define STRAIT_COALESCE_H

#include <stdbool.h>
#include <stdint.h>

#define COALESCE_QUIET_US 2000
#define COALESCE_MAX_US 30000

struct coalesce {
	int64_t since_us;            /* the first record waiting arrived; 0: none waits */
};

/* A record arrived at now_us: when the frame should go (µs, >= now_us). */
int64_t coalesce_note(struct coalesce *c, int64_t now_us);
/* Whether a frame is being held (a note since the last coalesce_sent()). */
bool coalesce_waiting(const struct coalesce *c);
/* Everything waiting went (or the wait was given up). */
void coalesce_sent(struct coalesce *c);

#endif
