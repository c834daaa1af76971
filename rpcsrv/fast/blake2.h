/* BLAKE2s and BLAKE2b (RFC 7693), keyed, one-shot: what the fast path needs to check a file
 * handle's MAC and to make READDIR cookies and verifiers exactly as rpcsrv.export does with
 * hashlib (no salt, no personalisation, sequential mode).
 *
 * Written from the RFC's description: the IVs are SHA-256's and SHA-512's, the message schedule
 * is the RFC's SIGMA table, G mixes with rotations (16, 12, 8, 7) for BLAKE2s and (32, 24, 16, 63)
 * for BLAKE2b; the parameter block's first word carries the digest length, the key length and
 * fanout = depth = 1. A key is one zero-padded block hashed before the message.
 * Pure functions of their arguments: safe from any thread. */
#ifndef NFSBULK_BLAKE2_H
#define NFSBULK_BLAKE2_H

#include <stdint.h>
#include <string.h>

static const uint8_t nb_sigma[12][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
    {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4},
    {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
    {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13},
    {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
    {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11},
    {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
    {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5},
    {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
};

/* ---------------------------------------------------------------- BLAKE2s (32-bit words) */

static const uint32_t nb_iv32[8] = {
    0x6A09E667u, 0xBB67AE85u, 0x3C6EF372u, 0xA54FF53Au,
    0x510E527Fu, 0x9B05688Cu, 0x1F83D9ABu, 0x5BE0CD19u,
};

static inline uint32_t nb_rotr32(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

static inline uint32_t nb_load32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

#define NB_G32(a, b, c, d, x, y) do { \
    v[a] = v[a] + v[b] + (x); v[d] = nb_rotr32(v[d] ^ v[a], 16); \
    v[c] = v[c] + v[d];       v[b] = nb_rotr32(v[b] ^ v[c], 12); \
    v[a] = v[a] + v[b] + (y); v[d] = nb_rotr32(v[d] ^ v[a], 8);  \
    v[c] = v[c] + v[d];       v[b] = nb_rotr32(v[b] ^ v[c], 7);  \
} while (0)

static void nb_compress32(uint32_t h[8], const uint8_t block[64], uint64_t t, int last) {
    uint32_t m[16], v[16];
    int i, r;
    for (i = 0; i < 16; i++) m[i] = nb_load32(block + 4 * i);
    for (i = 0; i < 8; i++) { v[i] = h[i]; v[i + 8] = nb_iv32[i]; }
    v[12] ^= (uint32_t)t;
    v[13] ^= (uint32_t)(t >> 32);
    if (last) v[14] = ~v[14];
    for (r = 0; r < 10; r++) {
        const uint8_t *s = nb_sigma[r];
        NB_G32(0, 4, 8, 12, m[s[0]], m[s[1]]);
        NB_G32(1, 5, 9, 13, m[s[2]], m[s[3]]);
        NB_G32(2, 6, 10, 14, m[s[4]], m[s[5]]);
        NB_G32(3, 7, 11, 15, m[s[6]], m[s[7]]);
        NB_G32(0, 5, 10, 15, m[s[8]], m[s[9]]);
        NB_G32(1, 6, 11, 12, m[s[10]], m[s[11]]);
        NB_G32(2, 7, 8, 13, m[s[12]], m[s[13]]);
        NB_G32(3, 4, 9, 14, m[s[14]], m[s[15]]);
    }
    for (i = 0; i < 8; i++) h[i] ^= v[i] ^ v[i + 8];
}

/* out[0:outlen] = BLAKE2s(in, key) with digest size outlen (1..32) and key length keylen (0..32). */
static void nb_blake2s(uint8_t *out, size_t outlen, const uint8_t *key, size_t keylen,
                       const uint8_t *in, size_t inlen) {
    uint32_t h[8];
    uint8_t block[64];
    uint64_t t = 0;
    size_t i;
    for (i = 0; i < 8; i++) h[i] = nb_iv32[i];
    h[0] ^= 0x01010000u ^ ((uint32_t)keylen << 8) ^ (uint32_t)outlen;
    if (keylen) {
        memset(block, 0, 64);
        memcpy(block, key, keylen);
        t = 64;
        nb_compress32(h, block, t, inlen == 0);
    }
    while (inlen > 64) {
        t += 64;
        nb_compress32(h, in, t, 0);
        in += 64;
        inlen -= 64;
    }
    if (inlen || !keylen) {
        memset(block, 0, 64);
        memcpy(block, in, inlen);
        t += inlen;
        nb_compress32(h, block, t, 1);
    }
    for (i = 0; i < outlen; i++) out[i] = (uint8_t)(h[i >> 2] >> (8 * (i & 3)));
}

/* ---------------------------------------------------------------- BLAKE2b (64-bit words) */

static const uint64_t nb_iv64[8] = {
    0x6A09E667F3BCC908ull, 0xBB67AE8584CAA73Bull, 0x3C6EF372FE94F82Bull, 0xA54FF53A5F1D36F1ull,
    0x510E527FADE682D1ull, 0x9B05688C2B3E6C1Full, 0x1F83D9ABFB41BD6Bull, 0x5BE0CD19137E2179ull,
};

static inline uint64_t nb_rotr64(uint64_t x, int n) { return (x >> n) | (x << (64 - n)); }

static inline uint64_t nb_load64(const uint8_t *p) {
    return (uint64_t)nb_load32(p) | ((uint64_t)nb_load32(p + 4) << 32);
}

#define NB_G64(a, b, c, d, x, y) do { \
    w[a] = w[a] + w[b] + (x); w[d] = nb_rotr64(w[d] ^ w[a], 32); \
    w[c] = w[c] + w[d];       w[b] = nb_rotr64(w[b] ^ w[c], 24); \
    w[a] = w[a] + w[b] + (y); w[d] = nb_rotr64(w[d] ^ w[a], 16); \
    w[c] = w[c] + w[d];       w[b] = nb_rotr64(w[b] ^ w[c], 63); \
} while (0)

static void nb_compress64(uint64_t h[8], const uint8_t block[128], uint64_t t, int last) {
    uint64_t m[16], w[16];
    int i, r;
    for (i = 0; i < 16; i++) m[i] = nb_load64(block + 8 * i);
    for (i = 0; i < 8; i++) { w[i] = h[i]; w[i + 8] = nb_iv64[i]; }
    w[12] ^= t;                  /* messages here are far below 2^64 bytes: the high word stays 0 */
    if (last) w[14] = ~w[14];
    for (r = 0; r < 12; r++) {
        const uint8_t *s = nb_sigma[r];
        NB_G64(0, 4, 8, 12, m[s[0]], m[s[1]]);
        NB_G64(1, 5, 9, 13, m[s[2]], m[s[3]]);
        NB_G64(2, 6, 10, 14, m[s[4]], m[s[5]]);
        NB_G64(3, 7, 11, 15, m[s[6]], m[s[7]]);
        NB_G64(0, 5, 10, 15, m[s[8]], m[s[9]]);
        NB_G64(1, 6, 11, 12, m[s[10]], m[s[11]]);
        NB_G64(2, 7, 8, 13, m[s[12]], m[s[13]]);
        NB_G64(3, 4, 9, 14, m[s[14]], m[s[15]]);
    }
    for (i = 0; i < 8; i++) h[i] ^= w[i] ^ w[i + 8];
}

/* out[0:outlen] = BLAKE2b(in, key) with digest size outlen (1..64) and key length keylen (0..64). */
static void nb_blake2b(uint8_t *out, size_t outlen, const uint8_t *key, size_t keylen,
                       const uint8_t *in, size_t inlen) {
    uint64_t h[8];
    uint8_t block[128];
    uint64_t t = 0;
    size_t i;
    for (i = 0; i < 8; i++) h[i] = nb_iv64[i];
    h[0] ^= 0x01010000ull ^ ((uint64_t)keylen << 8) ^ (uint64_t)outlen;
    if (keylen) {
        memset(block, 0, 128);
        memcpy(block, key, keylen);
        t = 128;
        nb_compress64(h, block, t, inlen == 0);
    }
    while (inlen > 128) {
        t += 128;
        nb_compress64(h, in, t, 0);
        in += 128;
        inlen -= 128;
    }
    if (inlen || !keylen) {
        memset(block, 0, 128);
        memcpy(block, in, inlen);
        t += inlen;
        nb_compress64(h, block, t, 1);
    }
    for (i = 0; i < outlen; i++) out[i] = (uint8_t)(h[i >> 3] >> (8 * (i & 7)));
}

#endif
