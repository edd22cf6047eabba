/*
 * fuzz_etcd.c — libFuzzer target for what straitd reads from etcd: the
 * replies of its JSON gateway (gateway/witness/etcd_proto.c), for every
 * call, and the error bodies of a refused request.
 *
 * The first byte picks the call, the rest is the body. Beyond "no crash, no
 * leak": a refused reply says why and leaves the reply cleared; an accepted
 * one holds only what its arrays say (every key and value has its length,
 * NUL-terminated past it).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <stdlib.h>

#include "gateway/witness/etcd_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

static void check_reply(const struct etcd_reply *r)
{
	for (size_t i = 0; i < r->n_kvs; i++) {
		CHECK(r->kvs[i].key && r->kvs[i].key[r->kvs[i].key_len] == '\0');
		CHECK(r->kvs[i].value && r->kvs[i].value[r->kvs[i].value_len] == '\0');
	}
	for (size_t i = 0; i < r->n_members; i++)
		for (size_t k = 0; k < r->members[i].n_client_urls; k++)
			CHECK(r->members[i].client_urls[k] != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct etcd_reply r;
	char err[256] = "", msg[256];
	enum etcd_call call;
	int code = 0;

	if (size < 1)
		return 0;
	call = (enum etcd_call)(data[0] % (ETCD_CALL_MEMBERS + 1));
	memset(&r, 0, sizeof(r));
	if (etcd_proto_parse(call, (const char *)data + 1, size - 1, &r, err, sizeof(err))) {
		check_reply(&r);
	} else {
		CHECK(err[0] != '\0');
		CHECK(r.n_kvs == 0 && r.kvs == NULL && r.n_members == 0 && r.members == NULL);
	}
	etcd_reply_clear(&r);
	(void)etcd_proto_parse_error((const char *)data + 1, size - 1, msg, sizeof(msg), &code);
	return 0;
}
