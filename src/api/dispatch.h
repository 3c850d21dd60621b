/*
 * api/dispatch — the route table: a path and method lead to a handler (health, ready, model
 * list, admin) or to a surface and a request-model endpoint (the model APIs), after the
 * caller is authenticated for the route's access level. 404 for an unknown path, 405 with
 * Allow for a known path and another method.
 * Thread: event-loop thread only.
 */
#ifndef STRATUS_API_DISPATCH_H
#define STRATUS_API_DISPATCH_H

struct http_request;

/** The http_handler_cb for the whole server; `ud` is the struct app. */
void api_handle(struct http_request *req, void *ud);

#endif
