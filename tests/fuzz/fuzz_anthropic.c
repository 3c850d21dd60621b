/*
 * libFuzzer target for the Anthropic Messages surface (src/api/surface_anthropic.c), which
 * reads request bodies and, on the way back, upstream chunks:
 *   - a body is either refused with a 400 (or 500 for memory) and no request model, or
 *     becomes a request model whose body jansson reads as an object naming the same model;
 *   - then the rest of the input, split on newlines, is fed as stream chunks: whatever they
 *     hold, the writer frames only whole `event: …\ndata: {…}\n\n` events and never crashes.
 * Input: the body, then optionally a NUL byte and the chunks.
 */
#include <event2/buffer.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/surface_anthropic.h"
#include "http/server.h"
#include "util/arena.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data, *nul = memchr(p, '\0', size);
    size_t body_len = nul ? (size_t)(nul - p) : size;
    struct http_request req;
    struct anthropic_state st;
    memset(&req, 0, sizeof req);
    memset(&st, 0, sizeof st);
    req.arena = arena_new(4096);
    req.body = evbuffer_new();
    evbuffer_add(req.body, p, body_len);
    struct exchange x = {.req = &req, .state = &st};
    struct err e;
    err_clear(&e);
    if (surface_anthropic.parse(&x, OPENAI_CHAT, &e) != 0) {
        if ((e.status != 400 && e.status != 500) || x.request != NULL) abort();
        goto out;
    }
    json_t *doc = json_loadb(x.request->scan.js, x.request->scan.len, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(doc) ||
        strcmp(json_string_value(json_object_get(doc, "model")), x.request->model) != 0)
        abort();
    json_decref(doc);
    const char *c = nul ? nul + 1 : p + size, *end = p + size;
    while (c < end) {
        const char *nl = memchr(c, '\n', (size_t)(end - c));
        size_t n = nl ? (size_t)(nl - c) : (size_t)(end - c);
        struct call_chunk ch = {.json = c, .len = n, .usage_only = n > 0 && c[0] == 'u'};
        if (surface_anthropic.chunk(&x, &ch) < 0) abort(); /* only out of memory may fail */
        c += n + 1;
    }
    if (st.out) {
        size_t n = evbuffer_get_length(st.out);
        const char *s = n ? (const char *)evbuffer_pullup(st.out, -1) : "";
        if (n && (strncmp(s, "event: ", 7) != 0 || n < 2 || s[n - 1] != '\n' || s[n - 2] != '\n'))
            abort();
    }
out:
    arena_free(req.arena);
    evbuffer_free(req.body);
    return 0;
}
