/* CPU convolution kernels (f32, f64): im2col + OpenBLAS GEMM per batch
 * entry and group. Batch entries run on OpenMP threads (each with its own
 * column buffer; OpenBLAS runs single-threaded inside a parallel region);
 * a single entry leaves the threads to OpenBLAS instead. 1x1 convolutions
 * with stride 1 and no padding use the input as the column matrix. The
 * weight gradient sums per-thread partial results in thread order, so it is
 * deterministic for a given thread count. f32 calls go to oneDNN first where
 * it is built and faster (src/cpu/onednn.c). Pooling kernels: src/cpu/pool.c. */
#include <cblas.h>
#include <limits.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/cpu.h"
#include "cpu/onednn.h"


/* Geometry of one conv kernel call (see src/core/ops_conv.def). */
typedef struct geom {
  int64_t N, C, H, W, Co, kh, kw, Ho, Wo, G, Cg, Cog, K, L;
  int64_t sh, sw, ph, pw, dh, dw;
  bool direct; /* 1x1, stride 1, no padding: the input is its own column matrix */
} geom;

static loom_status get_geom(const core_kctx *k, geom *g) {
  const char *op = core_ops[k->op].name;
  const loom_tensor *x, *w, *y;
  switch (k->op) {
    case CORE_OP_conv2d: x = k->in[0], w = k->in[1], y = k->out[0]; break;
    case CORE_OP_conv2d_backward_input: y = k->in[0], w = k->in[1], x = k->out[0]; break;
    default: y = k->in[0], x = k->in[1], w = k->out[0]; break;
  }
  loom_tensor *all[3] = {(loom_tensor *)x, (loom_tensor *)w, (loom_tensor *)y};
  if (cpu_need_contiguous(op, all, 3)) return loom_last_status();
  if (x->dtype != w->dtype || x->dtype != y->dtype || x->shape.ndim != 4 || w->shape.ndim != 4 || y->shape.ndim != 4)
    return core_set_error(LOOM_ERR_INVALID, "%s: expected 4-d operands of one dtype, got x %s %s, w %s %s, y %s %s", op,
                          loom_dtype_name(x->dtype), loom_shape_str(x->shape), loom_dtype_name(w->dtype),
                          loom_shape_str(w->shape), loom_dtype_name(y->dtype), loom_shape_str(y->shape));
  const int64_t *a = k->a.i;
  *g = (geom){x->shape.d[0], x->shape.d[1], x->shape.d[2], x->shape.d[3], w->shape.d[0], w->shape.d[2],
              w->shape.d[3], y->shape.d[2], y->shape.d[3], a[6], w->shape.d[1], 0, 0, 0,
              a[0], a[1], a[2], a[3], a[4], a[5], false};
  bool ok = g->G > 0 && g->sh > 0 && g->sw > 0 && g->ph >= 0 && g->pw >= 0 && g->dh > 0 && g->dw > 0 &&
            g->Co % g->G == 0 && g->C == g->Cg * g->G && y->shape.d[0] == g->N && y->shape.d[1] == g->Co &&
            g->H + 2 * g->ph >= g->dh * (g->kh - 1) + 1 && g->W + 2 * g->pw >= g->dw * (g->kw - 1) + 1;
  ok = ok && g->Ho == (g->H + 2 * g->ph - g->dh * (g->kh - 1) - 1) / g->sh + 1 &&
       g->Wo == (g->W + 2 * g->pw - g->dw * (g->kw - 1) - 1) / g->sw + 1;
  if (!ok)
    return core_set_error(LOOM_ERR_INVALID, "%s: inconsistent geometry x %s, w %s, y %s, groups %lld", op,
                          loom_shape_str(x->shape), loom_shape_str(w->shape), loom_shape_str(y->shape),
                          (long long)g->G);
  g->Cog = g->Co / g->G;
  g->K = g->Cg * g->kh * g->kw;
  g->L = g->Ho * g->Wo;
  if (g->K > INT_MAX || g->L > INT_MAX || g->Cog > INT_MAX)
    return core_set_error(LOOM_ERR_UNSUPPORTED, "%s: matrix sizes %lld x %lld exceed what BLAS takes", op,
                          (long long)g->K, (long long)g->L);
  g->direct = g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1 && g->ph == 0 && g->pw == 0;
  return LOOM_OK;
}

/* The output columns [*lo, *hi) whose input column ow * sw - pw + j * dw
 * (kernel column j) lies inside [0, W): the rest read padding. */
static void valid_cols(const geom *g, int64_t j, int64_t *lo, int64_t *hi) {
  int64_t off = j * g->dw - g->pw; /* iw = ow * sw + off */
  *lo = off >= 0 ? 0 : (-off + g->sw - 1) / g->sw;
  *hi = g->W - off <= 0 ? 0 : (g->W - 1 - off) / g->sw + 1;
  if (*hi > g->Wo) *hi = g->Wo;
  if (*lo > *hi) *lo = *hi;
}

#define CONV_KERNELS(d, GEMM)                                                                                 \
  /* col [K, L] from one group's input planes x [Cg, H, W]: per kernel tap, each output */                    \
  /* row is padding at both ends and a strided run of one input row between them. */                         \
  static void im2col_##d(const geom *g, const CPU_T_##d *x, CPU_T_##d *col) {                               \
    for (int64_t j = 0; j < g->kw; j++) {                                                                     \
      int64_t lo, hi, off = j * g->dw - g->pw;                                                                \
      valid_cols(g, j, &lo, &hi);                                                                             \
      for (int64_t c = 0; c < g->Cg; c++)                                                                     \
        for (int64_t i = 0; i < g->kh; i++) {                                                                 \
          CPU_T_##d *row = col + ((c * g->kh + i) * g->kw + j) * g->L;                                        \
          const CPU_T_##d *plane = x + c * g->H * g->W;                                                       \
          for (int64_t oh = 0; oh < g->Ho; oh++) {                                                            \
            int64_t ih = oh * g->sh - g->ph + i * g->dh;                                                      \
            CPU_T_##d *r = row + oh * g->Wo;                                                                  \
            if (ih < 0 || ih >= g->H) {                                                                       \
              memset(r, 0, (size_t)g->Wo * sizeof *r);                                                        \
              continue;                                                                                       \
            }                                                                                                 \
            const CPU_T_##d *src = plane + ih * g->W;                                                         \
            memset(r, 0, (size_t)lo * sizeof *r);                                                             \
            if (g->sw == 1)                                                                                   \
              memcpy(r + lo, src + lo + off, (size_t)(hi - lo) * sizeof *r);                                  \
            else                                                                                              \
              for (int64_t ow = lo; ow < hi; ow++) r[ow] = src[ow * g->sw + off];                             \
            memset(r + hi, 0, (size_t)(g->Wo - hi) * sizeof *r);                                              \
          }                                                                                                   \
        }                                                                                                     \
    }                                                                                                         \
  }                                                                                                           \
  /* x [Cg, H, W] += the column matrix folded back (x zeroed by the caller) */                                \
  static void col2im_##d(const geom *g, const CPU_T_##d *col, CPU_T_##d *x) {                               \
    for (int64_t j = 0; j < g->kw; j++) {                                                                     \
      int64_t lo, hi, off = j * g->dw - g->pw;                                                                \
      valid_cols(g, j, &lo, &hi);                                                                             \
      for (int64_t c = 0; c < g->Cg; c++)                                                                     \
        for (int64_t i = 0; i < g->kh; i++) {                                                                 \
          const CPU_T_##d *row = col + ((c * g->kh + i) * g->kw + j) * g->L;                                  \
          CPU_T_##d *plane = x + c * g->H * g->W;                                                             \
          for (int64_t oh = 0; oh < g->Ho; oh++) {                                                            \
            int64_t ih = oh * g->sh - g->ph + i * g->dh;                                                      \
            if (ih < 0 || ih >= g->H) continue;                                                               \
            CPU_T_##d *dst = plane + ih * g->W;                                                               \
            const CPU_T_##d *r = row + oh * g->Wo;                                                            \
            if (g->sw == 1)                                                                                   \
              for (int64_t ow = lo; ow < hi; ow++) dst[ow + off] += r[ow];                                    \
            else                                                                                              \
              for (int64_t ow = lo; ow < hi; ow++) dst[ow * g->sw + off] += r[ow];                            \
          }                                                                                                   \
        }                                                                                                     \
    }                                                                                                         \
  }                                                                                                           \
  static loom_status conv2d_##d(const core_kctx *k) {                                                         \
    geom g;                                                                                                   \
    if (get_geom(k, &g) || cpu_blas_room(core_ops[k->op].name)) return loom_last_status();                            \
    const CPU_T_##d *x = core_ptr(k->in[0]), *w = core_ptr(k->in[1]);                                         \
    CPU_T_##d *y = core_ptr(k->out[0]);                                                                       \
    int nth = g.N > 1 ? cpu_blas_threads(cpu_threads()) : 1;                                                                    \
    if (nth > g.N) nth = g.N > 0 ? (int)g.N : 1;                                                              \
    CPU_T_##d *cols = g.direct ? NULL : malloc((size_t)(nth * g.K * g.L) * sizeof *cols + 1);                 \
    if (!g.direct && !cols) return core_set_error(LOOM_ERR_OOM, "conv2d: out of host memory for columns");    \
    int team = cpu_blas_begin((double)g.Cog * g.L * g.K); /* sizes OpenBLAS's own team (N = 1) */             \
    _Pragma("omp parallel for num_threads(nth) schedule(static) if (nth > 1)")                                \
    for (int64_t n = 0; n < g.N; n++) {                                                                       \
      CPU_T_##d *col = cols ? cols + (int64_t)omp_get_thread_num() * g.K * g.L : NULL;                            \
      for (int64_t gr = 0; gr < g.G; gr++) {                                                                  \
        const CPU_T_##d *xg = x + (n * g.C + gr * g.Cg) * g.H * g.W;                                          \
        if (!g.direct) im2col_##d(&g, xg, col);                                                               \
        GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)g.Cog, (int)g.L, (int)g.K, 1, w + gr * g.Cog * g.K, \
             (int)g.K, g.direct ? xg : col, (int)g.L, 0, y + (n * g.Co + gr * g.Cog) * g.L, (int)g.L);        \
      }                                                                                                       \
    }                                                                                                         \
    cpu_blas_end(team);                                                                                       \
    free(cols);                                                                                               \
    return LOOM_OK;                                                                                           \
  }                                                                                                           \
  static loom_status conv2d_bwd_input_##d(const core_kctx *k) {                                               \
    geom g;                                                                                                   \
    if (get_geom(k, &g) || cpu_blas_room(core_ops[k->op].name)) return loom_last_status();                            \
    const CPU_T_##d *gy = core_ptr(k->in[0]), *w = core_ptr(k->in[1]);                                        \
    CPU_T_##d *gx = core_ptr(k->out[0]);                                                                      \
    int nth = g.N > 1 ? cpu_blas_threads(cpu_threads()) : 1;                                                                    \
    if (nth > g.N) nth = g.N > 0 ? (int)g.N : 1;                                                              \
    CPU_T_##d *cols = g.direct ? NULL : malloc((size_t)(nth * g.K * g.L) * sizeof *cols + 1);                 \
    if (!g.direct && !cols) return core_set_error(LOOM_ERR_OOM, "conv2d_backward_input: out of host memory"); \
    int team = cpu_blas_begin((double)g.Cog * g.L * g.K); /* sizes OpenBLAS's own team (N = 1) */             \
    _Pragma("omp parallel for num_threads(nth) schedule(static) if (nth > 1)")                                \
    for (int64_t n = 0; n < g.N; n++) {                                                                       \
      CPU_T_##d *col = cols ? cols + (int64_t)omp_get_thread_num() * g.K * g.L : NULL;                            \
      for (int64_t gr = 0; gr < g.G; gr++) {                                                                  \
        CPU_T_##d *xg = gx + (n * g.C + gr * g.Cg) * g.H * g.W;                                               \
        GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, (int)g.K, (int)g.L, (int)g.Cog, 1, w + gr * g.Cog * g.K, \
             (int)g.K, gy + (n * g.Co + gr * g.Cog) * g.L, (int)g.L, 0, g.direct ? xg : col, (int)g.L);       \
        if (g.direct) continue;                                                                               \
        memset(xg, 0, (size_t)(g.Cg * g.H * g.W) * sizeof *xg);                                               \
        col2im_##d(&g, col, xg);                                                                              \
      }                                                                                                       \
    }                                                                                                         \
    cpu_blas_end(team);                                                                                       \
    free(cols);                                                                                               \
    return LOOM_OK;                                                                                           \
  }                                                                                                           \
  static loom_status conv2d_bwd_weight_##d(const core_kctx *k) {                                              \
    geom g;                                                                                                   \
    if (get_geom(k, &g) || cpu_blas_room(core_ops[k->op].name)) return loom_last_status();                            \
    const CPU_T_##d *gy = core_ptr(k->in[0]), *x = core_ptr(k->in[1]);                                        \
    CPU_T_##d *gw = core_ptr(k->out[0]);                                                                      \
    int nth = g.N > 1 ? cpu_blas_threads(cpu_threads()) : 1;                                                                    \
    if (nth > g.N) nth = g.N > 0 ? (int)g.N : 1;                                                              \
    const int64_t wsize = g.Co * g.K, csize = g.direct ? 0 : g.K * g.L;                                       \
    /* per thread: a partial weight gradient (thread 0 writes gw itself) and a column buffer */              \
    CPU_T_##d *buf = malloc((size_t)(nth * (wsize + csize)) * sizeof *buf + 1);                               \
    if (!buf) return core_set_error(LOOM_ERR_OOM, "conv2d_backward_weight: out of host memory");             \
    int team = cpu_blas_begin((double)g.Cog * g.L * g.K); /* sizes OpenBLAS's own team (N = 1) */             \
    /* The team may be smaller than asked (nested region, OMP_DYNAMIC, thread \
     * limit): split the batch by the team actually running, sum only those. */ \
    int used = 1;                                                                                             \
    _Pragma("omp parallel num_threads(nth) if (nth > 1)") {                                                   \
      int t = omp_get_thread_num(), nt = omp_get_num_threads();                                               \
      if (t == 0) used = nt;                                                                                  \
      CPU_T_##d *acc = t == 0 ? gw : buf + t * wsize, *col = buf + nth * wsize + t * csize;                   \
      memset(acc, 0, (size_t)wsize * sizeof *acc);                                                            \
      int64_t lo = g.N * t / nt, hi = g.N * (t + 1) / nt;                                                     \
      for (int64_t n = lo; n < hi; n++)                                                                       \
        for (int64_t gr = 0; gr < g.G; gr++) {                                                                \
          const CPU_T_##d *xg = x + (n * g.C + gr * g.Cg) * g.H * g.W;                                        \
          if (!g.direct) im2col_##d(&g, xg, col);                                                             \
          GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, (int)g.Cog, (int)g.K, (int)g.L, 1,                    \
               gy + (n * g.Co + gr * g.Cog) * g.L, (int)g.L, g.direct ? xg : col, (int)g.L, 1,                \
               acc + gr * g.Cog * g.K, (int)g.K);                                                             \
        }                                                                                                     \
    }                                                                                                         \
    for (int t = 1; t < used; t++)                                                                            \
      for (int64_t e = 0; e < wsize; e++) gw[e] += buf[t * wsize + e];                                        \
    cpu_blas_end(team);                                                                                       \
    free(buf);                                                                                                \
    return LOOM_OK;                                                                                           \
  }
CONV_KERNELS(f32, cblas_sgemm)
CONV_KERNELS(f64, cblas_dgemm)

/* f32 tries oneDNN first (src/cpu/onednn.c: where it measured faster), these kernels otherwise. */
#define ONEDNN_FIRST(fn) \
  static loom_status fn##_onednn(const core_kctx *k) { loom_status st; return cpu_onednn_conv(k, &st) ? st : fn(k); }
ONEDNN_FIRST(conv2d_f32)
ONEDNN_FIRST(conv2d_bwd_input_f32)
ONEDNN_FIRST(conv2d_bwd_weight_f32)

void cpu_register_conv(void) {
  core_register(LOOM_CPU, CORE_OP_conv2d, LOOM_F32, conv2d_f32_onednn);
  core_register(LOOM_CPU, CORE_OP_conv2d, LOOM_F64, conv2d_f64);
  core_register(LOOM_CPU, CORE_OP_conv2d_backward_input, LOOM_F32, conv2d_bwd_input_f32_onednn);
  core_register(LOOM_CPU, CORE_OP_conv2d_backward_input, LOOM_F64, conv2d_bwd_input_f64);
  core_register(LOOM_CPU, CORE_OP_conv2d_backward_weight, LOOM_F32, conv2d_bwd_weight_f32_onednn);
  core_register(LOOM_CPU, CORE_OP_conv2d_backward_weight, LOOM_F64, conv2d_bwd_weight_f64);
  cpu_register_pool();
}
