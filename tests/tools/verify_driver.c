/*
 * verify_driver.c — compares one table between two databases with
 * replicator/verify.h, for the integration tests.
 *
 *   verify_driver --source DSN --target DSN --schema NAME --table NAME
 *                 [--key COLUMN]... [--chunk-rows N] [--leaf-rows N]
 *                 [--max-report N] [--text]
 *
 * Each connection gets BEGIN ISOLATION LEVEL REPEATABLE READ first, as the
 * caller of verify_table() must arrange. The result goes to stdout as JSON
 * (or, with --text, the human report followed by the outline form). On
 * failure, "error <message>" on stderr. Exit status: 0 equal, 3 different,
 * 1 failed, 2 usage.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "common/json.h"
#include "replicator/verify.h"

#define DRIVER_MAX_KEYS 16

static PGconn *driver_connect(const char *dsn, char *err, size_t errlen)
{
	PGconn *conn = PQconnectdb(dsn);
	PGresult *res;

	if (PQstatus(conn) != CONNECTION_OK) {
		snprintf(err, errlen, "could not connect: %s", PQerrorMessage(conn));
		err[strcspn(err, "\n")] = '\0';
		PQfinish(conn);
		return NULL;
	}
	res = PQexec(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		snprintf(err, errlen, "could not begin: %s", PQresultErrorMessage(res));
		err[strcspn(err, "\n")] = '\0';
		PQclear(res);
		PQfinish(conn);
		return NULL;
	}
	PQclear(res);
	return conn;
}

static int driver_usage(void)
{
	fprintf(stderr, "usage: verify_driver --source DSN --target DSN --schema NAME --table NAME "
		"[--key COLUMN]... [--chunk-rows N] [--leaf-rows N] [--max-report N] [--text]\n");
	return 2;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"source", required_argument, NULL, 's'},
		{"target", required_argument, NULL, 'd'},
		{"schema", required_argument, NULL, 'n'},
		{"table", required_argument, NULL, 't'},
		{"key", required_argument, NULL, 'k'},
		{"chunk-rows", required_argument, NULL, 'c'},
		{"leaf-rows", required_argument, NULL, 'l'},
		{"max-report", required_argument, NULL, 'm'},
		{"text", no_argument, NULL, 'x'},
		{NULL, 0, NULL, 0},
	};
	const char *source = NULL, *dest = NULL, *keys[DRIVER_MAX_KEYS];
	struct verify_target t = {.schema = "public"};
	struct verify_options o = {0};
	struct verify_result r;
	struct json_out j;
	bool text = false, ok;
	PGconn *sc = NULL, *dc = NULL;
	char err[1024];
	char *doc;
	int opt, status = 1;

	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case 's': source = optarg; break;
		case 'd': dest = optarg; break;
		case 'n': t.schema = optarg; break;
		case 't': t.name = optarg; break;
		case 'k':
			if (t.n_keys == DRIVER_MAX_KEYS)
				return driver_usage();
			keys[t.n_keys++] = optarg;
			t.key_columns = keys;
			break;
		case 'c': o.chunk_rows = strtoll(optarg, NULL, 10); break;
		case 'l': o.leaf_rows = strtoll(optarg, NULL, 10); break;
		case 'm': o.max_report = strtoull(optarg, NULL, 10); break;
		case 'x': text = true; break;
		default: return driver_usage();
		}
	}
	if (!source || !dest || !t.name || optind != argc)
		return driver_usage();
	if (!(sc = driver_connect(source, err, sizeof(err))) || !(dc = driver_connect(dest, err, sizeof(err)))) {
		fprintf(stderr, "error %s\n", err);
		goto out;
	}
	ok = verify_table(sc, dc, &t, &o, &r, err, sizeof(err));
	if (!ok) {
		fprintf(stderr, "error %s\n", err);
		verify_result_free(&r);
		goto out;
	}
	if (text) {
		char *report = verify_report_text(&r);

		fputs(report ? report : "(out of memory)\n", stdout);
		free(report);
		json_init_text(&j);
	} else {
		json_init(&j);
	}
	verify_result_json(&j, NULL, &r);
	doc = json_finish(&j, NULL);
	if (doc) {
		fputs(doc, stdout);
		fputc('\n', stdout);
		status = verify_result_equal(&r) ? 0 : 3;
	} else {
		fprintf(stderr, "error out of memory\n");
	}
	free(doc);
	verify_result_free(&r);
out:
	PQfinish(sc);
	PQfinish(dc);
	return status;
}
