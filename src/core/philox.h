/* Philox4x32-10, shared by the CPU and CUDA kernels so that both produce the
 * same random numbers. Mapping (element k of a tensor of n elements, with the
 * generator's seed and counter offset):
 *   uniform, randint: counter = offset + k / 4, lane k % 4
 *   normal:           counter = offset + k / 2, lanes 2*(k%2), 2*(k%2)+1 (Box-Muller)
 * Counter blocks used: uniform/randint ceil(n/4), normal ceil(n/2). */
#ifndef LOOM_CORE_PHILOX_H
#define LOOM_CORE_PHILOX_H

#include <stdint.h>

#if defined(__CUDACC__)
#define LOOM_HD __host__ __device__ __forceinline__
#else
#define LOOM_HD static inline
#endif

typedef struct core_u32x4 { uint32_t v[4]; } core_u32x4;

LOOM_HD uint32_t core_mulhilo(uint32_t a, uint32_t b, uint32_t *hi) {
  uint64_t p = (uint64_t)a * (uint64_t)b;
  *hi = (uint32_t)(p >> 32);
  return (uint32_t)p;
}

LOOM_HD core_u32x4 core_philox(uint64_t seed, uint64_t counter) {
  uint32_t c0 = (uint32_t)counter, c1 = (uint32_t)(counter >> 32), c2 = 0, c3 = 0;
  uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
  for (int r = 0; r < 10; r++) {
    uint32_t hi0, hi1;
    uint32_t lo0 = core_mulhilo(0xD2511F53u, c0, &hi0);
    uint32_t lo1 = core_mulhilo(0xCD9E8D57u, c2, &hi1);
    uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
    c0 = n0; c1 = lo1; c2 = n2; c3 = lo0;
    k0 += 0x9E3779B9u; k1 += 0xBB67AE85u;
  }
  core_u32x4 out = {{c0, c1, c2, c3}};
  return out;
}

/* 24 random bits -> [0, 1) */
LOOM_HD float core_u01(uint32_t x) { return (float)(x >> 8) * (1.0f / 16777216.0f); }
/* 24 random bits -> (0, 1] */
LOOM_HD float core_u01_open0(uint32_t x) { return (float)((x >> 8) + 1) * (1.0f / 16777216.0f); }

#endif
