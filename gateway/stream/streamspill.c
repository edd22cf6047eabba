/*
 * streamspill.c — streamed transactions held on disk until their commit
 * (see streamspill.h).
 *
 * NOTES
 * Subtransaction aborts. A change carries the xid of the subtransaction that
 * made it; the first change of each one is remembered with its offset in the
 * file. When a subtransaction aborts, everything from its first change to
 * the end of the file so far is its own or a nested one's (the session was
 * inside it until the abort), so that range is marked aborted, and the
 * subtransactions first seen inside it are forgotten with it. The replay
 * skips the changes in aborted ranges but keeps Relation and Type messages:
 * pgoutput sends a relation's shape once per streamed transaction, and a
 * change after the rollback may need the one sent inside it.
 *
 * Files are written through one buffer (the transaction of the open block)
 * and read back through another, so a change costs no system call of its own.
 */
#include "gateway/stream/streamspill.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/be32.h"
#include "common/dirs.h"

#define SPILL_SUFFIX ".spill"
#define SPILL_WBUF (256u * 1024u)
#define SPILL_RBUF (1u * 1024u * 1024u)
/* pgoutput sizes: Stream Start, Stream Commit, Stream Abort (without the parallel fields). */
#define MSG_STREAM_START_LEN 6
#define MSG_STREAM_COMMIT_LEN 30
#define MSG_STREAM_ABORT_LEN 9
#define MSG_BEGIN_LEN 21
#define MSG_COMMIT_LEN 26

struct spill_range {
	uint64_t from, to;
};

struct spill_sub {
	uint32_t xid;
	uint64_t off;                /* its first change in the file */
};

struct spill_txn {
	struct spill_txn *next;
	uint32_t xid;
	bool broken;                 /* its first block was not seen: no file */
	int fd;
	uint64_t size;               /* bytes in the file, the write buffer's included */
	struct spill_sub *subs;
	size_t nsubs, capsubs;
	struct spill_range *aborted;
	size_t naborted, capaborted;
};

struct spill_parked {
	struct spill_parked *next;
	size_t len, off;
	uint8_t data[];
};

struct spill_replay {
	struct spill_txn *t;         /* NULL: none */
	uint64_t off;
	bool begun;
	uint64_t commit_lsn, end_lsn;
	int64_t commit_time;
};

struct streamspill {
	char *dir;
	struct spill_txn *txns;
	struct spill_txn *block;     /* the open block's transaction, NULL outside one */
	bool in_block;
	struct spill_replay rp;
	struct spill_parked *park_head, *park_tail;

	struct spill_txn *wtxn;      /* whose bytes wbuf holds */
	uint8_t *wbuf;
	size_t wlen;
	uint8_t *rbuf;               /* file bytes [roff, roff + rlen) of the replayed one */
	size_t rcap, rlen;
	uint64_t roff;
	uint8_t *out;                /* the body a replay delivers */
	size_t out_cap;

	uint64_t consumed, replayed, spilled, committed, aborted_txns;
	size_t open;
};

static void spill_err(char *why, size_t whylen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void spill_err(char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, whylen, fmt, ap);
	va_end(ap);
}

static void put_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static void put_u64(uint8_t *p, uint64_t v)
{
	put_u32(p, (uint32_t)(v >> 32));
	put_u32(p + 4, (uint32_t)v);
}

static uint64_t get_u64(const uint8_t *p)
{
	return (uint64_t)be32_load(p) << 32 | be32_load(p + 4);
}

static void spill_path(const struct streamspill *ss, uint32_t xid, char out[PATH_MAX])
{
	snprintf(out, PATH_MAX, "%s/%" PRIu32 SPILL_SUFFIX, ss->dir, xid);
}

/* Removes the files a previous process left: they are never trusted again. */
static bool spill_clean_dir(const char *dir, char *err, size_t errlen)
{
	DIR *d = opendir(dir);
	struct dirent *e;

	if (!d) {
		spill_err(err, errlen, "cannot open \"%s\": %s", dir, strerror(errno));
		return false;
	}
	while ((e = readdir(d)) != NULL) {
		size_t n = strlen(e->d_name), sl = strlen(SPILL_SUFFIX);
		char path[PATH_MAX];

		if (n <= sl || strcmp(e->d_name + n - sl, SPILL_SUFFIX) != 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		(void)unlink(path);
	}
	closedir(d);
	return true;
}

struct streamspill *streamspill_new(const char *dir, char *err, size_t errlen)
{
	struct streamspill *ss;

	if (!dirs_make(dir, err, errlen) || !spill_clean_dir(dir, err, errlen))
		return NULL;
	ss = calloc(1, sizeof(*ss));
	if (ss)
		ss->dir = strdup(dir);
	if (ss)
		ss->wbuf = malloc(SPILL_WBUF);
	if (!ss || !ss->dir || !ss->wbuf) {
		streamspill_free(ss);
		spill_err(err, errlen, "out of memory");
		return NULL;
	}
	return ss;
}

/* ---- open transactions ---- */

static struct spill_txn *spill_find(const struct streamspill *ss, uint32_t xid)
{
	for (struct spill_txn *t = ss->txns; t; t = t->next)
		if (t->xid == xid)
			return t;
	return NULL;
}

/* Closes and removes t's file and forgets it. */
static void spill_discard(struct streamspill *ss, struct spill_txn *t)
{
	char path[PATH_MAX];

	for (struct spill_txn **pp = &ss->txns; *pp; pp = &(*pp)->next) {
		if (*pp == t) {
			*pp = t->next;
			break;
		}
	}
	if (ss->wtxn == t) {
		ss->wtxn = NULL;
		ss->wlen = 0;
	}
	if (ss->block == t)
		ss->block = NULL;
	if (ss->rp.t == t) {
		ss->rp = (struct spill_replay){ 0 };
		ss->rlen = 0;
	}
	if (t->fd >= 0) {
		close(t->fd);
		spill_path(ss, t->xid, path);
		(void)unlink(path);
	}
	ss->spilled -= t->size;
	ss->open--;
	free(t->subs);
	free(t->aborted);
	free(t);
}

static struct spill_txn *spill_open_txn(struct streamspill *ss, uint32_t xid, bool broken,
		char *why, size_t whylen)
{
	struct spill_txn *t = calloc(1, sizeof(*t));
	char path[PATH_MAX];

	if (!t) {
		spill_err(why, whylen, "out of memory");
		return NULL;
	}
	t->xid = xid;
	t->broken = broken;
	t->fd = -1;
	if (!broken) {
		spill_path(ss, xid, path);
		t->fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (t->fd < 0) {
			spill_err(why, whylen, "cannot create \"%s\": %s", path, strerror(errno));
			free(t);
			return NULL;
		}
	}
	t->next = ss->txns;
	ss->txns = t;
	ss->open++;
	return t;
}

static bool spill_flush(struct streamspill *ss, char *why, size_t whylen)
{
	size_t done = 0;

	while (ss->wtxn && done < ss->wlen) {
		ssize_t n = write(ss->wtxn->fd, ss->wbuf + done, ss->wlen - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			spill_err(why, whylen, "cannot write the spill file of transaction %" PRIu32 " in "
				  "\"%s\": %s", ss->wtxn->xid, ss->dir, n < 0 ? strerror(errno) : "short write");
			return false;
		}
		done += (size_t)n;
	}
	ss->wlen = 0;
	return true;
}

static bool spill_write(struct streamspill *ss, struct spill_txn *t, const void *p, size_t n,
		char *why, size_t whylen)
{
	if (ss->wtxn != t || ss->wlen + n > SPILL_WBUF) {
		if (!spill_flush(ss, why, whylen))
			return false;
		ss->wtxn = t;
	}
	if (n > SPILL_WBUF) {
		/* a large message goes straight to the file */
		size_t done = 0;

		while (done < n) {
			ssize_t w = write(t->fd, (const uint8_t *)p + done, n - done);

			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0) {
				spill_err(why, whylen, "cannot write the spill file of transaction %" PRIu32
					  ": %s", t->xid, w < 0 ? strerror(errno) : "short write");
				return false;
			}
			done += (size_t)w;
		}
	} else {
		memcpy(ss->wbuf + ss->wlen, p, n);
		ss->wlen += n;
	}
	t->size += n;
	ss->spilled += n;
	return true;
}

static bool spill_note_sub(struct spill_txn *t, uint32_t subxid)
{
	if (subxid == t->xid)
		return true;
	for (size_t i = 0; i < t->nsubs; i++)
		if (t->subs[i].xid == subxid)
			return true;
	if (t->nsubs == t->capsubs) {
		size_t cap = t->capsubs ? 2 * t->capsubs : 8;
		struct spill_sub *v = realloc(t->subs, cap * sizeof(*v));

		if (!v)
			return false;
		t->subs = v;
		t->capsubs = cap;
	}
	t->subs[t->nsubs++] = (struct spill_sub){ .xid = subxid, .off = t->size };
	return true;
}

/* A subtransaction of t aborted: its changes (and nested ones') are skipped at replay. */
static bool spill_abort_sub(struct spill_txn *t, uint32_t subxid)
{
	for (size_t i = 0; i < t->nsubs; i++) {
		if (t->subs[i].xid != subxid)
			continue;
		if (t->naborted == t->capaborted) {
			size_t cap = t->capaborted ? 2 * t->capaborted : 4;
			struct spill_range *v = realloc(t->aborted, cap * sizeof(*v));

			if (!v)
				return false;
			t->aborted = v;
			t->capaborted = cap;
		}
		t->aborted[t->naborted++] = (struct spill_range){ t->subs[i].off, t->size };
		t->nsubs = i;
		return true;
	}
	return true;  /* nothing of it was streamed */
}

/* One message of a block: to t's file, without the xid changes carry. */
static enum streamspill_result spill_block_message(struct streamspill *ss, const uint8_t *m,
		size_t n, char *why, size_t whylen)
{
	struct spill_txn *t = ss->block;
	uint8_t hdr[5];

	switch (m[0]) {
	case 'R': case 'Y': case 'I': case 'U': case 'D': case 'T': case 'M':
		if (n < 5) {
			spill_err(why, whylen, "a streamed '%c' message of %zu bytes is too short", m[0], n);
			return STREAMSPILL_BROKEN;
		}
		if (t->broken)
			return STREAMSPILL_DONE;
		if (!spill_note_sub(t, be32_load(m + 1))) {
			spill_err(why, whylen, "out of memory");
			return STREAMSPILL_IOERR;
		}
		put_u32(hdr, (uint32_t)(n - 4));
		hdr[4] = m[0];
		if (!spill_write(ss, t, hdr, 5, why, whylen) || !spill_write(ss, t, m + 5, n - 5, why, whylen))
			return STREAMSPILL_IOERR;
		return STREAMSPILL_DONE;
	case 'O':
		if (t->broken)
			return STREAMSPILL_DONE;
		put_u32(hdr, (uint32_t)n);
		if (!spill_write(ss, t, hdr, 4, why, whylen) || !spill_write(ss, t, m, n, why, whylen))
			return STREAMSPILL_IOERR;
		return STREAMSPILL_DONE;
	default:
		spill_err(why, whylen, "a '%c' message inside the streamed block of transaction %" PRIu32,
			  m[0] >= 0x20 && m[0] < 0x7f ? m[0] : '?', t->xid);
		return STREAMSPILL_BROKEN;
	}
}

void streamspill_reset(struct streamspill *ss)
{
	while (ss->txns)
		spill_discard(ss, ss->txns);
	while (ss->park_head) {
		struct spill_parked *p = ss->park_head;

		ss->park_head = p->next;
		free(p);
	}
	ss->park_tail = NULL;
	ss->in_block = false;
	ss->block = NULL;
	ss->rp = (struct spill_replay){ 0 };
	ss->rlen = 0;
	ss->wlen = 0;
	ss->wtxn = NULL;
}

void streamspill_free(struct streamspill *ss)
{
	if (!ss)
		return;
	streamspill_reset(ss);
	free(ss->dir);
	free(ss->wbuf);
	free(ss->rbuf);
	free(ss->out);
	free(ss);
}

/* ---- replay ---- */

/* Points *p at file bytes [off, off + n) of the replayed transaction. */
static bool spill_read(struct streamspill *ss, uint64_t off, size_t n, const uint8_t **p,
		char *why, size_t whylen)
{
	struct spill_txn *t = ss->rp.t;
	size_t want, got = 0;

	if (ss->rlen && off >= ss->roff && off + n <= ss->roff + ss->rlen) {
		*p = ss->rbuf + (off - ss->roff);
		return true;
	}
	want = n > SPILL_RBUF ? n : SPILL_RBUF;
	if (want > t->size - off)
		want = (size_t)(t->size - off);
	if (want > ss->rcap || (ss->rcap > SPILL_RBUF && want <= SPILL_RBUF)) {
		/* grown for a large message: not kept */
		uint8_t *b = malloc(want);

		if (!b) {
			spill_err(why, whylen, "out of memory reading a message of %zu bytes back", n);
			return false;
		}
		free(ss->rbuf);
		ss->rbuf = b;
		ss->rcap = want;
	}
	while (got < want) {
		ssize_t r = pread(t->fd, ss->rbuf + got, want - got, (off_t)(off + got));

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			spill_err(why, whylen, "cannot read the spill file of transaction %" PRIu32 ": %s",
				  t->xid, r < 0 ? strerror(errno) : "it ends early");
			ss->rlen = 0;
			return false;
		}
		got += (size_t)r;
	}
	ss->roff = off;
	ss->rlen = want;
	*p = ss->rbuf;
	return true;
}

static bool out_reserve(struct streamspill *ss, size_t need)
{
	uint8_t *p;
	size_t cap = ss->out_cap ? ss->out_cap : 64 * 1024;

	if (need <= ss->out_cap)
		return true;
	while (cap < need)
		cap *= 2;
	p = realloc(ss->out, cap);
	if (!p)
		return false;
	ss->out = p;
	ss->out_cap = cap;
	return true;
}

static bool spill_in_aborted(const struct spill_txn *t, uint64_t off)
{
	for (size_t i = 0; i < t->naborted; i++)
		if (off >= t->aborted[i].from && off < t->aborted[i].to)
			return true;
	return false;
}

/* Hands the apply the next chunk of the replay while it has room. */
static enum streamspill_result spill_replay_step(struct streamspill *ss,
		const struct streamspill_env *env, char *why, size_t whylen)
{
	struct spill_replay *rp = &ss->rp;

	while (rp->t && env->room(env->arg)) {
		struct spill_txn *t = rp->t;
		size_t len = 0;
		bool done;

		if (ss->out_cap > 4 * STREAMSPILL_REPLAY_CHUNK) {
			free(ss->out);  /* grown for a large message: not kept */
			ss->out = NULL;
			ss->out_cap = 0;
		}
		if (!out_reserve(ss, STREAMSPILL_REPLAY_CHUNK + 64))
			goto oom;
		if (!rp->begun) {
			put_u32(ss->out, MSG_BEGIN_LEN);
			ss->out[4] = 'B';
			put_u64(ss->out + 5, rp->commit_lsn);
			put_u64(ss->out + 13, (uint64_t)rp->commit_time);
			put_u32(ss->out + 21, t->xid);
			len = 4 + MSG_BEGIN_LEN;
			rp->begun = true;
		}
		while (len < STREAMSPILL_REPLAY_CHUNK && rp->off < t->size) {
			const uint8_t *p;
			uint32_t n;

			if (t->size - rp->off < 5 || !spill_read(ss, rp->off, 4, &p, why, whylen))
				goto short_file;
			n = be32_load(p);
			if (n == 0 || n > t->size - rp->off - 4)
				goto short_file;
			if (!spill_read(ss, rp->off, 4 + (size_t)n, &p, why, whylen))
				return STREAMSPILL_IOERR;
			if (!spill_in_aborted(t, rp->off) || p[4] == 'R' || p[4] == 'Y') {
				if (!out_reserve(ss, len + 4 + (size_t)n + 64))
					goto oom;
				memcpy(ss->out + len, p, 4 + (size_t)n);
				len += 4 + (size_t)n;
			}
			rp->off += 4 + (uint64_t)n;
		}
		done = rp->off >= t->size;
		if (done) {
			put_u32(ss->out + len, MSG_COMMIT_LEN);
			ss->out[len + 4] = 'C';
			ss->out[len + 5] = 0;
			put_u64(ss->out + len + 6, rp->commit_lsn);
			put_u64(ss->out + len + 14, rp->end_lsn);
			put_u64(ss->out + len + 22, (uint64_t)rp->commit_time);
			len += 4 + MSG_COMMIT_LEN;
		}
		if (!env->deliver(env->arg, ss->out, len))
			return STREAMSPILL_REFUSED;
		ss->replayed += len;
		if (done) {
			ss->committed++;
			spill_discard(ss, t);
			return STREAMSPILL_DONE;
		}
	}
	return rp->t ? STREAMSPILL_WAITING : STREAMSPILL_DONE;
short_file:
	spill_err(why, whylen, "the spill file of transaction %" PRIu32 " is damaged at byte %" PRIu64,
		  rp->t->xid, rp->off);
	return STREAMSPILL_IOERR;
oom:
	spill_err(why, whylen, "out of memory replaying transaction %" PRIu32, rp->t->xid);
	return STREAMSPILL_IOERR;
}

/* ---- taking bodies in ---- */

/* A control message outside a block (a commit starts its replay). */
static enum streamspill_result spill_control(struct streamspill *ss, const uint8_t *m, size_t n,
		const struct streamspill_env *env, char *why, size_t whylen)
{
	struct spill_txn *t;
	uint32_t xid = n >= 5 ? be32_load(m + 1) : 0;

	switch (m[0]) {
	case 'S':
		if (n != MSG_STREAM_START_LEN)
			break;
		t = spill_find(ss, xid);
		if (m[5]) {
			/* a first block: the server sends this transaction from its start */
			if (t)
				spill_discard(ss, t);
			t = spill_open_txn(ss, xid, false, why, whylen);
		} else if (!t) {
			t = spill_open_txn(ss, xid, true, why, whylen);
		}
		if (!t)
			return STREAMSPILL_IOERR;
		ss->block = t;
		ss->in_block = true;
		return STREAMSPILL_DONE;
	case 'E':
		spill_err(why, whylen, "a Stream Stop outside a streamed block");
		return STREAMSPILL_BROKEN;
	case 'c':
		if (n != MSG_STREAM_COMMIT_LEN)
			break;
		t = spill_find(ss, xid);
		if (!t || t->broken) {
			spill_err(why, whylen, "gap: the commit of streamed transaction %" PRIu32 " (ends at "
				  "%X/%08X) arrived, but %s", xid, (unsigned)(get_u64(m + 14) >> 32),
				  (unsigned)get_u64(m + 14),
				  t ? "its first changes did not" : "none of its changes did");
			return STREAMSPILL_BROKEN;
		}
		if (get_u64(m + 14) <= env->received(env->arg)) {
			spill_discard(ss, t);  /* held already: sent again after a resume */
			return STREAMSPILL_DONE;
		}
		if (!spill_flush(ss, why, whylen))
			return STREAMSPILL_IOERR;
		ss->rp = (struct spill_replay){
			.t = t,
			.commit_lsn = get_u64(m + 6),
			.end_lsn = get_u64(m + 14),
			.commit_time = (int64_t)get_u64(m + 22),
		};
		ss->rlen = 0;
		return spill_replay_step(ss, env, why, whylen);
	case 'A':
		if (n < MSG_STREAM_ABORT_LEN)
			break;
		t = spill_find(ss, xid);
		if (t && be32_load(m + 5) == xid) {
			spill_discard(ss, t);
			ss->aborted_txns++;
		} else if (t && !t->broken && !spill_abort_sub(t, be32_load(m + 5))) {
			spill_err(why, whylen, "out of memory");
			return STREAMSPILL_IOERR;
		}
		return STREAMSPILL_DONE;
	case STREAMSPILL_MSG_VOID:
		if (n != 1)
			break;
		while (ss->txns)
			spill_discard(ss, ss->txns);
		return STREAMSPILL_DONE;
	}
	spill_err(why, whylen, "a malformed '%c' message of %zu bytes", m[0], n);
	return STREAMSPILL_BROKEN;
}

static bool spill_is_control(uint8_t type)
{
	return type == 'S' || type == 'E' || type == 'c' || type == 'A' || type == STREAMSPILL_MSG_VOID;
}

/*
 * Goes through body from *pos: runs of ordinary messages are delivered as
 * they are, the rest spilled or acted on. Stops after a commit whose replay
 * waits (*pos after it).
 */
static enum streamspill_result spill_process(struct streamspill *ss, const uint8_t *body, size_t len,
		size_t *pos, const struct streamspill_env *env, char *why, size_t whylen)
{
	size_t off = *pos, run = *pos;
	enum streamspill_result r = STREAMSPILL_DONE;

	while (off < len) {
		const uint8_t *m;
		uint32_t n;

		if (len - off < 4 || (n = be32_load(body + off)) == 0 || n > len - off - 4) {
			spill_err(why, whylen, "a message at byte %zu runs past the end of its batch", off);
			return STREAMSPILL_BROKEN;
		}
		m = body + off + 4;
		if (ss->in_block && m[0] == STREAMSPILL_MSG_VOID && n == 1) {
			/* the source connection ended inside a block: void like the rest */
			ss->in_block = false;
			ss->block = NULL;
		}
		if (!ss->in_block && !spill_is_control(m[0])) {
			off += 4 + (size_t)n;
			continue;
		}
		if (off > run && !env->deliver(env->arg, body + run, off - run))
			return STREAMSPILL_REFUSED;
		if (ss->in_block && m[0] == 'E') {
			ss->in_block = false;
			ss->block = NULL;
		} else if (ss->in_block) {
			r = spill_block_message(ss, m, n, why, whylen);
		} else {
			r = spill_control(ss, m, n, env, why, whylen);
		}
		off += 4 + (size_t)n;
		run = off;
		*pos = off;
		ss->consumed += 4 + (uint64_t)n;
		if (r != STREAMSPILL_DONE)
			return r;
	}
	if (off > run && !env->deliver(env->arg, body + run, off - run))
		return STREAMSPILL_REFUSED;
	*pos = len;
	return spill_flush(ss, why, whylen) ? STREAMSPILL_DONE : STREAMSPILL_IOERR;
}

static bool spill_park(struct streamspill *ss, const uint8_t *body, size_t len)
{
	struct spill_parked *p = malloc(sizeof(*p) + len);

	if (!p)
		return false;
	p->next = NULL;
	p->len = len;
	p->off = 0;
	memcpy(p->data, body, len);
	if (ss->park_tail)
		ss->park_tail->next = p;
	else
		ss->park_head = p;
	ss->park_tail = p;
	return true;
}

enum streamspill_result streamspill_run(struct streamspill *ss, const struct streamspill_env *env,
		char *why, size_t whylen)
{
	enum streamspill_result r;

	if (ss->rp.t && (r = spill_replay_step(ss, env, why, whylen)) != STREAMSPILL_DONE)
		return r;
	while (ss->park_head) {
		struct spill_parked *p = ss->park_head;

		r = spill_process(ss, p->data, p->len, &p->off, env, why, whylen);
		if (r != STREAMSPILL_DONE && r != STREAMSPILL_WAITING)
			return r;
		if (p->off == p->len) {
			ss->park_head = p->next;
			if (!ss->park_head)
				ss->park_tail = NULL;
			free(p);
		}
		if (r == STREAMSPILL_WAITING)
			return r;
	}
	return STREAMSPILL_DONE;
}

enum streamspill_result streamspill_take(struct streamspill *ss, const uint8_t *body, size_t len,
		const struct streamspill_env *env, char *why, size_t whylen)
{
	enum streamspill_result r;
	size_t pos = 0;

	if (streamspill_busy(ss)) {
		if (!spill_park(ss, body, len)) {
			spill_err(why, whylen, "out of memory parking a batch of %zu bytes", len);
			return STREAMSPILL_IOERR;
		}
		return streamspill_run(ss, env, why, whylen);
	}
	r = spill_process(ss, body, len, &pos, env, why, whylen);
	if (r == STREAMSPILL_WAITING && pos < len && !spill_park(ss, body + pos, len - pos)) {
		spill_err(why, whylen, "out of memory parking a batch of %zu bytes", len - pos);
		return STREAMSPILL_IOERR;
	}
	return r;
}

bool streamspill_busy(const struct streamspill *ss)
{
	return ss->rp.t || ss->park_head;
}

uint64_t streamspill_consumed_bytes(const struct streamspill *ss)
{
	return ss->consumed;
}

uint64_t streamspill_replayed_bytes(const struct streamspill *ss)
{
	return ss->replayed;
}

size_t streamspill_open_count(const struct streamspill *ss)
{
	return ss->open;
}

uint64_t streamspill_spilled_bytes(const struct streamspill *ss)
{
	return ss->spilled;
}

uint64_t streamspill_committed_count(const struct streamspill *ss)
{
	return ss->committed;
}

uint64_t streamspill_aborted_count(const struct streamspill *ss)
{
	return ss->aborted_txns;
}
