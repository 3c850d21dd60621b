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
};

/**
 * Parses and validates a request body for `endpoint`: known fields must have their
 * documented JSON types, unknown fields pass through untouched.
 * @param body  borrowed; must outlive `out`.
 * @return 0 with `out` filled (arena), or -1 with `err` (400 naming the field; 500 on OOM).
 */
int openai_parse_request(enum openai_endpoint endpoint, const char *body, size_t len,
                         struct arena *arena, struct openai_request *out, struct err *err);

/** "chat/completions", "completions", "embeddings". */
const char *openai_endpoint_path(enum openai_endpoint endpoint);

#endif
