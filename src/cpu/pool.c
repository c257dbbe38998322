/* CPU pooling kernels (f32, f64): max_pool2d (plain or adaptive), avg_pool2d
 * (with an optional divisor_override) and its backward,
 * one plane of [N, C, H, W] per OpenMP work item. Windows follow PyTorch
 * (src/core/conv_window.h); registered by cpu_register_conv. */
#include <string.h>

#include "core/conv_window.h"
#include "cpu/cpu.h"

/* Checks x / y (in any order) are contiguous 4-d tensors with the same N, C. */
static loom_status check_planes(const core_kctx *k, const loom_tensor *x, const loom_tensor *y) {
  const char *op = core_ops[k->op].name;
  loom_tensor *all[2] = {(loom_tensor *)x, (loom_tensor *)y};
  if (cpu_need_contiguous(op, all, 2)) return loom_last_status();
  if (x->shape.ndim != 4 || y->shape.ndim != 4 || x->shape.d[0] != y->shape.d[0] || x->shape.d[1] != y->shape.d[1] ||
      x->dtype != y->dtype)
    return core_set_error(LOOM_ERR_INVALID, "%s: expected [N, C, H, W] operands of one dtype, got %s %s and %s %s", op,
                          loom_dtype_name(x->dtype), loom_shape_str(x->shape), loom_dtype_name(y->dtype),
                          loom_shape_str(y->shape));
  for (int j = 0; j < 6 && k->op == CORE_OP_max_pool2d; j++)
    if (k->a.i[j] < (j >= 4 ? 0 : 1) || k->a.i[6] < 1 || k->a.i[7] < 1)
      return core_set_error(LOOM_ERR_INVALID, "%s: bad kernel / stride / padding / dilation", op);
  if (k->op != CORE_OP_max_pool2d && !k->a.i[7] && (k->a.i[0] < 1 || k->a.i[1] < 1 || k->a.i[2] < 1 || k->a.i[3] < 1))
    return core_set_error(LOOM_ERR_INVALID, "%s: bad kernel / stride", op);
  return LOOM_OK;
}

#define POOL_KERNELS(DT)                                                                                       \
  static loom_status max_pool2d_##DT(const core_kctx *k) {                                                     \
    const loom_tensor *xt = k->in[0], *yt = k->out[0];                                                        \
    if (check_planes(k, xt, yt)) return loom_last_status();                                                   \
    if (k->out[1]->dtype != LOOM_I64 || !loom_shape_equal(k->out[1]->shape, yt->shape))                        \
      return core_set_error(LOOM_ERR_INVALID, "max_pool2d: indices must be i64 of the output's shape");       \
    const int64_t *a = k->a.i, H = xt->shape.d[2], W = xt->shape.d[3], Ho = yt->shape.d[2], Wo = yt->shape.d[3]; \
    const int64_t planes = xt->shape.d[0] * xt->shape.d[1];                                                   \
    const bool adaptive = k->a.f[0] != 0;                                                                     \
    const CPU_T_##DT *x = core_ptr(xt);                                                                        \
    CPU_T_##DT *y = core_ptr(yt);                                                                              \
    int64_t *idx = core_ptr(k->out[1]);                                                                       \
    _Pragma("omp parallel for num_threads(cpu_threads()) schedule(static) if (planes * Ho * Wo * a[0] * a[1] > CPU_PARALLEL_MIN)") \
    for (int64_t p = 0; p < planes; p++) {                                                                    \
      const CPU_T_##DT *xp = x + p * H * W;                                                                    \
      for (int64_t oh = 0; oh < Ho; oh++)                                                                     \
        for (int64_t ow = 0; ow < Wo; ow++) {                                                                 \
          int64_t h0, nh, dh, w0, nw, dw, best = -1;                                                          \
          conv_max_window(a, adaptive, 0, oh, H, Ho, &h0, &nh, &dh);                                          \
          conv_max_window(a, adaptive, 1, ow, W, Wo, &w0, &nw, &dw);                                          \
          CPU_T_##DT m = -INFINITY;                                                                            \
          for (int64_t i = 0; i < nh; i++) {                                                                  \
            int64_t ih = h0 + i * dh;                                                                         \
            if (ih < 0 || ih >= H) continue;                                                                  \
            for (int64_t j = 0; j < nw; j++) {                                                                \
              int64_t iw = w0 + j * dw;                                                                       \
              if (iw < 0 || iw >= W) continue;                                                                \
              CPU_T_##DT v = xp[ih * W + iw];                                                                  \
              /* the first in-range element starts it; a NaN wins (PyTorch) */                                \
              if (best < 0 || v > m || v != v) m = v, best = ih * W + iw;                                     \
            }                                                                                                 \
          }                                                                                                   \
          y[(p * Ho + oh) * Wo + ow] = m;                                                                     \
          idx[(p * Ho + oh) * Wo + ow] = best < 0 ? 0 : best;                                                 \
        }                                                                                                     \
    }                                                                                                         \
    return LOOM_OK;                                                                                           \
  }                                                                                                           \
  static loom_status avg_pool2d_##DT(const core_kctx *k) {                                                     \
    const loom_tensor *xt = k->in[0], *yt = k->out[0];                                                        \
    if (check_planes(k, xt, yt)) return loom_last_status();                                                   \
    const int64_t *a = k->a.i, H = xt->shape.d[2], W = xt->shape.d[3], Ho = yt->shape.d[2], Wo = yt->shape.d[3]; \
    const int64_t planes = xt->shape.d[0] * xt->shape.d[1];                                                   \
    const double div = k->a.f[0]; /* divisor_override; 0: the window's count */                              \
    const CPU_T_##DT *x = core_ptr(xt);                                                                        \
    CPU_T_##DT *y = core_ptr(yt);                                                                              \
    _Pragma("omp parallel for num_threads(cpu_threads()) schedule(static) if (planes * H * W > CPU_PARALLEL_MIN)") \
    for (int64_t p = 0; p < planes; p++) {                                                                    \
      const CPU_T_##DT *xp = x + p * H * W;                                                                    \
      for (int64_t oh = 0; oh < Ho; oh++) {                                                                   \
        int64_t h0, h1, cw, w0, w1, ch = conv_avg_window(a, 0, oh, H, Ho, &h0, &h1);                          \
        for (int64_t ow = 0; ow < Wo; ow++) {                                                                 \
          cw = conv_avg_window(a, 1, ow, W, Wo, &w0, &w1);                                                    \
          double s = 0;                                                                                       \
          for (int64_t ih = h0; ih < h1; ih++)                                                                \
            for (int64_t iw = w0; iw < w1; iw++) s += xp[ih * W + iw];                                        \
          y[(p * Ho + oh) * Wo + ow] = ch * cw > 0 ? (CPU_T_##DT)(s / (div ? div : (double)(ch * cw))) : 0;    \
        }                                                                                                     \
      }                                                                                                       \
    }                                                                                                         \
    return LOOM_OK;                                                                                           \
  }                                                                                                           \
  static loom_status avg_pool2d_backward_##DT(const core_kctx *k) {                                            \
    const loom_tensor *gyt = k->in[0], *gxt = k->out[0];                                                      \
    if (check_planes(k, gxt, gyt)) return loom_last_status();                                                 \
    const int64_t *a = k->a.i, H = gxt->shape.d[2], W = gxt->shape.d[3], Ho = gyt->shape.d[2];                \
    const int64_t Wo = gyt->shape.d[3], planes = gxt->shape.d[0] * gxt->shape.d[1];                           \
    const double div = k->a.f[0];                                                                             \
    const CPU_T_##DT *gy = core_ptr(gyt);                                                                      \
    CPU_T_##DT *gx = core_ptr(gxt);                                                                            \
    _Pragma("omp parallel for num_threads(cpu_threads()) schedule(static) if (planes * H * W > CPU_PARALLEL_MIN)") \
    for (int64_t p = 0; p < planes; p++) {                                                                    \
      CPU_T_##DT *gp = gx + p * H * W;                                                                         \
      memset(gp, 0, (size_t)(H * W) * sizeof *gp);                                                            \
      for (int64_t oh = 0; oh < Ho; oh++) {                                                                   \
        int64_t h0, h1, cw, w0, w1, ch = conv_avg_window(a, 0, oh, H, Ho, &h0, &h1);                          \
        for (int64_t ow = 0; ow < Wo; ow++) {                                                                 \
          cw = conv_avg_window(a, 1, ow, W, Wo, &w0, &w1);                                                    \
          if (ch * cw <= 0) continue;                                                                         \
          CPU_T_##DT v = gy[(p * Ho + oh) * Wo + ow] / (CPU_T_##DT)(div ? div : (double)(ch * cw));             \
          for (int64_t ih = h0; ih < h1; ih++)                                                                \
            for (int64_t iw = w0; iw < w1; iw++) gp[ih * W + iw] += v;                                        \
        }                                                                                                     \
      }                                                                                                       \
    }                                                                                                         \
    return LOOM_OK;                                                                                           \
  }
POOL_KERNELS(f32)
POOL_KERNELS(f64)

void cpu_register_pool(void) {
  core_register(LOOM_CPU, CORE_OP_max_pool2d, LOOM_F32, max_pool2d_f32);
  core_register(LOOM_CPU, CORE_OP_max_pool2d, LOOM_F64, max_pool2d_f64);
  core_register(LOOM_CPU, CORE_OP_avg_pool2d, LOOM_F32, avg_pool2d_f32);
  core_register(LOOM_CPU, CORE_OP_avg_pool2d, LOOM_F64, avg_pool2d_f64);
  core_register(LOOM_CPU, CORE_OP_avg_pool2d_backward, LOOM_F32, avg_pool2d_backward_f32);
  core_register(LOOM_CPU, CORE_OP_avg_pool2d_backward, LOOM_F64, avg_pool2d_backward_f64);
}
