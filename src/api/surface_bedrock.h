/*
 * api/surface_bedrock — the AWS Bedrock runtime surface (surface.h): the official AWS SDKs'
 * BedrockRuntimeClient works against stratus with only `endpoint` changed.
 *
 *   POST /model/{modelId}/converse                      Converse JSON
 *   POST /model/{modelId}/converse-stream               ConverseStream event stream
 *   POST /model/{modelId}/invoke                        InvokeModel, Anthropic-on-Bedrock body
 *   POST /model/{modelId}/invoke-with-response-stream   its stream: `chunk` events
 *
 * {modelId} is a stratus model group name (percent-decoded); an ARN is refused (400), an
 * unknown name is 404 ResourceNotFoundException. Bodies are translated into an OpenAI chat
 * body (the request model), answers and chunks back into Bedrock's shapes; streams use the
 * AWS event-stream framing (providers/aws/eventstream's encoder). Errors carry AWS's shape:
 * `x-amzn-ErrorType: <Exception>` and `{"message": …}`; a stream broken after its head gets
 * an exception frame.
 *
 * The translation functions are public for unit tests; the surface calls them.
 * Thread: event-loop thread only (the translators: any; no shared state).
 */
#ifndef STRATUS_SURFACE_BEDROCK_H
#define STRATUS_SURFACE_BEDROCK_H

#include <stdbool.h>
#include <stddef.h>

#include "api/surface.h"

struct arena;
struct evbuffer;

enum bedrock_op {
    BEDROCK_CONVERSE,
    BEDROCK_CONVERSE_STREAM,
    BEDROCK_INVOKE,
    BEDROCK_INVOKE_STREAM,
};

/* Per-exchange state (surface_bedrock.state_size bytes, zeroed, request arena). */
struct bedrock_state {
    enum bedrock_op op;
    const char *model_id; /* percent-decoded {modelId}; arena */
    struct evbuffer *out; /* stream frames queued since the last flush; owned, made on use */
    /* stream translation */
    bool message_started;
    int block;               /* the open content block's index, -1 when none is open */
    bool block_tool;         /* the open block is a tool call */
    int tool_index;          /* its OpenAI tool_calls index */
    int blocks;              /* content blocks opened so far */
    const char *stop_reason; /* Bedrock/Anthropic stop reason (static), NULL until known */
};

extern const struct surface_ops surface_bedrock;

/** Which operation `path` names and its percent-decoded {modelId} (arena). @return 0, or -1
 *  with `err` (400 ValidationException for an ARN or a bad escape; 404 for another path). */
int bedrock_route(const char *path, struct arena *a, enum bedrock_op *op, const char **model_id,
                  struct err *err);

/** Translates a Converse (op CONVERSE*) or Anthropic-on-Bedrock InvokeModel (INVOKE*) body
 *  into an OpenAI chat body for `model_id`, `stream` set for the streaming ops.
 *  @return 0 with *out (arena, NUL-terminated) and *out_len, or -1 with `err` (400 naming
 *  the field; 500 when out of memory). */
int bedrock_translate_request(enum bedrock_op op, const char *model_id, const char *body,
                              size_t len, struct arena *a, char **out, size_t *out_len,
                              struct err *err);

/** Translates a whole OpenAI chat.completion into the op's answer (Converse JSON or an
 *  Anthropic Messages body). @return an owned string (free()), or NULL when `json` is not a
 *  chat completion or memory ran out. */
char *bedrock_translate_answer(enum bedrock_op op, const char *model_id, const char *json,
                               size_t len, long latency_ms);

/** Translates one OpenAI chat.completion.chunk into event-stream frames appended to `out`
 *  (`st->block` must start at -1). @return frames added (0: nothing for the client), -1 when
 *  the chunk is not JSON or memory ran out. */
int bedrock_stream_chunk(struct bedrock_state *st, const char *json, size_t len,
                         struct evbuffer *out);

/** The stream's last frames: complete (`error` NULL: the open block's stop, the stop event,
 *  usage and metrics) or broken (an exception frame of type modelStreamErrorException).
 *  Token counts < 0 are sent as 0. @return 0, or -1 when memory ran out. */
int bedrock_stream_end(struct bedrock_state *st, long long input_tokens, long long output_tokens,
                       long latency_ms, const char *error, struct evbuffer *out);

/** The AWS exception for a stratus error, and the HTTP status AWS sends it with (401 → 403
 *  UnrecognizedClientException, 502 → 424 ModelErrorException, ...). */
const char *bedrock_exception(const struct err *e, int *status);

#endif
