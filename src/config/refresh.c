/*
 * DESIGN
 * The loop never waits for a secret store: the thread owns every load, and the loop only
 * swaps in a finished config. A sequence number guards against a stale load: a SIGHUP
 * reload that commits while a refresh is loading the previous text bumps it, and the
 * refresh's result is dropped instead of undoing the reload.
 */
#include "config/refresh.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "obs/log.h"
#include "util/clock.h"

#define LOG_EVERY_NS (600ull * 1000000000ull)

struct config_refresh {
    struct event_base *loop;
    config_refresh_cb cb;
    void *ud;
    pthread_t thread;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* under mu */
    bool stop;
    char *text, *path;
    size_t text_len;
    long every_s;
    unsigned char digest[32];
    unsigned long seq;    /* bumped by every track */
    struct config *ready; /* loaded, changed, waiting for the loop */
    unsigned long ready_seq;
    struct config_refresh_stats stats;
    struct event *wake; /* loop: takes `ready` */
    /* thread only: failure logging */
    char last_error[600];
    uint64_t last_logged_ns;
    /* a reload of the file (SIGHUP), loaded here so the loop never waits for a store */
    bool want_file;          /* under mu: asked, not yet started */
    bool file_done;          /* under mu: loaded (or failed), for the loop to take */
    struct config *file_cfg; /* under mu: the loaded config, or NULL */
    char file_error[800];    /* under mu: why it failed */
    config_refresh_file_cb file_cb;
};

static void on_ready(evutil_socket_t fd, short what, void *ud)
{
    struct config_refresh *r = ud;
    (void)fd;
    (void)what;
    pthread_mutex_lock(&r->mu);
    struct config *fresh = r->ready, *file = r->file_cfg;
    bool current = r->ready_seq == r->seq, file_done = r->file_done;
    char file_error[sizeof r->file_error];
    memcpy(file_error, r->file_error, sizeof file_error);
    r->ready = NULL;
    r->file_cfg = NULL;
    r->file_done = false;
    pthread_mutex_unlock(&r->mu);
    if (file_done) {
        /* The file wins over a refresh of the text it replaces (which it also re-resolved). */
        config_free(fresh);
        r->file_cb(file, file_error, r->ud);
        return;
    }
    if (fresh == NULL) return;
    if (!current) { /* the running config changed while this one was loading */
        config_free(fresh);
        return;
    }
    r->cb(fresh, r->ud);
}

static void log_failure(struct config_refresh *r, const char *msg)
{
    uint64_t now = clock_now_ns();
    /* Not keyed on the text: curl's messages carry timings ("after 0 ms"), so one outage
     * would read as many different failures. */
    if (r->last_error[0] && now - r->last_logged_ns < LOG_EVERY_NS) return;
    snprintf(r->last_error, sizeof r->last_error, "%s", msg);
    r->last_logged_ns = now;
    struct log_line l;
    log_begin(&l, "warn", "secret_refresh_failed");
    log_str(&l, "error", msg);
    log_str(&l, "message", "the running secrets stay in use; retried every refresh_s");
    log_end(&l);
}

static void *run(void *ud)
{
    struct config_refresh *r = ud;
    pthread_mutex_lock(&r->mu);
    while (!r->stop) {
        if (r->want_file) {
            r->want_file = false;
            char *path = r->path ? strdup(r->path) : NULL;
            pthread_mutex_unlock(&r->mu);
            struct config_error ce;
            struct config *cfg = path ? config_load(path, &ce) : NULL;
            char msg[sizeof r->file_error] = "out of memory";
            if (cfg == NULL && path) config_error_format(&ce, msg, sizeof msg);
            free(path);
            pthread_mutex_lock(&r->mu);
            config_free(r->file_cfg); /* an earlier one the loop has not taken yet */
            r->file_cfg = cfg;
            snprintf(r->file_error, sizeof r->file_error, "%s", cfg ? "" : msg);
            r->file_done = true;
            event_active(r->wake, EV_READ, 0);
            continue;
        }
        if (r->text == NULL || r->every_s <= 0) {
            pthread_cond_wait(&r->cv, &r->mu);
            continue;
        }
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += r->every_s;
        unsigned long seq = r->seq;
        while (!r->stop && seq == r->seq && !r->want_file &&
               pthread_cond_timedwait(&r->cv, &r->mu, &until) == 0) {
        }
        /* a new config starts its interval afresh; a file reload goes first */
        if (r->stop || seq != r->seq || r->want_file) continue;
        char *text = malloc(r->text_len + 1), *path = strdup(r->path);
        size_t len = r->text_len;
        unsigned char was[32];
        memcpy(was, r->digest, sizeof was);
        if (text) memcpy(text, r->text, len + 1);
        pthread_mutex_unlock(&r->mu);

        struct config_error ce;
        struct config *fresh = text && path ? config_load_string(text, len, path, &ce) : NULL;
        char msg[800] = "out of memory";
        if (fresh == NULL && text && path) config_error_format(&ce, msg, sizeof msg);
        unsigned char now[32];
        if (fresh) config_secrets_digest(fresh, now);
        free(text);
        free(path);

        pthread_mutex_lock(&r->mu);
        if (fresh == NULL) {
            r->stats.failures++;
            pthread_mutex_unlock(&r->mu);
            log_failure(r, msg);
            pthread_mutex_lock(&r->mu);
            continue;
        }
        r->stats.checks++;
        if (r->last_error[0]) {
            r->last_error[0] = '\0';
            r->last_logged_ns = 0;
            log_msg("info", "secret_refresh_recovered", "secrets resolve again");
        }
        if (memcmp(now, was, sizeof now) == 0 || seq != r->seq) {
            config_free(fresh);
            continue;
        }
        r->stats.changed++;
        config_free(r->ready); /* an older one the loop has not taken yet */
        r->ready = fresh;
        r->ready_seq = seq;
        event_active(r->wake, EV_READ, 0);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

struct config_refresh *config_refresh_new(struct event_base *loop, config_refresh_cb cb,
                                          config_refresh_file_cb file_cb, void *ud, struct err *err)
{
    struct config_refresh *r = calloc(1, sizeof *r);
    if (r == NULL) {
        err_oom(err);
        return NULL;
    }
    r->loop = loop;
    r->cb = cb;
    r->file_cb = file_cb;
    r->ud = ud;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    if ((r->wake = event_new(loop, -1, 0, on_ready, r)) == NULL) {
        config_refresh_free(r);
        err_oom(err);
        return NULL;
    }
    if (pthread_create(&r->thread, NULL, run, r) != 0) {
        config_refresh_free(r);
        err_set(err, 500, "server_error", NULL, "cannot start the secret refresh thread");
        return NULL;
    }
    r->started = true;
    return r;
}

void config_refresh_track(struct config_refresh *r, const struct config *running)
{
    if (r == NULL) return;
    char *text = malloc(running->text_len + 1), *path = strdup(running->path);
    if (text) memcpy(text, running->text ? running->text : "", running->text_len + 1);
    pthread_mutex_lock(&r->mu);
    free(r->text);
    free(r->path);
    r->text = text && path ? text : NULL;
    r->path = text && path ? path : NULL;
    if (r->text == NULL) {
        free(text);
        free(path);
    }
    r->text_len = running->text_len;
    r->every_s = running->secrets.refresh_s;
    config_secrets_digest(running, r->digest);
    r->seq++;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

void config_refresh_reload_file(struct config_refresh *r)
{
    pthread_mutex_lock(&r->mu);
    r->want_file = true;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

void config_refresh_stats(struct config_refresh *r, struct config_refresh_stats *out)
{
    memset(out, 0, sizeof *out);
    if (r == NULL) return;
    pthread_mutex_lock(&r->mu);
    *out = r->stats;
    pthread_mutex_unlock(&r->mu);
}

void config_refresh_free(struct config_refresh *r)
{
    if (r == NULL) return;
    if (r->started) {
        pthread_mutex_lock(&r->mu);
        r->stop = true;
        pthread_cond_signal(&r->cv);
        pthread_mutex_unlock(&r->mu);
        pthread_join(r->thread, NULL);
    }
    if (r->wake) event_free(r->wake);
    config_free(r->ready);
    config_free(r->file_cfg);
    free(r->text);
    free(r->path);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r);
}
