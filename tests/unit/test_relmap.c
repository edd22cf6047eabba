/*
 * test_relmap.c — mapping source relations onto target tables by column
 * name: reordered and extra target columns, the documented mismatch messages
 * (missing table, missing columns, generated target columns), key handling, and
 * reading the catalog query's result (built with libpq's PGresult API).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "replicator/relmap.h"

static struct pgoutput_rel_attr orders_attrs[] = {
	{ .name = "id", .type_oid = 23, .typmod = -1, .key = true },
	{ .name = "amount", .type_oid = 1700, .typmod = -1 },
	{ .name = "note", .type_oid = 25, .typmod = -1 },
	{ .name = "created_at", .type_oid = 1184, .typmod = -1 },
};

static const struct pgoutput_rel orders = {
	.oid = 16400, .nspname = "public", .relname = "orders", .replident = 'd',
	.natts = 4, .attrs = orders_attrs,
};

static void test_reordered_and_extra_columns(void **state)
{
	struct relmap_target *t = relmap_target_new("public", "orders", 'r');
	struct relmap *m = NULL;
	char *err = NULL;

	(void)state;
	assert_non_null(t);
	assert_true(relmap_target_add(t, "created_at", 1184, true, false, false));
	assert_true(relmap_target_add(t, "extra", 25, true, false, false));
	assert_true(relmap_target_add(t, "note", 25, true, false, false));
	assert_true(relmap_target_add(t, "amount", 20, true, false, false));  /* int8 there */
	assert_true(relmap_target_add(t, "id", 23, true, true, false));
	assert_true(relmap_build(&orders, t, &m, &err));
	assert_null(err);
	assert_non_null(m);

	assert_int_equal(m->natts, 4);
	assert_int_equal(m->atts[0].target, 4);
	assert_int_equal(m->atts[1].target, 3);
	assert_int_equal(m->atts[2].target, 2);
	assert_int_equal(m->atts[3].target, 0);
	/* Parameters take the target's types. */
	assert_int_equal(m->atts[1].type_oid, 20);
	assert_string_equal(m->atts[3].quoted, "\"created_at\"");
	assert_string_equal(m->atts[3].name, "created_at");
	assert_true(m->atts[0].src_key);
	assert_true(m->atts[0].tgt_key);
	assert_false(m->atts[1].src_key);
	assert_int_equal(m->n_src_key, 1);
	assert_int_equal(m->n_tgt_key, 1);
	assert_true(m->tgt_key_usable);
	assert_false(m->partitioned);
	assert_int_equal(m->replident, 'd');
	assert_string_equal(m->display, "public.orders");
	assert_string_equal(m->qualified, "\"public\".\"orders\"");
	assert_int_equal(relmap_find(m, "note"), 2);
	assert_int_equal(relmap_find(m, "extra"), -1);
	relmap_free(m);
	relmap_target_free(t);
}

static void test_missing_columns_message(void **state)
{
	struct relmap_target *t = relmap_target_new("public", "orders", 'r');
	struct relmap *m = (struct relmap *)1;
	char *err = NULL;

	(void)state;
	assert_true(relmap_target_add(t, "amount", 1700, true, false, false));
	assert_true(relmap_target_add(t, "id", 23, true, true, false));
	assert_false(relmap_build(&orders, t, &m, &err));
	assert_null(m);
	assert_string_equal(err, "target table \"public.orders\" lacks columns \"note\", "
		"\"created_at\" that the source publishes");
	free(err);

	assert_true(relmap_target_add(t, "note", 25, true, false, false));
	assert_false(relmap_build(&orders, t, &m, &err));
	assert_string_equal(err, "target table \"public.orders\" lacks column \"created_at\" "
		"that the source publishes");
	free(err);

	/* A generated target column is mapped, flagged: the target computes it. */
	assert_true(relmap_target_add(t, "created_at", 1184, true, false, true));
	assert_true(relmap_build(&orders, t, &m, &err));
	assert_null(err);
	assert_true(m->atts[relmap_find(m, "created_at")].generated);
	assert_false(m->atts[relmap_find(m, "note")].generated);
	relmap_free(m);
	relmap_target_free(t);

	t = relmap_target_new("public", "orders", 'r');
	assert_true(relmap_target_add(t, "id", 23, true, true, false));
	assert_true(relmap_target_add(t, "note", 25, true, false, true));
	assert_true(relmap_target_add(t, "amount", 25, true, false, true));
	assert_false(relmap_build(&orders, t, &m, &err));
	assert_string_equal(err, "target table \"public.orders\" lacks column \"created_at\" "
		"that the source publishes");
	free(err);
	relmap_target_free(t);
}

static void test_missing_table_message(void **state)
{
	struct relmap *m = NULL;
	char *err = NULL;

	(void)state;
	assert_false(relmap_build(&orders, NULL, &m, &err));
	assert_null(m);
	assert_string_equal(err, "target table \"public.orders\" does not exist");
	free(err);
}

static void test_target_key(void **state)
{
	struct pgoutput_rel_attr attrs[] = {
		{ .name = "a", .type_oid = 23, .typmod = -1 },
		{ .name = "b", .type_oid = 23, .typmod = -1 },
	};
	struct pgoutput_rel src = {
		.oid = 1, .nspname = "s", .relname = "t", .replident = 'f', .natts = 2, .attrs = attrs,
	};
	struct relmap_target *t = relmap_target_new("s", "t", 'p');
	struct relmap *m = NULL;
	char *err = NULL;

	(void)state;
	/* The target's key includes a column the source does not publish. */
	assert_true(relmap_target_add(t, "a", 23, true, true, false));
	assert_true(relmap_target_add(t, "b", 23, true, false, false));
	assert_true(relmap_target_add(t, "serial", 20, true, true, false));
	assert_true(relmap_build(&src, t, &m, &err));
	assert_int_equal(m->n_tgt_key, 2);
	assert_false(m->tgt_key_usable);
	assert_true(m->partitioned);
	assert_int_equal(m->n_src_key, 0);
	relmap_free(m);
	relmap_target_free(t);
}

/* A PGresult shaped like the catalog query's. */
static PGresult *catalog_result(const char *const (*rows)[RELMAP_F_COUNT], int nrows)
{
	static const char *names[RELMAP_F_COUNT] = {
		"relkind", "attname", "atttypid", "generated", "key", "eqable",
	};
	PGresAttDesc desc[RELMAP_F_COUNT];
	PGresult *r = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);

	assert_non_null(r);
	memset(desc, 0, sizeof(desc));
	for (int i = 0; i < RELMAP_F_COUNT; i++) {
		desc[i].name = (char *)names[i];
		desc[i].typid = 25;
		desc[i].typlen = -1;
		desc[i].atttypmod = -1;
	}
	assert_true(PQsetResultAttrs(r, RELMAP_F_COUNT, desc));
	for (int i = 0; i < nrows; i++) {
		for (int f = 0; f < RELMAP_F_COUNT; f++) {
			const char *v = rows[i][f];

			assert_true(PQsetvalue(r, i, f, (char *)v, v ? (int)strlen(v) : -1));
		}
	}
	return r;
}

static void test_target_from_result(void **state)
{
	static const char *const rows[][RELMAP_F_COUNT] = {
		{ "r", "id", "23", "f", "t", "t" },
		{ "r", "doc", "114", "f", "f", "f" },
		{ "r", "total", "1700", "t", "f", "t" },
	};
	static const char *const none[][RELMAP_F_COUNT] = {
		{ "p", NULL, NULL, NULL, NULL, NULL },
	};
	static const char *const bad[][RELMAP_F_COUNT] = {
		{ "r", "id", "int4", "f", "t", "t" },
	};
	struct relmap_target *t = NULL;
	char *err = NULL;
	PGresult *r;

	(void)state;
	r = catalog_result(rows, 3);
	assert_true(relmap_target_from_result("public", "t", r, &t, &err));
	assert_null(err);
	assert_non_null(t);
	assert_int_equal(t->relkind, 'r');
	assert_int_equal(t->ncols, 3);
	assert_string_equal(t->cols[1].name, "doc");
	assert_int_equal(t->cols[1].type_oid, 114);
	assert_false(t->cols[1].eqable);
	assert_true(t->cols[0].key);
	assert_true(t->cols[2].generated);
	relmap_target_free(t);
	PQclear(r);

	/* No rows: the table does not exist (not an error). */
	r = catalog_result(rows, 0);
	t = (struct relmap_target *)1;
	assert_true(relmap_target_from_result("public", "t", r, &t, &err));
	assert_null(t);
	assert_null(err);
	PQclear(r);

	/* A table without columns. */
	r = catalog_result(none, 1);
	assert_true(relmap_target_from_result("public", "t", r, &t, &err));
	assert_non_null(t);
	assert_int_equal(t->ncols, 0);
	assert_int_equal(t->relkind, 'p');
	relmap_target_free(t);
	PQclear(r);

	r = catalog_result(bad, 1);
	assert_false(relmap_target_from_result("public", "t", r, &t, &err));
	assert_non_null(err);
	assert_non_null(strstr(err, "\"int4\""));
	free(err);
	PQclear(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reordered_and_extra_columns),
		cmocka_unit_test(test_missing_columns_message),
		cmocka_unit_test(test_missing_table_message),
		cmocka_unit_test(test_target_key),
		cmocka_unit_test(test_target_from_result),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
