/*
 * DESIGN: an open-addressing table of entry pointers (keys are SHA-256 digests: the first 8
 * bytes are already a good hash) plus a doubly linked recency list. Deletion uses backward
 * shift so probes never see tombstones. An entry's bytes count its value, key and a fixed
 * overhead, so many tiny entries cannot exceed the cap through bookkeeping.
 */
#include "store/cache.h"

#include <stdlib.h>
#include <string.h>

#include "util/arena.h"

#define ENTRY_OVERHEAD 96 /* the entry struct and its table slot, roughly */

struct entry {
    uint8_t key[CACHE_KEY_SIZE];
    int64_t expires_ms;
    size_t len;
    struct entry *prev, *next; /* recency: head = most recent */
    unsigned char value[];
};

struct lru_cache {
    struct entry **slots;
    size_t cap, n;
    struct entry *head, *tail;
    size_t bytes, max_bytes;
    struct lru_cache_stats stats;
};

static uint64_t slot_hash(const uint8_t *key)
{
    uint64_t h;
    memcpy(&h, key, sizeof h);
    return h;
}

static size_t cost_of(size_t len)
{
    return len + CACHE_KEY_SIZE + ENTRY_OVERHEAD;
}

static size_t find_slot(const struct lru_cache *c, const uint8_t *key)
{
    size_t i = slot_hash(key) & (c->cap - 1);
    while (c->slots[i] && memcmp(c->slots[i]->key, key, CACHE_KEY_SIZE) != 0)
        i = (i + 1) & (c->cap - 1);
    return i;
}

static void unlink_recency(struct lru_cache *c, struct entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        c->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        c->tail = e->prev;
    e->prev = e->next = NULL;
}

static void push_front(struct lru_cache *c, struct entry *e)
{
    e->prev = NULL;
    e->next = c->head;
    if (c->head) c->head->prev = e;
    c->head = e;
    if (c->tail == NULL) c->tail = e;
}

/* Empties slot i and shifts later members of its probe run back (no tombstones). */
static void remove_slot(struct lru_cache *c, size_t i)
{
    c->slots[i] = NULL;
    for (size_t j = (i + 1) & (c->cap - 1); c->slots[j]; j = (j + 1) & (c->cap - 1)) {
        size_t home = slot_hash(c->slots[j]->key) & (c->cap - 1);
        /* Move j back into i when its home is not in (i, j] (cyclically). */
        bool between = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!between) {
            c->slots[i] = c->slots[j];
            c->slots[j] = NULL;
            i = j;
        }
    }
}

static void drop(struct lru_cache *c, struct entry *e)
{
    remove_slot(c, find_slot(c, e->key));
    unlink_recency(c, e);
    c->bytes -= cost_of(e->len);
    c->n--;
    free(e);
}

static bool grow(struct lru_cache *c)
{
    size_t cap = c->cap * 2;
    struct entry **slots = calloc(cap, sizeof *slots);
    if (slots == NULL) return false;
    for (size_t i = 0; i < c->cap; i++) {
        struct entry *e = c->slots[i];
        if (e == NULL) continue;
        size_t j = slot_hash(e->key) & (cap - 1);
        while (slots[j]) j = (j + 1) & (cap - 1);
        slots[j] = e;
    }
    free(c->slots);
    c->slots = slots;
    c->cap = cap;
    return true;
}

struct lru_cache *lru_cache_new(size_t max_bytes)
{
    struct lru_cache *c = calloc(1, sizeof *c);
    if (c == NULL) return NULL;
    c->cap = 64;
    c->max_bytes = max_bytes;
    if ((c->slots = calloc(c->cap, sizeof *c->slots)) == NULL) {
        free(c);
        return NULL;
    }
    return c;
}

void lru_cache_free(struct lru_cache *c)
{
    if (c == NULL) return;
    for (struct entry *e = c->head, *next; e; e = next) {
        next = e->next;
        free(e);
    }
    free(c->slots);
    free(c);
}

bool lru_cache_put(struct lru_cache *c, const uint8_t key[CACHE_KEY_SIZE], const void *value,
                   size_t len, int64_t expires_ms)
{
    size_t cost = cost_of(len);
    if (cost > c->max_bytes) {
        c->stats.too_large++;
        return false;
    }
    struct entry *old = c->slots[find_slot(c, key)];
    if (old) drop(c, old);
    while (c->bytes + cost > c->max_bytes && c->tail) {
        drop(c, c->tail);
        c->stats.evictions++;
    }
    if ((c->n + 1) * 2 > c->cap && !grow(c)) return false;
    struct entry *e = malloc(sizeof *e + len);
    if (e == NULL) return false;
    memcpy(e->key, key, CACHE_KEY_SIZE);
    e->expires_ms = expires_ms;
    e->len = len;
    memcpy(e->value, value, len);
    c->slots[find_slot(c, key)] = e;
    push_front(c, e);
    c->bytes += cost;
    c->n++;
    return true;
}

bool lru_cache_get(struct lru_cache *c, const uint8_t key[CACHE_KEY_SIZE], int64_t now_ms,
                   struct arena *arena, const void **out, size_t *len)
{
    struct entry *e = c->slots[find_slot(c, key)];
    if (e && e->expires_ms <= now_ms) {
        drop(c, e);
        c->stats.expired++;
        e = NULL;
    }
    if (e == NULL) {
        c->stats.misses++;
        return false;
    }
    void *copy = arena_alloc(arena, e->len ? e->len : 1);
    if (copy == NULL) return false;
    memcpy(copy, e->value, e->len);
    unlink_recency(c, e);
    push_front(c, e);
    c->stats.hits++;
    *out = copy;
    *len = e->len;
    return true;
}

void lru_cache_stats(const struct lru_cache *c, struct lru_cache_stats *out)
{
    *out = c->stats;
    out->entries = c->n;
    out->bytes = c->bytes;
    out->max_bytes = c->max_bytes;
}
