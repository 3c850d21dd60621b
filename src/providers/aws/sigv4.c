/*
 * DESIGN: the canonical request is built in one growable buffer, hashed, and the signing key
 * is derived per call (four HMACs — cheap next to a model call, and no key cache to keep
 * coherent across credential rotation).
 */
#include "providers/aws/sigv4.h"

#include <ctype.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_HEADERS 32
#define MAX_PARAMS  64

struct buf {
    char *p;
    size_t len, cap;
    bool oom;
};

static void add(struct buf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 1024;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void adds(struct buf *b, const char *s)
{
    add(b, s, strlen(s));
}

/* RFC 3986 unreserved characters stay; everything else is %XX (upper-case hex). */
static void uri_encode(struct buf *b, const char *s, size_t n, bool keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' ||
            (keep_slash && c == '/')) {
            add(b, (const char *)&c, 1);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            add(b, e, 3);
        }
    }
}

static void hex_encode(char *out, const unsigned char *in, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[in[i] >> 4];
        out[2 * i + 1] = hex[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static void hmac(const void *key, size_t key_len, const char *msg, unsigned char out[32])
{
    unsigned int len = 32;
    HMAC(EVP_sha256(), key, (int)key_len, (const unsigned char *)msg, strlen(msg), out, &len);
}

struct kv {
    char *k, *v; /* owned, already URI-encoded (query) or lower-cased/trimmed (headers) */
};

static int cmp_kv(const void *a, const void *b)
{
    const struct kv *x = a, *y = b;
    int c = strcmp(x->k, y->k);
    return c ? c : strcmp(x->v, y->v);
}

static char *encoded(const char *s, size_t n)
{
    struct buf b = {0};
    uri_encode(&b, s, n, false);
    if (b.p == NULL && !b.oom) return strdup("");
    return b.oom ? (free(b.p), NULL) : b.p;
}

static char *trimmed_lower(const char *s, bool lower)
{
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
    char *out = malloc(n + 1);
    if (out == NULL) return NULL;
    /* Sequential spaces inside a value collapse to one, as AWS canonicalises them. */
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        char c = lower ? (char)tolower((unsigned char)s[i]) : s[i];
        if (c == ' ' && w > 0 && out[w - 1] == ' ') continue;
        out[w++] = c;
    }
    out[w] = '\0';
    return out;
}

int sigv4_sign(const struct sigv4_credentials *c, const struct sigv4_request *r,
               struct sigv4_result *out, struct err *err)
{
    int rc = -1;
    struct buf creq = {0};
    struct kv params[MAX_PARAMS], headers[MAX_HEADERS];
    size_t n_params = 0, n_headers = 0;
    struct tm tm;
    gmtime_r(&r->now, &tm);
    strftime(out->amz_date, sizeof out->amz_date, "%Y%m%dT%H%M%SZ", &tm);
    char date[9];
    memcpy(date, out->amz_date, 8);
    date[8] = '\0';

    /* Query: each key and value encoded, then sorted. */
    for (const char *q = r->query; q && *q;) {
        const char *amp = strchr(q, '&');
        size_t len = amp ? (size_t)(amp - q) : strlen(q);
        const char *eq = memchr(q, '=', len);
        if (n_params == MAX_PARAMS) {
            err_set(err, 500, "server_error", NULL, "too many query parameters to sign");
            goto out;
        }
        params[n_params].k = encoded(q, eq ? (size_t)(eq - q) : len);
        params[n_params].v = eq ? encoded(eq + 1, len - (size_t)(eq - q) - 1) : strdup("");
        n_params++;
        if (!params[n_params - 1].k || !params[n_params - 1].v) goto oom;
        q = amp ? amp + 1 : q + len;
    }
    qsort(params, n_params, sizeof *params, cmp_kv);

    /* Headers: host, the caller's, x-amz-date, x-amz-security-token; lower-cased, sorted. */
    if (r->n_headers + 3 > MAX_HEADERS) {
        err_set(err, 500, "server_error", NULL, "too many headers to sign");
        goto out;
    }
    headers[n_headers++] =
        (struct kv){strdup(r->host_name ? r->host_name : "host"), trimmed_lower(r->host, false)};
    for (size_t i = 0; i < r->n_headers; i++)
        headers[n_headers++] = (struct kv){trimmed_lower(r->headers[i].name, true),
                                           trimmed_lower(r->headers[i].value, false)};
    headers[n_headers++] = (struct kv){strdup("x-amz-date"), strdup(out->amz_date)};
    if (c->session_token)
        headers[n_headers++] =
            (struct kv){strdup("x-amz-security-token"), trimmed_lower(c->session_token, false)};
    for (size_t i = 0; i < n_headers; i++)
        if (!headers[i].k || !headers[i].v) goto oom;
    qsort(headers, n_headers, sizeof *headers, cmp_kv);

    adds(&creq, r->method);
    adds(&creq, "\n");
    /* Canonical URI: every segment encoded; the slashes between them kept. */
    uri_encode(&creq, r->path && *r->path ? r->path : "/",
               r->path && *r->path ? strlen(r->path) : 1, true);
    adds(&creq, "\n");
    for (size_t i = 0; i < n_params; i++) {
        if (i) adds(&creq, "&");
        adds(&creq, params[i].k);
        adds(&creq, "=");
        adds(&creq, params[i].v);
    }
    adds(&creq, "\n");
    for (size_t i = 0; i < n_headers; i++) {
        adds(&creq, headers[i].k);
        adds(&creq, ":");
        adds(&creq, headers[i].v);
        adds(&creq, "\n");
    }
    adds(&creq, "\n");
    char signed_headers[512];
    size_t sh = 0;
    for (size_t i = 0; i < n_headers; i++)
        sh += (size_t)snprintf(signed_headers + sh, sizeof signed_headers - sh, "%s%s",
                               i ? ";" : "", headers[i].k);
    if (sh >= sizeof signed_headers) {
        err_set(err, 500, "server_error", NULL, "signed header names too long");
        goto out;
    }
    adds(&creq, signed_headers);
    adds(&creq, "\n");
    unsigned char digest[32];
    char hexd[65];
    SHA256(r->payload ? r->payload : (const void *)"", r->payload_len, digest);
    hex_encode(hexd, digest, 32);
    adds(&creq, hexd);
    if (creq.oom) goto oom;

    char scope[160], sts[512];
    snprintf(scope, sizeof scope, "%s/%s/%s/aws4_request", date, r->region, r->service);
    SHA256((const unsigned char *)creq.p, creq.len, digest);
    hex_encode(hexd, digest, 32);
    snprintf(sts, sizeof sts, "AWS4-HMAC-SHA256\n%s\n%s\n%s", out->amz_date, scope, hexd);

    /* Signing key: HMAC chain from "AWS4" + secret over date, region, service, aws4_request. */
    char k0[256];
    int kl = snprintf(k0, sizeof k0, "AWS4%s", c->secret_access_key);
    unsigned char k1[32], k2[32], k3[32], k4[32], sig[32];
    hmac(k0, (size_t)kl, date, k1);
    hmac(k1, 32, r->region, k2);
    hmac(k2, 32, r->service, k3);
    hmac(k3, 32, "aws4_request", k4);
    hmac(k4, 32, sts, sig);
    memset(k0, 0, sizeof k0);
    hex_encode(hexd, sig, 32);
    int n = snprintf(out->authorization, sizeof out->authorization,
                     "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s",
                     c->access_key_id, scope, signed_headers, hexd);
    if (n < 0 || (size_t)n >= sizeof out->authorization) {
        err_set(err, 500, "server_error", NULL, "authorization header too long");
        goto out;
    }
    rc = 0;
    goto out;
oom:
    err_oom(err);
out:
    for (size_t i = 0; i < n_params; i++) {
        free(params[i].k);
        free(params[i].v);
    }
    for (size_t i = 0; i < n_headers; i++) {
        free(headers[i].k);
        free(headers[i].v);
    }
    free(creq.p);
    return rc;
}
