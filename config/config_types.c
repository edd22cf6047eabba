/*
 * config_types.c — one switch per operation over the schema's value types:
 * parse a scalar into its field (with the message an operator needs when it is
 * wrong), print a field back as YAML, free a field, fill in defaults.
 *
 * Fields are reached through the schema table's offsets into the struct of the
 * key's scope; this file is the only place that casts them to their C types,
 * but for a stream's to and via: two keys over one pair of parallel arrays,
 * handled whole by config_route.c.
 */
#include "config/config_int.h"

#include <grp.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* A value echoed in a message: at most 60 characters. */
#define SHOW "\"%.60s%s\""
#define SHOWN(t) (t), strlen(t) > 60 ? "..." : ""

_Static_assert(sizeof(enum config_backend) == sizeof(int), "enum size");
_Static_assert(sizeof(enum config_codec) == sizeof(int), "enum size");
_Static_assert(sizeof(enum config_durability) == sizeof(int), "enum size");
_Static_assert(sizeof(enum config_conflict) == sizeof(int), "enum size");
_Static_assert(sizeof(enum config_stream_mode) == sizeof(int), "enum size");

static void *field_of(const struct config_key *key, void *base)
{
	return (char *)base + key->offset;
}

static const void *cfield_of(const struct config_key *key, const void *base)
{
	return (const char *)base + key->offset;
}

static bool set_string(char **field, const char *text, char *err, size_t errlen)
{
	char *copy = strdup(text);

	if (!copy) {
		snprintf(err, errlen, "out of memory");
		return false;
	}
	free(*field);
	*field = copy;
	return true;
}

/* "a, b or c" */
static void list_choices(char *buf, size_t len, const char *const *choices)
{
	size_t n = 0, used = 0;

	while (choices[n])
		n++;
	buf[0] = '\0';
	for (size_t i = 0; i < n && used < len; i++) {
		const char *sep = i == 0 ? "" : i + 1 == n ? " or " : ", ";
		int w = snprintf(buf + used, len - used, "%s%s", sep, choices[i]);

		if (w < 0)
			break;
		used += (size_t)w;
	}
}

static bool set_choice(const struct config_key *key, void *field, const char *text,
		char *err, size_t errlen)
{
	char list[128];

	for (int i = 0; key->choices[i]; i++) {
		if (strcmp(text, key->choices[i]) != 0)
			continue;
		if (key->type == CT_CHOICE)
			return set_string(field, key->choices[i], err, errlen);
		memcpy(field, &i, sizeof(i));
		return true;
	}
	list_choices(list, sizeof(list), key->choices);
	snprintf(err, errlen, "invalid value " SHOW " (use %s)", SHOWN(text), list);
	return false;
}

static bool set_bool(bool *field, const char *text, char *err, size_t errlen)
{
	static const char *const yes[] = { "true", "yes", "on" };
	static const char *const no[] = { "false", "no", "off" };

	for (size_t i = 0; i < 3; i++) {
		if (strcmp(text, yes[i]) == 0) {
			*field = true;
			return true;
		}
		if (strcmp(text, no[i]) == 0) {
			*field = false;
			return true;
		}
	}
	snprintf(err, errlen, "invalid boolean " SHOW " (use true or false)", SHOWN(text));
	return false;
}

static void range_hint(char *buf, size_t len, const char *lo, const char *hi, bool zero_ok)
{
	int n = snprintf(buf, len, "use %s%s to %s", zero_ok ? "0, or " : "", lo, hi);

	if (n < 0)
		buf[0] = '\0';
}

static bool set_int(const struct config_key *key, void *field, const char *text,
		char *err, size_t errlen)
{
	const char *p = text;
	long long v = 0;
	bool neg = false;
	char lo[32], hi[32], hint[96];

	if (*p == '-' && key->int_kind == CI_INT) {
		neg = true;
		p++;
	}
	if (*p == '\0' || strspn(p, "0123456789") != strlen(p))
		goto bad;
	for (; *p; p++) {
		if (v > (LLONG_MAX - 9) / 10) {
			v = LLONG_MAX;  /* out of every range */
			break;
		}
		v = v * 10 + (*p - '0');
	}
	if (neg)
		v = -v;
	if (!(key->zero_ok && v == 0) && (v < key->min || v > key->max)) {
		snprintf(lo, sizeof(lo), "%lld", key->min);
		snprintf(hi, sizeof(hi), "%lld", key->max);
		range_hint(hint, sizeof(hint), lo, hi, key->zero_ok);
		snprintf(err, errlen, "%.30s is out of range (%s)", text, hint);
		return false;
	}
	switch (key->int_kind) {
	case CI_INT:
		*(int *)field = (int)v;
		break;
	case CI_U16:
		*(uint16_t *)field = (uint16_t)v;
		break;
	case CI_U32:
		*(uint32_t *)field = (uint32_t)v;
		break;
	case CI_U64:
		*(uint64_t *)field = (uint64_t)v;
		break;
	}
	return true;
bad:
	snprintf(err, errlen, "invalid integer " SHOW, SHOWN(text));
	return false;
}

static bool set_size(const struct config_key *key, config_size *field, const char *text,
		char *err, size_t errlen)
{
	config_size v;
	char a[CONFIG_VALUE_BUF], b[CONFIG_VALUE_BUF];

	if (!config_parse_size(text, &v)) {
		snprintf(err, errlen, "invalid size " SHOW
				" (use a number with B, kB, MB, GB, TB, KiB, MiB, GiB or TiB)", SHOWN(text));
		return false;
	}
	if (key->min > 0 && v < (config_size)key->min) {
		config_format_size(a, sizeof(a), v);
		config_format_size(b, sizeof(b), (config_size)key->min);
		snprintf(err, errlen, "size %s is too small (at least %s)", a, b);
		return false;
	}
	*field = v;
	return true;
}

static bool set_duration(const struct config_key *key, config_msec *field, const char *text,
		char *err, size_t errlen)
{
	config_msec v;
	char a[CONFIG_VALUE_BUF], lo[CONFIG_VALUE_BUF], hi[CONFIG_VALUE_BUF], hint[96];

	if (!config_parse_duration(text, &v)) {
		snprintf(err, errlen, "invalid duration " SHOW " (use a number with ms, s, m, h or d)",
				SHOWN(text));
		return false;
	}
	config_format_duration(a, sizeof(a), v);
	if (key->seconds && v % 1000 != 0) {
		snprintf(err, errlen, "duration %s is not a whole number of seconds", a);
		return false;
	}
	if (key->max > 0 && !(key->zero_ok && v == 0) &&
	    (v < (config_msec)key->min || v > (config_msec)key->max)) {
		config_format_duration(lo, sizeof(lo), (config_msec)key->min);
		config_format_duration(hi, sizeof(hi), (config_msec)key->max);
		range_hint(hint, sizeof(hint), lo, hi, key->zero_ok);
		snprintf(err, errlen, "duration %s is out of range (%s)", a, hint);
		return false;
	}
	*field = v;
	return true;
}

static bool set_path(const struct config_key *key, char **field, const char *text,
		char *err, size_t errlen)
{
	size_t max = key->max > 0 ? (size_t)key->max : PATH_MAX - 1;

	if (text[0] != '/') {
		snprintf(err, errlen, "invalid path " SHOW " (use an absolute path)", SHOWN(text));
		return false;
	}
	if (strlen(text) > max) {
		snprintf(err, errlen, "path " SHOW " is too long (at most %zu bytes)", SHOWN(text), max);
		return false;
	}
	return set_string(field, text, err, errlen);
}

static void endpoint_error(const char *text, char *err, size_t errlen)
{
	const char *colon = strchr(text, ':');

	if (text[0] != '[' && colon && strchr(colon + 1, ':'))
		snprintf(err, errlen, "invalid endpoint " SHOW
				" (an IPv6 address goes in brackets: [fd00::1]:51820)", SHOWN(text));
	else if (!colon)
		snprintf(err, errlen, "invalid endpoint " SHOW " (a port is missing: use host:port)",
				SHOWN(text));
	else
		snprintf(err, errlen, "invalid endpoint " SHOW
				" (use host:port or [IPv6 address]:port, a port from 1 to 65535)",
				SHOWN(text));
}

static bool set_key(uint8_t *field, const char *text, char *err, size_t errlen)
{
	int len;

	if (config_parse_wg_key(text, field))
		return true;
	len = config_base64_len(text);
	if (len < 0)
		snprintf(err, errlen, "invalid WireGuard key " SHOW " (not base64)", SHOWN(text));
	else if (len != WG_KEY_LEN)
		snprintf(err, errlen, "invalid WireGuard key " SHOW " (%d bytes, a key has %d)",
				SHOWN(text), len, WG_KEY_LEN);
	else
		snprintf(err, errlen, "invalid WireGuard key " SHOW " (not canonical base64)",
				SHOWN(text));
	return false;
}

bool config_parse_siteref(struct config_ctx *ctx, const char *text, size_t *out,
		char *err, size_t errlen)
{
	const struct strait_config *cfg = ctx ? ctx->cfg : NULL;
	const char *names[16];
	size_t n = 0;
	const char *guess;
	int i;

	if (!cfg || !ctx->sites_ok) {
		err[0] = '\0';  /* "sites" itself is wrong: reported there */
		return false;
	}
	i = config_site_index(cfg, text);
	if (i >= 0) {
		*out = (size_t)i;
		return true;
	}
	for (size_t s = 0; s < cfg->n_sites && n < 16; s++)
		if (cfg->sites[s].name)
			names[n++] = cfg->sites[s].name;
	guess = config_suggest(text, names, n);
	if (guess)
		snprintf(err, errlen, "unknown site " SHOW " (did you mean \"%s\"?)", SHOWN(text), guess);
	else
		snprintf(err, errlen, "unknown site " SHOW, SHOWN(text));
	return false;
}

/* A group must exist where the config is loaded: a typo would lock out its members. */
static bool set_group(char **field, const char *text, char *err, size_t errlen)
{
	struct group gr, *res = NULL;
	char buf[16384];
	int rc;

	rc = getgrnam_r(text, &gr, buf, sizeof(buf), &res);
	if (rc != 0 || !res) {
		snprintf(err, errlen, "unknown group " SHOW "%s%s", SHOWN(text),
				rc ? ": " : " (no such group on this host)", rc ? strerror(rc) : "");
		return false;
	}
	return set_string(field, text, err, errlen);
}

/* A name, PostgreSQL identifier or interface name (type), checked before it is kept. */
static bool set_identifier(enum config_type type, void *field, const char *text, char *err,
		size_t errlen)
{
	bool valid = type == CT_NAME ? config_valid_name(text) :
		     type == CT_PGNAME ? config_valid_pgname(text) : config_valid_ifname(text);

	if (valid)
		return set_string(field, text, err, errlen);
	if (type == CT_NAME)
		snprintf(err, errlen, "invalid name " SHOW
				" (use 1 to 63 of a-z, 0-9, _ and -, starting with a letter)",
				SHOWN(text));
	else if (type == CT_PGNAME)
		snprintf(err, errlen, "invalid identifier " SHOW
				" (use 1 to 63 of a-z, 0-9, _ and $, starting with a letter or _)",
				SHOWN(text));
	else
		snprintf(err, errlen, "invalid interface name " SHOW
				" (use 1 to 15 of letters, digits, _, - and .)", SHOWN(text));
	return false;
}

static bool set_rate(void *field, const char *text, char *err, size_t errlen)
{
	if (config_parse_rate(text, field))
		return true;
	snprintf(err, errlen, "invalid rate " SHOW
			" (use a size per second such as 2MiB/s, unlimited, or 0 to hold)",
			SHOWN(text));
	return false;
}

static bool set_days(void *field, const char *text, char *err, size_t errlen)
{
	if (config_parse_days(text, field))
		return true;
	snprintf(err, errlen, "invalid days " SHOW
			" (use mon, tue, wed, thu, fri, sat and sun, ranges such as mon-fri, "
			"separated by commas)", SHOWN(text));
	return false;
}

/* An hour window; the key's flag (aux), when it has one, records that it was set. */
static bool set_window(const struct config_key *key, void *base, void *field, const char *text,
		char *err, size_t errlen)
{
	const char *why;

	if (!config_parse_window_why(text, field, &why)) {
		if (why)
			snprintf(err, errlen, "invalid hour window " SHOW ": %s", SHOWN(text), why);
		else
			snprintf(err, errlen, "invalid hour window " SHOW
					" (use HH:MM-HH:MM such as 08:00-18:00 or 22:00-06:00)",
					SHOWN(text));
		return false;
	}
	if (key->has_aux)
		*(bool *)((char *)base + key->aux) = true;
	return true;
}

static bool set_cidr(void *field, const char *text, char *err, size_t errlen)
{
	if (config_parse_cidr(text, field))
		return true;
	snprintf(err, errlen, "invalid CIDR " SHOW
			" (use an address with its prefix, such as 10.77.0.1/24 or fd00::1/64)",
			SHOWN(text));
	return false;
}

static bool set_endpoint(struct config_endpoint *ep, const char *text, char *err, size_t errlen)
{
	struct config_endpoint parsed;

	if (!config_parse_endpoint(text, &parsed)) {
		endpoint_error(text, err, errlen);
		return false;
	}
	free(ep->host);
	*ep = parsed;
	return true;
}

/* A listening endpoint kept as its text, or off (NULL). */
static bool set_listen(char **field, const char *text, char *err, size_t errlen)
{
	struct config_endpoint parsed;

	if (strcmp(text, "off") == 0) {
		free(*field);
		*field = NULL;
		return true;
	}
	if (!config_parse_endpoint(text, &parsed)) {
		endpoint_error(text, err, errlen);
		return false;
	}
	free(parsed.host);
	return set_string(field, text, err, errlen);
}

bool config_type_set(struct config_ctx *ctx, const struct config_key *key, void *base,
		const char *text, char *err, size_t errlen)
{
	void *field = field_of(key, base);

	switch (key->type) {
	case CT_NAME:
	case CT_PGNAME:
	case CT_IFNAME:
		return set_identifier(key->type, field, text, err, errlen);
	case CT_PATH:
		return set_path(key, field, text, err, errlen);
	case CT_CHOICE:
	case CT_ENUM:
		return set_choice(key, field, text, err, errlen);
	case CT_BOOL:
		return set_bool(field, text, err, errlen);
	case CT_INT:
		return set_int(key, field, text, err, errlen);
	case CT_SIZE:
		return set_size(key, field, text, err, errlen);
	case CT_DURATION:
		return set_duration(key, field, text, err, errlen);
	case CT_RATE:
		return set_rate(field, text, err, errlen);
	case CT_DAYS:
		return set_days(field, text, err, errlen);
	case CT_WINDOW:
		return set_window(key, base, field, text, err, errlen);
	case CT_CIDR:
		return set_cidr(field, text, err, errlen);
	case CT_ENDPOINT:
		return set_endpoint(field, text, err, errlen);
	case CT_LISTEN:
		return set_listen(field, text, err, errlen);
	case CT_KEY:
		return set_key(field, text, err, errlen);
	case CT_CONNINFO:
		if (!config_conninfo_check(text, err, errlen))
			return false;
		return set_string(field, text, err, errlen);
	case CT_SITEREF:
		return config_parse_siteref(ctx, text, field, err, errlen);
	case CT_GROUP:
		return set_group(field, text, err, errlen);
	case CT_SECTION:
	case CT_SITES:
	case CT_STREAMS:
	case CT_SCHEDULE:
	case CT_WINDOWS:
	case CT_TABLES:
	case CT_URLS:
	case CT_SITELIST:
	case CT_VIA:
		break;
	}
	snprintf(err, errlen, "expected %s", config_type_name(key->type));
	return false;
}

static void format_key64(FILE *out, const uint8_t key[WG_KEY_LEN])
{
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char text[48];
	size_t o = 0;

	for (size_t i = 0; i < WG_KEY_LEN; i += 3) {
		uint32_t v = (uint32_t)key[i] << 16;
		size_t n = WG_KEY_LEN - i < 3 ? WG_KEY_LEN - i : 3;

		if (n > 1)
			v |= (uint32_t)key[i + 1] << 8;
		if (n > 2)
			v |= key[i + 2];
		text[o++] = alphabet[(v >> 18) & 63];
		text[o++] = alphabet[(v >> 12) & 63];
		text[o++] = n > 1 ? alphabet[(v >> 6) & 63] : '=';
		text[o++] = n > 2 ? alphabet[v & 63] : '=';
	}
	text[o] = '\0';
	config_print_scalar(out, text);
}

static void format_int(FILE *out, const struct config_key *key, const void *field)
{
	switch (key->int_kind) {
	case CI_INT:
		fprintf(out, "%d", *(const int *)field);
		break;
	case CI_U16:
		fprintf(out, "%u", (unsigned)*(const uint16_t *)field);
		break;
	case CI_U32:
		fprintf(out, "%lu", (unsigned long)*(const uint32_t *)field);
		break;
	case CI_U64:
		fprintf(out, "%llu", (unsigned long long)*(const uint64_t *)field);
		break;
	}
}

/* host:port, an IPv6 address in brackets. */
static void format_endpoint(FILE *out, const struct config_endpoint *ep)
{
	char text[300];

	snprintf(text, sizeof(text), ep->host && strchr(ep->host, ':') ? "[%s]:%u" : "%s:%u",
			ep->host ? ep->host : "", (unsigned)ep->port);
	config_print_scalar(out, text);
}

/* The name of the site that field (an index into cfg's sites) refers to; "" when none. */
static void format_siteref(FILE *out, const void *field, const struct strait_config *cfg)
{
	size_t idx = *(const size_t *)field;

	config_print_scalar(out, cfg && idx < cfg->n_sites && cfg->sites[idx].name ?
			cfg->sites[idx].name : "");
}

void config_type_format(FILE *out, const struct config_key *key, const void *base,
		const struct strait_config *cfg)
{
	const void *field = cfield_of(key, base);
	char buf[CONFIG_VALUE_BUF + 8];
	int i;

	buf[0] = '\0';
	switch (key->type) {
	case CT_NAME:
	case CT_PGNAME:
	case CT_PATH:
	case CT_IFNAME:
	case CT_GROUP:
	case CT_CHOICE: {
		const char *s = *(char *const *)field;

		config_print_scalar(out, s ? s : "");
		return;
	}
	case CT_ENUM:
		memcpy(&i, field, sizeof(i));
		for (int c = 0; key->choices[c]; c++)
			if (c == i)
				fputs(key->choices[c], out);
		return;
	case CT_BOOL:
		fputs(*(const bool *)field ? "true" : "false", out);
		return;
	case CT_INT:
		format_int(out, key, field);
		return;
	case CT_SIZE:
		config_format_size(buf, sizeof(buf), *(const config_size *)field);
		break;
	case CT_DURATION:
		config_format_duration(buf, sizeof(buf), *(const config_msec *)field);
		break;
	case CT_RATE:
		config_format_rate(buf, sizeof(buf), field);
		break;
	case CT_DAYS:
		config_format_days(buf, sizeof(buf), *(const config_days *)field);
		break;
	case CT_WINDOW:
		config_format_window(buf, sizeof(buf), field);
		break;
	case CT_CIDR:
		config_format_cidr(buf, sizeof(buf), field);
		break;
	case CT_ENDPOINT:
		format_endpoint(out, field);
		return;
	case CT_LISTEN: {
		const char *s = *(char *const *)field;

		config_print_scalar(out, s ? s : "off");
		return;
	}
	case CT_KEY:
		format_key64(out, field);
		return;
	case CT_CONNINFO: {
		const char *s = *(char *const *)field;

		config_conninfo_print(out, s ? s : "");
		return;
	}
	case CT_SITEREF:
		format_siteref(out, field, cfg);
		return;
	case CT_SITELIST:
		config_format_to(out, base, cfg);
		return;
	case CT_VIA:
		config_format_via(out, base, cfg);
		return;
	case CT_SECTION:
	case CT_SITES:
	case CT_STREAMS:
	case CT_SCHEDULE:
	case CT_WINDOWS:
	case CT_TABLES:
	case CT_URLS:
		return;
	}
	config_print_scalar(out, buf);
}

void config_type_free(const struct config_key *key, void *base)
{
	void *field = field_of(key, base);

	switch (key->type) {
	case CT_NAME:
	case CT_PGNAME:
	case CT_PATH:
	case CT_IFNAME:
	case CT_CHOICE:
	case CT_LISTEN:
	case CT_CONNINFO:
	case CT_GROUP:
		free(*(char **)field);
		*(char **)field = NULL;
		break;
	case CT_ENDPOINT:
		free(((struct config_endpoint *)field)->host);
		((struct config_endpoint *)field)->host = NULL;
		break;
	case CT_TABLES:
	case CT_URLS: {
		char **tables = *(char ***)field;
		size_t *n = (size_t *)((char *)base + key->aux);

		for (size_t i = 0; tables && i < *n; i++)
			free(tables[i]);
		free(tables);
		*(char ***)field = NULL;
		*n = 0;
		break;
	}
	case CT_SITELIST:
		config_route_free(base);  /* to[] and the via[] beside it */
		break;
	case CT_WINDOWS:
	case CT_SCHEDULE:
		free(*(void **)field);
		*(void **)field = NULL;
		*(size_t *)((char *)base + key->aux) = 0;
		break;
	default:
		break;
	}
}

void config_defaults(enum config_scope scope, void *base)
{
	char err[CONFIG_ERR_MAX];

	for (size_t i = 0; i < config_n_keys; i++) {
		const struct config_key *k = &config_keys[i];

		/* Every default parses: tests/unit/test_config_schema.c checks it. */
		if (k->scope == scope && k->def)
			(void)config_type_set(NULL, k, base, k->def, err, sizeof(err));
	}
}
