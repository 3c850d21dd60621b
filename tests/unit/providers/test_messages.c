/* Unit tests for src/providers/messages.c: the OpenAI message walk Anthropic and Bedrock
 * share (block shapes per dialect, merged turns, the 400s naming a message) and the answer
 * pieces (finish reasons, tool calls). */
#include "unit/cmocka_all.h"

#include <jansson.h>
#include <string.h>

#include "providers/anthropic.h"
#include "providers/aws/bedrock.h"
#include "providers/messages.h"
#include "util/arena.h"
#include "unit/providers/translation_fixture.h"

/* Converts `messages_json` (an OpenAI messages list) in dialect `d`; returns
 * {"messages":[…],"system":[…]} (owned). */
static json_t *convert(enum messages_dialect d, const char *messages_json)
{
    json_t *in = json_loads(messages_json, 0, NULL);
    assert_non_null(in);
    json_t *messages = json_array(), *system = json_array();
    struct err e;
    if (messages_convert(d, in, messages, system, &e) != 0) fail_msg("convert: %s", e.msg);
    json_decref(in);
    return json_pack("{s:o, s:o}", "messages", messages, "system", system);
}

static const char *const TURNS =
    "[{\"role\":\"developer\",\"content\":[{\"type\":\"text\",\"text\":\"Be brief.\"}]},"
    "{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"user\",\"content\":\"b\"},"
    "{\"role\":\"assistant\",\"content\":\"\"},"
    "{\"role\":\"assistant\",\"content\":\"c\"},"
    "{\"role\":\"tool\",\"tool_call_id\":\"t1\",\"content\":[{\"type\":\"text\",\"text\":"
    "\"x\"},{\"type\":\"text\",\"text\":\"y\"}]}]";

static void test_messages_convert_merges_turns_in_both_dialects(void **state)
{
    (void)state;
    json_t *doc = convert(MESSAGES_ANTHROPIC, TURNS);
    assert_json(doc, "{\"system\":[{\"type\":\"text\",\"text\":\"Be brief.\"}],\"messages\":["
                     "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},"
                     "{\"type\":\"text\",\"text\":\"b\"}]},"
                     "{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"c\"}]},"
                     "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\","
                     "\"tool_use_id\":\"t1\",\"content\":\"x\\ny\"}]}]}");
    json_decref(doc);
    doc = convert(MESSAGES_BEDROCK, TURNS);
    assert_json(doc, "{\"system\":[{\"text\":\"Be brief.\"}],\"messages\":["
                     "{\"role\":\"user\",\"content\":[{\"text\":\"a\"},{\"text\":\"b\"}]},"
                     "{\"role\":\"assistant\",\"content\":[{\"text\":\"c\"}]},"
                     "{\"role\":\"user\",\"content\":[{\"toolResult\":{\"toolUseId\":\"t1\","
                     "\"content\":[{\"text\":\"x\\ny\"}]}}]}]}");
    json_decref(doc);
}

static void test_untranslatable_requests_are_400_naming_the_message(void **state)
{
    (void)state;
    struct err e;
    size_t len;
    struct openai_request r = parse("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":"
                                    "[{\"type\":\"image_url\",\"image_url\":{\"url\":"
                                    "\"https://x/i.png\"}}]}]}");
    assert_null(bedrock_request_body(&r, arena, &len, &e));
    assert_int_equal(e.status, 400);
    assert_non_null(strstr(e.msg, "messages[0]: Bedrock takes images inline only"));
    r = parse("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"},"
              "{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"c\",\"type\":\"function\","
              "\"function\":{\"name\":\"f\",\"arguments\":\"not json\"}}]}]}");
    assert_null(anthropic_request_body(&r, "x", 10, arena, &len, &e));
    assert_int_equal(e.status, 400);
    assert_non_null(strstr(e.msg, "messages[1]: tool call 'f' has arguments that are not a JSON"));
    r = parse("{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"only\"}]}");
    assert_null(anthropic_request_body(&r, "x", 10, arena, &len, &e));
    assert_non_null(strstr(e.msg, "at least one user or assistant message"));
}

static void test_messages_finish_reason_maps_stop_reasons(void **state)
{
    (void)state;
    assert_string_equal(messages_finish_reason(NULL), "stop");
    assert_string_equal(messages_finish_reason("end_turn"), "stop");
    assert_string_equal(messages_finish_reason("stop_sequence"), "stop");
    assert_string_equal(messages_finish_reason("max_tokens"), "length");
    assert_string_equal(messages_finish_reason("tool_use"), "tool_calls");
    assert_string_equal(messages_finish_reason("guardrail_intervened"), "content_filter");
    assert_string_equal(messages_finish_reason("content_filtered"), "content_filter");
    assert_string_equal(messages_finish_reason("refusal"), "content_filter");
}

static void test_messages_tool_call_dumps_the_input_as_arguments(void **state)
{
    (void)state;
    json_t *id = json_string("t1"), *name = json_string("f");
    json_t *input = json_pack("{s:i}", "a", 1);
    json_t *call = messages_tool_call(id, name, input);
    assert_json(call, "{\"id\":\"t1\",\"type\":\"function\",\"function\":{\"name\":\"f\","
                      "\"arguments\":\"{\\\"a\\\":1}\"}}");
    json_decref(call);
    call = messages_tool_call(NULL, name, NULL); /* no input: empty arguments object */
    assert_json(call, "{\"id\":null,\"type\":\"function\",\"function\":{\"name\":\"f\","
                      "\"arguments\":\"{}\"}}");
    json_decref(call);
    json_decref(id);
    json_decref(name);
    json_decref(input);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_messages_convert_merges_turns_in_both_dialects),
        cmocka_unit_test(test_untranslatable_requests_are_400_naming_the_message),
        cmocka_unit_test(test_messages_finish_reason_maps_stop_reasons),
        cmocka_unit_test(test_messages_tool_call_dumps_the_input_as_arguments),
    };
    return cmocka_run_group_tests_name("src/providers/messages.c", tests, setup, teardown);
}
