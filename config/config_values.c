/*
 * config_values.c — sizes, durations and rates: the number-with-unit values of
 * strait.yaml.
 *
 * Numbers are whole (no fractions, no signs, no exponents) so a value means one
 * thing; every multiplication is overflow-checked. kB, MB, GB and TB are powers
 * of 1000 and KiB..TiB powers of 1024, as the units say. Printing picks the
 * largest unit that divides the value exactly, so what is printed parses back
 * to the very same number.
 */
#include "config/config_int.h"

#include <ctype.h>
#include <inttypes.h>
#include <string.h>

struct unit {
	const char *name;
	uint64_t mult;
};

/* Largest first: the order in which printing tries them. */
static const struct unit size_units[] = {
	{ "TiB", UINT64_C(1) << 40 },
	{ "TB", UINT64_C(1000000000000) },
	{ "GiB", UINT64_C(1) << 30 },
	{ "GB", UINT64_C(1000000000) },
	{ "MiB", UINT64_C(1) << 20 },
	{ "MB", UINT64_C(1000000) },
	{ "KiB", UINT64_C(1) << 10 },
	{ "kB", UINT64_C(1000) },
	{ "B", 1 },
};

static const struct unit duration_units[] = {
	{ "d", UINT64_C(86400000) },
	{ "h", UINT64_C(3600000) },
	{ "min", UINT64_C(60000) },  /* accepted, PostgreSQL's spelling; "m" is printed */
	{ "m", UINT64_C(60000) },
	{ "s", UINT64_C(1000) },
	{ "ms", 1 },
};

#define N_UNITS(a) (sizeof(a) / sizeof((a)[0]))

/*
 * "<digits>[ ]<unit>". A bare number is accepted when bare_mult is not 0 and
 * then multiplied by it.
 */
static bool parse_with_unit(const char *text, const struct unit *units, size_t n_units,
		uint64_t bare_mult, uint64_t *out)
{
	const char *p = text;
	uint64_t n = 0;

	if (!isdigit((unsigned char)*p))
		return false;
	while (isdigit((unsigned char)*p)) {
		unsigned d = (unsigned)(*p - '0');

		if (n > (UINT64_MAX - d) / 10)
			return false;
		n = n * 10 + d;
		p++;
	}
	if (*p == ' ' && p[1] != '\0')
		p++;
	if (*p == '\0') {
		if (bare_mult == 0 || n > UINT64_MAX / bare_mult)
			return false;
		*out = n * bare_mult;
		return true;
	}
	for (size_t i = 0; i < n_units; i++) {
		if (strcmp(p, units[i].name) != 0)
			continue;
		if (n > UINT64_MAX / units[i].mult)
			return false;
		*out = n * units[i].mult;
		return true;
	}
	return false;
}

bool config_parse_size(const char *text, config_size *out)
{
	uint64_t v;

	if (!text || !parse_with_unit(text, size_units, N_UNITS(size_units), 1, &v))
		return false;
	*out = v;
	return true;
}

bool config_parse_duration(const char *text, config_msec *out)
{
	uint64_t v;

	if (!text)
		return false;
	/* A bare number is ambiguous (seconds? milliseconds?); only 0 means the same in all. */
	if (strcmp(text, "0") == 0) {
		*out = 0;
		return true;
	}
	if (!parse_with_unit(text, duration_units, N_UNITS(duration_units), 0, &v))
		return false;
	*out = v;
	return true;
}

bool config_parse_rate(const char *text, struct config_rate *out)
{
	char num[CONFIG_VALUE_BUF];
	size_t len;
	config_size v;

	if (!text)
		return false;
	if (strcmp(text, "unlimited") == 0) {
		out->unlimited = true;
		out->bytes_per_sec = 0;
		return true;
	}
	if (strcmp(text, "0") == 0) {
		out->unlimited = false;
		out->bytes_per_sec = 0;
		return true;
	}
	len = strlen(text);
	if (len < 3 || len - 2 >= sizeof(num) || strcmp(text + len - 2, "/s") != 0)
		return false;
	memcpy(num, text, len - 2);
	num[len - 2] = '\0';
	if (!config_parse_size(num, &v))
		return false;
	out->unlimited = false;
	out->bytes_per_sec = v;
	return true;
}

static void format_with_unit(char *buf, size_t len, uint64_t v, const struct unit *units,
		size_t n_units, const char *zero)
{
	if (v == 0) {
		snprintf(buf, len, "%s", zero);
		return;
	}
	for (size_t i = 0; i < n_units; i++) {
		/* "min" is only an accepted spelling. */
		if (strcmp(units[i].name, "min") == 0)
			continue;
		if (v % units[i].mult == 0) {
			snprintf(buf, len, "%" PRIu64 "%s", v / units[i].mult, units[i].name);
			return;
		}
	}
	snprintf(buf, len, "%" PRIu64, v);
}

void config_format_size(char *buf, size_t len, config_size v)
{
	format_with_unit(buf, len, v, size_units, N_UNITS(size_units), "0B");
}

void config_format_duration(char *buf, size_t len, config_msec v)
{
	format_with_unit(buf, len, v, duration_units, N_UNITS(duration_units), "0s");
}

void config_format_rate(char *buf, size_t len, const struct config_rate *rate)
{
	char size[CONFIG_VALUE_BUF];

	if (rate->unlimited) {
		snprintf(buf, len, "unlimited");
		return;
	}
	if (rate->bytes_per_sec == 0) {
		snprintf(buf, len, "0");
		return;
	}
	config_format_size(size, sizeof(size), rate->bytes_per_sec);
	snprintf(buf, len, "%s/s", size);
}
