/* Unit tests for src/providers/aws/sigv4.c against AWS's SigV4 test-suite vectors (get-vanilla,
 * get-vanilla-query-order-key-case) and signatures computed by @smithy/signature-v4 for a
 * Bedrock-style POST and a session-token request. */
#include "unit/cmocka_all.h"

#include <string.h>

#include "providers/aws/sigv4.h"

static const struct sigv4_credentials creds = {
    .access_key_id = "AKIDEXAMPLE",
    .secret_access_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
};

static const time_t when = 1440938160; /* 2015-08-30T12:36:00Z */

static void expect(const struct sigv4_credentials *c, const struct sigv4_request *r,
                   const char *authorization)
{
    struct sigv4_result out;
    struct err e;
    assert_int_equal(sigv4_sign(c, r, &out, &e), 0);
    assert_string_equal(out.amz_date, "20150830T123600Z");
    assert_string_equal(out.authorization, authorization);
}

static void test_sigv4_sign_get_vanilla(void **state)
{
    (void)state;
    struct sigv4_request r = {.method = "GET",
                              .host = "example.amazonaws.com",
                              .path = "/",
                              .region = "us-east-1",
                              .service = "service",
                              .now = when};
    expect(&creds, &r,
           "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
           "SignedHeaders=host;x-amz-date, "
           "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
}

static void test_sigv4_sign_sorts_query_parameters(void **state)
{
    (void)state;
    struct sigv4_request r = {.method = "GET",
                              .host = "example.amazonaws.com",
                              .path = "/",
                              .query = "Param2=value2&Param1=value1",
                              .region = "us-east-1",
                              .service = "service",
                              .now = when};
    expect(&creds, &r,
           "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
           "SignedHeaders=host;x-amz-date, "
           "Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500");
}

static void test_sigv4_sign_bedrock_post_with_encoded_path(void **state)
{
    (void)state;
    const char body[] = "{\"messages\":[]}";
    struct sigv4_header h[] = {{"Content-Type", "application/json"}};
    struct sigv4_request r = {.method = "POST",
                              .host = "bedrock-runtime.us-east-1.amazonaws.com",
                              .path =
                                  "/model/anthropic.claude-3-haiku-20240307-v1:0/converse-stream",
                              .headers = h,
                              .n_headers = 1,
                              .payload = body,
                              .payload_len = sizeof body - 1,
                              .region = "us-east-1",
                              .service = "bedrock",
                              .now = when};
    expect(&creds, &r,
           "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/bedrock/aws4_request, "
           "SignedHeaders=content-type;host;x-amz-date, "
           "Signature=a9e0870b6a55cddcc7e80a51f0e1c84e36c644fc6ed5d8e4960d3aac5c3a958f");
}

static void test_sigv4_sign_signs_the_session_token(void **state)
{
    (void)state;
    struct sigv4_credentials c = creds;
    c.session_token =
        "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmx"
        "fpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0K"
        "PkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZb"
        "qBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==";
    const char body[] = "Param1=value1";
    struct sigv4_request r = {.method = "POST",
                              .host = "example.amazonaws.com",
                              .path = "/",
                              .payload = body,
                              .payload_len = sizeof body - 1,
                              .region = "us-east-1",
                              .service = "service",
                              .now = when};
    expect(&c, &r,
           "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
           "SignedHeaders=host;x-amz-date;x-amz-security-token, "
           "Signature=9bee56c0228a164b4c1e7383ab4dc5ba1a03df17a5aaaff836c27ea35289e1ad");
}

static void test_sigv4_sign_changes_with_the_secret(void **state)
{
    (void)state;
    struct sigv4_credentials c = creds;
    c.secret_access_key = "another-secret";
    struct sigv4_request r = {.method = "GET",
                              .host = "example.amazonaws.com",
                              .path = "/",
                              .region = "us-east-1",
                              .service = "service",
                              .now = when};
    struct sigv4_result out;
    struct err e;
    assert_int_equal(sigv4_sign(&c, &r, &out, &e), 0);
    assert_null(strstr(out.authorization, "5fa00fa31553b73e"));
    assert_null(strstr(out.authorization, "another-secret"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sigv4_sign_get_vanilla),
        cmocka_unit_test(test_sigv4_sign_sorts_query_parameters),
        cmocka_unit_test(test_sigv4_sign_bedrock_post_with_encoded_path),
        cmocka_unit_test(test_sigv4_sign_signs_the_session_token),
        cmocka_unit_test(test_sigv4_sign_changes_with_the_secret),
    };
    return cmocka_run_group_tests_name("src/providers/aws/sigv4.c", tests, NULL, NULL);
}
