/*
 * guard/keyjson — a key record as the admin API and `stratus keys` show it (never the
 * secret or its hash), and a key's settings read from JSON (the POST /admin/keys body).
 * Shared by the HTTP API and the CLI so both speak the same shape.
 */
#ifndef STRATUS_GUARD_KEYJSON_H
#define STRATUS_GUARD_KEYJSON_H

#include <jansson.h>
#include <stdint.h>

#include "config/config.h"
#include "store/store.h"
#include "util/err.h"

/** New reference. Status is "active", "revoked" or "expired" at `now_ms`. */
json_t *key_to_json(const struct key_record *k, int64_t now_ms);

/**
 * Fills `k`'s settings from `body` (an object): name, team, models (configured model names),
 * budget_usd, budget_period (daily|monthly), budget_soft, on_exhausted (reject|local_only),
 * rpm, tpm, expires_in ("30d", "12h", "3600s"), allowed_cidrs (["10.0.0.0/8", "::1/128"]:
 * where the key may be used from; stored normalised), max_prompt_tokens (the largest prompt
 * the key may send, as routing estimates it; 0 = only the model group's limit). Unknown
 * fields are refused.
 * @return 0, or -1 with a 400 in `err` naming the field.
 */
int key_from_json(const json_t *body, const struct config *cfg, int64_t now_ms,
                  struct key_record *k, struct err *err);

/** "30d", "12h", "45m", "3600s" → ms. @return -1 when malformed. */
int64_t key_parse_duration(const char *s);

#endif
