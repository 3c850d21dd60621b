/* Unit tests for src/obs/metrics.c: per-request series, histogram buckets, the customer cap,
 * label escaping and both exposition formats. */
#include "unit/cmocka_all.h"

#include <stdlib.h>
#include <string.h>

#include "obs/metrics.h"

static char *render(struct metrics *m, enum metrics_format f)
{
    struct metrics_out *o = metrics_out_new(f);
    assert_non_null(o);
    metrics_render(m, o);
    size_t len;
    char *text = metrics_out_take(o, &len);
    assert_non_null(text);
    assert_int_equal(strlen(text), len);
    return text;
}

static struct metrics_request served(const char *customer, double seconds)
{
    return (struct metrics_request){.surface = "openai",
                                    .model = "chat",
                                    .backend = "up",
                                    .team = "ml",
                                    .customer = customer,
                                    .status = 200,
                                    .duration_s = seconds,
                                    .ttft_s = seconds / 2,
                                    .input_tokens = 100,
                                    .output_tokens = 20,
                                    .cost_known = true,
                                    .cost_usd = 0.5,
                                    .attempts = 2,
                                    .guard = "deny:no-rm, pii:email"};
}

static void test_requests_histograms_and_costs(void **state)
{
    (void)state;
    struct metrics *m = metrics_new(10);
    struct metrics_request a = served("acme", 0.07), b = served("acme", 3);
    metrics_count_request(m, &a);
    metrics_count_request(m, &b);
    char *t = render(m, METRICS_PROMETHEUS);
    assert_non_null(strstr(t, "# TYPE stratus_requests_total counter\n"));
    assert_non_null(strstr(t, "stratus_requests_total{surface=\"openai\",model=\"chat\",backend="
                              "\"up\",status=\"200\"} 2\n"));
    /* 0.07 s lands in le=0.1 and above; 3 s in le=5 and above: cumulative counts. */
    assert_non_null(strstr(t, "gen_ai_server_request_duration_seconds_bucket{model=\"chat\","
                              "backend=\"up\",le=\"0.05\"} 0\n"));
    assert_non_null(strstr(t, "gen_ai_server_request_duration_seconds_bucket{model=\"chat\","
                              "backend=\"up\",le=\"0.1\"} 1\n"));
    assert_non_null(strstr(t, "gen_ai_server_request_duration_seconds_bucket{model=\"chat\","
                              "backend=\"up\",le=\"2.5\"} 1\n"));
    assert_non_null(strstr(t, "gen_ai_server_request_duration_seconds_bucket{model=\"chat\","
                              "backend=\"up\",le=\"5\"} 2\n"));
    assert_non_null(strstr(t, "gen_ai_server_request_duration_seconds_bucket{model=\"chat\","
                              "backend=\"up\",le=\"+Inf\"} 2\n"));
    assert_non_null(strstr(t, "gen_ai_server_request_duration_seconds_sum{model=\"chat\","
                              "backend=\"up\"} 3.07\n"));
    assert_non_null(strstr(t, "gen_ai_client_token_usage_sum{model=\"chat\",backend=\"up\","
                              "gen_ai_token_type=\"input\"} 200\n"));
    assert_non_null(
        strstr(t, "stratus_cost_usd_total{model=\"chat\",backend=\"up\",team=\"ml\"} 1\n"));
    assert_non_null(strstr(t, "stratus_upstream_attempts_total{model=\"chat\"} 4\n"));
    assert_non_null(strstr(t, "stratus_failovers_total{model=\"chat\"} 2\n"));
    assert_non_null(strstr(t, "stratus_guard_hits_total{guard=\"deny:no-rm\"} 2\n"));
    assert_non_null(strstr(t, "stratus_guard_hits_total{guard=\"pii:email\"} 2\n"));
    free(t);
    metrics_free(m);
}

static void test_unknown_models_and_customers_past_the_cap_share_series(void **state)
{
    (void)state;
    struct metrics *m = metrics_new(2);
    const char *customers[] = {"c1", "c2", "c3", "c4", "c1"};
    for (int i = 0; i < 5; i++) {
        struct metrics_request r = served(customers[i], 0.1);
        metrics_count_request(m, &r);
    }
    struct metrics_request refused = {
        .surface = "openai", .status = 404, .error_code = "model_not_found", .attempts = 0};
    metrics_count_request(m, &refused);
    char *t = render(m, METRICS_PROMETHEUS);
    assert_non_null(strstr(t, "stratus_customer_cost_usd_total{customer=\"c1\"} 1\n"));
    assert_non_null(strstr(t, "stratus_customer_cost_usd_total{customer=\"c2\"} 0.5\n"));
    assert_non_null(strstr(t, "stratus_customer_cost_usd_total{customer=\"other\"} 1\n"));
    assert_null(strstr(t, "customer=\"c3\""));
    assert_non_null(strstr(
        t,
        "stratus_requests_total{surface=\"openai\",model=\"\",backend=\"\",status=\"404\"} 1\n"));
    assert_non_null(strstr(t, "stratus_refusals_total{code=\"model_not_found\"} 1\n"));
    free(t);
    metrics_free(m);
}

static void test_label_values_are_escaped_and_openmetrics_differs(void **state)
{
    (void)state;
    struct metrics *m = metrics_new(10);
    struct metrics_request r = served("a\"b\\c\nd", 0.1);
    metrics_count_request(m, &r);
    char *t = render(m, METRICS_PROMETHEUS);
    assert_non_null(strstr(t, "{customer=\"a\\\"b\\\\c\\nd\"} 0.5\n"));
    assert_null(strstr(t, "# EOF"));
    free(t);
    t = render(m, METRICS_OPENMETRICS);
    assert_non_null(strstr(t, "# TYPE stratus_requests counter\n"));
    assert_non_null(strstr(t, "\nstratus_requests_total{"));
    size_t n = strlen(t);
    assert_true(n > 6 && strcmp(t + n - 6, "# EOF\n") == 0);
    free(t);
    assert_string_equal(metrics_content_type(METRICS_PROMETHEUS),
                        "text/plain; version=0.0.4; charset=utf-8");
    metrics_free(m);
}

static void test_metrics_ttft_estimates_quantiles_per_backend(void **state)
{
    (void)state;
    struct metrics *m = metrics_new(10);
    double p50 = -1, p95 = -1;
    assert_int_equal(metrics_ttft(m, "up", &p50, &p95), 0); /* nothing seen: untouched */
    assert_true(p50 == -1 && p95 == -1);
    /* 10 requests at 0.03 s (bucket 0.025..0.05), over two model groups, and 10 at 0.3 s
     * (0.25..0.5); another backend's must not count. */
    for (int i = 0; i < 20; i++) {
        struct metrics_request r = served("acme", 0.6);
        r.model = i % 2 ? "chat" : "other";
        r.ttft_s = i < 10 ? 0.03 : 0.3;
        metrics_count_request(m, &r);
    }
    struct metrics_request elsewhere = served("acme", 100);
    elsewhere.backend = "down";
    elsewhere.ttft_s = 500;
    metrics_count_request(m, &elsewhere);
    assert_int_equal(metrics_ttft(m, "up", &p50, &p95), 20);
    assert_float_equal(p50, 0.05, 1e-9);                           /* the 10th: the bucket's top */
    assert_float_equal(p95, 0.25 + 0.25 * (19.0 - 10) / 10, 1e-9); /* linear in 0.25..0.5 */
    assert_int_equal(metrics_ttft(m, "down", &p50, &p95), 1);
    assert_float_equal(p95, 120, 1e-9); /* past the last bound: that bound */
    metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_requests_histograms_and_costs),
        cmocka_unit_test(test_unknown_models_and_customers_past_the_cap_share_series),
        cmocka_unit_test(test_label_values_are_escaped_and_openmetrics_differs),
        cmocka_unit_test(test_metrics_ttft_estimates_quantiles_per_backend),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
