/*
 * DESIGN: jsmn in strict mode with parent links, its implementation compiled into this file
 * only. Tokens grow by resuming the same parser (jsmn supports continuing after
 * JSMN_ERROR_NOMEM), so a typical chat body is indexed in one pass with one arena
 * allocation, and a checked scan stops growing at its token limit.
 *
 * jsmn alone is lenient (it never looks at commas or colons, nor inside strings), so a
 * checked scan walks the tokens once more, in order, with a stack of the open containers:
 * the bytes between two tokens must be the separator JSON puts there, strings and numbers
 * must be what jansson accepts, and each key goes into a hash set of (object, unescaped
 * key). Every byte and token is looked at a bounded number of times: linear in the body.
 * Nothing here uses the parent links themselves, so bench/parse can build this file
 * without them (JSON_SCAN_QUADRATIC) and time jsmn's quadratic fallback against them.
 */
#define JSMN_STATIC
#define JSMN_STRICT
#ifndef JSON_SCAN_QUADRATIC
#define JSMN_PARENT_LINKS /* as util/json_scan.h sets it: the token layout depends on it */
#endif
#include <jsmn.h>

#include "util/json_scan.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/arena.h"
#include "util/utf8.h"

/* jsmn's strict mode checks only a primitive's first character; "tru" or "1.2.3" must not
 * pass for JSON here, so each primitive is checked against the JSON grammar. */
static bool primitive_valid(const char *p, size_t n)
{
    if (n == 4 && (memcmp(p, "true", 4) == 0 || memcmp(p, "null", 4) == 0)) return true;
    if (n == 5 && memcmp(p, "false", 5) == 0) return true;
    size_t i = 0;
    if (i < n && p[i] == '-') i++;
    if (i >= n) return false;
    if (p[i] == '0')
        i++;
    else if (p[i] >= '1' && p[i] <= '9')
        while (i < n && p[i] >= '0' && p[i] <= '9') i++;
    else
        return false;
    if (i < n && p[i] == '.') {
        i++;
        size_t d = i;
        while (i < n && p[i] >= '0' && p[i] <= '9') i++;
        if (i == d) return false;
    }
    if (i < n && (p[i] == 'e' || p[i] == 'E')) {
        i++;
        if (i < n && (p[i] == '+' || p[i] == '-')) i++;
        size_t d = i;
        while (i < n && p[i] >= '0' && p[i] <= '9') i++;
        if (i == d) return false;
    }
    return i == n;
}

/* Runs jsmn over the text, growing the token array fourfold in the arena, but never past
 * max_tokens (0: no limit), so a hostile body costs at most that many tokens of work. */
static enum json_scan_status tokenize(const char *js, size_t len, struct arena *arena,
                                      int max_tokens, jsmntok_t **out, int *n_out)
{
    if (len > INT_MAX) return JSON_SCAN_INVALID; /* jsmn's offsets are ints */
    unsigned cap = 128;
    if (max_tokens > 0 && (unsigned)max_tokens < cap) cap = (unsigned)max_tokens;
    jsmntok_t *tok = arena_alloc(arena, cap * sizeof *tok);
    if (tok == NULL) return JSON_SCAN_OOM;
    jsmn_parser p;
    jsmn_init(&p);
    int n;
    while ((n = jsmn_parse(&p, js, len, tok, cap)) == JSMN_ERROR_NOMEM) {
        if (max_tokens > 0 && cap >= (unsigned)max_tokens) return JSON_SCAN_TOO_MANY_TOKENS;
        unsigned bigger_cap = cap * 4;
        if (max_tokens > 0 && bigger_cap > (unsigned)max_tokens) bigger_cap = (unsigned)max_tokens;
        jsmntok_t *bigger = arena_alloc(arena, (size_t)bigger_cap * sizeof *tok);
        if (bigger == NULL) return JSON_SCAN_OOM;
        memcpy(bigger, tok, cap * sizeof *tok);
        tok = bigger;
        cap = bigger_cap;
    }
    if (n < 1) return JSON_SCAN_INVALID;
    *out = tok;
    *n_out = n;
    return JSON_SCAN_OK;
}

static bool only_whitespace(const char *p, size_t n)
{
    for (size_t k = 0; k < n; k++)
        if (p[k] != ' ' && p[k] != '\n' && p[k] != '\r' && p[k] != '\t') return false;
    return true;
}

/* Whether jsmn's `n` tokens of `js` are exactly one JSON value: primitives are checked
 * against the grammar, and jsmn's acceptance of a sequence of values is refused. */
static bool one_value(const char *js, size_t len, const jsmntok_t *tok, int n)
{
    for (int i = 0; i < n; i++)
        if (tok[i].type == JSMN_PRIMITIVE &&
            !primitive_valid(js + tok[i].start, (size_t)(tok[i].end - tok[i].start)))
            return false;
    if (json_scan_skip(&(struct json_scan){js, len, (jsmntok_t *)tok, n}, 0) != n) return false;
    return only_whitespace(js + tok[0].end, len - (size_t)tok[0].end);
}

int json_scan_parse(struct json_scan *s, const char *js, size_t len, struct arena *arena, bool *oom)
{
    jsmntok_t *tok = NULL;
    int n = 0;
    enum json_scan_status st = tokenize(js, len, arena, 0, &tok, &n);
    *oom = st == JSON_SCAN_OOM;
    if (st != JSON_SCAN_OK || !one_value(js, len, tok, n)) return -1;
    s->js = js;
    s->len = len;
    s->tok = tok;
    s->n = n;
    return 0;
}

/* ---- the checked scan ------------------------------------------------------------------ */

static int hex_digit(char c)
{
    return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}

/* The four hex digits after "\u" (jsmn has checked they are hex). */
static uint32_t hex4(const char *p)
{
    return (uint32_t)(hex_digit(p[0]) << 12 | hex_digit(p[1]) << 8 | hex_digit(p[2]) << 4 |
                      hex_digit(p[3]));
}

static bool is_high_surrogate(uint32_t u)
{
    return u >= 0xd800 && u <= 0xdbff;
}

static bool is_low_surrogate(uint32_t u)
{
    return u >= 0xdc00 && u <= 0xdfff;
}

/* The \u escape at p[i] in a string of n bytes: its code point (a surrogate pair joined;
 * U+FFFD with *unpaired set for a lone surrogate) and its length in bytes (6 or 12). */
static size_t unicode_escape(const char *p, size_t i, size_t n, uint32_t *cp, bool *unpaired)
{
    uint32_t u = hex4(p + i + 2);
    *cp = u;
    *unpaired = false;
    if (!is_high_surrogate(u) && !is_low_surrogate(u)) return 6;
    uint32_t lo = is_high_surrogate(u) && i + 12 <= n && p[i + 6] == '\\' && p[i + 7] == 'u'
                      ? hex4(p + i + 8)
                      : 0;
    if (!is_low_surrogate(lo)) {
        *cp = 0xfffd;
        *unpaired = true;
        return 6;
    }
    *cp = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
    return 12;
}

/* What jansson would refuse in the raw text of a string token, or NULL; *at: where. */
static const char *string_fault(const char *p, size_t n, size_t *at)
{
    for (size_t i = 0; i < n;) {
        if (i + 8 <= n && utf8_plain8(p + i, false)) {
            i += 8;
            continue;
        }
        unsigned char c = (unsigned char)p[i];
        *at = i;
        if (c >= 0x20 && c < 0x80 && c != '\\') {
            i++;
        } else if (c < 0x20) {
            return "a raw control character (it must be escaped)";
        } else if (c == '\\' && p[i + 1] != 'u') {
            i += 2; /* jsmn has checked the escape letter */
        } else if (c == '\\') {
            uint32_t cp;
            bool unpaired;
            i += unicode_escape(p, i, n, &cp, &unpaired);
            if (cp == 0) return "\\u0000 (NUL), which is not allowed";
            if (unpaired) return "an unpaired UTF-16 surrogate escape";
        } else {
            size_t k = utf8_sequence((const unsigned char *)p + i, n - i);
            if (k == 0) return "invalid UTF-8";
            i += k;
        }
    }
    return NULL;
}

/* Unescapes the raw text of a string token into out (unescaping never lengthens a string, so
 * n bytes of room suffice); returns the length. */
static size_t unescape(const char *p, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        if (p[i] != '\\') {
            out[o++] = p[i++];
            continue;
        }
        char c = p[i + 1];
        if (c == 'u') {
            uint32_t cp;
            bool unpaired;
            i += unicode_escape(p, i, n, &cp, &unpaired);
            char utf8[4];
            size_t k = utf8_encode(cp, utf8);
            memcpy(out + o, utf8, k);
            o += k;
            continue;
        }
        static const char from[] = "bfnrt", to[] = "\b\f\n\r\t";
        const char *k = strchr(from, c);
        out[o++] = k && c ? to[k - from] : c; /* \" \\ \/ stand for themselves */
        i += 2;
    }
    return o;
}

/* The decimal exponent of a real's first significant digit (1.5e3 → 3, 0.02 → -2), from
 * its digits alone; *zero when it has none. Saturates far beyond any double's range. */
static long long decimal_exponent(const char *p, size_t n, bool *zero)
{
    size_t i = p[0] == '-', int_digits = 0, lead_zeros = 0;
    bool int_zero = p[i] == '0'; /* JSON: "0" or no leading zero at all */
    *zero = true;
    for (; i < n && p[i] >= '0' && p[i] <= '9'; i++, int_digits++)
        if (p[i] != '0') *zero = false;
    if (i < n && p[i] == '.')
        for (i++; i < n && p[i] >= '0' && p[i] <= '9'; i++) {
            if (p[i] != '0') *zero = false;
            if (*zero) lead_zeros++;
        }
    long long e = 0;
    if (i < n && (p[i] == 'e' || p[i] == 'E')) {
        bool negative = p[++i] == '-';
        if (p[i] == '-' || p[i] == '+') i++;
        for (; i < n; i++)
            if (e < 1000000000) e = e * 10 + (p[i] - '0');
        if (negative) e = -e;
    }
    return int_zero ? e - (long long)lead_zeros - 1 : e + (long long)int_digits - 1;
}

/* Whether a number token is one jansson reads: an integer within int64, a real within a
 * double. A long real is judged by its decimal exponent, and strtod only sees the rare one
 * on the edge (1.79e308), so no number costs more than a pass or two over its digits. */
static bool number_fits(const char *p, size_t n)
{
    bool neg = p[0] == '-';
    if (memchr(p, '.', n) == NULL && memchr(p, 'e', n) == NULL && memchr(p, 'E', n) == NULL) {
        size_t digits = n - neg; /* no leading zeros in JSON: the digit count is the magnitude */
        if (digits != 19) return digits < 19;
        return memcmp(p + neg, neg ? "9223372036854775808" : "9223372036854775807", 19) <= 0;
    }
    if (n > 64) {
        bool zero;
        long long x = decimal_exponent(p, n, &zero);
        if (zero || x < 308) return true; /* below 1e308 < DBL_MAX; tiny ones round to 0 */
        if (x > 308) return false;
    }
    char small[65], *copy = n < sizeof small ? small : malloc(n + 1);
    if (copy == NULL) return true; /* cannot tell; a jansson reader later would refuse it */
    memcpy(copy, p, n);
    copy[n] = '\0';
    errno = 0;
    double v = strtod(copy, NULL);
    bool fits = !(errno == ERANGE && isinf(v));
    if (copy != small) free(copy);
    return fits;
}

/* ---- duplicate keys ----
 * Most objects are small: their keys are compared pairwise, all in one cache line. An object
 * with more than SMALL_OBJECT keys gets its own hash set of unescaped keys, sized from its
 * member count (jsmn's): one set for the whole body, and 16-byte slots, cost a cache miss
 * per key — most of the checked scan's time on a body of many keys. */

#define SMALL_OBJECT 8

struct key_slot {
    int key;       /* key token, -1 empty */
    uint32_t hash; /* of its unescaped text */
};

struct key_set {
    struct key_slot *slots; /* arena */
    uint32_t mask, used;
};

/* Unescaped keys, for the rare key with escapes: two scratch buffers, malloc'd and grown. */
struct key_scratch {
    char *buf[2];
    size_t cap[2];
};

/* The unescaped bytes of key token k: the raw text itself when it has no escapes. */
static const char *key_text(const struct json_scan *s, struct key_scratch *ks, int which, int k,
                            size_t *len)
{
    const char *p = s->js + s->tok[k].start;
    size_t n = (size_t)(s->tok[k].end - s->tok[k].start);
    *len = n;
    if (memchr(p, '\\', n) == NULL) return p;
    if (ks->cap[which] < n) {
        char *bigger = realloc(ks->buf[which], n);
        if (bigger == NULL) return NULL;
        ks->buf[which] = bigger;
        ks->cap[which] = n;
    }
    *len = unescape(p, n, ks->buf[which]);
    return ks->buf[which];
}

static uint32_t hash_bytes(const char *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 16777619u;
    return h;
}

/* Whether key tokens a and b unescape to the same bytes: 1, 0, or -1 when out of memory. */
static int keys_equal(const struct json_scan *s, struct key_scratch *ks, int a, int b)
{
    size_t alen, blen;
    const char *at = key_text(s, ks, 0, a, &alen), *bt = key_text(s, ks, 1, b, &blen);
    if (at == NULL || bt == NULL) return -1;
    return alen == blen && memcmp(at, bt, alen) == 0;
}

/* A set for an object of `members` keys (load <= 1/2). */
static int key_set_init(struct key_set *set, struct arena *arena, int members)
{
    uint32_t slots = 16;
    while (slots < 2 * (uint32_t)members) slots *= 2;
    if ((set->slots = arena_alloc(arena, slots * sizeof *set->slots)) == NULL) return -1;
    for (uint32_t i = 0; i < slots; i++) set->slots[i].key = -1;
    set->mask = slots - 1;
    set->used = 0;
    return 0;
}

/* Adds key token k: 1 when it is new, 0 when the set has it already, -1 OOM. */
static int key_set_add(const struct json_scan *s, struct key_set *set, struct key_scratch *ks,
                       int k)
{
    size_t len, olen;
    if (2 * (set->used + 1) > set->mask + 1) return -1; /* sized from jsmn's count: never */
    const char *text = key_text(s, ks, 0, k, &len);
    if (text == NULL) return -1;
    uint32_t h = hash_bytes(text, len);
    for (uint32_t i = h & set->mask;; i = (i + 1) & set->mask) {
        struct key_slot *slot = &set->slots[i];
        if (slot->key < 0) {
            *slot = (struct key_slot){k, h};
            set->used++;
            return 1;
        }
        if (slot->hash != h) continue;
        const char *other = key_text(s, ks, 1, slot->key, &olen);
        if (other == NULL) return -1;
        if (olen == len && memcmp(other, text, len) == 0) return 0;
    }
}

/* ---- the walk ---- */

struct frame {
    int tok;                /* the open array or object */
    int end;                /* offset just past its closing bracket */
    int last;               /* offset just past its last child so far (or its opening bracket) */
    int children;           /* direct children so far; an object's keys and values both count */
    int keys[SMALL_OBJECT]; /* an object's first keys */
    struct key_set set;     /* all its keys, once it has more than SMALL_OBJECT */
};

struct walk {
    const struct json_scan *s;
    const struct json_scan_limits *lim;
    struct json_scan_fault *fault;
    struct arena *arena;
    struct frame *stack;
    int depth;
    struct key_scratch scratch;
};

static int text_start(const jsmntok_t *t)
{
    return t->type == JSMN_STRING ? t->start - 1 : t->start; /* strings: the opening quote */
}

static int text_end(const jsmntok_t *t)
{
    return t->type == JSMN_STRING ? t->end + 1 : t->end;
}

static int fail(struct walk *w, enum json_scan_status status, int tok, size_t offset,
                const char *why)
{
    int container = w->depth > 0 ? w->stack[w->depth - 1].tok : -1;
    *w->fault = (struct json_scan_fault){status, tok, container, offset, why};
    return -1;
}

/* The bytes between two neighbours: whitespace around exactly one `sep` (none when 0). */
static bool gap_ok(const char *js, int from, int to, char sep)
{
    int i = from;
    while (i < to && (js[i] == ' ' || js[i] == '\n' || js[i] == '\r' || js[i] == '\t')) i++;
    if (sep) {
        if (i == to || js[i] != sep) return false;
        i++;
    }
    return only_whitespace(js + i, (size_t)(to - i));
}

/* Closes the innermost open container: nothing but whitespace after its last child, and an
 * object ends after a value, not after a key. */
static int close_frame(struct walk *w)
{
    const struct frame *f = &w->stack[--w->depth];
    bool object = w->s->tok[f->tok].type == JSMN_OBJECT;
    if (!gap_ok(w->s->js, f->last, f->end - 1, 0) || (object && f->children % 2 != 0))
        return fail(w, JSON_SCAN_INVALID, f->tok, (size_t)f->last, "");
    return 0;
}

/* Key token k of the object open in f, as its keys so far are: 1 new, 0 a duplicate, -1 OOM. */
static int add_key(struct walk *w, struct frame *f, int k)
{
    int before = (f->children - 1) / 2; /* keys of this object before k */
    if (before < SMALL_OBJECT) {
        for (int j = 0; j < before; j++) {
            int same = keys_equal(w->s, &w->scratch, f->keys[j], k);
            if (same != 0) return same < 0 ? -1 : 0;
        }
        f->keys[before] = k;
        return 1;
    }
    if (before == SMALL_OBJECT) { /* it outgrew pairwise checks: its keys so far join a set */
        if (key_set_init(&f->set, w->arena, w->s->tok[f->tok].size) != 0) return -1;
        for (int j = 0; j < SMALL_OBJECT; j++)
            if (key_set_add(w->s, &f->set, &w->scratch, f->keys[j]) < 0) return -1;
    }
    return key_set_add(w->s, &f->set, &w->scratch, k);
}

/* Token i as a child of the innermost open container: the separator before it, and whether
 * it is an object key (*obj: that object's frame, else NULL). */
static int place(struct walk *w, int i, struct frame **obj)
{
    const jsmntok_t *t = &w->s->tok[i];
    *obj = NULL;
    if (w->depth == 0) /* the root: jsmn also lets a second value follow the first */
        return i == 0 && only_whitespace(w->s->js, (size_t)text_start(t))
                   ? 0
                   : fail(w, JSON_SCAN_INVALID, i, (size_t)text_start(t), "");
    struct frame *f = &w->stack[w->depth - 1];
    bool object = w->s->tok[f->tok].type == JSMN_OBJECT;
    char sep = f->children == 0 ? 0 : object && f->children % 2 ? ':' : ',';
    if (!gap_ok(w->s->js, f->last, text_start(t), sep))
        return fail(w, JSON_SCAN_INVALID, i, (size_t)f->last, "");
    if (object && f->children % 2 == 0) {
        if (t->type != JSMN_STRING) return fail(w, JSON_SCAN_INVALID, i, (size_t)t->start, "");
        *obj = f;
    }
    f->children++;
    f->last = text_end(t);
    return 0;
}

static int check_token(struct walk *w, int i)
{
    const jsmntok_t *t = &w->s->tok[i];
    const char *p = w->s->js + t->start;
    size_t n = (size_t)(t->end - t->start), at = 0;
    while (w->depth > 0 && text_start(t) >= w->stack[w->depth - 1].end)
        if (close_frame(w) != 0) return -1;
    struct frame *obj;
    if (place(w, i, &obj) != 0) return -1;
    switch (t->type) {
    case JSMN_STRING: {
        const char *why = string_fault(p, n, &at);
        if (why) return fail(w, JSON_SCAN_BAD_STRING, i, (size_t)t->start + at, why);
        int added = obj ? add_key(w, obj, i) : 1;
        if (added < 0) return fail(w, JSON_SCAN_OOM, -1, 0, "");
        if (added == 0) return fail(w, JSON_SCAN_DUPLICATE_KEY, i, (size_t)t->start, "");
        return 0;
    }
    case JSMN_PRIMITIVE:
        if (!primitive_valid(p, n)) return fail(w, JSON_SCAN_INVALID, i, (size_t)t->start, "");
        if ((p[0] == '-' || (p[0] >= '0' && p[0] <= '9')) && !number_fits(p, n))
            return fail(w, JSON_SCAN_BAD_NUMBER, i, (size_t)t->start, "");
        return 0;
    case JSMN_OBJECT:
    case JSMN_ARRAY:
        if (w->depth == w->lim->max_depth)
            return fail(w, JSON_SCAN_TOO_DEEP, i, (size_t)t->start, "");
        if (t->type == JSMN_OBJECT && t->size > w->lim->max_members)
            return fail(w, JSON_SCAN_TOO_MANY_MEMBERS, i, (size_t)t->start, "");
        w->stack[w->depth++] = (struct frame){i, t->end, t->start + 1, 0, {0}, {NULL, 0, 0}};
        return 0;
    default:
        return fail(w, JSON_SCAN_INVALID, i, (size_t)t->start, "");
    }
}

static int walk_tokens(struct walk *w)
{
    const struct json_scan *s = w->s;
    for (int i = 0; i < s->n; i++)
        if (check_token(w, i) != 0) return -1;
    while (w->depth > 0)
        if (close_frame(w) != 0) return -1;
    if (!only_whitespace(s->js + s->tok[0].end, s->len - (size_t)s->tok[0].end))
        return fail(w, JSON_SCAN_INVALID, -1, (size_t)s->tok[0].end, "");
    return 0;
}

int json_scan_parse_checked(struct json_scan *s, const char *js, size_t len, struct arena *arena,
                            const struct json_scan_limits *lim, struct json_scan_fault *fault)
{
    *fault = (struct json_scan_fault){JSON_SCAN_OK, -1, -1, 0, ""};
    jsmntok_t *tok = NULL;
    int n = 0;
    enum json_scan_status st = tokenize(js, len, arena, lim->max_tokens, &tok, &n);
    if (st != JSON_SCAN_OK) {
        fault->status = st;
        return -1;
    }
    *s = (struct json_scan){js, len, tok, n}; /* on failure too: json_scan_path(fault->tok) */
    struct walk w = {
        .s = s,
        .lim = lim,
        .fault = fault,
        .arena = arena,
        .stack = arena_alloc(arena, (size_t)lim->max_depth * sizeof(struct frame)),
    };
    if (w.stack == NULL) {
        fault->status = JSON_SCAN_OOM;
        return -1;
    }
    int rc = walk_tokens(&w);
    free(w.scratch.buf[0]);
    free(w.scratch.buf[1]);
    return rc;
}

int json_scan_skip(const struct json_scan *s, int i)
{
    int end = s->tok[i].end;
    int j = i + 1;
    while (j < s->n && s->tok[j].start < end) j++;
    return j;
}

/* Whether key token k, unescaped, is `key` (klen bytes, no backslash in it). The raw text
 * usually settles it; a key with escapes is unescaped into a small buffer (unescaping
 * only shortens, by at most 6 to 1, so a shorter key or one over 6 * klen cannot match). */
static bool key_is(const struct json_scan *s, int k, const char *key, size_t klen)
{
    const char *p = s->js + s->tok[k].start;
    size_t n = (size_t)(s->tok[k].end - s->tok[k].start);
    if (s->tok[k].type != JSMN_STRING || n < klen || (p[0] != key[0] && p[0] != '\\')) return false;
    if (n == klen && memcmp(p, key, klen) == 0) return true;
    char buf[256];
    if (n > sizeof buf || n > 6 * klen || memchr(p, '\\', n) == NULL) return false;
    return unescape(p, n, buf) == klen && memcmp(buf, key, klen) == 0;
}

int json_scan_get(const struct json_scan *s, int obj, const char *key)
{
    if (obj < 0 || obj >= s->n || s->tok[obj].type != JSMN_OBJECT) return -1;
    size_t klen = strlen(key);
    int i = obj + 1;
    for (int m = 0; m < s->tok[obj].size && i + 1 < s->n; m++) {
        if (key_is(s, i, key, klen)) return i + 1;
        i = json_scan_skip(s, i + 1); /* past the value */
    }
    return -1;
}

void json_scan_members(const struct json_scan *s, int obj, const char *const *keys, size_t n,
                       int *out)
{
    size_t len[64];
    for (size_t k = 0; k < n; k++) {
        out[k] = -1;
        len[k] = k < 64 ? strlen(keys[k]) : 0;
    }
    if (obj < 0 || obj >= s->n || s->tok[obj].type != JSMN_OBJECT) return;
    int i = obj + 1;
    for (int m = 0; m < s->tok[obj].size && i + 1 < s->n; m++) {
        for (size_t k = 0; k < n && k < 64; k++)
            if (out[k] < 0 && key_is(s, i, keys[k], len[k])) {
                out[k] = i + 1;
                break;
            }
        i = json_scan_skip(s, i + 1);
    }
}

static bool valid(const struct json_scan *s, int i)
{
    return i >= 0 && i < s->n;
}

bool json_scan_is_object(const struct json_scan *s, int i)
{
    return valid(s, i) && s->tok[i].type == JSMN_OBJECT;
}

bool json_scan_is_array(const struct json_scan *s, int i)
{
    return valid(s, i) && s->tok[i].type == JSMN_ARRAY;
}

bool json_scan_is_string(const struct json_scan *s, int i)
{
    return valid(s, i) && s->tok[i].type == JSMN_STRING;
}

static char first_char(const struct json_scan *s, int i)
{
    return s->js[s->tok[i].start];
}

bool json_scan_is_bool(const struct json_scan *s, int i)
{
    return valid(s, i) && s->tok[i].type == JSMN_PRIMITIVE &&
           (first_char(s, i) == 't' || first_char(s, i) == 'f');
}

bool json_scan_is_true(const struct json_scan *s, int i)
{
    return valid(s, i) && s->tok[i].type == JSMN_PRIMITIVE && first_char(s, i) == 't';
}

bool json_scan_is_null(const struct json_scan *s, int i)
{
    return valid(s, i) && s->tok[i].type == JSMN_PRIMITIVE && first_char(s, i) == 'n';
}

bool json_scan_is_number(const struct json_scan *s, int i)
{
    if (!valid(s, i) || s->tok[i].type != JSMN_PRIMITIVE) return false;
    char c = first_char(s, i);
    return c == '-' || (c >= '0' && c <= '9');
}

bool json_scan_is_integer(const struct json_scan *s, int i)
{
    if (!json_scan_is_number(s, i)) return false;
    for (int k = s->tok[i].start; k < s->tok[i].end; k++) {
        char c = s->js[k];
        if (c == '.' || c == 'e' || c == 'E') return false;
    }
    return true;
}

/* Copies number token i into buf (cap bytes) as a C string; false when it does not fit. */
static bool number_text(const struct json_scan *s, int i, char *buf, size_t cap)
{
    size_t n = (size_t)(s->tok[i].end - s->tok[i].start);
    if (n == 0 || n >= cap) return false;
    memcpy(buf, s->js + s->tok[i].start, n);
    buf[n] = '\0';
    return true;
}

bool json_scan_integer(const struct json_scan *s, int i, long long *out)
{
    char buf[32];
    if (!json_scan_is_integer(s, i) || !number_text(s, i, buf, sizeof buf)) return false;
    errno = 0;
    long long v = strtoll(buf, NULL, 10);
    if (errno == ERANGE) return false;
    *out = v;
    return true;
}

bool json_scan_number(const struct json_scan *s, int i, double *out)
{
    char buf[65];
    if (!json_scan_is_number(s, i) || !number_text(s, i, buf, sizeof buf)) return false;
    *out = strtod(buf, NULL);
    return true;
}

char *json_scan_string_dup(const struct json_scan *s, int i, struct arena *arena)
{
    if (!json_scan_is_string(s, i)) return NULL;
    size_t n = (size_t)(s->tok[i].end - s->tok[i].start);
    char *out = arena_alloc(arena, n + 1);
    if (out == NULL) return NULL;
    out[unescape(s->js + s->tok[i].start, n, out)] = '\0';
    return out;
}

/* Appends to a path being built, keeping room for the NUL; "..." marks a cut. */
static void path_add(char *out, size_t cap, size_t *len, const char *fmt, const char *p, size_t n)
{
    if (*len + 1 >= cap) return;
    int w = snprintf(out + *len, cap - *len, fmt, (int)n, p);
    if (w < 0) return;
    if ((size_t)w >= cap - *len) {
        *len = cap - 1;
        if (cap > 4) memcpy(out + cap - 4, "...", 3);
        return;
    }
    *len += (size_t)w;
}

void json_scan_path(const struct json_scan *s, int i, char *out, size_t cap)
{
    size_t len = 0;
    if (cap == 0) return;
    out[0] = '\0';
    int cur = 0;
    while (cur != i && cur >= 0 && cur < s->n) {
        int next = -1, child = cur + 1;
        for (int m = 0; m < s->tok[cur].size && child < s->n && next < 0; m++) {
            bool object = s->tok[cur].type == JSMN_OBJECT;
            int value = object ? child + 1 : child;
            int end = value < s->n ? json_scan_skip(s, value) : s->n;
            if (i >= child && i < end) {
                if (object) {
                    size_t n = (size_t)(s->tok[child].end - s->tok[child].start);
                    path_add(out, cap, &len, len ? ".%.*s" : "%.*s", s->js + s->tok[child].start,
                             n > 64 ? 64 : n);
                } else {
                    char idx[16];
                    snprintf(idx, sizeof idx, "%d", m);
                    path_add(out, cap, &len, "[%.*s]", idx, strlen(idx));
                }
                next = i == child && object ? i : value; /* a key: its path is its member's */
            }
            child = end;
        }
        if (s->tok[cur].type != JSMN_OBJECT && s->tok[cur].type != JSMN_ARRAY) break;
        cur = next;
    }
}

bool json_scan_string_is(const struct json_scan *s, int i, const char *lit)
{
    if (!json_scan_is_string(s, i)) return false;
    size_t n = strlen(lit);
    return (size_t)(s->tok[i].end - s->tok[i].start) == n &&
           memcmp(s->js + s->tok[i].start, lit, n) == 0;
}

const char *json_scan_type_name(const struct json_scan *s, int i)
{
    if (!valid(s, i)) return "nothing";
    switch (s->tok[i].type) {
    case JSMN_OBJECT:
        return "object";
    case JSMN_ARRAY:
        return "array";
    case JSMN_STRING:
        return "string";
    case JSMN_PRIMITIVE:
        if (json_scan_is_bool(s, i)) return "boolean";
        if (json_scan_is_null(s, i)) return "null";
        return json_scan_is_integer(s, i) ? "integer" : "number";
    default:
        return "?";
    }
}
