/*
 * openai/request — the request model: a client request as every stage after parsing sees
 * it, whichever API it came through. It is OpenAI's chat/completions/embeddings shape,
 * the gateway's lingua franca: the OpenAI surface reads it straight from the body, other
 * surfaces (Anthropic, Bedrock, functions) will translate into it, and providers translate
 * out of it.
 *
 * The model is a zero-copy view: a token index (json_scan) over the body's own bytes plus
 * the fields the gateway routes on, so a request that needs no translation is forwarded
 * byte for byte with only "model" spliced in.
 *
 * Ownership: everything lives in the arena given to openai_parse_request; `scan.js` borrows
 * the body, which must outlive the request. Thread: any (no shared state).
 */
#ifndef STRATUS_OPENAI_REQUEST_H
#define STRATUS_OPENAI_REQUEST_H

#include <stdbool.h>
#include <stddef.h>

#include "util/err.h"
#include "util/json_scan.h"

struct arena;

/* Limits on one request body. Each is far above real use and bounds what one body can cost
 * the event loop (docs/limits.md says why each value): keys and values in the body (a 10 MiB
 * body of small values would be ~5 M), nesting, keys in one object, messages per chat
 * request, and OpenAI's own limit on embedding inputs. Past one: 400 naming it. */
#define OPENAI_MAX_JSON_VALUES      1048576
#define OPENAI_MAX_DEPTH            128
#define OPENAI_MAX_OBJECT_MEMBERS   65536
#define OPENAI_MAX_MESSAGES         100000
#define OPENAI_MAX_EMBEDDING_INPUTS 2048

/* The model endpoints, each with its own body schema. */
enum openai_endpoint { OPENAI_CHAT, OPENAI_COMPLETIONS, OPENAI_EMBEDDINGS };

/* A validated client request: the body's token index plus the fields the gateway uses.
 * Everything is in the request arena; `scan.js` borrows the request body. */
struct openai_request {
    enum openai_endpoint endpoint;
    struct json_scan scan;
    char *model;            /* unescaped "model" */
    int model_tok;          /* token of the "model" value */
    int stream_options_tok; /* token of "stream_options", -1 when absent */
    bool stream;            /* "stream": true */
    bool want_usage;        /* "stream_options": {"include_usage": true} */
    /* "stratus_labels": the local engine's scoring extension (functions ask it: score these
     * labels after the prompt instead of generating); the value's token, -1 when absent.
     * Only self-hosted targets see it: it is cut from bodies sent elsewhere. */
    int labels_tok;
    /* The client's own body when a surface translated it from another API (NULL for
     * OpenAI's): a provider speaking that API sends it as it came, with only the model
     * replaced (`native_model_at`/`_len`: the model value's bytes, quotes included), and
     * its answer goes back untranslated — passthrough. Borrowed from the request. */
    enum openai_dialect { DIALECT_OPENAI = 0, DIALECT_ANTHROPIC } native_dialect;
    const char *native_body;
    size_t native_len, native_model_at, native_model_len;
};

/**
 * Parses and validates a request body for `endpoint` in time linear in its length: strict
 * JSON within the limits above, without duplicate keys, NUL or invalid UTF-8 in any string;
 * known fields must have their documented JSON types and ranges (OpenAI's bounds: n 1..128,
 * temperature 0..2, top_p 0..1, penalties -2..2, max_tokens >= 1, ...); unknown fields pass
 * through untouched.
 * @param body  borrowed; must outlive `out`.
 * @return 0 with `out` filled (arena), or -1 with `err` (400 naming the field; 500 on OOM).
 */
int openai_parse_request(enum openai_endpoint endpoint, const char *body, size_t len,
                         struct arena *arena, struct openai_request *out, struct err *err);

/** "chat/completions", "completions", "embeddings". */
const char *openai_endpoint_path(enum openai_endpoint endpoint);

#endif
