/*
 * libFuzzer target for the answer side of the translating providers (src/providers/anthropic.c,
 * src/providers/aws/bedrock.c) and their stream decoders: whatever an upstream sends back,
 * translation must either fail cleanly or produce valid JSON objects, with no memory error.
 * The first byte picks the path: Anthropic body, Bedrock body, Anthropic SSE stream, Bedrock
 * event-stream (the streams fed in pieces of a fuzzer-chosen size).
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "providers/anthropic.h"
#include "providers/aws/bedrock.h"
#include "providers/provider.h"
#include "util/arena.h"

static int check_chunk(void *ud, const char *json, size_t len)
{
    (void)ud;
    json_t *doc = json_loadb(json, len, 0, NULL);
    if (!json_is_object(doc)) abort(); /* a chunk we emit must be a JSON object */
    json_decref(doc);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    int mode = data[0] % 4;
    size_t step = data[1] % 29 + 1;
    const char *body = (const char *)data + 2;
    size_t len = size - 2;
    struct arena *a = arena_new(0);
    struct err e;
    err_clear(&e);
    size_t out_len = 0;
    if (mode == 0 || mode == 1) {
        char *out = mode == 0 ? anthropic_response_body(body, len, "t", a, &out_len, &e)
                              : bedrock_response_body(body, len, "t", a, &out_len, &e);
        if (out) check_chunk(NULL, out, out_len);
    } else {
        const struct provider_ops *ops = mode == 2 ? &provider_anthropic : &provider_bedrock;
        struct openai_request r = {.endpoint = OPENAI_CHAT, .stream = true};
        struct provider_request pr = {.request = &r, .target_model = "t"};
        struct provider_stream *st = ops->stream_open(&pr, a);
        for (size_t at = 0; st && at < len; at += step) {
            err_clear(&e);
            size_t n = len - at < step ? len - at : step;
            if (ops->stream_feed(st, body + at, n, check_chunk, NULL, &e) != 0) break;
        }
        if (st) (void)ops->stream_complete(st), (void)ops->stream_pending(st);
    }
    arena_free(a);
    return 0;
}
