/*
 * syncfilter.c — drops changes that a table's initial copy already holds
 * (see syncfilter.h).
 *
 * NOTES
 * The common case costs nothing: until a table was re-copied after a crash,
 * every sync LSN is the slot's consistent point, where streaming starts, so
 * the first Begin already passes them all and the filter stops reading.
 * While it reads, it touches only type bytes, Begin and Relation messages,
 * and the relation OID of each change (the four bytes after the type: no
 * streamed transactions here, so no xid before it); it copies the body only
 * from the first record it drops or rewrites.
 */
#include "replicator/syncfilter.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "replicator/pgoutput.h"

struct syncfilter_table {
	char *schema;
	char *table;
	uint64_t lsn;
};

struct syncfilter_rel {
	uint32_t oid;            /* 0: empty slot (InvalidOid is never sent) */
	char *name;              /* "schema\0table\0", from its Relation message */
	uint64_t lsn;            /* its table's sync LSN, 0 when none */
};

struct syncfilter {
	struct syncfilter_table *tables;
	size_t ntables;
	uint64_t max_lsn;

	struct syncfilter_rel *rels;   /* open addressing, linear probing */
	size_t rels_cap;               /* power of two */
	size_t nrels;

	bool in_txn;
	uint64_t final_lsn;
	bool passed;

	struct pgoutput_decoder dec;
	uint8_t *buf;
	size_t len;
	size_t cap;
	uint64_t dropped;
};

struct syncfilter *syncfilter_new(void)
{
	struct syncfilter *f = calloc(1, sizeof(*f));

	if (!f)
		return NULL;
	if (!pgoutput_decoder_init(&f->dec, 2)) {
		free(f);
		return NULL;
	}
	return f;
}

void syncfilter_free(struct syncfilter *f)
{
	if (!f)
		return;
	for (size_t i = 0; i < f->ntables; i++) {
		free(f->tables[i].schema);
		free(f->tables[i].table);
	}
	free(f->tables);
	for (size_t i = 0; i < f->rels_cap; i++)
		free(f->rels[i].name);
	free(f->rels);
	free(f->buf);
	free(f);
}

static uint64_t syncfilter_table_lsn(const struct syncfilter *f, const char *schema,
		const char *table)
{
	for (size_t i = 0; i < f->ntables; i++) {
		if (strcmp(f->tables[i].schema, schema) == 0 && strcmp(f->tables[i].table, table) == 0)
			return f->tables[i].lsn;
	}
	return 0;
}

bool syncfilter_set_table(struct syncfilter *f, const char *schema, const char *table,
		uint64_t sync_lsn)
{
	struct syncfilter_table *t = NULL, *grown;

	for (size_t i = 0; i < f->ntables; i++) {
		if (strcmp(f->tables[i].schema, schema) == 0 && strcmp(f->tables[i].table, table) == 0)
			t = &f->tables[i];
	}
	if (!t) {
		grown = realloc(f->tables, (f->ntables + 1) * sizeof(*grown));
		if (!grown)
			return false;
		f->tables = grown;
		t = &f->tables[f->ntables];
		t->schema = strdup(schema);
		t->table = strdup(table);
		if (!t->schema || !t->table) {
			free(t->schema);
			free(t->table);
			return false;
		}
		f->ntables++;
	}
	t->lsn = sync_lsn;
	f->max_lsn = 0;
	for (size_t i = 0; i < f->ntables; i++) {
		if (f->tables[i].lsn > f->max_lsn)
			f->max_lsn = f->tables[i].lsn;
	}
	for (size_t i = 0; i < f->rels_cap; i++) {
		const char *name = f->rels[i].name;

		if (f->rels[i].oid && strcmp(name, schema) == 0 &&
		    strcmp(name + strlen(name) + 1, table) == 0)
			f->rels[i].lsn = sync_lsn;
	}
	f->passed = false;
	return true;
}

void syncfilter_restart(struct syncfilter *f)
{
	f->in_txn = false;
	f->final_lsn = 0;
	f->passed = false;
}

bool syncfilter_active(const struct syncfilter *f)
{
	return !f->passed && f->max_lsn > 0;
}

uint64_t syncfilter_dropped(const struct syncfilter *f)
{
	return f->dropped;
}

/* ---- relation OID -> sync LSN ---- */

static size_t syncfilter_slot(uint32_t oid, size_t cap)
{
	return (size_t)(oid * 2654435761u) & (cap - 1);
}

/* Records (or replaces) a relation; name is taken over (malloc'd). */
static bool syncfilter_rel_put(struct syncfilter *f, uint32_t oid, char *name, uint64_t lsn)
{
	size_t i;

	if ((f->nrels + 1) * 2 > f->rels_cap) {
		size_t cap = f->rels_cap ? f->rels_cap * 2 : 64;
		struct syncfilter_rel *old = f->rels, *grown = calloc(cap, sizeof(*grown));
		size_t oldcap = f->rels_cap;

		if (!grown) {
			free(name);
			return false;
		}
		f->rels = grown;
		f->rels_cap = cap;
		f->nrels = 0;
		for (size_t k = 0; k < oldcap; k++)
			if (old[k].oid)  /* room enough: no allocation */
				(void)syncfilter_rel_put(f, old[k].oid, old[k].name, old[k].lsn);
		free(old);
	}
	for (i = syncfilter_slot(oid, f->rels_cap); f->rels[i].oid && f->rels[i].oid != oid;
	     i = (i + 1) & (f->rels_cap - 1))
		;
	if (!f->rels[i].oid)
		f->nrels++;
	free(f->rels[i].name);
	f->rels[i].oid = oid;
	f->rels[i].name = name;
	f->rels[i].lsn = lsn;
	return true;
}

static uint64_t syncfilter_rel_lsn(const struct syncfilter *f, uint32_t oid)
{
	if (!f->rels_cap || !oid)
		return 0;
	for (size_t i = syncfilter_slot(oid, f->rels_cap); f->rels[i].oid;
	     i = (i + 1) & (f->rels_cap - 1)) {
		if (f->rels[i].oid == oid)
			return f->rels[i].lsn;
	}
	return 0;
}

/* ---- output ---- */

static bool syncfilter_out(struct syncfilter *f, const void *data, size_t len)
{
	if (f->cap - f->len < len) {
		size_t cap = f->cap ? f->cap : 64 * 1024;
		uint8_t *grown;

		while (cap - f->len < len)
			cap *= 2;
		grown = realloc(f->buf, cap);
		if (!grown)
			return false;
		f->buf = grown;
		f->cap = cap;
	}
	memcpy(f->buf + f->len, data, len);
	f->len += len;
	return true;
}

static bool syncfilter_out_record(struct syncfilter *f, const uint8_t *msg, uint32_t len)
{
	uint8_t hdr[4] = { (uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8), (uint8_t)len };

	return syncfilter_out(f, hdr, 4) && syncfilter_out(f, msg, len);
}

enum syncfilter_verdict {
	SYNCFILTER_KEEP,
	SYNCFILTER_DROP,
	SYNCFILTER_REWRITE,      /* a Truncate that lost some relations: f->rewrite holds it */
	SYNCFILTER_PASS_REST,    /* a Begin past every sync LSN: this and all that follows */
	SYNCFILTER_ERROR,
};

static uint32_t syncfilter_u32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* A Relation message: the relation's name and sync LSN are kept for its changes. */
static enum syncfilter_verdict syncfilter_judge_relation(struct syncfilter *f,
		const struct pgoutput_msg *m, char *err, size_t errlen)
{
	size_t ns = strlen(m->relation.nspname), rn = strlen(m->relation.relname);
	char *name = malloc(ns + rn + 2);

	if (name) {
		memcpy(name, m->relation.nspname, ns + 1);
		memcpy(name + ns + 1, m->relation.relname, rn + 1);
	}
	if (!name || !syncfilter_rel_put(f, m->relation.oid, name,
			syncfilter_table_lsn(f, m->relation.nspname, m->relation.relname))) {
		snprintf(err, errlen, "out of memory");
		return SYNCFILTER_ERROR;
	}
	return SYNCFILTER_KEEP;
}

/*
 * A Truncate (msg, decoded as m) within a transaction: kept when no relation
 * in it was loaded after the transaction, dropped when all were, else
 * rewritten (*rw, malloc'd) without those.
 */
static enum syncfilter_verdict syncfilter_judge_truncate(struct syncfilter *f, const uint8_t *msg,
		const struct pgoutput_msg *m, uint8_t **rw, uint32_t *rw_len, char *err, size_t errlen)
{
	uint32_t kept = 0;
	uint8_t *out;

	for (uint32_t i = 0; i < m->truncate.nrelids; i++)
		if (syncfilter_rel_lsn(f, pgoutput_truncate_relid(m, i)) <= f->final_lsn)
			kept++;
	if (kept == m->truncate.nrelids)
		return SYNCFILTER_KEEP;
	f->dropped += m->truncate.nrelids - kept;
	if (kept == 0)
		return SYNCFILTER_DROP;
	/* 'T', u32 count, u8 options, u32 relids... */
	*rw_len = 1 + 4 + 1 + 4 * kept;
	out = malloc(*rw_len);
	if (!out) {
		snprintf(err, errlen, "out of memory");
		return SYNCFILTER_ERROR;
	}
	out[0] = PGOUTPUT_TRUNCATE;
	out[1] = (uint8_t)(kept >> 24);
	out[2] = (uint8_t)(kept >> 16);
	out[3] = (uint8_t)(kept >> 8);
	out[4] = (uint8_t)kept;
	out[5] = m->truncate.options;
	for (uint32_t i = 0, k = 0; i < m->truncate.nrelids; i++) {
		uint32_t relid = pgoutput_truncate_relid(m, i);

		if (syncfilter_rel_lsn(f, relid) > f->final_lsn)
			continue;
		memcpy(out + 6 + 4 * k, msg + 6 + 4 * i, 4);
		k++;
	}
	*rw = out;
	return SYNCFILTER_REWRITE;
}

/* Judges one message; *rw receives a rewritten Truncate (malloc'd). */
static enum syncfilter_verdict syncfilter_judge(struct syncfilter *f, const uint8_t *msg,
		uint32_t len, uint8_t **rw, uint32_t *rw_len, char *err, size_t errlen)
{
	struct pgoutput_msg m;
	enum pgoutput_status st;
	uint64_t lsn;

	switch (msg[0]) {
	case PGOUTPUT_BEGIN:
		st = pgoutput_decode(&f->dec, msg, len, &m, NULL, 0);
		if (st != PGOUTPUT_OK)
			goto malformed;
		f->in_txn = true;
		f->final_lsn = m.begin.final_lsn;
		if (m.begin.final_lsn >= f->max_lsn) {
			f->passed = true;
			return SYNCFILTER_PASS_REST;
		}
		return SYNCFILTER_KEEP;
	case PGOUTPUT_COMMIT:
		f->in_txn = false;
		return SYNCFILTER_KEEP;
	case PGOUTPUT_RELATION:
		st = pgoutput_decode(&f->dec, msg, len, &m, NULL, 0);
		if (st != PGOUTPUT_OK)
			goto malformed;
		return syncfilter_judge_relation(f, &m, err, errlen);
	case PGOUTPUT_INSERT:
	case PGOUTPUT_UPDATE:
	case PGOUTPUT_DELETE:
		if (len < 5) {
			st = PGOUTPUT_ERR_TRUNCATED;
			goto malformed;
		}
		lsn = syncfilter_rel_lsn(f, syncfilter_u32(msg + 1));
		if (f->in_txn && lsn > f->final_lsn) {
			f->dropped++;
			return SYNCFILTER_DROP;
		}
		return SYNCFILTER_KEEP;
	case PGOUTPUT_TRUNCATE:
		st = pgoutput_decode(&f->dec, msg, len, &m, NULL, 0);
		if (st != PGOUTPUT_OK)
			goto malformed;
		if (!f->in_txn)
			return SYNCFILTER_KEEP;
		return syncfilter_judge_truncate(f, msg, &m, rw, rw_len, err, errlen);
	default:
		return SYNCFILTER_KEEP;
	}
malformed:
	snprintf(err, errlen, "malformed %s message: %s", pgoutput_msg_type_name(msg[0]),
		 pgoutput_status_str(st));
	return SYNCFILTER_ERROR;
}

bool syncfilter_run(struct syncfilter *f, const uint8_t *body, size_t len,
		const uint8_t **out, size_t *out_len, char *err, size_t errlen)
{
	bool rewriting = false;
	size_t pos = 0;

	*out = body;
	*out_len = len;
	if (!syncfilter_active(f))
		return true;
	f->len = 0;
	while (pos < len) {
		size_t start = pos;
		uint32_t mlen;
		const uint8_t *msg;
		uint8_t *rw = NULL;
		uint32_t rw_len = 0;
		enum syncfilter_verdict v;

		if (len - pos < 4) {
			snprintf(err, errlen, "record header cut short at offset %zu", pos);
			return false;
		}
		mlen = syncfilter_u32(body + pos);
		if (mlen == 0 || mlen > len - pos - 4) {
			snprintf(err, errlen, "record length %u at offset %zu runs past the batch", mlen, pos);
			return false;
		}
		msg = body + pos + 4;
		pos += 4 + (size_t)mlen;
		v = syncfilter_judge(f, msg, mlen, &rw, &rw_len, err, errlen);
		if (v == SYNCFILTER_ERROR)
			return false;
		if (v == SYNCFILTER_KEEP) {
			if (rewriting && !syncfilter_out(f, body + start, pos - start))
				goto oom;
			continue;
		}
		if (v == SYNCFILTER_PASS_REST) {
			if (rewriting && !syncfilter_out(f, body + start, len - start))
				goto oom;
			break;
		}
		if (!rewriting) {
			/* first change to the batch: what came before goes as it was */
			if (!syncfilter_out(f, body, start)) {
				free(rw);
				goto oom;
			}
			rewriting = true;
		}
		if (v == SYNCFILTER_REWRITE) {
			bool ok = syncfilter_out_record(f, rw, rw_len);

			free(rw);
			if (!ok)
				goto oom;
		}
	}
	if (rewriting && f->len > 0) {
		*out = f->buf;
		*out_len = f->len;
	} else if (rewriting) {
		*out_len = 0;
	}
	return true;
oom:
	snprintf(err, errlen, "out of memory");
	return false;
}
