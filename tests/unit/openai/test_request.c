/* Unit tests for src/openai/request.c: request body validation. */
#include "unit/cmocka_all.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "openai/request.h"
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
    /* Keys that look like paths (found by fuzzing: this one crashed the message). */
    expect_400(OPENAI_CHAT, "{\"e [\":6,\"e [\":6}", "invalid_json", NULL,
               "request body has the key \"e [\" more than once");
    expect_400(OPENAI_CHAT,
               "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"x\":{\"a.b\":1,\"a.b\":2}}]}",
               "invalid_json", NULL, "\"messages[0].x\" has the key \"a.b\" more than once");
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

#define CHAT(extra) "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}]," extra "}"

/* Each numeric field against OpenAI's documented bounds: one value inside each edge is
 * accepted, one outside refused naming the field. */
static void test_openai_parse_request_checks_numeric_ranges(void **state)
{
    (void)state;
    static const struct {
        const char *field, *ok[2], *bad[2];
    } cases[] = {
        {"max_tokens", {"1", "9223372036854775807"}, {"0", "-5"}},
        {"max_completion_tokens", {"1", "4096"}, {"0", "-1"}},
        {"n", {"1", "128"}, {"0", "129"}},
        {"temperature", {"0", "2"}, {"-0.1", "2.0001"}},
        {"top_p", {"0", "1"}, {"-1e-9", "1.5"}},
        {"presence_penalty", {"-2", "2"}, {"-2.5", "3"}},
        {"frequency_penalty", {"-2.0", "2.0"}, {"-3", "2.1"}},
        {"top_logprobs", {"0", "20"}, {"-1", "21"}},
        {"seed", {"-9223372036854775808", "9223372036854775807"}, {"1.5", "\"7\""}},
    };
    struct err e;
    char body[256];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (int k = 0; k < 2; k++) {
            snprintf(body, sizeof body, CHAT("\"%s\":%s"), cases[i].field, cases[i].ok[k]);
            if (parse(OPENAI_CHAT, body, &e) == NULL) fail_msg("%s refused: %s", body, e.msg);
            snprintf(body, sizeof body, CHAT("\"%s\":%s"), cases[i].field, cases[i].bad[k]);
            if (parse(OPENAI_CHAT, body, &e) != NULL) fail_msg("%s accepted", body);
            assert_int_equal(e.status, 400);
            assert_string_equal(e.param, cases[i].field);
            if (strstr(e.msg, cases[i].field) == NULL) fail_msg("'%s' lacks the field", e.msg);
        }
    }
    expect_400(OPENAI_CHAT, CHAT("\"max_tokens\":0"), "invalid_value", "max_tokens",
               "\"max_tokens\" must be at least 1, got 0");
    expect_400(OPENAI_CHAT, CHAT("\"temperature\":3"), "invalid_value", "temperature",
               "\"temperature\" must be a number from 0 to 2, got 3");
    expect_400(OPENAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"x\",\"logprobs\":6}",
               "invalid_value", "logprobs", "from 0 to 5");
    expect_400(OPENAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"x\",\"best_of\":21}",
               "invalid_value", "best_of", "from 1 to 20");
    expect_400(OPENAI_EMBEDDINGS, "{\"model\":\"m\",\"input\":\"x\",\"dimensions\":0}",
               "invalid_value", "dimensions", "at least 1");
    expect_400(OPENAI_CHAT, CHAT("\"logit_bias\":{\"50256\":-101}"), "invalid_value", "logit_bias",
               "logit_bias.50256");
    assert_non_null(parse(OPENAI_CHAT, CHAT("\"logit_bias\":{\"1\":-100,\"2\":100}"), &e));
}

/* Integers past int64 would wrap in the admission estimate (a TPM limit passed as if the
 * request asked for nothing); they are refused wherever they are. */
static void test_openai_parse_request_refuses_numbers_beyond_int64(void **state)
{
    (void)state;
    expect_400(OPENAI_CHAT, CHAT("\"max_tokens\":9223372036854775808"), "invalid_value",
               "max_tokens", "\"max_tokens\" is out of range");
    expect_400(OPENAI_CHAT, CHAT("\"max_tokens\":1000000000000000000000000000000"), "invalid_value",
               "max_tokens", "64-bit");
    expect_400(OPENAI_CHAT, CHAT("\"max_tokens\":1e30"), "invalid_type", "max_tokens",
               "must be an integer");
    expect_400(OPENAI_CHAT, CHAT("\"seed\":-9223372036854775809"), "invalid_value", "seed",
               "out of range");
    expect_400(OPENAI_CHAT, CHAT("\"x_vendor\":{\"v\":[1e999]}"), "invalid_value", NULL,
               "\"x_vendor.v[0]\" is out of range");
}

/* Strings jansson refuses (the engine and the translations read bodies with it) are a 400
 * naming the field, not a 500 "out of memory" further on. */
static void test_openai_parse_request_refuses_nul_and_invalid_utf8(void **state)
{
    (void)state;
    expect_400(OPENAI_CHAT, "{\"model\":\"a\\u0000b\",\"messages\":[{\"role\":\"user\"}]}",
               "invalid_value", "model", "\"model\" is not a valid JSON string: \\u0000 (NUL)");
    expect_400(OPENAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"us\\u0000er\"}]}",
               "invalid_value", "messages", "\"messages[0].role\"");
    expect_400(OPENAI_CHAT,
               "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\xff\xfe\"}]}",
               "invalid_value", "messages",
               "\"messages[0].content\" is not a valid JSON string: "
               "invalid UTF-8");
    expect_400(OPENAI_CHAT, "{\"model\":\"\xc0\xaf\",\"messages\":[{\"role\":\"user\"}]}",
               "invalid_value", "model", "invalid UTF-8");
    expect_400(OPENAI_EMBEDDINGS, "{\"model\":\"m\",\"input\":[\"ok\",\"\\udfff\"]}",
               "invalid_value", "input", "\"input[1]\"");
}

/* Every limit refuses with a 400 that names it; just under each one is accepted. */
static void test_openai_parse_request_enforces_body_limits(void **state)
{
    (void)state;
    struct err e;
    size_t cap = (size_t)OPENAI_MAX_MESSAGES * 20 + (size_t)OPENAI_MAX_JSON_VALUES * 2 + 4096;
    char *body = malloc(cap);
    /* messages */
    for (int extra = 0; extra < 2; extra++) {
        size_t n = (size_t)sprintf(body, "{\"model\":\"m\",\"messages\":[");
        for (int i = 0; i < OPENAI_MAX_MESSAGES + extra; i++)
            n += (size_t)sprintf(body + n, "%s{\"role\":\"user\"}", i ? "," : "");
        sprintf(body + n, "]}");
        if (extra == 0) {
            if (parse(OPENAI_CHAT, body, &e) == NULL) fail_msg("refused: %s", e.msg);
        } else {
            expect_400(OPENAI_CHAT, body, "array_above_max_length", "messages", "at most 100000");
        }
    }
    /* keys and values in the body */
    size_t n = (size_t)sprintf(body, "{\"model\":\"m\",\"input\":\"x\",\"pad\":[");
    for (int i = 0; i < OPENAI_MAX_JSON_VALUES; i++)
        n += (size_t)sprintf(body + n, "%s0", i ? "," : "");
    sprintf(body + n, "]}");
    expect_400(OPENAI_EMBEDDINGS, body, "json_too_large", NULL, "more than 1048576");
    /* depth: the body is one level, "pad" holds `k` arrays inside each other */
    for (int k = OPENAI_MAX_DEPTH - 1; k <= OPENAI_MAX_DEPTH; k++) {
        n = (size_t)sprintf(body, "{\"model\":\"m\",\"input\":\"x\",\"pad\":");
        for (int i = 0; i < k; i++) body[n++] = '[';
        for (int i = 0; i < k; i++) body[n++] = ']';
        sprintf(body + n, "}");
        if (k < OPENAI_MAX_DEPTH)
            assert_non_null(parse(OPENAI_EMBEDDINGS, body, &e));
        else
            expect_400(OPENAI_EMBEDDINGS, body, "json_too_deep", NULL, "more than 128 deep");
    }
    /* keys in one object */
    for (int extra = 0; extra < 2; extra++) {
        n = (size_t)sprintf(body, "{\"model\":\"m\",\"input\":\"x\",\"o\":{");
        for (int i = 0; i < OPENAI_MAX_OBJECT_MEMBERS + extra; i++)
            n += (size_t)sprintf(body + n, "%s\"k%d\":0", i ? "," : "", i);
        sprintf(body + n, "}}");
        if (extra == 0)
            assert_non_null(parse(OPENAI_EMBEDDINGS, body, &e));
        else
            expect_400(OPENAI_EMBEDDINGS, body, "json_too_large", NULL,
                       "\"o\" has 65537 keys; an object may have at most 65536");
    }
    /* embedding inputs */
    n = (size_t)sprintf(body, "{\"model\":\"m\",\"input\":[");
    for (int i = 0; i <= OPENAI_MAX_EMBEDDING_INPUTS; i++)
        n += (size_t)sprintf(body + n, "%s\"x\"", i ? "," : "");
    sprintf(body + n, "]}");
    expect_400(OPENAI_EMBEDDINGS, body, "array_above_max_length", "input", "at most 2048");
    free(body);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_openai_parse_request_accepts_valid_chat),
        cmocka_unit_test(test_openai_parse_request_rejects_malformed_json),
        cmocka_unit_test(test_openai_parse_request_names_wrong_typed_field),
        cmocka_unit_test(test_openai_parse_request_reports_missing_fields),
        cmocka_unit_test(test_openai_parse_request_accepts_embeddings_and_completions),
        cmocka_unit_test(test_openai_parse_request_checks_numeric_ranges),
        cmocka_unit_test(test_openai_parse_request_refuses_numbers_beyond_int64),
        cmocka_unit_test(test_openai_parse_request_refuses_nul_and_invalid_utf8),
        cmocka_unit_test(test_openai_parse_request_enforces_body_limits),
    };
    return cmocka_run_group_tests_name("src/api/openai.c", tests, setup, teardown);
}
