/*
 * err — a failure a user can read: the HTTP status to answer with, the OpenAI error
 * `type`/`code`, and a printf-formatted message. Every function in stratus that can fail
 * fills one of these and returns -1 (or NULL), so the API layer can render
 * {"error":{...}} without guessing. `msg` never holds secrets or raw upstream bodies.
 * Thread: any; an err is owned by whoever declared it (usually on the stack).
 */
#ifndef STRATUS_ERR_H
#define STRATUS_ERR_H

#include <stdarg.h>

#define STRATUS_AGAIN (-2) /* parsers: need more bytes */

struct err {
    int status;        /* HTTP status to send: 400, 404, 413, 502 ... (0 = unset) */
    const char *type;  /* OpenAI error.type, static string */
    const char *code;  /* OpenAI error.code, static string or NULL */
    const char *param; /* OpenAI error.param (offending field), static or NULL */
    char msg[512];     /* user-facing text */
};

/** Fills `e` (may be NULL) and returns -1, so callers can `return err_set(...)`. */
int err_set(struct err *e, int status, const char *type, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/** err_set with a va_list, for error builders of their own. Returns -1. */
int err_vset(struct err *e, int status, const char *type, const char *code, const char *fmt,
             va_list ap) __attribute__((format(printf, 5, 0)));

/** Like err_set, but also names the offending request field (`param`, static string). */
int err_param(struct err *e, int status, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/** 500 "out of memory" — the request fails, the daemon goes on. Returns -1. */
int err_oom(struct err *e);

/** Clears `e` to the unset state. */
void err_clear(struct err *e);

#endif
