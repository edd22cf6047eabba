/*
 * durations.c — how long role changes took on this site: the text of
 * STATE_DIR/role-durations (format, parse, the estimate a dry run gives;
 * see failover.h) and the file itself, rewritten whole through a temporary
 * file each time a switchover, promotion or failover completes.
 *
 * The file only feeds an estimate: one that cannot be read or written is
 * logged and changes nothing else.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "config/config.h"
#include "gateway/cluster/failover_int.h"

/* ----------------------------------------------------- measured durations */

static const char *const fo_change_names[FAILOVER_CHANGES] = {
	[FAILOVER_CHANGE_SWITCHOVER] = "switchover",
	[FAILOVER_CHANGE_PROMOTION] = "promotion",
	[FAILOVER_CHANGE_FAILOVER] = "failover",
};

const char *failover_change_name(enum failover_change c)
{
	return c < FAILOVER_CHANGES ? fo_change_names[c] : "?";
}

bool failover_durations_format(const struct failover_durations *d, char *buf, size_t len)
{
	size_t used;
	int n;

	n = snprintf(buf, len, "# strait: how long role changes took on this site, written by "
		     "straitd\nformat=1\n");
	if (n < 0 || (size_t)n >= len)
		return false;
	used = (size_t)n;
	for (int c = 0; c < FAILOVER_CHANGES; c++) {
		if (d->at[c] <= 0)
			continue;
		n = snprintf(buf + used, len - used, "%s=%.3f %" PRId64 "\n", fo_change_names[c],
			     d->seconds[c], d->at[c]);
		if (n < 0 || (size_t)n >= len - used)
			return false;
		used += (size_t)n;
	}
	return true;
}

bool failover_durations_parse(const char *text, struct failover_durations *out, char *err,
		size_t errlen)
{
	const char *p = text;
	bool format = false;
	int line = 0;

	*out = (struct failover_durations){ 0 };
	while (*p) {
		const char *nl = strchr(p, '\n');
		size_t n = nl ? (size_t)(nl - p) : strlen(p);
		char buf[256], *eq, *end;
		int c;

		line++;
		if (n >= sizeof(buf)) {
			snprintf(err, errlen, "line %d is too long", line);
			return false;
		}
		memcpy(buf, p, n);
		buf[n] = '\0';
		p = nl ? nl + 1 : p + n;
		if (buf[0] == '#' || buf[0] == '\0')
			continue;
		eq = strchr(buf, '=');
		if (!eq) {
			snprintf(err, errlen, "line %d: expected key=value", line);
			return false;
		}
		*eq++ = '\0';
		if (strcmp(buf, "format") == 0) {
			if (strcmp(eq, "1") != 0) {
				snprintf(err, errlen, "line %d: unknown format %s", line, eq);
				return false;
			}
			format = true;
			continue;
		}
		for (c = 0; c < FAILOVER_CHANGES && strcmp(buf, fo_change_names[c]) != 0; c++)
			;
		if (c == FAILOVER_CHANGES) {
			snprintf(err, errlen, "line %d: unknown key %s", line, buf);
			return false;
		}
		errno = 0;
		out->seconds[c] = strtod(eq, &end);
		if (errno || end == eq || *end != ' ' || !(out->seconds[c] >= 0)) {
			snprintf(err, errlen, "line %d: expected seconds and a time", line);
			return false;
		}
		eq = end + 1;
		out->at[c] = strtoll(eq, &end, 10);
		if (errno || end == eq || *end != '\0' || out->at[c] <= 0) {
			snprintf(err, errlen, "line %d: expected seconds and a time", line);
			return false;
		}
	}
	if (!format) {
		snprintf(err, errlen, "no format line");
		return false;
	}
	return true;
}

bool failover_durations_expected(const struct failover_durations *d, enum failover_change *which,
		double *seconds, int64_t *at)
{
	enum failover_change best = FAILOVER_CHANGES;

	/* this site's promotion, alone or in a switchover, is the work a failover does */
	if (d->at[FAILOVER_CHANGE_FAILOVER] > 0)
		best = FAILOVER_CHANGE_FAILOVER;
	if (d->at[FAILOVER_CHANGE_PROMOTION] > 0 &&
	    (best == FAILOVER_CHANGES || d->at[FAILOVER_CHANGE_PROMOTION] > d->at[best]))
		best = FAILOVER_CHANGE_PROMOTION;
	if (best == FAILOVER_CHANGES && d->at[FAILOVER_CHANGE_SWITCHOVER] > 0)
		best = FAILOVER_CHANGE_SWITCHOVER;
	if (best == FAILOVER_CHANGES)
		return false;
	*which = best;
	*seconds = d->seconds[best];
	*at = d->at[best];
	return true;
}

/* ------------------------------------------ the durations file (role-durations) */

/* 1 loaded, 0 none measured yet, -1 unreadable (err says why). */
int fo_durations_load(const struct failover *f, struct failover_durations *d, char *err,
		size_t errlen)
{
	char path[4096], text[1024];
	size_t n;
	FILE *in;

	*d = (struct failover_durations){ 0 };
	snprintf(path, sizeof(path), "%s/%s", f->cfg->state_dir, FAILOVER_DURATIONS_FILE);
	in = fopen(path, "r");
	if (!in) {
		if (errno == ENOENT)
			return 0;
		snprintf(err, errlen, "could not open \"%s\": %s", path, strerror(errno));
		return -1;
	}
	n = fread(text, 1, sizeof(text) - 1, in);
	text[n] = '\0';
	if (ferror(in) || !feof(in)) {
		snprintf(err, errlen, "could not read \"%s\" (or it is too large)", path);
		fclose(in);
		return -1;
	}
	fclose(in);
	if (!failover_durations_parse(text, d, err, errlen)) {
		*d = (struct failover_durations){ 0 };
		return -1;
	}
	return 1;
}

/*
 * Keeps how long a role change took, for the next dry run's estimate. Only
 * an estimate: a failure is logged and changes nothing else.
 */
void fo_record_duration(struct failover *f, enum failover_change c, double seconds)
{
	struct failover_durations d;
	char err[4608], text[1024], path[4096], tmp[4096];
	FILE *out;
	bool ok;

	if (fo_durations_load(f, &d, err, sizeof(err)) < 0)
		log_warning("%s: starting it anew", err);
	d.seconds[c] = seconds;
	d.at[c] = time(NULL);
	snprintf(path, sizeof(path), "%s/%s", f->cfg->state_dir, FAILOVER_DURATIONS_FILE);
	snprintf(tmp, sizeof(tmp), "%s/%s", f->cfg->state_dir, FAILOVER_DURATIONS_FILE_TMP);
	if (!failover_durations_format(&d, text, sizeof(text)))
		return;
	out = fopen(tmp, "w");
	ok = out && fputs(text, out) >= 0 && fflush(out) == 0 && fsync(fileno(out)) == 0;
	if (out && fclose(out) != 0)
		ok = false;
	if (!ok || rename(tmp, path) != 0) {
		log_warning("could not write \"%s\": %s", path, strerror(errno));
		unlink(tmp);
		return;
	}
	log_info("the %s took %.2f s (kept in \"%s\")", failover_change_name(c), seconds, path);
}
