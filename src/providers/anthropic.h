/*
 * anthropic_stream — translates an Anthropic Messages API event stream into OpenAI
 * chat.completion.chunk objects, one event at a time.
 *
 * Input: each SSE event's type (`message_start`, `content_block_start`,
 * `content_block_delta`, `content_block_stop`, `message_delta`, `message_stop`, `ping`,
 * `error`) and its JSON data. Output: zero or more OpenAI chunks (JSON text) through a
 * callback; text deltas become `delta.content`, tool_use blocks become `delta.tool_calls`
 * (id and name first, then argument fragments), `stop_reason` becomes `finish_reason`
 * (end_turn/stop_sequence → stop, max_tokens → length, tool_use → tool_calls), and usage
 * is gathered from message_start (input) and message_delta (output).
 *
 * Thread: a translator belongs to one stream on one thread.
 */
#ifndef STRATUS_ANTHROPIC_H
#define STRATUS_ANTHROPIC_H

#include <stdbool.h>
#include <stddef.h>

#include "providers/chunk.h"
#include "util/err.h"

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

void anthropic_stream_init(struct anthropic_stream *s, long created);

/**
 * Translates one event. @return 0; -1 with `err` when the data is not the JSON the event
 * type promises, when the upstream sent an `error` event (err carries its type and
 * message, status 502, or 429/503 for rate_limit_error/overloaded_error), or when the
 * callback stopped.
 */
int anthropic_stream_event(struct anthropic_stream *s, const char *type, size_t type_len,
                           const char *data, size_t data_len, chunk_sink cb, void *ud,
                           struct err *err);

#endif
