/* Unit tests for src/providers/chunk.c: the exact bytes of a translated chunk (key order, the
 * null finish_reason, the usage chunk's empty choices) and a sink that stops. */
#include "unit/cmocka_all.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "providers/chunk.h"

struct seen {
    char text[512];
    int calls;
    int answer; /* what the sink returns */
};

static int sink(void *ud, const char *json, size_t len)
{
    struct seen *s = ud;
    snprintf(s->text, sizeof s->text, "%.*s", (int)len, json);
    s->calls++;
    return s->answer;
}

static void test_chunk_emit_builds_a_delta_chunk(void **state)
{
    (void)state;
    struct chunk_head h = {"chatcmpl-1", "m", 1700000000};
    struct seen s = {0};
    struct err e;
    assert_int_equal(chunk_emit(&h, json_pack("{s:s}", "content", "hi"), NULL, NULL, sink, &s, &e),
                     0);
    assert_string_equal(s.text, "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\","
                                "\"created\":1700000000,\"model\":\"m\",\"choices\":[{\"index\":0,"
                                "\"delta\":{\"content\":\"hi\"},\"finish_reason\":null}]}");
    assert_int_equal(chunk_emit(&h, json_object(), "length", NULL, sink, &s, &e), 0);
    assert_string_equal(s.text, "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\","
                                "\"created\":1700000000,\"model\":\"m\",\"choices\":[{\"index\":0,"
                                "\"delta\":{},\"finish_reason\":\"length\"}]}");
}

static void test_chunk_emit_builds_a_usage_chunk(void **state)
{
    (void)state;
    struct chunk_head h = {"i", "m", 1};
    struct seen s = {0};
    struct err e;
    assert_int_equal(chunk_emit(&h, NULL, NULL, chunk_usage(10, 5, 0), sink, &s, &e), 0);
    assert_string_equal(s.text, "{\"id\":\"i\",\"object\":\"chat.completion.chunk\",\"created\":1,"
                                "\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":10,"
                                "\"completion_tokens\":5,\"total_tokens\":15}}");
    assert_int_equal(chunk_emit(&h, NULL, NULL, chunk_usage(10, 5, 4), sink, &s, &e), 0);
    assert_string_equal(s.text, "{\"id\":\"i\",\"object\":\"chat.completion.chunk\",\"created\":1,"
                                "\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":14,"
                                "\"completion_tokens\":5,\"total_tokens\":19,"
                                "\"prompt_tokens_details\":{\"cached_tokens\":4}}}");
}

static void test_chunk_emit_reports_a_sink_that_stops(void **state)
{
    (void)state;
    struct chunk_head h = {"i", "m", 1};
    struct seen s = {.answer = 1};
    struct err e;
    assert_int_equal(chunk_emit(&h, json_object(), NULL, NULL, sink, &s, &e), -1);
    assert_int_equal(s.calls, 1);
    assert_int_equal(e.status, 499);
    assert_string_equal(e.code, "stopped");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chunk_emit_builds_a_delta_chunk),
        cmocka_unit_test(test_chunk_emit_builds_a_usage_chunk),
        cmocka_unit_test(test_chunk_emit_reports_a_sink_that_stops),
    };
    return cmocka_run_group_tests_name("src/providers/chunk.c", tests, NULL, NULL);
}
