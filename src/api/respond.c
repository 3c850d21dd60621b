#include "api/respond.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "http/server.h"
#include "obs/record.h"
#include "util/json_text.h"

void api_log(const struct http_request *req, int status, const char *error)
{
    record_request(NULL, &(struct request_record){.req = req, .status = status, .error = error});
}

void api_respond_json(struct http_request *req, int status, json_t *doc)
{
    char *s = doc ? json_dumps(doc, JSON_COMPACT | JSON_TEXT_SUMS) : NULL;
    json_decref(doc);
    if (s == NULL) {
        struct err e;
        err_oom(&e);
        api_log(req, 500, e.msg);
        http_respond_error(req, &e);
        return;
    }
    api_log(req, status, NULL);
    http_respond(req, status, "application/json", s, strlen(s));
    free(s);
}
