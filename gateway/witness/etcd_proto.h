/*
 * etcd_proto.h — etcd's v3 JSON gateway as data: the request bodies the
 * client sends and the replies it reads back, with no I/O (etcd.h does
 * that), so every byte of the conversation can be tested alone.
 *
 * The gateway is grpc-gateway over etcd's gRPC API: each call is an HTTP
 * POST of one JSON object to its path (etcd_proto_path()), answered by one
 * JSON object. Its mapping of protobuf to JSON decides the details here:
 *   - keys and values are bytes, carried as base64 (padded, standard);
 *   - int64 and uint64 fields are JSON strings ("revision":"2"); they are
 *     written so, and read as strings or as numbers (a number only when it
 *     is an integer a double holds exactly, |n| <= 2^53);
 *   - a field at its default (0, false, empty) is left out: an absent
 *     "succeeded" is false, an absent "TTL" is 0;
 *   - a refused call comes with an HTTP status of 4xx or 5xx and a body
 *     {"error":..,"message":..,"code":<gRPC status>}; the streamed
 *     keepalive call answers 200 and {"error":{"message":..,"grpc_code":..}}
 *     instead, which the parser also reports as a refusal.
 *
 * CONTRACT
 * Builders return a NUL-terminated body (the caller frees it) with its
 * length in *len, or NULL when out of memory. Parsers read one reply (len
 * bytes, NUL not required) into a struct etcd_reply the caller zeroed, and
 * return true; or false with a message in err and the reply cleared, for a
 * body that is not JSON, not an object, carries a field of the wrong type,
 * bad base64, an integer out of range, or an etcd error. Nothing in a reply
 * is trusted: every field's type is checked, and sizes come from the
 * decoded data, never from a count etcd sends.
 *
 * Ownership: a reply owns its strings and arrays; etcd_reply_clear() frees
 * them. Keys and values keep their length (values are arbitrary bytes) and
 * are NUL-terminated as well, past the length, for callers that hold text.
 */
#ifndef STRAIT_ETCD_PROTO_H
#define STRAIT_ETCD_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ETCD_PROTO_MUSTCHECK __attribute__((warn_unused_result))

/* The calls, each one gateway path (etcd_proto_path()). */
enum etcd_call {
	ETCD_CALL_GRANT,             /* /v3/lease/grant */
	ETCD_CALL_KEEPALIVE,         /* /v3/lease/keepalive */
	ETCD_CALL_REVOKE,            /* /v3/lease/revoke */
	ETCD_CALL_RANGE,             /* /v3/kv/range */
	ETCD_CALL_PUT,               /* /v3/kv/put */
	ETCD_CALL_DELETE,            /* /v3/kv/deleterange */
	ETCD_CALL_TXN,               /* /v3/kv/txn */
	ETCD_CALL_STATUS,            /* /v3/maintenance/status */
	ETCD_CALL_MEMBERS,           /* /v3/cluster/member/list */
};

const char *etcd_proto_path(enum etcd_call call);
/* A short name for messages: "lease grant", "txn", ... */
const char *etcd_proto_call_name(enum etcd_call call);

/* ------------------------------------------------------------ requests */

/* What a txn compares: the wire's "target" names, in the wire's order. */
enum etcd_cmp_target {
	ETCD_CMP_VERSION,            /* the key's version (0: absent) */
	ETCD_CMP_CREATE,             /* its create_revision (0: absent) */
	ETCD_CMP_MOD,                /* its mod_revision */
	ETCD_CMP_VALUE,              /* its value, as bytes */
	ETCD_CMP_LEASE,              /* the lease it is attached to (0: none) */
};

enum etcd_cmp_result {
	ETCD_CMP_EQUAL,
	ETCD_CMP_GREATER,
	ETCD_CMP_LESS,
	ETCD_CMP_NOT_EQUAL,
};

struct etcd_compare {
	const char *key;
	enum etcd_cmp_target target;
	enum etcd_cmp_result result;
	int64_t number;              /* VERSION, CREATE, MOD, LEASE */
	const void *value;           /* VALUE: value_len bytes */
	size_t value_len;
};

enum etcd_op_type {
	ETCD_OP_RANGE,               /* its kvs come back in the reply */
	ETCD_OP_PUT,
	ETCD_OP_DELETE,
};

struct etcd_op {
	enum etcd_op_type type;
	const char *key;
	bool prefix;                 /* RANGE, DELETE: every key starting with key */
	const void *value;           /* PUT: value_len bytes */
	size_t value_len;
	int64_t lease;               /* PUT: 0 for none */
};

/* If every compare holds, the success ops run, else the failure ops. */
struct etcd_txn {
	const struct etcd_compare *compares;
	size_t n_compares;
	const struct etcd_op *success;
	size_t n_success;
	const struct etcd_op *failure;
	size_t n_failure;
};

char *etcd_proto_grant(int64_t ttl_s, size_t *len);
/* keepalive and revoke: {"ID":..} */
char *etcd_proto_lease(int64_t id, size_t *len);
char *etcd_proto_range(const char *key, bool prefix, size_t *len);
char *etcd_proto_put(const char *key, const void *value, size_t value_len, int64_t lease,
		size_t *len);
char *etcd_proto_delete(const char *key, bool prefix, size_t *len);
/* NULL also for an enum value out of range. */
char *etcd_proto_txn(const struct etcd_txn *txn, size_t *len);
/* status and members: {} */
char *etcd_proto_empty(size_t *len);

/*
 * The range_end that makes a range of every key starting with prefix
 * (prefix_len bytes): the prefix with its last byte that is not 0xff
 * raised by one, the bytes after it dropped. For an empty prefix, or one
 * of 0xff bytes only, the single byte 0 (etcd's "every key from here").
 * Writes at most prefix_len bytes, at least 1, into out; returns how many.
 */
size_t etcd_proto_prefix_end(const void *prefix, size_t prefix_len, unsigned char *out);

/* ------------------------------------------------------------- replies */

struct etcd_kv {
	char *key;                   /* key_len bytes (+ NUL) */
	size_t key_len;
	char *value;                 /* value_len bytes (+ NUL), arbitrary */
	size_t value_len;
	int64_t create_revision;
	int64_t mod_revision;
	int64_t version;             /* 1 at creation, +1 per put */
	int64_t lease;               /* 0: none */
};

struct etcd_member {
	uint64_t id;
	char *name;                  /* "" before the member has started */
	char **client_urls;
	size_t n_client_urls;
};

/* What a reply holds; each call fills its own fields, the rest stay 0. */
struct etcd_reply {
	int64_t revision;            /* header.revision: the store's, when answered */
	uint64_t member_id;          /* header.member_id: the member that answered */
	uint64_t cluster_id;         /* header.cluster_id */
	int64_t raft_term;           /* header.raft_term */
	int64_t lease_id;            /* grant; keepalive */
	int64_t ttl;                 /* grant; keepalive: 0 when the lease is gone */
	int64_t deleted;             /* delete: how many keys */
	bool succeeded;              /* txn: whether the compares held */
	struct etcd_kv *kvs;         /* range; txn: the range ops of the branch taken, in order */
	size_t n_kvs;
	uint64_t leader;             /* status: the leader's member id (0: none known) */
	char *version;               /* status: the server's version ("3.4.23") */
	struct etcd_member *members; /* members */
	size_t n_members;
};

bool etcd_proto_parse(enum etcd_call call, const char *body, size_t len, struct etcd_reply *out,
		char *err, size_t errlen) ETCD_PROTO_MUSTCHECK;
void etcd_reply_clear(struct etcd_reply *r);

/*
 * An error body's message ("etcdserver: requested lease not found") into
 * msg, and its gRPC status into *code (0 when it has none): true when body
 * is an etcd error. For the reply to a status of 4xx or 5xx.
 */
bool etcd_proto_parse_error(const char *body, size_t len, char *msg, size_t msglen, int *code);

/* ------------------------------------------------------------- base64 */

/* Standard padded base64 of n bytes, NUL-terminated (caller frees); NULL: out of memory. */
char *etcd_base64_encode(const void *data, size_t n);
/*
 * Strict padded base64 (no white space, '=' only at the end) decoded into a
 * new buffer with a NUL past the data (caller frees), its length in *n.
 * NULL with errno EINVAL for text that is not base64, ENOMEM out of memory.
 */
char *etcd_base64_decode(const char *text, size_t *n);

#endif
