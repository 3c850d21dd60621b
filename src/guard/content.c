/*
 * DESIGN
 * Input: the request model is the OpenAI shape whatever the surface, so one walk over its
 * token index finds every text a client wrote (message contents and text parts, prompt,
 * input). Strings without escapes are matched in place; escaped ones are unescaped into
 * the arena first. Deny rules look at each text on its own, so a rule never matches across
 * two messages or parts; in the first text any rule matches, the first rule (as written)
 * that matches decides. guard/deny answers that for a text in one Hyperscan pass plus PCRE2
 * on the rules it flags.
 *
 * Stripping (strip_control) runs before the rules, as its own walk: a read-only scan of
 * each string as written (guard/strip.h) that finds nothing in almost every request, so
 * the common path copies nothing. Only the strings that hold something are unescaped,
 * cleaned and re-escaped, spliced into one new body and parsed again as a new request
 * model; every provider builds its upstream body from the model, so none needs to know.
 *
 * Output: answers reach the proxy as OpenAI JSON (whole, or chat.completion.chunk events)
 * before any surface writes them, so redacting there covers every inbound API. A whole
 * answer is decoded with jansson and its content strings rewritten only when something
 * matched. A stream keeps one pii_stream per choice index: each delta's text goes through
 * it, what is final goes out in that delta, and what could still become a match waits for
 * the next delta or the choice's finishing chunk — text is never reordered or dropped.
 */
#include "guard/content.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guard/deny.h"
#include "guard/strip.h"
#include "util/arena.h"
#include "util/json_text.h"

#define MAX_CHOICES 128 /* OpenAI's n limit */

struct content_guard {
    const struct guards_conf *conf;
    struct pii *pii;   /* owned; NULL when neither side looks for PII */
    struct deny *deny; /* owned; NULL without deny rules */
};

struct output_guard {
    struct content_guard *g;
    enum guard_pii mode;
    bool blocked;
    pii_kinds kinds;
    struct pii_stream *streams[MAX_CHOICES]; /* per choice index; malloc, freed with arena */
    bool text_field;                         /* completions: choices[].text, not delta */
    json_t *head;                            /* id, object, created, model of the stream */
};

struct content_guard *content_guard_new(const struct guards_conf *conf, struct err *err)
{
    struct content_guard *g = calloc(1, sizeof *g);
    if (g == NULL) {
        err_oom(err);
        return NULL;
    }
    g->conf = conf;
    if ((conf->input_pii != GUARD_PII_OFF || conf->output_pii != GUARD_PII_OFF) &&
        (g->pii = pii_new(err)) == NULL)
        goto fail;
    if (conf->n_deny && (g->deny = deny_new(conf->deny, conf->n_deny, err)) == NULL) goto fail;
    return g;
fail:
    content_guard_free(g);
    return NULL;
}

void content_guard_free(struct content_guard *g)
{
    if (g == NULL) return;
    pii_free(g->pii);
    deny_free(g->deny);
    free(g);
}

const struct deny *content_guard_deny(const struct content_guard *g)
{
    return g ? g->deny : NULL;
}

bool content_guard_active(const struct content_guard *g)
{
    return g && (g->conf->strip_control || g->conf->n_deny || g->conf->input_pii != GUARD_PII_OFF ||
                 g->conf->output_pii != GUARD_PII_OFF);
}

/* ---- input -------------------------------------------------------------------------- */

/* One string of the body rewritten: its token's bytes, quotes included, become `text`. */
struct edit {
    size_t from, to;
    char *text; /* arena */
    size_t len;
    struct edit *next;
};

struct walk {
    struct content_guard *g;
    struct input_verdict *v;
    struct arena *arena;
    struct err *err;
    bool stop;         /* a verdict was reached, or an error */
    bool strip;        /* this walk strips (else it checks) */
    struct edit *head; /* strip: the edits, in text order */
    struct edit **tail;
    size_t grown; /* strip: bytes the edits add (escapes) beyond what they remove */
};

static void check_text(struct walk *w, const char *t, size_t n)
{
    const struct guards_conf *c = w->g->conf;
    long i = w->g->deny ? deny_match(w->g->deny, t, n) : -1;
    if (i >= 0) {
        w->v->deny_rule = c->deny[i].name;
        w->stop = true;
        err_set(w->err, 400, "invalid_request_error", "guard_blocked",
                "the request was refused by guard rule '%s'", c->deny[i].name);
        return;
    }
    if (c->input_pii != GUARD_PII_OFF) {
        pii_kinds k = pii_scan(w->g->pii, t, n);
        w->v->pii |= k;
        if (k && c->input_pii == GUARD_PII_BLOCK) {
            char names[120];
            w->stop = true;
            err_set(w->err, 400, "invalid_request_error", "guard_blocked",
                    "the request contains personal data or secrets (%s)",
                    pii_kinds_format(k, ", ", names, sizeof names));
        }
    }
}

/* Strip: string token i, whose raw bytes hold something to strip, becomes an edit. */
static void strip_string(struct walk *w, const struct json_scan *s, int i)
{
    char *t = json_scan_string_dup(s, i, w->arena);
    if (t == NULL) goto oom;
    size_t n = strlen(t), kept = strip_text(t, n);
    if (kept == n) return; /* the raw text only looked like it (a lone surrogate escape) */
    struct edit *e = arena_alloc(w->arena, sizeof *e);
    char *q = e ? arena_alloc(w->arena, kept * 6 + 3) : NULL;
    if (q == NULL) goto oom;
    q[0] = '"';
    size_t ql = json_escape(q + 1, kept * 6 + 1, t, kept) + 2;
    q[ql - 1] = '"';
    *e = (struct edit){
        .from = (size_t)s->tok[i].start - 1, .to = (size_t)s->tok[i].end + 1, .text = q, .len = ql};
    if (ql > e->to - e->from) w->grown += ql - (e->to - e->from);
    *w->tail = e;
    w->tail = &e->next;
    return;
oom:
    w->stop = true;
    err_oom(w->err);
}

static void visit_string(struct walk *w, const struct json_scan *s, int i)
{
    if (w->stop || !json_scan_is_string(s, i)) return;
    const char *raw = s->js + s->tok[i].start;
    size_t n = (size_t)(s->tok[i].end - s->tok[i].start);
    if (w->strip) {
        if (strip_json_wanted(raw, n)) strip_string(w, s, i);
        return;
    }
    if (memchr(raw, '\\', n) == NULL) {
        check_text(w, raw, n);
        return;
    }
    char *t = json_scan_string_dup(s, i, w->arena);
    if (t == NULL) {
        w->stop = true;
        err_oom(w->err);
        return;
    }
    check_text(w, t, strlen(t));
}

/* A string, or an array of strings (prompt, input) / of parts with "text" (content). */
static void visit_texts(struct walk *w, const struct json_scan *s, int i)
{
    if (i < 0) return;
    if (json_scan_is_string(s, i)) {
        visit_string(w, s, i);
        return;
    }
    if (!json_scan_is_array(s, i)) return;
    int n = json_scan_size(s, i);
    for (int k = 0, e = i + 1; k < n && !w->stop; k++, e = json_scan_skip(s, e)) {
        if (json_scan_is_object(s, e))
            visit_string(w, s, json_scan_get(s, e, "text"));
        else
            visit_string(w, s, e);
    }
}

/* Every text the client wrote, in text order. */
static void walk_request(struct walk *w, const struct openai_request *r)
{
    const struct json_scan *s = &r->scan;
    switch (r->endpoint) {
    case OPENAI_CHAT: {
        int msgs = json_scan_get(s, 0, "messages");
        if (!json_scan_is_array(s, msgs)) break;
        int n = json_scan_size(s, msgs);
        for (int k = 0, m = msgs + 1; k < n && !w->stop; k++, m = json_scan_skip(s, m))
            if (json_scan_is_object(s, m)) visit_texts(w, s, json_scan_get(s, m, "content"));
        break;
    }
    case OPENAI_COMPLETIONS:
        visit_texts(w, s, json_scan_get(s, 0, "prompt"));
        break;
    case OPENAI_EMBEDDINGS:
        visit_texts(w, s, json_scan_get(s, 0, "input"));
        break;
    }
}

/* The body with the edits applied, parsed into a new request model: every provider builds
 * its upstream body from the model, so this one copy reaches every target. The client's own
 * body (native passthrough) still holds what was stripped, so it is not offered. */
static int rewrite_request(struct walk *w, const struct openai_request **r)
{
    const struct json_scan *s = &(*r)->scan;
    char *body = arena_alloc(w->arena, s->len + w->grown + 1);
    struct openai_request *nr = body ? arena_alloc(w->arena, sizeof *nr) : NULL;
    if (nr == NULL) return err_oom(w->err);
    size_t at = 0, len = 0;
    for (const struct edit *e = w->head; e; e = e->next) {
        memcpy(body + len, s->js + at, e->from - at);
        len += e->from - at;
        memcpy(body + len, e->text, e->len);
        len += e->len;
        at = e->to;
    }
    memcpy(body + len, s->js + at, s->len - at);
    len += s->len - at;
    body[len] = '\0';
    if (openai_parse_request((*r)->endpoint, body, len, w->arena, nr, w->err) != 0) return -1;
    *r = nr;
    return 0;
}

int content_guard_input(struct content_guard *g, const struct openai_request **r,
                        bool privacy_local, struct arena *arena, struct input_verdict *v,
                        struct err *err)
{
    *v = (struct input_verdict){.private_only = privacy_local};
    if (g == NULL) return 0;
    const struct guards_conf *c = g->conf;
    struct walk w = {.g = g, .v = v, .arena = arena, .err = err};
    if (c->strip_control) {
        w.strip = true;
        w.tail = &w.head;
        walk_request(&w, *r);
        if (w.stop) return -1;
        if (w.head) {
            if (rewrite_request(&w, r) != 0) return -1;
            v->stripped = true;
        }
        w.strip = false;
    }
    if (c->n_deny || c->input_pii != GUARD_PII_OFF) walk_request(&w, *r);
    if (v->pii && c->input_pii == GUARD_PII_ROUTE_LOCAL) v->private_only = true;
    size_t at = 0;
    if (v->stripped) at += (size_t)snprintf(v->fired, sizeof v->fired, "strip_control");
    if (v->deny_rule && at < sizeof v->fired)
        at += (size_t)snprintf(v->fired + at, sizeof v->fired - at, "%sdeny:%s", at ? ", " : "",
                               v->deny_rule);
    if (v->pii && at < sizeof v->fired) {
        char names[120];
        at += (size_t)snprintf(v->fired + at, sizeof v->fired - at, "%spii:%s", at ? ", " : "",
                               pii_kinds_format(v->pii, "+", names, sizeof names));
    }
    if (v->private_only && at < sizeof v->fired)
        snprintf(v->fired + at, sizeof v->fired - at, "%s%s", at ? ", " : "",
                 privacy_local ? "privacy:local" : "route_local");
    return w.stop ? -1 : 0;
}

/* ---- output ------------------------------------------------------------------------- */

static void release_output(void *ud)
{
    struct output_guard *o = ud;
    for (size_t i = 0; i < MAX_CHOICES; i++) pii_stream_free(o->streams[i]);
    json_decref(o->head);
}

struct output_guard *output_guard_new(struct content_guard *g, struct arena *arena, bool *oom)
{
    *oom = false;
    if (g == NULL || g->conf->output_pii == GUARD_PII_OFF) return NULL;
    struct output_guard *o = arena_calloc(arena, 1, sizeof *o);
    if (o == NULL || arena_on_free(arena, release_output, o) != 0) {
        *oom = true;
        return NULL;
    }
    o->g = g;
    o->mode = g->conf->output_pii;
    return o;
}

bool output_guard_rewrites(const struct output_guard *o)
{
    return o && o->mode != GUARD_PII_FLAG;
}

bool output_guard_blocked(const struct output_guard *o)
{
    return o && o->blocked;
}

pii_kinds output_guard_kinds(const struct output_guard *o)
{
    return o ? o->kinds : 0;
}

static int dump(json_t *doc, char **out, size_t *out_len)
{
    *out = json_dumps(doc, JSON_COMPACT | JSON_TEXT_REALS);
    if (*out == NULL) return -1;
    *out_len = strlen(*out);
    return 0;
}

int output_guard_body(struct output_guard *o, const char *json, size_t len, char **out,
                      size_t *out_len, struct err *err)
{
    *out = NULL;
    *out_len = 0;
    if (o == NULL) return 0;
    json_t *doc = json_loadb(json, len, 0, NULL);
    json_t *choices = json_object_get(doc, "choices");
    bool changed = false;
    int rc = 0;
    for (size_t i = 0; i < json_array_size(choices); i++) {
        json_t *ch = json_array_get(choices, i);
        json_t *holder = json_object_get(ch, "message");
        const char *key = "content";
        if (!json_is_object(holder)) {
            holder = ch;
            key = "text";
        }
        json_t *t = json_object_get(holder, key);
        if (!json_is_string(t)) continue;
        struct pii_buf b = {0};
        pii_kinds k = pii_redact(o->g->pii, json_string_value(t), json_string_length(t),
                                 o->mode != GUARD_PII_REDACT, &b);
        o->kinds |= k;
        if (k && o->mode == GUARD_PII_REDACT && !b.oom) {
            json_object_set_new(holder, key, json_stringn(b.data ? b.data : "", b.len));
            changed = true;
        }
        if (b.oom) rc = err_oom(err);
        free(b.data);
    }
    if (rc == 0 && o->kinds && o->mode == GUARD_PII_BLOCK) {
        char names[120];
        o->blocked = true;
        rc = err_set(err, 502, "server_error", "guard_blocked",
                     "the answer contained personal data or secrets (%s) and was withheld",
                     pii_kinds_format(o->kinds, ", ", names, sizeof names));
    } else if (rc == 0 && changed && dump(doc, out, out_len) != 0) {
        rc = err_oom(err);
    }
    json_decref(doc);
    return rc;
}

/* Runs one choice's text (and its end, when `finish`) through its stream. */
static int stream_text(struct output_guard *o, size_t idx, const char *t, size_t n, bool finish,
                       struct pii_buf *b)
{
    if (o->streams[idx] == NULL &&
        (o->streams[idx] = pii_stream_new(o->g->pii, o->mode != GUARD_PII_REDACT)) == NULL)
        return -1;
    pii_kinds k = pii_stream_feed(o->streams[idx], t, n, b);
    if (finish) k |= pii_stream_finish(o->streams[idx], b);
    o->kinds |= k;
    if (k && o->mode == GUARD_PII_BLOCK) o->blocked = true;
    return b->oom ? -1 : 0;
}

int output_guard_chunk(struct output_guard *o, const char *json, size_t len, char **out,
                       size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    if (o == NULL) return 0;
    json_t *doc = json_loadb(json, len, 0, NULL);
    json_t *choices = json_object_get(doc, "choices");
    if (json_array_size(choices) == 0) {
        json_decref(doc);
        return 0; /* usage or role only: nothing to look at */
    }
    if (o->head == NULL && (o->head = json_object()) != NULL) {
        const char *keep[] = {"id", "object", "created", "model"};
        for (size_t i = 0; i < 4; i++)
            if (json_object_get(doc, keep[i]))
                json_object_set(o->head, keep[i], json_object_get(doc, keep[i]));
    }
    bool changed = false;
    int rc = 0;
    for (size_t i = 0; i < json_array_size(choices) && rc == 0; i++) {
        json_t *ch = json_array_get(choices, i);
        json_int_t idx = json_integer_value(json_object_get(ch, "index"));
        json_t *holder = json_object_get(ch, "delta");
        const char *key = "content";
        if (!json_is_object(holder)) {
            holder = ch;
            key = "text";
            o->text_field = true;
        }
        json_t *t = json_object_get(holder, key);
        json_t *fr = json_object_get(ch, "finish_reason");
        bool finish = fr && !json_is_null(fr);
        if ((!json_is_string(t) && !finish) || idx < 0 || idx >= MAX_CHOICES) continue;
        struct pii_buf b = {0};
        bool was_blocked = o->blocked;
        rc = stream_text(o, (size_t)idx, json_is_string(t) ? json_string_value(t) : "",
                         json_is_string(t) ? json_string_length(t) : 0, finish, &b);
        if (rc == 0 && o->mode != GUARD_PII_FLAG) {
            /* block: text passes once final, and nothing after the first match */
            bool drop = o->blocked && (o->mode == GUARD_PII_BLOCK || was_blocked);
            size_t n = drop ? 0 : b.len;
            if (json_is_string(t) || n > 0) {
                json_object_set_new(holder, key, json_stringn(n ? b.data : "", n));
                changed = true;
            }
        }
        free(b.data);
    }
    if (rc == 0 && changed && dump(doc, out, out_len) != 0) rc = -1;
    json_decref(doc);
    return rc;
}

int output_guard_stream_end(struct output_guard *o, char **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    if (o == NULL || o->mode == GUARD_PII_FLAG || o->blocked) return 0;
    json_t *choices = json_array();
    int rc = 0;
    for (size_t i = 0; i < MAX_CHOICES && rc == 0; i++) {
        if (o->streams[i] == NULL || pii_stream_held(o->streams[i]) == 0) continue;
        struct pii_buf b = {0};
        rc = stream_text(o, i, "", 0, true, &b);
        if (rc == 0 && !o->blocked && b.len) {
            json_t *c = o->text_field ? json_pack("{sIs#sn}", "index", (json_int_t)i, "text",
                                                  b.data, b.len, "finish_reason")
                                      : json_pack("{sIs{ss#}sn}", "index", (json_int_t)i, "delta",
                                                  "content", b.data, b.len, "finish_reason");
            json_array_append_new(choices, c);
        }
        free(b.data);
    }
    if (rc == 0 && json_array_size(choices) > 0) {
        json_t *doc = o->head ? json_deep_copy(o->head) : json_object();
        json_object_set(doc, "choices", choices);
        rc = dump(doc, out, out_len);
        json_decref(doc);
    }
    json_decref(choices);
    return rc;
}
