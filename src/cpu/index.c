/* index_select, gather, scatter_add and one_hot over contiguous [O, D, I] views.
 * Indices are checked again here so that a bad one can never read or write
 * out of bounds. */
#include <string.h>

#include "cpu/cpu.h"

/* Each parallel loop below names its amount of work `work`. */
#define PARALLEL_WORK "omp parallel for num_threads(cpu_threads()) if (work > CPU_PARALLEL_MIN) schedule(static)"

/* Fails unless each of the n indices (stride apart) lies in [0, size). */
static loom_status check_range(const char *op, const int64_t *idx, int64_t n, int64_t stride, int64_t size) {
  for (int64_t j = 0; j < n; j++)
    if (idx[j * stride] < 0 || idx[j * stride] >= size)
      return core_set_error(LOOM_ERR_INVALID, "%s: index %lld out of range for size %lld", op,
                            (long long)idx[j * stride], (long long)size);
  return LOOM_OK;
}

static loom_status check_sizes(const char *op, const loom_tensor *t, int64_t numel, const char *what) {
  if (core_numel(t) != numel)
    return core_set_error(LOOM_ERR_INVALID, "%s: %s has shape %s, expected %lld elements", op, what,
                          loom_shape_str(t->shape), (long long)numel);
  return LOOM_OK;
}

static bool bad_index_dtype(const char *op, const loom_tensor *t) {
  if (t->dtype == LOOM_I64) return false;
  core_set_error(LOOM_ERR_INVALID, "%s: index has dtype %s, expected i64", op, loom_dtype_name(t->dtype));
  return true;
}

/* out[o, k, :] = x[o, index[k], :], copying whole rows of I elements. */
static loom_status index_select_kernel(const core_kctx *k) {
  int64_t O = k->a.i[0], D = k->a.i[1], I = k->a.i[2], K = k->a.i[3];
  const loom_tensor *x = k->in[0], *index = k->in[1], *out = k->out[0];
  if (bad_index_dtype("index_select", index) || check_sizes("index_select", x, O * D * I, "input") ||
      check_sizes("index_select", index, K, "index") || check_sizes("index_select", out, O * K * I, "output") ||
      cpu_need_contiguous("index_select", k->in, 1) || cpu_need_contiguous("index_select", k->out, 1))
    return loom_last_status();
  if (x->dtype != out->dtype)
    return core_set_error(LOOM_ERR_INVALID, "index_select: input dtype %s but output dtype %s",
                          loom_dtype_name(x->dtype), loom_dtype_name(out->dtype));
  const int64_t *idx = core_ptr(index);
  int64_t istride = index->shape.ndim == 1 ? index->strides[0] : 1;
  if (check_range("index_select", idx, K, istride, D)) return loom_last_status();
  size_t row = (size_t)I * loom_dtype_size(x->dtype);
  const char *src = core_ptr(x);
  char *dst = core_ptr(out);
  int64_t rows = O * K, work = O * K * I;
  _Pragma(PARALLEL_WORK)
  for (int64_t r = 0; r < rows; r++) {
    int64_t o = r / K, kk = r % K;
    memcpy(dst + (size_t)r * row, src + (size_t)(o * D + idx[kk * istride]) * row, row);
  }
  return LOOM_OK;
}

/* gather moves elements of any dtype by size; scatter_add adds in its dtype. */
#define GATHER(T)                                                                                              \
  static void gather_##T(T *out, const T *x, const int64_t *idx, int64_t O, int64_t D, int64_t I, int64_t K) { \
    int64_t work = O * K * I;                                                                                  \
    _Pragma(PARALLEL_WORK)                                                                                     \
    for (int64_t e = 0; e < work; e++) {                                                                       \
      int64_t i = e % I, o = e / (K * I);                                                                      \
      out[e] = x[(o * D + idx[e]) * I + i];                                                                    \
    }                                                                                                          \
  }
GATHER(uint8_t)
GATHER(uint16_t)
GATHER(uint32_t)
GATHER(uint64_t)

/* gather and scatter_add: big is the [O, D, I] operand, small the [O, K, I] one. */
static loom_status check_gather_args(const char *op, const core_kctx *k, const loom_tensor *big,
                                     const loom_tensor *small) {
  int64_t O = k->a.i[0], D = k->a.i[1], I = k->a.i[2], K = k->a.i[3];
  if (bad_index_dtype(op, k->in[1]) || check_sizes(op, big, O * D * I, "the [O, D, I] operand") ||
      check_sizes(op, small, O * K * I, "the [O, K, I] operand") || check_sizes(op, k->in[1], O * K * I, "index") ||
      cpu_need_contiguous(op, k->in, 2) || cpu_need_contiguous(op, k->out, 1))
    return loom_last_status();
  if (k->in[0]->dtype != k->out[0]->dtype)
    return core_set_error(LOOM_ERR_INVALID, "%s: input dtype %s but output dtype %s", op,
                          loom_dtype_name(k->in[0]->dtype), loom_dtype_name(k->out[0]->dtype));
  return check_range(op, core_ptr(k->in[1]), O * K * I, 1, D);
}

static loom_status gather_kernel(const core_kctx *k) {
  if (check_gather_args("gather", k, k->in[0], k->out[0])) return loom_last_status();
  int64_t O = k->a.i[0], D = k->a.i[1], I = k->a.i[2], K = k->a.i[3];
  void *out = core_ptr(k->out[0]);
  const void *x = core_ptr(k->in[0]);
  const int64_t *idx = core_ptr(k->in[1]);
  switch (loom_dtype_size(k->in[0]->dtype)) {
  case 1: gather_uint8_t(out, x, idx, O, D, I, K); break;
  case 2: gather_uint16_t(out, x, idx, O, D, I, K); break;
  case 4: gather_uint32_t(out, x, idx, O, D, I, K); break;
  default: gather_uint64_t(out, x, idx, O, D, I, K); break;
  }
  return LOOM_OK;
}

/* out[o, index[o, k, i], i] += src[o, k, i] (a.i[4] = 1: = src, the last k
 * wins). Work items are one o and up to COLS columns, so no two threads touch
 * the same element and k runs in order. */
#define COLS 64
#define SCATTER_ADD(d, SUM)                                                            \
  static loom_status scatter_add_##d(const core_kctx *k) {                             \
    if (check_gather_args("scatter_add", k, k->out[0], k->in[0]))                      \
      return loom_last_status();                                                       \
    int64_t O = k->a.i[0], D = k->a.i[1], I = k->a.i[2], K = k->a.i[3];                \
    CPU_T_##d *out = core_ptr(k->out[0]);                                              \
    const CPU_T_##d *src = core_ptr(k->in[0]);                                         \
    const int64_t *idx = core_ptr(k->in[1]);                                           \
    int64_t nc = (I + COLS - 1) / COLS, items = O * nc, work = O * K * I;              \
    const bool put = k->a.i[4] != 0;                                                   \
    _Pragma(PARALLEL_WORK)                                                             \
    for (int64_t it = 0; it < items; it++) {                                           \
      int64_t o = it / nc, i0 = it % nc * COLS, i1 = i0 + COLS < I ? i0 + COLS : I;    \
      for (int64_t kk = 0; kk < K; kk++)                                               \
        for (int64_t i = i0; i < i1; i++) {                                            \
          int64_t e = (o * K + kk) * I + i;                                            \
          CPU_T_##d *a = &out[(o * D + idx[e]) * I + i], b = src[e];                   \
          *a = put ? b : (CPU_T_##d)(SUM);                                             \
        }                                                                              \
    }                                                                                  \
    return LOOM_OK;                                                                    \
  }
SCATTER_ADD(f32, *a + b)
SCATTER_ADD(f64, *a + b)
SCATTER_ADD(i32, (uint64_t)*a + (uint64_t)b)
SCATTER_ADD(i64, (uint64_t)*a + (uint64_t)b)
SCATTER_ADD(u8, *a + b)

/* out[n, c] = (index[n] == c) for c in [0, C). */
static loom_status one_hot_kernel(const core_kctx *k) {
  const loom_tensor *index = k->in[0], *out = k->out[0];
  int64_t N = core_numel(index), C = k->a.i[0];
  if (bad_index_dtype("one_hot", index) || check_sizes("one_hot", out, N * C, "output") ||
      cpu_need_contiguous("one_hot", k->in, 1) || cpu_need_contiguous("one_hot", k->out, 1))
    return loom_last_status();
  if (out->dtype != LOOM_I64)
    return core_set_error(LOOM_ERR_INVALID, "one_hot: output dtype %s, expected i64", loom_dtype_name(out->dtype));
  const int64_t *idx = core_ptr(index);
  if (check_range("one_hot", idx, N, 1, C)) return loom_last_status();
  int64_t *o = core_ptr(out);
  memset(o, 0, (size_t)(N * C) * sizeof *o);
  for (int64_t n = 0; n < N; n++) o[n * C + idx[n]] = 1;
  return LOOM_OK;
}

#define REG_MOVES(d)                                                              \
  core_register(LOOM_CPU, CORE_OP_index_select, CPU_DT_##d, index_select_kernel); \
  core_register(LOOM_CPU, CORE_OP_gather, CPU_DT_##d, gather_kernel);
#define REG_SCATTER(d) core_register(LOOM_CPU, CORE_OP_scatter_add, CPU_DT_##d, scatter_add_##d);

void cpu_register_index(void) {
  REG_MOVES(f32)
  REG_MOVES(f64)
  REG_MOVES(i32)
  REG_MOVES(i64)
  REG_MOVES(u8)
  REG_MOVES(boolean)
  REG_SCATTER(f32)
  REG_SCATTER(f64)
  REG_SCATTER(i32)
  REG_SCATTER(i64)
  REG_SCATTER(u8)
  core_register(LOOM_CPU, CORE_OP_one_hot, LOOM_I64, one_hot_kernel);
}
