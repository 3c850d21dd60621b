/*
 * DESIGN: each admin call is a malloc'd job (not in the request arena: the client may go
 * while the job runs). The job learns that its request is gone through the arena's free
 * hook and then only frees itself. Changes to keys re-read the key list in the same job, so
 * the guard has the change before the answer leaves.
 */
#include "api/admin.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/respond.h"
#include "app.h"
#include "generation.h"
#include "cost/margin.h"
#include "cost/report.h"
#include "guard/guard.h"
#include "guard/keyjson.h"
#include "http/server.h"
#include "store/jobs.h"
#include "util/arena.h"
#include "util/clock.h"

enum admin_op {
    OP_CREATE,
    OP_LIST,
    OP_REVOKE,
    OP_SPEND,
    OP_CUSTOMER_LIST,
    OP_CUSTOMER_SET,
    OP_CUSTOMER_REMOVE,
    OP_MARGIN
};

struct admin_job {
    enum admin_op op;
    struct app *app;
    struct http_request *req; /* NULL once the request is freed */
    struct job_link *link;    /* in the request's arena while req is set */
    struct key_record key;    /* create: the new key; revoke: id */
    char secret[KEY_SECRET_SIZE];
    char aws_secret[AWSKEY_SECRET_SIZE]; /* create with "aws": true; "" otherwise */
    int rc;
    char why[400];
    struct key_record *keys; /* the key list after the call */
    int n_keys;
    struct customer_record customer;   /* set: the new tier; remove: which */
    struct customer_record *customers; /* the customer table after a customer call */
    int n_customers;
    struct spend_report report;
    struct spend_query query;
    struct margin_report margin;
    struct margin_query margin_query;
    bool csv;  /* answer text/csv, rendered by the job (off the loop) */
    char *out; /* the CSV, malloc'd */
    size_t out_len;
};

static void fail(struct http_request *req, const struct err *e)
{
    api_log(req, e->status, e->msg);
    http_respond_error(req, e);
}

/* Lives in the request arena: tells a job still out that its request is gone. */
struct job_link {
    struct admin_job *job; /* NULL once the job is done */
};

static void forget_request(void *ud)
{
    struct job_link *l = ud;
    if (l->job) l->job->req = NULL;
}

static void run(struct store_handle *s, void *ud)
{
    struct admin_job *j = ud;
    switch (j->op) {
    case OP_CREATE:
        j->rc = s->ops->key_insert(s->db, &j->key, j->why, sizeof j->why);
        break;
    case OP_REVOKE:
        j->rc = s->ops->key_revoke(s->db, j->key.id, clock_wall_ms(), j->why, sizeof j->why);
        break;
    case OP_LIST:
        j->rc = 0;
        break;
    case OP_CUSTOMER_SET:
        j->rc = s->ops->customer_set(s->db, &j->customer, j->why, sizeof j->why);
        goto customers;
    case OP_CUSTOMER_REMOVE:
        j->rc = s->ops->customer_remove(s->db, j->customer.customer, j->why, sizeof j->why);
        goto customers;
    case OP_CUSTOMER_LIST:
        j->rc = 0;
        goto customers;
    case OP_MARGIN:
        j->rc = margin_report_build(s, &j->margin_query, &j->margin, j->why, sizeof j->why);
        return;
    case OP_SPEND:
        j->rc = spend_report_build(s, &j->query, &j->report, j->why, sizeof j->why);
        if (j->rc == 0 && j->csv && (j->out = spend_report_csv(&j->report, &j->out_len)) == NULL)
            j->rc = -1, snprintf(j->why, sizeof j->why, "out of memory");
        return;
    }
    if (j->rc >= 0) j->n_keys = s->ops->key_list(s->db, &j->keys, j->why, sizeof j->why);
    return;
customers: /* re-read in the same job, so the guard has the change before the answer leaves */
    if (j->rc >= 0)
        j->n_customers = s->ops->customer_list(s->db, &j->customers, j->why, sizeof j->why);
}

static bool customer_op(enum admin_op op)
{
    return op == OP_CUSTOMER_LIST || op == OP_CUSTOMER_SET || op == OP_CUSTOMER_REMOVE;
}

static json_t *customer_to_json(const struct customer_record *c)
{
    char when[32];
    clock_iso8601(c->updated_ms, when, sizeof when);
    return json_pack("{s:s, s:s, s:s}", "customer", c->customer, "tier", c->tier, "updated_at",
                     when);
}

static void done(void *ud)
{
    struct admin_job *j = ud;
    struct http_request *req = j->req;
    if (j->n_keys >= 0 && j->keys && j->rc >= 0) {
        guard_replace_keys(j->app->guard, j->keys, (size_t)j->n_keys); /* takes the array */
        j->keys = NULL;
    }
    json_t *customers = NULL;
    if (customer_op(j->op) && j->rc >= 0 && j->n_customers >= 0) {
        customers = json_array();
        for (int i = 0; i < j->n_customers; i++)
            json_array_append_new(customers, customer_to_json(&j->customers[i]));
        guard_replace_customers(j->app->guard, j->customers, (size_t)j->n_customers);
        j->customers = NULL;
    }
    if (req) j->link->job = NULL; /* the request outlives the job now */
    struct err e;
    err_clear(&e);
    if (req == NULL) {
        /* the client left; the change (if any) stands */
    } else if ((j->op == OP_SPEND || j->op == OP_MARGIN) && j->rc == -2) {
        err_set(&e, 400, "invalid_request_error", "report_too_large", "%s", j->why);
        fail(req, &e);
    } else if (j->op == OP_MARGIN && j->rc < 0) {
        err_set(&e, 503, "server_error", "store_unavailable", "the store failed: %s", j->why);
        fail(req, &e);
    } else if (j->op == OP_MARGIN) {
        api_respond_json(req, 200, margin_report_json(&j->margin));
    } else if (customer_op(j->op) && (j->rc < 0 || j->n_customers < 0)) {
        err_set(&e, 503, "server_error", "store_unavailable", "the store failed: %s", j->why);
        fail(req, &e);
    } else if (j->op == OP_CUSTOMER_LIST) {
        api_respond_json(req, 200, json_pack("{s:s, s:O}", "object", "list", "data", customers));
    } else if (j->op == OP_CUSTOMER_SET) {
        api_respond_json(req, 200, customer_to_json(&j->customer));
    } else if (j->op == OP_CUSTOMER_REMOVE && j->rc == 0) {
        err_set(&e, 404, "invalid_request_error", "customer_not_found",
                "no customer '%.128s' in the customer table", j->customer.customer);
        fail(req, &e);
    } else if (j->op == OP_CUSTOMER_REMOVE) {
        api_respond_json(req, 200,
                         json_pack("{s:s, s:b}", "customer", j->customer.customer, "removed", 1));
    } else if (j->rc < 0 || (j->op != OP_SPEND && j->n_keys < 0)) {
        err_set(&e, 503, "server_error", "store_unavailable", "the store failed: %s", j->why);
        fail(req, &e);
    } else if (j->op == OP_CREATE) {
        json_t *doc = key_to_json(&j->key, clock_wall_ms());
        json_object_set_new(doc, "key", json_string(j->secret));
        if (j->aws_secret[0])
            json_object_set_new(doc, "aws_secret_access_key", json_string(j->aws_secret));
        api_respond_json(req, 201, doc);
    } else if (j->op == OP_REVOKE && j->rc == 0) {
        err_set(&e, 404, "invalid_request_error", "key_not_found",
                "no live key with id '%s' (already revoked, or never made)", j->key.id);
        fail(req, &e);
    } else if (j->op == OP_REVOKE) {
        api_respond_json(req, 200, json_pack("{s:s, s:b}", "id", j->key.id, "revoked", 1));
    } else if (j->op == OP_LIST) {
        json_t *data = json_array();
        const struct key_table *t = guard_keys(j->app->guard);
        int64_t now = clock_wall_ms();
        for (size_t i = 0; i < key_table_size(t); i++)
            json_array_append_new(data, key_to_json(key_table_at(t, i), now));
        api_respond_json(req, 200, json_pack("{s:s, s:o}", "object", "list", "data", data));
    } else if (j->csv) {
        char disposition[80];
        snprintf(disposition, sizeof disposition, "attachment; filename=\"spend-%s.csv\"",
                 spend_group_name(j->query.by));
        http_add_header(req, "Content-Disposition", disposition);
        api_log(req, 200, NULL);
        http_respond(req, 200, "text/csv; charset=utf-8", j->out, j->out_len);
    } else {
        api_respond_json(req, 200, spend_report_json(&j->report));
    }
    json_decref(customers);
    free(j->out);
    free(j->keys);
    free(j->customers);
    if (j->op == OP_SPEND) spend_report_free(&j->report);
    if (j->op == OP_MARGIN) margin_report_free(&j->margin);
    explicit_bzero(j->secret, sizeof j->secret);
    explicit_bzero(j->aws_secret, sizeof j->aws_secret);
    free(j);
}

static struct admin_job *new_job(struct app *app, struct http_request *req, enum admin_op op)
{
    struct admin_job *j = calloc(1, sizeof *j);
    if (j == NULL) return NULL;
    j->op = op;
    j->app = app;
    j->req = req;
    j->n_keys = -1;
    j->n_customers = -1;
    return j;
}

static void submit(struct admin_job *j)
{
    struct err e;
    j->link = arena_calloc(j->req->arena, 1, sizeof *j->link);
    if (j->link) j->link->job = j;
    if (j->link == NULL || arena_on_free(j->req->arena, forget_request, j->link) != 0 ||
        store_jobs_submit(j->app->jobs, run, done, j) != 0) {
        err_oom(&e);
        fail(j->req, &e);
        if (j->link) j->link->job = NULL;
        free(j);
    }
}

/* The request body as JSON (owned), or NULL for an empty body; strict like the model APIs'
 * bodies (a duplicate key is refused, not silently the last one). @return 0, or -1 with `e`. */
static int body_json(struct http_request *req, json_t **out, struct err *e)
{
    *out = NULL;
    size_t len = evbuffer_get_length(req->body);
    if (len == 0) return 0;
    json_error_t jerr;
    *out = json_loadb((const char *)evbuffer_pullup(req->body, -1), len, JSON_REJECT_DUPLICATES,
                      &jerr);
    if (*out != NULL) return 0;
    return err_set(e, 400, "invalid_request_error", "invalid_json",
                   "request body is not valid JSON: %s at line %d column %d", jerr.text, jerr.line,
                   jerr.column);
}

void admin_create_key(struct app *app, struct http_request *req, const struct principal *who)
{
    (void)who;
    struct err e;
    err_clear(&e);
    json_t *body = NULL;
    if (body_json(req, &body, &e) == 0 && body == NULL) body = json_object();
    if (body == NULL) {
        if (e.status == 0) err_oom(&e);
        fail(req, &e);
        return;
    }
    struct admin_job *j = new_job(app, req, OP_CREATE);
    if (j == NULL) {
        json_decref(body);
        err_oom(&e);
        fail(req, &e);
        return;
    }
    int64_t now = clock_wall_ms();
    /* "aws": true also gives the key SigV4 credentials (AWS SDKs sign with them). */
    json_t *aws = json_object_get(body, "aws");
    int rc = aws && !json_is_boolean(aws)
                 ? err_param(&e, 400, "aws", "\"aws\" must be true or false")
                 : 0;
    bool want_aws = json_is_true(aws);
    json_object_del(body, "aws");
    if (rc == 0) rc = key_from_json(body, app->gen->cfg, now, &j->key, &e);
    json_decref(body);
    if (rc == 0 && keys_mint(&j->key, j->secret, now) != 0)
        rc = err_set(&e, 500, "server_error", NULL, "the random source failed");
    if (rc == 0 && want_aws && guard_mint_aws(app->guard, &j->key, j->aws_secret) != 0)
        rc = err_set(&e, 500, "server_error", NULL, "could not make AWS credentials");
    if (rc != 0) {
        free(j);
        fail(req, &e);
        return;
    }
    submit(j);
}

/* An operation that needs nothing from the request: queued as it is. */
static void submit_op(struct app *app, struct http_request *req, enum admin_op op)
{
    struct admin_job *j = new_job(app, req, op);
    if (j == NULL) {
        struct err e;
        err_oom(&e);
        fail(req, &e);
        return;
    }
    submit(j);
}

void admin_list_keys(struct app *app, struct http_request *req, const struct principal *who)
{
    (void)who;
    submit_op(app, req, OP_LIST);
}

void admin_revoke_key(struct app *app, struct http_request *req, const struct principal *who)
{
    (void)who;
    const char *id = req->path + strlen("/admin/keys/");
    struct err e;
    if (strlen(id) >= sizeof((struct key_record *)0)->id || strchr(id, '/')) {
        err_set(&e, 404, "invalid_request_error", "key_not_found", "no key with id '%.40s'", id);
        fail(req, &e);
        return;
    }
    struct admin_job *j = new_job(app, req, OP_REVOKE);
    if (j == NULL) {
        err_oom(&e);
        fail(req, &e);
        return;
    }
    snprintf(j->key.id, sizeof j->key.id, "%s", id);
    submit(j);
}

void admin_spend(struct app *app, struct http_request *req, const struct principal *who)
{
    (void)who;
    struct err e;
    err_clear(&e);
    struct evkeyvalq q; /* initialised by the parser, even for "" */
    if (evhttp_parse_query_str(req->query ? req->query : "", &q) != 0) {
        err_set(&e, 400, "invalid_request_error", "invalid_query",
                "malformed query string: use group_by=…&from=…&to=…");
        fail(req, &e);
        return;
    }
    const char *group = evhttp_find_header(&q, "group_by"),
               *from_s = evhttp_find_header(&q, "from"), *to_s = evhttp_find_header(&q, "to"),
               *factor_s = evhttp_find_header(&q, "anomaly_factor"),
               *bucket_s = evhttp_find_header(&q, "bucket"), *top_s = evhttp_find_header(&q, "top"),
               *format = evhttp_find_header(&q, "format"),
               *margin_s = evhttp_find_header(&q, "margin");
    /* CSV when asked by name, or by an Accept that names text/csv (a browser download). */
    const char *accept = http_request_header(req, "Accept");
    bool csv = format ? strcmp(format, "csv") == 0 : accept && strstr(accept, "text/csv");
    int bucket = spend_bucket_parse(bucket_s);
    char *top_end = NULL;
    long top = top_s ? strtol(top_s, &top_end, 10) : 0;
    int64_t now = clock_wall_ms(), from = clock_month_start_ms(now, 0), to = now + 1;
    /* Revenue and margin (docs/tiers.md): always by tier; by customer with margin=1. */
    bool by_tier = group && strcmp(group, "tier") == 0;
    bool margin = by_tier || (margin_s && strcmp(margin_s, "1") == 0);
    int by = by_tier ? SPEND_BY_CUSTOMER : group ? spend_group_parse(group) : SPEND_BY_MODEL;
    double factor = factor_s ? atof(factor_s) : 3;
    if (margin_s && strcmp(margin_s, "1") != 0 && strcmp(margin_s, "0") != 0)
        err_param(&e, 400, "margin", "margin must be 1 or 0 (got '%.64s')", margin_s);
    else if (margin && !by_tier && by != SPEND_BY_CUSTOMER)
        err_param(&e, 400, "group_by",
                  "margin=1 groups by tier or customer only (got group_by=%.64s)",
                  group ? group : "model");
    else if (margin && (bucket_s || top_s || csv))
        err_param(&e, 400,
                  bucket_s ? "bucket"
                  : top_s  ? "top"
                           : "format",
                  "a margin report (group_by=tier, or margin=1) has no bucket, top or CSV form");
    else if (by < 0)
        err_param(&e, 400, "group_by",
                  "group_by must be model, key, team, customer, backend, route or tier (got "
                  "'%.64s')",
                  group);
    else if (from_s && report_parse_time(from_s, now, &from) != 0)
        err_param(&e, 400, "from",
                  "from must be a date (2026-11-01), a time (2026-11-01T00:00:00Z), "
                  "a duration back from now (7d, 12h) or epoch milliseconds; got '%.64s'",
                  from_s);
    else if (to_s && report_parse_time(to_s, now, &to) != 0)
        err_param(&e, 400, "to",
                  "to must be a date, a time, a duration or epoch milliseconds; got '%.64s'", to_s);
    else if (!(factor > 0))
        err_param(&e, 400, "anomaly_factor", "anomaly_factor must be a positive number");
    else if (bucket < 0)
        err_param(&e, 400, "bucket", "bucket must be hour or day (got '%.64s')", bucket_s);
    else if (top_s && (top_end == top_s || *top_end || top < 1 || top > 1000))
        err_param(&e, 400, "top", "top must be a whole number from 1 to 1000 (got '%.64s')", top_s);
    else if (format && strcmp(format, "csv") != 0 && strcmp(format, "json") != 0)
        err_param(&e, 400, "format", "format must be json or csv (got '%.64s')", format);
    evhttp_clear_headers(&q);
    if (e.status) {
        fail(req, &e);
        return;
    }
    struct admin_job *j = new_job(app, req, margin ? OP_MARGIN : OP_SPEND);
    if (j == NULL) {
        err_oom(&e);
        fail(req, &e);
        return;
    }
    j->margin_query =
        (struct margin_query){.by_customer = !by_tier, .from_ms = from, .to_ms = to, .now_ms = now};
    j->query = (struct spend_query){.by = (enum spend_group)by,
                                    .bucket = (enum spend_bucket)bucket,
                                    .top = (int)top,
                                    .from_ms = from,
                                    .to_ms = to,
                                    .now_ms = now,
                                    .anomaly_factor = factor};
    j->csv = csv;
    submit(j);
}

/* ---- customers (docs/tiers.md) ---- */

void admin_list_customers(struct app *app, struct http_request *req, const struct principal *who)
{
    (void)who;
    submit_op(app, req, OP_CUSTOMER_LIST);
}

/* A customer id as x-stratus-customer carries it: printable, no control characters. */
static int check_customer(const char *id, struct err *e)
{
    size_t n = strlen(id);
    if (n == 0 || n >= sizeof((struct customer_record *)0)->customer)
        return err_param(e, 400, "customer", "\"customer\" must be 1 to %zu characters",
                         sizeof((struct customer_record *)0)->customer - 1);
    for (const char *c = id; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            return err_param(e, 400, "customer",
                             "\"customer\" must not contain control characters");
    return 0;
}

/* 400 for a field other than customer and tier: a typo must not pass silently. */
static void unknown_field(json_t *body, struct err *e)
{
    const char *field;
    json_t *value;
    json_object_foreach(body, field, value)
    {
        if (strcmp(field, "customer") != 0 && strcmp(field, "tier") != 0) {
            err_set(e, 400, "invalid_request_error", "unknown_field",
                    "unknown field \"%.64s\" (known: customer, tier)", field);
            return;
        }
    }
}

void admin_set_customer(struct app *app, struct http_request *req, const struct principal *who)
{
    (void)who;
    struct err e;
    err_clear(&e);
    json_t *body = NULL;
    body_json(req, &body, &e);
    const json_t *cust = json_object_get(body, "customer"), *tier = json_object_get(body, "tier");
    if (e.status == 0 && body == NULL)
        err_set(&e, 400, "invalid_request_error", "invalid_json",
                "request body is empty: send {\"customer\": ID, \"tier\": T}");
    else if (e.status == 0 && !json_is_object(body))
        err_set(&e, 400, "invalid_request_error", "invalid_json",
                "request body must be a JSON object");
    if (e.status == 0) unknown_field(body, &e);
    if (e.status == 0 && !json_is_string(cust))
        err_param(&e, 400, "customer", "\"customer\" is required and must be a string");
    else if (e.status == 0 && !json_is_string(tier))
        err_param(&e, 400, "tier", "\"tier\" is required and must be a string");
    else if (e.status == 0 && check_customer(json_string_value(cust), &e) == 0 &&
             config_find_tier(app->gen->cfg, json_string_value(tier)) == NULL) {
        err_param(&e, 400, "tier", "tier '%.64s' is not configured", json_string_value(tier));
        e.code = "tier_not_found";
    }
    struct admin_job *j = e.status ? NULL : new_job(app, req, OP_CUSTOMER_SET);
    if (e.status == 0 && j == NULL) err_oom(&e);
    if (j) {
        snprintf(j->customer.customer, sizeof j->customer.customer, "%s", json_string_value(cust));
        snprintf(j->customer.tier, sizeof j->customer.tier, "%s", json_string_value(tier));
        j->customer.updated_ms = clock_wall_ms();
    }
    json_decref(body);
    if (e.status) {
        fail(req, &e);
        return;
    }
    submit(j);
}

void admin_remove_customer(struct app *app, struct http_request *req, const struct principal *who)
{
    (void)who;
    struct err e;
    err_clear(&e);
    /* The id is a path segment, so it arrives percent-encoded ("acme%20corp"). */
    char *id = evhttp_uridecode(req->path + strlen("/admin/customers/"), 0, NULL);
    if (id == NULL) {
        err_oom(&e);
    } else if (strchr(id, '/') || check_customer(id, &e) != 0) {
        err_clear(&e);
        err_set(&e, 404, "invalid_request_error", "customer_not_found",
                "no customer '%.64s' in the customer table", id);
    }
    struct admin_job *j = e.status ? NULL : new_job(app, req, OP_CUSTOMER_REMOVE);
    if (e.status == 0 && j == NULL) err_oom(&e);
    if (j) snprintf(j->customer.customer, sizeof j->customer.customer, "%s", id);
    free(id);
    if (e.status) {
        fail(req, &e);
        return;
    }
    submit(j);
}

/* ", "-joined section names as a JSON array. */
static json_t *section_list(const char *joined)
{
    json_t *list = json_array();
    for (const char *p = joined; *p;) {
        const char *end = strstr(p, ", ");
        size_t n = end ? (size_t)(end - p) : strlen(p);
        json_array_append_new(list, json_stringn(p, n));
        p += n + (end ? 2 : 0);
    }
    return list;
}

void admin_reload(struct app *app, struct http_request *req, const struct principal *who)
{
    (void)who;
    struct err e;
    err_clear(&e);
    struct reload_result r;
    if (app_reload(app, &r, &e) != 0) {
        fail(req, &e);
        return;
    }
    api_respond_json(req, 200,
                     json_pack("{s:s, s:i, s:o, s:o, s:{s:i, s:i, s:i}}", "object", "reload",
                               "generation", (json_int_t)r.generation, "changed",
                               section_list(r.changed), "restart_needed",
                               section_list(r.restart_needed), "engines", "kept", r.engines_kept,
                               "started", r.engines_started, "stopped", r.engines_stopped));
}
