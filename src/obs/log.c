/*
 * DESIGN: logging is on the request path, so a line is built in a stack buffer without
 * printf (the timestamp's date part is formatted once per second) and lines are written
 * whole. On the event-loop thread lines are batched: everything logged during one loop turn
 * leaves in one write(2) when the turn's callbacks are done, so a busy gateway does not pay
 * a syscall per request for its access log. Other threads write line by line.
 */
#include "obs/log.h"

#include <event2/event.h>
#include <event2/event_struct.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "util/clock.h"
#include "util/json_text.h"

/* Room left in the line, keeping space for "}\n". */
static size_t room_of(const struct log_line *l)
{
    return sizeof l->buf - 2 - l->len;
}

/* Whole pieces only, and nothing after the first that does not fit: a full line is cut
 * between fields, never inside one, so it still parses. */
static void append(struct log_line *l, const char *s, size_t n)
{
    if (l->truncated || n > room_of(l)) {
        l->truncated = true;
        return;
    }
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

/* Room a key keeps for its value: any number, null, or a string cut short (log_strn). */
#define VALUE_RESERVE 48

/* ,"k": — only with room for a value after it; else the line ends here (truncated). */
static bool key(struct log_line *l, const char *k)
{
    size_t n = strlen(k);
    if (l->truncated || n + 4 + VALUE_RESERVE > room_of(l)) {
        l->truncated = true;
        return false;
    }
    append(l, ",\"", 2);
    append(l, k, n);
    append(l, "\":", 2);
    return true;
}

static size_t format_ll(char *out, long long v)
{
    char tmp[24];
    size_t n = 0;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    size_t k = 0;
    if (v < 0) out[k++] = '-';
    while (n) out[k++] = tmp[--n];
    return k;
}

void log_begin(struct log_line *l, const char *level, const char *event)
{
    static _Thread_local time_t cached_sec = -1;
    static _Thread_local char cached[32]; /* "{"ts":"2026-11-24T00:00:00" */
    static _Thread_local size_t cached_len;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (ts.tv_sec != cached_sec) {
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        cached_len = (size_t)snprintf(cached, sizeof cached,
                                      "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900,
                                      tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        cached_sec = ts.tv_sec;
    }
    long ms = ts.tv_nsec / 1000000;
    l->truncated = false;
    memcpy(l->buf, cached, cached_len);
    l->len = cached_len;
    char frac[6] = {
        '.', (char)('0' + ms / 100), (char)('0' + ms / 10 % 10), (char)('0' + ms % 10), 'Z', '"'};
    memcpy(l->buf + l->len, frac, sizeof frac);
    l->len += sizeof frac;
    log_str(l, "level", level);
    log_str(l, "event", event);
}

void log_strn(struct log_line *l, const char *k, const char *v, size_t n)
{
    if (!key(l, k)) return;
    if (v == NULL) {
        append(l, "null", 4);
        return;
    }
    char tmp[256 * 6 + 1]; /* every byte escapes to at most 6 */
    if (n > 256) n = 256;  /* a log line is not the place for whole payloads */
    /* What is left of the line less the quotes (key() kept at least VALUE_RESERVE): a value
     * cut short still ends in its quote. */
    size_t cap = room_of(l) - 1;
    if (cap > sizeof tmp) cap = sizeof tmp;
    size_t w = json_escape(tmp, cap, v, n);
    bool cut = w >= cap;
    if (cut) w = strlen(tmp);
    append(l, "\"", 1);
    append(l, tmp, w);
    append(l, "\"", 1);
    if (cut) l->truncated = true; /* the line is full: nothing more after this value */
}

void log_str(struct log_line *l, const char *k, const char *v)
{
    log_strn(l, k, v, v ? strlen(v) : 0);
}

void log_int(struct log_line *l, const char *k, long long v)
{
    char tmp[24];
    size_t n = format_ll(tmp, v);
    key(l, k);
    append(l, tmp, n);
}

void log_double(struct log_line *l, const char *k, double v)
{
    char tmp[40];
    int n = snprintf(tmp, sizeof tmp, "%.10g", v);
    key(l, k);
    append(l, tmp, (size_t)n);
}

void log_ms(struct log_line *l, const char *k, double v)
{
    if (v < 0) {
        log_null(l, k);
        return;
    }
    long long us = (long long)(v * 1000.0 + 0.5);
    char tmp[32];
    size_t n = format_ll(tmp, us / 1000);
    tmp[n++] = '.';
    tmp[n++] = (char)('0' + us % 1000 / 100);
    tmp[n++] = (char)('0' + us % 100 / 10);
    tmp[n++] = (char)('0' + us % 10);
    key(l, k);
    append(l, tmp, n);
}

void log_bool(struct log_line *l, const char *k, bool v)
{
    key(l, k);
    append(l, v ? "true" : "false", v ? 4 : 5);
}

void log_null(struct log_line *l, const char *k)
{
    key(l, k);
    append(l, "null", 4);
}

void log_raw(struct log_line *l, const char *k, const char *json)
{
    if (!key(l, k)) return;
    size_t n = strlen(json);
    if (n > room_of(l)) { /* the value whole or null: never a cut JSON text */
        json = "null";
        n = 4;
    }
    append(l, json, n);
}

static void write_all(const char *p, size_t left)
{
    while (left > 0) {
        ssize_t w = write(STDERR_FILENO, p, left);
        if (w <= 0) break; /* nowhere to report a failing stderr */
        p += w;
        left -= (size_t)w;
    }
}

#define BATCH_MAX (64 * 1024)

struct batch {
    struct event flush;
    char *buf;
    size_t len;
    bool armed;
};

static _Thread_local struct batch *batch;

static void batch_flush(evutil_socket_t fd, short what, void *ud)
{
    struct batch *b = ud;
    (void)fd;
    (void)what;
    b->armed = false;
    write_all(b->buf, b->len);
    b->len = 0;
}

int log_batch_start(struct event_base *loop)
{
    struct batch *b = calloc(1, sizeof *b);
    if (b == NULL || (b->buf = malloc(BATCH_MAX)) == NULL) {
        free(b);
        return -1;
    }
    event_assign(&b->flush, loop, -1, 0, batch_flush, b);
    batch = b;
    return 0;
}

void log_batch_stop(void)
{
    struct batch *b = batch;
    if (b == NULL) return;
    batch = NULL;
    if (b->armed) event_del(&b->flush);
    write_all(b->buf, b->len);
    free(b->buf);
    free(b);
}

void log_end(struct log_line *l)
{
    l->buf[l->len++] = '}';
    l->buf[l->len++] = '\n';
    struct batch *b = batch;
    if (b == NULL) {
        write_all(l->buf, l->len);
        return;
    }
    if (b->len + l->len > BATCH_MAX) batch_flush(-1, 0, b);
    memcpy(b->buf + b->len, l->buf, l->len);
    b->len += l->len;
    if (!b->armed) {
        b->armed = true;
        event_active(&b->flush, EV_TIMEOUT, 0);
    }
}

void log_msg(const char *level, const char *event, const char *fmt, ...)
{
    struct log_line l;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    log_begin(&l, level, event);
    log_str(&l, "message", msg);
    log_end(&l);
}

bool log_rate_allow(struct log_rate *r, unsigned per_second, uint64_t now_ns,
                    unsigned long *suppressed)
{
    if (r->window_start_ns == 0 || now_ns - r->window_start_ns >= 1000000000u) {
        r->window_start_ns = now_ns;
        r->used = 0;
    }
    if (r->used >= per_second) {
        r->suppressed++;
        return false;
    }
    r->used++;
    if (suppressed) *suppressed = r->suppressed;
    r->suppressed = 0;
    return true;
}

/* libevent's log callback takes no user data, so its limiter has to live at file scope; the
 * mutex is there because libevent may log from any thread that touches it. */
static struct {
    pthread_mutex_t lock;
    struct log_rate rate;
    unsigned per_second;
} libevent_log = {.lock = PTHREAD_MUTEX_INITIALIZER};

static const char *libevent_level(int severity)
{
    switch (severity) {
    case EVENT_LOG_DEBUG:
        return "debug";
    case EVENT_LOG_MSG:
        return "info";
    case EVENT_LOG_WARN:
        return "warn";
    default:
        return "error";
    }
}

static void on_libevent_log(int severity, const char *msg)
{
    unsigned long dropped = 0;
    pthread_mutex_lock(&libevent_log.lock);
    bool allow =
        log_rate_allow(&libevent_log.rate, libevent_log.per_second, clock_now_ns(), &dropped);
    pthread_mutex_unlock(&libevent_log.lock);
    if (!allow) return;
    struct log_line l;
    log_begin(&l, libevent_level(severity), "libevent");
    log_str(&l, "message", msg);
    if (dropped) log_int(&l, "suppressed", (long long)dropped);
    /* Written at once, not batched: libevent forbids calling into it from this callback, and
     * the batch would (event_active). */
    l.buf[l.len++] = '}';
    l.buf[l.len++] = '\n';
    write_all(l.buf, l.len);
}

void log_capture_libevent(unsigned per_second)
{
    libevent_log.per_second = per_second;
    event_set_log_callback(on_libevent_log);
}
