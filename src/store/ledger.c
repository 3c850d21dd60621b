/*
 * DESIGN: a ring buffer of rows guarded by one mutex; the writer copies a batch out under
 * the lock and writes it without the lock, so the loop thread only ever waits for a memcpy.
 * The ring is allocated once at start (calloc: pages are touched only as rows arrive).
 */
#include "store/ledger.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "obs/log.h"
#include "util/clock.h"

struct ledger {
    struct store_handle store;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t wake;
    struct ledger_row *ring;
    size_t cap, head, count; /* rows [head, head+count) mod cap are queued */
    size_t batch_size;
    long linger_ms;           /* how long a short batch waits for company */
    struct ledger_row *batch; /* writer-owned */
    bool stopping;
    struct ledger_stats stats;
    uint64_t drops_logged_at; /* drops count when we last logged, to log once per burst */
    /* retention (writer side, under mu): 0 days = keep */
    double rows_days, rollups_days;
    long retain_every_ms;
    int64_t retain_next_ms; /* wall clock of the next run */
    bool retain_more;       /* the last batch was full: more is waiting */
    int64_t retain_run;     /* rows and lines deleted so far in this run */
    /* commit waits (loop side; `waiting` is also read by the writer under mu) */
    struct event *written_ev; /* activated by the writer after a commit while `waiting` */
    struct ledger_wait *waits;
    bool waiting;
};

static bool retain_due(const struct ledger *l)
{
    return l->retain_every_ms > 0 && !l->stopping &&
           (l->retain_more || clock_wall_ms() >= l->retain_next_ms);
}

/* One short delete transaction (mu held on entry and exit, released around the store).
 * Batches are small and rows queued meanwhile are written between them, so retention never
 * holds the store for long nor keeps rows waiting behind it. */
static void retain_step(struct ledger *l)
{
    int64_t now = clock_wall_ms();
    int64_t rows_before = l->rows_days > 0 ? now - (int64_t)(l->rows_days * 86400000.0) : 0;
    /* A line goes once its whole bucket (a day at most) is older than the limit. */
    int64_t lines_before =
        l->rollups_days > 0 ? now - (int64_t)(l->rollups_days * 86400000.0) - 86400000 : 0;
    pthread_mutex_unlock(&l->mu);
    char why[512];
    int64_t n = l->store.ops->retain(l->store.db, rows_before, lines_before, LEDGER_RETAIN_BATCH,
                                     why, sizeof why);
    pthread_mutex_lock(&l->mu);
    if (n >= 0) {
        l->stats.retained += (uint64_t)n;
        l->retain_run += n;
    }
    l->retain_more = n == LEDGER_RETAIN_BATCH;
    if (l->retain_more) return;
    l->retain_next_ms = now + l->retain_every_ms;
    int64_t run = l->retain_run;
    l->retain_run = 0;
    double rows_days = l->rows_days, rollups_days = l->rollups_days; /* read under mu */
    long every_s = l->retain_every_ms / 1000;
    pthread_mutex_unlock(&l->mu);
    if (n < 0)
        log_msg("error", "ledger_retention_failed", "%s (next try in %ld s)", why, every_s);
    else if (run > 0)
        log_msg("info", "ledger_retention",
                "deleted %lld rows older than %g days and rollup lines older than %g days",
                (long long)run, rows_days, rollups_days);
    pthread_mutex_lock(&l->mu);
}

/* Waits for rows (mu held), running retention when it is due. */
static void wait_for_rows(struct ledger *l)
{
    while (l->count == 0 && !l->stopping) {
        if (retain_due(l)) {
            retain_step(l);
            continue;
        }
        if (l->retain_every_ms <= 0) {
            pthread_cond_wait(&l->wake, &l->mu);
            continue;
        }
        int64_t wait_ms = l->retain_next_ms - clock_wall_ms();
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += (time_t)(wait_ms / 1000);
        until.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
        until.tv_sec += until.tv_nsec / 1000000000L;
        until.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&l->wake, &l->mu, &until);
    }
}

static void *writer(void *ud)
{
    struct ledger *l = ud;
    char why[512];
    pthread_mutex_lock(&l->mu);
    for (;;) {
        wait_for_rows(l);
        if (l->count == 0 && l->stopping) break;
        /* Group commit: a transaction costs far more than a row, so a short batch waits up
         * to linger_ms for more rows (append wakes us early when a batch fills). */
        if (l->count < l->batch_size && l->linger_ms > 0 && !l->stopping) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_nsec += l->linger_ms * 1000000L;
            until.tv_sec += until.tv_nsec / 1000000000L;
            until.tv_nsec %= 1000000000L;
            while (l->count < l->batch_size && !l->stopping &&
                   pthread_cond_timedwait(&l->wake, &l->mu, &until) == 0) {
            }
        }
        size_t n = l->count < l->batch_size ? l->count : l->batch_size;
        for (size_t i = 0; i < n; i++) l->batch[i] = l->ring[(l->head + i) % l->cap];
        pthread_mutex_unlock(&l->mu);
        int rc = l->store.ops->append(l->store.db, l->batch, n, why, sizeof why);
        pthread_mutex_lock(&l->mu);
        if (rc == 0) {
            /* Only now are they durable: drop them from the queue. */
            l->head = (l->head + n) % l->cap;
            l->count -= n;
            l->stats.written += n;
            l->stats.batches++;
            if (l->waiting) event_active(l->written_ev, 0, 0); /* thread-safe (evthread) */
            if (retain_due(l)) retain_step(l); /* under load, one delete batch per write */
            continue;
        }
        l->stats.errors++;
        pthread_mutex_unlock(&l->mu);
        log_msg("error", "ledger_write_failed", "%s (%zu rows kept queued, retrying in 1 s)", why,
                n);
        struct timespec ts = {1, 0};
        nanosleep(&ts, NULL);
        pthread_mutex_lock(&l->mu);
        if (l->stopping && l->stats.errors > 30) break; /* a store gone for good at exit */
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

struct ledger *ledger_start(struct store_handle store, size_t queue_size, size_t batch_size,
                            long linger_ms)
{
    struct ledger *l = calloc(1, sizeof *l);
    if (l == NULL) goto fail;
    l->store = store;
    l->cap = queue_size ? queue_size : 10000;
    l->batch_size = batch_size ? batch_size : 256;
    l->linger_ms = linger_ms;
    l->ring = calloc(l->cap, sizeof *l->ring);
    l->batch = calloc(l->batch_size, sizeof *l->batch);
    if (l->ring == NULL || l->batch == NULL) goto fail;
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->wake, NULL);
    if (pthread_create(&l->thread, NULL, writer, l) != 0) {
        pthread_mutex_destroy(&l->mu);
        pthread_cond_destroy(&l->wake);
        goto fail;
    }
    return l;
fail:
    if (l) {
        free(l->ring);
        free(l->batch);
        free(l);
    }
    store_close(&store);
    return NULL;
}

void ledger_retain(struct ledger *l, double rows_days, double rollups_days, long every_ms,
                   long first_ms)
{
    pthread_mutex_lock(&l->mu);
    l->rows_days = rows_days;
    l->rollups_days = rollups_days;
    l->retain_every_ms = rows_days > 0 || rollups_days > 0 ? every_ms : 0;
    l->retain_next_ms = clock_wall_ms() + first_ms;
    pthread_cond_signal(&l->wake); /* an idle writer recomputes its wait */
    pthread_mutex_unlock(&l->mu);
}

int ledger_append(struct ledger *l, const struct ledger_row *row, uint64_t *seq)
{
    if (seq) *seq = 0;
    pthread_mutex_lock(&l->mu);
    if (l->count == l->cap) {
        l->stats.dropped++;
        uint64_t dropped = l->stats.dropped;
        bool say = dropped == 1 || dropped - l->drops_logged_at >= 1000;
        if (say) l->drops_logged_at = dropped;
        pthread_mutex_unlock(&l->mu);
        if (say)
            log_msg("error", "ledger_queue_full",
                    "ledger queue full (%zu rows): request %s not recorded; %llu dropped so far",
                    l->cap, row->request_id, (unsigned long long)dropped);
        return -1;
    }
    l->ring[(l->head + l->count) % l->cap] = *row;
    l->count++;
    l->stats.appended++;
    if (seq) *seq = l->stats.appended;
    /* Wake the writer when it may be idle (first row) or a batch is full; between, it is
     * lingering on a timer and a wake-up per row would cost more than the row. */
    if (l->count == 1 || l->count == l->batch_size) pthread_cond_signal(&l->wake);
    pthread_mutex_unlock(&l->mu);
    return 0;
}

void ledger_stats(struct ledger *l, struct ledger_stats *out)
{
    pthread_mutex_lock(&l->mu);
    *out = l->stats;
    out->queued = l->count;
    pthread_mutex_unlock(&l->mu);
}

void ledger_stop(struct ledger *l)
{
    if (l == NULL) return;
    pthread_mutex_lock(&l->mu);
    l->stopping = true;
    pthread_cond_signal(&l->wake);
    pthread_mutex_unlock(&l->mu);
    pthread_join(l->thread, NULL);
    if (l->count > 0)
        log_msg("error", "ledger_unwritten", "%zu ledger rows could not be written at exit",
                l->count);
    store_close(&l->store);
    if (l->written_ev) event_free(l->written_ev);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->wake);
    free(l->ring);
    free(l->batch);
    free(l);
}

/* ---- commit waits ------------------------------------------------------------------------ */

static void unlink_wait(struct ledger_wait *w)
{
    if (w->prev == NULL) return;
    *w->prev = w->next;
    if (w->next) w->next->prev = w->prev;
    w->prev = NULL;
    w->next = NULL;
}

static void on_written(evutil_socket_t fd, short what, void *ud)
{
    struct ledger *l = ud;
    (void)fd;
    (void)what;
    pthread_mutex_lock(&l->mu);
    uint64_t written = l->stats.written;
    pthread_mutex_unlock(&l->mu);
    for (struct ledger_wait *w = l->waits, *next; w; w = next) {
        next = w->next;
        if (w->seq > written) continue;
        unlink_wait(w);
        w->written(w->ud); /* may cancel or free other waits: `next` was read first */
    }
    pthread_mutex_lock(&l->mu);
    l->waiting = l->waits != NULL;
    pthread_mutex_unlock(&l->mu);
}

int ledger_watch(struct ledger *l, struct event_base *loop)
{
    l->written_ev = event_new(loop, -1, 0, on_written, l);
    return l->written_ev ? 0 : -1;
}

void ledger_when_written(struct ledger *l, uint64_t seq, struct ledger_wait *w,
                         void (*written)(void *ud), void *ud)
{
    pthread_mutex_lock(&l->mu);
    bool done = l->stats.written >= seq;
    if (!done) l->waiting = true;
    pthread_mutex_unlock(&l->mu);
    if (done || l->written_ev == NULL) {
        written(ud);
        return;
    }
    *w = (struct ledger_wait){.seq = seq, .written = written, .ud = ud};
    w->next = l->waits;
    w->prev = &l->waits;
    if (l->waits) l->waits->prev = &w->next;
    l->waits = w;
}

void ledger_wait_cancel(struct ledger_wait *w)
{
    if (w) unlink_wait(w);
}
