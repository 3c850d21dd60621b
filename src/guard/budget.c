/*
 * DESIGN: counters live in a chained hash table keyed by scope, period and name; entries are
 * allocated one by one and never move, so a hold can point at them until it settles. A
 * counter notices a new period on its next touch and starts again from zero.
 */
#include "guard/budget.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/clock.h"

#define BUCKETS 1024

struct budget_entry {
    struct budget_entry *next;
    enum budget_scope scope;
    enum budget_period period;
    int64_t period_start_ms;
    double spent, reserved;
    char name[];
};

struct budget_book {
    struct budget_entry *buckets[BUCKETS];
};

/* The month last asked about, per thread: gmtime_r + timegm per budget per request would
 * be most of admission's cost. */
static _Thread_local int64_t month_from, month_to;

static void cache_month_of(int64_t ms)
{
    if (ms >= month_from && ms < month_to) return;
    month_from = clock_month_start_ms(ms, 0);
    month_to = clock_month_start_ms(ms, 1);
}

int64_t budget_period_start(enum budget_period p, int64_t ms)
{
    if (p == BUDGET_DAILY) return ms - ms % 86400000;
    cache_month_of(ms);
    return month_from;
}

int64_t budget_period_end(enum budget_period p, int64_t ms)
{
    if (p == BUDGET_DAILY) return budget_period_start(p, ms) + 86400000;
    cache_month_of(ms);
    return month_to;
}

double budget_clamp_usd(double usd)
{
    if (usd != usd || usd > BUDGET_MAX_USD) return BUDGET_MAX_USD;
    return usd > 0 ? usd : 0;
}

struct budget_book *budget_book_new(void)
{
    return calloc(1, sizeof(struct budget_book));
}

void budget_book_free(struct budget_book *b)
{
    if (b == NULL) return;
    for (size_t i = 0; i < BUCKETS; i++) {
        struct budget_entry *e = b->buckets[i];
        while (e) {
            struct budget_entry *next = e->next;
            free(e);
            e = next;
        }
    }
    free(b);
}

static size_t bucket_of(enum budget_scope s, enum budget_period p, const char *name)
{
    uint64_t h = 1469598103934665603ull ^ ((uint64_t)s * 31 + (uint64_t)p);
    for (const unsigned char *c = (const unsigned char *)name; *c; c++) {
        h ^= *c;
        h *= 1099511628211ull;
    }
    return (size_t)(h % BUCKETS);
}

/* The counter, rolled over to the period containing `now_ms`; created when `create`. */
static struct budget_entry *entry(struct budget_book *b, enum budget_scope s, enum budget_period p,
                                  const char *name, int64_t now_ms, bool create)
{
    size_t i = bucket_of(s, p, name);
    struct budget_entry *e = b->buckets[i];
    while (e && !(e->scope == s && e->period == p && strcmp(e->name, name) == 0)) e = e->next;
    if (e == NULL) {
        if (!create) return NULL;
        size_t len = strlen(name);
        e = calloc(1, sizeof *e + len + 1);
        if (e == NULL) return NULL;
        e->scope = s;
        e->period = p;
        memcpy(e->name, name, len + 1);
        e->period_start_ms = budget_period_start(p, now_ms);
        e->next = b->buckets[i];
        b->buckets[i] = e;
    }
    int64_t start = budget_period_start(p, now_ms);
    if (start > e->period_start_ms) {
        e->period_start_ms = start;
        e->spent = 0; /* a new day or month; requests in flight keep their reservations */
    }
    return e;
}

int budget_book_seed(struct budget_book *b, enum budget_scope scope, enum budget_period period,
                     const char *name, double usd, int64_t now_ms)
{
    struct budget_entry *e = entry(b, scope, period, name, now_ms, true);
    if (e == NULL) return -1;
    e->spent += budget_clamp_usd(usd);
    return 0;
}

double budget_used(struct budget_book *b, enum budget_scope scope, enum budget_period period,
                   const char *name, int64_t now_ms)
{
    struct budget_entry *e = entry(b, scope, period, name, now_ms, false);
    return e ? e->spent + e->reserved : 0;
}

int budget_admit(struct budget_book *b, const struct budget_applies *applies, size_t n,
                 double reserve_usd, int64_t now_ms, struct budget_verdict *v,
                 struct budget_hold *hold)
{
    memset(v, 0, sizeof *v);
    memset(hold, 0, sizeof *hold);
    reserve_usd = budget_clamp_usd(reserve_usd);
    struct budget_entry *es[BUDGET_MAX_RULES];
    double tightest = -1; /* the largest fraction used, for the reason text */
    for (size_t i = 0; i < n && i < BUDGET_MAX_RULES; i++) {
        const struct budget_conf *r = applies[i].rule;
        es[i] = entry(b, r->scope, r->period, applies[i].name, now_ms, true);
        if (es[i] == NULL) return -1;
        double used = es[i]->spent + es[i]->reserved;
        double frac = r->limit_usd > 0 ? used / r->limit_usd : 1;
        bool exhausted = used >= r->limit_usd;
        enum route_budget mode = ROUTE_BUDGET_NONE;
        if (exhausted && r->on_exhausted == BUDGET_REJECT) {
            if (!v->reject) {
                v->reject = true;
                v->reset_ms = budget_period_end(r->period, now_ms);
                budget_describe(&applies[i], used, true, v->why, sizeof v->why);
            }
            continue;
        }
        if (exhausted)
            mode = ROUTE_BUDGET_LOCAL_ONLY;
        else if (used >= r->soft * r->limit_usd)
            mode = ROUTE_BUDGET_SOFT;
        if (mode > v->mode || (mode == v->mode && mode != ROUTE_BUDGET_NONE && frac > tightest)) {
            v->mode = mode;
            tightest = frac;
            budget_describe(&applies[i], used, false, v->why, sizeof v->why);
        }
    }
    if (v->reject) return 0;
    for (size_t i = 0; i < n && i < BUDGET_MAX_RULES; i++) {
        es[i]->reserved += reserve_usd;
        hold->entries[hold->n++] = es[i];
    }
    hold->amount = reserve_usd;
    return 0;
}

void budget_describe(const struct budget_applies *a, double used, bool refused, char *out,
                     size_t cap)
{
    const struct budget_conf *r = a->rule;
    if (refused)
        snprintf(out, cap, "%s '%s' spent $%.4f of its $%.2f %s budget",
                 budget_scope_name(r->scope), a->name, used, r->limit_usd,
                 budget_period_name(r->period));
    else
        snprintf(out, cap, "%s '%s' at %.0f%% of its $%.2f %s budget", budget_scope_name(r->scope),
                 a->name, r->limit_usd > 0 ? used / r->limit_usd * 100 : 100, r->limit_usd,
                 budget_period_name(r->period));
}

void budget_settle(struct budget_hold *hold, double actual_usd)
{
    actual_usd = budget_clamp_usd(actual_usd);
    for (size_t i = 0; i < hold->n; i++) {
        hold->entries[i]->reserved -= hold->amount;
        if (hold->entries[i]->reserved < 1e-12) hold->entries[i]->reserved = 0;
        hold->entries[i]->spent += actual_usd;
    }
    hold->n = 0;
}
