/*
 * DESIGN: logging is on the request path, so it builds into a stack buffer and does one
 * write(2) per line; stderr is unbuffered and a single write keeps lines whole.
 */
#include "obs/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static void append(struct log_line *l, const char *s, size_t n)
{
    size_t room = sizeof l->buf - 2 - l->len; /* keep space for "}\n" */
    if (n > room) {
        n = room;
        l->truncated = true;
    }
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

size_t json_escape(char *buf, size_t cap, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t out = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char tmp[7];
        size_t k = 0;
        if (c == '"' || c == '\\') {
            tmp[k++] = '\\';
            tmp[k++] = (char)c;
        } else if (c == '\n') {
            tmp[k++] = '\\';
            tmp[k++] = 'n';
        } else if (c == '\r') {
            tmp[k++] = '\\';
            tmp[k++] = 'r';
        } else if (c == '\t') {
            tmp[k++] = '\\';
            tmp[k++] = 't';
        } else if (c < 0x20 || c == 0x7f) {
            memcpy(tmp, "\\u00", 4);
            tmp[4] = hex[c >> 4];
            tmp[5] = hex[c & 15];
            k = 6;
        } else {
            tmp[k++] = (char)c;
        }
        for (size_t j = 0; j < k; j++, out++)
            if (out + 1 < cap) buf[out] = tmp[j];
    }
    if (cap) buf[out < cap ? out : cap - 1] = '\0';
    return out;
}

static void key(struct log_line *l, const char *k)
{
    append(l, ",\"", 2);
    append(l, k, strlen(k));
    append(l, "\":", 2);
}

void log_begin(struct log_line *l, const char *level, const char *event)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    l->truncated = false;
    l->len = (size_t)snprintf(l->buf, sizeof l->buf,
                              "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\"", tm.tm_year + 1900,
                              tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                              (long)(tv.tv_usec / 1000));
    log_str(l, "level", level);
    log_str(l, "event", event);
}

void log_strn(struct log_line *l, const char *k, const char *v, size_t n)
{
    key(l, k);
    if (v == NULL) {
        append(l, "null", 4);
        return;
    }
    char tmp[1024];
    if (n > 256) n = 256; /* a log line is not the place for whole payloads */
    size_t w = json_escape(tmp, sizeof tmp, v, n);
    if (w >= sizeof tmp) w = sizeof tmp - 1;
    append(l, "\"", 1);
    append(l, tmp, w);
    append(l, "\"", 1);
}

void log_str(struct log_line *l, const char *k, const char *v)
{
    log_strn(l, k, v, v ? strlen(v) : 0);
}

void log_int(struct log_line *l, const char *k, long long v)
{
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "%lld", v);
    key(l, k);
    append(l, tmp, (size_t)n);
}

void log_ms(struct log_line *l, const char *k, double v)
{
    if (v < 0) {
        log_null(l, k);
        return;
    }
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "%.3f", v);
    key(l, k);
    append(l, tmp, (size_t)n);
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
    key(l, k);
    append(l, json, strlen(json));
}

void log_end(struct log_line *l)
{
    l->buf[l->len++] = '}';
    l->buf[l->len++] = '\n';
    const char *p = l->buf;
    size_t left = l->len;
    while (left > 0) {
        ssize_t w = write(STDERR_FILENO, p, left);
        if (w <= 0) break; /* nowhere to report a failing stderr */
        p += w;
        left -= (size_t)w;
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
