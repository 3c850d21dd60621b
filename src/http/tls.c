/*
 * DESIGN
 * The transport is OpenSSL over the connection's own non-blocking socket (SSL_set_fd), not a
 * bufferevent: server.c and h2.c drive their sockets with their own events and buffers, so
 * TLS only replaces the two calls that move bytes (recv and writev) and adds a handshake
 * phase in front. Writes go out one record of up to 16 KiB at a time, pulled up from the front
 * of the output buffer: a TLS record is the unit anyway, and a retry after WANT_WRITE hands
 * OpenSSL the same bytes again (SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER lets them move).
 *
 * One SSL_CTX per generation of the certificate: OpenSSL counts references from every SSL
 * made from it, so a reload simply builds a new one, swaps the pointer and drops ours to the
 * old one, which lives on until its last connection closes. Nothing is half-swapped: the new
 * context is complete (chain, key, key check) before anything changes.
 */
#include "http/tls.h"

#include <errno.h>
#include <event2/buffer.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "secrets/secrets.h"

/* Mozilla's "intermediate" TLS 1.2 list: ECDHE key exchange and AEAD ciphers only. */
#define TLS12_CIPHERS                                                                              \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"     \
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
/* One full record per write. */
#define RECORD_MAX 16384
/* Bytes written per tls_send call before yielding to the loop. */
#define SEND_BUDGET (256 * 1024)

struct tls_ctx {
    SSL_CTX *ctx; /* the current generation; one reference is ours */
    char *cert_ref, *key_ref;
    struct secrets_sources *sources; /* borrowed: where aws-sm:/ssm:/vault: references live */
    char fingerprint[65];
};

/* OpenSSL's reason for the last failure, or `fallback`. Clears the queue. */
static void ssl_reason(char *buf, size_t size, const char *fallback)
{
    unsigned long e = ERR_peek_last_error();
    if (e == 0)
        snprintf(buf, size, "%s", fallback);
    else
        ERR_error_string_n(e, buf, size);
    ERR_clear_error();
}

/* A BIO over the PEM text a reference names: the file, or the environment variable. */
static BIO *ref_open(struct secrets_sources *sources, const char *ref, struct err *err,
                     const char *what)
{
    BIO *b = NULL;
    if (secrets_is_remote(ref)) {
        char *pem = NULL, why[400];
        if (secrets_resolve(sources, ref, SECRETS_MULTILINE, &pem, why, sizeof why) != 0) {
            err_set(err, 500, "server_error", NULL, "tls.%s: %s", what, why);
            return NULL;
        }
        /* a memory BIO that owns its copy, so the value can be wiped now */
        b = BIO_new(BIO_s_mem());
        if (b == NULL || BIO_write(b, pem, (int)strlen(pem)) != (int)strlen(pem)) {
            BIO_free(b);
            b = NULL;
            err_oom(err);
        }
        secrets_value_free(pem);
        return b;
    }
    if (strncmp(ref, "file:", 5) == 0) {
        b = BIO_new_file(ref + 5, "r");
        if (b == NULL) {
            err_set(err, 500, "server_error", NULL, "tls.%s %s: cannot read: %s", what, ref,
                    strerror(errno));
            ERR_clear_error();
        }
        return b;
    }
    if (strncmp(ref, "env:", 4) == 0) {
        const char *v = getenv(ref + 4);
        if (v == NULL || v[0] == '\0') {
            err_set(err, 500, "server_error", NULL, "tls.%s %s: the variable is not set", what,
                    ref);
            return NULL;
        }
        b = BIO_new_mem_buf(v, -1);
        if (b == NULL) err_oom(err);
        return b;
    }
    err_set(err, 500, "server_error", NULL, "tls.%s: %s is not env:NAME or file:PATH", what, ref);
    return NULL;
}

static int load_fail(struct err *err, const char *what, const char *ref, const char *fallback)
{
    char why[256];
    ssl_reason(why, sizeof why, fallback);
    return err_set(err, 500, "server_error", NULL, "tls.%s %s: %s", what, ref, why);
}

/* Loads the leaf and its chain (the rest of the PEM blocks, in order). */
static int load_chain(SSL_CTX *ctx, struct secrets_sources *sources, const char *ref,
                      X509 **leaf_out, struct err *err)
{
    int rc = -1;
    X509 *leaf = NULL, *extra = NULL;
    BIO *b = ref_open(sources, ref, err, "cert");
    if (b == NULL) goto out;
    if ((leaf = PEM_read_bio_X509_AUX(b, NULL, NULL, NULL)) == NULL) {
        load_fail(err, "cert", ref, "no certificate");
        goto out;
    }
    if (SSL_CTX_use_certificate(ctx, leaf) != 1) {
        load_fail(err, "cert", ref, "certificate refused");
        goto out;
    }
    while ((extra = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
        if (SSL_CTX_add0_chain_cert(ctx, extra) != 1) {
            X509_free(extra);
            load_fail(err, "cert", ref, "chain certificate refused");
            goto out;
        }
    }
    /* The loop ends on "no start line" at the end of the file: that is not an error; any
     * other reason is (a truncated or corrupt block). */
    unsigned long e = ERR_peek_last_error();
    if (e != 0 && ERR_GET_REASON(e) != PEM_R_NO_START_LINE) {
        load_fail(err, "cert", ref, "bad chain certificate");
        goto out;
    }
    ERR_clear_error();
    *leaf_out = leaf;
    leaf = NULL;
    rc = 0;
out:
    X509_free(leaf);
    BIO_free(b);
    return rc;
}

static int load_key(SSL_CTX *ctx, struct secrets_sources *sources, const char *ref, struct err *err)
{
    int rc = -1;
    EVP_PKEY *key = NULL;
    BIO *b = ref_open(sources, ref, err, "key");
    if (b == NULL) goto out;
    if ((key = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL)) == NULL) {
        load_fail(err, "key", ref, "no private key");
        goto out;
    }
    if (SSL_CTX_use_PrivateKey(ctx, key) != 1) {
        load_fail(err, "key", ref, "private key refused");
        goto out;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        load_fail(err, "key", ref, "the key does not match the certificate");
        goto out;
    }
    rc = 0;
out:
    EVP_PKEY_free(key);
    BIO_free(b);
    return rc;
}

static int on_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    (void)arg;
    const unsigned char *h11 = NULL;
    for (unsigned int i = 0; i < inlen;) {
        unsigned int n = in[i];
        if (i + 1 + n > inlen) break;
        const unsigned char *p = in + i + 1;
        if (n == 2 && memcmp(p, "h2", 2) == 0) {
            *out = p;
            *outlen = 2;
            return SSL_TLSEXT_ERR_OK;
        }
        if (n == 8 && memcmp(p, "http/1.1", 8) == 0) h11 = p;
        i += 1 + n;
    }
    if (h11 == NULL) return SSL_TLSEXT_ERR_NOACK; /* go on without ALPN: HTTP/1.1 */
    *out = h11;
    *outlen = 8;
    return SSL_TLSEXT_ERR_OK;
}

/* A complete context from the references, or NULL with `err` filled. */
static SSL_CTX *ctx_build(struct secrets_sources *sources, const char *cert_ref,
                          const char *key_ref, char fp[65], struct err *err)
{
    X509 *leaf = NULL;
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    ERR_clear_error();
    if (ctx == NULL) {
        err_oom(err);
        goto fail;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    if (SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1) {
        load_fail(err, "ciphers", "", "no cipher");
        goto fail;
    }
    long opts = SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION;
#ifdef SSL_OP_IGNORE_UNEXPECTED_EOF
    opts |= SSL_OP_IGNORE_UNEXPECTED_EOF; /* a client that just closes is a close, not an error */
#endif
    SSL_CTX_set_options(ctx, opts);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_alpn_select_cb(ctx, on_alpn, NULL);
    if (load_chain(ctx, sources, cert_ref, &leaf, err) != 0 ||
        load_key(ctx, sources, key_ref, err) != 0)
        goto fail;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    fp[0] = '\0';
    if (X509_digest(leaf, EVP_sha256(), md, &mdlen) == 1)
        for (unsigned int i = 0; i < mdlen && i < 32; i++) sprintf(fp + 2 * i, "%02x", md[i]);
    X509_free(leaf);
    ERR_clear_error();
    return ctx;
fail:
    X509_free(leaf);
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return NULL;
}

struct tls_ctx *tls_ctx_new(const char *cert_ref, const char *key_ref,
                            struct secrets_sources *sources, struct err *err)
{
    struct tls_ctx *t = calloc(1, sizeof *t);
    if (t == NULL || (t->cert_ref = strdup(cert_ref)) == NULL ||
        (t->key_ref = strdup(key_ref)) == NULL) {
        tls_ctx_free(t);
        err_oom(err);
        return NULL;
    }
    t->sources = sources;
    if ((t->ctx = ctx_build(sources, cert_ref, key_ref, t->fingerprint, err)) == NULL) {
        tls_ctx_free(t);
        return NULL;
    }
    return t;
}

int tls_ctx_reload(struct tls_ctx *t, struct err *err)
{
    char fp[65];
    SSL_CTX *ctx = ctx_build(t->sources, t->cert_ref, t->key_ref, fp, err);
    if (ctx == NULL) return -1;
    SSL_CTX_free(t->ctx); /* connections made from it hold their own references */
    t->ctx = ctx;
    memcpy(t->fingerprint, fp, sizeof fp);
    return 0;
}

void tls_ctx_fingerprint(const struct tls_ctx *t, char out[65])
{
    memcpy(out, t->fingerprint, 65);
}

void tls_ctx_free(struct tls_ctx *t)
{
    if (t == NULL) return;
    SSL_CTX_free(t->ctx);
    free(t->cert_ref);
    free(t->key_ref);
    free(t);
}

SSL *tls_conn_new(struct tls_ctx *t, int fd)
{
    ERR_clear_error();
    SSL *ssl = SSL_new(t->ctx);
    if (ssl == NULL || SSL_set_fd(ssl, fd) != 1) {
        SSL_free(ssl);
        ERR_clear_error();
        return NULL;
    }
    SSL_set_accept_state(ssl);
    return ssl;
}

enum tls_step tls_handshake(SSL *ssl, char *why, size_t why_size)
{
    ERR_clear_error();
    errno = 0;
    int r = SSL_do_handshake(ssl);
    if (r == 1) return TLS_DONE;
    int e = SSL_get_error(ssl, r);
    if (e == SSL_ERROR_WANT_READ) return TLS_WANT_READ;
    if (e == SSL_ERROR_WANT_WRITE) return TLS_WANT_WRITE;
    if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)
        snprintf(why, why_size, "%s", errno ? strerror(errno) : "the client closed");
    else
        ssl_reason(why, why_size, "handshake failed");
    ERR_clear_error();
    return TLS_FAILED;
}

bool tls_alpn_h2(SSL *ssl)
{
    const unsigned char *p = NULL;
    unsigned int n = 0;
    SSL_get0_alpn_selected(ssl, &p, &n);
    return n == 2 && memcmp(p, "h2", 2) == 0;
}

bool tls_alpn_chosen(SSL *ssl)
{
    const unsigned char *p = NULL;
    unsigned int n = 0;
    SSL_get0_alpn_selected(ssl, &p, &n);
    return n > 0;
}

/* Maps an SSL_read/SSL_write failure onto recv()/send() conventions. */
static int io_fail(SSL *ssl, int r)
{
    int e = SSL_get_error(ssl, r);
    int saved = errno;
    ERR_clear_error();
    switch (e) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    case SSL_ERROR_SYSCALL:
        errno = saved ? saved : ECONNRESET;
        return saved ? -1 : 0;
    default:
        errno = EPROTO;
        return -1;
    }
}

ssize_t tls_recv(SSL *ssl, void *buf, size_t cap)
{
    size_t n = 0;
    ERR_clear_error();
    errno = 0;
    int r = SSL_read_ex(ssl, buf, cap, &n);
    if (r == 1) return (ssize_t)n;
    return io_fail(ssl, r);
}

bool tls_pending(SSL *ssl)
{
    return SSL_pending(ssl) > 0;
}

int tls_send(SSL *ssl, struct evbuffer *out)
{
    int total = 0;
    while (total < SEND_BUDGET) {
        size_t len = evbuffer_get_length(out);
        if (len == 0) break;
        if (len > RECORD_MAX) len = RECORD_MAX;
        const unsigned char *p = evbuffer_pullup(out, (ev_ssize_t)len);
        if (p == NULL) {
            errno = ENOMEM;
            return -1;
        }
        size_t n = 0;
        ERR_clear_error();
        errno = 0;
        int r = SSL_write_ex(ssl, p, len, &n);
        if (r != 1) {
            int f = io_fail(ssl, r);
            if (f == 0) errno = EPIPE;
            if (total > 0 && errno == EAGAIN) return total;
            return -1;
        }
        evbuffer_drain(out, n);
        total += (int)n;
    }
    return total;
}

void tls_close_notify(SSL *ssl)
{
    if (ssl == NULL || !SSL_is_init_finished(ssl)) return;
    ERR_clear_error();
    SSL_shutdown(ssl); /* one try: the peer's answer is not awaited */
    ERR_clear_error();
}

void tls_conn_free(SSL *ssl, bool notify)
{
    if (ssl == NULL) return;
    if (notify) tls_close_notify(ssl);
    SSL_free(ssl);
}
