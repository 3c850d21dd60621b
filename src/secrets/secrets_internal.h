/*
 * secrets_internal — what the remote stores (aws.c, vault.c) share with secrets.c.
 * Not included outside src/secrets.
 */
#ifndef STRATUS_SECRETS_INTERNAL_H
#define STRATUS_SECRETS_INTERNAL_H

#include <curl/curl.h>
#include <stddef.h>

/* Not secrets.h: this header is secrets.c's too, and the two would include each other. */
struct secrets_sources;

/* A store's two jobs, for the text after its prefix. */
struct secrets__store {
    const char *prefix; /* "aws-sm:" */
    int kind;           /* enum secrets_kind */
    int (*check)(const char *rest, char *why, size_t size);
    int (*fetch)(struct secrets_sources *s, const char *rest, char **value, char *why, size_t size);
};

extern const struct secrets__store secrets__aws_sm, secrets__ssm, secrets__vault;

/* An HTTP reply: status and body (owned, NUL-terminated, at most SECRETS_VALUE_MAX * 4). */
struct secrets__reply {
    long status;
    char *body;
    size_t len;
};

/** One blocking call. `headers` borrowed. @return 0 (any status), or -1 with `why` (no
 *  answer: refused, timed out, too large). The reply's body is wiped by secrets__reply_free. */
int secrets__http(const struct secrets_sources *s, const char *method, const char *url,
                  struct curl_slist *headers, const char *body, size_t body_len,
                  struct secrets__reply *reply, char *why, size_t size);

void secrets__reply_free(struct secrets__reply *reply);

/** Copies `v` (len bytes) into an owned value if it suits `flags` (not empty, no NUL, one
 *  line unless SECRETS_MULTILINE). @return 0, or -1 with `why` ("<what> is empty", …). */
int secrets__take(const char *v, size_t len, unsigned flags, const char *what, char **value,
                  char *why, size_t size);

/** The value of `key` in an environment variable, or NULL when unset or empty. */
const char *secrets__env(const char *key);

#endif
