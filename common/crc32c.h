/*
 * crc32c.h — CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the
 * checksum of relay frames and spool records.
 *
 * Why CRC-32C: it detects every burst error up to 32 bits and has a hardware
 * instruction on x86-64 (SSE4.2) and arm64, so checking every byte that
 * crosses the link or hits the spool costs almost nothing.
 *
 * Two implementations with one result: a portable table-driven
 * slicing-by-8, and the SSE4.2 crc32 instruction, picked at run time when the
 * CPU has it. crc32c() is the one to call; the others are exposed so that the
 * tests can check that both paths agree.
 *
 * Convention (like zlib's crc32()): start with crc = 0 and feed the previous
 * result back in to continue, so
 *     crc32c(crc32c(0, a, n), b, m) == crc32c(0, a‖b, n + m).
 * The pre- and post-inversion are done inside. All functions are thread-safe
 * and never fail; buf may be NULL when len is 0.
 */
#ifndef STRAIT_CRC32C_H
#define STRAIT_CRC32C_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* CRC-32C of buf[0..len) continuing from crc (0 to start). */
uint32_t crc32c(uint32_t crc, const void *buf, size_t len);

/* The portable slicing-by-8 implementation. */
uint32_t crc32c_sw(uint32_t crc, const void *buf, size_t len);

/* Whether this CPU has the crc32 instruction (SSE4.2 on x86). */
bool crc32c_hw_available(void);

/*
 * The hardware implementation; only to be called when crc32c_hw_available().
 * On builds without it, it falls back to crc32c_sw().
 */
uint32_t crc32c_hw(uint32_t crc, const void *buf, size_t len);

#endif
