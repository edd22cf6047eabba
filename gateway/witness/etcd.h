/*
 * etcd.h — an asynchronous etcd v3 client inside the caller's libevent loop,
 * for the failover witness: leases (grant, keepalive, revoke), keys (get,
 * put, delete), transactions, and the cluster's status and members.
 *
 * It speaks etcd's JSON gateway (HTTP/1.1 POST of JSON to /v3/..., see
 * etcd_proto.h for the bodies and replies) over plain HTTP: endpoints are
 * "http://host:port" URLs whose host is an IP address (IPv4, or IPv6 in
 * brackets; the port defaults to 2379). Refused, each with its reason:
 * https (not supported yet), a host name (see LIMITS), and anything after
 * the port but a single "/".
 *
 * CONTRACT
 * Each operation sends one request and calls done(arg, result) exactly
 * once, always from the loop (never inside the call that started it),
 * unless the client is freed first. The result and everything it points to
 * live until done() returns: copy what you keep.
 *
 * Endpoints: a request goes first to the endpoint that answered last (at
 * the start, the first one listed). A transport error (refused, reset,
 * unreachable, a connection closed early), no answer within the attempt
 * timeout, or an HTTP status of 5xx (a member without quorum answers 503 or
 * 500 after its own request timeout) makes it try the next endpoint, each
 * at most once per request; when all have failed, done() gets ok=false and
 * an error naming each endpoint and why. A request therefore ends within
 * n * attempt_timeout_ms (plus the loop's own delays). An HTTP status of
 * 4xx, or a reply that carries an etcd error or is malformed, is the
 * request's own failure: it is reported with etcd's message and the
 * endpoint, and not tried elsewhere (another member would say the same).
 *
 * Reads are linearizable (etcd's default): a member that has lost quorum
 * does not answer them from its own, possibly stale, copy. Status and
 * member list are served by any member, quorum or not; a member without a
 * leader reports leader 0. Note that a leader which has just lost its
 * quorum still renews leases on its own until it steps down, one to two
 * election timeouts later (2 s with a 1 s election timeout, as measured
 * against etcd 3.4): a keepalive's success does not prove that a quorum
 * stood at that instant.
 *
 * Several requests may be in flight at once. Each attempt has an HTTP
 * connection of its own, closed when the attempt ends: libevent's
 * connection runs one request at a time, so a shared one would queue a
 * keepalive behind a request that a partitioned member holds for seconds,
 * and an attempt's timeout could not drop its request without failing the
 * others queued on it. A TCP handshake per request is small next to a
 * witness's pace (a keepalive every few seconds).
 *
 * Ownership: the client copies the endpoints, and each operation copies
 * its arguments (keys, values, a txn's compares and ops) before returning.
 * etcd_free() drops every pending request without calling its done(); it
 * may be called from inside a done() callback, the client's own included.
 *
 * The process must ignore SIGPIPE (straitd does): libevent writes to the
 * socket with write(), and a member that closes while a request is being
 * written would otherwise kill it.
 *
 * LIMITS. A reply body over ETCD_MAX_REPLY_BYTES fails the attempt (a
 * witness's keys are few and small). No authentication, no TLS, no watch:
 * a watcher polls with get. No host names: libevent 2.1 resolves a name
 * given to an HTTP connection by blocking the loop, and its asynchronous
 * resolver runs a cancelled lookup's callback later, against a resolver
 * the client may have freed by then; names would need a resolver owned by
 * the daemon, outliving every client.
 */
#ifndef STRAIT_ETCD_H
#define STRAIT_ETCD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/witness/etcd_proto.h"

#define ETCD_MUSTCHECK __attribute__((warn_unused_result))

#define ETCD_MAX_ENDPOINTS 16
#define ETCD_MAX_REPLY_BYTES (8u << 20)

struct event_base;
struct etcd;

struct etcd_result {
	bool ok;
	const char *error;           /* !ok: what failed, naming the endpoint(s); else NULL */
	const char *endpoint;        /* the endpoint that answered; NULL when none did */
	int http_status;             /* its HTTP status; 0 when none answered */
	int code;                    /* with etcd's refusal, its gRPC status code; else 0 */
	struct etcd_reply reply;     /* ok: what the call returns (etcd_proto.h) */
};

typedef void (*etcd_done_fn)(void *arg, const struct etcd_result *result);

/*
 * A client of the etcd cluster at endpoints (1 to ETCD_MAX_ENDPOINTS URLs);
 * each attempt of a request is given attempt_timeout_ms (> 0). NULL with a
 * message in err for a bad endpoint or timeout, or out of memory.
 */
struct etcd *etcd_new(struct event_base *base, const char *const *endpoints, size_t n,
		int attempt_timeout_ms, char *err, size_t errlen);
/* Drops pending requests without calling their done(); NULL is allowed. */
void etcd_free(struct etcd *e);

/* The endpoint the next request goes to first (the one that answered last). */
const char *etcd_current_endpoint(const struct etcd *e);
/* How many requests are pending. */
size_t etcd_pending(const struct etcd *e);

/*
 * The operations. Each returns false only when it could not start (out of
 * memory, or a txn with an enum out of range or a NULL key): done() is then
 * never called. What each fills in result->reply:
 */
/* reply.lease_id, reply.ttl (etcd may raise a ttl below its minimum). */
bool etcd_lease_grant(struct etcd *e, int64_t ttl_s, etcd_done_fn done, void *arg)
	ETCD_MUSTCHECK;
/* reply.ttl: the lease's new ttl, 0 when the lease is gone (expired or revoked). */
bool etcd_lease_keepalive(struct etcd *e, int64_t lease_id, etcd_done_fn done, void *arg)
	ETCD_MUSTCHECK;
/* Revokes the lease and deletes its keys at once; an unknown lease is refused (code 5). */
bool etcd_lease_revoke(struct etcd *e, int64_t lease_id, etcd_done_fn done, void *arg)
	ETCD_MUSTCHECK;
/* reply.kvs: the key (none when absent), or with prefix every key starting with it. */
bool etcd_get(struct etcd *e, const char *key, bool prefix, etcd_done_fn done, void *arg)
	ETCD_MUSTCHECK;
/* Sets key to value_len bytes, attached to lease (0: none); reply.revision. */
bool etcd_put(struct etcd *e, const char *key, const void *value, size_t value_len,
		int64_t lease, etcd_done_fn done, void *arg) ETCD_MUSTCHECK;
/* reply.deleted: how many keys went. */
bool etcd_delete(struct etcd *e, const char *key, bool prefix, etcd_done_fn done, void *arg)
	ETCD_MUSTCHECK;
/* reply.succeeded, and reply.kvs from the range ops of the branch taken, in order. */
bool etcd_txn(struct etcd *e, const struct etcd_txn *txn, etcd_done_fn done, void *arg)
	ETCD_MUSTCHECK;
/* reply.leader (0: none known), reply.member_id (the member that answered), reply.version. */
bool etcd_status(struct etcd *e, etcd_done_fn done, void *arg) ETCD_MUSTCHECK;
/* reply.members: id, name, client URLs. */
bool etcd_members(struct etcd *e, etcd_done_fn done, void *arg) ETCD_MUSTCHECK;

#endif
