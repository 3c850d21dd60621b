/*
 * libFuzzer target for src/providers/aws/eventstream.c: arbitrary upstream bytes, split at
 * fuzzer-chosen points, must decode to the same messages as unsplit, with no memory error.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "providers/aws/eventstream.h"

struct digest {
    uint64_t h;
    int n;
};

static int on_event(void *ud, const struct aws_event *ev)
{
    struct digest *d = ud;
    for (size_t i = 0; i < ev->payload_len; i++) d->h = d->h * 131 + ev->payload[i];
    if (ev->event_type)
        for (const char *p = ev->event_type; *p; p++) d->h = d->h * 131 + (uint8_t)*p;
    d->n++;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    size_t step = data[0] % 23 + 1;
    struct aws_eventstream a, b;
    struct digest da = {0}, db = {0};
    struct err e;
    aws_eventstream_init(&a, 1 << 16);
    aws_eventstream_init(&b, 1 << 16);
    int ra = aws_eventstream_feed(&a, data + 1, size - 1, on_event, &da, &e);
    int rb = 0;
    for (size_t at = 1; at < size && rb == 0; at += step)
        rb = aws_eventstream_feed(&b, data + at, size - at < step ? size - at : step, on_event, &db,
                                  &e);
    if (ra == 0 && rb == 0 && (da.n != db.n || da.h != db.h)) abort();
    if (ra == 0 && rb == 0 && aws_eventstream_pending(&a) != aws_eventstream_pending(&b)) abort();
    aws_eventstream_free(&a);
    aws_eventstream_free(&b);
    return 0;
}
