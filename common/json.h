/*
 * json.h — one output interface for status: a streaming writer that renders
 * either JSON (for scripts) or an indented outline (for people), so each
 * module describes its state once. Values are written in order; keys are given
 * for object members and NULL for array elements and the top-level value.
 *
 * Ownership: the writer owns its buffer until json_finish() hands it to the
 * caller (free() it). Out of memory is sticky and reported by json_finish().
 */
#ifndef STRAIT_JSON_H
#define STRAIT_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JSON_MAX_DEPTH 32

struct json_out {
	bool text;                       /* outline instead of JSON */
	bool array[JSON_MAX_DEPTH];      /* whether each open level is an array */
	char *buf;
	size_t len;
	size_t cap;
	int depth;
	bool first[JSON_MAX_DEPTH];
	bool failed;
};

void json_init(struct json_out *j);
/* The outline form: "key: value" lines, nesting by indentation, "- " for items. */
void json_init_text(struct json_out *j);
void json_object_begin(struct json_out *j, const char *key);
void json_object_end(struct json_out *j);
void json_array_begin(struct json_out *j, const char *key);
void json_array_end(struct json_out *j);
void json_string(struct json_out *j, const char *key, const char *value); /* NULL -> null */
void json_int(struct json_out *j, const char *key, int64_t value);
void json_uint(struct json_out *j, const char *key, uint64_t value);
void json_double(struct json_out *j, const char *key, double value);
void json_bool(struct json_out *j, const char *key, bool value);
void json_null(struct json_out *j, const char *key);
/* A PostgreSQL LSN as PostgreSQL prints it: "16/B374D848". */
void json_lsn(struct json_out *j, const char *key, uint64_t lsn);
/*
 * A whole JSON value written as it is (a document another writer made, a
 * trailing newline left out): the caller vouches for it. JSON form only; in
 * the outline form it fails the writer.
 */
void json_raw(struct json_out *j, const char *key, const char *value);

/* Returns the NUL-terminated document (caller frees), or NULL on failure. */
char *json_finish(struct json_out *j, size_t *len);
/*
 * json_finish(), ending in a newline in both forms (an outline always does):
 * one JSON document per line, as replies and scripts want it. NULL on
 * failure, out of memory included.
 */
char *json_finish_line(struct json_out *j, size_t *len);
/* Discards a writer without taking its buffer. */
void json_discard(struct json_out *j);

#endif
