/* RAP's crossbar MVM on programmed cells, fused (issue 17 item 4): nnsim/rap/crossbar.py and
 * nnsim/rap/sparse_mvm.py in one pass, no temporaries per conversion.
 *
 * For every token t, sign phase, input bit-plane k and array (tile): the active rows (bit 1
 * of the input magnitude) are taken in row order and packed into groups of at most `k_act`
 * rows (sparse; a plane without active rows costs nothing) or one group of all of them
 * (dense: every plane converts, even an empty one). Per group and physical column j:
 *
 *   u    = sum of the group's programmed cell currents (fixed point, relative to the column)
 *   e    = entry[inst_off[tile, j] + u]   (ColumnReadout.entry: the certain code c >= 0, or
 *                                          -1 - code0 where the code is uncertain; `es`
 *                                          holds (entry, stay) pairs, RAP_ENTRY)
 *   where e < 0 (or `fused` is 0): one conversion drawn as ColumnReadout._draw does,
 *     x = x0[u] + spread[u] z[tile, j] + sigma[u] n,   n ~ N(0, 1),
 *     code = code0 unless x left code0's bin [thr[code0 - 1], thr[code0]) of the column's
 *     instance (-inf / +inf at the ends), then the number of the instance's thresholds <= x
 *     (AdcModel.quantize, x clamped to [-1.5, max_code + 1.5]);
 *   acc[t, j] += sign * (code << k).
 *
 * The loops over the columns are written so that the compiler vectorizes them (sums, table
 * gathers, accumulation; AVX-512 intrinsics where the build has them, the same integer
 * results); the uncertain conversions are listed (compress-store) and drawn eight at a time
 * (AVX-512) or one by one.
 *
 * stay_in_pass: 0 lists every uncertain conversion, 1 tests the stay cells in the group pass,
 * 2 decides per group from the previous group's uncertain fraction (> 15 %: in the pass).
 *
 * Random numbers: counter-based, n = Phi^-1(U) of 52 bits of imc_splitmix64(seed ^ imc_splitmix64(c))
 * (exact inverse-transform sampling, c = group_id * cols + j, group_id from (t, tile, sign,
 * plane, group); seed drawn per call from the chip's generator). The variate depends only on
 * the conversion's coordinates: the same bits at any thread count or order of the work. A
 * table of the quantiles at i / 4096 brackets n; x is monotone in n, so where both ends of
 * the bracket give one code that is the code and Phi^-1 is not evaluated (most draws; the
 * same bits as evaluating it, `slow`). No rng.h dependency.
 * stats: [cycles, active rows, draws, sum over the conversions of the programmed column sum u
 * (the ideal column current at T in fixed-point level units, G_min included)].
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

/* RAP_PROFILE (a build with -DRAP_PROFILE, for bench/profiling only; one thread): counts of
 * where the uncertain conversions are decided, read by rap_profile. */
#ifdef RAP_PROFILE
static int64_t rap_prof[10];
#define RAP_COUNT(i, n) (rap_prof[i] += (n))
#else
#define RAP_COUNT(i, n) ((void)0)
#endif
/* [0] uncertain, [1] stay cell in the pass, [2] listed, [3] decided by the vector bracket,
 * [4] scalar: stay cell, [5] scalar: x0's bin, [6] scalar: same code at both bracket ends,
 * [7] the variate evaluated (Phi^-1), [8] decided by the vector bracket's codes (moved out
 * of x0's bin), [9] unused. Zeroed by reading. */
void rap_profile(int64_t *out) {
#ifdef RAP_PROFILE
    for (int i = 0; i < 10; i++) {
        out[i] = rap_prof[i];
        rap_prof[i] = 0;
    }
#else
    for (int i = 0; i < 10; i++) out[i] = -1;
#endif
}

/* The table of entries: pairs (entry, stay) per index i = inst_off + u, interleaved so that
 * the uncertain conversions' stay cells come with the entry's cache line. */
#define RAP_ENTRY(es, i) ((es)[2 * (int64_t)(i)])
#define RAP_STAY(es, i) ((es)[2 * (int64_t)(i) + 1])

/* Quantiles of N(0, 1) at i / QCELLS (Q[0] = -inf, Q[QCELLS] = +inf), built once. */
#define QBITS 12
#define QCELLS (1 << QBITS)
static double rap_q[QCELLS + 1];
static int rap_q_ready = 0;

/* Build the quantile table (call once before rap_mvm; idempotent). */
void rap_init(void) {
    if (rap_q_ready) return;
    rap_q[0] = -INFINITY;
    rap_q[QCELLS] = INFINITY;
    rap_q[QCELLS / 2] = 0.0;
    for (int i = 1; i < QCELLS / 2; i++) {
        double q = imc_quantile_lower((double)i / QCELLS, -40.0, 0.0);
        rap_q[i] = q;
        rap_q[QCELLS - i] = -q;
    }
    rap_q_ready = 1;
}

/* The standard normal variate of 64 random bits h: n = Phi^-1(U), U = (k + 1/2) 2^-52 with k
 * the top 52 bits (exact inverse-transform sampling; U and 1 - U give -n and n). Exported for
 * tests (against an independent quantile function). */
double rap_normal_of_bits(uint64_t h) {
    uint64_t k = h >> 12;
    int upper = k >= (1ULL << 51);
    uint64_t kk = upper ? ((1ULL << 52) - 1 - k) : k;
    int64_t cell = (int64_t)(kk >> (52 - QBITS));
    double n = imc_quantile_lower(((double)kk + 0.5) * 0x1.0p-52,
                                  cell == 0 ? -40.0 : rap_q[cell], rap_q[cell + 1]);
    return upper ? -n : n;
}

/* Number of thresholds <= x (x clamped to [-1.5, n_thr + 1.5]): AdcModel.quantize. */
static inline int64_t rap_code_of(const double *restrict th, int64_t n_thr, double xv) {
    const double lo = -1.5, hi = (double)n_thr + 1.5;
    double xc = xv < lo ? lo : (xv > hi ? hi : xv);
    int64_t a = 0, b = n_thr;
    while (a < b) {
        int64_t mid = (a + b) >> 1;
        if (th[mid] <= xc) a = mid + 1; else b = mid;
    }
    return a;
}

/* One drawn conversion: x = (x0[u] + spread[u] zj) + sigma[u] n with n the normal variate of
 * the conversion's counter; its code. code0 (x0's bin) where x stays in [thr[c0-1], thr[c0]).
 * The variate's cell of the quantile table brackets n, and x is monotone in n: where both
 * ends of the cell give one code, that is the code and n is not computed (`slow`: always
 * computed; the same result). */
static inline int64_t rap_draw(const double *restrict xss, const double *restrict th,
                               int64_t n_thr, int32_t uu, double zj, int64_t c0,
                               uint64_t seed, uint64_t ctr, uint32_t st, int slow) {
    const uint64_t h = imc_splitmix64(seed ^ imc_splitmix64(ctr));
    if (!slow) { /* the stay cells of U (ColumnReadout._stay_table) */
        uint32_t k16 = (uint32_t)(h >> 48);
        if (k16 >= (st & 0xFFFFu) && k16 < (st >> 16)) {
            RAP_COUNT(4, 1);
            return c0;
        }
    }
    const double *p = xss + 4 * (int64_t)uu; /* x0, spread, sigma */
    const double m = p[0] + p[1] * zj, s = p[2];
    if (!(s > 0.0)) return rap_code_of(th, n_thr, m + 0.0);
    if (!slow) {
        uint64_t k = h >> 12;
        int upper = k >= (1ULL << 51);
        uint64_t kk = upper ? ((1ULL << 52) - 1 - k) : k;
        int64_t cell = (int64_t)(kk >> (52 - QBITS));
        double na = rap_q[cell], nb = rap_q[cell + 1];
        if (upper) {
            double t = na;
            na = -nb;
            nb = -t;
        }
        double xa = m + s * na, xb = m + s * nb;
        double tb = c0 > 0 ? th[c0 - 1] : -INFINITY;
        double ta = c0 < n_thr ? th[c0] : INFINITY;
        if (xa >= tb && xb < ta) {
            RAP_COUNT(5, 1);
            return c0;
        }
        int64_t ca = rap_code_of(th, n_thr, xa);
        if (ca == rap_code_of(th, n_thr, xb)) {
            RAP_COUNT(6, 1);
            return ca;
        }
    }
    RAP_COUNT(7, 1);
    return rap_code_of(th, n_thr, m + s * rap_normal_of_bits(h));
}

#if defined(__AVX512F__) && defined(__AVX512DQ__)
static inline __m512i rap_splitmix64_v(__m512i v) {
    v = _mm512_add_epi64(v, _mm512_set1_epi64((long long)0x9E3779B97F4A7C15ULL));
    v = _mm512_mullo_epi64(_mm512_xor_si512(v, _mm512_srli_epi64(v, 30)),
                           _mm512_set1_epi64((long long)0xBF58476D1CE4E5B9ULL));
    v = _mm512_mullo_epi64(_mm512_xor_si512(v, _mm512_srli_epi64(v, 27)),
                           _mm512_set1_epi64((long long)0x94D049BB133111EBULL));
    return _mm512_xor_si512(v, _mm512_srli_epi64(v, 31));
}

/* Up to eight uncertain conversions, columns jl[0..7] (lanes `valid`): the quantile-cell test
 * of rap_draw in vector form; returns the lanes it decided (code0, added to at with weight
 * w); the caller sends the others through rap_draw (the same arithmetic, so the same codes).
 * The columns of one call are distinct. */
static inline __mmask8 rap_draw8(const double *restrict xss, const double *restrict thr,
                                 int64_t n_thr, const int32_t *restrict u,
                                 const int32_t *restrict e, const int32_t *restrict ci,
                                 const double *restrict zt, const int32_t *restrict jl,
                                 uint64_t seed, uint64_t base, __mmask8 valid, int64_t w,
                                 int64_t *restrict at) {
    const __m256i jv = _mm256_maskz_loadu_epi32(valid, jl);
    __m512i ctr = _mm512_add_epi64(_mm512_set1_epi64((long long)base),
                                   _mm512_cvtepi32_epi64(jv));
    __m512i h = rap_splitmix64_v(_mm512_xor_si512(_mm512_set1_epi64((long long)seed),
                                                  rap_splitmix64_v(ctr)));
    __m512i k = _mm512_srli_epi64(h, 12);
    __mmask8 upper = _mm512_cmpge_epu64_mask(k, _mm512_set1_epi64(1LL << 51));
    __m512i kk = _mm512_mask_sub_epi64(k, upper, _mm512_set1_epi64((1LL << 52) - 1), k);
    __m512i cell = _mm512_srli_epi64(kk, 52 - QBITS);
    __m512d q0 = _mm512_i64gather_pd(cell, rap_q, 8);
    __m512d q1 = _mm512_i64gather_pd(cell, rap_q + 1, 8);
    const __m512d neg0 = _mm512_set1_pd(-0.0);
    __m512d na = _mm512_mask_blend_pd(upper, q0, _mm512_xor_pd(q1, neg0));
    __m512d nb = _mm512_mask_blend_pd(upper, q1, _mm512_xor_pd(q0, neg0));
    const __m256i z8 = _mm256_setzero_si256();
    __m256i vu = _mm256_mmask_i32gather_epi32(z8, valid, jv, u, 4);
    __m256i ve = _mm256_mmask_i32gather_epi32(z8, valid, jv, e, 4);
    __m256i vc = _mm256_mmask_i32gather_epi32(z8, valid, jv, ci, 4);
    __m512i idx = _mm512_slli_epi64(_mm512_cvtepi32_epi64(vu), 2);
    const __m512d zd = _mm512_setzero_pd();
    __m512d x0 = _mm512_mask_i64gather_pd(zd, valid, idx, xss, 8);
    __m512d sp = _mm512_mask_i64gather_pd(zd, valid, idx, xss + 1, 8);
    __m512d sg = _mm512_mask_i64gather_pd(zd, valid, idx, xss + 2, 8);
    __m512d zz = _mm512_mask_i32gather_pd(zd, valid, jv, zt, 8);
    __m512d m = _mm512_add_pd(x0, _mm512_mul_pd(sp, zz));
    __m512d xa = _mm512_add_pd(m, _mm512_mul_pd(sg, na));
    __m512d xb = _mm512_add_pd(m, _mm512_mul_pd(sg, nb));
    __m512i c0 = _mm512_sub_epi64(_mm512_set1_epi64(-1), _mm512_cvtepi32_epi64(ve));
    __m512i ti = _mm512_add_epi64(_mm512_mullo_epi64(_mm512_cvtepi32_epi64(vc),
                                                     _mm512_set1_epi64(n_thr)), c0);
    __mmask8 has_b = _mm512_cmpgt_epi64_mask(c0, _mm512_setzero_si512()) & valid;
    __mmask8 has_a = _mm512_cmplt_epi64_mask(c0, _mm512_set1_epi64(n_thr)) & valid;
    __m512d tb = _mm512_mask_i64gather_pd(_mm512_set1_pd(-INFINITY), has_b, ti, thr - 1, 8);
    __m512d ta = _mm512_mask_i64gather_pd(_mm512_set1_pd(INFINITY), has_a, ti, thr, 8);
    const __mmask8 pos = valid & _mm512_cmp_pd_mask(sg, zd, _CMP_GT_OQ);
    __mmask8 ok = pos & _mm512_cmp_pd_mask(xa, tb, _CMP_GE_OQ) &
                  _mm512_cmp_pd_mask(xb, ta, _CMP_LT_OQ);
    RAP_COUNT(3, __builtin_popcount((unsigned)ok));
    __m512i code = c0;
    const __mmask8 moved = pos & ~ok;
    if (moved) {
        /* the codes of both bracket ends, rap_code_of lane by lane (the same clamp and the
         * same comparisons th[mid] <= x of the same binary search): equal, that is the code */
        const __m512d lo = _mm512_set1_pd(-1.5), hi = _mm512_set1_pd((double)n_thr + 1.5);
        const __m512d xca = _mm512_mask_blend_pd(_mm512_cmp_pd_mask(xa, hi, _CMP_GT_OQ),
            _mm512_mask_blend_pd(_mm512_cmp_pd_mask(xa, lo, _CMP_LT_OQ), xa, lo), hi);
        const __m512d xcb = _mm512_mask_blend_pd(_mm512_cmp_pd_mask(xb, hi, _CMP_GT_OQ),
            _mm512_mask_blend_pd(_mm512_cmp_pd_mask(xb, lo, _CMP_LT_OQ), xb, lo), hi);
        const __m512i row = _mm512_mullo_epi64(_mm512_cvtepi32_epi64(vc),
                                               _mm512_set1_epi64(n_thr));
        const __m512i one = _mm512_set1_epi64(1);
        __m512i aa = _mm512_setzero_si512(), ba = _mm512_set1_epi64(n_thr);
        __m512i ab = aa, bb = ba;
        for (;;) {
            const __mmask8 ma = moved & _mm512_cmplt_epi64_mask(aa, ba);
            const __mmask8 mb = moved & _mm512_cmplt_epi64_mask(ab, bb);
            if (!(ma | mb)) break;
            const __m512i mida = _mm512_srli_epi64(_mm512_add_epi64(aa, ba), 1);
            const __m512i midb = _mm512_srli_epi64(_mm512_add_epi64(ab, bb), 1);
            const __m512d ta_ = _mm512_mask_i64gather_pd(zd, ma, _mm512_add_epi64(row, mida),
                                                         thr, 8);
            const __m512d tb_ = _mm512_mask_i64gather_pd(zd, mb, _mm512_add_epi64(row, midb),
                                                         thr, 8);
            const __mmask8 lea = ma & _mm512_cmp_pd_mask(ta_, xca, _CMP_LE_OQ);
            const __mmask8 leb = mb & _mm512_cmp_pd_mask(tb_, xcb, _CMP_LE_OQ);
            aa = _mm512_mask_add_epi64(aa, lea, mida, one);
            ba = _mm512_mask_mov_epi64(ba, ma & ~lea, mida);
            ab = _mm512_mask_add_epi64(ab, leb, midb, one);
            bb = _mm512_mask_mov_epi64(bb, mb & ~leb, midb);
        }
        const __mmask8 same = moved & _mm512_cmpeq_epi64_mask(aa, ab);
        RAP_COUNT(8, __builtin_popcount((unsigned)same));
        code = _mm512_mask_mov_epi64(code, same, aa);
        ok |= same;
    }
    if (ok) {
        __m512i a = _mm512_mask_i32gather_epi64(_mm512_setzero_si512(), ok, jv, at, 8);
        a = _mm512_add_epi64(a, _mm512_mullo_epi64(code, _mm512_set1_epi64(w)));
        _mm512_mask_i32scatter_epi64(at, ok, jv, a, 8);
    }
    return ok;
}
#endif

/* One group over the columns: u = ca + cb (cb NULL: u = ca; with cb the sums are stored in
 * ub), e = entry[off + u] (the certain code or -1 - code0, into eb; stay[off + u]: the
 * stay cells klo | khi << 16 of ColumnReadout._stay_table), at += +-(code << k) by sign
 * phase sg for the certain conversions and, with use_stay, for the uncertain ones whose
 * variate's top 16 bits fall in the stay cells (code0); returns the sum of u, *n_unc the
 * number of uncertain conversions and *n_list the columns left to draw, in list. */
static inline int64_t rap_group_pass(const int32_t *restrict ca, const int32_t *restrict cb,
                                     int32_t *restrict ub, const int32_t *restrict off,
                                     const int32_t *restrict es, int32_t *restrict eb,
                                     int64_t *restrict at, int64_t cols, int k, int sg,
                                     int32_t *restrict list, uint64_t seed, uint64_t base,
                                     int use_stay, int64_t *n_unc, int64_t *n_list) {
    int64_t cur = 0, neg = 0, nl = 0, j = 0;
#if defined(__AVX512F__) && defined(__AVX512DQ__)
    {
        __m512i vcur = _mm512_setzero_si512();
        const __m512i zero = _mm512_setzero_si512();
        const __m128i sh = _mm_cvtsi32_si128(k);
        const __m512i lane16 = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2,
                                                1, 0);
        const __m512i lane8 = _mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0);
        const __m512i sd = _mm512_set1_epi64((long long)seed);
        for (; j + 16 <= cols; j += 16) {
            __m512i vu = _mm512_loadu_si512((const void *)(ca + j));
            if (cb) {
                vu = _mm512_add_epi32(vu, _mm512_loadu_si512((const void *)(cb + j)));
                _mm512_storeu_si512((void *)(ub + j), vu);
            }
            __m512i idx = _mm512_add_epi32(_mm512_loadu_si512((const void *)(off + j)), vu);
            __m512i ve = _mm512_i32gather_epi32(idx, (const void *)es, 8);
            _mm512_storeu_si512((void *)(eb + j), ve);
            __mmask16 mk = _mm512_movepi32_mask(ve);
            neg += __builtin_popcount((unsigned)mk);
            vcur = _mm512_add_epi64(vcur, _mm512_cvtepi32_epi64(_mm512_castsi512_si256(vu)));
            vcur = _mm512_add_epi64(vcur, _mm512_cvtepi32_epi64(
                                              _mm512_extracti64x4_epi64(vu, 1)));
            __m512i code = _mm512_sll_epi32(_mm512_max_epi32(ve, zero), sh);
            __m512i c64[2] = {_mm512_cvtepi32_epi64(_mm512_castsi512_si256(code)),
                              _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(code, 1))};
            __mmask16 und = mk;
            if (mk && use_stay) {
                __m512i vst = _mm512_mask_i32gather_epi32(zero, mk, idx,
                                                          (const void *)(es + 1), 8);
                __m512i w[2] = {_mm512_cvtepu32_epi64(_mm512_castsi512_si256(vst)),
                                _mm512_cvtepu32_epi64(_mm512_extracti64x4_epi64(vst, 1))};
                __m512i e2[2] = {_mm512_cvtepi32_epi64(_mm512_castsi512_si256(ve)),
                                 _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(ve, 1))};
                for (int hf = 0; hf < 2; hf++) {
                    __mmask8 m8 = (__mmask8)(mk >> (8 * hf));
                    if (!m8) continue;
                    __m512i ctr = _mm512_add_epi64(
                        _mm512_set1_epi64((long long)(base + (uint64_t)(j + 8 * hf))), lane8);
                    __m512i h = rap_splitmix64_v(_mm512_xor_si512(sd, rap_splitmix64_v(ctr)));
                    __m512i k16 = _mm512_srli_epi64(h, 48);
                    __m512i st = w[hf];
                    __m512i klo = _mm512_and_si512(st, _mm512_set1_epi64(0xFFFF));
                    __m512i khi = _mm512_srli_epi64(st, 16);
                    __mmask8 ok = m8 & _mm512_cmpge_epu64_mask(k16, klo) &
                                  _mm512_cmplt_epu64_mask(k16, khi);
                    if (ok) {
                        __m512i c0 = _mm512_sub_epi64(_mm512_set1_epi64(-1), e2[hf]);
                        c64[hf] = _mm512_mask_mov_epi64(c64[hf], ok, _mm512_sll_epi64(c0, sh));
                        und &= (__mmask16) ~((unsigned)ok << (8 * hf));
                    }
                }
            }
            if (und) { /* compress in a register, one plain store: the masked compress-
                        * store to memory is microcoded and slow on some CPUs (Zen 4) */
                _mm512_storeu_si512((void *)(list + nl), _mm512_maskz_compress_epi32(
                    und, _mm512_add_epi32(lane16, _mm512_set1_epi32((int)j))));
                nl += __builtin_popcount((unsigned)und);
            }
            __m512i a0 = _mm512_loadu_si512((const void *)(at + j));
            __m512i a1 = _mm512_loadu_si512((const void *)(at + j + 8));
            if (sg == 0) {
                a0 = _mm512_add_epi64(a0, c64[0]);
                a1 = _mm512_add_epi64(a1, c64[1]);
            } else {
                a0 = _mm512_sub_epi64(a0, c64[0]);
                a1 = _mm512_sub_epi64(a1, c64[1]);
            }
            _mm512_storeu_si512((void *)(at + j), a0);
            _mm512_storeu_si512((void *)(at + j + 8), a1);
        }
        cur = _mm512_reduce_add_epi64(vcur);
    }
#endif
    for (; j < cols; j++) {
        int32_t uj = cb ? ca[j] + cb[j] : ca[j];
        if (cb) ub[j] = uj;
        int32_t ej = RAP_ENTRY(es, off[j] + uj);
        eb[j] = ej;
        cur += uj;
        int64_t code = (int64_t)(ej & ~(ej >> 31));
        if (ej < 0) {
            neg++;
            uint32_t st = (uint32_t)RAP_STAY(es, off[j] + uj);
            uint32_t k16 =
                (uint32_t)(imc_splitmix64(seed ^ imc_splitmix64(base + (uint64_t)j)) >> 48);
            if (use_stay && k16 >= (st & 0xFFFFu) && k16 < (st >> 16))
                code = -1 - (int64_t)ej;
            else
                list[nl++] = (int32_t)j;
        }
        code <<= k;
        at[j] += sg == 0 ? code : -code;
    }
    *n_unc = neg;
    *n_list = nl;
    RAP_COUNT(0, neg);
    RAP_COUNT(1, neg - nl);
    RAP_COUNT(2, nl);
    return cur;
}

int64_t rap_mvm(const int64_t *x, int64_t n_tok, int64_t n_tiles, int64_t rows, int64_t cols,
                int64_t planes, int64_t k_act, int32_t dense, const int32_t *cells,
                const int32_t *inst_off, const int32_t *col_inst, const double *z,
                const int32_t *es, const double *xss,
                const double *thr, int64_t n_thr, uint64_t seed, int32_t fused, int32_t slow,
                int32_t stay_in_pass, int64_t *acc, int64_t *stats,
                int32_t n_threads) {
    if (!rap_q_ready) return -2;
    const int64_t in_pad = n_tiles * rows;
    int64_t cycles = 0, active = 0, draws = 0, current = 0;
    int failed = 0;
#ifdef _OPENMP
#pragma omp parallel num_threads(n_threads > 0 ? n_threads : 1) \
    reduction(+ : cycles, active, draws, current) reduction(| : failed)
#endif
    {
        int32_t *ub = (int32_t *)malloc(sizeof(int32_t) * (size_t)cols);
        int32_t *eb = (int32_t *)malloc(sizeof(int32_t) * (size_t)cols);
        int32_t *lb = (int32_t *)malloc(sizeof(int32_t) * (size_t)(cols + 16));
        int64_t *row_idx = (int64_t *)malloc(sizeof(int64_t) * (size_t)rows);
        int32_t *zero_row = (int32_t *)calloc((size_t)cols, sizeof(int32_t));
        if (!ub || !eb || !lb || !row_idx || !zero_row) {
            failed = 1;
        } else {
            int in_pass = stay_in_pass == 1;
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
            for (int64_t t = 0; t < n_tok; t++) {
                const int64_t *xt = x + t * in_pad;
                int64_t *restrict at = acc + t * cols;
                for (int64_t tile = 0; tile < n_tiles; tile++) {
                    const int32_t *restrict off = inst_off + tile * cols;
                    const int32_t *restrict ci = col_inst + tile * cols;
                    const double *restrict zt = z + tile * cols;
                    for (int sg = 0; sg < 2; sg++) {
                        const int64_t sign = sg == 0 ? 1 : -1;
                        for (int64_t k = 0; k < planes; k++) {
                            int64_t n_act = 0;
                            for (int64_t r = 0; r < rows; r++) {
                                int64_t m = sign * xt[tile * rows + r];
                                if (m > 0 && ((m >> k) & 1)) row_idx[n_act++] = tile * rows + r;
                            }
                            active += n_act;
                            int64_t n_groups = dense ? 1 : (n_act + k_act - 1) / k_act;
                            int64_t per = dense ? (n_act > 0 ? n_act : 1) : k_act;
                            const int64_t w = sign * ((int64_t)1 << k); /* code weight */
                            for (int64_t g = 0; g < n_groups; g++) {
                                cycles++;
                                int64_t r0 = g * per;
                                int64_t r1 = (g + 1) * per < n_act ? (g + 1) * per : n_act;
                                const int64_t n_g = r1 - r0;
                                const int32_t *restrict ca = n_g > 0 ? cells + row_idx[r0] * cols
                                                                     : zero_row;
                                const int32_t *restrict cb = n_g > 1 ? cells + row_idx[r0 + 1] * cols
                                                                     : NULL;
                                if (n_g > 2) { /* three or more rows: summed first */
                                    for (int64_t j = 0; j < cols; j++) ub[j] = ca[j] + cb[j];
                                    for (int64_t i = r0 + 2; i < r1; i++) {
                                        const int32_t *restrict c = cells + row_idx[i] * cols;
                                        for (int64_t j = 0; j < cols; j++) ub[j] += c[j];
                                    }
                                    ca = ub;
                                    cb = NULL;
                                }
                                /* table entries, certain codes accumulated, sums counted; u
                                 * is the group's column sums (a cell row itself for one row) */
                                const int32_t *restrict u = cb ? ub : ca;
                                int64_t n_unc = 0, n_list = 0;
                                uint64_t gid = (((((uint64_t)t * (uint64_t)n_tiles +
                                                   (uint64_t)tile) * 2u + (uint64_t)sg) *
                                                     (uint64_t)planes + (uint64_t)k) *
                                                    (uint64_t)rows + (uint64_t)g);
                                const uint64_t base = gid * (uint64_t)cols;
                                current += rap_group_pass(ca, cb, ub, off, es, eb, at, cols,
                                                          (int)k, sg, lb, seed, base,
                                                          fused && !slow && in_pass,
                                                          &n_unc, &n_list);
                                if (stay_in_pass == 2) /* auto: follow the last group */
                                    in_pass = n_unc * 20 > cols * 3;
                                const int32_t *restrict e = eb;
                                if (!fused) {
                                    /* every conversion drawn (its certain code undone) */
                                    for (int64_t j = 0; j < cols; j++) {
                                        int32_t ej = e[j];
                                        int64_t c0 = ej >= 0 ? ej : -1 - ej;
                                        int64_t code = rap_draw(xss, thr + ci[j] * n_thr, n_thr,
                                                                u[j], zt[j], c0, seed,
                                                                base + (uint64_t)j,
                                                                (uint32_t)RAP_STAY(es, off[j] + u[j]),
                                                                slow);
                                        at[j] += w * (code - (ej >= 0 ? ej : 0));
                                    }
                                    draws += cols;
                                    continue;
                                }
                                draws += n_unc;
                                if (n_list == 0) continue;
                                int64_t i = 0;
#if defined(__AVX512F__) && defined(__AVX512DQ__)
                                if (!slow) {
                                    for (; i < n_list; i += 8) {
                                        __mmask8 valid = n_list - i >= 8 ? 0xFF
                                            : (__mmask8)((1u << (n_list - i)) - 1u);
                                        __mmask8 rest = valid & ~rap_draw8(
                                            xss, thr, n_thr, u, e, ci, zt, lb + i, seed, base,
                                            valid, w, at);
                                        while (rest) {
                                            int b = __builtin_ctz(rest);
                                            rest &= rest - 1;
                                            int64_t jj = lb[i + b];
                                            at[jj] += w * rap_draw(xss, thr + ci[jj] * n_thr,
                                                                   n_thr, u[jj], zt[jj],
                                                                   -1 - e[jj], seed,
                                                                   base + (uint64_t)jj,
                                                                   (uint32_t)RAP_STAY(es, off[jj] + u[jj]),
                                                                   0);
                                        }
                                    }
                                }
#endif
                                for (; i < n_list; i++) {
                                    int64_t jj = lb[i];
                                    at[jj] += w * rap_draw(xss, thr + ci[jj] * n_thr, n_thr,
                                                           u[jj], zt[jj], -1 - e[jj], seed,
                                                           base + (uint64_t)jj,
                                                           (uint32_t)RAP_STAY(es, off[jj] + u[jj]), slow);
                                }
                            }
                        }
                    }
                }
            }
        }
        free(ub);
        free(eb);
        free(lb);
        free(row_idx);
        free(zero_row);
    }
    stats[0] = cycles;
    stats[1] = active;
    stats[2] = draws;
    stats[3] = current;
    return failed ? -1 : 0;
}
