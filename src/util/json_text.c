#include "util/json_text.h"

#include <stdbool.h>
#include <string.h>

#include "util/utf8.h"

/* One character of `s` at *i as JSON string text in out (at most 6 bytes); advances *i. Bytes
 * that are not UTF-8 become U+FFFD, so a line stays valid JSON whatever a client sent. */
static size_t escape_one(const char *s, size_t n, size_t *i, char out[8])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char c = (unsigned char)s[*i];
    size_t k = 0;
    *i += 1;
    if (c == '"' || c == '\\') {
        out[k++] = '\\';
        out[k++] = (char)c;
    } else if (c == '\n' || c == '\r' || c == '\t') {
        out[k++] = '\\';
        out[k++] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
    } else if (c < 0x20 || c == 0x7f) {
        memcpy(out, "\\u00", 4);
        out[4] = hex[c >> 4];
        out[5] = hex[c & 15];
        k = 6;
    } else if (c < 0x80) {
        out[k++] = (char)c;
    } else {
        size_t seq = utf8_sequence((const unsigned char *)s + *i - 1, n - (*i - 1));
        if (seq == 0) {
            memcpy(out, "\\ufffd", 6);
            return 6;
        }
        memcpy(out, s + *i - 1, seq);
        *i += seq - 1;
        k = seq;
    }
    return k;
}

/* Printable ASCII that stands for itself in a JSON string. */
static bool plain(unsigned char c)
{
    return c >= 0x20 && c < 0x7f && c != '"' && c != '\\';
}

size_t json_escape(char *buf, size_t cap, const char *s, size_t n)
{
    size_t out = 0, kept = 0; /* kept: the whole escapes that fit in buf */
    bool full = cap == 0;
    for (size_t i = 0; i < n;) {
        /* Runs of plain characters (nearly all of a log line) are copied whole. */
        size_t run = i;
        while (run < n && plain((unsigned char)s[run])) run++;
        if (run > i) {
            size_t k = run - i;
            if (!full) {
                size_t fits = out + k < cap ? k : cap - 1 - out;
                memcpy(buf + out, s + i, fits);
                kept = out + fits;
                full = fits < k;
            }
            out += k;
            i = run;
            continue;
        }
        char one[8];
        size_t k = escape_one(s, n, &i, one);
        if (!full && out + k < cap) {
            memcpy(buf + out, one, k);
            kept = out + k;
        } else {
            full = true; /* never half an escape: the prefix ends before it */
        }
        out += k;
    }
    if (cap) buf[kept] = '\0';
    return out;
}
