/* Unit tests for src/obs/traceparent.c: the W3C traceparent rules (what is refused and
 * why), formatting, ratio sampling, and how a request's context begins with export on/off. */
#include "unit/cmocka_all.h"

#include <stdio.h>
#include <string.h>

#include "obs/traceparent.h"

#define GOOD "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

static void test_traceparent_parse_reads_a_valid_header(void **state)
{
    (void)state;
    uint8_t t[16], p[8], f = 0;
    assert_int_equal(traceparent_parse(GOOD, t, p, &f), 0);
    char th[33], ph[17];
    trace_hex(t, 16, th);
    trace_hex(p, 8, ph);
    assert_string_equal(th, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_string_equal(ph, "00f067aa0ba902b7");
    assert_int_equal(f, 1);
}

static void test_traceparent_parse_refuses_what_the_spec_refuses(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",      /* no flags */
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",   /* uppercase */
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",   /* zero trace id */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",   /* zero parent id */
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",   /* version ff */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x", /* 00 is exactly 55 */
        "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",   /* separator */
        "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",   /* not hex */
        "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",    /* short version */
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",  /* later: 56th not '-' */
    };
    uint8_t t[16], p[8], f;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(traceparent_parse(bad[i], t, p, &f), -1);
    assert_int_equal(traceparent_parse(NULL, t, p, &f), -1);
}

static void test_traceparent_parse_reads_a_later_version_by_its_prefix(void **state)
{
    (void)state;
    uint8_t t[16], p[8], f;
    assert_int_equal(
        traceparent_parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-what-next", t, p,
                          &f),
        0);
    assert_int_equal(f, 0);
}

static void test_traceparent_format_round_trips(void **state)
{
    (void)state;
    uint8_t t[16], p[8], f;
    char out[TRACEPARENT_LEN + 1];
    assert_int_equal(traceparent_parse(GOOD, t, p, &f), 0);
    traceparent_format(t, p, f, out);
    assert_string_equal(out, GOOD);
}

static void test_trace_sampled_by_ratio_is_decided_by_the_trace_id(void **state)
{
    (void)state;
    uint8_t low[16] = {0}, high[16];
    memset(high, 0xff, sizeof high);
    low[15] = 1;
    assert_true(trace_sampled_by_ratio(high, 1.0));
    assert_false(trace_sampled_by_ratio(low, 0.0));
    assert_true(trace_sampled_by_ratio(low, 0.01));
    assert_false(trace_sampled_by_ratio(high, 0.99));
}

static void test_trace_context_begin_continues_a_client_trace(void **state)
{
    (void)state;
    struct trace_context tc;
    assert_int_equal(trace_context_begin(&tc, GOOD, true, 0.0), 1);
    assert_true(tc.has_parent);
    assert_true(tc.sampled); /* the client's flag wins over a ratio of 0 */
    assert_true(tc.recording);
    char line[TRACEPARENT_LINE_LEN + 1], span[17];
    trace_context_header(&tc, line);
    trace_hex(tc.span_id, 8, span);
    char want[TRACEPARENT_LINE_LEN + 1];
    snprintf(want, sizeof want, "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-%s-01", span);
    assert_string_equal(line, want);                   /* our span is the upstream's parent ... */
    assert_string_not_equal(span, "00f067aa0ba902b7"); /* ... not the client's */
}

static void test_trace_context_begin_honours_a_clients_unsampled_flag(void **state)
{
    (void)state;
    struct trace_context tc;
    assert_int_equal(trace_context_begin(
                         &tc, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", true, 1.0),
                     1);
    assert_false(tc.sampled);
    assert_false(tc.recording); /* not exported, still propagated (return 1) */
}

static void test_trace_context_begin_starts_a_new_trace_for_an_invalid_header(void **state)
{
    (void)state;
    struct trace_context a, b;
    assert_int_equal(trace_context_begin(&a, "garbage", true, 1.0), 1);
    assert_int_equal(trace_context_begin(&b, NULL, true, 1.0), 1);
    assert_false(a.has_parent);
    assert_true(a.recording);
    assert_memory_not_equal(a.trace_id, b.trace_id, 16); /* random, not a counter at 0 */
}

static void test_trace_context_begin_passes_through_when_not_exporting(void **state)
{
    (void)state;
    struct trace_context tc;
    assert_int_equal(trace_context_begin(&tc, NULL, false, 1.0), 0);
    assert_int_equal(trace_context_begin(&tc, "00-bad", false, 1.0), 0);
    assert_int_equal(trace_context_begin(&tc, GOOD, false, 1.0), 1);
    assert_false(tc.recording);
    char line[TRACEPARENT_LINE_LEN + 1];
    trace_context_header(&tc, line);
    assert_string_equal(line, "traceparent: " GOOD); /* unchanged: we are invisible */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_traceparent_parse_reads_a_valid_header),
        cmocka_unit_test(test_traceparent_parse_refuses_what_the_spec_refuses),
        cmocka_unit_test(test_traceparent_parse_reads_a_later_version_by_its_prefix),
        cmocka_unit_test(test_traceparent_format_round_trips),
        cmocka_unit_test(test_trace_sampled_by_ratio_is_decided_by_the_trace_id),
        cmocka_unit_test(test_trace_context_begin_continues_a_client_trace),
        cmocka_unit_test(test_trace_context_begin_honours_a_clients_unsampled_flag),
        cmocka_unit_test(test_trace_context_begin_starts_a_new_trace_for_an_invalid_header),
        cmocka_unit_test(test_trace_context_begin_passes_through_when_not_exporting),
    };
    return cmocka_run_group_tests_name("src/obs/traceparent.c", tests, NULL, NULL);
}
