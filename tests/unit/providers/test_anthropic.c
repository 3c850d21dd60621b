/* Unit tests for src/providers/anthropic.c: OpenAI chat ↔ Anthropic Messages, both
 * directions, and Messages stream events → OpenAI chat.completion.chunk objects. */
#include "unit/cmocka_all.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "providers/anthropic.h"
#include "util/arena.h"
#include "unit/providers/translation_fixture.h"

/* Translates and returns the result as a jansson document (owned). */
static json_t *anthropic(const char *body, long default_max)
{
    struct openai_request r = parse(body);
    struct err e;
    size_t len = 0;
    char *out = anthropic_request_body(&r, "claude-x", default_max, arena, &len, &e);
    if (out == NULL) fail_msg("translate: %s", e.msg);
    json_t *doc = json_loadb(out, len, 0, NULL);
    assert_non_null(doc);
    return doc;
}

static void test_anthropic_request_translates_everything(void **state)
{
    (void)state;
    json_t *doc = anthropic(TOOLS_CONVERSATION, 4096);
    assert_json(doc,
                "{\"model\":\"claude-x\",\"max_tokens\":50,\"temperature\":0.2,\"top_p\":0.9,"
                "\"stop_sequences\":[\"END\"],"
                "\"system\":[{\"type\":\"text\",\"text\":\"Be brief.\"}],"
                "\"messages\":["
                "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"What is this?\"},"
                "{\"type\":\"image\",\"source\":{\"type\":\"base64\",\"media_type\":\"image/png\","
                "\"data\":\"iVBORw0K\"}}]},"
                "{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\",\"id\":\"call_1\","
                "\"name\":\"weather\",\"input\":{\"city\":\"Paris\"}}]},"
                "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":"
                "\"call_1\",\"content\":\"22C\"}]}],"
                "\"tools\":[{\"name\":\"weather\",\"description\":\"w\",\"input_schema\":"
                "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}}}}],"
                "\"tool_choice\":{\"type\":\"any\"}}");
    json_decref(doc);
}

static void test_anthropic_request_defaults_and_url_images(void **state)
{
    (void)state;
    json_t *doc =
        anthropic("{\"model\":\"m\",\"stream\":true,\"user\":\"u1\",\"messages\":["
                  "{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"user\",\"content\":"
                  "[{\"type\":\"image_url\",\"image_url\":{\"url\":\"https://x/i.png\"}}]}]}",
                  777);
    assert_json(doc, "{\"model\":\"claude-x\",\"max_tokens\":777,\"stream\":true,"
                     "\"metadata\":{\"user_id\":\"u1\"},\"messages\":[{\"role\":\"user\","
                     "\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"image\","
                     "\"source\":{\"type\":\"url\",\"url\":\"https://x/i.png\"}}]}]}");
    json_decref(doc);
}

static void test_anthropic_response_becomes_chat_completion(void **state)
{
    (void)state;
    json_t *doc = translate_answer(
        anthropic_response_body,
        "{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-x\","
        "\"content\":[{\"type\":\"text\",\"text\":\"Checking.\"},{\"type\":\"tool_use\",\"id\":"
        "\"toolu_1\",\"name\":\"weather\",\"input\":{\"city\":\"Paris\"}}],\"stop_reason\":"
        "\"tool_use\",\"usage\":{\"input_tokens\":10,\"output_tokens\":5,"
        "\"cache_read_input_tokens\":4,\"cache_creation_input_tokens\":0}}");
    assert_json(doc,
                "{\"id\":\"msg_1\",\"object\":\"chat.completion\",\"model\":\"claude-x\","
                "\"choices\":[{\"index\":0,\"logprobs\":null,\"finish_reason\":\"tool_calls\","
                "\"message\":{\"role\":\"assistant\",\"refusal\":null,\"content\":\"Checking.\","
                "\"tool_calls\":[{\"id\":\"toolu_1\",\"type\":\"function\",\"function\":{\"name\":"
                "\"weather\",\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}}]}}],"
                "\"usage\":{\"prompt_tokens\":14,\"completion_tokens\":5,\"total_tokens\":19,"
                "\"prompt_tokens_details\":{\"cached_tokens\":4}}}");
    json_decref(doc);
}

static void test_garbled_answers_are_502(void **state)
{
    (void)state;
    struct err e;
    size_t len;
    assert_null(anthropic_response_body("nope", 4, "t", arena, &len, &e));
    assert_int_equal(e.status, 502);
}

struct out {
    json_t *chunks; /* array */
};

static int collect(void *ud, const char *json, size_t len)
{
    struct out *o = ud;
    json_t *j = json_loadb(json, len, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "object")), "chat.completion.chunk");
    json_array_append_new(o->chunks, j);
    return 0;
}

static int feed(struct anthropic_stream *s, struct out *o, const char *type, const char *data,
                struct err *e)
{
    return anthropic_stream_event(s, type, strlen(type), data, strlen(data), collect, o, e);
}

static json_t *delta(struct out *o, size_t i)
{
    return json_object_get(
        json_array_get(json_object_get(json_array_get(o->chunks, i), "choices"), 0), "delta");
}

static void test_anthropic_stream_event_translates_a_text_stream(void **state)
{
    (void)state;
    struct anthropic_stream s;
    struct out o = {json_array()};
    struct err e;
    anthropic_stream_init(&s, 1700000000);
    assert_int_equal(
        feed(&s, &o, "message_start",
             "{\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":"
             "\"claude-haiku-4-5\",\"usage\":{\"input_tokens\":12,\"output_tokens\":1}}}",
             &e),
        0);
    assert_int_equal(feed(&s, &o, "content_block_start",
                          "{\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}", &e),
                     0);
    assert_int_equal(feed(&s, &o, "ping", "{}", &e), 0);
    assert_int_equal(feed(&s, &o, "content_block_delta",
                          "{\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}",
                          &e),
                     0);
    assert_int_equal(feed(&s, &o, "content_block_delta",
                          "{\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\" wörld\"}}",
                          &e),
                     0);
    assert_int_equal(feed(&s, &o, "content_block_stop", "{\"index\":0}", &e), 0);
    assert_int_equal(
        feed(&s, &o, "message_delta",
             "{\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":5}}", &e),
        0);
    assert_int_equal(feed(&s, &o, "message_stop", "{\"type\":\"message_stop\"}", &e), 0);

    assert_int_equal(json_array_size(o.chunks), 5);
    json_t *first = json_array_get(o.chunks, 0);
    assert_string_equal(json_string_value(json_object_get(first, "id")), "msg_1");
    assert_string_equal(json_string_value(json_object_get(first, "model")), "claude-haiku-4-5");
    assert_string_equal(json_string_value(json_object_get(delta(&o, 0), "role")), "assistant");
    assert_string_equal(json_string_value(json_object_get(delta(&o, 1), "content")), "Hello");
    assert_string_equal(json_string_value(json_object_get(delta(&o, 2), "content")), " wörld");
    json_t *fin = json_array_get(json_object_get(json_array_get(o.chunks, 3), "choices"), 0);
    assert_string_equal(json_string_value(json_object_get(fin, "finish_reason")), "stop");
    json_t *last = json_array_get(o.chunks, 4);
    assert_int_equal(json_array_size(json_object_get(last, "choices")), 0);
    json_t *usage = json_object_get(last, "usage");
    assert_int_equal(json_integer_value(json_object_get(usage, "prompt_tokens")), 12);
    assert_int_equal(json_integer_value(json_object_get(usage, "completion_tokens")), 5);
    assert_int_equal(json_integer_value(json_object_get(usage, "total_tokens")), 17);
    assert_true(s.done);
    json_decref(o.chunks);
}

static void test_anthropic_stream_event_translates_tool_use(void **state)
{
    (void)state;
    struct anthropic_stream s;
    struct out o = {json_array()};
    struct err e;
    anthropic_stream_init(&s, 1);
    feed(&s, &o, "message_start", "{\"message\":{\"id\":\"m\",\"model\":\"c\",\"usage\":{}}}", &e);
    assert_int_equal(
        feed(&s, &o, "content_block_start",
             "{\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_1\","
             "\"name\":\"get_weather\",\"input\":{}}}",
             &e),
        0);
    feed(&s, &o, "content_block_delta",
         "{\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"city\\\":"
         "\"}}",
         &e);
    feed(&s, &o, "content_block_delta",
         "{\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\\\"Paris\\\"}"
         "\"}}",
         &e);
    feed(&s, &o, "content_block_stop", "{\"index\":1}", &e);
    feed(&s, &o, "message_delta",
         "{\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{\"output_tokens\":9}}", &e);
    json_t *call = json_array_get(json_object_get(delta(&o, 1), "tool_calls"), 0);
    assert_int_equal(json_integer_value(json_object_get(call, "index")), 0);
    assert_string_equal(json_string_value(json_object_get(call, "id")), "toolu_1");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(call, "function"), "name")),
        "get_weather");
    const char *a1 = json_string_value(json_object_get(
        json_object_get(json_array_get(json_object_get(delta(&o, 2), "tool_calls"), 0), "function"),
        "arguments"));
    const char *a2 = json_string_value(json_object_get(
        json_object_get(json_array_get(json_object_get(delta(&o, 3), "tool_calls"), 0), "function"),
        "arguments"));
    char joined[64];
    snprintf(joined, sizeof joined, "%s%s", a1, a2);
    assert_string_equal(joined, "{\"city\":\"Paris\"}");
    json_t *fin = json_array_get(json_object_get(json_array_get(o.chunks, 4), "choices"), 0);
    assert_string_equal(json_string_value(json_object_get(fin, "finish_reason")), "tool_calls");
    json_decref(o.chunks);
}

static void test_anthropic_stream_event_maps_errors_and_limits(void **state)
{
    (void)state;
    struct anthropic_stream s;
    struct out o = {json_array()};
    struct err e;
    anthropic_stream_init(&s, 1);
    assert_int_equal(
        feed(&s, &o, "error",
             "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":"
             "\"Overloaded\"}}",
             &e),
        -1);
    assert_int_equal(e.status, 503);
    assert_non_null(strstr(e.msg, "overloaded_error: Overloaded"));
    assert_int_equal(feed(&s, &o, "content_block_delta", "not json", &e), -1);
    assert_int_equal(e.status, 502);
    feed(&s, &o, "message_delta", "{\"delta\":{\"stop_reason\":\"max_tokens\"},\"usage\":{}}", &e);
    json_t *fin = json_array_get(json_object_get(json_array_get(o.chunks, 0), "choices"), 0);
    assert_string_equal(json_string_value(json_object_get(fin, "finish_reason")), "length");
    json_decref(o.chunks);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_anthropic_request_translates_everything),
        cmocka_unit_test(test_anthropic_request_defaults_and_url_images),
        cmocka_unit_test(test_anthropic_response_becomes_chat_completion),
        cmocka_unit_test(test_garbled_answers_are_502),
        cmocka_unit_test(test_anthropic_stream_event_translates_a_text_stream),
        cmocka_unit_test(test_anthropic_stream_event_translates_tool_use),
        cmocka_unit_test(test_anthropic_stream_event_maps_errors_and_limits),
    };
    return cmocka_run_group_tests_name("src/providers/anthropic.c", tests, setup, teardown);
}
