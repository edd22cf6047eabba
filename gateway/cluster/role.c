/*
 * role.c — the site's role and the cluster epoch, persisted in the state
 * directory (see role.h).
 *
 * NOTES
 * The file is text so that an operator can read it (and, with the daemon
 * stopped, repair it), and strict so that damage is noticed: unknown keys,
 * duplicates, a missing key, a format other than 1, a bad number or an
 * unknown role all refuse it. It is always replaced whole through a
 * temporary file, so a crash leaves either the old or the new version, never
 * a mix; a leftover temporary file is simply removed at the next start.
 */
#include "gateway/cluster/role.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"

#define ROLE_FORMAT_VERSION 1

struct role {
	char *dir;
	struct role_state st;
	bool persisted;
	role_change_fn on_change;
	void *on_change_arg;
};

void role_on_change(struct role *r, role_change_fn fn, void *arg)
{
	r->on_change = fn;
	r->on_change_arg = arg;
}

/* After the state moved from before: tell the observer when the role or the epoch changed. */
static void role_changed(struct role *r, const struct role_state *before)
{
	if (r->on_change && (before->role != r->st.role || before->epoch != r->st.epoch))
		r->on_change(r->on_change_arg, r->st.role, r->st.epoch);
}

static const char *const role_names[] = {
	[ROLE_PRIMARY] = "primary",
	[ROLE_REPLICA] = "replica",
	[ROLE_FENCED] = "fenced",
};

const char *role_name(enum role_kind role)
{
	if ((size_t)role < sizeof(role_names) / sizeof(role_names[0]))
		return role_names[role];
	return "unknown";
}

bool role_parse_name(const char *name, enum role_kind *out)
{
	for (size_t i = 0; i < sizeof(role_names) / sizeof(role_names[0]); i++) {
		if (strcmp(name, role_names[i]) == 0) {
			*out = (enum role_kind)i;
			return true;
		}
	}
	return false;
}

/* ------------------------------------------------------------ the text */

bool role_state_format(const struct role_state *st, char *buf, size_t len)
{
	int n = snprintf(buf, len,
			 "# strait site role and cluster epoch: written by straitd, "
			 "do not edit while it runs\n"
			 "format=%d\ncluster=%s\nsite=%s\nrole=%s\nepoch=%" PRIu64 "\n%s%s%s",
			 ROLE_FORMAT_VERSION, st->cluster, st->site, role_name(st->role), st->epoch,
			 st->primary[0] ? "primary=" : "", st->primary, st->primary[0] ? "\n" : "");

	return n > 0 && (size_t)n < len;
}

static void role_err(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void role_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static bool role_is_blank(char c)
{
	return c == ' ' || c == '\t';
}

/* Trims blanks around [*s, *e). */
static void role_trim(const char **s, const char **e)
{
	while (*s < *e && role_is_blank(**s))
		(*s)++;
	while (*e > *s && role_is_blank((*e)[-1]))
		(*e)--;
}

static bool role_parse_u64(const char *s, size_t n, uint64_t *out)
{
	uint64_t v = 0;

	if (n == 0 || n > 20)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		if (v > (UINT64_MAX - (uint64_t)(s[i] - '0')) / 10)
			return false;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	*out = v;
	return true;
}

/* primary is optional (the last key): unknown when it is missing */
enum role_key { RK_FORMAT, RK_CLUSTER, RK_SITE, RK_ROLE, RK_EPOCH, RK_PRIMARY, RK_COUNT };

static const char *const role_keys[RK_COUNT] = { "format", "cluster", "site", "role", "epoch",
						 "primary" };

static bool role_parse_name_value(const char *v, size_t n, char *out, int line, const char *key,
		char *err, size_t errlen)
{
	if (n == 0 || n > ROLE_NAME_MAX) {
		role_err(err, errlen, "line %d: %s must have 1 to %d characters", line, key,
			 ROLE_NAME_MAX);
		return false;
	}
	memcpy(out, v, n);
	out[n] = '\0';
	return true;
}

/* The key that [ks, ke) names; RK_COUNT when none. */
static size_t role_key_find(const char *ks, const char *ke)
{
	size_t k;

	for (k = 0; k < RK_COUNT; k++) {
		if ((size_t)(ke - ks) == strlen(role_keys[k]) &&
		    memcmp(ks, role_keys[k], (size_t)(ke - ks)) == 0)
			break;
	}
	return k;
}

/* Key k's value [vs, ve), of line line, into st. */
static bool role_set_value(struct role_state *st, enum role_key k, const char *vs,
		const char *ve, int line, char *err, size_t errlen)
{
	int shown = (int)(ve - vs > 64 ? 64 : ve - vs);   /* of the value, in messages */

	switch (k) {
	case RK_FORMAT: {
		uint64_t v;

		if (!role_parse_u64(vs, (size_t)(ve - vs), &v) || v != ROLE_FORMAT_VERSION) {
			role_err(err, errlen, "line %d: unsupported format \"%.*s\" (expected %d)",
				 line, shown, vs, ROLE_FORMAT_VERSION);
			return false;
		}
		break;
	}
	case RK_CLUSTER:
		return role_parse_name_value(vs, (size_t)(ve - vs), st->cluster, line, "cluster",
					     err, errlen);
	case RK_SITE:
		return role_parse_name_value(vs, (size_t)(ve - vs), st->site, line, "site",
					     err, errlen);
	case RK_PRIMARY:
		return role_parse_name_value(vs, (size_t)(ve - vs), st->primary, line, "primary",
					     err, errlen);
	case RK_ROLE: {
		char name[16] = "";
		size_t n = (size_t)(ve - vs);

		if (n < sizeof(name))
			memcpy(name, vs, n);
		if (n >= sizeof(name) || !role_parse_name(name, &st->role)) {
			role_err(err, errlen, "line %d: unknown role \"%.*s\" "
				 "(expected primary, replica or fenced)", line, shown, vs);
			return false;
		}
		break;
	}
	case RK_EPOCH:
		if (!role_parse_u64(vs, (size_t)(ve - vs), &st->epoch) || st->epoch == 0) {
			role_err(err, errlen, "line %d: invalid epoch \"%.*s\" "
				 "(expected a whole number from 1 to %" PRIu64 ")", line,
				 shown, vs, UINT64_MAX);
			return false;
		}
		break;
	case RK_COUNT:
		break;
	}
	return true;
}

bool role_state_parse(const char *text, size_t len, struct role_state *out,
		char *err, size_t errlen)
{
	bool seen[RK_COUNT] = { false };
	struct role_state st;
	const char *p = text, *end = text + len;
	int line = 0;

	memset(&st, 0, sizeof(st));
	if (len > ROLE_FILE_MAX) {
		role_err(err, errlen, "it is larger than %d bytes", ROLE_FILE_MAX);
		return false;
	}
	if (memchr(text, '\0', len)) {
		role_err(err, errlen, "it contains a NUL byte");
		return false;
	}
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end, *ks = p, *ke, *vs, *ve, *eq;
		size_t k;

		line++;
		p = nl ? nl + 1 : end;
		ke = le;
		role_trim(&ks, &ke);
		if (ks == ke || *ks == '#')
			continue;
		eq = memchr(ks, '=', (size_t)(ke - ks));
		if (!eq) {
			role_err(err, errlen, "line %d: expected key=value", line);
			return false;
		}
		vs = eq + 1;
		ve = ke;
		ke = eq;
		role_trim(&ks, &ke);
		role_trim(&vs, &ve);
		k = role_key_find(ks, ke);
		if (k == RK_COUNT) {
			role_err(err, errlen, "line %d: unknown key \"%.*s\"", line,
				 (int)(ke - ks > 64 ? 64 : ke - ks), ks);
			return false;
		}
		if (seen[k]) {
			role_err(err, errlen, "line %d: %s given twice", line, role_keys[k]);
			return false;
		}
		seen[k] = true;
		if (!role_set_value(&st, (enum role_key)k, vs, ve, line, err, errlen))
			return false;
	}
	for (size_t k = 0; k < RK_PRIMARY; k++) {
		if (!seen[k]) {
			role_err(err, errlen, "%s is missing", role_keys[k]);
			return false;
		}
	}
	*out = st;
	return true;
}

/* ------------------------------------------------------------ the file */

int role_state_read(const char *path, struct role_state *out, char *err, size_t errlen)
{
	char buf[ROLE_FILE_MAX + 1], why[256];
	size_t len = 0;
	int fd, ret = -1;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		role_err(err, errlen, "could not open state file \"%s\": %s", path, strerror(errno));
		return -1;
	}
	for (;;) {
		ssize_t n = read(fd, buf + len, sizeof(buf) - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			role_err(err, errlen, "could not read state file \"%s\": %s", path,
				 strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len == sizeof(buf))
			break;   /* one byte over the limit is enough to refuse it */
	}
	if (!role_state_parse(buf, len, out, why, sizeof(why))) {
		role_err(err, errlen, "state file \"%s\" is corrupt: %s", path, why);
		goto out;
	}
	ret = 1;
out:
	close(fd);
	return ret;
}

static bool role_write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return false;
		buf += n;
		len -= (size_t)n;
	}
	return true;
}

bool role_state_write(const char *dir, const struct role_state *st, char *err, size_t errlen)
{
	char text[512], *path = NULL, *tmp = NULL;
	bool ok = false;
	int fd = -1;

	if (!role_state_format(st, text, sizeof(text))) {
		role_err(err, errlen, "could not format the role state");
		return false;
	}
	if (asprintf(&path, "%s/%s", dir, ROLE_FILE) < 0) {
		path = NULL;
		role_err(err, errlen, "out of memory");
		goto out;
	}
	if (asprintf(&tmp, "%s/%s", dir, ROLE_FILE_TMP) < 0) {
		tmp = NULL;
		role_err(err, errlen, "out of memory");
		goto out;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		role_err(err, errlen, "could not create file \"%s\": %s", tmp, strerror(errno));
		goto out;
	}
	if (!role_write_all(fd, text, strlen(text))) {
		role_err(err, errlen, "could not write file \"%s\": %s", tmp, strerror(errno));
		goto out;
	}
	if (fsync(fd) < 0)
		log_fatal("could not fsync file \"%s\": %s", tmp, strerror(errno));
	if (close(fd) < 0) {
		fd = -1;
		role_err(err, errlen, "could not close file \"%s\": %s", tmp, strerror(errno));
		goto out;
	}
	fd = -1;
	if (rename(tmp, path) < 0) {
		role_err(err, errlen, "could not rename file \"%s\" to \"%s\": %s", tmp, path,
			 strerror(errno));
		goto out;
	}
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		role_err(err, errlen, "could not open directory \"%s\": %s", dir, strerror(errno));
		goto out;
	}
	if (fsync(fd) < 0)
		log_fatal("could not fsync directory \"%s\": %s", dir, strerror(errno));
	ok = true;
out:
	if (fd >= 0)
		close(fd);
	if (!ok && tmp)
		unlink(tmp);
	free(path);
	free(tmp);
	return ok;
}

/* --------------------------------------------------------- the object */

static bool role_copy_name(char *dst, const char *src)
{
	size_t n = strlen(src);

	if (n == 0 || n > ROLE_NAME_MAX)
		return false;
	memcpy(dst, src, n + 1);
	return true;
}

struct role *role_load(const char *state_dir, const char *cluster, const char *site,
		const char *initial_role, const char *initial_primary)
{
	struct role *r = calloc(1, sizeof(*r));
	char err[512], *path = NULL, *tmp = NULL;
	struct role_state st;
	int found;

	if (!r || !(r->dir = strdup(state_dir)) ||
	    asprintf(&path, "%s/%s", state_dir, ROLE_FILE) < 0 ||
	    asprintf(&tmp, "%s/%s", state_dir, ROLE_FILE_TMP) < 0) {
		log_error("out of memory loading the role state");
		goto fail;
	}
	if (unlink(tmp) == 0)
		log_notice("removed \"%s\" left by an interrupted write", tmp);
	found = role_state_read(path, &st, err, sizeof(err));
	if (found < 0) {
		log_error("%s (fix it or restore it; removing it starts this site over as the "
			  "configuration's role at epoch 1)", err);
		goto fail;
	}
	if (found > 0) {
		if (strcmp(st.cluster, cluster) != 0 || strcmp(st.site, site) != 0) {
			log_error("state file \"%s\" belongs to site \"%s\" of cluster \"%s\", "
				  "not to site \"%s\" of cluster \"%s\"", path, st.site, st.cluster,
				  site, cluster);
			goto fail;
		}
		log_info("role %s at epoch %" PRIu64 " (from \"%s\")", role_name(st.role), st.epoch,
			 path);
	} else {
		memset(&st, 0, sizeof(st));
		if (!role_copy_name(st.cluster, cluster) || !role_copy_name(st.site, site) ||
		    (initial_primary && !role_copy_name(st.primary, initial_primary))) {
			log_error("could not create state file \"%s\": invalid cluster or site name",
				  path);
			goto fail;
		}
		if (!role_parse_name(initial_role, &st.role) || st.role == ROLE_FENCED) {
			log_error("could not create state file \"%s\": invalid initial role \"%s\"",
				  path, initial_role);
			goto fail;
		}
		st.epoch = 1;
		if (!role_state_write(state_dir, &st, err, sizeof(err))) {
			log_error("%s", err);
			goto fail;
		}
		log_info("role %s at epoch 1 (first start: from the configuration)",
			 role_name(st.role));
	}
	r->st = st;
	r->persisted = true;
	free(path);
	free(tmp);
	return r;
fail:
	free(path);
	free(tmp);
	role_free(r);
	return NULL;
}

void role_free(struct role *r)
{
	if (!r)
		return;
	free(r->dir);
	free(r);
}

enum role_kind role_current(const struct role *r)
{
	return r->st.role;
}

uint64_t role_epoch(const struct role *r)
{
	return r->st.epoch;
}

bool role_persisted(const struct role *r)
{
	return r->persisted;
}

const char *role_primary(const struct role *r)
{
	return r->st.primary;
}

bool role_set(struct role *r, enum role_kind role, uint64_t epoch, const char *primary,
		const char *reason)
{
	struct role_state next = r->st;
	char err[512];

	next.primary[0] = '\0';
	if (primary && !role_copy_name(next.primary, primary)) {
		log_error("could not make this site %s at epoch %" PRIu64 ": invalid primary \"%s\"",
			  role_name(role), epoch, primary);
		return false;
	}
	if (epoch < r->st.epoch) {
		log_error("could not make this site %s at epoch %" PRIu64 ": the epoch is %" PRIu64
			  " already", role_name(role), epoch, r->st.epoch);
		return false;
	}
	next.role = role;
	next.epoch = epoch;
	if (!role_state_write(r->dir, &next, err, sizeof(err))) {
		log_error("could not make this site %s at epoch %" PRIu64 ": %s", role_name(role),
			  epoch, err);
		return false;
	}
	log_notice("role %s at epoch %" PRIu64 " -> %s at epoch %" PRIu64 " (%s)",
		   role_name(r->st.role), r->st.epoch, role_name(role), epoch,
		   reason ? reason : "no reason given");
	{
		struct role_state before = r->st;

		r->st = next;
		r->persisted = true;
		role_changed(r, &before);
	}
	return true;
}

bool role_heard_epoch(struct role *r, const char *peer, uint64_t epoch)
{
	struct role_state next = r->st, before;
	char err[512];

	if (epoch <= r->st.epoch)
		return false;
	next.epoch = epoch;
	if (r->st.role == ROLE_PRIMARY) {
		next.role = ROLE_FENCED;
		next.primary[0] = '\0';
		log_warning("site \"%s\" is at epoch %" PRIu64 ", higher than this site's %" PRIu64
			    ": another site is primary now; stepping down from primary to fenced",
			    peer, epoch, r->st.epoch);
	} else {
		log_notice("site \"%s\" is at epoch %" PRIu64 ", higher than this site's %" PRIu64
			   ": taking it, staying %s", peer, epoch, r->st.epoch,
			   role_name(r->st.role));
	}
	before = r->st;
	r->st = next;
	if (role_state_write(r->dir, &next, err, sizeof(err))) {
		r->persisted = true;
	} else {
		log_error("could not persist the step-down to epoch %" PRIu64 ": %s", epoch, err);
		r->persisted = false;
	}
	role_changed(r, &before);
	return true;
}

bool role_claim_wins(const char *a, const char *b)
{
	return strcmp(a, b) < 0;
}

bool role_heard_primary(struct role *r, const char *peer, uint64_t epoch)
{
	struct role_state next = r->st, before;
	char err[512];

	if (r->st.role != ROLE_PRIMARY || epoch != r->st.epoch ||
	    !role_claim_wins(peer, r->st.site) || !role_copy_name(next.primary, peer))
		return false;
	next.role = ROLE_FENCED;
	log_warning("site \"%s\" is primary at epoch %" PRIu64 " too; its name sorts before \"%s\", "
		    "so it stays primary: stepping down from primary to fenced", peer, epoch,
		    r->st.site);
	before = r->st;
	r->st = next;
	if (role_state_write(r->dir, &next, err, sizeof(err))) {
		r->persisted = true;
	} else {
		log_error("could not persist the step-down at epoch %" PRIu64 ": %s", epoch, err);
		r->persisted = false;
	}
	role_changed(r, &before);
	return true;
}
