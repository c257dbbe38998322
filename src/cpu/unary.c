/* Elementwise unary ops: neg abs sign exp log sqrt rsqrt sin cos relu sigmoid
 * tanh clamp logical_not. Float maths via <tgmath.h> (float stays float), except
 * f32 exp and sigmoid, which use the vectorisable cpu_expf in cloned loops. */
#include <tgmath.h>

#include "cpu/iter.h"
#include "cpu/vexp.h"

#define FLOATS(X, op, e) X(op, f32, e) X(op, f64, e)
#define NEG_INT(T, U) (T)(0u - (U)x)
#define SIGN (x > 0 ? 1 : x < 0 ? -1 : 0) /* 0 for NaN and -0, like PyTorch */

/* X(op, dtype suffix, expression of x); output dtype = input dtype. */
#define UNARY_OPS(X)                                                                                 \
  FLOATS(X, neg, -x) X(neg, i32, NEG_INT(int32_t, uint32_t)) X(neg, i64, NEG_INT(int64_t, uint64_t)) \
  FLOATS(X, abs, fabs(x)) X(abs, i32, x < 0 ? NEG_INT(int32_t, uint32_t) : x)                        \
  X(abs, i64, x < 0 ? NEG_INT(int64_t, uint64_t) : x) X(abs, u8, x)                                  \
  FLOATS(X, sign, SIGN) X(sign, i32, SIGN) X(sign, i64, SIGN) X(sign, u8, x != 0)                    \
  X(exp, f64, exp(x)) FLOATS(X, log, log(x)) FLOATS(X, sqrt, sqrt(x))                                \
  FLOATS(X, rsqrt, 1 / sqrt(x)) FLOATS(X, sin, sin(x)) FLOATS(X, cos, cos(x))                        \
  FLOATS(X, relu, x < 0 ? 0 : x) X(sigmoid, f64, 1 / (1 + exp(-x))) FLOATS(X, tanh, tanh(x))
/* Ops whose loops are worth compiling for AVX2 + FMA too (CPU_CLONES). */
#define VEXP_OPS(X) X(exp, f32, cpu_expf(x)) X(sigmoid, f32, 1 / (1 + cpu_expf(-x)))

#define GEN_UNARY(op, d, e)                                                          \
  CPU_UNARY_LOOP(op##_##d##_loop, CPU_T_##d, CPU_T_##d, e)                           \
  static loom_status op##_##d(const core_kctx *k) {                                  \
    return cpu_elementwise(k, op##_##d##_loop, CPU_DT_##d, CPU_DT_##d);              \
  }
UNARY_OPS(GEN_UNARY)
/* CPU_CLONES lands on the loop function, the first thing GEN_UNARY defines. */
#define GEN_VEXP(op, d, e) CPU_CLONES GEN_UNARY(op, d, e)
VEXP_OPS(GEN_VEXP)

/* logical_not: any input dtype, nonzero is true; writes bool. */
#define NOT_TYPES(X) X(logical_not, f32, x == 0) X(logical_not, f64, x == 0) X(logical_not, i32, x == 0) \
  X(logical_not, i64, x == 0) X(logical_not, u8, x == 0) X(logical_not, boolean, x == 0)
#define GEN_NOT(op, d, e)                                                            \
  CPU_UNARY_LOOP(op##_##d##_loop, CPU_T_##d, uint8_t, e)                             \
  static loom_status op##_##d(const core_kctx *k) {                                  \
    return cpu_elementwise(k, op##_##d##_loop, CPU_DT_##d, LOOM_BOOL);               \
  }
NOT_TYPES(GEN_NOT)

/* clamp to [lo, hi]; NaN x stays NaN (loom_clamp turns lo > hi into lo = hi,
 * and a NaN bound into lo = hi = NaN, which gives NaN everywhere as in PyTorch).
 * Integer types clamp to the integers inside the bounds, saturated to the type. */
typedef struct clamp_bounds { double lo, hi; int64_t ilo, ihi; bool nan; } clamp_bounds;

static int64_t int_bound(double v, bool lower, int64_t tmin, int64_t tmax) {
  if (isnan(v)) return lower ? tmin : tmax;
  v = lower ? ceil(v) : floor(v);
  if (v <= (double)tmin) return tmin;
  if (v >= (double)tmax) return tmax;
  return (int64_t)v;
}

#define CLAMP(d, LO, HI, TMIN, TMAX, FLOAT)                                                   \
  CPU_UNARY_LOOP(clamp_##d##_loop, CPU_T_##d, CPU_T_##d,                                      \
                 FLOAT && ((const clamp_bounds *)ctx)->nan ? ((const clamp_bounds *)ctx)->LO  \
                 : x < ((const clamp_bounds *)ctx)->LO ? ((const clamp_bounds *)ctx)->LO      \
                 : x > ((const clamp_bounds *)ctx)->HI ? ((const clamp_bounds *)ctx)->HI      \
                                                       : x)                                   \
  static loom_status clamp_##d(const core_kctx *k) {                                          \
    clamp_bounds b = {k->a.f[0], k->a.f[1], int_bound(k->a.f[0], true, TMIN, TMAX),           \
                      int_bound(k->a.f[1], false, TMIN, TMAX), isnan(k->a.f[0])};             \
    if (k->out[0]->dtype != CPU_DT_##d)                                                       \
      return core_set_error(LOOM_ERR_INVALID, "clamp: output dtype %s, expected %s",          \
                            loom_dtype_name(k->out[0]->dtype), loom_dtype_name(CPU_DT_##d));  \
    loom_tensor *t[2] = {k->out[0], k->in[0]};                                                \
    return cpu_foreach("clamp", t, 2, clamp_##d##_loop, &b);                                  \
  }
CLAMP(f32, lo, hi, 0, 0, 1)
CLAMP(f64, lo, hi, 0, 0, 1)
CLAMP(i32, ilo, ihi, INT32_MIN, INT32_MAX, 0)
CLAMP(i64, ilo, ihi, INT64_MIN, INT64_MAX, 0)
CLAMP(u8, ilo, ihi, 0, UINT8_MAX, 0)

#define REG(op, d, e) core_register(LOOM_CPU, CORE_OP_##op, CPU_DT_##d, op##_##d);

void cpu_register_unary(void) {
  UNARY_OPS(REG)
  VEXP_OPS(REG)
  NOT_TYPES(REG)
  REG(clamp, f32, _)
  REG(clamp, f64, _)
  REG(clamp, i32, _)
  REG(clamp, i64, _)
  REG(clamp, u8, _)
}
