/*
 * api/dashboard_assets — the dashboard's files, compiled into the binary.
 *
 * The table is generated at build time from web/dashboard/ (scripts/embed-assets, run by
 * the Makefile into build/gen/dashboard_assets.c): each file's bytes, the same bytes
 * gzip -9 compressed (served when the browser accepts gzip: nothing is compressed per
 * request), its content type and a strong ETag from its SHA-256.
 * Ownership: static storage, read-only; any thread.
 */
#ifndef STRATUS_API_DASHBOARD_ASSETS_H
#define STRATUS_API_DASHBOARD_ASSETS_H

#include <stddef.h>

struct dashboard_asset {
    const char *name;         /* file name: "index.html", "dashboard.js", ... */
    const char *content_type; /* "text/html; charset=utf-8", ... */
    const char *etag;         /* quoted: "\"0123456789abcdef\"" */
    const unsigned char *body;
    size_t len;
    const unsigned char *gz; /* gzip of body */
    size_t gz_len;
};

extern const struct dashboard_asset dashboard_assets[];
extern const size_t dashboard_n_assets;

#endif
