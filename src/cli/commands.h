/*
 * cli/commands — the management commands that work on the store directly, with or without
 * a gateway running (a running gateway picks key changes up within auth.refresh_ms):
 *   stratus keys create|list|revoke   virtual keys
 *   stratus spend                     the spend report (as GET /admin/spend)
 *   stratus cost compare              cloud vs local monthly cost and the break-even volume
 * Each takes argv from the command word on and returns the process exit code
 * (0 ok, 1 runtime failure, 2 usage or config error).
 */
#ifndef STRATUS_CLI_COMMANDS_H
#define STRATUS_CLI_COMMANDS_H

#include <stdbool.h>

struct config;
struct store_handle;

/* One --name option of a command's table (ends with a NULL name). */
struct cli_opt {
    const char *name;  /* "--team" */
    const char *value; /* filled by cli_parse_opts; NULL when absent */
    bool flag;         /* takes no value ("1" when present) */
};

/** Parses argv[from..] into `opts`; a positional argument goes to *pos (up to one; NULL:
 *  none allowed). @return 0, or 2 after printing what was wrong. */
int cli_parse_opts(const char *cmd, int argc, char **argv, int from, struct cli_opt *opts,
                   const char **pos);

/** The value of option `name`, or NULL. */
const char *cli_opt(const struct cli_opt *opts, const char *name);

/** Opens the config's store (migrating it). @return 0, or 1 after printing why. */
int cli_open_store(const struct config *cfg, struct store_handle *s);

/** cli_load_config, then cli_open_store. @return 0 with both owned by the caller, or the
 *  exit code (2 config, 1 store) after printing why, with nothing left open. */
int cli_open(const char *config_path, struct config **cfg, struct store_handle *s);

/** Loads `path` (NULL: config/stratus.yaml), printing FILE:LINE:COL: message on error.
 *  @return 0 with *out owned by the caller, or 2 (the exit code for a config error). */
int cli_load_config(const char *path, struct config **out);

int cli_keys(int argc, char **argv);
/** `stratus customers list [--json] | set ID --tier T | remove ID` (docs/tiers.md). */
int cli_customers(int argc, char **argv);
int cli_spend(int argc, char **argv);
int cli_cost(int argc, char **argv);

/** `stratus reload [--config FILE] [--url URL] [--cacert PEM] [--json]`: checks the file,
 *  then asks the running gateway to reload it (POST /admin/reload with the master key).
 *  @return 0 reloaded, 1 the gateway refused or is unreachable, 2 usage/config error. */
int cli_reload(int argc, char **argv);

#endif
