/*
 * test_verify_request.c — a verify's requests to the target's site
 * (gateway/verify/verify_request.h): what the comparing site writes reads
 * back as the same request; statement text, unknown kinds, system schemas,
 * unlisted tables and bounds that do not fit are refused; the statement is
 * built from the catalog's names, quoted, whatever the names hold.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "gateway/relay/relay_proto.h"
#include "gateway/verify/verify_request.h"

static uint8_t buf[65536];

/* Writes q (and values) as a QUERY and reads it back as a peer's frame. */
static void frame_of(const struct verify_query *q, const char *const *params, size_t nparams,
		     const char *text, struct relay_proto_verify *out)
{
	struct relay_proto_verify m = { .stream = relay_proto_str("s1"), .job = 7,
					.op = RELAY_VERIFY_QUERY, .ok = 1, .seq = 3,
					.text = relay_proto_str(text) };
	struct wire_writer w;

	verify_request_head(&m, q, nparams);
	wire_writer_init(&w, buf, sizeof(buf));
	assert_true(relay_proto_write_verify_head(&w, &m));
	for (size_t i = 0; i < q->n_keys; i++)
		assert_true(relay_proto_put_verify_value(&w, q->key_columns[i], strlen(q->key_columns[i])));
	for (size_t i = 0; i < nparams; i++)
		assert_true(relay_proto_put_verify_value(&w, params[i], params[i] ? strlen(params[i]) : 0));
	assert_int_equal(relay_proto_read_verify(buf, w.len, out), RELAY_PROTO_OK);
}

static const char *const id_key[] = { "id" };

static void test_round_trip(void **state)
{
	const char *const bounds[] = { "10", NULL };
	struct verify_query q = { .kind = VERIFY_Q_CHECKSUM, .schema = "public", .name = "items",
				  .key_columns = id_key, .n_keys = 1, .lo = true, .hi = true };
	struct relay_proto_verify m;
	struct verify_request r;
	char why[256];

	(void)state;
	frame_of(&q, bounds, 2, "", &m);
	assert_true(verify_request_read(&m, NULL, &r, why, sizeof(why)));
	assert_int_equal(r.q.kind, VERIFY_Q_CHECKSUM);
	assert_string_equal(r.schema, "public");
	assert_string_equal(r.name, "items");
	assert_int_equal(r.q.n_keys, 1);
	assert_string_equal(r.keys[0], "id");
	assert_true(r.q.lo && r.q.hi);
	assert_int_equal(r.nparams, 2);
	assert_string_equal(r.params[0], "10");
	assert_null(r.params[1]);
	verify_request_free(&r);
}

/* A frame read back must be refused with a reason containing want. */
static void expect_refused(const struct relay_proto_verify *m, const struct config_stream *cs,
			   const char *want)
{
	struct verify_request r;
	char why[256] = "";

	assert_false(verify_request_read(m, cs, &r, why, sizeof(why)));
	if (!strstr(why, want))
		fail_msg("refused for \"%s\", expected \"%s\"", why, want);
	verify_request_free(&r);
}

static void test_refusals(void **state)
{
	struct verify_query ok = { .kind = VERIFY_Q_CHECKSUM, .schema = "public", .name = "items" };
	struct verify_query q;
	struct relay_proto_verify m;
	char *listed[] = { "public.orders", "items2" };
	struct config_stream cs = { .name = "s1", .tables = listed, .n_tables = 2 };
	const char *const one[] = { "1" };

	(void)state;
	frame_of(&ok, NULL, 0, "SELECT pg_read_file('/etc/passwd')", &m);
	expect_refused(&m, NULL, "statement text");
	frame_of(&ok, NULL, 0, "SELECT pg_terminate_backend(1)", &m);
	expect_refused(&m, NULL, "statement text");

	q = ok;
	q.schema = "pg_catalog";
	q.name = "pg_authid";
	frame_of(&q, NULL, 0, "", &m);
	expect_refused(&m, NULL, "schema \"pg_catalog\" is not replicated");
	q.schema = "strait";
	q.name = "sync_table";
	frame_of(&q, NULL, 0, "", &m);
	expect_refused(&m, NULL, "is not replicated");
	q.schema = "information_schema";
	frame_of(&q, NULL, 0, "", &m);
	expect_refused(&m, NULL, "is not replicated");

	frame_of(&ok, NULL, 0, "", &m);
	expect_refused(&m, &cs, "is not one of the stream's tables");
	q = ok;
	q.name = "orders";
	frame_of(&q, NULL, 0, "", &m);
	{
		struct verify_request r;
		char why[256];

		assert_true(verify_request_read(&m, &cs, &r, why, sizeof(why)));
		verify_request_free(&r);
	}

	q = ok;
	q.schema = q.name = "";
	frame_of(&q, NULL, 0, "", &m);
	expect_refused(&m, NULL, "no table named");

	q = ok;                          /* a bound without key columns */
	frame_of(&q, one, 1, "", &m);
	expect_refused(&m, NULL, "values for bounds that take 0");

	q = ok;
	q.kind = VERIFY_Q_BUCKETS;
	q.mask = 5;                      /* not 2^n - 1 */
	frame_of(&q, NULL, 0, "", &m);
	expect_refused(&m, NULL, "bucket mask");

	q = ok;
	q.kind = VERIFY_Q_BOUNDARY;      /* a boundary needs a key */
	frame_of(&q, NULL, 0, "", &m);
	expect_refused(&m, NULL, "key columns");

	q = ok;
	q.offset = 3;                    /* only a boundary has an offset */
	frame_of(&q, NULL, 0, "", &m);
	expect_refused(&m, NULL, "offset");

	q = (struct verify_query){ .kind = VERIFY_Q_SETTINGS, .schema = "public", .name = "items" };
	frame_of(&q, NULL, 0, "", &m);
	expect_refused(&m, NULL, "takes none");

	frame_of(&ok, NULL, 0, "", &m);
	m.kind = 99;
	expect_refused(&m, NULL, "unknown kind");
	m.kind = VERIFY_Q_CHECKSUM;
	m.range = 0x80;
	expect_refused(&m, NULL, "range flags");
}

/* The lookup statement is fixed: names travel as parameters. */
static void test_lookup(void **state)
{
	const char *const keys[] = { "a", "b\"); DROP TABLE x; --" };
	struct verify_query q = { .kind = VERIFY_Q_ROWS, .schema = "s", .name = "t'; --",
				  .key_columns = keys, .n_keys = 2 };
	struct relay_proto_verify m;
	struct verify_request r;
	const char *params[8];
	char why[256];
	char *sql;

	(void)state;
	frame_of(&q, NULL, 0, "", &m);
	assert_true(verify_request_read(&m, NULL, &r, why, sizeof(why)));
	sql = verify_request_lookup_sql(&r);
	assert_non_null(sql);
	assert_null(strstr(sql, "DROP"));
	assert_null(strstr(sql, "t'"));
	assert_non_null(strstr(sql, "unnest(ARRAY[$3, $4]::text[])"));
	free(sql);
	assert_int_equal(verify_request_lookup_params(&r, params, 8), 4);
	assert_string_equal(params[1], "t'; --");
	assert_string_equal(params[3], keys[1]);
	verify_request_free(&r);
}

static void test_statement_from_catalog(void **state)
{
	const char *const keys[] = { "we\"ird" };
	const char *const bounds[] = { "5" };
	struct verify_query q = { .kind = VERIFY_Q_BOUNDARY, .schema = "My Schema", .name = "t",
				  .key_columns = keys, .n_keys = 1, .lo = true, .offset = 9 };
	struct verify_request_table t = { 0 };
	struct relay_proto_verify m;
	struct verify_request r;
	PGresult *res;
	char why[256];
	char *sql;

	(void)state;
	frame_of(&q, bounds, 1, "", &m);
	assert_true(verify_request_read(&m, NULL, &r, why, sizeof(why)));
	assert_null(verify_request_sql(&r, &t, why, sizeof(why)));

	/* what the target's catalog answered: no such table, then the column and its type */
	res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
	assert_true(PQsetResultAttrs(res, 2, (PGresAttDesc[]){
		{ .name = (char *)"attname", .typid = 25, .typlen = -1, .atttypmod = -1 },
		{ .name = (char *)"format_type", .typid = 25, .typlen = -1, .atttypmod = -1 } }));
	assert_false(verify_request_table_set(&t, &r, res, why, sizeof(why)));
	assert_string_equal(why, "no table \"My Schema\".\"t\" here");
	assert_true(PQsetvalue(res, 0, 0, NULL, -1));
	assert_true(PQsetvalue(res, 0, 1, NULL, -1));
	assert_false(verify_request_table_set(&t, &r, res, why, sizeof(why)));
	assert_string_equal(why, "no column \"we\"ird\" in \"My Schema\".\"t\" here");
	assert_true(PQsetvalue(res, 0, 0, (char *)"we\"ird", 6));
	assert_true(PQsetvalue(res, 0, 1, (char *)"bigint", 6));
	assert_true(verify_request_table_set(&t, &r, res, why, sizeof(why)));
	PQclear(res);
	assert_true(verify_request_table_matches(&t, &r));

	sql = verify_request_sql(&r, &t, why, sizeof(why));
	assert_non_null(sql);
	assert_string_equal(sql, "SELECT \"we\"\"ird\"::text FROM \"My Schema\".\"t\" AS t WHERE "
			    "(\"we\"\"ird\") > ($1::bigint) ORDER BY t.\"we\"\"ird\" OFFSET 9 LIMIT 1");
	free(sql);
	verify_request_table_free(&t);
	verify_request_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_lookup),
		cmocka_unit_test(test_statement_from_catalog),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
