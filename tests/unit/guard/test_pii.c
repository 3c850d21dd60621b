/* Unit tests for src/guard/pii.c: every PII kind with a valid and an invalid checksum or
 * shape; the stream matcher's split invariance at every split point (two and three pieces)
 * of sample texts, byte by byte, and under keep. (The content guards on the request model:
 * test_content.c.) */
#include "unit/cmocka_all.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guard/pii.h"

static int setup(void **state)
{
    struct err e;
    *state = pii_new(&e);
    return *state ? 0 : -1;
}

static int teardown(void **state)
{
    pii_free(*state);
    return 0;
}

static char *redact(struct pii *p, const char *t, pii_kinds *kinds)
{
    struct pii_buf b = {0};
    pii_kinds k = pii_redact(p, t, strlen(t), false, &b);
    if (kinds) *kinds = k;
    if (b.data == NULL) return strdup("");
    return b.data;
}

static void expect(struct pii *p, const char *in, const char *out)
{
    char *r = redact(p, in, NULL);
    assert_string_equal(r, out);
    free(r);
}

static void test_pii_redact_each_kind_valid(void **state)
{
    struct pii *p = *state;
    expect(p, "mail john.doe@example.com.", "mail [REDACTED:email].");
    expect(p, "to me@sub.example.co.uk", "to [REDACTED:email]");
    expect(p, "call +1 (555) 123-4567 now", "call [REDACTED:phone] now");
    expect(p, "or 555-123-4567", "or [REDACTED:phone]");
    expect(p, "+44 20 7946 0958", "[REDACTED:phone]");
    expect(p, "card 4111 1111 1111 1111", "card [REDACTED:credit_card]");
    expect(p, "card 5555555555554444!", "card [REDACTED:credit_card]!");
    expect(p, "card 4111-1111-1111-1111", "card [REDACTED:credit_card]");
    expect(p, "iban DE89 3704 0044 0532 0130 00", "iban [REDACTED:iban]");
    expect(p, "GB82WEST12345698765432", "[REDACTED:iban]");
    expect(p, "ssn 123-45-6789", "ssn [REDACTED:ssn]");
    expect(p, "host 10.0.0.1:80", "host [REDACTED:ipv4]:80");
    expect(p, "v6 2001:db8::8a2e:370:7334 and fe80::1", "v6 [REDACTED:ipv6] and [REDACTED:ipv6]");
    expect(p, "id AKIAIOSFODNN7EXAMPLE", "id [REDACTED:aws_access_key]");
    expect(p, "k=sk-proj-abcdefghijklmnopqrstuvwxyz0123", "k=[REDACTED:secret_token]");
    expect(p, "ghp_abcdefghijklmnopqrstuvwxyz0123456789", "[REDACTED:secret_token]");
}

static void test_pii_redact_invalid_checksums_and_shapes_pass(void **state)
{
    struct pii *p = *state;
    const char *keep[] = {
        "card 4111 1111 1111 1112",         /* Luhn fails */
        "iban DE89 3704 0044 0532 0130 01", /* mod 97 fails */
        "ssn 000-12-3456 666-12-3456 912-34-5678 123-00-4567",
        "ip 256.1.1.1 and 1.2.3",
        "std::vector<int> Foo::bar at 12:30",
        "dates 2024-01-15, a count 1 000 000",
        "AKIA1234 is too short; sk-short",
        "user at example dot com",
    };
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++) expect(p, keep[i], keep[i]);
}

static void test_pii_find_reports_kind_and_range(void **state)
{
    struct pii *p = *state;
    const char *t = "x 123-45-6789 y";
    struct pii_match m;
    assert_int_equal(pii_find(p, t, strlen(t), 0, &m), 1);
    assert_int_equal(m.kind, PII_SSN);
    assert_int_equal(m.start, 2);
    assert_int_equal(m.end, 13);
    assert_int_equal(pii_find(p, t, strlen(t), 13, &m), 0);
    char names[64];
    assert_string_equal(pii_kinds_format(pii_scan(p, "a@b.io 10.1.1.1", 15), "+", names, 64),
                        "email+ipv4");
}

static const char *const samples[] = {
    "Contact john.doe@example.com or +1 (555) 123-4567; card 4111 1111 1111 1111.",
    "IBAN DE89 3704 0044 0532 0130 00, SSN 123-45-6789, ip 192.168.1.20 / 2001:db8::1",
    "keys AKIAIOSFODNN7EXAMPLE sk-abcdefghijklmnopqrstuvwx1234 and text after",
    "no pii here at all, just words and 12 numbers 3.4",
    "unicode \xc3\xa9t\xc3\xa9 caf\xc3\xa9 mail: \xe2\x82\xac x@y.de \xf0\x9f\x98\x80 end",
    "4111111111111111",
    "almost@",
};

static char *stream_pieces(struct pii *p, const char *t, const size_t *cuts, size_t n_cuts,
                           bool keep)
{
    struct pii_stream *s = pii_stream_new(p, keep);
    struct pii_buf b = {0};
    size_t at = 0, len = strlen(t);
    for (size_t i = 0; i <= n_cuts; i++) {
        size_t to = i < n_cuts ? cuts[i] : len;
        pii_stream_feed(s, t + at, to - at, &b);
        at = to;
    }
    pii_stream_finish(s, &b);
    assert_int_equal(pii_stream_held(s), 0);
    pii_stream_free(s);
    assert_false(b.oom);
    return b.data ? b.data : strdup("");
}

static void test_pii_stream_split_invariance_every_point(void **state)
{
    struct pii *p = *state;
    for (size_t k = 0; k < sizeof samples / sizeof samples[0]; k++) {
        const char *t = samples[k];
        size_t len = strlen(t);
        for (int keep = 0; keep < 2; keep++) {
            struct pii_buf whole = {0};
            pii_redact(p, t, len, keep, &whole);
            const char *want = whole.data ? whole.data : "";
            if (keep) assert_string_equal(want, t);
            for (size_t i = 0; i <= len; i++) {
                char *got = stream_pieces(p, t, &i, 1, keep);
                assert_string_equal(got, want);
                free(got);
                for (size_t j = i; j <= len; j += 7) { /* three pieces */
                    size_t cuts[2] = {i, j};
                    got = stream_pieces(p, t, cuts, 2, keep);
                    assert_string_equal(got, want);
                    free(got);
                }
            }
            size_t *all = malloc(len * sizeof *all); /* byte by byte */
            for (size_t i = 0; i < len; i++) all[i] = i;
            char *got = stream_pieces(p, t, all, len, keep);
            assert_string_equal(got, want);
            free(got);
            free(all);
            free(whole.data);
        }
    }
}

static void test_pii_stream_holds_only_a_possible_match(void **state)
{
    struct pii *p = *state;
    struct pii_stream *s = pii_stream_new(p, false);
    struct pii_buf b = {0};
    const char *t = "Hello, world! my mail is john";
    pii_stream_feed(s, t, strlen(t), &b);
    assert_string_equal(b.data, "Hello, world! my mail is "); /* "john" could become one */
    pii_stream_feed(s, "@example.com", 12, &b);
    pii_stream_feed(s, " bye", 4, &b);
    assert_string_equal(b.data, "Hello, world! my mail is [REDACTED:email] "); /* "bye" held */
    pii_stream_finish(s, &b);
    assert_string_equal(b.data, "Hello, world! my mail is [REDACTED:email] bye");
    pii_stream_free(s);
    free(b.data);
}

int main(void)
{
    const struct CMUnitTest pii[] = {
        cmocka_unit_test(test_pii_redact_each_kind_valid),
        cmocka_unit_test(test_pii_redact_invalid_checksums_and_shapes_pass),
        cmocka_unit_test(test_pii_find_reports_kind_and_range),
        cmocka_unit_test(test_pii_stream_split_invariance_every_point),
        cmocka_unit_test(test_pii_stream_holds_only_a_possible_match),
    };
    return cmocka_run_group_tests_name("src/guard/pii.c", pii, setup, teardown);
}
