/* copy (strided, casting between any two dtypes), fill and arange. */
#include <string.h>

#include "cpu/iter.h"

/* Per dtype: storage type, value read as a computing type, value written back. */
#define GET_f32(p) (*(const float *)(p))
#define GET_f64(p) (*(const double *)(p))
#define GET_f16(p) core_half_to_float(*(const uint16_t *)(p))
#define GET_bf16(p) core_bf16_to_float(*(const uint16_t *)(p))
#define GET_i32(p) (*(const int32_t *)(p))
#define GET_i64(p) (*(const int64_t *)(p))
#define GET_u8(p) (*(const uint8_t *)(p))
#define GET_boolean(p) (*(const uint8_t *)(p))
#define PUT_f32(p, v) (*(float *)(p) = (float)(v))
#define PUT_f64(p, v) (*(double *)(p) = (double)(v))
#define PUT_f16(p, v) (*(uint16_t *)(p) = core_float_to_half((float)(v)))
#define PUT_bf16(p, v) (*(uint16_t *)(p) = core_float_to_bf16((float)(v)))
#define PUT_i32(p, v) (*(int32_t *)(p) = (int32_t)(v))
#define PUT_i64(p, v) (*(int64_t *)(p) = (int64_t)(v))
#define PUT_u8(p, v) (*(uint8_t *)(p) = (uint8_t)(v))
#define PUT_boolean(p, v) (*(uint8_t *)(p) = (uint8_t)((v) != 0))

/* Every dtype in loom_dtype order; two copies so that they can nest. */
#define DTYPES_A(X, ...) X(f32, __VA_ARGS__) X(f64, __VA_ARGS__) X(f16, __VA_ARGS__) X(bf16, __VA_ARGS__) \
  X(i32, __VA_ARGS__) X(i64, __VA_ARGS__) X(u8, __VA_ARGS__) X(boolean, __VA_ARGS__)
#define DTYPES_B(X, ...) X(f32, __VA_ARGS__) X(f64, __VA_ARGS__) X(f16, __VA_ARGS__) X(bf16, __VA_ARGS__) \
  X(i32, __VA_ARGS__) X(i64, __VA_ARGS__) X(u8, __VA_ARGS__) X(boolean, __VA_ARGS__)

/* Operand 0 is the destination, operand 1 the source. */
#define CAST_LOOP(dst, src)                                                                   \
  static void cast_##src##_##dst(char **p, const int64_t *s, int64_t n, const void *ctx) {    \
    (void)ctx;                                                                                \
    const int64_t ds = (int64_t)sizeof(CPU_T_##dst), ss = (int64_t)sizeof(CPU_T_##src);       \
    if (s[0] == ds && s[1] == ss)                                                             \
      for (int64_t j = 0; j < n; j++) PUT_##dst(p[0] + j * ds, GET_##src(p[1] + j * ss));     \
    else                                                                                      \
      for (int64_t j = 0; j < n; j++) PUT_##dst(p[0] + j * s[0], GET_##src(p[1] + j * s[1])); \
  }
#define CAST_LOOPS_FROM(src, _) DTYPES_B(CAST_LOOP, src)
DTYPES_A(CAST_LOOPS_FROM, _)

#define CAST_ENTRY(dst, src) cast_##src##_##dst,
#define CAST_ROW(src, _) {DTYPES_B(CAST_ENTRY, src)},
/* cast_loops[src][dst] */
static const cpu_loop_fn cast_loops[LOOM_DTYPE_COUNT][LOOM_DTYPE_COUNT] = {DTYPES_A(CAST_ROW, _)};

static void move_loop(char **p, const int64_t *s, int64_t n, const void *ctx) {
  size_t es = *(const size_t *)ctx;
  if (s[0] == (int64_t)es && s[1] == (int64_t)es) {
    memcpy(p[0], p[1], (size_t)n * es);
    return;
  }
  switch (es) {
#define MOVE_CASE(T)                                                                         \
  case sizeof(T):                                                                            \
    for (int64_t j = 0; j < n; j++) *(T *)(p[0] + j * s[0]) = *(const T *)(p[1] + j * s[1]); \
    break;
    MOVE_CASE(uint8_t)
    MOVE_CASE(uint16_t)
    MOVE_CASE(uint32_t)
    MOVE_CASE(uint64_t)
#undef MOVE_CASE
  default:
    for (int64_t j = 0; j < n; j++) memcpy(p[0] + j * s[0], p[1] + j * s[1], es);
  }
}

static loom_status copy_kernel(const core_kctx *k) {
  loom_tensor *t[2] = {k->out[0], k->in[0]};
  loom_dtype src = k->in[0]->dtype, dst = k->out[0]->dtype;
  if (src == dst) {
    size_t es = loom_dtype_size(src);
    return cpu_foreach("copy", t, 2, move_loop, &es);
  }
  return cpu_foreach("copy", t, 2, cast_loops[src][dst], NULL);
}

/* Converts v to dtype dt into element i of buf (via the PUT_* rules above). */
#define PUT_CASE(d, _) \
  case CPU_DT_##d: PUT_##d((char *)buf + i * (int64_t)sizeof(CPU_T_##d), v); break;
void cpu_put_f64(void *buf, loom_dtype dt, int64_t i, double v) {
  switch (dt) { DTYPES_A(PUT_CASE, _) default: break; }
}
void cpu_put_i64(void *buf, loom_dtype dt, int64_t i, int64_t v) {
  switch (dt) { DTYPES_A(PUT_CASE, _) default: break; }
}

/* fill: ctx is the value as one element of the destination dtype (8 bytes at most). */
typedef struct fill_value { size_t size; unsigned char bytes[8]; } fill_value;

static void fill_loop(char **p, const int64_t *s, int64_t n, const void *ctx) {
  const fill_value *v = ctx;
  switch (v->size) {
#define FILL_CASE(T)                                                 \
  case sizeof(T): {                                                  \
    T x;                                                             \
    memcpy(&x, v->bytes, sizeof x);                                  \
    for (int64_t j = 0; j < n; j++) *(T *)(p[0] + j * s[0]) = x;     \
    break;                                                           \
  }
    FILL_CASE(uint8_t)
    FILL_CASE(uint16_t)
    FILL_CASE(uint32_t)
    FILL_CASE(uint64_t)
#undef FILL_CASE
  default: break;
  }
}

static loom_status fill_kernel(const core_kctx *k) {
  fill_value v = {loom_dtype_size(k->out[0]->dtype), {0}};
  cpu_put_f64(v.bytes, k->out[0]->dtype, 0, k->a.f[0]);
  loom_tensor *t[1] = {k->out[0]};
  return cpu_foreach("fill", t, 1, fill_loop, &v);
}

#define ARANGE(d)                                                                    \
  static loom_status arange_##d(const core_kctx *k) {                                \
    if (cpu_need_contiguous("arange", k->out, 1)) return loom_last_status();         \
    CPU_T_##d *o = core_ptr(k->out[0]);                                              \
    int64_t n = core_numel(k->out[0]);                                               \
    double start = k->a.f[0], step = k->a.f[1];                                      \
    _Pragma("omp parallel for num_threads(cpu_threads()) if (n > CPU_PARALLEL_MIN)") \
    for (int64_t j = 0; j < n; j++) PUT_##d(o + j, start + (double)j * step);        \
    return LOOM_OK;                                                                  \
  }
ARANGE(f32)
ARANGE(f64)
ARANGE(i32)
ARANGE(i64)
ARANGE(u8)

#define REG_COPY(d, _) core_register(LOOM_CPU, CORE_OP_copy, CPU_DT_##d, copy_kernel); \
  core_register(LOOM_CPU, CORE_OP_fill, CPU_DT_##d, fill_kernel);
#define REG_ARANGE(d) core_register(LOOM_CPU, CORE_OP_arange, CPU_DT_##d, arange_##d);

void cpu_register_copy(void) {
  DTYPES_A(REG_COPY, _)
  REG_ARANGE(f32)
  REG_ARANGE(f64)
  REG_ARANGE(i32)
  REG_ARANGE(i64)
  REG_ARANGE(u8)
}
