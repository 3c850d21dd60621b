/*
 * Why one file of ~810 lines: every filter and every policy (priority, weighted, latency,
 * least-busy, cost, margin) works on the same candidate array and per-target state, and a
 * plan is one pass of filters then one sort; a policy is 20–60 lines of comparator and
 * reason text that only make sense next to that array.
 *
 * DESIGN
 * State is one `struct target_state` per (model group, target), in one array indexed by
 * the group's offset: no lookups by name on the hot path. A plan is computed into a small
 * candidate array on the stack (heap for very large groups): filters mark candidates out,
 * the policy sorts those kept. Every policy is deterministic given the state and the
 * router's PRNG, so tests can seed it.
 *
 * Latency is a peak-EWMA (as in Finagle/Linkerd): a slower observation replaces the
 * estimate at once, faster ones pull it down with weight exp(-dt/decay). When read, the
 * estimate also fades toward zero with the time since it was last fed, so a target that
 * lost its traffic because it was slow is tried again after a while instead of never;
 * if it is still slow, one request puts it back. A failure counts as an observation of
 * ERROR_PENALTY_US (or twice the estimate, if larger). Targets never observed score 0 and
 * are tried first. The score multiplies the estimate by (in flight + 1), so a target piling
 * up requests looks slower before any of them finishes.
 */
#include "route/router.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cost/cost.h"
#include "providers/provider.h"
#include "util/clock.h"

#define ERROR_PENALTY_US 1000000.0 /* a failure reads as a 1 s first byte */
#define STACK_CANDIDATES 32

enum breaker { BREAKER_CLOSED, BREAKER_OPEN, BREAKER_HALF_OPEN };

struct target_state {
    enum breaker breaker;
    uint64_t open_until_ns;
    uint64_t open_ns; /* length of the current/last open period */
    bool probing;     /* the half-open probe is out */
    uint64_t window_start_ns;
    int window_failures;
    double ewma_us; /* peak-EWMA of time to first byte; 0 = never observed */
    uint64_t ewma_at_ns;
    int in_flight;
    uint64_t ok, failed, rejected;     /* attempts reported, by outcome (cancelled not counted) */
    uint64_t last_failure_ns;          /* 0: none yet */
    char last_error[ROUTE_ERROR_SIZE]; /* router_note_error; "" none */
};

struct router {
    const struct config *cfg;
    struct backend *const *backends;
    struct target_state *states; /* sum of n_targets over the groups */
    size_t *group_offset;        /* per model group: its first state */
    uint64_t rng;
    uint64_t (*now)(void); /* clock_now_ns, or a test's clock */
};

struct candidate {
    size_t target;
    const char *skipped; /* set by a filter */
    bool health_skip;    /* skipped for health alone (last-resort eligible) */
    bool down;           /* a local engine that is not serving: never a last resort */
    double score;        /* the policy's; lower is better */
    uint64_t recover_ns; /* when a skipped target can be tried again */
};

/* ---- helpers ------------------------------------------------------------------------ */

static uint64_t next_random(struct router *r)
{
    /* xorshift64*: fast, good enough for load spreading; not for secrets. */
    uint64_t x = r->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static double random_unit(struct router *r)
{
    return (double)(next_random(r) >> 11) / 9007199254740992.0; /* [0, 1) */
}

static struct target_state *state_of(struct router *r, const struct model_conf *m, size_t target)
{
    size_t group = (size_t)(m - r->cfg->models);
    return &r->states[r->group_offset[group] + target];
}

static struct backend *backend_of(const struct router *r, const struct model_conf *m, size_t target)
{
    return r->backends[m->targets[target].backend_index];
}

/* The latency estimate as of `now`, faded by the time since it was last fed. */
static double latency_now(const struct target_state *s, const struct model_conf *m, uint64_t now)
{
    if (s->ewma_us <= 0) return 0;
    double idle_ms = (double)(now - s->ewma_at_ns) / 1e6;
    return s->ewma_us * exp(-idle_ms / (double)m->latency_decay_ms);
}

static void observe_latency(struct target_state *s, const struct model_conf *m, double us,
                            uint64_t now)
{
    if (s->ewma_us <= 0 || us > s->ewma_us) {
        s->ewma_us = us;
    } else {
        double w = exp(-((double)(now - s->ewma_at_ns) / 1e6) / (double)m->latency_decay_ms);
        s->ewma_us = s->ewma_us * w + us * (1 - w);
    }
    s->ewma_at_ns = now;
}

/* ---- filters ------------------------------------------------------------------------ */

typedef void (*route_filter_fn)(struct router *r, const struct model_conf *m,
                                const struct route_request *rq, struct candidate *c, uint64_t now);

static void filter_capability(struct router *r, const struct model_conf *m,
                              const struct route_request *rq, struct candidate *c, uint64_t now)
{
    (void)now;
    const struct backend *b = backend_of(r, m, c->target);
    if (b->ops && b->ops->supports && !b->ops->supports(rq->endpoint))
        c->skipped = "provider does not serve this endpoint";
}

static void filter_readiness(struct router *r, const struct model_conf *m,
                             const struct route_request *rq, struct candidate *c, uint64_t now)
{
    (void)rq;
    const struct backend *b = backend_of(r, m, c->target);
    /* Only local engines: their readiness is exact (the worker answers /stats or not), and
     * one that does not answer cannot take a request either — trying it anyway would only
     * turn the real cause (model missing, loading, restarting) into a connect error. A
     * remote target's TCP probe is too coarse; its breaker judges it by real answers. */
    (void)now;
    if (backend_self_hosted(b) && !b->ready) {
        c->skipped = "local engine not ready";
        c->down = true;
    }
}

static void filter_breaker(struct router *r, const struct model_conf *m,
                           const struct route_request *rq, struct candidate *c, uint64_t now)
{
    (void)rq;
    struct target_state *s = state_of(r, m, c->target);
    if (s->breaker == BREAKER_OPEN && now >= s->open_until_ns) {
        s->breaker = BREAKER_HALF_OPEN; /* cooldown over: let one request probe it */
        s->probing = false;
    }
    if (s->breaker == BREAKER_OPEN) {
        c->skipped = "cooling down (circuit open)";
        c->health_skip = true;
        c->recover_ns = s->open_until_ns;
    } else if (s->breaker == BREAKER_HALF_OPEN && s->probing) {
        c->skipped = "half-open: probe request in flight";
        c->health_skip = true;
        c->recover_ns = now;
    }
}

static const char budget_local_only[] = "budget exhausted: local targets only";

static void filter_budget(struct router *r, const struct model_conf *m,
                          const struct route_request *rq, struct candidate *c, uint64_t now)
{
    (void)now;
    if (rq->budget == ROUTE_BUDGET_LOCAL_ONLY && !backend_self_hosted(backend_of(r, m, c->target)))
        c->skipped = budget_local_only;
}

static const char privacy_pinned[] = "privacy-pinned: not a private target";

/* Privacy before readiness and health: a cloud target must never become a last resort. */
static void filter_privacy(struct router *r, const struct model_conf *m,
                           const struct route_request *rq, struct candidate *c, uint64_t now)
{
    (void)now;
    const struct backend *b = backend_of(r, m, c->target);
    if (rq->private_only && !backend_self_hosted(b) && !b->conf->is_private)
        c->skipped = privacy_pinned;
}

static const char tier_local_only[] = "customer tier: local targets only";

/* A tier with local_only: true, like privacy, before health: a cloud target is never a last
 * resort for it. */
static void filter_tier(struct router *r, const struct model_conf *m,
                        const struct route_request *rq, struct candidate *c, uint64_t now)
{
    (void)now;
    if (rq->tier && rq->tier->local_only && !backend_self_hosted(backend_of(r, m, c->target)))
        c->skipped = tier_local_only;
}

/* In order. */
static const route_filter_fn filters[] = {filter_capability, filter_privacy,   filter_tier,
                                          filter_budget,     filter_readiness, filter_breaker};

/* ---- policies ----------------------------------------------------------------------- */

/* Fills c->score (lower is better) and a human figure for explain. */
typedef void (*route_score_fn)(struct router *r, const struct model_conf *m,
                               const struct route_request *rq, struct candidate *c, uint64_t now,
                               char *figure, size_t cap);

static void score_priority(struct router *r, const struct model_conf *m,
                           const struct route_request *rq, struct candidate *c, uint64_t now,
                           char *figure, size_t cap)
{
    (void)r, (void)m, (void)rq, (void)now;
    c->score = (double)c->target;
    if (figure) snprintf(figure, cap, "position %zu", c->target + 1);
}

static void score_weighted(struct router *r, const struct model_conf *m,
                           const struct route_request *rq, struct candidate *c, uint64_t now,
                           char *figure, size_t cap)
{
    (void)rq, (void)now;
    int w = m->targets[c->target].weight;
    /* Weighted random order (Efraimidis–Spirakis): key u^(1/w), larger first. Weight 0 only
     * ever comes after every weighted target. */
    c->score = w > 0 ? -pow(random_unit(r), 1.0 / (double)w) : 1.0 + (double)c->target;
    if (figure) snprintf(figure, cap, "weight %d", w);
}

static void score_latency(struct router *r, const struct model_conf *m,
                          const struct route_request *rq, struct candidate *c, uint64_t now,
                          char *figure, size_t cap)
{
    (void)rq;
    const struct target_state *s = state_of(r, m, c->target);
    double est = latency_now(s, m, now);
    c->score = est * (double)(s->in_flight + 1);
    if (figure) {
        if (s->ewma_us <= 0)
            snprintf(figure, cap, "ttfb unobserved, %d in flight", s->in_flight);
        else
            snprintf(figure, cap, "ttfb ewma %.1f ms, %d in flight", est / 1000.0, s->in_flight);
    }
}

static void score_least_busy(struct router *r, const struct model_conf *m,
                             const struct route_request *rq, struct candidate *c, uint64_t now,
                             char *figure, size_t cap)
{
    (void)rq, (void)now;
    const struct target_state *s = state_of(r, m, c->target);
    const struct backend *b = backend_of(r, m, c->target);
    if (b->load.valid && b->load.slots > 0) {
        /* Load beyond capacity: negative while slots are free. Our own in-flight count is
         * fresher than the backend's last report, so the larger of the two counts. */
        int reported = b->load.busy_slots + b->load.queue_depth;
        int load = reported > s->in_flight ? reported : s->in_flight;
        c->score = (double)(load - b->load.slots);
        if (figure)
            snprintf(figure, cap, "engine %d/%d slots busy, %d queued, %d in flight",
                     b->load.busy_slots, b->load.slots, b->load.queue_depth, s->in_flight);
    } else {
        c->score = (double)s->in_flight;
        if (figure) snprintf(figure, cap, "%d in flight", s->in_flight);
    }
    c->score += (double)c->target * 1e-6; /* ties: configured order */
}

static void score_cost(struct router *r, const struct model_conf *m, const struct route_request *rq,
                       struct candidate *c, uint64_t now, char *figure, size_t cap)
{
    (void)now;
    struct price price;
    const struct backend *b = backend_of(r, m, c->target);
    if (!cost_target_price(&m->targets[c->target], &b->conf->tco, backend_tokens_per_s(b),
                           &price)) {
        /* Unknown is not free: after every priced target, in configured order. */
        c->score = 1e18 + (double)c->target;
        if (figure)
            snprintf(figure, cap,
                     price.source == PRICE_LOCAL_TCO ? "local TCO: throughput not measured yet"
                                                     : "no known price");
        return;
    }
    struct usage u = {.prompt = rq->prompt_tokens, .completion = rq->output_tokens};
    double usd = cost_usd(&price, &u);
    c->score = usd + (double)c->target * 1e-15;
    if (figure)
        snprintf(figure, cap, "expected $%.6f (%ld in + %ld out tokens)%s", usd, rq->prompt_tokens,
                 rq->output_tokens, price.source == PRICE_LOCAL_TCO ? ", local TCO" : "");
}

/* Past a soft budget threshold: local targets first (their hardware is paid for already;
 * cheapest TCO first when measured), then the rest by expected cost. */
static void score_thrifty(struct router *r, const struct model_conf *m,
                          const struct route_request *rq, struct candidate *c, uint64_t now,
                          char *figure, size_t cap)
{
    score_cost(r, m, rq, c, now, figure, cap);
    if (backend_self_hosted(backend_of(r, m, c->target)))
        c->score = (c->score < 1e17 ? c->score : 0) - 1e12;
}

/* What `rq` is expected to cost on target `i` (its price × the prompt estimate and the
 * expected output) and to bring in at its tier's prices (0 without a tier). @return false
 * when the target has no known price. */
static bool margin_expect(struct router *r, const struct model_conf *m,
                          const struct route_request *rq, size_t i, double *cost, double *revenue)
{
    struct price price;
    const struct backend *b = backend_of(r, m, i);
    *cost = *revenue = 0;
    if (!cost_target_price(&m->targets[i], &b->conf->tco, backend_tokens_per_s(b), &price))
        return false;
    struct usage u = {.prompt = rq->prompt_tokens, .completion = rq->output_tokens};
    *cost = cost_usd(&price, &u);
    if (rq->tier) cost_tier_revenue(rq->tier, 200, rq->prompt_tokens, rq->output_tokens, revenue);
    return true;
}

/* Whether an expected cost keeps the tier's ceiling and margin. A tier that charges nothing
 * has no share to keep: only a free target keeps a min_margin then. */
static bool margin_keeps(const struct tier_conf *t, double cost, double revenue)
{
    if (t->max_cost_usd > 0 && cost > t->max_cost_usd) return false;
    if (!t->min_margin_set) return true;
    if (!(revenue > 0)) return cost <= 0;
    return (revenue - cost) / revenue >= t->min_margin;
}

/* route: margin. Targets that keep the tier's margin go first, best quality first (cheaper
 * first within a quality); then the rest by expected cost, unpriced ones last. Without a
 * tier: as cost. */
static void score_margin(struct router *r, const struct model_conf *m,
                         const struct route_request *rq, struct candidate *c, uint64_t now,
                         char *figure, size_t cap)
{
    score_cost(r, m, rq, c, now, figure, cap);
    double cost, revenue;
    if (rq->tier == NULL || !margin_expect(r, m, rq, c->target, &cost, &revenue)) return;
    int q = m->targets[c->target].quality;
    bool keeps = margin_keeps(rq->tier, cost, revenue);
    /* quality <= 1e6, so the score stays below 1e9 in size: cost still breaks ties. */
    if (keeps) c->score = -((double)q + 1) * 1000.0 + (cost < 999 ? cost : 999);
    if (figure) {
        char share[24] = "n/a";
        if (revenue > 0) snprintf(share, sizeof share, "%.1f%%", 100 * (revenue - cost) / revenue);
        snprintf(figure, cap, "quality %d, expected $%.6f, margin %s%s", q, cost, share,
                 keeps ? "" : " (below the tier's)");
    }
}

static route_score_fn scorer_for(enum route_policy p)
{
    switch (p) {
    case ROUTE_PRIORITY:
        return score_priority;
    case ROUTE_WEIGHTED:
        return score_weighted;
    case ROUTE_LATENCY:
        return score_latency;
    case ROUTE_LEAST_BUSY:
        return score_least_busy;
    case ROUTE_COST:
        return score_cost;
    case ROUTE_MARGIN:
        return score_margin;
    }
    return score_priority;
}

static int by_score(const void *a, const void *b)
{
    const struct candidate *x = a, *y = b;
    if (x->score < y->score) return -1;
    if (x->score > y->score) return 1;
    return x->target < y->target ? -1 : x->target > y->target;
}

static int by_recovery(const void *a, const void *b)
{
    const struct candidate *x = a, *y = b;
    if (x->recover_ns != y->recover_ns) return x->recover_ns < y->recover_ns ? -1 : 1;
    return x->target < y->target ? -1 : x->target > y->target;
}

/* ---- planning ----------------------------------------------------------------------- */

/* The core shared by router_plan and router_explain. `figures` may be NULL. */
static int plan_into(struct router *r, const struct model_conf *m, const struct route_request *rq,
                     struct route_plan *plan, struct candidate *cand, char (*figures)[96],
                     struct err *err)
{
    uint64_t now = r->now();
    size_t n = m->n_targets, kept = 0, health_skipped = 0, budget_skipped = 0, private_skipped = 0,
           tier_skipped = 0;
    const struct candidate *down = NULL;
    /* Past a soft budget threshold the cheapest target goes first, whatever the policy. */
    enum route_policy policy = rq->budget == ROUTE_BUDGET_SOFT ? ROUTE_COST : m->route;
    route_score_fn score = rq->budget == ROUTE_BUDGET_SOFT ? score_thrifty : scorer_for(policy);
    for (size_t i = 0; i < n; i++) {
        cand[i] = (struct candidate){.target = i};
        for (size_t f = 0; f < sizeof filters / sizeof filters[0] && !cand[i].skipped; f++)
            filters[f](r, m, rq, &cand[i], now);
        score(r, m, rq, &cand[i], now, figures ? figures[i] : NULL, 96);
        if (!cand[i].skipped)
            kept++;
        else if (cand[i].health_skip)
            health_skipped++;
        else if (cand[i].skipped == budget_local_only)
            budget_skipped++;
        else if (cand[i].skipped == privacy_pinned)
            private_skipped++;
        else if (cand[i].skipped == tier_local_only)
            tier_skipped++;
        else if (cand[i].down && down == NULL)
            down = &cand[i];
    }
    plan->policy = route_policy_name(policy);
    plan->n = 0;
    if (kept == 0 && health_skipped == 0 && private_skipped > 0) {
        const char *why = "";
        char detail[200] = "";
        if (down) {
            const struct backend *b = backend_of(r, m, down->target);
            snprintf(detail, sizeof detail, " (local engine '%s': %s)", b->conf->name,
                     b->not_ready_reason[0] ? b->not_ready_reason : "starting");
            why = detail;
        }
        return err_set(err, 503, "server_error", "no_private_target",
                       "the request is privacy-pinned and model '%s' has no usable self-hosted "
                       "or private target%s",
                       m->name, why);
    }
    if (kept == 0 && health_skipped == 0 && tier_skipped > 0 && down == NULL)
        return err_set(err, 403, "permission_error", "model_not_allowed_for_tier",
                       "tier '%s' may use local targets only, and model '%s' has none",
                       rq->tier->name, m->name);
    if (kept == 0 && health_skipped == 0 && budget_skipped > 0)
        return err_set(err, 429, "insufficient_quota", "budget_exceeded",
                       "%s, which allows local targets only, and model '%s' has none",
                       rq->budget_why ? rq->budget_why : "budget exhausted", m->name);
    if (kept == 0 && health_skipped == 0 && down) {
        const struct backend *b = backend_of(r, m, down->target);
        const char *why = b->not_ready_reason[0] ? b->not_ready_reason : "starting";
        bool loading = strcmp(why, "loading model") == 0 || strcmp(why, "starting") == 0;
        return err_set(err, 503, "server_error", "engine_not_ready", "local engine '%s' %s: %s",
                       b->conf->name, loading ? "not ready" : "not running", why);
    }
    if (kept == 0 && health_skipped == 0)
        return err_set(err, 400, "invalid_request_error", "unsupported_endpoint",
                       "model '%s' has no target that serves this endpoint", m->name);

    /* Sort in place: kept first (by score), then health-skipped (by recovery), then the
     * rest. A stable partition keeps the candidate array's indices meaningful. */
    struct candidate tmp;
    size_t w = 0;
    for (size_t i = 0; i < n; i++)
        if (!cand[i].skipped) {
            tmp = cand[i];
            memmove(&cand[w + 1], &cand[w], (i - w) * sizeof *cand);
            cand[w++] = tmp;
        }
    if (kept > 0) {
        qsort(cand, kept, sizeof *cand, by_score);
        if (policy == ROUTE_LATENCY && kept > 2) {
            /* Power of two choices: of two random candidates, the better goes first; the
             * rest stay in score order as the failover list. */
            size_t a = (size_t)(next_random(r) % kept), b = (size_t)(next_random(r) % (kept - 1));
            if (b >= a) b++;
            size_t best = cand[a].score <= cand[b].score ? a : b;
            tmp = cand[best];
            memmove(&cand[1], &cand[0], best * sizeof *cand);
            cand[0] = tmp;
        }
        for (size_t i = 0; i < kept; i++) plan->order[plan->n++] = cand[i].target;
        const struct target_conf *t = &m->targets[cand[0].target];
        const char *bname = r->backends[t->backend_index]->conf->name;
        size_t skipped = n - kept;
        switch (policy) {
        case ROUTE_PRIORITY:
            snprintf(plan->reason, sizeof plan->reason, "first available in configured order%s",
                     skipped ? " (earlier targets skipped)" : "");
            break;
        case ROUTE_WEIGHTED:
            snprintf(plan->reason, sizeof plan->reason, "weighted pick %s (weight %d)", bname,
                     t->weight);
            break;
        case ROUTE_LATENCY: {
            const struct target_state *s = state_of(r, m, cand[0].target);
            if (s->ewma_us <= 0)
                snprintf(plan->reason, sizeof plan->reason, "%s not yet measured", bname);
            else
                snprintf(plan->reason, sizeof plan->reason, "lowest ttfb %s (%.1f ms)", bname,
                         latency_now(s, m, now) / 1000.0);
            break;
        }
        case ROUTE_LEAST_BUSY:
            snprintf(plan->reason, sizeof plan->reason, "least busy %s (%d in flight)", bname,
                     state_of(r, m, cand[0].target)->in_flight);
            break;
        case ROUTE_COST:
            if (cand[0].score < 1e17)
                snprintf(plan->reason, sizeof plan->reason, "cheapest %s ($%.6f expected)", bname,
                         cand[0].score);
            else
                snprintf(plan->reason, sizeof plan->reason, "no priced target available; %s",
                         bname);
            break;
        case ROUTE_MARGIN: {
            double cost, revenue;
            bool priced = margin_expect(r, m, rq, cand[0].target, &cost, &revenue);
            char share[24] = "n/a", floor[24] = "";
            if (priced && revenue > 0)
                snprintf(share, sizeof share, "%.1f%%", 100 * (revenue - cost) / revenue);
            if (rq->tier && rq->tier->min_margin_set)
                snprintf(floor, sizeof floor, " >= %.1f%%", 100 * rq->tier->min_margin);
            if (!priced)
                snprintf(plan->reason, sizeof plan->reason, "no priced target available; %s",
                         bname);
            else if (rq->tier == NULL)
                snprintf(plan->reason, sizeof plan->reason, "no tier: cheapest %s ($%.6f expected)",
                         bname, cost);
            else if (cand[0].score < 0)
                snprintf(plan->reason, sizeof plan->reason,
                         "tier %s: best quality keeping the margin %s (quality %d, expected "
                         "margin %s%s, $%.6f)",
                         rq->tier->name, bname, t->quality, share, floor, cost);
            else
                snprintf(plan->reason, sizeof plan->reason,
                         "tier %s: no target keeps the margin%s; cheapest %s (expected margin "
                         "%s, $%.6f)",
                         rq->tier->name, floor, bname, share, cost);
            break;
        }
        }
        const char *budget = rq->budget_why ? rq->budget_why : "budget";
        if (rq->budget == ROUTE_BUDGET_SOFT && cand[0].score < 0)
            snprintf(plan->reason, sizeof plan->reason, "%s: local first; %s", budget, bname);
        else if (rq->budget == ROUTE_BUDGET_SOFT && cand[0].score < 1e17)
            snprintf(plan->reason, sizeof plan->reason, "%s: cheapest first; %s ($%.6f expected)",
                     budget, bname, cand[0].score);
        else if (rq->budget == ROUTE_BUDGET_SOFT)
            snprintf(plan->reason, sizeof plan->reason, "%s: cheapest first; no priced target; %s",
                     budget, bname);
        else if (rq->budget == ROUTE_BUDGET_LOCAL_ONLY) {
            char why[sizeof plan->reason];
            snprintf(why, sizeof why, "%s", plan->reason);
            snprintf(plan->reason, sizeof plan->reason, "%s: local only; %s", budget, why);
        }
        return 0;
    }
    /* Every target that could serve this is cooling down: try them anyway, soonest first. */
    size_t h = 0;
    for (size_t i = 0; i < n; i++)
        if (cand[i].health_skip) {
            tmp = cand[i];
            memmove(&cand[h + 1], &cand[h], (i - h) * sizeof *cand);
            cand[h++] = tmp;
        }
    qsort(cand, h, sizeof *cand, by_recovery);
    for (size_t i = 0; i < h; i++) plan->order[plan->n++] = cand[i].target;
    snprintf(plan->reason, sizeof plan->reason, "every target is cooling down; trying anyway");
    return 0;
}

double router_worst_case_cost(const struct router *r, const struct model_conf *m,
                              const struct route_request *rq)
{
    double worst = 0;
    struct usage u = {.prompt = rq->prompt_tokens, .completion = rq->output_tokens, .cached = -1};
    for (size_t i = 0; i < m->n_targets; i++) {
        const struct backend *b = backend_of(r, m, i);
        struct price price;
        if (!cost_target_price(&m->targets[i], &b->conf->tco, backend_tokens_per_s(b), &price))
            continue;
        double usd = cost_usd(&price, &u);
        if (usd > worst) worst = usd;
    }
    return worst;
}

int router_plan(struct router *r, const struct model_conf *m, const struct route_request *rq,
                struct route_plan *plan, struct err *err)
{
    struct candidate stack[STACK_CANDIDATES];
    struct candidate *cand =
        m->n_targets <= STACK_CANDIDATES ? stack : malloc(m->n_targets * sizeof *cand);
    if (cand == NULL) return err_oom(err);
    int rc = plan_into(r, m, rq, plan, cand, NULL, err);
    if (cand != stack) free(cand);
    return rc;
}

int router_explain(struct router *r, const struct model_conf *m, const struct route_request *rq,
                   struct route_plan *plan, struct route_explain_row *rows, struct err *err)
{
    struct candidate *cand = calloc(m->n_targets, sizeof *cand);
    char(*figures)[96] = calloc(m->n_targets, sizeof *figures);
    uint64_t saved_rng = r->rng;
    int rc = -1;
    if (cand == NULL || figures == NULL) {
        err_oom(err);
        goto out;
    }
    rc = plan_into(r, m, rq, plan, cand, figures, err);
    for (size_t i = 0; i < m->n_targets; i++) {
        const struct target_state *s = state_of(r, m, i);
        rows[i] = (struct route_explain_row){.target = i};
        rows[i].state = s->breaker == BREAKER_OPEN        ? "open"
                        : s->breaker == BREAKER_HALF_OPEN ? (s->probing ? "probing" : "half-open")
                                                          : "ok";
        snprintf(rows[i].score, sizeof rows[i].score, "%s", figures[i]);
    }
    for (size_t i = 0; i < m->n_targets; i++) {
        const struct candidate *c = &cand[i];
        rows[c->target].skipped = c->skipped;
    }
    for (size_t i = 0; rc == 0 && i < plan->n; i++) rows[plan->order[i]].rank = (int)i + 1;
out:
    r->rng = saved_rng; /* explaining must not change what the next request gets */
    free(cand);
    free(figures);
    return rc;
}

void router_begin(struct router *r, const struct model_conf *m, size_t target)
{
    struct target_state *s = state_of(r, m, target);
    s->in_flight++;
    if (s->breaker == BREAKER_HALF_OPEN) s->probing = true;
}

void router_report(struct router *r, const struct model_conf *m, size_t target,
                   enum route_outcome outcome, uint64_t ttfb_us, long retry_after_s)
{
    struct target_state *s = state_of(r, m, target);
    const struct cooldown_conf *cd = &m->cooldown;
    uint64_t now = r->now();
    if (s->in_flight > 0) s->in_flight--;
    bool was_probe = s->breaker == BREAKER_HALF_OPEN && s->probing;
    s->ok += outcome == ROUTE_OK;
    s->failed += outcome == ROUTE_FAILED;
    s->rejected += outcome == ROUTE_REJECTED;
    if (outcome == ROUTE_FAILED) s->last_failure_ns = now;
    if (outcome == ROUTE_OK) {
        if (ttfb_us > 0) observe_latency(s, m, (double)ttfb_us, now);
        if (s->breaker == BREAKER_HALF_OPEN) {
            s->breaker = BREAKER_CLOSED;
            s->window_failures = 0;
            s->open_ns = 0;
        }
        s->probing = false;
        return;
    }
    if (outcome == ROUTE_REJECTED || outcome == ROUTE_CANCELLED) {
        if (was_probe) s->probing = false; /* it answered: let the next request probe */
        return;
    }
    double penalty = s->ewma_us * 2 > ERROR_PENALTY_US ? s->ewma_us * 2 : ERROR_PENALTY_US;
    observe_latency(s, m, penalty, now);
    s->probing = false;
    if (cd->failures <= 0) return;
    uint64_t window = (uint64_t)cd->window_ms * 1000000ull;
    if (s->window_failures == 0 || now - s->window_start_ns > window) {
        s->window_start_ns = now;
        s->window_failures = 0;
    }
    s->window_failures++;
    uint64_t open_for = 0;
    if (was_probe) {
        uint64_t max = (uint64_t)cd->max_duration_ms * 1000000ull;
        open_for = s->open_ns ? s->open_ns * 2 : (uint64_t)cd->duration_ms * 1000000ull;
        if (open_for > max) open_for = max;
    } else if (s->window_failures >= cd->failures) {
        open_for = (uint64_t)cd->duration_ms * 1000000ull;
    }
    if (retry_after_s > 0) {
        /* The upstream said when to come back: believe it (bounded by the breaker's max). */
        uint64_t ra = (uint64_t)retry_after_s * 1000000000ull;
        uint64_t max = (uint64_t)cd->max_duration_ms * 1000000ull;
        if (ra > max) ra = max;
        if (ra > open_for) open_for = ra;
    }
    if (open_for > 0) {
        s->breaker = BREAKER_OPEN;
        s->open_ns = open_for;
        s->open_until_ns = now + open_for;
        s->window_failures = 0;
    }
}

void router_target_stats(const struct router *r, const struct model_conf *m, size_t target,
                         struct route_target_stats *out)
{
    const struct target_state *s = state_of((struct router *)r, m, target);
    uint64_t now = r->now();
    bool open = s->breaker == BREAKER_OPEN && now < s->open_until_ns;
    enum route_breaker breaker = ROUTE_BREAKER_CLOSED;
    if (s->breaker == BREAKER_OPEN)
        breaker = open ? ROUTE_BREAKER_OPEN : ROUTE_BREAKER_HALF_OPEN; /* it may probe now */
    else if (s->breaker == BREAKER_HALF_OPEN)
        breaker = ROUTE_BREAKER_HALF_OPEN;
    *out = (struct route_target_stats){
        .breaker = breaker,
        .latency_ewma_ms = latency_now(s, m, now) / 1000.0,
        .in_flight = s->in_flight,
        .cooldown_left_ms = open ? (s->open_until_ns - now) / 1000000u : 0,
        .ok = s->ok,
        .failed = s->failed,
        .rejected = s->rejected,
        .since_last_failure_ms = s->last_failure_ns ? (now - s->last_failure_ns) / 1000000u : 0,
        .last_error = s->last_error,
    };
}

void router_note_error(struct router *r, const struct model_conf *m, size_t target,
                       const char *text)
{
    struct target_state *s = state_of(r, m, target);
    size_t n = text ? strlen(text) : 0, cap = sizeof s->last_error - 1;
    if (n > cap) {
        /* Cut on a character boundary: upstream words may be any UTF-8, and a torn
         * sequence would make the text unusable as a JSON string. */
        const unsigned char *u = (const unsigned char *)text;
        size_t i = cap;
        while (i > 0 && (u[i] & 0xC0) == 0x80) i--;
        n = i;
    }
    if (n) memcpy(s->last_error, text, n);
    s->last_error[n] = '\0';
}

static uint64_t monotonic_now(void)
{
    return clock_now_ns();
}

void router_set_clock(struct router *r, uint64_t (*now)(void))
{
    r->now = now ? now : monotonic_now;
}

struct router *router_new(const struct config *cfg, struct backend *const *backends,
                          struct err *err)
{
    struct router *r = calloc(1, sizeof *r);
    size_t total = 0;
    if (r == NULL) goto oom;
    r->cfg = cfg;
    r->backends = backends;
    r->group_offset = calloc(cfg->n_models ? cfg->n_models : 1, sizeof *r->group_offset);
    if (r->group_offset == NULL) goto oom;
    for (size_t i = 0; i < cfg->n_models; i++) {
        r->group_offset[i] = total;
        total += cfg->models[i].n_targets;
    }
    r->states = calloc(total ? total : 1, sizeof *r->states);
    if (r->states == NULL) goto oom;
    r->now = monotonic_now;
    router_seed(r, clock_now_ns());
    return r;
oom:
    router_free(r);
    err_oom(err);
    return NULL;
}

/* Whether two targets are the same upstream model: same backend name, same model name. */
static bool same_target(const struct config *a, const struct target_conf *x, const struct config *b,
                        const struct target_conf *y)
{
    return strcmp(a->backends[x->backend_index].name, b->backends[y->backend_index].name) == 0 &&
           strcmp(x->model, y->model) == 0;
}

void router_inherit(struct router *to, const struct router *from)
{
    /* A reload is rare and groups are small: a nested scan by name costs nothing. */
    for (size_t g = 0; g < to->cfg->n_models; g++) {
        const struct model_conf *m = &to->cfg->models[g];
        const struct model_conf *old = config_find_model(from->cfg, m->name);
        if (old == NULL) continue;
        size_t og = (size_t)(old - from->cfg->models);
        for (size_t t = 0; t < m->n_targets; t++)
            for (size_t u = 0; u < old->n_targets; u++) {
                if (!same_target(to->cfg, &m->targets[t], from->cfg, &old->targets[u])) continue;
                struct target_state *s = &to->states[to->group_offset[g] + t];
                *s = from->states[from->group_offset[og] + u];
                s->in_flight = 0; /* those requests report to the router they started on */
                s->probing = false;
                break;
            }
    }
    to->rng = from->rng;
}

void router_seed(struct router *r, uint64_t seed)
{
    r->rng = seed ? seed : 0x9E3779B97F4A7C15ULL;
}

void router_free(struct router *r)
{
    if (r == NULL) return;
    free(r->states);
    free(r->group_offset);
    free(r);
}
