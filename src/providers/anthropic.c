/*
 * DESIGN: Anthropic's Messages API behind the OpenAI surface. Requests are translated in
 * translate.c; streams are framed by the shared SSE parser and each event goes through
 * anthropic_stream.c, which emits OpenAI chunks. Static headers (key, version) are built
 * once per backend. Retryability follows the status: 429 and 5xx (529 "overloaded"
 * included) fail over; other 4xx are the request's fault and pass through as OpenAI errors.
 */
#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http/sse.h"
#include "providers/anthropic.h"
#include "providers/provider.h"
#include "providers/messages.h"
#include "util/arena.h"

struct provider_stream {
    struct sse_parser sse;
    struct anthropic_stream translator;
    chunk_sink sink;
    void *sink_ud;
    struct err *err;
};

static int add_header(struct curl_slist **h, const char *name, const char *value)
{
    size_t n = strlen(name) + strlen(value) + 3;
    char *line = malloc(n);
    if (line == NULL) return -1;
    snprintf(line, n, "%s: %s", name, value);
    struct curl_slist *t = curl_slist_append(*h, line);
    explicit_bzero(line, n); /* the key must not linger in freed heap */
    free(line);
    if (t == NULL) return -1;
    *h = t;
    return 0;
}

static int anthropic_init(struct backend *b, struct err *err)
{
    struct curl_slist *h = NULL;
    if (add_header(&h, "Content-Type", "application/json") ||
        add_header(&h, "x-api-key", b->conf->api_key.value) ||
        add_header(&h, "anthropic-version", b->conf->anthropic_version)) {
        curl_slist_free_all(h);
        return err_oom(err);
    }
    struct curl_slist *t = curl_slist_append(h, "Expect:");
    if (t == NULL) {
        curl_slist_free_all(h);
        return err_oom(err);
    }
    b->headers = t;
    return 0;
}

static bool chat_only(enum openai_endpoint endpoint)
{
    return endpoint == OPENAI_CHAT;
}

static int anthropic_build(struct backend *b, const struct provider_request *pr,
                           struct arena *arena, struct upstream_request *out, struct err *err)
{
    size_t len = 0;
    char *body = anthropic_request_body(pr->request, pr->target_model, b->conf->max_tokens, arena,
                                        &len, err);
    if (body == NULL) return -1;
    char *url = arena_printf(arena, "%s/v1/messages", b->conf->base_url);
    if (url == NULL) return err_oom(err);
    *out = (struct upstream_request){
        .url = url,
        .headers = b->headers,
        .body = body,
        .body_len = len,
        .timeout_ms = b->conf->timeout_ms,
        .connect_timeout_ms = b->conf->connect_timeout_ms,
    };
    return 0;
}

static int anthropic_translate(const struct provider_request *pr, const char *body, size_t len,
                               struct arena *arena, char **out, size_t *out_len, struct err *err)
{
    *out = anthropic_response_body(body, len, pr->target_model, arena, out_len, err);
    return *out ? 0 : -1;
}

static void stream_release(void *ud)
{
    struct provider_stream *st = ud;
    sse_parser_free(&st->sse);
}

static struct provider_stream *anthropic_stream_open(const struct provider_request *pr,
                                                     struct arena *arena)
{
    struct provider_stream *st = arena_calloc(arena, 1, sizeof *st);
    if (st == NULL) return NULL;
    sse_parser_init(&st->sse, 0);
    if (arena_on_free(arena, stream_release, st) != 0) {
        sse_parser_free(&st->sse);
        return NULL;
    }
    anthropic_stream_init(&st->translator, (long)time(NULL));
    snprintf(st->translator.model, sizeof st->translator.model, "%s", pr->target_model);
    return st;
}

static int on_sse_event(void *ud, const char *ev, size_t len)
{
    struct provider_stream *st = ud;
    const char *type = NULL, *data = NULL;
    size_t tlen = 0, dlen = 0;
    int lines = sse_event_data(&st->sse, ev, len, &data, &dlen);
    if (lines < 0) {
        err_oom(st->err);
        return -1;
    }
    if (lines == 0) return 0; /* comments */
    if (!sse_event_field(ev, len, "event", &type, &tlen)) {
        /* Every Anthropic event names its type; data without one is not this API. */
        err_set(st->err, 502, "upstream_error", "bad_upstream_stream",
                "upstream sent an SSE event without a type (not an Anthropic stream)");
        return -1;
    }
    return anthropic_stream_event(&st->translator, type, tlen, data, dlen, st->sink, st->sink_ud,
                                  st->err);
}

static int anthropic_stream_feed(struct provider_stream *st, const char *bytes, size_t n,
                                 chunk_sink sink, void *ud, struct err *err)
{
    st->sink = sink;
    st->sink_ud = ud;
    st->err = err;
    return sse_parser_feed(&st->sse, bytes, n, on_sse_event, st, err);
}

static bool anthropic_stream_complete(const struct provider_stream *st)
{
    return st->translator.done;
}

static size_t anthropic_stream_pending(const struct provider_stream *st)
{
    return sse_parser_pending(&st->sse);
}

static void anthropic_error_message(const char *body, size_t len, char *out, size_t cap)
{
    json_t *doc = json_loadb(body, len, 0, NULL);
    json_t *e = json_object_get(doc, "error");
    const char *type = json_string_value(json_object_get(e, "type"));
    const char *msg = json_string_value(json_object_get(e, "message"));
    if (msg)
        snprintf(out, cap, "%s%s%s", type ? type : "", type ? ": " : "", msg);
    else
        out[0] = '\0';
    json_decref(doc);
}

const struct provider_ops provider_anthropic = {
    .type = "anthropic",
    .init = anthropic_init,
    .supports = chat_only,
    .build = anthropic_build,
    .translate_response = anthropic_translate,
    .stream_open = anthropic_stream_open,
    .stream_feed = anthropic_stream_feed,
    .stream_complete = anthropic_stream_complete,
    .stream_pending = anthropic_stream_pending,
    .error_message = anthropic_error_message,
    .destroy = NULL,
};
