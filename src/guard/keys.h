/*
 * guard/keys — virtual keys: minting them and recognising them.
 *
 * A key's secret is "sk-stratus-" followed by 43 base64url characters (256 random bits from
 * OpenSSL). Only its SHA-256 is stored; the secret is shown once, when it is made. A
 * presented secret is hashed and looked up by hash; the final comparison is constant-time
 * (CRYPTO_memcmp). Searching by the hash leaks nothing useful: timing can at most reveal a
 * prefix of the hash of the attacker's own guess.
 *
 * A key_table is an immutable snapshot of every key (revoked ones too, so a revoked key gets
 * "revoked" rather than "unknown"); the guard swaps in a fresh one after each refresh.
 * Thread: a table is read by one thread (the loop); building one is thread-free.
 */
#ifndef STRATUS_GUARD_KEYS_H
#define STRATUS_GUARD_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

#define KEY_SECRET_PREFIX "sk-stratus-"
#define KEY_SECRET_SIZE   64 /* prefix + 43 characters + NUL fits */

/** Mints a key: fills rec->id, rec->hash and rec->created_ms (other fields are the
 *  caller's) and writes the secret into `secret`. @return 0, or -1 when the random source
 *  fails. */
int keys_mint(struct key_record *rec, char secret[KEY_SECRET_SIZE], int64_t now_ms);

/** Hex SHA-256 of `len` bytes of `secret`. */
void keys_hash(const char *secret, size_t len, char hex[65]);

struct key_table;

/** Builds a table over `records` (taken over, freed with the table). NULL on OOM (records
 *  are freed then too). */
struct key_table *key_table_new(struct key_record *records, size_t n);

/** The key whose secret is `secret[0..len)`, or NULL. Revoked and expired keys are
 *  returned: the caller says which. */
const struct key_record *key_table_find(const struct key_table *t, const char *secret, size_t len);

/** The same, by the secret's hex SHA-256 (keys_hash), when the caller has it already. */
const struct key_record *key_table_find_hash(const struct key_table *t, const char hash[65]);

/** The record with public id `id`, or NULL. */
const struct key_record *key_table_by_id(const struct key_table *t, const char *id);

size_t key_table_size(const struct key_table *t);
const struct key_record *key_table_at(const struct key_table *t, size_t i);

/** NULL-safe. */
void key_table_free(struct key_table *t);

/** Whether key `k` may be used from `client` (IPv4-mapped bytes; NULL: not an IP peer).
 *  An empty allowed_cidrs = anywhere; with a list, a request without an address is refused. */
bool key_allows_client(const struct key_record *k, const uint8_t *client);

/** Whether key `k` may use the model alias `model` (its list is empty = every model). */
bool key_allows_model(const struct key_record *k, const char *model);

#endif
