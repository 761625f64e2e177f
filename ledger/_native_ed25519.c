/*
 * Ed25519 verification with a precomputed table per public key.
 *
 * libsodium checks a signature (R, s) on message M under key A as
 *
 *     s < L,  R not of small order,  A canonical, on the curve, not of
 *     small order,  encode([s]B - [h]A) == R   with h = SHA-512(R||A||M) mod L
 *
 * computing [s]B - [h]A with one double-scalar multiplication: ~253 point
 * doublings plus ~85 additions, and an inversion and a square root.  A
 * ledger's submitters are few registered keys, each signing many records,
 * so this file computes the same point from tables: for a key A, the
 * multiples j * 2^(6i) * A (j = 1..32, i = 0..42) in affine form, built once
 * (165 KB); for the base point B the same table, built at start.  A scalar
 * written in 43 signed base-64 digits then costs 43 mixed additions and no
 * doubling, and the inversion that encodes the result is shared by a whole
 * batch (Montgomery's trick).  6-bit windows were the best trade of time
 * against table size among the widths tried (4 to 8 bits); the measured
 * rates are in docs/performance.md.
 *
 * Only the arithmetic lives here.  Which signatures take this path is
 * decided in _native_verify.c: only keys libsodium's crypto_core_ed25519_is_valid_point
 * accepts (canonical, on the curve, not of small order, in the prime-order
 * subgroup).  For such a key, [s]B - [h]A lies in the prime-order subgroup,
 * whose only small-order point is the identity, so "R not of small order"
 * reduces to "R is not the identity's encoding 01 00..00" (no other
 * small-order encoding can equal a canonical encoding of a subgroup point).
 * The result is then exactly libsodium's: the same point, encoded the one
 * canonical way, compared byte for byte.  Every other key goes to libsodium.
 *
 * Field elements are five 51-bit limbs (radix 2^51, unsigned __int128
 * products); points are extended twisted Edwards coordinates (X:Y:Z:T)
 * with the complete addition law of RFC 8032 section 5.1.4 (a = -1), which
 * also doubles.  Nothing here is constant time: verification handles only
 * public data.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_native_ed25519.h"

typedef uint64_t fe[5];
typedef unsigned __int128 u128;

#define MASK51 ((uint64_t)0x7ffffffffffff)

typedef struct { fe X, Y, Z, T; } point;         /* extended: x = X/Z, y = Y/Z, T = XY/Z */
typedef struct { fe ypx, ymx, xy2d; } niels;     /* affine: y + x, y - x, 2dxy */

#ifndef WINDOW_BITS
#define WINDOW_BITS 6
#endif
/* Signed base-2^w digits of a scalar below 2^253: enough windows that the
 * top digit, plus a carry, stays within [0, 2^(w-1)]. */
#define WINDOWS ((253 + WINDOW_BITS - 1) / WINDOW_BITS)
#define ENTRIES (1 << (WINDOW_BITS - 1))  /* |digit| = 1..2^(w-1) */

/* ---- field arithmetic mod p = 2^255 - 19 ---------------------------- */

static uint64_t load64(const unsigned char *s) {
    uint64_t r = 0;
    for (int i = 7; i >= 0; i--) r = (r << 8) | s[i];
    return r;
}

static void store64(unsigned char *s, uint64_t v) {
    for (int i = 0; i < 8; i++) { s[i] = (unsigned char)v; v >>= 8; }
}

/* The low 255 bits of a 32-byte little-endian string (bit 255 ignored). */
static void fe_frombytes(fe h, const unsigned char s[32]) {
    h[0] = load64(s) & MASK51;
    h[1] = (load64(s + 6) >> 3) & MASK51;
    h[2] = (load64(s + 12) >> 6) & MASK51;
    h[3] = (load64(s + 19) >> 1) & MASK51;
    h[4] = (load64(s + 24) >> 12) & MASK51;
}

/* Limbs back under 2^51 (limb 0 under 2^51 + 2^18). */
static void fe_carry(fe h) {
    uint64_t c;
    c = h[0] >> 51; h[0] &= MASK51; h[1] += c;
    c = h[1] >> 51; h[1] &= MASK51; h[2] += c;
    c = h[2] >> 51; h[2] &= MASK51; h[3] += c;
    c = h[3] >> 51; h[3] &= MASK51; h[4] += c;
    c = h[4] >> 51; h[4] &= MASK51; h[0] += 19 * c;
}

static void fe_copy(fe h, const fe f) { memcpy(h, f, sizeof(fe)); }

static void fe_set(fe h, uint64_t v) { h[0] = v; h[1] = h[2] = h[3] = h[4] = 0; }

static void fe_add(fe h, const fe f, const fe g) {
    for (int i = 0; i < 5; i++) h[i] = f[i] + g[i];
    fe_carry(h);
}

/* f - g, computed as f + 4p - g so that no limb goes below zero (g's limbs
 * are under 2^52 everywhere in this file). */
static void fe_sub(fe h, const fe f, const fe g) {
    h[0] = f[0] + ((MASK51 - 18) << 2) - g[0];
    for (int i = 1; i < 5; i++) h[i] = f[i] + (MASK51 << 2) - g[i];
    fe_carry(h);
}

static void fe_neg(fe h, const fe f) {
    fe zero;
    fe_set(zero, 0);
    fe_sub(h, zero, f);
}

static void fe_mul(fe h, const fe f, const fe g) {
    const uint64_t g1 = 19 * g[1], g2 = 19 * g[2], g3 = 19 * g[3], g4 = 19 * g[4];
    u128 r0 = (u128)f[0] * g[0] + (u128)f[1] * g4 + (u128)f[2] * g3 + (u128)f[3] * g2 + (u128)f[4] * g1;
    u128 r1 = (u128)f[0] * g[1] + (u128)f[1] * g[0] + (u128)f[2] * g4 + (u128)f[3] * g3 + (u128)f[4] * g2;
    u128 r2 = (u128)f[0] * g[2] + (u128)f[1] * g[1] + (u128)f[2] * g[0] + (u128)f[3] * g4 + (u128)f[4] * g3;
    u128 r3 = (u128)f[0] * g[3] + (u128)f[1] * g[2] + (u128)f[2] * g[1] + (u128)f[3] * g[0] + (u128)f[4] * g4;
    u128 r4 = (u128)f[0] * g[4] + (u128)f[1] * g[3] + (u128)f[2] * g[2] + (u128)f[3] * g[1] + (u128)f[4] * g[0];
    r1 += (uint64_t)(r0 >> 51);
    r2 += (uint64_t)(r1 >> 51);
    r3 += (uint64_t)(r2 >> 51);
    r4 += (uint64_t)(r3 >> 51);
    uint64_t c = (uint64_t)(r4 >> 51);
    h[0] = ((uint64_t)r0 & MASK51) + 19 * c;
    h[1] = (uint64_t)r1 & MASK51;
    h[2] = (uint64_t)r2 & MASK51;
    h[3] = (uint64_t)r3 & MASK51;
    h[4] = (uint64_t)r4 & MASK51;
    c = h[0] >> 51; h[0] &= MASK51; h[1] += c;
}

/* The canonical 32 bytes of h (fully reduced mod p, bit 255 clear). */
static void fe_tobytes(unsigned char s[32], const fe f) {
    fe h;
    fe_copy(h, f);
    fe_carry(h);
    fe_carry(h);
    /* Now h < 2^255 + 2^18 < 2p; subtract p when h >= p: q = (h + 19) >> 255. */
    uint64_t q = (h[0] + 19) >> 51;
    q = (h[1] + q) >> 51;
    q = (h[2] + q) >> 51;
    q = (h[3] + q) >> 51;
    q = (h[4] + q) >> 51;
    h[0] += 19 * q;
    uint64_t c;
    c = h[0] >> 51; h[0] &= MASK51; h[1] += c;
    c = h[1] >> 51; h[1] &= MASK51; h[2] += c;
    c = h[2] >> 51; h[2] &= MASK51; h[3] += c;
    c = h[3] >> 51; h[3] &= MASK51; h[4] += c;
    h[4] &= MASK51;  /* drops the 2^255 that adding 19 carried in */
    store64(s, h[0] | (h[1] << 51));
    store64(s + 8, (h[1] >> 13) | (h[2] << 38));
    store64(s + 16, (h[2] >> 26) | (h[3] << 25));
    store64(s + 24, (h[3] >> 39) | (h[4] << 12));
}

static int fe_equal(const fe f, const fe g) {
    unsigned char a[32], b[32];
    fe_tobytes(a, f);
    fe_tobytes(b, g);
    return memcmp(a, b, 32) == 0;
}

static int fe_is_odd(const fe f) {
    unsigned char s[32];
    fe_tobytes(s, f);
    return s[0] & 1;
}

/* f^e for a 256-bit little-endian exponent, square and multiply. */
static void fe_pow(fe h, const fe f, const unsigned char e[32]) {
    fe r, base;
    fe_set(r, 1);
    fe_copy(base, f);
    for (int bit = 255; bit >= 0; bit--) {
        fe_mul(r, r, r);
        if ((e[bit >> 3] >> (bit & 7)) & 1) fe_mul(r, r, base);
    }
    fe_copy(h, r);
}

/* Exponents, little endian: p - 2 (inversion), (p - 5) / 8 = 2^252 - 3
 * (square roots) and (p - 1) / 4 = 2^253 - 5 (sqrt(-1) = 2^((p-1)/4)). */
static unsigned char EXP_INVERT[32], EXP_SQRT[32], EXP_SQRT_M1[32];

static void exponent(unsigned char e[32], unsigned char low, unsigned char top) {
    memset(e, 0xff, 32);
    e[0] = low;
    e[31] = top;
}

static void fe_invert(fe h, const fe f) { fe_pow(h, f, EXP_INVERT); }

/* out[i] = 1 / in[i] for all i, with one inversion (Montgomery's trick).
 * Returns -1 (out unset) if any in[i] is zero. */
static int fe_batch_invert(fe *out, const fe *in, size_t n, fe *scratch) {
    if (n == 0) return 0;
    fe acc;
    fe_copy(scratch[0], in[0]);
    for (size_t i = 1; i < n; i++) fe_mul(scratch[i], scratch[i - 1], in[i]);
    unsigned char zero[32] = {0}, bytes[32];
    fe_tobytes(bytes, scratch[n - 1]);
    if (memcmp(bytes, zero, 32) == 0) return -1;
    fe_invert(acc, scratch[n - 1]);
    for (size_t i = n - 1; i > 0; i--) {
        fe_mul(out[i], acc, scratch[i - 1]);
        fe_mul(acc, acc, in[i]);
    }
    fe_copy(out[0], acc);
    return 0;
}

/* ---- the curve -x^2 + y^2 = 1 + d x^2 y^2 ---------------------------- */

static fe D, D2, SQRT_M1;
static niels BASE_TABLE[WINDOWS * ENTRIES];
static int ready;  /* the constants above and BASE_TABLE are set */

static void point_identity(point *p) {
    fe_set(p->X, 0); fe_set(p->Y, 1); fe_set(p->Z, 1); fe_set(p->T, 0);
}

/* r = p + q (RFC 8032 5.1.4; complete, so also r = 2p when q == p). */
static void point_add(point *r, const point *p, const point *q) {
    fe a, b, c, d, e, f, g, h, t;
    fe_sub(a, p->Y, p->X); fe_sub(t, q->Y, q->X); fe_mul(a, a, t);
    fe_add(b, p->Y, p->X); fe_add(t, q->Y, q->X); fe_mul(b, b, t);
    fe_mul(c, p->T, D2); fe_mul(c, c, q->T);
    fe_mul(d, p->Z, q->Z); fe_add(d, d, d);
    fe_sub(e, b, a); fe_sub(f, d, c); fe_add(g, d, c); fe_add(h, b, a);
    fe_mul(r->X, e, f); fe_mul(r->Y, g, h); fe_mul(r->T, e, h); fe_mul(r->Z, f, g);
}

/* p += q or p -= q for an affine table entry q: seven multiplications. */
static void point_madd(point *p, const niels *q, int negate) {
    fe a, b, c, d, e, f, g, h;
    const uint64_t *ypx = negate ? q->ymx : q->ypx, *ymx = negate ? q->ypx : q->ymx;
    fe_sub(a, p->Y, p->X); fe_mul(a, a, ymx);
    fe_add(b, p->Y, p->X); fe_mul(b, b, ypx);
    fe_mul(c, p->T, q->xy2d);
    if (negate) fe_neg(c, c);
    fe_add(d, p->Z, p->Z);
    fe_sub(e, b, a); fe_sub(f, d, c); fe_add(g, d, c); fe_add(h, b, a);
    fe_mul(p->X, e, f); fe_mul(p->Y, g, h); fe_mul(p->T, e, h); fe_mul(p->Z, f, g);
}

/* The point encoded by s (y, and x's parity in bit 255), or -1 if no point
 * of the curve has that y. */
static int point_decode(point *p, const unsigned char s[32]) {
    fe y, u, v, v3, x, check, t;
    fe_frombytes(y, s);
    fe_mul(u, y, y);
    fe_mul(v, u, D);
    fe_set(t, 1);
    fe_sub(u, u, t);           /* u = y^2 - 1 */
    fe_add(v, v, t);           /* v = d y^2 + 1 */
    /* x = u v^3 (u v^7)^((p-5)/8), a square root of u/v when one exists. */
    fe_mul(v3, v, v); fe_mul(v3, v3, v);
    fe_mul(x, v3, v3); fe_mul(x, x, v); fe_mul(x, x, u);
    fe_pow(x, x, EXP_SQRT);
    fe_mul(x, x, v3); fe_mul(x, x, u);
    fe_mul(check, x, x); fe_mul(check, check, v);
    if (!fe_equal(check, u)) {
        fe_neg(t, u);
        if (!fe_equal(check, t)) return -1;
        fe_mul(x, x, SQRT_M1);
    }
    if (fe_is_odd(x) != (s[31] >> 7)) fe_neg(x, x);
    fe_copy(p->X, x); fe_copy(p->Y, y); fe_set(p->Z, 1); fe_mul(p->T, x, y);
    return 0;
}

/* table[i * ENTRIES + j - 1] = j * 2^(w i) * P, as affine niels entries;
 * -1 if out of memory. */
static int build_table(niels *table, const point *start) {
    const size_t n = WINDOWS * ENTRIES;
    point *all = malloc(n * sizeof(point));
    fe *zs = malloc(3 * n * sizeof(fe));
    if (all == NULL || zs == NULL) { free(all); free(zs); return -1; }
    fe *inv = zs + n, *scratch = inv + n;
    point cur = *start;
    for (size_t i = 0; i < WINDOWS; i++) {
        point *row = all + i * ENTRIES;
        row[0] = cur;
        for (size_t j = 1; j < ENTRIES; j++) point_add(&row[j], &row[j - 1], &cur);
        point_add(&cur, &row[ENTRIES - 1], &row[ENTRIES - 1]);  /* 2^w 2^(w i) P */
    }
    for (size_t k = 0; k < n; k++) fe_copy(zs[k], all[k].Z);
    fe_batch_invert(inv, zs, n, scratch);  /* Z is never zero on the curve */
    for (size_t k = 0; k < n; k++) {
        fe x, y;
        fe_mul(x, all[k].X, inv[k]);
        fe_mul(y, all[k].Y, inv[k]);
        fe_add(table[k].ypx, y, x);
        fe_sub(table[k].ymx, y, x);
        fe_mul(table[k].xy2d, x, y);
        fe_mul(table[k].xy2d, table[k].xy2d, D2);
    }
    free(all);
    free(zs);
    return 0;
}

int ed25519_init(void) {
    if (ready) return 0;
    exponent(EXP_INVERT, 0xeb, 0x7f);
    exponent(EXP_SQRT, 0xfd, 0x0f);
    exponent(EXP_SQRT_M1, 0xfb, 0x1f);
    fe t, y;
    /* d = -121665 / 121666 */
    fe_set(t, 121666); fe_invert(t, t);
    fe_set(D, 121665); fe_neg(D, D); fe_mul(D, D, t);
    fe_add(D2, D, D);
    fe_set(t, 2); fe_pow(SQRT_M1, t, EXP_SQRT_M1);
    /* B: y = 4/5, x even. */
    unsigned char enc[32];
    fe_set(t, 5); fe_invert(t, t);
    fe_set(y, 4); fe_mul(y, y, t);
    fe_tobytes(enc, y);
    point base;
    point_decode(&base, enc);
    if (build_table(BASE_TABLE, &base) != 0) return -1;
    ready = 1;
    return 0;
}

int ed25519_key_table(unsigned char *table, const unsigned char pk[32]) {
    point a;
    if (point_decode(&a, pk) != 0) return -1;
    return build_table((niels *)table, &a);
}

/* WINDOWS signed digits with a = sum e[i] 2^(w i), each in [-2^(w-1), 2^(w-1))
 * except the top one, in [0, 2^(w-1)], for a < 2^253. */
static void scalar_digits(signed char e[WINDOWS], const unsigned char a[32]) {
    unsigned char padded[34] = {0};
    memcpy(padded, a, 32);
    int carry = 0;
    for (int i = 0; i < WINDOWS; i++) {
        int pos = i * WINDOW_BITS;
        int bits = (padded[pos >> 3] | (padded[(pos >> 3) + 1] << 8)) >> (pos & 7);
        int d = (bits & ((1 << WINDOW_BITS) - 1)) + carry;
        if (i == WINDOWS - 1) { e[i] = (signed char)d; break; }
        carry = (d + ENTRIES) >> WINDOW_BITS;
        e[i] = (signed char)(d - (carry << WINDOW_BITS));
    }
}

static void add_multiple(point *acc, const niels *table, const signed char e[WINDOWS], int negate) {
    for (int i = 0; i < WINDOWS; i++) {
        int d = e[i];
        if (d > 0) point_madd(acc, &table[i * ENTRIES + d - 1], negate);
        else if (d < 0) point_madd(acc, &table[i * ENTRIES - d - 1], !negate);
    }
}

/* L = 2^252 + 27742317777372353535851937790883648493, little endian. */
static const unsigned char ORDER[32] = {
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
};

int ed25519_scalar_is_canonical(const unsigned char s[32]) {
    for (int i = 31; i >= 0; i--) {
        if (s[i] < ORDER[i]) return 1;
        if (s[i] > ORDER[i]) return 0;
    }
    return 0;  /* s == L */
}

/* acc = [s]B - [h]A for A the key of table, s and h below 2^253. */
static void combine(point *acc, const niels *table, const unsigned char s[32],
                    const unsigned char h[32]) {
    signed char es[WINDOWS], eh[WINDOWS];
    scalar_digits(es, s);
    scalar_digits(eh, h);
    point_identity(acc);
    add_multiple(acc, BASE_TABLE, es, 0);
    add_multiple(acc, table, eh, 1);
}

/* The encoding of (X:Y:Z) given 1/Z: y, and x's parity in bit 255. */
static void encode_point(unsigned char out[32], const point *p, const fe zinv) {
    fe x, y;
    fe_mul(x, p->X, zinv);
    fe_mul(y, p->Y, zinv);
    fe_tobytes(out, y);
    out[31] |= (unsigned char)(fe_is_odd(x) << 7);
}

int ed25519_verify_tables(size_t n, const unsigned char *const *tables,
                          const unsigned char *const *sigs, const unsigned char (*h)[32],
                          unsigned char *ok, void *work) {
    point *acc = (point *)work;
    fe *zs = (fe *)(acc + n), *inv = zs + n, *scratch = inv + n;
    for (size_t k = 0; k < n; k++) {
        combine(&acc[k], (const niels *)tables[k], sigs[k] + 32, h[k]);
        fe_copy(zs[k], acc[k].Z);
    }
    if (fe_batch_invert(inv, zs, n, scratch) != 0) return -1;
    for (size_t k = 0; k < n; k++) {
        unsigned char enc[32];
        encode_point(enc, &acc[k], inv[k]);
        ok[k] = memcmp(enc, sigs[k], 32) == 0;
    }
    return 0;
}

void ed25519_combine(unsigned char out[32], const unsigned char *table,
                     const unsigned char s[32], const unsigned char h[32]) {
    point acc;
    fe zinv;
    combine(&acc, (const niels *)table, s, h);
    fe_invert(zinv, acc.Z);
    encode_point(out, &acc, zinv);
}

size_t ed25519_work_bytes(size_t n) { return n * (sizeof(point) + 3 * sizeof(fe)); }

size_t ed25519_table_bytes(void) { return (size_t)WINDOWS * ENTRIES * sizeof(niels); }
