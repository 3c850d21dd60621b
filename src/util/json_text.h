/*
 * util/json_text — writing JSON text by hand where building a document would cost more than
 * the answer (log lines, error bodies, spliced request bodies).
 * Thread: any; pure functions.
 */
#ifndef STRATUS_JSON_TEXT_H
#define STRATUS_JSON_TEXT_H

#include <stddef.h>

/* Significant digits for reals in JSON text stratus writes (jansson's JSON_REAL_PRECISION;
 * use where <jansson.h> is included). jansson's default, 17, round-trips every double but
 * prints most decimals with noise (0.7 as 0.69999999999999996, 23.294717 ms as
 * 23.294716999999999). 15 is the most that always prints a decimal of 15 digits or fewer
 * back exactly (DBL_DIG), so a client's 0.7 goes upstream as 0.7, and a value read back and
 * written again does not change. Answers, chunks and bodies sent upstream use this. */
#define JSON_TEXT_REALS JSON_REAL_PRECISION(15)

/* For totals of many additions (spend reports, admin and CLI answers): their rounding error
 * can reach the 13th digit, so 12 keeps a sum of costs readable ($0.064, not 0.0640000000001). */
#define JSON_TEXT_SUMS JSON_REAL_PRECISION(12)

/** Writes `s` (n bytes, any bytes at all) JSON-escaped, without quotes, to buf (cap bytes,
 *  NUL-terminated). Invalid UTF-8 becomes \ufffd; control characters are escaped.
 *  @return bytes the whole escape takes (like snprintf); when that is >= cap, buf holds the
 *          longest prefix of whole escapes that fits (never half of one). */
size_t json_escape(char *buf, size_t cap, const char *s, size_t n);

#endif
