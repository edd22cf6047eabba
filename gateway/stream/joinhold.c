/*
 * joinhold.c — a joining table's held changes on disk (see joinhold.h).
 *
 * The file is a sequence of records (u32 big-endian length, message), the
 * format of a batch body. `durable` is the end of the last kept Commit: the
 * replay never reads past it, and a restart cuts the file back to it.
 */
#include "gateway/stream/joinhold.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/be32.h"

#define HOLD_WBUF (256u * 1024u)
#define HOLD_RBUF (1u * 1024u * 1024u)
#define MSG_BEGIN_LEN 21
#define MSG_COMMIT_LEN 26

struct joinhold {
	char *path;
	int fd;
	uint64_t size;               /* bytes in the file, the write buffer's included */
	uint64_t durable;            /* end of the last kept transaction */
	uint8_t *wbuf;
	size_t wlen;
	bool in_txn;
	bool skipping;               /* the open transaction is kept already */
	uint64_t cur_final, last_final;
	uint64_t kept;

	/* replay */
	uint64_t from_lsn;
	uint64_t read_off;
	bool r_in_txn, r_skip;
	uint64_t r_at;
	uint8_t *rbuf;
	uint64_t rbuf_off;
	size_t rbuf_len;
	uint64_t replayed;
};

static uint64_t hold_be64(const uint8_t *p)
{
	return (uint64_t)be32_load(p) << 32 | be32_load(p + 4);
}

static void hold_put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static void hold_put64(uint8_t *p, uint64_t v)
{
	hold_put32(p, (uint32_t)(v >> 32));
	hold_put32(p + 4, (uint32_t)v);
}

static bool hold_fail(char *err, size_t errlen, const struct joinhold *h, const char *what)
{
	snprintf(err, errlen, "%s %s: %s", what, h->path, strerror(errno));
	return false;
}

void joinhold_clean(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d)) != NULL) {
		size_t len = strlen(e->d_name);

		if (len > 10 && strncmp(e->d_name, "join-", 5) == 0 &&
		    strcmp(e->d_name + len - 5, ".hold") == 0)
			(void)unlinkat(dirfd(d), e->d_name, 0);
	}
	closedir(d);
}

struct joinhold *joinhold_new(const char *dir, unsigned n, char *err, size_t errlen)
{
	struct joinhold *h = calloc(1, sizeof(*h));

	if (!h || asprintf(&h->path, "%s/join-%u.hold", dir, n) < 0 ||
	    !(h->wbuf = malloc(HOLD_WBUF)) || !(h->rbuf = malloc(HOLD_RBUF))) {
		snprintf(err, errlen, "out of memory");
		if (h) {
			free(h->path);
			free(h->wbuf);
			free(h->rbuf);
			free(h);
		}
		return NULL;
	}
	h->fd = open(h->path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (h->fd < 0) {
		(void)hold_fail(err, errlen, h, "could not create");
		free(h->path);
		free(h->wbuf);
		free(h->rbuf);
		free(h);
		return NULL;
	}
	return h;
}

void joinhold_free(struct joinhold *h)
{
	if (!h)
		return;
	close(h->fd);
	(void)unlink(h->path);
	free(h->path);
	free(h->wbuf);
	free(h->rbuf);
	free(h);
}

static bool hold_flush(struct joinhold *h, char *err, size_t errlen)
{
	uint64_t at = h->size - h->wlen;
	size_t done = 0;

	while (done < h->wlen) {
		ssize_t w = pwrite(h->fd, h->wbuf + done, h->wlen - done, (off_t)(at + done));

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return hold_fail(err, errlen, h, "could not write");
		done += (size_t)w;
	}
	h->wlen = 0;
	return true;
}

static bool hold_write(struct joinhold *h, const uint8_t *p, size_t len, char *err, size_t errlen)
{
	while (len > 0) {
		size_t n = HOLD_WBUF - h->wlen < len ? HOLD_WBUF - h->wlen : len;

		memcpy(h->wbuf + h->wlen, p, n);
		h->wlen += n;
		h->size += n;
		p += n;
		len -= n;
		if (h->wlen == HOLD_WBUF && !hold_flush(h, err, errlen))
			return false;
	}
	return true;
}

bool joinhold_append(struct joinhold *h, const uint8_t *msg, size_t len, char *err,
		size_t errlen)
{
	uint8_t hdr[4];

	if (len == 0 || len > UINT32_MAX) {
		snprintf(err, errlen, "held message of %zu bytes", len);
		return false;
	}
	if (msg[0] == 'B') {
		if (len != MSG_BEGIN_LEN) {
			snprintf(err, errlen, "malformed Begin message: %zu bytes", len);
			return false;
		}
		if (h->in_txn && !joinhold_restart(h, err, errlen))
			return false;
		h->in_txn = true;
		h->cur_final = hold_be64(msg + 1);
		h->skipping = h->kept > 0 && h->cur_final <= h->last_final;
	}
	if (!h->in_txn) {
		snprintf(err, errlen, "held %c message outside a transaction", msg[0]);
		return false;
	}
	if (msg[0] == 'C' && len != MSG_COMMIT_LEN) {
		snprintf(err, errlen, "malformed Commit message: %zu bytes", len);
		return false;
	}
	if (h->skipping) {
		if (msg[0] == 'C')
			h->in_txn = h->skipping = false;
		return true;
	}
	hold_put32(hdr, (uint32_t)len);
	if (!hold_write(h, hdr, 4, err, errlen) || !hold_write(h, msg, len, err, errlen))
		return false;
	if (msg[0] != 'C')
		return true;
	if (!hold_flush(h, err, errlen))
		return false;
	h->in_txn = false;
	h->durable = h->size;
	h->last_final = h->cur_final;
	h->kept++;
	return true;
}

bool joinhold_restart(struct joinhold *h, char *err, size_t errlen)
{
	h->wlen = 0;
	h->in_txn = h->skipping = false;
	if (h->size == h->durable)
		return true;
	if (ftruncate(h->fd, (off_t)h->durable) != 0)
		return hold_fail(err, errlen, h, "could not cut back");
	h->size = h->durable;
	return true;
}

void joinhold_replay_from(struct joinhold *h, uint64_t snapshot_lsn)
{
	h->from_lsn = snapshot_lsn;
}

/* Makes [off, off + n) readable in rbuf; NULL on a read error. */
static const uint8_t *hold_read(struct joinhold *h, uint64_t off, size_t n, char *err,
		size_t errlen)
{
	uint8_t *grown;
	size_t want;

	if (off >= h->rbuf_off && off + n <= h->rbuf_off + h->rbuf_len)
		return h->rbuf + (off - h->rbuf_off);
	want = n > HOLD_RBUF ? n : HOLD_RBUF;
	if (want > h->durable - off)
		want = (size_t)(h->durable - off);
	if (want < n) {
		snprintf(err, errlen, "%s: record runs past the kept transactions", h->path);
		return NULL;
	}
	if (want > HOLD_RBUF) {
		grown = realloc(h->rbuf, want);
		if (!grown) {
			snprintf(err, errlen, "out of memory");
			return NULL;
		}
		h->rbuf = grown;
	}
	for (size_t done = 0; done < want;) {
		ssize_t r = pread(h->fd, h->rbuf + done, want - done, (off_t)(off + done));

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			if (r == 0)
				errno = EIO;
			(void)hold_fail(err, errlen, h, "could not read");
			return NULL;
		}
		done += (size_t)r;
	}
	h->rbuf_off = off;
	h->rbuf_len = want;
	return h->rbuf;
}

static bool hold_body_add(uint8_t **body, size_t *len, size_t *cap, const uint8_t *rec, size_t n)
{
	if (*cap - *len < n) {
		size_t c = *cap ? *cap : 64 * 1024;
		uint8_t *grown;

		while (c - *len < n)
			c *= 2;
		grown = realloc(*body, c);
		if (!grown)
			return false;
		*body = grown;
		*cap = c;
	}
	memcpy(*body + *len, rec, n);
	*len += n;
	return true;
}

/* Whether the record is skipped with its transaction (the Begin decides). */
static bool hold_skips(const struct joinhold *h, const uint8_t *rec, uint32_t mlen)
{
	if (rec[4] == 'B' && mlen == MSG_BEGIN_LEN)
		return hold_be64(rec + 5) < h->from_lsn;
	return h->r_skip;
}

/* One kept message into the piece (rewritten), or skipped with its transaction. */
static bool hold_take(struct joinhold *h, uint64_t at_lsn, const uint8_t *rec, uint32_t mlen,
		uint8_t **body, size_t *len, size_t *cap)
{
	size_t start = *len;
	uint8_t *m;

	if (rec[4] == 'B' && mlen == MSG_BEGIN_LEN) {
		h->r_skip = hold_be64(rec + 5) < h->from_lsn;
		h->r_in_txn = true;
		h->r_at = at_lsn;
	}
	if (h->r_skip) {
		if (rec[4] == 'C')
			h->r_in_txn = h->r_skip = false;
		return true;
	}
	if (!hold_body_add(body, len, cap, rec, 4 + (size_t)mlen))
		return false;
	m = *body + start + 4;
	if (m[0] == 'B' && mlen == MSG_BEGIN_LEN) {
		hold_put64(m + 1, h->r_at);
	} else if (m[0] == 'C' && mlen == MSG_COMMIT_LEN) {
		hold_put64(m + 2, h->r_at);
		hold_put64(m + 10, h->r_at);
		h->r_in_txn = false;
		h->replayed++;
	}
	return true;
}

enum joinhold_next joinhold_next(struct joinhold *h, uint64_t at_lsn, uint8_t **body,
		size_t *len, bool *in_txn, char *err, size_t errlen)
{
	size_t cap = 0;

	*body = NULL;
	*len = 0;
	while (h->read_off < h->durable && *len < JOINHOLD_BODY_BYTES) {
		const uint8_t *hdr = hold_read(h, h->read_off, 4, err, errlen), *rec;
		uint32_t mlen;

		if (!hdr)
			goto fail;
		mlen = be32_load(hdr);
		rec = mlen ? hold_read(h, h->read_off, 4 + (size_t)mlen, err, errlen) : NULL;
		if (!rec) {
			if (!mlen)
				snprintf(err, errlen, "%s: empty record", h->path);
			goto fail;
		}
		if (*len > 0 && *len + 4 + (size_t)mlen > JOINHOLD_BODY_BYTES && !hold_skips(h, rec, mlen))
			break;
		if (!hold_take(h, at_lsn, rec, mlen, body, len, &cap)) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
		h->read_off += 4 + (uint64_t)mlen;
	}
	*in_txn = h->r_in_txn;
	if (*len == 0) {
		free(*body);
		*body = NULL;
		return h->read_off < h->durable ? JOINHOLD_BODY : JOINHOLD_CAUGHT_UP;
	}
	return JOINHOLD_BODY;
fail:
	free(*body);
	*body = NULL;
	return JOINHOLD_ERROR;
}

uint64_t joinhold_pending_bytes(const struct joinhold *h)
{
	return h->durable - h->read_off;
}

uint64_t joinhold_kept_count(const struct joinhold *h)
{
	return h->kept;
}

uint64_t joinhold_replayed_count(const struct joinhold *h)
{
	return h->replayed;
}
