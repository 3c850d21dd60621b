/* Unit tests for src/route/call.c, the attempt engine, without sockets: a scripted
 * transport stands in for the upstream client, so each test decides what every attempt
 * answers and checks what the engine concludes — failover, retries after a backoff, what
 * is final, what the sink hears and in which order. */
#include "unit/cmocka_all.h"

#include <event2/event.h>
#include <stdio.h>
#include <string.h>

#include "openai/request.h"
#include "providers/provider.h"
#include "route/call.h"
#include "route/router.h"
#include "util/arena.h"

/* ---- a scripted transport ------------------------------------------------------------ */

struct fake_call {
    const struct upstream_callbacks *cb;
    void *ud;
    long status;
    bool cancelled, done;
    char url[256];
};

static struct fake_call calls[32];
static size_t n_calls;

static struct upstream_call *fake_start(void *ctx, const struct upstream_request *r,
                                        const struct upstream_callbacks *cb, void *ud,
                                        struct err *err)
{
    (void)ctx, (void)err;
    assert_true(n_calls < 32);
    struct fake_call *f = &calls[n_calls++];
    *f = (struct fake_call){.cb = cb, .ud = ud};
    snprintf(f->url, sizeof f->url, "%s", r->url);
    return (struct upstream_call *)f;
}

static void fake_cancel(struct upstream_call *call)
{
    ((struct fake_call *)call)->cancelled = true;
}

static void fake_resume(struct upstream_call *call)
{
    (void)call;
}

static long fake_status(const struct upstream_call *call)
{
    return ((const struct fake_call *)call)->status;
}

static const struct call_transport fake_transport = {
    .start = fake_start, .cancel = fake_cancel, .resume = fake_resume, .status = fake_status};

/* Attempt `i` answers `status` with `body` (in one read), then ends. */
static void answer(size_t i, long status, const char *body, long retry_after)
{
    assert_true(i < n_calls);
    struct fake_call *f = &calls[i];
    f->status = status;
    int rc =
        body && *body ? f->cb->on_data((struct upstream_call *)f, body, strlen(body), f->ud) : 0;
    f->done = true;
    f->cb->on_done(rc < 0 ? UPSTREAM_ABORTED : UPSTREAM_OK, status, retry_after, "", f->ud);
}

static void refuse_connection(size_t i)
{
    struct fake_call *f = &calls[i];
    f->done = true;
    f->cb->on_done(UPSTREAM_CONNECT, 0, -1, "Connection refused", f->ud);
}

/* ---- what the sink heard -------------------------------------------------------------- */

struct heard {
    int started;       /* status given to start, 0 if none */
    char chunks[4096]; /* every chunk's JSON, newline-separated */
    int flushes;
    int body_status; /* 0 if no body */
    char body[1024];
    bool ended;
    char end_error[300]; /* "" when the stream ended complete */
    bool failed;
    struct err err;
    long retry_after;
    size_t n_attempts;
    bool raw;
    int terminal; /* terminal callbacks: must end at 1 */
};

static int on_chunk_heard(void *ud, struct call *c, const struct call_chunk *ch)
{
    (void)c;
    struct heard *h = ud;
    size_t n = strlen(h->chunks);
    snprintf(h->chunks + n, sizeof h->chunks - n, "%.*s%s\n", (int)ch->len, ch->json,
             ch->usage_only ? " [usage]" : "");
    return 1;
}

static void on_start_heard(void *ud, struct call *c, int status)
{
    (void)c;
    ((struct heard *)ud)->started = status;
}

static int on_flush_heard(void *ud, struct call *c)
{
    (void)c;
    ((struct heard *)ud)->flushes++;
    return 0;
}

static void on_body_heard(void *ud, struct call *c, int status, const char *json, size_t len)
{
    (void)c;
    struct heard *h = ud;
    h->terminal++;
    h->body_status = status;
    snprintf(h->body, sizeof h->body, "%.*s", (int)len, json);
}

static void on_end_heard(void *ud, struct call *c, const char *error)
{
    (void)c;
    struct heard *h = ud;
    h->terminal++;
    h->ended = true;
    snprintf(h->end_error, sizeof h->end_error, "%s", error ? error : "");
}

static void on_fail_heard(void *ud, struct call *c, const struct call_failure *f)
{
    (void)c;
    struct heard *h = ud;
    h->terminal++;
    h->failed = true;
    h->err = f->err;
    h->retry_after = f->retry_after;
    h->n_attempts = f->n_attempts;
    h->raw = f->raw != NULL;
}

static const struct call_sink heard_sink = {.start = on_start_heard,
                                            .chunk = on_chunk_heard,
                                            .flush = on_flush_heard,
                                            .body = on_body_heard,
                                            .end = on_end_heard,
                                            .fail = on_fail_heard};

/* ---- the fixture: a real config, router and providers; the fake network --------------- */

struct fixture {
    struct config *cfg;
    struct backend backends[4];
    struct backend *table[4];
    struct router *router;
    struct event_base *loop;
    size_t buffered;
    struct call_env env;
    struct arena *arena;
    struct openai_request request;
    struct heard heard;
    struct call *call;
};

static const char *yaml =
    "limits: { max_response_bytes: 2048, max_buffered_bytes: 4096 }\n"
    "backends:\n"
    "  - { name: a, type: openai, base_url: 'http://a.invalid/v1' }\n"
    "  - { name: b, type: openai, base_url: 'http://b.invalid/v1' }\n"
    "models:\n"
    "  - { name: two, retry: { retries: 0 }, cooldown: { failures: 0 },\n"
    "      targets: [ { backend: a, model: ma }, { backend: b, model: mb } ] }\n"
    "  - { name: retried, retry: { retries: 1, backoff_ms: 1, max_backoff_ms: 1 },\n"
    "      cooldown: { failures: 0 }, targets: [ { backend: a, model: ma } ] }\n";

static void setup(struct fixture *f, const char *model, const char *body)
{
    memset(f, 0, sizeof *f);
    memset(calls, 0, sizeof calls);
    n_calls = 0;
    struct config_error ce;
    f->cfg = config_load_string(yaml, strlen(yaml), "t.yaml", &ce);
    if (f->cfg == NULL) fail_msg("%s", ce.msg);
    struct err e;
    for (size_t i = 0; i < f->cfg->n_backends; i++) {
        assert_int_equal(backend_init(&f->backends[i], &f->cfg->backends[i], &e), 0);
        f->table[i] = &f->backends[i];
    }
    f->router = router_new(f->cfg, f->table, &e);
    assert_non_null(f->router);
    f->loop = event_base_new();
    f->env = (struct call_env){.loop = f->loop,
                               .router = f->router,
                               .transport = &fake_transport,
                               .backends = f->table,
                               .cfg = f->cfg,
                               .buffered_bytes = &f->buffered};
    f->arena = arena_new(4096);
    assert_int_equal(
        openai_parse_request(OPENAI_CHAT, body, strlen(body), f->arena, &f->request, &e), 0);
    const struct model_conf *m = config_find_model(f->cfg, model);
    assert_non_null(m);
    struct call_request rq = {
        .request = &f->request,
        .model = m,
        .route = {.endpoint = OPENAI_CHAT, .prompt_tokens = 10, .output_tokens = 10}};
    f->call = call_start(&f->env, &rq, &heard_sink, &f->heard, f->arena);
    assert_non_null(f->call);
}

static void teardown(struct fixture *f)
{
    arena_free(f->arena); /* releases the call: held bytes and timers given back */
    assert_int_equal(f->buffered, 0);
    router_free(f->router);
    for (size_t i = 0; i < f->cfg->n_backends; i++) backend_destroy(&f->backends[i]);
    event_base_free(f->loop);
    config_free(f->cfg);
}

static const char *chat_body =
    "{\"model\":\"two\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
static const char *stream_body =
    "{\"model\":\"two\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
static const char *answer_json =
    "{\"id\":\"x\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}";

/* ---- tests ---------------------------------------------------------------------------- */

static void test_failover_on_5xx_then_the_next_target_answers(void **state)
{
    (void)state;
    struct fixture f;
    setup(&f, "two", chat_body);
    assert_int_equal(n_calls, 1);
    assert_non_null(strstr(calls[0].url, "a.invalid"));
    answer(0, 503, "{\"error\":{\"message\":\"overloaded\"}}", -1);
    assert_int_equal(n_calls, 2); /* failed over at once, nothing told to the sink */
    assert_int_equal(f.heard.terminal, 0);
    answer(1, 200, answer_json, -1);
    assert_int_equal(f.heard.terminal, 1);
    assert_int_equal(f.heard.body_status, 200);
    const struct call_info *in = call_info(f.call);
    assert_string_equal(in->backend, "b");
    assert_int_equal(in->attempts, 2);
    assert_true(in->accounted);
    assert_int_equal(in->usage.prompt, 3);
    assert_int_equal(in->usage.completion, 2);
    char route[400];
    call_route_header(f.call, route, sizeof route);
    assert_non_null(strstr(route, "after 1 failed attempt"));
    teardown(&f);
}

static void test_a_4xx_is_final_and_passed_on(void **state)
{
    (void)state;
    struct fixture f;
    setup(&f, "two", chat_body);
    answer(0, 400, "{\"error\":{\"message\":\"bad thing\",\"type\":\"invalid_request_error\"}}",
           -1);
    assert_int_equal(n_calls, 1); /* every target would say the same */
    assert_true(f.heard.failed);
    assert_int_equal(f.heard.err.status, 400);
    assert_string_equal(f.heard.err.msg, "bad thing");
    assert_true(f.heard.raw); /* the upstream's own OpenAI body may go out byte for byte */
    teardown(&f);
}

static void test_auth_failures_fail_over_and_end_as_upstream_auth_failed(void **state)
{
    (void)state;
    struct fixture f;
    setup(&f, "two", chat_body);
    answer(0, 401, "{\"error\":{\"message\":\"Incorrect API key provided: sk-echoed\"}}", -1);
    assert_int_equal(n_calls, 2);
    answer(1, 403, "forbidden", -1);
    assert_true(f.heard.failed);
    assert_int_equal(f.heard.err.status, 502);
    assert_string_equal(f.heard.err.code, "upstream_auth_failed");
    assert_null(strstr(f.heard.err.msg, "sk-echoed")); /* never the upstream's body */
    assert_non_null(strstr(f.heard.err.msg, "backend 'a' refused the gateway's credentials"));
    assert_int_equal(f.heard.n_attempts, 2);
    teardown(&f);
}

static void test_all_429_is_a_429_with_the_soonest_retry_after(void **state)
{
    (void)state;
    struct fixture f;
    setup(&f, "two", chat_body);
    answer(0, 429, "{\"error\":{\"message\":\"slow down\"}}", 7);
    answer(1, 429, "{\"error\":{\"message\":\"busy\",\"code\":\"engine_busy\"}}", 3);
    assert_int_equal(f.heard.err.status, 429);
    assert_string_equal(f.heard.err.code, "upstream_rate_limited"); /* not all engines */
    assert_int_equal(f.heard.retry_after, 3);
    assert_non_null(strstr(f.heard.err.msg, "all 2 targets failed"));
    assert_non_null(strstr(f.heard.err.msg, "slow down"));
    teardown(&f);
}

static void test_a_retry_pass_waits_for_the_backoff_then_tries_again(void **state)
{
    (void)state;
    struct fixture f;
    setup(&f, "retried", chat_body);
    refuse_connection(0);
    assert_int_equal(n_calls, 1); /* the pass is over: the next waits for its backoff */
    assert_int_equal(f.heard.terminal, 0);
    event_base_loop(f.loop, EVLOOP_ONCE); /* the backoff timer (at most 1 ms) */
    assert_int_equal(n_calls, 2);
    answer(1, 429, "{\"error\":{\"message\":\"busy\",\"code\":\"engine_busy\"}}", 1);
    assert_true(f.heard.failed);
    assert_int_equal(f.heard.err.status, 502); /* not every failure was a 429 */
    assert_string_equal(f.heard.err.code, "upstream_failed");
    assert_non_null(strstr(f.heard.err.msg, "all 2 attempts on 1 target failed"));
    teardown(&f);
}

static void test_a_stream_commits_on_its_first_event_and_ends_after_done(void **state)
{
    (void)state;
    struct fixture f;
    setup(&f, "two", stream_body);
    struct fake_call *c = &calls[0];
    c->status = 200;
    const char *events =
        "data: {\"choices\":[{\"delta\":{\"content\":\"he\"}}]}\n\n"
        ": keep-alive\n\n"
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":1}}\n\n"
        "data: [DONE]\n\n";
    assert_int_equal(c->cb->on_data((struct upstream_call *)c, events, strlen(events), c->ud), 0);
    assert_int_equal(f.heard.started, 200);
    assert_int_equal(f.heard.flushes, 1); /* one upstream read, one flush */
    assert_string_equal(f.heard.chunks,
                        "{\"choices\":[{\"delta\":{\"content\":\"he\"}}]}\n"
                        "{\"choices\":[],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":1}} "
                        "[usage]\n");
    assert_false(f.heard.ended);
    c->cb->on_done(UPSTREAM_OK, 200, -1, "", c->ud);
    assert_true(f.heard.ended);
    assert_string_equal(f.heard.end_error, "");
    assert_int_equal(call_info(f.call)->usage.prompt, 4);
    teardown(&f);
}

static void test_garbage_mid_stream_ends_it_and_is_not_forwarded(void **state)
{
    (void)state;
    struct fixture f;
    setup(&f, "two", stream_body);
    struct fake_call *c = &calls[0];
    c->status = 200;
    const char *good = "data: {\"choices\":[{\"delta\":{\"content\":\"ok\"}}]}\n\n";
    const char *bad = "data: {\"choices\": oops\n\n";
    assert_int_equal(c->cb->on_data((struct upstream_call *)c, good, strlen(good), c->ud), 0);
    assert_int_equal(c->cb->on_data((struct upstream_call *)c, bad, strlen(bad), c->ud), -1);
    c->cb->on_done(UPSTREAM_ABORTED, 200, -1, "", c->ud);
    assert_null(strstr(f.heard.chunks, "oops"));
    assert_true(f.heard.ended);
    assert_non_null(
        strstr(f.heard.end_error, "upstream 'a' sent an event that is not a JSON object"));
    assert_int_equal(n_calls, 1); /* committed: no failover after bytes went out */
    teardown(&f);
}

static void test_text_or_a_broken_usage_event_mid_stream_ends_it_too(void **state)
{
    (void)state;
    const char *bad[] = {"data: <html>502 Bad Gateway</html>\n\n",
                         "data: {\"choices\":[],\"usage\":{\"prompt_tokens\": x}}\n\n"};
    for (size_t i = 0; i < 2; i++) {
        struct fixture f;
        setup(&f, "two", stream_body);
        struct fake_call *c = &calls[0];
        c->status = 200;
        const char *good = "data: {\"choices\":[{\"delta\":{\"content\":\"ok\"}}]}\n\n";
        assert_int_equal(c->cb->on_data((struct upstream_call *)c, good, strlen(good), c->ud), 0);
        assert_int_equal(c->cb->on_data((struct upstream_call *)c, bad[i], strlen(bad[i]), c->ud),
                         -1);
        c->cb->on_done(UPSTREAM_ABORTED, 200, -1, "", c->ud);
        assert_true(f.heard.ended);
        assert_non_null(strstr(f.heard.end_error, "not"));
        assert_null(strstr(f.heard.chunks, bad[i] + 6));
        teardown(&f);
    }
}

static void test_a_stream_that_breaks_before_any_event_fails_over(void **state)
{
    (void)state;
    struct fixture f;
    setup(&f, "two", stream_body);
    answer(0, 200, "this is not an event stream", -1);
    assert_int_equal(n_calls, 2);
    assert_int_equal(f.heard.started, 0);
    teardown(&f);
}

static void test_too_large_an_answer_is_final_and_held_bytes_are_returned(void **state)
{
    (void)state;
    struct fixture f;
    setup(&f, "two", chat_body);
    char big[3000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    answer(0, 200, big, -1);
    assert_int_equal(n_calls, 1); /* neither retried nor failed over */
    assert_int_equal(f.heard.err.status, 502);
    assert_string_equal(f.heard.err.code, "upstream_response_too_large");
    assert_int_equal(f.buffered, 0);
    teardown(&f);
}

static void test_the_process_wide_hold_budget_refuses_with_503(void **state)
{
    (void)state;
    struct fixture f;
    setup(&f, "two", chat_body);
    f.buffered = 3000; /* other requests hold most of the 4096 bytes */
    struct fake_call *c = &calls[0];
    c->status = 200;
    char part[1500];
    memset(part, 'y', sizeof part);
    assert_int_equal(c->cb->on_data((struct upstream_call *)c, part, sizeof part, c->ud), -1);
    c->cb->on_done(UPSTREAM_ABORTED, 200, -1, "", c->ud);
    assert_int_equal(f.heard.err.status, 503);
    assert_string_equal(f.heard.err.code, "gateway_overloaded");
    assert_int_equal(f.heard.retry_after, 1);
    f.buffered = 0;
    teardown(&f);
}

static void test_cancel_stops_the_transfer_and_says_nothing(void **state)
{
    (void)state;
    struct fixture f;
    setup(&f, "two", chat_body);
    call_cancel(f.call);
    assert_true(calls[0].cancelled);
    assert_int_equal(f.heard.terminal, 0);
    /* Nothing was received: nothing is billed. */
    assert_true(call_info(f.call)->accounted);
    assert_int_equal(call_info(f.call)->usage.prompt, -1);
    assert_true(call_info(f.call)->cost_known);
    assert_true(call_info(f.call)->cost_usd == 0);
    teardown(&f);
}

static void test_a_client_leaving_mid_stream_is_billed_an_estimate(void **state)
{
    (void)state;
    struct fixture f;
    setup(&f, "two", stream_body);
    struct fake_call *c = &calls[0];
    c->status = 200;
    const char *events = "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n"
                         "data: {\"choices\":[{\"delta\":{\"content\":\"b\"}}]}\n\n";
    assert_int_equal(c->cb->on_data((struct upstream_call *)c, events, strlen(events), c->ud), 0);
    call_cancel(f.call);
    const struct call_info *in = call_info(f.call);
    assert_true(in->usage.estimated);
    assert_int_equal(in->usage.completion, 2); /* one token per content chunk */
    assert_int_equal(in->usage.prompt, (long long)(strlen(stream_body) / 4));
    teardown(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_failover_on_5xx_then_the_next_target_answers),
        cmocka_unit_test(test_a_4xx_is_final_and_passed_on),
        cmocka_unit_test(test_auth_failures_fail_over_and_end_as_upstream_auth_failed),
        cmocka_unit_test(test_all_429_is_a_429_with_the_soonest_retry_after),
        cmocka_unit_test(test_a_retry_pass_waits_for_the_backoff_then_tries_again),
        cmocka_unit_test(test_a_stream_commits_on_its_first_event_and_ends_after_done),
        cmocka_unit_test(test_garbage_mid_stream_ends_it_and_is_not_forwarded),
        cmocka_unit_test(test_text_or_a_broken_usage_event_mid_stream_ends_it_too),
        cmocka_unit_test(test_a_stream_that_breaks_before_any_event_fails_over),
        cmocka_unit_test(test_too_large_an_answer_is_final_and_held_bytes_are_returned),
        cmocka_unit_test(test_the_process_wide_hold_budget_refuses_with_503),
        cmocka_unit_test(test_cancel_stops_the_transfer_and_says_nothing),
        cmocka_unit_test(test_a_client_leaving_mid_stream_is_billed_an_estimate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
