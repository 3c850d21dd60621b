/*
 * DESIGN: the shape of store/ledger.c's writer — a ring of spans guarded by one mutex, the
 * thread copying a batch out under the lock and doing the slow part (JSON, HTTP) without
 * it, so the loop only ever waits for a memcpy. Unlike ledger rows, spans leave the ring as
 * soon as they are taken: a collector that is down must not fill the queue and make the
 * gateway drop new spans in favour of old ones forever.
 *
 * One blocking curl easy handle, reused (keep-alive to the collector). Stopping sets a
 * deadline that the transfer's progress callback and the backoff waits both watch, so
 * shutdown never hangs on a collector that does not answer.
 */
#include "obs/trace_exporter.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config/config.h"
#include "obs/log.h"
#include "obs/span.h"
#include "util/clock.h"

#define STOP_GRACE_NS    (2000000000ull) /* what shutdown gives the last exports */
#define MAX_TRIES        4               /* one try and three retries */
#define FIRST_BACKOFF_MS 250
#define LOG_EVERY_NS     (10000000000ull) /* one failure/drop line per 10 s at most */

struct trace_exporter {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t wake;
    struct span *ring;
    size_t cap, head, count; /* spans [head, head+count) mod cap are queued */
    size_t batch_size;
    long flush_ms;
    bool stopping;
    atomic_ullong stop_deadline_ns; /* monotonic; 0 while running */
    struct trace_exporter_stats stats;
    uint64_t drop_logged_ns, drops_logged;
    /* the thread's own */
    struct span *batch;
    CURL *easy;
    struct curl_slist *headers;
    char *url, *service, *version;
    uint64_t fail_logged_ns;
    unsigned long fails_unlogged;
};

static void deadline_in(struct timespec *ts, long ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000L;
    ts->tv_sec += ts->tv_nsec / 1000000000L;
    ts->tv_nsec %= 1000000000L;
}

static bool past_deadline(struct trace_exporter *x)
{
    uint64_t d = atomic_load(&x->stop_deadline_ns);
    return d != 0 && clock_now_ns() >= d;
}

/* Aborts a transfer still running when shutdown's grace is over. */
static int on_progress(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    (void)dt, (void)dn, (void)ut, (void)un;
    return past_deadline(ud) ? 1 : 0;
}

static size_t discard(char *p, size_t size, size_t n, void *ud)
{
    (void)p, (void)ud;
    return size * n;
}

/* One POST. @return 0 accepted, 1 worth retrying, -1 not (with `why`). */
static int post(struct trace_exporter *x, const char *body, char *why, size_t cap)
{
    curl_easy_setopt(x->easy, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(x->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
    CURLcode rc = curl_easy_perform(x->easy);
    if (rc != CURLE_OK) {
        snprintf(why, cap, "%s", curl_easy_strerror(rc));
        return 1;
    }
    long status = 0;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
    if (status >= 200 && status < 300) return 0;
    snprintf(why, cap, "the collector answered HTTP %ld", status);
    return status == 429 || status >= 500 ? 1 : -1;
}

/* Waits `ms` unless shutdown's grace runs out first. @return false when it did. */
static bool backoff(struct trace_exporter *x, long ms)
{
    uint64_t d = atomic_load(&x->stop_deadline_ns), now = clock_now_ns();
    if (d != 0 && (d <= now || (d - now) / 1000000 < (uint64_t)ms))
        ms = d > now ? (long)((d - now) / 1000000) : 0;
    struct timespec until;
    deadline_in(&until, ms);
    pthread_mutex_lock(&x->mu);
    while (!past_deadline(x) && pthread_cond_timedwait(&x->wake, &x->mu, &until) == 0) {
    }
    pthread_mutex_unlock(&x->mu);
    return !past_deadline(x);
}

static void note_failure(struct trace_exporter *x, size_t n, const char *why)
{
    uint64_t now = clock_now_ns();
    x->fails_unlogged += n;
    if (x->fail_logged_ns && now - x->fail_logged_ns < LOG_EVERY_NS) return;
    x->fail_logged_ns = now;
    struct log_line l;
    log_begin(&l, "warn", "otlp_export_failed");
    log_str(&l, "endpoint", x->url);
    log_str(&l, "error", why);
    log_int(&l, "spans", (long long)x->fails_unlogged);
    log_end(&l);
    x->fails_unlogged = 0;
}

/* Sends one batch, retrying. @return whether the collector took it. */
static bool send_batch(struct trace_exporter *x, size_t n)
{
    char why[200] = "out of memory";
    char *body = span_export_json(x->batch, n, x->service, x->version);
    int rc = -1;
    for (int attempt = 0, wait = FIRST_BACKOFF_MS; body && attempt < MAX_TRIES; attempt++) {
        if (attempt > 0 && !backoff(x, wait)) break;
        wait *= 2;
        if ((rc = post(x, body, why, sizeof why)) <= 0) break;
        if (past_deadline(x)) break;
    }
    free(body);
    if (rc != 0) note_failure(x, n, why);
    return rc == 0;
}

static void *run(void *ud)
{
    struct trace_exporter *x = ud;
    pthread_mutex_lock(&x->mu);
    for (;;) {
        while (x->count == 0 && !x->stopping) pthread_cond_wait(&x->wake, &x->mu);
        if (x->count == 0 && x->stopping) break;
        /* A request per span would cost the collector (and us) far more than the span. */
        if (x->count < x->batch_size && !x->stopping) {
            struct timespec until;
            deadline_in(&until, x->flush_ms);
            while (x->count < x->batch_size && !x->stopping &&
                   pthread_cond_timedwait(&x->wake, &x->mu, &until) == 0) {
            }
        }
        size_t n = x->count < x->batch_size ? x->count : x->batch_size;
        for (size_t i = 0; i < n; i++) x->batch[i] = x->ring[(x->head + i) % x->cap];
        x->head = (x->head + n) % x->cap;
        x->count -= n;
        bool late = past_deadline(x);
        pthread_mutex_unlock(&x->mu);
        bool ok = !late && send_batch(x, n);
        if (late) note_failure(x, n, "shutting down: the collector did not take them in time");
        pthread_mutex_lock(&x->mu);
        if (ok)
            x->stats.exported += n;
        else
            x->stats.failed += n;
    }
    pthread_mutex_unlock(&x->mu);
    return NULL;
}

static void free_parts(struct trace_exporter *x)
{
    if (x->easy) curl_easy_cleanup(x->easy);
    curl_slist_free_all(x->headers);
    free(x->url);
    free(x->service);
    free(x->version);
    free(x->ring);
    free(x->batch);
    free(x);
}

static bool add_header(struct curl_slist **h, const char *name, const char *value)
{
    size_t n = strlen(name) + strlen(value) + 3;
    char *line = malloc(n);
    if (line == NULL) return false;
    snprintf(line, n, "%s: %s", name, value);
    struct curl_slist *t = curl_slist_append(*h, line);
    explicit_bzero(line, n); /* it may hold a token */
    free(line);
    if (t) *h = t;
    return t != NULL;
}

struct trace_exporter *trace_exporter_new(const struct observability_conf *conf,
                                          const char *service_version, struct err *err)
{
    struct trace_exporter *x = calloc(1, sizeof *x);
    if (x == NULL) goto oom;
    x->cap = (size_t)conf->queue_size;
    x->batch_size = (size_t)conf->batch_size;
    x->flush_ms = conf->flush_ms;
    x->ring = calloc(x->cap, sizeof *x->ring); /* pages are touched as spans arrive */
    x->batch = calloc(x->batch_size, sizeof *x->batch);
    x->url = strdup(conf->otlp_endpoint);
    x->service = strdup(conf->service_name ? conf->service_name : "stratus");
    x->version = strdup(service_version);
    x->easy = curl_easy_init();
    if (!x->ring || !x->batch || !x->url || !x->service || !x->version || !x->easy) goto oom;
    if (!add_header(&x->headers, "Content-Type", "application/json")) goto oom;
    for (size_t i = 0; i < conf->n_headers; i++)
        if (!add_header(&x->headers, conf->headers[i].name, conf->headers[i].value.value)) goto oom;
    CURL *e = x->easy;
    curl_easy_setopt(e, CURLOPT_URL, x->url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(e, CURLOPT_XFERINFODATA, x);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    pthread_mutex_init(&x->mu, NULL);
    pthread_cond_init(&x->wake, NULL);
    if (pthread_create(&x->thread, NULL, run, x) != 0) {
        pthread_mutex_destroy(&x->mu);
        pthread_cond_destroy(&x->wake);
        free_parts(x);
        err_set(err, 500, "server_error", NULL, "cannot start the trace exporter thread");
        return NULL;
    }
    return x;
oom:
    if (x) free_parts(x);
    err_oom(err);
    return NULL;
}

bool trace_exporter_submit(struct trace_exporter *x, const struct span *s)
{
    pthread_mutex_lock(&x->mu);
    if (x->count == x->cap) {
        x->stats.dropped++;
        uint64_t now = clock_now_ns(), dropped = x->stats.dropped;
        bool say = x->drop_logged_ns == 0 || now - x->drop_logged_ns >= LOG_EVERY_NS;
        uint64_t since = dropped - x->drops_logged;
        if (say) x->drop_logged_ns = now, x->drops_logged = dropped;
        pthread_mutex_unlock(&x->mu);
        if (say)
            log_msg("warn", "otlp_queue_full",
                    "trace export queue full (%zu spans): %llu spans dropped since the last "
                    "report, %llu in all",
                    x->cap, (unsigned long long)since, (unsigned long long)dropped);
        return false;
    }
    x->ring[(x->head + x->count) % x->cap] = *s;
    x->count++;
    /* Wake the thread when it may be idle (first span) or a batch is full; between, it is
     * lingering on a timer. */
    if (x->count == 1 || x->count == x->batch_size) pthread_cond_signal(&x->wake);
    pthread_mutex_unlock(&x->mu);
    return true;
}

struct trace_exporter_stats trace_exporter_stats(struct trace_exporter *x)
{
    pthread_mutex_lock(&x->mu);
    struct trace_exporter_stats s = x->stats;
    s.queued = x->count;
    pthread_mutex_unlock(&x->mu);
    return s;
}

void trace_exporter_free(struct trace_exporter *x)
{
    if (x == NULL) return;
    pthread_mutex_lock(&x->mu);
    x->stopping = true;
    atomic_store(&x->stop_deadline_ns, clock_now_ns() + STOP_GRACE_NS);
    pthread_cond_broadcast(&x->wake);
    pthread_mutex_unlock(&x->mu);
    pthread_join(x->thread, NULL);
    if (x->fails_unlogged) {
        x->fail_logged_ns = 0;
        note_failure(x, 0, "(failures not reported yet, at exit)");
    }
    struct log_line l;
    log_begin(&l, "info", "otlp_exporter_stopped");
    log_int(&l, "exported", (long long)x->stats.exported);
    log_int(&l, "dropped", (long long)x->stats.dropped);
    log_int(&l, "failed", (long long)x->stats.failed);
    log_end(&l);
    pthread_mutex_destroy(&x->mu);
    pthread_cond_destroy(&x->wake);
    free_parts(x);
}
