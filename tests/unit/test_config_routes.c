/*
 * test_config_routes.c — where a stream goes: streams[].to as one site (the
 * two-site form) or a list of sites, streams[].via, streams[].retain, every
 * error of their checks at its line, column and key.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "config/config_int.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* Four sites, a the primary; the stream under test follows "streams:". */
static const char header[] =
	"cluster: lab\n"
	"sites:\n"
	"  a:\n"
	"    role: primary\n"
	"    endpoint: a.example.net:51820\n"
	"    tunnel_address: 10.0.0.1/24\n"
	"    public_key: AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n"
	"    database: dbname=app\n"
	"  b:\n"
	"    endpoint: b.example.net:51820\n"
	"    tunnel_address: 10.0.0.2/24\n"
	"    public_key: AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=\n"
	"    database: dbname=app\n"
	"  c:\n"
	"    endpoint: c.example.net:51820\n"
	"    tunnel_address: 10.0.0.3/24\n"
	"    public_key: AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=\n"
	"    database: dbname=app\n"
	"  d:\n"
	"    endpoint: d.example.net:51820\n"
	"    tunnel_address: 10.0.0.4/24\n"
	"    public_key: BAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQ=\n"
	"    database: dbname=app\n"
	"tls:\n"
	"  ca: /etc/strait/tls/ca.crt\n"
	"  cert: /etc/strait/tls/site.crt\n"
	"  key: /etc/strait/tls/site.key\n"
	"streams:\n"
	"  - name: app\n"
	"    from: a\n"
	"    publication: app\n";

/* The file's line of line n (1-based) of the route text after the header. */
static int route_line(int n)
{
	int lines = 0;

	for (const char *p = header; *p; p++)
		lines += *p == '\n';
	return lines + n;
}

/* header + route, loaded. */
static struct strait_config *load(const char *route, struct config_diags *diags)
{
	char text[4096];
	int n = snprintf(text, sizeof(text), "%s%s", header, route);

	assert_true(n > 0 && (size_t)n < sizeof(text));
	return config_load_buffer("routes.yaml", text, (size_t)n, diags);
}

static char *diags_text(const struct config_diags *diags)
{
	char *text = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&text, &len);

	assert_non_null(mem);
	config_diags_print(mem, diags);
	assert_int_equal(fclose(mem), 0);
	return text;
}

/* route loads. */
static struct strait_config *good(const char *route)
{
	struct config_diags diags = { 0 };
	struct strait_config *cfg = load(route, &diags);
	char *text = diags_text(&diags);

	if (!cfg || diags.count > 0)
		fail_msg("must load:\n%s%s", route, text);
	free(text);
	config_diags_free(&diags);
	return cfg;
}

struct want {
	const char *route;
	int line;             /* of the route text, 1-based */
	int column;
	const char *key;
	const char *message;
};

static void expect_diag(const struct config_diag *d, const struct want *w)
{
	if (d->line != route_line(w->line) || d->column != w->column ||
	    strcmp(d->key ? d->key : "", w->key) != 0 || strcmp(d->message, w->message) != 0)
		fail_msg("%s\nwant %d:%d: %s: %s\ngot  %d:%d: %s: %s", w->route, route_line(w->line),
				w->column, w->key, w->message, d->line, d->column,
				d->key ? d->key : "", d->message);
}

/* route is refused with exactly the one error w. */
static void refused(const struct want *w)
{
	struct config_diags diags = { 0 };
	struct strait_config *cfg = load(w->route, &diags);
	char *text = diags_text(&diags);

	if (cfg || diags.count != 1)
		fail_msg("want exactly one error for:\n%s%s", w->route, text);
	free(text);
	expect_diag(&diags.items[0], w);
	config_diags_free(&diags);
}

static int site(const struct strait_config *cfg, const char *name)
{
	int i = config_site_index(cfg, name);

	assert_true(i >= 0);
	return i;
}

/* The two-site form: one site as a scalar, as this version runs it. */
static void test_to_scalar(void **state)
{
	struct strait_config *cfg = good("    to: b\n");
	const struct config_stream *st = &cfg->streams[0];

	(void)state;
	assert_int_equal(st->n_to, 1);
	assert_int_equal(st->to[0], site(cfg, "b"));
	assert_int_equal(config_stream_to(st), site(cfg, "b"));
	assert_true(st->via[0] == CONFIG_SITE_NONE);
	assert_int_equal(st->retain, 3600000);
	config_free(cfg);
}

static char *print_text(const struct strait_config *cfg)
{
	char *text = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&text, &len);

	assert_non_null(mem);
	config_print(mem, cfg);
	assert_int_equal(fclose(mem), 0);
	return text;
}

/* cfg prints with want in it, and the print loads back and prints the same. */
static void prints(const struct strait_config *cfg, const char *want)
{
	struct config_diags diags = { 0 };
	char *printed = print_text(cfg), *again_text;
	struct strait_config *again;

	if (!strstr(printed, want))
		fail_msg("print lacks \"%s\":\n%s", want, printed);
	again = config_load_buffer("printed.yaml", printed, strlen(printed), &diags);
	assert_non_null(again);
	again_text = print_text(again);
	assert_string_equal(printed, again_text);
	free(again_text);
	free(printed);
	config_free(again);
	config_diags_free(&diags);
}

static void test_to_list(void **state)
{
	static const char *const lists[] = {
		"    to: [b, c, d]\n",
		"    to:\n      - b\n      - c\n      - d\n",
	};
	struct strait_config *cfg;

	(void)state;
	for (size_t i = 0; i < N(lists); i++) {
		cfg = good(lists[i]);
		assert_int_equal(cfg->streams[0].n_to, 3);
		assert_int_equal(cfg->streams[0].to[0], site(cfg, "b"));
		assert_int_equal(cfg->streams[0].to[1], site(cfg, "c"));
		assert_int_equal(cfg->streams[0].to[2], site(cfg, "d"));
		for (size_t k = 0; k < 3; k++)
			assert_true(cfg->streams[0].via[k] == CONFIG_SITE_NONE);
		prints(cfg, "    to: [b, c, d]\n    via: {}\n");
		config_free(cfg);
	}
	/* A list of one site is the two-site form and runs; it prints as a scalar. */
	cfg = good("    to: [c]\n");
	assert_int_equal(cfg->streams[0].n_to, 1);
	assert_int_equal(config_stream_to(&cfg->streams[0]), site(cfg, "c"));
	prints(cfg, "    to: c\n    via: {}\n    retain: 1h\n");
	config_free(cfg);
}

static void test_via(void **state)
{
	struct strait_config *cfg;
	const struct config_stream *st;

	(void)state;
	cfg = good("    to: [b, c, d]\n    via: { d: b, c: b }\n");
	st = &cfg->streams[0];
	assert_true(st->via[0] == CONFIG_SITE_NONE);
	assert_int_equal(st->via[1], site(cfg, "b"));
	assert_int_equal(st->via[2], site(cfg, "b"));
	/* printed in to's order */
	prints(cfg, "    to: [b, c, d]\n    via: {c: b, d: b}\n");
	config_free(cfg);

	cfg = good("    to: [b, c]\n    via:\n      c: b\n");
	assert_int_equal(cfg->streams[0].via[1], site(cfg, "b"));
	config_free(cfg);

	/* Empty: every destination direct, and this version runs it. */
	cfg = good("    to: b\n    via: {}\n");
	assert_true(cfg->streams[0].via[0] == CONFIG_SITE_NONE);
	config_free(cfg);
	cfg = good("    to: b\n    via:\n");
	assert_true(cfg->streams[0].via[0] == CONFIG_SITE_NONE);
	config_free(cfg);
}

static void test_retain(void **state)
{
	static const struct {
		const char *text;
		config_msec want;
	} cases[] = {
		{ "    to: b\n    retain: 0s\n", 0 },
		{ "    to: b\n    retain: 0\n", 0 },
		{ "    to: b\n    retain: 90m\n", 5400000 },
		{ "    to: b\n    retain: 2d\n", 172800000 },
	};
	static const struct want bad[] = {
		{ "    to: b\n    retain: 10\n", 2, 13, "streams[0].retain",
		  "invalid duration \"10\" (use a number with ms, s, m, h or d)" },
		{ "    to: b\n    retain: [1h]\n", 2, 13, "streams[0].retain",
		  "expected a duration, found a sequence" },
	};

	(void)state;
	for (size_t i = 0; i < N(cases); i++) {
		struct strait_config *cfg = good(cases[i].text);

		assert_true(cfg->streams[0].retain == cases[i].want);
		config_free(cfg);
	}
	for (size_t i = 0; i < N(bad); i++)
		refused(&bad[i]);
}

/* Every check of to and via, each alone, where it points. */
static void test_route_errors(void **state)
{
	static const struct want cases[] = {
		{ "    to: []\n", 1, 9, "streams[0].to",
		  "at least one destination is needed (a site, or a list of sites)" },
		{ "    to:\n", 1, 8, "streams[0].to", "a value is missing" },
		{ "    to: { b: c }\n", 1, 9, "streams[0].to",
		  "expected a site name or a list of site names, found a mapping" },
		{ "    to: [b, [c]]\n", 1, 13, "streams[0].to[1]",
		  "expected a site name, found a sequence" },
		{ "    to: [b, c, b]\n", 1, 16, "streams[0].to[2]",
		  "site \"b\" is already a destination of the stream (to[0])" },
		{ "    to: a\n", 1, 9, "streams[0].to", "stream goes from site \"a\" to itself" },
		{ "    to: [b, a]\n", 1, 13, "streams[0].to[1]",
		  "stream goes from site \"a\" to itself" },
		{ "    to:\n      - b\n      - a\n", 3, 9, "streams[0].to[1]",
		  "stream goes from site \"a\" to itself" },
		{ "    to: xyz\n", 1, 9, "streams[0].to", "unknown site \"xyz\"" },
		{ "    to: [b, cc]\n", 1, 13, "streams[0].to[1]",
		  "unknown site \"cc\" (did you mean \"c\"?)" },
		{ "    to: [b, c]\n    via: [b]\n", 2, 10, "streams[0].via",
		  "expected a mapping of destination: relay, found a sequence" },
		{ "    to: [b, c]\n    via: { d: b }\n", 2, 12, "streams[0].via.d",
		  "site \"d\" is not a destination of the stream (via maps a destination in to "
		  "onto the site that relays it)" },
		{ "    to: [b, c]\n    via: { xyz: b }\n", 2, 12, "streams[0].via.xyz",
		  "unknown site \"xyz\"" },
		{ "    to: [b, c]\n    via: { c: xyz }\n", 2, 15, "streams[0].via.c",
		  "unknown site \"xyz\"" },
		{ "    to: [b, c]\n    via: { c: }\n", 2, 15, "streams[0].via.c",
		  "a value is missing" },
		{ "    to: [b, c]\n    via: { c: c }\n", 2, 15, "streams[0].via.c",
		  "destination \"c\" is relayed through itself (leave it out of via for a direct copy)" },
		{ "    to: [b, c]\n    via: { c: a }\n", 2, 15, "streams[0].via.c",
		  "relay \"a\" is the site the stream comes from (leave \"c\" out of via for a "
		  "direct copy)" },
		{ "    to: [b, c]\n    via: { c: d }\n", 2, 15, "streams[0].via.c",
		  "relay \"d\" is not a destination of the stream (a relay passes on what it "
		  "applies: add it to to)" },
		{ "    to: [b, c, d]\n    via:\n      c: b\n      d: c\n", 4, 10, "streams[0].via.d",
		  "relay \"c\" is itself relayed, through \"b\" (relays do not chain: a relay gets "
		  "the stream direct from the source)" },
		/* a mistake in to is one message: via's keys are not judged against it */
		{ "    to: [b, xyz]\n    via: { c: b }\n", 1, 13, "streams[0].to[1]",
		  "unknown site \"xyz\"" },
	};

	(void)state;
	for (size_t i = 0; i < N(cases); i++)
		refused(&cases[i]);
}

/* Several errors of one stream come out together, in the file's order. */
static void test_route_errors_at_once(void **state)
{
	static const struct want wants[] = {
		{ NULL, 1, 13, "streams[0].to[1]", "stream goes from site \"a\" to itself" },
		{ NULL, 1, 16, "streams[0].to[2]", "unknown site \"xyz\"" },
		{ NULL, 1, 21, "streams[0].to[3]",
		  "site \"b\" is already a destination of the stream (to[0])" },
	};
	struct config_diags diags = { 0 };

	(void)state;
	assert_null(load("    to: [b, a, xyz, b]\n", &diags));
	assert_int_equal(diags.count, N(wants));
	for (size_t i = 0; i < N(wants); i++) {
		struct want w = wants[i];

		w.route = "    to: [b, a, xyz, b]\n";
		expect_diag(&diags.items[i], &w);
	}
	config_diags_free(&diags);
}

/* Fan-out and relays load; a relay's contract errors are reported at their key. */
static void test_fan_out_and_relays_load(void **state)
{
	static const char *const routes[] = {
		"    to: [b, c]\n",
		"    to:\n      - b\n      - c\n      - d\n",
		"    to: [b, c]\n    via: { c: b }\n",
	};
	struct config_diags diags = { 0 };
	struct strait_config *cfg;

	(void)state;
	for (size_t i = 0; i < N(routes); i++) {
		cfg = good(routes[i]);
		assert_true(cfg->streams[0].n_to >= 2);
		config_free(cfg);
	}
	cfg = good(routes[2]);
	for (size_t i = 0; i < cfg->streams[0].n_to; i++) {
		if (strcmp(cfg->sites[cfg->streams[0].to[i]].name, "c") == 0)
			assert_string_equal(cfg->sites[cfg->streams[0].via[i]].name, "b");
		else
			assert_int_equal(cfg->streams[0].via[i], CONFIG_SITE_NONE);
	}
	config_free(cfg);
	assert_null(load("    to: [b, c]\n    via: { c: c }\n", &diags));
	assert_int_equal(diags.count, 1);
	config_diags_free(&diags);
}

/* Whether a reload changes where the streams go. */
static void test_routes_equal(void **state)
{
	struct strait_config *one = good("    to: b\n"), *same = good("    to: [b]\n"),
			     *two = good("    to: [b, c]\n"),
			     *two_again = good("    to: [c, b]\n"),
			     *other = good("    to: [b, d]\n"),
			     *more = good("    to: b\n  - name: rev\n    from: a\n    to: c\n"
					  "    publication: app\n");

	(void)state;
	assert_true(config_routes_equal(one, same));
	assert_true(config_routes_equal(two, two_again));
	assert_false(config_routes_equal(one, two));
	assert_false(config_routes_equal(two, other));
	assert_false(config_routes_equal(one, more));
	assert_false(config_routes_equal(more, one));
	config_free(one);
	config_free(same);
	config_free(two);
	config_free(two_again);
	config_free(other);
	config_free(more);
}

/* Stream names stay unique whatever the streams' destinations. */
static void test_duplicate_stream_name(void **state)
{
	static const struct want w = {
		"    to: [b, c]\n  - name: app\n    from: a\n    to: d\n    publication: app\n",
		2, 11, "streams[1].name", "stream name \"app\" is already used by streams[0] (line 29)",
	};

	(void)state;
	refused(&w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_to_scalar),
		cmocka_unit_test(test_to_list),
		cmocka_unit_test(test_via),
		cmocka_unit_test(test_retain),
		cmocka_unit_test(test_route_errors),
		cmocka_unit_test(test_route_errors_at_once),
		cmocka_unit_test(test_fan_out_and_relays_load),
		cmocka_unit_test(test_duplicate_stream_name),
		cmocka_unit_test(test_routes_equal),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
