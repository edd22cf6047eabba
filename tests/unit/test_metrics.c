/*
 * test_metrics.c — the Prometheus text writer (grouping by family, HELP and
 * label escaping, values, refused names) and the health checks' answers
 * (/health, /primary, /replica with ?lag=, unknown paths).
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
#include "gateway/daemon/metrics.h"

static void test_metrics_groups_families_in_declared_order(void **state)
{
	struct metrics_writer *w = metrics_writer_new();
	char *text;
	size_t len;

	(void)state;
	assert_non_null(w);
	metrics_declare(w, "strait_stream_lag_bytes", METRICS_GAUGE, "lag in bytes");
	metrics_declare(w, "strait_relay_bytes_sent_total", METRICS_COUNTER, "bytes sent");
	metrics_declare(w, "strait_unused", METRICS_GAUGE, "declared, no samples");
	metrics_declare(w, "strait_stream_lag_bytes", METRICS_COUNTER, "declared twice: ignored");
	/* samples interleaved, as a collector walking streams writes them */
	metrics_value(w, "strait_stream_lag_bytes", 10, "stream", "a", NULL);
	metrics_value(w, "strait_relay_bytes_sent_total", 5, "peer", "cloud", NULL);
	metrics_value(w, "strait_stream_lag_bytes", 0, "stream", "b", NULL);
	text = metrics_writer_finish(w, &len);
	assert_non_null(text);
	assert_string_equal(text,
		"# HELP strait_stream_lag_bytes lag in bytes\n"
		"# TYPE strait_stream_lag_bytes gauge\n"
		"strait_stream_lag_bytes{stream=\"a\"} 10\n"
		"strait_stream_lag_bytes{stream=\"b\"} 0\n"
		"# HELP strait_relay_bytes_sent_total bytes sent\n"
		"# TYPE strait_relay_bytes_sent_total counter\n"
		"strait_relay_bytes_sent_total{peer=\"cloud\"} 5\n"
		"# HELP strait_unused declared, no samples\n"
		"# TYPE strait_unused gauge\n");
	assert_int_equal(len, strlen(text));
	free(text);
}

static void test_metrics_escaping(void **state)
{
	struct metrics_writer *w = metrics_writer_new();
	char *text;

	(void)state;
	metrics_declare(w, "x", METRICS_GAUGE, "a \\ backslash\nand a \"quote\"");
	metrics_value(w, "x", 1, "a", "back\\slash \"quoted\"\nnext line", "b", "", NULL);
	text = metrics_writer_finish(w, NULL);
	assert_non_null(text);
	/* HELP escapes backslash and newline only; label values also the double quote */
	assert_string_equal(text,
		"# HELP x a \\\\ backslash\\nand a \"quote\"\n"
		"# TYPE x gauge\n"
		"x{a=\"back\\\\slash \\\"quoted\\\"\\nnext line\",b=\"\"} 1\n");
	free(text);
}

static void test_metrics_values(void **state)
{
	struct metrics_writer *w = metrics_writer_new();
	char *text;

	(void)state;
	metrics_declare(w, "v", METRICS_GAUGE, "values");
	metrics_value(w, "v", 0.25, "k", "frac", NULL);
	metrics_value(w, "v", 0.1, "k", "tenth", NULL);
	metrics_value(w, "v", -3, "k", "neg", NULL);
	metrics_value(w, "v", 18446744073709551615.0, "k", "big", NULL);
	metrics_value(w, "v", NAN, "k", "nan", NULL);
	metrics_value(w, "v", INFINITY, "k", "inf", NULL);
	metrics_value(w, "v", -INFINITY, "k", "ninf", NULL);
	metrics_value(w, "v", 1.0 / 3.0, "k", "third", NULL);
	text = metrics_writer_finish(w, NULL);
	assert_non_null(text);
	assert_non_null(strstr(text, "v{k=\"frac\"} 0.25\n"));
	assert_non_null(strstr(text, "v{k=\"tenth\"} 0.1\n"));
	assert_non_null(strstr(text, "v{k=\"neg\"} -3\n"));
	assert_non_null(strstr(text, "v{k=\"big\"} 1.8446744073709552e+19\n"));
	assert_non_null(strstr(text, "v{k=\"nan\"} NaN\n"));
	assert_non_null(strstr(text, "v{k=\"inf\"} +Inf\n"));
	assert_non_null(strstr(text, "v{k=\"ninf\"} -Inf\n"));
	assert_non_null(strstr(text, "v{k=\"third\"} 0.3333333333333333\n"));
	free(text);
}

static void test_metrics_refuses_bad_names(void **state)
{
	struct metrics_writer *w = metrics_writer_new();
	char *text;

	(void)state;
	assert_true(metrics_name_valid("strait_up"));
	assert_true(metrics_name_valid("a:b_c9"));
	assert_false(metrics_name_valid("9lives"));
	assert_false(metrics_name_valid("has-dash"));
	assert_false(metrics_name_valid(""));
	assert_false(metrics_name_valid(NULL));
	metrics_declare(w, "bad-name", METRICS_GAUGE, "refused");
	metrics_declare(w, "ok", METRICS_GAUGE, "fine");
	metrics_value(w, "bad-name", 1, NULL);                       /* undeclared */
	metrics_value(w, "undeclared", 1, NULL);
	metrics_value(w, "ok", 1, "bad-label", "x", NULL);
	metrics_value(w, "ok", 2, "__reserved", "x", NULL);
	metrics_value(w, "ok", 3, "k", "x", "k", "y", NULL);       /* same label twice */
	metrics_value(w, "ok", 4, NULL);                             /* fine */
	text = metrics_writer_finish(w, NULL);
	assert_non_null(text);
	assert_string_equal(text, "# HELP ok fine\n# TYPE ok gauge\nok 4\n");
	free(text);
	metrics_writer_free(NULL);
	metrics_writer_free(metrics_writer_new());
}

static void test_metrics_parse_lag(void **state)
{
	uint64_t v;

	(void)state;
	assert_true(metrics_parse_lag("16777216", &v) && v == 16777216);
	assert_true(metrics_parse_lag("16MB", &v) && v == 16777216);
	assert_true(metrics_parse_lag("16MiB", &v) && v == 16777216);
	assert_true(metrics_parse_lag("512kB", &v) && v == 524288);
	assert_true(metrics_parse_lag("0", &v) && v == 0);
	assert_true(metrics_parse_lag("1TB", &v) && v == 1ull << 40);
	assert_true(metrics_parse_lag("100B", &v) && v == 100);
	assert_false(metrics_parse_lag("", &v));
	assert_false(metrics_parse_lag("-1", &v));
	assert_false(metrics_parse_lag("16 MB", &v));
	assert_false(metrics_parse_lag("16mb", &v));
	assert_false(metrics_parse_lag("1.5MB", &v));
	assert_false(metrics_parse_lag("MB", &v));
	assert_false(metrics_parse_lag("18446744073709551616", &v));
	assert_false(metrics_parse_lag("17179869184GB", &v));      /* overflows */
	assert_false(metrics_parse_lag(NULL, &v));
}

static int check(const char *path, const char *query, const struct metrics_health *h,
		char **body)
{
	struct json_out j;
	int code;

	json_init(&j);
	code = metrics_check(path, query, h, &j);
	*body = json_finish(&j, NULL);
	assert_non_null(*body);
	return code;
}

static int check_code(const char *path, const char *query, const struct metrics_health *h)
{
	char *body;
	int code = check(path, query, h, &body);

	free(body);
	return code;
}

static void test_metrics_checks_on_a_primary(void **state)
{
	struct metrics_health h = { .site = "onprem", .role = "primary", .epoch = 3,
				    .working = true };
	char *body;

	(void)state;
	assert_int_equal(check("/primary", NULL, &h, &body), 200);
	assert_non_null(strstr(body, "\"role\":\"primary\",\"epoch\":3"));
	assert_non_null(strstr(body, "\"reason\":null"));
	free(body);
	assert_int_equal(check_code("/health", NULL, &h), 200);
	assert_int_equal(check("/replica", NULL, &h, &body), 503);
	assert_non_null(strstr(body, "this site is primary, not replica"));
	free(body);
	/* fenced: neither */
	h.role = "fenced";
	assert_int_equal(check_code("/primary", NULL, &h), 503);
	assert_int_equal(check_code("/replica", NULL, &h), 503);
	assert_int_equal(check_code("/health", NULL, &h), 200);
	/* not working: nothing is healthy */
	h.role = "primary";
	h.working = false;
	h.not_working = "the role state could not be written";
	assert_int_equal(check("/health", NULL, &h, &body), 503);
	assert_non_null(strstr(body, "could not be written"));
	free(body);
	assert_int_equal(check_code("/primary", NULL, &h), 503);
}

static void test_metrics_checks_on_a_replica(void **state)
{
	struct metrics_health h = { .site = "cloud", .role = "replica", .epoch = 1, .working = true,
				    .streams_in = 2, .lag_bytes = 1000 };
	char *body;

	(void)state;
	assert_int_equal(check_code("/replica", NULL, &h), 200);
	assert_int_equal(check_code("/primary", NULL, &h), 503);
	assert_int_equal(check_code("/replica", "lag=1000", &h), 200);
	assert_int_equal(check("/replica", "lag=999", &h, &body), 503);
	assert_non_null(strstr(body, "lag of 1000 bytes is over 999"));
	assert_non_null(strstr(body, "\"max_lag_bytes\":999"));
	free(body);
	assert_int_equal(check_code("/replica", "lag=16MB", &h), 200);
	assert_int_equal(check_code("/replica", "other=1&lag=999B", &h), 503);
	assert_int_equal(check_code("/replica", "other=1", &h), 200);
	assert_int_equal(check_code("/replica", "", &h), 200);
	assert_int_equal(check("/replica", "lag=lots", &h, &body), 400);
	assert_non_null(strstr(body, "invalid lag"));
	free(body);
	assert_int_equal(check_code("/replica", "lag=", &h), 400);
	/* a stopped stream makes the replica unhealthy, whatever the threshold */
	h.streams_in_stopped = 1;
	assert_int_equal(check("/replica", "lag=1GB", &h, &body), 503);
	assert_non_null(strstr(body, "1 of the 2 streams this site receives is stopped"));
	free(body);
	assert_int_equal(check_code("/health", NULL, &h), 200);
}

static void test_metrics_unknown_path(void **state)
{
	struct metrics_health h = { .site = "cloud", .role = "replica", .working = true };
	char *body;

	(void)state;
	assert_int_equal(check("/nope", NULL, &h, &body), 404);
	assert_non_null(strstr(body, "not found"));
	free(body);
	assert_int_equal(check_code("/replica/", NULL, &h), 404);
	assert_int_equal(check_code("", NULL, &h), 404);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_metrics_groups_families_in_declared_order),
		cmocka_unit_test(test_metrics_escaping),
		cmocka_unit_test(test_metrics_values),
		cmocka_unit_test(test_metrics_refuses_bad_names),
		cmocka_unit_test(test_metrics_parse_lag),
		cmocka_unit_test(test_metrics_checks_on_a_primary),
		cmocka_unit_test(test_metrics_checks_on_a_replica),
		cmocka_unit_test(test_metrics_unknown_path),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
