/*
 * test_etcd_proto.c — etcd's v3 JSON gateway as data: each request body
 * as etcd takes it (int64 as strings, bytes as base64, prefixes as
 * range_end), replies read from samples etcd 3.4 sent (a grant, a
 * keepalive, a range, both branches of a txn, status, member list),
 * numbers as strings or as numbers, defaults for absent fields, binary
 * values, and every malformed reply refused with a message that names
 * what is wrong.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/witness/etcd_proto.h"

/* len: where the builder wrote the length (read after the call, not beside it). */
static void assert_body(char *body, const size_t *len, const char *want)
{
	assert_non_null(body);
	assert_string_equal(body, want);
	assert_int_equal(*len, strlen(want));
	free(body);
}

static void parse_ok(enum etcd_call call, const char *text, struct etcd_reply *r)
{
	char err[256] = "";

	memset(r, 0, sizeof(*r));
	if (!etcd_proto_parse(call, text, strlen(text), r, err, sizeof(err)))
		fail_msg("%s: %s", text, err);
}

/* Refused (len bytes of text), with a message that contains want. */
static void parse_bad_len(enum etcd_call call, const char *text, size_t len, const char *want)
{
	struct etcd_reply r;
	char err[256] = "";

	memset(&r, 0, sizeof(r));
	if (etcd_proto_parse(call, text, len, &r, err, sizeof(err)))
		fail_msg("accepted: %s", text);
	if (!strstr(err, want))
		fail_msg("\"%s\" does not say \"%s\"", err, want);
	assert_null(r.kvs);
	assert_null(r.members);
	assert_null(r.version);
}

static void parse_bad(enum etcd_call call, const char *text, const char *want)
{
	parse_bad_len(call, text, strlen(text), want);
}

/* ------------------------------------------------------------ requests */

static void test_lease_and_key_bodies(void **state)
{
	size_t len = 0;

	(void)state;
	assert_body(etcd_proto_grant(10, &len), &len, "{\"TTL\":\"10\"}");
	assert_body(etcd_proto_lease(INT64_C(4111120492205690885), &len), &len,
		    "{\"ID\":\"4111120492205690885\"}");
	assert_body(etcd_proto_range("foo", false, &len), &len, "{\"key\":\"Zm9v\"}");
	/* "/a/" .. "/a0" */
	assert_body(etcd_proto_range("/a/", true, &len), &len,
		    "{\"key\":\"L2Ev\",\"range_end\":\"L2Ew\"}");
	/* every key: etcd refuses an empty key, so "\0" .. "\0" */
	assert_body(etcd_proto_range("", true, &len), &len, "{\"key\":\"AA==\",\"range_end\":\"AA==\"}");
	assert_body(etcd_proto_delete("foo", false, &len), &len, "{\"key\":\"Zm9v\"}");
	assert_body(etcd_proto_put("foo", "bar", 3, 0, &len), &len,
		    "{\"key\":\"Zm9v\",\"value\":\"YmFy\"}");
	/* binary value with a NUL and 0xff, and a lease */
	assert_body(etcd_proto_put("k", "\0\xff\x01", 3, -7, &len), &len,
		    "{\"key\":\"aw==\",\"value\":\"AP8B\",\"lease\":\"-7\"}");
	assert_body(etcd_proto_put("k", "", 0, 0, &len), &len, "{\"key\":\"aw==\",\"value\":\"\"}");
	assert_body(etcd_proto_empty(&len), &len, "{}");
	assert_string_equal(etcd_proto_path(ETCD_CALL_KEEPALIVE), "/v3/lease/keepalive");
	assert_string_equal(etcd_proto_path(ETCD_CALL_DELETE), "/v3/kv/deleterange");
	assert_string_equal(etcd_proto_path(ETCD_CALL_MEMBERS), "/v3/cluster/member/list");
	assert_null(etcd_proto_path((enum etcd_call)99));
	assert_string_equal(etcd_proto_call_name(ETCD_CALL_TXN), "txn");
}

static void test_txn_bodies(void **state)
{
	struct etcd_compare absent = { .key = "leader", .target = ETCD_CMP_CREATE };
	struct etcd_op put = { .type = ETCD_OP_PUT, .key = "leader", .value = "a", .value_len = 1,
			       .lease = 42 };
	struct etcd_op get = { .type = ETCD_OP_RANGE, .key = "leader" };
	struct etcd_txn txn = { &absent, 1, &put, 1, &get, 1 };
	struct etcd_compare cmps[2] = {
		{ .key = "a", .target = ETCD_CMP_VALUE, .result = ETCD_CMP_NOT_EQUAL,
		  .value = "x", .value_len = 1 },
		{ .key = "a", .target = ETCD_CMP_MOD, .result = ETCD_CMP_LESS, .number = 9 },
	};
	struct etcd_op ops[2] = {
		{ .type = ETCD_OP_DELETE, .key = "p/", .prefix = true },
		{ .type = ETCD_OP_RANGE, .key = "p/", .prefix = true },
	};
	struct etcd_txn txn2 = { cmps, 2, ops, 2, NULL, 0 };
	size_t len = 0;

	(void)state;
	assert_body(etcd_proto_txn(&txn, &len), &len,
		    "{\"compare\":[{\"key\":\"bGVhZGVy\",\"target\":\"CREATE\",\"result\":\"EQUAL\","
		    "\"create_revision\":\"0\"}],"
		    "\"success\":[{\"request_put\":{\"key\":\"bGVhZGVy\",\"value\":\"YQ==\","
		    "\"lease\":\"42\"}}],"
		    "\"failure\":[{\"request_range\":{\"key\":\"bGVhZGVy\"}}]}");
	assert_body(etcd_proto_txn(&txn2, &len), &len,
		    "{\"compare\":[{\"key\":\"YQ==\",\"target\":\"VALUE\",\"result\":\"NOT_EQUAL\","
		    "\"value\":\"eA==\"},{\"key\":\"YQ==\",\"target\":\"MOD\",\"result\":\"LESS\","
		    "\"mod_revision\":\"9\"}],"
		    "\"success\":[{\"request_delete_range\":{\"key\":\"cC8=\",\"range_end\":\"cDA=\"}},"
		    "{\"request_range\":{\"key\":\"cC8=\",\"range_end\":\"cDA=\"}}],\"failure\":[]}");
	cmps[1].target = (enum etcd_cmp_target)9;
	assert_null(etcd_proto_txn(&txn2, &len));
	cmps[1].target = ETCD_CMP_LEASE;
	cmps[1].result = (enum etcd_cmp_result)-1;
	assert_null(etcd_proto_txn(&txn2, &len));
	cmps[1].result = ETCD_CMP_GREATER;
	ops[0].type = (enum etcd_op_type)5;
	assert_null(etcd_proto_txn(&txn2, &len));
	ops[0].type = ETCD_OP_PUT;
	ops[0].key = NULL;
	assert_null(etcd_proto_txn(&txn2, &len));
}

static void test_prefix_end(void **state)
{
	unsigned char out[8];

	(void)state;
	assert_int_equal(etcd_proto_prefix_end("ab", 2, out), 2);
	assert_memory_equal(out, "ac", 2);
	/* trailing 0xff bytes are dropped, the byte before them raised */
	assert_int_equal(etcd_proto_prefix_end("a\xff\xff", 3, out), 1);
	assert_memory_equal(out, "b", 1);
	assert_int_equal(etcd_proto_prefix_end("\xfe\xff", 2, out), 1);
	assert_int_equal(out[0], 0xff);
	/* nothing to raise: every key from here */
	assert_int_equal(etcd_proto_prefix_end("\xff\xff", 2, out), 1);
	assert_int_equal(out[0], 0);
	assert_int_equal(etcd_proto_prefix_end("", 0, out), 1);
	assert_int_equal(out[0], 0);
}

/* ------------------------------------------------------------- replies */

static void test_lease_replies(void **state)
{
	struct etcd_reply r;

	(void)state;
	parse_ok(ETCD_CALL_GRANT,
		 "{\"header\":{\"cluster_id\":\"14841639068965178418\",\"member_id\":"
		 "\"10276657743932975437\",\"revision\":\"1\",\"raft_term\":\"2\"},"
		 "\"ID\":\"4111120492205690885\",\"TTL\":\"10\"}", &r);
	assert_true(r.lease_id == INT64_C(4111120492205690885));
	assert_int_equal(r.ttl, 10);
	assert_int_equal(r.revision, 1);
	assert_int_equal(r.raft_term, 2);
	assert_true(r.member_id == UINT64_C(10276657743932975437));
	assert_true(r.cluster_id == UINT64_C(14841639068965178418));
	etcd_reply_clear(&r);

	/* the streamed keepalive wraps its message in "result" */
	parse_ok(ETCD_CALL_KEEPALIVE,
		 "{\"result\":{\"header\":{\"revision\":\"3\"},\"ID\":\"4111120492205690885\","
		 "\"TTL\":\"10\"}}", &r);
	assert_int_equal(r.ttl, 10);
	assert_int_equal(r.revision, 3);
	etcd_reply_clear(&r);
	/* a lease that is gone: no TTL at all */
	parse_ok(ETCD_CALL_KEEPALIVE, "{\"result\":{\"header\":{},\"ID\":\"123\"}}", &r);
	assert_int_equal(r.ttl, 0);
	assert_int_equal(r.lease_id, 123);
	etcd_reply_clear(&r);
	/* numbers as numbers are taken too, when exact */
	parse_ok(ETCD_CALL_GRANT, "{\"ID\":7,\"TTL\":10,\"header\":{\"revision\":2}}", &r);
	assert_int_equal(r.lease_id, 7);
	assert_int_equal(r.ttl, 10);
	assert_int_equal(r.revision, 2);
	etcd_reply_clear(&r);
	parse_ok(ETCD_CALL_REVOKE, "{\"header\":{\"revision\":\"9\"}}", &r);
	assert_int_equal(r.revision, 9);
	etcd_reply_clear(&r);
}

static void test_range_replies(void **state)
{
	struct etcd_reply r;

	(void)state;
	parse_ok(ETCD_CALL_RANGE,
		 "{\"header\":{\"revision\":\"2\"},\"kvs\":[{\"key\":\"Zm9v\",\"create_revision\":"
		 "\"2\",\"mod_revision\":\"2\",\"version\":\"1\",\"value\":\"YmFy\",\"lease\":"
		 "\"4111120492205690885\"}],\"count\":\"1\"}", &r);
	assert_int_equal(r.n_kvs, 1);
	assert_int_equal(r.kvs[0].key_len, 3);
	assert_string_equal(r.kvs[0].key, "foo");
	assert_int_equal(r.kvs[0].value_len, 3);
	assert_string_equal(r.kvs[0].value, "bar");
	assert_int_equal(r.kvs[0].create_revision, 2);
	assert_int_equal(r.kvs[0].mod_revision, 2);
	assert_int_equal(r.kvs[0].version, 1);
	assert_true(r.kvs[0].lease == INT64_C(4111120492205690885));
	etcd_reply_clear(&r);

	/* absent key: no kvs, no count */
	parse_ok(ETCD_CALL_RANGE, "{\"header\":{\"revision\":\"3\"}}", &r);
	assert_int_equal(r.n_kvs, 0);
	assert_null(r.kvs);
	etcd_reply_clear(&r);

	/* a binary value, an empty one (left out), and no lease */
	parse_ok(ETCD_CALL_RANGE,
		 "{\"kvs\":[{\"key\":\"aw==\",\"value\":\"AP8BAA==\",\"version\":2},"
		 "{\"key\":\"bA==\"}]}", &r);
	assert_int_equal(r.n_kvs, 2);
	assert_int_equal(r.kvs[0].value_len, 4);
	assert_memory_equal(r.kvs[0].value, "\0\xff\x01\0", 5);   /* and a NUL past it */
	assert_int_equal(r.kvs[0].version, 2);
	assert_int_equal(r.kvs[0].lease, 0);
	assert_int_equal(r.kvs[1].value_len, 0);
	assert_string_equal(r.kvs[1].value, "");
	etcd_reply_clear(&r);

	parse_ok(ETCD_CALL_DELETE, "{\"header\":{\"revision\":\"6\"},\"deleted\":\"1\"}", &r);
	assert_int_equal(r.deleted, 1);
	etcd_reply_clear(&r);
	parse_ok(ETCD_CALL_PUT, "{\"header\":{\"revision\":\"5\"}}", &r);
	assert_int_equal(r.revision, 5);
	etcd_reply_clear(&r);
}

static void test_txn_replies(void **state)
{
	struct etcd_reply r;

	(void)state;
	parse_ok(ETCD_CALL_TXN,
		 "{\"header\":{\"revision\":\"5\"},\"succeeded\":true,\"responses\":"
		 "[{\"response_put\":{\"header\":{\"revision\":\"5\"}}}]}", &r);
	assert_true(r.succeeded);
	assert_int_equal(r.n_kvs, 0);
	assert_int_equal(r.revision, 5);
	etcd_reply_clear(&r);

	/* failed: "succeeded" is left out; the failure branch's range holds the holder */
	parse_ok(ETCD_CALL_TXN,
		 "{\"header\":{\"revision\":\"6\"},\"responses\":[{\"response_range\":{\"header\":"
		 "{\"revision\":\"5\"},\"kvs\":[{\"key\":\"YWJj\",\"create_revision\":\"5\","
		 "\"mod_revision\":\"5\",\"version\":\"1\",\"value\":\"MQ==\"}],\"count\":\"1\"}},"
		 "{\"response_delete_range\":{\"header\":{\"revision\":\"6\"},\"deleted\":\"1\"}},"
		 "{\"response_range\":{\"kvs\":[{\"key\":\"eA==\",\"value\":\"eQ==\"}]}}]}", &r);
	assert_false(r.succeeded);
	assert_int_equal(r.revision, 6);
	assert_int_equal(r.n_kvs, 2);
	assert_string_equal(r.kvs[0].key, "abc");
	assert_string_equal(r.kvs[0].value, "1");
	assert_int_equal(r.kvs[0].create_revision, 5);
	assert_string_equal(r.kvs[1].key, "x");
	assert_string_equal(r.kvs[1].value, "y");
	etcd_reply_clear(&r);
}

static void test_cluster_replies(void **state)
{
	struct etcd_reply r;

	(void)state;
	parse_ok(ETCD_CALL_STATUS,
		 "{\"header\":{\"cluster_id\":\"7471603303509427087\",\"member_id\":"
		 "\"10586830650566951018\",\"revision\":\"3\",\"raft_term\":\"2\"},\"version\":"
		 "\"3.4.23\",\"dbSize\":\"20480\",\"leader\":\"10586830650566951018\","
		 "\"raftIndex\":\"10\",\"raftTerm\":\"2\",\"raftAppliedIndex\":\"10\","
		 "\"dbSizeInUse\":\"16384\"}", &r);
	assert_string_equal(r.version, "3.4.23");
	assert_true(r.leader == UINT64_C(10586830650566951018));
	assert_true(r.member_id == UINT64_C(10586830650566951018));
	etcd_reply_clear(&r);
	/* a member without quorum: no leader */
	parse_ok(ETCD_CALL_STATUS, "{\"version\":\"3.4.23\",\"errors\":[\"etcdserver: no leader\"]}",
		 &r);
	assert_true(r.leader == 0);
	etcd_reply_clear(&r);

	parse_ok(ETCD_CALL_MEMBERS,
		 "{\"header\":{\"member_id\":\"17384402095207130379\"},\"members\":["
		 "{\"ID\":\"1131905605348669511\",\"name\":\"m1\",\"peerURLs\":"
		 "[\"http://127.0.0.1:24801\"],\"clientURLs\":[\"http://127.0.0.1:24791\"]},"
		 "{\"ID\":\"10400904784482842974\",\"name\":\"m2\",\"clientURLs\":"
		 "[\"http://127.0.0.1:24792\",\"http://10.0.0.2:2379\"]},"
		 "{\"ID\":\"17384402095207130379\",\"peerURLs\":[\"http://127.0.0.1:24803\"]}]}", &r);
	assert_int_equal(r.n_members, 3);
	assert_true(r.members[0].id == UINT64_C(1131905605348669511));
	assert_string_equal(r.members[0].name, "m1");
	assert_int_equal(r.members[0].n_client_urls, 1);
	assert_string_equal(r.members[0].client_urls[0], "http://127.0.0.1:24791");
	assert_int_equal(r.members[1].n_client_urls, 2);
	assert_string_equal(r.members[1].client_urls[1], "http://10.0.0.2:2379");
	/* a member added but not started yet has no name and no client URLs */
	assert_string_equal(r.members[2].name, "");
	assert_int_equal(r.members[2].n_client_urls, 0);
	etcd_reply_clear(&r);
}

static void test_error_bodies(void **state)
{
	const char *unary = "{\"error\":\"etcdserver: requested lease not found\",\"message\":"
			    "\"etcdserver: requested lease not found\",\"code\":5}";
	const char *stream = "{\"error\":{\"grpc_code\":14,\"http_code\":503,\"message\":"
			     "\"etcdserver: no leader\",\"http_status\":\"Service Unavailable\"}}";
	char msg[128];
	int code = -1;

	(void)state;
	assert_true(etcd_proto_parse_error(unary, strlen(unary), msg, sizeof(msg), &code));
	assert_string_equal(msg, "etcdserver: requested lease not found");
	assert_int_equal(code, 5);
	assert_true(etcd_proto_parse_error(stream, strlen(stream), msg, sizeof(msg), &code));
	assert_string_equal(msg, "etcdserver: no leader");
	assert_int_equal(code, 14);
	assert_false(etcd_proto_parse_error("Not Found", 9, msg, sizeof(msg), &code));
	assert_int_equal(code, 0);
	assert_false(etcd_proto_parse_error("{\"header\":{}}", 13, msg, sizeof(msg), &code));
	assert_false(etcd_proto_parse_error("[]", 2, msg, sizeof(msg), &code));
	/* a code out of range is no code */
	assert_true(etcd_proto_parse_error("{\"error\":\"x\",\"code\":1e300}", 26, msg, sizeof(msg),
					   &code));
	assert_string_equal(msg, "x");
	assert_int_equal(code, 0);

	/* an error body is a refusal whatever the call, streamed or not */
	parse_bad(ETCD_CALL_REVOKE, unary,
		  "lease revoke refused by etcd: etcdserver: requested lease not found");
	parse_bad(ETCD_CALL_KEEPALIVE, stream, "etcdserver: no leader");
	/* a grant's own "error" field, when not empty */
	parse_bad(ETCD_CALL_GRANT, "{\"ID\":\"1\",\"TTL\":\"5\",\"error\":\"lease exists\"}",
		  "lease exists");
}

static void test_malformed_replies(void **state)
{
	(void)state;
	parse_bad(ETCD_CALL_RANGE, "{\"kvs\":[", "bad reply to range: not JSON");
	parse_bad(ETCD_CALL_RANGE, "", "not JSON");
	parse_bad(ETCD_CALL_RANGE, "{} x", "not JSON");
	parse_bad_len(ETCD_CALL_RANGE, "{\"a\":1}\0{}", 10, "NUL");
	parse_bad(ETCD_CALL_STATUS, "[1,2]", "not a JSON object");
	parse_bad(ETCD_CALL_KEEPALIVE, "{\"result\":7}", "not a JSON object");
	parse_bad(ETCD_CALL_RANGE, "{\"kvs\":{}}", "\"kvs\" is not an array");
	parse_bad(ETCD_CALL_RANGE, "{\"kvs\":[1]}", "a kv is not an object");
	parse_bad(ETCD_CALL_RANGE, "{\"header\":[]}", "\"header\" is not an object");
	parse_bad(ETCD_CALL_RANGE, "{\"kvs\":[{\"key\":\"Zm9v\"},{\"key\":\"Zm9\"}]}",
		  "\"key\" is not base64");
	parse_bad(ETCD_CALL_RANGE, "{\"kvs\":[{\"key\":\"Zm9v\",\"value\":\"YQ=\"}]}",
		  "\"value\" is not base64");
	parse_bad(ETCD_CALL_RANGE, "{\"kvs\":[{\"key\":5}]}", "\"key\" is not a string");
	parse_bad(ETCD_CALL_TXN, "{\"succeeded\":\"true\"}", "\"succeeded\" is not a boolean");
	parse_bad(ETCD_CALL_TXN, "{\"responses\":[3]}", "a txn response is not an object");
	parse_bad(ETCD_CALL_TXN, "{\"responses\":[{\"response_range\":[]}]}",
		  "\"response_range\" is not an object");
	parse_bad(ETCD_CALL_MEMBERS, "{\"members\":[{\"clientURLs\":[1]}]}",
		  "a client URL is not a string");
	parse_bad(ETCD_CALL_MEMBERS, "{\"members\":[{\"name\":1}]}", "\"name\" is not a string");
	parse_bad(ETCD_CALL_MEMBERS, "{\"members\":[null]}", "a member is not an object");
	parse_bad(ETCD_CALL_STATUS, "{\"version\":3}", "\"version\" is not a string");
}

static void test_integers(void **state)
{
	struct etcd_reply r;

	(void)state;
	parse_ok(ETCD_CALL_GRANT, "{\"ID\":\"-9223372036854775808\",\"TTL\":\"9223372036854775807\"}",
		 &r);
	assert_true(r.lease_id == INT64_MIN);
	assert_true(r.ttl == INT64_MAX);
	etcd_reply_clear(&r);
	parse_ok(ETCD_CALL_STATUS, "{\"leader\":\"18446744073709551615\",\"version\":null}", &r);
	assert_true(r.leader == UINT64_MAX);
	assert_string_equal(r.version, "");
	etcd_reply_clear(&r);
	/* 2^53 as a number is still exact */
	parse_ok(ETCD_CALL_GRANT, "{\"ID\":9007199254740992,\"TTL\":-1}", &r);
	assert_true(r.lease_id == INT64_C(9007199254740992));
	assert_int_equal(r.ttl, -1);
	etcd_reply_clear(&r);

	parse_bad(ETCD_CALL_GRANT, "{\"ID\":\"9223372036854775808\"}", "\"ID\" is out of range");
	parse_bad(ETCD_CALL_GRANT, "{\"ID\":4111120492205690885}", "\"ID\" is not an exact integer");
	parse_bad(ETCD_CALL_GRANT, "{\"TTL\":1.5}", "\"TTL\" is not an exact integer");
	parse_bad(ETCD_CALL_GRANT, "{\"TTL\":\"10s\"}", "\"TTL\" is not an integer");
	parse_bad(ETCD_CALL_GRANT, "{\"TTL\":\"\"}", "\"TTL\" is not an integer");
	parse_bad(ETCD_CALL_GRANT, "{\"TTL\":\" 1\"}", "\"TTL\" is not an integer");
	parse_bad(ETCD_CALL_GRANT, "{\"TTL\":true}", "\"TTL\" is not an integer");
	parse_bad(ETCD_CALL_STATUS, "{\"leader\":\"-1\"}", "\"leader\" is not an unsigned");
	parse_bad(ETCD_CALL_STATUS, "{\"leader\":-1}", "\"leader\" is not an exact unsigned");
	parse_bad(ETCD_CALL_STATUS, "{\"leader\":\"18446744073709551616\"}",
		  "\"leader\" is out of range");
	parse_bad(ETCD_CALL_RANGE, "{\"header\":{\"revision\":{}}}",
		  "\"revision\" is not an integer");
}

/* ------------------------------------------------------------- base64 */

static void test_base64(void **state)
{
	static const char *const good[][2] = {
		{ "", "" }, { "f", "Zg==" }, { "fo", "Zm8=" }, { "foo", "Zm9v" },
		{ "foob", "Zm9vYg==" }, { "fooba", "Zm9vYmE=" }, { "foobar", "Zm9vYmFy" },
	};
	static const char *const bad[] = {
		"Zm9", "Zm9vY", "Z===", "====", "Zg=a", "Zm=v", "Zm9v\n", " Zm9v", "Zm 9", "Zm9*",
		"Zg==Zg==", "=Zg=",
	};
	unsigned char all[256];
	size_t n = 99;
	char *text, *back;

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		text = etcd_base64_encode(good[i][0], strlen(good[i][0]));
		assert_string_equal(text, good[i][1]);
		back = etcd_base64_decode(text, &n);
		assert_non_null(back);
		assert_int_equal(n, strlen(good[i][0]));
		assert_memory_equal(back, good[i][0], n + 1);
		free(back);
		free(text);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (etcd_base64_decode(bad[i], &n))
			fail_msg("decoded \"%s\"", bad[i]);
	for (size_t i = 0; i < sizeof(all); i++)
		all[i] = (unsigned char)(255 - i);
	for (size_t len = 250; len <= 256; len++) {
		text = etcd_base64_encode(all, len);
		back = etcd_base64_decode(text, &n);
		assert_int_equal(n, len);
		assert_memory_equal(back, all, len);
		free(back);
		free(text);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lease_and_key_bodies),
		cmocka_unit_test(test_txn_bodies),
		cmocka_unit_test(test_prefix_end),
		cmocka_unit_test(test_lease_replies),
		cmocka_unit_test(test_range_replies),
		cmocka_unit_test(test_txn_replies),
		cmocka_unit_test(test_cluster_replies),
		cmocka_unit_test(test_error_bodies),
		cmocka_unit_test(test_malformed_replies),
		cmocka_unit_test(test_integers),
		cmocka_unit_test(test_base64),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
