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

/* Parent links make jsmn linear: without them every '}' and ',' scans back over all earlier
 * tokens, so a body of many small values costs the square of its size (a 3 MB body held the
 * loop for 14 s). jsmntok_t gains a `parent` field with them, so every file that sees the
 * struct must agree: this header sets the macro and refuses to follow a bare <jsmn.h>.
 * JSON_SCAN_QUADRATIC is for bench/parse only, which builds the old behaviour to compare. */
#if defined(JSMN_H) && !defined(JSMN_PARENT_LINKS) && !defined(JSON_SCAN_QUADRATIC)
#error "include util/json_scan.h before <jsmn.h>: jsmntok_t must have its parent links"
#endif
#ifndef JSON_SCAN_QUADRATIC
#define JSMN_PARENT_LINKS
#endif
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
 * Scans `js` (one complete JSON value, surrounding whitespace allowed). Trusted or already
 * bounded text only (upstream answers): no limits, and jsmn's leniency stays (a stray comma,
 * raw bytes in strings). Bodies from clients go through json_scan_parse_checked.
 * @return 0, or -1 when the text is not valid JSON (or out of memory: *oom set).
 */
int json_scan_parse(struct json_scan *s, const char *js, size_t len, struct arena *arena,
                    bool *oom);

/* Bounds on one scan: what any one body may cost the event loop in CPU and memory. */
struct json_scan_limits {
    int max_tokens;  /* keys and values in the text (> 0) */
    int max_depth;   /* arrays and objects inside each other (> 0) */
    int max_members; /* keys in any one object (> 0) */
};

enum json_scan_status {
    JSON_SCAN_OK = 0,
    JSON_SCAN_INVALID,          /* not one JSON value (offset says where) */
    JSON_SCAN_OOM,              /* out of memory */
    JSON_SCAN_TOO_MANY_TOKENS,  /* more than limits.max_tokens keys and values */
    JSON_SCAN_TOO_DEEP,         /* nested deeper than limits.max_depth */
    JSON_SCAN_TOO_MANY_MEMBERS, /* an object with more than limits.max_members keys */
    JSON_SCAN_BAD_STRING,       /* a string or key jansson refuses (why says how) */
    JSON_SCAN_BAD_NUMBER,       /* an integer beyond int64 or a number beyond double */
    JSON_SCAN_DUPLICATE_KEY,    /* an object has a key twice (compared unescaped) */
};

/* Why a checked scan refused the text. */
struct json_scan_fault {
    enum json_scan_status status;
    int tok;         /* the offending token (string, key, number), or -1 */
    int container;   /* the array or object open around it (a duplicate key's object), or -1 */
    size_t offset;   /* byte offset of the problem in the text */
    const char *why; /* static text: "invalid UTF-8", "\u0000 (NUL)", ... or "" */
};

/**
 * Scans `js` as strict JSON (RFC 8259, as jansson reads it) within `lim`, in time linear in
 * `len`: every separator is checked, strings must be valid UTF-8 without raw control
 * characters, \u0000 or unpaired surrogates, integers must fit int64 and numbers a double,
 * and no object may have the same key twice. So a body accepted here is one every jansson
 * reader further on (translations, the engine) accepts too. Stops at the limit: a body past
 * max_tokens is not scanned to its end.
 * @return 0, or -1 with `fault` filled (its `status` JSON_SCAN_OOM when out of memory).
 *         When fault->tok >= 0, `s` indexes the whole text, enough for json_scan_path.
 */
int json_scan_parse_checked(struct json_scan *s, const char *js, size_t len, struct arena *arena,
                            const struct json_scan_limits *lim, struct json_scan_fault *fault);

/** Index of the token after `i` and all of its children. */
int json_scan_skip(const struct json_scan *s, int i);

/** Value token of `key` in object token `obj`, or -1. Keys are compared unescaped, as the
 *  JSON readers upstream see them ("mod\u0065l" is "model"). */
int json_scan_get(const struct json_scan *s, int obj, const char *key);

/** One pass over object `obj`: out[k] = value token of member keys[k], or -1 (n <= 64 keys).
 *  Use it instead of several json_scan_get calls, which each walk the object. */
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

/** Integer value of token i; false when it is not an integer or does not fit int64. */
bool json_scan_integer(const struct json_scan *s, int i, long long *out);

/** Value of number token i; false when it is not a number or is longer than 64 characters
 *  (no field we check needs more digits than a double holds). */
bool json_scan_number(const struct json_scan *s, int i, double *out);

/** String token i unescaped, NUL-terminated, in `arena`; NULL when out of memory or when i
 *  is not a string. A "\u0000" inside would end it early: checked scans refuse those. */
char *json_scan_string_dup(const struct json_scan *s, int i, struct arena *arena);

/**
 * Where token i sits, as a path a user can follow: `messages[3].content`, or `` for the
 * root. Cost: linear in the tokens before i (error paths only). Writes at most cap - 1
 * bytes plus a NUL, eliding the middle of a long path.
 */
void json_scan_path(const struct json_scan *s, int i, char *out, size_t cap);

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
