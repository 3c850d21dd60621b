/* Unit tests for src/providers/openai.c: the body sent upstream. */
#include "unit/cmocka_all.h"

#include <jansson.h>
#include <string.h>

#include "providers/provider.h"
#include "util/arena.h"

/* Validates `in` like the API does, rewrites it for `model`, and returns the parsed result;
 * *text gets the raw rewritten bytes. */
static json_t *rewrite(const char *in, const char *model, char *text, size_t cap)
{
    struct arena *a = arena_new(1024);
    struct err e;
    struct openai_request r;
    size_t len = 0;
    assert_int_equal(openai_parse_request(OPENAI_CHAT, in, strlen(in), a, &r, &e), 0);
    char *s = openai_body_for_target(&r, model, false, a, &len, &e);
    assert_non_null(s);
    assert_int_equal(len, strlen(s));
    snprintf(text, cap, "%s", s);
    json_error_t je;
    json_t *out = json_loads(s, JSON_REJECT_DUPLICATES, &je);
    if (out == NULL) fail_msg("rewritten body is not JSON (%s): %s", je.text, s);
    arena_free(a);
    return out;
}

static void test_openai_body_for_target_rewrites_model_only(void **state)
{
    (void)state;
    char text[1024];
    const char *in =
        "{ \"model\" : \"chat\",\"messages\":[{\"role\":\"user\",\"content\":\"é \\\"q\\\"\"}],"
        "\"vendor_field\":{\"a\":[1,2.50]}}";
    json_t *out = rewrite(in, "gpt-4o-mini", text, sizeof text);
    assert_string_equal(json_string_value(json_object_get(out, "model")), "gpt-4o-mini");
    assert_null(json_object_get(out, "stream_options"));
    /* Every other byte is the client's: formatting, escapes and number spelling survive. */
    assert_non_null(strstr(text, "{ \"model\" : \"gpt-4o-mini\",\"messages\""));
    assert_non_null(strstr(text, "\"content\":\"é \\\"q\\\"\""));
    assert_non_null(strstr(text, "[1,2.50]"));
    json_decref(out);
}

static void test_openai_body_for_target_escapes_target_model(void **state)
{
    (void)state;
    char text[512];
    json_t *out = rewrite("{\"model\":\"c\",\"messages\":[{\"role\":\"user\"}]}", "we\"ird\\name",
                          text, sizeof text);
    assert_string_equal(json_string_value(json_object_get(out, "model")), "we\"ird\\name");
    json_decref(out);
}

static void test_openai_body_for_target_asks_for_stream_usage(void **state)
{
    (void)state;
    char text[512];
    const char *cases[] = {
        /* absent, null, empty object, object without the flag, explicit false */
        "{\"model\":\"c\",\"messages\":[{\"role\":\"user\"}],\"stream\":true}",
        "{\"model\":\"c\",\"messages\":[{\"role\":\"user\"}],\"stream\":true,\"stream_options\":"
        "null}",
        "{\"model\":\"c\",\"messages\":[{\"role\":\"user\"}],\"stream\":true,\"stream_options\":{}"
        "}",
        "{\"model\":\"c\",\"messages\":[{\"role\":\"user\"}],\"stream\":true,\"stream_options\":{"
        "\"x\":1}}",
        "{\"stream_options\":{\"include_usage\":false},\"model\":\"c\",\"messages\":[{\"role\":"
        "\"user\"}],"
        "\"stream\":true}",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *out = rewrite(cases[i], "m2", text, sizeof text);
        json_t *so = json_object_get(out, "stream_options");
        if (!json_is_true(json_object_get(so, "include_usage")))
            fail_msg("case %zu: include_usage not set: %s", i, text);
        assert_string_equal(json_string_value(json_object_get(out, "model")), "m2");
        if (i == 3) assert_int_equal(json_integer_value(json_object_get(so, "x")), 1);
        json_decref(out);
    }
}

/* The engine's scoring extension reaches self-hosted targets only: cut for the rest,
 * wherever it sits among the members, leaving valid JSON and every other byte. */
static void test_openai_body_for_target_cuts_extensions(void **state)
{
    (void)state;
    const char *cases[] = {
        "{\"stratus_labels\":[\"a\",\"b\"],\"model\":\"c\",\"messages\":[{\"role\":\"user\"}]}",
        "{\"model\":\"c\", \"stratus_labels\" : [\"a\"] ,\"messages\":[{\"role\":\"user\"}]}",
        "{\"model\":\"c\",\"messages\":[{\"role\":\"user\"}] , \"stratus_labels\":[\"a\"] }",
        "{\"model\":\"c\",\"messages\":[{\"role\":\"user\"}],\"stream\":true,"
        "\"stratus_labels\":\"x\"}",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (int keep = 0; keep < 2; keep++) {
            struct arena *a = arena_new(1024);
            struct err e;
            struct openai_request r;
            size_t len = 0;
            assert_int_equal(
                openai_parse_request(OPENAI_CHAT, cases[i], strlen(cases[i]), a, &r, &e), 0);
            assert_true(r.labels_tok > 0);
            char *s = openai_body_for_target(&r, "m2", keep, a, &len, &e);
            assert_non_null(s);
            json_t *out = json_loads(s, JSON_REJECT_DUPLICATES, NULL);
            if (out == NULL) fail_msg("case %zu keep %d: not JSON: %s", i, keep, s);
            assert_string_equal(json_string_value(json_object_get(out, "model")), "m2");
            assert_non_null(json_object_get(out, "messages"));
            if (keep)
                assert_non_null(json_object_get(out, "stratus_labels"));
            else if (json_object_get(out, "stratus_labels"))
                fail_msg("case %zu: extension not cut: %s", i, s);
            json_decref(out);
            arena_free(a);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_openai_body_for_target_rewrites_model_only),
        cmocka_unit_test(test_openai_body_for_target_escapes_target_model),
        cmocka_unit_test(test_openai_body_for_target_asks_for_stream_usage),
        cmocka_unit_test(test_openai_body_for_target_cuts_extensions),
    };
    return cmocka_run_group_tests_name("src/providers/openai.c", tests, NULL, NULL);
}
