/* Counter-based random numbers for the nnsim kernels (include from a kernel's .c).
 *
 * Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011; the
 * Random123 reference constants): a 64-bit key and a 128-bit counter give four 32-bit words.
 * A kernel keys it with one 64-bit value drawn from the chip's torch.Generator per call and
 * counts with the element's flat index, so every element's numbers depend only on (key,
 * index): the same for any thread count, block size or skipped elements.
 *
 * Gaussians: Box-Muller on the words, two per pair (w0, w1): u1 = w0 2^-32 + 2^-33 in (0, 1],
 * theta = 2 pi (w1 >> 8) 2^-24, z0 = sqrt(-2 ln u1) cos theta, z1 = ... sin theta (float32; the
 * log/sincos are polynomial, relative error ~1e-7). Element i uses word pair (i & 3) >> 1 and
 * the cos (even i) or sin (odd i) output of counter i >> 2, i.e. four Gaussians per counter.
 * An exact transform of 32-bit uniforms: the largest |z| is sqrt(-2 ln 2^-33) = 6.76 (the
 * mass beyond, 1.4e-11, is not produced), no table.
 */
#ifndef IMC_RNG_H
#define IMC_RNG_H

#include <math.h>
#include <stdint.h>

#define IMC_PHILOX_M0 0xD2511F53u
#define IMC_PHILOX_M1 0xCD9E8D57u
#define IMC_PHILOX_W0 0x9E3779B9u
#define IMC_PHILOX_W1 0xBB67AE85u

/* One Philox4x32 round on the local words c0..c3 and key k0, k1 (uint32_t), in place: the
 * one definition of the round, for imc_philox4x32_10 and the kernels' vectorized loops (a
 * macro so `#pragma omp simd` loops keep it inline). */
#define IMC_PHILOX_ROUND                                   \
    {                                                      \
        uint64_t p0 = (uint64_t)IMC_PHILOX_M0 * c0;        \
        uint64_t p1 = (uint64_t)IMC_PHILOX_M1 * c2;        \
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;      \
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;      \
        c1 = (uint32_t)p1;                                 \
        c3 = (uint32_t)p0;                                 \
        c0 = n0;                                           \
        c2 = n2;                                           \
        k0 += IMC_PHILOX_W0;                               \
        k1 += IMC_PHILOX_W1;                               \
    }
#define IMC_PHILOX_10_ROUNDS                                                         \
    IMC_PHILOX_ROUND IMC_PHILOX_ROUND IMC_PHILOX_ROUND IMC_PHILOX_ROUND IMC_PHILOX_ROUND \
    IMC_PHILOX_ROUND IMC_PHILOX_ROUND IMC_PHILOX_ROUND IMC_PHILOX_ROUND IMC_PHILOX_ROUND

/* Philox4x32-10 of counter c (4 words) with key k (2 words); result in out. */
static inline void imc_philox4x32_10(const uint32_t c[4], const uint32_t k[2], uint32_t out[4]) {
    uint32_t c0 = c[0], c1 = c[1], c2 = c[2], c3 = c[3];
    uint32_t k0 = k[0], k1 = k[1];
    IMC_PHILOX_10_ROUNDS
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

/* ln(x) for x in (0, 1]: frexp split, mantissa m in [sqrt(1/2), sqrt(2)), ln(m) by the
 * series in t = (m - 1)/(m + 1) (odd terms to t^13; |t| < 0.172: error < 1e-8 relative).
 * Branch-free so loops over it vectorize. */
static inline float imc_logf(float x) {
    union { float f; uint32_t u; } v = {x};
    int e = (int)((v.u >> 23) & 0xff) - 127;
    v.u = (v.u & 0x007fffffu) | 0x3f800000u; /* m in [1, 2) */
    float m = v.f;
    int big = m > 1.41421356f;
    m = big ? m * 0.5f : m;
    e += big;
    float t = (m - 1.0f) / (m + 1.0f);
    float t2 = t * t;
    float s = 1.0f + t2 * (1.0f / 3 + t2 * (1.0f / 5 + t2 * (1.0f / 7 + t2 * (1.0f / 9
              + t2 * (1.0f / 11 + t2 * (1.0f / 13))))));
    return 2.0f * t * s + (float)e * 0.693147180559945f;
}

/* sin and cos of 2 pi f for f in [0, 1): quadrant from f, then Taylor polynomials on
 * [-pi/4, pi/4] (to x^11 / x^12: error < 3e-8). Branch-free. */
static inline void imc_sincos2pi(float f, float *s, float *c) {
    float q = floorf(f * 4.0f + 0.5f);                /* nearest quarter turn, 0..4 */
    float x = (f - q * 0.25f) * 6.28318530717958647f; /* in [-pi/4, pi/4] */
    float x2 = x * x;
    float sn = x * (1.0f + x2 * (-1.0f / 6 + x2 * (1.0f / 120 + x2 * (-1.0f / 5040
               + x2 * (1.0f / 362880 + x2 * (-1.0f / 39916800))))));
    float cs = 1.0f + x2 * (-0.5f + x2 * (1.0f / 24 + x2 * (-1.0f / 720 + x2 * (1.0f / 40320
               + x2 * (-1.0f / 3628800 + x2 * (1.0f / 479001600))))));
    /* rotate by q quarter turns: (s, c) -> (c, -s) -> (-s, -c) -> (-c, s), in float
     * arithmetic only (the loop over it vectorizes): odd q swaps, q = 2, 3 negate s and
     * q = 1, 2 negate c */
    float h = q * 0.5f;
    float odd = h - floorf(h) > 0.25f ? 1.0f : 0.0f;  /* q mod 2 */
    float q4 = q - 4.0f * floorf(q * 0.25f);          /* q mod 4 */
    float sgs = q4 >= 1.5f ? -1.0f : 1.0f;
    float sgc = (q4 >= 0.5f && q4 < 2.5f) ? -1.0f : 1.0f;
    *s = sgs * (odd * cs + (1.0f - odd) * sn);
    *c = sgc * (odd * sn + (1.0f - odd) * cs);
}

/* The two Box-Muller Gaussians of words (a, b). */
static inline void imc_box_muller(uint32_t a, uint32_t b, float *z0, float *z1) {
    float u1 = (float)a * 2.3283064365386963e-10f + 1.1641532182693481e-10f; /* (0, 1] */
    float f = (float)(b >> 8) * 5.9604644775390625e-08f;                   /* [0, 1) */
    float r = sqrtf(-2.0f * imc_logf(u1 > 1.0f ? 1.0f : u1));
    float s, c;
    imc_sincos2pi(f, &s, &c);
    *z0 = r * c;
    *z1 = r * s;
}

/* Four Gaussians of counter index g (stream in counter word 2) under key. */
static inline void imc_normal4(uint64_t key, uint64_t g, uint32_t stream, float z[4]) {
    uint32_t c[4] = {(uint32_t)g, (uint32_t)(g >> 32), stream, 0u};
    uint32_t k[2] = {(uint32_t)key, (uint32_t)(key >> 32)};
    uint32_t w[4];
    imc_philox4x32_10(c, k, w);
    imc_box_muller(w[0], w[1], &z[0], &z[1]);
    imc_box_muller(w[2], w[3], &z[2], &z[3]);
}

/* SplitMix64 (Steele, Lea, Flood, OOPSLA 2014): its output function, and the generator's
 * output for state v (= imc_mix64(v + IMC_GAMMA)). The kernels' counter hashes for the
 * inverse-transform draws (readout.c, rap_mvm.c). */
#define IMC_GAMMA 0x9E3779B97F4A7C15ULL
static inline uint64_t imc_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}
static inline uint64_t imc_splitmix64(uint64_t v) { return imc_mix64(v + IMC_GAMMA); }

/* Phi^-1(p) for p in (0, 1/2] inside the bracket [a, b] (Phi(a) <= p <= Phi(b); clamped to
 * [-40, 0]): safeguarded Newton on Phi(n) = erfc(-n / sqrt 2) / 2, bisection where a step
 * leaves the bracket, to the last bits of a double. The one inverse normal CDF of the kernels
 * (their quantile tables and the draws the tables do not decide). */
static inline double imc_quantile_lower(double p, double a, double b) {
    if (p == 0.5) return 0.0;
    if (!(a > -40.0)) a = -40.0;
    if (!(b < 0.0)) b = 0.0;
    double n = 0.5 * (a + b);
    for (int it = 0; it < 400; it++) {
        const double f = 0.5 * erfc(-n * 0.70710678118654752440) - p;
        if (f == 0.0) return n;
        if (f > 0.0) b = n; else a = n;
        const double d = 0.39894228040143267794 * exp(-0.5 * n * n);
        double nn = d > 0.0 ? n - f / d : 0.5 * (a + b);
        if (!(nn > a && nn < b)) nn = 0.5 * (a + b);
        if (fabs(nn - n) <= 1e-16 * (fabs(n) > 1.0 ? fabs(n) : 1.0) || !(b - a > 0.0)) {
            n = nn;
            break;
        }
        n = nn;
    }
    return n < a ? a : (n > b ? b : n);
}

#endif
