/* Unit tests for src/api/function.c's pure parts: template filling and label
 * probabilities. (Invocations end to end: tests/integration/functions.test.mjs.) */
#include "unit/cmocka_all.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "api/function.h"

static char *fill(const char *template, const char *input_json, struct err *e, char *missing)
{
    json_t *in = json_loads(input_json, 0, NULL);
    assert_non_null(in);
    char *out = function_fill_template(template, in, missing, 64, e);
    json_decref(in);
    return out;
}

static void test_fill_template_inserts_values_as_text(void **state)
{
    (void)state;
    struct err e;
    char missing[64] = "";
    char *s = fill("From: {{from}}\nSubject: {{ subject }}\n\n{{body}}",
                   "{\"from\":\"a@b\",\"subject\":\"{{body}}\",\"body\":\"x\"}", &e, missing);
    /* A value that looks like a placeholder stays text: it is never expanded again. */
    assert_string_equal(s, "From: a@b\nSubject: {{body}}\n\nx");
    free(s);
    s = fill("n={{n}} ok={{ok}} obj={{o}} nil=[{{z}}]",
             "{\"n\":4.5,\"ok\":true,\"o\":{\"k\":[1,2]},\"z\":null}", &e, missing);
    assert_string_equal(s, "n=4.5 ok=true obj={\"k\":[1,2]} nil=[]");
    free(s);
    s = fill("no placeholders at all", "{}", &e, missing);
    assert_string_equal(s, "no placeholders at all");
    free(s);
    s = fill("{{a}}{{a}}", "{\"a\":\"é\"}", &e, missing);
    assert_string_equal(s, "éé");
    free(s);
}

static void test_fill_template_names_a_missing_field(void **state)
{
    (void)state;
    struct err e;
    char missing[64] = "";
    assert_null(fill("A {{present}} and {{absent}}", "{\"present\":1}", &e, missing));
    assert_int_equal(e.status, 400);
    assert_string_equal(e.code, "missing_field");
    assert_string_equal(missing, "absent");
    assert_non_null(strstr(e.msg, "missing field 'absent'"));
}

static void test_normalise_gives_probabilities(void **state)
{
    (void)state;
    double p[3];
    /* Large magnitudes must not overflow or underflow to nothing. */
    const double lp[3] = {-1000.0, -1000.0 + log(3.0), -2000.0};
    size_t best = function_normalise(lp, 3, p);
    assert_int_equal(best, 1);
    assert_true(fabs(p[0] - 0.25) < 1e-12);
    assert_true(fabs(p[1] - 0.75) < 1e-12);
    assert_true(p[2] >= 0 && p[2] < 1e-300);
    assert_true(fabs(p[0] + p[1] + p[2] - 1) < 1e-12);
    const double tie[2] = {-3, -3};
    assert_int_equal(function_normalise(tie, 2, p), 0); /* first on ties */
    assert_true(fabs(p[0] - 0.5) < 1e-12);
    const double one[1] = {-42};
    function_normalise(one, 1, p);
    assert_true(fabs(p[0] - 1) < 1e-12);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fill_template_inserts_values_as_text),
        cmocka_unit_test(test_fill_template_names_a_missing_field),
        cmocka_unit_test(test_normalise_gives_probabilities),
    };
    return cmocka_run_group_tests_name("src/api/function.c", tests, NULL, NULL);
}
