/*
 * be32.h — the big-endian u32 that frames every message of a batch body
 * (and pgoutput's own fields): one reader for the slot reader, the relation
 * cache, the sink's joiner and the apply.
 */
#ifndef STRAIT_BE32_H
#define STRAIT_BE32_H

#include <stdint.h>

static inline uint32_t be32_load(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

#endif
