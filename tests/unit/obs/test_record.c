/* Unit tests for src/obs/record.c: one description of a finished request becomes its ledger
 * row — served, refused before routing, and by a virtual key. */
#include "unit/cmocka_all.h"

#include <math.h>
#include <string.h>

#include "guard/guard.h"
#include "http/server.h"
#include "obs/record.h"
#include "store/store.h"

#define MS 1000000ull

static void test_a_served_request_fills_every_column(void **state)
{
    (void)state;
    struct http_request req = {
        .method = "POST", .path = "/v1/chat/completions", .start_ns = 1000 * MS};
    strcpy(req.request_id, "req_1");
    struct principal who = {.kind = PRINCIPAL_KEY};
    strcpy(who.key.id, "key_abc");
    strcpy(who.key.team, "ml");
    struct request_record r = {
        .req = &req,
        .status = 200,
        .model = "chat",
        .endpoint = "chat/completions",
        .who = &who,
        .customer = "acme",
        .stream = true,
        .backend = "up",
        .target_model = "gpt-x",
        .attempts = 2,
        .route_policy = "priority",
        .route_reason = "first available",
        .first_byte_ns = 1040 * MS,
        .accounted = true,
        .usage = {.prompt = 11, .completion = 5, .cached = 3},
        .cost_known = true,
        .cost_usd = 0.25,
    };
    struct ledger_row row;
    record_fill_row(&r, 1250 * MS, 1800000000250, &row);
    assert_int_equal(row.ts_ms, 1800000000000); /* arrival, not completion */
    assert_string_equal(row.request_id, "req_1");
    assert_string_equal(row.key_id, "key_abc");
    assert_string_equal(row.team, "ml");
    assert_string_equal(row.customer, "acme");
    assert_string_equal(row.model, "chat");
    assert_string_equal(row.backend, "up");
    assert_string_equal(row.target_model, "gpt-x");
    assert_string_equal(row.endpoint, "chat/completions");
    assert_int_equal(row.status, 200);
    assert_true(row.stream);
    assert_int_equal(row.prompt_tokens, 11);
    assert_int_equal(row.completion_tokens, 5);
    assert_int_equal(row.cached_tokens, 3);
    assert_false(row.estimated);
    assert_true(row.cost_known);
    assert_true(row.cost_usd == 0.25);
    assert_true(row.latency_ms > 249.99 && row.latency_ms < 250.01);
    assert_true(row.ttft_ms > 39.99 && row.ttft_ms < 40.01);
    assert_string_equal(row.route, "priority; first available");
}

static void test_a_refused_request_cost_nothing_and_knows_no_tokens(void **state)
{
    (void)state;
    struct http_request req = {.method = "POST", .path = "/v1/embeddings", .start_ns = 5 * MS};
    strcpy(req.request_id, "req_2");
    struct principal master = {.kind = PRINCIPAL_MASTER};
    struct request_record r = {.req = &req, .status = 429, .model = "emb", .who = &master};
    struct ledger_row row;
    record_fill_row(&r, 6 * MS, 42, &row);
    assert_string_equal(row.endpoint, "embeddings"); /* from the path when not given */
    assert_string_equal(row.key_id, "master");
    assert_string_equal(row.team, "");
    assert_string_equal(row.backend, "");
    assert_int_equal(row.prompt_tokens, -1);
    assert_int_equal(row.completion_tokens, -1);
    assert_true(row.cost_known); /* nothing was served: 0, known */
    assert_true(row.cost_usd == 0);
    assert_true(row.ttft_ms == -1);
    assert_string_equal(row.route, "");
    /* A backend is only named when an attempt was made. */
    r.backend = "up";
    record_fill_row(&r, 6 * MS, 42, &row);
    assert_string_equal(row.backend, "");
}

/* docs/tiers.md: revenue = per_request + tokens × the tier's prices; margin = revenue − cost,
 * unknown with the cost; errors are not charged; no tier, no revenue. */
static void test_a_tier_gives_revenue_and_margin(void **state)
{
    (void)state;
    struct http_request req = {.method = "POST", .path = "/v1/chat/completions", .start_ns = 0};
    struct tier_conf standard = {.name = "standard",
                                 .token_price_set = true,
                                 .price_input = 2,
                                 .price_output = 10,
                                 .price_per_request = 0.001};
    struct request_record r = {.req = &req,
                               .status = 200,
                               .accounted = true,
                               .usage = {.prompt = 1000, .completion = 500, .cached = 400},
                               .cost_known = true,
                               .cost_usd = 0.004,
                               .tier = &standard};
    struct ledger_row row;
    record_fill_row(&r, 0, 1, &row);
    assert_string_equal(row.tier, "standard");
    assert_true(row.revenue_known);
    /* 0.001 + (1000 × 2 + 500 × 10) / 1e6 = 0.008; cached tokens are charged in full */
    assert_true(fabs(row.revenue_usd - 0.008) < 1e-15);
    assert_true(row.margin_known);
    assert_true(fabs(row.margin_usd - 0.004) < 1e-15);
    /* Cost above revenue: a negative margin, recorded as such. */
    r.cost_usd = 0.01;
    record_fill_row(&r, 0, 1, &row);
    assert_true(fabs(row.margin_usd + 0.002) < 1e-15);
    /* Unknown cost: revenue stays, margin is unknown. */
    r.cost_known = false;
    record_fill_row(&r, 0, 1, &row);
    assert_true(row.revenue_known);
    assert_false(row.margin_known);
    /* Unknown usage with token prices: revenue unknown too. */
    r.usage.prompt = -1;
    record_fill_row(&r, 0, 1, &row);
    assert_false(row.revenue_known);
    assert_false(row.margin_known);
    /* A per-request-only tier does not need the usage. */
    struct tier_conf flat = {.name = "flat", .price_per_request = 0.05};
    r.tier = &flat;
    r.cost_known = true;
    record_fill_row(&r, 0, 1, &row);
    assert_true(row.revenue_known && row.revenue_usd == 0.05);
    assert_true(fabs(row.margin_usd - 0.04) < 1e-15);
    /* An error is not charged: revenue 0, the cost (if any) is the loss. */
    r.status = 502;
    record_fill_row(&r, 0, 1, &row);
    assert_true(row.revenue_known && row.revenue_usd == 0);
    assert_true(fabs(row.margin_usd + 0.01) < 1e-15);
    /* No tier: nothing, as before tiers existed. */
    r.tier = NULL;
    r.status = 200;
    record_fill_row(&r, 0, 1, &row);
    assert_string_equal(row.tier, "");
    assert_false(row.revenue_known);
    assert_false(row.margin_known);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_served_request_fills_every_column),
        cmocka_unit_test(test_a_refused_request_cost_nothing_and_knows_no_tokens),
        cmocka_unit_test(test_a_tier_gives_revenue_and_margin),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
