/* Sparse (COO) x dense: loom_sparse_mm and loom_sparse_to_dense.
 * A COO matrix [rows, cols] is indices [2, nnz] LOOM_I64 (row indices, then
 * column indices) and values [nnz]. sparse_mm is a kernel op (CPU: CSR built
 * per call, OpenMP over rows; CUDA: cuSPARSE SpMM); its backward is written
 * with ops: d dense = A^T @ g (sparse_mm of the transposed indices) and
 * d values[e] = dot(g[row_e], dense[col_e]). sparse_to_dense is a scatter_add
 * into a flat zero matrix, differentiable w.r.t. values through scatter_add. */
#include "core/autograd_impl.h"

/* Checks the COO operands; on failure records an error naming op and returns false. */
static bool check_coo(const char *op, const loom_tensor *indices, const loom_tensor *values, int64_t rows,
                      int64_t cols) {
  if (!indices || !values) {
    core_null_error("%s: %s is NULL", op, !indices ? "indices" : "values");
    return false;
  }
  if (rows < 0 || cols < 0) {
    core_set_error(LOOM_ERR_INVALID, "%s: the sparse matrix size [%lld, %lld] is negative", op, (long long)rows,
                   (long long)cols);
    return false;
  }
  if (indices->dtype != LOOM_I64 || indices->shape.ndim != 2 || indices->shape.d[0] != 2) {
    core_set_error(LOOM_ERR_INVALID, "%s: indices must be i64 [2, nnz], got %s %s", op,
                   loom_dtype_name(indices->dtype), loom_shape_str(indices->shape));
    return false;
  }
  int64_t nnz = indices->shape.d[1];
  if (!loom_dtype_is_float(values->dtype) || values->shape.ndim != 1 || values->shape.d[0] != nnz) {
    core_set_error(LOOM_ERR_INVALID, "%s: values must be floating [nnz] = [%lld] to match indices %s, got %s %s", op,
                   (long long)nnz, loom_shape_str(indices->shape), loom_dtype_name(values->dtype),
                   loom_shape_str(values->shape));
    return false;
  }
  return core_check_same_device(op, indices, values);
}

/* Fails unless every row index lies in [0, rows) and every column index in [0, cols). */
static loom_status check_coords(const char *op, const loom_tensor *idx, int64_t rows, int64_t cols) {
  if (idx->shape.d[1] == 0) return LOOM_OK;
  loom_status st = LOOM_OK;
  loom_scope_begin();
  loom_no_grad_begin();
  for (int which = 0; which < 2 && st == LOOM_OK; which++) {
    loom_tensor *line = loom_select(idx, 0, which);
    double lo = loom_item(loom_min_all(line)), hi = loom_item(loom_max_all(line));
    int64_t size = which ? cols : rows;
    if (lo != lo || hi != hi) st = loom_last_status() ? loom_last_status() : LOOM_ERR_INVALID;
    else if (lo < 0 || hi >= (double)size)
      st = core_set_error(LOOM_ERR_INVALID, "%s: %s index %lld is out of range for a sparse matrix [%lld, %lld]", op,
                          which ? "column" : "row", (long long)(lo < 0 ? lo : hi), (long long)rows, (long long)cols);
  }
  loom_no_grad_end();
  loom_scope_end();
  return st;
}

/* The kernel on checked, contiguous operands (no autograd). A new tensor in the current scope, or NULL. */
static loom_tensor *launch(const loom_tensor *idx, const loom_tensor *values, int64_t rows, int64_t cols,
                           const loom_tensor *dense) {
  loom_tensor *out = core_new(LOOM_SHAPE(rows, dense->shape.d[1]), dense->dtype, dense->storage->device);
  if (!out) return NULL;
  core_kctx k = {CORE_OP_sparse_mm, 3, 1, {(loom_tensor *)values, (loom_tensor *)idx, (loom_tensor *)dense}, {out},
                 {{rows, cols, dense->shape.d[1], idx->shape.d[1]}, {0}}, NULL};
  return core_launch(&k) == LOOM_OK ? out : NULL;
}

/* saved: indices (contiguous I64), values, dense; a.i[0..1] = rows, cols. */
static void sparse_mm_bw(core_node *n, const loom_tensor *g, loom_tensor **gin) {
  const loom_tensor *idx = n->saved[0], *values = n->saved[1], *dense = n->saved[2];
  int64_t rows = n->a.i[0], cols = n->a.i[1];
  loom_tensor *row = loom_select(idx, 0, 0), *col = loom_select(idx, 0, 1);
  loom_tensor *gc = loom_contiguous(g);
  if (core_needs(n, 0)) {
    int d1 = 1;
    loom_tensor *prod = loom_mul(loom_index_select(gc, 0, row), loom_index_select(dense, 0, col));
    gin[0] = loom_sum(prod, &d1, 1, false);
  }
  if (core_needs(n, 1) && gc) {
    loom_tensor *swap[2] = {col, row};
    loom_tensor *tidx = loom_contiguous(loom_stack(swap, 2, 0));
    gin[1] = tidx ? launch(tidx, values, cols, rows, gc) : NULL;
  }
}

loom_tensor *loom_sparse_mm(const loom_tensor *indices, const loom_tensor *values, int64_t rows, int64_t cols,
                            const loom_tensor *dense) {
  if (!check_coo("sparse_mm", indices, values, rows, cols)) return NULL;
  if (!dense) {
    core_null_error("sparse_mm: dense is NULL");
    return NULL;
  }
  if (dense->shape.ndim != 2 || dense->shape.d[0] != cols) {
    core_set_error(LOOM_ERR_INVALID, "sparse_mm: dense must be [cols, k] = [%lld, k] for a sparse matrix [%lld, %lld], got %s",
                   (long long)cols, (long long)rows, (long long)cols, loom_shape_str(dense->shape));
    return NULL;
  }
  if (dense->dtype != values->dtype) {
    core_set_error(LOOM_ERR_INVALID, "sparse_mm: values dtype %s does not match dense dtype %s",
                   loom_dtype_name(values->dtype), loom_dtype_name(dense->dtype));
    return NULL;
  }
  if (!core_check_same_device("sparse_mm", values, dense)) return NULL;
  if (check_coords("sparse_mm", indices, rows, cols) != LOOM_OK) return NULL;
  loom_scope_begin();
  loom_no_grad_begin();
  loom_tensor *idx = loom_contiguous(indices), *vc = loom_contiguous(values), *dc = loom_contiguous(dense);
  loom_no_grad_end();
  loom_tensor *out = idx && vc && dc ? launch(idx, vc, rows, cols, dc) : NULL;
  const loom_tensor *ins[2] = {values, dense};
  if (out && core_grad_needed(2, ins)) {
    core_node *n = core_record("sparse_mm", sparse_mm_bw, out, 2, ins);
    if (n) {
      core_save(n, idx);
      core_save(n, vc);
      core_save(n, dc);
      n->a.i[0] = rows;
      n->a.i[1] = cols;
    }
  }
  loom_keep(out);
  loom_scope_end();
  return out;
}

loom_tensor *loom_sparse_to_dense(const loom_tensor *indices, const loom_tensor *values, int64_t rows, int64_t cols) {
  if (!check_coo("sparse_to_dense", indices, values, rows, cols)) return NULL;
  if (check_coords("sparse_to_dense", indices, rows, cols) != LOOM_OK) return NULL;
  loom_scope_begin();
  loom_device dev = values->storage->device;
  loom_tensor *flat = NULL;
  if (indices->shape.d[1] > 0) {
    loom_no_grad_begin();
    loom_tensor *where = loom_add(loom_mul(loom_select(indices, 0, 0), loom_scalar_like(indices, (double)cols)),
                                  loom_select(indices, 0, 1));
    loom_no_grad_end();
    flat = loom_scatter_add(loom_zeros(LOOM_SHAPE(rows * cols), values->dtype, dev), 0, where, values);
  } else {
    flat = loom_zeros(LOOM_SHAPE(rows * cols), values->dtype, dev);
  }
  loom_tensor *out = loom_reshape(flat, LOOM_SHAPE(rows, cols));
  loom_keep(out);
  loom_scope_end();
  return out;
}
