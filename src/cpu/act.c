/* CPU kernels of the act family: leaky_relu, elu, gelu, silu and their fused
 * backward ops (and relu's) (elementwise, attributes in the kernel context), and softmax /
 * log_softmax with their backward ops over a contiguous [O, R, I] view. */
#include <tgmath.h>
#undef I /* complex.h's imaginary unit: I is a size here */

#include "cpu/iter.h"
#include "cpu/vexp.h"
#include "cpu/vrow.h"

#define ATTR_F (((const core_kctx *)ctx)->a.f[0])
#define SQRT_2_OVER_PI 0.79788456080286535588
#define INV_SQRT_2 0.70710678118654752440
#define INV_SQRT_2PI 0.39894228040143267794
#define GELU_C 0.044715

/* gelu, tanh form: 0.5 x (1 + tanh u) = x sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3).
 * f32 computes sigmoid(v) from e = exp(-|v|) (cpu_expf, vectorised; no overflow, no
 * cancellation where tanh u is near -1): d = 1 / (1 + e), sigmoid(v) = d for v >= 0 and
 * e d below, and sigmoid(v) (1 - sigmoid(v)) = e d^2 either way. NaN stays NaN; like
 * the libm form (and PyTorch), gelu(-inf) is NaN (-inf * 0). */
static inline float gelu_tanhf(float x) {
  float v = (float)(2 * SQRT_2_OVER_PI) * (x + (float)GELU_C * x * x * x);
  float e = cpu_expf(-fabsf(v)), d = 1 / (1 + e);
  return x * cpu_selectf(v >= 0, d, e * d);
}
static inline float gelu_tanh_gradf(float x) {
  /* beyond +-20 the derivative is 1 or 0 in f32; clamping keeps x * e * dv from inf * 0 */
  x = cpu_selectf(x < -20.0f, -20.0f, x);
  x = cpu_selectf(x > 20.0f, 20.0f, x);
  float v = (float)(2 * SQRT_2_OVER_PI) * (x + (float)GELU_C * x * x * x);
  float e = cpu_expf(-fabsf(v)), d = 1 / (1 + e);
  float dv = (float)(2 * SQRT_2_OVER_PI) * (1 + 3 * (float)GELU_C * x * x);
  return cpu_selectf(v >= 0, d, e * d) + x * e * d * d * dv;
}
/* gelu, erf form: x Phi(x), Phi the normal CDF. f32 takes Phi from erfc (no libm
 * call, so the loops vectorise): erfc(z) = t exp(-z^2 + P(t)), t = 1 / (1 + z / 2),
 * z >= 0, P the Chebyshev fit of Numerical Recipes (fractional error below
 * 1.2e-7 everywhere; exp(-z^2) is split so that z^2 is not rounded);
 * Phi(x) = erfc(|x| / sqrt 2) / 2 below 0 and one minus it
 * above, so Phi keeps its relative accuracy in the left tail, where 1 + erf(x)
 * would cancel. NaN stays NaN; gelu(-inf) is NaN (-inf * 0), as in PyTorch. */
static inline float normal_cdff(float x) {
  float z = fabsf(x) * (float)INV_SQRT_2, t = 1 / (1 + 0.5f * z);
  float p = 0.17087277f;
  p = p * t - 0.82215223f;
  p = p * t + 1.48851587f;
  p = p * t - 1.13520398f;
  p = p * t + 0.27886807f;
  p = p * t - 0.18628806f;
  p = p * t + 0.09678418f;
  p = p * t + 0.37409196f;
  p = p * t + 1.00002368f;
  p = p * t - 1.26551223f;
  /* exp(-z^2) = exp(-x^2 / 2) as exp(-xh^2 / 2) exp(-(a - xh)(a + xh) / 2), a = |x|,
   * xh = a to 12 bits so xh^2 is exact: a rounded z or z^2 would cost eps z^2 of
   * relative accuracy in the tail */
  float a = fabsf(x), xh;
  uint32_t ab;
  memcpy(&ab, &a, sizeof ab);
  ab &= 0xfffff000u;
  memcpy(&xh, &ab, sizeof xh);
  float half_erfc = 0.5f * t * cpu_expf(-0.5f * xh * xh) * cpu_expf(p - 0.5f * (a - xh) * (a + xh));
  half_erfc = cpu_selectf(a > 30.0f, 0.0f, half_erfc); /* infinities: inf - inf above */
  return cpu_selectf(x < 0, half_erfc, 1 - half_erfc);
}
static inline float gelu_erff(float x) { return x * normal_cdff(x); }
static inline float gelu_erf_gradf(float x) {
  return normal_cdff(x) + x * (float)INV_SQRT_2PI * cpu_expf(-0.5f * x * x);
}
static inline double gelu_tanh_f64(double x) {
  return 0.5 * x * (1 + tanh(SQRT_2_OVER_PI * (x + GELU_C * x * x * x)));
}
static inline double gelu_tanh_grad_f64(double x) {
  double t = tanh(SQRT_2_OVER_PI * (x + GELU_C * x * x * x));
  return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * SQRT_2_OVER_PI * (1 + 3 * GELU_C * x * x);
}
static inline double gelu_erf_f64(double x) { return 0.5 * x * (1 + erf(x * INV_SQRT_2)); }
static inline double gelu_erf_grad_f64(double x) {
  return 0.5 * (1 + erf(x * INV_SQRT_2)) + x * INV_SQRT_2PI * exp(-0.5 * x * x);
}

/* X(op, dtype suffix, C type, expression of x) for the forward ops; the
 * expressions keep NaN as NaN (comparisons with NaN are false). */
#define ACT_FWD(X, d, T, EXP)                                                             \
  X(leaky_relu, d, T, x > 0 ? x : x * (T)ATTR_F)                                          \
  X(elu, d, T, x > 0 ? x : (T)ATTR_F * (EXP(x) - (T)1))                                   \
  X(silu, d, T, x / ((T)1 + EXP(-x)))
/* Backward: a = x, b = g. */
#define ACT_BWD(X, d, T, EXP)                                                         \
  X(leaky_relu_backward, d, T, a > 0 ? b : b * (T)ATTR_F)                                 \
  X(elu_backward, d, T, a > 0 ? b : b * (T)ATTR_F * EXP(a))                               \
  X(silu_backward, d, T, b * silu_grad_##d(a))                                            \
  X(relu_backward, d, T, a <= 0 ? (T)0 : b)

static inline float silu_grad_f32(float x) {
  float s = 1 / (1 + cpu_expf(-x));
  return s * (1 + x * (1 - s));
}
static inline double silu_grad_f64(double x) {
  double s = 1 / (1 + exp(-x));
  return s * (1 + x * (1 - s));
}

#define GEN_FWD(op, d, T, e)                                                              \
  CPU_CLONES CPU_UNARY_LOOP(op##_##d##_loop, T, T, e)                                     \
  static loom_status op##_##d(const core_kctx *k) {                                       \
    return cpu_elementwise(k, op##_##d##_loop, CPU_DT_##d, CPU_DT_##d);                   \
  }
#define GEN_BWD(op, d, T, e)                                                              \
  CPU_CLONES CPU_BINARY_LOOP(op##_##d##_loop, T, T, e)                                    \
  static loom_status op##_##d(const core_kctx *k) {                                       \
    return cpu_elementwise(k, op##_##d##_loop, CPU_DT_##d, CPU_DT_##d);                   \
  }
ACT_FWD(GEN_FWD, f32, float, cpu_expf)
ACT_FWD(GEN_FWD, f64, double, exp)
ACT_BWD(GEN_BWD, f32, float, cpu_expf)
ACT_BWD(GEN_BWD, f64, double, exp)

/* gelu and gelu_backward: one loop per form (attribute i[0]: 1 = tanh), so that
 * the tanh form's loop has no call in it and vectorises. */
#define GELU_KERNELS(d, T, TANH, TANH_GRAD, ERF, ERF_GRAD)                               \
  CPU_CLONES CPU_UNARY_LOOP(gelu_tanh_##d##_loop, T, T, TANH(x))                          \
  CPU_CLONES CPU_UNARY_LOOP(gelu_erf_##d##_loop, T, T, ERF(x))                            \
  CPU_CLONES CPU_BINARY_LOOP(gelu_tanh_backward_##d##_loop, T, T, b * TANH_GRAD(a))       \
  CPU_CLONES CPU_BINARY_LOOP(gelu_erf_backward_##d##_loop, T, T, b * ERF_GRAD(a))         \
  static loom_status gelu_##d(const core_kctx *k) {                                       \
    return cpu_elementwise(k, k->a.i[0] ? gelu_tanh_##d##_loop : gelu_erf_##d##_loop,     \
                           CPU_DT_##d, CPU_DT_##d);                                       \
  }                                                                                       \
  static loom_status gelu_backward_##d(const core_kctx *k) {                              \
    return cpu_elementwise(k, k->a.i[0] ? gelu_tanh_backward_##d##_loop : gelu_erf_backward_##d##_loop, \
                           CPU_DT_##d, CPU_DT_##d);                                       \
  }
GELU_KERNELS(f32, float, gelu_tanhf, gelu_tanh_gradf, gelu_erff, gelu_erf_gradf)
GELU_KERNELS(f64, double, gelu_tanh_f64, gelu_tanh_grad_f64, gelu_erf_f64, gelu_erf_grad_f64)

/* ---- softmax family over [O, R, I] ---- */

/* Work items: one o and up to CHUNK consecutive i, over all of R. */
#define CHUNK 256

typedef struct orI { int64_t O, R, I, nic, items; } orI;

static loom_status get_orI(const core_kctx *k, orI *g) {
  const char *name = core_ops[k->op].name;
  g->O = k->a.i[0];
  g->R = k->a.i[1];
  g->I = k->a.i[2];
  int64_t n = g->O * g->R * g->I;
  for (int j = 0; j < k->n_in; j++)
    if (g->O < 0 || g->R <= 0 || g->I < 0 || core_numel(k->in[j]) != n)
      return core_set_error(LOOM_ERR_INVALID, "%s: input %d %s does not match [O, R, I] = [%lld, %lld, %lld]", name,
                            j, loom_shape_str(k->in[j]->shape), (long long)g->O, (long long)g->R, (long long)g->I);
  if (core_numel(k->out[0]) != n || k->out[0]->dtype != k->in[0]->dtype)
    return core_set_error(LOOM_ERR_INVALID, "%s: output %s %s does not match the input %s %s", name,
                          loom_dtype_name(k->out[0]->dtype), loom_shape_str(k->out[0]->shape),
                          loom_dtype_name(k->in[0]->dtype), loom_shape_str(k->in[0]->shape));
  for (int j = 1; j < k->n_in; j++)
    if (k->in[j]->dtype != k->in[0]->dtype)
      return core_set_error(LOOM_ERR_INVALID, "%s: input %d is %s, input 0 %s", name, j,
                            loom_dtype_name(k->in[j]->dtype), loom_dtype_name(k->in[0]->dtype));
  if (cpu_need_contiguous(name, k->in, k->n_in) || cpu_need_contiguous(name, k->out, 1)) return loom_last_status();
  g->nic = (g->I + CHUNK - 1) / CHUNK;
  g->items = g->O * g->nic;
  return LOOM_OK;
}

#define PARALLEL_ITEMS \
  "omp parallel for num_threads(cpu_threads()) if (g.O * g.R * g.I > CPU_PARALLEL_MIN) schedule(static)"

/* One work item: w columns (I apart) starting at x / y / gg. Column sums are
 * in double; a contiguous row (I == 1) uses the lane sums of src/cpu/vrow.h.
 * LOG selects log_softmax. */
#define SOFTMAX(d, T, EXP, S)                                                                       \
  CPU_CLONES static void sm_item_##d(const T *x, T *y, int64_t R, int64_t I, int64_t w, bool LOG) { \
    T m[CHUNK];                                                                                  \
    double acc[CHUNK];                                                                           \
    for (int64_t j = 0; j < w; j++) m[j] = x[j], acc[j] = 0;                                     \
    for (int64_t r = 1; r < R; r++)                                                              \
      for (int64_t j = 0; j < w; j++) m[j] = x[r * I + j] > m[j] ? x[r * I + j] : m[j];          \
    for (int64_t r = 0; r < R; r++)                                                              \
      for (int64_t j = 0; j < w; j++) {                                                          \
        T e = EXP(x[r * I + j] - m[j]);                                                          \
        acc[j] += e;                                                                             \
        if (!LOG) y[r * I + j] = e;                                                              \
      }                                                                                          \
    for (int64_t j = 0; j < w; j++) acc[j] = LOG ? (double)m[j] + log(acc[j]) : 1 / acc[j];      \
    for (int64_t r = 0; r < R; r++)                                                              \
      for (int64_t j = 0; j < w; j++)                                                            \
        y[r * I + j] = LOG ? (T)(x[r * I + j] - acc[j]) : (T)(y[r * I + j] * acc[j]);            \
  }                                                                                              \
  /* One contiguous row (I == 1): loops over r that vectorise. */                                \
  CPU_CLONES static void sm_row_##d(const T *x, T *y, int64_t R, bool LOG) {                     \
    T m = cpu_row_max_##S(x, R);                                                                 \
    if (LOG) {                                                                                   \
      T sh = (T)((double)m + log((double)cpu_row_sum_exp_##S(x, R, m)));                         \
      for (int64_t r = 0; r < R; r++) y[r] = x[r] - sh;                                          \
    } else {                                                                                     \
      for (int64_t r = 0; r < R; r++) y[r] = EXP(x[r] - m);                                      \
      T inv = (T)(1 / (double)cpu_row_sum_##S(y, R));                                            \
      for (int64_t r = 0; r < R; r++) y[r] *= inv;                                               \
    }                                                                                            \
  }                                                                                              \
  /* softmax: gx = y (g - sum(g y)); log_softmax: gx = g - exp(y) sum(g) */                      \
  CPU_CLONES static void smb_item_##d(const T *y, const T *gg, T *gx, int64_t R, int64_t I,      \
                                      int64_t w, bool LOG) {                                     \
    double acc[CHUNK];                                                                           \
    for (int64_t j = 0; j < w; j++) acc[j] = 0;                                                  \
    for (int64_t r = 0; r < R; r++)                                                              \
      for (int64_t j = 0; j < w; j++)                                                            \
        acc[j] += LOG ? (double)gg[r * I + j] : (double)gg[r * I + j] * y[r * I + j];            \
    for (int64_t r = 0; r < R; r++)                                                              \
      for (int64_t j = 0; j < w; j++) {                                                          \
        T s = (T)acc[j], yv = y[r * I + j], gv = gg[r * I + j];                                  \
        gx[r * I + j] = LOG ? gv - EXP(yv) * s : yv * (gv - s);                                  \
      }                                                                                          \
  }                                                                                              \
  CPU_CLONES static void smb_row_##d(const T *y, const T *gg, T *gx, int64_t R, bool LOG) {       \
    T s = LOG ? cpu_row_sum_##S(gg, R) : cpu_row_dot_##S(gg, y, R);                              \
    if (LOG)                                                                                     \
      for (int64_t r = 0; r < R; r++) gx[r] = gg[r] - EXP(y[r]) * s;                             \
    else                                                                                         \
      for (int64_t r = 0; r < R; r++) gx[r] = y[r] * (gg[r] - s);                                \
  }                                                                                              \
  static loom_status softmax_run_##d(const core_kctx *k, bool LOG, bool BACK) {                  \
    orI g;                                                                                       \
    if (get_orI(k, &g)) return loom_last_status();                                               \
    const T *a = core_ptr(k->in[0]), *b = BACK ? core_ptr(k->in[1]) : NULL;                      \
    T *out = core_ptr(k->out[0]);                                                                \
    _Pragma(PARALLEL_ITEMS)                                                                      \
    for (int64_t it = 0; it < g.items; it++) {                                                   \
      int64_t o = it / g.nic, i0 = it % g.nic * CHUNK;                                           \
      int64_t at = o * g.R * g.I + i0, w = g.I - i0 < CHUNK ? g.I - i0 : CHUNK;                  \
      if (BACK && g.I == 1) smb_row_##d(a + at, b + at, out + at, g.R, LOG);                      \
      else if (BACK) smb_item_##d(a + at, b + at, out + at, g.R, g.I, w, LOG);                    \
      else if (g.I == 1) sm_row_##d(a + at, out + at, g.R, LOG);                                  \
      else sm_item_##d(a + at, out + at, g.R, g.I, w, LOG);                                      \
    }                                                                                            \
    return LOOM_OK;                                                                              \
  }                                                                                              \
  static loom_status softmax_##d(const core_kctx *k) { return softmax_run_##d(k, false, false); } \
  static loom_status log_softmax_##d(const core_kctx *k) { return softmax_run_##d(k, true, false); } \
  static loom_status softmax_backward_##d(const core_kctx *k) { return softmax_run_##d(k, false, true); } \
  static loom_status log_softmax_backward_##d(const core_kctx *k) { return softmax_run_##d(k, true, true); }
SOFTMAX(f32, float, cpu_expf, f)
SOFTMAX(f64, double, exp, d)

#define REG(op, d, T, e) core_register(LOOM_CPU, CORE_OP_##op, CPU_DT_##d, op##_##d);
#define REG_SM(d)                                                                      \
  core_register(LOOM_CPU, CORE_OP_softmax, CPU_DT_##d, softmax_##d);                   \
  core_register(LOOM_CPU, CORE_OP_log_softmax, CPU_DT_##d, log_softmax_##d);           \
  core_register(LOOM_CPU, CORE_OP_softmax_backward, CPU_DT_##d, softmax_backward_##d); \
  core_register(LOOM_CPU, CORE_OP_log_softmax_backward, CPU_DT_##d, log_softmax_backward_##d);

void cpu_register_act(void) {
  ACT_FWD(REG, f32, float, _)
  ACT_FWD(REG, f64, double, _)
  ACT_BWD(REG, f32, float, _)
  ACT_BWD(REG, f64, double, _)
  REG(gelu, f32, float, _)
  REG(gelu, f64, double, _)
  REG(gelu_backward, f32, float, _)
  REG(gelu_backward, f64, double, _)
  REG_SM(f32)
  REG_SM(f64)
}
