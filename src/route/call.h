/*
 * route/call — carries one request over a model group's targets: the attempt engine (the
 * role nginx's upstream module plays). Given a validated request, it plans the route, builds
 * each attempt through the target's provider, runs it over the upstream client, and decides
 * what every outcome means:
 *
 *   - Nothing reaches the caller until an attempt produced a usable answer: for a stream,
 *     the first complete event of a 2xx response; otherwise the whole 2xx body (checked to
 *     be JSON). Until then every retryable failure — connect error, timeout, 429, 5xx, 401
 *     and 403 (our credentials), a broken or garbled answer — moves on to the next target.
 *   - A pass over the plan fails over at once; when a whole pass failed, the next pass (up
 *     to retry.retries) starts after an exponential backoff with full jitter, or after the
 *     upstream's Retry-After when every failure was a 429 naming one (beyond
 *     max_retry_after_ms retrying ends).
 *   - Once a stream has started, a failure can only end it (sink->end with the reason).
 *   - An upstream 4xx other than 401/403/429 is the request's fault: it ends the call at once.
 *   - A non-stream answer is held whole within limits.max_response_bytes (over it: 502, not
 *     retried — another target would cost the same download) and within the process's
 *     limits.max_buffered_bytes for all held answers (over it: 503 + Retry-After).
 *
 * Every answer reaches the sink as OpenAI data (the gateway's request model): providers
 * that speak another format translate on the way in. Usage is read from the answer (or
 * estimated, flagged) and priced before the sink hears the end, so the sink can put the
 * cost on the response and the caller can settle budgets and write the ledger.
 *
 * The call never calls into api/: whatever it learns goes to the sink, which belongs to the
 * caller (an inbound surface, through api/proxy.c).
 *
 * Lifetime: a call lives in the arena it was started with and is released with it (an
 * upstream transfer still running is cancelled then). Exactly one terminal sink callback —
 * body, end or fail — runs, unless call_cancel() comes first.
 * Thread: event-loop thread only.
 */
#ifndef STRATUS_CALL_H
#define STRATUS_CALL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "cost/cost.h"
#include "openai/request.h"
#include "route/router.h"
#include "util/err.h"

#include "providers/upstream.h"

struct arena;
struct backend;
struct call;
struct event_base;

/* How attempts reach the network: upstream.h's client in the daemon (call_transport_upstream),
 * a scripted one in unit tests. The functions have upstream.h's contracts. */
struct call_transport {
    struct upstream_call *(*start)(void *ctx, const struct upstream_request *r,
                                   const struct upstream_callbacks *cb, void *ud, struct err *err);
    void (*cancel)(struct upstream_call *call);
    void (*resume)(struct upstream_call *call);
    long (*status)(const struct upstream_call *call);
};

extern const struct call_transport call_transport_upstream; /* ctx: a struct upstream */

/* What a call needs from the daemon; borrowed, outlives every call. */
struct call_env {
    struct event_base *loop;
    struct router *router;
    const struct call_transport *transport;
    void *transport_ctx;
    struct backend *const *backends; /* indexed by target_conf.backend_index */
    const struct config *cfg;        /* limits and the secrets to scrub from upstream text */
    size_t *buffered_bytes;          /* answers held right now, process-wide */
};

/* What the sink may read about the call at any time (call_info). */
struct call_info {
    const char *backend;      /* the current or last attempt's backend name, or NULL */
    const char *target_model; /* its model name, or NULL */
    size_t attempts;          /* attempts made so far */
    const struct route_plan *plan;
    uint64_t first_byte_ns; /* monotonic, when the answer began (0: not yet) */
    /* Settled once the answer is complete, before the terminal callback. */
    bool accounted;
    struct usage usage; /* provider counts, or an estimate (usage.estimated) */
    bool cost_known;
    double cost_usd;
    /* Passthrough (the target speaks the client's API, openai_request.native_*): the
     * attempt answering does, and a whole answer's untranslated bytes (valid during the
     * body callback), for the surface to send as they came. Streams give their bytes to
     * call_sink.raw. */
    bool native;
    const char *native_answer;
    size_t native_answer_len;
    /* Replayed from the response cache (call_replay): no target was asked; cost_usd is 0
     * and saved_usd what the answer cost when it was first made. */
    bool cached;
    double saved_usd;
};

/* One attempt, for the all-failed summary. */
struct call_attempt {
    const char *backend, *model;
    long status;      /* HTTP status, 0 when none arrived */
    char error[160];  /* why it failed, scrubbed of configured secrets */
    bool timeout;     /* it timed out (whole call or first byte) */
    long retry_after; /* seconds, from a 429; -1 when none */
    bool unfit;       /* the provider could not express the request (a 4xx at build) */
    bool auth;        /* the upstream refused our credentials (401/403) */
    char code[24];    /* the upstream's error code of a 429 ("engine_busy"), or "" */
};

/* Why nothing was served. */
struct call_failure {
    struct err err;   /* status, OpenAI type/code, message (scrubbed) */
    long retry_after; /* seconds for a Retry-After header; -1 none */
    /* An upstream's own OpenAI-shaped error body for a 4xx it rejected (scrubbed), else
     * NULL: a surface speaking OpenAI may pass it on byte for byte. */
    const char *raw;
    size_t raw_len;
    const struct call_attempt *attempts; /* every attempt when all failed, else NULL */
    size_t n_attempts;
    bool from_target; /* a target gave this answer (call_info names it) */
};

/* One chat.completion.chunk of a stream. */
struct call_chunk {
    const char *json; /* borrowed for the callback */
    size_t len;
    bool usage_only;  /* the usage chunk: usage and no choices (OpenAI's include_usage) */
    size_t usage_at;  /* > 0: offset just inside the "usage" object (after its '{') */
    bool usage_empty; /* that object has no members */
};

struct call_sink {
    /** The answer begins (streams: before the first flush that carries data). */
    void (*start)(void *ud, struct call *c, int status);
    /** Queues one chunk. @return 1 queued, 0 dropped (not for this client), -1 no memory. */
    int (*chunk)(void *ud, struct call *c, const struct call_chunk *chunk);
    /** Passthrough streams: the upstream's own bytes, queued before the chunks the same
     *  bytes are translated into (which the surface then drops). Optional. @return 0, or
     *  -1 out of memory. */
    int (*raw)(void *ud, struct call *c, const char *bytes, size_t len);
    /** Sends what was queued since the last flush. @return 0, 1 (client slow: the call
     *  pauses until call_resume), -1 (client gone). */
    int (*flush)(void *ud, struct call *c);
    /** A whole 2xx answer in OpenAI JSON (borrowed). Terminal. */
    void (*body)(void *ud, struct call *c, int status, const char *json, size_t len);
    /** The stream ended: complete (`error` NULL) or broken (why). Terminal. */
    void (*end)(void *ud, struct call *c, const char *error);
    /** Nothing was served. Terminal. */
    void (*fail)(void *ud, struct call *c, const struct call_failure *f);
};

/** What the call needs about the request beyond the request model. */
struct call_request {
    const struct openai_request *request; /* borrowed for the call's life */
    const struct model_conf *model;
    struct route_request route; /* the policies' view, the budget's mode included */
    /* Answers must reach the sink as OpenAI data even from a target speaking the client's
     * own API (no passthrough): the output guards rewrite them. */
    bool translate_answers;
    /* Header lines every attempt sends besides its provider's ("traceparent: 00-…", then
     * "tracestate: …"); NULL when none. Borrowed for the call's life. */
    const char *trace_headers[2];
};

/**
 * Plans and starts the first attempt. The call, its plan and attempts live in `arena`.
 * @return the call, or NULL when out of memory (nothing was called back).
 */
struct call *call_start(const struct call_env *env, const struct call_request *rq,
                        const struct call_sink *sink, void *ud, struct arena *arena);

/* An answer kept by the response cache, to give a sink as a target would have. */
struct call_replay_answer {
    const char *backend, *target_model; /* where it first came from */
    struct usage usage;                 /* as it was counted then */
    double saved_usd;                   /* what it cost then */
    const char *reason;                 /* for x-stratus-route: "cache hit, 12 s old" */
    const char *body;                   /* a whole answer (non-stream), or NULL */
    size_t body_len;
    const struct call_chunk *chunks; /* a stream's chunks, in order */
    size_t n_chunks;
};

/**
 * Plays `answer` to `sink` at once — start, chunks, flush, end for a stream; body for a
 * whole answer — as a call that asked no target (info.cached; cost 0; attempts 0). Strings
 * in `answer` are borrowed for the call. @return the call (in `arena`), NULL on OOM.
 */
struct call *call_replay(const struct call_env *env, const struct call_request *rq,
                         const struct call_replay_answer *answer, const struct call_sink *sink,
                         void *ud, struct arena *arena);

const struct call_info *call_info(const struct call *c);

/** The client can take more: resumes a transfer paused by a slow client. */
void call_resume(struct call *c);

/** The client left: stops the transfer and timers; no callback runs after this. */
void call_cancel(struct call *c);

/** `x-stratus-route`'s value: the policy, why, and how many attempts failed before. */
void call_route_header(const struct call *c, char *out, size_t cap);

#endif
