/*
 * test_role.c — the site's role and epoch in the state directory: the file's
 * text both ways, an atomic replace that leaves no temporary file, a stale
 * temporary file ignored, corrupt files refused with a message that says
 * what is wrong, and the step-down rule on hearing a higher epoch.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gateway/cluster/role.h"

struct fixture {
	char dir[64];
	char path[128];
	char tmp[128];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "/tmp/strait-role-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/%s", f->dir, ROLE_FILE);
	snprintf(f->tmp, sizeof(f->tmp), "%s/%s", f->dir, ROLE_FILE_TMP);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	unlink(f->path);
	unlink(f->tmp);
	rmdir(f->dir);
	free(f);
	return 0;
}

static void write_file(const char *path, const char *text)
{
	FILE *fp = fopen(path, "w");

	assert_non_null(fp);
	assert_int_equal(fwrite(text, 1, strlen(text), fp), strlen(text));
	assert_int_equal(fclose(fp), 0);
}

static char *read_file(const char *path)
{
	static char buf[8192];
	FILE *fp = fopen(path, "r");
	size_t n;

	assert_non_null(fp);
	n = fread(buf, 1, sizeof(buf) - 1, fp);
	buf[n] = '\0';
	fclose(fp);
	return buf;
}

static struct role_state sample(enum role_kind role, uint64_t epoch)
{
	struct role_state st = { .role = role, .epoch = epoch };

	strcpy(st.cluster, "acme-dr");
	strcpy(st.site, "onprem");
	return st;
}

static void test_role_names(void **state)
{
	enum role_kind r;

	(void)state;
	assert_string_equal(role_name(ROLE_PRIMARY), "primary");
	assert_string_equal(role_name(ROLE_REPLICA), "replica");
	assert_string_equal(role_name(ROLE_FENCED), "fenced");
	assert_true(role_parse_name("fenced", &r) && r == ROLE_FENCED);
	assert_false(role_parse_name("Primary", &r));
	assert_false(role_parse_name("", &r));
}

static void expect_refused(const char *text, const char *message);
#define GOOD_HEAD "format=1\ncluster=acme-dr\nsite=onprem\n"

static void test_role_text_round_trip(void **state)
{
	struct role_state st = sample(ROLE_FENCED, UINT64_MAX), back;
	char text[512], err[256];

	(void)state;
	assert_true(role_state_format(&st, text, sizeof(text)));
	assert_non_null(strstr(text, "\nrole=fenced\nepoch=18446744073709551615\n"));
	assert_true(role_state_parse(text, strlen(text), &back, err, sizeof(err)));
	assert_string_equal(back.cluster, "acme-dr");
	assert_string_equal(back.site, "onprem");
	assert_int_equal(back.role, ROLE_FENCED);
	assert_true(back.epoch == UINT64_MAX);
	/* too small a buffer is refused, not cut */
	assert_false(role_state_format(&st, text, 40));
	/* hand-edited: blanks, comments, any order, no final newline */
	const char *edited = "# edited\n\n  epoch = 12 \nrole=replica\nsite=onprem\n"
			     "cluster=acme-dr\nformat=1";
	assert_true(role_state_parse(edited, strlen(edited), &back, err, sizeof(err)));
	assert_int_equal(back.role, ROLE_REPLICA);
	assert_true(back.epoch == 12);
	assert_string_equal(back.primary, "");
	/* the primary, when known, round-trips; given twice it is refused */
	snprintf(st.primary, sizeof(st.primary), "cloud");
	assert_true(role_state_format(&st, text, sizeof(text)));
	assert_non_null(strstr(text, "\nprimary=cloud\n"));
	assert_true(role_state_parse(text, strlen(text), &back, err, sizeof(err)));
	assert_string_equal(back.primary, "cloud");
	expect_refused(GOOD_HEAD "role=replica\nepoch=2\nprimary=a\nprimary=b\n",
		       "line 7: primary given twice");
	expect_refused(GOOD_HEAD "role=replica\nepoch=2\nprimary=\n",
		       "line 6: primary must have 1 to 63 characters");
}

static void expect_refused(const char *text, const char *message)
{
	struct role_state st;
	char err[256] = "";

	assert_false(role_state_parse(text, strlen(text), &st, err, sizeof(err)));
	if (!strstr(err, message))
		fail_msg("\"%s\" does not say \"%s\"", err, message);
}

static void test_role_corrupt_texts_are_refused(void **state)
{
	char big[ROLE_FILE_MAX + 10];

	(void)state;
	expect_refused(GOOD_HEAD "role=boss\nepoch=1\n", "line 4: unknown role \"boss\"");
	expect_refused(GOOD_HEAD "role=primary\nepoch=0\n", "line 5: invalid epoch \"0\"");
	expect_refused(GOOD_HEAD "role=primary\nepoch=-1\n", "invalid epoch \"-1\"");
	expect_refused(GOOD_HEAD "role=primary\nepoch=18446744073709551616\n", "invalid epoch");
	expect_refused(GOOD_HEAD "role=primary\nepoch=7x\n", "invalid epoch \"7x\"");
	expect_refused(GOOD_HEAD "role=primary\n", "epoch is missing");
	expect_refused(GOOD_HEAD "role=primary\nepoch=1\nepoch=2\n", "line 6: epoch given twice");
	expect_refused(GOOD_HEAD "role=primary\nepoch=1\ncolour=blue\n", "unknown key \"colour\"");
	expect_refused(GOOD_HEAD "role=primary\nepoch 1\n", "line 5: expected key=value");
	expect_refused("format=2\ncluster=a\nsite=b\nrole=primary\nepoch=1\n",
		       "unsupported format \"2\"");
	expect_refused("format=1\ncluster=\nsite=b\nrole=primary\nepoch=1\n",
		       "cluster must have 1 to 63 characters");
	expect_refused("", "format is missing");
	memset(big, '#', sizeof(big));
	big[sizeof(big) - 1] = '\0';
	expect_refused(big, "larger than 4096 bytes");
	{
		struct role_state st;
		char err[256];
		static const char nul[] = "format=1\0cluster=x\n";
		assert_false(role_state_parse(nul, sizeof(nul) - 1, &st, err, sizeof(err)));
		assert_non_null(strstr(err, "NUL byte"));
	}
}

static void test_role_file_write_and_read(void **state)
{
	struct fixture *f = *state;
	struct role_state st = sample(ROLE_PRIMARY, 3), back;
	char err[512];
	struct stat sb;

	assert_int_equal(role_state_read(f->path, &back, err, sizeof(err)), 0);   /* none yet */
	assert_true(role_state_write(f->dir, &st, err, sizeof(err)));
	assert_int_equal(role_state_read(f->path, &back, err, sizeof(err)), 1);
	assert_int_equal(back.role, ROLE_PRIMARY);
	assert_true(back.epoch == 3);
	assert_int_equal(stat(f->path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	/* replaced whole, and no temporary file stays behind */
	st = sample(ROLE_FENCED, 4);
	assert_true(role_state_write(f->dir, &st, err, sizeof(err)));
	assert_int_equal(access(f->tmp, F_OK), -1);
	assert_int_equal(role_state_read(f->path, &back, err, sizeof(err)), 1);
	assert_int_equal(back.role, ROLE_FENCED);
	assert_true(back.epoch == 4);
	assert_non_null(strstr(read_file(f->path), "role=fenced\nepoch=4\n"));
	/* a directory that is not there: an error with the path, no crash */
	assert_false(role_state_write("/nonexistent/strait", &st, err, sizeof(err)));
	assert_non_null(strstr(err, "could not create file \"/nonexistent/strait/role.tmp\""));
}

static void test_role_corrupt_file_is_refused(void **state)
{
	struct fixture *f = *state;
	struct role_state back;
	char err[512];

	write_file(f->path, GOOD_HEAD "role=primary\nepoch=banana\n");
	assert_int_equal(role_state_read(f->path, &back, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "is corrupt: line 5: invalid epoch \"banana\""));
	assert_non_null(strstr(err, f->path));
	/* and role_load() refuses to start from it */
	assert_null(role_load(f->dir, "acme-dr", "onprem", "primary", "onprem"));
	/* the file is left for the operator to look at */
	assert_non_null(strstr(read_file(f->path), "banana"));
}

static void test_role_load_first_start_and_restart(void **state)
{
	struct fixture *f = *state;
	struct role *r;

	r = role_load(f->dir, "acme-dr", "onprem", "primary", "onprem");
	assert_non_null(r);
	assert_int_equal(role_current(r), ROLE_PRIMARY);
	assert_true(role_epoch(r) == 1);
	assert_true(role_persisted(r));
	assert_non_null(strstr(read_file(f->path),
			       "site=onprem\nrole=primary\nepoch=1\nprimary=onprem\n"));
	assert_string_equal(role_primary(r), "onprem");
	assert_true(role_set(r, ROLE_REPLICA, 5, "cloud", "test"));
	assert_string_equal(role_primary(r), "cloud");
	/* the epoch never goes back */
	assert_false(role_set(r, ROLE_PRIMARY, 4, "onprem", "test"));
	assert_int_equal(role_current(r), ROLE_REPLICA);
	role_free(r);

	/* a restart reads what was persisted, not the config's role */
	r = role_load(f->dir, "acme-dr", "onprem", "primary", "onprem");
	assert_non_null(r);
	assert_int_equal(role_current(r), ROLE_REPLICA);
	assert_true(role_epoch(r) == 5);
	assert_string_equal(role_primary(r), "cloud");
	/* not knowing the primary is kept too */
	assert_true(role_set(r, ROLE_REPLICA, 5, NULL, "test"));
	assert_string_equal(role_primary(r), "");
	assert_null(strstr(read_file(f->path), "primary="));
	role_free(r);

	/* a state directory of another site or cluster is refused */
	assert_null(role_load(f->dir, "acme-dr", "cloud", "replica", "onprem"));
	assert_null(role_load(f->dir, "other", "onprem", "primary", "onprem"));
}

static void test_role_stale_temporary_file_is_ignored(void **state)
{
	struct fixture *f = *state;
	struct role_state st = sample(ROLE_PRIMARY, 9);
	char err[512];
	struct role *r;

	assert_true(role_state_write(f->dir, &st, err, sizeof(err)));
	/* a crash between write and rename leaves a half-written temporary file */
	write_file(f->tmp, "format=1\ncluster=acme-dr\nsi");
	r = role_load(f->dir, "acme-dr", "onprem", "replica", "cloud");
	assert_non_null(r);
	assert_int_equal(role_current(r), ROLE_PRIMARY);
	assert_true(role_epoch(r) == 9);
	assert_int_equal(access(f->tmp, F_OK), -1);
	role_free(r);
}

static void test_role_steps_down_on_a_higher_epoch(void **state)
{
	struct fixture *f = *state;
	struct role *r = role_load(f->dir, "acme-dr", "onprem", "primary", "onprem");

	assert_non_null(r);
	/* lower or equal epochs change nothing */
	assert_false(role_heard_epoch(r, "cloud", 0));
	assert_false(role_heard_epoch(r, "cloud", 1));
	assert_int_equal(role_current(r), ROLE_PRIMARY);
	/* a higher one: the primary is fenced, the epoch taken, and both persisted */
	assert_true(role_heard_epoch(r, "cloud", 7));
	assert_int_equal(role_current(r), ROLE_FENCED);
	assert_true(role_epoch(r) == 7);
	assert_string_equal(role_primary(r), "");
	assert_true(role_persisted(r));
	assert_non_null(strstr(read_file(f->path), "role=fenced\nepoch=7\n"));
	/* fenced stays fenced at a still higher epoch */
	assert_true(role_heard_epoch(r, "cloud", 8));
	assert_int_equal(role_current(r), ROLE_FENCED);
	role_free(r);

	/* a replica takes the epoch and stays a replica */
	assert_int_equal(unlink(f->path), 0);
	r = role_load(f->dir, "acme-dr", "onprem", "replica", "cloud");
	assert_true(role_heard_epoch(r, "cloud", 3));
	assert_int_equal(role_current(r), ROLE_REPLICA);
	assert_true(role_epoch(r) == 3);
	assert_string_equal(role_primary(r), "cloud");
	role_free(r);
	role_free(NULL);
}

static void test_role_two_primaries_at_one_epoch(void **state)
{
	struct fixture *f = *state;
	struct role *r;

	(void)state;
	assert_true(role_claim_wins("cloud", "onprem"));
	assert_false(role_claim_wins("onprem", "cloud"));
	assert_false(role_claim_wins("onprem", "onprem"));
	r = role_load(f->dir, "acme-dr", "onprem", "primary", "onprem");
	assert_non_null(r);
	assert_true(role_set(r, ROLE_PRIMARY, 4, "onprem", "test"));
	/* a claim at another epoch, or from a name that sorts after ours, changes nothing */
	assert_false(role_heard_primary(r, "cloud", 3));
	assert_false(role_heard_primary(r, "cloud", 5));
	assert_false(role_heard_primary(r, "zeta", 4));
	assert_int_equal(role_current(r), ROLE_PRIMARY);
	/* cloud sorts first: onprem steps down, at the same epoch, and knows who is primary */
	assert_true(role_heard_primary(r, "cloud", 4));
	assert_int_equal(role_current(r), ROLE_FENCED);
	assert_true(role_epoch(r) == 4);
	assert_string_equal(role_primary(r), "cloud");
	assert_non_null(strstr(read_file(f->path), "role=fenced\nepoch=4\nprimary=cloud\n"));
	/* a fenced site hears it again: nothing more */
	assert_false(role_heard_primary(r, "cloud", 4));
	role_free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_role_names),
		cmocka_unit_test(test_role_text_round_trip),
		cmocka_unit_test(test_role_corrupt_texts_are_refused),
		cmocka_unit_test_setup_teardown(test_role_file_write_and_read, setup, teardown),
		cmocka_unit_test_setup_teardown(test_role_corrupt_file_is_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_role_load_first_start_and_restart, setup, teardown),
		cmocka_unit_test_setup_teardown(test_role_stale_temporary_file_is_ignored, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_role_steps_down_on_a_higher_epoch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_role_two_primaries_at_one_epoch, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
