/* Reductions over the middle dim of a contiguous [O, R, I] view: sum, and
 * max / min with the index of the first extreme (NaN counts as extreme). */
#include <math.h>
#include <stdlib.h>

#include "cpu/cpu.h"
#include "cpu/vexp.h"

/* Work items are one o and up to CHUNK consecutive i, reduced over all of R. */
#define CHUNK 1024
/* Sums of one long row (I == 1, few rows) are split into blocks of this many
 * elements, summed in parallel, then added in order: the result does not
 * depend on the number of threads. */
#define BLOCK 16384

typedef struct geom { int64_t O, R, I, nic, items; } geom;

static loom_status get_geom(const core_kctx *k, geom *g) {
  const char *name = core_ops[k->op].name;
  g->O = k->a.i[0];
  g->R = k->a.i[1];
  g->I = k->a.i[2];
  if (g->O < 0 || g->R < 0 || g->I < 0 || core_numel(k->in[0]) != g->O * g->R * g->I)
    return core_set_error(LOOM_ERR_INVALID, "%s: input %s does not match [O, R, I] = [%lld, %lld, %lld]",
                          name, loom_shape_str(k->in[0]->shape), (long long)g->O, (long long)g->R,
                          (long long)g->I);
  for (int j = 0; j < k->n_out; j++)
    if (core_numel(k->out[j]) != g->O * g->I)
      return core_set_error(LOOM_ERR_INVALID, "%s: output %s does not match [O, I] = [%lld, %lld]", name,
                            loom_shape_str(k->out[j]->shape), (long long)g->O, (long long)g->I);
  if (cpu_need_contiguous(name, k->in, 1) || cpu_need_contiguous(name, k->out, k->n_out))
    return loom_last_status();
  g->nic = (g->I + CHUNK - 1) / CHUNK;
  g->items = g->O * g->nic;
  return LOOM_OK;
}

#define PARALLEL_ITEMS \
  "omp parallel for num_threads(cpu_threads()) if (g.O * g.R * g.I > CPU_PARALLEL_MIN) schedule(static)"

/* ACC: accumulator type; PUT stores it into the output, whatever its dtype. */
#define SUM(d, ACC, PUT)                                                                                   \
  /* 8 independent partial sums (vectorisable), combined in a fixed order */                               \
  static ACC sum_row_##d(const CPU_T_##d *x, int64_t n) {                                                  \
    ACC lane[8] = {0};                                                                                     \
    int64_t r = 0;                                                                                         \
    for (; r + 8 <= n; r += 8)                                                                             \
      for (int j = 0; j < 8; j++) lane[j] += x[r + j];                                                     \
    ACC acc = ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));   \
    for (; r < n; r++) acc += x[r];                                                                        \
    return acc;                                                                                            \
  }                                                                                                        \
  /* One long row: BLOCK-sized partial sums in parallel, added in order. */                                \
  static loom_status sum_long_##d(const CPU_T_##d *x, int64_t n, ACC *out) {                               \
    int64_t nb = (n + BLOCK - 1) / BLOCK;                                                                  \
    ACC *part = malloc((size_t)nb * sizeof(ACC));                                                          \
    if (!part) return core_set_error(LOOM_ERR_OOM, "sum: no memory for %lld partial sums", (long long)nb); \
    _Pragma("omp parallel for num_threads(cpu_threads()) schedule(static)")                                \
    for (int64_t b = 0; b < nb; b++)                                                                       \
      part[b] = sum_row_##d(x + b * BLOCK, b + 1 < nb ? BLOCK : n - b * BLOCK);                            \
    ACC acc = 0;                                                                                           \
    for (int64_t b = 0; b < nb; b++) acc += part[b];                                                       \
    free(part);                                                                                            \
    *out = acc;                                                                                            \
    return LOOM_OK;                                                                                        \
  }                                                                                                        \
  static loom_status sum_##d(const core_kctx *k) {                                                         \
    geom g;                                                                                                \
    if (get_geom(k, &g)) return loom_last_status();                                                        \
    const CPU_T_##d *x = core_ptr(k->in[0]);                                                               \
    void *out = core_ptr(k->out[0]);                                                                       \
    loom_dtype odt = k->out[0]->dtype;                                                                     \
    if (g.I == 1 && g.O < cpu_threads() && g.R > 2 * BLOCK) {                                              \
      for (int64_t o = 0; o < g.O; o++) {                                                                  \
        ACC acc = 0;                                                                                       \
        if (sum_long_##d(x + o * g.R, g.R, &acc)) return loom_last_status();                               \
        PUT(out, odt, o, acc);                                                                             \
      }                                                                                                    \
      return LOOM_OK;                                                                                      \
    }                                                                                                      \
    _Pragma(PARALLEL_ITEMS)                                                                                \
    for (int64_t it = 0; it < g.items; it++) {                                                             \
      int64_t o = it / g.nic, i0 = it % g.nic * CHUNK;                                                     \
      int64_t w = g.I - i0 < CHUNK ? g.I - i0 : CHUNK;                                                     \
      const CPU_T_##d *row = x + o * g.R * g.I + i0;                                                       \
      if (w == 1) {                                                                                        \
        PUT(out, odt, o * g.I + i0, sum_row_##d(row, g.R));                                                \
        continue;                                                                                          \
      }                                                                                                    \
      ACC acc[CHUNK];                                                                                      \
      for (int64_t j = 0; j < w; j++) acc[j] = 0;                                                          \
      for (int64_t r = 0; r < g.R; r++)                                                                    \
        for (int64_t j = 0; j < w; j++) acc[j] += row[r * g.I + j];                                        \
      for (int64_t j = 0; j < w; j++) PUT(out, odt, o * g.I + i0 + j, acc[j]);                             \
    }                                                                                                      \
    return LOOM_OK;                                                                                        \
  }
SUM(f32, double, cpu_put_f64)
SUM(f64, double, cpu_put_f64)
SUM(i32, uint64_t, cpu_put_i64)
SUM(i64, uint64_t, cpu_put_i64)
SUM(u8, uint64_t, cpu_put_i64)

#define IS_NAN_f32(v) isnan(v)
#define IS_NAN_f64(v) isnan(v)
#define IS_NAN_i32(v) 0
#define IS_NAN_i64(v) 0
#define IS_NAN_u8(v) 0

/* op: max or min; CMP: > or <. A later element wins only when strictly better,
 * so ties keep the first index; the first NaN wins over everything. */
#define EXTREME(op, d, CMP)                                                                       \
  static loom_status op##_##d(const core_kctx *k) {                                               \
    geom g;                                                                                       \
    if (get_geom(k, &g)) return loom_last_status();                                               \
    if (g.R == 0) return core_set_error(LOOM_ERR_INVALID, #op ": reduced dim has size 0");        \
    if (k->out[0]->dtype != CPU_DT_##d || k->out[1]->dtype != LOOM_I64)                           \
      return core_set_error(LOOM_ERR_INVALID, #op ": outputs are %s and %s, expected %s and i64", \
                            loom_dtype_name(k->out[0]->dtype), loom_dtype_name(k->out[1]->dtype), \
                            loom_dtype_name(CPU_DT_##d));                                         \
    const CPU_T_##d *x = core_ptr(k->in[0]);                                                      \
    CPU_T_##d *vals = core_ptr(k->out[0]);                                                        \
    int64_t *idx = core_ptr(k->out[1]);                                                           \
    _Pragma(PARALLEL_ITEMS)                                                                       \
    for (int64_t it = 0; it < g.items; it++) {                                                    \
      int64_t o = it / g.nic, i0 = it % g.nic * CHUNK;                                            \
      int64_t w = g.I - i0 < CHUNK ? g.I - i0 : CHUNK;                                            \
      const CPU_T_##d *row = x + o * g.R * g.I + i0;                                              \
      CPU_T_##d best[CHUNK];                                                                      \
      int64_t at[CHUNK];                                                                          \
      for (int64_t j = 0; j < w; j++) {                                                           \
        best[j] = row[j];                                                                         \
        at[j] = 0;                                                                                \
      }                                                                                           \
      for (int64_t r = 1; r < g.R; r++)                                                           \
        for (int64_t j = 0; j < w; j++) {                                                         \
          CPU_T_##d v = row[r * g.I + j];                                                         \
          if (v CMP best[j] || (IS_NAN_##d(v) && !IS_NAN_##d(best[j]))) {                         \
            best[j] = v;                                                                          \
            at[j] = r;                                                                            \
          }                                                                                       \
        }                                                                                         \
      for (int64_t j = 0; j < w; j++) {                                                           \
        vals[o * g.I + i0 + j] = best[j];                                                         \
        idx[o * g.I + i0 + j] = at[j];                                                            \
      }                                                                                           \
    }                                                                                             \
    return LOOM_OK;                                                                               \
  }
#define EXTREMES(d) EXTREME(max, d, >) EXTREME(min, d, <)
EXTREMES(f32)
EXTREMES(f64)
EXTREMES(i32)
EXTREMES(i64)
EXTREMES(u8)

/* logsumexp: m + log(sum(exp(x - m))) with m the line's max. A NaN gives NaN;
 * an infinite max gives the max itself (all -inf stays -inf, any +inf is +inf).
 * Sums are in double; f32 uses cpu_expf, in loops compiled for AVX2 + FMA too
 * (CLONES). The loops are branch-free so they vectorise: LSE_TAKE(v, m) is
 * "m is not NaN and v beats it (v > m, or v is NaN)". */
#define LSE_TAKE(v, m) (((m) == (m)) & !((v) <= (m)))
#define LSE_OUT(T, m, acc) (isinf(m) || isnan(m) ? (m) : (m) + (T)log(acc))
#define LOGSUMEXP(d, EXP, CLONES)                                                                  \
  /* One contiguous line (I == 1): the max in 32 lanes (a loop GCC vectorises), */               \
  /* the sum in 8 (SLP); lanes are combined in a fixed order. */                                   \
  CLONES static CPU_T_##d lse_row_##d(const CPU_T_##d *x, int64_t n) {                             \
    CPU_T_##d lm[32], m = x[0];                                                                    \
    int64_t r = 0;                                                                                 \
    for (int j = 0; j < 32; j++) lm[j] = x[0];                                                     \
    for (; r + 32 <= n; r += 32)                                                                   \
      for (int j = 0; j < 32; j++) lm[j] = LSE_TAKE(x[r + j], lm[j]) ? x[r + j] : lm[j];           \
    for (int j = 0; j < 32; j++) m = LSE_TAKE(lm[j], m) ? lm[j] : m;                               \
    for (; r < n; r++) m = LSE_TAKE(x[r], m) ? x[r] : m;                                           \
    if (isinf(m) || isnan(m)) return m;                                                            \
    double lane[8] = {0};                                                                          \
    for (r = 0; r + 8 <= n; r += 8)                                                                \
      for (int j = 0; j < 8; j++) lane[j] += EXP(x[r + j] - m);                                    \
    double acc = ((lane[0] + lane[1]) + (lane[2] + lane[3])) +                                     \
                 ((lane[4] + lane[5]) + (lane[6] + lane[7]));                                      \
    for (; r < n; r++) acc += EXP(x[r] - m);                                                       \
    return m + (CPU_T_##d)log(acc);                                                                \
  }                                                                                                \
  /* w (<= CHUNK) neighbouring lines, I apart: out[j] for line j. */                               \
  CLONES static void lse_cols_##d(const CPU_T_##d *x, int64_t R, int64_t I, int64_t w,             \
                                  CPU_T_##d *out) {                                                \
    CPU_T_##d m[CHUNK];                                                                            \
    double acc[CHUNK];                                                                             \
    for (int64_t j = 0; j < w; j++) m[j] = x[j], acc[j] = 0;                                       \
    for (int64_t r = 1; r < R; r++)                                                                \
      for (int64_t j = 0; j < w; j++) {                                                            \
        CPU_T_##d v = x[r * I + j];                                                                \
        m[j] = LSE_TAKE(v, m[j]) ? v : m[j];                                                       \
      }                                                                                            \
    for (int64_t r = 0; r < R; r++)                                                                \
      for (int64_t j = 0; j < w; j++) acc[j] += EXP(x[r * I + j] - m[j]);                          \
    for (int64_t j = 0; j < w; j++) out[j] = LSE_OUT(CPU_T_##d, m[j], acc[j]);                     \
  }                                                                                                \
  static loom_status logsumexp_##d(const core_kctx *k) {                                           \
    geom g;                                                                                        \
    if (get_geom(k, &g)) return loom_last_status();                                                \
    if (g.R == 0) return core_set_error(LOOM_ERR_INVALID, "logsumexp: reduced dim has size 0");     \
    if (k->out[0]->dtype != CPU_DT_##d)                                                            \
      return core_set_error(LOOM_ERR_INVALID, "logsumexp: output is %s, expected %s",              \
                            loom_dtype_name(k->out[0]->dtype), loom_dtype_name(CPU_DT_##d));       \
    const CPU_T_##d *x = core_ptr(k->in[0]);                                                       \
    CPU_T_##d *out = core_ptr(k->out[0]);                                                          \
    _Pragma(PARALLEL_ITEMS)                                                                        \
    for (int64_t it = 0; it < g.items; it++) {                                                     \
      int64_t o = it / g.nic, i0 = it % g.nic * CHUNK;                                             \
      const CPU_T_##d *row = x + o * g.R * g.I + i0;                                               \
      if (g.I == 1)                                                                                \
        out[o] = lse_row_##d(row, g.R);                                                            \
      else                                                                                         \
        lse_cols_##d(row, g.R, g.I, g.I - i0 < CHUNK ? g.I - i0 : CHUNK, out + o * g.I + i0);      \
    }                                                                                              \
    return LOOM_OK;                                                                                \
  }
LOGSUMEXP(f32, cpu_expf, CPU_CLONES)
LOGSUMEXP(f64, exp, )

#define REG(d)                                                   \
  core_register(LOOM_CPU, CORE_OP_sum, CPU_DT_##d, sum_##d);     \
  core_register(LOOM_CPU, CORE_OP_max, CPU_DT_##d, max_##d);     \
  core_register(LOOM_CPU, CORE_OP_min, CPU_DT_##d, min_##d);

void cpu_register_reduce(void) {
  core_register(LOOM_CPU, CORE_OP_logsumexp, LOOM_F32, logsumexp_f32);
  core_register(LOOM_CPU, CORE_OP_logsumexp, LOOM_F64, logsumexp_f64);
  REG(f32)
  REG(f64)
  REG(i32)
  REG(i64)
  REG(u8)
}
