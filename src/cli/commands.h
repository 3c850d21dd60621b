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

int cli_keys(int argc, char **argv);
int cli_spend(int argc, char **argv);
int cli_cost(int argc, char **argv);

#endif
