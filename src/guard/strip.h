/*
 * guard/strip — the characters `guards.input.strip_control` removes from prompt text:
 * characters a reader never sees but a model reads, the usual carriers of smuggled
 * instructions and of text that displays differently from what it says.
 *
 *   C0 controls   U+0000..U+001F except TAB, LF and CR (which prompts are made of)
 *   DEL, C1       U+007F, U+0080..U+009F
 *   bidi          U+202A..U+202E (embeddings, overrides), U+2066..U+2069 (isolates)
 *   tags          U+E0000..U+E007F (invisible copies of ASCII: "ASCII smuggling")
 *
 * Zero-width joiners and marks (U+200B..U+200F, U+2060, U+FEFF) stay: emoji sequences and
 * Arabic, Persian and Indic scripts need them.
 *
 * Two views of the same set: strip_json_wanted looks at a JSON string as written (escapes
 * and all) without copying — the check every prompt string pays — and strip_text removes
 * the characters from unescaped UTF-8 once a string is known to hold some.
 * Thread: any (pure functions).
 */
#ifndef STRATUS_GUARD_STRIP_H
#define STRATUS_GUARD_STRIP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** Whether code point `cp` is one of the stripped characters. */
bool strip_is_stripped(uint32_t cp);

/**
 * Whether the body of a JSON string `raw[0..n)` (between its quotes, escapes as written)
 * holds a stripped character, raw or escaped (\b, \f, \u00XX, a \uDB40\uDCxx pair...).
 * Reads only; allocates nothing.
 */
bool strip_json_wanted(const char *raw, size_t n);

/**
 * Removes the stripped characters from UTF-8 text `t[0..n)` in place; the bytes of every
 * other character (and any invalid sequence) stay as they were.
 * @return the new length (n when nothing was removed: then nothing was written).
 */
size_t strip_text(char *t, size_t n);

#endif
