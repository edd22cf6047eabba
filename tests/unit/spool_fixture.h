/*
 * spool_fixture.h — the spool unit tests' fixture: each test works in a
 * spool directory of its own under a fresh mkdtemp() directory, removed
 * afterwards. Include after cmocka.h; static functions for one test binary.
 */
#ifndef STRAIT_TEST_SPOOL_FIXTURE_H
#define STRAIT_TEST_SPOOL_FIXTURE_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct fx {
	char tmp[64];
	char dir[96];
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	strcpy(f->tmp, "/tmp/strait-spool-XXXXXX");
	assert_non_null(mkdtemp(f->tmp));
	snprintf(f->dir, sizeof(f->dir), "%s/spool", f->tmp);
	*state = f;
	return 0;
}

static void rm_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char path[512];

	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		unlink(path);
	}
	closedir(d);
	rmdir(dir);
}

static int teardown(void **state)
{
	struct fx *f = *state;

	rm_dir(f->dir);
	rm_dir(f->tmp);
	free(f);
	return 0;
}

#endif
