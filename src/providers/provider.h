/*
 * provider — the runtime side of a configured backend and the interface every provider
 * type implements. A provider only translates formats: it turns the client's request into
 * an upstream HTTP request (URL, headers, body). Retries, timeouts, failover and accounting
 * live once, in api/proxy.c and route/, so a new provider is one file plus a line in
 * registry.c.
 *
 * Thread: event-loop thread only.
 */
#ifndef STRATUS_PROVIDER_H
#define STRATUS_PROVIDER_H

#include <stdbool.h>
#include <stddef.h>

#include "api/openai.h"
#include "config/config.h"
#include "providers/upstream.h"
#include "util/err.h"

struct arena;
struct curl_slist;

/* A configured backend as it runs. */
struct backend {
    const struct backend_conf *conf; /* borrowed from the config, which outlives backends */
    const struct provider_ops *ops;
    struct curl_slist *headers; /* owned: the headers every call sends */
    bool ready;                 /* last reachability probe succeeded */
    bool probed;                /* at least one probe finished */
    char not_ready_reason[160];
    char *unix_socket; /* owned: where a local worker listens (type: local) */
    struct {           /* type: local — the worker's last /stats answer */
        bool valid;
        int slots, busy_slots, queue_depth;
        double tokens_per_s, ttft_ms;
    } engine;
    void *state; /* provider-private, owned through ops->destroy */
};

/* What the API layer asks a provider to send. */
struct provider_request {
    const struct openai_request *request; /* the validated client request, borrowed */
    const char *target_model;             /* the model name the target wants */
};

struct provider_ops {
    const char *type; /* the config's `type` value */
    /** Prepares `b` (headers from its key). Required. @return 0, or -1 with `err`. */
    int (*init)(struct backend *b, struct err *err);
    /** Builds the upstream request; strings go into `arena`. Required. */
    int (*build)(struct backend *b, const struct provider_request *pr, struct arena *arena,
                 struct upstream_request *out, struct err *err);
    /** Frees `b->state`. May be NULL. */
    void (*destroy)(struct backend *b);
};

/** The provider for a backend type; NULL if this build has none. */
const struct provider_ops *provider_for(enum backend_type type);

/** Sets up a backend from its config. @return 0, or -1 with `err`. */
int backend_init(struct backend *b, const struct backend_conf *conf, struct err *err);

/** Releases what backend_init acquired. NULL-safe. */
void backend_destroy(struct backend *b);

/**
 * OpenAI wire format: the client's body for a target, edited in place as text — "model"
 * set to `target_model` and, for streams, stream_options.include_usage=true so the gateway
 * always learns usage. Every other byte passes through unchanged.
 * @return the body in `arena`, its length in *len; NULL with `err` on failure.
 */
char *openai_body_for_target(const struct openai_request *request, const char *target_model,
                             struct arena *arena, size_t *len, struct err *err);

/** The OpenAI provider's build step (URL from base_url, static headers, rewritten body);
 *  other providers speaking the same wire format reuse it. */
int openai_upstream_request(struct backend *b, const struct provider_request *pr,
                            struct arena *arena, struct upstream_request *out, struct err *err);

extern const struct provider_ops provider_openai, provider_local;

#endif
