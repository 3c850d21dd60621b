/*
 * DESIGN: the one place that knows which stores exist (like providers/registry.c). The SQL
 * every store shares is in schema.{h,c}.
 */
#include "store/store.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* Appends `password` to a postgres URL as its `password` parameter (libpq's URI form,
 * which wins over one in the URL's userinfo), percent-encoded. @return 0, or -1 too long. */
static int with_password(char *target, size_t size, const char *password)
{
    size_t n = strlen(target);
    int w = snprintf(target + n, size - n, "%cpassword=", strchr(target, '?') ? '&' : '?');
    if (w < 0 || (size_t)w >= size - n) return -1;
    n += (size_t)w;
    for (const unsigned char *p = (const unsigned char *)password; *p; p++) {
        bool plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                     (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.' || *p == '~';
        if (n + 4 >= size) return -1;
        n += (size_t)(plain ? snprintf(target + n, size - n, "%c", *p)
                            : snprintf(target + n, size - n, "%%%02X", *p));
    }
    return 0;
}

int store_open(const char *url, const char *base_dir, const char *password,
               struct store_handle *out, char *why, size_t size)
{
    memset(out, 0, sizeof *out);
    char target[2048];
    if (strncmp(url, "sqlite://", 9) == 0) {
        const char *path = url + 9;
        if (path[0] == '\0') {
            snprintf(why, size, "store.url %s: no file name", url);
            return -1;
        }
        if (path[0] == '/' || strcmp(path, ":memory:") == 0 || base_dir == NULL)
            snprintf(target, sizeof target, "%s", path);
        else
            snprintf(target, sizeof target, "%s/%s", base_dir, path);
        out->ops = &store_sqlite;
    } else if (strncmp(url, "postgres://", 11) == 0 || strncmp(url, "postgresql://", 13) == 0) {
        snprintf(target, sizeof target, "%s", url);
        if (password && with_password(target, sizeof target, password) != 0) {
            explicit_bzero(target, sizeof target);
            snprintf(why, size, "store.url with its password is longer than %zu bytes",
                     sizeof target);
            return -1;
        }
        out->ops = &store_postgres;
    } else {
        snprintf(why, size, "store.url %s: unsupported scheme (sqlite://PATH or postgres://...)",
                 url);
        return -1;
    }
    out->db = out->ops->open(target, why, size);
    explicit_bzero(target, sizeof target);
    return out->db ? 0 : -1;
}

void store_close(struct store_handle *h)
{
    if (h && h->ops && h->db) h->ops->close(h->db);
    if (h) h->db = NULL;
}

static const char *const group_names[] = {"model", "key", "team", "customer", "backend", "route"};

int spend_group_parse(const char *s)
{
    for (int i = 0; s && i < (int)(sizeof group_names / sizeof group_names[0]); i++)
        if (strcmp(s, group_names[i]) == 0) return i;
    return -1;
}

const char *spend_group_name(enum spend_group g)
{
    return (unsigned)g < sizeof group_names / sizeof group_names[0] ? group_names[g] : "?";
}
