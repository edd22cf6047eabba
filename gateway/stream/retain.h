/*
 * retain.h — a replica's retained batches: the transactions of the primary
 * that the sink applied, kept for a while so that, after the primary is lost,
 * this site can serve them to a sibling replica that is behind (sibling
 * catch-up).
 *
 * Layout: a spool (spool.h) in a directory of its own
 * (STATE_DIR/retain/<stream>/), with 16 MiB segments, and a file "source"
 * naming the site whose LSNs the records carry (the name and a newline,
 * replaced durably). A reader serves it as it would a primary's spool:
 * spool_cursor_new() on retain_spool(), spool_cursor_seek() by LSN.
 *
 * Input: the bodies the sink hands to its apply engine, whole messages (u32
 * big-endian length, then a pgoutput message of protocol version 2, nothing
 * streamed): ordinary transactions in commit order, a transaction possibly
 * split over several bodies, a body possibly holding many.
 *
 * Records: each starts at a transaction boundary (the messages outside a
 * transaction that precede it included) and normally ends right after a
 * Commit: commit_end_lsn and commit_time_us are the last Commit's (Unix µs),
 * first_lsn is the final_lsn of its first Begin (0 when it starts inside a
 * transaction), transactions counts its Commits, spooled_at_us is the time
 * retain_take() was given. Small transactions share a record up to
 * RETAIN_RECORD_TARGET; every whole transaction taken is appended before
 * retain_take() returns, the unfinished one after the last Commit stays in
 * memory. An unfinished transaction that would grow past RETAIN_PIECE_BYTES
 * is appended in continuation records (commit_end_lsn 0; first_lsn its
 * Begin's for the first one, 0 after); a message larger than that is cut
 * into pieces of RETAIN_PIECE_BYTES, each piece that ends inside it flagged
 * SPOOL_FLAG_CONTINUES, the next one starting with its rest (msgjoin.h joins
 * them). Every record carries the Relation messages its changes need
 * (relcache.h), so a reader may start at any one.
 *
 * Nothing twice: a transaction whose Begin final_lsn is below
 * retain_end_lsn() was retained already (the apply takes it again after a
 * reconnect) and is dropped whole, but for its Relation and Type messages,
 * which go in front of the next transaction (pgoutput does not send them
 * again in that session).
 *
 * Errors: a function that fails leaves a message in err. After retain_take()
 * fails, nothing more is taken until retain_resume(), which also reopens a
 * spool that an I/O error left unusable; a spool whose fsync failed is
 * emptied rather than trusted (spool.h, "Failed fsync").
 *
 * Not thread-safe; plain blocking file I/O.
 */
#ifndef STRAIT_RETAIN_H
#define STRAIT_RETAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RETAIN_MUSTCHECK __attribute__((warn_unused_result))

struct retain;
struct spool;

/* Whole transactions are coalesced into one record until it is this big. */
#define RETAIN_RECORD_TARGET (64u * 1024u)
/* The largest piece of an unfinished transaction or of one message. */
#define RETAIN_PIECE_BYTES (8u * 1024u * 1024u)
/* Segment size: trimming frees space in steps of this. */
#define RETAIN_SEGMENT_BYTES (16u * 1024u * 1024u)
/* Checkpoints kept for trimming (see retain_trim()). */
#define RETAIN_CHECKPOINTS 4096u

/*
 * Opens or creates the retained batches in dir (it and its parent made
 * 0700 when missing). source: the site whose LSNs the records carry (the primary the sink
 * takes the stream from). A directory whose "source" file names another site,
 * or has none, is emptied first: LSNs of another server mean nothing here.
 * The spool's recovery drops a torn or unfinished tail. NULL on failure.
 */
struct retain *retain_open(const char *dir, const char *source, char *err, size_t errlen);
/* Closes the spool (and frees its cursors) and the retain. NULL: nothing. */
void retain_close(struct retain *r);

/*
 * The apply resumed after applied_lsn (its origin's position): what was
 * buffered of an unfinished transaction, and its continuation records, are
 * dropped (it comes again whole). A retain whose end is below applied_lsn
 * has a hole (a crash lost records the apply had committed, or it was never
 * given them): it is emptied, with floor applied_lsn, so a reader asking
 * below gets SPOOL_SEEK_GAP. This is also what the first call on a new, empty
 * retain does. Reopens a spool an I/O error left unusable first (which frees
 * its cursors: see retain_generation()). Takes retain_take() up again.
 */
bool retain_resume(struct retain *r, uint64_t applied_lsn, char *err, size_t errlen)
	RETAIN_MUSTCHECK;

/*
 * Takes body[0..len), whole messages as handed to the apply; now_us (wall
 * clock, µs) stamps the records appended. False on a malformed body
 * (checked whole before anything is taken: nothing is appended) or an I/O
 * error; then nothing more is taken until retain_resume().
 */
bool retain_take(struct retain *r, const uint8_t *body, size_t len, int64_t now_us,
		char *err, size_t errlen) RETAIN_MUSTCHECK;

/*
 * The apply dropped an unfinished transaction (it comes again whole): forgets
 * what is buffered of it and cuts the continuation records appended
 * (spool_truncate_incomplete()).
 */
bool retain_cut(struct retain *r, char *err, size_t errlen) RETAIN_MUSTCHECK;

/* Makes what was appended durable (spool_sync()). */
bool retain_sync(struct retain *r, char *err, size_t errlen) RETAIN_MUSTCHECK;

/*
 * Forgets the records spooled before now_us - keep_us and, when the spool
 * is over max_bytes (0: no limit), the oldest until it is not, releasing
 * whole segments (spool_release()). The LSNs to release at come from
 * checkpoints (commit_end_lsn, spooled_at_us) taken as records are
 * appended, at most one a second and one per segment, RETAIN_CHECKPOINTS at
 * most (every other one dropped when full); records found on disk by
 * retain_open() count as appended at the first now_us given after it (kept
 * longer, never shorter). Age never releases past hold_lsn (UINT64_MAX:
 * nothing held): what a site this one relays to has not committed yet;
 * max_bytes does. Returns the segments removed, -1 on an I/O error.
 */
int retain_trim(struct retain *r, int64_t now_us, int64_t keep_us, uint64_t max_bytes,
		uint64_t hold_lsn, char *err, size_t errlen) RETAIN_MUSTCHECK;

/*
 * The spool, for readers (spool_cursor_new() on it); NULL while reopening it
 * failed (retain_resume() tries again).
 */
struct spool *retain_spool(struct retain *r);
/*
 * Changes whenever retain_resume() replaces the spool, which frees every
 * cursor made on the one before: a reader compares it before using one.
 */
uint64_t retain_generation(const struct retain *r);

/* spool_end_lsn() and spool_floor_lsn() of the spool (0 without one). */
uint64_t retain_end_lsn(const struct retain *r);
uint64_t retain_floor_lsn(const struct retain *r);

/* The source site whose LSNs it holds, as given to retain_open(). */
const char *retain_source(const struct retain *r);

/*
 * Beside the spool, read and written without opening it (a reader must not
 * empty a directory of another source, as retain_open() would):
 * retain_dir_source() gives the source its "source" file names (false: none).
 * The seal, dir/applied ("source=SITE", "applied=LSN"), is what this site
 * applied of SITE's transactions when its sink stopped for good (a
 * promotion): a sibling served from here then gets that and no more.
 * retain_seal() makes dir if missing (a stream that keeps no batches still
 * says where it stands) and writes it durably; retain_sealed() reads it for
 * source (false: none, or another source's); retain_unseal() removes it
 * (a running sink says what it applied itself).
 */
bool retain_dir_source(const char *dir, char *out, size_t outlen);
bool retain_seal(const char *dir, const char *source, uint64_t applied_lsn, char *err,
		size_t errlen);
bool retain_sealed(const char *dir, const char *source, uint64_t *applied_lsn);
void retain_unseal(const char *dir);

#endif
