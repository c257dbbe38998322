/* Elementwise binary ops (arithmetic, maximum / minimum, comparisons, logical)
 * and where. Integer arithmetic wraps around like PyTorch's. */
#include <tgmath.h>

#include "cpu/iter.h"

#define FLOATS(X, op, e) X(op, f32, e) X(op, f64, e)
#define INTS(X, op, e) X(op, i32, e) X(op, i64, e) X(op, u8, e)
#define WRAP(o) ((uint64_t)a o (uint64_t)b)
#define MAX_NAN ((a != a || a > b) ? a : b) /* NaN in either input gives NaN */
#define MIN_NAN ((a != a || a < b) ? a : b)

/* X(op, dtype suffix, expression of a and b); output dtype = input dtype. */
#define ARITH_OPS(X)                                                                          \
  FLOATS(X, add, a + b) INTS(X, add, WRAP(+)) FLOATS(X, sub, a - b) INTS(X, sub, WRAP(-))     \
  FLOATS(X, mul, a * b) INTS(X, mul, WRAP(*)) FLOATS(X, div, a / b) FLOATS(X, pow, pow(a, b)) \
  FLOATS(X, maximum, MAX_NAN) INTS(X, maximum, a > b ? a : b)                                 \
  FLOATS(X, minimum, MIN_NAN) INTS(X, minimum, a < b ? a : b)

/* Same, writing bool. Logical ops treat nonzero (and NaN) as true. */
#define ALL(X, op, e) FLOATS(X, op, e) INTS(X, op, e) X(op, boolean, e)
#define PRED_OPS(X)                                                                         \
  ALL(X, eq, a == b) ALL(X, ne, a != b) ALL(X, lt, a < b) ALL(X, le, a <= b)               \
  ALL(X, gt, a > b) ALL(X, ge, a >= b) ALL(X, logical_and, a != 0 && b != 0)                \
  ALL(X, logical_or, a != 0 || b != 0) ALL(X, logical_xor, (a != 0) != (b != 0))

#define GEN_ARITH(op, d, e)                                                          \
  CPU_BINARY_LOOP(op##_##d##_loop, CPU_T_##d, CPU_T_##d, e)                          \
  static loom_status op##_##d(const core_kctx *k) {                                  \
    return cpu_elementwise(k, op##_##d##_loop, CPU_DT_##d, CPU_DT_##d);              \
  }
ARITH_OPS(GEN_ARITH)

#define GEN_PRED(op, d, e)                                                           \
  CPU_BINARY_LOOP(op##_##d##_loop, CPU_T_##d, uint8_t, e)                            \
  static loom_status op##_##d(const core_kctx *k) {                                  \
    return cpu_elementwise(k, op##_##d##_loop, CPU_DT_##d, LOOM_BOOL);               \
  }
PRED_OPS(GEN_PRED)

/* where: operands (out, a, b, cond). */
#define GEN_WHERE(op, d, e)                                                              \
  static void where_##d##_loop(char **p, const int64_t *s, int64_t n, const void *ctx) { \
    (void)ctx;                                                                           \
    for (int64_t j = 0; j < n; j++)                                                      \
      *(CPU_T_##d *)(p[0] + j * s[0]) = *(const uint8_t *)(p[3] + j * s[3])              \
                                            ? *(const CPU_T_##d *)(p[1] + j * s[1])      \
                                            : *(const CPU_T_##d *)(p[2] + j * s[2]);     \
  }                                                                                      \
  static loom_status where_##d(const core_kctx *k) {                                     \
    return cpu_elementwise(k, where_##d##_loop, CPU_DT_##d, CPU_DT_##d);                 \
  }
ALL(GEN_WHERE, where, _)

#define REG(op, d, e) core_register(LOOM_CPU, CORE_OP_##op, CPU_DT_##d, op##_##d);

void cpu_register_binary(void) {
  ARITH_OPS(REG)
  PRED_OPS(REG)
  ALL(REG, where, _)
}
