/*
 * store/cache — the in-process half of the response cache: entries (opaque bytes) under a
 * 32-byte key, each with an expiry, evicted least-recently-used when their bytes would pass
 * the cap. What an entry holds and how keys are made is api/cache's business; this is only
 * the bounded map.
 *
 * Thread: one thread at a time (the event loop). Ownership: entries are copied in and out.
 */
#ifndef STRATUS_STORE_CACHE_H
#define STRATUS_STORE_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct arena;
struct lru_cache;

#define CACHE_KEY_SIZE 32

/** @return an *owned* cache holding at most `max_bytes` of entries (keys and bookkeeping
 *  included), or NULL when out of memory. */
struct lru_cache *lru_cache_new(size_t max_bytes);

/** NULL-safe. */
void lru_cache_free(struct lru_cache *c);

/** Stores a copy of `value` under `key` until `expires_ms` (wall clock), replacing any entry
 *  there; older entries are evicted to make room. An entry larger than the whole cap is not
 *  stored. @return true when stored. */
bool lru_cache_put(struct lru_cache *c, const uint8_t key[CACHE_KEY_SIZE], const void *value,
                   size_t len, int64_t expires_ms);

/** A copy of the entry under `key` in `arena` (*out, *len), when there is one that has not
 *  expired at `now_ms`; it becomes the most recently used. An expired entry is dropped.
 *  @return true on a hit. */
bool lru_cache_get(struct lru_cache *c, const uint8_t key[CACHE_KEY_SIZE], int64_t now_ms,
                   struct arena *arena, const void **out, size_t *len);

struct lru_cache_stats {
    size_t entries, bytes, max_bytes;
    uint64_t hits, misses, evictions, expired, too_large;
};

void lru_cache_stats(const struct lru_cache *c, struct lru_cache_stats *out);

#endif
