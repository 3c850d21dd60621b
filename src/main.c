/*
 * DESIGN: the CLI is a thin shell over config_load and app_run; every command's output and
 * exit code are part of the user-facing contract (README "Commands").
 *   exit 0 ok · 1 runtime failure · 2 usage or config error
 */
#include <stdio.h>
#include <string.h>

#include <stdlib.h>

#include "daemon.h"
#include "cli/commands.h"
#include "cli/ledger.h"
#include "cli/route_live.h"
#include "config/config.h"
#include "http/tls.h"
#include "secrets/secrets.h"
#include "obs/log.h"
#include "route/explain.h"
#ifdef STRATUS_HAVE_ENGINE
#include "engine/worker.h"
#endif

static void usage(FILE *f)
{
    fputs(
        "stratus " STRATUS_VERSION " — a self-hosted AI inference gateway\n"
        "\n"
        "usage:\n"
        "  stratus serve --config FILE [--listen HOST:PORT]   run the gateway\n"
        "  stratus check --config FILE [--resolve]            validate a config file (--resolve:\n"
        "                                                     also fetch remote secrets)\n"
        "  stratus reload --config FILE [--url URL] [--cacert PEM] [--json]\n"
        "        check FILE, then have the running gateway reload it (or: kill -HUP)\n"
        "  stratus route explain --config FILE --model M      how M would route now\n"
        "        [--endpoint chat|completions|embeddings] [--prompt-tokens N]\n"
        "        [--max-tokens N]\n"
        "  stratus route explain --url URL --model M [--config FILE] [--cacert PEM]\n"
        "        [--json] [...]   the same, with a running gateway's live state (master\n"
        "        key: the config's auth.master_key, else $STRATUS_MASTER_KEY)\n"
        "  stratus keys create [--team T] [--models a,b] [--budget-usd X]\n"
        "        [--budget-period daily|monthly] [--budget-soft F]\n"
        "        [--on-exhausted reject|local_only] [--rpm N] [--tpm N]\n"
        "        [--expires-in 30d] [--name N] [--aws] [--json]  make a virtual key\n"
        "        [--allowed-cidrs 10.0.0.0/8,::1/128] [--max-prompt-tokens N]\n"
        "        (--aws: also SigV4 credentials for AWS SDKs; --allowed-cidrs: the\n"
        "        client addresses the key may be used from; --max-prompt-tokens: the\n"
        "        largest prompt the key may send, estimated as body bytes / 4)\n"
        "        [--tier T]  (the customer tier its requests have: docs/tiers.md)\n"
        "  stratus keys list [--json]                         every key\n"
        "  stratus keys revoke KEY_ID                         revoke a key\n"
        "  stratus customers list [--json] | set ID --tier T | remove ID\n"
        "        the customer → tier table (docs/tiers.md)\n"
        "  stratus spend [--by model|key|team|customer|backend] [--since 7d]\n"
        "        [--until T] [--bucket hour|day] [--top N] [--json|--csv]\n"
        "                                                     the spend report\n"
        "        --by tier, or --by customer --margin: revenue, cost and margin per tier or\n"
        "        customer (customers: with the month-end projection; docs/tiers.md)\n"
        "  stratus cost compare --tokens-per-month 100M --model M --local BACKEND\n"
        "        [--output-share 0.25] [--local-tokens-per-s N]  cloud vs local\n"
        "  stratus ledger export [--since 30d] [--until T] [--format jsonl|csv]\n"
        "                                                     raw ledger rows to stdout\n"
        "  stratus ledger import FILE.jsonl                   rows back in (as exported)\n"
        "  (keys, spend, cost and ledger take --config FILE; default config/stratus.yaml)\n"
        "  stratus --version                                  print the version\n"
        "  stratus help                                       this text\n"
        "\n"
        "Config errors are printed as FILE:LINE:COL: message (exit 2).\n",
        f);
}

static long positive(const char *v)
{
    char *end = NULL;
    long n = strtol(v, &end, 10);
    return end && *end == '\0' && n > 0 ? n : -1;
}

/* stratus route explain --config FILE --model M [--endpoint E] [--prompt-tokens N]
 *                       [--max-tokens N] */
static int route_command(int argc, char **argv)
{
    if (argc < 3 || strcmp(argv[2], "explain") != 0) {
        fprintf(stderr, "stratus route: expected 'explain'\n\n");
        usage(stderr);
        return 2;
    }
    const char *config_path = NULL;
    struct explain_opts o = {.endpoint = OPENAI_CHAT};
    struct live_opts live = {.url = NULL};
    for (int i = 3; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(k, "--json") == 0) {
            live.json = true;
            continue;
        }
        if (v == NULL) {
            fprintf(stderr, "stratus route explain: %s needs a value\n", k);
            return 2;
        }
        i++;
        if (strcmp(k, "--config") == 0) {
            config_path = v;
        } else if (strcmp(k, "--url") == 0) {
            live.url = v;
        } else if (strcmp(k, "--cacert") == 0) {
            live.cacert = v;
        } else if (strcmp(k, "--model") == 0) {
            o.model = v;
        } else if (strcmp(k, "--endpoint") == 0) {
            if (strcmp(v, "chat") == 0)
                o.endpoint = OPENAI_CHAT;
            else if (strcmp(v, "completions") == 0)
                o.endpoint = OPENAI_COMPLETIONS;
            else if (strcmp(v, "embeddings") == 0)
                o.endpoint = OPENAI_EMBEDDINGS;
            else {
                fprintf(stderr, "stratus route explain: --endpoint is chat, completions or "
                                "embeddings\n");
                return 2;
            }
        } else if (strcmp(k, "--prompt-tokens") == 0 || strcmp(k, "--max-tokens") == 0) {
            long n = positive(v);
            if (n < 0) {
                fprintf(stderr, "stratus route explain: %s must be a positive integer\n", k);
                return 2;
            }
            if (k[2] == 'p')
                o.prompt_tokens = n;
            else
                o.max_tokens = n;
        } else {
            fprintf(stderr, "stratus route explain: unexpected argument '%s'\n", k);
            return 2;
        }
    }
    if ((config_path == NULL && live.url == NULL) || o.model == NULL) {
        fprintf(stderr, "stratus route explain: --model M and --config FILE (or --url URL of a "
                        "running gateway) are required\n");
        return 2;
    }
    if (live.json && live.url == NULL) {
        fprintf(stderr, "stratus route explain: --json is for --url\n");
        return 2;
    }
    struct config *cfg = NULL;
    int rc = config_path ? cli_load_config(config_path, &cfg) : 0;
    if (rc != 0) return rc;
    if (live.url) {
        /* The key from the config when one is given, else the environment (never argv). */
        live.key = cfg ? cfg->auth.master_key.value : getenv("STRATUS_MASTER_KEY");
        if (live.cacert == NULL && cfg && cfg->tls.cert &&
            strncmp(cfg->tls.cert, "file:", 5) == 0 && strncmp(live.url, "https:", 6) == 0)
            live.cacert = cfg->tls.cert + 5; /* a self-signed certificate is the one to trust */
        rc = route_explain_live(&live, &o, stdout, stderr);
    } else {
        rc = route_explain(cfg, &o, stdout, stderr);
    }
    config_free(cfg);
    return rc;
}

struct secret_count {
    size_t all, remote;
};

static void count_secret(const struct secret *sec, const char *what, void *ud)
{
    struct secret_count *c = ud;
    (void)what;
    c->all++;
    c->remote += secrets_is_remote(sec->ref);
}

/* `stratus check`: the file, offline (remote secret references: syntax only); with
 * --resolve, every reference is fetched as `serve` would. */
static int check_command(const char *path, bool resolve)
{
    struct config_error ce;
    char buf[1024];
    memset(&ce, 0, sizeof ce);
    struct config *cfg = resolve ? config_load(path, &ce) : config_load_offline(path, &ce);
    if (cfg == NULL) {
        fprintf(stderr, "%s\n", config_error_format(&ce, buf, sizeof buf));
        return 2;
    }
    struct secret_count c = {0};
    config_each_secret(cfg, count_secret, &c);
    for (const char *t = cfg->tls.cert; t; t = t == cfg->tls.cert ? cfg->tls.key : NULL) {
        c.all++;
        c.remote += secrets_is_remote(t);
    }
    printf("%s: ok (%zu backend%s, %zu model%s", path, cfg->n_backends,
           cfg->n_backends == 1 ? "" : "s", cfg->n_models, cfg->n_models == 1 ? "" : "s");
    if (cfg->n_functions)
        printf(", %zu function%s", cfg->n_functions, cfg->n_functions == 1 ? "" : "s");
    printf(")\n");
    if (c.remote > 0 && !resolve)
        printf("%zu secret reference%s in a remote store: syntax checked, not fetched "
               "(stratus check --resolve fetches them)\n",
               c.remote, c.remote == 1 ? "" : "s");
    else if (resolve)
        printf("%zu secret reference%s resolved (%zu remote)\n", c.all, c.all == 1 ? "" : "s",
               c.remote);
    int rc = 0;
    if (resolve && cfg->tls.cert) { /* TLS material is fetched when a listener starts */
        struct err e;
        err_clear(&e);
        struct tls_ctx *t = tls_ctx_new(cfg->tls.cert, cfg->tls.key, &cfg->secrets.sources, &e);
        if (t == NULL) {
            fprintf(stderr, "%s: %s\n", path, e.msg);
            rc = 2;
        }
        tls_ctx_free(t);
    }
    config_free(cfg);
    return rc;
}

int main(int argc, char **argv)
{
    log_capture_libevent(10); /* libevent's warnings become JSON lines too, rate-limited */
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        puts("stratus " STRATUS_VERSION);
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return 0;
    }
#ifdef STRATUS_HAVE_ENGINE
    if (strcmp(cmd, "engine") == 0) {
        /* stratus engine --model PATH --socket PATH [--name N] [--parallel N] [--threads N]
         *                [--ctx N] [--max-queue N] [--prefix-cache on|off]
         *                [--prefill-chunk N]
         *                (started by the gateway), or with --listen HOST:PORT
         *                [--token env:NAME|file:PATH] [--tls-cert REF --tls-key REF]
         *                instead of --socket: a remote engine (docs/deploy.md) */
        struct engine_worker_opts o = {.engine = engine_default_opts()};
        const char *token_ref = NULL;
        for (int i = 2; i + 1 < argc; i += 2) {
            const char *k = argv[i], *v = argv[i + 1];
            if (strcmp(k, "--model") == 0)
                o.engine.model_path = v;
            else if (strcmp(k, "--socket") == 0)
                o.socket_path = v;
            else if (strcmp(k, "--name") == 0)
                o.model_name = v;
            else if (strcmp(k, "--parallel") == 0)
                o.engine.parallel = atoi(v);
            else if (strcmp(k, "--threads") == 0)
                o.engine.threads = atoi(v);
            else if (strcmp(k, "--ctx") == 0)
                o.engine.ctx_per_slot = atoi(v);
            else if (strcmp(k, "--max-queue") == 0)
                o.engine.max_queue = atoi(v);
            else if (strcmp(k, "--prefix-cache") == 0)
                o.engine.prefix_cache = strcmp(v, "off") != 0;
            else if (strcmp(k, "--prefill-chunk") == 0)
                o.engine.prefill_chunk = atoi(v);
            else if (strcmp(k, "--listen") == 0)
                o.listen = v;
            else if (strcmp(k, "--token") == 0)
                token_ref = v;
            else if (strcmp(k, "--tls-cert") == 0)
                o.tls_cert = v;
            else if (strcmp(k, "--tls-key") == 0)
                o.tls_key = v;
            else {
                fprintf(stderr, "stratus engine: unexpected argument '%s'\n", k);
                return 2;
            }
        }
        if (o.engine.model_path == NULL || (o.socket_path == NULL && o.listen == NULL)) {
            fprintf(stderr, "stratus engine: --model PATH and --socket PATH (or --listen "
                            "HOST:PORT) are required\n");
            return 2;
        }
        if ((o.tls_cert == NULL) != (o.tls_key == NULL)) {
            fprintf(stderr, "stratus engine: --tls-cert and --tls-key go together\n");
            return 2;
        }
        char *token = NULL;
        if (token_ref) {
            char why[300];
            if (config_secret_value(token_ref, &token, why, sizeof why) != 0) {
                fprintf(stderr, "stratus engine: --token %s: %s\n", token_ref, why);
                return 2;
            }
            o.token = token;
        } else if (o.listen) {
            fprintf(stderr,
                    "stratus engine: warning: --listen without --token: anyone who can "
                    "reach %s can use this engine\n",
                    o.listen);
        }
        int rc = engine_worker_main(&o);
        if (token) explicit_bzero(token, strlen(token));
        free(token);
        return rc;
    }
#endif
    if (strcmp(cmd, "route") == 0) return route_command(argc, argv);
    if (strcmp(cmd, "keys") == 0) return cli_keys(argc, argv);
    if (strcmp(cmd, "customers") == 0) return cli_customers(argc, argv);
    if (strcmp(cmd, "spend") == 0) return cli_spend(argc, argv);
    if (strcmp(cmd, "ledger") == 0) return cli_ledger(argc, argv);
    if (strcmp(cmd, "cost") == 0) return cli_cost(argc, argv);
    if (strcmp(cmd, "reload") == 0) return cli_reload(argc, argv);
    if (strcmp(cmd, "serve") != 0 && strcmp(cmd, "check") != 0) {
        fprintf(stderr, "stratus: unknown command '%s'\n\n", cmd);
        usage(stderr);
        return 2;
    }
    const char *config_path = NULL, *listen = NULL;
    bool resolve = false;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            config_path = argv[++i];
        } else if (strcmp(argv[i], "--resolve") == 0 && strcmp(cmd, "check") == 0) {
            resolve = true;
        } else if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc && cmd[0] == 's' &&
                   cmd[1] == 'e') {
            listen = argv[++i];
        } else {
            fprintf(stderr, "stratus %s: unexpected argument '%s'\n\n", cmd, argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (config_path == NULL) {
        fprintf(stderr, "stratus %s: --config FILE is required\n", cmd);
        return 2;
    }
    struct config *cfg = NULL;
    if (strcmp(cmd, "check") == 0) return check_command(config_path, resolve);
    int rc = cli_load_config(config_path, &cfg);
    if (rc != 0) return rc;
    return app_run(cfg, listen);
}
