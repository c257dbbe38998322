/* Reductions over dims: sum and max/min kernels, the rest composed. */
#include <math.h>
#include <string.h>

#include "core/autograd_impl.h"

/* Parses dims into a mask; NULL/0 dims = all. Returns false on a bad dim. */
static bool dim_mask(const char *op, const loom_tensor *x, const int *dims, int ndims, bool *mask) {
  memset(mask, 0, sizeof(bool) * LOOM_MAX_DIMS);
  if (!dims || ndims == 0) {
    for (int i = 0; i < x->shape.ndim; i++) mask[i] = true;
    return true;
  }
  for (int i = 0; i < ndims; i++) {
    if (x->shape.ndim == 0 && (dims[i] == 0 || dims[i] == -1)) continue; /* 0-d: dim 0 allowed */
    int d = core_norm_dim(op, x, dims[i], false);
    if (d < 0) return false;
    if (mask[d]) {
      core_set_error(LOOM_ERR_INVALID, "%s: dim %d appears more than once", op, dims[i]);
      return false;
    }
    mask[d] = true;
  }
  return true;
}

static loom_shape reduced_shape(loom_shape s, const bool *mask, bool keepdim) {
  loom_shape r = {0, {0}};
  for (int i = 0; i < s.ndim; i++) {
    if (!mask[i]) r.d[r.ndim++] = s.d[i];
    else if (keepdim) r.d[r.ndim++] = 1;
  }
  return r;
}

/* Runs a sum/max/min kernel over the masked dims; out[1] = indices for max/min.
 * Returns outputs with keepdim shape. */
static bool reduce_kernel(core_op op, const loom_tensor *x, const bool *mask, loom_tensor **out0, loom_tensor **out1) {
  int nd = x->shape.ndim;
  int first = -1, last = -1, nred = 0;
  for (int i = 0; i < nd; i++)
    if (mask[i]) {
      if (first < 0) first = i;
      last = i;
      nred++;
    }
  loom_scope_begin();
  loom_no_grad_begin(); /* the caller records the whole reduction */
  const loom_tensor *src = x;
  int64_t O = 1, R = 1, I = 1;
  if (nred == 0) {
    R = 1;
    O = core_numel(x);
  } else if (last - first + 1 == nred) { /* adjacent reduced dims: view as [O, R, I] */
    for (int i = 0; i < first; i++) O *= x->shape.d[i];
    for (int i = first; i <= last; i++) R *= x->shape.d[i];
    for (int i = last + 1; i < nd; i++) I *= x->shape.d[i];
  } else { /* move reduced dims last */
    int perm[LOOM_MAX_DIMS], k = 0;
    for (int i = 0; i < nd; i++)
      if (!mask[i]) perm[k++] = i, O *= x->shape.d[i];
    for (int i = 0; i < nd; i++)
      if (mask[i]) perm[k++] = i, R *= x->shape.d[i];
    src = loom_permute(x, perm, nd);
  }
  loom_tensor *c = src ? loom_contiguous(src) : NULL;
  loom_shape ks = reduced_shape(x->shape, mask, true);
  bool ok = false;
  if (c) {
    loom_tensor *o0 = core_new(ks, x->dtype, x->storage->device);
    bool with_index = op == CORE_OP_max || op == CORE_OP_min;
    loom_tensor *o1 = with_index ? core_new(ks, LOOM_I64, x->storage->device) : NULL;
    core_kctx k = {op, 1, with_index ? 2 : 1, {c}, {o0, o1}, {{O, R, I}, {0}}, NULL};
    if (o0 && (!with_index || o1) && core_launch(&k) == LOOM_OK) {
      *out0 = loom_keep(o0);
      if (out1) *out1 = loom_keep(o1);
      ok = true;
    }
  }
  loom_no_grad_end();
  loom_scope_end();
  return ok;
}

/* ---- sum / mean ---- */
static void sum_bw(core_node *n, const loom_tensor *g, loom_tensor **gin) {
  /* g has the keepdim shape after a reshape; expand back */
  loom_shape ks = n->in_shape[0];
  for (int i = 0; i < n->n_dims; i++) ks.d[n->dims[i]] = 1;
  gin[0] = loom_contiguous(loom_expand(loom_reshape(g, ks), n->in_shape[0]));
}

loom_tensor *loom_sum(const loom_tensor *x, const int *dims, int ndims, bool keepdim) {
  CORE_CHECK_NULL1("sum", x);
  bool mask[LOOM_MAX_DIMS];
  if (!dim_mask("sum", x, dims, ndims, mask)) return NULL;
  loom_scope_begin();
  const loom_tensor *in = x;
  if (x->dtype == LOOM_BOOL || x->dtype == LOOM_U8 || x->dtype == LOOM_I32) in = loom_to_dtype(x, LOOM_I64);
  loom_tensor *r = NULL, *out = NULL;
  if (in && reduce_kernel(CORE_OP_sum, in, mask, &r, NULL)) {
    out = loom_reshape(r, reduced_shape(x->shape, mask, keepdim));
    core_node *nd = NULL;
    if (out && loom_dtype_is_float(in->dtype) && core_grad_needed(1, &in)) {
      /* record on the final output so its backward sees the full reduction */
      nd = core_record("sum", sum_bw, out, 1, &in);
      if (nd)
        for (int i = 0; i < x->shape.ndim; i++)
          if (mask[i]) nd->dims[nd->n_dims++] = i;
    }
  }
  loom_keep(out);
  loom_scope_end();
  return out;
}

static int64_t reduced_count(const loom_tensor *x, const bool *mask) {
  int64_t n = 1;
  for (int i = 0; i < x->shape.ndim; i++)
    if (mask[i]) n *= x->shape.d[i];
  return n;
}

loom_tensor *loom_mean(const loom_tensor *x, const int *dims, int ndims, bool keepdim) {
  CORE_CHECK_NULL1("mean", x);
  if (!loom_dtype_is_float(x->dtype)) {
    core_set_error(LOOM_ERR_INVALID, "mean: needs a floating dtype, got %s", loom_dtype_name(x->dtype));
    return NULL;
  }
  bool mask[LOOM_MAX_DIMS];
  if (!dim_mask("mean", x, dims, ndims, mask)) return NULL;
  int64_t n = reduced_count(x, mask);
  loom_scope_begin();
  loom_tensor *out = loom_keep(loom_mul_scalar(loom_sum(x, dims, ndims, keepdim), n ? 1.0 / (double)n : NAN));
  loom_scope_end();
  return out;
}

/* PyTorch's var backward: g * 2 (x - mean) / (N - correction), the divisor
 * unclamped (so N == correction gives +-inf, NaN at the mean). Over the whole
 * tensor (no dims) with N <= correction, PyTorch gives +inf where x != mean and
 * NaN where x == mean instead; a.i[0] marks that case. */
static void var_bw(core_node *n, const loom_tensor *g, loom_tensor **gin) {
  const loom_tensor *x = n->saved[0], *m = n->saved[1]; /* m: the mean, keepdim shape */
  loom_tensor *gk = loom_reshape(g, m->shape);
  double dof = n->a.f[0];
  if (n->a.i[0] && dof <= 0)
    gin[0] = loom_mul(gk, loom_where(loom_eq(x, m), loom_scalar_like(x, NAN), loom_scalar_like(x, INFINITY)));
  else
    gin[0] = loom_mul(gk, loom_mul_scalar(loom_sub(x, m), 2.0 / dof));
}

loom_tensor *loom_var(const loom_tensor *x, const int *dims, int ndims, double correction, bool keepdim) {
  CORE_CHECK_NULL1("var", x);
  bool mask[LOOM_MAX_DIMS];
  if (!dim_mask("var", x, dims, ndims, mask)) return NULL;
  if (!loom_dtype_is_float(x->dtype)) {
    core_set_error(LOOM_ERR_INVALID, "var: needs a floating dtype, got %s", loom_dtype_name(x->dtype));
    return NULL;
  }
  if (isnan(correction)) {
    core_set_error(LOOM_ERR_INVALID, "var: correction is NaN");
    return NULL;
  }
  double dof = (double)reduced_count(x, mask) - correction;
  loom_scope_begin();
  loom_no_grad_begin();
  loom_tensor *m = loom_mean(x, dims, ndims, true), *d = loom_sub(x, m);
  /* PyTorch divides by max(0, N - correction): inf, or NaN where the sum is 0 */
  loom_tensor *out = loom_mul_scalar(loom_sum(loom_mul(d, d), dims, ndims, keepdim), dof > 0 ? 1.0 / dof : INFINITY);
  loom_no_grad_end();
  if (out && core_grad_needed(1, &x)) {
    core_node *n = core_record("var", var_bw, out, 1, &x);
    core_save(n, x);
    core_save(n, m);
    if (n) {
      n->a.f[0] = dof;
      n->a.i[0] = !dims || ndims == 0 || x->shape.ndim == 0;
    }
  }
  loom_keep(out);
  loom_scope_end();
  return out;
}

/* sqrt whose gradient is 0 where the result is 0 (PyTorch's std and norm give 0
 * there rather than inf * 0 = NaN). */
static void sqrt_at0_bw(core_node *n, const loom_tensor *g, loom_tensor **gin) {
  const loom_tensor *y = n->saved[0];
  loom_tensor *zero = loom_scalar_like(y, 0);
  gin[0] = loom_where(loom_eq(y, zero), zero, loom_div(g, loom_mul_scalar(y, 2)));
}

static loom_tensor *sqrt_zero_grad_at_0(const loom_tensor *x) {
  if (!x) return NULL;
  loom_no_grad_begin();
  loom_tensor *out = loom_sqrt(x);
  loom_no_grad_end();
  if (out && core_grad_needed(1, &x)) {
    core_node *n = core_record("sqrt", sqrt_at0_bw, out, 1, &x);
    core_save(n, out);
  }
  return out;
}

loom_tensor *loom_std(const loom_tensor *x, const int *dims, int ndims, double correction, bool keepdim) {
  CORE_CHECK_NULL1("std", x);
  bool mask[LOOM_MAX_DIMS];
  if (!dim_mask("std", x, dims, ndims, mask)) return NULL;
  loom_scope_begin();
  loom_tensor *out = loom_keep(sqrt_zero_grad_at_0(loom_var(x, dims, ndims, correction, keepdim)));
  loom_scope_end();
  return out;
}

/* d logsumexp / dx = softmax(x) = exp(x - out) */
static void logsumexp_bw(core_node *n, const loom_tensor *g, loom_tensor **gin) {
  const loom_tensor *x = n->saved[0], *out = n->saved[1]; /* out in keepdim shape */
  gin[0] = loom_mul(loom_reshape(g, out->shape), loom_exp(loom_sub(x, out)));
}

loom_tensor *loom_logsumexp(const loom_tensor *x, const int *dims, int ndims, bool keepdim) {
  CORE_CHECK_NULL1("logsumexp", x);
  bool mask[LOOM_MAX_DIMS];
  if (!dim_mask("logsumexp", x, dims, ndims, mask)) return NULL;
  if (reduced_count(x, mask) == 0 || !loom_dtype_is_float(x->dtype)) {
    core_set_error(LOOM_ERR_INVALID, "logsumexp: needs a non-empty floating input, got %s %s",
                   loom_dtype_name(x->dtype), loom_shape_str(x->shape));
    return NULL;
  }
  loom_scope_begin();
  loom_tensor *r = NULL, *out = NULL;
  if (reduce_kernel(CORE_OP_logsumexp, x, mask, &r, NULL)) {
    out = loom_reshape(r, reduced_shape(x->shape, mask, keepdim));
    if (out && core_grad_needed(1, &x)) {
      core_node *n = core_record("logsumexp", logsumexp_bw, out, 1, &x);
      core_save(n, x);
      core_save(n, r);
    }
  }
  loom_keep(out);
  loom_scope_end();
  return out;
}

/* PyTorch's vector-norm backward for p other than 0, 1, 2 (saved: x and the
 * norm in keepdim shape). p = +-inf shares g evenly among the entries whose
 * |x| is the norm (NaN entries count too); finite p keeps the gradient 0
 * where x or the norm is 0. */
static void norm_bw(core_node *n, const loom_tensor *g, loom_tensor **gin) {
  const loom_tensor *x = n->saved[0], *nk = n->saved[1];
  double p = n->a.f[0];
  loom_tensor *gk = loom_reshape(g, nk->shape), *sg = loom_sign(x), *ax = loom_abs(x);
  loom_tensor *zero = loom_scalar_like(x, 0);
  if (isinf(p)) {
    loom_tensor *hit = loom_to_dtype(loom_logical_or(loom_eq(ax, nk), loom_ne(ax, ax)), x->dtype);
    loom_tensor *count = loom_sum(hit, n->dims, n->n_dims, true);
    gin[0] = loom_mul(sg, loom_mul(loom_div(gk, count), hit));
  } else if (p < 1) {
    loom_tensor *s = loom_mul(sg, loom_where(loom_eq(x, zero), zero, loom_pow_scalar(ax, p - 1)));
    gin[0] = loom_mul(loom_mul(s, gk), loom_pow_scalar(nk, 1 - p));
  } else {
    loom_tensor *s = p < 2 ? loom_mul(sg, loom_pow_scalar(ax, p - 1)) : loom_mul(x, loom_pow_scalar(ax, p - 2));
    loom_tensor *scale = loom_where(loom_eq(nk, zero), zero, loom_div(gk, loom_pow_scalar(nk, p - 1)));
    gin[0] = loom_mul(s, scale);
  }
}

/* p = 0 counts the non-zero entries; like PyTorch it gives its input no gradient. */
static void no_grad_bw(core_node *n, const loom_tensor *g, loom_tensor **gin) {
  (void)n, (void)g;
  gin[0] = NULL;
}

loom_tensor *loom_norm(const loom_tensor *x, double p, const int *dims, int ndims, bool keepdim) {
  CORE_CHECK_NULL1("norm", x);
  if (!loom_dtype_is_float(x->dtype)) {
    core_set_error(LOOM_ERR_INVALID, "norm: needs a floating dtype, got %s", loom_dtype_name(x->dtype));
    return NULL;
  }
  if (isnan(p)) {
    core_set_error(LOOM_ERR_INVALID, "norm: p is NaN");
    return NULL;
  }
  bool mask[LOOM_MAX_DIMS];
  if (!dim_mask("norm", x, dims, ndims, mask)) return NULL;
  if ((p < 0 || p == INFINITY) && reduced_count(x, mask) == 0) {
    core_set_error(LOOM_ERR_INVALID, "norm: the %g norm of an empty reduction (shape %s) is undefined", p,
                   loom_shape_str(x->shape));
    return NULL;
  }
  if (p == 1) return loom_sum(loom_abs(x), dims, ndims, keepdim);
  loom_scope_begin();
  loom_tensor *out = NULL;
  if (p == 2) {
    out = sqrt_zero_grad_at_0(loom_sum(loom_mul(x, x), dims, ndims, keepdim));
  } else {
    loom_no_grad_begin();
    loom_tensor *a = loom_abs(x), *nk = NULL, *idx = NULL;
    if (p == 0) nk = loom_sum(loom_to_dtype(loom_ne(x, loom_scalar_like(x, 0)), x->dtype), dims, ndims, true);
    else if (isinf(p)) reduce_kernel(p > 0 ? CORE_OP_max : CORE_OP_min, a, mask, &nk, &idx);
    else nk = loom_pow_scalar(loom_sum(loom_pow_scalar(a, p), dims, ndims, true), 1.0 / p);
    out = nk ? loom_reshape(nk, reduced_shape(x->shape, mask, keepdim)) : NULL;
    loom_no_grad_end();
    if (out && core_grad_needed(1, &x)) {
      core_node *n = core_record("norm", p == 0 ? no_grad_bw : norm_bw, out, 1, &x);
      core_save(n, x);
      core_save(n, nk);
      if (n) {
        n->a.f[0] = p;
        for (int i = 0; i < x->shape.ndim; i++)
          if (mask[i]) n->dims[n->n_dims++] = i;
      }
    }
  }
  loom_keep(out);
  loom_scope_end();
  return out;
}

/* ---- max / min over one dim ---- */
static void extreme_dim_bw(core_node *n, const loom_tensor *g, loom_tensor **gin) {
  int d = n->dims[0];
  const loom_tensor *idx = n->saved[0]; /* keepdim shape */
  loom_tensor *gk = loom_reshape(g, idx->shape);
  gin[0] = loom_scatter_add(loom_zeros(n->in_shape[0], g->dtype, g->storage->device), d, idx, gk);
}

static loom_tensor *extreme(core_op op, const char *name, const loom_tensor *x, int dim, bool keepdim,
                            loom_tensor **indices) {
  CORE_CHECK_NULL1(name, x);
  if (indices) *indices = NULL;
  loom_scope_begin();
  const loom_tensor *in = x->shape.ndim == 0 ? loom_reshape(x, LOOM_SHAPE(1)) : x;
  int d = in ? core_norm_dim(name, in, dim, false) : -1;
  loom_tensor *v = NULL, *idx = NULL, *out = NULL, *oidx = NULL;
  if (d >= 0 && in->shape.d[d] == 0) {
    core_set_error(LOOM_ERR_INVALID, "%s: cannot reduce over dim %d of size 0 (shape %s)", name, dim,
                   loom_shape_str(x->shape));
    d = -1;
  }
  if (d >= 0 && in->dtype == LOOM_BOOL) {
    core_set_error(LOOM_ERR_INVALID, "%s: not defined for bool tensors", name);
    d = -1;
  }
  bool mask[LOOM_MAX_DIMS] = {0};
  if (d >= 0) mask[d] = true;
  if (d >= 0 && reduce_kernel(op, in, mask, &v, &idx)) {
    loom_shape s = x->shape.ndim == 0 ? x->shape : reduced_shape(in->shape, mask, keepdim);
    out = loom_reshape(v, s);
    oidx = loom_reshape(idx, s);
    if (out && loom_dtype_is_float(in->dtype) && core_grad_needed(1, &in)) {
      core_node *n = core_record(name, extreme_dim_bw, out, 1, &in);
      core_save(n, idx);
      if (n) {
        n->dims[0] = d;
        n->n_dims = 1;
      }
    }
  }
  loom_keep(out);
  if (indices && out) *indices = loom_keep(oidx);
  loom_scope_end();
  return out;
}

loom_tensor *loom_max(const loom_tensor *x, int dim, bool keepdim, loom_tensor **indices) {
  return extreme(CORE_OP_max, "max", x, dim, keepdim, indices);
}
loom_tensor *loom_min(const loom_tensor *x, int dim, bool keepdim, loom_tensor **indices) {
  return extreme(CORE_OP_min, "min", x, dim, keepdim, indices);
}

static loom_tensor *arg_extreme(core_op op, const char *name, const loom_tensor *x, int dim, bool keepdim) {
  loom_tensor *idx = NULL;
  loom_scope_begin();
  loom_no_grad_begin();
  loom_tensor *v = extreme(op, name, x, dim, keepdim, &idx);
  loom_no_grad_end();
  if (v) loom_keep(idx);
  loom_scope_end();
  return v ? idx : NULL;
}
loom_tensor *loom_argmax(const loom_tensor *x, int dim, bool keepdim) {
  return arg_extreme(CORE_OP_max, "argmax", x, dim, keepdim);
}
loom_tensor *loom_argmin(const loom_tensor *x, int dim, bool keepdim) {
  return arg_extreme(CORE_OP_min, "argmin", x, dim, keepdim);
}

/* ---- amax / amin over several dims, max / min of everything ----
 * PyTorch shares the gradient evenly among tied extremes: amax / amin as
 * g / count * (x == out) (NaN when the extreme is NaN); max / min of the
 * whole tensor count NaN entries as ties of a NaN result. */
static void amax_bw(core_node *n, const loom_tensor *g, loom_tensor **gin) {
  const loom_tensor *x = n->saved[0], *v = n->saved[1]; /* v: keepdim shape */
  loom_tensor *tie = loom_eq(x, v);
  if (n->a.i[0]) tie = loom_logical_or(tie, loom_logical_and(loom_ne(x, x), loom_ne(v, v)));
  loom_tensor *hit = loom_to_dtype(tie, g->dtype);
  gin[0] = loom_mul(hit, loom_div(loom_reshape(g, v->shape), loom_sum(hit, n->dims, n->n_dims, true)));
}

static loom_tensor *amax_like(core_op op, const char *name, const loom_tensor *x, const int *dims, int ndims,
                              bool keepdim, bool nan_ties) {
  CORE_CHECK_NULL1(name, x);
  if (x->dtype == LOOM_BOOL) {
    core_set_error(LOOM_ERR_INVALID, "%s: not defined for bool tensors", name);
    return NULL;
  }
  bool mask[LOOM_MAX_DIMS];
  if (!dim_mask(name, x, dims, ndims, mask)) return NULL;
  for (int i = 0; i < x->shape.ndim; i++)
    if (mask[i] && x->shape.d[i] == 0) {
      core_set_error(LOOM_ERR_INVALID, "%s: cannot reduce over dim %d of size 0 (shape %s)", name, i,
                     loom_shape_str(x->shape));
      return NULL;
    }
  loom_scope_begin();
  loom_tensor *v = NULL, *idx = NULL, *out = NULL;
  if (reduce_kernel(op, x, mask, &v, &idx)) {
    out = loom_reshape(v, reduced_shape(x->shape, mask, keepdim));
    if (out && loom_dtype_is_float(x->dtype) && core_grad_needed(1, &x)) {
      core_node *n = core_record(name, amax_bw, out, 1, &x);
      core_save(n, x);
      core_save(n, v);
      if (n) {
        n->a.i[0] = nan_ties;
        for (int i = 0; i < x->shape.ndim; i++)
          if (mask[i]) n->dims[n->n_dims++] = i;
      }
    }
  }
  loom_keep(out);
  loom_scope_end();
  return out;
}

loom_tensor *loom_amax(const loom_tensor *x, const int *dims, int ndims, bool keepdim) {
  return amax_like(CORE_OP_max, "amax", x, dims, ndims, keepdim, false);
}
loom_tensor *loom_amin(const loom_tensor *x, const int *dims, int ndims, bool keepdim) {
  return amax_like(CORE_OP_min, "amin", x, dims, ndims, keepdim, false);
}
loom_tensor *loom_max_all(const loom_tensor *x) { return amax_like(CORE_OP_max, "max_all", x, NULL, 0, false, true); }
loom_tensor *loom_min_all(const loom_tensor *x) { return amax_like(CORE_OP_min, "min_all", x, NULL, 0, false, true); }

/* ---- broadcast reduction for gradients ---- */
loom_tensor *core_sum_to(const loom_tensor *g, loom_shape s) {
  if (!g) return NULL;
  if (loom_shape_equal(g->shape, s)) return core_alias(g);
  int lead = g->shape.ndim - s.ndim, dims[LOOM_MAX_DIMS], n = 0;
  for (int i = 0; i < g->shape.ndim; i++)
    if (i < lead || (s.d[i - lead] == 1 && g->shape.d[i] != 1)) dims[n++] = i;
  loom_scope_begin();
  loom_tensor *r = n ? loom_sum(g, dims, n, true) : (loom_tensor *)g;
  loom_tensor *out = loom_keep(loom_reshape(r, s));
  loom_scope_end();
  return out;
}
