/*
 * config_time.c — the calendar values of a schedule: day ranges ("mon-fri",
 * "sat,sun", "fri-mon") and hour windows ("08:00-18:00", "22:00-06:00").
 *
 * Day names are the three-letter English ones, in any letter case. A range may
 * wrap past Sunday. Hour windows are [start, end) in local minutes; an end at or
 * before the start crosses midnight, 24:00 may only end a window, and a window
 * whose start equals its end is refused as ambiguous (00:00-24:00 is the whole
 * day).
 */
#include "config/config_int.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

static const char *const day_names[7] = { "sun", "mon", "tue", "wed", "thu", "fri", "sat" };

static int day_index(const char *p, size_t len)
{
	if (len != 3)
		return -1;
	for (int i = 0; i < 7; i++)
		if (strncasecmp(p, day_names[i], 3) == 0)
			return i;
	return -1;
}

bool config_parse_days(const char *text, config_days *out)
{
	config_days mask = 0;
	const char *p = text;

	if (!text)
		return false;
	for (;;) {
		const char *start, *end, *dash;
		int a, b;

		while (*p == ' ')
			p++;
		start = p;
		while (*p != '\0' && *p != ',')
			p++;
		end = p;
		while (end > start && end[-1] == ' ')
			end--;
		dash = memchr(start, '-', (size_t)(end - start));
		if (dash) {
			const char *a_end = dash, *b_start = dash + 1;

			while (a_end > start && a_end[-1] == ' ')
				a_end--;
			while (b_start < end && *b_start == ' ')
				b_start++;
			a = day_index(start, (size_t)(a_end - start));
			b = day_index(b_start, (size_t)(end - b_start));
			if (a < 0 || b < 0)
				return false;
			for (int d = a;; d = (d + 1) % 7) {
				mask |= (config_days)(1u << d);
				if (d == b)
					break;
			}
		} else {
			a = day_index(start, (size_t)(end - start));
			if (a < 0)
				return false;
			mask |= (config_days)(1u << a);
		}
		if (*p == '\0')
			break;
		p++;  /* the comma: another item must follow */
	}
	*out = mask;
	return true;
}

void config_format_days(char *buf, size_t len, config_days days)
{
	/* Monday first, as a working week reads; runs of three or more become ranges. */
	static const int order[7] = { 1, 2, 3, 4, 5, 6, 0 };
	size_t used = 0;
	int i = 0;

	if (len == 0)
		return;
	buf[0] = '\0';
	while (i < 7) {
		int j;

		if (!(days & (1u << order[i]))) {
			i++;
			continue;
		}
		j = i;
		while (j + 1 < 7 && (days & (1u << order[j + 1])))
			j++;
		for (int k = i; k <= j; k++) {
			const char *sep = used ? "," : "";
			int n;

			if (j - i >= 2) {
				n = snprintf(buf + used, len - used, "%s%s-%s", sep,
						day_names[order[i]], day_names[order[j]]);
				k = j;
			} else {
				n = snprintf(buf + used, len - used, "%s%s", sep, day_names[order[k]]);
			}
			if (n < 0 || (size_t)n >= len - used)
				return;
			used += (size_t)n;
		}
		i = j + 1;
	}
}

/* "H:MM" or "HH:MM"; returns minutes, or -1. allow_24 admits 24:00. */
static int parse_clock(const char *p, size_t len, bool allow_24)
{
	int h = 0, m;
	size_t i = 0;

	if (len < 4 || len > 5)
		return -1;
	while (i < len && isdigit((unsigned char)p[i]))
		h = h * 10 + (p[i++] - '0');
	if (i < 1 || i > 2 || i + 3 != len || p[i] != ':' ||
	    !isdigit((unsigned char)p[i + 1]) || !isdigit((unsigned char)p[i + 2]))
		return -1;
	m = (p[i + 1] - '0') * 10 + (p[i + 2] - '0');
	if (m > 59)
		return -1;
	if (h == 24 && m == 0 && allow_24)
		return 24 * 60;
	if (h > 23)
		return -1;
	return h * 60 + m;
}

bool config_parse_window_why(const char *text, struct config_window *out, const char **why)
{
	const char *dash, *a_end, *b_start, *end;
	int a, b;

	*why = NULL;
	if (!text)
		return false;
	dash = strchr(text, '-');
	if (!dash)
		return false;
	a_end = dash;
	while (a_end > text && a_end[-1] == ' ')
		a_end--;
	b_start = dash + 1;
	while (*b_start == ' ')
		b_start++;
	end = b_start + strlen(b_start);
	a = parse_clock(text, (size_t)(a_end - text), false);
	b = parse_clock(b_start, (size_t)(end - b_start), true);
	if (a < 0 || b < 0)
		return false;
	if (a == b) {
		*why = "start and end are the same; use 00:00-24:00 for the whole day";
		return false;
	}
	out->start_min = (uint16_t)a;
	out->end_min = (uint16_t)b;
	return true;
}

bool config_parse_window(const char *text, struct config_window *out)
{
	const char *why;

	return config_parse_window_why(text, out, &why);
}

void config_format_window(char *buf, size_t len, const struct config_window *w)
{
	snprintf(buf, len, "%02u:%02u-%02u:%02u", w->start_min / 60u, w->start_min % 60u,
			w->end_min / 60u, w->end_min % 60u);
}

bool config_window_contains(const struct config_window *w, unsigned m)
{
	if (w->start_min < w->end_min)
		return m >= w->start_min && m < w->end_min;
	/* Crosses midnight (or, for start == end, covers the whole day). */
	return m >= w->start_min || m < w->end_min;
}
