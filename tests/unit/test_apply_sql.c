/*
 * test_apply_sql.c — the apply engine's statement text: identifier quoting,
 * timestamp literals, shape keys, and the INSERT / UPDATE / DELETE /
 * TRUNCATE statements for every conflict policy and row identity, with their
 * parameter lists.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "replicator/apply_sql.h"
#include "replicator/relmap.h"

/* ---- fixtures: a source relation and a target table ---- */

struct col {
	const char *name;
	uint32_t type;
	bool src_key;
	bool tgt_key;
	bool eqable;
};

/* Maps the columns onto a target holding the same columns in reverse order. */
static struct relmap *make_map(const char *nsp, const char *rel, char replident,
		const struct col *cols, uint16_t n, char relkind)
{
	struct pgoutput_rel src = {
		.oid = 16384, .nspname = (char *)nsp, .relname = (char *)rel,
		.replident = replident, .natts = n,
	};
	struct pgoutput_rel_attr *attrs = calloc(n + 1, sizeof(*attrs));
	struct relmap_target *t = relmap_target_new(nsp, rel, relkind);
	struct relmap *m = NULL;
	char *err = NULL;

	assert_non_null(attrs);
	assert_non_null(t);
	for (uint16_t i = 0; i < n; i++) {
		attrs[i].name = (char *)cols[i].name;
		attrs[i].type_oid = cols[i].type;
		attrs[i].typmod = -1;
		attrs[i].key = cols[i].src_key;
	}
	for (int i = n - 1; i >= 0; i--)
		assert_true(relmap_target_add(t, cols[i].name, cols[i].type, cols[i].eqable,
			cols[i].tgt_key, false));
	src.attrs = attrs;
	assert_true(relmap_build(&src, t, &m, &err));
	assert_null(err);
	relmap_target_free(t);
	free(attrs);
	return m;
}

static const struct col kv_cols[] = {
	{ "id", 23, true, true, true },
	{ "v", 25, false, false, true },
	{ "n", 1700, false, false, true },
};

static char *build(const struct relmap *m, char kind, char ident, enum apply_conflict policy,
		const char *set, const char *where, struct apply_sql_stmt *st)
{
	struct apply_sql_shape s = {
		.kind = kind, .ident = ident, .policy = policy, .set = set, .where = where,
	};
	const char *why = "unset";

	assert_true(apply_sql_build(m, &s, st, &why));
	assert_null(why);
	return st->sql;
}

static void assert_params(const struct apply_sql_stmt *st, const uint16_t *want, int n)
{
	assert_int_equal(st->nparams, n);
	for (int i = 0; i < n; i++)
		assert_int_equal(st->params[i], want[i]);
}

#define OLD APPLY_SQL_PARAM_OLD

/* ---- literals ---- */

static void test_quote_ident(void **state)
{
	struct apply_sql_buf b;
	char *s;

	(void)state;
	apply_sql_buf_init(&b);
	apply_sql_ident(&b, "plain");
	apply_sql_buf_puts(&b, " ");
	apply_sql_ident(&b, "Mixed Case");
	apply_sql_buf_puts(&b, " ");
	apply_sql_ident(&b, "we\"ird\"\"");
	apply_sql_buf_puts(&b, " ");
	apply_sql_ident(&b, "");
	apply_sql_buf_puts(&b, " ");
	apply_sql_qualified(&b, "Sales Data", "t\"1");
	assert_string_equal(apply_sql_buf_cstr(&b),
		"\"plain\" \"Mixed Case\" \"we\"\"ird\"\"\"\"\" \"\" \"Sales Data\".\"t\"\"1\"");
	apply_sql_buf_free(&b);

	s = apply_sql_ident_dup("select");
	assert_string_equal(s, "\"select\"");
	free(s);
	s = apply_sql_ident_dup("\xc3\x9c" "n\xc3\xaf" "code");
	assert_string_equal(s, "\"\xc3\x9c" "n\xc3\xaf" "code\"");
	free(s);
}

static void test_buf_growth_and_take(void **state)
{
	struct apply_sql_buf b;
	char *s;

	(void)state;
	apply_sql_buf_init(&b);
	assert_string_equal(apply_sql_buf_cstr(&b), "");
	for (int i = 0; i < 10000; i++)
		apply_sql_buf_printf(&b, "%d,", i % 10);
	assert_int_equal(b.len, 20000);
	s = apply_sql_buf_take(&b);
	assert_non_null(s);
	assert_int_equal(strlen(s), 20000);
	assert_null(b.data);
	free(s);
	apply_sql_buf_reset(&b);
	apply_sql_buf_free(&b);
}

static void test_time(void **state)
{
	char buf[APPLY_SQL_TIME_LEN];

	(void)state;
	apply_sql_format_time(buf, 0);
	assert_string_equal(buf, "2000-01-01 00:00:00.000000+00");
	apply_sql_format_time(buf, -1);
	assert_string_equal(buf, "1999-12-31 23:59:59.999999+00");
	/* 2024-02-29 12:34:56.789012 UTC */
	apply_sql_format_time(buf, INT64_C(762525296789012));
	assert_string_equal(buf, "2024-02-29 12:34:56.789012+00");
	apply_sql_format_time(buf, INT64_MAX);
	assert_string_equal(buf, "9999-12-31 23:59:59.999999+00");
	apply_sql_format_time(buf, INT64_MIN);
	assert_string_equal(buf, "0001-01-01 00:00:00.000000+00");
}

/* ---- shapes ---- */

static void test_shape_keys(void **state)
{
	struct apply_sql_shape a = {
		.kind = APPLY_SQL_UPDATE, .ident = APPLY_SQL_ID_NEW,
		.policy = APPLY_CONFLICT_ERROR, .set = "vvv", .where = "v--",
	};
	struct apply_sql_shape b = a;
	char ka[APPLY_SQL_KEY_LEN(3)], kb[APPLY_SQL_KEY_LEN(3)];

	(void)state;
	assert_int_equal(APPLY_SQL_KEY_LEN(3), 9);
	apply_sql_shape_key(&a, 3, ka);
	assert_memory_equal(ka, "Un0vvvv--", 9);

	/* An unchanged TOAST column is another shape. */
	b.set = "vv-";
	apply_sql_shape_key(&b, 3, kb);
	assert_memory_not_equal(ka, kb, 9);

	/* So is another policy, or another identity source. */
	b = a;
	b.policy = APPLY_CONFLICT_SOURCE_WINS;
	apply_sql_shape_key(&b, 3, kb);
	assert_memory_equal(kb, "Un1vvvv--", 9);
	b = a;
	b.ident = APPLY_SQL_ID_KEY;
	apply_sql_shape_key(&b, 3, kb);
	assert_memory_not_equal(ka, kb, 9);

	/* An INSERT has no WHERE codes. */
	b = (struct apply_sql_shape){ .kind = APPLY_SQL_INSERT, .set = "vvv" };
	apply_sql_shape_key(&b, 3, kb);
	assert_memory_equal(kb, "I-0vvv---", 9);
}

/* ---- statements ---- */

static void test_insert(void **state)
{
	struct relmap *m = make_map("public", "kv", 'd', kv_cols, 3, 'r');
	struct apply_sql_stmt st;
	const uint16_t p3[] = { 0, 1, 2 };

	(void)state;
	assert_string_equal(build(m, 'I', 0, APPLY_CONFLICT_ERROR, "vvv", NULL, &st),
		"INSERT INTO \"public\".\"kv\" (\"id\", \"v\", \"n\") OVERRIDING SYSTEM VALUE VALUES ($1, $2, $3)");
	assert_params(&st, p3, 3);
	assert_int_equal(st.types[0], 23);
	assert_int_equal(st.types[1], 25);
	assert_int_equal(st.types[2], 1700);
	assert_int_equal(st.outcome, APPLY_SQL_NO_CONFLICT);
	apply_sql_stmt_free(&st);

	assert_string_equal(build(m, 'I', 0, APPLY_CONFLICT_TARGET_WINS, "vvv", NULL, &st),
		"INSERT INTO \"public\".\"kv\" (\"id\", \"v\", \"n\") OVERRIDING SYSTEM VALUE VALUES ($1, $2, $3) "
		"ON CONFLICT (\"id\") DO NOTHING");
	assert_int_equal(st.outcome, APPLY_SQL_ZERO_IS_CONFLICT);
	apply_sql_stmt_free(&st);

	assert_string_equal(build(m, 'I', 0, APPLY_CONFLICT_SOURCE_WINS, "vvv", NULL, &st),
		"WITH i AS (INSERT INTO \"public\".\"kv\" (\"id\", \"v\", \"n\") OVERRIDING SYSTEM VALUE VALUES ($1, $2, $3) "
		"ON CONFLICT (\"id\") DO NOTHING RETURNING 1) "
		"UPDATE \"public\".\"kv\" SET \"v\" = $2, \"n\" = $3 "
		"WHERE \"id\" = $1 AND NOT EXISTS (SELECT 1 FROM i)");
	assert_params(&st, p3, 3);
	assert_int_equal(st.outcome, APPLY_SQL_ONE_IS_CONFLICT);
	apply_sql_stmt_free(&st);
	relmap_free(m);
}

static void test_insert_without_target_key(void **state)
{
	const struct col cols[] = {
		{ "a", 23, false, false, true },
		{ "b", 25, false, false, true },
	};
	struct relmap *m = make_map("public", "log", 'd', cols, 2, 'r');
	struct apply_sql_stmt st;

	(void)state;
	assert_false(m->tgt_key_usable);
	/* No arbiter: source_wins can only insert; target_wins skips any duplicate. */
	assert_string_equal(build(m, 'I', 0, APPLY_CONFLICT_SOURCE_WINS, "vv", NULL, &st),
		"INSERT INTO \"public\".\"log\" (\"a\", \"b\") OVERRIDING SYSTEM VALUE VALUES ($1, $2)");
	assert_int_equal(st.outcome, APPLY_SQL_NO_CONFLICT);
	apply_sql_stmt_free(&st);
	assert_string_equal(build(m, 'I', 0, APPLY_CONFLICT_TARGET_WINS, "vv", NULL, &st),
		"INSERT INTO \"public\".\"log\" (\"a\", \"b\") OVERRIDING SYSTEM VALUE VALUES ($1, $2) ON CONFLICT DO NOTHING");
	apply_sql_stmt_free(&st);
	relmap_free(m);

	/* A table without columns. */
	m = make_map("public", "empty", 'd', cols, 0, 'r');
	assert_string_equal(build(m, 'I', 0, APPLY_CONFLICT_ERROR, "", NULL, &st),
		"INSERT INTO \"public\".\"empty\" DEFAULT VALUES");
	assert_int_equal(st.nparams, 0);
	apply_sql_stmt_free(&st);
	relmap_free(m);
}

static void test_update_by_key(void **state)
{
	struct relmap *m = make_map("public", "kv", 'd', kv_cols, 3, 'r');
	struct apply_sql_stmt st;
	const uint16_t p_new[] = { 0, 1, 2 };
	const uint16_t p_toast[] = { 0, 2 };
	const uint16_t p_old[] = { 0, 1, 2, 0 | OLD };

	(void)state;
	/*
	 * Key unchanged: WHERE reuses the new key's parameter, and SET leaves the
	 * key out (a GENERATED ALWAYS identity key may not be set to itself).
	 */
	assert_string_equal(build(m, 'U', 'n', APPLY_CONFLICT_ERROR, "vvv", "v--", &st),
		"UPDATE \"public\".\"kv\" SET \"v\" = $2, \"n\" = $3 WHERE \"id\" = $1");
	assert_params(&st, p_new, 3);
	assert_int_equal(st.outcome, APPLY_SQL_ZERO_IS_CONFLICT);
	apply_sql_stmt_free(&st);

	/* Unchanged TOAST value: left out of SET. */
	assert_string_equal(build(m, 'U', 'n', APPLY_CONFLICT_ERROR, "v-v", "v--", &st),
		"UPDATE \"public\".\"kv\" SET \"n\" = $2 WHERE \"id\" = $1");
	assert_params(&st, p_toast, 2);
	apply_sql_stmt_free(&st);

	/* Key changed: the old key tuple's value. */
	assert_string_equal(build(m, 'U', 'k', APPLY_CONFLICT_TARGET_WINS, "vvv", "v--", &st),
		"UPDATE \"public\".\"kv\" SET \"id\" = $1, \"v\" = $2, \"n\" = $3 WHERE \"id\" = $4");
	assert_params(&st, p_old, 4);
	assert_int_equal(st.types[3], 23);
	apply_sql_stmt_free(&st);

	/* source_wins: a missing row is inserted. */
	assert_string_equal(build(m, 'U', 'k', APPLY_CONFLICT_SOURCE_WINS, "vv-", "v--", &st),
		"WITH u AS (UPDATE \"public\".\"kv\" SET \"id\" = $1, \"v\" = $2 WHERE \"id\" = $3 "
		"RETURNING 1) INSERT INTO \"public\".\"kv\" (\"id\", \"v\") OVERRIDING SYSTEM VALUE SELECT $1, $2 "
		"WHERE NOT EXISTS (SELECT 1 FROM u)");
	assert_int_equal(st.outcome, APPLY_SQL_ONE_IS_CONFLICT);
	apply_sql_stmt_free(&st);

	/* Only the unchanged key to set: nothing to write, the row must exist. */
	assert_string_equal(build(m, 'U', 'n', APPLY_CONFLICT_ERROR, "v--", "v--", &st),
		"SELECT 1 FROM \"public\".\"kv\" WHERE \"id\" = $1 LIMIT 1");
	apply_sql_stmt_free(&st);

	/* Nothing to set: only whether the row exists matters. */
	assert_string_equal(build(m, 'U', 'n', APPLY_CONFLICT_SOURCE_WINS, "---", "v--", &st),
		"SELECT 1 FROM \"public\".\"kv\" WHERE \"id\" = $1 LIMIT 1");
	assert_int_equal(st.outcome, APPLY_SQL_ZERO_IS_CONFLICT);
	apply_sql_stmt_free(&st);
	relmap_free(m);
}

static void test_update_full_identity(void **state)
{
	const struct col cols[] = {
		{ "a", 23, true, false, true },
		{ "doc", 114, true, false, false },   /* json: no equality */
		{ "b", 25, true, false, true },
	};
	struct relmap *m = make_map("s", "nokey", 'f', cols, 3, 'r');
	struct apply_sql_stmt st;
	const uint16_t p[] = { 0, 1, 2, 0 | OLD, 1 | OLD };

	(void)state;
	assert_string_equal(build(m, 'U', 'f', APPLY_CONFLICT_ERROR, "vvv", "vvn", &st),
		"UPDATE \"s\".\"nokey\" SET \"a\" = $1, \"doc\" = $2, \"b\" = $3 WHERE ctid = "
		"(SELECT ctid FROM \"s\".\"nokey\" WHERE \"a\" = $4 AND "
		"\"doc\"::pg_catalog.text = $5::pg_catalog.text AND \"b\" IS NULL LIMIT 1)");
	assert_params(&st, p, 5);
	assert_int_equal(st.types[4], 114);
	apply_sql_stmt_free(&st);

	assert_string_equal(build(m, 'D', 'f', APPLY_CONFLICT_ERROR, NULL, "n-v", &st),
		"DELETE FROM \"s\".\"nokey\" WHERE ctid = (SELECT ctid FROM \"s\".\"nokey\" "
		"WHERE \"a\" IS NULL AND \"b\" = $1 LIMIT 1)");
	assert_int_equal(st.nparams, 1);
	assert_int_equal(st.params[0], 2 | OLD);
	assert_int_equal(st.outcome, APPLY_SQL_ZERO_IS_CONFLICT);
	apply_sql_stmt_free(&st);
	relmap_free(m);

	/* Partitioned: ctid alone is not unique. */
	m = make_map("s", "parted", 'f', cols, 3, 'p');
	assert_string_equal(build(m, 'D', 'f', APPLY_CONFLICT_TARGET_WINS, NULL, "v--", &st),
		"DELETE FROM \"s\".\"parted\" WHERE (tableoid, ctid) = (SELECT tableoid, ctid "
		"FROM \"s\".\"parted\" WHERE \"a\" = $1 LIMIT 1)");
	apply_sql_stmt_free(&st);
	relmap_free(m);
}

static void test_delete_and_errors(void **state)
{
	struct relmap *m = make_map("public", "kv", 'd', kv_cols, 3, 'r');
	struct apply_sql_shape s = {
		.kind = APPLY_SQL_DELETE, .ident = APPLY_SQL_ID_KEY,
		.policy = APPLY_CONFLICT_ERROR, .where = "---",
	};
	struct apply_sql_stmt st;
	const char *why = NULL;

	(void)state;
	assert_string_equal(build(m, 'D', 'k', APPLY_CONFLICT_SOURCE_WINS, NULL, "v--", &st),
		"DELETE FROM \"public\".\"kv\" WHERE \"id\" = $1");
	assert_int_equal(st.params[0], 0 | OLD);
	apply_sql_stmt_free(&st);

	/* No identity columns: refused with a reason, nothing allocated. */
	assert_false(apply_sql_build(m, &s, &st, &why));
	assert_non_null(why);
	assert_null(st.sql);
	s.where = NULL;
	assert_false(apply_sql_build(m, &s, &st, &why));
	assert_non_null(why);
	relmap_free(m);
}

static void test_quoting_in_statements(void **state)
{
	const struct col cols[] = {
		{ "Id", 23, true, true, true },
		{ "Col A", 25, false, false, true },
		{ "we\"ird", 23, false, false, true },
	};
	struct relmap *m = make_map("Sales Data", "Mixed Case", 'd', cols, 3, 'r');
	struct apply_sql_stmt st;

	(void)state;
	assert_string_equal(m->qualified, "\"Sales Data\".\"Mixed Case\"");
	assert_string_equal(m->display, "Sales Data.Mixed Case");
	assert_string_equal(build(m, 'U', 'n', APPLY_CONFLICT_ERROR, "vvv", "v--", &st),
		"UPDATE \"Sales Data\".\"Mixed Case\" SET \"Col A\" = $2, "
		"\"we\"\"ird\" = $3 WHERE \"Id\" = $1");
	apply_sql_stmt_free(&st);
	relmap_free(m);
}

static void test_truncate(void **state)
{
	struct relmap *a = make_map("public", "a", 'd', kv_cols, 3, 'r');
	struct relmap *b = make_map("Other", "B b", 'd', kv_cols, 3, 'p');
	const struct relmap *both[] = { a, b };
	struct apply_sql_buf sql;

	(void)state;
	apply_sql_buf_init(&sql);
	apply_sql_truncate(&sql, both, 2, 0);
	assert_string_equal(apply_sql_buf_cstr(&sql),
		"TRUNCATE ONLY \"public\".\"a\", \"Other\".\"B b\"");
	apply_sql_buf_reset(&sql);
	apply_sql_truncate(&sql, both, 1,
		PGOUTPUT_TRUNCATE_CASCADE | PGOUTPUT_TRUNCATE_RESTART_SEQS);
	assert_string_equal(apply_sql_buf_cstr(&sql),
		"TRUNCATE ONLY \"public\".\"a\" RESTART IDENTITY CASCADE");
	apply_sql_buf_free(&sql);
	relmap_free(a);
	relmap_free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_quote_ident),
		cmocka_unit_test(test_buf_growth_and_take),
		cmocka_unit_test(test_time),
		cmocka_unit_test(test_shape_keys),
		cmocka_unit_test(test_insert),
		cmocka_unit_test(test_insert_without_target_key),
		cmocka_unit_test(test_update_by_key),
		cmocka_unit_test(test_update_full_identity),
		cmocka_unit_test(test_delete_and_errors),
		cmocka_unit_test(test_quoting_in_statements),
		cmocka_unit_test(test_truncate),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
