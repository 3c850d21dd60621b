/*
 * DESIGN: the CLI is a thin shell over config_load and app_run; every command's output and
 * exit code are part of the user-facing contract (README "Commands").
 *   exit 0 ok · 1 runtime failure · 2 usage or config error
 */
#include <stdio.h>
#include <string.h>

#include "app.h"
#include "config/config.h"
#ifdef STRATUS_HAVE_ENGINE
#include <stdlib.h>

#include "engine/worker.h"
#endif

static void usage(FILE *f)
{
    fputs("stratus " STRATUS_VERSION " — a self-hosted AI inference gateway\n"
          "\n"
          "usage:\n"
          "  stratus serve --config FILE [--listen HOST:PORT]   run the gateway\n"
          "  stratus check --config FILE                        validate a config file\n"
          "  stratus --version                                  print the version\n"
          "  stratus help                                       this text\n"
          "\n"
          "Config errors are printed as FILE:LINE:COL: message (exit 2).\n",
          f);
}

static int load(const char *path, struct config **out)
{
    struct config_error ce;
    char buf[1024];
    memset(&ce, 0, sizeof ce);
    *out = config_load(path, &ce);
    if (*out == NULL) {
        fprintf(stderr, "%s\n", config_error_format(&ce, buf, sizeof buf));
        return 2;
    }
    return 0;
}

int main(int argc, char **argv)
{
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
         *                [--ctx N] [--max-queue N]   (started by the gateway) */
        struct engine_worker_opts o = {.engine = engine_default_opts()};
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
            else {
                fprintf(stderr, "stratus engine: unexpected argument '%s'\n", k);
                return 2;
            }
        }
        if (o.engine.model_path == NULL || o.socket_path == NULL) {
            fprintf(stderr, "stratus engine: --model PATH and --socket PATH are required\n");
            return 2;
        }
        return engine_worker_main(&o);
    }
#endif
    if (strcmp(cmd, "serve") != 0 && strcmp(cmd, "check") != 0) {
        fprintf(stderr, "stratus: unknown command '%s'\n\n", cmd);
        usage(stderr);
        return 2;
    }
    const char *config_path = NULL, *listen = NULL;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            config_path = argv[++i];
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
    int rc = load(config_path, &cfg);
    if (rc != 0) return rc;
    if (strcmp(cmd, "check") == 0) {
        printf("%s: ok (%zu backend%s, %zu model%s)\n", config_path, cfg->n_backends,
               cfg->n_backends == 1 ? "" : "s", cfg->n_models, cfg->n_models == 1 ? "" : "s");
        config_free(cfg);
        return 0;
    }
    return app_run(cfg, listen);
}
