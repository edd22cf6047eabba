/*
 * fuzz_config.c — libFuzzer target for the config loader: YAML reading,
 * the schema walk, typed values, cross-checks, diagnostics and the
 * normalized print (config/).
 *
 * Beyond "no crash, no leak", it checks the loader's promises: a refused
 * input yields at least one diagnostic, every diagnostic has a message, and
 * an accepted input prints as a config that loads again and prints the same
 * (the print is canonical), with nothing a reload would refuse; its streams
 * go to existing sites other than their source. Each input is loaded twice:
 * by the whole contract (several destinations, relays) and as this version
 * runs it, which accepts no more than the contract.
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

static struct strait_config *load(const char *name, const char *text, size_t len,
		struct config_diags *diags, bool contract)
{
	if (contract)
		return config_load_contract(name, text, len, diags);
	return config_load_buffer(name, text, len, diags);
}

/* The loader's promises, for the contract alone or with this version's limits; true: accepted. */
static bool one_load(const uint8_t *data, size_t size, bool contract)
{
	static FILE *devnull;
	struct config_diags diags = { 0 };
	struct strait_config *cfg, *again;
	char *printed, *reprinted;

	if (!devnull) {
		devnull = fopen("/dev/null", "w");
		CHECK(devnull);
	}
	cfg = load("fuzz.yaml", (const char *)data, size, &diags, contract);
	config_diags_print(devnull, &diags);
	for (size_t i = 0; i < diags.count; i++)
		CHECK(diags.items[i].message && diags.items[i].message[0]);
	if (!cfg) {
		CHECK(diags.count > 0);
		config_diags_free(&diags);
		return false;
	}
	CHECK(diags.count == 0);
	check_routes(cfg);

	printed = print_to_string(cfg);
	again = load("printed.yaml", printed, strlen(printed), &diags, contract);
	CHECK(again);
	reprinted = print_to_string(again);
	CHECK(strcmp(printed, reprinted) == 0);
	CHECK(config_reload_allowed(cfg, again, &diags));

	free(printed);
	free(reprinted);
	config_free(again);
	config_free(cfg);
	config_diags_free(&diags);
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* What this version runs is a part of what the contract takes. */
	if (one_load(data, size, false))
		CHECK(one_load(data, size, true));
	else
		(void)one_load(data, size, true);
	return 0;
}
