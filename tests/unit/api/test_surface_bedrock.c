/* Unit tests for the Bedrock runtime surface (api/surface_bedrock.c): the path, request
 * translation into the OpenAI chat body, answers and streams back, and the AWS exception
 * names. Streams are checked by decoding the frames with providers/aws/eventstream. */
#include "unit/cmocka_all.h"

#include <event2/buffer.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/surface_bedrock.h"
#include "providers/aws/eventstream.h"
#include "util/arena.h"

/* Two JSON texts are equal as values. */
static void assert_json_equal(const char *got, const char *want)
{
    json_t *a = json_loads(got, 0, NULL), *b = json_loads(want, 0, NULL);
    assert_non_null(a);
    assert_non_null(b);
    if (!json_equal(a, b)) fail_msg("got  %s\nwant %s", got, want);
    json_decref(a);
    json_decref(b);
}

static int translate(enum bedrock_op op, const char *body, char **out, struct arena *a,
                     struct err *e)
{
    size_t n;
    return bedrock_translate_request(op, "chat", body, strlen(body), a, out, &n, e);
}

static void test_bedrock_route_names_the_op_and_decodes_the_model(void **state)
{
    (void)state;
    struct arena *a = arena_new(1024);
    enum bedrock_op op;
    const char *id;
    struct err e;
    assert_int_equal(bedrock_route("/model/chat/converse", a, &op, &id, &e), 0);
    assert_int_equal(op, BEDROCK_CONVERSE);
    assert_string_equal(id, "chat");
    assert_int_equal(bedrock_route("/model/my%20group%2Fv1/converse-stream", a, &op, &id, &e), 0);
    assert_int_equal(op, BEDROCK_CONVERSE_STREAM);
    assert_string_equal(id, "my group/v1");
    assert_int_equal(bedrock_route("/model/x/invoke", a, &op, &id, &e), 0);
    assert_int_equal(op, BEDROCK_INVOKE);
    assert_int_equal(bedrock_route("/model/x/invoke-with-response-stream", a, &op, &id, &e), 0);
    assert_int_equal(op, BEDROCK_INVOKE_STREAM);
    assert_int_equal(
        bedrock_route("/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A%3Afoundation-model%2Fx/converse",
                      a, &op, &id, &e),
        -1);
    assert_int_equal(e.status, 400);
    assert_non_null(strstr(e.msg, "ARNs are not supported"));
    assert_int_equal(bedrock_route("/model/a%2/converse", a, &op, &id, &e), -1);
    assert_int_equal(e.status, 400);
    assert_int_equal(bedrock_route("/model/a%00b/converse", a, &op, &id, &e), -1);
    assert_int_equal(bedrock_route("/model/x/other", a, &op, &id, &e), -1);
    assert_int_equal(e.status, 404);
    arena_free(a);
}

static void test_bedrock_translate_request_converse_every_block(void **state)
{
    (void)state;
    struct arena *a = arena_new(4096);
    struct err e;
    char *out;
    const char *body =
        "{\"system\":[{\"text\":\"Be brief.\"},{\"cachePoint\":{}},{\"text\":\"Be kind.\"}],"
        "\"messages\":["
        "{\"role\":\"user\",\"content\":[{\"text\":\"Look\"},"
        "{\"image\":{\"format\":\"png\",\"source\":{\"bytes\":\"iVBO\"}}}]},"
        "{\"role\":\"assistant\",\"content\":[{\"text\":\"Calling.\"},"
        "{\"toolUse\":{\"toolUseId\":\"t1\",\"name\":\"f\",\"input\":{\"a\":1}}}]},"
        "{\"role\":\"user\",\"content\":[{\"toolResult\":{\"toolUseId\":\"t1\",\"content\":"
        "[{\"text\":\"r1\"},{\"json\":{\"b\":2}}]}},{\"text\":\"Next\"}]}],"
        "\"inferenceConfig\":{\"maxTokens\":9,\"temperature\":0.5,\"topP\":1,"
        "\"stopSequences\":[\"X\"]},"
        "\"toolConfig\":{\"tools\":[{\"toolSpec\":{\"name\":\"f\",\"description\":\"d\","
        "\"inputSchema\":{\"json\":{\"type\":\"object\"}}}}],\"toolChoice\":{\"tool\":"
        "{\"name\":\"f\"}}}}";
    assert_int_equal(translate(BEDROCK_CONVERSE_STREAM, body, &out, a, &e), 0);
    assert_json_equal(
        out,
        "{\"model\":\"chat\",\"stream\":true,\"max_tokens\":9,\"temperature\":0.5,\"top_p\":1,"
        "\"stop\":[\"X\"],\"messages\":["
        "{\"role\":\"system\",\"content\":\"Be brief.\\nBe kind.\"},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Look\"},"
        "{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,iVBO\"}}]},"
        "{\"role\":\"assistant\",\"content\":\"Calling.\",\"tool_calls\":[{\"id\":\"t1\","
        "\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"a\\\":1}\"}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"t1\",\"content\":\"r1\\n{\\\"b\\\":2}\"},"
        "{\"role\":\"user\",\"content\":\"Next\"}],"
        "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"description\":\"d\","
        "\"parameters\":{\"type\":\"object\"}}}],"
        "\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"f\"}}}");
    arena_free(a);
}

static void test_bedrock_translate_request_invoke_anthropic_body(void **state)
{
    (void)state;
    struct arena *a = arena_new(4096);
    struct err e;
    char *out;
    const char *body =
        "{\"anthropic_version\":\"bedrock-2023-05-31\",\"max_tokens\":7,\"system\":\"S\","
        "\"stop_sequences\":[\"Z\"],\"top_k\":3,\"messages\":["
        "{\"role\":\"user\",\"content\":\"Hi\"},"
        "{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\",\"id\":\"u\",\"name\":\"g\","
        "\"input\":{}}]},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"u\","
        "\"content\":\"done\"}]}],"
        "\"tools\":[{\"name\":\"g\",\"input_schema\":{\"type\":\"object\"}}],"
        "\"tool_choice\":{\"type\":\"any\"}}";
    assert_int_equal(translate(BEDROCK_INVOKE, body, &out, a, &e), 0);
    assert_json_equal(
        out, "{\"model\":\"chat\",\"max_tokens\":7,\"stop\":[\"Z\"],\"messages\":["
             "{\"role\":\"system\",\"content\":\"S\"},{\"role\":\"user\",\"content\":\"Hi\"},"
             "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"u\","
             "\"type\":\"function\",\"function\":{\"name\":\"g\",\"arguments\":\"{}\"}}]},"
             "{\"role\":\"tool\",\"tool_call_id\":\"u\",\"content\":\"done\"}],"
             "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"g\","
             "\"parameters\":{\"type\":\"object\"}}}],\"tool_choice\":\"required\"}");
    arena_free(a);
}

static void test_bedrock_translate_request_names_the_wrong_field(void **state)
{
    (void)state;
    static const struct {
        enum bedrock_op op;
        const char *body, *msg;
    } cases[] = {
        {BEDROCK_CONVERSE, "[1]", "must be a JSON object"},
        {BEDROCK_CONVERSE, "{\"messages\":[]}", "messages must not be empty"},
        {BEDROCK_CONVERSE, "{}", "messages is required"},
        {BEDROCK_CONVERSE, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"video\":{}}]}]}",
         "content block 'video' is not supported"},
        {BEDROCK_CONVERSE,
         "{\"messages\":[{\"role\":\"user\",\"content\":[{\"image\":{\"format\":\"png\","
         "\"source\":{\"bytes\":1}}}]}]}",
         "messages[0].content[0].image.source.bytes (base64) must be a string"},
        {BEDROCK_CONVERSE, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"toolUse\":{}}]}]}",
         "only an assistant message may use a tool"},
        {BEDROCK_CONVERSE,
         "{\"messages\":[{\"role\":\"user\",\"content\":[]}],\"inferenceConfig\":"
         "{\"temperature\":\"hot\"}}",
         "inferenceConfig.temperature must be a number"},
        {BEDROCK_CONVERSE,
         "{\"messages\":[{\"role\":\"user\",\"content\":[]}],\"toolConfig\":{\"tools\":"
         "[{\"toolSpec\":{\"name\":\"f\",\"inputSchema\":{}}}]}}",
         "toolConfig.tools[0].toolSpec.inputSchema.json is required"},
        {BEDROCK_CONVERSE, "{\"messages\":[{\"role\":\"user\",\"content\":[]}],\"a\":1,\"a\":2}",
         "not valid JSON"},
        {BEDROCK_INVOKE, "{\"anthropic_version\":\"v\",\"max_tokens\":1.5,\"messages\":[]}",
         "max_tokens must be an integer"},
        {BEDROCK_INVOKE,
         "{\"anthropic_version\":\"v\",\"max_tokens\":1,\"messages\":[{\"role\":\"user\","
         "\"content\":[{\"type\":\"document\"}]}]}",
         "type 'document' is not supported"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct arena *a = arena_new(1024);
        struct err e;
        char *out;
        assert_int_equal(translate(cases[i].op, cases[i].body, &out, a, &e), -1);
        assert_int_equal(e.status, 400);
        if (strstr(e.msg, cases[i].msg) == NULL) fail_msg("%s: %s", cases[i].body, e.msg);
        arena_free(a);
    }
}

static const char completion[] =
    "{\"id\":\"c1\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
    "\"content\":\"Checking.\",\"tool_calls\":[{\"id\":\"t9\",\"type\":\"function\","
    "\"function\":{\"name\":\"w\",\"arguments\":\"{\\\"x\\\":1}\"}}]},"
    "\"finish_reason\":\"tool_calls\"}],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}";

static void test_bedrock_translate_answer_converse_and_invoke(void **state)
{
    (void)state;
    char *c =
        bedrock_translate_answer(BEDROCK_CONVERSE, "chat", completion, sizeof completion - 1, 12);
    assert_non_null(c);
    assert_json_equal(c, "{\"output\":{\"message\":{\"role\":\"assistant\",\"content\":["
                         "{\"text\":\"Checking.\"},{\"toolUse\":{\"toolUseId\":\"t9\","
                         "\"name\":\"w\",\"input\":{\"x\":1}}}]}},\"stopReason\":\"tool_use\","
                         "\"usage\":{\"inputTokens\":3,\"outputTokens\":4,\"totalTokens\":7},"
                         "\"metrics\":{\"latencyMs\":12}}");
    free(c);
    char *m =
        bedrock_translate_answer(BEDROCK_INVOKE, "chat", completion, sizeof completion - 1, 12);
    assert_non_null(m);
    assert_json_equal(m, "{\"id\":\"c1\",\"type\":\"message\",\"role\":\"assistant\","
                         "\"model\":\"chat\",\"content\":[{\"type\":\"text\","
                         "\"text\":\"Checking.\"},{\"type\":\"tool_use\",\"id\":\"t9\","
                         "\"name\":\"w\",\"input\":{\"x\":1}}],\"stop_reason\":\"tool_use\","
                         "\"stop_sequence\":null,\"usage\":{\"input_tokens\":3,"
                         "\"output_tokens\":4}}");
    free(m);
    assert_null(bedrock_translate_answer(BEDROCK_CONVERSE, "chat", "{\"x\":1}", 7, 0));
}

/* Decoded frames: "type payload" lines. */
struct frames {
    char lines[16][256];
    int n;
};

static int collect(void *ud, const struct aws_event *ev)
{
    struct frames *f = ud;
    assert_true(f->n < 16);
    snprintf(f->lines[f->n++], sizeof f->lines[0], "%s %.*s",
             ev->event_type ? ev->event_type : ev->exception_type, (int)ev->payload_len,
             (const char *)ev->payload);
    return 0;
}

static void decode_all(struct evbuffer *out, struct frames *f)
{
    struct aws_eventstream d;
    struct err e;
    aws_eventstream_init(&d, 0);
    size_t n = evbuffer_get_length(out);
    assert_int_equal(aws_eventstream_feed(&d, evbuffer_pullup(out, -1), n, collect, f, &e), 0);
    assert_int_equal(aws_eventstream_pending(&d), 0);
    aws_eventstream_free(&d);
}

static void feed(struct bedrock_state *st, struct evbuffer *out, const char *chunk, int frames)
{
    assert_int_equal(bedrock_stream_chunk(st, chunk, strlen(chunk), out), frames);
}

static void test_bedrock_stream_converse_text_then_tool(void **state)
{
    (void)state;
    struct bedrock_state st = {.op = BEDROCK_CONVERSE_STREAM, .model_id = "chat", .block = -1};
    struct evbuffer *out = evbuffer_new();
    feed(&st, out, "{\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}", 1);
    feed(&st, out, "{\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}", 1);
    feed(&st, out,
         "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"t\",\"function\":"
         "{\"name\":\"w\",\"arguments\":\"\"}}]}}]}",
         2);
    feed(&st, out,
         "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":"
         "{\"arguments\":\"{}\"}}]}}]}",
         1);
    feed(&st, out, "{\"choices\":[{\"delta\":{},\"finish_reason\":\"tool_calls\"}]}", 0);
    assert_int_equal(bedrock_stream_end(&st, 5, 6, 7, NULL, out), 0);
    struct frames f = {0};
    decode_all(out, &f);
    static const char *const want[] = {
        "messageStart {\"role\":\"assistant\"}",
        "contentBlockDelta {\"contentBlockIndex\":0,\"delta\":{\"text\":\"Hi\"}}",
        "contentBlockStop {\"contentBlockIndex\":0}",
        "contentBlockStart {\"contentBlockIndex\":1,\"start\":{\"toolUse\":{\"toolUseId\":\"t\","
        "\"name\":\"w\"}}}",
        "contentBlockDelta {\"contentBlockIndex\":1,\"delta\":{\"toolUse\":{\"input\":\"{}\"}}}",
        "contentBlockStop {\"contentBlockIndex\":1}",
        "messageStop {\"stopReason\":\"tool_use\"}",
        "metadata {\"usage\":{\"inputTokens\":5,\"outputTokens\":6,\"totalTokens\":11},"
        "\"metrics\":{\"latencyMs\":7}}",
    };
    assert_int_equal(f.n, 8);
    for (int i = 0; i < 8; i++) assert_string_equal(f.lines[i], want[i]);
    evbuffer_free(out);
}

static void
test_bedrock_stream_invoke_wraps_anthropic_events_and_breaks_with_exception(void **state)
{
    (void)state;
    struct bedrock_state st = {.op = BEDROCK_INVOKE_STREAM, .model_id = "chat", .block = -1};
    struct evbuffer *out = evbuffer_new();
    feed(&st, out, "{\"id\":\"c\",\"choices\":[{\"delta\":{\"content\":\"Yo\"}}]}", 3);
    assert_int_equal(bedrock_stream_end(&st, -1, -1, 0, "upstream reset", out), 0);
    struct frames f = {0};
    decode_all(out, &f);
    assert_int_equal(f.n, 4);
    /* "chunk {"bytes":"<base64>"}": the base64 decodes to the Anthropic event. */
    const char *b64 = strstr(f.lines[2], "\"bytes\":\"") + 9;
    unsigned char raw[256];
    int n = EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)(strchr(b64, '"') - b64));
    assert_true(n > 0);
    raw[n] = '\0';
    while (n > 0 && raw[n - 1] == '\0') n--; /* DecodeBlock pads with NULs */
    assert_json_equal((char *)raw, "{\"type\":\"content_block_delta\",\"index\":0,"
                                   "\"delta\":{\"type\":\"text_delta\",\"text\":\"Yo\"}}");
    assert_string_equal(f.lines[3], "modelStreamErrorException {\"message\":\"upstream reset\"}");
    evbuffer_free(out);
}

static void test_bedrock_exception_maps_statuses_as_aws_does(void **state)
{
    (void)state;
    static const struct {
        int in, out;
        const char *name;
    } cases[] = {
        {400, 400, "ValidationException"},         {401, 403, "UnrecognizedClientException"},
        {403, 403, "AccessDeniedException"},       {404, 404, "ResourceNotFoundException"},
        {408, 408, "ModelTimeoutException"},       {504, 504, "ModelTimeoutException"},
        {429, 429, "ThrottlingException"},         {502, 424, "ModelErrorException"},
        {503, 503, "ServiceUnavailableException"}, {500, 500, "InternalServerException"},
        {413, 400, "ValidationException"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct err e = {.status = cases[i].in};
        int status;
        assert_string_equal(bedrock_exception(&e, &status), cases[i].name);
        assert_int_equal(status, cases[i].out);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bedrock_route_names_the_op_and_decodes_the_model),
        cmocka_unit_test(test_bedrock_translate_request_converse_every_block),
        cmocka_unit_test(test_bedrock_translate_request_invoke_anthropic_body),
        cmocka_unit_test(test_bedrock_translate_request_names_the_wrong_field),
        cmocka_unit_test(test_bedrock_translate_answer_converse_and_invoke),
        cmocka_unit_test(test_bedrock_stream_converse_text_then_tool),
        cmocka_unit_test(
            test_bedrock_stream_invoke_wraps_anthropic_events_and_breaks_with_exception),
        cmocka_unit_test(test_bedrock_exception_maps_statuses_as_aws_does),
    };
    return cmocka_run_group_tests_name("src/api/surface_bedrock.c", tests, NULL, NULL);
}
