/*
 * syncplan.c — the initial sync's plan text and origin names (see
 * syncplan.h).
 */
#include "replicator/syncplan.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SYNCPLAN_HEADER "strait-sync-plan"
#define SYNCPLAN_ORIGIN_PREFIX "strait_"
#define SYNCPLAN_ORIGIN_SUFFIX ":sync"

#define SYNCPLAN_STR(x) #x
#define SYNCPLAN_XSTR(x) SYNCPLAN_STR(x)

void syncplan_init(struct syncplan *p)
{
	memset(p, 0, sizeof(*p));
}

static void syncplan_table_free(struct syncplan_table *t)
{
	free(t->schema);
	free(t->table);
	for (size_t i = 0; i < t->ncolumns; i++)
		free(t->columns[i]);
	free(t->columns);
	syncrange_set_free(&t->copied);
}

void syncplan_free(struct syncplan *p)
{
	for (size_t i = 0; i < p->n; i++)
		syncplan_table_free(&p->tables[i]);
	free(p->tables);
	syncplan_init(p);
}

bool syncplan_add(struct syncplan *p, const char *schema, const char *table, bool copy)
{
	struct syncplan_table *t;

	if (p->n == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 16;
		struct syncplan_table *grown = realloc(p->tables, cap * sizeof(*grown));

		if (!grown)
			return false;
		p->tables = grown;
		p->cap = cap;
	}
	t = &p->tables[p->n];
	memset(t, 0, sizeof(*t));
	t->schema = strdup(schema);
	t->table = strdup(table);
	t->copy = copy;
	if (!t->schema || !t->table) {
		syncplan_table_free(t);
		return false;
	}
	p->n++;
	return true;
}

bool syncplan_add_column(struct syncplan *p, const char *column)
{
	struct syncplan_table *t;
	char **grown;
	char *copy;

	if (p->n == 0)
		return false;
	t = &p->tables[p->n - 1];
	copy = strdup(column);
	if (!copy)
		return false;
	grown = realloc(t->columns, (t->ncolumns + 1) * sizeof(*grown));
	if (!grown) {
		free(copy);
		return false;
	}
	t->columns = grown;
	t->columns[t->ncolumns++] = copy;
	return true;
}

bool syncplan_in_ranges(struct syncplan *p, uint32_t ranges)
{
	struct syncplan_table *t;

	if (p->n == 0 || ranges < 2 || ranges > SYNCRANGE_MAX)
		return false;
	t = &p->tables[p->n - 1];
	if (!t->copy || t->ranges)
		return false;
	if (!syncrange_set_init(&t->copied, ranges))
		return false;
	t->ranges = ranges;
	return true;
}

static bool syncplan_name_eq(const char *name, const char *s, size_t len)
{
	return strlen(name) == len && memcmp(name, s, len) == 0;
}

long syncplan_find(const struct syncplan *p, const char *schema, size_t schema_len,
		const char *table, size_t table_len)
{
	for (size_t i = 0; i < p->n; i++) {
		if (syncplan_name_eq(p->tables[i].schema, schema, schema_len) &&
		    syncplan_name_eq(p->tables[i].table, table, table_len))
			return (long)i;
	}
	return -1;
}

/* ---- text ---- */

bool syncplan_text_append(struct syncplan_text *t, const void *data, size_t len)
{
	if (t->cap - t->len < len + 1) {
		size_t cap = t->cap ? t->cap : 1024;
		char *grown;

		while (cap - t->len < len + 1)
			cap *= 2;
		grown = realloc(t->data, cap);
		if (!grown)
			return false;
		t->data = grown;
		t->cap = cap;
	}
	memcpy(t->data + t->len, data, len);
	t->len += len;
	t->data[t->len] = '\0';
	return true;
}

void syncplan_text_free(struct syncplan_text *t)
{
	free(t->data);
	memset(t, 0, sizeof(*t));
}

/* A TAB and the field, escaped (tab_first false for a line's first field). */
static bool syncplan_put_field(struct syncplan_text *out, const char *s, bool tab_first)
{
	if (tab_first && !syncplan_text_append(out, "\t", 1))
		return false;
	for (; *s; s++) {
		const char *esc = NULL;

		switch (*s) {
		case '\\': esc = "\\\\"; break;
		case '\t': esc = "\\t"; break;
		case '\n': esc = "\\n"; break;
		case '\r': esc = "\\r"; break;
		default: break;
		}
		if (esc ? !syncplan_text_append(out, esc, 2) : !syncplan_text_append(out, s, 1))
			return false;
	}
	return true;
}

/* A split table's range count and the list of those copied, as two fields. */
static bool syncplan_put_ranges(struct syncplan_text *out, const struct syncplan_table *t)
{
	char num[16];
	char *list = syncrange_set_format(&t->copied);
	bool ok;

	snprintf(num, sizeof(num), "%" PRIu32, t->ranges);
	ok = list && syncplan_put_field(out, num, true) && syncplan_put_field(out, list, true);
	free(list);
	return ok;
}

bool syncplan_encode(const struct syncplan *p, struct syncplan_text *out)
{
	char head[64];
	int n = snprintf(head, sizeof(head), SYNCPLAN_HEADER "\t%d\t%" PRIu32 "\n",
			 SYNCPLAN_VERSION, p->generation);

	if (!syncplan_text_append(out, head, (size_t)n))
		return false;
	for (size_t i = 0; i < p->n; i++) {
		const struct syncplan_table *t = &p->tables[i];

		if (!syncplan_put_field(out, !t->copy ? "k" : t->ranges ? "r" : "c", false) ||
		    !syncplan_put_field(out, t->schema, true) ||
		    !syncplan_put_field(out, t->table, true) ||
		    (t->copy && t->ranges && !syncplan_put_ranges(out, t)))
			return false;
		for (size_t c = 0; t->copy && c < t->ncolumns; c++)
			if (!syncplan_put_field(out, t->columns[c], true))
				return false;
		if (!syncplan_text_append(out, "\n", 1))
			return false;
	}
	return true;
}

static bool syncplan_fail(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static bool syncplan_fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return false;
}

/*
 * Unescapes the field text[0..len) into a new string (*out). False for a bad
 * escape, a NUL byte, or out of memory (*oom set).
 */
static bool syncplan_unescape(const char *text, size_t len, char **out, bool *oom)
{
	char *s = malloc(len + 1);
	size_t n = 0;

	*out = NULL;
	if (!s) {
		*oom = true;
		return false;
	}
	for (size_t i = 0; i < len; i++) {
		char c = text[i];

		if (c == '\0')
			goto bad;
		if (c == '\\') {
			if (++i == len)
				goto bad;
			switch (text[i]) {
			case '\\': c = '\\'; break;
			case 't': c = '\t'; break;
			case 'n': c = '\n'; break;
			case 'r': c = '\r'; break;
			default: goto bad;
			}
		}
		s[n++] = c;
	}
	s[n] = '\0';
	*out = s;
	return true;
bad:
	free(s);
	return false;
}

/* Splits one line into fields (pointers into the line); false when over max. */
static bool syncplan_split(const char *line, size_t len, const char **fields, size_t *lens,
		size_t max, size_t *nfields)
{
	size_t n = 0, start = 0;

	for (size_t i = 0; i <= len; i++) {
		if (i < len && line[i] != '\t')
			continue;
		if (n == max)
			return false;
		fields[n] = line + start;
		lens[n] = i - start;
		n++;
		start = i + 1;
	}
	*nfields = n;
	return true;
}

#define SYNCPLAN_MAX_FIELDS (5 + SYNCPLAN_MAX_COLUMNS)

/* One line of a plan, split at its tabs. */
struct syncplan_line {
	const char **fields;
	size_t *lens;
	size_t nf;
	size_t lineno;
};

/* The first line: the header, the version and the generation. */
static bool syncplan_decode_header(const struct syncplan_line *ln, struct syncplan *out,
		char *err, size_t errlen)
{
	char num[16];
	unsigned long long gen;
	char *end;

	if (ln->nf != 3 || !syncplan_name_eq(SYNCPLAN_HEADER, ln->fields[0], ln->lens[0]) ||
	    !syncplan_name_eq(SYNCPLAN_XSTR(SYNCPLAN_VERSION), ln->fields[1], ln->lens[1]))
		return syncplan_fail(err, errlen, "not a version %d plan", SYNCPLAN_VERSION);
	if (ln->lens[2] == 0 || ln->lens[2] >= sizeof(num))
		return syncplan_fail(err, errlen, "bad generation");
	memcpy(num, ln->fields[2], ln->lens[2]);
	num[ln->lens[2]] = '\0';
	if (num[0] < '0' || num[0] > '9' ||
	    (gen = strtoull(num, &end, 10), *end != '\0') || gen > UINT32_MAX)
		return syncplan_fail(err, errlen, "bad generation");
	out->generation = (uint32_t)gen;
	return true;
}

/* The columns of a copied table's line (its fields from first on) onto the last table. */
static bool syncplan_decode_columns(const struct syncplan_line *ln, size_t first,
		struct syncplan *out, bool *oom, char *err, size_t errlen)
{
	for (size_t i = first; i < ln->nf; i++) {
		char *col = NULL;
		bool added;

		if (!syncplan_unescape(ln->fields[i], ln->lens[i], &col, oom)) {
			if (!*oom)
				syncplan_fail(err, errlen, "line %zu: bad escape or NUL byte", ln->lineno);
			return false;
		}
		if (!*col) {
			free(col);
			return syncplan_fail(err, errlen, "line %zu: empty column name", ln->lineno);
		}
		added = syncplan_add_column(out, col);
		free(col);
		if (!added) {
			*oom = true;
			return false;
		}
	}
	return true;
}

/* An 'r' line's range count and list (its fourth and fifth fields) onto the last table. */
static bool syncplan_decode_ranges(const struct syncplan_line *ln, struct syncplan *out,
		char *err, size_t errlen)
{
	struct syncplan_table *t = &out->tables[out->n - 1];
	uint32_t n = 0;

	for (size_t i = 0; i < ln->lens[3]; i++) {
		char c = ln->fields[3][i];

		if (c < '0' || c > '9' || (i == 0 && c == '0') || n > SYNCRANGE_MAX)
			return syncplan_fail(err, errlen, "line %zu: bad range count", ln->lineno);
		n = n * 10 + (uint32_t)(c - '0');
	}
	if (n < 2 || n > SYNCRANGE_MAX)
		return syncplan_fail(err, errlen, "line %zu: range count not from 2 to %u", ln->lineno,
				     SYNCRANGE_MAX);
	/* a list is at most SYNCRANGE_MAX bits: a failure is the text's */
	if (!syncrange_set_parse(ln->fields[4], ln->lens[4], n, &t->copied))
		return syncplan_fail(err, errlen, "line %zu: bad list of ranges", ln->lineno);
	t->ranges = n;
	return true;
}

/*
 * A table's line: c (copy whole, with columns), r (copy in ranges, with the
 * ranges and columns) or k (keep), schema, table; seen holds those read.
 */
static bool syncplan_decode_table(const struct syncplan_line *ln, struct syncplan *out,
		struct syncplan_set *seen, bool *oom, char *err, size_t errlen)
{
	bool copy, ranged, added;
	char *schema = NULL, *table = NULL;

	if (ln->nf < 3 || ln->lens[0] != 1 || (ln->fields[0][0] != 'c' && ln->fields[0][0] != 'k' &&
					       ln->fields[0][0] != 'r'))
		return syncplan_fail(err, errlen, "line %zu: expected c, r or k, schema and table",
				     ln->lineno);
	copy = ln->fields[0][0] != 'k';
	ranged = ln->fields[0][0] == 'r';
	if (ranged && ln->nf < 5)
		return syncplan_fail(err, errlen, "line %zu: a table in ranges needs their count and list",
				     ln->lineno);
	if (!copy && ln->nf != 3)
		return syncplan_fail(err, errlen, "line %zu: a kept table lists no columns", ln->lineno);
	if (out->n >= SYNCPLAN_MAX_TABLES)
		return syncplan_fail(err, errlen, "more than %u tables", SYNCPLAN_MAX_TABLES);
	if (!syncplan_unescape(ln->fields[1], ln->lens[1], &schema, oom) ||
	    !syncplan_unescape(ln->fields[2], ln->lens[2], &table, oom)) {
		free(schema);
		if (!*oom)
			syncplan_fail(err, errlen, "line %zu: bad escape or NUL byte", ln->lineno);
		return false;
	}
	if (!*schema || !*table) {
		free(schema);
		free(table);
		return syncplan_fail(err, errlen, "line %zu: empty name", ln->lineno);
	}
	if (syncplan_set_get(seen, schema, strlen(schema), table, strlen(table))) {
		syncplan_fail(err, errlen, "line %zu: table listed twice", ln->lineno);
		free(schema);
		free(table);
		return false;
	}
	added = syncplan_set_put(seen, schema, strlen(schema), table, strlen(table), 0) &&
		syncplan_add(out, schema, table, copy);
	free(schema);
	free(table);
	if (!added) {
		*oom = true;
		return false;
	}
	if (ln->nf - (ranged ? 5 : 3) > SYNCPLAN_MAX_COLUMNS)
		return syncplan_fail(err, errlen, "line %zu: more than %u columns", ln->lineno,
				     SYNCPLAN_MAX_COLUMNS);
	if (ranged && !syncplan_decode_ranges(ln, out, err, errlen))
		return false;
	return syncplan_decode_columns(ln, ranged ? 5 : 3, out, oom, err, errlen);
}

bool syncplan_decode(const char *text, size_t len, struct syncplan *out,
		char *err, size_t errlen)
{
	struct syncplan_line ln = { 0 };
	size_t pos = 0;
	bool oom = false, ok = false;
	struct syncplan_set seen = { 0 };

	syncplan_init(out);
	if (len > SYNCPLAN_MAX_TEXT)
		return syncplan_fail(err, errlen, "plan of %zu bytes is over the limit", len);
	ln.fields = malloc(SYNCPLAN_MAX_FIELDS * sizeof(*ln.fields));
	ln.lens = malloc(SYNCPLAN_MAX_FIELDS * sizeof(*ln.lens));
	if (!ln.fields || !ln.lens) {
		oom = true;
		goto out;
	}
	while (pos < len) {
		const char *line = text + pos, *nl = memchr(line, '\n', len - pos);
		size_t llen;

		if (!nl) {
			syncplan_fail(err, errlen, "line %zu does not end with a newline", ln.lineno + 1);
			goto out;
		}
		llen = (size_t)(nl - line);
		pos += llen + 1;
		ln.lineno++;
		if (!syncplan_split(line, llen, ln.fields, ln.lens, SYNCPLAN_MAX_FIELDS, &ln.nf)) {
			syncplan_fail(err, errlen, "line %zu has too many fields", ln.lineno);
			goto out;
		}
		if (ln.lineno == 1 ? !syncplan_decode_header(&ln, out, err, errlen) :
		    !syncplan_decode_table(&ln, out, &seen, &oom, err, errlen))
			goto out;
	}
	if (ln.lineno == 0) {
		syncplan_fail(err, errlen, "empty plan");
		goto out;
	}
	ok = true;
out:
	if (oom)
		syncplan_fail(err, errlen, "out of memory");
	if (!ok)
		syncplan_free(out);
	syncplan_set_free(&seen);
	free(ln.fields);
	free(ln.lens);
	return ok;
}

/* ---- sets of tables ---- */

static uint64_t syncplan_hash(const char *schema, size_t schema_len, const char *table,
		size_t table_len)
{
	uint64_t h = 14695981039346656037u;        /* FNV-1a */

	for (size_t i = 0; i < schema_len; i++)
		h = (h ^ (uint8_t)schema[i]) * 1099511628211u;
	h = (h ^ 0xffu) * 1099511628211u;          /* between the names: no NUL inside them */
	for (size_t i = 0; i < table_len; i++)
		h = (h ^ (uint8_t)table[i]) * 1099511628211u;
	return h;
}

static size_t syncplan_set_slot(const struct syncplan_set *s, const char *schema,
		size_t schema_len, const char *table, size_t table_len)
{
	size_t i = (size_t)syncplan_hash(schema, schema_len, table, table_len) & (s->cap - 1);

	while (s->slots[i].schema &&
	       !(syncplan_name_eq(s->slots[i].schema, schema, schema_len) &&
		 syncplan_name_eq(s->slots[i].table, table, table_len)))
		i = (i + 1) & (s->cap - 1);
	return i;
}

bool syncplan_set_put(struct syncplan_set *s, const char *schema, size_t schema_len,
		const char *table, size_t table_len, uint64_t value)
{
	struct syncplan_set_entry *e;
	size_t i;

	if ((s->n + 1) * 2 > s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 64;
		struct syncplan_set grown = { calloc(cap, sizeof(*grown.slots)), cap, 0 };

		if (!grown.slots)
			return false;
		for (size_t k = 0; k < s->cap; k++) {
			struct syncplan_set_entry *old = &s->slots[k];

			if (!old->schema)
				continue;
			i = syncplan_set_slot(&grown, old->schema, strlen(old->schema), old->table,
					      strlen(old->table));
			grown.slots[i] = *old;
			grown.n++;
		}
		free(s->slots);
		*s = grown;
	}
	i = syncplan_set_slot(s, schema, schema_len, table, table_len);
	e = &s->slots[i];
	if (!e->schema) {
		char *sc = strndup(schema, schema_len), *tb = strndup(table, table_len);

		if (!sc || !tb) {
			free(sc);
			free(tb);
			return false;
		}
		e->schema = sc;
		e->table = tb;
		s->n++;
	}
	e->value = value;
	return true;
}

const struct syncplan_set_entry *syncplan_set_get(const struct syncplan_set *s,
		const char *schema, size_t schema_len, const char *table, size_t table_len)
{
	size_t i;

	if (!s->cap)
		return NULL;
	i = syncplan_set_slot(s, schema, schema_len, table, table_len);
	return s->slots[i].schema ? &s->slots[i] : NULL;
}

void syncplan_set_free(struct syncplan_set *s)
{
	for (size_t i = 0; i < s->cap; i++) {
		free(s->slots[i].schema);
		free(s->slots[i].table);
	}
	free(s->slots);
	memset(s, 0, sizeof(*s));
}

/* ---- ranges loaded, per table ---- */

static struct syncplan_ranges_entry *syncplan_ranges_find(const struct syncplan_ranges *r,
		const char *schema, size_t schema_len, const char *table, size_t table_len)
{
	const struct syncplan_set_entry *e = syncplan_set_get(&r->index, schema, schema_len, table,
							      table_len);

	return e ? &r->v[e->value] : NULL;
}

bool syncplan_ranges_add(struct syncplan_ranges *r, const char *schema, size_t schema_len,
		const char *table, size_t table_len, uint64_t lsn, uint32_t range, uint32_t ranges)
{
	struct syncplan_ranges_entry *e;

	if (ranges < 2 || ranges > SYNCRANGE_MAX || range >= ranges)
		return false;
	e = syncplan_ranges_find(r, schema, schema_len, table, table_len);
	if (!e) {
		if (r->n == r->cap) {
			size_t cap = r->cap ? r->cap * 2 : 16;
			struct syncplan_ranges_entry *grown = realloc(r->v, cap * sizeof(*grown));

			if (!grown)
				return false;
			r->v = grown;
			r->cap = cap;
		}
		if (!syncplan_set_put(&r->index, schema, schema_len, table, table_len, r->n))
			return false;
		e = &r->v[r->n++];
		memset(e, 0, sizeof(*e));
	}
	if (e->got.n != ranges || e->lsn != lsn) {
		syncrange_set_free(&e->got);
		if (!syncrange_set_init(&e->got, ranges))
			return false;
		e->lsn = lsn;
	}
	(void)syncrange_set_add(&e->got, range);
	return true;
}

const struct syncplan_ranges_entry *syncplan_ranges_get(const struct syncplan_ranges *r,
		const char *schema, size_t schema_len, const char *table, size_t table_len)
{
	const struct syncplan_ranges_entry *e = syncplan_ranges_find(r, schema, schema_len, table,
								     table_len);

	return e && e->got.n ? e : NULL;
}

void syncplan_ranges_drop(struct syncplan_ranges *r, const char *schema, size_t schema_len,
		const char *table, size_t table_len)
{
	struct syncplan_ranges_entry *e = syncplan_ranges_find(r, schema, schema_len, table,
							       table_len);

	if (e) {
		syncrange_set_free(&e->got);
		e->lsn = 0;
	}
}

void syncplan_ranges_free(struct syncplan_ranges *r)
{
	for (size_t i = 0; i < r->n; i++)
		syncrange_set_free(&r->v[i].got);
	free(r->v);
	syncplan_set_free(&r->index);
	memset(r, 0, sizeof(*r));
}

/* ---- origin names ---- */

/* Whether quote_ident() leaves name alone: [a-z_][a-z0-9_$]* (keywords aside). */
static bool syncplan_plain(const char *name)
{
	if (!((name[0] >= 'a' && name[0] <= 'z') || name[0] == '_'))
		return false;
	for (const char *s = name; *s; s++) {
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
			return false;
	}
	return true;
}

static bool syncplan_put_ident(struct syncplan_text *t, const char *name)
{
	if (syncplan_plain(name))
		return syncplan_text_append(t, name, strlen(name));
	if (!syncplan_text_append(t, "\"", 1))
		return false;
	for (const char *s = name; *s; s++) {
		if (*s == '"' && !syncplan_text_append(t, "\"", 1))
			return false;
		if (!syncplan_text_append(t, s, 1))
			return false;
	}
	return syncplan_text_append(t, "\"", 1);
}

char *syncplan_qualified(const char *schema, const char *table)
{
	struct syncplan_text t = { 0 };

	if (!syncplan_put_ident(&t, schema) || !syncplan_text_append(&t, ".", 1) ||
	    !syncplan_put_ident(&t, table)) {
		syncplan_text_free(&t);
		return NULL;
	}
	return t.data;
}

char *syncplan_stream_origin(const char *stream)
{
	char *out = NULL;

	if (asprintf(&out, SYNCPLAN_ORIGIN_PREFIX "%s" SYNCPLAN_ORIGIN_SUFFIX, stream) < 0)
		return NULL;
	return out;
}

char *syncplan_table_origin(const char *stream, const char *schema, const char *table)
{
	char *q = syncplan_qualified(schema, table), *out = NULL;

	if (q && asprintf(&out, SYNCPLAN_ORIGIN_PREFIX "%s" SYNCPLAN_ORIGIN_SUFFIX ":%s",
			  stream, q) < 0)
		out = NULL;
	free(q);
	return out;
}

/* Parses one identifier at *s as syncplan_put_ident() wrote it; NULL if malformed. */
static char *syncplan_get_ident(const char **s)
{
	const char *p = *s;
	struct syncplan_text t = { 0 };

	if (*p == '"') {
		for (p++;; p++) {
			if (*p == '\0')
				goto bad;
			if (*p == '"') {
				if (p[1] != '"')
					break;
				p++;
			}
			if (!syncplan_text_append(&t, p, 1))
				goto bad;
		}
		p++;
		if (t.len == 0)
			goto bad;
	} else {
		const char *start = p;

		if (!((*p >= 'a' && *p <= 'z') || *p == '_'))
			goto bad;     /* quote_ident() would have quoted it */
		while ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_')
			p++;
		if (p == start || !syncplan_text_append(&t, start, (size_t)(p - start)))
			goto bad;
	}
	*s = p;
	return t.data;
bad:
	syncplan_text_free(&t);
	return NULL;
}

enum syncplan_origin_kind syncplan_parse_origin(const char *stream, const char *name,
		char **schema, char **table)
{
	char *prefix = syncplan_stream_origin(stream);
	size_t plen;
	const char *p;

	*schema = *table = NULL;
	if (!prefix)
		return SYNCPLAN_ORIGIN_OTHER;
	plen = strlen(prefix);
	if (strncmp(name, prefix, plen) != 0) {
		free(prefix);
		return SYNCPLAN_ORIGIN_OTHER;
	}
	free(prefix);
	p = name + plen;
	if (*p == '\0')
		return SYNCPLAN_ORIGIN_STREAM;
	if (*p++ != ':')
		return SYNCPLAN_ORIGIN_OTHER;
	*schema = syncplan_get_ident(&p);
	if (!*schema || *p++ != '.')
		goto bad;
	*table = syncplan_get_ident(&p);
	if (!*table || *p != '\0')
		goto bad;
	return SYNCPLAN_ORIGIN_TABLE;
bad:
	free(*schema);
	free(*table);
	*schema = *table = NULL;
	return SYNCPLAN_ORIGIN_OTHER;
}
