/* matmul: one OpenBLAS GEMM per batch entry (f32 and f64). */
#include <cblas.h>
#include <limits.h>
#include <string.h>

#include "cpu/cpu.h"

/* Fails unless the batch entries of t (element offsets b * stride .. + size)
 * all lie inside t's storage. */
static loom_status check_extent(const loom_tensor *t, const char *what, int64_t batches, int64_t stride, int64_t size) {
  int64_t have = (int64_t)(t->storage->nbytes / loom_dtype_size(t->dtype)) - t->offset;
  int64_t need = (batches - 1) * stride + size;
  if (stride < 0 || need > have)
    return core_set_error(LOOM_ERR_INVALID, "matmul: %s %s needs %lld elements (batch stride %lld) but holds %lld",
                          what, loom_shape_str(t->shape), (long long)need, (long long)stride, (long long)have);
  return LOOM_OK;
}

static loom_status check_args(const core_kctx *k) {
  const int64_t *a = k->a.i;
  int64_t B = a[2], M = a[3], N = a[4], K = a[5];
  if (B < 0 || M < 0 || N < 0 || K < 0 || M > INT_MAX || N > INT_MAX || K > INT_MAX)
    return core_set_error(LOOM_ERR_INVALID, "matmul: sizes B=%lld M=%lld N=%lld K=%lld out of range", (long long)B,
                          (long long)M, (long long)N, (long long)K);
  loom_dtype dt = k->in[0]->dtype;
  if (k->in[1]->dtype != dt || k->out[0]->dtype != dt)
    return core_set_error(LOOM_ERR_INVALID, "matmul: dtypes %s @ %s -> %s differ", loom_dtype_name(dt),
                          loom_dtype_name(k->in[1]->dtype), loom_dtype_name(k->out[0]->dtype));
  if (core_numel(k->out[0]) != B * M * N || cpu_need_contiguous("matmul", k->out, 1))
    return core_set_error(LOOM_ERR_INVALID, "matmul: output %s is not a contiguous [%lld, %lld, %lld]",
                          loom_shape_str(k->out[0]->shape), (long long)B, (long long)M, (long long)N);
  if (B == 0 || M == 0 || N == 0 || K == 0) return LOOM_OK;
  if (check_extent(k->in[0], "A", B, a[6], M * K) || check_extent(k->in[1], "B", B, a[7], K * N))
    return loom_last_status();
  return LOOM_OK;
}

#define MATMUL(d, GEMM)                                                                              \
  static loom_status matmul_##d(const core_kctx *k) {                                                \
    if (check_args(k)) return loom_last_status();                                                    \
    const int64_t *a = k->a.i;                                                                       \
    int64_t B = a[2], M = a[3], N = a[4], K = a[5], sa = a[6], sb = a[7];                            \
    CPU_T_##d *c = core_ptr(k->out[0]);                                                              \
    if (K == 0) { /* empty sums */                                                                   \
      memset(c, 0, (size_t)(B * M * N) * sizeof *c);                                                 \
      return LOOM_OK;                                                                                \
    }                                                                                                \
    if (cpu_blas_room("matmul")) return loom_last_status();                                          \
    const CPU_T_##d *pa = core_ptr(k->in[0]), *pb = core_ptr(k->in[1]);                              \
    int lda = (int)(a[0] ? M : K), ldb = (int)(a[1] ? K : N);                                        \
    int team = cpu_blas_begin((double)M * N * K);                                                    \
    for (int64_t b = 0; b < B; b++)                                                                  \
      GEMM(CblasRowMajor, a[0] ? CblasTrans : CblasNoTrans, a[1] ? CblasTrans : CblasNoTrans,        \
           (int)M, (int)N, (int)K, 1, pa + b * sa, lda, pb + b * sb, ldb, 0, c + b * M * N, (int)N); \
    cpu_blas_end(team);                                                                              \
    return LOOM_OK;                                                                                  \
  }
MATMUL(f32, cblas_sgemm)
MATMUL(f64, cblas_dgemm)

void cpu_register_matmul(void) {
  core_register(LOOM_CPU, CORE_OP_matmul, LOOM_F32, matmul_f32);
  core_register(LOOM_CPU, CORE_OP_matmul, LOOM_F64, matmul_f64);
}
