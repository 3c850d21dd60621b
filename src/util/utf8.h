/*
 * utf8 — UTF-8 as RFC 3629 defines it, which is also what jansson accepts: no overlong
 * forms, no surrogates (U+D800..U+DFFF), nothing above U+10FFFF. One definition for the
 * request validator (util/json_scan) and the JSON escaper of logs and error bodies
 * (obs/log), so what one refuses the other never has to print raw.
 * Thread: any (no state).
 */
#ifndef STRATUS_UTF8_H
#define STRATUS_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/**
 * Whether the 8 bytes at `p` are plain ASCII a JSON string holds as written: no control
 * character, no backslash, no byte of a multi-byte sequence — and, with `no_del`, no DEL.
 * Word-at-a-time ("has a byte less than n" / "has a zero byte" tests): no false negatives, and
 * a false positive only sends the bytes to a caller's byte-wise path, so the common case costs
 * a few instructions per 8 bytes.
 */
static inline bool utf8_plain8(const char *p, bool no_del)
{
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    uint64_t w;
    memcpy(&w, p, 8);
    uint64_t control = (w - ones * 0x20) & ~w & highs;
    uint64_t b = w ^ (ones * '\\');
    uint64_t backslash = (b - ones) & ~b & highs;
    uint64_t d = w ^ (ones * 0x7f);
    uint64_t del = no_del ? (d - ones) & ~d & highs : 0;
    return ((w & highs) | control | backslash | del) == 0;
}

/** Length (1..4) of the valid UTF-8 sequence at the start of p[0..n), or 0 when the bytes
 *  there are not one (n == 0, a stray continuation byte, a truncated or overlong sequence,
 *  an encoded surrogate, a code point above U+10FFFF). */
size_t utf8_sequence(const unsigned char *p, size_t n);

/** Writes code point `cp` (<= U+10FFFF, not a surrogate) as UTF-8; returns 1..4 bytes. */
size_t utf8_encode(uint32_t cp, char out[4]);

#endif
