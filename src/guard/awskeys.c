/*
 * DESIGN: see awskeys.h. The sealed form is hex(nonce 12 | ciphertext 40 | tag 16), a text
 * column like every other key field in both stores.
 */
#include "guard/awskeys.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>

#define NONCE  12
#define TAG    16
#define SECRET 40

static const char alnum[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"; /* base32: ids read aloud */
static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int awskeys_derive(const char *master, size_t len, unsigned char key[AWSKEY_KEY_SIZE])
{
    int rc = -1;
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX *ctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    if (ctx) {
        static const char info[] = "stratus aws secret v1";
        OSSL_PARAM params[] = {
            OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0),
            OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)master, len),
            OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, sizeof info - 1),
            OSSL_PARAM_construct_end(),
        };
        rc = EVP_KDF_derive(ctx, key, AWSKEY_KEY_SIZE, params) == 1 ? 0 : -1;
    }
    EVP_KDF_CTX_free(ctx);
    EVP_KDF_free(kdf);
    return rc;
}

static void hex(const unsigned char *in, size_t n, char *out)
{
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[in[i] >> 4];
        out[2 * i + 1] = d[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static int unhex(const char *in, unsigned char *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned v = 0;
        for (int k = 0; k < 2; k++) {
            char c = in[2 * i + k];
            int x = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
            if (x < 0) return -1;
            v = v << 4 | (unsigned)x;
        }
        out[i] = (unsigned char)v;
    }
    return in[2 * n] == '\0' ? 0 : -1;
}

/* AES-256-GCM one way or the other; `aad` is the access key id. */
static int gcm(bool seal, const unsigned char key[AWSKEY_KEY_SIZE], const unsigned char *nonce,
               const char *aad, const unsigned char *in, unsigned char *out, unsigned char *tag)
{
    int ok = 0, n = 0;
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    if (c && EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL, seal) == 1 &&
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, NONCE, NULL) == 1 &&
        EVP_CipherInit_ex(c, NULL, NULL, key, nonce, seal) == 1 &&
        EVP_CipherUpdate(c, NULL, &n, (const unsigned char *)aad, (int)strlen(aad)) == 1 &&
        EVP_CipherUpdate(c, out, &n, in, SECRET) == 1 &&
        (seal || EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TAG, tag) == 1) &&
        EVP_CipherFinal_ex(c, out + n, &n) == 1 &&
        (!seal || EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, TAG, tag) == 1))
        ok = 1;
    EVP_CIPHER_CTX_free(c);
    return ok ? 0 : -1;
}

int awskeys_mint(struct key_record *rec, const unsigned char key[AWSKEY_KEY_SIZE],
                 char secret[AWSKEY_SECRET_SIZE])
{
    unsigned char raw[16 + SECRET], box[NONCE + SECRET + TAG];
    if (RAND_bytes(raw, sizeof raw) != 1 || RAND_bytes(box, NONCE) != 1) return -1;
    memcpy(rec->aws_key_id, "ASTR", 4);
    for (size_t i = 0; i < 16; i++) rec->aws_key_id[4 + i] = alnum[raw[i] & 31];
    rec->aws_key_id[20] = '\0';
    for (size_t i = 0; i < SECRET; i++) secret[i] = b64[raw[16 + i] & 63];
    secret[SECRET] = '\0';
    int rc = gcm(true, key, box, rec->aws_key_id, (const unsigned char *)secret, box + NONCE,
                 box + NONCE + SECRET);
    if (rc == 0) hex(box, sizeof box, rec->aws_secret_sealed);
    OPENSSL_cleanse(raw, sizeof raw);
    return rc;
}

int awskeys_open(const struct key_record *rec, const unsigned char key[AWSKEY_KEY_SIZE],
                 char secret[AWSKEY_SECRET_SIZE])
{
    unsigned char box[NONCE + SECRET + TAG];
    if (unhex(rec->aws_secret_sealed, box, sizeof box) != 0) return -1;
    if (gcm(false, key, box, rec->aws_key_id, box + NONCE, (unsigned char *)secret,
            box + NONCE + SECRET) != 0) {
        OPENSSL_cleanse(secret, AWSKEY_SECRET_SIZE);
        return -1;
    }
    secret[SECRET] = '\0';
    return 0;
}
