/*
 * DESIGN: an entry is one JSON document — where the answer came from, its usage and cost,
 * when it was made, and either the whole body or the stream's chunks with their usage
 * markers — so the in-process LRU and Redis hold the same bytes and a hit from either is
 * decoded the same way. A lookup that finds it only in Redis also fills the in-process
 * cache. Keys are hex SHA-256 (OpenSSL); the body is normalised with jansson (sorted keys,
 * compact), which costs a parse of a cacheable request only.
 */
#include "api/cache.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "guard/guard.h"
#include "guard/shared.h"
#include "http/request.h"
#include "store/cache.h"
#include "util/arena.h"
#include "util/clock.h"

struct response_cache {
    struct lru_cache *lru;
    struct shared *redis; /* borrowed; NULL: in process only */
    long ttl_s;
    size_t max_entry_bytes;
    enum cache_when when;
    enum cache_scope scope;
    struct response_cache_stats stats;
};

struct cache_ticket {
    struct response_cache *cache;
    uint8_t key[CACHE_KEY_SIZE];
    char redis_key[16 + 2 * CACHE_KEY_SIZE + 1];
    long ttl_s;
    bool stream;
    struct arena *arena;
    /* the lookup */
    struct shared_get *pending;
    cache_found_cb found;
    void *ud;
    /* the fill: [json, usage_at, usage_only, usage_empty] per chunk */
    json_t *chunks;
    size_t collected;
    bool abandoned;
};

struct response_cache *response_cache_new(const struct cache_conf *conf, struct shared *redis)
{
    struct response_cache *c = calloc(1, sizeof *c);
    if (c == NULL) return NULL;
    if ((c->lru = lru_cache_new(conf->max_bytes)) == NULL) {
        free(c);
        return NULL;
    }
    c->redis = conf->redis ? redis : NULL;
    c->ttl_s = conf->ttl_s;
    c->max_entry_bytes = conf->max_entry_bytes;
    c->when = conf->when;
    c->scope = conf->scope;
    return c;
}

void response_cache_free(struct response_cache *c)
{
    if (c == NULL) return;
    lru_cache_free(c->lru);
    free(c);
}

/* ---- which requests, under which key ------------------------------------------------- */

static bool asked_to_bypass(const struct http_request *req)
{
    const char *h = http_request_header(req, "x-stratus-cache");
    if (h && strcasecmp(h, "bypass") == 0) return true;
    const char *cc = http_request_header(req, "cache-control");
    return cc && (strcasestr(cc, "no-cache") || strcasestr(cc, "no-store"));
}

/* Sampling at temperature 0, or a seed: the same request gives the same answer. */
static bool deterministic(const struct openai_request *r)
{
    if (r->endpoint == OPENAI_EMBEDDINGS) return true;
    const struct json_scan *s = &r->scan;
    if (json_scan_get(s, 0, "seed") >= 0) return true;
    double t = 1;
    return json_scan_number(s, json_scan_get(s, 0, "temperature"), &t) && t == 0;
}

static void release_chunks(void *ud)
{
    struct cache_ticket *t = ud;
    json_decref(t->chunks);
    t->chunks = NULL;
}

/* SHA-256 over what decides the answer (see cache.h). @return 0, or -1 (unparsable, OOM). */
static int make_key(const struct response_cache *c, const struct model_conf *model,
                    const struct openai_request *r, const struct principal *who,
                    uint8_t out[CACHE_KEY_SIZE])
{
    json_t *doc = json_loadb(r->scan.js, r->scan.len, 0, NULL);
    if (!json_is_object(doc)) {
        json_decref(doc);
        return -1;
    }
    json_object_del(doc, "stream");
    json_object_del(doc, "stream_options");
    json_object_del(doc, "user");
    char *canonical = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    json_decref(doc);
    if (canonical == NULL) return -1;
    const char *scope = "";
    if (who && who->kind == PRINCIPAL_KEY)
        scope = c->scope == CACHE_PER_KEY    ? who->key.id
                : c->scope == CACHE_PER_TEAM ? who->key.team
                                             : "";
    char head[512];
    int n = snprintf(head, sizeof head, "stratus-cache/1\n%s\n%s\n%d\n%s\n", model->name,
                     openai_endpoint_path(r->endpoint), r->stream ? 1 : 0, scope);
    unsigned int len = 0;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) &&
             EVP_DigestUpdate(md, head, (size_t)n) &&
             EVP_DigestUpdate(md, canonical, strlen(canonical)) &&
             EVP_DigestFinal_ex(md, out, &len) && len == CACHE_KEY_SIZE;
    EVP_MD_CTX_free(md);
    free(canonical);
    return ok ? 0 : -1;
}

enum cache_verdict cache_consider(struct response_cache *c, const struct config *cfg,
                                  const struct model_conf *model, const struct openai_request *r,
                                  const struct http_request *req, const struct principal *who,
                                  struct arena *arena, struct cache_ticket **ticket)
{
    (void)cfg;
    *ticket = NULL;
    if (c == NULL || model->cache.off) return CACHE_NOT_CACHEABLE;
    enum cache_when when = model->cache.when_set ? model->cache.when : c->when;
    if (when == CACHE_DETERMINISTIC && !deterministic(r)) return CACHE_NOT_CACHEABLE;
    if (asked_to_bypass(req)) {
        c->stats.bypasses++;
        return CACHE_BYPASS;
    }
    struct cache_ticket *t = arena_calloc(arena, 1, sizeof *t);
    if (t == NULL || make_key(c, model, r, who, t->key) != 0) return CACHE_NOT_CACHEABLE;
    memcpy(t->redis_key, "stratus:cache:", 14);
    for (int i = 0; i < CACHE_KEY_SIZE; i++)
        snprintf(t->redis_key + 14 + 2 * i, 3, "%02x", t->key[i]);
    t->cache = c;
    t->arena = arena;
    t->ttl_s = model->cache.ttl_s > 0 ? model->cache.ttl_s : c->ttl_s;
    t->stream = r->stream;
    if ((t->chunks = json_array()) == NULL || arena_on_free(arena, release_chunks, t) != 0) {
        json_decref(t->chunks);
        return CACHE_NOT_CACHEABLE;
    }
    *ticket = t;
    return CACHE_LOOK;
}

/* ---- entries --------------------------------------------------------------------------- */

static const char *arena_str(struct arena *a, json_t *v)
{
    return json_is_string(v) ? arena_strndup(a, json_string_value(v), json_string_length(v)) : NULL;
}

/* An entry's bytes → a replayable answer in `arena`. @return false when they do not decode. */
static bool decode(const char *bytes, size_t len, bool shared, struct arena *arena,
                   struct call_replay_answer *a)
{
    json_t *doc = json_loadb(bytes, len, 0, NULL);
    json_t *usage = json_object_get(doc, "usage"), *chunks = json_object_get(doc, "chunks");
    json_t *body = json_object_get(doc, "body");
    bool ok = json_is_object(doc) && json_is_array(usage) &&
              (json_is_string(body) || json_is_array(chunks));
    if (ok) {
        memset(a, 0, sizeof *a);
        a->backend = arena_str(arena, json_object_get(doc, "backend"));
        a->target_model = arena_str(arena, json_object_get(doc, "target_model"));
        a->usage = (struct usage){.prompt = json_integer_value(json_array_get(usage, 0)),
                                  .completion = json_integer_value(json_array_get(usage, 1)),
                                  .cached = json_integer_value(json_array_get(usage, 2))};
        a->saved_usd = json_real_value(json_object_get(doc, "cost_usd"));
        long long age_s =
            (clock_wall_ms() - json_integer_value(json_object_get(doc, "made_ms"))) / 1000;
        a->reason =
            arena_printf(arena, "cache hit%s, made %lld s ago by %s", shared ? " (shared)" : "",
                         age_s > 0 ? age_s : 0, a->backend ? a->backend : "?");
        if (json_is_string(body)) {
            a->body = arena_str(arena, body);
            a->body_len = json_string_length(body);
            ok = a->body != NULL;
        } else {
            size_t n = json_array_size(chunks);
            struct call_chunk *ch = arena_calloc(arena, n ? n : 1, sizeof *ch);
            ok = ch != NULL;
            for (size_t i = 0; ok && i < n; i++) {
                json_t *e = json_array_get(chunks, i), *j = json_array_get(e, 0);
                ch[i] = (struct call_chunk){
                    .json = arena_str(arena, j),
                    .len = json_string_length(j),
                    .usage_at = (size_t)json_integer_value(json_array_get(e, 1)),
                    .usage_only = json_is_true(json_array_get(e, 2)),
                    .usage_empty = json_is_true(json_array_get(e, 3)),
                };
                ok = ch[i].json != NULL && ch[i].usage_at <= ch[i].len;
            }
            a->chunks = ch;
            a->n_chunks = n;
        }
        ok = ok && a->backend && a->target_model;
    }
    json_decref(doc);
    return ok;
}

static int64_t expires(const struct cache_ticket *t)
{
    return clock_wall_ms() + (int64_t)t->ttl_s * 1000;
}

static void on_shared(const char *value, size_t len, void *ud)
{
    struct cache_ticket *t = ud;
    t->pending = NULL;
    struct call_replay_answer a;
    if (value && decode(value, len, true, t->arena, &a)) {
        t->cache->stats.hits++;
        t->cache->stats.shared_hits++;
        /* Kept here too, for the rest of its life in Redis (near enough: the TTL again). */
        lru_cache_put(t->cache->lru, t->key, value, len, expires(t));
        t->found(t->ud, &a);
        return;
    }
    t->cache->stats.misses++;
    t->found(t->ud, NULL);
}

void cache_lookup(struct response_cache *c, struct cache_ticket *t, cache_found_cb found, void *ud)
{
    t->found = found;
    t->ud = ud;
    const void *bytes;
    size_t len;
    struct call_replay_answer a;
    if (lru_cache_get(c->lru, t->key, clock_wall_ms(), t->arena, &bytes, &len) &&
        decode(bytes, len, false, t->arena, &a)) {
        c->stats.hits++;
        found(ud, &a);
        return;
    }
    if (c->redis && (t->pending = shared_get(c->redis, t->redis_key, on_shared, t)) != NULL) return;
    c->stats.misses++;
    found(ud, NULL);
}

void cache_cancel(struct cache_ticket *t)
{
    if (t && t->pending) {
        shared_get_cancel(t->pending);
        t->pending = NULL;
    }
}

void cache_collect_chunk(struct cache_ticket *t, const struct call_chunk *ch)
{
    if (t->abandoned) return;
    t->collected += ch->len + 16;
    json_t *e = json_pack("[s#, I, b, b]", ch->json, (int)ch->len, (json_int_t)ch->usage_at,
                          ch->usage_only, ch->usage_empty);
    if (e == NULL || t->collected > t->cache->max_entry_bytes ||
        json_array_append_new(t->chunks, e) != 0)
        t->abandoned = true; /* too large to keep, or out of memory: this answer is not kept */
}

void cache_abandon(struct cache_ticket *t)
{
    t->abandoned = true;
}

void cache_store(struct response_cache *c, struct cache_ticket *t, const struct call_info *in,
                 const char *body, size_t body_len)
{
    if (t->abandoned || in->cached || in->native || in->backend == NULL) return;
    if (body && body_len > c->max_entry_bytes) return;
    json_t *doc =
        json_pack("{s:i, s:s, s:s?, s:[I, I, I], s:f, s:I}", "v", 1, "backend", in->backend,
                  "target_model", in->target_model, "usage", (json_int_t)in->usage.prompt,
                  (json_int_t)in->usage.completion, (json_int_t)in->usage.cached, "cost_usd",
                  in->cost_known ? in->cost_usd : 0.0, "made_ms", (json_int_t)clock_wall_ms());
    if (doc == NULL) return;
    if (body)
        json_object_set_new(doc, "body", json_stringn(body, body_len));
    else
        json_object_set(doc, "chunks", t->chunks);
    char *bytes = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (bytes == NULL) return;
    size_t len = strlen(bytes);
    if (len <= c->max_entry_bytes) {
        if (lru_cache_put(c->lru, t->key, bytes, len, expires(t))) c->stats.stored++;
        if (c->redis) shared_set(c->redis, t->redis_key, bytes, len, t->ttl_s * 1000);
    }
    free(bytes);
}

void response_cache_stats(const struct response_cache *c, struct response_cache_stats *out)
{
    *out = c->stats;
    struct lru_cache_stats s;
    lru_cache_stats(c->lru, &s);
    out->entries = s.entries;
    out->bytes = s.bytes;
    out->max_bytes = s.max_bytes;
    out->evictions = s.evictions;
}
