/* Unit tests for src/http/sse.c: SSE framing across arbitrary read boundaries. */
#include "unit/cmocka_all.h"

#include <stdlib.h>
#include <string.h>

#include "http/sse.h"

struct seen {
    char events[16][256];
    size_t n;
};

static int collect(void *ud, const char *ev, size_t len)
{
    struct seen *s = ud;
    assert_true(s->n < 16);
    assert_true(len < 256);
    memcpy(s->events[s->n], ev, len);
    s->events[s->n][len] = '\0';
    s->n++;
    return 0;
}

static void feed_in_pieces(const char *text, size_t piece, struct seen *s)
{
    struct sse_parser p;
    struct err e;
    sse_parser_init(&p, 0);
    size_t n = strlen(text);
    for (size_t at = 0; at < n; at += piece) {
        size_t k = n - at < piece ? n - at : piece;
        assert_int_equal(sse_parser_feed(&p, text + at, k, collect, s, &e), 0);
    }
    assert_int_equal(sse_parser_pending(&p), 0);
    sse_parser_free(&p);
}

static void test_sse_parser_feed_whole_events_in_one_read(void **state)
{
    (void)state;
    struct seen s = {0};
    feed_in_pieces("data: {\"a\":1}\n\ndata: [DONE]\n\n", 1000, &s);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.events[0], "data: {\"a\":1}");
    assert_string_equal(s.events[1], "data: [DONE]");
}

static void test_sse_parser_feed_split_at_every_byte(void **state)
{
    (void)state;
    const char *text = "event: x\ndata: one\n\ndata: two\r\n\r\n: comment\n\ndata: three\n\n";
    for (size_t piece = 1; piece <= 7; piece++) {
        struct seen s = {0};
        feed_in_pieces(text, piece, &s);
        assert_int_equal(s.n, 4);
        assert_string_equal(s.events[0], "event: x\ndata: one");
        assert_string_equal(s.events[1], "data: two");
        assert_string_equal(s.events[2], ": comment");
        assert_string_equal(s.events[3], "data: three");
    }
}

static void test_sse_parser_feed_keeps_incomplete_tail(void **state)
{
    (void)state;
    struct sse_parser p;
    struct err e;
    struct seen s = {0};
    sse_parser_init(&p, 0);
    assert_int_equal(sse_parser_feed(&p, "data: a\n\ndata: b\n", 17, collect, &s, &e), 0);
    assert_int_equal(s.n, 1);
    assert_int_equal(sse_parser_pending(&p), 8);
    assert_int_equal(sse_parser_feed(&p, "\n", 1, collect, &s, &e), 0);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.events[1], "data: b");
    assert_int_equal(sse_parser_pending(&p), 0);
    sse_parser_free(&p);
}

static void test_sse_parser_feed_rejects_oversized_event(void **state)
{
    (void)state;
    struct sse_parser p;
    struct err e;
    struct seen s = {0};
    char big[300];
    memset(big, 'x', sizeof big);
    sse_parser_init(&p, 100);
    assert_int_equal(sse_parser_feed(&p, big, sizeof big, collect, &s, &e), -1);
    assert_int_equal(e.status, 502);
    assert_non_null(strstr(e.msg, "larger than 100"));
    sse_parser_free(&p);
}

static int stop_after_first(void *ud, const char *ev, size_t len)
{
    (void)ev;
    (void)len;
    (*(int *)ud)++;
    return -1;
}

static void test_sse_parser_feed_callback_can_stop(void **state)
{
    (void)state;
    struct sse_parser p;
    struct err e;
    int calls = 0;
    sse_parser_init(&p, 0);
    assert_int_equal(
        sse_parser_feed(&p, "data: 1\n\ndata: 2\n\n", 18, stop_after_first, &calls, &e), -1);
    assert_int_equal(calls, 1);
    sse_parser_free(&p);
}

static void test_sse_event_data_single_and_multi_line(void **state)
{
    (void)state;
    struct sse_parser p;
    const char *d;
    size_t n;
    sse_parser_init(&p, 0);
    const char *one = "event: message\ndata: {\"x\":1}";
    assert_int_equal(sse_event_data(&p, one, strlen(one), &d, &n), 1);
    assert_int_equal(n, 7);
    assert_memory_equal(d, "{\"x\":1}", 7);
    const char *two = "data: a\r\ndata:b\nid: 3";
    assert_int_equal(sse_event_data(&p, two, strlen(two), &d, &n), 2);
    assert_int_equal(n, 3);
    assert_memory_equal(d, "a\nb", 3);
    assert_int_equal(sse_event_data(&p, ": ping", 6, &d, &n), 0);
    assert_null(d);
    sse_parser_free(&p);
}

static void test_sse_event_field_finds_event_type(void **state)
{
    (void)state;
    const char *ev = "event: content_block_delta\ndata: {}";
    const char *v;
    size_t n;
    assert_int_equal(sse_event_field(ev, strlen(ev), "event", &v, &n), 1);
    assert_int_equal(n, strlen("content_block_delta"));
    assert_memory_equal(v, "content_block_delta", n);
    assert_int_equal(sse_event_field(ev, strlen(ev), "id", &v, &n), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sse_parser_feed_whole_events_in_one_read),
        cmocka_unit_test(test_sse_parser_feed_split_at_every_byte),
        cmocka_unit_test(test_sse_parser_feed_keeps_incomplete_tail),
        cmocka_unit_test(test_sse_parser_feed_rejects_oversized_event),
        cmocka_unit_test(test_sse_parser_feed_callback_can_stop),
        cmocka_unit_test(test_sse_event_data_single_and_multi_line),
        cmocka_unit_test(test_sse_event_field_finds_event_type),
    };
    return cmocka_run_group_tests_name("src/http/sse.c", tests, NULL, NULL);
}
