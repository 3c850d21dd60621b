/*
 * config — the YAML configuration, parsed with libyaml into typed structs.
 *
 * Contract (see README "Configuration"): unknown keys are errors, so typos are caught;
 * every error carries the file, line and column of the offending node and renders as
 * `FILE:LINE:COL: message`. Secrets (`api_key`) are only accepted as references
 * (env:, file:, aws-sm:, ssm:, vault: — see secrets/secrets.h) and are resolved by
 * config_load(); the resolved value lives in `secret.value` and must never be logged — log
 * `secret.ref` instead. Loading a config with remote references blocks on their stores.
 *
 * Ownership: config_load() returns an *owned* tree freed with config_free(); every string in
 * it is owned by the tree. A loaded config is immutable, so any thread may read it.
 */
#ifndef STRATUS_CONFIG_H
#define STRATUS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "secrets/secrets.h"
#include "util/cidr.h"

/* Where a config error happened; line and column are 1-based, 0 when unknown. */
struct config_error {
    char file[256];
    int line;
    int col;
    char msg[512];
};

struct secret {
    char *ref;   /* as written: "env:UP_KEY", "aws-sm:prod/openai#key", …; NULL when absent */
    char *value; /* resolved at load (trailing newline of a file stripped); NULL when absent,
                  * and for a remote reference loaded offline (config_load_offline) */
};

enum backend_type {
    BACKEND_OPENAI = 0, /* any OpenAI-compatible HTTP server */
    BACKEND_LOCAL,      /* a GGUF model served by a supervised `stratus engine` worker */
    BACKEND_ANTHROPIC,  /* Anthropic Messages API */
    BACKEND_BEDROCK,    /* AWS Bedrock runtime, Converse and ConverseStream */
};

/* Where a bedrock backend's AWS credentials came from (for logs and `route explain`). */
enum aws_credential_source {
    AWS_CREDS_CONFIG = 0, /* aws_access_key_id / aws_secret_access_key references */
    AWS_CREDS_ENV,        /* AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN */
    AWS_CREDS_FILE,       /* the shared credentials file, one profile */
};

/* Where a target's price came from. */
enum price_source {
    PRICE_UNKNOWN = 0, /* nowhere: its cost is recorded as unknown, never as 0 */
    PRICE_CONFIG,      /* the target's `price:` in the config */
    PRICE_CATALOGUE,   /* the price catalogue (config/prices.yaml) */
    PRICE_LOCAL_TCO,   /* a local backend's `cost:`: engine time used, else tokens/s (cost.h) */
};

struct price {
    bool set; /* input/output/cached_input hold a known price */
    enum price_source source;
    double input;        /* USD per 1M input tokens */
    double output;       /* USD per 1M output tokens */
    double cached_input; /* USD per 1M prompt tokens read from a provider's cache */
};

/* A local backend's total cost of ownership (`cost:`), for PRICE_LOCAL_TCO. */
struct tco_conf {
    bool set;
    double watts;           /* average draw while serving */
    double kwh_price;       /* USD per kWh */
    double hardware_price;  /* USD, written off over lifetime_months */
    double lifetime_months; /* > 0 */
};

struct backend_conf {
    char *name;                 /* unique among backends */
    enum backend_type type;     /* "openai": any OpenAI-compatible server */
    char *base_url;             /* e.g. http://127.0.0.1:9001/v1, no trailing slash */
    struct secret api_key;      /* optional; sent as "Authorization: Bearer <value>" */
    long timeout_ms;            /* whole upstream call; default 60000 */
    long connect_timeout_ms;    /* TCP+TLS connect; default 5000 */
    long first_byte_timeout_ms; /* no response byte by then → failover; default 0 = none */
    /* type: anthropic */
    char *anthropic_version; /* the anthropic-version header; default 2023-06-01 */
    long max_tokens;         /* sent when the client gives none (the API requires it); 4096 */
    /* type: bedrock — credentials are resolved at load into the three secrets */
    char *region;
    struct secret aws_access_key_id, aws_secret_access_key, aws_session_token;
    enum aws_credential_source aws_source;
    char *aws_profile; /* the profile read, when aws_source is AWS_CREDS_FILE */
    /* type: local only */
    char *model_path;    /* GGUF file; checked by the worker, which names it on error */
    int parallel;        /* sequences decoded together; default 4 */
    int threads;         /* llama.cpp threads; default 0 = physical cores */
    int ctx_size;        /* context tokens per sequence; default 4096 */
    int max_queue;       /* requests waiting for a slot before 429; default 64 */
    int prefill_chunk;   /* prompt tokens per decode step; default 0 = the engine's */
    struct tco_conf tco; /* `cost:`; prices this backend's tokens when set */
    /* `prefix_cache: false`: the engine keeps no KV cache between requests. On by default,
     * so the zero value means on. */
    bool no_prefix_cache;
    /* type: local with `url:` — an engine another machine runs (`stratus engine --listen`):
     * base_url is url + "/v1", the token goes in api_key (sent as a Bearer token), `ca` a
     * PEM file to trust for its https (a private CA or a self-signed certificate). */
    bool remote_engine;
    char *tls_ca;
    /* `private: true`: may serve privacy-pinned requests (guards route_local, the
     * x-stratus-privacy: local header) though it is not self-hosted — an endpoint inside
     * the operator's own trust boundary. Local backends always may. */
    bool is_private;
    int line, col; /* position of the backend's mapping, for later diagnostics */
};

struct target_conf {
    char *backend;        /* name of a backend_conf; checked to exist */
    size_t backend_index; /* index into config.backends, filled by the loader */
    char *model;          /* model name sent upstream; default: the model group's name */
    int weight;           /* for route: weighted; default 1; 0 = only as a fallback */
    int quality;          /* for route: margin; higher is better; default 0 */
    struct price price;
};

enum route_policy {
    ROUTE_PRIORITY = 0, /* the configured order */
    ROUTE_WEIGHTED,     /* random by weight, the rest as fallbacks */
    ROUTE_LATENCY,      /* peak-EWMA of time to first byte, power of two choices */
    ROUTE_LEAST_BUSY,   /* fewest requests in flight / most free engine slots */
    ROUTE_COST,         /* cheapest expected cost for this request */
    ROUTE_MARGIN,       /* best quality keeping the customer tier's margin, else cheapest */
};

/* Retries after every target of the plan failed (failover within a pass is immediate). */
struct retry_conf {
    int retries;             /* extra passes over the plan; default 1 */
    long backoff_ms;         /* base of the exponential backoff (full jitter); default 100 */
    long max_backoff_ms;     /* cap of one backoff; default 2000 */
    long max_retry_after_ms; /* a longer upstream Retry-After ends the retries; 10000 */
};

/* Circuit breaker per target: `failures` failures within `window_ms` (or one 429 with
 * Retry-After) open it for `duration_ms` (doubling on each failed half-open probe, up to
 * `max_duration_ms`); then one probe request is let through. */
struct cooldown_conf {
    int failures;         /* default 3; 0 disables the breaker */
    long window_ms;       /* default 30000 */
    long duration_ms;     /* default 10000 */
    long max_duration_ms; /* default 300000 */
};

/* `cache:` — the exact response cache (api/cache.h). Absent: no caching at all. */
enum cache_when {
    CACHE_DETERMINISTIC = 0, /* only requests with temperature 0 or a seed */
    CACHE_ALWAYS,            /* every request (sampled answers are replayed too) */
};
enum cache_scope {
    CACHE_SHARED = 0, /* every caller may be served an entry */
    CACHE_PER_TEAM,   /* entries are kept apart per key's team */
    CACHE_PER_KEY,    /* … per virtual key */
};
struct cache_conf {
    bool enabled;
    long ttl_s;             /* default 300 */
    size_t max_bytes;       /* in-process entries; default 64 MiB */
    size_t max_entry_bytes; /* a larger answer is not kept; default 1 MiB */
    enum cache_when when;
    enum cache_scope scope;
    bool redis; /* share entries through store.redis when set; default true */
};

/* A model group's own cache settings (`cache:` on a model). */
struct model_cache {
    bool off;   /* cache: false */
    long ttl_s; /* 0: the cache section's */
    bool when_set;
    enum cache_when when;
};

struct model_conf {
    char *name;              /* the name clients send as "model"; unique */
    enum route_policy route; /* default priority */
    struct target_conf *targets;
    size_t n_targets; /* >= 1 */
    struct retry_conf retry;
    struct cooldown_conf cooldown;
    long latency_decay_ms;       /* route: latency — how fast an old observation fades; 10000 */
    long expected_output_tokens; /* route: cost — when the request has no max_tokens; 256 */
    /* Prompts estimated above this many tokens (the routing estimate, body bytes / 4) get
     * 400 prompt_too_long; a key's own max_prompt_tokens may lower it. 0: no limit. */
    long max_prompt_tokens;
    struct model_cache cache; /* `cache:` on the group */
};

/** The backend type's name as written in the config ("bedrock"). */
const char *backend_type_name(enum backend_type t);

/** The policy's name as written in the config ("least-busy"). */
const char *route_policy_name(enum route_policy p);

struct limits_conf {
    size_t max_body_bytes;   /* default 10 MiB; larger request bodies get 413 */
    size_t max_header_bytes; /* default 64 KiB; request line + headers; larger get 431 */
    long header_timeout_ms;  /* default 10000: whole request head must arrive by then */
    long body_timeout_ms;    /* default 30000: whole body must arrive by then */
    long idle_timeout_ms;    /* default 60000: keep-alive connection with no request */
    int max_connections;     /* default 10000; beyond, new connections are refused */
    /* Non-stream upstream answers are held whole (to check them before anything reaches the
     * client): one may be at most max_response_bytes (default 64 MiB, else 502), and all
     * held at once at most max_buffered_bytes (default 256 MiB, else 503 + Retry-After). */
    size_t max_response_bytes;
    size_t max_buffered_bytes;
};

struct price_catalogue;

/* `guards:` — what a request may say and what an answer may carry (guard/content.h). */
enum guard_pii {
    GUARD_PII_OFF = 0,
    GUARD_PII_FLAG,        /* recorded only */
    GUARD_PII_ROUTE_LOCAL, /* input: only self-hosted or private targets may serve it */
    GUARD_PII_REDACT,      /* output: matches become [REDACTED:<kind>] */
    GUARD_PII_BLOCK,       /* input: 400; output: 502 (streams: ended with an error event) */
};

/** "off", "flag", "route_local", "redact", "block". */
const char *guard_pii_name(enum guard_pii p);

struct pcre2_real_code_8;

/* One `guards.input.deny` rule: a PCRE2 pattern (UTF, invalid UTF-8 tolerated), compiled
 * and JIT-compiled at load. */
struct guard_rule {
    char *name;                     /* its `name:`, else "deny[<index>]" */
    char *pattern;                  /* as written (NUL-terminated; a NUL inside cuts it short) */
    size_t pattern_len;             /* its whole length, as PCRE2 compiled it */
    struct pcre2_real_code_8 *code; /* owned by the tree */
};

struct guards_conf {
    struct guard_rule *deny;
    size_t n_deny;
    enum guard_pii input_pii;  /* off | flag | route_local | block */
    enum guard_pii output_pii; /* off | flag | redact | block */
    /* guards.input.strip_control: control and invisible format characters (guard/strip.h)
     * are removed from prompt text before any target sees it. On by default once a
     * `guards:` section exists; off without one (bodies then pass byte for byte). */
    bool strip_control;
};

/* Where the ledger goes (`store:`). */
struct store_conf {
    char *url;              /* default sqlite://stratus.db (relative: to the config's directory) */
    char *redis;            /* redis://HOST:PORT for limits and budgets shared across instances */
    struct secret password; /* PostgreSQL password (a reference); overrides the URL's */
    struct secret redis_password; /* Redis AUTH password (a reference); overrides the URL's */
    char *base_dir;               /* the config file's directory */
    long queue_size; /* rows waiting for the writer before new ones are dropped; 10000 */
    long batch_size; /* rows per transaction at most; 256 */
    long flush_ms;   /* a short batch waits this long for more rows (group commit); 5 */
    bool durable;    /* an answer is complete for its client only once its row is committed */
    /* retention: raw rows and rollup lines older than this many days are deleted (0: kept);
     * defaults 30 and 800, checked every retention_every_s (3600) */
    double rows_days, rollups_days;
    long retention_every_s;
};

/* `auth:` — without a master key there is no auth (and the gateway stays on loopback). */
struct auth_conf {
    struct secret master_key; /* value NULL when auth is off */
    long refresh_ms;          /* how often keys are re-read from the store; default 2000 */
};

/* One `budgets:` entry: a spend limit for a team or a customer ("*": each one). Keys carry
 * their own budgets (set when the key is made). */
enum budget_scope { BUDGET_SCOPE_KEY = 0, BUDGET_SCOPE_TEAM, BUDGET_SCOPE_CUSTOMER };
enum budget_period { BUDGET_DAILY = 0, BUDGET_MONTHLY }; /* UTC days / calendar months */
enum budget_exhausted { BUDGET_REJECT = 0, BUDGET_LOCAL_ONLY };

/** "key", "team", "customer"; "daily", "monthly"; "reject", "local_only". */
const char *budget_scope_name(enum budget_scope s);
const char *budget_period_name(enum budget_period p);
const char *budget_exhausted_name(enum budget_exhausted e);
/** The names above back to the enums. @return -1 for anything else (NULL included). */
int budget_period_parse(const char *s);
int budget_exhausted_parse(const char *s);

struct budget_conf {
    enum budget_scope scope;
    char *name; /* the team or customer; "*" = every one, each with its own counter */
    double limit_usd;
    enum budget_period period;
    double soft; /* fraction (0..1] where routing turns to the cheapest target; default 0.8 */
    enum budget_exhausted on_exhausted;
};

/* A function (`functions:`): a model group plus a prompt, invoked as
 * POST /v1/functions/{name}/invoke (and through Lambda / SageMaker's wire formats). */
enum function_kind { FUNCTION_CLASSIFY = 0, FUNCTION_JSON, FUNCTION_TEXT };

#define FUNCTION_MAX_LABELS 64

struct function_conf {
    char *name;  /* [A-Za-z0-9_-], 1..64 characters: a valid Lambda function name */
    char *model; /* a model group's name; checked to exist */
    enum function_kind kind;
    char **labels; /* classify: unique, non-blank, 1..FUNCTION_MAX_LABELS */
    size_t n_labels;
    char *system;    /* optional system prompt */
    char *template;  /* the user message; {{field}} placeholders, checked well-formed */
    char *schema;    /* json: the JSON Schema as compact JSON text */
    long max_tokens; /* json / text: the longest answer; default 512 */
    int line, col;
};

const char *function_kind_name(enum function_kind k);

/* `access:` (http/access.h): who may connect, and whose X-Forwarded-For is believed. */
struct access_conf {
    struct cidr *allow; /* owned; allow_set false: everyone */
    size_t n_allow;
    bool allow_set;
    struct cidr *trust_proxy; /* owned */
    size_t n_trust_proxy;
};

/* One listening socket. `listen:` is one HOST:PORT or a list of them, each a string or
 * { address: HOST:PORT, tls: BOOL }; with a `tls:` section every listener speaks TLS unless
 * its entry says tls: false. */
struct listen_conf {
    char *host;
    int port;
    bool tls;
};

#define CONFIG_MAX_LISTENERS 8

/* `tls:` — the certificate chain and key, as references (file:PATH, the PEM file re-read on
 * SIGHUP; or env:NAME, the PEM text). Both NULL when the section is absent. */
struct tls_conf {
    char *cert;
    char *key;
};

/* `metrics:` — GET /metrics (Prometheus). */
struct metrics_conf {
    bool enabled;      /* default true; false: nothing counted, GET /metrics is 404 */
    bool auth;         /* the master key is required to scrape; default false */
    int max_customers; /* customers with their own cost series; the rest are "other"; 20 */
};

/* One header sent with every OTLP export (an auth token, a tenant id). */
struct otlp_header {
    char *name;
    struct secret value; /* ref NULL: a literal value, written in the config */
};

/* `observability:` — OpenTelemetry traces (docs/observability.md). Export is off while
 * otlp_endpoint is NULL (the default: no section). */
struct observability_conf {
    char *otlp_endpoint; /* http(s)://host:4318/v1/traces; NULL: spans are not exported */
    char *service_name;  /* resource service.name; default "stratus" */
    struct otlp_header *headers;
    size_t n_headers;
    long queue_size; /* spans waiting for the exporter; beyond it they are dropped; 2048 */
    long batch_size; /* spans per export request; 256 */
    long flush_ms;   /* a short batch waits at most this long for company; 1000 */
    double sample;   /* share of new traces (no client traceparent) exported; 1.0 */
};

/* `secrets:` — where remote secret references are fetched from, and how often again. */
struct secrets_conf {
    struct secrets_sources sources;
    long refresh_s; /* re-resolve every reference this often; default 300, 0 = only on SIGHUP */
};

/* One `tiers:` entry (docs/tiers.md): what a customer of this tier is charged, which model
 * groups may serve it, and the margin a request must keep under `route: margin`. */
struct tier_conf {
    char *name; /* unique; [A-Za-z0-9_.-], 1..64 characters */
    bool token_price_set;
    double price_input;       /* USD per 1M input tokens charged to the customer */
    double price_output;      /* USD per 1M output tokens charged to the customer */
    double price_per_request; /* USD charged per request; 0 when absent */
    char **models;            /* allowed client-facing group names; NULL (n_models 0): all */
    size_t n_models;
    char *route_to;      /* a model group replacing the requested one; NULL when absent */
    double max_cost_usd; /* ceiling on one request's expected cost; 0: none */
    bool min_margin_set;
    double min_margin; /* 0..1: the share of revenue that must remain after cost */
    bool is_default;   /* the tier of requests that resolve to none (at most one) */
    bool local_only;   /* only self-hosted targets may serve it (a 403 when a group has none) */
    /* Defaults (docs/tiers.md): rpm/tpm and budget for keys made with this tier that do not
     * set their own; the budget also applies to each customer of the tier that no
     * `budgets:` entry names. 0 / budget.limit_usd 0: none. */
    long rpm, tpm;
    struct budget_conf budget; /* scope customer, name NULL */
    int line, col;
};

/* One `customers:` entry: a customer's tier fixed in the config (the admin API's customer
 * table overrides it). */
struct customer_conf {
    char *customer; /* as x-stratus-customer (or `user`) names it */
    size_t tier;    /* index into config.tiers */
};

#define CONFIG_SECTIONS 20 /* top-level keys of the file */

struct config {
    char *path; /* the file it was loaded from */
    char *text; /* owned: the YAML it was loaded from */
    size_t text_len;
    uint64_t section_hash[CONFIG_SECTIONS]; /* of each top-level section's text; 0 = absent */
    char *prices_path;              /* the price catalogue read, or NULL when none was found */
    struct price_catalogue *prices; /* owned; NULL when none */
    char *listen_host;              /* the first listener's; default "127.0.0.1" */
    int listen_port;                /* the first listener's; default 8080 */
    struct listen_conf *listeners;  /* at least one; listeners[0] is listen_host:listen_port */
    size_t n_listeners;
    struct tls_conf tls;
    long shutdown_grace_ms; /* default 10000 */
    bool log_requests;      /* default true: one JSON line per request on stderr */
    struct limits_conf limits;
    struct store_conf store;
    struct auth_conf auth;
    struct metrics_conf metrics;
    struct cache_conf cache;
    struct observability_conf observability;
    struct access_conf access;
    struct budget_conf *budgets;
    size_t n_budgets;
    struct backend_conf *backends;
    size_t n_backends;
    struct model_conf *models;
    size_t n_models;
    struct function_conf *functions;
    size_t n_functions;
    struct guards_conf guards;
    struct secrets_conf secrets;
    struct tier_conf *tiers;
    size_t n_tiers;
    struct customer_conf *customers; /* sorted by customer (strcmp) */
    size_t n_customers;
};

/**
 * Parses and validates `path`, resolving secret references.
 * @return an *owned* config (free with config_free), or NULL with `error` filled.
 */
struct config *config_load(const char *path, struct config_error *error);

/** Same as config_load but from a string; `name` is used as the file name in errors. */
struct config *config_load_string(const char *yaml, size_t len, const char *name,
                                  struct config_error *error);

/** config_load, but remote secret references (aws-sm:, ssm:, vault:) are only checked for
 *  syntax, not fetched: their values stay NULL (`stratus check` without --resolve). */
struct config *config_load_offline(const char *path, struct config_error *error);

/** Calls `fn` for every secret in `cfg` (provider keys and tokens, AWS credentials, the
 *  master key, OTLP header references), with `what` naming where it is used. */
void config_each_secret(const struct config *cfg,
                        void (*fn)(const struct secret *s, const char *what, void *ud), void *ud);

/** A digest of every secret's reference and value: two configs whose digests match hold
 *  the same secrets. */
void config_secrets_digest(const struct config *cfg, unsigned char out[32]);

/** Formats `error` as "FILE:LINE:COL: message" into buf. Returns buf. */
const char *config_error_format(const struct config_error *error, char *buf, size_t size);

/** Resolves a secret reference outside a config file (`stratus engine --token env:NAME`),
 *  remote stores as the environment says: *value is *owned* (free with secrets_value_free).
 *  @return 0, or -1 with `why` (never the value). */
int config_secret_value(const char *ref, char **value, char *why, size_t size);

/** Splits "HOST:PORT" ("[::1]:80" for IPv6). @return 0, or -1 with `why` set (static). */
int config_parse_listen(const char *s, char **host, int *port, const char **why);

/* ---- reload -------------------------------------------------------------------------
 * A reload (SIGHUP, POST /admin/reload) replaces prices, access, backends, models, functions,
 * guards, tiers and customers. listen, tls (its files are re-read, the paths are not),
 * shutdown_grace_ms, log, limits, store, auth, budgets, metrics and observability are read once at
 * start. */

/** The start-only sections whose text differs between the two, joined by ", " into `buf`
 *  ("" when none): a reload keeps their running values and says a restart is needed. */
const char *config_restart_sections(const struct config *running, const struct config *next,
                                    char *buf, size_t size);

/** The reloadable sections whose text differs, as above. */
const char *config_reloaded_sections(const struct config *running, const struct config *next,
                                     char *buf, size_t size);

/** Gives `next` the running values of the start-only settings that code serving requests
 *  reads from the current config (limits, shutdown_grace_ms, log), so a reload never half
 *  applies them. */
void config_keep_running(struct config *next, const struct config *running);

/** Finds a model group by client-facing name; NULL if none. Borrowed from `cfg`. */
const struct model_conf *config_find_model(const struct config *cfg, const char *name);

/** Finds a function by name; NULL if none. Borrowed from `cfg`. */
const struct function_conf *config_find_function(const struct config *cfg, const char *name);

/** Finds a tier by name; NULL if none (or `name` NULL / ""). Borrowed from `cfg`. */
const struct tier_conf *config_find_tier(const struct config *cfg, const char *name);

/** The tier `customers:` gives `customer`; NULL if none. Borrowed from `cfg`. */
const struct tier_conf *config_customer_tier(const struct config *cfg, const char *customer);

/** The tier marked `default: true`; NULL if none. Borrowed from `cfg`. */
const struct tier_conf *config_default_tier(const struct config *cfg);

/** Whether `tier` may call the model group `model` (its `models:` list, or all when absent). */
bool tier_allows_model(const struct tier_conf *tier, const char *model);

/** NULL-safe. */
void config_free(struct config *cfg);

#endif
