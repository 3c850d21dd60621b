/*
 * api/proxy — carries one client request to a model group's targets: walks the route plan,
 * streams or buffers the upstream answer to the client, fails over on retryable failures
 * while nothing has been sent, learns token usage, and writes the request's log line.
 * Thread: event-loop thread only.
 */
#ifndef STRATUS_API_PROXY_H
#define STRATUS_API_PROXY_H

#include "api/openai.h"
#include "config/config.h"

struct app;
struct http_request;
struct principal;

/**
 * Starts proxying `oreq` (in the request arena). Always answers `req` eventually, or stops
 * quietly if the client leaves first.
 */
void proxy_start(struct app *app, struct http_request *req, const struct model_conf *model,
                 const struct openai_request *oreq, const struct principal *who);

/** Records a ledger row for a request refused before proxying (bad key, bad body, unknown
 *  model, limits): `who`, `oreq` and `model` may be NULL. Nothing was served: cost 0. */
void proxy_record(struct app *app, const struct http_request *req, const struct principal *who,
                  const struct openai_request *oreq, const char *model, int status);

/** Writes the per-request log line for a request answered without proxying. */
void proxy_log_simple(const struct http_request *req, int status, const char *model,
                      const char *error);

#endif
