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
 * (which it equals to float rounding: tests/nnsim/test_lowcount_kernel.py); the Gaussian CDF
 * from a table (cdf_upper).
 *
 * The window's ends are AdcModel.quantize_fast's codes of x -+ 8 sd, from its tables (lut_*:
 * per instance and 1/r-LSB cell the code at the cell's start, the threshold inside it and how
 * many share it; the same float32 index arithmetic); with unsorted thresholds, counts of the
 * thresholds rounded up to float32 (`th_up`: x >= th_up exactly when x >= the float64
 * threshold). The CDF uses them rounded to nearest (`th`, the torch path's float32 copy).
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

/* P(z) = 0.5 erfc(z) = Phi(-sqrt(2) z), the probability that a threshold z (in units of
 * sd sqrt(2) above the input) is crossed, from a table: on [CDF_Z0, CDF_Z1) in steps of
 * 1/CDF_PER, the cubic Hermite interpolant of P and of its derivative -exp(-z^2)/sqrt(pi) at
 * the nodes (double precision, c0 + f (c1 + f (c2 + f c3)) per cell), rounded to float32:
 * absolute error below 4e-11 (h^4 max|d4P/dz4| / 384), under float32's rounding of the code
 * sums (6e-8 near 1), at a fraction of erfcf's cost. Below z = -4, P = 1 - 0.5 erfc(4) =
 * 1 - 7.7e-9 rounds to 1.0f (erfcf's float32 value too); from CDF_Z1 (beyond the 8 sd
 * window: 8 / sqrt(2) = 5.66) 0. imc_lowcount_init fills the table. */
#define CDF_Z0 (-4.0)
#define CDF_Z1 6.0
#define CDF_PER 128
#define CDF_CELLS 1280 /* (CDF_Z1 - CDF_Z0) CDF_PER */
static double cdf_c[CDF_CELLS][4];
static int cdf_ready = 0;

void imc_lowcount_init(void) {
    if (cdf_ready) return;
    const double h = 1.0 / CDF_PER, rsqrtpi = 0.56418958354775628695;
    for (int i = 0; i < CDF_CELLS; i++) {
        const double za = CDF_Z0 + i * h, zb = za + h;
        const double pa = 0.5 * erfc(za), pb = 0.5 * erfc(zb);
        const double da = -rsqrtpi * exp(-za * za) * h, db = -rsqrtpi * exp(-zb * zb) * h;
        /* p(f) = pa + da f + (3 (pb - pa) - 2 da - db) f^2 + (2 (pa - pb) + da + db) f^3 */
        cdf_c[i][0] = pa;
        cdf_c[i][1] = da;
        cdf_c[i][2] = 3.0 * (pb - pa) - 2.0 * da - db;
        cdf_c[i][3] = 2.0 * (pa - pb) + da + db;
    }
    cdf_ready = 1;
}

static inline float cdf_upper(float z) {
    if (z < (float)CDF_Z0) return 1.0f;
    if (!(z < (float)CDF_Z1)) return 0.0f;
    const double t = ((double)z - CDF_Z0) * CDF_PER;
    int i = (int)t;
    if (i > CDF_CELLS - 1) i = CDF_CELLS - 1;
    const double f = t - i;
    const double *c = cdf_c[i];
    return (float)(c[0] + f * (c[1] + f * (c[2] + f * c[3])));
}

/* The table's P at n points (the test compares it with erfc in float64). */
void imc_lowcount_cdf(int64_t n, const float *z, float *p) {
    for (int64_t i = 0; i < n; i++) p[i] = cdf_upper(z[i]);
}

void imc_lowcount_conv(int64_t q_n, int64_t nr, int64_t rows, int64_t ns, int64_t c,
                       const float *cells, const int64_t *ct, const int64_t *idx,
                       const float *cnt, const float *gain, const float *lsb, const float *vmom,
                       const int64_t *inst, const float *th, const float *th_up, int64_t nth,
                       int sorted, const float *lut_low, const float *lut_th,
                       const float *lut_jump, float lut_r, float lut_g, float lut_hi,
                       float ca, float cb, float g0, float an2, float code_offset,
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
    /* per conversion, per column j: the sum s, the current u, the sensed value, its
     * variance, x and 1 / (sd sqrt 2), and the codes at x - 8 sd and x + 8 sd */
    float *buf = (float *)malloc(sizeof(float) * (size_t)k * 6);
    int32_t *lohi = (int32_t *)malloc(sizeof(int32_t) * (size_t)k * 2);
    if (buf == NULL || lohi == NULL) { free(buf); free(lohi); return; }
    float *s = buf, *u = buf + k, *sen = buf + 2 * k, *var = buf + 3 * k, *xs = buf + 4 * k,
          *invs = buf + 5 * k;
    int32_t *los = lohi, *his = lohi + k;
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
#pragma omp simd
        for (int64_t j = 0; j < k; j++) {
            u[j] = ca * s[j] + cb * n;
            sen[j] = u[j];
            var[j] = 0.0f;
        }
        if (t_mean) {
#pragma omp simd
            for (int64_t j = 0; j < k; j++) sen[j] = fused(t_mean, b_mean, per_u, tn, u[j]);
        }
        if (t_spread) {
#pragma omp simd
            for (int64_t j = 0; j < k; j++) {
                const float v = fused(t_spread, b_spread, per_u, tn, u[j]);
                var[j] += v * v;
            }
        }
        if (t_read) {
#pragma omp simd
            for (int64_t j = 0; j < k; j++) {
                const float v = fused(t_read, b_read, per_u, tn, u[j]);
                var[j] += v * v;
            }
        }
#pragma omp simd
        for (int64_t j = 0; j < k; j++) {
            const float l = lq[j];
            float sd2 = var[j] / (l * l) + an2;
            sd2 = sd2 >= 1e-12f ? sd2 : 1e-12f;
            const float sd = sqrtf(sd2);
            const float x = sen[j] / l;
            const float cut = sd * cut_sigmas;
            const float xl = x - cut, xh = x + cut;
            int32_t lo = 0, hi = 0;  /* thresholds at or below x - 8 sd, x + 8 sd */
            if (sorted) {  /* AdcModel.quantize_fast's codes: the cell's, one comparison */
                const float off = (float)(iq ? iq[j] : 0) * lut_g + 2.0f * lut_r;
                const float cl = xl < -2.0f ? -2.0f : (xl > lut_hi ? lut_hi : xl);
                const float ch = xh < -2.0f ? -2.0f : (xh > lut_hi ? lut_hi : xh);
                const int32_t il = (int32_t)(off + cl * lut_r), ih = (int32_t)(off + ch * lut_r);
                lo = (int32_t)(lut_low[il] + lut_jump[il] * (float)(cl >= lut_th[il]));
                hi = (int32_t)(lut_low[ih] + lut_jump[ih] * (float)(ch >= lut_th[ih]));
            } else {  /* count them */
                const float *tu = th_up + (iq ? iq[j] : 0) * nth;
                for (int64_t kk = 0; kk < nth; kk++) {
                    lo += xl >= tu[kk];
                    hi += xh >= tu[kk];
                }
            }
            xs[j] = x;
            invs[j] = 1.0f / (sd * 1.41421356237309504880f);
            los[j] = lo;
            his[j] = hi;
        }
        float *od = out_d + q * c, *odv = out_dv + q * c;
        for (int64_t j = 0; j < c; j++) { od[j] = 0.0f; odv[j] = 0.0f; }
        int64_t sg = 0, col = 0;  /* column j = (slice, sign) sg, output column col */
        float w = coef[0], w2 = w * w;
        for (int64_t j = 0; j < k; j++) {
            const int64_t lo = los[j], hi = his[j];
            const float x = xs[j], inv = invs[j];
            const float *tk = th + (iq ? iq[j] : 0) * nth;
            float e1 = (float)lo, e2 = (float)(lo * lo);  /* the code where lo == hi */
            if (sorted) {  /* crossed below lo, not from hi: the CDF for the few between */
                for (int64_t kk = lo; kk < hi; kk++) {
                    const float pk = cdf_upper((tk[kk] - x) * inv);
                    e1 += pk;
                    e2 += (float)(2 * kk + 1) * pk;
                }
            } else if (lo != hi) {  /* as the torch path: the CDF at every threshold */
                e1 = 0.0f;
                e2 = 0.0f;
                for (int64_t kk = 0; kk < nth; kk++) {
                    const float pk = cdf_upper((tk[kk] - x) * inv);
                    e1 += pk;
                    e2 += (float)(2 * kk + 1) * pk;
                }
            }
            float vc = e2 - e1 * e1;
            if (!(vc >= 0.0f)) vc = 0.0f;
            const float l = lq[j];
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
    free(buf);
    free(lohi);
}

/* The conversions of one call: codes q (n_l, m, t, rows) of `bits` planes (two's complement
 * already unsigned), plane weights w. Per (lead, input row, tile), a0 and a02 get the sum of
 * w and w^2 over the planes without an active row (exact: integers in float32). Each plane of
 * 1 ..  nr active rows is emitted, in the order plane, lead, input row, tile (the torch path's
 * nonzero order): its key (column-table row and active rows: equal keys, equal conversions),
 * column-table row ct = l t + tile, output row l m + input row, plane, count and the active
 * rows' indices in nr slots (unused: `rows`). Returns how many were emitted. */
int64_t imc_lowcount_select(int64_t n_l, int64_t m, int64_t t, int64_t rows, int64_t bits,
                            int64_t nr, const int32_t *q, const float *w, float *a0,
                            float *a02, int64_t *key, int64_t *ct, int64_t *row,
                            int64_t *plane, float *cnt, int64_t *idx) {
    const int64_t lmt = n_l * m * t;
    for (int64_t i = 0; i < lmt; i++) { a0[i] = 0.0f; a02[i] = 0.0f; }
    int64_t nq = 0;
    for (int64_t p = 0; p < bits; p++) {
        const float wp = w[p], wp2 = wp * wp;
        for (int64_t i = 0; i < lmt; i++) {  /* i = (l m + mi) t + ti */
            const int32_t *qi = q + i * rows;
            int64_t n = 0;
            for (int64_t r = 0; r < rows; r++) n += (qi[r] >> p) & 1;
            if (n == 0) {
                a0[i] += wp;
                a02[i] += wp2;
                continue;
            }
            if (n > nr) continue;
            int64_t *ix = idx + nq * nr, s = 0;
            for (int64_t r = 0; r < rows; r++)
                if ((qi[r] >> p) & 1) ix[s++] = r;
            for (; s < nr; s++) ix[s] = rows;
            const int64_t ti = i % t, lm = i / t, l = lm / m;
            const int64_t c_t = l * t + ti;
            int64_t kk = c_t;
            for (int64_t j = 0; j < nr; j++) kk = kk * (rows + 1) + ix[j];
            key[nq] = kk;
            ct[nq] = c_t;
            row[nq] = lm;
            plane[nq] = p;
            cnt[nq] = (float)n;
            nq++;
        }
    }
    return nq;
}

/* corr[row[i]] += w[plane[i]] d[inv[i]], dvar[row[i]] += w[plane[i]]^2 dv[inv[i]], in order
 * of i (the torch path's index_add_: the same float operations in the same order). */
void imc_lowcount_accumulate(int64_t qn, int64_t c, const int64_t *row, const int64_t *plane,
                             const int64_t *inv, const float *w, const float *d,
                             const float *dv, float *corr, float *dvar) {
    for (int64_t i = 0; i < qn; i++) {
        const float wj = w[plane[i]], wj2 = wj * wj;
        const float *di = d + inv[i] * c, *dvi = dv + inv[i] * c;
        float *co = corr + row[i] * c, *dvo = dvar + row[i] * c;
        for (int64_t j = 0; j < c; j++) {
            co[j] += di[j] * wj;
            dvo[j] += dvi[j] * wj2;
        }
    }
}
