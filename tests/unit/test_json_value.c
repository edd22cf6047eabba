/*
 * test_json_value.c — the JSON reader straitctl renders status with: what
 * json.h writes reads back the same, escapes and surrogate pairs decode to
 * UTF-8, malformed and over-deep documents are refused with the offset, and
 * the lookups answer "absent" for a missing member or another type.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/json_value.h"

static struct json_value *parse_ok(const char *text)
{
	char err[128] = "";
	struct json_value *v = json_parse(text, err, sizeof(err));

	if (!v)
		fail_msg("%s: %s", text, err);
	return v;
}

static void test_round_trip_with_the_writer(void **state)
{
	struct json_out j;
	struct json_value *v;
	char *doc;

	(void)state;
	json_init(&j);
	json_object_begin(&j, NULL);
	json_string(&j, "site", "cl\"oud\n");
	json_int(&j, "epoch", -3);
	json_uint(&j, "bytes", UINT64_C(10737418240));
	json_double(&j, "lag", 1.25);
	json_bool(&j, "self", true);
	json_null(&j, "error");
	json_array_begin(&j, "peers");
	json_string(&j, NULL, "a");
	json_string(&j, NULL, "b");
	json_array_end(&j);
	json_object_end(&j);
	doc = json_finish_line(&j, NULL);
	assert_non_null(doc);
	v = parse_ok(doc);
	assert_int_equal(v->type, JSON_OBJECT);
	assert_string_equal(json_get_string(v, "site"), "cl\"oud\n");
	assert_true(json_get_number(v, "epoch", 0) == -3);
	assert_true(json_get_number(v, "bytes", 0) == 10737418240.0);
	assert_true(json_get_number(v, "lag", 0) == 1.25);
	assert_true(json_get_bool(v, "self", false));
	assert_int_equal(json_get(v, "error")->type, JSON_NULL);
	assert_int_equal(json_len(json_get(v, "peers")), 2);
	assert_string_equal(json_at(json_get(v, "peers"), 1)->string, "b");
	json_value_free(v);
	free(doc);
}

static void test_escapes(void **state)
{
	struct json_value *v;

	(void)state;
	v = parse_ok("\"a\\/b\\t\\u00e9\\u20ac\\ud83d\\ude00\\u0001\"");
	assert_string_equal(v->string, "a/b\t\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\x01");
	json_value_free(v);
	v = parse_ok(" [ ] ");
	assert_int_equal(v->type, JSON_ARRAY);
	assert_int_equal(v->n, 0);
	json_value_free(v);
	v = parse_ok("{\"a\":{},\"a\":1, \"n\" : -0.5e+2}");
	assert_int_equal(json_get(v, "a")->type, JSON_OBJECT);   /* the first of a key */
	assert_true(json_get_number(v, "n", 0) == -50);
	json_value_free(v);
}

static void test_refuses(void **state)
{
	static const char *const bad[] = {
		"", "   ", "{", "[1,]", "{\"a\"}", "{\"a\":1,}", "{a:1}", "[1 2]", "tru", "nul",
		"01", "1.", ".5", "-", "+1", "1e", "0x10", "1e999", "\"abc", "\"a\\x\"", "\"\\u12\"",
		"\"\\ud800\"", "\"\\udc00\"", "\"\\ud800\\u0041\"", "\"tab\there\"", "{} {}", "[1] x",
		"\"a\\", "[\"a\",{\"b\":[nul]}]",
	};
	char err[128];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		if (json_parse(bad[i], err, sizeof(err)))
			fail_msg("accepted %s", bad[i]);
		assert_non_null(strstr(err, "at byte"));
	}
	assert_null(json_parse("[1,", err, sizeof(err)));
	assert_string_equal(err, "unexpected end at byte 3");
}

static void test_depth(void **state)
{
	char deep[JSON_VALUE_MAX_DEPTH * 2 + 3], err[128];
	struct json_value *v;

	(void)state;
	memset(deep, '[', JSON_VALUE_MAX_DEPTH);
	memset(deep + JSON_VALUE_MAX_DEPTH, ']', JSON_VALUE_MAX_DEPTH);
	deep[JSON_VALUE_MAX_DEPTH * 2] = '\0';
	v = parse_ok(deep);
	json_value_free(v);
	memset(deep, '[', JSON_VALUE_MAX_DEPTH + 1);
	memset(deep + JSON_VALUE_MAX_DEPTH + 1, ']', JSON_VALUE_MAX_DEPTH + 1);
	deep[JSON_VALUE_MAX_DEPTH * 2 + 2] = '\0';
	assert_null(json_parse(deep, err, sizeof(err)));
	assert_non_null(strstr(err, "nested too deeply"));
}

static void test_lookups_are_null_safe(void **state)
{
	struct json_value *v = parse_ok("{\"s\":\"x\",\"n\":2,\"b\":false,\"z\":null,\"a\":[1]}");

	(void)state;
	assert_null(json_get_string(v, "n"));
	assert_null(json_get_string(v, "missing"));
	assert_true(json_get_number(v, "s", 7) == 7);
	assert_true(json_get_number(v, "z", 7) == 7);
	assert_false(json_has_number(v, "z"));
	assert_true(json_has_number(v, "n"));
	assert_false(json_get_bool(v, "b", true));
	assert_true(json_get_bool(v, "n", true));
	assert_null(json_get(NULL, "s"));
	assert_null(json_get(json_get(v, "a"), "s"));
	assert_null(json_at(v, 0));
	assert_null(json_at(json_get(v, "a"), 1));
	assert_int_equal(json_len(json_get(v, "a")), 1);
	assert_int_equal(json_len(v), 0);
	assert_null(json_get_string(NULL, "s"));
	json_value_free(v);
	json_value_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip_with_the_writer),
		cmocka_unit_test(test_escapes),
		cmocka_unit_test(test_refuses),
		cmocka_unit_test(test_depth),
		cmocka_unit_test(test_lookups_are_null_safe),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
