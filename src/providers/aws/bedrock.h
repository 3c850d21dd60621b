/*
 * aws/bedrock — AWS Bedrock's Converse / ConverseStream API behind the OpenAI chat surface.
 * The provider itself is `provider_bedrock` (provider.h); this header exposes its translation
 * functions so unit tests, fuzz targets and the translation benchmark can call them without
 * a network.
 *
 * Requests: OpenAI chat → Converse (message blocks as in messages.h; images inline only;
 * tools → toolConfig.tools[].toolSpec, tool_choice auto/required/function → auto/any/tool;
 * max_tokens/max_completion_tokens, temperature, top_p, stop → inferenceConfig). The model
 * goes in the URL, not the body.
 * Answers: a Converse response → chat.completion (text blocks joined, toolUse → tool_calls).
 * Streams: each decoded event-stream message (`messageStart`, `contentBlockStart/Delta/Stop`,
 * `messageStop`, `metadata`; exceptions) → zero or more OpenAI chunks through a chunk_sink;
 * the usage chunk comes from `metadata`, the last event.
 *
 * Memory: results are in the arena passed in; a stream translator holds no heap memory.
 * Thread: any for the body functions; a stream translator belongs to one stream on one
 * thread.
 */
#ifndef STRATUS_AWS_BEDROCK_H
#define STRATUS_AWS_BEDROCK_H

#include <stdbool.h>
#include <stddef.h>

#include "openai/request.h"
#include "providers/aws/eventstream.h"
#include "providers/chunk.h"
#include "util/err.h"

struct arena;

/**
 * OpenAI chat request → Bedrock Converse request body.
 * @return the body in `arena` (length in *len), or NULL with `err` (400 naming the message
 *         the target cannot express, e.g. an http(s) image URL; 500 on OOM).
 */
char *bedrock_request_body(const struct openai_request *r, struct arena *arena, size_t *len,
                           struct err *err);

/** Bedrock Converse response → OpenAI chat.completion in `arena`. NULL with `err` (502) when
 *  the body is not a Converse response. */
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

/** Starts a translator for `model` (copied; NULL → ""); `created` also names the chunk id. */
void bedrock_stream_init(struct bedrock_stream *s, const char *model, long created);

/**
 * Translates one message (`ev` borrowed for the call). @return 0; -1 with `err` for an
 * exception message (status 429 for throttling, 503 for unavailable/overloaded, 502
 * otherwise), a payload that is not JSON, or when the sink stopped.
 */
int bedrock_stream_event(struct bedrock_stream *s, const struct aws_event *ev, chunk_sink sink,
                         void *ud, struct err *err);

#endif
