/*
 * api/function — functions (`functions:` in the config) as a front door: a JSON input fills
 * the function's prompt template, the prompt goes through the same admission, routing,
 * attempts, cost and ledger path as any model request, and the answer becomes the
 * function's result — {label, score, scores} for classify, {output} for json and text.
 *
 * classify scores are probabilities: on the local engine, each label's log-probability
 * after the prompt (all its tokens, teacher-forced in one batch: the engine's
 * stratus_labels extension), normalised over the labels; on OpenAI-compatible upstreams,
 * the first answer token's top_logprobs shared out over the labels they begin; elsewhere
 * (Anthropic, Bedrock: no logprobs) one generated label, said as score_source "generated".
 *
 * An input that is an array is a batch: one call per element, all started at once (the
 * engine scores them in shared batches), one admission for all, one ledger row each, and
 * an array of results in the input's order (a failed element carries its error).
 *
 * The same invocation is reachable through several wire formats — a `function_door` each:
 * stratus's own (POST /v1/functions/{name}/invoke), AWS Lambda's Invoke and SageMaker
 * runtime's InvokeEndpoint (api/surface_lambda.c). A door only finds the credential and
 * writes answers and errors in its API's shape.
 *
 * Thread: event-loop thread only.
 */
#ifndef STRATUS_API_FUNCTION_H
#define STRATUS_API_FUNCTION_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "util/err.h"

struct app;
struct http_request;
struct principal;

#define FUNCTION_MAX_BATCH 256
/* An input is read whole into a document on the event loop: past this, 413 (a function's
 * input is a record — an email, a form — not a corpus; 1 MiB reads in a few ms). */
#define FUNCTION_MAX_INPUT_BYTES (1u << 20)

struct function_door {
    const char *name; /* "functions", "lambda", "sagemaker" */
    bool sigv4;       /* AWS SDKs sign with SigV4: keys made with --aws are checked that way */
    /** The credential in this API's place, as surface_ops.credential. */
    int (*credential)(const struct http_request *req, const char **key, size_t *len,
                      struct err *err);
    /** The function's result (JSON, borrowed). */
    void (*answer)(struct http_request *req, const char *json, size_t len);
    /** A failure. `function_error`: the function ran and failed (its input, the model's
     *  output, the upstream) — as opposed to the service refusing the call (unknown
     *  function, credentials, limits). `raw`: the model's text when it was not a valid
     *  answer, else NULL. */
    void (*fail)(struct http_request *req, const struct err *e, bool function_error,
                 const char *raw);
};

/** Invokes function `name` with the request body as input; answers through `door`. */
void function_invoke(struct app *app, struct http_request *req, const struct function_door *door,
                     const char *name);

/** The name in `path` = prefix + name + suffix, percent-decoded into `out` (the doors'
 *  paths: /v1/functions/{name}/invoke, Lambda's, SageMaker's); NULL when the path is not
 *  that, the name is empty or holds a '/', or it does not fit. */
const char *function_name_in_path(const char *path, const char *prefix, const char *suffix,
                                  char *out, size_t cap);

/** The route handler for POST /v1/functions/{name}/invoke (stratus's own door). */
void function_route(struct app *app, struct http_request *req, const struct principal *who);

/**
 * Fills `template`'s {{field}} placeholders from `input` (a JSON object): strings as they
 * are, other values as compact JSON, null as nothing. Values are text: a value holding
 * "{{x}}" is not expanded again.
 * @return a malloc'd string, or NULL with `err` (400 naming a missing field, whose name is
 *  also copied into `missing`; 500 on OOM).
 */
char *function_fill_template(const char *template, const json_t *input, char *missing,
                             size_t missing_cap, struct err *err);

/**
 * Label probabilities from label log-probabilities: exp, normalised to sum to 1 (stable for
 * any magnitudes). Writes n probabilities into `out`; @return the argmax (first on ties).
 */
size_t function_normalise(const double *logprobs, size_t n, double *out);

#endif
