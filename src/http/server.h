/*
 * server — the front door: accepts connections on the event loop, parses HTTP/1.1 requests
 * with http-parser, enforces input limits and timeouts, and writes responses (whole or
 * streamed with chunked encoding). A connection whose first bytes are the HTTP/2 client
 * preface (h2c with prior knowledge) is handed to h2.c instead; the request and response API
 * (http/request.h) is the same for both.
 *
 * Lifecycle of a request: the server parses the head and body (up to limits), then calls the
 * handler with a `struct http_request` it owns. The handler answers now or later with
 * http_respond() or http_stream_start()/write()/end(). If the client goes away first, the
 * server calls the request's abort callback (if set) exactly once and then frees the request;
 * after that the handler must not touch it. One request per HTTP/1.1 connection is handled at
 * a time; pipelined requests wait their turn (HTTP/2 runs up to H2_MAX_STREAMS at once).
 *
 * Errors the server detects itself (413, 431, 400, 408) are answered with the same
 * OpenAI-style JSON body as every other error, then the connection closes "lingering": the
 * write side is shut down and request bytes still on their way are read and dropped for a
 * bounded time, so the client reads the error instead of a connection reset.
 *
 * The head is parsed strictly (RFC 9112): HTTP/1.1 without exactly one Host, a header name
 * with a space or other non-token byte ("Foo : bar"), obsolete line folding, and a chunk
 * larger than what is left of the body limit are refused at once.
 *
 * HEAD is served as GET: the handler sees method "GET" and `head` set, and whatever it answers
 * goes out with the same status and headers (Content-Length included) but without a body.
 *
 * Accepting: connections above max_connections are closed at once (logged, rate-limited);
 * when accept() fails (EMFILE, ENFILE, ...) the listener pauses briefly instead of spinning.
 *
 * Thread: everything here runs on the event-loop thread only.
 */
#ifndef STRATUS_HTTP_SERVER_H
#define STRATUS_HTTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http/request.h"
#include "util/err.h"

struct event_base;
struct http_server;

/**
 * Binds and listens on host:port (port 0 picks a free one).
 * @return an *owned* server (free with http_server_free), or NULL with `err` filled.
 */
struct http_server *http_server_new(struct event_base *loop, const char *host, int port,
                                    struct http_server_opts opts, http_handler_cb handler, void *ud,
                                    struct err *err);

/**
 * Like http_server_new, but listens on a UNIX socket at `path` (replaced if it exists),
 * readable and writable by the owner only: for engine workers that serve the gateway alone.
 */
struct http_server *http_server_new_unix(struct event_base *loop, const char *path,
                                         struct http_server_opts opts, http_handler_cb handler,
                                         void *ud, struct err *err);

/** The address actually bound ("127.0.0.1:PORT"), borrowed from the server. */
const char *http_server_address(const struct http_server *s);

/** Stops accepting new connections and closes idle keep-alive connections; connections with
 *  a request in flight close once it is answered. */
void http_server_drain(struct http_server *s);

/** Replaces the access policy (a config reload; `access` borrowed until the next call or
 *  the server's end). New connections are judged by it; so is every later request on a
 *  connection opened before, as if it had connected now. */
void http_server_set_access(struct http_server *s, const struct access_policy *access);

/** Requests being handled right now (for graceful shutdown). */
size_t http_server_active_requests(const struct http_server *s);

/** Connections open right now. */
size_t http_server_connections(const struct http_server *s);

/** What the accept path has refused or survived since start (for logs and metrics). */
struct http_server_stats {
    uint64_t refused;       /* connections closed at once: max_connections reached */
    uint64_t accept_errors; /* accept() failures (EMFILE, ENFILE, ENOBUFS, ...) */
    uint64_t accept_pauses; /* times the listener paused after such a failure */
};

/** Fills `out` with the server's counters. */
void http_server_stats(const struct http_server *s, struct http_server_stats *out);

/**
 * File descriptors kept back from client connections for everything else the process opens:
 * stdio, the event loop's epoll/signal/notify descriptors, the listener, SQLite's database,
 * WAL and shm files (two handles), Redis/PostgreSQL connections, engine workers' sockets and
 * pipes, DNS resolutions in flight, the files that config reloads read. A running gateway
 * holds about 20 of these; 64 leaves room for bursts.
 */
#define HTTP_SERVER_FD_RESERVE 64

/**
 * How many client connections `nofile` descriptors (RLIMIT_NOFILE) can carry: at most
 * `configured`, and at most half of what HTTP_SERVER_FD_RESERVE leaves, because every client
 * connection with a request in flight may hold an upstream connection (libcurl) at the same
 * time, and an upstream that cannot connect fails the request with a 502. At least 1.
 */
int http_server_connection_cap(uint64_t nofile, int configured);

/** Closes every connection (aborting requests in flight) and frees. NULL-safe. */
void http_server_free(struct http_server *s);

#endif
