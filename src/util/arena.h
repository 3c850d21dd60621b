/*
 * arena — a per-request bump allocator with cleanup hooks.
 *
 * Everything a request allocates comes from its arena and is released at once by
 * arena_free(), so a client that disconnects mid-way frees everything in one place.
 * Non-arena resources (a json_t, a CURL handle) register a cleanup with arena_on_free();
 * cleanups run last-in first-out. Thread: an arena belongs to one thread at a time.
 */
#ifndef STRATUS_ARENA_H
#define STRATUS_ARENA_H

#include <stddef.h>

struct arena;

typedef void (*arena_cleanup_cb)(void *ud);

/** @return an *owned* arena whose first chunk holds `first_chunk` bytes, or NULL (OOM). */
struct arena *arena_new(size_t first_chunk);

/** @return `size` bytes aligned for any type, *arena*-owned; NULL when out of memory. */
void *arena_alloc(struct arena *a, size_t size);

/** Zeroed arena_alloc of n*size (overflow-checked). */
void *arena_calloc(struct arena *a, size_t n, size_t size);

/** Copies `n` bytes of `s` and a terminating NUL. NULL on OOM. */
char *arena_strndup(struct arena *a, const char *s, size_t n);
char *arena_strdup(struct arena *a, const char *s);

/** printf into the arena. NULL on OOM. */
char *arena_printf(struct arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/** Registers `cb(ud)` to run in arena_free(). @return 0, or -1 on OOM (cb not registered). */
int arena_on_free(struct arena *a, arena_cleanup_cb cb, void *ud);

/** Runs the cleanups (LIFO) and releases all memory. NULL-safe. */
void arena_free(struct arena *a);

#endif
