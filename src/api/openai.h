/*
 * api/openai — the OpenAI-compatible HTTP surface: routes requests to handlers (/health,
 * /ready, /v1/models, and the proxied /v1 endpoints), validates request bodies, and answers
 * every error with an OpenAI-style JSON body.
 * Thread: event-loop thread only.
 */
#ifndef STRATUS_API_OPENAI_H
#define STRATUS_API_OPENAI_H

#include <jansson.h>

#include "util/err.h"

struct http_request;
struct app;

/* The proxied endpoints, each with its own body schema. */
enum openai_endpoint { OPENAI_CHAT, OPENAI_COMPLETIONS, OPENAI_EMBEDDINGS };

/** The http_handler_cb for the whole server; `ud` is the struct app. */
void api_handle(struct http_request *req, void *ud);

/**
 * Parses and validates a request body for `endpoint`.
 * @return an *owned* JSON object (json_decref), or NULL with `err` (400 naming the field).
 */
json_t *openai_parse_request(enum openai_endpoint endpoint, const char *body, size_t len,
                             struct err *err);

/** "chat/completions", "completions", "embeddings". */
const char *openai_endpoint_path(enum openai_endpoint endpoint);

#endif
