/*
 * config_print.c — the normalized print of a config (`straitctl check-config
 * --print`): every key of the schema in table order with its value or
 * default, sizes, durations and rates in a canonical unit. The output is
 * itself a valid strait.yaml that loads back to an equal config, except that
 * a password inside a connection string is printed as ********.
 */
#include "config/config_int.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

/* Words other YAML readers would take for booleans or null. */
static bool yaml_special(const char *text)
{
	static const char *const words[] = {
		"true", "false", "yes", "no", "on", "off", "y", "n", "null", "~",
	};

	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (strcasecmp(text, words[i]) == 0)
			return true;
	return false;
}

static bool plain_ok(const char *text)
{
	size_t len = strlen(text);

	if (len == 0 || yaml_special(text))
		return false;
	if (!isalnum((unsigned char)text[0]) && text[0] != '/' && text[0] != '_' && text[0] != '.')
		return false;
	if (text[len - 1] == ':' || (isdigit((unsigned char)text[0]) && strchr(text, ':')))
		return false;
	for (const char *p = text; *p; p++) {
		unsigned char c = (unsigned char)*p;

		if (!isalnum(c) && !strchr("_./@+=-:,", c))
			return false;
	}
	return true;
}

void config_print_scalar(FILE *out, const char *text)
{
	if (plain_ok(text)) {
		fputs(text, out);
		return;
	}
	fputc('"', out);
	for (const char *p = text; *p; p++) {
		unsigned char c = (unsigned char)*p;

		if (c == '"' || c == '\\')
			fprintf(out, "\\%c", c);
		else if (c == '\n')
			fputs("\\n", out);
		else if (c == '\t')
			fputs("\\t", out);
		else if (c < 0x20 || c == 0x7f)
			fprintf(out, "\\x%02x", c);
		else
			fputc(c, out);
	}
	fputc('"', out);
}

/* An optional value that was not given and has no default: left out. */
static bool print_absent(const struct config_key *k, const void *base)
{
	return (k->type == CT_GROUP ||
		((k->type == CT_PATH || k->type == CT_CONNINFO) && !k->required && !k->def)) &&
	       !*(char *const *)((const char *)base + k->offset);
}

/* A section whose every key is left out (hooks with none set): left out too. */
static bool print_section_empty(const struct config_key *section, const void *base)
{
	for (size_t i = 0; i < config_n_keys; i++) {
		const struct config_key *k = &config_keys[i];

		if (config_schema_is_child(k, section->path) && !print_absent(k, base))
			return false;
	}
	return true;
}

/* Indentation; the first line of a list item carries the "- ". */
static void lead(FILE *out, int indent, bool *dash)
{
	if (*dash) {
		fprintf(out, "%*s- ", indent - 2, "");
		*dash = false;
	} else {
		fprintf(out, "%*s", indent, "");
	}
}

static void print_map(FILE *out, const struct strait_config *cfg, const char *prefix,
		const void *base, int indent, bool dash);

static void print_list(FILE *out, const struct strait_config *cfg, const struct config_key *k,
		const void *base, int indent)
{
	const char *items = *(char *const *)((const char *)base + k->offset);
	size_t n = *(const size_t *)((const char *)base + k->aux);
	size_t size = k->type == CT_STREAMS ? sizeof(struct config_stream) :
		sizeof(struct config_schedule_rule);
	char inner[CONFIG_KEY_MAX];

	if (n == 0) {
		fputs(" []\n", out);
		return;
	}
	fputc('\n', out);
	config_schema_inner(k, inner, sizeof(inner));
	for (size_t i = 0; i < n; i++)
		print_map(out, cfg, inner, items + i * size, indent + 4, true);
}

static void print_scalars(FILE *out, const struct config_key *k, const void *base, int indent)
{
	size_t n = *(const size_t *)((const char *)base + k->aux);
	const void *items = *(const void *const *)((const char *)base + k->offset);
	char buf[CONFIG_VALUE_BUF];

	if (n == 0) {
		fputs(" []\n", out);
		return;
	}
	fputc('\n', out);
	for (size_t i = 0; i < n; i++) {
		fprintf(out, "%*s- ", indent + 2, "");
		if (k->type == CT_WINDOWS) {
			config_format_window(buf, sizeof(buf), (const struct config_window *)items + i);
			config_print_scalar(out, buf);
		} else {
			config_print_scalar(out, ((char *const *)items)[i]);
		}
		fputc('\n', out);
	}
}

static void print_map(FILE *out, const struct strait_config *cfg, const char *prefix,
		const void *base, int indent, bool dash)
{
	char inner[CONFIG_KEY_MAX];

	for (size_t i = 0; i < config_n_keys; i++) {
		const struct config_key *k = &config_keys[i];

		if (!config_schema_is_child(k, prefix))
			continue;
		/* An optional value that was not given (a rule's hours) stays out. */
		if (k->type == CT_WINDOW && k->has_aux && !*(const bool *)((const char *)base + k->aux))
			continue;
		if (print_absent(k, base) || (k->type == CT_SECTION && print_section_empty(k, base)))
			continue;
		lead(out, indent, &dash);
		fprintf(out, "%s:", config_schema_name(k));
		switch (k->type) {
		case CT_SECTION:
			fputc('\n', out);
			print_map(out, cfg, k->path, base, indent + 2, false);
			break;
		case CT_SITES:
			config_schema_inner(k, inner, sizeof(inner));
			if (cfg->n_sites == 0)
				fputs(" {}", out);
			fputc('\n', out);
			for (size_t s = 0; s < cfg->n_sites; s++) {
				fprintf(out, "%*s", indent + 2, "");
				config_print_scalar(out, cfg->sites[s].name ? cfg->sites[s].name : "");
				fputs(":\n", out);
				print_map(out, cfg, inner, &cfg->sites[s], indent + 4, false);
			}
			break;
		case CT_STREAMS:
		case CT_SCHEDULE:
			print_list(out, cfg, k, base, indent);
			break;
		case CT_WINDOWS:
		case CT_TABLES:
		case CT_URLS:
			print_scalars(out, k, base, indent);
			break;
		default:
			fputc(' ', out);
			config_type_format(out, k, base, cfg);
			fputc('\n', out);
			break;
		}
	}
}

void config_print(FILE *out, const struct strait_config *cfg)
{
	if (!cfg)
		return;
	fputs("# strait.yaml, normalized: every default filled in\n", out);
	print_map(out, cfg, "", cfg, 0, false);
}
