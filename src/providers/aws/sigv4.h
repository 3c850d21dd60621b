/*
 * aws/sigv4 — AWS Signature Version 4 request signing (HMAC-SHA256 via OpenSSL), for the
 * Bedrock provider. Given a request's method, host, path, query, extra headers and payload,
 * it produces the `x-amz-date` value and the `Authorization` header to send (plus
 * `x-amz-security-token` when the credentials carry a session token).
 *
 * The path is canonicalised by URI-encoding each segment (AWS's rule for every service but
 * S3), so "/model/a.b-v1:0/converse" signs as ".../a.b-v1%3A0/...". Checked against AWS's
 * published test-suite vectors and @smithy/signature-v4.
 * Thread: any; no state.
 */
#ifndef STRATUS_AWS_SIGV4_H
#define STRATUS_AWS_SIGV4_H

#include <stddef.h>
#include <time.h>

#include "util/err.h"

struct sigv4_credentials {
    const char *access_key_id;
    const char *secret_access_key;
    const char *session_token; /* NULL when absent */
};

struct sigv4_header {
    const char *name; /* any case; signed lower-cased */
    const char *value;
};

struct sigv4_request {
    const char *method;    /* "GET", "POST" */
    const char *host;      /* "bedrock-runtime.us-east-1.amazonaws.com" */
    const char *host_name; /* the header host is signed as: NULL "host"; ":authority" when an
                            * HTTP/2 client signed the pseudo-header (verification) */
    const char *path;      /* "/model/…/converse-stream", not yet encoded */
    const char *query;     /* "a=1&b=2" (raw) or NULL */
    const struct sigv4_header *headers; /* signed besides host and x-amz-*; may be NULL */
    size_t n_headers;
    const void *payload;
    size_t payload_len;
    const char *region;
    const char *service;
    time_t now;
};

struct sigv4_result {
    char amz_date[17];       /* "20150830T123600Z" */
    char authorization[512]; /* the Authorization header's value */
};

/** Signs `r`. @return 0, or -1 with `err` (too many headers, values too long, OOM). */
int sigv4_sign(const struct sigv4_credentials *c, const struct sigv4_request *r,
               struct sigv4_result *out, struct err *err);

#endif
