/* sparse_mm on the CPU: out [rows, K] = A @ dense for a COO matrix A.
 * Each call sorts the entries by row (a stable counting sort: a CSR row
 * pointer plus a permutation), then OpenMP threads take whole output rows,
 * so no two threads write the same element and nothing needs atomics. An
 * entry's contributions are added in their COO order within a row. */
#include <stdlib.h>
#include <string.h>

#include "cpu/cpu.h"

typedef struct csr {
  int64_t *rowptr; /* [rows + 1] */
  int64_t *order;  /* [nnz]: entry indices sorted by row, stable */
} csr;

/* Checks every index, then builds the row pointer and the order. */
static loom_status build_csr(const int64_t *row, const int64_t *col, int64_t rows, int64_t cols, int64_t nnz,
                             csr *c) {
  for (int64_t e = 0; e < nnz; e++)
    if (row[e] < 0 || row[e] >= rows || col[e] < 0 || col[e] >= cols)
      return core_set_error(LOOM_ERR_INVALID,
                            "sparse_mm: entry %lld at (%lld, %lld) is outside the sparse matrix [%lld, %lld]",
                            (long long)e, (long long)row[e], (long long)col[e], (long long)rows, (long long)cols);
  c->rowptr = calloc((size_t)rows + 1, sizeof(int64_t));
  c->order = malloc((size_t)(nnz ? nnz : 1) * sizeof(int64_t));
  int64_t *next = malloc((size_t)(rows ? rows : 1) * sizeof(int64_t));
  if (!c->rowptr || !c->order || !next) {
    free(c->rowptr);
    free(c->order);
    free(next);
    c->rowptr = c->order = NULL;
    return core_set_error(LOOM_ERR_OOM, "sparse_mm: out of host memory for the CSR of %lld rows, %lld entries",
                          (long long)rows, (long long)nnz);
  }
  for (int64_t e = 0; e < nnz; e++) c->rowptr[row[e] + 1]++;
  for (int64_t r = 0; r < rows; r++) c->rowptr[r + 1] += c->rowptr[r];
  memcpy(next, c->rowptr, (size_t)rows * sizeof(int64_t));
  for (int64_t e = 0; e < nnz; e++) c->order[next[row[e]]++] = e;
  free(next);
  return LOOM_OK;
}

#define SPARSE_MM(T)                                                                                  \
  static void spmm_##T(T *out, const T *val, const int64_t *col, const T *dense, const csr *c,       \
                       int64_t rows, int64_t K, int64_t nnz) {                                        \
    int64_t work = (nnz + rows) * K;                                                                  \
    _Pragma("omp parallel for num_threads(cpu_threads()) if (work > CPU_PARALLEL_MIN) schedule(static)") \
    for (int64_t r = 0; r < rows; r++) {                                                              \
      T *o = out + r * K;                                                                             \
      for (int64_t j = 0; j < K; j++) o[j] = 0;                                                       \
      for (int64_t p = c->rowptr[r]; p < c->rowptr[r + 1]; p++) {                                     \
        int64_t e = c->order[p];                                                                      \
        const T v = val[e], *d = dense + col[e] * K;                                                  \
        for (int64_t j = 0; j < K; j++) o[j] += v * d[j];                                             \
      }                                                                                               \
    }                                                                                                 \
  }
SPARSE_MM(float)
SPARSE_MM(double)

static loom_status sparse_mm_kernel(const core_kctx *k) {
  int64_t rows = k->a.i[0], cols = k->a.i[1], K = k->a.i[2], nnz = k->a.i[3];
  const loom_tensor *val = k->in[0], *idx = k->in[1], *dense = k->in[2], *out = k->out[0];
  if (idx->dtype != LOOM_I64 || core_numel(idx) != 2 * nnz || core_numel(val) != nnz ||
      core_numel(dense) != cols * K || core_numel(out) != rows * K)
    return core_set_error(LOOM_ERR_INVALID,
                          "sparse_mm: values %s, indices %s %s, dense %s, output %s do not fit rows, cols, K, nnz = "
                          "%lld, %lld, %lld, %lld",
                          loom_shape_str(val->shape), loom_dtype_name(idx->dtype), loom_shape_str(idx->shape),
                          loom_shape_str(dense->shape), loom_shape_str(out->shape), (long long)rows, (long long)cols,
                          (long long)K, (long long)nnz);
  if (val->dtype != dense->dtype || val->dtype != out->dtype)
    return core_set_error(LOOM_ERR_INVALID, "sparse_mm: values %s, dense %s and output %s must share a dtype",
                          loom_dtype_name(val->dtype), loom_dtype_name(dense->dtype), loom_dtype_name(out->dtype));
  if (cpu_need_contiguous("sparse_mm", k->in, 3) || cpu_need_contiguous("sparse_mm", k->out, 1))
    return loom_last_status();
  const int64_t *row = core_ptr(idx), *col = row + nnz;
  csr c;
  loom_status st = build_csr(row, col, rows, cols, nnz, &c);
  if (st) return st;
  if (val->dtype == LOOM_F32) spmm_float(core_ptr(out), core_ptr(val), col, core_ptr(dense), &c, rows, K, nnz);
  else spmm_double(core_ptr(out), core_ptr(val), col, core_ptr(dense), &c, rows, K, nnz);
  free(c.rowptr);
  free(c.order);
  return LOOM_OK;
}

void cpu_register_sparse(void) {
  core_register(LOOM_CPU, CORE_OP_sparse_mm, LOOM_F32, sparse_mm_kernel);
  core_register(LOOM_CPU, CORE_OP_sparse_mm, LOOM_F64, sparse_mm_kernel);
}
