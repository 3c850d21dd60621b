/*
 * DESIGN
 * The shared file is INI: "[name]" sections ("[profile name]" in the config-file style),
 * "key = value" lines, # and ; comments. Lines are read into a stack buffer that is wiped
 * before return, so a key does not linger where the next call could see it.
 */
#include "providers/aws/credentials.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LINE_MAX_BYTES 8192

/* `key` of `[profile]`. @return 1 found (owned *out), 0 absent, -1 unreadable. */
static int file_value(const char *path, const char *profile, const char *key, char **out)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) return -1;
    char line[LINE_MAX_BYTES];
    bool in_profile = false;
    int found = 0;
    while (!found && fgets(line, sizeof line, f)) {
        char *s = line, *e;
        while (*s == ' ' || *s == '\t') s++;
        e = s + strlen(s);
        while (e > s && (e[-1] == '\n' || e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t')) *--e = 0;
        if (*s == '#' || *s == ';' || *s == '\0') continue;
        if (*s == '[') {
            char *close = strchr(s, ']');
            if (close == NULL) continue;
            *close = '\0';
            char *name = s + 1;
            if (strncmp(name, "profile ", 8) == 0) name += 8;
            in_profile = strcmp(name, profile) == 0;
            continue;
        }
        if (!in_profile) continue;
        char *eq = strchr(s, '=');
        if (eq == NULL) continue;
        char *k = s, *ke = eq;
        while (ke > k && (ke[-1] == ' ' || ke[-1] == '\t')) ke--;
        *ke = '\0';
        char *v = eq + 1;
        while (*v == ' ' || *v == '\t') v++;
        if (strcmp(k, key) == 0 && *v) {
            *out = strdup(v);
            found = *out ? 1 : -1;
        }
    }
    explicit_bzero(line, sizeof line);
    fclose(f);
    return found;
}

static const char *env(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

int aws_credentials_load(const char *profile, struct aws_credentials *out, char *why, size_t size)
{
    memset(out, 0, sizeof *out);
    if (profile == NULL && env("AWS_ACCESS_KEY_ID") && env("AWS_SECRET_ACCESS_KEY")) {
        out->from = AWS_CREDENTIALS_ENV;
        out->access_key_id = strdup(env("AWS_ACCESS_KEY_ID"));
        out->secret_access_key = strdup(env("AWS_SECRET_ACCESS_KEY"));
        if (env("AWS_SESSION_TOKEN")) out->session_token = strdup(env("AWS_SESSION_TOKEN"));
        if (out->access_key_id == NULL || out->secret_access_key == NULL ||
            (env("AWS_SESSION_TOKEN") && out->session_token == NULL)) {
            aws_credentials_clear(out);
            snprintf(why, size, "out of memory");
            return -1;
        }
        return 0;
    }
    out->from = AWS_CREDENTIALS_FILE;
    snprintf(out->profile, sizeof out->profile, "%s",
             profile              ? profile
             : env("AWS_PROFILE") ? env("AWS_PROFILE")
                                  : "default");
    if (env("AWS_SHARED_CREDENTIALS_FILE"))
        snprintf(out->path, sizeof out->path, "%s", env("AWS_SHARED_CREDENTIALS_FILE"));
    else
        snprintf(out->path, sizeof out->path, "%s/.aws/credentials",
                 env("HOME") ? env("HOME") : "");
    int a = file_value(out->path, out->profile, "aws_access_key_id", &out->access_key_id);
    int c = a == 1 ? file_value(out->path, out->profile, "aws_secret_access_key",
                                &out->secret_access_key)
                   : a;
    int t =
        c == 1 ? file_value(out->path, out->profile, "aws_session_token", &out->session_token) : 0;
    if (a == 1 && c == 1 && t >= 0) return 0;
    snprintf(why, size,
             "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or add "
             "profile '%s' to %s%s",
             out->profile, out->path, a < 0 ? " (cannot read it)" : "");
    aws_credentials_clear(out);
    return -1;
}

void aws_credentials_clear(struct aws_credentials *c)
{
    if (c == NULL) return;
    char **owned[] = {&c->access_key_id, &c->secret_access_key, &c->session_token};
    for (size_t i = 0; i < 3; i++) {
        if (*owned[i]) {
            explicit_bzero(*owned[i], strlen(*owned[i]));
            free(*owned[i]);
            *owned[i] = NULL;
        }
    }
}

void aws_endpoint(const char *configured, const char *env_name, const char *service,
                  const char *region, char *out, size_t size)
{
    const char *e = configured      ? configured
                    : env(env_name) ? env(env_name)
                                    : env("AWS_ENDPOINT_URL");
    if (e)
        snprintf(out, size, "%s", e);
    else
        snprintf(out, size, "https://%s.%s.amazonaws.com", service, region);
    size_t n = strlen(out);
    while (n > 0 && out[n - 1] == '/') out[--n] = '\0';
}
