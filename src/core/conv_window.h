/* Pooling windows, shared by the CPU and CUDA pooling kernels (C11 and CUDA
 * C++) so that both follow PyTorch's rules exactly. Attributes as in
 * src/core/ops_conv.def (avg_pool2d): a[0..1] kernel, a[2..3] stride,
 * a[4..5] padding, a[6] exclude_pad, a[7] adaptive; max_pool2d: a[0..7]
 * kernel, stride, padding, dilation, adaptive when f[0] != 0. */
#ifndef LOOM_CORE_CONV_WINDOW_H
#define LOOM_CORE_CONV_WINDOW_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __CUDACC__
#define CONV_HD __host__ __device__ __forceinline__
#else
#define CONV_HD static inline
#endif

/* The adaptive window of output o: [floor(o n_in / n_out), ceil((o + 1) n_in / n_out)). */
CONV_HD void conv_adaptive_window(int64_t o, int64_t n_in, int64_t n_out, int64_t *lo, int64_t *hi) {
  *lo = o * n_in / n_out;
  *hi = ((o + 1) * n_in + n_out - 1) / n_out;
}

/* Input range [*lo, *hi) that output o (of n_out) averages along dim j
 * (0 = H, 1 = W) of an input of size n_in; returns the count the divisor
 * uses for that dim: the window clipped to the padded input when padding
 * counts, else the clipped range itself. */
CONV_HD int64_t conv_avg_window(const int64_t *a, int j, int64_t o, int64_t n_in, int64_t n_out, int64_t *lo,
                                int64_t *hi) {
  if (a[7]) {
    conv_adaptive_window(o, n_in, n_out, lo, hi);
    return *hi - *lo;
  }
  int64_t start = o * a[2 + j] - a[4 + j], end = start + a[j];
  if (end > n_in + a[4 + j]) end = n_in + a[4 + j];
  int64_t padded = end - start;
  *lo = start < 0 ? 0 : start;
  *hi = end > n_in ? n_in : end;
  return a[6] ? *hi - *lo : padded;
}

/* Max pooling along dim j for output o: the first input index *start, the
 * number of taps *n and their spacing *step (kernel, stride, padding and
 * dilation, or the adaptive window when adaptive). */
CONV_HD void conv_max_window(const int64_t *a, bool adaptive, int j, int64_t o, int64_t n_in, int64_t n_out,
                             int64_t *start, int64_t *n, int64_t *step) {
  if (adaptive) {
    int64_t hi;
    conv_adaptive_window(o, n_in, n_out, start, &hi);
    *n = hi - *start, *step = 1;
  } else {
    *start = o * a[2 + j] - a[4 + j], *n = a[j], *step = a[6 + j];
  }
}

#endif
