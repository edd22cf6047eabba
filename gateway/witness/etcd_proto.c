/*
 * etcd_proto.c — etcd's v3 JSON gateway as data (see etcd_proto.h).
 *
 * NOTES
 * Bodies are written with json.h and read with json_value.h. A reply is
 * read leniently where the protocol allows it (unknown fields are skipped,
 * a missing field is its default) and strictly where a mistake would
 * mislead the caller: a field of the wrong type, an integer that does not
 * fit, or base64 that does not decode fails the whole reply, named by the
 * field, rather than reading as 0 or an empty value.
 *
 * JSON numbers are read as doubles by json_value.h, which would round a
 * lease id; the gateway writes 64-bit integers as strings, so strings are
 * parsed exactly and a number is taken only when a double holds it exactly.
 */
#include "gateway/witness/etcd_proto.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "common/json.h"
#include "common/json_value.h"

static const struct {
	const char *path;
	const char *name;
} etcd_calls[] = {
	[ETCD_CALL_GRANT] = { "/v3/lease/grant", "lease grant" },
	[ETCD_CALL_KEEPALIVE] = { "/v3/lease/keepalive", "lease keepalive" },
	[ETCD_CALL_REVOKE] = { "/v3/lease/revoke", "lease revoke" },
	[ETCD_CALL_RANGE] = { "/v3/kv/range", "range" },
	[ETCD_CALL_PUT] = { "/v3/kv/put", "put" },
	[ETCD_CALL_DELETE] = { "/v3/kv/deleterange", "delete" },
	[ETCD_CALL_TXN] = { "/v3/kv/txn", "txn" },
	[ETCD_CALL_STATUS] = { "/v3/maintenance/status", "status" },
	[ETCD_CALL_MEMBERS] = { "/v3/cluster/member/list", "member list" },
};

#define ETCD_N_CALLS (sizeof(etcd_calls) / sizeof(etcd_calls[0]))

const char *etcd_proto_path(enum etcd_call call)
{
	return (size_t)call < ETCD_N_CALLS ? etcd_calls[call].path : NULL;
}

const char *etcd_proto_call_name(enum etcd_call call)
{
	return (size_t)call < ETCD_N_CALLS ? etcd_calls[call].name : "unknown call";
}

/* ------------------------------------------------------------- base64 */

char *etcd_base64_encode(const void *data, size_t n)
{
	size_t out_len;
	char *out;

	/* EVP_EncodeBlock counts in int */
	if (n > (size_t)INT_MAX / 4 * 3 - 3)
		return NULL;
	out_len = (n + 2) / 3 * 4;
	out = malloc(out_len + 1);
	if (!out)
		return NULL;
	EVP_EncodeBlock((unsigned char *)out, data, (int)n);
	out[out_len] = '\0';
	return out;
}

static bool etcd_base64_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '+' || c == '/';
}

/*
 * How many '=' end text (0 to 2), or -1 when text is not strict base64:
 * EVP_DecodeBlock would skip white space and decode the padding as zero
 * bytes, so the checks are made here and the padding taken off after it.
 */
static int etcd_base64_padding(const char *text, size_t len)
{
	int pad = 0;

	if (len % 4 != 0 || len > (size_t)INT_MAX)
		return -1;
	if (len > 0 && text[len - 1] == '=')
		pad = (text[len - 2] == '=') ? 2 : 1;
	for (size_t i = 0; i < len - (size_t)pad; i++)
		if (!etcd_base64_char(text[i]))
			return -1;
	return pad;
}

char *etcd_base64_decode(const char *text, size_t *n)
{
	size_t len = strlen(text);
	int pad = etcd_base64_padding(text, len);
	char *out;
	int got;

	if (pad < 0) {
		errno = EINVAL;
		return NULL;
	}
	out = malloc(len / 4 * 3 + 1);
	if (!out) {
		errno = ENOMEM;
		return NULL;
	}
	got = len ? EVP_DecodeBlock((unsigned char *)out, (const unsigned char *)text, (int)len) : 0;
	if (got < pad) {
		free(out);
		errno = EINVAL;
		return NULL;
	}
	*n = (size_t)(got - pad);
	out[*n] = '\0';
	return out;
}

/* ------------------------------------------------------------ requests */

/* proto3's JSON form of a 64-bit integer is a string. */
static void etcd_json_int64(struct json_out *j, const char *key, int64_t v)
{
	char text[24];

	snprintf(text, sizeof(text), "%" PRId64, v);
	json_string(j, key, text);
}

static void etcd_json_bytes(struct json_out *j, const char *key, const void *data, size_t n)
{
	char *b64 = etcd_base64_encode(data, n);

	if (!b64) {
		j->failed = true;
		return;
	}
	json_string(j, key, b64);
	free(b64);
}

size_t etcd_proto_prefix_end(const void *prefix, size_t prefix_len, unsigned char *out)
{
	const unsigned char *p = prefix;
	size_t n = prefix_len;

	while (n > 0 && p[n - 1] == 0xff)
		n--;
	if (n == 0) {
		out[0] = 0;
		return 1;
	}
	memcpy(out, p, n);
	out[n - 1]++;
	return n;
}

/*
 * "key" and, for a prefix, "range_end". etcd refuses an empty key, so the
 * empty prefix (every key) is written as the key "\0" with range_end "\0".
 */
static void etcd_json_key_range(struct json_out *j, const char *key, bool prefix)
{
	size_t n = strlen(key);
	unsigned char *end;
	size_t end_len;

	if (prefix && n == 0) {
		etcd_json_bytes(j, "key", "", 1);
		etcd_json_bytes(j, "range_end", "", 1);
		return;
	}
	etcd_json_bytes(j, "key", key, n);
	if (!prefix)
		return;
	end = malloc(n);
	if (!end) {
		j->failed = true;
		return;
	}
	end_len = etcd_proto_prefix_end(key, n, end);
	etcd_json_bytes(j, "range_end", end, end_len);
	free(end);
}

static char *etcd_json_done(struct json_out *j, size_t *len)
{
	size_t n = 0;
	char *doc = json_finish(j, &n);

	if (doc && len)
		*len = n;
	return doc;
}

char *etcd_proto_grant(int64_t ttl_s, size_t *len)
{
	struct json_out j;

	json_init(&j);
	json_object_begin(&j, NULL);
	etcd_json_int64(&j, "TTL", ttl_s);
	json_object_end(&j);
	return etcd_json_done(&j, len);
}

char *etcd_proto_lease(int64_t id, size_t *len)
{
	struct json_out j;

	json_init(&j);
	json_object_begin(&j, NULL);
	etcd_json_int64(&j, "ID", id);
	json_object_end(&j);
	return etcd_json_done(&j, len);
}

char *etcd_proto_range(const char *key, bool prefix, size_t *len)
{
	struct json_out j;

	json_init(&j);
	json_object_begin(&j, NULL);
	etcd_json_key_range(&j, key, prefix);
	json_object_end(&j);
	return etcd_json_done(&j, len);
}

static void etcd_json_put_fields(struct json_out *j, const char *key, const void *value,
		size_t value_len, int64_t lease)
{
	etcd_json_bytes(j, "key", key, strlen(key));
	etcd_json_bytes(j, "value", value, value_len);
	if (lease != 0)
		etcd_json_int64(j, "lease", lease);
}

char *etcd_proto_put(const char *key, const void *value, size_t value_len, int64_t lease,
		size_t *len)
{
	struct json_out j;

	json_init(&j);
	json_object_begin(&j, NULL);
	etcd_json_put_fields(&j, key, value, value_len, lease);
	json_object_end(&j);
	return etcd_json_done(&j, len);
}

char *etcd_proto_delete(const char *key, bool prefix, size_t *len)
{
	return etcd_proto_range(key, prefix, len);
}

char *etcd_proto_empty(size_t *len)
{
	struct json_out j;

	json_init(&j);
	json_object_begin(&j, NULL);
	json_object_end(&j);
	return etcd_json_done(&j, len);
}

static const char *const etcd_cmp_targets[] = {
	[ETCD_CMP_VERSION] = "VERSION", [ETCD_CMP_CREATE] = "CREATE", [ETCD_CMP_MOD] = "MOD",
	[ETCD_CMP_VALUE] = "VALUE", [ETCD_CMP_LEASE] = "LEASE",
};
/* The field that carries the compared number, by target. */
static const char *const etcd_cmp_fields[] = {
	[ETCD_CMP_VERSION] = "version", [ETCD_CMP_CREATE] = "create_revision",
	[ETCD_CMP_MOD] = "mod_revision", [ETCD_CMP_VALUE] = "value", [ETCD_CMP_LEASE] = "lease",
};
static const char *const etcd_cmp_results[] = {
	[ETCD_CMP_EQUAL] = "EQUAL", [ETCD_CMP_GREATER] = "GREATER", [ETCD_CMP_LESS] = "LESS",
	[ETCD_CMP_NOT_EQUAL] = "NOT_EQUAL",
};

static bool etcd_json_compare(struct json_out *j, const struct etcd_compare *c)
{
	if ((size_t)c->target >= sizeof(etcd_cmp_targets) / sizeof(etcd_cmp_targets[0]) ||
	    (size_t)c->result >= sizeof(etcd_cmp_results) / sizeof(etcd_cmp_results[0]) || !c->key)
		return false;
	json_object_begin(j, NULL);
	etcd_json_bytes(j, "key", c->key, strlen(c->key));
	json_string(j, "target", etcd_cmp_targets[c->target]);
	json_string(j, "result", etcd_cmp_results[c->result]);
	if (c->target == ETCD_CMP_VALUE)
		etcd_json_bytes(j, etcd_cmp_fields[c->target], c->value ? c->value : "",
				c->value_len);
	else
		etcd_json_int64(j, etcd_cmp_fields[c->target], c->number);
	json_object_end(j);
	return true;
}

static bool etcd_json_op(struct json_out *j, const struct etcd_op *op)
{
	static const char *const names[] = {
		[ETCD_OP_RANGE] = "request_range", [ETCD_OP_PUT] = "request_put",
		[ETCD_OP_DELETE] = "request_delete_range",
	};

	if ((size_t)op->type >= sizeof(names) / sizeof(names[0]) || !op->key)
		return false;
	json_object_begin(j, NULL);
	json_object_begin(j, names[op->type]);
	if (op->type == ETCD_OP_PUT)
		etcd_json_put_fields(j, op->key, op->value ? op->value : "", op->value_len,
				     op->lease);
	else
		etcd_json_key_range(j, op->key, op->prefix);
	json_object_end(j);
	json_object_end(j);
	return true;
}

static bool etcd_json_ops(struct json_out *j, const char *key, const struct etcd_op *ops,
		size_t n)
{
	json_array_begin(j, key);
	for (size_t i = 0; i < n; i++)
		if (!etcd_json_op(j, &ops[i]))
			return false;
	json_array_end(j);
	return true;
}

char *etcd_proto_txn(const struct etcd_txn *txn, size_t *len)
{
	struct json_out j;
	bool ok = true;

	json_init(&j);
	json_object_begin(&j, NULL);
	json_array_begin(&j, "compare");
	for (size_t i = 0; ok && i < txn->n_compares; i++)
		ok = etcd_json_compare(&j, &txn->compares[i]);
	json_array_end(&j);
	ok = ok && etcd_json_ops(&j, "success", txn->success, txn->n_success);
	ok = ok && etcd_json_ops(&j, "failure", txn->failure, txn->n_failure);
	json_object_end(&j);
	if (!ok) {
		json_discard(&j);
		return NULL;
	}
	return etcd_json_done(&j, len);
}

/* ------------------------------------------------------------- replies */

struct etcd_reader {
	char *err;
	size_t errlen;
	bool failed;
};

static bool etcd_bad(struct etcd_reader *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static bool etcd_bad(struct etcd_reader *r, const char *fmt, ...)
{
	va_list ap;

	if (!r->failed && r->errlen) {
		va_start(ap, fmt);
		vsnprintf(r->err, r->errlen, fmt, ap);
		va_end(ap);
	}
	r->failed = true;
	return false;
}

/* A JSON number that a double holds exactly as an integer, within [lo, hi]. */
static bool etcd_exact_number(double d, double lo, double hi)
{
	const double exact = 9007199254740992.0;     /* 2^53 */

	return d == floor(d) && d >= -exact && d <= exact && d >= lo && d <= hi;
}

/* A decimal integer string, all of it: an optional '-' when allowed, then digits. */
static bool etcd_digits(const char *s, bool minus)
{
	if (minus && *s == '-')
		s++;
	if (!*s)
		return false;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return false;
	return true;
}

static bool etcd_get_int64(struct etcd_reader *r, const struct json_value *obj, const char *key,
		int64_t *out)
{
	const struct json_value *v = json_get(obj, key);
	char *end;

	*out = 0;
	if (!v || v->type == JSON_NULL)
		return true;
	if (v->type == JSON_NUMBER) {
		if (!etcd_exact_number(v->number, (double)INT64_MIN, (double)INT64_MAX))
			return etcd_bad(r, "\"%s\" is not an exact integer", key);
		*out = (int64_t)v->number;
		return true;
	}
	if (v->type != JSON_STRING || !etcd_digits(v->string, true))
		return etcd_bad(r, "\"%s\" is not an integer", key);
	errno = 0;
	*out = strtoll(v->string, &end, 10);
	if (errno == ERANGE || *end)
		return etcd_bad(r, "\"%s\" is out of range: %s", key, v->string);
	return true;
}

static bool etcd_get_uint64(struct etcd_reader *r, const struct json_value *obj, const char *key,
		uint64_t *out)
{
	const struct json_value *v = json_get(obj, key);
	char *end;

	*out = 0;
	if (!v || v->type == JSON_NULL)
		return true;
	if (v->type == JSON_NUMBER) {
		if (!etcd_exact_number(v->number, 0, (double)UINT64_MAX))
			return etcd_bad(r, "\"%s\" is not an exact unsigned integer", key);
		*out = (uint64_t)v->number;
		return true;
	}
	if (v->type != JSON_STRING || !etcd_digits(v->string, false))
		return etcd_bad(r, "\"%s\" is not an unsigned integer", key);
	errno = 0;
	*out = strtoull(v->string, &end, 10);
	if (errno == ERANGE || *end)
		return etcd_bad(r, "\"%s\" is out of range: %s", key, v->string);
	return true;
}

static bool etcd_get_bool(struct etcd_reader *r, const struct json_value *obj, const char *key,
		bool *out)
{
	const struct json_value *v = json_get(obj, key);

	*out = false;
	if (!v || v->type == JSON_NULL)
		return true;
	if (v->type != JSON_BOOL)
		return etcd_bad(r, "\"%s\" is not a boolean", key);
	*out = v->boolean;
	return true;
}

/* A string member, copied (absent: ""). */
static bool etcd_get_text(struct etcd_reader *r, const struct json_value *obj, const char *key,
		char **out)
{
	const struct json_value *v = json_get(obj, key);

	if (v && v->type != JSON_NULL && v->type != JSON_STRING)
		return etcd_bad(r, "\"%s\" is not a string", key);
	*out = strdup(v && v->type == JSON_STRING ? v->string : "");
	return *out ? true : etcd_bad(r, "out of memory");
}

/* A base64 member, decoded (absent: empty). */
static bool etcd_get_bytes(struct etcd_reader *r, const struct json_value *obj, const char *key,
		char **out, size_t *len)
{
	const struct json_value *v = json_get(obj, key);

	*len = 0;
	if (v && v->type != JSON_NULL && v->type != JSON_STRING)
		return etcd_bad(r, "\"%s\" is not a string", key);
	*out = etcd_base64_decode(v && v->type == JSON_STRING ? v->string : "", len);
	if (!*out)
		return etcd_bad(r, errno == ENOMEM ? "out of memory" : "\"%s\" is not base64", key);
	return true;
}

/* An array member (absent: NULL, which json_len() counts as empty). */
static bool etcd_get_array(struct etcd_reader *r, const struct json_value *obj, const char *key,
		const struct json_value **out)
{
	const struct json_value *v = json_get(obj, key);

	*out = NULL;
	if (!v || v->type == JSON_NULL)
		return true;
	if (v->type != JSON_ARRAY)
		return etcd_bad(r, "\"%s\" is not an array", key);
	*out = v;
	return true;
}

/* An object member (absent: NULL, which the lookups read as empty). */
static bool etcd_get_object(struct etcd_reader *r, const struct json_value *obj, const char *key,
		const struct json_value **out)
{
	const struct json_value *v = json_get(obj, key);

	*out = NULL;
	if (!v || v->type == JSON_NULL)
		return true;
	if (v->type != JSON_OBJECT)
		return etcd_bad(r, "\"%s\" is not an object", key);
	*out = v;
	return true;
}

static void etcd_kv_clear(struct etcd_kv *kv)
{
	free(kv->key);
	free(kv->value);
	memset(kv, 0, sizeof(*kv));
}

static void etcd_member_clear(struct etcd_member *m)
{
	for (size_t i = 0; i < m->n_client_urls; i++)
		free(m->client_urls[i]);
	free(m->client_urls);
	free(m->name);
	memset(m, 0, sizeof(*m));
}

void etcd_reply_clear(struct etcd_reply *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n_kvs; i++)
		etcd_kv_clear(&r->kvs[i]);
	free(r->kvs);
	for (size_t i = 0; i < r->n_members; i++)
		etcd_member_clear(&r->members[i]);
	free(r->members);
	free(r->version);
	memset(r, 0, sizeof(*r));
}

static bool etcd_read_kv(struct etcd_reader *r, const struct json_value *v, struct etcd_kv *kv)
{
	if (!v || v->type != JSON_OBJECT)
		return etcd_bad(r, "a kv is not an object");
	return etcd_get_bytes(r, v, "key", &kv->key, &kv->key_len) &&
	       etcd_get_bytes(r, v, "value", &kv->value, &kv->value_len) &&
	       etcd_get_int64(r, v, "create_revision", &kv->create_revision) &&
	       etcd_get_int64(r, v, "mod_revision", &kv->mod_revision) &&
	       etcd_get_int64(r, v, "version", &kv->version) &&
	       etcd_get_int64(r, v, "lease", &kv->lease);
}

/* The "kvs" of a range reply, appended to out's. */
static bool etcd_read_kvs(struct etcd_reader *r, const struct json_value *obj,
		struct etcd_reply *out)
{
	const struct json_value *kvs;
	struct etcd_kv *grown;
	size_t n;

	if (!etcd_get_array(r, obj, "kvs", &kvs))
		return false;
	n = json_len(kvs);
	if (n == 0)
		return true;
	grown = realloc(out->kvs, (out->n_kvs + n) * sizeof(*grown));
	if (!grown)
		return etcd_bad(r, "out of memory");
	out->kvs = grown;
	for (size_t i = 0; i < n; i++) {
		struct etcd_kv *kv = &out->kvs[out->n_kvs];

		memset(kv, 0, sizeof(*kv));
		out->n_kvs++;             /* counted now, so a failure frees what it holds */
		if (!etcd_read_kv(r, json_at(kvs, i), kv))
			return false;
	}
	return true;
}

static bool etcd_read_header(struct etcd_reader *r, const struct json_value *root,
		struct etcd_reply *out)
{
	const struct json_value *h;

	return etcd_get_object(r, root, "header", &h) &&
	       etcd_get_int64(r, h, "revision", &out->revision) &&
	       etcd_get_uint64(r, h, "member_id", &out->member_id) &&
	       etcd_get_uint64(r, h, "cluster_id", &out->cluster_id) &&
	       etcd_get_int64(r, h, "raft_term", &out->raft_term);
}

/* A txn's "responses": the kvs of each response_range, in order. */
static bool etcd_read_txn(struct etcd_reader *r, const struct json_value *root,
		struct etcd_reply *out)
{
	const struct json_value *responses;

	if (!etcd_get_bool(r, root, "succeeded", &out->succeeded) ||
	    !etcd_get_array(r, root, "responses", &responses))
		return false;
	for (size_t i = 0; i < json_len(responses); i++) {
		const struct json_value *item = json_at(responses, i);
		const struct json_value *range;

		if (item->type != JSON_OBJECT)
			return etcd_bad(r, "a txn response is not an object");
		if (!etcd_get_object(r, item, "response_range", &range))
			return false;
		if (range && !etcd_read_kvs(r, range, out))
			return false;
	}
	return true;
}

static bool etcd_read_member(struct etcd_reader *r, const struct json_value *v,
		struct etcd_member *m)
{
	const struct json_value *urls;
	size_t n;

	if (!v || v->type != JSON_OBJECT)
		return etcd_bad(r, "a member is not an object");
	if (!etcd_get_uint64(r, v, "ID", &m->id) || !etcd_get_text(r, v, "name", &m->name) ||
	    !etcd_get_array(r, v, "clientURLs", &urls))
		return false;
	n = json_len(urls);
	if (n == 0)
		return true;
	m->client_urls = calloc(n, sizeof(*m->client_urls));
	if (!m->client_urls)
		return etcd_bad(r, "out of memory");
	for (size_t i = 0; i < n; i++) {
		const struct json_value *u = json_at(urls, i);

		if (u->type != JSON_STRING)
			return etcd_bad(r, "a client URL is not a string");
		m->client_urls[i] = strdup(u->string);
		if (!m->client_urls[i])
			return etcd_bad(r, "out of memory");
		m->n_client_urls++;
	}
	return true;
}

static bool etcd_read_members(struct etcd_reader *r, const struct json_value *root,
		struct etcd_reply *out)
{
	const struct json_value *members;
	size_t n;

	if (!etcd_get_array(r, root, "members", &members))
		return false;
	n = json_len(members);
	if (n == 0)
		return true;
	out->members = calloc(n, sizeof(*out->members));
	if (!out->members)
		return etcd_bad(r, "out of memory");
	for (size_t i = 0; i < n; i++) {
		out->n_members++;
		if (!etcd_read_member(r, json_at(members, i), &out->members[i]))
			return false;
	}
	return true;
}

static bool etcd_read_call(struct etcd_reader *r, enum etcd_call call,
		const struct json_value *root, struct etcd_reply *out)
{
	if (!etcd_read_header(r, root, out))
		return false;
	switch (call) {
	case ETCD_CALL_GRANT:
	case ETCD_CALL_KEEPALIVE:
		return etcd_get_int64(r, root, "ID", &out->lease_id) &&
		       etcd_get_int64(r, root, "TTL", &out->ttl);
	case ETCD_CALL_RANGE:
		return etcd_read_kvs(r, root, out);
	case ETCD_CALL_DELETE:
		return etcd_get_int64(r, root, "deleted", &out->deleted);
	case ETCD_CALL_TXN:
		return etcd_read_txn(r, root, out);
	case ETCD_CALL_STATUS:
		return etcd_get_uint64(r, root, "leader", &out->leader) &&
		       etcd_get_text(r, root, "version", &out->version);
	case ETCD_CALL_MEMBERS:
		return etcd_read_members(r, root, out);
	case ETCD_CALL_REVOKE:
	case ETCD_CALL_PUT:
		return true;
	}
	return etcd_bad(r, "unknown call %d", (int)call);
}

/* A gRPC status code as an int; anything else reads as 0 (none). */
static int etcd_code(double d)
{
	return d == floor(d) && d >= 0 && d <= 255 ? (int)d : 0;
}

/*
 * An error carried by a body: {"error":"..","message":"..","code":N} from a
 * refused call, {"error":{"message":"..","grpc_code":N}} from the streamed
 * keepalive. A grant's reply has an "error" string field of its own, empty
 * (so left out) when it succeeded: a non-empty one is a refusal as well.
 */
static bool etcd_body_error(const struct json_value *root, const char **msg, int *code)
{
	const struct json_value *e = json_get(root, "error");
	const char *m;

	*msg = NULL;
	*code = 0;
	if (!e || (e->type == JSON_STRING && !*e->string))
		return false;
	if (e->type == JSON_OBJECT) {
		m = json_get_string(e, "message");
		*code = etcd_code(json_get_number(e, "grpc_code", 0));
	} else {
		m = json_get_string(root, "message");
		*code = etcd_code(json_get_number(root, "code", 0));
		if (!m || !*m)
			m = e->type == JSON_STRING ? e->string : NULL;
	}
	*msg = m && *m ? m : "(no message)";
	return true;
}

/* body as a C string, for json_parse(); NULL (with a message) when it holds a NUL. */
static struct json_value *etcd_parse_body(const char *body, size_t len, char *err, size_t errlen)
{
	struct json_value *v;
	char *text;

	if (memchr(body, '\0', len)) {
		snprintf(err, errlen, "a NUL byte in the body");
		return NULL;
	}
	text = malloc(len + 1);
	if (!text) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	memcpy(text, body, len);
	text[len] = '\0';
	v = json_parse(text, err, errlen);
	free(text);
	return v;
}

bool etcd_proto_parse(enum etcd_call call, const char *body, size_t len, struct etcd_reply *out,
		char *err, size_t errlen)
{
	const char *name = etcd_proto_call_name(call);
	char why[256] = "";
	struct etcd_reader r = { .err = why, .errlen = sizeof(why) };
	const struct json_value *root;
	struct json_value *doc;
	const char *msg;
	int code;

	doc = etcd_parse_body(body, len, why, sizeof(why));
	if (!doc) {
		snprintf(err, errlen, "bad reply to %s: not JSON: %s", name, why);
		return false;
	}
	root = doc;
	if (call == ETCD_CALL_KEEPALIVE && json_get(doc, "result"))
		root = json_get(doc, "result");      /* a streamed call's one message */
	if (root->type != JSON_OBJECT)
		snprintf(err, errlen, "bad reply to %s: not a JSON object", name);
	else if (etcd_body_error(doc, &msg, &code))
		snprintf(err, errlen, "%s refused by etcd: %s", name, msg);
	else if (!etcd_read_call(&r, call, root, out))
		snprintf(err, errlen, "bad reply to %s: %s", name, why);
	else {
		json_value_free(doc);
		return true;
	}
	json_value_free(doc);
	etcd_reply_clear(out);
	return false;
}

bool etcd_proto_parse_error(const char *body, size_t len, char *msg, size_t msglen, int *code)
{
	struct json_value *doc;
	const char *m;
	char why[128];
	bool found;

	*code = 0;
	doc = etcd_parse_body(body, len, why, sizeof(why));
	if (!doc)
		return false;
	found = doc->type == JSON_OBJECT && etcd_body_error(doc, &m, code);
	if (found)
		snprintf(msg, msglen, "%s", m);
	json_value_free(doc);
	return found;
}
