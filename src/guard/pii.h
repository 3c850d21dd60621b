/*
 * guard/pii — finds personal data and secrets in text: e-mail addresses, phone numbers,
 * payment card numbers (Luhn-checked), IBANs (mod-97-checked), US social security numbers,
 * IPv4 and IPv6 addresses, AWS access key ids and common API tokens (sk-…, ghp_…, xox…,
 * glpat-…, AIza…). One PCRE2 pattern (byte mode, JIT) with a checksum callout per kind that
 * has one, so a text is scanned once whatever the number of kinds.
 *
 * What is reported is a kind and a byte range, never the matched text: callers record kind
 * names only.
 *
 * Two ways to use it:
 *   - pii_find / pii_redact on a whole text;
 *   - a pii_stream fed a text piece by piece (a streamed answer): it emits text as soon as
 *     it can no longer be part of a match and holds back only the tail that still could
 *     (PCRE2 partial matching) plus an incomplete UTF-8 character. Whatever the chunking,
 *     the concatenated output equals pii_redact of the whole text (split invariance).
 *
 * Ownership: pii_new returns an *owned* detector (pii_free). Thread: a detector and its
 * streams belong to one thread at a time (they share one match-data block).
 */
#ifndef STRATUS_GUARD_PII_H
#define STRATUS_GUARD_PII_H

#include <stdbool.h>
#include <stddef.h>

#include "util/err.h"

enum pii_kind {
    PII_SECRET = 0, /* sk-…, ghp_…, xox…, glpat-…, AIza… */
    PII_AWS_KEY,    /* AKIA/ASIA… access key id */
    PII_EMAIL,
    PII_IBAN, /* mod-97 valid */
    PII_CARD, /* 13-19 digits, Luhn valid */
    PII_SSN,  /* US, ddd-dd-dddd, never 000/666/9xx, 00, 0000 */
    PII_IPV4,
    PII_IPV6,
    PII_PHONE, /* with separators; 10-15 digits (8-15 with a +country code) */
    PII_N_KINDS
};

/* A set of kinds: bit (1u << kind). */
typedef unsigned pii_kinds;

struct pii;

struct pii_match {
    enum pii_kind kind;
    size_t start, end; /* byte range [start, end) */
};

/** "secret_token", "aws_access_key", "email", "iban", "credit_card", "ssn", "ipv4", "ipv6",
 *  "phone". Static. */
const char *pii_kind_name(enum pii_kind k);

/** Writes the names of `kinds` joined by `sep` into `out` ("" when none). Returns out. */
char *pii_kinds_format(pii_kinds kinds, const char *sep, char *out, size_t cap);

/** Compiles the detector. @return an *owned* detector, or NULL with `err` (500). */
struct pii *pii_new(struct err *err);

/** NULL-safe. */
void pii_free(struct pii *p);

/**
 * The first match starting at or after `from` in text[0, len).
 * @return 1 with `out` filled, 0 when there is none, -1 on a matcher error (resource limit).
 */
int pii_find(struct pii *p, const char *text, size_t len, size_t from, struct pii_match *out);

/** The kinds found anywhere in text (0: none). */
pii_kinds pii_scan(struct pii *p, const char *text, size_t len);

/* Where redacted text goes: a growable buffer (malloc). */
struct pii_buf {
    char *data; /* owned; free() it */
    size_t len, cap;
    bool oom;
};

/** Appends `text` with every match replaced by "[REDACTED:<kind>]" (keep: unchanged) to
 *  `out`. @return the kinds found; out->oom set when out of memory. */
pii_kinds pii_redact(struct pii *p, const char *text, size_t len, bool keep, struct pii_buf *out);

/* ---- streams ------------------------------------------------------------------------ */

struct pii_stream;

/** A stream over detector `p` (borrowed; must outlive it). keep: matches are reported but
 *  emitted unchanged. @return an *owned* stream (pii_stream_free), NULL when out of memory. */
struct pii_stream *pii_stream_new(struct pii *p, bool keep);

/** Feeds the next piece; appends to `out` the text that is now final. @return the kinds
 *  completed by this piece (0: none); out->oom when out of memory. */
pii_kinds pii_stream_feed(struct pii_stream *s, const char *text, size_t len, struct pii_buf *out);

/** The text ended: appends what was held back. @return the kinds completed by it. */
pii_kinds pii_stream_finish(struct pii_stream *s, struct pii_buf *out);

/** Bytes held back right now (not yet emitted). */
size_t pii_stream_held(const struct pii_stream *s);

/** NULL-safe. */
void pii_stream_free(struct pii_stream *s);

/** Appends bytes to a pii_buf. @return 0, or -1 (and buf->oom) when out of memory. */
int pii_buf_append(struct pii_buf *b, const char *p, size_t n);

#endif
