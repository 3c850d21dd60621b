/* Unit tests for src/api/openai.c: request body validation. */
#include "unit/cmocka_all.h"

#include <string.h>

#include "api/openai.h"
#include "util/arena.h"

static struct arena *arena;
static struct openai_request req;

static int setup(void **state)
{
    (void)state;
    arena = arena_new(4096);
    return arena ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    arena_free(arena);
    return 0;
}

/* Returns &req on success, NULL on a validation error (e filled). */
static struct openai_request *parse(enum openai_endpoint ep, const char *body, struct err *e)
{
    err_clear(e);
    return openai_parse_request(ep, body, strlen(body), arena, &req, e) == 0 ? &req : NULL;
}

static void expect_400(enum openai_endpoint ep, const char *body, const char *code,
                       const char *param, const char *msg_part)
{
    struct err e;
    assert_null(parse(ep, body, &e));
    assert_int_equal(e.status, 400);
    assert_string_equal(e.code, code);
    if (param)
        assert_string_equal(e.param, param);
    else
        assert_null(e.param);
    if (strstr(e.msg, msg_part) == NULL) fail_msg("message '%s' lacks '%s'", e.msg, msg_part);
}

static void test_openai_parse_request_accepts_valid_chat(void **state)
{
    (void)state;
    struct err e;
    struct openai_request *r =
        parse(OPENAI_CHAT,
              "{\"model\":\"m\\u00e9\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
              "\"stream\":true,\"stream_options\":{\"include_usage\":true},\"temperature\":0,"
              "\"max_tokens\":5,\"x_unknown\":[1]}",
              &e);
    assert_non_null(r);
    assert_string_equal(r->model, "m\xc3\xa9"); /* escapes decoded */
    assert_true(r->stream);
    assert_true(r->want_usage);
    assert_true(r->stream_options_tok > 0);
    r = parse(OPENAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}]}", &e);
    assert_non_null(r);
    assert_false(r->stream);
    assert_false(r->want_usage);
    assert_int_equal(r->stream_options_tok, -1);
}

static void test_openai_parse_request_rejects_malformed_json(void **state)
{
    (void)state;
    expect_400(OPENAI_CHAT, "{\"model\": ", "invalid_json", NULL, "not valid JSON");
    expect_400(OPENAI_CHAT, "", "invalid_json", NULL, "empty");
    expect_400(OPENAI_CHAT, "[1,2]", "invalid_json", NULL, "must be a JSON object");
    expect_400(OPENAI_CHAT, "{\"model\":\"m\"} {}", "invalid_json", NULL, "not valid JSON");
    expect_400(OPENAI_CHAT, "{\"model\":tru}", "invalid_json", NULL, "line 1");
    /* A second "model" could reach the upstream instead of the routed one. */
    expect_400(OPENAI_CHAT,
               "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],\"model\":\"other\"}",
               "invalid_json", NULL, "key \"model\" more than once");
}

static void test_openai_parse_request_names_wrong_typed_field(void **state)
{
    (void)state;
    expect_400(OPENAI_CHAT, "{\"model\":5,\"messages\":[]}", "invalid_type", "model",
               "\"model\" must be a string, got integer");
    expect_400(OPENAI_CHAT, "{\"model\":\"m\",\"messages\":\"hi\"}", "invalid_type", "messages",
               "\"messages\" must be an array, got string");
    expect_400(OPENAI_CHAT,
               "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],\"stream\":\"yes\"}",
               "invalid_type", "stream", "\"stream\" must be a boolean");
    expect_400(OPENAI_CHAT,
               "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],\"max_tokens\":1.5}",
               "invalid_type", "max_tokens", "must be an integer");
    expect_400(OPENAI_CHAT, "{\"model\":\"m\",\"messages\":[7]}", "invalid_type", "messages",
               "messages[0]");
    expect_400(OPENAI_CHAT,
               "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],"
               "\"stream_options\":{\"include_usage\":1}}",
               "invalid_type", "stream_options", "include_usage");
}

static void test_openai_parse_request_reports_missing_fields(void **state)
{
    (void)state;
    expect_400(OPENAI_CHAT, "{\"messages\":[{\"role\":\"user\"}]}", "missing_field", "model",
               "\"model\"");
    expect_400(OPENAI_CHAT, "{\"model\":\"m\"}", "missing_field", "messages", "\"messages\"");
    expect_400(OPENAI_EMBEDDINGS, "{\"model\":\"m\"}", "missing_field", "input", "\"input\"");
    expect_400(OPENAI_COMPLETIONS, "{\"model\":\"m\"}", "missing_field", "prompt", "\"prompt\"");
}

static void test_openai_parse_request_accepts_embeddings_and_completions(void **state)
{
    (void)state;
    struct err e;
    assert_non_null(parse(OPENAI_EMBEDDINGS, "{\"model\":\"m\",\"input\":[\"a\",\"b\"]}", &e));
    assert_non_null(
        parse(OPENAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"x\",\"stream\":false}", &e));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_openai_parse_request_accepts_valid_chat),
        cmocka_unit_test(test_openai_parse_request_rejects_malformed_json),
        cmocka_unit_test(test_openai_parse_request_names_wrong_typed_field),
        cmocka_unit_test(test_openai_parse_request_reports_missing_fields),
        cmocka_unit_test(test_openai_parse_request_accepts_embeddings_and_completions),
    };
    return cmocka_run_group_tests_name("src/api/openai.c", tests, setup, teardown);
}
