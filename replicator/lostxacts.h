/*
 * lostxacts.h — the transactions an old primary committed that the new
 * primary never applied, written out as a SQL file for the operator.
 *
 * After a failover the old primary may hold commits that never crossed the
 * link. When it rejoins, nothing may apply them automatically (the new
 * primary has moved on); instead they are rendered as plain SQL, one block
 * per transaction in commit order, for a person to read and reconcile:
 *
 *     -- transaction 1234, commit LSN 0/1A2B3C8 (ends 0/1A2B3F0), committed 2026-12-03T13:51:15.123456Z
 *     BEGIN;
 *     INSERT INTO "public"."t" ("id", "v") OVERRIDING SYSTEM VALUE VALUES ('1', 'it''s');
 *     UPDATE "public"."t" SET "v" = NULL WHERE "id" = '1';
 *     DELETE FROM "public"."t" WHERE "id" = '2';
 *     COMMIT;
 *
 * Input. pgoutput messages (replicator/pgoutput.h; protocol 1 or 2 without
 * streamed transactions), from two places that the owner may combine:
 *   - the old primary's slot, peeked (lostxacts_peek_start()): the slot is
 *     not advanced, so running this twice gives the same file;
 *   - raw batch bodies (lostxacts_feed_batch()), e.g. the local spool's
 *     unsent records.
 * Both feed one renderer with one relation cache (relation OIDs are the old
 * primary's either way). A transaction is kept when its commit end LSN is
 * above options.after_lsn (what the new primary applied: the apply engine's
 * origin records end LSNs) and its commit LSN was not kept before (the spool
 * and the slot overlap). Feed in stream order within each source; a batch
 * whose Relation message came in an earlier batch that was not fed renders
 * its changes as a warning comment (counted in stats.unrendered), never as a
 * guess.
 *
 * Rendering. Values arrive as text: each becomes a quoted literal ('it''s';
 * E'a\\b' when it holds a backslash, so it means the same whatever
 * standard_conforming_strings says), NULL as NULL; identifiers are always
 * double-quoted. INSERT names every column it sends (with OVERRIDING SYSTEM
 * VALUE, so identity columns keep the source's value). UPDATE sets the
 * columns the new tuple sends, leaving out unchanged TOAST values and, when
 * the old row is known (REPLICA IDENTITY FULL), the columns that kept their
 * value. UPDATE and DELETE find the row by the old key when pgoutput sent it
 * (the key changed), else by the key columns of the new tuple. Under
 * REPLICA IDENTITY FULL they compare every column (IS NULL for NULLs,
 * by text form for types without an equality operator) and touch one row:
 * WHERE ctid = (SELECT ctid ... LIMIT 1), as the apply engine does. TRUNCATE
 * lists its relations (with RESTART IDENTITY / CASCADE as sent). Logical
 * decoding messages are noted as comments. Transactions with an origin whose
 * name starts with "strait_" were themselves applied by strait from another
 * site, so they are not lost: they are counted and left out, as are
 * transactions without changes.
 *
 * The file sets client_encoding (options.encoding, else the database's
 * encoding as the peek reports it, else UTF8), datestyle ISO and
 * intervalstyle postgres, and never uses psql meta-commands; comments never
 * carry raw names or control characters. Values are the old primary's text
 * output: the peek's session sets datestyle ISO, intervalstyle postgres,
 * extra_float_digits 3 and bytea_output hex first, so they read back exactly;
 * values fed from batches are as the walsender wrote them (the server's
 * defaults).
 *
 * Ownership: lostxacts_new() returns an object freed by lostxacts_free();
 * it copies the options' strings. A peek (struct lostxacts_peek) belongs to
 * the caller and feeds the lostxacts given to it, which must outlive it.
 * Return conventions: bool (false: err holds why, one line).
 */
#ifndef STRAIT_LOSTXACTS_H
#define STRAIT_LOSTXACTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct event_base;
struct lostxacts;
struct lostxacts_peek;

struct lostxacts_options {
	const char *stream;          /* for the header; may be NULL */
	const char *slot;            /* for the header; may be NULL */
	uint64_t after_lsn;          /* keep transactions whose commit end LSN is above this */
	const char *encoding;        /* client_encoding of the file; NULL: the peek's, else UTF8 */
	int64_t generated_at_us;     /* Unix µs for the header; 0: now (tests pin it) */
};

struct lostxacts_stats {
	uint64_t kept;               /* transactions in the file */
	uint64_t statements;         /* statements in the file (BEGIN/COMMIT not counted) */
	uint64_t before;             /* ended at or before after_lsn: applied by the new primary */
	uint64_t duplicates;         /* seen again (the spool and the slot overlap) */
	uint64_t strait_origin;      /* applied by strait from another site */
	uint64_t empty;              /* no changes for this publication */
	uint64_t incomplete;         /* begun but never committed in what was fed */
	uint64_t orphans;            /* messages outside a transaction, dropped */
	uint64_t unrendered;         /* changes written as a warning comment instead */
	uint64_t first_commit_lsn;   /* of the kept transactions, 0 when none */
	uint64_t last_commit_lsn;
};

/* NULL when out of memory. */
struct lostxacts *lostxacts_new(const struct lostxacts_options *opt);
void lostxacts_free(struct lostxacts *lx);

/* One line for the file's header ("read from the spool of stream app"); sanitized. */
bool lostxacts_add_note(struct lostxacts *lx, const char *fmt, ...)
	__attribute__((format(printf, 2, 3), warn_unused_result));

/*
 * Feeds one pgoutput message. False when it does not decode, is out of
 * order (a streamed transaction), or memory runs out; the renderer stays
 * usable (the open transaction, if any, is dropped and counted incomplete).
 */
bool lostxacts_feed_message(struct lostxacts *lx, const uint8_t *msg, size_t len,
		char *err, size_t errlen) __attribute__((warn_unused_result));

/* Feeds a batch body: records of a u32 big-endian length and one message. */
bool lostxacts_feed_batch(struct lostxacts *lx, const uint8_t *body, size_t len,
		char *err, size_t errlen) __attribute__((warn_unused_result));

/*
 * Writes the file: the header, then every kept transaction in commit LSN
 * order. Repeatable (the object keeps what it rendered). False on an I/O
 * error.
 */
bool lostxacts_write(struct lostxacts *lx, FILE *out, char *err, size_t errlen)
	__attribute__((warn_unused_result));

void lostxacts_get_stats(const struct lostxacts *lx, struct lostxacts_stats *out);

/* ---- reading the old primary's slot without consuming it ---- */

/*
 * Runs, on its own connection (fallback_application_name "strait-rejoin";
 * the output settings above first):
 *
 *   SELECT data FROM pg_logical_slot_peek_binary_changes('<slot>', NULL, NULL,
 *          'proto_version', '1', 'publication_names', '"<pub>"')
 *
 * after checking in pg_replication_slots that the slot exists, is a pgoutput
 * logical slot of this database and is not active. A slot in use (the old
 * primary's straitd still streams from it, active_pid set) cannot be peeked:
 * that is reported as an error naming the pid. Rows come one at a time
 * (single-row mode), so memory holds the rendered SQL, not the raw changes.
 * Non-blocking, inside base's loop: a rejoin may run in straitd, whose
 * heartbeats must go on while PostgreSQL decodes a long backlog.
 *
 * done() comes exactly once, from the loop (never inside
 * lostxacts_peek_start()); err is NULL on success; messages is how many
 * pgoutput messages were fed. The peek may be freed inside done().
 * NULL when out of memory.
 */
typedef void (*lostxacts_peek_fn)(void *arg, const char *err, uint64_t messages);

struct lostxacts_peek *lostxacts_peek_start(struct event_base *base, const char *conninfo,
		const char *slot, const char *publication, struct lostxacts *lx,
		lostxacts_peek_fn done, void *arg);
void lostxacts_peek_free(struct lostxacts_peek *p);

/* ---- rendering helpers (exported for the tests and for reuse) ---- */

/* Appends a SQL string literal for s[0..len) to out (malloc'd, grown); false when out of memory. */
struct lostxacts_buf {
	char *data;                  /* NUL-terminated when non-NULL */
	size_t len;
	size_t cap;
};

bool lostxacts_buf_literal(struct lostxacts_buf *b, const char *s, size_t len);
bool lostxacts_buf_ident(struct lostxacts_buf *b, const char *s);
void lostxacts_buf_free(struct lostxacts_buf *b);

#endif
