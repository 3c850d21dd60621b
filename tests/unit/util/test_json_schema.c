/* Unit tests for src/util/json_schema.c: the structured-output subset of JSON Schema. */
#include "unit/cmocka_all.h"

#include <jansson.h>
#include <string.h>

#include "util/json_schema.h"

static const char *SCHEMA =
    "{\"type\":\"object\",\"required\":[\"label\",\"tags\"],\"additionalProperties\":false,"
    "\"properties\":{\"label\":{\"type\":\"string\",\"enum\":[\"spam\",\"ham\"]},"
    "\"score\":{\"type\":\"number\",\"minimum\":0,\"maximum\":1},"
    "\"count\":{\"type\":\"integer\"},"
    "\"note\":{\"type\":[\"string\",\"null\"],\"maxLength\":3},"
    "\"tags\":{\"type\":\"array\",\"maxItems\":2,\"items\":{\"type\":\"string\",\"minLength\":1}}}"
    "}";

/* Checks `value` and returns the reason ("" when it passes). */
static const char *check(const char *value, char *why, size_t cap)
{
    json_t *s = json_loads(SCHEMA, 0, NULL), *v = json_loads(value, JSON_DECODE_ANY, NULL);
    assert_non_null(s);
    assert_non_null(v);
    why[0] = '\0';
    bool ok = json_schema_check(s, v, why, cap);
    json_decref(s);
    json_decref(v);
    if (ok) why[0] = '\0';
    return why;
}

static void test_json_schema_accepts_what_it_describes(void **state)
{
    (void)state;
    char why[256];
    assert_string_equal(check("{\"label\":\"spam\",\"tags\":[]}", why, sizeof why), "");
    assert_string_equal(check("{\"label\":\"ham\",\"score\":0.5,\"count\":3.0,\"note\":null,"
                              "\"tags\":[\"a\",\"é\"]}",
                              why, sizeof why),
                        "");
    assert_string_equal(check("{\"label\":\"ham\",\"note\":\"ééé\",\"tags\":[]}", why, sizeof why),
                        ""); /* three characters, six bytes */
}

static void test_json_schema_names_the_failing_place(void **state)
{
    (void)state;
    char why[256];
    const struct {
        const char *value, *why;
    } cases[] = {
        {"[]", "$: must be of type object"},
        {"{\"tags\":[]}", "$: is missing required property 'label'"},
        {"{\"label\":\"eggs\",\"tags\":[]}", "$.label: must be one of the enum values"},
        {"{\"label\":\"ham\",\"tags\":[],\"extra\":1}", "$.extra: is not an allowed property"},
        {"{\"label\":\"ham\",\"tags\":[],\"score\":1.5}", "$.score: is above maximum"},
        {"{\"label\":\"ham\",\"tags\":[],\"count\":1.5}", "$.count: must be of type integer"},
        {"{\"label\":\"ham\",\"tags\":[\"a\",\"\"]}", "$.tags[1]: is too short"},
        {"{\"label\":\"ham\",\"tags\":[\"a\",\"b\",\"c\"]}", "$.tags: has too many items"},
        {"{\"label\":\"ham\",\"tags\":[],\"note\":\"abcd\"}", "$.note: is too long"},
        {"{\"label\":\"ham\",\"tags\":[],\"note\":5}",
         "$.note: must be of type (one of the listed types)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (strcmp(check(cases[i].value, why, sizeof why), cases[i].why) != 0)
            fail_msg("%s: got '%s', expected '%s'", cases[i].value, why, cases[i].why);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_schema_accepts_what_it_describes),
        cmocka_unit_test(test_json_schema_names_the_failing_place),
    };
    return cmocka_run_group_tests_name("src/util/json_schema.c", tests, NULL, NULL);
}
