/*
 * api/proxy — the glue of the request pipeline: a model request that came in through a
 * surface is parsed, admitted (guard), carried over the model group's targets (route/call),
 * answered through the surface, then settled and recorded (obs/record). See DESIGN in
 * proxy.c and docs/architecture.md for the path.
 * Thread: event-loop thread only.
 */
#ifndef STRATUS_API_PROXY_H
#define STRATUS_API_PROXY_H

#include "api/surface.h"
#include "openai/request.h"

struct app;
struct http_request;
struct principal;

/**
 * Handles a model request for `endpoint` that arrived through `surface`, `who` being the
 * authenticated caller (request arena). Always answers `req` eventually, or stops quietly
 * if the client leaves first.
 */
void proxy_handle(struct app *app, struct http_request *req, const struct surface_ops *surface,
                  enum openai_endpoint endpoint, const struct principal *who);

/** Records (ledger row + log line) a model request refused before its body was read — a
 *  bad or missing key. `who` may be NULL. Nothing was served: cost 0. */
void proxy_record_refusal(struct app *app, const struct http_request *req,
                          const struct principal *who, int status, const char *error);

#endif
