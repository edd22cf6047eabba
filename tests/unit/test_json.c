/*
 * test_json.c — the status output interface: JSON and outline renderings of
 * the same calls, a document as one line, escaping, and misuse detection.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"

static void emit_status(struct json_out *j)
{
	json_object_begin(j, NULL);
	json_string(j, "site", "cloud");
	json_int(j, "epoch", -3);
	json_uint(j, "bytes", UINT64_MAX);
	json_bool(j, "healthy", true);
	json_null(j, "error");
	json_lsn(j, "lsn", UINT64_C(0x16B374D848));
	json_array_begin(j, "peers");
	json_object_begin(j, NULL);
	json_string(j, "name", "onprem");
	json_double(j, "age", 1.5);
	json_object_end(j);
	json_object_begin(j, NULL);
	json_string(j, "name", "edge");
	json_double(j, "age", NAN);
	json_object_end(j);
	json_array_end(j);
	json_array_begin(j, "empty");
	json_array_end(j);
	json_array_begin(j, "tags");
	json_string(j, NULL, "a");
	json_string(j, NULL, NULL);
	json_array_end(j);
	json_object_end(j);
}

static void test_json_rendering(void **state)
{
	struct json_out j;
	char *doc;
	size_t len;

	(void)state;
	json_init(&j);
	emit_status(&j);
	doc = json_finish(&j, &len);
	assert_non_null(doc);
	assert_string_equal(doc,
		"{\"site\":\"cloud\",\"epoch\":-3,\"bytes\":18446744073709551615,"
		"\"healthy\":true,\"error\":null,\"lsn\":\"16/B374D848\",\"peers\":[{\"name\":\"onprem\",\"age\":1.5},"
		"{\"name\":\"edge\",\"age\":null}],\"empty\":[],\"tags\":[\"a\",null]}");
	assert_int_equal(len, strlen(doc));
	free(doc);
}

static void test_outline_rendering(void **state)
{
	struct json_out j;
	char *doc;

	(void)state;
	json_init_text(&j);
	emit_status(&j);
	doc = json_finish(&j, NULL);
	assert_non_null(doc);
	assert_string_equal(doc,
		"site: cloud\n"
		"epoch: -3\n"
		"bytes: 18446744073709551615\n"
		"healthy: yes\n"
		"error: -\n"
		"lsn: 16/B374D848\n"
		"peers:\n"
		"  - name: onprem\n"
		"    age: 1.500\n"
		"  - name: edge\n"
		"    age: -\n"
		"empty: (none)\n"
		"tags:\n"
		"  - a\n"
		"  - -\n");
	free(doc);
}

static void test_finish_line(void **state)
{
	struct json_out j;
	char *doc;
	size_t len = 0;

	(void)state;
	/* JSON: the document and one newline */
	json_init(&j);
	json_object_begin(&j, NULL);
	json_string(&j, "site", "cloud");
	json_object_end(&j);
	doc = json_finish_line(&j, &len);
	assert_non_null(doc);
	assert_string_equal(doc, "{\"site\":\"cloud\"}\n");
	assert_int_equal(len, strlen(doc));
	free(doc);
	/* an outline already ends in one: not a second */
	json_init_text(&j);
	json_object_begin(&j, NULL);
	json_string(&j, "site", "cloud");
	json_object_end(&j);
	doc = json_finish_line(&j, &len);
	assert_non_null(doc);
	assert_string_equal(doc, "site: cloud\n");
	assert_int_equal(len, strlen(doc));
	free(doc);
	/* a failed document stays a failure */
	json_init(&j);
	json_object_begin(&j, NULL);
	assert_null(json_finish_line(&j, NULL));
}

static void test_escaping(void **state)
{
	struct json_out j;
	char *doc;

	(void)state;
	json_init(&j);
	json_object_begin(&j, NULL);
	json_string(&j, "k\"ey", "a\"b\\c\nd\te\x01");
	json_object_end(&j);
	doc = json_finish(&j, NULL);
	assert_string_equal(doc, "{\"k\\\"ey\":\"a\\\"b\\\\c\\nd\\te\\u0001\"}");
	free(doc);
}

static void test_unbalanced_is_refused(void **state)
{
	struct json_out j;

	(void)state;
	json_init(&j);
	json_object_begin(&j, NULL);
	assert_null(json_finish(&j, NULL));

	json_init(&j);
	json_object_begin(&j, NULL);
	json_array_end(&j);          /* wrong closer */
	json_object_end(&j);
	assert_null(json_finish(&j, NULL));

	json_init(&j);
	json_object_end(&j);         /* nothing open */
	assert_null(json_finish(&j, NULL));
}

static void test_depth_limit(void **state)
{
	struct json_out j;

	(void)state;
	json_init(&j);
	for (int i = 0; i < JSON_MAX_DEPTH + 4; i++)
		json_array_begin(&j, NULL);
	for (int i = 0; i < JSON_MAX_DEPTH + 4; i++)
		json_array_end(&j);
	assert_null(json_finish(&j, NULL));
}

static void test_large_document(void **state)
{
	struct json_out j;
	char *doc;
	size_t len;

	(void)state;
	json_init(&j);
	json_array_begin(&j, NULL);
	for (int i = 0; i < 100000; i++)
		json_int(&j, NULL, i);
	json_array_end(&j);
	doc = json_finish(&j, &len);
	assert_non_null(doc);
	assert_true(len > 500000);
	assert_memory_equal(doc, "[0,1,2,", 7);
	assert_memory_equal(doc + len - 7, ",99999]", 7);
	free(doc);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_json_rendering),
		cmocka_unit_test(test_outline_rendering),
		cmocka_unit_test(test_finish_line),
		cmocka_unit_test(test_escaping),
		cmocka_unit_test(test_unbalanced_is_refused),
		cmocka_unit_test(test_depth_limit),
		cmocka_unit_test(test_large_document),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
