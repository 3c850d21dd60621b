/* Unit tests for src/config/config.c: parsing, defaults, secrets and every error class.
 * Positions are asserted exactly (1-based line:col of the offending node), because
 * `stratus check` prints them and users jump to them from their editor. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"

#ifdef STRATUS_HAVE_ENGINE
#define SUPPORTED "openai, anthropic, bedrock, local"
#else
#define SUPPORTED "openai, anthropic, bedrock"
#endif

/* One backend `up` that every model below can target. */
#define UP "backends:\n  - { name: up, type: openai, base_url: \"http://h\" }\n"

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

/* Asserts the whole message, not just a part. */
static void expect_exact(const char *yaml, int line, int col, const char *msg)
{
    expect_error(yaml, line, col, msg);
    struct config_error e;
    assert_null(load(yaml, &e));
    assert_string_equal(e.msg, msg);
}

/* Writes `data` to a new temp file; `path` receives its name (caller unlinks). */
static void write_temp(char *path, const char *data, size_t len)
{
    strcpy(path, "/tmp/stratus-cfgtest-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
}

static void test_config_load_string_parses_full_config(void **state)
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
        "      - { backend: up, weight: 0 }\n"
        "  - name: embed\n"
        "    targets: [ { backend: up, model: e5 } ]\n";
    struct config_error e;
    struct config *c = load(yaml, &e);
    if (c == NULL) fail_msg("%s at %d:%d", e.msg, e.line, e.col);
    assert_string_equal(c->path, "t.yaml");
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
    const struct backend_conf *b = &c->backends[0];
    assert_string_equal(b->name, "up");
    assert_int_equal(b->type, BACKEND_OPENAI);
    assert_string_equal(b->base_url, "http://127.0.0.1:9001/v1"); /* '/' trimmed */
    assert_string_equal(b->api_key.ref, "env:CFG_TEST_KEY");
    assert_string_equal(b->api_key.value, "sk-123");
    assert_int_equal(b->timeout_ms, 5000);
    assert_int_equal(b->connect_timeout_ms, 100);
    assert_int_equal(b->line, 12);
    assert_int_equal(b->col, 5);
    b = &c->backends[1];
    assert_string_equal(b->name, "other");
    assert_string_equal(b->base_url, "https://x.example/v1");
    assert_null(b->api_key.ref);
    assert_null(b->api_key.value);
    assert_int_equal(b->timeout_ms, 60000); /* defaults */
    assert_int_equal(b->connect_timeout_ms, 5000);
    assert_int_equal(b->line, 18);
    assert_int_equal(b->col, 5);

    assert_int_equal(c->n_models, 2);
    const struct model_conf *m = &c->models[0];
    assert_string_equal(m->name, "chat");
    assert_int_equal(m->route, ROUTE_PRIORITY);
    assert_int_equal(m->n_targets, 2);
    assert_string_equal(m->targets[0].backend, "other");
    assert_int_equal(m->targets[0].backend_index, 1);
    assert_string_equal(m->targets[0].model, "m1");
    assert_int_equal(m->targets[0].weight, 3);
    assert_true(m->targets[0].price.set);
    assert_true(m->targets[0].price.input > 0.149 && m->targets[0].price.input < 0.151);
    assert_true(m->targets[0].price.output > 0.599 && m->targets[0].price.output < 0.601);
    assert_string_equal(m->targets[1].backend, "up");
    assert_int_equal(m->targets[1].backend_index, 0);
    assert_string_equal(m->targets[1].model, "chat"); /* defaults to the group's name */
    assert_int_equal(m->targets[1].weight, 0);
    assert_false(m->targets[1].price.set);
    m = &c->models[1];
    assert_string_equal(m->name, "embed");
    assert_int_equal(m->n_targets, 1);
    assert_string_equal(m->targets[0].model, "e5");
    config_free(c);
    unsetenv("CFG_TEST_KEY");
}

static void test_config_load_string_applies_defaults(void **state)
{
    (void)state;
    const char *inputs[] = {"", "# only a comment\n", "---\n", "~\n"};
    for (size_t i = 0; i < sizeof inputs / sizeof *inputs; i++) {
        struct config_error e;
        struct config *c = load(inputs[i], &e);
        if (c == NULL) fail_msg("input %zu: %s", i, e.msg);
        assert_string_equal(c->listen_host, "127.0.0.1");
        assert_int_equal(c->listen_port, 8080);
        assert_int_equal(c->shutdown_grace_ms, 10000);
        assert_true(c->log_requests);
        assert_int_equal(c->limits.max_body_bytes, 10 * 1024 * 1024);
        assert_int_equal(c->limits.max_header_bytes, 64 * 1024);
        assert_int_equal(c->limits.header_timeout_ms, 10000);
        assert_int_equal(c->limits.body_timeout_ms, 30000);
        assert_int_equal(c->limits.idle_timeout_ms, 60000);
        assert_int_equal(c->limits.max_connections, 10000);
        assert_int_equal(c->n_backends, 0);
        assert_null(c->backends);
        assert_int_equal(c->n_models, 0);
        assert_null(c->models);
        config_free(c);
    }
    /* A partial section keeps the defaults of the keys it leaves out. */
    struct config_error e;
    struct config *c = load("limits: { max_connections: 5 }\nlog: {}\n", &e);
    assert_non_null(c);
    assert_int_equal(c->limits.max_connections, 5);
    assert_int_equal(c->limits.max_body_bytes, 10 * 1024 * 1024);
    assert_int_equal(c->limits.idle_timeout_ms, 60000);
    assert_int_equal(c->limits.max_response_bytes, 64 * 1024 * 1024);
    assert_int_equal(c->limits.max_buffered_bytes, 256 * 1024 * 1024);
    assert_true(c->log_requests);
    config_free(c);
}

static void test_config_limits_for_held_answers(void **state)
{
    (void)state;
    struct config_error e;
    struct config *c =
        load("limits: { max_response_bytes: 1048576, max_buffered_bytes: 4194304 }\n", &e);
    if (c == NULL) fail_msg("%s", e.msg);
    assert_int_equal(c->limits.max_response_bytes, 1048576);
    assert_int_equal(c->limits.max_buffered_bytes, 4194304);
    config_free(c);
    /* A budget that could never hold one answer is a mistake, said at load. */
    expect_exact("limits: { max_response_bytes: 2048, max_buffered_bytes: 1024 }\n", 1, 9,
                 "limits.max_buffered_bytes (1024) is smaller than limits.max_response_bytes "
                 "(2048): no answer could ever be held");
    expect_error("limits: { max_response_bytes: 10 }\n", 1, 31, "max_response_bytes");
}

static void test_config_model_max_prompt_tokens(void **state)
{
    (void)state;
    const char *base = "backends: [{ name: a, type: openai, base_url: \"http://x\" }]\n"
                       "models:\n"
                       "  - name: m\n"
                       "    targets: [{ backend: a, model: x }]\n";
    char y[512];
    struct config_error e;
    snprintf(y, sizeof y, "%s    max_prompt_tokens: 8000\n", base);
    struct config *c = load(y, &e);
    if (c == NULL) fail_msg("%s", e.msg);
    assert_int_equal(c->models[0].max_prompt_tokens, 8000);
    config_free(c);
    c = load(base, &e); /* absent: no limit */
    assert_non_null(c);
    assert_int_equal(c->models[0].max_prompt_tokens, 0);
    config_free(c);
    snprintf(y, sizeof y, "%s    max_prompt_tokens: 0\n", base);
    expect_error(y, 5, 24, "max_prompt_tokens must be a positive integer (at most 100000000)");
    snprintf(y, sizeof y, "%s    max_prompt_tokens: lots\n", base);
    expect_error(y, 5, 24, "max_prompt_tokens must be a positive integer");
    /* guards.input.strip_control: on by default once guards: exists, off without it */
    c = load("guards: { input: { pii: flag } }\n", &e);
    assert_non_null(c);
    assert_true(c->guards.strip_control);
    config_free(c);
    c = load("guards: { input: { strip_control: false } }\n", &e);
    assert_non_null(c);
    assert_false(c->guards.strip_control);
    config_free(c);
    c = load("listen: 127.0.0.1:8080\n", &e);
    assert_non_null(c);
    assert_false(c->guards.strip_control);
    config_free(c);
    expect_error("guards: { input: { strip_control: 1 } }\n", 1, 35,
                 "strip_control must be true or false");
}

static void test_config_load_string_allows_empty_lists(void **state)
{
    (void)state;
    const char *inputs[] = {"backends: []\nmodels: []\n", "backends:\nmodels:\n",
                            UP "models: []\n"};
    for (size_t i = 0; i < sizeof inputs / sizeof *inputs; i++) {
        struct config_error e;
        struct config *c = load(inputs[i], &e);
        if (c == NULL) fail_msg("input %zu: %s", i, e.msg);
        assert_int_equal(c->n_models, 0);
        config_free(c);
    }
}

static void test_config_load_string_rejects_unknown_keys(void **state)
{
    (void)state;
    expect_exact("listne: 1.2.3.4:5\n", 1, 1,
                 "unknown key 'listne' in the configuration (did you mean 'listen'?)");
    expect_exact("backends:\n  - name: a\n    type: openai\n    base_url: http://x\n"
                 "    colour: red\n",
                 5, 5, "unknown key 'colour' in backends[0]");
    expect_exact("backends:\n  - name: up\n    type: openai\n    base_ulr: http://x/v1\n", 4, 5,
                 "unknown key 'base_ulr' in backends[0] (did you mean 'base_url'?)");
    expect_exact("limits:\n  max_body_byts: 5\n", 2, 3,
                 "unknown key 'max_body_byts' in limits (did you mean 'max_body_bytes'?)");
    expect_exact("log: { request: true }\n", 1, 8,
                 "unknown key 'request' in log (did you mean 'requests'?)");
    expect_exact(UP "models:\n  - { name: m, targets: [ { backend: up, modle: x } ] }\n", 4, 42,
                 "unknown key 'modle' in model 'm' target 1 (did you mean 'model'?)");
    expect_exact(UP "models:\n  - name: m\n    targets:\n"
                    "      - { backend: up, price: { input: 1, output: 2, cached: 3 } }\n",
                 6, 54, "unknown key 'cached' in model 'm' target 1 price");
    expect_exact(UP "models:\n  - { name: m, rout: priority, targets: [ { backend: up } ] }\n", 4,
                 16, "unknown key 'rout' in models[0] (did you mean 'route'?)");
    expect_exact("tls: { cert: env:HOME, key: env:HOME, ca: x }\n", 1, 39,
                 "unknown key 'ca' in tls");
    expect_exact("[1, 2]: x\n", 1, 1, "keys in the configuration must be plain strings");
}

static void test_config_load_string_rejects_wrong_types(void **state)
{
    (void)state;
    expect_exact("limits:\n  max_body_bytes: 10MB\n", 2, 19,
                 "max_body_bytes must be a positive integer (at most 17179869184)");
    expect_error("limits:\n  idle_timeout_ms: -5\n", 2, 20,
                 "idle_timeout_ms must be a positive integer");
    expect_error("limits:\n  body_timeout_ms: 0\n", 2, 20,
                 "body_timeout_ms must be a positive integer");
    expect_error("limits:\n  header_timeout_ms: 1e3\n", 2, 22,
                 "header_timeout_ms must be a positive integer");
    expect_error("limits:\n  max_connections: \"100\"\n", 2, 20,
                 "max_connections must be a positive integer");
    expect_error("limits:\n  max_connections: 0x10\n", 2, 20,
                 "max_connections must be a positive integer");
    expect_error("limits:\n  max_connections: 99999999999999999999999\n", 2, 20,
                 "max_connections must be a positive integer");
    expect_exact("limits:\n  max_header_bytes: 100\n", 2, 21,
                 "max_header_bytes must be an integer from 256 to 16777216");
    expect_exact("shutdown_grace_ms: 1.5\n", 1, 20,
                 "shutdown_grace_ms must be a non-negative integer (at most 86400000)");
    expect_error("shutdown_grace_ms: 10s\n", 1, 20, "shutdown_grace_ms must be a non-negative");
    expect_error("shutdown_grace_ms: [1]\n", 1, 20, "shutdown_grace_ms must be a non-negative");
    expect_exact("log:\n  requests: yes\n", 2, 13, "requests must be true or false");
    expect_error("log:\n  requests: \"true\"\n", 2, 13, "requests must be true or false");
    expect_error("log:\n  requests: 1\n", 2, 13, "requests must be true or false");
    expect_exact("backends: {}\n", 1, 11, "backends must be a list");
    expect_exact("models: chat\n", 1, 9, "models must be a list");
    expect_exact("limits: 5\n", 1, 9, "limits must be a mapping");
    expect_exact("log: [true]\n", 1, 6, "log must be a mapping");
    expect_exact("- listen\n", 1, 1, "the configuration must be a mapping");
    expect_exact("backends:\n  - up\n", 2, 5, "backends[0] must be a mapping");
    expect_exact("backends:\n  - { name: [a], type: openai, base_url: \"http://h\" }\n", 2, 13,
                 "name must be a non-empty string");
    expect_exact("backends:\n  - { name: \"\", type: openai, base_url: \"http://h\" }\n", 2, 13,
                 "name must be a non-empty string");
    expect_exact("backends:\n  - { name: a, type: [openai], base_url: \"http://h\" }\n", 2, 22,
                 "type must be a string (supported: " SUPPORTED ")");
    expect_exact(
        "backends:\n  - { name: a, type: openai, base_url: \"http://h\", timeout_ms: 10s }\n", 2,
        64, "timeout_ms must be a positive integer (at most 86400000)");
    expect_exact("backends:\n  - { name: a, type: openai, base_url: \"http://h\", "
                 "connect_timeout_ms: -1 }\n",
                 2, 72, "connect_timeout_ms must be a positive integer (at most 600000)");
    expect_exact(UP "models:\n  - { name: m, targets: [ { backend: up, weight: -1 } ] }\n", 4, 50,
                 "weight must be a non-negative integer (at most 1000000)");
    expect_exact(UP "models:\n  - { name: m, targets: [ { backend: up, weight: 1.5 } ] }\n", 4, 50,
                 "weight must be a non-negative integer (at most 1000000)");
    expect_exact(UP "models:\n  - name: m\n    targets:\n"
                    "      - { backend: up, price: { input: -1, output: 2 } }\n",
                 6, 40, "price.input must be a non-negative number (USD per 1M tokens)");
    expect_exact(UP "models:\n  - name: m\n    targets:\n"
                    "      - { backend: up, price: { input: 1, output: cheap } }\n",
                 6, 51, "price.output must be a non-negative number (USD per 1M tokens)");
    expect_exact(UP "models:\n  - name: m\n    targets:\n"
                    "      - { backend: up, price: { input: .nan, output: 1 } }\n",
                 6, 40, "price.input must be a non-negative number (USD per 1M tokens)");
    expect_exact(UP "models:\n  - name: m\n    targets:\n"
                    "      - { backend: up, price: { input: 1 } }\n",
                 6, 31, "model 'm' target 1: price needs both 'input' and 'output'");
    expect_exact(UP "models:\n  - name: m\n    targets:\n      - { backend: up, price: 3 }\n", 6,
                 31, "price must be a mapping");
    expect_exact(
        UP "models:\n  - { name: m, route: [priority], targets: [ { backend: up } ] }\n", 4, 23,
        "route must be a string (supported: priority, weighted, latency, least-busy, cost, "
        "margin)");
}

static void test_config_load_string_rejects_bad_listen(void **state)
{
    (void)state;
    expect_exact("listen: nowhere\n", 1, 9, "listen: expected HOST:PORT");
    expect_exact("listen: 1.2.3.4:99999\n", 1, 9, "listen: port must be a number from 0 to 65535");
    expect_exact("listen: \"::1:80\"\n", 1, 9,
                 "listen: an IPv6 address needs brackets, as in [::1]:8080");
    expect_exact("listen: [a, b]\n", 1, 10, "listen: expected HOST:PORT");
    expect_exact("listen: [[a]]\n", 1, 10,
                 "listen must be a string HOST:PORT (quote IPv6: \"[::1]:8080\"), a list of them, "
                 "or { address, tls } entries");
    struct config_error e;
    struct config *c = load("listen: \"[::1]:80\"\n", &e);
    assert_non_null(c);
    assert_string_equal(c->listen_host, "::1");
    assert_int_equal(c->listen_port, 80);
    config_free(c);
}

static void test_config_load_string_rejects_duplicate_keys(void **state)
{
    (void)state;
    expect_exact("listen: a:1\nlisten: b:2\n", 2, 1, "duplicate key 'listen' in the configuration");
    expect_exact("backends:\n  - name: a\n    type: openai\n    name: b\n", 4, 5,
                 "duplicate key 'name' in backends[0]");
    expect_exact("limits: { max_connections: 1, max_connections: 2 }\n", 1, 31,
                 "duplicate key 'max_connections' in limits");
}

static void test_config_load_string_rejects_duplicate_names(void **state)
{
    (void)state;
    expect_exact("backends:\n  - { name: a, type: openai, base_url: \"http://x\" }\n"
                 "  - { name: a, type: openai, base_url: \"http://y\" }\n",
                 3, 13, "duplicate backend name 'a'");
    expect_exact(UP "models:\n  - { name: m, targets: [ { backend: up } ] }\n"
                    "  - { name: m, targets: [ { backend: up } ] }\n",
                 5, 13, "duplicate model name 'm'");
}

static void test_config_load_string_rejects_unknown_target_backend(void **state)
{
    (void)state;
    expect_exact("models:\n  - name: m\n    targets:\n      - { backend: ghost }\n", 4, 20,
                 "model 'm' target 1: unknown backend 'ghost'");
    expect_exact(UP "models:\n  - name: chat\n    targets:\n      - { backend: up }\n"
                    "      - { backend: x, model: y }\n",
                 7, 20, "model 'chat' target 2: unknown backend 'x'");
}

static void test_config_load_string_rejects_bad_targets(void **state)
{
    (void)state;
    expect_exact("models:\n  - name: m\n    targets: []\n", 3, 14,
                 "model 'm': targets must be a non-empty list");
    expect_exact("models:\n  - name: m\n    targets: up\n", 3, 14,
                 "model 'm': targets must be a non-empty list");
    expect_exact("models:\n  - name: m\n", 2, 5, "model 'm': missing required key 'targets'");
    expect_exact(UP "models:\n  - { name: m, targets: [ up ] }\n", 4, 27,
                 "model 'm' target 1 must be a mapping");
    expect_exact(UP "models:\n  - { name: m, targets: [ { model: x } ] }\n", 4, 27,
                 "model 'm' target 1: missing required key 'backend'");
    expect_exact(UP "models:\n  - { targets: [ { backend: up } ] }\n", 4, 5,
                 "models[0]: missing required key 'name'");
}

static void test_config_load_string_rejects_missing_backend_keys(void **state)
{
    (void)state;
    expect_exact("backends:\n  - { type: openai, base_url: \"http://h\" }\n", 2, 5,
                 "backends[0]: missing required key 'name'");
    expect_exact("backends:\n  - { name: a, base_url: \"http://h\" }\n", 2, 5,
                 "backend 'a': missing required key 'type'");
    expect_exact("backends:\n  - { name: a, type: openai }\n", 2, 5,
                 "backend 'a': missing required key 'base_url'");
}

static void test_config_load_string_rejects_unknown_backend_types(void **state)
{
    (void)state;
#ifndef STRATUS_HAVE_ENGINE
    expect_exact("backends:\n  - { name: c, type: local }\n", 2, 22,
                 "backend type 'local' is not supported by this build (supported: " SUPPORTED ")");
#endif
    expect_exact("backends:\n  - { name: c, type: gopher, base_url: \"http://x\" }\n", 2, 22,
                 "unknown backend type 'gopher' (supported: " SUPPORTED ")");
    expect_exact("backends:\n  - { name: c, type: OpenAI, base_url: \"http://x\" }\n", 2, 22,
                 "unknown backend type 'OpenAI' (supported: " SUPPORTED ")");
}

#ifdef STRATUS_HAVE_ENGINE
static void test_config_load_string_local_backend(void **state)
{
    (void)state;
    struct config_error e;
    const char *yaml = "backends:\n"
                       "  - name: l\n"
                       "    type: local\n"
                       "    model_path: models/m.gguf\n"
                       "    parallel: 8\n"
                       "    threads: 2\n"
                       "    ctx_size: 1024\n"
                       "    max_queue: 5\n"
                       "    prefix_cache: false\n"
                       "    prefill_chunk: 128\n"
                       "  - { name: d, type: local, model_path: x.gguf }\n";
    struct config *c = config_load_string(yaml, strlen(yaml), "t.yaml", &e);
    if (c == NULL) fail_msg("%s at %d:%d", e.msg, e.line, e.col);
    assert_int_equal(c->backends[0].type, BACKEND_LOCAL);
    assert_string_equal(c->backends[0].model_path, "models/m.gguf");
    assert_int_equal(c->backends[0].parallel, 8);
    assert_int_equal(c->backends[0].threads, 2);
    assert_int_equal(c->backends[0].ctx_size, 1024);
    assert_int_equal(c->backends[0].max_queue, 5);
    assert_int_equal(c->backends[1].parallel, 4); /* defaults */
    assert_int_equal(c->backends[1].threads, 0);
    assert_int_equal(c->backends[1].ctx_size, 4096);
    assert_int_equal(c->backends[1].max_queue, 64);
    assert_true(c->backends[0].no_prefix_cache);
    assert_false(c->backends[1].no_prefix_cache); /* the prefix cache is on by default */
    assert_int_equal(c->backends[0].prefill_chunk, 128);
    assert_int_equal(c->backends[1].prefill_chunk, 0); /* 0: the engine's default */
    config_free(c);
    expect_exact("backends:\n  - { name: l, type: local }\n", 2, 5,
                 "backend 'l': missing required key 'model_path'");
    expect_exact("backends:\n  - { name: l, type: local, model_path: m, base_url: \"http://x\" }\n",
                 2, 44, "unknown key 'base_url' in backend 'l'");
    expect_exact("backends:\n  - { name: l, type: local, model_path: m, parallel: 0 }\n", 2, 54,
                 "parallel must be a positive integer (at most 256)");
    expect_exact("backends:\n  - { name: l, type: local, model_path: m, prefix_cache: 0 }\n", 2, 58,
                 "prefix_cache must be true or false");
    expect_exact("backends:\n  - { name: l, type: local, model_path: m, prefill_chunk: 0 }\n", 2,
                 59, "prefill_chunk must be a positive integer (at most 1048576)");
}
#endif

static void test_config_load_string_anthropic_backend(void **state)
{
    (void)state;
    setenv("TEST_ANTHROPIC_KEY", "sk-ant-test", 1);
    struct config_error e;
    struct config *cfg = load("backends:\n  - { name: c, type: anthropic, api_key: "
                              "env:TEST_ANTHROPIC_KEY }\n",
                              &e);
    assert_non_null(cfg);
    assert_int_equal(cfg->backends[0].type, BACKEND_ANTHROPIC);
    assert_string_equal(cfg->backends[0].base_url, "https://api.anthropic.com");
    assert_string_equal(cfg->backends[0].anthropic_version, "2023-06-01");
    assert_int_equal(cfg->backends[0].max_tokens, 4096);
    assert_string_equal(cfg->backends[0].api_key.value, "sk-ant-test");
    config_free(cfg);
    cfg = load("backends:\n  - { name: c, type: anthropic, api_key: env:TEST_ANTHROPIC_KEY,\n"
               "      base_url: \"http://127.0.0.1:9/\", max_tokens: 100, anthropic_version: v }\n",
               &e);
    assert_non_null(cfg);
    assert_string_equal(cfg->backends[0].base_url, "http://127.0.0.1:9");
    assert_int_equal(cfg->backends[0].max_tokens, 100);
    assert_string_equal(cfg->backends[0].anthropic_version, "v");
    config_free(cfg);
    expect_exact("backends:\n  - { name: c, type: anthropic }\n", 2, 5,
                 "backend 'c': missing required key 'api_key'");
    expect_exact("backends:\n  - { name: c, type: anthropic, api_key: env:TEST_ANTHROPIC_KEY, "
                 "max_tokens: 0 }\n",
                 2, 78, "max_tokens must be a positive integer (at most 10000000)");
    unsetenv("TEST_ANTHROPIC_KEY");
}

static void test_config_load_string_bedrock_credentials_chain(void **state)
{
    (void)state;
    char dir[] = "/tmp/stratus-aws-XXXXXX", path[128];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/credentials", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("[default]\naws_access_key_id = AKIDFILE\naws_secret_access_key = filesecret\n\n"
          "[other]\naws_access_key_id=AKIDOTHER\naws_secret_access_key=othersecret\n"
          "aws_session_token = othertoken\n",
          f);
    fclose(f);
    setenv("AWS_SHARED_CREDENTIALS_FILE", path, 1);
    unsetenv("AWS_PROFILE");
    unsetenv("AWS_REGION");
    unsetenv("AWS_DEFAULT_REGION");
    setenv("AWS_ACCESS_KEY_ID", "AKIDENV", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "envsecret", 1);
    unsetenv("AWS_SESSION_TOKEN");
    struct config_error e;
    /* The environment comes first. */
    struct config *cfg =
        load("backends:\n  - { name: aws, type: bedrock, region: eu-west-1 }\n", &e);
    assert_non_null(cfg);
    const struct backend_conf *b = &cfg->backends[0];
    assert_int_equal(b->type, BACKEND_BEDROCK);
    assert_int_equal(b->aws_source, AWS_CREDS_ENV);
    assert_string_equal(b->aws_access_key_id.value, "AKIDENV");
    assert_string_equal(b->base_url, "https://bedrock-runtime.eu-west-1.amazonaws.com");
    assert_null(b->aws_session_token.value);
    config_free(cfg);
    /* A named profile selects the file even with keys in the environment. */
    cfg = load("backends:\n  - { name: aws, type: bedrock, region: us-east-1, profile: other,\n"
               "      endpoint_url: \"http://127.0.0.1:4000\" }\n",
               &e);
    assert_non_null(cfg);
    b = &cfg->backends[0];
    assert_int_equal(b->aws_source, AWS_CREDS_FILE);
    assert_string_equal(b->aws_access_key_id.value, "AKIDOTHER");
    assert_string_equal(b->aws_secret_access_key.value, "othersecret");
    assert_string_equal(b->aws_session_token.value, "othertoken");
    assert_string_equal(b->base_url, "http://127.0.0.1:4000");
    config_free(cfg);
    /* No environment: the default profile; region from AWS_REGION. */
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    setenv("AWS_REGION", "ap-south-1", 1);
    cfg = load("backends:\n  - { name: aws, type: bedrock }\n", &e);
    assert_non_null(cfg);
    assert_string_equal(cfg->backends[0].aws_access_key_id.value, "AKIDFILE");
    assert_string_equal(cfg->backends[0].region, "ap-south-1");
    config_free(cfg);
    unsetenv("AWS_REGION");
    expect_exact("backends:\n  - { name: aws, type: bedrock }\n", 2, 5,
                 "backend 'aws': missing required key 'region' (or set AWS_REGION)");
    /* Explicit references win over everything. */
    setenv("TEST_AK", "AKIDREF", 1);
    setenv("TEST_SK", "refsecret", 1);
    cfg = load("backends:\n  - { name: aws, type: bedrock, region: us-east-1,\n"
               "      aws_access_key_id: env:TEST_AK, aws_secret_access_key: env:TEST_SK }\n",
               &e);
    assert_non_null(cfg);
    assert_int_equal(cfg->backends[0].aws_source, AWS_CREDS_CONFIG);
    assert_string_equal(cfg->backends[0].aws_access_key_id.value, "AKIDREF");
    config_free(cfg);
    expect_error("backends:\n  - { name: aws, type: bedrock, region: us-east-1,\n"
                 "      aws_access_key_id: env:TEST_AK }\n",
                 3, 26, "aws_access_key_id and aws_secret_access_key go together");
    expect_error("backends:\n  - { name: aws, type: bedrock, region: us-east-1,\n"
                 "      aws_access_key_id: AKIDLITERAL, aws_secret_access_key: env:TEST_SK }\n",
                 3, 26, "must be a secret reference");
    /* A profile that is not in the file: named with the file, no key shown. */
    expect_error("backends:\n  - { name: aws, type: bedrock, region: us-east-1, profile: nope }\n",
                 2, 5, "no AWS credentials");
    expect_error("backends:\n  - { name: aws, type: bedrock, region: \"us east\" }\n", 2, 41,
                 "is not an AWS region name");
    /* Without endpoint_url: the AWS SDKs' variables, the service's own first (DESIGN.md). */
    const char *bare = "backends:\n  - { name: aws, type: bedrock, region: eu-west-1 }\n";
    setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566/", 1);
    cfg = load(bare, &e);
    assert_non_null(cfg);
    assert_string_equal(cfg->backends[0].base_url, "http://127.0.0.1:4566");
    config_free(cfg);
    setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "https://vpce-1.bedrock-runtime.example", 1);
    cfg = load(bare, &e);
    assert_non_null(cfg);
    assert_string_equal(cfg->backends[0].base_url, "https://vpce-1.bedrock-runtime.example");
    config_free(cfg);
    setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "vpce-1.example", 1);
    expect_error(bare, 2, 5,
                 "AWS_ENDPOINT_URL_BEDROCK_RUNTIME / AWS_ENDPOINT_URL must be an "
                 "http(s) URL, not 'vpce-1.example'");
    unsetenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME");
    unsetenv("AWS_ENDPOINT_URL");
    unsetenv("TEST_AK");
    unsetenv("TEST_SK");
    unsetenv("AWS_SHARED_CREDENTIALS_FILE");
    unlink(path);
    rmdir(dir);
}

static void test_config_load_string_prices_catalogue_and_tco(void **state)
{
    (void)state;
    char dir[] = "/tmp/stratus-prices-XXXXXX", path[128], cfgpath[128];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/my-prices.yaml", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("date: 2026-02-02\nmodels:\n  cheap-model: { input: 0.5, output: 1.5 }\n", f);
    fclose(f);
    snprintf(cfgpath, sizeof cfgpath, "%s/stratus.yaml", dir);
    const char *yaml =
        "prices: my-prices.yaml\n"
        "backends:\n  - { name: up, type: openai, base_url: \"http://h\" }\n"
        "models:\n  - name: m\n    targets:\n"
        "      - { backend: up, model: cheap-model-2026 }\n"
        "      - { backend: up, model: mine, price: { input: 1, output: 2, cached_input: 0.1 } }\n"
        "      - { backend: up, model: mystery }\n";
    struct config_error e;
    struct config *cfg = config_load_string(yaml, strlen(yaml), cfgpath, &e);
    if (cfg == NULL) fail_msg("%s", e.msg);
    assert_string_equal(cfg->prices_path, path); /* relative to the config's directory */
    const struct target_conf *t = cfg->models[0].targets;
    assert_int_equal(t[0].price.source, PRICE_CATALOGUE);
    assert_true(t[0].price.set && t[0].price.input == 0.5 && t[0].price.output == 1.5);
    assert_int_equal(t[1].price.source, PRICE_CONFIG);
    assert_true(t[1].price.cached_input == 0.1);
    assert_false(t[2].price.set);
    assert_int_equal(t[2].price.source, PRICE_UNKNOWN);
    config_free(cfg);
    /* an explicit catalogue that is missing is an error at the key */
    const char *missing = "prices: nope.yaml\n";
    assert_null(config_load_string(missing, strlen(missing), cfgpath, &e));
    assert_int_equal(e.line, 1);
    assert_non_null(strstr(e.msg, "nope.yaml: cannot open the price catalogue"));
    unlink(path);
    rmdir(dir);
    /* without any file: the built-in catalogue */
    const char *plain_cfg =
        "backends:\n  - { name: up, type: openai, base_url: \"http://h\" }\n"
        "models:\n  - { name: m, targets: [ { backend: up, model: gpt-4o-mini } ] }\n";
    cfg = config_load_string(plain_cfg, strlen(plain_cfg), "/nonexistent/stratus.yaml", &e);
    assert_non_null(cfg);
    assert_string_equal(cfg->prices_path, "(built-in)");
    assert_int_equal(cfg->models[0].targets[0].price.source, PRICE_CATALOGUE);
    config_free(cfg);
#ifdef STRATUS_HAVE_ENGINE
    const char *tco =
        "backends:\n  - name: l\n    type: local\n    model_path: m.gguf\n"
        "    cost: { watts: 120, kwh_price: 0.15, hardware_price: 1500, lifetime_months: 36 }\n"
        "models:\n  - { name: m, targets: [ { backend: l, model: gpt-4o } ] }\n";
    cfg = config_load_string(tco, strlen(tco), "t.yaml", &e);
    if (cfg == NULL) fail_msg("%s", e.msg);
    assert_true(cfg->backends[0].tco.set);
    /* a local target is priced by its TCO, even if its name is in the catalogue */
    assert_int_equal(cfg->models[0].targets[0].price.source, PRICE_LOCAL_TCO);
    assert_false(cfg->models[0].targets[0].price.set);
    config_free(cfg);
    expect_error("backends:\n  - name: l\n    type: local\n    model_path: m.gguf\n"
                 "    cost: { watts: 120, kwh_price: 0.15, hardware_price: 1500 }\n",
                 5, 11, "cost: missing 'lifetime_months'");
    expect_error(
        "backends:\n  - name: l\n    type: local\n    model_path: m.gguf\n"
        "    cost: { watts: 120, kwh_price: 0.15, hardware_price: 1500, lifetime_months: 0 }\n",
        5, 81, "cost.lifetime_months must be a positive number");
#endif
}

static void test_config_load_string_route_policies_retry_and_cooldown(void **state)
{
    (void)state;
    const char *policies[] = {"priority", "weighted", "latency", "least-busy", "cost"};
    for (int i = 0; i < 5; i++) {
        char yaml[256];
        struct config_error e;
        snprintf(yaml, sizeof yaml,
                 UP "models:\n  - { name: m, route: %s, targets: [ { backend: up } ] }\n",
                 policies[i]);
        struct config *cfg = load(yaml, &e);
        assert_non_null(cfg);
        assert_int_equal(cfg->models[0].route, i);
        assert_string_equal(route_policy_name(cfg->models[0].route), policies[i]);
        /* defaults */
        assert_int_equal(cfg->models[0].retry.retries, 1);
        assert_int_equal(cfg->models[0].cooldown.failures, 3);
        config_free(cfg);
    }
    struct config_error e;
    struct config *cfg =
        load(UP "models:\n  - name: m\n    route: latency\n    latency_decay_ms: 500\n"
                "    retry: { retries: 3, backoff_ms: 10, max_backoff_ms: 50 }\n"
                "    cooldown: { failures: 2, window_ms: 1000, duration_ms: 200 }\n"
                "    targets: [ { backend: up } ]\n",
             &e);
    assert_non_null(cfg);
    assert_int_equal(cfg->models[0].retry.retries, 3);
    assert_int_equal(cfg->models[0].retry.backoff_ms, 10);
    assert_int_equal(cfg->models[0].retry.max_backoff_ms, 50);
    assert_int_equal(cfg->models[0].cooldown.failures, 2);
    assert_int_equal(cfg->models[0].cooldown.duration_ms, 200);
    assert_int_equal(cfg->models[0].cooldown.max_duration_ms, 300000);
    assert_int_equal(cfg->models[0].latency_decay_ms, 500);
    config_free(cfg);
    expect_exact(UP "models:\n  - { name: m, route: random, targets: [ { backend: up } ] }\n", 4,
                 23,
                 "unknown route policy 'random' (supported: priority, weighted, latency, "
                 "least-busy, cost, margin)");
    expect_exact(UP
                 "models:\n  - { name: m, retry: { retries: 11 }, targets: [ { backend: up } ] }\n",
                 4, 34, "retries must be a non-negative integer (at most 10)");
    expect_exact(
        UP "models:\n  - { name: m, cooldown: { failure: 1 }, targets: [ { backend: up } ] }\n", 4,
        28, "unknown key 'failure' in cooldown (did you mean 'failures'?)");
}

/* A master key no client could present (clients' keys are trimmed of spaces and tabs) is a
 * config error naming the reference, never the value. */
static void test_config_load_string_refuses_blank_master_key(void **state)
{
    (void)state;
    const char *yaml = "auth:\n  master_key: env:CFG_TEST_MASTER\n";
    setenv("CFG_TEST_MASTER", "                    ", 1);
    expect_exact(yaml, 2, 15, "master_key (env:CFG_TEST_MASTER) resolves to only whitespace");
    setenv("CFG_TEST_MASTER", "sk-0123456789abcdef ", 1);
    expect_error(yaml, 2, 15, "master_key (env:CFG_TEST_MASTER) starts or ends with a space");
    setenv("CFG_TEST_MASTER", " sk-0123456789abcdef", 1);
    expect_error(yaml, 2, 15, "starts or ends with a space");
    setenv("CFG_TEST_MASTER", "sk-0123456789\tabcdef", 1);
    expect_error(yaml, 2, 15, "control characters");
    char path[64];
    write_temp(path, "   \n", 4);
    char file_yaml[128];
    snprintf(file_yaml, sizeof file_yaml, "auth:\n  master_key: file:%s\n", path);
    struct config_error e;
    assert_null(load(file_yaml, &e));
    if (strstr(e.msg, "resolves to only whitespace") == NULL) fail_msg("%s", e.msg);
    unlink(path);
    setenv("CFG_TEST_MASTER", "sk-0123 456789abcdef", 1); /* inner spaces are fine */
    struct config *cfg = load(yaml, &e);
    assert_non_null(cfg);
    config_free(cfg);
    unsetenv("CFG_TEST_MASTER");
}

static void test_config_load_string_refuses_later_sections(void **state)
{
    (void)state;
    expect_exact("privacy:\n  mode: strict\n", 1, 1, "'privacy' is not supported by this build");
    /* A present-but-empty auth block must not be mistaken for "no auth". */
    expect_exact("auth:\n", 1, 6, "auth must be a mapping with master_key: env:NAME or file:PATH");
}

static void test_config_observability(void **state)
{
    (void)state;
    struct config_error e;
    struct config *c = load("", &e); /* off by default */
    assert_non_null(c);
    assert_null(c->observability.otlp_endpoint);
    assert_int_equal(c->observability.queue_size, 2048);
    assert_int_equal(c->observability.batch_size, 256);
    assert_int_equal(c->observability.flush_ms, 1000);
    assert_true(c->observability.sample == 1.0);
    config_free(c);
    setenv("CFG_TEST_OTLP", "Bearer t0ken", 1);
    c = load("observability:\n"
             "  otlp_endpoint: http://127.0.0.1:4318/v1/traces\n"
             "  service_name: gw\n"
             "  headers: { authorization: env:CFG_TEST_OTLP, x-tenant: acme }\n"
             "  queue_size: 10\n  batch_size: 5\n  flush_ms: 50\n  sample: 0.25\n",
             &e);
    assert_non_null(c);
    const struct observability_conf *o = &c->observability;
    assert_string_equal(o->otlp_endpoint, "http://127.0.0.1:4318/v1/traces");
    assert_string_equal(o->service_name, "gw");
    assert_int_equal(o->n_headers, 2);
    assert_string_equal(o->headers[0].name, "authorization");
    assert_string_equal(o->headers[0].value.value, "Bearer t0ken");
    assert_string_equal(o->headers[0].value.ref, "env:CFG_TEST_OTLP");
    assert_string_equal(o->headers[1].value.value, "acme");
    assert_null(o->headers[1].value.ref);
    assert_int_equal(o->queue_size, 10);
    assert_true(o->sample == 0.25);
    config_free(c);
    unsetenv("CFG_TEST_OTLP");
    expect_error("observability:\n  service_name: x\n", 2, 3,
                 "missing required key 'otlp_endpoint'");
    expect_error("observability:\n  otlp_endpoint: localhost:4318\n", 2, 18,
                 "otlp_endpoint must start with http:// or https://");
    expect_error("observability:\n  otlp_endpoint: http://c\n  sample: 1.5\n", 3, 11,
                 "observability.sample must be a number from 0 to 1");
    expect_error("observability:\n  otlp_endpoint: http://c\n  queue_size: 0\n", 3, 15,
                 "queue_size must be a positive integer");
    expect_error("observability:\n  otlp_endpoint: http://c\n  headers: { \"a b\": x }\n", 3, 14,
                 "is not an HTTP header name");
    expect_error("observability:\n  otlp_endpoint: http://c\n  headers: { k: env:CFG_NOPE_X }\n", 3,
                 17, "CFG_NOPE_X");
    expect_error("observability:\n  otlp_endpint: http://c\n", 2, 3,
                 "did you mean 'otlp_endpoint'");
}

static void test_config_load_string_checks_base_url(void **state)
{
    (void)state;
    const char *msg = "base_url must start with http:// or https:// and name a host";
    expect_exact("backends:\n  - { name: a, type: openai, base_url: \"ftp://x\" }\n", 2, 40, msg);
    expect_exact("backends:\n  - { name: a, type: openai, base_url: \"http://\" }\n", 2, 40, msg);
    expect_exact("backends:\n  - { name: a, type: openai, base_url: 127.0.0.1:9001 }\n", 2, 40,
                 msg);
    expect_exact("backends:\n  - { name: a, type: openai, base_url: \"http://a b\" }\n", 2, 40,
                 msg);
    struct config_error e;
    struct config *c =
        load("backends:\n  - { name: a, type: openai, base_url: \"https://h/v1//\" }\n", &e);
    assert_non_null(c);
    assert_string_equal(c->backends[0].base_url, "https://h/v1/"); /* only one '/' stripped */
    config_free(c);
}

static void test_config_load_string_rejects_control_characters(void **state)
{
    (void)state;
    expect_exact(
        "backends:\n  - { name: \"a\\r\\nX-Evil: 1\", type: openai, base_url: \"http://h\" }\n", 2,
        13, "name must not contain control characters");
    expect_exact(UP
                 "models:\n  - { name: m, targets: [ { backend: up, model: \"x\\u0000y\" } ] }\n",
                 4, 49, "model must not contain control characters");
}

static void test_config_load_string_resolves_env_secret(void **state)
{
    (void)state;
    setenv("CFG_TEST_ENV_KEY", "sk-env-value", 1);
    struct config_error e;
    struct config *c = load("backends:\n  - { name: a, type: openai, base_url: \"http://x\", "
                            "api_key: env:CFG_TEST_ENV_KEY }\n",
                            &e);
    if (c == NULL) fail_msg("%s", e.msg);
    assert_string_equal(c->backends[0].api_key.ref, "env:CFG_TEST_ENV_KEY");
    assert_string_equal(c->backends[0].api_key.value, "sk-env-value");
    config_free(c);
    unsetenv("CFG_TEST_ENV_KEY");
}

static void test_config_load_string_rejects_missing_env_secret(void **state)
{
    (void)state;
    const char *yaml = "backends:\n  - { name: up, type: openai, base_url: \"http://x\", "
                       "api_key: env:CFG_TEST_MISSING }\n";
    const char *msg = "api_key of backend 'up': environment variable CFG_TEST_MISSING is not set";
    unsetenv("CFG_TEST_MISSING");
    expect_exact(yaml, 2, 62, msg);
    setenv("CFG_TEST_MISSING", "", 1); /* empty counts as unset */
    expect_exact(yaml, 2, 62, msg);
    setenv("CFG_TEST_MISSING", "sk-bad\nX-Injected: 1", 1);
    expect_exact(yaml, 2, 62,
                 "api_key of backend 'up': env:CFG_TEST_MISSING holds more than one line (a key "
                 "or token is one line)");
    unsetenv("CFG_TEST_MISSING");
    expect_exact("backends:\n  - { name: up, type: openai, base_url: \"http://x\", api_key: "
                 "\"env:\" }\n",
                 2, 62, "api_key of backend 'up': env: needs a variable name");
}

static void test_config_load_string_rejects_literal_key(void **state)
{
    (void)state;
    const char *msg = "api_key must be a secret reference (env:NAME, file:PATH, aws-sm:ID[#FIELD], "
                      "ssm:NAME or vault:MOUNT/PATH#FIELD), not a literal key";
    expect_exact("backends:\n  - { name: a, type: openai, base_url: \"http://x\", "
                 "api_key: sk-LEAKME }\n",
                 2, 61, msg);
    expect_exact("backends:\n  - { name: a, type: openai, base_url: \"http://x\", "
                 "api_key: \"ENV:LEAKME\" }\n",
                 2, 61, msg);
    expect_exact("backends:\n  - { name: a, type: openai, base_url: \"http://x\", "
                 "api_key: [LEAKME] }\n",
                 2, 61, msg);
    struct config_error e;
    char buf[1024];
    assert_null(load("backends:\n  - { name: a, type: openai, base_url: \"http://x\", "
                     "api_key: sk-LEAKME }\n",
                     &e));
    assert_null(strstr(config_error_format(&e, buf, sizeof buf), "LEAKME"));
}

static void test_config_load_string_resolves_file_secret(void **state)
{
    (void)state;
    const char *contents[] = {"sk-from-file\r\n", "sk-from-file\n\n", "sk-from-file"};
    for (size_t i = 0; i < 3; i++) {
        char path[64], yaml[512];
        write_temp(path, contents[i], strlen(contents[i]));
        snprintf(yaml, sizeof yaml,
                 "backends:\n  - { name: a, type: openai, base_url: \"http://x\", "
                 "api_key: \"file:%s\" }\n",
                 path);
        struct config_error e;
        struct config *c = load(yaml, &e);
        if (c == NULL) fail_msg("%s", e.msg);
        char ref[80];
        snprintf(ref, sizeof ref, "file:%s", path);
        assert_string_equal(c->backends[0].api_key.ref, ref);
        assert_string_equal(c->backends[0].api_key.value, "sk-from-file");
        config_free(c);
        unlink(path);
    }
}

static void test_config_load_string_rejects_bad_secret_file(void **state)
{
    (void)state;
    char path[64], yaml[512], msg[256];
    struct config_error e;
    /* Unreadable (missing): the message names the path and the reason. */
    write_temp(path, "x", 1);
    unlink(path);
    snprintf(yaml, sizeof yaml,
             "backends:\n  - { name: a, type: openai, base_url: \"http://x\", "
             "api_key: \"file:%s\" }\n",
             path);
    snprintf(msg, sizeof msg, "api_key of backend 'a': cannot read %s: %s", path, strerror(ENOENT));
    expect_exact(yaml, 2, 61, msg);

    /* A directory opens but cannot be read. */
    expect_exact("backends:\n  - { name: a, type: openai, base_url: \"http://x\", "
                 "api_key: \"file:/tmp\" }\n",
                 2, 61, "api_key of backend 'a': cannot read /tmp: Is a directory");

    /* Empty once the newline is stripped. */
    write_temp(path, "\r\n", 2);
    snprintf(yaml, sizeof yaml,
             "backends:\n  - { name: a, type: openai, base_url: \"http://x\", "
             "api_key: \"file:%s\" }\n",
             path);
    snprintf(msg, sizeof msg, "api_key of backend 'a': %s is empty", path);
    expect_exact(yaml, 2, 61, msg);
    unlink(path);

    /* Two lines would inject a header; the value must not appear in the message. */
    write_temp(path, "sk-SECRET1\nsk-SECRET2\n", 22);
    snprintf(yaml, sizeof yaml,
             "backends:\n  - { name: a, type: openai, base_url: \"http://x\", "
             "api_key: \"file:%s\" }\n",
             path);
    snprintf(msg, sizeof msg,
             "api_key of backend 'a': file:%s holds more than one line (a key or token is one "
             "line)",
             path);
    expect_exact(yaml, 2, 61, msg);
    assert_null(load(yaml, &e));
    assert_null(strstr(e.msg, "SECRET"));
    unlink(path);

    /* Too large to be a key. */
    static char big[9000];
    memset(big, 'k', sizeof big);
    write_temp(path, big, sizeof big);
    snprintf(yaml, sizeof yaml,
             "backends:\n  - { name: a, type: openai, base_url: \"http://x\", "
             "api_key: \"file:%s\" }\n",
             path);
    snprintf(msg, sizeof msg, "api_key of backend 'a': file:%s is larger than 8192 bytes", path);
    expect_exact(yaml, 2, 61, msg);
    unlink(path);
}

static void test_config_load_string_reports_yaml_syntax_errors(void **state)
{
    (void)state;
    expect_exact("backends:\n  - name: [unclosed\n", 3, 1,
                 "YAML syntax error: did not find expected ',' or ']' while parsing a flow "
                 "sequence");
    expect_exact("listen: a:1\n  bad: indent\n", 2, 6,
                 "YAML syntax error: mapping values are not allowed in this context");
    expect_exact("models: *nowhere\n", 1, 9, "YAML syntax error: found undefined alias");
    expect_exact("listen: a:1\nlog: \"\xff\"\n", 2, 7,
                 "YAML syntax error: invalid leading UTF-8 octet");
}

static void test_config_load_string_rejects_second_document(void **state)
{
    (void)state;
    expect_exact("listen: a:1\n---\nlisten: b:2\n", 2, 1, "only one YAML document is allowed");
    expect_error("listen: a:1\n---\n[\n", 4, 1, "YAML syntax error");
    struct config_error e;
    struct config *c = load("listen: a:1\n...\n", &e); /* an explicit end is fine */
    assert_non_null(c);
    config_free(c);
}

static void test_config_load_string_uses_length_not_nul(void **state)
{
    (void)state;
    const char yaml[] = "listen: a:1\nlisten: b:2\n";
    struct config_error e;
    struct config *c = config_load_string(yaml, 12, "n.yaml", &e); /* first line only */
    assert_non_null(c);
    assert_string_equal(c->listen_host, "a");
    config_free(c);
}

static void test_config_load_reads_file(void **state)
{
    (void)state;
    char path[64];
    const char *yaml = "listen: 127.0.0.1:0\n" UP "models: [ { name: m, targets: [ { backend: "
                       "up } ] } ]\n";
    write_temp(path, yaml, strlen(yaml));
    struct config_error e;
    struct config *c = config_load(path, &e);
    if (c == NULL) fail_msg("%s", e.msg);
    assert_string_equal(c->path, path);
    assert_int_equal(c->listen_port, 0);
    assert_int_equal(c->n_backends, 1);
    assert_int_equal(c->models[0].targets[0].backend_index, 0);
    config_free(c);
    unlink(path);
}

static void test_config_load_reports_path_and_position(void **state)
{
    (void)state;
    char path[64], want[256], buf[1024];
    const char *yaml = "listen: 127.0.0.1:0\nbackends:\n  - name: up\n    type: openai\n"
                       "    base_ulr: http://x/v1\n";
    write_temp(path, yaml, strlen(yaml));
    struct config_error e;
    assert_null(config_load(path, &e));
    assert_string_equal(e.file, path);
    snprintf(want, sizeof want,
             "%s:5:5: unknown key 'base_ulr' in backends[0] (did you mean 'base_url'?)", path);
    assert_string_equal(config_error_format(&e, buf, sizeof buf), want);
    unlink(path);
}

static void test_config_load_missing_file(void **state)
{
    (void)state;
    struct config_error e;
    char buf[600];
    assert_null(config_load("/nonexistent/stratus.yaml", &e));
    assert_string_equal(e.file, "/nonexistent/stratus.yaml");
    assert_int_equal(e.line, 0);
    assert_int_equal(e.col, 0);
    assert_string_equal(e.msg, "cannot open: No such file or directory");
    assert_string_equal(config_error_format(&e, buf, sizeof buf),
                        "/nonexistent/stratus.yaml: cannot open: No such file or directory");
}

static void test_config_load_directory(void **state)
{
    (void)state;
    struct config_error e;
    assert_null(config_load("/tmp", &e));
    assert_int_equal(e.line, 0);
    assert_string_equal(e.msg, "cannot read: Is a directory");
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

static void test_config_error_format_without_position(void **state)
{
    (void)state;
    struct config_error e = {.line = 0};
    char buf[600], small[8];
    snprintf(e.file, sizeof e.file, "a.yaml");
    snprintf(e.msg, sizeof e.msg, "cannot open: denied");
    assert_string_equal(config_error_format(&e, buf, sizeof buf), "a.yaml: cannot open: denied");
    assert_string_equal(config_error_format(&e, small, sizeof small), "a.yaml:"); /* truncated */
}

static void test_config_parse_listen_accepts_forms(void **state)
{
    (void)state;
    struct {
        const char *in, *host;
        int port;
    } ok[] = {
        {"127.0.0.1:8080", "127.0.0.1", 8080},
        {"[::1]:8080", "::1", 8080},
        {"localhost:0", "localhost", 0},
        {"0.0.0.0:65535", "0.0.0.0", 65535},
        {"[fe80::1%eth0]:443", "fe80::1%eth0", 443},
    };
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        char *host = NULL;
        int port = -1;
        const char *why = NULL;
        if (config_parse_listen(ok[i].in, &host, &port, &why) != 0)
            fail_msg("'%s': %s", ok[i].in, why);
        assert_string_equal(host, ok[i].host);
        assert_int_equal(port, ok[i].port);
        free(host);
    }
}

static void test_config_parse_listen_rejects_bad_input(void **state)
{
    (void)state;
    struct {
        const char *in, *why;
    } bad[] = {
        {"", "expected HOST:PORT"},
        {"localhost", "expected HOST:PORT"},
        {"localhost:", "port must be a number from 0 to 65535"},
        {":80", "expected HOST:PORT (the host is empty)"},
        {"[]:80", "expected HOST:PORT (the host is empty)"},
        {"[::1]80", "expected [IPv6]:PORT"},
        {"[::1", "expected [IPv6]:PORT"},
        {"::1:80", "an IPv6 address needs brackets, as in [::1]:8080"},
        {"h:70000", "port must be a number from 0 to 65535"},
        {"h:-1", "port must be a number from 0 to 65535"},
        {"h:+80", "port must be a number from 0 to 65535"},
        {"h: 80", "port must be a number from 0 to 65535"},
        {"h:80x", "port must be a number from 0 to 65535"},
        {"h:0000080", "port must be a number from 0 to 65535"},
        {"a]b:80", "the host has invalid characters"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char *host = (char *)"untouched";
        int port = -7;
        const char *why = NULL;
        if (config_parse_listen(bad[i].in, &host, &port, &why) != -1)
            fail_msg("'%s' was accepted", bad[i].in);
        assert_non_null(why);
        if (strcmp(why, bad[i].why) != 0) fail_msg("'%s': '%s'", bad[i].in, why);
        assert_string_equal(host, "untouched"); /* outputs untouched on failure */
        assert_int_equal(port, -7);
    }
    char *host = NULL;
    int port = 0;
    assert_int_equal(config_parse_listen(NULL, &host, &port, NULL), -1); /* why may be NULL */
}

static void test_config_find_model_by_name(void **state)
{
    (void)state;
    struct config_error e;
    struct config *c = load(UP "models:\n  - { name: a, targets: [ { backend: up } ] }\n"
                               "  - { name: b, targets: [ { backend: up } ] }\n",
                            &e);
    assert_non_null(c);
    assert_ptr_equal(config_find_model(c, "b"), &c->models[1]);
    assert_ptr_equal(config_find_model(c, "a"), &c->models[0]);
    assert_null(config_find_model(c, "B"));
    assert_null(config_find_model(c, NULL));
    assert_null(config_find_model(NULL, "a"));
    config_free(c);
}

static void test_config_free_accepts_null(void **state)
{
    (void)state;
    config_free(NULL);
}

static void test_config_functions(void **state)
{
    (void)state;
    struct config_error e;
    const char *yaml = UP "models:\n  - { name: m, targets: [ { backend: up } ] }\n"
                          "functions:\n"
                          "  - name: rater\n"
                          "    model: m\n"
                          "    kind: classify\n"
                          "    labels: [phishing, legitimate]\n"
                          "    system: \"You rate emails.\"\n"
                          "    template: \"From: {{from}}\\n\\n{{ body }}\"\n"
                          "  - name: extract\n"
                          "    model: m\n"
                          "    kind: json\n"
                          "    schema: { type: object, properties: { n: { type: integer, "
                          "minimum: 1 }, s: { type: string, enum: [\"1\", x] } } }\n"
                          "    template: \"{{text}}\"\n"
                          "    max_tokens: 64\n";
    struct config *c = load(yaml, &e);
    if (c == NULL) fail_msg("%d:%d %s", e.line, e.col, e.msg);
    assert_int_equal(c->n_functions, 2);
    const struct function_conf *f = config_find_function(c, "rater");
    assert_non_null(f);
    assert_int_equal(f->kind, FUNCTION_CLASSIFY);
    assert_int_equal(f->n_labels, 2);
    assert_string_equal(f->labels[1], "legitimate");
    assert_string_equal(f->template, "From: {{from}}\n\n{{ body }}");
    assert_string_equal(f->system, "You rate emails.");
    assert_int_equal(f->max_tokens, 512);
    f = config_find_function(c, "extract");
    assert_int_equal(f->kind, FUNCTION_JSON);
    assert_int_equal(f->max_tokens, 64);
    /* YAML typing carries over: plain numbers are numbers, quoted ones strings. */
    assert_string_equal(f->schema, "{\"type\":\"object\",\"properties\":{\"n\":{\"type\":"
                                   "\"integer\",\"minimum\":1},\"s\":{\"type\":\"string\","
                                   "\"enum\":[\"1\",\"x\"]}}}");
    assert_null(config_find_function(c, "m"));
    config_free(c);

#define FN_BASE UP "models:\n  - { name: m, targets: [ { backend: up } ] }\nfunctions:\n"
    expect_error(FN_BASE "  - { name: f, model: m, kind: classify, labels: [a, b, A], "
                         "template: x }\n",
                 6, 57, "label 'A' is listed twice");
    expect_error(FN_BASE "  - { name: f, model: m, kind: classify, labels: [], template: x }\n", 6,
                 50, "labels must be a non-empty list");
    expect_error(FN_BASE "  - { name: f, model: m, kind: classify, template: x }\n", 6, 5,
                 "kind classify needs 'labels'");
    expect_error(FN_BASE "  - { name: f, model: m, kind: text, labels: [a], template: x }\n", 6, 46,
                 "labels are for kind classify");
    expect_error(FN_BASE "  - { name: f, model: m, kind: text, template: \"a {{b\" }\n", 6, 48,
                 "is never closed");
    expect_error(FN_BASE "  - { name: f, model: m, kind: text, template: \"{{ }}\" }\n", 6, 48,
                 "empty placeholder");
    expect_error(FN_BASE "  - { name: f, model: zz, kind: text, template: x }\n", 6, 23,
                 "model 'zz' is not a model group");
    expect_error(FN_BASE "  - { name: f, model: m, kind: text }\n", 6, 5,
                 "missing required key 'template'");
    expect_error(FN_BASE "  - { name: f, model: m, kind: text, template: x }\n"
                         "  - { name: f, model: m, kind: text, template: y }\n",
                 7, 13, "duplicate function name 'f'");
    expect_error(FN_BASE "  - { name: f, model: m, kind: text, template: x, labelz: [a] }\n", 6, 51,
                 "unknown key 'labelz'");
#undef FN_BASE
}

static void test_config_listen_and_tls(void **state)
{
    (void)state;
    struct config_error e;
    /* A plain string keeps working: one plain listener. */
    struct config *c = load("listen: 0.0.0.0:9000\n", &e);
    assert_non_null(c);
    assert_int_equal(c->n_listeners, 1);
    assert_string_equal(c->listeners[0].host, "0.0.0.0");
    assert_int_equal(c->listeners[0].port, 9000);
    assert_false(c->listeners[0].tls);
    assert_null(c->tls.cert);
    config_free(c);
    /* No listen: the default listener. */
    c = load("log: { requests: false }\n", &e);
    assert_non_null(c);
    assert_int_equal(c->n_listeners, 1);
    assert_string_equal(c->listeners[0].host, "127.0.0.1");
    assert_int_equal(c->listeners[0].port, 8080);
    config_free(c);
    /* With tls:, every listener speaks TLS unless it says tls: false. */
    c = load("tls: { cert: env:HOME, key: \"file:/dev/null\" }\n"
             "listen: [ { address: \"127.0.0.1:8080\", tls: false }, \"[::]:8443\" ]\n",
             &e);
    if (c == NULL) fail_msg("%s", e.msg);
    assert_string_equal(c->tls.cert, "env:HOME");
    assert_string_equal(c->tls.key, "file:/dev/null");
    assert_int_equal(c->n_listeners, 2);
    assert_false(c->listeners[0].tls);
    assert_true(c->listeners[1].tls);
    assert_string_equal(c->listeners[1].host, "::");
    assert_int_equal(c->listeners[1].port, 8443);
    assert_string_equal(c->listen_host, "127.0.0.1");
    assert_int_equal(c->listen_port, 8080);
    config_free(c);
    /* tls: with the default listener, and with a single string. */
    c = load("tls: { cert: env:HOME, key: env:HOME }\n", &e);
    assert_non_null(c);
    assert_true(c->listeners[0].tls);
    config_free(c);
    c = load("tls: { cert: env:HOME, key: env:HOME }\nlisten: 127.0.0.1:1\n", &e);
    assert_non_null(c);
    assert_true(c->listeners[0].tls);
    config_free(c);

    expect_exact("listen: [ { address: \"1.2.3.4:5\", tls: true } ]\n", 1, 40,
                 "listen: tls: true needs a tls: section with cert and key");
    expect_exact("listen: [ { adress: \"1.2.3.4:5\" } ]\n", 1, 13,
                 "unknown key 'adress' in a listen entry (did you mean 'address'?)");
    expect_exact("listen: [ { tls: false } ]\n", 1, 11,
                 "a listen entry needs 'address' (HOST:PORT)");
    expect_exact("listen: []\n", 1, 9, "listen: the list is empty");
    expect_exact("tls: { cert: env:HOME, key: env:HOME }\n"
                 "listen: [ { address: \"1.2.3.4:5\", tls: false } ]\n",
                 1, 6, "tls: no listener uses it (every listen entry says tls: false)");
    expect_exact("tls: { cert: env:HOME }\n", 1, 6,
                 "tls needs both 'cert' and 'key' (file:PATH or env:NAME)");
    expect_exact(
        "tls: { cert: /etc/cert.pem, key: env:HOME }\n", 1, 14,
        "tls.cert must be a reference (file:PATH, env:NAME, aws-sm:, ssm: or vault:) to PEM text");
    expect_exact("tls: { cert: env:HOME, key: \"file:/nonexistent/k.pem\" }\n", 1, 29,
                 "tls.key: cannot read /nonexistent/k.pem: No such file or directory");
    expect_exact("tls: { cert: env:STRATUS_NO_SUCH_VAR, key: env:HOME }\n", 1, 14,
                 "tls.cert: environment variable STRATUS_NO_SUCH_VAR is not set");
}

/* Reload bookkeeping: which sections changed, by what they say rather than how. */
static void test_config_sections_changed_for_reload(void **state)
{
    (void)state;
    struct config_error e;
    const char *base = "listen: 127.0.0.1:8080\n"
                       "limits: { max_body_bytes: 1000 }\n"
                       "backends:\n  - { name: up, type: openai, base_url: \"http://h/v1\" }\n"
                       "models:\n  - { name: m, targets: [ { backend: up } ] }\n";
    /* The same settings in block style, with comments: nothing changed. */
    const char *same = "# a comment\nlisten: \"127.0.0.1:8080\"\n"
                       "limits:\n  max_body_bytes: 1000\n"
                       "backends:\n  - name: up\n    type: openai\n    base_url: http://h/v1\n"
                       "models:\n  - name: m\n    targets:\n      - backend: up\n";
    const char *other = "listen: 127.0.0.1:9090\n"
                        "limits: { max_body_bytes: 1000 }\n"
                        "backends:\n  - { name: up, type: openai, base_url: \"http://h/v1\" }\n"
                        "models:\n  - { name: m2, targets: [ { backend: up } ] }\n"
                        "access: { allow: [10.0.0.0/8] }\n";
    struct config *a = load(base, &e), *b = load(same, &e), *c = load(other, &e);
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    char buf[200];
    assert_string_equal(config_restart_sections(a, b, buf, sizeof buf), "");
    assert_string_equal(config_reloaded_sections(a, b, buf, sizeof buf), "");
    assert_string_equal(config_restart_sections(a, c, buf, sizeof buf), "listen");
    assert_string_equal(config_reloaded_sections(a, c, buf, sizeof buf), "access, models");
    /* The start-only values that request code reads come from the running config. */
    c->limits.max_body_bytes = 5;
    c->shutdown_grace_ms = 1;
    config_keep_running(c, a);
    assert_int_equal(c->limits.max_body_bytes, 1000);
    assert_int_equal(c->shutdown_grace_ms, a->shutdown_grace_ms);
    config_free(a);
    config_free(b);
    config_free(c);
}

/* store.retention: defaults, fractions of a day, 0 keeps both, and what it refuses. */
static void test_config_store_retention(void **state)
{
    (void)state;
    struct config_error e;
    const char *m = "models:\n  - { name: a, targets: [ { backend: up } ] }\n";
    char y[512];
    struct config *c = load(UP "models:\n  - { name: a, targets: [ { backend: up } ] }\n", &e);
    assert_non_null(c);
    assert_true(c->store.rows_days == 30 && c->store.rollups_days == 800);
    assert_int_equal(c->store.retention_every_s, 3600);
    config_free(c);
    snprintf(y, sizeof y,
             "%sstore: { retention: { rows_days: 0.5, rollups_days: 2, every_s: 5 } }\n%s", UP, m);
    assert_non_null(c = load(y, &e));
    assert_true(c->store.rows_days == 0.5 && c->store.rollups_days == 2);
    assert_int_equal(c->store.retention_every_s, 5);
    config_free(c);
    snprintf(y, sizeof y, "%sstore: { retention: { rows_days: 0 } }\n%s", UP, m);
    assert_non_null(c = load(y, &e));
    assert_true(c->store.rows_days == 0 && c->store.rollups_days == 0); /* rows kept: rollups too */
    config_free(c);
    expect_error("store: { retention: { rows_days: -1 } }\n", 1, 34,
                 "store.retention.rows_days must be a number of days >= 0");
    expect_error("store: { retention: { rollups_days: abc } }\n", 1, 37,
                 "store.retention.rollups_days must be a number of days >= 0");
    expect_error("store: { retention: { rows_days: 30, rollups_days: 7 } }\n", 1, 21,
                 "rollups_days (7) must be 0 (keep) or at least rows_days (30)");
    expect_error("store: { retention: { every_s: 0 } }\n", 1, 32, "every_s");
    expect_error("store: { retention: { keep: 1 } }\n", 1, 23, "keep");
}

/* Three groups the tiers below may name. */
#define TIER_MODELS                                                                                \
    UP "models:\n  - { name: local, targets: [ { backend: up } ] }\n"                              \
       "  - { name: cheap, targets: [ { backend: up } ] }\n"                                       \
       "  - { name: best, targets: [ { backend: up } ] }\n"

static void test_config_tiers(void **state)
{
    (void)state;
    struct config_error e;
    const char *yaml = TIER_MODELS "tiers:\n"
                                   "  - { name: free, price: { per_request: 0 }, route_to: local,"
                                   " default: true }\n"
                                   "  - name: standard\n"
                                   "    price: { input: 1.5, output: 4 }\n"
                                   "    models: [local, cheap]\n"
                                   "    min_margin: 0.3\n"
                                   "    max_cost_usd: 0.02\n"
                                   "  - { name: premium, price: { input: 5, output: 20, "
                                   "per_request: 0.001 }, route_to: best }\n";
    struct config *c = load(yaml, &e);
    if (c == NULL) fail_msg("%s at %d:%d", e.msg, e.line, e.col);
    assert_int_equal(c->n_tiers, 3);
    const struct tier_conf *f = config_find_tier(c, "free");
    assert_non_null(f);
    assert_true(f->is_default);
    assert_false(f->token_price_set);
    assert_true(f->price_per_request == 0);
    assert_string_equal(f->route_to, "local");
    assert_int_equal(f->n_models, 0);
    assert_true(tier_allows_model(f, "best")); /* no models: list → all */
    assert_false(f->min_margin_set);
    assert_ptr_equal(config_default_tier(c), f);
    const struct tier_conf *s = config_find_tier(c, "standard");
    assert_non_null(s);
    assert_int_equal(s->line, 9);
    assert_int_equal(s->col, 5);
    assert_true(s->token_price_set);
    assert_true(s->price_input == 1.5 && s->price_output == 4);
    assert_int_equal(s->n_models, 2);
    assert_true(tier_allows_model(s, "cheap"));
    assert_false(tier_allows_model(s, "best"));
    assert_false(tier_allows_model(s, NULL));
    assert_true(s->min_margin_set && s->min_margin == 0.3);
    assert_true(s->max_cost_usd == 0.02);
    assert_null(s->route_to);
    assert_false(s->is_default);
    const struct tier_conf *pr = config_find_tier(c, "premium");
    assert_true(pr->price_per_request == 0.001 && pr->price_output == 20);
    assert_null(config_find_tier(c, "gold"));
    assert_null(config_find_tier(c, ""));
    assert_null(config_find_tier(c, NULL));
    assert_true(tier_allows_model(NULL, "anything")); /* no tier: today's behaviour */
    config_free(c);

    /* Without the section: no tiers, no default. */
    c = load(TIER_MODELS, &e);
    assert_non_null(c);
    assert_int_equal(c->n_tiers, 0);
    assert_null(config_default_tier(c));
    config_free(c);
}

static void test_config_tier_rate_and_budget_defaults(void **state)
{
    (void)state;
    struct config_error e;
    struct config *c =
        load(TIER_MODELS "tiers:\n"
                         "  - { name: a, price: { per_request: 0 }, rpm: 60, tpm: 9000,\n"
                         "      budget: { limit_usd: 5, period: daily, soft: 0.5,\n"
                         "                on_exhausted: local_only } }\n"
                         "  - { name: b, price: { per_request: 0 } }\n",
             &e);
    if (c == NULL) fail_msg("%s at %d:%d", e.msg, e.line, e.col);
    const struct tier_conf *a = config_find_tier(c, "a"), *b = config_find_tier(c, "b");
    assert_int_equal(a->rpm, 60);
    assert_int_equal(a->tpm, 9000);
    assert_true(a->budget.limit_usd == 5);
    assert_int_equal(a->budget.period, BUDGET_DAILY);
    assert_true(a->budget.soft == 0.5);
    assert_int_equal(a->budget.on_exhausted, BUDGET_LOCAL_ONLY);
    assert_int_equal(a->budget.scope, BUDGET_SCOPE_CUSTOMER);
    assert_int_equal(b->rpm, 0);
    assert_true(b->budget.limit_usd == 0);
    config_free(c);
    expect_error(TIER_MODELS "tiers:\n  - { name: a, price: { per_request: 0 }, rpm: 0 }\n", 8, 48,
                 "rpm");
    expect_error(TIER_MODELS "tiers:\n  - { name: a, price: { per_request: 0 }, budget: {} }\n", 8,
                 51, "tier 'a' budget: missing required key 'limit_usd'");
    expect_error(TIER_MODELS
                 "tiers:\n  - { name: a, price: { per_request: 0 }, budget: { limit_usd: 0 } }\n",
                 8, 64, "budget.limit_usd must be a number above 0");
    expect_error(TIER_MODELS "tiers:\n  - { name: a, price: { per_request: 0 }, budget: { "
                             "limit_usd: 1, period: weekly } }\n",
                 8, 75, "period must be daily or monthly");
}

static void test_config_tiers_rejects_bad_entries(void **state)
{
    (void)state;
    /* TIER_MODELS is 6 lines: `tiers:` is line 7, its entries start on line 8. */
    expect_error(TIER_MODELS "tiers: { name: x }\n", 7, 8, "tiers must be a list");
    expect_error(TIER_MODELS "tiers:\n  - { price: { per_request: 0 } }\n", 8, 5,
                 "missing required key 'name'");
    expect_error(TIER_MODELS "tiers:\n  - { name: free, price: { per_request: 0 }, colour: red }\n",
                 8, 46, "unknown key 'colour' in tiers[0]");
    expect_error(TIER_MODELS "tiers:\n  - { name: free, price: { per_request: 0 }, modles: [a] }\n",
                 8, 46, "did you mean 'models'?");
    expect_error(TIER_MODELS "tiers:\n  - { name: 'a b', price: { per_request: 0 } }\n", 8, 13,
                 "tier name 'a b' must be 1-64 letters");
    expect_exact(TIER_MODELS "tiers:\n  - { name: a, price: { per_request: 0 } }\n"
                             "  - { name: a, price: { per_request: 1 } }\n",
                 9, 13, "duplicate tier name 'a'");
    expect_exact(TIER_MODELS "tiers:\n  - { name: a }\n", 8, 5,
                 "tier 'a': missing required key 'price'");
    expect_error(TIER_MODELS "tiers:\n  - { name: a, price: { input: 1 } }\n", 8, 23,
                 "needs both 'input' and 'output'");
    expect_error(TIER_MODELS "tiers:\n  - { name: a, price: {} }\n", 8, 23,
                 "needs 'input' and 'output' (USD per 1M tokens) or 'per_request'");
    expect_error(TIER_MODELS "tiers:\n  - { name: a, price: { input: -1, output: 1 } }\n", 8, 32,
                 "price.input (USD per 1M tokens) must be a number");
    expect_error(TIER_MODELS "tiers:\n  - { name: a, price: { per_request: cheap } }\n", 8, 38,
                 "price.per_request (USD) must be a number");
    expect_error(TIER_MODELS
                 "tiers:\n  - { name: a, price: { per_request: 0, cached_input: 1 } }\n",
                 8, 41, "unknown key 'cached_input' in tier 'a' price");
    expect_exact(TIER_MODELS "tiers:\n  - { name: a, price: { per_request: 0 }, models: [gpt] }\n",
                 8, 52, "tier 'a': models names unknown model group 'gpt'");
    expect_error(TIER_MODELS "tiers:\n  - { name: a, price: { per_request: 0 }, models: local }\n",
                 8, 51, "models must be a list");
    expect_error(TIER_MODELS "tiers:\n  - { name: a, price: { per_request: 0 }, models: [] }\n", 8,
                 51, "models is empty");
    expect_error(TIER_MODELS "tiers:\n  - { name: a, price: { per_request: 0 }, models: [local, "
                             "local] }\n",
                 8, 59, "model group 'local' is listed twice");
    expect_exact(TIER_MODELS "tiers:\n  - { name: a, price: { per_request: 0 }, route_to: gpt }\n",
                 8, 53, "tier 'a': route_to names unknown model group 'gpt'");
    expect_exact(TIER_MODELS "tiers:\n  - { name: a, price: { per_request: 0 }, models: [cheap], "
                             "route_to: best }\n",
                 8, 70, "tier 'a': route_to 'best' is not in its models list");
    expect_error(TIER_MODELS
                 "tiers:\n  - { name: a, price: { per_request: 0 }, min_margin: 1.5 }\n",
                 8, 55, "min_margin (a share of revenue) must be a number from 0 to 1");
    expect_error(TIER_MODELS
                 "tiers:\n  - { name: a, price: { per_request: 0 }, min_margin: -0.1 }\n",
                 8, 55, "min_margin");
    expect_error(TIER_MODELS
                 "tiers:\n  - { name: a, price: { per_request: 0 }, max_cost_usd: 0 }\n",
                 8, 57, "max_cost_usd must be above 0");
    expect_error(TIER_MODELS "tiers:\n  - { name: a, price: { per_request: 0 }, default: yes }\n",
                 8, 52, "default must be true or false");
    expect_exact(TIER_MODELS "tiers:\n  - { name: a, price: { per_request: 0 }, default: true }\n"
                             "  - { name: b, price: { per_request: 0 }, default: true }\n",
                 9, 52, "tier 'a' and tier 'b' both say default: true (at most one may)");
}

static void test_config_tiers_reload_section(void **state)
{
    (void)state;
    struct config_error e;
    struct config *a = load(TIER_MODELS "tiers:\n  - { name: a, price: { per_request: 0 } }\n", &e);
    struct config *b = load(TIER_MODELS "tiers:\n  - { name: a, price: { per_request: 1 } }\n", &e);
    assert_non_null(a);
    assert_non_null(b);
    char buf[256];
    /* Tiers name model groups, so they reload with them; nothing needs a restart. */
    assert_string_equal(config_reloaded_sections(a, b, buf, sizeof buf), "tiers");
    assert_string_equal(config_restart_sections(a, b, buf, sizeof buf), "");
    config_free(a);
    config_free(b);
}

static void test_config_margin_policy_and_quality(void **state)
{
    (void)state;
    struct config_error e;
    struct config *c = load(UP "models:\n  - name: chat\n    route: margin\n    targets:\n"
                               "      - { backend: up, quality: 7 }\n      - { backend: up }\n",
                            &e);
    if (c == NULL) fail_msg("%s", e.msg);
    assert_int_equal(c->models[0].route, ROUTE_MARGIN);
    assert_string_equal(route_policy_name(ROUTE_MARGIN), "margin");
    assert_int_equal(c->models[0].targets[0].quality, 7);
    assert_int_equal(c->models[0].targets[1].quality, 0); /* default */
    config_free(c);
    expect_error(UP "models:\n  - { name: chat, targets: [ { backend: up, quality: -1 } ] }\n", 4,
                 54, "quality must be a non-negative integer");
    expect_error(UP "models:\n  - { name: chat, targets: [ { backend: up, quality: high } ] }\n", 4,
                 54, "quality must be a non-negative integer");
}

/* DESIGN.md's `customers:` map and `local_only:` tier key. */
static void test_config_customers_map_and_local_only(void **state)
{
    (void)state;
    struct config_error e;
    struct config *c =
        load(TIER_MODELS "tiers:\n"
                         "  - { name: free, price: { per_request: 0 }, local_only: true }\n"
                         "  - { name: premium, price: { input: 5, output: 15 } }\n"
                         "customers:\n  zeta: free\n  acme: premium\n  'a b': free\n",
             &e);
    if (c == NULL) fail_msg("%s at %d:%d", e.msg, e.line, e.col);
    assert_true(config_find_tier(c, "free")->local_only);
    assert_false(config_find_tier(c, "premium")->local_only);
    assert_int_equal(c->n_customers, 3);
    assert_ptr_equal(config_customer_tier(c, "acme"), config_find_tier(c, "premium"));
    assert_ptr_equal(config_customer_tier(c, "zeta"), config_find_tier(c, "free"));
    assert_ptr_equal(config_customer_tier(c, "a b"), config_find_tier(c, "free"));
    assert_null(config_customer_tier(c, "nobody"));
    assert_null(config_customer_tier(c, NULL));
    config_free(c);
    const char *base = TIER_MODELS "tiers:\n  - { name: free, price: { per_request: 0 } }\n";
    char y[1024];
    snprintf(y, sizeof y, "%scustomers:\n  acme: gold\n", base);
    expect_exact(y, 10, 9, "customers: 'acme' names unknown tier 'gold'");
    snprintf(y, sizeof y, "%scustomers: [acme]\n", base);
    expect_error(y, 9, 12, "customers (customer: tier) must be a mapping");
    snprintf(y, sizeof y, "%scustomers:\n  acme: free\n  acme: free\n", base);
    expect_error(y, 11, 3, "customers: 'acme' is listed twice");
    snprintf(y, sizeof y, "%scustomers:\n  acme: [free]\n", base);
    expect_error(y, 10, 9, "names unknown tier '(not a string)'");
    snprintf(y, sizeof y, "%s", TIER_MODELS "customers:\n  acme: free\n");
    expect_error(y, 8, 9, "customers: 'acme' names unknown tier 'free'");
    snprintf(y, sizeof y, "%s",
             TIER_MODELS "tiers:\n  - { name: a, price: { per_request: 0 }, "
                         "local_only: 1 }\n");
    expect_error(y, 8, 55, "local_only must be true or false");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_load_string_parses_full_config),
        cmocka_unit_test(test_config_load_string_applies_defaults),
        cmocka_unit_test(test_config_load_string_allows_empty_lists),
        cmocka_unit_test(test_config_load_string_rejects_unknown_keys),
        cmocka_unit_test(test_config_load_string_rejects_wrong_types),
        cmocka_unit_test(test_config_load_string_rejects_bad_listen),
        cmocka_unit_test(test_config_load_string_rejects_duplicate_keys),
        cmocka_unit_test(test_config_load_string_rejects_duplicate_names),
        cmocka_unit_test(test_config_load_string_rejects_unknown_target_backend),
        cmocka_unit_test(test_config_load_string_rejects_bad_targets),
        cmocka_unit_test(test_config_load_string_rejects_missing_backend_keys),
        cmocka_unit_test(test_config_load_string_rejects_unknown_backend_types),
        cmocka_unit_test(test_config_load_string_anthropic_backend),
        cmocka_unit_test(test_config_load_string_bedrock_credentials_chain),
        cmocka_unit_test(test_config_load_string_route_policies_retry_and_cooldown),
        cmocka_unit_test(test_config_load_string_prices_catalogue_and_tco),
#ifdef STRATUS_HAVE_ENGINE
        cmocka_unit_test(test_config_load_string_local_backend),
#endif
        cmocka_unit_test(test_config_load_string_refuses_blank_master_key),
        cmocka_unit_test(test_config_load_string_refuses_later_sections),
        cmocka_unit_test(test_config_load_string_checks_base_url),
        cmocka_unit_test(test_config_load_string_rejects_control_characters),
        cmocka_unit_test(test_config_load_string_resolves_env_secret),
        cmocka_unit_test(test_config_load_string_rejects_missing_env_secret),
        cmocka_unit_test(test_config_load_string_rejects_literal_key),
        cmocka_unit_test(test_config_load_string_resolves_file_secret),
        cmocka_unit_test(test_config_load_string_rejects_bad_secret_file),
        cmocka_unit_test(test_config_load_string_reports_yaml_syntax_errors),
        cmocka_unit_test(test_config_load_string_rejects_second_document),
        cmocka_unit_test(test_config_load_string_uses_length_not_nul),
        cmocka_unit_test(test_config_load_reads_file),
        cmocka_unit_test(test_config_load_reports_path_and_position),
        cmocka_unit_test(test_config_load_missing_file),
        cmocka_unit_test(test_config_load_directory),
        cmocka_unit_test(test_config_error_format_with_position),
        cmocka_unit_test(test_config_error_format_without_position),
        cmocka_unit_test(test_config_parse_listen_accepts_forms),
        cmocka_unit_test(test_config_parse_listen_rejects_bad_input),
        cmocka_unit_test(test_config_find_model_by_name),
        cmocka_unit_test(test_config_free_accepts_null),
        cmocka_unit_test(test_config_limits_for_held_answers),
        cmocka_unit_test(test_config_model_max_prompt_tokens),
        cmocka_unit_test(test_config_functions),
        cmocka_unit_test(test_config_listen_and_tls),
        cmocka_unit_test(test_config_sections_changed_for_reload),
        cmocka_unit_test(test_config_observability),
        cmocka_unit_test(test_config_store_retention),
        cmocka_unit_test(test_config_tiers),
        cmocka_unit_test(test_config_tiers_rejects_bad_entries),
        cmocka_unit_test(test_config_tier_rate_and_budget_defaults),
        cmocka_unit_test(test_config_tiers_reload_section),
        cmocka_unit_test(test_config_margin_policy_and_quality),
        cmocka_unit_test(test_config_customers_map_and_local_only),
    };
    return cmocka_run_group_tests_name("src/config/config.c", tests, NULL, NULL);
}
