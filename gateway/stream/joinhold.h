/*
 * joinhold.h — the changes of a table that joins a stream, kept on local
 * disk while its copy loads, then handed to the apply (joingate.h takes them
 * out of the batches).
 *
 * One file per joining table, in the stream's spill directory. What goes in
 * is whole held transactions (Begin, the table's Relation, its changes,
 * Commit). Transactions the source sends twice (a resend after a refused
 * batch or a lost link) are kept once: a Begin at or below the last kept
 * transaction's is skipped, and joinhold_restart() drops a transaction whose
 * Commit did not come.
 *
 * The replay reads the kept transactions in order and skips those whose
 * commit starts before the copy's snapshot LSN (the copy holds them, as the
 * initial sync's filter rule goes). The rest become bodies for the apply of at
 * most JOINHOLD_BODY_BYTES (one larger message whole), their Begin and Commit
 * LSNs rewritten to the position the apply is at: they are applied between
 * two source transactions, as a target transaction of their own that moves
 * the stream's position nowhere (the apply never skips them, and an
 * acknowledgement never claims more than it did).
 *
 * The file is never trusted across a restart: the target's record of a
 * joining table makes the next start copy it again.
 *
 * Not thread-safe; plain blocking file I/O. Return conventions: bool, false
 * on failure with err set.
 */
#ifndef STRAIT_JOINHOLD_H
#define STRAIT_JOINHOLD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JOINHOLD_BODY_BYTES (1u * 1024u * 1024u)

struct joinhold;

/* Removes every hold file a previous process left in dir (never trusted across a restart). */
void joinhold_clean(const char *dir);
/* Creates (empty) the file "join-<n>.hold" in dir; NULL on failure (err says). */
struct joinhold *joinhold_new(const char *dir, unsigned n, char *err, size_t errlen);
/* Closes and removes the file. */
void joinhold_free(struct joinhold *h);

/* One held message, in order (joingate's hold()). */
bool joinhold_append(struct joinhold *h, const uint8_t *msg, size_t len, char *err,
		size_t errlen);
/* The source streams anew: a transaction not yet committed here is dropped. */
bool joinhold_restart(struct joinhold *h, char *err, size_t errlen);

/* The replay starts: transactions committing before snapshot_lsn are skipped. */
void joinhold_replay_from(struct joinhold *h, uint64_t snapshot_lsn);

enum joinhold_next {
	JOINHOLD_BODY,           /* *body (malloc'd, caller frees) holds the next piece */
	JOINHOLD_CAUGHT_UP,      /* everything kept so far is replayed */
	JOINHOLD_ERROR,          /* err says */
};

/*
 * The next piece of the replay, its transactions' LSNs set to at_lsn (kept
 * for a transaction already begun). *in_txn: the piece ends inside a held
 * transaction (nothing else may reach the apply before the rest).
 */
enum joinhold_next joinhold_next(struct joinhold *h, uint64_t at_lsn, uint8_t **body,
		size_t *len, bool *in_txn, char *err, size_t errlen);

/* Bytes kept and not yet replayed; transactions kept and replayed. */
uint64_t joinhold_pending_bytes(const struct joinhold *h);
uint64_t joinhold_kept_count(const struct joinhold *h);
uint64_t joinhold_replayed_count(const struct joinhold *h);

#endif
