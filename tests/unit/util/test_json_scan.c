/* Unit tests for src/util/json_scan.c: the zero-copy JSON index used on the hot path. */
#include "unit/cmocka_all.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
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

static const struct json_scan_limits roomy = {
    .max_tokens = 1 << 20, .max_depth = 64, .max_members = 1 << 20};

static int scan_checked(struct arena *a, const char *js, size_t len, struct json_scan *s,
                        struct json_scan_fault *f)
{
    return json_scan_parse_checked(s, js, len, a, &roomy, f);
}

/* A checked scan accepts exactly what jansson accepts (jansson is what the translations and
 * the engine read bodies with), duplicate keys aside. */
static void test_json_scan_parse_checked_agrees_with_jansson(void **state)
{
    (void)state;
    static const char *const cases[] = {
        "{\"a\":1}",
        " [1, 2 ,3] ",
        "{}",
        "[]",
        "[[],{}]",
        "{\"a\":{\"b\":[true,false,null]}}",
        "[1,]",
        "[,1]",
        "[1 2]",
        "[1,,2]",
        "{\"a\":1,}",
        "{,\"a\":1}",
        "{\"a\" 1}",
        "{\"a\":1 \"b\":2}",
        "{\"a\"}",
        "{\"a\":}",
        "{\"a\"::1}",
        "{\"a\":1:2}",
        ",{}",
        "{},",
        "{}}",
        "[1]]",
        "[1] 2",
        "{\"a\":\"b\":\"c\"}",
        "[\"\\u00e9\\ud83d\\ude00\"]",
        "[\"\\ud800\"]",
        "[\"\\udc00x\"]",
        "[\"\\ud800\\u0041\"]",
        "[\"\\u0000\"]",
        "[\"a\\u0001\"]",
        "[\"\\/\\b\\f\\n\\r\\t\\\\\\\"\"]",
        "[\"\xc3\xa9\"]",
        "[\"\xff\"]",
        "[\"\xc3\"]",
        "[\"\xed\xa0\x80\"]",
        "[\"\xf4\x90\x80\x80\"]",
        "[\"\xc0\x80\"]",
        "[\"\xe0\x80\x80\"]",
        "[\"\xf0\x9f\x98\x80\"]",
        "[\"a\tb\"]",
        "[\"a\x7f\"]",
        "[9223372036854775807]",
        "[9223372036854775808]",
        "[-9223372036854775808]",
        "[-9223372036854775809]",
        "[12345678901234567890123]",
        "[1e308]",
        "[1e309]",
        "[-1e309]",
        "[1e-400]",
        "[1.7976931348623157e308]",
        "[1.7976931348623159e308]",
        "[0.00000000000000000000000000000000000000000000000000000000000000001e400]",
        "[100000000000000000000000000000000000000000000000000000000000000000000.0e240]",
        "[100000000000000000000000000000000000000000000000000000000000000000000.0e238]",
        "[-0]",
        "[0.5e-3]",
        "[01]",
        "[1.]",
        "[.5]",
        "[+1]",
        "[tru]",
        "[nulll]",
        "{\"\":0}",
        "[\"unterminated]",
        "{\"a\":[1,{\"b\":2},3]}",
        "{\"a\" : 1 , \"b\" : [ ] }",
    };
    struct arena *a = arena_new(1024);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct json_scan s;
        struct json_scan_fault f;
        json_t *j = json_loadb(cases[i], strlen(cases[i]), 0, NULL);
        int rc = scan_checked(a, cases[i], strlen(cases[i]), &s, &f);
        if ((rc == 0) != (j != NULL))
            fail_msg("%s: checked scan %s, jansson %s", cases[i], rc == 0 ? "accepts" : "refuses",
                     j ? "accepts" : "refuses");
        json_decref(j);
    }
    arena_free(a);
}

static void expect_fault(const char *js, size_t len, enum json_scan_status status, const char *path,
                         const char *why)
{
    struct arena *a = arena_new(1024);
    struct json_scan s;
    struct json_scan_fault f;
    char p[128];
    assert_int_equal(scan_checked(a, js, len, &s, &f), -1);
    assert_int_equal(f.status, status);
    json_scan_path(&s, f.tok, p, sizeof p);
    assert_string_equal(p, path);
    if (strstr(f.why, why) == NULL) fail_msg("%s: why '%s' lacks '%s'", js, f.why, why);
    arena_free(a);
}

static void test_json_scan_parse_checked_names_bad_strings(void **state)
{
    (void)state;
    const char nul_raw[] = "{\"model\":\"a\0b\"}";
    expect_fault("{\"model\":\"a\\u0000b\"}", 20, JSON_SCAN_BAD_STRING, "model", "NUL");
    expect_fault("{\"m\":[{\"content\":\"ok\"},{\"content\":\"\xff\"}]}", 40, JSON_SCAN_BAD_STRING,
                 "m[1].content", "UTF-8");
    expect_fault("{\"a\":{\"k\\ud800\":1}}", 19, JSON_SCAN_BAD_STRING, "a.k\\ud800", "surrogate");
    expect_fault("{\"a\":[\"x\ny\"]}", 13, JSON_SCAN_BAD_STRING, "a[0]", "control character");
    /* A raw NUL byte ends jsmn's scan: not JSON at all. */
    struct arena *a = arena_new(1024);
    struct json_scan s;
    struct json_scan_fault f;
    assert_int_equal(scan_checked(a, nul_raw, sizeof nul_raw - 1, &s, &f), -1);
    assert_int_equal(f.status, JSON_SCAN_INVALID);
    arena_free(a);
}

static void test_json_scan_parse_checked_refuses_numbers_beyond_range(void **state)
{
    (void)state;
    expect_fault("{\"n\":[1,9223372036854775808]}", 29, JSON_SCAN_BAD_NUMBER, "n[1]", "");
    expect_fault("{\"max_tokens\":1000000000000000000000000000000}", 46, JSON_SCAN_BAD_NUMBER,
                 "max_tokens", "");
    expect_fault("{\"t\":1e400}", 11, JSON_SCAN_BAD_NUMBER, "t", "");
}

static void test_json_scan_parse_checked_refuses_duplicate_keys(void **state)
{
    (void)state;
    expect_fault("{\"a\":1,\"b\":2,\"a\":3}", 19, JSON_SCAN_DUPLICATE_KEY, "a", "");
    /* Compared unescaped: what a JSON reader upstream would see as the same key. */
    expect_fault("{\"model\":\"x\",\"mod\\u0065l\":\"y\"}", 30, JSON_SCAN_DUPLICATE_KEY,
                 "mod\\u0065l", "");
    expect_fault("{\"o\":{\"k\":1,\"k\":2}}", 19, JSON_SCAN_DUPLICATE_KEY, "o.k", "");
    /* Around the switch from pairwise comparison to the hash set (more than 8 keys). */
    const char *nine = "{\"a\":1,\"b\":1,\"c\":1,\"d\":1,\"e\":1,\"f\":1,\"g\":1,\"h\":1,\"a\":1}";
    expect_fault(nine, strlen(nine), JSON_SCAN_DUPLICATE_KEY, "a", "");
    const char *ten = "{\"a\":1,\"b\":1,\"c\":1,\"d\":1,\"e\":1,\"f\":1,\"g\":1,\"h\":1,\"i\":1,"
                      "\"h\":1}";
    expect_fault(ten, strlen(ten), JSON_SCAN_DUPLICATE_KEY, "h", "");
    /* The same key in different objects is fine. */
    struct arena *a = arena_new(1024);
    struct json_scan s;
    struct json_scan_fault f;
    const char *ok = "{\"k\":{\"k\":1},\"j\":[{\"k\":1},{\"k\":2}]}";
    assert_int_equal(scan_checked(a, ok, strlen(ok), &s, &f), 0);
    arena_free(a);
}

static void test_json_scan_parse_checked_enforces_limits(void **state)
{
    (void)state;
    struct arena *a = arena_new(1024);
    struct json_scan s;
    struct json_scan_fault f;
    const struct json_scan_limits tight = {.max_tokens = 8, .max_depth = 3, .max_members = 2};
    assert_int_equal(json_scan_parse_checked(&s, "[1,2,3,4,5,6,7]", 15, a, &tight, &f), 0);
    assert_int_equal(json_scan_parse_checked(&s, "[1,2,3,4,5,6,7,8]", 17, a, &tight, &f), -1);
    assert_int_equal(f.status, JSON_SCAN_TOO_MANY_TOKENS);
    assert_int_equal(json_scan_parse_checked(&s, "[[[1]]]", 7, a, &tight, &f), 0);
    assert_int_equal(json_scan_parse_checked(&s, "[[[[1]]]]", 9, a, &tight, &f), -1);
    assert_int_equal(f.status, JSON_SCAN_TOO_DEEP);
    assert_int_equal(json_scan_parse_checked(&s, "[{\"a\":1,\"b\":2}]", 15, a, &tight, &f), 0);
    assert_int_equal(json_scan_parse_checked(&s, "[{\"a\":1,\"b\":2,\"c\":3}]", 21, a, &tight, &f),
                     -1);
    assert_int_equal(f.status, JSON_SCAN_TOO_MANY_MEMBERS);
    assert_int_equal(f.tok, 1);
    arena_free(a);
}

/* {"k0":0, ..., "k<N-1>":N-1, "<last>":0}, malloc'd. */
static char *many_members(int n_members, const char *last, size_t *len)
{
    char *js = malloc((size_t)n_members * 24 + 64);
    size_t n = 0;
    js[n++] = '{';
    for (int i = 0; i < n_members; i++) n += (size_t)sprintf(js + n, "\"k%d\":%d,", i, i);
    n += (size_t)sprintf(js + n, "\"%s\":0}", last);
    *len = n;
    return js;
}

/* Many members in one object: the duplicate check must still find one at the end. */
static void test_json_scan_parse_checked_finds_late_duplicate_in_large_object(void **state)
{
    (void)state;
    struct arena *a = arena_new(1024);
    struct json_scan s;
    struct json_scan_fault f;
    size_t n;
    char *js = many_members(100000, "k7", &n);
    assert_int_equal(scan_checked(a, js, n, &s, &f), -1);
    assert_int_equal(f.status, JSON_SCAN_DUPLICATE_KEY);
    free(js);
    js = many_members(100000, "z", &n);
    assert_int_equal(scan_checked(a, js, n, &s, &f), 0);
    assert_int_equal(json_scan_size(&s, 0), 100001);
    free(js);
    arena_free(a);
}

static void test_json_scan_get_compares_unescaped_keys(void **state)
{
    (void)state;
    struct arena *a = arena_new(1024);
    struct json_scan s;
    assert_int_equal(scan(a, "{\"str\\u0065am\":true,\"n\\u00e9\":\"a\\\\b\\u00e9\"}", &s), 0);
    assert_true(json_scan_is_true(&s, json_scan_get(&s, 0, "stream")));
    int v = json_scan_get(&s, 0, "n\xc3\xa9");
    assert_string_equal(json_scan_string_dup(&s, v, a), "a\\b\xc3\xa9");
    arena_free(a);
}

static void test_json_scan_integer_refuses_overflow(void **state)
{
    (void)state;
    struct arena *a = arena_new(1024);
    struct json_scan s;
    long long v = 0;
    assert_int_equal(scan(a, "[9223372036854775807,9223372036854775808,1.5]", &s), 0);
    assert_true(json_scan_integer(&s, 1, &v));
    assert_true(v == 9223372036854775807LL);
    assert_false(json_scan_integer(&s, 2, &v));
    assert_false(json_scan_integer(&s, 3, &v));
    double d = 0;
    assert_true(json_scan_number(&s, 3, &d));
    assert_true(d == 1.5);
    arena_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_scan_parse_finds_fields_and_types),
        cmocka_unit_test(test_json_scan_parse_grows_token_array),
        cmocka_unit_test(test_json_scan_parse_rejects_invalid_json),
        cmocka_unit_test(test_json_scan_parse_checked_agrees_with_jansson),
        cmocka_unit_test(test_json_scan_parse_checked_names_bad_strings),
        cmocka_unit_test(test_json_scan_parse_checked_refuses_numbers_beyond_range),
        cmocka_unit_test(test_json_scan_parse_checked_refuses_duplicate_keys),
        cmocka_unit_test(test_json_scan_parse_checked_enforces_limits),
        cmocka_unit_test(test_json_scan_parse_checked_finds_late_duplicate_in_large_object),
        cmocka_unit_test(test_json_scan_get_compares_unescaped_keys),
        cmocka_unit_test(test_json_scan_integer_refuses_overflow),
    };
    return cmocka_run_group_tests_name("src/util/json_scan.c", tests, NULL, NULL);
}
