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
 * windows (any day); outside them it is held. A batch stream's schedule rules,
 * if any, set its rate inside a window.
 *
 * A one-off window (straitctl sync-now) until a given time opens a held
 * stream, unlimited, until then.
 *
 * Local time is the process's time zone (TZ, else /etc/localtime), through
 * localtime_r() and mktime(): a window is wall-clock time, so on the day
 * clocks go forward an "01:00-05:00" window is three hours long, and times
 * that do not exist or repeat are handled as the C library maps them.
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
	struct config_rate rate;     /* in force now (bytes_per_sec 0 when held) */
	int rule;                    /* index of the matching schedule rule, -1 when none */
	int window;                  /* batch: index of the window we are in, -1 when none */
	bool one_off;                /* the one-off window decides */
	char why[160];               /* for status: "rule 1: mon-fri 08:00-18:00 at 2MiB/s",
	                                "outside batch windows (01:00-05:00)", "sync-now until 14:05:00",
	                                "no schedule: unlimited" */
	time_t next_change;          /* when the evaluation next changes; 0 when not within 8 days */
};

/*
 * Evaluates the stream's schedule at now (seconds since the Unix epoch).
 * one_off_until: end of a one-off window, 0 when none (or in the past).
 */
void schedule_eval(const struct config_stream *cs, time_t now, time_t one_off_until,
		struct schedule_state *out);

/*
 * What sending a frame of frame_bytes costs on the WAN, in bytes: the frame,
 * TLS 1.3 record overhead, and per packet the TCP/IP headers plus, when
 * tunnel is true, WireGuard's encapsulation (its header, tag and the outer
 * UDP/IP) and the Ethernet header, for a tunnel with the given MTU (0: 1420).
 * The scheduler charges this, so a configured rate is what the WAN carries.
 */
uint64_t schedule_wire_cost(size_t frame_bytes, unsigned mtu, bool tunnel);

#endif
