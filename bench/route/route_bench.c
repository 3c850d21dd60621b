/*
 * Routing decision cost: nanoseconds per router_plan() (plus the begin/report pair every
 * attempt makes) for each policy with 2, 10 and 100 targets. Runs in-process against the
 * real router; no network. Usage: build/bench/route_bench [iterations]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "providers/provider.h"
#include "route/router.h"
#include "util/clock.h"

static double bench(enum route_policy policy, size_t n, long iterations)
{
    struct backend_conf *bc = calloc(n, sizeof *bc);
    struct backend *b = calloc(n, sizeof *b);
    struct backend **table = calloc(n, sizeof *table);
    struct target_conf *t = calloc(n, sizeof *t);
    size_t *order = calloc(n, sizeof *order);
    char(*names)[16] = calloc(n, sizeof *names);
    for (size_t i = 0; i < n; i++) {
        snprintf(names[i], sizeof names[i], "t%zu", i);
        bc[i] = (struct backend_conf){.name = names[i], .type = BACKEND_OPENAI};
        b[i].conf = &bc[i];
        b[i].ops = provider_for(BACKEND_OPENAI);
        t[i] = (struct target_conf){.backend = names[i],
                                    .backend_index = i,
                                    .model = names[i],
                                    .weight = 1 + (int)(i % 3),
                                    .price = {.set = true,
                                              .input = 0.1 * (double)(i + 1),
                                              .output = 0.4 * (double)(i + 1)}};
    }
    struct model_conf m = {.name = "bench",
                           .route = policy,
                           .targets = t,
                           .n_targets = n,
                           .cooldown = {.failures = 3,
                                        .window_ms = 30000,
                                        .duration_ms = 10000,
                                        .max_duration_ms = 300000},
                           .latency_decay_ms = 10000,
                           .expected_output_tokens = 256};
    struct config cfg = {.models = &m, .n_models = 1, .backends = bc, .n_backends = n};
    struct err e;
    for (size_t i = 0; i < n; i++) table[i] = &b[i];
    struct router *r = router_new(&cfg, table, &e);
    struct route_request rq = {.endpoint = OPENAI_CHAT, .prompt_tokens = 500, .output_tokens = 256};
    struct route_plan plan = {.order = order};
    for (size_t i = 0; i < n; i++) { /* give latency a measured state */
        router_begin(r, &m, i);
        router_report(r, &m, i, ROUTE_OK, 1000 + 100 * i, -1);
    }
    uint64_t t0 = clock_now_ns();
    for (long i = 0; i < iterations; i++) {
        if (router_plan(r, &m, &rq, &plan, &e) != 0) abort();
        router_begin(r, &m, order[0]);
        router_report(r, &m, order[0], ROUTE_OK, 1000 + (uint64_t)(i & 255), -1);
    }
    double ns = (double)(clock_now_ns() - t0) / (double)iterations;
    router_free(r);
    free(bc), free(b), free(table), free(t), free(order), free(names);
    return ns;
}

int main(int argc, char **argv)
{
    long iterations = argc > 1 ? atol(argv[1]) : 1000000;
    const enum route_policy policies[] = {ROUTE_PRIORITY, ROUTE_WEIGHTED, ROUTE_LATENCY,
                                          ROUTE_LEAST_BUSY, ROUTE_COST};
    const size_t sizes[] = {2, 10, 100};
    printf("| policy | 2 targets | 10 targets | 100 targets |\n|---|---:|---:|---:|\n");
    for (size_t p = 0; p < 5; p++) {
        printf("| %s |", route_policy_name(policies[p]));
        for (size_t s = 0; s < 3; s++) {
            long it = sizes[s] == 100 ? iterations / 10 : iterations;
            printf(" %.0f ns |", bench(policies[p], sizes[s], it));
        }
        printf("\n");
    }
    return 0;
}
