/* uniform, normal and randint from the Philox mapping of src/core/philox.h,
 * so that the CPU and CUDA draw the same numbers. */
#include "core/philox.h"
#include "cpu/cpu.h"

#define PAR_BLOCKS "omp parallel for num_threads(cpu_threads()) if (blocks > CPU_PARALLEL_MIN / 4)"

/* Element k: counter offset + k / 4, lane k % 4. TC is the type the maths runs in. */
#define UNIFORM(d, TC)                                                              \
  static loom_status uniform_##d(const core_kctx *k) {                              \
    if (cpu_need_contiguous("uniform", k->out, 1)) return loom_last_status();       \
    CPU_T_##d *o = core_ptr(k->out[0]);                                             \
    int64_t n = core_numel(k->out[0]), blocks = (n + 3) / 4;                        \
    uint64_t seed = (uint64_t)k->a.i[0], offset = (uint64_t)k->a.i[1];              \
    TC lo = (TC)k->a.f[0], span = (TC)k->a.f[1] - lo;                               \
    _Pragma(PAR_BLOCKS)                                                             \
    for (int64_t b = 0; b < blocks; b++) {                                          \
      core_u32x4 r = core_philox(seed, offset + (uint64_t)b);                       \
      for (int l = 0; l < 4 && 4 * b + l < n; l++)                                  \
        o[4 * b + l] = (CPU_T_##d)(lo + (TC)core_u01(r.v[l]) * span);               \
    }                                                                               \
    return LOOM_OK;                                                                 \
  }
UNIFORM(f32, float)
UNIFORM(f64, double)

/* Element k: counter offset + k / 2, lanes 2 (k % 2) and 2 (k % 2) + 1 (Box-Muller). */
#define NORMAL(d, TC, LOG, SQRT, COS)                                               \
  static loom_status normal_##d(const core_kctx *k) {                               \
    if (cpu_need_contiguous("normal", k->out, 1)) return loom_last_status();        \
    CPU_T_##d *o = core_ptr(k->out[0]);                                             \
    int64_t n = core_numel(k->out[0]), blocks = (n + 1) / 2;                        \
    uint64_t seed = (uint64_t)k->a.i[0], offset = (uint64_t)k->a.i[1];              \
    TC mean = (TC)k->a.f[0], std = (TC)k->a.f[1];                                   \
    const TC two_pi = (TC)6.283185307179586476925;                                  \
    _Pragma(PAR_BLOCKS)                                                             \
    for (int64_t b = 0; b < blocks; b++) {                                          \
      core_u32x4 r = core_philox(seed, offset + (uint64_t)b);                       \
      for (int m = 0; m < 2 && 2 * b + m < n; m++) {                                \
        TC u0 = (TC)core_u01_open0(r.v[2 * m]), u1 = (TC)core_u01(r.v[2 * m + 1]);  \
        TC z = SQRT((TC)-2 * LOG(u0)) * COS(two_pi * u1);                           \
        o[2 * b + m] = (CPU_T_##d)(mean + z * std);                                 \
      }                                                                             \
    }                                                                               \
    return LOOM_OK;                                                                 \
  }
NORMAL(f32, float, logf, sqrtf, cosf)
NORMAL(f64, double, log, sqrt, cos)

/* Element k: counter offset + k / 4, lane k % 4; low + lane mod (high - low). */
#define RANDINT(d)                                                                  \
  static loom_status randint_##d(const core_kctx *k) {                              \
    if (cpu_need_contiguous("randint", k->out, 1)) return loom_last_status();       \
    int64_t low = k->a.i[2], high = k->a.i[3];                                      \
    if (high <= low)                                                                \
      return core_set_error(LOOM_ERR_INVALID, "randint: empty range [%lld, %lld)",  \
                            (long long)low, (long long)high);                       \
    CPU_T_##d *o = core_ptr(k->out[0]);                                             \
    int64_t n = core_numel(k->out[0]), blocks = (n + 3) / 4;                        \
    uint64_t seed = (uint64_t)k->a.i[0], offset = (uint64_t)k->a.i[1];              \
    uint64_t range = (uint64_t)high - (uint64_t)low;                                \
    _Pragma(PAR_BLOCKS)                                                             \
    for (int64_t b = 0; b < blocks; b++) {                                          \
      core_u32x4 r = core_philox(seed, offset + (uint64_t)b);                       \
      for (int l = 0; l < 4 && 4 * b + l < n; l++)                                  \
        o[4 * b + l] = (CPU_T_##d)(low + (int64_t)((uint64_t)r.v[l] % range));      \
    }                                                                               \
    return LOOM_OK;                                                                 \
  }
RANDINT(f32)
RANDINT(f64)
RANDINT(i32)
RANDINT(i64)
RANDINT(u8)

void cpu_register_random(void) {
  core_register(LOOM_CPU, CORE_OP_uniform, LOOM_F32, uniform_f32);
  core_register(LOOM_CPU, CORE_OP_uniform, LOOM_F64, uniform_f64);
  core_register(LOOM_CPU, CORE_OP_normal, LOOM_F32, normal_f32);
  core_register(LOOM_CPU, CORE_OP_normal, LOOM_F64, normal_f64);
  core_register(LOOM_CPU, CORE_OP_randint, LOOM_F32, randint_f32);
  core_register(LOOM_CPU, CORE_OP_randint, LOOM_F64, randint_f64);
  core_register(LOOM_CPU, CORE_OP_randint, LOOM_I32, randint_i32);
  core_register(LOOM_CPU, CORE_OP_randint, LOOM_I64, randint_i64);
  core_register(LOOM_CPU, CORE_OP_randint, LOOM_U8, randint_u8);
}
