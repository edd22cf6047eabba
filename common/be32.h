/*
 * be32.h — the big-endian u32 that frames every message of a batch body
 * (and pgoutput's own fields): one reader for the slot reader, the relation
 * cache, the sink's joiner and the apply (and the writer the parallel apply
 * needs to put records together again).
 */
#ifndef STRAIT_BE32_H
#define STRAIT_BE32_H

#include <stdint.h>

static inline uint32_t be32_load(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline void be32_store(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

#endif
