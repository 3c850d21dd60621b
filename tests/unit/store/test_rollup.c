/* Unit tests for src/store/rollup: folding a batch into hour and day lines, route classes,
 * and how a report range splits between raw rows, hour lines and day lines. */
#include "unit/cmocka_all.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "store/rollup.h"

#define H ROLLUP_HOUR_MS
#define D ROLLUP_DAY_MS

static struct ledger_row row(int64_t ts, const char *customer, const char *route, int status,
                             double cost, bool known)
{
    struct ledger_row r = {.ts_ms = ts,
                           .status = status,
                           .prompt_tokens = 10,
                           .completion_tokens = -1, /* unknown: adds 0 */
                           .cached_tokens = -1,
                           .cost_known = known,
                           .cost_usd = cost,
                           .latency_ms = 2.5,
                           .ttft_ms = -1,
                           .saved_usd = -1};
    snprintf(r.customer, sizeof r.customer, "%s", customer);
    snprintf(r.route, sizeof r.route, "%s", route);
    snprintf(r.model, sizeof r.model, "chat");
    return r;
}

static void test_route_class_drops_figures_and_names_failover(void **state)
{
    (void)state;
    char out[160];
    rollup_route_class("latency; lowest ttfb up (12.0 ms); after 2 failed attempts", out,
                       sizeof out);
    assert_string_equal(out, "latency; lowest ttfb up; after failover");
    rollup_route_class("cost; cheapest (0.41 ms)", out, sizeof out);
    assert_string_equal(out, "cost; cheapest");
    rollup_route_class("priority; ", out, sizeof out);
    assert_string_equal(out, "priority");
    rollup_route_class("", out, sizeof out);
    assert_string_equal(out, "");
    /* a class is its own class: reports apply it again to raw rows at a range's ends */
    char again[160];
    rollup_route_class("latency; lowest ttfb up; after failover", again, sizeof again);
    assert_string_equal(again, "latency; lowest ttfb up; after failover");
}

static void test_fold_sums_rows_sharing_a_line_per_hour_and_day(void **state)
{
    (void)state;
    int64_t t = 1000 * D + 5 * H; /* some day, 05:00 UTC */
    struct ledger_row rows[] = {
        row(t + 1, "acme", "cost; cheapest (1 ms)", 200, 0.5, true),
        row(t + 2, "acme", "cost; cheapest (2 ms)", 502, 0.25, true), /* same class */
        row(t + H, "acme", "cost; cheapest (3 ms)", 200, 0, false),   /* next hour, same day */
        row(t + 3, "globex", "cost; cheapest", 200, 1, true),
    };
    struct rollup_line lines[4 * ROLLUP_LINES_PER_ROW];
    size_t n = rollup_fold(rows, 4, lines);
    for (size_t i = 1; i < n; i++) { /* one total order: span, dimension, bucket, value */
        const struct rollup_line *a = &lines[i - 1], *b = &lines[i];
        assert_true(a->span_ms < b->span_ms ||
                    (a->span_ms == b->span_ms &&
                     (a->dim < b->dim ||
                      (a->dim == b->dim &&
                       (a->bucket_ms < b->bucket_ms ||
                        (a->bucket_ms == b->bucket_ms && strcmp(a->value, b->value) < 0))))));
    }
    const struct rollup_line *acme5 = NULL, *acme_day = NULL, *route_hour = NULL, *model_day = NULL;
    size_t customer_hours = 0;
    for (size_t i = 0; i < n; i++) {
        const struct rollup_line *l = &lines[i];
        if (l->dim == ROLLUP_CUSTOMER && l->span_ms == H) customer_hours++;
        if (l->dim == ROLLUP_CUSTOMER && l->span_ms == H && l->bucket_ms == t &&
            strcmp(l->value, "acme") == 0)
            acme5 = l;
        if (l->dim == ROLLUP_CUSTOMER && l->span_ms == D && strcmp(l->value, "acme") == 0)
            acme_day = l;
        if (l->dim == ROLLUP_ROUTE && l->span_ms == H && l->bucket_ms == t) route_hour = l;
        if (l->dim == ROLLUP_MODEL && l->span_ms == D) model_day = l;
    }
    /* customer hours: acme@05, acme@06, globex@05 */
    assert_int_equal(customer_hours, 3);
    assert_non_null(acme5);
    assert_int_equal(acme5->requests, 2);
    assert_int_equal(acme5->errors, 1);
    assert_int_equal(acme5->prompt_tokens, 20);
    assert_int_equal(acme5->completion_tokens, 0);
    assert_true(acme5->cost_usd > 0.7499 && acme5->cost_usd < 0.7501);
    assert_int_equal(acme5->ttft_count, 0);
    assert_non_null(acme_day);
    assert_int_equal(acme_day->bucket_ms, 1000 * D);
    assert_int_equal(acme_day->requests, 3);
    assert_int_equal(acme_day->unknown_cost, 1);
    assert_true(acme_day->latency_ms > 7.49 && acme_day->latency_ms < 7.51);
    /* every route text of 05:00 has one class: one line of three requests */
    assert_non_null(route_hour);
    assert_string_equal(route_hour->value, "cost; cheapest");
    assert_int_equal(route_hour->requests, 3);
    /* one model all day: one line of four */
    assert_non_null(model_day);
    assert_string_equal(model_day->value, "chat");
    assert_int_equal(model_day->requests, 4);
    assert_string_equal(rollup_dim_name(ROLLUP_KEY), "key");
    assert_int_equal(rollup_fold(rows, 0, lines), 0);
}

static void test_plan_reads_raw_ends_hour_lines_and_day_lines(void **state)
{
    (void)state;
    struct rollup_plan p;
    int64_t d0 = 1000 * D;
    /* 00:17 on day 0 to 05:03 on day 2: raw ends, hours to the day edges, day 1 whole */
    rollup_plan(d0 + 17 * 60000, d0 + 2 * D + 5 * H + 3 * 60000, 0, 0, &p);
    assert_int_equal(p.raw[0][0], d0 + 17 * 60000);
    assert_int_equal(p.raw[0][1], d0 + H);
    assert_int_equal(p.hour[0][0], d0 + H);
    assert_int_equal(p.hour[0][1], d0 + D);
    assert_int_equal(p.day[0], d0 + D);
    assert_int_equal(p.day[1], d0 + 2 * D);
    assert_int_equal(p.hour[1][0], d0 + 2 * D);
    assert_int_equal(p.hour[1][1], d0 + 2 * D + 5 * H);
    assert_int_equal(p.raw[1][0], d0 + 2 * D + 5 * H);
    assert_int_equal(p.raw[1][1], d0 + 2 * D + 5 * H + 3 * 60000);
    /* hour buckets: day lines cannot be split, so hours all the way */
    rollup_plan(d0 + 17 * 60000, d0 + 2 * D + 5 * H, H, 0, &p);
    assert_true(p.day[0] >= p.day[1]);
    assert_int_equal(p.hour[0][0], d0 + H);
    assert_int_equal(p.hour[0][1], d0 + 2 * D + 5 * H);
    /* inside one hour: raw rows only */
    rollup_plan(d0 + 60000, d0 + 50 * 60000, 0, 0, &p);
    assert_int_equal(p.raw[0][0], d0 + 60000);
    assert_int_equal(p.raw[0][1], d0 + 50 * 60000);
    assert_true(p.hour[0][0] >= p.hour[0][1] && p.hour[1][0] >= p.hour[1][1]);
    /* rows before kept_from were deleted: that end reads its whole hour from lines */
    rollup_plan(d0 + 17 * 60000, d0 + 3 * H, 0, d0 + D, &p);
    assert_true(p.raw[0][0] >= p.raw[0][1]);
    assert_int_equal(p.hour[0][0], d0);
    rollup_plan(d0 + 17 * 60000, d0 + 3 * H + 60000, 0, d0 + D, &p);
    assert_int_equal(p.hour[1][1], d0 + 4 * H);
    assert_true(p.raw[1][0] >= p.raw[1][1]);
}

/* Margin lines: tier and customer per hour and day; errors, unpriced and unknown counted. */
static void test_fold_margin_sums_tier_and_customer_lines(void **state)
{
    (void)state;
    struct ledger_row rows[3] = {row(10 * H + 5, "acme", "", 200, 0.01, true),
                                 row(10 * H + 9, "acme", "", 200, 0.02, false),
                                 row(11 * H + 1, "zeta", "", 200, 0.5, true)};
    strcpy(rows[0].tier, "gold");
    rows[0].revenue_known = rows[0].margin_known = true;
    rows[0].revenue_usd = 0.03;
    rows[0].margin_usd = 0.02;
    strcpy(rows[1].tier, "gold");
    rows[1].revenue_known = true; /* cost unknown: no margin */
    rows[1].revenue_usd = 0.04;
    /* rows[2]: no tier */
    struct margin_rollup_line out[3 * MARGIN_LINES_PER_ROW];
    size_t n = rollup_fold_margin(rows, 3, out);
    /* hour: tier gold@10, tier ""@11, customer acme@10, customer zeta@11; day: tier gold,
     * tier "", customer acme, customer zeta */
    assert_int_equal(n, 8);
    for (size_t i = 1; i < n; i++) { /* key order: span, dim, bucket, value */
        const struct margin_rollup_line *a = &out[i - 1], *b = &out[i];
        assert_true(a->span_ms < b->span_ms ||
                    (a->span_ms == b->span_ms &&
                     (a->dim < b->dim ||
                      (a->dim == b->dim &&
                       (a->bucket_ms < b->bucket_ms ||
                        (a->bucket_ms == b->bucket_ms && strcmp(a->value, b->value) < 0))))));
    }
    const struct margin_rollup_line *gold = &out[0];
    assert_int_equal(gold->span_ms, H);
    assert_int_equal(gold->dim, MARGIN_DIM_TIER);
    assert_string_equal(gold->value, "gold");
    assert_int_equal(gold->bucket_ms, 10 * H);
    assert_int_equal(gold->requests, 2);
    assert_true(fabs(gold->revenue_usd - 0.07) < 1e-15);
    assert_true(fabs(gold->cost_usd - 0.01) < 1e-15); /* the known cost only */
    assert_true(fabs(gold->margin_usd - 0.02) < 1e-15);
    assert_int_equal(gold->unknown_cost, 1);
    assert_int_equal(gold->unpriced, 0);
    const struct margin_rollup_line *none = &out[1];
    assert_string_equal(none->value, "");
    assert_int_equal(none->unpriced, 1);
    assert_true(none->revenue_usd == 0 && none->cost_usd == 0.5);
    const struct margin_rollup_line *day_acme = &out[6];
    assert_int_equal(day_acme->span_ms, D);
    assert_int_equal(day_acme->dim, MARGIN_DIM_CUSTOMER);
    assert_string_equal(day_acme->value, "acme");
    assert_int_equal(day_acme->requests, 2);
    assert_string_equal(margin_dim_name(MARGIN_DIM_CUSTOMER), "customer");
    assert_int_equal(rollup_fold_margin(rows, 0, out), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_route_class_drops_figures_and_names_failover),
        cmocka_unit_test(test_fold_sums_rows_sharing_a_line_per_hour_and_day),
        cmocka_unit_test(test_plan_reads_raw_ends_hour_lines_and_day_lines),
        cmocka_unit_test(test_fold_margin_sums_tier_and_customer_lines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
