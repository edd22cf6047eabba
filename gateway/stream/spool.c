/*
 * spool.c — a stream's durable spool: append-only segment files on local
 * disk, recovered when opened. The layout and the contract are in spool.h.
 *
 * NOTES
 * Memory. The records stay on disk. In memory there is one summary per
 * segment (struct seg: size, record count, the commit LSNs at its ends, the
 * end of its last whole transaction) and a read buffer per cursor: a window
 * of the segment under it, read ahead WINDOW bytes at a time and grown to
 * hold the largest record read, shrunk again afterwards. Recovery and
 * release read with a reader of the spool's own, freed after each use, so
 * that they never touch a window a cursor's body points into. Totals (bytes,
 * records, oldest) are sums over the summaries, so they cannot drift.
 *
 * Durability order. Appends go to the last segment only, through an O_APPEND
 * descriptor. When a segment rolls, it is fsynced before the next one gets
 * anything, so spool_sync() has only the current segment (and, after a
 * segment was created or removed, the directory) to fsync, and whatever a
 * crash leaves on disk is a prefix of what was appended.
 *
 * Cutting a tail (recovery, spool_truncate_incomplete()) removes the later
 * segments first, newest first, fsyncs the directory, and only then
 * truncates the segment that keeps the tail. A crash half-way leaves the bad
 * or incomplete tail where the next recovery finds it again — never a clean
 * segment followed by segments that should have gone.
 *
 * Sequence numbers only grow while the spool is open, and on opening they
 * continue after the highest file found, so a segment removed but not yet
 * durably (the directory fsync comes with the next spool_sync()) is never
 * confused with a newer one. Gaps in the sequence are legal: releasing
 * removes segments from the head, and after a crash any subset of those
 * removals may have reached the disk — all of them were acknowledged anyway.
 *
 * Each reader has its own O_RDONLY descriptor and reads only up to the size
 * the summary records, never further: a failed partial append beyond it is
 * invisible, and a segment still being appended reads fine. Removing a
 * segment closes every descriptor on it.
 *
 * The floor. spool_release() writes the new floor (temporary file, fsync,
 * rename, directory fsync) before it unlinks the first segment, so a crash
 * leaves either the old floor and every segment, or the new floor and some
 * of the segments it covers — which the next spool_open() removes, finishing
 * the release. A floor that is not yet durable never stands above a segment
 * already gone. The floor is the end of the last transaction the removed
 * segments hold in whole or in part: when a transaction goes on into the
 * segment kept, its end is the floor, and its records left at the head of
 * that segment are never read again (the cursor's oldest position is just
 * after the last record ending at or before the floor: locate(floor)). A
 * sink resuming below that end would get a transaction without its start.
 *
 * Failed fsync. Every fsync goes through spool_fsync(), which marks the
 * spool (fsync_failed) when one fails; the caller then fails the spool for
 * good. Recovery fsyncs every segment it keeps, and the directory, before
 * spool_open() counts them durable: a crash may have left appended pages
 * that no fsync covered, readable from the page cache but not on disk.
 *
 * A cursor's prev (where the record at the cursor continues from) is kept
 * with it: set by seeking (the commit LSN of the record before, at least
 * the floor), advanced by each record read that ends a transaction. Cutting
 * an incomplete tail leaves it as it is: the records cut end no transaction.
 * The spool lists its cursors (the default one too) to move them when a
 * release or a cut takes their place away.
 *
 * Fault points (test builds, common/fault.h): "source.spool_append" fails an
 * append as a failed write, "source.spool_fsync" fails spool_sync() as a
 * failed fsync (EIO both).
 *
 * In fuzzing builds (STRAIT_FUZZING) fsync is a no-op: the fuzzer exercises
 * recovery logic, not the disk, and runs hundreds of times faster for it.
 */
#include "gateway/stream/spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/crc32c.h"
#include "common/fault.h"
#include "common/lsn.h"

/* Segment header: magic, u32 format version, u32 reserved (0). */
#define SEG_MAGIC      "STRAITSP"
#define SEG_MAGIC_LEN  8
#define SEG_VERSION    1
#define SEG_HDR        16
/* Record: u32 length, u32 CRC, then the meta and the body. */
#define REC_HDR        8
#define META_SIZE      40
#define SEG_NAME_LEN   20          /* 16 hex digits and ".seg" */
#define DEFAULT_SEGMENT_BYTES (64u * 1024u * 1024u)
#define WINDOW         (256u * 1024u)
#define WHY_LEN        128         /* what is wrong with a record */
/* Floor file: magic, u32 format version, u32 reserved (0), u64 floor, u32 CRC32C. */
#define FLOOR_NAME     "floor"
#define FLOOR_TMP      "floor.tmp"
#define FLOOR_MAGIC    "STRAITFL"
#define FLOOR_VERSION  1
#define FLOOR_SIZE     28

_Static_assert(SPOOL_RECORD_MAX <= (uint64_t)LONG_MAX - REC_HDR, "record size fits a long");

struct seg {
	uint64_t seq;
	uint64_t size;               /* whole valid records and the header */
	uint64_t file_size;          /* bytes in the file (recovery may find more than size) */
	uint64_t records;
	uint64_t complete_size;      /* end of the last record that ends a transaction (SEG_HDR: none) */
	uint64_t complete_records;   /* records up to there */
	uint64_t first_commit_end;   /* first and last non-zero commit_end_lsn, 0 if none */
	uint64_t last_commit_end;
	int64_t first_spooled_at;    /* the first record's spooled_at_us */
};

/* A read descriptor with its window: file bytes [win_off, win_off + win_len) of segment seq. */
struct reader {
	int fd;                      /* -1: none open */
	uint64_t seq;
	uint8_t *buf;
	size_t bufcap;
	uint64_t win_off;
	size_t win_len;
};

struct spool_cursor {
	struct spool *sp;
	struct spool_cursor *next;   /* in sp->cursors */
	struct reader rd;            /* its own: a read never moves another cursor's window */
	uint64_t seq;                /* the record at the cursor: segment and offset in it */
	uint64_t off;
	uint64_t prev;               /* where that record continues from */
};

struct spool {
	char *dir;
	int dirfd;                   /* for fsync and the lock */
	uint64_t segment_bytes;

	struct seg *segs;            /* oldest first */
	size_t nsegs, cap;
	uint64_t next_seq;

	int wfd;                     /* the last segment, open for appending, or -1 */
	uint64_t wfd_seq;
	bool dir_dirty;              /* a segment was created or removed since the last sync */

	struct reader scan;          /* recovery's and release's reads; freed after each */
	struct spool_cursor *cur;    /* the default cursor (spool_seek(), spool_read()) */
	struct spool_cursor *cursors;  /* every cursor, the default one included */
	struct spool_pos last_pos;   /* the record appended last */

	uint64_t end_lsn;            /* both at least the floor */
	uint64_t durable_lsn;
	uint64_t floor;              /* as on disk */

	bool failed;                 /* an append or sync failed: unusable until reopened */
	bool fsync_failed;           /* an fsync failed: unusable for good */
	char failure[256];
};

/* How reading one record went. */
enum read_status {
	READ_OK,
	READ_END,                    /* nothing left before the limit */
	READ_TORN,                   /* the limit cuts the record short */
	READ_BAD,                    /* bad length or CRC */
	READ_IOERR,
};

/* --- encoding --------------------------------------------------------- */

static void
put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void
put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t
get_le32(const uint8_t *p)
{
	uint32_t v = 0;

	for (int i = 3; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static uint64_t
get_le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static void
encode_meta(uint8_t *p, const struct spool_meta *m)
{
	put_le64(p, m->first_lsn);
	put_le64(p + 8, m->commit_end_lsn);
	put_le64(p + 16, (uint64_t)m->commit_time_us);
	put_le64(p + 24, (uint64_t)m->spooled_at_us);
	put_le32(p + 32, m->transactions);
	put_le32(p + 36, m->flags);
}

static void
decode_meta(const uint8_t *p, struct spool_meta *m)
{
	m->first_lsn = get_le64(p);
	m->commit_end_lsn = get_le64(p + 8);
	m->commit_time_us = (int64_t)get_le64(p + 16);
	m->spooled_at_us = (int64_t)get_le64(p + 24);
	m->transactions = get_le32(p + 32);
	m->flags = get_le32(p + 36);
}

static bool
length_valid(uint32_t len)
{
	return len >= META_SIZE && len <= SPOOL_RECORD_MAX;
}

long
spool_parse_record(const uint8_t *buf, size_t len, struct spool_meta *meta,
		const uint8_t **body, size_t *body_len)
{
	uint32_t rlen;

	/* A bad length is seen as soon as it is there, before the rest arrives. */
	if (len < 4)
		return 0;
	rlen = get_le32(buf);
	if (!length_valid(rlen))
		return -1;
	if (len < REC_HDR || len - REC_HDR < rlen)
		return 0;
	if (crc32c(0, buf + REC_HDR, rlen) != get_le32(buf + 4))
		return -1;
	decode_meta(buf + REC_HDR, meta);
	*body = buf + REC_HDR + META_SIZE;
	*body_len = rlen - META_SIZE;
	return (long)(REC_HDR + rlen);
}

/* --- small helpers ---------------------------------------------------- */

static void __attribute__((format(printf, 3, 4)))
set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* fsync, remembering a failure (see NOTES). */
static int
spool_fsync(struct spool *sp, int fd)
{
#ifdef STRAIT_FUZZING
	(void)sp;
	(void)fd;
	return 0;
#else
	int rc = fsync(fd);

	if (rc < 0)
		sp->fsync_failed = true;
	return rc;
#endif
}

static uint64_t
max_u64(uint64_t a, uint64_t b)
{
	return a > b ? a : b;
}

static bool
write_all(int fd, struct iovec *iov, int iovcnt)
{
	while (iovcnt > 0) {
		ssize_t n = writev(fd, iov, iovcnt);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return false;
		if (n == 0) {
			errno = ENOSPC;
			return false;
		}
		while (iovcnt > 0 && (size_t)n >= iov->iov_len) {
			n -= (ssize_t)iov->iov_len;
			iov++;
			iovcnt--;
		}
		if (iovcnt > 0) {
			iov->iov_base = (uint8_t *)iov->iov_base + n;
			iov->iov_len -= (size_t)n;
		}
	}
	return true;
}

static void
seg_name(uint64_t seq, char out[SEG_NAME_LEN + 1])
{
	snprintf(out, SEG_NAME_LEN + 1, "%016" PRIx64 ".seg", seq);
}

static void
seg_path(const struct spool *sp, uint64_t seq, char out[PATH_MAX])
{
	snprintf(out, PATH_MAX, "%s/%016" PRIx64 ".seg", sp->dir, seq);
}

/* "could not <verb> "<segment path>": <errno text>" */
static void
seg_syserr(const struct spool *sp, uint64_t seq, const char *verb, char *err, size_t errlen)
{
	char path[PATH_MAX];
	int e = errno;

	seg_path(sp, seq, path);
	set_err(err, errlen, "could not %s \"%s\": %s", verb, path, strerror(e));
}

/* Appends "; <text>" (or just the text) to the recovery detail. */
static void __attribute__((format(printf, 2, 3)))
detail_add(struct spool_recovery *rec, const char *fmt, ...)
{
	size_t used = strlen(rec->detail);
	va_list ap;

	if (used + 3 >= sizeof(rec->detail))
		return;
	if (used > 0) {
		memcpy(rec->detail + used, "; ", 3);
		used += 2;
	}
	va_start(ap, fmt);
	vsnprintf(rec->detail + used, sizeof(rec->detail) - used, fmt, ap);
	va_end(ap);
}

static bool
parse_seg_name(const char *name, uint64_t *seq)
{
	uint64_t v = 0;

	if (strlen(name) != SEG_NAME_LEN || strcmp(name + 16, ".seg") != 0)
		return false;
	for (int i = 0; i < 16; i++) {
		char c = name[i];

		if (c >= '0' && c <= '9')
			v = (v << 4) | (uint64_t)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v = (v << 4) | (uint64_t)(c - 'a' + 10);
		else
			return false;
	}
	*seq = v;
	return true;
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static struct seg *
seg_find(const struct spool *sp, uint64_t seq)
{
	for (size_t i = 0; i < sp->nsegs; i++)
		if (sp->segs[i].seq == seq)
			return &sp->segs[i];
	return NULL;
}

static struct seg *
seg_push(struct spool *sp, uint64_t seq)
{
	struct seg *s;

	if (sp->nsegs == sp->cap) {
		size_t ncap = sp->cap ? sp->cap * 2 : 16;
		struct seg *n = realloc(sp->segs, ncap * sizeof(*n));

		if (n == NULL)
			return NULL;
		sp->segs = n;
		sp->cap = ncap;
	}
	s = &sp->segs[sp->nsegs++];
	memset(s, 0, sizeof(*s));
	s->seq = seq;
	s->size = SEG_HDR;
	s->complete_size = SEG_HDR;
	return s;
}

static void
seg_add_record(struct seg *s, const struct spool_meta *m, uint64_t total)
{
	if (s->records == 0)
		s->first_spooled_at = m->spooled_at_us;
	s->size += total;
	s->records++;
	if (m->commit_end_lsn != 0) {
		if (s->first_commit_end == 0)
			s->first_commit_end = m->commit_end_lsn;
		s->last_commit_end = m->commit_end_lsn;
		s->complete_size = s->size;
		s->complete_records = s->records;
	}
}

/* --- reading ---------------------------------------------------------- */

static void
reader_init(struct reader *r)
{
	memset(r, 0, sizeof(*r));
	r->fd = -1;
}

/* Closes the descriptor; the buffer (and a body read into it) stays. */
static void
reader_close(struct reader *r)
{
	if (r->fd >= 0)
		close(r->fd);
	r->fd = -1;
	r->win_len = 0;
}

static void
reader_free(struct reader *r)
{
	reader_close(r);
	free(r->buf);
	r->buf = NULL;
	r->bufcap = 0;
}

static bool
reader_open(const struct spool *sp, struct reader *r, uint64_t seq, char *err, size_t errlen)
{
	char path[PATH_MAX];

	if (r->fd >= 0 && r->seq == seq)
		return true;
	reader_close(r);
	seg_path(sp, seq, path);
	r->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (r->fd < 0) {
		seg_syserr(sp, seq, "open", err, errlen);
		return false;
	}
	r->seq = seq;
	return true;
}

/*
 * Points *p at file bytes [off, off + need) of r's open segment, reading
 * ahead up to limit. need <= limit - off.
 */
static bool
window(const struct spool *sp, struct reader *r, uint64_t off, size_t need, uint64_t limit,
		const uint8_t **p, char *err, size_t errlen)
{
	size_t want, newcap, got = 0;

	if (r->win_len > 0 && off >= r->win_off && off - r->win_off <= r->win_len &&
	    need <= r->win_len - (off - r->win_off)) {
		*p = r->buf + (off - r->win_off);
		return true;
	}
	want = need > WINDOW ? need : WINDOW;
	if (want > limit - off)
		want = (size_t)(limit - off);
	newcap = want > WINDOW ? want : WINDOW;
	/* Grow for a big record; shrink back after one, so its memory is not kept. */
	if (newcap > r->bufcap || (r->bufcap > 4 * WINDOW && newcap == WINDOW)) {
		uint8_t *nb = realloc(r->buf, newcap);

		if (nb == NULL) {
			set_err(err, errlen, "out of memory reading a record of %zu bytes", need);
			return false;
		}
		r->buf = nb;
		r->bufcap = newcap;
	}
	r->win_len = 0;
	while (got < want) {
		ssize_t n = pread(r->fd, r->buf + got, want - got, (off_t)(off + got));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			seg_syserr(sp, r->seq, "read", err, errlen);
			return false;
		}
		if (n == 0) {
			char path[PATH_MAX];

			seg_path(sp, r->seq, path);
			set_err(err, errlen, "could not read \"%s\": file ends at %" PRIu64
				", expected %" PRIu64 " bytes", path, off + got, limit);
			return false;
		}
		got += (size_t)n;
	}
	r->win_off = off;
	r->win_len = want;
	*p = r->buf;
	return true;
}

/*
 * Reads the record at off of r's open segment, whose valid bytes end at
 * limit. On READ_TORN and READ_BAD, why says what is wrong (without the
 * segment's name); on READ_IOERR err has the message.
 */
static enum read_status
read_record(const struct spool *sp, struct reader *r, uint64_t off, uint64_t limit,
		struct spool_meta *m, const uint8_t **body, size_t *body_len, uint64_t *total,
		char why[WHY_LEN], char *err, size_t errlen)
{
	uint64_t avail = limit - off;
	const uint8_t *p;
	uint32_t rlen;
	long n;

	if (off >= limit)
		return READ_END;
	if (avail < 4) {
		set_err(why, WHY_LEN, "record header cut short (%" PRIu64 " bytes left)", avail);
		return READ_TORN;
	}
	if (!window(sp, r, off, avail < REC_HDR ? (size_t)avail : REC_HDR, limit, &p, err, errlen))
		return READ_IOERR;
	rlen = get_le32(p);
	if (!length_valid(rlen)) {
		set_err(why, WHY_LEN, "bad record length %" PRIu32, rlen);
		return READ_BAD;
	}
	if (avail < (uint64_t)REC_HDR + rlen) {
		set_err(why, WHY_LEN, "record of %" PRIu64 " bytes cut short (%" PRIu64 " bytes left)",
			(uint64_t)REC_HDR + rlen, avail);
		return READ_TORN;
	}
	if (!window(sp, r, off, REC_HDR + (size_t)rlen, limit, &p, err, errlen))
		return READ_IOERR;
	n = spool_parse_record(p, REC_HDR + (size_t)rlen, m, body, body_len);
	if (n <= 0) {
		set_err(why, WHY_LEN, "CRC mismatch");
		return READ_BAD;
	}
	*total = (uint64_t)n;
	return READ_OK;
}

/* Checks the header of r's open segment (file_size bytes long). */
static enum read_status
check_header(const struct spool *sp, struct reader *r, uint64_t file_size, char why[WHY_LEN],
		char *err, size_t errlen)
{
	const uint8_t *p;
	uint32_t version;

	if (file_size < SEG_HDR) {
		set_err(why, WHY_LEN, "segment header cut short (%" PRIu64 " bytes)", file_size);
		return READ_TORN;
	}
	if (!window(sp, r, 0, SEG_HDR, file_size, &p, err, errlen))
		return READ_IOERR;
	if (memcmp(p, SEG_MAGIC, SEG_MAGIC_LEN) != 0) {
		set_err(why, WHY_LEN, "bad segment magic");
		return READ_BAD;
	}
	version = get_le32(p + SEG_MAGIC_LEN);
	if (version != SEG_VERSION) {
		set_err(why, WHY_LEN, "unsupported segment format version %" PRIu32, version);
		return READ_BAD;
	}
	return READ_OK;
}

/* --- locating -------------------------------------------------------- */

/*
 * Where the cursor goes to read after lsn: just after the last record whose
 * commit_end_lsn is in (0, lsn] (*prev: that commit_end_lsn), or the start
 * of the oldest segment when there is none (*prev: 0). Commit LSNs grow
 * along the spool: the last segment with one in range holds the record.
 */
static bool
locate(const struct spool *sp, struct reader *r, uint64_t lsn, uint64_t *seq, uint64_t *off,
		uint64_t *prev, char *err, size_t errlen)
{
	const struct seg *s = NULL;
	uint64_t pos, at;

	for (size_t i = 0; i < sp->nsegs; i++)
		if (sp->segs[i].first_commit_end != 0 && sp->segs[i].first_commit_end <= lsn)
			s = &sp->segs[i];
	*prev = 0;
	if (s == NULL) {
		*seq = sp->nsegs > 0 ? sp->segs[0].seq : sp->next_seq;
		*off = SEG_HDR;
		return true;
	}
	if (s->last_commit_end <= lsn) {
		*seq = s->seq;
		*off = s->complete_size;
		*prev = s->last_commit_end;
		return true;
	}
	if (!reader_open(sp, r, s->seq, err, errlen))
		return false;
	pos = SEG_HDR;
	for (at = SEG_HDR; at < s->size;) {
		struct spool_meta m;
		const uint8_t *body;
		size_t blen;
		uint64_t total;
		char why[WHY_LEN];
		enum read_status rs = read_record(sp, r, at, s->size, &m, &body, &blen, &total,
			why, err, errlen);

		if (rs != READ_OK) {
			char path[PATH_MAX];

			seg_path(sp, s->seq, path);
			if (rs != READ_IOERR)
				set_err(err, errlen, "spool segment \"%s\" at %" PRIu64 ": %s", path, at, why);
			return false;
		}
		at += total;
		if (m.commit_end_lsn > lsn)
			break;
		if (m.commit_end_lsn != 0) {
			pos = at;
			*prev = m.commit_end_lsn;
		}
	}
	*seq = s->seq;
	*off = pos;
	return true;
}

static void
cursor_set(struct spool_cursor *c, uint64_t seq, uint64_t off, uint64_t prev)
{
	c->seq = seq;
	c->off = off;
	c->prev = prev;
}

/* Where the oldest record held that the floor does not cover is, read through r. */
static bool
oldest_pos(const struct spool *sp, struct reader *r, uint64_t *seq, uint64_t *off,
		char *err, size_t errlen)
{
	uint64_t prev;

	return locate(sp, r, sp->floor, seq, off, &prev, err, errlen);
}

/* Moves c to the oldest record held that the floor does not cover (reading with its reader). */
static bool
cursor_to_oldest(struct spool_cursor *c, char *err, size_t errlen)
{
	uint64_t seq, off;

	if (!oldest_pos(c->sp, &c->rd, &seq, &off, err, errlen))
		return false;
	cursor_set(c, seq, off, c->sp->floor);
	return true;
}

/* Drops every window: what they show may be cut and written again. */
static void
readers_forget(struct spool *sp)
{
	sp->scan.win_len = 0;
	for (struct spool_cursor *c = sp->cursors; c != NULL; c = c->next)
		c->rd.win_len = 0;
}

/* --- removing and cutting --------------------------------------------- */

/* Removes segment idx (its file and its summary). */
static bool
remove_segment(struct spool *sp, size_t idx, char *err, size_t errlen)
{
	uint64_t seq = sp->segs[idx].seq;
	char path[PATH_MAX];

	if (sp->wfd >= 0 && sp->wfd_seq == seq) {
		close(sp->wfd);
		sp->wfd = -1;
	}
	/*
	 * No reader keeps the file open: Linux would go on reading an unlinked
	 * file, but what was released is not to be read. Their buffers (a body
	 * a cursor returned) stay.
	 */
	if (sp->scan.fd >= 0 && sp->scan.seq == seq)
		reader_close(&sp->scan);
	for (struct spool_cursor *c = sp->cursors; c != NULL; c = c->next)
		if (c->rd.fd >= 0 && c->rd.seq == seq)
			reader_close(&c->rd);
	seg_path(sp, seq, path);
	if (unlink(path) < 0 && errno != ENOENT) {
		seg_syserr(sp, seq, "remove", err, errlen);
		return false;
	}
	memmove(&sp->segs[idx], &sp->segs[idx + 1], (sp->nsegs - idx - 1) * sizeof(sp->segs[0]));
	sp->nsegs--;
	sp->dir_dirty = true;
	return true;
}

static bool
sync_dir(struct spool *sp, char *err, size_t errlen)
{
	if (spool_fsync(sp, sp->dirfd) < 0) {
		set_err(err, errlen, "could not fsync directory \"%s\": %s", sp->dir, strerror(errno));
		return false;
	}
	sp->dir_dirty = false;
	return true;
}

static bool
truncate_file(struct spool *sp, uint64_t seq, uint64_t size, char *err, size_t errlen)
{
	char path[PATH_MAX];
	int fd;
	bool ok = false;

	seg_path(sp, seq, path);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0) {
		seg_syserr(sp, seq, "open", err, errlen);
		return false;
	}
	if (ftruncate(fd, (off_t)size) < 0)
		seg_syserr(sp, seq, "truncate", err, errlen);
	else if (spool_fsync(sp, fd) < 0)
		seg_syserr(sp, seq, "fsync", err, errlen);
	else
		ok = true;
	close(fd);
	return ok;
}

/*
 * Keeps segments [0, keep) and cuts the last kept one back to its last record
 * that ends a transaction (keep is 0 or such a segment's index + 1). Later
 * segments go first, then the directory is fsynced, then the truncation (see
 * NOTES). The read windows are dropped: truncated bytes may be written again.
 */
static bool
cut_tail(struct spool *sp, size_t keep, char *err, size_t errlen)
{
	struct seg *s;
	bool removed = false;

	readers_forget(sp);
	while (sp->nsegs > keep) {
		if (!remove_segment(sp, sp->nsegs - 1, err, errlen))
			return false;
		removed = true;
	}
	if (removed && !sync_dir(sp, err, errlen))
		return false;
	if (keep == 0)
		return true;
	s = &sp->segs[keep - 1];
	if (s->file_size > s->complete_size) {
		if (!truncate_file(sp, s->seq, s->complete_size, err, errlen))
			return false;
		s->file_size = s->complete_size;
	}
	s->size = s->complete_size;
	s->records = s->complete_records;
	return true;
}

/* Index + 1 of the last segment holding a record that ends a transaction, 0 if none. */
static size_t
complete_prefix(const struct spool *sp)
{
	for (size_t i = sp->nsegs; i > 0; i--)
		if (sp->segs[i - 1].complete_records > 0)
			return i;
	return 0;
}

/*
 * Where the last transaction segment idx holds (in whole or in part) ends,
 * in *end: its last record's commit_end_lsn, or for a transaction that goes
 * on into later segments, the record there that ends it; 0 for an empty
 * segment (left by a failed append: nothing to keep). False while that
 * transaction is incomplete.
 */
static bool
segment_end(const struct spool *sp, size_t idx, uint64_t *end)
{
	const struct seg *s = &sp->segs[idx];

	*end = 0;
	if (s->records == 0)
		return true;
	if (s->complete_size == s->size) {
		*end = s->last_commit_end;
		return true;
	}
	for (size_t i = idx + 1; i < sp->nsegs; i++) {
		if (sp->segs[i].first_commit_end != 0) {
			*end = sp->segs[i].first_commit_end;
			return true;
		}
	}
	return false;
}

/* --- the floor ------------------------------------------------------- */

static void
floor_path(const struct spool *sp, const char *name, char out[PATH_MAX])
{
	snprintf(out, PATH_MAX, "%s/%s", sp->dir, name);
}

/*
 * Reads the floor file into sp->floor (0 when there is none), after removing
 * a temporary one a crash left. A file that is not exactly a floor is an
 * error: guessing 0 would let a sink resume into a gap.
 */
static bool
read_floor(struct spool *sp, char *err, size_t errlen)
{
	char path[PATH_MAX];
	uint8_t buf[FLOOR_SIZE + 1];
	size_t got = 0;
	const char *why = NULL;
	int fd;

	floor_path(sp, FLOOR_TMP, path);
	if (unlink(path) < 0 && errno != ENOENT) {
		set_err(err, errlen, "could not remove \"%s\": %s", path, strerror(errno));
		return false;
	}
	sp->floor = 0;
	floor_path(sp, FLOOR_NAME, path);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT)
		return true;
	if (fd < 0) {
		set_err(err, errlen, "could not open \"%s\": %s", path, strerror(errno));
		return false;
	}
	while (got < sizeof(buf)) {
		ssize_t n = read(fd, buf + got, sizeof(buf) - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			set_err(err, errlen, "could not read \"%s\": %s", path, strerror(errno));
			close(fd);
			return false;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	if (got != FLOOR_SIZE)
		why = "wrong size";
	else if (memcmp(buf, FLOOR_MAGIC, SEG_MAGIC_LEN) != 0)
		why = "bad magic";
	else if (get_le32(buf + 8) != FLOOR_VERSION)
		why = "unsupported format version";
	else if (get_le32(buf + 12) != 0)
		why = "reserved field not 0";
	else if (crc32c(0, buf, 24) != get_le32(buf + 24))
		why = "CRC mismatch";
	if (why != NULL) {
		set_err(err, errlen, "spool floor file \"%s\" is damaged (%s): the spool cannot "
			"tell which transactions it released", path, why);
		return false;
	}
	sp->floor = get_le64(buf + 16);
	return true;
}

/* Replaces the floor file with lsn, durably (see NOTES); sp->floor = lsn. */
static bool
write_floor(struct spool *sp, uint64_t lsn, char *err, size_t errlen)
{
	char tmp[PATH_MAX], path[PATH_MAX];
	uint8_t buf[FLOOR_SIZE];
	struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };
	int fd;

	memcpy(buf, FLOOR_MAGIC, SEG_MAGIC_LEN);
	put_le32(buf + 8, FLOOR_VERSION);
	put_le32(buf + 12, 0);
	put_le64(buf + 16, lsn);
	put_le32(buf + 24, crc32c(0, buf, 24));
	floor_path(sp, FLOOR_TMP, tmp);
	floor_path(sp, FLOOR_NAME, path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		set_err(err, errlen, "could not create \"%s\": %s", tmp, strerror(errno));
		return false;
	}
	if (!write_all(fd, &iov, 1)) {
		set_err(err, errlen, "could not write \"%s\": %s", tmp, strerror(errno));
		close(fd);
		return false;
	}
	if (spool_fsync(sp, fd) < 0) {
		set_err(err, errlen, "could not fsync \"%s\": %s", tmp, strerror(errno));
		close(fd);
		return false;
	}
	if (close(fd) < 0) {
		set_err(err, errlen, "could not close \"%s\": %s", tmp, strerror(errno));
		return false;
	}
	if (rename(tmp, path) < 0) {
		set_err(err, errlen, "could not rename \"%s\" to \"%s\": %s", tmp, path,
			strerror(errno));
		return false;
	}
	if (!sync_dir(sp, err, errlen))
		return false;
	sp->floor = lsn;
	return true;
}

/* --- opening and recovery --------------------------------------------- */

static bool
list_segments(const char *dir, uint64_t **out, size_t *count, char *err, size_t errlen)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	uint64_t *seqs = NULL;
	size_t n = 0, cap = 0;

	if (d == NULL) {
		set_err(err, errlen, "could not open directory \"%s\": %s", dir, strerror(errno));
		return false;
	}
	for (;;) {
		uint64_t seq;

		errno = 0;
		de = readdir(d);
		if (de == NULL)
			break;
		if (!parse_seg_name(de->d_name, &seq))
			continue;
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			uint64_t *ns = realloc(seqs, ncap * sizeof(*ns));

			if (ns == NULL) {
				set_err(err, errlen, "out of memory listing \"%s\"", dir);
				goto fail;
			}
			seqs = ns;
			cap = ncap;
		}
		seqs[n++] = seq;
	}
	if (errno != 0) {
		set_err(err, errlen, "could not read directory \"%s\": %s", dir, strerror(errno));
		goto fail;
	}
	closedir(d);
	if (n > 0)
		qsort(seqs, n, sizeof(*seqs), cmp_u64);
	*out = seqs;
	*count = n;
	return true;
fail:
	closedir(d);
	free(seqs);
	return false;
}

/*
 * Reads segment s's records (its name for messages) from the reader; READ_OK
 * when every one is whole, READ_IOERR on an I/O error, else the damage
 * (noted in rec).
 */
static enum read_status
scan_records(struct spool *sp, struct seg *s, const char *name, struct spool_recovery *rec,
		char *why, char *err, size_t errlen)
{
	uint64_t off;
	enum read_status rs;

	for (off = SEG_HDR;;) {
		struct spool_meta m;
		const uint8_t *body;
		size_t blen;
		uint64_t total;

		rs = read_record(sp, &sp->scan, off, s->file_size, &m, &body, &blen, &total, why,
			err, errlen);
		if (rs == READ_END)
			return READ_OK;
		if (rs == READ_IOERR)
			return rs;
		if (rs != READ_OK) {
			detail_add(rec, "segment %s at %" PRIu64 ": %s", name, off, why);
			return rs;
		}
		seg_add_record(s, &m, total);
		off += total;
	}
}

/*
 * Scans the n segments seqs in order up to the first damage (*damaged, n
 * when none); those after it are only sized. *total_file and *scanned count
 * the bytes of every file and the records read.
 */
static bool
recover_scan(struct spool *sp, const uint64_t *seqs, size_t n, struct spool_recovery *rec,
		uint64_t *total_file, uint64_t *scanned, size_t *damaged, char *err, size_t errlen)
{
	char why[WHY_LEN];

	*damaged = n;
	for (size_t i = 0; i < n; i++) {
		char name[SEG_NAME_LEN + 1];
		struct seg *s = seg_push(sp, seqs[i]);
		struct stat st;
		enum read_status rs;

		if (s == NULL) {
			set_err(err, errlen, "out of memory recovering spool \"%s\"", sp->dir);
			return false;
		}
		if (!reader_open(sp, &sp->scan, s->seq, err, errlen))
			return false;
		if (fstat(sp->scan.fd, &st) < 0) {
			seg_syserr(sp, s->seq, "stat", err, errlen);
			return false;
		}
		s->file_size = (uint64_t)st.st_size;
		*total_file += s->file_size;
		if (*damaged < n) {
			s->size = s->complete_size = 0;
			continue;
		}
		seg_name(s->seq, name);
		rs = check_header(sp, &sp->scan, s->file_size, why, err, errlen);
		if (rs == READ_IOERR)
			return false;
		if (rs != READ_OK) {
			detail_add(rec, "segment %s: %s", name, why);
			s->size = s->complete_size = 0;
			*damaged = i;
			continue;
		}
		rs = scan_records(sp, s, name, rec, why, err, errlen);
		if (rs == READ_IOERR)
			return false;
		if (rs != READ_OK)
			*damaged = i;
		*scanned += s->records;
	}
	reader_free(&sp->scan);
	return true;
}

/* A release the floor records but a crash interrupted: finish it (see NOTES). */
static bool
recover_release(struct spool *sp, struct spool_recovery *rec, uint64_t *kept_bytes,
		uint64_t *kept_records, char *err, size_t errlen)
{
	while (sp->floor > 0 && sp->nsegs > 0) {
		uint64_t end;

		if (!segment_end(sp, 0, &end) || end > sp->floor)
			break;
		rec->released_bytes += sp->segs[0].size;
		*kept_bytes -= sp->segs[0].size;
		*kept_records -= sp->segs[0].records;
		if (!remove_segment(sp, 0, err, errlen))
			return false;
	}
	return true;
}

/* What a crash left may be in the page cache only: durable once fsynced. */
static bool
recover_sync(struct spool *sp, char *err, size_t errlen)
{
	for (size_t i = 0; i < sp->nsegs; i++) {
		if (!reader_open(sp, &sp->scan, sp->segs[i].seq, err, errlen))
			return false;
		if (spool_fsync(sp, sp->scan.fd) < 0) {
			seg_syserr(sp, sp->segs[i].seq, "fsync", err, errlen);
			return false;
		}
	}
	reader_free(&sp->scan);
	return sync_dir(sp, err, errlen);
}

/*
 * Scans every segment in order up to the first damage, then cuts the spool
 * back to the last record that ends a transaction before it. Segments after
 * the damaged one are not read, only counted and removed.
 */
static bool
recover(struct spool *sp, const uint64_t *seqs, size_t n, struct spool_recovery *rec,
		char *err, size_t errlen)
{
	uint64_t total_file = 0, kept_bytes = 0, kept_records = 0, scanned_records = 0;
	size_t damaged, keep;

	if (!recover_scan(sp, seqs, n, rec, &total_file, &scanned_records, &damaged, err, errlen))
		return false;
	rec->torn = damaged < n;
	if (damaged + 1 < n)
		detail_add(rec, "%zu later segment%s removed", n - damaged - 1,
			n - damaged - 1 == 1 ? "" : "s");
	keep = complete_prefix(sp);
	for (size_t i = 0; i < keep; i++) {
		const struct seg *s = &sp->segs[i];

		kept_bytes += i + 1 == keep ? s->complete_size : s->size;
		kept_records += i + 1 == keep ? s->complete_records : s->records;
	}
	rec->dropped_bytes = total_file - kept_bytes;
	rec->dropped_records = scanned_records - kept_records;
	if (rec->dropped_records > 0)
		detail_add(rec, "%" PRIu64 " record%s of an incomplete transaction dropped",
			rec->dropped_records, rec->dropped_records == 1 ? "" : "s");
	else if (rec->dropped_bytes > 0 && rec->detail[0] == '\0')
		detail_add(rec, "%zu segment%s without records removed", sp->nsegs - keep,
			sp->nsegs - keep == 1 ? "" : "s");
	if (!cut_tail(sp, keep, err, errlen) ||
	    !recover_release(sp, rec, &kept_bytes, &kept_records, err, errlen))
		return false;
	rec->records = kept_records;
	rec->bytes = kept_bytes;
	if (!recover_sync(sp, err, errlen))
		return false;
	sp->end_lsn = max_u64(sp->nsegs > 0 ? sp->segs[sp->nsegs - 1].last_commit_end : 0,
		sp->floor);
	sp->durable_lsn = sp->end_lsn;
	return true;
}

struct spool *
spool_open(const char *dir, uint64_t segment_bytes, struct spool_recovery *rec,
		char *err, size_t errlen)
{
	struct spool_recovery local;
	struct spool *sp;
	uint64_t *seqs = NULL;
	size_t n = 0;

	if (rec == NULL)
		rec = &local;
	memset(rec, 0, sizeof(*rec));
	if (strlen(dir) + 1 + SEG_NAME_LEN >= PATH_MAX) {
		set_err(err, errlen, "spool directory name too long: \"%s\"", dir);
		return NULL;
	}
	sp = calloc(1, sizeof(*sp));
	if (sp == NULL || (sp->dir = strdup(dir)) == NULL) {
		free(sp);
		set_err(err, errlen, "out of memory opening spool \"%s\"", dir);
		return NULL;
	}
	sp->dirfd = sp->wfd = -1;
	reader_init(&sp->scan);
	sp->segment_bytes = segment_bytes ? segment_bytes : DEFAULT_SEGMENT_BYTES;
	sp->next_seq = 1;

	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		set_err(err, errlen, "could not create directory \"%s\": %s", dir, strerror(errno));
		goto fail;
	}
	sp->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (sp->dirfd < 0) {
		set_err(err, errlen, "could not open directory \"%s\": %s", dir, strerror(errno));
		goto fail;
	}
	/* Two writers would interleave records: one spool, one owner. */
	if (flock(sp->dirfd, LOCK_EX | LOCK_NB) < 0) {
		if (errno == EWOULDBLOCK)
			set_err(err, errlen, "spool \"%s\" is already open (by this or another process)", dir);
		else
			set_err(err, errlen, "could not lock \"%s\": %s", dir, strerror(errno));
		goto fail;
	}
	if (!read_floor(sp, err, errlen))
		goto fail;
	if (!list_segments(dir, &seqs, &n, err, errlen))
		goto fail;
	if (n > 0)
		sp->next_seq = seqs[n - 1] + 1;
	if (!recover(sp, seqs, n, rec, err, errlen))
		goto fail;
	free(seqs);
	seqs = NULL;
	sp->cur = spool_cursor_new(sp, err, errlen);
	if (sp->cur == NULL)
		goto fail;
	return sp;
fail:
	rec->fsync_failed = sp->fsync_failed;
	free(seqs);
	spool_close(sp);
	return NULL;
}

void
spool_close(struct spool *sp)
{
	if (sp == NULL)
		return;
	if (sp->wfd >= 0)
		close(sp->wfd);
	while (sp->cursors != NULL)
		spool_cursor_free(sp->cursors);
	reader_free(&sp->scan);
	if (sp->dirfd >= 0)
		close(sp->dirfd);
	free(sp->segs);
	free(sp->dir);
	free(sp);
}

/* --- appending -------------------------------------------------------- */

static bool
check_usable(const struct spool *sp, char *err, size_t errlen)
{
	if (!sp->failed)
		return true;
	set_err(err, errlen, "spool \"%s\" is unusable after an earlier error (%s)", sp->dir,
		sp->failure);
	return false;
}

/* Marks the spool failed with the message in err. */
static bool
fail_spool(struct spool *sp, const char *err)
{
	sp->failed = true;
	snprintf(sp->failure, sizeof(sp->failure), "%s", err ? err : "I/O error");
	return false;
}

/*
 * The segment to append total bytes to, opened for writing: the last one, or
 * a new one when there is none or the last would grow past segment_bytes
 * (which is fsynced first, see NOTES). *fresh: the header is still to write.
 */
static struct seg *
append_segment(struct spool *sp, uint64_t total, bool *fresh, char *err, size_t errlen)
{
	struct seg *last = sp->nsegs > 0 ? &sp->segs[sp->nsegs - 1] : NULL;
	char path[PATH_MAX];
	int flags = O_WRONLY | O_APPEND | O_CLOEXEC;

	*fresh = false;
	if (last != NULL && last->records > 0 && last->size + total > sp->segment_bytes) {
		if (sp->wfd >= 0) {
			if (spool_fsync(sp, sp->wfd) < 0) {
				seg_syserr(sp, sp->wfd_seq, "fsync", err, errlen);
				return NULL;
			}
			close(sp->wfd);
			sp->wfd = -1;
		}
		last = NULL;
	}
	if (last != NULL && sp->wfd >= 0)
		return last;
	if (last == NULL) {
		last = seg_push(sp, sp->next_seq);
		if (last == NULL) {
			set_err(err, errlen, "out of memory appending to spool \"%s\"", sp->dir);
			return NULL;
		}
		sp->next_seq++;
		flags |= O_CREAT | O_EXCL;
		*fresh = true;
		sp->dir_dirty = true;
	}
	seg_path(sp, last->seq, path);
	sp->wfd = open(path, flags, 0600);
	if (sp->wfd < 0) {
		seg_syserr(sp, last->seq, *fresh ? "create" : "open", err, errlen);
		return NULL;
	}
	sp->wfd_seq = last->seq;
	return last;
}

bool
spool_append(struct spool *sp, const struct spool_meta *meta, const void *body, size_t len,
		char *err, size_t errlen)
{
	uint8_t seghdr[SEG_HDR], rechdr[REC_HDR + META_SIZE];
	struct iovec iov[3];
	int iovcnt = 0;
	uint64_t total;
	struct seg *s;
	bool fresh;

	if (!check_usable(sp, err, errlen))
		return false;
	if (fault_hit("source.spool_append") == FAULT_FAIL) {
		errno = EIO;
		seg_syserr(sp, sp->nsegs > 0 ? sp->segs[sp->nsegs - 1].seq : sp->next_seq, "write",
			err, errlen);
		return fail_spool(sp, err);
	}
	if (len > SPOOL_RECORD_MAX - META_SIZE) {
		set_err(err, errlen, "record of %zu bytes is over the spool's limit of %u", len,
			SPOOL_RECORD_MAX - META_SIZE);
		return false;
	}
	total = REC_HDR + META_SIZE + (uint64_t)len;
	s = append_segment(sp, total, &fresh, err, errlen);
	if (s == NULL)
		return fail_spool(sp, err);

	if (fresh) {
		memcpy(seghdr, SEG_MAGIC, SEG_MAGIC_LEN);
		put_le32(seghdr + SEG_MAGIC_LEN, SEG_VERSION);
		put_le32(seghdr + SEG_MAGIC_LEN + 4, 0);
		iov[iovcnt++] = (struct iovec){ .iov_base = seghdr, .iov_len = SEG_HDR };
	}
	encode_meta(rechdr + REC_HDR, meta);
	put_le32(rechdr, (uint32_t)(META_SIZE + len));
	put_le32(rechdr + 4, crc32c(crc32c(0, rechdr + REC_HDR, META_SIZE), body, len));
	iov[iovcnt++] = (struct iovec){ .iov_base = rechdr, .iov_len = sizeof(rechdr) };
	if (len > 0)
		iov[iovcnt++] = (struct iovec){ .iov_base = (void *)body, .iov_len = len };
	if (!write_all(sp->wfd, iov, iovcnt)) {
		seg_syserr(sp, s->seq, "write", err, errlen);
		return fail_spool(sp, err);
	}
	if (fresh)
		s->file_size = SEG_HDR;
	s->file_size += total;
	sp->last_pos = (struct spool_pos){ .seq = s->seq, .off = s->size };
	seg_add_record(s, meta, total);
	if (meta->commit_end_lsn != 0)
		sp->end_lsn = meta->commit_end_lsn;
	return true;
}

bool
spool_sync(struct spool *sp, char *err, size_t errlen)
{
	if (!check_usable(sp, err, errlen))
		return false;
	/* A failed fsync is not retried: the kernel may have dropped the pages. */
	if (fault_hit("source.spool_fsync") == FAULT_FAIL) {
		sp->fsync_failed = true;
		errno = EIO;
		if (sp->wfd >= 0)
			seg_syserr(sp, sp->wfd_seq, "fsync", err, errlen);
		else
			set_err(err, errlen, "could not fsync directory \"%s\": %s", sp->dir,
				strerror(errno));
		return fail_spool(sp, err);
	}
	if (sp->wfd >= 0 && spool_fsync(sp, sp->wfd) < 0) {
		seg_syserr(sp, sp->wfd_seq, "fsync", err, errlen);
		return fail_spool(sp, err);
	}
	if (sp->dir_dirty && !sync_dir(sp, err, errlen))
		return fail_spool(sp, err);
	sp->durable_lsn = sp->end_lsn;
	return true;
}

bool
spool_truncate_incomplete(struct spool *sp, char *err, size_t errlen)
{
	const struct seg *last;

	if (!check_usable(sp, err, errlen))
		return false;
	if (!cut_tail(sp, complete_prefix(sp), err, errlen))
		return fail_spool(sp, err);
	/* Clamp the cursors to the new end (their prev stays: see NOTES). */
	last = sp->nsegs > 0 ? &sp->segs[sp->nsegs - 1] : NULL;
	for (struct spool_cursor *c = sp->cursors; c != NULL; c = c->next) {
		if (last == NULL)
			cursor_set(c, sp->next_seq, SEG_HDR, sp->floor);  /* where nothing is held */
		else if (c->seq > last->seq || (c->seq == last->seq && c->off > last->size))
			cursor_set(c, last->seq, last->size, c->prev);
	}
	return true;
}

/* --- positions and totals --------------------------------------------- */

uint64_t
spool_end_lsn(const struct spool *sp)
{
	return sp->end_lsn;
}

uint64_t
spool_durable_lsn(const struct spool *sp)
{
	return sp->durable_lsn;
}

uint64_t
spool_floor_lsn(const struct spool *sp)
{
	return sp->floor;
}

bool
spool_fsync_failed(const struct spool *sp)
{
	return sp->fsync_failed;
}

bool
spool_set_floor(struct spool *sp, uint64_t lsn, char *err, size_t errlen)
{
	uint64_t records;

	if (!check_usable(sp, err, errlen))
		return false;
	if (lsn <= sp->floor)
		return true;
	records = spool_records(sp);
	if (records > 0) {
		set_err(err, errlen, "cannot raise the floor of spool \"%s\" to " LSN_FMT
			": it holds %" PRIu64 " record%s", sp->dir, LSN_ARGS(lsn), records,
			records == 1 ? "" : "s");
		return false;
	}
	if (!write_floor(sp, lsn, err, errlen))
		return fail_spool(sp, err);
	sp->end_lsn = max_u64(sp->end_lsn, lsn);
	sp->durable_lsn = max_u64(sp->durable_lsn, lsn);
	/* no record before a cursor ends a transaction: each continues from the floor */
	for (struct spool_cursor *c = sp->cursors; c != NULL; c = c->next)
		c->prev = lsn;
	return true;
}

/*
 * Moves the cursors in removed segments to the oldest record the floor does
 * not cover (or the next one made). Every sink acknowledged what they skip
 * (the caller releases at the lowest acknowledgement), so no sender needs
 * it; a sink that did not would see the jump in prev. The spool's own reader
 * finds the place: no cursor's window (a body it returned) is touched.
 */
static bool
cursors_past_release(struct spool *sp, char *err, size_t errlen)
{
	uint64_t seq = 0, off = 0;
	bool found = false;

	for (struct spool_cursor *c = sp->cursors; c != NULL; c = c->next) {
		if (sp->nsegs > 0 && c->seq >= sp->segs[0].seq)
			continue;
		if (!found) {
			bool ok = oldest_pos(sp, &sp->scan, &seq, &off, err, errlen);

			reader_free(&sp->scan);
			if (!ok)
				return false;
			found = true;
		}
		cursor_set(c, seq, off, sp->floor);
	}
	return true;
}

int
spool_release(struct spool *sp, uint64_t acked_lsn, char *err, size_t errlen)
{
	return spool_release_keep(sp, acked_lsn, NULL, err, errlen);
}

int
spool_release_keep(struct spool *sp, uint64_t acked_lsn, const struct spool_pos *keep,
		char *err, size_t errlen)
{
	uint64_t floor = sp->floor, end;
	size_t n = 0;
	int removed;

	if (!check_usable(sp, err, errlen))
		return -1;
	while (n < sp->nsegs && n < INT_MAX && segment_end(sp, n, &end) && end <= acked_lsn &&
	       !(keep && sp->segs[n].seq >= keep->seq)) {
		floor = max_u64(floor, end);
		n++;
	}
	if (n == 0)
		return 0;
	/* The floor first: a crash before the segments go leaves them to recovery. */
	if (floor > sp->floor && !write_floor(sp, floor, err, errlen)) {
		fail_spool(sp, err);
		return -1;
	}
	/* (the sink can acknowledge what is not fsynced here yet) */
	sp->end_lsn = max_u64(sp->end_lsn, floor);
	sp->durable_lsn = max_u64(sp->durable_lsn, floor);
	for (removed = 0; (size_t)removed < n; removed++) {
		if (!remove_segment(sp, 0, err, errlen)) {
			fail_spool(sp, err);
			return -1;
		}
	}
	if (!cursors_past_release(sp, err, errlen)) {
		fail_spool(sp, err);
		return -1;
	}
	return removed;
}

uint64_t
spool_bytes(const struct spool *sp)
{
	uint64_t b = 0;

	for (size_t i = 0; i < sp->nsegs; i++)
		b += sp->segs[i].size;
	return b;
}

uint64_t
spool_records(const struct spool *sp)
{
	uint64_t r = 0;

	for (size_t i = 0; i < sp->nsegs; i++)
		r += sp->segs[i].records;
	return r;
}

int64_t
spool_oldest_us(const struct spool *sp)
{
	for (size_t i = 0; i < sp->nsegs; i++)
		if (sp->segs[i].records > 0)
			return sp->segs[i].first_spooled_at;
	return 0;
}

struct spool_pos
spool_last_pos(const struct spool *sp)
{
	return sp->last_pos;
}

/* --- cursors -------------------------------------------------------- */

struct spool_cursor *
spool_cursor_new(struct spool *sp, char *err, size_t errlen)
{
	struct spool_cursor *c = calloc(1, sizeof(*c));

	if (c == NULL) {
		set_err(err, errlen, "out of memory making a cursor on spool \"%s\"", sp->dir);
		return NULL;
	}
	c->sp = sp;
	reader_init(&c->rd);
	if (!cursor_to_oldest(c, err, errlen)) {
		reader_free(&c->rd);
		free(c);
		return NULL;
	}
	c->next = sp->cursors;
	sp->cursors = c;
	return c;
}

void
spool_cursor_free(struct spool_cursor *c)
{
	struct spool_cursor **pp;

	if (c == NULL)
		return;
	for (pp = &c->sp->cursors; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	reader_free(&c->rd);
	free(c);
}

uint64_t
spool_cursor_unread_bytes(const struct spool_cursor *c)
{
	const struct spool *sp = c->sp;
	uint64_t b = 0;

	for (size_t i = 0; i < sp->nsegs; i++) {
		const struct seg *s = &sp->segs[i];

		if (s->seq > c->seq)
			b += s->size - SEG_HDR;
		else if (s->seq == c->seq && s->size > c->off)
			b += s->size - c->off;
	}
	return b;
}

enum spool_seek_result
spool_cursor_seek(struct spool_cursor *c, uint64_t resume_lsn, uint64_t *prev_lsn,
		char *err, size_t errlen)
{
	const struct spool *sp = c->sp;
	uint64_t seq, off, prev;

	if (resume_lsn != 0 && resume_lsn < sp->floor) {
		set_err(err, errlen, "cannot resume after " LSN_FMT ": the spool's floor is "
			LSN_FMT ", the transactions that end in between were released",
			LSN_ARGS(resume_lsn), LSN_ARGS(sp->floor));
		return SPOOL_SEEK_GAP;
	}
	/* 0: the sink has nothing, served from the oldest record the floor does not cover */
	if (!locate(sp, &c->rd, max_u64(resume_lsn, sp->floor), &seq, &off, &prev, err, errlen))
		return SPOOL_SEEK_ERROR;
	cursor_set(c, seq, off, max_u64(prev, sp->floor));
	if (prev_lsn != NULL)
		*prev_lsn = c->prev;
	return SPOOL_SEEK_OK;
}

/* Where a record at pos continues from: the last transaction end before it, or the floor. */
static bool
prev_of(const struct spool *sp, struct reader *r, const struct seg *s, uint64_t pos,
		uint64_t *prev, char *err, size_t errlen)
{
	*prev = 0;
	for (const struct seg *e = sp->segs; e < s; e++)
		if (e->last_commit_end != 0)
			*prev = e->last_commit_end;
	if (!reader_open(sp, r, s->seq, err, errlen))
		return false;
	for (uint64_t at = SEG_HDR; at < pos;) {
		struct spool_meta m;
		const uint8_t *body;
		size_t blen;
		uint64_t total;
		char why[WHY_LEN];
		enum read_status rs = read_record(sp, r, at, s->size, &m, &body, &blen, &total, why,
			err, errlen);

		if (rs != READ_OK) {
			if (rs != READ_IOERR)
				set_err(err, errlen, "spool segment %" PRIu64 " at %" PRIu64 ": %s", s->seq, at, why);
			return false;
		}
		if (m.commit_end_lsn != 0)
			*prev = m.commit_end_lsn;
		at += total;
	}
	*prev = max_u64(*prev, sp->floor);
	return true;
}

enum spool_seek_result
spool_cursor_seek_from(struct spool_cursor *c, uint64_t resume_lsn, const struct spool_pos *from,
		uint64_t *prev_lsn, char *err, size_t errlen)
{
	enum spool_seek_result r = spool_cursor_seek(c, resume_lsn, prev_lsn, err, errlen);
	const struct seg *s = from ? seg_find(c->sp, from->seq) : NULL;
	uint64_t prev;

	if (r != SPOOL_SEEK_OK || !from)
		return r;
	if (!s || from->off < SEG_HDR || from->off >= s->size) {
		set_err(err, errlen, "cannot resume from segment %" PRIu64 " at %" PRIu64 ": the spool "
			"no longer holds it", from->seq, from->off);
		return SPOOL_SEEK_GAP;
	}
	if (from->seq > c->seq || (from->seq == c->seq && from->off >= c->off))
		return r;  /* the cursor is at or before it already */
	if (!prev_of(c->sp, &c->rd, s, from->off, &prev, err, errlen))
		return SPOOL_SEEK_ERROR;
	cursor_set(c, from->seq, from->off, prev);
	if (prev_lsn != NULL)
		*prev_lsn = prev;
	return SPOOL_SEEK_OK;
}

int
spool_cursor_read(struct spool_cursor *c, struct spool_meta *meta, const uint8_t **body,
		size_t *len, char *err, size_t errlen)
{
	const struct spool *sp = c->sp;

	for (;;) {
		const struct seg *s = seg_find(sp, c->seq);
		enum read_status rs;
		uint64_t total;
		char why[WHY_LEN];

		if (s == NULL)
			return 0;        /* past the end: the next segment is not made yet */
		if (c->off >= s->size) {
			size_t next = (size_t)(s - sp->segs) + 1;

			if (next >= sp->nsegs)
				return 0;
			c->seq = sp->segs[next].seq;
			c->off = SEG_HDR;
			continue;
		}
		if (!reader_open(sp, &c->rd, s->seq, err, errlen))
			return -1;
		rs = read_record(sp, &c->rd, c->off, s->size, meta, body, len, &total, why, err, errlen);
		if (rs == READ_OK) {
			c->off += total;
			if (meta->commit_end_lsn != 0)
				c->prev = meta->commit_end_lsn;
			return 1;
		}
		if (rs != READ_IOERR) {
			char path[PATH_MAX];

			seg_path(sp, s->seq, path);
			set_err(err, errlen, "spool segment \"%s\" at %" PRIu64 ": %s", path, c->off, why);
		}
		return -1;
	}
}

uint64_t
spool_cursor_prev(const struct spool_cursor *c)
{
	return c->prev;
}

/* --- the default cursor ------------------------------------------------ */

uint64_t
spool_unread_bytes(const struct spool *sp)
{
	return spool_cursor_unread_bytes(sp->cur);
}

enum spool_seek_result
spool_seek(struct spool *sp, uint64_t resume_lsn, uint64_t *prev_lsn, char *err, size_t errlen)
{
	return spool_cursor_seek(sp->cur, resume_lsn, prev_lsn, err, errlen);
}

enum spool_seek_result
spool_seek_from(struct spool *sp, uint64_t resume_lsn, const struct spool_pos *from,
		uint64_t *prev_lsn, char *err, size_t errlen)
{
	return spool_cursor_seek_from(sp->cur, resume_lsn, from, prev_lsn, err, errlen);
}

int
spool_read(struct spool *sp, struct spool_meta *meta, const uint8_t **body, size_t *len,
		char *err, size_t errlen)
{
	return spool_cursor_read(sp->cur, meta, body, len, err, errlen);
}

uint64_t
spool_cursor_prev_lsn(const struct spool *sp)
{
	return sp->cur->prev;
}
