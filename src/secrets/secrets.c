/*
 * DESIGN
 * One table of stores by prefix; env: and file: are local and live here, the remote ones
 * each in a file of their own behind struct secrets__store. Every value passes one check
 * (secrets__take) on its way out, so a key with a newline can never reach an HTTP header.
 *
 * Why remote values are not followed further than once: an SSM parameter may hold an
 * aws-sm: or vault: reference (a pointer kept where the operator's tooling looks), which is
 * followed; anything else it holds is the value. env: and file: are never followed from a
 * remote value — a store's content must not make the gateway read its own files or
 * environment into an upstream's Authorization header.
 */
#include "secrets/secrets.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "secrets/secrets_internal.h"

static int env_check(const char *rest, char *why, size_t size)
{
    if (rest[0] == '\0') {
        snprintf(why, size, "env: needs a variable name");
        return -1;
    }
    for (const char *p = rest; *p; p++)
        if (!(*p == '_' || (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
              (*p >= '0' && *p <= '9'))) {
            snprintf(why, size, "'env:%s' is not a variable name (letters, digits, _)", rest);
            return -1;
        }
    return 0;
}

static int env_fetch(struct secrets_sources *s, const char *rest, char **value, char *why,
                     size_t size)
{
    (void)s;
    const char *v = getenv(rest);
    if (v == NULL || v[0] == '\0') {
        snprintf(why, size, "environment variable %s is not set", rest);
        return -1;
    }
    char what[160];
    snprintf(what, sizeof what, "environment variable %s", rest);
    return secrets__take(v, strlen(v), SECRETS_MULTILINE, what, value, why, size);
}

static int file_check(const char *rest, char *why, size_t size)
{
    if (rest[0] == '\0') {
        snprintf(why, size, "file: needs a path");
        return -1;
    }
    return 0;
}

static int file_fetch(struct secrets_sources *s, const char *rest, char **value, char *why,
                      size_t size)
{
    (void)s;
    FILE *f = fopen(rest, "rb");
    if (f == NULL) {
        snprintf(why, size, "cannot read %s: %s", rest, strerror(errno));
        return -1;
    }
    char *buf = malloc(SECRETS_VALUE_MAX + 1);
    int rc = -1;
    if (buf == NULL) {
        snprintf(why, size, "out of memory");
        goto out;
    }
    size_t len = fread(buf, 1, SECRETS_VALUE_MAX + 1, f);
    if (ferror(f))
        snprintf(why, size, "cannot read %s: %s", rest, strerror(errno));
    else if (len > SECRETS_VALUE_MAX)
        snprintf(why, size, "%s is larger than %d bytes", rest, SECRETS_VALUE_MAX);
    else {
        /* A file's trailing newline is the editor's, not the key's. */
        while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r')) len--;
        rc = secrets__take(buf, len, SECRETS_MULTILINE, rest, value, why, size);
    }
out:
    if (buf) {
        explicit_bzero(buf, SECRETS_VALUE_MAX + 1);
        free(buf);
    }
    fclose(f);
    return rc;
}

static const struct secrets__store env_store = {"env:", SECRETS_ENV, env_check, env_fetch};
static const struct secrets__store file_store = {"file:", SECRETS_FILE, file_check, file_fetch};
static const struct secrets__store *const stores[] = {
    &env_store, &file_store, &secrets__aws_sm, &secrets__ssm, &secrets__vault,
};

static const struct secrets__store *store_of(const char *ref)
{
    for (size_t i = 0; ref && i < sizeof stores / sizeof stores[0]; i++)
        if (strncmp(ref, stores[i]->prefix, strlen(stores[i]->prefix)) == 0) return stores[i];
    return NULL;
}

void secrets_sources_init(struct secrets_sources *s)
{
    memset(s, 0, sizeof *s);
    s->timeout_ms = 10000;
}

void secrets_sources_clear(struct secrets_sources *s)
{
    if (s == NULL) return;
    char **owned[] = {&s->aws_region,      &s->aws_profile,     &s->secrets_manager_url,
                      &s->ssm_url,         &s->vault_address,   &s->vault_token_ref,
                      &s->vault_namespace, &s->approle_role_id, &s->approle_secret_id_ref,
                      &s->approle_mount};
    for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++) {
        secrets_value_free(*owned[i]);
        *owned[i] = NULL;
    }
}

bool secrets_is_reference(const char *ref)
{
    return store_of(ref) != NULL;
}

bool secrets_is_remote(const char *ref)
{
    const struct secrets__store *st = store_of(ref);
    return st && st->kind != SECRETS_ENV && st->kind != SECRETS_FILE;
}

static bool has_control(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f) return true;
    return false;
}

int secrets_check(const char *ref, enum secrets_kind *kind, char *why, size_t size)
{
    const struct secrets__store *st = store_of(ref);
    if (st == NULL) {
        snprintf(why, size,
                 "'%.200s' is not a secret reference (env:NAME, file:PATH, aws-sm:ID[#FIELD], "
                 "ssm:NAME or vault:MOUNT/PATH#FIELD)",
                 ref ? ref : "");
        return -1;
    }
    if (has_control(ref)) {
        snprintf(why, size, "a secret reference must not contain control characters");
        return -1;
    }
    if (st->check(ref + strlen(st->prefix), why, size) != 0) return -1;
    if (kind) *kind = st->kind;
    return 0;
}

int secrets_resolve(struct secrets_sources *sources, const char *ref, unsigned flags, char **value,
                    char *why, size_t size)
{
    *value = NULL;
    struct secrets_sources env_only;
    bool own = sources == NULL;
    if (own) {
        secrets_sources_init(&env_only);
        sources = &env_only;
    }
    int rc = secrets_check(ref, NULL, why, size);
    const struct secrets__store *st = store_of(ref);
    if (rc == 0) rc = st->fetch(sources, ref + strlen(st->prefix), value, why, size);
    /* One hop from SSM to where the parameter points (see DESIGN). */
    if (rc == 0 && st->kind == SECRETS_SSM &&
        (strncmp(*value, "aws-sm:", 7) == 0 || strncmp(*value, "vault:", 6) == 0)) {
        char *target = *value, inner[300];
        *value = NULL;
        rc = secrets_check(target, NULL, inner, sizeof inner);
        const struct secrets__store *next = store_of(target);
        if (rc == 0)
            rc = next->fetch(sources, target + strlen(next->prefix), value, inner, sizeof inner);
        if (rc != 0) snprintf(why, size, "%s points to %.200s: %s", ref, target, inner);
        secrets_value_free(target);
    }
    bool one_line = !(flags & SECRETS_MULTILINE);
    if (rc == 0 && one_line && strpbrk(*value, "\r\n")) {
        snprintf(why, size, "%s holds more than one line (a key or token is one line)", ref);
        rc = -1;
    }
    if (rc == 0 && one_line && strlen(*value) > SECRETS_LINE_MAX) {
        snprintf(why, size, "%s is larger than %d bytes", ref, SECRETS_LINE_MAX);
        rc = -1;
    }
    if (rc == 0) {
        for (const char *p = *value; *p; p++)
            if (((unsigned char)*p < 0x20 &&
                 (one_line || (*p != '\n' && *p != '\r' && *p != '\t'))) ||
                *p == 0x7f) {
                snprintf(why, size, "%s holds control characters", ref);
                rc = -1;
                break;
            }
    }
    if (rc != 0) {
        secrets_value_free(*value);
        *value = NULL;
    }
    if (own) secrets_sources_clear(&env_only);
    return rc;
}

void secrets_value_free(char *value)
{
    if (value == NULL) return;
    explicit_bzero(value, strlen(value));
    free(value);
}

const char *secrets__env(const char *key)
{
    const char *v = getenv(key);
    return v && v[0] ? v : NULL;
}

int secrets__take(const char *v, size_t len, unsigned flags, const char *what, char **value,
                  char *why, size_t size)
{
    if (len == 0) {
        snprintf(why, size, "%s is empty", what);
        return -1;
    }
    if (memchr(v, '\0', len)) {
        snprintf(why, size, "%s holds a NUL byte", what);
        return -1;
    }
    if (!(flags & SECRETS_MULTILINE) && (memchr(v, '\n', len) || memchr(v, '\r', len))) {
        snprintf(why, size, "%s holds more than one line", what);
        return -1;
    }
    if ((*value = malloc(len + 1)) == NULL) {
        snprintf(why, size, "out of memory");
        return -1;
    }
    memcpy(*value, v, len);
    (*value)[len] = '\0';
    return 0;
}

/* ---- HTTP ---------------------------------------------------------------------------- */

struct sink {
    struct secrets__reply *r;
    size_t cap;
    bool too_big;
};

static size_t on_body(char *data, size_t one, size_t n, void *ud)
{
    struct sink *k = ud;
    size_t add = one * n;
    if (k->r->len + add > (size_t)SECRETS_VALUE_MAX * 4) {
        k->too_big = true;
        return 0;
    }
    if (k->r->len + add + 1 > k->cap) {
        size_t cap = (k->r->len + add + 1) * 2;
        char *grown = malloc(cap);
        if (grown == NULL) return 0;
        if (k->r->body) {
            memcpy(grown, k->r->body, k->r->len);
            explicit_bzero(k->r->body, k->cap); /* a secret's bytes do not linger in the heap */
            free(k->r->body);
        }
        k->r->body = grown;
        k->cap = cap;
    }
    memcpy(k->r->body + k->r->len, data, add);
    k->r->len += add;
    k->r->body[k->r->len] = '\0';
    return add;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

int secrets__http(const struct secrets_sources *s, const char *method, const char *url,
                  struct curl_slist *headers, const char *body, size_t body_len,
                  struct secrets__reply *reply, char *why, size_t size)
{
    memset(reply, 0, sizeof *reply);
    pthread_once(&curl_once, curl_init);
    CURL *c = curl_easy_init();
    if (c == NULL) {
        snprintf(why, size, "cannot start an HTTP client");
        return -1;
    }
    struct sink k = {.r = reply};
    char err[CURL_ERROR_SIZE] = "";
    long timeout = s && s->timeout_ms > 0 ? s->timeout_ms : 10000;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)body_len);
    }
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &k);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, timeout < 5000 ? timeout : 5000);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, err);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &reply->status);
    curl_easy_cleanup(c);
    if (rc != CURLE_OK) {
        snprintf(why, size, "%s",
                 k.too_big ? "the answer is too large"
                 : err[0]  ? err
                           : curl_easy_strerror(rc));
        secrets__reply_free(reply);
        return -1;
    }
    return 0;
}

void secrets__reply_free(struct secrets__reply *reply)
{
    if (reply->body) {
        explicit_bzero(reply->body, reply->len);
        free(reply->body);
    }
    memset(reply, 0, sizeof *reply);
}
