/*
 * h2 — HTTP/2 connections (RFC 9113) on the server's event loop, framing and HPACK by
 * nghttp2. Each stream becomes one `struct http_request` (http/request.h) handed to the same
 * handler as HTTP/1.1 requests, under the same limits (body → 413, header list → 431, body
 * and idle timeouts → 408 / close); the response API maps onto nghttp2 data providers.
 *
 * How a connection gets here: server.c accepts every connection as HTTP/1.1 and, when its
 * first bytes are the client connection preface (h2c with prior knowledge, what the AWS SDK's
 * HTTP/2 handler and `curl --http2-prior-knowledge` send on http:// URLs), calls
 * h2_conn_start() with the socket and the bytes read so far. A TLS listener calls the same
 * function with the TLS session once ALPN has chosen "h2"; the socket I/O is confined to
 * conn_recv()/conn_send() in h2.c, which then go through http/tls.h.
 * HTTP/1.1 Upgrade: h2c is not supported (RFC 9113 deprecates it).
 *
 * Per connection: at most H2_MAX_STREAMS streams at once (SETTINGS_MAX_CONCURRENT_STREAMS;
 * more are refused with RST_STREAM REFUSED_STREAM); client resets are rate-limited (rapid
 * reset, CVE-2023-44487: a burst of H2_RESET_BURST, then H2_RESET_RATE per second, past that
 * nghttp2 sends GOAWAY and the connection closes). A client RST_STREAM aborts its request (the
 * abort callback fires at once); a closed connection aborts all of its streams. A protocol error
 * ends that connection (GOAWAY) and nothing else.
 *
 * Thread: event-loop thread only.
 */
#ifndef STRATUS_HTTP_H2_H
#define STRATUS_HTTP_H2_H

#include <stddef.h>

#include "http/request.h"
#include "util/err.h"

struct ssl_st;

#define H2_MAX_STREAMS 100
#define H2_RESET_BURST 200
#define H2_RESET_RATE  100

/** Bytes of the client connection preface "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n". */
#define H2_PREFACE_LEN 24

/**
 * Whether the first bytes of a connection are the HTTP/2 client preface.
 * @return 1 they are (p holds at least H2_PREFACE_LEN bytes of it); 0 they may be (p is a
 *         proper prefix of it: read more); -1 they are not (an HTTP/1.x request or garbage).
 */
int h2_preface_match(const char *p, size_t n);

/**
 * Serves the accepted socket `fd` as an HTTP/2 connection of `core`.
 * @param fd     non-blocking socket; *takes ownership* (closed with the connection, also on
 *               failure).
 * @param tls    the connection's TLS session after a handshake whose ALPN chose "h2" (or one
 *               without ALPN that opened with the preface); NULL for cleartext (h2c).
 *               *takes ownership* (freed with the connection, also on failure).
 * @param input  bytes read (decrypted) so far, starting with the preface, or NULL/empty; they
 *               are *moved* out of it (the buffer stays the caller's).
 * @param peer     the peer's address (IPv4 mapped), *copied*; NULL when not an IP socket.
 * @param verdict  what access made of that peer at accept (http/access.h): a refused peer's
 *                 streams get 403 ip_not_allowed and the connection goes away after them.
 * @return 0, the connection is counted in core->n_conns and linked in core->h2_conns; -1 with
 *         `err` filled (out of memory).
 */
int h2_conn_start(struct http_core *core, int fd, struct ssl_st *tls, struct evbuffer *input,
                  const uint8_t *peer, enum access_verdict verdict, struct err *err);

/** Shutdown: each connection gets GOAWAY (last stream = the last one it started) and closes
 *  once its streams are answered and written; idle ones close as soon as GOAWAY is out. */
void h2_drain_all(struct http_core *core);

/** Closes every HTTP/2 connection of `core` at once, aborting the streams in flight. */
void h2_free_all(struct http_core *core);

#endif
