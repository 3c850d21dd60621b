#include "guard/keyjson.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/cidr.h"
#include "util/clock.h"

static json_t *time_or_null(int64_t ms)
{
    if (ms == 0) return json_null();
    char buf[32];
    clock_iso8601(ms, buf, sizeof buf);
    return json_string(buf);
}

json_t *key_to_json(const struct key_record *k, int64_t now_ms)
{
    json_t *models = json_array();
    for (const char *p = k->models; *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        json_array_append_new(models, json_stringn(p, len));
        if (comma == NULL) break;
        p = comma + 1;
    }
    const char *status = k->revoked_ms                              ? "revoked"
                         : k->expires_ms && now_ms >= k->expires_ms ? "expired"
                                                                    : "active";
    json_t *doc = json_pack(
        "{s:s, s:s, s:s, s:s?, s:o, s:f, s:s, s:f, s:s, s:I, s:I, s:o, s:o, s:o}", "id", k->id,
        "status", status, "name", k->name, "team", k->team[0] ? k->team : NULL, "models", models,
        "budget_usd", k->budget_usd, "budget_period", budget_period_name(k->budget_period),
        "budget_soft", k->budget_soft, "on_exhausted", budget_exhausted_name(k->on_exhausted),
        "rpm", (json_int_t)k->rpm, "tpm", (json_int_t)k->tpm, "created_at",
        time_or_null(k->created_ms), "expires_at", time_or_null(k->expires_ms), "revoked_at",
        time_or_null(k->revoked_ms));
    json_t *cidrs = json_array();
    for (const char *p = k->allowed_cidrs; *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        json_array_append_new(cidrs, json_stringn(p, len));
        if (comma == NULL) break;
        p = comma + 1;
    }
    if (doc) {
        json_object_set_new(doc, "allowed_cidrs", cidrs);
        json_object_set_new(doc, "max_prompt_tokens", json_integer(k->max_prompt_tokens));
        json_object_set_new(doc, "tier", k->tier[0] ? json_string(k->tier) : json_null());
    } else {
        json_decref(cidrs);
    }
    /* The SigV4 access key id is public like the key id; its secret never leaves sealed. */
    if (doc && k->aws_key_id[0])
        json_object_set_new(doc, "aws_access_key_id", json_string(k->aws_key_id));
    return doc;
}

int64_t key_parse_duration(const char *s)
{
    char *end = NULL;
    if (s == NULL || s[0] < '0' || s[0] > '9') return -1;
    long long v = strtoll(s, &end, 10);
    if (v <= 0 || end[0] == '\0' || end[1] != '\0') return -1;
    switch (end[0]) {
    case 'd':
        return v * 86400000LL;
    case 'h':
        return v * 3600000LL;
    case 'm':
        return v * 60000LL;
    case 's':
        return v * 1000LL;
    }
    return -1;
}

static int bad(struct err *e, const char *param, const char *msg)
{
    err_param(e, 400, param, "%s", msg);
    e->code = "invalid_value";
    return -1;
}

static int text(const json_t *v, const char *name, char *out, size_t cap, struct err *e)
{
    if (v == NULL) return 0;
    if (!json_is_string(v)) {
        err_param(e, 400, name, "\"%s\" must be a string", name);
        e->code = "invalid_type";
        return -1;
    }
    const char *s = json_string_value(v);
    if (strlen(s) >= cap) {
        err_param(e, 400, name, "\"%s\" is longer than %zu characters", name, cap - 1);
        e->code = "invalid_value";
        return -1;
    }
    for (const char *c = s; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == ',')
            return bad(e, name, "names must not contain control characters or commas");
    snprintf(out, cap, "%s", s);
    return 0;
}

static int count(const json_t *v, const char *name, int64_t *out, struct err *e)
{
    if (v == NULL) return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        err_param(e, 400, name, "\"%s\" must be a non-negative integer", name);
        e->code = "invalid_type";
        return -1;
    }
    *out = json_integer_value(v);
    return 0;
}

int key_from_json(const json_t *body, const struct config *cfg, int64_t now_ms,
                  struct key_record *k, struct err *e)
{
    static const char *const known[] = {
        "name",         "team", "models", "budget_usd", "budget_period", "budget_soft",
        "on_exhausted", "rpm",  "tpm",    "expires_in", "allowed_cidrs", "max_prompt_tokens",
        "tier",         NULL};
    if (!json_is_object(body))
        return err_set(e, 400, "invalid_request_error", "invalid_json",
                       "request body must be a JSON object");
    const char *field;
    json_t *value;
    json_object_foreach((json_t *)body, field, value)
    {
        bool ok = false;
        for (const char *const *n = known; *n && !ok; n++) ok = strcmp(*n, field) == 0;
        if (!ok)
            return err_set(e, 400, "invalid_request_error", "unknown_field",
                           "unknown field \"%.64s\" (known: name, team, models, budget_usd, "
                           "budget_period, budget_soft, on_exhausted, rpm, tpm, expires_in, "
                           "allowed_cidrs, max_prompt_tokens, tier)",
                           field);
    }
    k->budget_soft = 0.8;
    if (text(json_object_get(body, "name"), "name", k->name, sizeof k->name, e) ||
        text(json_object_get(body, "team"), "team", k->team, sizeof k->team, e) ||
        count(json_object_get(body, "rpm"), "rpm", &k->rpm, e) ||
        count(json_object_get(body, "tpm"), "tpm", &k->tpm, e) ||
        count(json_object_get(body, "max_prompt_tokens"), "max_prompt_tokens",
              &k->max_prompt_tokens, e))
        return -1;
    /* Checked against the running config: a typo would otherwise silently mean "no tier".
     * A tier removed later makes the key fall back to the default tier (docs/tiers.md). */
    if (text(json_object_get(body, "tier"), "tier", k->tier, sizeof k->tier, e)) return -1;
    if (k->tier[0] && config_find_tier(cfg, k->tier) == NULL) {
        char names[160] = "";
        size_t w = 0;
        for (size_t t = 0; cfg && t < cfg->n_tiers && w < sizeof names; t++)
            w += (size_t)snprintf(names + w, sizeof names - w, "%s%s", t ? ", " : "",
                                  cfg->tiers[t].name);
        err_param(e, 400, "tier", "tier '%.64s' is not configured (%s%s)", k->tier,
                  names[0] ? "tiers: " : "the config has no tiers: section", names);
        e->code = "tier_not_found";
        return -1;
    }
    const json_t *models = json_object_get(body, "models");
    if (models && !json_is_array(models))
        return bad(e, "models", "\"models\" must be an array of model names");
    size_t i, w = 0;
    const json_t *m;
    json_array_foreach(models, i, m)
    {
        if (!json_is_string(m))
            return bad(e, "models", "\"models\" must be an array of model names");
        const char *name = json_string_value(m);
        /* A function's name lets the key call that function (not its model group). */
        if (config_find_model(cfg, name) == NULL && config_find_function(cfg, name) == NULL) {
            err_param(e, 400, "models",
                      "model '%.128s' is not configured (no model group or function has that name)",
                      name);
            e->code = "model_not_found";
            return -1;
        }
        int n = snprintf(k->models + w, sizeof k->models - w, "%s%s", w ? "," : "", name);
        if (n < 0 || (size_t)n >= sizeof k->models - w)
            return bad(e, "models", "\"models\" is too long");
        w += (size_t)n;
    }
    const json_t *cidrs = json_object_get(body, "allowed_cidrs");
    if (cidrs && !json_is_array(cidrs))
        return bad(
            e, "allowed_cidrs",
            "\"allowed_cidrs\" must be an array of CIDRs like [\"10.0.0.0/8\", \"::1/128\"]");
    w = 0;
    json_array_foreach(cidrs, i, m)
    {
        struct cidr c;
        const char *why = NULL;
        if (!json_is_string(m))
            return bad(e, "allowed_cidrs", "\"allowed_cidrs\" must be an array of CIDR strings");
        if (cidr_parse(json_string_value(m), &c, &why) != 0) {
            err_param(e, 400, "allowed_cidrs", "\"allowed_cidrs\": '%.64s' is not a CIDR: %s",
                      json_string_value(m), why);
            e->code = "invalid_value";
            return -1;
        }
        char text[CIDR_TEXT_SIZE];
        cidr_format(&c, text); /* stored normalised: what the key is checked against */
        int n =
            snprintf(k->allowed_cidrs + w, sizeof k->allowed_cidrs - w, "%s%s", w ? "," : "", text);
        if (n < 0 || (size_t)n >= sizeof k->allowed_cidrs - w)
            return bad(e, "allowed_cidrs", "\"allowed_cidrs\" is too long");
        w += (size_t)n;
    }
    const json_t *b = json_object_get(body, "budget_usd");
    if (b && (!json_is_number(b) || json_number_value(b) < 0))
        return bad(e, "budget_usd", "\"budget_usd\" must be a non-negative number");
    if (b) k->budget_usd = json_number_value(b);
    const json_t *s = json_object_get(body, "budget_soft");
    if (s && (!json_is_number(s) || !(json_number_value(s) > 0) || json_number_value(s) > 1))
        return bad(e, "budget_soft", "\"budget_soft\" must be a number in (0, 1]");
    if (s) k->budget_soft = json_number_value(s);
    k->budget_period = BUDGET_MONTHLY;
    const json_t *p = json_object_get(body, "budget_period");
    int v = p ? budget_period_parse(json_string_value(p)) : -1;
    if (p && v < 0)
        return bad(e, "budget_period", "\"budget_period\" must be \"daily\" or \"monthly\"");
    if (p) k->budget_period = (enum budget_period)v;
    const json_t *x = json_object_get(body, "on_exhausted");
    v = x ? budget_exhausted_parse(json_string_value(x)) : -1;
    if (x && v < 0)
        return bad(e, "on_exhausted", "\"on_exhausted\" must be \"reject\" or \"local_only\"");
    if (x) k->on_exhausted = (enum budget_exhausted)v;
    const json_t *ex = json_object_get(body, "expires_in");
    if (ex) {
        int64_t d = key_parse_duration(json_string_value(ex));
        if (d <= 0)
            return bad(
                e, "expires_in",
                "\"expires_in\" must be a duration like \"30d\", \"12h\", \"45m\" or \"3600s\"");
        k->expires_ms = now_ms + d;
    }
    /* The tier's defaults for what the request left out (docs/tiers.md): stored on the key,
     * so they are enforced like the key's own, shared through Redis and listed with it. */
    const struct tier_conf *tier = k->tier[0] ? config_find_tier(cfg, k->tier) : NULL;
    if (tier) {
        if (json_object_get(body, "rpm") == NULL) k->rpm = tier->rpm;
        if (json_object_get(body, "tpm") == NULL) k->tpm = tier->tpm;
        if (b == NULL && tier->budget.limit_usd > 0) {
            k->budget_usd = tier->budget.limit_usd;
            if (p == NULL) k->budget_period = tier->budget.period;
            if (s == NULL) k->budget_soft = tier->budget.soft;
            if (x == NULL) k->on_exhausted = tier->budget.on_exhausted;
        }
    }
    return 0;
}
