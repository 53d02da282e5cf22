/* Fused bit-mode readout of nnsim.analog.mvm (issue 17), and the generator it draws from.
 *
 * Built and loaded by nnsim.kernels.load("readout"); see rng.h for the random numbers.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#include "rng.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* n Gaussians of element indices start .. start+n-1 under key (stream 0 of rng.h). */
void imc_normal_fill(uint64_t key, uint64_t start, int64_t n, uint32_t stream, float *out) {
    int64_t i = 0;
    while (i < n) {
        uint64_t e = start + (uint64_t)i;
        float z[4];
        imc_normal4(key, e >> 2, stream, z);
        for (int j = (int)(e & 3); j < 4 && i < n; j++, i++) out[i] = z[j];
    }
}

/* Philox4x32-10 words of counters (lo, hi, stream, 0) for lo..lo+n-1 under key: 4n words. */
void imc_philox_words(uint64_t key, uint64_t start, int64_t n, uint32_t stream, uint32_t *out) {
    uint32_t k[2] = {(uint32_t)key, (uint32_t)(key >> 32)};
    for (int64_t i = 0; i < n; i++) {
        uint64_t g = start + (uint64_t)i;
        uint32_t c[4] = {(uint32_t)g, (uint32_t)(g >> 32), stream, 0u};
        imc_philox4x32_10(c, k, out + 4 * i);
    }
}

/* n Gaussians of element indices start .. start+n-1 under key through the dense row
 * generator (imc_normal_groups, the readout's; the same numbers as imc_normal_fill). */
static void imc_normal_groups(uint64_t key, uint64_t g0, int64_t ng, float *restrict z);
void imc_normal_fill_dense(uint64_t key, uint64_t start, int64_t n, float *out) {
    const uint64_t g0 = start >> 2, off = start & 3;
    const int64_t ng = (int64_t)((off + (uint64_t)n + 3) >> 2);
    float *buf = (float *)malloc(sizeof(float) * (size_t)(4 * ng));
    imc_normal_groups(key, g0, ng, buf);
    memcpy(out, buf + off, sizeof(float) * (size_t)n);
    free(buf);
}

/* OpenMP threads this library was built with (1 without OpenMP). */
int imc_openmp(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

/* One raw Philox4x32-10 block (known-answer tests). */
void imc_philox_raw(const uint32_t *c, const uint32_t *k, uint32_t *out) {
    imc_philox4x32_10(c, k, out);
}

/* ---------------------------------------------------------------------------------------
 * The fused readout of mvm's bit planes x slices (nnsim.analog._readout_kernel).
 *
 * Per conversion (partial sum s of row (l, t, p, m), column k of K = NS2 * C):
 *   u    = ca s + cb n                      (the cells' G(T): HardwareModel.cell_map)
 *   i    = min(trunc(max(u per_u, 0)), n-1) (HardwareModel.fused_terms: one cell of the
 *   term = a[i] + idx b[i]                   uniform grid, intercept + slope)
 *   u    = mean + spread z_col              (transfer spread, drawn once per chip: spread_z)
 *   x    = u inv_col, var = (read inv_col)^2 + an2   (LSB of the column's ADC)
 *   code = #{thresholds of the column's instance <= x + sqrt(var) N(0,1)}
 *          (mode 2 "threshold": the Gaussian is drawn only where a threshold lies within
 *          sqrt(cut2) sigma of x; elsewhere the noiseless code; mode 1: always; mode 0: never)
 *   out[l, m, c] += coef[p, k / C] (code + code_offset) lsb_col
 * in float32, in the order of the torch path (no contraction: -ffp-contract=off), except the
 * final sum, which is accumulated per output in (t, p, k) order.
 * The Gaussian of element e = ((l T + t) P M + p M + m) K + k is rng.h's Gaussian e under
 * `key`: independent of threads and of which elements drew.
 * ADC codes: per instance, bins [b-2, b-1) of one LSB (b = 0 .. max_code+3) hold the count of
 * thresholds below the bin and the J thresholds inside it (float32 rounded up, +inf padded):
 * code(x) = low + #(th_j <= x), exact (AdcModel.quantize's count). x is first clamped to
 * [xlo, xhi] as AdcModel._lut_index does.
 * ------------------------------------------------------------------------------------- */
typedef struct {
    const float *s;
    const float *n_act;
    int64_t L, T, P, M, K, C, NS2;
    const float *z;
    int64_t z_ls;
    const float *inv;
    int64_t inv_ls;
    const float *lsb;
    int64_t lsb_ls;
    const int32_t *inst;
    int64_t inst_ls;
    double ca, cb;
    int64_t ca_is_one;
    const float *tab; /* (tab_n, tab_w): a0 b0 [a1 b1] [a2 b2] per cell */
    int64_t tab_n, tab_w;
    double per_u;
    int64_t nonlin;   /* u = mean + spread z (terms 0, 1) */
    int64_t read_col; /* column of the read-noise intercept in tab, -1: none */
    const float *adc_bins; /* (instances, nbins, 1 + J) */
    int64_t adc_nbins, adc_J;
    const float *adc_thr; /* (instances, max_code + 2): -inf, thresholds, +inf */
    int64_t max_code;
    double xlo, xhi, an2, code_offset, cut2;
    int64_t mode;
    int64_t has_adc;
    const float *coef; /* (P, NS2) */
    uint64_t key;
    float *out; /* (L, M, C) */
    int64_t nthreads;
    int64_t draws; /* out: Gaussians used */
    double sum_s;  /* out: sum of the partial sums s (the simulated column currents) */
    int64_t simd;  /* 1: the AVX-512 row of the usual dense configuration where built (the
                    * same bits as the general row: tests switch it off to compare) */
    const float *qtab;    /* (4096, 2): the N(0,1) quantiles at c/4096 (rounded down) and
                           * (c+1)/4096 (rounded up), -inf/+inf at the ends */
    const float *adc_thu; /* (instances, max_code + 2): -inf, thresholds rounded up, +inf */
    int64_t slow;         /* 1: evaluate Phi^-1 for every draw (tests: the same bits) */
} imc_readout_args;

/* the fused table's (intercept, slope) pairs read as one 64-bit word (little endian: the
 * intercept in the low half) */
typedef uint64_t __attribute__((may_alias)) imc_u64a;
static inline float imc_lo(uint64_t m) {
    uint32_t v = (uint32_t)m;
    float f;
    memcpy(&f, &v, 4);
    return f;
}
static inline float imc_hi(uint64_t m) {
    uint32_t v = (uint32_t)(m >> 32);
    float f;
    memcpy(&f, &v, 4);
    return f;
}

/* code of x with the bins of one instance (bins + base); base and the bin index 32-bit */
static inline float imc_code_at(const float *restrict bins, int32_t base, int64_t J, float x, float xlo,
                                float xhi) {
    float xc = x < xlo ? xlo : (x > xhi ? xhi : x);
    int32_t b = (int32_t)floorf(xc) + 2; /* floorf is exact; bin [b-2, b-1) holds xc */
    int32_t e = base + b * (int32_t)(1 + J);
    float c = bins[e];
    if (J == 2) /* the usual layouts (J <= 2 padded to 2, else <= 4 to 4): no loop */
        return c + ((xc >= bins[e + 1]) ? 1.0f : 0.0f) + ((xc >= bins[e + 2]) ? 1.0f : 0.0f);
    if (J == 4)
        return c + ((xc >= bins[e + 1]) ? 1.0f : 0.0f) + ((xc >= bins[e + 2]) ? 1.0f : 0.0f)
               + ((xc >= bins[e + 3]) ? 1.0f : 0.0f) + ((xc >= bins[e + 4]) ? 1.0f : 0.0f);
    for (int32_t j = 1; j <= (int32_t)J; j++) c += (xc >= bins[e + j]) ? 1.0f : 0.0f;
    return c;
}

static inline float imc_code(const float *bins, int64_t J, float x, float xlo, float xhi) {
    return imc_code_at(bins, 0, J, x, xlo, xhi);
}

/* --- the draws of the ADC paths: exact inverse-transform sampling ------------------------
 * The noisy code of a conversion is code(x + sd n) with n = Phi^-1(U) (U uniform: exact
 * inverse-transform sampling of N(0, 1)), U = (k + 1/2) 2^-48, k = 48 random bits of the
 * element: the top 16 its own 16-bit part of word e >> 2 of the SplitMix64 stream from the
 * call's key, the low 32 from a second stream (drawn only where needed). The top 12 bits pick
 * the cell [c/4096, (c+1)/4096) of U, whose quantiles (float32, rounded outward) bracket n;
 * x + sd n is monotone in n, so where both ends give one code (x + sd zb below the threshold
 * after code(x + sd za)) that is the code and Phi^-1 is not evaluated (most draws); else n is
 * computed (safeguarded Newton on erfc, to double precision, inside the cell) and rounded to
 * float32, which keeps it inside the cell: the same code as evaluating it always (`slow`,
 * tested). Depends on (key, element) only: any thread count, block size or selection. */
/* SplitMix64 words q0 .. q0+n-1 of the stream from key (4 elements' 16 bits each) */
static void imc_hash_words(uint64_t key, uint64_t q0, int64_t n, uint64_t *restrict out) {
#pragma omp simd
    for (int64_t q = 0; q < n; q++) out[q] = imc_mix64(key + (q0 + (uint64_t)q + 1u) * IMC_GAMMA);
}

static inline uint32_t imc_h16(uint64_t key, uint64_t e) {
    return (uint32_t)(imc_mix64(key + ((e >> 2) + 1u) * IMC_GAMMA) >> (16u * (unsigned)(e & 3u)))
           & 0xFFFFu;
}

static inline uint32_t imc_l32(uint64_t key, uint64_t e) {
    return (uint32_t)imc_mix64(imc_mix64(key ^ 0xD1B54A32D192ED03ULL) + (e + 1u) * IMC_GAMMA);
}

/* n = Phi^-1((k + 1/2) 2^-48) for 48-bit k, clamped into the cell's bracket [za, zb] */
static double imc_variate48(uint64_t k, double za, double zb) {
    double n;
    if (k < (1ULL << 47))
        n = imc_quantile_lower(((double)k + 0.5) * 0x1.0p-48, za, zb);
    else
        n = -imc_quantile_lower(((double)((1ULL << 48) - 1u - k) + 0.5) * 0x1.0p-48, -zb, -za);
    return n < za ? za : (n > zb ? zb : n);
}

/* The variate of element e under key (tests: against an independent quantile function). */
double imc_variate(uint64_t key, uint64_t e, const float *qtab) {
    const uint32_t h = imc_h16(key, e), c = h >> 4;
    return imc_variate48(((uint64_t)h << 32) | imc_l32(key, e), qtab[2 * c], qtab[2 * c + 1]);
}

/* The noisy code of one conversion (x, sd in LSB; h: its 16 bits; e: its element index). */
static inline float imc_draw_code(const imc_readout_args *restrict a, float x, float sd,
                                  int32_t in, uint32_t h, uint64_t e, int64_t J) {
    const float xlo = (float)a->xlo, xhi = (float)a->xhi;
    const int32_t bb = in * (int32_t)(a->adc_nbins * (1 + J));
    if (!(sd > 0.0f)) return imc_code_at(a->adc_bins, bb, J, x, xlo, xhi);
    const uint32_t c = h >> 4;
    const float za = a->qtab[2 * c], zb = a->qtab[2 * c + 1];
    if (!a->slow) {
        const float xa = x + sd * za, xb = x + sd * zb;
        const float ca = imc_code_at(a->adc_bins, bb, J, xa, xlo, xhi);
        if (xb < a->adc_thu[in * (int32_t)(a->max_code + 2) + (int32_t)ca + 1]) return ca;
    }
    const float n = (float)imc_variate48(((uint64_t)h << 32) | imc_l32(a->key, e), za, zb);
    return imc_code_at(a->adc_bins, bb, J, x + sd * n, xlo, xhi);
}

/* Noiseless codes of x (n values) with per-value instances (NULL: 0): the kernel's ADC. */
void imc_adc_codes(const float *x, const int32_t *inst, int64_t n, const float *bins,
                   int64_t nbins, int64_t J, double xlo, double xhi, float *out) {
    for (int64_t i = 0; i < n; i++) {
        const float *b = bins + (inst ? (int64_t)inst[i] : 0) * nbins * (1 + J);
        out[i] = imc_code(b, J, x[i], (float)xlo, (float)xhi);
    }
}

#ifdef IMC_HAVE_NORMAL64 /* rng.h's AVX-512 generator, the readout's stream (0) */
static inline void imc_normal64(uint64_t key, uint64_t g0, float *restrict z) {
    imc_normal64_stream(key, g0, 0u, z);
}
#endif

/* Gaussians of counters g0 .. g0+ng-1 (4 each) into z: AVX-512 blocks of 16 counters where
 * built for it, the rest (or all) a loop the compiler vectorizes. */
static void imc_normal_groups(uint64_t key, uint64_t g0, int64_t ng, float *restrict z) {
    const uint32_t k0i = (uint32_t)key, k1i = (uint32_t)(key >> 32);
    int64_t q0 = 0;
#ifdef IMC_HAVE_NORMAL64
    for (; q0 + 16 <= ng; q0 += 16) imc_normal64(key, g0 + (uint64_t)q0, z + 4 * q0);
#endif
#pragma omp simd
    for (int64_t q = q0; q < ng; q++) {
        uint64_t g = g0 + (uint64_t)q;
        uint32_t c0 = (uint32_t)g, c1 = (uint32_t)(g >> 32), c2 = 0u, c3 = 0u;
        uint32_t k0 = k0i, k1 = k1i;
        IMC_PHILOX_10_ROUNDS
        float z0, z1, z2, z3;
        imc_box_muller(c0, c1, &z0, &z1);
        imc_box_muller(c2, c3, &z2, &z3);
        z[4 * q] = z0;
        z[4 * q + 1] = z1;
        z[4 * q + 2] = z2;
        z[4 * q + 3] = z3;
    }
}

/* One row of K conversions: u, transfer, ADC input x and sigma, noiseless code, and whether
 * the conversion needs its Gaussian. Flags are constants at the call sites (specialized). */
static inline __attribute__((always_inline)) void imc_row(
    const imc_readout_args *restrict a, const float *restrict sr, float nb,
    const float *restrict zc, const float *restrict ic, const int32_t *restrict nc,
    int64_t K, int nonlin, int has_read, int has_tab, int has_adc, int mode, int64_t J,
    float *restrict xb, float *restrict sdb, float *restrict cb_, unsigned char *restrict need) {
    const float ca = (float)a->ca, cbf = (float)a->cb, per_u = (float)a->per_u;
    const float an2 = (float)a->an2, cut2 = (float)a->cut2;
    const float xlo = (float)a->xlo, xhi = (float)a->xhi;
    /* tab columns: mean (a, b), [spread (a, b)] if nonlin, [read (a, b)] if has_read */
    const int64_t tab_n = a->tab_n, tw = 2 * (1 + nonlin + has_read), rc = 2 * (1 + nonlin);
    const int64_t bstride = a->adc_nbins * (1 + J), tstride = a->max_code + 2;
    const int ca1 = (int)a->ca_is_one;
    const float *restrict tab = a->tab;
    const imc_u64a *restrict t64 = (const imc_u64a *)tab; /* the (a, b) pairs, 8-byte aligned */
    const float *restrict bins = a->adc_bins;
    const float *restrict thr = a->adc_thr;
    (void)cbf;
#pragma GCC ivdep
    for (int64_t k = 0; k < K; k++) {
        float u = ca1 ? sr[k] + nb : sr[k] * ca + nb;
        float sig = 0.0f;
        if (has_tab) {
            float idx = u * per_u;
            idx = idx < 0.0f ? 0.0f : idx;
            int32_t i = (int32_t)idx;
            i = i > (int32_t)tab_n - 1 ? (int32_t)tab_n - 1 : i;
            /* one 64-bit gather per term: its (intercept, slope) pair (32-bit indices) */
            const int32_t ii = i * (int32_t)(tw / 2);
            if (nonlin) {
                const uint64_t m0 = t64[ii], m1 = t64[ii + 1];
                u = (imc_lo(m0) + idx * imc_hi(m0)) + (imc_lo(m1) + idx * imc_hi(m1)) * zc[k];
            }
            if (has_read) {
                const uint64_t m2 = t64[ii + (int32_t)(rc / 2)];
                sig = imc_lo(m2) + idx * imc_hi(m2);
            }
        }
        if (has_adc) {
            float x = u * ic[k];
            float var = an2;
            if (has_read) {
                float si = sig * ic[k];
                var = si * si + an2;
            }
            const int32_t in = nc[k];
            /* mode 1 draws every conversion: its code comes after the draw */
            float code = mode == 1 ? 0.0f : imc_code_at(bins, in * (int32_t)bstride, J, x, xlo, xhi);
            unsigned char nd = 0;
            if (mode == 1) {
                nd = 1;
            } else if (mode == 2) {
                const int32_t ti = in * (int32_t)tstride + (int32_t)code;
                float d0 = x - thr[ti], d1 = thr[ti + 1] - x;
                float d = d0 < d1 ? d0 : d1;
                nd = d * d <= cut2 * var;
            }
            xb[k] = x;
            sdb[k] = sqrtf(var);
            cb_[k] = code;
            need[k] = nd;
        } else {
            xb[k] = u;
            sdb[k] = sig;
            cb_[k] = u;
            need[k] = (unsigned char)has_read;
        }
    }
}

#ifdef IMC_HAVE_NORMAL64
/* The dense row of the usual configuration (transfer with spread, read noise, ADC with J = 2,
 * every conversion drawn) in one AVX-512 pass, 16 conversions per step: imc_row's
 * arithmetic in its order (cell map, one grid cell per conversion, the three (intercept,
 * slope) pairs as 64-bit gathers, x, sigma) and the noisy code of the dense loop; the same
 * bits as the scalar path (tested). zr: the row's Gaussians; codes into cv. */
static inline void imc_row_dense16(const imc_readout_args *restrict a, const float *restrict sr,
                                   float nb, const float *restrict zc, const float *restrict ic,
                                   const int32_t *restrict nc, int64_t K,
                                   const uint16_t *restrict hb, uint64_t e0,
                                   float *restrict cv) {
    const __m512 vca = _mm512_set1_ps((float)a->ca), vnb = _mm512_set1_ps(nb);
    const __m512 vper = _mm512_set1_ps((float)a->per_u), zero = _mm512_setzero_ps();
    const __m512 vtop = _mm512_set1_ps((float)(a->tab_n - 1));
    const __m512 van2 = _mm512_set1_ps((float)a->an2), one = _mm512_set1_ps(1.0f);
    const __m512 vxlo = _mm512_set1_ps((float)a->xlo), vxhi = _mm512_set1_ps((float)a->xhi);
    const __m512i three = _mm512_set1_epi32(3), two = _mm512_set1_epi32(2);
    const __m512i bstride = _mm512_set1_epi32((int32_t)(a->adc_nbins * 3));
    const int ca1 = (int)a->ca_is_one;
    const long long *t64 = (const long long *)a->tab;
    const float *bins = a->adc_bins;
    const long long *qt = (const long long *)a->qtab;
    const int slow = (int)a->slow;
    for (int64_t k = 0; k < K; k += 16) {
        const __mmask16 mk = K - k >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (K - k)) - 1u);
        __m512 u = _mm512_maskz_loadu_ps(mk, sr + k);
        u = ca1 ? _mm512_add_ps(u, vnb) : _mm512_add_ps(_mm512_mul_ps(u, vca), vnb);
        const __m512 idx0 = _mm512_mul_ps(u, vper);
        const __m512 idx = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(idx0, zero, _CMP_LT_OQ), idx0, zero);
        /* min(trunc(idx), n - 1) = trunc(min(idx, n - 1)) for idx >= 0 */
        const __m512i ii = _mm512_mullo_epi32(_mm512_cvttps_epi32(_mm512_min_ps(idx, vtop)), three);
        const __m256i i_lo = _mm512_castsi512_si256(ii), i_hi = _mm512_extracti64x4_epi64(ii, 1);
        const __mmask8 m_lo = (__mmask8)mk, m_hi = (__mmask8)(mk >> 8);
        const __m512i z64 = _mm512_setzero_si512();
        __m512 ta[3], tb[3];
        for (int q = 0; q < 3; q++) {
            const long long *base = t64 + q;
            const __m512i g0 = _mm512_mask_i32gather_epi64(z64, m_lo, i_lo, base, 8);
            const __m512i g1 = _mm512_mask_i32gather_epi64(z64, m_hi, i_hi, base, 8);
            const __m512i lo = _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi64_epi32(g0)),
                                                  _mm512_cvtepi64_epi32(g1), 1);
            const __m512i hi = _mm512_inserti64x4(
                _mm512_castsi256_si512(_mm512_cvtepi64_epi32(_mm512_srli_epi64(g0, 32))),
                _mm512_cvtepi64_epi32(_mm512_srli_epi64(g1, 32)), 1);
            ta[q] = _mm512_castsi512_ps(lo);
            tb[q] = _mm512_castsi512_ps(hi);
        }
        const __m512 zz = _mm512_maskz_loadu_ps(mk, zc + k);
        u = _mm512_add_ps(_mm512_add_ps(ta[0], _mm512_mul_ps(idx, tb[0])),
                          _mm512_mul_ps(_mm512_add_ps(ta[1], _mm512_mul_ps(idx, tb[1])), zz));
        const __m512 sig = _mm512_add_ps(ta[2], _mm512_mul_ps(idx, tb[2]));
        const __m512 vic = _mm512_maskz_loadu_ps(mk, ic + k);
        const __m512 x = _mm512_mul_ps(u, vic);
        const __m512 si = _mm512_mul_ps(sig, vic);
        const __m512 sd = _mm512_sqrt_ps(_mm512_add_ps(_mm512_mul_ps(si, si), van2));
        /* imc_draw_code: the cell's quantile pair (one 64-bit gather each), code(x + sd za),
         * and whether x + sd zb stays below the next threshold */
        const __m512i cell = _mm512_srli_epi32(
            _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mk, (const void *)(hb + k))), 4);
        const __m512i q0 = _mm512_mask_i32gather_epi64(z64, m_lo, _mm512_castsi512_si256(cell), qt, 8);
        const __m512i q1 = _mm512_mask_i32gather_epi64(z64, m_hi, _mm512_extracti64x4_epi64(cell, 1), qt, 8);
        const __m512 za = _mm512_castsi512_ps(_mm512_inserti64x4(
            _mm512_castsi256_si512(_mm512_cvtepi64_epi32(q0)), _mm512_cvtepi64_epi32(q1), 1));
        const __m512 zb = _mm512_castsi512_ps(_mm512_inserti64x4(
            _mm512_castsi256_si512(_mm512_cvtepi64_epi32(_mm512_srli_epi64(q0, 32))),
            _mm512_cvtepi64_epi32(_mm512_srli_epi64(q1, 32)), 1));
        const __m512 xa = _mm512_add_ps(x, _mm512_mul_ps(sd, za));
        const __m512 xb = _mm512_add_ps(x, _mm512_mul_ps(sd, zb));
        /* imc_code_at(xa), J = 2 */
        const __m512 xc = _mm512_min_ps(_mm512_max_ps(xa, vxlo), vxhi);
        const __m512i b = _mm512_add_epi32(_mm512_cvttps_epi32(_mm512_floor_ps(xc)), two);
        const __m512i ins = _mm512_maskz_loadu_epi32(mk, nc + k);
        const __m512i e = _mm512_add_epi32(_mm512_mullo_epi32(ins, bstride),
                                           _mm512_mullo_epi32(b, three));
        __m512 c = _mm512_mask_i32gather_ps(zero, mk, e, bins, 4);
        const __m512 th1 = _mm512_mask_i32gather_ps(zero, mk, e, bins + 1, 4);
        const __m512 th2 = _mm512_mask_i32gather_ps(zero, mk, e, bins + 2, 4);
        c = _mm512_mask_add_ps(c, _mm512_cmp_ps_mask(xc, th1, _CMP_GE_OQ), c, one);
        c = _mm512_mask_add_ps(c, _mm512_cmp_ps_mask(xc, th2, _CMP_GE_OQ), c, one);
        /* x + sd zb in the same one-LSB bin with the same count: every n of the cell gives
         * the code c (the code is monotone in n); else the scalar draw decides */
        const __m512 xbc = _mm512_min_ps(_mm512_max_ps(xb, vxlo), vxhi);
        const __mmask16 same = _mm512_cmp_ps_mask(_mm512_floor_ps(xbc), _mm512_floor_ps(xc), _CMP_EQ_OQ);
        const __mmask16 up = _mm512_cmp_ps_mask(xbc, th1, _CMP_GE_OQ) ^ _mm512_cmp_ps_mask(xc, th1, _CMP_GE_OQ);
        const __mmask16 up2 = _mm512_cmp_ps_mask(xbc, th2, _CMP_GE_OQ) ^ _mm512_cmp_ps_mask(xc, th2, _CMP_GE_OQ);
        const __mmask16 ok = same & (__mmask16)~(up | up2) & _mm512_cmp_ps_mask(sd, zero, _CMP_GT_OQ);
        _mm512_mask_storeu_ps(cv + k, mk, c);
        __mmask16 rare = (__mmask16)(mk & ~ok);
        if (rare | slow) {
            float xs[16], ss[16];
            _mm512_storeu_ps(xs, x);
            _mm512_storeu_ps(ss, sd);
            for (int j = 0; j < 16; j++)
                if ((((unsigned)rare >> j) & 1u) || (slow && (((unsigned)mk >> j) & 1u)))
                    cv[k + j] = imc_draw_code(a, xs[j], ss[j], nc[k + j], hb[k + j],
                                              e0 + (uint64_t)(k + j), 2);
        }
    }
}
#endif

/* 1 where the AVX-512 generator and dense row are built in (-march of an AVX-512 CPU). */
int imc_simd(void) {
#ifdef IMC_HAVE_NORMAL64
    return 1;
#else
    return 0;
#endif
}

#define IMC_ROW(NL, RD, TB, AD, MD, JJ) \
    imc_row(a, sr, nb, zc, ic, nc, K, NL, RD, TB, AD, MD, JJ, xb, sdb, cv, need)

int64_t imc_readout_mvm(imc_readout_args *a) {
    const int64_t L = a->L, T = a->T, P = a->P, M = a->M, K = a->K, C = a->C;
    const int64_t PM = P * M, NS2 = a->NS2, J = a->adc_J;
    const float cbf = (float)a->cb, coff = (float)a->code_offset;
    const int64_t bstride = a->adc_nbins * (1 + J);
    const float xlo = (float)a->xlo, xhi = (float)a->xhi;
    const int nonlin = (int)a->nonlin, has_read = a->read_col >= 0, has_tab = a->tab != NULL;
    const int has_adc = (int)a->has_adc, mode = (int)a->mode;
    const uint64_t key = a->key;
    int64_t draws = 0;
    double sum_s = 0.0;
#ifdef IMC_HAVE_NORMAL64
    const int fast = a->simd && has_adc && nonlin && has_read && has_tab && mode == 1 && J == 2
                     && a->tab_w == 6;
#endif
    int nth = (int)(a->nthreads > 0 ? a->nthreads : 1);
    (void)nth;
#pragma omp parallel num_threads(nth) reduction(+ : draws, sum_s)
    {
        float *xb = (float *)malloc(sizeof(float) * (size_t)(4 * K + 16));
        float *sdb = xb + K, *cv = xb + 2 * K, *nz = xb + 3 * K; /* nz: K + 8 Gaussians */
        unsigned char *need = (unsigned char *)malloc((size_t)K);
        int32_t *pos = (int32_t *)malloc(sizeof(int32_t) * (size_t)K);
        float *acc = (float *)malloc(sizeof(float) * (size_t)C);
        uint64_t *hwb = (uint64_t *)malloc(sizeof(uint64_t) * (size_t)(K / 4 + 4));
#pragma omp for schedule(static)
        for (int64_t item = 0; item < L * M; item++) {
            const int64_t l = item / M, m = item % M;
            for (int64_t c = 0; c < C; c++) acc[c] = 0.0f;
            for (int64_t t = 0; t < T; t++) {
                const float *zc = a->z ? a->z + l * a->z_ls + t * K : NULL;
                const float *ic = a->inv ? a->inv + l * a->inv_ls + t * K : NULL;
                const float *lc = a->lsb ? a->lsb + l * a->lsb_ls + t * K : NULL;
                const int32_t *nc = a->inst + l * a->inst_ls + t * K; /* never NULL */
                for (int64_t p = 0; p < P; p++) {
                    const int64_t row = (l * T + t) * PM + p * M + m;
                    const float *sr = a->s + row * K;
                    const float nb = a->n_act[row] * cbf;
                    const uint64_t e0 = (uint64_t)row * (uint64_t)K;
                    const float *cf = a->coef + p * NS2;
                    float rs = 0.0f; /* the row's current (vector partial sums: fixed order) */
#pragma omp simd reduction(+ : rs)
                    for (int64_t k = 0; k < K; k++) rs += sr[k];
                    sum_s += (double)rs;
#ifdef IMC_HAVE_NORMAL64
                    if (fast) { /* the usual dense configuration: one AVX-512 pass */
                        const uint64_t g0 = e0 >> 2, off = e0 & 3;
                        imc_hash_words(key, g0, (int64_t)((off + (uint64_t)K + 3) >> 2), hwb);
                        imc_row_dense16(a, sr, nb, zc, ic, nc, K, (const uint16_t *)hwb + off, e0,
                                        cv);
                        draws += K;
                        goto recombine;
                    }
#endif
                    /* specializations of the common configurations (J = 2: at most two
                     * thresholds in one LSB; other layouts take the general row) */
                    if (has_adc && nonlin && has_read && mode == 2 && J == 2)
                        IMC_ROW(1, 1, 1, 1, 2, 2);
                    else if (has_adc && nonlin && has_read && mode == 1 && J == 2)
                        IMC_ROW(1, 1, 1, 1, 1, 2);
                    else if (has_adc && nonlin && !has_read && mode == 2 && J == 2)
                        IMC_ROW(1, 0, 1, 1, 2, 2);
                    else if (has_adc && nonlin && !has_read && mode == 1 && J == 2)
                        IMC_ROW(1, 0, 1, 1, 1, 2);
                    else if (has_adc && nonlin && !has_read && mode == 0 && J == 2)
                        IMC_ROW(1, 0, 1, 1, 0, 2);
                    else
                        IMC_ROW(nonlin, has_read, has_tab, has_adc, mode, J);
                    int64_t nneed = 0;
                    if (mode == 1 || !has_adc) {
                        nneed = (has_adc || has_read) ? K : 0;
                    } else if (mode == 2) {
                        for (int64_t k = 0; k < K; k++) nneed += need[k];
                    }
                    if (nneed * 8 > K) {
                        /* dense: the row's Gaussians for all of its counters, then every
                         * code again with the noise where needed (vectorized loops) */
                        const uint64_t g0 = e0 >> 2, off = e0 & 3;
                        const int64_t ng = (int64_t)((off + (uint64_t)K + 3) >> 2);
                        if (has_adc) { /* the row's random bits, then each drawn code */
                            imc_hash_words(key, g0, ng, hwb);
                            const uint16_t *restrict hb = (const uint16_t *)hwb + off;
                            if (J == 2 && !a->slow) {
                                /* a loop the compiler vectorizes: the code at the cell's lower
                                 * end where the upper end is in the same one-LSB bin with the
                                 * same count; the rest (flagged 2 in need) one by one */
                                const int32_t bs = (int32_t)bstride;
                                const float *restrict bins = a->adc_bins;
                                const float *restrict qt = a->qtab;
#pragma GCC ivdep
                                for (int64_t k = 0; k < K; k++) {
                                    const int32_t c = (int32_t)(hb[k] >> 4);
                                    const float sd = sdb[k], x = xb[k];
                                    const float xa = x + sd * qt[2 * c], xq = x + sd * qt[2 * c + 1];
                                    const float ac = xa < xlo ? xlo : (xa > xhi ? xhi : xa);
                                    const float bc = xq < xlo ? xlo : (xq > xhi ? xhi : xq);
                                    const float fa = floorf(ac);
                                    const int32_t e = nc[k] * bs + ((int32_t)fa + 2) * 3;
                                    const float t1 = bins[e + 1], t2 = bins[e + 2];
                                    const float ca = bins[e] + ((ac >= t1) ? 1.0f : 0.0f)
                                                     + ((ac >= t2) ? 1.0f : 0.0f);
                                    const int ok = floorf(bc) == fa && ((bc >= t1) == (ac >= t1))
                                                   && ((bc >= t2) == (ac >= t2)) && sd > 0.0f;
                                    const int nd = need[k];
                                    cv[k] = nd ? ca : cv[k];
                                    pos[k] = nd & !ok;
                                }
                                for (int64_t k = 0; k < K; k++)
                                    if (pos[k])
                                        cv[k] = imc_draw_code(a, xb[k], sdb[k], nc[k], hb[k],
                                                              e0 + (uint64_t)k, J);
                            } else {
                                for (int64_t k = 0; k < K; k++)
                                    if (need[k])
                                        cv[k] = imc_draw_code(a, xb[k], sdb[k], nc[k], hb[k],
                                                              e0 + (uint64_t)k, J);
                            }
                        } else { /* no ADC: the read noise itself, Box-Muller Gaussians */
                            imc_normal_groups(key, g0, ng, nz);
                            const float *restrict zr = nz + off;
#pragma GCC ivdep
                            for (int64_t k = 0; k < K; k++) cv[k] = xb[k] + sdb[k] * zr[k];
                        }
                        draws += nneed;
                    } else if (nneed) {
                        /* sparse: only the needed elements' counters */
                        for (int64_t k = 0; k < K; k++) {
                            if (!need[k]) continue;
                            const uint64_t e = e0 + (uint64_t)k;
                            cv[k] = imc_draw_code(a, xb[k], sdb[k], nc[k], imc_h16(key, e), e, J);
                        }
                        draws += nneed;
                    }
#ifdef IMC_HAVE_NORMAL64
                recombine:
#endif
                    /* code -> level units -> shift-and-add */
                    for (int64_t j = 0; j < NS2; j++) {
                        const float w = cf[j];
                        const float *v = cv + j * C;
                        if (has_adc) {
                            const float *lj = lc + j * C;
                            for (int64_t c = 0; c < C; c++) acc[c] += w * ((v[c] + coff) * lj[c]);
                        } else {
                            for (int64_t c = 0; c < C; c++) acc[c] += w * v[c];
                        }
                    }
                }
            }
            float *o = a->out + (l * M + m) * C;
            for (int64_t c = 0; c < C; c++) o[c] = acc[c];
        }
        free(xb);
        free(need);
        free(pos);
        free(acc);
        free(hwb);
    }
    a->draws = draws;
    a->sum_s = sum_s;
    return 0;
}
