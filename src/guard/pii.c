/*
 * DESIGN
 * One pattern, one pass. Every kind is an alternative of a single PCRE2 pattern, tried in a
 * fixed order at each start position (leftmost match wins; at one position the first kind
 * listed wins). Each alternative is a capture group numbered kind + 1 — the only groups in
 * the pattern — so the group that is set names the kind. Kinds with a checksum or a digit
 * count end in a callout; a callout that returns 1 makes the engine backtrack as if the
 * text had not matched, so a shorter candidate or another kind at the same position is
 * still tried — checksums take part in matching instead of filtering afterwards.
 *
 * Every repetition is bounded, so a match (and a partial one) is at most ~600 bytes: that
 * bounds what a stream ever holds back. The pattern is byte-oriented (no UTF mode): any
 * input is valid, and every alternative starts at and consists of ASCII bytes.
 *
 * Streams: PCRE2_PARTIAL_HARD returns a complete match only when deciding it never looked
 * past the end of the text seen so far, so that match is exactly what the whole text would
 * give; otherwise it returns where the earliest possible match starts, and everything
 * before that point is final. The stream emits up to there and keeps the rest (plus a few
 * bytes before it as lookbehind context). Finishing runs the ordinary match over the tail.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "guard/pii.h"

#include <pcre2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONTEXT  8         /* bytes of lookbehind kept before a stream's held tail */
#define MAX_HOLD (1 << 14) /* safety net; the pattern's bounds keep holds far below it */

#define HEX   "[0-9A-Fa-f]{1,4}"
#define OCTET "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
#define LABEL "[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"

/* Group k+1 is kind k; (?C1) IBAN, (?C2) card, (?C3) phone. */
static const char pattern[] =
    /* Shared: no match starts inside a word, so one check rejects most positions. */
    "(?<![A-Za-z0-9])(?:"
    /* secret tokens */
    "(?<![_-])(sk-(?:proj-|ant-|live_|test_)?[A-Za-z0-9_-]{20,512}"
    "|gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255}"
    "|xox[abprs]-[A-Za-z0-9-]{10,255}|glpat-[A-Za-z0-9_-]{20,255}|AIza[0-9A-Za-z_-]{35})"
    /* AWS access key id */
    "|((?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16})(?![A-Za-z0-9])"
    /* e-mail */
    "|(?<![._%+-])([A-Za-z0-9._%+-]{1,64}@" LABEL "(?:\\." LABEL "){0,8}\\.[A-Za-z]{2,24})"
    "(?![A-Za-z0-9-])"
    /* IBAN */
    "|([A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?)"
    "(?![A-Za-z0-9])(?C1)"
    /* payment card */
    "|(?<![0-9][ -])([2-6][0-9](?:[ -]?[0-9]){11,17})(?![0-9]|[ -][0-9])(?C2)"
    /* US SSN */
    "|(?<!-)((?!000|666|9)[0-9]{3}-(?!00)[0-9]{2}-(?!0000)[0-9]{4})(?![0-9-])"
    /* IPv4 */
    "|(?<!\\.)((?:" OCTET "\\.){3}" OCTET ")(?![0-9]|\\.[0-9])"
    /* IPv6: full and compressed forms (not "::" alone) */
    "|(?<![_:.])(?=[0-9A-Fa-f]{0,4}:)((?:" HEX ":){7}" HEX "|(?:" HEX ":){1,6}:" HEX "|(?:" HEX
    ":){1,5}(?::" HEX "){1,2}|(?:" HEX ":){1,4}(?::" HEX "){1,3}|(?:" HEX ":){1,3}(?::" HEX
    "){1,4}|(?:" HEX ":){1,2}(?::" HEX "){1,5}|" HEX ":(?::" HEX "){1,6}|::" HEX "(?::" HEX
    "){0,6})(?![A-Za-z0-9_:])"
    /* phone: separators required */
    "|(?<![_+.:/-])(?<![0-9][ ])((?:\\+[0-9]{1,3}[ .-]?)?(?:\\([0-9]{1,4}\\)[ "
    ".-]?)?[0-9]{2,4}"
    "(?:[ .-][0-9]{2,8}){1,4})(?![A-Za-z0-9_-]|[ .-][0-9])(?C3)"
    ")";

static const char *const kind_names[PII_N_KINDS] = {"secret_token", "aws_access_key", "email",
                                                    "iban",         "credit_card",    "ssn",
                                                    "ipv4",         "ipv6",           "phone"};

struct pii {
    pcre2_code *code;
    pcre2_match_data *md;
    pcre2_match_context *mctx;
};

struct pii_stream {
    struct pii *p;
    bool keep;
    char *buf; /* [0, off): context already emitted; [off, len): held */
    size_t off, len, cap;
};

const char *pii_kind_name(enum pii_kind k)
{
    return (unsigned)k < PII_N_KINDS ? kind_names[k] : "unknown";
}

char *pii_kinds_format(pii_kinds kinds, const char *sep, char *out, size_t cap)
{
    size_t w = 0;
    if (cap == 0) return out;
    out[0] = '\0';
    for (int k = 0; k < PII_N_KINDS; k++) {
        if (!(kinds & (1u << k))) continue;
        int n = snprintf(out + w, cap - w, "%s%s", w ? sep : "", kind_names[k]);
        if (n < 0 || (size_t)n >= cap - w) break;
        w += (size_t)n;
    }
    return out;
}

/* ---- checksums (the callouts) ------------------------------------------------------- */

static bool luhn_ok(const char *s, size_t n)
{
    int sum = 0, digits = 0;
    for (size_t i = n; i-- > 0;) {
        if (s[i] < '0' || s[i] > '9') continue;
        int d = s[i] - '0';
        if (digits++ % 2 == 1) d = d * 2 > 9 ? d * 2 - 9 : d * 2;
        sum += d;
    }
    return digits >= 13 && digits <= 19 && sum % 10 == 0;
}

/* Separators must be used the same way throughout: "4111 1111 1111 1111" or none, not a
 * run of digits with one stray space (more likely two numbers). */
static bool card_ok(const char *s, size_t n)
{
    char sep = 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] == ' ' || s[i] == '-') {
            if (sep && s[i] != sep) return false;
            sep = s[i];
        }
    return luhn_ok(s, n);
}

static bool iban_ok(const char *s, size_t n)
{
    char c[40];
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ') {
            if (m == sizeof c) return false;
            c[m++] = s[i];
        }
    if (m < 15 || m > 34) return false;
    /* Move the first four characters to the end, letters as 10..35, mod 97 == 1. */
    unsigned rem = 0;
    for (size_t i = 0; i < m; i++) {
        char ch = c[(i + 4) % m];
        if (ch >= '0' && ch <= '9')
            rem = (rem * 10 + (unsigned)(ch - '0')) % 97;
        else
            rem = (rem * 100 + (unsigned)(ch - 'A' + 10)) % 97;
    }
    return rem == 1;
}

static bool phone_ok(const char *s, size_t n)
{
    int digits = 0;
    for (size_t i = 0; i < n; i++) digits += s[i] >= '0' && s[i] <= '9';
    return digits >= (s[0] == '+' ? 8 : 10) && digits <= 15;
}

static int on_callout(pcre2_callout_block *cb, void *ud)
{
    (void)ud;
    const char *s = (const char *)cb->subject + cb->start_match;
    size_t n = cb->current_position - cb->start_match;
    bool ok = cb->callout_number == 1   ? iban_ok(s, n)
              : cb->callout_number == 2 ? card_ok(s, n)
              : cb->callout_number == 3 ? phone_ok(s, n)
                                        : true;
    return ok ? 0 : 1; /* 1: fail here, backtrack */
}

/* ---- the detector ------------------------------------------------------------------- */

struct pii *pii_new(struct err *err)
{
    struct pii *p = calloc(1, sizeof *p);
    if (p == NULL) {
        err_oom(err);
        return NULL;
    }
    int ec;
    PCRE2_SIZE eo;
    p->code = pcre2_compile((PCRE2_SPTR)pattern, sizeof pattern - 1, 0, &ec, &eo, NULL);
    if (p->code == NULL) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(ec, msg, sizeof msg);
        err_set(err, 500, "server_error", "guard_pattern", "pii pattern at %zu: %s", (size_t)eo,
                (const char *)msg);
        pii_free(p);
        return NULL;
    }
    /* Without JIT (not built in) the interpreter gives the same answers, only slower. */
    (void)pcre2_jit_compile(p->code, PCRE2_JIT_COMPLETE | PCRE2_JIT_PARTIAL_HARD);
    p->md = pcre2_match_data_create_from_pattern(p->code, NULL);
    p->mctx = pcre2_match_context_create(NULL);
    if (p->md == NULL || p->mctx == NULL) {
        err_oom(err);
        pii_free(p);
        return NULL;
    }
    pcre2_set_callout(p->mctx, on_callout, NULL);
    return p;
}

void pii_free(struct pii *p)
{
    if (p == NULL) return;
    pcre2_match_context_free(p->mctx);
    pcre2_match_data_free(p->md);
    pcre2_code_free(p->code);
    free(p);
}

static enum pii_kind kind_of(const PCRE2_SIZE *ov, uint32_t pairs)
{
    for (uint32_t g = 1; g < pairs && g <= PII_N_KINDS; g++)
        if (ov[2 * g] != PCRE2_UNSET) return (enum pii_kind)(g - 1);
    return PII_SECRET;
}

/* @return 1 match, 2 partial (out->start: where it begins), 0 none, -1 error. */
static int match_at(struct pii *p, const char *text, size_t len, size_t from, uint32_t opts,
                    struct pii_match *out)
{
    int rc = pcre2_match(p->code, (PCRE2_SPTR)text, len, from, opts, p->md, p->mctx);
    if (rc == PCRE2_ERROR_NOMATCH) return 0;
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(p->md);
    if (rc == PCRE2_ERROR_PARTIAL) {
        out->start = ov[0];
        out->end = len;
        return 2;
    }
    if (rc < 0) return -1;
    out->start = ov[0];
    out->end = ov[1];
    out->kind = kind_of(ov, (uint32_t)rc);
    return 1;
}

/* Whether any kind could match in `text` at all: every kind's match holds a digit, an '@'
 * (e-mail), a ':' (IPv6), a '_' (GitHub tokens), or a token prefix — "sk-", "xox?-",
 * "glpat-" (found at their '-') or "AIza"/"AKIA"/"ASIA"/"ABIA"/"ACCA" (at their 'A').
 * Ordinary prose has none, and one pass over it costs a fraction of running the pattern. */
static bool may_match(const char *text, size_t len)
{
    const unsigned char *t = (const unsigned char *)text;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = t[i];
        if ((c >= '0' && c <= '9') || c == '@' || c == ':' || c == '_') return true;
        if (c == '-' && ((i >= 2 && t[i - 2] == 's' && t[i - 1] == 'k') ||
                         (i >= 4 && memcmp(t + i - 4, "xox", 3) == 0) ||
                         (i >= 5 && memcmp(t + i - 5, "glpat", 5) == 0)))
            return true;
        if (c == 'A' && i + 4 <= len &&
            (memcmp(t + i, "AIza", 4) == 0 || memcmp(t + i, "AKIA", 4) == 0 ||
             memcmp(t + i, "ASIA", 4) == 0 || memcmp(t + i, "ABIA", 4) == 0 ||
             memcmp(t + i, "ACCA", 4) == 0))
            return true;
    }
    return false;
}

int pii_find(struct pii *p, const char *text, size_t len, size_t from, struct pii_match *out)
{
    if (from > len || !may_match(text + from, len - from)) return 0;
    return match_at(p, text, len, from, 0, out);
}

pii_kinds pii_scan(struct pii *p, const char *text, size_t len)
{
    pii_kinds kinds = 0;
    struct pii_match m;
    size_t at = 0;
    while (at < len && pii_find(p, text, len, at, &m) == 1) {
        kinds |= 1u << m.kind;
        at = m.end > m.start ? m.end : m.start + 1;
    }
    return kinds;
}

int pii_buf_append(struct pii_buf *b, const char *s, size_t n)
{
    if (b->oom) return -1;
    if (n == 0) return 0;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *d = realloc(b->data, cap);
        if (d == NULL) {
            b->oom = true;
            return -1;
        }
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

static void emit_match(struct pii_buf *out, const char *text, const struct pii_match *m, bool keep)
{
    if (keep) {
        pii_buf_append(out, text + m->start, m->end - m->start);
        return;
    }
    char r[48];
    int n = snprintf(r, sizeof r, "[REDACTED:%s]", pii_kind_name(m->kind));
    pii_buf_append(out, r, (size_t)n);
}

/* Matches in text[from, len) until none is left; appends everything. */
static pii_kinds redact_rest(struct pii *p, const char *text, size_t len, size_t from, bool keep,
                             struct pii_buf *out)
{
    pii_kinds kinds = 0;
    struct pii_match m;
    while (from < len && match_at(p, text, len, from, 0, &m) == 1 && m.end > m.start) {
        pii_buf_append(out, text + from, m.start - from);
        emit_match(out, text, &m, keep);
        kinds |= 1u << m.kind;
        from = m.end;
    }
    if (from < len) pii_buf_append(out, text + from, len - from);
    return kinds;
}

pii_kinds pii_redact(struct pii *p, const char *text, size_t len, bool keep, struct pii_buf *out)
{
    return redact_rest(p, text, len, 0, keep, out);
}

/* ---- streams ------------------------------------------------------------------------ */

struct pii_stream *pii_stream_new(struct pii *p, bool keep)
{
    struct pii_stream *s = calloc(1, sizeof *s);
    if (s == NULL) return NULL;
    s->p = p;
    s->keep = keep;
    return s;
}

void pii_stream_free(struct pii_stream *s)
{
    if (s == NULL) return;
    free(s->buf);
    free(s);
}

size_t pii_stream_held(const struct pii_stream *s)
{
    return s->len - s->off;
}

/* The end of the last complete UTF-8 character at or before `end` (not before `from`):
 * a chunk never carries half a character. */
static size_t utf8_cut(const char *b, size_t from, size_t end)
{
    size_t i = end, back = 0;
    while (i > from && back < 4 && ((unsigned char)b[i - 1] & 0xC0) == 0x80) i--, back++;
    if (i == from) return end;
    unsigned char lead = (unsigned char)b[i - 1];
    size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    return back + 1 >= need ? end : i - 1;
}

/* Drops what is emitted except CONTEXT bytes of lookbehind. */
static void compact(struct pii_stream *s)
{
    if (s->off <= CONTEXT) return;
    size_t drop = s->off - CONTEXT;
    memmove(s->buf, s->buf + drop, s->len - drop);
    s->len -= drop;
    s->off -= drop;
}

pii_kinds pii_stream_feed(struct pii_stream *s, const char *text, size_t len, struct pii_buf *out)
{
    if (len == 0) return 0;
    if (s->len + len > s->cap) {
        size_t cap = s->cap ? s->cap : 512;
        while (cap < s->len + len) cap *= 2;
        char *b = realloc(s->buf, cap);
        if (b == NULL) {
            out->oom = true;
            return 0;
        }
        s->buf = b;
        s->cap = cap;
    }
    memcpy(s->buf + s->len, text, len);
    s->len += len;
    pii_kinds kinds = 0;
    struct pii_match m;
    for (;;) {
        int rc = match_at(s->p, s->buf, s->len, s->off, PCRE2_PARTIAL_HARD, &m);
        if (rc == 1 && m.end > m.start) {
            pii_buf_append(out, s->buf + s->off, m.start - s->off);
            emit_match(out, s->buf, &m, s->keep);
            kinds |= 1u << m.kind;
            s->off = m.end;
            continue;
        }
        size_t upto = rc == 2 ? m.start : s->len;
        if (rc < 0 || s->len - s->off > MAX_HOLD) upto = s->len; /* never hold without bound */
        upto = utf8_cut(s->buf, s->off, upto);
        pii_buf_append(out, s->buf + s->off, upto - s->off);
        s->off = upto;
        break;
    }
    compact(s);
    return kinds;
}

pii_kinds pii_stream_finish(struct pii_stream *s, struct pii_buf *out)
{
    pii_kinds kinds = redact_rest(s->p, s->buf, s->len, s->off, s->keep, out);
    s->off = s->len;
    compact(s);
    return kinds;
}
