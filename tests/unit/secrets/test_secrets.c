/* Unit tests for src/secrets: reference syntax (checked offline by `stratus check`), the
 * local stores (env:, file:), and what a value may hold. The remote stores are tested
 * against fake AWS and Vault servers in tests/integration/secrets.test.mjs. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "secrets/secrets.h"

static void ok(const char *ref, enum secrets_kind want)
{
    char why[400] = "";
    enum secrets_kind kind = (enum secrets_kind) - 1;
    if (secrets_check(ref, &kind, why, sizeof why) != 0) fail_msg("%s: %s", ref, why);
    assert_int_equal(kind, want);
}

static void bad(const char *ref, const char *says)
{
    char why[400] = "";
    assert_int_equal(secrets_check(ref, NULL, why, sizeof why), -1);
    if (strstr(why, says) == NULL) fail_msg("%s: '%s' does not say '%s'", ref, why, says);
}

static void test_reference_syntax(void **state)
{
    (void)state;
    ok("env:UP_KEY", SECRETS_ENV);
    ok("file:/run/secrets/up", SECRETS_FILE);
    ok("aws-sm:prod/openai", SECRETS_AWS_SM);
    ok("aws-sm:prod/openai#api_key", SECRETS_AWS_SM);
    ok("aws-sm:arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/openai-AbCdEf#key",
       SECRETS_AWS_SM);
    ok("ssm:/prod/openai/key", SECRETS_SSM);
    ok("ssm:plain_name", SECRETS_SSM);
    ok("vault:secret/stratus/openai#api_key", SECRETS_VAULT);
    ok("vault:kv/a/b/c#x", SECRETS_VAULT);

    bad("sk-live-123", "is not a secret reference");
    bad("env:", "needs a variable name");
    bad("env:UP-KEY", "is not a variable name");
    bad("file:", "needs a path");
    bad("aws-sm:", "needs a secret name or ARN");
    bad("aws-sm:has space", "needs a secret name or ARN");
    bad("aws-sm:prod/openai#", "the JSON field after # is empty");
    bad("aws-sm:prod/openai#a#b", "has a #");
    bad("ssm:", "needs a parameter name");
    bad("ssm:/a b", "needs a parameter name");
    bad("vault:secret/stratus/openai", "needs #FIELD");
    bad("vault:secret#key", "needs MOUNT/PATH#FIELD");
    bad("vault:/stratus#key", "needs MOUNT/PATH#FIELD");
    bad("vault:secret/#key", "needs MOUNT/PATH#FIELD");
    bad("vault:secret/a b#key", "needs MOUNT/PATH#FIELD");
    bad("env:A\nB", "control characters");

    assert_true(secrets_is_reference("vault:x"));
    assert_false(secrets_is_reference("sk-123"));
    assert_true(secrets_is_remote("aws-sm:x"));
    assert_true(secrets_is_remote("ssm:x"));
    assert_true(secrets_is_remote("vault:x/y#z"));
    assert_false(secrets_is_remote("env:X"));
    assert_false(secrets_is_remote("file:/x"));
}

static void test_env_and_file_values(void **state)
{
    (void)state;
    char why[400], *v = NULL;
    setenv("STRATUS_T_KEY", "sk-env-1", 1);
    assert_int_equal(
        secrets_resolve(NULL, "env:STRATUS_T_KEY", SECRETS_ONE_LINE, &v, why, sizeof why), 0);
    assert_string_equal(v, "sk-env-1");
    secrets_value_free(v);

    unsetenv("STRATUS_T_UNSET");
    assert_int_equal(
        secrets_resolve(NULL, "env:STRATUS_T_UNSET", SECRETS_ONE_LINE, &v, why, sizeof why), -1);
    assert_null(v);
    assert_non_null(strstr(why, "STRATUS_T_UNSET is not set"));

    /* A file's trailing newline is dropped; a second line is refused for a key but kept for
     * PEM text; the value never appears in the reason. */
    char path[] = "/tmp/stratus-secret-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs("line-one-secret\nline-two\n", f);
    fclose(f);
    char ref[64];
    snprintf(ref, sizeof ref, "file:%s", path);
    assert_int_equal(secrets_resolve(NULL, ref, SECRETS_ONE_LINE, &v, why, sizeof why), -1);
    assert_non_null(strstr(why, "more than one line"));
    assert_null(strstr(why, "line-one-secret"));
    assert_int_equal(secrets_resolve(NULL, ref, SECRETS_MULTILINE, &v, why, sizeof why), 0);
    assert_string_equal(v, "line-one-secret\nline-two");
    secrets_value_free(v);

    f = fopen(path, "w");
    fputs("\n", f);
    fclose(f);
    assert_int_equal(secrets_resolve(NULL, ref, SECRETS_ONE_LINE, &v, why, sizeof why), -1);
    assert_non_null(strstr(why, "is empty"));
    unlink(path);
    assert_int_equal(secrets_resolve(NULL, ref, SECRETS_ONE_LINE, &v, why, sizeof why), -1);
    assert_non_null(strstr(why, "cannot read"));

    setenv("STRATUS_T_CTRL", "sk\x01x", 1);
    assert_int_equal(
        secrets_resolve(NULL, "env:STRATUS_T_CTRL", SECRETS_ONE_LINE, &v, why, sizeof why), -1);
    assert_non_null(strstr(why, "control characters"));
}

static void test_remote_without_settings_says_what_is_missing(void **state)
{
    (void)state;
    char why[600], *v = NULL;
    unsetenv("VAULT_ADDR");
    assert_int_equal(
        secrets_resolve(NULL, "vault:secret/a#b", SECRETS_ONE_LINE, &v, why, sizeof why), -1);
    assert_non_null(strstr(why, "vault:secret/a#b: no Vault address"));
    unsetenv("AWS_REGION");
    unsetenv("AWS_DEFAULT_REGION");
    assert_int_equal(secrets_resolve(NULL, "ssm:/a", SECRETS_ONE_LINE, &v, why, sizeof why), -1);
    assert_non_null(strstr(why, "ssm:/a: no AWS region"));
    /* An ARN names its region, so the next thing missing is the credentials. */
    unsetenv("AWS_ACCESS_KEY_ID");
    setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials", 1);
    assert_int_equal(secrets_resolve(NULL,
                                     "aws-sm:arn:aws:secretsmanager:eu-west-1:1:secret:x-AbCdEf",
                                     SECRETS_ONE_LINE, &v, why, sizeof why),
                     -1);
    assert_non_null(strstr(why, "no AWS credentials"));
    unsetenv("AWS_SHARED_CREDENTIALS_FILE");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference_syntax),
        cmocka_unit_test(test_env_and_file_values),
        cmocka_unit_test(test_remote_without_settings_says_what_is_missing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
