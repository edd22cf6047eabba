/*
 * retain.c — a replica's retained batches (see retain.h).
 *
 * NOTES
 * The record being built lives in buf: [0, done) ends at a Commit and goes
 * out whole; [done, len) is the tail, the transaction still open (or
 * messages outside one). A body is checked whole before any of it is taken,
 * so a malformed one leaves everything as it was.
 *
 * Pieces. The tail goes out as a continuation record when the next message
 * would take it past RETAIN_PIECE_BYTES (the complete part first, as a record
 * of its own), so records stay within that size but for the Relation
 * messages relcache puts in front. A larger message fills the tail up to it
 * and goes on in pieces of that size; its rest begins the next record (lead
 * bytes, for relcache). The spool's end counts only records that end a
 * transaction, so cutting what an unfinished one appended is
 * spool_truncate_incomplete().
 *
 * Checkpoints. Records go in LSN order and, on a clock that only advances, in
 * time order: the records ending at or before a checkpoint's LSN were all
 * spooled by its time, so releasing there frees nothing newer. One a second
 * and one at each new segment keep both time and size trimming within about
 * a second and a segment.
 */
#include "gateway/stream/retain.h"

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
#include <unistd.h>

#include "common/be32.h"
#include "common/dirs.h"
#include "common/log.h"
#include "common/lsn.h"
#include "gateway/stream/relcache.h"
#include "gateway/stream/spool.h"
#include "replicator/pgoutput.h"

#define SOURCE_FILE "source"
#define SOURCE_TMP  "source.tmp"
#define SOURCE_MAX  255             /* longest source name */
#define SEAL_FILE   "applied"
#define BUF_KEEP    (1u * 1024u * 1024u)  /* a record buffer this big or smaller is kept */
#define USEC_PER_SEC INT64_C(1000000)

struct retain_checkpoint {
	uint64_t lsn;                /* a record's commit_end_lsn */
	int64_t at_us;               /* its spooled_at_us */
};

struct retain {
	char *dir;
	char *source;
	struct spool *sp;            /* NULL while reopening it failed */
	uint64_t generation;         /* spools opened */
	struct relcache *rc;
	bool stopped;                /* a take failed: nothing taken until retain_resume() */
	bool broken;                 /* a spool call failed: reopened by retain_resume() */
	bool must_empty;             /* an fsync failed: emptied, not trusted, when reopened */
	/* the record being built (see NOTES) */
	uint8_t *buf;
	size_t len, cap, done;
	size_t lead;                 /* bytes at buf's start that end a message begun before */
	bool mid_txn;                /* buf starts inside a transaction or a message */
	uint64_t first_begin;        /* final_lsn of the first Begin in buf, 0: none */
	struct spool_meta done_meta; /* commit_end_lsn, commit_time_us, transactions of [0, done) */
	/* the transaction being taken */
	bool in_txn;
	bool dropping;               /* retained already: dropped but for its Relation and Type */
	uint64_t txn_lsn;            /* its Begin's final_lsn */
	uint64_t last_end;           /* the last Commit's end_lsn: a Begin below it is dropped */
	/* trimming (see NOTES) */
	struct retain_checkpoint *cps;
	size_t ncps;
	uint64_t last_seq;           /* segment of the last record appended */
	bool roll_pending;           /* a segment began since the last checkpoint */
	bool open_mark;              /* records found on opening: checkpoint at the next now_us */
	uint64_t open_end;           /* their end */
};

static bool fail(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static bool fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return false;
}

/* --- the directory and its "source" file ------------------------------ */

static bool write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		p += w;
		n -= (size_t)w;
	}
	return true;
}

static bool sync_dir_fd(int dfd, const char *dir, char *err, size_t errlen)
{
	if (fsync(dfd) < 0)
		return fail(err, errlen, "could not fsync directory \"%s\": %s", dir, strerror(errno));
	return true;
}

/* Replaces dir/name with text durably: a temporary file, fsynced, renamed, the directory fsynced. */
static bool write_text(const char *dir, const char *name, const char *text, char *err, size_t errlen)
{
	char path[PATH_MAX], tmp[PATH_MAX];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	snprintf(tmp, sizeof(tmp), "%s/%s.tmp", dir, name);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return fail(err, errlen, "could not create \"%s\": %s", tmp, strerror(errno));
	if (!write_all(fd, text, strlen(text))) {
		fail(err, errlen, "could not write \"%s\": %s", tmp, strerror(errno));
		close(fd);
		return false;
	}
	if (fsync(fd) < 0) {
		fail(err, errlen, "could not fsync \"%s\": %s", tmp, strerror(errno));
		close(fd);
		return false;
	}
	if (close(fd) < 0)
		return fail(err, errlen, "could not close \"%s\": %s", tmp, strerror(errno));
	if (rename(tmp, path) < 0)
		return fail(err, errlen, "could not rename \"%s\" to \"%s\": %s", tmp, path,
			    strerror(errno));
	return dirs_sync(dir, err, errlen);
}

static bool write_source(const char *dir, const char *source, char *err, size_t errlen)
{
	char text[SOURCE_MAX + 2];

	snprintf(text, sizeof(text), "%s\n", source);
	return write_text(dir, SOURCE_FILE, text, err, errlen);
}

/* dir/name into out (a last newline stripped); *found false when there is none. */
static bool read_text(const char *dir, const char *name, char *out, size_t outlen, bool *found,
		char *err, size_t errlen)
{
	char path[PATH_MAX];
	size_t got = 0;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	*found = false;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT)
		return true;
	if (fd < 0)
		return fail(err, errlen, "could not open \"%s\": %s", path, strerror(errno));
	while (got < outlen - 1) {
		ssize_t n = read(fd, out + got, outlen - 1 - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			fail(err, errlen, "could not read \"%s\": %s", path, strerror(errno));
			close(fd);
			return false;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	if (got > 0 && out[got - 1] == '\n')
		got--;
	out[got] = '\0';
	*found = true;
	return true;
}

/* Removes every entry of dfd's directory, the source file first (see empty_dir()). */
static bool remove_entries(int dfd, const char *dir, size_t *removed, char *err, size_t errlen)
{
	struct dirent *de;
	bool ok = true;
	DIR *d;
	int lfd;

	if (unlinkat(dfd, SOURCE_FILE, 0) == 0)
		(*removed)++;
	else if (errno != ENOENT)
		return fail(err, errlen, "could not remove \"%s/%s\": %s", dir, SOURCE_FILE, strerror(errno));
	lfd = dup(dfd);
	d = lfd < 0 ? NULL : fdopendir(lfd);
	if (d == NULL) {
		fail(err, errlen, "could not read directory \"%s\": %s", dir, strerror(errno));
		if (lfd >= 0)
			close(lfd);
		return false;
	}
	while (ok && (errno = 0, de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (unlinkat(dfd, de->d_name, 0) < 0)
			ok = fail(err, errlen, "could not remove \"%s/%s\": %s", dir, de->d_name,
				  strerror(errno));
		else
			(*removed)++;
	}
	if (ok && errno != 0)
		ok = fail(err, errlen, "could not read directory \"%s\": %s", dir, strerror(errno));
	closedir(d);
	return ok;
}

/*
 * Removes every file of dir under the spool's own lock (an flock on the
 * directory), so no spool is open on it meanwhile. The source file goes
 * first: a crash half-way leaves a directory without one, emptied again at
 * the next open.
 */
static bool empty_dir(const char *dir, const char *why, char *err, size_t errlen)
{
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	size_t removed = 0;
	bool ok;

	if (dfd < 0)
		return fail(err, errlen, "could not open directory \"%s\": %s", dir, strerror(errno));
	if (flock(dfd, LOCK_EX | LOCK_NB) < 0) {
		if (errno == EWOULDBLOCK)
			fail(err, errlen, "retained batches \"%s\" are open (by this or another process)", dir);
		else
			fail(err, errlen, "could not lock \"%s\": %s", dir, strerror(errno));
		close(dfd);
		return false;
	}
	ok = remove_entries(dfd, dir, &removed, err, errlen) && sync_dir_fd(dfd, dir, err, errlen);
	close(dfd);
	if (ok && removed > 0)
		log_info("retained batches \"%s\" emptied (%zu files removed): %s", dir, removed, why);
	return ok;
}

/* --- the spool ---------------------------------------------------------- */

/* Forgets what is buffered and the transaction being taken. */
static void forget_tail(struct retain *r)
{
	r->len = r->done = r->lead = 0;
	r->mid_txn = false;
	r->first_begin = 0;
	r->done_meta = (struct spool_meta){ 0 };
	r->in_txn = r->dropping = false;
	r->txn_lsn = 0;
}

/* Opens the spool and starts afresh on what it holds. */
static bool spool_start(struct retain *r, char *err, size_t errlen)
{
	struct spool_recovery rec;

	r->sp = spool_open(r->dir, RETAIN_SEGMENT_BYTES, &rec, err, errlen);
	if (r->sp == NULL) {
		r->must_empty = r->must_empty || rec.fsync_failed;
		return false;
	}
	r->generation++;
	r->broken = false;
	if (rec.dropped_bytes > 0)
		log_info("retained batches \"%s\": recovery cut %" PRIu64 " bytes from the tail (%s)",
			 r->dir, rec.dropped_bytes, rec.detail[0] ? rec.detail : "an unfinished transaction");
	forget_tail(r);
	r->last_end = spool_end_lsn(r->sp);
	r->ncps = 0;
	r->last_seq = 0;
	r->roll_pending = false;
	r->open_mark = spool_records(r->sp) > 0 && r->last_end > 0;
	r->open_end = r->last_end;
	return true;
}

/* Empties the directory when must_empty says so, then opens the spool. */
static bool spool_restart(struct retain *r, const char *why, char *err, size_t errlen)
{
	if (r->must_empty && !empty_dir(r->dir, why, err, errlen))
		return false;
	if (!spool_start(r, err, errlen))
		return false;
	if (r->must_empty && !write_source(r->dir, r->source, err, errlen)) {
		r->broken = true;    /* emptied again at the next resume */
		return false;
	}
	r->must_empty = false;
	return true;
}

/* A spool call's result: a failure leaves the spool unusable until reopened. */
static bool spool_ok(struct retain *r, bool ok)
{
	if (!ok)
		r->broken = true;
	return ok;
}

static bool retain_ready(const struct retain *r, char *err, size_t errlen)
{
	if (r->sp == NULL)
		return fail(err, errlen, "retained batches \"%s\" are not open (reopening failed)", r->dir);
	if (r->broken)
		return fail(err, errlen, "retained batches \"%s\" are unusable after an I/O error until "
			    "the next resume", r->dir);
	return true;
}

static bool source_name_ok(const char *source, char *err, size_t errlen)
{
	size_t n = strlen(source);

	if (n == 0 || n > SOURCE_MAX || strchr(source, '\n') != NULL)
		return fail(err, errlen, "invalid source site name \"%s\"", source);
	return true;
}

struct retain *retain_open(const char *dir, const char *source, char *err, size_t errlen)
{
	char found[SOURCE_MAX + 2], why[2 * SOURCE_MAX + 64];
	struct retain *r;
	bool have;

	if (!source_name_ok(source, err, errlen))
		return NULL;
	if (strlen(dir) + sizeof(SOURCE_TMP) + 1 >= PATH_MAX) {
		fail(err, errlen, "directory name too long: \"%s\"", dir);
		return NULL;
	}
	r = calloc(1, sizeof(*r));
	if (r == NULL || (r->dir = strdup(dir)) == NULL || (r->source = strdup(source)) == NULL ||
	    (r->rc = relcache_new()) == NULL ||
	    (r->cps = calloc(RETAIN_CHECKPOINTS, sizeof(*r->cps))) == NULL) {
		fail(err, errlen, "out of memory opening retained batches \"%s\"", dir);
		goto failed;
	}
	if (!dirs_make(dir, err, errlen))
		goto failed;
	if (!read_text(dir, SOURCE_FILE, found, sizeof(found), &have, err, errlen))
		goto failed;
	/* LSNs of another server mean nothing here */
	r->must_empty = !have || strcmp(found, source) != 0;
	if (have)
		snprintf(why, sizeof(why), "they came from source \"%s\", the stream now comes from \"%s\"",
			 found, source);
	else
		snprintf(why, sizeof(why), "no source file says whose LSNs they carry");
	if (!spool_restart(r, why, err, errlen))
		goto failed;
	return r;
failed:
	retain_close(r);
	return NULL;
}

/* --- what lives beside the spool, read and written without opening it --- */

bool retain_dir_source(const char *dir, char *out, size_t outlen)
{
	bool have = false;

	return read_text(dir, SOURCE_FILE, out, outlen, &have, NULL, 0) && have;
}

bool retain_seal(const char *dir, const char *source, uint64_t applied_lsn, char *err,
		size_t errlen)
{
	char text[SOURCE_MAX + 64];

	if (!dirs_make(dir, err, errlen))
		return false;
	snprintf(text, sizeof(text), "source=%s\napplied=%" PRIu64 "\n", source, applied_lsn);
	return write_text(dir, SEAL_FILE, text, err, errlen);
}

bool retain_sealed(const char *dir, const char *source, uint64_t *applied_lsn)
{
	char text[SOURCE_MAX + 64], *nl;
	size_t n = strlen(source);
	bool have = false;

	if (!read_text(dir, SEAL_FILE, text, sizeof(text), &have, NULL, 0) || !have ||
	    strncmp(text, "source=", 7) != 0 || strncmp(text + 7, source, n) != 0 ||
	    !(nl = strchr(text + 7, '\n')) || nl != text + 7 + n)
		return false;
	return sscanf(nl + 1, "applied=%" SCNu64, applied_lsn) == 1;
}

void retain_unseal(const char *dir)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/%s", dir, SEAL_FILE);
	(void)unlink(path);
}

void retain_close(struct retain *r)
{
	if (r == NULL)
		return;
	spool_close(r->sp);
	relcache_free(r->rc);
	free(r->buf);
	free(r->cps);
	free(r->dir);
	free(r->source);
	free(r);
}

/* --- checkpoints ------------------------------------------------------ */

/* Full: every other one goes, the newest stays. */
static void thin_checkpoints(struct retain *r)
{
	size_t kept = 0;

	for (size_t i = 1; i < r->ncps; i += 2)
		r->cps[kept++] = r->cps[i];
	r->ncps = kept;
}

static void add_checkpoint(struct retain *r, uint64_t lsn, int64_t at_us)
{
	if (r->ncps == RETAIN_CHECKPOINTS)
		thin_checkpoints(r);
	r->cps[r->ncps++] = (struct retain_checkpoint){ .lsn = lsn, .at_us = at_us };
}

/* A record was appended (see NOTES). */
static void note_checkpoint(struct retain *r, uint64_t lsn, int64_t at_us)
{
	uint64_t seq = spool_last_pos(r->sp).seq;

	if (seq != r->last_seq)
		r->roll_pending = true;
	r->last_seq = seq;
	if (lsn == 0)
		return;
	if (r->ncps > 0 && !r->roll_pending && at_us - r->cps[r->ncps - 1].at_us < USEC_PER_SEC)
		return;
	add_checkpoint(r, lsn, at_us);
	r->roll_pending = false;
}

/* The records found on opening count as appended now (before any appended since). */
static void note_open_mark(struct retain *r, int64_t now_us)
{
	if (!r->open_mark)
		return;
	r->open_mark = false;
	if (r->ncps == RETAIN_CHECKPOINTS)
		thin_checkpoints(r);
	memmove(r->cps + 1, r->cps, r->ncps * sizeof(*r->cps));
	r->cps[0] = (struct retain_checkpoint){ .lsn = r->open_end, .at_us = now_us };
	r->ncps++;
}

/* Checkpoints the floor covers point at nothing any more. */
static void forget_released(struct retain *r)
{
	uint64_t floor = spool_floor_lsn(r->sp);
	size_t n = 0;

	while (n < r->ncps && r->cps[n].lsn <= floor)
		n++;
	memmove(r->cps, r->cps + n, (r->ncps - n) * sizeof(*r->cps));
	r->ncps -= n;
}

static int release_at(struct retain *r, uint64_t lsn, char *err, size_t errlen)
{
	int n = spool_release(r->sp, lsn, err, errlen);

	if (n < 0)
		r->broken = true;
	return n;
}

/* --- taking messages --------------------------------------------------- */

static bool buf_add(struct retain *r, const uint8_t *p, size_t n, char *err, size_t errlen)
{
	if (r->cap - r->len < n) {
		size_t cap = r->cap ? r->cap : 64 * 1024;
		uint8_t *grown;

		while (cap - r->len < n)
			cap *= 2;
		grown = realloc(r->buf, cap);
		if (grown == NULL)
			return fail(err, errlen, "out of memory retaining %zu bytes in \"%s\"", r->len + n,
				    r->dir);
		r->buf = grown;
		r->cap = cap;
	}
	memcpy(r->buf + r->len, p, n);
	r->len += n;
	return true;
}

/* Appends buf[0, len) with the Relation messages it lacks in front. */
static bool append_record(struct retain *r, struct spool_meta *meta, size_t len, bool continues,
		int64_t now_us, char *err, size_t errlen)
{
	const uint8_t *rec;
	size_t rec_len;

	if (!relcache_complete(r->rc, r->buf, len, r->lead, continues, &rec, &rec_len))
		return fail(err, errlen, "could not put Relation messages in front of a record of "
			    "%zu bytes for \"%s\": out of memory", len, r->dir);
	meta->spooled_at_us = now_us;
	if (!spool_ok(r, spool_append(r->sp, meta, rec, rec_len, err, errlen)))
		return false;
	note_checkpoint(r, meta->commit_end_lsn, now_us);
	return true;
}

/* Appends the whole transactions buffered, [0, done); the tail moves to the front. */
static bool flush_done(struct retain *r, int64_t now_us, char *err, size_t errlen)
{
	struct spool_meta meta = r->done_meta;

	if (r->done == 0)
		return true;
	meta.first_lsn = r->mid_txn ? 0 : r->first_begin;
	if (!append_record(r, &meta, r->done, false, now_us, err, errlen))
		return false;
	memmove(r->buf, r->buf + r->done, r->len - r->done);
	r->len -= r->done;
	r->done = 0;
	r->done_meta = (struct spool_meta){ 0 };
	r->lead = 0;
	r->mid_txn = false;
	/* the tail holds the open transaction's Begin, if any (its pieces would have emptied buf) */
	r->first_begin = r->in_txn && !r->dropping ? r->txn_lsn : 0;
	return true;
}

/* Appends what is buffered, the tail as a continuation record; continues: it ends inside a message. */
static bool flush_piece(struct retain *r, bool continues, int64_t now_us, char *err, size_t errlen)
{
	struct spool_meta meta = { .flags = continues ? SPOOL_FLAG_CONTINUES : 0 };

	if (!flush_done(r, now_us, err, errlen))
		return false;
	if (r->len == 0)
		return true;
	meta.first_lsn = r->mid_txn ? 0 : r->first_begin;
	if (!append_record(r, &meta, r->len, continues, now_us, err, errlen))
		return false;
	r->len = 0;
	r->lead = 0;
	r->mid_txn = r->in_txn || continues;
	r->first_begin = 0;
	return true;
}

/* A message larger than a piece: the tail filled up to a piece, then pieces of it. */
static bool add_large(struct retain *r, const uint8_t *msg, size_t total, int64_t now_us,
		char *err, size_t errlen)
{
	size_t off = 0;

	while (r->len - r->done + (total - off) > RETAIN_PIECE_BYTES) {
		size_t n = RETAIN_PIECE_BYTES - (r->len - r->done);

		if (!buf_add(r, msg + off, n, err, errlen))
			return false;
		if (off > 0)
			r->lead = n;        /* all of this piece is the message's middle */
		off += n;
		if (!flush_piece(r, true, now_us, err, errlen))
			return false;
	}
	/* the rest (never empty) begins the next record */
	if (!buf_add(r, msg + off, total - off, err, errlen))
		return false;
	r->lead = total - off;
	return true;
}

static bool add_message(struct retain *r, const uint8_t *msg, size_t total, int64_t now_us,
		char *err, size_t errlen)
{
	size_t tail = r->len - r->done;

	if (total > RETAIN_PIECE_BYTES)
		return add_large(r, msg, total, now_us, err, errlen);
	if (tail > 0 && tail + total > RETAIN_PIECE_BYTES && !flush_piece(r, false, now_us, err, errlen))
		return false;
	return buf_add(r, msg, total, err, errlen);
}

/* Decodes a Begin or a Commit; false with why when it is malformed. */
static bool decode_boundary(const uint8_t *m, size_t len, struct pgoutput_msg *out, const char **why)
{
	struct pgoutput_decoder d;
	enum pgoutput_status st;

	if (!pgoutput_decoder_init(&d, 2)) {
		*why = "no decoder";
		return false;
	}
	st = pgoutput_decode(&d, m, len, out, NULL, 0);
	*why = pgoutput_status_str(st);
	return st == PGOUTPUT_OK;
}

/* The Commit just buffered ends the complete part. */
static bool take_commit(struct retain *r, const struct pgoutput_msg *c, int64_t now_us,
		char *err, size_t errlen)
{
	r->in_txn = false;
	r->done = r->len;
	r->done_meta.commit_end_lsn = c->commit.end_lsn;
	r->done_meta.commit_time_us = pgoutput_time_to_unix_us(c->commit.commit_time);
	r->done_meta.transactions++;
	r->last_end = c->commit.end_lsn;
	if (r->done >= RETAIN_RECORD_TARGET)
		return flush_done(r, now_us, err, errlen);
	return true;
}

/* One message of a checked body (msg: its length and the message, total bytes). */
static bool take_message(struct retain *r, const uint8_t *msg, size_t total, int64_t now_us,
		char *err, size_t errlen)
{
	const uint8_t *m = msg + 4;
	struct pgoutput_msg bc;
	const char *why;

	if ((m[0] == PGOUTPUT_BEGIN || m[0] == PGOUTPUT_COMMIT) && !decode_boundary(m, total - 4, &bc, &why))
		return fail(err, errlen, "could not decode a message checked before: %s", why);
	if (m[0] == PGOUTPUT_BEGIN && bc.begin.final_lsn < r->last_end) {
		r->in_txn = r->dropping = true;   /* retained already */
		r->txn_lsn = bc.begin.final_lsn;
		return true;
	}
	/* its relations are kept: this session of pgoutput does not send them again */
	if (r->dropping && m[0] != PGOUTPUT_RELATION && m[0] != PGOUTPUT_TYPE) {
		if (m[0] == PGOUTPUT_COMMIT)
			r->in_txn = r->dropping = false;
		return true;
	}
	if (!add_message(r, msg, total, now_us, err, errlen))
		return false;
	if (m[0] == PGOUTPUT_BEGIN) {
		r->in_txn = true;
		r->txn_lsn = bc.begin.final_lsn;
		if (r->first_begin == 0)
			r->first_begin = r->txn_lsn;
	} else if (m[0] == PGOUTPUT_COMMIT) {
		return take_commit(r, &bc, now_us, err, errlen);
	}
	if (r->len - r->done >= RETAIN_PIECE_BYTES)
		return flush_piece(r, false, now_us, err, errlen);
	return true;
}

/* --- checking a body ------------------------------------------------------ */

struct body_state {
	bool in_txn;
	uint64_t txn_lsn;
};

static bool check_message(struct body_state *s, const uint8_t *m, size_t len, const char **why)
{
	struct pgoutput_msg msg;

	switch (m[0]) {
	case PGOUTPUT_BEGIN:
		if (!decode_boundary(m, len, &msg, why))
			return false;
		if (s->in_txn)
			return *why = "inside a transaction", false;
		s->in_txn = true;
		s->txn_lsn = msg.begin.final_lsn;
		return true;
	case PGOUTPUT_COMMIT:
		if (!decode_boundary(m, len, &msg, why))
			return false;
		if (!s->in_txn)
			return *why = "outside a transaction", false;
		if (msg.commit.commit_lsn != s->txn_lsn || msg.commit.end_lsn < msg.commit.commit_lsn)
			return *why = "its LSNs do not match the transaction's BEGIN", false;
		s->in_txn = false;
		return true;
	case PGOUTPUT_INSERT:
	case PGOUTPUT_UPDATE:
	case PGOUTPUT_DELETE:
	case PGOUTPUT_TRUNCATE:
		if (!s->in_txn)
			return *why = "outside a transaction", false;
		return true;
	case PGOUTPUT_RELATION:
	case PGOUTPUT_TYPE:
	case PGOUTPUT_ORIGIN:
	case PGOUTPUT_MESSAGE:
		return true;
	default:
		return *why = "not part of an ordinary transaction", false;
	}
}

/* A body is whole messages of ordinary transactions, going on from where the last one ended. */
static bool check_body(const struct retain *r, const uint8_t *body, size_t len, char *err,
		size_t errlen)
{
	struct body_state s = { .in_txn = r->in_txn, .txn_lsn = r->txn_lsn };
	const char *why;

	for (size_t off = 0; off < len;) {
		uint32_t mlen;

		if (len - off < 4)
			return fail(err, errlen, "malformed batch for \"%s\": a message length cut at byte %zu",
				    r->dir, off);
		mlen = be32_load(body + off);
		if (mlen == 0 || mlen > len - off - 4)
			return fail(err, errlen, "malformed batch for \"%s\": the message at byte %zu "
				    "says %" PRIu32 " bytes, %zu are left", r->dir, off, mlen, len - off - 4);
		if (!check_message(&s, body + off + 4, mlen, &why))
			return fail(err, errlen, "malformed batch for \"%s\": %s message at byte %zu: %s",
				    r->dir, pgoutput_msg_type_name(body[off + 4]), off, why);
		off += 4 + (size_t)mlen;
	}
	return true;
}

/* --- the interface -------------------------------------------------------- */

static bool stop(struct retain *r)
{
	r->stopped = true;
	return false;
}

bool retain_take(struct retain *r, const uint8_t *body, size_t len, int64_t now_us,
		char *err, size_t errlen)
{
	if (r->stopped)
		return fail(err, errlen, "retaining into \"%s\" stopped after an error until the next "
			    "resume", r->dir);
	if (!retain_ready(r, err, errlen) || !check_body(r, body, len, err, errlen))
		return stop(r);
	note_open_mark(r, now_us);
	for (size_t off = 0; off < len;) {
		size_t total = 4 + (size_t)be32_load(body + off);

		if (!take_message(r, body + off, total, now_us, err, errlen))
			return stop(r);
		off += total;
	}
	if (!flush_done(r, now_us, err, errlen))
		return stop(r);
	if (r->len == 0 && r->cap > BUF_KEEP) {
		free(r->buf);
		r->buf = NULL;
		r->cap = 0;
	}
	return true;
}

/* A hole: what the apply committed after the end is not here. */
static bool fill_hole(struct retain *r, uint64_t applied_lsn, char *err, size_t errlen)
{
	uint64_t end = spool_end_lsn(r->sp);

	if (spool_records(r->sp) > 0) {
		log_info("retained batches \"%s\" emptied: they end at " LSN_FMT " but the apply "
			 "committed up to " LSN_FMT, r->dir, LSN_ARGS(end), LSN_ARGS(applied_lsn));
		if (release_at(r, end, err, errlen) < 0)
			return false;
	}
	if (!spool_ok(r, spool_set_floor(r->sp, applied_lsn, err, errlen)))
		return false;
	r->ncps = 0;
	r->open_mark = false;
	return true;
}

bool retain_resume(struct retain *r, uint64_t applied_lsn, char *err, size_t errlen)
{
	if (r->sp != NULL && (r->broken || spool_fsync_failed(r->sp))) {
		r->must_empty = r->must_empty || spool_fsync_failed(r->sp);
		spool_close(r->sp);
		r->sp = NULL;
	}
	if (r->sp == NULL &&
	    !spool_restart(r, "after a failed fsync or source file write they are not trusted", err,
			   errlen))
		return false;
	forget_tail(r);
	if (!spool_ok(r, spool_truncate_incomplete(r->sp, err, errlen)))
		return false;
	if (applied_lsn > spool_end_lsn(r->sp) && !fill_hole(r, applied_lsn, err, errlen))
		return false;
	r->last_end = spool_end_lsn(r->sp);
	r->stopped = false;
	return true;
}

bool retain_cut(struct retain *r, char *err, size_t errlen)
{
	forget_tail(r);
	if (!retain_ready(r, err, errlen))
		return false;
	return spool_ok(r, spool_truncate_incomplete(r->sp, err, errlen));
}

bool retain_sync(struct retain *r, char *err, size_t errlen)
{
	if (!retain_ready(r, err, errlen))
		return false;
	return spool_ok(r, spool_sync(r->sp, err, errlen));
}

/* now_us - keep_us, not below INT64_MIN. */
static int64_t cutoff_us(int64_t now_us, int64_t keep_us)
{
	if (keep_us < 0)
		keep_us = 0;
	return now_us < INT64_MIN + keep_us ? INT64_MIN : now_us - keep_us;
}

int retain_trim(struct retain *r, int64_t now_us, int64_t keep_us, uint64_t max_bytes,
		uint64_t hold_lsn, char *err, size_t errlen)
{
	int64_t cutoff = cutoff_us(now_us, keep_us);
	size_t next = 0;
	int removed = 0, n;

	if (!retain_ready(r, err, errlen))
		return -1;
	note_open_mark(r, now_us);
	while (next < r->ncps && r->cps[next].at_us < cutoff && r->cps[next].lsn <= hold_lsn)
		next++;
	if (next > 0 && (removed = release_at(r, r->cps[next - 1].lsn, err, errlen)) < 0)
		return -1;
	while (max_bytes && spool_bytes(r->sp) > max_bytes) {
		/* past every checkpoint: the whole transactions held go */
		uint64_t lsn = next < r->ncps ? r->cps[next++].lsn : spool_end_lsn(r->sp);

		if ((n = release_at(r, lsn, err, errlen)) < 0)
			return -1;
		removed += n;
		if (lsn == spool_end_lsn(r->sp))
			break;
	}
	forget_released(r);
	return removed;
}

struct spool *retain_spool(struct retain *r)
{
	return r->sp;
}

uint64_t retain_generation(const struct retain *r)
{
	return r->generation;
}

uint64_t retain_end_lsn(const struct retain *r)
{
	return r->sp ? spool_end_lsn(r->sp) : 0;
}

uint64_t retain_floor_lsn(const struct retain *r)
{
	return r->sp ? spool_floor_lsn(r->sp) : 0;
}

const char *retain_source(const struct retain *r)
{
	return r->source;
}
