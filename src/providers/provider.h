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
#include <stdint.h>

#include "openai/request.h"
#include "config/config.h"
#include "providers/chunk.h"
#include "providers/upstream.h"
#include "util/err.h"

struct arena;
struct curl_slist;

/* What a self-hosted backend reports about its capacity (its probe's answer): routing's
 * least-busy policy, /ready and the local cost of a token read it. Any self-hosted server
 * that reports these (the local engine today; vLLM or llama-server could) fills it. */
struct backend_load {
    bool valid; /* the last probe reported figures */
    int slots, busy_slots, queue_depth;
    double tokens_per_s, ttft_ms;
    /* the engine's prompt-prefix cache, totals since the worker started: prompt tokens
     * admitted, of those the ones whose KV cells were reused, prompts that reused any */
    uint64_t prompt_tokens, prefix_tokens_reused, prefix_hits;
    /* recent per-request averages (ms) of time waiting for a slot, prefilling the prompt and
     * generating: where a request's time would go there */
    double queue_ms_avg, prefill_ms_avg, decode_ms_avg;
};

/* A configured backend as it runs. */
struct backend {
    const struct backend_conf *conf; /* borrowed from the config, which outlives backends */
    const struct provider_ops *ops;
    struct curl_slist *headers; /* owned: the headers every call sends */
    bool ready;                 /* last reachability probe succeeded */
    bool probed;                /* at least one probe finished */
    char not_ready_reason[160];
    char *unix_socket;        /* owned: where a local worker listens (type: local) */
    struct backend_load load; /* self-hosted backends: the last probe's figures */
    void *state;              /* provider-private, owned through ops->destroy */
    unsigned holds; /* the daemon's: config generations and probes using it (generation.h) */
};

/* What the API layer asks a provider to send. */
struct provider_request {
    const struct openai_request *request; /* the validated client request, borrowed */
    const char *target_model;             /* the model name the target wants */
};

/* A translating provider's per-attempt stream state (opaque; lives in the request arena). */
struct provider_stream;

struct provider_ops {
    const char *type; /* the config's `type` value */
    /* Runs on hardware the operator pays for already (the local engine): preferred past a
     * soft budget, the only kind allowed by local_only, and its readiness is exact — one
     * that is not ready is never tried. */
    bool self_hosted;
    /* The gateway starts and supervises a worker process for it (engine/supervisor). */
    bool supervised;
    /** How the gateway checks this backend every few seconds: fills `out` (borrowed
     *  strings). NULL: a TCP (+TLS) connect to base_url, reachable = ready. */
    void (*probe)(const struct backend *b, struct upstream_request *out);
    /** Reads that probe's outcome into b->ready, b->not_ready_reason and b->load.
     *  Required with `probe`. */
    void (*probe_read)(struct backend *b, enum upstream_result result, long status,
                       const char *body, size_t len);
    /** What can be known without a running gateway (`route explain`): fills b->ready and
     *  b->not_ready_reason; @return true when that verdict is certain. NULL: probe it. */
    bool (*inspect)(struct backend *b);
    /** Prepares `b` (headers from its key). Required. @return 0, or -1 with `err`. */
    int (*init)(struct backend *b, struct err *err);
    /** Whether this provider can serve `endpoint` at all. NULL: every endpoint. The router
     *  leaves out targets that cannot, so a group may mix chat-only and embedding backends. */
    bool (*supports)(enum openai_endpoint endpoint);
    /** Builds the upstream request; strings go into `arena`. Required. A 4xx `err` means
     *  "this target cannot take this request" (say, an image URL Bedrock cannot fetch). */
    int (*build)(struct backend *b, const struct provider_request *pr, struct arena *arena,
                 struct upstream_request *out, struct err *err);

    /* Translation of answers back to the OpenAI wire format. All NULL for providers that
     * already speak it (their bytes pass through untouched). */

    /** A whole 2xx answer → an OpenAI response body in `arena`. -1 with `err` when the
     *  answer is not what the provider documents (a garbled upstream: fail over). */
    int (*translate_response)(const struct provider_request *pr, const char *body, size_t len,
                              struct arena *arena, char **out, size_t *out_len, struct err *err);
    /** Starts translating a 2xx stream; NULL on OOM. Freed with the arena. */
    struct provider_stream *(*stream_open)(const struct provider_request *pr, struct arena *arena);
    /** Feeds upstream bytes; every complete upstream event becomes zero or more chunks
     *  through `sink`. -1 with `err` on broken framing, an error event (err->status tells
     *  503/429/502) or when the sink stopped. */
    int (*stream_feed)(struct provider_stream *st, const char *bytes, size_t n, chunk_sink sink,
                       void *ud, struct err *err);
    /** The upstream said the answer is complete (its end-of-message event arrived). */
    bool (*stream_complete)(const struct provider_stream *st);
    /** Bytes of an incomplete upstream event still buffered. */
    size_t (*stream_pending)(const struct provider_stream *st);
    /** Reads a human message out of a non-2xx body into `out` ("" if none). */
    void (*error_message)(const char *body, size_t len, char *out, size_t cap);

    /** Frees `b->state`. May be NULL. */
    void (*destroy)(struct backend *b);
};

/** Measured output tokens per second of a self-hosted backend; 0 when unknown. */
static inline double backend_tokens_per_s(const struct backend *b)
{
    return b->load.valid ? b->load.tokens_per_s : 0;
}

static inline bool backend_self_hosted(const struct backend *b)
{
    return b->ops && b->ops->self_hosted;
}

/** The provider for a backend type; NULL if this build has none. */
const struct provider_ops *provider_for(enum backend_type type);

/** Sets up a backend from its config. @return 0, or -1 with `err`. */
int backend_init(struct backend *b, const struct backend_conf *conf, struct err *err);

/** Releases what backend_init acquired. NULL-safe. */
void backend_destroy(struct backend *b);

/**
 * OpenAI wire format: the client's body for a target, edited in place as text — "model"
 * set to `target_model`, for streams stream_options.include_usage=true so the gateway
 * always learns usage, and the gateway's own extension members (`stratus_labels`) cut
 * unless `keep_extensions` (a self-hosted engine that reads them). Every other byte passes
 * through unchanged.
 * @return the body in `arena`, its length in *len; NULL with `err` on failure.
 */
char *openai_body_for_target(const struct openai_request *request, const char *target_model,
                             bool keep_extensions, struct arena *arena, size_t *len,
                             struct err *err);

/** The OpenAI provider's build step (URL from base_url, static headers, rewritten body);
 *  other providers speaking the same wire format reuse it. */
int openai_upstream_request(struct backend *b, const struct provider_request *pr,
                            struct arena *arena, struct upstream_request *out, struct err *err);

extern const struct provider_ops provider_openai, provider_local, provider_local_remote,
    provider_anthropic, provider_bedrock;

#endif
