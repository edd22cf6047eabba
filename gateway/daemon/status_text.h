/*
 * status_text.h — the compact, human form of `straitctl status` and
 * `straitctl schedule`, rendered from the daemon's JSON documents.
 *
 * CONTRACT
 * straitctl asks straitd for `status --json` (or `schedule --json`), reads
 * it with json_parse() and hands the tree here; the result is the text to
 * print. The documents are read as they are: a member that is missing or of
 * another type shows as "-" (or is left out of the warnings), so a daemon of
 * another version still renders. The unit helpers write into buf (at most
 * len bytes, always terminated).
 */
#ifndef STRAIT_STATUS_TEXT_H
#define STRAIT_STATUS_TEXT_H

#include <stddef.h>

struct json_value;

/* 0 B, 512 B, 1.2 KiB, 12 KiB, 3.4 GiB (binary units). */
void status_text_bytes(char *buf, size_t len, double bytes);
/* 0.4 s, 75 s, 3 m, 2.5 h, 3.0 d. */
void status_text_duration(char *buf, size_t len, double seconds);
/* A stream's schedule object: held, unlimited, or 2.0 MiB/s. */
void status_text_rate(char *buf, size_t len, const struct json_value *schedule);

/*
 * `status`: a line for this site, a table of the sites (role, epoch, link,
 * tunnel handshake age, health) and one of this site's streams (state, lag,
 * rate and rule, spool, warnings). NULL when out of memory.
 */
char *status_text_status(const struct json_value *doc);
/* `schedule`: a table of the streams this site sends. NULL when out of memory. */
char *status_text_schedule(const struct json_value *doc);
/*
 * `status --cluster`: a table of every site (role, epoch) and each stream it
 * sends or receives (peer, state, lag, applied LSN), as that site reports
 * them; an unreachable site says why. NULL when out of memory.
 */
char *status_text_cluster(const struct json_value *doc);

#endif
