/* Unit tests for src/util/json_scan.c: the zero-copy JSON index used on the hot path. */
#include "unit/cmocka_all.h"

#include <stdio.h>
#include <string.h>

#include "util/arena.h"
#include "util/json_scan.h"

static int scan(struct arena *a, const char *js, struct json_scan *s)
{
    bool oom;
    return json_scan_parse(s, js, strlen(js), a, &oom);
}

static void test_json_scan_parse_finds_fields_and_types(void **state)
{
    (void)state;
    struct arena *a = arena_new(1024);
    struct json_scan s;
    const char *js = " {\"a\":{\"x\":[1,2,{\"y\":3}]},\"n\":-12,\"f\":1.5e3,\"t\":true,\"z\":null,"
                     "\"s\":\"q\\\"uote\",\"e\":[]} ";
    assert_int_equal(scan(a, js, &s), 0);
    assert_true(json_scan_is_object(&s, 0));
    assert_true(json_scan_is_object(&s, json_scan_get(&s, 0, "a")));
    long long v = 0;
    assert_true(json_scan_integer(&s, json_scan_get(&s, 0, "n"), &v));
    assert_int_equal(v, -12);
    assert_true(json_scan_is_number(&s, json_scan_get(&s, 0, "f")));
    assert_false(json_scan_is_integer(&s, json_scan_get(&s, 0, "f")));
    assert_true(json_scan_is_true(&s, json_scan_get(&s, 0, "t")));
    assert_true(json_scan_is_null(&s, json_scan_get(&s, 0, "z")));
    assert_string_equal(json_scan_type_name(&s, json_scan_get(&s, 0, "s")), "string");
    assert_int_equal(json_scan_size(&s, json_scan_get(&s, 0, "e")), 0);
    assert_int_equal(json_scan_get(&s, 0, "y"), -1); /* only direct members */
    assert_int_equal(json_scan_get(&s, 0, "missing"), -1);
    assert_int_equal(json_scan_skip(&s, 0), s.n);
    arena_free(a);
}

static void test_json_scan_parse_grows_token_array(void **state)
{
    (void)state;
    struct arena *a = arena_new(1024);
    char js[40000];
    size_t n = 0;
    n += (size_t)sprintf(js + n, "{\"big\":[");
    for (int i = 0; i < 5000; i++) n += (size_t)sprintf(js + n, "%s%d", i ? "," : "", i);
    sprintf(js + n, "],\"after\":7}");
    struct json_scan s;
    assert_int_equal(scan(a, js, &s), 0);
    long long v;
    assert_true(json_scan_integer(&s, json_scan_get(&s, 0, "after"), &v));
    assert_int_equal(v, 7);
    assert_int_equal(json_scan_size(&s, json_scan_get(&s, 0, "big")), 5000);
    arena_free(a);
}

static void test_json_scan_parse_rejects_invalid_json(void **state)
{
    (void)state;
    struct arena *a = arena_new(1024);
    struct json_scan s;
    const char *bad[] = {"",           "{",     "{\"a\":tru}", "{\"a\":1.2.3}",
                         "{\"a\":01}", "{} {}", "[1,]x",       "{\"a\":\"unterminated}",
                         "{\"a\":-}",  "nul"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (scan(a, bad[i], &s) == 0) fail_msg("accepted invalid JSON: %s", bad[i]);
    arena_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_scan_parse_finds_fields_and_types),
        cmocka_unit_test(test_json_scan_parse_grows_token_array),
        cmocka_unit_test(test_json_scan_parse_rejects_invalid_json),
    };
    return cmocka_run_group_tests_name("src/util/json_scan.c", tests, NULL, NULL);
}
