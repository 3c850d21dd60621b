/*
 * guard/content — the content guards (`guards:` in the config): what a request may say and
 * what an answer may carry.
 *
 *   input   every text of the request model (chat message contents, text parts, the
 *           completions prompt, embedding inputs — whichever surface the request came
 *           through): `strip_control` removes control and invisible format characters
 *           (guard/strip.h) first, so the rules and every target see the cleaned text;
 *           `deny` rules (PCRE2, prefiltered by Hyperscan: guard/deny) refuse it (400
 *           guard_blocked, naming the rule);
 *           `pii` off | flag (record) | route_local (pin to private targets) | block (400).
 *   output  the answer's text (choices' message.content / text; stream deltas): `pii`
 *           off | flag (record) | redact ([REDACTED:<kind>]) | block (502; a stream that
 *           already started ends with an error event). Streams are redacted across chunk
 *           boundaries by guard/pii's stream matcher.
 *
 * What fired is reported as rule and kind names only — never the matched text — for the
 * x-stratus-guard header and the ledger's `guard` column.
 *
 * Thread: event-loop thread only (one detector, shared match data and Hyperscan scratch).
 */
#ifndef STRATUS_GUARD_CONTENT_H
#define STRATUS_GUARD_CONTENT_H

#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"
#include "guard/pii.h"
#include "openai/request.h"
#include "util/err.h"

struct arena;
struct content_guard;

/** @return an *owned* guard for `conf` (borrowed; must outlive it), or NULL with `err`. */
struct content_guard *content_guard_new(const struct guards_conf *conf, struct err *err);

/** NULL-safe. */
void content_guard_free(struct content_guard *g);

struct deny;

/** The deny rules' matcher (*borrowed*, lives as long as `g`), or NULL when there are none:
 *  for the start-up log of rules that run without the prefilter (guard/deny.h). */
const struct deny *content_guard_deny(const struct content_guard *g);

/** The guards are configured at all (else every call below is a no-op). */
bool content_guard_active(const struct content_guard *g);

/* What the input check decided. */
struct input_verdict {
    bool stripped;         /* strip_control removed something: the request was rewritten */
    const char *deny_rule; /* the first rule that matched (borrowed from the config), or NULL */
    pii_kinds pii;         /* kinds found (when input pii is not off) */
    bool private_only;     /* only self-hosted or `private: true` targets may serve it */
    char fired[200];       /* "strip_control", "deny:<rule>", "pii:<kinds>", "route_local": joined
                              by ", " */
};

/**
 * Cleans and checks the request's text. `privacy_local`: the client asked for
 * privacy-pinned routing (x-stratus-privacy: local).
 * @param r  in: the parsed request. When strip_control removed something, *r is replaced
 *           by a request model over a rewritten body (*arena*; its native passthrough off:
 *           the client's own body still holds what was removed) — send that one upstream.
 *           When nothing was removed *r is untouched and nothing was copied.
 * @return 0 (go; v->private_only says how to route), or -1 with `err`: 400 guard_blocked
 * (a deny rule, or pii: block), 500 on OOM. *r may have been replaced either way.
 */
int content_guard_input(struct content_guard *g, const struct openai_request **r,
                        bool privacy_local, struct arena *arena, struct input_verdict *v,
                        struct err *err);

/* ---- output ------------------------------------------------------------------------- */

struct output_guard;

/** Per request: NULL when output pii is off (or out of memory: then `*oom`). Lives in
 *  `arena`. */
struct output_guard *output_guard_new(struct content_guard *g, struct arena *arena, bool *oom);

/** The answer's text must be seen as OpenAI data (no passthrough of a target's own bytes). */
bool output_guard_rewrites(const struct output_guard *o);

/**
 * A whole answer (OpenAI JSON). *out is set to a rewritten copy (*owned*, free()) or NULL
 * when the answer goes as it is.
 * @return 0, or -1 with `err` (502 guard_blocked under pii: block; 500 OOM).
 */
int output_guard_body(struct output_guard *o, const char *json, size_t len, char **out,
                      size_t *out_len, struct err *err);

/**
 * One chat.completion.chunk. *out as above (held-back text makes contents shorter; the
 * choice's finishing chunk gets what was held). Under block, once PII is seen the chunk is
 * emptied and output_guard_blocked() turns true.
 * @return 0, or -1 out of memory.
 */
int output_guard_chunk(struct output_guard *o, const char *json, size_t len, char **out,
                       size_t *out_len);

/** The stream ends: a chunk carrying text still held (no finish_reason came), or NULL. */
int output_guard_stream_end(struct output_guard *o, char **out, size_t *out_len);

bool output_guard_blocked(const struct output_guard *o);

/** Kinds found in the answer so far. */
pii_kinds output_guard_kinds(const struct output_guard *o);

#endif
