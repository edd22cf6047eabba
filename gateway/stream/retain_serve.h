/*
 * retain_serve.h — a replica serves its retained batches (retain.h) to a
 * sibling that catches up from it (stream_catchup.c is the asking side).
 *
 * CATCHUP names the stream, the source site whose LSNs the asker holds and
 * where it stands. The answer (CATCHUP_REPLY) says what this site applied of
 * that source and what it retains; when the asker is behind and the retained
 * range covers what it lacks, CATCHUP_BATCH frames follow: one per retained
 * record, compressed with the stream's codec, in the asker's generation,
 * with the continuity of ordinary batches (seq, prev_lsn), and never beyond
 * what this site applied (a record that goes past it is cut at the last
 * commit before). CATCHUP_ACK frees the send window, as ACK does for a
 * source. What this site applied is its sink's committed position, or, when
 * it has no sink of the stream (it became primary), the position recorded
 * when its streams stopped for the promotion (retain_seal()).
 *
 * One session per asking site and stream; a new CATCHUP replaces it.
 */
#ifndef STRAIT_RETAIN_SERVE_H
#define STRAIT_RETAIN_SERVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct frame;
struct relay;
struct retain;
struct retain_serve;
struct strait_config;
struct wire_str;

/*
 * The sink of a stream here, if any: its retain (NULL: it keeps none) and
 * what it committed. False when this site has no sink of the stream.
 */
typedef bool (*retain_serve_sink_fn)(void *arg, const char *stream, struct retain **retain,
		uint64_t *committed_lsn);

/* NULL when out of memory. cfg must outlive it (retain_serve_reconfigure()). */
struct retain_serve *retain_serve_new(struct relay *relay, const struct strait_config *cfg,
		retain_serve_sink_fn sink, void *arg);
void retain_serve_free(struct retain_serve *srv);
void retain_serve_reconfigure(struct retain_serve *srv, const struct strait_config *cfg);

/* CATCHUP and CATCHUP_ACK frames from peer. */
void retain_serve_frame(struct retain_serve *srv, const char *peer, const struct frame *f);
void retain_serve_writable(struct retain_serve *srv, const char *peer);
void retain_serve_link_down(struct retain_serve *srv, const char *peer);
/* A sink's retain is closing: the sessions reading it end. */
void retain_serve_forget(struct retain_serve *srv, const struct retain *retain);

/*
 * Relayed destinations (streams[].via, CATCHUP with FOLLOW): the session
 * stays after what was fsynced, and retain_serve_kick() goes on once more
 * is; what each destination committed (its CATCHUP_ACKs) is kept, in
 * STATE_DIR/retain/<stream>/hold-<site> too, and retain_serve_hold() gives
 * the lowest over peers (0 for one never heard: everything is held), which
 * the retained batches keep against their age.
 */
void retain_serve_kick(struct retain_serve *srv, const char *stream);
uint64_t retain_serve_hold(struct retain_serve *srv, const char *stream, const char *const *peers,
		size_t n);

/* STATE_DIR/retain/<stream>: a new string, NULL when out of memory. */
char *retain_serve_dir(const struct strait_config *cfg, const char *stream);
#endif
