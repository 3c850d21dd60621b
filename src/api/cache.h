/*
 * api/cache — the exact response cache (`cache:` in the config): a request that asks the
 * same thing as one answered before is answered again without asking a target.
 *
 *   which   by default only deterministic requests (temperature 0, or a seed; embeddings
 *           always), per model group overridable (`cache: false | { ttl_s, when }`);
 *           `Cache-Control: no-cache` or `x-stratus-cache: bypass` skip it.
 *   key     SHA-256 of the model group, endpoint, stream or not, the isolation scope (team or
 *           key id with `scope: team | key`) and the request body as sorted compact JSON
 *           without what does not change the answer (stream, stream_options, user). Never
 *           the key's secret.
 *   where   in process (LRU bounded by bytes, store/cache.h) and, with store.redis, in Redis
 *           so every gateway shares hits; entries expire after ttl_s.
 *   what    the OpenAI-shaped answer as the call produced it (before output guards, which
 *           run again on every replay): a whole body, or a stream's chunks replayed with the
 *           same framing. Answers that failed, were cut, or came as a target's own bytes
 *           (passthrough) are not kept.
 *
 * A hit costs 0 and records what it saved; `x-stratus-cache: hit | miss | bypass`.
 * Thread: event-loop thread only.
 */
#ifndef STRATUS_API_CACHE_H
#define STRATUS_API_CACHE_H

#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"
#include "openai/request.h"
#include "route/call.h"

struct arena;
struct http_request;
struct principal;
struct shared;
struct response_cache;
struct cache_ticket;

/** @return an *owned* cache for `conf` (borrowed for the call), sharing through `redis`
 *  (borrowed; NULL: in process only), or NULL when out of memory. */
struct response_cache *response_cache_new(const struct cache_conf *conf, struct shared *redis);

/** NULL-safe. */
void response_cache_free(struct response_cache *c);

enum cache_verdict {
    CACHE_NOT_CACHEABLE = 0, /* off, not deterministic, or not a cached endpoint */
    CACHE_BYPASS,            /* the client asked not to use it */
    CACHE_LOOK,              /* look it up (and keep the answer on a miss) */
};

/**
 * What to do with this request. For CACHE_LOOK, *ticket is set (in `arena`) for the
 * lookup and the fill. `c` NULL: not cacheable.
 */
enum cache_verdict cache_consider(struct response_cache *c, const struct model_conf *model,
                                  const struct openai_request *r, const struct http_request *req,
                                  const struct principal *who, struct arena *arena,
                                  struct cache_ticket **ticket);

/** `answer` NULL: a miss. Borrowed for the call (lives in the request's arena). */
typedef void (*cache_found_cb)(void *ud, const struct call_replay_answer *answer);

/** Looks in process, then in Redis; `found` runs once — at once, or when Redis answers —
 *  unless cache_cancel comes first. */
void cache_lookup(struct response_cache *c, struct cache_ticket *t, cache_found_cb found, void *ud);

/** The request ended before the lookup did. */
void cache_cancel(struct cache_ticket *t);

/** Keeps a copy of one chunk of the answer being made (call_sink.chunk's). */
void cache_collect_chunk(struct cache_ticket *t, const struct call_chunk *ch);

/** The answer came as a target's own bytes (passthrough): nothing to keep. */
void cache_abandon(struct cache_ticket *t);

/** The answer is complete and good: stores it (`body` for a whole answer, else the chunks
 *  collected) with where it came from and what it cost (`in`). */
void cache_store(struct response_cache *c, struct cache_ticket *t, const struct call_info *in,
                 const char *body, size_t body_len);

struct response_cache_stats {
    unsigned long long hits, misses, bypasses, stored, shared_hits;
    size_t entries, bytes, max_bytes;
    unsigned long long evictions;
};

void response_cache_stats(const struct response_cache *c, struct response_cache_stats *out);

#endif
