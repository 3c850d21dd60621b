/*
 * secrets — secret references, resolved to their values.
 *
 * A secret is never written in the config; a reference says where it lives:
 *   env:NAME                          an environment variable
 *   file:PATH                         a file's text (one line, or PEM text for TLS)
 *   aws-sm:ID-OR-ARN[#FIELD]          AWS Secrets Manager (SecretString; FIELD of its JSON)
 *   ssm:NAME                          AWS SSM Parameter Store (SecureString decrypted); a
 *                                     value that is itself an aws-sm: or vault: reference is
 *                                     followed once (the SSM → Secrets Manager indirection)
 *   vault:MOUNT/PATH#FIELD            HashiCorp Vault, KV version 2
 * Where the remote stores are and how to sign in is `struct secrets_sources` (the config's
 * `secrets:` section, filled from the standard environment variables by default).
 *
 * Values are never logged and never put in an error message: `why` names the reference and
 * the reason only. Returned values are *owned* by the caller, who wipes them
 * (secrets_value_free) when done.
 *
 * Thread: any. Resolving a remote reference blocks on HTTP (libcurl easy, timeout_ms). The
 * token an AppRole login gives is kept process-wide (one mutex) until 90 % of its lease has
 * passed or Vault refuses it, so refreshes do not log in every time.
 */
#ifndef STRATUS_SECRETS_H
#define STRATUS_SECRETS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SECRETS_VALUE_MAX 65536 /* bytes in a fetched or file secret (a PEM chain fits) */
#define SECRETS_LINE_MAX  8192  /* bytes in a one-line secret (a key, a token) */

enum secrets_kind {
    SECRETS_ENV,
    SECRETS_FILE,
    SECRETS_AWS_SM,
    SECRETS_SSM,
    SECRETS_VAULT,
};

/* What may be fetched. Strings are *owned* by the struct (secrets_sources_clear frees them);
 * NULL means "from the environment / the default". */
struct secrets_sources {
    /* AWS (aws-sm:, ssm:) */
    char *aws_region;          /* else an aws-sm ARN's region, AWS_REGION, AWS_DEFAULT_REGION */
    char *aws_profile;         /* credentials: AWS_ACCESS_KEY_ID/… first, then this profile
                                * (else AWS_PROFILE, else "default") of the shared file */
    char *secrets_manager_url; /* else AWS_ENDPOINT_URL_SECRETS_MANAGER, AWS_ENDPOINT_URL,
                                * https://secretsmanager.REGION.amazonaws.com */
    char *ssm_url;             /* else AWS_ENDPOINT_URL_SSM, AWS_ENDPOINT_URL,
                                * https://ssm.REGION.amazonaws.com */
    /* Vault (vault:) */
    char *vault_address;         /* else VAULT_ADDR */
    char *vault_token_ref;       /* env:/file: reference to a token; else VAULT_TOKEN */
    char *vault_namespace;       /* else VAULT_NAMESPACE; sent as X-Vault-Namespace */
    char *approle_role_id;       /* AppRole: both set → log in instead of using a token */
    char *approle_secret_id_ref; /* env:/file: reference */
    char *approle_mount;         /* default "approle" */
    long timeout_ms;             /* per HTTP call; default 10000 */
};

/** Sources with every setting from the environment (all NULL, timeout 10 s). */
void secrets_sources_init(struct secrets_sources *s);

/** Frees what `s` owns (wiping the cached Vault token). NULL-safe. */
void secrets_sources_clear(struct secrets_sources *s);

/** Whether `ref` starts with one of the reference prefixes above (it may still be malformed:
 *  secrets_check says). */
bool secrets_is_reference(const char *ref);

/** Checks a reference's syntax without fetching anything. @param kind  set when valid (may
 *  be NULL). @return 0, or -1 with `why` (what is wrong with it; quotes the reference). */
int secrets_check(const char *ref, enum secrets_kind *kind, char *why, size_t size);

/** Whether the reference names a remote store (aws-sm:, ssm:, vault:). */
bool secrets_is_remote(const char *ref);

enum {
    SECRETS_ONE_LINE = 0,  /* keys and tokens: one line, no control characters */
    SECRETS_MULTILINE = 1, /* PEM text: newlines allowed */
};

/**
 * Resolves `ref` to its value. Remote references block for up to `sources->timeout_ms` per
 * HTTP call. @param sources  may be NULL (environment only).
 * @param value  set to an *owned* NUL-terminated value (free with secrets_value_free).
 * @return 0, or -1 with `why` naming the reference and the reason (never the value).
 */
int secrets_resolve(struct secrets_sources *sources, const char *ref, unsigned flags, char **value,
                    char *why, size_t size);

/** Wipes and frees a value from secrets_resolve. NULL-safe. */
void secrets_value_free(char *value);

/** Wipes and drops the cached Vault login token (at exit). */
void secrets_shutdown(void);

#endif
