/* Unit tests for streamspill: streamed transactions held on disk until their commit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "gateway/stream/streamspill.h"

struct body {
	uint8_t b[1 << 16];
	size_t n;
};

/* What the apply got, and how the environment answers. */
struct sink {
	uint8_t got[1 << 16];
	size_t n;
	unsigned delivers;
	bool room;
	uint64_t received;
};

static bool env_deliver(void *arg, const uint8_t *body, size_t len)
{
	struct sink *s = arg;

	assert_true(s->n + len <= sizeof(s->got));
	memcpy(s->got + s->n, body, len);
	s->n += len;
	s->delivers++;
	return true;
}

static bool env_room(void *arg)
{
	return ((struct sink *)arg)->room;
}

static uint64_t env_received(void *arg)
{
	return ((struct sink *)arg)->received;
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)(v >> 32));
	put32(p + 4, (uint32_t)v);
}

/* Appends one message: a type byte and len bytes of payload. */
static void msg(struct body *b, uint8_t type, const uint8_t *payload, size_t len)
{
	put32(b->b + b->n, (uint32_t)(len + 1));
	b->b[b->n + 4] = type;
	memcpy(b->b + b->n + 5, payload, len);
	b->n += 5 + len;
}

static void stream_start(struct body *b, uint32_t xid, bool first)
{
	uint8_t p[5];

	put32(p, xid);
	p[4] = first;
	msg(b, 'S', p, 5);
}

/* A streamed change: the (sub)transaction's xid, then what an unstreamed one carries. */
static void change(struct body *b, uint8_t type, uint32_t xid, const char *text)
{
	uint8_t p[256];

	put32(p, xid);
	memcpy(p + 4, text, strlen(text));
	msg(b, type, p, 4 + strlen(text));
}

static void stream_commit(struct body *b, uint32_t xid, uint64_t commit, uint64_t end)
{
	uint8_t p[29];

	put32(p, xid);
	p[4] = 0;
	put64(p + 5, commit);
	put64(p + 13, end);
	put64(p + 21, 77);
	msg(b, 'c', p, 29);
}

static void stream_abort(struct body *b, uint32_t xid, uint32_t subxid)
{
	uint8_t p[8];

	put32(p, xid);
	put32(p + 4, subxid);
	msg(b, 'A', p, 8);
}

static void plain(struct body *b, uint8_t type, const char *text)
{
	msg(b, type, (const uint8_t *)text, strlen(text));
}

struct fixture {
	char dir[64];
	struct streamspill *ss;
	struct sink sink;
	struct streamspill_env env;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char err[256];

	snprintf(f->dir, sizeof(f->dir), "/tmp/streamspill-test-%d/s", (int)getpid());
	f->ss = streamspill_new(f->dir, err, sizeof(err));
	assert_non_null(f->ss);
	f->sink.room = true;
	f->env = (struct streamspill_env){ env_deliver, env_room, env_received, &f->sink };
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char parent[64];

	streamspill_free(f->ss);
	rmdir(f->dir);
	snprintf(parent, sizeof(parent), "/tmp/streamspill-test-%d", (int)getpid());
	rmdir(parent);
	free(f);
	return 0;
}

static enum streamspill_result take(struct fixture *f, const struct body *b)
{
	char why[256];
	enum streamspill_result r = streamspill_take(f->ss, b->b, b->n, &f->env, why, sizeof(why));

	if (r == STREAMSPILL_BROKEN || r == STREAMSPILL_IOERR)
		print_message("why: %s\n", why);
	return r;
}

/* The messages the apply got, one type byte and payload each, as "B|Ia|C" text. */
static void got_text(const struct sink *s, char *out, size_t outlen)
{
	size_t o = 0;

	out[0] = '\0';
	for (size_t off = 0; off + 4 <= s->n;) {
		uint32_t n = (uint32_t)s->got[off] << 24 | (uint32_t)s->got[off + 1] << 16 |
			     (uint32_t)s->got[off + 2] << 8 | s->got[off + 3];
		const uint8_t *m = s->got + off + 4;

		if (o)
			o += (size_t)snprintf(out + o, outlen - o, "|");
		if (m[0] == 'B' || m[0] == 'C')
			o += (size_t)snprintf(out + o, outlen - o, "%c", m[0]);
		else
			o += (size_t)snprintf(out + o, outlen - o, "%c%.*s", m[0], (int)n - 1, m + 1);
		off += 4 + n;
	}
}

static void test_plain_bodies_pass_as_they_are(void **state)
{
	struct fixture *f = *state;
	struct body b = { .n = 0 };
	char text[256];

	plain(&b, 'B', "");
	plain(&b, 'I', "row");
	plain(&b, 'C', "");
	assert_int_equal(take(f, &b), STREAMSPILL_DONE);
	assert_int_equal(f->sink.delivers, 1);
	assert_memory_equal(f->sink.got, b.b, b.n);
	assert_int_equal(streamspill_consumed_bytes(f->ss), 0);
	got_text(&f->sink, text, sizeof(text));
	assert_string_equal(text, "B|Irow|C");
}

static void test_streamed_transaction_is_applied_at_its_commit(void **state)
{
	struct fixture *f = *state;
	struct body b1 = { .n = 0 }, b2 = { .n = 0 };
	char text[256];
	uint64_t replayed;

	stream_start(&b1, 700, true);
	change(&b1, 'R', 700, "rel");
	change(&b1, 'I', 700, "a");
	plain(&b1, 'E', "");
	/* an ordinary transaction between blocks goes at once */
	plain(&b1, 'B', "");
	plain(&b1, 'I', "other");
	plain(&b1, 'C', "");
	stream_start(&b2, 700, false);
	change(&b2, 'U', 700, "b");
	plain(&b2, 'E', "");
	stream_commit(&b2, 700, 0x100, 0x108);
	assert_int_equal(take(f, &b1), STREAMSPILL_DONE);
	assert_int_equal(streamspill_open_count(f->ss), 1);
	assert_int_equal(take(f, &b2), STREAMSPILL_DONE);
	got_text(&f->sink, text, sizeof(text));
	assert_string_equal(text, "B|Iother|C|B|Rrel|Ia|Ub|C");
	assert_int_equal(streamspill_open_count(f->ss), 0);
	assert_int_equal(streamspill_spilled_bytes(f->ss), 0);
	assert_int_equal(streamspill_committed_count(f->ss), 1);
	/* every byte taken in either reached the apply as it came or was consumed */
	replayed = streamspill_replayed_bytes(f->ss);
	assert_int_equal(f->sink.n - replayed + streamspill_consumed_bytes(f->ss), b1.n + b2.n);
}

static void test_rolled_back_savepoint_is_left_out(void **state)
{
	struct fixture *f = *state;
	struct body b = { .n = 0 };
	char text[256];

	stream_start(&b, 10, true);
	change(&b, 'I', 10, "top1");
	change(&b, 'R', 11, "rel");        /* sent inside the savepoint */
	change(&b, 'I', 11, "sub");
	change(&b, 'I', 12, "nested");
	plain(&b, 'E', "");
	stream_abort(&b, 10, 11);          /* ROLLBACK TO the outer savepoint */
	stream_start(&b, 10, false);
	change(&b, 'I', 10, "top2");
	change(&b, 'I', 13, "kept");       /* a savepoint released later */
	plain(&b, 'E', "");
	stream_commit(&b, 10, 0x200, 0x208);
	assert_int_equal(take(f, &b), STREAMSPILL_DONE);
	got_text(&f->sink, text, sizeof(text));
	assert_string_equal(text, "B|Itop1|Rrel|Itop2|Ikept|C");
}

static void test_aborted_transaction_leaves_nothing(void **state)
{
	struct fixture *f = *state;
	struct body b = { .n = 0 };

	stream_start(&b, 5, true);
	change(&b, 'I', 5, "x");
	plain(&b, 'E', "");
	stream_abort(&b, 5, 5);
	stream_abort(&b, 99, 99);          /* one never streamed here: nothing to do */
	assert_int_equal(take(f, &b), STREAMSPILL_DONE);
	assert_int_equal(f->sink.n, 0);
	assert_int_equal(streamspill_open_count(f->ss), 0);
	assert_int_equal(streamspill_aborted_count(f->ss), 1);
	assert_int_equal(streamspill_consumed_bytes(f->ss), b.n);
}

static void test_commit_without_its_start_is_a_gap(void **state)
{
	struct fixture *f = *state;
	struct body b1 = { .n = 0 }, b2 = { .n = 0 }, b3 = { .n = 0 };

	stream_commit(&b1, 42, 0x300, 0x308);
	assert_int_equal(take(f, &b1), STREAMSPILL_BROKEN);
	streamspill_reset(f->ss);
	/* a later block of a transaction whose first one never came */
	stream_start(&b2, 43, false);
	change(&b2, 'I', 43, "late");
	plain(&b2, 'E', "");
	assert_int_equal(take(f, &b2), STREAMSPILL_DONE);
	stream_commit(&b3, 43, 0x400, 0x408);
	assert_int_equal(take(f, &b3), STREAMSPILL_BROKEN);
	assert_int_equal(f->sink.n, 0);
}

static void test_void_and_a_new_first_block_start_over(void **state)
{
	struct fixture *f = *state;
	struct body b = { .n = 0 };
	uint8_t v = 0;
	char text[256];

	stream_start(&b, 50, true);
	change(&b, 'I', 50, "old");
	plain(&b, 'E', "");
	stream_start(&b, 51, false);       /* broken: its start is missing */
	plain(&b, 'E', "");
	msg(&b, STREAMSPILL_MSG_VOID, &v, 0);
	stream_start(&b, 52, true);
	change(&b, 'I', 52, "first");
	plain(&b, 'E', "");
	stream_start(&b, 52, true);        /* the server sends it again from its start */
	change(&b, 'I', 52, "again");
	plain(&b, 'E', "");
	stream_commit(&b, 52, 0x500, 0x508);
	assert_int_equal(take(f, &b), STREAMSPILL_DONE);
	assert_int_equal(streamspill_open_count(f->ss), 0);
	got_text(&f->sink, text, sizeof(text));
	assert_string_equal(text, "B|Iagain|C");
}

static void test_commit_held_already_is_skipped(void **state)
{
	struct fixture *f = *state;
	struct body b = { .n = 0 };

	f->sink.received = 0x608;
	stream_start(&b, 60, true);
	change(&b, 'I', 60, "dup");
	plain(&b, 'E', "");
	stream_commit(&b, 60, 0x600, 0x608);
	assert_int_equal(take(f, &b), STREAMSPILL_DONE);
	assert_int_equal(f->sink.n, 0);
	assert_int_equal(streamspill_open_count(f->ss), 0);
}

static void test_replay_waits_for_room_and_keeps_order(void **state)
{
	struct fixture *f = *state;
	struct body b1 = { .n = 0 }, b2 = { .n = 0 };
	char text[256], why[256];

	stream_start(&b1, 70, true);
	change(&b1, 'I', 70, "s");
	plain(&b1, 'E', "");
	stream_commit(&b1, 70, 0x700, 0x708);
	plain(&b1, 'B', "");
	plain(&b1, 'I', "after");
	plain(&b1, 'C', "");
	plain(&b2, 'B', "");
	plain(&b2, 'I', "later");
	plain(&b2, 'C', "");
	f->sink.room = false;
	assert_int_equal(take(f, &b1), STREAMSPILL_WAITING);
	assert_int_equal(take(f, &b2), STREAMSPILL_WAITING);
	assert_true(streamspill_busy(f->ss));
	assert_int_equal(f->sink.n, 0);
	f->sink.room = true;
	assert_int_equal(streamspill_run(f->ss, &f->env, why, sizeof(why)), STREAMSPILL_DONE);
	assert_false(streamspill_busy(f->ss));
	got_text(&f->sink, text, sizeof(text));
	assert_string_equal(text, "B|Is|C|B|Iafter|C|B|Ilater|C");
}

struct counting {
	uint64_t bytes;
	unsigned delivers;
	size_t largest;
	unsigned rows;
};

static bool count_deliver(void *arg, const uint8_t *body, size_t len)
{
	struct counting *c = arg;

	c->bytes += len;
	c->delivers++;
	if (len > c->largest)
		c->largest = len;
	for (size_t off = 0; off + 4 < len;) {
		uint32_t n = (uint32_t)body[off] << 24 | (uint32_t)body[off + 1] << 16 |
			     (uint32_t)body[off + 2] << 8 | body[off + 3];

		c->rows += body[off + 4] == 'I';
		off += 4 + n;
	}
	return true;
}

static bool always_room(void *arg)
{
	(void)arg;
	return true;
}

static uint64_t nothing_received(void *arg)
{
	(void)arg;
	return 0;
}

static void test_large_transaction_replays_in_chunks(void **state)
{
	struct fixture *f = *state;
	static struct body b;
	struct counting c = { 0 };
	struct streamspill_env env = { count_deliver, always_room, nothing_received, &c };
	char row[200], why[256];

	/* about 3 MiB of changes, spilled over several bodies */
	memset(row, 'r', sizeof(row) - 1);
	row[sizeof(row) - 1] = '\0';
	for (int body = 0; body < 60; body++) {
		b.n = 0;
		stream_start(&b, 80, body == 0);
		for (int i = 0; i < 250; i++)
			change(&b, 'I', 80, row);
		plain(&b, 'E', "");
		assert_int_equal(streamspill_take(f->ss, b.b, b.n, &env, why, sizeof(why)), STREAMSPILL_DONE);
	}
	assert_true(streamspill_spilled_bytes(f->ss) > 2 * STREAMSPILL_REPLAY_CHUNK);
	b.n = 0;
	stream_commit(&b, 80, 0x800, 0x808);
	assert_int_equal(streamspill_take(f->ss, b.b, b.n, &env, why, sizeof(why)), STREAMSPILL_DONE);
	assert_int_equal(c.rows, 60 * 250);
	assert_true(c.delivers >= 3);
	assert_true(c.largest <= STREAMSPILL_REPLAY_CHUNK + 1024);
	assert_int_equal(c.bytes, streamspill_replayed_bytes(f->ss));
	assert_int_equal(streamspill_spilled_bytes(f->ss), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_plain_bodies_pass_as_they_are, setup, teardown),
		cmocka_unit_test_setup_teardown(test_streamed_transaction_is_applied_at_its_commit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rolled_back_savepoint_is_left_out, setup, teardown),
		cmocka_unit_test_setup_teardown(test_aborted_transaction_leaves_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_commit_without_its_start_is_a_gap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_void_and_a_new_first_block_start_over, setup, teardown),
		cmocka_unit_test_setup_teardown(test_commit_held_already_is_skipped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_replay_waits_for_room_and_keeps_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_large_transaction_replays_in_chunks, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
