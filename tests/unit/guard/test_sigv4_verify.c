/* Unit tests for src/guard/sigv4_verify.c and src/guard/awskeys.c: a request signed with
 * providers/aws/sigv4 verifies; a wrong secret, a changed body or signed header, and a date
 * more than 5 minutes off do not; sealed AWS secrets open only under their master key and
 * their own access key id. */
#include "unit/cmocka_all.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <string.h>

#include "guard/awskeys.h"
#include "guard/sigv4_verify.h"
#include "http/server.h"
#include "providers/aws/sigv4.h"
#include "util/arena.h"

#define NOW 1700000000

struct fixture {
    struct http_request req;
    struct http_header h[5];
    struct sigv4_result signed_;
};

/* A POST signed at `when` with `secret`, as an AWS SDK sends it. */
static void make(struct fixture *f, const char *secret, time_t when, const char *body)
{
    memset(f, 0, sizeof *f);
    f->req.method = "POST";
    f->req.path = "/model/my%20group/converse";
    f->req.body = evbuffer_new();
    evbuffer_add(f->req.body, body, strlen(body));
    struct sigv4_header extra[1] = {{"content-type", "application/json"}};
    struct sigv4_request r = {.method = "POST",
                              .host = "127.0.0.1:8080",
                              .path = f->req.path,
                              .headers = extra,
                              .n_headers = 1,
                              .payload = body,
                              .payload_len = strlen(body),
                              .region = "us-east-1",
                              .service = "bedrock",
                              .now = when};
    struct sigv4_credentials c = {"ASTRKEY", secret, NULL};
    struct err e;
    assert_int_equal(sigv4_sign(&c, &r, &f->signed_, &e), 0);
    f->h[0] = (struct http_header){"host", "127.0.0.1:8080"};
    f->h[1] = (struct http_header){"content-type", "application/json"};
    f->h[2] = (struct http_header){"x-amz-date", f->signed_.amz_date};
    f->h[3] = (struct http_header){"authorization", f->signed_.authorization};
    f->req.headers = f->h;
    f->req.n_headers = 4;
}

static int verify(struct fixture *f, const char *secret, time_t now, struct err *e)
{
    struct sigv4_presented p;
    if (sigv4_parse(&f->req, &p, e) != 0) return -1;
    assert_string_equal(p.key_id, "ASTRKEY");
    assert_string_equal(p.service, "bedrock");
    return sigv4_verify(&f->req, &p, secret, now, e);
}

static void test_sigv4_verify_accepts_a_right_signature_within_5_minutes(void **state)
{
    (void)state;
    struct fixture f;
    struct err e;
    make(&f, "secret", NOW, "{\"a\":1}");
    assert_true(sigv4_is_signed(&f.req));
    assert_int_equal(verify(&f, "secret", NOW + 299, &e), 0);
    assert_int_equal(verify(&f, "secret", NOW - 299, &e), 0);
    evbuffer_free(f.req.body);
}

static void test_sigv4_verify_refuses_wrong_secret_tampering_and_skew(void **state)
{
    (void)state;
    struct fixture f;
    struct err e;
    make(&f, "secret", NOW, "{\"a\":1}");
    assert_int_equal(verify(&f, "other", NOW, &e), -1);
    assert_string_equal(e.code, "invalid_signature");
    assert_non_null(strstr(e.msg, "does not match"));
    assert_int_equal(verify(&f, "secret", NOW + 301, &e), -1);
    assert_non_null(strstr(e.msg, "Signature expired"));
    assert_int_equal(verify(&f, "secret", NOW - 301, &e), -1);
    assert_non_null(strstr(e.msg, "not yet current"));
    f.h[1].value = "text/plain"; /* a signed header changed */
    assert_int_equal(verify(&f, "secret", NOW, &e), -1);
    assert_non_null(strstr(e.msg, "does not match"));
    f.h[1].value = "application/json";
    evbuffer_add(f.req.body, " ", 1); /* the body changed */
    assert_int_equal(verify(&f, "secret", NOW, &e), -1);
    f.req.n_headers = 3; /* no Authorization: not signed at all */
    assert_false(sigv4_is_signed(&f.req));
    f.h[2] = (struct http_header){"authorization", "AWS4-HMAC-SHA256 Credential=x"};
    assert_int_equal(verify(&f, "secret", NOW, &e), -1);
    assert_int_equal(e.status, 400);
    assert_string_equal(e.code, "incomplete_signature");
    evbuffer_free(f.req.body);
}

static void test_awskeys_seal_opens_only_under_its_master_and_id(void **state)
{
    (void)state;
    unsigned char k1[AWSKEY_KEY_SIZE], k2[AWSKEY_KEY_SIZE];
    assert_int_equal(awskeys_derive("master-1", 8, k1), 0);
    assert_int_equal(awskeys_derive("master-2", 8, k2), 0);
    struct key_record rec;
    memset(&rec, 0, sizeof rec);
    char secret[AWSKEY_SECRET_SIZE], opened[AWSKEY_SECRET_SIZE];
    assert_int_equal(awskeys_mint(&rec, k1, secret), 0);
    assert_int_equal(strlen(secret), 40);
    assert_int_equal(strncmp(rec.aws_key_id, "ASTR", 4), 0);
    assert_null(strstr(rec.aws_secret_sealed, secret));
    assert_int_equal(awskeys_open(&rec, k1, opened), 0);
    assert_string_equal(opened, secret);
    assert_int_equal(awskeys_open(&rec, k2, opened), -1);
    rec.aws_key_id[5] = rec.aws_key_id[5] == 'A' ? 'B' : 'A'; /* moved to another id */
    assert_int_equal(awskeys_open(&rec, k1, opened), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sigv4_verify_accepts_a_right_signature_within_5_minutes),
        cmocka_unit_test(test_sigv4_verify_refuses_wrong_secret_tampering_and_skew),
        cmocka_unit_test(test_awskeys_seal_opens_only_under_its_master_and_id),
    };
    return cmocka_run_group_tests_name("src/guard/sigv4_verify.c", tests, NULL, NULL);
}
