/*
 * utf8 — UTF-8 as RFC 3629 defines it, which is also what jansson accepts: no overlong
 * forms, no surrogates (U+D800..U+DFFF), nothing above U+10FFFF. One definition for the
 * request validator (util/json_scan) and the JSON escaper of logs and error bodies
 * (obs/log), so what one refuses the other never has to print raw.
 * Thread: any (no state).
 */
#ifndef STRATUS_UTF8_H
#define STRATUS_UTF8_H

#include <stddef.h>
#include <stdint.h>

/** Length (1..4) of the valid UTF-8 sequence at the start of p[0..n), or 0 when the bytes
 *  there are not one (n == 0, a stray continuation byte, a truncated or overlong sequence,
 *  an encoded surrogate, a code point above U+10FFFF). */
size_t utf8_sequence(const unsigned char *p, size_t n);

/** Writes code point `cp` (<= U+10FFFF, not a surrogate) as UTF-8; returns 1..4 bytes. */
size_t utf8_encode(uint32_t cp, char out[4]);

#endif
