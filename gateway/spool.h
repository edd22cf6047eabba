/*
 * spool.h — a stream's durable spool: the batches its source read from the
 * slot, kept on local disk until the sink has committed them.
 *
 * Layout: one directory per stream (STATE_DIR/spool/<stream>/), holding
 * append-only segment files named by a 16-hex-digit sequence number
 * ("0000000000000001.seg"). A segment starts with a 16-byte header ("STRAITSP",
 * u32 format version 1, u32 reserved 0) and holds records; each record is
 *
 *     u32 length of what follows the CRC   (little-endian, like the rest)
 *     u32 CRC32C of the meta and the body
 *     meta: first_lsn u64, commit_end_lsn u64, commit_time_us i64,
 *           spooled_at_us i64, transactions u32, flags u32
 *     body: the batch body, as the source cut it
 *
 * (the length counts the meta and the body, so it is 40 or more). Records go
 * in commit order: a commit_end_lsn that is not 0 is never below an earlier
 * one (spool_seek() relies on it).
 *
 * A record counts once spool_sync() has fsynced it. Segments roll at
 * segment_bytes; a segment goes away when the sink acknowledged every
 * transaction it holds (spool_release()).
 *
 * Whole transactions only: a record whose commit_end_lsn is 0 holds part of a
 * transaction that a later record finishes. What follows the last record that
 * ends a transaction is incomplete: spool_open() drops it on recovery (with a
 * torn or corrupt tail record: the CRC tells), and spool_truncate_incomplete()
 * drops it when the source restarts in the middle of a transaction. The source
 * then reads it again from the slot, which never confirmed it.
 *
 * One reader cursor (the sender): spool_seek() positions it for a resume
 * position, spool_read() returns records in order. Appending never moves it.
 *
 * Not thread-safe; plain blocking file I/O (fsync included).
 */
#ifndef STRAIT_SPOOL_H
#define STRAIT_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct spool;

/* Largest record spool_parse_record() accepts (meta and body). */
#define SPOOL_RECORD_MAX (256u * 1024u * 1024u)

struct spool_meta {
	uint64_t first_lsn;          /* WAL start of the record's first message (0: a continuation) */
	uint64_t commit_end_lsn;     /* end LSN of the last whole transaction in it, 0 if none */
	int64_t commit_time_us;      /* that transaction's commit time, µs since the Unix epoch */
	int64_t spooled_at_us;       /* when it was appended (wall clock, µs) */
	uint32_t transactions;       /* commits in the record */
	uint32_t flags;              /* reserved, 0 */
};

/* What spool_open() found and did. */
struct spool_recovery {
	uint64_t records;            /* whole records kept */
	uint64_t bytes;              /* their size on disk, segment headers included */
	uint64_t dropped_bytes;      /* cut from the tail: torn, corrupt or incomplete */
	uint64_t dropped_records;    /* whole records among them (incomplete transactions; the
	                                segments after a damaged one are removed unread) */
	bool torn;                   /* damage: the tail ended inside a record or a segment
	                                header, a length or a CRC was bad */
	char detail[256];            /* what was wrong and where ("segment 0000000000000003.seg at 81920: CRC mismatch"), "" when nothing */
};

/*
 * Opens or creates the spool in dir (made with mode 0700, parents must
 * exist), recovering it as described above: at the first damage, that
 * segment is cut there and every later one removed. NULL on failure with a
 * message in err (an I/O error while recovering drops nothing). rec may be
 * NULL. The spool holds an exclusive flock on dir until spool_close(): a
 * second spool_open() of the same directory fails, in this process or
 * another. segment_bytes 0 means 64 MiB.
 */
struct spool *spool_open(const char *dir, uint64_t segment_bytes, struct spool_recovery *rec,
		char *err, size_t errlen);
void spool_close(struct spool *sp);

/*
 * Appends one record (not yet durable). False on I/O error (message in err);
 * the spool is then unusable until reopened.
 */
bool spool_append(struct spool *sp, const struct spool_meta *meta, const void *body, size_t len,
		char *err, size_t errlen);

/* Makes everything appended durable (fsync; the directory too after a new segment). */
bool spool_sync(struct spool *sp, char *err, size_t errlen);

/*
 * Drops the records after the last one that ends a transaction (see above),
 * durably. A cursor past the new end moves to it, so what is appended next is
 * read next.
 */
bool spool_truncate_incomplete(struct spool *sp, char *err, size_t errlen);

/*
 * The commit_end_lsn of the last record that ends a transaction: appended /
 * durable. 0 if none. Releasing keeps them; a spool reopened empty starts at 0.
 */
uint64_t spool_end_lsn(const struct spool *sp);
uint64_t spool_durable_lsn(const struct spool *sp);

/*
 * The sink committed everything up to acked_lsn: removes, oldest first, every
 * segment whose last transaction ends at or before acked_lsn (for a
 * transaction that goes on into the next segment: where it ends there) — the
 * one being appended to as well (appending goes on in a new segment), so a
 * spool the sink has caught up with holds nothing. Returns the number of
 * segments removed. A cursor in a removed segment moves to the start of the
 * first segment left (the sink has what it skips). spool_end_lsn() and
 * spool_durable_lsn() keep their values.
 */
unsigned spool_release(struct spool *sp, uint64_t acked_lsn);

/*
 * Positions the cursor at the first record the sink still needs when it
 * resumes after resume_lsn: just after the last record whose commit_end_lsn
 * is in (0, resume_lsn] (the start when there is none). A record that also
 * holds transactions at or before resume_lsn is sent whole; the sink skips
 * what it has.
 */
bool spool_seek(struct spool *sp, uint64_t resume_lsn, char *err, size_t errlen);

/*
 * Reads the record at the cursor and advances it. Returns 1 with *meta and
 * *body (valid until the next spool_* call) set, 0 at the end of what was
 * appended, -1 on an I/O error or a record that fails its CRC (err says).
 */
int spool_read(struct spool *sp, struct spool_meta *meta, const uint8_t **body, size_t *len,
		char *err, size_t errlen);

/* Bytes on disk (segment headers included), records, and the oldest record's spooled_at_us (0 when empty). */
uint64_t spool_bytes(const struct spool *sp);
uint64_t spool_records(const struct spool *sp);
int64_t spool_oldest_us(const struct spool *sp);

/*
 * Record bytes appended at the cursor's position or after it (segment headers
 * not counted): what the sender has yet to send.
 */
uint64_t spool_unread_bytes(const struct spool *sp);

/*
 * Record parsing, shared with the fuzz target: parses one record at
 * buf[0..len). Returns its total size (header included) with *meta, *body and
 * *body_len set; 0 when buf holds less than a whole record (torn); -1 when it
 * is malformed (bad length, CRC mismatch).
 */
long spool_parse_record(const uint8_t *buf, size_t len, struct spool_meta *meta,
		const uint8_t **body, size_t *body_len);

#endif
