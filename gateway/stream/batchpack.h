/*
 * batchpack.h — a batch's pgoutput messages packed for zstd, and unpacked.
 *
 * zstd finds repeated bytes, not arithmetic. The LSNs, commit times and
 * transaction ids of Begin and Commit grow a little with every transaction,
 * so zstd pays for most of their eight bytes each time; a message's u32
 * length and each column's cost it a match or literals of their own. The
 * codec packs a batch before zstd sees it, reversibly, rewriting what zstd
 * cannot model:
 *
 *   - a message's length as a varint;
 *   - Begin: its final LSN, commit time and xid as differences from the
 *     previous Commit's end LSN and commit time and the previous Begin's
 *     xid; Commit: its LSNs and commit time as differences from its Begin's;
 *   - Relation: a message the stream carried before, byte for byte, as a
 *     reference to it (the spool repeats Relation messages so that a sink
 *     can resume at any record; within one connection the sink has them);
 *   - Insert, Update, Delete: each column's length as a varint, and a text
 *     value that is a plain decimal integer as its number.
 *
 * Packed, a batch is a sequence of items:
 *
 *     varint n (n >= 1), n bytes     a message as it is
 *     0x00, tag, fields              a packed message:
 *       'B'  zz(lsn - end lsn), zz(time - time), zz32(xid - xid)
 *       'C'  flags, zz(commit lsn - begin lsn), zz(end lsn - commit lsn),
 *            zz(time - begin time)
 *       'R'  u32: the Relation message last carried with these four bytes
 *            after its type byte (its OID, or in a streamed block its xid)
 *       'I' 'U' 'D'  u8 h (4 or 8), the h bytes after the type byte as they
 *            are (OID, or xid and OID), then the tuples the type has, each
 *            a kind byte ('N', 'K' or 'O'), u16 columns and the columns:
 *            'n' | 'u' | 't' or 'b', varint length, bytes |
 *            'i', zz(value): a 't' value that is a decimal integer
 *
 * Varints are LEB128 (at most 10 bytes); zz is zigzag, over 64 bits (zz32:
 * 32), differences wrap. Packing never makes a batch longer.
 *
 * State: the last Begin's and Commit's fields and a table of Relation
 * messages (BATCHPACK_RELATIONS slots, by those four bytes; a message over
 * BATCHPACK_RELATION_MAX is not kept). Every Begin, Commit and Relation
 * message of a packed batch moves it, whichever form it traveled in, so
 * both ends move it alike; both keep it across batches and reset it with
 * the codec's zstd state. After a failed unpack the state is undefined
 * until the next reset.
 *
 * Ownership: the packer owns its output buffer; the pointer a call returns
 * is valid until the next call. Return conventions: bool, false with a
 * message in err.
 */
#ifndef STRAIT_BATCHPACK_H
#define STRAIT_BATCHPACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BATCHPACK_MUSTCHECK __attribute__((warn_unused_result))

/* Relation messages kept, and the largest one kept (bounds the memory: 2 MiB). */
#define BATCHPACK_RELATIONS 256u
#define BATCHPACK_RELATION_MAX (8u * 1024u)

struct batchpack;

/* NULL when out of memory. */
struct batchpack *batchpack_new(void);
void batchpack_free(struct batchpack *bp);

/* Forgets the state (both ends do it when their zstd state starts over). */
void batchpack_reset(struct batchpack *bp);

/*
 * Whether body is a sequence of whole messages, each under 256 MiB: only
 * such a batch can be packed (a piece of a larger message cannot).
 */
bool batchpack_packable(const uint8_t *body, size_t len);

/* Packs a packable body: *out holds *out_len bytes, at most len. False: out of memory. */
bool batchpack_pack(struct batchpack *bp, const uint8_t *body, size_t len,
		const uint8_t **out, size_t *out_len) BATCHPACK_MUSTCHECK;

/*
 * Unpacks a packed batch into at most max bytes. False when it is malformed,
 * refers to a Relation message the stream did not carry, exceeds max, or
 * memory runs out.
 */
bool batchpack_unpack(struct batchpack *bp, const uint8_t *in, size_t len, size_t max,
		const uint8_t **out, size_t *out_len, char *err, size_t errlen) BATCHPACK_MUSTCHECK;

#endif
