/*
 * config/scrub — keeps the gateway's own secrets out of what it repeats.
 *
 * Upstream error bodies and messages are shown to clients and written to logs. A broken or
 * hostile upstream can echo the credentials we sent it (an API key in a 401 body, a key in a
 * URL it quotes), so every upstream text passes through secrets_scrub before it leaves:
 * each configured secret value found in it is overwritten with '*' of the same length (the
 * text keeps its length and, for JSON, its validity).
 *
 * Thread: any (reads the immutable config). Ownership: borrows everything.
 */
#ifndef STRATUS_SCRUB_H
#define STRATUS_SCRUB_H

#include <stddef.h>

struct config;

/** Secrets shorter than this are not scrubbed (a 1–3 byte value would mask ordinary text). */
#define SCRUB_MIN_SECRET 4

/** Masks every configured secret (backend keys, AWS credentials, the master key) found in
 *  `text[0..len)`, in place. @return how many occurrences were masked. */
size_t secrets_scrub(const struct config *cfg, char *text, size_t len);

/** The same for a NUL-terminated string. */
size_t secrets_scrub_str(const struct config *cfg, char *text);

#endif
