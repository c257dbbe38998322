/* Indexing ops: index_select, gather, scatter_add, scatter, one_hot. */
#include <math.h>
#include <string.h>

#include "core/autograd_impl.h"

loom_status core_check_indices(const char *op, const loom_tensor *idx, int64_t size) {
  if (core_numel(idx) == 0) return LOOM_OK;
  loom_scope_begin();
  loom_no_grad_begin();
  loom_tensor *flat = loom_reshape(idx, LOOM_SHAPE(-1));
  double lo = loom_item(loom_min_all(flat)), hi = loom_item(loom_max_all(flat));
  loom_no_grad_end();
  loom_scope_end();
  if (lo != lo || hi != hi) return loom_last_status();
  if (lo < 0 || hi >= (double)size)
    return core_set_error(LOOM_ERR_INVALID, "%s: index %lld is out of range for a dim of size %lld", op,
                          (long long)(lo < 0 ? lo : hi), (long long)size);
  return LOOM_OK;
}

static bool check_index_tensor(const char *op, const loom_tensor *x, const loom_tensor *idx) {
  if (!x || !idx) {
    core_null_error("%s: %s is NULL", op, x ? "index" : "input");
    return false;
  }
  if (idx->dtype != LOOM_I64 && idx->dtype != LOOM_I32) {
    core_set_error(LOOM_ERR_INVALID, "%s: index must be i64 (or i32), got %s", op, loom_dtype_name(idx->dtype));
    return false;
  }
  return core_check_same_device(op, x, idx);
}

static void osizes(loom_shape s, int d, int64_t *O, int64_t *I) {
  *O = *I = 1;
  for (int i = 0; i < d; i++) *O *= s.d[i];
  for (int i = d + 1; i < s.ndim; i++) *I *= s.d[i];
}

/* ---- index_select ---- */
static void index_select_bw(core_node *n, const loom_tensor *g, loom_tensor **gin) {
  int d = n->dims[0];
  const loom_tensor *idx = n->saved[0];
  loom_shape vs = g->shape;
  for (int i = 0; i < vs.ndim; i++) vs.d[i] = i == d ? vs.d[i] : 1;
  loom_tensor *full = loom_contiguous(loom_expand(loom_reshape(idx, vs), g->shape));
  gin[0] = loom_scatter_add(loom_zeros(n->in_shape[0], g->dtype, g->storage->device), d, full, g);
}

loom_tensor *loom_index_select(const loom_tensor *x, int dim, const loom_tensor *index) {
  if (!check_index_tensor("index_select", x, index)) return NULL;
  if (index->shape.ndim > 1) {
    core_set_error(LOOM_ERR_INVALID, "index_select: index must be 0-d or 1-d, got shape %s", loom_shape_str(index->shape));
    return NULL;
  }
  loom_scope_begin();
  const loom_tensor *xin = x->shape.ndim == 0 ? loom_reshape(x, LOOM_SHAPE(1)) : x;
  int d = core_norm_dim("index_select", xin, dim, false);
  loom_tensor *out = NULL;
  if (d >= 0 && core_check_indices("index_select", index, xin->shape.d[d]) == LOOM_OK) {
    loom_tensor *idx = loom_contiguous(loom_reshape(loom_to_dtype(index, LOOM_I64), LOOM_SHAPE(-1)));
    loom_no_grad_begin();
    loom_tensor *xc = loom_contiguous(xin);
    loom_no_grad_end();
    loom_shape s = xin->shape;
    s.d[d] = core_numel(idx);
    int64_t O, I;
    osizes(xin->shape, d, &O, &I);
    out = idx && xc ? core_new(s, x->dtype, x->storage->device) : NULL;
    core_kctx k = {CORE_OP_index_select, 2, 1, {xc, idx}, {out}, {{O, xin->shape.d[d], I, s.d[d]}, {0}}, NULL};
    if (out && core_launch(&k) != LOOM_OK) out = NULL;
    if (out && loom_dtype_is_float(x->dtype) && core_grad_needed(1, &xin)) {
      core_node *n = core_record("index_select", index_select_bw, out, 1, &xin);
      core_save(n, idx);
      if (n) n->dims[0] = d, n->n_dims = 1;
    }
    /* a 0-d input gives a 0-d (or 1-d) result, reshaped after recording */
    if (out && x->shape.ndim == 0) out = loom_reshape(out, index->shape.ndim ? LOOM_SHAPE(s.d[0]) : LOOM_SHAPE());
  }
  loom_keep(out);
  loom_scope_end();
  return out;
}

/* ---- gather ---- */
static void gather_bw(core_node *n, const loom_tensor *g, loom_tensor **gin) {
  gin[0] = loom_scatter_add(loom_zeros(n->in_shape[0], g->dtype, g->storage->device), n->dims[0], n->saved[0], g);
}

/* Checks idx against ref in every dim but d (idx.size(i) <= ref.size(i)). */
static bool index_fits(const char *op, const loom_tensor *idx, const loom_tensor *ref, int d, const char *what) {
  if (idx->shape.ndim != ref->shape.ndim) {
    core_set_error(LOOM_ERR_INVALID, "%s: index has %d dims but %s has %d (shapes %s and %s)", op, idx->shape.ndim,
                   what, ref->shape.ndim, loom_shape_str(idx->shape), loom_shape_str(ref->shape));
    return false;
  }
  for (int i = 0; i < idx->shape.ndim; i++)
    if (i != d && idx->shape.d[i] > ref->shape.d[i]) {
      core_set_error(LOOM_ERR_INVALID, "%s: index shape %s is larger than %s shape %s in dim %d", op,
                     loom_shape_str(idx->shape), what, loom_shape_str(ref->shape), i);
      return false;
    }
  return true;
}

/* t narrowed to idx's sizes in every dim but d (or all dims when d < 0). */
static loom_tensor *narrow_to(const loom_tensor *t, const loom_tensor *idx, int d) {
  loom_tensor *r = (loom_tensor *)t;
  for (int i = 0; i < t->shape.ndim && r; i++)
    if (i != d && idx->shape.d[i] != t->shape.d[i]) r = loom_narrow(r, i, 0, idx->shape.d[i]);
  return r;
}

loom_tensor *loom_gather(const loom_tensor *x, int dim, const loom_tensor *index) {
  if (!check_index_tensor("gather", x, index)) return NULL;
  int d = x->shape.ndim == 0 ? (dim == 0 || dim == -1 ? 0 : -1) : core_norm_dim("gather", x, dim, false);
  if (d < 0) {
    if (x->shape.ndim == 0) core_set_error(LOOM_ERR_INVALID, "gather: dim %d out of range for a 0-d tensor", dim);
    return NULL;
  }
  if (x->shape.ndim == 0 || index->shape.ndim == 0) {
    if (x->shape.ndim != index->shape.ndim) {
      core_set_error(LOOM_ERR_INVALID, "gather: index shape %s does not match input shape %s",
                     loom_shape_str(index->shape), loom_shape_str(x->shape));
      return NULL;
    }
  }
  if (x->shape.ndim && !index_fits("gather", index, x, d, "input")) return NULL;
  loom_scope_begin();
  const loom_tensor *xin = x->shape.ndim ? x : loom_reshape(x, LOOM_SHAPE(1));
  const loom_tensor *iin = index->shape.ndim ? index : loom_reshape(index, LOOM_SHAPE(1));
  loom_tensor *out = NULL;
  if (xin && iin && core_check_indices("gather", iin, xin->shape.d[d]) == LOOM_OK) {
    loom_tensor *idx = loom_contiguous(loom_to_dtype(iin, LOOM_I64));
    loom_no_grad_begin();
    loom_tensor *xc = loom_contiguous(narrow_to(xin, iin, d));
    loom_no_grad_end();
    int64_t O, I;
    osizes(iin->shape, d, &O, &I);
    out = idx && xc ? core_new(iin->shape, x->dtype, x->storage->device) : NULL;
    core_kctx k = {CORE_OP_gather, 2, 1, {xc, idx}, {out}, {{O, xin->shape.d[d], I, iin->shape.d[d]}, {0}}, NULL};
    if (out && core_launch(&k) != LOOM_OK) out = NULL;
    if (out && loom_dtype_is_float(x->dtype) && core_grad_needed(1, &xin)) {
      core_node *n = core_record("gather", gather_bw, out, 1, &xin);
      core_save(n, idx);
      if (n) n->dims[0] = d, n->n_dims = 1;
    }
    if (out && x->shape.ndim == 0) out = loom_reshape(out, LOOM_SHAPE());
  }
  loom_keep(out);
  loom_scope_end();
  return out;
}

/* ---- scatter_add and scatter (a.i[4] = 1: overwrite; the last source
 * written to an element wins on the CPU and under deterministic CUDA) ---- */
static loom_tensor *scatter_value(const loom_tensor *x, int dim, const loom_tensor *index, double value);

static void scatter_add_bw(core_node *n, const loom_tensor *g, loom_tensor **gin) {
  if (core_needs(n, 0)) /* scatter: the overwritten elements get no gradient */
    gin[0] = n->a.i[4] ? scatter_value(g, n->dims[0], n->saved[0], 0) : loom_clone(g);
  if (core_needs(n, 1)) {
    loom_tensor *gs = loom_gather(g, n->dims[0], n->saved[0]);
    /* src may be larger than index: pad the gradient with zeros */
    if (gs && !loom_shape_equal(gs->shape, n->in_shape[1])) {
      loom_tensor *z = loom_zeros(n->in_shape[1], g->dtype, g->storage->device);
      loom_tensor *v = narrow_to(z, gs, -1);
      if (v && loom_copy_(v, gs) == LOOM_OK) gs = z;
      else gs = NULL;
    }
    gin[1] = gs;
  }
}

static loom_tensor *scatter_op(const char *who, bool overwrite, const loom_tensor *x, int dim, const loom_tensor *index,
                               const loom_tensor *src) {
  if (!check_index_tensor(who, x, index)) return NULL;
  if (!src) {
    core_null_error("%s: src is NULL", who);
    return NULL;
  }
  if (!core_check_same_device(who, x, src)) return NULL;
  if (src->dtype != x->dtype) {
    core_set_error(LOOM_ERR_INVALID, "%s: src dtype %s does not match input dtype %s", who,
                   loom_dtype_name(src->dtype), loom_dtype_name(x->dtype));
    return NULL;
  }
  if (x->shape.ndim == 0 || index->shape.ndim != x->shape.ndim) {
    core_set_error(LOOM_ERR_INVALID, "%s: index shape %s does not fit input shape %s", who,
                   loom_shape_str(index->shape), loom_shape_str(x->shape));
    return NULL;
  }
  int d = core_norm_dim(who, x, dim, false);
  if (d < 0 || !index_fits(who, index, x, d, "input") || !index_fits(who, index, src, -1, "src"))
    return NULL;
  if (index->shape.d[d] > src->shape.d[d]) {
    core_set_error(LOOM_ERR_INVALID, "%s: index shape %s is larger than src shape %s in dim %d", who,
                   loom_shape_str(index->shape), loom_shape_str(src->shape), d);
    return NULL;
  }
  loom_scope_begin();
  loom_tensor *out = NULL;
  if (core_check_indices(who, index, x->shape.d[d]) == LOOM_OK) {
    loom_tensor *idx = loom_contiguous(loom_to_dtype(index, LOOM_I64));
    loom_no_grad_begin();
    loom_tensor *sc = loom_contiguous(narrow_to(src, index, -1));
    out = loom_clone(x);
    /* the kernel needs out and index to agree outside dim: work on a narrowed copy if not */
    loom_tensor *region = narrow_to(out, index, d);
    loom_tensor *work = region == out ? out : loom_contiguous(region);
    loom_no_grad_end();
    int64_t O, I;
    osizes(index->shape, d, &O, &I);
    core_kctx k = {CORE_OP_scatter_add, 2, 1, {sc, idx}, {work},
                   {{O, x->shape.d[d], I, index->shape.d[d], overwrite}, {0}}, NULL};
    if (!idx || !sc || !work || core_launch(&k) != LOOM_OK) out = NULL;
    if (out && work != out && loom_copy_(region, work) != LOOM_OK) out = NULL;
    const loom_tensor *ins[2] = {x, src};
    if (out && loom_dtype_is_float(x->dtype) && core_grad_needed(2, ins)) {
      core_node *n = core_record(who, scatter_add_bw, out, 2, ins);
      core_save(n, idx);
      if (n) n->dims[0] = d, n->n_dims = 1, n->a.i[4] = overwrite;
    }
  }
  loom_keep(out);
  loom_scope_end();
  return out;
}

loom_tensor *loom_scatter_add(const loom_tensor *x, int dim, const loom_tensor *index, const loom_tensor *src) {
  return scatter_op("scatter_add", false, x, dim, index, src);
}

loom_tensor *loom_scatter(const loom_tensor *x, int dim, const loom_tensor *index, const loom_tensor *src) {
  return scatter_op("scatter", true, x, dim, index, src);
}

/* x with the elements index names along dim set to value. */
static loom_tensor *scatter_value(const loom_tensor *x, int dim, const loom_tensor *index, double value) {
  loom_scope_begin();
  loom_tensor *v = loom_full(loom_shape_of(index), value, x->dtype, x->storage->device);
  loom_tensor *y = loom_keep(v ? loom_scatter(x, dim, index, v) : NULL);
  loom_scope_end();
  return y;
}

/* ---- one_hot ---- */
loom_tensor *loom_one_hot(const loom_tensor *index, int64_t num_classes) {
  CORE_CHECK_NULL1("one_hot", index);
  if (index->dtype != LOOM_I64 && index->dtype != LOOM_I32) {
    core_set_error(LOOM_ERR_INVALID, "one_hot: index must be i64 (or i32), got %s", loom_dtype_name(index->dtype));
    return NULL;
  }
  if (index->shape.ndim >= LOOM_MAX_DIMS) {
    core_set_error(LOOM_ERR_INVALID, "one_hot: index already has %d dims", index->shape.ndim);
    return NULL;
  }
  loom_scope_begin();
  loom_tensor *idx = loom_contiguous(loom_reshape(loom_to_dtype(index, LOOM_I64), LOOM_SHAPE(-1)));
  loom_tensor *out = NULL;
  if (idx && num_classes < 0) {
    double mx = core_numel(idx) ? loom_item(loom_max_all(idx)) : NAN;
    if (mx != mx) {
      if (core_numel(idx) == 0) core_set_error(LOOM_ERR_INVALID, "one_hot: cannot infer num_classes from an empty index");
      idx = NULL; /* loom_item recorded why otherwise */
    } else if (mx < 0) {
      core_set_error(LOOM_ERR_INVALID, "one_hot: index %.0f is negative", mx);
      idx = NULL;
    } else {
      num_classes = (int64_t)mx + 1;
    }
  }
  if (idx && num_classes >= 0 && core_check_indices("one_hot", idx, num_classes) == LOOM_OK) {
    loom_shape s = index->shape;
    s.d[s.ndim++] = num_classes;
    loom_tensor *o = core_new(LOOM_SHAPE(core_numel(idx), num_classes), LOOM_I64, index->storage->device);
    core_kctx k = {CORE_OP_one_hot, 1, 1, {idx}, {o}, {{num_classes}, {0}}, NULL};
    if (o && core_launch(&k) == LOOM_OK) out = loom_reshape(o, s);
  }
  loom_keep(out);
  loom_scope_end();
  return out;
}
