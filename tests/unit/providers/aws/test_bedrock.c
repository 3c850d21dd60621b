/* Unit tests for src/providers/aws/bedrock.c: OpenAI chat ↔ Bedrock Converse, both
 * directions, and ConverseStream events → OpenAI chunks. */
#include "unit/cmocka_all.h"

#include <jansson.h>
#include <string.h>

#include "providers/aws/bedrock.h"
#include "util/arena.h"
#include "unit/providers/translation_fixture.h"

/* Translates and returns the result as a jansson document (owned). */
static json_t *bedrock(const char *body)
{
    struct openai_request r = parse(body);
    struct err e;
    size_t len = 0;
    char *out = bedrock_request_body(&r, arena, &len, &e);
    if (out == NULL) fail_msg("translate: %s", e.msg);
    json_t *doc = json_loadb(out, len, 0, NULL);
    assert_non_null(doc);
    return doc;
}

static void test_bedrock_request_translates_everything(void **state)
{
    (void)state;
    json_t *doc = bedrock(TOOLS_CONVERSATION);
    assert_json(doc,
                "{\"system\":[{\"text\":\"Be brief.\"}],"
                "\"inferenceConfig\":{\"maxTokens\":50,\"temperature\":0.2,\"topP\":0.9,"
                "\"stopSequences\":[\"END\"]},"
                "\"messages\":["
                "{\"role\":\"user\",\"content\":[{\"text\":\"What is this?\"},"
                "{\"image\":{\"format\":\"png\",\"source\":{\"bytes\":\"iVBORw0K\"}}}]},"
                "{\"role\":\"assistant\",\"content\":[{\"toolUse\":{\"toolUseId\":\"call_1\","
                "\"name\":\"weather\",\"input\":{\"city\":\"Paris\"}}}]},"
                "{\"role\":\"user\",\"content\":[{\"toolResult\":{\"toolUseId\":\"call_1\","
                "\"content\":[{\"text\":\"22C\"}]}}]}],"
                "\"toolConfig\":{\"tools\":[{\"toolSpec\":{\"name\":\"weather\",\"description\":"
                "\"w\",\"inputSchema\":{\"json\":{\"type\":\"object\",\"properties\":{\"city\":"
                "{\"type\":\"string\"}}}}}}],\"toolChoice\":{\"any\":{}}}}");
    json_decref(doc);
}

static void test_bedrock_response_becomes_chat_completion(void **state)
{
    (void)state;
    json_t *doc = translate_answer(bedrock_response_body,
                                   "{\"output\":{\"message\":{\"role\":\"assistant\",\"content\":"
                                   "[{\"text\":\"Hi \"},{\"text\":\"there\"}]}},\"stopReason\":"
                                   "\"max_tokens\",\"usage\":{\"inputTokens\":3,\"outputTokens\":"
                                   "2,\"totalTokens\":5},\"metrics\":{\"latencyMs\":1}}");
    json_object_del(doc, "id");
    assert_json(doc, "{\"object\":\"chat.completion\",\"model\":\"target\",\"choices\":[{\"index\":"
                     "0,\"logprobs\":null,\"finish_reason\":\"length\",\"message\":{\"role\":"
                     "\"assistant\",\"refusal\":null,\"content\":\"Hi there\"}}],\"usage\":{"
                     "\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5}}");
    json_decref(doc);
}

static void test_garbled_answers_are_502(void **state)
{
    (void)state;
    struct err e;
    size_t len;
    assert_null(bedrock_response_body("{\"output\":{}}", 13, "t", arena, &len, &e));
    assert_int_equal(e.status, 502);
}

struct chunks {
    char text[4096];
    size_t n;
};

static int collect(void *ud, const char *json, size_t len)
{
    struct chunks *c = ud;
    json_t *doc = json_loadb(json, len, 0, NULL);
    assert_non_null(doc);
    json_object_del(doc, "created");
    json_object_del(doc, "id");
    char *s = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
    c->n += (size_t)snprintf(c->text + c->n, sizeof c->text - c->n, "%s\n", s);
    free(s);
    json_decref(doc);
    return 0;
}

static int feed(struct bedrock_stream *s, const char *type, const char *payload, struct chunks *out,
                struct err *e)
{
    struct aws_event ev = {.event_type = type,
                           .message_type = "event",
                           .payload = (const uint8_t *)payload,
                           .payload_len = strlen(payload)};
    return bedrock_stream_event(s, &ev, collect, out, e);
}

static void test_bedrock_stream_events_become_chunks(void **state)
{
    (void)state;
    struct bedrock_stream s;
    struct chunks out = {0};
    struct err e;
    bedrock_stream_init(&s, "m", 1);
    assert_int_equal(feed(&s, "messageStart", "{\"role\":\"assistant\",\"p\":\"abc\"}", &out, &e),
                     0);
    assert_int_equal(feed(&s, "contentBlockDelta",
                          "{\"contentBlockIndex\":0,\"delta\":{\"text\":\"Hi\"}}", &out, &e),
                     0);
    assert_int_equal(feed(&s, "contentBlockStop", "{\"contentBlockIndex\":0}", &out, &e), 0);
    assert_int_equal(feed(&s, "contentBlockStart",
                          "{\"contentBlockIndex\":1,\"start\":{\"toolUse\":{\"toolUseId\":\"t1\","
                          "\"name\":\"f\"}}}",
                          &out, &e),
                     0);
    assert_int_equal(
        feed(&s, "contentBlockDelta",
             "{\"contentBlockIndex\":1,\"delta\":{\"toolUse\":{\"input\":\"{\\\"a\\\":\"}}}", &out,
             &e),
        0);
    assert_int_equal(feed(&s, "contentBlockStop", "{\"contentBlockIndex\":1}", &out, &e), 0);
    assert_int_equal(feed(&s, "messageStop", "{\"stopReason\":\"tool_use\"}", &out, &e), 0);
    assert_false(s.done);
    assert_int_equal(feed(&s, "metadata",
                          "{\"usage\":{\"inputTokens\":7,\"outputTokens\":3,\"totalTokens\":10},"
                          "\"metrics\":{\"latencyMs\":5}}",
                          &out, &e),
                     0);
    assert_true(s.done);
    assert_string_equal(
        out.text,
        "{\"choices\":[{\"delta\":{\"content\":\"\",\"role\":\"assistant\"},\"finish_reason\":null,"
        "\"index\":0}],\"model\":\"m\",\"object\":\"chat.completion.chunk\"}\n"
        "{\"choices\":[{\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null,\"index\":0}],"
        "\"model\":\"m\",\"object\":\"chat.completion.chunk\"}\n"
        "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"function\":{\"arguments\":\"\",\"name\":"
        "\"f\"},\"id\":\"t1\",\"index\":0,\"type\":\"function\"}]},\"finish_reason\":null,"
        "\"index\":0}],\"model\":\"m\",\"object\":\"chat.completion.chunk\"}\n"
        "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"function\":{\"arguments\":\"{\\\"a\\\":\"},"
        "\"index\":0}]},\"finish_reason\":null,\"index\":0}],\"model\":\"m\",\"object\":\"chat."
        "completion.chunk\"}\n"
        "{\"choices\":[{\"delta\":{},\"finish_reason\":\"tool_calls\",\"index\":0}],\"model\":"
        "\"m\",\"object\":\"chat.completion.chunk\"}\n"
        "{\"choices\":[],\"model\":\"m\",\"object\":\"chat.completion.chunk\",\"usage\":{"
        "\"completion_tokens\":3,\"prompt_tokens\":7,\"total_tokens\":10}}\n");
}

static void test_bedrock_stream_exceptions_map_to_statuses(void **state)
{
    (void)state;
    struct bedrock_stream s;
    struct chunks out = {0};
    struct err e;
    bedrock_stream_init(&s, "m", 1);
    struct aws_event ev = {.event_type = NULL,
                           .message_type = "exception",
                           .exception_type = "throttlingException",
                           .payload = (const uint8_t *)"{\"message\":\"slow down\"}",
                           .payload_len = 23};
    assert_int_equal(bedrock_stream_event(&s, &ev, collect, &out, &e), -1);
    assert_int_equal(e.status, 429);
    assert_non_null(strstr(e.msg, "throttlingException: slow down"));
    ev.exception_type = "modelStreamErrorException";
    assert_int_equal(bedrock_stream_event(&s, &ev, collect, &out, &e), -1);
    assert_int_equal(e.status, 503);
    ev.exception_type = "validationException";
    assert_int_equal(bedrock_stream_event(&s, &ev, collect, &out, &e), -1);
    assert_int_equal(e.status, 502);
    assert_int_equal(feed(&s, "contentBlockDelta", "not json", &out, &e), -1);
    assert_int_equal(e.status, 502);
    assert_int_equal(out.n, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bedrock_request_translates_everything),
        cmocka_unit_test(test_bedrock_response_becomes_chat_completion),
        cmocka_unit_test(test_garbled_answers_are_502),
        cmocka_unit_test(test_bedrock_stream_events_become_chunks),
        cmocka_unit_test(test_bedrock_stream_exceptions_map_to_statuses),
    };
    return cmocka_run_group_tests_name("src/providers/aws/bedrock.c", tests, setup, teardown);
}
