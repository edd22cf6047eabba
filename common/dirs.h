/*
 * dirs.h — directories of the state directory's own files.
 *
 * dirs_make() makes dir and its parent when they are missing (mode 0700),
 * so a subsystem's directory under STATE_DIR (spill/<stream>,
 * retain/<stream>) comes with the one that holds it. dirs_sync() fsyncs a
 * directory, so that a file created, renamed or removed in it survives a
 * crash. Both return false with the reason in err.
 */
#ifndef STRAIT_DIRS_H
#define STRAIT_DIRS_H

#include <stdbool.h>
#include <stddef.h>

bool dirs_make(const char *dir, char *err, size_t errlen);
bool dirs_sync(const char *dir, char *err, size_t errlen);

#endif
