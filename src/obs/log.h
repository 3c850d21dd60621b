/*
 * log — structured logs: one JSON object per line on stderr.
 *
 * A line is built in a fixed stack buffer (struct log_line) and written with one write(2),
 * so lines from different threads never interleave and nothing is allocated. Values are
 * JSON-escaped here; callers never format JSON by hand. Secrets must never be passed in.
 * Thread: any (each line is its own buffer).
 */
#ifndef STRATUS_LOG_H
#define STRATUS_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct log_line {
    char buf[4096];
    size_t len;
    bool truncated;
};

/** Starts a line with "ts", "level" and "event". */
void log_begin(struct log_line *l, const char *level, const char *event);
/** Adds "key": "value" (value NULL → null). */
void log_str(struct log_line *l, const char *key, const char *value);
/** Adds "key": "value" for a non-terminated value of n bytes. */
void log_strn(struct log_line *l, const char *key, const char *value, size_t n);
void log_int(struct log_line *l, const char *key, long long value);
/** Adds "key": value with 3 decimals; negative → null (unknown). */
void log_ms(struct log_line *l, const char *key, double value);
void log_bool(struct log_line *l, const char *key, bool value);
/** A finite number, shortest exact-enough form (%.10g): costs in USD. */
void log_double(struct log_line *l, const char *key, double value);
void log_null(struct log_line *l, const char *key);
/** Adds "key": raw JSON text (caller guarantees validity). */
void log_raw(struct log_line *l, const char *key, const char *json);
/** Closes the object and writes the line to stderr in one write. */
void log_end(struct log_line *l);

/** Convenience: {"level":level,"event":event,"message":fmt...} in one call. */
void log_msg(const char *level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

struct event_base;

/**
 * Batches this thread's lines: from now on log_end() appends to a buffer that is written
 * with one write(2) at the end of the current event-loop turn (or when 64 KiB are pending),
 * instead of one write per line. Call on the loop thread; pair with log_batch_stop().
 * @return 0, or -1 when it cannot (lines are then written one by one, as before).
 */
int log_batch_start(struct event_base *loop);

/** Writes what is pending and returns to one write per line. */
void log_batch_stop(void);

/**
 * A rate limit for one kind of line that an outsider can trigger at will (refused
 * connections, accept errors, libevent warnings): without it, a flood of connections becomes
 * a flood of log lines that fills the disk and eats the loop's time.
 * Zero-initialise; not thread-safe (guard it with a lock if several threads share it).
 */
struct log_rate {
    uint64_t window_start_ns; /* start of the current one-second window */
    unsigned used;            /* lines allowed in this window */
    unsigned long suppressed; /* lines refused since the last allowed one */
};

/**
 * Whether a line may be written at monotonic time `now_ns`: at most `per_second` lines per
 * one-second window. When it says yes, `*suppressed` (may be NULL) gets the number of lines
 * refused since the previous allowed one, for the caller to log as a count.
 */
bool log_rate_allow(struct log_rate *r, unsigned per_second, uint64_t now_ns,
                    unsigned long *suppressed);

/**
 * Sends libevent's own messages (warnings such as accept() failures) to the JSON log as
 * {"event":"libevent","level":...,"message":...}, at most `per_second` lines a second plus a
 * count of the lines dropped. Process-wide (libevent has one log callback); call once at start.
 */
void log_capture_libevent(unsigned per_second);

#endif
