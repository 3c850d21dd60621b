/*
 * DESIGN
 * vault: — HashiCorp Vault's KV version 2 read, GET /v1/MOUNT/data/PATH, with a token from
 * `secrets.vault.token` (an env:/file: reference, re-read per call so a renewed token file
 * is used at the next refresh) or VAULT_TOKEN; or, with `secrets.vault.approle`, a token
 * from an AppRole login, kept process-wide (every config load of a refresh shares it) until
 * 90 % of its lease has passed or Vault refuses it (then one new login and one retry).
 */
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "secrets/secrets.h"
#include "secrets/secrets_internal.h"
#include "util/clock.h"

#define PATH_MAX_BYTES 1024

static bool path_chars(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr("/_.-", c)))
            return false;
    }
    return true;
}

static int vault_check(const char *rest, char *why, size_t size)
{
    const char *hash = strchr(rest, '#'), *slash = strchr(rest, '/');
    size_t n = hash ? (size_t)(hash - rest) : strlen(rest);
    if (hash == NULL || hash[1] == '\0' || strchr(hash + 1, '#')) {
        snprintf(why, size, "'vault:%.200s' needs #FIELD: the key to read from the secret", rest);
        return -1;
    }
    if (slash == NULL || slash == rest || slash >= hash - 1 || n > PATH_MAX_BYTES ||
        !path_chars(rest, n) || rest[n - 1] == '/') {
        snprintf(why, size,
                 "'vault:%.200s' needs MOUNT/PATH#FIELD (a KV v2 mount, then the secret's path)",
                 rest);
        return -1;
    }
    return 0;
}

static const char *address(const struct secrets_sources *s)
{
    return s && s->vault_address ? s->vault_address : secrets__env("VAULT_ADDR");
}

static int add_header(struct curl_slist **h, const char *name, const char *value)
{
    char line[4200];
    snprintf(line, sizeof line, "%s: %s", name, value);
    struct curl_slist *next = curl_slist_append(*h, line);
    explicit_bzero(line, sizeof line);
    if (next == NULL) return -1;
    *h = next;
    return 0;
}

static const char *namespace_of(const struct secrets_sources *s)
{
    return s && s->vault_namespace ? s->vault_namespace : secrets__env("VAULT_NAMESPACE");
}

/* Joins Vault's {"errors": [...]} into `out`. */
static void vault_errors(const struct secrets__reply *r, char *out, size_t size)
{
    out[0] = '\0';
    json_t *j = json_loadb(r->body ? r->body : "", r->len, 0, NULL);
    json_t *errs = json_object_get(j, "errors"), *e;
    size_t i, n = 0;
    json_array_foreach(errs, i, e)
    {
        if (!json_is_string(e) || n + 4 >= size) continue;
        n += (size_t)snprintf(out + n, size - n, "%s%.150s", n ? "; " : ": ", json_string_value(e));
    }
    json_decref(j);
}

/* The last AppRole login's token, for whom (address, mount, role) and until when. */
static struct {
    pthread_mutex_t mu;
    char *who, *token;
    uint64_t expires_ns; /* 0: no expiry */
} login = {.mu = PTHREAD_MUTEX_INITIALIZER};

void secrets_shutdown(void)
{
    pthread_mutex_lock(&login.mu);
    secrets_value_free(login.token);
    free(login.who);
    login.token = login.who = NULL;
    pthread_mutex_unlock(&login.mu);
}

/* An AppRole login; the token goes to `login` (called with login.mu held). */
static int approle_login(struct secrets_sources *s, const char *ref, const char *who, char *why,
                         size_t size)
{
    char *secret_id = NULL, inner[300], url[1200];
    if (secrets_resolve(NULL, s->approle_secret_id_ref, SECRETS_ONE_LINE, &secret_id, inner,
                        sizeof inner) != 0) {
        snprintf(why, size, "%s: AppRole secret_id: %s", ref, inner);
        return -1;
    }
    snprintf(url, sizeof url, "%s/v1/auth/%s/login", address(s),
             s->approle_mount ? s->approle_mount : "approle");
    json_t *req = json_pack("{ssss}", "role_id", s->approle_role_id, "secret_id", secret_id);
    char *body = req ? json_dumps(req, JSON_COMPACT) : NULL;
    if (req) {
        json_object_set_new(req, "secret_id", json_string(""));
        json_decref(req);
    }
    secrets_value_free(secret_id);
    struct curl_slist *h = NULL;
    struct secrets__reply r;
    int rc = -1;
    if (body == NULL || add_header(&h, "Content-Type", "application/json") ||
        (namespace_of(s) && add_header(&h, "X-Vault-Namespace", namespace_of(s)))) {
        snprintf(why, size, "%s: out of memory", ref);
        goto out;
    }
    if (secrets__http(s, "POST", url, h, body, strlen(body), &r, inner, sizeof inner) != 0) {
        snprintf(why, size, "%s: Vault unreachable (AppRole login): %s", ref, inner);
        goto out;
    }
    json_t *j = json_loadb(r.body ? r.body : "", r.len, 0, NULL);
    json_t *auth = json_object_get(j, "auth");
    const char *token = json_string_value(json_object_get(auth, "client_token"));
    json_int_t lease = json_integer_value(json_object_get(auth, "lease_duration"));
    if (r.status == 200 && token && token[0]) {
        secrets_value_free(login.token);
        free(login.who);
        login.token = strdup(token);
        login.who = strdup(who);
        /* 0 = no expiry; else renew at 90 % of the lease */
        login.expires_ns = lease > 0 ? clock_now_ns() + (uint64_t)lease * 900000000ull : 0;
        rc = login.token && login.who ? 0 : -1;
        if (rc) snprintf(why, size, "%s: out of memory", ref);
    } else {
        char errs[300];
        vault_errors(&r, errs, sizeof errs);
        snprintf(why, size, "%s: AppRole login refused (HTTP %ld)%s", ref, r.status, errs);
    }
    if (token) explicit_bzero((char *)token, strlen(token));
    json_decref(j);
    secrets__reply_free(&r);
out:
    if (body) {
        explicit_bzero(body, strlen(body));
        free(body);
    }
    curl_slist_free_all(h);
    return rc;
}

/* The token to send (owned). `fresh`: an AppRole token Vault just refused is dropped first. */
static int token_for(struct secrets_sources *s, const char *ref, bool fresh, char **token,
                     char *why, size_t size)
{
    char inner[300];
    if (s->approle_role_id) {
        int rc = 0;
        char who[1600];
        snprintf(who, sizeof who, "%s|%s|%s", address(s),
                 s->approle_mount ? s->approle_mount : "approle", s->approle_role_id);
        pthread_mutex_lock(&login.mu);
        bool expired = login.expires_ns && clock_now_ns() >= login.expires_ns;
        if (fresh || expired || login.token == NULL || login.who == NULL ||
            strcmp(login.who, who) != 0)
            rc = approle_login(s, ref, who, why, size);
        if (rc == 0 && (*token = strdup(login.token)) == NULL) {
            snprintf(why, size, "%s: out of memory", ref);
            rc = -1;
        }
        pthread_mutex_unlock(&login.mu);
        return rc;
    }
    if (s->vault_token_ref) {
        if (secrets_resolve(NULL, s->vault_token_ref, SECRETS_ONE_LINE, token, inner,
                            sizeof inner) == 0)
            return 0;
        snprintf(why, size, "%s: Vault token: %s", ref, inner);
        return -1;
    }
    const char *env = secrets__env("VAULT_TOKEN");
    if (env == NULL) {
        snprintf(why, size, "%s: no Vault token (set secrets.vault.token, VAULT_TOKEN or AppRole)",
                 ref);
        return -1;
    }
    if ((*token = strdup(env)) == NULL) {
        snprintf(why, size, "%s: out of memory", ref);
        return -1;
    }
    return 0;
}

static int vault_fetch(struct secrets_sources *s, const char *rest, char **value, char *why,
                       size_t size)
{
    char ref[PATH_MAX_BYTES + 300], url[PATH_MAX_BYTES + 1200], inner[300];
    snprintf(ref, sizeof ref, "vault:%s", rest);
    if (address(s) == NULL) {
        snprintf(why, size, "%s: no Vault address (set secrets.vault.address or VAULT_ADDR)", ref);
        return -1;
    }
    const char *slash = strchr(rest, '/'), *hash = strchr(rest, '#');
    const char *addr = address(s);
    size_t an = strlen(addr);
    while (an > 0 && addr[an - 1] == '/') an--;
    snprintf(url, sizeof url, "%.*s/v1/%.*s/data/%.*s", (int)an, addr, (int)(slash - rest), rest,
             (int)(hash - slash - 1), slash + 1);
    int rc = -1;
    for (int attempt = 0; attempt < 2; attempt++) {
        char *token = NULL;
        struct curl_slist *h = NULL;
        struct secrets__reply r = {0};
        if (token_for(s, ref, attempt > 0, &token, why, size) != 0) return -1;
        bool oom = add_header(&h, "X-Vault-Token", token) != 0 ||
                   (namespace_of(s) && add_header(&h, "X-Vault-Namespace", namespace_of(s)));
        secrets_value_free(token);
        if (oom) {
            curl_slist_free_all(h);
            snprintf(why, size, "%s: out of memory", ref);
            return -1;
        }
        int hr = secrets__http(s, "GET", url, h, NULL, 0, &r, inner, sizeof inner);
        curl_slist_free_all(h);
        if (hr != 0) {
            snprintf(why, size, "%s: Vault unreachable at %.200s: %s", ref, addr, inner);
            return -1;
        }
        if (r.status == 403 && s->approle_role_id && attempt == 0) {
            secrets__reply_free(&r); /* the login token expired early or was revoked */
            continue;
        }
        if (r.status != 200) {
            char errs[300];
            vault_errors(&r, errs, sizeof errs);
            snprintf(why, size, "%s: Vault answered HTTP %ld%s", ref, r.status,
                     r.status == 404 && errs[0] == '\0' ? ": no such secret" : errs);
            secrets__reply_free(&r);
            return -1;
        }
        json_t *j = json_loadb(r.body ? r.body : "", r.len, 0, NULL);
        json_t *field =
            json_object_get(json_object_get(json_object_get(j, "data"), "data"), hash + 1);
        if (json_is_string(field))
            rc = secrets__take(json_string_value(field), json_string_length(field),
                               SECRETS_MULTILINE, ref, value, why, size);
        else
            snprintf(why, size, "%s: the secret has no string field %.100s", ref, hash + 1);
        /* wipe every string of the answer before it is freed */
        const char *k;
        json_t *v, *data = json_object_get(json_object_get(j, "data"), "data");
        json_object_foreach(data, k, v) if (json_is_string(v) && json_string_length(v))
            explicit_bzero((char *)json_string_value(v), json_string_length(v));
        json_decref(j);
        secrets__reply_free(&r);
        return rc;
    }
    snprintf(why, size, "%s: Vault refused the AppRole token (HTTP 403)", ref);
    return -1;
}

const struct secrets__store secrets__vault = {"vault:", SECRETS_VAULT, vault_check, vault_fetch};
