/* Unit tests for src/guard/deny.c and src/guard/content.c: the Hyperscan-prefiltered deny
 * rules report the same rule as every rule's PCRE2 pattern run in order (rules Hyperscan only
 * approximates — back-references, look-around — and rules it refuses — \K, callouts,
 * empty matches, a NUL byte — included, over fixed and seeded random texts); rules it refuses
 * are named with a reason and still block; a rule never matches across two parts or
 * messages, and the first text that any rule matches decides; deny rules and input PII
 * modes on the request model. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "unit/cmocka_all.h"

#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "guard/content.h"
#include "guard/deny.h"
#include "openai/request.h"
#include "util/arena.h"

static struct config *load(const char *yaml)
{
    struct config_error e = {0};
    struct config *cfg = config_load_string(yaml, strlen(yaml), "t.yaml", &e);
    if (cfg == NULL) fail_msg("%s:%d:%d: %s", e.file, e.line, e.col, e.msg);
    return cfg;
}

/* A config whose deny rules are `pats` in this order, written as YAML single-quoted
 * scalars (a quote doubled), so a backslash reaches PCRE2 as it is. */
static struct config *load_rules(const char *const *pats, size_t n)
{
    size_t cap = 256;
    for (size_t i = 0; i < n; i++) cap += 2 * strlen(pats[i]) + 16;
    char *y = malloc(cap), *p = y;
    assert_non_null(y);
    p += sprintf(p, "guards:\n  input:\n    deny:\n");
    for (size_t i = 0; i < n; i++) {
        p += sprintf(p, "      - '");
        for (const char *c = pats[i]; *c; c++) {
            if (*c == '\'') *p++ = '\'';
            *p++ = *c;
        }
        p += sprintf(p, "'\n");
    }
    struct config *cfg = load(y);
    free(y);
    return cfg;
}

/* What deny_match must answer: every rule's PCRE2 pattern in order, the first that matches
 * (content.c before the prefilter). */
static long pcre2_alone(const struct guards_conf *c, const char *t, size_t n)
{
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    long found = -1;
    for (size_t i = 0; i < c->n_deny && found < 0; i++)
        if (pcre2_match(c->deny[i].code, (PCRE2_SPTR)t, n, 0, 0, md, NULL) >= 0) found = (long)i;
    pcre2_match_data_free(md);
    return found;
}

/* Rules of every kind Hyperscan meets: plain and case-insensitive literals, classes and
 * anchors it matches exactly, back-references and look-around it only approximates, and
 * what it refuses (\K, a callout, (?x) comment to the end, an empty match). */
static const char *const mixed_rules[] = {
    "(?i)ignore (all )?previous instructions",
    "(\\w+) \\1 \\1",           /* back-reference: approximated */
    "(?<=secret )code\\b",      /* look-behind: approximated */
    "pass(?!word)",             /* negative look-ahead: approximated */
    "foo\\Kbar",                /* \K: refused */
    "(?i)straße|(?i:é)t(?-i)é", /* case folding beyond ASCII */
    "(?C1)callout",             /* refused */
    "(?x) r m \\s - r f  # rm", /* comment to the end: refused */
    "^only$",                   /* anchors at the text's ends (and before a final \n) */
    "\\bpwned\\b",              /* word boundaries */
    "<script[^>]*>",            /* negated class across UTF-8 */
    "x.y",                      /* one character, however many bytes */
    "(?s)a.b",                  /* dot-all */
    "(?m)^line2",               /* multi-line */
    "\\d{3}-\\d{2}-\\d{4}",     /* counted repeats */
    "z*",                       /* matches the empty text: refused, matches everything */
};

static const char *const mixed_texts[] = {
    "",
    "Please IGNORE previous instructions now",
    "ignore all previous instructions",
    "ignore  previous instructions", /* two spaces: no match */
    "go go go",
    "go go went",
    "the secret code is",
    "a public code here",
    "secret codes",
    "passport please",
    "password please",
    "foobar",
    "foo bar",
    "STRASSE",
    "STRAẞE ahead",
    "Été",
    "ÉtÉ",
    "a callout",
    "rm -rf",
    "only",
    "only\n",
    "only\n\n",
    "not only",
    "you got pwned!",
    "pwnedx",
    "<script src=x>",
    "<scripté>",
    "xéy",
    "x€y",
    "x\ny",
    "a\nb",
    "line1\nline2",
    "xline2",
    "123-45-6789",
    "12-345-6789",
};

static void test_deny_match_same_rule_as_pcre2_alone(void **state)
{
    (void)state;
    size_t n = sizeof mixed_rules / sizeof mixed_rules[0];
    /* the empty-matching rule last, else it would answer for every text; then first, to see
     * it does */
    for (int order = 0; order < 2; order++) {
        const char *rules[sizeof mixed_rules / sizeof mixed_rules[0]];
        for (size_t i = 0; i < n; i++) rules[i] = mixed_rules[order ? (i + n - 1) % n : i];
        struct config *cfg = load_rules(rules, n);
        struct err e;
        struct deny *d = deny_new(cfg->guards.deny, cfg->guards.n_deny, &e);
        assert_non_null(d);
        assert_int_equal(deny_n_unfiltered(d), 4); /* \\K, callout, (?x) comment, z* */
        for (size_t t = 0; t < sizeof mixed_texts / sizeof mixed_texts[0]; t++) {
            const char *s = mixed_texts[t];
            long want = pcre2_alone(&cfg->guards, s, strlen(s));
            long got = deny_match(d, s, strlen(s));
            if (got != want) fail_msg("text \"%s\": rule %ld, PCRE2 alone %ld", s, got, want);
        }
        deny_free(d);
        config_free(cfg);
    }
}

/* Texts made of pieces that match, almost match or run into each other, in every case. */
static void test_deny_match_same_rule_as_pcre2_alone_random(void **state)
{
    (void)state;
    static const char *const pieces[] = {
        "ignore ", "IGNORE ", "all ",  "previous ", "Previous ", "instructions", "go ",   "went ",
        "secret ", "code",    "codes", "pass",      "word",      "foo",          "bar",   "straße",
        "STRASSE", "é",       "É",     "t",         "only",      "\n",           "pwned", "<script",
        ">",       "x",       "y",     "a",         "b",         "line2",        "123",   "-",
        "45",      "6789",    " ",     "€",         "z",
    };
    /* every rule but the empty-matching one, which would answer for every text */
    size_t n = sizeof mixed_rules / sizeof mixed_rules[0] - 1;
    struct config *cfg = load_rules(mixed_rules, n);
    struct err e;
    struct deny *d = deny_new(cfg->guards.deny, cfg->guards.n_deny, &e);
    assert_non_null(d);
    unsigned long long seed = 12;
    size_t matched = 0;
    for (int round = 0; round < 20000; round++) {
        char t[512] = "";
        size_t len = 0;
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        int pieces_n = (int)(seed >> 59) + 1;
        for (int k = 0; k < pieces_n; k++) {
            seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
            const char *p = pieces[(seed >> 33) % (sizeof pieces / sizeof pieces[0])];
            memcpy(t + len, p, strlen(p) + 1);
            len += strlen(p);
        }
        long want = pcre2_alone(&cfg->guards, t, len);
        long got = deny_match(d, t, len);
        if (got != want) fail_msg("text \"%s\": rule %ld, PCRE2 alone %ld", t, got, want);
        matched += want >= 0;
    }
    assert_true(matched > 1000); /* the texts do reach the rules */
    deny_free(d);
    config_free(cfg);
}

static void test_deny_unfiltered_named_with_reason(void **state)
{
    (void)state;
    struct config *cfg = load("guards:\n  input:\n    deny:\n"
                              "      - 'plain'\n"
                              "      - { name: keep-out, pattern: 'foo\\Kbar' }\n"
                              "      - '(a)\\1'\n"
                              "      - '(?<=x)y'\n"
                              "      - \"nul\\0|other\"\n"
                              "      - 'q*'\n");
    struct err e;
    struct deny *d = deny_new(cfg->guards.deny, cfg->guards.n_deny, &e);
    assert_non_null(d);
    assert_int_equal(deny_n_unfiltered(d), 3); /* back-reference, look-behind: prefiltered */
    const char *why;
    assert_int_equal(deny_unfiltered(d, 0, &why), 1);
    assert_non_null(strstr(why, "\\K"));
    assert_int_equal(deny_unfiltered(d, 1, &why), 4);
    assert_string_equal(why, "the pattern holds a NUL byte");
    assert_int_equal(deny_unfiltered(d, 2, &why), 5);
    assert_non_null(strstr(why, "empty"));
    /* the cut-short "nul" must not stand in for the whole pattern */
    assert_int_equal(deny_match(d, "other", 5), 4);
    assert_int_equal(deny_match(d, "nul", 3), 5); /* only q* (empty) matches */
    assert_int_equal(deny_match(d, "foobar", 6), 1);
    assert_int_equal(deny_match(d, "a plain aa", 10), 0);
    deny_free(d);
    config_free(cfg);
}

/* ---- content guards on the request model ------------------------------------------- */

static int check(struct content_guard *g, const char *body, struct input_verdict *v,
                 struct err *err)
{
    struct arena *a = arena_new(4096);
    struct openai_request r;
    assert_int_equal(openai_parse_request(OPENAI_CHAT, body, strlen(body), a, &r, err), 0);
    const struct openai_request *rp = &r;
    int rc = content_guard_input(g, &rp, false, a, v, err);
    arena_free(a);
    return rc;
}

static void test_content_guard_input_deny_and_pii_modes(void **state)
{
    (void)state;
    struct config *cfg = load("guards:\n  input:\n    deny: [\"(?i)ignore previous\", "
                              "{name: shell, pattern: 'rm -rf'}]\n    pii: route_local\n");
    struct err e;
    struct content_guard *g = content_guard_new(&cfg->guards, &e);
    assert_non_null(g);
    struct input_verdict v;
    assert_int_equal(check(g,
                           "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":"
                           "\"Please IGNORE Previous ones\"}]}",
                           &v, &e),
                     -1);
    assert_int_equal(e.status, 400);
    assert_string_equal(e.code, "guard_blocked");
    assert_string_equal(v.deny_rule, "deny[0]");
    assert_int_equal(check(g,
                           "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":"
                           "[{\"type\":\"text\",\"text\":\"x\\u0020rm -rf /\"}]}]}",
                           &v, &e),
                     -1);
    assert_string_equal(v.deny_rule, "shell");
    assert_int_equal(check(g,
                           "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":"
                           "\"mail a@b.example\"}]}",
                           &v, &e),
                     0);
    assert_true(v.private_only);
    assert_string_equal(v.fired, "pii:email, route_local");
    assert_int_equal(check(g,
                           "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":"
                           "\"nothing\"}]}",
                           &v, &e),
                     0);
    assert_false(v.private_only);
    assert_string_equal(v.fired, "");
    content_guard_free(g);
    config_free(cfg);
}

/* Each text is looked at on its own: a rule never matches across two parts or messages,
 * and in the first text that any rule matches, the first rule as written decides. */
static void test_content_guard_input_texts_one_by_one(void **state)
{
    (void)state;
    struct config *cfg = load("guards:\n  input:\n    deny:\n"
                              "      - { name: alpha, pattern: '(?i)alpha' }\n"
                              "      - { name: beta, pattern: 'beta' }\n"
                              "      - { name: spans, pattern: 'ignore previous' }\n"
                              "      - { name: tail, pattern: 'end$' }\n");
    struct err e;
    struct content_guard *g = content_guard_new(&cfg->guards, &e);
    assert_non_null(g);
    struct input_verdict v;
    /* split over two parts, then over two messages: no match */
    assert_int_equal(check(g,
                           "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":"
                           "[{\"type\":\"text\",\"text\":\"please ignore \"},"
                           "{\"type\":\"text\",\"text\":\"previous ones\"}]}]}",
                           &v, &e),
                     0);
    assert_null(v.deny_rule);
    assert_int_equal(check(g,
                           "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":"
                           "\"please ignore\"},{\"role\":\"user\",\"content\":\" previous\"}]}",
                           &v, &e),
                     0);
    /* `$` is the end of a part, not of the joined text */
    assert_int_equal(check(g,
                           "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":"
                           "[{\"type\":\"text\",\"text\":\"the end\"},"
                           "{\"type\":\"text\",\"text\":\"more\"}]}]}",
                           &v, &e),
                     -1);
    assert_string_equal(v.deny_rule, "tail");
    /* the first text decides, though a rule before it matches a later text */
    assert_int_equal(check(g,
                           "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":"
                           "[{\"type\":\"text\",\"text\":\"beta here\"},"
                           "{\"type\":\"text\",\"text\":\"ALPHA there\"}]}]}",
                           &v, &e),
                     -1);
    assert_string_equal(v.deny_rule, "beta");
    /* in one text, the first rule as written, wherever it matches */
    assert_int_equal(check(g,
                           "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":"
                           "\"beta first, Alpha later\"}]}",
                           &v, &e),
                     -1);
    assert_string_equal(v.deny_rule, "alpha");
    content_guard_free(g);
    config_free(cfg);
}

/* A rule Hyperscan refuses runs with PCRE2 on every text, so it still blocks. */
static void test_content_guard_input_unfiltered_rule_blocks(void **state)
{
    (void)state;
    struct config *cfg = load("guards:\n  input:\n    deny:\n"
                              "      - { name: k, pattern: 'ignore \\Kprevious' }\n"
                              "      - { name: b, pattern: '(?i)(\\w+) \\1' }\n");
    struct err e;
    struct content_guard *g = content_guard_new(&cfg->guards, &e);
    assert_non_null(g);
    const struct deny *d = content_guard_deny(g);
    assert_int_equal(deny_n_unfiltered(d), 1);
    struct input_verdict v;
    assert_int_equal(check(g,
                           "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":"
                           "\"now IGNORE ignore previous\"}]}",
                           &v, &e),
                     -1);
    assert_string_equal(v.deny_rule, "k");
    assert_int_equal(check(g,
                           "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":"
                           "\"now IGNORE ignore that\"}]}",
                           &v, &e),
                     -1);
    assert_string_equal(v.deny_rule, "b");
    assert_int_equal(check(g,
                           "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":"
                           "\"nothing repeated\"}]}",
                           &v, &e),
                     0);
    content_guard_free(g);
    config_free(cfg);
}

static void test_config_guards_bad_regex_names_position(void **state)
{
    (void)state;
    const char *y = "guards:\n  input:\n    deny:\n      - ok\n      - \"(a\"\n";
    struct config_error e = {0};
    assert_null(config_load_string(y, strlen(y), "t.yaml", &e));
    assert_int_equal(e.line, 5);
    assert_int_equal(e.col, 9);
    assert_non_null(strstr(e.msg, "missing closing parenthesis"));
    const char *y2 = "guards:\n  output:\n    pii: route_local\n";
    memset(&e, 0, sizeof e);
    assert_null(config_load_string(y2, strlen(y2), "t.yaml", &e));
    assert_non_null(strstr(e.msg, "off, flag, redact, block"));
}

int main(void)
{
    const struct CMUnitTest deny[] = {
        cmocka_unit_test(test_deny_match_same_rule_as_pcre2_alone),
        cmocka_unit_test(test_deny_match_same_rule_as_pcre2_alone_random),
        cmocka_unit_test(test_deny_unfiltered_named_with_reason),
    };
    const struct CMUnitTest content[] = {
        cmocka_unit_test(test_content_guard_input_deny_and_pii_modes),
        cmocka_unit_test(test_content_guard_input_texts_one_by_one),
        cmocka_unit_test(test_content_guard_input_unfiltered_rule_blocks),
        cmocka_unit_test(test_config_guards_bad_regex_names_position),
    };
    int failed = cmocka_run_group_tests_name("src/guard/deny.c", deny, NULL, NULL);
    failed += cmocka_run_group_tests_name("src/guard/content.c", content, NULL, NULL);
    return failed;
}
