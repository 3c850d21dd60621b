/*
 * DESIGN: functions through AWS's wire formats, so code written for Lambda or SageMaker
 * changes only its endpoint. Both are thin doors over api/function: they find the
 * function name in the path and speak AWS's error conventions — an x-amzn-ErrorType header
 * naming the exception (what the AWS SDKs turn into typed errors) and a JSON body with the
 * message. Lambda tells the service failing (4xx/5xx + exception) from the *function*
 * failing (200 + X-Amz-Function-Error: Unhandled + {errorMessage, errorType}); SageMaker
 * reports a failing model as 424 ModelError carrying the model's own status and message.
 */
#include "api/surface_lambda.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/credential.h"
#include "api/function.h"
#include "app.h"
#include "generation.h"
#include "http/server.h"
#include "obs/record.h"
#include "util/json_text.h"

static void aws_error(struct http_request *req, int status, const char *type, json_t *body)
{
    http_add_header(req, "x-amzn-ErrorType", type);
    char *text = json_dumps(body, JSON_COMPACT | JSON_TEXT_REALS);
    json_decref(body);
    if (text == NULL) {
        http_respond(req, status, "application/json", "{}", 2);
        return;
    }
    http_respond(req, status, "application/json", text, strlen(text));
    free(text);
}

/* Credential refusals, named as AWS names them (AWS answers a missing or unknown
 * credential with 403). @return the exception, or NULL when `e` is not one. */
static const char *auth_exception(const struct err *e, int *status)
{
    if (e->code && strcmp(e->code, "invalid_signature") == 0) {
        *status = 403;
        return "InvalidSignatureException";
    }
    if (e->code && strcmp(e->code, "incomplete_signature") == 0) {
        *status = 400;
        return "IncompleteSignatureException";
    }
    if (e->status == 401) {
        *status = 403;
        return "UnrecognizedClientException";
    }
    return NULL;
}

/* ---- Lambda ------------------------------------------------------------------------- */

static const char *lambda_exception(int status)
{
    switch (status) {
    case 403:
        return "AccessDeniedException";
    case 404:
        return "ResourceNotFoundException";
    case 413:
        return "RequestTooLargeException";
    case 429:
        return "TooManyRequestsException";
    default:
        return status < 500 ? "InvalidRequestContentException" : "ServiceException";
    }
}

static void lambda_answer(struct http_request *req, const char *json, size_t len)
{
    http_add_header(req, "X-Amz-Executed-Version", "$LATEST");
    http_respond(req, 200, "application/json", json, len);
}

static void lambda_fail(struct http_request *req, const struct err *e, bool function_error,
                        const char *raw)
{
    if (function_error) {
        json_t *body = json_pack("{s:s, s:s}", "errorMessage", e->msg, "errorType",
                                 e->code ? e->code : e->type);
        if (raw) json_object_set_new(body, "raw", json_string(raw));
        char *text = json_dumps(body, JSON_COMPACT | JSON_TEXT_REALS);
        json_decref(body);
        http_add_header(req, "X-Amz-Function-Error", "Unhandled");
        http_add_header(req, "X-Amz-Executed-Version", "$LATEST");
        http_respond(req, 200, "application/json", text ? text : "{}", text ? strlen(text) : 2);
        free(text);
        return;
    }
    int status = e->status;
    const char *type = auth_exception(e, &status);
    if (type == NULL) type = lambda_exception(e->status);
    aws_error(req, status, type,
              json_pack("{s:s, s:s, s:s}", "Type", "User", "message", e->msg, "Message", e->msg));
}

static const struct function_door door_lambda = {
    .name = "lambda",
    .credential = credential_bearer,
    .sigv4 = true,
    .answer = lambda_answer,
    .fail = lambda_fail,
};

void lambda_route(struct app *app, struct http_request *req, const struct principal *who)
{
    (void)who;
    char name[256];
    struct err e;
    if (function_name_in_path(req->path, "/2015-03-31/functions/", "/invocations", name,
                              sizeof name) == NULL) {
        err_set(&e, 404, "invalid_request_error", "not_found",
                "no such Lambda operation: %s %s (Invoke: POST "
                "/2015-03-31/functions/{name}/invocations)",
                req->method, req->path);
        record_request(NULL, &(struct request_record){.req = req, .status = 404, .error = e.msg});
        lambda_fail(req, &e, false, NULL);
        return;
    }
    /* FunctionName may be an ARN (arn:aws:lambda:region:account:function:NAME[:qualifier]). */
    const char *fn = name;
    const char *marker = strstr(name, ":function:");
    if (strncmp(name, "arn:", 4) == 0 && marker) {
        fn = marker + 10;
        char *qualifier = strchr((char *)fn, ':');
        if (qualifier) *qualifier = '\0';
    }
    const char *type = http_request_header(req, "x-amz-invocation-type");
    if (type && strcmp(type, "RequestResponse") != 0 && strcmp(type, "DryRun") != 0) {
        err_set(&e, 400, "invalid_request_error", "invocation_type",
                "InvocationType %s is not supported: stratus answers synchronously "
                "(RequestResponse, or DryRun to check the call)",
                type);
        record_request(NULL, &(struct request_record){.req = req, .status = 400, .error = e.msg});
        lambda_fail(req, &e, false, NULL);
        return;
    }
    if (type && strcmp(type, "DryRun") == 0) {
        if (config_find_function(app->gen->cfg, fn) == NULL) {
            err_set(&e, 404, "invalid_request_error", "function_not_found",
                    "Function not found: %s", fn);
            lambda_fail(req, &e, false, NULL);
            return;
        }
        http_respond(req, 204, "application/json", "", 0);
        return;
    }
    function_invoke(app, req, &door_lambda, fn);
}

/* ---- SageMaker runtime -------------------------------------------------------------- */

static void sagemaker_answer(struct http_request *req, const char *json, size_t len)
{
    http_add_header(req, "x-Amzn-Invoked-Production-Variant", "AllTraffic");
    http_respond(req, 200, "application/json", json, len);
}

static void sagemaker_fail(struct http_request *req, const struct err *e, bool function_error,
                           const char *raw)
{
    if (function_error) {
        char msg[700];
        snprintf(msg, sizeof msg, "Received client error (%d) from primary with message \"%s\"",
                 e->status, e->msg);
        json_t *body = json_pack("{s:i, s:s, s:s}", "OriginalStatusCode", e->status,
                                 "OriginalMessage", e->msg, "message", msg);
        if (raw) json_object_set_new(body, "raw", json_string(raw));
        aws_error(req, 424, "ModelError", body);
        return;
    }
    /* SageMaker answers an unknown endpoint with 400 ValidationError. */
    int status = e->status == 404 ? 400 : e->status;
    const char *type = auth_exception(e, &status);
    if (type == NULL)
        type = e->status == 429   ? "ThrottlingException"
               : e->status == 503 ? "ServiceUnavailable"
               : e->status >= 500 ? "InternalFailure"
               : e->status == 403 ? "AccessDeniedException"
                                  : "ValidationError";
    aws_error(req, status, type, json_pack("{s:s}", "message", e->msg));
}

static const struct function_door door_sagemaker = {
    .name = "sagemaker",
    .credential = credential_bearer,
    .sigv4 = true,
    .answer = sagemaker_answer,
    .fail = sagemaker_fail,
};

void sagemaker_route(struct app *app, struct http_request *req, const struct principal *who)
{
    (void)who;
    char name[256];
    if (function_name_in_path(req->path, "/endpoints/", "/invocations", name, sizeof name) ==
        NULL) {
        struct err e;
        err_set(&e, 404, "invalid_request_error", "not_found",
                "no such SageMaker runtime operation: %s %s (InvokeEndpoint: POST "
                "/endpoints/{name}/invocations)",
                req->method, req->path);
        record_request(NULL, &(struct request_record){.req = req, .status = 404, .error = e.msg});
        sagemaker_fail(req, &e, false, NULL);
        return;
    }
    function_invoke(app, req, &door_sagemaker, name);
}
