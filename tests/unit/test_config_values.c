/*
 * test_config_values.c — the config module's typed value parsers, one by one:
 * good values, bad values, edge cases and overflow, and that every value the
 * formatters print parses back to the same value.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "config/config.h"
#include "config/config_int.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static void test_size(void **state)
{
	static const struct {
		const char *text;
		config_size want;
	} good[] = {
		{ "0", 0 },
		{ "1000", 1000 },
		{ "512B", 512 },
		{ "1kB", 1000 },
		{ "1KiB", 1024 },
		{ "16MiB", 16u << 20 },
		{ "16 MiB", 16u << 20 },
		{ "3MB", 3000000 },
		{ "10GiB", UINT64_C(10) << 30 },
		{ "2GB", UINT64_C(2000000000) },
		{ "1TB", UINT64_C(1000000000000) },
		{ "1TiB", UINT64_C(1) << 40 },
		{ "16777215TiB", UINT64_C(16777215) << 40 },
		{ "18446744073709551615", UINT64_MAX },
		{ "007MiB", UINT64_C(7) << 20 },
	};
	static const char *const bad[] = {
		"", "MiB", "-1MiB", "+1MiB", "1.5GiB", "12XB", "16mib", "16MIB", "16kb", "16K",
		"16MiB ", " 16MiB", "16  MiB", "0x10", "1e6", "16777216TiB",
		"18446744073709551616", "99999999999999999999999", "16 ", "1,000",
	};
	config_size v;

	(void)state;
	for (size_t i = 0; i < N(good); i++) {
		assert_true(config_parse_size(good[i].text, &v));
		assert_true(v == good[i].want);
	}
	for (size_t i = 0; i < N(bad); i++) {
		v = 42;
		assert_false(config_parse_size(bad[i], &v));
		assert_true(v == 42);
	}
	assert_false(config_parse_size(NULL, &v));
}

static void test_size_format(void **state)
{
	static const struct {
		config_size v;
		const char *want;
	} cases[] = {
		{ 0, "0B" },
		{ 1, "1B" },
		{ 1000, "1kB" },
		{ 1024, "1KiB" },
		{ 1536, "1536B" },
		{ 2000000, "2MB" },
		{ UINT64_C(10) << 30, "10GiB" },
		{ UINT64_C(1) << 40, "1TiB" },
		{ 1024000, "1000KiB" },
		{ UINT64_MAX, "18446744073709551615B" },
	};
	char buf[CONFIG_VALUE_BUF];
	config_size back;

	(void)state;
	for (size_t i = 0; i < N(cases); i++) {
		config_format_size(buf, sizeof(buf), cases[i].v);
		assert_string_equal(buf, cases[i].want);
		assert_true(config_parse_size(buf, &back));
		assert_true(back == cases[i].v);
	}
}

static void test_duration(void **state)
{
	static const struct {
		const char *text;
		config_msec want;
	} good[] = {
		{ "0", 0 },
		{ "0s", 0 },
		{ "250ms", 250 },
		{ "30s", 30000 },
		{ "5m", 300000 },
		{ "5min", 300000 },
		{ "1h", 3600000 },
		{ "1d", 86400000 },
		{ "25 s", 25000 },
		{ "213503982334d", UINT64_C(213503982334) * 86400000 },
	};
	static const char *const bad[] = {
		"", "30", "1.5s", "s", "-1s", "1w", "1 h ", "1H", "1S", "1sec", "30s ",
		"213503982335d", "99999999999999999999ms", "1h30m", "0x1s",
	};
	config_msec v;

	(void)state;
	for (size_t i = 0; i < N(good); i++) {
		assert_true(config_parse_duration(good[i].text, &v));
		assert_true(v == good[i].want);
	}
	for (size_t i = 0; i < N(bad); i++)
		assert_false(config_parse_duration(bad[i], &v));
	assert_false(config_parse_duration(NULL, &v));
}

static void test_duration_format(void **state)
{
	static const struct {
		config_msec v;
		const char *want;
	} cases[] = {
		{ 0, "0s" },
		{ 1, "1ms" },
		{ 1500, "1500ms" },
		{ 90000, "90s" },
		{ 60000, "1m" },
		{ 7200000, "2h" },
		{ 86400000, "1d" },
		{ 90000000, "25h" },
	};
	char buf[CONFIG_VALUE_BUF];
	config_msec back;

	(void)state;
	for (size_t i = 0; i < N(cases); i++) {
		config_format_duration(buf, sizeof(buf), cases[i].v);
		assert_string_equal(buf, cases[i].want);
		assert_true(config_parse_duration(buf, &back));
		assert_true(back == cases[i].v);
	}
}

static void test_rate(void **state)
{
	static const char *const bad[] = {
		"", "2MiB", "/s", "fast", "-1/s", "2MiB/m", "Unlimited", "2MiB/s ", "2MiB /s",
		"unlimited/s", "18446744073709551616/s",
		("00000000000000000000000000000000000000000"
		 "000000000000000000000000000000000000000000/s"),
	};
	struct config_rate r;
	char buf[CONFIG_VALUE_BUF];

	(void)state;
	assert_true(config_parse_rate("unlimited", &r));
	assert_true(r.unlimited);
	assert_true(config_parse_rate("0", &r));
	assert_false(r.unlimited);
	assert_true(r.bytes_per_sec == 0);
	assert_true(config_parse_rate("2MiB/s", &r));
	assert_false(r.unlimited);
	assert_true(r.bytes_per_sec == 2u << 20);
	assert_true(config_parse_rate("100kB/s", &r));
	assert_true(r.bytes_per_sec == 100000);
	assert_true(config_parse_rate("500/s", &r));
	assert_true(r.bytes_per_sec == 500);
	assert_true(config_parse_rate("0/s", &r));
	assert_true(r.bytes_per_sec == 0 && !r.unlimited);
	for (size_t i = 0; i < N(bad); i++)
		assert_false(config_parse_rate(bad[i], &r));
	assert_false(config_parse_rate(NULL, &r));

	r = (struct config_rate){ .unlimited = false, .bytes_per_sec = 2u << 20 };
	config_format_rate(buf, sizeof(buf), &r);
	assert_string_equal(buf, "2MiB/s");
	r = (struct config_rate){ .unlimited = false, .bytes_per_sec = 0 };
	config_format_rate(buf, sizeof(buf), &r);
	assert_string_equal(buf, "0");
	r = (struct config_rate){ .unlimited = true };
	config_format_rate(buf, sizeof(buf), &r);
	assert_string_equal(buf, "unlimited");
}

#define DAY(d) (1u << (d))

static void test_days(void **state)
{
	static const struct {
		const char *text;
		unsigned want;
		const char *canon;
	} good[] = {
		{ "mon-fri", 0x3e, "mon-fri" },
		{ "sat,sun", DAY(6) | DAY(0), "sat,sun" },
		{ "mon,wed-fri", DAY(1) | DAY(3) | DAY(4) | DAY(5), "mon,wed-fri" },
		{ "fri-mon", DAY(5) | DAY(6) | DAY(0) | DAY(1), "mon,fri-sun" },
		{ "sun-sat", 0x7f, "mon-sun" },
		{ "mon-sun", 0x7f, "mon-sun" },
		{ "mon-mon", DAY(1), "mon" },
		{ "MON-Fri", 0x3e, "mon-fri" },
		{ "mon - fri , sun", 0x3e | DAY(0), "mon-fri,sun" },
		{ "mon,wed", DAY(1) | DAY(3), "mon,wed" },
		{ "sun", DAY(0), "sun" },
		{ "tue,tue", DAY(2), "tue" },
		{ "sat-tue", DAY(6) | DAY(0) | DAY(1) | DAY(2), "mon,tue,sat,sun" },
	};
	static const char *const bad[] = {
		"", "mon,", ",mon", "mon-", "-mon", "monday", "mon-xyz", "mon--fri", "mon-fri-sat",
		"mo", "mon,,tue", " ", "mon;tue", "1-5",
	};
	config_days d;
	char buf[CONFIG_VALUE_BUF];

	(void)state;
	for (size_t i = 0; i < N(good); i++) {
		assert_true(config_parse_days(good[i].text, &d));
		assert_int_equal(d, good[i].want);
		config_format_days(buf, sizeof(buf), d);
		assert_string_equal(buf, good[i].canon);
		assert_true(config_parse_days(buf, &d));
		assert_int_equal(d, good[i].want);
	}
	for (size_t i = 0; i < N(bad); i++)
		assert_false(config_parse_days(bad[i], &d));
	assert_false(config_parse_days(NULL, &d));
	/* Every mask prints as something that parses back to it. */
	for (unsigned m = 1; m <= 0x7f; m++) {
		config_format_days(buf, sizeof(buf), (config_days)m);
		assert_true(config_parse_days(buf, &d));
		assert_int_equal(d, m);
	}
}

static void test_window(void **state)
{
	static const struct {
		const char *text;
		unsigned start, end;
		const char *canon;
	} good[] = {
		{ "08:00-18:00", 480, 1080, "08:00-18:00" },
		{ "22:00-06:00", 1320, 360, "22:00-06:00" },
		{ "00:00-24:00", 0, 1440, "00:00-24:00" },
		{ "8:00-18:30", 480, 1110, "08:00-18:30" },
		{ "23:59-00:00", 1439, 0, "23:59-00:00" },
		{ "22:00-24:00", 1320, 1440, "22:00-24:00" },
		{ "01:00 - 05:00", 60, 300, "01:00-05:00" },
	};
	static const char *const bad[] = {
		"", "25:00-01:00", "08:00-08:00", "00:00-00:00", "24:00-01:00", "08:60-09:00",
		"08:00-24:01", "0800-1800", "08:00", "08:00-", "-08:00", "08:0-09:00", "008:00-09:00",
		"08:00-18:00-20:00", "8-18", "08:00--09:00", "08:00-9", "ab:cd-ef:gh", "24:00-24:00",
	};
	struct config_window w;
	char buf[CONFIG_VALUE_BUF];
	const char *why;

	(void)state;
	for (size_t i = 0; i < N(good); i++) {
		assert_true(config_parse_window(good[i].text, &w));
		assert_int_equal(w.start_min, good[i].start);
		assert_int_equal(w.end_min, good[i].end);
		config_format_window(buf, sizeof(buf), &w);
		assert_string_equal(buf, good[i].canon);
	}
	for (size_t i = 0; i < N(bad); i++)
		assert_false(config_parse_window(bad[i], &w));
	assert_false(config_parse_window(NULL, &w));
	assert_false(config_parse_window_why("08:00-08:00", &w, &why));
	assert_non_null(why);
	assert_false(config_parse_window_why("25:00-08:00", &w, &why));
	assert_null(why);
}

static void test_window_contains(void **state)
{
	struct config_window day = { 480, 1080 }, night = { 1320, 360 }, all = { 0, 1440 };
	struct config_window late = { 1320, 1440 };

	(void)state;
	assert_false(config_window_contains(&day, 479));
	assert_true(config_window_contains(&day, 480));
	assert_true(config_window_contains(&day, 1079));
	assert_false(config_window_contains(&day, 1080));
	assert_true(config_window_contains(&night, 1439));
	assert_true(config_window_contains(&night, 0));
	assert_true(config_window_contains(&night, 359));
	assert_false(config_window_contains(&night, 360));
	assert_true(config_window_contains(&night, 1320));
	assert_false(config_window_contains(&night, 1319));
	for (unsigned m = 0; m < 1440; m++)
		assert_true(config_window_contains(&all, m));
	assert_true(config_window_contains(&late, 1439));
	assert_false(config_window_contains(&late, 0));
}

static void test_cidr(void **state)
{
	static const char *const good[] = {
		"10.77.0.1/24", "fd00::1/64", "0.0.0.0/0", "::/0", "10.0.0.1/32", "::1/128",
		"192.168.1.254/31",
	};
	static const char *const bad[] = {
		"", "10.77.0.1", "10.77.0.300/24", "10.0.0.1/33", "fd00::1/129", "10.0.0.1/",
		"10.0.0.1/-1", "10.0.0.1/ 24", "/24", "10.0.0.1/0024", "fe80::1%eth0/64",
		"10.0.0/24", "host/24", "10.0.0.1/24/8", "10.0.0.1/+4", " 10.0.0.1/24",
		"aaaa:bbbb:cccc:dddd:eeee:ffff:1111:2222:3333/64",
	};
	struct config_cidr c;
	char buf[CONFIG_VALUE_BUF];

	(void)state;
	for (size_t i = 0; i < N(good); i++) {
		assert_true(config_parse_cidr(good[i], &c));
		config_format_cidr(buf, sizeof(buf), &c);
		assert_string_equal(buf, good[i]);
	}
	assert_true(config_parse_cidr("10.77.0.1/24", &c));
	assert_int_equal(c.family, AF_INET);
	assert_int_equal(c.prefix, 24);
	assert_int_equal(c.addr[0], 10);
	assert_int_equal(c.addr[3], 1);
	assert_true(config_parse_cidr("fd00:0::0:1/64", &c));
	assert_int_equal(c.family, AF_INET6);
	config_format_cidr(buf, sizeof(buf), &c);
	assert_string_equal(buf, "fd00::1/64");
	for (size_t i = 0; i < N(bad); i++)
		assert_false(config_parse_cidr(bad[i], &c));
	assert_false(config_parse_cidr(NULL, &c));
}

static void test_endpoint(void **state)
{
	static const struct {
		const char *text;
		const char *host;
		unsigned port;
	} good[] = {
		{ "gw.example.net:51820", "gw.example.net", 51820 },
		{ "[fd00::1]:51820", "fd00::1", 51820 },
		{ "10.0.0.1:1", "10.0.0.1", 1 },
		{ "host:65535", "host", 65535 },
		{ "localhost:80", "localhost", 80 },
		{ "example.com.:443", "example.com.", 443 },
		{ "a-b.c-d:22", "a-b.c-d", 22 },
		{ "1host:22", "1host", 22 },
	};
	static const char *const bad[] = {
		"", "host", "host:", "host:0", "host:65536", "fd00::1:51820", "[fd00::1]",
		"[fd00::1]51820", "[nothex]:1", ":80", "bad_host:80", "-a.com:80", "a-.com:80",
		"a..b:80", "10.0.0.300:80", "host:80x", "host:+80", "host:080800", "[]:80",
		"[10.0.0.1]:80", ".:80", ".a:80", "host :80", "ho st:80", "[fd00::1]:",
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.com:80",
	};
	struct config_endpoint ep;

	(void)state;
	for (size_t i = 0; i < N(good); i++) {
		assert_true(config_parse_endpoint(good[i].text, &ep));
		assert_string_equal(ep.host, good[i].host);
		assert_int_equal(ep.port, good[i].port);
		free(ep.host);
	}
	for (size_t i = 0; i < N(bad); i++) {
		ep.host = NULL;
		assert_false(config_parse_endpoint(bad[i], &ep));
		assert_null(ep.host);
	}
	assert_false(config_parse_endpoint(NULL, &ep));
}

static void test_wg_key(void **state)
{
	static const char *const bad[] = {
		"", "AAAA",
		"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",       /* no padding */
		"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB=",      /* not canonical */
		"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA*=",      /* not base64 */
		"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",  /* 36 bytes */
		"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==",      /* 31 bytes */
		" nSQgIY4vfwmkFUjgApcF08AhAvvgJKK8Ahnah52LXxE=",
		"nSQgIY4vfwmkFUjgApcF08AhAvvgJKK8Ahnah52LXxE= ",
		"nSQgIY4vfwmkFUjgApcF08AhAvvgJKK8Ahnah52LXx==",
		"=SQgIY4vfwmkFUjgApcF08AhAvvgJKK8Ahnah52LXxE=",
	};
	uint8_t key[WG_KEY_LEN], zero[WG_KEY_LEN] = { 0 };

	(void)state;
	assert_true(config_parse_wg_key("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", key));
	assert_memory_equal(key, zero, WG_KEY_LEN);
	assert_true(config_parse_wg_key("YWRkIHRoZSBzaXRlJ3MgcmVhbCBwdWJsaWMga2V5IGg=", key));
	assert_memory_equal(key, "add the site's real public key h", WG_KEY_LEN);
	assert_true(config_parse_wg_key("nSQgIY4vfwmkFUjgApcF08AhAvvgJKK8Ahnah52LXxE=", key));
	assert_true(config_parse_wg_key("//////////////////////////////////////////8=", key));
	assert_int_equal(key[0], 0xff);
	assert_int_equal(key[31], 0xff);
	for (size_t i = 0; i < N(bad); i++)
		assert_false(config_parse_wg_key(bad[i], key));
	assert_false(config_parse_wg_key(NULL, key));

	assert_int_equal(config_base64_len("AAAA"), 3);
	assert_int_equal(config_base64_len("AAA="), 2);
	assert_int_equal(config_base64_len("AA=="), 1);
	assert_int_equal(config_base64_len("A==="), -1);
	assert_int_equal(config_base64_len("AAA"), -1);
	assert_int_equal(config_base64_len("A=AA"), -1);
	assert_int_equal(config_base64_len(""), -1);
}

static void test_names(void **state)
{
	(void)state;
	assert_true(config_valid_name("onprem"));
	assert_true(config_valid_name("a"));
	assert_true(config_valid_name("eu-west_1"));
	assert_true(config_valid_name("a23456789012345678901234567890123456789012345678901234567890123"));
	assert_false(config_valid_name("a234567890123456789012345678901234567890123456789012345678901234"));
	assert_false(config_valid_name(""));
	assert_false(config_valid_name("Cloud"));
	assert_false(config_valid_name("1site"));
	assert_false(config_valid_name("-site"));
	assert_false(config_valid_name("site.a"));
	assert_false(config_valid_name("site a"));

	assert_true(config_valid_pgname("strait_app"));
	assert_true(config_valid_pgname("_p$1"));
	assert_false(config_valid_pgname("App"));
	assert_false(config_valid_pgname("1p"));
	assert_false(config_valid_pgname("$p"));
	assert_false(config_valid_pgname("p-q"));
	assert_false(config_valid_pgname(""));

	assert_true(config_valid_table("orders"));
	assert_true(config_valid_table("public.orders"));
	assert_true(config_valid_table("\"My Schema\".\"Order\"\"s\""));
	assert_true(config_valid_table("s.\"T\""));
	assert_false(config_valid_table(""));
	assert_false(config_valid_table("public."));
	assert_false(config_valid_table(".orders"));
	assert_false(config_valid_table("a.b.c"));
	assert_false(config_valid_table("Public.orders"));
	assert_false(config_valid_table("\"unterminated"));
	assert_false(config_valid_table("\"\""));
	assert_false(config_valid_table("bad name"));
	assert_false(config_valid_table("\"a\"x"));

	assert_true(config_valid_ifname("strait0"));
	assert_true(config_valid_ifname("wg-Site.1_a"));
	assert_false(config_valid_ifname(""));
	assert_false(config_valid_ifname("a234567890123456"));
	assert_false(config_valid_ifname("a/b"));
	assert_false(config_valid_ifname("a b"));
	assert_false(config_valid_ifname(".."));
}

static void test_suggest(void **state)
{
	static const char *const keys[] = {
		"backend", "interface", "listen_port", "mtu", "persistent_keepalive",
	};
	char longword[200];

	(void)state;
	assert_string_equal(config_suggest("listen_prot", keys, N(keys)), "listen_port");
	assert_string_equal(config_suggest("listenport", keys, N(keys)), "listen_port");
	assert_string_equal(config_suggest("mut", keys, N(keys)), "mtu");
	assert_string_equal(config_suggest("backends", keys, N(keys)), "backend");
	assert_string_equal(config_suggest("persistent_keepalives", keys, N(keys)),
			"persistent_keepalive");
	assert_null(config_suggest("xyz", keys, N(keys)));
	assert_null(config_suggest("port", keys, N(keys)));
	assert_null(config_suggest("", keys, N(keys)));
	memset(longword, 'a', sizeof(longword) - 1);
	longword[sizeof(longword) - 1] = '\0';
	assert_null(config_suggest(longword, keys, N(keys)));
}

static void test_conninfo(void **state)
{
	static const char *const leaky[] = {
		"password=hunter2 bad",
		"password=hunter2 hunter3",
		"postgresql://u:hunter2@h/db?hunter3=x",
		"postgresql://u:hunter2@h:hunter3/db",
		"postgresql://u:hunter%zz@h/db",
		"host=x password='hunter2",
		"hunter2",
	};
	char err[CONFIG_ERR_MAX], *out = NULL;
	size_t len = 0;
	FILE *mem;

	(void)state;
	assert_true(config_conninfo_check("host=/var/run/postgresql dbname=app user=strait",
				err, sizeof(err)));
	assert_true(config_conninfo_check("postgresql://strait@db.example.net:5432/app?sslmode=require",
				err, sizeof(err)));
	assert_false(config_conninfo_check("host=x bogus=1", err, sizeof(err)));
	assert_string_equal(err, "invalid connection string: invalid connection option \"...\"");
	assert_false(config_conninfo_check("host=x dbname", err, sizeof(err)));
	assert_non_null(strstr(err, "missing \"=\" after"));
	for (size_t i = 0; i < N(leaky); i++) {
		config_conninfo_check(leaky[i], err, sizeof(err));
		assert_null(strstr(err, "hunter"));
	}

	mem = open_memstream(&out, &len);
	assert_non_null(mem);
	config_conninfo_print(mem, "host=db password=hunter2 dbname=app");
	fputc('\n', mem);
	config_conninfo_print(mem, "postgresql://u:hunter2@db/app");
	fputc('\n', mem);
	config_conninfo_print(mem, "host=db dbname=app");
	fclose(mem);
	assert_null(strstr(out, "hunter2"));
	assert_non_null(strstr(out, "password=********"));
	assert_non_null(strstr(out, "\"host=db dbname=app\""));
	free(out);
}

static void test_print_scalar(void **state)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
		{ "strait0", "strait0" },
		{ "/var/lib/strait", "/var/lib/strait" },
		{ "", "\"\"" },
		{ "yes", "\"yes\"" },
		{ "Off", "\"Off\"" },
		{ "a b", "\"a b\"" },
		{ "08:00-18:00", "\"08:00-18:00\"" },
		{ "gw.example.net:51820", "gw.example.net:51820" },
		{ "[fd00::1]:51820", "\"[fd00::1]:51820\"" },
		{ "say \"hi\"\\", "\"say \\\"hi\\\"\\\\\"" },
		{ "tab\there", "\"tab\\there\"" },
		{ "-x", "\"-x\"" },
		{ "a:", "\"a:\"" },
		{ "#c", "\"#c\"" },
		{ "\x01", "\"\\x01\"" },
	};

	(void)state;
	for (size_t i = 0; i < N(cases); i++) {
		char *out = NULL;
		size_t len = 0;
		FILE *mem = open_memstream(&out, &len);

		assert_non_null(mem);
		config_print_scalar(mem, cases[i].in);
		fclose(mem);
		assert_string_equal(out, cases[i].out);
		free(out);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_size),
		cmocka_unit_test(test_size_format),
		cmocka_unit_test(test_duration),
		cmocka_unit_test(test_duration_format),
		cmocka_unit_test(test_rate),
		cmocka_unit_test(test_days),
		cmocka_unit_test(test_window),
		cmocka_unit_test(test_window_contains),
		cmocka_unit_test(test_cidr),
		cmocka_unit_test(test_endpoint),
		cmocka_unit_test(test_wg_key),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_suggest),
		cmocka_unit_test(test_conninfo),
		cmocka_unit_test(test_print_scalar),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
