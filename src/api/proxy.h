/*
 * api/proxy — carries one client request to a model group's targets: walks the route plan,
 * streams or buffers the upstream answer to the client, fails over on retryable failures
 * while nothing has been sent, learns token usage, and writes the request's log line.
 * Thread: event-loop thread only.
 */
#ifndef STRATUS_API_PROXY_H
#define STRATUS_API_PROXY_H

#include <jansson.h>

#include "api/openai.h"
#include "config/config.h"

struct app;
struct http_request;

/**
 * Starts proxying. Takes ownership of `body` (also on failure). Always answers `req`
 * eventually (or aborts quietly if the client leaves).
 */
void proxy_start(struct app *app, struct http_request *req, const struct model_conf *model,
                 enum openai_endpoint endpoint, json_t *body);

/** Writes the per-request log line for a request answered without proxying. */
void proxy_log_simple(const struct http_request *req, int status, const char *model,
                      const char *error);

#endif
