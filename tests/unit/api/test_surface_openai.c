/* Unit tests for the surface interface with the OpenAI surface (api/surface_openai.c):
 * where the credential is, parsing into the request model, and the SSE framing of chunks. */
#include "unit/cmocka_all.h"

#include <event2/buffer.h>
#include <string.h>

#include "api/surface_openai.h"
#include "http/server.h"
#include "util/arena.h"

struct fixture {
    struct http_request req;
    struct http_header headers[2];
    struct openai_state state;
    struct exchange x;
};

static void setup(struct fixture *f, const char *body)
{
    memset(f, 0, sizeof *f);
    f->req.arena = arena_new(4096);
    f->req.body = evbuffer_new();
    evbuffer_add(f->req.body, body, strlen(body));
    f->req.headers = f->headers;
    f->x = (struct exchange){.req = &f->req, .state = &f->state};
}

static void teardown(struct fixture *f)
{
    arena_free(f->req.arena); /* frees the surface's chunk buffer too */
    evbuffer_free(f->req.body);
}

static char *framed(struct fixture *f)
{
    static char out[1024];
    size_t n = evbuffer_get_length(f->state.out);
    assert_true(n < sizeof out);
    evbuffer_copyout(f->state.out, out, n);
    out[n] = '\0';
    return out;
}

static void test_the_credential_is_the_bearer_token(void **state)
{
    (void)state;
    struct fixture f;
    setup(&f, "{}");
    const char *key;
    size_t len;
    struct err e;
    assert_int_equal(surface_openai.credential(&f.req, &key, &len, &e), 0);
    assert_null(key); /* none sent: the guard says 401 when auth is on */
    f.headers[0] = (struct http_header){"authorization", "Bearer \tsk-1\t "};
    f.req.n_headers = 1;
    assert_int_equal(surface_openai.credential(&f.req, &key, &len, &e), 0);
    assert_int_equal(len, 4); /* blanks around the key are not part of it */
    assert_memory_equal(key, "sk-1", 4);
    f.headers[0].value = "Basic dXNlcjpwYXNz";
    err_clear(&e);
    assert_int_equal(surface_openai.credential(&f.req, &key, &len, &e), -1);
    assert_int_equal(e.status, 401);
    assert_string_equal(e.code, "invalid_api_key");
    f.headers[0].value = "Bearer sk-1";
    f.headers[1] = (struct http_header){"Authorization", "Bearer sk-2"};
    f.req.n_headers = 2;
    err_clear(&e);
    assert_int_equal(surface_openai.credential(&f.req, &key, &len, &e), -1);
    assert_int_equal(e.status, 400);
    assert_string_equal(e.code, "duplicate_header");
    teardown(&f);
}

static void test_parse_fills_the_request_model_or_names_the_field(void **state)
{
    (void)state;
    struct fixture f;
    struct err e;
    setup(&f, "{\"model\":\"m\",\"stream\":true,\"stream_options\":{\"include_usage\":true},"
              "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}");
    assert_int_equal(surface_openai.parse(&f.x, OPENAI_CHAT, &e), 0);
    assert_string_equal(f.x.request->model, "m");
    assert_true(f.x.request->stream);
    assert_true(f.x.request->want_usage);
    assert_int_equal(f.x.request->endpoint, OPENAI_CHAT);
    teardown(&f);
    setup(&f, "{\"model\":\"m\",\"messages\":\"not a list\"}");
    err_clear(&e);
    assert_int_equal(surface_openai.parse(&f.x, OPENAI_CHAT, &e), -1);
    assert_int_equal(e.status, 400);
    assert_string_equal(e.param, "messages");
    assert_null(f.x.request);
    teardown(&f);
}

static void test_chunks_are_framed_as_sse_and_the_unasked_usage_chunk_dropped(void **state)
{
    (void)state;
    struct fixture f;
    struct err e;
    setup(&f,
          "{\"model\":\"m\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"q\"}]}");
    assert_int_equal(surface_openai.parse(&f.x, OPENAI_CHAT, &e), 0);
    const char *a = "{\"choices\":[{\"delta\":{\"content\":\"x\"}}]}";
    struct call_chunk ch = {.json = a, .len = strlen(a)};
    assert_int_equal(surface_openai.chunk(&f.x, &ch), 1);
    /* A payload with a newline becomes one data: line per line. */
    const char *b = "{\"choices\":\n[]}";
    ch = (struct call_chunk){.json = b, .len = strlen(b)};
    assert_int_equal(surface_openai.chunk(&f.x, &ch), 1);
    /* The usage chunk: the gateway asked for it, this client did not. */
    const char *u = "{\"choices\":[],\"usage\":{\"prompt_tokens\":1}}";
    ch = (struct call_chunk){.json = u, .len = strlen(u), .usage_only = true, .usage_at = 24};
    assert_int_equal(surface_openai.chunk(&f.x, &ch), 0);
    assert_string_equal(framed(&f), "data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n"
                                    "data: {\"choices\":\ndata: []}\n\n");
    teardown(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_the_credential_is_the_bearer_token),
        cmocka_unit_test(test_parse_fills_the_request_model_or_names_the_field),
        cmocka_unit_test(test_chunks_are_framed_as_sse_and_the_unasked_usage_chunk_dropped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
