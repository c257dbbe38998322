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

#include "cpu/cpu.h"
#include "cpu/vexp.h"

#define CPU_LANES 16

static inline double cpu_lanes_sum_d(const double *l) {
  double s[CPU_LANES];
  for (int j = 0; j < CPU_LANES; j++) s[j] = l[j];
  for (int w = CPU_LANES / 2; w >= 1; w /= 2)
    for (int j = 0; j < w; j++) s[j] += s[j + w];
  return s[0];
}
static inline float cpu_lanes_sum_f(const float *l) {
  float s[CPU_LANES];
  for (int j = 0; j < CPU_LANES; j++) s[j] = l[j];
  for (int w = CPU_LANES / 2; w >= 1; w /= 2)
    for (int j = 0; j < w; j++) s[j] += s[j + w];
  return s[0];
}

/* T: element type; S: the lanes' suffix (f / d); SEL: a select that keeps
 * the loop branch-free; EXP: exp for T. */
#define CPU_VROW(T, S, SEL, EXP)                                                                          \
  __attribute__((unused)) CPU_CLONES static T cpu_row_max_##S(const T *x, int64_t n) {                    \
    T m[CPU_LANES];                                                                                       \
    for (int j = 0; j < CPU_LANES; j++) m[j] = -INFINITY;                                                 \
    int64_t i = 0;                                                                                        \
    for (; i + CPU_LANES <= n; i += CPU_LANES)                                                            \
      for (int j = 0; j < CPU_LANES; j++) m[j] = SEL((x[i + j] > m[j]) | (x[i + j] != x[i + j]), x[i + j], m[j]); \
    for (int j = 0; i + j < n; j++) m[j] = SEL((x[i + j] > m[j]) | (x[i + j] != x[i + j]), x[i + j], m[j]); \
    T r = m[0];                                                                                           \
    for (int j = 1; j < CPU_LANES; j++) r = (m[j] > r || m[j] != m[j]) ? m[j] : r;                        \
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

static inline double cpu_selectd(int c, double a, double b) { return c ? a : b; }
CPU_VROW(float, f, cpu_selectf, cpu_expf)
CPU_VROW(double, d, cpu_selectd, exp)

#endif
