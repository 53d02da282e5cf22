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

/* Noiseless codes of x (n values) with per-value instances (NULL: 0): the kernel's ADC. */
void imc_adc_codes(const float *x, const int32_t *inst, int64_t n, const float *bins,
                   int64_t nbins, int64_t J, double xlo, double xhi, float *out) {
    for (int64_t i = 0; i < n; i++) {
        const float *b = bins + (inst ? (int64_t)inst[i] : 0) * nbins * (1 + J);
        out[i] = imc_code(b, J, x[i], (float)xlo, (float)xhi);
    }
}

/* Gaussians of counters g0 .. g0+ng-1 (4 each) into z: a loop the compiler vectorizes. */
static void imc_normal_groups(uint64_t key, uint64_t g0, int64_t ng, float *restrict z) {
    const uint32_t k0i = (uint32_t)key, k1i = (uint32_t)(key >> 32);
#pragma omp simd
    for (int64_t q = 0; q < ng; q++) {
        uint64_t g = g0 + (uint64_t)q;
        uint32_t c0 = (uint32_t)g, c1 = (uint32_t)(g >> 32), c2 = 0u, c3 = 0u;
        uint32_t k0 = k0i, k1 = k1i;
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
        IMC_PHILOX_ROUND IMC_PHILOX_ROUND IMC_PHILOX_ROUND IMC_PHILOX_ROUND IMC_PHILOX_ROUND
        IMC_PHILOX_ROUND IMC_PHILOX_ROUND IMC_PHILOX_ROUND IMC_PHILOX_ROUND IMC_PHILOX_ROUND
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
    int nth = (int)(a->nthreads > 0 ? a->nthreads : 1);
    (void)nth;
#pragma omp parallel num_threads(nth) reduction(+ : draws, sum_s)
    {
        float *xb = (float *)malloc(sizeof(float) * (size_t)(4 * K + 16));
        float *sdb = xb + K, *cv = xb + 2 * K, *nz = xb + 3 * K; /* nz: K + 8 Gaussians */
        unsigned char *need = (unsigned char *)malloc((size_t)K);
        int32_t *pos = (int32_t *)malloc(sizeof(int32_t) * (size_t)K);
        float *acc = (float *)malloc(sizeof(float) * (size_t)C);
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
                        imc_normal_groups(key, g0, (int64_t)((off + (uint64_t)K + 3) >> 2), nz);
                        const float *restrict zr = nz + off;
                        if (has_adc) {
                            const int32_t bs = (int32_t)bstride;
                            const float *restrict bins = a->adc_bins;
                            if (J == 2) {
#pragma GCC ivdep
                                for (int64_t k = 0; k < K; k++) {
                                    float w = need[k] ? sdb[k] * zr[k] : 0.0f;
                                    cv[k] = imc_code_at(bins, nc[k] * bs, 2, xb[k] + w, xlo, xhi);
                                }
                            } else if (J == 4) {
#pragma GCC ivdep
                                for (int64_t k = 0; k < K; k++) {
                                    float w = need[k] ? sdb[k] * zr[k] : 0.0f;
                                    cv[k] = imc_code_at(bins, nc[k] * bs, 4, xb[k] + w, xlo, xhi);
                                }
                            } else {
                                for (int64_t k = 0; k < K; k++) {
                                    float w = need[k] ? sdb[k] * zr[k] : 0.0f;
                                    cv[k] = imc_code_at(bins, nc[k] * bs, J, xb[k] + w, xlo, xhi);
                                }
                            }
                        } else {
#pragma GCC ivdep
                            for (int64_t k = 0; k < K; k++) cv[k] = xb[k] + sdb[k] * zr[k];
                        }
                        draws += nneed;
                    } else if (nneed) {
                        /* sparse: only the needed elements' counters */
                        uint64_t last = ~(uint64_t)0;
                        float z4[4];
                        for (int64_t k = 0; k < K; k++) {
                            if (!need[k]) continue;
                            const uint64_t e = e0 + (uint64_t)k;
                            if ((e >> 2) != last) {
                                last = e >> 2;
                                imc_normal4(key, last, 0, z4);
                            }
                            float xn = xb[k] + sdb[k] * z4[e & 3];
                            cv[k] = imc_code_at(a->adc_bins, nc[k] * (int32_t)bstride, J, xn,
                                                xlo, xhi);
                        }
                        draws += nneed;
                    }
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
    }
    a->draws = draws;
    a->sum_s = sum_s;
    return 0;
}
