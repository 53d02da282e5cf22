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

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#include <immintrin.h>
/* The Gaussians of imc_normal4 with AVX-512 intrinsics, 16 counters per step: the same
 * operations in the same order as the scalar Philox4x32-10 and Box-Muller above (no
 * contraction), so the same bits (tested: readout.c's and moment.c's vector = scalar). */
static inline __m512i imc_mulhilo_epu32(__m512i a, __m512i m, __m512i *lo) {
    const __m512i pe = _mm512_mul_epu32(a, m);                        /* even lanes, 64-bit */
    const __m512i po = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), m); /* odd lanes */
    *lo = _mm512_mask_blend_epi32((__mmask16)0xAAAA, pe, _mm512_slli_epi64(po, 32));
    return _mm512_mask_blend_epi32((__mmask16)0xAAAA, _mm512_srli_epi64(pe, 32), po);
}

static inline __m512 imc_logf16(__m512 x) {
    const __m512i u = _mm512_castps_si512(x);
    __m512i e = _mm512_sub_epi32(_mm512_and_si512(_mm512_srli_epi32(u, 23), _mm512_set1_epi32(0xff)),
                                 _mm512_set1_epi32(127));
    __m512 m = _mm512_castsi512_ps(_mm512_or_si512(_mm512_and_si512(u, _mm512_set1_epi32(0x007fffff)),
                                                   _mm512_set1_epi32(0x3f800000)));
    const __mmask16 big = _mm512_cmp_ps_mask(m, _mm512_set1_ps(1.41421356f), _CMP_GT_OQ);
    m = _mm512_mask_mul_ps(m, big, m, _mm512_set1_ps(0.5f));
    e = _mm512_mask_add_epi32(e, big, e, _mm512_set1_epi32(1));
    const __m512 one = _mm512_set1_ps(1.0f);
    const __m512 t = _mm512_div_ps(_mm512_sub_ps(m, one), _mm512_add_ps(m, one));
    const __m512 t2 = _mm512_mul_ps(t, t);
    __m512 s = _mm512_add_ps(_mm512_set1_ps(1.0f / 11), _mm512_mul_ps(t2, _mm512_set1_ps(1.0f / 13)));
    s = _mm512_add_ps(_mm512_set1_ps(1.0f / 9), _mm512_mul_ps(t2, s));
    s = _mm512_add_ps(_mm512_set1_ps(1.0f / 7), _mm512_mul_ps(t2, s));
    s = _mm512_add_ps(_mm512_set1_ps(1.0f / 5), _mm512_mul_ps(t2, s));
    s = _mm512_add_ps(_mm512_set1_ps(1.0f / 3), _mm512_mul_ps(t2, s));
    s = _mm512_add_ps(one, _mm512_mul_ps(t2, s));
    return _mm512_add_ps(_mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(2.0f), t), s),
                         _mm512_mul_ps(_mm512_cvtepi32_ps(e), _mm512_set1_ps(0.693147180559945f)));
}

static inline void imc_box_muller16(__m512i a, __m512i b, __m512 *z0, __m512 *z1) {
    __m512 u1 = _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepu32_ps(a), _mm512_set1_ps(2.3283064365386963e-10f)),
                              _mm512_set1_ps(1.1641532182693481e-10f));
    const __m512 f = _mm512_mul_ps(_mm512_cvtepu32_ps(_mm512_srli_epi32(b, 8)),
                                   _mm512_set1_ps(5.9604644775390625e-08f));
    const __m512 one = _mm512_set1_ps(1.0f);
    u1 = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(u1, one, _CMP_GT_OQ), u1, one);
    const __m512 r = _mm512_sqrt_ps(_mm512_mul_ps(_mm512_set1_ps(-2.0f), imc_logf16(u1)));
    /* imc_sincos2pi */
    const __m512 q = _mm512_floor_ps(_mm512_add_ps(_mm512_mul_ps(f, _mm512_set1_ps(4.0f)), _mm512_set1_ps(0.5f)));
    const __m512 x = _mm512_mul_ps(_mm512_sub_ps(f, _mm512_mul_ps(q, _mm512_set1_ps(0.25f))),
                                   _mm512_set1_ps(6.28318530717958647f));
    const __m512 x2 = _mm512_mul_ps(x, x);
    __m512 sn = _mm512_add_ps(_mm512_set1_ps(1.0f / 362880), _mm512_mul_ps(x2, _mm512_set1_ps(-1.0f / 39916800)));
    sn = _mm512_add_ps(_mm512_set1_ps(-1.0f / 5040), _mm512_mul_ps(x2, sn));
    sn = _mm512_add_ps(_mm512_set1_ps(1.0f / 120), _mm512_mul_ps(x2, sn));
    sn = _mm512_add_ps(_mm512_set1_ps(-1.0f / 6), _mm512_mul_ps(x2, sn));
    sn = _mm512_mul_ps(x, _mm512_add_ps(one, _mm512_mul_ps(x2, sn)));
    __m512 cs = _mm512_add_ps(_mm512_set1_ps(-1.0f / 3628800), _mm512_mul_ps(x2, _mm512_set1_ps(1.0f / 479001600)));
    cs = _mm512_add_ps(_mm512_set1_ps(1.0f / 40320), _mm512_mul_ps(x2, cs));
    cs = _mm512_add_ps(_mm512_set1_ps(-1.0f / 720), _mm512_mul_ps(x2, cs));
    cs = _mm512_add_ps(_mm512_set1_ps(1.0f / 24), _mm512_mul_ps(x2, cs));
    cs = _mm512_add_ps(_mm512_set1_ps(-0.5f), _mm512_mul_ps(x2, cs));
    cs = _mm512_add_ps(one, _mm512_mul_ps(x2, cs));
    const __m512 h = _mm512_mul_ps(q, _mm512_set1_ps(0.5f));
    const __m512 zero = _mm512_setzero_ps();
    const __m512 odd = _mm512_mask_blend_ps(
        _mm512_cmp_ps_mask(_mm512_sub_ps(h, _mm512_floor_ps(h)), _mm512_set1_ps(0.25f), _CMP_GT_OQ), zero, one);
    const __m512 q4 = _mm512_sub_ps(q, _mm512_mul_ps(_mm512_set1_ps(4.0f),
                                                     _mm512_floor_ps(_mm512_mul_ps(q, _mm512_set1_ps(0.25f)))));
    const __m512 neg = _mm512_set1_ps(-1.0f);
    const __m512 sgs = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(q4, _mm512_set1_ps(1.5f), _CMP_GE_OQ), one, neg);
    const __mmask16 cm = _mm512_cmp_ps_mask(q4, _mm512_set1_ps(0.5f), _CMP_GE_OQ)
                         & _mm512_cmp_ps_mask(q4, _mm512_set1_ps(2.5f), _CMP_LT_OQ);
    const __m512 sgc = _mm512_mask_blend_ps(cm, one, neg);
    const __m512 nodd = _mm512_sub_ps(one, odd);
    const __m512 s = _mm512_mul_ps(sgs, _mm512_add_ps(_mm512_mul_ps(odd, cs), _mm512_mul_ps(nodd, sn)));
    const __m512 c = _mm512_mul_ps(sgc, _mm512_add_ps(_mm512_mul_ps(odd, sn), _mm512_mul_ps(nodd, cs)));
    *z0 = _mm512_mul_ps(r, c);
    *z1 = _mm512_mul_ps(r, s);
}

/* 16 counters g0 .. g0+15 of stream (counter word 2) -> 64 Gaussians in element order at z */
static inline void imc_normal64_stream(uint64_t key, uint64_t g0, uint32_t stream,
                                       float *restrict z) {
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const uint32_t lo = (uint32_t)g0;
    __m512i c0 = _mm512_add_epi32(_mm512_set1_epi32((int)lo), lane);
    /* the high word: +1 where the low word wrapped */
    const __mmask16 wrap = _mm512_cmp_epu32_mask(c0, _mm512_set1_epi32((int)lo), _MM_CMPINT_LT);
    __m512i c1 = _mm512_mask_add_epi32(_mm512_set1_epi32((int)(uint32_t)(g0 >> 32)), wrap,
                                       _mm512_set1_epi32((int)(uint32_t)(g0 >> 32)), _mm512_set1_epi32(1));
    __m512i c2 = _mm512_set1_epi32((int)stream), c3 = _mm512_setzero_si512();
    uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32);
    const __m512i M0 = _mm512_set1_epi32((int)IMC_PHILOX_M0), M1 = _mm512_set1_epi32((int)IMC_PHILOX_M1);
    for (int r = 0; r < 10; r++) {
        __m512i l0, l1;
        const __m512i h0 = imc_mulhilo_epu32(c0, M0, &l0);
        const __m512i h1 = imc_mulhilo_epu32(c2, M1, &l1);
        const __m512i n0 = _mm512_xor_si512(_mm512_xor_si512(h1, c1), _mm512_set1_epi32((int)k0));
        const __m512i n2 = _mm512_xor_si512(_mm512_xor_si512(h0, c3), _mm512_set1_epi32((int)k1));
        c1 = l1;
        c3 = l0;
        c0 = n0;
        c2 = n2;
        k0 += IMC_PHILOX_W0;
        k1 += IMC_PHILOX_W1;
    }
    __m512 z0, z1, z2, z3;
    imc_box_muller16(c0, c1, &z0, &z1);
    imc_box_muller16(c2, c3, &z2, &z3);
    /* (z0, z1, z2, z3)[q] -> z[4 q + j]: 4x4 transposes within 128-bit lanes */
    const __m512 t0 = _mm512_unpacklo_ps(z0, z1), t1 = _mm512_unpackhi_ps(z0, z1);
    const __m512 t2 = _mm512_unpacklo_ps(z2, z3), t3 = _mm512_unpackhi_ps(z2, z3);
    const __m512 r0 = _mm512_shuffle_ps(t0, t2, 0x44), r1 = _mm512_shuffle_ps(t0, t2, 0xEE);
    const __m512 r2 = _mm512_shuffle_ps(t1, t3, 0x44), r3 = _mm512_shuffle_ps(t1, t3, 0xEE);
    /* r_i's 128-bit lane L holds counter 4 L + i */
    const __m512i i01 = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
    const __m512i i23 = _mm512_setr_epi32(8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
    const __m512 a01 = _mm512_permutex2var_ps(r0, i01, r1); /* r0L0 r1L0 r0L1 r1L1 */
    const __m512 b01 = _mm512_permutex2var_ps(r2, i01, r3); /* r2L0 r3L0 r2L1 r3L1 */
    const __m512 a23 = _mm512_permutex2var_ps(r0, i23, r1); /* r0L2 r1L2 r0L3 r1L3 */
    const __m512 b23 = _mm512_permutex2var_ps(r2, i23, r3);
    const __m512i lo2 = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
    const __m512i hi2 = _mm512_setr_epi32(8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
    _mm512_storeu_ps(z, _mm512_permutex2var_ps(a01, lo2, b01));      /* counters 0..3 */
    _mm512_storeu_ps(z + 16, _mm512_permutex2var_ps(a01, hi2, b01)); /* 4..7 */
    _mm512_storeu_ps(z + 32, _mm512_permutex2var_ps(a23, lo2, b23)); /* 8..11 */
    _mm512_storeu_ps(z + 48, _mm512_permutex2var_ps(a23, hi2, b23)); /* 12..15 */
}
#define IMC_HAVE_NORMAL64 1
#endif

#endif
