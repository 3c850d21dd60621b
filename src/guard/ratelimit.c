/*
 * DESIGN: every product and sum here is taken in double and clamped before it becomes an
 * arrival time, and a charge larger than the whole limit is refused before any arithmetic:
 * a request may ask for 2^63 tokens, and an upstream may report any usage at all. (A charge
 * that wrapped negative once let every request through with "remaining: 0".)
 */
#include "guard/ratelimit.h"

#define PERIOD_US 60000000LL
#define TAT_MAX   (1LL << 62) /* µs; far beyond any clock reading, far from overflowing */

/* t + us, saturating into [0, TAT_MAX]. */
static int64_t add_us(int64_t t, double us)
{
    double v = (double)t + us;
    if (v != v || v >= (double)TAT_MAX) return TAT_MAX; /* NaN cannot come, but fails closed */
    if (v <= 0) return 0;
    return (int64_t)v;
}

void gcra_take(struct gcra *g, int64_t limit, int64_t cost, int64_t now_us, struct gcra_result *out)
{
    *out = (struct gcra_result){.limit = limit};
    if (limit <= 0) {
        out->allowed = true;
        return;
    }
    double interval = (double)PERIOD_US / (double)limit; /* µs per unit */
    int64_t tat = g->tat_us > now_us ? g->tat_us : now_us;
    if (cost < 0) cost = 0;
    if (cost > limit) {
        out->never = true;
        out->remaining = 0;
        out->retry_after_ms = PERIOD_US / 1000;
        out->reset_ms = (tat - now_us) / 1000;
        return;
    }
    int64_t new_tat = add_us(tat, interval * (double)cost); /* cost <= limit: <= one period */
    int64_t allow_at = new_tat - PERIOD_US;
    if (now_us < allow_at) {
        out->retry_after_ms = (allow_at - now_us + 999) / 1000;
        out->reset_ms = (tat - now_us + 999) / 1000;
        out->remaining = 0;
        return;
    }
    g->tat_us = new_tat;
    out->allowed = true;
    out->reset_ms = (new_tat - now_us + 999) / 1000;
    int64_t left = (int64_t)((double)(PERIOD_US - (new_tat - now_us)) / interval);
    out->remaining = left < 0 ? 0 : left;
}

void gcra_adjust(struct gcra *g, int64_t limit, int64_t delta, int64_t now_us)
{
    if (limit <= 0 || delta == 0 || g->tat_us == 0) return;
    double interval = (double)PERIOD_US / (double)limit;
    g->tat_us = add_us(g->tat_us, interval * (double)delta);
    if (g->tat_us < now_us) g->tat_us = now_us; /* credit never exceeds a full allowance */
}
