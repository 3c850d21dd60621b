/* Unit tests for src/http/h2.c: a real server on an in-process event loop, and an HTTP/2
 * client built from nghttp2's own client session over a loopback socket. Both sides are pumped
 * by hand, so each test decides exactly when the client reads, consumes (opens its flow-control
 * window) or resets. */
#include "unit/cmocka_all.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http/h2.h"
#include "http/server.h"

#define MAX_BODY     1024
#define STREAM_TOTAL (1024 * 1024) /* what /stream writes: four times the high-water mark */
#define MAX_HELD     128

struct fixture {
    struct event_base *loop;
    struct http_server *srv;
    int port;
    int handled, aborted, drained;
    struct http_request *held[MAX_HELD];
    char method[16], path[64], query[64], host[64];
    size_t body_len;
    size_t written; /* bytes /stream has written */
    int slow;       /* times http_stream_write said "slow" */
};

/* ---- the server's handler -------------------------------------------------------------- */

static void forget(struct fixture *f, struct http_request *req)
{
    for (int i = 0; i < MAX_HELD; i++)
        if (f->held[i] == req) f->held[i] = NULL;
}

static void on_abort(struct http_request *req, void *ud)
{
    struct fixture *f = ud;
    f->aborted++;
    forget(f, req);
}

/* Writes the /stream pattern until it is all out or the client is slow. */
static void stream_more(struct fixture *f, struct http_request *req)
{
    char chunk[16384];
    while (f->written < STREAM_TOTAL) {
        for (size_t i = 0; i < sizeof chunk; i++) chunk[i] = (char)((f->written + i) & 0xff);
        int rc = http_stream_write(req, chunk, sizeof chunk);
        f->written += sizeof chunk;
        if (rc == 1) {
            f->slow++;
            return;
        }
        assert_int_equal(rc, 0);
    }
    http_stream_end(req);
}

static void on_drain(struct http_request *req, void *ud)
{
    struct fixture *f = ud;
    f->drained++;
    stream_more(f, req);
}

static void handle(struct http_request *req, void *ud)
{
    struct fixture *f = ud;
    f->handled++;
    snprintf(f->method, sizeof f->method, "%s", req->method);
    snprintf(f->path, sizeof f->path, "%s", req->path);
    snprintf(f->query, sizeof f->query, "%s", req->query ? req->query : "");
    const char *host = http_request_header(req, "host");
    snprintf(f->host, sizeof f->host, "%s", host ? host : "");
    f->body_len = evbuffer_get_length(req->body);
    if (strcmp(req->path, "/hello") == 0) {
        http_add_header(req, "X-Test", "Yes");
        http_add_header(req, "Connection", "close"); /* HTTP/1.1 only: must not reach h2 */
        http_respond(req, 200, "text/plain", "hello", 5);
    } else if (strcmp(req->path, "/hold") == 0) {
        http_request_set_callbacks(req, on_abort, NULL, f);
        for (int i = 0; i < MAX_HELD; i++)
            if (f->held[i] == NULL) {
                f->held[i] = req;
                break;
            }
    } else if (strcmp(req->path, "/stream") == 0) {
        http_request_set_callbacks(req, on_abort, on_drain, f);
        http_stream_start(req, 200, "application/octet-stream");
        stream_more(f, req);
    } else {
        http_respond(req, 404, "text/plain", "no", 2);
    }
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    struct err e = {0};
    struct http_server_opts o = {.max_body_bytes = MAX_BODY,
                                 .max_header_bytes = 4096,
                                 .header_timeout_ms = 10000,
                                 .body_timeout_ms = 10000,
                                 .idle_timeout_ms = 10000,
                                 .max_connections = 100};
    f->loop = event_base_new();
    f->srv = http_server_new(f->loop, "127.0.0.1", 0, o, handle, f, &e);
    assert_non_null(f->srv);
    f->port = atoi(strrchr(http_server_address(f->srv), ':') + 1);
    *state = f;
    return 0;
}

/* The same server with idle_timeout_ms short enough to wait for. */
static int setup_short_idle(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    struct err e = {0};
    struct http_server_opts o = {.max_body_bytes = MAX_BODY,
                                 .max_header_bytes = 4096,
                                 .header_timeout_ms = 10000,
                                 .body_timeout_ms = 10000,
                                 .idle_timeout_ms = 150,
                                 .max_connections = 100};
    f->loop = event_base_new();
    f->srv = http_server_new(f->loop, "127.0.0.1", 0, o, handle, f, &e);
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

/* ---- the client ------------------------------------------------------------------------ */

struct cstream {
    int32_t id;
    int status;
    char *body;
    size_t len, cap;
    bool closed;
    uint32_t error;
    bool hold_window; /* do not open this stream's window as its data arrives */
    char x_test[16], connection[16], request_id[80], content_length[16];
};

struct client {
    int fd;
    nghttp2_session *s;
    struct cstream st[MAX_HELD + 16];
    int n;
    bool goaway, eof;
    uint32_t goaway_code;
};

static struct cstream *cstream_of(struct client *c, int32_t id)
{
    for (int i = 0; i < c->n; i++)
        if (c->st[i].id == id) return &c->st[i];
    return NULL;
}

static int c_on_header(nghttp2_session *s, const nghttp2_frame *fr, const uint8_t *name, size_t nl,
                       const uint8_t *value, size_t vl, uint8_t flags, void *ud)
{
    (void)s;
    (void)flags;
    struct cstream *st = cstream_of(ud, fr->hd.stream_id);
    if (st == NULL) return 0;
    char v[80];
    snprintf(v, sizeof v, "%.*s", (int)vl, value);
    if (nl == 7 && memcmp(name, ":status", 7) == 0) st->status = atoi(v);
    if (nl == 6 && memcmp(name, "x-test", 6) == 0) snprintf(st->x_test, sizeof st->x_test, "%s", v);
    if (nl == 10 && memcmp(name, "connection", 10) == 0)
        snprintf(st->connection, sizeof st->connection, "%s", v);
    if (nl == 12 && memcmp(name, "x-request-id", 12) == 0)
        snprintf(st->request_id, sizeof st->request_id, "%s", v);
    if (nl == 14 && memcmp(name, "content-length", 14) == 0)
        snprintf(st->content_length, sizeof st->content_length, "%s", v);
    return 0;
}

static int c_on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
                     void *ud)
{
    (void)flags;
    struct cstream *st = cstream_of(ud, id);
    if (st == NULL) return 0;
    if (st->len + len > st->cap) {
        st->cap = (st->len + len) * 2;
        st->body = realloc(st->body, st->cap);
    }
    memcpy(st->body + st->len, data, len);
    st->len += len;
    /* The connection window always opens (another stream must not starve); the stream's own
     * window only when this stream is being read. */
    if (st->hold_window)
        nghttp2_session_consume_connection(s, len);
    else
        nghttp2_session_consume(s, id, len);
    return 0;
}

static int c_on_close(nghttp2_session *s, int32_t id, uint32_t error, void *ud)
{
    (void)s;
    struct cstream *st = cstream_of(ud, id);
    if (st) {
        st->closed = true;
        st->error = error;
    }
    return 0;
}

static int c_on_frame(nghttp2_session *s, const nghttp2_frame *fr, void *ud)
{
    (void)s;
    struct client *c = ud;
    if (fr->hd.type == NGHTTP2_GOAWAY) {
        c->goaway = true;
        c->goaway_code = fr->goaway.error_code;
    }
    return 0;
}

static int connect_fd(struct fixture *f)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)f->port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

static struct client *client_new(struct fixture *f)
{
    struct client *c = calloc(1, sizeof *c);
    nghttp2_session_callbacks *cb;
    nghttp2_option *opt;
    assert_int_equal(nghttp2_session_callbacks_new(&cb), 0);
    assert_int_equal(nghttp2_option_new(&opt), 0);
    nghttp2_session_callbacks_set_on_header_callback(cb, c_on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, c_on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, c_on_close);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, c_on_frame);
    nghttp2_option_set_no_auto_window_update(opt, 1); /* the client decides what it reads */
    nghttp2_option_set_peer_max_concurrent_streams(opt, 1000); /* until the server's SETTINGS */
    assert_int_equal(nghttp2_session_client_new2(&c->s, cb, c, opt), 0);
    nghttp2_session_callbacks_del(cb);
    nghttp2_option_del(opt);
    assert_int_equal(nghttp2_submit_settings(c->s, NGHTTP2_FLAG_NONE, NULL, 0), 0);
    c->fd = connect_fd(f);
    return c;
}

static void client_free(struct client *c)
{
    if (c->fd >= 0) close(c->fd);
    nghttp2_session_del(c->s);
    for (int i = 0; i < c->n; i++) free(c->st[i].body);
    free(c);
}

/* One round: the server's loop runs, the client sends what it has and reads what came. */
static void round_trip(struct fixture *f, struct client *c)
{
    for (int i = 0; i < 4; i++) event_base_loop(f->loop, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    const uint8_t *out;
    ssize_t n;
    while (c->fd >= 0 && (n = nghttp2_session_mem_send(c->s, &out)) > 0)
        assert_int_equal(send(c->fd, out, (size_t)n, MSG_NOSIGNAL), n);
    for (int i = 0; i < 4; i++) event_base_loop(f->loop, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    while (c->fd >= 0 && !c->eof && poll(&p, 1, 1) > 0) {
        uint8_t buf[65536];
        ssize_t r = recv(c->fd, buf, sizeof buf, 0);
        if (r <= 0) {
            c->eof = true;
            break;
        }
        assert_true(nghttp2_session_mem_recv(c->s, buf, (size_t)r) == r);
    }
}

/* Runs rounds until `done` holds (or fails the test after many). */
#define RUN_UNTIL(f, c, done)                                                                      \
    do {                                                                                           \
        int turns_ = 0;                                                                            \
        while (!(done) && turns_++ < 3000) round_trip(f, c);                                       \
        assert_true(done);                                                                         \
    } while (0)

static struct cstream *submit(struct client *c, const char *method, const char *path)
{
    nghttp2_nv nva[] = {
        {(uint8_t *)":method", (uint8_t *)method, 7, strlen(method), 0},
        {(uint8_t *)":scheme", (uint8_t *)"http", 7, 4, 0},
        {(uint8_t *)":authority", (uint8_t *)"example.test", 10, 12, 0},
        {(uint8_t *)":path", (uint8_t *)path, 5, strlen(path), 0},
    };
    struct cstream *st = &c->st[c->n++];
    memset(st, 0, sizeof *st);
    st->id = nghttp2_submit_request(c->s, NULL, nva, 4, NULL, NULL);
    assert_true(st->id > 0);
    return st;
}

/* The body of a request, all at once, with END_STREAM. */
struct body_src {
    const char *p;
    size_t left;
};

static ssize_t read_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length,
                         uint32_t *flags, nghttp2_data_source *source, void *ud)
{
    (void)s;
    (void)id;
    (void)ud;
    struct body_src *b = source->ptr;
    size_t n = b->left < length ? b->left : length;
    memcpy(buf, b->p, n);
    b->p += n;
    b->left -= n;
    if (b->left == 0) *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static struct cstream *post(struct client *c, const char *path, struct body_src *b,
                            bool with_length)
{
    char len_s[24];
    snprintf(len_s, sizeof len_s, "%zu", b->left);
    nghttp2_nv nva[] = {
        {(uint8_t *)":method", (uint8_t *)"POST", 7, 4, 0},
        {(uint8_t *)":scheme", (uint8_t *)"http", 7, 4, 0},
        {(uint8_t *)":authority", (uint8_t *)"example.test", 10, 12, 0},
        {(uint8_t *)":path", (uint8_t *)path, 5, strlen(path), 0},
        {(uint8_t *)"content-length", (uint8_t *)len_s, 14, strlen(len_s), 0},
    };
    struct cstream *st = &c->st[c->n++];
    memset(st, 0, sizeof *st);
    nghttp2_data_provider dp = {.source.ptr = b, .read_callback = read_body};
    st->id = nghttp2_submit_request(c->s, NULL, nva, with_length ? 5 : 4, &dp, NULL);
    assert_true(st->id > 0);
    return st;
}

/* ---- tests ----------------------------------------------------------------------------- */

static void test_h2_preface_match_needs_the_whole_preface(void **state)
{
    (void)state;
    const char *pri = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    assert_int_equal(h2_preface_match(pri, 24), 1);
    assert_int_equal(h2_preface_match(pri, 3), 0);
    assert_int_equal(h2_preface_match("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nxyz", 27), 1);
    assert_int_equal(h2_preface_match("POST / HTTP/1.1\r\n", 17), -1);
    assert_int_equal(h2_preface_match("PRI * HTTP/1.1\r\n", 16), -1);
    assert_int_equal(h2_preface_match("P", 1), 0);
}

static void test_h2_unary_response_maps_headers(void **state)
{
    struct fixture *f = *state;
    struct client *c = client_new(f);
    struct cstream *st = submit(c, "GET", "/hello?x=1&y=2");
    RUN_UNTIL(f, c, st->closed);
    assert_int_equal(st->status, 200);
    assert_int_equal(st->error, NGHTTP2_NO_ERROR);
    assert_int_equal(st->len, 5);
    assert_memory_equal(st->body, "hello", 5);
    assert_string_equal(st->content_length, "5");
    assert_string_equal(st->x_test, "Yes");  /* sent, lower-cased */
    assert_string_equal(st->connection, ""); /* connection-specific: dropped */
    assert_int_equal(strncmp(st->request_id, "req_", 4), 0);
    assert_string_equal(f->method, "GET");
    assert_string_equal(f->path, "/hello");
    assert_string_equal(f->query, "x=1&y=2");
    assert_string_equal(f->host, "example.test"); /* from :authority */
    assert_int_equal(http_server_active_requests(f->srv), 0);
    assert_int_equal(http_server_connections(f->srv), 1);
    client_free(c);
}

static void test_h2_request_body_reaches_handler(void **state)
{
    struct fixture *f = *state;
    struct client *c = client_new(f);
    char body[MAX_BODY];
    memset(body, 'b', sizeof body);
    struct body_src b = {body, sizeof body};
    struct cstream *st = post(c, "/nope", &b, false);
    RUN_UNTIL(f, c, st->closed);
    assert_int_equal(st->status, 404);
    assert_string_equal(f->method, "POST");
    assert_int_equal(f->body_len, MAX_BODY); /* exactly the limit is fine */
    client_free(c);
}

static void test_h2_body_over_limit_is_413_and_handler_never_runs(void **state)
{
    struct fixture *f = *state;
    struct client *c = client_new(f);
    char body[MAX_BODY + 1];
    memset(body, 'b', sizeof body);
    struct body_src b1 = {body, sizeof body}, b2 = {body, sizeof body};
    struct cstream *counted = post(c, "/nope", &b1, false);  /* counted as DATA arrives */
    struct cstream *announced = post(c, "/nope", &b2, true); /* refused from content-length */
    RUN_UNTIL(f, c, counted->closed && announced->closed);
    assert_int_equal(counted->status, 413);
    assert_int_equal(announced->status, 413);
    assert_non_null(strstr(counted->body, "\"code\":\"body_too_large\""));
    assert_int_equal(f->handled, 0);
    assert_int_equal(http_server_active_requests(f->srv), 0);
    /* The connection serves on. */
    struct cstream *st = submit(c, "GET", "/hello");
    RUN_UNTIL(f, c, st->closed);
    assert_int_equal(st->status, 200);
    client_free(c);
}

static void test_h2_header_list_over_limit_is_431(void **state)
{
    struct fixture *f = *state;
    struct client *c = client_new(f);
    char big[5000];
    memset(big, 'v', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    nghttp2_nv nva[] = {
        {(uint8_t *)":method", (uint8_t *)"GET", 7, 3, 0},
        {(uint8_t *)":scheme", (uint8_t *)"http", 7, 4, 0},
        {(uint8_t *)":authority", (uint8_t *)"x", 10, 1, 0},
        {(uint8_t *)":path", (uint8_t *)"/hello", 5, 6, 0},
        {(uint8_t *)"x-big", (uint8_t *)big, 5, strlen(big), 0},
    };
    struct cstream *st = &c->st[c->n++];
    memset(st, 0, sizeof *st);
    st->id = nghttp2_submit_request(c->s, NULL, nva, 5, NULL, NULL);
    RUN_UNTIL(f, c, st->closed);
    assert_int_equal(st->status, 431);
    assert_int_equal(f->handled, 0);
    client_free(c);
}

static void test_h2_rst_stream_aborts_only_that_request(void **state)
{
    struct fixture *f = *state;
    struct client *c = client_new(f);
    struct cstream *a = submit(c, "GET", "/hold");
    struct cstream *b = submit(c, "GET", "/hold");
    RUN_UNTIL(f, c, f->handled == 2);
    assert_int_equal(http_server_active_requests(f->srv), 2);
    nghttp2_submit_rst_stream(c->s, NGHTTP2_FLAG_NONE, a->id, NGHTTP2_CANCEL);
    RUN_UNTIL(f, c, f->aborted == 1);
    assert_int_equal(http_server_active_requests(f->srv), 1);
    /* The other one is still there and can be answered. */
    for (int i = 0; i < MAX_HELD; i++)
        if (f->held[i]) http_respond(f->held[i], 200, "text/plain", "late", 4);
    RUN_UNTIL(f, c, b->closed);
    assert_int_equal(b->status, 200);
    assert_int_equal(f->aborted, 1);
    assert_int_equal(http_server_active_requests(f->srv), 0);
    client_free(c);
}

static void test_h2_connection_close_aborts_every_stream(void **state)
{
    struct fixture *f = *state;
    struct client *c = client_new(f);
    for (int i = 0; i < 3; i++) submit(c, "GET", "/hold");
    RUN_UNTIL(f, c, f->handled == 3);
    close(c->fd);
    c->fd = -1;
    for (int i = 0; i < 100 && f->aborted < 3; i++)
        event_base_loop(f->loop, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    assert_int_equal(f->aborted, 3);
    assert_int_equal(http_server_active_requests(f->srv), 0);
    assert_int_equal(http_server_connections(f->srv), 0);
    client_free(c);
}

static void test_h2_unread_stream_is_slow_alone_and_drains_when_read(void **state)
{
    struct fixture *f = *state;
    struct client *c = client_new(f);
    struct cstream *big = submit(c, "GET", "/stream");
    big->hold_window = true;
    RUN_UNTIL(f, c, f->slow == 1);
    for (int i = 0; i < 50; i++) round_trip(f, c);
    /* Nothing more moves for it: its window is shut, its producer paused. */
    assert_int_equal(f->drained, 0);
    assert_true(big->len <= 256 * 1024);
    assert_true(http_server_active_requests(f->srv) == 1);
    /* Another stream on the same connection is answered meanwhile. */
    struct cstream *hello = submit(c, "GET", "/hello");
    RUN_UNTIL(f, c, hello->closed);
    assert_int_equal(hello->status, 200);
    /* Reading it (opening its window) drains it, and the producer finishes. */
    big->hold_window = false;
    nghttp2_session_consume_stream(c->s, big->id, big->len);
    RUN_UNTIL(f, c, big->closed);
    assert_true(f->drained >= 1);
    assert_int_equal(big->error, NGHTTP2_NO_ERROR);
    assert_int_equal(big->len, STREAM_TOTAL);
    for (size_t i = 0; i < STREAM_TOTAL; i += 4099)
        assert_int_equal((uint8_t)big->body[i], i & 0xff);
    client_free(c);
}

static void test_h2_refuses_streams_above_the_limit(void **state)
{
    struct fixture *f = *state;
    struct client *c = client_new(f);
    /* Sent before the server's SETTINGS reach the client, so its limit is not applied yet. */
    for (int i = 0; i < H2_MAX_STREAMS + 10; i++) submit(c, "GET", "/hold");
    int refused = 0;
    for (int turn = 0; turn < 200 && refused < 10; turn++) {
        round_trip(f, c);
        refused = 0;
        for (int i = 0; i < c->n; i++) refused += c->st[i].closed;
    }
    assert_int_equal(refused, 10);
    for (int i = 0; i < c->n; i++)
        if (c->st[i].closed) assert_int_equal(c->st[i].error, NGHTTP2_REFUSED_STREAM);
    assert_int_equal(f->handled, H2_MAX_STREAMS);
    assert_int_equal(http_server_active_requests(f->srv), H2_MAX_STREAMS);
    client_free(c);
    for (int i = 0; i < 100 && f->aborted < H2_MAX_STREAMS; i++)
        event_base_loop(f->loop, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    assert_int_equal(f->aborted, H2_MAX_STREAMS);
}

static void test_h2_drain_sends_goaway_and_closes_after_the_last_answer(void **state)
{
    struct fixture *f = *state;
    struct client *c = client_new(f);
    struct cstream *st = submit(c, "GET", "/hold");
    RUN_UNTIL(f, c, f->handled == 1);
    http_server_drain(f->srv);
    RUN_UNTIL(f, c, c->goaway);
    assert_int_equal(c->goaway_code, NGHTTP2_NO_ERROR);
    assert_int_equal(http_server_connections(f->srv), 1); /* a stream is still in flight */
    for (int i = 0; i < MAX_HELD; i++)
        if (f->held[i]) http_respond(f->held[i], 200, "text/plain", "bye", 3);
    RUN_UNTIL(f, c, st->closed && c->eof);
    assert_int_equal(st->status, 200);
    assert_int_equal(http_server_connections(f->srv), 0);
    client_free(c);
}

static void test_h2_garbage_after_preface_closes_that_connection_only(void **state)
{
    struct fixture *f = *state;
    int fd = connect_fd(f);
    const char bad[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x04\x08\x00\x00\x00\x00\x00junk";
    assert_int_equal(send(fd, bad, sizeof bad - 1, MSG_NOSIGNAL), (ssize_t)sizeof bad - 1);
    char buf[4096];
    ssize_t got = 0, r;
    for (int i = 0; i < 500; i++) {
        event_base_loop(f->loop, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 2) <= 0) continue;
        if ((r = recv(fd, buf + got, sizeof buf - (size_t)got, 0)) <= 0) break;
        got += r;
    }
    close(fd);
    /* SETTINGS first, then GOAWAY (type 7) with an error code, then the close. */
    bool goaway = false;
    for (ssize_t at = 0; at + 9 <= got;) {
        size_t len = ((size_t)(uint8_t)buf[at] << 16) | ((size_t)(uint8_t)buf[at + 1] << 8) |
                     (uint8_t)buf[at + 2];
        if (buf[at + 3] == 7) goaway = true;
        at += 9 + (ssize_t)len;
    }
    assert_true(goaway);
    assert_int_equal(http_server_connections(f->srv), 0);
    /* HTTP/2 and HTTP/1.1 are both served on afterwards. */
    struct client *c = client_new(f);
    struct cstream *st = submit(c, "GET", "/hello");
    RUN_UNTIL(f, c, st->closed);
    assert_int_equal(st->status, 200);
    client_free(c);
    int h1 = connect_fd(f);
    const char *req = "GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    assert_int_equal(send(h1, req, strlen(req), MSG_NOSIGNAL), (ssize_t)strlen(req));
    got = 0;
    for (int i = 0; i < 500; i++) {
        event_base_loop(f->loop, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        struct pollfd p = {.fd = h1, .events = POLLIN};
        if (poll(&p, 1, 2) <= 0) continue;
        if ((r = recv(h1, buf + got, sizeof buf - 1 - (size_t)got, 0)) <= 0) break;
        got += r;
    }
    buf[got] = '\0';
    close(h1);
    assert_non_null(strstr(buf, "HTTP/1.1 200 OK\r\n"));
    assert_non_null(strstr(buf, "\r\n\r\nhello"));
}

static void test_h2_stuck_stream_is_reset_after_idle_timeout(void **state)
{
    struct fixture *f = *state;
    struct client *c = client_new(f);
    struct cstream *big = submit(c, "GET", "/stream");
    big->hold_window = true; /* never read: its output cannot move */
    RUN_UNTIL(f, c, f->slow == 1);
    RUN_UNTIL(f, c, big->closed);
    assert_int_equal(big->error, NGHTTP2_CANCEL);
    assert_int_equal(f->aborted, 1); /* the handler learnt at once */
    assert_int_equal(http_server_active_requests(f->srv), 0);
    client_free(c);
}

static void test_h2_connection_without_streams_gets_goaway_after_idle_timeout(void **state)
{
    struct fixture *f = *state;
    struct client *c = client_new(f);
    struct cstream *st = submit(c, "GET", "/hello");
    RUN_UNTIL(f, c, st->closed);
    RUN_UNTIL(f, c, c->goaway && c->eof);
    assert_int_equal(c->goaway_code, NGHTTP2_NO_ERROR);
    assert_int_equal(http_server_connections(f->srv), 0);
    client_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_h2_preface_match_needs_the_whole_preface),
        cmocka_unit_test_setup_teardown(test_h2_unary_response_maps_headers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_h2_request_body_reaches_handler, setup, teardown),
        cmocka_unit_test_setup_teardown(test_h2_body_over_limit_is_413_and_handler_never_runs,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_h2_header_list_over_limit_is_431, setup, teardown),
        cmocka_unit_test_setup_teardown(test_h2_rst_stream_aborts_only_that_request, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_h2_connection_close_aborts_every_stream, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_h2_unread_stream_is_slow_alone_and_drains_when_read,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_h2_refuses_streams_above_the_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_h2_drain_sends_goaway_and_closes_after_the_last_answer,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_h2_garbage_after_preface_closes_that_connection_only,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_h2_stuck_stream_is_reset_after_idle_timeout,
                                        setup_short_idle, teardown),
        cmocka_unit_test_setup_teardown(
            test_h2_connection_without_streams_gets_goaway_after_idle_timeout, setup_short_idle,
            teardown),
    };
    return cmocka_run_group_tests_name("src/http/h2.c", tests, NULL, NULL);
}
