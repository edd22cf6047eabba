/*
 * tls_data.h — the TLS test data (tests/unit/data/tls) as straitd may use
 * it: git checks files out 0644, but the private key rule (common/keyfile.h)
 * refuses a key that group or others can read. tls_data_private_copy()
 * copies every file of the directory to a fresh temporary directory, the keys
 * (*.key) with mode 0600, points dir at the copy and removes it at exit.
 * For the unit tests' main() only (it asserts nothing, it aborts).
 */
#ifndef STRAIT_TEST_TLS_DATA_H
#define STRAIT_TEST_TLS_DATA_H

#include <dirent.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tls_data_copy_dir[64];

static void tls_data_remove_copy(void)
{
	char path[4200];
	struct dirent *e;
	DIR *d = opendir(tls_data_copy_dir);

	while (d && (e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", tls_data_copy_dir, e->d_name);
		unlink(path);
	}
	if (d)
		closedir(d);
	rmdir(tls_data_copy_dir);
}

static void tls_data_copy_file(const char *from, const char *to, mode_t mode)
{
	char buf[8192];
	ssize_t n;
	int in = open(from, O_RDONLY | O_CLOEXEC);
	int out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);

	if (in < 0 || out < 0)
		abort();
	while ((n = read(in, buf, sizeof(buf))) > 0)
		if (write(out, buf, (size_t)n) != n)
			abort();
	if (n < 0 || fchmod(out, mode) < 0)
		abort();
	close(in);
	close(out);
}

static void tls_data_private_copy(char *dir, size_t len)
{
	char from[4200], to[4200];
	struct dirent *e;
	DIR *d;

	snprintf(tls_data_copy_dir, sizeof(tls_data_copy_dir), "/tmp/strait-tls-XXXXXX");
	if (!mkdtemp(tls_data_copy_dir) || !(d = opendir(dir)))
		abort();
	while ((e = readdir(d)) != NULL) {
		size_t n = strlen(e->d_name);
		bool key = n > 4 && strcmp(e->d_name + n - 4, ".key") == 0;

		if (e->d_name[0] == '.')
			continue;
		snprintf(from, sizeof(from), "%s/%s", dir, e->d_name);
		snprintf(to, sizeof(to), "%s/%s", tls_data_copy_dir, e->d_name);
		tls_data_copy_file(from, to, key ? 0600 : 0644);
	}
	closedir(d);
	atexit(tls_data_remove_copy);
	snprintf(dir, len, "%s", tls_data_copy_dir);
}

#endif
