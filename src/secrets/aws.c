/*
 * DESIGN
 * aws-sm: and ssm: — Secrets Manager's GetSecretValue and Parameter Store's GetParameter,
 * both AWS JSON 1.1 calls (POST /, X-Amz-Target names the operation), signed with our
 * SigV4 (providers/aws/sigv4) for the service of the endpoint called. Credentials come from
 * the chain the bedrock backend uses (providers/aws/credentials), read afresh per call so a
 * rotated profile or environment is picked up by the next refresh.
 *
 * Region: an aws-sm ARN names its own region, which wins over the environment (a secret
 * lives in exactly one region); a configured `secrets.aws.region` wins over both.
 *
 * Errors say the AWS error type and message (AWS never echoes a secret value in them).
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "providers/aws/credentials.h"
#include "providers/aws/sigv4.h"
#include "secrets/secrets.h"
#include "secrets/secrets_internal.h"
#include "util/err.h"

#define ID_MAX 2048

static bool allowed(const char *s, size_t n, const char *extra)
{
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr(extra, c)))
            return false;
    }
    return true;
}

static int sm_check(const char *rest, char *why, size_t size)
{
    const char *hash = strchr(rest, '#');
    size_t n = hash ? (size_t)(hash - rest) : strlen(rest);
    if (n == 0 || n > ID_MAX || !allowed(rest, n, "/_+=.@-:")) {
        snprintf(why, size,
                 "'aws-sm:%.200s' needs a secret name or ARN (letters, digits and /_+=.@-:)", rest);
        return -1;
    }
    if (hash && (hash[1] == '\0' || strchr(hash + 1, '#'))) {
        snprintf(why, size, "'aws-sm:%.200s': the JSON field after # is empty or has a #", rest);
        return -1;
    }
    return 0;
}

static int ssm_check(const char *rest, char *why, size_t size)
{
    size_t n = strlen(rest);
    if (n == 0 || n > ID_MAX || !allowed(rest, n, "/_.-:")) {
        snprintf(why, size,
                 "'ssm:%.200s' needs a parameter name (letters, digits and /_.-, or its ARN)",
                 rest);
        return -1;
    }
    return 0;
}

/* The region of "arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME", or "" */
static void arn_region(const char *id, size_t n, char *out, size_t size)
{
    out[0] = '\0';
    if (n < 4 || strncmp(id, "arn:", 4) != 0) return;
    const char *p = id;
    for (int field = 0; field < 3; field++) {
        p = memchr(p, ':', n - (size_t)(p - id));
        if (p == NULL) return;
        p++;
    }
    const char *end = memchr(p, ':', n - (size_t)(p - id));
    if (end && (size_t)(end - p) < size) {
        memcpy(out, p, (size_t)(end - p));
        out[end - p] = '\0';
    }
}

/* One JSON 1.1 call. @return 0 with the parsed answer (owned), or -1 with `why`. */
static int call(struct secrets_sources *s, const char *ref, const char *service, const char *url,
                const char *region, const char *target, json_t *request, json_t **answer, char *why,
                size_t size)
{
    *answer = NULL;
    char *body = json_dumps(request, JSON_COMPACT);
    if (body == NULL) {
        snprintf(why, size, "%s: out of memory", ref);
        return -1;
    }
    char host[256], path[512];
    const char *h = strstr(url, "://");
    h = h ? h + 3 : url;
    size_t hn = strcspn(h, "/");
    snprintf(host, sizeof host, "%.*s", (int)hn, h);
    snprintf(path, sizeof path, "%s", h[hn] ? h + hn : "/");
    struct aws_credentials cr;
    char cwhy[400];
    if (hn == 0 || hn >= sizeof host || strncmp(url, "http", 4) != 0) {
        snprintf(why, size, "%s: endpoint %.200s is not an http(s) URL", ref, url);
        free(body);
        return -1;
    }
    if (aws_credentials_load(s ? s->aws_profile : NULL, &cr, cwhy, sizeof cwhy) != 0) {
        snprintf(why, size, "%s: %s", ref, cwhy);
        free(body);
        return -1;
    }
    struct sigv4_header signed_headers[] = {{"content-type", "application/x-amz-json-1.1"},
                                            {"x-amz-target", target}};
    struct sigv4_credentials creds = {cr.access_key_id, cr.secret_access_key, cr.session_token};
    struct sigv4_request sr = {
        .method = "POST",
        .host = host,
        .path = path,
        .headers = signed_headers,
        .n_headers = 2,
        .payload = body,
        .payload_len = strlen(body),
        .region = region,
        .service = service,
        .now = time(NULL),
    };
    struct sigv4_result sig;
    struct err e;
    err_clear(&e);
    int rc = -1;
    char line[600], t_line[200], d_line[64], tok_line[4200];
    line[0] = tok_line[0] = '\0';
    struct curl_slist *hl = NULL;
    struct secrets__reply reply = {0};
    if (sigv4_sign(&creds, &sr, &sig, &e) != 0) {
        snprintf(why, size, "%s: cannot sign the request: %s", ref, e.msg);
        goto out;
    }
    const char *lines[] = {
        "Content-Type: application/x-amz-json-1.1", NULL, NULL, NULL, NULL, "Expect:"};
    snprintf(t_line, sizeof t_line, "X-Amz-Target: %s", target);
    snprintf(d_line, sizeof d_line, "X-Amz-Date: %s", sig.amz_date);
    snprintf(line, sizeof line, "Authorization: %s", sig.authorization);
    lines[1] = t_line;
    lines[2] = d_line;
    lines[3] = line;
    if (cr.session_token) {
        snprintf(tok_line, sizeof tok_line, "X-Amz-Security-Token: %s", cr.session_token);
        lines[4] = tok_line;
    }
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        if (lines[i] == NULL) continue;
        struct curl_slist *next = curl_slist_append(hl, lines[i]);
        if (next == NULL) {
            snprintf(why, size, "%s: out of memory", ref);
            goto out;
        }
        hl = next;
    }
    char hwhy[300];
    if (secrets__http(s, "POST", url, hl, body, strlen(body), &reply, hwhy, sizeof hwhy) != 0) {
        snprintf(why, size, "%s: %s unreachable: %s", ref, url, hwhy);
        goto out;
    }
    json_t *j = json_loadb(reply.body ? reply.body : "", reply.len, 0, NULL);
    if (reply.status != 200) {
        const char *type = json_string_value(json_object_get(j, "__type"));
        const char *msg = json_string_value(json_object_get(j, "message"));
        if (msg == NULL) msg = json_string_value(json_object_get(j, "Message"));
        if (type && strchr(type, '#')) type = strchr(type, '#') + 1;
        snprintf(why, size, "%s: %s answered HTTP %ld%s%.100s%s%.200s", ref, service, reply.status,
                 type ? " " : "", type ? type : "", msg ? ": " : "", msg ? msg : "");
        json_decref(j);
        goto out;
    }
    if (!json_is_object(j)) {
        snprintf(why, size, "%s: %s answered 200 without a JSON object", ref, service);
        json_decref(j);
        goto out;
    }
    *answer = j;
    rc = 0;
out:
    secrets__reply_free(&reply);
    curl_slist_free_all(hl);
    explicit_bzero(line, sizeof line);
    explicit_bzero(tok_line, sizeof tok_line);
    aws_credentials_clear(&cr);
    free(body);
    return rc;
}

static int pick_region(struct secrets_sources *s, const char *arn_region_text, const char *ref,
                       char *out, size_t size, char *why, size_t why_size)
{
    const char *r = s && s->aws_region           ? s->aws_region
                    : arn_region_text[0]         ? arn_region_text
                    : secrets__env("AWS_REGION") ? secrets__env("AWS_REGION")
                                                 : secrets__env("AWS_DEFAULT_REGION");
    if (r == NULL) {
        snprintf(why, why_size, "%s: no AWS region (set secrets.aws.region or AWS_REGION)", ref);
        return -1;
    }
    snprintf(out, size, "%s", r);
    return 0;
}

/* Wipes a JSON string before the tree holding it is freed. */
static void wipe_strings(json_t *j)
{
    if (json_is_string(j)) {
        size_t n = json_string_length(j);
        if (n) explicit_bzero((char *)json_string_value(j), n);
    } else if (json_is_object(j)) {
        const char *k;
        json_t *v;
        json_object_foreach(j, k, v) wipe_strings(v);
    } else if (json_is_array(j)) {
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v) wipe_strings(v);
    }
}

static void answer_free(json_t *j)
{
    wipe_strings(j);
    json_decref(j);
}

static int sm_fetch(struct secrets_sources *s, const char *rest, char **value, char *why,
                    size_t size)
{
    char ref[ID_MAX + 16], id[ID_MAX + 1], region[64], url[1024];
    snprintf(ref, sizeof ref, "aws-sm:%s", rest);
    const char *hash = strchr(rest, '#');
    size_t n = hash ? (size_t)(hash - rest) : strlen(rest);
    snprintf(id, sizeof id, "%.*s", (int)n, rest);
    char from_arn[64];
    arn_region(id, n, from_arn, sizeof from_arn);
    if (pick_region(s, from_arn, ref, region, sizeof region, why, size) != 0) return -1;
    aws_endpoint(s ? s->secrets_manager_url : NULL, "AWS_ENDPOINT_URL_SECRETS_MANAGER",
                 "secretsmanager", region, url, sizeof url);
    json_t *req = json_pack("{ss}", "SecretId", id), *ans = NULL;
    int rc = req ? call(s, ref, "secretsmanager", url, region, "secretsmanager.GetSecretValue", req,
                        &ans, why, size)
                 : -1;
    json_decref(req);
    if (rc != 0) return -1;
    json_t *str = json_object_get(ans, "SecretString");
    rc = -1;
    if (!json_is_string(str)) {
        snprintf(why, size, "%s has no SecretString (a binary secret cannot be a key)", ref);
    } else if (hash == NULL) {
        rc = secrets__take(json_string_value(str), json_string_length(str), SECRETS_MULTILINE, ref,
                           value, why, size);
    } else {
        json_t *obj = json_loadb(json_string_value(str), json_string_length(str), 0, NULL);
        json_t *field = json_object_get(obj, hash + 1);
        if (!json_is_object(obj))
            snprintf(why, size, "%s: the secret is not a JSON object, so it has no field %.100s",
                     ref, hash + 1);
        else if (!json_is_string(field))
            snprintf(why, size, "%s: the secret's JSON has no string field %.100s", ref, hash + 1);
        else
            rc = secrets__take(json_string_value(field), json_string_length(field),
                               SECRETS_MULTILINE, ref, value, why, size);
        answer_free(obj);
    }
    answer_free(ans);
    return rc;
}

static int ssm_fetch(struct secrets_sources *s, const char *rest, char **value, char *why,
                     size_t size)
{
    char ref[ID_MAX + 16], region[64], url[1024], from_arn[64];
    snprintf(ref, sizeof ref, "ssm:%s", rest);
    arn_region(rest, strlen(rest), from_arn, sizeof from_arn);
    if (pick_region(s, from_arn, ref, region, sizeof region, why, size) != 0) return -1;
    aws_endpoint(s ? s->ssm_url : NULL, "AWS_ENDPOINT_URL_SSM", "ssm", region, url, sizeof url);
    json_t *req = json_pack("{sssb}", "Name", rest, "WithDecryption", 1), *ans = NULL;
    int rc =
        req ? call(s, ref, "ssm", url, region, "AmazonSSM.GetParameter", req, &ans, why, size) : -1;
    json_decref(req);
    if (rc != 0) return -1;
    json_t *v = json_object_get(json_object_get(ans, "Parameter"), "Value");
    if (json_is_string(v))
        rc = secrets__take(json_string_value(v), json_string_length(v), SECRETS_MULTILINE, ref,
                           value, why, size);
    else {
        snprintf(why, size, "%s: the answer has no Parameter.Value", ref);
        rc = -1;
    }
    answer_free(ans);
    return rc;
}

const struct secrets__store secrets__aws_sm = {"aws-sm:", SECRETS_AWS_SM, sm_check, sm_fetch};
const struct secrets__store secrets__ssm = {"ssm:", SECRETS_SSM, ssm_check, ssm_fetch};
