/*
 * libFuzzer target for request validation (src/openai/request.c, src/util/json_scan.c), body
 * rewriting (src/providers/openai.c) and the admission arithmetic fed by a request
 * (src/guard/ratelimit.c, budget.c):
 *   - a body the gateway accepts is one jansson reads too (with duplicate keys refused),
 *     since the translations and the engine read bodies with jansson; a body jansson reads
 *     without duplicates is never refused as invalid JSON;
 *   - it is rewritten into valid JSON whose "model" is the target's, and any chat body
 *     translates into valid Anthropic and Bedrock JSON or is refused with a 400;
 *   - its max_tokens (any int64 the checks allow) charged against a rate limit and priced
 *     into a budget leaves the counters finite and sane (UBSan catches a wrapped sum or an
 *     out-of-range float-to-int conversion).
 */
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "openai/request.h"
#include "guard/budget.h"
#include "guard/ratelimit.h"
#include "providers/anthropic.h"
#include "providers/aws/bedrock.h"
#include "providers/provider.h"
#include "util/arena.h"

/* What admission does with an accepted request's max_tokens: charge it against a TPM limit
 * (and give most back, or charge far more, after the fact) and reserve its price on a
 * budget. */
static void admit_like_the_guard(const struct openai_request *req, uint8_t salt)
{
    const struct json_scan *s = &req->scan;
    long long max_tokens = 0;
    int mt = json_scan_get(s, 0, "max_tokens");
    if (mt >= 0 && !json_scan_is_null(s, mt)) {
        if (!json_scan_integer(s, mt, &max_tokens) || max_tokens < 1) abort(); /* validated */
    }
    int64_t limit = (int64_t)1 << (salt % 63), now = 1000000000;
    struct gcra g = {0};
    struct gcra_result r;
    gcra_take(&g, limit, max_tokens, now, &r);
    if (max_tokens > limit && (r.allowed || !r.never)) abort();
    if (r.remaining < 0 || r.reset_ms < 0) abort();
    gcra_adjust(&g, limit, salt & 1 ? INT64_MAX - max_tokens : -max_tokens, now);
    gcra_take(&g, limit, 1, now, &r);
    if (r.remaining < 0 || r.retry_after_ms < 0) abort();
    struct budget_book *b = budget_book_new();
    struct budget_conf rule = {.scope = BUDGET_SCOPE_KEY,
                               .name = "k",
                               .limit_usd = 10,
                               .period = BUDGET_DAILY,
                               .soft = 0.8};
    struct budget_applies a = {&rule, "k"};
    struct budget_verdict v;
    struct budget_hold h;
    double usd = (double)max_tokens * (salt & 2 ? 1e300 : 15.0) / 1e6; /* price $/1M */
    if (b && budget_admit(b, &a, 1, usd, now, &v, &h) == 0 && !v.reject) {
        budget_settle(&h, salt & 4 ? NAN : usd);
        if (!isfinite(budget_used(b, BUDGET_SCOPE_KEY, BUDGET_DAILY, "k", now))) abort();
    }
    budget_book_free(b);
}

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
        char *out = openai_body_for_target(&req, "target-\"model\"", false, a, &out_len, &e);
        if (out == NULL) abort();
        json_t *j = json_loadb(out, out_len, 0, NULL);
        json_t *orig = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
        if (orig == NULL || j == NULL) abort();
        if (j && strcmp(json_string_value(json_object_get(j, "model")), "target-\"model\"") != 0)
            abort();
        if (j && req.stream &&
            !json_is_true(json_object_get(json_object_get(j, "stream_options"), "include_usage")))
            abort();
        json_decref(j);
        json_decref(orig);
        admit_like_the_guard(&req, data[0]);
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
    } else if (e.status != 400) { /* no 500: memory never runs out here, so one is a bug */
        abort();
    } else if (e.code && strcmp(e.code, "invalid_json") == 0 &&
               strstr(e.msg, "must be a JSON object") == NULL) {
        /* Refused as not JSON: jansson must refuse it too (or find a duplicate key) —
         * except for a raw NUL byte between tokens, which jansson skips and JSON forbids. */
        json_t *strict = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
        if (strict && memchr(body, '\0', len) == NULL) abort();
        json_decref(strict);
    }
    arena_free(a);
    return 0;
}
