/*
 * diskspace.c — a disk's room by statvfs() (see diskspace.h).
 */
#include "common/diskspace.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>

bool disk_space_measure(const char *path, struct disk_space *out, char *err, size_t errlen)
{
	struct statvfs st;
	uint64_t used;

	if (statvfs(path, &st) < 0) {
		snprintf(err, errlen, "could not measure the disk of \"%s\": %s", path, strerror(errno));
		return false;
	}
	/* as df(1): used + available to unprivileged users is 100 % */
	used = (uint64_t)(st.f_blocks - st.f_bfree) * st.f_frsize;
	out->free = (uint64_t)st.f_bavail * st.f_frsize;
	out->size = used + out->free;
	return true;
}
