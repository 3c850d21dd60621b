/* Unit tests for src/cost/report.c: line order, top-N with "other" (whole range and per
 * bucket), bucket names, CSV quoting (RFC 4180) and formula neutralising. */
#include "unit/cmocka_all.h"

#include <stdlib.h>
#include <string.h>

#include "cost/report.h"

static struct spend_line line(int64_t bucket, const char *group, int64_t requests, double usd)
{
    struct spend_line l = {.bucket_ms = bucket, .requests = requests, .cost_usd = usd};
    snprintf(l.group, sizeof l.group, "%s", group);
    return l;
}

static void test_spend_lines_sort_bucket_then_cost_then_name(void **state)
{
    (void)state;
    struct spend_line l[] = {line(2, "b", 1, 1), line(1, "z", 1, 1), line(1, "a", 1, 1),
                             line(1, "m", 1, 5)};
    spend_lines_sort(l, 4);
    assert_string_equal(l[0].group, "m"); /* bucket 1, largest cost */
    assert_string_equal(l[1].group, "a"); /* ties by name */
    assert_string_equal(l[2].group, "z");
    assert_true(l[3].bucket_ms == 2);
}

static void test_spend_lines_top_folds_the_rest_into_other(void **state)
{
    (void)state;
    struct spend_line l[] = {line(0, "a", 1, 9), line(0, "b", 2, 5), line(0, "c", 3, 2),
                             line(0, "d", 4, 1)};
    int n = spend_lines_top(l, 4, l, 4, 2);
    assert_int_equal(n, 3);
    assert_string_equal(l[0].group, "a");
    assert_string_equal(l[1].group, "b");
    assert_string_equal(l[2].group, "other");
    assert_int_equal(l[2].requests, 7);
    assert_true(l[2].cost_usd > 2.999 && l[2].cost_usd < 3.001);
    assert_int_equal(l[2].other_groups, 2);
}

static void test_spend_lines_top_keeps_everything_when_few_groups(void **state)
{
    (void)state;
    struct spend_line l[] = {line(0, "a", 1, 9), line(0, "b", 2, 5)};
    assert_int_equal(spend_lines_top(l, 2, l, 2, 2), 2);
    assert_int_equal(spend_lines_top(l, 2, l, 2, 0), 2);
    assert_string_equal(l[1].group, "b");
}

static void test_spend_lines_top_ranks_over_the_range_not_per_bucket(void **state)
{
    (void)state;
    /* Over the range: a 10, b 6, c 3. In bucket 2, c is the largest but not in the top 2. */
    struct spend_line ranked[] = {line(0, "a", 1, 10), line(0, "b", 1, 6), line(0, "c", 1, 3)};
    struct spend_line l[] = {line(1, "a", 1, 9), line(1, "b", 1, 5), line(1, "c", 1, 1),
                             line(2, "c", 1, 2), line(2, "a", 1, 1), line(2, "b", 1, 1),
                             line(3, "b", 1, 0)};
    int n = spend_lines_top(l, 7, ranked, 3, 2);
    assert_int_equal(n, 7);
    assert_string_equal(l[2].group, "other");
    assert_true(l[2].bucket_ms == 1 && l[2].cost_usd > 0.999 && l[2].cost_usd < 1.001);
    assert_string_equal(l[3].group, "a");
    assert_string_equal(l[4].group, "b");
    assert_string_equal(l[5].group, "other"); /* after the bucket's kept lines */
    assert_true(l[5].bucket_ms == 2 && l[5].cost_usd > 1.999);
    assert_true(l[6].bucket_ms == 3 && strcmp(l[6].group, "b") == 0); /* no "other" needed */
}

static void test_spend_bucket_parse_names(void **state)
{
    (void)state;
    assert_int_equal(spend_bucket_parse("hour"), SPEND_BUCKET_HOUR);
    assert_int_equal(spend_bucket_parse("day"), SPEND_BUCKET_DAY);
    assert_int_equal(spend_bucket_parse(NULL), SPEND_BUCKET_NONE);
    assert_int_equal(spend_bucket_parse("week"), -1);
    assert_true(spend_bucket_ms(SPEND_BUCKET_DAY) == 86400000);
    assert_string_equal(spend_bucket_name(SPEND_BUCKET_HOUR), "hour");
}

static void test_spend_report_csv_quotes_and_neutralises(void **state)
{
    (void)state;
    struct spend_line l[] = {line(0, "plain", 2, 0.5), line(0, "a,b \"q\"", 1, 0.25),
                             line(0, "=HYPERLINK(\"x\")", 1, 0), line(0, "two\nlines", 1, 0)};
    l[0].prompt_tokens = 30;
    l[0].completion_tokens = 7;
    struct spend_report r = {.by = SPEND_BY_CUSTOMER, .lines = l, .n = 4};
    size_t len = 0;
    char *csv = spend_report_csv(&r, &len);
    assert_non_null(csv);
    assert_int_equal(len, strlen(csv));
    assert_string_equal(csv, "customer,requests,prompt_tokens,completion_tokens,cost_usd,"
                             "unknown_cost_requests,estimated_requests\r\n"
                             "plain,2,30,7,0.5,0,0\r\n"
                             "\"a,b \"\"q\"\"\",1,0,0,0.25,0,0\r\n"
                             "\"'=HYPERLINK(\"\"x\"\")\",1,0,0,0,0,0\r\n"
                             "\"two\nlines\",1,0,0,0,0,0\r\n");
    free(csv);
}

static void test_spend_report_csv_series_has_a_bucket_column(void **state)
{
    (void)state;
    struct spend_line l[] = {line(86400000, "m", 1, 1)};
    struct spend_report r = {.by = SPEND_BY_MODEL, .bucket = SPEND_BUCKET_DAY, .lines = l, .n = 1};
    char *csv = spend_report_csv(&r, NULL);
    assert_non_null(csv);
    assert_non_null(strstr(csv, "bucket,model,requests,"));
    assert_non_null(strstr(csv, "\r\n1970-01-02T00:00:00Z,m,1,0,0,1,0,0\r\n"));
    free(csv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spend_lines_sort_bucket_then_cost_then_name),
        cmocka_unit_test(test_spend_lines_top_folds_the_rest_into_other),
        cmocka_unit_test(test_spend_lines_top_keeps_everything_when_few_groups),
        cmocka_unit_test(test_spend_lines_top_ranks_over_the_range_not_per_bucket),
        cmocka_unit_test(test_spend_bucket_parse_names),
        cmocka_unit_test(test_spend_report_csv_quotes_and_neutralises),
        cmocka_unit_test(test_spend_report_csv_series_has_a_bucket_column),
    };
    return cmocka_run_group_tests_name("src/cost/report.c", tests, NULL, NULL);
}
