#include "config/scrub.h"

#include <string.h>

#include "config/config.h"

static size_t mask(const char *secret, char *text, size_t len)
{
    if (secret == NULL) return 0;
    size_t n = strlen(secret), found = 0;
    if (n < SCRUB_MIN_SECRET) return 0;
    char *p = text, *end = text + len;
    while ((size_t)(end - p) >= n && (p = memmem(p, (size_t)(end - p), secret, n)) != NULL) {
        memset(p, '*', n);
        p += n;
        found++;
    }
    return found;
}

size_t secrets_scrub(const struct config *cfg, char *text, size_t len)
{
    if (cfg == NULL || text == NULL || len == 0) return 0;
    size_t found = mask(cfg->auth.master_key.value, text, len);
    for (size_t i = 0; i < cfg->n_backends; i++) {
        const struct backend_conf *b = &cfg->backends[i];
        found += mask(b->api_key.value, text, len);
        found += mask(b->aws_access_key_id.value, text, len);
        found += mask(b->aws_secret_access_key.value, text, len);
        found += mask(b->aws_session_token.value, text, len);
    }
    return found;
}

size_t secrets_scrub_str(const struct config *cfg, char *text)
{
    return text ? secrets_scrub(cfg, text, strlen(text)) : 0;
}
