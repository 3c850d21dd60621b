/*
 * DESIGN
 * Why one file of ~900 lines: the socket, the timers and the stream mapping all live under
 * the re-entrancy rules below (what may run inside an nghttp2 callback, what is freed where);
 * split, each part would have to restate them.
 *
 * nghttp2 owns the protocol (framing, HPACK, flow control, stream states, the checks of RFC
 * 9113 8.2-8.3 on request headers); this file owns the socket, the timers and the mapping of
 * streams onto `struct http_request`. nghttp2 is used in its memory mode: bytes read from the
 * socket go into nghttp2_session_mem_recv(), frames come out of nghttp2_session_mem_send()
 * into our output buffer. So nghttp2 never touches the socket, and TLS (http/tls.h) only
 * replaces conn_recv()/conn_send().
 *
 * Re-entrancy: nghttp2 calls us back from inside mem_recv/mem_send, and forbids calling those
 * two again from a callback. Handlers may answer from inside a callback (a request whose
 * END_STREAM arrives is dispatched from on_frame_recv), so the response API only queues —
 * submit a response, add bytes to the stream's buffer, resume its data provider — and asks
 * for a flush on the next loop turn (one event per connection, like HTTP/1.1's flush_ev).
 * Nothing is freed by the response API either: a stream is freed in nghttp2's stream-close
 * callback, which runs only inside our own read or flush event, never inside a handler's call.
 * A connection is freed only from our own events, after nghttp2 has returned.
 *
 * Backpressure is per stream: each stream buffers the handler's bytes (`out`) and nghttp2
 * takes them only while the client's flow-control window for that stream is open. When a
 * stream's buffer passes HTTP_OUTPUT_HIGH_WATER, http_stream_write says "slow"; the drain
 * callback comes once nghttp2 has taken it back below HTTP_OUTPUT_LOW_WATER. Streams whose
 * client keeps reading are not held back by one that does not. Output the socket cannot take
 * stops framing (SEND_BUDGET ahead), as HTTP/1.1 stops at its socket.
 *
 * Deadlines, the HTTP/1.1 ones mapped per stream: header_timeout_ms from HEADERS to the end
 * of the header block (a client sitting in CONTINUATIONs blocks the whole connection, so this
 * one closes it), body_timeout_ms from the end of the headers to END_STREAM (408), and
 * idle_timeout_ms for output that does not move (the stream is reset, like HTTP/1.1 closes a
 * connection whose client stopped reading) and for a connection without streams (GOAWAY).
 */
#include "http/h2.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <nghttp2/nghttp2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http/tls.h"
#include "obs/log.h"
#include "util/arena.h"
#include "util/clock.h"

/* Frames serialised ahead of what the socket took: enough for a few full DATA frames. */
#define SEND_BUDGET (64 * 1024)
/* Bytes written per flush event before yielding to other connections (like HTTP/1.1's
 * per-event budgets: one fast client cannot monopolise the loop). */
#define FLUSH_BUDGET (1024 * 1024)
/* Receive windows. Bodies are buffered whole up to max_body_bytes anyway, so the windows do
 * not bound memory; larger than the 64 KiB default so an upload is not one RTT per 64 KiB. */
#define STREAM_WINDOW (256 * 1024)
#define CONN_WINDOW   (1024 * 1024)
#define READ_CHUNK    16384
/* h2 error lines an outsider can cause at will, per second. */
#define LOG_LINES_PER_S 5

static const char PREFACE[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

enum stream_state {
    ST_HEADERS,  /* header block being received */
    ST_BODY,     /* headers in, body being received */
    ST_HANDLING, /* dispatched to the handler */
    ST_ANSWERED, /* answered by this file (limits, timeouts): the handler never sees it */
};

struct h2_stream {
    struct h2_conn *conn;
    int32_t id;
    enum stream_state state;
    struct http_request *req; /* owned */
    size_t head_bytes, body_bytes;
    int fail_status; /* a limit the header block broke: answered once it is complete */
    const char *authority;
    bool has_host;
    bool remote_done;        /* END_STREAM received */
    struct evbuffer *out;    /* response bytes nghttp2 has not taken yet; owned */
    bool eof;                /* the response is complete once `out` is empty */
    bool deferred;           /* the data provider said DEFERRED: resume on new bytes */
    bool waiting_drain;      /* http_stream_write said "slow" */
    bool drain_due;          /* fire the drain callback after this flush */
    bool rst_after_response; /* answered before the request ended: RST NO_ERROR after */
    struct event timer;      /* deadlines while receiving, output stall while answering */
    struct h2_stream *prev, *next;
};

struct h2_conn {
    struct http_core *core; /* borrowed */
    int fd;
    bool has_peer;
    uint8_t peer[16];
    enum access_verdict verdict;
    struct ssl_st *tls; /* owned; NULL on cleartext (h2c) */
    nghttp2_session *session;
    struct event read_ev, write_ev, flush_ev, idle_ev;
    struct evbuffer *out;
    bool writing, flush_pending;
    size_t n_streams;
    struct h2_stream *streams;
    struct h2_conn *prev, *next;
};

static const struct http_proto h2_proto;
static void conn_close(struct h2_conn *c);
static void schedule_flush(struct h2_conn *c);

int h2_preface_match(const char *p, size_t n)
{
    size_t k = n < H2_PREFACE_LEN ? n : H2_PREFACE_LEN;
    if (memcmp(p, PREFACE, k) != 0) return -1;
    return n >= H2_PREFACE_LEN ? 1 : 0;
}

static void timer_ms(struct event *ev, long ms)
{
    if (ms <= 0) {
        evtimer_del(ev);
        return;
    }
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(ev, &tv);
}

static void log_conn_error(struct h2_conn *c, const char *what, const char *detail)
{
    unsigned long dropped = 0;
    if (!log_rate_allow(&c->core->h2_log, LOG_LINES_PER_S, clock_now_ns(), &dropped)) return;
    struct log_line l;
    log_begin(&l, "warn", "h2_connection_error");
    log_str(&l, "error", what);
    if (detail) log_str(&l, "detail", detail);
    if (dropped) log_int(&l, "suppressed", (long long)dropped);
    log_end(&l);
}

/* ---- socket I/O (TLS replaces these two on a TLS listener) ------------------------- */

static ssize_t conn_recv(struct h2_conn *c, void *buf, size_t cap)
{
    return c->tls ? tls_recv(c->tls, buf, cap) : recv(c->fd, buf, cap, 0);
}

static int conn_send(struct h2_conn *c)
{
    return c->tls ? tls_send(c->tls, c->out) : evbuffer_write(c->out, c->fd);
}

/* ---- streams ----------------------------------------------------------------------- */

static void stream_free(struct h2_stream *st)
{
    struct h2_conn *c = st->conn;
    /* A stream that ends before its response is complete is a client that left (RST_STREAM,
     * GOAWAY, a closed connection): the handler cancels its work now. */
    if (st->state == ST_HANDLING) http_core_abort(c->core, st->req);
    evtimer_del(&st->timer);
    if (st->prev)
        st->prev->next = st->next;
    else
        c->streams = st->next;
    if (st->next) st->next->prev = st->prev;
    c->n_streams--;
    http_request_free(st->req);
    if (st->out) evbuffer_free(st->out);
    free(st);
    if (c->n_streams == 0) timer_ms(&c->idle_ev, c->core->opts.idle_timeout_ms);
}

/* Output of an answered stream that does not move for idle_timeout_ms: its client stopped
 * reading (window closed). Re-armed whenever nghttp2 takes bytes, dropped when all are out. */
static void stall_watch(struct h2_stream *st)
{
    if (st->out && evbuffer_get_length(st->out) > 0)
        timer_ms(&st->timer, st->conn->core->opts.idle_timeout_ms);
    else
        evtimer_del(&st->timer);
}

static ssize_t read_data(nghttp2_session *session, int32_t id, uint8_t *buf, size_t length,
                         uint32_t *flags, nghttp2_data_source *source, void *ud)
{
    struct h2_stream *st = source->ptr;
    (void)session;
    (void)id;
    (void)ud;
    size_t have = st->out ? evbuffer_get_length(st->out) : 0;
    size_t n = have < length ? have : length;
    if (n > 0) evbuffer_remove(st->out, buf, n);
    if (n == have && st->eof) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    } else if (n == 0) {
        st->deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    if (st->waiting_drain && have - n <= HTTP_OUTPUT_LOW_WATER) {
        st->waiting_drain = false;
        st->drain_due = true;
    }
    if (st->state != ST_HEADERS && st->state != ST_BODY) stall_watch(st);
    return (ssize_t)n;
}

static const char *const hop_by_hop[] = {"connection", "keep-alive",        "proxy-connection",
                                         "te",         "transfer-encoding", "upgrade"};

static bool is_hop_by_hop(const char *name)
{
    for (size_t i = 0; i < sizeof hop_by_hop / sizeof hop_by_hop[0]; i++)
        if (strcasecmp(name, hop_by_hop[i]) == 0) return true;
    return false;
}

static nghttp2_nv nv_make(const char *name, const char *value)
{
    return (nghttp2_nv){(uint8_t *)name, (uint8_t *)value, strlen(name), strlen(value),
                        NGHTTP2_NV_FLAG_NONE};
}

/* Sends the response head; with_data: DATA frames follow from `out` (the provider ends the
 * stream), else HEADERS carries END_STREAM. nghttp2 copies the header block. */
static void submit_head(struct http_request *req, int status, const char *content_type,
                        long long content_length, bool with_data)
{
    struct h2_stream *st = req->_conn;
    struct h2_conn *c = st->conn;
    char status_s[8], length_s[24];
    snprintf(status_s, sizeof status_s, "%d", status);
    size_t max = 4 + req->_n_resp_headers, n = 0;
    nghttp2_nv *nva = arena_alloc(req->arena, max * sizeof *nva);
    if (nva == NULL) {
        nghttp2_submit_rst_stream(c->session, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
        schedule_flush(c);
        return;
    }
    nva[n++] = nv_make(":status", status_s);
    if (content_type) nva[n++] = nv_make("content-type", content_type);
    if (content_length >= 0) {
        snprintf(length_s, sizeof length_s, "%lld", content_length);
        nva[n++] = nv_make("content-length", length_s);
    }
    /* Unique per response: indexing it in HPACK's dynamic table would only evict entries
     * that do repeat (content-type, x-stratus-*) and cost an insert each time. */
    nva[n] = nv_make("x-request-id", req->request_id);
    nva[n++].flags = NGHTTP2_NV_FLAG_NO_INDEX;
    for (size_t i = 0; i < req->_n_resp_headers; i++) {
        /* HTTP/2 field names are lower case (RFC 9113 8.2.1) and connection-specific ones are
         * malformed (8.2.2); handlers may have written either, in HTTP/1.1 spelling. */
        char *name = (char *)req->_resp_headers[i].name;
        if (is_hop_by_hop(name)) continue;
        for (char *p = name; *p; p++)
            if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
        nva[n++] = nv_make(name, req->_resp_headers[i].value);
    }
    nghttp2_data_provider dp = {.source.ptr = st, .read_callback = read_data};
    int rv = nghttp2_submit_response(c->session, st->id, nva, n, with_data ? &dp : NULL);
    if (rv != 0)
        nghttp2_submit_rst_stream(c->session, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
    req->head_sent = true;
    req->_status = status;
    schedule_flush(c);
}

static int ensure_out(struct h2_stream *st)
{
    if (st->out == NULL) st->out = evbuffer_new();
    return st->out ? 0 : -1;
}

static void h2_respond(struct http_request *req, int status, const char *content_type,
                       const char *body, size_t len)
{
    struct h2_stream *st = req->_conn;
    bool with_data = len > 0 && !req->head;
    if (with_data && (ensure_out(st) != 0 || evbuffer_add(st->out, body, len) != 0)) {
        status = 500;
        with_data = false;
        len = 0;
    }
    st->eof = true;
    submit_head(req, status, content_type, (long long)len, with_data);
    http_core_finished(st->conn->core, req);
    stall_watch(st);
}

static void h2_start(struct http_request *req, int status, const char *content_type)
{
    struct h2_stream *st = req->_conn;
    if (ensure_out(st) != 0) {
        nghttp2_submit_rst_stream(st->conn->session, NGHTTP2_FLAG_NONE, st->id,
                                  NGHTTP2_INTERNAL_ERROR);
        schedule_flush(st->conn);
        return;
    }
    /* HEAD: the provider sends no bytes (writes are dropped) and ends the stream at the end. */
    submit_head(req, status, content_type, -1, true);
}

static void resume(struct h2_stream *st)
{
    if (st->deferred) {
        st->deferred = false;
        nghttp2_session_resume_data(st->conn->session, st->id);
    }
    schedule_flush(st->conn);
}

static int h2_write(struct http_request *req, const char *a, size_t alen, const char *b,
                    size_t blen)
{
    struct h2_stream *st = req->_conn;
    if (st->out == NULL) return -1; /* no stream head: nothing may follow */
    if ((alen && evbuffer_add(st->out, a, alen) != 0) || (blen && evbuffer_add(st->out, b, blen)))
        return -1;
    resume(st);
    stall_watch(st);
    if (evbuffer_get_length(st->out) > HTTP_OUTPUT_HIGH_WATER) {
        st->waiting_drain = true;
        return 1;
    }
    return 0;
}

static void h2_end(struct http_request *req)
{
    struct h2_stream *st = req->_conn;
    st->eof = true;
    resume(st);
    http_core_finished(st->conn->core, req);
}

static size_t h2_pending(const struct http_request *req)
{
    const struct h2_stream *st = req->_conn;
    return st->out ? evbuffer_get_length(st->out) : 0;
}

static const struct http_proto h2_proto = {
    .name = "HTTP/2",
    .respond = h2_respond,
    .start = h2_start,
    .write = h2_write,
    .end = h2_end,
    .pending = h2_pending,
};

/* Answers an error this file found (limits, timeouts); the handler never sees the request.
 * If the client is still sending, the stream is reset (NO_ERROR) once the answer is out:
 * RFC 9113 8.1 lets a server stop a request whose complete response it has sent. */
static void stream_fail_err(struct h2_stream *st, const struct err *err);
static void stream_fail(struct h2_stream *st, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void stream_fail(struct h2_stream *st, int status, const char *code, const char *fmt, ...)
{
    struct err e;
    err_clear(&e);
    va_list ap;
    va_start(ap, fmt);
    err_vset(&e, status, "invalid_request_error", code, fmt, ap);
    va_end(ap);
    stream_fail_err(st, &e);
}

static void stream_fail_err(struct h2_stream *st, const struct err *err)
{
    struct http_request *req = st->req;
    struct err e = *err;
    if (req->request_id[0] == '\0') http_request_assign_id(st->conn->core, req);
    st->state = ST_ANSWERED;
    st->rst_after_response = !st->remote_done;
    evtimer_del(&st->timer);
    evbuffer_drain(req->body, evbuffer_get_length(req->body));
    st->conn->core->n_active++; /* http_core_finished() in the respond balances it */
    http_request_log_rejected(req, &e);
    http_respond_error(req, &e);
}

static void stream_dispatch(struct h2_stream *st)
{
    st->state = ST_HANDLING;
    evtimer_del(&st->timer);
    http_core_dispatch(st->conn->core, st->req);
}

static void on_stream_timer(evutil_socket_t fd, short what, void *ud)
{
    struct h2_stream *st = ud;
    struct h2_conn *c = st->conn;
    (void)fd;
    (void)what;
    switch (st->state) {
    case ST_HEADERS:
        /* The header block is still open: no other frame may come on this connection. */
        log_conn_error(c, "header block not completed in time", NULL);
        nghttp2_session_terminate_session(c->session, NGHTTP2_PROTOCOL_ERROR);
        break;
    case ST_BODY:
        stream_fail(st, 408, "request_timeout", "request body not received within %ld ms",
                    c->core->opts.body_timeout_ms);
        break;
    default:
        /* Output stuck: the client stopped reading this stream. */
        nghttp2_submit_rst_stream(c->session, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
        break;
    }
    schedule_flush(c);
}

/* ---- nghttp2 callbacks -------------------------------------------------------------- */

static struct h2_stream *stream_of(nghttp2_session *session, int32_t id)
{
    return nghttp2_session_get_stream_user_data(session, id);
}

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *ud)
{
    struct h2_conn *c = ud;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    int32_t id = frame->hd.stream_id;
    /* nghttp2 refuses streams above our SETTINGS once they are acknowledged; this also holds
     * before that, and when shutting down no new request starts. */
    if (c->n_streams >= H2_MAX_STREAMS || c->core->draining) {
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, id, NGHTTP2_REFUSED_STREAM);
        return 0;
    }
    struct h2_stream *st = calloc(1, sizeof *st);
    if (st == NULL) goto oom;
    st->req = http_request_new(c->core, &h2_proto, st);
    if (st->req == NULL) {
        free(st);
        goto oom;
    }
    st->conn = c;
    st->id = id;
    evtimer_assign(&st->timer, c->core->loop, on_stream_timer, st);
    st->next = c->streams;
    if (c->streams) c->streams->prev = st;
    c->streams = st;
    c->n_streams++;
    evtimer_del(&c->idle_ev);
    nghttp2_session_set_stream_user_data(session, id, st);
    timer_ms(&st->timer, c->core->opts.header_timeout_ms);
    return 0;
oom:
    nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, id, NGHTTP2_INTERNAL_ERROR);
    return 0;
}

static int store_header(struct http_request *req, const uint8_t *name, size_t namelen,
                        const uint8_t *value, size_t valuelen)
{
    if (req->n_headers % 16 == 0) {
        struct http_header *h = arena_alloc(req->arena, (req->n_headers + 16) * sizeof *h);
        if (h == NULL) return -1;
        if (req->n_headers) memcpy(h, req->headers, req->n_headers * sizeof *h);
        req->headers = h;
    }
    char *n = arena_strndup(req->arena, (const char *)name, namelen);
    char *v = arena_strndup(req->arena, (const char *)value, valuelen);
    if (n == NULL || v == NULL) return -1;
    req->headers[req->n_headers++] = (struct http_header){n, v};
    return 0;
}

static int set_path(struct http_request *req, const char *p, size_t n)
{
    const char *q = memchr(p, '?', n);
    size_t plen = q ? (size_t)(q - p) : n;
    req->path = arena_strndup(req->arena, p, plen);
    req->query = q ? arena_strndup(req->arena, q + 1, n - plen - 1) : NULL;
    return req->path && (q == NULL || req->query) ? 0 : -1;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags, void *ud)
{
    struct h2_conn *c = ud;
    (void)flags;
    struct h2_stream *st = stream_of(session, frame->hd.stream_id);
    /* Trailers (HEADERS after the request head) carry nothing the gateway uses. */
    if (st == NULL || st->state != ST_HEADERS || frame->hd.type != NGHTTP2_HEADERS ||
        frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    /* RFC 9113 6.5.2's size: name + value + 32 per field. The 32 also bounds the number of
     * fields: at most max_header_bytes / 32. */
    st->head_bytes += namelen + valuelen + 32;
    if (st->head_bytes > c->core->opts.max_header_bytes) st->fail_status = 431;
    if (st->fail_status) return 0;
    struct http_request *req = st->req;
    int rc = 0;
    if (namelen > 0 && name[0] == ':') {
        /* nghttp2 has checked the pseudo-headers: known, once each, before the rest. */
        if (namelen == 7 && memcmp(name, ":method", 7) == 0) {
            req->head = valuelen == 4 && memcmp(value, "HEAD", 4) == 0;
            req->method =
                req->head ? "GET" : arena_strndup(req->arena, (const char *)value, valuelen);
            rc = req->method ? 0 : -1;
        } else if (namelen == 5 && memcmp(name, ":path", 5) == 0) {
            rc = set_path(req, (const char *)value, valuelen);
        } else if (namelen == 10 && memcmp(name, ":authority", 10) == 0) {
            st->authority = arena_strndup(req->arena, (const char *)value, valuelen);
            rc = st->authority ? 0 : -1;
        }
    } else {
        st->has_host |= namelen == 4 && memcmp(name, "host", 4) == 0;
        rc = store_header(req, name, namelen, value, valuelen);
    }
    if (rc != 0) st->fail_status = 500;
    return 0;
}

/* The header block is complete: check it, then wait for the body or dispatch. */
static void headers_complete(struct h2_conn *c, struct h2_stream *st)
{
    struct http_request *req = st->req;
    const struct http_server_opts *o = &c->core->opts;
    /* Handlers read the host from "host", as on HTTP/1.1 (RFC 9113 8.3.1: :authority). */
    if (!st->fail_status && !st->has_host && st->authority &&
        store_header(req, (const uint8_t *)"host", 4, (const uint8_t *)st->authority,
                     strlen(st->authority)) != 0)
        st->fail_status = 500;
    http_request_assign_id(c->core, req);
    if (req->method == NULL) req->method = "GET";
    if (req->path == NULL) req->path = ""; /* CONNECT has no :path: nothing routes there */
    if (st->fail_status == 431) {
        stream_fail(st, 431, "headers_too_large", "request headers exceed the limit of %zu bytes",
                    o->max_header_bytes);
        return;
    }
    if (st->fail_status) {
        stream_fail(st, 500, "out_of_memory", "out of memory");
        return;
    }
    struct err ae;
    err_clear(&ae);
    if (http_request_set_client(c->core, req, c->verdict, c->has_peer ? c->peer : NULL, &ae) != 0) {
        if (c->verdict == ACCESS_DENY) /* this peer may send nothing: no further streams */
            nghttp2_submit_goaway(c->session, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_NO_ERROR, NULL, 0);
        stream_fail_err(st, &ae);
        return;
    }
    const char *cl = http_request_header(req, "content-length");
    if (cl && strtoull(cl, NULL, 10) > o->max_body_bytes) {
        stream_fail(st, 413, "body_too_large", "request body exceeds the limit of %zu bytes",
                    o->max_body_bytes);
        return;
    }
    if (st->remote_done) {
        stream_dispatch(st);
        return;
    }
    st->state = ST_BODY;
    timer_ms(&st->timer, o->body_timeout_ms);
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *ud)
{
    struct h2_conn *c = ud;
    if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) return 0;
    struct h2_stream *st = stream_of(session, frame->hd.stream_id);
    if (st == NULL) return 0;
    if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) st->remote_done = true;
    if (st->state == ST_HEADERS && frame->hd.type == NGHTTP2_HEADERS) {
        headers_complete(c, st);
    } else if (st->state == ST_BODY && st->remote_done) {
        stream_dispatch(st);
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *ud)
{
    struct h2_conn *c = ud;
    (void)flags;
    struct h2_stream *st = stream_of(session, id);
    if (st == NULL || st->state != ST_BODY) return 0; /* answered already: dropped */
    st->body_bytes += len;
    if (st->body_bytes > c->core->opts.max_body_bytes) {
        stream_fail(st, 413, "body_too_large", "request body exceeds the limit of %zu bytes",
                    c->core->opts.max_body_bytes);
        return 0;
    }
    if (evbuffer_add(st->req->body, data, len) != 0)
        stream_fail(st, 500, "out_of_memory", "out of memory");
    return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t id, uint32_t error_code, void *ud)
{
    (void)error_code;
    (void)ud;
    struct h2_stream *st = stream_of(session, id);
    if (st == NULL) return 0;
    nghttp2_session_set_stream_user_data(session, id, NULL);
    stream_free(st);
    return 0;
}

static int on_frame_send(nghttp2_session *session, const nghttp2_frame *frame, void *ud)
{
    (void)ud;
    if ((frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) ||
        !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    struct h2_stream *st = stream_of(session, frame->hd.stream_id);
    if (st && st->rst_after_response && !st->remote_done)
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_NO_ERROR);
    return 0;
}

static int on_frame_not_send(nghttp2_session *session, const nghttp2_frame *frame, int error,
                             void *ud)
{
    (void)ud;
    (void)error;
    /* A response head nghttp2 would not send (too large, stream gone): end the stream rather
     * than leave it open with its handler waiting. */
    if (frame->hd.type == NGHTTP2_HEADERS && stream_of(session, frame->hd.stream_id))
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
                                  NGHTTP2_INTERNAL_ERROR);
    return 0;
}

static int on_error(nghttp2_session *session, int code, const char *msg, size_t len, void *ud)
{
    (void)session;
    char detail[200];
    snprintf(detail, sizeof detail, "%.*s", (int)(len < 190 ? len : 190), msg);
    log_conn_error(ud, nghttp2_strerror(code), detail);
    return 0;
}

/* ---- connection driving ------------------------------------------------------------ */

static void schedule_flush(struct h2_conn *c)
{
    if (c->flush_pending) return;
    c->flush_pending = true;
    event_active(&c->flush_ev, EV_TIMEOUT, 0);
}

/* Frames what nghttp2 has to send and writes it; fires the drain callbacks of streams whose
 * output went back under the low-water mark; closes a connection nghttp2 is done with. */
static void conn_flush(struct h2_conn *c)
{
    c->flush_pending = false;
    size_t written = 0;
    for (;;) {
        while (evbuffer_get_length(c->out) < SEND_BUDGET) {
            const uint8_t *data = NULL;
            ssize_t n = nghttp2_session_mem_send(c->session, &data);
            if (n < 0) {
                log_conn_error(c, nghttp2_strerror((int)n), NULL);
                conn_close(c);
                return;
            }
            if (n == 0) break;
            evbuffer_add(c->out, data, (size_t)n);
        }
        size_t before = evbuffer_get_length(c->out);
        if (before == 0) break;
        int w = conn_send(c);
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            conn_close(c); /* the client is gone */
            return;
        }
        written += before - evbuffer_get_length(c->out);
        if (evbuffer_get_length(c->out) > 0) break; /* the socket is full */
        if (written >= FLUSH_BUDGET) {
            schedule_flush(c); /* more next turn, after other connections */
            break;
        }
    }
    size_t pending = evbuffer_get_length(c->out);
    if (pending > 0 && !c->writing) {
        /* Output stuck as long as the idle timeout: the client stopped reading at all. */
        struct timeval tv = {c->core->opts.idle_timeout_ms / 1000,
                             (c->core->opts.idle_timeout_ms % 1000) * 1000};
        event_add(&c->write_ev, &tv);
        c->writing = true;
    } else if (pending == 0 && c->writing) {
        event_del(&c->write_ev);
        c->writing = false;
    }
    for (struct h2_stream *st = c->streams; st; st = st->next) {
        if (!st->drain_due) continue;
        st->drain_due = false;
        struct http_request *req = st->req;
        if (!req->done && req->_drain_cb) req->_drain_cb(req, req->_cb_ud);
    }
    if (pending == 0 && !nghttp2_session_want_read(c->session) &&
        !nghttp2_session_want_write(c->session))
        conn_close(c); /* GOAWAY sent or received and every stream is over */
}

static void on_flush(evutil_socket_t fd, short what, void *ud)
{
    (void)fd;
    (void)what;
    conn_flush(ud);
}

static void on_writable(evutil_socket_t fd, short what, void *ud)
{
    struct h2_conn *c = ud;
    (void)fd;
    if (what & EV_TIMEOUT) {
        conn_close(c);
        return;
    }
    conn_flush(c);
}

static int feed(struct h2_conn *c, const uint8_t *p, size_t n)
{
    ssize_t rv = nghttp2_session_mem_recv(c->session, p, n);
    if (rv < 0) {
        /* Fatal for this connection only (a flood, a failing callback); protocol errors are
         * answered by nghttp2 itself with GOAWAY and show up as want_read() == 0. */
        log_conn_error(c, nghttp2_strerror((int)rv), NULL);
        conn_close(c);
        return -1;
    }
    schedule_flush(c);
    return 0;
}

static void on_readable(evutil_socket_t fd, short what, void *ud)
{
    struct h2_conn *c = ud;
    uint8_t buf[READ_CHUNK];
    (void)fd;
    (void)what;
    ssize_t n = conn_recv(c, buf, sizeof buf);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
        conn_close(c); /* EOF or error: every stream still open is aborted */
        return;
    }
    /* A record larger than the chunk stays decrypted inside OpenSSL: read it next turn. */
    if (feed(c, buf, (size_t)n) == 0 && c->tls && tls_pending(c->tls))
        event_active(&c->read_ev, EV_READ, 0);
}

static void on_idle(evutil_socket_t fd, short what, void *ud)
{
    struct h2_conn *c = ud;
    (void)fd;
    (void)what;
    /* No stream for idle_timeout_ms: say goodbye; the flush closes once GOAWAY is out. */
    nghttp2_session_terminate_session(c->session, NGHTTP2_NO_ERROR);
    schedule_flush(c);
}

static void conn_close(struct h2_conn *c)
{
    struct http_core *core = c->core;
    while (c->streams) {
        nghttp2_session_set_stream_user_data(c->session, c->streams->id, NULL);
        stream_free(c->streams);
    }
    nghttp2_session_del(c->session);
    event_del(&c->read_ev);
    event_del(&c->write_ev);
    event_del(&c->flush_ev);
    event_del(&c->idle_ev);
    evbuffer_free(c->out);
    tls_conn_free(c->tls, true);
    close(c->fd);
    if (c->prev)
        c->prev->next = c->next;
    else
        core->h2_conns = c->next;
    if (c->next) c->next->prev = c->prev;
    core->n_conns--;
    free(c);
}

static int session_new(struct h2_conn *c)
{
    nghttp2_session_callbacks *cb = NULL;
    nghttp2_option *opt = NULL;
    int rv = -1;
    if (nghttp2_session_callbacks_new(&cb) != 0 || nghttp2_option_new(&opt) != 0) goto out;
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
    nghttp2_session_callbacks_set_on_frame_not_send_callback(cb, on_frame_not_send);
    nghttp2_session_callbacks_set_error_callback2(cb, on_error);
    /* Rapid reset (CVE-2023-44487): each new stream starts a handler, so a client opening and
     * resetting streams could make us start and cancel work without bound; past the bucket
     * nghttp2 ends the connection with GOAWAY. Closed streams are not kept for priority. */
    nghttp2_option_set_stream_reset_rate_limit(opt, H2_RESET_BURST, H2_RESET_RATE);
    nghttp2_option_set_no_closed_streams(opt, 1);
    if (nghttp2_session_server_new2(&c->session, cb, c, opt) != 0) goto out;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, H2_MAX_STREAMS},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)c->core->opts.max_header_bytes},
    };
    if (nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]) != 0 ||
        nghttp2_session_set_local_window_size(c->session, NGHTTP2_FLAG_NONE, 0, CONN_WINDOW) != 0)
        goto out;
    rv = 0;
out:
    nghttp2_session_callbacks_del(cb);
    nghttp2_option_del(opt);
    return rv;
}

int h2_conn_start(struct http_core *core, int fd, struct ssl_st *tls, struct evbuffer *input,
                  const uint8_t *peer, enum access_verdict verdict, struct err *err)
{
    struct h2_conn *c = calloc(1, sizeof *c);
    if (c == NULL || (c->out = evbuffer_new()) == NULL) goto fail;
    c->core = core;
    c->fd = fd;
    c->tls = tls;
    tls = NULL;
    c->has_peer = peer != NULL;
    if (peer) memcpy(c->peer, peer, 16);
    c->verdict = verdict;
    if (session_new(c) != 0) goto fail;
    event_assign(&c->read_ev, core->loop, fd, EV_READ | EV_PERSIST, on_readable, c);
    event_assign(&c->write_ev, core->loop, fd, EV_WRITE | EV_PERSIST, on_writable, c);
    event_assign(&c->flush_ev, core->loop, -1, 0, on_flush, c);
    evtimer_assign(&c->idle_ev, core->loop, on_idle, c);
    c->next = core->h2_conns;
    if (core->h2_conns) core->h2_conns->prev = c;
    core->h2_conns = c;
    core->n_conns++;
    event_add(&c->read_ev, NULL);
    timer_ms(&c->idle_ev, core->opts.idle_timeout_ms);
    if (c->tls) event_active(&c->read_ev, EV_READ, 0); /* OpenSSL may hold the preface */
    size_t n = input ? evbuffer_get_length(input) : 0;
    if (n == 0) {
        schedule_flush(c); /* our SETTINGS go first */
        return 0;
    }
    const uint8_t *p = evbuffer_pullup(input, -1);
    if (feed(c, p, n) == 0) evbuffer_drain(input, n);
    return 0;
fail:
    if (c) {
        if (c->session) nghttp2_session_del(c->session);
        if (c->out) evbuffer_free(c->out);
        tls_conn_free(c->tls, false);
        free(c);
    }
    tls_conn_free(tls, false);
    close(fd);
    return err_oom(err);
}

void h2_drain_all(struct http_core *core)
{
    for (struct h2_conn *c = core->h2_conns; c; c = c->next) {
        /* Streams up to the last one started are answered; the client retries any later one
         * elsewhere (RFC 9113 6.8). The flush closes the connection when all are done. */
        nghttp2_submit_goaway(c->session, NGHTTP2_FLAG_NONE,
                              nghttp2_session_get_last_proc_stream_id(c->session), NGHTTP2_NO_ERROR,
                              NULL, 0);
        schedule_flush(c);
    }
}

void h2_free_all(struct http_core *core)
{
    while (core->h2_conns) conn_close(core->h2_conns);
}
