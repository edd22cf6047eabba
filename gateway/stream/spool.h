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
 * A record counts once it was fsynced: by spool_sync(), or by spool_open(),
 * which fsyncs every segment it keeps (and the directory) before it counts
 * them durable. Segments roll at segment_bytes; a segment goes away when the
 * sink acknowledged every transaction it holds (spool_release()).
 *
 * The floor. Releasing forgets: the floor is the stream position the oldest
 * record held continues from — every transaction that ends at or before it
 * was released (or never spooled: the source began reading after it). It is
 * kept in the file "floor" of the directory (28 bytes: "STRAITFL", u32
 * format version 1, u32 reserved 0, u64 floor, u32 CRC32C of the 24 bytes
 * before it), replaced durably (a temporary file, fsynced, renamed, the
 * directory fsynced); a new spool, or one without the file, has floor 0. A
 * sink that resumes below the floor would miss the transactions in between:
 * spool_seek() refuses it (SPOOL_SEEK_GAP), it never skips them. Records
 * still on disk that belong to a transaction ending at or before the floor
 * — the end of one whose start was in a released segment, or whole segments
 * a release had not removed yet when the process died (spool_open() removes
 * those) — are never read again.
 *
 * Failed fsync. After an fsync fails, the kernel may have dropped the dirty
 * pages while the page cache still shows them: reading them back and
 * fsyncing again would count as durable what may not be on disk. So a failed
 * fsync is never retried: the spool fails for good (spool_fsync_failed(),
 * spool_recovery.fsync_failed), and the caller must stop the stream rather
 * than reopen the spool and trust what it reads.
 *
 * Whole transactions only: a record whose commit_end_lsn is 0 holds part of a
 * transaction that a later record finishes. What follows the last record that
 * ends a transaction is incomplete: spool_open() drops it on recovery (with a
 * torn or corrupt tail record: the CRC tells), and spool_truncate_incomplete()
 * drops it when the source restarts in the middle of a transaction. The source
 * then reads it again from the slot, which never confirmed it.
 *
 * Cursors. A cursor reads the records in order: spool_cursor_seek()
 * positions it for a resume position, spool_cursor_read() returns records,
 * spool_cursor_prev() says where the record at the cursor continues from.
 * A spool has several, independent of each other (one sender per
 * destination site reading what one slot read): each has its own file
 * descriptor and read window, and only its own calls move it. Appending
 * never moves one. The cursor functions that take the spool (spool_seek(),
 * spool_seek_from(), spool_read(), spool_cursor_prev_lsn(),
 * spool_unread_bytes()) use its default cursor, which spool_open() makes
 * and spool_close() frees. Releasing is by acknowledged LSN, for the
 * spool as a whole: with several senders the caller releases at the lowest
 * acknowledgement of their sinks (and keeps what the earliest reach-back
 * needs), so every record a release removes is one every sink has. A cursor
 * in a segment that goes moves on (see spool_release()); no cursor reads
 * what was released, and none keeps a removed segment open.
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
	uint32_t flags;              /* SPOOL_FLAG_* */
};

/*
 * The body ends inside a message that the next record goes on with (a
 * message larger than a record, in pieces). Such a record ends no
 * transaction.
 */
#define SPOOL_FLAG_CONTINUES 0x1u

/* A record's place: its segment and its offset there. */
struct spool_pos {
	uint64_t seq;
	uint64_t off;
};

/* What spool_open() found and did. */
struct spool_recovery {
	uint64_t records;            /* whole records kept */
	uint64_t bytes;              /* their size on disk, segment headers included */
	uint64_t dropped_bytes;      /* cut from the tail: torn, corrupt or incomplete */
	uint64_t dropped_records;    /* whole records among them (incomplete transactions; the
	                                segments after a damaged one are removed unread) */
	uint64_t released_bytes;     /* segments a release had not removed yet (their
	                                transactions end at or before the floor): removed */
	bool torn;                   /* damage: the tail ended inside a record or a segment
	                                header, a length or a CRC was bad */
	bool fsync_failed;           /* spool_open() failed on an fsync: do not open again (see above) */
	char detail[256];            /* what was wrong and where ("segment 0000000000000003.seg at 81920: CRC mismatch"), "" when nothing */
};

/*
 * Opens or creates the spool in dir (made with mode 0700, parents must
 * exist), recovering it as described above: at the first damage, that
 * segment is cut there and every later one removed; segments whose
 * transactions all end at or before the floor are removed; every segment
 * kept and the directory are fsynced. NULL on failure with a message in err
 * (an I/O error while recovering drops nothing; a floor file that is damaged
 * is an error too, never floor 0; after a failed fsync rec->fsync_failed is
 * set). rec may be NULL. The spool holds an exclusive flock on dir until
 * spool_close(): a second spool_open() of the same directory fails, in this
 * process or another. segment_bytes 0 means 64 MiB.
 */
struct spool *spool_open(const char *dir, uint64_t segment_bytes, struct spool_recovery *rec,
		char *err, size_t errlen);
/* Closes the spool and frees its cursors, spool_cursor_new()'s too. */
void spool_close(struct spool *sp);

/*
 * Appends one record (not yet durable). False on I/O error (message in err);
 * the spool is then unusable until reopened (for good when the error was a
 * failed fsync of the segment it rolled from: spool_fsync_failed()).
 */
bool spool_append(struct spool *sp, const struct spool_meta *meta, const void *body, size_t len,
		char *err, size_t errlen);

/*
 * Makes everything appended durable (fsync; the directory too after a new
 * segment). False on failure (message in err): the spool is then unusable,
 * and after a failed fsync for good (spool_fsync_failed()).
 */
bool spool_sync(struct spool *sp, char *err, size_t errlen);

/*
 * True once an fsync of this spool failed (spool_sync(), a segment roll in
 * spool_append(), spool_truncate_incomplete(), writing the floor): what was
 * appended may not be on disk even if it reads back. Stop the stream for
 * good; do not reopen the spool and trust it.
 */
bool spool_fsync_failed(const struct spool *sp);

/*
 * Drops the records after the last one that ends a transaction (see above),
 * durably. Every cursor past the new end moves to it, so what is appended
 * next is read next.
 */
bool spool_truncate_incomplete(struct spool *sp, char *err, size_t errlen);

/*
 * The commit_end_lsn of the last record that ends a transaction: appended /
 * durable; never below the floor (0 for a new spool). Releasing keeps them;
 * a spool reopened empty starts at its floor.
 */
uint64_t spool_end_lsn(const struct spool *sp);
uint64_t spool_durable_lsn(const struct spool *sp);

/* The floor (see above): 0 for a new spool; it only grows. */
uint64_t spool_floor_lsn(const struct spool *sp);

/*
 * Raises the floor to lsn, durably (a floor at or above lsn stays as it is:
 * never lowered). For a spool that holds no record, when the source starts
 * reading the slot from its confirmed position lsn: the sink must not resume
 * below it. spool_end_lsn() and spool_durable_lsn() become at least lsn.
 * False with a message in err: the spool holds records (nothing changed), or
 * an I/O error (the spool is then failed, like after an append error).
 */
bool spool_set_floor(struct spool *sp, uint64_t lsn, char *err, size_t errlen);

/*
 * The sink committed everything up to acked_lsn: removes, oldest first, every
 * segment whose last transaction ends at or before acked_lsn (for a
 * transaction that goes on into the next segment: where it ends there) — the
 * one being appended to as well (appending goes on in a new segment), so a
 * spool the sink has caught up with holds nothing. Before it removes any, it
 * raises the floor durably to where the last transaction the removed
 * segments hold (in whole or in part) ends. Returns the number of segments
 * removed, or -1 on an I/O error (message in err; the spool is then failed,
 * like after an append error; segments already removed stay removed, the
 * floor covers them). Every cursor in a removed segment moves to the oldest
 * record held that the floor does not cover (the sink has what it skips:
 * every record skipped ends at or before acked_lsn), its prev to the floor;
 * its next read goes on from there, and a sink that lacks what was skipped
 * sees the jump (the prev of what it gets is above what it has) and seeks
 * again, which is then SPOOL_SEEK_GAP. What a cursor read last stays valid.
 * spool_end_lsn() and spool_durable_lsn() keep their values, or rise to the
 * floor (the sink may acknowledge records not fsynced yet).
 */
int spool_release(struct spool *sp, uint64_t acked_lsn, char *err, size_t errlen);

/*
 * As spool_release(), but keeps every segment from keep's on (NULL: none):
 * a resend may have to reach back to the record there (spool_seek_from()).
 */
int spool_release_keep(struct spool *sp, uint64_t acked_lsn, const struct spool_pos *keep,
		char *err, size_t errlen);

enum spool_seek_result {
	SPOOL_SEEK_OK,               /* cursor positioned, *prev_lsn set */
	SPOOL_SEEK_GAP,              /* resume_lsn is below the floor: what is between is gone */
	SPOOL_SEEK_ERROR,            /* I/O error or a record that fails its CRC */
};

/*
 * Positions the cursor at the first record the sink still needs when it
 * resumes after resume_lsn: just after the last record whose commit_end_lsn
 * is in (0, resume_lsn] (the oldest record held when there is none). A
 * record that also holds transactions at or before resume_lsn is sent whole;
 * the sink skips what it has. *prev_lsn is where that first record continues
 * from: the commit_end_lsn of the last record before the cursor that ends a
 * transaction, or the floor when the cursor is at the oldest record held
 * (never below the floor).
 *
 * resume_lsn 0 means the sink has nothing yet: served from the oldest record
 * held, whatever the floor. A resume_lsn in (0, floor) is SPOOL_SEEK_GAP:
 * the transactions that end after resume_lsn up to the floor were released,
 * the sink cannot get them from here; err names both positions.
 * SPOOL_SEEK_ERROR: err says. Either way the cursor does not move.
 */
enum spool_seek_result spool_seek(struct spool *sp, uint64_t resume_lsn, uint64_t *prev_lsn,
		char *err, size_t errlen);

/*
 * As spool_seek(), then back to the record at from when it is before that
 * (NULL: no reaching back): the start of something the sink needs again
 * whole even though later transactions ended at or before resume_lsn (a
 * streamed transaction still open there). *prev_lsn says where that record
 * continues from. SPOOL_SEEK_GAP when the spool no longer holds from.
 */
enum spool_seek_result spool_seek_from(struct spool *sp, uint64_t resume_lsn,
		const struct spool_pos *from, uint64_t *prev_lsn, char *err, size_t errlen);

/* The place of the record spool_append() appended last (valid until it is released). */
struct spool_pos spool_last_pos(const struct spool *sp);

/*
 * Reads the record at the cursor and advances it. Returns 1 with *meta and
 * *body (valid until the next spool_* call) set, 0 at the end of what was
 * appended, -1 on an I/O error or a record that fails its CRC (err says).
 */
int spool_read(struct spool *sp, struct spool_meta *meta, const uint8_t **body, size_t *len,
		char *err, size_t errlen);

/*
 * Where the record at the cursor (the one spool_read() returns next)
 * continues from: the commit_end_lsn of the last record before the cursor
 * that ends a transaction, or the floor when there is none. Set by
 * spool_seek() and spool_release(), advanced by spool_read(); call it before
 * spool_read() to stamp the record read.
 */
uint64_t spool_cursor_prev_lsn(const struct spool *sp);

/*
 * Cursors of one's own (see above). Each function does for cursor c what
 * the function of the default cursor without "cursor_" in its name does,
 * as documented there (spool_cursor_prev(): spool_cursor_prev_lsn()).
 */
struct spool_cursor;

/*
 * A new cursor at the oldest record held that the floor does not cover (as
 * after spool_cursor_seek(c, 0)), or at the end of an empty spool; its
 * prev is the floor. NULL when out of memory or on an I/O error (err says).
 * Free it with spool_cursor_free() (NULL: nothing) before or with
 * spool_close(), which frees every cursor still there.
 */
struct spool_cursor *spool_cursor_new(struct spool *sp, char *err, size_t errlen);
void spool_cursor_free(struct spool_cursor *c);

enum spool_seek_result spool_cursor_seek(struct spool_cursor *c, uint64_t resume_lsn,
		uint64_t *prev_lsn, char *err, size_t errlen);
enum spool_seek_result spool_cursor_seek_from(struct spool_cursor *c, uint64_t resume_lsn,
		const struct spool_pos *from, uint64_t *prev_lsn, char *err, size_t errlen);

/*
 * The body it returns lies in c's own buffer: valid until c's next
 * spool_cursor_seek(), spool_cursor_seek_from(), spool_cursor_read() or
 * spool_cursor_free(), or spool_close(). Other cursors' calls, appending,
 * syncing, releasing (even the record's segment) and cutting an incomplete
 * tail leave it as it is.
 */
int spool_cursor_read(struct spool_cursor *c, struct spool_meta *meta, const uint8_t **body,
		size_t *len, char *err, size_t errlen);

uint64_t spool_cursor_prev(const struct spool_cursor *c);
uint64_t spool_cursor_unread_bytes(const struct spool_cursor *c);

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
