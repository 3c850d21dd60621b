/*
 * guard/sigv4_verify — checks the AWS Signature Version 4 of an incoming request, the way
 * AWS services do, so AWS SDKs can call stratus with access key credentials
 * (guard/awskeys.h). The canonical request is rebuilt from the request as received (method,
 * path as sent — AWS SDKs encode it once more when signing, as providers/aws/sigv4 does —,
 * query, the headers the client listed as signed, the body's SHA-256) and signed again with
 * the key's secret by providers/aws/sigv4; the signatures are compared in constant time.
 *
 * Errors (err->code, which the Bedrock surface turns into AWS exception names):
 *   400 incomplete_signature  the Authorization header is not a complete SigV4 one
 *   403 invalid_signature     X-Amz-Date missing, more than 5 minutes off our clock
 *                             ("Signature expired: …"), or the signatures differ (a wrong
 *                             secret, a changed signed header, path, query or body)
 * Thread: any; no state.
 */
#ifndef STRATUS_GUARD_SIGV4_VERIFY_H
#define STRATUS_GUARD_SIGV4_VERIFY_H

#include <stdbool.h>
#include <time.h>

#include "util/err.h"

struct http_request;

#define SIGV4_MAX_SKEW_S 300

/* The parts of `Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`. */
struct sigv4_presented {
    char key_id[64];
    char date[9]; /* YYYYMMDD of the credential scope */
    char region[32];
    char service[32];
    char signed_headers[512]; /* "host;x-amz-date;…" */
    char signature[65];       /* 64 hex */
};

/** Whether the request's Authorization header is a SigV4 one (any validity). */
bool sigv4_is_signed(const struct http_request *req);

/** Parses the request's SigV4 Authorization header. @return 0, or -1 with `err` (400
 *  incomplete_signature). */
int sigv4_parse(const struct http_request *req, struct sigv4_presented *out, struct err *err);

/** Verifies `req` (its body complete) against `p` with the key's `secret` at time `now`.
 *  @return 0 when the signature is right and current, or -1 with `err` (see above). */
int sigv4_verify(const struct http_request *req, const struct sigv4_presented *p,
                 const char *secret, time_t now, struct err *err);

#endif
