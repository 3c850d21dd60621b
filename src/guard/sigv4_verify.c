/*
 * DESIGN: verification is signing again. Rebuilding the signature with providers/aws/sigv4
 * (the signer the Bedrock provider uses, checked against AWS's test vectors) keeps one
 * canonicalisation in the code base: a verifier with its own copy could drift from the
 * signer and accept what AWS would not.
 */
#include "guard/sigv4_verify.h"

#include <event2/buffer.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http/server.h"
#include "providers/aws/sigv4.h"

#define MAX_SIGNED 24

static const char *authorization(const struct http_request *req)
{
    return http_request_header(req, "authorization");
}

bool sigv4_is_signed(const struct http_request *req)
{
    const char *h = authorization(req);
    return h && strncmp(h, "AWS4-HMAC-SHA256 ", 17) == 0;
}

static int incomplete(struct err *err, const char *what)
{
    return err_set(err, 400, "invalid_request_error", "incomplete_signature",
                   "Authorization header requires %s", what);
}

/* Copies the value of `name=` (up to ',' or the end) from the header. */
static int field(const char *h, const char *name, char *out, size_t cap)
{
    const char *p = strstr(h, name);
    if (p == NULL) return -1;
    p += strlen(name);
    size_t n = strcspn(p, ", ");
    if (n == 0 || n >= cap) return -1;
    memcpy(out, p, n);
    out[n] = '\0';
    return 0;
}

int sigv4_parse(const struct http_request *req, struct sigv4_presented *out, struct err *err)
{
    memset(out, 0, sizeof *out);
    const char *h = authorization(req);
    char cred[256];
    if (h == NULL || !sigv4_is_signed(req)) return incomplete(err, "AWS4-HMAC-SHA256");
    if (field(h, "Credential=", cred, sizeof cred) != 0)
        return incomplete(err, "'Credential' parameter");
    if (field(h, "SignedHeaders=", out->signed_headers, sizeof out->signed_headers) != 0)
        return incomplete(err, "'SignedHeaders' parameter");
    if (field(h, "Signature=", out->signature, sizeof out->signature) != 0 ||
        strlen(out->signature) != 64)
        return incomplete(err, "'Signature' parameter (64 hex digits)");
    /* Credential=<key id>/<date>/<region>/<service>/aws4_request */
    char *parts[5], *save = NULL;
    int n = 0;
    for (char *t = strtok_r(cred, "/", &save); t && n < 5; t = strtok_r(NULL, "/", &save))
        parts[n++] = t;
    if (n != 5 || strcmp(parts[4], "aws4_request") != 0 || strlen(parts[1]) != 8 ||
        snprintf(out->key_id, sizeof out->key_id, "%s", parts[0]) >= (int)sizeof out->key_id ||
        snprintf(out->region, sizeof out->region, "%s", parts[2]) >= (int)sizeof out->region ||
        snprintf(out->service, sizeof out->service, "%s", parts[3]) >= (int)sizeof out->service)
        return incomplete(err, "a Credential of the form key/date/region/service/aws4_request");
    memcpy(out->date, parts[1], 9);
    return 0;
}

static int invalid(struct err *err, const char *fmt, const char *a, const char *b)
    __attribute__((format(printf, 2, 0)));

static int invalid(struct err *err, const char *fmt, const char *a, const char *b)
{
    err_set(err, 403, "permission_error", "invalid_signature", "%s", "");
    snprintf(err->msg, sizeof err->msg, fmt, a, b);
    return -1;
}

static void amz_date(time_t t, char out[17])
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}

/* "20150830T123600Z" → time. @return -1 when malformed. */
static time_t parse_amz_date(const char *s)
{
    struct tm tm = {0};
    if (s == NULL || strlen(s) != 16) return -1;
    const char *end = strptime(s, "%Y%m%dT%H%M%SZ", &tm);
    if (end == NULL || *end != '\0') return -1;
    return timegm(&tm);
}

int sigv4_verify(const struct http_request *req, const struct sigv4_presented *p,
                 const char *secret, time_t now, struct err *err)
{
    const char *date = http_request_header(req, "x-amz-date");
    time_t t = parse_amz_date(date);
    if (t < 0) return invalid(err, "missing or malformed X-Amz-Date header%s%s", "", "");
    char limit[17], nowtext[17];
    amz_date(now, nowtext);
    if (t < now - SIGV4_MAX_SKEW_S) {
        amz_date(now - SIGV4_MAX_SKEW_S, limit);
        err_set(err, 403, "permission_error", "invalid_signature",
                "Signature expired: %s is now earlier than %s (%s - 5 min.)", date, limit, nowtext);
        return -1;
    }
    if (t > now + SIGV4_MAX_SKEW_S) {
        amz_date(now + SIGV4_MAX_SKEW_S, limit);
        err_set(err, 403, "permission_error", "invalid_signature",
                "Signature not yet current: %s is still later than %s (%s + 5 min.)", date, limit,
                nowtext);
        return -1;
    }
    if (strncmp(date, p->date, 8) != 0)
        return invalid(err, "the credential scope's date %s is not the X-Amz-Date's day (%s)",
                       p->date, date);

    /* The signed headers as the client listed them; host and x-amz-date are the signer's
     * own, the session token is a credential. */
    struct sigv4_header headers[MAX_SIGNED];
    size_t n = 0;
    const char *host = NULL, *token = NULL, *host_name = NULL;
    char names[sizeof p->signed_headers], *save = NULL;
    memcpy(names, p->signed_headers, sizeof names);
    for (char *name = strtok_r(names, ";", &save); name; name = strtok_r(NULL, ";", &save)) {
        /* HTTP/2 clients (the AWS SDK's NodeHttp2Handler) sign :authority instead of host;
         * the HTTP/2 layer gives its value as the host header. */
        bool authority = strcmp(name, ":authority") == 0;
        const char *v = http_request_header(req, authority ? "host" : name);
        if (v == NULL)
            return invalid(err, "the signed header '%s' is not in the request%s", name, "");
        if (strcmp(name, "host") == 0 || authority) {
            if (host) return invalid(err, "both host and :authority are signed%s%s", "", "");
            host = v;
            host_name = authority ? ":authority" : NULL;
        } else if (name[0] == ':') {
            return invalid(err, "the pseudo-header '%s' cannot be signed%s", name, "");
        } else if (strcmp(name, "x-amz-security-token") == 0) {
            token = v;
        } else if (strcmp(name, "x-amz-date") != 0) {
            if (n == MAX_SIGNED) return invalid(err, "too many signed headers%s%s", "", "");
            headers[n++] = (struct sigv4_header){name, v};
        }
    }
    if (host == NULL)
        return invalid(err, "the host header (or :authority) must be signed%s%s", "", "");
    size_t len = evbuffer_get_length(req->body);
    struct sigv4_request r = {
        .method = req->method,
        .host = host,
        .host_name = host_name,
        .path = req->path,
        .query = req->query,
        .headers = headers,
        .n_headers = n,
        .payload = len ? evbuffer_pullup(req->body, -1) : NULL,
        .payload_len = len,
        .region = p->region,
        .service = p->service,
        .now = t,
    };
    struct sigv4_credentials c = {p->key_id, secret, token};
    struct sigv4_result out;
    if (sigv4_sign(&c, &r, &out, err) != 0) return -1;
    const char *sig = strstr(out.authorization, "Signature=");
    if (sig == NULL || CRYPTO_memcmp(sig + 10, p->signature, 64) != 0)
        return invalid(err,
                       "The request signature we calculated does not match the signature you "
                       "provided. Check your AWS Secret Access Key and signing method.%s%s",
                       "", "");
    return 0;
}
