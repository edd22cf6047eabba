/*
 * fuzz_spool.c — libFuzzer target for the spool's record parser and its
 * recovery (gateway/stream/spool.c).
 *
 * Each input is used three times. First as a run of records, parsed one after the
 * other like a segment reader does (from the start, and past a segment
 * header): a record that parses lies inside the input, its CRC matches and
 * its body follows its meta. Then as the files of a spool directory: the
 * input is split before every segment magic ("STRAITSP"), each piece becomes
 * one segment file (bytes before the first magic a headerless first
 * segment), and spool_open() recovers it — once as they are, once with
 * every record's CRC made right (the fuzzer cannot forge CRCs, and the paths
 * of valid records matter most), and once more so with a floor file whose
 * floor is one of the records' commit LSNs (or one past it), as a release
 * interrupted by a crash leaves it. Beyond "no crash", it checks:
 * kept, dropped and released bytes add up to what was on disk; everything
 * kept reads back without error (from the oldest record the floor does not
 * cover) and ends with a record that ends a transaction; seeking anywhere
 * works, or is a gap exactly when below the floor, and reports a prev at
 * or above the floor; appending, syncing and cutting an incomplete tail go
 * on normally; a second open finds nothing to repair; a release at the end
 * leaves an empty spool whose floor is its end, and so does reopening it.
 *
 * Last as operations on a new spool, one byte each and its arguments after
 * it: appends (a transaction's end or a part of one), syncs, the default
 * cursor and two more (made, freed, reading, seeking, reaching back),
 * releases at the lowest acknowledgement of the cursors or below it,
 * cutting an incomplete tail, raising the floor, reopening. A model of what
 * was appended checks after each: every record a cursor reads is the next
 * one appended, whole, unless a seek or a release moved the cursor where
 * the model says; its prev and unread bytes; a release removes only
 * records of transactions that end at or before the floor, and the floor
 * stays at or below the acknowledgement; the body each cursor read last is
 * still there whatever the others and the spool did.
 *
 * The library is built with STRAIT_FUZZING, which makes the spool's fsync a
 * no-op; the files go to /dev/shm when there is one.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/crc32c.h"
#include "gateway/stream/spool.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

#define MAGIC "STRAITSP"
#define MAGIC_LEN 8
#define SEG_HDR 16
#define MAX_SEGMENTS 16
#define SEGMENT_BYTES 512

static uint32_t
le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void
parse_walk(const uint8_t *buf, size_t len)
{
	size_t off = 0;

	while (off < len) {
		struct spool_meta m;
		const uint8_t *body;
		size_t blen;
		long n = spool_parse_record(buf + off, len - off, &m, &body, &blen);

		if (n <= 0)
			break;
		CHECK((size_t)n <= len - off && (size_t)n == 48 + blen);
		CHECK(body == buf + off + 48);
		CHECK(le32(buf + off) == 40 + blen);
		CHECK(crc32c(0, buf + off + 8, 40 + blen) == le32(buf + off + 4));
		off += (size_t)n;
	}
}

static char base[64];

static void clear_dir(const char *dir);

static void
remove_base(void)
{
	clear_dir(base);
}

static void
make_base(void)
{
	if (base[0] != '\0')
		return;
	snprintf(base, sizeof(base), "%s/strait-fuzz-spool-XXXXXX",
		 access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
	CHECK(mkdtemp(base) != NULL);
	atexit(remove_base);
}

static void
clear_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char path[256];

	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		unlink(path);
	}
	closedir(d);
	rmdir(dir);
}

static void
write_file(const char *dir, unsigned seq, const uint8_t *p, size_t n)
{
	char path[256];
	int fd;

	snprintf(path, sizeof(path), "%s/%016x.seg", dir, seq);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	CHECK(fd >= 0);
	CHECK(n == 0 || write(fd, p, n) == (ssize_t)n);
	close(fd);
}

/* Where the segments start: before every magic (and at 0). Returns how many. */
static size_t
split_segments(const uint8_t *data, size_t size, size_t start[MAX_SEGMENTS + 1])
{
	size_t n = 1;

	start[0] = 0;
	for (size_t i = 1; i + MAGIC_LEN <= size && n < MAX_SEGMENTS; i++)
		if (memcmp(data + i, MAGIC, MAGIC_LEN) == 0)
			start[n++] = i;
	start[n] = size;
	return n;
}

/*
 * Gives every record whose length fits a correct CRC, so that the fuzzer,
 * which cannot forge CRCs, reaches the paths of valid records too.
 */
static void
fix_crcs(uint8_t *data, const size_t *start, size_t nsegs)
{
	for (size_t i = 0; i < nsegs; i++) {
		size_t off = start[i] + SEG_HDR, end = start[i + 1];

		while (off + 8 <= end) {
			uint32_t len = le32(data + off);
			uint32_t crc;

			if (len < 40 || len > end - off - 8)
				break;
			crc = crc32c(0, data + off + 8, len);
			for (int b = 0; b < 4; b++)
				data[off + 4 + b] = (uint8_t)(crc >> (8 * b));
			off += 8 + (size_t)len;
		}
	}
}

static void
write_segments(const char *dir, const uint8_t *data, const size_t *start, size_t nsegs)
{
	CHECK(mkdir(dir, 0700) == 0);
	for (size_t i = 0; i < nsegs; i++)
		write_file(dir, (unsigned)i + 1, data + start[i], start[i + 1] - start[i]);
}

static void
put_le(uint8_t *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* The floor file as spool.h documents it. */
static void
write_floor(const char *dir, uint64_t floor)
{
	uint8_t buf[28];
	char path[256];
	int fd;

	memcpy(buf, "STRAITFL", 8);
	put_le(buf + 8, 1, 4);
	put_le(buf + 12, 0, 4);
	put_le(buf + 16, floor, 8);
	put_le(buf + 24, crc32c(0, buf, 24), 4);
	snprintf(path, sizeof(path), "%s/floor", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	CHECK(fd >= 0);
	CHECK(write(fd, buf, sizeof(buf)) == (ssize_t)sizeof(buf));
	close(fd);
}

/*
 * A floor for the input: the commit LSN of one of the records the segments
 * hold (picked by the last byte), one past it when that byte's top bit is
 * set; 1 when there is none. Below UINT64_MAX, so that what the checks
 * append (at the end + 1, at most UINT64_MAX) is above it.
 */
static uint64_t
pick_floor(const uint8_t *data, size_t size, const size_t *start, size_t nsegs)
{
	uint64_t ends[64], floor;
	size_t n = 0;

	for (size_t i = 0; i < nsegs && n < 64; i++) {
		size_t off = start[i] + SEG_HDR, end = start[i + 1];

		while (off + 8 <= end && n < 64) {
			uint32_t len = le32(data + off);
			uint64_t ce = 0;

			if (len < 40 || len > end - off - 8)
				break;
			for (int b = 7; b >= 0; b--)
				ce = ce << 8 | data[off + 16 + b];
			if (ce != 0)
				ends[n++] = ce;
			off += 8 + (size_t)len;
		}
	}
	if (n == 0 || size == 0)
		return 1;
	floor = ends[data[size - 1] % n];
	if (data[size - 1] >> 7 && floor < UINT64_MAX)
		floor++;
	return floor == UINT64_MAX ? floor - 1 : floor;
}

/* Reads everything from the cursor: returns the records read. */
static uint64_t
read_all(struct spool *sp, uint64_t *last_end)
{
	struct spool_meta m;
	const uint8_t *body;
	size_t blen;
	char err[512];
	uint64_t n = 0;
	int r;

	*last_end = 0;
	while ((r = spool_read(sp, &m, &body, &blen, err, sizeof(err))) == 1) {
		n++;
		*last_end = m.commit_end_lsn;
	}
	CHECK(r == 0);
	return n;
}

/* Seeks for lsn: a gap exactly below the floor, else the cursor continues from at least it. */
static void
seek_check(struct spool *sp, uint64_t lsn, uint64_t floor)
{
	char err[512];
	uint64_t prev = 0;
	enum spool_seek_result r = spool_seek(sp, lsn, &prev, err, sizeof(err));

	if (lsn != 0 && lsn < floor) {
		CHECK(r == SPOOL_SEEK_GAP);
		return;
	}
	CHECK(r == SPOOL_SEEK_OK);
	CHECK(prev >= floor && prev == spool_cursor_prev_lsn(sp));
	CHECK(lsn == 0 || prev <= lsn);
}

static void
spool_checks(const char *dir, const uint8_t *data, size_t size, const size_t *start,
		size_t nsegs, uint64_t floor)
{
	struct spool_recovery rec;
	struct spool_meta m = { .first_lsn = 1, .spooled_at_us = 1 };
	char err[512];
	struct spool *sp;
	uint64_t on_disk, kept, records, last_end, end, prev;
	struct spool_pos first;
	uint8_t body[300];

	write_segments(dir, data, start, nsegs);
	if (floor != 0)
		write_floor(dir, floor);
	on_disk = size;
	sp = spool_open(dir, SEGMENT_BYTES, &rec, err, sizeof(err));
	CHECK(sp != NULL);
	CHECK(rec.bytes + rec.dropped_bytes + rec.released_bytes == on_disk);
	CHECK(floor != 0 || rec.released_bytes == 0);
	CHECK(rec.dropped_bytes == 0 || rec.detail[0] != '\0');
	CHECK(!rec.torn || rec.detail[0] != '\0');
	CHECK(!rec.fsync_failed && !spool_fsync_failed(sp));
	CHECK(spool_bytes(sp) == rec.bytes);
	CHECK(spool_records(sp) == rec.records);
	CHECK(spool_unread_bytes(sp) + (rec.bytes ? SEG_HDR : 0) <= rec.bytes);
	CHECK(spool_floor_lsn(sp) == floor);
	CHECK(spool_cursor_prev_lsn(sp) == floor);
	kept = rec.records;

	/* everything kept above the floor reads back and ends a transaction */
	records = read_all(sp, &last_end);
	CHECK(floor != 0 ? records <= kept : records == kept);
	CHECK(records == 0 || last_end != 0);
	CHECK(records == 0 || spool_cursor_prev_lsn(sp) == last_end);
	if (records > 0)
		CHECK(spool_end_lsn(sp) == (last_end > floor ? last_end : floor));
	else
		CHECK(spool_end_lsn(sp) >= floor && (floor != 0 || spool_end_lsn(sp) == 0));
	CHECK(spool_durable_lsn(sp) == spool_end_lsn(sp));
	CHECK(spool_unread_bytes(sp) == 0);

	/* seeking anywhere, then reading on */
	if (size >= 8) {
		uint64_t lsn = 0;

		memcpy(&lsn, data + size - 8, 8);
		seek_check(sp, lsn, floor);
		(void)read_all(sp, &last_end);
		seek_check(sp, floor, floor);
		if (floor > 1)
			seek_check(sp, floor - 1, floor);
	}
	seek_check(sp, 0, floor);
	CHECK(spool_cursor_prev_lsn(sp) == floor);
	CHECK(read_all(sp, &last_end) == records);

	/* appending goes on, across segments, and an unfinished tail is cut */
	end = spool_end_lsn(sp);
	memset(body, 0xa5, sizeof(body));
	CHECK(spool_append(sp, &m, body, 10, err, sizeof(err)));
	first = spool_last_pos(sp);
	m.commit_end_lsn = end == UINT64_MAX ? end : end + 1;
	CHECK(spool_append(sp, &m, body, sizeof(body), err, sizeof(err)));
	m.commit_end_lsn = 0;
	CHECK(spool_append(sp, &m, body, sizeof(body), err, sizeof(err)));
	CHECK(spool_sync(sp, err, sizeof(err)));
	/* a resume past the new commit that reaches back to the first new record */
	CHECK(spool_seek_from(sp, m.commit_end_lsn == 0 && end != UINT64_MAX ? end + 1 : end, &first,
			      &prev, err, sizeof(err)) == SPOOL_SEEK_OK);
	CHECK(prev == end && prev == spool_cursor_prev_lsn(sp));
	CHECK(read_all(sp, &last_end) == 3);
	CHECK(spool_durable_lsn(sp) == spool_end_lsn(sp));
	CHECK(spool_truncate_incomplete(sp, err, sizeof(err)));
	CHECK(spool_records(sp) == kept + 2);
	spool_close(sp);

	/* recovery left a clean spool */
	sp = spool_open(dir, SEGMENT_BYTES, &rec, err, sizeof(err));
	CHECK(sp != NULL);
	CHECK(!rec.torn && rec.dropped_bytes == 0 && rec.released_bytes == 0 &&
	      rec.detail[0] == '\0');
	CHECK(rec.records == kept + 2);
	CHECK(read_all(sp, &last_end) == records + 2);

	/* the sink caught up: nothing is left, the floor is the end */
	CHECK(spool_release(sp, UINT64_MAX, err, sizeof(err)) >= 0);
	CHECK(spool_records(sp) == 0 && spool_bytes(sp) == 0 && spool_unread_bytes(sp) == 0);
	CHECK(spool_floor_lsn(sp) == spool_end_lsn(sp) && spool_floor_lsn(sp) >= floor);
	end = spool_end_lsn(sp);
	spool_close(sp);
	sp = spool_open(dir, SEGMENT_BYTES, &rec, err, sizeof(err));
	CHECK(sp != NULL);
	CHECK(rec.records == 0 && spool_floor_lsn(sp) == end && spool_end_lsn(sp) == end);
	spool_close(sp);
}

/* --- the input as operations ------------------------------------------ */

#define OPS_RECORDS 256
#define OPS_CURSORS 3                /* [0]: the default cursor, through spool_read() & co. */

struct op_rec {
	uint64_t commit_end;
	size_t len;
	struct spool_pos pos;
};

/* What was appended (cut records dropped), and where each cursor must be. */
struct ops {
	const uint8_t *p, *end;      /* the input left */
	const char *dir;
	struct spool *sp;
	struct op_rec rec[OPS_RECORDS];
	size_t n;
	struct spool_cursor *cur[OPS_CURSORS];
	bool live[OPS_CURSORS];
	size_t next[OPS_CURSORS];    /* index of the record it reads next */
	uint64_t prev[OPS_CURSORS];  /* where that record continues from */
	const uint8_t *held[OPS_CURSORS];  /* the body it read last: still valid */
	size_t held_idx[OPS_CURSORS], held_len[OPS_CURSORS];
};

static uint8_t
take(struct ops *o)
{
	return o->p < o->end ? *o->p++ : 0;
}

static uint8_t
body_byte(size_t idx, size_t j)
{
	return (uint8_t)(idx * 131 + j * 7 + 1);
}

static bool
body_ok(const uint8_t *body, size_t idx, size_t len)
{
	for (size_t j = 0; j < len; j++)
		if (body[j] != body_byte(idx, j))
			return false;
	return true;
}

static size_t
oldest_held(const struct ops *o)
{
	uint64_t held = spool_records(o->sp);

	CHECK(held <= o->n);
	return o->n - (size_t)held;
}

/* Where a cursor goes to read after lsn (spool.h: spool_seek()), and its prev. */
static size_t
model_locate(const struct ops *o, uint64_t lsn, uint64_t *prev)
{
	size_t at = oldest_held(o);
	uint64_t floor = spool_floor_lsn(o->sp);

	*prev = floor;
	for (size_t i = at; i < o->n; i++) {
		if (o->rec[i].commit_end != 0 && o->rec[i].commit_end <= lsn) {
			at = i + 1;
			*prev = o->rec[i].commit_end > floor ? o->rec[i].commit_end : floor;
		}
	}
	return at;
}

/* The end of the last transaction before record idx, at least the floor. */
static uint64_t
model_prev_of(const struct ops *o, size_t idx)
{
	uint64_t prev = spool_floor_lsn(o->sp);

	for (size_t i = 0; i < idx; i++)
		if (o->rec[i].commit_end > prev)
			prev = o->rec[i].commit_end;
	return prev;
}

static uint64_t
c_prev(const struct ops *o, int k)
{
	return k == 0 ? spool_cursor_prev_lsn(o->sp) : spool_cursor_prev(o->cur[k]);
}

static uint64_t
c_unread(const struct ops *o, int k)
{
	return k == 0 ? spool_unread_bytes(o->sp) : spool_cursor_unread_bytes(o->cur[k]);
}

/* Every live cursor where the model has it; every body read last unchanged. */
static void
ops_check(const struct ops *o)
{
	for (int k = 0; k < OPS_CURSORS; k++) {
		uint64_t unread = 0;

		if (!o->live[k])
			continue;
		for (size_t i = o->next[k]; i < o->n; i++)
			unread += 48 + o->rec[i].len;
		CHECK(c_unread(o, k) == unread);
		CHECK(c_prev(o, k) == o->prev[k]);
		CHECK(o->held[k] == NULL || body_ok(o->held[k], o->held_idx[k], o->held_len[k]));
	}
}

static void
op_append(struct ops *o)
{
	uint8_t len = take(o), kind = take(o), body[255];
	struct spool_meta m = { .spooled_at_us = 1 };
	uint64_t end = spool_end_lsn(o->sp);
	char err[512];

	if (o->n == OPS_RECORDS || end > UINT64_MAX - 256)
		return;
	m.first_lsn = o->n + 1;
	m.commit_end_lsn = kind & 1 ? 0 : end + 1 + (kind >> 1);
	for (size_t j = 0; j < len; j++)
		body[j] = body_byte(o->n, j);
	CHECK(spool_append(o->sp, &m, body, len, err, sizeof(err)));
	o->rec[o->n] = (struct op_rec){ .commit_end = m.commit_end_lsn, .len = len,
		.pos = spool_last_pos(o->sp) };
	o->n++;
	CHECK(spool_end_lsn(o->sp) == (m.commit_end_lsn ? m.commit_end_lsn : end));
}

static void
op_new(struct ops *o, int k)
{
	char err[512];
	uint64_t prev;

	if (k == 0 || o->live[k])
		return;
	o->cur[k] = spool_cursor_new(o->sp, err, sizeof(err));
	CHECK(o->cur[k] != NULL);
	o->live[k] = true;
	o->next[k] = model_locate(o, spool_floor_lsn(o->sp), &prev);
	o->prev[k] = spool_floor_lsn(o->sp);
	o->held[k] = NULL;
}

static void
op_free(struct ops *o, int k)
{
	if (k == 0 || !o->live[k])
		return;
	spool_cursor_free(o->cur[k]);
	o->cur[k] = NULL;
	o->live[k] = false;
}

/* Reads up to a few records: each the next one appended, whole and in order. */
static void
op_read(struct ops *o, int k)
{
	int count = take(o) % 4 + 1;

	for (int i = 0; i < count && o->live[k]; i++) {
		struct spool_meta m;
		const uint8_t *body;
		size_t blen, idx = o->next[k];
		char err[512];
		int r;

		o->held[k] = NULL;     /* the cursor's next call: its body may go */
		r = k == 0 ? spool_read(o->sp, &m, &body, &blen, err, sizeof(err)) :
			spool_cursor_read(o->cur[k], &m, &body, &blen, err, sizeof(err));

		if (idx == o->n) {
			CHECK(r == 0);
			return;
		}
		CHECK(r == 1);
		CHECK(m.first_lsn == idx + 1 && m.commit_end_lsn == o->rec[idx].commit_end);
		CHECK(blen == o->rec[idx].len && body_ok(body, idx, blen));
		o->next[k] = idx + 1;
		if (m.commit_end_lsn != 0)
			o->prev[k] = m.commit_end_lsn;
		o->held[k] = body;
		o->held_idx[k] = idx;
		o->held_len[k] = blen;
	}
}

/* A resume position for a seek: 0, a record's commit LSN or near it, or below the floor. */
static uint64_t
pick_resume(struct ops *o)
{
	uint8_t a = take(o), b = take(o);
	uint64_t floor = spool_floor_lsn(o->sp);

	switch (a % 4) {
	case 0:
		return 0;
	case 1:
		return floor > 1 ? floor - 1 - b % floor : floor;
	default:
		if (o->n == 0)
			return floor;
		return o->rec[b % o->n].commit_end + (a & 4 ? 1 : 0);
	}
}

static void
op_seek(struct ops *o, int k, bool reach)
{
	uint64_t lsn = pick_resume(o), floor = spool_floor_lsn(o->sp), prev = 0, want_prev;
	size_t from = o->n ? take(o) % o->n : 0, want;
	char err[512];
	enum spool_seek_result r;
	const struct spool_pos *pos = reach && o->n ? &o->rec[from].pos : NULL;

	if (!o->live[k])
		return;
	/*
	 * A reach-back asks for what a sink may need: never a record the floor
	 * covers (the spool would go there, but a release would then leave the
	 * cursor behind the floor, where the model below does not follow).
	 */
	if (pos != NULL && from >= oldest_held(o) && from < model_locate(o, floor, &want_prev))
		pos = NULL;
	o->held[k] = NULL;         /* the cursor's next call: its body may go */
	if (k == 0)
		r = spool_seek_from(o->sp, lsn, pos, &prev, err, sizeof(err));
	else
		r = spool_cursor_seek_from(o->cur[k], lsn, pos, &prev, err, sizeof(err));
	if (lsn != 0 && lsn < floor) {
		CHECK(r == SPOOL_SEEK_GAP);    /* and the cursor did not move */
		return;
	}
	want = model_locate(o, lsn > floor ? lsn : floor, &want_prev);
	o->next[k] = want;
	o->prev[k] = want_prev;
	if (pos != NULL && from < oldest_held(o)) {
		CHECK(r == SPOOL_SEEK_GAP);    /* after the seek: from is gone */
		return;
	}
	CHECK(r == SPOOL_SEEK_OK);
	if (pos != NULL && from < want) {
		o->next[k] = from;
		o->prev[k] = model_prev_of(o, from);
	}
	CHECK(prev == o->prev[k]);
}

/*
 * Releases at the lowest acknowledgement (each sink acknowledged what its
 * cursor continues from), or lower, keeping from a record or not: what goes
 * ends at or before the floor, the floor at or before the acknowledgement,
 * and a cursor whose place went moves to the oldest record left.
 */
static void
op_release(struct ops *o)
{
	uint8_t lower = take(o), keep_at = take(o);
	uint64_t ack = UINT64_MAX, floor0 = spool_floor_lsn(o->sp), floor, txn_end = 0;
	size_t old = oldest_held(o), now, moved_to;
	struct spool_pos keep;
	char err[512];

	for (int k = 0; k < OPS_CURSORS; k++)
		if (o->live[k] && o->prev[k] < ack)
			ack = o->prev[k];
	ack = lower < 32 && ack > lower ? ack - lower : ack;
	if (keep_at & 1 && o->n > old)
		keep = o->rec[old + keep_at / 2 % (o->n - old)].pos;
	CHECK(spool_release_keep(o->sp, ack, keep_at & 1 && o->n > old ? &keep : NULL,
		err, sizeof(err)) >= 0);
	floor = spool_floor_lsn(o->sp);
	now = oldest_held(o);
	CHECK(floor >= floor0 && (floor == floor0 || floor <= ack));
	for (size_t i = now; i < o->n && txn_end == 0; i++)
		txn_end = o->rec[i].commit_end;
	for (size_t i = now; i-- > old;) {
		if (o->rec[i].commit_end != 0)
			txn_end = o->rec[i].commit_end;
		CHECK(txn_end != 0 && txn_end <= floor);
	}
	moved_to = model_locate(o, floor, &(uint64_t){ 0 });
	for (int k = 0; k < OPS_CURSORS; k++) {
		if (o->live[k] && o->next[k] < moved_to) {
			o->next[k] = moved_to;
			o->prev[k] = floor;
		}
	}
}

/* The records left when the ones after the last that ends a transaction are cut. */
static size_t
model_complete(const struct ops *o)
{
	size_t old = oldest_held(o), n = o->n;

	while (n > old && o->rec[n - 1].commit_end == 0)
		n--;
	return n;
}

/* Cuts the records after the last one that ends a transaction: cursors past it come back. */
static void
op_truncate(struct ops *o)
{
	size_t old = oldest_held(o), n = model_complete(o);
	char err[512];

	CHECK(spool_truncate_incomplete(o->sp, err, sizeof(err)));
	CHECK(spool_records(o->sp) == n - old);
	o->n = n;
	for (int k = 0; k < OPS_CURSORS; k++) {
		if (o->next[k] > o->n)
			o->next[k] = o->n;
		if (spool_records(o->sp) == 0)
			o->prev[k] = spool_floor_lsn(o->sp);
	}
}

static void
op_set_floor(struct ops *o)
{
	uint64_t lsn = spool_end_lsn(o->sp) + take(o);
	char err[512];
	bool raise = lsn > spool_floor_lsn(o->sp), empty = spool_records(o->sp) == 0;

	if (lsn > UINT64_MAX - 1024)
		return;
	CHECK(spool_set_floor(o->sp, lsn, err, sizeof(err)) == (empty || !raise));
	if (!empty || !raise)
		return;
	CHECK(spool_floor_lsn(o->sp) == lsn && spool_end_lsn(o->sp) == lsn);
	for (int k = 0; k < OPS_CURSORS; k++)
		o->prev[k] = lsn;
}

/* Closes and opens again: recovery cuts an incomplete tail, the cursors go. */
static void
op_reopen(struct ops *o)
{
	size_t old = oldest_held(o), n = model_complete(o);
	char err[512];
	uint64_t prev;

	spool_close(o->sp);
	o->sp = spool_open(o->dir, SEGMENT_BYTES, NULL, err, sizeof(err));
	CHECK(o->sp != NULL);
	for (int k = 0; k < OPS_CURSORS; k++) {
		o->live[k] = k == 0;
		o->held[k] = NULL;
	}
	/* (it may also finish a release that kept a segment the floor covers) */
	CHECK(spool_records(o->sp) <= n - old);
	o->n = n;
	o->next[0] = model_locate(o, spool_floor_lsn(o->sp), &prev);
	o->prev[0] = spool_floor_lsn(o->sp);
}

static void
ops_step(struct ops *o)
{
	uint8_t op = take(o);
	int k = (op >> 4) % OPS_CURSORS;
	char err[512];

	switch (op % 12) {
	case 0: case 1: case 2:
		op_append(o);
		break;
	case 3:
		CHECK(spool_sync(o->sp, err, sizeof(err)));
		break;
	case 4:
		op_new(o, k);
		break;
	case 5:
		op_free(o, k);
		break;
	case 6: case 7:
		op_read(o, k);
		break;
	case 8:
		op_seek(o, k, op & 0x40);
		break;
	case 9:
		op_release(o);
		break;
	case 10:
		if (op & 0x80)
			op_reopen(o);
		else
			op_truncate(o);
		break;
	default:
		op_set_floor(o);
		break;
	}
}

/*
 * The input as operations on a new spool: appends, syncs, several cursors
 * (made, freed, reading, seeking), releases, cuts, a raised floor,
 * reopening — checked against a model after each.
 */
static void
ops_run(const char *dir, const uint8_t *data, size_t size)
{
	static struct ops o;
	char err[512];

	memset(&o, 0, sizeof(o));
	o.p = data;
	o.end = data + size;
	o.dir = dir;
	o.sp = spool_open(dir, SEGMENT_BYTES, NULL, err, sizeof(err));
	CHECK(o.sp != NULL);
	o.live[0] = true;
	while (o.p < o.end) {
		ops_step(&o);
		ops_check(&o);
	}
	for (int k = 1; k < OPS_CURSORS; k++)
		if (k % 2 == 0)
			op_free(&o, k);      /* the others go with the spool */
	spool_close(o.sp);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t start[MAX_SEGMENTS + 1], nsegs;
	uint8_t *fixed;
	char dir[96];

	parse_walk(data, size);
	if (size > SEG_HDR)
		parse_walk(data + SEG_HDR, size - SEG_HDR);

	make_base();
	snprintf(dir, sizeof(dir), "%s/s", base);
	nsegs = split_segments(data, size, start);
	clear_dir(dir);
	spool_checks(dir, data, size, start, nsegs, 0);
	clear_dir(dir);

	/* again with every CRC right: what the lengths and LSNs do */
	fixed = malloc(size ? size : 1);
	CHECK(fixed != NULL);
	if (size > 0)
		memcpy(fixed, data, size);
	fix_crcs(fixed, start, nsegs);
	spool_checks(dir, fixed, size, start, nsegs, 0);
	clear_dir(dir);

	/* and with a floor, as a release interrupted by a crash leaves it */
	spool_checks(dir, fixed, size, start, nsegs, pick_floor(fixed, size, start, nsegs));
	clear_dir(dir);
	free(fixed);

	ops_run(dir, data, size);
	clear_dir(dir);
	return 0;
}
