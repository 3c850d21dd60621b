/*
 * prices — the price catalogue (config/prices.yaml): USD per 1M tokens for input, output and
 * cached input, per model name, with the date the list was made.
 *
 * Lookup is by the name a target sends upstream: exact; then without a Bedrock
 * cross-region prefix ("us.", "eu.", "apac.", "global."); then the longest catalogue entry
 * the name starts with, followed by '-', '@' or ':' (dated snapshots, version suffixes).
 *
 * Ownership: prices_load() returns an owned catalogue (prices_free). Immutable after load:
 * any thread may read it.
 */
#ifndef STRATUS_PRICES_H
#define STRATUS_PRICES_H

#include <stdbool.h>
#include <stddef.h>

struct model_price {
    char *model;
    double input, output;
    double cached_input; /* equals input when the catalogue gives none */
};

struct price_catalogue {
    char *path;
    char *date; /* "2026-11-24" */
    struct model_price *items;
    size_t n;
};

/** Loads `path`. @return the catalogue, or NULL with "PATH:LINE:COL: message" in `why`. */
struct price_catalogue *prices_load(const char *path, char *why, size_t why_size);

/** Same, from text in memory; `name` names it in errors. */
struct price_catalogue *prices_load_string(const char *text, size_t len, const char *name,
                                           char *why, size_t why_size);

/** The catalogue compiled into the binary (config/prices.yaml at build time). */
extern const char prices_builtin[];
extern const size_t prices_builtin_len;

/** @return the entry for `model`, or NULL when it has no known price. Borrowed. */
const struct model_price *prices_lookup(const struct price_catalogue *c, const char *model);

/** NULL-safe. */
void prices_free(struct price_catalogue *c);

#endif
