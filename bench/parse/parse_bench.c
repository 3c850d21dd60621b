/*
 * Parsing a large request body on the event loop: ms per parse of a body of many small
 * objects ({"model":"nope","messages":[{"role":"user","content":"hi"}, ...]}), at sizes up
 * to the default 10 MiB body limit.
 *
 * Built twice from this one file (see the Makefile): build/bench/parse_bench against the
 * gateway's objects, and build/bench/parse_bench_quadratic against util/json_scan.c compiled
 * with JSON_SCAN_QUADRATIC — jsmn without parent links, which is how the gateway scanned
 * bodies before issue #9. The quadratic build can only time json_scan_parse.
 *
 * Usage: build/bench/parse_bench[_quadratic] MIB... (default 1 3 10)
 *        build/bench/parse_bench --shapes   the costliest body shapes found, best of 5
 * Prints Markdown tables.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/arena.h"
#include "util/clock.h"
#include "util/json_scan.h"
#ifndef JSON_SCAN_QUADRATIC
#include "openai/request.h"
#endif

/* A chat body of about `bytes`, malloc'd; *messages: how many messages it holds. */
static char *chat_body(size_t bytes, size_t *len, long *messages)
{
    static const char head[] = "{\"model\":\"nope\",\"messages\":[";
    static const char msg[] = "{\"role\":\"user\",\"content\":\"hi\"}";
    char *b = malloc(bytes + sizeof msg + 8);
    if (b == NULL) return NULL;
    size_t n = sizeof head - 1;
    memcpy(b, head, n);
    *messages = 0;
    while (n + sizeof msg + 2 < bytes) {
        if (*messages) b[n++] = ',';
        memcpy(b + n, msg, sizeof msg - 1);
        n += sizeof msg - 1;
        ++*messages;
    }
    memcpy(b + n, "]}", 3);
    *len = n + 2;
    return b;
}

/* ms for one json_scan_parse of the body (no limits: the scanner alone). */
static double time_scan(const char *body, size_t len, int *tokens)
{
    struct arena *a = arena_new(1 << 16);
    struct json_scan s;
    bool oom;
    uint64_t t0 = clock_now_ns();
    int rc = json_scan_parse(&s, body, len, a, &oom);
    double ms = (double)(clock_now_ns() - t0) / 1e6;
    *tokens = rc == 0 ? s.n : -1;
    arena_free(a);
    return ms;
}

#ifndef JSON_SCAN_QUADRATIC
/* ms for one checked scan with room for every token (the whole strict walk). */
static double time_checked(const char *body, size_t len)
{
    static const struct json_scan_limits roomy = {
        .max_tokens = 1 << 30, .max_depth = 128, .max_members = 1 << 30};
    struct arena *a = arena_new(1 << 16);
    struct json_scan s;
    struct json_scan_fault f;
    uint64_t t0 = clock_now_ns();
    int rc = json_scan_parse_checked(&s, body, len, a, &roomy, &f);
    double ms = (double)(clock_now_ns() - t0) / 1e6;
    arena_free(a);
    return rc == 0 ? ms : -1;
}

/* ms for openai_parse_request, the gateway's real entry (limits on); *status: its answer. */
static double time_request(const char *body, size_t len, int *status)
{
    struct arena *a = arena_new(1 << 16);
    struct openai_request req;
    struct err e;
    err_clear(&e);
    uint64_t t0 = clock_now_ns();
    int rc = openai_parse_request(OPENAI_CHAT, body, len, a, &req, &e);
    double ms = (double)(clock_now_ns() - t0) / 1e6;
    *status = rc == 0 ? 200 : e.status;
    arena_free(a);
    return ms;
}
#endif

#ifndef JSON_SCAN_QUADRATIC
/* Body shapes that each stress one part of the checked scan, built into b (10 MiB). */
static size_t shape(int which, char *b, size_t cap, const char **name)
{
    size_t n = (size_t)sprintf(b, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}]");
    switch (which) {
    case 0: /* keys: eight objects just under the 65,536-member limit, all hashed */
        *name = "8 objects of 65,000 keys";
        for (int o = 0; o < 8; o++) {
            n += (size_t)sprintf(b + n, ",\"o%d\":{", o);
            for (int i = 0; i < 65000; i++)
                n += (size_t)sprintf(b + n, "%s\"k%d\":0", i ? "," : "", i);
            b[n++] = '}';
        }
        break;
    case 1: /* numbers: just under the value limit */
        *name = "1,040,000 numbers in one array";
        n += (size_t)sprintf(b + n, ",\"x\":[0");
        for (int i = 1; i < 1040000; i++) n += (size_t)sprintf(b + n, ",%d", i % 10);
        b[n++] = ']';
        break;
    case 2: /* UTF-8 validation: one 10 MiB string of 2-, 3- and 4-byte characters */
        *name = "10 MiB of multi-byte UTF-8 in one string";
        n += (size_t)sprintf(b + n, ",\"x\":\"");
        while (n + 16 < cap) {
            memcpy(b + n, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9);
            n += 9;
        }
        b[n++] = '"';
        break;
    default: /* escapes: \u sequences and surrogate pairs to decode and check */
        *name = "10 MiB of \\u escapes in short strings";
        n += (size_t)sprintf(b + n, ",\"x\":[\"\\u00e9\\ud83d\\ude00\"");
        while (n + 32 < cap) n += (size_t)sprintf(b + n, ",\"\\u00e9\\ud83d\\ude00\"");
        b[n++] = ']';
        break;
    }
    b[n++] = '}';
    return n;
}

static int shapes(void)
{
    size_t cap = 10u << 20;
    char *b = malloc(cap + 64);
    if (b == NULL) return 1;
    printf("| body shape | size | openai_parse_request, best of 5 | answer |\n");
    printf("|---|---:|---:|---:|\n");
    for (int which = 0; which < 4; which++) {
        const char *name;
        size_t len = shape(which, b, cap, &name);
        double best = 1e12;
        int status = 0;
        for (int k = 0; k < 5; k++) {
            double ms = time_request(b, len, &status);
            if (ms < best) best = ms;
        }
        printf("| %s | %.1f MiB | %.1f ms | %d |\n", name, (double)len / 1048576, best, status);
        fflush(stdout);
    }
    free(b);
    return 0;
}
#endif

int main(int argc, char **argv)
{
#ifndef JSON_SCAN_QUADRATIC
    if (argc > 1 && strcmp(argv[1], "--shapes") == 0) return shapes();
#endif
    static const char *const defaults[] = {"1", "3", "10"};
    int n_sizes = argc > 1 ? argc - 1 : 3;
    const char *const *sizes = argc > 1 ? (const char *const *)argv + 1 : defaults;
#ifdef JSON_SCAN_QUADRATIC
    printf("| body | messages | tokens | json_scan_parse, no parent links (before #9) |\n");
    printf("|---:|---:|---:|---:|\n");
#else
    printf("| body | messages | tokens | json_scan_parse | checked scan, no limits | "
           "openai_parse_request (limits on) |\n");
    printf("|---:|---:|---:|---:|---:|---:|\n");
#endif
    for (int i = 0; i < n_sizes; i++) {
        double mib = atof(sizes[i]);
        size_t len;
        long messages;
        char *body = chat_body((size_t)(mib * 1048576), &len, &messages);
        if (body == NULL) return 1;
        int tokens;
        double scan = time_scan(body, len, &tokens);
        printf("| %.1f MiB | %ld | %d | %.1f ms |", (double)len / 1048576, messages, tokens, scan);
#ifndef JSON_SCAN_QUADRATIC
        int status;
        double checked = time_checked(body, len);
        double request = time_request(body, len, &status);
        printf(" %.1f ms | %.1f ms (%d) |", checked, request, status);
#endif
        printf("\n");
        fflush(stdout);
        free(body);
    }
    return 0;
}
