/* Unit tests for src/obs/log.c: the rate limit on lines an outsider can trigger. */
#include "unit/cmocka_all.h"

#include "obs/log.h"

#define SEC 1000000000ull

static void test_log_rate_allow_caps_lines_per_second(void **state)
{
    (void)state;
    struct log_rate r = {0};
    unsigned allowed = 0;
    for (int i = 0; i < 100; i++) allowed += log_rate_allow(&r, 5, 10 * SEC + (uint64_t)i, NULL);
    assert_int_equal(allowed, 5);
}

static void test_log_rate_allow_reports_suppressed_count_in_next_window(void **state)
{
    (void)state;
    struct log_rate r = {0};
    unsigned long dropped = 99;
    assert_true(log_rate_allow(&r, 2, 10 * SEC, &dropped));
    assert_int_equal(dropped, 0);
    assert_true(log_rate_allow(&r, 2, 10 * SEC + 1, &dropped));
    for (int i = 0; i < 7; i++) assert_false(log_rate_allow(&r, 2, 10 * SEC + 2, &dropped));
    assert_false(log_rate_allow(&r, 2, 11 * SEC - 1, &dropped)); /* same window still */
    assert_true(log_rate_allow(&r, 2, 11 * SEC, &dropped));
    assert_int_equal(dropped, 8);
    assert_true(log_rate_allow(&r, 2, 11 * SEC + 1, &dropped));
    assert_int_equal(dropped, 0); /* the count was handed out once */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_log_rate_allow_caps_lines_per_second),
        cmocka_unit_test(test_log_rate_allow_reports_suppressed_count_in_next_window),
    };
    return cmocka_run_group_tests_name("src/obs/log.c", tests, NULL, NULL);
}
