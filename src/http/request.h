/*
 * request — one HTTP request and its response, whatever protocol carried it.
 *
 * A `struct http_request` is what handlers see: method, path, headers, the complete body and
 * an arena, plus the response API (http_respond, http_stream_start/write/end, headers,
 * callbacks). The same object comes from an HTTP/1.1 connection (server.c) or from one
 * HTTP/2 stream (h2.c); each protocol plugs its writer into the request through `struct
 * http_proto`, so a handler never knows which one it is talking to.
 *
 * Handlers include "http/server.h", which includes this header. The second half of this file
 * (struct http_proto, struct http_core and the http_core_* / http_request_new functions) is
 * for the connection protocols in src/http/ only.
 *
 * Lifecycle: the protocol builds the request, reads its head and body within the limits, and
 * calls the handler. The handler answers now or later with http_respond() or
 * http_stream_start()/write()/end(). If the client goes away first (a disconnect, or an
 * HTTP/2 RST_STREAM), the protocol calls the abort callback (if set) exactly once and then
 * frees the request; after that the handler must not touch it. After the response is done
 * the handler must not touch the request either: the protocol frees it when the last byte is
 * written (never from inside a call the handler makes).
 *
 * Thread: everything here runs on the event-loop thread only.
 */
#ifndef STRATUS_HTTP_REQUEST_H
#define STRATUS_HTTP_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http/access.h"
#include "obs/log.h"
#include "util/err.h"

struct event_base;
struct evbuffer;
struct arena;
struct tls_ctx;

struct http_header {
    const char *name; /* lower-cased, arena */
    const char *value;
};

struct http_request;
struct http_proto;

typedef void (*http_handler_cb)(struct http_request *req, void *ud);
typedef void (*http_abort_cb)(struct http_request *req, void *ud);
typedef void (*http_drain_cb)(struct http_request *req, void *ud);

struct http_request {
    struct arena *arena; /* owned by the request; freed with it */
    const char *method;  /* "GET", "POST", ... ("GET" for a HEAD request) */
    const char *path;    /* without the query string */
    const char *query;   /* after '?', or NULL */
    struct http_header *headers;
    size_t n_headers;
    struct evbuffer *body; /* complete request body; owned by the request */
    uint64_t start_ns;     /* monotonic time the first byte of the request arrived */
    char request_id[72];   /* the client's x-request-id if sane, else generated */
    bool head_sent;        /* status line and headers are written */
    bool done;             /* the response is complete */
    /* http_request_hold_end: the end of the response waits (what, in the arena) */
    bool _hold_end;
    int _held; /* 0 nothing waits, 1 a whole answer, 2 a stream's end */
    int _held_status;
    const char *_held_type, *_held_body;
    size_t _held_len;
    char *_held_data; /* stream writes kept (malloc, freed with the request) */
    size_t _held_data_len, _held_data_cap;
    bool log;  /* write the per-request log line (config log.requests) */
    bool head; /* a HEAD request: answered like GET, but no body is sent */
    /* Who sent it (http/access.h): `client` is the address every check applies to — the
     * peer, or the one a trusted proxy named in X-Forwarded-For (then `proxied`). Both ""
     * on a UNIX socket. */
    char client[CIDR_TEXT_SIZE];
    char peer[CIDR_TEXT_SIZE];
    uint8_t client_ip[16]; /* `client` as bytes (IPv4 mapped); valid when client[0] */
    bool proxied;
    /* Private to src/http/. */
    const struct http_proto *_proto; /* the protocol that carries this request */
    void *_conn;                     /* that protocol's connection (HTTP/1.1) or stream (HTTP/2) */
    http_abort_cb _abort_cb;
    http_drain_cb _drain_cb;
    void *_cb_ud;
    bool _stream_chunked;
    int _status;
    struct http_header *_resp_headers; /* extra response headers, arena */
    size_t _n_resp_headers, _cap_resp_headers;
};

/** Limits and switches of one listener; every protocol on it enforces the same ones. */
struct http_server_opts {
    size_t max_body_bytes;   /* larger body → 413 */
    size_t max_header_bytes; /* larger head (HTTP/2: header list, RFC 9113 size rule) → 431 */
    long header_timeout_ms;  /* complete head within this → else 408 (HTTP/2: connection error) */
    long body_timeout_ms;    /* complete body within this → else 408 */
    long idle_timeout_ms;    /* idle keep-alive connection; output stuck this long */
    int max_connections;
    bool log_requests;
    struct access_policy access; /* `access:`; all zero: everyone, X-Forwarded-For ignored */
    struct tls_ctx *tls;         /* borrowed (outlives the server); NULL: plain TCP. With it, every
                                  * connection starts with a TLS handshake (within header_timeout_ms)
                                  * and ALPN "h2" hands it to HTTP/2 */
};

/** Case-insensitive lookup of a request header; borrowed, NULL if absent. */
const char *http_request_header(const struct http_request *req, const char *name);

/** "HTTP/1.1" or "HTTP/2": what carried the request (for logs). */
const char *http_request_protocol(const struct http_request *req);

/** Adds a response header (name and value copied into the request arena). Before the head.
 *  Values never carry CR/LF onto the wire; HTTP/2 sends the name lower-cased. */
int http_add_header(struct http_request *req, const char *name, const char *value);

/** Sets callbacks: `abort` when the client goes away (disconnect, RST_STREAM) before the
 *  response is done; `drain` when the output waiting for this request fell below the
 *  low-water mark after http_stream_write returned 1. */
void http_request_set_callbacks(struct http_request *req, http_abort_cb abort, http_drain_cb drain,
                                void *ud);

/** Sends a complete response with Content-Length. `body` is copied. */
void http_respond(struct http_request *req, int status, const char *content_type, const char *body,
                  size_t len);

/** Sends an OpenAI-style JSON error from `e` ({"error":{message,type,code,param}}). */
void http_respond_error(struct http_request *req, const struct err *e);

/**
 * From now on whatever the response still sends — a whole answer (http_respond, errors
 * included), a stream's last events and its end — is kept until http_request_release_end;
 * what went out before stays out. For answers that must not be complete for the client
 * before something else is done (store.durable: the ledger row's commit).
 */
void http_request_hold_end(struct http_request *req);

/** Sends what was kept, if anything; later ends go out at once. */
void http_request_release_end(struct http_request *req);

/** Starts a streamed response (chunked on HTTP/1.1, DATA frames on HTTP/2). */
void http_stream_start(struct http_request *req, int status, const char *content_type);

/**
 * Writes a piece of a streamed response.
 * @return 0 ok; 1 ok but the client is slow (output above the high-water mark: pause the
 *         producer until the drain callback); -1 the client is gone (abort callback comes).
 *         On HTTP/2 "slow" is per stream: a stream its client does not read (flow-control
 *         window closed) pauses only its own producer.
 */
int http_stream_write(struct http_request *req, const char *data, size_t len);

/** Like http_stream_write for two pieces sent as one chunk (an event and its terminator). */
int http_stream_write2(struct http_request *req, const char *a, size_t alen, const char *b,
                       size_t blen);

/** Ends a streamed response. */
void http_stream_end(struct http_request *req);

/** Bytes of response waiting to be written for this request. */
size_t http_request_pending_output(const struct http_request *req);

/* ---- for the connection protocols in src/http/ only ---------------------------------- */

/* Output above OUTPUT_HIGH_WATER makes http_stream_write say "slow"; the drain callback comes
 * once it is back under OUTPUT_LOW_WATER. Per connection on HTTP/1.1, per stream on HTTP/2. */
#define HTTP_OUTPUT_HIGH_WATER (256 * 1024)
#define HTTP_OUTPUT_LOW_WATER  (64 * 1024)

/**
 * How a protocol writes a response. Each member is called only while the request is not
 * done (http_respond/http_stream_* check that first); `respond` and `start` only before the
 * head is sent. `respond` and `end` must mark the response complete (http_core_finished).
 */
struct http_proto {
    const char *name; /* "HTTP/1.1", "HTTP/2" */
    void (*respond)(struct http_request *req, int status, const char *content_type,
                    const char *body, size_t len);
    void (*start)(struct http_request *req, int status, const char *content_type);
    int (*write)(struct http_request *req, const char *a, size_t alen, const char *b, size_t blen);
    void (*end)(struct http_request *req);
    size_t (*pending)(const struct http_request *req);
};

struct h2_conn;

/** What every connection of one listener shares, whatever its protocol. Owned by the
 *  http_server; connections borrow it for their whole life. */
struct http_core {
    struct event_base *loop;
    struct http_server_opts opts;
    http_handler_cb handler;
    void *ud;
    size_t n_conns;  /* open connections, HTTP/1.1 and HTTP/2 */
    size_t n_active; /* requests in a handler: dispatched and not yet done or aborted */
    bool draining;   /* shutting down: no new connections, requests or streams */
    uint64_t id_state;
    struct h2_conn *h2_conns;   /* doubly linked; h2.c keeps it */
    struct log_rate h2_log;     /* HTTP/2 connection errors an outsider can cause at will */
    struct log_rate access_log; /* refused addresses (ip_not_allowed) */
    bool access_changed;        /* the policy was replaced: connections' verdicts are stale */
};

/** A new request for `conn` spoken by `proto`: arena, empty body, start time, log switch.
 *  @return *owned* (http_request_free), or NULL when out of memory. */
struct http_request *http_request_new(struct http_core *core, const struct http_proto *proto,
                                      void *conn);

/** Frees the request, its body and its arena (running the arena's cleanups). NULL-safe. */
void http_request_free(struct http_request *req);

/** Sets req->request_id from the client's x-request-id if sane, else a fresh "req_…". */
void http_request_assign_id(struct http_core *core, struct http_request *req);

/**
 * Sets req->client/peer/proxied for a request from `peer` (NULL: not an IP socket) whose
 * connection got `verdict` at accept, reading X-Forwarded-For from the head when the peer is a
 * trusted proxy; then applies access.allow to the client. Call once the head is complete and
 * before any body byte is read. A refusal is logged (naming the address, rate-limited).
 * @return 0, or -1 with `e`: 403 ip_not_allowed, 400 bad_forwarded_for (an entry that is
 *         not an IP address).
 */
int http_request_set_client(struct http_core *core, struct http_request *req,
                            enum access_verdict verdict, const uint8_t *peer, struct err *e);

/** A request enters its handler (counted in n_active). */
void http_core_dispatch(struct http_core *core, struct http_request *req);

/** The response is complete: marks it done and stops counting it. */
void http_core_finished(struct http_core *core, struct http_request *req);

/** The client left before the response was complete: marks it done, stops counting it and
 *  calls the abort callback once. Does nothing for a request that is done already. */
void http_core_abort(struct http_core *core, struct http_request *req);

/** The access-log line for a request the server refused itself (limits, framing, timeouts):
 *  the API never saw it, and without this line it would leave no trace. */
void http_request_log_rejected(const struct http_request *req, const struct err *e);

#endif
