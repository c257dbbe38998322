/* Row reductions that vectorise: CPU_LANES independent partial results per
 * row, combined pairwise in a fixed order (so a result depends only on the
 * row, not on the thread count). f32 rows accumulate in f32 lanes: callers
 * whose rows are long (batch-norm channels) add row results in double.
 * Each function is compiled for AVX2 and plain x86-64 (CPU_CLONES) and called
 * once per row, so the dispatch costs nothing measurable.
 *   max:     the largest element, NaN if any is NaN, -inf for an empty row
 *   sum:     sum of x
 *   sum_exp: sum of exp(x - shift) (cpu_expf for f32)
 *   dot:     sum of a * b
 *   sq_dev:  sum of (x - m)^2 */
#ifndef LOOM_CPU_VROW_H
#define LOOM_CPU_VROW_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "cpu/cpu.h"
#include "cpu/vexp.h"

#define CPU_LANES 16

/* GCC vector types for the max, whose NaN rule (x > m || x != x) the loop
 * vectoriser does not take from scalar code: 32 bytes, two per step. */
typedef float cpu_vf __attribute__((vector_size(32)));
typedef int32_t cpu_vfi __attribute__((vector_size(32)));
typedef double cpu_vd __attribute__((vector_size(32)));
typedef int64_t cpu_vdi __attribute__((vector_size(32)));

/* T: element type; S: the lanes' suffix (f / d); EXP: exp for T. */
#define CPU_VROW(T, S, EXP)                                                                               \
  /* the lanes added pairwise in a fixed order */                                                         \
  static inline T cpu_lanes_sum_##S(const T *l) {                                                         \
    T s[CPU_LANES];                                                                                       \
    for (int j = 0; j < CPU_LANES; j++) s[j] = l[j];                                                      \
    for (int w = CPU_LANES / 2; w >= 1; w /= 2)                                                           \
      for (int j = 0; j < w; j++) s[j] += s[j + w];                                                       \
    return s[0];                                                                                          \
  }                                                                                                       \
  __attribute__((unused)) CPU_CLONES static T cpu_row_max_##S(const T *x, int64_t n) {                    \
    enum { W = 32 / sizeof(T) };                                                                          \
    cpu_v##S m0, m1;                                                                                      \
    for (int j = 0; j < W; j++) m0[j] = m1[j] = -INFINITY;                                                \
    int64_t i = 0;                                                                                        \
    for (; i + 2 * W <= n; i += 2 * W) {                                                                  \
      cpu_v##S a, b;                                                                                      \
      memcpy(&a, x + i, sizeof a);                                                                        \
      memcpy(&b, x + i + W, sizeof b);                                                                    \
      cpu_v##S##i sa = (a > m0) | (a != a), sb = (b > m1) | (b != b);                                     \
      m0 = (cpu_v##S)(((cpu_v##S##i)a & sa) | ((cpu_v##S##i)m0 & ~sa));                                   \
      m1 = (cpu_v##S)(((cpu_v##S##i)b & sb) | ((cpu_v##S##i)m1 & ~sb));                                   \
    }                                                                                                     \
    T r = -INFINITY;                                                                                      \
    for (int j = 0; j < W; j++) {                                                                         \
      if (m0[j] > r || m0[j] != m0[j]) r = m0[j];                                                         \
      if (m1[j] > r || m1[j] != m1[j]) r = m1[j];                                                         \
    }                                                                                                     \
    for (; i < n; i++)                                                                                    \
      if (x[i] > r || x[i] != x[i]) r = x[i];                                                             \
    return r;                                                                                             \
  }                                                                                                       \
  __attribute__((unused)) CPU_CLONES static T cpu_row_sum_##S(const T *x, int64_t n) {                    \
    T l[CPU_LANES] = {0};                                                                                 \
    int64_t i = 0;                                                                                        \
    for (; i + CPU_LANES <= n; i += CPU_LANES)                                                            \
      for (int j = 0; j < CPU_LANES; j++) l[j] += x[i + j];                                               \
    for (int j = 0; i + j < n; j++) l[j] += x[i + j];                                                     \
    return cpu_lanes_sum_##S(l);                                                                          \
  }                                                                                                       \
  __attribute__((unused)) CPU_CLONES static T cpu_row_sum_exp_##S(const T *x, int64_t n, T shift) {       \
    T l[CPU_LANES] = {0};                                                                                 \
    int64_t i = 0;                                                                                        \
    for (; i + CPU_LANES <= n; i += CPU_LANES)                                                            \
      for (int j = 0; j < CPU_LANES; j++) l[j] += EXP(x[i + j] - shift);                                  \
    for (int j = 0; i + j < n; j++) l[j] += EXP(x[i + j] - shift);                                        \
    return cpu_lanes_sum_##S(l);                                                                          \
  }                                                                                                       \
  __attribute__((unused)) CPU_CLONES static T cpu_row_dot_##S(const T *a, const T *b, int64_t n) {        \
    T l[CPU_LANES] = {0};                                                                                 \
    int64_t i = 0;                                                                                        \
    for (; i + CPU_LANES <= n; i += CPU_LANES)                                                            \
      for (int j = 0; j < CPU_LANES; j++) l[j] += a[i + j] * b[i + j];                                    \
    for (int j = 0; i + j < n; j++) l[j] += a[i + j] * b[i + j];                                          \
    return cpu_lanes_sum_##S(l);                                                                          \
  }                                                                                                       \
  __attribute__((unused)) CPU_CLONES static T cpu_row_sq_dev_##S(const T *x, int64_t n, T m) {            \
    T l[CPU_LANES] = {0};                                                                                 \
    int64_t i = 0;                                                                                        \
    for (; i + CPU_LANES <= n; i += CPU_LANES)                                                            \
      for (int j = 0; j < CPU_LANES; j++) l[j] += (x[i + j] - m) * (x[i + j] - m);                        \
    for (int j = 0; i + j < n; j++) l[j] += (x[i + j] - m) * (x[i + j] - m);                              \
    return cpu_lanes_sum_##S(l);                                                                          \
  }

CPU_VROW(float, f, cpu_expf)
CPU_VROW(double, d, exp)

#endif
