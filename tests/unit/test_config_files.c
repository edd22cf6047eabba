/*
 * test_config_files.c — the config module end to end, driven by data files:
 *
 *   tests/configs/bad/NN-name.yaml    must be refused with exactly the
 *                                     diagnostics in NN-name.err;
 *   tests/configs/good/NAME.yaml      must load without a diagnostic, print as
 *                                     NAME.print, and that print must load back
 *                                     and print the same;
 *   tests/configs/reference.txt       is config_print_reference()'s output.
 *
 * Paths are relative to the repository root (STRAIT_SOURCE_DIR), so the golden
 * files do not depend on where the tree is checked out. After a reviewed change
 * of messages, regenerate them with STRAIT_UPDATE_GOLDEN=1 and read the diff.
 *
 * Also here: the schema table's own consistency, --files permission checks,
 * reload checks, and inputs a fuzzer would try (deep nesting, floods of
 * errors, NUL bytes).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"
#include "config/config_int.h"

#define BAD_DIR "tests/configs/bad"
#define GOOD_DIR "tests/configs/good"
#define MIN_BAD_CONFIGS 30

static bool update_golden(void)
{
	const char *v = getenv("STRAIT_UPDATE_GOLDEN");

	return v && *v && strcmp(v, "0") != 0;
}

static char *read_all(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t cap = 0, n = 0;

	if (!f)
		return NULL;
	for (;;) {
		size_t got;

		if (n + 4096 + 1 > cap) {
			cap = cap ? cap * 2 : 8192;
			buf = realloc(buf, cap);
			assert_non_null(buf);
		}
		got = fread(buf + n, 1, cap - n - 1, f);
		n += got;
		if (got == 0)
			break;
	}
	fclose(f);
	buf[n] = '\0';
	if (len)
		*len = n;
	return buf;
}

static void write_all(const char *path, const char *text)
{
	FILE *f = fopen(path, "wb");

	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
	assert_int_equal(fclose(f), 0);
}

/* Compares got with the golden file (or rewrites it under STRAIT_UPDATE_GOLDEN). */
static void check_golden(const char *golden, const char *got)
{
	char *want;

	if (update_golden()) {
		write_all(golden, got);
		return;
	}
	want = read_all(golden, NULL);
	if (!want)
		fail_msg("missing golden file %s (run with STRAIT_UPDATE_GOLDEN=1)", golden);
	if (strcmp(want, got) != 0) {
		print_error("--- %s (expected)\n%s--- got\n%s", golden, want, got);
		free(want);
		fail_msg("output differs from %s", golden);
	}
	free(want);
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

static int yaml_only(const struct dirent *d)
{
	size_t len = strlen(d->d_name);

	return len > 5 && strcmp(d->d_name + len - 5, ".yaml") == 0;
}

/* "dir/name.yaml" with the extension replaced by ext. */
static void sibling(char *buf, size_t len, const char *dir, const char *name, const char *ext)
{
	int n = snprintf(buf, len, "%s/%.*s%s", dir, (int)(strlen(name) - 5), name, ext);

	assert_true(n > 0 && (size_t)n < len);
}

static void test_bad_configs(void **state)
{
	struct dirent **names;
	int n = scandir(BAD_DIR, &names, yaml_only, alphasort);

	(void)state;
	assert_true(n >= MIN_BAD_CONFIGS);
	for (int i = 0; i < n; i++) {
		struct config_diags diags = { 0 };
		struct strait_config *cfg;
		char path[512], golden[512], *got;

		snprintf(path, sizeof(path), "%s/%s", BAD_DIR, names[i]->d_name);
		sibling(golden, sizeof(golden), BAD_DIR, names[i]->d_name, ".err");
		cfg = config_load_file(path, &diags);
		if (cfg)
			fail_msg("%s loaded, but it must be refused", path);
		assert_true(diags.count > 0);
		got = diags_text(&diags);
		check_golden(golden, got);
		free(got);
		config_diags_free(&diags);
		free(names[i]);
	}
	free(names);
}

static void test_good_configs(void **state)
{
	struct dirent **names;
	int n = scandir(GOOD_DIR, &names, yaml_only, alphasort);
	bool saw_example = false;

	(void)state;
	assert_true(n >= 2);
	for (int i = 0; i < n; i++) {
		struct config_diags diags = { 0 };
		struct strait_config *cfg, *again;
		char path[512], golden[512], *printed, *reprinted, *diag_text;

		if (strcmp(names[i]->d_name, "example.yaml") == 0)
			saw_example = true;
		snprintf(path, sizeof(path), "%s/%s", GOOD_DIR, names[i]->d_name);
		sibling(golden, sizeof(golden), GOOD_DIR, names[i]->d_name, ".print");
		cfg = config_load_file(path, &diags);
		diag_text = diags_text(&diags);
		if (!cfg || diags.count > 0)
			fail_msg("%s must load without diagnostics:\n%s", path, diag_text);
		free(diag_text);
		printed = print_text(cfg);
		check_golden(golden, printed);

		/* The normalized print is a config that loads back to the same thing. */
		again = config_load_buffer("printed.yaml", printed, strlen(printed), &diags);
		diag_text = diags_text(&diags);
		if (!again)
			fail_msg("the print of %s does not load:\n%s", path, diag_text);
		free(diag_text);
		assert_int_equal(diags.count, 0);
		reprinted = print_text(again);
		assert_string_equal(printed, reprinted);
		assert_int_equal(again->n_sites, cfg->n_sites);
		assert_int_equal(again->n_streams, cfg->n_streams);
		for (size_t s = 0; s < cfg->n_streams; s++) {
			assert_int_equal(again->streams[s].n_schedule, cfg->streams[s].n_schedule);
			assert_int_equal(again->streams[s].spool_max, cfg->streams[s].spool_max);
		}
		/* Nothing a reload would refuse differs either. */
		assert_true(config_reload_allowed(cfg, again, &diags));

		free(printed);
		free(reprinted);
		config_free(again);
		config_free(cfg);
		config_diags_free(&diags);
		free(names[i]);
	}
	free(names);
	assert_true(saw_example);
}

/* Fields of the shared example, as the daemon will read them. */
static void test_example_values(void **state)
{
	struct config_diags diags = { 0 };
	struct strait_config *cfg = config_load_file(GOOD_DIR "/example.yaml", &diags);
	const struct config_stream *app, *archive;
	int onprem, cloud;

	(void)state;
	assert_non_null(cfg);
	assert_string_equal(cfg->cluster, "acme-dr");
	assert_string_equal(cfg->private_key_file, "/etc/strait/wireguard.key");
	assert_string_equal(cfg->state_dir, "/var/lib/strait");
	assert_int_equal(cfg->n_sites, 2);
	onprem = config_site_index(cfg, "onprem");
	cloud = config_site_index(cfg, "cloud");
	assert_int_equal(onprem, 0);
	assert_int_equal(cloud, 1);
	assert_int_equal(config_site_index(cfg, "nowhere"), -1);
	assert_int_equal(config_site_index(cfg, NULL), -1);
	assert_string_equal(cfg->sites[onprem].role, "primary");
	assert_string_equal(cfg->sites[cloud].role, "replica");
	assert_string_equal(cfg->sites[cloud].endpoint.host, "gw-cloud.example.net");
	assert_int_equal(cfg->sites[cloud].endpoint.port, 51820);
	assert_int_equal(cfg->sites[cloud].tunnel_address.prefix, 24);
	assert_int_equal(cfg->sites[cloud].tunnel_address.addr[3], 2);
	assert_memory_equal(cfg->sites[onprem].public_key, "add the site's real public key h", 32);
	assert_string_equal(cfg->sites[cloud].database,
			"host=10.0.5.20 dbname=app user=strait sslmode=verify-full");
	assert_int_equal(cfg->sites[onprem].line, 15);
	assert_int_equal(cfg->tunnel.backend, CONFIG_BACKEND_AUTO);
	assert_string_equal(cfg->tunnel.interface, "strait0");
	assert_int_equal(cfg->tunnel.listen_port, 51820);
	assert_int_equal(cfg->tunnel.mtu, 1420);
	assert_int_equal(cfg->tunnel.persistent_keepalive, 25000);
	assert_string_equal(cfg->tls.ca, "/etc/strait/tls/ca.crt");
	assert_string_equal(cfg->tls.key, "/etc/strait/tls/site.key");
	assert_int_equal(cfg->relay.port, 7543);
	assert_int_equal(cfg->n_streams, 2);
	app = &cfg->streams[0];
	archive = &cfg->streams[1];
	assert_string_equal(app->name, "app");
	assert_int_equal(app->from, (size_t)onprem);
	assert_int_equal(app->n_to, 1);
	assert_int_equal(app->to[0], (size_t)cloud);
	assert_int_equal(config_stream_to(app), (size_t)cloud);
	assert_true(app->via[0] == CONFIG_SITE_NONE);
	assert_int_equal(app->retain, 3600000);
	assert_string_equal(app->publication, "strait_app");
	assert_int_equal(app->n_tables, 0);
	assert_int_equal(app->codec, CONFIG_CODEC_ZSTD);
	assert_int_equal(app->compression_level, 3);
	assert_int_equal(app->durability, CONFIG_DURABILITY_SPOOL);
	assert_true(app->spool_max == UINT64_C(10) << 30);
	assert_int_equal(app->on_conflict, CONFIG_CONFLICT_ERROR);
	assert_true(app->initial_sync);
	assert_int_equal(app->mode, CONFIG_MODE_LIVE);
	assert_int_equal(app->n_schedule, 2);
	assert_int_equal(app->schedule[0].days, 0x3e);
	assert_true(app->schedule[0].has_hours);
	assert_int_equal(app->schedule[0].hours.start_min, 8 * 60);
	assert_int_equal(app->schedule[0].hours.end_min, 18 * 60);
	assert_false(app->schedule[0].rate.unlimited);
	assert_true(app->schedule[0].rate.bytes_per_sec == 2u << 20);
	assert_int_equal(app->schedule[1].days, CONFIG_ALL_DAYS);
	assert_false(app->schedule[1].has_hours);
	assert_true(app->schedule[1].rate.unlimited);
	assert_int_equal(app->n_windows, 0);
	assert_int_equal(archive->mode, CONFIG_MODE_BATCH);
	assert_int_equal(archive->n_windows, 1);
	assert_int_equal(archive->windows[0].start_min, 60);
	assert_int_equal(archive->windows[0].end_min, 300);
	assert_int_equal(archive->n_schedule, 0);
	assert_true(cfg->failover.max_lag_bytes == 16u << 20);
	assert_int_equal(cfg->failover.max_lag_seconds, 30000);
	assert_int_equal(cfg->failover.health_interval, 1000);
	assert_int_equal(cfg->failover.health_failures, 5);
	assert_int_equal(cfg->failover.sequence_margin, 1000);
	assert_string_equal(cfg->metrics.listen, "127.0.0.1:9543");
	assert_string_equal(cfg->control.socket, "/run/strait/control.sock");
	config_free(cfg);
	config_diags_free(&diags);
}

static void test_schema_table(void **state)
{
	char *ref = NULL;
	size_t len = 0;
	FILE *mem;

	(void)state;
	for (size_t i = 0; i < config_n_keys; i++) {
		const struct config_key *k = &config_keys[i];
		char parent[CONFIG_KEY_MAX];
		const char *dot = strrchr(k->path, '.');

		/* Documented in PostgreSQL's style: lowercase, no final period. */
		assert_non_null(k->doc);
		assert_true(strlen(k->doc) > 10);
		assert_true(k->doc[strlen(k->doc) - 1] != '.');
		/* A required key has no default; a default parses as its own type. */
		if (k->required)
			assert_null(k->def);
		if (k->def) {
			struct strait_config cfg;
			struct config_site site;
			struct config_stream stream;
			struct config_schedule_rule rule;
			void *base = k->scope == CS_ROOT ? (void *)&cfg : k->scope == CS_SITE ?
				(void *)&site : k->scope == CS_STREAM ? (void *)&stream : (void *)&rule;
			char err[CONFIG_ERR_MAX];

			memset(&cfg, 0, sizeof(cfg));
			memset(&site, 0, sizeof(site));
			memset(&stream, 0, sizeof(stream));
			memset(&rule, 0, sizeof(rule));
			if (!config_type_set(NULL, k, base, k->def, err, sizeof(err)))
				fail_msg("default of %s does not parse: %s", k->path, err);
			config_type_free(k, base);
		}
		if (k->choices)
			assert_true(k->type == CT_CHOICE || k->type == CT_ENUM);
		/* Paths are unique and every parent is a container in the table. */
		for (size_t j = 0; j < i; j++)
			assert_string_not_equal(config_keys[j].path, k->path);
		if (dot) {
			bool found = false;

			snprintf(parent, sizeof(parent), "%.*s", (int)(dot - k->path), k->path);
			for (size_t j = 0; j < i; j++) {
				char inner[CONFIG_KEY_MAX];

				config_schema_inner(&config_keys[j], inner, sizeof(inner));
				if (strcmp(inner, parent) == 0 && config_keys[j].type <= CT_SCHEDULE)
					found = true;
			}
			if (!found)
				fail_msg("%s has no container before it", k->path);
		}
	}
	mem = open_memstream(&ref, &len);
	assert_non_null(mem);
	config_print_reference(mem);
	assert_int_equal(fclose(mem), 0);
	for (size_t i = 0; i < config_n_keys; i++)
		assert_non_null(strstr(ref, config_keys[i].path));
	check_golden("tests/configs/reference.txt", ref);
	free(ref);
}

static const char files_config[] =
	"cluster: lab\n"
	"private_key_file: %s/wg.key\n"
	"sites:\n"
	"  east:\n"
	"    role: primary\n"
	"    endpoint: east.example.net:51820\n"
	"    tunnel_address: 10.0.0.1/24\n"
	"    public_key: nSQgIY4vfwmkFUjgApcF08AhAvvgJKK8Ahnah52LXxE=\n"
	"    database: dbname=app\n"
	"tls:\n"
	"  ca: %s/ca.crt\n"
	"  cert: %s/site.crt\n"
	"  key: %s/site.key\n";

static void make_file(const char *dir, const char *name, mode_t mode)
{
	char path[512];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "x\n", 2), 2);
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

static void test_check_files(void **state)
{
	char dir[] = "/tmp/strait-config-XXXXXX", text[2048], path[512];
	struct config_diags diags = { 0 };
	struct strait_config *cfg;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(text, sizeof(text), files_config, dir, dir, dir, dir);
	cfg = config_load_buffer("files.yaml", text, strlen(text), &diags);
	assert_non_null(cfg);

	/* Nothing there yet: every file is reported at its key. */
	assert_false(config_check_files(cfg, &diags));
	assert_int_equal(diags.count, 4);
	assert_string_equal(diags.items[0].key, "private_key_file");
	assert_int_equal(diags.items[0].line, 2);
	assert_int_equal(diags.items[0].column, 19);
	assert_non_null(strstr(diags.items[0].message, "could not open file"));
	assert_string_equal(diags.items[3].key, "tls.key");
	assert_int_equal(diags.items[3].line, 13);
	assert_int_equal(diags.items[3].column, 8);
	assert_non_null(diags.items[3].source_line);
	config_diags_free(&diags);

	/* Secrets readable by others are refused; certificates may be read by all. */
	make_file(dir, "wg.key", 0600);
	make_file(dir, "ca.crt", 0644);
	make_file(dir, "site.crt", 0644);
	make_file(dir, "site.key", 0640);
	assert_false(config_check_files(cfg, &diags));
	assert_int_equal(diags.count, 1);
	assert_string_equal(diags.items[0].key, "tls.key");
	assert_non_null(strstr(diags.items[0].message, "group or others"));
	assert_non_null(strstr(diags.items[0].message, "0640"));
	config_diags_free(&diags);

	make_file(dir, "site.key", 0600);
	assert_true(config_check_files(cfg, &diags));
	assert_int_equal(diags.count, 0);

	/* A directory where a file goes. */
	snprintf(path, sizeof(path), "%s/ca.crt", dir);
	unlink(path);
	assert_int_equal(mkdir(path, 0755), 0);
	assert_false(config_check_files(cfg, &diags));
	assert_int_equal(diags.count, 1);
	assert_non_null(strstr(diags.items[0].message, "not a regular file"));
	config_diags_free(&diags);
	rmdir(path);

	config_free(cfg);
	for (const char *const *f = (const char *const[]){ "wg.key", "site.crt", "site.key", NULL };
	     *f; f++) {
		snprintf(path, sizeof(path), "%s/%s", dir, *f);
		unlink(path);
	}
	rmdir(dir);
}

/* The diagnostic about key, or NULL. */
static const struct config_diag *find_diag(const struct config_diags *diags, const char *key)
{
	for (size_t i = 0; i < diags->count; i++)
		if (diags->items[i].key && strcmp(diags->items[i].key, key) == 0)
			return &diags->items[i];
	return NULL;
}

static struct strait_config *load_text(const char *name, const char *text)
{
	struct config_diags diags = { 0 };
	struct strait_config *cfg = config_load_buffer(name, text, strlen(text), &diags);
	char *out = diags_text(&diags);

	if (!cfg)
		fail_msg("%s does not load:\n%s", name, out);
	free(out);
	config_diags_free(&diags);
	return cfg;
}

static void test_reload(void **state)
{
	char *base = read_all(GOOD_DIR "/minimal.yaml", NULL), *changed;
	struct config_diags diags = { 0 };
	struct strait_config *old_cfg, *same, *new_cfg;
	size_t len;

	(void)state;
	assert_non_null(base);
	old_cfg = load_text("old.yaml", base);
	same = load_text("same.yaml", base);
	assert_true(config_reload_allowed(old_cfg, same, &diags));
	assert_int_equal(diags.count, 0);

	/* A reloadable key (listen_port) and two that need a restart. */
	len = strlen(base) + 200;
	changed = malloc(len);
	assert_non_null(changed);
	snprintf(changed, len, "%stunnel:\n  interface: wg9\n  listen_port: 51999\n"
			"metrics:\n  listen: off\n", base);
	new_cfg = load_text("new.yaml", changed);
	assert_false(config_reload_allowed(old_cfg, new_cfg, &diags));
	assert_int_equal(diags.count, 2);
	assert_string_equal(diags.items[0].file, "new.yaml");
	assert_string_equal(diags.items[0].key, "tunnel.interface");
	assert_int_equal(diags.items[0].line, 20);
	assert_int_equal(diags.items[0].column, 14);
	assert_string_equal(diags.items[0].message,
			"cannot be changed by a reload (was strait0, now wg9); restart straitd");
	assert_string_equal(diags.items[1].key, "metrics.listen");
	config_diags_free(&diags);
	assert_false(config_reload_allowed(NULL, new_cfg, &diags));

	config_free(old_cfg);
	config_free(same);
	config_free(new_cfg);
	free(changed);
	free(base);
}

static void test_hostile_inputs(void **state)
{
	struct config_diags diags = { 0 };
	struct strait_config *cfg;
	char *deep, *flood, *big, *got;
	size_t n = 0;

	(void)state;
	/* Nesting deeper than any config: one error, no deep recursion. */
	deep = malloc(20001);
	assert_non_null(deep);
	memset(deep, '[', 10000);
	memset(deep + 10000, ']', 10000);
	deep[20000] = '\0';
	assert_null(config_load_buffer("deep.yaml", deep, 20000, &diags));
	assert_int_equal(diags.count, 1);
	assert_non_null(strstr(diags.items[0].message, "nesting is too deep"));
	config_diags_free(&diags);
	free(deep);

	/* A flood of errors stops at CONFIG_MAX_ERRORS and says so. */
	flood = malloc(500 * 16 + 1);
	assert_non_null(flood);
	for (int i = 0; i < 500; i++)
		n += (size_t)sprintf(flood + n, "unknown%03d: 1\n", i);
	assert_null(config_load_buffer("flood.yaml", flood, n, &diags));
	assert_int_equal(diags.count, CONFIG_MAX_ERRORS + 1);
	assert_non_null(strstr(diags.items[diags.count - 1].message, "too many errors"));
	config_diags_free(&diags);
	free(flood);

	/* A mapping or sequence of absurd size is cut short. */
	flood = malloc(2 * 1100 + 16);
	assert_non_null(flood);
	n = (size_t)sprintf(flood, "streams: [");
	for (int i = 0; i < 1100; i++)
		n += (size_t)sprintf(flood + n, "1,");
	n += (size_t)sprintf(flood + n, "1]\n");
	assert_null(config_load_buffer("wide.yaml", flood, n, &diags));
	assert_int_equal(diags.count, 1);
	assert_non_null(strstr(diags.items[0].message, "too many entries in one sequence"));
	config_diags_free(&diags);
	free(flood);

	/* NUL bytes, inside the text and inside a value. */
	assert_null(config_load_buffer("nul.yaml", "cluster: a\0b\n", 13, &diags));
	assert_true(diags.count > 0);
	config_diags_free(&diags);
	assert_null(config_load_buffer("nul2.yaml", "cluster: \"a\\0b\"\n", 16, &diags));
	assert_true(diags.count > 0);
	got = diags_text(&diags);
	assert_non_null(strstr(got, "nul2.yaml:1:10: error: a value must not contain a NUL character"));
	free(got);
	config_diags_free(&diags);

	/* Empty, whitespace, comments only, a bare scalar, no name. */
	assert_null(config_load_buffer(NULL, "", 0, &diags));
	assert_null(config_load_buffer("c.yaml", "# nothing\n\n", 11, &diags));
	assert_null(config_load_buffer("s.yaml", "strait", 6, &diags));
	assert_null(config_load_buffer("n.yaml", "~", 1, &diags));
	assert_true(diags.count >= 4);
	config_diags_free(&diags);

	/* Larger than any config. */
	big = malloc(CONFIG_MAX_FILE_SIZE + 2);
	assert_non_null(big);
	memset(big, '#', CONFIG_MAX_FILE_SIZE + 1);
	big[CONFIG_MAX_FILE_SIZE + 1] = '\0';
	assert_null(config_load_buffer("big.yaml", big, CONFIG_MAX_FILE_SIZE + 1, &diags));
	assert_int_equal(diags.count, 1);
	assert_non_null(strstr(diags.items[0].message, "too large"));
	config_diags_free(&diags);
	free(big);

	/* Files that are not there or not files. */
	cfg = config_load_file("tests/configs/no-such-file.yaml", &diags);
	assert_null(cfg);
	assert_int_equal(diags.count, 1);
	assert_non_null(strstr(diags.items[0].message, "could not open file"));
	config_diags_free(&diags);
	assert_null(config_load_file("tests/configs", &diags));
	assert_non_null(strstr(diags.items[0].message, "directory"));
	config_diags_free(&diags);

	/* Freeing nothing is fine. */
	config_free(NULL);
	config_diags_free(NULL);
	config_diags_print(stdout, NULL);
	config_print(stdout, NULL);
}

static void test_diag_format(void **state)
{
	struct config_diags diags = { 0 };
	static const char text[] = "cluster: lab\nsites:\n\tx: 1\n";
	const char *want =
		"t.yaml:3:1: error: invalid YAML: found character that cannot start any token "
		"(while scanning for the next token at line 3, column 1)\n"
		"    3 | \tx: 1\n"
		"      | ^\n";
	char *got;

	(void)state;
	assert_null(config_load_buffer("t.yaml", text, sizeof(text) - 1, &diags));
	got = diags_text(&diags);
	assert_string_equal(got, want);
	free(got);
	config_diags_free(&diags);

	/* A character of several UTF-8 bytes takes one column, as libyaml counts. */
	assert_null(config_load_buffer("u.yaml", "tunnel: {backend: \"\xc3\xa9\", mtu: 5}\n", 31,
				&diags));
	assert_non_null(find_diag(&diags, "tunnel.mtu"));
	assert_int_equal(find_diag(&diags, "tunnel.mtu")->column, 29);
	got = diags_text(&diags);
	assert_non_null(strstr(got, "\n      |                             ^\n"));
	free(got);
	config_diags_free(&diags);

	/* Without a column or a line. */
	config_diag_add(&diags, NULL, "f.yaml", 7, 0, "k", "no column");
	config_diag_add(&diags, NULL, "f.yaml", 0, 0, NULL, "no line");
	got = diags_text(&diags);
	assert_string_equal(got, "f.yaml:7: error: k: no column\nf.yaml: error: no line\n");
	free(got);
	config_diags_free(&diags);
}

int main(void)
{
	const char *src = getenv("STRAIT_SOURCE_DIR");
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bad_configs),
		cmocka_unit_test(test_good_configs),
		cmocka_unit_test(test_example_values),
		cmocka_unit_test(test_schema_table),
		cmocka_unit_test(test_check_files),
		cmocka_unit_test(test_reload),
		cmocka_unit_test(test_hostile_inputs),
		cmocka_unit_test(test_diag_format),
	};

	if (src && chdir(src) != 0) {
		perror(src);
		return 1;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
