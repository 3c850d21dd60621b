/* Unit tests for src/config/config.c: parsing, defaults, secrets and every error class. */
#include "unit/cmocka_all.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"

static struct config *load(const char *yaml, struct config_error *e)
{
    return config_load_string(yaml, strlen(yaml), "t.yaml", e);
}

/* Asserts that `yaml` fails at line:col with a message containing `part`. */
static void expect_error(const char *yaml, int line, int col, const char *part)
{
    struct config_error e;
    struct config *c = load(yaml, &e);
    if (c != NULL) {
        config_free(c);
        fail_msg("expected an error containing '%s'", part);
    }
    if (strstr(e.msg, part) == NULL) fail_msg("message '%s' lacks '%s'", e.msg, part);
    if (e.line != line || e.col != col)
        fail_msg("'%s' at %d:%d, expected %d:%d", e.msg, e.line, e.col, line, col);
    assert_string_equal(e.file, "t.yaml");
}

static void test_config_load_string_full_config(void **state)
{
    (void)state;
    setenv("CFG_TEST_KEY", "sk-123", 1);
    const char *yaml =
        "listen: 0.0.0.0:9000\n"
        "shutdown_grace_ms: 1500\n"
        "log: { requests: false }\n"
        "limits:\n"
        "  max_body_bytes: 1024\n"
        "  max_header_bytes: 2048\n"
        "  header_timeout_ms: 11\n"
        "  body_timeout_ms: 12\n"
        "  idle_timeout_ms: 13\n"
        "  max_connections: 14\n"
        "backends:\n"
        "  - name: up\n"
        "    type: openai\n"
        "    base_url: http://127.0.0.1:9001/v1/\n"
        "    api_key: env:CFG_TEST_KEY\n"
        "    timeout_ms: 5000\n"
        "    connect_timeout_ms: 100\n"
        "  - { name: other, type: openai, base_url: \"https://x.example/v1\" }\n"
        "models:\n"
        "  - name: chat\n"
        "    route: priority\n"
        "    targets:\n"
        "      - { backend: other, model: m1, weight: 3, price: { input: 0.15, output: 0.6 } }\n"
        "      - { backend: up }\n";
    struct config_error e;
    struct config *c = load(yaml, &e);
    if (c == NULL) fail_msg("%s at %d:%d", e.msg, e.line, e.col);
    assert_string_equal(c->listen_host, "0.0.0.0");
    assert_int_equal(c->listen_port, 9000);
    assert_int_equal(c->shutdown_grace_ms, 1500);
    assert_false(c->log_requests);
    assert_int_equal(c->limits.max_body_bytes, 1024);
    assert_int_equal(c->limits.max_header_bytes, 2048);
    assert_int_equal(c->limits.header_timeout_ms, 11);
    assert_int_equal(c->limits.body_timeout_ms, 12);
    assert_int_equal(c->limits.idle_timeout_ms, 13);
    assert_int_equal(c->limits.max_connections, 14);
    assert_int_equal(c->n_backends, 2);
    assert_string_equal(c->backends[0].base_url, "http://127.0.0.1:9001/v1"); /* '/' trimmed */
    assert_string_equal(c->backends[0].api_key.ref, "env:CFG_TEST_KEY");
    assert_string_equal(c->backends[0].api_key.value, "sk-123");
    assert_int_equal(c->backends[0].timeout_ms, 5000);
    assert_int_equal(c->backends[0].connect_timeout_ms, 100);
    assert_null(c->backends[1].api_key.value);
    assert_int_equal(c->backends[1].timeout_ms, 60000); /* defaults */
    assert_int_equal(c->backends[1].connect_timeout_ms, 5000);
    assert_int_equal(c->n_models, 1);
    const struct model_conf *m = config_find_model(c, "chat");
    assert_non_null(m);
    assert_int_equal(m->n_targets, 2);
    assert_int_equal(m->targets[0].backend_index, 1);
    assert_string_equal(m->targets[0].model, "m1");
    assert_int_equal(m->targets[0].weight, 3);
    assert_true(m->targets[0].price.set);
    assert_true(m->targets[0].price.output > 0.59 && m->targets[0].price.output < 0.61);
    assert_string_equal(m->targets[1].model, "chat"); /* defaults to the group's name */
    assert_int_equal(m->targets[1].backend_index, 0);
    assert_null(config_find_model(c, "nope"));
    config_free(c);
}

static void test_config_load_string_defaults_for_empty_file(void **state)
{
    (void)state;
    struct config_error e;
    struct config *c = load("", &e);
    assert_non_null(c);
    assert_string_equal(c->listen_host, "127.0.0.1");
    assert_int_equal(c->listen_port, 8080);
    assert_int_equal(c->limits.max_body_bytes, 10 * 1024 * 1024);
    assert_int_equal(c->limits.max_header_bytes, 64 * 1024);
    assert_int_equal(c->shutdown_grace_ms, 10000);
    assert_true(c->log_requests);
    assert_int_equal(c->n_backends, 0);
    config_free(c);
}

static void test_config_load_string_unknown_keys(void **state)
{
    (void)state;
    expect_error("listne: 1.2.3.4:5\n", 1, 1,
                 "unknown key 'listne' in the configuration (did you mean 'listen'?)");
    expect_error(
        "backends:\n  - name: a\n    type: openai\n    base_url: http://x\n    colour: red\n", 5, 5,
        "unknown key 'colour' in backends[0]");
    expect_error("limits:\n  max_body_byts: 5\n", 2, 3, "did you mean 'max_body_bytes'?");
    expect_error("log: { request: true }\n", 1, 8, "did you mean 'requests'?");
}

static void test_config_load_string_wrong_types(void **state)
{
    (void)state;
    expect_error("limits:\n  max_body_bytes: 10MB\n", 2, 19,
                 "max_body_bytes must be a positive integer");
    expect_error("limits:\n  idle_timeout_ms: -5\n", 2, 20,
                 "idle_timeout_ms must be a positive integer");
    expect_error("shutdown_grace_ms: 1.5\n", 1, 20, "shutdown_grace_ms must be an integer");
    expect_error("log:\n  requests: yes please\n", 2, 13, "requests must be true or false");
    expect_error("backends: {}\n", 1, 11, "backends must be a list");
    expect_error("limits: 5\n", 1, 9, "limits must be a mapping");
    expect_error("listen: nowhere\n", 1, 9, "listen: expected HOST:PORT");
    expect_error("listen: 1.2.3.4:99999\n", 1, 9, "port must be a number from 0 to 65535");
}

static void test_config_load_string_yaml_syntax_error(void **state)
{
    (void)state;
    struct config_error e;
    struct config *c = load("backends:\n  - name: [unclosed\n", &e);
    assert_null(c);
    assert_non_null(strstr(e.msg, "YAML syntax error"));
    assert_true(e.line >= 2);
}

static void test_config_load_string_duplicates_and_references(void **state)
{
    (void)state;
    expect_error("listen: a:1\nlisten: b:2\n", 2, 1, "duplicate key 'listen'");
    expect_error("backends:\n  - { name: a, type: openai, base_url: \"http://x\" }\n"
                 "  - { name: a, type: openai, base_url: \"http://y\" }\n",
                 3, 13, "duplicate backend name 'a'");
    expect_error("backends:\n  - { name: a, type: openai, base_url: \"http://x\" }\nmodels:\n"
                 "  - { name: m, targets: [ { backend: a } ] }\n  - { name: m, targets: [ { "
                 "backend: a } ] }\n",
                 5, 13, "duplicate model name 'm'");
    expect_error("models:\n  - name: m\n    targets:\n      - { backend: ghost }\n", 4, 20,
                 "model 'm' target 1: unknown backend 'ghost'");
    expect_error("models:\n  - name: m\n    targets: []\n", 3, 14,
                 "targets must be a non-empty list");
    expect_error("models:\n  - name: m\n", 2, 5, "missing required key 'targets'");
}

static void test_config_load_string_unsupported_features_are_errors(void **state)
{
    (void)state;
    expect_error("backends:\n  - { name: c, type: anthropic }\n", 2, 22,
                 "backend type 'anthropic' is not supported by this build (supported: openai)");
    expect_error("backends:\n  - { name: c, type: gopher, base_url: \"http://x\" }\n", 2, 22,
                 "unknown backend type 'gopher'");
    expect_error("backends:\n  - { name: a, type: openai, base_url: \"http://x\" }\nmodels:\n"
                 "  - { name: m, route: weighted, targets: [ { backend: a } ] }\n",
                 4, 23, "route policy 'weighted' is not supported by this build");
    expect_error("auth:\n  master_key: env:X\n", 2, 3, "'auth' is not supported by this build");
    expect_error("store: { url: \"sqlite://x.db\" }\n", 1, 8,
                 "'store' is not supported by this build");
    expect_error("backends:\n  - { name: a, type: openai, base_url: \"ftp://x\" }\n", 2, 40,
                 "base_url must start with http:// or https://");
}

static void test_config_load_string_secret_references(void **state)
{
    (void)state;
    struct config_error e;
    /* A literal key is refused and never echoed. */
    const char *literal =
        "backends:\n  - { name: a, type: openai, base_url: \"http://x\", api_key: sk-LEAKME }\n";
    assert_null(load(literal, &e));
    assert_non_null(strstr(e.msg, "must be a secret reference (env:NAME or file:PATH)"));
    assert_null(strstr(e.msg, "LEAKME"));

    unsetenv("CFG_TEST_MISSING");
    expect_error("backends:\n  - { name: a, type: openai, base_url: \"http://x\", api_key: "
                 "env:CFG_TEST_MISSING }\n",
                 2, 61,
                 "environment variable CFG_TEST_MISSING (api_key of backend 'a') is not set");

    char path[] = "/tmp/stratus-secret-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "sk-from-file\r\n", 14), 14);
    close(fd);
    char yaml[512];
    snprintf(
        yaml, sizeof yaml,
        "backends:\n  - { name: a, type: openai, base_url: \"http://x\", api_key: \"file:%s\" }\n",
        path);
    struct config *c = load(yaml, &e);
    if (c == NULL) fail_msg("%s", e.msg);
    assert_string_equal(c->backends[0].api_key.value, "sk-from-file");
    config_free(c);
    unlink(path);
    assert_null(load(yaml, &e)); /* now missing */
    assert_non_null(strstr(e.msg, "cannot read"));
    assert_non_null(strstr(e.msg, path));
}

static void test_config_load_missing_file(void **state)
{
    (void)state;
    struct config_error e;
    char buf[600];
    assert_null(config_load("/nonexistent/stratus.yaml", &e));
    assert_int_equal(e.line, 0);
    assert_string_equal(config_error_format(&e, buf, sizeof buf),
                        "/nonexistent/stratus.yaml: cannot open: No such file or directory");
}

static void test_config_error_format_with_position(void **state)
{
    (void)state;
    struct config_error e = {.line = 3, .col = 7};
    char buf[600];
    snprintf(e.file, sizeof e.file, "a.yaml");
    snprintf(e.msg, sizeof e.msg, "boom");
    assert_string_equal(config_error_format(&e, buf, sizeof buf), "a.yaml:3:7: boom");
}

static void test_config_parse_listen_forms(void **state)
{
    (void)state;
    char *host = NULL;
    int port = -1;
    const char *why = NULL;
    assert_int_equal(config_parse_listen("127.0.0.1:8080", &host, &port, &why), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 8080);
    free(host);
    assert_int_equal(config_parse_listen("[::1]:0", &host, &port, &why), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 0);
    free(host);
    assert_int_equal(config_parse_listen("localhost:", &host, &port, &why), -1);
    assert_int_equal(config_parse_listen(":80", &host, &port, &why), -1);
    assert_int_equal(config_parse_listen("[::1]80", &host, &port, &why), -1);
    assert_int_equal(config_parse_listen("h:70000", &host, &port, &why), -1);
    assert_non_null(why);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_load_string_full_config),
        cmocka_unit_test(test_config_load_string_defaults_for_empty_file),
        cmocka_unit_test(test_config_load_string_unknown_keys),
        cmocka_unit_test(test_config_load_string_wrong_types),
        cmocka_unit_test(test_config_load_string_yaml_syntax_error),
        cmocka_unit_test(test_config_load_string_duplicates_and_references),
        cmocka_unit_test(test_config_load_string_unsupported_features_are_errors),
        cmocka_unit_test(test_config_load_string_secret_references),
        cmocka_unit_test(test_config_load_missing_file),
        cmocka_unit_test(test_config_error_format_with_position),
        cmocka_unit_test(test_config_parse_listen_forms),
    };
    return cmocka_run_group_tests_name("src/config/config.c", tests, NULL, NULL);
}
