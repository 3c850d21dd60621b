/*
 * libFuzzer target for what the admin API reads from the network: a POST /admin/keys body
 * (guard/keyjson: key settings, refused or accepted, never a crash; an accepted key's model
 * list only names configured models and survives a round trip to JSON), the from/to query
 * values of /admin/spend (cost/report), and the Authorization header against a key table.
 * Input: first byte selects the part, the rest is the payload.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cost/report.h"
#include "guard/keyjson.h"
#include "guard/keys.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    uint8_t mode = data[0] % 3;
    const char *p = (const char *)data + 1;
    size_t n = size - 1;
    if (mode == 0) {
        struct model_conf models[2] = {{.name = "chat"}, {.name = "embed"}};
        struct config cfg = {.models = models, .n_models = 2};
        json_t *body = json_loadb(p, n, JSON_DECODE_ANY, NULL);
        if (body == NULL) return 0;
        struct key_record k;
        memset(&k, 0, sizeof k);
        struct err e;
        err_clear(&e);
        int rc = key_from_json(body, &cfg, 1000, &k, &e);
        json_decref(body);
        if (rc != 0) {
            if (e.status != 400 || e.msg[0] == '\0') abort();
            return 0;
        }
        if (k.models[0] && !key_allows_model(&k, "chat") && !key_allows_model(&k, "embed")) abort();
        if (k.budget_usd < 0 || k.rpm < 0 || k.tpm < 0) abort();
        json_t *j = key_to_json(&k, 2000);
        if (j == NULL) abort();
        json_decref(j);
    } else if (mode == 1) {
        char s[128];
        size_t m = n < sizeof s - 1 ? n : sizeof s - 1;
        memcpy(s, p, m);
        s[m] = '\0';
        int64_t out = 0;
        (void)report_parse_time(s, 1795910400000LL, &out);
        (void)key_parse_duration(s);
    } else {
        struct key_record *recs = calloc(2, sizeof *recs);
        char secret[KEY_SECRET_SIZE];
        if (recs == NULL || keys_mint(&recs[0], secret, 1) != 0) abort();
        keys_hash("sk-stratus-fixed", 16, recs[1].hash);
        struct key_table *t = key_table_new(recs, 2);
        const struct key_record *k = key_table_find(t, p, n);
        /* Only the exact secrets match. */
        if (k && !(n == 16 && memcmp(p, "sk-stratus-fixed", 16) == 0)) abort();
        key_table_free(t);
    }
    return 0;
}
