/* Ed25519 verification from per-key tables (_native_ed25519.c); no Python. */
#ifndef LEDGER_NATIVE_ED25519_H
#define LEDGER_NATIVE_ED25519_H

#include <stddef.h>


/* Constants and the base point's table; 0, or -1 if out of memory. */
int ed25519_init(void);

/* Bytes of one key's table. */
size_t ed25519_table_bytes(void);

/* The table of the key encoded by pk, which must have passed libsodium's
 * crypto_core_ed25519_is_valid_point; 0, or -1 (not a point, no memory). */
int ed25519_key_table(unsigned char *table, const unsigned char pk[32]);

/* s < L, the group order (s is 32 bytes little endian). */
int ed25519_scalar_is_canonical(const unsigned char s[32]);

/* ok[k] = (encode([s]B - [h]A) == R) for signature k = (R, s) = sigs[k],
 * A the key of tables[k] and h[k] = SHA-512(R || A || M) mod L.  work holds
 * ed25519_work_bytes(n) bytes.  -1 (ok unset) if some Z was zero, which
 * does not happen for points on the curve. */
int ed25519_verify_tables(size_t n, const unsigned char *const *tables,
                          const unsigned char *const *sigs, const unsigned char (*h)[32],
                          unsigned char *ok, void *work);
size_t ed25519_work_bytes(size_t n);

/* out = encode([s]B - [h]A), for s and h below 2^253: the arithmetic of
 * ed25519_verify_tables on its own, for tests. */
void ed25519_combine(unsigned char out[32], const unsigned char *table,
                     const unsigned char s[32], const unsigned char h[32]);

#endif
