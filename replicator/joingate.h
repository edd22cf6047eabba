/*
 * joingate.h — the sink's gate for tables that join a stream after its
 * initial sync: which tables the stream has, and, for a table being copied
 * while the others stream on, its changes taken out of the batches and held
 * until its copy is loaded.
 *
 * Every table is one of three kinds:
 *   member   the stream has it (the initial sync or a join loaded it): its
 *            changes pass;
 *   joining  its copy is under way: its changes are held — taken out of the
 *            batch and handed to hold(), which keeps them in order — and go
 *            to the apply after the copy is loaded (joinhold.h);
 *   left     out of the publication as of an LSN: a change whose transaction
 *            commits before it passes (the last ones before the removal),
 *            one at or after it is unknown's (the table came back);
 *   unknown  none of these: the first change of such a table stops the gate
 *            (JOINGATE_UNKNOWN names the table), so no change of it is ever
 *            applied before its rows are there. The caller makes it joining
 *            and has the batch sent again.
 * Until joingate_guard() is on (the target's record of members is known),
 * unknown tables pass as members do.
 *
 * The held messages form whole transactions of their own, each joining
 * table's apart: the Begin of each transaction that changed the table, its
 * latest Relation message (first in each such transaction, again after a new
 * one), its changes in order, and the Commit; hold() names the table for
 * every message. A Truncate naming joining and other tables is split in two.
 *
 * Input and output are batch bodies as apply.h defines them (u32 length +
 * pgoutput message records, no streamed transactions); a transaction may
 * span bodies. Relation messages map OIDs to names across bodies.
 *
 * Ownership: joingate_new() returns an object freed by joingate_free().
 * Return conventions: bool, false when out of memory.
 */
#ifndef STRAIT_JOINGATE_H
#define STRAIT_JOINGATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JOINGATE_MUSTCHECK __attribute__((warn_unused_result))

struct joingate;

enum joingate_kind {
	JOINGATE_UNKNOWN_TABLE,
	JOINGATE_MEMBER,
	JOINGATE_JOINING,
	JOINGATE_LEFT,           /* out of the publication from an LSN on (joingate_set_left()) */
};

/* One held message (a record's payload); false: could not keep it (the run fails). */
typedef bool (*joingate_hold_fn)(void *arg, const char *schema, const char *table,
		const uint8_t *msg, size_t len);

struct joingate *joingate_new(joingate_hold_fn hold, void *arg);
void joingate_free(struct joingate *g);

/* Sets a table's kind (UNKNOWN_TABLE forgets it). */
bool joingate_set(struct joingate *g, const char *schema, const char *table,
		enum joingate_kind kind) JOINGATE_MUSTCHECK;
enum joingate_kind joingate_kind_of(const struct joingate *g, const char *schema,
		const char *table);
/* The table is out of the publication as of lsn. */
bool joingate_set_left(struct joingate *g, const char *schema, const char *table,
		uint64_t lsn) JOINGATE_MUSTCHECK;
/* On: unknown tables stop the gate. Off: they pass. */
void joingate_guard(struct joingate *g, bool on);
bool joingate_guarded(const struct joingate *g);
/* The i-th table the gate knows (i < joingate_count()). */
size_t joingate_count(const struct joingate *g);
enum joingate_kind joingate_at(const struct joingate *g, size_t i, const char **schema,
		const char **table);
/* Tables joining now. */
size_t joingate_joining_count(const struct joingate *g);
/* Whether the stream is inside a source transaction (between two, held changes may go in). */
bool joingate_in_txn(const struct joingate *g);
/* The source streams anew: no transaction is open. */
void joingate_restart(struct joingate *g);

enum joingate_result {
	JOINGATE_OK,
	JOINGATE_UNKNOWN,        /* joingate_unknown() names the table; nothing was held or passed */
	JOINGATE_BROKEN,         /* malformed body or out of memory: err says */
};

/*
 * Gates one body. *out is body itself when nothing was taken out, else the
 * gate's own buffer (valid until the next call). On UNKNOWN the state is as
 * before the call except for Relation messages learnt.
 */
enum joingate_result joingate_run(struct joingate *g, const uint8_t *body, size_t len,
		const uint8_t **out, size_t *out_len, char *err, size_t errlen) JOINGATE_MUSTCHECK;
/* After UNKNOWN: the table's schema and name (valid until the next run). */
void joingate_unknown(const struct joingate *g, const char **schema, const char **table);
/* Changes held so far (a Truncate's relation counts as one). */
uint64_t joingate_held(const struct joingate *g);

#endif
