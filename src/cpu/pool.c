/* CPU pooling kernels (f32, f64): max_pool2d (plain or adaptive) and its
 * backward, avg_pool2d (with an optional divisor_override) and its backward,
 * one plane of [N, C, H, W] per OpenMP work item. Windows follow PyTorch
 * (src/core/conv_window.h); registered by cpu_register_conv. */
#include <stdint.h>
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
  const bool is_max = k->op == CORE_OP_max_pool2d || k->op == CORE_OP_max_pool2d_backward;
  for (int j = 0; j < 6 && is_max; j++)
    if (k->a.i[j] < (j >= 4 ? 0 : 1) || k->a.i[6] < 1 || k->a.i[7] < 1)
      return core_set_error(LOOM_ERR_INVALID, "%s: bad kernel / stride / padding / dilation", op);
  if (!is_max && !k->a.i[7] && (k->a.i[0] < 1 || k->a.i[1] < 1 || k->a.i[2] < 1 || k->a.i[3] < 1))
    return core_set_error(LOOM_ERR_INVALID, "%s: bad kernel / stride", op);
  return LOOM_OK;
}

/* One max-pool window (a NaN wins, else the first of ties, as in PyTorch): rows
 * [h0, h1) and columns [w0, w1) of plane xp, all inside it; *best = -1 when empty. */
#define MAX_WINDOW(DT, T)                                                                                      \
  static inline T max_window_##DT(const T *xp, int64_t W, int64_t h0, int64_t h1, int64_t w0, int64_t w1,      \
                                 int64_t *best) {                                                            \
    T m = -INFINITY;                                                                                         \
    int64_t b = -1;                                                                                          \
    for (int64_t ih = h0; ih < h1; ih++)                                                                     \
      for (int64_t iw = w0; iw < w1; iw++) {                                                                 \
        T v = xp[ih * W + iw];                                                                               \
        if (b < 0 || v > m || v != v) m = v, b = ih * W + iw;                                                \
      }                                                                                                      \
    *best = b;                                                                                               \
    return m;                                                                                                \
  }
MAX_WINDOW(f32, float)
MAX_WINDOW(f64, double)

/* n outputs of 2x2 stride-2 windows over input rows r0, r1 (row h0 of a plane
 * W wide): the same order and NaN rule as max_window, without branches so
 * that it vectorises. */
#define MAX2X2_ROW(DT, T)                                                                                    \
  CPU_CLONES static void max2x2_row_##DT(const T *r0, const T *r1, int64_t n, T *y, int64_t *idx, int64_t h0,  \
                                         int64_t W) {                                                        \
    for (int64_t ow = 0; ow < n; ow++) {                                                                     \
      T m = r0[2 * ow], v = r0[2 * ow + 1];                                                                  \
      int64_t at = 0, t = (v > m) | (v != v);                                                                \
      m = t ? v : m, at = t ? 1 : at;                                                                        \
      v = r1[2 * ow], t = (v > m) | (v != v);                                                                \
      m = t ? v : m, at = t ? W : at;                                                                        \
      v = r1[2 * ow + 1], t = (v > m) | (v != v);                                                            \
      m = t ? v : m, at = t ? W + 1 : at;                                                                    \
      y[ow] = m;                                                                                             \
      idx[ow] = h0 * W + 2 * ow + at;                                                                        \
    }                                                                                                        \
  }
MAX2X2_ROW(f32, float)
MAX2X2_ROW(f64, double)

#define POOL_KERNELS(DT)                                                                                       \
  /* Windows with dilation (or adaptive ones): taps with run-time spacing, each checked. */                   \
  static void max_plane_general_##DT(const int64_t *a, bool adaptive, const CPU_T_##DT *xp, int64_t H, int64_t W, \
                                     int64_t Ho, int64_t Wo, CPU_T_##DT *y, int64_t *idx) {                  \
    for (int64_t oh = 0; oh < Ho; oh++)                                                                       \
      for (int64_t ow = 0; ow < Wo; ow++) {                                                                   \
        int64_t h0, nh, dh, w0, nw, dw, best = -1;                                                            \
        conv_max_window(a, adaptive, 0, oh, H, Ho, &h0, &nh, &dh);                                            \
        conv_max_window(a, adaptive, 1, ow, W, Wo, &w0, &nw, &dw);                                            \
        CPU_T_##DT m = -INFINITY;                                                                              \
        for (int64_t i = 0; i < nh; i++) {                                                                    \
          int64_t ih = h0 + i * dh;                                                                           \
          if (ih < 0 || ih >= H) continue;                                                                    \
          for (int64_t j = 0; j < nw; j++) {                                                                  \
            int64_t iw = w0 + j * dw;                                                                         \
            if (iw < 0 || iw >= W) continue;                                                                  \
            CPU_T_##DT v = xp[ih * W + iw];                                                                    \
            if (best < 0 || v > m || v != v) m = v, best = ih * W + iw;                                       \
          }                                                                                                   \
        }                                                                                                     \
        y[oh * Wo + ow] = m;                                                                                  \
        idx[oh * Wo + ow] = best < 0 ? 0 : best;                                                              \
      }                                                                                                       \
  }                                                                                                           \
  /* Dense windows (dilation 1): each window clipped to the plane once, no check per tap; */                  \
  /* 2x2 windows with stride 2 inside the plane take four loads in a fixed order. */                          \
  static void max_plane_dense_##DT(const int64_t *a, const CPU_T_##DT *xp, int64_t H, int64_t W, int64_t Ho,   \
                                   int64_t Wo, CPU_T_##DT *y, int64_t *idx) {                                \
    const int64_t kh = a[0], kw = a[1], sh = a[2], sw = a[3], ph = a[4], pw = a[5];                           \
    for (int64_t oh = 0; oh < Ho; oh++) {                                                                     \
      int64_t h0 = oh * sh - ph, h1 = h0 + kh, ow = 0;                                                        \
      h0 = h0 < 0 ? 0 : h0, h1 = h1 > H ? H : h1;                                                             \
      CPU_T_##DT *yr = y + oh * Wo;                                                                            \
      int64_t *ir = idx + oh * Wo;                                                                            \
      if (kh == 2 && kw == 2 && sh == 2 && sw == 2 && ph == 0 && pw == 0 && h1 - h0 == 2) {                   \
        ow = Wo < W / 2 ? Wo : W / 2;                                                                         \
        max2x2_row_##DT(xp + h0 * W, xp + (h0 + 1) * W, ow, yr, ir, h0, W);                                  \
      }                                                                                                       \
      for (; ow < Wo; ow++) {                                                                                 \
        int64_t w0 = ow * sw - pw, w1 = w0 + kw, best;                                                        \
        w0 = w0 < 0 ? 0 : w0, w1 = w1 > W ? W : w1;                                                           \
        yr[ow] = max_window_##DT(xp, W, h0, h1, w0, w1, &best);                                           \
        ir[ow] = best < 0 ? 0 : best;                                                                         \
      }                                                                                                       \
    }                                                                                                         \
  }                                                                                                           \
  static loom_status max_pool2d_##DT(const core_kctx *k) {                                                     \
    const loom_tensor *xt = k->in[0], *yt = k->out[0];                                                        \
    if (check_planes(k, xt, yt)) return loom_last_status();                                                   \
    if (k->out[1]->dtype != LOOM_I64 || !loom_shape_equal(k->out[1]->shape, yt->shape))                        \
      return core_set_error(LOOM_ERR_INVALID, "max_pool2d: indices must be i64 of the output's shape");       \
    const int64_t *a = k->a.i, H = xt->shape.d[2], W = xt->shape.d[3], Ho = yt->shape.d[2], Wo = yt->shape.d[3]; \
    const int64_t planes = xt->shape.d[0] * xt->shape.d[1];                                                   \
    const bool adaptive = k->a.f[0] != 0, dense = !adaptive && a[6] == 1 && a[7] == 1;                        \
    const CPU_T_##DT *x = core_ptr(xt);                                                                        \
    CPU_T_##DT *y = core_ptr(yt);                                                                              \
    int64_t *idx = core_ptr(k->out[1]);                                                                       \
    _Pragma("omp parallel for num_threads(cpu_threads()) schedule(static) if (planes * Ho * Wo * a[0] * a[1] > CPU_PARALLEL_MIN)") \
    for (int64_t p = 0; p < planes; p++) {                                                                    \
      if (dense)                                                                                              \
        max_plane_dense_##DT(a, x + p * H * W, H, W, Ho, Wo, y + p * Ho * Wo, idx + p * Ho * Wo);             \
      else                                                                                                    \
        max_plane_general_##DT(a, adaptive, x + p * H * W, H, W, Ho, Wo, y + p * Ho * Wo, idx + p * Ho * Wo); \
    }                                                                                                         \
    return LOOM_OK;                                                                                           \
  }                                                                                                           \
  /* gx = 0, then every gy added at its index, plane by plane (deterministic). */                             \
  static loom_status max_pool2d_backward_##DT(const core_kctx *k) {                                            \
    const loom_tensor *gyt = k->in[0], *it = k->in[1], *gxt = k->out[0];                                      \
    if (check_planes(k, gxt, gyt)) return loom_last_status();                                                 \
    if (it->dtype != LOOM_I64 || !loom_shape_equal(it->shape, gyt->shape) || !core_is_contiguous(it))          \
      return core_set_error(LOOM_ERR_INVALID, "max_pool2d_backward: indices must be contiguous i64 of the "    \
                            "gradient's shape %s, got %s %s", loom_shape_str(gyt->shape),                     \
                            loom_dtype_name(it->dtype), loom_shape_str(it->shape));                           \
    const int64_t HW = gxt->shape.d[2] * gxt->shape.d[3], L = gyt->shape.d[2] * gyt->shape.d[3];             \
    const int64_t planes = gxt->shape.d[0] * gxt->shape.d[1];                                                 \
    const CPU_T_##DT *gy = core_ptr(gyt);                                                                      \
    const int64_t *idx = core_ptr(it);                                                                        \
    CPU_T_##DT *gx = core_ptr(gxt);                                                                            \
    int64_t bad = INT64_MIN;                                                                                      \
    _Pragma("omp parallel for num_threads(cpu_threads()) schedule(static) if (planes * (HW + L) > CPU_PARALLEL_MIN)") \
    for (int64_t p = 0; p < planes; p++) {                                                                    \
      CPU_T_##DT *gp = gx + p * HW;                                                                            \
      const CPU_T_##DT *gq = gy + p * L;                                                                       \
      const int64_t *ip = idx + p * L;                                                                        \
      memset(gp, 0, (size_t)HW * sizeof *gp);                                                                 \
      for (int64_t o = 0; o < L; o++) {                                                                       \
        if ((uint64_t)ip[o] >= (uint64_t)HW) {                                                                \
          _Pragma("omp atomic write") bad = ip[o];                                                            \
          continue;                                                                                           \
        }                                                                                                     \
        gp[ip[o]] += gq[o];                                                                                   \
      }                                                                                                       \
    }                                                                                                         \
    if (bad != INT64_MIN)                                                                                     \
      return core_set_error(LOOM_ERR_INVALID, "max_pool2d_backward: index %lld is outside the input plane of " \
                            "%lld elements", (long long)bad, (long long)HW);                                  \
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
  core_register(LOOM_CPU, CORE_OP_max_pool2d_backward, LOOM_F32, max_pool2d_backward_f32);
  core_register(LOOM_CPU, CORE_OP_max_pool2d_backward, LOOM_F64, max_pool2d_backward_f64);
}
