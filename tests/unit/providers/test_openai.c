/* Unit tests for src/providers/openai.c: the body sent upstream. */
#include "unit/cmocka_all.h"

#include <string.h>

#include "providers/provider.h"
#include "util/arena.h"

static json_t *rewrite(const char *in, const char *model, bool stream)
{
    struct arena *a = arena_new(1024);
    struct err e;
    size_t len = 0;
    json_t *body = json_loads(in, 0, NULL);
    assert_non_null(body);
    char *s = openai_body_for_target(body, model, stream, a, &len, &e);
    assert_non_null(s);
    assert_int_equal(len, strlen(s));
    json_t *out = json_loads(s, 0, NULL);
    assert_non_null(out);
    json_decref(body);
    arena_free(a);
    return out;
}

static void test_openai_body_for_target_rewrites_model_only(void **state)
{
    (void)state;
    json_t *out = rewrite("{\"model\":\"chat\",\"messages\":[{\"role\":\"user\",\"content\":\"é\"}],"
                          "\"vendor_field\":{\"a\":[1,2]}}",
                          "gpt-4o-mini", false);
    assert_string_equal(json_string_value(json_object_get(out, "model")), "gpt-4o-mini");
    assert_null(json_object_get(out, "stream_options"));
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(out, "messages"), 0), "content")),
                        "é");
    assert_int_equal(json_integer_value(json_array_get(
                         json_object_get(json_object_get(out, "vendor_field"), "a"), 1)),
                     2);
    json_decref(out);
}

static void test_openai_body_for_target_asks_for_stream_usage(void **state)
{
    (void)state;
    json_t *out = rewrite("{\"model\":\"chat\",\"messages\":[],\"stream\":true}", "m2", true);
    assert_true(json_is_true(json_object_get(json_object_get(out, "stream_options"),
                                             "include_usage")));
    json_decref(out);
    /* An explicit false from the client is overridden upstream (the gateway needs usage). */
    out = rewrite("{\"model\":\"c\",\"stream\":true,\"stream_options\":{\"include_usage\":false,"
                  "\"other\":1}}",
                  "m2", true);
    json_t *so = json_object_get(out, "stream_options");
    assert_true(json_is_true(json_object_get(so, "include_usage")));
    assert_int_equal(json_integer_value(json_object_get(so, "other")), 1);
    json_decref(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_openai_body_for_target_rewrites_model_only),
        cmocka_unit_test(test_openai_body_for_target_asks_for_stream_usage),
    };
    return cmocka_run_group_tests_name("src/providers/openai.c", tests, NULL, NULL);
}
