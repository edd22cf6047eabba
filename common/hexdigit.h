/*
 * hexdigit.h — the value of one hexadecimal digit, either case: 0..15, or -1
 * when c is not one. For the parsers of LSNs and of keys in hex.
 */
#ifndef STRAIT_HEXDIGIT_H
#define STRAIT_HEXDIGIT_H

static inline int hex_digit_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

#endif
