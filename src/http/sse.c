/*
 * DESIGN: the common case is an upstream that flushes whole events per read, so complete
 * events are delivered straight from the caller's bytes; only an unfinished tail is copied.
 * Scanning resumes where it stopped, so a large event trickling in is not rescanned per read.
 */
#include "http/sse.h"

#include <stdlib.h>
#include <string.h>

void sse_parser_init(struct sse_parser *p, size_t max_event)
{
    memset(p, 0, sizeof *p);
    p->max_event = max_event ? max_event : 4u << 20;
}

/* Finds the first blank line in s[from..n). Found: *next is where the following event starts
 * (always > 0) and the return value is the event's length without its final line ending.
 * Not found: *next stays 0 and *resume is where to restart scanning. */
static size_t find_boundary(const char *s, size_t n, size_t from, size_t *next, size_t *resume)
{
    size_t i = from;
    while (i < n) {
        const char *nl = memchr(s + i, '\n', n - i);
        if (nl == NULL) break;
        size_t k = (size_t)(nl - s);
        if (k + 1 >= n) {
            *resume = k;
            return 0;
        }
        if (s[k + 1] == '\n') {
            *next = k + 2;
            return k - (k > 0 && s[k - 1] == '\r' ? 1 : 0);
        }
        if (s[k + 1] == '\r') {
            if (k + 2 >= n) {
                *resume = k;
                return 0;
            }
            if (s[k + 2] == '\n') {
                *next = k + 3;
                return k - (k > 0 && s[k - 1] == '\r' ? 1 : 0);
            }
        }
        i = k + 1;
    }
    *resume = n;
    return 0;
}

static int grow(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 1024;
    while (c < need) c *= 2;
    char *b = realloc(*buf, c);
    if (b == NULL) return -1;
    *buf = b;
    *cap = c;
    return 0;
}

static int too_big(struct sse_parser *p, struct err *err)
{
    return err_set(err, 502, "upstream_error", "bad_upstream_stream",
                   "upstream sent an SSE event larger than %zu bytes", p->max_event);
}

int sse_parser_feed(struct sse_parser *p, const char *data, size_t n, sse_event_cb cb, void *ud,
                    struct err *err)
{
    if (p->len == 0) {
        /* Fast path: deliver complete events straight from the caller's bytes. */
        size_t at = 0;
        for (;;) {
            size_t next = 0, resume = 0;
            size_t evlen = find_boundary(data + at, n - at, 0, &next, &resume);
            if (next == 0) break;
            if (cb(ud, data + at, evlen) != 0) return -1;
            at += next;
        }
        data += at;
        n -= at;
        if (n == 0) return 0;
        if (n > p->max_event) return too_big(p, err);
        if (grow(&p->buf, &p->cap, n)) return err_oom(err);
        memcpy(p->buf, data, n);
        p->len = n;
        p->scanned = 0;
        return 0;
    }
    if (p->len + n > p->max_event + 4) return too_big(p, err);
    if (grow(&p->buf, &p->cap, p->len + n)) return err_oom(err);
    memcpy(p->buf + p->len, data, n);
    p->len += n;
    size_t at = 0;
    for (;;) {
        size_t next = 0, resume = 0;
        size_t from = p->scanned > at ? p->scanned - at : 0;
        size_t evlen = find_boundary(p->buf + at, p->len - at, from, &next, &resume);
        if (next == 0) {
            p->scanned = at + resume;
            break;
        }
        if (cb(ud, p->buf + at, evlen) != 0) return -1;
        at += next;
        p->scanned = at;
    }
    if (at > 0) {
        memmove(p->buf, p->buf + at, p->len - at);
        p->len -= at;
        p->scanned -= at;
    }
    if (p->len > p->max_event) return too_big(p, err);
    return 0;
}

size_t sse_parser_pending(const struct sse_parser *p)
{
    return p->len;
}

/* Iterates lines of ev: returns line start/length, strips a trailing '\r'. */
static const char *next_line(const char *ev, size_t len, size_t *pos, size_t *llen)
{
    if (*pos >= len) return NULL;
    const char *start = ev + *pos;
    const char *nl = memchr(start, '\n', len - *pos);
    size_t l = nl ? (size_t)(nl - start) : len - *pos;
    *pos += l + (nl ? 1 : 0);
    if (l > 0 && start[l - 1] == '\r') l--;
    *llen = l;
    return start;
}

static const char *field_value(const char *line, size_t llen, const char *field, size_t flen,
                               size_t *vlen)
{
    if (llen < flen + 1 || memcmp(line, field, flen) != 0 || line[flen] != ':') return NULL;
    const char *v = line + flen + 1;
    size_t n = llen - flen - 1;
    if (n > 0 && *v == ' ') {
        v++;
        n--;
    }
    *vlen = n;
    return v;
}

int sse_event_data(struct sse_parser *p, const char *ev, size_t len, const char **data,
                   size_t *dlen)
{
    size_t pos = 0, llen = 0, vlen = 0, joined = 0;
    int count = 0;
    const char *line, *first = NULL;
    size_t first_len = 0;
    *data = NULL;
    *dlen = 0;
    while ((line = next_line(ev, len, &pos, &llen)) != NULL) {
        const char *v = field_value(line, llen, "data", 4, &vlen);
        if (v == NULL) continue;
        if (count == 0) {
            first = v;
            first_len = vlen;
        } else {
            if (count == 1) {
                if (grow(&p->scratch, &p->scratch_cap, first_len + 1)) return -1;
                memcpy(p->scratch, first, first_len);
                joined = first_len;
            }
            if (grow(&p->scratch, &p->scratch_cap, joined + 1 + vlen + 1)) return -1;
            p->scratch[joined++] = '\n';
            memcpy(p->scratch + joined, v, vlen);
            joined += vlen;
        }
        count++;
    }
    if (count == 1) {
        *data = first;
        *dlen = first_len;
    } else if (count > 1) {
        *data = p->scratch;
        *dlen = joined;
    }
    return count;
}

int sse_event_field(const char *ev, size_t len, const char *field, const char **value, size_t *vlen)
{
    size_t pos = 0, llen = 0, flen = strlen(field);
    const char *line;
    while ((line = next_line(ev, len, &pos, &llen)) != NULL) {
        const char *v = field_value(line, llen, field, flen, vlen);
        if (v) {
            *value = v;
            return 1;
        }
    }
    return 0;
}

void sse_parser_reset(struct sse_parser *p)
{
    p->len = 0;
    p->scanned = 0;
}

void sse_parser_free(struct sse_parser *p)
{
    free(p->buf);
    free(p->scratch);
    p->buf = p->scratch = NULL;
    p->len = p->cap = p->scratch_cap = p->scanned = 0;
}
