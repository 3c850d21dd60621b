/*
 * api/surface_anthropic — Anthropic's Messages API as an inbound surface (surface.h), so the
 * official Anthropic SDKs work against the gateway with only their base URL changed, whatever
 * backend answers.
 *
 *   credential  `x-api-key`, or `Authorization: Bearer` (both sent and different: 400)
 *   parse       a Messages body (POST /v1/messages) is checked the way Anthropic checks it
 *               (max_tokens required, unknown top-level fields refused, 400 naming the field
 *               as `messages.0.content`) and re-told as an OpenAI chat body, which then goes
 *               through openai_parse_request like any other: the request model is the same.
 *   body        an OpenAI chat.completion becomes a Message (text and tool_use blocks,
 *               stop_reason, usage) named after the model the client asked for
 *   stream      OpenAI chunks become Anthropic's event sequence (message_start,
 *               content_block_start/delta/stop, message_delta with the usage, message_stop);
 *               a failure after the head is an `event: error`
 *   error       {"type":"error","error":{"type","message"}} with Anthropic's error type for
 *               the status, Retry-After kept
 *
 * What is refused or approximated, and why, is in docs/surfaces.md ("Anthropic Messages").
 * Thread: event-loop thread only.
 */
#ifndef STRATUS_SURFACE_ANTHROPIC_H
#define STRATUS_SURFACE_ANTHROPIC_H

#include <stdbool.h>

#include "api/surface.h"

struct app;
struct evbuffer;
struct http_request;
struct principal;

/* Per-exchange state (surface_anthropic.state_size bytes, zeroed, request arena). Streams
 * only: the answer is re-told as content blocks, so the writer remembers which block is open. */
struct anthropic_state {
    struct evbuffer *out;      /* events framed since the last flush; owned, made on first use */
    bool started;              /* message_start sent */
    int blocks;                /* content blocks opened so far (the next block's index) */
    bool open;                 /* a block is open (its index is blocks - 1) */
    int open_tool;             /* the open block is the OpenAI tool call with this index; -1 text */
    char finish[24];           /* the OpenAI finish_reason seen, "" none yet */
    const char *stop_sequence; /* the stop sequence the target says it matched; arena */
    char id[72];               /* the message id, msg_… */
    bool have_usage;           /* a usage chunk came: its counts, for when there is no call */
    long long prompt, completion;
};

extern const struct surface_ops surface_anthropic;

/** POST /v1/messages/count_tokens: {"input_tokens":N} for a Messages body without
 *  max_tokens. N is an estimate (about 4 bytes of text a token, a flat 1,600 an image),
 *  not the target's tokenizer. 404 not_found_error for an unknown model, 403 when the key may
 *  not use it, 400 as /v1/messages. Answers and logs `req`. */
void anthropic_count_tokens(struct app *app, struct http_request *req, const struct principal *who);

#endif
