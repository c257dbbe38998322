/* Loom operators. Every op returns a new tensor (NULL on error, see
 * loom_last_error) and returns NULL at once when given a NULL input, so a
 * chain can be checked once at its end. Elementwise ops broadcast like
 * PyTorch and promote dtypes like it: integer + float -> float, and a 0-d
 * operand sets the dtype only when it is of a higher category (bool <
 * integer < float) than the other: f32[n] * f64[] -> f32, i32[n] * f64[] -> f64. */
#ifndef LOOM_OPS_H
#define LOOM_OPS_H

#include "loom/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- elementwise, unary ---- */
loom_tensor *loom_neg(const loom_tensor *x);
loom_tensor *loom_abs(const loom_tensor *x);
loom_tensor *loom_sign(const loom_tensor *x);
loom_tensor *loom_exp(const loom_tensor *x);
loom_tensor *loom_log(const loom_tensor *x);
loom_tensor *loom_sqrt(const loom_tensor *x);
loom_tensor *loom_rsqrt(const loom_tensor *x);
loom_tensor *loom_sin(const loom_tensor *x);
loom_tensor *loom_cos(const loom_tensor *x);
loom_tensor *loom_relu(const loom_tensor *x);
loom_tensor *loom_sigmoid(const loom_tensor *x);
loom_tensor *loom_tanh(const loom_tensor *x);
loom_tensor *loom_square(const loom_tensor *x);
/* clamp to [lo, hi] (lo > hi gives hi everywhere, as in PyTorch); pass
 * -INFINITY / INFINITY for an open side (PyTorch's None). The gradient passes
 * only strictly inside the bounds: it is 0 at x == lo or x == hi and for NaN.
 * A NaN bound gives NaN everywhere (gradient 0); refused for integer x. */
loom_tensor *loom_clamp(const loom_tensor *x, double lo, double hi);
/* clamp with tensor bounds (PyTorch's clamp(x, min=lo, max=hi) with tensors):
 * x, lo and hi broadcast together and promote to one dtype; NULL for an open
 * side (not both). A NaN anywhere gives NaN; lo > hi gives hi. Gradients follow
 * PyTorch: one-sided it is maximum / minimum (ties split evenly, NaN gives
 * both all of it); two-sided see docs/tensors.md "Ops". */
loom_tensor *loom_clamp_tensor(const loom_tensor *x, const loom_tensor *lo, const loom_tensor *hi);

/* ---- elementwise, binary ---- */
loom_tensor *loom_add(const loom_tensor *a, const loom_tensor *b);
loom_tensor *loom_sub(const loom_tensor *a, const loom_tensor *b);
loom_tensor *loom_mul(const loom_tensor *a, const loom_tensor *b);
loom_tensor *loom_div(const loom_tensor *a, const loom_tensor *b);
loom_tensor *loom_pow(const loom_tensor *a, const loom_tensor *b);
loom_tensor *loom_maximum(const loom_tensor *a, const loom_tensor *b);
loom_tensor *loom_minimum(const loom_tensor *a, const loom_tensor *b);
loom_tensor *loom_add_scalar(const loom_tensor *a, double s);
loom_tensor *loom_mul_scalar(const loom_tensor *a, double s);
loom_tensor *loom_pow_scalar(const loom_tensor *a, double exponent);
/* Comparisons and logical ops return LOOM_BOOL tensors. */
loom_tensor *loom_eq(const loom_tensor *a, const loom_tensor *b);
loom_tensor *loom_ne(const loom_tensor *a, const loom_tensor *b);
loom_tensor *loom_lt(const loom_tensor *a, const loom_tensor *b);
loom_tensor *loom_le(const loom_tensor *a, const loom_tensor *b);
loom_tensor *loom_gt(const loom_tensor *a, const loom_tensor *b);
loom_tensor *loom_ge(const loom_tensor *a, const loom_tensor *b);
loom_tensor *loom_logical_and(const loom_tensor *a, const loom_tensor *b);
loom_tensor *loom_logical_or(const loom_tensor *a, const loom_tensor *b);
loom_tensor *loom_logical_xor(const loom_tensor *a, const loom_tensor *b);
loom_tensor *loom_logical_not(const loom_tensor *x);

/* ---- selection and indexing ---- */
/* cond ? a : b, broadcast over all three; cond is LOOM_BOOL. */
loom_tensor *loom_where(const loom_tensor *cond, const loom_tensor *a, const loom_tensor *b);
loom_tensor *loom_masked_fill(const loom_tensor *x, const loom_tensor *mask, double value);
/* index is a 1-d LOOM_I64 tensor. */
loom_tensor *loom_index_select(const loom_tensor *x, int dim, const loom_tensor *index);
/* index is LOOM_I64 with x's ndim; out[i][j] = x[index[i][j]][j] for dim 0. */
loom_tensor *loom_gather(const loom_tensor *x, int dim, const loom_tensor *index);
/* out = copy of x; out[index[i][j]][j] += src[i][j] for dim 0. */
loom_tensor *loom_scatter_add(const loom_tensor *x, int dim, const loom_tensor *index, const loom_tensor *src);
/* out = copy of x; out[index[i][j]][j] = src[i][j] for dim 0 (Tensor.scatter).
 * Where index repeats, the last source wins (CPU; CUDA under
 * loom_set_deterministic(true), else any one of them, as in PyTorch). Gradient:
 * x's is zero where written, src's is the gather of the output's. */
loom_tensor *loom_scatter(const loom_tensor *x, int dim, const loom_tensor *index, const loom_tensor *src);
/* LOOM_I64 output of shape index.shape + [num_classes]; num_classes < 0 infers max+1. */
loom_tensor *loom_one_hot(const loom_tensor *index, int64_t num_classes);

/* ---- reductions ----
 * dims/ndims name the reduced dims (negative counts from the end);
 * dims == NULL or ndims == 0 reduces over every dim. */
loom_tensor *loom_sum(const loom_tensor *x, const int *dims, int ndims, bool keepdim);
loom_tensor *loom_mean(const loom_tensor *x, const int *dims, int ndims, bool keepdim);
/* Divides by max(0, N - correction) like PyTorch: correction 1 = unbiased (its
 * default), 0 = population, any real number; N <= correction gives inf (NaN
 * where every value equals the mean) and the gradient PyTorch gives. */
loom_tensor *loom_var(const loom_tensor *x, const int *dims, int ndims, double correction, bool keepdim);
loom_tensor *loom_std(const loom_tensor *x, const int *dims, int ndims, double correction, bool keepdim);
loom_tensor *loom_logsumexp(const loom_tensor *x, const int *dims, int ndims, bool keepdim);
/* Vector p-norm (torch.linalg.vector_norm): (sum |x|^p)^(1/p) for any real p,
 * INFINITY = max |x|, -INFINITY = min |x|, 0 = the number of non-zero entries
 * (no gradient, as in PyTorch). Ties of +-inf share the gradient evenly. The
 * +inf and negative norms of an empty reduction are errors. */
loom_tensor *loom_norm(const loom_tensor *x, double p, const int *dims, int ndims, bool keepdim);
/* Max / min over one dim; *indices (may be NULL) receives LOOM_I64 argmax / argmin. */
loom_tensor *loom_max(const loom_tensor *x, int dim, bool keepdim, loom_tensor **indices);
loom_tensor *loom_min(const loom_tensor *x, int dim, bool keepdim, loom_tensor **indices);
loom_tensor *loom_argmax(const loom_tensor *x, int dim, bool keepdim);
loom_tensor *loom_argmin(const loom_tensor *x, int dim, bool keepdim);
/* Max / min over several dims (torch.amax / amin); the gradient is shared
 * evenly among the entries equal to the result. */
loom_tensor *loom_amax(const loom_tensor *x, const int *dims, int ndims, bool keepdim);
loom_tensor *loom_amin(const loom_tensor *x, const int *dims, int ndims, bool keepdim);
/* Max / min of all elements (0-d); tied entries share the gradient evenly,
 * NaN entries too when the result is NaN (as torch.max(x)). */
loom_tensor *loom_max_all(const loom_tensor *x);
loom_tensor *loom_min_all(const loom_tensor *x);

/* ---- linear algebra ---- */
/* torch.matmul: 1-d and n-d operands, batch dims broadcast. */
loom_tensor *loom_matmul(const loom_tensor *a, const loom_tensor *b);
/* [B, n, m] @ [B, m, p] -> [B, n, p] */
loom_tensor *loom_bmm(const loom_tensor *a, const loom_tensor *b);
/* beta * input + alpha * (m1 @ m2) for 2-d m1, m2; input broadcasts. With
 * beta = 0 the input's values are ignored (NaN included) and its gradient is 0. */
loom_tensor *loom_addmm(const loom_tensor *input, const loom_tensor *m1, const loom_tensor *m2,
                        double beta, double alpha);

/* ---- sparse (COO) ----
 * A sparse matrix [rows, cols] in COO form: indices [2, nnz] LOOM_I64 (row
 * indices, then column indices; any order, duplicates add up) and values
 * [nnz] floating, on one device. An index outside the matrix is an error. */
/* sparse @ dense [cols, k] -> dense [rows, k] (torch.sparse.mm). CPU kernel
 * and cuSPARSE on CUDA; differentiable w.r.t. dense and values. */
loom_tensor *loom_sparse_mm(const loom_tensor *indices, const loom_tensor *values, int64_t rows, int64_t cols,
                            const loom_tensor *dense);
/* The dense [rows, cols] matrix (duplicates summed); differentiable w.r.t. values. */
loom_tensor *loom_sparse_to_dense(const loom_tensor *indices, const loom_tensor *values, int64_t rows, int64_t cols);

#ifdef __cplusplus
}
#endif
#endif
