/*
 * json_scan — a zero-copy JSON token index (jsmn) for the request hot path.
 *
 * A gateway mostly needs to *look at* a few fields of a JSON body and pass the rest through
 * byte for byte. Building a DOM for that (and serialising it back) cost more than everything
 * else a request does, so the proxy scans bodies into jsmn tokens — offsets into the
 * original bytes — checks the fields it cares about, and splices edits into the original
 * text. Anything that needs a real document (translations, error details) uses jansson.
 *
 * Ownership: tokens live in the arena passed to json_scan_parse; the scanned text is
 * *borrowed* and must outlive the scan. Thread: any (no shared state).
 */
#ifndef STRATUS_JSON_SCAN_H
#define STRATUS_JSON_SCAN_H

#define JSMN_HEADER
#include <jsmn.h>
#undef JSMN_HEADER

#include <stdbool.h>
#include <stddef.h>

struct arena;

struct json_scan {
    const char *js; /* the scanned text, borrowed */
    size_t len;
    jsmntok_t *tok; /* tok[0] is the root value; arena */
    int n;          /* tokens */
};

/**
 * Scans `js` (one complete JSON value, surrounding whitespace allowed).
 * @return 0, or -1 when the text is not valid JSON (or out of memory: *oom set).
 */
int json_scan_parse(struct json_scan *s, const char *js, size_t len, struct arena *arena,
                    bool *oom);

/** Whether `js` is exactly one valid JSON value (the same rules as json_scan_parse), for
 *  text that is only checked, not read: nothing is kept. False on out of memory too. */
bool json_scan_check(const char *js, size_t len);

/** Index of the token after `i` and all of its children. */
int json_scan_skip(const struct json_scan *s, int i);

/** Value token of `key` in object token `obj`, or -1. Keys are compared raw (unescaped
 *  keys with backslashes never match, which is fine for the ASCII names we look up). */
int json_scan_get(const struct json_scan *s, int obj, const char *key);

/** One pass over object `obj`: out[k] = value token of member keys[k], or -1 (n keys). Use
 *  it instead of several json_scan_get calls, which each walk the object. */
void json_scan_members(const struct json_scan *s, int obj, const char *const *keys, size_t n,
                       int *out);

bool json_scan_is_object(const struct json_scan *s, int i);
bool json_scan_is_array(const struct json_scan *s, int i);
bool json_scan_is_string(const struct json_scan *s, int i);
bool json_scan_is_bool(const struct json_scan *s, int i);
bool json_scan_is_true(const struct json_scan *s, int i);
bool json_scan_is_null(const struct json_scan *s, int i);
bool json_scan_is_number(const struct json_scan *s, int i);
bool json_scan_is_integer(const struct json_scan *s, int i);

/** Integer value of token i; false when it is not an integer. */
bool json_scan_integer(const struct json_scan *s, int i, long long *out);

/** Whether string token i equals `lit` exactly (raw bytes, no unescaping). */
bool json_scan_string_is(const struct json_scan *s, int i, const char *lit);

/** "object", "array", "string", "integer", "number", "boolean", "null". */
const char *json_scan_type_name(const struct json_scan *s, int i);

/** Children of an array or members of an object. */
static inline int json_scan_size(const struct json_scan *s, int i)
{
    return s->tok[i].size;
}

#endif
