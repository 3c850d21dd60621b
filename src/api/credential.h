/*
 * api/credential — where an inbound API carries the caller's key. The OpenAI API and the
 * admin API use `Authorization: Bearer <key>`; Anthropic's `x-api-key` and AWS SigV4 are
 * more functions here, used by their surfaces. The guard then decides whose key it is.
 * Thread: any (reads the request only).
 */
#ifndef STRATUS_API_CREDENTIAL_H
#define STRATUS_API_CREDENTIAL_H

#include <stddef.h>

#include "util/err.h"

struct http_request;

/**
 * The key in `Authorization: Bearer <key>`, borrowed from the request, spaces and tabs
 * around it trimmed (RFC 9110 optional whitespace). *key is NULL when no such header came.
 * @return 0, or -1 with `err`: 400 duplicate_header when the request has two Authorization
 * headers (one would be checked while a proxy in front, or a log, takes the other), 401
 * invalid_api_key for another scheme.
 */
int credential_bearer(const struct http_request *req, const char **key, size_t *len,
                      struct err *err);

#endif
