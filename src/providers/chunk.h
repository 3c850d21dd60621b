/*
 * chunk — the OpenAI stream shapes that translating providers (anthropic, aws/bedrock) emit:
 * the one callback a translated chunk goes to, the one `chat.completion.chunk` builder, and
 * the `usage` object that chunks and whole answers share.
 *
 * A translated stream is a sequence of chunks, all carrying the same id, model and created
 * time: a role chunk, content or tool-call deltas, a finish chunk, and a usage chunk with an
 * empty `choices` list (shaped like OpenAI's stream_options.include_usage chunk, so the
 * proxy's usage handling treats translated and passthrough streams alike).
 *
 * jansson values cross this interface as `struct json_t *` (jansson's own tag), so including
 * this header does not pull jansson into every file that includes provider.h.
 * Thread: any; no shared state.
 */
#ifndef STRATUS_CHUNK_H
#define STRATUS_CHUNK_H

#include <stddef.h>

#include "util/err.h"

struct json_t;

/**
 * Receives one OpenAI chat.completion.chunk from a translating stream.
 * @param json  the chunk's compact JSON text, `len` bytes, *borrowed* for the call.
 * @return 0 to go on, non-zero to stop the stream.
 */
typedef int (*chunk_sink)(void *ud, const char *json, size_t len);

/** Where every chunk of one stream says it comes from; all strings *borrowed* for the call. */
struct chunk_head {
    const char *id;    /* "chatcmpl-…" or the upstream's message id */
    const char *model; /* the model the upstream named, else the target's */
    long created;      /* Unix seconds, fixed for the whole stream */
};

/**
 * Builds one chunk and hands its text to `sink`:
 *   {"id", "object":"chat.completion.chunk", "created", "model",
 *    "choices":[{"index":0, "delta":delta, "finish_reason":finish|null}], "usage":usage}
 * `choices` is empty when `delta` is NULL; `usage` is left out when NULL.
 * @param delta   *takes ownership* (also on failure); NULL for a chunk without a choice.
 * @param finish  an OpenAI finish_reason ("stop", "length", …), or NULL while unfinished.
 * @param usage   *takes ownership* (also on failure); NULL for none. See chunk_usage().
 * @return 0; -1 with `err` filled: 500 on OOM, 499 `stopped` when the sink returned non-zero.
 */
int chunk_emit(const struct chunk_head *h, struct json_t *delta, const char *finish,
               struct json_t *usage, chunk_sink sink, void *ud, struct err *err);

/**
 * The OpenAI `usage` object from an upstream's token counts: prompt_tokens = input + cached,
 * completion_tokens = output, total_tokens = their sum, and
 * prompt_tokens_details.cached_tokens when `cached` is non-zero.
 * @return a new reference (*owned*: json_decref, or hand it to chunk_emit); NULL on OOM.
 */
struct json_t *chunk_usage(long input, long output, long cached);

#endif
