/* View ops: tensors sharing storage with new shapes, strides or offsets, with their gradients. */
#include <stdlib.h>
#include <string.h>

#include "core/autograd_impl.h"

static bool null_in(const char *op, const loom_tensor *t) {
  if (t) return core_freed_handle(op, t);
  core_null_error("%s: input is NULL", op);
  return true;
}

bool core_broadcast_shapes(const char *op, loom_shape a, loom_shape b, loom_shape *out) {
  int nd = a.ndim > b.ndim ? a.ndim : b.ndim;
  loom_shape r = {nd, {0}};
  for (int i = 0; i < nd; i++) {
    int ia = a.ndim - nd + i, ib = b.ndim - nd + i;
    int64_t da = ia >= 0 ? a.d[ia] : 1, db = ib >= 0 ? b.d[ib] : 1;
    if (da != db && da != 1 && db != 1) {
      core_set_error(LOOM_ERR_INVALID, "%s: shapes %s and %s cannot be broadcast together (dim %d: %lld vs %lld)", op,
                     loom_shape_str(a), loom_shape_str(b), i, (long long)da, (long long)db);
      return false;
    }
    r.d[i] = da == 1 ? db : da;
  }
  *out = r;
  return true;
}

loom_tensor *core_expand_to(const loom_tensor *t, loom_shape s) {
  int64_t st[LOOM_MAX_DIMS];
  int off = s.ndim - t->shape.ndim;
  if (off < 0) {
    core_set_error(LOOM_ERR_INVALID, "expand: cannot expand shape %s to fewer dims %s", loom_shape_str(t->shape),
                   loom_shape_str(s));
    return NULL;
  }
  for (int i = 0; i < s.ndim; i++) {
    int j = i - off;
    if (j < 0) st[i] = 0;
    else if (t->shape.d[j] == s.d[i]) st[i] = t->strides[j];
    else if (t->shape.d[j] == 1) st[i] = 0;
    else {
      core_set_error(LOOM_ERR_INVALID, "expand: shape %s cannot be expanded to %s (dim %d)",
                     loom_shape_str(t->shape), loom_shape_str(s), i);
      return NULL;
    }
  }
  loom_tensor *v = core_view(t, s, st, t->offset);
  core_untrack(v);
  return v;
}

/* ---- reshape family ---- */
static void reshape_backward(core_node *n, const loom_tensor *g, loom_tensor **gin) {
  gin[0] = loom_reshape(g, n->in_shape[0]);
}

static loom_tensor *record1(const char *name, core_backward_fn fn, const loom_tensor *in, loom_tensor *out) {
  if (out && core_grad_needed(1, &in)) core_record(name, fn, out, 1, &in);
  return out;
}

static bool infer_shape(const char *op, const loom_tensor *t, loom_shape *s) {
  int infer = -1;
  int64_t known = 1, big = 1;
  if (s->ndim < 0 || s->ndim > LOOM_MAX_DIMS) {
    core_set_error(LOOM_ERR_INVALID, "%s: %d dims requested (at most %d)", op, s->ndim, LOOM_MAX_DIMS);
    return false;
  }
  for (int i = 0; i < s->ndim; i++) {
    if (s->d[i] == -1 && infer < 0) infer = i;
    else if (s->d[i] < 0) {
      core_set_error(LOOM_ERR_INVALID, "%s: invalid size %lld in shape %s", op, (long long)s->d[i],
                     loom_shape_str(*s));
      return false;
    } else {
      if (s->d[i] > 0 && (known > (INT64_MAX / 16) / s->d[i] || big > (INT64_MAX / 16) / s->d[i])) {
        core_set_error(LOOM_ERR_INVALID, "%s: shape %s has too many elements", op, loom_shape_str(*s));
        return false;
      }
      known *= s->d[i];
      big *= s->d[i] > 0 ? s->d[i] : 1;
    }
  }
  int64_t n = core_numel(t);
  if (infer >= 0) {
    if (known == 0 || n % known) {
      core_set_error(LOOM_ERR_INVALID, "%s: shape %s is invalid for input of %lld elements", op, loom_shape_str(*s),
                     (long long)n);
      return false;
    }
    s->d[infer] = n / known;
    known *= s->d[infer];
  }
  if (known != n) {
    core_set_error(LOOM_ERR_INVALID, "%s: shape %s is invalid for input of shape %s (%lld elements)", op,
                   loom_shape_str(*s), loom_shape_str(t->shape), (long long)n);
    return false;
  }
  return true;
}

/* Strides viewing t with shape s without a copy (PyTorch's rule); false when impossible. */
static bool view_strides(const loom_tensor *t, loom_shape s, int64_t *st) {
  if (core_numel(t) == 0 || core_is_contiguous(t)) {
    core_contiguous_strides(s, st);
    return true;
  }
  const int64_t *os = t->shape.d, *ost = t->strides;
  int vd = s.ndim - 1;
  int64_t base = ost[t->shape.ndim - 1], tnum = 1, vnum = 1;
  for (int td = t->shape.ndim - 1; td >= 0; td--) {
    tnum *= os[td];
    /* end of a chunk of old dims that are contiguous with each other */
    if (td == 0 || (os[td - 1] != 1 && ost[td - 1] != tnum * base)) {
      while (vd >= 0 && (vnum < tnum || s.d[vd] == 1)) {
        st[vd] = vnum * base;
        vnum *= s.d[vd];
        vd--;
      }
      if (vnum != tnum) return false;
      if (td > 0) {
        base = ost[td - 1];
        tnum = vnum = 1;
      }
    }
  }
  return vd == -1;
}

loom_tensor *loom_view(const loom_tensor *t, loom_shape s) {
  if (null_in("view", t) || !infer_shape("view", t, &s)) return NULL;
  int64_t st[LOOM_MAX_DIMS];
  if (!view_strides(t, s, st)) {
    core_set_error(LOOM_ERR_INVALID,
                   "view: shape %s is not compatible with input of shape %s and its strides (use loom_reshape)",
                   loom_shape_str(s), loom_shape_str(t->shape));
    return NULL;
  }
  return record1("view", reshape_backward, t, core_view(t, s, st, t->offset));
}

loom_tensor *loom_reshape(const loom_tensor *t, loom_shape s) {
  if (null_in("reshape", t) || !infer_shape("reshape", t, &s)) return NULL;
  int64_t st[LOOM_MAX_DIMS];
  if (view_strides(t, s, st)) return record1("reshape", reshape_backward, t, core_view(t, s, st, t->offset));
  loom_scope_begin();
  loom_tensor *c = loom_contiguous(t);
  loom_tensor *r = c ? loom_keep(loom_view(c, s)) : NULL;
  loom_scope_end();
  return r;
}

loom_tensor *loom_flatten(const loom_tensor *t, int start_dim, int end_dim) {
  if (null_in("flatten", t)) return NULL;
  if (t->shape.ndim == 0) return loom_reshape(t, LOOM_SHAPE(1));
  int a = core_norm_dim("flatten", t, start_dim, false), b = core_norm_dim("flatten", t, end_dim, false);
  if (a < 0 || b < 0) return NULL;
  if (a > b) {
    core_set_error(LOOM_ERR_INVALID, "flatten: start_dim %d comes after end_dim %d", start_dim, end_dim);
    return NULL;
  }
  loom_shape s = {0, {0}};
  for (int i = 0; i < t->shape.ndim; i++) {
    if (i > a && i <= b) s.d[s.ndim - 1] *= t->shape.d[i];
    else s.d[s.ndim++] = t->shape.d[i];
  }
  return loom_reshape(t, s);
}

loom_tensor *loom_squeeze(const loom_tensor *t, int dim) {
  if (null_in("squeeze", t)) return NULL;
  if (t->shape.ndim == 0) return loom_reshape(t, t->shape);
  int d = core_norm_dim("squeeze", t, dim, false);
  if (d < 0) return NULL;
  loom_shape s = t->shape;
  if (s.d[d] == 1) {
    memmove(&s.d[d], &s.d[d + 1], sizeof(int64_t) * (size_t)(s.ndim - d - 1));
    s.ndim--;
  }
  return loom_reshape(t, s);
}

loom_tensor *loom_squeeze_all(const loom_tensor *t) {
  if (null_in("squeeze_all", t)) return NULL;
  loom_shape s = {0, {0}};
  for (int i = 0; i < t->shape.ndim; i++)
    if (t->shape.d[i] != 1) s.d[s.ndim++] = t->shape.d[i];
  return loom_reshape(t, s);
}

loom_tensor *loom_unsqueeze(const loom_tensor *t, int dim) {
  if (null_in("unsqueeze", t)) return NULL;
  if (t->shape.ndim >= LOOM_MAX_DIMS) {
    core_set_error(LOOM_ERR_INVALID, "unsqueeze: tensor already has %d dims", LOOM_MAX_DIMS);
    return NULL;
  }
  int d = core_norm_dim("unsqueeze", t, dim, true);
  if (d < 0) return NULL;
  loom_shape s = t->shape;
  int64_t st[LOOM_MAX_DIMS];
  memcpy(st, t->strides, sizeof st);
  memmove(&s.d[d + 1], &s.d[d], sizeof(int64_t) * (size_t)(s.ndim - d));
  memmove(&st[d + 1], &st[d], sizeof(int64_t) * (size_t)(s.ndim - d));
  s.d[d] = 1;
  st[d] = d < s.ndim ? st[d + 1] * s.d[d + 1] : 1;
  s.ndim++;
  return record1("unsqueeze", reshape_backward, t, core_view(t, s, st, t->offset));
}

/* ---- permute / transpose / expand ---- */
static void permute_backward(core_node *n, const loom_tensor *g, loom_tensor **gin) {
  int inv[LOOM_MAX_DIMS];
  for (int i = 0; i < n->n_dims; i++) inv[n->dims[i]] = i;
  gin[0] = loom_permute(g, inv, n->n_dims);
}

loom_tensor *loom_permute(const loom_tensor *t, const int *dims, int ndims) {
  if (null_in("permute", t)) return NULL;
  if (!dims && ndims) {
    core_set_error(LOOM_ERR_INVALID, "permute: the permutation is NULL (ndims %d, tensor of shape %s)", ndims,
                   loom_shape_str(t->shape));
    return NULL;
  }
  if (ndims != t->shape.ndim) {
    core_set_error(LOOM_ERR_INVALID, "permute: %d dims given for a %d-d tensor of shape %s", ndims, t->shape.ndim,
                   loom_shape_str(t->shape));
    return NULL;
  }
  loom_shape s = t->shape;
  int64_t st[LOOM_MAX_DIMS];
  int perm[LOOM_MAX_DIMS];
  bool seen[LOOM_MAX_DIMS] = {0};
  for (int i = 0; i < ndims; i++) {
    int d = core_norm_dim("permute", t, dims[i], false);
    if (d < 0) return NULL;
    if (seen[d]) {
      core_set_error(LOOM_ERR_INVALID, "permute: dim %d repeated", dims[i]);
      return NULL;
    }
    seen[d] = true;
    perm[i] = d;
    s.d[i] = t->shape.d[d];
    st[i] = t->strides[d];
  }
  loom_tensor *out = core_view(t, s, st, t->offset);
  if (out && core_grad_needed(1, &t)) {
    core_node *n = core_record("permute", permute_backward, out, 1, &t);
    if (n) {
      memcpy(n->dims, perm, sizeof(int) * (size_t)ndims);
      n->n_dims = ndims;
    }
  }
  return out;
}

loom_tensor *loom_transpose(const loom_tensor *t, int dim0, int dim1) {
  if (null_in("transpose", t)) return NULL;
  if (t->shape.ndim == 0) { /* a 0-d tensor accepts dims 0 and -1 only, as in PyTorch */
    if ((dim0 != 0 && dim0 != -1) || (dim1 != 0 && dim1 != -1)) {
      core_set_error(LOOM_ERR_INVALID, "transpose: dims (%d, %d) out of range for a 0-d tensor", dim0, dim1);
      return NULL;
    }
    return loom_reshape(t, t->shape);
  }
  int a = core_norm_dim("transpose", t, dim0, false), b = core_norm_dim("transpose", t, dim1, false);
  if (a < 0 || b < 0) return NULL;
  int perm[LOOM_MAX_DIMS];
  for (int i = 0; i < t->shape.ndim; i++) perm[i] = i;
  perm[a] = b;
  perm[b] = a;
  return loom_permute(t, perm, t->shape.ndim);
}

static void expand_backward(core_node *n, const loom_tensor *g, loom_tensor **gin) {
  gin[0] = core_sum_to(g, n->in_shape[0]);
}

loom_tensor *loom_expand(const loom_tensor *t, loom_shape s) {
  if (null_in("expand", t)) return NULL;
  if (s.ndim < t->shape.ndim || s.ndim > LOOM_MAX_DIMS) {
    core_set_error(LOOM_ERR_INVALID, "expand: cannot expand shape %s to %s", loom_shape_str(t->shape),
                   loom_shape_str(s));
    return NULL;
  }
  int off = s.ndim - t->shape.ndim;
  int64_t n = 1;
  for (int i = 0; i < s.ndim; i++) {
    if (s.d[i] == -1 && i >= off) s.d[i] = t->shape.d[i - off];
    if (s.d[i] < 0) {
      core_set_error(LOOM_ERR_INVALID, "expand: invalid size %lld in %s", (long long)s.d[i], loom_shape_str(s));
      return NULL;
    }
    if (s.d[i] > 0 && n > (INT64_MAX / 16) / s.d[i]) {
      core_set_error(LOOM_ERR_INVALID, "expand: shape %s has too many elements", loom_shape_str(s));
      return NULL;
    }
    n *= s.d[i] > 0 ? s.d[i] : 1;
  }
  loom_tensor *v = core_expand_to(t, s);
  if (!v) return NULL;
  loom_tensor *out = core_alias(v); /* tracked handle */
  loom_release(v);
  return record1("expand", expand_backward, t, out);
}

/* ---- narrow / slice / select ---- */
static void slice_backward(core_node *n, const loom_tensor *g, loom_tensor **gin) {
  loom_tensor *z = loom_zeros(n->in_shape[0], g->dtype, g->storage->device);
  loom_tensor *v = loom_slice(z, (int)n->a.i[0], n->a.i[1], n->a.i[2], n->a.i[3]);
  loom_tensor *src = n->a.i[4] ? loom_unsqueeze(g, (int)n->a.i[0]) : (loom_tensor *)g;
  if (v && src && loom_copy_(v, src) == LOOM_OK) gin[0] = z;
}

static loom_tensor *slice_impl(const char *op, const loom_tensor *t, int dim, int64_t start, int64_t end,
                               int64_t step, bool drop_dim) {
  if (null_in(op, t)) return NULL;
  int d = core_norm_dim(op, t, dim, false);
  if (d < 0) return NULL;
  if (step <= 0) {
    core_set_error(LOOM_ERR_INVALID, "%s: step must be positive, got %lld", op, (long long)step);
    return NULL;
  }
  int64_t size = t->shape.d[d];
  int64_t len = end > start ? 1 + (end - start - 1) / step : 0;
  loom_shape s = t->shape;
  int64_t st[LOOM_MAX_DIMS];
  memcpy(st, t->strides, sizeof st);
  int64_t off = t->offset + (start < size ? start * t->strides[d] : 0);
  if (drop_dim) {
    memmove(&s.d[d], &s.d[d + 1], sizeof(int64_t) * (size_t)(s.ndim - d - 1));
    memmove(&st[d], &st[d + 1], sizeof(int64_t) * (size_t)(s.ndim - d - 1));
    s.ndim--;
  } else {
    s.d[d] = len;
    if (len > 1) st[d] *= step;
  }
  (void)size;
  loom_tensor *out = core_view(t, s, st, off);
  if (out && core_grad_needed(1, &t)) {
    core_node *n = core_record(op, slice_backward, out, 1, &t);
    if (n) {
      n->a.i[0] = d;
      n->a.i[1] = start;
      n->a.i[2] = drop_dim ? start + 1 : end;
      n->a.i[3] = step;
      n->a.i[4] = drop_dim;
    }
  }
  return out;
}

loom_tensor *loom_slice(const loom_tensor *t, int dim, int64_t start, int64_t end, int64_t step) {
  if (null_in("slice", t)) return NULL;
  int d = core_norm_dim("slice", t, dim, false);
  if (d < 0) return NULL;
  int64_t size = t->shape.d[d];
  if (start < 0) start += size;
  if (end < 0) end += size;
  start = start < 0 ? 0 : start > size ? size : start;
  end = end < start ? start : end > size ? size : end;
  return slice_impl("slice", t, d, start, end, step, false);
}

loom_tensor *loom_narrow(const loom_tensor *t, int dim, int64_t start, int64_t length) {
  if (null_in("narrow", t)) return NULL;
  int d = core_norm_dim("narrow", t, dim, false);
  if (d < 0) return NULL;
  int64_t size = t->shape.d[d];
  if (start < 0) start += size;
  if (start < 0 || length < 0 || start > size || length > size - start) {
    core_set_error(LOOM_ERR_INVALID, "narrow: range [%lld, %lld) out of bounds for dim %d of size %lld",
                   (long long)start, (long long)length, dim, (long long)size);
    return NULL;
  }
  return slice_impl("narrow", t, d, start, start + length, 1, false);
}

loom_tensor *loom_select(const loom_tensor *t, int dim, int64_t index) {
  if (null_in("select", t)) return NULL;
  int d = core_norm_dim("select", t, dim, false);
  if (d < 0) return NULL;
  int64_t size = t->shape.d[d];
  if (index < -size || index >= size) {
    core_set_error(LOOM_ERR_INVALID, "select: index %lld out of range for dim %d of size %lld", (long long)index,
                   dim, (long long)size);
    return NULL;
  }
  if (index < 0) index += size;
  return slice_impl("select", t, d, index, index + 1, 1, true);
}
