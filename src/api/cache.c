/*
 * DESIGN: a hit must cost less than the proxied request it replaces, so neither the key nor
 * the entry goes through a JSON library (jansson spent ~240 instructions per byte of body
 * here, more than the whole proxied path). The key hashes the request's top-level members
 * from the tokens the request parser already made: sorted by name, volatile ones left out,
 * each value's text with the whitespace between tokens removed. Nested members keep the
 * client's order — a client that sends the same request the same way hits; one that
 * reorders nested keys misses, never gets a wrong answer.
 *
 * An entry is one binary record (entry_encode/entry_decode): where the answer came from,
 * usage, cost, when it was made, then the whole body or the stream's chunks with their
 * usage markers. The in-process LRU and Redis hold the same bytes; a hit decodes by
 * pointing into its copy. A lookup that finds it only in Redis also fills the in-process
 * cache.
 */
#include "api/cache.h"

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
    /* the fill: chunks as encoded records (entry format), appended as they come */
    char *chunks;
    size_t chunks_len, chunks_cap;
    uint32_t n_chunks;
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
    free(t->chunks);
    t->chunks = NULL;
}

/* Feeds `text` to the digest without the whitespace between tokens (strings kept whole). */
static int digest_compact(EVP_MD_CTX *md, const char *text, size_t len)
{
    size_t run = 0;
    bool in_string = false;
    for (size_t i = 0; i < len; i++) {
        char ch = text[i];
        if (in_string) {
            if (ch == '\\')
                i++;
            else if (ch == '"')
                in_string = false;
            continue;
        }
        if (ch == '"') {
            in_string = true;
        } else if (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r') {
            if (i > run && !EVP_DigestUpdate(md, text + run, i - run)) return -1;
            run = i + 1;
        }
    }
    return len > run && !EVP_DigestUpdate(md, text + run, len - run) ? -1 : 0;
}

struct member {
    const char *key, *value;
    size_t key_len, value_len;
};

static int by_key(const void *a, const void *b)
{
    const struct member *x = a, *y = b;
    size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
    int c = memcmp(x->key, y->key, n);
    return c ? c : (x->key_len > y->key_len) - (x->key_len < y->key_len);
}

static bool volatile_member(const char *key, size_t len)
{
    return (len == 6 && memcmp(key, "stream", 6) == 0) ||
           (len == 14 && memcmp(key, "stream_options", 14) == 0) ||
           (len == 4 && memcmp(key, "user", 4) == 0);
}

/* SHA-256 over what decides the answer (see cache.h and DESIGN). @return 0, or -1. */
static int make_key(const struct response_cache *c, const struct model_conf *model,
                    const struct openai_request *r, const struct principal *who,
                    struct arena *arena, uint8_t out[CACHE_KEY_SIZE])
{
    const struct json_scan *s = &r->scan;
    if (s->n < 1 || s->tok[0].type != JSMN_OBJECT) return -1;
    size_t n = (size_t)s->tok[0].size;
    struct member *m = arena_alloc(arena, (n ? n : 1) * sizeof *m);
    if (m == NULL) return -1;
    size_t kept = 0;
    for (int i = 1, k = 0; k < s->tok[0].size && i < s->n; k++) {
        const jsmntok_t *key = &s->tok[i], *val = &s->tok[i + 1];
        const char *name = s->js + key->start;
        size_t name_len = (size_t)(key->end - key->start);
        if (!volatile_member(name, name_len)) {
            /* A string value's token excludes its quotes: take them, "a" and a differ. */
            int start = val->type == JSMN_STRING ? val->start - 1 : val->start;
            int end = val->type == JSMN_STRING ? val->end + 1 : val->end;
            m[kept++] = (struct member){name, s->js + start, name_len, (size_t)(end - start)};
        }
        i = json_scan_skip(s, i + 1);
    }
    qsort(m, kept, sizeof *m, by_key);
    const char *scope = "";
    if (who && who->kind == PRINCIPAL_KEY)
        scope = c->scope == CACHE_PER_KEY    ? who->key.id
                : c->scope == CACHE_PER_TEAM ? who->key.team
                                             : "";
    char head[512];
    int hn = snprintf(head, sizeof head, "stratus-cache/1\n%s\n%s\n%d\n%s\n", model->name,
                      openai_endpoint_path(r->endpoint), r->stream ? 1 : 0, scope);
    unsigned int len = 0;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok =
        md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) && EVP_DigestUpdate(md, head, (size_t)hn);
    for (size_t i = 0; ok && i < kept; i++)
        ok = EVP_DigestUpdate(md, m[i].key, m[i].key_len) && EVP_DigestUpdate(md, "\0", 1) &&
             digest_compact(md, m[i].value, m[i].value_len) == 0 && EVP_DigestUpdate(md, "\0", 1);
    ok = ok && EVP_DigestFinal_ex(md, out, &len) && len == CACHE_KEY_SIZE;
    EVP_MD_CTX_free(md);
    return ok ? 0 : -1;
}

enum cache_verdict cache_consider(struct response_cache *c, const struct model_conf *model,
                                  const struct openai_request *r, const struct http_request *req,
                                  const struct principal *who, struct arena *arena,
                                  struct cache_ticket **ticket)
{
    *ticket = NULL;
    if (c == NULL || model->cache.off) return CACHE_NOT_CACHEABLE;
    enum cache_when when = model->cache.when_set ? model->cache.when : c->when;
    if (when == CACHE_DETERMINISTIC && !deterministic(r)) return CACHE_NOT_CACHEABLE;
    if (asked_to_bypass(req)) {
        c->stats.bypasses++;
        return CACHE_BYPASS;
    }
    struct cache_ticket *t = arena_calloc(arena, 1, sizeof *t);
    if (t == NULL || make_key(c, model, r, who, arena, t->key) != 0) return CACHE_NOT_CACHEABLE;
    memcpy(t->redis_key, "stratus:cache:", 14);
    for (int i = 0; i < CACHE_KEY_SIZE; i++)
        snprintf(t->redis_key + 14 + 2 * i, 3, "%02x", t->key[i]);
    t->cache = c;
    t->arena = arena;
    t->ttl_s = model->cache.ttl_s > 0 ? model->cache.ttl_s : c->ttl_s;
    t->stream = r->stream;
    if (arena_on_free(arena, release_chunks, t) != 0) return CACHE_NOT_CACHEABLE;
    *ticket = t;
    return CACHE_LOOK;
}

/* ---- entries ---------------------------------------------------------------------------
 * "SC2\n", then little-endian fields: u8 stream; i64 prompt, completion, cached tokens;
 * f64 cost; i64 made_ms; u16 + bytes backend; u16 + bytes target model; then u32 + bytes body
 * (a whole answer) or u32 chunk count and per chunk u32 length, u32 usage_at, u8 usage_only,
 * u8 usage_empty, bytes. */

#define ENTRY_MAGIC "SC2\n"

struct writer {
    char *p;
    size_t len, cap;
    bool oom;
};

static void w_bytes(struct writer *w, const void *b, size_t n)
{
    if (w->oom) return;
    if (w->len + n > w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 1024;
        while (cap < w->len + n) cap *= 2;
        char *p = realloc(w->p, cap);
        if (p == NULL) {
            w->oom = true;
            return;
        }
        w->p = p;
        w->cap = cap;
    }
    memcpy(w->p + w->len, b, n);
    w->len += n;
}

static void w_u32(struct writer *w, uint32_t v)
{
    w_bytes(w, &v, sizeof v);
}

static void w_str16(struct writer *w, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    uint16_t l = (uint16_t)(n > 65535 ? 65535 : n);
    w_bytes(w, &l, sizeof l);
    w_bytes(w, s, l);
}

struct reader {
    const char *p, *end;
    bool bad;
};

static const char *r_bytes(struct reader *r, size_t n)
{
    if (r->bad || (size_t)(r->end - r->p) < n) {
        r->bad = true;
        return NULL;
    }
    const char *at = r->p;
    r->p += n;
    return at;
}

#define R_FIELD(r, type, out)                                                                      \
    do {                                                                                           \
        const char *at_ = r_bytes(r, sizeof(type));                                                \
        if (at_) memcpy(&(out), at_, sizeof(type));                                                \
    } while (0)

/* A string of `len` bytes in the entry, NUL-terminated in `arena`. */
static const char *r_str(struct reader *r, size_t len, struct arena *arena)
{
    const char *at = r_bytes(r, len);
    return at ? arena_strndup(arena, at, len) : NULL;
}

/* An entry's bytes → a replayable answer in `arena`. @return false when they do not decode. */
static bool decode(const char *bytes, size_t len, bool shared, struct arena *arena,
                   struct call_replay_answer *a)
{
    struct reader r = {bytes, bytes + len, false};
    const char *magic = r_bytes(&r, 4);
    if (magic == NULL || memcmp(magic, ENTRY_MAGIC, 4) != 0) return false;
    memset(a, 0, sizeof *a);
    uint8_t stream = 0;
    int64_t made = 0;
    uint16_t bl = 0, tl = 0;
    R_FIELD(&r, uint8_t, stream);
    R_FIELD(&r, int64_t, a->usage.prompt);
    R_FIELD(&r, int64_t, a->usage.completion);
    R_FIELD(&r, int64_t, a->usage.cached);
    R_FIELD(&r, double, a->saved_usd);
    R_FIELD(&r, int64_t, made);
    R_FIELD(&r, uint16_t, bl);
    a->backend = r_str(&r, bl, arena);
    R_FIELD(&r, uint16_t, tl);
    a->target_model = r_str(&r, tl, arena);
    uint32_t n = 0;
    R_FIELD(&r, uint32_t, n);
    if (r.bad || a->backend == NULL || a->target_model == NULL) return false;
    if (!stream) {
        a->body = r_str(&r, n, arena);
        a->body_len = n;
    } else {
        if (n > (size_t)(r.end - r.p) / 10) return false; /* more chunks than bytes for them */
        struct call_chunk *ch = arena_calloc(arena, n ? n : 1, sizeof *ch);
        if (ch == NULL) return false;
        for (uint32_t i = 0; i < n && !r.bad; i++) {
            uint32_t cl = 0, at = 0;
            uint8_t only = 0, empty = 0;
            R_FIELD(&r, uint32_t, cl);
            R_FIELD(&r, uint32_t, at);
            R_FIELD(&r, uint8_t, only);
            R_FIELD(&r, uint8_t, empty);
            ch[i] = (struct call_chunk){.json = r_str(&r, cl, arena),
                                        .len = cl,
                                        .usage_at = at <= cl ? at : 0,
                                        .usage_only = only,
                                        .usage_empty = empty};
            if (ch[i].json == NULL) r.bad = true;
        }
        a->chunks = ch;
        a->n_chunks = n;
    }
    if (r.bad || (!stream && a->body == NULL)) return false;
    long long age_s = (clock_wall_ms() - made) / 1000;
    a->reason = arena_printf(arena, "cache hit%s, made %lld s ago by %s", shared ? " (shared)" : "",
                             age_s > 0 ? age_s : 0, a->backend);
    return a->reason != NULL;
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
    struct writer w = {t->chunks, t->chunks_len, t->chunks_cap, false};
    uint8_t only = ch->usage_only, empty = ch->usage_empty;
    w_u32(&w, (uint32_t)ch->len);
    w_u32(&w, (uint32_t)ch->usage_at);
    w_bytes(&w, &only, 1);
    w_bytes(&w, &empty, 1);
    w_bytes(&w, ch->json, ch->len);
    t->chunks = w.p;
    t->chunks_len = w.len;
    t->chunks_cap = w.cap;
    t->n_chunks++;
    /* Too large to keep, or out of memory: this answer is not kept. */
    if (w.oom || w.len > t->cache->max_entry_bytes) t->abandoned = true;
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
    struct writer w = {0};
    uint8_t stream = body == NULL;
    int64_t usage[3] = {in->usage.prompt, in->usage.completion, in->usage.cached};
    double cost = in->cost_known ? in->cost_usd : 0;
    int64_t made = clock_wall_ms();
    w_bytes(&w, ENTRY_MAGIC, 4);
    w_bytes(&w, &stream, 1);
    w_bytes(&w, usage, sizeof usage);
    w_bytes(&w, &cost, sizeof cost);
    w_bytes(&w, &made, sizeof made);
    w_str16(&w, in->backend);
    w_str16(&w, in->target_model);
    if (body) {
        w_u32(&w, (uint32_t)body_len);
        w_bytes(&w, body, body_len);
    } else {
        w_u32(&w, t->n_chunks);
        w_bytes(&w, t->chunks, t->chunks_len);
    }
    if (!w.oom && w.len <= c->max_entry_bytes) {
        if (lru_cache_put(c->lru, t->key, w.p, w.len, expires(t))) c->stats.stored++;
        if (c->redis) shared_set(c->redis, t->redis_key, w.p, w.len, t->ttl_s * 1000);
    }
    free(w.p);
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
