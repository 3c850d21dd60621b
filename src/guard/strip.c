/*
 * DESIGN
 * Every prompt string is checked on every request when the guard is on, and almost none
 * holds anything to strip, so the check must cost about what reading the bytes costs: eight
 * bytes at a time while they are plain printable ASCII, byte by byte only around a
 * backslash, a control character or a lead byte of a stripped range (0xC2, 0xE2, 0xF3).
 * Every stripped character has a fixed UTF-8 prefix, so matching a few bytes is enough —
 * no decoding. Lead bytes are never continuation bytes, so a byte-wise walk over UTF-8
 * cannot start a match in the middle of another character.
 */
#include "guard/strip.h"

#include <string.h>

#include "util/utf8.h"

bool strip_is_stripped(uint32_t cp)
{
    return (cp < 0x20 && cp != '\t' && cp != '\n' && cp != '\r') || (cp >= 0x7f && cp <= 0x9f) ||
           (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069) ||
           (cp >= 0xe0000 && cp <= 0xe007f);
}

/* The length of the stripped character encoded at t[0..n), or 0 when what is there stays. */
static size_t stripped_at(const unsigned char *t, size_t n)
{
    unsigned char c = t[0];
    if (c < 0x80) return strip_is_stripped(c) ? 1 : 0;
    if (c == 0xc2) /* U+0080..U+009F */
        return n >= 2 && t[1] >= 0x80 && t[1] <= 0x9f ? 2 : 0;
    if (c == 0xe2) /* U+202A..U+202E, U+2066..U+2069 */
        return n >= 3 && ((t[1] == 0x80 && t[2] >= 0xaa && t[2] <= 0xae) ||
                          (t[1] == 0x81 && t[2] >= 0xa6 && t[2] <= 0xa9))
                   ? 3
                   : 0;
    if (c == 0xf3) /* U+E0000..U+E007F */
        return n >= 4 && t[1] == 0xa0 && (t[2] == 0x80 || t[2] == 0x81) && t[3] >= 0x80 &&
                       t[3] <= 0xbf
                   ? 4
                   : 0;
    return 0;
}

/* Four hex digits, or UINT32_MAX when they are not (the scanner has checked; be safe). */
static uint32_t hex4(const char *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0) return UINT32_MAX;
        v = v << 4 | (uint32_t)d;
    }
    return v;
}

bool strip_json_wanted(const char *raw, size_t n)
{
    for (size_t i = 0; i < n;) {
        if (i + 8 <= n && utf8_plain8(raw + i, true)) {
            i += 8;
            continue;
        }
        if (raw[i] != '\\') {
            if (stripped_at((const unsigned char *)raw + i, n - i)) return true;
            i++;
            continue;
        }
        if (i + 1 >= n) return false;
        char e = raw[i + 1];
        if (e == 'b' || e == 'f') return true; /* backspace, form feed */
        if (e != 'u' || i + 6 > n) {
            i += 2;
            continue;
        }
        uint32_t u = hex4(raw + i + 2);
        if (u >= 0xd800 && u <= 0xdbff && i + 12 <= n && raw[i + 6] == '\\' && raw[i + 7] == 'u') {
            uint32_t lo = hex4(raw + i + 8);
            if (lo >= 0xdc00 && lo <= 0xdfff) {
                if (strip_is_stripped(0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00))) return true;
                i += 12;
                continue;
            }
        }
        if (strip_is_stripped(u)) return true;
        i += 6;
    }
    return false;
}

size_t strip_text(char *t, size_t n)
{
    const unsigned char *u = (const unsigned char *)t;
    size_t i = 0, k = 0;
    while (i < n) { /* read-only until the first one */
        if (i + 8 <= n && utf8_plain8(t + i, true)) {
            i += 8;
            continue;
        }
        if ((k = stripped_at(u + i, n - i)) != 0) break;
        i++;
    }
    if (i == n) return n;
    size_t w = i;
    while (i < n) {
        if ((k = stripped_at(u + i, n - i)) != 0)
            i += k;
        else
            t[w++] = t[i++];
    }
    return w;
}
