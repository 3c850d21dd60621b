/*
 * DESIGN: the one place that knows which provider types exist; adding a provider is a new
 * file plus a line here.
 */
#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>

#include "providers/provider.h"

const struct provider_ops *provider_for(enum backend_type type)
{
    switch (type) {
    case BACKEND_OPENAI:
        return &provider_openai;
    case BACKEND_LOCAL:
        return &provider_local;
    case BACKEND_ANTHROPIC:
        return &provider_anthropic;
    case BACKEND_BEDROCK:
        return &provider_bedrock;
    }
    return NULL;
}

int backend_init(struct backend *b, const struct backend_conf *conf, struct err *err)
{
    memset(b, 0, sizeof *b);
    b->conf = conf;
    b->ops = conf->remote_engine ? &provider_local_remote : provider_for(conf->type);
    if (b->ops == NULL)
        return err_set(err, 500, "server_error", NULL, "backend '%s': no provider for its type",
                       conf->name);
    snprintf(b->not_ready_reason, sizeof b->not_ready_reason, "not probed yet");
    return b->ops->init(b, err);
}

void backend_destroy(struct backend *b)
{
    if (b == NULL || b->ops == NULL) return;
    if (b->ops->destroy) b->ops->destroy(b);
    curl_slist_free_all(b->headers);
    b->headers = NULL;
    free(b->unix_socket);
    b->unix_socket = NULL;
}
