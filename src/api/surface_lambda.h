/*
 * api/surface_lambda — functions through AWS's wire formats: Lambda's Invoke
 * (POST /2015-03-31/functions/{name}/invocations, RequestResponse and DryRun) and
 * SageMaker runtime's InvokeEndpoint (POST /endpoints/{name}/invocations), for the
 * functions in the config (api/function.h). Errors in AWS's shapes; see docs/surfaces.md.
 * Thread: event-loop thread only.
 */
#ifndef STRATUS_API_SURFACE_LAMBDA_H
#define STRATUS_API_SURFACE_LAMBDA_H

struct app;
struct http_request;
struct principal;

/** Route handlers (the door authenticates: their routes are open). */
void lambda_route(struct app *app, struct http_request *req, const struct principal *who);
void sagemaker_route(struct app *app, struct http_request *req, const struct principal *who);

#endif
