/*
 * DESIGN
 * Running each rule's PCRE2 pattern over a text costs one pass per rule (20 rules over 4 KB
 * were 18-25 us); a single PCRE2 alternation was slower still, because case-insensitive
 * rules leave no character to skip on. IDS engines answer this with a multi-pattern
 * automaton that reads the text once for all rules, and Hyperscan is that automaton: here
 * in prefilter mode (HS_FLAG_PREFILTER), which also accepts constructs it cannot match
 * exactly (back-references, look-around) by widening them, so what it reports is a superset
 * of the rules that match. HS_FLAG_SINGLEMATCH stops a rule's reports after its first one.
 *
 * PCRE2 keeps the last word: it checks each flagged rule in configured order, together with
 * the rules Hyperscan refused (which run on every text), and the first that matches is the
 * answer — the same rule as PCRE2 alone over all rules, only with the sure misses skipped.
 * Rule syntax stays PCRE2's too: config/ compiled each pattern with PCRE2 first, so a rule
 * Hyperscan reads differently is one it refuses (a PCRE2 option or newline convention with
 * no Hyperscan flag, a NUL byte its C-string API would cut at), never one it narrows.
 *
 * The database is compiled once, at start; a rule it refuses is taken out and the rest
 * compiled again, so one odd rule does not cost every rule its prefilter.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "guard/deny.h"

#include <hs.h>
#include <limits.h>
#include <pcre2.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WHY_MAX 120 /* Hyperscan's reasons are one short sentence */

struct unfiltered {
    size_t rule;
    char why[WHY_MAX];
};

struct deny {
    const struct guard_rule *rules; /* borrowed from the config */
    size_t n;
    pcre2_match_data *md;   /* owned */
    hs_database_t *db;      /* owned; NULL when Hyperscan took no rule */
    hs_scratch_t *scratch;  /* owned; one scan at a time */
    struct unfiltered *unf; /* owned; ascending rule order */
    size_t n_unf;
    unsigned *hits; /* owned; n slots: rules flagged by the current scan */
    size_t n_hits;
};

/* The options PCRE2 was compiled with, as Hyperscan flags; options written in the pattern
 * ((?i), (*UTF)) Hyperscan reads there itself. An option with no counterpart (extended,
 * anchored, dollar-endonly, ...) the prefilter could not mirror. */
static bool hs_flags_for(const struct guard_rule *r, unsigned *flags, const char **why)
{
    static const struct {
        uint32_t pcre2;
        unsigned hs;
    } map[] = {
        {PCRE2_UTF, HS_FLAG_UTF8},
        {PCRE2_MATCH_INVALID_UTF, HS_FLAG_UTF8}, /* texts are valid UTF-8: no difference */
        {PCRE2_CASELESS, HS_FLAG_CASELESS},
        {PCRE2_DOTALL, HS_FLAG_DOTALL},
        {PCRE2_MULTILINE, HS_FLAG_MULTILINE},
        {PCRE2_UCP, HS_FLAG_UCP},
    };
    uint32_t opts = 0, nl = 0;
    *flags = HS_FLAG_PREFILTER | HS_FLAG_SINGLEMATCH;
    if (strlen(r->pattern) != r->pattern_len) {
        *why = "the pattern holds a NUL byte";
        return false;
    }
    pcre2_pattern_info(r->code, PCRE2_INFO_ARGOPTIONS, &opts);
    pcre2_pattern_info(r->code, PCRE2_INFO_NEWLINE, &nl);
    if (nl != PCRE2_NEWLINE_LF) {
        *why = "a newline convention other than LF";
        return false;
    }
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (opts & map[i].pcre2) {
            *flags |= map[i].hs;
            opts &= ~map[i].pcre2;
        }
    if (opts != 0) {
        *why = "a PCRE2 option Hyperscan has no flag for";
        return false;
    }
    return true;
}

static void set_why(char *dst, size_t size, const char *why)
{
    snprintf(dst, size, "%s", why);
}

/* Compiles the rules still marked `in_db`; a rule Hyperscan refuses loses its mark and gets
 * the reason, and the rest are tried again. */
static int compile_db(struct deny *d, bool *in_db, char (*why)[WHY_MAX], struct err *err)
{
    int rc = -1;
    const char **exprs = calloc(d->n, sizeof *exprs);
    unsigned *flags = calloc(d->n, sizeof *flags), *fl = calloc(d->n, sizeof *fl),
             *ids = calloc(d->n, sizeof *ids); /* exprs, fl, ids: the rules still in, packed */
    if (exprs == NULL || flags == NULL || fl == NULL || ids == NULL) {
        err_oom(err);
        goto out;
    }
    for (size_t i = 0; i < d->n; i++) {
        const char *w = NULL;
        if (in_db[i] && !hs_flags_for(&d->rules[i], &flags[i], &w)) {
            in_db[i] = false;
            set_why(why[i], sizeof why[i], w);
        }
    }
    for (;;) {
        unsigned k = 0;
        for (size_t i = 0; i < d->n; i++)
            if (in_db[i]) {
                exprs[k] = d->rules[i].pattern;
                fl[k] = flags[i];
                ids[k++] = (unsigned)i;
            }
        if (k == 0) break;
        hs_compile_error_t *ce = NULL;
        if (hs_compile_multi(exprs, fl, ids, k, HS_MODE_BLOCK, NULL, &d->db, &ce) == HS_SUCCESS)
            break;
        d->db = NULL;
        const char *msg = ce ? ce->message : "the Hyperscan compiler failed";
        if (ce && ce->expression >= 0 && (unsigned)ce->expression < k) {
            size_t r = ids[ce->expression];
            in_db[r] = false;
            set_why(why[r], sizeof why[r], msg);
        } else { /* not one rule's fault (resource limits): all run with PCRE2 */
            for (size_t i = 0; i < d->n; i++)
                if (in_db[i]) {
                    in_db[i] = false;
                    set_why(why[i], sizeof why[i], msg);
                }
        }
        hs_free_compile_error(ce);
    }
    if (d->db && hs_alloc_scratch(d->db, &d->scratch) != HS_SUCCESS) {
        err_oom(err);
        goto out;
    }
    rc = 0;
out:
    free(exprs);
    free(flags);
    free(fl);
    free(ids);
    return rc;
}

struct deny *deny_new(const struct guard_rule *rules, size_t n, struct err *err)
{
    struct deny *d = calloc(1, sizeof *d);
    bool *in_db = calloc(n, sizeof *in_db);
    char(*why)[WHY_MAX] = calloc(n, sizeof *why);
    if (d == NULL || in_db == NULL || why == NULL) goto oom;
    d->rules = rules;
    d->n = n;
    if ((d->md = pcre2_match_data_create(1, NULL)) == NULL ||
        (d->hits = calloc(n, sizeof *d->hits)) == NULL ||
        (d->unf = calloc(n, sizeof *d->unf)) == NULL)
        goto oom;
    bool platform = hs_valid_platform() == HS_SUCCESS;
    for (size_t i = 0; i < n; i++) {
        in_db[i] = platform;
        if (!platform) set_why(why[i], sizeof why[i], "the CPU lacks SSSE3 (Hyperscan needs it)");
    }
    if (compile_db(d, in_db, why, err) != 0) goto fail;
    for (size_t i = 0; i < n; i++)
        if (!in_db[i]) {
            d->unf[d->n_unf].rule = i;
            memcpy(d->unf[d->n_unf++].why, why[i], sizeof why[i]);
        }
    free(in_db);
    free(why);
    return d;
oom:
    err_oom(err);
fail:
    free(in_db);
    free(why);
    deny_free(d);
    return NULL;
}

void deny_free(struct deny *d)
{
    if (d == NULL) return;
    hs_free_scratch(d->scratch);
    hs_free_database(d->db);
    pcre2_match_data_free(d->md);
    free(d->unf);
    free(d->hits);
    free(d);
}

size_t deny_n_unfiltered(const struct deny *d)
{
    return d->n_unf;
}

size_t deny_unfiltered(const struct deny *d, size_t i, const char **why)
{
    *why = d->unf[i].why;
    return d->unf[i].rule;
}

static int on_hit(unsigned int id, unsigned long long from, unsigned long long to,
                  unsigned int flags, void *ctx)
{
    struct deny *d = ctx;
    (void)from, (void)to, (void)flags;
    d->hits[d->n_hits++] = id; /* single-match: each rule once per scan, so n slots suffice */
    return 0;                  /* scan on: a rule flagged later may come first in order */
}

static int by_rule(const void *a, const void *b)
{
    unsigned x = *(const unsigned *)a, y = *(const unsigned *)b;
    return (x > y) - (x < y);
}

static bool confirm(struct deny *d, size_t i, const char *t, size_t n)
{
    return pcre2_match(d->rules[i].code, (PCRE2_SPTR)t, n, 0, 0, d->md, NULL) >= 0;
}

long deny_match(struct deny *d, const char *t, size_t n)
{
    d->n_hits = 0;
    bool scanned = d->db == NULL || (n <= UINT_MAX && hs_scan(d->db, t, (unsigned)n, 0, d->scratch,
                                                              on_hit, d) == HS_SUCCESS);
    if (!scanned) {
        /* cannot happen on the loop thread with texts under the body limit; if it did, the
         * prefilter's silence would mean nothing, so every rule runs */
        for (size_t i = 0; i < d->n; i++)
            if (confirm(d, i, t, n)) return (long)i;
        return -1;
    }
    if (d->n_hits > 1) qsort(d->hits, d->n_hits, sizeof *d->hits, by_rule);
    /* merge the flagged rules with those that always run, both ascending */
    size_t h = 0, u = 0;
    while (h < d->n_hits || u < d->n_unf) {
        size_t i;
        if (u == d->n_unf || (h < d->n_hits && d->hits[h] < d->unf[u].rule))
            i = d->hits[h++];
        else
            i = d->unf[u++].rule;
        if (confirm(d, i, t, n)) return (long)i;
    }
    return -1;
}
