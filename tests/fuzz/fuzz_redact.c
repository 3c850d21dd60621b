/*
 * libFuzzer target for src/guard/pii.c: a text fed to the stream matcher in fuzzer-chosen
 * pieces must come out exactly as pii_redact of the whole text (split invariance), in
 * redact and keep modes; keep mode must reproduce the input byte for byte; nothing may be
 * left held after finish; no memory error.
 *
 * Input: byte 0 = mode (bit 0: keep), byte 1 = seed for the chunking, the rest = the text.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "guard/pii.h"

static struct pii *detector;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    if (detector == NULL) {
        struct err e;
        if ((detector = pii_new(&e)) == NULL) abort();
    }
    bool keep = data[0] & 1;
    uint32_t rng = data[1] * 2654435761u + 1;
    const char *text = (const char *)data + 2;
    size_t len = size - 2;

    struct pii_buf whole = {0}, streamed = {0};
    pii_kinds k1 = pii_redact(detector, text, len, keep, &whole);
    struct pii_stream *s = pii_stream_new(detector, keep);
    if (s == NULL) abort();
    pii_kinds k2 = 0;
    for (size_t at = 0; at < len;) {
        rng ^= rng << 13, rng ^= rng >> 17, rng ^= rng << 5;
        size_t n = 1 + rng % (rng & 0x100 ? 3 : 64); /* often tiny pieces */
        if (n > len - at) n = len - at;
        k2 |= pii_stream_feed(s, text + at, n, &streamed);
        at += n;
    }
    k2 |= pii_stream_finish(s, &streamed);
    if (pii_stream_held(s) != 0) abort();
    if (whole.oom || streamed.oom) abort();
    if (whole.len != streamed.len || (whole.len && memcmp(whole.data, streamed.data, whole.len)))
        abort();
    if (k1 != k2) abort();
    if (keep && (whole.len != len || (len && memcmp(whole.data, text, len)))) abort();
    pii_stream_free(s);
    free(whole.data);
    free(streamed.data);
    return 0;
}
