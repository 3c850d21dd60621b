/*
 * ledger_bench — how many ledger rows per second a store takes: N rows appended through the
 * real ledger (queue + batch writer thread) as fast as one producer can, timed until the
 * last is committed. The gateway's own rate is bounded by this (and by its requests/s).
 *
 *   ledger_bench URL N     URL: sqlite:///tmp/x.db or postgres://...
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "store/ledger.h"
#include "store/store.h"

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: ledger_bench URL N [BATCH]\n");
        return 2;
    }
    long n = atol(argv[2]);
    long batch = argc > 3 ? atol(argv[3]) : 256;
    char why[600];
    struct store_handle s;
    if (store_open(argv[1], NULL, NULL, &s, why, sizeof why) != 0) {
        fprintf(stderr, "%s\n", why);
        return 1;
    }
    int64_t before = s.ops->count(s.db);
    struct ledger *l = ledger_start(s, (size_t)n + 1, (size_t)batch, 5);
    struct ledger_row r;
    memset(&r, 0, sizeof r);
    r.status = 200;
    r.prompt_tokens = 1000;
    r.completion_tokens = 200;
    r.cached_tokens = 0;
    r.cost_known = true;
    r.cost_usd = 0.00123;
    r.latency_ms = 812.5;
    r.ttft_ms = 120.25;
    snprintf(r.model, sizeof r.model, "chat");
    snprintf(r.backend, sizeof r.backend, "openai");
    snprintf(r.target_model, sizeof r.target_model, "gpt-4o-mini");
    snprintf(r.endpoint, sizeof r.endpoint, "chat/completions");
    snprintf(r.key_id, sizeof r.key_id, "key_0123456789abcdef");
    snprintf(r.team, sizeof r.team, "ml");
    snprintf(r.route, sizeof r.route, "priority; first available in configured order");
    double t0 = now_s();
    for (long i = 0; i < n; i++) {
        r.ts_ms = (int64_t)(t0 * 1000) + i;
        snprintf(r.request_id, sizeof r.request_id, "req_%016lx", (unsigned long)i);
        snprintf(r.customer, sizeof r.customer, "customer-%ld", i % 100);
        if (ledger_append(l, &r, NULL) != 0) {
            fprintf(stderr, "queue full at %ld\n", i);
            return 1;
        }
    }
    struct ledger_stats st;
    for (;;) {
        ledger_stats(l, &st);
        if (st.written + st.dropped >= (uint64_t)n) break;
        usleep(1000);
    }
    double dt = now_s() - t0;
    ledger_stop(l);
    printf("%s: %ld rows in %.2f s = %.0f rows/s (%llu batches, %llu errors)\n",
           strncmp(argv[1], "sqlite", 6) == 0 ? "sqlite" : "postgres", n, dt, (double)n / dt,
           (unsigned long long)st.batches, (unsigned long long)st.errors);
    (void)before;
    return 0;
}
