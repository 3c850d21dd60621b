/* Unit tests for src/http/server.c: a real server on an in-process event loop, driven by a
 * blocking client socket. The loop is pumped by hand, so each test controls exactly which
 * bytes the server has seen when (a header split across two reads, an accept that fails). */
#include "unit/cmocka_all.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http/server.h"

struct fixture {
    struct event_base *loop;
    struct http_server *srv;
    int port;
    int handled; /* requests that reached the handler */
};

static void answer_hello(struct http_request *req, void *ud)
{
    struct fixture *f = ud;
    f->handled++;
    http_respond(req, 200, "text/plain", "hello", 5);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    struct err e = {0};
    struct http_server_opts o = {.max_body_bytes = 1024,
                                 .max_header_bytes = 8192,
                                 .header_timeout_ms = 10000,
                                 .body_timeout_ms = 10000,
                                 .idle_timeout_ms = 10000,
                                 .max_connections = 100};
    f->loop = event_base_new();
    f->srv = http_server_new(f->loop, "127.0.0.1", 0, o, answer_hello, f, &e);
    assert_non_null(f->srv);
    f->port = atoi(strrchr(http_server_address(f->srv), ':') + 1);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    http_server_free(f->srv);
    event_base_free(f->loop);
    free(f);
    return 0;
}

static void pump(struct fixture *f)
{
    for (int i = 0; i < 8; i++) event_base_loop(f->loop, EVLOOP_ONCE | EVLOOP_NONBLOCK);
}

static int connect_client(struct fixture *f)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)f->port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

static void send_str(int fd, const char *s)
{
    assert_int_equal(send(fd, s, strlen(s), MSG_NOSIGNAL), (ssize_t)strlen(s));
}

/* Reads until the server ends the connection (FIN: returns the bytes; a reset: returns -1),
 * pumping the loop meanwhile. The poll timeout is only a safety net against a hang. */
static ssize_t read_to_end(struct fixture *f, int fd, char *buf, size_t cap)
{
    size_t n = 0;
    for (int turns = 0; turns < 2000; turns++) {
        pump(f);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 5) <= 0) continue;
        ssize_t r = recv(fd, buf + n, cap - 1 - n, 0);
        if (r < 0) return -1;
        if (r == 0) break;
        n += (size_t)r;
    }
    buf[n] = '\0';
    return (ssize_t)n;
}

/* Sends `parts` one read at a time (the server parses each before the next arrives) and
 * returns what came back before the server closed. */
static void exchange(struct fixture *f, const char *const *parts, char *out, size_t cap)
{
    int fd = connect_client(f);
    for (const char *const *p = parts; *p; p++) {
        send_str(fd, *p);
        pump(f);
    }
    assert_true(read_to_end(f, fd, out, cap) >= 0);
    close(fd);
}

static void assert_refused(const char *out, const char *status, const char *why)
{
    assert_non_null(strstr(out, status));
    assert_true(strncmp(out, status, strlen(status)) == 0);
    assert_non_null(strstr(out, "Connection: close\r\n"));
    assert_non_null(strstr(out, "\r\n\r\n{\"error\":{\"message\":\""));
    assert_non_null(strstr(out, why));
}

static void test_http_server_connection_cap_leaves_half_after_reserve(void **state)
{
    (void)state;
    assert_int_equal(http_server_connection_cap(1024, 10000), (1024 - HTTP_SERVER_FD_RESERVE) / 2);
    assert_int_equal(http_server_connection_cap(128, 10000), (128 - HTTP_SERVER_FD_RESERVE) / 2);
    assert_int_equal(http_server_connection_cap(1048576, 10000), 10000); /* config decides */
    assert_int_equal(http_server_connection_cap(UINT64_MAX, 10000), 10000);
    assert_int_equal(http_server_connection_cap(10, 10000), 1); /* never zero */
}

static void test_http_parse_refuses_http11_without_host(void **state)
{
    struct fixture *f = *state;
    char out[4096];
    const char *bad[] = {"GET /x HTTP/1.1\r\n\r\n", NULL};
    exchange(f, bad, out, sizeof out);
    assert_refused(out, "HTTP/1.1 400 ", "without a Host header");
    const char *twice[] = {"GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", NULL};
    exchange(f, twice, out, sizeof out);
    assert_refused(out, "HTTP/1.1 400 ", "more than one Host header");
    assert_int_equal(f->handled, 0);
}

static void test_http_parse_accepts_http10_without_host(void **state)
{
    struct fixture *f = *state;
    char out[4096];
    const char *req[] = {"GET /x HTTP/1.0\r\n\r\n", NULL};
    exchange(f, req, out, sizeof out);
    assert_true(strncmp(out, "HTTP/1.0 200 ", 13) == 0);
    assert_int_equal(f->handled, 1);
}

static void test_http_parse_refuses_space_in_header_name(void **state)
{
    struct fixture *f = *state;
    char out[4096];
    const char *before_colon[] = {"GET /x HTTP/1.1\r\nHost: a\r\nFoo : bar\r\n\r\n", NULL};
    exchange(f, before_colon, out, sizeof out);
    assert_refused(out, "HTTP/1.1 400 ", "header field name");
    const char *leading[] = {"GET /x HTTP/1.1\r\n Foo: bar\r\nHost: a\r\n\r\n", NULL};
    exchange(f, leading, out, sizeof out);
    assert_refused(out, "HTTP/1.1 400 ", "header field name");
    assert_int_equal(f->handled, 0);
}

static void test_http_parse_refuses_obs_fold(void **state)
{
    struct fixture *f = *state;
    char out[4096];
    const char *one_read[] = {"GET /x HTTP/1.1\r\nHost: a\r\nFoo: bar\r\n\tbaz\r\n\r\n", NULL};
    exchange(f, one_read, out, sizeof out);
    assert_refused(out, "HTTP/1.1 400 ", "line folding");
    const char *empty_first[] = {"GET /x HTTP/1.1\r\nHost: a\r\nFoo:\r\n baz\r\n\r\n", NULL};
    exchange(f, empty_first, out, sizeof out);
    assert_refused(out, "HTTP/1.1 400 ", "line folding");
    /* The fold starts a new read: the server must remember how the previous one ended. */
    const char *split[] = {"GET /x HTTP/1.1\r\nHost: a\r\nFoo: bar\r\n", "  baz\r\n\r\n", NULL};
    exchange(f, split, out, sizeof out);
    assert_refused(out, "HTTP/1.1 400 ", "line folding");
    assert_int_equal(f->handled, 0);
}

static void test_http_parse_accepts_value_split_across_reads(void **state)
{
    struct fixture *f = *state;
    char out[4096];
    /* A value cut after a space, and a line cut after the colon, are not folds. */
    const char *req[] = {"GET /x HTTP/1.1\r\nHost: a\r\nFoo: bar ", "baz\r\nX-Y:", " z\r\n",
                         "Connection: close\r\n\r\n", NULL};
    exchange(f, req, out, sizeof out);
    assert_true(strncmp(out, "HTTP/1.1 200 ", 13) == 0);
    assert_int_equal(f->handled, 1);
}

static void test_http_parse_refuses_oversized_chunk_when_announced(void **state)
{
    struct fixture *f = *state;
    char out[4096];
    /* No byte of the chunk is sent: the 413 must come from its size line alone. */
    const char *req[] = {
        "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n7fffffff\r\n", NULL};
    exchange(f, req, out, sizeof out);
    assert_refused(out, "HTTP/1.1 413 ", "body_too_large");
    assert_int_equal(f->handled, 0);
}

static void test_http_head_sends_head_without_body(void **state)
{
    struct fixture *f = *state;
    char out[4096];
    const char *req[] = {"HEAD /x HTTP/1.1\r\nHost: a\r\n\r\n",
                         "GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", NULL};
    exchange(f, req, out, sizeof out);
    /* HEAD: GET's status and Content-Length, then straight into the next response. */
    const char *second = strstr(out, "\r\n\r\nHTTP/1.1 200 ");
    assert_true(strncmp(out, "HTTP/1.1 200 ", 13) == 0);
    assert_non_null(second);
    assert_non_null(strstr(out, "Content-Length: 5\r\n"));
    assert_true(strstr(out, "hello") > second);
    assert_string_equal(out + strlen(out) - 9, "\r\n\r\nhello");
    assert_int_equal(f->handled, 2);
}

static void test_http_head_error_has_no_body(void **state)
{
    struct fixture *f = *state;
    char out[4096];
    const char *req[] = {"HEAD /x HTTP/1.1\r\n\r\n", NULL}; /* no Host: a 400 */
    exchange(f, req, out, sizeof out);
    assert_true(strncmp(out, "HTTP/1.1 400 ", 13) == 0);
    assert_string_equal(out + strlen(out) - 4, "\r\n\r\n");
}

static void test_http_refused_upload_ends_with_fin_not_reset(void **state)
{
    struct fixture *f = *state;
    char out[4096];
    static char body[64 * 1024];
    memset(body, 'x', sizeof body);
    int fd = connect_client(f);
    send_str(fd, "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\n");
    pump(f); /* the server answers 413 from Content-Length and stops reading */
    assert_int_equal(send(fd, body, sizeof body, MSG_NOSIGNAL), (ssize_t)sizeof body);
    ssize_t n = read_to_end(f, fd, out, sizeof out);
    /* Closing with the body unread would reset the connection; lingering reads it. */
    assert_true(n > 0);
    assert_refused(out, "HTTP/1.1 413 ", "body_too_large");
    /* The server still drops what we send after its FIN, until we close. */
    assert_int_equal(send(fd, body, sizeof body, MSG_NOSIGNAL), (ssize_t)sizeof body);
    pump(f);
    assert_int_equal(http_server_connections(f->srv), 1);
    close(fd);
    for (int i = 0; i < 100 && http_server_connections(f->srv) > 0; i++) {
        pump(f);
        poll(NULL, 0, 5);
    }
    assert_int_equal(http_server_connections(f->srv), 0);
}

static void test_http_accept_pauses_on_emfile_then_resumes(void **state)
{
    struct fixture *f = *state;
    struct rlimit was, low;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &was), 0);
    int fd = connect_client(f); /* completes in the backlog, before any accept() */
    int lowest_free = dup(STDERR_FILENO);
    close(lowest_free);
    low = was;
    low.rlim_cur = (rlim_t)lowest_free; /* the accepted socket would need one more */
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    for (int i = 0; i < 50; i++) event_base_loop(f->loop, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    struct http_server_stats st;
    http_server_stats(f->srv, &st);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &was), 0);
    /* 50 loop turns with the connection waiting: one failure, then the listener is paused
     * instead of failing again on every turn. */
    assert_int_equal(st.accept_errors, 1);
    assert_int_equal(st.accept_pauses, 1);
    assert_int_equal(http_server_connections(f->srv), 0);
    for (int i = 0; i < 400 && http_server_connections(f->srv) == 0; i++) {
        event_base_loop(f->loop, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        poll(NULL, 0, 5);
    }
    assert_int_equal(http_server_connections(f->srv), 1); /* accepted after the pause */
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http_server_connection_cap_leaves_half_after_reserve),
        cmocka_unit_test_setup_teardown(test_http_parse_refuses_http11_without_host, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_http_parse_accepts_http10_without_host, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_http_parse_refuses_space_in_header_name, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_http_parse_refuses_obs_fold, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_parse_accepts_value_split_across_reads, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_http_parse_refuses_oversized_chunk_when_announced,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_head_sends_head_without_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_head_error_has_no_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_refused_upload_ends_with_fin_not_reset, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_http_accept_pauses_on_emfile_then_resumes, setup,
                                        teardown),
    };
    return cmocka_run_group_tests_name("src/http/server.c", tests, NULL, NULL);
}
