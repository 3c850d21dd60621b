/*
 * router — decides, per request, the order in which a model group's targets are tried,
 * and keeps the per-target health that decision needs.
 *
 * A plan is made in two steps:
 *   1. Filters drop targets that cannot or should not take this request: the provider does
 *      not serve the endpoint (capability), the local engine is down or still loading
 *      (readiness), the target's circuit breaker is open or its half-open probe is already
 *      out (cooldown). Filters are a list of small functions; the budget (local only) and
 *      privacy (route_request.private_only) filters are entries in it.
 *   2. The group's policy orders what is left — priority (configured order), weighted
 *      (random by weight), latency (peak-EWMA of time to first byte, power of two choices),
 *      least-busy (requests in flight; a local engine's busy slots and queue), cost (the
 *      cheapest expected cost for this request), margin (the highest `quality` target whose
 *      expected cost keeps the customer tier's min_margin and max_cost_usd, else the
 *      cheapest; docs/tiers.md). The rest of the order is the failover list.
 * When every target was filtered for health alone, the plan is those targets, soonest to
 * recover first, rather than nothing: a request is better tried than refused outright.
 *
 * The proxy calls router_begin() when an attempt starts and router_report() exactly once
 * when it ends; outcomes feed the breaker, in-flight counts and latency estimates.
 *
 * Circuit breaker per target: cooldown.failures failures within cooldown.window_ms (or one
 * 429 carrying Retry-After) open it for cooldown.duration_ms (or the Retry-After); then one
 * request is let through (half-open): success closes it, failure re-opens it for twice as
 * long, up to cooldown.max_duration_ms.
 *
 * Thread: event-loop thread only. Ownership: the router borrows `cfg` and `backends`, which
 * must outlive it.
 */
#ifndef STRATUS_ROUTER_H
#define STRATUS_ROUTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "openai/request.h"
#include "config/config.h"
#include "util/err.h"

struct router;
struct backend;

enum route_outcome {
    ROUTE_OK,        /* the target answered */
    ROUTE_FAILED,    /* retryable failure: connect, 5xx, 429, timeout, broken answer */
    ROUTE_REJECTED,  /* the target rejected the request (4xx): not its health's fault */
    ROUTE_CANCELLED, /* the client left first: says nothing about the target */
};

/* How a budget bends the plan (guard/budget decides which applies). */
enum route_budget {
    ROUTE_BUDGET_NONE = 0,   /* the group's policy, unchanged */
    ROUTE_BUDGET_SOFT,       /* past a soft threshold: cheapest expected cost first */
    ROUTE_BUDGET_LOCAL_ONLY, /* exhausted with on_exhausted: local_only: local targets only */
};

/* What the policies may know about the request being routed. */
struct route_request {
    enum openai_endpoint endpoint;
    long prompt_tokens; /* estimate (body bytes / 4) */
    long output_tokens; /* max_tokens, or the group's expected_output_tokens */
    enum route_budget budget;
    const char *budget_why; /* which budget, how far spent: for the route reason; or NULL */
    /* Privacy-pinned (guards: pii route_local, x-stratus-privacy: local): only self-hosted
     * targets or backends marked `private: true` may serve it; when none can, the plan
     * fails with 503 no_private_target — never a quiet fallback to another target. */
    bool private_only;
    /* The customer tier (docs/tiers.md), for route: margin; NULL: none (margin then orders
     * like cost). */
    const struct tier_conf *tier;
};

struct route_plan {
    size_t *order;      /* indices into model->targets, best first; caller memory */
    size_t n;           /* entries in order (<= model->n_targets) */
    const char *policy; /* static: the policy's config name */
    char reason[240];   /* why the first target is first, for x-stratus-route and logs */
};

/* One target as `route explain` shows it. */
struct route_explain_row {
    size_t target;       /* index into model->targets */
    const char *state;   /* "ok", "open", "half-open", "probing" */
    const char *skipped; /* why a filter dropped it (static), or NULL */
    char score[96];      /* the policy's figure for it, human-readable */
    int rank;            /* 1-based place in the plan, 0 if not in it */
};

/** @return an *owned* router, or NULL with `err`. `backends` has cfg->n_backends entries
 *  (borrowed, parallel to cfg->backends; both must outlive the router). */
struct router *router_new(const struct config *cfg, struct backend *const *backends,
                          struct err *err);

/** A reloaded router starts from what `from` learned (breakers, latency estimates) for
 *  every target both know — same model group, backend name and target model — so a reload
 *  neither forgets a broken upstream nor re-learns latencies. In-flight counts stay with
 *  the router whose requests they are. */
void router_inherit(struct router *to, const struct router *from);

/**
 * Fills `plan` for `model`. `plan->order` must have room for model->n_targets entries.
 * @return 0, or -1 with `err` (400 when no target serves the endpoint at all; 429
 * budget_exceeded when the budget allows local targets only and the group has none; 503
 * no_private_target when the request is privacy-pinned and no private target is usable).
 */
int router_plan(struct router *r, const struct model_conf *model, const struct route_request *rq,
                struct route_plan *plan, struct err *err);

/** The most `rq` can cost on any of the group's targets (USD; unpriced targets count 0):
 *  what a budget reserves before the request runs. */
double router_worst_case_cost(const struct router *r, const struct model_conf *model,
                              const struct route_request *rq);

/** An attempt on `target` starts (counts it in flight; marks a half-open probe). */
void router_begin(struct router *r, const struct model_conf *model, size_t target);

/** The attempt ended. `ttfb_us`: time to the first byte when known (0 if none);
 *  `retry_after_s`: the upstream's Retry-After on a 429, -1 when none. */
void router_report(struct router *r, const struct model_conf *model, size_t target,
                   enum route_outcome outcome, uint64_t ttfb_us, long retry_after_s);

/** Keeps `text` (a short, already scrubbed description of why an attempt on `target`
 *  failed) as the target's last error, for /admin/routes. Copied into a fixed buffer in
 *  the target's state, cut at ROUTE_ERROR_SIZE - 1 bytes: no allocation per request. The
 *  attempt engine notes each failed attempt before router_report(); kept across reloads
 *  like the breaker. */
#define ROUTE_ERROR_SIZE 160
void router_note_error(struct router *r, const struct model_conf *model, size_t target,
                       const char *text);

/* What the router knows about one target right now (metrics, /admin/routes). */
enum route_breaker {
    ROUTE_BREAKER_CLOSED = 0,
    ROUTE_BREAKER_HALF_OPEN = 1,
    ROUTE_BREAKER_OPEN = 2
};
struct route_target_stats {
    enum route_breaker breaker; /* an open breaker whose cooldown ended reads half-open */
    double latency_ewma_ms;     /* peak-EWMA of time to first byte, faded to now; 0 unknown */
    int in_flight;
    uint64_t cooldown_left_ms;      /* while open */
    uint64_t ok, failed, rejected;  /* attempts reported since start (kept across reloads) */
    uint64_t since_last_failure_ms; /* 0 when it never failed */
    const char *last_error;         /* the last failure's text (router_note_error), "" when none;
                                       borrowed from the router until its next note on this target */
};

/** Fills `out` for `model`'s target `target`. Changes nothing. */
void router_target_stats(const struct router *r, const struct model_conf *model, size_t target,
                         struct route_target_stats *out);

/** Plans as router_plan does and describes every target into `rows` (model->n_targets
 *  entries). @return 0, or -1 with `err`. Does not change any state. */
int router_explain(struct router *r, const struct model_conf *model, const struct route_request *rq,
                   struct route_plan *plan, struct route_explain_row *rows, struct err *err);

/** Seeds the random choices (weighted, power of two choices): tests and benchmarks. */
void router_seed(struct router *r, uint64_t seed);

/** Replaces the monotonic clock (nanoseconds) the router reads: tests. NULL restores it. */
void router_set_clock(struct router *r, uint64_t (*now)(void));

/** NULL-safe. */
void router_free(struct router *r);

#endif
