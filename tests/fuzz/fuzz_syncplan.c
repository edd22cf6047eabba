/*
 * fuzz_syncplan.c — libFuzzer target for what a peer or a target database
 * hands the initial sync: the plan text (replicator/syncplan.c), origin names
 * read back from the target, and batch bodies through the sink's filter
 * (replicator/syncfilter.c).
 *
 * Beyond "no crash, no leak": an accepted plan encodes to a text that
 * decodes to the same plan (ranges included), and encodes to the same text
 * again; a parsed origin name is written back to a name that parses to the
 * same table
 * (quotes may be dropped where none are needed); the filter's output
 * no longer than its input and, for a well-framed input, holds a subset of
 * its records in order.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "replicator/syncfilter.h"
#include "replicator/syncplan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

static void fuzz_plan(const uint8_t *data, size_t size)
{
	struct syncplan p, q;
	struct syncplan_text a = { 0 }, b = { 0 };
	char err[256];

	if (!syncplan_decode((const char *)data, size, &p, err, sizeof(err))) {
		CHECK(err[0] != '\0' && p.n == 0);
		return;
	}
	CHECK(syncplan_encode(&p, &a));
	CHECK(syncplan_decode(a.data, a.len, &q, err, sizeof(err)));
	CHECK(q.generation == p.generation && q.n == p.n);
	for (size_t i = 0; i < p.n; i++) {
		CHECK(strcmp(p.tables[i].schema, q.tables[i].schema) == 0);
		CHECK(strcmp(p.tables[i].table, q.tables[i].table) == 0);
		CHECK(p.tables[i].copy == q.tables[i].copy);
		CHECK(p.tables[i].ncolumns == q.tables[i].ncolumns);
		CHECK(p.tables[i].ranges == q.tables[i].ranges);
		CHECK(p.tables[i].copied.count == q.tables[i].copied.count);
		for (uint32_t k = 0; k < p.tables[i].ranges; k++)
			CHECK(syncrange_set_has(&p.tables[i].copied, k) ==
			      syncrange_set_has(&q.tables[i].copied, k));
		for (size_t c = 0; c < p.tables[i].ncolumns; c++)
			CHECK(strcmp(p.tables[i].columns[c], q.tables[i].columns[c]) == 0);
	}
	CHECK(syncplan_encode(&q, &b));
	CHECK(a.len == b.len && memcmp(a.data, b.data, a.len) == 0);
	syncplan_free(&p);
	syncplan_free(&q);
	syncplan_text_free(&a);
	syncplan_text_free(&b);
}

static void fuzz_origin(const uint8_t *data, size_t size)
{
	char *name = malloc(size + 1), *schema, *table, *again;

	CHECK(name);
	memcpy(name, data, size);
	name[size] = '\0';
	if (syncplan_parse_origin("app", name, &schema, &table) == SYNCPLAN_ORIGIN_TABLE) {
		char *s2, *t2;

		CHECK(*schema && *table);
		again = syncplan_table_origin("app", schema, table);
		CHECK(again);
		CHECK(syncplan_parse_origin("app", again, &s2, &t2) == SYNCPLAN_ORIGIN_TABLE);
		CHECK(strcmp(s2, schema) == 0 && strcmp(t2, table) == 0);
		free(s2);
		free(t2);
		free(again);
		free(schema);
		free(table);
	} else {
		CHECK(!schema && !table);
	}
	free(name);
}

/* Whether data is a sequence of whole records (the filter reads no further than it must). */
static int well_framed(const uint8_t *data, size_t size)
{
	size_t pos = 0;

	while (pos < size) {
		uint32_t l;

		if (size - pos < 4)
			return 0;
		l = (uint32_t)data[pos] << 24 | (uint32_t)data[pos + 1] << 16 |
		    (uint32_t)data[pos + 2] << 8 | data[pos + 3];
		if (l == 0 || l > size - pos - 4)
			return 0;
		pos += 4 + l;
	}
	return 1;
}

static void fuzz_filter(const uint8_t *data, size_t size)
{
	struct syncfilter *f = syncfilter_new();
	const uint8_t *out;
	size_t len, pos = 0, ipos = 0;
	char err[256];

	CHECK(f);
	CHECK(syncfilter_set_table(f, "public", "t", 0x2000));
	CHECK(syncfilter_set_table(f, "s", "u", 0x10));
	if (syncfilter_run(f, data, size, &out, &len, err, sizeof(err))) {
		CHECK(len <= size);
		if (!well_framed(data, size)) {
			/* past the last sync LSN the rest passes unread, as it came */
			syncfilter_free(f);
			return;
		}
		/* whole records; each kept one appears in the input in the same order */
		while (pos < len) {
			uint32_t l;

			CHECK(len - pos >= 4);
			l = (uint32_t)out[pos] << 24 | (uint32_t)out[pos + 1] << 16 |
			    (uint32_t)out[pos + 2] << 8 | out[pos + 3];
			CHECK(l > 0 && l <= len - pos - 4);
			if (out[pos + 4] != 'T') {
				for (;;) {
					uint32_t il;

					CHECK(ipos < size);
					il = (uint32_t)data[ipos] << 24 | (uint32_t)data[ipos + 1] << 16 |
					     (uint32_t)data[ipos + 2] << 8 | data[ipos + 3];
					ipos += 4 + il;
					if (il == l && memcmp(data + ipos - il, out + pos + 4, l) == 0)
						break;
				}
			}
			pos += 4 + l;
		}
	} else {
		CHECK(err[0] != '\0');
	}
	syncfilter_free(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_plan(data, size);
	fuzz_origin(data, size);
	fuzz_filter(data, size);
	return 0;
}
