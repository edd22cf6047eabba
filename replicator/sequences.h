/*
 * sequences.h — carrying sequence values across, since logical replication
 * does not.
 *
 * The source side reads, every few seconds, the last value of the sequences
 * that belong to the stream's publication — every user sequence for a
 * publication FOR ALL TABLES, else the sequences owned by the published
 * tables' columns (serial and identity columns) — and hands over the ones that
 * moved. The sink side raises each on the target with setval(), and never
 * lowers one: a promoted replica must not hand out keys that already exist,
 * and a value that arrives late must not undo a newer one.
 *
 * Ownership: each object is the caller's, freed with its _free(), never from
 * inside its own callback.
 */
#ifndef STRAIT_SEQUENCES_H
#define STRAIT_SEQUENCES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct json_out;

struct seq_value {
	char *schema;
	char *name;
	int64_t value;
};

/* ---- source side ---- */

struct seq_reader;

/* Called with the sequences whose value changed since the last call (all of them the first time). */
typedef void (*seq_changed_fn)(void *arg, const struct seq_value *seqs, size_t n);

/* Polls every interval_ms; NULL when out of memory. */
struct seq_reader *seq_reader_new(struct event_base *base, const char *conninfo,
		const char *stream, const char *publication, unsigned interval_ms,
		seq_changed_fn cb, void *arg);
/* Forget what was sent: the next poll reports every sequence (after a new link). */
void seq_reader_resend_all(struct seq_reader *r);
void seq_reader_free(struct seq_reader *r);

/* ---- sink side ---- */

struct seq_writer;

struct seq_writer *seq_writer_new(struct event_base *base, const char *conninfo,
		const char *stream);
/*
 * Raises the target's sequences to at least these values. Values that arrive
 * while a previous update runs are merged and sent next (keeping the highest).
 */
bool seq_writer_apply(struct seq_writer *w, const struct seq_value *seqs, size_t n);
void seq_writer_status_json(const struct seq_writer *w, struct json_out *j);
void seq_writer_free(struct seq_writer *w);

/* The statement seq_writer_apply() runs; exposed for unit tests. Caller frees. */
char *seq_writer_sql(const struct seq_value *seqs, size_t n);

#endif
