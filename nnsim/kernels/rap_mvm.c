/* RAP's crossbar MVM on programmed cells, fused (issue 17 item 4): nnsim/rap/crossbar.py and
 * nnsim/rap/sparse_mvm.py in one pass, no temporaries per conversion.
 *
 * For every token t, sign phase, input bit-plane k and array (tile): the active rows (bit 1
 * of the input magnitude) are taken in row order and packed into groups of at most `k_act`
 * rows (sparse; a plane without active rows costs nothing) or one group of all of them
 * (dense: every plane converts, even an empty one). Per group and physical column:
 *
 *   s    = inst_off[tile, col] + sum of the group's programmed cell currents (fixed point)
 *   code = certain[s]                     (ColumnReadout.certain: the certain code or -1)
 *   where code < 0 (or `fused` is 0): one conversion drawn as ColumnReadout._draw does,
 *     x = x0[u] + spread[u] z[tile, col] + sigma[u] n,   n ~ N(0, 1),
 *     code = code0[iu] unless x left x0's bin [t_below, t_above), then the number of the
 *     instance's thresholds <= x (AdcModel.quantize, x clamped to [-1.5, max_code + 1.5]);
 *     iu = s mod (n_inst size), u = s mod size, instance = iu / size;
 *   acc[t, col] += sign * (code << k).
 *
 * Random numbers: counter-based (splitmix64 of the seed and the conversion's coordinates
 * (t, tile, sign, plane, group, column)), Box-Muller; the bits do not depend on the thread
 * count or the order of the work. stats: [cycles, active rows, draws, sum over the
 * conversions of the programmed column sum s - inst_off (the ideal column current at T in
 * fixed-point level units, G_min included)].
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static inline uint64_t splitmix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static inline double gauss(uint64_t seed, uint64_t ctr) {
    uint64_t h1 = splitmix64(seed ^ splitmix64(ctr));
    uint64_t h2 = splitmix64(h1 ^ 0xD1B54A32D192ED03ULL);
    double u1 = ((double)(h1 >> 11) + 1.0) * 0x1.0p-53; /* (0, 1] */
    double u2 = (double)(h2 >> 11) * 0x1.0p-53;         /* [0, 1) */
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

int64_t rap_mvm(const int64_t *x, int64_t n_tok, int64_t n_tiles, int64_t rows, int64_t cols,
                int64_t planes, int64_t k_act, int32_t dense, const int32_t *cells,
                const int32_t *inst_off, const double *z, const int16_t *certain,
                const double *x0, const double *sigma, const double *spread,
                const int16_t *code0, const double *t_below, const double *t_above,
                const double *thr, int64_t n_thr, int64_t size, int64_t n_inst,
                uint64_t seed, int32_t fused, int64_t *acc, int64_t *stats, int32_t n_threads) {
    const int64_t in_pad = n_tiles * rows;
    const int64_t block = n_inst * size;
    const double lo = -1.5, hi = (double)n_thr + 1.5;
    int64_t cycles = 0, active = 0, draws = 0, current = 0;
    int failed = 0;
#ifdef _OPENMP
#pragma omp parallel num_threads(n_threads > 0 ? n_threads : 1) \
    reduction(+ : cycles, active, draws, current) reduction(| : failed)
#endif
    {
        int32_t *sum = (int32_t *)malloc(sizeof(int32_t) * (size_t)cols);
        int64_t *row_idx = (int64_t *)malloc(sizeof(int64_t) * (size_t)rows);
        if (!sum || !row_idx) {
            failed = 1;
        } else {
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
            for (int64_t t = 0; t < n_tok; t++) {
                const int64_t *xt = x + t * in_pad;
                int64_t *at = acc + t * cols;
                for (int64_t tile = 0; tile < n_tiles; tile++) {
                    const int32_t *off = inst_off + tile * cols;
                    const double *zt = z + tile * cols;
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
                            for (int64_t g = 0; g < n_groups; g++) {
                                cycles++;
                                memcpy(sum, off, sizeof(int32_t) * (size_t)cols);
                                int64_t r1 = (g + 1) * per < n_act ? (g + 1) * per : n_act;
                                for (int64_t i = g * per; i < r1; i++) {
                                    const int32_t *c = cells + row_idx[i] * cols;
                                    for (int64_t j = 0; j < cols; j++) sum[j] += c[j];
                                }
                                uint64_t base = ((((uint64_t)t * (uint64_t)n_tiles +
                                                   (uint64_t)tile) * 2u + (uint64_t)sg) *
                                                     (uint64_t)planes + (uint64_t)k) *
                                                    (uint64_t)rows + (uint64_t)g;
                                base *= (uint64_t)cols;
                                for (int64_t j = 0; j < cols; j++) {
                                    int64_t s = sum[j];
                                    current += s - (int64_t)off[j];
                                    int64_t code = fused ? certain[s] : -1;
                                    if (code < 0) {
                                        draws++;
                                        int64_t iu = s % block, u = s % size;
                                        double xv = x0[u] + spread[u] * zt[j];
                                        xv = xv + sigma[u] * gauss(seed, base + (uint64_t)j);
                                        code = code0[iu];
                                        if (xv < t_below[iu] || xv >= t_above[iu]) {
                                            const double *th = thr + (iu / size) * n_thr;
                                            double xc = xv < lo ? lo : (xv > hi ? hi : xv);
                                            int64_t a = 0, b = n_thr; /* count th <= xc */
                                            while (a < b) {
                                                int64_t mid = (a + b) >> 1;
                                                if (th[mid] <= xc) a = mid + 1; else b = mid;
                                            }
                                            code = a;
                                        }
                                    }
                                    at[j] += sign * (code << k);
                                }
                            }
                        }
                    }
                }
            }
        }
        free(sum);
        free(row_idx);
    }
    stats[0] = cycles;
    stats[1] = active;
    stats[2] = draws;
    stats[3] = current;
    return failed ? -1 : 0;
}
