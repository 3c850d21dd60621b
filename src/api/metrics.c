/*
 * DESIGN: a scrape renders the whole exposition into one buffer on the loop: counters are
 * already numbers (obs/metrics), and state is read from its owners through their read-only
 * accessors. The cost grows with the number of series (models × targets, backends,
 * budgets), not with traffic; bench/metrics measures it.
 */
#include "api/metrics.h"

#include "config/refresh.h"

#include <dirent.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "api/cache.h"
#include "api/credential.h"
#include "api/respond.h"
#include "app.h"
#include "generation.h"
#include "guard/guard.h"
#include "http/server.h"
#include "obs/metrics.h"
#include "obs/trace_exporter.h"
#include "providers/provider.h"
#include "route/router.h"
#include "store/ledger.h"
#include "util/arena.h"
#include "util/clock.h"

static const char *const target_families[][3] = {
    {"stratus_target_breaker_state", "gauge",
     "Circuit breaker per routing target: 0 closed, 1 half-open, 2 open."},
    {"stratus_target_latency_ewma_seconds", "gauge",
     "The router's peak-EWMA of time to first byte per target (faded with idle time)."},
    {"stratus_target_in_flight", "gauge", "Attempts running now per target."},
    {"stratus_target_attempts", "counter",
     "Attempts per target by outcome: ok, failed (counts toward the breaker), rejected "
     "(a 4xx the target gave)."},
};
#define TARGET_FAMILIES (sizeof target_families / sizeof target_families[0])

/* Every target's state, read once (the latency estimate fades with an exp()) and written
 * four times; `where` gives each one's model and target index. */
struct target_snapshot {
    struct route_target_stats *stats;
    struct {
        const struct model_conf *model;
        size_t target;
    } * where;
    size_t n;
};

static int snapshot_targets(const struct generation *g, struct target_snapshot *t)
{
    size_t n = 0;
    for (size_t i = 0; i < g->cfg->n_models; i++) n += g->cfg->models[i].n_targets;
    t->n = n;
    t->stats = calloc(n ? n : 1, sizeof *t->stats);
    t->where = calloc(n ? n : 1, sizeof *t->where);
    if (t->stats == NULL || t->where == NULL) return -1;
    for (size_t i = 0, k = 0; i < g->cfg->n_models; i++)
        for (size_t j = 0; j < g->cfg->models[i].n_targets; j++, k++) {
            router_target_stats(g->router, &g->cfg->models[i], j, &t->stats[k]);
            t->where[k].model = &g->cfg->models[i];
            t->where[k].target = j;
        }
    return 0;
}

static void snapshot_free(struct target_snapshot *t)
{
    free(t->stats);
    free(t->where);
    t->stats = NULL;
    t->where = NULL;
}

/* Samples of family `f` for targets [from, to). */
static void target_samples(struct metrics_out *o, const struct generation *g,
                           const struct target_snapshot *t, size_t f, size_t from, size_t to)
{
    for (size_t k = from; k < to; k++) {
        const struct model_conf *m = t->where[k].model;
        const struct target_conf *tc = &m->targets[t->where[k].target];
        const struct route_target_stats *s = &t->stats[k];
        const char *l[] = {"model",
                           m->name,
                           "backend",
                           g->cfg->backends[tc->backend_index].name,
                           "target_model",
                           tc->model,
                           NULL,
                           NULL,
                           NULL};
        switch (f) {
        case 0:
            metrics_sample(o, NULL, l, (double)s->breaker);
            break;
        case 1:
            metrics_sample(o, NULL, l, s->latency_ewma_ms / 1000.0);
            break;
        case 2:
            metrics_sample(o, NULL, l, s->in_flight);
            break;
        default:
            l[6] = "outcome";
            l[7] = "ok";
            metrics_sample(o, NULL, l, (double)s->ok);
            l[7] = "failed";
            metrics_sample(o, NULL, l, (double)s->failed);
            l[7] = "rejected";
            metrics_sample(o, NULL, l, (double)s->rejected);
        }
    }
}

static void targets(struct metrics_out *o, const struct generation *g)
{
    struct target_snapshot t = {0};
    if (snapshot_targets(g, &t) == 0)
        for (size_t f = 0; f < TARGET_FAMILIES; f++) {
            metrics_family(o, target_families[f][0], target_families[f][1], target_families[f][2]);
            target_samples(o, g, &t, f, 0, t.n);
        }
    snapshot_free(&t);
}

static void backends(struct metrics_out *o, const struct generation *g)
{
    metrics_family(o, "stratus_backend_up", "gauge",
                   "1 when the backend's last probe succeeded (a local engine: serving).");
    for (size_t i = 0; i < g->cfg->n_backends; i++) {
        const struct backend *b = g->backends[i];
        const char *l[] = {"backend", b->conf->name, "type", backend_type_name(b->conf->type),
                           NULL};
        metrics_sample(o, NULL, l, b->ready);
    }
    static const char *const engine[][2] = {
        {"stratus_engine_slots", "Sequences a self-hosted engine decodes together."},
        {"stratus_engine_busy_slots", "Of those, busy now."},
        {"stratus_engine_queue_depth",
         "Requests waiting for a slot: the signal to scale engines on."},
        {"stratus_engine_tokens_per_second", "Recent generation speed per sequence."},
        {"stratus_engine_time_to_first_token_seconds", "The engine's recent mean TTFT."},
        {"stratus_engine_queue_wait_seconds",
         "Recent mean time a request waited for a slot (finished requests)."},
        {"stratus_engine_prefill_seconds",
         "Recent mean engine time a request's prompt took (its share of decode steps)."},
        {"stratus_engine_decode_seconds",
         "Recent mean engine time a request's generated tokens took (its share of steps)."},
    };
    for (size_t f = 0; f < sizeof engine / sizeof engine[0]; f++) {
        metrics_family(o, engine[f][0], "gauge", engine[f][1]);
        for (size_t i = 0; i < g->cfg->n_backends; i++) {
            const struct backend *b = g->backends[i];
            if (!b->load.valid) continue;
            const char *l[] = {"backend", b->conf->name, NULL};
            double v = f == 0   ? b->load.slots
                       : f == 1 ? b->load.busy_slots
                       : f == 2 ? b->load.queue_depth
                       : f == 3 ? b->load.tokens_per_s
                       : f == 4 ? b->load.ttft_ms / 1000.0
                       : f == 5 ? b->load.queue_ms_avg / 1000.0
                       : f == 6 ? b->load.prefill_ms_avg / 1000.0
                                : b->load.decode_ms_avg / 1000.0;
            metrics_sample(o, NULL, l, v);
        }
    }
    /* The worker's own total: a restarted worker starts it over, which rate() reads as an
     * ordinary counter reset. */
    metrics_family(o, "stratus_engine_prefix_tokens_reused", "counter",
                   "Prompt tokens a self-hosted engine did not decode: its KV cache held them "
                   "(the prompt-prefix cache); since the worker started.");
    for (size_t i = 0; i < g->cfg->n_backends; i++) {
        const struct backend *b = g->backends[i];
        const char *l[] = {"backend", b->conf->name, NULL};
        if (b->load.valid) metrics_sample(o, NULL, l, (double)b->load.prefix_tokens_reused);
    }
}

struct budget_pass {
    struct metrics_out *o;
    int what; /* 0 limit, 1 used, 2 remaining, 3 reset time */
};

static void budget_sample(void *ud, const struct guard_budget *b)
{
    struct budget_pass *p = ud;
    const char *l[] = {"scope", b->scope, "name", b->name, "period", b->period, NULL};
    double remaining = b->limit_usd - b->used_usd;
    double v = p->what == 0   ? b->limit_usd
               : p->what == 1 ? b->used_usd
               : p->what == 2 ? (remaining > 0 ? remaining : 0)
                              : (double)b->resets_at_ms / 1000.0;
    metrics_sample(p->o, NULL, l, v);
}

static void budgets(struct metrics_out *o, struct guard *guard)
{
    static const char *const families[][2] = {
        {"stratus_budget_limit_usd", "A budget's limit per period."},
        {"stratus_budget_used_usd", "Spent in the current period, plus what requests in flight "
                                    "have reserved."},
        {"stratus_budget_remaining_usd", "Limit minus used, never below zero."},
        {"stratus_budget_resets_at_seconds", "When the current period ends (Unix time)."},
    };
    for (int f = 0; f < 4; f++) {
        metrics_family(o, families[f][0], "gauge", families[f][1]);
        struct budget_pass p = {o, f};
        guard_each_budget(guard, budget_sample, &p);
    }
}

static void one(struct metrics_out *o, const char *name, const char *type, const char *help,
                double v)
{
    metrics_family(o, name, type, help);
    metrics_sample(o, NULL, NULL, v);
}

static void store_and_listeners(struct metrics_out *o, struct app *app)
{
    struct ledger_stats ls;
    ledger_stats(app->ledger, &ls);
    one(o, "stratus_ledger_queue_depth", "gauge", "Ledger rows waiting for the writer.",
        (double)ls.queued);
    one(o, "stratus_ledger_rows_appended", "counter", "Ledger rows queued.", (double)ls.appended);
    one(o, "stratus_ledger_rows_written", "counter", "Ledger rows committed to the store.",
        (double)ls.written);
    one(o, "stratus_ledger_rows_dropped", "counter",
        "Ledger rows lost because the queue was full (store.queue_size).", (double)ls.dropped);
    one(o, "stratus_ledger_write_errors", "counter", "Failed store writes (retried).",
        (double)ls.errors);
    one(o, "stratus_ledger_retained", "counter",
        "Raw rows and rollup lines deleted by retention (store.retention).", (double)ls.retained);
    one(o, "stratus_redis_fallbacks", "counter",
        "Admissions decided on this instance's own counters while store.redis was unreachable.",
        (double)guard_redis_fallbacks(app->guard));
    size_t conns = 0, active = 0;
    uint64_t refused = 0;
    for (size_t i = 0; i < app->n_servers; i++) {
        struct http_server_stats s;
        http_server_stats(app->servers[i], &s);
        conns += http_server_connections(app->servers[i]);
        active += http_server_active_requests(app->servers[i]);
        refused += s.refused;
    }
    one(o, "stratus_http_connections", "gauge", "Client connections open.", (double)conns);
    one(o, "stratus_http_active_requests", "gauge", "Requests being handled now.", (double)active);
    one(o, "stratus_http_connections_refused", "counter",
        "Connections closed at once because limits.max_connections was reached.", (double)refused);
    if (app->traces) {
        struct trace_exporter_stats t = trace_exporter_stats(app->traces);
        one(o, "stratus_otel_spans_queued", "gauge", "Spans waiting for the OTLP exporter.",
            (double)t.queued);
        one(o, "stratus_otel_spans_exported", "counter", "Spans the collector accepted.",
            (double)t.exported);
        one(o, "stratus_otel_spans_dropped", "counter",
            "Spans dropped because the exporter's queue was full.", (double)t.dropped);
        one(o, "stratus_otel_spans_failed", "counter",
            "Spans given up on after retries (or refused by the collector).", (double)t.failed);
    }
    if (app->cache) {
        struct response_cache_stats c;
        response_cache_stats(app->cache, &c);
        one(o, "stratus_cache_entries", "gauge", "Answers in the in-process response cache.",
            (double)c.entries);
        one(o, "stratus_cache_bytes", "gauge", "Their size, bookkeeping included.",
            (double)c.bytes);
        one(o, "stratus_cache_max_bytes", "gauge", "cache.max_bytes.", (double)c.max_bytes);
        one(o, "stratus_cache_evictions", "counter", "Entries evicted to make room.",
            (double)c.evictions);
        one(o, "stratus_cache_shared_hits", "counter",
            "Hits found in Redis (made by another gateway, or before a restart).",
            (double)c.shared_hits);
    }
    one(o, "stratus_config_generation", "gauge", "The config generation serving new requests.",
        (double)app->gen->number);
    metrics_family(o, "stratus_config_reloads", "counter", "Config reloads by result.");
    metrics_sample(o, NULL, (const char *[]){"result", "ok", NULL}, (double)app->reloads_ok);
    metrics_sample(o, NULL, (const char *[]){"result", "failed", NULL},
                   (double)app->reloads_failed);
    struct config_refresh_stats rs;
    config_refresh_stats(app->refresh, &rs);
    metrics_family(o, "stratus_secret_refreshes", "counter",
                   "Scheduled secret refreshes (secrets.refresh_s) by outcome.");
    metrics_sample(o, NULL, (const char *[]){"result", "unchanged", NULL},
                   (double)(rs.checks - rs.changed));
    metrics_sample(o, NULL, (const char *[]){"result", "changed", NULL}, (double)rs.changed);
    metrics_sample(o, NULL, (const char *[]){"result", "failed", NULL}, (double)rs.failures);
}

static size_t open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL) return 0;
    size_t n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) n += e->d_name[0] != '.';
    closedir(d);
    return n > 0 ? n - 1 : 0; /* the directory's own descriptor */
}

static void process(struct metrics_out *o, struct app *app)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
        fclose(f);
    }
    one(o, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
        (double)resident * (double)sysconf(_SC_PAGESIZE));
    one(o, "process_open_fds", "gauge", "Open file descriptors.", (double)open_fds());
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        one(o, "process_max_fds", "gauge", "The descriptor limit.", (double)rl.rlim_cur);
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        one(o, "process_cpu_seconds", "counter", "User and system CPU time in seconds.",
            (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
                ru.ru_stime.tv_usec / 1e6);
    one(o, "process_start_time_seconds", "gauge", "Start time of the process (Unix time).",
        (double)app->started_wall_ms / 1000.0);
    one(o, "stratus_uptime_seconds", "gauge", "Seconds since start.",
        (double)((uint64_t)clock_wall_ms() - app->started_wall_ms) / 1000.0);
    metrics_family(o, "stratus_build_info", "gauge", "The running build (always 1).");
    metrics_sample(o, NULL, (const char *[]){"version", STRATUS_VERSION, NULL}, 1);
}

/* ---- a large exposition, in slices ----------------------------------------------------
 * Beyond SLICE_TARGETS routing targets a scrape would hold the loop for milliseconds (13.5
 * ms at 5,000 targets): it is then streamed (chunked / HTTP/2 DATA), SLICE_TARGETS targets
 * per loop turn, so requests are served between slices. Each slice reads the state current
 * when it is written; the generation is held by the request. */

#define SLICE_TARGETS 500

struct scrape {
    struct app *app;
    struct http_request *req;
    const struct generation *gen;
    enum metrics_format format;
    struct target_snapshot targets;
    size_t family, next; /* the target family and target the next slice starts at */
    struct event *turn;
    bool done;
};

static void scrape_release(void *ud)
{
    struct scrape *s = ud;
    if (s->turn) event_free(s->turn);
    snapshot_free(&s->targets);
}

static void scrape_abort(struct http_request *req, void *ud)
{
    struct scrape *s = ud;
    (void)req;
    s->done = true;
    if (s->turn) event_del(s->turn);
}

/* The next slice after the loop has polled for I/O once: a zero timeout, not event_active,
 * whose events libevent runs in the same loop turn — other requests would wait for the
 * whole scrape. */
static void next_slice(struct scrape *s)
{
    static const struct timeval now = {0, 0};
    evtimer_add(s->turn, &now);
}

/* The client took what was waiting: the next slice. */
static void scrape_drain(struct http_request *req, void *ud)
{
    struct scrape *s = ud;
    (void)req;
    if (!s->done) next_slice(s);
}

/* Writes `o`'s text as one chunk. @return 0 (go on), 1 (wait for the client to drain), or -1
 * (the stream is over). */
static int scrape_write(struct scrape *s, struct metrics_out *o)
{
    size_t len = 0;
    char *text = o ? metrics_out_take_part(o, &len) : NULL;
    int rc = text ? http_stream_write(s->req, text, len) : -1;
    free(text);
    return rc;
}

static void scrape_step(evutil_socket_t fd, short what, void *ud)
{
    struct scrape *s = ud;
    (void)fd;
    (void)what;
    if (s->done) return;
    struct metrics_out *o = metrics_out_new(s->format);
    if (o == NULL) goto end;
    if (s->next == 0)
        metrics_family(o, target_families[s->family][0], target_families[s->family][1],
                       target_families[s->family][2]);
    else
        metrics_family_continue(o, target_families[s->family][0], target_families[s->family][1]);
    size_t to = s->next + SLICE_TARGETS < s->targets.n ? s->next + SLICE_TARGETS : s->targets.n;
    target_samples(o, s->gen, &s->targets, s->family, s->next, to);
    s->next = to;
    if (s->next == s->targets.n) {
        s->next = 0;
        s->family++;
    }
    if (s->family == TARGET_FAMILIES) { /* the last slice: the rest is small */
        backends(o, s->gen);
        budgets(o, s->app->guard);
        store_and_listeners(o, s->app);
        process(o, s->app);
        size_t len = 0;
        char *text = metrics_out_take(o, &len);
        if (text) http_stream_write(s->req, text, len);
        free(text);
        goto end;
    }
    int rc = scrape_write(s, o);
    if (rc < 0) goto end;
    if (rc == 0) next_slice(s);
    return; /* rc 1: scrape_drain resumes it */
end:
    s->done = true;
    http_stream_end(s->req);
}

/* @return 0 when the scrape was started (it answers on its own), -1 to answer at once. */
static int scrape_sliced(struct app *app, struct http_request *req, enum metrics_format format)
{
    size_t n = 0;
    for (size_t i = 0; i < app->gen->cfg->n_models; i++) n += app->gen->cfg->models[i].n_targets;
    if (n <= SLICE_TARGETS) return -1;
    struct scrape *s = arena_calloc(req->arena, 1, sizeof *s);
    if (s == NULL || arena_on_free(req->arena, scrape_release, s) != 0) return -1;
    *s = (struct scrape){.app = app, .req = req, .gen = app->gen, .format = format};
    if (snapshot_targets(s->gen, &s->targets) != 0 ||
        (s->turn = evtimer_new(app->loop, scrape_step, s)) == NULL)
        return -1;
    struct metrics_out *o = metrics_out_new(format);
    if (o == NULL) return -1;
    metrics_render(app->metrics, o); /* the per-request series: bounded by the config */
    api_log(req, 200, NULL);
    http_request_set_callbacks(req, scrape_abort, scrape_drain, s);
    http_stream_start(req, 200, metrics_content_type(format));
    int rc = scrape_write(s, o);
    if (rc < 0) {
        s->done = true;
        http_stream_end(req);
    } else if (rc == 0) {
        next_slice(s);
    }
    return 0;
}

void metrics_handle(struct app *app, struct http_request *req, const struct principal *who)
{
    (void)who;
    struct err e;
    err_clear(&e);
    if (app->metrics == NULL) {
        err_set(&e, 404, "invalid_request_error", "not_found",
                "metrics are off (metrics: { enabled: false } in the config)");
        api_log(req, e.status, e.msg);
        http_respond_error(req, &e);
        return;
    }
    if (app->cfg->metrics.auth) {
        const char *key = NULL;
        size_t len = 0;
        struct principal p;
        if (credential_bearer(req, &key, &len, &e) != 0 ||
            guard_authenticate(app->guard, key, len, true, &p, &e) != 0) {
            api_log(req, e.status, e.msg);
            http_respond_error(req, &e);
            return;
        }
    }
    const char *accept = http_request_header(req, "accept");
    enum metrics_format format = accept && strstr(accept, "application/openmetrics-text")
                                     ? METRICS_OPENMETRICS
                                     : METRICS_PROMETHEUS;
    if (scrape_sliced(app, req, format) == 0) return;
    struct metrics_out *o = metrics_out_new(format);
    char *text = NULL;
    size_t len = 0;
    if (o) {
        metrics_render(app->metrics, o);
        targets(o, app->gen);
        backends(o, app->gen);
        budgets(o, app->guard);
        store_and_listeners(o, app);
        process(o, app);
        text = metrics_out_take(o, &len);
    }
    if (text == NULL) {
        err_oom(&e);
        api_log(req, e.status, e.msg);
        http_respond_error(req, &e);
        return;
    }
    api_log(req, 200, NULL);
    http_respond(req, 200, metrics_content_type(format), text, len);
    free(text);
}
