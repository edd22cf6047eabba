/*
 * keyfile.h — the rule for files that hold a private key (the WireGuard key
 * in private_key_file, the TLS key in tls.key), as ssh applies it to its own
 * keys: a regular file that neither group nor others may access in any way
 * (mode 0600 or 0400), owned by the daemon's effective user or by root.
 * Anything looser is refused with the file, its mode or owner and the fix.
 *
 * The check works on an open descriptor, so a caller that reads the key from
 * the same descriptor reads exactly the file that was checked.
 */
#ifndef STRAIT_KEYFILE_H
#define STRAIT_KEYFILE_H

#include <stdbool.h>
#include <stddef.h>

/* Checks the file open on fd; path only names it in err. */
bool keyfile_check_fd(int fd, const char *path, char *err, size_t errlen)
	__attribute__((warn_unused_result));

/*
 * Opens path read-only (following symlinks: the rule applies to the file
 * they lead to) and checks it. Returns the descriptor, which the caller
 * closes, or -1 with the reason in err.
 */
int keyfile_open(const char *path, char *err, size_t errlen)
	__attribute__((warn_unused_result));

#endif
