#include "api/credential.h"

#include <string.h>
#include <strings.h>

#include "http/server.h"

static int blank(char c)
{
    return c == ' ' || c == '\t';
}

int credential_bearer(const struct http_request *req, const char **key, size_t *len,
                      struct err *err)
{
    *key = NULL;
    *len = 0;
    const char *h = NULL;
    size_t n = 0;
    for (size_t i = 0; i < req->n_headers; i++)
        if (strcasecmp(req->headers[i].name, "authorization") == 0) {
            h = req->headers[i].value;
            n++;
        }
    if (n > 1)
        return err_set(err, 400, "invalid_request_error", "duplicate_header",
                       "the request has %zu Authorization headers; send exactly one", n);
    if (h == NULL || h[0] == '\0') return 0;
    if (strncasecmp(h, "Bearer ", 7) != 0)
        return err_set(err, 401, "invalid_request_error", "invalid_api_key",
                       "the Authorization header must be 'Bearer <key>'");
    const char *k = h + 7;
    while (blank(*k)) k++;
    size_t l = strlen(k);
    while (l > 0 && blank(k[l - 1])) l--;
    *key = k;
    *len = l;
    return 0;
}
