/*
 * test_status_text.c — the compact `straitctl status` and `schedule`: the
 * units a person reads (KiB, s, m), and the exact tables made of a status
 * document with a peer down, a tunnel without a handshake, a stream syncing
 * under a schedule rule with warnings and a halted sink; a document with
 * members missing still renders, with "-".
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json_value.h"
#include "gateway/daemon/status_text.h"

static const char status_doc[] =
		"{\"cluster\":\"acme-dr\",\"site\":\"onprem\",\"role\":\"primary\",\"epoch\":3,\"version\":\"0.1.0\",\"uptime_seconds\":200,"
		" \"config\":{\"last_reload_error\":null},"
		" \"sites\":[{\"name\":\"cloud\",\"role\":\"replica\",\"epoch\":3,\"self\":false},"
		"          {\"name\":\"edge\",\"role\":null,\"epoch\":null,\"self\":false},"
		"          {\"name\":\"onprem\",\"role\":\"primary\",\"epoch\":3,\"self\":true}],"
		" \"replication\":["
		"  {\"stream\":\"app\",\"role\":\"source\",\"peer\":\"cloud\",\"link_up\":true,"
		"   \"spool\":{\"bytes\":3670016,\"full\":false},"
		"   \"schedule\":{\"mode\":\"live\",\"held\":false,\"rate_bytes_per_sec\":2097152,\"unlimited\":false,\"rule\":0,"
		"               \"why\":\"rule 1: mon-fri 08:00-18:00 at 2MiB/s\",\"next_change\":\"2026-03-02T18:00:00-0500\","
		"               \"sync_now_until\":null,\"sync_now_until_drained\":false},"
		"   \"warnings\":[{\"level\":\"warning\",\"kind\":\"slot\",\"text\":\"slot retains 80% of max_slot_wal_keep_size\"}],"
		"   \"slot\":{\"invalidation_reason\":null},"
		"   \"publication\":{\"added\":[\"public.a\",\"public.b\"],\"removed\":[]},"
		"   \"initial_sync\":{\"state\":\"copying\",\"tables_total\":2000,\"tables_to_copy\":1900,\"tables_copied\":20,\"last_error\":null},"
		"   \"last_error\":null},"
		"  {\"stream\":\"rev\",\"role\":\"sink\",\"peer\":\"edge\",\"link_up\":false,\"halted\":true,"
		"   \"apply\":{\"last_error\":\"duplicate key value violates unique constraint\"},\"last_error\":null}],"
		" \"lag\":[{\"stream\":\"app\",\"role\":\"source\",\"peer\":\"cloud\",\"state\":\"syncing\",\"lag_bytes\":1300000,\"lag_seconds\":75.2},"
		"        {\"stream\":\"rev\",\"role\":\"sink\",\"peer\":\"edge\",\"state\":\"error\",\"lag_bytes\":0,\"lag_seconds\":0}],"
		" \"relay\":{\"listen_error\":null,\"peers\":[{\"site\":\"cloud\",\"state\":\"up\",\"last_error\":null},"
		"          {\"site\":\"edge\",\"state\":\"backoff\",\"last_error\":\"connection refused\"}]},"
		" \"tunnel\":{\"backend\":\"kernel\",\"peers\":[{\"site\":\"cloud\",\"handshake_age_seconds\":12},"
		"          {\"site\":\"edge\",\"handshake_age_seconds\":null,\"problem\":\"no handshake in 3 m: check site \\\"edge\\\"'s public_key\"}]}}";

static struct json_value *parse(const char *text)
{
	char err[128] = "";
	struct json_value *v = json_parse(text, err, sizeof(err));

	if (!v)
		fail_msg("%s", err);
	return v;
}

static void test_bytes(void **state)
{
	static const struct { double in; const char *out; } cases[] = {
		{ 0, "0 B" }, { 1023, "1023 B" }, { 1024, "1.0 KiB" }, { 1300000, "1.2 MiB" },
		{ 10188, "9.9 KiB" }, { 10200, "10 KiB" }, { 10737418240.0, "10 GiB" },
		{ 5e18, "4441 PiB" }, { -5, "0 B" },
	};
	char buf[32];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		status_text_bytes(buf, sizeof(buf), cases[i].in);
		assert_string_equal(buf, cases[i].out);
	}
}

static void test_duration(void **state)
{
	static const struct { double in; const char *out; } cases[] = {
		{ 0, "0.0 s" }, { 1.234, "1.2 s" }, { 9.96, "10 s" }, { 75.2, "75 s" },
		{ 180, "3 m" }, { 5940, "99 m" }, { 9000, "2.5 h" }, { 3 * 86400, "3.0 d" },
		{ -1, "0.0 s" },
	};
	char buf[32];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		status_text_duration(buf, sizeof(buf), cases[i].in);
		assert_string_equal(buf, cases[i].out);
	}
}

static void test_rate(void **state)
{
	struct json_value *v = parse("[{\"held\":true,\"unlimited\":false,\"rate_bytes_per_sec\":null},"
				     "{\"held\":false,\"unlimited\":true},"
				     "{\"held\":false,\"unlimited\":false,\"rate_bytes_per_sec\":524288},"
				     "{}]");
	char buf[32];

	(void)state;
	status_text_rate(buf, sizeof(buf), json_at(v, 0));
	assert_string_equal(buf, "held");
	status_text_rate(buf, sizeof(buf), json_at(v, 1));
	assert_string_equal(buf, "unlimited");
	status_text_rate(buf, sizeof(buf), json_at(v, 2));
	assert_string_equal(buf, "512 KiB/s");
	status_text_rate(buf, sizeof(buf), json_at(v, 3));
	assert_string_equal(buf, "-");
	status_text_rate(buf, sizeof(buf), NULL);
	assert_string_equal(buf, "-");
	json_value_free(v);
}

static void test_status_tables(void **state)
{
	struct json_value *v = parse(status_doc);
	char *text = status_text_status(v);

	(void)state;
	assert_non_null(text);
	assert_string_equal(text,
		"site onprem, role primary, epoch 3 (cluster acme-dr, straitd 0.1.0, up 3 m)\n"
		"\n"
		"SITE    ROLE     EPOCH  LINK  HANDSHAKE  HEALTH\n"
		"cloud   replica      3  up     12 s ago  ok\n"
		"edge    unknown      -  down      never  unreachable (backoff): connection refused; tunnel: no handshake in 3 m: check site \"edge\"'s public_key\n"
		"onprem  primary      3  self          -  ok\n"
		"\n"
		"STREAM  PEER      STATE        LAG  LAG_TIME  RATE                  SPOOL  WARNINGS\n"
		"app     -> cloud  syncing  1.2 MiB      75 s  2.0 MiB/s (rule 1)  3.5 MiB  slot retains 80% of max_slot_wal_keep_size; 2 tables joining: earlier rows not copied; sync 120/2000 tables\n"
		"rev     <- edge   halted       0 B     0.0 s  -                         -  apply: duplicate key value violates unique constraint\n");
	free(text);
	json_value_free(v);
}

/* A stream sent to two sites: a row per destination, each with its own lag. */
static void test_status_fan_out(void **state)
{
	struct json_value *v = parse(
		"{\"site\":\"aws\",\"role\":\"primary\",\"epoch\":2,"
		" \"sites\":[{\"name\":\"aws\",\"role\":\"primary\",\"epoch\":2,\"self\":true}],"
		" \"replication\":[{\"stream\":\"app\",\"role\":\"source\",\"peer\":\"azure\"},"
		"                 {\"stream\":\"app\",\"role\":\"source\",\"peer\":\"onprem\"},"
		"                 {\"stream\":\"app\",\"role\":\"source\",\"peer\":\"edge\","
		"                  \"relayed_by\":\"azure\"}],"
		" \"lag\":[{\"stream\":\"app\",\"role\":\"source\",\"peer\":\"onprem\",\"state\":\"streaming\","
		"          \"lag_bytes\":0,\"lag_seconds\":0},"
		"        {\"stream\":\"app\",\"role\":\"source\",\"peer\":\"azure\",\"state\":\"starting\","
		"          \"lag_bytes\":2048,\"lag_seconds\":12}]}");
	char *text = status_text_status(v);

	(void)state;
	assert_non_null(text);
	assert_non_null(strstr(text, "app     -> azure   starting   2.0 KiB      12 s"));
	assert_non_null(strstr(text, "app     -> onprem  streaming      0 B     0.0 s"));
	/* a destination fed through another one (via): no lag of its own here */
	assert_non_null(strstr(text, "app     -> edge    relayed          -         -"));
	free(text);
	json_value_free(v);
}

static void test_cluster_table(void **state)
{
	struct json_value *v = parse(
		"{\"cluster\":\"acme-dr\",\"asked_at\":\"azure\",\"sites\":["
		" {\"site\":\"aws\",\"reachable\":true,\"error\":null,\"status\":{\"role\":\"primary\",\"epoch\":4,"
		"  \"lag\":[{\"stream\":\"app\",\"role\":\"source\",\"peer\":\"azure\",\"state\":\"streaming\","
		"            \"lag_bytes\":0,\"lag_seconds\":0,\"applied_lsn\":\"0/3000060\"},"
		"           {\"stream\":\"app\",\"role\":\"source\",\"peer\":\"onprem\",\"state\":\"streaming\","
		"            \"lag_bytes\":4096,\"lag_seconds\":1.5,\"applied_lsn\":\"0/2FFF000\"}]}},"
		" {\"site\":\"azure\",\"reachable\":true,\"error\":null,\"status\":{\"role\":\"replica\",\"epoch\":4,"
		"  \"lag\":[{\"stream\":\"app\",\"role\":\"sink\",\"peer\":\"aws\",\"state\":\"streaming\","
		"            \"lag_bytes\":0,\"lag_seconds\":0,\"applied_lsn\":\"0/3000060\"}]}},"
		" {\"site\":\"onprem\",\"reachable\":false,"
		"  \"error\":\"site onprem is not reachable (the relay link is down)\",\"status\":null}]}");
	char *text = status_text_cluster(v);

	(void)state;
	assert_non_null(text);
	assert_string_equal(text,
		"cluster acme-dr, as seen from site azure\n"
		"\n"
		"SITE    ROLE     EPOCH  STREAM  PEER       STATE          LAG  LAG_TIME  APPLIED_LSN  NOTES\n"
		"aws     primary      4  app     -> azure   streaming      0 B     0.0 s  0/3000060    -\n"
		"                        app     -> onprem  streaming  4.0 KiB     1.5 s  0/2FFF000\n"
		"azure   replica      4  app     <- aws     streaming      0 B     0.0 s  0/3000060    this site\n"
		"onprem  -            -  -       -          -                -         -  -            "
		"unreachable: site onprem is not reachable (the relay link is down)\n");
	free(text);
	json_value_free(v);
	/* nothing to show: still a header */
	v = parse("{}");
	text = status_text_cluster(v);
	assert_non_null(text);
	assert_string_equal(text, "cluster -, as seen from site -\n\n"
			    "SITE  ROLE  EPOCH  STREAM  PEER  STATE  LAG  LAG_TIME  APPLIED_LSN  NOTES\n");
	free(text);
	json_value_free(v);
}

static void test_status_of_a_sparse_document(void **state)
{
	struct json_value *v = parse("{\"site\":\"x\",\"sites\":[{\"name\":\"x\",\"self\":true}],"
				     "\"replication\":[{\"stream\":\"s\",\"role\":\"source\"}]}");
	char *text = status_text_status(v);

	(void)state;
	assert_non_null(text);
	assert_string_equal(text,
		"site x, role -, epoch 0 (cluster -, straitd -, up 0.0 s)\n"
		"\n"
		"SITE  ROLE     EPOCH  LINK  HANDSHAKE  HEALTH\n"
		"x     unknown      -  self          -  ok\n"
		"\n"
		"STREAM  PEER  STATE  LAG  LAG_TIME  RATE  SPOOL  WARNINGS\n"
		"s       -> -  -        -         -  -       0 B  -\n");
	free(text);
	json_value_free(v);
	v = parse("{}");
	text = status_text_status(v);
	assert_non_null(text);
	assert_non_null(strstr(text, "\nno sites\n\nno streams at this site\n"));
	free(text);
	json_value_free(v);
}

static void test_status_shows_the_witness(void **state)
{
	struct json_value *v = parse(
		"{\"site\":\"aws\",\"witness\":{\"mode\":\"automatic\",\"reachable\":true,"
		"\"members\":[{\"name\":\"w1\",\"leader\":false},{\"name\":\"w2\",\"leader\":true}],"
		"\"primary\":\"aws\",\"primary_epoch\":3,\"lease_age_s\":1.25,\"lease_ttl_s\":10}}");
	char *text = status_text_status(v);

	(void)state;
	assert_non_null(text);
	assert_non_null(strstr(text, "\nwitness (automatic failover): etcd members w1, w2 (leader); "
				     "reachable\n  primary aws at epoch 3 holds the lease: renewed 1.2 s ago "
				     "(ttl 10 s)\n"));
	free(text);
	json_value_free(v);
	v = parse("{\"witness\":{\"mode\":\"automatic\",\"reachable\":false,\"error\":\"down\","
		  "\"blocked\":true,\"blocked_why\":\"lag over the limits\",\"paused\":true}}");
	text = status_text_status(v);
	assert_non_null(strstr(text, "etcd; not reachable: down\n  no site holds the lease\n  paused"));
	assert_non_null(strstr(text, "this site will not promote itself: lag over the limits\n"));
	free(text);
	json_value_free(v);
	v = parse("{\"witness\":{\"mode\":\"manual\"}}");
	text = status_text_status(v);
	assert_null(strstr(text, "witness"));
	free(text);
	json_value_free(v);
}

static void test_schedule_table(void **state)
{
	struct json_value *v = parse(
		"{\"site\":\"onprem\",\"streams\":["
		"{\"stream\":\"app\",\"to\":\"cloud\",\"schedule\":{\"mode\":\"live\",\"held\":false,"
		"\"rate_bytes_per_sec\":2097152,\"unlimited\":false,\"rule\":0,"
		"\"why\":\"rule 1: mon-fri 08:00-18:00 at 2MiB/s\","
		"\"next_change\":\"2026-03-02T18:00:00-0500\",\"sync_now_until\":null,"
		"\"sync_now_until_drained\":false}},"
		"{\"stream\":\"nightly\",\"to\":\"cloud\",\"schedule\":{\"mode\":\"batch\",\"held\":false,"
		"\"unlimited\":true,\"rule\":-1,\"why\":\"sync-now until 12:30:00\","
		"\"next_change\":\"2026-03-02T12:30:00-0500\","
		"\"sync_now_until\":\"2026-03-02T12:30:00-0500\",\"sync_now_until_drained\":false}}]}");
	char *text = status_text_schedule(v);

	(void)state;
	assert_non_null(text);
	assert_string_equal(text,
		"site onprem\n"
		"STREAM   TO     MODE   RATE       NEXT_CHANGE               RULE\n"
		"app      cloud  live   2.0 MiB/s  2026-03-02T18:00:00-0500  rule 1: mon-fri 08:00-18:00 at 2MiB/s\n"
		"nightly  cloud  batch  unlimited  2026-03-02T12:30:00-0500  sync-now until 12:30:00\n");
	free(text);
	json_value_free(v);
	v = parse("{\"site\":\"cloud\",\"streams\":[]}");
	text = status_text_schedule(v);
	assert_string_equal(text, "site cloud\nno streams sent from this site\n");
	free(text);
	json_value_free(v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bytes),
		cmocka_unit_test(test_duration),
		cmocka_unit_test(test_rate),
		cmocka_unit_test(test_status_tables),
		cmocka_unit_test(test_status_fan_out),
		cmocka_unit_test(test_cluster_table),
		cmocka_unit_test(test_status_of_a_sparse_document),
		cmocka_unit_test(test_schedule_table),
		cmocka_unit_test(test_status_shows_the_witness),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
