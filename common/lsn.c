/*
 * lsn.c — an LSN as text (see lsn.h).
 */
#include "common/lsn.h"

#include <stdio.h>

#include "common/hexdigit.h"

char *lsn_format(char buf[LSN_BUF], uint64_t lsn)
{
	snprintf(buf, LSN_BUF, LSN_FMT, LSN_ARGS(lsn));
	return buf;
}

/* One to eight hex digits ending at stop; returns the position of stop or NULL. */
static const char *lsn_hex32(const char *s, char stop, uint32_t *out)
{
	uint32_t v = 0;
	int n = 0, d;

	for (; *s != stop; s++, n++) {
		d = hex_digit_value(*s);
		if (d < 0 || n == 8)
			return NULL;
		v = v << 4 | (uint32_t)d;
	}
	if (n == 0)
		return NULL;
	*out = v;
	return s;
}

bool lsn_parse(const char *text, uint64_t *out)
{
	uint32_t hi, lo;
	const char *s = text;

	if (!s)
		return false;
	s = lsn_hex32(s, '/', &hi);
	if (!s)
		return false;
	s = lsn_hex32(s + 1, '\0', &lo);
	if (!s)
		return false;
	*out = (uint64_t)hi << 32 | lo;
	return true;
}
