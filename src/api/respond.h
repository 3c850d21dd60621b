/*
 * api/respond — answers the API layer gives itself (health, ready, admin, model lists) and
 * their log lines. Proxied requests answer through their surface and record through
 * obs/record instead.
 * Thread: event-loop thread only.
 */
#ifndef STRATUS_API_RESPOND_H
#define STRATUS_API_RESPOND_H

struct http_request;
struct json_t;

/** Writes the log line of a request answered here, not proxied (no ledger row). */
void api_log(const struct http_request *req, int status, const char *error);

/** Answers `req` with `doc` (taken: decref'd here) as compact JSON and logs the request;
 *  500 when out of memory. */
void api_respond_json(struct http_request *req, int status, struct json_t *doc);

#endif
