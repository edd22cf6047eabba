/*
 * fuzz_config.c — libFuzzer target for the config loader: YAML reading,
 * the schema walk, typed values, cross-checks, diagnostics and the
 * normalized print (config/).
 *
 * Beyond "no crash, no leak", it checks the loader's promises: a refused
 * input yields at least one diagnostic, every diagnostic has a message, and
 * an accepted input prints as a config that loads again and prints the same
 * (the print is canonical), with nothing a reload would refuse; its streams
 * go to existing sites other than their source.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "config/config_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

static char *print_to_string(const struct strait_config *cfg)
{
	char *text = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&text, &len);

	CHECK(mem);
	config_print(mem, cfg);
	CHECK(fclose(mem) == 0);
	return text;
}

/*
 * A loaded config's streams name sites that exist, one relay at most per
 * destination, never the destination itself nor the source.
 */
static void check_routes(const struct strait_config *cfg)
{
	for (size_t i = 0; i < cfg->n_streams; i++) {
		const struct config_stream *st = &cfg->streams[i];

		CHECK(st->from < cfg->n_sites && st->n_to >= 1);
		for (size_t k = 0; k < st->n_to; k++) {
			CHECK(st->to[k] < cfg->n_sites && st->to[k] != st->from);
			CHECK(st->via[k] == CONFIG_SITE_NONE ||
			      (st->via[k] < cfg->n_sites && st->via[k] != st->to[k] && st->via[k] != st->from));
		}
	}
}

/* The loader's promises. */
static void one_load(const uint8_t *data, size_t size)
{
	static FILE *devnull;
	struct config_diags diags = { 0 };
	struct strait_config *cfg, *again;
	char *printed, *reprinted;

	if (!devnull) {
		devnull = fopen("/dev/null", "w");
		CHECK(devnull);
	}
	cfg = config_load_buffer("fuzz.yaml", (const char *)data, size, &diags);
	config_diags_print(devnull, &diags);
	for (size_t i = 0; i < diags.count; i++)
		CHECK(diags.items[i].message && diags.items[i].message[0]);
	if (!cfg) {
		CHECK(diags.count > 0);
		config_diags_free(&diags);
		return;
	}
	CHECK(diags.count == 0);
	check_routes(cfg);

	printed = print_to_string(cfg);
	again = config_load_buffer("printed.yaml", printed, strlen(printed), &diags);
	CHECK(again);
	reprinted = print_to_string(again);
	CHECK(strcmp(printed, reprinted) == 0);
	CHECK(config_reload_allowed(cfg, again, &diags));

	free(printed);
	free(reprinted);
	config_free(again);
	config_free(cfg);
	config_diags_free(&diags);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	one_load(data, size);
	return 0;
}
