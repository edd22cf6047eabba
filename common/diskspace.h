/*
 * diskspace.h — measuring a disk's room, as df(1) counts it.
 *
 * "Free" is what unprivileged users may still write (f_bavail, as
 * PostgreSQL runs unprivileged) and a disk's size is used + that free
 * space, as df(1) counts Use%: "10 % free" is df's 90 %. The replicator
 * measures pg_wal's disk with it and the gateway the spool's; judging what
 * the figures mean is gateway/stream/diskwarn.h's.
 *
 * Ownership: plain values.
 */
#ifndef STRAIT_DISKSPACE_H
#define STRAIT_DISKSPACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A disk's room, in bytes (see "Free" above). */
struct disk_space {
	uint64_t free;
	uint64_t size;
};

/* statvfs() of path; false with the reason in err. */
bool disk_space_measure(const char *path, struct disk_space *out, char *err, size_t errlen);

#endif
