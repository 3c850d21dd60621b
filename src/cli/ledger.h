/*
 * cli/ledger — raw ledger rows in and out, for billing systems and before retention
 * (store.retention.rows_days) deletes them:
 *
 *   stratus ledger export [--since T] [--until T] [--format csv|jsonl] [--config FILE]
 *       every row with since <= ts < until (default: the last 30 days), oldest first, to
 *       stdout; a page of rows at a time (memory stays flat however many rows there are)
 *   stratus ledger import FILE [--config FILE]
 *       rows as export --format jsonl writes them, appended through the store like the
 *       gateway's own (rollups included); the whole file is checked before anything is
 *       written, so a bad line imports nothing
 *
 * Returns the process exit code (0 ok, 1 runtime failure, 2 usage or config error).
 */
#ifndef STRATUS_CLI_LEDGER_H
#define STRATUS_CLI_LEDGER_H

int cli_ledger(int argc, char **argv);

#endif
