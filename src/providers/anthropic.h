/*
 * anthropic — Anthropic's Messages API behind the OpenAI chat surface. The provider itself is
 * `provider_anthropic` (provider.h); this header exposes its translation functions so unit
 * tests, fuzz targets and the translation benchmark can call them without a network.
 *
 * Requests: OpenAI chat → Messages (message blocks as in messages.h; tools → `tools` with
 * `input_schema`, tool_choice auto/required/none/function → auto/any/none/tool,
 * parallel_tool_calls:false → disable_parallel_tool_use, max_tokens/max_completion_tokens
 * → max_tokens with the backend's default when absent, stop → stop_sequences, user →
 * metadata.user_id).
 * Answers: a Messages response → chat.completion (text blocks joined, tool_use blocks →
 * tool_calls, usage counting cache reads and writes as prompt tokens).
 * Streams: each SSE event's type (`message_start`, `content_block_start`,
 * `content_block_delta`, `content_block_stop`, `message_delta`, `message_stop`, `ping`,
 * `error`) and JSON data → zero or more OpenAI chunks through a chunk_sink: text deltas
 * become `delta.content`, tool_use blocks become `delta.tool_calls` (id and name first,
 * then argument fragments), `stop_reason` becomes `finish_reason` (max_tokens → length,
 * tool_use → tool_calls, anything else → stop), and usage is gathered from message_start
 * (input) and message_delta (output) into a usage chunk at message_stop.
 *
 * Memory: results are in the arena passed in; a stream translator holds no heap memory.
 * Thread: any for the body functions; a stream translator belongs to one stream on one
 * thread.
 */
#ifndef STRATUS_ANTHROPIC_H
#define STRATUS_ANTHROPIC_H

#include <stdbool.h>
#include <stddef.h>

#include "openai/request.h"
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

/** Anthropic Messages response → OpenAI chat.completion in `arena`. NULL with `err` (502)
 *  when the body is not a Messages response. */
char *anthropic_response_body(const char *body, size_t body_len, const char *target_model,
                              struct arena *arena, size_t *len, struct err *err);

struct anthropic_stream {
    char id[128];
    char model[128];
    long created;
    long input_tokens, output_tokens, cache_read_tokens;
    int tool_index; /* OpenAI tool_calls index of the current tool_use block, -1 if none */
    int tools_seen;
    bool started; /* the role chunk went out */
    bool done;    /* message_stop seen */
    char finish_reason[32];
};

/** Starts a translator; the model is "" until message_start names it (callers may preset). */
void anthropic_stream_init(struct anthropic_stream *s, long created);

/**
 * Translates one event. @return 0; -1 with `err` when the data is not the JSON the event
 * type promises, when the upstream sent an `error` event (err carries its type and
 * message, status 502, or 429/503 for rate_limit_error/overloaded_error), or when the
 * sink stopped.
 */
int anthropic_stream_event(struct anthropic_stream *s, const char *type, size_t type_len,
                           const char *data, size_t data_len, chunk_sink sink, void *ud,
                           struct err *err);

#endif
