/*
 * fuzz_status.c — libFuzzer target for what straitctl reads from straitd's
 * control socket: the JSON reader (common/json_value.c) and the compact
 * status and schedule tables made of any tree it accepts
 * (gateway/daemon/status_text.c).
 *
 * Beyond "no crash, no leak": a refused document says why; an accepted one
 * renders both tables, each ending in a newline.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/json_value.h"
#include "gateway/daemon/status_text.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1), err[128] = "", *out;
	struct json_value *v;

	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	v = json_parse(text, err, sizeof(err));
	if (!v) {
		CHECK(err[0] != '\0');
		free(text);
		return 0;
	}
	out = status_text_status(v);
	CHECK(out && out[0] && out[strlen(out) - 1] == '\n');
	free(out);
	out = status_text_schedule(v);
	CHECK(out && out[0] && out[strlen(out) - 1] == '\n');
	free(out);
	json_value_free(v);
	free(text);
	return 0;
}
