/* Unit tests for msgjoin: messages larger than a batch, joined from pieces. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gateway/stream/msgjoin.h"

/* Appends one message of len bytes (each byte fill) at b + *at. */
static void put_msg(uint8_t *b, size_t *at, size_t len, uint8_t fill)
{
	b[*at] = (uint8_t)(len >> 24);
	b[*at + 1] = (uint8_t)(len >> 16);
	b[*at + 2] = (uint8_t)(len >> 8);
	b[*at + 3] = (uint8_t)len;
	memset(b + *at + 4, fill, len);
	*at += 4 + len;
}

static void test_whole_batches_pass_through(void **state)
{
	struct msgjoin j;
	uint8_t body[64];
	size_t n = 0, out_len;
	const uint8_t *out;
	char why[128];

	(void)state;
	msgjoin_init(&j, 1000);
	put_msg(body, &n, 5, 'a');
	put_msg(body, &n, 7, 'b');
	assert_int_equal(msgjoin_take(&j, body, n, false, &out, &out_len, why, sizeof(why)), MSGJOIN_OK);
	assert_ptr_equal(out, body);        /* not copied */
	assert_int_equal(out_len, n);
	msgjoin_done(&j);
	assert_int_equal(msgjoin_pending(&j), 0);
	msgjoin_free(&j);
}

/* One large message between small ones, cut at every possible place in pieces of each size. */
static void test_pieces_of_every_size_join(void **state)
{
	enum { BIG = 300 };
	uint8_t body[512];
	size_t n = 0;

	(void)state;
	put_msg(body, &n, 3, 'x');
	put_msg(body, &n, BIG, 'y');
	put_msg(body, &n, 2, 'z');
	for (size_t piece = 1; piece <= n; piece++) {
		struct msgjoin j;
		uint8_t got[512];
		size_t got_len = 0;

		msgjoin_init(&j, 1000);
		for (size_t off = 0; off < n; off += piece) {
			size_t len = n - off < piece ? n - off : piece, out_len, end = off + len;
			const uint8_t *out;
			char why[128];
			bool inside;

			/* the messages end at 7, 7 + 4 + BIG and n */
			inside = !(end == 7 || end == 7 + 4 + BIG || end == n);
			assert_int_equal(msgjoin_take(&j, body + off, len, inside, &out, &out_len,
						      why, sizeof(why)), MSGJOIN_OK);
			memcpy(got + got_len, out, out_len);
			got_len += out_len;
			msgjoin_done(&j);
		}
		assert_int_equal(got_len, n);
		assert_memory_equal(got, body, n);
		assert_int_equal(msgjoin_pending(&j), 0);
		msgjoin_free(&j);
	}
}

static void test_a_flag_that_disagrees_is_refused(void **state)
{
	struct msgjoin j;
	uint8_t body[64];
	size_t n = 0, out_len;
	const uint8_t *out;
	char why[128];

	(void)state;
	msgjoin_init(&j, 1000);
	put_msg(body, &n, 10, 'a');
	/* ends inside a message but does not say so */
	assert_int_equal(msgjoin_take(&j, body, 6, false, &out, &out_len, why, sizeof(why)),
			 MSGJOIN_BROKEN);
	assert_non_null(strstr(why, "does not say it continues"));
	/* says it continues but ends at a boundary */
	assert_int_equal(msgjoin_take(&j, body, n, true, &out, &out_len, why, sizeof(why)),
			 MSGJOIN_BROKEN);
	assert_int_equal(msgjoin_pending(&j), 0);
	/* a piece held, then a batch that ends inside the next message without the flag */
	assert_int_equal(msgjoin_take(&j, body, 6, true, &out, &out_len, why, sizeof(why)), MSGJOIN_OK);
	assert_int_equal(out_len, 0);
	assert_int_equal(msgjoin_take(&j, body + 6, 3, false, &out, &out_len, why, sizeof(why)),
			 MSGJOIN_BROKEN);
	assert_int_equal(msgjoin_pending(&j), 6);   /* unchanged by the refusal */
	assert_int_equal(msgjoin_take(&j, body + 6, n - 6, false, &out, &out_len, why, sizeof(why)),
			 MSGJOIN_OK);
	assert_int_equal(out_len, n);
	msgjoin_done(&j);
	msgjoin_reset(&j);
	msgjoin_free(&j);
}

static void test_a_message_over_the_limit_is_refused(void **state)
{
	struct msgjoin j;
	uint8_t head[8] = { 0, 0, 0x10, 0x00, 'I', 0, 0, 0 };   /* 4096 bytes announced */
	size_t out_len;
	const uint8_t *out;
	char why[128];

	(void)state;
	msgjoin_init(&j, 4095);
	assert_int_equal(msgjoin_take(&j, head, sizeof(head), true, &out, &out_len, why, sizeof(why)),
			 MSGJOIN_TOO_BIG);
	assert_non_null(strstr(why, "4096 bytes"));
	assert_non_null(strstr(why, "4095"));
	assert_int_equal(msgjoin_pending(&j), 0);
	msgjoin_free(&j);
	msgjoin_init(&j, 4096);
	assert_int_equal(msgjoin_take(&j, head, sizeof(head), true, &out, &out_len, why, sizeof(why)),
			 MSGJOIN_OK);
	assert_int_equal(msgjoin_pending(&j), sizeof(head));
	msgjoin_reset(&j);
	assert_int_equal(msgjoin_pending(&j), 0);
	msgjoin_free(&j);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_whole_batches_pass_through),
		cmocka_unit_test(test_pieces_of_every_size_join),
		cmocka_unit_test(test_a_flag_that_disagrees_is_refused),
		cmocka_unit_test(test_a_message_over_the_limit_is_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
