/*
 * DESIGN: the table is an array sorted by hash, searched with bsearch; a few thousand keys
 * cost a dozen comparisons. Rebuilt wholesale on refresh, never edited in place, so a
 * request holding a pointer into the old table is only ever served from one snapshot.
 */
#include "guard/keys.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/cidr.h"

struct key_table {
    struct key_record *by_hash; /* sorted by hash */
    size_t n;
};

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Fetched once: an implicit fetch on every EVP_Digest call costs more than the hash. */
static EVP_MD *sha256;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void fetch_sha256(void)
{
    sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static void to_hex(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

void keys_hash(const char *secret, size_t len, char hex[65])
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    pthread_once(&sha256_once, fetch_sha256);
    EVP_Digest(secret, len, md, &mdlen, sha256 ? sha256 : EVP_sha256(), NULL);
    to_hex(md, 32, hex);
}

int keys_mint(struct key_record *rec, char secret[KEY_SECRET_SIZE], int64_t now_ms)
{
    unsigned char raw[32 + 8];
    if (RAND_bytes(raw, sizeof raw) != 1) return -1;
    size_t w = (size_t)snprintf(secret, KEY_SECRET_SIZE, "%s", KEY_SECRET_PREFIX);
    /* 32 bytes → 43 base64url characters (6 bits each, the last one 2 bits). */
    unsigned bits = 0, acc = 0;
    for (size_t i = 0; i < 32; i++) {
        acc = (acc << 8) | raw[i];
        bits += 8;
        while (bits >= 6) {
            secret[w++] = b64url[(acc >> (bits - 6)) & 63];
            bits -= 6;
        }
    }
    if (bits) secret[w++] = b64url[(acc << (6 - bits)) & 63];
    secret[w] = '\0';
    memcpy(rec->id, "key_", 4);
    to_hex(raw + 32, 8, rec->id + 4);
    keys_hash(secret, w, rec->hash);
    rec->created_ms = now_ms;
    OPENSSL_cleanse(raw, sizeof raw);
    return 0;
}

static int by_hash(const void *a, const void *b)
{
    return strcmp(((const struct key_record *)a)->hash, ((const struct key_record *)b)->hash);
}

struct key_table *key_table_new(struct key_record *records, size_t n)
{
    struct key_table *t = calloc(1, sizeof *t);
    if (t == NULL) {
        free(records);
        return NULL;
    }
    t->by_hash = records;
    t->n = n;
    if (n > 1) qsort(t->by_hash, n, sizeof *t->by_hash, by_hash);
    return t;
}

const struct key_record *key_table_find(const struct key_table *t, const char *secret, size_t len)
{
    char hash[65];
    keys_hash(secret, len, hash);
    return key_table_find_hash(t, hash);
}

const struct key_record *key_table_find_hash(const struct key_table *t, const char hash[65])
{
    if (t == NULL || t->n == 0) return NULL;
    struct key_record probe;
    memcpy(probe.hash, hash, 65);
    const struct key_record *k = bsearch(&probe, t->by_hash, t->n, sizeof *t->by_hash, by_hash);
    if (k == NULL || CRYPTO_memcmp(k->hash, probe.hash, 64) != 0) return NULL;
    return k;
}

const struct key_record *key_table_by_id(const struct key_table *t, const char *id)
{
    for (size_t i = 0; t && i < t->n; i++)
        if (strcmp(t->by_hash[i].id, id) == 0) return &t->by_hash[i];
    return NULL;
}

size_t key_table_size(const struct key_table *t)
{
    return t ? t->n : 0;
}

const struct key_record *key_table_at(const struct key_table *t, size_t i)
{
    return t && i < t->n ? &t->by_hash[i] : NULL;
}

void key_table_free(struct key_table *t)
{
    if (t == NULL) return;
    free(t->by_hash);
    free(t);
}

bool key_allows_model(const struct key_record *k, const char *model)
{
    if (k->models[0] == '\0') return true;
    size_t n = strlen(model);
    for (const char *p = k->models; *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == n && memcmp(p, model, n) == 0) return true;
        if (comma == NULL) break;
        p = comma + 1;
    }
    return false;
}

bool key_allows_client(const struct key_record *k, const uint8_t *client)
{
    if (k->allowed_cidrs[0] == '\0') return true;
    if (client == NULL) return false;
    for (const char *p = k->allowed_cidrs; *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char one[CIDR_TEXT_SIZE];
        struct cidr c;
        const char *why;
        if (len < sizeof one) {
            memcpy(one, p, len);
            one[len] = '\0';
            if (cidr_parse(one, &c, &why) == 0 && cidr_contains(&c, client)) return true;
        }
        if (comma == NULL) break;
        p = comma + 1;
    }
    return false;
}
