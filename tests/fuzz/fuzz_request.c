/*
 * libFuzzer target for request validation (src/api/openai.c, src/util/json_scan.c) and body
 * rewriting (src/providers/openai.c): any body the gateway accepts must be rewritten into
 * valid JSON whose "model" is the target's (checked with jansson); any chat body must either
 * translate into valid Anthropic and Bedrock JSON or be refused with a 400 naming why.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/openai.h"
#include "providers/anthropic.h"
#include "providers/aws/bedrock.h"
#include "providers/provider.h"
#include "util/arena.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    enum openai_endpoint ep = (enum openai_endpoint)(data[0] % 3);
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    struct arena *a = arena_new(4096);
    struct openai_request req;
    struct err e;
    if (openai_parse_request(ep, body, len, a, &req, &e) == 0) {
        size_t out_len = 0;
        char *out = openai_body_for_target(&req, "target-\"model\"", a, &out_len, &e);
        if (out == NULL) abort();
        json_t *j = json_loadb(out, out_len, 0, NULL);
        /* jsmn is laxer than jansson in corners (e.g. invalid escapes); only a body jansson
         * accepts before rewriting must still be accepted after it. */
        json_t *orig = json_loadb(body, len, 0, NULL);
        if (orig && j == NULL) abort();
        if (j && strcmp(json_string_value(json_object_get(j, "model")), "target-\"model\"") != 0)
            abort();
        if (j && req.stream &&
            !json_is_true(json_object_get(json_object_get(j, "stream_options"), "include_usage")))
            abort();
        json_decref(j);
        json_decref(orig);
        if (ep == OPENAI_CHAT) {
            for (int k = 0; k < 2; k++) {
                err_clear(&e);
                char *t = k == 0 ? anthropic_request_body(&req, "m", 64, a, &out_len, &e)
                                 : bedrock_request_body(&req, a, &out_len, &e);
                if (t == NULL && e.status != 400 && e.status != 500) abort();
                json_t *tj = t ? json_loadb(t, out_len, 0, NULL) : NULL;
                if (t && !json_is_object(tj)) abort();
                json_decref(tj);
            }
        }
    } else if (e.status != 400 && e.status != 500) {
        abort();
    }
    arena_free(a);
    return 0;
}
