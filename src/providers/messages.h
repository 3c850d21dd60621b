/*
 * messages — OpenAI chat ↔ the content-block message format that Anthropic's Messages API
 * and Bedrock's Converse API share. The anthropic and aws/bedrock providers build their
 * request bodies and whole answers from these pieces; everything else about those APIs
 * (tools, inference parameters, streams, URLs, signing) stays in the provider's own file.
 *
 * Request side, per OpenAI message (dialect-specific shapes in brackets, Anthropic | Bedrock):
 *   system / developer      → text blocks collected into the separate `system` list
 *   user text               → text block             [{type:text,text} | {text}]
 *   user image_url, data:   → inline base64 image    [{type:image,source:{type:base64,…}} |
 *                                                      {image:{format,source:{bytes}}}]
 *   user image_url, http(s) → Anthropic URL source; Bedrock: 400 (it cannot fetch URLs)
 *   assistant text + tool_calls → text + tool-use blocks [tool_use | toolUse]; arguments
 *                             must parse as a JSON object (else 400)
 *   tool (tool_call_id)     → a tool-result block in a user turn [tool_result | toolResult]
 *   consecutive turns of one role are merged (both APIs want strict alternation); turns that
 *   end up empty are dropped; anything else is a 400 naming `messages[i]`.
 * Answer side: tool uses → OpenAI tool_calls, upstream stop reasons → finish_reason, and the
 * chat.completion document around them.
 *
 * Ownership: jansson references follow jansson's words — "new reference" (caller decrefs),
 * "borrowed", "steals". Text results are in the *arena* passed in.
 * Thread: any; no shared state.
 */
#ifndef STRATUS_MESSAGES_H
#define STRATUS_MESSAGES_H

#include <jansson.h>
#include <stddef.h>

#include "openai/request.h"
#include "util/err.h"

struct arena;

/** Which block shapes messages_convert() builds. */
enum messages_dialect {
    MESSAGES_ANTHROPIC, /* Anthropic Messages: typed blocks ({"type":"text",…}) */
    MESSAGES_BEDROCK,   /* Bedrock Converse: single-key blocks ({"text":…}, {"toolUse":…}) */
};

/* ---- requests ------------------------------------------------------------------------- */

/* A client's chat request ready to be re-told in a dialect: its body as a document and its
 * messages already converted. Three new references, the caller's. */
struct messages_request {
    json_t *req;      /* the whole body (sampling, tools, stop … are read from it) */
    json_t *messages; /* the dialect's turns */
    json_t *system;   /* system/developer text blocks; empty when none */
};

/** The body as a document (400 when it has no `messages` list) and messages_convert for `d`.
 * @return 0 with `out` filled, or -1 with `err` (400 as those say) and nothing left to release. */
int messages_prepare(enum messages_dialect d, const struct openai_request *r,
                     struct messages_request *out, struct err *err);

/**
 * Converts the OpenAI `messages` array (borrowed) into `d`'s turns, appended to
 * `out_messages` as {"role":"user"|"assistant","content":[blocks]}, and system/developer
 * text into `system` (text blocks). Both arrays are the caller's; on failure they may hold
 * part of the result and are still the caller's to decref.
 * @return 0; -1 with `err`: 400 `unsupported_by_target` naming `messages[i]` for what the
 *         target cannot express, or when no user/assistant turn is left.
 */
int messages_convert(enum messages_dialect d, json_t *messages, json_t *out_messages,
                     json_t *system, struct err *err);

/** `max_completion_tokens`, else `max_tokens`, when an integer; borrowed from `req`, or NULL. */
json_t *messages_max_tokens(json_t *req);

/** OpenAI `stop` (a string or a non-empty list) as a list: a new reference, or NULL. */
json_t *messages_stop_list(json_t *stop);

/* ---- answers -------------------------------------------------------------------------- */

/**
 * An upstream stop reason (Anthropic `stop_reason`, Bedrock `stopReason`) as an OpenAI
 * finish_reason: max_tokens → "length", tool_use → "tool_calls", guardrail_intervened /
 * content_filtered / refusal → "content_filter", anything else (NULL included) → "stop".
 * @return a static string.
 */
const char *messages_finish_reason(const char *stop);

/**
 * One OpenAI tool call {"id","type":"function","function":{"name","arguments"}} from a
 * tool-use block's id, name and input (all borrowed; id/name may be NULL → null). The input
 * becomes the arguments text; "{}" if it cannot be dumped.
 * @return a new reference; NULL on OOM.
 */
json_t *messages_tool_call(json_t *id, json_t *name, json_t *input);

/**
 * A whole OpenAI chat.completion: one choice whose message content is `text_parts` (strings)
 * joined, or null when there are none, plus `calls` as tool_calls when non-empty.
 * Steals `text_parts`, `calls` and `usage` (see chunk_usage()), also on failure.
 * @return the compact JSON text in `arena` (length in *len); NULL with `err` on OOM.
 */
char *messages_completion(const char *id, const char *model, json_t *text_parts, json_t *calls,
                          const char *finish, json_t *usage, struct arena *arena, size_t *len,
                          struct err *err);

/**
 * Dumps `doc` compactly into `arena`. Steals `doc` (NULL is taken as OOM).
 * @return the text (length in *len); NULL with `err` (500) on OOM.
 */
char *messages_dump(json_t *doc, struct arena *arena, size_t *len, struct err *err);

#endif
