/*
 * DESIGN: the table is printed by route/explain's own printers from the gateway's JSON, so
 * the offline and the live explain cannot drift apart; what only a running gateway knows
 * (attempt counts, in flight, last error, engine load) follows in a block of its own
 * rather than widening a table that is already 130 columns.
 */
#include "cli/route_live.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ANSWER (16u << 20) /* a routes answer for thousands of targets fits easily */

struct answer {
    char *buf; /* malloc'd, NUL-terminated */
    size_t len;
    bool too_big;
};

static size_t on_answer(char *p, size_t size, size_t n, void *ud)
{
    struct answer *a = ud;
    size_t take = size * n;
    if (a->len + take > MAX_ANSWER) {
        a->too_big = true;
        return 0; /* aborts the transfer */
    }
    char *grown = realloc(a->buf, a->len + take + 1);
    if (grown == NULL) return 0;
    a->buf = grown;
    memcpy(a->buf + a->len, p, take);
    a->len += take;
    a->buf[a->len] = '\0';
    return take;
}

static const char *endpoint_param(enum openai_endpoint e)
{
    return e == OPENAI_COMPLETIONS ? "completions" : e == OPENAI_EMBEDDINGS ? "embeddings" : "chat";
}

static const char *str(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

static long num(const json_t *o, const char *key)
{
    return (long)json_integer_value(json_object_get(o, key));
}

/* "12.3 s" / "850 ms" */
static void duration(long long ms, char *out, size_t cap)
{
    if (ms >= 10000)
        snprintf(out, cap, "%.0f s", (double)ms / 1000.0);
    else if (ms >= 1000)
        snprintf(out, cap, "%.1f s", (double)ms / 1000.0);
    else
        snprintf(out, cap, "%lld ms", ms);
}

/* The block only a running gateway can print: one paragraph per target. */
static void print_live(FILE *out, const json_t *model)
{
    size_t i;
    const json_t *t;
    fprintf(out, "\nlive:\n");
    json_array_foreach(json_object_get(model, "targets"), i, t)
    {
        char ewma[32] = "unmeasured";
        const json_t *lat = json_object_get(t, "latency_ewma_ms");
        if (json_is_number(lat)) snprintf(ewma, sizeof ewma, "%.1f ms", json_number_value(lat));
        fprintf(out,
                "  %s/%s: %lld in flight; attempts ok %lld, failed %lld, rejected %lld; "
                "ttfb ewma %s",
                str(t, "backend"), str(t, "model"), (long long)num(t, "in_flight"),
                (long long)num(t, "ok"), (long long)num(t, "failed"), (long long)num(t, "rejected"),
                ewma);
        if (strcmp(str(t, "breaker"), "open") == 0) {
            char left[32];
            duration(num(t, "cooldown_left_ms"), left, sizeof left);
            fprintf(out, "; breaker open, %s left", left);
        }
        fprintf(out, "\n");
        const json_t *eng = json_object_get(t, "engine");
        if (json_is_object(eng))
            fprintf(out,
                    "    engine: %lld/%lld slots busy, %lld queued, %.1f tokens/s, ttft %.0f ms\n",
                    (long long)num(eng, "busy_slots"), (long long)num(eng, "slots"),
                    (long long)num(eng, "queue_depth"),
                    json_number_value(json_object_get(eng, "tokens_per_s")),
                    json_number_value(json_object_get(eng, "ttft_ms")));
        const json_t *since = json_object_get(t, "since_last_failure_ms");
        if (json_is_integer(since)) {
            char ago[32];
            duration(json_integer_value(since), ago, sizeof ago);
            const char *last = json_string_value(json_object_get(t, "last_error"));
            fprintf(out, "    last failure %s ago%s%s\n", ago, last ? ": " : "", last ? last : "");
        }
    }
}

static int print_model(const json_t *doc, const json_t *m, FILE *out, FILE *err_out)
{
    const json_t *req = json_object_get(doc, "request"), *retry = json_object_get(m, "retry"),
                 *breaker = json_object_get(m, "breaker"), *targets = json_object_get(m, "targets"),
                 *plan = json_object_get(m, "plan");
    struct explain_head head = {.model = str(m, "name"),
                                .policy = str(m, "route"),
                                .n_targets = json_array_size(targets),
                                .retries = (int)num(retry, "retries"),
                                .failures = (int)num(breaker, "failures"),
                                .backoff_ms = num(retry, "backoff_ms"),
                                .max_backoff_ms = num(retry, "max_backoff_ms"),
                                .window_ms = num(breaker, "window_ms"),
                                .cooldown_ms = num(breaker, "cooldown_ms"),
                                .endpoint_path = str(req, "endpoint"),
                                .prompt_tokens = num(req, "prompt_tokens"),
                                .output_tokens = num(m, "output_tokens")};
    const json_t *perr = json_object_get(m, "plan_error");
    if (json_is_object(perr)) {
        /* What the offline explain says on stderr for the same refusal. */
        fprintf(err_out, "stratus route explain: %s\n", str(perr, "message"));
        return 2;
    }
    route_explain_print_head(out, &head);
    size_t i;
    const json_t *t;
    json_array_foreach(targets, i, t)
    {
        const char *health = str(t, "reason");
        if (health[0] == '\0') health = json_is_true(json_object_get(t, "ready")) ? "ready" : "";
        const char *skipped = json_string_value(json_object_get(t, "skipped"));
        struct explain_line line = {.rank = (int)num(t, "rank"),
                                    .target = str(t, "model"),
                                    .backend = str(t, "backend"),
                                    .type = str(t, "type"),
                                    .state = str(t, "state"),
                                    .health = health,
                                    .score = str(t, "score"),
                                    .skipped = skipped};
        route_explain_print_line(out, &line);
    }
    size_t n = json_array_size(plan);
    const char **backends = calloc(n ? n : 1, sizeof *backends),
               **models = calloc(n ? n : 1, sizeof *models);
    if (backends == NULL || models == NULL) {
        free(backends);
        free(models);
        fprintf(err_out, "stratus route explain: out of memory\n");
        return 1;
    }
    json_array_foreach(plan, i, t)
    {
        backends[i] = str(t, "backend");
        models[i] = str(t, "model");
    }
    route_explain_print_plan(out, backends, models, n, str(m, "policy"), str(m, "reason"));
    free(backends);
    free(models);
    print_live(out, m);
    return 0;
}

int route_explain_live(const struct live_opts *l, const struct explain_opts *o, FILE *out,
                       FILE *err_out)
{
    int rc = 1;
    struct answer a = {0};
    struct curl_slist *headers = NULL;
    json_t *doc = NULL;
    char *auth = NULL, *model = NULL;
    long status = 0;
    CURL *c = curl_easy_init();
    if (c == NULL || (model = curl_easy_escape(c, o->model, 0)) == NULL) {
        fprintf(err_out, "stratus route explain: out of memory\n");
        goto out;
    }
    char url[1200];
    size_t n = (size_t)snprintf(url, sizeof url, "%s", l->url);
    while (n > 0 && n < sizeof url && url[n - 1] == '/') url[--n] = '\0';
    n = (size_t)snprintf(url + n, sizeof url - n, "/admin/routes?model=%s&endpoint=%s", model,
                         endpoint_param(o->endpoint));
    size_t len = strlen(url);
    if (o->prompt_tokens > 0)
        len +=
            (size_t)snprintf(url + len, sizeof url - len, "&prompt_tokens=%ld", o->prompt_tokens);
    if (o->max_tokens > 0 && len < sizeof url)
        snprintf(url + len, sizeof url - len, "&max_tokens=%ld", o->max_tokens);
    if (l->key) {
        size_t size = strlen(l->key) + 32;
        if ((auth = malloc(size)) == NULL) goto out;
        snprintf(auth, size, "Authorization: Bearer %s", l->key);
        headers = curl_slist_append(NULL, auth);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_answer);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &a);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 30000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (l->cacert) curl_easy_setopt(c, CURLOPT_CAINFO, l->cacert);
    CURLcode cr = curl_easy_perform(c);
    if (cr != CURLE_OK) {
        fprintf(err_out, "stratus route explain: %s: %s%s\n", l->url,
                a.too_big ? "answer too large" : curl_easy_strerror(cr),
                a.too_big ? "" : " (is the gateway running? --url says where)");
        goto out;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    json_error_t je;
    doc = a.buf ? json_loadb(a.buf, a.len, 0, &je) : NULL;
    if (status != 200) {
        const char *msg =
            json_string_value(json_object_get(json_object_get(doc, "error"), "message"));
        fprintf(err_out, "stratus route explain: HTTP %ld: %s\n", status,
                msg ? msg : (a.buf ? a.buf : "no answer"));
        rc = status == 404 ? 2 : 1;
        goto out;
    }
    const json_t *m = json_array_get(json_object_get(doc, "models"), 0);
    if (!json_is_object(m)) {
        fprintf(err_out, "stratus route explain: %s did not answer as GET /admin/routes does\n",
                l->url);
        goto out;
    }
    if (l->json) {
        fwrite(a.buf, 1, a.len, out);
        fputc('\n', out);
        rc = 0;
        goto out;
    }
    fprintf(out, "(live: %s, config generation %lld)\n", l->url,
            (long long)json_integer_value(json_object_get(doc, "generation")));
    rc = print_model(doc, m, out, err_out);
out:
    json_decref(doc);
    curl_slist_free_all(headers);
    if (auth) {
        explicit_bzero(auth, strlen(auth));
        free(auth);
    }
    curl_free(model);
    if (c) curl_easy_cleanup(c);
    free(a.buf);
    return rc;
}
