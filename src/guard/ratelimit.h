/*
 * guard/ratelimit — per-minute limits (requests, tokens) as GCRA: a "theoretical arrival
 * time" per limit instead of a counter and a window. A limit of L per minute admits a
 * burst of L, then one unit every 60/L seconds; nothing resets on the minute boundary, so
 * there is no double burst at the edge of a window.
 *
 * Tokens are charged up front (the prompt estimate plus max_tokens) and corrected when the
 * request ends (gcra_adjust), so a key's TPM counts what was actually used.
 * Thread: no locking; one owner thread.
 */
#ifndef STRATUS_GUARD_RATELIMIT_H
#define STRATUS_GUARD_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

struct gcra {
    int64_t tat_us; /* theoretical arrival time, µs on the monotonic clock; 0 = fresh */
};

struct gcra_result {
    bool allowed;
    int64_t limit;          /* per minute */
    int64_t remaining;      /* units left after this one (when allowed) */
    int64_t retry_after_ms; /* when refused: how long until `cost` units fit */
    int64_t reset_ms;       /* until the full limit is available again */
    bool never;             /* cost is larger than the whole limit: waiting will not help */
};

/** Takes `cost` units of a `limit`-per-minute allowance at `now_us`. Any int64 cost is
 *  safe: one above the limit is refused as `never`, a negative one counts as 0. */
void gcra_take(struct gcra *g, int64_t limit, int64_t cost, int64_t now_us,
               struct gcra_result *out);

/** Gives back (delta < 0) or charges more (delta > 0) units after the fact; any int64 delta
 *  is safe (the arrival time saturates). */
void gcra_adjust(struct gcra *g, int64_t limit, int64_t delta, int64_t now_us);

#endif
