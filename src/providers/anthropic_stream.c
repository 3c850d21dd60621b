/*
 * DESIGN: a small state machine over Anthropic's event sequence. Each output chunk is built
 * with jansson (translation needs real documents); the usage chunk is emitted at
 * message_stop, shaped like OpenAI's include_usage chunk, so the proxy's usage handling
 * works unchanged for translated streams.
 */
#include "providers/anthropic.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

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
