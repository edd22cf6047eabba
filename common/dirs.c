/*
 * dirs.c — making and fsyncing the state directory's subdirectories (see
 * dirs.h).
 */
#include "common/dirs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static bool make_one(const char *dir, char *err, size_t errlen)
{
	if (mkdir(dir, 0700) == 0 || errno == EEXIST)
		return true;
	snprintf(err, errlen, "could not create directory \"%s\": %s", dir, strerror(errno));
	return false;
}

bool dirs_make(const char *dir, char *err, size_t errlen)
{
	char parent[PATH_MAX];
	char *slash;

	snprintf(parent, sizeof(parent), "%s", dir);
	slash = strrchr(parent, '/');
	if (slash && slash != parent) {
		*slash = '\0';
		if (!make_one(parent, err, errlen))
			return false;
	}
	return make_one(dir, err, errlen);
}

bool dirs_sync(const char *dir, char *err, size_t errlen)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	bool ok;

	if (fd < 0) {
		snprintf(err, errlen, "could not open directory \"%s\": %s", dir, strerror(errno));
		return false;
	}
	ok = fsync(fd) == 0;
	if (!ok)
		snprintf(err, errlen, "could not fsync directory \"%s\": %s", dir, strerror(errno));
	close(fd);
	return ok;
}
