/* Fused bit-mode readout of nnsim.analog.mvm (issue 17), and the generator it draws from.
 *
 * Built and loaded by nnsim.kernels.load("readout"); see rng.h for the random numbers.
 */
#include <stddef.h>
#include <stdint.h>

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
