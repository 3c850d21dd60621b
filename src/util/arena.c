/*
 * DESIGN: chunks form a singly linked list; a request that fits in the first chunk costs one
 * malloc. Large allocations get a chunk of their own so they don't waste the current one.
 */
#include "util/arena.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ALIGN 16

struct chunk {
    struct chunk *next;
    size_t size;
    size_t used;
    _Alignas(ALIGN) unsigned char data[];
};

struct cleanup {
    struct cleanup *next;
    arena_cleanup_cb cb;
    void *ud;
};

struct arena {
    struct chunk *head;
    struct cleanup *cleanups;
    size_t chunk_size;
};

static struct chunk *chunk_new(size_t size)
{
    struct chunk *c = malloc(sizeof *c + size);
    if (c == NULL) return NULL;
    c->next = NULL;
    c->size = size;
    c->used = 0;
    return c;
}

struct arena *arena_new(size_t first_chunk)
{
    if (first_chunk < 256) first_chunk = 256;
    struct arena *a = malloc(sizeof *a);
    if (a == NULL) return NULL;
    a->cleanups = NULL;
    a->chunk_size = first_chunk;
    a->head = chunk_new(first_chunk);
    if (a->head == NULL) {
        free(a);
        return NULL;
    }
    return a;
}

void *arena_alloc(struct arena *a, size_t size)
{
    size_t need = (size + ALIGN - 1) & ~(size_t)(ALIGN - 1);
    if (need < size) return NULL;
    struct chunk *c = a->head;
    if (c->size - c->used >= need) {
        void *p = c->data + c->used;
        c->used += need;
        return p;
    }
    if (need > a->chunk_size / 2) {
        /* Big block: its own chunk, linked behind the current one so the head stays usable. */
        struct chunk *big = chunk_new(need);
        if (big == NULL) return NULL;
        big->used = need;
        big->next = c->next;
        c->next = big;
        return big->data;
    }
    if (a->chunk_size < (1u << 20)) a->chunk_size *= 2;
    struct chunk *fresh = chunk_new(a->chunk_size);
    if (fresh == NULL) return NULL;
    fresh->next = c;
    a->head = fresh;
    fresh->used = need;
    return fresh->data;
}

void *arena_calloc(struct arena *a, size_t n, size_t size)
{
    if (size != 0 && n > SIZE_MAX / size) return NULL;
    void *p = arena_alloc(a, n * size);
    if (p) memset(p, 0, n * size);
    return p;
}

char *arena_strndup(struct arena *a, const char *s, size_t n)
{
    char *p = arena_alloc(a, n + 1);
    if (p == NULL) return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *arena_strdup(struct arena *a, const char *s)
{
    return arena_strndup(a, s, strlen(s));
}

char *arena_printf(struct arena *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return NULL;
    char *p = arena_alloc(a, (size_t)n + 1);
    if (p == NULL) return NULL;
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

int arena_on_free(struct arena *a, arena_cleanup_cb cb, void *ud)
{
    struct cleanup *c = arena_alloc(a, sizeof *c);
    if (c == NULL) return -1;
    c->cb = cb;
    c->ud = ud;
    c->next = a->cleanups;
    a->cleanups = c;
    return 0;
}

void arena_free(struct arena *a)
{
    if (a == NULL) return;
    /* Cleanups live inside the chunks, so run them all before releasing memory. */
    for (struct cleanup *c = a->cleanups; c; c = c->next) c->cb(c->ud);
    struct chunk *c = a->head;
    while (c) {
        struct chunk *next = c->next;
        free(c);
        c = next;
    }
    free(a);
}
