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
 * Prints one Markdown table row per size.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/arena.h"
#include "util/clock.h"
#include "util/json_scan.h"
#ifndef JSON_SCAN_QUADRATIC
#include "api/openai.h"
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
    static const struct json_scan_limits roomy = {.max_tokens = 1 << 30, .max_depth = 128};
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

int main(int argc, char **argv)
{
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
