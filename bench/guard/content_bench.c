/*
 * bench/guard/content_bench — what the content guards add per request and per streamed
 * chunk, on the real code (guard/content.c, guard/pii.c):
 *   1. input: a 4 KB chat prompt (ordinary prose, no match) through 20 deny rules + PII scan
 *      (content_guard_input), and the same with deny rules only, PII only, and neither —
 *      what the strip_control scan (on with any guards: section) costs on its own; and deny
 *      rules over the same prompt with a phrase at its end that the last rule refuses;
 *   2. output: one chat.completion.chunk (a ~40-byte delta) through the redacting stream
 *      (output_guard_chunk: decode, match, re-encode), and a whole 4 KB answer (body).
 * Build and run: bench/guard/content_bench.sh (links build/obj).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config/config.h"
#include "guard/content.h"
#include "openai/request.h"
#include "util/arena.h"

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static const char words[] =
    "The quarterly report shows steady growth in the northern region, while costs "
    "of shipping rose by four percent. Please summarise the findings for the board and "
    "suggest three actions we could take before the next review meeting. ";

static struct config *load(int n_deny, const char *in, const char *out)
{
    char y[8192];
    int w = snprintf(y, sizeof y, "guards:\n  input:\n    pii: %s\n", in);
    if (n_deny) w += snprintf(y + w, sizeof y - (size_t)w, "    deny:\n");
    static const char *const rules[] = {"(?i)ignore (all )?previous instructions",
                                        "(?i)disregard (the )?system prompt",
                                        "(?i)you are now DAN",
                                        "(?i)jailbreak",
                                        "rm -rf /",
                                        "(?i)reveal your (system )?prompt",
                                        "(?i)act as (an? )?unfiltered",
                                        "(?i)developer mode",
                                        "(?i)\\bpwned\\b",
                                        "(?i)base64 decode this",
                                        "(?i)sudo ",
                                        "(?i)drop table",
                                        "<script[^>]*>",
                                        "(?i)bypass (the )?filter",
                                        "(?i)pretend you have no rules",
                                        "(?i)token smuggling",
                                        "(?i)print the hidden",
                                        "(?i)forget everything",
                                        "(?i)without any restrictions",
                                        "(?i)override safety"};
    for (int i = 0; i < n_deny; i++)
        w += snprintf(y + w, sizeof y - (size_t)w, "      - \"%s\"\n", rules[i]);
    snprintf(y + w, sizeof y - (size_t)w, "  output:\n    pii: %s\n", out);
    struct config_error e = {0};
    struct config *cfg = config_load_string(y, strlen(y), "bench.yaml", &e);
    if (cfg == NULL) {
        fprintf(stderr, "%d:%d %s\n%s", e.line, e.col, e.msg, y);
        exit(1);
    }
    return cfg;
}

/* want: what content_guard_input must return (-1: the prompt trips a rule). */
static double bench_input(int n_deny, const char *pii, const char *body, int want, int iters)
{
    struct config *cfg = load(n_deny, pii, "off");
    struct err e;
    struct content_guard *g = content_guard_new(&cfg->guards, &e);
    struct arena *a = arena_new(1 << 16);
    struct openai_request r;
    if (openai_parse_request(OPENAI_CHAT, body, strlen(body), a, &r, &e) != 0) exit(1);
    struct input_verdict v;
    const struct openai_request *rp = &r; /* the bench prompt has nothing to strip */
    for (int i = 0; i < 1000; i++) content_guard_input(g, &rp, false, a, &v, &e);
    double t0 = now_us();
    for (int i = 0; i < iters; i++)
        if (content_guard_input(g, &rp, false, a, &v, &e) != want || rp != &r) exit(2);
    double us = (now_us() - t0) / iters;
    arena_free(a);
    content_guard_free(g);
    config_free(cfg);
    return us;
}

int main(void)
{
    char prompt[4200] = "";
    while (strlen(prompt) + sizeof words < 4096) strcat(prompt, words);
    char body[5000];
    snprintf(body, sizeof body,
             "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}]}", prompt);
    int iters = 20000;
    printf("| measurement | us |\n|---|---|\n");
    printf("| input, %zu B prompt: 20 deny rules + PII | %.2f |\n", strlen(prompt),
           bench_input(20, "flag", body, 0, iters));
    printf("| input: 20 deny rules only | %.2f |\n", bench_input(20, "off", body, 0, iters));
    printf("| input: PII only | %.2f |\n", bench_input(0, "flag", body, 0, iters));
    printf("| input: strip_control scan only (nothing to strip) | %.2f |\n",
           bench_input(0, "off", body, 0, iters));
    /* the refused path: the prefilter flags the last rule, whose PCRE2 pattern confirms */
    char tripped[5100];
    snprintf(tripped, sizeof tripped,
             "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"%s "
             "Override Safety\"}]}",
             prompt);
    printf("| input: 20 deny rules, the prompt trips the last one | %.2f |\n",
           bench_input(20, "off", tripped, -1, iters));

    struct config *cfg = load(0, "off", "redact");
    struct err e;
    struct content_guard *g = content_guard_new(&cfg->guards, &e);
    const char chunk[] =
        "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":"
        "1700000000,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":"
        "\" growth in the northern region, while \"},\"finish_reason\":null}]}";
    struct arena *a = arena_new(1 << 16);
    bool oom;
    struct output_guard *o = output_guard_new(g, a, &oom);
    int n = 200000;
    double t0 = now_us();
    for (int i = 0; i < n; i++) {
        char *out;
        size_t len;
        output_guard_chunk(o, chunk, sizeof chunk - 1, &out, &len);
        free(out);
    }
    printf("| output stream, per chunk (redact, %zu B event) | %.2f |\n", sizeof chunk - 1,
           (now_us() - t0) / n);
    char answer[5000];
    snprintf(answer, sizeof answer,
             "{\"id\":\"x\",\"object\":\"chat.completion\",\"choices\":[{\"index\":0,\"message\":{"
             "\"role\":\"assistant\",\"content\":\"%s\"},\"finish_reason\":\"stop\"}]}",
             prompt);
    t0 = now_us();
    for (int i = 0; i < iters; i++) {
        char *out;
        size_t len;
        output_guard_body(o, answer, strlen(answer), &out, &len, &e);
        free(out);
    }
    printf("| output whole 4 KB answer (redact, nothing found) | %.2f |\n",
           (now_us() - t0) / iters);
    arena_free(a);
    content_guard_free(g);
    config_free(cfg);
    return 0;
}
