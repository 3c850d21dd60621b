/*
 * DESIGN: Anthropic's Messages API behind the OpenAI surface, in one file: request and answer
 * translation (the message blocks come from messages.c, shared with Bedrock), the stream
 * translator, and the provider ops. Streams are framed by the shared SSE parser; each event
 * goes through a small state machine over Anthropic's event sequence that emits OpenAI chunks
 * through chunk.c, the usage chunk at message_stop, so the proxy's usage handling works
 * unchanged for translated streams. Static headers (key, version) are built once per
 * backend. Retryability follows the status: 429 and 5xx (529 "overloaded" included) fail
 * over; other 4xx are the request's fault and pass through as OpenAI errors.
 */
#include "providers/anthropic.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http/sse.h"
#include "providers/messages.h"
#include "providers/provider.h"
#include "util/json_text.h"
#include "util/arena.h"

/* ---- requests ------------------------------------------------------------------------- */

char *anthropic_request_body(const struct openai_request *r, const char *target_model,
                             long default_max_tokens, struct arena *arena, size_t *len,
                             struct err *err)
{
    struct messages_request m;
    if (messages_prepare(MESSAGES_ANTHROPIC, r, &m, err) != 0) return NULL;
    json_t *req = m.req, *messages = m.messages, *system = m.system, *out = json_object();
    json_object_set_new(out, "model", json_string(target_model));
    json_object_set_new(out, "messages", messages);
    if (json_array_size(system))
        json_object_set_new(out, "system", system);
    else
        json_decref(system);
    json_t *mt = messages_max_tokens(req);
    json_object_set_new(out, "max_tokens",
                        mt ? json_incref(mt) : json_integer((json_int_t)default_max_tokens));
    json_t *v;
    if ((v = json_object_get(req, "temperature")) && json_is_number(v))
        json_object_set(out, "temperature", v);
    if ((v = json_object_get(req, "top_p")) && json_is_number(v)) json_object_set(out, "top_p", v);
    if ((v = messages_stop_list(json_object_get(req, "stop"))))
        json_object_set_new(out, "stop_sequences", v);
    if (json_is_true(json_object_get(req, "stream")))
        json_object_set_new(out, "stream", json_true());
    if ((v = json_object_get(req, "user")) && json_is_string(v))
        json_object_set_new(out, "metadata", json_pack("{s:O}", "user_id", v));

    json_t *tools = json_object_get(req, "tools");
    if (json_is_array(tools) && json_array_size(tools)) {
        json_t *ts = json_array();
        size_t k;
        json_t *t;
        json_array_foreach(tools, k, t)
        {
            json_t *fn = json_object_get(t, "function");
            json_t *params = json_object_get(fn, "parameters");
            json_t *tool =
                json_pack("{s:O?, s:o}", "name", json_object_get(fn, "name"), "input_schema",
                          json_is_object(params) ? json_incref(params)
                                                 : json_pack("{s:s}", "type", "object"));
            json_t *desc = json_object_get(fn, "description");
            if (json_is_string(desc)) json_object_set(tool, "description", desc);
            json_array_append_new(ts, tool);
        }
        json_object_set_new(out, "tools", ts);
        json_t *tc = json_object_get(req, "tool_choice");
        json_t *choice = NULL;
        const char *tcs = json_string_value(tc);
        if (tcs && strcmp(tcs, "required") == 0)
            choice = json_pack("{s:s}", "type", "any");
        else if (tcs && strcmp(tcs, "none") == 0)
            choice = json_pack("{s:s}", "type", "none");
        else if (tcs && strcmp(tcs, "auto") == 0)
            choice = json_pack("{s:s}", "type", "auto");
        else if (json_is_object(tc))
            choice = json_pack("{s:s, s:O?}", "type", "tool", "name",
                               json_object_get(json_object_get(tc, "function"), "name"));
        if (json_is_false(json_object_get(req, "parallel_tool_calls"))) {
            if (choice == NULL) choice = json_pack("{s:s}", "type", "auto");
            json_object_set_new(choice, "disable_parallel_tool_use", json_true());
        }
        if (choice) json_object_set_new(out, "tool_choice", choice);
    }
    json_decref(req);
    return messages_dump(out, arena, len, err);
}

/* ---- answers -------------------------------------------------------------------------- */

char *anthropic_response_body(const char *body, size_t body_len, const char *target_model,
                              struct arena *arena, size_t *len, struct err *err)
{
    json_t *doc = json_loadb(body, body_len, 0, NULL);
    json_t *content = json_object_get(doc, "content");
    if (!json_is_object(doc) || !json_is_array(content)) {
        json_decref(doc);
        err_set(err, 502, "upstream_error", "bad_upstream_response",
                "the answer is not an Anthropic message");
        return NULL;
    }
    json_t *texts = json_array(), *calls = json_array();
    size_t k;
    json_t *b;
    json_array_foreach(content, k, b)
    {
        const char *type = json_string_value(json_object_get(b, "type"));
        if (type && strcmp(type, "text") == 0 && json_is_string(json_object_get(b, "text"))) {
            json_array_append(texts, json_object_get(b, "text"));
        } else if (type && strcmp(type, "tool_use") == 0) {
            json_array_append_new(calls, messages_tool_call(json_object_get(b, "id"),
                                                            json_object_get(b, "name"),
                                                            json_object_get(b, "input")));
        }
    }
    json_t *u = json_object_get(doc, "usage");
    long in = (long)json_integer_value(json_object_get(u, "input_tokens")) +
              (long)json_integer_value(json_object_get(u, "cache_creation_input_tokens"));
    long cached = (long)json_integer_value(json_object_get(u, "cache_read_input_tokens"));
    long outt = (long)json_integer_value(json_object_get(u, "output_tokens"));
    const char *id = json_string_value(json_object_get(doc, "id"));
    const char *model = json_string_value(json_object_get(doc, "model"));
    char idbuf[160], modelbuf[200];
    snprintf(idbuf, sizeof idbuf, "%s", id ? id : "chatcmpl-anthropic");
    snprintf(modelbuf, sizeof modelbuf, "%s", model ? model : target_model);
    const char *finish =
        messages_finish_reason(json_string_value(json_object_get(doc, "stop_reason")));
    json_decref(doc);
    return messages_completion(idbuf, modelbuf, texts, calls, finish, chunk_usage(in, outt, cached),
                               arena, len, err);
}

/* ---- streams -------------------------------------------------------------------------- */

void anthropic_stream_init(struct anthropic_stream *s, long created)
{
    memset(s, 0, sizeof *s);
    s->created = created;
    s->tool_index = -1;
    snprintf(s->id, sizeof s->id, "chatcmpl-anthropic");
}

static int emit(struct anthropic_stream *s, json_t *delta, const char *finish, json_t *usage,
                chunk_sink cb, void *ud, struct err *err)
{
    struct chunk_head h = {s->id, s->model, s->created};
    return chunk_emit(&h, delta, finish, usage, cb, ud, err);
}

static bool is(const char *type, size_t len, const char *want)
{
    return strlen(want) == len && memcmp(type, want, len) == 0;
}

/* Not messages_finish_reason(): NULL means "no finish yet" (a message_delta without a
 * stop_reason), and a refusal maps to "stop" here while whole answers map it to
 * "content_filter". Both kept as they were: unifying them would change what clients see. */
static const char *finish_for(const char *stop_reason)
{
    if (stop_reason == NULL) return NULL;
    if (strcmp(stop_reason, "max_tokens") == 0) return "length";
    if (strcmp(stop_reason, "tool_use") == 0) return "tool_calls";
    return "stop"; /* end_turn, stop_sequence, pause_turn, refusal */
}

int anthropic_stream_event(struct anthropic_stream *s, const char *type, size_t type_len,
                           const char *data, size_t data_len, chunk_sink cb, void *ud,
                           struct err *err)
{
    if (is(type, type_len, "ping")) return 0;
    json_t *d = json_loadb(data, data_len, 0, NULL);
    int rc = 0;
    if (!json_is_object(d)) {
        json_decref(d);
        return err_set(err, 502, "upstream_error", "bad_upstream_stream",
                       "upstream sent a %.*s event that is not JSON",
                       (int)(type_len > 40 ? 40 : type_len), type);
    }
    if (is(type, type_len, "message_start")) {
        json_t *m = json_object_get(d, "message");
        const char *id = json_string_value(json_object_get(m, "id"));
        const char *model = json_string_value(json_object_get(m, "model"));
        if (id) snprintf(s->id, sizeof s->id, "%s", id);
        if (model) snprintf(s->model, sizeof s->model, "%s", model);
        json_t *u = json_object_get(m, "usage");
        s->input_tokens = (long)json_integer_value(json_object_get(u, "input_tokens"));
        s->cache_read_tokens =
            (long)json_integer_value(json_object_get(u, "cache_read_input_tokens"));
        s->output_tokens = (long)json_integer_value(json_object_get(u, "output_tokens"));
        s->started = true;
        rc = emit(s, json_pack("{s:s, s:s}", "role", "assistant", "content", ""), NULL, NULL, cb,
                  ud, err);
    } else if (is(type, type_len, "content_block_start")) {
        json_t *block = json_object_get(d, "content_block");
        const char *btype = json_string_value(json_object_get(block, "type"));
        if (btype && strcmp(btype, "tool_use") == 0) {
            s->tool_index = s->tools_seen++;
            const char *tid = json_string_value(json_object_get(block, "id"));
            const char *name = json_string_value(json_object_get(block, "name"));
            json_t *call = json_pack("{s:i, s:s, s:s, s:{s:s, s:s}}", "index", s->tool_index, "id",
                                     tid ? tid : "", "type", "function", "function", "name",
                                     name ? name : "", "arguments", "");
            rc = emit(s, json_pack("{s:[o]}", "tool_calls", call), NULL, NULL, cb, ud, err);
        } else {
            s->tool_index = -1;
        }
    } else if (is(type, type_len, "content_block_delta")) {
        json_t *delta = json_object_get(d, "delta");
        const char *dtype = json_string_value(json_object_get(delta, "type"));
        if (dtype && strcmp(dtype, "text_delta") == 0) {
            json_t *text = json_object_get(delta, "text");
            if (json_is_string(text))
                rc = emit(s, json_pack("{s:O}", "content", text), NULL, NULL, cb, ud, err);
        } else if (dtype && strcmp(dtype, "input_json_delta") == 0 && s->tool_index >= 0) {
            json_t *part = json_object_get(delta, "partial_json");
            if (json_is_string(part))
                rc = emit(s,
                          json_pack("{s:[{s:i, s:{s:O}}]}", "tool_calls", "index", s->tool_index,
                                    "function", "arguments", part),
                          NULL, NULL, cb, ud, err);
        } /* thinking and signature deltas have no OpenAI chat equivalent */
    } else if (is(type, type_len, "content_block_stop")) {
        s->tool_index = -1;
    } else if (is(type, type_len, "message_delta")) {
        const char *reason = finish_for(
            json_string_value(json_object_get(json_object_get(d, "delta"), "stop_reason")));
        if (reason) snprintf(s->finish_reason, sizeof s->finish_reason, "%s", reason);
        json_t *u = json_object_get(d, "usage");
        if (json_is_integer(json_object_get(u, "output_tokens")))
            s->output_tokens = (long)json_integer_value(json_object_get(u, "output_tokens"));
        if (reason) rc = emit(s, json_object(), reason, NULL, cb, ud, err);
    } else if (is(type, type_len, "message_stop")) {
        s->done = true;
        json_t *usage = chunk_usage(s->input_tokens, s->output_tokens, s->cache_read_tokens);
        rc = emit(s, NULL, NULL, usage, cb, ud, err);
    } else if (is(type, type_len, "error")) {
        json_t *e = json_object_get(d, "error");
        const char *etype = json_string_value(json_object_get(e, "type"));
        const char *msg = json_string_value(json_object_get(e, "message"));
        int status = etype && strcmp(etype, "overloaded_error") == 0   ? 503
                     : etype && strcmp(etype, "rate_limit_error") == 0 ? 429
                                                                       : 502;
        rc = err_set(err, status, "upstream_error",
                     status == 502 ? "upstream_error" : "upstream_busy", "Anthropic %s: %s",
                     etype ? etype : "error", msg ? msg : "(no message)");
    }
    json_decref(d);
    return rc;
}

/* ---- the provider --------------------------------------------------------------------- */

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

/* The client's own Messages body (it came through the Anthropic surface), with only the
 * model replaced: nothing to translate. */
static char *native_body(const struct openai_request *r, const char *target_model,
                         struct arena *arena, size_t *len)
{
    size_t ml = strlen(target_model), cap = r->native_len + ml * 6 + 3;
    char *out = arena_alloc(arena, cap), *w = out;
    if (out == NULL) return NULL;
    memcpy(w, r->native_body, r->native_model_at);
    w += r->native_model_at;
    *w++ = '"';
    w += json_escape(w, ml * 6 + 1, target_model, ml);
    *w++ = '"';
    size_t rest = r->native_model_at + r->native_model_len;
    memcpy(w, r->native_body + rest, r->native_len - rest);
    w += r->native_len - rest;
    *w = '\0';
    *len = (size_t)(w - out);
    return out;
}

static int anthropic_build(struct backend *b, const struct provider_request *pr,
                           struct arena *arena, struct upstream_request *out, struct err *err)
{
    size_t len = 0;
    bool native = pr->request->native_dialect == DIALECT_ANTHROPIC;
    char *body = native ? native_body(pr->request, pr->target_model, arena, &len)
                        : anthropic_request_body(pr->request, pr->target_model, b->conf->max_tokens,
                                                 arena, &len, err);
    if (body == NULL) return native ? err_oom(err) : -1;
    char *url = arena_printf(arena, "%s/v1/messages", b->conf->base_url);
    if (url == NULL) return err_oom(err);
    *out = (struct upstream_request){
        .url = url,
        .headers = b->headers,
        .body = body,
        .body_len = len,
        .timeout_ms = b->conf->timeout_ms,
        .connect_timeout_ms = b->conf->connect_timeout_ms,
        .native = native,
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
