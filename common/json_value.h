/*
 * json_value.h — reads a JSON document into a tree, for straitctl, which
 * renders the daemon's status documents (written by json.h) as tables.
 *
 * CONTRACT
 * json_parse() takes one complete document (RFC 8259; surrounding white
 * space allowed, nothing else after it) and returns its tree, or NULL with a
 * message in err. Nesting is limited to JSON_VALUE_MAX_DEPTH levels. Strings are
 * decoded to UTF-8 (a \u0000 escape ends the C string early). The lookups
 * are NULL-safe: given NULL, or a value of another type, they answer "absent"
 * (NULL, or the default), so a caller walks optional members without checks.
 */
#ifndef STRAIT_JSON_VALUE_H
#define STRAIT_JSON_VALUE_H

#include <stdbool.h>
#include <stddef.h>

#define JSON_VALUE_MAX_DEPTH 64

enum json_type { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT };

struct json_value {
	enum json_type type;
	bool boolean;
	double number;
	char *string;
	size_t n;                    /* members of an array or object */
	struct json_value *items;    /* n of them */
	char **keys;                 /* an object's: n of them, in document order */
};

struct json_value *json_parse(const char *text, char *err, size_t errlen);
void json_value_free(struct json_value *v);

/* An object's member (the first of that key), or NULL. */
const struct json_value *json_get(const struct json_value *obj, const char *key);
/* An array's i-th item, or NULL. */
const struct json_value *json_at(const struct json_value *arr, size_t i);
/* How many items an array has (0 for anything else). */
size_t json_len(const struct json_value *arr);

/* A member's value when it has that type, else NULL or dflt. */
const char *json_get_string(const struct json_value *obj, const char *key);
double json_get_number(const struct json_value *obj, const char *key, double dflt);
bool json_get_bool(const struct json_value *obj, const char *key, bool dflt);
/* Whether the member is there with a number (null and absent are not). */
bool json_has_number(const struct json_value *obj, const char *key);

#endif
