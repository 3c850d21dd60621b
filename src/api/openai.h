/*
 * api/openai — the OpenAI-compatible HTTP surface: routes requests to handlers (/health,
 * /ready, /v1/models, and the proxied /v1 endpoints), validates request bodies, and answers
 * every error with an OpenAI-style JSON body.
 * Thread: event-loop thread only.
 */
#ifndef STRATUS_API_OPENAI_H
#define STRATUS_API_OPENAI_H

#include <stdbool.h>
#include <stddef.h>

#include "openai/request.h"
#include "util/err.h"

struct http_request;
struct app;

/** The http_handler_cb for the whole server; `ud` is the struct app. */
void api_handle(struct http_request *req, void *ud);

struct json_t;

/** Writes the log line of a request answered here, not proxied (no ledger row). */
void api_log(const struct http_request *req, int status, const char *error);

/** Answers `req` with `doc` (taken: decref'd here) as compact JSON and logs the request;
 *  500 when out of memory. */
void api_respond_json(struct http_request *req, int status, struct json_t *doc);

#endif
