/* Unit tests for config/scrub: configured secrets never survive in upstream text. */
#include "unit/cmocka_all.h"

#include <string.h>

#include "config/config.h"
#include "config/scrub.h"

static void test_scrub_masks_every_configured_secret_in_place(void **state)
{
    (void)state;
    struct backend_conf b[2] = {
        {.name = "up", .api_key = {.ref = "env:K", .value = "sk-live-abcdef"}},
        {.name = "aws",
         .aws_access_key_id = {.value = "AKIAEXAMPLE"},
         .aws_secret_access_key = {.value = "wJalrXUtnFEMI/K7MDENG"}},
    };
    struct config cfg = {
        .backends = b, .n_backends = 2, .auth = {.master_key = {.value = "master-123"}}};
    char text[] = "{\"error\":{\"message\":\"bad key sk-live-abcdef, AKIAEXAMPLE/"
                  "wJalrXUtnFEMI/K7MDENG; master-123 sk-live-abcdef\"}}";
    size_t len = strlen(text);
    assert_int_equal(secrets_scrub(&cfg, text, len), 5);
    assert_int_equal(strlen(text), len); /* same length: JSON stays valid */
    assert_null(strstr(text, "sk-live"));
    assert_null(strstr(text, "AKIA"));
    assert_null(strstr(text, "wJalr"));
    assert_null(strstr(text, "master-123"));
    assert_non_null(strstr(text, "bad key **************, ***********/"));
    /* Nothing to find: untouched. */
    char plain[] = "nothing secret here";
    assert_int_equal(secrets_scrub_str(&cfg, plain), 0);
    assert_string_equal(plain, "nothing secret here");
}

static void test_scrub_ignores_tiny_secrets_and_handles_edges(void **state)
{
    (void)state;
    struct backend_conf b = {.name = "up", .api_key = {.value = "ab"}};
    struct config cfg = {.backends = &b, .n_backends = 1};
    char text[] = "abab about";
    assert_int_equal(secrets_scrub_str(&cfg, text), 0); /* would mask ordinary words */
    assert_string_equal(text, "abab about");
    assert_int_equal(secrets_scrub(&cfg, NULL, 0), 0);
    assert_int_equal(secrets_scrub(NULL, text, 4), 0);
    b.api_key.value = "keyy";
    char edge[] = "keyykeyy";
    assert_int_equal(secrets_scrub_str(&cfg, edge), 2);
    assert_string_equal(edge, "********");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scrub_masks_every_configured_secret_in_place),
        cmocka_unit_test(test_scrub_ignores_tiny_secrets_and_handles_edges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
