/*
 * DESIGN
 * Why one file of ~1,900 lines: each section's parser is small, but all of them share the
 * loader's position-aware error, type and secret-reference helpers; split by section, those
 * helpers would become a header used nowhere else.
 *
 * libyaml's document API gives a node tree with start marks, so every error can point at
 * the exact line and column. Parsing is a walk over that tree with one small function per
 * section; each knows its allowed keys, so an unknown key (a typo) is always an error,
 * with a "did you mean" hint when a known key is close. Security-relevant sections that
 * this build does not implement yet (auth, store) are refused, never silently ignored.
 *
 * Typing follows YAML, not guesswork: numbers and booleans must be plain (unquoted) scalars,
 * so `timeout_ms: "10s"` or `requests: "yes"` fail loudly instead of meaning something odd.
 * Every string we keep is free of control characters because names, models and keys end up
 * in HTTP headers and log lines, where a CR/LF would be an injection.
 *
 * Memory: the tree is built in place inside `struct config`; counters (n_backends, n_targets)
 * are bumped before an element is parsed, so config_free() releases a half-built element on
 * any error path and the loader never needs its own cleanup code.
 */
#include "config/config.h"

#include <openssl/evp.h>

#include <libgen.h>
#include <unistd.h>

#include "cost/prices.h"
#include "providers/aws/credentials.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#define CONFIG_MAX (4u << 20) /* a config file beyond 4 MiB is a mistake */
#define MS_MAX     86400000L  /* one day, the ceiling for every timeout */

struct loader {
    yaml_document_t *doc;
    struct config_error *error;
    struct config *cfg;
    bool offline; /* remote secret references: syntax only */
};

static int fail_at(struct loader *ld, const yaml_node_t *node, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail_at(struct loader *ld, const yaml_node_t *node, const char *fmt, ...)
{
    if (ld->error->msg[0]) return -1; /* keep the first error */
    ld->error->line = node ? (int)node->start_mark.line + 1 : 0;
    ld->error->col = node ? (int)node->start_mark.column + 1 : 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ld->error->msg, sizeof ld->error->msg, fmt, ap);
    va_end(ap);
    return -1;
}

static const char *scalar(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

/* A scalar YAML would read as a number or boolean, i.e. not quoted and not a block. */
static const char *plain(const yaml_node_t *n)
{
    return scalar(n) && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE ? scalar(n) : NULL;
}

/* `key:` with nothing after it, or ~ / null: treated as if the key were absent. */
static bool is_null(const yaml_node_t *n)
{
    const char *s = plain(n);
    return s && (s[0] == '\0' || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 ||
                 strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0);
}

static bool has_control(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) return true;
    return false;
}

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 40 || lb > 40) return 99;
    size_t d[41][41];
    for (size_t i = 0; i <= la; i++) d[i][0] = i;
    for (size_t j = 0; j <= lb; j++) d[0][j] = j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            size_t sub = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            size_t del = d[i - 1][j] + 1, ins = d[i][j - 1] + 1;
            d[i][j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
    return d[la][lb];
}

/* Checks every key of a mapping against `allowed` (NULL-terminated); also rejects
 * duplicates and non-scalar keys. Errors point at the key, in document order. */
static int check_keys(struct loader *ld, const yaml_node_t *map, const char *const *allowed,
                      const char *where)
{
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        const yaml_node_t *kn = yaml_document_get_node(ld->doc, p->key);
        const char *k = scalar(kn);
        if (k == NULL) return fail_at(ld, kn, "keys in %s must be plain strings", where);
        for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++) {
            const char *k2 = scalar(yaml_document_get_node(ld->doc, q->key));
            if (k2 && strcmp(k, k2) == 0)
                return fail_at(ld, kn, "duplicate key '%s' in %s", k, where);
        }
        bool ok = false;
        const char *best = NULL;
        size_t best_d = 3; /* a hint only for edit distance <= 2 */
        for (const char *const *a = allowed; *a; a++) {
            if (strcmp(*a, k) == 0) {
                ok = true;
                break;
            }
            size_t dist = edit_distance(*a, k);
            if (dist < best_d) {
                best_d = dist;
                best = *a;
            }
        }
        if (ok) continue;
        if (best)
            return fail_at(ld, kn, "unknown key '%s' in %s (did you mean '%s'?)", k, where, best);
        return fail_at(ld, kn, "unknown key '%s' in %s", k, where);
    }
    return 0;
}

static const yaml_node_t *get(struct loader *ld, const yaml_node_t *map, const char *key)
{
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        const char *k = scalar(yaml_document_get_node(ld->doc, p->key));
        if (k && strcmp(k, key) == 0) return yaml_document_get_node(ld->doc, p->value);
    }
    return NULL;
}

/* Like get(), but a null value counts as absent (for optional sections). */
static const yaml_node_t *get_section(struct loader *ld, const yaml_node_t *map, const char *key)
{
    const yaml_node_t *n = get(ld, map, key);
    return n && !is_null(n) ? n : NULL;
}

static int want_mapping(struct loader *ld, const yaml_node_t *n, const char *what)
{
    if (n->type != YAML_MAPPING_NODE) return fail_at(ld, n, "%s must be a mapping", what);
    return 0;
}

/* Copies the string at `key` into *out (owned by the tree). `where` names the mapping
 * for the "missing required key" message. */
static int get_string(struct loader *ld, const yaml_node_t *map, const char *key, char **out,
                      bool required, const char *where)
{
    const yaml_node_t *n = get(ld, map, key);
    if (n == NULL) {
        if (required) return fail_at(ld, map, "%s: missing required key '%s'", where, key);
        return 0;
    }
    const char *s = scalar(n);
    if (s == NULL || s[0] == '\0') return fail_at(ld, n, "%s must be a non-empty string", key);
    if (has_control(s, n->data.scalar.length))
        return fail_at(ld, n, "%s must not contain control characters", key);
    free(*out);
    *out = strdup(s);
    return *out ? 0 : fail_at(ld, n, "out of memory");
}

/* Plain decimal only: no sign but a leading '-', no spaces, no units, no hex. */
static bool parse_decimal(const char *s, long *out)
{
    const char *d = s[0] == '-' ? s + 1 : s;
    if (d[0] == '\0') return false;
    for (const char *c = d; *c; c++)
        if (*c < '0' || *c > '9') return false;
    errno = 0;
    long v = strtol(s, NULL, 10);
    if (errno != 0) return false;
    *out = v;
    return true;
}

static int get_long(struct loader *ld, const yaml_node_t *map, const char *key, long *out, long min,
                    long max)
{
    const yaml_node_t *n = get(ld, map, key);
    if (n == NULL) return 0;
    const char *s = plain(n);
    long v = 0;
    if (s && parse_decimal(s, &v) && v >= min && v <= max) {
        *out = v;
        return 0;
    }
    if (min == 1) return fail_at(ld, n, "%s must be a positive integer (at most %ld)", key, max);
    if (min == 0)
        return fail_at(ld, n, "%s must be a non-negative integer (at most %ld)", key, max);
    return fail_at(ld, n, "%s must be an integer from %ld to %ld", key, min, max);
}

static int get_bool(struct loader *ld, const yaml_node_t *map, const char *key, bool *out)
{
    const yaml_node_t *n = get(ld, map, key);
    if (n == NULL) return 0;
    const char *s = plain(n);
    if (s && strcmp(s, "true") == 0)
        *out = true;
    else if (s && strcmp(s, "false") == 0)
        *out = false;
    else
        return fail_at(ld, n, "%s must be true or false", key);
    return 0;
}

static int get_price(struct loader *ld, const yaml_node_t *n, const char *key, double *out)
{
    const char *s = plain(n);
    bool ok = s && s[0] != '\0' && s[0] != '-' && strspn(s, "0123456789.eE+-") == strlen(s);
    char *end = NULL;
    double v = ok ? strtod(s, &end) : -1;
    if (!ok || *end != '\0' || !(v >= 0) || v > 1e9)
        return fail_at(ld, n, "price.%s must be a non-negative number (USD per 1M tokens)", key);
    *out = v;
    return 0;
}

static int listen_fail(const char **why, const char *msg)
{
    if (why) *why = msg;
    return -1;
}

int config_parse_listen(const char *s, char **host, int *port, const char **why)
{
    const char *h = s, *colon;
    size_t hlen;
    if (s == NULL || s[0] == '\0') return listen_fail(why, "expected HOST:PORT");
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':') return listen_fail(why, "expected [IPv6]:PORT");
        h = s + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL) return listen_fail(why, "expected HOST:PORT");
        hlen = (size_t)(colon - s);
        if (memchr(s, ':', hlen)) /* "::1:80" is ambiguous; demand brackets */
            return listen_fail(why, "an IPv6 address needs brackets, as in [::1]:8080");
    }
    if (hlen == 0) return listen_fail(why, "expected HOST:PORT (the host is empty)");
    if (memchr(h, '[', hlen) || memchr(h, ']', hlen) || has_control(h, hlen))
        return listen_fail(why, "the host has invalid characters");
    const char *ps = colon + 1;
    size_t plen = strlen(ps);
    long p = 0;
    if (plen == 0 || plen > 5 || ps[0] == '-' || !parse_decimal(ps, &p) || p > 65535)
        return listen_fail(why, "port must be a number from 0 to 65535");
    char *hc = strndup(h, hlen);
    if (hc == NULL) return listen_fail(why, "out of memory");
    *host = hc;
    *port = (int)p;
    return 0;
}

int config_secret_value(const char *ref, char **value, char *why, size_t size)
{
    return secrets_resolve(NULL, ref, SECRETS_ONE_LINE, value, why, size);
}

/* A secret is only ever a reference; it is resolved now (remote ones: unless offline), so a
 * missing variable, file or remote secret fails the load with its line. */
static int resolve_secret(struct loader *ld, const yaml_node_t *n, struct secret *sec,
                          const char *key, const char *owner)
{
    char why[600];
    const char *ref = scalar(n);
    if (ref == NULL || !secrets_is_reference(ref))
        return fail_at(ld, n,
                       "%s must be a secret reference (env:NAME, file:PATH, aws-sm:ID[#FIELD], "
                       "ssm:NAME or vault:MOUNT/PATH#FIELD), not a literal key",
                       key);
    if (has_control(ref, n->data.scalar.length))
        return fail_at(ld, n, "%s must not contain control characters", key);
    if (secrets_check(ref, NULL, why, sizeof why) != 0)
        return fail_at(ld, n, "%s of %s: %s", key, owner, why);
    if ((sec->ref = strdup(ref)) == NULL) return fail_at(ld, n, "out of memory");
    if (ld->offline && secrets_is_remote(ref)) return 0;
    if (secrets_resolve(&ld->cfg->secrets.sources, ref, SECRETS_ONE_LINE, &sec->value, why,
                        sizeof why) != 0)
        return fail_at(ld, n, "%s of %s: %s", key, owner, why);
    return 0;
}

#ifdef STRATUS_HAVE_ENGINE
#define SUPPORTED_TYPES "openai, anthropic, bedrock, local"
#else
#define SUPPORTED_TYPES "openai, anthropic, bedrock"
#endif

static int tco_number(struct loader *ld, const yaml_node_t *map, const char *key, double *out,
                      bool positive)
{
    const yaml_node_t *n = get(ld, map, key);
    if (n == NULL) return fail_at(ld, map, "cost: missing '%s'", key);
    const char *s = plain(n);
    char *end = NULL;
    double v = s && *s ? strtod(s, &end) : -1;
    if (s == NULL || *s == '\0' || *end != '\0' || !(v >= 0) || v > 1e12 || (positive && v <= 0))
        return fail_at(ld, n, "cost.%s must be a %s number", key,
                       positive ? "positive" : "non-negative");
    *out = v;
    return 0;
}

/* cost: { watts, kwh_price, hardware_price, lifetime_months } — all four, so a forgotten one
 * never silently makes local tokens cheaper than they are. */
static int parse_tco(struct loader *ld, const yaml_node_t *n, struct tco_conf *t, const char *owner)
{
    static const char *const keys[] = {"watts", "kwh_price", "hardware_price", "lifetime_months",
                                       NULL};
    char where[200];
    snprintf(where, sizeof where, "%s cost", owner);
    if (want_mapping(ld, n, "cost") || check_keys(ld, n, keys, where) ||
        tco_number(ld, n, "watts", &t->watts, false) ||
        tco_number(ld, n, "kwh_price", &t->kwh_price, false) ||
        tco_number(ld, n, "hardware_price", &t->hardware_price, false) ||
        tco_number(ld, n, "lifetime_months", &t->lifetime_months, true))
        return -1;
    t->set = true;
    return 0;
}

static int parse_url(struct loader *ld, const yaml_node_t *n, const char *key, char **out,
                     const char *owner);

/* type: local with url: — the engine runs elsewhere (`stratus engine --listen`), and its own
 * command line sets what model_path, parallel, ctx_size … set for an engine started here. */
static int parse_remote_engine(struct loader *ld, const yaml_node_t *n, struct backend_conf *b,
                               const char *owner)
{
    static const char *const engine_side[] = {"model_path",    "parallel",  "threads",
                                              "ctx_size",      "max_queue", "prefix_cache",
                                              "prefill_chunk", NULL};
    for (const char *const *k = engine_side; *k; k++)
        if (get(ld, n, *k))
            return fail_at(ld, get(ld, n, *k),
                           "%s: '%s' is the remote engine's own setting (its stratus engine "
                           "command line); with url: it cannot be set here",
                           owner, *k);
    char *url = NULL;
    if (parse_url(ld, n, "url", &url, owner)) return -1;
    b->remote_engine = true;
    size_t len = strlen(url);
    b->base_url = malloc(len + 4);
    if (b->base_url == NULL) {
        free(url);
        return fail_at(ld, n, "out of memory");
    }
    snprintf(b->base_url, len + 4, "%s/v1", url);
    free(url);
    const yaml_node_t *t = get(ld, n, "token");
    if (t && resolve_secret(ld, t, &b->api_key, "token", owner)) return -1;
    if (get_string(ld, n, "ca", &b->tls_ca, false, owner)) return -1;
    if (b->tls_ca && access(b->tls_ca, R_OK) != 0)
        return fail_at(ld, get(ld, n, "ca"), "%s: ca %s: %s", owner, b->tls_ca, strerror(errno));
    if (get_long(ld, n, "timeout_ms", &b->timeout_ms, 1, MS_MAX) ||
        get_long(ld, n, "connect_timeout_ms", &b->connect_timeout_ms, 1, 600000) ||
        get_long(ld, n, "first_byte_timeout_ms", &b->first_byte_timeout_ms, 1, MS_MAX))
        return -1;
    const yaml_node_t *cost = get_section(ld, n, "cost");
    return cost && parse_tco(ld, cost, &b->tco, owner) ? -1 : 0;
}

static int parse_local_backend(struct loader *ld, const yaml_node_t *n, struct backend_conf *b,
                               const char *owner, const char *where)
{
    static const char *const keys[] = {"name",
                                       "type",
                                       "model_path",
                                       "parallel",
                                       "threads",
                                       "ctx_size",
                                       "max_queue",
                                       "timeout_ms",
                                       "connect_timeout_ms",
                                       "first_byte_timeout_ms",
                                       "cost",
                                       "private",
                                       "prefix_cache",
                                       "prefill_chunk",
                                       "url",
                                       "token",
                                       "ca",
                                       NULL};
    if (check_keys(ld, n, keys, owner)) return -1;
    if (get(ld, n, "url")) return parse_remote_engine(ld, n, b, owner);
    static const char *const remote_only[] = {"token", "ca", NULL};
    for (const char *const *k = remote_only; *k; k++)
        if (get(ld, n, *k))
            return fail_at(ld, get(ld, n, *k), "%s: '%s' is for a remote engine (with url:)", owner,
                           *k);
    if (get_string(ld, n, "model_path", &b->model_path, true, owner)) return -1;
    long parallel = 4, threads = 0, ctx = 4096, queue = 64, chunk = 0;
    if (get_long(ld, n, "parallel", &parallel, 1, 256) ||
        get_long(ld, n, "prefill_chunk", &chunk, 1, 1 << 20) ||
        get_long(ld, n, "threads", &threads, 1, 1024) ||
        get_long(ld, n, "ctx_size", &ctx, 64, 1 << 20) ||
        get_long(ld, n, "max_queue", &queue, 1, 100000) ||
        get_long(ld, n, "timeout_ms", &b->timeout_ms, 1, MS_MAX) ||
        get_long(ld, n, "connect_timeout_ms", &b->connect_timeout_ms, 1, 600000) ||
        get_long(ld, n, "first_byte_timeout_ms", &b->first_byte_timeout_ms, 1, MS_MAX))
        return -1;
    bool prefix_cache = true;
    if (get_bool(ld, n, "prefix_cache", &prefix_cache)) return -1;
    b->no_prefix_cache = !prefix_cache;
    const yaml_node_t *cost = get_section(ld, n, "cost");
    if (cost && parse_tco(ld, cost, &b->tco, owner)) return -1;
    b->parallel = (int)parallel;
    b->threads = (int)threads;
    b->ctx_size = (int)ctx;
    b->max_queue = (int)queue;
    b->prefill_chunk = (int)chunk;
    /* The worker listens on a private UNIX socket; this URL names paths on it. */
    b->base_url = strdup("http://localhost/v1");
    return b->base_url ? 0 : fail_at(ld, n, "out of memory");
}

/* base_url / endpoint_url: http(s)://host[...], stored without a trailing slash. */
static int parse_url(struct loader *ld, const yaml_node_t *n, const char *key, char **out,
                     const char *owner)
{
    if (get_string(ld, n, key, out, false, owner)) return -1;
    if (*out == NULL) return 0;
    const char *u = *out;
    size_t skip = strncmp(u, "http://", 7) == 0 ? 7 : strncmp(u, "https://", 8) == 0 ? 8 : 0;
    if (skip == 0 || u[skip] == '\0' || u[skip] == '/' || strpbrk(u, " \t") != NULL)
        return fail_at(ld, get(ld, n, key),
                       "%s must start with http:// or https:// and name a host", key);
    size_t ul = strlen(*out);
    if ((*out)[ul - 1] == '/') (*out)[ul - 1] = '\0'; /* paths are appended */
    return 0;
}

static int parse_timeouts(struct loader *ld, const yaml_node_t *n, struct backend_conf *b)
{
    return get_long(ld, n, "timeout_ms", &b->timeout_ms, 1, MS_MAX) ||
                   get_long(ld, n, "connect_timeout_ms", &b->connect_timeout_ms, 1, 600000) ||
                   get_long(ld, n, "first_byte_timeout_ms", &b->first_byte_timeout_ms, 1, MS_MAX)
               ? -1
               : 0;
}

static int parse_openai_backend(struct loader *ld, const yaml_node_t *n, struct backend_conf *b,
                                const char *owner, const char *where)
{
    static const char *const keys[] = {"name",
                                       "type",
                                       "base_url",
                                       "api_key",
                                       "timeout_ms",
                                       "connect_timeout_ms",
                                       "first_byte_timeout_ms",
                                       "private",
                                       NULL};
    if (check_keys(ld, n, keys, where)) return -1;
    if (get(ld, n, "base_url") == NULL)
        return fail_at(ld, n, "%s: missing required key 'base_url'", owner);
    if (parse_url(ld, n, "base_url", &b->base_url, owner)) return -1;
    const yaml_node_t *k = get(ld, n, "api_key");
    if (k && resolve_secret(ld, k, &b->api_key, "api_key", owner)) return -1;
    return parse_timeouts(ld, n, b);
}

static int parse_anthropic_backend(struct loader *ld, const yaml_node_t *n, struct backend_conf *b,
                                   const char *owner, const char *where)
{
    static const char *const keys[] = {"name",
                                       "type",
                                       "base_url",
                                       "api_key",
                                       "anthropic_version",
                                       "max_tokens",
                                       "timeout_ms",
                                       "connect_timeout_ms",
                                       "first_byte_timeout_ms",
                                       "private",
                                       NULL};
    if (check_keys(ld, n, keys, where)) return -1;
    if (parse_url(ld, n, "base_url", &b->base_url, owner)) return -1;
    if (b->base_url == NULL && (b->base_url = strdup("https://api.anthropic.com")) == NULL)
        return fail_at(ld, n, "out of memory");
    const yaml_node_t *k = get(ld, n, "api_key");
    if (k == NULL) return fail_at(ld, n, "%s: missing required key 'api_key'", owner);
    if (resolve_secret(ld, k, &b->api_key, "api_key", owner)) return -1;
    if (get_string(ld, n, "anthropic_version", &b->anthropic_version, false, owner)) return -1;
    if (b->anthropic_version == NULL && (b->anthropic_version = strdup("2023-06-01")) == NULL)
        return fail_at(ld, n, "out of memory");
    b->max_tokens = 4096;
    if (get_long(ld, n, "max_tokens", &b->max_tokens, 1, 10000000)) return -1;
    return parse_timeouts(ld, n, b);
}

static int set_secret(struct secret *sec, const char *ref, const char *value)
{
    sec->ref = strdup(ref);
    sec->value = value ? strdup(value) : NULL;
    return sec->ref && (value == NULL || sec->value) ? 0 : -1;
}

/* AWS credentials, in the order the AWS SDKs use: explicit references in the config, then
 * the environment, then the shared credentials file (profile from `profile`, AWS_PROFILE
 * or "default"). A `profile` key selects the file even when the environment has keys. */
static int resolve_aws_credentials(struct loader *ld, const yaml_node_t *n, struct backend_conf *b,
                                   const char *owner)
{
    const yaml_node_t *id = get(ld, n, "aws_access_key_id"),
                      *secret = get(ld, n, "aws_secret_access_key"),
                      *token = get(ld, n, "aws_session_token");
    if (id || secret) {
        if (id == NULL || secret == NULL)
            return fail_at(ld, id ? id : secret,
                           "%s: aws_access_key_id and aws_secret_access_key go together", owner);
        b->aws_source = AWS_CREDS_CONFIG;
        if (resolve_secret(ld, id, &b->aws_access_key_id, "aws_access_key_id", owner) ||
            resolve_secret(ld, secret, &b->aws_secret_access_key, "aws_secret_access_key", owner) ||
            (token && resolve_secret(ld, token, &b->aws_session_token, "aws_session_token", owner)))
            return -1;
        return 0;
    }
    if (token)
        return fail_at(ld, token, "%s: aws_session_token needs aws_access_key_id too", owner);
    if (get_string(ld, n, "profile", &b->aws_profile, false, owner)) return -1;
    struct aws_credentials c;
    char why[1400];
    if (aws_credentials_load(b->aws_profile, &c, why, sizeof why) != 0)
        return fail_at(ld, n,
                       "%s: %s, or give aws_access_key_id and aws_secret_access_key as "
                       "secret references",
                       owner, why);
    char ref[200];
    int rc = 0;
    if (c.from == AWS_CREDENTIALS_ENV) {
        b->aws_source = AWS_CREDS_ENV;
        if (set_secret(&b->aws_access_key_id, "env:AWS_ACCESS_KEY_ID", c.access_key_id) ||
            set_secret(&b->aws_secret_access_key, "env:AWS_SECRET_ACCESS_KEY",
                       c.secret_access_key) ||
            (c.session_token &&
             set_secret(&b->aws_session_token, "env:AWS_SESSION_TOKEN", c.session_token)))
            rc = fail_at(ld, n, "out of memory");
    } else {
        b->aws_source = AWS_CREDS_FILE;
        snprintf(ref, sizeof ref, "profile:%s", c.profile);
        if ((b->aws_profile == NULL && (b->aws_profile = strdup(c.profile)) == NULL) ||
            set_secret(&b->aws_access_key_id, ref, c.access_key_id) ||
            set_secret(&b->aws_secret_access_key, ref, c.secret_access_key) ||
            (c.session_token && set_secret(&b->aws_session_token, ref, c.session_token)))
            rc = fail_at(ld, n, "out of memory");
    }
    aws_credentials_clear(&c);
    return rc;
}

static int parse_bedrock_backend(struct loader *ld, const yaml_node_t *n, struct backend_conf *b,
                                 const char *owner, const char *where)
{
    static const char *const keys[] = {"name",
                                       "type",
                                       "region",
                                       "endpoint_url",
                                       "base_url",
                                       "profile",
                                       "aws_access_key_id",
                                       "aws_secret_access_key",
                                       "aws_session_token",
                                       "timeout_ms",
                                       "connect_timeout_ms",
                                       "first_byte_timeout_ms",
                                       "private",
                                       NULL};
    if (check_keys(ld, n, keys, where)) return -1;
    if (get(ld, n, "endpoint_url") && get(ld, n, "base_url"))
        return fail_at(ld, get(ld, n, "base_url"),
                       "%s: give endpoint_url or base_url, not both (they mean the same)", owner);
    if (get_string(ld, n, "region", &b->region, false, owner)) return -1;
    const char *er = getenv("AWS_REGION");
    if (er == NULL || *er == '\0') er = getenv("AWS_DEFAULT_REGION");
    if (b->region == NULL && er && *er && !has_control(er, strlen(er)) &&
        (b->region = strdup(er)) == NULL)
        return fail_at(ld, n, "out of memory");
    if (b->region == NULL)
        return fail_at(ld, n, "%s: missing required key 'region' (or set AWS_REGION)", owner);
    if (strspn(b->region, "abcdefghijklmnopqrstuvwxyz0123456789-") != strlen(b->region))
        return fail_at(ld, get(ld, n, "region") ? get(ld, n, "region") : n,
                       "%s: region '%s' is not an AWS region name", owner, b->region);
    if (parse_url(ld, n, get(ld, n, "base_url") ? "base_url" : "endpoint_url", &b->base_url, owner))
        return -1;
    if (b->base_url == NULL) { /* DESIGN.md: the AWS SDKs' endpoint variables */
        char url[1024];
        aws_endpoint(NULL, "AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "bedrock-runtime", b->region, url,
                     sizeof url);
        if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
            return fail_at(ld, n,
                           "%s: AWS_ENDPOINT_URL_BEDROCK_RUNTIME / AWS_ENDPOINT_URL must be an "
                           "http(s) URL, not '%.200s'",
                           owner, url);
        if ((b->base_url = strdup(url)) == NULL) return fail_at(ld, n, "out of memory");
    }
    if (resolve_aws_credentials(ld, n, b, owner)) return -1;
    return parse_timeouts(ld, n, b);
}

static int parse_backend(struct loader *ld, const yaml_node_t *n, size_t idx,
                         struct backend_conf *b)
{
    char where[64], owner[160];
    snprintf(where, sizeof where, "backends[%zu]", idx);
    b->timeout_ms = 60000;
    b->connect_timeout_ms = 5000;
    b->line = (int)n->start_mark.line + 1;
    b->col = (int)n->start_mark.column + 1;
    if (want_mapping(ld, n, where)) return -1;
    if (get_bool(ld, n, "private", &b->is_private)) return -1;
    const yaml_node_t *t = get(ld, n, "type");
    const char *type = scalar(t);
    if (get_string(ld, n, "name", &b->name, true, where)) return -1;
    snprintf(owner, sizeof owner, "backend '%s'", b->name);

    if (t == NULL) return fail_at(ld, n, "%s: missing required key 'type'", owner);
    if (type == NULL)
        return fail_at(ld, t, "type must be a string (supported: " SUPPORTED_TYPES ")");
    if (strcmp(type, "openai") == 0) {
        b->type = BACKEND_OPENAI;
        return parse_openai_backend(ld, n, b, owner, where);
    }
    if (strcmp(type, "anthropic") == 0) {
        b->type = BACKEND_ANTHROPIC;
        return parse_anthropic_backend(ld, n, b, owner, where);
    }
    if (strcmp(type, "bedrock") == 0) {
        b->type = BACKEND_BEDROCK;
        return parse_bedrock_backend(ld, n, b, owner, where);
    }
    if (strcmp(type, "local") == 0) {
#ifdef STRATUS_HAVE_ENGINE
        b->type = BACKEND_LOCAL;
        b->timeout_ms = 600000; /* local generation can be long; streams usually are */
        b->connect_timeout_ms = 1000;
        return parse_local_backend(ld, n, b, owner, where);
#else
        return fail_at(
            ld, t,
            "backend type 'local' is not supported by this build (supported: " SUPPORTED_TYPES ")");
#endif
    }
    return fail_at(ld, t, "unknown backend type '%s' (supported: " SUPPORTED_TYPES ")", type);
}

static int parse_price(struct loader *ld, const yaml_node_t *p, const char *where,
                       struct price *price)
{
    static const char *const keys[] = {"input", "output", "cached_input", NULL};
    char pwhere[240];
    snprintf(pwhere, sizeof pwhere, "%s price", where);
    if (want_mapping(ld, p, "price") || check_keys(ld, p, keys, pwhere)) return -1;
    const yaml_node_t *in = get(ld, p, "input"), *out = get(ld, p, "output");
    /* Both are required: a missing one would silently make those tokens free. */
    if (in == NULL || out == NULL)
        return fail_at(ld, p, "%s: price needs both 'input' and 'output'", where);
    if (get_price(ld, in, "input", &price->input) || get_price(ld, out, "output", &price->output))
        return -1;
    price->cached_input = price->input;
    const yaml_node_t *cached = get(ld, p, "cached_input");
    if (cached && get_price(ld, cached, "cached_input", &price->cached_input)) return -1;
    price->set = true;
    price->source = PRICE_CONFIG;
    return 0;
}

static int parse_target(struct loader *ld, const yaml_node_t *n, struct model_conf *m, size_t idx,
                        struct target_conf *t)
{
    static const char *const keys[] = {"backend", "model", "weight", "quality", "price", NULL};
    char where[200];
    snprintf(where, sizeof where, "model '%s' target %zu", m->name, idx + 1);
    t->weight = 1;
    if (want_mapping(ld, n, where) || check_keys(ld, n, keys, where)) return -1;
    if (get_string(ld, n, "backend", &t->backend, true, where)) return -1;
    if (get_string(ld, n, "model", &t->model, false, where)) return -1;
    if (t->model == NULL && (t->model = strdup(m->name)) == NULL)
        return fail_at(ld, n, "out of memory");
    long w = 1;
    if (get_long(ld, n, "weight", &w, 0, 1000000)) return -1;
    t->weight = (int)w;
    long q = 0;
    if (get_long(ld, n, "quality", &q, 0, 1000000)) return -1;
    t->quality = (int)q;
    bool found = false;
    for (size_t i = 0; i < ld->cfg->n_backends && !found; i++)
        if (strcmp(ld->cfg->backends[i].name, t->backend) == 0) {
            t->backend_index = i;
            found = true;
        }
    if (!found)
        return fail_at(ld, get(ld, n, "backend"), "%s: unknown backend '%s'", where, t->backend);
    const yaml_node_t *p = get(ld, n, "price");
    return p ? parse_price(ld, p, where, &t->price) : 0;
}

#define ROUTE_POLICIES "priority, weighted, latency, least-busy, cost, margin"

const char *backend_type_name(enum backend_type t)
{
    switch (t) {
    case BACKEND_OPENAI:
        return "openai";
    case BACKEND_LOCAL:
        return "local";
    case BACKEND_ANTHROPIC:
        return "anthropic";
    case BACKEND_BEDROCK:
        return "bedrock";
    }
    return "?";
}

static const char *const budget_scope_names[] = {"key", "team", "customer"};
static const char *const budget_period_names[] = {"daily", "monthly"};
static const char *const budget_exhausted_names[] = {"reject", "local_only"};

const char *budget_scope_name(enum budget_scope s)
{
    return (unsigned)s < 3 ? budget_scope_names[s] : "?";
}

const char *budget_period_name(enum budget_period p)
{
    return (unsigned)p < 2 ? budget_period_names[p] : "?";
}

const char *budget_exhausted_name(enum budget_exhausted e)
{
    return (unsigned)e < 2 ? budget_exhausted_names[e] : "?";
}

static int name_index(const char *const *names, int n, const char *s)
{
    for (int i = 0; s && i < n; i++)
        if (strcmp(names[i], s) == 0) return i;
    return -1;
}

int budget_period_parse(const char *s)
{
    return name_index(budget_period_names, 2, s);
}

int budget_exhausted_parse(const char *s)
{
    return name_index(budget_exhausted_names, 2, s);
}

const char *route_policy_name(enum route_policy p)
{
    switch (p) {
    case ROUTE_PRIORITY:
        return "priority";
    case ROUTE_WEIGHTED:
        return "weighted";
    case ROUTE_LATENCY:
        return "latency";
    case ROUTE_LEAST_BUSY:
        return "least-busy";
    case ROUTE_COST:
        return "cost";
    case ROUTE_MARGIN:
        return "margin";
    }
    return "?";
}

static int parse_retry(struct loader *ld, const yaml_node_t *n, struct retry_conf *r)
{
    static const char *const keys[] = {"retries", "backoff_ms", "max_backoff_ms",
                                       "max_retry_after_ms", NULL};
    if (n == NULL) return 0;
    long retries = r->retries;
    if (want_mapping(ld, n, "retry") || check_keys(ld, n, keys, "retry") ||
        get_long(ld, n, "retries", &retries, 0, 10) ||
        get_long(ld, n, "backoff_ms", &r->backoff_ms, 0, MS_MAX) ||
        get_long(ld, n, "max_backoff_ms", &r->max_backoff_ms, 0, MS_MAX) ||
        get_long(ld, n, "max_retry_after_ms", &r->max_retry_after_ms, 0, MS_MAX))
        return -1;
    r->retries = (int)retries;
    return 0;
}

static int parse_cooldown(struct loader *ld, const yaml_node_t *n, struct cooldown_conf *c)
{
    static const char *const keys[] = {"failures", "window_ms", "duration_ms", "max_duration_ms",
                                       NULL};
    if (n == NULL) return 0;
    long failures = c->failures;
    if (want_mapping(ld, n, "cooldown") || check_keys(ld, n, keys, "cooldown") ||
        get_long(ld, n, "failures", &failures, 0, 1000000) ||
        get_long(ld, n, "window_ms", &c->window_ms, 1, MS_MAX) ||
        get_long(ld, n, "duration_ms", &c->duration_ms, 1, MS_MAX) ||
        get_long(ld, n, "max_duration_ms", &c->max_duration_ms, 1, MS_MAX))
        return -1;
    c->failures = (int)failures;
    if (c->max_duration_ms < c->duration_ms) c->max_duration_ms = c->duration_ms;
    return 0;
}

static int cache_when_of(struct loader *ld, const yaml_node_t *map, enum cache_when *out, bool *set)
{
    const yaml_node_t *w = get(ld, map, "when");
    if (w == NULL) return 0;
    const char *s = scalar(w);
    if (s && strcmp(s, "deterministic") == 0)
        *out = CACHE_DETERMINISTIC;
    else if (s && strcmp(s, "always") == 0)
        *out = CACHE_ALWAYS;
    else
        return fail_at(ld, w,
                       "cache when must be deterministic (temperature 0 or a seed) or always");
    if (set) *set = true;
    return 0;
}

static int get_size(struct loader *ld, const yaml_node_t *map, const char *key, size_t *out)
{
    long v = (long)(*out > (size_t)LONG_MAX ? LONG_MAX : *out);
    if (get_long(ld, map, key, &v, 1, LONG_MAX)) return -1;
    *out = (size_t)v;
    return 0;
}

static int parse_cache(struct loader *ld, const yaml_node_t *n, struct cache_conf *c)
{
    static const char *const keys[] = {"enabled", "ttl_s", "max_bytes", "max_entry_bytes",
                                       "when",    "scope", "redis",     NULL};
    c->enabled = true; /* the section's presence turns it on */
    if (is_null(n)) return 0;
    if (want_mapping(ld, n, "cache") || check_keys(ld, n, keys, "cache")) return -1;
    if (get_bool(ld, n, "enabled", &c->enabled) ||
        get_long(ld, n, "ttl_s", &c->ttl_s, 1, 31536000) ||
        get_size(ld, n, "max_bytes", &c->max_bytes) ||
        get_size(ld, n, "max_entry_bytes", &c->max_entry_bytes) ||
        get_bool(ld, n, "redis", &c->redis) || cache_when_of(ld, n, &c->when, NULL))
        return -1;
    const yaml_node_t *sc = get(ld, n, "scope");
    if (sc) {
        const char *s = scalar(sc);
        if (s && strcmp(s, "shared") == 0)
            c->scope = CACHE_SHARED;
        else if (s && strcmp(s, "team") == 0)
            c->scope = CACHE_PER_TEAM;
        else if (s && strcmp(s, "key") == 0)
            c->scope = CACHE_PER_KEY;
        else
            return fail_at(ld, sc, "cache scope must be shared, team or key");
    }
    if (c->max_entry_bytes > c->max_bytes)
        return fail_at(ld, n, "cache: max_entry_bytes (%zu) is larger than max_bytes (%zu)",
                       c->max_entry_bytes, c->max_bytes);
    return 0;
}

/* A model group's `cache:` — false, true, or { ttl_s, when }. */
static int parse_model_cache(struct loader *ld, const yaml_node_t *n, struct model_cache *c)
{
    static const char *const keys[] = {"ttl_s", "when", NULL};
    if (n->type == YAML_SCALAR_NODE) {
        const char *s = scalar(n);
        if (s && strcmp(s, "false") == 0) {
            c->off = true;
            return 0;
        }
        if (s && strcmp(s, "true") == 0) return 0;
        return fail_at(ld, n, "a model's cache is false, true or { ttl_s, when }");
    }
    if (want_mapping(ld, n, "cache") || check_keys(ld, n, keys, "cache")) return -1;
    return get_long(ld, n, "ttl_s", &c->ttl_s, 1, 31536000) ||
           cache_when_of(ld, n, &c->when, &c->when_set);
}

static int parse_model(struct loader *ld, const yaml_node_t *n, size_t idx, struct model_conf *m)
{
    static const char *const keys[] = {"name",
                                       "route",
                                       "targets",
                                       "retry",
                                       "cooldown",
                                       "latency_decay_ms",
                                       "expected_output_tokens",
                                       "max_prompt_tokens",
                                       "cache",
                                       NULL};
    char where[64];
    snprintf(where, sizeof where, "models[%zu]", idx);
    m->retry = (struct retry_conf){
        .retries = 1, .backoff_ms = 100, .max_backoff_ms = 2000, .max_retry_after_ms = 10000};
    m->cooldown = (struct cooldown_conf){
        .failures = 3, .window_ms = 30000, .duration_ms = 10000, .max_duration_ms = 300000};
    m->latency_decay_ms = 10000;
    m->expected_output_tokens = 256;
    if (want_mapping(ld, n, where) || check_keys(ld, n, keys, where)) return -1;
    if (get_string(ld, n, "name", &m->name, true, where)) return -1;
    const yaml_node_t *r = get(ld, n, "route");
    if (r) {
        const char *route = scalar(r);
        bool found = false;
        for (int p = ROUTE_PRIORITY; route && p <= ROUTE_MARGIN; p++)
            if (strcmp(route, route_policy_name((enum route_policy)p)) == 0) {
                m->route = (enum route_policy)p;
                found = true;
            }
        if (route == NULL)
            return fail_at(ld, r, "route must be a string (supported: " ROUTE_POLICIES ")");
        if (!found)
            return fail_at(ld, r, "unknown route policy '%s' (supported: " ROUTE_POLICIES ")",
                           route);
    }
    if (parse_retry(ld, get_section(ld, n, "retry"), &m->retry) ||
        parse_cooldown(ld, get_section(ld, n, "cooldown"), &m->cooldown) ||
        get_long(ld, n, "latency_decay_ms", &m->latency_decay_ms, 1, MS_MAX) ||
        get_long(ld, n, "expected_output_tokens", &m->expected_output_tokens, 1, 10000000) ||
        get_long(ld, n, "max_prompt_tokens", &m->max_prompt_tokens, 1, 100000000))
        return -1;
    const yaml_node_t *mc = get(ld, n, "cache");
    if (mc && parse_model_cache(ld, mc, &m->cache)) return -1;
    const yaml_node_t *ts = get(ld, n, "targets");
    if (ts == NULL) return fail_at(ld, n, "model '%s': missing required key 'targets'", m->name);
    if (ts->type != YAML_SEQUENCE_NODE ||
        ts->data.sequence.items.top == ts->data.sequence.items.start)
        return fail_at(ld, ts, "model '%s': targets must be a non-empty list", m->name);
    size_t count = (size_t)(ts->data.sequence.items.top - ts->data.sequence.items.start);
    m->targets = calloc(count, sizeof *m->targets);
    if (m->targets == NULL) return fail_at(ld, ts, "out of memory");
    for (size_t i = 0; i < count; i++) {
        m->n_targets++; /* before parsing: config_free() releases a half-built target */
        const yaml_node_t *tn = yaml_document_get_node(ld->doc, ts->data.sequence.items.start[i]);
        if (parse_target(ld, tn, m, i, &m->targets[i])) return -1;
    }
    return 0;
}

/* A number of days: fractions allowed (0.5 = 12 hours), 0 = keep forever. */
static int retention_days(struct loader *ld, const yaml_node_t *map, const char *key, double *out)
{
    const yaml_node_t *n = get(ld, map, key);
    if (n == NULL) return 0;
    const char *s = plain(n);
    char *end = NULL;
    double v = s && *s ? strtod(s, &end) : -1;
    if (s == NULL || *s == '\0' || *end != '\0' || !(v >= 0) || v > 100000)
        return fail_at(ld, n, "store.retention.%s must be a number of days >= 0 (0 keeps them)",
                       key);
    *out = v;
    return 0;
}

/* retention: { rows_days, rollups_days, every_s } */
static int parse_retention(struct loader *ld, const yaml_node_t *n, struct store_conf *s)
{
    static const char *const keys[] = {"rows_days", "rollups_days", "every_s", NULL};
    if (want_mapping(ld, n, "store.retention") || check_keys(ld, n, keys, "store.retention") ||
        retention_days(ld, n, "rows_days", &s->rows_days) ||
        retention_days(ld, n, "rollups_days", &s->rollups_days) ||
        get_long(ld, n, "every_s", &s->retention_every_s, 1, 86400))
        return -1;
    /* Reports read rollups for anything older than a few hours: rollups that age out
     * before the rows would make old rows invisible. */
    if (s->rows_days == 0) s->rollups_days = 0; /* rows kept forever keep their rollups */
    if (s->rollups_days > 0 && s->rollups_days < s->rows_days)
        return fail_at(ld, n,
                       "store.retention.rollups_days (%g) must be 0 (keep) or at least rows_days "
                       "(%g): reports read rollups",
                       s->rollups_days, s->rows_days);
    return 0;
}

static int parse_store(struct loader *ld, const yaml_node_t *n, struct store_conf *s)
{
    static const char *const keys[] = {
        "url",     "redis",     "queue_size", "batch_size",     "flush_ms",
        "durable", "retention", "password",   "redis_password", NULL};
    if (want_mapping(ld, n, "store") || check_keys(ld, n, keys, "store")) return -1;
    const yaml_node_t *pw = get(ld, n, "password"), *rpw = get(ld, n, "redis_password");
    if (pw && resolve_secret(ld, pw, &s->password, "password", "store")) return -1;
    if (rpw && resolve_secret(ld, rpw, &s->redis_password, "redis_password", "store")) return -1;
    if (get_string(ld, n, "redis", &s->redis, false, "store")) return -1;
    if (s->redis && strncmp(s->redis, "redis://", 8) != 0)
        return fail_at(ld, get(ld, n, "redis"),
                       "store.redis must be redis://[:PASSWORD@]HOST[:PORT]");
    if (get_string(ld, n, "url", &s->url, false, "store")) return -1;
    if (s->url && strncmp(s->url, "sqlite://", 9) != 0 && strncmp(s->url, "postgres://", 11) != 0 &&
        strncmp(s->url, "postgresql://", 13) != 0)
        return fail_at(ld, get(ld, n, "url"),
                       "store.url must be sqlite://PATH or postgres://USER:PASS@HOST/DB");
    if (pw && (s->url == NULL || strncmp(s->url, "sqlite://", 9) == 0))
        return fail_at(ld, pw, "store.password is for a postgres:// store.url");
    if (rpw && s->redis == NULL) return fail_at(ld, rpw, "store.redis_password needs store.redis");
    if (get_long(ld, n, "queue_size", &s->queue_size, 1, 10000000) ||
        get_long(ld, n, "batch_size", &s->batch_size, 1, 100000) ||
        get_long(ld, n, "flush_ms", &s->flush_ms, 0, 10000) ||
        get_bool(ld, n, "durable", &s->durable))
        return -1;
    const yaml_node_t *rn = get(ld, n, "retention");
    return rn ? parse_retention(ld, rn, s) : 0;
}

static int parse_limits(struct loader *ld, const yaml_node_t *n, struct limits_conf *l)
{
    static const char *const keys[] = {
        "max_body_bytes",     "max_header_bytes",   "header_timeout_ms",
        "body_timeout_ms",    "idle_timeout_ms",    "max_connections",
        "max_response_bytes", "max_buffered_bytes", NULL};
    if (want_mapping(ld, n, "limits") || check_keys(ld, n, keys, "limits")) return -1;
    long body = (long)l->max_body_bytes, head = (long)l->max_header_bytes,
         conns = l->max_connections, resp = (long)l->max_response_bytes,
         buffered = (long)l->max_buffered_bytes;
    if (get_long(ld, n, "max_body_bytes", &body, 1, 1L << 34) ||
        get_long(ld, n, "max_header_bytes", &head, 256, 1L << 24) ||
        get_long(ld, n, "header_timeout_ms", &l->header_timeout_ms, 1, MS_MAX) ||
        get_long(ld, n, "body_timeout_ms", &l->body_timeout_ms, 1, MS_MAX) ||
        get_long(ld, n, "idle_timeout_ms", &l->idle_timeout_ms, 1, MS_MAX) ||
        get_long(ld, n, "max_connections", &conns, 1, 1000000) ||
        get_long(ld, n, "max_response_bytes", &resp, 1024, 1L << 34) ||
        get_long(ld, n, "max_buffered_bytes", &buffered, 1024, 1L << 40))
        return -1;
    if (buffered < resp)
        return fail_at(ld, n,
                       "limits.max_buffered_bytes (%ld) is smaller than "
                       "limits.max_response_bytes (%ld): no answer could ever be held",
                       buffered, resp);
    l->max_response_bytes = (size_t)resp;
    l->max_buffered_bytes = (size_t)buffered;
    l->max_body_bytes = (size_t)body;
    l->max_header_bytes = (size_t)head;
    l->max_connections = (int)conns;
    return 0;
}

static int parse_sequence(struct loader *ld, const yaml_node_t *seq, const char *what,
                          size_t elem_size, void **items, size_t *n,
                          int (*each)(struct loader *, const yaml_node_t *, size_t, void *))
{
    if (seq->type != YAML_SEQUENCE_NODE) return fail_at(ld, seq, "%s must be a list", what);
    size_t count = (size_t)(seq->data.sequence.items.top - seq->data.sequence.items.start);
    if (count == 0) return 0;
    *items = calloc(count, elem_size);
    if (*items == NULL) return fail_at(ld, seq, "out of memory");
    for (size_t i = 0; i < count; i++) {
        (*n)++; /* before parsing: config_free() releases a half-built element */
        const yaml_node_t *it = yaml_document_get_node(ld->doc, seq->data.sequence.items.start[i]);
        if (each(ld, it, i, (char *)*items + i * elem_size)) return -1;
    }
    return 0;
}

/* A plain non-negative decimal number in (min, max]. */
static int get_amount(struct loader *ld, const yaml_node_t *map, const char *key, double *out,
                      double min, double max, const char *what)
{
    const yaml_node_t *n = get(ld, map, key);
    if (n == NULL) return 0;
    const char *s = plain(n);
    bool ok = s && s[0] != '\0' && s[0] != '-' && strspn(s, "0123456789.eE+") == strlen(s);
    char *end = NULL;
    double v = ok ? strtod(s, &end) : -1;
    if (!ok || *end != '\0' || !(v > min) || v > max)
        return fail_at(ld, n, "%s.%s must be a number above %g and at most %g", what, key, min,
                       max);
    *out = v;
    return 0;
}

static int parse_auth(struct loader *ld, const yaml_node_t *n, struct auth_conf *a)
{
    static const char *const keys[] = {"master_key", "refresh_ms", NULL};
    /* Present but empty is refused: a blank auth block must never read as "no auth". */
    if (n->type != YAML_MAPPING_NODE)
        return fail_at(ld, n, "auth must be a mapping with master_key: env:NAME or file:PATH");
    if (check_keys(ld, n, keys, "auth")) return -1;
    const yaml_node_t *k = get(ld, n, "master_key");
    if (k == NULL) return fail_at(ld, n, "auth: missing required key 'master_key'");
    if (resolve_secret(ld, k, &a->master_key, "master_key", "auth")) return -1;
    if (a->master_key.value == NULL) /* a remote reference, checked offline */
        return get_long(ld, n, "refresh_ms", &a->refresh_ms, 100, 3600000);
    /* Clients' keys are trimmed of spaces (guard_authenticate), so a master key that is only
     * spaces, or starts or ends with one, could never be presented. Named by reference. */
    const char *v = a->master_key.value;
    size_t len = strlen(v);
    if (strspn(v, " ") == len)
        return fail_at(ld, k, "master_key (%s) resolves to only whitespace", a->master_key.ref);
    if (v[0] == ' ' || v[len - 1] == ' ')
        return fail_at(ld, k,
                       "master_key (%s) starts or ends with a space, which no client can send "
                       "(the Authorization header is trimmed)",
                       a->master_key.ref);
    if (len < 16)
        return fail_at(ld, k, "master_key must be at least 16 characters (it guards every key)");
    return get_long(ld, n, "refresh_ms", &a->refresh_ms, 100, 3600000);
}

static int parse_metrics(struct loader *ld, const yaml_node_t *n, struct metrics_conf *m)
{
    static const char *const keys[] = {"enabled", "auth", "customers", NULL};
    if (want_mapping(ld, n, "metrics") || check_keys(ld, n, keys, "metrics")) return -1;
    if (get_bool(ld, n, "enabled", &m->enabled) || get_bool(ld, n, "auth", &m->auth)) return -1;
    long customers = m->max_customers;
    if (get_long(ld, n, "customers", &customers, 0, 10000)) return -1;
    m->max_customers = (int)customers;
    if (m->auth && ld->cfg->auth.master_key.ref == NULL)
        return fail_at(ld, n, "metrics: auth: true needs auth.master_key (the key it asks for)");
    return 0;
}

/* An OTLP header's value: a secret reference (env:/file:) or, for what is not secret (a
 * tenant id), the literal text. */
static int parse_otlp_header(struct loader *ld, const yaml_node_t *kn, const yaml_node_t *vn,
                             struct otlp_header *h)
{
    const char *k = scalar(kn), *v = scalar(vn);
    if (k == NULL || k[0] == '\0' ||
        strspn(k, "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
                  "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != strlen(k))
        return fail_at(ld, kn, "observability.headers: '%s' is not an HTTP header name",
                       k ? k : "");
    if ((h->name = strdup(k)) == NULL) return fail_at(ld, kn, "out of memory");
    if (v == NULL || v[0] == '\0')
        return fail_at(ld, vn, "observability.headers.%s must be a non-empty string", k);
    if (secrets_is_reference(v))
        return resolve_secret(ld, vn, &h->value, k, "observability.headers");
    if (has_control(v, vn->data.scalar.length))
        return fail_at(ld, vn, "observability.headers.%s must not contain control characters", k);
    return (h->value.value = strdup(v)) ? 0 : fail_at(ld, vn, "out of memory");
}

static int parse_observability(struct loader *ld, const yaml_node_t *n,
                               struct observability_conf *o)
{
    static const char *const keys[] = {"otlp_endpoint", "service_name", "headers", "queue_size",
                                       "batch_size",    "flush_ms",     "sample",  NULL};
    if (want_mapping(ld, n, "observability") || check_keys(ld, n, keys, "observability") ||
        parse_url(ld, n, "otlp_endpoint", &o->otlp_endpoint, "observability") ||
        get_string(ld, n, "service_name", &o->service_name, false, "observability") ||
        get_long(ld, n, "queue_size", &o->queue_size, 1, 1000000) ||
        get_long(ld, n, "batch_size", &o->batch_size, 1, 10000) ||
        get_long(ld, n, "flush_ms", &o->flush_ms, 1, 60000))
        return -1;
    /* A block without an endpoint would look like tracing is on while nothing is sent. */
    if (o->otlp_endpoint == NULL)
        return fail_at(ld, n,
                       "observability: missing required key 'otlp_endpoint' "
                       "(e.g. http://127.0.0.1:4318/v1/traces)");
    const yaml_node_t *sn = get(ld, n, "sample");
    if (sn) {
        const char *s = plain(sn);
        char *end = NULL;
        double v = s && s[0] && strspn(s, "0123456789.") == strlen(s) ? strtod(s, &end) : -1;
        if (end == NULL || *end != '\0' || !(v >= 0 && v <= 1))
            return fail_at(ld, sn, "observability.sample must be a number from 0 to 1");
        o->sample = v;
    }
    const yaml_node_t *hn = get_section(ld, n, "headers");
    if (hn == NULL) return 0;
    if (want_mapping(ld, hn, "observability.headers")) return -1;
    size_t count = (size_t)(hn->data.mapping.pairs.top - hn->data.mapping.pairs.start);
    if (count == 0) return 0;
    if ((o->headers = calloc(count, sizeof *o->headers)) == NULL)
        return fail_at(ld, hn, "out of memory");
    for (yaml_node_pair_t *p = hn->data.mapping.pairs.start; p < hn->data.mapping.pairs.top; p++) {
        o->n_headers++; /* before parsing: config_free() releases a half-built one */
        if (parse_otlp_header(ld, yaml_document_get_node(ld->doc, p->key),
                              yaml_document_get_node(ld->doc, p->value),
                              &o->headers[o->n_headers - 1]))
            return -1;
    }
    return 0;
}

static int each_budget(struct loader *ld, const yaml_node_t *n, size_t i, void *out)
{
    (void)i;
    static const char *const keys[] = {"team", "customer",     "limit_usd", "period",
                                       "soft", "on_exhausted", NULL};
    struct budget_conf *b = out;
    if (want_mapping(ld, n, "each budget") || check_keys(ld, n, keys, "budget")) return -1;
    b->soft = 0.8;
    const yaml_node_t *team = get(ld, n, "team"), *customer = get(ld, n, "customer");
    if ((team != NULL) == (customer != NULL))
        return fail_at(ld, n, "a budget names exactly one of team or customer (\"*\": each)");
    b->scope = team ? BUDGET_SCOPE_TEAM : BUDGET_SCOPE_CUSTOMER;
    if (get_string(ld, n, team ? "team" : "customer", &b->name, true, "budget")) return -1;
    if (get(ld, n, "limit_usd") == NULL)
        return fail_at(ld, n, "budget: missing required key 'limit_usd'");
    if (get_amount(ld, n, "limit_usd", &b->limit_usd, 0, 1e12, "budget") ||
        get_amount(ld, n, "soft", &b->soft, 0, 1, "budget"))
        return -1;
    b->period = BUDGET_MONTHLY;
    const yaml_node_t *p = get(ld, n, "period");
    int v = p ? budget_period_parse(plain(p)) : -1;
    if (p && v < 0) return fail_at(ld, p, "budget.period must be daily or monthly");
    if (p) b->period = (enum budget_period)v;
    const yaml_node_t *e = get(ld, n, "on_exhausted");
    v = e ? budget_exhausted_parse(plain(e)) : -1;
    if (e && v < 0) return fail_at(ld, e, "budget.on_exhausted must be reject or local_only");
    if (e) b->on_exhausted = (enum budget_exhausted)v;
    for (size_t j = 0; j < i; j++) {
        const struct budget_conf *o = &ld->cfg->budgets[j];
        if (o->scope == b->scope && o->period == b->period && strcmp(o->name, b->name) == 0)
            return fail_at(ld, n, "a %s budget for %s '%s' is already set",
                           budget_period_name(b->period), budget_scope_name(b->scope), b->name);
    }
    return 0;
}

static int each_backend(struct loader *ld, const yaml_node_t *n, size_t i, void *out)
{
    if (parse_backend(ld, n, i, out)) return -1;
    struct backend_conf *b = out;
    for (size_t j = 0; j < i; j++)
        if (strcmp(ld->cfg->backends[j].name, b->name) == 0)
            return fail_at(ld, get(ld, n, "name"), "duplicate backend name '%s'", b->name);
    return 0;
}

static int each_model(struct loader *ld, const yaml_node_t *n, size_t i, void *out)
{
    if (parse_model(ld, n, i, out)) return -1;
    struct model_conf *m = out;
    for (size_t j = 0; j < i; j++)
        if (strcmp(ld->cfg->models[j].name, m->name) == 0)
            return fail_at(ld, get(ld, n, "name"), "duplicate model name '%s'", m->name);
    return 0;
}

/* ---- functions ---- */

static const char *const function_kind_names[] = {"classify", "json", "text"};

const char *function_kind_name(enum function_kind k)
{
    return function_kind_names[k];
}

/* Prompt text: like get_string, but newlines and tabs are what prompts are made of (this
 * text goes to a model, never into a header or a log line). */
static int get_text(struct loader *ld, const yaml_node_t *map, const char *key, char **out)
{
    const yaml_node_t *n = get(ld, map, key);
    if (n == NULL) return 0;
    const char *s = scalar(n);
    if (s == NULL || s[0] == '\0') return fail_at(ld, n, "%s must be a non-empty string", key);
    for (size_t i = 0; i < n->data.scalar.length; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\n' && c != '\t' && c != '\r') || c == 0x7f || c == 0)
            return fail_at(ld, n, "%s must not contain control characters", key);
    }
    *out = strdup(s);
    return *out ? 0 : fail_at(ld, n, "out of memory");
}

/* A template's placeholders are {{name}} with name of letters, digits, _ . - (blanks
 * around it allowed); anything else that opens with {{ is a mistake caught now. */
static int check_template(struct loader *ld, const yaml_node_t *n, const char *t)
{
    for (const char *p = strstr(t, "{{"); p; p = strstr(p, "{{")) {
        const char *end = strstr(p + 2, "}}");
        if (end == NULL)
            return fail_at(ld, n, "template: '{{' at offset %zu is never closed", (size_t)(p - t));
        const char *a = p + 2, *b = end;
        while (a < b && *a == ' ') a++;
        while (b > a && b[-1] == ' ') b--;
        if (a == b)
            return fail_at(ld, n, "template: empty placeholder at offset %zu", (size_t)(p - t));
        for (const char *c = a; c < b; c++)
            if (!isalnum((unsigned char)*c) && *c != '_' && *c != '.' && *c != '-')
                return fail_at(
                    ld, n,
                    "template: placeholder '%.*s' must be a field name (letters, digits, _ . -)",
                    (int)(b - a), a);
        p = end + 2;
    }
    return 0;
}

/* A YAML node as JSON (for `schema`): plain scalars read as YAML reads them (numbers,
 * true/false, null), quoted ones as strings. */
static json_t *yaml_to_json(struct loader *ld, const yaml_node_t *n, int depth)
{
    if (depth > 64) return NULL;
    if (n->type == YAML_MAPPING_NODE) {
        json_t *o = json_object();
        for (yaml_node_pair_t *p = n->data.mapping.pairs.start; o && p < n->data.mapping.pairs.top;
             p++) {
            const char *k = scalar(yaml_document_get_node(ld->doc, p->key));
            json_t *v = yaml_to_json(ld, yaml_document_get_node(ld->doc, p->value), depth + 1);
            if (k == NULL || v == NULL || json_object_set_new(o, k, v) != 0) {
                json_decref(o);
                return NULL;
            }
        }
        return o;
    }
    if (n->type == YAML_SEQUENCE_NODE) {
        json_t *a = json_array();
        for (yaml_node_item_t *it = n->data.sequence.items.start;
             a && it < n->data.sequence.items.top; it++) {
            json_t *v = yaml_to_json(ld, yaml_document_get_node(ld->doc, *it), depth + 1);
            if (v == NULL || json_array_append_new(a, v) != 0) {
                json_decref(a);
                return NULL;
            }
        }
        return a;
    }
    const char *s = scalar(n), *pl = plain(n);
    if (s == NULL) return NULL;
    if (pl == NULL) return json_string(s);
    if (is_null(n)) return json_null();
    if (strcmp(pl, "true") == 0) return json_true();
    if (strcmp(pl, "false") == 0) return json_false();
    char *end;
    errno = 0;
    long long i = strtoll(pl, &end, 10);
    if (*pl && *end == '\0' && errno == 0) return json_integer(i);
    double d = strtod(pl, &end);
    if (*pl && *end == '\0') return json_real(d);
    return json_string(s);
}

static int parse_labels(struct loader *ld, const yaml_node_t *ln, struct function_conf *f)
{
    if (ln->type != YAML_SEQUENCE_NODE ||
        ln->data.sequence.items.top == ln->data.sequence.items.start)
        return fail_at(ld, ln, "function '%s': labels must be a non-empty list", f->name);
    size_t count = (size_t)(ln->data.sequence.items.top - ln->data.sequence.items.start);
    if (count > FUNCTION_MAX_LABELS)
        return fail_at(ld, ln, "function '%s': at most %d labels", f->name, FUNCTION_MAX_LABELS);
    if ((f->labels = calloc(count, sizeof *f->labels)) == NULL)
        return fail_at(ld, ln, "out of memory");
    for (size_t i = 0; i < count; i++) {
        const yaml_node_t *it = yaml_document_get_node(ld->doc, ln->data.sequence.items.start[i]);
        const char *s = scalar(it);
        bool blank = true;
        for (const char *c = s; c && *c; c++) blank &= isspace((unsigned char)*c) != 0;
        if (s == NULL || blank)
            return fail_at(ld, it, "function '%s': each label must be a non-blank string", f->name);
        if (has_control(s, it->data.scalar.length))
            return fail_at(ld, it, "function '%s': labels must not contain control characters",
                           f->name);
        for (size_t j = 0; j < i; j++)
            if (strcasecmp(f->labels[j], s) == 0)
                return fail_at(
                    ld, it,
                    "function '%s': label '%s' is listed twice (labels must differ, ignoring case)",
                    f->name, s);
        if ((f->labels[i] = strdup(s)) == NULL) return fail_at(ld, it, "out of memory");
        f->n_labels++;
    }
    return 0;
}

static int each_function(struct loader *ld, const yaml_node_t *n, size_t idx, void *out)
{
    static const char *const keys[] = {"name",     "model",  "kind",       "labels", "system",
                                       "template", "schema", "max_tokens", NULL};
    struct function_conf *f = out;
    char where[64];
    snprintf(where, sizeof where, "functions[%zu]", idx);
    f->line = (int)n->start_mark.line + 1;
    f->col = (int)n->start_mark.column + 1;
    f->max_tokens = 512;
    if (want_mapping(ld, n, where) || check_keys(ld, n, keys, where) ||
        get_string(ld, n, "name", &f->name, true, where))
        return -1;
    if (strlen(f->name) > 64 ||
        strspn(f->name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-") !=
            strlen(f->name))
        return fail_at(
            ld, get(ld, n, "name"),
            "function name '%s' must be 1-64 letters, digits, '-' or '_' (it is part of URLs)",
            f->name);
    for (size_t j = 0; j < idx; j++)
        if (strcmp(ld->cfg->functions[j].name, f->name) == 0)
            return fail_at(ld, get(ld, n, "name"), "duplicate function name '%s'", f->name);
    if (get_string(ld, n, "model", &f->model, true, where)) return -1;
    if (config_find_model(ld->cfg, f->model) == NULL)
        return fail_at(ld, get(ld, n, "model"),
                       "function '%s': model '%s' is not a model group in models:", f->name,
                       f->model);
    const yaml_node_t *k = get(ld, n, "kind");
    if (k == NULL)
        return fail_at(ld, n, "function '%s': missing required key 'kind' (classify, json or text)",
                       f->name);
    int kind = plain(k) ? name_index(function_kind_names, 3, plain(k)) : -1;
    if (kind < 0)
        return fail_at(ld, k, "function '%s': kind must be classify, json or text", f->name);
    f->kind = (enum function_kind)kind;
    if (get_text(ld, n, "system", &f->system) || get_text(ld, n, "template", &f->template))
        return -1;
    if (f->template == NULL)
        return fail_at(ld, n, "function '%s': missing required key 'template'", f->name);
    if (check_template(ld, get(ld, n, "template"), f->template)) return -1;
    if (get_long(ld, n, "max_tokens", &f->max_tokens, 1, 1000000)) return -1;
    const yaml_node_t *ln = get(ld, n, "labels"), *sn = get(ld, n, "schema");
    if (f->kind == FUNCTION_CLASSIFY) {
        if (ln == NULL)
            return fail_at(ld, n, "function '%s': kind classify needs 'labels'", f->name);
        if (parse_labels(ld, ln, f)) return -1;
    } else if (ln) {
        return fail_at(ld, ln, "function '%s': labels are for kind classify", f->name);
    }
    if (f->kind == FUNCTION_JSON) {
        if (sn == NULL || sn->type != YAML_MAPPING_NODE)
            return fail_at(ld, sn ? sn : n,
                           "function '%s': kind json needs 'schema', a JSON Schema mapping",
                           f->name);
        json_t *schema = yaml_to_json(ld, sn, 0);
        f->schema = schema ? json_dumps(schema, JSON_COMPACT) : NULL;
        json_decref(schema);
        if (f->schema == NULL)
            return fail_at(ld, sn, "function '%s': schema cannot be read as JSON", f->name);
    } else if (sn) {
        return fail_at(ld, sn, "function '%s': schema is for kind json", f->name);
    }
    return 0;
}

/* A list of CIDRs ("10.0.0.0/8", "::1/128", bare addresses), each checked where it stands. */
static int parse_cidrs(struct loader *ld, const yaml_node_t *n, const char *what, struct cidr **out,
                       size_t *count)
{
    if (n->type != YAML_SEQUENCE_NODE)
        return fail_at(ld, n, "%s must be a list of CIDRs like [10.0.0.0/8, \"::1/128\"]", what);
    size_t total = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (total == 0)
        return fail_at(ld, n, "%s is empty: list at least one CIDR, or leave the key out", what);
    if ((*out = calloc(total, sizeof **out)) == NULL) return fail_at(ld, n, "out of memory");
    for (size_t i = 0; i < total; i++) {
        const yaml_node_t *it = yaml_document_get_node(ld->doc, n->data.sequence.items.start[i]);
        const char *s = scalar(it), *why = NULL;
        if (s == NULL) return fail_at(ld, it, "%s: each entry must be a CIDR string", what);
        if (cidr_parse(s, &(*out)[i], &why) != 0)
            return fail_at(ld, it, "%s: '%.64s' is not a CIDR: %s", what, s, why);
        (*count)++;
    }
    return 0;
}

static int parse_access(struct loader *ld, const yaml_node_t *n, struct access_conf *a)
{
    static const char *const keys[] = {"allow", "trust_proxy", NULL};
    if (want_mapping(ld, n, "access") || check_keys(ld, n, keys, "access")) return -1;
    const yaml_node_t *al = get(ld, n, "allow");
    if (al) {
        a->allow_set = true;
        if (parse_cidrs(ld, al, "access.allow", &a->allow, &a->n_allow)) return -1;
    }
    const yaml_node_t *tp = get(ld, n, "trust_proxy");
    if (tp && parse_cidrs(ld, tp, "access.trust_proxy", &a->trust_proxy, &a->n_trust_proxy))
        return -1;
    return 0;
}

/* One entry of `listen:`: "HOST:PORT" or { address: HOST:PORT, tls: BOOL }. */
static int parse_listener(struct loader *ld, const yaml_node_t *n, struct listen_conf *out)
{
    static const char *const keys[] = {"address", "tls", NULL};
    const char *why = NULL;
    const yaml_node_t *addr = n, *tls = NULL;
    out->tls = ld->cfg->tls.cert != NULL; /* with a tls: section, TLS unless told otherwise */
    if (n->type == YAML_MAPPING_NODE) {
        if (check_keys(ld, n, keys, "a listen entry")) return -1;
        if ((addr = get(ld, n, "address")) == NULL)
            return fail_at(ld, n, "a listen entry needs 'address' (HOST:PORT)");
        tls = get(ld, n, "tls");
        if (get_bool(ld, n, "tls", &out->tls)) return -1;
    }
    if (scalar(addr) == NULL)
        return fail_at(ld, addr,
                       "listen must be a string HOST:PORT (quote IPv6: \"[::1]:8080\"), "
                       "a list of them, or { address, tls } entries");
    if (config_parse_listen(scalar(addr), &out->host, &out->port, &why) != 0)
        return fail_at(ld, addr, "listen: %s", why);
    if (out->tls && ld->cfg->tls.cert == NULL)
        return fail_at(ld, tls, "listen: tls: true needs a tls: section with cert and key");
    return 0;
}

static int parse_listen(struct loader *ld, const yaml_node_t *l)
{
    struct config *cfg = ld->cfg;
    const yaml_node_t *items[CONFIG_MAX_LISTENERS];
    size_t n = 0;
    if (l->type == YAML_SEQUENCE_NODE) {
        for (yaml_node_item_t *i = l->data.sequence.items.start; i < l->data.sequence.items.top;
             i++) {
            if (n == CONFIG_MAX_LISTENERS)
                return fail_at(ld, l, "listen: at most %d listeners", CONFIG_MAX_LISTENERS);
            items[n++] = yaml_document_get_node(ld->doc, *i);
        }
        if (n == 0) return fail_at(ld, l, "listen: the list is empty");
    } else {
        items[n++] = l;
    }
    for (size_t i = 0; i < cfg->n_listeners; i++) free(cfg->listeners[i].host); /* the default */
    free(cfg->listeners);
    cfg->n_listeners = 0;
    cfg->listeners = calloc(n, sizeof *cfg->listeners);
    if (cfg->listeners == NULL) return fail_at(ld, l, "out of memory");
    for (size_t i = 0; i < n; i++) {
        cfg->n_listeners++; /* before parsing: config_free() releases a half-built entry */
        if (parse_listener(ld, items[i], &cfg->listeners[i])) return -1;
    }
    return 0;
}

/* A tls: reference must name something readable now, so a typo fails at load with its line;
 * whether it holds a usable certificate is OpenSSL's to say when the listener starts. */
static int tls_ref(struct loader *ld, const yaml_node_t *n, const char *key, char **out)
{
    const char *ref = scalar(n);
    if (n == NULL) return fail_at(ld, NULL, "tls: needs '%s'", key);
    char why[600];
    if (ref == NULL || !secrets_is_reference(ref))
        return fail_at(ld, n,
                       "tls.%s must be a reference (file:PATH, env:NAME, aws-sm:, ssm: or vault:) "
                       "to PEM text",
                       key);
    if (has_control(ref, n->data.scalar.length))
        return fail_at(ld, n, "tls.%s must not contain control characters", key);
    if (secrets_check(ref, NULL, why, sizeof why) != 0)
        return fail_at(ld, n, "tls.%s: %s", key, why);
    if (ref[0] == 'f' && access(ref + 5, R_OK) != 0)
        return fail_at(ld, n, "tls.%s: cannot read %s: %s", key, ref + 5,
                       ref[5] ? strerror(errno) : "empty path");
    if (ref[0] == 'e' && (getenv(ref + 4) == NULL || getenv(ref + 4)[0] == '\0'))
        return fail_at(ld, n, "tls.%s: environment variable %s is not set", key, ref + 4);
    if ((*out = strdup(ref)) == NULL) return fail_at(ld, n, "out of memory");
    return 0;
}

static int parse_tls(struct loader *ld, const yaml_node_t *t)
{
    static const char *const keys[] = {"cert", "key", NULL};
    if (want_mapping(ld, t, "tls") || check_keys(ld, t, keys, "tls")) return -1;
    const yaml_node_t *cert = get(ld, t, "cert"), *key = get(ld, t, "key");
    if (cert == NULL || key == NULL)
        return fail_at(ld, t, "tls needs both 'cert' and 'key' (file:PATH or env:NAME)");
    return tls_ref(ld, cert, "cert", &ld->cfg->tls.cert) ||
           tls_ref(ld, key, "key", &ld->cfg->tls.key);
}

/* ---- guards ------------------------------------------------------------------------- */

static const char *const guard_pii_names[] = {"off", "flag", "route_local", "redact", "block"};

const char *guard_pii_name(enum guard_pii p)
{
    return (unsigned)p < 5 ? guard_pii_names[p] : "off";
}

static int get_pii_mode(struct loader *ld, const yaml_node_t *map, const char *where, bool output,
                        enum guard_pii *out)
{
    const yaml_node_t *n = get(ld, map, "pii");
    if (n == NULL) return 0;
    const char *s = scalar(n);
    int i = s ? name_index(guard_pii_names, 5, s) : -1;
    if (i < 0 || (output && i == GUARD_PII_ROUTE_LOCAL) || (!output && i == GUARD_PII_REDACT))
        return fail_at(ld, n, "%s.pii must be one of %s", where,
                       output ? "off, flag, redact, block" : "off, flag, route_local, block");
    *out = (enum guard_pii)i;
    return 0;
}

static int each_deny(struct loader *ld, const yaml_node_t *n, size_t idx, void *out)
{
    static const char *const keys[] = {"name", "pattern", NULL};
    struct guard_rule *r = out;
    const yaml_node_t *pn = n;
    char where[64];
    snprintf(where, sizeof where, "guards.input.deny[%zu]", idx);
    if (n->type == YAML_MAPPING_NODE) {
        if (check_keys(ld, n, keys, where) || get_string(ld, n, "name", &r->name, false, where))
            return -1;
        if ((pn = get(ld, n, "pattern")) == NULL)
            return fail_at(ld, n, "%s: missing required key 'pattern'", where);
    }
    const char *pat = scalar(pn);
    if (pat == NULL || pat[0] == '\0')
        return fail_at(ld, pn, "%s must be a non-empty string (a PCRE2 pattern)", where);
    r->pattern_len = pn->data.scalar.length;
    if ((r->pattern = strdup(pat)) == NULL ||
        (r->name == NULL && (r->name = strdup(where + strlen("guards.input."))) == NULL))
        return fail_at(ld, pn, "out of memory");
    int ec;
    PCRE2_SIZE eo;
    pcre2_code *code = pcre2_compile((PCRE2_SPTR)pat, pn->data.scalar.length,
                                     PCRE2_UTF | PCRE2_MATCH_INVALID_UTF, &ec, &eo, NULL);
    if (code == NULL) {
        PCRE2_UCHAR msg[200];
        pcre2_get_error_message(ec, msg, sizeof msg);
        return fail_at(ld, pn, "%s: bad regular expression at offset %zu: %s", where, (size_t)eo,
                       (const char *)msg);
    }
    (void)pcre2_jit_compile(code, PCRE2_JIT_COMPLETE); /* no JIT: the interpreter answers */
    r->code = code;
    return 0;
}

static int parse_guards(struct loader *ld, const yaml_node_t *n, struct guards_conf *g)
{
    static const char *const keys[] = {"input", "output", NULL};
    static const char *const in_keys[] = {"deny", "pii", "strip_control", NULL};
    static const char *const out_keys[] = {"pii", NULL};
    /* Whoever writes a guards: section asked for content guarding: invisible characters
     * smuggling text past a reader (and past the deny rules) go unless they say otherwise. */
    g->strip_control = true;
    if (want_mapping(ld, n, "guards") || check_keys(ld, n, keys, "guards")) return -1;
    const yaml_node_t *in = get_section(ld, n, "input");
    if (in) {
        if (want_mapping(ld, in, "guards.input") || check_keys(ld, in, in_keys, "guards.input") ||
            get_pii_mode(ld, in, "guards.input", false, &g->input_pii) ||
            get_bool(ld, in, "strip_control", &g->strip_control))
            return -1;
        const yaml_node_t *d = get_section(ld, in, "deny");
        if (d && parse_sequence(ld, d, "guards.input.deny", sizeof *g->deny, (void **)&g->deny,
                                &g->n_deny, each_deny))
            return -1;
    }
    const yaml_node_t *o = get_section(ld, n, "output");
    if (o &&
        (want_mapping(ld, o, "guards.output") || check_keys(ld, o, out_keys, "guards.output") ||
         get_pii_mode(ld, o, "guards.output", true, &g->output_pii)))
        return -1;
    return 0;
}

/* ---- secrets ------------------------------------------------------------------------ */

/* A setting that names a local secret (a Vault token, an AppRole secret_id): env:/file:
 * only, checked now, read when used (so a renewed token file is picked up). */
static int local_ref(struct loader *ld, const yaml_node_t *map, const char *key, char **out,
                     const char *where)
{
    const yaml_node_t *n = get(ld, map, key);
    if (n == NULL) return 0;
    const char *ref = scalar(n);
    char why[400], *probe = NULL;
    if (ref == NULL || (strncmp(ref, "env:", 4) != 0 && strncmp(ref, "file:", 5) != 0))
        return fail_at(ld, n, "%s.%s must be an env:NAME or file:PATH reference", where, key);
    if (secrets_resolve(NULL, ref, SECRETS_ONE_LINE, &probe, why, sizeof why) != 0)
        return fail_at(ld, n, "%s.%s: %s", where, key, why);
    secrets_value_free(probe);
    return (*out = strdup(ref)) ? 0 : fail_at(ld, n, "out of memory");
}

static int parse_secrets(struct loader *ld, const yaml_node_t *n, struct secrets_conf *c)
{
    static const char *const keys[] = {"refresh_s", "timeout_ms", "aws", "vault", NULL};
    static const char *const aws_keys[] = {"region", "profile", "secrets_manager_url", "ssm_url",
                                           NULL};
    static const char *const vault_keys[] = {"address", "token", "namespace", "approle", NULL};
    static const char *const approle_keys[] = {"role_id", "secret_id", "mount", NULL};
    struct secrets_sources *s = &c->sources;
    if (want_mapping(ld, n, "secrets") || check_keys(ld, n, keys, "secrets") ||
        get_long(ld, n, "refresh_s", &c->refresh_s, 0, 86400) ||
        get_long(ld, n, "timeout_ms", &s->timeout_ms, 100, 120000))
        return -1;
    const yaml_node_t *a = get_section(ld, n, "aws");
    if (a && (want_mapping(ld, a, "secrets.aws") || check_keys(ld, a, aws_keys, "secrets.aws") ||
              get_string(ld, a, "region", &s->aws_region, false, "secrets.aws") ||
              get_string(ld, a, "profile", &s->aws_profile, false, "secrets.aws") ||
              parse_url(ld, a, "secrets_manager_url", &s->secrets_manager_url, "secrets.aws") ||
              parse_url(ld, a, "ssm_url", &s->ssm_url, "secrets.aws")))
        return -1;
    if (s->aws_region &&
        strspn(s->aws_region, "abcdefghijklmnopqrstuvwxyz0123456789-") != strlen(s->aws_region))
        return fail_at(ld, get(ld, a, "region"), "secrets.aws: region '%s' is not an AWS region",
                       s->aws_region);
    const yaml_node_t *v = get_section(ld, n, "vault");
    if (v == NULL) return 0;
    if (want_mapping(ld, v, "secrets.vault") || check_keys(ld, v, vault_keys, "secrets.vault") ||
        parse_url(ld, v, "address", &s->vault_address, "secrets.vault") ||
        local_ref(ld, v, "token", &s->vault_token_ref, "secrets.vault") ||
        get_string(ld, v, "namespace", &s->vault_namespace, false, "secrets.vault"))
        return -1;
    const yaml_node_t *ar = get_section(ld, v, "approle");
    if (ar == NULL) return 0;
    if (s->vault_token_ref)
        return fail_at(ld, ar, "secrets.vault: give token or approle, not both");
    if (want_mapping(ld, ar, "secrets.vault.approle") ||
        check_keys(ld, ar, approle_keys, "secrets.vault.approle") ||
        get_string(ld, ar, "role_id", &s->approle_role_id, true, "secrets.vault.approle") ||
        local_ref(ld, ar, "secret_id", &s->approle_secret_id_ref, "secrets.vault.approle") ||
        get_string(ld, ar, "mount", &s->approle_mount, false, "secrets.vault.approle"))
        return -1;
    if (s->approle_secret_id_ref == NULL)
        return fail_at(ld, ar, "secrets.vault.approle: missing required key 'secret_id'");
    if (s->approle_mount && strspn(s->approle_mount, "abcdefghijklmnopqrstuvwxyz"
                                                     "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-/") !=
                                strlen(s->approle_mount))
        return fail_at(ld, get(ld, ar, "mount"), "secrets.vault.approle: mount '%s' is not a path",
                       s->approle_mount);
    return 0;
}

/* ---- tiers ---- */

/* A plain non-negative decimal number in [0, max]; `what` names it in the error. */
static int tier_number(struct loader *ld, const yaml_node_t *n, const char *what, double max,
                       double *out)
{
    const char *s = plain(n);
    bool ok = s && s[0] != '\0' && s[0] != '-' && strspn(s, "0123456789.eE+-") == strlen(s);
    char *end = NULL;
    double v = ok ? strtod(s, &end) : -1;
    if (!ok || *end != '\0' || !(v >= 0) || v > max)
        return fail_at(ld, n, "%s must be a number from 0 to %g", what, max);
    *out = v;
    return 0;
}

/* `price:` of a tier: what the customer is charged, not what the provider charges us, so
 * per_request is allowed here and a tier may charge nothing at all (per_request: 0). */
static int parse_tier_price(struct loader *ld, const yaml_node_t *p, struct tier_conf *t)
{
    static const char *const keys[] = {"input", "output", "per_request", NULL};
    char where[128];
    snprintf(where, sizeof where, "tier '%s' price", t->name);
    if (want_mapping(ld, p, where) || check_keys(ld, p, keys, where)) return -1;
    const yaml_node_t *in = get(ld, p, "input"), *out = get(ld, p, "output"),
                      *per = get(ld, p, "per_request");
    /* One without the other would silently give those tokens away. */
    if ((in == NULL) != (out == NULL))
        return fail_at(ld, p, "%s needs both 'input' and 'output' (USD per 1M tokens)", where);
    if (in == NULL && per == NULL)
        return fail_at(ld, p, "%s needs 'input' and 'output' (USD per 1M tokens) or 'per_request'",
                       where);
    if (in && (tier_number(ld, in, "price.input (USD per 1M tokens)", 1e9, &t->price_input) ||
               tier_number(ld, out, "price.output (USD per 1M tokens)", 1e9, &t->price_output)))
        return -1;
    t->token_price_set = in != NULL;
    return per ? tier_number(ld, per, "price.per_request (USD)", 1e6, &t->price_per_request) : 0;
}

static int tier_group(struct loader *ld, const yaml_node_t *n, const char *what, const char *tier,
                      char **out)
{
    const char *s = scalar(n);
    if (s == NULL || s[0] == '\0')
        return fail_at(ld, n, "tier '%s': %s must be a model group name", tier, what);
    if (config_find_model(ld->cfg, s) == NULL)
        return fail_at(ld, n, "tier '%s': %s names unknown model group '%s'", tier, what, s);
    *out = strdup(s);
    return *out ? 0 : fail_at(ld, n, "out of memory");
}

/* budget: { limit_usd, period, soft, on_exhausted } — each customer's (or key's) own. */
static int parse_tier_budget(struct loader *ld, const yaml_node_t *n, struct tier_conf *t)
{
    static const char *const keys[] = {"limit_usd", "period", "soft", "on_exhausted", NULL};
    char where[128];
    snprintf(where, sizeof where, "tier '%s' budget", t->name);
    struct budget_conf *b = &t->budget;
    b->scope = BUDGET_SCOPE_CUSTOMER;
    b->soft = 0.8;
    b->period = BUDGET_MONTHLY;
    if (want_mapping(ld, n, where) || check_keys(ld, n, keys, where)) return -1;
    if (get(ld, n, "limit_usd") == NULL)
        return fail_at(ld, n, "%s: missing required key 'limit_usd'", where);
    if (get_amount(ld, n, "limit_usd", &b->limit_usd, 0, 1e12, where) ||
        get_amount(ld, n, "soft", &b->soft, 0, 1, where))
        return -1;
    const yaml_node_t *p = get(ld, n, "period");
    int v = p ? budget_period_parse(plain(p)) : -1;
    if (p && v < 0) return fail_at(ld, p, "%s: period must be daily or monthly", where);
    if (p) b->period = (enum budget_period)v;
    const yaml_node_t *e = get(ld, n, "on_exhausted");
    v = e ? budget_exhausted_parse(plain(e)) : -1;
    if (e && v < 0) return fail_at(ld, e, "%s: on_exhausted must be reject or local_only", where);
    if (e) b->on_exhausted = (enum budget_exhausted)v;
    return 0;
}

static int each_tier(struct loader *ld, const yaml_node_t *n, size_t idx, void *out)
{
    static const char *const keys[] = {"name",         "price",      "models",  "route_to",
                                       "max_cost_usd", "min_margin", "default", "local_only",
                                       "rpm",          "tpm",        "budget",  NULL};
    struct tier_conf *t = out;
    char where[64];
    snprintf(where, sizeof where, "tiers[%zu]", idx);
    t->line = (int)n->start_mark.line + 1;
    t->col = (int)n->start_mark.column + 1;
    if (want_mapping(ld, n, where) || check_keys(ld, n, keys, where) ||
        get_string(ld, n, "name", &t->name, true, where))
        return -1;
    const yaml_node_t *name = get(ld, n, "name");
    /* Tier names go into keys, the customer table, the ledger and URLs' query strings. */
    if (strlen(t->name) > 64 ||
        strspn(t->name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") !=
            strlen(t->name))
        return fail_at(ld, name, "tier name '%s' must be 1-64 letters, digits, '.', '-' or '_'",
                       t->name);
    for (size_t j = 0; j < idx; j++)
        if (strcmp(ld->cfg->tiers[j].name, t->name) == 0)
            return fail_at(ld, name, "duplicate tier name '%s'", t->name);
    const yaml_node_t *p = get(ld, n, "price");
    if (p == NULL) return fail_at(ld, n, "tier '%s': missing required key 'price'", t->name);
    if (parse_tier_price(ld, p, t)) return -1;
    const yaml_node_t *ms = get(ld, n, "models");
    if (ms) {
        if (ms->type != YAML_SEQUENCE_NODE)
            return fail_at(ld, ms, "tier '%s': models must be a list of model group names",
                           t->name);
        size_t count = (size_t)(ms->data.sequence.items.top - ms->data.sequence.items.start);
        /* An empty list would allow nothing: almost surely a mistake, so say so. */
        if (count == 0)
            return fail_at(ld, ms, "tier '%s': models is empty (omit it to allow every group)",
                           t->name);
        if ((t->models = calloc(count, sizeof *t->models)) == NULL)
            return fail_at(ld, ms, "out of memory");
        for (size_t i = 0; i < count; i++) {
            const yaml_node_t *it =
                yaml_document_get_node(ld->doc, ms->data.sequence.items.start[i]);
            t->n_models++; /* before: config_free() releases a half-built list */
            if (tier_group(ld, it, "models", t->name, &t->models[i])) return -1;
            for (size_t j = 0; j < i; j++)
                if (strcmp(t->models[j], t->models[i]) == 0)
                    return fail_at(ld, it, "tier '%s': model group '%s' is listed twice", t->name,
                                   t->models[i]);
        }
    }
    const yaml_node_t *rt = get(ld, n, "route_to");
    if (rt && tier_group(ld, rt, "route_to", t->name, &t->route_to)) return -1;
    if (rt && t->n_models > 0 && !tier_allows_model(t, t->route_to))
        return fail_at(ld, rt, "tier '%s': route_to '%s' is not in its models list", t->name,
                       t->route_to);
    const yaml_node_t *mc = get(ld, n, "max_cost_usd");
    if (mc && tier_number(ld, mc, "max_cost_usd", 1e6, &t->max_cost_usd)) return -1;
    if (mc && t->max_cost_usd <= 0)
        return fail_at(ld, mc, "max_cost_usd must be above 0 (omit it for no ceiling)");
    const yaml_node_t *mm = get(ld, n, "min_margin");
    if (mm && tier_number(ld, mm, "min_margin (a share of revenue)", 1, &t->min_margin)) return -1;
    t->min_margin_set = mm != NULL;
    if (get_bool(ld, n, "default", &t->is_default) || get_bool(ld, n, "local_only", &t->local_only))
        return -1;
    for (size_t j = 0; t->is_default && j < idx; j++)
        if (ld->cfg->tiers[j].is_default)
            return fail_at(ld, get(ld, n, "default"),
                           "tier '%s' and tier '%s' both say default: true (at most one may)",
                           ld->cfg->tiers[j].name, t->name);
    if (get_long(ld, n, "rpm", &t->rpm, 1, 100000000) ||
        get_long(ld, n, "tpm", &t->tpm, 1, 1000000000000L))
        return -1;
    const yaml_node_t *bu = get(ld, n, "budget");
    return bu ? parse_tier_budget(ld, bu, t) : 0;
}

static int customer_conf_cmp(const void *a, const void *b)
{
    return strcmp(((const struct customer_conf *)a)->customer,
                  ((const struct customer_conf *)b)->customer);
}

/* `customers:` — a mapping of customer id to tier name, checked against `tiers:`. */
static int parse_customers(struct loader *ld, const yaml_node_t *n)
{
    struct config *cfg = ld->cfg;
    if (want_mapping(ld, n, "customers (customer: tier)")) return -1;
    size_t count = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
    if (count == 0) return 0;
    if ((cfg->customers = calloc(count, sizeof *cfg->customers)) == NULL)
        return fail_at(ld, n, "out of memory");
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        const yaml_node_t *kn = yaml_document_get_node(ld->doc, p->key),
                          *vn = yaml_document_get_node(ld->doc, p->value);
        const char *id = scalar(kn), *tier = scalar(vn);
        if (id == NULL || id[0] == '\0' || strlen(id) > 127 ||
            has_control(id, kn->data.scalar.length))
            return fail_at(ld, kn,
                           "customers: a customer id is 1-127 characters without control "
                           "characters");
        for (size_t j = 0; j < cfg->n_customers; j++)
            if (strcmp(cfg->customers[j].customer, id) == 0)
                return fail_at(ld, kn, "customers: '%s' is listed twice", id);
        const struct tier_conf *t = config_find_tier(cfg, tier);
        if (t == NULL)
            return fail_at(ld, vn, "customers: '%s' names unknown tier '%s'", id,
                           tier ? tier : "(not a string)");
        struct customer_conf *c = &cfg->customers[cfg->n_customers++];
        c->tier = (size_t)(t - cfg->tiers);
        if ((c->customer = strdup(id)) == NULL) return fail_at(ld, kn, "out of memory");
    }
    qsort(cfg->customers, cfg->n_customers, sizeof *cfg->customers, customer_conf_cmp);
    return 0;
}

const struct tier_conf *config_customer_tier(const struct config *cfg, const char *customer)
{
    if (cfg == NULL || customer == NULL || cfg->n_customers == 0) return NULL;
    struct customer_conf probe = {.customer = (char *)customer};
    const struct customer_conf *c =
        bsearch(&probe, cfg->customers, cfg->n_customers, sizeof probe, customer_conf_cmp);
    return c ? &cfg->tiers[c->tier] : NULL;
}

bool tier_allows_model(const struct tier_conf *tier, const char *model)
{
    if (tier == NULL || tier->n_models == 0) return true;
    for (size_t i = 0; model && i < tier->n_models; i++)
        if (strcmp(tier->models[i], model) == 0) return true;
    return false;
}

/* The top-level sections, in the order of config.section_hash. The first eight are read
 * once at start (listeners, the store, keys and budgets live as long as the process); the
 * rest a reload replaces. */
static const char *const root_keys[] = {"listen",        "tls",       "shutdown_grace_ms",
                                        "log",           "limits",    "store",
                                        "auth",          "budgets",   "metrics",
                                        "observability", "cache",     "prices",
                                        "access",        "backends",  "models",
                                        "functions",     "guards",    "secrets",
                                        "tiers",         "customers", NULL};
#define RESTART_ONLY_SECTIONS 11
_Static_assert(sizeof root_keys / sizeof root_keys[0] - 1 == CONFIG_SECTIONS,
               "config.section_hash has a slot per top-level section");

/* FNV-1a over a node's kind and text, depth-first: two sections hash alike when their YAML
 * says the same thing (formatting and comments aside). */
static uint64_t node_hash(const yaml_document_t *doc, const yaml_node_t *n, uint64_t h, int depth)
{
    const unsigned char kind = (unsigned char)n->type;
    h = (h ^ kind) * 0x100000001b3ULL;
    if (depth > 64) return h;
    switch (n->type) {
    case YAML_SCALAR_NODE:
        for (size_t i = 0; i < n->data.scalar.length; i++)
            h = (h ^ n->data.scalar.value[i]) * 0x100000001b3ULL;
        h = (h ^ 0xff) * 0x100000001b3ULL; /* "ab","c" differs from "a","bc" */
        break;
    case YAML_SEQUENCE_NODE:
        for (yaml_node_item_t *i = n->data.sequence.items.start; i < n->data.sequence.items.top;
             i++)
            h = node_hash(doc, yaml_document_get_node((yaml_document_t *)doc, *i), h, depth + 1);
        break;
    case YAML_MAPPING_NODE:
        for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
             p++) {
            h = node_hash(doc, yaml_document_get_node((yaml_document_t *)doc, p->key), h,
                          depth + 1);
            h = node_hash(doc, yaml_document_get_node((yaml_document_t *)doc, p->value), h,
                          depth + 1);
        }
        break;
    default:
        break;
    }
    return h;
}

static void hash_sections(struct loader *ld, const yaml_node_t *root)
{
    for (size_t s = 0; s < CONFIG_SECTIONS; s++) {
        const yaml_node_t *n = get(ld, root, root_keys[s]);
        ld->cfg->section_hash[s] = n ? node_hash(ld->doc, n, 0xcbf29ce484222325ULL, 0) : 0;
    }
}

static const char *join_sections(const struct config *a, const struct config *b, size_t from,
                                 size_t to, char *buf, size_t size)
{
    size_t n = 0;
    buf[0] = '\0';
    for (size_t s = from; s < to && n < size; s++)
        if (a->section_hash[s] != b->section_hash[s])
            n += (size_t)snprintf(buf + n, size - n, "%s%s", n ? ", " : "", root_keys[s]);
    return buf;
}

const char *config_restart_sections(const struct config *running, const struct config *next,
                                    char *buf, size_t size)
{
    return join_sections(running, next, 0, RESTART_ONLY_SECTIONS, buf, size);
}

const char *config_reloaded_sections(const struct config *running, const struct config *next,
                                     char *buf, size_t size)
{
    return join_sections(running, next, RESTART_ONLY_SECTIONS, CONFIG_SECTIONS, buf, size);
}

void config_keep_running(struct config *next, const struct config *running)
{
    next->limits = running->limits;
    next->shutdown_grace_ms = running->shutdown_grace_ms;
    next->log_requests = running->log_requests;
}

static int parse_root(struct loader *ld, const yaml_node_t *root)
{
    const char *const *keys = root_keys;
    /* Planned sections: refused by name so that a planned block is never silently ignored. */
    static const char *const later[] = {"privacy", NULL};
    static const char *const log_keys[] = {"requests", NULL};
    struct config *cfg = ld->cfg;
    if (root == NULL || is_null(root)) return 0; /* an empty file: all defaults */
    if (want_mapping(ld, root, "the configuration")) return -1;
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
         p++) {
        const yaml_node_t *kn = yaml_document_get_node(ld->doc, p->key);
        for (const char *const *k = later; scalar(kn) && *k; k++)
            if (strcmp(scalar(kn), *k) == 0)
                return fail_at(ld, kn, "'%s' is not supported by this build", *k);
    }
    if (check_keys(ld, root, keys, "the configuration")) return -1;
    hash_sections(ld, root);

    /* secrets first: every reference below is resolved with its settings. */
    const yaml_node_t *se = get_section(ld, root, "secrets");
    if (se && parse_secrets(ld, se, &cfg->secrets)) return -1;
    /* tls before listen: whether a listener speaks TLS by default depends on it. */
    const yaml_node_t *tl = get_section(ld, root, "tls");
    if (tl && parse_tls(ld, tl)) return -1;
    const yaml_node_t *l = get_section(ld, root, "listen");
    if (l && parse_listen(ld, l)) return -1;
    if (l == NULL) cfg->listeners[0].tls = cfg->tls.cert != NULL; /* the default listener */
    bool any_tls = false;
    for (size_t i = 0; i < cfg->n_listeners; i++) any_tls |= cfg->listeners[i].tls;
    if (tl && !any_tls)
        return fail_at(ld, tl, "tls: no listener uses it (every listen entry says tls: false)");
    char *first = strdup(cfg->listeners[0].host);
    if (first == NULL) return fail_at(ld, root, "out of memory");
    free(cfg->listen_host);
    cfg->listen_host = first;
    cfg->listen_port = cfg->listeners[0].port;
    if (get_long(ld, root, "shutdown_grace_ms", &cfg->shutdown_grace_ms, 0, MS_MAX)) return -1;
    const yaml_node_t *lg = get_section(ld, root, "log");
    if (lg && (want_mapping(ld, lg, "log") || check_keys(ld, lg, log_keys, "log") ||
               get_bool(ld, lg, "requests", &cfg->log_requests)))
        return -1;
    if (get_string(ld, root, "prices", &cfg->prices_path, false, "the configuration")) return -1;
    const yaml_node_t *st = get_section(ld, root, "store");
    if (st && parse_store(ld, st, &cfg->store)) return -1;
    const yaml_node_t *au = get(ld, root, "auth");
    if (au && parse_auth(ld, au, &cfg->auth)) return -1;
    const yaml_node_t *ca = get(ld, root, "cache");
    if (ca && parse_cache(ld, ca, &cfg->cache)) return -1;
    const yaml_node_t *me = get_section(ld, root, "metrics");
    if (me && parse_metrics(ld, me, &cfg->metrics)) return -1;
    const yaml_node_t *ob = get_section(ld, root, "observability");
    if (ob && parse_observability(ld, ob, &cfg->observability)) return -1;
    const yaml_node_t *ac = get_section(ld, root, "access");
    if (ac && parse_access(ld, ac, &cfg->access)) return -1;
    const yaml_node_t *bu = get_section(ld, root, "budgets");
    if (bu && parse_sequence(ld, bu, "budgets", sizeof *cfg->budgets, (void **)&cfg->budgets,
                             &cfg->n_budgets, each_budget))
        return -1;
    const yaml_node_t *lim = get_section(ld, root, "limits");
    if (lim && parse_limits(ld, lim, &cfg->limits)) return -1;
    /* Backends first, whatever the key order: targets refer to them by name. */
    const yaml_node_t *bs = get_section(ld, root, "backends");
    if (bs && parse_sequence(ld, bs, "backends", sizeof *cfg->backends, (void **)&cfg->backends,
                             &cfg->n_backends, each_backend))
        return -1;
    const yaml_node_t *ms = get_section(ld, root, "models");
    if (ms && parse_sequence(ld, ms, "models", sizeof *cfg->models, (void **)&cfg->models,
                             &cfg->n_models, each_model))
        return -1;
    const yaml_node_t *gu = get_section(ld, root, "guards");
    if (gu && parse_guards(ld, gu, &cfg->guards)) return -1;
    const yaml_node_t *fs = get_section(ld, root, "functions"); /* after models: they name one */
    if (fs && parse_sequence(ld, fs, "functions", sizeof *cfg->functions, (void **)&cfg->functions,
                             &cfg->n_functions, each_function))
        return -1;
    const yaml_node_t *ti = get_section(ld, root, "tiers"); /* after models: they name them */
    if (ti && parse_sequence(ld, ti, "tiers", sizeof *cfg->tiers, (void **)&cfg->tiers,
                             &cfg->n_tiers, each_tier))
        return -1;
    const yaml_node_t *cu = get_section(ld, root, "customers"); /* after tiers: names them */
    if (cu && parse_customers(ld, cu)) return -1;
    return 0;
}

static struct config *config_defaults(const char *name)
{
    struct config *cfg = calloc(1, sizeof *cfg);
    if (cfg == NULL) return NULL;
    cfg->path = strdup(name);
    cfg->listen_host = strdup("127.0.0.1");
    cfg->listen_port = 8080;
    cfg->listeners = calloc(1, sizeof *cfg->listeners);
    if (cfg->listeners) {
        cfg->n_listeners = 1;
        cfg->listeners[0] = (struct listen_conf){.host = strdup("127.0.0.1"), .port = 8080};
    }
    cfg->shutdown_grace_ms = 10000;
    cfg->log_requests = true;
    cfg->store.queue_size = 10000;
    cfg->store.batch_size = 256;
    cfg->store.flush_ms = 5;
    cfg->store.rows_days = 30;
    cfg->store.rollups_days = 800;
    cfg->store.retention_every_s = 3600;
    cfg->auth.refresh_ms = 2000;
    secrets_sources_init(&cfg->secrets.sources);
    cfg->secrets.refresh_s = 300;
    cfg->metrics.max_customers = 20;
    cfg->metrics.enabled = true;
    cfg->cache = (struct cache_conf){
        .ttl_s = 300, .max_bytes = 64u << 20, .max_entry_bytes = 1u << 20, .redis = true};
    cfg->observability = (struct observability_conf){
        .queue_size = 2048, .batch_size = 256, .flush_ms = 1000, .sample = 1.0};
    cfg->limits = (struct limits_conf){
        .max_body_bytes = 10u << 20,
        .max_header_bytes = 64u << 10,
        .header_timeout_ms = 10000,
        .body_timeout_ms = 30000,
        .idle_timeout_ms = 60000,
        .max_connections = 10000,
        .max_response_bytes = 64u << 20,
        .max_buffered_bytes = 256u << 20,
    };
    if (cfg->path == NULL || cfg->listen_host == NULL || cfg->listeners == NULL ||
        cfg->listeners[0].host == NULL) {
        config_free(cfg);
        return NULL;
    }
    return cfg;
}

/* Fills `error` from a libyaml failure. Reader errors (bad UTF-8, NUL bytes) carry a byte
 * offset instead of a mark, so the line and column are computed from the input. */
static void syntax_error(const yaml_parser_t *parser, const char *yaml, size_t len,
                         struct config_error *error)
{
    if (parser->error == YAML_MEMORY_ERROR) {
        snprintf(error->msg, sizeof error->msg, "out of memory");
        return;
    }
    if (parser->error == YAML_READER_ERROR) {
        size_t off = parser->problem_offset < len ? parser->problem_offset : len;
        error->line = 1;
        error->col = 1;
        for (size_t i = 0; i < off; i++) {
            if (yaml[i] == '\n') {
                error->line++;
                error->col = 1;
            } else {
                error->col++;
            }
        }
        snprintf(error->msg, sizeof error->msg, "YAML syntax error: %s",
                 parser->problem ? parser->problem : "cannot read the input");
        return;
    }
    error->line = (int)parser->problem_mark.line + 1;
    error->col = (int)parser->problem_mark.column + 1;
    snprintf(error->msg, sizeof error->msg, "YAML syntax error: %s%s%s",
             parser->problem ? parser->problem : "invalid document", parser->context ? " " : "",
             parser->context ? parser->context : "");
}

/* The catalogue: `prices:` (relative to the config file's directory), else prices.yaml next
 * to the config when it exists. Then every target without a `price:` gets the catalogue's,
 * or its local backend's TCO; anything else stays unknown (and app.c warns). Without a file,
 * the catalogue compiled into the binary. */
static int resolve_prices(struct loader *ld, const yaml_node_t *root)
{
    struct config *cfg = ld->cfg;
    char dir[1024], path[2048], why[600];
    snprintf(dir, sizeof dir, "%s", cfg->path);
    const char *d = dirname(dir);
    bool explicit = cfg->prices_path != NULL;
    if ((cfg->store.base_dir = strdup(d)) == NULL ||
        (cfg->store.url == NULL && (cfg->store.url = strdup("sqlite://stratus.db")) == NULL))
        return fail_at(ld, NULL, "out of memory");
    if (explicit && cfg->prices_path[0] == '/')
        snprintf(path, sizeof path, "%s", cfg->prices_path);
    else
        snprintf(path, sizeof path, "%s/%s", d, explicit ? cfg->prices_path : "prices.yaml");
    if (explicit || access(path, R_OK) == 0) {
        cfg->prices = prices_load(path, why, sizeof why);
        if (cfg->prices == NULL) {
            const yaml_node_t *at = root ? get(ld, root, "prices") : NULL;
            return fail_at(ld, at, "prices: %s", why);
        }
    } else {
        /* No file next to the config: the catalogue this binary was built with. */
        snprintf(path, sizeof path, "(built-in)");
        cfg->prices = prices_load_string(prices_builtin, prices_builtin_len, path, why, sizeof why);
        if (cfg->prices == NULL) return fail_at(ld, NULL, "built-in price catalogue: %s", why);
    }
    free(cfg->prices_path);
    if ((cfg->prices_path = strdup(path)) == NULL) return fail_at(ld, NULL, "out of memory");
    for (size_t i = 0; i < cfg->n_models; i++)
        for (size_t j = 0; j < cfg->models[i].n_targets; j++) {
            struct target_conf *t = &cfg->models[i].targets[j];
            const struct backend_conf *b = &cfg->backends[t->backend_index];
            if (t->price.set) continue;
            if (b->tco.set) {
                t->price.source = PRICE_LOCAL_TCO;
                continue;
            }
            const struct model_price *mp = prices_lookup(cfg->prices, t->model);
            if (mp == NULL) continue;
            t->price = (struct price){.set = true,
                                      .source = PRICE_CATALOGUE,
                                      .input = mp->input,
                                      .output = mp->output,
                                      .cached_input = mp->cached_input};
        }
    return 0;
}

static struct config *load_string(const char *yaml, size_t len, const char *name, bool offline,
                                  struct config_error *error)
{
    struct config_error scratch;
    struct config *cfg = NULL;
    yaml_parser_t parser;
    yaml_document_t doc, extra;
    bool parser_ok = false, doc_ok = false, extra_ok = false;
    if (error == NULL) error = &scratch;
    struct loader ld = {.doc = &doc, .error = error, .offline = offline};
    if (name == NULL) name = "<string>";
    memset(error, 0, sizeof *error);
    snprintf(error->file, sizeof error->file, "%s", name);

    if ((cfg = config_defaults(name)) == NULL) {
        snprintf(error->msg, sizeof error->msg, "out of memory");
        goto fail;
    }
    if (!(parser_ok = yaml_parser_initialize(&parser))) {
        snprintf(error->msg, sizeof error->msg, "cannot initialise the YAML parser");
        goto fail;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)(yaml ? yaml : ""),
                                 yaml ? len : 0);
    if (!(doc_ok = yaml_parser_load(&parser, &doc))) {
        syntax_error(&parser, yaml, yaml ? len : 0, error);
        goto fail;
    }
    ld.cfg = cfg;
    if (parse_root(&ld, yaml_document_get_root_node(&doc)) != 0) goto fail;
    if (resolve_prices(&ld, yaml_document_get_root_node(&doc)) != 0) goto fail;
    /* A second document would be silently ignored by the loader; refuse it instead. */
    if (!(extra_ok = yaml_parser_load(&parser, &extra))) {
        syntax_error(&parser, yaml, yaml ? len : 0, error);
        goto fail;
    }
    if (yaml_document_get_root_node(&extra) != NULL) {
        error->line = (int)extra.start_mark.line + 1;
        error->col = (int)extra.start_mark.column + 1;
        snprintf(error->msg, sizeof error->msg, "only one YAML document is allowed");
        goto fail;
    }
    if ((cfg->text = malloc(len + 1)) == NULL) {
        snprintf(error->msg, sizeof error->msg, "out of memory");
        goto fail;
    }
    memcpy(cfg->text, yaml ? yaml : "", yaml ? len : 0);
    cfg->text[yaml ? len : 0] = '\0';
    cfg->text_len = yaml ? len : 0;
    goto out;
fail:
    config_free(cfg);
    cfg = NULL;
out:
    if (extra_ok) yaml_document_delete(&extra);
    if (doc_ok) yaml_document_delete(&doc);
    if (parser_ok) yaml_parser_delete(&parser);
    return cfg;
}

struct config *config_load_string(const char *yaml, size_t len, const char *name,
                                  struct config_error *error)
{
    return load_string(yaml, len, name, false, error);
}

static struct config *load_file(const char *path, bool offline, struct config_error *error)
{
    struct config_error scratch;
    struct config *cfg = NULL;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    FILE *f = NULL;
    if (error == NULL) error = &scratch;
    memset(error, 0, sizeof *error);
    snprintf(error->file, sizeof error->file, "%s", path ? path : "");
    if (path == NULL || (f = fopen(path, "rb")) == NULL) {
        snprintf(error->msg, sizeof error->msg, "cannot open: %s",
                 path ? strerror(errno) : "no path");
        goto out;
    }
    for (;;) {
        if (len == cap) {
            cap = cap ? cap * 2 : 8192;
            char *nb = realloc(buf, cap);
            if (nb == NULL) {
                snprintf(error->msg, sizeof error->msg, "out of memory");
                goto out;
            }
            buf = nb;
        }
        size_t r = fread(buf + len, 1, cap - len, f);
        len += r;
        if (len > CONFIG_MAX) {
            snprintf(error->msg, sizeof error->msg, "file is larger than %u MiB", CONFIG_MAX >> 20);
            goto out;
        }
        if (r == 0) break;
    }
    if (ferror(f)) {
        snprintf(error->msg, sizeof error->msg, "cannot read: %s", strerror(errno));
        goto out;
    }
    cfg = load_string(buf ? buf : "", len, path, offline, error);
out:
    if (f) fclose(f);
    free(buf);
    return cfg;
}

struct config *config_load(const char *path, struct config_error *error)
{
    return load_file(path, false, error);
}

struct config *config_load_offline(const char *path, struct config_error *error)
{
    return load_file(path, true, error);
}

void config_each_secret(const struct config *cfg,
                        void (*fn)(const struct secret *s, const char *what, void *ud), void *ud)
{
    char what[300];
    for (size_t i = 0; i < cfg->n_backends; i++) {
        const struct backend_conf *b = &cfg->backends[i];
        const struct secret *list[] = {&b->api_key, &b->aws_access_key_id,
                                       &b->aws_secret_access_key, &b->aws_session_token};
        const char *names[] = {"api_key", "aws_access_key_id", "aws_secret_access_key",
                               "aws_session_token"};
        for (size_t k = 0; k < 4; k++) {
            if (list[k]->ref == NULL) continue;
            snprintf(what, sizeof what, "backends[%s].%s", b->name, names[k]);
            fn(list[k], what, ud);
        }
    }
    if (cfg->auth.master_key.ref) fn(&cfg->auth.master_key, "auth.master_key", ud);
    if (cfg->store.password.ref) fn(&cfg->store.password, "store.password", ud);
    if (cfg->store.redis_password.ref) fn(&cfg->store.redis_password, "store.redis_password", ud);
    for (size_t i = 0; i < cfg->observability.n_headers; i++) {
        const struct otlp_header *h = &cfg->observability.headers[i];
        if (h->value.ref == NULL) continue;
        snprintf(what, sizeof what, "observability.headers.%s", h->name);
        fn(&h->value, what, ud);
    }
}

static void digest_one(const struct secret *s, const char *what, void *ud)
{
    EVP_MD_CTX *md = ud;
    EVP_DigestUpdate(md, what, strlen(what) + 1);
    EVP_DigestUpdate(md, s->ref, strlen(s->ref) + 1);
    if (s->value) EVP_DigestUpdate(md, s->value, strlen(s->value) + 1);
}

void config_secrets_digest(const struct config *cfg, unsigned char out[32])
{
    memset(out, 0, 32);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(md);
        return;
    }
    config_each_secret(cfg, digest_one, md);
    unsigned int n = 32;
    EVP_DigestFinal_ex(md, out, &n);
    EVP_MD_CTX_free(md);
}

const char *config_error_format(const struct config_error *error, char *buf, size_t size)
{
    if (buf == NULL || size == 0) return buf;
    if (error->line > 0)
        snprintf(buf, size, "%s:%d:%d: %s", error->file, error->line, error->col, error->msg);
    else
        snprintf(buf, size, "%s: %s", error->file, error->msg);
    return buf;
}

const struct model_conf *config_find_model(const struct config *cfg, const char *name)
{
    if (cfg == NULL || name == NULL) return NULL;
    for (size_t i = 0; i < cfg->n_models; i++)
        if (strcmp(cfg->models[i].name, name) == 0) return &cfg->models[i];
    return NULL;
}

const struct function_conf *config_find_function(const struct config *cfg, const char *name)
{
    if (cfg == NULL || name == NULL) return NULL;
    for (size_t i = 0; i < cfg->n_functions; i++)
        if (strcmp(cfg->functions[i].name, name) == 0) return &cfg->functions[i];
    return NULL;
}

const struct tier_conf *config_find_tier(const struct config *cfg, const char *name)
{
    if (cfg == NULL || name == NULL || name[0] == '\0') return NULL;
    for (size_t i = 0; i < cfg->n_tiers; i++)
        if (strcmp(cfg->tiers[i].name, name) == 0) return &cfg->tiers[i];
    return NULL;
}

const struct tier_conf *config_default_tier(const struct config *cfg)
{
    for (size_t i = 0; cfg && i < cfg->n_tiers; i++)
        if (cfg->tiers[i].is_default) return &cfg->tiers[i];
    return NULL;
}

static void secret_free(struct secret *s)
{
    if (s->value) explicit_bzero(s->value, strlen(s->value));
    free(s->value);
    free(s->ref);
}

void config_free(struct config *cfg)
{
    if (cfg == NULL) return;
    secrets_sources_clear(&cfg->secrets.sources);
    free(cfg->text);
    free(cfg->access.allow);
    free(cfg->access.trust_proxy);
    for (size_t i = 0; i < cfg->n_backends; i++) {
        struct backend_conf *b = &cfg->backends[i];
        free(b->name);
        free(b->base_url);
        free(b->model_path);
        free(b->tls_ca);
        free(b->anthropic_version);
        free(b->region);
        free(b->aws_profile);
        secret_free(&b->api_key);
        secret_free(&b->aws_access_key_id);
        secret_free(&b->aws_secret_access_key);
        secret_free(&b->aws_session_token);
    }
    free(cfg->backends);
    for (size_t i = 0; i < cfg->n_models; i++) {
        struct model_conf *m = &cfg->models[i];
        for (size_t j = 0; j < m->n_targets; j++) {
            free(m->targets[j].backend);
            free(m->targets[j].model);
        }
        free(m->targets);
        free(m->name);
    }
    free(cfg->models);
    for (size_t i = 0; i < cfg->n_functions; i++) {
        struct function_conf *f = &cfg->functions[i];
        for (size_t j = 0; j < f->n_labels; j++) free(f->labels[j]);
        free(f->labels);
        free(f->name);
        free(f->model);
        free(f->system);
        free(f->template);
        free(f->schema);
    }
    free(cfg->functions);
    for (size_t i = 0; i < cfg->guards.n_deny; i++) {
        free(cfg->guards.deny[i].name);
        free(cfg->guards.deny[i].pattern);
        pcre2_code_free(cfg->guards.deny[i].code);
    }
    free(cfg->guards.deny);
    for (size_t i = 0; i < cfg->n_tiers; i++) {
        struct tier_conf *t = &cfg->tiers[i];
        for (size_t j = 0; j < t->n_models; j++) free(t->models[j]);
        free(t->models);
        free(t->name);
        free(t->route_to);
    }
    free(cfg->tiers);
    for (size_t i = 0; i < cfg->n_customers; i++) free(cfg->customers[i].customer);
    free(cfg->customers);
    for (size_t i = 0; i < cfg->n_budgets; i++) free(cfg->budgets[i].name);
    free(cfg->budgets);
    secret_free(&cfg->auth.master_key);
    for (size_t i = 0; i < cfg->observability.n_headers; i++) {
        free(cfg->observability.headers[i].name);
        secret_free(&cfg->observability.headers[i].value);
    }
    free(cfg->observability.headers);
    free(cfg->observability.otlp_endpoint);
    free(cfg->observability.service_name);
    free(cfg->store.url);
    free(cfg->store.redis);
    secret_free(&cfg->store.password);
    secret_free(&cfg->store.redis_password);
    free(cfg->store.base_dir);
    prices_free(cfg->prices);
    free(cfg->prices_path);
    free(cfg->listen_host);
    for (size_t i = 0; i < cfg->n_listeners; i++) free(cfg->listeners[i].host);
    free(cfg->listeners);
    free(cfg->tls.cert);
    free(cfg->tls.key);
    free(cfg->path);
    free(cfg);
}
