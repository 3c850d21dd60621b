/*
 * DESIGN: messages are decoded straight from the caller's bytes when a whole message lies
 * in them; only a tail is copied. Header values other than strings are skipped by their
 * declared sizes (we only need :event-type, :message-type and the exception type). CRC32 is
 * zlib's (IEEE 802.3), the checksum AWS specifies.
 */
#include "providers/aws/eventstream.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define PRELUDE     12
#define MIN_MESSAGE 16 /* prelude + message CRC, no headers, no payload */

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

void aws_eventstream_init(struct aws_eventstream *d, size_t max_message)
{
    memset(d, 0, sizeof *d);
    d->max_message = max_message ? max_message : 16u << 20;
}

static int broken(struct err *err, const char *what)
{
    return err_set(err, 502, "upstream_error", "bad_event_stream",
                   "upstream event stream is corrupt: %s", what);
}

/* Decodes the headers we need. Values are not NUL-terminated on the wire, so the strings we
 * keep are copied into `names` storage. */
static int parse_headers(const uint8_t *h, size_t n, struct aws_event *ev, char store[3][128],
                         struct err *err)
{
    size_t i = 0;
    while (i < n) {
        size_t nl = h[i++];
        if (nl == 0 || i + nl + 1 > n) return broken(err, "header name overruns the headers");
        const char *name = (const char *)h + i;
        i += nl;
        uint8_t type = h[i++];
        size_t vl;
        switch (type) {
        case 0:
        case 1:
            vl = 0;
            break; /* bool true / false */
        case 2:
            vl = 1;
            break; /* byte */
        case 3:
            vl = 2;
            break; /* short */
        case 4:
            vl = 4;
            break; /* int */
        case 5:
        case 8:
            vl = 8;
            break; /* long, timestamp */
        case 9:
            vl = 16;
            break; /* uuid */
        case 6:
        case 7: /* bytes, string: 2-byte length */
            if (i + 2 > n) return broken(err, "header value length overruns the headers");
            vl = (size_t)h[i] << 8 | h[i + 1];
            i += 2;
            break;
        default:
            return broken(err, "unknown header value type");
        }
        if (i + vl > n) return broken(err, "header value overruns the headers");
        if (type == 7) {
            int slot = -1;
            if (nl == 11 && memcmp(name, ":event-type", 11) == 0)
                slot = 0;
            else if (nl == 13 && memcmp(name, ":message-type", 13) == 0)
                slot = 1;
            else if ((nl == 15 && memcmp(name, ":exception-type", 15) == 0) ||
                     (nl == 11 && memcmp(name, ":error-code", 11) == 0))
                slot = 2;
            if (slot >= 0) {
                size_t c = vl < 127 ? vl : 127;
                memcpy(store[slot], h + i, c);
                store[slot][c] = '\0';
                if (slot == 0)
                    ev->event_type = store[0];
                else if (slot == 1)
                    ev->message_type = store[1];
                else
                    ev->exception_type = store[2];
            }
        }
        i += vl;
    }
    return 0;
}

/* Decodes one complete message of `total` bytes at p. */
static int decode(const uint8_t *p, uint32_t total, aws_event_cb cb, void *ud, struct err *err)
{
    uint32_t headers_len = be32(p + 4);
    if (headers_len > total - MIN_MESSAGE) return broken(err, "headers longer than the message");
    uint32_t want = be32(p + total - 4);
    uint32_t got = (uint32_t)crc32(0L, p, total - 4);
    if (want != got) return broken(err, "message CRC mismatch");
    struct aws_event ev = {0};
    char store[3][128];
    if (parse_headers(p + PRELUDE, headers_len, &ev, store, err) != 0) return -1;
    ev.payload = p + PRELUDE + headers_len;
    ev.payload_len = total - MIN_MESSAGE - headers_len;
    if (cb(ud, &ev) != 0) /* the callback's own error (if it set one) says why */
        return err->msg[0] ? -1 : err_set(err, 502, "upstream_error", "stopped", "stopped");
    return 0;
}

/* Checks a prelude; returns the message length or 0 with err set. */
static uint32_t prelude(const struct aws_eventstream *d, const uint8_t *p, struct err *err)
{
    uint32_t total = be32(p);
    if (be32(p + 8) != (uint32_t)crc32(0L, p, 8)) {
        broken(err, "prelude CRC mismatch");
        return 0;
    }
    if (total < MIN_MESSAGE || total > d->max_message) {
        broken(err, "message length out of range");
        return 0;
    }
    return total;
}

int aws_eventstream_feed(struct aws_eventstream *d, const uint8_t *data, size_t n, aws_event_cb cb,
                         void *ud, struct err *err)
{
    /* Fast path: decode whole messages in place while nothing is buffered. */
    while (d->len == 0 && n >= PRELUDE) {
        uint32_t total = prelude(d, data, err);
        if (total == 0) return -1;
        if (n < total) break;
        if (decode(data, total, cb, ud, err) != 0) return -1;
        data += total;
        n -= total;
    }
    while (n > 0) {
        size_t need = PRELUDE;
        if (d->len >= PRELUDE) {
            uint32_t total = prelude(d, d->buf, err);
            if (total == 0) return -1;
            need = total;
        }
        size_t take = need - d->len < n ? need - d->len : n;
        if (d->len + take > d->cap) {
            size_t cap = d->cap ? d->cap * 2 : 4096;
            while (cap < d->len + take) cap *= 2;
            uint8_t *b = realloc(d->buf, cap);
            if (b == NULL) return err_oom(err);
            d->buf = b;
            d->cap = cap;
        }
        memcpy(d->buf + d->len, data, take);
        d->len += take;
        data += take;
        n -= take;
        if (d->len >= PRELUDE && d->len == need && need > PRELUDE) {
            int rc = decode(d->buf, (uint32_t)need, cb, ud, err);
            d->len = 0;
            if (rc != 0) return -1;
        } else if (d->len == PRELUDE && need == PRELUDE) {
            continue; /* prelude complete: the next round knows the full length */
        }
    }
    return 0;
}

size_t aws_eventstream_pending(const struct aws_eventstream *d)
{
    return d->len;
}

void aws_eventstream_free(struct aws_eventstream *d)
{
    free(d->buf);
    d->buf = NULL;
    d->len = d->cap = 0;
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

size_t aws_eventstream_encode(const struct aws_event_header *headers, size_t n_headers,
                              const void *payload, size_t payload_len, uint8_t *out, size_t cap)
{
    size_t headers_len = 0;
    for (size_t i = 0; i < n_headers; i++) {
        size_t nl = strlen(headers[i].name), vl = strlen(headers[i].value);
        if (nl == 0 || nl > 255 || vl > 65535) return 0;
        headers_len += 1 + nl + 1 + 2 + vl; /* name length, name, type 7, value length, value */
    }
    size_t total = MIN_MESSAGE + headers_len + payload_len;
    if (total > UINT32_MAX) return 0;
    if (total > cap) return total;
    put32(out, (uint32_t)total);
    put32(out + 4, (uint32_t)headers_len);
    put32(out + 8, (uint32_t)crc32(0L, out, 8));
    uint8_t *p = out + PRELUDE;
    for (size_t i = 0; i < n_headers; i++) {
        size_t nl = strlen(headers[i].name), vl = strlen(headers[i].value);
        *p++ = (uint8_t)nl;
        memcpy(p, headers[i].name, nl);
        p += nl;
        *p++ = 7;
        *p++ = (uint8_t)(vl >> 8);
        *p++ = (uint8_t)vl;
        memcpy(p, headers[i].value, vl);
        p += vl;
    }
    if (payload_len) memcpy(p, payload, payload_len);
    p += payload_len;
    /* zlib's crc32 takes a uInt length; a message is far below 4 GiB (checked above). */
    put32(p, (uint32_t)crc32(0L, out, (uInt)(total - 4)));
    return total;
}
