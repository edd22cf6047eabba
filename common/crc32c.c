/*
 * crc32c.c — CRC-32C: portable slicing-by-8 and the SSE4.2 instruction,
 * chosen at run time. See crc32c.h for the calling convention.
 *
 * Slicing-by-8: table[0][b] is the CRC of the single byte b; table[k][b] is
 * the CRC of b followed by k zero bytes. Eight table lookups then advance the
 * CRC over eight input bytes at once. The tables are computed once, on first
 * use, under pthread_once. Input words are assembled from bytes, so the code
 * is independent of the host's byte order and of alignment.
 */
#include "common/crc32c.h"

#include <pthread.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CRC32C_HAVE_SSE42 1
#include <nmmintrin.h>
#endif

#define CRC32C_POLY 0x82F63B78u    /* Castagnoli, bit-reflected */

static uint32_t crc32c_table[8][256];
static pthread_once_t crc32c_table_once = PTHREAD_ONCE_INIT;

static void
crc32c_build_tables(void)
{
	for (uint32_t b = 0; b < 256; b++) {
		uint32_t c = b;

		for (int i = 0; i < 8; i++)
			c = (c >> 1) ^ ((c & 1u) ? CRC32C_POLY : 0u);
		crc32c_table[0][b] = c;
	}
	for (uint32_t b = 0; b < 256; b++) {
		uint32_t c = crc32c_table[0][b];

		for (int k = 1; k < 8; k++) {
			c = (c >> 8) ^ crc32c_table[0][c & 0xffu];
			crc32c_table[k][b] = c;
		}
	}
}

uint32_t
crc32c_sw(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	uint32_t c = ~crc;

	pthread_once(&crc32c_table_once, crc32c_build_tables);

	while (len >= 8) {
		uint32_t lo = (uint32_t)p[0] | (uint32_t)p[1] << 8 |
			(uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;

		c ^= lo;
		c = crc32c_table[7][c & 0xffu] ^
			crc32c_table[6][(c >> 8) & 0xffu] ^
			crc32c_table[5][(c >> 16) & 0xffu] ^
			crc32c_table[4][c >> 24] ^
			crc32c_table[3][p[4]] ^
			crc32c_table[2][p[5]] ^
			crc32c_table[1][p[6]] ^
			crc32c_table[0][p[7]];
		p += 8;
		len -= 8;
	}
	while (len-- > 0)
		c = (c >> 8) ^ crc32c_table[0][(c ^ *p++) & 0xffu];
	return ~c;
}

#ifdef CRC32C_HAVE_SSE42

__attribute__((target("sse4.2")))
static uint32_t
crc32c_sse42(uint32_t crc, const uint8_t *p, size_t len)
{
	uint64_t c = (uint32_t)~crc;

	/* Bytes up to an 8-byte boundary, then whole words, then the tail. */
	while (len > 0 && ((uintptr_t)p & 7u) != 0) {
		c = _mm_crc32_u8((uint32_t)c, *p++);
		len--;
	}
	while (len >= 8) {
		uint64_t w;

		memcpy(&w, p, sizeof(w));
		c = _mm_crc32_u64(c, w);
		p += 8;
		len -= 8;
	}
	while (len-- > 0)
		c = _mm_crc32_u8((uint32_t)c, *p++);
	return ~(uint32_t)c;
}

bool
crc32c_hw_available(void)
{
	return __builtin_cpu_supports("sse4.2");
}

uint32_t
crc32c_hw(uint32_t crc, const void *buf, size_t len)
{
	if (!crc32c_hw_available())
		return crc32c_sw(crc, buf, len);
	return crc32c_sse42(crc, buf, len);
}

uint32_t
crc32c(uint32_t crc, const void *buf, size_t len)
{
	if (__builtin_cpu_supports("sse4.2"))
		return crc32c_sse42(crc, buf, len);
	return crc32c_sw(crc, buf, len);
}

#else /* !CRC32C_HAVE_SSE42 */

bool
crc32c_hw_available(void)
{
	return false;
}

uint32_t
crc32c_hw(uint32_t crc, const void *buf, size_t len)
{
	return crc32c_sw(crc, buf, len);
}

uint32_t
crc32c(uint32_t crc, const void *buf, size_t len)
{
	return crc32c_sw(crc, buf, len);
}

#endif
