/*
 * DESIGN: errors are values (struct err) rather than errno-style globals so that one
 * request's failure can travel from a provider callback to the API writer intact.
 */
#include "util/err.h"

#include <stdio.h>
#include <string.h>

static void vset(struct err *e, const char *fmt, va_list ap)
{
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
}

int err_set(struct err *e, int status, const char *type, const char *code, const char *fmt, ...)
{
    if (e == NULL) return -1;
    e->status = status;
    e->type = type;
    e->code = code;
    e->param = NULL;
    va_list ap;
    va_start(ap, fmt);
    vset(e, fmt, ap);
    va_end(ap);
    return -1;
}

int err_vset(struct err *e, int status, const char *type, const char *code, const char *fmt,
             va_list ap)
{
    if (e == NULL) return -1;
    e->status = status;
    e->type = type;
    e->code = code;
    e->param = NULL;
    vset(e, fmt, ap);
    return -1;
}

int err_param(struct err *e, int status, const char *param, const char *fmt, ...)
{
    if (e == NULL) return -1;
    e->status = status;
    e->type = "invalid_request_error";
    e->code = status == 404 ? "model_not_found" : "invalid_value";
    e->param = param;
    va_list ap;
    va_start(ap, fmt);
    vset(e, fmt, ap);
    va_end(ap);
    return -1;
}

int err_oom(struct err *e)
{
    return err_set(e, 500, "server_error", "out_of_memory", "out of memory");
}

void err_clear(struct err *e)
{
    memset(e, 0, sizeof *e);
}
