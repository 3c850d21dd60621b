/*
 * DESIGN: the one place that knows which stores exist (like providers/registry.c). The SQL
 * every store shares is in schema.{h,c}.
 */
#include "store/store.h"

#include <stdio.h>
#include <string.h>

int store_open(const char *url, const char *base_dir, struct store_handle *out, char *why,
               size_t size)
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
        out->ops = &store_postgres;
    } else {
        snprintf(why, size, "store.url %s: unsupported scheme (sqlite://PATH or postgres://...)",
                 url);
        return -1;
    }
    out->db = out->ops->open(target, why, size);
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
