/*
 * DESIGN
 * The response API every handler uses, independent of the protocol: the checks that make a
 * late or repeated call harmless (a response after the client left, a second head) live here
 * once, and each protocol only implements `struct http_proto`. What both protocols need to
 * build a request (arena, id, accounting of requests in handlers, the log line for requests
 * the server refuses itself) is here too, so HTTP/1.1 and HTTP/2 cannot drift apart on it.
 */
#include "http/request.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/arena.h"
#include "util/clock.h"
#include "util/json_text.h"

struct http_request *http_request_new(struct http_core *core, const struct http_proto *proto,
                                      void *conn)
{
    struct arena *a = arena_new(4096);
    if (a == NULL) return NULL;
    struct http_request *req = arena_calloc(a, 1, sizeof *req);
    struct evbuffer *body = evbuffer_new();
    if (req == NULL || body == NULL) {
        if (body) evbuffer_free(body);
        arena_free(a);
        return NULL;
    }
    req->arena = a;
    req->body = body;
    req->_proto = proto;
    req->_conn = conn;
    req->start_ns = clock_now_ns();
    req->log = core->opts.log_requests;
    return req;
}

void http_request_free(struct http_request *req)
{
    if (req == NULL) return;
    evbuffer_free(req->body);
    arena_free(req->arena);
}

static uint64_t next_random(struct http_core *core)
{
    /* xorshift64*: request ids need to be unique, not secret. */
    uint64_t x = core->id_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    core->id_state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static bool request_id_acceptable(const char *v)
{
    size_t n = strlen(v);
    if (n == 0 || n > 64) return false;
    for (size_t i = 0; i < n; i++) {
        char ch = v[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.' || ch == ':';
        if (!ok) return false;
    }
    return true;
}

void http_request_assign_id(struct http_core *core, struct http_request *req)
{
    const char *rid = http_request_header(req, "x-request-id");
    if (rid && request_id_acceptable(rid)) {
        snprintf(req->request_id, sizeof req->request_id, "%s", rid);
        return;
    }
    /* "req_" and 16 hex digits. */
    uint64_t r = next_random(core);
    memcpy(req->request_id, "req_", 4);
    for (int i = 0; i < 16; i++)
        req->request_id[4 + i] = "0123456789abcdef"[(r >> (60 - 4 * i)) & 15];
    req->request_id[20] = '\0';
}

int http_request_set_client(struct http_core *core, struct http_request *req,
                            enum access_verdict verdict, const uint8_t *peer, struct err *e)
{
    if (peer == NULL) return 0; /* a UNIX socket: the gateway's own engine workers */
    const struct access_policy *p = &core->opts.access;
    /* After a reload a connection's verdict from accept may be stale; judging again costs a
     * walk over a few CIDRs. */
    if (core->access_changed) verdict = access_classify(p, peer);
    cidr_format_addr(peer, req->peer);
    memcpy(req->client_ip, peer, 16);
    if (verdict == ACCESS_PER_REQUEST) {
        const char *xff[16];
        size_t n = 0;
        for (size_t i = 0; i < req->n_headers && n < 16; i++)
            if (strcmp(req->headers[i].name, "x-forwarded-for") == 0)
                xff[n++] = req->headers[i].value;
        if (access_xff_client(p, peer, xff, n, req->client_ip) != 0) {
            snprintf(req->client, sizeof req->client, "%s", req->peer);
            return err_set(e, 400, "invalid_request_error", "bad_forwarded_for",
                           "X-Forwarded-For from trusted proxy %s holds an entry that is not "
                           "an IP address",
                           req->peer);
        }
        req->proxied = memcmp(req->client_ip, peer, 16) != 0;
    }
    cidr_format_addr(req->client_ip, req->client);
    bool allowed =
        verdict == ACCESS_PER_REQUEST ? access_allowed(p, req->client_ip) : verdict == ACCESS_ALLOW;
    if (allowed) return 0;
    access_refuse(req->client_ip, e);
    unsigned long dropped = 0;
    if (log_rate_allow(&core->access_log, 20, clock_now_ns(), &dropped)) {
        struct log_line l;
        log_begin(&l, "warn", "ip_not_allowed");
        log_str(&l, "client", req->client);
        if (req->proxied) log_str(&l, "peer", req->peer);
        log_str(&l, "path", req->path);
        if (dropped) log_int(&l, "suppressed", (long long)dropped);
        log_str(&l, "message", "client address outside access.allow: 403");
        log_end(&l);
    }
    return -1;
}

void http_core_dispatch(struct http_core *core, struct http_request *req)
{
    core->n_active++;
    core->handler(req, core->ud);
}

void http_core_finished(struct http_core *core, struct http_request *req)
{
    if (req->done) return;
    req->done = true;
    core->n_active--;
}

void http_core_abort(struct http_core *core, struct http_request *req)
{
    if (req->done) return;
    req->done = true;
    core->n_active--;
    if (req->_abort_cb) req->_abort_cb(req, req->_cb_ud);
}

void http_request_log_rejected(const struct http_request *req, const struct err *e)
{
    if (!req->log) return;
    struct log_line l;
    log_begin(&l, "info", "request");
    log_str(&l, "id", req->request_id);
    log_str(&l, "method", req->head ? "HEAD" : req->method ? req->method : "?");
    log_str(&l, "path", req->path ? req->path : "?");
    log_int(&l, "status", e->status);
    if (req->client[0]) log_str(&l, "client", req->client);
    if (req->proxied) log_str(&l, "peer", req->peer);
    log_ms(&l, "latency_ms", (double)(clock_now_ns() - req->start_ns) / 1e6);
    log_str(&l, "error", e->msg);
    log_end(&l);
}

/* ---- the handler-facing API ---------------------------------------------------------- */

const char *http_request_header(const struct http_request *req, const char *name)
{
    for (size_t i = 0; i < req->n_headers; i++)
        if (strcasecmp(req->headers[i].name, name) == 0) return req->headers[i].value;
    return NULL;
}

int http_add_header(struct http_request *req, const char *name, const char *value)
{
    if (req->_n_resp_headers == req->_cap_resp_headers) {
        size_t cap = req->_cap_resp_headers ? req->_cap_resp_headers * 2 : 8;
        struct http_header *h = arena_alloc(req->arena, cap * sizeof *h);
        if (h == NULL) return -1;
        if (req->_n_resp_headers) memcpy(h, req->_resp_headers, req->_n_resp_headers * sizeof *h);
        req->_resp_headers = h;
        req->_cap_resp_headers = cap;
    }
    char *n = arena_strdup(req->arena, name), *v = arena_strdup(req->arena, value);
    if (n == NULL || v == NULL) return -1;
    /* Header injection guard: values never carry CR/LF onto the wire. */
    for (char *p = v; *p; p++)
        if (*p == '\r' || *p == '\n') *p = ' ';
    req->_resp_headers[req->_n_resp_headers++] = (struct http_header){n, v};
    return 0;
}

void http_request_set_callbacks(struct http_request *req, http_abort_cb abort, http_drain_cb drain,
                                void *ud)
{
    req->_abort_cb = abort;
    req->_drain_cb = drain;
    req->_cb_ud = ud;
}

size_t http_request_pending_output(const struct http_request *req)
{
    return req->_conn ? req->_proto->pending(req) : 0;
}

void http_respond(struct http_request *req, int status, const char *content_type, const char *body,
                  size_t len)
{
    if (req->done || req->head_sent || req->_held) return;
    if (req->_hold_end) {
        char *copy = arena_alloc(req->arena, len ? len : 1);
        const char *type = arena_strdup(req->arena, content_type);
        if (copy && type) {
            memcpy(copy, body, len);
            req->_held = 1;
            req->_held_status = status;
            req->_held_type = type;
            req->_held_body = copy;
            req->_held_len = len;
            return;
        }
        /* out of memory: answer now rather than never */
    }
    req->_proto->respond(req, status, content_type, body, len);
}

static void free_held(void *ud)
{
    struct http_request *req = ud;
    free(req->_held_data);
    req->_held_data = NULL;
}

void http_request_hold_end(struct http_request *req)
{
    if (req->_hold_end) return;
    if (arena_on_free(req->arena, free_held, req) != 0) return; /* out of memory: no holding */
    req->_hold_end = true;
}

void http_request_release_end(struct http_request *req)
{
    req->_hold_end = false;
    int held = req->_held;
    req->_held = 0;
    if (req->done || req->_conn == NULL) return;
    if (req->_held_data_len > 0) {
        req->_proto->write(req, req->_held_data, req->_held_data_len, NULL, 0);
        req->_held_data_len = 0;
    }
    if (held == 1)
        req->_proto->respond(req, req->_held_status, req->_held_type, req->_held_body,
                             req->_held_len);
    else if (held == 2)
        req->_proto->end(req);
}

void http_respond_error(struct http_request *req, const struct err *e)
{
    char msg[1100], body[1600];
    json_escape(msg, sizeof msg, e->msg, strlen(e->msg));
    int status = e->status ? e->status : 500;
    int n =
        snprintf(body, sizeof body, "{\"error\":{\"message\":\"%s\",\"type\":\"%s\",\"code\":", msg,
                 e->type ? e->type : "server_error");
    if (e->code)
        n += snprintf(body + n, sizeof body - (size_t)n, "\"%s\"", e->code);
    else
        n += snprintf(body + n, sizeof body - (size_t)n, "null");
    if (e->param)
        n += snprintf(body + n, sizeof body - (size_t)n, ",\"param\":\"%s\"}}", e->param);
    else
        n += snprintf(body + n, sizeof body - (size_t)n, ",\"param\":null}}");
    if (n >= (int)sizeof body) n = (int)sizeof body - 1;
    http_respond(req, status, "application/json", body, (size_t)n);
}

void http_stream_start(struct http_request *req, int status, const char *content_type)
{
    if (req->done || req->head_sent) return;
    http_add_header(req, "Cache-Control", "no-cache");
    req->_proto->start(req, status, content_type);
}

int http_stream_write2(struct http_request *req, const char *a, size_t alen, const char *b,
                       size_t blen)
{
    if (req->done || req->_conn == NULL) return -1;
    if (alen + blen == 0 || req->head) return 0; /* HEAD: the head went out, the body never does */
    if (req->_hold_end) {
        size_t need = req->_held_data_len + alen + blen;
        if (need > req->_held_data_cap) {
            size_t cap = req->_held_data_cap ? req->_held_data_cap * 2 : 1024;
            while (cap < need) cap *= 2;
            char *p = realloc(req->_held_data, cap);
            if (p == NULL) return -1;
            req->_held_data = p;
            req->_held_data_cap = cap;
        }
        if (alen) memcpy(req->_held_data + req->_held_data_len, a, alen);
        if (blen) memcpy(req->_held_data + req->_held_data_len + alen, b, blen);
        req->_held_data_len = need;
        return 0;
    }
    return req->_proto->write(req, a, alen, b, blen);
}

int http_stream_write(struct http_request *req, const char *data, size_t len)
{
    return http_stream_write2(req, data, len, NULL, 0);
}

void http_stream_end(struct http_request *req)
{
    if (req->done || req->_held) return;
    if (req->_hold_end) {
        req->_held = 2;
        return;
    }
    req->_proto->end(req);
}

const char *http_request_protocol(const struct http_request *req)
{
    return req->_proto ? req->_proto->name : "HTTP/1.1";
}
