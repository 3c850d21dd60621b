/* Unit tests for src/route/router.c: filters, policies, circuit breaker, explain. */
#include "unit/cmocka_all.h"

#include <stdio.h>
#include <string.h>

#include "providers/provider.h"
#include "route/router.h"

static uint64_t fake_ns;
static uint64_t fake_clock(void)
{
    return fake_ns;
}

#define MS 1000000ull

/* A group of `n` openai targets (or other types) with real provider ops. */
struct fixture {
    struct backend_conf bconf[8];
    struct backend backends[8];
    struct backend *table[8];
    struct target_conf targets[8];
    struct model_conf model;
    struct config cfg;
    struct router *r;
    size_t order[8];
    struct route_plan plan;
    struct route_request rq;
};

static void setup_fixture(struct fixture *f, size_t n, enum route_policy policy,
                          const enum backend_type *types)
{
    static const char *names[] = {"a", "b", "c", "d", "e", "f", "g", "h"};
    memset(f, 0, sizeof *f);
    for (size_t i = 0; i < n; i++) {
        f->bconf[i] = (struct backend_conf){.name = (char *)names[i],
                                            .type = types ? types[i] : BACKEND_OPENAI};
        f->table[i] = &f->backends[i];
        f->backends[i].conf = &f->bconf[i];
        f->backends[i].ops = provider_for(f->bconf[i].type);
        f->backends[i].ready = true; /* a local engine serving; tests take it down */
        f->targets[i] = (struct target_conf){.backend = (char *)names[i],
                                             .backend_index = i,
                                             .model = (char *)names[i],
                                             .weight = 1};
    }
    f->model = (struct model_conf){
        .name = "chat",
        .route = policy,
        .targets = f->targets,
        .n_targets = n,
        .retry = {.retries = 1},
        .cooldown = {.failures = 3,
                     .window_ms = 30000,
                     .duration_ms = 10000,
                     .max_duration_ms = 300000},
        .latency_decay_ms = 10000,
        .expected_output_tokens = 256,
    };
    f->cfg =
        (struct config){.models = &f->model, .n_models = 1, .backends = f->bconf, .n_backends = n};
    struct err e;
    f->r = router_new(&f->cfg, f->table, &e);
    assert_non_null(f->r);
    fake_ns = 1000 * MS;
    router_set_clock(f->r, fake_clock);
    router_seed(f->r, 42);
    f->plan = (struct route_plan){.order = f->order};
    f->rq = (struct route_request){
        .endpoint = OPENAI_CHAT, .prompt_tokens = 1000, .output_tokens = 100};
}

static size_t first(struct fixture *f)
{
    struct err e;
    assert_int_equal(router_plan(f->r, &f->model, &f->rq, &f->plan, &e), 0);
    return f->order[0];
}

/* One attempt on `t` that ends with `outcome`. */
static void attempt(struct fixture *f, size_t t, enum route_outcome outcome, uint64_t ttfb_us,
                    long retry_after)
{
    router_begin(f->r, &f->model, t);
    router_report(f->r, &f->model, t, outcome, ttfb_us, retry_after);
}

static void test_priority_keeps_configured_order(void **state)
{
    (void)state;
    struct fixture f;
    setup_fixture(&f, 3, ROUTE_PRIORITY, NULL);
    assert_int_equal(first(&f), 0);
    assert_int_equal(f.plan.n, 3);
    assert_int_equal(f.order[1], 1);
    assert_int_equal(f.order[2], 2);
    assert_string_equal(f.plan.policy, "priority");
    /* One failure is below the breaker's threshold: the order stays. */
    attempt(&f, 0, ROUTE_FAILED, 0, -1);
    assert_int_equal(first(&f), 0);
    router_free(f.r);
}

static void test_breaker_opens_after_failures_then_half_open_probe_closes_it(void **state)
{
    (void)state;
    struct fixture f;
    setup_fixture(&f, 2, ROUTE_PRIORITY, NULL);
    for (int i = 0; i < 3; i++) attempt(&f, 0, ROUTE_FAILED, 0, -1);
    assert_int_equal(first(&f), 1); /* a is cooling down */
    assert_int_equal(f.plan.n, 1);
    fake_ns += 9999 * MS;
    assert_int_equal(first(&f), 1); /* still inside duration_ms */
    fake_ns += 2 * MS;
    assert_int_equal(first(&f), 0); /* half-open: one probe may go */
    router_begin(f.r, &f.model, 0);
    assert_int_equal(first(&f), 1); /* while the probe is out, others skip a */
    router_report(f.r, &f.model, 0, ROUTE_OK, 5000, -1);
    assert_int_equal(first(&f), 0); /* closed again */
    attempt(&f, 0, ROUTE_FAILED, 0, -1);
    assert_int_equal(first(&f), 0); /* and the failure count started over */
    router_free(f.r);
}

/* A reload's router starts from what the old one learned about the same targets; targets
 * it did not know start fresh, and in-flight counts stay with the old router. */
static void test_reloaded_router_inherits_breakers_by_backend_and_model(void **state)
{
    (void)state;
    struct fixture old, next;
    setup_fixture(&old, 2, ROUTE_PRIORITY, NULL);
    for (int i = 0; i < 3; i++) attempt(&old, 0, ROUTE_FAILED, 0, -1);
    router_begin(old.r, &old.model, 1); /* one request in flight on b */
    assert_int_equal(first(&old), 1);   /* a's breaker is open */

    /* The new config lists the targets the other way round, plus a new one. */
    setup_fixture(&next, 3, ROUTE_PRIORITY, NULL);
    next.bconf[0].name = "b";
    next.targets[0].model = "b";
    next.bconf[1].name = "a";
    next.targets[1].model = "a";
    router_set_clock(old.r, fake_clock);
    router_inherit(next.r, old.r);
    fake_ns = 1000 * MS + 1 * MS;
    assert_int_equal(first(&next), 0); /* b, first in the new order, is fine */
    struct route_explain_row rows[3];
    struct err e;
    assert_int_equal(router_explain(next.r, &next.model, &next.rq, &next.plan, rows, &e), 0);
    assert_string_equal(rows[1].state, "open"); /* a is still cooling down */
    assert_string_equal(rows[2].state, "ok");   /* c is new */
    assert_int_equal(next.plan.n, 2);           /* a is left out while open */

    /* The same names with another model upstream are another target: nothing inherited. */
    struct fixture other;
    setup_fixture(&other, 2, ROUTE_PRIORITY, NULL);
    other.targets[0].model = "a-bigger";
    router_inherit(other.r, old.r);
    assert_int_equal(first(&other), 0);
    router_free(old.r);
    router_free(next.r);
    router_free(other.r);
}

static void test_failed_probe_reopens_for_twice_as_long(void **state)
{
    (void)state;
    struct fixture f;
    setup_fixture(&f, 2, ROUTE_PRIORITY, NULL);
    for (int i = 0; i < 3; i++) attempt(&f, 0, ROUTE_FAILED, 0, -1);
    fake_ns += 10001 * MS;
    assert_int_equal(first(&f), 0);
    attempt(&f, 0, ROUTE_FAILED, 0, -1); /* the probe fails */
    fake_ns += 19000 * MS;
    assert_int_equal(first(&f), 1); /* 20 s now, not 10 */
    fake_ns += 1001 * MS;
    assert_int_equal(first(&f), 0);
    router_free(f.r);
}

static void test_failures_outside_the_window_do_not_open_it(void **state)
{
    (void)state;
    struct fixture f;
    setup_fixture(&f, 2, ROUTE_PRIORITY, NULL);
    attempt(&f, 0, ROUTE_FAILED, 0, -1);
    attempt(&f, 0, ROUTE_FAILED, 0, -1);
    fake_ns += 31000 * MS;
    attempt(&f, 0, ROUTE_FAILED, 0, -1);
    assert_int_equal(first(&f), 0);
    router_free(f.r);
}

static void test_429_with_retry_after_opens_at_once_for_that_long(void **state)
{
    (void)state;
    struct fixture f;
    setup_fixture(&f, 2, ROUTE_PRIORITY, NULL);
    attempt(&f, 0, ROUTE_FAILED, 0, 30);
    assert_int_equal(first(&f), 1);
    fake_ns += 29 * 1000 * MS;
    assert_int_equal(first(&f), 1);
    fake_ns += 2 * 1000 * MS;
    assert_int_equal(first(&f), 0);
    router_free(f.r);
}

static void test_rejections_and_cancels_do_not_count_against_health(void **state)
{
    (void)state;
    struct fixture f;
    setup_fixture(&f, 2, ROUTE_PRIORITY, NULL);
    for (int i = 0; i < 10; i++) attempt(&f, 0, ROUTE_REJECTED, 0, -1);
    for (int i = 0; i < 10; i++) attempt(&f, 0, ROUTE_CANCELLED, 0, -1);
    assert_int_equal(first(&f), 0);
    router_free(f.r);
}

static void test_all_cooling_down_tries_them_anyway_soonest_first(void **state)
{
    (void)state;
    struct fixture f;
    setup_fixture(&f, 2, ROUTE_PRIORITY, NULL);
    attempt(&f, 0, ROUTE_FAILED, 0, 60);
    attempt(&f, 1, ROUTE_FAILED, 0, 5);
    assert_int_equal(first(&f), 1);
    assert_int_equal(f.plan.n, 2);
    assert_int_equal(f.order[1], 0);
    assert_non_null(strstr(f.plan.reason, "cooling down"));
    router_free(f.r);
}

static void test_weighted_split_follows_weights(void **state)
{
    (void)state;
    struct fixture f;
    setup_fixture(&f, 3, ROUTE_WEIGHTED, NULL);
    f.targets[0].weight = 1;
    f.targets[1].weight = 3;
    f.targets[2].weight = 0; /* fallback only */
    int counts[3] = {0};
    for (int i = 0; i < 20000; i++) counts[first(&f)]++;
    assert_int_equal(counts[2], 0);
    assert_in_range(counts[0], 5000 - 400, 5000 + 400);
    assert_in_range(counts[1], 15000 - 400, 15000 + 400);
    assert_int_equal(f.order[2], 2); /* the zero-weight target still backs them up */
    router_free(f.r);
}

static void test_latency_prefers_faster_and_returns_after_decay(void **state)
{
    (void)state;
    struct fixture f;
    setup_fixture(&f, 2, ROUTE_LATENCY, NULL);
    f.model.latency_decay_ms = 1000;
    attempt(&f, 0, ROUTE_OK, 100000, -1); /* a: 100 ms */
    attempt(&f, 1, ROUTE_OK, 10000, -1);  /* b: 10 ms */
    assert_int_equal(first(&f), 1);
    assert_non_null(strstr(f.plan.reason, "lowest ttfb b"));
    /* b keeps answering in 10 ms while a gets nothing; a's estimate fades. */
    for (int i = 0; i < 50; i++) {
        fake_ns += 100 * MS;
        attempt(&f, 1, ROUTE_OK, 10000, -1);
    }
    assert_int_equal(first(&f), 0); /* 5 s later, a deserves another look */
    /* It is still slow: one observation puts it back behind b. */
    attempt(&f, 0, ROUTE_OK, 100000, -1);
    assert_int_equal(first(&f), 1);
    router_free(f.r);
}

static void test_latency_counts_in_flight_and_penalises_errors(void **state)
{
    (void)state;
    struct fixture f;
    setup_fixture(&f, 2, ROUTE_LATENCY, NULL);
    attempt(&f, 0, ROUTE_OK, 10000, -1);
    attempt(&f, 1, ROUTE_OK, 15000, -1);
    assert_int_equal(first(&f), 0);
    router_begin(f.r, &f.model, 0); /* a: 2 requests' worth of 10 ms > b's 15 ms */
    assert_int_equal(first(&f), 1);
    router_report(f.r, &f.model, 0, ROUTE_FAILED, 0, -1);
    assert_int_equal(first(&f), 1); /* a failure reads as a 1 s first byte */
    router_free(f.r);
}

static void test_latency_tries_unmeasured_targets_first(void **state)
{
    (void)state;
    struct fixture f;
    setup_fixture(&f, 3, ROUTE_LATENCY, NULL);
    attempt(&f, 0, ROUTE_OK, 1000, -1);
    attempt(&f, 1, ROUTE_OK, 1000, -1);
    assert_int_equal(first(&f), 2);
    router_free(f.r);
}

static void test_least_busy_uses_in_flight_and_engine_slots(void **state)
{
    (void)state;
    struct fixture f;
    enum backend_type types[2] = {BACKEND_OPENAI, BACKEND_LOCAL};
    setup_fixture(&f, 2, ROUTE_LEAST_BUSY, types);
    f.backends[1].load.valid = true;
    f.backends[1].load.slots = 4;
    f.backends[1].load.busy_slots = 1;
    f.backends[1].load.queue_depth = 0;
    assert_int_equal(first(&f), 1); /* free slots beat an idle remote */
    f.backends[1].load.busy_slots = 4;
    f.backends[1].load.queue_depth = 2;
    assert_int_equal(first(&f), 0); /* saturated engine: spill to the remote */
    router_begin(f.r, &f.model, 0);
    router_begin(f.r, &f.model, 0);
    router_begin(f.r, &f.model, 0);
    assert_int_equal(first(&f), 1); /* 3 in flight remotely vs 2 queued locally */
    router_free(f.r);
}

static void test_cost_picks_cheapest_and_puts_unpriced_last(void **state)
{
    (void)state;
    struct fixture f;
    setup_fixture(&f, 3, ROUTE_COST, NULL);
    f.targets[0].price = (struct price){.set = true, .input = 3.0, .output = 15.0};
    f.targets[1].price = (struct price){.set = true, .input = 0.15, .output = 0.60};
    assert_int_equal(first(&f), 1);
    assert_int_equal(f.order[1], 0);
    assert_int_equal(f.order[2], 2);
    assert_non_null(strstr(f.plan.reason, "cheapest b"));
    /* Output-heavy requests can flip the order when output prices differ. */
    f.targets[0].price = (struct price){.set = true, .input = 0.01, .output = 2.0};
    f.rq.prompt_tokens = 100000;
    f.rq.output_tokens = 10;
    assert_int_equal(first(&f), 0);
    f.rq.prompt_tokens = 10;
    f.rq.output_tokens = 100000;
    assert_int_equal(first(&f), 1);
    /* The cheapest one cooling down: the next cheapest healthy one. */
    attempt(&f, 1, ROUTE_FAILED, 0, 30);
    assert_int_equal(first(&f), 0);
    router_free(f.r);
}

/* route: margin (docs/tiers.md): the best quality whose expected cost keeps the tier's
 * min_margin and max_cost_usd, else the cheapest; unpriced targets never lead. */
static void test_margin_best_quality_keeping_the_margin_else_cheapest(void **state)
{
    (void)state;
    struct fixture f;
    setup_fixture(&f, 4, ROUTE_MARGIN, NULL);
    /* 1000 prompt + 100 output tokens cost a $0.013, b $0.0014, c $0.00014; d unpriced. */
    f.targets[0].price = (struct price){.set = true, .input = 10, .output = 30};
    f.targets[1].price = (struct price){.set = true, .input = 1, .output = 4};
    f.targets[2].price = (struct price){.set = true, .input = 0.1, .output = 0.4};
    f.targets[0].quality = 3;
    f.targets[1].quality = 2;
    f.targets[2].quality = 1;
    f.targets[3].quality = 9;
    /* No tier: as cost. */
    assert_int_equal(first(&f), 2);
    assert_string_equal(f.plan.policy, "margin");
    assert_non_null(strstr(f.plan.reason, "no tier: cheapest c"));
    /* Premium charges $0.026: a keeps 50 % >= 30 %, and is the best. */
    struct tier_conf premium = {.name = "premium",
                                .token_price_set = true,
                                .price_input = 20,
                                .price_output = 60,
                                .min_margin_set = true,
                                .min_margin = 0.3};
    f.rq.tier = &premium;
    assert_int_equal(first(&f), 0);
    assert_int_equal(f.order[1], 1);
    assert_int_equal(f.order[2], 2);
    assert_int_equal(f.order[3], 3); /* unpriced: last, whatever its quality */
    assert_non_null(strstr(f.plan.reason, "tier premium: best quality keeping the margin a "
                                          "(quality 3, expected margin 50.0% >= 30.0%"));
    /* Standard charges $0.0028: a loses money, b keeps 50 %, c 95 %. */
    struct tier_conf standard = {.name = "standard",
                                 .token_price_set = true,
                                 .price_input = 2,
                                 .price_output = 8,
                                 .min_margin_set = true,
                                 .min_margin = 0.4};
    f.rq.tier = &standard;
    assert_int_equal(first(&f), 1);
    assert_int_equal(f.order[1], 2);
    assert_int_equal(f.order[2], 0); /* below the margin: after the keepers, by cost */
    standard.min_margin = 0.6;       /* b's 50 % no longer does */
    assert_int_equal(first(&f), 2);
    standard.min_margin = 0.4;
    standard.max_cost_usd = 0.001; /* b's $0.0014 is over the ceiling */
    assert_int_equal(first(&f), 2);
    /* Nothing keeps a margin of a tier that charges nothing: the cheapest, said so. */
    struct tier_conf free_tier = {.name = "free", .min_margin_set = true, .min_margin = 0.1};
    f.rq.tier = &free_tier;
    assert_int_equal(first(&f), 2);
    assert_int_equal(f.order[1], 1);
    assert_int_equal(f.order[2], 0);
    assert_non_null(strstr(f.plan.reason, "tier free: no target keeps the margin >= 10.0%; "
                                          "cheapest c (expected margin n/a"));
    /* A tier without min_margin or ceiling: every priced target keeps it, best first. */
    struct tier_conf open = {.name = "open", .price_per_request = 0.01};
    f.rq.tier = &open;
    assert_int_equal(first(&f), 0);
    /* The best one cooling down: the next best. */
    attempt(&f, 0, ROUTE_FAILED, 0, 30);
    assert_int_equal(first(&f), 1);
    router_free(f.r);
}

/* A tier with local_only: true is served by self-hosted targets only, never by a cloud one
 * as a last resort; a group without one is 403 for it. */
static void test_tier_local_only_keeps_cloud_targets_out(void **state)
{
    (void)state;
    struct fixture f;
    enum backend_type types[3] = {BACKEND_OPENAI, BACKEND_LOCAL, BACKEND_OPENAI};
    setup_fixture(&f, 3, ROUTE_PRIORITY, types);
    struct tier_conf free_tier = {.name = "free", .local_only = true};
    f.rq.tier = &free_tier;
    assert_int_equal(first(&f), 1);
    assert_int_equal(f.plan.n, 1); /* no cloud fallback at all */
    /* The local target cooling down: tried anyway, still never a cloud one. */
    attempt(&f, 1, ROUTE_FAILED, 0, 30);
    assert_int_equal(first(&f), 1);
    assert_int_equal(f.plan.n, 1);
    free_tier.local_only = false;
    assert_int_equal(first(&f), 0);
    router_free(f.r);

    setup_fixture(&f, 2, ROUTE_PRIORITY, NULL);
    free_tier.local_only = true;
    f.rq.tier = &free_tier;
    struct err e;
    assert_int_equal(router_plan(f.r, &f.model, &f.rq, &f.plan, &e), -1);
    assert_int_equal(e.status, 403);
    assert_string_equal(e.code, "model_not_allowed_for_tier");
    assert_string_equal(e.msg, "tier 'free' may use local targets only, and model 'chat' has none");
    router_free(f.r);
}

static void test_budget_soft_prefers_local_then_cheapest(void **state)
{
    (void)state;
    struct fixture f;
    enum backend_type types[3] = {BACKEND_OPENAI, BACKEND_OPENAI, BACKEND_LOCAL};
    setup_fixture(&f, 3, ROUTE_PRIORITY, types);
    f.targets[0].price = (struct price){.set = true, .input = 3.0, .output = 15.0};
    f.targets[1].price = (struct price){.set = true, .input = 0.15, .output = 0.60};
    assert_int_equal(first(&f), 0); /* no budget pressure: the configured order */
    f.rq.budget = ROUTE_BUDGET_SOFT;
    f.rq.budget_why = "team 'ml' at 85% of its $10.00 daily budget";
    /* The local target has no measured price yet and still goes first. */
    assert_int_equal(first(&f), 2);
    assert_int_equal(f.order[1], 1);
    assert_int_equal(f.order[2], 0);
    assert_string_equal(f.plan.policy, "cost");
    assert_non_null(strstr(f.plan.reason, "team 'ml' at 85%"));
    assert_non_null(strstr(f.plan.reason, "local first; c"));
    /* Local cooling down: the cheapest cloud target, said so. */
    attempt(&f, 2, ROUTE_FAILED, 0, 30);
    assert_int_equal(first(&f), 1);
    assert_non_null(strstr(f.plan.reason, "cheapest first; b"));
    router_free(f.r);
}

static void test_budget_local_only_filters_cloud_or_refuses(void **state)
{
    (void)state;
    struct fixture f;
    enum backend_type types[2] = {BACKEND_OPENAI, BACKEND_LOCAL};
    setup_fixture(&f, 2, ROUTE_PRIORITY, types);
    f.rq.budget = ROUTE_BUDGET_LOCAL_ONLY;
    f.rq.budget_why = "key 'k' at 100% of its $1.00 monthly budget";
    assert_int_equal(first(&f), 1);
    assert_int_equal(f.plan.n, 1);
    assert_non_null(strstr(f.plan.reason, "local only"));
    router_free(f.r);

    setup_fixture(&f, 2, ROUTE_PRIORITY, NULL); /* no local target at all */
    f.rq.budget = ROUTE_BUDGET_LOCAL_ONLY;
    f.rq.budget_why = "key 'k' at 100% of its $1.00 monthly budget";
    struct err e;
    err_clear(&e);
    assert_int_equal(router_plan(f.r, &f.model, &f.rq, &f.plan, &e), -1);
    assert_int_equal(e.status, 429);
    assert_string_equal(e.code, "budget_exceeded");
    assert_non_null(strstr(e.msg, "allows local targets only"));
    router_free(f.r);
}

static void test_local_engine_down_is_skipped_not_tried(void **state)
{
    (void)state;
    struct fixture f;
    enum backend_type types[2] = {BACKEND_LOCAL, BACKEND_OPENAI};
    setup_fixture(&f, 2, ROUTE_PRIORITY, types);
    f.backends[0].ready = false;
    snprintf(f.backends[0].not_ready_reason, sizeof f.backends[0].not_ready_reason,
             "model file build/models/x.gguf: No such file or directory (run make models)");
    assert_int_equal(first(&f), 1); /* the remote serves while the engine is down */
    assert_int_equal(f.plan.n, 1);  /* and the dead engine is not a last resort */

    f.model.n_targets = 1; /* only the engine: the answer names the real cause */
    struct err e;
    err_clear(&e);
    assert_int_equal(router_plan(f.r, &f.model, &f.rq, &f.plan, &e), -1);
    assert_int_equal(e.status, 503);
    assert_string_equal(e.code, "engine_not_ready");
    assert_string_equal(e.msg, "local engine 'a' not running: model file build/models/x.gguf: No "
                               "such file or directory (run make models)");
    snprintf(f.backends[0].not_ready_reason, sizeof f.backends[0].not_ready_reason,
             "loading model");
    assert_int_equal(router_plan(f.r, &f.model, &f.rq, &f.plan, &e), -1);
    assert_string_equal(e.msg, "local engine 'a' not ready: loading model");
    router_free(f.r);
}

static void test_capability_filter_and_no_target_for_endpoint(void **state)
{
    (void)state;
    struct fixture f;
    enum backend_type types[2] = {BACKEND_ANTHROPIC, BACKEND_OPENAI};
    setup_fixture(&f, 2, ROUTE_PRIORITY, types);
    f.rq.endpoint = OPENAI_EMBEDDINGS;
    assert_int_equal(first(&f), 1);
    assert_int_equal(f.plan.n, 1);
    f.model.n_targets = 1; /* only the anthropic one */
    struct err e;
    assert_int_equal(router_plan(f.r, &f.model, &f.rq, &f.plan, &e), -1);
    assert_int_equal(e.status, 400);
    assert_non_null(strstr(e.msg, "no target that serves this endpoint"));
    router_free(f.r);
}

static void test_explain_describes_every_target_without_changing_state(void **state)
{
    (void)state;
    struct fixture f;
    setup_fixture(&f, 3, ROUTE_WEIGHTED, NULL);
    for (int i = 0; i < 3; i++) attempt(&f, 2, ROUTE_FAILED, 0, -1);
    struct route_explain_row rows[3];
    struct err e;
    size_t before = first(&f);
    router_seed(f.r, 7);
    assert_int_equal(router_explain(f.r, &f.model, &f.rq, &f.plan, rows, &e), 0);
    size_t explained = f.order[0];
    router_seed(f.r, 7);
    assert_int_equal(first(&f), explained); /* same seed, same pick: explain used a copy */
    (void)before;
    assert_string_equal(rows[2].state, "open");
    assert_non_null(rows[2].skipped);
    assert_int_equal(rows[2].rank, 0);
    assert_string_equal(rows[0].score, "weight 1");
    assert_true(rows[0].rank >= 1 && rows[1].rank >= 1);
    router_free(f.r);
}

/* The last failure's text is kept per target, bounded, cut between UTF-8 characters, and
 * carried over a reload with the breaker. */
static void test_router_note_error_keeps_the_last_failure_text(void **state)
{
    (void)state;
    struct fixture f, next;
    struct route_target_stats st;
    setup_fixture(&f, 2, ROUTE_PRIORITY, NULL);
    router_target_stats(f.r, &f.model, 0, &st);
    assert_string_equal(st.last_error, "");
    router_begin(f.r, &f.model, 0);
    router_note_error(f.r, &f.model, 0, "HTTP 500: first");
    router_report(f.r, &f.model, 0, ROUTE_FAILED, 0, -1);
    router_note_error(f.r, &f.model, 0, "HTTP 503: second");
    router_target_stats(f.r, &f.model, 0, &st);
    assert_string_equal(st.last_error, "HTTP 503: second");
    assert_int_equal(st.failed, 1);
    router_target_stats(f.r, &f.model, 1, &st);
    assert_string_equal(st.last_error, ""); /* per target */
    /* 158 ASCII bytes then "é" (2 bytes) and more: the cut may not tear the é. */
    char long_text[300];
    memset(long_text, 'x', 158);
    strcpy(long_text + 158, "\xc3\xa9 and more");
    router_note_error(f.r, &f.model, 1, long_text);
    router_target_stats(f.r, &f.model, 1, &st);
    assert_int_equal(strlen(st.last_error), 158);
    setup_fixture(&next, 2, ROUTE_PRIORITY, NULL);
    router_inherit(next.r, f.r);
    router_target_stats(next.r, &next.model, 0, &st);
    assert_string_equal(st.last_error, "HTTP 503: second");
    router_free(f.r);
    router_free(next.r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_router_note_error_keeps_the_last_failure_text),
        cmocka_unit_test(test_priority_keeps_configured_order),
        cmocka_unit_test(test_breaker_opens_after_failures_then_half_open_probe_closes_it),
        cmocka_unit_test(test_reloaded_router_inherits_breakers_by_backend_and_model),
        cmocka_unit_test(test_failed_probe_reopens_for_twice_as_long),
        cmocka_unit_test(test_failures_outside_the_window_do_not_open_it),
        cmocka_unit_test(test_429_with_retry_after_opens_at_once_for_that_long),
        cmocka_unit_test(test_rejections_and_cancels_do_not_count_against_health),
        cmocka_unit_test(test_all_cooling_down_tries_them_anyway_soonest_first),
        cmocka_unit_test(test_weighted_split_follows_weights),
        cmocka_unit_test(test_latency_prefers_faster_and_returns_after_decay),
        cmocka_unit_test(test_latency_counts_in_flight_and_penalises_errors),
        cmocka_unit_test(test_latency_tries_unmeasured_targets_first),
        cmocka_unit_test(test_least_busy_uses_in_flight_and_engine_slots),
        cmocka_unit_test(test_cost_picks_cheapest_and_puts_unpriced_last),
        cmocka_unit_test(test_margin_best_quality_keeping_the_margin_else_cheapest),
        cmocka_unit_test(test_tier_local_only_keeps_cloud_targets_out),
        cmocka_unit_test(test_budget_soft_prefers_local_then_cheapest),
        cmocka_unit_test(test_budget_local_only_filters_cloud_or_refuses),
        cmocka_unit_test(test_capability_filter_and_no_target_for_endpoint),
        cmocka_unit_test(test_local_engine_down_is_skipped_not_tried),
        cmocka_unit_test(test_explain_describes_every_target_without_changing_state),
    };
    return cmocka_run_group_tests_name("src/route/router.c", tests, NULL, NULL);
}
