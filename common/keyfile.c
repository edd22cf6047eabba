/*
 * keyfile.c — the private key file rule (see keyfile.h).
 */
#include "common/keyfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

bool keyfile_check_fd(int fd, const char *path, char *err, size_t errlen)
{
	struct stat st;
	uid_t self = geteuid();

	if (fstat(fd, &st) < 0) {
		snprintf(err, errlen, "could not stat private key file \"%s\": %s", path,
			 strerror(errno));
		return false;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "private key file \"%s\" is not a regular file", path);
		return false;
	}
	if (st.st_mode & 077) {
		snprintf(err, errlen,
			 "private key file \"%s\" has group or world access (mode %04o); "
			 "run: chmod 600 %s", path, (unsigned)(st.st_mode & 07777), path);
		return false;
	}
	if (st.st_uid != self && st.st_uid != 0) {
		snprintf(err, errlen,
			 "private key file \"%s\" belongs to uid %u, not to straitd's user "
			 "(uid %u) or root; run: chown %u %s", path, (unsigned)st.st_uid,
			 (unsigned)self, (unsigned)self, path);
		return false;
	}
	return true;
}

int keyfile_open(const char *path, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);

	if (fd < 0) {
		snprintf(err, errlen, "could not open private key file \"%s\": %s", path,
			 strerror(errno));
		return -1;
	}
	if (!keyfile_check_fd(fd, path, err, errlen)) {
		close(fd);
		return -1;
	}
	return fd;
}
