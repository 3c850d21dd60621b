/* Unit tests for src/guard/strip.c: each stripped class removed and its neighbours kept,
 * raw and JSON-escaped; truncated sequences at the end of a text; nothing written when
 * nothing is stripped. And src/guard/content.c's stripping of the request model: what
 * reaches the rewritten body, the verdict, and no copy when nothing is found. */
#include "unit/cmocka_all.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "guard/content.h"
#include "guard/strip.h"
#include "openai/request.h"
#include "util/arena.h"

/* strip_text on a copy of `in`; the result as a string. */
static char *stripped(const char *in, size_t n)
{
    char *t = malloc(n + 1);
    memcpy(t, in, n);
    size_t k = strip_text(t, n);
    t[k] = '\0';
    return t;
}

static void expect_strip(const char *in, const char *out)
{
    char *got = stripped(in, strlen(in));
    if (strcmp(got, out) != 0) fail_msg("strip(\"%s\") gave \"%s\", want \"%s\"", in, got, out);
    free(got);
}

static void test_strip_is_stripped_each_class_and_edges(void **state)
{
    (void)state;
    static const uint32_t gone[] = {0x00,   0x01,    0x08,    0x0b,    0x0c,   0x1b,   0x1f,
                                    0x7f,   0x80,    0x85,    0x9f,    0x202a, 0x202e, 0x2066,
                                    0x2069, 0xe0000, 0xe0001, 0xe0041, 0xe007f};
    static const uint32_t kept[] = {'\t',   '\n',   '\r',   ' ',    '~',     0xa0,
                                    0xad,   0x200b, 0x200d, 0x200e, 0x2029,  0x2065,
                                    0x206a, 0x202f, 0xfeff, 0xdfff, 0xe0080, 0xdffff};
    for (size_t i = 0; i < sizeof gone / sizeof gone[0]; i++)
        if (!strip_is_stripped(gone[i])) fail_msg("U+%04X should be stripped", gone[i]);
    for (size_t i = 0; i < sizeof kept / sizeof kept[0]; i++)
        if (strip_is_stripped(kept[i])) fail_msg("U+%04X should stay", kept[i]);
}

static void test_strip_text_removes_each_class(void **state)
{
    (void)state;
    expect_strip("a\x01"
                 "b\x1b[31mc\x7f"
                 "d",
                 "ab[31mcd");                       /* C0, ESC, DEL */
    expect_strip("tab\tlf\ncr\r", "tab\tlf\ncr\r"); /* kept */
    expect_strip("x\xc2\x80y\xc2\x9fz", "xyz");     /* C1 first, last */
    expect_strip("\xe2\x80\xaa"
                 "evil\xe2\x80\xae"
                 "txt",
                 "eviltxt"); /* LRE, RLO */
    expect_strip("\xe2\x81\xa6"
                 "iso\xe2\x81\xa9",
                 "iso");                                                        /* LRI .. PDI */
    expect_strip("hi\xf3\xa0\x80\x81\xf3\xa0\x81\x89\xf3\xa0\x81\xbf!", "hi!"); /* tags */
    /* neighbours stay: NBSP, U+0100, U+2029, U+202F, U+2065, U+206A, U+E0080, emoji */
    const char *keep = "\xc2\xa0\xc4\x80\xe2\x80\xa9\xe2\x80\xaf\xe2\x81\xa5\xe2\x81\xaa"
                       "\xf3\xa0\x82\x80\xf0\x9f\x98\x80";
    expect_strip(keep, keep);
    /* only stripped characters: empty */
    expect_strip("\x01\xc2\x85\xe2\x80\xab\xf3\xa0\x80\x80", "");
    /* a long plain run around one (the 8-byte fast path on both sides) */
    expect_strip("0123456789abcdefg\x02hijklmnopqrstuvwxyz0123456",
                 "0123456789abcdefghijklmnopqrstuvwxyz0123456");
}

static void test_strip_text_truncated_sequences_at_the_end_stay(void **state)
{
    (void)state;
    /* A lead byte whose sequence is cut off by the end of the text is not a match: the bytes
     * stay as they are (the parser refuses such text anyway; the stripper must not read past
     * the end or take them). */
    static const char *const tails[] = {"ab\xc2",         "ab\xe2\x80", "ab\xe2",
                                        "ab\xf3\xa0\x80", "ab\xf3\xa0", "ab\xf3"};
    for (size_t i = 0; i < sizeof tails / sizeof tails[0]; i++) {
        size_t n = strlen(tails[i]);
        char *got = stripped(tails[i], n);
        assert_int_equal(strlen(got), n);
        assert_memory_equal(got, tails[i], n);
        free(got);
    }
    /* the same bytes completed are stripped */
    expect_strip("ab\xc2\x81", "ab");
    expect_strip("ab\xe2\x80\xac", "ab");
    expect_strip("ab\xf3\xa0\x80\xa0", "ab");
}

static void test_strip_text_nothing_to_strip_writes_nothing(void **state)
{
    (void)state;
    /* Read-only memory: a write would fault. */
    static const char text[] = "A prompt with\ttabs, new\nlines and caf\xc3\xa9 \xe2\x82\xac.";
    assert_int_equal(strip_text((char *)text, sizeof text - 1), sizeof text - 1);
}

static void test_strip_json_wanted_raw_and_escaped(void **state)
{
    (void)state;
    static const char *const yes[] = {
        "a\\u0001b",      "\\u001B[0m",       "\\b",         "x\\f",
        "\\u007f",        "\\u0085",          "\\u009F",     "\\u202a",
        "\\u202E",        "\\u2066",          "\\u2069",     "\\udb40\\udc01",
        "\\uDB40\\uDC7F", "del\x7f",          "c1\xc2\x9b",  "\xe2\x80\xae",
        "\xe2\x81\xa7",   "\xf3\xa0\x81\x81", "ok\\n\\u0002"};
    static const char *const no[] = {"plain ascii text that is long enough",
                                     "\\t\\n\\r\\\"\\\\\\/",
                                     "\\u0009\\u000a\\u000D",
                                     "\\u00a0\\u2029\\u206a",
                                     "\\udb40\\udc80",
                                     "\\ud83d\\ude00",
                                     "\\ud800 lone",
                                     "\\\\u0001", /* an escaped backslash, then text */
                                     "caf\xc3\xa9 \xe2\x82\xac",
                                     "\\u00",
                                     "\\"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
        if (!strip_json_wanted(yes[i], strlen(yes[i]))) fail_msg("missed in \"%s\"", yes[i]);
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        if (strip_json_wanted(no[i], strlen(no[i]))) fail_msg("false hit in \"%s\"", no[i]);
}

/* ---- on the request model (guard/content.c) --------------------------------------- */

struct fixture {
    struct config *cfg;
    struct content_guard *g;
    struct arena *a;
};

static struct fixture *guard_for(const char *yaml)
{
    struct fixture *f = calloc(1, sizeof *f);
    struct config_error ce = {0};
    f->cfg = config_load_string(yaml, strlen(yaml), "t.yaml", &ce);
    if (f->cfg == NULL) fail_msg("%d:%d: %s", ce.line, ce.col, ce.msg);
    struct err e;
    f->g = content_guard_new(&f->cfg->guards, &e);
    assert_non_null(f->g);
    f->a = arena_new(4096);
    return f;
}

static void fixture_free(struct fixture *f)
{
    arena_free(f->a);
    content_guard_free(f->g);
    config_free(f->cfg);
    free(f);
}

/* Runs the input guard on `body`; *out: the request it leaves (maybe a new one). */
static int run(struct fixture *f, enum openai_endpoint ep, const char *body,
               const struct openai_request **out, struct input_verdict *v, struct err *e)
{
    struct openai_request *r = arena_alloc(f->a, sizeof *r);
    assert_int_equal(openai_parse_request(ep, body, strlen(body), f->a, r, e), 0);
    *out = r;
    return content_guard_input(f->g, out, false, f->a, v, e);
}

static void test_content_guard_input_strips_into_a_new_body(void **state)
{
    (void)state;
    struct fixture *f = guard_for("guards:\n  input:\n    pii: off\n");
    assert_true(f->cfg->guards.strip_control); /* on by default with a guards: section */
    const struct openai_request *r;
    struct input_verdict v;
    struct err e;
    const char *body = "{\"model\":\"m\",\"messages\":["
                       "{\"role\":\"system\",\"content\":\"be nice\\u0007\"},"
                       "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":"
                       "\"hi\xf3\xa0\x81\x89\xf3\xa0\x81\xa7 there\\u202e!\"},"
                       "{\"type\":\"image_url\",\"image_url\":{\"url\":\"x\\u0001\"}}]}],"
                       "\"temperature\":0}";
    assert_int_equal(run(f, OPENAI_CHAT, body, &r, &v, &e), 0);
    assert_true(v.stripped);
    assert_string_equal(v.fired, "strip_control");
    assert_null(r->native_body);
    /* Only the texts changed; every other byte (the image URL too) is as it came. */
    char got[512];
    snprintf(got, sizeof got, "%.*s", (int)r->scan.len, r->scan.js);
    assert_string_equal(got, "{\"model\":\"m\",\"messages\":["
                             "{\"role\":\"system\",\"content\":\"be nice\"},"
                             "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":"
                             "\"hi there!\"},"
                             "{\"type\":\"image_url\",\"image_url\":{\"url\":\"x\\u0001\"}}]}],"
                             "\"temperature\":0}");
    assert_string_equal(r->model, "m");
    fixture_free(f);
}

static void test_content_guard_input_strips_prompt_and_inputs(void **state)
{
    (void)state;
    struct fixture *f = guard_for("guards:\n  output:\n    pii: flag\n");
    const struct openai_request *r;
    struct input_verdict v;
    struct err e;
    assert_int_equal(run(f, OPENAI_COMPLETIONS,
                         "{\"model\":\"m\",\"prompt\":[\"a\\u0085b\",\"c\"]}", &r, &v, &e),
                     0);
    assert_true(v.stripped);
    assert_memory_equal(r->scan.js, "{\"model\":\"m\",\"prompt\":[\"ab\",\"c\"]}", r->scan.len);
    assert_int_equal(
        run(f, OPENAI_EMBEDDINGS, "{\"model\":\"m\",\"input\":\"x\xc2\x9by\"}", &r, &v, &e), 0);
    assert_true(v.stripped);
    assert_memory_equal(r->scan.js, "{\"model\":\"m\",\"input\":\"xy\"}", r->scan.len);
    fixture_free(f);
}

static void test_content_guard_input_nothing_to_strip_makes_no_copy(void **state)
{
    (void)state;
    struct fixture *f = guard_for("guards:\n  input:\n    pii: off\n");
    const char *body = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":"
                       "\"plain, with\\n escapes \\\"quoted\\\" and caf\xc3\xa9\"}]}";
    struct openai_request *orig = arena_alloc(f->a, sizeof *orig);
    struct err e;
    assert_int_equal(openai_parse_request(OPENAI_CHAT, body, strlen(body), f->a, orig, &e), 0);
    const struct openai_request *r = orig;
    struct input_verdict v;
    assert_int_equal(content_guard_input(f->g, &r, false, f->a, &v, &e), 0);
    assert_ptr_equal(r, orig);          /* the same model ... */
    assert_ptr_equal(r->scan.js, body); /* ... over the client's own bytes */
    assert_false(v.stripped);
    assert_string_equal(v.fired, "");
    fixture_free(f);
}

static void test_content_guard_input_deny_sees_the_stripped_text(void **state)
{
    (void)state;
    /* Controls between the letters hid the phrase from the rule; stripped, it matches. */
    struct fixture *f =
        guard_for("guards:\n  input:\n    deny: [\"(?i)ignore previous\"]\n    pii: off\n");
    const struct openai_request *r;
    struct input_verdict v;
    struct err e;
    assert_int_equal(run(f, OPENAI_CHAT,
                         "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":"
                         "\"ig\\u0008nore\xe2\x81\xa6 previous\"}]}",
                         &r, &v, &e),
                     -1);
    assert_string_equal(e.code, "guard_blocked");
    assert_string_equal(v.fired, "strip_control, deny:deny[0]");
    fixture_free(f);
}

static void test_content_guard_input_strip_off_and_without_guards(void **state)
{
    (void)state;
    const char *body = "{\"model\":\"m\",\"prompt\":\"a\\u0001b\"}";
    static const char *const yamls[] = {"guards:\n  input:\n    strip_control: false\n",
                                        "listen: 127.0.0.1:8080\n"};
    for (size_t i = 0; i < 2; i++) {
        struct fixture *f = guard_for(yamls[i]);
        assert_false(f->cfg->guards.strip_control);
        const struct openai_request *r;
        struct input_verdict v;
        struct err e;
        assert_int_equal(run(f, OPENAI_COMPLETIONS, body, &r, &v, &e), 0);
        assert_false(v.stripped);
        assert_ptr_equal(r->scan.js, body);
        fixture_free(f);
    }
}

static void test_config_strip_control_must_be_a_bool(void **state)
{
    (void)state;
    const char *y = "guards:\n  input:\n    pii: flag\n    strip_control: yes please\n";
    struct config_error e = {0};
    assert_null(config_load_string(y, strlen(y), "t.yaml", &e));
    assert_int_equal(e.line, 4);
    assert_int_equal(e.col, 20);
    assert_non_null(strstr(e.msg, "strip_control must be true or false"));
    const char *y2 = "guards:\n  input:\n    strip_controls: true\n";
    memset(&e, 0, sizeof e);
    assert_null(config_load_string(y2, strlen(y2), "t.yaml", &e));
    assert_int_equal(e.line, 3);
    assert_non_null(strstr(e.msg, "strip_controls"));
}

int main(void)
{
    const struct CMUnitTest strip[] = {
        cmocka_unit_test(test_strip_is_stripped_each_class_and_edges),
        cmocka_unit_test(test_strip_text_removes_each_class),
        cmocka_unit_test(test_strip_text_truncated_sequences_at_the_end_stay),
        cmocka_unit_test(test_strip_text_nothing_to_strip_writes_nothing),
        cmocka_unit_test(test_strip_json_wanted_raw_and_escaped),
    };
    const struct CMUnitTest content[] = {
        cmocka_unit_test(test_content_guard_input_strips_into_a_new_body),
        cmocka_unit_test(test_content_guard_input_strips_prompt_and_inputs),
        cmocka_unit_test(test_content_guard_input_nothing_to_strip_makes_no_copy),
        cmocka_unit_test(test_content_guard_input_deny_sees_the_stripped_text),
        cmocka_unit_test(test_content_guard_input_strip_off_and_without_guards),
        cmocka_unit_test(test_config_strip_control_must_be_a_bool),
    };
    int failed = cmocka_run_group_tests_name("src/guard/strip.c", strip, NULL, NULL);
    failed += cmocka_run_group_tests_name("src/guard/content.c", content, NULL, NULL);
    return failed;
}
