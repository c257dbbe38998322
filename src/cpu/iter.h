/* A strided elementwise iterator for the CPU kernels. The operands share one
 * shape (any strides, 0 = broadcast); dims of size 1 are dropped and dims that
 * are contiguous with their inner neighbour in every operand are merged, so the
 * common cases become one flat loop. Big loops are split across OpenMP threads. */
#ifndef LOOM_CPU_ITER_H
#define LOOM_CPU_ITER_H

#include "cpu/cpu.h"

#define CPU_MAX_OPERANDS 4

/* Processes n elements: operand j starts at p[j] and steps s[j] bytes per element. */
typedef void (*cpu_loop_fn)(char **p, const int64_t *s, int64_t n, const void *ctx);

/* Runs fn over every element of t[0]'s shape; t[1..n) must have that same shape. */
loom_status cpu_foreach(const char *op, loom_tensor *const *t, int n, cpu_loop_fn fn, const void *ctx);

/* An elementwise kernel: operands (out[0], in[0], ..., in[n_in - 1]), ctx = k.
 * Checks that out[0] has out_dt and every input in_dt (where's condition: bool). */
loom_status cpu_elementwise(const core_kctx *k, cpu_loop_fn fn, loom_dtype in_dt, loom_dtype out_dt);

/* Loop-function bodies: `EXPR` computes one result from the values named in
 * the macro; the first branch (all operands contiguous) lets the compiler vectorise. */
#define CPU_UNARY_LOOP(fname, TI, TO, EXPR)                                              \
  static void fname(char **p, const int64_t *s, int64_t n, const void *ctx) {            \
    (void)ctx;                                                                           \
    if (s[0] == (int64_t)sizeof(TO) && s[1] == (int64_t)sizeof(TI)) {                    \
      TO *o_ = (TO *)p[0];                                                               \
      const TI *x_ = (const TI *)p[1];                                                   \
      for (int64_t j = 0; j < n; j++) {                                                  \
        TI x = x_[j];                                                                    \
        o_[j] = (TO)(EXPR);                                                              \
      }                                                                                  \
    } else {                                                                             \
      for (int64_t j = 0; j < n; j++) {                                                  \
        TI x = *(const TI *)(p[1] + j * s[1]);                                           \
        *(TO *)(p[0] + j * s[0]) = (TO)(EXPR);                                           \
      }                                                                                  \
    }                                                                                    \
  }

#define CPU_BINARY_LOOP(fname, TI, TO, EXPR)                                              \
  static void fname(char **p, const int64_t *s, int64_t n, const void *ctx) {             \
    (void)ctx;                                                                            \
    if (s[0] == (int64_t)sizeof(TO) && s[1] == (int64_t)sizeof(TI) &&                     \
        s[2] == (int64_t)sizeof(TI)) {                                                    \
      TO *o_ = (TO *)p[0];                                                                \
      const TI *a_ = (const TI *)p[1], *b_ = (const TI *)p[2];                            \
      for (int64_t j = 0; j < n; j++) {                                                   \
        TI a = a_[j], b = b_[j];                                                          \
        o_[j] = (TO)(EXPR);                                                               \
      }                                                                                   \
    } else if (s[0] == (int64_t)sizeof(TO) && s[1] == (int64_t)sizeof(TI) && s[2] == 0) { \
      TO *o_ = (TO *)p[0];                                                                \
      const TI *a_ = (const TI *)p[1];                                                    \
      const TI b = *(const TI *)p[2];                                                     \
      for (int64_t j = 0; j < n; j++) {                                                   \
        TI a = a_[j];                                                                     \
        o_[j] = (TO)(EXPR);                                                               \
      }                                                                                   \
    } else {                                                                              \
      for (int64_t j = 0; j < n; j++) {                                                   \
        TI a = *(const TI *)(p[1] + j * s[1]), b = *(const TI *)(p[2] + j * s[2]);        \
        *(TO *)(p[0] + j * s[0]) = (TO)(EXPR);                                            \
      }                                                                                   \
    }                                                                                     \
  }

#endif
