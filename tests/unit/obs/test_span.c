/* Unit tests for src/obs/span.c: a finished request becomes a span with the GenAI
 * attributes, and a batch becomes an OTLP/HTTP JSON body a collector decodes (read back with
 * jansson here: ids in hex, int64 as strings, kind SERVER, status ERROR only for 5xx). */
#include "unit/cmocka_all.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "http/server.h"
#include "obs/record.h"
#include "obs/span.h"
#include "obs/traceparent.h"

#define MS 1000000ull

static const char yaml[] = "backends:\n"
                           "  - { name: up, type: openai, base_url: http://10.1.2.3:9001/v1 }\n"
                           "models:\n"
                           "  - { name: chat, targets: [ { backend: up, model: gpt-x } ] }\n";

/* The attribute `key` of span `s`: its value object, or NULL. */
static json_t *attr(json_t *s, const char *key)
{
    size_t i;
    json_t *a;
    json_array_foreach(json_object_get(s, "attributes"), i, a)
    {
        if (strcmp(json_string_value(json_object_get(a, "key")), key) == 0)
            return json_object_get(a, "value");
    }
    return NULL;
}

static const char *str_attr(json_t *s, const char *key)
{
    return json_string_value(json_object_get(attr(s, key), "stringValue"));
}

static const char *int_attr(json_t *s, const char *key)
{
    return json_string_value(json_object_get(attr(s, key), "intValue"));
}

static json_t *export_one(const struct span *sp)
{
    char *body = span_export_json(sp, 1, "stratus-test", "9.9.9");
    assert_non_null(body);
    json_t *root = json_loads(body, 0, NULL);
    free(body);
    assert_non_null(root);
    return root;
}

static json_t *first_span(json_t *root)
{
    json_t *rs = json_array_get(json_object_get(root, "resourceSpans"), 0);
    json_t *ss = json_array_get(json_object_get(rs, "scopeSpans"), 0);
    return json_array_get(json_object_get(ss, "spans"), 0);
}

static void test_span_export_json_carries_the_genai_attributes(void **state)
{
    (void)state;
    struct config_error ce = {0};
    struct config *cfg = config_load_string(yaml, strlen(yaml), "t.yaml", &ce);
    assert_non_null(cfg);
    struct http_request req = {
        .method = "POST", .path = "/v1/chat/completions", .start_ns = 1000 * MS};
    strcpy(req.request_id, "req_1");
    struct request_record r = {
        .req = &req,
        .status = 200,
        .model = "chat",
        .endpoint = "chat/completions",
        .backend = "up",
        .target_model = "gpt-x",
        .attempts = 2,
        .route_policy = "priority",
        .route_reason = "first available",
        .accounted = true,
        .usage = {.prompt = 11, .completion = 5, .cached = -1},
        .cost_known = true,
        .cost_usd = 0.25,
    };
    struct trace_context tc;
    assert_int_equal(trace_context_begin(
                         &tc, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", true, 1.0),
                     1);
    struct span sp;
    span_fill(&sp, &r, &tc, cfg, 1250 * MS, 1700000000000000000ull);
    json_t *root = export_one(&sp);
    json_t *rs = json_array_get(json_object_get(root, "resourceSpans"), 0);
    json_t *ra = json_array_get(json_object_get(json_object_get(rs, "resource"), "attributes"), 0);
    assert_string_equal(json_string_value(json_object_get(ra, "key")), "service.name");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(ra, "value"), "stringValue")),
        "stratus-test");
    json_t *s = first_span(root);
    char id[17];
    trace_hex(tc.span_id, 8, id);
    assert_string_equal(json_string_value(json_object_get(s, "traceId")),
                        "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_string_equal(json_string_value(json_object_get(s, "parentSpanId")), "00f067aa0ba902b7");
    assert_string_equal(json_string_value(json_object_get(s, "spanId")), id);
    assert_string_equal(json_string_value(json_object_get(s, "name")), "chat chat");
    assert_int_equal(json_integer_value(json_object_get(s, "kind")), 2);
    /* 250 ms before the end, in wall-clock nanoseconds, as strings */
    assert_string_equal(json_string_value(json_object_get(s, "startTimeUnixNano")),
                        "1699999999750000000");
    assert_string_equal(json_string_value(json_object_get(s, "endTimeUnixNano")),
                        "1700000000000000000");
    assert_string_equal(str_attr(s, "gen_ai.operation.name"), "chat");
    assert_string_equal(str_attr(s, "gen_ai.request.model"), "chat");
    assert_string_equal(str_attr(s, "gen_ai.response.model"), "gpt-x");
    assert_string_equal(str_attr(s, "gen_ai.provider.name"), "openai");
    assert_string_equal(str_attr(s, "server.address"), "10.1.2.3");
    assert_string_equal(int_attr(s, "server.port"), "9001");
    assert_string_equal(int_attr(s, "gen_ai.usage.input_tokens"), "11");
    assert_string_equal(int_attr(s, "gen_ai.usage.output_tokens"), "5");
    assert_true(json_real_value(json_object_get(attr(s, "stratus.cost_usd"), "doubleValue")) ==
                0.25);
    assert_string_equal(str_attr(s, "stratus.route.reason"), "first available");
    assert_string_equal(str_attr(s, "stratus.backend"), "up");
    assert_string_equal(int_attr(s, "stratus.attempts"), "2");
    assert_string_equal(int_attr(s, "http.response.status_code"), "200");
    assert_null(attr(s, "error.type"));
    assert_int_equal(json_integer_value(json_object_get(json_object_get(s, "status"), "code")), 0);
    json_decref(root);
    config_free(cfg);
}

static void test_span_export_json_marks_a_5xx_as_an_error(void **state)
{
    (void)state;
    struct http_request req = {.method = "POST", .path = "/v1/embeddings", .start_ns = 5 * MS};
    /* A message cut inside a multi-byte character must still make valid JSON. */
    char msg[300];
    memset(msg, 'x', sizeof msg);
    memcpy(msg + 198, "\xc3\xa9", 2);
    msg[sizeof msg - 1] = '\0';
    struct request_record r = {.req = &req, .status = 502, .model = "emb", .error = msg};
    struct trace_context tc;
    assert_int_equal(trace_context_begin(&tc, NULL, true, 1.0), 1);
    struct span sp;
    span_fill(&sp, &r, &tc, NULL, 6 * MS, 2000000000ull);
    json_t *root = export_one(&sp);
    json_t *s = first_span(root);
    assert_null(json_object_get(s, "parentSpanId")); /* a new trace: the root span */
    assert_string_equal(str_attr(s, "gen_ai.operation.name"), "embeddings");
    assert_string_equal(str_attr(s, "error.type"), "502");
    assert_null(attr(s, "gen_ai.usage.input_tokens")); /* unknown, not 0 */
    assert_null(attr(s, "stratus.cost_usd"));
    json_t *st = json_object_get(s, "status");
    assert_int_equal(json_integer_value(json_object_get(st, "code")), 2);
    assert_non_null(json_string_value(json_object_get(st, "message")));
    json_decref(root);
    /* A 4xx is the client's: error.type set, status left unset. */
    r.status = 429;
    span_fill(&sp, &r, &tc, NULL, 6 * MS, 2000000000ull);
    root = export_one(&sp);
    s = first_span(root);
    assert_string_equal(str_attr(s, "error.type"), "429");
    assert_null(json_object_get(json_object_get(s, "status"), "code"));
    json_decref(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_span_export_json_carries_the_genai_attributes),
        cmocka_unit_test(test_span_export_json_marks_a_5xx_as_an_error),
    };
    return cmocka_run_group_tests_name("src/obs/span.c", tests, NULL, NULL);
}
