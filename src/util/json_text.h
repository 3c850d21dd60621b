/*
 * util/json_text — writing JSON text by hand where building a document would cost more than
 * the answer (log lines, error bodies, spliced request bodies).
 * Thread: any; pure functions.
 */
#ifndef STRATUS_JSON_TEXT_H
#define STRATUS_JSON_TEXT_H

#include <stddef.h>

/** Writes `s` (n bytes, any bytes at all) JSON-escaped, without quotes, to buf (cap bytes,
 *  NUL-terminated). Invalid UTF-8 becomes \ufffd; control characters are escaped.
 *  @return bytes the whole escape takes (like snprintf); when that is >= cap, buf holds the
 *          longest prefix of whole escapes that fits (never half of one). */
size_t json_escape(char *buf, size_t cap, const char *s, size_t n);

#endif
