/*
 * fuzz_uapi.c — libFuzzer target for the UAPI reply parsers: any bytes a
 * userspace WireGuard implementation might send must be refused or parsed,
 * never crash, leak or overrun. A parsed device is formatted back as a set
 * request to exercise the formatter on whatever the parser accepted.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tunnel/uapi.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct wgdev *dev = NULL;
	char err[256];
	char *req;
	size_t len;

	/* A copy of exactly size bytes, so that ASan sees any read past the end. */
	char *buf = malloc(size ? size : 1);

	if (!buf)
		return 0;
	if (size)
		memcpy(buf, data, size);
	(void)uapi_parse_errno(buf, size, err, sizeof(err));
	if (uapi_parse_get(buf, size, &dev, err, sizeof(err)) == 0) {
		req = uapi_format_set(dev, &len);
		if (req)
			uapi_request_free(req, len);
		wgdev_free(dev);
	}
	free(buf);
	return 0;
}
