/* CPU kernels of the loss family: the fused cross-entropy over rows and its
 * backward (see src/core/ops_loss.def). f32 and f64; f16 / bf16 reach the f32
 * kernels through the dispatcher. Row max, sum of exponentials and weighted
 * sums are vectorised lane sums in the row's dtype (src/cpu/vrow.h); the
 * log-sum-exp and the loss are finished in double. */
#include "cpu/vrow.h"

typedef struct ce_geom {
  int64_t R, C, ignore;
  double s;
} ce_geom;

static loom_status ce_check(const core_kctx *k, loom_dtype dt, loom_dtype acc, ce_geom *g) {
  g->R = k->a.i[0], g->C = k->a.i[1], g->ignore = k->a.i[2], g->s = k->a.f[0];
  const char *name = core_ops[k->op].name;
  loom_status st = cpu_need_contiguous(name, k->in, k->n_in);
  if (st == LOOM_OK) st = cpu_need_contiguous(name, k->out, k->n_out);
  if (st != LOOM_OK) return st;
  bool fwd = k->op == CORE_OP_cross_entropy;
  if (k->in[1]->dtype != LOOM_I64 || k->in[2]->dtype != dt || core_numel(k->in[0]) != g->R * g->C ||
      core_numel(k->in[1]) != g->R || core_numel(k->in[2]) != g->C || k->out[0]->dtype != dt ||
      (fwd ? k->out[1]->dtype != acc || core_numel(k->out[0]) != g->R
           : k->in[3]->dtype != acc || core_numel(k->in[3]) != 2 * g->R || core_numel(k->out[0]) != g->R * g->C))
    return core_set_error(LOOM_ERR_INVALID, "%s: operands do not match [R, C] = [%lld, %lld] in %s", name,
                          (long long)g->R, (long long)g->C, loom_dtype_name(dt));
  return LOOM_OK;
}

/* sum of the weights (only needed with smoothing) */
#define WSUM(T)                                                  \
  static double wsum_##T(const T *w, int64_t C) {               \
    double W = 0;                                                \
    for (int64_t c = 0; c < C; c++) W += w[c];                   \
    return W;                                                    \
  }
WSUM(float)
WSUM(double)

#define CE_KERNELS(d, T, S)                                                                           \
  static loom_status cross_entropy_##d(const core_kctx *k) {                                         \
    ce_geom g;                                                                                       \
    if (ce_check(k, CPU_DT_##d, CPU_DT_##d == LOOM_F64 ? LOOM_F64 : LOOM_F32, &g)) return loom_last_status(); \
    const T *x = core_ptr(k->in[0]), *w = core_ptr(k->in[2]);                                        \
    const int64_t *t = core_ptr(k->in[1]);                                                           \
    T *loss = core_ptr(k->out[0]), *lse = core_ptr(k->out[1]);                                       \
    const double W = g.s > 0 ? wsum_##T(w, g.C) : 0;                                                 \
    int64_t bad = -1;                                                                                \
    _Pragma("omp parallel for num_threads(cpu_threads()) if (g.R * g.C > CPU_PARALLEL_MIN) schedule(static)") \
    for (int64_t r = 0; r < g.R; r++) {                                                              \
      const T *row = x + r * g.C;                                                                    \
      T m = cpu_row_max_##S(row, g.C);                                                               \
      double l = m;                                                                                  \
      if (!isinf(m) && !isnan(m)) l = m + log((double)cpu_row_sum_exp_##S(row, g.C, m));             \
      lse[r] = (T)l;                                                                                 \
      const int64_t tr = t[r];                                                                       \
      if (tr == g.ignore) { loss[r] = 0; continue; }                                                 \
      if (tr < 0 || tr >= g.C) {                                                                     \
        _Pragma("omp atomic write") bad = tr;                                                        \
        loss[r] = (T)NAN;                                                                            \
        continue;                                                                                    \
      }                                                                                              \
      double v = (1 - g.s) * w[tr] * (l - row[tr]);                                                  \
      if (g.s > 0) v += g.s / (double)g.C * (W * l - (double)cpu_row_dot_##S(w, row, g.C));          \
      loss[r] = (T)v;                                                                                \
    }                                                                                                \
    if (bad != -1)                                                                                   \
      return core_set_error(LOOM_ERR_INVALID, "cross_entropy: target class index %lld is out of range for %lld classes", \
                            (long long)bad, (long long)g.C);                                         \
    return LOOM_OK;                                                                                  \
  }                                                                                                  \
  static loom_status cross_entropy_backward_##d(const core_kctx *k) {                                \
    ce_geom g;                                                                                       \
    if (ce_check(k, CPU_DT_##d, CPU_DT_##d == LOOM_F64 ? LOOM_F64 : LOOM_F32, &g)) return loom_last_status(); \
    const T *x = core_ptr(k->in[0]), *w = core_ptr(k->in[2]);                                        \
    const int64_t *t = core_ptr(k->in[1]);                                                           \
    const T *gl = core_ptr(k->in[3]);                                                                \
    T *dx = core_ptr(k->out[0]);                                                                     \
    const double W = g.s > 0 ? wsum_##T(w, g.C) : 0;                                                 \
    _Pragma("omp parallel for num_threads(cpu_threads()) if (g.R * g.C > CPU_PARALLEL_MIN) schedule(static)") \
    for (int64_t r = 0; r < g.R; r++) {                                                              \
      const T *row = x + r * g.C;                                                                    \
      T *drow = dx + r * g.C;                                                                        \
      const int64_t tr = t[r];                                                                       \
      if (tr == g.ignore || tr < 0 || tr >= g.C) {                                                   \
        for (int64_t c = 0; c < g.C; c++) drow[c] = 0;                                               \
        continue;                                                                                    \
      }                                                                                              \
      const double gr = gl[2 * r + 1];                                                               \
      const double a = gr * (1 - g.s) * w[tr], b = gr * g.s / (double)g.C;                          \
      ce_grad_row_##d(row, w, drow, g.C, (T)gl[2 * r], (T)a, (T)b, (T)W);                            \
      drow[tr] -= (T)a;                                                                              \
    }                                                                                                \
    return LOOM_OK;                                                                                  \
  }
/* d row = a p + b (W p - w) with p = exp(x - lse): the target's -a is the caller's. */
#define CE_GRAD_ROW(d, T, EXP)                                                                       \
  CPU_CLONES static void ce_grad_row_##d(const T *x, const T *w, T *dx, int64_t C, T lse, T a, T b, T W) { \
    for (int64_t c = 0; c < C; c++) {                                                                \
      T p = EXP(x[c] - lse);                                                                         \
      dx[c] = a * p + b * (W * p - w[c]);                                                            \
    }                                                                                                \
  }
CE_GRAD_ROW(f32, float, cpu_expf)
CE_GRAD_ROW(f64, double, exp)
CE_KERNELS(f32, float, f)
CE_KERNELS(f64, double, d)

void cpu_register_loss(void) {
  core_register(LOOM_CPU, CORE_OP_cross_entropy, LOOM_F32, cross_entropy_f32);
  core_register(LOOM_CPU, CORE_OP_cross_entropy, LOOM_F64, cross_entropy_f64);
  core_register(LOOM_CPU, CORE_OP_cross_entropy_backward, LOOM_F32, cross_entropy_backward_f32);
  core_register(LOOM_CPU, CORE_OP_cross_entropy_backward, LOOM_F64, cross_entropy_backward_f64);
}
