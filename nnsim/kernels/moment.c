/* The moment mode's per-element passes (nnsim.analog.moment_write, mvm_moment; issue 17).
 *
 * Built and loaded by nnsim.kernels.load("moment"). Every float operation is the one the
 * torch path of nnsim.analog writes, in the same order (no FMA: -ffp-contract=off), so the
 * noiseless results equal the torch path's bit for bit; the Gaussians come from rng.h's
 * Philox4x32-10 (counter = element index within its chip's block, one key per call and chip
 * drawn from the chip's torch.Generator), so any thread count or chip batching gives the
 * same numbers.
 *
 * Element i of a block of n uses counter i >> 2 and output i & 3 of that counter's four
 * Gaussians (rng.h's convention), stream IMC_MOMENT_STREAM.
 *
 * Also: mvm_moment's input quantization (imc_rows_absmax, imc_rows_codes) and its epilogue
 * (imc_moment_epilogue: gain, output noise, input and output scales in one pass), and
 * moment_write's per-column readout terms (imc_moment_colterms, whose multiply-adds are
 * written as fmaf where torch's addcmul contracts). Where the CPU has AVX-512 the K/V write
 * passes run 16 rows per step (mw_codes16, mw_elems16), lane by lane the scalar loops'
 * operations (imc_mw_args.scalar selects the scalar loops; tests compare the two).
 */
#include <stddef.h>
#include <stdint.h>
#include <math.h>

#include "rng.h"

#define IMC_MOMENT_STREAM 7u
#define IMC_MOMENT_BLOCK 1024 /* Gaussians generated per inner block (multiple of 4) */

/* Gaussians of counters g0 .. g0+ng-1 (4 each) into z, stream IMC_MOMENT_STREAM: rng.h's
 * AVX-512 generator for blocks of 16 counters where built for it, the rest (or all) a loop
 * the compiler vectorizes (the rounds written out); the same bits either way. */
static void mom_normal_groups(uint64_t key, uint64_t g0, int64_t ng, float *restrict z) {
    const uint32_t k0i = (uint32_t)key, k1i = (uint32_t)(key >> 32);
    int64_t q0 = 0;
#ifdef IMC_HAVE_NORMAL64
    for (; q0 + 16 <= ng; q0 += 16)
        imc_normal64_stream(key, g0 + (uint64_t)q0, IMC_MOMENT_STREAM, z + 4 * q0);
#endif
#pragma omp simd
    for (int64_t q = q0; q < ng; q++) {
        uint64_t g = g0 + (uint64_t)q;
        uint32_t c0 = (uint32_t)g, c1 = (uint32_t)(g >> 32), c2 = IMC_MOMENT_STREAM, c3 = 0u;
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

/* The scalar generator only (tests: the vector blocks give the same bits). */
void imc_moment_normal_scalar(uint64_t key, int64_t n, float *out) {
    for (int64_t i = 0; i < n; i += 4) {
        float z[4];
        imc_normal4(key, (uint64_t)i >> 2, IMC_MOMENT_STREAM, z);
        for (int64_t j = 0; j < 4 && i + j < n; j++) out[i + j] = z[j];
    }
}

/* n Gaussians of elements 0 .. n-1 under key (tests: the distribution). */
void imc_moment_normal(uint64_t key, int64_t n, float *out) {
    float z[IMC_MOMENT_BLOCK];
    for (int64_t i0 = 0; i0 < n; i0 += IMC_MOMENT_BLOCK) {
        int64_t nb = n - i0 < IMC_MOMENT_BLOCK ? n - i0 : IMC_MOMENT_BLOCK;
        mom_normal_groups(key, (uint64_t)i0 >> 2, (nb + 3) >> 2, z);
        for (int64_t j = 0; j < nb; j++) out[i0 + j] = z[j];
    }
}

/* mvm_moment's epilogue, in place, in the torch path's order of float operations:
 * y = ((y g + z sd) sx) so   (g != 1 only where gain_on; z sd only where keys is not NULL)
 * for n_key chips k (key keys[k]; z of element e = its flat index within the chip's block of
 * L*M*C), L matrices, M rows, C columns; sd (n_key L, sd_rows, C) with sd_rows 1 (one per
 * column) or M (one per row and column); sx (n_key L M) per row; so (n_key L, C) per
 * column. */
void imc_moment_epilogue(const uint64_t *keys, int64_t n_key, int64_t L, int64_t M, int64_t C,
                         int gain_on, float gain, const float *sd, int64_t sd_rows,
                         const float *sx, const float *so, float *y) {
    float z[IMC_MOMENT_BLOCK];
    const int64_t n = L * M * C;
    for (int64_t k = 0; k < n_key; k++) {
        float *yk = y + k * n;
        const uint64_t key = keys ? keys[k] : 0;
        int64_t zlo = 0, zhi = 0; /* element indices (within the chip's block) held in z */
        for (int64_t l = 0; l < L; l++) {
            const int64_t kl = k * L + l;
            const float *sol = so + kl * C;
            for (int64_t m = 0; m < M; m++) {
                const int64_t e0 = (l * M + m) * C;
                float *yr = yk + e0;
                const float sxr = sx[kl * M + m];
                const float *sdr = keys ? sd + (kl * sd_rows + (sd_rows > 1 ? m : 0)) * C : NULL;
                for (int64_t c0 = 0; c0 < C;) {
                    int64_t len = C - c0;
                    const float *zz = NULL;
                    if (keys) {
                        const int64_t e = e0 + c0;
                        if (e >= zhi) { /* the next block of Gaussians */
                            zlo = e & ~(int64_t)3;
                            const int64_t nz = n - zlo < IMC_MOMENT_BLOCK ? n - zlo
                                                                          : IMC_MOMENT_BLOCK;
                            mom_normal_groups(key, (uint64_t)zlo >> 2, (nz + 3) >> 2, z);
                            zhi = zlo + nz;
                        }
                        if (len > zhi - e) len = zhi - e;
                        zz = z + (e - zlo);
                    }
                    float *yy = yr + c0;
                    const float *oo = sol + c0;
                    if (zz) {
                        const float *ss = sdr + c0;
                        if (gain_on) {
#pragma omp simd
                            for (int64_t j = 0; j < len; j++)
                                yy[j] = ((yy[j] * gain + zz[j] * ss[j]) * sxr) * oo[j];
                        } else {
#pragma omp simd
                            for (int64_t j = 0; j < len; j++)
                                yy[j] = ((yy[j] + zz[j] * ss[j]) * sxr) * oo[j];
                        }
                    } else {
#pragma omp simd
                        for (int64_t j = 0; j < len; j++) yy[j] = (yy[j] * sxr) * oo[j];
                    }
                    c0 += len;
                }
            }
        }
    }
}

/* Input quantization, per row of K values (quantize_inputs' float32 operations): the row's
 * largest magnitude (clamp01 0: max |x|) or largest value clamped to [0, 1] (clamp01 1). */
void imc_rows_absmax(const float *x, int64_t rows, int64_t K, int clamp01, float *out) {
    for (int64_t i = 0; i < rows; i++) {
        const float *xr = x + i * K;
        float m = 0.0f;
        if (clamp01) {
            for (int64_t j = 0; j < K; j++) {
                float v = xr[j] < 0.0f ? 0.0f : (xr[j] > 1.0f ? 1.0f : xr[j]);
                m = v > m ? v : m;
            }
        } else {
#pragma omp simd reduction(max : m)
            for (int64_t j = 0; j < K; j++) {
                float v = fabsf(xr[j]);
                m = v > m ? v : m;
            }
        }
        out[i] = m;
    }
}

/* The codes min(max(rint(x' / sx[row]), lo), hi), x' = x (clamp01 0) or x clamped to [0, 1]. */
void imc_rows_codes(const float *x, int64_t rows, int64_t K, const float *sx, float lo,
                    float hi, int clamp01, float *out) {
    for (int64_t i = 0; i < rows; i++) {
        const float *xr = x + i * K;
        float *o = out + i * K;
        const float s = sx[i];
#pragma omp simd
        for (int64_t j = 0; j < K; j++) {
            float v = xr[j];
            if (clamp01) v = v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v);
            float q = rintf(v / s);
            q = q < lo ? lo : q;
            o[j] = q > hi ? hi : q;
        }
    }
}

/* What moment_write's per-element passes share. */
typedef struct {
    const float *wt;      /* (n_mat, C, R) values, per column its rows */
    const float *smax;    /* (n_mat,) magnitude mapped to full scale (clamped >= tiny) */
    int64_t n_mat, C, R;
    int64_t rows;         /* tile rows */
    int64_t ns;           /* slices */
    int64_t n_g;          /* groups of two slices (ceil(ns / 2)) */
    int64_t cell_bits;
    float qmax;
    int clip;             /* ClipFormer on the value-to-conductance mapping */
    float gmin, dg, clip_lo, clip_hi; /* g = gmin + dg mag; max(g - clip_lo, gmin); min(., clip_hi) */
    const float *m_rel;   /* per level: the cell's mean level minus level 0's */
    const float *v_rel;   /* per level: its variance minus level 0's (NULL: no noise) */
    int scalar;           /* 1: the scalar element loop even where AVX-512 is built (tests) */
} imc_mw_args;

/* The magnitude code of one value, as moment_write's torch path (map_matrix's q). */
static inline int64_t mw_code(const imc_mw_args *a, float w, float s) {
    float mag = fabsf(w) / s;
    if (a->clip) {
        float g = a->gmin + a->dg * mag;
        g = g - a->clip_lo;
        g = g < a->gmin ? a->gmin : g;
        g = g > a->clip_hi ? a->clip_hi : g;
        mag = (g - a->gmin) / a->dg;
    }
    return (int64_t)rintf(mag * a->qmax);
}

#ifdef IMC_HAVE_NORMAL64
/* Rows 0 .. n-1 (n <= 16) of one column and tile in AVX-512 lanes: the scalar element loop of
 * imc_moment_elems lane by lane (the same float operations in the same order, no
 * contraction: the same bits; tested through the model's outputs). w: the rows' values;
 * gt: the column's gains of this tile (gt[p 2 + (sl >> 1) 4 + (sl & 1)]); mrel, vrel: the
 * level tables padded to 16; zr: the rows' Gaussians (noisy); o: the first row's output. */
/* mw_code of rows 0 .. n-1 (n <= 16) in AVX-512 lanes (the same float operations), their
 * lane mask and the mask of the negative values. */
static inline __m512i mw_codes16(const imc_mw_args *a, const float *w, float s, int n,
                                 __mmask16 *kk, __mmask16 *neg) {
    const __mmask16 k = n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1u);
    const __m512 wv = _mm512_maskz_loadu_ps(k, w);
    *kk = k;
    *neg = _mm512_cmp_ps_mask(wv, _mm512_setzero_ps(), _CMP_LT_OQ);
    __m512 mag = _mm512_div_ps(_mm512_andnot_ps(_mm512_set1_ps(-0.0f), wv), _mm512_set1_ps(s));
    if (a->clip) {
        const __m512 gmin = _mm512_set1_ps(a->gmin), dg = _mm512_set1_ps(a->dg);
        const __m512 hi = _mm512_set1_ps(a->clip_hi);
        __m512 g = _mm512_add_ps(gmin, _mm512_mul_ps(dg, mag));
        g = _mm512_sub_ps(g, _mm512_set1_ps(a->clip_lo));
        g = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(g, gmin, _CMP_LT_OQ), g, gmin);
        g = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(g, hi, _CMP_GT_OQ), g, hi);
        mag = _mm512_div_ps(_mm512_sub_ps(g, gmin), dg);
    }
    return _mm512_cvtps_epi32(_mm512_roundscale_ps(
        _mm512_mul_ps(mag, _mm512_set1_ps(a->qmax)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

static inline void mw_elems16(const imc_mw_args *a, const float *w, float s, int n,
                              const float *gt, float smt, float svt, int noisy,
                              const float *mrel, const float *vrel, const float *zr,
                              float *o, int64_t C) {
    const __m512 zero = _mm512_setzero_ps();
    __mmask16 k, neg;
    const __m512i q = mw_codes16(a, w, s, n, &k, &neg);
    const __m512 mt = _mm512_loadu_ps(mrel), vt = _mm512_loadu_ps(vrel);
    const __m512i bm = _mm512_set1_epi32((int)((1 << a->cell_bits) - 1));
    __m512 v = _mm512_set1_ps(smt), vv = _mm512_set1_ps(svt);
    for (int64_t sl = 0; sl < a->ns; sl++) {
        const __m512i d = _mm512_and_si512(
            _mm512_srlv_epi32(q, _mm512_set1_epi32((int)(a->cell_bits * sl))), bm);
        const int64_t j = (sl >> 1) * 4 + (sl & 1);
        const __m512 gw = _mm512_mask_blend_ps(neg, _mm512_set1_ps(gt[j]), _mm512_set1_ps(gt[2 + j]));
        v = _mm512_add_ps(v, _mm512_mul_ps(gw, _mm512_permutexvar_ps(d, mt)));
        if (noisy)
            vv = _mm512_add_ps(vv, _mm512_mul_ps(_mm512_mul_ps(gw, gw), _mm512_permutexvar_ps(d, vt)));
    }
    if (noisy) {
        vv = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(vv, zero, _CMP_LT_OQ), vv, zero);
        v = _mm512_add_ps(v, _mm512_mul_ps(_mm512_sqrt_ps(vv), _mm512_maskz_loadu_ps(k, zr)));
    }
    float tmp[16];
    _mm512_storeu_ps(tmp, v);
    for (int j = 0; j < n; j++) o[j * C] = tmp[j];
}
#endif

/* Per (mat, c): the column sums of moment_write, (n_mat, C, T, G, 2 signs, 2 slices of the
 * group, 2): [.., 0] the cells' mean levels above a level-0 cell's (m_rel of the digit),
 * [.., 1] the target digits, over the column's rows of that tile and sign (accumulated in
 * double; the digits exactly). */
void imc_moment_colsums(const imc_mw_args *a, float *sums) {
    const int64_t T = (a->R + a->rows - 1) / a->rows, n_g = a->n_g, ns = a->ns;
    const int64_t base = (int64_t)1 << a->cell_bits;
    const int64_t per_t = n_g * 2 * 2, n_slot = T * per_t; /* (t, g, p, i) slots */
    /* per slot, the count of each level (integers), then the sums from the counts */
    int32_t cnt[(n_slot > 0 ? n_slot : 1) * 16];
    for (int64_t mat = 0; mat < a->n_mat; mat++) {
        const float s = a->smax[mat];
        for (int64_t c = 0; c < a->C; c++) {
            const float *w = a->wt + (mat * a->C + c) * a->R;
            for (int64_t i = 0; i < n_slot * base; i++) cnt[i] = 0;
            int32_t *at = cnt;
#ifdef IMC_HAVE_NORMAL64
            /* 16 rows per step: per slice digit and sign, the lanes' count by popcount */
            for (int64_t t = 0; t < T && !a->scalar; t++) {
                int32_t *att = cnt + t * per_t * base;
                const int64_t r1 = (t + 1) * a->rows < a->R ? (t + 1) * a->rows : a->R;
                for (int64_t r = t * a->rows; r < r1; r += 16) {
                    const int nr = (int)(r1 - r < 16 ? r1 - r : 16);
                    __mmask16 k, neg;
                    const __m512i q = mw_codes16(a, w + r, s, nr, &k, &neg);
                    const __mmask16 pos = k & (__mmask16)~neg, ng = k & neg;
                    for (int64_t sl = 0; sl < ns; sl++) {
                        const __m512i d = _mm512_and_si512(
                            _mm512_srlv_epi32(q, _mm512_set1_epi32((int)(a->cell_bits * sl))),
                            _mm512_set1_epi32((int)(base - 1)));
                        int32_t *a0 = att + (((sl >> 1) * 2) * 2 + (sl & 1)) * base;
                        int32_t *a1 = a0 + 2 * base; /* the negative sign's slot */
                        for (int64_t dv = 0; dv < base; dv++) {
                            const __mmask16 m = _mm512_cmpeq_epi32_mask(d, _mm512_set1_epi32((int)dv));
                            a0[dv] += __builtin_popcount((unsigned)(m & pos));
                            a1[dv] += __builtin_popcount((unsigned)(m & ng));
                        }
                    }
                }
            }
            if (!a->scalar) goto sums;
#endif
            for (int64_t r = 0, r_next = a->rows; r < a->R; r++) {
                if (r == r_next) { /* the next tile's slots */
                    at += per_t * base;
                    r_next += a->rows;
                }
                int64_t q = mw_code(a, w[r], s);
                int64_t p = w[r] < 0.0f ? 1 : 0;
                for (int64_t sl = 0; sl < ns; sl++) {
                    int64_t d = (q >> (a->cell_bits * sl)) & (base - 1);
                    at[(((sl >> 1) * 2 + p) * 2 + (sl & 1)) * base + d] += 1;
                }
            }
#ifdef IMC_HAVE_NORMAL64
        sums:;
#endif
            float *o = sums + (mat * a->C + c) * n_slot * 2;
            for (int64_t k = 0; k < n_slot; k++) {
                double sm = 0.0, sd = 0.0;
                for (int64_t d = 0; d < base; d++) {
                    sm += (double)cnt[k * base + d] * (double)a->m_rel[d];
                    sd += (double)cnt[k * base + d] * (double)d;
                }
                o[2 * k] = (float)sm;
                o[2 * k + 1] = (float)sd;
            }
        }
    }
}


/* The written matrix: out[mat, r, c] = sm[t] + sum_s gc[t, s, sign] m_rel[d_s]
 * (+ sqrt(max(sv[t] + sum_s gc[t, s, sign]^2 v_rel[d_s], 0)) z), with gc the column's
 * slice-weighted, sign-weighted transfer gains (T, G, 2 signs, 2 slices) at
 * gc + mat * gc_mstride + c * gc_cstride (0 strides: shared), sm[t] = m0 sum gc[t] and
 * sv[t] = v0 sum gc[t]^2 (the level-0 cells of every slice and sign); z of element
 * (mat, c, r) = flat index within its chip's block of mats_per_key matrices under
 * keys[mat / mats_per_key]. keys NULL (or v_rel NULL): no noise. */
void imc_moment_elems(const imc_mw_args *a, const float *gc, int64_t gc_mstride,
                      int64_t gc_cstride, float m0, float v0, const uint64_t *keys,
                      int64_t mats_per_key, float *out) {
    const int64_t C = a->C, R = a->R, ns = a->ns, n_g = a->n_g;
    const int64_t T = (R + a->rows - 1) / a->rows, per_t = n_g * 4;
    const int64_t base = (int64_t)1 << a->cell_bits;
    const int noisy = keys != NULL && a->v_rel != NULL;
    float z[IMC_MOMENT_BLOCK];
    float sm[T > 0 ? T : 1], sv[T > 0 ? T : 1];
    const int64_t per_key = mats_per_key * C * R;
    int64_t zlo = -1, zhi = -1; /* element indices (within the chip's block) held in z */
#ifdef IMC_HAVE_NORMAL64
    float mrel16[16] = {0}, vrel16[16] = {0}; /* the level tables, padded for permutes */
    for (int64_t d = 0; d < base && d < 16; d++) {
        mrel16[d] = a->m_rel[d];
        vrel16[d] = noisy ? a->v_rel[d] : 0.0f;
    }
#endif
    for (int64_t mat = 0; mat < a->n_mat; mat++) {
        const float s = a->smax[mat];
        const uint64_t key = noisy ? keys[mat / mats_per_key] : 0;
        const int64_t mat_base = (mat % mats_per_key) * C * R; /* index within the block */
        if (mat % mats_per_key == 0) zlo = zhi = -1;            /* a new chip: a new key */
        for (int64_t c = 0; c < C; c++) {
            const float *w = a->wt + (mat * C + c) * R;
            const float *gcc = gc + mat * gc_mstride + c * gc_cstride;
            for (int64_t t = 0; t < T; t++) {
                float am = 0.0f, av = 0.0f;
                for (int64_t j = 0; j < per_t; j++) {
                    float x = gcc[t * per_t + j];
                    am += x;
                    av += x * x;
                }
                sm[t] = m0 * am;
                sv[t] = v0 * av;
            }
            float *o = out + mat * R * C + c;
#ifdef IMC_HAVE_NORMAL64
            for (int64_t t = 0; t < T && !a->scalar; t++) {
                const int64_t r1 = (t + 1) * a->rows < R ? (t + 1) * a->rows : R;
                for (int64_t r = t * a->rows; r < r1; r += 16) {
                    const int nr = (int)(r1 - r < 16 ? r1 - r : 16);
                    const int64_t idx = mat_base + c * R + r;
                    if (noisy && (idx < zlo || idx + nr > zhi)) { /* the next block */
                        zlo = idx & ~(int64_t)3;
                        int64_t nz = per_key - zlo < IMC_MOMENT_BLOCK ? per_key - zlo
                                                                      : IMC_MOMENT_BLOCK;
                        mom_normal_groups(key, (uint64_t)zlo >> 2, (nz + 3) >> 2, z);
                        zhi = zlo + nz;
                    }
                    mw_elems16(a, w + r, s, nr, gcc + t * per_t, sm[t], sv[t], noisy, mrel16,
                               vrel16, noisy ? z + (idx - zlo) : NULL, o + r * C, C);
                }
            }
            if (!a->scalar) continue;
#endif
            for (int64_t r = 0, t = 0, r_next = a->rows; r < R; r++) {
                if (r == r_next) { /* the next tile */
                    t++;
                    r_next += a->rows;
                }
                int64_t q = mw_code(a, w[r], s);
                int64_t p = w[r] < 0.0f ? 1 : 0;
                const float *gt = gcc + t * per_t + p * 2;
                float v = sm[t], vv = sv[t];
                for (int64_t sl = 0; sl < ns; sl++) {
                    int64_t d = (q >> (a->cell_bits * sl)) & (base - 1);
                    float gw = gt[(sl >> 1) * 4 + (sl & 1)];
                    v = v + gw * a->m_rel[d];
                    if (noisy) vv = vv + (gw * gw) * a->v_rel[d];
                }
                if (noisy) {
                    vv = vv < 0.0f ? 0.0f : vv;
                    int64_t idx = mat_base + c * R + r;
                    if (idx < zlo || idx >= zhi) {
                        zlo = idx & ~(int64_t)3;
                        int64_t nz = per_key - zlo < IMC_MOMENT_BLOCK ? per_key - zlo
                                                                      : IMC_MOMENT_BLOCK;
                        mom_normal_groups(key, (uint64_t)zlo >> 2, (nz + 3) >> 2, z);
                        zhi = zlo + nz;
                    }
                    v = v + sqrtf(vv) * z[idx - zlo];
                }
                o[r * C] = v;
            }
        }
    }
}

/* moment_write's per-column readout terms from the column sums of imc_moment_colsums, the
 * torch path's float32 operations in its order (_readout_var with fused_readout's tables),
 * for n_mat matrices of C columns, T tiles and S slots (groups x signs x slices of the
 * group), with u = 0.5 (sums_mean + n_r[t] a_mg) the expected current:
 *   gain = u > 0 ? mean(u) / max(u, tiny) : 1             (gain NULL: no transfer gain)
 *   v = fma(spread, spread, fma(read, read, 0)) + (lsb lsb) c_adc   (each where present)
 * term(u) = fma(idx, b[i], a[i]), idx = max(u per_u, 0), i = min((int)idx, n - 1); tab holds
 * per term its a then b (n each), at t_mean / t_read / t_spread (-1: absent). The fused
 * multiply-adds are torch's addcmul on this CPU (its vectorized kernels contract; tested
 * bit for bit against the torch path). ADC: adc_mode 0 none, 1 per tile (lsb = (k_vr ((grp
 * k_dg) + k_g0)) / k_div, grp the largest digit sum of the slot over the matrix's columns,
 * at least 1), 2 fixed (lsb = ifs / k_div). */
void imc_moment_colterms(const float *sums, int64_t n_mat, int64_t C, int64_t T, int64_t S,
                         const float *n_r, float a_mg, const float *tab, int64_t n,
                         float per_u, int64_t t_mean, int64_t t_read, int64_t t_spread,
                         int adc_mode, float k_dg, float k_g0, float k_vr, float ifs,
                         float k_div, float c_adc, float *gain, float *v) {
    const float tiny = 1.17549435e-38f;
    const int64_t TS = T * S;
    float lsb[TS > 0 ? TS : 1];
    for (int64_t mat = 0; mat < n_mat; mat++) {
        const float *sm = sums + mat * C * TS * 2;
        if (adc_mode == 1) {
            for (int64_t j = 0; j < TS; j++) {
                float g = sm[2 * j + 1];
                for (int64_t c = 1; c < C; c++) {
                    const float x = sm[(c * TS + j) * 2 + 1];
                    g = x > g ? x : g;
                }
                g = g < 1.0f ? 1.0f : g;
                lsb[j] = (k_vr * (g * k_dg + k_g0)) / k_div;
            }
        } else if (adc_mode == 2) {
            for (int64_t j = 0; j < TS; j++) lsb[j] = ifs / k_div;
        }
        for (int64_t c = 0; c < C; c++) {
            const float *sc = sm + c * TS * 2;
            const int64_t o0 = (mat * C + c) * TS;
            for (int64_t t = 0; t < T; t++) {
                const float nr = n_r[t] * a_mg;
                for (int64_t s = 0; s < S; s++) {
                    const int64_t j = t * S + s;
                    const float u = 0.5f * (sc[2 * j] + nr);
                    float idx = u * per_u;
                    idx = idx < 0.0f ? 0.0f : idx;
                    const int64_t i = !(idx < (float)(n - 1)) ? n - 1 : (int64_t)idx;
                    float vv = 0.0f;
                    if (t_read >= 0) {
                        const float r = fmaf(idx, tab[2 * n * t_read + n + i],
                                             tab[2 * n * t_read + i]);
                        vv = fmaf(r, r, vv);
                    }
                    if (t_spread >= 0) {
                        const float sp = fmaf(idx, tab[2 * n * t_spread + n + i],
                                              tab[2 * n * t_spread + i]);
                        vv = fmaf(sp, sp, vv);
                    }
                    if (gain) {
                        const float m = fmaf(idx, tab[2 * n * t_mean + n + i],
                                             tab[2 * n * t_mean + i]);
                        gain[o0 + j] = u > 0.0f ? m / (u < tiny ? tiny : u) : 1.0f;
                    }
                    if (adc_mode) vv = vv + (lsb[j] * lsb[j]) * c_adc;
                    v[o0 + j] = vv;
                }
            }
        }
    }
}
