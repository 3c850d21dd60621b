/*
 * store — where the ledger lives: one interface, one file per backend (sqlite.c,
 * postgres.c), chosen by the scheme of `store.url`:
 *   sqlite://stratus.db            a file (relative to the config file's directory)
 *   sqlite:///var/lib/stratus.db   an absolute path
 *   postgres://user:pass@host:port/db (also postgresql://)
 *
 * Every store has the same schema, created and upgraded by numbered migrations at open
 * (table schema_migrations records what ran), and appends ledger rows in batches, one
 * transaction each. Stores are used from the ledger's writer thread only (and from CLI
 * commands, which have no other thread); a store handle is not shared between threads.
 */
#ifndef STRATUS_STORE_H
#define STRATUS_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

/* One request, as the ledger records it. Strings are copied in (truncated to fit). */
struct ledger_row {
    int64_t ts_ms; /* wall clock, ms since the epoch, when the request arrived */
    char request_id[48];
    char key_id[48];    /* virtual key id, "" without auth */
    char team[64];      /* the key's team, "" when none */
    char customer[128]; /* x-stratus-customer, else the OpenAI `user` field, else "" */
    char model[128];    /* the model alias the client asked for */
    char backend[64];   /* "" when no target answered */
    char target_model[160];
    char endpoint[24]; /* "chat/completions", ... */
    int status;
    bool stream;
    int64_t prompt_tokens, completion_tokens, cached_tokens; /* -1: unknown */
    bool estimated;                                          /* usage was estimated */
    bool cost_known;
    double cost_usd;
    double latency_ms;
    double ttft_ms; /* -1 when no byte was sent */
    char route[256];
    char guard[200];  /* guards that fired: rule and kind names only ("" none) */
    char cache[8];    /* "hit", "miss", "bypass", or "" when the request was not cacheable */
    double saved_usd; /* a hit: what the answer cost when it was made; < 0: not a hit */
    /* Customer tiers (docs/tiers.md): "" and both unknown when the request had no tier. */
    char tier[72];
    bool revenue_known;
    double revenue_usd; /* what the customer is charged for it (tier price × usage) */
    bool margin_known;  /* revenue and cost both known */
    double margin_usd;  /* revenue − cost; may be negative */
};

/* A spend report: sums over rows in [from_ms, to_ms), grouped by one column and, for a
 * time series, by bucket: UTC hours or days (bucket_ms 3600000 or 86400000; a bucket starts
 * at a multiple of bucket_ms since the epoch, so the first and last may be partial). */
enum spend_group {
    SPEND_BY_MODEL,
    SPEND_BY_KEY,
    SPEND_BY_TEAM,
    SPEND_BY_CUSTOMER,
    SPEND_BY_BACKEND,
    SPEND_BY_ROUTE /* the route column: "policy; reason" (cost/report merges the figures) */
};

struct spend_line {
    int64_t bucket_ms; /* the bucket's start (epoch ms); 0 when the report has no buckets */
    char group[160];
    int64_t requests;
    int64_t prompt_tokens, completion_tokens;
    double cost_usd;
    int64_t unknown_cost; /* requests whose cost is unknown (not in cost_usd) */
    int64_t estimated;    /* requests with estimated usage */
    int64_t other_groups; /* cost/report's top-N: groups summed into this "other" line; 0 */
};

/* Revenue, cost and margin of one tier or customer over a range (docs/tiers.md), summed
 * from margin rollups and raw rows at the ragged ends. */
struct margin_line {
    char group[160];
    int64_t requests;
    double revenue_usd;      /* known revenue only */
    double cost_usd;         /* known cost only */
    double margin_usd;       /* over rows whose revenue and cost are both known */
    int64_t unpriced;        /* rows without a tier (no revenue): their cost is in cost_usd */
    int64_t unknown_revenue; /* rows with a tier whose revenue is unknown (usage unknown) */
    int64_t unknown_cost;    /* rows whose cost is unknown */
};

/* A virtual key as stored. The secret itself is never stored: only its SHA-256. Its budget
 * uses the config's budget enums (stored as their integer values). */
struct key_record {
    char id[32];       /* "key_" + 16 hex: public, safe to log */
    char hash[65];     /* hex SHA-256 of the secret */
    char name[64];     /* free text for people */
    char team[64];     /* "" when none */
    char models[512];  /* comma-separated model names this key may use; "" = all */
    double budget_usd; /* 0 = no budget of its own */
    enum budget_period budget_period;
    double budget_soft; /* fraction of the budget where routing turns thrifty; 0.8 */
    enum budget_exhausted on_exhausted;
    int64_t rpm, tpm;                           /* 0 = unlimited */
    int64_t created_ms, expires_ms, revoked_ms; /* 0 = never / not revoked */
    char aws_key_id[24];         /* SigV4 access key id ("ASTR…"), "" when the key has none */
    char aws_secret_sealed[144]; /* its secret, sealed (guard/awskeys.h); "" when none */
    char allowed_cidrs[512];     /* comma-separated CIDRs the key may be used from; "" = any */
    int64_t max_prompt_tokens;   /* prompts estimated above it get 400; 0 = the model's limit */
    char tier[72];               /* the customer tier its requests have (docs/tiers.md); "" */
};

/* A customer's tier (`/admin/customers`, docs/tiers.md). */
struct customer_record {
    char customer[128]; /* as x-stratus-customer (or `user`) names it */
    char tier[72];
    int64_t updated_ms;
};

/* Where a read of raw rows stands: the next row is the first after (ts_ms, id) in
 * (ts_ms, id) order. Start at {from_ms, -1} to read from from_ms on. */
struct ledger_cursor {
    int64_t ts_ms, id;
};

struct store;

struct store_ops {
    const char *scheme; /* "sqlite", "postgres" */
    /** Opens (creating if needed) and migrates. NULL with `why` on failure. */
    struct store *(*open)(const char *target, char *why, size_t why_size);
    /** Appends `n` rows in one transaction. @return 0, or -1 with `why`. */
    int (*append)(struct store *s, const struct ledger_row *rows, size_t n, char *why,
                  size_t why_size);
    /** Raw rows after `at` and before `to_ms`, oldest first, up to `cap` of them; `at`
     *  moves past the last one. @return rows read (< cap: no more), or -1 with `why`. */
    int (*read)(struct store *s, struct ledger_cursor *at, int64_t to_ms, struct ledger_row *out,
                size_t cap, char *why, size_t why_size);
    /** Deletes up to `limit` raw rows older than `rows_before_ms` and up to `limit` rollup
     *  lines whose bucket starts before `rollups_before_ms` (0: none), in one short
     *  transaction. @return how many were deleted (< limit: nothing older is left), or -1. */
    int64_t (*retain)(struct store *s, int64_t rows_before_ms, int64_t rollups_before_ms,
                      int64_t limit, char *why, size_t why_size);
    /** Spend lines from rollups (raw rows only for partial hours at the ends, struct
     *  rollup_plan): by bucket (when `bucket_ms` > 0; 0 = one sum over the range), biggest
     *  spend first within each, into *lines (grown with realloc; the caller frees it, also
     *  after a failure), at most `max` of them. One query however many lines.
     *  @return lines (== max: maybe more exist), or -1 with `why`. */
    int (*spend)(struct store *s, enum spend_group by, int64_t bucket_ms, int64_t from_ms,
                 int64_t to_ms, struct spend_line **lines, size_t max, char *why, size_t why_size);
    /** Inserts a new key. @return 0, or -1 with `why`. */
    int (*key_insert)(struct store *s, const struct key_record *k, char *why, size_t why_size);
    /** Marks key `id` revoked at `ts_ms`. @return 1 revoked, 0 no such (live) key, -1 error. */
    int (*key_revoke)(struct store *s, const char *id, int64_t ts_ms, char *why, size_t why_size);
    /** Every key, revoked ones included, oldest first, into a malloc'd array the caller
     *  frees. @return the count, or -1 with `why`. */
    int (*key_list)(struct store *s, struct key_record **out, char *why, size_t why_size);
    /** Sets (inserts or replaces) customer `c->customer`'s tier. @return 0, or -1 with `why`. */
    int (*customer_set)(struct store *s, const struct customer_record *c, char *why,
                        size_t why_size);
    /** Removes a customer. @return 1 removed, 0 no such customer, -1 error. */
    int (*customer_remove)(struct store *s, const char *customer, char *why, size_t why_size);
    /** Every customer, by name, into a malloc'd array the caller frees (NULL when none).
     *  @return the count, or -1 with `why`. */
    int (*customer_list)(struct store *s, struct customer_record **out, char *why, size_t why_size);
    /** Margin lines over [from_ms, to_ms) (margin rollups, raw rows at the ends as a
     *  rollup_plan says), grouped by tier (`by_customer` false) or customer, biggest revenue
     *  first, into *lines (malloc'd; the caller frees it,
     *  also after a failure), at most `max`. @return lines (== max: maybe more), or -1. */
    int (*margin)(struct store *s, bool by_customer, int64_t from_ms, int64_t to_ms,
                  struct margin_line **lines, size_t max, char *why, size_t why_size);
    /** Rows in the ledger (tests, reports). -1 on error. */
    int64_t (*count)(struct store *s);
    void (*close)(struct store *s);
};

struct store_handle {
    const struct store_ops *ops;
    struct store *db;
};

/**
 * Opens the store `url` names; a relative sqlite path is taken relative to `base_dir`.
 * `password` (may be NULL; postgres only) overrides the URL's (store.password).
 * @return 0 with `out` filled, or -1 with `why` ("unsupported scheme", connection errors).
 */
int store_open(const char *url, const char *base_dir, const char *password,
               struct store_handle *out, char *why, size_t why_size);

/** NULL-safe on an unopened handle. */
void store_close(struct store_handle *h);

/** "model", "key", "team", "customer", "backend", "route" → the enum. @return -1 if none. */
int spend_group_parse(const char *s);
const char *spend_group_name(enum spend_group g);

extern const struct store_ops store_sqlite, store_postgres;

#endif
