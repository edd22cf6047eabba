/*
 * lsn.h — a WAL position (LSN) as text, written and read one way everywhere.
 *
 * PostgreSQL writes an LSN as its high and low 32 bits in hexadecimal,
 * separated by a slash, upper case and without leading zeros: "16/B374D848",
 * "0/0". Log lines, status, error messages and SQL text all use that form:
 *
 *   log_info("streaming from " LSN_FMT, LSN_ARGS(lsn));     inside a format
 *   char buf[LSN_BUF]; lsn_format(buf, lsn);                 into a buffer
 *   if (!lsn_parse(PQgetvalue(res, 0, 0), &lsn)) ...         from text
 *
 * The parser takes what the server writes and what an operator types: one
 * to eight hexadecimal digits (either case), a slash, one to eight more, and
 * nothing else — no spaces, signs or "0x".
 *
 * Ownership: plain values; buffers are the caller's.
 */
#ifndef STRAIT_LSN_H
#define STRAIT_LSN_H

#include <stdbool.h>
#include <stdint.h>

/* printf format of an LSN; its arguments are LSN_ARGS(lsn). */
#define LSN_FMT "%X/%X"
#define LSN_ARGS(lsn) (unsigned)((uint64_t)(lsn) >> 32), (unsigned)(uint32_t)(lsn)

#define LSN_BUF 18              /* "FFFFFFFF/FFFFFFFF" + NUL */

/* Writes lsn into buf; returns buf. */
char *lsn_format(char buf[LSN_BUF], uint64_t lsn);

/* Parses text (see above) into *out; false when malformed (*out untouched) or NULL. */
bool lsn_parse(const char *text, uint64_t *out) __attribute__((warn_unused_result));

#endif
