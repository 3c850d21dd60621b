/*
 * aws/credentials — AWS credentials from where the AWS SDKs look first: the environment
 * (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN), then one profile of the
 * shared credentials file (AWS_SHARED_CREDENTIALS_FILE, else ~/.aws/credentials). Used by
 * the bedrock backend's config and by the aws-sm:/ssm: secret stores; and the endpoint URL a
 * service is called at, from the same SDK conventions.
 *
 * Instance roles (IMDS), SSO and container credentials are not read.
 * Thread: any; no state. Values are wiped by aws_credentials_clear.
 */
#ifndef STRATUS_AWS_CREDENTIALS_H
#define STRATUS_AWS_CREDENTIALS_H

#include <stddef.h>

enum aws_credentials_from {
    AWS_CREDENTIALS_ENV,  /* the three environment variables */
    AWS_CREDENTIALS_FILE, /* a profile of the shared credentials file */
};

struct aws_credentials {
    char *access_key_id;     /* owned */
    char *secret_access_key; /* owned */
    char *session_token;     /* owned; NULL when absent */
    enum aws_credentials_from from;
    char profile[128]; /* the profile read (AWS_CREDENTIALS_FILE) */
    char path[1024];   /* the file read or tried */
};

/**
 * Loads credentials: the environment's when both keys are set and `profile` is NULL;
 * otherwise `profile` (NULL: AWS_PROFILE, else "default") of the shared file.
 * @return 0, or -1 with `why` saying what was looked for (never a value).
 */
int aws_credentials_load(const char *profile, struct aws_credentials *out, char *why, size_t size);

/** Wipes and frees what `c` owns. NULL-safe. */
void aws_credentials_clear(struct aws_credentials *c);

/** Where `service` is called, as the AWS SDKs decide it: `configured` (may be NULL), else
 *  the variable `env_name` (AWS_ENDPOINT_URL_SSM, …), else AWS_ENDPOINT_URL, else
 *  https://SERVICE.REGION.amazonaws.com; trailing slashes dropped. */
void aws_endpoint(const char *configured, const char *env_name, const char *service,
                  const char *region, char *out, size_t size);

#endif
