/*
 * fuzz_frame.c — libFuzzer target for the relay link's frame decoder and
 * every payload reader (gateway/relay/frame.c, gateway/relay/relay_proto.c).
 *
 * Each input is used twice: as a byte stream of frames (decoded one after
 * the other, each frame's payload handed to its reader), and as a bare
 * payload for every reader, so the readers are reached without the fuzzer
 * having to forge CRCs. Beyond "no crash", it checks properties: a decoded
 * frame lies inside the input and re-encodes to the same bytes; a payload
 * that reads back OK re-encodes to exactly the same bytes (the encoding is
 * canonical), and everything a reader points at lies inside the payload.
 * A VERIFY QUERY goes on to the target site's checks
 * (gateway/verify/verify_request.h): one that is accepted carries no
 * statement text and names no system schema, and the statement the target
 * would build has the same shape whatever the names and values hold (its
 * quoted identifiers aside).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/relay/frame.h"
#include "gateway/relay/relay_proto.h"
#include "gateway/verify/verify_request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_LIST 16

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

static void
check_inside(const void *p, size_t n, const uint8_t *buf, size_t len)
{
	const uint8_t *q = p;

	if (n == 0)
		return;
	CHECK(q >= buf && n <= len && (size_t)(q - buf) <= len - n);
}

static void
check_str(struct wire_str s, const uint8_t *buf, size_t len)
{
	check_inside(s.ptr, s.len, buf, len);
	CHECK(s.len == 0 || memchr(s.ptr, 0, s.len) == NULL);
}

/* The writer must reproduce the payload byte for byte. */
static void
check_same(struct wire_writer *w, const uint8_t *p, size_t len)
{
	CHECK(wire_writer_ok(w));
	CHECK(w->len == len);
	CHECK(len == 0 || memcmp(w->data, p, len) == 0);
}

/* sql with every quoted identifier replaced by "?". */
static char *
shape_of(const char *sql)
{
	char *out = malloc(strlen(sql) + 1), *o = out;

	CHECK(out != NULL);
	for (const char *s = sql; *s; s++) {
		if (*s != '"') {
			*o++ = *s;
			continue;
		}
		for (s++; *s && !(s[0] == '"' && s[1] != '"'); s++)
			if (s[0] == '"')
				s++;
		CHECK(*s == '"');
		*o++ = '?';
	}
	*o = '\0';
	return out;
}

/* The target site's statement for r, over its names and over plain ones. */
static void
check_request_shape(const struct verify_request *r)
{
	static const char *const plain[VERIFY_MAX_KEYS] = { "k" };
	struct verify_request canon = *r;
	struct verify_request_table t = { .schema = (char *)r->schema, .name = (char *)r->name,
					  .n = r->q.n_keys };
	struct verify_request_table tc = { .schema = (char *)"s", .name = (char *)"t", .n = r->q.n_keys };
	char why[256], *a, *b, *sa, *sb;

	for (size_t i = 0; i < r->q.n_keys; i++) {
		t.keys[i] = r->keys[i];
		t.types[i] = tc.types[i] = (char *)"integer";
		tc.keys[i] = canon.keys[i] = (char *)(plain[0]);
	}
	canon.schema = (char *)"s";
	canon.name = (char *)"t";
	canon.q.schema = "s";
	canon.q.name = "t";
	canon.q.key_columns = (const char *const *)canon.keys;
	a = verify_request_sql(r, &t, why, sizeof(why));
	b = verify_request_sql(&canon, &tc, why, sizeof(why));
	CHECK(a && b);
	CHECK(strncmp(a, "SELECT ", 7) == 0);
	sa = shape_of(a);
	sb = shape_of(b);
	CHECK(strcmp(sa, sb) == 0);
	free(a);
	free(b);
	free(sa);
	free(sb);
}

static void
check_request(const struct relay_proto_verify *m)
{
	struct verify_request r;
	char why[256];

	if (m->op != RELAY_VERIFY_QUERY)
		return;
	if (verify_request_read(m, NULL, &r, why, sizeof(why))) {
		CHECK(m->text.len == 0);
		CHECK(r.q.kind >= VERIFY_Q_SETTINGS && r.q.kind <= VERIFY_Q_LAST);
		CHECK(r.q.kind == VERIFY_Q_SETTINGS || strncmp(r.schema, "pg_", 3) != 0);
		check_request_shape(&r);
	} else {
		CHECK(why[0] != '\0');
	}
	verify_request_free(&r);
}

static void
payload_readers(const uint8_t *p, size_t len)
{
	struct relay_proto_hello hello;
	struct relay_proto_resume res[MAX_LIST];
	struct relay_proto_position pos[MAX_LIST];
	struct relay_proto_resume_req resume;
	struct relay_proto_ack ack;
	struct relay_proto_heartbeat hb;
	struct relay_proto_batch batch;
	struct relay_proto_sync sync;
	struct relay_proto_sequences seqs;
	struct relay_proto_sequence seq[MAX_LIST];
	struct relay_proto_goodbye bye;
	struct relay_proto_verify verify;
	struct relay_proto_fence fence;
	struct relay_proto_promote promote;
	struct relay_proto_promote_ack pack;
	struct relay_proto_command cmd;
	struct relay_proto_command_reply creply;
	struct relay_proto_catchup catchup;
	struct relay_proto_catchup_reply creply2;
	struct wire_writer w;

	wire_writer_init_heap(&w, FRAME_MAX_PAYLOAD);

	if (relay_proto_read_hello(p, len, &hello, pos, MAX_LIST) == RELAY_PROTO_OK) {
		check_str(hello.cluster, p, len);
		check_str(hello.site, p, len);
		CHECK(hello.nstreams <= MAX_LIST);
		for (size_t i = 0; i < hello.nstreams; i++) {
			check_str(pos[i].stream, p, len);
			CHECK(pos[i].received_lsn == 0 || pos[i].committed_lsn <= pos[i].received_lsn);
		}
		wire_writer_reset(&w);
		CHECK(relay_proto_write_hello(&w, &hello));
		check_same(&w, p, len);
	}
	if (relay_proto_read_resume(p, len, &resume) == RELAY_PROTO_OK) {
		check_str(resume.pos.stream, p, len);
		wire_writer_reset(&w);
		CHECK(relay_proto_write_resume(&w, &resume));
		check_same(&w, p, len);
	}
	if (relay_proto_read_ack(p, len, &ack) == RELAY_PROTO_OK) {
		check_str(ack.stream, p, len);
		wire_writer_reset(&w);
		CHECK(relay_proto_write_ack(&w, &ack));
		check_same(&w, p, len);
	}
	if (relay_proto_read_heartbeat(p, len, &hb) == RELAY_PROTO_OK) {
		CHECK(hb.role <= RELAY_ROLE_FENCED);
		(void)relay_proto_role_name(hb.role);
		wire_writer_reset(&w);
		CHECK(relay_proto_write_heartbeat(&w, &hb));
		check_same(&w, p, len);
	}
	if (relay_proto_read_batch(p, len, &batch) == RELAY_PROTO_OK) {
		check_str(batch.stream, p, len);
		check_inside(batch.data, batch.data_len, p, len);
		CHECK(batch.first_lsn <= batch.last_lsn);
		CHECK(batch.last_lsn == 0 || batch.prev_lsn <= batch.last_lsn);
		wire_writer_reset(&w);
		CHECK(relay_proto_write_batch(&w, &batch));
		check_same(&w, p, len);
	}
	if (relay_proto_read_sync(p, len, &sync) == RELAY_PROTO_OK) {
		check_str(sync.stream, p, len);
		check_str(sync.schema, p, len);
		check_str(sync.table, p, len);
		check_inside(sync.data, sync.data_len, p, len);
		wire_writer_reset(&w);
		CHECK(relay_proto_write_sync(&w, &sync));
		check_same(&w, p, len);
	}
	if (relay_proto_read_sequences(p, len, &seqs, seq, MAX_LIST) == RELAY_PROTO_OK) {
		check_str(seqs.stream, p, len);
		for (size_t i = 0; i < seqs.nseqs; i++) {
			check_str(seq[i].schema, p, len);
			check_str(seq[i].name, p, len);
		}
		wire_writer_reset(&w);
		CHECK(relay_proto_write_sequences(&w, &seqs));
		check_same(&w, p, len);
	}
	if (relay_proto_read_fence(p, len, &fence, res, MAX_LIST) == RELAY_PROTO_OK) {
		CHECK(fence.nstreams <= MAX_LIST);
		for (size_t i = 0; i < fence.nstreams; i++)
			check_str(res[i].stream, p, len);
		wire_writer_reset(&w);
		CHECK(relay_proto_write_fence(&w, &fence));
		check_same(&w, p, len);
	}
	if (relay_proto_read_command(p, len, &cmd) == RELAY_PROTO_OK) {
		CHECK(cmd.argc >= 1 && cmd.argc <= RELAY_COMMAND_MAX_ARGS && cmd.argv[0].len > 0);
		for (size_t i = 0; i < cmd.argc; i++)
			check_str(cmd.argv[i], p, len);
		wire_writer_reset(&w);
		CHECK(relay_proto_write_command(&w, &cmd));
		check_same(&w, p, len);
	}
	if (relay_proto_read_command_reply(p, len, &creply) == RELAY_PROTO_OK) {
		CHECK(creply.ok <= 1);
		check_inside((const uint8_t *)creply.body, creply.body_len, p, len);
		wire_writer_reset(&w);
		CHECK(relay_proto_write_command_reply(&w, &creply));
		check_same(&w, p, len);
	}
	if (relay_proto_read_catchup(p, len, &catchup) == RELAY_PROTO_OK) {
		check_str(catchup.stream, p, len);
		check_str(catchup.source, p, len);
		CHECK(!(catchup.flags & ~RELAY_CATCHUP_FLAGS_KNOWN));
		wire_writer_reset(&w);
		CHECK(relay_proto_write_catchup(&w, &catchup));
		check_same(&w, p, len);
	}
	if (relay_proto_read_catchup_reply(p, len, &creply2) == RELAY_PROTO_OK) {
		check_str(creply2.stream, p, len);
		check_str(creply2.message, p, len);
		CHECK(creply2.ok <= 1);
		wire_writer_reset(&w);
		CHECK(relay_proto_write_catchup_reply(&w, &creply2));
		check_same(&w, p, len);
	}
	if (relay_proto_read_promote(p, len, &promote) == RELAY_PROTO_OK) {
		check_str(promote.reason, p, len);
		wire_writer_reset(&w);
		CHECK(relay_proto_write_promote(&w, &promote));
		check_same(&w, p, len);
	}
	if (relay_proto_read_promote_ack(p, len, &pack, res, MAX_LIST) == RELAY_PROTO_OK) {
		CHECK(pack.ok <= 1);
		check_str(pack.message, p, len);
		CHECK(pack.nstreams <= MAX_LIST);
		for (size_t i = 0; i < pack.nstreams; i++)
			check_str(res[i].stream, p, len);
		wire_writer_reset(&w);
		CHECK(relay_proto_write_promote_ack(&w, &pack));
		check_same(&w, p, len);
	}
	if (relay_proto_read_verify(p, len, &verify) == RELAY_PROTO_OK) {
		struct wire_reader vr;

		check_str(verify.stream, p, len);
		check_str(verify.text, p, len);
		wire_writer_reset(&w);
		CHECK(relay_proto_write_verify_head(&w, &verify));
		wire_reader_init(&vr, verify.values, verify.values_len);
		for (uint32_t i = 0; i < verify.nvalues; i++) {
			const char *v;
			uint32_t n;

			CHECK(relay_proto_verify_value(&vr, &v, &n));
			CHECK(relay_proto_put_verify_value(&w, v, n));
		}
		CHECK(wire_remaining(&vr) == 0);
		check_same(&w, p, len);
		check_request(&verify);
	}
	if (relay_proto_read_goodbye(p, len, &bye) == RELAY_PROTO_OK) {
		check_str(bye.reason, p, len);
		wire_writer_reset(&w);
		CHECK(relay_proto_write_goodbye(&w, &bye));
		check_same(&w, p, len);
	}
	wire_writer_free(&w);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t off = 0;

	/* As a stream of frames. */
	while (off < size) {
		struct frame f;
		uint8_t hdr[FRAME_HEADER_SIZE];
		enum frame_status st = frame_decode(data + off, size - off, &f);

		(void)frame_status_str(st);
		if (st == FRAME_NEED_MORE) {
			CHECK(f.size > size - off && f.size <= FRAME_MAX_SIZE);
			break;
		}
		if (st != FRAME_OK)
			break;
		CHECK(f.size == FRAME_HEADER_SIZE + (size_t)f.payload_len);
		CHECK(f.size <= size - off);
		CHECK(f.payload == data + off + FRAME_HEADER_SIZE);
		CHECK(frame_type_valid(f.type));
		(void)frame_type_name(f.type);
		CHECK(frame_encode_header(hdr, f.type, f.flags, f.epoch, f.payload,
			f.payload_len));
		CHECK(memcmp(hdr, data + off, FRAME_HEADER_SIZE) == 0);
		payload_readers(f.payload, f.payload_len);
		off += f.size;
	}

	/* As a bare payload. */
	payload_readers(data, size);
	return 0;
}
