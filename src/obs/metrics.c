/*
 * DESIGN
 * A series is one family + its label values; all live in one open-addressing hash table
 * (keyed by FNV-1a over the family and the values) for the hot path, and in a list per
 * family for exposition, so samples of a family come out together and in the order they
 * first appeared. Histograms keep per-bucket counts (cumulated at scrape time), sum and
 * count. A request touches ten or so series: a few hundred instructions, no allocation once
 * its series exist.
 */
#include "obs/metrics.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LABELS 4
#define MAX_SERIES 50000 /* beyond, new series are dropped (and counted) */

/* Seconds: from a cached answer to a long generation. */
static const double seconds_buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                         1,     2.5,  5,     10,   30,  60,   120};
/* Tokens per request, as OpenTelemetry's GenAI conventions advise (powers of 4). */
static const double token_buckets[] = {1,     4,     16,     64,      256,     1024,    4096,
                                       16384, 65536, 262144, 1048576, 4194304, 16777216};

#define N(a) (sizeof(a) / sizeof((a)[0]))

enum family_id {
    F_REQUESTS,
    F_DURATION,
    F_TTFT,
    F_TOKENS,
    F_COST,
    F_COST_UNKNOWN,
    F_CUSTOMER_COST,
    F_ATTEMPTS,
    F_FAILOVERS,
    F_REFUSALS,
    F_GUARD_HITS,
    F_CACHE,
    F_CACHE_SAVED,
    F_FAMILIES
};

struct family_def {
    const char *name, *type, *help;
    const char *labels[MAX_LABELS + 1];
    const double *buckets;
    size_t n_buckets;
};

/* Names follow OpenTelemetry's GenAI semantic conventions where one exists (gen_ai.*). */
static const struct family_def families[F_FAMILIES] = {
    [F_REQUESTS] = {"stratus_requests",
                    "counter",
                    "Model API requests by inbound surface, model group, backend and status.",
                    {"surface", "model", "backend", "status"},
                    NULL,
                    0},
    [F_DURATION] = {"gen_ai_server_request_duration_seconds",
                    "histogram",
                    "Time from a request's arrival to its end, per model group and backend.",
                    {"model", "backend"},
                    seconds_buckets,
                    N(seconds_buckets)},
    [F_TTFT] = {"gen_ai_server_time_to_first_token_seconds",
                "histogram",
                "Time from a request's arrival to the first byte of its answer.",
                {"model", "backend"},
                seconds_buckets,
                N(seconds_buckets)},
    [F_TOKENS] = {"gen_ai_client_token_usage",
                  "histogram",
                  "Tokens per request by type (input, output), as the target reported them.",
                  {"model", "backend", "gen_ai_token_type"},
                  token_buckets,
                  N(token_buckets)},
    [F_COST] = {"stratus_cost_usd",
                "counter",
                "Spend in US dollars (requests with a known cost).",
                {"model", "backend", "team"},
                NULL,
                0},
    [F_COST_UNKNOWN] = {"stratus_cost_unknown_requests",
                        "counter",
                        "Requests whose cost is unknown (an unpriced target, no usage).",
                        {"model", "backend"},
                        NULL,
                        0},
    [F_CUSTOMER_COST] = {"stratus_customer_cost_usd",
                         "counter",
                         "Spend in US dollars per customer (metrics.customers get their own "
                         "series; the rest are customer=\"other\").",
                         {"customer"},
                         NULL,
                         0},
    [F_ATTEMPTS] = {"stratus_upstream_attempts",
                    "counter",
                    "Upstream attempts made (first tries, failovers and retries).",
                    {"model"},
                    NULL,
                    0},
    [F_FAILOVERS] = {"stratus_failovers",
                     "counter",
                     "Attempts beyond a request's first (failovers and retries).",
                     {"model"},
                     NULL,
                     0},
    [F_REFUSALS] = {"stratus_refusals",
                    "counter",
                    "Requests answered with an error, by its code (rate_limit_exceeded, "
                    "budget_exceeded, guard_blocked, upstream_auth_failed, …).",
                    {"code"},
                    NULL,
                    0},
    [F_GUARD_HITS] = {"stratus_guard_hits",
                      "counter",
                      "Content guards that fired, by rule or kind (never the matched text).",
                      {"guard"},
                      NULL,
                      0},
    [F_CACHE] = {"stratus_cache_requests",
                 "counter",
                 "Cacheable requests by what the response cache did: hit, miss, bypass.",
                 {"model", "result"},
                 NULL,
                 0},
    [F_CACHE_SAVED] = {"stratus_cache_saved_usd",
                       "counter",
                       "What the answers replayed from the response cache cost when made.",
                       {"model"},
                       NULL,
                       0},
};

struct series {
    int family;
    uint64_t hash;
    char *values[MAX_LABELS];
    double value;      /* counters */
    uint64_t *buckets; /* histograms: per bucket, not cumulated */
    double sum;
    uint64_t count;
    struct series *next; /* in its family, in order of appearance */
};

struct metrics {
    struct series **table; /* open addressing; NULL = empty */
    size_t cap, n;
    struct series *first[F_FAMILIES], *last[F_FAMILIES];
    int max_customers, customers;
    uint64_t dropped; /* series not created: the cap, or out of memory */
};

static uint64_t fnv(uint64_t h, const char *s)
{
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    return (h ^ 0xff) * 0x100000001b3ULL;
}

static uint64_t key_hash(int family, const char *const *values, int n)
{
    uint64_t h = (0xcbf29ce484222325ULL ^ (uint64_t)family) * 0x100000001b3ULL;
    for (int i = 0; i < n; i++) h = fnv(h, values[i]);
    return h;
}

static int label_count(int family)
{
    int n = 0;
    while (n < MAX_LABELS && families[family].labels[n]) n++;
    return n;
}

static bool same(const struct series *s, int family, uint64_t h, const char *const *values, int n)
{
    if (s->family != family || s->hash != h) return false;
    for (int i = 0; i < n; i++)
        if (strcmp(s->values[i], values[i]) != 0) return false;
    return true;
}

static struct series *find(const struct metrics *m, int family, const char *const *values, int n,
                           uint64_t h)
{
    for (size_t i = h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        struct series *s = m->table[i];
        if (s == NULL) return NULL;
        if (same(s, family, h, values, n)) return s;
    }
}

static bool grow(struct metrics *m)
{
    size_t cap = m->cap * 2;
    struct series **t = calloc(cap, sizeof *t);
    if (t == NULL) return false;
    for (size_t i = 0; i < m->cap; i++) {
        struct series *s = m->table[i];
        if (s == NULL) continue;
        size_t j = s->hash & (cap - 1);
        while (t[j]) j = (j + 1) & (cap - 1);
        t[j] = s;
    }
    free(m->table);
    m->table = t;
    m->cap = cap;
    return true;
}

static void series_free(struct series *s)
{
    for (int i = 0; i < MAX_LABELS; i++) free(s->values[i]);
    free(s->buckets);
    free(s);
}

/* The series for these label values, made on first use; NULL when it cannot be. */
static struct series *series_at(struct metrics *m, int family, const char *const *values)
{
    int n = label_count(family);
    uint64_t h = key_hash(family, values, n);
    struct series *s = find(m, family, values, n, h);
    if (s) return s;
    if (m->n >= MAX_SERIES || ((m->n + 1) * 2 > m->cap && !grow(m))) goto dropped;
    if ((s = calloc(1, sizeof *s)) == NULL) goto dropped;
    s->family = family;
    s->hash = h;
    for (int i = 0; i < n; i++)
        if ((s->values[i] = strdup(values[i])) == NULL) goto fail;
    if (families[family].buckets &&
        (s->buckets = calloc(families[family].n_buckets, sizeof *s->buckets)) == NULL)
        goto fail;
    size_t i = h & (m->cap - 1);
    while (m->table[i]) i = (i + 1) & (m->cap - 1);
    m->table[i] = s;
    m->n++;
    if (m->last[family])
        m->last[family]->next = s;
    else
        m->first[family] = s;
    m->last[family] = s;
    return s;
fail:
    series_free(s);
dropped:
    m->dropped++;
    return NULL;
}

static void add(struct metrics *m, int family, const char *const *values, double v)
{
    struct series *s = series_at(m, family, values);
    if (s) s->value += v;
}

static void observe(struct metrics *m, int family, const char *const *values, double v)
{
    struct series *s = series_at(m, family, values);
    if (s == NULL) return;
    const struct family_def *f = &families[family];
    size_t b = 0;
    while (b < f->n_buckets && v > f->buckets[b]) b++;
    if (b < f->n_buckets) s->buckets[b]++; /* past the last bound: only +Inf (= count) */
    s->sum += v;
    s->count++;
}

/* Quantile `q` of a histogram with per-bucket (not cumulated) counts over `bounds`. */
static double quantile(const uint64_t *counts, const double *bounds, size_t n, uint64_t total,
                       double q)
{
    double rank = q * (double)total, below = 0;
    for (size_t b = 0; b < n; b++) {
        if (counts[b] > 0 && below + (double)counts[b] >= rank) {
            double lo = b ? bounds[b - 1] : 0;
            return lo + (bounds[b] - lo) * (rank - below) / (double)counts[b];
        }
        below += (double)counts[b];
    }
    return bounds[n - 1];
}

uint64_t metrics_ttft(const struct metrics *m, const char *backend, double *p50_s, double *p95_s)
{
    if (m == NULL) return 0;
    uint64_t counts[N(seconds_buckets)] = {0}, total = 0;
    for (const struct series *s = m->first[F_TTFT]; s; s = s->next) {
        if (strcmp(s->values[1], backend) != 0) continue;
        for (size_t b = 0; b < N(seconds_buckets); b++) counts[b] += s->buckets[b];
        total += s->count;
    }
    if (total == 0) return 0;
    *p50_s = quantile(counts, seconds_buckets, N(seconds_buckets), total, 0.5);
    *p95_s = quantile(counts, seconds_buckets, N(seconds_buckets), total, 0.95);
    return total;
}

struct metrics *metrics_new(int max_customers)
{
    struct metrics *m = calloc(1, sizeof *m);
    if (m == NULL) return NULL;
    m->cap = 256;
    m->max_customers = max_customers;
    if ((m->table = calloc(m->cap, sizeof *m->table)) == NULL) {
        free(m);
        return NULL;
    }
    return m;
}

void metrics_free(struct metrics *m)
{
    if (m == NULL) return;
    for (size_t i = 0; i < m->cap; i++)
        if (m->table[i]) series_free(m->table[i]);
    free(m->table);
    free(m);
}

static const char *or_empty(const char *s)
{
    return s ? s : "";
}

/* Every guard name in "deny:rule, pii:email, route_local" counted once. */
static void count_guards(struct metrics *m, const char *fired)
{
    char name[128];
    while (*fired) {
        const char *end = strstr(fired, ", ");
        size_t n = end ? (size_t)(end - fired) : strlen(fired);
        if (n > 0 && n < sizeof name) {
            memcpy(name, fired, n);
            name[n] = '\0';
            add(m, F_GUARD_HITS, (const char *[]){name}, 1);
        }
        fired += n + (end ? 2 : 0);
    }
}

/* The customer's own series while there is room for one more, else "other". */
static const char *customer_label(struct metrics *m, const char *customer)
{
    const char *v[1] = {customer};
    if (find(m, F_CUSTOMER_COST, v, 1, key_hash(F_CUSTOMER_COST, v, 1))) return customer;
    if (m->customers >= m->max_customers) return "other";
    m->customers++;
    return customer;
}

void metrics_count_request(struct metrics *m, const struct metrics_request *r)
{
    if (m == NULL) return;
    char status[8];
    snprintf(status, sizeof status, "%d", r->status);
    const char *model = or_empty(r->model), *backend = or_empty(r->backend);
    add(m, F_REQUESTS, (const char *[]){or_empty(r->surface), model, backend, status}, 1);
    if (r->backend) {
        const char *mb[] = {model, backend};
        observe(m, F_DURATION, mb, r->duration_s);
        if (r->ttft_s >= 0) observe(m, F_TTFT, mb, r->ttft_s);
        if (r->input_tokens >= 0)
            observe(m, F_TOKENS, (const char *[]){model, backend, "input"},
                    (double)r->input_tokens);
        if (r->output_tokens >= 0)
            observe(m, F_TOKENS, (const char *[]){model, backend, "output"},
                    (double)r->output_tokens);
        if (r->cost_known)
            add(m, F_COST, (const char *[]){model, backend, or_empty(r->team)}, r->cost_usd);
        else
            add(m, F_COST_UNKNOWN, mb, 1);
        if (r->cost_known && r->customer && r->customer[0])
            add(m, F_CUSTOMER_COST, (const char *[]){customer_label(m, r->customer)}, r->cost_usd);
    }
    if (r->attempts > 0) {
        add(m, F_ATTEMPTS, (const char *[]){model}, (double)r->attempts);
        if (r->attempts > 1)
            add(m, F_FAILOVERS, (const char *[]){model}, (double)(r->attempts - 1));
    }
    if (r->status >= 400 && r->error_code && r->error_code[0])
        add(m, F_REFUSALS, (const char *[]){r->error_code}, 1);
    if (r->guard && r->guard[0]) count_guards(m, r->guard);
    if (r->cache) {
        add(m, F_CACHE, (const char *[]){model, r->cache}, 1);
        if (strcmp(r->cache, "hit") == 0)
            add(m, F_CACHE_SAVED, (const char *[]){model}, r->saved_usd);
    }
}

/* ---- exposition ------------------------------------------------------------------------ */

struct metrics_out {
    enum metrics_format format;
    char *p;
    size_t len, cap;
    bool oom;
    char family[128];
    bool counter;
};

static void put(struct metrics_out *o, const char *s, size_t n)
{
    if (o->oom) return;
    if (o->len + n + 1 > o->cap) {
        size_t cap = o->cap ? o->cap : 4096;
        while (o->len + n + 1 > cap) cap *= 2;
        char *p = realloc(o->p, cap);
        if (p == NULL) {
            o->oom = true;
            return;
        }
        o->p = p;
        o->cap = cap;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
    o->p[o->len] = '\0';
}

static void puts_(struct metrics_out *o, const char *s)
{
    put(o, s, strlen(s));
}

static void printf_(struct metrics_out *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void printf_(struct metrics_out *o, const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n > 0) put(o, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

/* Label values escape \, " and newline; HELP text escapes \ and newline. Most values need
 * none: one strcspn finds that out, and the value is copied whole. */
static void escaped(struct metrics_out *o, const char *s, bool quotes)
{
    size_t plain = strcspn(s, quotes ? "\\\n\"" : "\\\n");
    if (s[plain] == '\0') {
        put(o, s, plain);
        return;
    }
    const char *run = s;
    for (; *s; s++) {
        const char *rep = *s == '\\'            ? "\\\\"
                          : *s == '\n'          ? "\\n"
                          : quotes && *s == '"' ? "\\\""
                                                : NULL;
        if (rep == NULL) continue;
        put(o, run, (size_t)(s - run));
        puts_(o, rep);
        run = s + 1;
    }
    put(o, run, (size_t)(s - run));
}

struct metrics_out *metrics_out_new(enum metrics_format format)
{
    struct metrics_out *o = calloc(1, sizeof *o);
    if (o) o->format = format;
    return o;
}

void metrics_family(struct metrics_out *o, const char *name, const char *type, const char *help)
{
    snprintf(o->family, sizeof o->family, "%s", name);
    o->counter = strcmp(type, "counter") == 0;
    /* Prometheus text names a counter family by its samples' name; OpenMetrics without
     * the _total suffix. */
    const char *total = o->counter && o->format == METRICS_PROMETHEUS ? "_total" : "";
    printf_(o, "# HELP %s%s ", name, total);
    escaped(o, help, false);
    printf_(o, "\n# TYPE %s%s %s\n", name, total, type);
}

static void number(struct metrics_out *o, double v)
{
    if (isnan(v)) {
        puts_(o, "NaN");
    } else if (isinf(v)) {
        puts_(o, v > 0 ? "+Inf" : "-Inf");
    } else if (v == floor(v) && fabs(v) < 1e15) {
        /* Most samples are counts: digits by hand, printf's float path is the scrape's
         * largest cost otherwise. */
        char buf[24], *p = buf + sizeof buf;
        unsigned long long n = (unsigned long long)fabs(v);
        do *--p = (char)('0' + n % 10);
        while ((n /= 10) > 0);
        if (v < 0) *--p = '-';
        put(o, p, (size_t)(buf + sizeof buf - p));
    } else {
        printf_(o, "%.15g", v);
    }
}

void metrics_sample(struct metrics_out *o, const char *suffix, const char *const *labels,
                    double value)
{
    puts_(o, o->family);
    puts_(o, suffix && *suffix ? suffix : o->counter ? "_total" : "");
    if (labels && labels[0]) {
        puts_(o, "{");
        for (int i = 0; labels[i] && labels[i + 1]; i += 2) {
            if (i) put(o, ",", 1);
            puts_(o, labels[i]); /* label names are ours: never need escaping */
            put(o, "=\"", 2);
            escaped(o, labels[i + 1], true);
            put(o, "\"", 1);
        }
        puts_(o, "}");
    }
    put(o, " ", 1);
    number(o, value);
    put(o, "\n", 1);
}

static void render_series(struct metrics_out *o, const struct family_def *f, const struct series *s)
{
    const char *labels[2 * (MAX_LABELS + 1) + 1];
    int n = 0;
    for (int i = 0; i < MAX_LABELS && f->labels[i]; i++) {
        labels[n++] = f->labels[i];
        labels[n++] = s->values[i];
    }
    if (f->buckets == NULL) {
        labels[n] = NULL;
        metrics_sample(o, NULL, labels, s->value);
        return;
    }
    char le[32];
    labels[n] = "le";
    labels[n + 1] = le;
    labels[n + 2] = NULL;
    uint64_t cumulative = 0;
    for (size_t b = 0; b < f->n_buckets; b++) {
        cumulative += s->buckets[b];
        snprintf(le, sizeof le, "%g", f->buckets[b]);
        metrics_sample(o, "_bucket", labels, (double)cumulative);
    }
    snprintf(le, sizeof le, "+Inf");
    metrics_sample(o, "_bucket", labels, (double)s->count);
    labels[n] = NULL;
    metrics_sample(o, "_sum", labels, s->sum);
    metrics_sample(o, "_count", labels, (double)s->count);
}

void metrics_render(const struct metrics *m, struct metrics_out *o)
{
    for (int f = 0; f < F_FAMILIES; f++) {
        metrics_family(o, families[f].name, families[f].type, families[f].help);
        for (const struct series *s = m->first[f]; s; s = s->next)
            render_series(o, &families[f], s);
    }
    metrics_family(o, "stratus_metrics_series_dropped", "counter",
                   "Series not created: the cap on series was reached or memory ran out.");
    metrics_sample(o, NULL, NULL, (double)m->dropped);
}

void metrics_family_continue(struct metrics_out *o, const char *name, const char *type)
{
    snprintf(o->family, sizeof o->family, "%s", name);
    o->counter = strcmp(type, "counter") == 0;
}

char *metrics_out_take_part(struct metrics_out *o, size_t *len)
{
    if (!o->oom && o->p == NULL) o->p = calloc(1, 1); /* nothing written: an empty part */
    char *p = o->oom ? NULL : o->p;
    if (o->oom) free(o->p);
    *len = p ? o->len : 0;
    free(o);
    return p;
}

char *metrics_out_take(struct metrics_out *o, size_t *len)
{
    if (o->format == METRICS_OPENMETRICS) puts_(o, "# EOF\n");
    char *p = o->oom ? NULL : o->p;
    if (o->oom) free(o->p);
    *len = p ? o->len : 0;
    free(o);
    return p;
}

void metrics_out_free(struct metrics_out *o)
{
    if (o == NULL) return;
    free(o->p);
    free(o);
}

const char *metrics_content_type(enum metrics_format format)
{
    return format == METRICS_OPENMETRICS
               ? "application/openmetrics-text; version=1.0.0; charset=utf-8"
               : "text/plain; version=0.0.4; charset=utf-8";
}
