/* The moment mode's exact low-count conversions at coarse ADCs (nnsim.analog.moment_low_counts).
 *
 * One call converts Q distinct conversions: conversion q sums the programmed cells of its
 * active rows (at most `nr` of them; the row index `rows` marks an unused slot) of column-table
 * row ct[q] (lead x tile), per slice, sign and column (k = ns x 2 x c columns), and for each of
 * those k column sums computes what the torch path's `conv` computes:
 *
 *   u = ca S + cb n                                   (ideal current, level units)
 *   sensed, spread, read = fused readout tables at u  (hw.fused_terms: a[i] + idx b[i])
 *   sd = sqrt(max((spread^2 + read^2) / lsb^2 + an2, 1e-12))
 *   x = sensed / lsb
 *   E = sum_k P_k, E2 = sum_k (2k + 1) P_k, P_k = Phi((x - t_k) / sd)
 *       (a threshold below x - 8 sd counts as crossed, one above x + 8 sd as not: the
 *        torch path's _code_moments window; unsorted thresholds: the CDF at every one)
 *   d  = lsb (E + code_offset) - gain (ca S + (cb - g0) n)
 *   dv = lsb^2 max(E2 - E^2, 0) - vmom
 *
 * then recombines over slices and signs: out_d[q, j] = sum_{s, g} coef[s, g] d[q, s, g, j],
 * out_dv[q, j] = sum_{s, g} coef[s, g]^2 dv[q, s, g, j]. Float32 throughout as the torch path
 * (which it equals to float rounding: tests/nnsim/test_lowcount_kernel.py); erfcf from libm.
 *
 * Code counts use the thresholds rounded up to float32 (`th_up`, as AdcModel._tables: x >= th_up
 * exactly when x >= the float64 threshold), so the window's ends are quantize_fast's codes; the
 * CDF uses them rounded to nearest (`th`, as the torch path's float32 copy).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

static inline float fused(const float *a, const float *b, float per_u, int64_t n, float u) {
    float idx = u * per_u;
    if (!(idx >= 0.0f)) idx = 0.0f;
    int64_t i = (int64_t)(int32_t)idx;
    if (i > n - 1) i = n - 1;
    return a[i] + idx * b[i];
}

/* 0.5 erfc(z) in float32. Below z = -4 it is 1 - 0.5 erfc(4) = 1 - 7.7e-9, which rounds to
 * 1.0f (float32's spacing below 1 is 6e-8): 1.0f there without evaluating erfcf (the same
 * float32 value erfcf gives). */
static inline float cdf_upper(float z) {
    return z < -4.0f ? 1.0f : 0.5f * erfcf(z);
}

void imc_lowcount_conv(int64_t q_n, int64_t nr, int64_t rows, int64_t ns, int64_t c,
                       const float *cells, const int64_t *ct, const int64_t *idx,
                       const float *cnt, const float *gain, const float *lsb, const float *vmom,
                       const int64_t *inst, const float *th, const float *th_up, int64_t nth,
                       int sorted, float ca, float cb, float g0, float an2, float code_offset,
                       float cut_sigmas, const float *coef, int64_t n_terms,
                       const int64_t *term_kind, const float *ta, const float *tb,
                       float per_u, int64_t tn, float *out_d, float *out_dv) {
    const int64_t k = ns * 2 * c;
    const float cbg = cb - g0;
    const float *t_mean = NULL, *t_spread = NULL, *t_read = NULL;
    const float *b_mean = NULL, *b_spread = NULL, *b_read = NULL;
    for (int64_t j = 0; j < n_terms; j++) {
        const float *a = ta + j * tn, *b = tb + j * tn;
        if (term_kind[j] == 0) { t_mean = a; b_mean = b; }
        else if (term_kind[j] == 1) { t_spread = a; b_spread = b; }
        else { t_read = a; b_read = b; }
    }
    float *s = (float *)malloc(sizeof(float) * (size_t)k);
    if (s == NULL) return;
    for (int64_t q = 0; q < q_n; q++) {
        const int64_t row0 = ct[q];
        const float *cl = cells + row0 * rows * k;
        for (int64_t j = 0; j < k; j++) s[j] = 0.0f;
        for (int64_t r = 0; r < nr; r++) {
            const int64_t ri = idx[q * nr + r];
            if (ri >= rows) continue;
            const float *src = cl + ri * k;
            for (int64_t j = 0; j < k; j++) s[j] += src[j];
        }
        const float n = cnt[q];
        const float *gq = gain + row0 * k, *lq = lsb + row0 * k, *vq = vmom + row0 * k;
        const int64_t *iq = inst ? inst + row0 * k : NULL;
        float *od = out_d + q * c, *odv = out_dv + q * c;
        for (int64_t j = 0; j < c; j++) { od[j] = 0.0f; odv[j] = 0.0f; }
        int64_t sg = 0, col = 0;  /* column j = (slice, sign) sg, output column col */
        float w = coef[0], w2 = w * w;
        for (int64_t j = 0; j < k; j++) {
            const float u = ca * s[j] + cb * n;
            float sensed = u, var_u = 0.0f;
            if (t_mean) sensed = fused(t_mean, b_mean, per_u, tn, u);
            if (t_spread) { float v = fused(t_spread, b_spread, per_u, tn, u); var_u += v * v; }
            if (t_read) { float v = fused(t_read, b_read, per_u, tn, u); var_u += v * v; }
            const float l = lq[j];
            float sd2 = var_u / (l * l) + an2;
            if (!(sd2 >= 1e-12f)) sd2 = 1e-12f;
            const float sd = sqrtf(sd2);
            const float x = sensed / l;
            const int64_t ins = iq ? iq[j] : 0;
            const float *tk = th + ins * nth, *tu = th_up + ins * nth;
            const float cut = sd * cut_sigmas;
            const float inv = 1.0f / (sd * 1.41421356237309504880f);
            float e1, e2;
            if (sorted) {
                const float xl = x - cut, xh = x + cut;
                int64_t lo = 0, hi;
                while (lo < nth && xl >= tu[lo]) lo++;
                hi = lo;
                while (hi < nth && xh >= tu[hi]) hi++;
                e1 = (float)lo;
                e2 = (float)(lo * lo);
                for (int64_t kk = lo; kk < hi; kk++) {
                    const float pk = cdf_upper((tk[kk] - x) * inv);
                    e1 += pk;
                    e2 += (float)(2 * kk + 1) * pk;
                }
            } else {  /* as the torch path: the CDF at every threshold where the codes at
                         x -+ 8 sd differ, else the code */
                int64_t lo = 0, hi = 0;
                for (int64_t kk = 0; kk < nth; kk++) {
                    lo += (x - cut) >= tu[kk];
                    hi += (x + cut) >= tu[kk];
                }
                e1 = (float)lo;
                e2 = (float)(lo * lo);
                if (lo != hi) {
                    e1 = 0.0f;
                    e2 = 0.0f;
                    for (int64_t kk = 0; kk < nth; kk++) {
                        const float pk = cdf_upper((tk[kk] - x) * inv);
                        e1 += pk;
                        e2 += (float)(2 * kk + 1) * pk;
                    }
                }
            }
            float vc = e2 - e1 * e1;
            if (!(vc >= 0.0f)) vc = 0.0f;
            const float d = l * (e1 + code_offset) - gq[j] * (ca * s[j] + cbg * n);
            const float dv = l * l * vc - vq[j];
            od[col] += d * w;
            odv[col] += dv * w2;
            if (++col == c) {
                col = 0;
                sg++;
                w = coef[sg < 2 * ns ? sg : 0];
                w2 = w * w;
            }
        }
    }
    free(s);
}
