/*
 * schedule.h — when and how fast a stream may send: its schedule rules and
 * batch windows evaluated at a moment of local time. Pure: no clock of its
 * own (the caller passes the time), no I/O.
 *
 * Rules (a live stream): the first rule whose days and hours contain the
 * local time wins; a stream without rules, or a time no rule matches, is
 * unlimited. Hours "22:00-06:00" cross midnight: the part after midnight
 * belongs to the day the window started on, so "days: fri, hours:
 * 22:00-06:00" covers Friday 22:00 to Saturday 06:00.
 *
 * Windows (mode: batch): the stream sends, unlimited, only inside one of its
 * windows (any day; a window may cross midnight); outside them it is held. A
 * batch stream's schedule rules, if any, set its rate inside a window. A
 * batch stream without windows is always held (config validation refuses
 * one: "mode batch needs windows").
 *
 * A one-off window (straitctl sync-now) until a given time opens a held
 * stream, unlimited, until then.
 *
 * Local time is the process's time zone (TZ, else /etc/localtime), through
 * localtime_r(): a window is wall-clock time, so it lasts as long as the wall
 * clock says. On the night clocks go forward (New York 2026-03-08 02:00 ->
 * 03:00): "01:00-05:00" is three hours long; a window that starts in the
 * skipped hour opens when the clock jumps ("02:30-04:00" opens at 03:00); one
 * wholly inside it ("02:00-03:00") does not open that night. On the night
 * clocks go back (2026-11-01 02:00 -> 01:00) the repeated hour happens
 * twice: "01:00-02:00" is open for two hours, and "01:30-02:30" is open
 * 01:30-02:00 summer time, closed when the clock goes back to 01:00, and open
 * again 01:30-02:30 standard time.
 */
#ifndef STRAIT_SCHEDULE_H
#define STRAIT_SCHEDULE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "config/config.h"

struct schedule_state {
	bool held;                   /* nothing may be sent (rate 0, or outside every window) */
	struct config_rate rate;     /* in force now (bytes_per_sec 0 when held or unlimited) */
	int rule;                    /* index of the matching schedule rule, -1 when none
	                                (and always outside batch windows or in a one-off) */
	int window;                  /* batch: index of the window we are in, -1 when none */
	bool one_off;                /* the one-off window decides */
	char why[160];               /* for status: "rule 1: mon-fri 08:00-18:00 at 2MiB/s",
	                                "outside batch windows (01:00-05:00)", "sync-now until 14:05:00",
	                                "no schedule: unlimited", "no rule matches: unlimited",
	                                "in batch window 01:00-05:00, rule 2: daily at 0 (held)";
	                                rules count from 1 here (rule 1 is index 0) */
	time_t next_change;          /* the first time after now at which held, rate, rule, window
	                                or one_off differ; 0 when none within 8 days (so callers
	                                evaluate again at least every 8 days) */
};

/*
 * Evaluates the stream's schedule at now (seconds since the Unix epoch).
 * one_off_until: end of a one-off window, 0 when none (or in the past); while
 * it is ahead, any stream (live or batch) is open and unlimited.
 * Costs a few hundred localtime_r() calls (for next_change): call it when
 * next_change comes, the config changes or the clock is set, not per frame.
 */
void schedule_eval(const struct config_stream *cs, time_t now, time_t one_off_until,
		struct schedule_state *out);

/*
 * What sending a frame of frame_bytes costs on the WAN, in bytes, so that a
 * configured rate is what the physical link's interface counters show. An
 * estimate, each frame on its own (it is sent alone, so its last segment is
 * partly empty); ACKs coming back and the Ethernet preamble, FCS and gap are
 * not counted:
 *   - TLS 1.3 records of at most 16384 bytes of plaintext, each 22 more
 *     (header 5, inner content type 1, AEAD tag 16);
 *   - that byte stream in TCP segments, each with 52 bytes of IPv4 (20), TCP
 *     (20) and timestamps option (12) headers;
 *   - tunnel: segments of at most mtu - 52 bytes (mtu 0: 1420; at least 576),
 *     each inner packet padded to a multiple of 16 (at most to the MTU) as
 *     WireGuard does, plus WireGuard's header and tag (32), the outer UDP (8)
 *     and IPv4 (20) headers and Ethernet's (14): 74 per packet;
 *   - no tunnel: a 1500-byte Ethernet path (segments of 1448), 52 + 14 per
 *     packet; mtu is not used.
 * frame_bytes 0 costs 0.
 */
uint64_t schedule_wire_cost(size_t frame_bytes, unsigned mtu, bool tunnel);

/*
 * The estimated WAN cost of one relay frame of payload_bytes (its header
 * added) on the path that cfg's tunnel section sets: what a stream's rate
 * is charged for every frame it sends, BATCH and VERIFY alike.
 */
uint64_t schedule_frame_cost(size_t payload_bytes, const struct strait_config *cfg);

/*
 * The estimated WAN cost of tcp_bytes that the link's TCP sent again (a
 * lost packet's payload, TLS already in it) on that path: in full
 * segments, as TCP resends them. A rate counts them too: a lossy link
 * carries them as well as the first copies.
 */
uint64_t schedule_resent_cost(uint64_t tcp_bytes, const struct strait_config *cfg);

#endif
