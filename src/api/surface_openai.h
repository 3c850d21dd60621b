/*
 * api/surface_openai — the OpenAI surface (surface.h): bodies are the request model already,
 * answers are OpenAI JSON already; streams get SSE framing, the usage chunk is dropped unless
 * the client asked for stream_options.include_usage (then it carries `cost_usd`), and an
 * all-failed error lists every attempt in `error.attempts`.
 * Thread: event-loop thread only.
 */
#ifndef STRATUS_SURFACE_OPENAI_H
#define STRATUS_SURFACE_OPENAI_H

#include "api/surface.h"

struct app;
struct evbuffer;
struct http_request;
struct principal;

/* Per-exchange state (surface_openai.state_size bytes, zeroed, request arena). */
struct openai_state {
    struct evbuffer *out; /* chunks framed since the last flush; owned, made on first use */
};

/** GET /v1/models: the model groups this caller may use, OpenAI's list shape. */
void openai_list_models(struct app *app, struct http_request *req, const struct principal *who);

#endif
