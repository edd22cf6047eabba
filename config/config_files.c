/*
 * config_files.c — `straitctl check-config --files`: opens every file the
 * config names and checks it is a readable regular file and, for the secrets
 * (the WireGuard private key and the TLS key), that neither group nor others
 * can read it. Problems point at the key that names the file.
 */
#include "config/config_int.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct named_file {
	const char *key;
	const char *path;
	bool secret;
};

static bool check_one(const struct strait_config *cfg, const struct named_file *f,
		struct config_diags *diags)
{
	const struct config_where *w = config_where_find(cfg->source, f->key);
	const char *file = cfg->path ? cfg->path : "<config>";
	int line = w ? w->line : 0, column = w ? w->column : 0;
	struct stat st;
	bool ok = false;
	int fd;

	fd = open(f->path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		config_diag_add(diags, cfg->source, file, line, column, f->key,
				"could not open file \"%s\": %s", f->path, strerror(errno));
		goto out;
	}
	if (fstat(fd, &st) < 0) {
		config_diag_add(diags, cfg->source, file, line, column, f->key,
				"could not stat file \"%s\": %s", f->path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		config_diag_add(diags, cfg->source, file, line, column, f->key,
				"\"%s\" is not a regular file", f->path);
		goto out;
	}
	if (f->secret && (st.st_mode & 077)) {
		config_diag_add(diags, cfg->source, file, line, column, f->key,
				"file \"%s\" holds a secret but group or others have access (mode %04o); "
				"use chmod 600", f->path, (unsigned)(st.st_mode & 07777));
		goto out;
	}
	ok = true;
out:
	if (fd >= 0)
		close(fd);
	return ok;
}

bool config_check_files(const struct strait_config *cfg, struct config_diags *diags)
{
	struct named_file files[5];
	bool ok = true;

	if (!cfg)
		return false;
	files[0] = (struct named_file){ "private_key_file", cfg->private_key_file, true };
	files[1] = (struct named_file){ "tls.ca", cfg->tls.ca, false };
	files[2] = (struct named_file){ "tls.cert", cfg->tls.cert, false };
	files[3] = (struct named_file){ "tls.key", cfg->tls.key, true };
	files[4] = (struct named_file){ "tls.crl", cfg->tls.crl, false };
	for (size_t i = 0; i < 5; i++)
		if (files[i].path && !check_one(cfg, &files[i], diags))
			ok = false;
	return ok;
}
