/*
 * DESIGN
 * Why one file of ~1,300 lines: a connection is one state machine — parsing, limits, phase
 * timers, writes, lingering close, shutdown — whose invariants (one request in the handler,
 * exactly one abort callback, never freed inside its own callback) span all of it.
 *
 * One `struct http_conn` per accepted socket with its own read/write events and input/output
 * evbuffers (not a bufferevent: reading with recv() into reserved space skips libevent's
 * FIONREAD ioctl, and writing directly — registering for EV_WRITE only when the socket
 * would block — skips two epoll_ctl calls per response). Input is fed to http-parser; the parser is
 * paused at the end of each message so exactly one request per connection is in the handler at a
 * time (pipelined bytes wait in the input buffer, which is capped by a read high-water mark).
 *
 * A per-connection timer enforces the phase deadlines: idle keep-alive, complete head,
 * complete body. A client trickling bytes (slowloris) therefore cannot hold a connection or
 * its memory past header_timeout_ms, whatever its rate.
 *
 * Finishing a response never frees anything in place: the handler may be deep inside a
 * libcurl callback when it answers, so the request is released from a deferred event
 * ("resume"), which then parses the next pipelined request, if any.
 *
 * An error the server finds itself (limits, framing, timeouts) usually arrives while the
 * client is still sending. Closing then, with its bytes unread in our socket, makes the kernel
 * send a reset that can destroy the error response before the client reads it (Node's fetch
 * and the OpenAI SDK then see ECONNRESET and retry the whole upload). So such a connection
 * closes like nginx's lingering_close: once the response is written the write side is shut
 * down (the client sees the end of the response) and input is read and dropped until the
 * client closes, LINGER_MS pass or the byte allowance is used up, whichever comes first.
 *
 * Accepting never spins: a full process (EMFILE) or system (ENFILE) descriptor table makes
 * accept() fail on every loop turn while the connection waits in the backlog, so the listener
 * is disabled for ACCEPT_PAUSE_MS after any accept failure. Lines an outsider can trigger at
 * will (refused connections, accept failures) are rate-limited.
 */
#include "http/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <event2/buffer.h>
#include <event2/event_struct.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <http_parser.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "http/h2.h"
#include "http/tls.h"
#include "obs/log.h"
#include "util/arena.h"
#include "util/clock.h"
#include "util/json_text.h"

#define OUTPUT_HIGH_WATER HTTP_OUTPUT_HIGH_WATER
#define OUTPUT_LOW_WATER  HTTP_OUTPUT_LOW_WATER
#define INPUT_HIGH_WATER  (64 * 1024)

/* Long enough for the kernel to hand back descriptors that connections in flight release,
 * short enough that a client retrying after the pause barely notices. */
#define ACCEPT_PAUSE_MS 100
/* Lingering close: 5 s is nginx's lingering_timeout, ample for a client on any network to
 * send what is already in flight and read the error. Bytes: a client that overshoots the body
 * limit by up to 16 MiB (the usual mistake: a file a bit too big) still reads its 413; beyond
 * that it is abuse or a runaway stream, and the reset is its problem. */
#define LINGER_MS          5000
#define LINGER_EXTRA_BYTES (16u << 20)
/* Per readable event while lingering, so one discarding client cannot starve the loop. */
#define LINGER_READ_BUDGET (256 * 1024)
/* Refused-connection and accept-failure lines per second (plus a count of the rest). */
#define LOG_LINES_PER_S 5

enum conn_state {
    CONN_HANDSHAKE,
    CONN_IDLE,
    CONN_HEAD,
    CONN_BODY,
    CONN_HANDLING,
    CONN_CLOSING,
    CONN_LINGER
};

struct strbuf {
    char *p;
    size_t len, cap;
};

struct http_server {
    struct http_core core; /* loop, limits, handler, counters: shared with HTTP/2 (h2.c) */
    struct evconnlistener *listener;
    char address[80];
    struct http_conn *conns;     /* HTTP/1.1 ones, doubly linked, for drain and free */
    struct event *accept_resume; /* re-enables the listener after an accept failure */
    struct log_rate refused_log, accept_log, tls_log;
    struct http_server_stats stats;
};

struct http_conn {
    struct http_server *srv;
    evutil_socket_t fd;
    struct ssl_st *tls;    /* owned; NULL on a plain listener */
    struct event read_ev;  /* EV_READ|EV_PERSIST while we want input */
    struct event write_ev; /* EV_WRITE|EV_PERSIST only while output would block */
    struct event flush_ev; /* activated when output was added: one writev per loop turn */
    struct evbuffer *in, *out;
    bool reading, writing, flush_pending;
    struct event *timer;
    struct event *resume;
    http_parser parser;
    enum conn_state state;
    struct http_request *req; /* being parsed or handled; owned */
    size_t head_bytes;
    size_t body_bytes;
    struct strbuf url, field, value;
    bool value_pending;   /* a header value was seen and not yet stored */
    int fail_status;      /* set by a parser callback that rejects the request */
    const char *fail_msg; /* static: why a 400 was chosen (else http-parser's description) */
    bool linger;          /* close lingering: request bytes may still be on their way */
    size_t linger_left;   /* bytes still to drop before giving up on the client */
    /* Obsolete line folding is seen by looking back from a header value to the line start;
     * exec_base is the start of the bytes the parser is running on, and tail_fold says the
     * bytes parsed before them ended in LF followed only by spaces or tabs. */
    const char *exec_base;
    bool tail_fold;
    bool keep_alive;
    bool http10;
    bool waiting_drain;
    bool in_process;
    bool preface_check;          /* nothing parsed yet: the first bytes may be the HTTP/2 preface */
    bool has_peer;               /* an IP peer (not a UNIX socket) */
    uint8_t peer[16];            /* its address, IPv4 mapped */
    enum access_verdict verdict; /* access: decided at accept */
    struct err access_err;       /* why the head was refused by access (status 0: it was not) */
    struct http_conn *prev, *next;
};

static const http_parser_settings *parser_settings(void);
static void process_input(struct http_conn *c);
static void conn_close(struct http_conn *c);
static void conn_release(struct http_conn *c, bool keep_fd);
static void conn_end(struct http_conn *c);
static void request_finish(struct http_request *req);
static void schedule_flush(struct http_conn *c);
static void set_reading(struct http_conn *c, bool on);

/* ---- small helpers ---------------------------------------------------------------- */

static int strbuf_append(struct strbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL) return -1;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

static void timer_set(struct http_conn *c, long ms)
{
    if (ms <= 0) {
        evtimer_del(c->timer);
        return;
    }
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(c->timer, &tv);
}

static const char *reason_phrase(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 204:
        return "No Content";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 413:
        return "Payload Too Large";
    case 422:
        return "Unprocessable Entity";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 499:
        return "Client Closed Request";
    case 500:
        return "Internal Server Error";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return status < 300 ? "OK" : status < 500 ? "Client Error" : "Server Error";
    }
}

static void schedule_flush(struct http_conn *c)
{
    if (c->flush_pending) return;
    c->flush_pending = true;
    event_active(&c->flush_ev, EV_TIMEOUT, 0);
}

static void set_reading(struct http_conn *c, bool on)
{
    if (on == c->reading) return;
    if (on)
        event_add(&c->read_ev, NULL);
    else
        event_del(&c->read_ev);
    c->reading = on;
    /* Bytes OpenSSL decrypted already are not announced by the socket. */
    if (on && c->tls && tls_pending(c->tls)) event_active(&c->read_ev, EV_READ, 0);
}

/* The two calls that move bytes; TLS replaces them on a TLS listener. */
static ssize_t conn_recv(struct http_conn *c, void *buf, size_t cap)
{
    return c->tls ? tls_recv(c->tls, buf, cap) : recv(c->fd, buf, cap, 0);
}

static int conn_send(struct http_conn *c)
{
    return c->tls ? tls_send(c->tls, c->out) : evbuffer_write(c->out, c->fd);
}

/* ---- request objects --------------------------------------------------------------- */

static const struct http_proto h1_proto;

static struct http_request *request_new(struct http_conn *c)
{
    return http_request_new(&c->srv->core, &h1_proto, c);
}

static size_t h1_pending(const struct http_request *req)
{
    const struct http_conn *c = req->_conn;
    return evbuffer_get_length(c->out);
}

/* ---- writing ----------------------------------------------------------------------- */

/* Appends to a fixed head buffer; the head is built in one piece and added to the output
 * with one evbuffer_add (no printf on the hot path). */
struct head_buf {
    char b[8192];
    size_t n;
    bool overflow;
};

static void head_add(struct head_buf *h, const char *s, size_t n)
{
    if (h->n + n > sizeof h->b) {
        h->overflow = true;
        return;
    }
    memcpy(h->b + h->n, s, n);
    h->n += n;
}

static void head_str(struct head_buf *h, const char *s)
{
    head_add(h, s, strlen(s));
}

static size_t format_uint(char *out, unsigned long long v, unsigned base)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = "0123456789abcdef"[v % base];
        v /= base;
    } while (v);
    for (size_t i = 0; i < n; i++) out[i] = tmp[n - 1 - i];
    return n;
}

static void write_head(struct http_request *req, int status, const char *content_type,
                       long long content_length)
{
    struct http_conn *c = req->_conn;
    struct head_buf h;
    char num[24];
    h.n = 0;
    h.overflow = false;
    schedule_flush(c);
    bool close_after = !c->keep_alive || c->srv->core.draining || c->fail_status != 0;
    head_str(&h, c->http10 ? "HTTP/1.0 " : "HTTP/1.1 ");
    head_add(&h, num, format_uint(num, (unsigned)status, 10));
    head_str(&h, " ");
    head_str(&h, reason_phrase(status));
    head_str(&h, "\r\n");
    if (content_type) {
        head_str(&h, "Content-Type: ");
        head_str(&h, content_type);
        head_str(&h, "\r\n");
    }
    if (content_length >= 0) {
        head_str(&h, "Content-Length: ");
        head_add(&h, num, format_uint(num, (unsigned long long)content_length, 10));
        head_str(&h, "\r\n");
    } else if (!c->http10) {
        head_str(&h, "Transfer-Encoding: chunked\r\n");
        req->_stream_chunked = true;
    } else {
        close_after = true; /* HTTP/1.0 stream: the end is the close */
    }
    head_str(&h, "x-request-id: ");
    head_str(&h, req->request_id);
    head_str(&h, "\r\n");
    for (size_t i = 0; i < req->_n_resp_headers; i++) {
        head_str(&h, req->_resp_headers[i].name);
        head_str(&h, ": ");
        head_str(&h, req->_resp_headers[i].value);
        head_str(&h, "\r\n");
    }
    if (close_after) {
        c->keep_alive = false;
        head_str(&h, "Connection: close\r\n");
    } else if (c->http10) {
        head_str(&h, "Connection: keep-alive\r\n");
    }
    head_str(&h, "\r\n");
    if (h.overflow) {
        /* Only absurd header values get here; drop the extras rather than corrupt the head. */
        h.n = 0;
        h.overflow = false;
        head_str(
            &h,
            "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        c->keep_alive = false;
        req->_stream_chunked = false;
    }
    evbuffer_add(c->out, h.b, h.n);
    req->head_sent = true;
    req->_status = status;
}

static void h1_respond(struct http_request *req, int status, const char *content_type,
                       const char *body, size_t len)
{
    struct http_conn *c = req->_conn;
    write_head(req, status, content_type, (long long)len);
    if (len && !req->head) evbuffer_add(c->out, body, len);
    request_finish(req);
}

static void h1_start(struct http_request *req, int status, const char *content_type)
{
    write_head(req, status, content_type, -1);
}

static int h1_write(struct http_request *req, const char *a, size_t alen, const char *b,
                    size_t blen)
{
    struct http_conn *c = req->_conn;
    size_t len = alen + blen;
    struct evbuffer *out = c->out;
    schedule_flush(c);
    if (req->_stream_chunked) {
        char head[24];
        size_t n = format_uint(head, len, 16);
        head[n++] = '\r';
        head[n++] = '\n';
        evbuffer_add(out, head, n);
    }
    if (alen) evbuffer_add(out, a, alen);
    if (blen) evbuffer_add(out, b, blen);
    if (req->_stream_chunked) evbuffer_add(out, "\r\n", 2);
    if (evbuffer_get_length(out) > OUTPUT_HIGH_WATER) {
        c->waiting_drain = true;
        return 1;
    }
    return 0;
}

static void h1_end(struct http_request *req)
{
    struct http_conn *c = req->_conn;
    if (req->_stream_chunked && !req->head) evbuffer_add(c->out, "0\r\n\r\n", 5);
    schedule_flush(c);
    request_finish(req);
}

static const struct http_proto h1_proto = {
    .name = "HTTP/1.1",
    .respond = h1_respond,
    .start = h1_start,
    .write = h1_write,
    .end = h1_end,
    .pending = h1_pending,
};

/* Marks the response complete; the request is released from the resume event so a handler
 * answering from inside a callback never has its state freed under it. */
static void request_finish(struct http_request *req)
{
    struct http_conn *c = req->_conn;
    http_core_finished(&c->srv->core, req);
    c->state = c->keep_alive ? CONN_IDLE : CONN_CLOSING;
    event_active(c->resume, EV_TIMEOUT, 0);
}

/* Answers an error the server found itself (limits, parse errors, timeouts), then closes
 * lingering: the request it refused may still be arriving. */
static void conn_fail(struct http_conn *c, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void conn_fail_err(struct http_conn *c, const struct err *err);
static void conn_fail(struct http_conn *c, int status, const char *code, const char *fmt, ...)
{
    struct err e;
    err_clear(&e);
    va_list ap;
    va_start(ap, fmt);
    err_vset(&e, status, "invalid_request_error", code, fmt, ap);
    va_end(ap);
    conn_fail_err(c, &e);
}

static void conn_fail_err(struct http_conn *c, const struct err *err)
{
    struct err e = *err;
    int status = e.status;
    if (c->req == NULL) c->req = request_new(c);
    if (c->req == NULL) {
        conn_close(c);
        return;
    }
    if (c->req->request_id[0] == '\0') http_request_assign_id(&c->srv->core, c->req);
    c->keep_alive = false;
    c->fail_status = status;
    c->linger = true;
    c->srv->core.n_active++; /* request_finish() balances this */
    evtimer_del(c->timer);
    set_reading(c, false);
    http_request_log_rejected(c->req, &e);
    http_respond_error(c->req, &e);
}

/* ---- parser callbacks -------------------------------------------------------------- */

/* Makes the parser stop with `status`; `why` (static, may be NULL) explains a 400. */
static int reject(struct http_conn *c, int status, const char *why)
{
    c->fail_status = status;
    c->fail_msg = why;
    return -1;
}

static int head_budget(struct http_conn *c, size_t n)
{
    c->head_bytes += n;
    if (c->head_bytes > c->srv->core.opts.max_header_bytes) {
        c->fail_status = 431;
        return -1;
    }
    return 0;
}

static int on_message_begin(http_parser *p)
{
    struct http_conn *c = p->data;
    if (c->req == NULL) c->req = request_new(c);
    if (c->req == NULL) {
        c->fail_status = 500;
        return -1;
    }
    c->head_bytes = 0;
    c->body_bytes = 0;
    c->url.len = c->field.len = c->value.len = 0;
    c->value_pending = false;
    c->state = CONN_HEAD;
    timer_set(c, c->srv->core.opts.header_timeout_ms);
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t n)
{
    struct http_conn *c = p->data;
    /* The method is known once the URL starts: an error answered from here on to a HEAD
     * request must not carry a body either. */
    c->req->head = p->method == HTTP_HEAD;
    c->req->method = c->req->head ? "GET" : http_method_str((enum http_method)p->method);
    if (head_budget(c, n)) return -1;
    return strbuf_append(&c->url, at, n);
}

static int store_header(struct http_conn *c)
{
    struct http_request *req = c->req;
    if (req->n_headers % 16 == 0) {
        struct http_header *h = arena_alloc(req->arena, (req->n_headers + 16) * sizeof *h);
        if (h == NULL) return -1;
        if (req->n_headers) memcpy(h, req->headers, req->n_headers * sizeof *h);
        req->headers = h;
    }
    char *name = arena_strndup(req->arena, c->field.p ? c->field.p : "", c->field.len);
    char *value = arena_strndup(req->arena, c->value.p ? c->value.p : "", c->value.len);
    if (name == NULL || value == NULL) return -1;
    for (char *q = name; *q; q++)
        if (*q >= 'A' && *q <= 'Z') *q = (char)(*q - 'A' + 'a');
    req->headers[req->n_headers++] = (struct http_header){name, value};
    c->field.len = c->value.len = 0;
    c->value_pending = false;
    return 0;
}

/* RFC 9110 5.1: a field name is a token. http-parser lets a space through ("Foo : bar",
 * " Foo: bar" on the first line), which RFC 9112 5.1 says must be refused: servers and proxies
 * that trim it would disagree with those that don't about which header this is. */
static bool is_token(const char *s, size_t n)
{
    if (n == 0) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        bool alnum =
            (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
        if (!alnum && (ch == '\0' || strchr("!#$%&'*+-.^_`|~", ch) == NULL)) return false;
    }
    return true;
}

/* Stores the header whose name and value are complete, after checking its name. */
static int finish_header(struct http_conn *c)
{
    if (!is_token(c->field.p, c->field.len))
        return reject(c, 400, "invalid character in a header field name");
    return store_header(c) == 0 ? 0 : reject(c, 500, NULL);
}

/* Whether value bytes at `at` begin a continuation line (obs-fold, RFC 9112 5.2): looking
 * back over spaces and tabs reaches a line feed instead of the colon. http-parser joins such
 * lines into the value; we refuse them. The look-back may run into bytes parsed before. */
static bool starts_folded_line(const struct http_conn *c, const char *at)
{
    const char *p = at;
    while (p > c->exec_base && (p[-1] == ' ' || p[-1] == '\t')) p--;
    return p > c->exec_base ? p[-1] == '\n' : c->tail_fold;
}

/* tail_fold after the parser consumed p[0..n): those bytes end in LF and blanks, or they are
 * all blanks and what came before did. */
static bool tail_fold_after(bool before, const char *p, size_t n)
{
    while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t')) n--;
    return n == 0 ? before : p[n - 1] == '\n';
}

static int on_header_field(http_parser *p, const char *at, size_t n)
{
    struct http_conn *c = p->data;
    if (head_budget(c, n + 4)) return -1; /* +4: ": " and CRLF count towards the limit */
    if (c->value_pending && finish_header(c)) return -1;
    return strbuf_append(&c->field, at, n);
}

static int on_header_value(http_parser *p, const char *at, size_t n)
{
    struct http_conn *c = p->data;
    if (head_budget(c, n)) return -1;
    if (starts_folded_line(c, at))
        return reject(c, 400, "obsolete line folding in a header field value");
    c->value_pending = true;
    return strbuf_append(&c->value, at, n);
}

/* RFC 9112 3.2: an HTTP/1.1 request carries exactly one Host; HTTP/1.0 may omit it. */
static const char *host_problem(const struct http_request *req, const http_parser *p)
{
    size_t hosts = 0;
    for (size_t i = 0; i < req->n_headers; i++) hosts += strcmp(req->headers[i].name, "host") == 0;
    if (hosts > 1) return "more than one Host header";
    bool http11 = p->http_major > 1 || (p->http_major == 1 && p->http_minor >= 1);
    if (hosts == 0 && http11) return "HTTP/1.1 request without a Host header";
    return NULL;
}

static int on_headers_complete(http_parser *p)
{
    struct http_conn *c = p->data;
    struct http_request *req = c->req;
    if (c->value_pending && finish_header(c)) return -1;
    if (req->method == NULL) req->method = http_method_str((enum http_method)p->method);
    const char *url = c->url.p ? c->url.p : "/";
    const char *q = strchr(url, '?');
    req->path =
        q ? arena_strndup(req->arena, url, (size_t)(q - url)) : arena_strdup(req->arena, url);
    req->query = q ? arena_strdup(req->arena, q + 1) : NULL;
    if (req->path == NULL) return reject(c, 500, NULL);
    c->http10 = p->http_major == 1 && p->http_minor == 0;
    c->keep_alive = http_should_keep_alive(p) != 0;

    http_request_assign_id(&c->srv->core, req);
    /* access: before anything else about the request, and before any body byte is read. */
    if (http_request_set_client(&c->srv->core, req, c->verdict, c->has_peer ? c->peer : NULL,
                                &c->access_err) != 0) {
        c->fail_status = c->access_err.status;
        return -1;
    }

    const char *bad_host = host_problem(req, p);
    if (bad_host) return reject(c, 400, bad_host);
    /* Refuse an announced oversized body before reading any of it. */
    if ((p->flags & F_CHUNKED) == 0 && p->content_length != ULLONG_MAX &&
        p->content_length > c->srv->core.opts.max_body_bytes) {
        c->fail_status = 413;
        return -1;
    }
    const char *expect = http_request_header(req, "expect");
    if (expect && strcasecmp(expect, "100-continue") == 0) {
        evbuffer_add(c->out, "HTTP/1.1 100 Continue\r\n\r\n", 25);
        schedule_flush(c);
    }
    c->state = CONN_BODY;
    timer_set(c, c->srv->core.opts.body_timeout_ms);
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t n)
{
    struct http_conn *c = p->data;
    c->body_bytes += n;
    if (c->body_bytes > c->srv->core.opts.max_body_bytes) {
        c->fail_status = 413;
        return -1;
    }
    return evbuffer_add(c->req->body, at, n);
}

/* A chunk that cannot fit in what is left of the body limit is refused when announced, not
 * after body_timeout_ms of waiting for bytes we would refuse anyway. 413 rather than 400: the
 * framing is valid, the body is too large, as with an oversized Content-Length. */
static int on_chunk_header(http_parser *p)
{
    struct http_conn *c = p->data;
    if (p->content_length > c->srv->core.opts.max_body_bytes - c->body_bytes)
        return reject(c, 413, NULL);
    return 0;
}

static int on_message_complete(http_parser *p)
{
    http_parser_pause(p, 1); /* one request at a time; process_input dispatches it */
    return 0;
}

static const http_parser_settings *parser_settings(void)
{
    static const http_parser_settings settings = {
        .on_message_begin = on_message_begin,
        .on_url = on_url,
        .on_header_field = on_header_field,
        .on_header_value = on_header_value,
        .on_headers_complete = on_headers_complete,
        .on_body = on_body,
        .on_chunk_header = on_chunk_header,
        .on_message_complete = on_message_complete,
    };
    return &settings;
}

/* ---- connection driving ------------------------------------------------------------ */

static void dispatch(struct http_conn *c)
{
    struct http_server *s = c->srv;
    c->state = CONN_HANDLING;
    evtimer_del(c->timer);
    http_core_dispatch(&s->core, c->req);
}

static void fail_from_parser(struct http_conn *c)
{
    enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
    size_t max_body = c->srv->core.opts.max_body_bytes,
           max_head = c->srv->core.opts.max_header_bytes;
    if (c->access_err.status)
        conn_fail_err(c, &c->access_err);
    else if (c->fail_status == 413)
        conn_fail(c, 413, "body_too_large", "request body exceeds the limit of %zu bytes",
                  max_body);
    else if (c->fail_status == 431 || e == HPE_HEADER_OVERFLOW)
        conn_fail(c, 431, "headers_too_large",
                  "request line and headers exceed the limit of %zu bytes", max_head);
    else if (c->fail_status == 500)
        conn_fail(c, 500, "out_of_memory", "out of memory");
    else if (c->fail_msg)
        conn_fail(c, 400, "bad_request", "malformed HTTP request: %s", c->fail_msg);
    else
        conn_fail(c, 400, "bad_request", "malformed HTTP request: %s", http_errno_description(e));
}

static void process_input(struct http_conn *c)
{
    if (c->in_process) return;
    c->in_process = true;
    struct evbuffer *in = c->in;
    while (c->state != CONN_HANDLING && c->state != CONN_CLOSING && evbuffer_get_length(in) > 0) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1) break;
        c->exec_base = v.iov_base;
        size_t used = http_parser_execute(&c->parser, parser_settings(), v.iov_base, v.iov_len);
        c->tail_fold = tail_fold_after(c->tail_fold, v.iov_base, used);
        evbuffer_drain(in, used);
        enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
        if (e == HPE_PAUSED) {
            http_parser_pause(&c->parser, 0);
            dispatch(c);
            break;
        }
        if (e != HPE_OK) {
            fail_from_parser(c);
            break;
        }
    }
    c->in_process = false;
}

static void on_resume(evutil_socket_t fd, short what, void *ud)
{
    struct http_conn *c = ud;
    (void)fd;
    (void)what;
    if (c->req && c->req->done) {
        http_request_free(c->req);
        c->req = NULL;
        c->waiting_drain = false;
        if (c->state == CONN_CLOSING || c->srv->core.draining) {
            c->state = CONN_CLOSING;
            set_reading(c, false);
            if (evbuffer_get_length(c->out) == 0 && !c->flush_pending) conn_end(c);
            return; /* else the flush ends it once everything is written */
        }
        c->state = CONN_IDLE;
        timer_set(c, c->srv->core.opts.idle_timeout_ms);
        set_reading(c, evbuffer_get_length(c->in) < INPUT_HIGH_WATER);
        process_input(c);
    }
}

/* Lingering close, once the response is written: the client sees its end (FIN), and what it
 * still sends is dropped until it closes or the time or byte allowance runs out. */
static void conn_linger(struct http_conn *c)
{
    if (c->tls) tls_close_notify(c->tls); /* what follows is read raw and dropped */
    if (shutdown(c->fd, SHUT_WR) != 0) {
        conn_close(c);
        return;
    }
    c->state = CONN_LINGER;
    c->linger_left = c->srv->core.opts.max_body_bytes + LINGER_EXTRA_BYTES;
    evbuffer_drain(c->in, evbuffer_get_length(c->in));
    timer_set(c, LINGER_MS);
    set_reading(c, true);
}

/* The response that ends this connection is written: close now, or lingering if the request
 * we refused may still be arriving. */
static void conn_end(struct http_conn *c)
{
    if (c->linger && !c->srv->core.draining)
        conn_linger(c);
    else
        conn_close(c);
}

static void linger_read(struct http_conn *c)
{
    char scrap[16384];
    for (size_t budget = LINGER_READ_BUDGET; budget > 0;) {
        ssize_t n = recv(c->fd, scrap, sizeof scrap, 0);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
        if (n <= 0 || (size_t)n >= c->linger_left) {
            conn_close(c); /* the client closed, failed, or sent more than we will drop */
            return;
        }
        c->linger_left -= (size_t)n;
        budget -= (size_t)n < budget ? (size_t)n : budget;
    }
}

/* The first bytes of a connection decide its protocol: the HTTP/2 client preface hands the
 * socket and what was read to h2.c; anything else is HTTP/1.x from here on. A proper prefix
 * of the preface waits for more (the idle timer still runs).
 * @return true to go on parsing HTTP/1.x; false when the connection is gone or waits. */
static bool check_preface(struct http_conn *c)
{
    size_t n = evbuffer_get_length(c->in);
    if (n > H2_PREFACE_LEN) n = H2_PREFACE_LEN;
    int m = h2_preface_match((const char *)evbuffer_pullup(c->in, (ev_ssize_t)n), n);
    if (m == 0) return false;
    c->preface_check = false;
    if (m < 0) return true;
    struct http_core *core = &c->srv->core;
    struct err e;
    int fd = c->fd;
    struct ssl_st *tls = c->tls;
    struct evbuffer *in = c->in;
    bool has_peer = c->has_peer;
    uint8_t peer[16];
    memcpy(peer, c->peer, 16);
    enum access_verdict verdict = c->verdict;
    c->in = evbuffer_new(); /* the bytes go with the socket */
    if (c->in == NULL) {
        c->in = in;
        conn_close(c);
        return false;
    }
    c->tls = NULL;
    conn_release(c, true);
    if (h2_conn_start(core, fd, tls, in, has_peer ? peer : NULL, verdict, &e) != 0)
        log_msg("warn", "h2_start_failed", "%s", e.msg);
    evbuffer_free(in);
    return false;
}

static void log_tls_failure(struct http_server *s, const char *why)
{
    unsigned long dropped = 0;
    if (!log_rate_allow(&s->tls_log, LOG_LINES_PER_S, clock_now_ns(), &dropped)) return;
    struct log_line l;
    log_begin(&l, "info", "tls_handshake_failed");
    log_str(&l, "address", s->address);
    log_str(&l, "error", why);
    if (dropped) log_int(&l, "suppressed", (long long)dropped);
    log_end(&l);
}

/* Drives the handshake from the socket's events. Once it is done, ALPN decides: "h2" hands
 * the connection to h2.c, anything else is HTTP/1.1 (a client without ALPN may still open
 * with the HTTP/2 preface, as over cleartext). */
static void handshake(struct http_conn *c)
{
    char why[256];
    enum tls_step st = tls_handshake(c->tls, why, sizeof why);
    if (st == TLS_FAILED) {
        log_tls_failure(c->srv, why);
        conn_close(c);
        return;
    }
    if (st == TLS_WANT_WRITE && !c->writing) {
        event_add(&c->write_ev, NULL);
        c->writing = true;
    } else if (st != TLS_WANT_WRITE && c->writing) {
        event_del(&c->write_ev);
        c->writing = false;
    }
    if (st != TLS_DONE) return;
    if (tls_alpn_h2(c->tls)) {
        struct http_core *core = &c->srv->core;
        struct err e;
        int fd = c->fd;
        struct ssl_st *tls = c->tls;
        bool has_peer = c->has_peer;
        uint8_t peer[16];
        memcpy(peer, c->peer, 16);
        enum access_verdict verdict = c->verdict;
        c->tls = NULL;
        conn_release(c, true);
        if (h2_conn_start(core, fd, tls, NULL, has_peer ? peer : NULL, verdict, &e) != 0)
            log_msg("warn", "h2_start_failed", "%s", e.msg);
        return;
    }
    c->preface_check = !tls_alpn_chosen(c->tls);
    c->state = CONN_IDLE;
    timer_set(c, c->srv->core.opts.idle_timeout_ms);
    if (tls_pending(c->tls)) event_active(&c->read_ev, EV_READ, 0);
}

static void on_readable(evutil_socket_t fd, short what, void *ud)
{
    struct http_conn *c = ud;
    (void)what;
    (void)fd;
    if (c->state == CONN_LINGER) {
        linger_read(c);
        return;
    }
    if (c->state == CONN_HANDSHAKE) {
        handshake(c);
        return;
    }
    struct evbuffer_iovec v;
    if (evbuffer_reserve_space(c->in, 16384, &v, 1) < 1) {
        conn_close(c);
        return;
    }
    ssize_t n = conn_recv(c, v.iov_base, v.iov_len);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
        conn_close(c); /* EOF or error: the client is gone */
        return;
    }
    v.iov_len = (size_t)n;
    evbuffer_commit_space(c->in, &v, 1);
    if (c->preface_check && !check_preface(c)) return;
    /* Pipelined bytes beyond the cap wait in the kernel until this request is answered. */
    if (evbuffer_get_length(c->in) >= INPUT_HIGH_WATER) set_reading(c, false);
    /* A record larger than what was read stays decrypted inside OpenSSL: read it next turn. */
    if (c->tls && c->reading && tls_pending(c->tls)) event_active(&c->read_ev, EV_READ, 0);
    process_input(c);
}

/* Writes what is pending; registers for EV_WRITE only if the socket would block. */
static void flush_output(struct http_conn *c)
{
    c->flush_pending = false;
    if (evbuffer_get_length(c->out) > 0) {
        int n = conn_send(c);
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            conn_close(c);
            return;
        }
    }
    size_t pending = evbuffer_get_length(c->out);
    if (pending > 0 && !c->writing) {
        /* The write timeout only runs while output is stuck: a client that stops reading a
         * stream is dropped after idle_timeout_ms instead of pinning it forever. */
        long wt = c->srv->core.opts.idle_timeout_ms;
        struct timeval tv = {wt / 1000, (wt % 1000) * 1000};
        event_add(&c->write_ev, &tv);
        c->writing = true;
    } else if (pending == 0 && c->writing) {
        event_del(&c->write_ev);
        c->writing = false;
    }
    if (pending == 0 && c->state == CONN_CLOSING && c->req == NULL) {
        conn_end(c);
        return;
    }
    if (c->waiting_drain && pending <= OUTPUT_LOW_WATER && c->req && !c->req->done) {
        c->waiting_drain = false;
        if (c->req->_drain_cb) c->req->_drain_cb(c->req, c->req->_cb_ud);
    }
}

static void on_flush(evutil_socket_t fd, short what, void *ud)
{
    (void)fd;
    (void)what;
    flush_output(ud);
}

static void on_writable(evutil_socket_t fd, short what, void *ud)
{
    struct http_conn *c = ud;
    (void)fd;
    if (what & EV_TIMEOUT) {
        conn_close(c);
        return;
    }
    if (c->state == CONN_HANDSHAKE) {
        handshake(c);
        return;
    }
    flush_output(c);
}

static void on_timer(evutil_socket_t fd, short what, void *ud)
{
    struct http_conn *c = ud;
    (void)fd;
    (void)what;
    switch (c->state) {
    case CONN_HANDSHAKE:
        log_tls_failure(c->srv, "handshake not complete within header_timeout_ms");
        conn_close(c);
        break;
    case CONN_IDLE:
    case CONN_LINGER:
        conn_close(c);
        break;
    case CONN_HEAD:
        conn_fail(c, 408, "request_timeout", "request head not received within %ld ms",
                  c->srv->core.opts.header_timeout_ms);
        break;
    case CONN_BODY:
        conn_fail(c, 408, "request_timeout", "request body not received within %ld ms",
                  c->srv->core.opts.body_timeout_ms);
        break;
    default:
        break;
    }
}

/* Frees the connection; the socket is closed unless `keep_fd` (handed to HTTP/2). */
static void conn_release(struct http_conn *c, bool keep_fd)
{
    struct http_server *s = c->srv;
    struct http_request *req = c->req;
    if (req && c->state == CONN_HANDLING && !req->done) {
        /* Client gone mid-request: let the handler cancel its work, then release it. */
        http_core_abort(&s->core, req);
    } else if (req && c->fail_status && !req->done) {
        s->core.n_active--;
    }
    http_request_free(req);
    c->req = NULL;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    s->core.n_conns--;
    event_free(c->timer);
    event_free(c->resume);
    event_del(&c->read_ev);
    event_del(&c->write_ev);
    event_del(&c->flush_ev);
    evbuffer_free(c->in);
    evbuffer_free(c->out);
    /* close_notify only on a clean end: not after a failed handshake or a broken socket. */
    tls_conn_free(c->tls, c->state != CONN_HANDSHAKE);
    if (!keep_fd) evutil_closesocket(c->fd);
    free(c->url.p);
    free(c->field.p);
    free(c->value.p);
    free(c);
}

static void conn_close(struct http_conn *c)
{
    conn_release(c, false);
}

/* Closing at once (rather than leaving the connection in the backlog) tells the client to go
 * elsewhere now; the line says why, at most LOG_LINES_PER_S times a second. */
static void refuse_connection(struct http_server *s, evutil_socket_t fd)
{
    evutil_closesocket(fd);
    s->stats.refused++;
    unsigned long dropped = 0;
    if (!log_rate_allow(&s->refused_log, LOG_LINES_PER_S, clock_now_ns(), &dropped)) return;
    struct log_line l;
    log_begin(&l, "warn", "connection_refused");
    log_str(&l, "address", s->address);
    log_int(&l, "max_connections", s->core.opts.max_connections);
    log_int(&l, "refused_total", (long long)s->stats.refused);
    if (dropped) log_int(&l, "suppressed", (long long)dropped);
    log_str(&l, "message", "max_connections reached: connection closed");
    log_end(&l);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *addr, int len,
                      void *ud)
{
    struct http_server *s = ud;
    (void)l;
    (void)len;
    if (s->core.draining) {
        evutil_closesocket(fd);
        return;
    }
    if (s->core.n_conns >= (size_t)s->core.opts.max_connections) {
        refuse_connection(s, fd);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct http_conn *c = calloc(1, sizeof *c);
    if (c == NULL) {
        evutil_closesocket(fd);
        return;
    }
    c->srv = s;
    c->fd = fd;
    /* access: the verdict on this peer is made once, here; its first request carries it. */
    c->has_peer = cidr_from_sockaddr(addr, c->peer) == 0;
    c->verdict = access_classify(&s->core.opts.access, c->has_peer ? c->peer : NULL);
    evutil_make_socket_nonblocking(fd);
    c->in = evbuffer_new();
    c->out = evbuffer_new();
    c->timer = evtimer_new(s->core.loop, on_timer, c);
    c->resume = event_new(s->core.loop, -1, 0, on_resume, c);
    if (c->in == NULL || c->out == NULL || c->timer == NULL || c->resume == NULL) {
        if (c->in) evbuffer_free(c->in);
        if (c->out) evbuffer_free(c->out);
        if (c->timer) event_free(c->timer);
        if (c->resume) event_free(c->resume);
        evutil_closesocket(fd);
        free(c);
        return;
    }
    event_assign(&c->read_ev, s->core.loop, fd, EV_READ | EV_PERSIST, on_readable, c);
    event_assign(&c->write_ev, s->core.loop, fd, EV_WRITE | EV_PERSIST, on_writable, c);
    event_assign(&c->flush_ev, s->core.loop, -1, 0, on_flush, c);
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    c->preface_check = true;
    c->state = CONN_IDLE;
    if (s->core.opts.tls) {
        if ((c->tls = tls_conn_new(s->core.opts.tls, fd)) == NULL) {
            evbuffer_free(c->in);
            evbuffer_free(c->out);
            event_free(c->timer);
            event_free(c->resume);
            evutil_closesocket(fd);
            free(c);
            return;
        }
        c->state = CONN_HANDSHAKE; /* slow handshakes count against the head's deadline */
    }
    c->next = s->conns;
    if (s->conns) s->conns->prev = c;
    s->conns = c;
    s->core.n_conns++;
    set_reading(c, true);
    timer_set(c, c->tls ? s->core.opts.header_timeout_ms : s->core.opts.idle_timeout_ms);
}

static void on_accept_resume(evutil_socket_t fd, short what, void *ud)
{
    struct http_server *s = ud;
    (void)fd;
    (void)what;
    if (s->listener && !s->core.draining) evconnlistener_enable(s->listener);
}

/* accept() failed. The pending connection stays in the backlog, so the listener would fire
 * again on the next loop turn and fail again: pause it instead of spinning. */
static void on_accept_error(struct evconnlistener *l, void *ud)
{
    struct http_server *s = ud;
    int e = EVUTIL_SOCKET_ERROR();
    s->stats.accept_errors++;
    struct timeval tv = {0, ACCEPT_PAUSE_MS * 1000};
    if (evconnlistener_disable(l) == 0 && evtimer_add(s->accept_resume, &tv) == 0)
        s->stats.accept_pauses++;
    unsigned long dropped = 0;
    if (!log_rate_allow(&s->accept_log, LOG_LINES_PER_S, clock_now_ns(), &dropped)) return;
    struct log_line line;
    log_begin(&line, "warn", "accept_failed");
    log_str(&line, "address", s->address);
    log_str(&line, "error", evutil_socket_error_to_string(e));
    log_int(&line, "pause_ms", ACCEPT_PAUSE_MS);
    log_int(&line, "connections", (long long)s->core.n_conns);
    if (dropped) log_int(&line, "suppressed", (long long)dropped);
    log_end(&line);
}

/* Everything a listener needs besides the socket: the accept-failure pause. */
static int listener_setup(struct http_server *s, struct err *err)
{
    s->accept_resume = evtimer_new(s->core.loop, on_accept_resume, s);
    if (s->accept_resume == NULL) return err_oom(err);
    evconnlistener_set_error_cb(s->listener, on_accept_error);
    return 0;
}

/* ---- server ------------------------------------------------------------------------ */

int http_server_connection_cap(uint64_t nofile, int configured)
{
    uint64_t spare = nofile > HTTP_SERVER_FD_RESERVE ? nofile - HTTP_SERVER_FD_RESERVE : 0;
    uint64_t cap = spare / 2, limit = configured > 0 ? (uint64_t)configured : 1;
    if (cap > limit) cap = limit;
    return cap > 0 ? (int)cap : 1;
}

void http_server_stats(const struct http_server *s, struct http_server_stats *out)
{
    *out = s->stats;
}

struct http_server *http_server_new(struct event_base *loop, const char *host, int port,
                                    struct http_server_opts opts, http_handler_cb handler, void *ud,
                                    struct err *err)
{
    struct http_server *s = calloc(1, sizeof *s);
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char portstr[16];
    if (s == NULL) {
        err_oom(err);
        return NULL;
    }
    s->core.loop = loop;
    s->core.opts = opts;
    s->core.handler = handler;
    s->core.ud = ud;
    uint64_t seed = 0;
    if (getrandom(&seed, sizeof seed, 0) != sizeof seed) seed = clock_now_ns();
    s->core.id_state = seed | 1;
    /* http-parser's own head limit is global; keep it above ours so ours decides. */
    http_parser_set_max_header_size((uint32_t)(opts.max_header_bytes + 8192));

    snprintf(portstr, sizeof portstr, "%d", port);
    int gai = getaddrinfo(host, portstr, &hints, &res);
    if (gai != 0) {
        err_set(err, 500, "server_error", NULL, "cannot resolve listen address %s: %s", host,
                gai_strerror(gai));
        free(s);
        return NULL;
    }
    s->listener =
        evconnlistener_new_bind(loop, on_accept, s, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 1024,
                                res->ai_addr, (int)res->ai_addrlen);
    if (s->listener == NULL) {
        err_set(err, 500, "server_error", NULL, "cannot listen on %s:%d: %s", host, port,
                strerror(errno));
        freeaddrinfo(res);
        free(s);
        return NULL;
    }
    freeaddrinfo(res);
    if (listener_setup(s, err) != 0) {
        http_server_free(s);
        return NULL;
    }

    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char ip[INET6_ADDRSTRLEN] = "?";
    int bound = port;
    if (getsockname(evconnlistener_get_fd(s->listener), (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
            inet_ntop(AF_INET6, &a6->sin6_addr, ip, sizeof ip);
            bound = ntohs(a6->sin6_port);
            snprintf(s->address, sizeof s->address, "[%s]:%d", ip, bound);
        } else {
            struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
            inet_ntop(AF_INET, &a4->sin_addr, ip, sizeof ip);
            bound = ntohs(a4->sin_port);
            snprintf(s->address, sizeof s->address, "%s:%d", ip, bound);
        }
    }
    return s;
}

struct http_server *http_server_new_unix(struct event_base *loop, const char *path,
                                         struct http_server_opts opts, http_handler_cb handler,
                                         void *ud, struct err *err)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sun.sun_path) {
        err_set(err, 500, "server_error", NULL, "socket path too long: %s", path);
        return NULL;
    }
    struct http_server *s = calloc(1, sizeof *s);
    if (s == NULL) {
        err_oom(err);
        return NULL;
    }
    s->core.loop = loop;
    s->core.opts = opts;
    s->core.handler = handler;
    s->core.ud = ud;
    s->core.id_state = clock_now_ns() | 1;
    snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path);
    unlink(path);
    mode_t old = umask(077); /* the socket is created owner-only */
    s->listener = evconnlistener_new_bind(loop, on_accept, s, LEV_OPT_CLOSE_ON_FREE, 1024,
                                          (struct sockaddr *)&sun, (int)sizeof sun);
    umask(old);
    if (s->listener == NULL) {
        err_set(err, 500, "server_error", NULL, "cannot listen on %s: %s", path, strerror(errno));
        free(s);
        return NULL;
    }
    snprintf(s->address, sizeof s->address, "unix:%.70s", path);
    if (listener_setup(s, err) != 0) {
        http_server_free(s);
        return NULL;
    }
    return s;
}

const char *http_server_address(const struct http_server *s)
{
    return s->address;
}

void http_server_set_access(struct http_server *s, const struct access_policy *access)
{
    s->core.opts.access = *access;
    s->core.access_changed = true;
}

void http_server_drain(struct http_server *s)
{
    if (s->core.draining) return;
    s->core.draining = true;
    if (s->listener) {
        evconnlistener_free(s->listener);
        s->listener = NULL;
    }
    if (s->accept_resume) evtimer_del(s->accept_resume);
    struct http_conn *c = s->conns;
    while (c) {
        struct http_conn *next = c->next;
        /* A lingering connection has had its answer; shutdown need not wait for its client. */
        bool idle = c->state == CONN_IDLE && c->req == NULL && evbuffer_get_length(c->in) == 0;
        if (idle || c->state == CONN_LINGER || c->state == CONN_HANDSHAKE) conn_close(c);
        c = next;
    }
    h2_drain_all(&s->core);
}

size_t http_server_active_requests(const struct http_server *s)
{
    return s->core.n_active;
}

size_t http_server_connections(const struct http_server *s)
{
    return s->core.n_conns;
}

void http_server_free(struct http_server *s)
{
    if (s == NULL) return;
    while (s->conns) conn_close(s->conns);
    h2_free_all(&s->core);
    if (s->listener) evconnlistener_free(s->listener);
    if (s->accept_resume) event_free(s->accept_resume);
    free(s);
}
