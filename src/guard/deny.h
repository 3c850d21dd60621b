/*
 * guard/deny — the `guards.input.deny` rules as one matcher: which rule, if any, refuses a
 * text.
 *
 * Hyperscan prefilters, PCRE2 decides. All rules are compiled into one Hyperscan database in
 * prefilter mode, so one pass over a text flags the rules that may match (prefilter mode may
 * flag too many, never too few); only the flagged rules then run their PCRE2 pattern. A rule
 * Hyperscan cannot take even as a prefilter (\K, recursion, callouts, a pattern that matches
 * the empty text, ...) runs with PCRE2 on every text. The answer is always PCRE2's: the same
 * rule as running every rule's PCRE2 pattern in order, the first that matches.
 *
 * Texts must be valid UTF-8 (the request model's checked scan guarantees it): Hyperscan's
 * UTF-8 mode, which mirrors the rules' PCRE2_UTF, does not define what it finds in anything
 * else.
 *
 * Thread: deny_match on one thread at a time (one Hyperscan scratch, one PCRE2 match data):
 * the event-loop thread.
 */
#ifndef STRATUS_GUARD_DENY_H
#define STRATUS_GUARD_DENY_H

#include <stddef.h>

#include "config/config.h"
#include "util/err.h"

struct deny;

/**
 * Compiles `rules` (borrowed; must outlive the matcher) into one prefilter database.
 * A rule Hyperscan refuses is not an error: it is run with PCRE2 alone (deny_unfiltered).
 * @return an *owned* matcher (n >= 1), or NULL with `err` (500, out of memory).
 */
struct deny *deny_new(const struct guard_rule *rules, size_t n, struct err *err);

/** NULL-safe. */
void deny_free(struct deny *d);

/**
 * The first rule (in configured order) whose PCRE2 pattern matches t[0..n).
 * @return its index in `rules`, or -1 when none does.
 */
long deny_match(struct deny *d, const char *t, size_t n);

/** How many rules run with PCRE2 on every text, because Hyperscan could not take them. */
size_t deny_n_unfiltered(const struct deny *d);

/**
 * The i-th of those (i < deny_n_unfiltered), in configured order.
 * @param why  set to Hyperscan's reason (*borrowed* from the matcher), e.g. "\K at index 0
 *             not supported."
 * @return the rule's index in `rules`.
 */
size_t deny_unfiltered(const struct deny *d, size_t i, const char **why);

#endif
