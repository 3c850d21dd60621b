/* Unit tests for src/obs/log.c: JSON escaping of any bytes (logs and error bodies), the rate
 * limit for lines outsiders can trigger, libevent's own warnings as JSON lines. */
#include "unit/cmocka_all.h"

#include <event2/event.h>
#include <event2/util.h>
#include <fcntl.h>
#include <jansson.h>
#include <string.h>
#include <unistd.h>

#include "obs/log.h"
#include "util/json_text.h"

#define SEC 1000000000ull

/* `"` + escaped + `"` must be a JSON string whose value is `want`. */
static void expect_json_string(const char *escaped, const char *want)
{
    char quoted[2048];
    snprintf(quoted, sizeof quoted, "\"%s\"", escaped);
    json_error_t jerr;
    json_t *j = json_loads(quoted, JSON_DECODE_ANY, &jerr);
    if (!json_is_string(j)) fail_msg("not a JSON string: %s (%s)", quoted, jerr.text);
    if (want && strcmp(json_string_value(j), want) != 0)
        fail_msg("%s decodes to '%s', not '%s'", quoted, json_string_value(j), want);
    json_decref(j);
}

static void test_json_escape_replaces_invalid_utf8(void **state)
{
    (void)state;
    char buf[256];
    const char model[] = "a\xff"
                         "b\xc3"
                         "\xa9"
                         "c\xed\xa0\x80"
                         "d\xc0\xaf"
                         "e\xf4\x90\x80\x80";
    json_escape(buf, sizeof buf, model, sizeof model - 1);
    assert_string_equal(buf, "a\\ufffdb\xc3\xa9"
                             "c\\ufffd\\ufffd\\ufffdd\\ufffd\\ufffde\\ufffd\\ufffd\\ufffd\\ufffd");
    expect_json_string(buf, NULL);
    /* A sequence cut by the end of the input is invalid too. */
    json_escape(buf, sizeof buf, "x\xe2\x82", 3);
    assert_string_equal(buf, "x\\ufffd\\ufffd");
    /* Valid text of every length passes through; quotes and controls are escaped. */
    const char ok[] = "\"q\" \\ \n\t\x01\x7f \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80";
    json_escape(buf, sizeof buf, ok, sizeof ok - 1);
    expect_json_string(buf, ok);
}

/* A buffer too small cuts between escapes, never inside one: still one JSON string. */
static void test_json_escape_truncates_between_escapes(void **state)
{
    (void)state;
    const char in[] = "\x01\x01\xff\xe2\x82\xac\"";
    for (size_t cap = 1; cap < 32; cap++) {
        char buf[32];
        size_t need = json_escape(buf, cap, in, sizeof in - 1);
        assert_int_equal(need, 6 + 6 + 6 + 3 + 2);
        assert_true(strlen(buf) < cap);
        expect_json_string(buf, NULL);
    }
}

/* A log line with hostile values is still one JSON object. */
static void test_log_str_keeps_line_valid_json(void **state)
{
    (void)state;
    struct log_line l;
    char bad[600];
    for (size_t i = 0; i < sizeof bad - 1; i++) bad[i] = (char)(i % 2 ? 0xff : 0x01);
    bad[sizeof bad - 1] = '\0';
    log_begin(&l, "info", "request");
    for (int k = 0; k < 8; k++) log_str(&l, "model", bad); /* more than the line holds */
    l.buf[l.len++] = '}';
    json_error_t jerr;
    json_t *j = json_loadb(l.buf, l.len, 0, &jerr);
    if (j == NULL) fail_msg("line is not JSON: %s", jerr.text);
    json_decref(j);
}

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

/* Issue #9 item 2: libevent's warnings (an accept() failing with EMFILE printed ~190k plain
 * "[warn] ..." lines a second) reach stderr as JSON log lines, at most `per_second` of them
 * in a second; a later window says how many were dropped. evutil_make_socket_nonblocking(-1)
 * makes libevent warn through event_warn(), as its listener does. */
static void test_libevent_warnings_become_rate_limited_json_lines(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_int_equal(fcntl(p[0], F_SETFL, O_NONBLOCK), 0);
    int saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_true(dup2(p[1], STDERR_FILENO) >= 0);
    log_capture_libevent(3);
    for (int i = 0; i < 200; i++) assert_int_equal(evutil_make_socket_nonblocking(-1), -1);
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(p[1]);
    event_set_log_callback(NULL);

    char out[16384];
    ssize_t n = read(p[0], out, sizeof out - 1);
    close(p[0]);
    assert_true(n > 0);
    out[n] = '\0';
    int lines = 0;
    for (char *line = out, *nl; (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
        json_error_t jerr;
        json_t *j = json_loadb(line, (size_t)(nl - line), 0, &jerr);
        if (!json_is_object(j))
            fail_msg("not a JSON line: %.*s (%s)", (int)(nl - line), line, jerr.text);
        assert_string_equal(json_string_value(json_object_get(j, "event")), "libevent");
        assert_string_equal(json_string_value(json_object_get(j, "level")), "warn");
        assert_non_null(strstr(json_string_value(json_object_get(j, "message")), "fcntl(-1"));
        json_decref(j);
        lines++;
    }
    /* 200 warnings in well under a second: one window's 3, or two windows' if the loop
     * crossed a second boundary; never the 200. */
    assert_true(lines >= 3 && lines <= 6);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_escape_replaces_invalid_utf8),
        cmocka_unit_test(test_json_escape_truncates_between_escapes),
        cmocka_unit_test(test_log_str_keeps_line_valid_json),
        cmocka_unit_test(test_log_rate_allow_caps_lines_per_second),
        cmocka_unit_test(test_log_rate_allow_reports_suppressed_count_in_next_window),
        cmocka_unit_test(test_libevent_warnings_become_rate_limited_json_lines),
    };
    return cmocka_run_group_tests_name("src/obs/log.c", tests, NULL, NULL);
}
