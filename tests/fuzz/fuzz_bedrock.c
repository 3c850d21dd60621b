/*
 * libFuzzer target for the Bedrock runtime surface's translations (src/api/surface_bedrock.c),
 * which copy JSON string values verbatim between formats instead of decoding them:
 *   - a request body is either refused with a 400 (or 500 for memory), or becomes an OpenAI
 *     chat body that jansson reads strictly (no duplicate key) as an object naming the
 *     model, with a messages list;
 *   - an answer is either refused (NULL) or becomes a JSON object jansson reads strictly;
 *   - stream chunks become whole event-stream frames whose payloads are JSON objects, and
 *     the stream's end adds whole frames too.
 * Input: one byte choosing the operation, the body, then optionally a NUL byte and an
 * OpenAI answer, then optionally another NUL byte and chunks split on newlines.
 */
#include <event2/buffer.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/surface_bedrock.h"
#include "providers/aws/eventstream.h"
#include "util/arena.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void must_be_object(const char *s, size_t n)
{
    json_t *doc = json_loadb(s, n, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(doc)) abort();
    json_decref(doc);
}

static int frame_payload(void *ud, const struct aws_event *ev)
{
    (void)ud;
    must_be_object((const char *)ev->payload, ev->payload_len);
    return 0;
}

/* Every byte queued decodes as whole frames with JSON object payloads. */
static void check_frames(struct evbuffer *out)
{
    size_t n = evbuffer_get_length(out);
    if (n == 0) return;
    struct aws_eventstream d;
    struct err e;
    aws_eventstream_init(&d, 0);
    if (aws_eventstream_feed(&d, evbuffer_pullup(out, -1), n, frame_payload, NULL, &e) != 0 ||
        aws_eventstream_pending(&d) != 0)
        abort();
    aws_eventstream_free(&d);
    evbuffer_drain(out, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    enum bedrock_op op = (enum bedrock_op)(data[0] % 4);
    const char *p = (const char *)data + 1, *end = (const char *)data + size;
    const char *nul = memchr(p, '\0', (size_t)(end - p));
    size_t body_len = nul ? (size_t)(nul - p) : (size_t)(end - p);

    struct arena *a = arena_new(4096);
    struct err e;
    char *out = NULL;
    size_t out_len = 0;
    err_clear(&e);
    if (bedrock_translate_request(op, "fuzz \"model\"", p, body_len, a, &out, &out_len, &e) != 0) {
        if (e.status != 400 && e.status != 500) abort();
    } else {
        json_t *doc = json_loadb(out, out_len, JSON_REJECT_DUPLICATES, NULL);
        if (!json_is_object(doc) ||
            strcmp(json_string_value(json_object_get(doc, "model")), "fuzz \"model\"") != 0 ||
            !json_is_array(json_object_get(doc, "messages")))
            abort();
        json_decref(doc);
    }
    arena_free(a);
    if (nul == NULL) return 0;

    const char *ans = nul + 1, *nul2 = memchr(ans, '\0', (size_t)(end - ans));
    size_t ans_len = nul2 ? (size_t)(nul2 - ans) : (size_t)(end - ans);
    char *s = bedrock_translate_answer(op, "fuzz", ans, ans_len, 5);
    if (s) must_be_object(s, strlen(s));
    free(s);
    if (nul2 == NULL) return 0;

    struct bedrock_state st = {.op = op, .model_id = "fuzz", .block = -1};
    struct evbuffer *frames = evbuffer_new();
    for (const char *c = nul2 + 1; c < end;) {
        const char *nl = memchr(c, '\n', (size_t)(end - c));
        size_t n = nl ? (size_t)(nl - c) : (size_t)(end - c);
        bedrock_stream_chunk(&st, c, n, frames); /* -1: not JSON; frames stay whole */
        check_frames(frames);
        c += n + 1;
    }
    if (bedrock_stream_end(&st, 1, 2, 3, size % 2 ? "broken \"stream\"" : NULL, frames) != 0)
        abort();
    check_frames(frames);
    evbuffer_free(frames);
    return 0;
}
