/*
 * tls — the TLS transport of a listener (OpenSSL): the server context built from the
 * configured certificate chain and key, swapped on reload, and the per-connection calls the
 * HTTP/1.1 (server.c) and HTTP/2 (h2.c) connections use instead of recv()/writev() when their
 * listener speaks TLS.
 *
 * Policy: TLS 1.2 and 1.3 only; TLS 1.2 with ECDHE key exchange and AEAD ciphers only
 * (AES-GCM, ChaCha20-Poly1305), TLS 1.3 with OpenSSL's defaults; no renegotiation, no
 * compression. ALPN: "h2" when the client offers it, else "http/1.1"; a client offering
 * neither (or no ALPN at all) gets HTTP/1.1.
 *
 * Reload: tls_ctx_reload() builds a complete new SSL_CTX and swaps it in only if everything
 * loaded; connections already open keep the SSL_CTX they started with (each SSL holds a
 * reference), new handshakes use the new one.
 *
 * Thread: event-loop thread only (OpenSSL's error queue is per thread; every call here clears
 * it first, so one connection's failure never leaks into another's).
 */
#ifndef STRATUS_HTTP_TLS_H
#define STRATUS_HTTP_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "util/err.h"

struct evbuffer;
struct ssl_st; /* OpenSSL's SSL */
struct tls_ctx;

/**
 * Loads the certificate chain and key named by two references: `file:PATH` (a PEM file,
 * re-read on every reload), `env:NAME` (the PEM text in an environment variable), or a
 * remote secret (aws-sm:, ssm:, vault: — fetched again on every reload, blocking).
 * @param sources  *borrowed* for the context's life: where remote references are fetched.
 * @return an *owned* context (tls_ctx_free), or NULL with `err` filled: the reference that
 *         failed and OpenSSL's reason (never key material).
 */
struct secrets_sources;
struct tls_ctx *tls_ctx_new(const char *cert_ref, const char *key_ref,
                            struct secrets_sources *sources, struct err *err);

/**
 * Re-reads the certificate chain and key. On success new handshakes use them; on failure the
 * context keeps what it had and `err` says which reference failed and why.
 * @return 0 or -1.
 */
int tls_ctx_reload(struct tls_ctx *t, struct err *err);

/** SHA-256 of the current leaf certificate, as lower-case hex (65 bytes with the NUL). */
void tls_ctx_fingerprint(const struct tls_ctx *t, char out[65]);

/** NULL-safe. Connections still open keep their own reference to the OpenSSL context. */
void tls_ctx_free(struct tls_ctx *t);

/**
 * A server-side TLS connection on the accepted socket `fd` with the current context.
 * @return *owned* (tls_conn_free), or NULL when out of memory. The fd stays the caller's.
 */
struct ssl_st *tls_conn_new(struct tls_ctx *t, int fd);

enum tls_step {
    TLS_DONE = 0,       /* the handshake is complete */
    TLS_WANT_READ = 1,  /* call again once the socket is readable */
    TLS_WANT_WRITE = 2, /* call again once the socket is writable */
    TLS_FAILED = -1,    /* `why` says what went wrong; close the connection */
};

/** Advances the handshake. On TLS_FAILED `why` holds a short reason (OpenSSL's). */
enum tls_step tls_handshake(struct ssl_st *ssl, char *why, size_t why_size);

/** Whether ALPN chose "h2" (after the handshake). */
bool tls_alpn_h2(struct ssl_st *ssl);

/** Whether ALPN chose any protocol (after the handshake); false for a client without ALPN. */
bool tls_alpn_chosen(struct ssl_st *ssl);

/**
 * Reads decrypted bytes, like recv(): > 0 bytes; 0 the peer closed (close_notify or EOF);
 * -1 with errno EAGAIN (wait for readable) or another errno (the connection is broken).
 */
ssize_t tls_recv(struct ssl_st *ssl, void *buf, size_t cap);

/** Decrypted bytes OpenSSL holds that no socket event will announce. */
bool tls_pending(struct ssl_st *ssl);

/**
 * Writes from the front of `out` (drained by what went out), like evbuffer_write():
 * @return bytes written (>= 0), or -1 with errno EAGAIN (wait for writable) or another
 *         errno (the connection is broken). The front of `out` must not change before the
 *         next call (OpenSSL retries a record with the same bytes).
 */
int tls_send(struct ssl_st *ssl, struct evbuffer *out);

/** Sends close_notify if the handshake finished (best effort, never blocks). */
void tls_close_notify(struct ssl_st *ssl);

/** Frees the connection (sending close_notify first when `notify`). NULL-safe. */
void tls_conn_free(struct ssl_st *ssl, bool notify);

#endif
