/*
 * pgoutput.h — decoder of PostgreSQL's logical replication protocol (the
 * pgoutput plugin's message stream, protocol versions 1 and 2), the CopyData
 * envelope of START_REPLICATION (XLogData 'w', primary keepalive 'k'), the
 * standby status update 'r' encoder, and a relation cache.
 *
 * Formats: PostgreSQL documentation, "Logical Replication Message Formats" and
 * "Streaming Replication Protocol". Integers are big-endian; strings are
 * NUL-terminated; LSNs are u64; timestamps are microseconds since 2000-01-01.
 *
 * NOTES
 *
 * Zero copy. The source relays pgoutput bytes untouched and the sink decodes
 * every change, so decoding must be cheap: pgoutput_decode() allocates
 * nothing and copies nothing. A decoded message points into the input buffer
 * — strings as NUL-terminated char pointers (their NUL is the one in the
 * buffer), column values as pointer + length — and is valid as long as that
 * buffer is. Tuple columns go into an array the caller provides; a message
 * with more columns than it holds fails with PGOUTPUT_ERR_TOO_MANY_COLUMNS.
 * Relation columns and Truncate's relation list are validated at decode time
 * and read on demand (pgoutput_attr_next(), pgoutput_truncate_relid()).
 *
 * Never trust the input. Every read is bounds-checked; a count or length is
 * checked against what is left before it is used; flags and enum bytes are
 * checked against the documented values; bytes after the last field are an
 * error. Malformed input gives a specific pgoutput_status and the offset of
 * the problem (decoder->error_offset), never a crash.
 *
 * State. In protocol 2, messages between Stream Start and Stream Stop carry
 * the streamed transaction's xid after the type byte (Relation, Type,
 * Insert, Update, Delete, Truncate, Message). The decoder tracks that; it
 * also refuses the sequences the protocol rules out (nested Stream Start, a
 * Stream Stop outside a block, Begin/Commit/Stream Commit/Stream Abort inside
 * one). A failed decode leaves the state as it was.
 *
 * Return conventions: decoders return enum pgoutput_status (PGOUTPUT_OK = 0);
 * pgoutput_relcache_update() returns bool (false: out of memory).
 */
#ifndef STRAIT_PGOUTPUT_H
#define STRAIT_PGOUTPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PGOUTPUT_MUSTCHECK __attribute__((warn_unused_result))

/* Message types; each value is the type byte on the wire. */
enum pgoutput_msg_type {
	PGOUTPUT_BEGIN         = 'B',
	PGOUTPUT_COMMIT        = 'C',
	PGOUTPUT_ORIGIN        = 'O',
	PGOUTPUT_RELATION      = 'R',
	PGOUTPUT_TYPE          = 'Y',
	PGOUTPUT_INSERT        = 'I',
	PGOUTPUT_UPDATE        = 'U',
	PGOUTPUT_DELETE        = 'D',
	PGOUTPUT_TRUNCATE      = 'T',
	PGOUTPUT_MESSAGE       = 'M',
	/* protocol 2 */
	PGOUTPUT_STREAM_START  = 'S',
	PGOUTPUT_STREAM_STOP   = 'E',
	PGOUTPUT_STREAM_COMMIT = 'c',
	PGOUTPUT_STREAM_ABORT  = 'A',
};

/* TupleData column kinds (the wire bytes). */
enum pgoutput_value_kind {
	PGOUTPUT_VALUE_NULL      = 'n',
	PGOUTPUT_VALUE_UNCHANGED = 'u',   /* unchanged TOASTed value: keep the target's */
	PGOUTPUT_VALUE_TEXT      = 't',
	PGOUTPUT_VALUE_BINARY    = 'b',
};

/* Which old tuple an Update/Delete carries (the wire byte), or none. */
enum pgoutput_old_kind {
	PGOUTPUT_OLD_NONE = 0,
	PGOUTPUT_OLD_KEY  = 'K',          /* replica identity columns only, others 'n' */
	PGOUTPUT_OLD_FULL = 'O',          /* REPLICA IDENTITY FULL: the whole old row */
};

/* Relation replica identity (pg_class.relreplident). */
#define PGOUTPUT_REPLIDENT_DEFAULT 'd'
#define PGOUTPUT_REPLIDENT_NOTHING 'n'
#define PGOUTPUT_REPLIDENT_FULL    'f'
#define PGOUTPUT_REPLIDENT_INDEX   'i'

#define PGOUTPUT_ATTR_KEY           0x01u  /* Relation column flag: part of the key */
#define PGOUTPUT_TRUNCATE_CASCADE   0x01u
#define PGOUTPUT_TRUNCATE_RESTART_SEQS 0x02u
#define PGOUTPUT_MESSAGE_TRANSACTIONAL 0x01u

enum pgoutput_status {
	PGOUTPUT_OK = 0,
	PGOUTPUT_ERR_EMPTY,            /* no type byte */
	PGOUTPUT_ERR_UNKNOWN_TYPE,     /* type byte unknown (or a v2 type under v1) */
	PGOUTPUT_ERR_TRUNCATED,        /* a field (or a string's NUL) runs past the end */
	PGOUTPUT_ERR_TRAILING,         /* bytes left after the last field */
	PGOUTPUT_ERR_FLAGS,            /* flags/option bits not defined by the protocol */
	PGOUTPUT_ERR_VALUE,            /* an enum byte out of range (replica identity, ...) */
	PGOUTPUT_ERR_TUPLE_MARKER,     /* not 'N' / 'K' / 'O' where a tuple must start */
	PGOUTPUT_ERR_COLUMN_KIND,      /* a column kind other than n/u/t/b */
	PGOUTPUT_ERR_TOO_MANY_COLUMNS, /* more columns than the caller's array holds */
	PGOUTPUT_ERR_STATE,            /* out of order for the stream state */
	PGOUTPUT_ERR_COPY_TYPE,        /* CopyData that is neither 'w' nor 'k' */
};

const char *pgoutput_status_str(enum pgoutput_status st);
/* "BEGIN", "INSERT", ...; "unknown" otherwise. */
const char *pgoutput_msg_type_name(unsigned type);

/* One column of a TupleData. data/len only for TEXT and BINARY (else NULL/0). */
struct pgoutput_value {
	char kind;                 /* enum pgoutput_value_kind */
	uint32_t len;
	const uint8_t *data;       /* not NUL-terminated */
};

struct pgoutput_tuple {
	uint16_t ncols;
	const struct pgoutput_value *cols;   /* into the caller's array */
};

/* A Relation column, read with pgoutput_attr_next(). */
struct pgoutput_attr {
	uint8_t flags;             /* PGOUTPUT_ATTR_KEY */
	const char *name;
	uint32_t type_oid;
	int32_t typmod;
};

struct pgoutput_msg {
	enum pgoutput_msg_type type;
	bool has_xid;              /* a streamed transaction's change (protocol 2) */
	uint32_t xid;              /* its xid when has_xid */
	union {
		struct {
			uint64_t final_lsn;
			int64_t commit_time;
			uint32_t xid;
		} begin;
		struct {
			uint8_t flags;
			uint64_t commit_lsn;
			uint64_t end_lsn;
			int64_t commit_time;
		} commit;
		struct {
			uint64_t commit_lsn;    /* the commit's LSN on the origin server */
			const char *name;
		} origin;
		struct {
			uint32_t oid;
			const char *nspname;    /* "" for pg_catalog */
			const char *relname;
			char replident;         /* PGOUTPUT_REPLIDENT_* */
			uint16_t natts;
			const uint8_t *attrs;   /* raw, validated; read with pgoutput_attr_next() */
			size_t attrs_len;
		} relation;
		struct {
			uint32_t oid;
			const char *nspname;
			const char *typname;
		} pgtype;           /* the Type message */
		struct {
			uint32_t relid;
			struct pgoutput_tuple newtup;
		} insert;
		struct {
			uint32_t relid;
			char old_kind;          /* enum pgoutput_old_kind */
			struct pgoutput_tuple oldtup;   /* ncols 0 when old_kind is NONE */
			struct pgoutput_tuple newtup;
		} update;
		struct {
			uint32_t relid;
			char old_kind;          /* PGOUTPUT_OLD_KEY or _FULL */
			struct pgoutput_tuple oldtup;
		} delete;
		struct {
			uint8_t options;        /* PGOUTPUT_TRUNCATE_* */
			uint32_t nrelids;
			const uint8_t *relids;  /* read with pgoutput_truncate_relid() */
		} truncate;
		struct {
			uint8_t flags;          /* PGOUTPUT_MESSAGE_TRANSACTIONAL */
			uint64_t lsn;
			const char *prefix;
			uint32_t content_len;
			const uint8_t *content;
		} message;
		struct {
			uint32_t xid;
			bool first_segment;
		} stream_start;
		struct {
			uint32_t xid;
			uint8_t flags;
			uint64_t commit_lsn;
			uint64_t end_lsn;
			int64_t commit_time;
		} stream_commit;
		struct {
			uint32_t xid;
			uint32_t subxid;        /* == xid when the whole transaction aborts */
		} stream_abort;
	};
};

struct pgoutput_decoder {
	int proto_version;         /* 1 or 2 */
	bool in_stream;            /* between Stream Start and Stream Stop */
	uint32_t stream_xid;       /* the block's xid when in_stream */
	size_t error_offset;       /* byte offset of the last error in its message */
};

/* False when proto_version is not 1 or 2. */
bool pgoutput_decoder_init(struct pgoutput_decoder *d, int proto_version)
	PGOUTPUT_MUSTCHECK;

/*
 * Decodes one pgoutput message buf[0..len) into *msg. cols[0..max_cols) holds
 * the tuple columns (an Update's old and new tuples share it: old first); it
 * may be NULL when max_cols is 0. On error *msg is unspecified and
 * d->error_offset says where the problem was.
 */
enum pgoutput_status pgoutput_decode(struct pgoutput_decoder *d,
		const uint8_t *buf, size_t len, struct pgoutput_msg *msg,
		struct pgoutput_value *cols, size_t max_cols) PGOUTPUT_MUSTCHECK;

/* Iterating a decoded Relation's columns (none for any other message). */
struct pgoutput_attr_iter {
	const uint8_t *p;
	const uint8_t *end;
	uint16_t left;
};

void pgoutput_attr_iter_init(struct pgoutput_attr_iter *it,
		const struct pgoutput_msg *relation);
/* The next column into *out; false after the last. */
bool pgoutput_attr_next(struct pgoutput_attr_iter *it, struct pgoutput_attr *out);

/* The i-th relation OID of a decoded Truncate; 0 (InvalidOid) when i >= nrelids. */
uint32_t pgoutput_truncate_relid(const struct pgoutput_msg *truncate, uint32_t i);

/* ---- START_REPLICATION CopyData ---- */

#define PGOUTPUT_COPY_XLOGDATA  'w'
#define PGOUTPUT_COPY_KEEPALIVE 'k'
#define PGOUTPUT_COPY_STATUS    'r'

struct pgoutput_copy {
	char type;                 /* 'w' or 'k' */
	uint64_t wal_start;        /* 'w': start of the data's WAL */
	uint64_t wal_end;          /* current end of WAL on the server */
	int64_t server_time;       /* server clock, µs since 2000-01-01 */
	bool reply_requested;      /* 'k': answer with a status update now */
	const uint8_t *data;       /* 'w': one pgoutput message */
	size_t data_len;
};

/* Decodes a CopyData payload from the server (its first byte is the type). */
enum pgoutput_status pgoutput_decode_copy(const uint8_t *buf, size_t len,
		struct pgoutput_copy *out) PGOUTPUT_MUSTCHECK;

#define PGOUTPUT_STATUS_UPDATE_SIZE 34

/*
 * Writes a standby status update ('r') into out: LSNs written, flushed and
 * applied (each the last byte + 1), the client's clock in µs since
 * 2000-01-01, and whether the server should reply at once. Send it as the
 * payload of a CopyData message.
 */
void pgoutput_encode_status_update(uint8_t out[PGOUTPUT_STATUS_UPDATE_SIZE],
		uint64_t write_lsn, uint64_t flush_lsn, uint64_t apply_lsn,
		int64_t client_time, bool reply_requested);

/* ---- time ---- */

/* µs between the Unix epoch and PostgreSQL's (2000-01-01 00:00:00 UTC). */
#define PGOUTPUT_EPOCH_OFFSET_US INT64_C(946684800000000)

/* PostgreSQL timestamps to Unix µs and back, saturating instead of overflowing. */
int64_t pgoutput_time_to_unix_us(int64_t pg_time);
int64_t pgoutput_time_from_unix_us(int64_t unix_us);

/* ---- relation cache ---- */

/*
 * Relation OID -> what the last Relation message said about it. Entries own
 * copies of their strings, so they outlive the message buffer. An entry
 * pointer stays valid until its relation is updated again or the cache is
 * freed. priv is the caller's (e.g. the sink's target mapping and prepared
 * statements); the cache passes it to free_priv when the entry is replaced
 * or freed, so a schema change drops what was built for the old shape.
 */
struct pgoutput_rel_attr {
	char *name;
	uint32_t type_oid;
	int32_t typmod;
	bool key;                  /* part of the replica identity */
};

struct pgoutput_rel {
	uint32_t oid;
	char *nspname;
	char *relname;
	char replident;
	uint16_t natts;
	struct pgoutput_rel_attr *attrs;
	void *priv;
};

struct pgoutput_relcache {
	struct pgoutput_rel **slots;   /* open addressing, linear probing */
	size_t cap;                    /* power of two, or 0 */
	size_t count;
	void (*free_priv)(void *priv);
};

/* free_priv may be NULL. */
void pgoutput_relcache_init(struct pgoutput_relcache *c,
		void (*free_priv)(void *priv));
void pgoutput_relcache_free(struct pgoutput_relcache *c);
/*
 * Records a decoded Relation message (replacing an earlier entry for the same
 * OID). False when out of memory (the cache is unchanged) or msg is not a
 * Relation.
 */
bool pgoutput_relcache_update(struct pgoutput_relcache *c,
		const struct pgoutput_msg *msg) PGOUTPUT_MUSTCHECK;
/* The entry for oid, or NULL. */
struct pgoutput_rel *pgoutput_relcache_get(const struct pgoutput_relcache *c,
		uint32_t oid);

#endif
