/*
 * fuzz_config.c — libFuzzer target for the config loader: YAML reading,
 * the schema walk, typed values, cross-checks, diagnostics and the
 * normalized print (config/).
 *
 * Beyond "no crash, no leak", it checks the loader's promises: a refused
 * input yields at least one diagnostic, every diagnostic has a message, and
 * an accepted input prints as a config that loads again and prints the same
 * (the print is canonical), with nothing a reload would refuse.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
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
		return 0;
	}
	CHECK(diags.count == 0);
	for (size_t i = 0; i < cfg->n_streams; i++)
		CHECK(cfg->streams[i].from < cfg->n_sites && cfg->streams[i].to < cfg->n_sites);

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
	return 0;
}
