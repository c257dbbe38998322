/* CPU kernels of the optim family: the fused multi-tensor updates sgd_step,
 * adam_step and rmsprop_step (src/core/ops_optim.def). The list's chunks are
 * shared among OpenMP threads; the math runs in double for every dtype and
 * rounds once on store. */
#include "cpu/cpu.h"
#include "optim/fused.h"

static inline __attribute__((always_inline)) double ld(const void *p, int64_t i, loom_dtype dt) {
  switch (dt) {
    case LOOM_F32: return ((const float *)p)[i];
    case LOOM_F64: return ((const double *)p)[i];
    case LOOM_F16: return core_half_to_float(((const uint16_t *)p)[i]);
    default: return core_bf16_to_float(((const uint16_t *)p)[i]);
  }
}

static inline __attribute__((always_inline)) void st(void *p, int64_t i, loom_dtype dt, double v) {
  switch (dt) {
    case LOOM_F32: ((float *)p)[i] = (float)v; break;
    case LOOM_F64: ((double *)p)[i] = v; break;
    case LOOM_F16: ((uint16_t *)p)[i] = core_float_to_half((float)v); break;
    default: ((uint16_t *)p)[i] = core_float_to_bf16((float)v); break;
  }
}

static inline __attribute__((always_inline)) void sgd_range(const optim_entry *e, const core_attrs *a, int64_t lo,
                                                            int64_t hi, loom_dtype dt) {
  double lr = e->s[0], wd = e->s[1], mom = a->f[0], damp = a->f[1];
  bool first = e->s[2] != 0, nesterov = a->i[2], maximize = a->i[3];
  for (int64_t i = lo; i < hi; i++) {
    double p = ld(e->p[0], i, dt), d = ld(e->p[1], i, dt);
    if (maximize) d = -d;
    if (wd != 0) d += wd * p;
    if (mom != 0) {
      double b = first ? d : mom * ld(e->p[2], i, dt) + (1 - damp) * d;
      st(e->p[2], i, dt, b);
      d = nesterov ? d + mom * b : b;
    }
    st(e->p[0], i, dt, p - lr * d);
  }
}

static inline __attribute__((always_inline)) void adam_range(const optim_entry *e, const core_attrs *a, int64_t lo,
                                                             int64_t hi, loom_dtype dt) {
  double lr = e->s[0], wd = e->s[1], b1 = a->f[0], b2 = a->f[1], eps = a->f[2];
  double step_size = lr / e->s[2], bc2_sqrt = sqrt(e->s[3]);
  bool amsgrad = a->i[2], maximize = a->i[3], decoupled = a->i[4];
  for (int64_t i = lo; i < hi; i++) {
    double p = ld(e->p[0], i, dt), d = ld(e->p[1], i, dt);
    if (maximize) d = -d;
    if (decoupled) p *= 1 - lr * wd;
    else if (wd != 0) d += wd * p;
    double m = ld(e->p[2], i, dt), v = ld(e->p[3], i, dt);
    m += (1 - b1) * (d - m);
    v = b2 * v + (1 - b2) * d * d;
    st(e->p[2], i, dt, m);
    st(e->p[3], i, dt, v);
    if (amsgrad) {
      double vm = ld(e->p[4], i, dt);
      if (vm == vm && !(v <= vm)) vm = v;  /* NaN in either stays NaN, as torch.maximum */
      st(e->p[4], i, dt, vm);
      v = vm;
    }
    st(e->p[0], i, dt, p - step_size * m / (sqrt(v) / bc2_sqrt + eps));
  }
}

static inline __attribute__((always_inline)) void rmsprop_range(const optim_entry *e, const core_attrs *a,
                                                                int64_t lo, int64_t hi, loom_dtype dt) {
  double lr = e->s[0], wd = e->s[1], alpha = a->f[0], eps = a->f[1], mom = a->f[2];
  bool centered = a->i[2], maximize = a->i[3];
  for (int64_t i = lo; i < hi; i++) {
    double p = ld(e->p[0], i, dt), d = ld(e->p[1], i, dt);
    if (maximize) d = -d;
    if (wd != 0) d += wd * p;
    double sa = alpha * ld(e->p[2], i, dt) + (1 - alpha) * d * d;
    st(e->p[2], i, dt, sa);
    double avg;
    if (centered) {
      double ga = ld(e->p[4], i, dt);
      ga += (1 - alpha) * (d - ga);
      st(e->p[4], i, dt, ga);
      avg = sqrt(sa - ga * ga) + eps;
    } else {
      avg = sqrt(sa) + eps;
    }
    if (mom > 0) {
      double b = mom * ld(e->p[3], i, dt) + d / avg;
      st(e->p[3], i, dt, b);
      p -= lr * b;
    } else {
      p -= lr * d / avg;
    }
    st(e->p[0], i, dt, p);
  }
}

/* One kernel per (op, dtype): chunks of the list in parallel. */
#define OPTIM_KERNEL(OP, SUF)                                                                         \
  static loom_status OP##_##SUF(const core_kctx *k) {                                                 \
    const optim_entry *e = (const optim_entry *)core_ptr(k->in[1]);                                   \
    int64_t n = k->a.i[0], chunks = k->a.i[1];                                                        \
    _Pragma("omp parallel for num_threads(cpu_threads()) if (chunks > 1) schedule(dynamic)")          \
    for (int64_t c = 0; c < chunks; c++) {                                                           \
      const optim_entry *t = &e[optim_find_entry(e, n, c)];                                          \
      int64_t lo = (c - t->chunk0) * OPTIM_CHUNK, hi = lo + OPTIM_CHUNK < t->n ? lo + OPTIM_CHUNK : t->n; \
      OP##_range(t, &k->a, lo, hi, CPU_DT_##SUF);                                                    \
    }                                                                                                 \
    return LOOM_OK;                                                                                   \
  }

#define OPTIM_KERNELS(OP) OPTIM_KERNEL(OP, f32) OPTIM_KERNEL(OP, f64) OPTIM_KERNEL(OP, f16) OPTIM_KERNEL(OP, bf16)
OPTIM_KERNELS(sgd)
OPTIM_KERNELS(adam)
OPTIM_KERNELS(rmsprop)

#define OPTIM_REG(OP)                                                  \
  core_register(LOOM_CPU, CORE_OP_##OP##_step, LOOM_F32, OP##_f32);    \
  core_register(LOOM_CPU, CORE_OP_##OP##_step, LOOM_F64, OP##_f64);    \
  core_register(LOOM_CPU, CORE_OP_##OP##_step, LOOM_F16, OP##_f16);    \
  core_register(LOOM_CPU, CORE_OP_##OP##_step, LOOM_BF16, OP##_bf16);

void cpu_register_optim(void) {
  OPTIM_REG(sgd)
  OPTIM_REG(adam)
  OPTIM_REG(rmsprop)
}
