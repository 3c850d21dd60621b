/*
 * DESIGN
 * Start-up order: backends (provider init, secrets already resolved by config), upstream
 * client, router, then the listener last so nothing is served half-built. Shutdown is the
 * reverse, driven by a periodic check: on SIGTERM/SIGINT the server stops accepting and
 * closes idle connections; the loop keeps running until no request is in flight or the
 * grace period ends, then everything is freed so ASan/valgrind see zero leaks.
 *
 * Readiness of remote backends is a TCP (+TLS) connect probe every few seconds: cheap,
 * needs no credentials, and tells "unreachable" apart from "reachable".
 */
#include "daemon.h"

#include "app.h"

#include <curl/curl.h>
#include <jansson.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/resource.h>
#include <stdlib.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "api/cache.h"
#include "config/refresh.h"
#include "api/dispatch.h"
#include "generation.h"
#include "engine/supervisor.h"
#include "http/server.h"
#include "http/tls.h"
#include "obs/log.h"
#include "obs/metrics.h"
#include "providers/provider.h"
#include "providers/upstream.h"
#include "secrets/secrets.h"
#include "cost/cost.h"
#include "cost/prices.h"
#include "route/router.h"
#include "guard/content.h"
#include "guard/guard.h"
#include "store/jobs.h"
#include "obs/trace_exporter.h"
#include "store/ledger.h"
#include "util/clock.h"
#include "util/json_text.h"

#define PROBE_INTERVAL_MS 5000
#define PROBE_TICK_MS     250
#define STOP_CHECK_MS     20

struct probe {
    struct app *app;
    struct probe *next, **prev_next; /* app->probes */
    struct generation *gen;          /* held: keeps the backend and its config */
    struct backend *backend;
    char body[1024]; /* what a probe GET answered (a local worker's /stats) */
    size_t len;
};

static void probe_free(struct probe *pr)
{
    *pr->prev_next = pr->next;
    if (pr->next) pr->next->prev_next = pr->prev_next;
    pr->app->probes_running--;
    generation_release(pr->app, pr->gen);
    free(pr);
}

static void on_probe_done(enum upstream_result result, long status, long retry_after,
                          const char *message, void *ud)
{
    struct probe *pr = ud;
    struct backend *b = pr->backend;
    (void)retry_after;
    bool was = b->ready, first = !b->probed;
    b->probed = true;
    if (b->ops->probe_read) {
        b->ops->probe_read(b, result, status, pr->body, pr->len);
    } else {
        b->ready = result == UPSTREAM_OK;
        if (!b->ready)
            snprintf(b->not_ready_reason, sizeof b->not_ready_reason, "unreachable: %s", message);
        else
            b->not_ready_reason[0] = '\0';
    }
    if (first || was != b->ready) {
        struct log_line l;
        log_begin(&l, b->ready ? "info" : "warn", "backend_health");
        log_str(&l, "backend", b->conf->name);
        log_bool(&l, "ready", b->ready);
        log_str(&l, "reason", b->ready ? NULL : b->not_ready_reason);
        log_end(&l);
    }
    probe_free(pr);
}

static int on_probe_data(struct upstream_call *call, const char *p, size_t n, void *ud)
{
    struct probe *pr = ud;
    (void)call;
    if (pr->len + n > sizeof pr->body) return -1; /* not a status answer */
    memcpy(pr->body + pr->len, p, n);
    pr->len += n;
    return 0;
}

static const struct upstream_callbacks probe_callbacks = {
    .on_data = on_probe_data,
    .on_done = on_probe_done,
};

/* Remote backends are probed every PROBE_INTERVAL_MS; self-hosted ones every tick while
 * they load or restart (so they take traffic as soon as they can), else every 4 ticks. */
static void probe_all(struct app *app, unsigned tick)
{
    if (app->probes_running > 0 || app->stopping) return; /* previous round still out */
    struct generation *g = app->gen;
    for (size_t i = 0; i < g->cfg->n_backends; i++) {
        struct backend *b = g->backends[i];
        unsigned every =
            backend_self_hosted(b) ? (b->ready ? 4 : 1) : PROBE_INTERVAL_MS / PROBE_TICK_MS;
        if (tick % every != 0) continue;
        struct probe *pr = calloc(1, sizeof *pr);
        if (pr == NULL) continue;
        pr->app = app;
        pr->backend = b;
        struct upstream_request r = {
            .url = b->conf->base_url,
            .connect_timeout_ms = b->conf->connect_timeout_ms,
            .timeout_ms = b->conf->connect_timeout_ms,
            .connect_only = true,
        };
        if (b->ops->probe) b->ops->probe(b, &r);
        struct err e;
        err_clear(&e);
        pr->gen = generation_hold(g);
        pr->next = app->probes;
        pr->prev_next = &app->probes;
        if (app->probes) app->probes->prev_next = &pr->next;
        app->probes = pr;
        app->probes_running++;
        if (upstream_start(app->upstream, &r, &probe_callbacks, pr, &e) == NULL) probe_free(pr);
    }
}

static void on_probe_timer(evutil_socket_t fd, short what, void *ud)
{
    struct app *app = ud;
    (void)fd;
    (void)what;
    probe_all(app, app->probe_tick++);
    struct timeval tv = {0, PROBE_TICK_MS * 1000};
    if (!app->stopping) evtimer_add(app->probe_timer, &tv);
}

static size_t connections(const struct app *app)
{
    size_t n = 0;
    for (size_t i = 0; i < app->n_servers; i++) n += http_server_connections(app->servers[i]);
    return n;
}

static size_t active_requests(const struct app *app)
{
    size_t n = 0;
    for (size_t i = 0; i < app->n_servers; i++) n += http_server_active_requests(app->servers[i]);
    return n;
}

/* The certificate and key are read again; new handshakes use them, connections open keep
 * theirs. A file that does not load leaves the old pair serving. */
static void reload_tls(struct app *app)
{
    if (app->tls == NULL) return;
    struct log_line l;
    struct err e;
    err_clear(&e);
    if (tls_ctx_reload(app->tls, &e) != 0) {
        log_begin(&l, "error", "tls_reload_failed");
        log_str(&l, "cert", app->cfg->tls.cert);
        log_str(&l, "key", app->cfg->tls.key);
        log_str(&l, "error", e.msg);
        log_str(&l, "message", "the previous certificate and key stay in use");
        log_end(&l);
        return;
    }
    char fp[65];
    tls_ctx_fingerprint(app->tls, fp);
    log_begin(&l, "info", "tls_reloaded");
    log_str(&l, "cert", app->cfg->tls.cert);
    log_str(&l, "sha256", fp);
    log_end(&l);
}

static void count_engines(const struct generation *old, const struct generation *next,
                          struct reload_result *out)
{
    for (size_t i = 0; i < next->cfg->n_backends; i++) {
        if (!next->backends[i]->ops->supervised) continue;
        if (next->fresh[i])
            out->engines_started++;
        else
            out->engines_kept++;
    }
    /* An old worker stops when no generation lists its backend any more. */
    for (size_t i = 0; i < old->cfg->n_backends; i++) {
        const struct backend *b = old->backends[i];
        if (!b->ops->supervised) continue;
        bool listed = false;
        for (size_t j = 0; j < next->cfg->n_backends && !listed; j++)
            listed = next->backends[j] == b;
        out->engines_stopped += !listed;
    }
}

/* The secrets whose value differs between two configs, by where they are used and their
 * reference ("backends[up].api_key aws-sm:prod/up#key, …"): never the values. */
struct secret_diff {
    const struct config *other;
    char *out;
    size_t size, n;
};

struct secret_probe {
    const char *what;
    const struct secret *found;
};

static void probe_one(const struct secret *s, const char *what, void *ud)
{
    struct secret_probe *p = ud;
    if (strcmp(what, p->what) == 0) p->found = s;
}

static void find_same(const struct secret *s, const char *what, void *ud)
{
    struct secret_diff *d = ud;
    struct secret_probe p = {.what = what};
    config_each_secret(d->other, probe_one, &p);
    bool same = p.found && strcmp(p.found->ref, s->ref) == 0 &&
                ((p.found->value == NULL && s->value == NULL) ||
                 (p.found->value && s->value && strcmp(p.found->value, s->value) == 0));
    if (same || d->n + 8 >= d->size) return;
    d->n +=
        (size_t)snprintf(d->out + d->n, d->size - d->n, "%s%s %s", d->n ? ", " : "", what, s->ref);
}

/* Makes `cfg` (owned; freed on failure) current. `cause`: "reload" or "secrets". */
static int reload_with(struct app *app, struct config *cfg, const char *cause,
                       struct reload_result *out, struct err *err)
{
    struct log_line l;
    char rotated[400] = "";
    struct secret_diff d = {.other = app->gen->cfg, .out = rotated, .size = sizeof rotated};
    config_each_secret(cfg, find_same, &d);
    config_restart_sections(app->cfg, cfg, out->restart_needed, sizeof out->restart_needed);
    config_reloaded_sections(app->gen->cfg, cfg, out->changed, sizeof out->changed);
    /* Start-only secrets: the master key also seals stored keys' AWS secrets (guard/awskeys)
     * and the store passwords belong to connections made at start, so a new value waits for
     * a restart, like the rest of auth and store. */
    const struct secret *start_only[][2] = {
        {&app->cfg->auth.master_key, &cfg->auth.master_key},
        {&app->cfg->store.password, &cfg->store.password},
        {&app->cfg->store.redis_password, &cfg->store.redis_password},
    };
    static const char *const start_only_names[] = {"auth.master_key", "store.password",
                                                   "store.redis_password"};
    for (size_t i = 0; i < 3; i++) {
        const char *was = start_only[i][0]->value, *now = start_only[i][1]->value;
        if (was == NULL || now == NULL || strcmp(was, now) == 0) continue;
        log_begin(&l, "warn", "secret_rotated_restart_needed");
        log_str(&l, "secret", start_only_names[i]);
        log_str(&l, "ref", start_only[i][1]->ref);
        log_str(&l, "message", "a new value; it takes effect at a restart");
        log_end(&l);
    }
    config_keep_running(cfg, app->cfg);
    struct generation *g = generation_build(app, cfg, true, app->gen, err);
    if (g != NULL && generation_start(app, g, err) != 0) {
        generation_release(app, g);
        g = NULL;
    }
    if (g == NULL) {
        log_begin(&l, "error", "reload_failed");
        log_str(&l, "config", app->cfg->path);
        log_str(&l, "cause", cause);
        log_str(&l, "error", err->msg);
        log_str(&l, "message", "the running config stays in use");
        log_end(&l);
        app->reloads_failed++;
        return -1;
    }
    app->reloads_ok++;
    count_engines(app->gen, g, out);
    out->generation = g->number;
    generation_commit(app, g);
    config_refresh_track(app->refresh, g->cfg);
    log_begin(&l, "info", "config_reloaded");
    log_str(&l, "config", app->cfg->path);
    log_str(&l, "cause", cause);
    log_int(&l, "generation", (long long)out->generation);
    log_str(&l, "changed", out->changed);
    log_str(&l, "secrets_changed", rotated);
    log_int(&l, "engines_kept", out->engines_kept);
    log_int(&l, "engines_started", out->engines_started);
    log_int(&l, "engines_stopped", out->engines_stopped);
    if (out->restart_needed[0]) {
        log_str(&l, "restart_needed", out->restart_needed);
        log_str(&l, "message",
                "these sections are read at start only: their running values "
                "stay until a restart");
    }
    log_end(&l);
    return 0;
}

/* A loaded file, or why it did not load (`cfg` NULL), becomes the reload's outcome. */
static int reload_loaded(struct app *app, struct config *cfg, const char *error,
                         struct reload_result *out, struct err *err)
{
    if (cfg != NULL) return reload_with(app, cfg, "reload", out, err);
    struct log_line l;
    log_begin(&l, "error", "reload_failed");
    log_str(&l, "config", app->cfg->path);
    log_str(&l, "error", error);
    log_str(&l, "message", "the running config stays in use");
    log_end(&l);
    app->reloads_failed++;
    return err_set(err, 400, "invalid_request_error", "invalid_config", "%s", error);
}

int app_reload(struct app *app, struct reload_result *out, struct err *err)
{
    memset(out, 0, sizeof *out);
    reload_tls(app);
    struct config_error ce;
    char where[700] = "";
    struct config *cfg = config_load(app->cfg->path, &ce);
    if (cfg == NULL) config_error_format(&ce, where, sizeof where);
    return reload_loaded(app, cfg, where, out, err);
}

/* SIGHUP's file, loaded on the refresh thread (config_refresh_reload_file). */
static void on_file_loaded(struct config *cfg, const char *error, void *ud)
{
    struct app *app = ud;
    if (app->stopping) {
        config_free(cfg);
        return;
    }
    struct reload_result r;
    struct err e;
    memset(&r, 0, sizeof r);
    err_clear(&e);
    reload_loaded(app, cfg, error, &r, &e); /* the outcome is in the log either way */
}

/* The refresher loaded the running config again and a secret's value changed. */
static void on_secrets_changed(struct config *fresh, void *ud)
{
    struct app *app = ud;
    if (app->stopping) {
        config_free(fresh);
        return;
    }
    struct reload_result r;
    struct err e;
    memset(&r, 0, sizeof r);
    err_clear(&e);
    reload_with(app, fresh, "secrets", &r, &e); /* the outcome is in the log either way */
}

/* SIGHUP: the config file (and the TLS certificate) again; see app_reload. */
static void on_hup(evutil_socket_t sig, short what, void *ud)
{
    struct app *app = ud;
    (void)sig;
    (void)what;
    if (app->stopping) return;
    /* The file (and every secret it names) is loaded off the loop, which never waits for a
     * secret store; the certificate files are read here, as on every reload. */
    reload_tls(app);
    config_refresh_reload_file(app->refresh);
}

static void on_stop_check(evutil_socket_t fd, short what, void *ud)
{
    struct app *app = ud;
    (void)fd;
    (void)what;
    /* Done when every connection is gone, not merely every request: a finished response may
     * still sit in a connection's output buffer, and stopping then would cut its tail. While
     * draining, connections close as soon as their last response is written. */
    size_t conns = connections(app);
    if (conns == 0 || clock_now_ns() >= app->stop_deadline_ns) {
        if (conns > 0)
            log_msg("warn", "shutdown",
                    "grace period over; closing %zu connection(s), %zu request(s) in flight", conns,
                    active_requests(app));
        event_base_loopbreak(app->loop);
    }
}

static void on_signal(evutil_socket_t sig, short what, void *ud)
{
    struct app *app = ud;
    (void)what;
    if (app->stopping) {
        log_msg("warn", "shutdown", "second signal: stopping now");
        event_base_loopbreak(app->loop);
        return;
    }
    app->stopping = true;
    app->stop_deadline_ns = clock_now_ns() + (uint64_t)app->cfg->shutdown_grace_ms * 1000000u;
    struct log_line l;
    log_begin(&l, "info", "shutdown");
    log_str(&l, "signal", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    log_int(&l, "in_flight", (long long)active_requests(app));
    log_int(&l, "grace_ms", app->cfg->shutdown_grace_ms);
    log_end(&l);
    for (size_t i = 0; i < app->n_servers; i++) http_server_drain(app->servers[i]);
    evtimer_del(app->probe_timer);
    struct timeval tv = {0, STOP_CHECK_MS * 1000};
    event_add(app->stop_timer, &tv);
}

static void log_banner(const struct app *app)
{
    struct log_line l;
    char list[1024];
    log_begin(&l, "info", "start");
    log_str(&l, "version", STRATUS_VERSION);
    log_str(&l, "config", app->cfg->path);
    size_t n = 0;
    n += (size_t)snprintf(list + n, sizeof list - n, "[");
    for (size_t i = 0; i < app->cfg->n_backends && n < sizeof list - 80; i++) {
        char esc[200];
        json_escape(esc, sizeof esc, app->cfg->backends[i].name,
                    strlen(app->cfg->backends[i].name));
        n += (size_t)snprintf(list + n, sizeof list - n, "%s\"%s\"", i ? "," : "", esc);
    }
    snprintf(list + n, sizeof list - n, "]");
    log_raw(&l, "backends", list);
    n = (size_t)snprintf(list, sizeof list, "[");
    for (size_t i = 0; i < app->cfg->n_models && n < sizeof list - 80; i++) {
        char esc[200];
        json_escape(esc, sizeof esc, app->cfg->models[i].name, strlen(app->cfg->models[i].name));
        n += (size_t)snprintf(list + n, sizeof list - n, "%s\"%s\"", i ? "," : "", esc);
    }
    snprintf(list + n, sizeof list - n, "]");
    log_raw(&l, "models", list);
    log_end(&l);
    for (size_t i = 0; i < app->cfg->n_backends; i++) {
        const struct backend_conf *b = &app->cfg->backends[i];
        log_begin(&l, "info", "backend");
        log_str(&l, "name", b->name);
        log_str(&l, "type", backend_type_name(b->type));
        log_str(&l, "base_url", b->base_url);
        if (b->type == BACKEND_BEDROCK) {
            log_str(&l, "region", b->region);
            log_str(&l, "credentials", b->aws_access_key_id.ref); /* where from, never what */
        } else {
            log_str(&l, "api_key", b->api_key.ref); /* the reference, never the value */
        }
        if (b->tco.set) log_double(&l, "tco_usd_per_hour", cost_tco_per_hour(&b->tco));
        log_end(&l);
    }
    const struct config *cfg = app->cfg;
    log_begin(&l, "info", "prices");
    log_str(&l, "catalogue", cfg->prices_path);
    log_str(&l, "date", cfg->prices ? cfg->prices->date : NULL);
    log_int(&l, "entries", cfg->prices ? (long long)cfg->prices->n : 0);
    log_end(&l);
    /* A target nobody priced is counted as unknown, never as free: say so once, at start. */
    for (size_t i = 0; i < cfg->n_models; i++)
        for (size_t j = 0; j < cfg->models[i].n_targets; j++) {
            const struct target_conf *t = &cfg->models[i].targets[j];
            if (t->price.set || t->price.source == PRICE_LOCAL_TCO) continue;
            log_begin(&l, "warn", "price_unknown");
            log_str(&l, "model", cfg->models[i].name);
            log_str(&l, "backend", t->backend);
            log_str(&l, "target_model", t->model);
            log_str(&l, "message",
                    "no price in the config or the catalogue: its cost is "
                    "recorded as unknown (add price: { input, output })");
            log_end(&l);
        }
}

/* A deny rule Hyperscan could not take runs its PCRE2 pattern over every text of every
 * request: name each one once, at start, with Hyperscan's reason, so a slow rule is found. */
/* Every client connection, upstream connection and store file is a descriptor, and the soft
 * limit (often 1024) is far below what a gateway needs while the hard limit is not: raise
 * the soft one, then size max_connections so clients can never take the descriptors that
 * upstream connects and the store need (a full table fails every proxied request with 502
 * and makes accept() fail on every loop turn). */
static int connections_for_fd_limit(int configured)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        log_msg("warn", "fd_limit", "getrlimit(RLIMIT_NOFILE): %s; keeping max_connections %d",
                strerror(errno), configured);
        return configured;
    }
    rlim_t was = rl.rlim_cur;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0) rl.rlim_cur = was; /* keep what we have */
    }
    uint64_t nofile = rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : (uint64_t)rl.rlim_cur;
    int cap = http_server_connection_cap(nofile, configured);
    struct log_line l;
    log_begin(&l, cap < configured ? "warn" : "info", "fd_limit");
    log_int(&l, "nofile_soft_was", was == RLIM_INFINITY ? -1 : (long long)was);
    log_int(&l, "nofile", rl.rlim_cur == RLIM_INFINITY ? -1 : (long long)rl.rlim_cur);
    log_int(&l, "nofile_hard", rl.rlim_max == RLIM_INFINITY ? -1 : (long long)rl.rlim_max);
    log_int(&l, "reserve", HTTP_SERVER_FD_RESERVE);
    log_int(&l, "max_connections_configured", configured);
    log_int(&l, "max_connections", cap);
    if (cap < configured)
        log_str(&l, "message", "max_connections lowered to fit the descriptor limit (ulimit -n)");
    log_end(&l);
    return cap;
}

static void app_teardown(struct app *app)
{
    log_batch_stop();
    config_refresh_free(app->refresh); /* before the loop it posts to */
    app->refresh = NULL;
    secrets_shutdown();
    /* requests settle their budget holds as they go */
    for (size_t i = 0; i < app->n_servers; i++) http_server_free(app->servers[i]);
    tls_ctx_free(app->tls); /* after every connection made from it */
    guard_free(app->guard);
    store_jobs_stop(app->jobs);
    supervisor_free(app->supervisor); /* workers stop before the backends they point at */
    app->supervisor = NULL;           /* releasing backends below has none to tell */
    upstream_free(app->upstream);     /* probes still out are dropped, not answered */
    while (app->probes) probe_free(app->probes);
    ledger_stop(app->ledger);         /* every queued row is written before we go */
    trace_exporter_free(app->traces); /* the last spans, within ~2 s */
    metrics_free(app->metrics);
    response_cache_free(app->cache);
    /* Requests ended with their servers above, so this is the last hold of the last one. */
    generation_release(app, app->gen);
    if (app->probe_timer) event_free(app->probe_timer);
    if (app->stop_timer) event_free(app->stop_timer);
    if (app->sig_term) event_free(app->sig_term);
    if (app->sig_int) event_free(app->sig_int);
    if (app->sig_hup) event_free(app->sig_hup);
    if (app->loop) event_base_free(app->loop);
    config_free(app->cfg);
    curl_global_cleanup();
#if LIBEVENT_VERSION_NUMBER >= 0x02010000
    libevent_global_shutdown();
#endif
}

int app_run(struct config *cfg, const char *listen)
{
    struct app app_storage, *app = &app_storage;
    memset(app, 0, sizeof *app);
    app->cfg = cfg;
    app->started_wall_ms = (uint64_t)clock_wall_ms();
    struct err e;
    err_clear(&e);
    int rc = 1;
    char *host = NULL;
    int port = 0;

    signal(SIGPIPE, SIG_IGN);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
        log_msg("error", "start_failed", "cannot initialise libcurl");
        goto out;
    }
    evthread_use_pthreads(); /* store jobs and the ledger wake the loop from their threads */
    app->loop = event_base_new();
    if (app->loop == NULL) {
        log_msg("error", "start_failed", "cannot create the event loop");
        goto out;
    }
    log_banner(app);
    log_batch_start(app->loop); /* after this, request lines leave once per loop turn */

    if ((app->upstream = upstream_new(app->loop, &e)) == NULL ||
        (app->gen = generation_build(app, cfg, false, NULL, &e)) == NULL) {
        log_msg("error", "start_failed", "%s", e.msg);
        goto out;
    }
    {
        char why[600];
        struct store_handle store;
        if (store_open(cfg->store.url, cfg->store.base_dir, cfg->store.password.value, &store, why,
                       sizeof why) != 0) {
            log_msg("error", "start_failed", "ledger: %s", why);
            goto out;
        }
        app->ledger = ledger_start(store, (size_t)cfg->store.queue_size,
                                   (size_t)cfg->store.batch_size, cfg->store.flush_ms);
        if (app->ledger == NULL || ledger_watch(app->ledger, app->loop) != 0) goto oom;
        /* The first run soon after start (a gateway restarted often still ages rows out),
         * not at once: start-up stays quick and its queries do not queue behind deletes. */
        long every_ms = cfg->store.retention_every_s * 1000;
        ledger_retain(app->ledger, cfg->store.rows_days, cfg->store.rollups_days, every_ms,
                      every_ms < 10000 ? every_ms : 10000);
        if (cfg->metrics.enabled &&
            (app->metrics = metrics_new(cfg->metrics.max_customers)) == NULL)
            goto oom;
        app->record_to = (struct record_sinks){.ledger = app->ledger, .metrics = app->metrics};
        struct log_line l;
        log_begin(&l, "info", "ledger");
        log_str(&l, "store", store.ops->scheme);
        if (store.ops == &store_sqlite) log_str(&l, "url", cfg->store.url);
        log_str(&l, "base_dir", cfg->store.base_dir);
        log_end(&l);
        /* A second handle for admin calls and key refreshes: the ledger's is its writer's. */
        if (store_open(cfg->store.url, cfg->store.base_dir, cfg->store.password.value, &store, why,
                       sizeof why) != 0) {
            log_msg("error", "start_failed", "store: %s", why);
            goto out;
        }
        const struct observability_conf *ob = &cfg->observability;
        if (ob->otlp_endpoint &&
            (app->traces = trace_exporter_new(ob, STRATUS_VERSION, &e)) == NULL) {
            log_msg("error", "start_failed", "traces: %s", e.msg);
            goto out;
        }
        log_begin(&l, "info", "traces");
        log_str(&l, "otlp_endpoint",
                ob->otlp_endpoint); /* NULL: off (traceparent passes through) */
        if (ob->otlp_endpoint) log_double(&l, "sample", ob->sample);
        log_end(&l);
        struct store_handle seed = store; /* guard_new reads it before any job is queued */
        if ((app->jobs = store_jobs_start(app->loop, store)) == NULL) goto oom;
        if ((app->guard = guard_new(cfg, app->loop, &seed, app->jobs, &e)) == NULL) {
            log_msg("error", "start_failed", "%s", e.msg);
            goto out;
        }
        /* The response cache shares entries over the guard's Redis connection. */
        if (cfg->cache.enabled &&
            (app->cache = response_cache_new(&cfg->cache, guard_shared(app->guard))) == NULL)
            goto oom;
        log_begin(&l, guard_auth_enabled(app->guard) ? "info" : "warn", "auth");
        log_bool(&l, "enabled", guard_auth_enabled(app->guard));
        log_str(&l, "master_key", cfg->auth.master_key.ref);
        log_int(&l, "keys", (long long)key_table_size(guard_keys(app->guard)));
        log_int(&l, "budgets", (long long)cfg->n_budgets);
        if (!guard_auth_enabled(app->guard))
            log_str(&l, "message", "no auth.master_key: every caller is trusted; loopback only");
        log_end(&l);
    }

    const char *why = NULL;
    /* --listen replaces the configured listeners with one, which speaks TLS when tls: is set. */
    struct listen_conf cli = {0};
    const struct listen_conf *listeners = cfg->listeners;
    size_t n_listeners = cfg->n_listeners;
    if (listen) {
        if (config_parse_listen(listen, &host, &port, &why) != 0) {
            log_msg("error", "start_failed", "--listen %s: %s", listen, why);
            goto out;
        }
        cli = (struct listen_conf){.host = host, .port = port, .tls = cfg->tls.cert != NULL};
        listeners = &cli;
        n_listeners = 1;
    }
    for (size_t i = 0; i < n_listeners; i++) {
        const char *h = listeners[i].host;
        bool loopback =
            strncmp(h, "127.", 4) == 0 || strcmp(h, "::1") == 0 || strcmp(h, "localhost") == 0;
        if (!loopback && !guard_auth_enabled(app->guard)) {
            log_msg("error", "start_failed",
                    "listening on %s without auth would let anyone spend through this gateway; "
                    "set auth.master_key or listen on 127.0.0.1",
                    h);
            goto out;
        }
    }
    if (cfg->tls.cert) {
        if ((app->tls = tls_ctx_new(cfg->tls.cert, cfg->tls.key, &cfg->secrets.sources, &e)) ==
            NULL) {
            log_msg("error", "start_failed", "%s", e.msg);
            goto out;
        }
        char fp[65];
        tls_ctx_fingerprint(app->tls, fp);
        struct log_line l;
        log_begin(&l, "info", "tls");
        log_str(&l, "cert", cfg->tls.cert);
        log_str(&l, "key", cfg->tls.key);
        log_str(&l, "sha256", fp);
        log_end(&l);
    }
    struct http_server_opts opts = {
        .max_body_bytes = cfg->limits.max_body_bytes,
        .max_header_bytes = cfg->limits.max_header_bytes,
        .header_timeout_ms = cfg->limits.header_timeout_ms,
        .body_timeout_ms = cfg->limits.body_timeout_ms,
        .idle_timeout_ms = cfg->limits.idle_timeout_ms,
        .max_connections = connections_for_fd_limit(cfg->limits.max_connections),
        .log_requests = cfg->log_requests,
        .access = {.allow = cfg->access.allow,
                   .n_allow = cfg->access.n_allow,
                   .allow_set = cfg->access.allow_set,
                   .trust_proxy = cfg->access.trust_proxy,
                   .n_trust_proxy = cfg->access.n_trust_proxy},
    };
    for (size_t i = 0; i < n_listeners && i < sizeof app->servers / sizeof app->servers[0]; i++) {
        opts.tls = listeners[i].tls ? app->tls : NULL;
        app->servers[i] = http_server_new(app->loop, listeners[i].host, listeners[i].port, opts,
                                          api_handle, app, &e);
        if (app->servers[i] == NULL) {
            log_msg("error", "start_failed", "%s", e.msg);
            goto out;
        }
        app->n_servers++;
    }
    app->server = app->servers[0];
    app->probe_timer = evtimer_new(app->loop, on_probe_timer, app);
    app->stop_timer = event_new(app->loop, -1, EV_PERSIST, on_stop_check, app);
    app->sig_term = evsignal_new(app->loop, SIGTERM, on_signal, app);
    app->sig_int = evsignal_new(app->loop, SIGINT, on_signal, app);
    app->sig_hup = evsignal_new(app->loop, SIGHUP, on_hup, app);
    if (!app->probe_timer || !app->stop_timer || !app->sig_term || !app->sig_int || !app->sig_hup)
        goto oom;
    event_add(app->sig_term, NULL);
    event_add(app->sig_int, NULL);
    event_add(app->sig_hup, NULL);
    {
        ssize_t n = readlink("/proc/self/exe", app->exe, sizeof app->exe - 1);
        if (n <= 0) {
            log_msg("error", "start_failed", "cannot find the stratus binary to run engines");
            goto out;
        }
        app->exe[n] = '\0';
    }
    if (generation_start(app, app->gen, &e) != 0) {
        log_msg("error", "start_failed", "%s", e.msg);
        goto out;
    }
    if ((app->refresh =
             config_refresh_new(app->loop, on_secrets_changed, on_file_loaded, app, &e)) == NULL) {
        log_msg("error", "start_failed", "%s", e.msg);
        goto out;
    }
    config_refresh_track(app->refresh, app->cfg);
    on_probe_timer(-1, 0, app);

    struct log_line l;
    for (size_t i = 0; i < app->n_servers; i++) {
        log_begin(&l, "info", "listening");
        log_str(&l, "address", http_server_address(app->servers[i]));
        log_bool(&l, "tls", listeners[i].tls);
        log_end(&l);
    }

    event_base_dispatch(app->loop);
    log_msg("info", "stopped", "bye");
    rc = 0;
    goto out;
oom:
    log_msg("error", "start_failed", "out of memory");
out:
    free(host);
    app_teardown(app);
    return rc;
}
