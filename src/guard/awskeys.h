/*
 * guard/awskeys — AWS-style credentials for virtual keys, so AWS SDKs can sign requests
 * with SigV4 instead of sending a bearer token (`stratus keys create --aws`).
 *
 * SigV4 proves possession of the secret by an HMAC the server must recompute, so unlike a
 * bearer key (stored only as a hash) the secret access key has to be recoverable at
 * verification time. It is stored sealed: AES-256-GCM under a key derived with HKDF-SHA256
 * from the master key (info "stratus aws secret v1"), a random 96-bit nonce per key, and the
 * access key id as associated data (a sealed secret copied onto another key id does not
 * open). A database dump alone reveals no secret; whoever has the master key already has
 * every power these keys give. Changing the master key makes existing AWS secrets unusable
 * (they must be re-issued), which is the intended effect of rotating it.
 *
 * Thread: any; no state.
 */
#ifndef STRATUS_GUARD_AWSKEYS_H
#define STRATUS_GUARD_AWSKEYS_H

#include <stddef.h>

#include "store/store.h"

#define AWSKEY_SECRET_SIZE 41 /* 40 characters + NUL, as AWS's */
#define AWSKEY_KEY_SIZE    32

/** The sealing key derived from the master key. @return 0, or -1 when OpenSSL fails. */
int awskeys_derive(const char *master, size_t len, unsigned char key[AWSKEY_KEY_SIZE]);

/** Mints an access key id ("ASTR" + 16 characters) and a secret for `rec`: fills
 *  rec->aws_key_id and rec->aws_secret_sealed, writes the secret (shown once) into
 *  `secret`. @return 0, or -1 when the random source or the cipher fails. */
int awskeys_mint(struct key_record *rec, const unsigned char key[AWSKEY_KEY_SIZE],
                 char secret[AWSKEY_SECRET_SIZE]);

/** Opens rec's sealed secret into `secret`. @return 0, or -1 when it does not open (another
 *  master key, a tampered or moved row). */
int awskeys_open(const struct key_record *rec, const unsigned char key[AWSKEY_KEY_SIZE],
                 char secret[AWSKEY_SECRET_SIZE]);

#endif
