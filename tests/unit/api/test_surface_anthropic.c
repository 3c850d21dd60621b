/* Unit tests for the Anthropic Messages surface (api/surface_anthropic.c): where the
 * credential is, the Messages body re-told as the request model's OpenAI chat body (and every
 * refusal, worded with Anthropic's field paths), and OpenAI chunks re-told as Anthropic's
 * stream events. */
#include "unit/cmocka_all.h"

#include <event2/buffer.h>
#include <jansson.h>
#include <string.h>

#include "api/surface_anthropic.h"
#include "http/server.h"
#include "util/arena.h"

struct fixture {
    struct http_request req;
    struct http_header headers[3];
    struct anthropic_state state;
    struct exchange x;
};

static void setup(struct fixture *f, const char *body)
{
    memset(f, 0, sizeof *f);
    f->req.arena = arena_new(4096);
    f->req.body = evbuffer_new();
    evbuffer_add(f->req.body, body, strlen(body));
    f->req.headers = f->headers;
    f->x = (struct exchange){.req = &f->req, .state = &f->state};
}

static void teardown(struct fixture *f)
{
    arena_free(f->req.arena); /* frees the surface's event buffer too */
    evbuffer_free(f->req.body);
}

/* ---- the credential ----------------------------------------------------------------------- */

static int credential(struct fixture *f, const char **key, size_t *len, struct err *e)
{
    err_clear(e);
    return surface_anthropic.credential(&f->req, key, len, e);
}

static void test_credential_is_x_api_key_or_bearer_never_two_different(void **state)
{
    (void)state;
    struct fixture f;
    setup(&f, "{}");
    const char *key;
    size_t len;
    struct err e;
    assert_int_equal(credential(&f, &key, &len, &e), 0);
    assert_null(key); /* none sent: the guard answers 401 when auth is on */

    f.headers[0] = (struct http_header){"x-api-key", " sk-ant-1 "};
    f.req.n_headers = 1;
    assert_int_equal(credential(&f, &key, &len, &e), 0);
    assert_int_equal(len, 8);
    assert_memory_equal(key, "sk-ant-1", 8);

    f.headers[1] = (struct http_header){"authorization", "Bearer sk-ant-1"};
    f.req.n_headers = 2;
    assert_int_equal(credential(&f, &key, &len, &e), 0); /* the same key twice is one key */
    assert_memory_equal(key, "sk-ant-1", 8);

    f.headers[1].value = "Bearer sk-other";
    assert_int_equal(credential(&f, &key, &len, &e), -1);
    assert_int_equal(e.status, 400);
    assert_string_equal(e.code, "ambiguous_credential");

    f.headers[0].value = ""; /* an empty x-api-key is no key: the bearer token counts */
    assert_int_equal(credential(&f, &key, &len, &e), 0);
    assert_int_equal(len, 8);
    assert_memory_equal(key, "sk-other", 8);

    f.headers[0].value = "a";
    f.headers[1] = (struct http_header){"X-Api-Key", "b"};
    assert_int_equal(credential(&f, &key, &len, &e), -1);
    assert_int_equal(e.status, 400);
    assert_string_equal(e.code, "duplicate_header");
    teardown(&f);
}

/* ---- requests ------------------------------------------------------------------------------ */

/* Parses `body`; on success checks the request model's body equals `want` (JSON). */
static void parses_to(const char *body, const char *want)
{
    struct fixture f;
    struct err e;
    setup(&f, body);
    err_clear(&e);
    int rc = surface_anthropic.parse(&f.x, OPENAI_CHAT, &e);
    if (rc != 0) fail_msg("refused: %s", e.msg);
    json_t *got = json_loadb(f.x.request->scan.js, f.x.request->scan.len, 0, NULL);
    json_t *exp = json_loads(want, 0, NULL);
    assert_non_null(exp);
    if (!json_equal(got, exp)) {
        char *s = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS);
        fail_msg("translated to %s", s);
    }
    json_decref(got);
    json_decref(exp);
    teardown(&f);
}

/* Parses `body` and expects a 400 whose message starts with `prefix`. */
static void refused(const char *body, const char *prefix)
{
    struct fixture f;
    struct err e;
    setup(&f, body);
    err_clear(&e);
    assert_int_equal(surface_anthropic.parse(&f.x, OPENAI_CHAT, &e), -1);
    assert_int_equal(e.status, 400);
    assert_string_equal(e.type, "invalid_request_error");
    if (strncmp(e.msg, prefix, strlen(prefix)) != 0)
        fail_msg("for %s\nwanted \"%s...\"\ngot    \"%s\"", body, prefix, e.msg);
    assert_null(f.x.request);
    teardown(&f);
}

static void test_parse_fills_the_request_model(void **state)
{
    (void)state;
    struct fixture f;
    struct err e;
    setup(
        &f,
        "{\"model\":\"claude\",\"max_tokens\":64,\"stream\":true,"
        "\"metadata\":{\"user_id\":\"u1\"},\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}");
    assert_int_equal(surface_anthropic.parse(&f.x, OPENAI_CHAT, &e), 0);
    assert_string_equal(f.x.request->model, "claude");
    assert_true(f.x.request->stream);
    assert_false(f.x.request->want_usage); /* the surface reads the usage from the call */
    assert_int_equal(f.x.request->endpoint, OPENAI_CHAT);
    teardown(&f);
}

static void test_parse_translates_sampling_system_and_metadata(void **state)
{
    (void)state;
    parses_to("{\"model\":\"m\",\"max_tokens\":5,\"temperature\":0.2,\"top_p\":0.5,\"top_k\":3,"
              "\"stop_sequences\":[\"A\",\"B\"],\"metadata\":{\"user_id\":\"u\"},"
              "\"service_tier\":\"auto\",\"thinking\":{\"type\":\"disabled\"},"
              "\"system\":\"Be brief\",\"messages\":[{\"role\":\"user\",\"content\":\"q\"}]}",
              "{\"model\":\"m\",\"max_tokens\":5,\"temperature\":0.2,\"top_p\":0.5,"
              "\"stop\":[\"A\",\"B\"],\"user\":\"u\",\"messages\":[{\"role\":\"system\","
              "\"content\":\"Be brief\"},{\"role\":\"user\",\"content\":\"q\"}]}");
    /* system blocks stay blocks; one text block of a user turn becomes a string */
    parses_to(
        "{\"model\":\"m\",\"max_tokens\":5,\"system\":[{\"type\":\"text\",\"text\":\"a\","
        "\"cache_control\":{\"type\":\"ephemeral\"}},{\"type\":\"text\",\"text\":\"b\"}],"
        "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"q\"}]}]}",
        "{\"model\":\"m\",\"max_tokens\":5,\"messages\":[{\"role\":\"system\",\"content\":"
        "[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\",\"text\":\"b\"}]},"
        "{\"role\":\"user\",\"content\":\"q\"}]}");
}

static void test_parse_translates_images_tools_and_tool_results(void **state)
{
    (void)state;
    parses_to(
        "{\"model\":\"m\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":["
        "{\"type\":\"image\",\"source\":{\"type\":\"base64\",\"media_type\":\"image/png\","
        "\"data\":\"iVBO\"}},{\"type\":\"image\",\"source\":{\"type\":\"url\",\"url\":\"https://x/"
        "a.png\"}},{\"type\":\"text\",\"text\":\"what?\"}]}]}",
        "{\"model\":\"m\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":["
        "{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,iVBO\"}},"
        "{\"type\":\"image_url\",\"image_url\":{\"url\":\"https://x/a.png\"}},"
        "{\"type\":\"text\",\"text\":\"what?\"}]}]}");
    parses_to(
        "{\"model\":\"m\",\"max_tokens\":5,"
        "\"tools\":[{\"name\":\"f\",\"description\":\"d\",\"input_schema\":{\"type\":\"object\"}}],"
        "\"tool_choice\":{\"type\":\"any\",\"disable_parallel_tool_use\":true},\"messages\":["
        "{\"role\":\"user\",\"content\":\"go\"},"
        "{\"role\":\"assistant\",\"content\":[{\"type\":\"thinking\",\"thinking\":\"t\","
        "\"signature\":\"s\"},{\"type\":\"text\",\"text\":\"ok\"},{\"type\":\"tool_use\","
        "\"id\":\"t1\",\"name\":\"f\",\"input\":{\"a\":1}}]},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"and\"},"
        "{\"type\":\"tool_result\",\"tool_use_id\":\"t1\",\"is_error\":true,"
        "\"content\":[{\"type\":\"text\",\"text\":\"x\"},{\"type\":\"text\",\"text\":\"y\"}]}]}]}",
        "{\"model\":\"m\",\"max_tokens\":5,\"tools\":[{\"type\":\"function\",\"function\":{"
        "\"name\":\"f\",\"description\":\"d\",\"parameters\":{\"type\":\"object\"}}}],"
        "\"tool_choice\":\"required\",\"parallel_tool_calls\":false,\"messages\":["
        "{\"role\":\"user\",\"content\":\"go\"},"
        "{\"role\":\"assistant\",\"content\":\"ok\",\"tool_calls\":[{\"id\":\"t1\",\"type\":"
        "\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"a\\\":1}\"}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"t1\",\"content\":\"Error: x\\ny\"},"
        "{\"role\":\"user\",\"content\":\"and\"}]}");
    /* structured output: output_config.format is OpenAI's json_schema response_format */
    parses_to("{\"model\":\"m\",\"max_tokens\":5,\"output_config\":{\"effort\":\"low\",\"format\":"
              "{\"type\":\"json_schema\",\"schema\":{\"type\":\"object\"}}},\"messages\":["
              "{\"role\":\"user\",\"content\":\"q\"}]}",
              "{\"model\":\"m\",\"max_tokens\":5,\"response_format\":{\"type\":\"json_schema\","
              "\"json_schema\":{\"name\":\"output\",\"schema\":{\"type\":\"object\"},\"strict\":"
              "true}},\"messages\":[{\"role\":\"user\",\"content\":\"q\"}]}");
}

/* Strings are copied as they were written (escapes and all), so they mean the same after;
 * field names and types are read unescaped, as any JSON reader would; a tool_use input
 * becomes compact JSON text inside the arguments string. */
static void test_parse_copies_strings_verbatim_and_reads_escapes(void **state)
{
    (void)state;
    parses_to(
        "{\"m\\u006fdel\":\"m\\u00e9\",\"max_tokens\":5,\"system\":\"a\\\"b\\\\c\\n\\u00e9\","
        "\"messages\":[{\"role\":\"us\\u0065r\",\"content\":[{\"type\":\"t\\u0065xt\","
        "\"text\":\"\\ud83d\\ude00 \\/ \\t\"}]},{\"role\":\"assistant\",\"content\":[{"
        "\"type\":\"tool_use\",\"id\":\"t\\\"1\",\"name\":\"f\",\"input\":{ \"q\" : \"say "
        "\\\"hi\\\"\\n\", \"n\" : [ 1, 2.50, {\"k\\u00e9\":null} ] }}]},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"t\\\"1\","
        "\"content\":[{\"type\":\"text\",\"text\":\"x\\\"\"},{\"type\":\"text\",\"text\":"
        "\"\\u00e9\"}]}]}]}",
        "{\"model\":\"m\\u00e9\",\"max_tokens\":5,\"messages\":["
        "{\"role\":\"system\",\"content\":\"a\\\"b\\\\c\\n\\u00e9\"},"
        "{\"role\":\"user\",\"content\":\"\\ud83d\\ude00 / \\t\"},"
        "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"t\\\"1\",\"type\":"
        "\"function\",\"function\":{\"name\":\"f\",\"arguments\":"
        "\"{\\\"q\\\":\\\"say \\\\\\\"hi\\\\\\\"\\\\n\\\",\\\"n\\\":[1,2.50,{\\\"k\\\\u00e9\\\":"
        "null}]}\"}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"t\\\"1\",\"content\":\"x\\\"\\n\\u00e9\"}]}");
    /* the arguments string holds JSON that reads back as the input object */
    struct fixture f;
    struct err e;
    setup(&f, "{\"model\":\"m\",\"max_tokens\":5,\"messages\":[{\"role\":\"assistant\",\"content\":"
              "[{\"type\":\"tool_use\",\"id\":\"i\",\"name\":\"f\",\"input\":{\"a\":\"\\\\\\\"\","
              "\"b\":{\"c\":[true,false]}}}]}]}");
    assert_int_equal(surface_anthropic.parse(&f.x, OPENAI_CHAT, &e), 0);
    json_t *got = json_loadb(f.x.request->scan.js, f.x.request->scan.len, 0, NULL);
    const char *args = json_string_value(json_object_get(
        json_object_get(
            json_array_get(
                json_object_get(json_array_get(json_object_get(got, "messages"), 0), "tool_calls"),
                0),
            "function"),
        "arguments"));
    assert_non_null(args);
    json_t *input = json_loads(args, 0, NULL), *want = json_loads("{\"a\":\"\\\\\\\"\",\"b\":"
                                                                  "{\"c\":[true,false]}}",
                                                                  0, NULL);
    assert_true(json_equal(input, want));
    json_decref(input);
    json_decref(want);
    json_decref(got);
    teardown(&f);
}

static void test_parse_refuses_what_anthropic_refuses_naming_the_field(void **state)
{
    (void)state;
    const char *msg = "\"messages\":[{\"role\":\"user\",\"content\":\"q\"}]";
    char b[512];
#define WITH(fmt) (snprintf(b, sizeof b, "{\"model\":\"m\"," fmt "}", msg), b)
    refused(WITH("%s"), "max_tokens: Field required");
    refused(WITH("\"max_tokens\":0,%s"), "max_tokens: Input should be an integer of at least 1");
    refused(WITH("\"max_tokens\":\"5\",%s"), "max_tokens: ");
    refused(WITH("\"max_tokens\":5,\"extra\":1,%s"), "extra: Extra inputs are not permitted");
    refused(WITH("\"max_tokens\":5,\"mcp_servers\":[],%s"), "mcp_servers: this gateway does not");
    refused(WITH("\"max_tokens\":5,\"temperature\":1.2,%s"),
            "temperature: Input should be between");
    refused(WITH("\"max_tokens\":5,\"top_p\":\"x\",%s"), "top_p: Input should be a valid number");
    refused(WITH("\"max_tokens\":5,\"top_k\":-1,%s"), "top_k: ");
    refused(WITH("\"max_tokens\":5,\"stream\":1,%s"), "stream: ");
    refused(WITH("\"max_tokens\":5,\"stop_sequences\":[\"a\",3],%s"), "stop_sequences.1: ");
    refused(WITH("\"max_tokens\":5,\"system\":[{\"type\":\"image\"}],%s"), "system.0: ");
    refused(WITH("\"max_tokens\":5,\"metadata\":{\"user_id\":5},%s"), "metadata: ");
    refused(WITH("\"max_tokens\":5,\"thinking\":{\"type\":\"enabled\",\"budget_tokens\":1024},%s"),
            "thinking: extended thinking is not supported");
    refused(WITH("\"max_tokens\":5,\"tools\":[{\"type\":\"web_search_20250305\",\"name\":\"w\"}],"
                 "%s"),
            "tools.0.type: 'web_search_20250305' is an Anthropic server tool");
    refused(WITH("\"max_tokens\":5,\"tools\":[{\"name\":\"f\"}],%s"), "tools.0: ");
    refused(WITH("\"max_tokens\":5,\"tools\":[{\"name\":\"f\",\"input_schema\":{}}],"
                 "\"tool_choice\":{\"type\":\"tool\"},%s"),
            "tool_choice.type: ");
    refused(WITH("\"max_tokens\":5,\"output_config\":{\"format\":{\"type\":\"xml\"}},%s"),
            "output_config.format: ");
    refused("{\"model\":\"m\",\"max_tokens\":5}", "messages: Field required");
    refused("{\"model\":\"m\",\"max_tokens\":5,\"messages\":[]}",
            "messages: at least one message is required");
    refused("{\"model\":\"m\",\"max_tokens\":5,\"messages\":{}}",
            "messages: Input should be a valid list");
    refused("{\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":\"q\"}]}",
            "model: Field required");
    refused("{\"model\":7,\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":\"q\"}]}",
            "model: ");
#undef WITH
}

static void test_parse_refuses_bad_messages_naming_the_path(void **state)
{
    (void)state;
    refused("{\"model\":\"m\",\"max_tokens\":5,\"messages\":[\"hi\"]}", "messages.0: ");
    refused("{\"model\":\"m\",\"max_tokens\":5,\"messages\":[{\"role\":\"system\",\"content\":"
            "\"x\"}]}",
            "messages.0.role: Input should be 'user' or 'assistant'");
    refused("{\"model\":\"m\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":7}]}",
            "messages.0.content: Input should be a valid string or list, got an integer");
    refused("{\"model\":\"m\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":\"q\","
            "\"name\":\"x\"}]}",
            "messages.0.name: Extra inputs are not permitted");
    refused("{\"model\":\"m\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":\"q\"},"
            "{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":1}]}]}",
            "messages.1.content.0.text: Input should be a valid string");
    refused("{\"model\":\"m\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":["
            "{\"type\":\"document\",\"source\":{}}]}]}",
            "messages.0.content.0.type: 'document' blocks are not supported");
    refused("{\"model\":\"m\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":["
            "{\"type\":\"image\",\"source\":{\"type\":\"file\",\"file_id\":\"f\"}}]}]}",
            "messages.0.content.0.source.type: 'file' is not supported");
    refused("{\"model\":\"m\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":["
            "{\"type\":\"image\",\"source\":{\"type\":\"base64\",\"data\":\"x\"}}]}]}",
            "messages.0.content.0.source: a base64 source needs");
    refused("{\"model\":\"m\",\"max_tokens\":5,\"messages\":[{\"role\":\"assistant\",\"content\":["
            "{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"f\",\"input\":\"{}\"}]}]}",
            "messages.0.content.0: a tool_use block needs");
    refused("{\"model\":\"m\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":["
            "{\"type\":\"tool_result\",\"content\":\"x\"}]}]}",
            "messages.0.content.0.tool_use_id: Field required");
    refused(
        "{\"model\":\"m\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":["
        "{\"type\":\"tool_result\",\"tool_use_id\":\"t\",\"content\":[{\"type\":\"image\"}]}]}]}",
        "messages.0.content.0.content.0: only text blocks");
    refused(
        "{\"model\":\"m\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":[{}]}]}",
        "messages.0.content.0: Input should be a content block");
}

static void test_parse_refuses_bodies_that_are_not_json_objects(void **state)
{
    (void)state;
    refused("", "request body is empty");
    refused("{\"model\":", "request body is not valid JSON");
    refused("[1,2]", "request body must be a JSON object, got a list");
    refused("{\"model\":\"a\",\"model\":\"b\"}", "request body has a key twice");
    /* deeper than the request model allows: refused before any document is built */
    char deep[600];
    size_t n = 0;
    n += (size_t)snprintf(deep, sizeof deep, "{\"model\":\"m\",\"max_tokens\":5,\"x\":");
    for (int i = 0; i < 200; i++) deep[n++] = '[';
    for (int i = 0; i < 200; i++) deep[n++] = ']';
    deep[n++] = '}';
    deep[n] = '\0';
    assert_true(n < sizeof deep);
    refused(deep, "request body is beyond the gateway's limits");
}

/* ---- streams ------------------------------------------------------------------------------- */

static char *queued(struct fixture *f)
{
    static char out[4096];
    size_t n = evbuffer_get_length(f->state.out);
    assert_true(n < sizeof out);
    evbuffer_copyout(f->state.out, out, n);
    out[n] = '\0';
    return out;
}

static int feed(struct fixture *f, const char *json, bool usage_only)
{
    struct call_chunk ch = {.json = json, .len = strlen(json), .usage_only = usage_only};
    return surface_anthropic.chunk(&f->x, &ch);
}

static void test_chunks_become_message_start_and_numbered_blocks(void **state)
{
    (void)state;
    struct fixture f;
    struct err e;
    setup(&f, "{\"model\":\"claude-x\",\"max_tokens\":9,\"stream\":true,\"messages\":"
              "[{\"role\":\"user\",\"content\":\"q\"}]}");
    assert_int_equal(surface_anthropic.parse(&f.x, OPENAI_CHAT, &e), 0);
    assert_int_equal(feed(&f,
                          "{\"id\":\"chatcmpl-7\",\"choices\":[{\"delta\":{\"role\":\"assistant\","
                          "\"content\":\"\"}}]}",
                          false),
                     1);
    assert_int_equal(feed(&f, "{\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}", false), 1);
    assert_int_equal(feed(&f,
                          "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"c1\","
                          "\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"a\\\"\"}}]}}]}",
                          false),
                     1);
    assert_int_equal(feed(&f,
                          "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":"
                          "{\"arguments\":\":1}\"}}]},\"finish_reason\":\"tool_calls\"}]}",
                          false),
                     1);
    /* the usage chunk is kept for message_delta, not framed */
    assert_int_equal(
        feed(&f, "{\"choices\":[],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":2}}", true),
        0);
    assert_string_equal(
        queued(&f),
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_7\","
        "\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-x\",\"content\":[],"
        "\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":0,"
        "\"output_tokens\":0}}}\n\n"
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,"
        "\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n"
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,"
        "\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n"
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,"
        "\"content_block\":{\"type\":\"tool_use\",\"id\":\"c1\",\"name\":\"f\",\"input\":{}}}\n\n"
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,"
        "\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"a\\\"\"}}\n\n"
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,"
        "\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\":1}\"}}\n\n");
    assert_string_equal(f.state.finish, "tool_calls");
    assert_true(f.state.have_usage);
    assert_int_equal(f.state.prompt, 4);
    assert_int_equal(f.state.completion, 2);
    assert_true(f.state.open); /* closed by end() with the message_delta */
    teardown(&f);
}

/* Chunk strings reach the events as written; a chunk that is not strict JSON (a raw control
 * character would break the SSE framing) adds nothing; the matched stop sequence is compared
 * unescaped and written escaped. */
static void test_chunks_copy_strings_and_skip_garbled_ones(void **state)
{
    (void)state;
    struct fixture f;
    struct err e;
    setup(&f,
          "{\"model\":\"c\",\"max_tokens\":9,\"stream\":true,\"stop_sequences\":[\"\\u00e9\\\"\"],"
          "\"messages\":[{\"role\":\"user\",\"content\":\"q\"}]}");
    assert_int_equal(surface_anthropic.parse(&f.x, OPENAI_CHAT, &e), 0);
    assert_int_equal(
        feed(&f, "{\"id\":\"x\\\"y\",\"choices\":[{\"delta\":{\"content\":\"a\\n\"}}]}", false), 1);
    assert_int_equal(feed(&f, "{\"choices\":[{\"delta\":{\"content\":\"raw\nline\"}}]}", false), 1);
    assert_int_equal(feed(&f,
                          "{\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\","
                          "\"stop_reason\":\"\\u00e9\\\"\"}]}",
                          false),
                     1);
    assert_string_equal(
        queued(&f),
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":"
        "\"msg_x\\\"y\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"c\",\"content\":[],"
        "\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":0,"
        "\"output_tokens\":0}}}\n\n"
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,"
        "\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n"
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,"
        "\"delta\":{\"type\":\"text_delta\",\"text\":\"a\\n\"}}\n\n");
    assert_string_equal(f.state.finish, "stop");
    assert_string_equal(f.state.stop_sequence, "\xc3\xa9\"");
    teardown(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_credential_is_x_api_key_or_bearer_never_two_different),
        cmocka_unit_test(test_parse_fills_the_request_model),
        cmocka_unit_test(test_parse_translates_sampling_system_and_metadata),
        cmocka_unit_test(test_parse_translates_images_tools_and_tool_results),
        cmocka_unit_test(test_parse_copies_strings_verbatim_and_reads_escapes),
        cmocka_unit_test(test_parse_refuses_what_anthropic_refuses_naming_the_field),
        cmocka_unit_test(test_parse_refuses_bad_messages_naming_the_path),
        cmocka_unit_test(test_parse_refuses_bodies_that_are_not_json_objects),
        cmocka_unit_test(test_chunks_become_message_start_and_numbered_blocks),
        cmocka_unit_test(test_chunks_copy_strings_and_skip_garbled_ones),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
