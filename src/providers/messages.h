/*
 * translate — OpenAI chat ↔ other providers' chat APIs, as pure functions over JSON text.
 *
 * Clients always speak OpenAI's chat format; the anthropic and bedrock providers call these
 * to turn the client's request into the provider's, and the provider's answer (whole or
 * streamed) back into OpenAI's. They are separate from the providers so unit tests and the
 * translation benchmark can call them without a network.
 *
 * What maps to what (also in docs/providers.md):
 *   system/developer messages → Anthropic `system` / Bedrock `system` blocks
 *   user content parts: text; image_url with a data: URL → base64 image; an http(s) URL →
 *     Anthropic URL image source (Bedrock cannot fetch URLs: 400)
 *   assistant tool_calls → tool_use / toolUse blocks; role "tool" → tool_result / toolResult
 *   tools/tool_choice, stop, max_tokens/max_completion_tokens, temperature, top_p, user
 *   stop_reason/stopReason → finish_reason: end_turn|stop_sequence → stop, max_tokens →
 *     length, tool_use → tool_calls, guardrail/content filtered → content_filter
 *
 * Memory: results are in the arena passed in; nothing else is retained.
 * Thread: any; no shared state.
 */
#ifndef STRATUS_MESSAGES_H
#define STRATUS_MESSAGES_H

#include <stdbool.h>
#include <stddef.h>

#include "api/openai.h"
#include "providers/anthropic.h"
#include "providers/aws/eventstream.h"
#include "providers/chunk.h"
#include "util/err.h"

struct arena;

/**
 * OpenAI chat request → Anthropic Messages request. `default_max_tokens` is used when the
 * client sets neither max_tokens nor max_completion_tokens (Anthropic requires one).
 * @return the body in `arena` (length in *len), or NULL with `err` (400 naming the field the
 *         target cannot express; 500 on OOM).
 */
char *anthropic_request_body(const struct openai_request *r, const char *target_model,
                             long default_max_tokens, struct arena *arena, size_t *len,
                             struct err *err);

/** Anthropic Messages response → OpenAI chat.completion. NULL with `err` (502) when the
 *  body is not a Messages response. */
char *anthropic_response_body(const char *body, size_t body_len, const char *target_model,
                              struct arena *arena, size_t *len, struct err *err);

/** OpenAI chat request → Bedrock Converse request body (the model goes in the URL). */
char *bedrock_request_body(const struct openai_request *r, struct arena *arena, size_t *len,
                           struct err *err);

/** Bedrock Converse response → OpenAI chat.completion. */
char *bedrock_response_body(const char *body, size_t body_len, const char *target_model,
                            struct arena *arena, size_t *len, struct err *err);

/* ConverseStream events → OpenAI chunks, one decoded event-stream message at a time. */
struct bedrock_stream {
    char id[64];
    char model[160];
    long created;
    long input_tokens, output_tokens, cache_read_tokens;
    int tool_index; /* OpenAI tool_calls index of the open toolUse block, -1 if none */
    int tools_seen;
    bool stopped; /* messageStop seen */
    bool done;    /* metadata (the last event) seen */
};

void bedrock_stream_init(struct bedrock_stream *s, const char *model, long created);

/** Translates one message. @return 0; -1 with `err` for an exception message (status 429
 *  for throttling, 503 for unavailable/overloaded, 502 otherwise), a payload that is not
 *  JSON, or when `cb` stopped. */
int bedrock_stream_event(struct bedrock_stream *s, const struct aws_event *ev, chunk_sink cb,
                         void *ud, struct err *err);

#endif
