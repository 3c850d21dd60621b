/*
 * libFuzzer target for src/http/sse.c: upstream bytes split at fuzzer-chosen points must
 * frame into the same events as the unsplit bytes, with no memory error.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/sse.h"

struct collect {
    char *buf;
    size_t len, cap;
};

static int on_event(void *ud, const char *ev, size_t len)
{
    struct collect *c = ud;
    const char *data;
    size_t dlen;
    struct sse_parser scratch;
    sse_parser_init(&scratch, 0);
    int lines = sse_event_data(&scratch, ev, len, &data, &dlen);
    if (lines > 0 && (data == NULL || dlen > len)) abort();
    sse_parser_free(&scratch);
    if (c->len + len + 1 > c->cap) {
        c->cap = (c->len + len + 1) * 2;
        c->buf = realloc(c->buf, c->cap);
        if (c->buf == NULL) abort();
    }
    memcpy(c->buf + c->len, ev, len);
    c->len += len;
    c->buf[c->len++] = '\0'; /* event separator */
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    size_t step = (size_t)data[0] % 17 + 1; /* first byte picks the split size */
    const char *text = (const char *)data + 1;
    size_t n = size - 1;
    struct collect whole = {0}, pieces = {0};
    struct sse_parser a, b;
    struct err e;
    sse_parser_init(&a, 1 << 16);
    sse_parser_init(&b, 1 << 16);
    int ra = sse_parser_feed(&a, text, n, on_event, &whole, &e);
    int rb = 0;
    for (size_t at = 0; at < n && rb == 0; at += step)
        rb = sse_parser_feed(&b, text + at, n - at < step ? n - at : step, on_event, &pieces, &e);
    if (ra == 0 && rb == 0) {
        if (whole.len != pieces.len || (whole.len && memcmp(whole.buf, pieces.buf, whole.len)))
            abort(); /* framing must not depend on how the bytes were split */
        if (sse_parser_pending(&a) != sse_parser_pending(&b)) abort();
    }
    sse_parser_free(&a);
    sse_parser_free(&b);
    free(whole.buf);
    free(pieces.buf);
    return 0;
}
