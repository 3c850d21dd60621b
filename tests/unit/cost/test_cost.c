/* Unit tests for src/cost: the price catalogue (load, lookup rules), cost arithmetic with
 * cached tokens, the local TCO formula, and local requests priced by engine time. */
#include "unit/cmocka_all.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cost/cost.h"
#include "cost/prices.h"
#include "providers/provider.h"

static const char CATALOGUE[] = "date: 2026-01-01\n"
                                "models:\n"
                                "  gpt-4o: { input: 2.5, output: 10, cached_input: 1.25 }\n"
                                "  gpt-4o-mini: { input: 0.15, output: 0.6 }\n"
                                "  anthropic.claude-3-haiku: { input: 0.25, output: 1.25 }\n"
                                "  amazon.nova-micro-v1: { input: 0.035, output: 0.14 }\n";

static void test_lookup_rules(void **state)
{
    (void)state;
    char why[256];
    struct price_catalogue *c =
        prices_load_string(CATALOGUE, strlen(CATALOGUE), "t", why, sizeof why);
    assert_non_null(c);
    assert_string_equal(c->date, "2026-01-01");
    assert_int_equal(c->n, 4);
    assert_string_equal(prices_lookup(c, "gpt-4o")->model, "gpt-4o");
    assert_string_equal(prices_lookup(c, "gpt-4o-mini")->model, "gpt-4o-mini");
    /* dated snapshots: the longest family wins */
    assert_string_equal(prices_lookup(c, "gpt-4o-mini-2024-07-18")->model, "gpt-4o-mini");
    assert_string_equal(prices_lookup(c, "gpt-4o-2024-08-06")->model, "gpt-4o");
    /* Bedrock ids, versions after ':' and cross-region prefixes */
    assert_string_equal(prices_lookup(c, "anthropic.claude-3-haiku-20240307-v1:0")->model,
                        "anthropic.claude-3-haiku");
    assert_string_equal(prices_lookup(c, "us.anthropic.claude-3-haiku-20240307-v1:0")->model,
                        "anthropic.claude-3-haiku");
    assert_string_equal(prices_lookup(c, "amazon.nova-micro-v1:0")->model, "amazon.nova-micro-v1");
    /* no false friends */
    assert_null(prices_lookup(c, "gpt-4ox"));
    assert_null(prices_lookup(c, "gpt-4"));
    assert_null(prices_lookup(c, "my-gpt-4o"));
    /* cached_input defaults to input */
    assert_true(prices_lookup(c, "gpt-4o-mini")->cached_input == 0.15);
    prices_free(c);
}

static void test_load_errors_name_the_place(void **state)
{
    (void)state;
    char why[256];
    const char *no_date = "models: { a: { input: 1, output: 1 } }\n";
    assert_null(prices_load_string(no_date, strlen(no_date), "p.yaml", why, sizeof why));
    assert_non_null(strstr(why, "p.yaml:1:1: missing 'date'"));
    const char *bad = "date: x\nmodels:\n  a: { input: cheap, output: 1 }\n";
    assert_null(prices_load_string(bad, strlen(bad), "p.yaml", why, sizeof why));
    assert_non_null(strstr(why, "p.yaml:3:6: needs { input: N, output: N }"));
    assert_null(prices_load("/nonexistent/prices.yaml", why, sizeof why));
    assert_non_null(strstr(why, "cannot open"));
}

static void test_builtin_catalogue_parses_and_knows_common_models(void **state)
{
    (void)state;
    char why[256];
    struct price_catalogue *c =
        prices_load_string(prices_builtin, prices_builtin_len, "(built-in)", why, sizeof why);
    if (c == NULL) fail_msg("%s", why);
    assert_true(c->n >= 20);
    const char *models[] = {"gpt-4o-mini", "claude-haiku-4-5", "claude-3-5-haiku-20241022",
                            "anthropic.claude-3-5-haiku-20241022-v1:0", "amazon.nova-lite-v1:0"};
    for (size_t i = 0; i < 5; i++)
        if (prices_lookup(c, models[i]) == NULL) fail_msg("no price for %s", models[i]);
    prices_free(c);
}

static void test_cost_prices_cached_tokens_separately(void **state)
{
    (void)state;
    struct price p = {.set = true, .input = 2.5, .output = 10, .cached_input = 1.25};
    struct usage u = {.prompt = 1000, .completion = 100, .cached = 400};
    /* 600 × 2.5 + 400 × 1.25 + 100 × 10 = 3000 per 1M */
    assert_true(cost_usd(&p, &u) > 0.0029999 && cost_usd(&p, &u) < 0.0030001);
    u.cached = -1; /* unknown cached count: all at the input rate */
    assert_true(cost_usd(&p, &u) > 0.0034999 && cost_usd(&p, &u) < 0.0035001);
    u.cached = 5000; /* more cached than prompt: capped */
    assert_true(cost_usd(&p, &u) > 0.0022499 && cost_usd(&p, &u) < 0.0022501);
}

static void test_local_tco_formula(void **state)
{
    (void)state;
    struct backend_conf bc = {.name = "local",
                              .type = BACKEND_LOCAL,
                              .tco = {.set = true,
                                      .watts = 120,
                                      .kwh_price = 0.15,
                                      .hardware_price = 1500,
                                      .lifetime_months = 36}};
    /* 0.12 kW × $0.15 + $1500 / (36 × 730 h) = 0.018 + 0.057078 = 0.075078 $/h */
    double per_hour = cost_tco_per_hour(&bc.tco);
    assert_true(per_hour > 0.075077 && per_hour < 0.075079);
    struct target_conf t = {.model = "m", .price = {.source = PRICE_LOCAL_TCO}};
    struct price p;
    assert_false(cost_target_price(&t, &bc.tco, 0, &p)); /* no throughput measured yet */
    assert_true(cost_target_price(&t, &bc.tco, 50, &p));
    /* 0.075078 / (50 × 3600) × 1e6 = 0.4171 $ per 1M output tokens; input free */
    assert_true(p.output > 0.4170 && p.output < 0.4172);
    assert_true(p.input == 0);
    struct target_conf none = {.model = "x"};
    assert_false(cost_target_price(&none, &bc.tco, 50, &p));
    assert_int_equal(p.source, PRICE_UNKNOWN);
}

static const struct tco_conf BOX = {
    .set = true, .watts = 120, .kwh_price = 0.15, .hardware_price = 1500, .lifetime_months = 36};

static void test_cost_engine_time_usd_charges_engine_seconds_at_tco_rate(void **state)
{
    (void)state;
    struct target_conf t = {.model = "m", .price = {.source = PRICE_LOCAL_TCO}};
    double usd = -1;
    /* an hour of engine time costs the hour: 0.075078 $ */
    assert_true(cost_engine_time_usd(&t, &BOX, 3600000, &usd));
    assert_true(usd > 0.075077 && usd < 0.075079);
    /* 250 ms: 0.075078 × 250 / 3.6e6 */
    assert_true(cost_engine_time_usd(&t, &BOX, 250, &usd));
    assert_true(fabs(usd - cost_tco_per_hour(&BOX) * 250 / 3.6e6) < 1e-15);
    /* linear: two requests sharing a step cost what the step costs */
    double a, b, both;
    assert_true(cost_engine_time_usd(&t, &BOX, 1.5, &a));
    assert_true(cost_engine_time_usd(&t, &BOX, 2.5, &b));
    assert_true(cost_engine_time_usd(&t, &BOX, 4, &both));
    assert_true(fabs(a + b - both) < 1e-18);
    /* no throughput measured yet, yet the first request is priced */
    struct price p;
    assert_false(cost_target_price(&t, &BOX, 0, &p));
    assert_true(cost_engine_time_usd(&t, &BOX, 0.5, &usd) && usd > 0);
}

static void test_cost_engine_time_usd_declines_when_not_tco_priced(void **state)
{
    (void)state;
    double usd = 42;
    struct target_conf t = {.model = "m", .price = {.source = PRICE_LOCAL_TCO}};
    assert_false(cost_engine_time_usd(&t, &BOX, -1, &usd)); /* the engine reported no time */
    struct tco_conf unset = BOX;
    unset.set = false;
    assert_false(cost_engine_time_usd(&t, &unset, 10, &usd));
    assert_false(cost_engine_time_usd(&t, NULL, 10, &usd));
    struct target_conf priced = {.model = "m",
                                 .price = {.set = true, .source = PRICE_CONFIG, .output = 1}};
    assert_false(cost_engine_time_usd(&priced, &BOX, 10, &usd)); /* its own price wins */
    struct target_conf cloud = {.model = "m", .price = {.source = PRICE_UNKNOWN}};
    assert_false(cost_engine_time_usd(&cloud, &BOX, 10, &usd));
    assert_true(usd == 42); /* untouched */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lookup_rules),
        cmocka_unit_test(test_load_errors_name_the_place),
        cmocka_unit_test(test_builtin_catalogue_parses_and_knows_common_models),
        cmocka_unit_test(test_cost_prices_cached_tokens_separately),
        cmocka_unit_test(test_local_tco_formula),
        cmocka_unit_test(test_cost_engine_time_usd_charges_engine_seconds_at_tco_rate),
        cmocka_unit_test(test_cost_engine_time_usd_declines_when_not_tco_priced),
    };
    return cmocka_run_group_tests_name("src/cost", tests, NULL, NULL);
}
