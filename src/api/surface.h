/*
 * api/surface — an inbound API as a plug-in. A surface knows one wire format on the client
 * side: where a request carries its credential, how its body becomes the request model
 * (openai/request.h), and how answers — whole, streamed, or errors — are written back in
 * its shape. Everything in between is shared and lives elsewhere: authentication, admission
 * (keys, limits, budgets), routing and attempts (route/call), cost and the ledger
 * (api/proxy.c glues them).
 *
 * The OpenAI surface (api/surface_openai.c) is the first; Anthropic Messages, the Bedrock
 * runtime, Lambda, SageMaker and functions are each one more file with a surface_ops and a
 * line in the route table (api/openai.c).
 *
 * A request through a surface is an `exchange`; the surface may keep its own per-request
 * state (state_size bytes in the request arena, zeroed). Writers are called in one of these
 * orders: body; or start, (chunk… flush)…, end; or error — once per exchange.
 *
 * Thread: event-loop thread only.
 */
#ifndef STRATUS_SURFACE_H
#define STRATUS_SURFACE_H

#include <stdbool.h>
#include <stddef.h>

#include "openai/request.h"
#include "route/call.h"
#include "util/err.h"

struct http_request;

/* One request through a surface, as its writers see it. */
struct exchange {
    struct http_request *req;
    const struct openai_request *request; /* the request model, once parsed; arena */
    struct call *call;                    /* the attempts, once started; NULL before */
    void *state;                          /* the surface's own; arena */
};

struct surface_ops {
    const char *name;  /* "openai" */
    size_t state_size; /* bytes of per-exchange state the surface wants */
    bool sigv4;        /* the API also takes AWS SigV4-signed requests (guard checks them) */

    /** The credential the request carries in this API's place (a bearer token for OpenAI;
     *  x-api-key, SigV4 for others), borrowed from the request. @return 0 with *key set
     *  (NULL when none was sent), or -1 with `err` (a malformed or ambiguous one). */
    int (*credential)(const struct http_request *req, const char **key, size_t *len,
                      struct err *err);

    /** Reads the body for `endpoint` into the request model (x->request, arena).
     *  @return 0, or -1 with `err` (400 naming the field; 500 on OOM). */
    int (*parse)(struct exchange *x, enum openai_endpoint endpoint, struct err *err);

    /** The stream's head (the answer begins). */
    void (*start)(struct exchange *x, int status);
    /** Queues one chunk in the API's framing. @return 1 queued, 0 not for this client,
     *  -1 out of memory. */
    int (*chunk)(struct exchange *x, const struct call_chunk *chunk);
    /** Passthrough streams (call_info.native): queues the target's own bytes, which are
     *  already in this API's format; the chunks translated from them are then dropped.
     *  Optional: only surfaces that set openai_request.native_* need it. @return 0, -1 OOM. */
    int (*raw)(struct exchange *x, const char *bytes, size_t len);
    /** Writes what was queued. @return 0, 1 (client slow), -1 (client gone). */
    int (*flush)(struct exchange *x);
    /** Ends the stream: complete (`error` NULL) or broken (the API's error event). */
    void (*end)(struct exchange *x, const char *error);
    /** A whole answer (OpenAI JSON, borrowed) in the API's shape. */
    void (*body)(struct exchange *x, int status, const char *json, size_t len);
    /** An error in the API's shape: refused before routing, or nothing served. */
    void (*error)(struct exchange *x, const struct call_failure *f);
};

extern const struct surface_ops surface_openai;

/** A call_failure carrying only `e` (the refusals before any attempt). */
static inline struct call_failure surface_failure(const struct err *e)
{
    return (struct call_failure){.err = *e, .retry_after = -1};
}

#endif
